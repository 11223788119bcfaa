//! Handshake. Without auth, any client may connect and the answer is an empty
//! `HandshakeResponse` (clients that always handshake, JDBC and ADBC, proceed). With auth, the
//! service has already checked the Basic credentials (or token) of the call, and
//! [`token_response`] answers with the bearer token the client then sends on every call.

use arrow_flight::{HandshakeRequest, HandshakeResponse};
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status, Streaming};

use super::{BoxStream, LakehouseFlightSql};
use crate::error::Error;

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

/// The answer to a successful login: `authorization: Bearer <token>` as a response header (what
/// the Flight SQL JDBC driver, ADBC and `pyarrow.flight` read) and the token as the payload.
pub(super) fn token_response(
    token: &str,
) -> Result<Response<BoxStream<HandshakeResponse>>, Status> {
    let header: MetadataValue<_> = format!("Bearer {token}")
        .parse()
        .map_err(|_| Error::Internal("token is not a valid header value".into()))?;
    let response = HandshakeResponse {
        protocol_version: 0,
        payload: token.as_bytes().to_vec().into(),
    };
    let mut response = Response::new(Box::pin(futures::stream::once(async move { Ok(response) }))
        as BoxStream<HandshakeResponse>);
    response.metadata_mut().insert("authorization", header);
    Ok(response)
}
