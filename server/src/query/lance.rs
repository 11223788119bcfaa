//! Writes to Lance tables: creating one (the dataset first, then the catalog record), and
//! appends, each one Lance commit. Reads go through the catalog adapter, which serves a Lance
//! table's newest dataset version as Lance's own `TableProvider`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::error::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::StreamExt;
use lakehouse_catalog::{
    Change, Error as CatalogError, LanceTable, Manifest, TableRef, VectorMetric, WriteMode,
};
use lakehouse_vector::table::{LanceStore, check_schema, vector_columns};

use super::QueryEngine;
use crate::error::{Error, Result};

/// How a new Lance table is declared (ingest options `lakehouse.table_format = lance`,
/// `lakehouse.vector.metric`, `lakehouse.vector.model`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LanceCreate {
    /// Distance of the vector columns (default cosine).
    pub metric: VectorMetric,
    /// The embedding model that made the vectors, when known.
    pub model: Option<String>,
}

impl Default for LanceCreate {
    fn default() -> Self {
        Self {
            metric: VectorMetric::Cosine,
            model: None,
        }
    }
}

impl LanceCreate {
    /// The Lance declaration in ingest `options`, if they ask for a Lance table.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an unknown table format or metric.
    pub fn from_options(
        options: &std::collections::HashMap<String, String>,
    ) -> Result<Option<Self>> {
        match options
            .get("lakehouse.table_format")
            .map(|f| f.to_ascii_lowercase())
        {
            None => Ok(None),
            Some(f) if f == "parquet" => Ok(None),
            Some(f) if f == "lance" => {
                let metric = match options.get("lakehouse.vector.metric") {
                    Some(m) => m.parse().map_err(|e: String| {
                        Error::invalid(format!("lakehouse.vector.metric: {e}"))
                    })?,
                    None => VectorMetric::Cosine,
                };
                Ok(Some(Self {
                    metric,
                    model: options.get("lakehouse.vector.model").cloned(),
                }))
            }
            Some(other) => Err(Error::invalid(format!(
                "lakehouse.table_format {other:?}: use parquet or lance"
            ))),
        }
    }
}

/// `batches` with view types cast to their plain forms (what the table schema records), as a
/// DataFusion stream that counts the rows it passes into `rows`.
fn normalized(
    schema: &SchemaRef,
    batches: SendableRecordBatchStream,
    rows: Arc<AtomicU64>,
) -> SendableRecordBatchStream {
    let target: SchemaRef = Arc::new(lakehouse_catalog::normalize_schema(schema));
    let out = Arc::clone(&target);
    let stream = batches.map(move |batch| {
        let batch = batch?;
        rows.fetch_add(batch.num_rows() as u64, Ordering::Relaxed);
        if batch.schema().fields() == target.fields() {
            return Ok(batch);
        }
        let columns = batch
            .columns()
            .iter()
            .zip(target.fields())
            .map(|(c, f)| datafusion::arrow::compute::cast(c, f.data_type()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(RecordBatch::try_new(Arc::clone(&target), columns)?)
    });
    Box::pin(RecordBatchStreamAdapter::new(out, stream))
}

impl QueryEngine {
    /// Where this engine's Lance datasets live.
    pub fn lance_store(&self) -> LanceStore {
        LanceStore::new(self.catalog().location())
    }

    /// Writes `batches` to the Lance table `table`: appends to it when it is a live Lance table
    /// (one Lance commit), or creates it when missing and `create` declares it. Returns the
    /// rows written.
    ///
    /// # Errors
    /// `TableExists` for `WriteMode::Create` on a live table; `TableNotFound` for an append to
    /// a missing one; [`Error::InvalidArgument`] for a Parquet table named as Lance, a replace
    /// (not supported for Lance yet) or a non-Float32 vector column; Lance's errors (schema
    /// mismatch on append).
    pub async fn write_lance(
        &self,
        table: &TableRef,
        mode: WriteMode,
        live: Option<Arc<Manifest>>,
        create: Option<LanceCreate>,
        schema: &SchemaRef,
        batches: SendableRecordBatchStream,
    ) -> Result<u64> {
        let store = self.lance_store();
        let rows = Arc::new(AtomicU64::new(0));
        let stream = normalized(schema, batches, Arc::clone(&rows));
        match (live, mode) {
            (Some(live), WriteMode::Append | WriteMode::CreateOrAppend) => {
                let Some(lance) = &live.lance else {
                    return Err(Error::invalid(format!(
                        "{table} is a Parquet table; it cannot take lakehouse.table_format = lance"
                    )));
                };
                store.append(&lance.location, stream).await?;
                Ok(rows.load(Ordering::Relaxed))
            }
            (Some(_), WriteMode::Create) => Err(CatalogError::TableExists(table.clone()).into()),
            (Some(_), WriteMode::Replace) => Err(Error::invalid(format!(
                "replacing the rows of Lance table {table} is not supported yet; drop and \
                 create it"
            ))),
            (None, WriteMode::Append) => Err(CatalogError::TableNotFound(table.clone()).into()),
            (None, _) => {
                let create = create.unwrap_or_default();
                let arrow_schema: Schema = stream.schema().as_ref().clone();
                check_schema(&arrow_schema)?;
                let location = lakehouse_catalog::layout::new_lance_location(table).to_string();
                let dataset = store.create(&location, stream).await?;
                let schema: SchemaRef = Arc::new(Schema::from(dataset.schema()));
                let lance = LanceTable {
                    vector_columns: vector_columns(&schema, create.metric, create.model.as_deref()),
                    location: location.clone(),
                };
                let change = Change::CreateLance { schema, lance };
                if let Err(e) = self.catalog().commit(table, change).await {
                    // Not recorded: nothing may point at the dataset, so remove it.
                    store.remove(&location).await;
                    return Err(e.into());
                }
                Ok(rows.load(Ordering::Relaxed))
            }
        }
    }
}

/// A DataFusion error from a stream of `Result<RecordBatch, E>` (ingest decoding errors).
pub fn to_datafusion(e: impl std::error::Error + Send + Sync + 'static) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}
