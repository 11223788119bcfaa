//! [`Catalog`]: reads and commits table versions in object storage.
//!
//! # Commit protocol
//! 1. Data files are written first, under fresh UUID names ([`DataFileWriter`]).
//! 2. The manifest of version `head + 1` is published with a conditional create
//!    ([`PutMode::Create`]: `If-None-Match: *` on S3, a no-clobber hard link on local disk).
//!    Publishing is the commit point: before it no reader can see the files, after it the whole
//!    version is visible. A crash at any step leaves either the old or the new version.
//! 3. When the create fails because another writer published that version first, the commit
//!    re-reads the new head and re-applies its change on top of it: an append or replace goes
//!    through as the next version; a create of a table that now exists, or an append whose
//!    schema no longer matches, fails with [`Error::TableExists`] / [`Error::SchemaMismatch`].
//!    After [`Catalog::COMMIT_ATTEMPTS`] lost races the commit fails with [`Error::Conflict`].
//!    [`Catalog::commit_at`] is the single-attempt form for callers that want the conflict.
//!
//! # Freshness
//! There is no local state: [`Catalog::open`] rebuilds everything from storage, and every
//! lookup of a table ([`Catalog::table`]) asks storage for manifests newer than the one it has
//! cached: one HEAD of the next version's manifest, and only when that exists, one LIST
//! starting after the cached version. A server therefore sees versions
//! committed by another process at the latest when it plans its next query. Listings
//! ([`Catalog::schemas`], [`Catalog::tables`]) read storage every time.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use backon::{BackoffBuilder, ExponentialBuilder};
use chrono::Utc;
use futures::future::BoxFuture;
use futures::{Stream, StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

use crate::error::{Error, Result};
use crate::layout;
use crate::manifest::{
    DataFile, FORMAT_VERSION, LanceTable, Manifest, Operation, SourceFile, TableSchema,
    schema_differences,
};
use crate::name::{SchemaName, TableName, TableRef, Version};
use crate::storage::StorageLocation;
use crate::writer::{DataFileWriter, delete_best_effort, normalize_schema};

/// The Flight SQL catalog name Lakehouse serves.
pub const CATALOG_NAME: &str = "lakehouse";

/// A change to commit as a table's next version. Files are the new files written for this
/// change (by a [`DataFileWriter`]); an append keeps the previous version's files as well.
#[derive(Debug, Clone)]
pub enum Change {
    /// Create the table; fails with [`Error::TableExists`] when it has a live version.
    Create {
        /// The table's schema.
        schema: SchemaRef,
        /// Its data files.
        files: Vec<DataFile>,
        /// Primary-key column names (empty: none); each must be a NOT NULL column.
        primary_key: Vec<String>,
    },
    /// Add files to a live table whose schema equals `schema` (else [`Error::SchemaMismatch`];
    /// [`Error::TableNotFound`] when there is no live table).
    Append {
        /// The schema the files were written with.
        schema: SchemaRef,
        /// The added files.
        files: Vec<DataFile>,
    },
    /// Append when the table is live (same checks as `Append`), create it otherwise.
    CreateOrAppend {
        /// The schema the files were written with.
        schema: SchemaRef,
        /// The new files.
        files: Vec<DataFile>,
    },
    /// Replace all rows and the schema; creates the table when it has no live version.
    Replace {
        /// The new schema.
        schema: SchemaRef,
        /// The new files.
        files: Vec<DataFile>,
    },
    /// Register existing files elsewhere as a read-only table (see [`Manifest::external`]).
    CreateExternal {
        /// The files' schema.
        schema: SchemaRef,
        /// Where the files were listed.
        location: String,
        /// The files, with absolute URLs as paths.
        files: Vec<DataFile>,
    },
    /// Record a Lance table whose dataset was just written at `lance.location` (the dataset
    /// holds the rows; see [`Manifest::lance`]).
    CreateLance {
        /// The dataset's schema.
        schema: SchemaRef,
        /// Location and vector columns.
        lance: LanceTable,
    },
    /// Drop the table ([`Error::TableNotFound`] when it has no live version).
    Drop,
    /// A row-level change computed against one version (DELETE, UPDATE): some files get a new
    /// deletion vector or leave the table, and new files may be added. Re-applied on a newer
    /// head as long as every changed file is still there exactly as the change read it (others'
    /// appends and changes to other files are kept); otherwise [`Error::ConcurrentChange`].
    Rewrite {
        /// [`Operation::Delete`] or [`Operation::Update`].
        operation: Operation,
        /// The changed files.
        changed: Vec<FileChange>,
        /// Files added (an UPDATE's new rows), written with the table's schema.
        files: Vec<DataFile>,
    },
    /// Remove every row of a live table, keeping its schema and primary key
    /// ([`Error::TableNotFound`] when it has no live version).
    Truncate,
    /// Make an older version's files, schema and primary key the newest version
    /// ([`Operation::Restore`]; [`Error::TableNotFound`] when there is no live table).
    Restore {
        /// The version restored (of the same table, since its last creation).
        to: Arc<Manifest>,
    },
}

/// One data file changed by a [`Change::Rewrite`].
#[derive(Debug, Clone)]
pub struct FileChange {
    /// The file's entry as the change read it.
    pub before: DataFile,
    /// Its new entry (a new deletion vector, and row groups recorded), or `None` when every
    /// row of the file is deleted and the file leaves the table.
    pub after: Option<DataFile>,
}

impl Change {
    /// Objects this change wrote that no manifest references yet: deleted when it fails.
    fn new_objects(&self) -> Vec<Path> {
        let files = match self {
            Change::Create { files, .. }
            | Change::Append { files, .. }
            | Change::CreateOrAppend { files, .. }
            | Change::Replace { files, .. }
            | Change::Rewrite { files, .. } => files.as_slice(),
            // External files are not ours to delete; a restore's files belong to the older
            // version.
            Change::CreateExternal { .. }
            | Change::CreateLance { .. }
            | Change::Drop
            | Change::Truncate
            | Change::Restore { .. } => &[],
        };
        let mut paths: Vec<Path> = files.iter().map(|f| Path::from(f.path.as_str())).collect();
        if let Change::Rewrite { changed, .. } = self {
            let new_dvs = changed.iter().filter_map(|c| {
                let after = c.after.as_ref()?.deletion_vector.as_ref()?;
                let before = c.before.deletion_vector.as_ref();
                (before.map(|b| &b.path) != Some(&after.path))
                    .then(|| Path::from(after.path.as_str()))
            });
            paths.extend(new_dvs);
        }
        paths
    }
}

/// A check run on the manifest a commit is about to publish, on every attempt (so a commit
/// that loses a race is checked again against the new head); an error refuses the commit.
/// Used for primary-key uniqueness.
pub type CommitCheck = Arc<dyn Fn(Arc<Manifest>) -> BoxFuture<'static, Result<()>> + Send + Sync>;

/// How [`Catalog::write_stream`] treats an existing table; the modes of Flight SQL's
/// `CommandStatementIngest.TableDefinitionOptions`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// Fail with [`Error::TableExists`] when the table exists.
    Create,
    /// Fail with [`Error::TableNotFound`] when it does not.
    Append,
    /// Append when it exists, create it otherwise.
    CreateOrAppend,
    /// Replace its rows and schema when it exists, create it otherwise.
    Replace,
    /// Upsert by primary key: stored rows whose key the data holds are replaced by the data's
    /// rows (deleted through deletion vectors), the other rows appended, in one commit
    /// ([`Operation::Merge`]). The table must exist and have a primary key.
    Upsert,
}

/// What [`Catalog::cleanup`] found and did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CleanupReport {
    /// Data files examined.
    pub files_scanned: usize,
    /// Unreferenced files deleted (or that would be, with `dry_run`), as object paths.
    pub deleted: Vec<String>,
    /// Bytes in `deleted`.
    pub bytes_deleted: u64,
    /// Unreferenced files kept because they are younger than the grace period (they may belong
    /// to a commit in progress).
    pub kept_recent: usize,
}

/// Data files written for one change and not yet committed ([`Catalog::write_files`]).
pub(crate) struct WrittenFiles {
    /// The schema the files were written with (the table's, when it exists).
    pub(crate) schema: SchemaRef,
    /// The files, in write order.
    pub(crate) files: Vec<DataFile>,
}

/// The catalog: the one authority on which tables and versions exist.
///
/// Cheap to share (`Arc<Catalog>`); all methods take `&self`.
#[derive(Debug)]
pub struct Catalog {
    location: StorageLocation,
    /// Newest manifest seen per table (including drop versions).
    heads: RwLock<HashMap<TableRef, Arc<Manifest>>>,
    /// The catalog's id ([`Catalog::id`]).
    id: String,
}

/// The id stored at the root, written now (a new UUID, with a conditional create so that
/// servers opening a new root at once agree) when there is none.
async fn open_id(store: &Arc<dyn ObjectStore>) -> Result<String> {
    let fresh = uuid::Uuid::new_v4().to_string();
    let put = store
        .put_opts(
            &layout::catalog_id(),
            PutPayload::from(fresh.clone().into_bytes()),
            PutOptions::from(PutMode::Create),
        )
        .await;
    match put {
        Ok(_) => Ok(fresh),
        Err(object_store::Error::AlreadyExists { .. }) => {
            let bytes = store.get(&layout::catalog_id()).await?.bytes().await?;
            Ok(String::from_utf8_lossy(&bytes).trim().to_string())
        }
        Err(e) => Err(e.into()),
    }
}

impl Catalog {
    /// Lost races a commit retries before failing with [`Error::Conflict`].
    pub const COMMIT_ATTEMPTS: usize = 10;

    /// Opens the catalog at `location`, rebuilding its state from storage alone: writes the
    /// catalog marker on an empty root, then reads the newest manifest of every table.
    ///
    /// # Errors
    /// [`Error::Storage`] when storage is unreachable; [`Error::InvalidManifest`] for an
    /// unreadable manifest.
    pub async fn open(location: StorageLocation) -> Result<Self> {
        let id = open_id(&location.store).await?;
        let catalog = Self {
            location,
            heads: RwLock::new(HashMap::new()),
            id,
        };
        let marker = serde_json::json!({"format_version": FORMAT_VERSION, "name": CATALOG_NAME});
        let put = catalog
            .store()
            .put_opts(
                &layout::catalog_marker(),
                PutPayload::from(serde_json::to_vec_pretty(&marker).expect("json")),
                PutOptions::from(PutMode::Create),
            )
            .await;
        match put {
            Ok(_) | Err(object_store::Error::AlreadyExists { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        let tables: usize = catalog.list().await?.iter().map(|(_, t)| t.len()).sum();
        tracing::info!(root = %catalog.location.url, tables, "catalog opened");
        Ok(catalog)
    }

    /// The catalog's id: a UUID created with the storage root (`_lakehouse/id`), the same for
    /// every server opening that root. Distributed workers refuse plans from another catalog.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The storage root.
    pub fn location(&self) -> &StorageLocation {
        &self.location
    }

    /// The object store scoped to the storage root; manifest `files[].path` are relative to it.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.location.store
    }

    /// Checks that storage answers: one listing of the tables prefix (what `/readyz` asks).
    ///
    /// # Errors
    /// The store's error (unreachable endpoint, missing bucket, denied credentials).
    pub async fn probe_storage(&self) -> Result<()> {
        self.store()
            .list_with_delimiter(Some(&layout::tables_prefix()))
            .await?;
        Ok(())
    }

    /// Schemas with a marker (and `public`), and schema folders under `tables/`.
    async fn schema_sources(&self) -> Result<(HashSet<SchemaName>, HashSet<SchemaName>)> {
        let mut marked = HashSet::from([SchemaName::default_schema()]);
        let markers = self
            .store()
            .list_with_delimiter(Some(&layout::schemas_prefix()))
            .await?;
        for object in markers.objects {
            if let Some(name) = object
                .location
                .filename()
                .and_then(|f| f.strip_suffix(".json"))
                && let Ok(name) = SchemaName::new(name)
            {
                marked.insert(name);
            }
        }
        let dirs = self
            .store()
            .list_with_delimiter(Some(&layout::tables_prefix()))
            .await?;
        let folders = dirs
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().and_then(|n| SchemaName::new(n).ok()))
            .collect();
        Ok((marked, folders))
    }

    /// Every schema: `public`, schemas created with a marker, and schemas holding live tables;
    /// sorted. Reads table heads only for folders without a marker.
    ///
    /// # Errors
    /// [`Error::Storage`], [`Error::InvalidManifest`].
    pub async fn schemas(&self) -> Result<Vec<SchemaName>> {
        let (mut names, folders) = self.schema_sources().await?;
        for name in folders {
            if !names.contains(&name) && !self.tables(&name).await?.is_empty() {
                names.insert(name);
            }
        }
        let mut names: Vec<_> = names.into_iter().collect();
        names.sort();
        Ok(names)
    }

    /// Every schema (as [`Catalog::schemas`]) with the newest live version of each of its
    /// tables, both sorted by name; each table head is read once.
    ///
    /// # Errors
    /// [`Error::Storage`], [`Error::InvalidManifest`].
    pub async fn list(&self) -> Result<Vec<(SchemaName, Vec<Arc<Manifest>>)>> {
        let (marked, folders) = self.schema_sources().await?;
        let mut names: Vec<_> = marked.union(&folders).cloned().collect();
        names.sort();
        let mut listing = Vec::with_capacity(names.len());
        for name in names {
            let tables = if folders.contains(&name) {
                self.tables(&name).await?
            } else {
                Vec::new()
            };
            if marked.contains(&name) || !tables.is_empty() {
                listing.push((name, tables));
            }
        }
        Ok(listing)
    }

    /// Creates `schema` (its marker object, by conditional create). Returns false, changing
    /// nothing, when it exists and `if_not_exists` is set.
    ///
    /// # Errors
    /// [`Error::SchemaExists`] when it exists (a marker or tables) and `if_not_exists` is not set.
    pub async fn create_schema(&self, schema: &SchemaName, if_not_exists: bool) -> Result<bool> {
        let exists = self.schemas().await?.contains(schema);
        let created = !exists
            && match self
                .store()
                .put_opts(
                    &layout::schema_marker(schema),
                    PutPayload::from(
                        serde_json::to_vec_pretty(&serde_json::json!({
                            "format_version": FORMAT_VERSION,
                            "name": schema,
                            "created_at": Utc::now(),
                        }))
                        .expect("json"),
                    ),
                    PutOptions::from(PutMode::Create),
                )
                .await
            {
                Ok(_) => true,
                Err(object_store::Error::AlreadyExists { .. }) => false,
                Err(e) => return Err(e.into()),
            };
        if !created && !if_not_exists {
            return Err(Error::SchemaExists(schema.to_string()));
        }
        Ok(created)
    }

    /// Drops `schema`: with `cascade` its tables are dropped first (each a drop version), then
    /// its marker is removed. Returns false when it did not exist and `if_exists` is set.
    ///
    /// # Errors
    /// [`Error::SchemaNotFound`]; [`Error::SchemaNotDroppable`] for `public` or a schema with
    /// tables and no `cascade`.
    pub async fn drop_schema(
        &self,
        schema: &SchemaName,
        if_exists: bool,
        cascade: bool,
    ) -> Result<bool> {
        if schema.as_str() == crate::name::DEFAULT_SCHEMA {
            return Err(Error::SchemaNotDroppable {
                schema: schema.to_string(),
                reason: "it is the default schema".into(),
            });
        }
        if !self.schemas().await?.contains(schema) {
            return if if_exists {
                Ok(false)
            } else {
                Err(Error::SchemaNotFound(schema.to_string()))
            };
        }
        let tables = self.tables(schema).await?;
        if !tables.is_empty() && !cascade {
            let names: Vec<_> = tables.iter().map(|m| m.table.table.to_string()).collect();
            return Err(Error::SchemaNotDroppable {
                schema: schema.to_string(),
                reason: format!("it holds tables {}; use CASCADE", names.join(", ")),
            });
        }
        for manifest in tables {
            self.commit(&manifest.table, Change::Drop).await?;
        }
        match self.store().delete(&layout::schema_marker(schema)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(true),
            Err(e) => Err(e.into()),
        }
    }

    /// Newest live version of every table in `schema`, sorted by table name.
    ///
    /// # Errors
    /// [`Error::Storage`], [`Error::InvalidManifest`].
    pub async fn tables(&self, schema: &SchemaName) -> Result<Vec<Arc<Manifest>>> {
        let listing = self
            .store()
            .list_with_delimiter(Some(&layout::schema_tables_prefix(schema)))
            .await?;
        let refs: Vec<TableRef> = listing
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename())
            .filter_map(|name| match TableName::new(name) {
                Ok(table) => Some(TableRef {
                    schema: schema.clone(),
                    table,
                }),
                Err(e) => {
                    tracing::warn!(error = %e, "ignoring object-store folder that is not a table");
                    None
                }
            })
            .collect();
        let mut heads: Vec<Arc<Manifest>> = futures::stream::iter(refs)
            .map(|t| async move { self.latest(&t).await })
            .buffer_unordered(16)
            .try_filter_map(|m| async move { Ok(m.filter(|m| !m.dropped)) })
            .try_collect()
            .await?;
        heads.sort_by(|a, b| a.table.cmp(&b.table));
        Ok(heads)
    }

    /// The newest live version of `table`, checking storage for newer versions first.
    ///
    /// # Errors
    /// [`Error::TableNotFound`] when the table was never created or is dropped;
    /// [`Error::Storage`], [`Error::InvalidManifest`].
    pub async fn table(&self, table: &TableRef) -> Result<Arc<Manifest>> {
        match self.latest(table).await? {
            Some(m) if !m.dropped => Ok(m),
            _ => Err(Error::TableNotFound(table.clone())),
        }
    }

    /// A specific version of `table` (as pinned in a query ticket).
    ///
    /// # Errors
    /// [`Error::VersionNotFound`] when that version does not exist; [`Error::TableNotFound`]
    /// when that version is a drop; [`Error::Storage`], [`Error::InvalidManifest`].
    pub async fn table_version(&self, table: &TableRef, version: Version) -> Result<Arc<Manifest>> {
        let cached = self.cached(table).filter(|m| m.version == version);
        let manifest = match cached {
            Some(m) => m,
            None => match self.read_manifest(table, version).await {
                Err(Error::Storage(object_store::Error::NotFound { .. })) => {
                    return Err(Error::VersionNotFound {
                        table: table.clone(),
                        version,
                    });
                }
                other => Arc::new(other?),
            },
        };
        if manifest.dropped {
            return Err(Error::TableNotFound(table.clone()));
        }
        Ok(manifest)
    }

    fn cached(&self, table: &TableRef) -> Option<Arc<Manifest>> {
        self.heads.read().expect("lock").get(table).cloned()
    }

    /// Newest manifest of `table` including drop versions; `None` when it never existed.
    async fn latest(&self, table: &TableRef) -> Result<Option<Arc<Manifest>>> {
        let cached = self.cached(table);
        if let Some(m) = &cached {
            // Versions are contiguous: when the next one does not exist, the cached one is
            // the newest. One HEAD instead of a listing that grows with the table's history.
            match self
                .store()
                .head(&layout::manifest_path(table, m.version.next()))
                .await
            {
                Err(object_store::Error::NotFound { .. }) => return Ok(cached),
                Ok(_) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let prefix = layout::manifests_prefix(table);
        let listing = match &cached {
            Some(m) => self
                .store()
                .list_with_offset(Some(&prefix), &layout::manifest_path(table, m.version)),
            None => self.store().list(Some(&prefix)),
        };
        let newest = listing
            .try_filter_map(
                |meta| async move { Ok(layout::parse_manifest_version(&meta.location)) },
            )
            .try_fold(None, |max: Option<Version>, v| async move {
                Ok(max.max(Some(v)))
            })
            .await?;
        let Some(newest) = newest.filter(|v| cached.as_ref().is_none_or(|m| *v > m.version)) else {
            return Ok(cached);
        };
        let manifest = Arc::new(self.read_manifest(table, newest).await?);
        let mut heads = self.heads.write().expect("lock");
        let entry = heads
            .entry(table.clone())
            .or_insert_with(|| Arc::clone(&manifest));
        if entry.version < manifest.version {
            *entry = Arc::clone(&manifest);
        }
        Ok(Some(Arc::clone(entry)))
    }

    /// Version `version` of `table` as stored, drop versions included (for maintenance).
    pub(crate) async fn manifest_at(&self, table: &TableRef, version: Version) -> Result<Manifest> {
        self.read_manifest(table, version).await
    }

    async fn read_manifest(&self, table: &TableRef, version: Version) -> Result<Manifest> {
        let path = layout::manifest_path(table, version);
        let bytes = self.store().get(&path).await?.bytes().await?;
        let manifest = Manifest::from_json(path.as_ref(), &bytes)?;
        if &manifest.table != table || manifest.version != version {
            return Err(Error::InvalidManifest {
                path: path.to_string(),
                message: format!(
                    "it describes {} version {}, not {table} version {version}",
                    manifest.table, manifest.version
                ),
            });
        }
        Ok(manifest)
    }

    /// A writer for the data files of a change to `table`; `schema` is the schema the files get
    /// (normalised with [`normalize_schema`] by [`Catalog::write_stream`]). `source` is recorded
    /// in the manifest for file ingests.
    pub fn data_writer(
        &self,
        table: &TableRef,
        schema: SchemaRef,
        source: Option<SourceFile>,
    ) -> DataFileWriter {
        DataFileWriter::new(Arc::clone(self.store()), table.clone(), schema, source)
    }

    /// Commits `change` as the next version of `table`, re-applying it on the new head when
    /// another writer wins the race (see the module docs). On failure the change's new files
    /// are deleted, since no manifest references them.
    ///
    /// # Errors
    /// [`Error::TableExists`], [`Error::TableNotFound`], [`Error::SchemaMismatch`] as the change
    /// demands; [`Error::Conflict`] after [`Self::COMMIT_ATTEMPTS`] lost races; storage errors.
    pub async fn commit(&self, table: &TableRef, change: Change) -> Result<Arc<Manifest>> {
        self.commit_checked(table, change, None).await
    }

    /// [`Catalog::commit`] with `check` run on each attempt's candidate manifest before it is
    /// published (see [`CommitCheck`]).
    ///
    /// # Errors
    /// As [`Catalog::commit`], plus whatever `check` returns (nothing is published then).
    pub async fn commit_checked(
        &self,
        table: &TableRef,
        change: Change,
        check: Option<CommitCheck>,
    ) -> Result<Arc<Manifest>> {
        let result = self.commit_with(table, &change, check).await;
        if result.is_err() {
            self.discard(&change).await;
        }
        result
    }

    /// [`Catalog::commit_checked`] that leaves the change's files in place on failure.
    async fn commit_with(
        &self,
        table: &TableRef,
        change: &Change,
        check: Option<CommitCheck>,
    ) -> Result<Arc<Manifest>> {
        // Backoff policy (exponential with jitter) from backon; each lost race re-reads the head.
        let mut delays = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(5))
            .with_max_delay(Duration::from_millis(500))
            .with_max_times(Self::COMMIT_ATTEMPTS - 1)
            .with_jitter()
            .build();
        loop {
            let base = match self.latest(table).await {
                Ok(head) => head.map(|m| m.version),
                Err(e) => break Err(e),
            };
            let attempt = self.try_commit(table, base, change, check.as_ref());
            let span = tracing::info_span!("commit", table = %table, base = ?base.map(|v| v.0));
            match tracing::Instrument::instrument(attempt, span).await {
                Err(e @ Error::Conflict { .. }) => match delays.next() {
                    Some(delay) => {
                        tracing::debug!(error = %e, ?delay, "commit lost a race; retrying");
                        tokio::time::sleep(delay).await;
                    }
                    None => break Err(e),
                },
                other => break other,
            }
        }
    }

    /// Commits `change` as version `base + 1` (version 1 when `base` is `None`), in one attempt.
    ///
    /// # Errors
    /// [`Error::Conflict`] when that version already exists (another writer won); otherwise as
    /// [`Catalog::commit`]. The change's files are kept on error, so the caller may retry.
    pub async fn commit_at(
        &self,
        table: &TableRef,
        base: Option<Version>,
        change: Change,
    ) -> Result<Arc<Manifest>> {
        self.try_commit(table, base, &change, None).await
    }

    async fn discard(&self, change: &Change) {
        delete_best_effort(self.store(), change.new_objects()).await;
    }

    async fn try_commit(
        &self,
        table: &TableRef,
        base: Option<Version>,
        change: &Change,
        check: Option<&CommitCheck>,
    ) -> Result<Arc<Manifest>> {
        let head = match base {
            Some(v) => Some(match self.cached(table).filter(|m| m.version == v) {
                Some(m) => m,
                None => Arc::new(self.read_manifest(table, v).await?),
            }),
            None => None,
        };
        let live = head.as_deref().filter(|m| !m.dropped);
        let check_append = |schema: &SchemaRef, live: &Manifest| {
            let diffs = schema_differences(&live.arrow_schema(), schema);
            if diffs.is_empty() && live.arrow_schema().fields() == schema.fields() {
                Ok(())
            } else {
                Err(Error::SchemaMismatch {
                    table: table.clone(),
                    differences: if diffs.is_empty() {
                        vec!["column order or nullability differs from the table".into()]
                    } else {
                        diffs
                    },
                })
            }
        };
        let mut external = None;
        let mut lance = None;
        let (operation, schema, files, dropped, primary_key) = match (change, live) {
            (
                Change::Create { .. } | Change::CreateExternal { .. } | Change::CreateLance { .. },
                Some(_),
            ) => {
                return Err(Error::TableExists(table.clone()));
            }
            (
                Change::Append { .. } | Change::CreateOrAppend { .. } | Change::Replace { .. },
                Some(live),
            ) if live.lance.is_some() => {
                return Err(Error::InvalidData {
                    location: table.to_string(),
                    message: "is a Lance table: its rows are written to its Lance dataset".into(),
                });
            }
            (Change::CreateLance { schema, lance: l }, None) => {
                lance = Some(l.clone());
                (Operation::Create, schema.clone(), vec![], false, vec![])
            }
            (
                Change::Append { .. } | Change::CreateOrAppend { .. } | Change::Replace { .. },
                Some(live),
            ) if live.external.is_some() => return Err(Error::ReadOnly(table.clone())),
            (
                Change::CreateExternal {
                    schema,
                    location,
                    files,
                },
                None,
            ) => {
                external = Some(location.clone());
                (
                    Operation::Create,
                    schema.clone(),
                    files.clone(),
                    false,
                    vec![],
                )
            }
            (
                Change::Append { .. }
                | Change::Drop
                | Change::Rewrite { .. }
                | Change::Truncate
                | Change::Restore { .. },
                None,
            ) => {
                return Err(Error::TableNotFound(table.clone()));
            }
            (Change::Restore { .. }, Some(live)) if live.external.is_some() => {
                return Err(Error::ReadOnly(table.clone()));
            }
            (Change::Restore { .. }, Some(live)) if live.lance.is_some() => {
                return Err(Error::InvalidData {
                    location: table.to_string(),
                    message: "is a Lance table: its versions are restored in its Lance dataset"
                        .into(),
                });
            }
            (Change::Restore { to }, Some(_)) => (
                Operation::Restore,
                to.arrow_schema(),
                to.files.clone(),
                false,
                to.primary_key.clone(),
            ),
            (Change::Rewrite { .. } | Change::Truncate, Some(live)) if live.external.is_some() => {
                return Err(Error::ReadOnly(table.clone()));
            }
            (Change::Rewrite { .. } | Change::Truncate, Some(live)) if live.lance.is_some() => {
                return Err(Error::InvalidData {
                    location: table.to_string(),
                    message: "is a Lance table: its rows are changed in its Lance dataset".into(),
                });
            }
            (
                Change::Rewrite {
                    operation,
                    changed,
                    files,
                },
                Some(live),
            ) => {
                let all = rewrite_files(table, live, changed, files)?;
                let key = live.primary_key.clone();
                (*operation, live.arrow_schema(), all, false, key)
            }
            (Change::Truncate, Some(live)) => {
                let key = live.primary_key.clone();
                (Operation::Truncate, live.arrow_schema(), vec![], false, key)
            }
            (
                Change::Create {
                    schema,
                    files,
                    primary_key,
                },
                None,
            ) => {
                for column in primary_key {
                    let problem = match schema.field_with_name(column) {
                        Ok(f) if !f.is_nullable() => continue,
                        Ok(_) => "must be NOT NULL",
                        Err(_) => "does not exist",
                    };
                    return Err(Error::InvalidData {
                        location: table.to_string(),
                        message: format!("primary-key column `{column}` {problem}"),
                    });
                }
                let key = primary_key.clone();
                (Operation::Create, schema.clone(), files.clone(), false, key)
            }
            (Change::CreateOrAppend { schema, files }, None)
            | (Change::Replace { schema, files }, None) => (
                Operation::Create,
                schema.clone(),
                files.clone(),
                false,
                vec![],
            ),
            (
                Change::Append { schema, files } | Change::CreateOrAppend { schema, files },
                Some(live),
            ) => {
                check_append(schema, live)?;
                let mut all = live.files.clone();
                all.extend(files.iter().cloned());
                let key = live.primary_key.clone();
                (Operation::Append, live.arrow_schema(), all, false, key)
            }
            (Change::Replace { schema, files }, Some(_)) => (
                Operation::Replace,
                schema.clone(),
                files.clone(),
                false,
                vec![],
            ),
            (Change::Drop, Some(live)) => {
                (Operation::Drop, live.arrow_schema(), vec![], true, vec![])
            }
        };
        let sources = match (change, live) {
            (
                Change::Append { .. } | Change::CreateOrAppend { .. } | Change::Rewrite { .. },
                Some(live),
            ) => {
                let mut sources = live.sources.clone();
                if let Change::Rewrite {
                    operation: Operation::Compact,
                    changed,
                    ..
                } = change
                {
                    sources.extend(changed.iter().filter_map(|c| c.before.source.clone()));
                }
                sources
            }
            (Change::Restore { to }, Some(_)) => to.sources.clone(),
            _ => Vec::new(),
        };
        let version = base.map_or(Version(1), Version::next);
        let manifest = Manifest {
            format_version: FORMAT_VERSION,
            table: table.clone(),
            version,
            created_at: Utc::now(),
            operation,
            dropped,
            schema: TableSchema::new(schema),
            primary_key,
            external,
            lance,
            sources,
            total_rows: files.iter().map(DataFile::live_rows).sum(),
            total_bytes: files.iter().map(|f| f.size_bytes).sum(),
            files,
            committed_by: commit_user(),
        };
        let manifest = Arc::new(manifest);
        if let Some(check) = check
            && !manifest.dropped
        {
            check(Arc::clone(&manifest)).await?;
        }
        let path = layout::manifest_path(table, version);
        let put = self
            .store()
            .put_opts(
                &path,
                PutPayload::from(manifest.to_json()),
                PutOptions::from(PutMode::Create),
            )
            .await;
        match put {
            Ok(_) => {}
            Err(object_store::Error::AlreadyExists { .. }) => {
                metrics::counter!(COMMIT_CONFLICTS_METRIC, "table" => table.to_string())
                    .increment(1);
                return Err(Error::Conflict {
                    table: table.clone(),
                    version,
                });
            }
            Err(e) => return Err(e.into()),
        }
        let mut heads = self.heads.write().expect("lock");
        let entry = heads
            .entry(table.clone())
            .or_insert_with(|| Arc::clone(&manifest));
        if entry.version < version {
            *entry = Arc::clone(&manifest);
        }
        drop(heads);
        note_commit(&table.to_string(), version.0);
        tracing::info!(%table, %version, ?operation, rows = manifest.total_rows, "committed");
        Ok(manifest)
    }

    /// Writes a stream of record batches to `table` and commits it as one new version.
    ///
    /// `input_schema` is the schema of the stream; it is normalised ([`normalize_schema`]: no
    /// view types). The mode is checked against the current head *before* anything is written:
    /// `Create` of an existing table, `Append` to a missing one, or an append whose columns
    /// differ from the table's fail at once. A batch that does not conform (e.g. a null in a
    /// NOT NULL column), or an error in the stream, aborts the write and deletes what was written.
    ///
    /// # Errors
    /// As [`Catalog::commit`], plus [`Error::InvalidData`] for non-conforming batches and
    /// whatever error the stream yields.
    pub async fn write_stream<S>(
        &self,
        table: &TableRef,
        mode: WriteMode,
        input_schema: &SchemaRef,
        source: Option<SourceFile>,
        batches: S,
    ) -> Result<Arc<Manifest>>
    where
        S: Stream<Item = Result<RecordBatch>> + Unpin,
    {
        self.write_stream_checked(table, mode, input_schema, source, batches, None)
            .await
    }

    /// [`Catalog::write_stream`] with a check between writing and publishing: `check` gets the
    /// manifest the commit is about to publish, on every attempt (see [`CommitCheck`]), and may
    /// refuse the write, which then leaves nothing behind. Used for primary-key uniqueness.
    ///
    /// # Errors
    /// As [`Catalog::write_stream`], plus whatever `check` returns.
    pub async fn write_stream_checked<S>(
        &self,
        table: &TableRef,
        mode: WriteMode,
        input_schema: &SchemaRef,
        source: Option<SourceFile>,
        batches: S,
        check: Option<CommitCheck>,
    ) -> Result<Arc<Manifest>>
    where
        S: Stream<Item = Result<RecordBatch>> + Unpin,
    {
        let written = self
            .write_files(table, mode, input_schema, source, batches)
            .await?;
        self.commit_files(table, mode, written, check).await
    }

    /// The first half of [`Catalog::write_stream_checked`]: checks `mode` against the table
    /// as it is now, then writes `batches` to new Parquet data files, none of them committed.
    /// Hand them to [`Catalog::commit_files`] or [`Catalog::discard_files`].
    ///
    /// # Errors
    /// [`Error::TableExists`], [`Error::TableNotFound`], [`Error::ReadOnly`],
    /// [`Error::SchemaMismatch`] as `mode` demands (before anything is written); the first
    /// error in `batches`, and storage errors (then the files written so far are deleted).
    pub(crate) async fn write_files<S>(
        &self,
        table: &TableRef,
        mode: WriteMode,
        input_schema: &SchemaRef,
        source: Option<SourceFile>,
        mut batches: S,
    ) -> Result<WrittenFiles>
    where
        S: Stream<Item = Result<RecordBatch>> + Unpin,
    {
        let mut writer = self.writer_for(table, mode, input_schema, source).await?;
        while let Some(batch) = batches.next().await {
            let written = match batch {
                Ok(batch) => writer.write(&batch).await,
                Err(e) => Err(e),
            };
            if let Err(e) = written {
                writer.abort().await;
                return Err(e);
            }
        }
        let schema = Arc::clone(writer.schema());
        let files = writer.finish().await?;
        Ok(WrittenFiles { schema, files })
    }

    /// The writer of new data files for `table` under `mode`, with the table's schema when it
    /// exists (else `input_schema`, normalised), after checking `mode` against the table as it
    /// is now.
    ///
    /// # Errors
    /// [`Error::TableExists`], [`Error::TableNotFound`], [`Error::ReadOnly`],
    /// [`Error::SchemaMismatch`] as `mode` demands.
    pub(crate) async fn writer_for(
        &self,
        table: &TableRef,
        mode: WriteMode,
        input_schema: &SchemaRef,
        source: Option<SourceFile>,
    ) -> Result<DataFileWriter> {
        let normalized: SchemaRef = Arc::new(normalize_schema(input_schema));
        let live = match self.table(table).await {
            Ok(m) => Some(m),
            Err(Error::TableNotFound(_)) => None,
            Err(e) => return Err(e),
        };
        let schema = match (mode, &live) {
            (WriteMode::Create, Some(_)) => return Err(Error::TableExists(table.clone())),
            (_, Some(live)) if live.external.is_some() => {
                return Err(Error::ReadOnly(table.clone()));
            }
            (WriteMode::Append | WriteMode::Upsert, None) => {
                return Err(Error::TableNotFound(table.clone()));
            }
            (WriteMode::Upsert, Some(live))
                if live.primary_key.is_empty() || live.lance.is_some() =>
            {
                return Err(Error::InvalidData {
                    location: table.to_string(),
                    message: "an upsert needs a Parquet table with a primary key \
                              (CREATE TABLE ... PRIMARY KEY (...))"
                        .into(),
                });
            }
            (WriteMode::Append | WriteMode::CreateOrAppend | WriteMode::Upsert, Some(live)) => {
                let diffs = schema_differences(&live.arrow_schema(), &normalized);
                if !diffs.is_empty() {
                    return Err(Error::SchemaMismatch {
                        table: table.clone(),
                        differences: diffs,
                    });
                }
                live.arrow_schema()
            }
            _ => Arc::clone(&normalized),
        };
        Ok(self.data_writer(table, schema, source))
    }

    /// The second half of [`Catalog::write_stream_checked`]: commits files from
    /// [`Catalog::write_files`] as one version, as `mode` says. On failure they are deleted.
    ///
    /// # Errors
    /// As [`Catalog::write_stream_checked`].
    pub(crate) async fn commit_files(
        &self,
        table: &TableRef,
        mode: WriteMode,
        written: WrittenFiles,
        check: Option<CommitCheck>,
    ) -> Result<Arc<Manifest>> {
        let WrittenFiles { schema, files } = written;
        let change = match mode {
            WriteMode::Create => Change::Create {
                schema,
                files,
                primary_key: vec![],
            },
            WriteMode::Append => Change::Append { schema, files },
            WriteMode::CreateOrAppend => Change::CreateOrAppend { schema, files },
            WriteMode::Replace => Change::Replace { schema, files },
            WriteMode::Upsert => return self.commit_upsert(table, files, check).await,
        };
        self.commit_checked(table, change, check).await
    }

    /// Deletes files from [`Catalog::write_files`] that will not be committed (best effort;
    /// `Catalog::cleanup` removes any left).
    pub(crate) async fn discard_files(&self, written: WrittenFiles) {
        let paths: Vec<Path> = written
            .files
            .iter()
            .map(|f| Path::from(f.path.as_str()))
            .collect();
        delete_best_effort(self.store(), paths).await;
    }

    /// Commits `files` (written with the table's schema) as an upsert by primary key: on the
    /// head it lands on, the stored rows whose key occurs in `files` get deletion vectors and
    /// `files` are added, one [`Operation::Merge`] version. Lost races are re-applied (the
    /// matching is redone on the new head); on failure `files` are deleted.
    async fn commit_upsert(
        &self,
        table: &TableRef,
        files: Vec<DataFile>,
        check: Option<CommitCheck>,
    ) -> Result<Arc<Manifest>> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = async {
                let head = self.table(table).await?;
                let keys = self.key_set(&head, &files).await?;
                let changed = self.rows_with_keys(&head, &keys).await?;
                let change = Change::Rewrite {
                    operation: Operation::Merge,
                    changed,
                    files: files.clone(),
                };
                let attempt = self.commit_with(table, &change, check.clone()).await;
                if attempt.is_err() {
                    // Only the deletion vectors of this attempt; the data files may be used again.
                    let written: Vec<Path> = change
                        .new_objects()
                        .into_iter()
                        .filter(|p| !files.iter().any(|f| f.path == p.as_ref()))
                        .collect();
                    delete_best_effort(self.store(), written).await;
                }
                attempt
            }
            .await;
            match result {
                Err(Error::ConcurrentChange { .. }) if attempt < Self::COMMIT_ATTEMPTS => {}
                Err(e) => {
                    let paths: Vec<Path> =
                        files.iter().map(|f| Path::from(f.path.as_str())).collect();
                    delete_best_effort(self.store(), paths).await;
                    return Err(e);
                }
                Ok(manifest) => return Ok(manifest),
            }
        }
    }

    /// Deletes data files and deletion vectors that no manifest references and that are older
    /// than `grace` — files left by failed or crashed commits. Younger unreferenced files are kept: they may belong
    /// to a commit still in progress. Files of every version (not only the newest) count as
    /// referenced. With `dry_run` nothing is deleted.
    ///
    /// # Errors
    /// [`Error::Storage`], [`Error::InvalidManifest`]; nothing is deleted from a table whose
    /// manifests cannot all be read.
    pub async fn cleanup(&self, grace: Duration, dry_run: bool) -> Result<CleanupReport> {
        let mut report = CleanupReport::default();
        let cutoff =
            Utc::now() - chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::MAX);
        for schema in self.schemas().await? {
            let listing = self
                .store()
                .list_with_delimiter(Some(&layout::schema_tables_prefix(&schema)))
                .await?;
            for prefix in listing.common_prefixes {
                let Some(table) = prefix.filename().and_then(|n| TableName::new(n).ok()) else {
                    continue;
                };
                let table = TableRef {
                    schema: schema.clone(),
                    table,
                };
                let mut referenced = HashSet::new();
                let manifests: Vec<_> = self
                    .store()
                    .list(Some(&layout::manifests_prefix(&table)))
                    .try_filter_map(
                        |m| async move { Ok(layout::parse_manifest_version(&m.location)) },
                    )
                    .try_collect()
                    .await?;
                for version in manifests {
                    let manifest = self.read_manifest(&table, version).await?;
                    for file in manifest.files {
                        referenced.extend(file.deletion_vector.map(|d| d.path));
                        referenced.insert(file.path);
                    }
                }
                let mut data: Vec<_> = self
                    .store()
                    .list(Some(&layout::data_prefix(&table)))
                    .try_collect()
                    .await?;
                let deletes: Vec<_> = self
                    .store()
                    .list(Some(&layout::deletes_prefix(&table)))
                    .try_collect()
                    .await?;
                data.extend(deletes);
                for object in data {
                    report.files_scanned += 1;
                    if referenced.contains(object.location.as_ref()) {
                        continue;
                    }
                    if object.last_modified > cutoff {
                        report.kept_recent += 1;
                        continue;
                    }
                    if !dry_run {
                        match self.store().delete(&object.location).await {
                            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                            Err(e) => return Err(e.into()),
                        }
                    }
                    tracing::info!(path = %object.location, bytes = object.size, dry_run, "removing unreferenced data file");
                    report.bytes_deleted += object.size;
                    report.deleted.push(object.location.to_string());
                }
            }
        }
        Ok(report)
    }
}

/// The files of `live` with `changed` applied (new deletion vectors, files whose rows are all
/// deleted removed) and `added` appended.
///
/// # Errors
/// [`Error::ConcurrentChange`] when a changed file is no longer in `live` exactly as the change
/// read it (another commit changed or removed it since).
fn rewrite_files(
    table: &TableRef,
    live: &Manifest,
    changed: &[FileChange],
    added: &[DataFile],
) -> Result<Vec<DataFile>> {
    let mut by_path: HashMap<&str, &FileChange> = HashMap::with_capacity(changed.len());
    for change in changed {
        by_path.insert(change.before.path.as_str(), change);
    }
    let mut files = Vec::with_capacity(live.files.len() + added.len());
    let mut seen = 0;
    for file in &live.files {
        match by_path.get(file.path.as_str()) {
            None => files.push(file.clone()),
            Some(change) => {
                if change.before.deletion_vector != file.deletion_vector {
                    return Err(Error::ConcurrentChange {
                        table: table.clone(),
                        version: live.version,
                        path: file.path.clone(),
                    });
                }
                seen += 1;
                files.extend(change.after.iter().cloned());
            }
        }
    }
    if seen != by_path.len() {
        let gone = changed
            .iter()
            .find(|c| !live.files.iter().any(|f| f.path == c.before.path))
            .map(|c| c.before.path.clone())
            .unwrap_or_default();
        return Err(Error::ConcurrentChange {
            table: table.clone(),
            version: live.version,
            path: gone,
        });
    }
    files.extend(added.iter().cloned());
    Ok(files)
}

/// The server awaits these futures inside `Send` gRPC handlers; this fails to compile if one of
/// them stops being `Send`.
#[cfg(test)]
mod send_guard {
    use super::*;
    fn is_send<T: Send>(_: T) {}
    #[allow(dead_code)]
    fn futures_are_send(c: &Catalog, t: &TableRef, s: &SchemaRef) {
        is_send(c.table(t));
        is_send(c.latest(t));
        is_send(c.commit(t, Change::Drop));
        is_send(c.write_stream(t, WriteMode::Create, s, None, futures::stream::empty()));
    }
}

tokio::task_local! {
    /// Who the current task commits for, and where its commits are noted (see [`as_user`]).
    static COMMIT_SCOPE: CommitScope;
}

/// One commit noted in a [`CommitScope`]: the table (`schema.table`) and the version made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    /// The table, qualified (`schema.table`).
    pub table: String,
    /// The version the commit made (for Lance tables, the Lance dataset version).
    pub version: u64,
}

/// The user a task commits for and the commits it made: the server opens one per request, so
/// its audit record can name the tables written and their versions.
#[derive(Debug, Clone, Default)]
pub struct CommitScope {
    /// The user commits are recorded as made by ([`Manifest::committed_by`]).
    pub user: String,
    commits: Arc<std::sync::Mutex<Vec<Committed>>>,
}

impl CommitScope {
    /// A scope for `user` with no commits yet.
    pub fn new(user: String) -> Self {
        Self {
            user,
            commits: Arc::default(),
        }
    }

    /// The commits made in this scope so far (also those of tasks it was carried into with
    /// [`in_scope`]), in commit order.
    pub fn commits(&self) -> Vec<Committed> {
        self.commits.lock().expect("lock").clone()
    }
}

/// Runs `work` with every catalog commit it makes (in this task, not in tasks it spawns)
/// recorded as made by `user` ([`Manifest::committed_by`]): the server wraps each
/// authenticated request in it, so the user need not be passed through every write path.
pub async fn as_user<F: std::future::Future>(user: String, work: F) -> F::Output {
    in_scope(CommitScope::new(user), work).await
}

/// Runs `work` in `scope`: its commits are recorded as made by the scope's user and noted in
/// the scope ([`CommitScope::commits`]). Carries a request's scope into a spawned task.
pub async fn in_scope<F: std::future::Future>(scope: CommitScope, work: F) -> F::Output {
    COMMIT_SCOPE.scope(scope, work).await
}

/// The scope the current task commits in, if any (to carry it into a spawned task).
pub fn commit_scope() -> Option<CommitScope> {
    COMMIT_SCOPE.try_with(Clone::clone).ok()
}

/// The user [`as_user`] set for the current task, if any.
pub fn commit_user() -> Option<String> {
    COMMIT_SCOPE.try_with(|scope| scope.user.clone()).ok()
}

/// Notes a commit of `table` (qualified) at `version` in the current task's [`CommitScope`],
/// if it has one, and counts it in the `lakehouse_commits_total` metric. The catalog notes
/// its own commits; Lance tables (in `lakehouse-vector`) note theirs with this.
pub fn note_commit(table: &str, version: u64) {
    metrics::counter!(COMMITS_METRIC, "table" => table.to_string()).increment(1);
    let _ = COMMIT_SCOPE.try_with(|scope| {
        scope.commits.lock().expect("lock").push(Committed {
            table: table.to_string(),
            version,
        })
    });
}

/// Counter: commits published, by `table` (`schema.table`); one per new table version.
pub const COMMITS_METRIC: &str = "lakehouse_commits_total";
/// Counter: commit attempts that lost the race for their version to another writer, by
/// `table` (each is retried up to [`Catalog::COMMIT_ATTEMPTS`] times).
pub const COMMIT_CONFLICTS_METRIC: &str = "lakehouse_commit_conflicts_total";
