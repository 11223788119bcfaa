//! The `lakehouse` command line: `serve`, `ingest`, `cleanup`, `user add`, `cert`.

use std::ffi::OsString;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use lakehouse_catalog::{Catalog, StorageLocation};
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;

use crate::auth::Role;
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
    /// Run a distributed-execution worker: executes the query stages a `lakehouse serve`
    /// coordinator (started with --workers) sends it, reading the same --storage. Takes
    /// serve's flags and config file; needs the cluster secret ([distributed] secret or
    /// LAKEHOUSE_DISTRIBUTED_SECRET); serves no Flight SQL.
    Worker(ServeArgs),
    /// Ingest CSV, NDJSON or Parquet files into a table through a running server (each file
    /// parsed on the server and committed as one new version), or, with --embed, documents
    /// (text, Markdown, HTML, text columns) chunked and embedded into a Lance document table.
    Ingest(IngestArgs),
    /// Compact tables through a running server (SQL `OPTIMIZE`): small files and files with
    /// many deleted rows are rewritten into files near [maintenance] target_file_bytes, one
    /// commit per table; readers see the old or the new version.
    Compact(CompactArgs),
    /// Remove table versions older than the retention, and the files only they reference,
    /// through a running server (SQL `VACUUM`); the current version always stays.
    Vacuum(VacuumArgs),
    /// Delete data files that no table version references (left by failed or crashed commits).
    Cleanup(CleanupArgs),
    /// Check what a cold start needs, with serve's flags and config file: the config parses,
    /// storage answers and takes conditional creates, the catalog loads, TLS files match,
    /// model servers answer with the configured dimension, workers answer, ports are free.
    /// Prints one line per check with the fix for each failure; exits 1 if any fails.
    Doctor(DoctorArgs),
    /// Serve the Model Context Protocol to AI agents (desktop and IDE assistants) over stdio,
    /// or over Streamable HTTP at /mcp with --http, as a client of a running server: tools
    /// list_tables, describe_table, query (read-only, capped), vector_search, hybrid_search,
    /// rag, nl2sql, and execute with --allow-writes; each table is a resource at
    /// lakehouse://SCHEMA/TABLE. The server's auth, roles, limits and audit log apply.
    /// See clients/mcp.md for an MCP host's configuration.
    Mcp(McpArgs),
    /// Manage the users of `--auth basic` in a config file.
    #[command(subcommand)]
    User(UserCommand),
    /// Write a self-signed TLS certificate and key for trying TLS out (serve with --tls-cert
    /// and --tls-key; clients trust the certificate itself). Use a CA-issued one in production.
    Cert(CertArgs),
}

/// Flags of `lakehouse doctor`.
#[derive(Debug, clap::Args)]
pub struct DoctorArgs {
    /// The configuration to check (serve's flags, environment and config file).
    #[command(flatten)]
    pub serve: ServeArgs,

    /// Print the checks as a JSON array of {name, ok, detail, fix} (for scripts).
    #[arg(long)]
    pub json: bool,
}

/// Flags of `lakehouse cert`.
#[derive(Debug, clap::Args)]
pub struct CertArgs {
    /// Host names and IP addresses the certificate is valid for.
    #[arg(long = "host", value_name = "NAME", default_values_t = ["localhost".to_string(), "127.0.0.1".to_string()])]
    pub hosts: Vec<String>,

    /// Directory for server.crt and server.key (created when missing).
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub out_dir: std::path::PathBuf,

    /// Days the certificate is valid.
    #[arg(long, default_value_t = 365)]
    pub days: u32,
}

/// `lakehouse user ...`.
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add a user (or, with --replace, change one) in the config file's [[auth.users]]: the
    /// password is read from the terminal (asked twice) or from the first line of standard
    /// input, and stored as an argon2id hash. The server reads users at start.
    Add(UserAddArgs),
}

/// Flags of `lakehouse user add`.
#[derive(Debug, clap::Args)]
pub struct UserAddArgs {
    /// Login name.
    pub name: String,

    /// What the user may do: `read` (queries, metadata) or `write` (also SQL writes and
    /// ingest).
    #[arg(long, value_enum, default_value = "read")]
    pub role: Role,

    /// The config file to write (created when missing).
    #[arg(long, env = "LAKEHOUSE_CONFIG", value_name = "FILE")]
    pub config: std::path::PathBuf,

    /// Replace the user's password and role when the user exists.
    #[arg(long)]
    pub replace: bool,
}

/// How a client command reaches a running server (`ingest`, `compact`, `vacuum`).
#[derive(Debug, clap::Args)]
pub struct ServerArgs {
    /// The Lakehouse server.
    #[arg(
        long,
        env = "LAKEHOUSE_SERVER",
        default_value = "grpc://127.0.0.1:50051",
        value_name = "URL"
    )]
    pub server: String,

    /// User name for a server with --auth basic; the password comes from LAKEHOUSE_PASSWORD or
    /// is asked on the terminal.
    #[arg(long, env = "LAKEHOUSE_USER")]
    pub user: Option<String>,

    /// PEM CA certificate to trust for a grpc+tls:// server (its self-signed certificate, or
    /// /etc/ssl/certs/ca-certificates.crt for a public CA).
    #[arg(long, env = "LAKEHOUSE_TLS_CA", value_name = "FILE")]
    pub tls_ca: Option<std::path::PathBuf>,
}

impl ServerArgs {
    /// Connects (asking for the password when a user is given without LAKEHOUSE_PASSWORD).
    async fn connect(&self) -> Result<lakehouse_client::Client> {
        let connect = self.connect_options(true)?;
        lakehouse_client::Client::connect_with(&self.server, connect)
            .await
            .map_err(|e| Error::Config(e.to_string()))
    }

    /// The TLS trust and login these flags give. The password comes from LAKEHOUSE_PASSWORD,
    /// else (with `ask`) from the terminal.
    ///
    /// # Errors
    /// [`Error::Io`] for an unreadable CA file; [`Error::Config`] when a user is given without
    /// LAKEHOUSE_PASSWORD and asking is not allowed.
    fn connect_options(&self, ask: bool) -> Result<lakehouse_client::ConnectOptions> {
        let mut connect = lakehouse_client::ConnectOptions::default();
        if let Some(path) = &self.tls_ca {
            connect.tls_ca_pem = Some(std::fs::read(path).map_err(|source| Error::Io {
                context: format!("cannot read {}", path.display()),
                source,
            })?);
        }
        if let Some(user) = &self.user {
            let password = match std::env::var("LAKEHOUSE_PASSWORD") {
                Ok(password) => password,
                Err(_) if ask => read_password(&format!("Password for {user}: "), false)?,
                Err(_) => {
                    return Err(Error::Config(format!(
                        "--user {user} needs its password in LAKEHOUSE_PASSWORD"
                    )));
                }
            };
            connect.login = Some((user.clone(), password));
        }
        Ok(connect)
    }
}

/// Flags of `lakehouse mcp`.
#[derive(Debug, clap::Args)]
pub struct McpArgs {
    /// The server to talk to. The password of --user must be in LAKEHOUSE_PASSWORD (stdin
    /// carries the protocol).
    #[command(flatten)]
    pub connection: ServerArgs,

    /// Serve Streamable HTTP at http://HOST:PORT/mcp instead of stdio (a bare PORT binds
    /// 127.0.0.1). Anyone who reaches it acts as --user: keep it on loopback or behind auth.
    #[arg(long, env = "LAKEHOUSE_MCP_HTTP", value_name = "HOST:PORT")]
    pub http: Option<String>,

    /// Offer the execute tool (data-changing SQL; the user also needs role write). Without it
    /// every call is read-only.
    #[arg(long, env = "LAKEHOUSE_MCP_ALLOW_WRITES")]
    pub allow_writes: bool,

    /// Most rows a query or search answers.
    #[arg(long, default_value_t = lakehouse_mcp::DEFAULT_MAX_ROWS, value_name = "ROWS")]
    pub max_rows: usize,

    /// Most bytes of text a query answers.
    #[arg(long, default_value_t = lakehouse_mcp::DEFAULT_MAX_BYTES, value_name = "BYTES")]
    pub max_bytes: usize,
}

/// Flags of `lakehouse compact`.
#[derive(Debug, clap::Args)]
pub struct CompactArgs {
    /// The server to talk to.
    #[command(flatten)]
    pub connection: ServerArgs,

    /// The table to compact (NAME or SCHEMA.NAME) [default: every table].
    #[arg(long)]
    pub table: Option<String>,
}

/// Flags of `lakehouse vacuum`.
#[derive(Debug, clap::Args)]
pub struct VacuumArgs {
    /// The server to talk to.
    #[command(flatten)]
    pub connection: ServerArgs,

    /// The table to vacuum (NAME or SCHEMA.NAME) [default: every table].
    #[arg(long)]
    pub table: Option<String>,

    /// Keep versions younger than this many hours [default: the server's
    /// [maintenance] vacuum_retain_hours, 168].
    #[arg(long, value_name = "HOURS")]
    pub retain_hours: Option<f64>,

    /// Only report what would be removed.
    #[arg(long)]
    pub dry_run: bool,
}

/// Flags of `lakehouse ingest`.
#[derive(Debug, clap::Args)]
pub struct IngestArgs {
    /// The server to talk to.
    #[command(flatten)]
    pub connection: ServerArgs,

    /// Target table: NAME or SCHEMA.NAME.
    #[arg(long)]
    pub table: String,

    /// What to do with the table.
    #[arg(long, value_enum, default_value = "auto")]
    pub mode: IngestModeArg,

    /// Input format [default: from each file's extension: .csv .tsv .json .ndjson .jsonl
    /// .parquet; with --embed also .txt .md .markdown .html .htm .pdf].
    #[arg(long, value_enum)]
    pub format: Option<FormatArg>,

    /// Column types that override inference: NAME=TYPE,... with Arrow type names, e.g.
    /// 'zip=Utf8,price=Decimal128(10, 2),ts=Timestamp(Microsecond, None)'.
    #[arg(long, value_name = "COLUMNS")]
    pub schema: Option<String>,

    /// CSV files have no header line (columns become column_1, column_2, ...).
    #[arg(long)]
    pub no_header: bool,

    /// CSV field delimiter [default: ',' (tab for .tsv)].
    #[arg(long, value_name = "CHAR")]
    pub delimiter: Option<char>,

    /// Chunk, embed and store the files as documents in a Lance document table, one row per
    /// chunk: doc_id, chunk_index, text, source, page, byte_start, byte_end, content_hash,
    /// embedding (docs/ai.md). A .txt, .md, .html or .pdf file is one document (HTML: its
    /// text; PDF: its text page by page, each chunk with its page; an encrypted, image-only or
    /// unreadable PDF is reported and skipped, the other files ingested); in a CSV,
    /// NDJSON or Parquet file each row is one, its text in COLUMN (default `text`; give it
    /// with `=`: --embed=notes), its other columns copied onto its chunks. Chunking and
    /// embedding (the server's default model unless --model) run on the server. Unchanged
    /// documents are skipped (content hash); a changed one has its chunks replaced in the
    /// file's one commit; files no longer given are kept unless --prune.
    #[arg(
        long,
        value_name = "COLUMN",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "text"
    )]
    pub embed: Option<String>,

    /// Most characters in a chunk [default: the table's, else 1000]. Chunks end on the most
    /// natural boundary that fits: paragraph, then sentence, then word.
    #[arg(long, value_name = "CHARS", requires = "embed")]
    pub chunk_size: Option<u32>,

    /// Characters neighbouring chunks share [default: the table's, else 200 (at most a fifth
    /// of --chunk-size)].
    #[arg(long, value_name = "CHARS", requires = "embed")]
    pub chunk_overlap: Option<u32>,

    /// Embedding model, as configured on the server [default: the table's, else the server's
    /// default model].
    #[arg(long, value_name = "NAME", requires = "embed")]
    pub model: Option<String>,

    /// CSV/NDJSON/Parquet with --embed: the column of document ids (unique in the table)
    /// [default: SOURCE#ROW, rows counted from 1].
    #[arg(long, value_name = "COLUMN", requires = "embed")]
    pub id_column: Option<String>,

    /// With --embed: after ingesting, delete the table's documents whose source is not among
    /// the files given this time (skipped when a file failed).
    #[arg(long, requires = "embed")]
    pub prune: bool,

    /// Files sent at once [default: the number of cores]. With several files, the first
    /// runs alone (it may create the table) and the others follow N at a time, each its own
    /// commit; the rows end up the same as one at a time. `--mode replace`, `--mode upsert`
    /// and --embed send one file at a time (there, the order of the files decides the rows).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub jobs: Option<u16>,

    /// Files and directories to ingest, each file committed as its own version. Directories
    /// are searched recursively for files of the formats above (hidden ones skipped); their
    /// files' source is the path relative to the directory. A file whose content is already
    /// in the table is skipped (reported as unchanged).
    #[arg(required = true, value_name = "PATH")]
    pub files: Vec<std::path::PathBuf>,
}

/// `--mode` of `lakehouse ingest`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum IngestModeArg {
    /// Create the table, or append when it exists.
    Auto,
    /// Create the table; fail when it exists.
    Create,
    /// Append; fail when the table does not exist.
    Append,
    /// Replace the table's rows and schema (creating it when missing).
    Replace,
    /// Upsert by primary key into an existing table: a row whose key is stored replaces that
    /// row, the others are appended, one commit.
    Upsert,
}

/// `--format` of `lakehouse ingest`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum FormatArg {
    /// Comma-separated values with a header line.
    Csv,
    /// Newline-delimited JSON objects; nested objects become parent.child columns.
    Ndjson,
    /// Apache Parquet.
    Parquet,
    /// Plain text (with --embed).
    Text,
    /// Markdown (with --embed).
    Markdown,
    /// HTML (with --embed).
    Html,
    /// PDF (with --embed): its text page by page, each chunk with its page number.
    Pdf,
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

/// Log lines to stderr (text or JSON), and with `otlp` (an endpoint) trace spans exported over
/// OTLP/gRPC ([`crate::observability::traces`]); returns the span exporter to flush at exit.
fn init_logging(
    cli: &Cli,
    otlp: Option<&str>,
) -> Option<opentelemetry_sdk::trace::SdkTracerProvider> {
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    // Lance logs every index-partition load and query plan at info; keep that for -v.
    let default = match cli.verbose {
        0 => "info,lance=warn,lance_index=warn",
        1 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = match cli.log_format {
        LogFormat::Text => fmt.boxed(),
        LogFormat::Json => fmt.json().boxed(),
    };
    let (otel, provider, failed) = match otlp.map(crate::observability::traces::layer) {
        Some(Ok((layer, provider))) => (Some(layer), Some(provider), None),
        Some(Err(e)) => (None, None, Some(e)),
        None => (None, None, None),
    };
    let _ = tracing_subscriber::registry()
        .with(fmt)
        .with(otel)
        .with(filter)
        .try_init();
    if let Some(e) = failed {
        tracing::warn!(error = %e, "trace export is off");
    } else if let Some(endpoint) = otlp {
        tracing::info!(endpoint, "exporting trace spans over OTLP/gRPC");
    }
    provider
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
    // Serving commands export traces when their config names an OTLP endpoint (a config that
    // does not resolve is reported by the command itself).
    let otlp = match &cli.command {
        Command::Serve(args) | Command::Worker(args) => args
            .resolve()
            .ok()
            .and_then(|config| crate::observability::traces::endpoint(&config.observability)),
        _ => None,
    };
    let traces = init_logging(&cli, otlp.as_deref());
    let result = execute(cli.command).await;
    if let Some(provider) = traces {
        // Exports the spans still batched; blocking, so off the async workers.
        let _ = tokio::task::spawn_blocking(move || provider.shutdown()).await;
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn execute(command: Command) -> Result<()> {
    match command {
        Command::Serve(args) => serve(args, false).await,
        Command::Worker(args) => serve(args, true).await,
        Command::Ingest(args) => ingest(args).await,
        Command::Compact(args) => {
            let statement = |table: &str| format!("OPTIMIZE {table}");
            maintain(
                &args.connection,
                args.table.as_deref(),
                "rewrote",
                statement,
            )
            .await
        }
        Command::Vacuum(args) => {
            let retain = args
                .retain_hours
                .map(|h| format!(" RETAIN {h} HOURS"))
                .unwrap_or_default();
            let dry_run = if args.dry_run { " DRY RUN" } else { "" };
            let verb = if args.dry_run {
                "would remove"
            } else {
                "removed"
            };
            let statement = |table: &str| format!("VACUUM {table}{retain}{dry_run}");
            maintain(&args.connection, args.table.as_deref(), verb, statement).await
        }
        Command::Cleanup(args) => cleanup(args).await,
        Command::Mcp(args) => mcp(args).await,
        Command::User(UserCommand::Add(args)) => user_add(args),
        Command::Cert(args) => cert(args),
        Command::Doctor(args) => doctor(args).await,
    }
}

/// `lakehouse mcp`: the MCP server over stdio, or over Streamable HTTP until Ctrl-C/SIGTERM.
async fn mcp(args: McpArgs) -> Result<()> {
    if args.max_rows == 0 || args.max_bytes == 0 {
        return Err(Error::Config(
            "--max-rows and --max-bytes must be at least 1".into(),
        ));
    }
    let options = lakehouse_mcp::McpOptions {
        server: args.connection.server.clone(),
        connect: args.connection.connect_options(false)?,
        allow_writes: args.allow_writes,
        max_rows: args.max_rows,
        max_bytes: args.max_bytes,
    };
    let transport = |e: lakehouse_mcp::Error| Error::Config(e.to_string());
    match &args.http {
        None => lakehouse_mcp::serve_stdio(options).await.map_err(transport),
        Some(listen) => {
            let address = crate::config::listen_address(listen);
            let listener = bind(&address, "--http").await?;
            let local = listener.local_addr().map_err(|source| Error::Io {
                context: "the MCP listener's address".into(),
                source,
            })?;
            eprintln!(
                "lakehouse mcp: Streamable HTTP at http://{local}{} (server {})",
                lakehouse_mcp::HTTP_PATH,
                args.connection.server
            );
            let signal = shutdown_signal()?;
            lakehouse_mcp::serve_http(listener, options, async move {
                signal.await;
            })
            .await
            .map_err(transport)
        }
    }
}

/// `lakehouse compact` / `vacuum`: the maintenance statement `statement(table)` for `table`,
/// or for every table the server lists; prints one line per table ("public.t: rewrote 3
/// files").
async fn maintain(
    connection: &ServerArgs,
    table: Option<&str>,
    verb: &str,
    statement: impl Fn(&str) -> String,
) -> Result<()> {
    let mut client = connection.connect().await?;
    let tables = match table {
        Some(table) => vec![table.to_string()],
        None => client
            .tables()
            .await
            .map_err(|e| Error::Config(e.to_string()))?,
    };
    for table in tables {
        let quoted = table
            .split('.')
            .map(|part| format!("\"{}\"", part.replace('"', "\"\"")))
            .collect::<Vec<_>>()
            .join(".");
        let files = client
            .execute(&statement(&quoted))
            .await
            .map_err(|e| Error::Config(format!("{table}: {e}")))?;
        println!("{table}: {verb} {files} file(s)");
    }
    Ok(())
}

/// `lakehouse cert`: a self-signed certificate (rcgen, ECDSA P-256) for `args.hosts`.
fn cert(args: CertArgs) -> Result<()> {
    let mut params = rcgen::CertificateParams::new(args.hosts.clone())
        .map_err(|e| Error::invalid(format!("--host: {e}")))?;
    let now = std::time::SystemTime::now();
    params.not_before = now.into();
    params.not_after = (now + Duration::from_secs(u64::from(args.days) * 86_400)).into();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, args.hosts[0].clone());
    let key = rcgen::KeyPair::generate()
        .map_err(|e| Error::Internal(format!("cannot generate a key: {e}")))?;
    let cert = params
        .self_signed(&key)
        .map_err(|e| Error::Internal(format!("cannot sign the certificate: {e}")))?;
    let io = |path: &std::path::Path| {
        let context = format!("cannot write {}", path.display());
        move |source| Error::Io { context, source }
    };
    std::fs::create_dir_all(&args.out_dir).map_err(io(&args.out_dir))?;
    let cert_path = args.out_dir.join("server.crt");
    let key_path = args.out_dir.join("server.key");
    std::fs::write(&cert_path, cert.pem()).map_err(io(&cert_path))?;
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&key_path)
            .map_err(io(&key_path))?;
        file.write_all(key.serialize_pem().as_bytes())
            .map_err(io(&key_path))?;
    }
    println!(
        "wrote {} and {} (valid {} days for {})\nserve with: lakehouse serve --tls-cert {} --tls-key {}\nclients connect to grpc+tls://{}:PORT and trust {}",
        cert_path.display(),
        key_path.display(),
        args.days,
        args.hosts.join(", "),
        cert_path.display(),
        key_path.display(),
        args.hosts[0],
        cert_path.display()
    );
    Ok(())
}

/// A password: the first line of standard input when it is not a terminal, else asked on the
/// terminal (twice when `confirm`).
fn read_password(prompt: &str, confirm: bool) -> Result<String> {
    use std::io::IsTerminal;
    let io = |source| Error::Io {
        context: "reading the password".into(),
        source,
    };
    let password = if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password(prompt).map_err(io)?;
        if confirm && rpassword::prompt_password("Repeat: ").map_err(io)? != first {
            return Err(Error::invalid("the passwords differ"));
        }
        first
    } else {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map_err(io)?;
        line.trim_end_matches(['\r', '\n']).to_string()
    };
    if password.is_empty() {
        return Err(Error::invalid("empty password"));
    }
    Ok(password)
}

fn user_add(args: UserAddArgs) -> Result<()> {
    let path = &args.config;
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(source) => {
            return Err(Error::Io {
                context: format!("cannot read {}", path.display()),
                source,
            });
        }
    };
    let password = read_password(&format!("Password for {}: ", args.name), true)?;
    let hash = crate::auth::hash_password(&password)?;
    let (updated, mode) =
        crate::config::add_user(&text, &args.name, &hash, args.role, args.replace)
            .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
    // Write beside the file, then rename: a crash leaves the old file or the new, whole.
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let io = |source| Error::Io {
        context: format!("cannot write {}", path.display()),
        source,
    };
    let mut file = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
    std::io::Write::write_all(&mut file, updated.as_bytes()).map_err(io)?;
    file.persist(path).map_err(|e| io(e.error))?;
    println!(
        "user {} ({}) written to {}",
        args.name,
        args.role,
        path.display()
    );
    if mode != crate::auth::AuthMode::Basic {
        println!(
            "note: auth is off in this file; serve with --auth basic (or set [auth] mode = \"basic\")"
        );
    }
    Ok(())
}

/// Files larger than this get a progress bar (bytes).
const PROGRESS_BAR_BYTES: u64 = 4 * 1024 * 1024;

/// A file to ingest and the source name it is recorded under.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Input {
    path: std::path::PathBuf,
    source: String,
}

/// Extensions a directory is searched for (documents only with --embed).
fn ingestible(path: &std::path::Path, embed: bool) -> bool {
    let name = path.to_string_lossy();
    lakehouse_catalog::FileFormat::from_file_name(&name).is_some()
        || (embed && lakehouse_vector::documents::DocumentFormat::from_file_name(&name).is_some())
}

/// The files of `paths`: files as given, directories searched recursively (sorted, hidden
/// entries skipped) for ingestible files, recorded relative to the directory.
fn collect_inputs(paths: &[std::path::PathBuf], embed: bool) -> Result<Vec<Input>> {
    let mut inputs: Vec<Input> = Vec::new();
    for path in paths {
        let metadata = std::fs::metadata(path).map_err(|source| {
            let hint = if embed && path.extension().is_none() && path.components().count() == 1 {
                format!(" (to embed column {0}, write --embed={0})", path.display())
            } else {
                String::new()
            };
            Error::Io {
                context: format!("cannot read {}{hint}", path.display()),
                source,
            }
        })?;
        if !metadata.is_dir() {
            inputs.push(Input {
                path: path.clone(),
                source: path.to_string_lossy().into_owned(),
            });
            continue;
        }
        let before = inputs.len();
        let walk = walkdir::WalkDir::new(path)
            .sort_by_file_name()
            .into_iter()
            .filter_entry(|e| e.depth() == 0 || !e.file_name().to_string_lossy().starts_with('.'));
        for entry in walk {
            let entry = entry.map_err(|e| {
                Error::invalid(format!("cannot read directory {}: {e}", path.display()))
            })?;
            if !entry.file_type().is_file() || !ingestible(entry.path(), embed) {
                continue;
            }
            let relative = entry.path().strip_prefix(path).unwrap_or(entry.path());
            let source = relative
                .components()
                .map(|c| c.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/");
            inputs.push(Input {
                path: entry.path().to_path_buf(),
                source,
            });
        }
        if inputs.len() == before {
            return Err(Error::invalid(format!(
                "{}: no files to ingest in this directory (looked for .csv .tsv .json .ndjson \
                 .jsonl .parquet{})",
                path.display(),
                if embed {
                    " .txt .md .markdown .html .htm"
                } else {
                    ""
                }
            )));
        }
    }
    let mut seen: std::collections::HashMap<&str, &std::path::Path> = Default::default();
    for input in &inputs {
        if let Some(other) = seen.insert(&input.source, &input.path) {
            return Err(Error::invalid(format!(
                "{} and {} would both be recorded as source {}; ingest them into separate \
                 tables or in separate runs",
                other.display(),
                input.path.display(),
                input.source
            )));
        }
    }
    Ok(inputs)
}

/// Progress of `lakehouse ingest`: per-file upload bars for large row files; for documents,
/// one bar over documents and one over chunks (hidden when stderr is not a terminal).
///
/// With several row files, a total bar over all their bytes shows MB/s and, as files finish,
/// rows and rows/s.
struct IngestBars {
    multi: indicatif::MultiProgress,
    documents: Option<indicatif::ProgressBar>,
    chunks: Option<indicatif::ProgressBar>,
    total: Option<indicatif::ProgressBar>,
}

impl IngestBars {
    fn new(embed: bool, files: usize, bytes: u64) -> Self {
        let multi = indicatif::MultiProgress::new();
        let bar = |template: &str, len: u64| {
            let bar = multi.add(indicatif::ProgressBar::new(len));
            bar.set_style(
                indicatif::ProgressStyle::with_template(template)
                    .expect("valid template")
                    .progress_chars("=> "),
            );
            bar
        };
        let (documents, chunks) = if embed {
            (
                Some(bar(
                    "documents [{bar:30}] {pos}/{len} {per_sec} {elapsed} {msg}",
                    files as u64,
                )),
                Some(bar(
                    "chunks    [{bar:30}] {pos}/{len} {per_sec} embedded",
                    0,
                )),
            )
        } else {
            (None, None)
        };
        let total = (!embed && files > 1).then(|| {
            let total = bar(
                "total     [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {elapsed} {msg}",
                bytes,
            );
            total.set_message(format!("0 of {files} files"));
            total
        });
        Self {
            multi,
            documents,
            chunks,
            total,
        }
    }

    /// Reports on the total bar that `done` of `files` files finished, `rows` rows in all.
    fn file_done(&self, (done, files): (usize, usize), rows: u64, started: std::time::Instant) {
        if let Some(total) = &self.total {
            let seconds = started.elapsed().as_secs_f64().max(1e-9);
            total.set_message(format!(
                "{done} of {files} files, {rows} rows, {:.0} rows/s",
                rows as f64 / seconds
            ));
        }
    }

    /// Sends one file (`size` bytes) with its own upload bar (files over
    /// [`PROGRESS_BAR_BYTES`]), moving the total and document bars as it goes.
    async fn send(
        &self,
        client: &mut lakehouse_client::Client,
        path: &std::path::Path,
        size: u64,
        options: &lakehouse_client::IngestFileOptions,
    ) -> std::result::Result<lakehouse_client::IngestFileResult, lakehouse_client::Error> {
        let upload = self.upload_bar(path, size);
        let file_bars = self.documents.clone().zip(self.chunks.clone());
        // Where the bars stood when this file started (document files go one at a time).
        let mark = file_bars
            .as_ref()
            .map_or((0, 0), |(d, c)| (d.position(), c.position()));
        let progress = {
            let upload = upload.clone();
            let total = self.total.clone();
            let file_bars = file_bars.clone();
            let name = path.display().to_string();
            let mut reported = 0;
            move |p: lakehouse_client::IngestProgress| match p {
                lakehouse_client::IngestProgress::Uploaded(sent) => {
                    if let Some(total) = &total {
                        total.inc(sent - reported);
                        reported = sent;
                    }
                    if let Some(bar) = &upload {
                        bar.set_position(sent);
                        if sent >= size {
                            bar.set_message(format!("{name} parsing and committing"));
                        }
                    }
                }
                lakehouse_client::IngestProgress::Server(report) => {
                    if let Some(bars) = &file_bars {
                        show_file(bars, mark, &report, report.documents_unchanged);
                    }
                }
            }
        };
        let result = client.ingest_file(path, options, progress).await;
        if let Some(bar) = &upload {
            bar.finish_and_clear();
        }
        if let (Some(file_bars), Ok(result)) = (&file_bars, &result) {
            show_file(file_bars, mark, result, result.documents.max(1));
        }
        result
    }

    /// Prints a line above the bars.
    fn println(&self, line: &str) {
        self.multi.suspend(|| println!("{line}"));
    }

    fn eprintln(&self, line: &str) {
        self.multi.suspend(|| eprintln!("{line}"));
    }

    fn upload_bar(&self, path: &std::path::Path, size: u64) -> Option<indicatif::ProgressBar> {
        if self.documents.is_some() || size <= PROGRESS_BAR_BYTES {
            return None;
        }
        let bar = self.multi.add(indicatif::ProgressBar::new(size));
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {elapsed}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        bar.set_message(format!("{} uploading", path.display()));
        Some(bar)
    }
}

/// Shows one file's document-ingest `report` on the (documents, chunks) bars, which stood at
/// `mark` when the file started: the file takes `report.documents` slots of the documents bar
/// (a row file holds many; at least one), `done` of them finished; the chunks bar grows by
/// `chunks_total` and advances by `chunks` (embedded so far).
fn show_file(
    (documents, chunks): &(indicatif::ProgressBar, indicatif::ProgressBar),
    (documents_mark, chunks_mark): (u64, u64),
    report: &lakehouse_client::IngestFileResult,
    done: u64,
) {
    let later_files = documents
        .length()
        .unwrap_or(0)
        .saturating_sub(documents_mark + 1);
    documents.set_length(documents_mark + report.documents.max(1) + later_files);
    documents.set_position(documents_mark + done);
    chunks.set_length(chunks_mark + report.chunks_total);
    chunks.set_position(chunks_mark + report.chunks);
}

/// Totals of a document ingest run.
#[derive(Debug, Default)]
struct DocumentTotals {
    documents: u64,
    unchanged: u64,
    deleted: u64,
    chunks: u64,
}

async fn ingest(args: IngestArgs) -> Result<()> {
    use futures::StreamExt;
    use lakehouse_client::{DocumentOptions, FileFormat, IngestFileOptions, IngestMode};
    let embed = args.embed.is_some();
    let inputs = collect_inputs(&args.files, embed)?;
    let client = args.connection.connect().await?;
    let options = IngestFileOptions {
        table: args.table.clone(),
        mode: match args.mode {
            IngestModeArg::Auto => IngestMode::Unspecified,
            IngestModeArg::Create => IngestMode::Create,
            IngestModeArg::Append => IngestMode::Append,
            IngestModeArg::Replace => IngestMode::Replace,
            IngestModeArg::Upsert => IngestMode::Upsert,
        },
        format: match args.format {
            None => FileFormat::Unspecified,
            Some(FormatArg::Csv) => FileFormat::Csv,
            Some(FormatArg::Ndjson) => FileFormat::Ndjson,
            Some(FormatArg::Parquet) => FileFormat::Parquet,
            Some(FormatArg::Text) => FileFormat::Text,
            Some(FormatArg::Markdown) => FileFormat::Markdown,
            Some(FormatArg::Html) => FileFormat::Html,
            Some(FormatArg::Pdf) => FileFormat::Pdf,
        },
        schema_overrides: args.schema.clone().unwrap_or_default(),
        csv_has_header: args.no_header.then_some(false),
        csv_delimiter: args.delimiter,
        documents: None,
    };
    let jobs = match (embed, args.mode) {
        (true, _) | (false, IngestModeArg::Replace | IngestModeArg::Upsert) => 1,
        _ => args.jobs.map_or_else(
            || std::thread::available_parallelism().map_or(1, |n| n.get()),
            usize::from,
        ),
    };
    let sizes: Vec<u64> = inputs
        .iter()
        .map(|i| std::fs::metadata(&i.path).map(|m| m.len()).unwrap_or(0))
        .collect();
    let bars = IngestBars::new(embed, inputs.len(), sizes.iter().sum());
    let started = std::time::Instant::now();
    let mut totals = DocumentTotals::default();
    let mut rows = 0u64;
    let mut done = 0;
    let mut failed = 0;
    let options = &options;
    let args = &args;
    let send = |i: usize| {
        let (input, size) = (&inputs[i], sizes[i]);
        let mut client = client.clone();
        let bars = &bars;
        async move {
            let mut options = options.clone();
            if let Some(column) = &args.embed {
                options.documents = Some(DocumentOptions {
                    source: input.source.clone(),
                    text_column: column.clone(),
                    id_column: args.id_column.clone().unwrap_or_default(),
                    chunk_size: args.chunk_size.unwrap_or(0),
                    chunk_overlap: args.chunk_overlap,
                    model: args.model.clone().unwrap_or_default(),
                });
            }
            (
                input,
                bars.send(&mut client, &input.path, size, &options).await,
            )
        }
    };
    // The first file alone (it may create the table), then the others `jobs` at a time.
    let first = futures::stream::iter((!inputs.is_empty()).then_some(0)).then(&send);
    let rest = futures::stream::iter(1..inputs.len())
        .map(&send)
        .buffer_unordered(jobs);
    let mut results = std::pin::pin!(first.chain(rest));
    while let Some((input, result)) = results.next().await {
        match result {
            Ok(result) => {
                rows += result.rows;
                totals.documents += result.documents;
                totals.unchanged += result.documents_unchanged;
                totals.deleted += result.documents_deleted;
                totals.chunks += result.chunks;
                bars.println(&result.message);
            }
            Err(e) => {
                failed += 1;
                if let Some(documents) = &bars.documents {
                    documents.inc(1);
                }
                let message = e
                    .status()
                    .map(|s| s.message().to_string())
                    .unwrap_or_else(|| e.to_string());
                bars.eprintln(&format!("error: {}: {message}", input.path.display()));
            }
        }
        done += 1;
        bars.file_done((done, inputs.len()), rows, started);
    }
    for bar in [&bars.documents, &bars.chunks, &bars.total]
        .into_iter()
        .flatten()
    {
        bar.finish_and_clear();
    }
    if !embed && inputs.len() > 1 {
        let seconds = started.elapsed().as_secs_f64().max(1e-9);
        let bytes: u64 = sizes.iter().sum();
        println!(
            "{} files ({failed} failed), {rows} rows, {:.1} MB in {seconds:.1} s: {:.0} rows/s, \
             {:.1} MB/s ({jobs} at a time)",
            inputs.len(),
            bytes as f64 / 1e6,
            rows as f64 / seconds,
            bytes as f64 / 1e6 / seconds,
        );
    }
    if embed {
        let seconds = started.elapsed().as_secs_f64().max(1e-9);
        println!(
            "{} files, {} documents ({} unchanged, {} deleted from changed files), {} chunks \
             embedded in {seconds:.1} s: {:.1} documents/s, {:.1} chunks/s",
            inputs.len(),
            totals.documents,
            totals.unchanged,
            totals.deleted,
            totals.chunks,
            totals.documents as f64 / seconds,
            totals.chunks as f64 / seconds,
        );
    }
    if failed > 0 {
        if args.prune {
            eprintln!("not pruning: {failed} files failed");
        }
        return Err(Error::invalid(format!(
            "{failed} of {} files were not ingested",
            inputs.len()
        )));
    }
    if args.prune {
        let keep = inputs.iter().map(|i| i.source.clone()).collect();
        let result = client
            .clone()
            .prune_documents(&args.table, keep)
            .await
            .map_err(|e| {
                Error::invalid(
                    e.status()
                        .map(|s| s.message().to_string())
                        .unwrap_or_else(|| e.to_string()),
                )
            })?;
        println!("{}", result.message);
    }
    Ok(())
}

/// `lakehouse serve`, or with `worker_only` `lakehouse worker`.
async fn serve(args: ServeArgs, worker_only: bool) -> Result<()> {
    let config = args.resolve()?;
    // Signals are caught from the start: a stop during start-up (e.g. while the sample data is
    // generated) ends the process cleanly; commits are atomic, so nothing is left half-done.
    let signal = shutdown_signal()?;
    tokio::pin!(signal);
    // Storage, catalog and sample data first: once the port accepts connections, the server
    // is ready to answer.
    let server = tokio::select! {
        server = async {
            if worker_only {
                Server::new_worker(&config).await
            } else {
                Server::new(&config).await
            }
        } => server?,
        signal = &mut signal => {
            tracing::info!(signal, "stopped during start-up");
            return Ok(());
        }
    };
    let listener = TcpListener::bind(&config.listen)
        .await
        .map_err(|source| Error::Io {
            context: format!("cannot listen on {}", config.listen),
            source,
        })?;
    let server = match config.observability.metrics_address() {
        Some(address) => {
            let metrics = bind(&address, "--metrics-listen").await?;
            tracing::info!(%address, "serving /metrics, /healthz and /readyz");
            server.with_metrics_listener(metrics)
        }
        None => server,
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let serving = server.serve(listener, async {
        let _ = stop_rx.await;
    });
    tokio::pin!(serving);
    tokio::select! {
        result = &mut serving => return result,
        signal = &mut signal => {
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

/// `lakehouse doctor`: the checks, printed; an error (exit 1) when any failed.
async fn doctor(args: DoctorArgs) -> Result<()> {
    let checks = crate::doctor::run(&args.serve).await;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&checks).expect("checks serialize")
        );
    } else {
        print!("{}", crate::doctor::render(&checks));
    }
    let failed = checks.iter().filter(|c| !c.ok).count();
    if failed > 0 {
        return Err(Error::Config(format!(
            "{failed} of {} checks failed",
            checks.len()
        )));
    }
    Ok(())
}

/// A listener on `address`, for the command-line `flag` that asked for it.
///
/// # Errors
/// [`Error::Io`] "cannot listen on ADDRESS (FLAG)" when the address is taken or invalid.
async fn bind(address: &str, flag: &str) -> Result<TcpListener> {
    TcpListener::bind(address)
        .await
        .map_err(|source| Error::Io {
            context: format!("cannot listen on {address} ({flag})"),
            source,
        })
}

/// Registers SIGINT and SIGTERM handlers now; the future completes with the signal's name.
fn shutdown_signal() -> Result<impl std::future::Future<Output = &'static str>> {
    use tokio::signal::unix::{SignalKind, signal};
    let io = |source| Error::Io {
        context: "installing signal handlers".into(),
        source,
    };
    let mut int = signal(SignalKind::interrupt()).map_err(io)?;
    let mut term = signal(SignalKind::terminate()).map_err(io)?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => "SIGINT",
            _ = term.recv() => "SIGTERM",
        }
    })
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
