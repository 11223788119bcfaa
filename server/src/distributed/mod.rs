//! Distributed execution on [datafusion-distributed] 3.0: the Flight SQL server as the
//! coordinator, `lakehouse worker` processes as workers, all reading the same storage.
//!
//! - **Coordinator** ([`Distribution`]): a query whose plan is eligible ([`Distribution::eligible`])
//!   is planned by datafusion-distributed's planner, which cuts the physical plan into stages at
//!   shuffles and merges and sends each stage's tasks to the workers listed in `[distributed]
//!   workers` / `--workers` (a plan streams back Arrow over gRPC). Other queries — and every
//!   query when no worker is listed — run on the server alone, exactly as before.
//! - **Worker** ([`worker_service`]): datafusion-distributed's `WorkerService` on our tonic
//!   server, executing stages against our object store (registered under the same
//!   `lakehouse://root` URL the plans name, over the worker's own `--storage`) with its own
//!   `[query] memory_limit_bytes` pool. `lakehouse serve` mounts it too, so a coordinator may
//!   list itself.
//! - **Security**: every call to a worker must carry `[distributed] secret` in the
//!   [`SECRET_HEADER`] metadata ([`check_secret`]); the coordinator sends it with each task and
//!   workers pass it on to the workers they read shuffles from. Without a secret no worker
//!   service is mounted and no worker is used.
//!
//! What distributes: plans whose every table is a Lakehouse Parquet table in our storage
//! (no external files), calling none of our own functions (`embed`, `ai`, the search and AI
//! table functions, Lance tables): their scans are plain DataFusion Parquet scans
//! (`DataSourceExec` with `FileScanConfig`), which datafusion-distributed serializes with
//! datafusion-proto. Everything else runs on the coordinator.
//!
//! **Deleted rows**: a scan skips deleted rows through a `ParquetAccessPlan` attached to each
//! `PartitionedFile`, which datafusion-proto does not serialize. So the coordinator sends the
//! deletion-vector references of the plan's files along with every task, as the
//! [`ScanDeletes`] config extension (datafusion-distributed carries it in gRPC metadata); the
//! worker reads those deletion vectors (immutable objects, through its cache) when it builds
//! the task's session and re-attaches the access plans to the decoded scans before they run
//! ([`Distribution::apply`], [`worker`]).
//!
//! [datafusion-distributed]: https://github.com/datafusion-contrib/datafusion-distributed

mod channels;
pub mod live;
pub mod tasks;
mod worker;
pub mod workers_table;

pub use channels::WorkerChannels;
pub use live::LiveWorkers;
pub use tasks::RunningTasks;

pub use worker::{check_secret, worker};

use std::collections::HashSet;
use std::sync::Arc;

use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::config::ConfigExtension;
use datafusion::datasource::source_as_provider;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::session_state::SessionState;
use datafusion::logical_expr::{Expr, LogicalPlan};
use datafusion_distributed::{DistributedExt, SessionStateBuilderExt};
use serde::{Deserialize, Serialize};
use url::Url;

use crate::error::{Error, Result};
use crate::query::table::VersionTable;

/// gRPC metadata key carrying the shared secret on every call to a worker.
pub const SECRET_HEADER: &str = "x-lakehouse-worker-secret";

/// gRPC metadata key carrying the coordinator's catalog id ([`lakehouse_catalog::Catalog::id`])
/// with every task: a worker over another storage root refuses the task.
pub const CATALOG_HEADER: &str = "x-lakehouse-catalog-id";

datafusion::common::extensions_options! {
    /// The deletion vectors of the files a distributed plan scans, sent with every task (see
    /// the module docs).
    pub struct ScanDeletes {
        /// JSON array of `lakehouse_catalog::DataFile` (path, rows, row-group sizes, deletion
        /// vector; no statistics); empty when no scanned file has deletes.
        pub files: String, default = String::new()
    }
}

impl ConfigExtension for ScanDeletes {
    const PREFIX: &'static str = "lakehouse_deletes";
}

/// The `[distributed]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DistributedOptions {
    /// Worker URLs, `grpc://HOST:PORT` (also `http://`); empty: every query runs on this
    /// server alone.
    pub workers: Vec<String>,
    /// Whether eligible queries are distributed when workers are listed (default true).
    pub enabled: bool,
    /// The secret workers require on every call ([`SECRET_HEADER`]); needed to list workers
    /// and to run a worker.
    pub secret: Option<String>,
    /// Seconds a worker may take to connect, to answer a keep-alive ping during a query, or to
    /// answer a probe (`workers()`), before it counts as down and the query fails (default 10).
    pub worker_timeout_secs: u64,
    /// Parquet bytes one task of a scan stage reads (default 16 MiB, datafusion-distributed's
    /// `file_scan_config_bytes_per_partition`): a scan of N bytes runs as about N / this many
    /// tasks, at most one per worker. Lower it to spread small tables.
    pub bytes_per_task: usize,
    /// A file of more worker URLs, re-read when it changes ([`live`]).
    pub workers_file: Option<std::path::PathBuf>,
    /// PEM certificate(s) this server trusts for workers listed as `grpc+tls://` (the workers'
    /// `--tls-cert`, or the CA that signed them). Needed to list TLS workers.
    pub ca: Option<std::path::PathBuf>,
    /// PEM certificate this server presents to workers that require client certificates
    /// (their `--tls-client-ca`); with `client_key`.
    pub client_cert: Option<std::path::PathBuf>,
    /// PEM private key of `client_cert`.
    pub client_key: Option<std::path::PathBuf>,
}

impl DistributedOptions {
    /// `worker_timeout_secs` (at least one second).
    pub fn worker_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.worker_timeout_secs.max(1))
    }
}

impl Default for DistributedOptions {
    fn default() -> Self {
        Self {
            workers: Vec::new(),
            enabled: true,
            secret: None,
            bytes_per_task: 16 * 1024 * 1024,
            worker_timeout_secs: 10,
            workers_file: None,
            ca: None,
            client_cert: None,
            client_key: None,
        }
    }
}

/// How the coordinator distributes queries: its workers and the secret it sends them.
#[derive(Debug, Clone)]
pub struct Distribution {
    workers: LiveWorkers,
    /// The metadata every task carries: the secret and the catalog id ([`task_headers`]).
    task_headers: http::HeaderMap,
    bytes_per_task: usize,
    channels: WorkerChannels,
    /// Names of the scalar, aggregate and table functions the server registers beyond
    /// DataFusion's own: plans calling them stay on the coordinator.
    own_functions: Arc<HashSet<String>>,
}

impl Distribution {
    /// The distribution `options` describe for sessions built from `template`; `None` when no
    /// worker is listed or distribution is off.
    ///
    /// # Errors
    /// [`Error::Config`] for a worker URL that does not parse or is not `grpc://`/`http://`,
    /// or workers listed without a secret.
    pub fn new(
        options: &DistributedOptions,
        template: &SessionState,
        catalog_id: &str,
    ) -> Result<Option<Self>> {
        let source = live::WorkerList::new(options);
        if source.is_empty() || !options.enabled {
            return Ok(None);
        }
        let Some(secret) = &options.secret else {
            return Err(Error::Config(
                "[distributed] workers are listed but no [distributed] secret is set: workers \
                 accept only calls that carry it"
                    .into(),
            ));
        };
        let listed = source.read()?;
        if options.ca.is_none()
            && let Some((shown, _)) = listed.iter().find(|(_, url)| url.scheme() == "https")
        {
            return Err(Error::Config(format!(
                "[distributed] worker {shown} speaks TLS: set [distributed] ca to the \
                 certificate that signed its --tls-cert"
            )));
        }
        let workers = LiveWorkers::new(listed);
        let channels = WorkerChannels::new(options)?;
        workers.watch(source, Some(secret.clone()), channels.clone());
        let channels = channels.with_live_workers(workers.clone());
        let headers = task_headers(secret, catalog_id)?;
        let builtin = SessionStateBuilder::new().with_default_features().build();
        let own_functions = own_function_names(template, &builtin);
        Ok(Some(Self {
            workers,
            task_headers: headers,
            bytes_per_task: options.bytes_per_task.max(1),
            channels,
            own_functions: Arc::new(own_functions),
        }))
    }

    /// `state` with datafusion-distributed's planner over the live workers, when `plan` is
    /// eligible ([`Distribution::eligible`]): the deletion vectors of the files it scans go
    /// with every task ([`ScanDeletes`]). `None` when `plan` must run here.
    ///
    /// # Errors
    /// DataFusion's error when the secret cannot be set as a header.
    pub fn distribute(
        &self,
        state: SessionState,
        plan: &LogicalPlan,
    ) -> Result<Option<SessionState>> {
        let Some(files) = self.scan(plan) else {
            return Ok(None);
        };
        let deletes = ScanDeletes {
            files: serde_json::to_string(&files)
                .map_err(|e| Error::Internal(format!("deletion vectors: {e}")))?,
        };
        // The task calls carry the secret, and the trace context of the planning span
        // (`traceparent`), so the workers' task spans join the query's trace.
        let mut headers = self.task_headers.clone();
        headers.extend(crate::observability::traces::current_headers());
        let state = SessionStateBuilder::new_from_existing(state)
            .with_distributed_option_extension(deletes)
            .with_distributed_worker_resolver(self.workers.clone())
            .with_distributed_channel_resolver(self.channels.clone())
            .with_distributed_passthrough_headers(headers)?
            .with_distributed_file_scan_config_bytes_per_partition(self.bytes_per_task)?
            .with_distributed_planner()
            .build();
        Ok(Some(state))
    }

    /// The plan of `EXPLAIN` (without ANALYZE or VERBOSE) of an eligible query, distributed:
    /// two rows, `plan_type` = `distributed_plan` with `plan` = the stages and the tasks of
    /// each (datafusion-distributed's `display_plan_ascii`), and `plan_type` = `workers` naming
    /// the workers the tasks will be routed to (routing happens at execution). `None` for
    /// other plans.
    ///
    /// # Errors
    /// Planning errors of the explained query.
    pub async fn explain(
        &self,
        state: &SessionState,
        plan: &LogicalPlan,
    ) -> Result<Option<LogicalPlan>> {
        let LogicalPlan::Explain(explain) = plan else {
            return Ok(None);
        };
        if explain.verbose {
            return Ok(None);
        }
        let Some(distributed) = self.distribute(state.clone(), &explain.plan)? else {
            return Ok(None);
        };
        let physical = distributed.create_physical_plan(&explain.plan).await?;
        let text = datafusion_distributed::display_plan_ascii(physical.as_ref(), false);
        let schema = Arc::new(datafusion::arrow::datatypes::Schema::new(vec![
            datafusion::arrow::datatypes::Field::new(
                "plan_type",
                datafusion::arrow::datatypes::DataType::Utf8,
                false,
            ),
            datafusion::arrow::datatypes::Field::new(
                "plan",
                datafusion::arrow::datatypes::DataType::Utf8,
                false,
            ),
        ]));
        let up: Vec<String> = self
            .workers
            .up()
            .iter()
            .map(|url| self.workers.configured(url))
            .collect();
        let routing = format!(
            "tasks run on the workers up now: {}. Each stage's tasks are assigned to them \
             round-robin from a random one when the query executes (datafusion-distributed's \
             routing); a stage of one task runs where its input runs or on this server. \
             EXPLAIN ANALYZE shows each task's metrics (t0, t1, ...).",
            up.join(", ")
        );
        let batch = datafusion::arrow::array::RecordBatch::try_new(
            schema,
            vec![
                Arc::new(datafusion::arrow::array::StringArray::from(vec![
                    "distributed_plan",
                    "workers",
                ])),
                Arc::new(datafusion::arrow::array::StringArray::from(vec![
                    text, routing,
                ])),
            ],
        )?;
        let ctx = datafusion::prelude::SessionContext::new_with_state(state.clone());
        Ok(Some(ctx.read_batch(batch)?.into_unoptimized_plan()))
    }

    /// The workers, with their last-known state.
    pub fn workers(&self) -> &LiveWorkers {
        &self.workers
    }

    /// Whether `plan` may run on workers: at least one worker is up, every table it scans is a
    /// Lakehouse Parquet table in our storage, and it calls none of the server's own functions
    /// (see the module docs). With every worker down, queries run on the coordinator.
    pub fn eligible(&self, plan: &LogicalPlan) -> bool {
        self.scan(plan).is_some()
    }

    /// One walk over `plan`: the files with deletion vectors of the tables it scans when it
    /// is eligible ([`Distribution::eligible`]), else `None`.
    fn scan(&self, plan: &LogicalPlan) -> Option<Vec<lakehouse_catalog::DataFile>> {
        if self.workers.up().is_empty() {
            return None;
        }
        let mut files = Vec::new();
        let mut eligible = true;
        let _ = plan.apply_with_subqueries(|node| {
            let node_ok = match node {
                LogicalPlan::TableScan(scan) => {
                    let provider = source_as_provider(&scan.source).ok();
                    match provider
                        .as_ref()
                        .and_then(|p| p.downcast_ref::<VersionTable>())
                    {
                        Some(table) if table.distributable() => {
                            files.extend(table.files_with_deletes());
                            true
                        }
                        _ => false,
                    }
                }
                LogicalPlan::Extension(_) => false,
                _ => true,
            };
            eligible = node_ok
                && node
                    .expressions()
                    .iter()
                    .all(|e| !calls_any(e, &self.own_functions));
            Ok(if eligible {
                TreeNodeRecursion::Continue
            } else {
                TreeNodeRecursion::Stop
            })
        });
        eligible.then_some(files)
    }
}

/// Whether `expr` calls a function named in `names`.
fn calls_any(expr: &Expr, names: &HashSet<String>) -> bool {
    expr.exists(|e| {
        Ok(match e {
            Expr::ScalarFunction(f) => names.contains(f.name()),
            Expr::AggregateFunction(f) => names.contains(f.func.name()),
            Expr::WindowFunction(f) => names.contains(f.fun.name()),
            _ => false,
        })
    })
    .unwrap_or(true)
}

/// The function names `template` knows that a plain DataFusion session does not.
fn own_function_names(template: &SessionState, builtin: &SessionState) -> HashSet<String> {
    fn beyond<V>(
        ours: &std::collections::HashMap<String, V>,
        theirs: &std::collections::HashMap<String, V>,
    ) -> impl Iterator<Item = String> {
        ours.keys()
            .filter(|name| !theirs.contains_key(*name))
            .cloned()
    }
    let mut own: HashSet<String> = beyond(template.scalar_functions(), builtin.scalar_functions())
        .chain(beyond(
            template.aggregate_functions(),
            builtin.aggregate_functions(),
        ))
        .chain(beyond(
            template.window_functions(),
            builtin.window_functions(),
        ))
        .collect();
    // Per-session functions (`ai`) are registered after the template.
    own.insert("ai".into());
    own
}

/// Whether `plan` runs over workers: its root is datafusion-distributed's `DistributedExec`.
pub fn is_distributed(plan: &Arc<dyn datafusion::physical_plan::ExecutionPlan>) -> bool {
    plan.is::<datafusion_distributed::DistributedExec>()
}

/// The `workers()` table function over the workers `options` list (see [`workers_table`]):
/// `distribution`'s live list and channels when the coordinator distributes (what it finds is
/// recorded there), else a list and channels of its own.
///
/// # Errors
/// [`Error::Config`] for a worker URL that does not parse, or TLS files that cannot be read.
pub fn workers_function(
    options: &DistributedOptions,
    distribution: Option<&Distribution>,
) -> Result<workers_table::WorkersFunction> {
    let (live, channels) = match distribution {
        Some(d) => (d.workers.clone(), d.channels.clone()),
        None => (
            LiveWorkers::new(live::WorkerList::new(options).read()?),
            WorkerChannels::new(options)?,
        ),
    };
    Ok(workers_table::WorkersFunction::new(
        live,
        options.secret.clone(),
        channels,
    ))
}

/// A worker URL as datafusion-distributed dials it: `grpc://` (or `http://`) becomes
/// `http://`, `grpc+tls://` (or `https://`) becomes `https://`.
///
/// # Errors
/// [`Error::Config`] naming the URL.
fn worker_url(text: &str) -> Result<Url> {
    let bad =
        |e: &dyn std::fmt::Display| Error::Config(format!("[distributed] worker `{text}`: {e}"));
    let url = Url::parse(text).map_err(|e| bad(&e))?;
    let scheme = match url.scheme() {
        "http" | "grpc" => "http",
        "https" | "grpc+tls" => "https",
        other => {
            return Err(bad(&format!(
                "scheme {other}:// is not supported; use grpc://HOST:PORT or grpc+tls://HOST:PORT"
            )));
        }
    };
    if url.port().is_none() && !url.scheme().starts_with("http") {
        return Err(bad(&"give HOST:PORT"));
    }
    let rest = &text[url.scheme().len()..];
    let url = Url::parse(&format!("{scheme}{rest}")).map_err(|e| bad(&e))?;
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad(&"give HOST:PORT"));
    }
    Ok(url)
}

/// The metadata every task carries: the secret and the catalog id.
fn task_headers(secret: &str, catalog_id: &str) -> Result<http::HeaderMap> {
    let mut headers = http::HeaderMap::new();
    headers.insert(SECRET_HEADER, secret_value(secret)?);
    headers.insert(
        CATALOG_HEADER,
        http::HeaderValue::from_str(catalog_id)
            .map_err(|_| Error::Internal(format!("catalog id {catalog_id:?} is not ASCII")))?,
    );
    Ok(headers)
}

fn secret_value(secret: &str) -> Result<http::HeaderValue> {
    let mut value = http::HeaderValue::from_str(secret)
        .map_err(|_| Error::Config("[distributed] secret must be printable ASCII".into()))?;
    value.set_sensitive(true);
    Ok(value)
}

/// `lakehouse doctor`'s worker check: every worker `options` list (fixed and from the workers
/// file), probed once with `GetWorkerInfo` within the worker timeout; per worker its URL as
/// configured and its version, or why it did not answer.
///
/// # Errors
/// [`crate::Error::Config`] for an unreadable workers file, a bad URL or TLS settings.
pub async fn check_workers(
    options: &DistributedOptions,
) -> crate::Result<Vec<(String, std::result::Result<String, String>)>> {
    let listed = live::WorkerList::new(options).read()?;
    let channels = WorkerChannels::new(options)?;
    let answers = workers_table::probe_all(&listed, options.secret.as_deref(), &channels).await;
    Ok(listed
        .iter()
        .zip(answers)
        .map(|((shown, _), answer)| {
            (
                shown.clone(),
                answer.map(|probe| probe.version().to_string()),
            )
        })
        .collect())
}
