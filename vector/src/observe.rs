//! Metrics of model calls and index builds, recorded through the `metrics` facade (the server
//! renders them at `/metrics`; see docs/operations.md).

use std::time::Instant;

/// Counter: model calls by `kind` (`embedding`, `chat`), `model` (configured name) and
/// `outcome` (`ok` or the error kind, e.g. `unavailable`). One call is one batch of texts or
/// one chat answer, retries included.
pub const MODEL_CALLS_METRIC: &str = "lakehouse_model_calls_total";
/// Histogram (seconds): model call duration by `kind` and `model`, retries included.
pub const MODEL_CALL_SECONDS_METRIC: &str = "lakehouse_model_call_duration_seconds";
/// Counter: Lance index builds by `index_type` (`IVF_PQ`, `IVF_FLAT`, `IVF_HNSW_SQ`, `FTS`)
/// and `outcome` (`ok`, `error`).
pub const INDEX_BUILDS_METRIC: &str = "lakehouse_index_builds_total";
/// Histogram (seconds): Lance index build duration by `index_type`.
pub const INDEX_BUILD_SECONDS_METRIC: &str = "lakehouse_index_build_duration_seconds";

/// Records one model call of `kind` to `model` that started at `started`.
pub(crate) fn model_call<T>(
    kind: &'static str,
    model: &str,
    started: Instant,
    result: &crate::Result<T>,
) {
    let outcome = match result {
        Ok(_) => "ok",
        Err(e) => e.kind(),
    };
    metrics::counter!(MODEL_CALLS_METRIC, "kind" => kind, "model" => model.to_string(),
        "outcome" => outcome)
    .increment(1);
    metrics::histogram!(MODEL_CALL_SECONDS_METRIC, "kind" => kind, "model" => model.to_string())
        .record(started.elapsed().as_secs_f64());
}

/// Records one index build of `index_type` that started at `started`.
pub(crate) fn index_build<T>(
    index_type: &'static str,
    started: Instant,
    result: &crate::Result<T>,
) {
    let outcome = if result.is_ok() { "ok" } else { "error" };
    metrics::counter!(INDEX_BUILDS_METRIC, "index_type" => index_type, "outcome" => outcome)
        .increment(1);
    metrics::histogram!(INDEX_BUILD_SECONDS_METRIC, "index_type" => index_type)
        .record(started.elapsed().as_secs_f64());
}
