//! The DataFusion catalog adapter: `lakehouse` → schemas → tables, all resolved through
//! [`lakehouse_catalog::Catalog`], never by listing files.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use datafusion::catalog::{CatalogProvider, SchemaProvider, TableProvider};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::object_store::ObjectStoreUrl;
use lakehouse_catalog::{Catalog, SchemaName, TableName, TableRef, Version};

use lakehouse_vector::session::{ResolvedTable, SessionTables};

use super::table::VersionTable;

/// The version of one table a plan reads: the catalog version and, for a Lance table, the
/// Lance dataset version (Lance tables change rows in Lance commits, not catalog commits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TablePin {
    /// The catalog version.
    pub version: Version,
    /// The Lance dataset version, for Lance tables.
    pub lance_version: Option<u64>,
}

/// The table versions a plan resolved, and those it must resolve.
///
/// While planning a new statement, `fixed` is empty and every table lookup takes the newest
/// version and records it in `used`; the recorded pins go into the ticket. While re-planning a
/// ticket in DoGet, `fixed` holds those pins and lookups take exactly those versions.
#[derive(Debug, Clone, Default)]
pub struct Pins {
    fixed: Arc<HashMap<TableRef, TablePin>>,
    used: Arc<Mutex<BTreeMap<TableRef, TablePin>>>,
    missing: Arc<Mutex<Vec<TableRef>>>,
}

impl Pins {
    /// Pins that force each listed table to the listed version.
    pub fn fixed(pins: impl IntoIterator<Item = (TableRef, TablePin)>) -> Self {
        Self {
            fixed: Arc::new(pins.into_iter().collect()),
            ..Self::default()
        }
    }

    /// The versions the planner resolved, sorted by table.
    pub fn used(&self) -> Vec<(TableRef, TablePin)> {
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

    fn record(&self, table: &TableRef, pin: TablePin) {
        self.used.lock().expect("lock").insert(table.clone(), pin);
    }
}

/// The one table resolver of a session: every table a statement reads — named in SQL or in a
/// table function's arguments — is resolved here, at its pinned version when pinned, else at
/// the newest (checked against storage now), recorded in [`Pins`] and in the session's
/// [`SessionTables`] (where the table functions find it).
#[derive(Debug)]
pub struct Resolver {
    catalog: Arc<Catalog>,
    pins: Pins,
    store_url: ObjectStoreUrl,
    tables: Arc<SessionTables>,
}

impl Resolver {
    /// A resolver over `catalog` with `pins`, recording into `tables`; Parquet file paths
    /// resolve against the store registered under `store_url`.
    pub fn new(
        catalog: Arc<Catalog>,
        pins: Pins,
        store_url: ObjectStoreUrl,
        tables: Arc<SessionTables>,
    ) -> Self {
        Self {
            catalog,
            pins,
            store_url,
            tables,
        }
    }

    /// `table` as this session reads it; `None` (recorded in [`Pins::missing`]) when there is
    /// no such table. A table already resolved in this session is not looked up again.
    ///
    /// # Errors
    /// The catalog's storage and manifest errors, Lance's when the dataset (at the pinned
    /// version) cannot be opened, each as DataFusion's `External` error carrying ours.
    pub async fn resolve(&self, table: &TableRef) -> Result<Option<ResolvedTable>> {
        let external = |e: lakehouse_catalog::Error| DataFusionError::External(Box::new(e));
        if let Some(resolved) = self.tables.get(table) {
            return Ok(Some(resolved));
        }
        let pinned = self.pins.fixed.get(table).copied();
        let manifest = match pinned {
            Some(pin) => self.catalog.table_version(table, pin.version).await,
            None => self.catalog.table(table).await,
        };
        let manifest = match manifest {
            Ok(m) => m,
            Err(lakehouse_catalog::Error::TableNotFound(_)) => {
                self.pins.missing.lock().expect("lock").push(table.clone());
                return Ok(None);
            }
            Err(e) => return Err(external(e)),
        };
        let dataset = match &manifest.lance {
            Some(lance) => {
                let store = lakehouse_vector::table::LanceStore::new(self.catalog.location());
                let version = pinned.and_then(|p| p.lance_version);
                Some(
                    store
                        .open_at(&lance.location, version)
                        .await
                        .map_err(|e| DataFusionError::External(Box::new(e)))?,
                )
            }
            None => None,
        };
        let resolved = ResolvedTable { manifest, dataset };
        self.pins.record(
            table,
            TablePin {
                version: resolved.manifest.version,
                lance_version: resolved.lance_version(),
            },
        );
        self.tables.insert(table.clone(), resolved.clone());
        Ok(Some(resolved))
    }

    /// Resolves every Lance table of the catalog (for functions that read them all).
    ///
    /// # Errors
    /// As [`Resolver::resolve`] and the catalog's listing.
    pub async fn resolve_lance_tables(&self) -> Result<()> {
        let listing = self
            .catalog
            .list()
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        for (_, manifests) in listing {
            for manifest in manifests.iter().filter(|m| m.lance.is_some()) {
                self.resolve(&manifest.table).await?;
            }
        }
        Ok(())
    }

    /// The DataFusion table for `resolved`: Lance's own provider over the pinned dataset, or a
    /// [`VersionTable`] over the manifest's files.
    fn provider(&self, resolved: ResolvedTable) -> Arc<dyn TableProvider> {
        match resolved.dataset {
            Some(dataset) => Arc::new(lance::datafusion::LanceTableProvider::new(
                dataset, false, false,
            )),
            None => Arc::new(VersionTable::new(resolved.manifest, self.store_url.clone())),
        }
    }
}

/// `CatalogProvider` for the `lakehouse` catalog.
///
/// `schema_names` (synchronous in DataFusion) answers from the schema list read when the
/// session was created ([`LakehouseCatalogProvider::new`]); `schema` accepts any valid name, so
/// lookups of tables always reach the catalog.
#[derive(Debug)]
pub struct LakehouseCatalogProvider {
    resolver: Arc<Resolver>,
    schemas: Vec<SchemaName>,
    tables: HashMap<SchemaName, Vec<String>>,
}

impl LakehouseCatalogProvider {
    /// A provider resolving tables with `resolver`. `schemas`/`tables` are the listing used
    /// for the synchronous name lists (information_schema).
    pub fn new(
        resolver: Arc<Resolver>,
        schemas: Vec<SchemaName>,
        tables: HashMap<SchemaName, Vec<String>>,
    ) -> Self {
        Self {
            resolver,
            schemas,
            tables,
        }
    }

    /// The session's resolver.
    pub fn resolver(&self) -> &Arc<Resolver> {
        &self.resolver
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
            resolver: Arc::clone(&self.resolver),
            schema,
            tables,
        }))
    }
}

/// `SchemaProvider` for one schema; see [`LakehouseCatalogProvider`].
#[derive(Debug)]
pub struct LakehouseSchemaProvider {
    resolver: Arc<Resolver>,
    schema: SchemaName,
    tables: Vec<String>,
}

#[async_trait]
impl SchemaProvider for LakehouseSchemaProvider {
    fn table_names(&self) -> Vec<String> {
        self.tables.clone()
    }

    /// Resolves `name` with the session's [`Resolver`]. A name that is not a table is
    /// `Ok(None)`; storage and manifest errors are errors carrying the catalog's error.
    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        let Ok(table_name) = TableName::new(name) else {
            return Ok(None);
        };
        let table = TableRef {
            schema: self.schema.clone(),
            table: table_name,
        };
        let resolved = self.resolver.resolve(&table).await?;
        Ok(resolved.map(|r| self.resolver.provider(r)))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.tables.iter().any(|t| t == name)
    }
}
