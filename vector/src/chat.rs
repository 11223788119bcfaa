//! Chat (LLM) models reached over HTTP, beside the embedding models.
//!
//! Two wire formats, both `POST` with a JSON body and no streaming:
//! - **Ollama** `POST {base_url}/api/chat` `{"model", "messages", "stream": false, "options":
//!   {"temperature", "seed", "num_predict"}}` → `{"message": {"content"}}`
//!   (<https://github.com/ollama/ollama/blob/main/docs/api.md#generate-a-chat-completion>);
//! - **OpenAI-compatible** `POST {base_url}/v1/chat/completions` `{"model", "messages",
//!   "temperature", "seed", "max_tokens"}` → `{"choices": [{"message": {"content"}}]}`, with
//!   `Authorization: Bearer <api_key>` when a key is configured
//!   (<https://platform.openai.com/docs/api-reference/chat/create>).
//!
//! [`ChatModel`] bounds the calls in flight to `concurrency` (across all queries), retries 429
//! and 5xx answers and connection failures with backoff until `timeout_ms` has passed since
//! the call began (waiting for a slot included), and then fails with [`Error::Unavailable`].

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::embedding::ProviderKind;
use crate::error::{Error, Result};
use crate::http::{ModelEndpoint, with_retries};

/// One chat model (a `[chat.models.NAME]` table of the server config).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatModelConfig {
    /// Wire format: `ollama` (`/api/chat`) or `openai` (`/v1/chat/completions`).
    pub provider: ProviderKind,
    /// Server base URL, e.g. `http://127.0.0.1:11434`.
    pub base_url: String,
    /// The model name the server knows, e.g. `smollm2:135m`, `qwen2.5`.
    pub model: String,
    /// Sampling temperature (default 0: the most likely token, repeatable answers).
    #[serde(default)]
    pub temperature: f32,
    /// Sampling seed (default 0).
    #[serde(default)]
    pub seed: u64,
    /// Most tokens an answer may have (default 256).
    #[serde(default = "defaults::max_tokens")]
    pub max_tokens: u32,
    /// Milliseconds a call may take, waiting for a slot and retries included, before it fails
    /// with [`Error::Unavailable`] (default 60 000).
    #[serde(default = "defaults::timeout_ms")]
    pub timeout_ms: u64,
    /// Calls to this model in flight at once, over all queries (default 1).
    #[serde(default = "defaults::concurrency")]
    pub concurrency: usize,
    /// Bearer key for OpenAI-compatible servers that need one.
    #[serde(default)]
    pub api_key: Option<String>,
}

mod defaults {
    pub(super) fn max_tokens() -> u32 {
        256
    }
    pub(super) fn timeout_ms() -> u64 {
        60_000
    }
    pub(super) fn concurrency() -> usize {
        1
    }
    pub(super) fn ai_max_rows() -> usize {
        100
    }
}

impl ChatModelConfig {
    /// A config with the defaults for everything but the three required fields.
    pub fn new(
        provider: ProviderKind,
        base_url: impl Into<String>,
        model: impl Into<String>,
    ) -> Self {
        Self {
            provider,
            base_url: base_url.into(),
            model: model.into(),
            temperature: 0.0,
            seed: 0,
            max_tokens: defaults::max_tokens(),
            timeout_ms: defaults::timeout_ms(),
            concurrency: defaults::concurrency(),
            api_key: None,
        }
    }

    fn validate(&self, name: &str) -> Result<()> {
        let bad = |what: &str| Err(Error::Config(format!("chat model {name}: {what}")));
        if self.concurrency == 0 || self.max_tokens == 0 || self.timeout_ms == 0 {
            return bad("concurrency, max_tokens and timeout_ms must be at least 1");
        }
        if !(0.0..=2.0).contains(&self.temperature) {
            return bad("temperature must be between 0 and 2");
        }
        if !(self.base_url.starts_with("http://") || self.base_url.starts_with("https://")) {
            return bad("base_url must start with http:// or https://");
        }
        Ok(())
    }
}

/// One message of a chat: `role` is `system`, `user` or `assistant`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text.
    pub content: String,
}

impl ChatMessage {
    /// A `system` message.
    pub fn system(content: impl Into<String>) -> Self {
        Self {
            role: "system".into(),
            content: content.into(),
        }
    }

    /// A `user` message.
    pub fn user(content: impl Into<String>) -> Self {
        Self {
            role: "user".into(),
            content: content.into(),
        }
    }
}

#[derive(Deserialize)]
struct OllamaAnswer {
    message: ChatMessage,
}

#[derive(Deserialize)]
struct OpenAiAnswer {
    choices: Vec<OpenAiChoice>,
}

#[derive(Deserialize)]
struct OpenAiChoice {
    message: ChatMessage,
}

/// The wire format of a chat server.
#[derive(Debug, Clone, Copy)]
enum Format {
    Ollama,
    OpenAi,
}

/// A chat model ready to use: bounded concurrency and retries within the timeout.
#[derive(Debug)]
pub struct ChatModel {
    name: String,
    config: ChatModelConfig,
    format: Format,
    endpoint: ModelEndpoint,
    slots: tokio::sync::Semaphore,
    requests: AtomicU64,
}

impl ChatModel {
    /// The model named `name` (the config key).
    ///
    /// # Errors
    /// [`Error::Config`] for an invalid config, or `provider = "local"` (chat models run
    /// behind an Ollama or OpenAI-compatible server).
    pub fn new(name: &str, config: ChatModelConfig) -> Result<Self> {
        config.validate(name)?;
        let (format, path) = match config.provider {
            ProviderKind::Ollama => (Format::Ollama, "/api/chat"),
            ProviderKind::OpenAi => (Format::OpenAi, "/v1/chat/completions"),
            ProviderKind::Local => {
                return Err(Error::Config(format!(
                    "chat model {name}: provider local is for embedding models; chat models \
                     need provider ollama or openai (a server such as Ollama or llama.cpp)"
                )));
            }
        };
        let endpoint = ModelEndpoint::new(
            &config.base_url,
            path,
            &config.model,
            config.api_key.clone(),
            config.timeout_ms,
        )?;
        Ok(Self {
            format,
            name: name.to_string(),
            slots: tokio::sync::Semaphore::new(config.concurrency),
            config,
            endpoint,
            requests: AtomicU64::new(0),
        })
    }

    /// The configured name of this model.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The configuration.
    pub fn config(&self) -> &ChatModelConfig {
        &self.config
    }

    /// Requests sent to the model server so far (retries included).
    pub fn requests_sent(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// The model's answer to `messages`.
    ///
    /// # Errors
    /// [`Error::Unavailable`] when no slot frees up, or the server stays unreachable or failing
    /// (429/5xx), until the timeout; [`Error::Refused`] (e.g. an unknown model);
    /// [`Error::InvalidResponse`].
    pub async fn complete(&self, messages: &[ChatMessage]) -> Result<String> {
        self.complete_with_max_tokens(messages, self.config.max_tokens)
            .await
    }

    /// [`Self::complete`] with an answer of at most `max_tokens` tokens instead of the
    /// configured `max_tokens` (e.g. a relevance rating, which needs two).
    ///
    /// # Errors
    /// As [`Self::complete`].
    pub async fn complete_with_max_tokens(
        &self,
        messages: &[ChatMessage],
        max_tokens: u32,
    ) -> Result<String> {
        let started = std::time::Instant::now();
        let span = tracing::info_span!("model_call", kind = "chat", model = %self.name);
        let answer =
            tracing::Instrument::instrument(self.complete_once(messages, max_tokens), span).await;
        crate::observe::model_call("chat", &self.name, started, &answer);
        answer
    }

    /// [`Self::complete_with_max_tokens`] without its metrics.
    async fn complete_once(&self, messages: &[ChatMessage], max_tokens: u32) -> Result<String> {
        let timeout = Duration::from_millis(self.config.timeout_ms);
        let deadline = tokio::time::Instant::now() + timeout;
        let _slot = tokio::time::timeout_at(deadline, self.slots.acquire())
            .await
            .map_err(|_| Error::Unavailable {
                provider: self.endpoint.describe(),
                message: format!(
                    "no free slot within {} ms (concurrency {})",
                    timeout.as_millis(),
                    self.config.concurrency
                ),
            })?
            .expect("the semaphore is never closed");
        let body = match self.format {
            Format::Ollama => json!({
                "model": self.endpoint.model(),
                "messages": messages,
                "stream": false,
                "options": {
                    "temperature": self.config.temperature,
                    "seed": self.config.seed,
                    "num_predict": max_tokens,
                },
            }),
            Format::OpenAi => json!({
                "model": self.endpoint.model(),
                "messages": messages,
                "temperature": self.config.temperature,
                "seed": self.config.seed,
                "max_tokens": max_tokens,
            }),
        };
        let bytes = with_retries(&self.endpoint.describe(), timeout, deadline, || {
            self.requests.fetch_add(1, Ordering::Relaxed);
            self.endpoint.post(&body)
        })
        .await?;
        let content = match self.format {
            Format::Ollama => {
                serde_json::from_slice::<OllamaAnswer>(&bytes)
                    .map_err(|e| {
                        self.endpoint
                            .invalid(format!("not an /api/chat answer: {e}"))
                    })?
                    .message
                    .content
            }
            Format::OpenAi => {
                serde_json::from_slice::<OpenAiAnswer>(&bytes)
                    .map_err(|e| {
                        self.endpoint
                            .invalid(format!("not a /v1/chat/completions answer: {e}"))
                    })?
                    .choices
                    .into_iter()
                    .next()
                    .ok_or_else(|| self.endpoint.invalid("no choices in the answer"))?
                    .message
                    .content
            }
        };
        Ok(content.trim().to_string())
    }
}

/// The `[chat]` section of the server config: models by name, the default one, and the limits
/// of the `ai()` SQL function.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChatConfig {
    /// The model used when a call names none (default: the only model, if there is one).
    pub default_model: Option<String>,
    /// Models by name: `[chat.models.NAME]`.
    pub models: BTreeMap<String, ChatModelConfig>,
    /// Most rows one query may send to `ai()` (default 100); a query that would send more is
    /// refused before the rows over the cap reach the model.
    pub ai_max_rows: usize,
}

impl Default for ChatConfig {
    fn default() -> Self {
        Self {
            default_model: None,
            models: BTreeMap::new(),
            ai_max_rows: defaults::ai_max_rows(),
        }
    }
}

/// The configured chat models by name (`[chat.models.NAME]`), and the default one.
#[derive(Debug, Default, Clone)]
pub struct ChatModels {
    models: HashMap<String, Arc<ChatModel>>,
    default: Option<String>,
}

impl ChatModels {
    /// Builds every model of `config`.
    ///
    /// # Errors
    /// [`Error::Config`] for an invalid model config or a default that is not configured.
    pub fn new(config: &ChatConfig) -> Result<Self> {
        let mut models = HashMap::new();
        for (name, model) in &config.models {
            models.insert(name.clone(), Arc::new(ChatModel::new(name, model.clone())?));
        }
        let default =
            crate::embedding::pick_default("chat", &models, config.default_model.as_deref())?;
        Ok(Self { models, default })
    }

    /// The model `name`, or the default one for `None`.
    ///
    /// # Errors
    /// [`Error::Config`] naming the configured models when `name` is unknown or no default
    /// exists.
    pub fn get(&self, name: Option<&str>) -> Result<&Arc<ChatModel>> {
        crate::embedding::lookup("chat", &self.models, name, self.default.as_deref())
    }
}
