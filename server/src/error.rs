//! The server's error type and the one place errors become gRPC statuses ([`Error::into_status`]).
//!
//! Domain errors that travel through DataFusion (the catalog's, raised inside table lookups)
//! ride as `DataFusionError::External` and are downcast here, so a missing table is `NotFound`
//! even when DataFusion reported it.

use arrow::error::ArrowError;
use arrow_flight::error::FlightError;
use datafusion::error::DataFusionError;
use tonic::{Code, Status};

/// Longest message sent to a client; longer ones are cut with an ellipsis.
pub const MAX_MESSAGE_CHARS: usize = 2000;

/// Errors of the server crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A catalog error (tables, versions, commits, ingest parsing).
    #[error(transparent)]
    Catalog(#[from] lakehouse_catalog::Error),

    /// A vector-table or model-provider error.
    #[error(transparent)]
    Vector(#[from] lakehouse_vector::Error),

    /// A DataFusion error while planning or running a query.
    #[error(transparent)]
    DataFusion(#[from] DataFusionError),

    /// An Arrow error outside DataFusion (encoding results, building metadata batches).
    #[error(transparent)]
    Arrow(#[from] ArrowError),

    /// A Flight protocol error (decoding a DoPut stream).
    #[error(transparent)]
    Flight(#[from] FlightError),

    /// The request is malformed: an undecodable handle or ticket, an unsupported option.
    #[error("{0}")]
    InvalidArgument(String),

    /// Missing, malformed or wrong credentials, or an expired token (see [`crate::auth`]).
    #[error("{0}")]
    Unauthenticated(String),

    /// The caller is authenticated but its role does not allow the call.
    #[error("{0}")]
    PermissionDenied(String),

    /// A query exceeded a configured limit (time, result bytes, concurrency).
    #[error("{0}")]
    ResourceExhausted(String),

    /// The query ran past its time limit and was stopped.
    #[error("{0}")]
    DeadlineExceeded(String),

    /// The query was cancelled (CancelFlightInfo).
    #[error("{0}")]
    Cancelled(String),

    /// A bug or an unexpected failure inside the server.
    #[error("internal error: {0}")]
    Internal(String),

    /// A distributed-execution worker could not be reached or broke off mid-query (connection
    /// refused or reset, keep-alive timeout): `worker` as configured.
    #[error("worker {worker} is unavailable: {message}")]
    WorkerUnavailable {
        /// The worker's URL as configured (`grpc://HOST:PORT`).
        worker: String,
        /// What failed.
        message: String,
    },

    /// The configuration (flags, environment, file) is unusable.
    #[error("configuration error: {0}")]
    Config(String),

    /// Local I/O failed (binding the listener, reading a file for the CLI).
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The I/O error.
        source: std::io::Error,
    },

    /// The gRPC transport failed (server start, client connection).
    #[error("transport error: {0}")]
    Transport(#[from] tonic::transport::Error),

    /// A gRPC call made by a client command failed.
    #[error("{}: {}", .0.code(), .0.message())]
    Status(#[from] Status),
}

/// The server's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Shorthand for [`Error::InvalidArgument`].
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::InvalidArgument(message.into())
    }

    /// The gRPC code for this error: bad input is `InvalidArgument`, missing tables `NotFound`,
    /// commit races `Aborted`, storage trouble `Unavailable`, resource limits
    /// `ResourceExhausted`, our own bugs `Internal`.
    pub fn code(&self) -> Code {
        match self {
            Error::Catalog(e) => catalog_code(e),
            Error::Vector(e) => vector_code(e),
            Error::DataFusion(e) => datafusion_code(e),
            Error::Arrow(e) => arrow_code(e),
            Error::Flight(FlightError::Tonic(s)) => s.code(),
            Error::Flight(FlightError::Arrow(e)) => arrow_code(e),
            Error::Flight(_) => Code::InvalidArgument,
            Error::InvalidArgument(_) => Code::InvalidArgument,
            Error::Unauthenticated(_) => Code::Unauthenticated,
            Error::PermissionDenied(_) => Code::PermissionDenied,
            Error::ResourceExhausted(_) => Code::ResourceExhausted,
            Error::Internal(_) => Code::Internal,
            Error::WorkerUnavailable { .. } => Code::Unavailable,
            Error::DeadlineExceeded(_) => Code::DeadlineExceeded,
            Error::Cancelled(_) => Code::Cancelled,
            Error::Config(_) => Code::FailedPrecondition,
            Error::Io { .. } => Code::Internal,
            Error::Transport(_) => Code::Unavailable,
            Error::Status(s) => s.code(),
        }
    }

    /// Converts to a `tonic::Status` with [`Error::code`] and the message of the root cause,
    /// capped at [`MAX_MESSAGE_CHARS`].
    pub fn into_status(self) -> Status {
        let code = self.code();
        let message = match &self {
            Error::DataFusion(e) => datafusion_message(e),
            Error::Status(s) => s.message().to_string(),
            other => other.to_string(),
        };
        if code == Code::Internal {
            tracing::error!(error = %message, "internal error");
        }
        Status::new(code, cap(message))
    }
}

impl From<Error> for Status {
    fn from(e: Error) -> Self {
        e.into_status()
    }
}

fn cap(mut message: String) -> String {
    if message.chars().count() > MAX_MESSAGE_CHARS {
        message = message.chars().take(MAX_MESSAGE_CHARS - 1).collect();
        message.push('…');
    }
    message
}

fn catalog_code(e: &lakehouse_catalog::Error) -> Code {
    use lakehouse_catalog::Error as C;
    match e {
        C::InvalidName { .. } | C::SchemaMismatch { .. } | C::InvalidData { .. } => {
            Code::InvalidArgument
        }
        C::TableNotFound(_)
        | C::SchemaNotFound(_)
        | C::VersionNotFound { .. }
        | C::NotKept { .. } => Code::NotFound,
        C::TableExists(_) | C::SchemaExists(_) | C::DuplicateKey { .. } => Code::AlreadyExists,
        C::SchemaNotDroppable { .. } | C::ReadOnly(_) => Code::FailedPrecondition,
        C::Conflict { .. } | C::ConcurrentChange { .. } => Code::Aborted,
        C::InvalidStorage { .. } => Code::FailedPrecondition,
        C::Storage(object_store::Error::NotFound { .. }) => Code::Internal,
        C::Storage(_) => Code::Unavailable,
        C::InvalidManifest { .. } => Code::DataLoss,
        C::Arrow(e) => arrow_code(e),
        C::Parquet(_) => Code::Internal,
    }
}

fn vector_code(e: &lakehouse_vector::Error) -> Code {
    use lakehouse_vector::Error as V;
    match e {
        V::Unavailable { .. } => Code::Unavailable,
        V::Refused { .. } | V::DimensionMismatch { .. } | V::Config(_) | V::Document { .. } => {
            Code::InvalidArgument
        }
        V::InvalidResponse { .. } => Code::Unavailable,
        V::Lance(lance::Error::InvalidInput { .. } | lance::Error::SchemaMismatch { .. }) => {
            Code::InvalidArgument
        }
        V::Lance(lance::Error::DatasetAlreadyExists { .. }) => Code::AlreadyExists,
        V::Lance(_) => Code::Internal,
    }
}

fn arrow_code(e: &ArrowError) -> Code {
    match e {
        ArrowError::DivideByZero
        | ArrowError::CastError(_)
        | ArrowError::ParseError(_)
        | ArrowError::InvalidArgumentError(_)
        | ArrowError::ComputeError(_)
        | ArrowError::ArithmeticOverflow(_)
        | ArrowError::SchemaError(_)
        | ArrowError::JsonError(_)
        | ArrowError::CsvError(_) => Code::InvalidArgument,
        ArrowError::MemoryError(_) => Code::ResourceExhausted,
        ArrowError::ExternalError(inner) => external_code(inner.as_ref()).unwrap_or(Code::Internal),
        _ => Code::Internal,
    }
}

/// The root cause of a DataFusion error: [`DataFusionError::find_root`], then through
/// `External` and Arrow wrappers.
fn datafusion_root(e: &DataFusionError) -> &DataFusionError {
    e.find_root()
}

fn external_code(e: &(dyn std::error::Error + Send + Sync + 'static)) -> Option<Code> {
    if let Some(c) = e.downcast_ref::<lakehouse_catalog::Error>() {
        return Some(catalog_code(c));
    }
    if let Some(v) = e.downcast_ref::<lakehouse_vector::Error>() {
        return Some(vector_code(v));
    }
    if let Some(s) = e.downcast_ref::<Error>() {
        return Some(s.code());
    }
    if let Some(d) = e.downcast_ref::<DataFusionError>() {
        return Some(datafusion_code(d));
    }
    if let Some(s) = e.downcast_ref::<Status>() {
        return Some(s.code());
    }
    None
}

fn datafusion_code(e: &DataFusionError) -> Code {
    match datafusion_root(e) {
        DataFusionError::SQL(..)
        | DataFusionError::Plan(_)
        | DataFusionError::SchemaError(..)
        | DataFusionError::NotImplemented(_)
        | DataFusionError::Configuration(_) => Code::InvalidArgument,
        DataFusionError::ResourcesExhausted(_) => Code::ResourceExhausted,
        DataFusionError::ObjectStore(_) => Code::Unavailable,
        DataFusionError::ArrowError(a, _) => arrow_code(a),
        DataFusionError::External(inner) => external_code(inner.as_ref()).unwrap_or(Code::Internal),
        DataFusionError::ExecutionJoin(_) => Code::Cancelled,
        _ => Code::Internal,
    }
}

fn datafusion_message(e: &DataFusionError) -> String {
    match datafusion_root(e) {
        // The catalog's own message ("table public.x not found") is what the user needs.
        DataFusionError::External(inner) => inner.to_string(),
        root => root.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lakehouse_catalog::TableRef;

    #[test]
    fn codes_follow_the_cause() {
        let missing =
            lakehouse_catalog::Error::TableNotFound(TableRef::new("public", "x").unwrap());
        let wrapped = DataFusionError::Context(
            "planning".into(),
            Box::new(DataFusionError::External(Box::new(missing))),
        );
        let status = Error::from(wrapped).into_status();
        assert_eq!(status.code(), Code::NotFound);
        assert_eq!(status.message(), "table public.x not found");

        let bad_sql = DataFusionError::Plan("no such column".into());
        assert_eq!(
            Error::from(bad_sql).into_status().code(),
            Code::InvalidArgument
        );

        let long = Error::invalid("x".repeat(5000)).into_status();
        assert_eq!(long.message().chars().count(), MAX_MESSAGE_CHARS);
    }
}
