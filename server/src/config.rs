//! `lakehouse serve` configuration: flags, `LAKEHOUSE_*` environment variables and a TOML file,
//! merged by figment with precedence flags > environment > file > defaults.
//!
//! clap reads flags and their environment variables into [`ServeArgs`] (all optional, so an
//! absent flag never hides a file value); figment layers them over the file over
//! [`ServeConfig::default`]. The file's keys are [`ServeConfig`]'s field names
//! (`deploy/lakehouse.toml` shows every one).

use std::path::PathBuf;

use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

use crate::auth::{AuthConfig, AuthMode};
use crate::error::{Error, Result};
use crate::query::QueryOptions;
use crate::sample::Sample;

/// Default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:50051";
/// Default storage root.
pub const DEFAULT_STORAGE: &str = "./lakehouse-data";

/// The resolved configuration of `lakehouse serve`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServeConfig {
    /// Address to listen on, `HOST:PORT` (default [`DEFAULT_LISTEN`]).
    pub listen: String,
    /// Storage root: a local directory, `file://` URL or `s3://bucket/prefix`
    /// (default [`DEFAULT_STORAGE`]); see `lakehouse_catalog::storage`.
    pub storage: String,
    /// Sample data to create at start when absent, e.g. `tpch:0.1`.
    pub sample: Option<Sample>,
    /// Seconds in-flight requests may take to finish after SIGINT/SIGTERM before they are
    /// cancelled (default 30).
    pub shutdown_timeout_secs: u64,
    /// Remove data files left by failed commits when starting (default false; see
    /// `lakehouse cleanup`).
    pub cleanup_on_start: bool,
    /// Only unreferenced files older than this many seconds are removed (default 3600), so
    /// commits in progress keep their files.
    pub cleanup_grace_secs: u64,
    /// PEM certificate chain for TLS; with `tls_key`, the server speaks TLS only.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// PEM CA certificate(s): when set, clients must present a certificate it signed (mTLS).
    pub tls_client_ca: Option<PathBuf>,
    /// Authentication: mode, users, tokens (`[auth]`, see [`crate::auth`]).
    pub auth: AuthConfig,
    /// Query engine settings.
    pub query: QueryOptions,
    /// Embedding models (`[embedding.models.NAME]`, see `lakehouse_vector::embedding`).
    pub embedding: lakehouse_vector::embedding::EmbeddingConfig,
    /// Chat models and the `ai()` row cap (`[chat]`, see `lakehouse_vector::chat`).
    pub chat: lakehouse_vector::chat::ChatConfig,
    /// Compaction and vacuum (`[maintenance]`, see
    /// [`crate::query::statement::maintenance::MaintenanceOptions`]).
    pub maintenance: crate::query::statement::maintenance::MaintenanceOptions,
    /// The hot cache (`[cache]`, see [`crate::query::cache::CacheOptions`]).
    pub cache: crate::query::cache::CacheOptions,
    /// Distributed execution (`[distributed]`, see [`crate::distributed`]).
    pub distributed: crate::distributed::DistributedOptions,
    /// Metrics and health endpoints (`[observability]`, see [`crate::observability`]).
    pub observability: crate::observability::ObservabilityOptions,
    /// The audit log (`[audit]`, see [`crate::observability::audit`]).
    pub audit: crate::observability::audit::AuditOptions,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN.to_string(),
            storage: DEFAULT_STORAGE.to_string(),
            sample: None,
            shutdown_timeout_secs: 30,
            cleanup_on_start: false,
            cleanup_grace_secs: 3600,
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
            auth: AuthConfig::default(),
            query: QueryOptions::default(),
            embedding: Default::default(),
            chat: Default::default(),
            maintenance: Default::default(),
            cache: Default::default(),
            distributed: Default::default(),
            observability: Default::default(),
            audit: Default::default(),
        }
    }
}

/// Flags of `lakehouse serve`. Each flag can also be set by the environment variable named in
/// `--help`; unset ones fall through to the config file, then to the defaults.
#[derive(Debug, Clone, Default, clap::Args, Serialize)]
pub struct ServeArgs {
    /// TOML configuration file (keys as in deploy/lakehouse.toml).
    #[arg(long, env = "LAKEHOUSE_CONFIG", value_name = "FILE")]
    #[serde(skip)]
    pub config: Option<PathBuf>,

    /// Address to listen on [default: 127.0.0.1:50051].
    #[arg(long, env = "LAKEHOUSE_LISTEN", value_name = "HOST:PORT")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,

    /// Where the catalog lives.
    #[command(flatten)]
    #[serde(flatten)]
    pub storage: StorageArgs,

    /// Create sample data at start when absent: `tpch:SCALE`, e.g. `tpch:0.1` (8 TPC-H tables,
    /// ~100 MB of rows at 0.1; generated in-process).
    #[arg(long, env = "LAKEHOUSE_SAMPLE", value_name = "tpch:SCALE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sample: Option<Sample>,

    /// Seconds in-flight requests may take to finish after SIGINT/SIGTERM [default: 30].
    #[arg(long, env = "LAKEHOUSE_SHUTDOWN_TIMEOUT_SECS", value_name = "SECS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shutdown_timeout_secs: Option<u64>,

    /// PEM certificate (chain) for TLS; requires --tls-key. Clients then connect with
    /// grpc+tls:// (JDBC: useEncryption=true).
    #[arg(long, env = "LAKEHOUSE_TLS_CERT", value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key for --tls-cert.
    #[arg(long, env = "LAKEHOUSE_TLS_KEY", value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,

    /// PEM CA certificate(s) that client certificates must chain to (mutual TLS).
    #[arg(long, env = "LAKEHOUSE_TLS_CLIENT_CA", value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_client_ca: Option<PathBuf>,

    /// Authentication flags.
    #[command(flatten)]
    pub auth: AuthArgs,

    /// Query limit flags.
    #[command(flatten)]
    pub query: QueryArgs,

    /// Maintenance flags.
    #[command(flatten)]
    pub maintenance: MaintenanceArgs,

    /// Distributed-execution flags.
    #[command(flatten)]
    pub distributed: DistributedArgs,

    /// Observability flags.
    #[command(flatten)]
    pub observability: ObservabilityArgs,

    /// Audit-log flags.
    #[command(flatten)]
    pub audit: AuditArgs,

    /// Remove data files left by failed commits when starting [default: false].
    #[arg(long, env = "LAKEHOUSE_CLEANUP_ON_START", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cleanup_on_start: Option<bool>,
}

/// Flags of the `[auth]` section.
#[derive(Debug, Clone, Default, clap::Args, Serialize)]
pub struct AuthArgs {
    /// Authentication: `none`, or `basic` (users and password hashes from the config file's
    /// [[auth.users]]; add one with `lakehouse user add`) [default: none].
    #[arg(long = "auth", env = "LAKEHOUSE_AUTH", value_name = "MODE", value_enum)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<AuthMode>,

    /// Allow --auth none on a non-loopback listen address (anyone who can reach the port may
    /// read and write everything).
    #[arg(long, env = "LAKEHOUSE_INSECURE_NO_AUTH", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub insecure_no_auth: Option<bool>,

    /// Seconds a login token stays valid [default: 43200, 12 hours].
    #[arg(long, env = "LAKEHOUSE_TOKEN_TTL_SECS", value_name = "SECS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_ttl_secs: Option<u64>,
}

/// Flags of the `[query]` section: limits every query runs under.
#[derive(Debug, Clone, Default, clap::Args, Serialize)]
pub struct QueryArgs {
    /// Queries running at once; more wait for a slot [default: 16].
    #[arg(long, env = "LAKEHOUSE_MAX_CONCURRENT_QUERIES", value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_concurrent_queries: Option<usize>,

    /// Seconds a query waits for a slot before RESOURCE_EXHAUSTED [default: 30].
    #[arg(long, env = "LAKEHOUSE_QUEUE_TIMEOUT_SECS", value_name = "SECS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_timeout_secs: Option<f64>,

    /// Seconds a query may run before it is stopped with DEADLINE_EXCEEDED [default: no
    /// limit].
    #[arg(
        long = "query-timeout-secs",
        env = "LAKEHOUSE_QUERY_TIMEOUT_SECS",
        value_name = "SECS"
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<f64>,

    /// Largest result a query may send, in bytes; larger ones are stopped with
    /// RESOURCE_EXHAUSTED [default: no limit].
    #[arg(long, env = "LAKEHOUSE_MAX_RESULT_BYTES", value_name = "BYTES")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_result_bytes: Option<u64>,

    /// Memory all queries together may use, in bytes; sorts, aggregations and joins spill to
    /// disk beyond it where DataFusion can [default: no limit].
    #[arg(long, env = "LAKEHOUSE_MEMORY_LIMIT_BYTES", value_name = "BYTES")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_limit_bytes: Option<u64>,
}

/// Flags of the `[distributed]` section.
#[derive(Debug, Clone, Default, clap::Args, Serialize)]
pub struct DistributedArgs {
    /// Workers to distribute queries to, comma-separated `grpc://HOST:PORT` URLs (each a
    /// `lakehouse worker`, or a `lakehouse serve`); none: every query runs here [default: none].
    #[arg(
        long,
        env = "LAKEHOUSE_WORKERS",
        value_name = "URL,...",
        value_delimiter = ','
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workers: Option<Vec<String>>,

    /// A file of more worker URLs (one per line or comma-separated; `#` starts a comment),
    /// re-read every 2 s when it changes, for orchestrators that add and remove workers
    /// [default: none].
    #[arg(long, env = "LAKEHOUSE_WORKERS_FILE", value_name = "PATH")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workers_file: Option<std::path::PathBuf>,

    /// The secret every call to a worker must carry; the same on the coordinator and its
    /// workers. Prefer the environment variable or the config file over the flag (a flag shows
    /// in the process list) [default: none: no worker service, no workers].
    #[arg(
        long = "distributed-secret",
        env = "LAKEHOUSE_DISTRIBUTED_SECRET",
        value_name = "SECRET",
        hide_env_values = true
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

/// Flags of the `[observability]` section.
#[derive(Debug, Clone, Default, clap::Args, Serialize)]
pub struct ObservabilityArgs {
    /// Serve Prometheus metrics at /metrics, and /healthz and /readyz, over HTTP on this
    /// address (a bare PORT binds 127.0.0.1) [default: off].
    #[arg(long, env = "LAKEHOUSE_METRICS_LISTEN", value_name = "HOST:PORT")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_listen: Option<String>,

    /// Export trace spans over OTLP/gRPC to this collector, e.g. http://localhost:4317 (the
    /// standard OTEL_EXPORTER_OTLP_ENDPOINT also works; OTEL_SERVICE_NAME names the service,
    /// default lakehouse) [default: off].
    #[arg(long, value_name = "URL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub otlp_endpoint: Option<String>,
}

/// Flags of the `[audit]` section.
#[derive(Debug, Clone, Default, clap::Args, Serialize)]
pub struct AuditArgs {
    /// Write one JSON line per request to this file (rotated by size), or to segments under
    /// this object-store prefix (s3://bucket/prefix, file:///dir); read back with
    /// `SELECT * FROM audit_log()` [default: off].
    #[arg(
        long = "audit-path",
        env = "LAKEHOUSE_AUDIT_PATH",
        value_name = "FILE|URL"
    )]
    #[serde(rename = "path", skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

/// Flags of the `[maintenance]` section.
#[derive(Debug, Clone, Default, clap::Args, Serialize)]
pub struct MaintenanceArgs {
    /// Compact tables automatically in the background when they have many small files or
    /// many deleted rows [default: true].
    #[arg(long, env = "LAKEHOUSE_AUTO_COMPACT", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auto_compact: Option<bool>,
}

/// The storage flag, shared by every command that opens storage directly.
#[derive(Debug, Clone, Default, clap::Args, Serialize)]
pub struct StorageArgs {
    /// Storage root: a directory, file:///dir, or s3://bucket/prefix (S3 settings from the
    /// standard AWS_* variables: AWS_ENDPOINT, AWS_REGION, AWS_ACCESS_KEY_ID,
    /// AWS_SECRET_ACCESS_KEY, AWS_ALLOW_HTTP) [default: ./lakehouse-data].
    #[arg(long, env = "LAKEHOUSE_STORAGE", value_name = "URL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage: Option<String>,
}

impl ServeArgs {
    /// Merges flags/environment over the config file over the defaults.
    ///
    /// # Errors
    /// [`Error::Config`] when the file is missing or unreadable, has unknown keys or values of
    /// the wrong type.
    pub fn resolve(&self) -> Result<ServeConfig> {
        let mut figment = Figment::from(Serialized::defaults(ServeConfig::default()));
        if let Some(path) = &self.config {
            if !path.is_file() {
                return Err(Error::Config(format!(
                    "config file {} does not exist",
                    path.display()
                )));
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        figment
            .merge(Serialized::defaults(self))
            .extract()
            .map_err(|e| {
                let source = self
                    .config
                    .as_ref()
                    .map(|p| format!(" (config file {})", p.display()))
                    .unwrap_or_default();
                Error::Config(format!("{e}{source}"))
            })
    }
}

/// Adds (or with `replace`, updates) user `name` in the `[[auth.users]]` of the TOML config
/// `text`, keeping the rest of the file (comments included) as it is. Returns the new text and
/// the file's auth mode.
///
/// # Errors
/// A message when `text` is not valid TOML or not a valid config, `auth.users` is not an array
/// of tables, or the user exists and `replace` is false.
pub fn add_user(
    text: &str,
    name: &str,
    password_hash: &str,
    role: crate::auth::Role,
    replace: bool,
) -> std::result::Result<(String, AuthMode), String> {
    use toml_edit::{ArrayOfTables, DocumentMut, Item, Table, value};
    let mut doc: DocumentMut = text.parse().map_err(|e| format!("not valid TOML: {e}"))?;
    let auth = doc
        .entry("auth")
        .or_insert_with(|| Item::Table(Table::new()))
        .as_table_mut()
        .ok_or("`auth` is not a table")?;
    let users = auth
        .entry("users")
        .or_insert_with(|| Item::ArrayOfTables(ArrayOfTables::new()))
        .as_array_of_tables_mut()
        .ok_or("`auth.users` is not an array of tables ([[auth.users]])")?;
    let existing = users
        .iter_mut()
        .find(|t| t.get("name").and_then(|n| n.as_str()) == Some(name));
    let entry = match existing {
        Some(_) if !replace => {
            return Err(format!(
                "user '{name}' exists; use --replace to change its password and role"
            ));
        }
        Some(entry) => entry,
        None => {
            let mut table = Table::new();
            table["name"] = value(name);
            users.push(table);
            users.iter_mut().last().expect("just pushed")
        }
    };
    entry["password_hash"] = value(password_hash);
    entry["role"] = value(role.to_string());
    let updated = doc.to_string();
    let config: ServeConfig = Figment::from(Serialized::defaults(ServeConfig::default()))
        .merge(Toml::string(&updated))
        .extract()
        .map_err(|e| format!("not a valid config: {e}"))?;
    crate::auth::Authenticator::new(&AuthConfig {
        mode: AuthMode::Basic,
        ..config.auth.clone()
    })
    .map_err(|e| e.to_string())?;
    Ok((updated, config.auth.mode))
}

/// The address to bind for a `HOST:PORT` listen option: a bare `PORT` means loopback
/// (`127.0.0.1:PORT`), so that nothing is exposed unless a host is named.
pub fn listen_address(listen: &str) -> String {
    if listen.parse::<u16>().is_ok() {
        format!("127.0.0.1:{listen}")
    } else {
        listen.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precedence_is_flags_then_file_then_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(
            &file,
            "listen = \"0.0.0.0:1\"\nstorage = \"/from/file\"\n[query]\ntarget_partitions = 3\n",
        )
        .unwrap();
        let args = ServeArgs {
            config: Some(file.clone()),
            listen: Some("127.0.0.1:9".into()),
            ..Default::default()
        };
        let c = args.resolve().unwrap();
        assert_eq!(c.listen, "127.0.0.1:9");
        assert_eq!(c.storage, "/from/file");
        assert_eq!(c.query.target_partitions, Some(3));
        assert_eq!(c.shutdown_timeout_secs, 30);

        std::fs::write(&file, "lisen = \"x\"\n").unwrap();
        let err = args.resolve().unwrap_err().to_string();
        assert!(err.contains("lisen") && err.contains("c.toml"), "{err}");

        let missing = ServeArgs {
            config: Some(dir.path().join("nope.toml")),
            ..Default::default()
        };
        assert!(
            missing
                .resolve()
                .unwrap_err()
                .to_string()
                .contains("does not exist")
        );
    }

    #[test]
    fn add_user_keeps_the_file_and_refuses_duplicates() {
        use crate::auth::Role;
        let text = "# my server\nlisten = \"127.0.0.1:1\"\n\n[auth]\nmode = \"basic\" # on\n";
        let hash = crate::auth::hash_password("pw").unwrap();
        let (once, mode) = add_user(text, "ann", &hash, Role::Write, false).unwrap();
        assert_eq!(mode, AuthMode::Basic);
        assert!(
            once.starts_with("# my server") && once.contains("# on"),
            "{once}"
        );
        let (twice, _) = add_user(&once, "bob", &hash, Role::Read, false).unwrap();
        let config: ServeConfig = Figment::from(Serialized::defaults(ServeConfig::default()))
            .merge(Toml::string(&twice))
            .extract()
            .unwrap();
        let users: Vec<_> = config
            .auth
            .users
            .iter()
            .map(|u| (u.name.as_str(), u.role))
            .collect();
        assert_eq!(users, [("ann", Role::Write), ("bob", Role::Read)]);

        let e = add_user(&twice, "ann", &hash, Role::Read, false).unwrap_err();
        assert!(e.contains("exists"), "{e}");
        let (replaced, _) = add_user(&twice, "ann", &hash, Role::Read, true).unwrap();
        assert_eq!(replaced.matches("name = \"ann\"").count(), 1);
        assert!(add_user("auth = 3", "ann", &hash, Role::Read, false).is_err());
        assert!(add_user("[auth]\nbogus = 1\n", "ann", &hash, Role::Read, false).is_err());
    }
}
