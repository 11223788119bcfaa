//! The `lakehouse` command line: `serve`, `cleanup`.

use std::ffi::OsString;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use lakehouse_catalog::{Catalog, StorageLocation};
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;

use crate::config::{DEFAULT_STORAGE, ServeArgs, StorageArgs};
use crate::error::{Error, Result};
use crate::server::Server;

/// Lakehouse: an Arrow Flight SQL server for SQL over Parquet datasets in object storage.
#[derive(Debug, Parser)]
#[command(name = "lakehouse", version, about, long_about = None)]
pub struct Cli {
    /// More log output: -v debug, -vv trace (RUST_LOG, when set, wins).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    /// Log format.
    #[arg(
        long,
        env = "LAKEHOUSE_LOG_FORMAT",
        value_enum,
        default_value = "text",
        global = true
    )]
    pub log_format: LogFormat,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Log line format.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the Flight SQL server (connect with ADBC, JDBC/DBeaver or pyarrow.flight).
    Serve(ServeArgs),
    /// Delete data files that no table version references (left by failed or crashed commits).
    Cleanup(CleanupArgs),
}

/// Flags of `lakehouse cleanup`.
#[derive(Debug, clap::Args)]
pub struct CleanupArgs {
    /// Where the catalog lives.
    #[command(flatten)]
    pub storage: StorageArgs,

    /// Keep unreferenced files younger than this many seconds (commits may be in progress).
    #[arg(long, default_value_t = 3600, value_name = "SECS")]
    pub grace_secs: u64,

    /// Only report what would be deleted.
    #[arg(long)]
    pub dry_run: bool,
}

fn init_logging(cli: &Cli) {
    let default = match cli.verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match cli.log_format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Parses `args` (program name first) and runs the command; the process exit code.
pub async fn run(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    init_logging(&cli);
    match execute(cli.command).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn execute(command: Command) -> Result<()> {
    match command {
        Command::Serve(args) => serve(args).await,
        Command::Cleanup(args) => cleanup(args).await,
    }
}

async fn serve(args: ServeArgs) -> Result<()> {
    let config = args.resolve()?;
    let listener = TcpListener::bind(&config.listen)
        .await
        .map_err(|source| Error::Io {
            context: format!("cannot listen on {}", config.listen),
            source,
        })?;
    let server = Server::new(&config).await?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let serving = server.serve(listener, async {
        let _ = stop_rx.await;
    });
    tokio::pin!(serving);
    tokio::select! {
        result = &mut serving => return result,
        signal = shutdown_signal() => {
            tracing::info!(signal, timeout_secs = config.shutdown_timeout_secs,
                "shutting down: no new requests; in-flight requests may finish");
            let _ = stop_tx.send(());
        }
    }
    match tokio::time::timeout(Duration::from_secs(config.shutdown_timeout_secs), serving).await {
        Ok(result) => result,
        Err(_) => {
            tracing::warn!("shutdown timeout reached: cancelling in-flight requests");
            Ok(())
        }
    }
}

async fn shutdown_signal() -> &'static str {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "SIGINT",
        _ = term.recv() => "SIGTERM",
    }
}

async fn cleanup(args: CleanupArgs) -> Result<()> {
    let storage = args.storage.storage.as_deref().unwrap_or(DEFAULT_STORAGE);
    let catalog = Catalog::open(StorageLocation::open(storage)?).await?;
    let report = catalog
        .cleanup(Duration::from_secs(args.grace_secs), args.dry_run)
        .await?;
    let verb = if args.dry_run {
        "would delete"
    } else {
        "deleted"
    };
    for path in &report.deleted {
        println!("{verb} {path}");
    }
    println!(
        "{} data files scanned; {verb} {} unreferenced ({} bytes); kept {} younger than {} s",
        report.files_scanned,
        report.deleted.len(),
        report.bytes_deleted,
        report.kept_recent,
        args.grace_secs
    );
    Ok(())
}
