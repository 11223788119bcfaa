//! `workers()`: the coordinator's view of its workers, probed when the query runs.
//!
//! Schema: `url` Utf8 (as configured), `state` Utf8 (`up` when the worker answered
//! `GetWorkerInfo` within `[distributed] worker_timeout_secs`, else `down`), `version` Utf8
//! (the worker's Lakehouse version; null when down), `latency_ms` Float64 (the probe's round
//! trip; null when down), `running_tasks` UInt64 (the tasks of distributed queries the worker
//! is running, [`super::tasks`]; null when down), `error` Utf8 (why it is down; null when up).
//! One row per listed worker, in configuration order; no rows without workers.

use std::sync::Arc;
use std::time::Instant;

use datafusion::arrow::array::{ArrayRef, Float64Array, RecordBatch, StringArray, UInt64Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::execution::TaskContext;
use url::Url;

use super::tasks::RUNNING_TASKS_HEADER;
use super::{LiveWorkers, SECRET_HEADER, WorkerChannels};

/// The function's name.
pub const NAME: &str = "workers";

/// `GetWorkerInfoResponse` of datafusion-distributed's `worker.proto` (field 1, the version).
#[derive(Clone, PartialEq, prost::Message)]
struct WorkerInfo {
    #[prost(string, tag = "1")]
    version: String,
}

/// What a worker answered to a probe.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Probe {
    /// Its Lakehouse version.
    version: String,
    /// The call's round trip, in ms.
    latency_ms: f64,
    /// The tasks it is running; `None` when it did not say (another build).
    running_tasks: Option<u64>,
}

impl Probe {
    /// The worker's Lakehouse version.
    pub(super) fn version(&self) -> &str {
        &self.version
    }
}

/// A probe's answer, or why the worker is down.
pub(super) type ProbeResult = std::result::Result<Probe, String>;

/// The `workers()` table function (see the module docs).
#[derive(Debug, Clone)]
pub struct WorkersFunction {
    workers: LiveWorkers,
    secret: Option<String>,
    channels: WorkerChannels,
}

impl WorkersFunction {
    /// Probes the listed `workers` with `secret` over `channels` (each within its timeout),
    /// and records the answers in `workers` (the planner then skips the ones down).
    pub fn new(workers: LiveWorkers, secret: Option<String>, channels: WorkerChannels) -> Self {
        Self {
            workers,
            secret,
            channels,
        }
    }
}

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("url", DataType::Utf8, false),
        Field::new("state", DataType::Utf8, false),
        Field::new("version", DataType::Utf8, true),
        Field::new("latency_ms", DataType::Float64, true),
        Field::new("running_tasks", DataType::UInt64, true),
        Field::new("error", DataType::Utf8, true),
    ]))
}

impl TableFunctionImpl for WorkersFunction {
    fn call_with_args(
        &self,
        args: TableFunctionArgs,
    ) -> datafusion::error::Result<Arc<dyn TableProvider>> {
        lakehouse_vector::deferred_table_without_arguments(NAME, &args, schema(), self.clone())
    }
}

#[async_trait::async_trait]
impl lakehouse_vector::Deferred for WorkersFunction {
    async fn run(self, _ctx: Arc<TaskContext>) -> datafusion::error::Result<RecordBatch> {
        let (listed, results) = self
            .workers
            .probe(self.secret.as_deref(), &self.channels)
            .await;
        fn up(r: &ProbeResult) -> Option<&Probe> {
            r.as_ref().ok()
        }
        let columns: Vec<ArrayRef> = vec![
            Arc::new(
                listed
                    .iter()
                    .map(|(shown, _)| Some(shown.as_str()))
                    .collect::<StringArray>(),
            ),
            Arc::new(
                results
                    .iter()
                    .map(|r| Some(if r.is_ok() { "up" } else { "down" }))
                    .collect::<StringArray>(),
            ),
            Arc::new(
                results
                    .iter()
                    .map(|r| up(r).map(|p| p.version.as_str()))
                    .collect::<StringArray>(),
            ),
            Arc::new(
                results
                    .iter()
                    .map(|r| up(r).map(|p| p.latency_ms))
                    .collect::<Float64Array>(),
            ),
            Arc::new(
                results
                    .iter()
                    .map(|r| up(r).and_then(|p| p.running_tasks))
                    .collect::<UInt64Array>(),
            ),
            Arc::new(
                results
                    .iter()
                    .map(|r| r.as_ref().err().cloned())
                    .collect::<StringArray>(),
            ),
        ];
        Ok(RecordBatch::try_new(schema(), columns)?)
    }
}

/// Probes every listed worker at once ([`probe`]), in list order.
pub(super) async fn probe_all(
    listed: &[(String, Url)],
    secret: Option<&str>,
    channels: &WorkerChannels,
) -> Vec<ProbeResult> {
    futures::future::join_all(listed.iter().map(|(_, url)| probe(url, secret, channels))).await
}

/// One `GetWorkerInfo` call: what the worker answered, or why it failed.
async fn probe(url: &Url, secret: Option<&str>, channels: &WorkerChannels) -> ProbeResult {
    let started = Instant::now();
    let timeout = channels.timeout();
    let call = async {
        // A connection of its own: a probe must see a worker that is back, not a cached channel.
        let channel = channels
            .endpoint(url)?
            .connect()
            .await
            .map_err(|e| format!("cannot connect: {e}"))?;
        let mut grpc = tonic::client::Grpc::new(channel);
        grpc.ready().await.map_err(|e| e.to_string())?;
        let mut request = tonic::Request::new(());
        if let Some(secret) = secret {
            let value = secret.parse().map_err(|_| "bad secret".to_string())?;
            request.metadata_mut().insert(SECRET_HEADER, value);
        }
        let path = http::uri::PathAndQuery::from_static("/worker.WorkerService/GetWorkerInfo");
        let codec = tonic_prost::ProstCodec::<(), WorkerInfo>::default();
        let response = grpc
            .unary(request, path, codec)
            .await
            .map_err(|s| format!("{:?}: {}", s.code(), s.message()))?;
        let running_tasks = response
            .metadata()
            .get(RUNNING_TASKS_HEADER)
            .and_then(|v| v.to_str().ok()?.parse().ok());
        Ok(Probe {
            version: response.into_inner().version,
            latency_ms: started.elapsed().as_secs_f64() * 1000.0,
            running_tasks,
        })
    };
    match tokio::time::timeout(timeout, call).await {
        Ok(Ok(probe)) => Ok(probe),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
    }
}
