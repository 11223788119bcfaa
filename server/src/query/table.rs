//! [`VersionTable`]: a DataFusion `TableProvider` over one committed table version.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::Session;
use datafusion::catalog::TableProvider;
use datafusion::common::stats::Precision;
use datafusion::common::{DataFusionError, Result, Statistics, project_schema};
use datafusion::datasource::TableType;
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder};
use datafusion::datasource::table_schema::TableSchema;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use lakehouse_catalog::Manifest;

/// Reads exactly the Parquet files one [`Manifest`] lists — never by listing storage — through
/// DataFusion's Parquet scan (`DataSourceExec` with a `ParquetSource`).
///
/// # Projection / Filters / Limit
/// Projection is pushed into the Parquet reader. Filters are reported `Inexact`: DataFusion keeps
/// its `FilterExec` and the physical optimizer pushes the predicate into the Parquet source for
/// row-group and page pruning. The limit is passed to the scan as a hint.
///
/// # Statistics
/// The exact row count from the manifest; column statistics are unknown at plan time.
#[derive(Debug)]
pub struct VersionTable {
    manifest: Arc<Manifest>,
    store_url: ObjectStoreUrl,
}

impl VersionTable {
    /// A provider for `manifest`, whose file paths are relative to the object store registered
    /// in the session's runtime under `store_url`.
    pub fn new(manifest: Arc<Manifest>, store_url: ObjectStoreUrl) -> Self {
        Self {
            manifest,
            store_url,
        }
    }
}

#[async_trait]
impl TableProvider for VersionTable {
    fn schema(&self) -> SchemaRef {
        self.manifest.arrow_schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
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
                self.manifest
                    .files
                    .iter()
                    .map(|f| PartitionedFile::new(f.path.clone(), f.size_bytes))
                    .collect::<Vec<_>>(),
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
        let mut statistics = Statistics::new_unknown(&schema);
        statistics.num_rows = Precision::Exact(self.manifest.total_rows as usize);
        statistics.total_byte_size = Precision::Inexact(self.manifest.total_bytes as usize);
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
        let mut statistics = Statistics::new_unknown(&self.schema());
        statistics.num_rows = Precision::Exact(self.manifest.total_rows as usize);
        Some(statistics)
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
