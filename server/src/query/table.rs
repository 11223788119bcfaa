//! [`VersionTable`]: a DataFusion `TableProvider` over one committed table version.

use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use datafusion::arrow::array::{Array, UInt64Array};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::Session;
use datafusion::catalog::TableProvider;
use datafusion::common::stats::Precision;
use datafusion::common::{DataFusionError, Result, ScalarValue, Statistics, project_schema};
use datafusion::datasource::TableType;
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::parquet::{ParquetAccessPlan, RowGroupAccess};
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder};
use datafusion::datasource::table_schema::TableSchema;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::metrics::{ExecutionPlanMetricsSet, MetricBuilder};
use lakehouse_catalog::Manifest;

/// Reads exactly the Parquet files one [`Manifest`] lists — never by listing storage — through
/// DataFusion's Parquet scan (`DataSourceExec` with a `ParquetSource`).
///
/// # Projection / Filters / Limit
/// Projection is pushed into the Parquet reader. Filters are reported `Inexact`: DataFusion keeps
/// its `FilterExec` and the physical optimizer pushes the predicate into the Parquet source for
/// row-group and page pruning. The limit is passed to the scan as a hint.
///
/// # Deleted rows
/// A file with a deletion vector is scanned with a `ParquetAccessPlan` built from the vector
/// and the file's recorded row-group sizes: row groups whose rows are all deleted are skipped,
/// and in the others a `RowSelection` skips the deleted rows (whole pages are not decoded when
/// the page index allows). The deletion vectors are read when the scan is planned.
///
/// # File pruning
/// Files whose manifest statistics (per-column min/max/null counts) prove the filters match
/// no row are left out of the scan when it is planned, never opened; `EXPLAIN ANALYZE` counts
/// them in the `DataSourceExec`'s `files_ranges_pruned_statistics` metric.
///
/// # Statistics
/// The exact live row count, the bytes on storage, and per column the min/max/null count the
/// manifest records (inexact: deleted rows count), for the table and for each file, so the
/// optimizer can estimate filters and pick join sides, and dynamic filters can skip files.
#[derive(Debug)]
pub struct VersionTable {
    manifest: Arc<Manifest>,
    store_url: ObjectStoreUrl,
    /// The manifest's schema with string and binary columns as view types.
    schema: SchemaRef,
    /// Per column, the manifest's statistics over the files (built when first asked for).
    bounds: OnceLock<Vec<ColumnBounds>>,
}

/// One column's manifest statistics, one entry per file of the manifest, typed as the column
/// ([`ManifestStatistics`]): `min`/`max` are `None` for a type without recorded bounds, and an
/// entry is null where a file records no bound (or one that does not cast); `nulls` is
/// UInt64, null where a file records no count.
#[derive(Debug)]
struct ColumnBounds {
    min: Option<datafusion::arrow::array::ArrayRef>,
    max: Option<datafusion::arrow::array::ArrayRef>,
    nulls: datafusion::arrow::array::ArrayRef,
}

impl VersionTable {
    /// A provider for `manifest`, whose file paths are relative to the object store registered
    /// in the session's runtime under `store_url`.
    pub fn new(manifest: Arc<Manifest>, store_url: ObjectStoreUrl) -> Self {
        let schema = view_schema(&manifest.arrow_schema());
        Self {
            manifest,
            store_url,
            schema,
            bounds: OnceLock::new(),
        }
    }

    /// Whether its scan can run on a distributed worker: Parquet files in our own storage (an
    /// external table's files are absolute URLs a worker may not reach the same way).
    pub fn distributable(&self) -> bool {
        self.manifest.external.is_none()
    }

    /// The version's files that have a deletion vector, without their column statistics: what
    /// a worker needs to skip the deleted rows ([`access_plan`]).
    pub fn files_with_deletes(&self) -> impl Iterator<Item = lakehouse_catalog::DataFile> + '_ {
        self.manifest
            .files
            .iter()
            .filter(|f| f.deletion_vector.is_some())
            .map(|f| lakehouse_catalog::DataFile {
                statistics: Default::default(),
                source: None,
                ..f.clone()
            })
    }

    /// The manifest's statistics per column (see [`ColumnBounds`]), cast once per provider.
    fn bounds(&self) -> &[ColumnBounds] {
        use datafusion::common::pruning::PruningStatistics;
        self.bounds.get_or_init(|| {
            let files = ManifestStatistics {
                manifest: &self.manifest,
                schema: &self.schema,
            };
            self.schema
                .fields()
                .iter()
                .map(|field| {
                    let column = datafusion::common::Column::new_unqualified(field.name());
                    ColumnBounds {
                        min: files.min_values(&column),
                        max: files.max_values(&column),
                        nulls: files.null_counts(&column).expect("always counted"),
                    }
                })
                .collect()
        })
    }

    /// The table's statistics: exact live rows, bytes on storage, and per column the
    /// smallest min, largest max and summed null count over all files (inexact: deleted rows
    /// count; absent when some file lacks the value).
    fn table_statistics(&self) -> Statistics {
        use datafusion::common::ColumnStatistics;
        use std::cmp::Ordering;
        let column_statistics = self
            .bounds()
            .iter()
            .map(|b| {
                let mut column = ColumnStatistics::new_unknown();
                if let Some(min) = &b.min {
                    column.min_value = extreme(min, Ordering::Less);
                }
                if let Some(max) = &b.max {
                    column.max_value = extreme(max, Ordering::Greater);
                }
                if b.nulls.null_count() == 0 {
                    let counts = b.nulls.as_any().downcast_ref::<UInt64Array>();
                    let total: u64 = counts.map_or(0, |c| c.values().iter().sum());
                    column.null_count = Precision::Inexact(total as usize);
                }
                column
            })
            .collect();
        Statistics {
            num_rows: Precision::Exact(self.manifest.total_rows as usize),
            total_byte_size: Precision::Inexact(self.manifest.total_bytes as usize),
            column_statistics,
        }
    }

    /// The statistics of the manifest's file number `index`: its live rows (exact), its size
    /// (inexact, bytes on storage) and its columns' min/max/null count from the manifest.
    fn file_statistics(&self, index: usize) -> Statistics {
        use datafusion::common::ColumnStatistics;
        let file = &self.manifest.files[index];
        let at = |array: &Option<datafusion::arrow::array::ArrayRef>| {
            array
                .as_ref()
                .and_then(|a| ScalarValue::try_from_array(a, index).ok())
                .filter(|v| !v.is_null())
                .map_or(Precision::Absent, Precision::Inexact)
        };
        let column_statistics = self
            .bounds()
            .iter()
            .map(|b| {
                let mut column = ColumnStatistics::new_unknown();
                column.min_value = at(&b.min);
                column.max_value = at(&b.max);
                if let Ok(ScalarValue::UInt64(Some(nulls))) =
                    ScalarValue::try_from_array(&b.nulls, index)
                {
                    column.null_count = Precision::Inexact(nulls as usize);
                }
                column
            })
            .collect();
        Statistics {
            num_rows: Precision::Exact(file.live_rows() as usize),
            total_byte_size: Precision::Inexact(file.size_bytes as usize),
            column_statistics,
        }
    }
}

/// The smallest (`Less`) or largest (`Greater`) value of `values`; absent when any is null.
fn extreme(
    values: &datafusion::arrow::array::ArrayRef,
    keep: std::cmp::Ordering,
) -> Precision<ScalarValue> {
    if values.null_count() > 0 {
        return Precision::Absent;
    }
    let mut best: Option<ScalarValue> = None;
    for i in 0..values.len() {
        let Ok(value) = ScalarValue::try_from_array(values, i) else {
            return Precision::Absent;
        };
        best = match best {
            Some(b) if value.partial_cmp(&b) != Some(keep) => Some(b),
            _ => Some(value),
        };
    }
    best.map_or(Precision::Absent, Precision::Inexact)
}

/// `schema` with its top-level `Utf8`/`LargeUtf8` columns as `Utf8View` and `Binary`/
/// `LargeBinary` as `BinaryView`: the Parquet reader decodes strings into views (no copy of
/// each value), as DataFusion's own tables do with `schema_force_view_types`. Results leave
/// the server in the plain types ([`super::wire_type`]).
fn view_schema(schema: &SchemaRef) -> SchemaRef {
    use datafusion::arrow::datatypes::{DataType, Schema};
    let view = |t: &DataType| match t {
        DataType::Utf8 | DataType::LargeUtf8 => Some(DataType::Utf8View),
        DataType::Binary | DataType::LargeBinary => Some(DataType::BinaryView),
        _ => None,
    };
    if schema
        .fields()
        .iter()
        .all(|f| view(f.data_type()).is_none())
    {
        return Arc::clone(schema);
    }
    let fields: Vec<_> = schema
        .fields()
        .iter()
        .map(|f| match view(f.data_type()) {
            Some(t) => Arc::new(f.as_ref().clone().with_data_type(t)),
            None => Arc::clone(f),
        })
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

impl VersionTable {
    /// The manifest's files for a scan that `filters` may need (the others are pruned by
    /// their manifest statistics, never opened), each with the access plan that skips its
    /// deleted rows.
    ///
    /// The number of pruned files is added to the scan's `files_ranges_pruned_statistics`
    /// metric (DataFusion's count of files pruned by file-level statistics, which the Parquet
    /// opener adds each opened file range to as matched), so `EXPLAIN ANALYZE` shows
    /// `files_ranges_pruned_statistics=<files> total → <read> matched`.
    async fn partitioned_files(
        &self,
        state: &dyn Session,
        filters: &[Expr],
        metrics: &ExecutionPlanMetricsSet,
    ) -> Result<Vec<PartitionedFile>> {
        let store = state.runtime_env().object_store(&self.store_url)?;
        let keep = prune_files(state, &self.manifest, &self.schema, filters);
        let pruned = keep.iter().filter(|k| !**k).count();
        MetricBuilder::new(metrics)
            .pruning_metrics("files_ranges_pruned_statistics", 0)
            .add_pruned(pruned);
        if pruned > 0 {
            tracing::debug!(
                table = %self.manifest.table,
                files = self.manifest.files.len(),
                pruned,
                "files pruned by manifest statistics"
            );
        }
        let files = self
            .manifest
            .files
            .iter()
            .zip(keep)
            .enumerate()
            .filter(|(_, (_, k))| *k)
            .map(|(index, (file, _))| {
                let store = Arc::clone(&store);
                let statistics = Arc::new(self.file_statistics(index));
                async move {
                    let partitioned = PartitionedFile::new(file.path.clone(), file.size_bytes)
                        .with_statistics(statistics);
                    if file.deletion_vector.is_none() {
                        return Ok(partitioned);
                    }
                    let deleted = lakehouse_catalog::read_deletion_vector(&store, file)
                        .await
                        .map_err(|e| DataFusionError::External(Box::new(e)))?;
                    Ok(partitioned.with_extension(access_plan(file, &deleted)?))
                }
            });
        futures::future::try_join_all(files).await
    }
}

/// Which files of `manifest` a scan with `filters` must read: `false` for a file whose
/// manifest statistics prove no row can match (DataFusion's `PruningPredicate` over the
/// files as containers), with `filters` typed against `schema` (the scan's schema). Every
/// file is kept when the filters cannot be evaluated that way.
pub(crate) fn prune_files(
    state: &dyn Session,
    manifest: &Manifest,
    schema: &SchemaRef,
    filters: &[Expr],
) -> Vec<bool> {
    use datafusion::common::DFSchema;
    use datafusion::logical_expr::utils::conjunction;
    use datafusion::physical_optimizer::pruning::PruningPredicate;
    let all = vec![true; manifest.files.len()];
    let Some(filter) = conjunction(filters.iter().cloned()) else {
        return all;
    };
    if manifest.files.iter().all(|f| f.statistics.is_empty()) {
        return all;
    }
    let predicate = DFSchema::try_from(schema.as_ref().clone())
        .and_then(|df_schema| state.create_physical_expr(filter, &df_schema))
        .and_then(|expr| PruningPredicate::try_new(expr, Arc::clone(schema)));
    let keep = predicate.and_then(|p| p.prune(&ManifestStatistics { manifest, schema }));
    match keep {
        Ok(keep) if keep.len() == all.len() => keep,
        Ok(_) => all,
        Err(e) => {
            tracing::debug!(error = %e, "no file pruning for this filter");
            all
        }
    }
}

/// A manifest's files as pruning containers: per-file min/max/null counts from the manifest,
/// cast from their text form to the column's type (a value that does not cast is unknown).
struct ManifestStatistics<'a> {
    manifest: &'a Manifest,
    schema: &'a SchemaRef,
}

impl ManifestStatistics<'_> {
    fn bounds(
        &self,
        column: &datafusion::common::Column,
        bound: impl Fn(&lakehouse_catalog::statistics::ColumnStatistics) -> Option<&String>,
    ) -> Option<datafusion::arrow::array::ArrayRef> {
        let field = self.schema.field_with_name(&column.name).ok()?;
        let stored = lakehouse_catalog::writer::normalize_type(field.data_type());
        if !lakehouse_catalog::statistics::has_bounds(&stored) {
            return None;
        }
        let text: datafusion::arrow::array::StringArray = self
            .manifest
            .files
            .iter()
            .map(|f| f.statistics.get(&column.name).and_then(&bound).cloned())
            .collect();
        datafusion::arrow::compute::cast(&text, field.data_type()).ok()
    }
}

impl datafusion::common::pruning::PruningStatistics for ManifestStatistics<'_> {
    fn min_values(
        &self,
        column: &datafusion::common::Column,
    ) -> Option<datafusion::arrow::array::ArrayRef> {
        self.bounds(column, |s| s.min.as_ref())
    }

    fn max_values(
        &self,
        column: &datafusion::common::Column,
    ) -> Option<datafusion::arrow::array::ArrayRef> {
        self.bounds(column, |s| s.max.as_ref())
    }

    fn num_containers(&self) -> usize {
        self.manifest.files.len()
    }

    fn null_counts(
        &self,
        column: &datafusion::common::Column,
    ) -> Option<datafusion::arrow::array::ArrayRef> {
        let counts: datafusion::arrow::array::UInt64Array = self
            .manifest
            .files
            .iter()
            .map(|f| f.statistics.get(&column.name).and_then(|s| s.null_count))
            .collect();
        Some(Arc::new(counts))
    }

    fn row_counts(&self) -> Option<datafusion::arrow::array::ArrayRef> {
        // Statistics cover every row of a file, deleted or not.
        let rows: datafusion::arrow::array::UInt64Array =
            self.manifest.files.iter().map(|f| Some(f.rows)).collect();
        Some(Arc::new(rows))
    }

    fn contained(
        &self,
        _column: &datafusion::common::Column,
        _values: &std::collections::HashSet<datafusion::common::ScalarValue>,
    ) -> Option<datafusion::arrow::array::BooleanArray> {
        None
    }
}

/// The access plan that reads the rows of `file` not in `deleted` (0-based positions).
///
/// # Errors
/// An internal error when the file's row-group sizes were not recorded or do not add up.
pub fn access_plan(
    file: &lakehouse_catalog::DataFile,
    deleted: &lakehouse_catalog::RoaringTreemap,
) -> Result<ParquetAccessPlan> {
    if file.row_groups.iter().sum::<u64>() != file.rows {
        return Err(DataFusionError::Internal(format!(
            "{}: row-group sizes {:?} do not add up to its {} rows",
            file.path, file.row_groups, file.rows
        )));
    }
    let mut groups = Vec::with_capacity(file.row_groups.len());
    let mut start = 0u64;
    for &rows in &file.row_groups {
        let end = start + rows;
        let in_group = deleted.range_cardinality(start..end);
        groups.push(if in_group == 0 {
            RowGroupAccess::Scan
        } else if in_group == rows {
            RowGroupAccess::Skip
        } else {
            RowGroupAccess::Selection(lakehouse_catalog::live_selection(deleted, start..end))
        });
        start = end;
    }
    Ok(ParquetAccessPlan::new(groups))
}

#[async_trait]
impl TableProvider for VersionTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let schema = self.schema();
        if self.manifest.files.is_empty() {
            let projected = project_schema(&schema, projection)?;
            return Ok(Arc::new(EmptyExec::new(projected)));
        }
        let format = ParquetFormat::default().with_options(state.table_options().parquet.clone());
        let source = format.file_source(TableSchema::from_file_schema(Arc::clone(&schema)));
        // Our own files are relative to the storage root; an external table's are absolute
        // URLs within one store (the location it was registered from).
        let (store_url, files) = match &self.manifest.external {
            None => (
                self.store_url.clone(),
                self.partitioned_files(state, filters, source.metrics())
                    .await?,
            ),
            Some(_) => {
                let mut store_url = None;
                let mut files = Vec::new();
                for f in &self.manifest.files {
                    let url = url::Url::parse(&f.path)
                        .map_err(|e| DataFusionError::External(Box::new(e)))?;
                    let base = ObjectStoreUrl::parse(&url[..url::Position::BeforePath])?;
                    ensure_object_store(state.runtime_env(), base.as_ref())?;
                    let path = object_store::path::Path::from_url_path(url.path())
                        .map_err(|e| DataFusionError::External(Box::new(e)))?;
                    files.push(PartitionedFile::new(path.to_string(), f.size_bytes));
                    store_url = Some(base);
                }
                (store_url.unwrap_or_else(|| self.store_url.clone()), files)
            }
        };
        let statistics = self.table_statistics();
        let config = FileScanConfigBuilder::new(store_url, source)
            .with_file_group(FileGroup::new(files))
            .with_statistics(statistics)
            .with_projection_indices(projection.cloned())?
            .with_limit(limit)
            .build();
        format.create_physical_plan(state, config).await
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    fn statistics(&self) -> Option<Statistics> {
        Some(self.table_statistics())
    }
}

/// Makes sure the session's runtime can read from the store at `url` (scheme and authority):
/// local files are always registered; an `s3://bucket` store is built from the standard `AWS_*`
/// variables, as the storage root is.
///
/// # Errors
/// DataFusion's configuration error for other schemes or S3 settings object_store rejects.
pub fn ensure_object_store(
    runtime: &Arc<datafusion::execution::runtime_env::RuntimeEnv>,
    url: &url::Url,
) -> Result<()> {
    if runtime
        .object_store(ObjectStoreUrl::parse(&url[..url::Position::BeforePath])?)
        .is_ok()
    {
        return Ok(());
    }
    match url.scheme() {
        "s3" => {
            let bucket = url.host_str().unwrap_or_default();
            let store = object_store::aws::AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .build()
                .map_err(|e| DataFusionError::Configuration(e.to_string()))?;
            runtime.register_object_store(url, Arc::new(store));
            Ok(())
        }
        other => Err(DataFusionError::Configuration(format!(
            "cannot read files from {other}:// locations; use file:// or s3://"
        ))),
    }
}
