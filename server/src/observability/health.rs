//! Liveness and readiness: `/healthz`, `/readyz` and `/metrics` over HTTP/1.1 on the metrics
//! listener (axum), and the standard gRPC health service (`grpc.health.v1.Health`, from
//! tonic-health) on the Flight port, which answers without credentials.
//!
//! [`Readiness`] is the one switch both follow: ready once the server serves (storage opened,
//! catalog loaded), not ready again as soon as shutdown begins, while in-flight requests
//! finish. `/readyz` also checks that storage answers (a list of the catalog root, bounded by
//! [`STORAGE_PROBE_TIMEOUT`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use lakehouse_catalog::Catalog;
use tokio::net::TcpListener;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::error::{Error, Result};

/// How long `/readyz` waits for storage to answer before it reports not ready.
pub const STORAGE_PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Whether the server takes new work; shared by `/readyz` and the gRPC health service.
pub struct Readiness {
    ready: AtomicBool,
    reporter: HealthReporter,
}

impl Readiness {
    /// Not ready yet, with the gRPC health `reporter` to keep in step.
    pub fn new(reporter: HealthReporter) -> Self {
        Self {
            ready: AtomicBool::new(false),
            reporter,
        }
    }

    /// Marks the server ready (`SERVING`) or not (`NOT_SERVING`) for the whole server (the
    /// empty service name) and the Flight service.
    pub async fn set(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
        let status = if ready {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        self.reporter.set_service_status("", status).await;
        self.reporter
            .set_service_status("arrow.flight.protocol.FlightService", status)
            .await;
    }

    /// Whether [`Self::set`] last said ready.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }
}

/// What the HTTP endpoints read.
#[derive(Clone)]
pub struct Endpoints {
    /// The readiness switch.
    pub readiness: Arc<Readiness>,
    /// The catalog whose storage `/readyz` probes.
    pub catalog: Arc<Catalog>,
    /// Sets the gauges (queries, memory pool, hot cache) before each scrape of `/metrics`.
    pub gauges: Arc<dyn Fn() + Send + Sync>,
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `listener` until `stop` completes.
///
/// # Errors
/// [`Error::Io`] when the listener fails.
pub async fn serve_http(
    listener: TcpListener,
    endpoints: Endpoints,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(endpoints);
    axum::serve(listener, app)
        .with_graceful_shutdown(stop)
        .await
        .map_err(|source| Error::Io {
            context: "serving /metrics".into(),
            source,
        })
}

async fn metrics(State(endpoints): State<Endpoints>) -> impl IntoResponse {
    (endpoints.gauges)();
    let handle = super::metrics::handle();
    handle.run_upkeep();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        handle.render(),
    )
}

async fn readyz(State(endpoints): State<Endpoints>) -> (StatusCode, String) {
    if !endpoints.readiness.is_ready() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: starting or shutting down\n".into(),
        );
    }
    match tokio::time::timeout(STORAGE_PROBE_TIMEOUT, endpoints.catalog.probe_storage()).await {
        Ok(Ok(())) => (StatusCode::OK, "ready\n".into()),
        Ok(Err(e)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: storage: {e}\n"),
        ),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "not ready: storage did not answer within {} s\n",
                STORAGE_PROBE_TIMEOUT.as_secs()
            ),
        ),
    }
}
