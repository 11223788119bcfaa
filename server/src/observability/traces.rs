//! OpenTelemetry traces: spans made with `tracing` are exported over OTLP/gRPC (the
//! `opentelemetry-otlp` tonic exporter, on our tonic 0.14) through `tracing-opentelemetry`,
//! and W3C trace context (`traceparent`, `tracestate`) is read from requests and passed on to
//! workers.
//!
//! The span tree of a query: an RPC span per Flight call (named after the method, e.g.
//! `GetFlightInfo`, `DoGet`; parent: the client's `traceparent`), with children `plan`,
//! `admission` (waiting for a slot), `execute` (DataFusion's per-operator metrics in the
//! `datafusion.metrics` attribute when the stream ends), `commit` (catalog commits),
//! `model_call` (embedding and chat requests) and, on each worker of a distributed query,
//! `worker_task` (parent: the coordinator span that planned it). docs/operations.md shows it.

use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::ObservabilityOptions;
use crate::error::{Error, Result};

/// The service name spans carry when `OTEL_SERVICE_NAME` is unset.
pub const DEFAULT_SERVICE_NAME: &str = "lakehouse";

/// The OTLP/gRPC endpoint to export to: `--otlp-endpoint` / `[observability] otlp_endpoint`,
/// else the standard `OTEL_EXPORTER_OTLP_ENDPOINT`; `None`: traces are off.
pub fn endpoint(options: &ObservabilityOptions) -> Option<String> {
    options.otlp_endpoint.clone().or_else(|| {
        std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT")
            .ok()
            .filter(|v| !v.is_empty())
    })
}

/// An exporter of spans to `endpoint` (batched, in the background) and the `tracing` layer
/// feeding it; installs the W3C trace-context propagator. Must run inside the Tokio runtime.
///
/// # Errors
/// [`Error::Config`] when the exporter cannot be built (an invalid endpoint URL).
pub fn layer<S>(
    endpoint: &str,
) -> Result<(
    tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::Tracer>,
    SdkTracerProvider,
)>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    use opentelemetry_otlp::WithExportConfig;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .build()
        .map_err(|e| Error::Config(format!("--otlp-endpoint {endpoint}: {e}")))?;
    let mut resource = opentelemetry_sdk::Resource::builder();
    if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name(DEFAULT_SERVICE_NAME);
    }
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build();
    opentelemetry::global::set_text_map_propagator(
        opentelemetry_sdk::propagation::TraceContextPropagator::new(),
    );
    EXPORTING.store(true, std::sync::atomic::Ordering::Relaxed);
    let tracer = provider.tracer("lakehouse");
    Ok((tracing_opentelemetry::layer().with_tracer(tracer), provider))
}

/// Set once [`layer`] has built the exporter.
static EXPORTING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether spans are exported (a span attribute that costs work to build, such as the plan with
/// its metrics, is only worth building then).
pub fn exporting() -> bool {
    EXPORTING.load(std::sync::atomic::Ordering::Relaxed)
}

/// Reads trace context from HTTP/gRPC headers.
struct Headers<'a>(&'a http::HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

/// Writes trace context into HTTP/gRPC headers.
struct HeadersMut<'a>(&'a mut http::HeaderMap);

impl Injector for HeadersMut<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(key.as_bytes()),
            http::HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

/// Makes `span` a child of the trace context in `headers` (`traceparent`), when they carry one.
pub fn set_parent_from(span: &tracing::Span, headers: &http::HeaderMap) {
    let parent = opentelemetry::global::get_text_map_propagator(|p| p.extract(&Headers(headers)));
    use opentelemetry::trace::TraceContextExt as _;
    if parent.span().span_context().is_valid() {
        let _ = span.set_parent(parent);
    }
}

/// The trace context of the current span as headers (`traceparent`, `tracestate`); empty when
/// traces are off or no span is current.
pub fn current_headers() -> http::HeaderMap {
    let mut headers = http::HeaderMap::new();
    let context = tracing::Span::current().context();
    opentelemetry::global::get_text_map_propagator(|p| {
        p.inject_context(&context, &mut HeadersMut(&mut headers))
    });
    headers
}
