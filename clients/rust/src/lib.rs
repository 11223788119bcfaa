//! Rust client for Lakehouse: Flight SQL queries as streams of Arrow `RecordBatch`es.
//!
//! Built on arrow-flight's `FlightSqlServiceClient`; pulls in no DataFusion or Lance.
//!
//! ```no_run
//! # async fn demo() -> Result<(), lakehouse_client::Error> {
//! use futures::TryStreamExt;
//! let mut client = lakehouse_client::Client::connect("grpc://127.0.0.1:50051").await?;
//! let batches: Vec<_> = client.query("SELECT 1 AS one").await?.try_collect().await?;
//! # Ok(()) }
//! ```

use arrow::array::RecordBatch;
use arrow_flight::error::FlightError;
use arrow_flight::sql::client::FlightSqlServiceClient;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use tonic::transport::{Channel, Endpoint};

/// Errors of the client.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server URL is not `grpc://HOST:PORT` (or `grpc+tcp://`, `http://`).
    #[error("invalid server URL {url:?}: {message}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        message: String,
    },
    /// The connection could not be made.
    #[error("cannot connect to {url}: {source}")]
    Connect {
        /// The URL.
        url: String,
        /// The transport error.
        source: tonic::transport::Error,
    },
    /// A Flight call failed; `status()` gives the gRPC status when the server sent one.
    #[error(transparent)]
    Flight(#[from] FlightError),
}

impl Error {
    /// The gRPC status of a failed call, when the failure came from the server.
    pub fn status(&self) -> Option<&tonic::Status> {
        match self {
            Error::Flight(FlightError::Tonic(status)) => Some(status),
            _ => None,
        }
    }
}

/// The client's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Converts a Lakehouse URL (`grpc://HOST:PORT`, `grpc+tcp://HOST:PORT` or `http://HOST:PORT`)
/// into the `http://` endpoint tonic dials.
///
/// # Errors
/// [`Error::InvalidUrl`] for other schemes (TLS comes with the auth issue) or a missing port.
pub fn endpoint_uri(url: &str) -> Result<String> {
    let invalid = |message: &str| Error::InvalidUrl {
        url: url.to_string(),
        message: message.to_string(),
    };
    let rest = ["grpc://", "grpc+tcp://", "http://"]
        .iter()
        .find_map(|scheme| url.strip_prefix(scheme))
        .ok_or_else(|| invalid("expected grpc://HOST:PORT"))?;
    let host_port = rest.trim_end_matches('/');
    if host_port.is_empty() || !host_port.contains(':') {
        return Err(invalid("expected grpc://HOST:PORT"));
    }
    Ok(format!("http://{host_port}"))
}

/// A connection to a Lakehouse server.
#[derive(Debug, Clone)]
pub struct Client {
    sql: FlightSqlServiceClient<Channel>,
}

impl Client {
    /// Connects to `url` (see [`endpoint_uri`]).
    ///
    /// # Errors
    /// [`Error::InvalidUrl`], [`Error::Connect`].
    pub async fn connect(url: &str) -> Result<Self> {
        let uri = endpoint_uri(url)?;
        let channel = Endpoint::from_shared(uri)
            .map_err(|e| Error::InvalidUrl {
                url: url.to_string(),
                message: e.to_string(),
            })?
            .connect()
            .await
            .map_err(|source| Error::Connect {
                url: url.to_string(),
                source,
            })?;
        Ok(Self::from_channel(channel))
    }

    /// A client over an existing channel.
    pub fn from_channel(channel: Channel) -> Self {
        Self {
            sql: FlightSqlServiceClient::new(channel),
        }
    }

    /// The underlying Flight SQL client, for commands this crate does not wrap.
    pub fn flight_sql(&mut self) -> &mut FlightSqlServiceClient<Channel> {
        &mut self.sql
    }

    /// Runs `sql` (CommandStatementQuery) and streams the result batches of every endpoint in
    /// order. Nothing is buffered beyond what the gRPC stream holds.
    ///
    /// # Errors
    /// [`Error::Flight`] with the server's status (`InvalidArgument` for bad SQL, `NotFound` for
    /// a missing table, ...), at the call or within the stream.
    pub async fn query(&mut self, sql: &str) -> Result<BoxStream<'static, Result<RecordBatch>>> {
        let info = self.sql.execute(sql.to_string(), None).await?;
        let client = self.sql.clone();
        let stream = futures::stream::iter(info.endpoint.into_iter().filter_map(|e| e.ticket))
            .then(move |ticket| {
                let mut client = client.clone();
                async move { client.do_get(ticket).await }
            })
            .map_ok(|batches| batches.map_err(Error::from))
            .map_err(Error::from)
            .try_flatten();
        Ok(stream.boxed())
    }

    /// Runs `sql` and collects every batch.
    ///
    /// # Errors
    /// As [`Client::query`].
    pub async fn query_collect(&mut self, sql: &str) -> Result<Vec<RecordBatch>> {
        self.query(sql).await?.try_collect().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            endpoint_uri("grpc://127.0.0.1:50051").unwrap(),
            "http://127.0.0.1:50051"
        );
        assert_eq!(endpoint_uri("grpc+tcp://h:1/").unwrap(), "http://h:1");
        for bad in ["127.0.0.1:1", "grpc://", "grpc://host", "https://h:1"] {
            assert!(
                matches!(endpoint_uri(bad), Err(Error::InvalidUrl { .. })),
                "{bad}"
            );
        }
    }
}
