//! The DataFusion catalog adapter: `lakehouse` → schemas → tables, all resolved through
//! [`lakehouse_catalog::Catalog`], never by listing files.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use datafusion::catalog::{CatalogProvider, SchemaProvider, TableProvider};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::object_store::ObjectStoreUrl;
use lakehouse_catalog::{Catalog, SchemaName, TableName, TableRef, Version};

use super::table::VersionTable;

/// The table versions a plan resolved, and those it must resolve.
///
/// While planning a new statement, `fixed` is empty and every table lookup takes the newest
/// version and records it in `used`; the recorded pins go into the ticket. While re-planning a
/// ticket in DoGet, `fixed` holds those pins and lookups take exactly those versions.
#[derive(Debug, Clone, Default)]
pub struct Pins {
    fixed: Arc<HashMap<TableRef, Version>>,
    used: Arc<Mutex<BTreeMap<TableRef, Version>>>,
    missing: Arc<Mutex<Vec<TableRef>>>,
}

impl Pins {
    /// Pins that force each listed table to the listed version.
    pub fn fixed(pins: impl IntoIterator<Item = (TableRef, Version)>) -> Self {
        Self {
            fixed: Arc::new(pins.into_iter().collect()),
            ..Self::default()
        }
    }

    /// The versions the planner resolved, sorted by table.
    pub fn used(&self) -> Vec<(TableRef, Version)> {
        self.used
            .lock()
            .expect("lock")
            .iter()
            .map(|(t, v)| (t.clone(), *v))
            .collect()
    }

    /// Names looked up during planning that are not tables (in lookup order). DataFusion also
    /// asks for names that turn out to be table functions, so a miss is only an error when
    /// planning fails.
    pub fn missing(&self) -> Vec<TableRef> {
        self.missing.lock().expect("lock").clone()
    }

    fn record(&self, table: &TableRef, version: Version) {
        self.used
            .lock()
            .expect("lock")
            .insert(table.clone(), version);
    }
}

/// `CatalogProvider` for the `lakehouse` catalog.
///
/// `schema_names` (synchronous in DataFusion) answers from the schema list read when the
/// session was created ([`LakehouseCatalogProvider::new`]); `schema` accepts any valid name, so
/// lookups of tables always reach the catalog.
#[derive(Debug)]
pub struct LakehouseCatalogProvider {
    catalog: Arc<Catalog>,
    schemas: Vec<SchemaName>,
    tables: HashMap<SchemaName, Vec<String>>,
    pins: Pins,
    store_url: ObjectStoreUrl,
}

impl LakehouseCatalogProvider {
    /// A provider over `catalog`. `schemas`/`tables` are the listing used for the synchronous
    /// name lists (information_schema); `pins` as in [`Pins`].
    pub fn new(
        catalog: Arc<Catalog>,
        schemas: Vec<SchemaName>,
        tables: HashMap<SchemaName, Vec<String>>,
        pins: Pins,
        store_url: ObjectStoreUrl,
    ) -> Self {
        Self {
            catalog,
            schemas,
            tables,
            pins,
            store_url,
        }
    }
}

impl CatalogProvider for LakehouseCatalogProvider {
    fn schema_names(&self) -> Vec<String> {
        self.schemas.iter().map(|s| s.to_string()).collect()
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        let schema = SchemaName::new(name).ok()?;
        let tables = self.tables.get(&schema).cloned().unwrap_or_default();
        Some(Arc::new(LakehouseSchemaProvider {
            catalog: Arc::clone(&self.catalog),
            schema,
            tables,
            pins: self.pins.clone(),
            store_url: self.store_url.clone(),
        }))
    }
}

/// `SchemaProvider` for one schema; see [`LakehouseCatalogProvider`].
#[derive(Debug)]
pub struct LakehouseSchemaProvider {
    catalog: Arc<Catalog>,
    schema: SchemaName,
    tables: Vec<String>,
    pins: Pins,
    store_url: ObjectStoreUrl,
}

#[async_trait]
impl SchemaProvider for LakehouseSchemaProvider {
    fn table_names(&self) -> Vec<String> {
        self.tables.clone()
    }

    /// Resolves `name` through the catalog: the pinned version when pinned, else the newest
    /// (checked against storage now). A name that is not a table is `Ok(None)` and recorded in
    /// [`Pins::missing`]; storage and manifest errors are errors carrying the catalog's error.
    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        let external = |e: lakehouse_catalog::Error| DataFusionError::External(Box::new(e));
        let Ok(table_name) = TableName::new(name) else {
            return Ok(None);
        };
        let table = TableRef {
            schema: self.schema.clone(),
            table: table_name,
        };
        let manifest = match self.pins.fixed.get(&table) {
            Some(version) => self.catalog.table_version(&table, *version).await,
            None => self.catalog.table(&table).await,
        };
        let manifest = match manifest {
            Ok(m) => m,
            Err(lakehouse_catalog::Error::TableNotFound(_)) => {
                self.pins.missing.lock().expect("lock").push(table);
                return Ok(None);
            }
            Err(e) => return Err(external(e)),
        };
        self.pins.record(&table, manifest.version);
        if let Some(lance) = &manifest.lance {
            // The Lance dataset's newest version: Lance's manifest is the truth for its rows.
            let store = lakehouse_vector::table::LanceStore::new(self.catalog.location());
            let provider = store
                .provider(&lance.location)
                .await
                .map_err(|e| DataFusionError::External(Box::new(e)))?;
            return Ok(Some(provider));
        }
        Ok(Some(Arc::new(VersionTable::new(
            manifest,
            self.store_url.clone(),
        ))))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.tables.iter().any(|t| t == name)
    }
}
