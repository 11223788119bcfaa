//! How the coordinator and workers dial workers: one cached tonic channel per worker URL with
//! connect and HTTP/2 keep-alive timeouts of `[distributed] worker_timeout_secs`, so a worker
//! that dies or stops answering mid-query fails the query within that time instead of hanging.
//! Built on datafusion-distributed's `ChannelResolver` hook (its default resolver has no
//! timeouts).

use std::time::Duration;

use async_trait::async_trait;
use datafusion::error::DataFusionError;
use datafusion_distributed::grpc::{BoxCloneSyncChannel, create_worker_client};
use datafusion_distributed::{ChannelResolver, WorkerChannel};
use url::Url;

/// Channels to workers, cached by URL (see the module docs).
#[derive(Clone)]
pub struct WorkerChannels {
    timeout: Duration,
    channels: moka::future::Cache<Url, BoxCloneSyncChannel>,
}

impl std::fmt::Debug for WorkerChannels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerChannels")
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl WorkerChannels {
    /// Channels whose connects and keep-alive pings time out after `timeout`.
    pub fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            channels: moka::future::Cache::builder()
                .max_capacity(4096)
                .time_to_idle(Duration::from_secs(300))
                .build(),
        }
    }

    async fn channel(&self, url: &Url) -> Result<BoxCloneSyncChannel, DataFusionError> {
        let timeout = self.timeout;
        self.channels
            .try_get_with(url.clone(), async move {
                let endpoint = tonic::transport::Endpoint::from_shared(url.to_string())
                    .map_err(|e| DataFusionError::Configuration(format!("worker {url}: {e}")))?
                    .connect_timeout(timeout)
                    .http2_keep_alive_interval((timeout / 2).max(Duration::from_secs(1)))
                    .keep_alive_timeout(timeout)
                    .keep_alive_while_idle(true)
                    .tcp_nodelay(true)
                    .http2_adaptive_window(true);
                let channel = endpoint.connect().await.map_err(|e| {
                    DataFusionError::Execution(format!("worker {url} is unavailable: {e}"))
                })?;
                Ok::<_, DataFusionError>(BoxCloneSyncChannel::new(channel))
            })
            .await
            .map_err(DataFusionError::Shared)
    }
}

#[async_trait]
impl ChannelResolver for WorkerChannels {
    async fn get_worker_client_for_url(
        &self,
        url: &Url,
    ) -> Result<Box<dyn WorkerChannel>, DataFusionError> {
        Ok(create_worker_client(self.channel(url).await?))
    }
}
