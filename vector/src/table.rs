//! Lance tables: datasets under the catalog's storage root, written and read with Lance.
//!
//! The catalog records a Lance table's existence, schema, location and vector columns
//! (`lakehouse_catalog::LanceTable`); the rows live in the Lance dataset, whose own versioned
//! manifest is their source of truth — an append is exactly one Lance commit. Lance builds its
//! own object store (object_store 0.14) from the root URL plus the storage options the catalog
//! derived from the same configuration ([`LanceStore`]).

use std::collections::HashMap;
use std::sync::Arc;

use arrow::datatypes::{DataType, Schema};
use datafusion::catalog::TableProvider;
use datafusion::execution::SendableRecordBatchStream;
use lakehouse_catalog::{StorageLocation, VectorColumn, VectorMetric};
use lance::dataset::builder::DatasetBuilder;
use lance::dataset::{InsertBuilder, WriteMode, WriteParams};
use lance::io::ObjectStoreParams;

use crate::error::{Error, Result};

/// The Lance transaction property that records the user who committed: set on every commit
/// a user's request makes (creates, appends, deletes, updates, MERGE, index builds); not on
/// compactions and restores (Lance's `compact_files` and `restore` take no properties).
pub const COMMITTED_BY: &str = "lakehouse.committed_by";

/// The transaction properties that record the committing user ([`COMMITTED_BY`]), when the
/// current task commits for one (`lakehouse_catalog::as_user`).
fn committed_by() -> Option<Arc<HashMap<String, String>>> {
    lakehouse_catalog::commit_user()
        .map(|user| Arc::new(HashMap::from([(COMMITTED_BY.to_string(), user)])))
}

/// Deletes the rows of `dataset` that `filter` selects (a DataFusion expression over the
/// dataset's columns, `_rowid` included), as one Lance commit: Lance's `DeleteBuilder`
/// staged, then committed with the committing user ([`COMMITTED_BY`]) and the deleted
/// rows' addresses (for Lance's row-level conflict resolution). Returns the rows deleted.
///
/// # Errors
/// [`Error::Lance`], e.g. when a concurrent commit conflicts (nothing is applied then).
pub async fn delete_rows(
    dataset: Arc<lance::Dataset>,
    filter: datafusion::prelude::Expr,
) -> Result<u64> {
    use lance::dataset::{CommitBuilder, DeleteBuilder};
    let staged = DeleteBuilder::from_expr(Arc::clone(&dataset), filter)
        .execute_uncommitted()
        .await?;
    if staged.num_deleted_rows == 0 {
        return Ok(0);
    }
    let mut transaction = staged.transaction;
    transaction.transaction_properties = committed_by();
    let mut commit = CommitBuilder::new(dataset);
    if let Some(rows) = staged.affected_rows {
        commit = commit.with_affected_rows(rows);
    }
    commit.execute(transaction).await?;
    Ok(staged.num_deleted_rows)
}

/// Where Lance datasets live: the catalog's storage root and its storage options.
#[derive(Debug, Clone)]
pub struct LanceStore {
    root: url::Url,
    options: HashMap<String, String>,
}

impl LanceStore {
    /// Lance datasets under `location`'s root, with its storage options.
    pub fn new(location: &StorageLocation) -> Self {
        Self {
            root: location.url.clone(),
            options: location.options.clone(),
        }
    }

    /// The dataset URI of `location` (a path relative to the root).
    pub fn uri(&self, location: &str) -> String {
        format!("{}{}", self.root, location.trim_start_matches('/'))
    }

    fn write_params(&self, mode: WriteMode) -> WriteParams {
        let store_params = ObjectStoreParams {
            storage_options_accessor: (!self.options.is_empty()).then(|| {
                Arc::new(lance::io::StorageOptionsAccessor::with_static_options(
                    self.options.clone(),
                ))
            }),
            ..Default::default()
        };
        WriteParams {
            mode,
            store_params: Some(store_params),
            transaction_properties: committed_by(),
            ..Default::default()
        }
    }

    /// Writes a new dataset at `location` from `batches` (one Lance commit).
    ///
    /// # Errors
    /// [`Error::Lance`] when writing fails (e.g. the dataset exists, a batch does not match
    /// the stream's schema).
    pub async fn create(
        &self,
        location: &str,
        batches: SendableRecordBatchStream,
    ) -> Result<lance::Dataset> {
        self.write(location, batches, WriteMode::Create).await
    }

    /// Appends `batches` to the dataset at `location` as one Lance commit; returns the dataset
    /// at its new version.
    ///
    /// # Errors
    /// [`Error::Lance`], e.g. when the batches' schema differs from the dataset's.
    pub async fn append(
        &self,
        location: &str,
        batches: SendableRecordBatchStream,
    ) -> Result<lance::Dataset> {
        self.write(location, batches, WriteMode::Append).await
    }

    async fn write(
        &self,
        location: &str,
        batches: SendableRecordBatchStream,
        mode: WriteMode,
    ) -> Result<lance::Dataset> {
        let uri = self.uri(location);
        let params = self.write_params(mode);
        Ok(InsertBuilder::new(uri.as_str())
            .with_params(&params)
            .execute_stream(batches)
            .await?)
    }

    /// Opens the newest version of the dataset at `location`.
    ///
    /// # Errors
    /// [`Error::Lance`] when it cannot be read.
    pub async fn open(&self, location: &str) -> Result<Arc<lance::Dataset>> {
        Ok(Arc::new(self.load(location).await?))
    }

    /// Opens the dataset at `location` at Lance dataset version `version`, or its newest.
    ///
    /// # Errors
    /// [`Error::Lance`] when it cannot be read or has no such version (e.g. removed by
    /// cleanup).
    pub async fn open_at(
        &self,
        location: &str,
        version: Option<u64>,
    ) -> Result<Arc<lance::Dataset>> {
        let mut builder = DatasetBuilder::from_uri(self.uri(location))
            .with_storage_options(self.options.clone())
            .with_session(lance_session());
        if let Some(version) = version {
            builder = builder.with_version(version);
        }
        Ok(Arc::new(builder.load().await?))
    }

    /// Makes version `version` of the dataset at `location` the newest again (one Lance
    /// commit, Lance's `Dataset::restore`); answers the rows it holds.
    ///
    /// # Errors
    /// [`Error::Lance`] when the dataset has no such version (e.g. removed by cleanup).
    pub async fn restore(&self, location: &str, version: u64) -> Result<usize> {
        let mut dataset = self.load(location).await?.checkout_version(version).await?;
        dataset.restore().await?;
        Ok(dataset.count_rows(None).await?)
    }

    /// The newest version of the dataset at `location`, owned (for index changes).
    async fn load(&self, location: &str) -> Result<lance::Dataset> {
        Ok(DatasetBuilder::from_uri(self.uri(location))
            .with_storage_options(self.options.clone())
            .with_session(lance_session())
            .load()
            .await?)
    }

    /// The dataset at `location` as a DataFusion `TableProvider` (Lance's own, with filter and
    /// projection pushdown), without `_rowid`/`_rowaddr` columns.
    ///
    /// # Errors
    /// As [`LanceStore::open`].
    pub async fn provider(&self, location: &str) -> Result<Arc<dyn TableProvider>> {
        let dataset = self.open(location).await?;
        Ok(Arc::new(lance::datafusion::LanceTableProvider::new(
            dataset, false, false,
        )))
    }

    /// Deletes the rows at `row_addrs` (Lance row addresses: fragment id in the high 32 bits,
    /// offset in the low 32) of `dataset` and appends `batches` (rows of the dataset's
    /// schema), as one Lance commit: an `Update` transaction in `RewriteRows` mode, as Lance's
    /// own `UpdateBuilder` commits — new deletion files for the touched fragments, fragments
    /// whose rows are all deleted removed, the new rows as new fragments. Used where a
    /// statement (MERGE) does not map onto Lance's builders. Returns the new dataset.
    ///
    /// # Errors
    /// [`Error::Lance`], e.g. when a concurrent commit conflicts (nothing is applied then).
    pub async fn delete_and_append(
        &self,
        dataset: Arc<lance::Dataset>,
        row_addrs: &lakehouse_catalog::RoaringTreemap,
        batches: Vec<arrow::array::RecordBatch>,
    ) -> Result<Arc<lance::Dataset>> {
        use lance::dataset::CommitBuilder;
        use lance::dataset::transaction::{Operation, Transaction, UpdateMode};
        let mut updated_fragments = Vec::new();
        let mut removed_fragment_ids = Vec::new();
        for (fragment_id, offsets) in row_addrs.bitmaps() {
            let fragment = dataset
                .get_fragment(fragment_id as usize)
                .ok_or_else(|| lance::Error::internal(format!("no fragment {fragment_id}")))?;
            match fragment.extend_deletions(offsets.iter()).await? {
                Some(fragment) => updated_fragments.push(fragment.metadata().clone()),
                None => removed_fragment_ids.push(u64::from(fragment_id)),
            }
        }
        let mut new_fragments = Vec::new();
        if batches.iter().any(|b| b.num_rows() > 0) {
            let transaction = InsertBuilder::new(Arc::clone(&dataset))
                .with_params(&self.write_params(WriteMode::Append))
                .execute_uncommitted(batches)
                .await?;
            match transaction.operation {
                Operation::Append { fragments } => new_fragments = fragments,
                other => {
                    return Err(Error::Lance(lance::Error::internal(format!(
                        "an uncommitted append gave {other:?}"
                    ))));
                }
            }
        }
        let operation = Operation::Update {
            removed_fragment_ids,
            updated_fragments,
            new_fragments,
            fields_modified: vec![],
            compacted_sstables: Vec::new(),
            fields_for_preserving_frag_bitmap: vec![],
            update_mode: Some(UpdateMode::RewriteRows),
            inserted_rows_filter: None,
            updated_fragment_offsets: None,
        };
        let mut transaction = Transaction::new(dataset.manifest.version, operation, None);
        transaction.transaction_properties = committed_by();
        Ok(Arc::new(
            CommitBuilder::new(dataset).execute(transaction).await?,
        ))
    }

    /// Compacts the dataset at `location` with Lance's `compact_files` and its defaults
    /// (fragments toward 1M rows; deletions materialized in fragments with more than 10 %
    /// deleted; indexes remapped), one Lance commit; returns the fragments rewritten (0:
    /// nothing to do, no commit).
    ///
    /// # Errors
    /// [`Error::Lance`].
    pub async fn compact(&self, location: &str) -> Result<usize> {
        let mut dataset = self.load(location).await?;
        let metrics = lance::dataset::optimize::compact_files(
            &mut dataset,
            lance::dataset::optimize::CompactionOptions::default(),
            None,
        )
        .await?;
        Ok(metrics.fragments_removed)
    }

    /// Removes the dataset versions at `location` older than `retain` and the files only they
    /// reference, with Lance's `cleanup_old_versions` (the newest version always stays);
    /// returns the files removed (data, deletion, index and transaction files) — with
    /// `dry_run`, those that would be, from Lance's explanation of the cleanup.
    ///
    /// # Errors
    /// [`Error::Lance`].
    pub async fn cleanup(
        &self,
        location: &str,
        retain: std::time::Duration,
        dry_run: bool,
    ) -> Result<u64> {
        use lance::dataset::cleanup::CleanupPolicyBuilder;
        let dataset = self.load(location).await?;
        let before = chrono::Utc::now()
            - chrono::Duration::from_std(retain).unwrap_or(chrono::Duration::MAX);
        let policy = CleanupPolicyBuilder::default()
            .before_timestamp(before)
            .build();
        let stats = if dry_run {
            dataset.cleanup(policy).explain().await?.stats
        } else {
            dataset.cleanup_with_policy(policy).await?
        };
        Ok(stats.data_files_removed
            + stats.deletion_files_removed
            + stats.index_files_removed
            + stats.transaction_files_removed)
    }

    /// Deletes the dataset's files (after a failed create; best effort).
    pub async fn remove(&self, location: &str) {
        let uri = self.uri(location);
        if let Ok(url) = url::Url::parse(&uri)
            && url.scheme() == "file"
            && let Ok(path) = url.to_file_path()
        {
            let _ = tokio::fs::remove_dir_all(path).await;
        }
    }
}

/// Lance's distance type for `metric`.
pub fn distance_type(metric: VectorMetric) -> lance_linalg::distance::DistanceType {
    use lance_linalg::distance::DistanceType;
    match metric {
        VectorMetric::Cosine => DistanceType::Cosine,
        VectorMetric::L2 => DistanceType::L2,
        VectorMetric::Dot => DistanceType::Dot,
    }
}

/// The one Lance session (index and metadata caches, bounded in bytes by
/// [`size_lance_caches`], else Lance's defaults) shared by every dataset this process opens, so an index is read from storage once rather
/// than on every query. Caches are keyed by dataset and version, so new versions are seen.
fn lance_session() -> Arc<lance::session::Session> {
    Arc::clone(LANCE_SESSION.get_or_init(|| Arc::new(lance::session::Session::default())))
}

static LANCE_SESSION: std::sync::OnceLock<Arc<lance::session::Session>> =
    std::sync::OnceLock::new();

/// Sizes the process's Lance session caches: `index_bytes` for the index cache (IVF
/// partitions, HNSW graphs, FTS posting lists), `metadata_bytes` for manifests and fragment
/// metadata. Takes effect only before the first dataset is opened (the session is
/// process-wide); false when it was already created.
pub fn size_lance_caches(index_bytes: u64, metadata_bytes: u64) -> bool {
    let size = |b: u64| usize::try_from(b).unwrap_or(usize::MAX);
    LANCE_SESSION
        .set(Arc::new(lance::session::Session::new(
            size(index_bytes),
            size(metadata_bytes),
            Arc::new(lance::io::ObjectStoreRegistry::default()),
        )))
        .is_ok()
}

/// The vector columns of `schema`: every `FixedSizeList<Float32, D>` column, with `metric` and
/// the embedding `model` that made them: `model` when given, else the model named in the
/// field's metadata by `embed` ([`crate::embed::MODEL_METADATA_KEY`]), else none.
pub fn vector_columns(
    schema: &Schema,
    metric: VectorMetric,
    model: Option<&str>,
) -> Vec<VectorColumn> {
    schema
        .fields()
        .iter()
        .filter_map(|field| match field.data_type() {
            DataType::FixedSizeList(item, dimension) if item.data_type() == &DataType::Float32 => {
                Some(VectorColumn {
                    name: field.name().clone(),
                    dimension: usize::try_from(*dimension).unwrap_or(0),
                    metric,
                    model: model
                        .or_else(|| {
                            field
                                .metadata()
                                .get(crate::embed::MODEL_METADATA_KEY)
                                .map(String::as_str)
                        })
                        .map(String::from),
                })
            }
            _ => None,
        })
        .collect()
}

/// Checks that every column of `schema` can be stored in Lance.
///
/// # Errors
/// [`Error::Config`] naming a `FixedSizeList` column whose items are not `Float32` (vectors
/// must be `FixedSizeList<Float32, D>`).
pub fn check_schema(schema: &Schema) -> Result<()> {
    for field in schema.fields() {
        if let DataType::FixedSizeList(item, _) = field.data_type()
            && !matches!(item.data_type(), DataType::Float32)
        {
            return Err(Error::Config(format!(
                "column {}: vector columns must be FixedSizeList<Float32, D>, not {}",
                field.name(),
                field.data_type()
            )));
        }
    }
    Ok(())
}

/// The indexes `CREATE INDEX name ON table USING KIND (column) WITH (...)` builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexKind {
    /// IVF partitions with product-quantised vectors (`num_partitions`, `num_sub_vectors`
    /// which must divide the dimension, `num_bits` 8).
    IvfPq,
    /// IVF partitions with exact vectors (`num_partitions`).
    IvfFlat,
    /// IVF partitions with an HNSW graph over scalar-quantised vectors (`num_partitions`).
    IvfHnswSq,
    /// A full-text (BM25 inverted) index on a text column.
    Fts,
}

impl IndexKind {
    /// The SQL name (`IVF_PQ`, `IVF_FLAT`, `IVF_HNSW_SQ`, `FTS`).
    pub fn name(self) -> &'static str {
        match self {
            IndexKind::IvfPq => "IVF_PQ",
            IndexKind::IvfFlat => "IVF_FLAT",
            IndexKind::IvfHnswSq => "IVF_HNSW_SQ",
            IndexKind::Fts => "FTS",
        }
    }
}

impl std::str::FromStr for IndexKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_uppercase().as_str() {
            "IVF_PQ" => Ok(IndexKind::IvfPq),
            "IVF_FLAT" => Ok(IndexKind::IvfFlat),
            "IVF_HNSW_SQ" => Ok(IndexKind::IvfHnswSq),
            "FTS" | "INVERTED" => Ok(IndexKind::Fts),
            other => Err(Error::Config(format!(
                "unknown index type {other}; use IVF_PQ, IVF_FLAT, IVF_HNSW_SQ or FTS"
            ))),
        }
    }
}

/// The default number of PQ sub-vectors for dimension `d`: the largest divisor of `d` that is
/// at most [`MAX_DEFAULT_SUB_VECTORS`] and leaves at least 2 dimensions per sub-vector
/// (GloVe's 50 → 25, MiniLM's 384 → 96, 1536 → 96). Fine sub-vectors keep PQ's distance error
/// small enough that, with the search defaults ([`DEFAULT_NPROBES`], [`DEFAULT_REFINE_FACTOR`]),
/// recall@10 on 100k GloVe vectors is ≥ 0.95 (`tests/python/test_vector.py`).
pub fn default_sub_vectors(d: usize) -> usize {
    (1..=d.clamp(1, MAX_DEFAULT_SUB_VECTORS))
        .rev()
        .find(|m| d.is_multiple_of(*m) && d / m >= 2)
        .unwrap_or(1)
}

/// The most PQ sub-vectors [`default_sub_vectors`] picks (PQ code bytes per vector at 8 bits).
pub const MAX_DEFAULT_SUB_VECTORS: usize = 96;

/// IVF partitions `vector_search` probes when the query does not say (`nprobes`).
pub const DEFAULT_NPROBES: usize = 32;

/// `vector_search` re-ranks `k * refine_factor` index candidates by exact distance when the
/// query does not say (`refine_factor`; 0 turns re-ranking off). Flat scans are exact anyway.
pub const DEFAULT_REFINE_FACTOR: u32 = 10;

/// Logs the stages of an index build (Lance's `IndexBuildProgress`: e.g. `train_ivf`,
/// `shuffle`, `merge_partitions` for vector indexes) at info level, with the seconds since the
/// build started; progress within a stage at debug level.
#[derive(Debug)]
struct LogProgress {
    index: String,
    started: std::time::Instant,
}

#[async_trait::async_trait]
impl lance_index::progress::IndexBuildProgress for LogProgress {
    async fn stage_start(&self, stage: &str, total: Option<u64>, unit: &str) -> lance::Result<()> {
        let seconds = self.started.elapsed().as_secs_f64();
        tracing::info!(index = %self.index, stage, ?total, unit, seconds, "index build stage started");
        Ok(())
    }

    async fn stage_progress(&self, stage: &str, completed: u64) -> lance::Result<()> {
        tracing::debug!(index = %self.index, stage, completed, "index build progress");
        Ok(())
    }

    async fn stage_complete(&self, stage: &str) -> lance::Result<()> {
        let seconds = self.started.elapsed().as_secs_f64();
        tracing::info!(index = %self.index, stage, seconds, "index build stage done");
        Ok(())
    }
}

/// One index of a Lance dataset, as [`LanceStore::indexes`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexInfo {
    /// The index name.
    pub name: String,
    /// The indexed columns.
    pub columns: Vec<String>,
    /// Lance's short type name, e.g. `IVF_PQ`, `IVF_HNSW_SQ`, `IVF_FLAT`, `Inverted`.
    pub index_type: String,
    /// Rows the index covers (approximate: may include deleted rows); rows appended since
    /// the build are searched unindexed.
    pub indexed_rows: u64,
}

/// What `CREATE INDEX` asks for.
#[derive(Debug, Clone)]
pub struct IndexSpec {
    /// Index name (an existing index of that name is replaced).
    pub name: String,
    /// The kind of index.
    pub kind: IndexKind,
    /// The indexed column.
    pub column: String,
    /// Distance of a vector index (the column's metric).
    pub metric: VectorMetric,
    /// Dimension of a vector column (0 for FTS).
    pub dimension: usize,
    /// The `WITH (key = value, ...)` settings.
    pub options: HashMap<String, String>,
}

impl LanceStore {
    /// Builds (or rebuilds) the index `spec` describes on the dataset at `location` and
    /// commits it (one Lance commit); returns the seconds it took.
    ///
    /// # Errors
    /// [`Error::Config`] for unknown or invalid options (naming them, e.g. a
    /// `num_sub_vectors` that does not divide the dimension); [`Error::Lance`] when building
    /// fails.
    pub async fn create_index(&self, location: &str, spec: &IndexSpec) -> Result<f64> {
        let started = std::time::Instant::now();
        let result = self.build_index(location, spec).await;
        crate::observe::index_build(spec.kind.name(), started, &result);
        result
    }

    /// [`Self::create_index`] without its metrics.
    async fn build_index(&self, location: &str, spec: &IndexSpec) -> Result<f64> {
        let IndexSpec {
            name,
            kind,
            column,
            metric,
            dimension,
            options,
        } = spec;
        let (name, kind, column, metric, dimension) =
            (name.as_str(), *kind, column.as_str(), *metric, *dimension);
        use lance::index::DatasetIndexExt;
        use lance::index::vector::VectorIndexParams;
        use lance_index::IndexType;
        let started = std::time::Instant::now();
        let number = |key: &str| -> Result<Option<usize>> {
            options
                .get(key)
                .map(|v| {
                    v.parse::<usize>().ok().filter(|n| *n > 0).ok_or_else(|| {
                        Error::Config(format!("{key} must be a positive integer, not {v}"))
                    })
                })
                .transpose()
        };
        let allowed: &[&str] = match kind {
            IndexKind::IvfPq => &[
                "num_partitions",
                "num_sub_vectors",
                "num_bits",
                "max_iterations",
            ],
            IndexKind::IvfFlat | IndexKind::IvfHnswSq => &["num_partitions"],
            IndexKind::Fts => &[],
        };
        if let Some(key) = options.keys().find(|k| !allowed.contains(&k.as_str())) {
            return Err(Error::Config(format!(
                "unknown index option {key} for {kind:?}; allowed: {}",
                allowed.join(", ")
            )));
        }
        let mut dataset = self.load(location).await?;
        // √rows partitions unless given: count rows only for a vector index without the option.
        let partitions = match (kind, number("num_partitions")?) {
            (IndexKind::Fts, _) => 0,
            (_, Some(n)) => n,
            (_, None) => {
                let rows = dataset.count_rows(None).await?;
                ((rows as f64).sqrt() as usize).clamp(1, 256)
            }
        };
        let distance = distance_type(metric);
        let (index_type, params): (IndexType, Box<dyn lance_index::IndexParams>) = match kind {
            IndexKind::IvfPq => {
                let sub =
                    number("num_sub_vectors")?.unwrap_or_else(|| default_sub_vectors(dimension));
                if !dimension.is_multiple_of(sub) {
                    return Err(Error::Config(format!(
                        "num_sub_vectors {sub} must divide the dimension {dimension}"
                    )));
                }
                let bits = number("num_bits")?.unwrap_or(8);
                let bits = u8::try_from(bits)
                    .map_err(|_| Error::Config("num_bits must be at most 8".into()))?;
                let iterations = number("max_iterations")?.unwrap_or(50);
                let params = VectorIndexParams::ivf_pq(partitions, bits, sub, distance, iterations);
                (IndexType::Vector, Box::new(params))
            }
            IndexKind::IvfFlat => (
                IndexType::Vector,
                Box::new(VectorIndexParams::ivf_flat(partitions, distance)),
            ),
            IndexKind::IvfHnswSq => (
                IndexType::Vector,
                Box::new(VectorIndexParams::with_ivf_hnsw_sq_params(
                    distance,
                    lance_index::vector::ivf::IvfBuildParams::new(partitions),
                    lance_index::vector::hnsw::builder::HnswBuildParams::default(),
                    lance_index::vector::sq::builder::SQBuildParams::default(),
                )),
            ),
            IndexKind::Fts => (
                IndexType::Inverted,
                Box::new(lance_index::scalar::InvertedIndexParams::default()),
            ),
        };
        let columns = [column];
        let mut builder = dataset
            .create_index_builder(&columns, index_type, params.as_ref())
            .name(name.into())
            .replace(true)
            .progress(Arc::new(LogProgress {
                index: name.to_string(),
                started,
            }));
        if let Some(properties) = committed_by() {
            builder = builder.transaction_properties(properties.as_ref().clone());
        }
        builder.await?;
        Ok(started.elapsed().as_secs_f64())
    }

    /// The indexes of the dataset at `location` (system indexes left out), by name.
    ///
    /// # Errors
    /// [`Error::Lance`] when the dataset or its index metadata cannot be read.
    pub async fn indexes(&self, location: &str) -> Result<Vec<IndexInfo>> {
        index_infos(&*self.open(location).await?).await
    }

    /// Drops index `name` of the dataset at `location` (one Lance commit).
    ///
    /// # Errors
    /// [`Error::Lance`] when the dataset has no such index or cannot be written.
    pub async fn drop_index(&self, location: &str, name: &str) -> Result<()> {
        use lance::index::DatasetIndexExt;
        let mut dataset = self.load(location).await?;
        dataset.drop_index(name).await?;
        Ok(())
    }
}

/// The indexes of `dataset` at its checked-out version (system indexes left out), by name.
///
/// # Errors
/// [`Error::Lance`] when its index metadata cannot be read.
pub async fn index_infos(dataset: &lance::Dataset) -> Result<Vec<IndexInfo>> {
    use lance::index::DatasetIndexExt;
    let schema = dataset.schema();
    let mut indexes: Vec<IndexInfo> = dataset
        .describe_indices(None)
        .await?
        .iter()
        .filter(|i| !i.name().starts_with("__"))
        .map(|i| IndexInfo {
            name: i.name().to_string(),
            columns: i
                .field_ids()
                .iter()
                .filter_map(|id| {
                    schema
                        .field_by_id(i32::try_from(*id).ok()?)
                        .map(|f| f.name.clone())
                })
                .collect(),
            index_type: i.index_type().to_string(),
            indexed_rows: i.rows_indexed(),
        })
        .collect();
    indexes.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(indexes)
}
