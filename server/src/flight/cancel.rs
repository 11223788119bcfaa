//! Cancellation: Flight's `CancelFlightInfo` action (body: `CancelFlightInfoRequest`) and Flight
//! SQL's deprecated `CancelQuery` (body: `Any(ActionCancelQueryRequest)`), both naming the query
//! by the FlightInfo that GetFlightInfo returned.
//!
//! Each statement ticket carries a query id; cancelling stops the DoGet running it (its stream
//! ends with `Cancelled` and the DataFusion execution is dropped) or, when it has not started,
//! makes its DoGet fail with `Cancelled`.

use arrow_flight::sql::{Any, TicketStatementQuery};
use arrow_flight::{CancelStatus, FlightInfo};
use lakehouse_proto::StatementTicket;
use prost::Message;

use super::LakehouseFlightSql;
use crate::error::{Error, Result};

/// The Flight action type of `CancelFlightInfo`.
pub const CANCEL_FLIGHT_INFO: &str = "CancelFlightInfo";

/// The query ids in `info`'s tickets (statement tickets; other tickets have none).
fn query_ids(info: &FlightInfo) -> Vec<String> {
    info.endpoint
        .iter()
        .filter_map(|endpoint| endpoint.ticket.as_ref())
        .filter_map(|ticket| Any::decode(ticket.ticket.as_ref()).ok())
        .filter_map(|any| any.unpack::<TicketStatementQuery>().ok().flatten())
        .filter_map(|t| StatementTicket::decode(t.statement_handle.as_ref()).ok())
        .map(|t| t.query_id)
        .filter(|id| !id.is_empty())
        .collect()
}

/// Cancels the queries of `info`: `Cancelled` when it names at least one query (running or
/// not yet started), `NotCancellable` when its tickets are not statement tickets (metadata
/// results, which are not cancellable).
///
/// # Errors
/// [`Error::InvalidArgument`] when `info` is missing.
pub(super) fn cancel(
    service: &LakehouseFlightSql,
    info: Option<FlightInfo>,
) -> Result<CancelStatus> {
    let info = info.ok_or_else(|| Error::invalid("CancelFlightInfo without a FlightInfo"))?;
    let ids = query_ids(&info);
    if ids.is_empty() {
        return Ok(CancelStatus::NotCancellable);
    }
    for id in &ids {
        let running = service.admission().cancel(id);
        tracing::info!(query_id = %id, running, "query cancelled");
    }
    Ok(CancelStatus::Cancelled)
}
