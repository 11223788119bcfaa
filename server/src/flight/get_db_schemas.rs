//! `CommandGetDbSchemas`: every schema of the catalog, filtered by the request's catalog and
//! schema pattern (SQL `LIKE` syntax) by arrow-flight's builder.

use arrow_flight::sql::CommandGetDbSchemas;
use arrow_flight::{FlightData, FlightDescriptor, FlightInfo};
use lakehouse_catalog::CATALOG_NAME;
use tonic::{Request, Response, Status};

use super::{BoxStream, LakehouseFlightSql, command_flight_info, encode_batch};
use crate::error::Error;

pub(super) fn get_flight_info(
    query: CommandGetDbSchemas,
    request: Request<FlightDescriptor>,
) -> Result<Response<FlightInfo>, Status> {
    let schema = query.clone().into_builder().schema();
    command_flight_info(&schema, &query, request)
}

pub(super) async fn do_get(
    service: &LakehouseFlightSql,
    query: CommandGetDbSchemas,
) -> Result<Response<BoxStream<FlightData>>, Status> {
    let mut builder = query.into_builder();
    for schema in service.catalog().schemas().await.map_err(Error::from)? {
        builder.append(CATALOG_NAME, schema.as_str());
    }
    Ok(encode_batch(builder.build().map_err(Error::from)?))
}
