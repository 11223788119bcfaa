//! Errors of the vector crate.

/// Errors of model providers and vector tables.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The model server could not be reached, kept failing with 429/5xx, or did not answer
    /// within the configured timeout (maps to gRPC `Unavailable`).
    #[error("model server {provider} unavailable: {message}")]
    Unavailable {
        /// The configured model name and base URL.
        provider: String,
        /// What happened.
        message: String,
    },

    /// The model server refused the request (4xx other than 429), e.g. an unknown model.
    #[error("model server {provider} refused the request (HTTP {status}): {message}")]
    Refused {
        /// The configured model name and base URL.
        provider: String,
        /// The HTTP status.
        status: u16,
        /// The server's error message.
        message: String,
    },

    /// The server answered something that is not the API's response format.
    #[error("model server {provider} sent an invalid answer: {message}")]
    InvalidResponse {
        /// The configured model name and base URL.
        provider: String,
        /// What is wrong with it.
        message: String,
    },

    /// The model's vectors do not have the configured dimension.
    #[error(
        "embedding model {model} returned {actual}-dimensional vectors, but {expected} is \
         configured (set dimension = {actual} for it)"
    )]
    DimensionMismatch {
        /// The configured model name.
        model: String,
        /// The configured dimension.
        expected: usize,
        /// The dimension the model returned.
        actual: usize,
    },

    /// A document cannot be read as text (not UTF-8, unreadable HTML).
    #[error("{name}: {message}")]
    Document {
        /// The document's name (its path as given).
        name: String,
        /// What is wrong with it.
        message: String,
    },

    /// Lance failed to read or write a dataset.
    #[error("Lance: {0}")]
    Lance(#[from] lance::Error),

    /// A model configuration is unusable, or a model name is unknown.
    #[error("{0}")]
    Config(String),
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A short, stable name of the variant (`unavailable`, `refused`, `invalid_response`,
    /// `dimension_mismatch`, `document`, `lance`, `config`): the `outcome` label of model-call
    /// metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Unavailable { .. } => "unavailable",
            Error::Refused { .. } => "refused",
            Error::InvalidResponse { .. } => "invalid_response",
            Error::DimensionMismatch { .. } => "dimension_mismatch",
            Error::Document { .. } => "document",
            Error::Lance(_) => "lance",
            Error::Config(_) => "config",
        }
    }
}
