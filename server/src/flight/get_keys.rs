//! The key commands: `CommandGetPrimaryKeys`, `CommandGetExportedKeys`,
//! `CommandGetImportedKeys` and `CommandGetCrossReference` (JDBC `getPrimaryKeys`,
//! `getExportedKeys`, `getImportedKeys`, `getCrossReference`). Tables declare no keys yet, so
//! each answers an empty result with the schema of the Flight SQL spec (`FlightSql.proto`) —
//! never UNIMPLEMENTED, which breaks JDBC browsing.

use std::sync::{Arc, LazyLock};

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow_flight::sql::ProstMessageExt;
use arrow_flight::{FlightData, FlightDescriptor, FlightInfo};
use tonic::{Request, Response, Status};

use super::{BoxStream, command_flight_info, encode_batch};

/// Result schema of `CommandGetPrimaryKeys`.
pub static PRIMARY_KEYS_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("catalog_name", DataType::Utf8, true),
        Field::new("db_schema_name", DataType::Utf8, true),
        Field::new("table_name", DataType::Utf8, false),
        Field::new("column_name", DataType::Utf8, false),
        Field::new("key_name", DataType::Utf8, true),
        Field::new("key_sequence", DataType::Int32, false),
    ]))
});

/// Result schema of `CommandGetExportedKeys`, `CommandGetImportedKeys` and
/// `CommandGetCrossReference`.
pub static FOREIGN_KEYS_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("pk_catalog_name", DataType::Utf8, true),
        Field::new("pk_db_schema_name", DataType::Utf8, true),
        Field::new("pk_table_name", DataType::Utf8, false),
        Field::new("pk_column_name", DataType::Utf8, false),
        Field::new("fk_catalog_name", DataType::Utf8, true),
        Field::new("fk_db_schema_name", DataType::Utf8, true),
        Field::new("fk_table_name", DataType::Utf8, false),
        Field::new("fk_column_name", DataType::Utf8, false),
        Field::new("key_sequence", DataType::Int32, false),
        Field::new("fk_key_name", DataType::Utf8, true),
        Field::new("pk_key_name", DataType::Utf8, true),
        Field::new("update_rule", DataType::UInt8, false),
        Field::new("delete_rule", DataType::UInt8, false),
    ]))
});

/// GetFlightInfo for any key command, answered with `schema`.
pub(super) fn get_flight_info<C: ProstMessageExt>(
    schema: &SchemaRef,
    query: C,
    request: Request<FlightDescriptor>,
) -> Result<Response<FlightInfo>, Status> {
    command_flight_info(schema, &query, request)
}

/// DoGet for any key command: no keys are declared, so no rows.
pub(super) fn do_get(schema: &SchemaRef) -> Result<Response<BoxStream<FlightData>>, Status> {
    Ok(encode_batch(RecordBatch::new_empty(Arc::clone(schema))))
}
