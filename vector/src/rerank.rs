//! Second-stage reranking with a chat model: the `rerank(query, text [, model])` SQL scalar
//! function, and the `"rerank"` option of `vector_search`, `text_search`, `hybrid_search` and
//! `rag` that re-scores a search's top candidates.
//!
//! **Why a chat model.** A cross-encoder (a BERT-style model reading query and passage together,
//! e.g. `ms-marco-MiniLM-L-6-v2`) is the usual reranker, but none ships in a package this
//! project can install (PyPI, npm, Debian were searched; model hubs are out of reach), so the
//! configured chat model rates relevance instead — *pointwise relevance generation* (Liang et
//! al., "Holistic Evaluation of Language Models", 2022; Zhuang et al., "Beyond Yes and No",
//! SIGIR 2024). The prompt is [`SYSTEM_PROMPT`] plus the few-shot examples of [`EXAMPLES`]
//! (small models follow the format only with examples), then `Query: …\nPassage: …`; the answer
//! (at most [`ANSWER_TOKENS`] tokens, the model's own temperature) is read by [`parse_rating`]:
//! the first integer 0–10, divided by 10.
//!
//! **Scores** are `Float64` in `[0, 1]`, higher is more relevant; NULL when the model answered
//! no rating (or the text was NULL, which is not sent). A passage is cut to
//! [`PASSAGE_CHARS`] characters before it is sent.
//!
//! **The `rerank` option** — `{"rerank": {"model": "NAME", "candidates": N, "text_column":
//! "text"}}`, every key optional: the search first ranks `N` candidates (default
//! [`DEFAULT_CANDIDATES`] or `k` if larger; `k..=`[`MAX_CANDIDATES`]), the model rates each
//! (one call per candidate, `concurrency` at a time), and the `k` best by rating come back with
//! a `_relevance_score` column (Float64, LanceDB's name for it) after the search's own score;
//! equal ratings keep the first stage's order, unrated candidates come last. It needs the query
//! as text (not a vector literal) and a string `text_column` (default `text`). Checked while
//! planning; the model is called when the query executes. Off unless asked for.
//!
//! Costs: one chat call per candidate (`rerank()`: per non-NULL row, counted in `[chat]
//! ai_max_rows` with `ai()`; the option: at most [`MAX_CANDIDATES`] per search).

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Float64Array, RecordBatch, RecordBatchOptions};
use arrow::datatypes::{DataType, Schema, SchemaRef};
use datafusion::common::DataFusionError;
use datafusion::logical_expr::async_udf::{AsyncScalarUDF, AsyncScalarUDFImpl};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature,
    Volatility,
};
use serde::Deserialize;

use crate::ai::{ChatRowLimit, per_row};
use crate::args;
use crate::chat::{ChatMessage, ChatModel, ChatModels};

/// Candidates a search reranks when the option does not say (or `k`, if larger).
pub const DEFAULT_CANDIDATES: usize = 20;
/// Most candidates one search may rerank (one chat call each).
pub const MAX_CANDIDATES: usize = 100;
/// Characters of a passage sent to the model; the rest is cut.
pub const PASSAGE_CHARS: usize = 2_000;
/// Tokens the model may answer with (a rating needs one or two).
pub const ANSWER_TOKENS: u32 = 4;
/// The name of the rating column the `rerank` option adds.
pub const RELEVANCE_COLUMN: &str = "_relevance_score";

/// The system message of every rating call.
pub const SYSTEM_PROMPT: &str = "Rate from 0 to 10 how relevant the passage is to the query: \
0 means unrelated, 10 means it answers the query. Reply with the number only.";

/// Few-shot examples sent before the passage to rate: (query, passage, rating).
pub const EXAMPLES: [(&str, &str, &str); 4] = [
    (
        "capital of France",
        "Paris is the capital and largest city of France.",
        "10",
    ),
    ("capital of France", "Bananas are rich in potassium.", "0"),
    (
        "install a package with pip",
        "Use pip install NAME to install a package from PyPI.",
        "9",
    ),
    (
        "install a package with pip",
        "The Rhine flows through six countries.",
        "0",
    ),
];

/// The rating in a model's answer: its first integer, when it is 0–10, divided by 10.
pub fn parse_rating(answer: &str) -> Option<f64> {
    let start = answer.find(|c: char| c.is_ascii_digit())?;
    let digits: String = answer[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    let rating: u32 = digits.parse().ok()?;
    (rating <= 10).then(|| f64::from(rating) / 10.0)
}

fn user_message(query: &str, passage: &str) -> String {
    let passage: String = passage.chars().take(PASSAGE_CHARS).collect();
    format!("Query: {}\nPassage: {}", query.trim(), passage.trim())
}

/// A chat model rating passages for queries (see the module docs).
#[derive(Debug, Clone)]
pub struct Reranker {
    model: Arc<ChatModel>,
}

impl Reranker {
    /// Rates with `model`.
    pub fn new(model: Arc<ChatModel>) -> Self {
        Self { model }
    }

    /// The chat model's configured name.
    pub fn model_name(&self) -> &str {
        self.model.name()
    }

    /// The rating of `passage` for `query`, in `[0, 1]`; `None` when the answer holds none.
    ///
    /// # Errors
    /// As [`ChatModel::complete`] (`Unavailable`, `Refused`, `InvalidResponse`).
    pub async fn score(&self, query: &str, passage: &str) -> crate::Result<Option<f64>> {
        let mut messages = vec![ChatMessage::system(SYSTEM_PROMPT)];
        for (q, p, rating) in EXAMPLES {
            messages.push(ChatMessage::user(user_message(q, p)));
            messages.push(ChatMessage {
                role: "assistant".into(),
                content: rating.into(),
            });
        }
        messages.push(ChatMessage::user(user_message(query, passage)));
        let answer = self
            .model
            .complete_with_max_tokens(&messages, ANSWER_TOKENS)
            .await?;
        Ok(parse_rating(&answer))
    }

    /// The ratings of `passages` for `query`, in order (`None` for a NULL passage, not sent),
    /// at most the model's `concurrency` calls at a time.
    ///
    /// # Errors
    /// The first failed call's error, as [`Self::score`].
    pub async fn score_all(
        &self,
        query: &str,
        passages: Vec<Option<String>>,
    ) -> crate::Result<Vec<Option<f64>>> {
        per_row(&self.model, passages, |passage| async move {
            match passage {
                None => Ok(None),
                Some(passage) => self.score(query, &passage).await,
            }
        })
        .await
    }
}

/// The `rerank` option of the search functions (see the module docs).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RerankOptions {
    /// The chat model (default: the default chat model).
    pub model: Option<String>,
    /// Candidates the first stage ranks for the model to rate.
    pub candidates: Option<usize>,
    /// The text column rated (default `text`).
    pub text_column: Option<String>,
}

/// A rerank step as planned: who rates, what, and how many rows it keeps.
#[derive(Debug, Clone)]
pub(crate) struct Rerank {
    reranker: Reranker,
    query: String,
    text_column: String,
    /// Rows kept after reranking (the search's `k`).
    k: usize,
}

impl Rerank {
    /// Plans the `rerank` option of `function` over a search of `k` rows: checks the model and
    /// the candidate count, and returns the step with the number of candidates the first stage
    /// must now rank. `query` is the search's text query (`None` for a vector literal).
    ///
    /// # Errors
    /// A planning error for an unknown chat model, `k` over [`MAX_CANDIDATES`], `candidates`
    /// outside `k..=`[`MAX_CANDIDATES`], or no text query.
    pub(crate) fn plan(
        function: &str,
        options: RerankOptions,
        chat: &ChatModels,
        query: Option<&str>,
        k: usize,
    ) -> datafusion::error::Result<(Self, usize)> {
        let err = |m: String| args::plan_err(function, format!("rerank: {m}"));
        let model = chat
            .get(options.model.as_deref())
            .map_err(|e| err(e.to_string()))?;
        let query = query.ok_or_else(|| {
            err("needs the query as text; a vector literal cannot be rated".into())
        })?;
        if k > MAX_CANDIDATES {
            return Err(err(format!(
                "k is {k}; with rerank it must be at most {MAX_CANDIDATES} (one model call \
                 per candidate)"
            )));
        }
        let candidates = options.candidates.unwrap_or(DEFAULT_CANDIDATES.max(k));
        if candidates < k || candidates > MAX_CANDIDATES {
            return Err(err(format!(
                "candidates is {candidates}; it must be from k ({k}) to {MAX_CANDIDATES}"
            )));
        }
        let rerank = Self {
            reranker: Reranker::new(Arc::clone(model)),
            query: query.to_string(),
            text_column: options.text_column.unwrap_or_else(|| "text".into()),
            k,
        };
        Ok((rerank, candidates))
    }

    /// The result schema of a search of `schema` reranked: `schema` plus
    /// [`RELEVANCE_COLUMN`].
    ///
    /// # Errors
    /// A planning error when `schema` has no string column `text_column`.
    pub(crate) fn schema(
        &self,
        function: &str,
        schema: &Schema,
    ) -> datafusion::error::Result<SchemaRef> {
        if !args::has_string_column(schema, &self.text_column) {
            return Err(args::plan_err(
                function,
                format!(
                    "rerank: the table has no text column {}; name the column to rate with \
                     {{\"rerank\": {{\"text_column\": ...}}}}",
                    self.text_column
                ),
            ));
        }
        Ok(args::with_column(
            schema,
            RELEVANCE_COLUMN,
            DataType::Float64,
        ))
    }

    /// The column the first stage must also read to rate its rows.
    pub(crate) fn text_column(&self) -> &str {
        &self.text_column
    }

    /// Rates the rows of `batch` (the first stage's candidates, best first) and returns the `k`
    /// best by rating, with [`RELEVANCE_COLUMN`] added.
    ///
    /// # Errors
    /// The model call's error; Arrow's when the batch lacks the text column (not expected).
    pub(crate) async fn apply(&self, batch: RecordBatch) -> datafusion::error::Result<RecordBatch> {
        let text = batch.column(batch.schema().index_of(&self.text_column)?);
        let text = arrow::compute::cast(text, &DataType::Utf8)?;
        let passages: Vec<Option<String>> = text
            .as_string::<i32>()
            .iter()
            .map(|t| t.map(String::from))
            .collect();
        let scores = self
            .reranker
            .score_all(&self.query, passages)
            .await
            .map_err(args::to_datafusion)?;
        let mut order: Vec<usize> = (0..scores.len()).collect();
        // Stable: equal ratings keep the first stage's order; unrated rows last.
        order.sort_by(|&a, &b| {
            let key = |i: usize| scores[i].unwrap_or(f64::NEG_INFINITY);
            key(b).total_cmp(&key(a))
        });
        order.truncate(self.k);
        let indices = arrow::array::UInt32Array::from_iter_values(order.iter().map(|&i| i as u32));
        let mut columns: Vec<ArrayRef> = batch
            .columns()
            .iter()
            .map(|c| arrow::compute::take(c, &indices, None))
            .collect::<Result<_, _>>()?;
        columns.push(Arc::new(Float64Array::from(
            order.iter().map(|&i| scores[i]).collect::<Vec<_>>(),
        )));
        let schema = args::with_column(&batch.schema(), RELEVANCE_COLUMN, DataType::Float64);
        let options = RecordBatchOptions::new().with_row_count(Some(order.len()));
        Ok(RecordBatch::try_new_with_options(
            schema, columns, &options,
        )?)
    }
}

/// The `rerank(query, text [, model])` SQL function: the chat model's rating of `text` for
/// `query` (see the module docs), one call per row with a non-NULL `text`, counted in one
/// query's [`ChatRowLimit`].
#[derive(Debug)]
pub struct RerankFunction {
    models: Arc<ChatModels>,
    limit: ChatRowLimit,
    signature: Signature,
}

impl RerankFunction {
    /// `rerank` as a DataFusion scalar UDF (async) whose rows count in `limit`.
    pub fn udf(models: Arc<ChatModels>, limit: ChatRowLimit) -> ScalarUDF {
        let function = Self {
            models,
            limit,
            // Volatile: never evaluated at planning.
            signature: Signature::one_of(
                vec![TypeSignature::String(2), TypeSignature::String(3)],
                Volatility::Volatile,
            ),
        };
        AsyncScalarUDF::new(Arc::new(function)).into_scalar_udf()
    }
}

impl PartialEq for RerankFunction {
    fn eq(&self, other: &Self) -> bool {
        self.limit.same(&other.limit)
    }
}

impl Eq for RerankFunction {}

impl Hash for RerankFunction {
    fn hash<H: Hasher>(&self, state: &mut H) {
        "rerank".hash(state);
    }
}

impl ScalarUDFImpl for RerankFunction {
    fn name(&self) -> &str {
        "rerank"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> datafusion::error::Result<DataType> {
        Ok(DataType::Float64)
    }

    fn invoke_with_args(
        &self,
        _args: ScalarFunctionArgs,
    ) -> datafusion::error::Result<ColumnarValue> {
        Err(DataFusionError::Internal(
            "rerank runs as an async function".into(),
        ))
    }
}

#[async_trait::async_trait]
impl AsyncScalarUDFImpl for RerankFunction {
    async fn invoke_async_with_args(
        &self,
        args: ScalarFunctionArgs,
    ) -> datafusion::error::Result<ColumnarValue> {
        let model = self
            .models
            .get(args::model_arg("rerank", args.args.get(2))?)
            .map_err(|e| args::plan_err("rerank", e))?;
        let queries = args::strings(&args, 0)?;
        let texts = args::strings(&args, 1)?;
        let pairs: Vec<Option<(String, String)>> = queries
            .into_iter()
            .zip(texts)
            .map(|(q, t)| q.zip(t))
            .collect();
        let sent = pairs.iter().filter(|p| p.is_some()).count();
        self.limit.take("rerank", sent, model.name())?;
        let reranker = Reranker::new(Arc::clone(model));
        let scores = per_row(model, pairs, |pair| {
            let reranker = &reranker;
            async move {
                match pair {
                    None => Ok(None),
                    Some((query, text)) => reranker.score(&query, &text).await,
                }
            }
        })
        .await
        .map_err(args::to_datafusion)?;
        let scores: ArrayRef = Arc::new(Float64Array::from(scores));
        debug_assert_eq!(scores.len(), args.number_rows);
        Ok(ColumnarValue::Array(scores))
    }
}

#[cfg(test)]
mod tests {
    use super::parse_rating;

    #[test]
    fn ratings_are_the_first_integer_up_to_ten() {
        assert_eq!(parse_rating("10"), Some(1.0));
        assert_eq!(parse_rating(" 7."), Some(0.7));
        assert_eq!(parse_rating("Rating: 3/10"), Some(0.3));
        assert_eq!(parse_rating("0"), Some(0.0));
        assert_eq!(parse_rating("42"), None);
        assert_eq!(parse_rating("The passage is relevant"), None);
        assert_eq!(parse_rating(""), None);
    }
}
