//! `vector_search(table, query, k [, options])`: nearest neighbours in a Lance table, as a SQL
//! table function whose result is a table (so it filters, joins and aggregates).
//!
//! - `table`: a Lance table name, `'docs'` or `'schema.docs'`.
//! - `query`: a text (embedded with the model recorded for the vector column) or a vector
//!   literal (`[0.1, 0.2, ...]`, `make_array(...)`), of the column's dimension.
//! - `k`: how many rows at most (1..=10 000).
//! - `options`: a JSON object string with any of `column` (the vector column; needed when
//!   the table has several), `filter` (a SQL predicate applied *before* the nearest-neighbour
//!   step, so `k` rows come back whenever `k` rows match), `nprobes`, `refine_factor`, `ef`
//!   (index search knobs, used once the column has an index).
//!
//! The result has the table's columns plus `_distance` (Float32) in the column's metric
//! (cosine: `1 - cos`, l2: squared Euclidean, dot: negative dot product), nearest first.
//! Search runs Lance's own scan plan (`Scanner::nearest`), flat until an index exists.

use std::sync::Arc;

use arrow::array::{Array, Float32Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{Session, TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::{DataFusionError, ScalarValue};
use datafusion::datasource::TableType;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::projection::ProjectionExec;
use lakehouse_catalog::{Catalog, SchemaName, TableRef, VectorColumn, VectorMetric};
use serde::Deserialize;

use crate::embedding::EmbeddingModels;
use crate::table::LanceStore;

/// Largest `k` accepted.
pub const MAX_K: usize = 10_000;

/// The `options` argument.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchOptions {
    /// The vector column.
    pub column: Option<String>,
    /// SQL predicate applied before the nearest-neighbour step.
    pub filter: Option<String>,
    /// IVF partitions to probe.
    pub nprobes: Option<usize>,
    /// Re-rank `k * refine_factor` candidates with exact distances.
    pub refine_factor: Option<u32>,
    /// HNSW search breadth.
    pub ef: Option<usize>,
}

/// What to search for.
#[derive(Debug, Clone)]
enum Query {
    Text(String),
    Vector(Vec<f32>),
}

/// The `vector_search` table function of one session.
#[derive(Debug)]
pub struct VectorSearchFunction {
    catalog: Arc<Catalog>,
    store: LanceStore,
    models: Arc<EmbeddingModels>,
}

impl VectorSearchFunction {
    /// The function over `catalog`'s Lance tables, embedding text queries with `models`.
    pub fn new(catalog: Arc<Catalog>, models: Arc<EmbeddingModels>) -> Self {
        let store = LanceStore::new(catalog.location());
        Self {
            catalog,
            store,
            models,
        }
    }
}

fn plan_err(message: impl Into<String>) -> DataFusionError {
    DataFusionError::Plan(format!("vector_search: {}", message.into()))
}

fn literal(expr: &Expr) -> Option<&ScalarValue> {
    match expr {
        Expr::Literal(value, _) => Some(value),
        Expr::Cast(cast) => literal(&cast.expr),
        _ => None,
    }
}

fn float(value: &ScalarValue) -> Option<f32> {
    match value.cast_to(&DataType::Float32).ok()? {
        ScalarValue::Float32(Some(v)) => Some(v),
        _ => None,
    }
}

/// A vector from a list literal or a `make_array(...)` call of numeric literals.
fn vector(expr: &Expr) -> Option<Vec<f32>> {
    if let Some(ScalarValue::List(list)) = literal(expr) {
        let values = list.value(0);
        let values = arrow::compute::cast(&values, &DataType::Float32).ok()?;
        let values = values.as_any().downcast_ref::<Float32Array>()?;
        return (values.null_count() == 0).then(|| values.values().to_vec());
    }
    if let Expr::ScalarFunction(f) = expr
        && f.name() == "make_array"
    {
        return f.args.iter().map(|a| literal(a).and_then(float)).collect();
    }
    None
}

impl TableFunctionImpl for VectorSearchFunction {
    fn call_with_args(
        &self,
        args: TableFunctionArgs,
    ) -> datafusion::error::Result<Arc<dyn TableProvider>> {
        let exprs = args.exprs();
        if !(3..=4).contains(&exprs.len()) {
            return Err(plan_err(
                "expects (table, query, k [, options]), e.g. vector_search('docs', 'text', 5)",
            ));
        }
        let Some(ScalarValue::Utf8(Some(name))) = literal(&exprs[0]) else {
            return Err(plan_err("the table must be a string literal, e.g. 'docs'"));
        };
        let default_schema = args
            .session()
            .config()
            .options()
            .catalog
            .default_schema
            .clone();
        let table = match name.split_once('.') {
            Some((schema, table)) => TableRef::new(schema, table),
            None => SchemaName::new(default_schema).and_then(|s| {
                Ok(TableRef {
                    schema: s,
                    table: lakehouse_catalog::TableName::new(name.clone())?,
                })
            }),
        }
        .map_err(|e| plan_err(e.to_string()))?;
        let query = match literal(&exprs[1]) {
            Some(ScalarValue::Utf8(Some(text)) | ScalarValue::LargeUtf8(Some(text))) => {
                Query::Text(text.clone())
            }
            _ => Query::Vector(vector(&exprs[1]).ok_or_else(|| {
                plan_err("the query must be a text or a vector literal like [0.1, 0.2]")
            })?),
        };
        let k = match literal(&exprs[2]).and_then(|v| v.cast_to(&DataType::Int64).ok()) {
            Some(ScalarValue::Int64(Some(k))) if (1..=MAX_K as i64).contains(&k) => k as usize,
            _ => return Err(plan_err(format!("k must be an integer from 1 to {MAX_K}"))),
        };
        let options: SearchOptions = match exprs.get(3).map(literal) {
            None => SearchOptions::default(),
            Some(Some(ScalarValue::Utf8(Some(json)))) => serde_json::from_str(json)
                .map_err(|e| plan_err(format!("options must be a JSON object: {e}")))?,
            Some(_) => return Err(plan_err("options must be a JSON string literal")),
        };

        let manifest = self
            .catalog
            .cached_table(&table)
            .ok_or_else(|| plan_err(format!("table {table} not found")))?;
        let Some(lance) = manifest.lance.clone() else {
            return Err(plan_err(format!(
                "{table} is a Parquet table; vector search needs a Lance table"
            )));
        };
        let column = match &options.column {
            Some(name) => lance
                .vector_columns
                .iter()
                .find(|c| &c.name == name)
                .ok_or_else(|| plan_err(format!("{table} has no vector column {name}")))?,
            None => match lance.vector_columns.as_slice() {
                [only] => only,
                [] => return Err(plan_err(format!("{table} has no vector column"))),
                _ => {
                    return Err(plan_err(format!(
                        "{table} has several vector columns; name one with {{\"column\": ...}}"
                    )));
                }
            },
        }
        .clone();
        match &query {
            Query::Vector(v) if v.len() != column.dimension => {
                return Err(plan_err(format!(
                    "the query vector has {} dimensions, column {} has {}",
                    v.len(),
                    column.name,
                    column.dimension
                )));
            }
            Query::Text(_) => {
                self.models
                    .get(column.model.as_deref())
                    .map_err(|e| plan_err(format!("column {}: {e}", column.name)))?;
            }
            _ => {}
        }
        let mut fields: Vec<Arc<Field>> =
            manifest.arrow_schema().fields().iter().cloned().collect();
        fields.push(Arc::new(Field::new("_distance", DataType::Float32, true)));
        Ok(Arc::new(VectorSearchTable {
            schema: Arc::new(Schema::new(fields)),
            store: self.store.clone(),
            location: lance.location,
            models: Arc::clone(&self.models),
            column,
            query,
            k,
            options,
        }))
    }
}

/// The result of one `vector_search` call.
#[derive(Debug)]
struct VectorSearchTable {
    schema: SchemaRef,
    store: LanceStore,
    location: String,
    models: Arc<EmbeddingModels>,
    column: VectorColumn,
    query: Query,
    k: usize,
    options: SearchOptions,
}

fn metric(metric: VectorMetric) -> lance_linalg::distance::DistanceType {
    use lance_linalg::distance::DistanceType;
    match metric {
        VectorMetric::Cosine => DistanceType::Cosine,
        VectorMetric::L2 => DistanceType::L2,
        VectorMetric::Dot => DistanceType::Dot,
    }
}

fn external(e: impl std::error::Error + Send + Sync + 'static) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

#[async_trait::async_trait]
impl TableProvider for VectorSearchTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Temporary
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        let vector = match &self.query {
            Query::Vector(v) => v.clone(),
            Query::Text(text) => {
                let embedder = self
                    .models
                    .get(self.column.model.as_deref())
                    .map_err(external)?;
                let vectors = embedder
                    .embed(std::slice::from_ref(text))
                    .await
                    .map_err(external)?;
                if vectors[0].len() != self.column.dimension {
                    return Err(plan_err(format!(
                        "model {} gives {}-dimensional vectors, column {} has {}",
                        embedder.name(),
                        vectors[0].len(),
                        self.column.name,
                        self.column.dimension
                    )));
                }
                vectors[0].to_vec()
            }
        };
        let dataset = self.store.open(&self.location).await.map_err(external)?;
        let mut scanner = dataset.scan();
        let query = Float32Array::from(vector);
        scanner
            .nearest(&self.column.name, &query, self.k)
            .map_err(external)?
            .distance_metric(metric(self.column.metric));
        if let Some(filter) = &self.options.filter {
            scanner.filter(filter).map_err(external)?;
            scanner.prefilter(true);
        }
        if let Some(n) = self.options.nprobes {
            scanner.nprobes(n);
        }
        if let Some(factor) = self.options.refine_factor {
            scanner.refine(factor);
        }
        if let Some(ef) = self.options.ef {
            scanner.ef(ef);
        }
        let plan = scanner.create_plan().await.map_err(external)?;
        project_by_name(plan, &self.schema, projection)
    }
}

/// `plan`'s columns named as in `schema` (Lance answers the dataset's columns, then
/// `_distance`/`_score`, plus `_rowid`), in `schema`'s order, then `projection`.
fn project_by_name(
    plan: Arc<dyn ExecutionPlan>,
    schema: &SchemaRef,
    projection: Option<&Vec<usize>>,
) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
    let plan_schema = plan.schema();
    let wanted: Vec<usize> = match projection {
        Some(p) => p.clone(),
        None => (0..schema.fields().len()).collect(),
    };
    let exprs = wanted
        .iter()
        .map(|&i| {
            let name = schema.field(i).name();
            let index = plan_schema.index_of(name)?;
            let column: Arc<dyn datafusion::physical_expr::PhysicalExpr> = Arc::new(
                datafusion::physical_expr::expressions::Column::new(name, index),
            );
            Ok((column, name.clone()))
        })
        .collect::<datafusion::error::Result<Vec<_>>>()?;
    Ok(Arc::new(ProjectionExec::try_new(exprs, plan)?))
}

/// `text_search(table, query, k [, options])`: BM25 full-text search over the FTS-indexed text
/// columns of a Lance table (`CREATE INDEX ... USING FTS (column)`).
///
/// `options` is a JSON object string with `column` (search only that indexed column) and
/// `filter` (a SQL predicate applied before ranking). The result has the table's columns plus
/// `_score` (Float32, BM25, higher is better), best first, at most `k` rows.
#[derive(Debug)]
pub struct TextSearchFunction {
    catalog: Arc<Catalog>,
    store: LanceStore,
}

impl TextSearchFunction {
    /// The function over `catalog`'s Lance tables.
    pub fn new(catalog: Arc<Catalog>) -> Self {
        let store = LanceStore::new(catalog.location());
        Self { catalog, store }
    }
}

/// The `options` of `text_search`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct TextOptions {
    column: Option<String>,
    filter: Option<String>,
}

fn text_err(message: impl Into<String>) -> DataFusionError {
    DataFusionError::Plan(format!("text_search: {}", message.into()))
}

impl TableFunctionImpl for TextSearchFunction {
    fn call_with_args(
        &self,
        args: TableFunctionArgs,
    ) -> datafusion::error::Result<Arc<dyn TableProvider>> {
        let exprs = args.exprs();
        if !(3..=4).contains(&exprs.len()) {
            return Err(text_err(
                "expects (table, query, k [, options]), e.g. text_search('docs', 'kubernetes', 5)",
            ));
        }
        let Some(ScalarValue::Utf8(Some(name))) = literal(&exprs[0]) else {
            return Err(text_err("the table must be a string literal, e.g. 'docs'"));
        };
        let default_schema = args
            .session()
            .config()
            .options()
            .catalog
            .default_schema
            .clone();
        let table = resolve(name, default_schema).map_err(|e| text_err(e.to_string()))?;
        let Some(ScalarValue::Utf8(Some(query))) = literal(&exprs[1]) else {
            return Err(text_err("the query must be a string literal"));
        };
        let k = match literal(&exprs[2]).and_then(|v| v.cast_to(&DataType::Int64).ok()) {
            Some(ScalarValue::Int64(Some(k))) if (1..=MAX_K as i64).contains(&k) => k as usize,
            _ => return Err(text_err(format!("k must be an integer from 1 to {MAX_K}"))),
        };
        let options: TextOptions = match exprs.get(3).map(literal) {
            None => TextOptions::default(),
            Some(Some(ScalarValue::Utf8(Some(json)))) => serde_json::from_str(json)
                .map_err(|e| text_err(format!("options must be a JSON object: {e}")))?,
            Some(_) => return Err(text_err("options must be a JSON string literal")),
        };
        let manifest = self
            .catalog
            .cached_table(&table)
            .ok_or_else(|| text_err(format!("table {table} not found")))?;
        let Some(lance) = manifest.lance.clone() else {
            return Err(text_err(format!(
                "{table} is a Parquet table; full-text search needs a Lance table with an FTS index"
            )));
        };
        let mut fields: Vec<Arc<Field>> =
            manifest.arrow_schema().fields().iter().cloned().collect();
        fields.push(Arc::new(Field::new("_score", DataType::Float32, true)));
        Ok(Arc::new(TextSearchTable {
            schema: Arc::new(Schema::new(fields)),
            store: self.store.clone(),
            location: lance.location,
            query: query.clone(),
            k,
            options,
        }))
    }
}

fn resolve(name: &str, default_schema: String) -> lakehouse_catalog::Result<TableRef> {
    match name.split_once('.') {
        Some((schema, table)) => TableRef::new(schema, table),
        None => TableRef::new(default_schema, name),
    }
}

#[derive(Debug)]
struct TextSearchTable {
    schema: SchemaRef,
    store: LanceStore,
    location: String,
    query: String,
    k: usize,
    options: TextOptions,
}

#[async_trait::async_trait]
impl TableProvider for TextSearchTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Temporary
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        use lance_index::scalar::FullTextSearchQuery;
        let dataset = self.store.open(&self.location).await.map_err(external)?;
        let mut query = FullTextSearchQuery::new(self.query.clone()).limit(Some(self.k as i64));
        if let Some(column) = &self.options.column {
            query = query.with_column(column.clone()).map_err(external)?;
        }
        let mut scanner = dataset.scan();
        scanner.full_text_search(query).map_err(external)?;
        if let Some(filter) = &self.options.filter {
            scanner.filter(filter).map_err(external)?;
            scanner.prefilter(true);
        }
        scanner.limit(Some(self.k as i64), None).map_err(external)?;
        let plan = scanner.create_plan().await.map_err(external)?;
        project_by_name(plan, &self.schema, projection)
    }
}
