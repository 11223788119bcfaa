//! `lakehouse_tables()`: every live table of the catalog with its kind, size, keys, vector
//! columns and indexes — one row per table, sorted by schema and name (as DuckDB's
//! `duckdb_tables()` describes its tables). Agents (`lakehouse mcp`'s `list_tables`) and people
//! read it to learn what there is to query.
//!
//! | column | type | |
//! |---|---|---|
//! | `schema_name` | Utf8 | the table's schema |
//! | `table_name` | Utf8 | the table's name |
//! | `kind` | Utf8 | `parquet` (versioned Parquet), `external` (`CREATE EXTERNAL TABLE`, read-only), `lance` (a Lance table), `documents` (a Lance document table made by `lakehouse ingest --embed`) |
//! | `version` | Int64 | the catalog version (Lance tables: the Lance dataset version) |
//! | `rows` | Int64 | live rows |
//! | `bytes` | Int64 | bytes of the data files (Lance tables: NULL) |
//! | `columns` | Int64 | columns in the schema |
//! | `primary_key` | Utf8 | the primary-key columns, comma-separated; NULL when none |
//! | `vector_columns` | Utf8 | `name(dimension, metric[, model])`, comma-separated; NULL when none |
//! | `indexes` | Utf8 | Lance indexes as `name(type on columns)`, comma-separated; NULL when none |
//! | `updated_at` | Timestamp(µs, UTC) | when the catalog version was committed |
//!
//! The catalog is listed, and each Lance dataset opened (its row count and indexes), when the
//! query executes; the table reflects the newest versions at that moment.

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::catalog::{TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::DataFusionError;
use datafusion::execution::TaskContext;
use lakehouse_catalog::{Catalog, Manifest};
use lakehouse_vector::ingest::table_chunk_spec;
use lakehouse_vector::table::LanceStore;

/// The function's name.
pub const NAME: &str = "lakehouse_tables";

/// The result schema (see the module docs).
pub fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("schema_name", DataType::Utf8, false),
        Field::new("table_name", DataType::Utf8, false),
        Field::new("kind", DataType::Utf8, false),
        Field::new("version", DataType::Int64, false),
        Field::new("rows", DataType::Int64, true),
        Field::new("bytes", DataType::Int64, true),
        Field::new("columns", DataType::Int64, false),
        Field::new("primary_key", DataType::Utf8, true),
        Field::new("vector_columns", DataType::Utf8, true),
        Field::new("indexes", DataType::Utf8, true),
        Field::new(
            "updated_at",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
    ]))
}

/// The `lakehouse_tables` table function over `catalog`.
#[derive(Debug)]
pub struct LakehouseTablesFunction {
    catalog: Arc<Catalog>,
}

impl LakehouseTablesFunction {
    /// The function over `catalog`'s tables.
    pub fn new(catalog: Arc<Catalog>) -> Self {
        Self { catalog }
    }
}

impl TableFunctionImpl for LakehouseTablesFunction {
    fn call_with_args(
        &self,
        args: TableFunctionArgs,
    ) -> datafusion::error::Result<Arc<dyn TableProvider>> {
        if !args.exprs().is_empty() {
            return Err(DataFusionError::Plan(format!(
                "{NAME}: takes no arguments, e.g. SELECT * FROM {NAME}()"
            )));
        }
        lakehouse_vector::deferred_table(
            schema(),
            Listing {
                catalog: Arc::clone(&self.catalog),
            },
        )
    }
}

/// One call, run when the query executes.
#[derive(Debug, Clone)]
struct Listing {
    catalog: Arc<Catalog>,
}

/// One row of the result.
struct Row {
    schema: String,
    table: String,
    kind: &'static str,
    version: i64,
    rows: Option<i64>,
    bytes: Option<i64>,
    columns: i64,
    primary_key: Option<String>,
    vector_columns: Option<String>,
    indexes: Option<String>,
    updated_at: i64,
}

#[async_trait::async_trait]
impl lakehouse_vector::Deferred for Listing {
    async fn run(self, _ctx: Arc<TaskContext>) -> datafusion::error::Result<RecordBatch> {
        let external = |e: lakehouse_vector::Error| DataFusionError::External(Box::new(e));
        let store = LanceStore::new(self.catalog.location());
        let mut rows = Vec::new();
        for (_, manifests) in self
            .catalog
            .list()
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))?
        {
            for manifest in manifests {
                let mut row = parquet_row(&manifest);
                if let Some(lance) = &manifest.lance {
                    let dataset = store.open(&lance.location).await.map_err(external)?;
                    row.version = dataset.version().version as i64;
                    let schema = datafusion::arrow::datatypes::Schema::from(dataset.schema());
                    if table_chunk_spec(&schema).is_some() {
                        row.kind = "documents";
                    }
                    row.rows = Some(dataset.count_rows(None).await? as i64);
                    let indexes = lakehouse_vector::table::index_infos(&dataset)
                        .await
                        .map_err(external)?;
                    row.indexes = joined(indexes.iter().map(|i| {
                        format!("{}({} on {})", i.name, i.index_type, i.columns.join(", "))
                    }));
                }
                rows.push(row);
            }
        }
        let text = |f: &dyn Fn(&Row) -> Option<String>| -> ArrayRef {
            Arc::new(StringArray::from(rows.iter().map(f).collect::<Vec<_>>()))
        };
        let int = |f: &dyn Fn(&Row) -> Option<i64>| -> ArrayRef {
            Arc::new(Int64Array::from(rows.iter().map(f).collect::<Vec<_>>()))
        };
        Ok(RecordBatch::try_new(
            schema(),
            vec![
                text(&|r| Some(r.schema.clone())),
                text(&|r| Some(r.table.clone())),
                text(&|r| Some(r.kind.to_string())),
                int(&|r| Some(r.version)),
                int(&|r| r.rows),
                int(&|r| r.bytes),
                int(&|r| Some(r.columns)),
                text(&|r| r.primary_key.clone()),
                text(&|r| r.vector_columns.clone()),
                text(&|r| r.indexes.clone()),
                Arc::new(
                    TimestampMicrosecondArray::from(
                        rows.iter().map(|r| r.updated_at).collect::<Vec<_>>(),
                    )
                    .with_timezone("UTC"),
                ),
            ],
        )?)
    }
}

/// The row of `manifest` as the catalog knows it (a Lance table's rows, version and indexes
/// are then read from its dataset).
fn parquet_row(manifest: &Manifest) -> Row {
    let schema = manifest.arrow_schema();
    let kind = match (&manifest.lance, &manifest.external) {
        (Some(_), _) => "lance",
        (None, Some(_)) => "external",
        (None, None) => "parquet",
    };
    let lance = manifest.lance.is_some();
    Row {
        schema: manifest.table.schema.to_string(),
        table: manifest.table.table.to_string(),
        kind,
        version: manifest.version.0 as i64,
        rows: (!lance).then_some(manifest.total_rows as i64),
        bytes: (!lance).then_some(manifest.total_bytes as i64),
        columns: schema.fields().len() as i64,
        primary_key: joined(manifest.primary_key.iter().cloned()),
        vector_columns: joined(manifest.lance.iter().flat_map(|l| {
            l.vector_columns.iter().map(|c| match &c.model {
                Some(model) => format!("{}({}, {}, {model})", c.name, c.dimension, c.metric),
                None => format!("{}({}, {})", c.name, c.dimension, c.metric),
            })
        })),
        indexes: None,
        updated_at: manifest.created_at.timestamp_micros(),
    }
}

/// `items` joined with `, `; `None` when there are none.
fn joined(items: impl Iterator<Item = String>) -> Option<String> {
    let items: Vec<String> = items.collect();
    (!items.is_empty()).then(|| items.join(", "))
}
