//! `ai(prompt [, model])`: the SQL scalar function that asks a configured chat model, one call
//! per row.
//!
//! Returns `Utf8`: the model's answer to `prompt` sent as one user message (trimmed). `model`
//! must be a string literal naming a configured chat model; without it the default one is used.
//! NULL prompts give NULL without a call. It runs as a DataFusion async UDF, calling the model
//! while the query runs (never while it is planned).
//!
//! Limits, so a runaway query cannot flood the model server:
//! - **rows**: one query sends at most `max_rows` prompts (`[chat] ai_max_rows`, default 100),
//!   counted together with `rerank()`'s rows ([`ChatRowLimit`]). Each batch is counted before
//!   any of its prompts is sent; a batch that would pass the cap fails the query with
//!   `ResourcesExhausted` (gRPC `RESOURCE_EXHAUSTED`) naming the setting. The count is per
//!   query: the server registers a fresh `ai` in each query's session.
//! - **concurrency**: the chat model's `concurrency` (default 1) bounds calls in flight, over
//!   all queries; each call has the model's `timeout_ms`.

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use arrow::array::StringArray;
use arrow::datatypes::DataType;
use datafusion::common::DataFusionError;
use datafusion::logical_expr::async_udf::{AsyncScalarUDF, AsyncScalarUDFImpl};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature,
    Volatility,
};
use futures::{StreamExt, TryStreamExt};

use crate::args;
use crate::chat::{ChatMessage, ChatModel, ChatModels};

/// How many rows one query may still send to chat models through `ai()` and `rerank()`
/// (`[chat] ai_max_rows`): the server makes one per query and gives it to both functions.
#[derive(Debug, Clone)]
pub struct ChatRowLimit {
    max_rows: usize,
    sent: Arc<AtomicUsize>,
}

impl ChatRowLimit {
    /// A limit of `max_rows` rows, none sent yet.
    pub fn new(max_rows: usize) -> Self {
        Self {
            max_rows,
            sent: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Counts `rows` more rows that `function` is about to send to `model`.
    ///
    /// # Errors
    /// DataFusion's `ResourcesExhausted` (gRPC `RESOURCE_EXHAUSTED`) naming the setting when
    /// the query would pass the limit; nothing of this batch may then be sent.
    pub(crate) fn take(
        &self,
        function: &str,
        rows: usize,
        model: &str,
    ) -> datafusion::error::Result<()> {
        let before = self.sent.fetch_add(rows, Ordering::Relaxed);
        if before + rows > self.max_rows {
            return Err(DataFusionError::ResourcesExhausted(format!(
                "{function}(): this query would send more than {max} rows to chat model {model} \
                 ([chat] ai_max_rows = {max}, shared by ai() and rerank()); add a LIMIT or a \
                 filter, or raise ai_max_rows",
                max = self.max_rows,
            )));
        }
        Ok(())
    }

    pub(crate) fn same(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.sent, &other.sent)
    }
}

/// Calls `call` once per item, at most `model`'s `concurrency` at a time, answers in order.
///
/// # Errors
/// The first failed call's error.
pub(crate) async fn per_row<I, T, F, Fut>(
    model: &ChatModel,
    items: Vec<I>,
    call: F,
) -> crate::Result<Vec<T>>
where
    F: Fn(I) -> Fut,
    Fut: std::future::Future<Output = crate::Result<T>>,
{
    futures::stream::iter(items)
        .map(call)
        .buffered(model.config().concurrency)
        .try_collect()
        .await
}

/// The `ai` function over `models`, counting its rows in one query's [`ChatRowLimit`].
#[derive(Debug)]
pub struct AiFunction {
    models: Arc<ChatModels>,
    limit: ChatRowLimit,
    signature: Signature,
}

impl AiFunction {
    /// `ai` as a DataFusion scalar UDF (async) whose prompts count in `limit`, the limit of
    /// the query whose session it is registered in.
    pub fn udf(models: Arc<ChatModels>, limit: ChatRowLimit) -> ScalarUDF {
        let function = Self {
            models,
            limit,
            // Volatile: never evaluated at planning.
            signature: Signature::one_of(
                vec![TypeSignature::String(1), TypeSignature::String(2)],
                Volatility::Volatile,
            ),
        };
        AsyncScalarUDF::new(Arc::new(function)).into_scalar_udf()
    }

    fn model(&self, model: Option<&ColumnarValue>) -> datafusion::error::Result<&Arc<ChatModel>> {
        self.models
            .get(args::model_arg("ai", model)?)
            .map_err(|e| args::plan_err("ai", e))
    }
}

impl PartialEq for AiFunction {
    fn eq(&self, other: &Self) -> bool {
        self.limit.same(&other.limit)
    }
}

impl Eq for AiFunction {}

impl Hash for AiFunction {
    fn hash<H: Hasher>(&self, state: &mut H) {
        "ai".hash(state);
    }
}

impl ScalarUDFImpl for AiFunction {
    fn name(&self) -> &str {
        "ai"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> datafusion::error::Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(
        &self,
        _args: ScalarFunctionArgs,
    ) -> datafusion::error::Result<ColumnarValue> {
        Err(DataFusionError::Internal(
            "ai runs as an async function".into(),
        ))
    }
}

#[async_trait::async_trait]
impl AsyncScalarUDFImpl for AiFunction {
    async fn invoke_async_with_args(
        &self,
        args: ScalarFunctionArgs,
    ) -> datafusion::error::Result<ColumnarValue> {
        let model = self.model(args.args.get(1))?;
        let prompts = args::strings(&args, 0)?;
        self.limit
            .take("ai", prompts.iter().flatten().count(), model.name())?;
        let answers = per_row(model, prompts, |prompt| async move {
            match prompt {
                None => Ok(None),
                Some(prompt) => model.complete(&[ChatMessage::user(prompt)]).await.map(Some),
            }
        })
        .await
        .map_err(args::to_datafusion)?;
        Ok(ColumnarValue::Array(Arc::new(StringArray::from(answers))))
    }
}
