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
//!   (index search knobs, used once the column has an index), and `rerank` (re-score the top
//!   candidates with a chat model: [`crate::rerank`]).
//!
//! The result has the table's columns plus `_distance` (Float32) in the column's metric
//! (cosine: `1 - cos`, l2: squared Euclidean, dot: negative dot product), nearest first.
//! Search runs Lance's own scan plan (`Scanner::nearest`), flat until an index exists.
//!
//! Every search function reads its table as the session resolved it
//! ([`crate::session::resolved`]): the Lance dataset at the version the query is pinned to.
//! Arguments are checked while planning; the search itself (embedding a text query, Lance's
//! scan, reading only the projected columns) runs when the query executes, once per execution.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Float32Array, RecordBatch, RecordBatchOptions};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, UInt64Type};
use datafusion::catalog::{Session, TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::ScalarValue;
use datafusion::datasource::TableType;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::{PartitionStream, StreamingTableExec};
use futures::{StreamExt, TryStreamExt};
use lakehouse_catalog::{TableRef, VectorColumn};
use serde::Deserialize;

use crate::args::{json_options, literal, plan_err, string_literal, to_datafusion, with_column};
use crate::chat::ChatModels;
use crate::embedding::EmbeddingModels;
use crate::rerank::{Rerank, RerankOptions};
use crate::session::{ResolvedTable, resolved};
use crate::table::distance_type;

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
    /// Re-score the top candidates with a chat model ([`crate::rerank`]).
    pub rerank: Option<RerankOptions>,
}

/// What to search for.
#[derive(Debug, Clone)]
enum Query {
    Text(String),
    Vector(Vec<f32>),
}

/// The `vector_search` table function.
#[derive(Debug)]
pub struct VectorSearchFunction {
    models: Arc<EmbeddingModels>,
    chat: Arc<ChatModels>,
}

impl VectorSearchFunction {
    /// The function, embedding text queries with `models` and reranking with `chat`.
    pub fn new(models: Arc<EmbeddingModels>, chat: Arc<ChatModels>) -> Self {
        Self { models, chat }
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
pub(crate) struct Call<'e, O> {
    pub(crate) table: TableRef,
    pub(crate) resolved: ResolvedTable,
    pub(crate) query: &'e Expr,
    pub(crate) k: usize,
    pub(crate) options: O,
}

/// Parses `(table, query, k [, options])`: the table a string literal the session resolved,
/// `k` an integer in 1..=[`MAX_K`], `options` a JSON object string deserialized into `O`
/// (unknown keys refused).
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
    let (table, resolved) = resolved(function, name, args.session())?;
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
        resolved,
        query: &exprs[1],
        k,
        options,
    })
}

impl<O> Call<'_, O> {
    /// Plans the `rerank` option (taken out of the options by `take`) of `function`: the rerank
    /// step, with `k` raised to the candidates the first stage must rank.
    ///
    /// # Errors
    /// As [`Rerank::plan`].
    pub(crate) fn plan_rerank(
        &mut self,
        function: &str,
        chat: &ChatModels,
        take: impl FnOnce(&mut O) -> Option<RerankOptions>,
    ) -> datafusion::error::Result<Option<Rerank>> {
        let Some(options) = take(&mut self.options) else {
            return Ok(None);
        };
        let (rerank, candidates) =
            Rerank::plan(function, options, chat, string_literal(self.query), self.k)?;
        self.k = candidates;
        Ok(Some(rerank))
    }
}

/// The pinned Lance dataset of `table`, its Lance record and its columns; `needs` says what
/// the function needs, for the Parquet case.
fn lance_table(
    table: &TableRef,
    resolved: &ResolvedTable,
    function: &str,
    needs: &str,
) -> datafusion::error::Result<(Arc<lance::Dataset>, lakehouse_catalog::LanceTable, Schema)> {
    let (Some(lance), Some(dataset)) = (&resolved.manifest.lance, &resolved.dataset) else {
        return Err(plan_err(
            function,
            format!("{table} is a Parquet table; {needs}"),
        ));
    };
    let schema = Schema::from(dataset.schema());
    Ok((Arc::clone(dataset), lance.clone(), schema))
}

impl VectorSearchFunction {
    /// The chat models it reranks with.
    pub(crate) fn chat(&self) -> &ChatModels {
        &self.chat
    }

    /// The search of `query` (a text or vector literal) in `table` as the session resolved
    /// it, checked against the table's vector columns and the configured models.
    pub(crate) fn search(
        &self,
        call: Call<'_, SearchOptions>,
    ) -> datafusion::error::Result<SearchTable<VectorSearch>> {
        const F: &str = "vector_search";
        let Call {
            table,
            resolved,
            query,
            k,
            options,
        } = call;
        let table = &table;
        let query = match string_literal(query) {
            Some(text) => Query::Text(text.to_string()),
            None => Query::Vector(vector(query).ok_or_else(|| {
                plan_err(
                    F,
                    "the query must be a text or a vector literal like [0.1, 0.2]",
                )
            })?),
        };
        let (dataset, lance, schema) =
            lance_table(table, &resolved, F, "vector search needs a Lance table")?;
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
        Ok(SearchTable {
            schema: with_column(&schema, "_distance", DataType::Float32),
            computed: 1,
            search: VectorSearch {
                dataset,
                models: Arc::clone(&self.models),
                column,
                query,
                k,
                options,
            },
        })
    }
}

impl TableFunctionImpl for VectorSearchFunction {
    fn call_with_args(
        &self,
        args: TableFunctionArgs,
    ) -> datafusion::error::Result<Arc<dyn TableProvider>> {
        const F: &str = "vector_search";
        let mut call = parse_call(F, &args)?;
        let rerank = call.plan_rerank(F, &self.chat, |o: &mut SearchOptions| o.rerank.take())?;
        self.search(call)?.finish(F, rerank)
    }
}

/// A search that runs when a query executes: the stream of its result rows, holding at least
/// the given table columns (by name) and its score column.
#[async_trait::async_trait]
pub(crate) trait Search: Clone + std::fmt::Debug + Send + Sync + 'static {
    /// The score column it ranks by, and whether lower is better.
    const ORDER: (&'static str, bool);

    /// Runs the search, reading only `columns` of the table.
    async fn run(
        self,
        columns: Vec<String>,
        ctx: Arc<TaskContext>,
    ) -> datafusion::error::Result<SendableRecordBatchStream>;
}

/// The result of one search function call: the table's columns and `computed` score columns
/// (the last ones); the search runs when a query scanning it executes, reading only the
/// projected columns.
#[derive(Debug)]
pub(crate) struct SearchTable<S> {
    schema: SchemaRef,
    /// How many of the last columns the search computes (its score, the rerank rating).
    computed: usize,
    search: S,
}

impl<S: Search> SearchTable<S> {
    /// This search as a table, reranked by `rerank` when given (the rating column added).
    ///
    /// # Errors
    /// A planning error of `function` when the table lacks the column `rerank` rates.
    pub(crate) fn finish(
        self,
        function: &str,
        rerank: Option<Rerank>,
    ) -> datafusion::error::Result<Arc<dyn TableProvider>> {
        let Some(rerank) = rerank else {
            return Ok(Arc::new(self));
        };
        Ok(Arc::new(SearchTable {
            schema: rerank.schema(function, &self.schema)?,
            computed: self.computed + 1,
            search: Reranked {
                inner: self.search,
                rerank,
            },
        }))
    }
}

impl SearchTable<VectorSearch> {
    /// The searched column's metric (what `_distance` measures).
    pub(crate) fn metric(&self) -> lakehouse_catalog::VectorMetric {
        self.search.column.metric
    }
}

#[async_trait::async_trait]
impl<S: Search> TableProvider for SearchTable<S> {
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
        let projected = Arc::new(match projection {
            Some(p) => self.schema.project(p)?,
            None => self.schema.as_ref().clone(),
        });
        let table_columns = self.schema.fields().len() - self.computed;
        let columns = projection
            .cloned()
            .unwrap_or_else(|| (0..self.schema.fields().len()).collect())
            .into_iter()
            .filter(|&i| i < table_columns)
            .map(|i| self.schema.field(i).name().clone())
            .collect();
        let stream = SearchStream {
            schema: Arc::clone(&projected),
            columns,
            search: self.search.clone(),
        };
        Ok(Arc::new(StreamingTableExec::try_new(
            projected,
            vec![Arc::new(stream)],
            None,
            Vec::new(),
            false,
            None,
        )?))
    }
}

/// The one partition of a [`SearchTable`] scan.
#[derive(Debug)]
struct SearchStream<S> {
    /// The projected schema.
    schema: SchemaRef,
    /// The projected table columns (not the computed ones).
    columns: Vec<String>,
    search: S,
}

impl<S: Search> PartitionStream for SearchStream<S> {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let search = self.search.clone();
        let columns = self.columns.clone();
        let schema = Arc::clone(&self.schema);
        let out = Arc::clone(&schema);
        let stream = futures::stream::once(search.run(columns, ctx))
            .try_flatten()
            .map(move |batch| select_by_name(&batch?, &out));
        Box::pin(RecordBatchStreamAdapter::new(schema, stream))
    }
}

/// The columns of `schema`, taken by name from `batch`.
fn select_by_name(
    batch: &RecordBatch,
    schema: &SchemaRef,
) -> datafusion::error::Result<RecordBatch> {
    let columns = schema
        .fields()
        .iter()
        .map(|f| {
            let column = batch.column(batch.schema().index_of(f.name())?);
            Ok(if column.data_type() == f.data_type() {
                Arc::clone(column)
            } else {
                arrow::compute::cast(column, f.data_type())?
            })
        })
        .collect::<datafusion::error::Result<Vec<ArrayRef>>>()?;
    let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    Ok(RecordBatch::try_new_with_options(
        Arc::clone(schema),
        columns,
        &options,
    )?)
}

/// Runs Lance's plan for `scanner`'s search in `ctx`.
async fn run_scanner(
    scanner: &lance::dataset::scanner::Scanner,
    ctx: Arc<TaskContext>,
) -> datafusion::error::Result<SendableRecordBatchStream> {
    let plan = scanner.create_plan().await.map_err(to_datafusion)?;
    datafusion::physical_plan::execute_stream(plan, ctx)
}

/// Lance projects these columns; with none asked for (e.g. `count(*)`), `_rowid` alone.
fn project(
    scanner: &mut lance::dataset::scanner::Scanner,
    columns: &[String],
    row_id: bool,
) -> datafusion::error::Result<()> {
    scanner.project(columns).map_err(to_datafusion)?;
    if row_id || columns.is_empty() {
        scanner.with_row_id();
    }
    Ok(())
}

/// One nearest-neighbour search of a pinned Lance dataset.
#[derive(Debug, Clone)]
pub(crate) struct VectorSearch {
    dataset: Arc<lance::Dataset>,
    models: Arc<EmbeddingModels>,
    column: VectorColumn,
    query: Query,
    k: usize,
    options: SearchOptions,
}

impl VectorSearch {
    /// The query vector: the literal, or the text embedded with the column's model.
    async fn vector(&self) -> datafusion::error::Result<Vec<f32>> {
        let text = match &self.query {
            Query::Vector(v) => return Ok(v.clone()),
            Query::Text(text) => text,
        };
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
        Ok(vectors[0].to_vec())
    }

    /// Lance's scanner for this search, reading `columns` (and `_rowid` with `row_id`).
    async fn scanner(
        &self,
        columns: &[String],
        row_id: bool,
    ) -> datafusion::error::Result<lance::dataset::scanner::Scanner> {
        let query = Float32Array::from(self.vector().await?);
        let mut scanner = self.dataset.scan();
        project(&mut scanner, columns, row_id)?;
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
        Ok(scanner)
    }
}

#[async_trait::async_trait]
impl Search for VectorSearch {
    const ORDER: (&'static str, bool) = ("_distance", true);

    async fn run(
        self,
        columns: Vec<String>,
        ctx: Arc<TaskContext>,
    ) -> datafusion::error::Result<SendableRecordBatchStream> {
        let scanner = self.scanner(&columns, false).await?;
        run_scanner(&scanner, ctx).await
    }
}

/// `text_search(table, query, k [, options])`: BM25 full-text search over the FTS-indexed text
/// columns of a Lance table (`CREATE INDEX ... USING FTS (column)`).
///
/// `options` is a JSON object string with `column` (search only that indexed column),
/// `filter` (a SQL predicate applied before ranking) and `rerank` ([`crate::rerank`]). The
/// result has the table's columns plus
/// `_score` (Float32, BM25, higher is better), best first, at most `k` rows.
#[derive(Debug)]
pub struct TextSearchFunction {
    chat: Arc<ChatModels>,
}

impl TextSearchFunction {
    /// The function, reranking with `chat`.
    pub fn new(chat: Arc<ChatModels>) -> Self {
        Self { chat }
    }
}

/// The `options` of `text_search`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct TextOptions {
    column: Option<String>,
    filter: Option<String>,
    rerank: Option<RerankOptions>,
}

impl TextSearchFunction {
    /// The BM25 search of the text `query` in `table` as the session resolved it.
    fn search(
        &self,
        call: Call<'_, TextOptions>,
    ) -> datafusion::error::Result<SearchTable<TextSearch>> {
        const F: &str = "text_search";
        let Call {
            table,
            resolved,
            query,
            k,
            options,
        } = call;
        let Some(query) = string_literal(query) else {
            return Err(plan_err(F, "the query must be a string literal"));
        };
        let (dataset, _, schema) = lance_table(
            &table,
            &resolved,
            F,
            "full-text search needs a Lance table with an FTS index",
        )?;
        Ok(SearchTable {
            schema: with_column(&schema, "_score", DataType::Float32),
            computed: 1,
            search: TextSearch {
                dataset,
                query: query.to_string(),
                k,
                options,
            },
        })
    }
}

impl TableFunctionImpl for TextSearchFunction {
    fn call_with_args(
        &self,
        args: TableFunctionArgs,
    ) -> datafusion::error::Result<Arc<dyn TableProvider>> {
        const F: &str = "text_search";
        let mut call = parse_call(F, &args)?;
        let rerank = call.plan_rerank(F, &self.chat, |o: &mut TextOptions| o.rerank.take())?;
        self.search(call)?.finish(F, rerank)
    }
}

/// One BM25 search of a pinned Lance dataset.
#[derive(Debug, Clone)]
pub(crate) struct TextSearch {
    dataset: Arc<lance::Dataset>,
    query: String,
    k: usize,
    options: TextOptions,
}

impl TextSearch {
    /// Lance's scanner for this search, reading `columns` (and `_rowid` with `row_id`).
    fn scanner(
        &self,
        columns: &[String],
        row_id: bool,
    ) -> datafusion::error::Result<lance::dataset::scanner::Scanner> {
        use lance_index::scalar::FullTextSearchQuery;
        let mut query = FullTextSearchQuery::new(self.query.clone()).limit(Some(self.k as i64));
        if let Some(column) = &self.options.column {
            query = query.with_column(column.clone()).map_err(to_datafusion)?;
        }
        let mut scanner = self.dataset.scan();
        project(&mut scanner, columns, row_id)?;
        scanner.full_text_search(query).map_err(to_datafusion)?;
        if let Some(filter) = &self.options.filter {
            scanner.filter(filter).map_err(to_datafusion)?;
            scanner.prefilter(true);
        }
        scanner
            .limit(Some(self.k as i64), None)
            .map_err(to_datafusion)?;
        Ok(scanner)
    }
}

#[async_trait::async_trait]
impl Search for TextSearch {
    const ORDER: (&'static str, bool) = ("_score", false);

    async fn run(
        self,
        columns: Vec<String>,
        ctx: Arc<TaskContext>,
    ) -> datafusion::error::Result<SendableRecordBatchStream> {
        let scanner = self.scanner(&columns, false)?;
        run_scanner(&scanner, ctx).await
    }
}

/// Default constant of reciprocal rank fusion, `score = Σ weight / (rrf_k + rank)` (Cormack,
/// Clarke and Büttcher, SIGIR 2009, use 60).
pub const DEFAULT_RRF_K: f64 = 60.0;

/// `hybrid_search(table, query, k [, options])`: vector and BM25 text search fused by
/// reciprocal rank fusion. `hybrid_search(table, text, vector, k [, options])` searches the
/// given vector (a literal of the column's dimension) instead of the text embedded, for
/// tables whose embeddings come from outside.
///
/// Each side ranks its top `3k` candidates (vector: by `_distance`; text: by BM25 over the
/// FTS index) of the one dataset version the query reads; rows are matched across sides by
/// Lance row id, and a row's `_score` is `vector_weight / (rrf_k + vector_rank) + text_weight /
/// (rrf_k + text_rank)` (a side where the row is not among the candidates adds nothing).
/// `options` (JSON): `column` (vector column), `text_column`, `filter` (pre-filter for both
/// sides), `vector_weight`, `text_weight` (default 1.0 each), `rrf_k` (default 60),
/// `nprobes`, `refine_factor`, `ef`, `rerank` ([`crate::rerank`]: the fused top candidates
/// re-scored by a chat model). The result has the table's columns plus `_score`
/// (Float64, higher is better), best first, at most `k` rows. Both searches and the fusion
/// run when the query executes.
#[derive(Debug)]
pub struct HybridSearchFunction {
    vector: VectorSearchFunction,
    text: TextSearchFunction,
}

impl HybridSearchFunction {
    /// The function, embedding queries with `models` and reranking with `chat`.
    pub fn new(models: Arc<EmbeddingModels>, chat: Arc<ChatModels>) -> Self {
        Self {
            vector: VectorSearchFunction::new(models, Arc::clone(&chat)),
            text: TextSearchFunction::new(chat),
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
    pub(crate) rerank: Option<RerankOptions>,
}

impl HybridSearchFunction {
    /// The fused search of the text `query` in `table` as the session resolved it, reranked
    /// when its options ask ([`crate::rerank`]): `k` rows
    /// from the `3k` best of each side (see [`DEFAULT_RRF_K`]). The vector side searches
    /// `vector` (a vector literal) when given, else `query` embedded with the column's model.
    pub(crate) fn fused(
        &self,
        mut call: Call<'_, HybridOptions>,
        query_vector: Option<&Expr>,
    ) -> datafusion::error::Result<Arc<dyn TableProvider>> {
        const F: &str = "hybrid_search";
        let rerank = call.plan_rerank(F, &self.vector.chat, |o: &mut HybridOptions| {
            o.rerank.take()
        })?;
        self.unreranked(call, query_vector)?.finish(F, rerank)
    }

    /// [`Self::fused`] without its `rerank` option.
    fn unreranked(
        &self,
        call: Call<'_, HybridOptions>,
        query_vector: Option<&Expr>,
    ) -> datafusion::error::Result<SearchTable<HybridSearch>> {
        let Call {
            table,
            resolved,
            query,
            k,
            options,
        } = call;
        let candidates = (3 * k).min(MAX_K);
        let vector_options = SearchOptions {
            column: options.column,
            filter: options.filter.clone(),
            nprobes: options.nprobes,
            refine_factor: options.refine_factor,
            ef: options.ef,
            rerank: None,
        };
        let text_options = TextOptions {
            column: options.text_column,
            filter: options.filter,
            rerank: None,
        };
        let vector = self.vector.search(Call {
            table: table.clone(),
            resolved: resolved.clone(),
            query: query_vector.unwrap_or(query),
            k: candidates,
            options: vector_options,
        })?;
        let text = self.text.search(Call {
            table,
            resolved,
            query,
            k: candidates,
            options: text_options,
        })?;
        // The table's columns are the text side's minus `_score`.
        let table_columns = text.schema.fields().len() - 1;
        let table_schema = Schema::new(text.schema.fields()[..table_columns].to_vec());
        Ok(SearchTable {
            schema: with_column(&table_schema, "_score", DataType::Float64),
            computed: 1,
            search: HybridSearch {
                vector: vector.search,
                text: text.search,
                k,
                rrf_k: options.rrf_k.unwrap_or(DEFAULT_RRF_K),
                weights: (
                    options.vector_weight.unwrap_or(1.0),
                    options.text_weight.unwrap_or(1.0),
                ),
            },
        })
    }
}

impl TableFunctionImpl for HybridSearchFunction {
    /// `(table, query, k [, options])`, or `(table, text, vector, k [, options])` when the
    /// third argument is a vector literal: the text side searches `text`, the vector side the
    /// given vector instead of `text` embedded (for tables whose embeddings come from outside,
    /// with no model recorded for the column).
    fn call_with_args(
        &self,
        args: TableFunctionArgs,
    ) -> datafusion::error::Result<Arc<dyn TableProvider>> {
        const F: &str = "hybrid_search";
        let exprs = args.exprs();
        if exprs.len() >= 4 && vector(&exprs[2]).is_some() {
            let mut rest = exprs[..2].to_vec();
            rest.extend_from_slice(&exprs[3..]);
            let call = parse_call(F, &TableFunctionArgs::new(&rest, args.session()))?;
            return self.fused(call, Some(&exprs[2]));
        }
        if exprs.len() == 5 {
            return Err(plan_err(
                F,
                "with five arguments, expects (table, text, vector, k, options) with a vector \
                 literal like [0.1, 0.2] third",
            ));
        }
        self.fused(parse_call(F, &args)?, None)
    }
}

/// One fused search: both sides over the same pinned dataset.
#[derive(Debug, Clone)]
pub(crate) struct HybridSearch {
    vector: VectorSearch,
    text: TextSearch,
    k: usize,
    rrf_k: f64,
    weights: (f64, f64),
}

/// The rows of `scanner`'s search as one batch, best first by `order` (`_distance` ascending
/// or `_score` descending).
async fn ranked(
    scanner: &lance::dataset::scanner::Scanner,
    ctx: Arc<TaskContext>,
    (order, ascending): (&str, bool),
) -> datafusion::error::Result<RecordBatch> {
    sorted(run_scanner(scanner, ctx).await?, order, ascending).await
}

/// Everything `stream` yields as one batch, best first by `order` (ascending or not).
async fn sorted(
    stream: SendableRecordBatchStream,
    order: &str,
    ascending: bool,
) -> datafusion::error::Result<RecordBatch> {
    let schema = stream.schema();
    let batches: Vec<RecordBatch> = stream.try_collect().await?;
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
impl Search for HybridSearch {
    const ORDER: (&'static str, bool) = ("_score", false);

    async fn run(
        self,
        columns: Vec<String>,
        ctx: Arc<TaskContext>,
    ) -> datafusion::error::Result<SendableRecordBatchStream> {
        use std::collections::HashMap;
        let vector_scanner = self.vector.scanner(&columns, true).await?;
        let text_scanner = self.text.scanner(&columns, true)?;
        let (vector, text) = futures::try_join!(
            ranked(&vector_scanner, Arc::clone(&ctx), VectorSearch::ORDER),
            ranked(&text_scanner, ctx, TextSearch::ORDER),
        )?;
        // Rows are matched by Lance row id: both sides read the same dataset version.
        let mut fused: HashMap<u64, (f64, usize, usize)> = HashMap::new();
        for (side, batch, weight) in [(0, &vector, self.weights.0), (1, &text, self.weights.1)] {
            let ids = batch.column(batch.schema().index_of("_rowid")?);
            for (rank, id) in ids.as_primitive::<UInt64Type>().values().iter().enumerate() {
                let entry = fused.entry(*id).or_insert((0.0, side, rank));
                entry.0 += weight / (self.rrf_k + (rank + 1) as f64);
            }
        }
        let mut ranking: Vec<(f64, usize, usize)> = fused.into_values().collect();
        ranking.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
        ranking.truncate(self.k);
        let indices: Vec<(usize, usize)> =
            ranking.iter().map(|(_, side, row)| (*side, *row)).collect();
        let mut fields = Vec::with_capacity(columns.len() + 1);
        let mut arrays: Vec<ArrayRef> = Vec::with_capacity(columns.len() + 1);
        for name in &columns {
            let (v, t) = (
                vector.column(vector.schema().index_of(name)?),
                text.column(text.schema().index_of(name)?),
            );
            let t = arrow::compute::cast(t, v.data_type())?;
            arrays.push(arrow::compute::interleave(
                &[v.as_ref(), t.as_ref()],
                &indices,
            )?);
            fields.push(Field::new(name, v.data_type().clone(), true));
        }
        fields.push(Field::new("_score", DataType::Float64, true));
        arrays.push(Arc::new(arrow::array::Float64Array::from_iter_values(
            ranking.iter().map(|(score, _, _)| *score),
        )));
        let schema = Arc::new(Schema::new(fields));
        let options = RecordBatchOptions::new().with_row_count(Some(ranking.len()));
        let batch = RecordBatch::try_new_with_options(Arc::clone(&schema), arrays, &options)?;
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            schema,
            futures::stream::iter([Ok(batch)]),
        )))
    }
}

/// A search whose candidates a chat model re-scores ([`crate::rerank`]).
#[derive(Debug, Clone)]
pub(crate) struct Reranked<S> {
    inner: S,
    rerank: Rerank,
}

#[async_trait::async_trait]
impl<S: Search> Search for Reranked<S> {
    const ORDER: (&'static str, bool) = (crate::rerank::RELEVANCE_COLUMN, false);

    async fn run(
        self,
        mut columns: Vec<String>,
        ctx: Arc<TaskContext>,
    ) -> datafusion::error::Result<SendableRecordBatchStream> {
        if !columns.iter().any(|c| c == self.rerank.text_column()) {
            columns.push(self.rerank.text_column().to_string());
        }
        let (order, ascending) = S::ORDER;
        let candidates = sorted(self.inner.run(columns, ctx).await?, order, ascending).await?;
        let batch = self.rerank.apply(candidates).await?;
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            batch.schema(),
            futures::stream::iter([Ok(batch)]),
        )))
    }
}
