//! `CommandGetTableTypes`: the table types that exist here — `TABLE`.

use arrow_flight::sql::CommandGetTableTypes;
use arrow_flight::{FlightData, FlightDescriptor, FlightInfo};
use tonic::{Request, Response, Status};

use super::get_tables::TABLE_TYPE;
use super::{BoxStream, command_flight_info, encode_batch};
use crate::error::Error;

pub(super) fn get_flight_info(
    query: CommandGetTableTypes,
    request: Request<FlightDescriptor>,
) -> Result<Response<FlightInfo>, Status> {
    let schema = query.into_builder().schema();
    command_flight_info(&schema, &query, request)
}

pub(super) fn do_get(
    query: CommandGetTableTypes,
) -> Result<Response<BoxStream<FlightData>>, Status> {
    let mut builder = query.into_builder();
    builder.append(TABLE_TYPE);
    Ok(encode_batch(builder.build().map_err(Error::from)?))
}
