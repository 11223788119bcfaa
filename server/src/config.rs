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
    /// Query engine settings.
    pub query: QueryOptions,
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
            query: QueryOptions::default(),
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

    /// Remove data files left by failed commits when starting [default: false].
    #[arg(long, env = "LAKEHOUSE_CLEANUP_ON_START", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cleanup_on_start: Option<bool>,
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
}
