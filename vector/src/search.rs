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

use arrow::array::{Array, ArrayRef, Float32Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{Session, TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::ScalarValue;
use datafusion::datasource::TableType;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::projection::ProjectionExec;
use lakehouse_catalog::{Catalog, TableRef, VectorColumn};
use serde::Deserialize;

use crate::args::{json_options, literal, plan_err, string_literal, table_ref, to_datafusion};
use crate::embedding::EmbeddingModels;
use crate::table::{LanceStore, distance_type};

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
    /// IVF partitions to probe (default [`crate::table::DEFAULT_NPROBES`]).
    pub nprobes: Option<usize>,
    /// Re-rank `k * refine_factor` candidates with exact distances (default
    /// [`crate::table::DEFAULT_REFINE_FACTOR`]; 0: no re-ranking).
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

/// The parsed arguments `(table, query, k [, options])` shared by the search functions.
struct Call<'e, O> {
    table: TableRef,
    query: &'e Expr,
    k: usize,
    options: O,
}

/// Parses `(table, query, k [, options])`: the table a string literal resolved in the
/// session's default schema, `k` an integer in 1..=[`MAX_K`], `options` a JSON object string
/// deserialized into `O` (unknown keys refused).
fn parse_call<'e, O: serde::de::DeserializeOwned + Default>(
    function: &str,
    args: &TableFunctionArgs<'e, '_>,
) -> datafusion::error::Result<Call<'e, O>> {
    let exprs = args.exprs();
    if !(3..=4).contains(&exprs.len()) {
        return Err(plan_err(
            function,
            format!(
                "expects (table, query, k [, options]), e.g. {function}('docs', 'kubernetes', 5)"
            ),
        ));
    }
    let Some(name) = string_literal(&exprs[0]) else {
        return Err(plan_err(
            function,
            "the table must be a string literal, e.g. 'docs'",
        ));
    };
    let table = table_ref(function, name, args.session())?;
    let k = match literal(&exprs[2]).and_then(|v| v.cast_to(&DataType::Int64).ok()) {
        Some(ScalarValue::Int64(Some(k))) if (1..=MAX_K as i64).contains(&k) => k as usize,
        _ => {
            return Err(plan_err(
                function,
                format!("k must be an integer from 1 to {MAX_K}"),
            ));
        }
    };
    let options = json_options(function, exprs.get(3))?;
    Ok(Call {
        table,
        query: &exprs[1],
        k,
        options,
    })
}

/// The live manifest and Lance record of `table`, from the catalog's heads (refreshed by the
/// server before planning); `needs` says what the function needs, for the Parquet case.
fn lance_table(
    catalog: &Catalog,
    table: &TableRef,
    function: &str,
    needs: &str,
) -> datafusion::error::Result<(
    Arc<lakehouse_catalog::Manifest>,
    lakehouse_catalog::LanceTable,
)> {
    let manifest = catalog
        .cached_table(table)
        .ok_or_else(|| plan_err(function, format!("table {table} not found")))?;
    let lance = manifest
        .lance
        .clone()
        .ok_or_else(|| plan_err(function, format!("{table} is a Parquet table; {needs}")))?;
    Ok((manifest, lance))
}

/// `schema` with one more column `name: data_type` (nullable) at the end.
fn with_column(schema: &Schema, name: &str, data_type: DataType) -> SchemaRef {
    let mut fields: Vec<Arc<Field>> = schema.fields().iter().cloned().collect();
    fields.push(Arc::new(Field::new(name, data_type, true)));
    Arc::new(Schema::new(fields))
}

impl VectorSearchFunction {
    /// The search of `query` (a text or vector literal) in `table`, checked against the
    /// table's vector columns and the configured models.
    pub(crate) fn search(
        &self,
        table: &TableRef,
        query: &Expr,
        k: usize,
        options: SearchOptions,
    ) -> datafusion::error::Result<VectorSearchTable> {
        const F: &str = "vector_search";
        let query = match string_literal(query) {
            Some(text) => Query::Text(text.to_string()),
            None => Query::Vector(vector(query).ok_or_else(|| {
                plan_err(
                    F,
                    "the query must be a text or a vector literal like [0.1, 0.2]",
                )
            })?),
        };
        let (manifest, lance) =
            lance_table(&self.catalog, table, F, "vector search needs a Lance table")?;
        let column = match &options.column {
            Some(name) => lance
                .vector_columns
                .iter()
                .find(|c| &c.name == name)
                .ok_or_else(|| plan_err(F, format!("{table} has no vector column {name}")))?,
            None => match lance.vector_columns.as_slice() {
                [only] => only,
                [] => return Err(plan_err(F, format!("{table} has no vector column"))),
                _ => {
                    return Err(plan_err(
                        F,
                        format!(
                            "{table} has several vector columns; name one with {{\"column\": ...}}"
                        ),
                    ));
                }
            },
        }
        .clone();
        match &query {
            Query::Vector(v) if v.len() != column.dimension => {
                return Err(plan_err(
                    F,
                    format!(
                        "the query vector has {} dimensions, column {} has {}",
                        v.len(),
                        column.name,
                        column.dimension
                    ),
                ));
            }
            Query::Text(_) => {
                self.models
                    .get(column.model.as_deref())
                    .map_err(|e| plan_err(F, format!("column {}: {e}", column.name)))?;
            }
            Query::Vector(_) => {}
        }
        Ok(VectorSearchTable {
            schema: with_column(&manifest.arrow_schema(), "_distance", DataType::Float32),
            store: self.store.clone(),
            location: lance.location,
            models: Arc::clone(&self.models),
            column,
            query,
            k,
            options,
        })
    }
}

impl TableFunctionImpl for VectorSearchFunction {
    fn call_with_args(
        &self,
        args: TableFunctionArgs,
    ) -> datafusion::error::Result<Arc<dyn TableProvider>> {
        let call: Call<SearchOptions> = parse_call("vector_search", &args)?;
        Ok(Arc::new(self.search(
            &call.table,
            call.query,
            call.k,
            call.options,
        )?))
    }
}

/// The result of one `vector_search` call.
#[derive(Debug)]
pub(crate) struct VectorSearchTable {
    schema: SchemaRef,
    store: LanceStore,
    location: String,
    models: Arc<EmbeddingModels>,
    column: VectorColumn,
    query: Query,
    k: usize,
    options: SearchOptions,
}

impl VectorSearchTable {
    /// The searched column's metric (what `_distance` measures).
    pub(crate) fn metric(&self) -> lakehouse_catalog::VectorMetric {
        self.column.metric
    }
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
                    .map_err(to_datafusion)?;
                let vectors = embedder
                    .embed(std::slice::from_ref(text))
                    .await
                    .map_err(to_datafusion)?;
                if vectors[0].len() != self.column.dimension {
                    return Err(plan_err(
                        "vector_search",
                        format!(
                            "model {} gives {}-dimensional vectors, column {} has {}",
                            embedder.name(),
                            vectors[0].len(),
                            self.column.name,
                            self.column.dimension
                        ),
                    ));
                }
                vectors[0].to_vec()
            }
        };
        let dataset = self
            .store
            .open(&self.location)
            .await
            .map_err(to_datafusion)?;
        let mut scanner = dataset.scan();
        let query = Float32Array::from(vector);
        scanner
            .nearest(&self.column.name, &query, self.k)
            .map_err(to_datafusion)?
            .distance_metric(distance_type(self.column.metric));
        if let Some(filter) = &self.options.filter {
            scanner.filter(filter).map_err(to_datafusion)?;
            scanner.prefilter(true);
        }
        scanner.nprobes(
            self.options
                .nprobes
                .unwrap_or(crate::table::DEFAULT_NPROBES),
        );
        match self.options.refine_factor {
            Some(0) => {}
            factor => {
                scanner.refine(factor.unwrap_or(crate::table::DEFAULT_REFINE_FACTOR));
            }
        }
        if let Some(ef) = self.options.ef {
            scanner.ef(ef);
        }
        let plan = scanner.create_plan().await.map_err(to_datafusion)?;
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

impl TextSearchFunction {
    /// The BM25 search of the text `query` in `table`.
    fn search(
        &self,
        table: &TableRef,
        query: &Expr,
        k: usize,
        options: TextOptions,
    ) -> datafusion::error::Result<TextSearchTable> {
        const F: &str = "text_search";
        let Some(query) = string_literal(query) else {
            return Err(plan_err(F, "the query must be a string literal"));
        };
        let (manifest, lance) = lance_table(
            &self.catalog,
            table,
            F,
            "full-text search needs a Lance table with an FTS index",
        )?;
        Ok(TextSearchTable {
            schema: with_column(&manifest.arrow_schema(), "_score", DataType::Float32),
            store: self.store.clone(),
            location: lance.location,
            query: query.to_string(),
            k,
            options,
        })
    }
}

impl TableFunctionImpl for TextSearchFunction {
    fn call_with_args(
        &self,
        args: TableFunctionArgs,
    ) -> datafusion::error::Result<Arc<dyn TableProvider>> {
        let call: Call<TextOptions> = parse_call("text_search", &args)?;
        Ok(Arc::new(self.search(
            &call.table,
            call.query,
            call.k,
            call.options,
        )?))
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
        let dataset = self
            .store
            .open(&self.location)
            .await
            .map_err(to_datafusion)?;
        let mut query = FullTextSearchQuery::new(self.query.clone()).limit(Some(self.k as i64));
        if let Some(column) = &self.options.column {
            query = query.with_column(column.clone()).map_err(to_datafusion)?;
        }
        let mut scanner = dataset.scan();
        scanner.full_text_search(query).map_err(to_datafusion)?;
        if let Some(filter) = &self.options.filter {
            scanner.filter(filter).map_err(to_datafusion)?;
            scanner.prefilter(true);
        }
        scanner
            .limit(Some(self.k as i64), None)
            .map_err(to_datafusion)?;
        let plan = scanner.create_plan().await.map_err(to_datafusion)?;
        project_by_name(plan, &self.schema, projection)
    }
}

/// Default constant of reciprocal rank fusion, `score = Σ weight / (rrf_k + rank)` (Cormack,
/// Clarke and Büttcher, SIGIR 2009, use 60).
pub const DEFAULT_RRF_K: f64 = 60.0;

/// `hybrid_search(table, query, k [, options])`: vector and BM25 text search fused by
/// reciprocal rank fusion.
///
/// Each side ranks its top `3k` candidates (vector: by `_distance`; text: by BM25 over the
/// FTS index); a row's `_score` is `vector_weight / (rrf_k + vector_rank) + text_weight /
/// (rrf_k + text_rank)` (a side where the row is not among the candidates adds nothing).
/// `options` (JSON): `column` (vector column), `text_column`, `filter` (pre-filter for both
/// sides), `vector_weight`, `text_weight` (default 1.0 each), `rrf_k` (default 60),
/// `nprobes`, `refine_factor`, `ef`. The result has the table's columns plus `_score`
/// (Float64, higher is better), best first, at most `k` rows.
#[derive(Debug)]
pub struct HybridSearchFunction {
    vector: VectorSearchFunction,
    text: TextSearchFunction,
}

impl HybridSearchFunction {
    /// The function over `catalog`'s Lance tables, embedding queries with `models`.
    pub fn new(catalog: Arc<Catalog>, models: Arc<EmbeddingModels>) -> Self {
        Self {
            vector: VectorSearchFunction::new(Arc::clone(&catalog), models),
            text: TextSearchFunction::new(catalog),
        }
    }
}

/// The `options` of `hybrid_search` (see the module docs of each side for the knobs).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HybridOptions {
    pub(crate) column: Option<String>,
    pub(crate) text_column: Option<String>,
    pub(crate) filter: Option<String>,
    pub(crate) vector_weight: Option<f64>,
    pub(crate) text_weight: Option<f64>,
    pub(crate) rrf_k: Option<f64>,
    pub(crate) nprobes: Option<usize>,
    pub(crate) refine_factor: Option<u32>,
    pub(crate) ef: Option<usize>,
}

impl HybridSearchFunction {
    /// The fused search of the text `query` in `table`: `k` rows from the `3k` best of each
    /// side (see [`DEFAULT_RRF_K`]).
    pub(crate) fn fused(
        &self,
        table: &TableRef,
        query: &Expr,
        k: usize,
        options: HybridOptions,
    ) -> datafusion::error::Result<HybridSearchTable> {
        let candidates = (3 * k).min(MAX_K);
        let vector_options = SearchOptions {
            column: options.column,
            filter: options.filter.clone(),
            nprobes: options.nprobes,
            refine_factor: options.refine_factor,
            ef: options.ef,
        };
        let text_options = TextOptions {
            column: options.text_column,
            filter: options.filter,
        };
        let vector = self
            .vector
            .search(table, query, candidates, vector_options)?;
        let text = self.text.search(table, query, candidates, text_options)?;
        // The table's columns are the text side's minus `_score`.
        let table_columns = text.schema.fields().len() - 1;
        let table_schema = Schema::new(text.schema.fields()[..table_columns].to_vec());
        Ok(HybridSearchTable {
            schema: with_column(&table_schema, "_score", DataType::Float64),
            table_columns,
            vector: Arc::new(vector),
            text: Arc::new(text),
            k,
            rrf_k: options.rrf_k.unwrap_or(DEFAULT_RRF_K),
            weights: (
                options.vector_weight.unwrap_or(1.0),
                options.text_weight.unwrap_or(1.0),
            ),
        })
    }
}

impl TableFunctionImpl for HybridSearchFunction {
    fn call_with_args(
        &self,
        args: TableFunctionArgs,
    ) -> datafusion::error::Result<Arc<dyn TableProvider>> {
        let Call {
            table,
            query,
            k,
            options,
        }: Call<HybridOptions> = parse_call("hybrid_search", &args)?;
        Ok(Arc::new(self.fused(&table, query, k, options)?))
    }
}

#[derive(Debug)]
pub(crate) struct HybridSearchTable {
    schema: SchemaRef,
    table_columns: usize,
    vector: Arc<dyn TableProvider>,
    text: Arc<dyn TableProvider>,
    k: usize,
    rrf_k: f64,
    weights: (f64, f64),
}

/// Runs `provider` and returns its rows as one batch, sorted by `order` (`_distance`
/// ascending or `_score` descending).
async fn ranked(
    provider: &Arc<dyn TableProvider>,
    state: &dyn Session,
    order: &str,
    ascending: bool,
) -> datafusion::error::Result<arrow::array::RecordBatch> {
    let plan = provider.scan(state, None, &[], None).await?;
    let schema = plan.schema();
    let batches = datafusion::physical_plan::collect(plan, state.task_ctx()).await?;
    let batch = arrow::compute::concat_batches(&schema, &batches)?;
    let key = batch.column(schema.index_of(order)?);
    let options = arrow::compute::SortOptions {
        descending: !ascending,
        nulls_first: false,
    };
    let indices = arrow::compute::sort_to_indices(key, Some(options), None)?;
    Ok(arrow::compute::take_record_batch(&batch, &indices)?)
}

#[async_trait::async_trait]
impl TableProvider for HybridSearchTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Temporary
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        use std::collections::HashMap;
        let vector = ranked(&self.vector, state, "_distance", true).await?;
        let text = ranked(&self.text, state, "_score", false).await?;
        // Rows are identified by their values in the table's columns (both sides read the
        // same dataset version), rendered as one key string.
        let keys = |batch: &arrow::array::RecordBatch| -> datafusion::error::Result<Vec<String>> {
            let columns: Vec<ArrayRef> = (0..self.table_columns)
                .map(|i| batch.column(i).clone())
                .collect();
            let formatters = columns
                .iter()
                .map(|c| {
                    arrow::util::display::ArrayFormatter::try_new(c.as_ref(), &Default::default())
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok((0..batch.num_rows())
                .map(|row| {
                    formatters
                        .iter()
                        .map(|f| f.value(row).to_string())
                        .collect::<Vec<_>>()
                        .join("\u{1f}")
                })
                .collect())
        };
        let mut fused: HashMap<String, (f64, usize, usize)> = HashMap::new();
        for (side, batch, weight) in [(0, &vector, self.weights.0), (1, &text, self.weights.1)] {
            for (rank, key) in keys(batch)?.into_iter().enumerate() {
                let entry = fused.entry(key).or_insert((0.0, side, rank));
                entry.0 += weight / (self.rrf_k + (rank + 1) as f64);
            }
        }
        let mut ranking: Vec<(f64, usize, usize)> = fused.into_values().collect();
        ranking.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
        ranking.truncate(self.k);
        let indices: Vec<(usize, usize)> =
            ranking.iter().map(|(_, side, row)| (*side, *row)).collect();
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.table_columns + 1);
        for i in 0..self.table_columns {
            let sources = [vector.column(i).as_ref(), text.column(i).as_ref()];
            columns.push(arrow::compute::interleave(&sources, &indices)?);
        }
        columns.push(Arc::new(arrow::array::Float64Array::from_iter_values(
            ranking.iter().map(|(score, _, _)| *score),
        )));
        let batch = arrow::array::RecordBatch::try_new(Arc::clone(&self.schema), columns)?;
        let plan: Arc<dyn ExecutionPlan> =
            datafusion::datasource::memory::MemorySourceConfig::try_new_exec(
                &[vec![batch]],
                Arc::clone(&self.schema),
                projection.cloned(),
            )?;
        Ok(plan)
    }
}
