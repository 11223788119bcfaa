//! Handshake: with auth off (the only mode until the auth issue), any client may connect; the
//! answer is an empty `HandshakeResponse`, so clients that always handshake (JDBC, ADBC) proceed.

use arrow_flight::{HandshakeRequest, HandshakeResponse};
use tonic::{Request, Response, Status, Streaming};

use super::{BoxStream, LakehouseFlightSql};

pub(super) async fn handshake(
    _service: &LakehouseFlightSql,
    _request: Request<Streaming<HandshakeRequest>>,
) -> Result<Response<BoxStream<HandshakeResponse>>, Status> {
    let response = HandshakeResponse {
        protocol_version: 0,
        payload: Default::default(),
    };
    Ok(Response::new(Box::pin(futures::stream::once(async move {
        Ok(response)
    }))))
}
