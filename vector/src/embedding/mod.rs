//! Embedding models: run in process ([`local`], `provider = "local"`), or reached over HTTP.
//!
//! Two wire formats over HTTP, both `POST` with a JSON body:
//! - **Ollama** `POST {base_url}/api/embed` `{"model", "input": [text...]}` →
//!   `{"embeddings": [[f32...]...]}` (<https://github.com/ollama/ollama/blob/main/docs/api.md>);
//! - **OpenAI-compatible** `POST {base_url}/v1/embeddings` `{"model", "input": [text...]}` →
//!   `{"data": [{"index", "embedding": [f32...]}...]}`, with `Authorization: Bearer <api_key>`
//!   when a key is configured (<https://platform.openai.com/docs/api-reference/embeddings>).
//!
//! [`Embedder`] adds what every caller needs: texts are sent in batches of `batch_size`, at most
//! `concurrency` batches at a time; answers are cached by (model, text) in a cache bounded in
//! bytes ([`EmbeddingModelConfig::cache_bytes`], `moka`); 429 and 5xx answers and connection
//! failures are retried with exponential backoff (`backon`) until `timeout_ms` has passed
//! since the call began, after which the call fails with [`Error::Unavailable`]; every vector
//! is checked against the configured dimension ([`Error::DimensionMismatch`]).

mod http;
pub mod local;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

pub use http::HttpEmbeddingProvider;
pub use local::LocalEmbeddingProvider;

use crate::error::{Error, Result};

/// Where an embedding model runs: in the server, or behind an HTTP API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// Ollama's `/api/embed`.
    Ollama,
    /// OpenAI's `/v1/embeddings` (llama.cpp server, vLLM, LM Studio, OpenAI).
    OpenAi,
    /// In process: a sentence-transformers model directory ([`local`]).
    Local,
}

/// One embedding model (a `[embedding.models.NAME]` table of the server config).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbeddingModelConfig {
    /// `local` (in process), `ollama` or `openai`.
    pub provider: ProviderKind,
    /// Server base URL, e.g. `http://127.0.0.1:11434` (Ollama) or `https://api.openai.com`
    /// (HTTP providers).
    #[serde(default)]
    pub base_url: String,
    /// The model name the server knows, e.g. `all-minilm`, `nomic-embed-text` (HTTP
    /// providers).
    #[serde(default)]
    pub model: String,
    /// The model directory (`config.json`, `tokenizer.json`, `model.safetensors`) of a `local`
    /// model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<std::path::PathBuf>,
    /// Vector dimension the model returns (384 for all-MiniLM-L6-v2, 768 for
    /// nomic-embed-text); checked against every answer. Required for HTTP providers; a local
    /// model's is its `hidden_size` (0 or absent takes it).
    #[serde(default)]
    pub dimension: usize,
    /// Texts per request (default 32).
    #[serde(default = "defaults::batch_size")]
    pub batch_size: usize,
    /// Requests in flight at once per call (default 2).
    #[serde(default = "defaults::concurrency")]
    pub concurrency: usize,
    /// Milliseconds a call may take, retries included, before it fails with
    /// [`Error::Unavailable`] (default 30 000).
    #[serde(default = "defaults::timeout_ms")]
    pub timeout_ms: u64,
    /// Bearer key for OpenAI-compatible servers that need one.
    #[serde(default)]
    pub api_key: Option<String>,
    /// Bytes of vectors the cache may hold (default 64 MiB; 0 disables it).
    #[serde(default = "defaults::cache_bytes")]
    pub cache_bytes: u64,
}

/// Defaults of [`EmbeddingModelConfig`] (serde needs functions).
mod defaults {
    pub(super) fn batch_size() -> usize {
        32
    }
    pub(super) fn concurrency() -> usize {
        2
    }
    pub(super) fn timeout_ms() -> u64 {
        30_000
    }
    pub(super) fn cache_bytes() -> u64 {
        64 * 1024 * 1024
    }
}

impl EmbeddingModelConfig {
    /// A config with the defaults for everything but the four required fields.
    pub fn new(
        provider: ProviderKind,
        base_url: impl Into<String>,
        model: impl Into<String>,
        dimension: usize,
    ) -> Self {
        Self {
            provider,
            base_url: base_url.into(),
            model: model.into(),
            path: None,
            dimension,
            batch_size: defaults::batch_size(),
            concurrency: defaults::concurrency(),
            timeout_ms: defaults::timeout_ms(),
            api_key: None,
            cache_bytes: defaults::cache_bytes(),
        }
    }

    /// A config for the in-process model in `path` with the defaults for everything else.
    pub fn local(path: impl Into<std::path::PathBuf>) -> Self {
        Self {
            path: Some(path.into()),
            ..Self::new(ProviderKind::Local, "", "", 0)
        }
    }

    fn validate(&self, name: &str) -> Result<()> {
        let bad = |what: &str| Err(Error::Config(format!("embedding model {name}: {what}")));
        if self.batch_size == 0 || self.concurrency == 0 {
            return bad("batch_size and concurrency must be at least 1");
        }
        if self.timeout_ms == 0 {
            return bad("timeout_ms must be at least 1");
        }
        if self.provider == ProviderKind::Local {
            if self.path.is_none() {
                return bad("provider local needs path = \"DIR\" (the model directory)");
            }
            return Ok(());
        }
        if self.path.is_some() {
            return bad("path is for provider local; HTTP providers take base_url and model");
        }
        if self.dimension == 0 {
            return bad("dimension must be at least 1");
        }
        if self.model.is_empty() {
            return bad("model (the name the server knows) is required");
        }
        if !(self.base_url.starts_with("http://") || self.base_url.starts_with("https://")) {
            return bad("base_url must start with http:// or https://");
        }
        Ok(())
    }
}

/// Something that turns texts into vectors: one HTTP request per call, no batching, caching or
/// retries (those are [`Embedder`]'s).
#[async_trait::async_trait]
pub trait EmbeddingProvider: Send + Sync + std::fmt::Debug {
    /// Vectors for `texts`, in order.
    ///
    /// # Errors
    /// [`Error::Unavailable`] for transport failures and 429/5xx answers (retryable),
    /// [`Error::Refused`] for other 4xx, [`Error::InvalidResponse`] for malformed answers.
    async fn embed_batch(&self, texts: &[String]) -> Result<Vec<Vec<f32>>>;

    /// `MODEL @ BASE_URL`, for messages.
    fn describe(&self) -> String;
}

/// An embedding model ready to use: batching, bounded concurrency, retries within the timeout,
/// the (model, text) cache and the dimension check, over an [`EmbeddingProvider`].
#[derive(Debug)]
pub struct Embedder {
    name: String,
    config: EmbeddingModelConfig,
    provider: Arc<dyn EmbeddingProvider>,
    cache: Option<moka::sync::Cache<String, Arc<[f32]>>>,
    requests: AtomicU64,
}

impl Embedder {
    /// An embedder named `name` (the config key): the local model loaded now, or an HTTP
    /// client.
    ///
    /// # Errors
    /// [`Error::Config`] for an invalid config, a local model that does not load, or a
    /// configured dimension that is not the local model's.
    pub fn new(name: &str, mut config: EmbeddingModelConfig) -> Result<Self> {
        config.validate(name)?;
        let provider: Arc<dyn EmbeddingProvider> = match &config.path {
            Some(path) if config.provider == ProviderKind::Local => {
                let local = LocalEmbeddingProvider::load(path)?;
                match config.dimension {
                    0 => config.dimension = local.dimension(),
                    d if d != local.dimension() => {
                        return Err(Error::Config(format!(
                            "embedding model {name}: dimension = {d}, but the model in {} \
                             makes {}-d vectors",
                            path.display(),
                            local.dimension()
                        )));
                    }
                    _ => {}
                }
                Arc::new(local)
            }
            _ => Arc::new(HttpEmbeddingProvider::new(&config)?),
        };
        Ok(Self::with_provider(name, config, provider))
    }

    /// An embedder over any provider (config must be valid).
    pub fn with_provider(
        name: &str,
        config: EmbeddingModelConfig,
        provider: Arc<dyn EmbeddingProvider>,
    ) -> Self {
        let cache = (config.cache_bytes > 0).then(|| {
            moka::sync::Cache::builder()
                .max_capacity(config.cache_bytes)
                .weigher(|text: &String, vector: &Arc<[f32]>| {
                    let bytes = text.len() + std::mem::size_of_val(vector.as_ref()) + 64;
                    u32::try_from(bytes).unwrap_or(u32::MAX)
                })
                .build()
        });
        Self {
            name: name.to_string(),
            config,
            provider,
            cache,
            requests: AtomicU64::new(0),
        }
    }

    /// The configured name of this model.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The vector dimension (from the configuration, checked against every answer).
    pub fn dimension(&self) -> usize {
        self.config.dimension
    }

    /// The configuration.
    pub fn config(&self) -> &EmbeddingModelConfig {
        &self.config
    }

    /// Where the model runs, for messages: `MODEL @ URL`, or `local model DIR`.
    pub fn describe(&self) -> String {
        self.provider.describe()
    }

    /// Requests sent to the model server so far (retries included).
    pub fn requests_sent(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// One vector per text, in order; each `dimension()` long and as the model returned it.
    /// Cached texts are not sent; the rest go in batches.
    ///
    /// # Errors
    /// [`Error::Unavailable`] when the server stays unreachable or failing (429/5xx) until the
    /// timeout; [`Error::Refused`], [`Error::InvalidResponse`], [`Error::DimensionMismatch`].
    pub async fn embed(&self, texts: &[String]) -> Result<Vec<Arc<[f32]>>> {
        let mut out: Vec<Option<Arc<[f32]>>> = texts
            .iter()
            .map(|t| self.cache.as_ref().and_then(|c| c.get(t)))
            .collect();
        // Texts to send, each once, with the positions that want it.
        let mut wanted: HashMap<&str, Vec<usize>> = HashMap::new();
        for (i, text) in texts.iter().enumerate() {
            if out[i].is_none() {
                wanted.entry(text.as_str()).or_default().push(i);
            }
        }
        if !wanted.is_empty() {
            let unique: Vec<String> = wanted.keys().map(|t| t.to_string()).collect();
            let deadline =
                tokio::time::Instant::now() + Duration::from_millis(self.config.timeout_ms);
            let jobs: Vec<Vec<String>> = unique
                .chunks(self.config.batch_size)
                .map(<[String]>::to_vec)
                .collect();
            let batches: Vec<(Vec<String>, Vec<Vec<f32>>)> = futures::stream::iter(
                jobs.into_iter()
                    .map(|chunk| self.embed_chunk(chunk, deadline)),
            )
            .buffer_unordered(self.config.concurrency)
            .try_collect()
            .await?;
            for (chunk, vectors) in batches {
                for (text, vector) in chunk.into_iter().zip(vectors) {
                    let vector: Arc<[f32]> = vector.into();
                    for &i in &wanted[text.as_str()] {
                        out[i] = Some(Arc::clone(&vector));
                    }
                    if let Some(cache) = &self.cache {
                        cache.insert(text, vector);
                    }
                }
            }
        }
        Ok(out
            .into_iter()
            .map(|v| v.expect("every position filled"))
            .collect())
    }

    /// One batch with its texts (owned, so the future is `Send` without higher-ranked
    /// lifetimes).
    async fn embed_chunk(
        &self,
        chunk: Vec<String>,
        deadline: tokio::time::Instant,
    ) -> Result<(Vec<String>, Vec<Vec<f32>>)> {
        let vectors = self.embed_with_retries(&chunk, deadline).await?;
        Ok((chunk, vectors))
    }

    /// One batch, retried on retryable errors until `deadline` ([`crate::http::with_retries`]).
    async fn embed_with_retries(
        &self,
        texts: &[String],
        deadline: tokio::time::Instant,
    ) -> Result<Vec<Vec<f32>>> {
        let started = std::time::Instant::now();
        let span = tracing::info_span!("model_call", kind = "embedding", model = %self.name,
            texts = texts.len());
        let vectors = tracing::Instrument::instrument(
            crate::http::with_retries(
                &self.provider.describe(),
                Duration::from_millis(self.config.timeout_ms),
                deadline,
                || {
                    self.requests.fetch_add(1, Ordering::Relaxed);
                    self.provider.embed_batch(texts)
                },
            ),
            span,
        )
        .await
        .and_then(|vectors| self.check(texts, vectors));
        crate::observe::model_call("embedding", &self.name, started, &vectors);
        vectors
    }

    fn check(&self, texts: &[String], vectors: Vec<Vec<f32>>) -> Result<Vec<Vec<f32>>> {
        if vectors.len() != texts.len() {
            return Err(Error::InvalidResponse {
                provider: self.provider.describe(),
                message: format!("{} vectors for {} texts", vectors.len(), texts.len()),
            });
        }
        if let Some(v) = vectors.iter().find(|v| v.len() != self.config.dimension) {
            return Err(Error::DimensionMismatch {
                model: self.name.clone(),
                expected: self.config.dimension,
                actual: v.len(),
            });
        }
        Ok(vectors)
    }
}

/// The `[embedding]` section of the server config: models by name and the default one.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmbeddingConfig {
    /// The model used when a call names none (default: the only model, if there is one).
    pub default_model: Option<String>,
    /// Models by name: `[embedding.models.NAME]`.
    pub models: std::collections::BTreeMap<String, EmbeddingModelConfig>,
}

/// The configured embedding models by name (`[embedding.models.NAME]`), and the default one.
#[derive(Debug, Default, Clone)]
pub struct EmbeddingModels {
    models: HashMap<String, Arc<Embedder>>,
    default: Option<String>,
}

impl EmbeddingModels {
    /// Builds every model of `configs`; `default` names the one used when a call names none
    /// (default: the only model, when there is exactly one).
    ///
    /// # Errors
    /// [`Error::Config`] for an invalid model config or a default that is not configured.
    pub fn new(
        configs: &std::collections::BTreeMap<String, EmbeddingModelConfig>,
        default: Option<&str>,
    ) -> Result<Self> {
        let mut models = HashMap::new();
        for (name, config) in configs {
            models.insert(name.clone(), Arc::new(Embedder::new(name, config.clone())?));
        }
        let default = pick_default("embedding", &models, default)?;
        Ok(Self { models, default })
    }

    /// The model `name`, or the default one for `None`.
    ///
    /// # Errors
    /// [`Error::Config`] naming the configured models when `name` is unknown or no default
    /// exists.
    pub fn get(&self, name: Option<&str>) -> Result<&Arc<Embedder>> {
        lookup("embedding", &self.models, name, self.default.as_deref())
    }

    /// Configured model names, sorted.
    pub fn names(&self) -> Vec<String> {
        sorted_names(&self.models)
    }
}

fn sorted_names<T>(models: &HashMap<String, T>) -> Vec<String> {
    let mut names: Vec<String> = models.keys().cloned().collect();
    names.sort();
    names
}

/// The default model of a registry of `kind` (`embedding`, `chat`): `default` when configured,
/// else the only model when there is exactly one.
///
/// # Errors
/// [`Error::Config`] when `default` is not among `models`.
pub(crate) fn pick_default<T>(
    kind: &str,
    models: &HashMap<String, T>,
    default: Option<&str>,
) -> Result<Option<String>> {
    match default {
        Some(name) if !models.contains_key(name) => Err(Error::Config(format!(
            "default {kind} model {name} is not configured"
        ))),
        Some(name) => Ok(Some(name.to_string())),
        None if models.len() == 1 => Ok(models.keys().next().cloned()),
        None => Ok(None),
    }
}

/// The model `name` (or `default` for `None`) of a registry of `kind`.
///
/// # Errors
/// [`Error::Config`] naming the configured models when `name` is unknown or no default exists.
pub(crate) fn lookup<'a, T>(
    kind: &str,
    models: &'a HashMap<String, T>,
    name: Option<&str>,
    default: Option<&str>,
) -> Result<&'a T> {
    let configured = if models.is_empty() {
        format!(
            "none is configured; add a [{kind}.models.NAME] section to the server's config file \
             (docs/ai.md, deploy/lakehouse.toml)"
        )
    } else {
        format!("configured: {}", sorted_names(models).join(", "))
    };
    let Some(name) = name.or(default) else {
        return Err(Error::Config(format!(
            "no default {kind} model; name one of the models ({configured})"
        )));
    };
    models
        .get(name)
        .ok_or_else(|| Error::Config(format!("unknown {kind} model {name}; {configured}")))
}
