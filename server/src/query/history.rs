//! `table_history('t')`: the kept versions of a Parquet or Lance table, newest first, as a SQL
//! table function — the versions time travel (`VERSION AS OF n`) reads.
//!
//! | column | type | |
//! |---|---|---|
//! | `version` | Int64 | the catalog version (Parquet) or Lance dataset version (Lance) |
//! | `created_at` | Timestamp(µs, UTC) | when it was committed |
//! | `operation` | Utf8 | `create`, `append`, `delete`, `update`, `merge`, `compact`, ... (Lance: its transaction's operation, e.g. `Append`, `Delete`, `Update`, `CreateIndex`) |
//! | `rows_added` | Int64 | rows this version added: Parquet, the live rows of its new files; Lance, the net growth |
//! | `rows_removed` | Int64 | rows it removed: Parquet, rows newly deleted or in files it dropped; Lance, the net shrinkage |
//! | `total_rows` | Int64 | live rows at this version |
//! | `data_files` | Int64 | data files (Lance: fragments) at this version |
//! | `total_bytes` | Int64 | bytes of those data files (Lance: NULL) |
//! | `committed_by` | Utf8 | the user who committed it; NULL when not recorded (older versions, the server's own compactions, Lance commits) |
//!
//! The table is resolved through the session like any table; the versions are read when the
//! query executes.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::catalog::{TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::{DataFusionError, ScalarValue};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::Expr;
use lakehouse_catalog::{Catalog, Manifest, TableRef};
use lakehouse_vector::session::ResolvedTable;

/// The function's name.
pub const NAME: &str = "table_history";

/// The result schema (see the module docs).
pub fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("version", DataType::Int64, false),
        Field::new(
            "created_at",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new("operation", DataType::Utf8, true),
        Field::new("rows_added", DataType::Int64, true),
        Field::new("rows_removed", DataType::Int64, true),
        Field::new("total_rows", DataType::Int64, true),
        Field::new("data_files", DataType::Int64, true),
        Field::new("total_bytes", DataType::Int64, true),
        Field::new("committed_by", DataType::Utf8, true),
    ]))
}

/// The `table_history` table function over `catalog`.
#[derive(Debug)]
pub struct TableHistoryFunction {
    catalog: Arc<Catalog>,
}

impl TableHistoryFunction {
    /// The function over `catalog`'s tables.
    pub fn new(catalog: Arc<Catalog>) -> Self {
        Self { catalog }
    }
}

impl TableFunctionImpl for TableHistoryFunction {
    fn call_with_args(
        &self,
        args: TableFunctionArgs,
    ) -> datafusion::error::Result<Arc<dyn TableProvider>> {
        let name = match args.exprs() {
            [Expr::Literal(ScalarValue::Utf8(Some(name)), _)] => name.clone(),
            _ => {
                return Err(DataFusionError::Plan(format!(
                    "{NAME}: expects one table name as a string literal, e.g. {NAME}('orders')"
                )));
            }
        };
        let (table, resolved) = lakehouse_vector::session::resolved(NAME, &name, args.session())?;
        lakehouse_vector::deferred_table(
            schema(),
            History {
                catalog: Arc::clone(&self.catalog),
                table,
                resolved,
            },
        )
    }
}

/// One call, run when the query executes.
#[derive(Debug, Clone)]
struct History {
    catalog: Arc<Catalog>,
    table: TableRef,
    resolved: ResolvedTable,
}

/// One row of the result.
struct Row {
    version: u64,
    created_at: chrono::DateTime<chrono::Utc>,
    operation: Option<String>,
    rows_added: Option<i64>,
    rows_removed: Option<i64>,
    total_rows: Option<i64>,
    data_files: Option<i64>,
    total_bytes: Option<i64>,
    committed_by: Option<String>,
}

#[async_trait::async_trait]
impl lakehouse_vector::Deferred for History {
    async fn run(self, _ctx: Arc<TaskContext>) -> datafusion::error::Result<RecordBatch> {
        let mut rows = match &self.resolved.dataset {
            Some(dataset) => lance_rows(dataset).await?,
            None => {
                let history = self
                    .catalog
                    .history(&self.table)
                    .await
                    .map_err(|e| DataFusionError::External(Box::new(e)))?;
                parquet_rows(&history)
            }
        };
        rows.reverse();
        let int = |f: &dyn Fn(&Row) -> Option<i64>| -> ArrayRef {
            Arc::new(Int64Array::from(rows.iter().map(f).collect::<Vec<_>>()))
        };
        let text = |f: &dyn Fn(&Row) -> Option<String>| -> ArrayRef {
            Arc::new(StringArray::from(rows.iter().map(f).collect::<Vec<_>>()))
        };
        Ok(RecordBatch::try_new(
            schema(),
            vec![
                int(&|r| Some(r.version as i64)),
                Arc::new(
                    TimestampMicrosecondArray::from(
                        rows.iter()
                            .map(|r| r.created_at.timestamp_micros())
                            .collect::<Vec<_>>(),
                    )
                    .with_timezone("UTC"),
                ),
                text(&|r| r.operation.clone()),
                int(&|r| r.rows_added),
                int(&|r| r.rows_removed),
                int(&|r| r.total_rows),
                int(&|r| r.data_files),
                int(&|r| r.total_bytes),
                text(&|r| r.committed_by.clone()),
            ],
        )?)
    }
}

/// The rows of a Parquet table's kept versions, oldest first: what each version added and
/// removed, by comparing its files (and deletion vectors) with the previous version's.
fn parquet_rows(history: &[Arc<Manifest>]) -> Vec<Row> {
    let mut previous: HashMap<&str, u64> = HashMap::new();
    let mut out = Vec::with_capacity(history.len());
    for (i, m) in history.iter().enumerate() {
        let current: HashMap<&str, u64> = m
            .files
            .iter()
            .map(|f| (f.path.as_str(), f.rows - f.live_rows()))
            .collect();
        let (mut added, mut removed) = (0u64, 0u64);
        for f in &m.files {
            match previous.get(f.path.as_str()) {
                None => added += f.live_rows(),
                Some(deleted_before) => {
                    removed += (f.rows - f.live_rows()).saturating_sub(*deleted_before)
                }
            }
        }
        if i > 0 {
            for f in &history[i - 1].files {
                if !current.contains_key(f.path.as_str()) {
                    removed += f.live_rows();
                }
            }
        }
        out.push(Row {
            version: m.version.0,
            created_at: m.created_at,
            operation: Some(m.operation.to_string()),
            rows_added: Some(added as i64),
            rows_removed: Some(removed as i64),
            total_rows: Some(m.total_rows as i64),
            data_files: Some(m.files.len() as i64),
            total_bytes: Some(m.total_bytes as i64),
            committed_by: m.committed_by.clone(),
        });
        previous = current;
    }
    out
}

/// The rows of a Lance dataset's kept versions, oldest first.
async fn lance_rows(dataset: &lance::Dataset) -> datafusion::error::Result<Vec<Row>> {
    let lance = |e: lance::Error| DataFusionError::External(Box::new(e));
    let mut out = Vec::new();
    let mut previous = 0i64;
    for version in dataset.versions().await.map_err(lance)? {
        let at = dataset
            .checkout_version(version.version)
            .await
            .map_err(lance)?;
        let rows = at.count_rows(None).await.map_err(lance)? as i64;
        let transaction = at
            .read_transaction_by_version(version.version)
            .await
            .map_err(lance)?;
        let committed_by = transaction
            .as_ref()
            .and_then(|t| t.transaction_properties.as_ref())
            .and_then(|p| p.get(lakehouse_vector::table::COMMITTED_BY).cloned());
        out.push(Row {
            version: version.version,
            created_at: version.timestamp,
            operation: transaction.map(|t| t.operation.name().to_string()),
            rows_added: Some((rows - previous).max(0)),
            rows_removed: Some((previous - rows).max(0)),
            total_rows: Some(rows),
            data_files: Some(at.count_fragments() as i64),
            total_bytes: None,
            committed_by,
        });
        previous = rows;
    }
    Ok(out)
}
