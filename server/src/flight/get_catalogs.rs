//! `CommandGetCatalogs`: one row, the catalog `lakehouse`.

use arrow_flight::sql::CommandGetCatalogs;
use arrow_flight::{FlightData, FlightDescriptor, FlightInfo};
use lakehouse_catalog::CATALOG_NAME;
use tonic::{Request, Response, Status};

use super::{BoxStream, command_flight_info, encode_batch};
use crate::error::Error;

pub(super) fn get_flight_info(
    query: CommandGetCatalogs,
    request: Request<FlightDescriptor>,
) -> Result<Response<FlightInfo>, Status> {
    let schema = query.into_builder().schema();
    command_flight_info(&schema, &query, request)
}

pub(super) fn do_get(query: CommandGetCatalogs) -> Result<Response<BoxStream<FlightData>>, Status> {
    let mut builder = query.into_builder();
    builder.append(CATALOG_NAME);
    Ok(encode_batch(builder.build().map_err(Error::from)?))
}
