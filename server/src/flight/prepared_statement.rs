//! Prepared statements: `ActionCreatePreparedStatement`, DoPut of parameters on
//! `CommandPreparedStatementQuery`, GetFlightInfo and DoGet, and `ActionClosePreparedStatement`.
//!
//! Handles are stateless: a [`PreparedStatementHandle`] carries the SQL, the default schema and
//! any bound parameter values (Arrow IPC). Binding parameters (DoPut) answers with a new handle
//! that includes them, as Flight SQL's `DoPutPreparedStatementResult` allows; closing frees
//! nothing, and any replica can execute a handle. Each execution plans against the newest
//! versions (GetFlightInfo pins them into its ticket, as for plain statements).

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

use super::{BoxStream, LakehouseFlightSql, encode_stream, statement_query};
use crate::error::Error;
use crate::query::{Pins, params};

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
    let default_schema = service.default_schema(&request)?;
    let described = service
        .engine
        .describe(&query.query, &default_schema)
        .await?;
    let handle = PreparedStatementHandle {
        sql: query.query,
        default_schema: default_schema.to_string(),
        parameters: Vec::new(),
    };
    Ok(ActionCreatePreparedStatementResult {
        prepared_statement_handle: handle.encode_to_vec().into(),
        dataset_schema: ipc_schema(&described.dataset_schema)?,
        parameter_schema: ipc_schema(&described.parameter_schema)?,
    })
}

/// Binds parameter values: the DoPut stream's batches must hold exactly one row (one value per
/// parameter, by position). Answers with a handle that carries them.
pub(super) async fn bind(
    query: CommandPreparedStatementQuery,
    request: Request<PeekableFlightDataStream>,
) -> Result<DoPutPreparedStatementResult, Status> {
    let handle = PreparedStatementHandle::decode(query.prepared_statement_handle.as_ref())
        .map_err(|e| Error::invalid(format!("invalid prepared statement handle: {e}")))?;
    let stream = request.into_inner().map_err(FlightError::from);
    let batches: Vec<RecordBatch> = FlightRecordBatchStream::new_from_flight_data(stream)
        .try_collect()
        .await
        .map_err(Error::from)?;
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    let batch = match batches.into_iter().find(|b| b.num_rows() > 0) {
        Some(batch) if rows == 1 => batch,
        _ => {
            return Err(Error::invalid(format!(
                "a query binds exactly one row of parameters, got {rows} rows"
            ))
            .into());
        }
    };
    let handle = PreparedStatementHandle {
        parameters: params::encode_parameters(&batch)?,
        ..handle
    };
    Ok(DoPutPreparedStatementResult {
        prepared_statement_handle: Some(handle.encode_to_vec().into()),
    })
}

/// `CommandPreparedStatementUpdate` (JDBC `executeUpdate`): runs the handle's data-changing
/// statement; answers the rows written.
pub(super) async fn update(
    service: &LakehouseFlightSql,
    query: CommandPreparedStatementUpdate,
) -> Result<i64, Status> {
    let handle = decode_handle(&query.prepared_statement_handle)?;
    if handle.parameters.is_some() {
        return Err(Error::invalid(
            "parameters for data-changing statements are not supported yet",
        )
        .into());
    }
    Ok(service
        .engine
        .execute_update(&handle.sql, &handle.schema)
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
    let info = statement_query::plan_flight_info(
        service,
        handle.sql,
        handle.schema,
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
    _request: Request<Ticket>,
) -> Result<Response<BoxStream<FlightData>>, Status> {
    let handle = decode_handle(&query.prepared_statement_handle)?;
    let planned = service
        .engine
        .plan(
            &handle.sql,
            &handle.schema,
            Pins::default(),
            handle.parameters.as_ref(),
        )
        .await?;
    let stream = planned.execute()?;
    Ok(Response::new(encode_stream(planned.schema(), stream)))
}
