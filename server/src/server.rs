//! [`Server`]: the catalog, the query engine and the Flight SQL service, served on a listener
//! the caller has already bound (tests bind `127.0.0.1:0`).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use arrow_flight::flight_service_server::FlightServiceServer;
use lakehouse_catalog::{Catalog, StorageLocation};
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};

use crate::auth::{AuthMode, Authenticator};
use crate::config::ServeConfig;
use crate::error::{Error, Result};
use crate::flight::{LakehouseFlightService, LakehouseFlightSql, MAX_DECODING_MESSAGE_BYTES};
use crate::observability::health::{Endpoints, Readiness, serve_http};
use crate::query::QueryEngine;
use crate::sample;

/// Largest request metadata (HTTP/2 header list) the server accepts, in bytes.
pub const MAX_HEADER_LIST_BYTES: u32 = 16 * 1024 * 1024;

/// A ready-to-serve Lakehouse: storage opened, catalog rebuilt, sample data loaded.
pub struct Server {
    catalog: Arc<Catalog>,
    service: Arc<LakehouseFlightSql>,
    auth: Arc<Authenticator>,
    insecure_no_auth: bool,
    tls: Option<ServerTlsConfig>,
    /// The distributed worker service, mounted when `[distributed] secret` is set.
    worker: Option<(datafusion_distributed::Worker, String)>,
    /// `lakehouse worker`: the worker service only, no Flight SQL.
    worker_only: bool,
    /// The audit log (`[audit] path`), when on.
    audit: Option<Arc<crate::observability::audit::AuditLog>>,
    /// The listener of `/metrics`, `/healthz` and `/readyz`, when on.
    metrics_listener: Option<TcpListener>,
}

/// The TLS configuration of `config`, with the PEM files read now; `None` without TLS.
///
/// # Errors
/// [`Error::Config`] naming the file that is missing or unreadable, or a certificate given
/// without its key (or the reverse), or a client CA without a certificate.
fn tls_config(config: &ServeConfig) -> Result<Option<ServerTlsConfig>> {
    let read = |path: &std::path::Path| {
        std::fs::read(path)
            .map_err(|e| Error::Config(format!("cannot read {}: {e}", path.display())))
    };
    match (&config.tls_cert, &config.tls_key) {
        (None, None) => {
            if config.tls_client_ca.is_some() {
                return Err(Error::Config(
                    "--tls-client-ca needs --tls-cert and --tls-key".into(),
                ));
            }
            Ok(None)
        }
        (Some(cert), Some(key)) => {
            lakehouse_client::install_crypto_provider();
            let mut tls =
                ServerTlsConfig::new().identity(Identity::from_pem(read(cert)?, read(key)?));
            if let Some(ca) = &config.tls_client_ca {
                tls = tls.client_ca_root(Certificate::from_pem(read(ca)?));
            }
            Ok(Some(tls))
        }
        _ => Err(Error::Config(
            "--tls-cert and --tls-key must be given together".into(),
        )),
    }
}

impl Server {
    /// Opens storage, rebuilds the catalog from it, optionally removes files of failed commits
    /// and creates the sample data, and prepares the Flight SQL service.
    ///
    /// # Errors
    /// Storage, catalog or configuration errors.
    pub async fn new(config: &ServeConfig) -> Result<Self> {
        let tls = tls_config(config)?;
        let auth = Arc::new(Authenticator::new(&config.auth)?);
        let audit = crate::observability::audit::AuditLog::open(&config.audit)?;
        let location = StorageLocation::open(&config.storage)?;
        let catalog = Arc::new(Catalog::open(location).await?);
        if config.cleanup_on_start {
            let report = catalog
                .cleanup(Duration::from_secs(config.cleanup_grace_secs), false)
                .await?;
            tracing::info!(
                deleted = report.deleted.len(),
                bytes = report.bytes_deleted,
                "removed files of failed commits"
            );
        }
        if let Some(sample) = config.sample {
            sample::load(&catalog, sample).await?;
        }
        let engine = QueryEngine::new(
            Arc::clone(&catalog),
            &config.query,
            &config.embedding,
            &config.chat,
            &config.maintenance,
            &config.cache,
        )
        .await?
        .with_distribution(&config.distributed)?
        .with_audit(audit.clone());
        let worker = match &config.distributed.secret {
            Some(secret) => Some((
                crate::distributed::worker(
                    engine.runtime_env(),
                    secret,
                    catalog.id(),
                    crate::distributed::WorkerChannels::new(&config.distributed)?,
                )?,
                secret.clone(),
            )),
            None => None,
        };
        if config.observability.metrics_listen.is_some() {
            crate::observability::metrics::handle();
        }
        let service = Arc::new(LakehouseFlightSql::new(engine)?);
        Ok(Self {
            catalog,
            service,
            auth,
            insecure_no_auth: config.auth.insecure_no_auth,
            tls,
            worker,
            worker_only: false,
            audit,
            metrics_listener: None,
        })
    }

    /// A `lakehouse worker`: storage opened and the catalog rebuilt as for [`Server::new`]
    /// (no sample data, no clean-up), serving only the distributed worker service.
    ///
    /// # Errors
    /// As [`Server::new`]; [`Error::Config`] when `[distributed] secret` is not set.
    pub async fn new_worker(config: &ServeConfig) -> Result<Self> {
        if config.distributed.secret.is_none() {
            return Err(Error::Config(
                "a worker needs the cluster secret: set [distributed] secret in the config \
                 file or LAKEHOUSE_DISTRIBUTED_SECRET (the same as the coordinator's)"
                    .into(),
            ));
        }
        let config = ServeConfig {
            sample: None,
            cleanup_on_start: false,
            distributed: crate::distributed::DistributedOptions {
                workers: Vec::new(),
                ..config.distributed.clone()
            },
            ..config.clone()
        };
        let mut server = Self::new(&config).await?;
        server.worker_only = true;
        Ok(server)
    }

    /// Serves `/metrics`, `/healthz` and `/readyz` on `listener` too (from [`Self::serve`]
    /// until it returns); see [`crate::observability::health`].
    pub fn with_metrics_listener(mut self, listener: TcpListener) -> Self {
        crate::observability::metrics::handle();
        self.metrics_listener = Some(listener);
        self
    }

    /// The audit log, when `[audit] path` is set.
    pub fn audit(&self) -> Option<&Arc<crate::observability::audit::AuditLog>> {
        self.audit.as_ref()
    }

    /// Admission control and limits of the server's queries (running count, cancellation).
    pub fn admission(&self) -> Arc<crate::query::limits::Admission> {
        Arc::clone(self.service.admission())
    }

    /// The catalog the server serves.
    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }

    /// Serves Flight SQL on `listener` until `shutdown` completes, then stops accepting and
    /// returns once in-flight requests have finished.
    ///
    /// # Errors
    /// [`Error::Config`] when auth is off and `listener` is not on a loopback address (unless
    /// `auth.insecure_no_auth`); [`Error::Transport`] when the transport fails.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<()> {
        let addr = listener.local_addr().map_err(|source| Error::Io {
            context: "listener address".into(),
            source,
        })?;
        if self.auth.mode() == AuthMode::None && !addr.ip().is_loopback() && !self.worker_only {
            if !self.insecure_no_auth {
                return Err(Error::Config(format!(
                    "refusing to serve without authentication on {addr}, which is not a \
                     loopback address: use --auth basic with users in the config file, or \
                     --insecure-no-auth to allow it"
                )));
            }
            tracing::warn!(%addr, "serving WITHOUT authentication on a non-loopback address");
        }
        let data_cache = self.service.data_cache().clone();
        let gauges = self.service.gauges(!self.worker_only);
        let service = FlightServiceServer::new(LakehouseFlightService::new(
            self.service,
            self.auth,
            self.audit.clone(),
        ))
        .max_decoding_message_size(MAX_DECODING_MESSAGE_BYTES);
        tracing::info!(%addr, tls = self.tls.is_some(), worker = self.worker.is_some(),
            flight_sql = !self.worker_only, "serving");
        // TCP_NODELAY: without it each small response waits for the client's delayed ACK
        // (~40 ms per RPC, and a query takes two). tonic sets it only on listeners it binds.
        let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
        // HTTP/2 flow-control windows sized by measuring the bandwidth-delay product (as gRPC's
        // own implementations do), not hyper's fixed 64 KiB, so large uploads (`lakehouse
        // ingest`) are not held back by window updates.
        let mut builder = tonic::transport::Server::builder()
            .http2_adaptive_window(Some(true))
            // A distributed task's metadata carries the deletion vectors of its files
            // (`distributed::ScanDeletes`, ~200 bytes per file with deletes): room for tens of
            // thousands of them, where hyper's default stops at 16 KiB.
            .http2_max_header_list_size(MAX_HEADER_LIST_BYTES);
        if let Some(tls) = self.tls {
            builder = builder.tls_config(tls)?;
        }
        let flight_sql = (!self.worker_only).then_some(service);
        let worker = self.worker.map(|(worker, secret)| {
            crate::distributed::RunningTasks::new(
                tonic::service::interceptor::InterceptedService::new(
                    worker.into_worker_server(),
                    crate::distributed::check_secret(&secret),
                ),
            )
        });
        // Health answers without credentials: it is its own service, outside the Flight
        // service's authentication and the worker secret.
        let (reporter, health) = tonic_health::server::health_reporter();
        let readiness = Arc::new(Readiness::new(reporter));
        let (http_stop, http_stopped) = tokio::sync::oneshot::channel::<()>();
        let http = self.metrics_listener.map(|listener| {
            let endpoints = Endpoints {
                readiness: Arc::clone(&readiness),
                catalog: Arc::clone(&self.catalog),
                gauges,
            };
            tokio::spawn(serve_http(listener, endpoints, async move {
                let _ = http_stopped.await;
            }))
        });
        readiness.set(true).await;
        let shutdown = {
            let readiness = Arc::clone(&readiness);
            async move {
                shutdown.await;
                // Not ready from the first moment of shutdown, while requests finish.
                readiness.set(false).await;
                tracing::info!("not ready: shutting down");
            }
        };
        let served = builder
            .add_service(health)
            .add_optional_service(flight_sql)
            .add_optional_service(worker)
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await;
        let _ = http_stop.send(());
        if let Some(http) = http {
            let _ = http.await;
        }
        if let Some(audit) = &self.audit {
            audit.flush().await;
        }
        served?;
        // The disk tier writes in the background: finish what is queued, so a restart finds it.
        data_cache.close().await;
        tracing::info!("server stopped");
        Ok(())
    }
}
