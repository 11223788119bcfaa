//! `CommandGetTables`: every live table, type `TABLE`, filtered by catalog, schema and table
//! patterns and table types by arrow-flight's builder. With `include_schema` the fifth column is
//! each table's IPC-encoded Arrow schema with the `ARROW:FLIGHT:SQL:*` field metadata JDBC's
//! `getColumns` reads ([`super::column_metadata`]).

use arrow_flight::sql::CommandGetTables;
use arrow_flight::{FlightData, FlightDescriptor, FlightInfo};
use lakehouse_catalog::CATALOG_NAME;
use tonic::{Request, Response, Status};

use super::{BoxStream, LakehouseFlightSql, column_metadata, command_flight_info, encode_batch};
use crate::error::Error;

/// The table type Lakehouse tables are reported with.
pub const TABLE_TYPE: &str = "TABLE";

pub(super) fn get_flight_info(
    query: CommandGetTables,
    request: Request<FlightDescriptor>,
) -> Result<Response<FlightInfo>, Status> {
    let schema = query.clone().into_builder().schema();
    command_flight_info(&schema, &query, request)
}

pub(super) async fn do_get(
    service: &LakehouseFlightSql,
    query: CommandGetTables,
) -> Result<Response<BoxStream<FlightData>>, Status> {
    let mut builder = query.into_builder();
    let include_schema = builder.include_schema();
    let catalog = service.catalog();
    for (_, manifests) in catalog.list().await.map_err(Error::from)? {
        for manifest in manifests {
            let table = &manifest.table;
            let arrow_schema = if include_schema {
                column_metadata::annotate(table, &manifest.arrow_schema())
            } else {
                arrow::datatypes::Schema::empty()
            };
            builder
                .append(
                    CATALOG_NAME,
                    table.schema.as_str(),
                    table.table.as_str(),
                    TABLE_TYPE,
                    &arrow_schema,
                )
                .map_err(Error::from)?;
        }
    }
    Ok(encode_batch(builder.build().map_err(Error::from)?))
}
