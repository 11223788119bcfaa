//! `vector_indexes()`: the indexes of every Lance table, as a SQL table function — the index
//! listing clients see (`SELECT * FROM vector_indexes()`).
//!
//! Schema: `table_schema Utf8, table_name Utf8, index_name Utf8, columns Utf8` (the indexed
//! columns, comma-separated), `index_type Utf8` (Lance's name: `IVF_PQ`, `IVF_HNSW_SQ`,
//! `IVF_FLAT`, `Inverted` for full-text), `indexed_rows Int64` (rows the index covers; rows
//! appended later are searched unindexed); one row per index of each Lance table at the version
//! the query reads, read when the query runs.

use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::DataFusionError;
use datafusion::execution::TaskContext;
use lakehouse_catalog::TableRef;

use crate::args::{Deferred, deferred_table, to_datafusion};
use crate::session::SessionTables;
use crate::table::index_infos;

/// The `vector_indexes` table function.
#[derive(Debug, Default)]
pub struct VectorIndexesFunction;

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("table_schema", DataType::Utf8, false),
        Field::new("table_name", DataType::Utf8, false),
        Field::new("index_name", DataType::Utf8, false),
        Field::new("columns", DataType::Utf8, false),
        Field::new("index_type", DataType::Utf8, false),
        Field::new("indexed_rows", DataType::Int64, false),
    ]))
}

impl TableFunctionImpl for VectorIndexesFunction {
    fn call_with_args(
        &self,
        args: TableFunctionArgs,
    ) -> datafusion::error::Result<Arc<dyn TableProvider>> {
        if !args.exprs().is_empty() {
            return Err(DataFusionError::Plan(
                "vector_indexes() takes no arguments".into(),
            ));
        }
        // Every Lance table, as the session resolved it (the server resolves them all before
        // planning a call of this function).
        let datasets = args
            .session()
            .config()
            .get_extension::<SessionTables>()
            .map(|tables| tables.all())
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(table, resolved)| Some((table, resolved.dataset?)))
            .collect();
        deferred_table(schema(), IndexList { datasets })
    }
}

/// The listing, read when the query executes.
#[derive(Debug, Clone)]
struct IndexList {
    datasets: Vec<(TableRef, Arc<lance::Dataset>)>,
}

#[async_trait::async_trait]
impl Deferred for IndexList {
    async fn run(self, _ctx: Arc<TaskContext>) -> datafusion::error::Result<RecordBatch> {
        let mut rows: Vec<[String; 5]> = Vec::new();
        let mut indexed_rows: Vec<i64> = Vec::new();
        for (table, dataset) in &self.datasets {
            for index in index_infos(dataset).await.map_err(to_datafusion)? {
                rows.push([
                    table.schema.to_string(),
                    table.table.to_string(),
                    index.name,
                    index.columns.join(","),
                    index.index_type,
                ]);
                indexed_rows.push(i64::try_from(index.indexed_rows).unwrap_or(i64::MAX));
            }
        }
        let column = |i: usize| -> ArrayRef {
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| r[i].clone()),
            ))
        };
        Ok(RecordBatch::try_new(
            schema(),
            vec![
                column(0),
                column(1),
                column(2),
                column(3),
                column(4),
                Arc::new(Int64Array::from(indexed_rows)),
            ],
        )?)
    }
}
