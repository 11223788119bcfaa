//! `ai(prompt [, model])`: the SQL scalar function that asks a configured chat model, one call
//! per row.
//!
//! Returns `Utf8`: the model's answer to `prompt` sent as one user message (trimmed). `model`
//! must be a string literal naming a configured chat model; without it the default one is used.
//! NULL prompts give NULL without a call. It runs as a DataFusion async UDF, calling the model
//! while the query runs (never while it is planned).
//!
//! Limits, so a runaway query cannot flood the model server:
//! - **rows**: one query sends at most `max_rows` prompts (`[chat] ai_max_rows`, default 100).
//!   Each batch is counted before any of its prompts is sent; a batch that would pass the cap
//!   fails the query with `ResourcesExhausted` (gRPC `RESOURCE_EXHAUSTED`) naming the setting.
//!   The count is per query: the server registers a fresh `ai` in each query's session.
//! - **concurrency**: the chat model's `concurrency` (default 1) bounds calls in flight, over
//!   all queries; each call has the model's `timeout_ms`.

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use arrow::array::{Array, ArrayRef, StringArray};
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

/// The `ai` function over `models`, with its own row count (one per query).
#[derive(Debug)]
pub struct AiFunction {
    models: Arc<ChatModels>,
    max_rows: usize,
    sent: Arc<AtomicUsize>,
    signature: Signature,
}

impl AiFunction {
    /// `ai` as a DataFusion scalar UDF (async) allowing `max_rows` prompts in the query whose
    /// session it is registered in.
    pub fn udf(models: Arc<ChatModels>, max_rows: usize) -> ScalarUDF {
        let function = Self {
            models,
            max_rows,
            sent: Arc::new(AtomicUsize::new(0)),
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
        Arc::ptr_eq(&self.sent, &other.sent)
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
        let prompts: ArrayRef = args.args[0].to_array(args.number_rows)?;
        let prompts = arrow::compute::cast(&prompts, &DataType::Utf8)?;
        let prompts = prompts
            .as_any()
            .downcast_ref::<StringArray>()
            .expect("cast to Utf8");
        let wanted = prompts.len() - prompts.null_count();
        let before = self.sent.fetch_add(wanted, Ordering::Relaxed);
        if before + wanted > self.max_rows {
            return Err(DataFusionError::ResourcesExhausted(format!(
                "ai(): this query would send more than {} rows to chat model {} \
                 ([chat] ai_max_rows = {}); add a LIMIT or a filter, or raise ai_max_rows",
                self.max_rows,
                model.name(),
                self.max_rows
            )));
        }
        let concurrency = model.config().concurrency;
        let owned: Vec<Option<String>> = prompts.iter().map(|p| p.map(String::from)).collect();
        let model = Arc::clone(model);
        let answers: Vec<Option<String>> = futures::stream::iter(owned)
            .map(move |prompt| {
                let model = Arc::clone(&model);
                async move {
                    match prompt {
                        None => Ok(None),
                        Some(prompt) => {
                            model.complete(&[ChatMessage::user(prompt)]).await.map(Some)
                        }
                    }
                }
            })
            .buffered(concurrency)
            .try_collect()
            .await
            .map_err(args::to_datafusion)?;
        Ok(ColumnarValue::Array(Arc::new(StringArray::from(answers))))
    }
}
