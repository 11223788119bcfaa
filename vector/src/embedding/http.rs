//! The HTTP embedding provider: one request per batch, Ollama or OpenAI format.

use serde::Deserialize;
use serde_json::json;

use super::{EmbeddingModelConfig, EmbeddingProvider, ProviderKind};
use crate::error::Result;
use crate::http::ModelEndpoint;

/// Sends one embedding request per batch to an Ollama or OpenAI-compatible server.
#[derive(Debug)]
pub struct HttpEmbeddingProvider {
    format: Format,
    endpoint: ModelEndpoint,
}

/// The wire format of the server.
#[derive(Debug, Clone, Copy)]
enum Format {
    Ollama,
    OpenAi,
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
    /// [`crate::Error::Config`] when the HTTP client cannot be built, or for `provider =
    /// "local"` (not an HTTP provider).
    pub fn new(config: &EmbeddingModelConfig) -> Result<Self> {
        let (format, path) = match config.provider {
            ProviderKind::Ollama => (Format::Ollama, "/api/embed"),
            ProviderKind::OpenAi => (Format::OpenAi, "/v1/embeddings"),
            ProviderKind::Local => {
                return Err(crate::Error::Config(
                    "provider local runs in process, not over HTTP".into(),
                ));
            }
        };
        Ok(Self {
            format,
            endpoint: ModelEndpoint::new(
                &config.base_url,
                path,
                &config.model,
                config.api_key.clone(),
                config.timeout_ms,
            )?,
        })
    }
}

#[async_trait::async_trait]
impl EmbeddingProvider for HttpEmbeddingProvider {
    async fn embed_batch(&self, texts: &[String]) -> Result<Vec<Vec<f32>>> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let bytes = self
            .endpoint
            .post(&json!({ "model": self.endpoint.model(), "input": texts }))
            .await?;
        match self.format {
            Format::Ollama => {
                let answer: OllamaResponse = serde_json::from_slice(&bytes).map_err(|e| {
                    self.endpoint
                        .invalid(format!("not an /api/embed answer: {e}"))
                })?;
                Ok(answer.embeddings)
            }
            Format::OpenAi => {
                let mut answer: OpenAiResponse = serde_json::from_slice(&bytes).map_err(|e| {
                    self.endpoint
                        .invalid(format!("not a /v1/embeddings answer: {e}"))
                })?;
                answer.data.sort_by_key(|d| d.index);
                if answer.data.iter().enumerate().any(|(i, d)| d.index != i) {
                    return Err(self.endpoint.invalid("embedding indexes are not 0..n"));
                }
                Ok(answer.data.into_iter().map(|d| d.embedding).collect())
            }
        }
    }

    fn describe(&self) -> String {
        self.endpoint.describe()
    }
}
