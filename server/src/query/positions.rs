//! [`RowPositions`]: one table version with each row's data file and position, the input of
//! row-level changes (DELETE, UPDATE): whatever selects rows (a WHERE with subqueries, a join
//! with a FROM/USING table) is planned by DataFusion over this provider, and the two extra
//! columns say which rows of which files it selected.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, RecordBatch, RecordBatchOptions};
use datafusion::arrow::array::{UInt32Array, UInt64Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::{DataFusionError, Result};
use datafusion::datasource::TableType;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::{PartitionStream, StreamingTableExec};
use futures::{StreamExt, TryStreamExt};
use lakehouse_catalog::{DataFile, LiveRows, Manifest};
use object_store::ObjectStore;

/// Name of the column holding the row's data file: its index in the manifest's `files`
/// (`UInt32`).
pub const FILE_COLUMN: &str = "__lakehouse_file";
/// Name of the column holding the row's 0-based position in its data file, counting every row
/// of the file, deleted or not (`UInt64`) — the positions deletion vectors hold.
pub const ROW_COLUMN: &str = "__lakehouse_row";

/// A `TableProvider` over the live rows of one Parquet table version whose schema is the
/// table's columns followed by [`FILE_COLUMN`] and [`ROW_COLUMN`].
///
/// # Projection / Filters / Limit
/// Each data file is one partition, read in file order by the Parquet reader with only the
/// projected table columns decoded and the rows in the file's deletion vector skipped by a
/// row selection ([`lakehouse_catalog::read_live_rows`]). Filters are `Inexact`: files whose
/// manifest statistics prove no row matches are not read (as [`super::table::VersionTable`]
/// prunes them) and DataFusion applies the filters above the scan; no limit is pushed.
#[derive(Debug)]
pub struct RowPositions {
    manifest: Arc<Manifest>,
    store: Arc<dyn ObjectStore>,
    schema: SchemaRef,
}

impl RowPositions {
    /// A provider over `manifest`, whose files are read from `store` (the catalog's store).
    pub fn new(manifest: Arc<Manifest>, store: Arc<dyn ObjectStore>) -> Self {
        let mut fields: Vec<Field> = manifest
            .arrow_schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields.push(Field::new(FILE_COLUMN, DataType::UInt32, false));
        fields.push(Field::new(ROW_COLUMN, DataType::UInt64, false));
        Self {
            manifest,
            store,
            schema: Arc::new(Schema::new(fields)),
        }
    }
}

#[async_trait]
impl TableProvider for RowPositions {
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
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let table_schema = self.manifest.arrow_schema();
        let keep = super::table::prune_files(state, &self.manifest, &table_schema, filters);
        let projection: Vec<usize> = match projection {
            Some(p) => p.clone(),
            None => (0..self.schema.fields().len()).collect(),
        };
        let projected = Arc::new(self.schema.project(&projection)?);
        let batch_size = state.config().batch_size();
        let partitions: Vec<Arc<dyn PartitionStream>> = self
            .manifest
            .files
            .iter()
            .enumerate()
            .zip(keep)
            .filter(|((_, f), keep)| *keep && f.live_rows() > 0)
            .map(|(file, _)| file)
            .map(|(index, file)| {
                Arc::new(FilePositions {
                    store: Arc::clone(&self.store),
                    file: file.clone(),
                    index: index as u32,
                    table_columns: self.manifest.arrow_schema().fields().len(),
                    projection: projection.clone(),
                    schema: Arc::clone(&projected),
                    batch_size,
                }) as Arc<dyn PartitionStream>
            })
            .collect();
        Ok(Arc::new(StreamingTableExec::try_new(
            projected,
            partitions,
            None,
            Vec::new(),
            false,
            None,
        )?))
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }
}

/// One data file's live rows with their positions.
#[derive(Debug)]
struct FilePositions {
    store: Arc<dyn ObjectStore>,
    file: DataFile,
    index: u32,
    table_columns: usize,
    /// Indices into the [`RowPositions`] schema.
    projection: Vec<usize>,
    schema: SchemaRef,
    batch_size: usize,
}

impl PartitionStream for FilePositions {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let store = Arc::clone(&self.store);
        let file = self.file.clone();
        let index = self.index;
        let table_columns = self.table_columns;
        let projection = self.projection.clone();
        let schema = Arc::clone(&self.schema);
        let batch_size = self.batch_size;
        let external = |e: lakehouse_catalog::Error| DataFusionError::External(Box::new(e));
        let stream = futures::stream::once(async move {
            // Table columns to decode, ascending: the reader returns them in file order.
            let mut columns: Vec<usize> = projection
                .iter()
                .copied()
                .filter(|&i| i < table_columns)
                .collect();
            columns.sort_unstable();
            columns.dedup();
            let batches =
                lakehouse_catalog::read_live_rows(&store, &file, Some(&columns), Some(batch_size))
                    .await
                    .map_err(external)?;
            let out = Arc::clone(&schema);
            Ok::<_, DataFusionError>(batches.map(move |live| {
                let LiveRows { batch, positions } = live.map_err(external)?;
                let rows = batch.num_rows();
                let arrays: Vec<ArrayRef> = projection
                    .iter()
                    .map(|&i| {
                        if i < table_columns {
                            let at = columns.binary_search(&i).expect("decoded above");
                            Arc::clone(batch.column(at))
                        } else if i == table_columns {
                            Arc::new(UInt32Array::from(vec![index; rows])) as ArrayRef
                        } else {
                            Arc::new(UInt64Array::from(positions.clone())) as ArrayRef
                        }
                    })
                    .collect();
                let options = RecordBatchOptions::new().with_row_count(Some(rows));
                Ok(RecordBatch::try_new_with_options(
                    Arc::clone(&out),
                    arrays,
                    &options,
                )?)
            }))
        })
        .try_flatten();
        Box::pin(RecordBatchStreamAdapter::new(
            Arc::clone(&self.schema),
            stream,
        ))
    }
}
