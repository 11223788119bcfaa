//! `CommandGetXdbcTypeInfo` (JDBC `getTypeInfo`, ODBC `SQLGetTypeInfo`): one row per SQL type a
//! Lakehouse query can return, named as [`super::column_metadata::sql_type`] names them, with the
//! JDBC/ODBC type codes of the Flight SQL spec's `XdbcDataType`. Types without an XDBC code
//! (ARRAY, STRUCT, MAP, UNION, NULL, HALF) are listed as `XDBC_UNKNOWN_TYPE`.

use arrow_flight::sql::metadata::{XdbcTypeInfo, XdbcTypeInfoData, XdbcTypeInfoDataBuilder};
use arrow_flight::sql::{
    CommandGetXdbcTypeInfo, Nullable, Searchable, XdbcDataType, XdbcDatetimeSubcode,
};
use arrow_flight::{FlightData, FlightDescriptor, FlightInfo};
use tonic::{Request, Response, Status};

use super::{BoxStream, LakehouseFlightSql, command_flight_info, encode_batch};
use crate::error::Error;

fn info(name: &str, data_type: XdbcDataType) -> XdbcTypeInfo {
    XdbcTypeInfo {
        type_name: name.to_string(),
        data_type,
        column_size: None,
        literal_prefix: None,
        literal_suffix: None,
        create_params: None,
        nullable: Nullable::NullabilityNullable,
        case_sensitive: false,
        searchable: Searchable::Basic,
        unsigned_attribute: None,
        fixed_prec_scale: false,
        auto_increment: Some(false),
        local_type_name: Some(name.to_string()),
        minimum_scale: None,
        maximum_scale: None,
        sql_data_type: data_type,
        datetime_subcode: None,
        num_prec_radix: None,
        interval_precision: None,
    }
}

fn number(name: &str, data_type: XdbcDataType, digits: i32, unsigned: bool) -> XdbcTypeInfo {
    XdbcTypeInfo {
        column_size: Some(digits),
        unsigned_attribute: Some(unsigned),
        num_prec_radix: Some(10),
        minimum_scale: Some(0),
        maximum_scale: Some(0),
        ..info(name, data_type)
    }
}

fn datetime(
    name: &str,
    data_type: XdbcDataType,
    size: i32,
    prefix: &str,
    subcode: XdbcDatetimeSubcode,
    max_scale: i32,
) -> XdbcTypeInfo {
    XdbcTypeInfo {
        column_size: Some(size),
        literal_prefix: Some(prefix.to_string()),
        literal_suffix: Some("'".to_string()),
        sql_data_type: XdbcDataType::XdbcDatetime,
        datetime_subcode: Some(subcode),
        minimum_scale: Some(0),
        maximum_scale: Some(max_scale),
        ..info(name, data_type)
    }
}

/// Builds the table once, at start.
pub(super) fn build() -> Result<XdbcTypeInfoData, Error> {
    use XdbcDataType as X;
    use XdbcDatetimeSubcode as S;
    let unknown = |name: &str| XdbcTypeInfo {
        searchable: Searchable::None,
        ..info(name, X::XdbcUnknownType)
    };
    let rows = [
        XdbcTypeInfo {
            column_size: Some(1),
            ..info("BOOLEAN", X::XdbcBit)
        },
        number("TINYINT", X::XdbcTinyint, 3, false),
        number("SMALLINT", X::XdbcSmallint, 5, false),
        number("INTEGER", X::XdbcInteger, 10, false),
        number("BIGINT", X::XdbcBigint, 19, false),
        number("TINYINT UNSIGNED", X::XdbcTinyint, 3, true),
        number("SMALLINT UNSIGNED", X::XdbcSmallint, 5, true),
        number("INTEGER UNSIGNED", X::XdbcInteger, 10, true),
        number("BIGINT UNSIGNED", X::XdbcBigint, 20, true),
        XdbcTypeInfo {
            column_size: Some(3),
            num_prec_radix: Some(10),
            unsigned_attribute: Some(false),
            ..info("HALF", X::XdbcFloat)
        },
        XdbcTypeInfo {
            column_size: Some(7),
            num_prec_radix: Some(10),
            unsigned_attribute: Some(false),
            ..info("REAL", X::XdbcReal)
        },
        XdbcTypeInfo {
            column_size: Some(15),
            num_prec_radix: Some(10),
            unsigned_attribute: Some(false),
            ..info("DOUBLE", X::XdbcDouble)
        },
        XdbcTypeInfo {
            column_size: Some(38),
            create_params: Some(vec!["precision".into(), "scale".into()]),
            num_prec_radix: Some(10),
            unsigned_attribute: Some(false),
            minimum_scale: Some(0),
            maximum_scale: Some(38),
            ..info("DECIMAL", X::XdbcDecimal)
        },
        XdbcTypeInfo {
            literal_prefix: Some("'".into()),
            literal_suffix: Some("'".into()),
            case_sensitive: true,
            searchable: Searchable::Full,
            ..info("VARCHAR", X::XdbcVarchar)
        },
        XdbcTypeInfo {
            literal_prefix: Some("X'".into()),
            literal_suffix: Some("'".into()),
            ..info("BINARY", X::XdbcVarbinary)
        },
        datetime("DATE", X::XdbcDate, 10, "DATE '", S::XdbcSubcodeYear, 0),
        datetime("TIME", X::XdbcTime, 18, "TIME '", S::XdbcSubcodeTime, 9),
        datetime(
            "TIMESTAMP",
            X::XdbcTimestamp,
            29,
            "TIMESTAMP '",
            S::XdbcSubcodeTimestamp,
            9,
        ),
        datetime(
            "TIMESTAMP WITH TIME ZONE",
            X::XdbcTimestamp,
            35,
            "TIMESTAMP '",
            S::XdbcSubcodeTimestampWithTimezone,
            9,
        ),
        XdbcTypeInfo {
            sql_data_type: X::XdbcInterval,
            ..info("INTERVAL", X::XdbcInterval)
        },
        unknown("ARRAY"),
        unknown("STRUCT"),
        unknown("MAP"),
        unknown("UNION"),
        unknown("NULL"),
    ];
    let mut builder = XdbcTypeInfoDataBuilder::new();
    for row in rows {
        builder.append(row);
    }
    Ok(builder.build()?)
}

pub(super) fn get_flight_info(
    service: &LakehouseFlightSql,
    query: CommandGetXdbcTypeInfo,
    request: Request<FlightDescriptor>,
) -> Result<Response<FlightInfo>, Status> {
    let schema = query.into_builder(&service.xdbc_types).schema();
    command_flight_info(&schema, &query, request)
}

pub(super) fn do_get(
    service: &LakehouseFlightSql,
    query: CommandGetXdbcTypeInfo,
) -> Result<Response<BoxStream<FlightData>>, Status> {
    let batch = query
        .into_builder(&service.xdbc_types)
        .build()
        .map_err(Error::from)?;
    Ok(encode_batch(batch))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::AsArray;
    use arrow::datatypes::{DataType, Field, IntervalUnit, TimeUnit};

    use super::super::column_metadata::sql_type;

    /// Every type name the column metadata reports has a row here, so JDBC can resolve it.
    #[test]
    fn every_reported_type_name_is_listed() {
        let data = super::build().unwrap();
        let batch = data.record_batch(None).unwrap();
        let names: Vec<&str> = batch
            .column(0)
            .as_string::<i32>()
            .iter()
            .flatten()
            .collect();
        let item = Arc::new(Field::new("item", DataType::Int64, true));
        let types = [
            DataType::Null,
            DataType::Boolean,
            DataType::Int8,
            DataType::Int16,
            DataType::Int32,
            DataType::Int64,
            DataType::UInt8,
            DataType::UInt16,
            DataType::UInt32,
            DataType::UInt64,
            DataType::Float16,
            DataType::Float32,
            DataType::Float64,
            DataType::Decimal128(15, 2),
            DataType::Utf8,
            DataType::LargeUtf8,
            DataType::Binary,
            DataType::Date32,
            DataType::Time64(TimeUnit::Microsecond),
            DataType::Timestamp(TimeUnit::Microsecond, None),
            DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
            DataType::Interval(IntervalUnit::MonthDayNano),
            DataType::List(Arc::clone(&item)),
            DataType::Struct(vec![Field::new("a", DataType::Int64, true)].into()),
        ];
        for data_type in types {
            let name = sql_type(&data_type).name;
            assert!(
                names.contains(&name),
                "{data_type} reports {name}, not in GetXdbcTypeInfo"
            );
        }
    }
}
