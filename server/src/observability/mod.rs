//! What the server tells an operator: Prometheus metrics ([`metrics`]), OpenTelemetry traces
//! ([`traces`]), `/healthz` and
//! `/readyz` with the gRPC health service ([`health`]), and one record per RPC ([`call`])
//! that feeds both the metrics and the audit log. docs/operations.md is the operator's guide.

pub mod audit;
pub mod audit_table;
pub mod call;
pub mod health;
pub mod metrics;
pub mod traces;

use serde::{Deserialize, Serialize};

/// The `[observability]` section.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ObservabilityOptions {
    /// `HOST:PORT` (or a bare port, bound on 127.0.0.1) of the HTTP listener serving
    /// `/metrics` (Prometheus text format), `/healthz` and `/readyz`; off when unset.
    pub metrics_listen: Option<String>,
    /// OTLP/gRPC endpoint (`http://collector:4317`) to export trace spans to; off when unset
    /// (and `OTEL_EXPORTER_OTLP_ENDPOINT` is unset). See [`traces`].
    pub otlp_endpoint: Option<String>,
}

impl ObservabilityOptions {
    /// The address to bind for [`Self::metrics_listen`]: a bare port means loopback.
    pub fn metrics_address(&self) -> Option<String> {
        self.metrics_listen
            .as_deref()
            .map(crate::config::listen_address)
    }
}
