//! How the coordinator and workers dial workers: one cached tonic channel per worker URL with
//! connect and HTTP/2 keep-alive timeouts of `[distributed] worker_timeout_secs`, so a worker
//! that dies or stops answering mid-query fails the query within that time instead of hanging.
//! Workers listed as `grpc+tls://` are dialled over TLS, trusting `[distributed] ca` and
//! presenting `client_cert` / `client_key` when given (mutual TLS). Built on
//! datafusion-distributed's `ChannelResolver` hook (its default resolver has no timeouts and
//! no TLS).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::physical_plan::metrics::ExecutionPlanMetricsSet;
use datafusion_distributed::grpc::{BoxCloneSyncChannel, create_worker_client};
use datafusion_distributed::{
    ChannelResolver, CoordinatorToWorkerMsg, ExecuteTaskRequest, GetWorkerInfoRequest,
    GetWorkerInfoResponse, WorkerChannel, WorkerToCoordinatorMsg,
};
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use http::HeaderMap;
use url::Url;

use super::LiveWorkers;

/// Channels to workers, cached by URL (see the module docs).
#[derive(Clone)]
pub struct WorkerChannels {
    timeout: Duration,
    /// For `https://` workers; `None` without `[distributed] ca`.
    tls: Option<tonic::transport::ClientTlsConfig>,
    channels: moka::future::Cache<Url, BoxCloneSyncChannel>,
    /// The coordinator's worker list: a worker whose connection fails leaves it at once.
    live: Option<LiveWorkers>,
}

impl std::fmt::Debug for WorkerChannels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerChannels")
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl WorkerChannels {
    /// Channels as `options` describe: connects and keep-alive pings time out after
    /// `worker_timeout_secs`; TLS as its `ca`, `client_cert` and `client_key` say.
    ///
    /// # Errors
    /// [`crate::Error::Config`] naming a file that cannot be read, a client certificate
    /// without its key (or the reverse), or one without `ca`.
    pub fn new(options: &super::DistributedOptions) -> crate::Result<Self> {
        Ok(Self {
            timeout: options.worker_timeout(),
            tls: client_tls(options)?,
            channels: moka::future::Cache::builder()
                .max_capacity(4096)
                .time_to_idle(Duration::from_secs(300))
                .build(),
            live: None,
        })
    }

    /// The endpoint of the worker at `url` (`http://` or `https://`), with the timeouts and,
    /// for `https://`, TLS.
    ///
    /// # Errors
    /// Why the URL cannot be dialled: not a URI, or TLS without `[distributed] ca`.
    pub(super) fn endpoint(
        &self,
        url: &Url,
    ) -> std::result::Result<tonic::transport::Endpoint, String> {
        let timeout = self.timeout;
        let mut endpoint = tonic::transport::Endpoint::from_shared(url.to_string())
            .map_err(|e| e.to_string())?
            .connect_timeout(timeout)
            .http2_keep_alive_interval((timeout / 2).max(Duration::from_secs(1)))
            .keep_alive_timeout(timeout)
            .keep_alive_while_idle(true)
            .tcp_nodelay(true)
            .http2_adaptive_window(true);
        if url.scheme() == "https" {
            let tls = self.tls.clone().ok_or_else(|| {
                "the worker speaks TLS (grpc+tls://): set [distributed] ca to the certificate \
                 that signed its --tls-cert"
                    .to_string()
            })?;
            endpoint = endpoint.tls_config(tls).map_err(|e| e.to_string())?;
        }
        Ok(endpoint)
    }

    /// How long connects, keep-alive pings and probes may take.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// These channels, marking a worker down in `live` when its connection fails.
    pub fn with_live_workers(mut self, live: LiveWorkers) -> Self {
        self.live = Some(live);
        self
    }

    /// `e` as [`crate::Error::WorkerUnavailable`] naming `url` when it is a connection failure
    /// (the worker then leaves the live list until a probe finds it again); otherwise `e`.
    ///
    /// A failure another worker relayed (it could not reach a third one, whose name its message
    /// carries) becomes [`crate::Error::WorkerUnavailable`] naming that third worker, which
    /// leaves the live list; the relaying worker stays.
    fn name_failure(&self, url: &Url, e: DataFusionError) -> DataFusionError {
        let shown = |url: &Url| match &self.live {
            Some(live) => live.configured(url),
            None => grpc_form(url),
        };
        if connection_failure(&e) {
            // The channel is broken: the next call reconnects.
            self.channels.invalidate(url).now_or_never();
            if let Some(live) = &self.live {
                live.mark_down(url);
            }
            return DataFusionError::External(Box::new(crate::Error::WorkerUnavailable {
                worker: shown(url),
                message: e.to_string(),
            }));
        }
        if let Some(message) = resources_exhausted(&e) {
            // A worker's own memory limit: the query's resource error, not the worker's failure.
            return DataFusionError::ResourcesExhausted(message);
        }
        match relayed_worker(&e) {
            Some(worker) => {
                if let Some(live) = &self.live {
                    live.mark_down_configured(&worker);
                }
                DataFusionError::External(Box::new(crate::Error::WorkerUnavailable {
                    worker,
                    message: format!("reported by worker {}", shown(url)),
                }))
            }
            None => e,
        }
    }

    async fn channel(&self, url: &Url) -> Result<BoxCloneSyncChannel, DataFusionError> {
        self.channels
            .try_get_with(url.clone(), async move {
                let endpoint = self
                    .endpoint(url)
                    .map_err(|e| DataFusionError::Configuration(format!("worker {url}: {e}")))?;
                let channel = endpoint
                    .connect()
                    .await
                    .map_err(|e| DataFusionError::External(Box::new(e)))?;
                Ok::<_, DataFusionError>(BoxCloneSyncChannel::new(channel))
            })
            .await
            .map_err(|e| self.name_failure(url, DataFusionError::Shared(e)))
    }
}

/// The TLS settings for `https://` workers `options` give; `None` without `ca`.
///
/// # Errors
/// [`crate::Error::Config`] naming a file that cannot be read, a client certificate without
/// its key (or the reverse), or one without `ca`.
fn client_tls(
    options: &super::DistributedOptions,
) -> crate::Result<Option<tonic::transport::ClientTlsConfig>> {
    use tonic::transport::{Certificate, ClientTlsConfig, Identity};
    let read = |path: &std::path::Path| {
        std::fs::read(path).map_err(|e| {
            crate::Error::Config(format!("[distributed] cannot read {}: {e}", path.display()))
        })
    };
    let identity = match (&options.client_cert, &options.client_key) {
        (None, None) => None,
        (Some(cert), Some(key)) => Some(Identity::from_pem(read(cert)?, read(key)?)),
        _ => {
            return Err(crate::Error::Config(
                "[distributed] client_cert and client_key must be given together".into(),
            ));
        }
    };
    let Some(ca) = &options.ca else {
        if identity.is_some() {
            return Err(crate::Error::Config(
                "[distributed] client_cert needs [distributed] ca (the certificate that signed \
                 the workers' --tls-cert)"
                    .into(),
            ));
        }
        return Ok(None);
    };
    lakehouse_client::install_crypto_provider();
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read(ca)?));
    if let Some(identity) = identity {
        tls = tls.identity(identity);
    }
    Ok(Some(tls))
}

/// `url` as users configure workers: `grpc://HOST:PORT`.
fn grpc_form(url: &Url) -> String {
    format!(
        "grpc://{}:{}",
        url.host_str().unwrap_or_default(),
        url.port_or_known_default().unwrap_or_default()
    )
}

/// The worker a relayed failure names: `worker grpc://HOST:PORT is unavailable` in the text
/// of an error another worker sent back ([`crate::Error::WorkerUnavailable`]'s message).
fn relayed_worker(e: &DataFusionError) -> Option<String> {
    let text = e.to_string();
    let start = text.find("worker grpc://")? + "worker ".len();
    let rest = &text[start..];
    let end = rest.find(" is unavailable")?;
    Some(rest[..end].to_string())
}

/// The message of a `ResourcesExhausted` error (a worker's memory pool refused an allocation)
/// that `e` wraps, however it crossed the wire.
fn resources_exhausted(e: &DataFusionError) -> Option<String> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cause {
        match err.downcast_ref::<DataFusionError>() {
            Some(DataFusionError::ResourcesExhausted(message)) => return Some(message.clone()),
            Some(DataFusionError::Shared(shared)) => {
                cause = Some(shared.as_ref());
                continue;
            }
            _ => {}
        }
        cause = err.source();
    }
    let text = e.to_string();
    let at = text.find("Resources exhausted: ")?;
    Some(text[at + "Resources exhausted: ".len()..].to_string())
}

/// Whether `e` (or an error it wraps) is a failed or broken connection to the worker called:
/// a tonic transport error, or a gRPC status `Unavailable`. (Errors relayed from further
/// workers arrive as text and are not this worker's failure.)
fn connection_failure(e: &DataFusionError) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cause {
        if err.is::<tonic::transport::Error>() {
            return true;
        }
        if let Some(status) = err.downcast_ref::<tonic::Status>()
            && status.code() == tonic::Code::Unavailable
        {
            return true;
        }
        if let Some(DataFusionError::Shared(shared)) = err.downcast_ref::<DataFusionError>() {
            cause = Some(shared.as_ref());
            continue;
        }
        cause = err.source();
    }
    false
}

/// A worker's client whose connection failures name the worker ([`WorkerChannels`]).
struct NamedChannel {
    inner: Box<dyn WorkerChannel>,
    url: Url,
    channels: WorkerChannels,
}

impl NamedChannel {
    fn name<T: Send + 'static>(
        &self,
        stream: BoxStream<'static, Result<T>>,
    ) -> BoxStream<'static, Result<T>> {
        let url = self.url.clone();
        let channels = self.channels.clone();
        stream
            .map(move |item| item.map_err(|e| channels.name_failure(&url, e)))
            .boxed()
    }
}

#[async_trait]
impl WorkerChannel for NamedChannel {
    async fn coordinator_channel(
        &mut self,
        headers: HeaderMap,
        c2w_stream: BoxStream<'static, CoordinatorToWorkerMsg>,
    ) -> Result<BoxStream<'static, Result<WorkerToCoordinatorMsg>>> {
        match self.inner.coordinator_channel(headers, c2w_stream).await {
            Ok(stream) => Ok(self.name(stream)),
            Err(e) => Err(self.channels.name_failure(&self.url, e)),
        }
    }

    async fn execute_task(
        &mut self,
        headers: HeaderMap,
        request: ExecuteTaskRequest,
        metrics: ExecutionPlanMetricsSet,
        task_ctx: &Arc<TaskContext>,
    ) -> Result<Vec<BoxStream<'static, Result<RecordBatch>>>> {
        match self
            .inner
            .execute_task(headers, request, metrics, task_ctx)
            .await
        {
            Ok(streams) => Ok(streams.into_iter().map(|s| self.name(s)).collect()),
            Err(e) => Err(self.channels.name_failure(&self.url, e)),
        }
    }

    async fn get_worker_info(
        &mut self,
        request: GetWorkerInfoRequest,
    ) -> Result<GetWorkerInfoResponse> {
        self.inner
            .get_worker_info(request)
            .await
            .map_err(|e| self.channels.name_failure(&self.url, e))
    }
}

#[async_trait]
impl ChannelResolver for WorkerChannels {
    async fn get_worker_client_for_url(
        &self,
        url: &Url,
    ) -> Result<Box<dyn WorkerChannel>, DataFusionError> {
        Ok(Box::new(NamedChannel {
            inner: create_worker_client(self.channel(url).await?),
            url: url.clone(),
            channels: self.clone(),
        }))
    }
}
