//! Prometheus metrics: the `metrics` facade records, `metrics-exporter-prometheus` renders the
//! text exposition format (version 0.0.4) that `/metrics` serves.
//!
//! Every metric the server, the catalog and the vector crate record is named and described in
//! [`DESCRIPTIONS`] (docs/operations.md lists them with their labels). Durations are seconds
//! (histograms with [`SECONDS_BUCKETS`]), sizes bytes. Gauges of state (running and queued
//! queries, memory pool, cache) are read when scraped ([`super::http`]).

use std::sync::OnceLock;

use metrics::Unit;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Counter: finished RPCs, by `rpc` (Flight method), `command` (Flight SQL command or action,
/// e.g. `CommandStatementQuery`; empty when none) and `code` (gRPC status code name, `Ok`
/// when it succeeded; for DoGet, the status the result stream ended with).
pub const RPCS: &str = "lakehouse_rpcs_total";
/// Histogram (seconds): RPC duration from the request to the last message sent, by `rpc` and
/// `command`.
pub const RPC_SECONDS: &str = "lakehouse_rpc_duration_seconds";
/// Histogram (seconds): planning a statement (parse, resolve tables, optimise).
pub const PLANNING_SECONDS: &str = "lakehouse_query_planning_seconds";
/// Histogram (seconds): waiting for a query slot (`query.max_concurrent_queries`).
pub const QUEUE_SECONDS: &str = "lakehouse_query_queue_seconds";
/// Histogram (seconds): executing a query, from its slot to the end of its result stream.
pub const EXECUTION_SECONDS: &str = "lakehouse_query_execution_seconds";
/// Histogram (seconds): from a query's slot to its first result batch.
pub const FIRST_BATCH_SECONDS: &str = "lakehouse_query_first_batch_seconds";
/// Counter: result rows streamed to clients (DoGet).
pub const RESULT_ROWS: &str = "lakehouse_result_rows_total";
/// Counter (bytes): Flight data streamed to clients (IPC header + body, after compression).
pub const RESULT_BYTES: &str = "lakehouse_result_bytes_total";
/// Counter: rows ingested by bulk ingest (`CommandStatementIngest`) and file ingest
/// (`lakehouse ingest`), by `table`.
pub const INGEST_ROWS: &str = "lakehouse_ingest_rows_total";
/// Counter (bytes): bytes received for ingest (Flight data or file bytes), by `table`.
pub const INGEST_BYTES: &str = "lakehouse_ingest_bytes_total";
/// Counter: compactions committed (`OPTIMIZE`, automatic compaction), by `table`.
pub const COMPACTIONS: &str = lakehouse_catalog::maintenance::COMPACTIONS_METRIC;
/// Gauge: queries holding a slot.
pub const QUERIES_RUNNING: &str = "lakehouse_queries_running";
/// Gauge: queries waiting for a slot.
pub const QUERIES_QUEUED: &str = "lakehouse_queries_queued";
/// Gauge (bytes): memory reserved in DataFusion's memory pool.
pub const MEMORY_RESERVED: &str = "lakehouse_memory_pool_reserved_bytes";
/// Counter: spill files written by operators (sorts, joins, aggregates) of finished queries.
pub const SPILLS: &str = "lakehouse_spills_total";
/// Counter (bytes): bytes spilled to disk by finished queries.
pub const SPILLED_BYTES: &str = "lakehouse_spilled_bytes_total";
/// Counter: range reads of the hot cache, by `result` (`memory_hit`, `disk_hit`, `miss`).
pub const CACHE_READS: &str = "lakehouse_cache_reads_total";
/// Counter (bytes): bytes read through the hot cache, by `result` as [`CACHE_READS`].
pub const CACHE_READ_BYTES: &str = "lakehouse_cache_read_bytes_total";
/// Gauge (bytes): bytes held in the hot cache's memory tier.
pub const CACHE_BYTES: &str = "lakehouse_cache_memory_bytes";
/// Counter: tasks of distributed queries a worker started (on workers).
pub const WORKER_TASKS: &str = "lakehouse_worker_tasks_total";
/// Gauge: tasks of distributed queries running on this worker (on workers).
pub const WORKER_TASKS_RUNNING: &str = "lakehouse_worker_tasks_running";
/// Counter: audit records dropped because the audit queue was full.
pub const AUDIT_DROPPED: &str = "lakehouse_audit_dropped_total";
/// Counter: audit records written.
pub const AUDIT_WRITTEN: &str = "lakehouse_audit_records_total";

/// Upper bounds (seconds) of the duration histograms' buckets: 1 ms to 5 min.
pub const SECONDS_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

/// Every metric with its unit and help text (the Prometheus `# HELP` line).
pub const DESCRIPTIONS: &[(&str, Option<Unit>, &str)] = &[
    (
        RPCS,
        None,
        "Finished RPCs by Flight method, Flight SQL command and gRPC status code",
    ),
    (
        RPC_SECONDS,
        Some(Unit::Seconds),
        "RPC duration, to the last message sent",
    ),
    (
        PLANNING_SECONDS,
        Some(Unit::Seconds),
        "Time to plan a statement",
    ),
    (
        QUEUE_SECONDS,
        Some(Unit::Seconds),
        "Time a query waited for a slot",
    ),
    (
        EXECUTION_SECONDS,
        Some(Unit::Seconds),
        "Query execution, slot to end of stream",
    ),
    (
        FIRST_BATCH_SECONDS,
        Some(Unit::Seconds),
        "Query slot to first result batch",
    ),
    (RESULT_ROWS, None, "Result rows streamed to clients"),
    (
        RESULT_BYTES,
        Some(Unit::Bytes),
        "Flight data bytes streamed to clients",
    ),
    (INGEST_ROWS, None, "Rows ingested by table"),
    (
        INGEST_BYTES,
        Some(Unit::Bytes),
        "Bytes received for ingest by table",
    ),
    (
        lakehouse_catalog::COMMITS_METRIC,
        None,
        "Table versions committed by table",
    ),
    (
        lakehouse_catalog::COMMIT_CONFLICTS_METRIC,
        None,
        "Commit attempts that lost the race for their version, by table",
    ),
    (COMPACTIONS, None, "Compactions committed by table"),
    (QUERIES_RUNNING, None, "Queries holding a slot"),
    (QUERIES_QUEUED, None, "Queries waiting for a slot"),
    (
        MEMORY_RESERVED,
        Some(Unit::Bytes),
        "Memory reserved in the query memory pool",
    ),
    (SPILLS, None, "Spill files written by finished queries"),
    (
        SPILLED_BYTES,
        Some(Unit::Bytes),
        "Bytes spilled to disk by finished queries",
    ),
    (CACHE_READS, None, "Hot-cache range reads by result"),
    (
        CACHE_READ_BYTES,
        Some(Unit::Bytes),
        "Bytes read through the hot cache by result",
    ),
    (
        CACHE_BYTES,
        Some(Unit::Bytes),
        "Bytes held in the hot cache's memory tier",
    ),
    (
        lakehouse_vector::MODEL_CALLS_METRIC,
        None,
        "Embedding and chat model calls by kind, model and outcome",
    ),
    (
        lakehouse_vector::MODEL_CALL_SECONDS_METRIC,
        Some(Unit::Seconds),
        "Model call duration by kind and model",
    ),
    (
        lakehouse_vector::INDEX_BUILDS_METRIC,
        None,
        "Lance index builds by index type and outcome",
    ),
    (
        lakehouse_vector::INDEX_BUILD_SECONDS_METRIC,
        Some(Unit::Seconds),
        "Lance index build duration by index type",
    ),
    (
        WORKER_TASKS,
        None,
        "Distributed-query tasks started on this worker",
    ),
    (
        WORKER_TASKS_RUNNING,
        None,
        "Distributed-query tasks running on this worker",
    ),
    (AUDIT_WRITTEN, None, "Audit records written"),
    (
        AUDIT_DROPPED,
        None,
        "Audit records dropped because the audit queue was full",
    ),
];

/// The process's Prometheus recorder, installed as the global `metrics` recorder on first use
/// (one per process: servers started in one process, as in tests, share it).
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
            .expect("non-empty buckets");
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was already installed; /metrics stays empty");
        }
        for (name, unit, help) in DESCRIPTIONS {
            match unit {
                Some(unit) => metrics::describe_counter!(*name, *unit, *help),
                None => metrics::describe_counter!(*name, *help),
            }
        }
        handle.clone()
    })
}

/// Seconds since `start`, for a histogram.
pub fn seconds_since(start: std::time::Instant) -> f64 {
    start.elapsed().as_secs_f64()
}
