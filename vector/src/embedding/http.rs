//! The HTTP embedding provider: one request per batch, Ollama or OpenAI format.

use std::time::Duration;

use serde::Deserialize;
use serde_json::json;

use super::{EmbeddingModelConfig, EmbeddingProvider, ProviderKind};
use crate::error::{Error, Result};

/// Longest part of a server's error body quoted in messages, in characters.
const MAX_QUOTED: usize = 300;

/// Sends one embedding request per batch to an Ollama or OpenAI-compatible server.
#[derive(Debug)]
pub struct HttpEmbeddingProvider {
    kind: ProviderKind,
    url: String,
    model: String,
    api_key: Option<String>,
    client: reqwest::Client,
}

#[derive(Deserialize)]
struct OllamaResponse {
    embeddings: Vec<Vec<f32>>,
}

#[derive(Deserialize)]
struct OpenAiResponse {
    data: Vec<OpenAiEmbedding>,
}

#[derive(Deserialize)]
struct OpenAiEmbedding {
    index: usize,
    embedding: Vec<f32>,
}

impl HttpEmbeddingProvider {
    /// A provider for `config` (its `timeout_ms` also bounds each single request).
    ///
    /// # Errors
    /// [`Error::Config`] when the HTTP client cannot be built.
    pub fn new(config: &EmbeddingModelConfig) -> Result<Self> {
        let base = config.base_url.trim_end_matches('/');
        let url = match config.provider {
            ProviderKind::Ollama => format!("{base}/api/embed"),
            ProviderKind::OpenAi => format!("{base}/v1/embeddings"),
        };
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(config.timeout_ms))
            .connect_timeout(Duration::from_millis(config.timeout_ms.min(5_000)))
            .build()
            .map_err(|e| Error::Config(format!("HTTP client: {e}")))?;
        Ok(Self {
            kind: config.provider,
            url,
            model: config.model.clone(),
            api_key: config.api_key.clone(),
            client,
        })
    }

    fn unavailable(&self, message: impl Into<String>) -> Error {
        Error::Unavailable {
            provider: self.describe(),
            message: message.into(),
        }
    }

    fn invalid(&self, message: impl Into<String>) -> Error {
        Error::InvalidResponse {
            provider: self.describe(),
            message: message.into(),
        }
    }
}

/// The `error` field of a JSON error body (Ollama: `{"error": "..."}`, OpenAI:
/// `{"error": {"message": "..."}}`), else the body itself, shortened.
fn error_message(body: &[u8]) -> String {
    let parsed: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let message = parsed
        .as_ref()
        .and_then(|v| v.get("error"))
        .and_then(|e| {
            e.as_str()
                .map(String::from)
                .or_else(|| e.get("message").and_then(|m| m.as_str()).map(String::from))
        })
        .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
    message.chars().take(MAX_QUOTED).collect()
}

#[async_trait::async_trait]
impl EmbeddingProvider for HttpEmbeddingProvider {
    async fn embed_batch(&self, texts: &[String]) -> Result<Vec<Vec<f32>>> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let body = json!({ "model": self.model, "input": texts });
        let mut request = self
            .client
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string());
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key);
        }
        let response = request
            .send()
            .await
            .map_err(|e| self.unavailable(format!("request failed: {e}")))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| self.unavailable(format!("reading the answer failed: {e}")))?;
        if status.as_u16() == 429 || status.is_server_error() {
            return Err(self.unavailable(format!("HTTP {status}: {}", error_message(&bytes))));
        }
        if !status.is_success() {
            return Err(Error::Refused {
                provider: self.describe(),
                status: status.as_u16(),
                message: error_message(&bytes),
            });
        }
        match self.kind {
            ProviderKind::Ollama => {
                let answer: OllamaResponse = serde_json::from_slice(&bytes)
                    .map_err(|e| self.invalid(format!("not an /api/embed answer: {e}")))?;
                Ok(answer.embeddings)
            }
            ProviderKind::OpenAi => {
                let mut answer: OpenAiResponse = serde_json::from_slice(&bytes)
                    .map_err(|e| self.invalid(format!("not a /v1/embeddings answer: {e}")))?;
                answer.data.sort_by_key(|d| d.index);
                if answer.data.iter().enumerate().any(|(i, d)| d.index != i) {
                    return Err(self.invalid("embedding indexes are not 0..n"));
                }
                Ok(answer.data.into_iter().map(|d| d.embedding).collect())
            }
        }
    }

    fn describe(&self) -> String {
        format!("{} @ {}", self.model, self.url)
    }
}
