//! [`Call`]: one Flight RPC as the operator sees it. The Flight service opens one per request
//! (`flight::LakehouseFlightService`), fills in who called and what the request names, and
//! finishes it when the answer — for DoGet, the last message of the result stream — is sent:
//! that counts `lakehouse_rpcs_total` and `lakehouse_rpc_duration_seconds` and writes one
//! [`AuditRecord`] when the audit log is on.
//!
//! What a request names is read from its Flight SQL messages: the command in a descriptor or
//! action, and for DoGet the statement ticket (SQL, query id, table versions read). Tables
//! written come from the catalog's [`lakehouse_catalog::CommitScope`] of the request.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use arrow_flight::sql::{Any, Command};
use arrow_flight::{Action, FlightData, FlightDescriptor, FlightInfo, Ticket};
use futures::StreamExt;
use lakehouse_catalog::CommitScope;
use prost::Message;
use tonic::{Code, Status};
use tracing::Instrument;

use super::audit::{AuditLog, AuditRecord};
use super::metrics as m;
use crate::flight::BoxStream;

/// What is known about one RPC so far.
#[derive(Default)]
struct State {
    record: AuditRecord,
    tables_written: Option<CommitScope>,
    finished: bool,
}

/// One RPC in flight; finished by [`Call::finish`] or [`Call::watch`]'s stream, or, when
/// dropped unfinished (the client went away), as `Cancelled`.
#[derive(Clone)]
pub struct Call {
    state: Arc<Mutex<State>>,
    started: Instant,
    audit: Option<Arc<AuditLog>>,
    /// The RPC's trace span (named after the method; fields `lakehouse.user`,
    /// `lakehouse.command`, `lakehouse.query_id`, `rpc.grpc.status_code`).
    span: tracing::Span,
}

impl Call {
    /// A call of `rpc` from `peer` with request `headers`, started now: its span is a child of
    /// the trace context the headers carry (`traceparent`), if any.
    pub fn start(
        rpc: &'static str,
        peer: Option<std::net::SocketAddr>,
        headers: &http::HeaderMap,
        audit: Option<Arc<AuditLog>>,
    ) -> Self {
        let span = tracing::info_span!(
            "rpc",
            otel.name = rpc,
            otel.kind = "server",
            rpc.system = "grpc",
            rpc.service = "arrow.flight.protocol.FlightService",
            rpc.method = rpc,
            rpc.grpc.status_code = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
            otel.status_message = tracing::field::Empty,
            lakehouse.user = tracing::field::Empty,
            lakehouse.command = tracing::field::Empty,
            lakehouse.query_id = tracing::field::Empty,
        );
        super::traces::set_parent_from(&span, headers);
        let record = AuditRecord {
            time: chrono::Utc::now(),
            rpc: rpc.to_string(),
            peer: peer.map(|p| p.to_string()),
            ..Default::default()
        };
        Self {
            state: Arc::new(Mutex::new(State {
                record,
                ..Default::default()
            })),
            started: Instant::now(),
            audit,
            span,
        }
    }

    /// The RPC's trace span: the handling of the call runs in it.
    pub fn span(&self) -> &tracing::Span {
        &self.span
    }

    fn with(&self, f: impl FnOnce(&mut State)) {
        f(&mut self.state.lock().expect("lock"));
    }

    /// Records the caller (authenticated, or the user a refused login claimed).
    pub fn principal(&self, user: Option<String>) {
        self.with(|s| s.record.principal = user);
    }

    /// Collects the request's commits from `scope` when the call finishes.
    pub fn commits(&self, scope: &CommitScope) {
        self.with(|s| s.tables_written = Some(scope.clone()));
    }

    /// Records the command and statement of a GetFlightInfo / GetSchema / DoPut descriptor.
    pub fn descriptor(&self, descriptor: &FlightDescriptor) {
        let Ok(any) = Any::decode(descriptor.cmd.as_ref()) else {
            return;
        };
        self.command(any);
    }

    /// Records the action type, and for CreatePreparedStatement its SQL.
    pub fn action(&self, action: &Action) {
        let kind = action.r#type.clone();
        let mut statement = None;
        if kind == "CreatePreparedStatement"
            && let Ok(any) = Any::decode(action.body.as_ref())
            && let Ok(Some(request)) =
                any.unpack::<arrow_flight::sql::ActionCreatePreparedStatementRequest>()
        {
            statement = Some(request.query);
        }
        self.with(|s| {
            s.record.command = kind;
            s.record.statement = statement;
        });
    }

    /// Records what a DoGet ticket names: a statement ticket's SQL, query id and table
    /// versions, or the metadata command.
    pub fn ticket(&self, ticket: &Ticket, log_parameters: bool) {
        if let Some(handle) = statement_handle(ticket) {
            self.statement_ticket(&handle, log_parameters);
            self.with(|s| s.record.command = "TicketStatementQuery".into());
        } else if let Ok(any) = Any::decode(ticket.ticket.as_ref()) {
            self.command(any);
        }
    }

    /// Records the statement and tables read of the ticket in `info` (what GetFlightInfo
    /// planned).
    pub fn flight_info(&self, info: &FlightInfo) {
        if let Some(handle) = info
            .endpoint
            .first()
            .and_then(|e| e.ticket.as_ref())
            .and_then(statement_handle)
        {
            self.statement_ticket(&handle, false);
        }
    }

    /// Records the query id, tables read and (with `log_parameters`) parameters of a statement
    /// ticket's `handle`, and its SQL unless the call already has the statement as sent (the
    /// ticket's may be the update-count query).
    fn statement_ticket(&self, handle: &[u8], log_parameters: bool) {
        let Ok(ticket) = lakehouse_proto::StatementTicket::decode(handle) else {
            return;
        };
        let parameters = log_parameters
            .then(|| render_parameters(&ticket.parameters))
            .flatten();
        self.with(|s| {
            s.record.statement.get_or_insert(ticket.sql);
            s.record.query_id = Some(ticket.query_id);
            s.record.tables_read = ticket
                .pins
                .iter()
                .map(|p| format!("{}.{}@{}", p.schema, p.table, p.version))
                .collect();
            if parameters.is_some() {
                s.record.parameters = parameters;
            }
        });
    }

    /// Records the Flight SQL command `any` (its name, and the statement it carries).
    pub fn command(&self, any: Any) {
        let name = any
            .type_url
            .rsplit('.')
            .next()
            .unwrap_or_default()
            .to_string();
        let statement = match Command::try_from(any) {
            Ok(Command::CommandStatementQuery(q)) => Some(q.query),
            Ok(Command::CommandStatementUpdate(u)) => Some(u.query),
            Ok(Command::CommandStatementIngest(i)) => Some(match i.schema {
                Some(schema) => format!("{schema}.{}", i.table),
                None => i.table,
            }),
            Ok(Command::CommandPreparedStatementQuery(p)) => {
                prepared_sql(&p.prepared_statement_handle)
            }
            Ok(Command::CommandPreparedStatementUpdate(p)) => {
                prepared_sql(&p.prepared_statement_handle)
            }
            _ => None,
        };
        self.with(|s| {
            s.record.command = name;
            if statement.is_some() {
                s.record.statement = statement;
            }
        });
    }

    /// Records a command of our own by `name`, with `statement` (e.g. `CommandIngestFile` and
    /// its file and table).
    pub fn named(&self, name: &str, statement: Option<String>) {
        self.with(|s| {
            s.record.command = name.to_string();
            s.record.statement = statement;
        });
    }

    /// Adds `rows` and `bytes` to the call's totals (rows changed or ingested, bytes received).
    pub fn add(&self, rows: u64, bytes: u64) {
        self.with(|s| {
            s.record.rows += rows;
            s.record.bytes += bytes;
        });
    }

    /// Finishes the call with `result`'s status.
    pub fn finish<T>(&self, result: &Result<T, Status>) {
        match result {
            Ok(_) => self.end(Code::Ok, None),
            Err(status) => self.end(status.code(), Some(status.message().to_string())),
        }
    }

    /// The call ended with `code` (and `error`): metrics and the audit record, once.
    fn end(&self, code: Code, error: Option<String>) {
        let (record, scope) = {
            let mut state = self.state.lock().expect("lock");
            if state.finished {
                return;
            }
            state.finished = true;
            (state.record.clone(), state.tables_written.take())
        };
        let seconds = self.started.elapsed().as_secs_f64();
        let code_name = code_name(code);
        if let Some(user) = &record.principal {
            self.span.record("lakehouse.user", user.as_str());
        }
        self.span
            .record("lakehouse.command", record.command.as_str());
        if let Some(id) = &record.query_id {
            self.span.record("lakehouse.query_id", id.as_str());
        }
        self.span.record("rpc.grpc.status_code", code as i32);
        if code != Code::Ok {
            self.span.record("otel.status_code", "ERROR");
            if let Some(message) = &error {
                self.span.record("otel.status_message", message.as_str());
            }
        }
        metrics::counter!(m::RPCS, "rpc" => record.rpc.clone(), "command" => record.command.clone(),
            "code" => code_name)
        .increment(1);
        metrics::histogram!(m::RPC_SECONDS, "rpc" => record.rpc.clone(),
            "command" => record.command.clone())
        .record(seconds);
        if let Some(audit) = &self.audit {
            let mut record = record;
            record.outcome = code_name.to_string();
            record.error = error;
            record.duration_ms = seconds * 1e3;
            if let Some(scope) = scope {
                record.tables_written = scope
                    .commits()
                    .into_iter()
                    .map(|c| format!("{}@{}", c.table, c.version))
                    .collect();
            }
            audit.record(record);
        }
    }

    /// `stream` with the call watching it: `measure` gives each item's rows and bytes for the
    /// call's totals; the call is finished when the stream ends — with the error's status, `Ok`
    /// at its end, or `Cancelled` when the client drops it first.
    pub fn watch<T: Send + 'static>(
        self,
        stream: BoxStream<T>,
        measure: fn(&T) -> (u64, u64),
    ) -> BoxStream<T> {
        struct Watched<T> {
            stream: BoxStream<T>,
            call: Call,
            measure: fn(&T) -> (u64, u64),
        }
        impl<T> Drop for Watched<T> {
            fn drop(&mut self) {
                // A no-op when the stream already ended or failed.
                self.call
                    .end(Code::Cancelled, Some("the client closed the stream".into()));
            }
        }
        let state = Watched {
            stream,
            call: self,
            measure,
        };
        Box::pin(futures::stream::unfold(state, |mut w| {
            let span = w.call.span.clone();
            async move {
                match w.stream.next().await {
                    Some(Ok(item)) => {
                        let (rows, bytes) = (w.measure)(&item);
                        w.call.add(rows, bytes);
                        Some((Ok(item), w))
                    }
                    Some(Err(status)) => {
                        w.call
                            .end(status.code(), Some(status.message().to_string()));
                        Some((Err(status), w))
                    }
                    None => {
                        w.call.end(Code::Ok, None);
                        None
                    }
                }
            }
            .instrument(span)
        }))
    }
}

/// The rows and bytes of a result message, counted in `lakehouse_result_rows_total` and
/// `lakehouse_result_bytes_total` (a [`Call::watch`] measure for DoGet).
pub fn result_data(data: &FlightData) -> (u64, u64) {
    let rows = batch_rows(data);
    let bytes = (data.data_header.len() + data.data_body.len()) as u64;
    metrics::counter!(m::RESULT_ROWS).increment(rows);
    metrics::counter!(m::RESULT_BYTES).increment(bytes);
    (rows, bytes)
}

/// Counts nothing (a [`Call::watch`] measure for streams whose handlers count themselves).
pub fn uncounted<T>(_: &T) -> (u64, u64) {
    (0, 0)
}

/// The rows of a FlightData message carrying a record batch (0 for schemas and dictionaries).
fn batch_rows(data: &FlightData) -> u64 {
    arrow::ipc::root_as_message(&data.data_header)
        .ok()
        .and_then(|message| message.header_as_record_batch())
        .map_or(0, |batch| batch.length().max(0) as u64)
}

/// The statement handle of a `TicketStatementQuery` ticket.
fn statement_handle(ticket: &Ticket) -> Option<bytes::Bytes> {
    let any = Any::decode(ticket.ticket.as_ref()).ok()?;
    let statement = any
        .unpack::<arrow_flight::sql::TicketStatementQuery>()
        .ok()??;
    Some(statement.statement_handle)
}

fn prepared_sql(handle: &[u8]) -> Option<String> {
    lakehouse_proto::PreparedStatementHandle::decode(handle)
        .ok()
        .map(|h| h.sql)
}

/// Bound parameter values as text, in order (`None` when there are none).
fn render_parameters(bytes: &[u8]) -> Option<Vec<String>> {
    let batch = crate::query::params::decode_parameters(bytes).ok()??;
    let options = arrow::util::display::FormatOptions::default().with_null("NULL");
    let mut values = Vec::new();
    for column in batch.columns() {
        let formatter =
            arrow::util::display::ArrayFormatter::try_new(column.as_ref(), &options).ok()?;
        for row in 0..column.len() {
            values.push(formatter.value(row).to_string());
        }
    }
    Some(values)
}

/// The gRPC status code's name as in the gRPC spec, in CamelCase (`Ok`, `InvalidArgument`).
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "Ok",
        Code::Cancelled => "Cancelled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}
