//! The key commands: `CommandGetPrimaryKeys`, `CommandGetExportedKeys`,
//! `CommandGetImportedKeys` and `CommandGetCrossReference` (JDBC `getPrimaryKeys`,
//! `getExportedKeys`, `getImportedKeys`, `getCrossReference`), with the schemas of the Flight
//! SQL spec (`FlightSql.proto`). Primary keys come from the table's manifest (key name
//! `<table>_pkey`); there are no foreign keys, so the other three answer empty results — never
//! UNIMPLEMENTED, which breaks JDBC browsing.

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

/// DoGet for `CommandGetPrimaryKeys`: one row per key column of the named table (none when the
/// table has no key or does not exist).
pub(super) async fn do_get_primary_keys(
    service: &super::LakehouseFlightSql,
    query: arrow_flight::sql::CommandGetPrimaryKeys,
    request: &Request<arrow_flight::Ticket>,
) -> Result<Response<BoxStream<FlightData>>, Status> {
    use arrow::array::{Int32Array, StringArray};
    use lakehouse_catalog::{CATALOG_NAME, SchemaName, TableName, TableRef};
    let foreign_catalog = query
        .catalog
        .as_deref()
        .is_some_and(|c| !c.is_empty() && c != CATALOG_NAME);
    let schema = match query.db_schema.as_deref().filter(|s| !s.is_empty()) {
        Some(s) => SchemaName::new(s).ok(),
        None => Some(service.default_schema(request)?),
    };
    let table = match (foreign_catalog, schema, TableName::new(query.table.clone())) {
        (false, Some(schema), Ok(table)) => Some(TableRef { schema, table }),
        _ => None,
    };
    let key = match table {
        Some(table) => match service.catalog().table(&table).await {
            Ok(manifest) => manifest
                .primary_key
                .iter()
                .map(|c| (table.clone(), c.clone()))
                .collect(),
            Err(lakehouse_catalog::Error::TableNotFound(_)) => vec![],
            Err(e) => return Err(crate::Error::from(e).into()),
        },
        None => vec![],
    };
    let n = key.len();
    let column = |f: &dyn Fn(&(TableRef, String)) -> String| {
        Arc::new(StringArray::from(key.iter().map(f).collect::<Vec<_>>())) as arrow::array::ArrayRef
    };
    let batch = RecordBatch::try_new(
        Arc::clone(&PRIMARY_KEYS_SCHEMA),
        vec![
            column(&|_| CATALOG_NAME.to_string()),
            column(&|(t, _)| t.schema.to_string()),
            column(&|(t, _)| t.table.to_string()),
            column(&|(_, c)| c.clone()),
            column(&|(t, _)| format!("{}_pkey", t.table)),
            Arc::new(Int32Array::from_iter_values(1..=n as i32)),
        ],
    )
    .map_err(|e| crate::Error::from(e).into_status())?;
    Ok(encode_batch(batch))
}

/// DoGet for the foreign-key commands: no foreign keys exist, so no rows.
pub(super) fn do_get(schema: &SchemaRef) -> Result<Response<BoxStream<FlightData>>, Status> {
    Ok(encode_batch(RecordBatch::new_empty(Arc::clone(schema))))
}
