//! Test fixture: a real Lakehouse server on `127.0.0.1:0` over a temporary storage directory,
//! and real Flight SQL clients connected to it.
//!
//! ```ignore
//! let server = TestServer::start().await;
//! let mut client = server.client().await;
//! ```

pub mod models;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::RecordBatch;
use arrow_flight::error::FlightError;
use arrow_flight::sql::client::FlightSqlServiceClient;
use arrow_flight::{FlightInfo, Ticket};
use futures::TryStreamExt;
use lakehouse_server::{ServeConfig, Server};
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::{Channel, Endpoint};

/// Longest any fixture step (start, connect, stop) may take.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// A running server; stopped when dropped.
pub struct TestServer {
    addr: SocketAddr,
    admission: Arc<lakehouse_server::query::limits::Admission>,
    storage: Arc<TempDir>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<lakehouse_server::Result<()>>>,
}

impl TestServer {
    /// A server over fresh, empty storage with default settings.
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// A server over fresh storage, with `configure` applied to the default config.
    pub async fn start_with(configure: impl FnOnce(&mut ServeConfig)) -> Self {
        let storage = Arc::new(tempfile::tempdir().expect("temp dir"));
        Self::start_on(storage, configure).await
    }

    /// A server over existing `storage` (to restart on the same data).
    pub async fn start_on(storage: Arc<TempDir>, configure: impl FnOnce(&mut ServeConfig)) -> Self {
        let mut config = ServeConfig {
            storage: storage.path().to_str().expect("utf-8 path").to_string(),
            listen: "127.0.0.1:0".to_string(),
            ..ServeConfig::default()
        };
        configure(&mut config);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let server = tokio::time::timeout(TIMEOUT, Server::new(&config))
            .await
            .expect("server start timed out")
            .expect("server start failed");
        let admission = server.admission();
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(server.serve(listener, async {
            let _ = rx.await;
        }));
        Self {
            addr,
            admission,
            storage,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    /// Queries holding a query slot now (running or streaming).
    pub fn running_queries(&self) -> usize {
        self.admission.running()
    }

    /// Waits (up to [`TIMEOUT`]) until no query holds a slot; panics otherwise.
    pub async fn wait_idle(&self) {
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        while self.running_queries() > 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} queries still running",
                self.running_queries()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `grpc://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("grpc://{}", self.addr)
    }

    /// The storage directory (shared, so a restarted server can use it).
    pub fn storage(&self) -> Arc<TempDir> {
        Arc::clone(&self.storage)
    }

    /// A channel to the server.
    pub async fn channel(&self) -> Channel {
        let endpoint = Endpoint::from_shared(format!("http://{}", self.addr)).expect("uri");
        tokio::time::timeout(TIMEOUT, endpoint.connect())
            .await
            .expect("connect timed out")
            .expect("connect failed")
    }

    /// arrow-flight's Flight SQL client, connected.
    pub async fn client(&self) -> FlightSqlServiceClient<Channel> {
        FlightSqlServiceClient::new(self.channel().await)
    }

    /// Lakehouse's own Rust client, connected.
    pub async fn lakehouse_client(&self) -> lakehouse_client::Client {
        lakehouse_client::Client::from_channel(self.channel().await)
    }

    /// Stops the server and waits until it has shut down.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(TIMEOUT, task)
                .await
                .expect("shutdown timed out")
                .expect("server task panicked")
                .expect("server failed");
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Fetches every endpoint of `info` and collects the batches.
pub async fn fetch(
    client: &mut FlightSqlServiceClient<Channel>,
    info: FlightInfo,
) -> Result<Vec<RecordBatch>, FlightError> {
    let mut batches = Vec::new();
    for endpoint in info.endpoint {
        let ticket: Ticket = endpoint.ticket.expect("endpoint has a ticket");
        let stream = client.do_get(ticket).await?;
        batches.extend(stream.try_collect::<Vec<_>>().await?);
    }
    Ok(batches)
}

/// Fetches the first endpoint of `info`; returns the stream's schema (present even when there
/// are no rows) and its batches.
pub async fn fetch_with_schema(
    client: &mut FlightSqlServiceClient<Channel>,
    info: FlightInfo,
) -> Result<(arrow::datatypes::SchemaRef, Vec<RecordBatch>), FlightError> {
    let ticket = info.endpoint[0]
        .ticket
        .clone()
        .expect("endpoint has a ticket");
    let mut stream = client.do_get(ticket).await?;
    let mut batches = Vec::new();
    while let Some(batch) = stream.try_next().await? {
        batches.push(batch);
    }
    let schema = stream.schema().cloned().expect("stream has a schema");
    Ok((schema, batches))
}

/// Runs `sql` as a CommandStatementQuery and collects the result.
pub async fn query(
    client: &mut FlightSqlServiceClient<Channel>,
    sql: &str,
) -> Result<Vec<RecordBatch>, FlightError> {
    let info = client.execute(sql.to_string(), None).await?;
    fetch(client, info).await
}

/// Runs `sql` as a CommandStatementUpdate on a new connection and answers the affected rows.
pub async fn update(server: &TestServer, sql: &str) -> Result<i64, FlightError> {
    server
        .client()
        .await
        .execute_update(sql.to_string(), None)
        .await
}

/// Runs the query `sql`, which must answer one integer, and answers it.
pub async fn count(server: &TestServer, sql: &str) -> i64 {
    let mut client = server.client().await;
    scalar_i64(&query(&mut client, sql).await.unwrap())
}

/// The gRPC code of a failed call (panics when the error carries no status).
pub fn code(error: &FlightError) -> tonic::Code {
    match error {
        FlightError::Tonic(status) => status.code(),
        other => panic!("expected a gRPC status, got {other:?}"),
    }
}

/// The single Int64 (or UInt64) value of a one-row, one-column result.
pub fn scalar_i64(batches: &[RecordBatch]) -> i64 {
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{Int64Type, UInt64Type};
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    assert_eq!(rows, 1, "expected one row, got {rows}");
    let batch = batches.iter().find(|b| b.num_rows() == 1).expect("row");
    let column = batch.column(0);
    assert!(!column.is_null(0));
    match column.data_type() {
        arrow::datatypes::DataType::Int64 => column.as_primitive::<Int64Type>().value(0),
        arrow::datatypes::DataType::UInt64 => column.as_primitive::<UInt64Type>().value(0) as i64,
        other => panic!("expected an integer, got {other}"),
    }
}

/// The values of the Int64 column `name` of every batch, in order. Panics when a batch lacks
/// the column or it is not Int64.
pub fn column_i64(batches: &[RecordBatch], name: &str) -> Vec<i64> {
    use arrow::array::AsArray;
    batches
        .iter()
        .flat_map(|b| {
            b.column_by_name(name)
                .unwrap_or_else(|| panic!("no column {name}"))
                .as_primitive::<arrow::datatypes::Int64Type>()
                .values()
                .to_vec()
        })
        .collect()
}

/// The values of the Utf8 column `name` of every batch, in order (`None` for NULL). Panics
/// when a batch lacks the column or it is not Utf8.
pub fn column_str(batches: &[RecordBatch], name: &str) -> Vec<Option<String>> {
    use arrow::array::{Array, AsArray};
    batches
        .iter()
        .flat_map(|b| {
            let column = b
                .column_by_name(name)
                .unwrap_or_else(|| panic!("no column {name}"))
                .as_string::<i32>();
            (0..column.len())
                .map(|i| (!column.is_null(i)).then(|| column.value(i).to_string()))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// A `CommandStatementIngest` into `public.<table>`: `create` fails when the table exists,
/// otherwise it appends to an existing one; `options` are the command's ingest options (e.g.
/// `lakehouse.table_format = lance`).
pub fn ingest_command(
    table: &str,
    create: bool,
    options: &[(&str, &str)],
) -> arrow_flight::sql::CommandStatementIngest {
    use arrow_flight::sql::{TableDefinitionOptions, TableExistsOption, TableNotExistOption};
    let (not_exist, exists) = if create {
        (TableNotExistOption::Create, TableExistsOption::Fail)
    } else {
        (TableNotExistOption::Fail, TableExistsOption::Append)
    };
    arrow_flight::sql::CommandStatementIngest {
        table: table.into(),
        table_definition_options: Some(TableDefinitionOptions {
            if_not_exist: not_exist.into(),
            if_exists: exists.into(),
        }),
        options: options
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Default::default()
    }
}

/// Opens the catalog on `dir` directly, as another process (a CLI, a second server) would.
pub async fn open_catalog(dir: &TempDir) -> lakehouse_catalog::Catalog {
    let location = lakehouse_catalog::StorageLocation::open(dir.path().to_str().expect("utf-8"))
        .expect("storage");
    lakehouse_catalog::Catalog::open(location)
        .await
        .expect("catalog")
}

/// A batch `id: Int64 (not null), name: Utf8` with ids `ids` and names `"n{id}"`.
pub fn people(ids: std::ops::Range<i64>) -> RecordBatch {
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, true),
    ]));
    let names: Vec<String> = ids.clone().map(|i| format!("n{i}")).collect();
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from_iter_values(ids)),
            Arc::new(StringArray::from(names)),
        ],
    )
    .expect("batch")
}

/// Writes `batch` to `public.<table>` through `catalog` with `mode`; returns the new version.
pub async fn write(
    catalog: &lakehouse_catalog::Catalog,
    table: &str,
    mode: lakehouse_catalog::WriteMode,
    batch: RecordBatch,
) -> lakehouse_catalog::Result<u64> {
    let table = lakehouse_catalog::TableRef::new("public", table)?;
    let schema = batch.schema();
    let manifest = catalog
        .write_stream(
            &table,
            mode,
            &schema,
            None,
            futures::stream::iter([Ok(batch)]),
        )
        .await?;
    Ok(manifest.version.0)
}

/// A self-signed certificate for `localhost` and 127.0.0.1 (rcgen), written as PEM files into
/// `dir`: returns (certificate path, key path, certificate PEM).
pub fn self_signed(
    dir: &std::path::Path,
    name: &str,
) -> (std::path::PathBuf, std::path::PathBuf, String) {
    let key = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
        .expect("certificate");
    let cert_pem = key.cert.pem();
    let cert = dir.join(format!("{name}.crt"));
    let private = dir.join(format!("{name}.key"));
    std::fs::write(&cert, &cert_pem).expect("write cert");
    std::fs::write(&private, key.signing_key.serialize_pem()).expect("write key");
    (cert, private, cert_pem)
}

impl TestServer {
    /// The server's port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// A TLS client for `localhost`, trusting `ca_pem`, optionally presenting `identity`
    /// (certificate PEM, key PEM) for mutual TLS.
    pub async fn tls_client(
        &self,
        ca_pem: &str,
        identity: Option<(String, String)>,
    ) -> Result<FlightSqlServiceClient<Channel>, tonic::transport::Error> {
        use tonic::transport::{Certificate, ClientTlsConfig, Identity};
        lakehouse_client::install_crypto_provider();
        let mut tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(ca_pem))
            .domain_name("localhost");
        if let Some((cert, key)) = identity {
            tls = tls.identity(Identity::from_pem(cert, key));
        }
        let channel = Endpoint::from_shared(format!("https://localhost:{}", self.addr.port()))
            .expect("uri")
            .tls_config(tls)?
            .connect()
            .await?;
        Ok(FlightSqlServiceClient::new(channel))
    }
}

/// The security modes the client-compatibility tests run in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// No TLS, no auth.
    Plain,
    /// TLS with a self-signed certificate (rcgen), no auth.
    Tls,
    /// `--auth basic`, no TLS.
    Auth,
    /// `--auth basic` over TLS.
    AuthTls,
}

impl Security {
    /// Every mode.
    pub const ALL: [Security; 4] = [
        Security::Plain,
        Security::Tls,
        Security::Auth,
        Security::AuthTls,
    ];

    fn tls(self) -> bool {
        matches!(self, Security::Tls | Security::AuthTls)
    }

    fn auth(self) -> bool {
        matches!(self, Security::Auth | Security::AuthTls)
    }
}

/// User and password of the `write` user of [`SecureServer`]s with auth.
pub const LOGIN: (&str, &str) = ("dbeaver", "s3cret-pw");

/// A server in one [`Security`] mode.
pub struct SecureServer {
    /// The server.
    pub server: TestServer,
    /// The mode.
    pub security: Security,
    /// The server certificate (PEM) with TLS.
    pub cert_pem: Option<String>,
    _dir: TempDir,
}

impl SecureServer {
    /// Starts a server in `security` mode, with `configure` applied.
    pub async fn start(security: Security, configure: impl FnOnce(&mut ServeConfig)) -> Self {
        use lakehouse_server::auth::{AuthConfig, AuthMode, Role, UserConfig, hash_password};
        let dir = tempfile::tempdir().expect("temp dir");
        let tls = security.tls().then(|| self_signed(dir.path(), "server"));
        let cert_pem = tls.as_ref().map(|(_, _, pem)| pem.clone());
        let server = TestServer::start_with(|c| {
            if let Some((cert, key, _)) = &tls {
                c.tls_cert = Some(cert.clone());
                c.tls_key = Some(key.clone());
            }
            if security.auth() {
                c.auth = AuthConfig {
                    mode: AuthMode::Basic,
                    users: vec![UserConfig {
                        name: LOGIN.0.into(),
                        password_hash: hash_password(LOGIN.1).expect("hash"),
                        role: Role::Write,
                    }],
                    ..AuthConfig::default()
                };
            }
            configure(c);
        })
        .await;
        Self {
            server,
            security,
            cert_pem,
            _dir: dir,
        }
    }

    /// An arrow-flight Flight SQL client over TLS when the server has it, not logged in.
    pub async fn connect(&self) -> FlightSqlServiceClient<Channel> {
        match &self.cert_pem {
            Some(pem) => self
                .server
                .tls_client(pem, None)
                .await
                .expect("tls connect"),
            None => self.server.client().await,
        }
    }

    /// [`SecureServer::connect`], then the Basic handshake as [`LOGIN`] (any server accepts
    /// it; with auth, the client then sends the bearer token on every call).
    pub async fn client(&self) -> FlightSqlServiceClient<Channel> {
        let mut client = self.connect().await;
        client.handshake(LOGIN.0, LOGIN.1).await.expect("handshake");
        client
    }

    /// Lakehouse's Rust client with TLS and login as needed.
    pub async fn lakehouse_client(&self) -> lakehouse_client::Client {
        let (url, tls_ca_pem) = match &self.cert_pem {
            Some(pem) => (
                format!("grpc+tls://localhost:{}", self.server.port()),
                Some(pem.clone().into_bytes()),
            ),
            None => (self.server.url(), None),
        };
        let options = lakehouse_client::ConnectOptions {
            tls_ca_pem,
            login: self
                .security
                .auth()
                .then(|| (LOGIN.0.to_string(), LOGIN.1.to_string())),
            ..Default::default()
        };
        lakehouse_client::Client::connect_with(&url, options)
            .await
            .expect("connect")
    }
}

/// A batch of `id` Int64, `body` Utf8 and `embedding` FixedSizeList<Float32> rows.
pub fn notes_batch(ids: &[i64], bodies: &[String], vectors: &[Vec<f32>]) -> RecordBatch {
    let dim = vectors[0].len() as i32;
    let values: Vec<f32> = vectors.iter().flatten().copied().collect();
    let item = Arc::new(arrow::datatypes::Field::new(
        "item",
        arrow::datatypes::DataType::Float32,
        true,
    ));
    let embedding = arrow::array::FixedSizeListArray::new(
        item,
        dim,
        Arc::new(arrow::array::Float32Array::from(values)),
        None,
    );
    RecordBatch::try_from_iter(vec![
        (
            "id",
            Arc::new(arrow::array::Int64Array::from(ids.to_vec())) as arrow::array::ArrayRef,
        ),
        (
            "body",
            Arc::new(arrow::array::StringArray::from(bodies.to_vec())),
        ),
        ("embedding", Arc::new(embedding)),
    ])
    .unwrap()
}

/// Creates the Lance table `table` from `batch` by bulk ingest, its vectors recorded as embedded
/// with `model`.
pub async fn ingest_lance(server: &TestServer, table: &str, batch: RecordBatch, model: &str) {
    let options = [
        ("lakehouse.table_format", "lance"),
        ("lakehouse.vector.model", model),
    ];
    let mut client = server.client().await;
    client
        .execute_ingest(
            ingest_command(table, true, &options),
            futures::stream::iter([Ok(batch)]),
        )
        .await
        .unwrap();
}

/// The Lance table `notes` (`id` 1..=n, `body`, MiniLM `embedding` recorded as model
/// `minilm`) holding `texts`.
pub async fn ingest_notes(server: &TestServer, texts: &[&str]) {
    let bodies: Vec<String> = texts.iter().map(|t| t.to_string()).collect();
    let ids: Vec<i64> = (1..=texts.len() as i64).collect();
    let vectors = models::minilm_vectors(&bodies).await;
    ingest_lance(
        server,
        "notes",
        notes_batch(&ids, &bodies, &vectors),
        "minilm",
    )
    .await;
}
