//! `lakehouse mcp`: a Model Context Protocol server (<https://modelcontextprotocol.io>, the
//! official Rust SDK `rmcp`) that lets AI agents list, describe, query and search the tables
//! of a running Lakehouse server.
//!
//! It is a Flight SQL client of that server ([`lakehouse_client`]; no DataFusion, no Lance),
//! so the server's auth, roles, TLS, limits and audit log apply to every tool call. Every call
//! is read-only (the `x-lakehouse-read-only` header) except the `execute` tool, which exists
//! only with [`McpOptions::allow_writes`] — and then still needs a `write` user.
//!
//! Tools ([`tools`]): `list_tables`, `describe_table`, `query`, `vector_search`,
//! `hybrid_search`, `rag`, `nl2sql`, `execute`. Resources: each table's description at
//! `lakehouse://SCHEMA/TABLE`. Transports: stdio ([`serve_stdio`]) and Streamable HTTP
//! ([`serve_http`], at `/mcp`). Failures of the server (bad SQL, a missing table, a refused
//! login, a server that is down) come back as tool errors carrying the server's message; the
//! MCP connection stays up.

pub mod render;
pub mod sql;
pub mod tools;

use std::future::Future;
use std::sync::Arc;

use rmcp::ServiceExt;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use tokio_util::sync::CancellationToken;

pub use tools::Lakehouse;

/// Path the Streamable HTTP transport answers at.
pub const HTTP_PATH: &str = "/mcp";

/// Default most rows a `query` answers ([`McpOptions::max_rows`]).
pub const DEFAULT_MAX_ROWS: usize = 100;

/// Default most bytes of text a `query` answers ([`McpOptions::max_bytes`]).
pub const DEFAULT_MAX_BYTES: usize = 32 * 1024;

/// How the MCP server reaches Lakehouse and what it lets agents do.
#[derive(Debug, Clone)]
pub struct McpOptions {
    /// The Lakehouse server, `grpc://HOST:PORT` or `grpc+tls://HOST:PORT`.
    pub server: String,
    /// TLS trust and login ([`lakehouse_client::ConnectOptions`]); the headers are the MCP
    /// server's own.
    pub connect: lakehouse_client::ConnectOptions,
    /// Offer the `execute` tool (data-changing statements). Default false: every call is
    /// read-only.
    pub allow_writes: bool,
    /// Most rows a `query` (and the searches) answer; more are cut and `truncated` is set.
    pub max_rows: usize,
    /// Most bytes of rendered text a `query` answers.
    pub max_bytes: usize,
}

impl McpOptions {
    /// Options for `server` without login or TLS, read-only, default caps.
    pub fn new(server: impl Into<String>) -> Self {
        Self {
            server: server.into(),
            connect: lakehouse_client::ConnectOptions::default(),
            allow_writes: false,
            max_rows: DEFAULT_MAX_ROWS,
            max_bytes: DEFAULT_MAX_BYTES,
        }
    }
}

/// Errors of the MCP server itself (not of its tools, which answer tool errors).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The MCP transport failed (stdio closed mid-message, the HTTP listener failed).
    #[error("MCP transport: {0}")]
    Transport(String),
}

/// Serves MCP over stdin/stdout until the client closes stdin. Logs must go to stderr.
///
/// # Errors
/// [`Error::Transport`] when the MCP session cannot start or ends abnormally.
pub async fn serve_stdio(options: McpOptions) -> Result<(), Error> {
    let handler = Lakehouse::new(options);
    check_in_background(&handler);
    let running = handler
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|e| Error::Transport(e.to_string()))?;
    running
        .waiting()
        .await
        .map_err(|e| Error::Transport(e.to_string()))?;
    Ok(())
}

/// Serves MCP over Streamable HTTP at [`HTTP_PATH`] on `listener` until `shutdown` completes.
///
/// Requests must name a loopback host (`Host:` header) unless the listener is bound to
/// another address, whose host is then accepted too (rmcp's DNS-rebinding protection).
///
/// # Errors
/// [`Error::Transport`] when serving fails.
pub async fn serve_http(
    listener: tokio::net::TcpListener,
    options: McpOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let handler = Lakehouse::new(options);
    check_in_background(&handler);
    let cancel = CancellationToken::new();
    let mut config = StreamableHttpServerConfig::default();
    config.cancellation_token = cancel.clone();
    let local = listener
        .local_addr()
        .map_err(|e| Error::Transport(e.to_string()))?;
    if !local.ip().is_loopback() {
        config.allowed_hosts.push(local.ip().to_string());
        config.allowed_hosts.push(local.to_string());
    }
    let service = StreamableHttpService::new(
        move || Ok(handler.clone()),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    let router = axum::Router::new().nest_service(HTTP_PATH, service);
    axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            shutdown.await;
            cancel.cancel();
        })
        .await
        .map_err(|e| Error::Transport(e.to_string()))
}

/// Connects beside the MCP handshake, so that a wrong address or password shows on stderr at
/// start without holding up `initialize`.
fn check_in_background(handler: &Lakehouse) {
    let handler = handler.clone();
    tokio::spawn(async move { handler.check_connection().await });
}
