//! `vector_indexes()`: the indexes of every Lance table, as a SQL table function — the index
//! listing clients see (`SELECT * FROM vector_indexes()`).
//!
//! Schema: `table_schema Utf8, table_name Utf8, index_name Utf8, columns Utf8` (the indexed
//! columns, comma-separated), `index_type Utf8` (Lance's name: `IVF_PQ`, `IVF_HNSW_SQ`,
//! `IVF_FLAT`, `Inverted` for full-text), `indexed_rows Int64` (rows the index covers; rows
//! appended later are searched unindexed); one row per index, read from each Lance dataset when
//! the query runs.

use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{Session, TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::DataFusionError;
use datafusion::datasource::TableType;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;
use lakehouse_catalog::Catalog;

use crate::args::to_datafusion;
use crate::table::LanceStore;

/// The `vector_indexes` table function.
#[derive(Debug)]
pub struct VectorIndexesFunction {
    catalog: Arc<Catalog>,
}

impl VectorIndexesFunction {
    /// The function over `catalog`'s Lance tables.
    pub fn new(catalog: Arc<Catalog>) -> Self {
        Self { catalog }
    }
}

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
        Ok(Arc::new(IndexList {
            catalog: Arc::clone(&self.catalog),
        }))
    }
}

#[derive(Debug)]
struct IndexList {
    catalog: Arc<Catalog>,
}

#[async_trait::async_trait]
impl TableProvider for IndexList {
    fn schema(&self) -> SchemaRef {
        schema()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        let store = LanceStore::new(self.catalog.location());
        let mut rows: Vec<[String; 5]> = Vec::new();
        let mut indexed_rows: Vec<i64> = Vec::new();
        for (schema, manifests) in self.catalog.list().await.map_err(to_datafusion)? {
            for manifest in manifests {
                let Some(lance) = &manifest.lance else {
                    continue;
                };
                for index in store
                    .indexes(&lance.location)
                    .await
                    .map_err(to_datafusion)?
                {
                    rows.push([
                        schema.to_string(),
                        manifest.table.table.to_string(),
                        index.name,
                        index.columns.join(","),
                        index.index_type,
                    ]);
                    indexed_rows.push(i64::try_from(index.indexed_rows).unwrap_or(i64::MAX));
                }
            }
        }
        let column = |i: usize| -> ArrayRef {
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| r[i].clone()),
            ))
        };
        let batch = RecordBatch::try_new(
            schema(),
            vec![
                column(0),
                column(1),
                column(2),
                column(3),
                column(4),
                Arc::new(Int64Array::from(indexed_rows)),
            ],
        )?;
        let plan: Arc<dyn ExecutionPlan> =
            MemorySourceConfig::try_new_exec(&[vec![batch]], schema(), projection.cloned())?;
        Ok(plan)
    }
}
