//! `CommandGetDbSchemas`: every schema of the catalog, filtered by the request's catalog and
//! schema pattern (SQL `LIKE` syntax) by arrow-flight's builder.

use arrow_flight::sql::{CommandGetDbSchemas, ProstMessageExt};
use arrow_flight::{FlightData, FlightDescriptor, FlightInfo};
use lakehouse_catalog::CATALOG_NAME;
use prost::Message;
use tonic::{Request, Response, Status};

use super::{BoxStream, LakehouseFlightSql, encode_batch, flight_info};
use crate::error::Error;

pub(super) fn get_flight_info(
    query: CommandGetDbSchemas,
    request: Request<FlightDescriptor>,
) -> Result<Response<FlightInfo>, Status> {
    let schema = query.clone().into_builder().schema();
    let info = flight_info(
        &schema,
        query.as_any().encode_to_vec(),
        request.into_inner(),
    )?;
    Ok(Response::new(info))
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
