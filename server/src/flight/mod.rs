//! The Flight SQL surface: [`LakehouseFlightSql`] implements arrow-flight's `FlightSqlService`
//! and dispatches each command to its own module; [`LakehouseFlightService`] is the
//! `FlightService` actually served, delegating to it and answering GetSchema itself (the blanket
//! impl answers UNIMPLEMENTED there).

mod cancel;
pub mod column_metadata;
mod get_catalogs;
mod get_db_schemas;
mod get_keys;
mod get_sql_info;
mod get_table_types;
mod get_tables;
mod get_xdbc_type_info;
mod handshake;
mod ingest_file;
mod prepared_statement;
mod statement_ingest;
mod statement_query;
mod statement_update;

use std::pin::Pin;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow::ipc::CompressionType;
use arrow::ipc::writer::IpcWriteOptions;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::sql::ProstMessageExt;
use arrow_flight::sql::metadata::{SqlInfoData, XdbcTypeInfoData};
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest,
    ActionCreatePreparedStatementResult, CommandGetCatalogs, CommandGetCrossReference,
    CommandGetDbSchemas, CommandGetExportedKeys, CommandGetImportedKeys, CommandGetPrimaryKeys,
    CommandGetSqlInfo, CommandGetTableTypes, CommandGetTables, CommandGetXdbcTypeInfo,
    CommandPreparedStatementQuery, CommandStatementIngest, CommandStatementQuery,
    CommandStatementUpdate, SqlInfo, TicketStatementQuery,
};
use arrow_flight::{
    Action, Criteria, Empty, FlightData, FlightDescriptor, FlightEndpoint, FlightInfo,
    HandshakeRequest, HandshakeResponse, PollInfo, SchemaResult, Ticket,
};
use datafusion::execution::SendableRecordBatchStream;
use futures::{Stream, StreamExt, TryStreamExt};
use lakehouse_catalog::{Catalog, SchemaName};
use prost::Message as _;
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument;

use crate::auth::{AuthMode, Authenticator, Principal};
use crate::error::Error;
use crate::observability::audit::AuditLog;
use crate::observability::call::{Call, result_data, uncounted};
use crate::query::limits::{self, Admission, QueryGuard};
use crate::query::{PlannedQuery, QueryEngine, RequestScope};

/// Request header choosing the default schema of a call (connection default): unqualified
/// table names resolve there. JDBC: `...?x-lakehouse-schema=NAME` (the driver sends extra URL
/// properties as headers); ADBC: db option `adbc.flight.sql.rpc.call_header.x-lakehouse-schema`;
/// pyarrow: `FlightCallOptions(headers=[(b"x-lakehouse-schema", b"NAME")])`.
pub const SCHEMA_HEADER: &str = "x-lakehouse-schema";

/// Request header choosing compression of the Arrow IPC bodies of a DoGet's result: `zstd`,
/// `lz4` (LZ4 frame) or `none` (the default). Arrow IPC readers (Arrow C++/pyarrow, Go/ADBC,
/// Rust, Java with arrow-compression) decompress on their own. It pays where the network, not
/// the CPU, is the limit: see docs/limits.md. ADBC: db option
/// `adbc.flight.sql.rpc.call_header.x-lakehouse-ipc-compression`; pyarrow:
/// `FlightCallOptions(headers=[(b"x-lakehouse-ipc-compression", b"zstd")])`.
pub const COMPRESSION_HEADER: &str = "x-lakehouse-ipc-compression";

/// Request header turning distributed execution off (`false`) or on (`true`, the default) for
/// a call, on a server with workers (docs/distributed.md): `false` plans the query on this
/// server alone. JDBC: `...?x-lakehouse-distributed=false`; ADBC: db option
/// `adbc.flight.sql.rpc.call_header.x-lakehouse-distributed`; pyarrow:
/// `FlightCallOptions(headers=[(b"x-lakehouse-distributed", b"false")])`. Any other value
/// than `true`/`false` (any case) is `InvalidArgument`.
pub const DISTRIBUTED_HEADER: &str = "x-lakehouse-distributed";

/// Request header making a call read-only (`true`; default `false`) whatever the user's role:
/// data-changing statements, ingests and every other write are then refused with
/// PermissionDenied, as for a `read` user. `lakehouse mcp` sends it on every call unless
/// started with `--allow-writes`; any client may, e.g. a dashboard that must never write.
/// Any other value than `true`/`false` (any case) is `InvalidArgument`.
pub const READ_ONLY_HEADER: &str = "x-lakehouse-read-only";

/// Largest FlightData message the server sends, in bytes. gRPC clients reject messages over
/// 4 MiB by default; the encoder splits batches to stay under this (a single huge value can
/// still exceed it).
pub const MAX_FLIGHT_DATA_BYTES: usize = 2 * 1024 * 1024;

/// Largest message the server accepts (DoPut batches), in bytes.
pub const MAX_DECODING_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// Shared state of the Flight SQL service.
pub struct LakehouseFlightSql {
    engine: QueryEngine,
    sql_info: SqlInfoData,
    xdbc_types: XdbcTypeInfoData,
    /// Plans made in GetFlightInfo, keyed by the ticket's statement handle: DoGet of that exact
    /// ticket on this server runs the plan instead of planning again (taken out, so each plan
    /// runs once). Tickets stay stateless: a ticket whose plan is not here (another replica, a
    /// restart, a second DoGet, more than [`PLAN_CACHE_TTL`] later) is planned again at its
    /// pinned versions.
    plans: moka::sync::Cache<bytes::Bytes, Arc<PlannedQuery>>,
    /// Plans made by CreatePreparedStatement to describe a query, keyed by the prepared
    /// statement handle: the GetFlightInfo that follows runs it when the tables are unchanged
    /// (taken out, so each plan runs once; at most [`PREPARED_PLAN_TTL`] later).
    prepared: moka::sync::Cache<bytes::Bytes, Arc<PlannedQuery>>,
}

/// Marks a GetFlightInfo made to answer GetSchema: its plan is not kept for a DoGet.
#[derive(Debug, Clone, Copy)]
struct SchemaOnly;

/// Whether the plan made for `request` should wait for its DoGet (not for GetSchema).
fn keeps_plan<T>(request: &Request<T>) -> bool {
    request.extensions().get::<SchemaOnly>().is_none()
}

/// How long a plan made in GetFlightInfo waits for its DoGet.
pub const PLAN_CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(300);
/// How many plans wait for their DoGet at most (the oldest go first).
pub const PLAN_CACHE_ENTRIES: u64 = 1024;
/// How long a plan made by CreatePreparedStatement waits for the handle's GetFlightInfo.
pub const PREPARED_PLAN_TTL: std::time::Duration = std::time::Duration::from_secs(30);

impl LakehouseFlightSql {
    /// A service over `engine`.
    ///
    /// # Errors
    /// Arrow errors while building the SqlInfo table.
    pub fn new(engine: QueryEngine) -> crate::error::Result<Self> {
        let timeout_ms = engine
            .admission()
            .timeout()
            .map_or(0, |t| i32::try_from(t.as_millis()).unwrap_or(i32::MAX));
        let sql_info = get_sql_info::build(timeout_ms)?;
        let xdbc_types = get_xdbc_type_info::build()?;
        Ok(Self {
            engine,
            sql_info,
            xdbc_types,
            plans: moka::sync::Cache::builder()
                .max_capacity(PLAN_CACHE_ENTRIES)
                .time_to_live(PLAN_CACHE_TTL)
                .build(),
            prepared: moka::sync::Cache::builder()
                .max_capacity(PLAN_CACHE_ENTRIES)
                .time_to_live(PREPARED_PLAN_TTL)
                .build(),
        })
    }

    fn catalog(&self) -> &Arc<Catalog> {
        self.engine.catalog()
    }

    /// Admission control and limits of the engine (for monitoring and tests).
    pub fn admission(&self) -> &Arc<Admission> {
        self.engine.admission()
    }

    /// The engine's hot cache (closed by the server when it stops).
    pub fn data_cache(&self) -> &lakehouse_catalog::cache::RangeCache {
        self.engine.data_cache()
    }

    /// Sets the gauges read at each scrape of `/metrics`: the query memory pool's reservation,
    /// the hot cache's size and read counters, and with `queries` the running and queued
    /// queries (a worker, which admits no queries of its own, passes false).
    pub fn gauges(&self, queries: bool) -> Arc<dyn Fn() + Send + Sync> {
        use crate::observability::metrics as m;
        let runtime = self.engine.runtime_env();
        let cache = self.data_cache().clone();
        let admission = queries.then(|| Arc::clone(self.admission()));
        Arc::new(move || {
            if let Some(admission) = &admission {
                metrics::gauge!(m::QUERIES_RUNNING).set(admission.running() as f64);
                metrics::gauge!(m::QUERIES_QUEUED).set(admission.queued() as f64);
            }
            metrics::gauge!(m::MEMORY_RESERVED).set(runtime.memory_pool.reserved() as f64);
            if cache.is_on() {
                let stats = cache.stats();
                metrics::gauge!(m::CACHE_BYTES).set(stats.bytes as f64);
                for (result, reads, bytes) in [
                    ("memory_hit", stats.hits, stats.hit_bytes),
                    ("disk_hit", stats.disk_hits, stats.disk_hit_bytes),
                    ("miss", stats.misses, stats.miss_bytes),
                ] {
                    metrics::counter!(m::CACHE_READS, "result" => result).absolute(reads);
                    metrics::counter!(m::CACHE_READ_BYTES, "result" => result).absolute(bytes);
                }
            }
        })
    }

    /// Executes `planned` under the engine's limits (a query slot, the timeout, the result-size
    /// guard), cancellable as `query_id`; streams its FlightData.
    async fn stream_query(
        &self,
        planned: Arc<PlannedQuery>,
        query_id: Option<&str>,
        ipc: IpcWriteOptions,
    ) -> Result<BoxStream<FlightData>, Status> {
        let admission = self.engine.admission();
        let guard = admission.admit(query_id).await?;
        let stream = planned.execute()?;
        let encoded = encode_stream(planned.schema(), stream, ipc);
        let limited = limit_stream(encoded, guard, admission.max_result_bytes());
        Ok(observe_execution(planned, limited))
    }

    /// What this request asks of planning: its default schema ([`Self::default_schema`]) and
    /// whether it may run distributed ([`DISTRIBUTED_HEADER`]).
    fn scope<T>(&self, request: &Request<T>) -> Result<RequestScope, Status> {
        Ok(RequestScope {
            default_schema: self.default_schema(request)?,
            distributed: distributed(request)?,
        })
    }

    /// The schema unqualified names resolve in for this request: the [`SCHEMA_HEADER`] header
    /// when the client sends one, else `public`.
    fn default_schema<T>(&self, request: &Request<T>) -> Result<SchemaName, Status> {
        match request.metadata().get(SCHEMA_HEADER) {
            None => Ok(SchemaName::default_schema()),
            Some(value) => {
                let name = value.to_str().map_err(|_| {
                    Error::invalid(format!("header {SCHEMA_HEADER} is not valid text"))
                })?;
                Ok(SchemaName::new(name).map_err(Error::from)?)
            }
        }
    }
}

pub(crate) type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// A FlightInfo with one endpoint whose ticket is `ticket`, for a result of `schema`.
fn flight_info(
    schema: &SchemaRef,
    ticket: Vec<u8>,
    descriptor: FlightDescriptor,
) -> Result<FlightInfo, Status> {
    let info = FlightInfo::new()
        .try_with_schema(schema)
        .map_err(|e| Error::from(e).into_status())?
        .with_endpoint(FlightEndpoint::new().with_ticket(Ticket::new(ticket)))
        .with_descriptor(descriptor)
        .with_ordered(true);
    Ok(info)
}

/// The FlightInfo of a metadata command: the command's result schema, and the command itself,
/// packed in `Any`, as the ticket (so DoGet dispatches it back to the same command).
fn command_flight_info<C: ProstMessageExt>(
    schema: &SchemaRef,
    command: &C,
    request: Request<FlightDescriptor>,
) -> Result<Response<FlightInfo>, Status> {
    let info = flight_info(
        schema,
        command.as_any().encode_to_vec(),
        request.into_inner(),
    )?;
    Ok(Response::new(info))
}

/// The IPC options of a DoGet's result: body compression as the [`COMPRESSION_HEADER`] asks.
///
/// # Errors
/// `InvalidArgument` naming the accepted values for any other value.
/// Whether `request` allows distributed execution: [`DISTRIBUTED_HEADER`], default `true`.
///
/// # Errors
/// `InvalidArgument` naming the header for a value other than `true` or `false`.
fn distributed<T>(request: &Request<T>) -> Result<bool, Status> {
    bool_header(request.metadata(), DISTRIBUTED_HEADER, true)
}

/// The `true`/`false` (any case) header `name` of a call, `default` when absent.
///
/// # Errors
/// InvalidArgument naming the header for any other value.
fn bool_header(
    metadata: &tonic::metadata::MetadataMap,
    name: &str,
    default: bool,
) -> Result<bool, Status> {
    let Some(value) = metadata.get(name) else {
        return Ok(default);
    };
    let value = value.to_str().unwrap_or("").trim();
    if value.eq_ignore_ascii_case("true") {
        Ok(true)
    } else if value.eq_ignore_ascii_case("false") {
        Ok(false)
    } else {
        Err(Error::invalid(format!("header {name} is {value:?}; send true or false")).into_status())
    }
}

fn ipc_options<T>(request: &Request<T>) -> Result<IpcWriteOptions, Status> {
    let Some(value) = request.metadata().get(COMPRESSION_HEADER) else {
        return Ok(IpcWriteOptions::default());
    };
    let codec = match value
        .to_str()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
        .as_str()
    {
        "none" | "" => None,
        "zstd" => Some(CompressionType::ZSTD),
        "lz4" | "lz4_frame" => Some(CompressionType::LZ4_FRAME),
        other => {
            return Err(Error::invalid(format!(
                "header {COMPRESSION_HEADER}: unknown compression {other:?}; use zstd, lz4 or none"
            ))
            .into());
        }
    };
    Ok(IpcWriteOptions::default()
        .try_with_compression(codec)
        .map_err(Error::from)?)
}

/// Encodes a record-batch stream as FlightData with `ipc` options, schema first (even for zero
/// batches), batches split to at most [`MAX_FLIGHT_DATA_BYTES`]; errors become statuses through
/// the one mapping.
fn encode_stream(
    schema: SchemaRef,
    batches: SendableRecordBatchStream,
    ipc: IpcWriteOptions,
) -> BoxStream<FlightData> {
    let batches = batches.map_err(|e| FlightError::Tonic(Box::new(Error::from(e).into_status())));
    let stream = FlightDataEncoderBuilder::new()
        .with_options(ipc)
        .with_schema(schema)
        .with_max_flight_data_size(MAX_FLIGHT_DATA_BYTES)
        .build(batches)
        .map_err(|e| match e {
            FlightError::Tonic(status) => *status,
            other => Error::from(other).into_status(),
        });
    Box::pin(stream)
}

/// Runs an encoded result stream under its [`QueryGuard`]: the stream ends with an error (and
/// the inner stream, with the DataFusion execution behind it, is dropped) when the query is
/// cancelled, its deadline passes, or more than `max_bytes` of Flight data would be sent. The
/// guard, and with it the query slot, is released when the stream ends or is dropped.
fn limit_stream(
    inner: BoxStream<FlightData>,
    guard: QueryGuard,
    max_bytes: Option<u64>,
) -> BoxStream<FlightData> {
    struct State {
        inner: Option<BoxStream<FlightData>>,
        guard: Option<QueryGuard>,
        sent: u64,
    }
    let state = State {
        inner: Some(inner),
        guard: Some(guard),
        sent: 0,
    };
    let stream = futures::stream::unfold(state, move |mut state| async move {
        let (Some(inner), Some(guard)) = (state.inner.as_mut(), state.guard.as_ref()) else {
            return None;
        };
        let outcome = tokio::select! {
            biased;
            _ = guard.token.cancelled() => Err(Error::Cancelled("query cancelled".into()).into()),
            _ = limits::sleep_until(guard.deadline) => Err(guard.deadline_error().into()),
            item = inner.next() => match item {
                // Dropping the state releases the slot.
                None => return None,
                Some(Ok(data)) => {
                    state.sent += (data.data_body.len() + data.data_header.len()) as u64;
                    match max_bytes {
                        Some(max) if state.sent > max => Err(Error::ResourceExhausted(format!(
                            "result exceeds {max} bytes (query.max_result_bytes) and was \
                             stopped; add a LIMIT or select fewer columns"
                        ))
                        .into()),
                        _ => Ok(data),
                    }
                }
                Some(Err(status)) => Err(status),
            },
        };
        if outcome.is_err() {
            // Stop the work now, not when the client hangs up.
            state.inner = None;
            state.guard = None;
        }
        Some((outcome, state))
    });
    Box::pin(stream)
}

/// `stream` (the encoded result of `planned`, started now) in an `execute` span, timed: the first batch and the whole
/// execution in their histograms, and at the end the plan's spills (DataFusion's `spill_count`
/// and `spilled_bytes` metrics of every operator) in the spill counters.
fn observe_execution(
    planned: Arc<PlannedQuery>,
    stream: BoxStream<FlightData>,
) -> BoxStream<FlightData> {
    use crate::observability::metrics as m;
    struct Timing {
        planned: Arc<PlannedQuery>,
        started: std::time::Instant,
        first: bool,
        span: tracing::Span,
    }
    impl Drop for Timing {
        fn drop(&mut self) {
            metrics::histogram!(m::EXECUTION_SECONDS).record(self.started.elapsed().as_secs_f64());
            if crate::observability::traces::exporting() {
                let plan =
                    datafusion::physical_plan::display::DisplayableExecutionPlan::with_metrics(
                        self.planned.physical_plan().as_ref(),
                    )
                    .indent(true)
                    .to_string();
                self.span.record("datafusion.metrics", plan.as_str());
            }
            let (mut spills, mut bytes) = (0, 0);
            let mut plans = vec![Arc::clone(self.planned.physical_plan())];
            while let Some(plan) = plans.pop() {
                if let Some(metrics) = plan.metrics() {
                    spills += metrics.spill_count().unwrap_or(0);
                    bytes += metrics.spilled_bytes().unwrap_or(0);
                }
                plans.extend(plan.children().into_iter().cloned());
            }
            metrics::counter!(m::SPILLS).increment(spills as u64);
            metrics::counter!(m::SPILLED_BYTES).increment(bytes as u64);
        }
    }
    let span = tracing::info_span!("execute", datafusion.metrics = tracing::field::Empty);
    let mut timing = Timing {
        planned,
        started: std::time::Instant::now(),
        first: true,
        span,
    };
    Box::pin(stream.inspect(move |item| {
        let _entered = timing.span.clone().entered();
        // The schema message comes first; the first batch is the first message with a body.
        if timing.first && item.as_ref().is_ok_and(|data| !data.data_body.is_empty()) {
            timing.first = false;
            metrics::histogram!(m::FIRST_BATCH_SECONDS)
                .record(timing.started.elapsed().as_secs_f64());
        }
    }))
}

/// Encodes one in-memory batch (metadata answers).
fn encode_batch(batch: RecordBatch) -> Response<BoxStream<FlightData>> {
    let schema = batch.schema();
    let stream = FlightDataEncoderBuilder::new()
        .with_schema(schema)
        .with_max_flight_data_size(MAX_FLIGHT_DATA_BYTES)
        .build(futures::stream::once(async move { Ok(batch) }))
        .map_err(|e| Error::from(e).into_status());
    Response::new(Box::pin(stream))
}

#[tonic::async_trait]
impl FlightSqlService for LakehouseFlightSql {
    type FlightService = LakehouseFlightSql;

    async fn do_handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<BoxStream<HandshakeResponse>>, Status> {
        handshake::handshake(self, request).await
    }

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        statement_query::get_flight_info(self, query, request).await
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<BoxStream<FlightData>>, Status> {
        statement_query::do_get(self, ticket, &request).await
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        prepared_statement::create(self, query, request).await
    }

    async fn do_put_prepared_statement_query(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<arrow_flight::sql::DoPutPreparedStatementResult, Status> {
        note_command(&request, &query);
        prepared_statement::bind(self, query, request).await
    }

    async fn do_put_prepared_statement_update(
        &self,
        query: arrow_flight::sql::CommandPreparedStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        note_command(&request, &query);
        prepared_statement::update(self, query, request).await
    }

    async fn do_action_close_prepared_statement(
        &self,
        query: ActionClosePreparedStatementRequest,
        _request: Request<Action>,
    ) -> Result<(), Status> {
        prepared_statement::close(query)
    }

    async fn get_flight_info_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        prepared_statement::get_flight_info(self, query, request).await
    }

    async fn do_get_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<BoxStream<FlightData>>, Status> {
        prepared_statement::do_get(self, query, request).await
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        get_catalogs::get_flight_info(query, request)
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        _request: Request<Ticket>,
    ) -> Result<Response<BoxStream<FlightData>>, Status> {
        get_catalogs::do_get(query)
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        get_db_schemas::get_flight_info(query, request)
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        _request: Request<Ticket>,
    ) -> Result<Response<BoxStream<FlightData>>, Status> {
        get_db_schemas::do_get(self, query).await
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        get_tables::get_flight_info(query, request)
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        _request: Request<Ticket>,
    ) -> Result<Response<BoxStream<FlightData>>, Status> {
        get_tables::do_get(self, query).await
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        get_table_types::get_flight_info(query, request)
    }

    async fn do_get_table_types(
        &self,
        query: CommandGetTableTypes,
        _request: Request<Ticket>,
    ) -> Result<Response<BoxStream<FlightData>>, Status> {
        get_table_types::do_get(query)
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        get_sql_info::get_flight_info(self, query, request)
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        _request: Request<Ticket>,
    ) -> Result<Response<BoxStream<FlightData>>, Status> {
        get_sql_info::do_get(self, query)
    }

    async fn do_put_statement_update(
        &self,
        cmd: CommandStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        note_command(&request, &cmd);
        statement_update::do_put(self, cmd, request).await
    }

    async fn do_put_statement_ingest(
        &self,
        cmd: CommandStatementIngest,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        note_command(&request, &cmd);
        statement_ingest::do_put(self, cmd, request).await
    }

    async fn get_flight_info_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        get_xdbc_type_info::get_flight_info(self, query, request)
    }

    async fn do_get_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        _request: Request<Ticket>,
    ) -> Result<Response<BoxStream<FlightData>>, Status> {
        get_xdbc_type_info::do_get(self, query)
    }

    async fn get_flight_info_primary_keys(
        &self,
        query: CommandGetPrimaryKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        get_keys::get_flight_info(&get_keys::PRIMARY_KEYS_SCHEMA, query, request)
    }

    async fn do_get_primary_keys(
        &self,
        query: CommandGetPrimaryKeys,
        request: Request<Ticket>,
    ) -> Result<Response<BoxStream<FlightData>>, Status> {
        get_keys::do_get_primary_keys(self, query, &request).await
    }

    async fn get_flight_info_exported_keys(
        &self,
        query: CommandGetExportedKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        get_keys::get_flight_info(&get_keys::FOREIGN_KEYS_SCHEMA, query, request)
    }

    async fn do_get_exported_keys(
        &self,
        _query: CommandGetExportedKeys,
        _request: Request<Ticket>,
    ) -> Result<Response<BoxStream<FlightData>>, Status> {
        get_keys::do_get(&get_keys::FOREIGN_KEYS_SCHEMA)
    }

    async fn get_flight_info_imported_keys(
        &self,
        query: CommandGetImportedKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        get_keys::get_flight_info(&get_keys::FOREIGN_KEYS_SCHEMA, query, request)
    }

    async fn do_get_imported_keys(
        &self,
        _query: CommandGetImportedKeys,
        _request: Request<Ticket>,
    ) -> Result<Response<BoxStream<FlightData>>, Status> {
        get_keys::do_get(&get_keys::FOREIGN_KEYS_SCHEMA)
    }

    async fn get_flight_info_cross_reference(
        &self,
        query: CommandGetCrossReference,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        get_keys::get_flight_info(&get_keys::FOREIGN_KEYS_SCHEMA, query, request)
    }

    async fn do_get_cross_reference(
        &self,
        _query: CommandGetCrossReference,
        _request: Request<Ticket>,
    ) -> Result<Response<BoxStream<FlightData>>, Status> {
        get_keys::do_get(&get_keys::FOREIGN_KEYS_SCHEMA)
    }

    /// Flight SQL's deprecated `CancelQuery` (JDBC before `CancelFlightInfo`).
    async fn do_action_cancel_query(
        &self,
        query: arrow_flight::sql::ActionCancelQueryRequest,
        _request: Request<Action>,
    ) -> Result<arrow_flight::sql::ActionCancelQueryResult, Status> {
        let info = FlightInfo::decode(query.info.as_ref())
            .map_err(|e| Error::invalid(format!("CancelQuery: invalid FlightInfo: {e}")))?;
        // CancelResult numbers its values as CancelStatus does (CANCELLED = 1,
        // NOT_CANCELLABLE = 3); arrow-flight does not export the former.
        let status = cancel::cancel(self, Some(info))?;
        Ok(arrow_flight::sql::ActionCancelQueryResult {
            result: status.into(),
        })
    }

    /// Lakehouse's own DoPut commands: `lakehouse.v1.CommandIngestFile` and
    /// `lakehouse.v1.CommandPruneDocuments`.
    async fn do_put_fallback(
        &self,
        request: Request<PeekableFlightDataStream>,
        message: arrow_flight::sql::Any,
    ) -> Result<Response<BoxStream<arrow_flight::PutResult>>, Status> {
        use prost::Name;
        if message.type_url == lakehouse_proto::CommandIngestFile::type_url() {
            let cmd = lakehouse_proto::CommandIngestFile::decode(message.value.as_ref())
                .map_err(|e| Error::invalid(format!("invalid CommandIngestFile: {e}")))?;
            if let Some(call) = call(&request) {
                call.named(
                    "CommandIngestFile",
                    Some(format!("{} into {}", cmd.file_name, cmd.table)),
                );
            }
            return ingest_file::do_put(self, cmd, request).await;
        }
        if message.type_url == lakehouse_proto::CommandPruneDocuments::type_url() {
            let cmd = lakehouse_proto::CommandPruneDocuments::decode(message.value.as_ref())
                .map_err(|e| Error::invalid(format!("invalid CommandPruneDocuments: {e}")))?;
            if let Some(call) = call(&request) {
                call.named("CommandPruneDocuments", Some(cmd.table.clone()));
            }
            return ingest_file::prune(self, cmd, request).await;
        }
        Err(Error::invalid(format!("unknown DoPut command {}", message.type_url)).into())
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}

/// The `FlightService` Lakehouse serves: every call goes to [`LakehouseFlightSql`] through
/// arrow-flight's Flight SQL dispatch, except GetSchema, answered here from the same planning
/// GetFlightInfo does (so both report the same schema).
///
/// Every call is authenticated here first (see [`crate::auth`]); the caller's [`Principal`] then
/// rides in the request's extensions, where commands that change data check its role, and in
/// [`crate::auth::caller`] while the call is handled. Every call is also observed here: one
/// [`Call`] per RPC, in the request's extensions too, feeds the metrics and the audit log.
pub struct LakehouseFlightService {
    inner: Arc<LakehouseFlightSql>,
    auth: Arc<Authenticator>,
    audit: Option<Arc<AuditLog>>,
}

impl LakehouseFlightService {
    /// Wraps the Flight SQL service, authenticating with `auth`, auditing to `audit`.
    pub fn new(
        inner: Arc<LakehouseFlightSql>,
        auth: Arc<Authenticator>,
        audit: Option<Arc<AuditLog>>,
    ) -> Self {
        Self { inner, auth, audit }
    }

    /// Opens the [`Call`] of `request` (in its extensions too).
    fn open<T>(&self, rpc: &'static str, request: &mut Request<T>) -> Call {
        let headers: &http::HeaderMap = request.metadata().as_ref();
        let call = Call::start(rpc, request.remote_addr(), headers, self.audit.clone());
        request.extensions_mut().insert(call.clone());
        call
    }

    /// Authenticates `request`, records its [`Principal`] in the extensions and the call, and
    /// runs `work` as that caller, its commits noted in the call.
    async fn run<T, R>(
        &self,
        call: &Call,
        mut request: Request<T>,
        work: impl AsyncFnOnce(Request<T>) -> Result<R, Status>,
    ) -> Result<R, Status> {
        let principal = match self.auth.authenticate(request.metadata()).await {
            Ok(principal) => principal,
            Err(e) => {
                call.principal(crate::auth::claimed_user(request.metadata()));
                return Err(e.into());
            }
        };
        let principal = match bool_header(request.metadata(), READ_ONLY_HEADER, false) {
            Ok(true) => principal.read_only(),
            Ok(false) => principal,
            Err(status) => {
                call.principal(Some(principal.user));
                return Err(status);
            }
        };
        call.principal(Some(principal.user.clone()));
        let scope = lakehouse_catalog::CommitScope::new(principal.user.clone());
        call.commits(&scope);
        request.extensions_mut().insert(principal.clone());
        let work = crate::auth::as_caller(principal, work(request));
        lakehouse_catalog::in_scope(scope, work)
            .instrument(call.span().clone())
            .await
    }

    /// [`Self::run`] for a call answered at once: the call finishes with the answer.
    async fn unary<T, R>(
        &self,
        call: Call,
        request: Request<T>,
        work: impl AsyncFnOnce(Request<T>) -> Result<R, Status>,
    ) -> Result<R, Status> {
        let result = self.run(&call, request, work).await;
        call.finish(&result);
        result
    }

    /// [`Self::run`] for a call answered with a stream: the call finishes when the stream
    /// ends (each message measured by `measure`), or at once when there is no stream.
    async fn streamed<T, S: Send + 'static>(
        &self,
        call: Call,
        request: Request<T>,
        measure: fn(&S) -> (u64, u64),
        work: impl AsyncFnOnce(Request<T>) -> Result<Response<BoxStream<S>>, Status>,
    ) -> Result<Response<BoxStream<S>>, Status> {
        match self.run(&call, request, work).await {
            Ok(response) => Ok(response.map(|stream| call.watch(stream, measure))),
            Err(status) => {
                call.finish::<()>(&Err(status.clone()));
                Err(status)
            }
        }
    }
}

/// The caller of `request`, as [`LakehouseFlightService`] authenticated it.
fn principal<T>(request: &Request<T>) -> Result<&Principal, Status> {
    request
        .extensions()
        .get::<Principal>()
        .ok_or_else(|| Error::Unauthenticated("call was not authenticated".into()).into())
}

/// The [`Call`] of `request`, when [`LakehouseFlightService`] opened one.
fn call<T>(request: &Request<T>) -> Option<Call> {
    request.extensions().get::<Call>().cloned()
}

/// Counts an ingest of `rows` rows from `bytes` bytes received into `table`: the ingest
/// metrics, and the request's [`Call`] totals.
fn note_ingest(call: Option<&Call>, table: &lakehouse_catalog::TableRef, rows: u64, bytes: u64) {
    use crate::observability::metrics as m;
    metrics::counter!(m::INGEST_ROWS, "table" => table.to_string()).increment(rows);
    metrics::counter!(m::INGEST_BYTES, "table" => table.to_string()).increment(bytes);
    if let Some(call) = call {
        call.add(rows, bytes);
    }
}

/// Records the Flight SQL command of a DoPut in its [`Call`] (the service sees DoPut's
/// descriptor only once arrow-flight has read the first message).
fn note_command<T>(request: &Request<T>, command: &impl ProstMessageExt) {
    if let Some(call) = call(request) {
        call.command(command.as_any());
    }
}

/// Ok when the caller of `request` may change data.
fn require_write<T>(request: &Request<T>, what: &str) -> Result<(), Status> {
    Ok(principal(request)?.require_write(what)?)
}

type Inner = LakehouseFlightSql;

#[tonic::async_trait]
impl FlightService for LakehouseFlightService {
    type HandshakeStream = <Inner as FlightService>::HandshakeStream;
    type ListFlightsStream = <Inner as FlightService>::ListFlightsStream;
    type DoGetStream = <Inner as FlightService>::DoGetStream;
    type DoPutStream = <Inner as FlightService>::DoPutStream;
    type DoActionStream = <Inner as FlightService>::DoActionStream;
    type ListActionsStream = <Inner as FlightService>::ListActionsStream;
    type DoExchangeStream = <Inner as FlightService>::DoExchangeStream;

    /// With auth on, a successful login answers `authorization: Bearer <token>` in the
    /// response headers and the token as payload; without auth, an empty answer.
    async fn handshake(
        &self,
        mut request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Self::HandshakeStream>, Status> {
        let call = self.open("Handshake", &mut request);
        self.unary(call, request, async |request| {
            if self.auth.mode() == AuthMode::None {
                return FlightService::handshake(&*self.inner, request).await;
            }
            let token = self.auth.issue_token(principal(&request)?)?;
            handshake::token_response(&token)
        })
        .await
    }

    async fn list_flights(
        &self,
        mut request: Request<Criteria>,
    ) -> Result<Response<Self::ListFlightsStream>, Status> {
        let call = self.open("ListFlights", &mut request);
        self.unary(call, request, async |request| {
            FlightService::list_flights(&*self.inner, request).await
        })
        .await
    }

    async fn get_flight_info(
        &self,
        mut request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let call = self.open("GetFlightInfo", &mut request);
        call.descriptor(request.get_ref());
        let result = self
            .run(&call, request, async |request| {
                FlightService::get_flight_info(&*self.inner, request).await
            })
            .await;
        if let Ok(info) = &result {
            call.flight_info(info.get_ref());
        }
        call.finish(&result);
        result
    }

    async fn poll_flight_info(
        &self,
        mut request: Request<FlightDescriptor>,
    ) -> Result<Response<PollInfo>, Status> {
        let call = self.open("PollFlightInfo", &mut request);
        call.descriptor(request.get_ref());
        self.unary(call, request, async |request| {
            FlightService::poll_flight_info(&*self.inner, request).await
        })
        .await
    }

    /// The schema GetFlightInfo would report for the same descriptor, without executing.
    async fn get_schema(
        &self,
        mut request: Request<FlightDescriptor>,
    ) -> Result<Response<SchemaResult>, Status> {
        let call = self.open("GetSchema", &mut request);
        call.descriptor(request.get_ref());
        request.extensions_mut().insert(SchemaOnly);
        self.unary(call, request, async |request| {
            let info = FlightService::get_flight_info(&*self.inner, request)
                .await?
                .into_inner();
            Ok(Response::new(SchemaResult {
                schema: info.schema,
            }))
        })
        .await
    }

    async fn do_get(
        &self,
        mut request: Request<Ticket>,
    ) -> Result<Response<Self::DoGetStream>, Status> {
        let call = self.open("DoGet", &mut request);
        let log_parameters = self.audit.as_ref().is_some_and(|a| a.log_parameters());
        call.ticket(request.get_ref(), log_parameters);
        self.streamed(call, request, result_data, async |request| {
            FlightService::do_get(&*self.inner, request).await
        })
        .await
    }

    async fn do_put(
        &self,
        mut request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoPutStream>, Status> {
        let call = self.open("DoPut", &mut request);
        // File ingest streams progress and its result from a task: the call ends with the
        // stream; the handlers count ingested rows themselves.
        self.streamed(call, request, uncounted, async |request| {
            FlightService::do_put(&*self.inner, request).await
        })
        .await
    }

    async fn do_action(
        &self,
        mut request: Request<Action>,
    ) -> Result<Response<Self::DoActionStream>, Status> {
        let call = self.open("DoAction", &mut request);
        call.action(request.get_ref());
        self.unary(call, request, async |request| {
            if request.get_ref().r#type == cancel::CANCEL_FLIGHT_INFO {
                let body =
                    arrow_flight::CancelFlightInfoRequest::decode(request.get_ref().body.as_ref())
                        .map_err(|e| {
                            Error::invalid(format!("invalid CancelFlightInfoRequest: {e}"))
                        })?;
                let status = cancel::cancel(&self.inner, body.info)?;
                let result = arrow_flight::CancelFlightInfoResult {
                    status: status.into(),
                };
                let output = futures::stream::once(async move {
                    Ok(arrow_flight::Result {
                        body: result.encode_to_vec().into(),
                    })
                });
                return Ok(Response::new(Box::pin(output) as Self::DoActionStream));
            }
            FlightService::do_action(&*self.inner, request).await
        })
        .await
    }

    /// Flight SQL's actions, plus Flight's `CancelFlightInfo`.
    async fn list_actions(
        &self,
        mut request: Request<Empty>,
    ) -> Result<Response<Self::ListActionsStream>, Status> {
        let call = self.open("ListActions", &mut request);
        self.unary(call, request, async |request| {
            let sql_actions = FlightService::list_actions(&*self.inner, request)
                .await?
                .into_inner();
            let cancel = arrow_flight::ActionType {
                r#type: cancel::CANCEL_FLIGHT_INFO.into(),
                description: "Cancels the query of a FlightInfo.\n\
                    Request Message: CancelFlightInfoRequest\n\
                    Response Message: CancelFlightInfoResult"
                    .into(),
            };
            let all = sql_actions.chain(futures::stream::once(async move { Ok(cancel) }));
            Ok(Response::new(Box::pin(all) as Self::ListActionsStream))
        })
        .await
    }

    async fn do_exchange(
        &self,
        mut request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoExchangeStream>, Status> {
        let call = self.open("DoExchange", &mut request);
        self.unary(call, request, async |request| {
            FlightService::do_exchange(&*self.inner, request).await
        })
        .await
    }
}
