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
        let dataset = DatasetBuilder::from_uri(self.uri(location))
            .with_storage_options(self.options.clone())
            .load()
            .await?;
        Ok(Arc::new(dataset))
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

/// The vector columns of `schema`: every `FixedSizeList<Float32, D>` column, with `metric` and
/// the embedding `model` that made them (when known).
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
                    model: model.map(String::from),
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
