//! Prepared statements: `ActionCreatePreparedStatement`, `CommandPreparedStatementQuery`
//! (GetFlightInfo, DoGet) and `ActionClosePreparedStatement`.
//!
//! Handles are stateless: a [`PreparedStatementHandle`] carries the SQL and default schema, so
//! closing frees nothing and any replica can execute a handle. Each execution plans against the
//! newest versions (GetFlightInfo pins them into its ticket, as for plain statements).

use arrow::ipc::writer::IpcWriteOptions;
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest,
    ActionCreatePreparedStatementResult, CommandPreparedStatementQuery,
};
use arrow_flight::{
    Action, FlightData, FlightDescriptor, FlightInfo, IpcMessage, SchemaAsIpc, Ticket,
};
use lakehouse_catalog::SchemaName;
use lakehouse_proto::PreparedStatementHandle;
use prost::Message;
use tonic::{Request, Response, Status};

use super::{BoxStream, LakehouseFlightSql, encode_stream, statement_query};
use crate::error::Error;
use crate::query::Pins;

fn decode_handle(bytes: &[u8]) -> Result<(String, SchemaName), Status> {
    let handle = PreparedStatementHandle::decode(bytes)
        .map_err(|e| Error::invalid(format!("invalid prepared statement handle: {e}")))?;
    if handle.sql.is_empty() {
        return Err(Error::invalid("invalid prepared statement handle: no statement").into());
    }
    let schema = SchemaName::new(handle.default_schema).map_err(Error::from)?;
    Ok((handle.sql, schema))
}

pub(super) async fn create(
    service: &LakehouseFlightSql,
    query: ActionCreatePreparedStatementRequest,
    request: Request<Action>,
) -> Result<ActionCreatePreparedStatementResult, Status> {
    let default_schema = service.default_schema(&request);
    let planned = service
        .engine
        .plan(&query.query, &default_schema, Pins::default())
        .await?;
    let IpcMessage(dataset_schema) =
        SchemaAsIpc::new(&planned.schema(), &IpcWriteOptions::default())
            .try_into()
            .map_err(|e: arrow::error::ArrowError| Error::from(e).into_status())?;
    let handle = PreparedStatementHandle {
        sql: query.query,
        default_schema: default_schema.to_string(),
    };
    Ok(ActionCreatePreparedStatementResult {
        prepared_statement_handle: handle.encode_to_vec().into(),
        dataset_schema,
        parameter_schema: Default::default(),
    })
}

pub(super) fn close(query: ActionClosePreparedStatementRequest) -> Result<(), Status> {
    decode_handle(&query.prepared_statement_handle).map(|_| ())
}

pub(super) async fn get_flight_info(
    service: &LakehouseFlightSql,
    query: CommandPreparedStatementQuery,
    request: Request<FlightDescriptor>,
) -> Result<Response<FlightInfo>, Status> {
    let (sql, schema) = decode_handle(&query.prepared_statement_handle)?;
    let info =
        statement_query::plan_flight_info(service, sql, schema, request.into_inner()).await?;
    Ok(Response::new(info))
}

/// DoGet with the prepared-statement command itself as ticket (some clients do this instead of
/// using the FlightInfo's ticket): plans against the newest versions and streams.
pub(super) async fn do_get(
    service: &LakehouseFlightSql,
    query: CommandPreparedStatementQuery,
    _request: Request<Ticket>,
) -> Result<Response<BoxStream<FlightData>>, Status> {
    let (sql, schema) = decode_handle(&query.prepared_statement_handle)?;
    let planned = service.engine.plan(&sql, &schema, Pins::default()).await?;
    let stream = planned.execute()?;
    Ok(Response::new(encode_stream(planned.schema(), stream)))
}
