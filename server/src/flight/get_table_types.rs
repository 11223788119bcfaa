//! `CommandGetTableTypes`: the table types that exist here — `TABLE`.

use arrow_flight::sql::{CommandGetTableTypes, ProstMessageExt};
use arrow_flight::{FlightData, FlightDescriptor, FlightInfo};
use prost::Message;
use tonic::{Request, Response, Status};

use super::get_tables::TABLE_TYPE;
use super::{BoxStream, encode_batch, flight_info};
use crate::error::Error;

pub(super) fn get_flight_info(
    query: CommandGetTableTypes,
    request: Request<FlightDescriptor>,
) -> Result<Response<FlightInfo>, Status> {
    let schema = query.into_builder().schema();
    let info = flight_info(
        &schema,
        query.as_any().encode_to_vec(),
        request.into_inner(),
    )?;
    Ok(Response::new(info))
}

pub(super) fn do_get(
    query: CommandGetTableTypes,
) -> Result<Response<BoxStream<FlightData>>, Status> {
    let mut builder = query.into_builder();
    builder.append(TABLE_TYPE);
    Ok(encode_batch(builder.build().map_err(Error::from)?))
}
