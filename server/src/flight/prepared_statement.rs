//! Prepared statements: `ActionCreatePreparedStatement`, DoPut of parameters on
//! `CommandPreparedStatementQuery`, GetFlightInfo and DoGet, and `ActionClosePreparedStatement`.
//!
//! Handles are stateless: a [`PreparedStatementHandle`] carries the SQL, the default schema and
//! any bound parameter values (Arrow IPC). Binding parameters (DoPut) answers with a new handle
//! that includes them, as Flight SQL's `DoPutPreparedStatementResult` allows; closing frees
//! nothing, and any replica can execute a handle. Each execution plans against the newest
//! versions (GetFlightInfo pins them into its ticket, as for plain statements) — except that
//! the first GetFlightInfo after CreatePreparedStatement runs the plan CreatePreparedStatement
//! made to describe the result, when the query has no parameters, calls no time-dependent
//! function and every table it read is still at the version it planned against
//! ([`crate::query::QueryEngine::is_current`]).

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::ipc::writer::IpcWriteOptions;
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::error::FlightError;
use arrow_flight::sql::server::PeekableFlightDataStream;
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest,
    ActionCreatePreparedStatementResult, CommandPreparedStatementQuery,
    CommandPreparedStatementUpdate, DoPutPreparedStatementResult,
};
use arrow_flight::{
    Action, FlightData, FlightDescriptor, FlightInfo, IpcMessage, SchemaAsIpc, Ticket,
};
use futures::TryStreamExt;
use lakehouse_catalog::SchemaName;
use lakehouse_proto::PreparedStatementHandle;
use prost::Message;
use tonic::{Request, Response, Status};

use super::{BoxStream, LakehouseFlightSql, statement_query};
use crate::error::Error;
use crate::query::{Pins, RequestScope, params};

/// A decoded handle: SQL, default schema, bound parameters.
struct Handle {
    sql: String,
    schema: SchemaName,
    parameters: Option<RecordBatch>,
}

fn decode_handle(bytes: &[u8]) -> Result<Handle, Status> {
    let handle = PreparedStatementHandle::decode(bytes)
        .map_err(|e| Error::invalid(format!("invalid prepared statement handle: {e}")))?;
    if handle.sql.is_empty() {
        return Err(Error::invalid("invalid prepared statement handle: no statement").into());
    }
    Ok(Handle {
        schema: SchemaName::new(handle.default_schema).map_err(Error::from)?,
        parameters: params::decode_parameters(&handle.parameters)?,
        sql: handle.sql,
    })
}

fn ipc_schema(schema: &arrow::datatypes::Schema) -> Result<bytes::Bytes, Status> {
    let IpcMessage(bytes) = SchemaAsIpc::new(schema, &IpcWriteOptions::default())
        .try_into()
        .map_err(|e: arrow::error::ArrowError| Error::from(e).into_status())?;
    Ok(bytes)
}

pub(super) async fn create(
    service: &LakehouseFlightSql,
    query: ActionCreatePreparedStatementRequest,
    request: Request<Action>,
) -> Result<ActionCreatePreparedStatementResult, Status> {
    let scope = service.scope(&request)?;
    let described = service.engine.describe(&query.query, &scope).await?;
    let handle = PreparedStatementHandle {
        sql: query.query,
        default_schema: scope.default_schema.to_string(),
        parameters: Vec::new(),
    };
    let handle: bytes::Bytes = handle.encode_to_vec().into();
    if let Some(planned) = described.planned {
        service.prepared.insert(handle.clone(), Arc::new(planned));
    }
    Ok(ActionCreatePreparedStatementResult {
        prepared_statement_handle: handle,
        dataset_schema: ipc_schema(&described.dataset_schema)?,
        parameter_schema: ipc_schema(&described.parameter_schema)?,
    })
}

/// Binds parameter values: the DoPut stream's batches hold one row per execution (one value
/// per parameter, by position): exactly one row for a query; one or more for a data-changing
/// statement (an INSERT then runs once per row, in one commit). Answers with a handle that
/// carries them.
pub(super) async fn bind(
    service: &LakehouseFlightSql,
    query: CommandPreparedStatementQuery,
    request: Request<PeekableFlightDataStream>,
) -> Result<DoPutPreparedStatementResult, Status> {
    let handle = decode_handle(&query.prepared_statement_handle)?;
    let batch = read_parameters(request).await?;
    let rows = batch.as_ref().map_or(0, |b| b.num_rows());
    let batch = match batch {
        Some(batch)
            if rows == 1 || (rows > 1 && !service.engine.statement(&handle.sql)?.is_query()) =>
        {
            batch
        }
        _ => {
            return Err(Error::invalid(format!(
                "a query binds exactly one row of parameters, got {rows} rows"
            ))
            .into());
        }
    };
    let handle = PreparedStatementHandle {
        sql: handle.sql,
        default_schema: handle.schema.to_string(),
        parameters: params::encode_parameters(&batch)?,
    };
    Ok(DoPutPreparedStatementResult {
        prepared_statement_handle: Some(handle.encode_to_vec().into()),
    })
}

/// The parameter rows of a DoPut stream, concatenated; `None` when it holds no rows.
async fn read_parameters(
    request: Request<PeekableFlightDataStream>,
) -> Result<Option<RecordBatch>, Status> {
    // A message with only the descriptor (arrow-rs sends the update command alone, after
    // binding) carries no IPC message.
    let stream = request
        .into_inner()
        .try_filter(|data| std::future::ready(!data.data_header.is_empty()))
        .map_err(FlightError::from);
    let batches: Vec<RecordBatch> = FlightRecordBatchStream::new_from_flight_data(stream)
        .try_collect()
        .await
        .map_err(Error::from)?;
    let Some(first) = batches.first() else {
        return Ok(None);
    };
    let batch = arrow::compute::concat_batches(&first.schema(), &batches).map_err(Error::from)?;
    Ok((batch.num_rows() > 0).then_some(batch))
}

/// `CommandPreparedStatementUpdate` (JDBC `executeUpdate`/`executeBatch`, ADBC
/// `executemany`): runs the handle's data-changing statement with the parameter rows sent in
/// this DoPut (or, when it sends none, those bound to the handle); answers the rows written.
pub(super) async fn update(
    service: &LakehouseFlightSql,
    query: CommandPreparedStatementUpdate,
    request: Request<PeekableFlightDataStream>,
) -> Result<i64, Status> {
    super::require_write(&request, "a data-changing statement")?;
    let handle = decode_handle(&query.prepared_statement_handle)?;
    let parameters = read_parameters(request).await?.or(handle.parameters);
    let statement = service.engine.statement(&handle.sql)?;
    Ok(service
        .engine
        .execute_update(&statement, &handle.schema, parameters.as_ref())
        .await?)
}

pub(super) fn close(query: ActionClosePreparedStatementRequest) -> Result<(), Status> {
    decode_handle(&query.prepared_statement_handle).map(|_| ())
}

pub(super) async fn get_flight_info(
    service: &LakehouseFlightSql,
    query: CommandPreparedStatementQuery,
    request: Request<FlightDescriptor>,
) -> Result<Response<FlightInfo>, Status> {
    let handle = decode_handle(&query.prepared_statement_handle)?;
    let caller = statement_query::Caller::of(&request)?;
    let keep_plan = super::keeps_plan(&request);
    // The plan CreatePreparedStatement made runs if every table it read is unchanged (ADBC's
    // DB-API prepares each new query text and executes it at once).
    // A call that turns distribution off does not run a plan made distributed.
    let distributed = super::distributed(&request)?;
    let described = match &handle.parameters {
        Some(_) => None,
        None => service.prepared.remove(&query.prepared_statement_handle),
    };
    if let Some(planned) = described
        && (distributed || !planned.is_distributed())
        && service.engine.is_current(&planned).await?
    {
        let info = statement_query::planned_flight_info(
            service,
            planned,
            keep_plan,
            handle.sql,
            handle.schema,
            None,
            request.into_inner(),
        )?;
        return Ok(Response::new(info));
    }
    let scope = RequestScope {
        default_schema: handle.schema,
        distributed,
    };
    let info = statement_query::plan_flight_info(
        service,
        &caller,
        keep_plan,
        handle.sql,
        scope,
        handle.parameters,
        request.into_inner(),
    )
    .await?;
    Ok(Response::new(info))
}

/// DoGet with the prepared-statement command itself as ticket (some clients do this instead of
/// using the FlightInfo's ticket): plans against the newest versions and streams.
pub(super) async fn do_get(
    service: &LakehouseFlightSql,
    query: CommandPreparedStatementQuery,
    request: Request<Ticket>,
) -> Result<Response<BoxStream<FlightData>>, Status> {
    let ipc = super::ipc_options(&request)?;
    let handle = decode_handle(&query.prepared_statement_handle)?;
    let scope = RequestScope {
        default_schema: handle.schema,
        distributed: super::distributed(&request)?,
    };
    let planned = service
        .engine
        .plan(
            &handle.sql,
            &scope,
            Pins::default(),
            handle.parameters.as_ref(),
        )
        .await?;
    let stream = service.stream_query(Arc::new(planned), None, ipc).await?;
    Ok(Response::new(stream))
}
