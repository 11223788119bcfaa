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
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

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
    /// A local file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The server refused the login (wrong user name or password), or the handshake failed.
    #[error("login failed: {0}")]
    Login(String),
    /// The server's answer could not be decoded.
    #[error("unexpected answer from the server: {0}")]
    Protocol(String),
    /// Arrow data from the server could not be read or formatted.
    #[error(transparent)]
    Arrow(#[from] arrow::error::ArrowError),
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

pub use lakehouse_proto::{
    DocumentOptions, FileFormat, IngestFileResult, IngestMode, PruneDocumentsResult,
};

/// What [`Client::ingest_file`] reports while it works.
#[derive(Debug, Clone, PartialEq)]
pub enum IngestProgress {
    /// Bytes of the file sent so far.
    Uploaded(u64),
    /// The server's interim report of a document ingest (`progress` set): documents in the
    /// file, those unchanged, chunks to embed and chunks embedded so far.
    Server(IngestFileResult),
}

/// How long [`Client::connect_with`] waits for the TCP (and TLS) connection before
/// [`Error::Connect`]: 10 s, not the operating system's minutes for an unreachable host.
pub const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Size of the chunks [`Client::ingest_file`] sends, in bytes.
pub const INGEST_CHUNK_BYTES: usize = 1024 * 1024;

/// Options of [`Client::ingest_file`].
#[derive(Debug, Clone, Default)]
pub struct IngestFileOptions {
    /// Target table: `name` or `schema.name`.
    pub table: String,
    /// What to do when the table exists or not (default: create, or append when it exists).
    pub mode: IngestMode,
    /// The file's format; `Unspecified` lets the server go by the file name's extension.
    pub format: FileFormat,
    /// Column type overrides, `name=Type,...` (Arrow type names); empty for none.
    pub schema_overrides: String,
    /// CSV: whether the first line is a header (server default: true).
    pub csv_has_header: Option<bool>,
    /// CSV: the field delimiter (server default: `,`, tab for `.tsv`).
    pub csv_delimiter: Option<char>,
    /// Set for a chunked, embedded document ingest into a Lance document table (`--embed`);
    /// `source` defaults to the file's name.
    pub documents: Option<DocumentOptions>,
}

/// `schema.name` split into (`schema`, `name`); a bare `name` gives an empty schema (the
/// server's default).
fn split_table(table: &str) -> (String, String) {
    match table.split_once('.') {
        Some((schema, name)) => (schema.to_string(), name.to_string()),
        None => (String::new(), table.to_string()),
    }
}

/// The client's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Converts a Lakehouse URL into the endpoint tonic dials: `grpc://HOST:PORT`,
/// `grpc+tcp://HOST:PORT` and `http://HOST:PORT` give `http://HOST:PORT`; `grpc+tls://HOST:PORT`
/// and `https://HOST:PORT` give `https://HOST:PORT` (TLS).
///
/// # Errors
/// [`Error::InvalidUrl`] for other schemes or a missing port.
pub fn endpoint_uri(url: &str) -> Result<String> {
    let invalid = |message: &str| Error::InvalidUrl {
        url: url.to_string(),
        message: message.to_string(),
    };
    let expected = "expected grpc://HOST:PORT or grpc+tls://HOST:PORT";
    let (scheme, rest) = [
        ("grpc://", "http"),
        ("grpc+tcp://", "http"),
        ("http://", "http"),
        ("grpc+tls://", "https"),
        ("https://", "https"),
    ]
    .iter()
    .find_map(|(prefix, scheme)| url.strip_prefix(prefix).map(|rest| (scheme, rest)))
    .ok_or_else(|| invalid(expected))?;
    let host_port = rest.trim_end_matches('/');
    if host_port.is_empty() || !host_port.contains(':') {
        return Err(invalid(expected));
    }
    Ok(format!("{scheme}://{host_port}"))
}

/// Selects rustls's process-wide crypto provider (ring, which tonic's `tls-ring` uses), once.
/// rustls cannot choose by itself when a process links more than one provider (Lance brings
/// aws-lc-rs); TLS servers and clients call this before building their TLS configuration.
pub fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Err means another provider was installed first, which is as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// How [`Client::connect_with`] connects: TLS trust, client certificate, login, headers.
#[derive(Debug, Clone, Default)]
pub struct ConnectOptions {
    /// PEM CA certificate(s) trusted for `grpc+tls://` URLs (a server's self-signed certificate,
    /// or a bundle such as `/etc/ssl/certs/ca-certificates.crt`). Required for TLS.
    pub tls_ca_pem: Option<Vec<u8>>,
    /// PEM client certificate and key, for servers that require mutual TLS.
    pub tls_client_identity: Option<(Vec<u8>, Vec<u8>)>,
    /// User name and password: the client logs in with the Flight handshake (HTTP Basic) and
    /// sends the bearer token it receives on every later call.
    pub login: Option<(String, String)>,
    /// Extra headers for every call, e.g. `x-lakehouse-schema` (the default schema).
    pub headers: Vec<(String, String)>,
}

/// A connection to a Lakehouse server.
#[derive(Debug, Clone)]
pub struct Client {
    sql: FlightSqlServiceClient<Channel>,
}

impl Client {
    /// Connects to `url` (see [`endpoint_uri`]) without TLS options or login.
    ///
    /// # Errors
    /// [`Error::InvalidUrl`], [`Error::Connect`].
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_with(url, ConnectOptions::default()).await
    }

    /// Connects to `url` with `options`: TLS for `grpc+tls://` URLs, then the login when one
    /// is given.
    ///
    /// # Errors
    /// [`Error::InvalidUrl`] (also for a `grpc+tls://` URL without `tls_ca_pem`),
    /// [`Error::Connect`], [`Error::Login`] when the server refuses the credentials.
    pub async fn connect_with(url: &str, options: ConnectOptions) -> Result<Self> {
        let uri = endpoint_uri(url)?;
        let invalid = |message: String| Error::InvalidUrl {
            url: url.to_string(),
            message,
        };
        // Flow-control windows grown to the measured bandwidth-delay product (as gRPC's own
        // clients do), not fixed at 64 KiB: large results arrive without waiting on updates.
        let mut endpoint = Endpoint::from_shared(uri.clone())
            .map_err(|e| invalid(e.to_string()))?
            .connect_timeout(CONNECT_TIMEOUT)
            .http2_adaptive_window(true);
        if uri.starts_with("https://") {
            install_crypto_provider();
            let ca = options.tls_ca_pem.as_ref().ok_or_else(|| {
                invalid("a grpc+tls:// URL needs a CA certificate to trust (tls_ca_pem)".into())
            })?;
            let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca));
            if let Some((cert, key)) = &options.tls_client_identity {
                tls = tls.identity(Identity::from_pem(cert, key));
            }
            endpoint = endpoint
                .tls_config(tls)
                .map_err(|e| invalid(e.to_string()))?;
        }
        let channel = endpoint.connect().await.map_err(|source| Error::Connect {
            url: url.to_string(),
            source,
        })?;
        let mut client = Self::from_channel(channel);
        for (key, value) in options.headers {
            client.sql.set_header(key, value);
        }
        if let Some((user, password)) = &options.login {
            client
                .sql
                .handshake(user, password)
                .await
                .map_err(|e| Error::Login(e.to_string()))?;
        }
        Ok(client)
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
        Ok(self.query_with_schema(sql).await?.1)
    }

    /// [`Client::query`], also answering the result's schema as the server planned it (known
    /// before any batch arrives, and also when the result has no rows).
    ///
    /// # Errors
    /// As [`Client::query`]; [`Error::Protocol`] when the FlightInfo's schema does not decode.
    pub async fn query_with_schema(
        &mut self,
        sql: &str,
    ) -> Result<(
        arrow::datatypes::SchemaRef,
        BoxStream<'static, Result<RecordBatch>>,
    )> {
        let info = self.sql.execute(sql.to_string(), None).await?;
        let schema = info
            .clone()
            .try_decode_schema()
            .map_err(|e| Error::Protocol(format!("the result's schema: {e}")))?;
        let client = self.sql.clone();
        let stream = futures::stream::iter(info.endpoint.into_iter().filter_map(|e| e.ticket))
            .then(move |ticket| {
                let mut client = client.clone();
                async move { client.do_get(ticket).await }
            })
            .map_ok(|batches| batches.map_err(Error::from))
            .map_err(Error::from)
            .try_flatten();
        Ok((std::sync::Arc::new(schema), stream.boxed()))
    }

    /// Sends the file at `path` to the server, which parses it and commits it as one new
    /// version of `options.table` (the `lakehouse.v1.CommandIngestFile` DoPut command) — or,
    /// with `options.documents`, chunks, embeds and merges its documents into a document
    /// table. The file is streamed in [`INGEST_CHUNK_BYTES`] chunks; `progress` is called with
    /// [`IngestProgress::Uploaded`] after each one, then with the server's interim reports.
    ///
    /// # Errors
    /// [`Error::Io`] when the file cannot be read; [`Error::Flight`] with the server's status
    /// (`InvalidArgument` naming file, line and column for malformed input, `AlreadyExists`,
    /// `NotFound`, ...).
    pub async fn ingest_file(
        &mut self,
        path: &std::path::Path,
        options: &IngestFileOptions,
        progress: impl FnMut(IngestProgress) + Send + 'static,
    ) -> Result<IngestFileResult> {
        use prost::Message;
        let io = |source| Error::Io {
            path: path.display().to_string(),
            source,
        };
        let file = tokio::fs::File::open(path).await.map_err(io)?;
        let size_bytes = file.metadata().await.map_err(io)?.len();
        let (schema, table) = split_table(&options.table);
        let command = lakehouse_proto::CommandIngestFile {
            table,
            schema,
            file_name: path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            format: options.format as i32,
            mode: options.mode as i32,
            schema_overrides: options.schema_overrides.clone(),
            csv_has_header: options.csv_has_header,
            csv_delimiter: options.csv_delimiter.map(String::from).unwrap_or_default(),
            size_bytes,
            documents: options.documents.clone(),
        };
        let progress = std::sync::Arc::new(std::sync::Mutex::new(progress));
        let report = std::sync::Arc::clone(&progress);
        let descriptor =
            arrow_flight::FlightDescriptor::new_cmd(lakehouse_proto::pack_any(&command));
        let first = arrow_flight::FlightData {
            flight_descriptor: Some(descriptor),
            ..Default::default()
        };
        // A read error ends the upload early; the server then reports the size mismatch and
        // the local error is returned instead.
        let read_error = std::sync::Arc::new(std::sync::Mutex::new(None));
        let seen = std::sync::Arc::clone(&read_error);
        let mut sent = 0u64;
        let chunks = tokio_util::io::ReaderStream::with_capacity(file, INGEST_CHUNK_BYTES)
            .take_while(move |chunk| {
                if let Err(e) = chunk {
                    *seen.lock().expect("lock") =
                        Some(std::io::Error::new(e.kind(), e.to_string()));
                }
                std::future::ready(chunk.is_ok())
            })
            .map(move |chunk| {
                let data_body = chunk.expect("errors end the stream");
                sent += data_body.len() as u64;
                (progress.lock().expect("lock"))(IngestProgress::Uploaded(sent));
                arrow_flight::FlightData {
                    data_body,
                    ..Default::default()
                }
            });
        let upload = futures::stream::once(async move { first }).chain(chunks);
        let outcome = async {
            let mut answers = self.sql.do_put(upload).await?;
            loop {
                let answer = answers
                    .message()
                    .await
                    .map_err(|s| Error::Flight(FlightError::Tonic(Box::new(s))))?
                    .ok_or_else(|| Error::Protocol("no result for the ingest".into()))?;
                let result = IngestFileResult::decode(answer.app_metadata.as_ref())
                    .map_err(|e| Error::Protocol(e.to_string()))?;
                if !result.progress {
                    return Ok(result);
                }
                (report.lock().expect("lock"))(IngestProgress::Server(result));
            }
        }
        .await;
        if let Some(e) = read_error.lock().expect("lock").take() {
            return Err(io(e));
        }
        outcome
    }

    /// Deletes from the document table `table` (`name` or `schema.name`) every document whose
    /// `source` is not in `keep_sources`, in one commit (the
    /// `lakehouse.v1.CommandPruneDocuments` DoPut command; `lakehouse ingest --embed --prune`).
    ///
    /// # Errors
    /// [`Error::Flight`] with the server's status (`NotFound` for a missing table,
    /// `InvalidArgument` for a table that is not a document table).
    pub async fn prune_documents(
        &mut self,
        table: &str,
        keep_sources: Vec<String>,
    ) -> Result<PruneDocumentsResult> {
        use prost::Message;
        let (schema, table) = split_table(table);
        let command = lakehouse_proto::CommandPruneDocuments {
            table,
            schema,
            keep_sources,
        };
        let descriptor =
            arrow_flight::FlightDescriptor::new_cmd(lakehouse_proto::pack_any(&command));
        let first = arrow_flight::FlightData {
            flight_descriptor: Some(descriptor),
            ..Default::default()
        };
        let mut answers = self
            .sql
            .do_put(futures::stream::once(async move { first }))
            .await?;
        let answer = answers
            .message()
            .await
            .map_err(|s| Error::Flight(FlightError::Tonic(Box::new(s))))?
            .ok_or_else(|| Error::Protocol("no result for the prune".into()))?;
        PruneDocumentsResult::decode(answer.app_metadata.as_ref())
            .map_err(|e| Error::Protocol(e.to_string()))
    }

    /// Runs a data-changing statement (CommandStatementUpdate) and returns the rows (or, for
    /// `OPTIMIZE`/`VACUUM`, files) it affected.
    ///
    /// # Errors
    /// [`Error::Flight`] with the server's status.
    pub async fn execute(&mut self, sql: &str) -> Result<i64> {
        Ok(self.sql.execute_update(sql.to_string(), None).await?)
    }

    /// Every table the server lists (GetTables), as `schema.table`, sorted.
    ///
    /// # Errors
    /// [`Error::Flight`] with the server's status.
    pub async fn tables(&mut self) -> Result<Vec<String>> {
        use arrow::array::AsArray;
        let info = self
            .sql
            .get_tables(arrow_flight::sql::CommandGetTables {
                include_schema: false,
                ..Default::default()
            })
            .await?;
        let mut names = Vec::new();
        for ticket in info.endpoint.into_iter().filter_map(|e| e.ticket) {
            let batches: Vec<RecordBatch> = self.sql.do_get(ticket).await?.try_collect().await?;
            for batch in batches {
                let (Some(schema), Some(table)) = (
                    batch.column_by_name("db_schema_name"),
                    batch.column_by_name("table_name"),
                ) else {
                    continue;
                };
                let (schema, table) = (schema.as_string::<i32>(), table.as_string::<i32>());
                for row in 0..batch.num_rows() {
                    names.push(format!("{}.{}", schema.value(row), table.value(row)));
                }
            }
        }
        names.sort();
        Ok(names)
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
        assert_eq!(endpoint_uri("grpc+tls://h:1").unwrap(), "https://h:1");
        for bad in [
            "127.0.0.1:1",
            "grpc://",
            "grpc://host",
            "grpc+tls://h",
            "ftp://h:1",
        ] {
            assert!(
                matches!(endpoint_uri(bad), Err(Error::InvalidUrl { .. })),
                "{bad}"
            );
        }
    }
}
