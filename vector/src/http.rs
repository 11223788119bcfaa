//! What every model call over HTTP shares: one JSON `POST` with the status mapped to the
//! crate's errors ([`ModelEndpoint`]), and retries with backoff until a deadline
//! ([`with_retries`]).

use std::future::Future;
use std::time::Duration;

use crate::error::{Error, Result};

/// Longest part of a server's error body quoted in messages, in characters.
const MAX_QUOTED: usize = 300;

/// One model API endpoint: `POST {url}` with a JSON body, bearer key when configured.
#[derive(Debug)]
pub(crate) struct ModelEndpoint {
    url: String,
    model: String,
    api_key: Option<String>,
    client: reqwest::Client,
}

impl ModelEndpoint {
    /// The endpoint `{base_url}{path}` for `model`; `timeout_ms` bounds each request (and
    /// connecting, at most 5 s).
    ///
    /// # Errors
    /// [`Error::Config`] when the HTTP client cannot be built.
    pub(crate) fn new(
        base_url: &str,
        path: &str,
        model: &str,
        api_key: Option<String>,
        timeout_ms: u64,
    ) -> Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(timeout_ms))
            .connect_timeout(Duration::from_millis(timeout_ms.min(5_000)))
            .build()
            .map_err(|e| Error::Config(format!("HTTP client: {e}")))?;
        Ok(Self {
            url: format!("{}{path}", base_url.trim_end_matches('/')),
            model: model.to_string(),
            api_key,
            client,
        })
    }

    /// `MODEL @ URL`, for messages.
    pub(crate) fn describe(&self) -> String {
        format!("{} @ {}", self.model, self.url)
    }

    /// The model name sent in requests.
    pub(crate) fn model(&self) -> &str {
        &self.model
    }

    /// An [`Error::InvalidResponse`] from this endpoint.
    pub(crate) fn invalid(&self, message: impl Into<String>) -> Error {
        Error::InvalidResponse {
            provider: self.describe(),
            message: message.into(),
        }
    }

    fn unavailable(&self, message: impl Into<String>) -> Error {
        Error::Unavailable {
            provider: self.describe(),
            message: message.into(),
        }
    }

    /// Sends `body` and returns the answer's bytes.
    ///
    /// # Errors
    /// [`Error::Unavailable`] for transport failures and 429/5xx answers (retryable),
    /// [`Error::Refused`] for other non-success answers, quoting the server's error message.
    pub(crate) async fn post(&self, body: &serde_json::Value) -> Result<bytes::Bytes> {
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
        Ok(bytes)
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

/// Runs `call` until it succeeds, fails with a non-retryable error, or `deadline` comes.
/// Only [`Error::Unavailable`] is retried, with exponential backoff (100 ms doubling,
/// jittered, at most 5 s apart; `backon`). `provider` and `timeout` (the configured
/// `timeout_ms`) go into the final error.
///
/// # Errors
/// The non-retryable error; [`Error::Unavailable`] with the last failure when `deadline`
/// passes.
pub(crate) async fn with_retries<T, F, Fut>(
    provider: &str,
    timeout: Duration,
    deadline: tokio::time::Instant,
    call: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    use backon::Retryable;
    let last_failure = std::sync::Mutex::new(None::<String>);
    let backoff = backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(5))
        .with_jitter()
        .without_max_times();
    let retried = call
        .retry(backoff)
        .sleep(tokio::time::sleep)
        .when(|e| matches!(e, Error::Unavailable { .. }))
        .notify(|e, delay| {
            tracing::debug!(%provider, error = %e, ?delay, "retrying model request");
            if let Error::Unavailable { message, .. } = e {
                *last_failure.lock().expect("lock") = Some(message.clone());
            }
        });
    match tokio::time::timeout_at(deadline, retried).await {
        Ok(result) => result,
        Err(_) => Err(Error::Unavailable {
            provider: provider.to_string(),
            message: match last_failure.lock().expect("lock").take() {
                Some(failure) => format!(
                    "{failure} (still failing after {} ms of retries)",
                    timeout.as_millis()
                ),
                None => format!("no answer within {} ms (timeout_ms)", timeout.as_millis()),
            },
        }),
    }
}
