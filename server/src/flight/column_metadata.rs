//! Column metadata for JDBC/ODBC clients: SQL type names, precision and scale of Arrow types,
//! and the `ARROW:FLIGHT:SQL:*` field-metadata keys of the Flight SQL spec (`FlightSql.proto`,
//! `CommandGetTables.include_schema`), which the Arrow Flight SQL JDBC driver's `getColumns`
//! reads.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use lakehouse_catalog::{CATALOG_NAME, TableRef};

/// Field-metadata key: the column's catalog.
pub const CATALOG_NAME_KEY: &str = "ARROW:FLIGHT:SQL:CATALOG_NAME";
/// Field-metadata key: the column's schema.
pub const DB_SCHEMA_NAME_KEY: &str = "ARROW:FLIGHT:SQL:DB_SCHEMA_NAME";
/// Field-metadata key: the column's table.
pub const TABLE_NAME_KEY: &str = "ARROW:FLIGHT:SQL:TABLE_NAME";
/// Field-metadata key: the SQL type name ([`sql_type`]).
pub const TYPE_NAME_KEY: &str = "ARROW:FLIGHT:SQL:TYPE_NAME";
/// Field-metadata key: precision / column size.
pub const PRECISION_KEY: &str = "ARROW:FLIGHT:SQL:PRECISION";
/// Field-metadata key: scale / fractional digits.
pub const SCALE_KEY: &str = "ARROW:FLIGHT:SQL:SCALE";
/// Field-metadata key: "1" when auto-incremented (never here).
pub const IS_AUTO_INCREMENT_KEY: &str = "ARROW:FLIGHT:SQL:IS_AUTO_INCREMENT";
/// Field-metadata key: "1" when comparisons are case-sensitive (text columns).
pub const IS_CASE_SENSITIVE_KEY: &str = "ARROW:FLIGHT:SQL:IS_CASE_SENSITIVE";
/// Field-metadata key: "1" when the column cannot be written.
pub const IS_READ_ONLY_KEY: &str = "ARROW:FLIGHT:SQL:IS_READ_ONLY";
/// Field-metadata key: "1" when usable in a WHERE clause.
pub const IS_SEARCHABLE_KEY: &str = "ARROW:FLIGHT:SQL:IS_SEARCHABLE";
/// Field-metadata key: a column comment (empty; read by the JDBC driver as REMARKS).
pub const REMARKS_KEY: &str = "ARROW:FLIGHT:SQL:REMARKS";

/// SQL name, precision and scale of an Arrow type, as reported to JDBC/ODBC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlType {
    /// Type name as DataFusion's SQL accepts it, e.g. `BIGINT`, `VARCHAR`, `DECIMAL`.
    pub name: &'static str,
    /// Decimal digits for numbers, characters for dates/times; `None` when not meaningful.
    pub precision: Option<i32>,
    /// Digits after the point (decimals) or fractional-second digits (times); `None` otherwise.
    pub scale: Option<i32>,
}

/// The [`SqlType`] of `data_type`.
pub fn sql_type(data_type: &DataType) -> SqlType {
    let t = |name, precision, scale| SqlType {
        name,
        precision,
        scale,
    };
    let fraction = |unit: &TimeUnit| match unit {
        TimeUnit::Second => 0,
        TimeUnit::Millisecond => 3,
        TimeUnit::Microsecond => 6,
        TimeUnit::Nanosecond => 9,
    };
    match data_type {
        DataType::Null => t("NULL", None, None),
        DataType::Boolean => t("BOOLEAN", Some(1), None),
        DataType::Int8 => t("TINYINT", Some(3), Some(0)),
        DataType::Int16 => t("SMALLINT", Some(5), Some(0)),
        DataType::Int32 => t("INTEGER", Some(10), Some(0)),
        DataType::Int64 => t("BIGINT", Some(19), Some(0)),
        DataType::UInt8 => t("TINYINT UNSIGNED", Some(3), Some(0)),
        DataType::UInt16 => t("SMALLINT UNSIGNED", Some(5), Some(0)),
        DataType::UInt32 => t("INTEGER UNSIGNED", Some(10), Some(0)),
        DataType::UInt64 => t("BIGINT UNSIGNED", Some(20), Some(0)),
        DataType::Float16 => t("HALF", Some(3), None),
        DataType::Float32 => t("REAL", Some(7), None),
        DataType::Float64 => t("DOUBLE", Some(15), None),
        DataType::Decimal32(p, s) | DataType::Decimal64(p, s) => {
            t("DECIMAL", Some(i32::from(*p)), Some(i32::from(*s)))
        }
        DataType::Decimal128(p, s) | DataType::Decimal256(p, s) => {
            t("DECIMAL", Some(i32::from(*p)), Some(i32::from(*s)))
        }
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => t("VARCHAR", None, None),
        DataType::Binary
        | DataType::LargeBinary
        | DataType::BinaryView
        | DataType::FixedSizeBinary(_) => t("BINARY", None, None),
        DataType::Date32 | DataType::Date64 => t("DATE", Some(10), None),
        DataType::Time32(u) | DataType::Time64(u) => {
            let f = fraction(u);
            t("TIME", Some(8 + if f > 0 { f + 1 } else { 0 }), Some(f))
        }
        DataType::Timestamp(u, tz) => {
            let f = fraction(u);
            let name = if tz.is_some() {
                "TIMESTAMP WITH TIME ZONE"
            } else {
                "TIMESTAMP"
            };
            t(name, Some(19 + if f > 0 { f + 1 } else { 0 }), Some(f))
        }
        DataType::Duration(_) | DataType::Interval(_) => t("INTERVAL", None, None),
        DataType::List(_)
        | DataType::LargeList(_)
        | DataType::ListView(_)
        | DataType::LargeListView(_)
        | DataType::FixedSizeList(_, _) => t("ARRAY", None, None),
        DataType::Struct(_) => t("STRUCT", None, None),
        DataType::Map(_, _) => t("MAP", None, None),
        DataType::Union(_, _) => t("UNION", None, None),
        DataType::Dictionary(_, value) => sql_type(value),
        DataType::RunEndEncoded(_, value) => sql_type(value.data_type()),
    }
}

/// `schema` with every field's metadata extended by the `ARROW:FLIGHT:SQL:*` keys for a column
/// of `table` (existing field metadata is kept). Precision and scale are present only when
/// meaningful for the type.
pub fn annotate(table: &TableRef, schema: &Schema) -> Schema {
    let fields: Vec<Arc<Field>> = schema
        .fields()
        .iter()
        .map(|field| {
            let sql = sql_type(field.data_type());
            let text = matches!(
                field.data_type(),
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
            );
            let flag = |b: bool| if b { "1" } else { "0" }.to_string();
            let mut metadata: HashMap<String, String> = field.metadata().clone();
            metadata.extend([
                (CATALOG_NAME_KEY.to_string(), CATALOG_NAME.to_string()),
                (DB_SCHEMA_NAME_KEY.to_string(), table.schema.to_string()),
                (TABLE_NAME_KEY.to_string(), table.table.to_string()),
                (TYPE_NAME_KEY.to_string(), sql.name.to_string()),
                (IS_AUTO_INCREMENT_KEY.to_string(), flag(false)),
                (IS_CASE_SENSITIVE_KEY.to_string(), flag(text)),
                (IS_READ_ONLY_KEY.to_string(), flag(false)),
                (IS_SEARCHABLE_KEY.to_string(), flag(true)),
                (REMARKS_KEY.to_string(), String::new()),
            ]);
            if let Some(p) = sql.precision {
                metadata.insert(PRECISION_KEY.to_string(), p.to_string());
            }
            if let Some(s) = sql.scale {
                metadata.insert(SCALE_KEY.to_string(), s.to_string());
            }
            Arc::new(field.as_ref().clone().with_metadata(metadata))
        })
        .collect();
    Schema::new(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annotates_every_field() {
        let table = TableRef::new("public", "t").unwrap();
        let schema = Schema::new(vec![
            Field::new("price", DataType::Decimal128(15, 2), false),
            Field::new("name", DataType::Utf8, true),
        ]);
        let out = annotate(&table, &schema);
        let price = out.field(0).metadata();
        assert_eq!(price[TYPE_NAME_KEY], "DECIMAL");
        assert_eq!(price[PRECISION_KEY], "15");
        assert_eq!(price[SCALE_KEY], "2");
        assert_eq!(price[TABLE_NAME_KEY], "t");
        let name = out.field(1).metadata();
        assert_eq!(name[TYPE_NAME_KEY], "VARCHAR");
        assert_eq!(name[IS_CASE_SENSITIVE_KEY], "1");
        assert!(!name.contains_key(PRECISION_KEY));
        assert!(!out.field(0).is_nullable() && out.field(1).is_nullable());
    }
}
