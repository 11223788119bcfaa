//! `rag(question, table [, options])`: retrieval-augmented generation as a SQL table function.
//!
//! Retrieves the `k` passages of a Lance table nearest to the question (`vector_search`, or
//! `hybrid_search` with `"mode": "hybrid"`), numbers them as sources in a grounded prompt, asks
//! a chat model, and answers one row:
//!
//! | column | type | |
//! |---|---|---|
//! | `answer` | Utf8 | the model's answer, citing sources as `[n]` |
//! | `sources` | List<Struct<doc_id Utf8, chunk_index Int64, text Utf8, score Float64>> | the passages given to the model, `[1]` first |
//! | `model` | Utf8 | the chat model's configured name |
//! | `retrieval_ms` | Float64 | time to embed the question and search |
//! | `generation_ms` | Float64 | time the chat model took (0 when it was not asked) |
//!
//! `doc_id` comes from the table's `doc_id` column (else `id`), `chunk_index` from
//! `chunk_index`, when present. `score` is higher-is-better: cosine similarity (`1 - _distance`)
//! for cosine columns, `-_distance` for l2/dot, the RRF `_score` in hybrid mode, the chat model's
//! rating (`_relevance_score`, 0–1; 0 when it gave none) when reranked. Passages scoring
//! below `min_score` are dropped; when none is left the model is not asked and the answer says
//! that the table has nothing relevant ("I don't know ..."), rather than letting it invent one.
//!
//! Options (a JSON object string): `k` (passages, default 5), `mode` (`vector` or `hybrid`),
//! `column` (vector column), `text_column` (default `text`), `filter` (pre-filter predicate),
//! `min_score` (default 0.3 for cosine in vector mode without reranking, else none), `model`
//! (chat model), `system` (system prompt), `template` (user prompt, with `{sources}` and
//! `{question}`) and `rerank` (re-score the retrieved candidates with a chat model before the
//! `k` best become sources: [`crate::rerank`]; its `text_column` defaults to `text_column`).
//!
//! The work runs when the query executes (a streaming table), not while it is planned.

use std::sync::Arc;
use std::time::Instant;

use arrow::array::{
    Array, ArrayRef, AsArray, Float64Array, Int64Array, ListArray, RecordBatch, StringArray,
    StructArray,
};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef};
use datafusion::catalog::{Session, TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::{DataFusionError, ScalarValue};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::Expr;
use lakehouse_catalog::{TableRef, VectorMetric};
use serde::Deserialize;

use crate::args::{self, Deferred, string_literal};
use crate::chat::{ChatMessage, ChatModel, ChatModels};
use crate::rerank::{RELEVANCE_COLUMN, RerankOptions};
use crate::search::{
    Call, HybridOptions, HybridSearchFunction, SearchOptions, VectorSearchFunction,
};

/// Passages retrieved when the options do not say (`k`).
pub const DEFAULT_K: usize = 5;
/// The least cosine similarity a passage needs in vector mode on a cosine column when the
/// options do not say (`min_score`). MiniLM puts unrelated sentences below ~0.2.
pub const DEFAULT_MIN_COSINE: f64 = 0.3;
/// Characters of a passage kept in `sources.text`.
pub const SNIPPET_CHARS: usize = 300;

/// The system prompt when the options do not say (`system`).
pub const DEFAULT_SYSTEM: &str = "You answer questions using only the numbered sources you are \
given. Cite the sources you use as [1], [2], ... If the sources do not contain the answer, say \
that you don't know.";
/// The user prompt when the options do not say (`template`): `{sources}` becomes the numbered
/// passages, `{question}` the question.
pub const DEFAULT_TEMPLATE: &str = "Sources:\n{sources}\n\nQuestion: {question}\nAnswer:";

/// The `rag` table function.
#[derive(Debug)]
pub struct RagFunction {
    vector: VectorSearchFunction,
    hybrid: HybridSearchFunction,
    chat: Arc<ChatModels>,
}

impl RagFunction {
    /// The function over `vector`/`hybrid` search and the `chat` models.
    pub fn new(
        vector: VectorSearchFunction,
        hybrid: HybridSearchFunction,
        chat: Arc<ChatModels>,
    ) -> Self {
        Self {
            vector,
            hybrid,
            chat,
        }
    }
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RagOptions {
    k: Option<usize>,
    mode: Option<String>,
    column: Option<String>,
    text_column: Option<String>,
    filter: Option<String>,
    min_score: Option<f64>,
    model: Option<String>,
    system: Option<String>,
    template: Option<String>,
    rerank: Option<RerankOptions>,
}

fn plan_err(message: impl std::fmt::Display) -> DataFusionError {
    args::plan_err("rag", message)
}

/// The result schema (see the module docs).
pub fn result_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("answer", DataType::Utf8, false),
        Field::new(
            "sources",
            DataType::List(Arc::new(Field::new("item", source_type(), true))),
            false,
        ),
        Field::new("model", DataType::Utf8, false),
        Field::new("retrieval_ms", DataType::Float64, false),
        Field::new("generation_ms", DataType::Float64, false),
    ]))
}

fn source_fields() -> Fields {
    Fields::from(vec![
        Field::new("doc_id", DataType::Utf8, true),
        Field::new("chunk_index", DataType::Int64, true),
        Field::new("text", DataType::Utf8, false),
        Field::new("score", DataType::Float64, false),
    ])
}

fn source_type() -> DataType {
    DataType::Struct(source_fields())
}

impl TableFunctionImpl for RagFunction {
    fn call_with_args(
        &self,
        args: TableFunctionArgs,
    ) -> datafusion::error::Result<Arc<dyn TableProvider>> {
        let exprs = args.exprs();
        if !(2..=3).contains(&exprs.len()) {
            return Err(plan_err(
                "expects (question, table [, options]), e.g. rag('Who knows Kubernetes?', 'docs')",
            ));
        }
        let question = string_literal(&exprs[0])
            .ok_or_else(|| plan_err("the question must be a string literal"))?;
        let table = string_literal(&exprs[1])
            .ok_or_else(|| plan_err("the table must be a string literal, e.g. 'docs'"))?;
        let options: RagOptions = args::json_options("rag", exprs.get(2))?;
        let chat = Arc::clone(self.chat.get(options.model.as_deref()).map_err(plan_err)?);
        let k = options.k.unwrap_or(DEFAULT_K);
        if !(1..=100).contains(&k) {
            return Err(plan_err("k must be from 1 to 100"));
        }
        let (table, resolved) = crate::session::resolved("rag", table, args.session())?;
        let question_expr = Expr::Literal(ScalarValue::Utf8(Some(question.to_string())), None);
        let text_column = options.text_column.clone().unwrap_or_else(|| "text".into());
        let rerank = options.rerank.clone().map(|mut r| {
            r.text_column.get_or_insert_with(|| text_column.clone());
            r
        });
        let rated = rerank.is_some();
        let (search, score): (Arc<dyn TableProvider>, Score) = match options.mode.as_deref() {
            None | Some("vector") => {
                let mut call = Call {
                    table: table.clone(),
                    resolved,
                    query: &question_expr,
                    k,
                    options: SearchOptions {
                        column: options.column.clone(),
                        filter: options.filter.clone(),
                        ..Default::default()
                    },
                };
                let rerank = call.plan_rerank("rag", self.vector.chat(), |_| rerank)?;
                let search = self.vector.search(call)?;
                let score = if rated {
                    Score::Rating
                } else {
                    Score::Distance(search.metric())
                };
                (search.finish("rag", rerank)?, score)
            }
            Some("hybrid") => {
                let search = self.hybrid.fused(
                    Call {
                        table: table.clone(),
                        resolved,
                        query: &question_expr,
                        k,
                        options: HybridOptions {
                            column: options.column.clone(),
                            text_column: options.text_column.clone(),
                            filter: options.filter.clone(),
                            rerank,
                            ..Default::default()
                        },
                    },
                    None,
                )?;
                (search, if rated { Score::Rating } else { Score::Fused })
            }
            Some(other) => {
                return Err(plan_err(format!("mode {other:?}: use vector or hybrid")));
            }
        };
        let search_schema = search.schema();
        if !args::has_string_column(&search_schema, &text_column) {
            return Err(plan_err(format!(
                "{table} has no text column {text_column}; name it with {{\"text_column\": ...}}"
            )));
        }
        let min_score = options.min_score.or(match score {
            Score::Distance(VectorMetric::Cosine) => Some(DEFAULT_MIN_COSINE),
            _ => None,
        });
        let run = RagRun {
            question: question.to_string(),
            table,
            search,
            score,
            text_column,
            min_score,
            chat,
            system: options.system.unwrap_or_else(|| DEFAULT_SYSTEM.into()),
            template: options.template.unwrap_or_else(|| DEFAULT_TEMPLATE.into()),
        };
        args::deferred_table(result_schema(), run)
    }
}

/// One `rag` call, run when the query executes.
#[derive(Debug, Clone)]
struct RagRun {
    question: String,
    table: TableRef,
    search: Arc<dyn TableProvider>,
    /// What a passage's score is.
    score: Score,
    text_column: String,
    min_score: Option<f64>,
    chat: Arc<ChatModel>,
    system: String,
    template: String,
}

/// Where a passage's higher-is-better score comes from.
#[derive(Debug, Clone, Copy)]
enum Score {
    /// Vector mode: from `_distance` in the column's metric.
    Distance(VectorMetric),
    /// Hybrid mode: the RRF `_score`.
    Fused,
    /// Reranked: the chat model's rating.
    Rating,
}

impl Score {
    /// The search result column it is read from.
    fn column(self) -> &'static str {
        match self {
            Self::Distance(_) => "_distance",
            Self::Fused => "_score",
            Self::Rating => RELEVANCE_COLUMN,
        }
    }
}

/// One retrieved passage.
struct Passage {
    doc_id: Option<String>,
    chunk_index: Option<i64>,
    text: String,
    score: f64,
}

#[async_trait::async_trait]
impl Deferred for RagRun {
    async fn run(self, ctx: Arc<TaskContext>) -> datafusion::error::Result<RecordBatch> {
        self.answer(ctx).await
    }
}

impl RagRun {
    async fn retrieve(&self, ctx: Arc<TaskContext>) -> datafusion::error::Result<Vec<Passage>> {
        let state = datafusion::execution::session_state::SessionStateBuilder::new()
            .with_config(ctx.session_config().clone())
            .with_runtime_env(ctx.runtime_env())
            .build();
        let session: &dyn Session = &state;
        let plan = self.search.scan(session, None, &[], None).await?;
        let schema = plan.schema();
        let batches = datafusion::physical_plan::collect(plan, state.task_ctx()).await?;
        let batch = arrow::compute::concat_batches(&schema, &batches)?;
        let column = |name: &str, to: &DataType| -> datafusion::error::Result<Option<ArrayRef>> {
            match batch.schema().index_of(name) {
                Ok(i) => Ok(Some(arrow::compute::cast(batch.column(i), to)?)),
                Err(_) => Ok(None),
            }
        };
        let text = column(&self.text_column, &DataType::Utf8)?.expect("checked at planning");
        let doc_id = match column("doc_id", &DataType::Utf8)? {
            Some(c) => Some(c),
            None => column("id", &DataType::Utf8)?,
        };
        let chunk_index = column("chunk_index", &DataType::Int64)?;
        let score = column(self.score.column(), &DataType::Float64)?;
        let score = score.ok_or_else(|| DataFusionError::Internal("rag: no score".into()))?;
        let score = score.as_primitive::<arrow::datatypes::Float64Type>();
        let text = text.as_string::<i32>();
        let mut passages: Vec<Passage> = (0..batch.num_rows())
            .filter(|&i| !text.is_null(i))
            .map(|i| {
                let raw = if score.is_null(i) {
                    0.0
                } else {
                    score.value(i)
                };
                let score = match self.score {
                    Score::Distance(VectorMetric::Cosine) => 1.0 - raw,
                    Score::Distance(_) => -raw,
                    Score::Fused | Score::Rating => raw,
                };
                Passage {
                    doc_id: doc_id
                        .as_ref()
                        .map(|c| c.as_string::<i32>())
                        .filter(|c| !c.is_null(i))
                        .map(|c| c.value(i).to_string()),
                    chunk_index: chunk_index
                        .as_ref()
                        .map(|c| c.as_primitive::<arrow::datatypes::Int64Type>())
                        .filter(|c| !c.is_null(i))
                        .map(|c| c.value(i)),
                    text: text.value(i).to_string(),
                    score,
                }
            })
            .collect();
        passages.sort_by(|a, b| b.score.total_cmp(&a.score));
        if let Some(min) = self.min_score {
            passages.retain(|p| p.score >= min);
        }
        Ok(passages)
    }

    async fn answer(self, ctx: Arc<TaskContext>) -> datafusion::error::Result<RecordBatch> {
        let started = Instant::now();
        let passages = self.retrieve(ctx).await?;
        let retrieval_ms = started.elapsed().as_secs_f64() * 1000.0;
        let started = Instant::now();
        let (answer, generation_ms) = if passages.is_empty() {
            (
                format!(
                    "I don't know: no passage of {} is relevant enough to the question.",
                    self.table
                ),
                0.0,
            )
        } else {
            let sources = passages
                .iter()
                .enumerate()
                .map(|(n, p)| format!("[{}] {}", n + 1, p.text.trim()))
                .collect::<Vec<_>>()
                .join("\n\n");
            let prompt = self
                .template
                .replace("{sources}", &sources)
                .replace("{question}", &self.question);
            let answer = self
                .chat
                .complete(&[ChatMessage::system(&self.system), ChatMessage::user(prompt)])
                .await
                .map_err(args::to_datafusion)?;
            (answer, started.elapsed().as_secs_f64() * 1000.0)
        };
        let sources = StructArray::new(
            source_fields(),
            vec![
                Arc::new(StringArray::from(
                    passages
                        .iter()
                        .map(|p| p.doc_id.clone())
                        .collect::<Vec<_>>(),
                )) as ArrayRef,
                Arc::new(Int64Array::from(
                    passages.iter().map(|p| p.chunk_index).collect::<Vec<_>>(),
                )),
                Arc::new(StringArray::from_iter_values(
                    passages
                        .iter()
                        .map(|p| p.text.chars().take(SNIPPET_CHARS).collect::<String>()),
                )),
                Arc::new(Float64Array::from_iter_values(
                    passages.iter().map(|p| p.score),
                )),
            ],
            None,
        );
        let list = ListArray::new(
            Arc::new(Field::new("item", source_type(), true)),
            OffsetBuffer::from_lengths([passages.len()]),
            Arc::new(sources),
            None,
        );
        Ok(RecordBatch::try_new(
            result_schema(),
            vec![
                Arc::new(StringArray::from(vec![answer])),
                Arc::new(list),
                Arc::new(StringArray::from(vec![self.chat.name().to_string()])),
                Arc::new(Float64Array::from(vec![retrieval_ms])),
                Arc::new(Float64Array::from(vec![generation_ms])),
            ],
        )?)
    }
}
