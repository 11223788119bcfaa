//! `CommandStatementQuery`: plan in GetFlightInfo, stream in DoGet.
//!
//! The ticket is a `TicketStatementQuery` whose handle is a [`StatementTicket`]: the SQL, the
//! default schema and the table versions the plan read (for Lance tables, with the Lance
//! dataset version). DoGet runs the plan GetFlightInfo made when this server still holds it
//! ([`super::LakehouseFlightSql`]'s plan cache), else re-plans with those versions pinned: a
//! commit between the two calls does not change the answer, and any replica can serve the
//! ticket.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow_flight::sql::{CommandStatementQuery, ProstMessageExt, TicketStatementQuery};
use arrow_flight::{FlightData, FlightDescriptor, FlightInfo};
use lakehouse_catalog::{AsOf, SchemaName, TableRef, Version};
use lakehouse_proto::{StatementTicket, TableVersionPin};
use prost::Message;
use tonic::{Request, Response, Status};

use super::{BoxStream, LakehouseFlightSql, flight_info};
use crate::auth::Principal;
use crate::error::Error;
use crate::observability::call::Call;
use crate::query::{Pins, PlannedQuery, RequestScope, TablePin, params};

pub(super) async fn get_flight_info(
    service: &LakehouseFlightSql,
    query: CommandStatementQuery,
    request: Request<FlightDescriptor>,
) -> Result<Response<FlightInfo>, Status> {
    let scope = service.scope(&request)?;
    let caller = Caller::of(&request)?;
    let keep_plan = super::keeps_plan(&request);
    let info = plan_flight_info(
        service,
        &caller,
        keep_plan,
        query.query,
        scope,
        None,
        request.into_inner(),
    )
    .await?;
    Ok(Response::new(info))
}

/// Who asks for a plan: the principal, and the request's [`Call`] when it has one.
pub(super) struct Caller {
    principal: Principal,
    call: Option<Call>,
}

impl Caller {
    /// The caller of `request`.
    pub(super) fn of<T>(request: &Request<T>) -> Result<Self, Status> {
        Ok(Self {
            principal: super::principal(request)?.clone(),
            call: super::call(request),
        })
    }
}

/// Plans `sql` with `parameters` bound and returns a FlightInfo whose ticket pins the versions
/// the plan read and carries the parameters; with `keep_plan`, the plan waits for the ticket's
/// DoGet in the plan cache.
///
/// A data-changing statement (clients such as ADBC's DB-API send every statement this way) is
/// run here, exactly once, and the ticket then answers its row count (`count: UInt64`); running
/// it in DoGet would write again each time the ticket is redeemed. It needs a `write` principal.
pub(super) async fn plan_flight_info(
    service: &LakehouseFlightSql,
    caller: &Caller,
    keep_plan: bool,
    sql: String,
    scope: RequestScope,
    parameters: Option<RecordBatch>,
    descriptor: FlightDescriptor,
) -> Result<FlightInfo, Status> {
    let statement = service.engine.statement(&sql)?;
    let (sql, statement, parameters) = if statement.is_query() {
        (sql, statement, parameters)
    } else {
        caller
            .principal
            .require_write("a data-changing statement")
            .map_err(Error::into_status)?;
        let rows = service
            .engine
            .execute_update(&statement, &scope.default_schema, parameters.as_ref())
            .await?;
        if let Some(call) = &caller.call {
            call.add(rows.max(0) as u64, 0);
        }
        let count = crate::query::update_count_query(rows);
        let statement = service.engine.statement(&count)?;
        (count, statement, None)
    };
    let planned = service
        .engine
        .plan_statement(&statement, &scope, Pins::default(), parameters.as_ref())
        .await?;
    planned_flight_info(
        service,
        Arc::new(planned),
        keep_plan,
        sql,
        scope.default_schema,
        parameters,
        descriptor,
    )
}

/// The FlightInfo of a query already planned (`planned`, from `sql` with `parameters`): its
/// ticket pins the versions the plan read and carries the parameters; with `keep_plan`, the
/// plan waits for the ticket's DoGet in the plan cache.
pub(super) fn planned_flight_info(
    service: &LakehouseFlightSql,
    planned: Arc<PlannedQuery>,
    keep_plan: bool,
    sql: String,
    default_schema: SchemaName,
    parameters: Option<RecordBatch>,
    descriptor: FlightDescriptor,
) -> Result<FlightInfo, Status> {
    let parameters = match &parameters {
        Some(batch) => params::encode_parameters(batch)?,
        None => Vec::new(),
    };
    let ticket = StatementTicket {
        query_id: uuid::Uuid::new_v4().to_string(),
        sql: planned.resolved_sql.clone().unwrap_or(sql),
        parameters,
        default_schema: default_schema.to_string(),
        pins: planned
            .pins
            .iter()
            .map(|((table, as_of), pin)| TableVersionPin {
                schema: table.schema.to_string(),
                table: table.table.to_string(),
                version: pin.version.0,
                lance_version: pin.lance_version,
                as_of: match as_of {
                    AsOf::Latest => String::new(),
                    other => other.to_string(),
                },
            })
            .collect(),
    };
    let ticket = TicketStatementQuery {
        statement_handle: ticket.encode_to_vec().into(),
    };
    let schema = planned.schema();
    if keep_plan {
        service
            .plans
            .insert(ticket.statement_handle.clone(), planned);
    }
    flight_info(&schema, ticket.as_any().encode_to_vec(), descriptor)
}

/// Streams the ticket's plan: the one GetFlightInfo made when this server still holds it,
/// else planned again with the ticket's pins, the ticket's default schema and `request`'s
/// [`super::DISTRIBUTED_HEADER`].
pub(super) async fn do_get<T>(
    service: &LakehouseFlightSql,
    ticket: TicketStatementQuery,
    request: &Request<T>,
) -> Result<Response<BoxStream<FlightData>>, Status> {
    let ipc = super::ipc_options(request)?;
    let cached = service.plans.remove(&ticket.statement_handle);
    let handle = ticket.statement_handle;
    let ticket = StatementTicket::decode(handle.as_ref())
        .map_err(|e| Error::invalid(format!("invalid statement ticket: {e}")))?;
    let query_id = (!ticket.query_id.is_empty()).then_some(ticket.query_id.as_str());
    if let Some(planned) = cached {
        let stream = service.stream_query(planned, query_id, ipc).await?;
        return Ok(Response::new(stream));
    }
    let scope = RequestScope {
        default_schema: SchemaName::new(ticket.default_schema).map_err(Error::from)?,
        distributed: super::distributed(request)?,
    };
    let pins = ticket
        .pins
        .into_iter()
        .map(|p| {
            let pin = TablePin {
                version: Version(p.version),
                lance_version: p.lance_version,
            };
            let as_of = AsOf::parse(&p.as_of).ok_or_else(|| {
                Error::invalid(format!("invalid pin {:?} in the ticket", p.as_of))
            })?;
            Ok((
                (
                    TableRef::new(p.schema, p.table).map_err(Error::from)?,
                    as_of,
                ),
                pin,
            ))
        })
        .collect::<Result<Vec<_>, Error>>()?;
    let parameters = params::decode_parameters(&ticket.parameters)?;
    let planned = service
        .engine
        .plan(&ticket.sql, &scope, Pins::fixed(pins), parameters.as_ref())
        .await?;
    let stream = service
        .stream_query(Arc::new(planned), query_id, ipc)
        .await?;
    Ok(Response::new(stream))
}
