//! Lakehouse's own protobuf messages, generated from `proto/lakehouse.proto` by
//! `cargo run -p lakehouse-proto-gen` and checked in (no protoc needed to build).
//!
//! - [`StatementTicket`] and [`PreparedStatementHandle`]: stateless payloads of Flight SQL tickets
//!   and prepared-statement handles, so any replica can serve them.
//! - [`CommandIngestFile`] / [`IngestFileResult`]: the custom DoPut command of `lakehouse ingest`.
//!
//! Custom commands travel packed in `google.protobuf.Any` ([`pack_any`], [`unpack_any`]) with type
//! URLs `type.googleapis.com/lakehouse.v1.<Message>`, as Flight SQL's own commands do.

#[allow(missing_docs, clippy::all)]
mod r#gen {
    include!("gen/lakehouse.v1.rs");
}

pub use r#gen::*;

/// Packs `msg` as a `google.protobuf.Any`, encoded to bytes, with the type URL
/// `type.googleapis.com/lakehouse.v1.<Message>`.
///
/// The encoding is the standard Any wire format, so the result can be placed in a
/// `FlightDescriptor.cmd` beside the Flight SQL commands.
pub fn pack_any<M: prost::Message + prost::Name>(msg: &M) -> Vec<u8> {
    use prost::Message as _;
    prost_types::Any::from_msg(msg)
        .expect("encoding into a Vec cannot fail")
        .encode_to_vec()
}

/// Decodes `bytes` as a `google.protobuf.Any` and, when its type URL names `M`, the message inside.
///
/// Returns `Ok(None)` when the bytes are an `Any` of another type, and `Err` when they are not a
/// valid `Any` or the payload does not decode as `M`.
pub fn unpack_any<M: prost::Message + prost::Name + Default>(
    bytes: &[u8],
) -> Result<Option<M>, prost::DecodeError> {
    use prost::Message as _;
    let any = prost_types::Any::decode(bytes)?;
    if any.type_url != M::type_url() {
        return Ok(None);
    }
    any.to_msg().map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_round_trip_and_foreign_type() {
        let cmd = CommandIngestFile {
            table: "t".into(),
            file_name: "a.csv".into(),
            ..Default::default()
        };
        let bytes = pack_any(&cmd);
        assert_eq!(unpack_any::<CommandIngestFile>(&bytes).unwrap(), Some(cmd));
        assert_eq!(unpack_any::<StatementTicket>(&bytes).unwrap(), None);
        assert!(unpack_any::<StatementTicket>(b"\xff\xff").is_err());
    }
}
