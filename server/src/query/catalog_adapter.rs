//! The DataFusion catalog adapter: `lakehouse` → schemas → tables, all resolved through
//! [`lakehouse_catalog::Catalog`], never by listing files.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use datafusion::catalog::{CatalogProvider, SchemaProvider, TableProvider};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::object_store::ObjectStoreUrl;
use lakehouse_catalog::{AsOf, Catalog, SchemaName, TableName, TableRef, Version};

use lakehouse_vector::session::{ResolvedTable, SessionTables};

use super::table::VersionTable;
use super::time_travel::split_as_of;

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
///
/// Pins are keyed by table and [`AsOf`]: a time-travel reference (`t VERSION AS OF 3`) is
/// pinned apart from the same table's newest version.
#[derive(Debug, Clone, Default)]
pub struct Pins {
    fixed: Arc<HashMap<(TableRef, AsOf), TablePin>>,
    used: Arc<Mutex<BTreeMap<(TableRef, AsOf), TablePin>>>,
    missing: Arc<Mutex<Vec<TableRef>>>,
    resolved_sql: Arc<Mutex<Option<String>>>,
}

impl Pins {
    /// Pins that force each listed table to the listed version.
    pub fn fixed(pins: impl IntoIterator<Item = ((TableRef, AsOf), TablePin)>) -> Self {
        Self {
            fixed: Arc::new(pins.into_iter().collect()),
            ..Self::default()
        }
    }

    /// The versions the planner resolved, sorted by table and `AS OF`.
    pub fn used(&self) -> Vec<((TableRef, AsOf), TablePin)> {
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

    /// Records the statement's text with its version clauses resolved (see
    /// [`super::time_travel::rewrite_versions`]).
    pub fn set_resolved_sql(&self, sql: String) {
        *self.resolved_sql.lock().expect("lock") = Some(sql);
    }

    /// The statement's text with its version clauses resolved, when it had any.
    pub fn resolved_sql(&self) -> Option<String> {
        self.resolved_sql.lock().expect("lock").clone()
    }

    fn record(&self, key: (TableRef, AsOf), pin: TablePin) {
        self.used.lock().expect("lock").insert(key, pin);
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
        self.resolve_at(table, AsOf::Latest).await
    }

    /// `table` as of `as_of` (see [`Resolver::resolve`]): for a Parquet table the catalog
    /// version `as_of` selects, for a Lance table the Lance dataset version it selects (over
    /// the table's newest catalog record). Only the newest versions are recorded in
    /// [`SessionTables`] (table functions read those).
    ///
    /// # Errors
    /// As [`Resolver::resolve`]; the catalog's `NotKept` when the table does not keep the
    /// version or instant asked for.
    pub async fn resolve_at(&self, table: &TableRef, as_of: AsOf) -> Result<Option<ResolvedTable>> {
        let external = |e: lakehouse_catalog::Error| DataFusionError::External(Box::new(e));
        if as_of == AsOf::Latest
            && let Some(resolved) = self.tables.get(table)
        {
            return Ok(Some(resolved));
        }
        let key = (table.clone(), as_of);
        let pinned = self.pins.fixed.get(&key).copied();
        let manifest = match pinned {
            Some(pin) => self.catalog.table_version(table, pin.version).await,
            None => match self.catalog.table(table).await {
                Ok(head) if head.lance.is_none() && as_of != AsOf::Latest => {
                    self.catalog.table_as_of(table, as_of).await
                }
                other => other,
            },
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
                let lance_error =
                    |e: lakehouse_vector::Error| DataFusionError::External(Box::new(e));
                let version = match (pinned, as_of) {
                    (Some(pin), _) => pin.lance_version,
                    (None, AsOf::Latest) => None,
                    (None, as_of) => {
                        let newest = store
                            .open_at(&lance.location, None)
                            .await
                            .map_err(lance_error)?;
                        let kept: Vec<_> = newest
                            .versions()
                            .await
                            .map_err(|e| lance_error(e.into()))?
                            .into_iter()
                            .map(|v| (v.version, v.timestamp))
                            .collect();
                        Some(as_of.select(table, &kept).map_err(external)?)
                    }
                };
                Some(
                    store
                        .open_at(&lance.location, version)
                        .await
                        .map_err(lance_error)?,
                )
            }
            None => None,
        };
        let resolved = ResolvedTable { manifest, dataset };
        self.pins.record(
            key,
            TablePin {
                version: resolved.manifest.version,
                lance_version: resolved.lance_version(),
            },
        );
        if as_of == AsOf::Latest {
            self.tables.insert(table.clone(), resolved.clone());
        }
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

    /// Resolves `name` with the session's [`Resolver`] — `t@<as of>` (a time-travel reference,
    /// [`super::time_travel`]) at that version. A name that is not a table is `Ok(None)`;
    /// storage and manifest errors are errors carrying the catalog's error.
    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        let (name, as_of) = split_as_of(name).unwrap_or((name, AsOf::Latest));
        let Ok(table_name) = TableName::new(name) else {
            return Ok(None);
        };
        let table = TableRef {
            schema: self.schema.clone(),
            table: table_name,
        };
        let resolved = self.resolver.resolve_at(&table, as_of).await?;
        Ok(resolved.map(|r| self.resolver.provider(r)))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.tables.iter().any(|t| t == name)
    }
}
