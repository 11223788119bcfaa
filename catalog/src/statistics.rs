//! Per-file column statistics for the manifest, taken from the Parquet footer the writer has
//! just written (as Delta and Iceberg keep per-file min/max/null counts), so a reader can skip
//! files by a predicate before opening any.
//!
//! Values are stored as text in the form Arrow casts from and to `Utf8` (`12`, `1.5`,
//! `2024-01-31`, `2024-01-31T10:00:00`, `12.50`, the string itself), so a reader turns them
//! back into typed values with one cast. Only exact bounds are recorded: a Parquet writer may
//! truncate long strings, and a truncated bound is left out.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef};
use arrow::compute::{SortOptions, sort};
use arrow::datatypes::{DataType, Schema};
use arrow::util::display::array_value_to_string;
use parquet::arrow::arrow_reader::statistics::StatisticsConverter;
use parquet::file::metadata::ParquetMetaData;
use serde::{Deserialize, Serialize};

/// Statistics of one column of one data file (all its row groups, deleted rows included).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnStatistics {
    /// The smallest non-null value, as text (see the module docs); absent when unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<String>,
    /// The largest non-null value, as text; absent when unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<String>,
    /// Null values in the column; absent when unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub null_count: Option<u64>,
}

/// Whether min/max of `data_type` are recorded: numbers, decimals, strings, booleans, dates
/// and times — types whose text form casts back exactly.
pub fn has_bounds(data_type: &DataType) -> bool {
    data_type.is_integer()
        || data_type.is_floating()
        || matches!(
            data_type,
            DataType::Utf8
                | DataType::LargeUtf8
                | DataType::Boolean
                | DataType::Date32
                | DataType::Date64
                | DataType::Timestamp(_, _)
                | DataType::Decimal128(_, _)
                | DataType::Decimal256(_, _)
        )
}

/// The statistics of every top-level column of `schema` in the file `metadata` describes,
/// by column name. Columns without usable statistics are left out.
pub fn file_statistics(
    schema: &Schema,
    metadata: &ParquetMetaData,
) -> BTreeMap<String, ColumnStatistics> {
    let mut out = BTreeMap::new();
    let row_groups = metadata.row_groups();
    if row_groups.is_empty() {
        return out;
    }
    for field in schema.fields() {
        let Ok(converter) = StatisticsConverter::try_new(
            field.name(),
            schema,
            metadata.file_metadata().schema_descr(),
        ) else {
            continue;
        };
        let mut stats = ColumnStatistics {
            null_count: converter
                .row_group_null_counts(row_groups.iter())
                .ok()
                .and_then(|counts| {
                    (counts.null_count() == 0).then(|| counts.values().iter().sum::<u64>())
                }),
            ..Default::default()
        };
        if has_bounds(field.data_type()) {
            let exact = |flags: Result<arrow::array::BooleanArray, _>| {
                flags.is_ok_and(|f| f.null_count() == 0 && f.values().count_set_bits() == f.len())
            };
            if exact(converter.row_group_is_min_value_exact(row_groups.iter())) {
                stats.min = converter
                    .row_group_mins(row_groups.iter())
                    .ok()
                    .and_then(|mins| extreme(&mins, false));
            }
            if exact(converter.row_group_is_max_value_exact(row_groups.iter())) {
                stats.max = converter
                    .row_group_maxes(row_groups.iter())
                    .ok()
                    .and_then(|maxes| extreme(&maxes, true));
            }
        }
        if stats != ColumnStatistics::default() {
            out.insert(field.name().clone(), stats);
        }
    }
    out
}

/// The smallest (or, with `largest`, the largest) non-null value of `values` as text; `None`
/// when a row group has no bound (a null in `values`) or the values do not sort.
fn extreme(values: &ArrayRef, largest: bool) -> Option<String> {
    if values.is_empty() || values.null_count() > 0 {
        return None;
    }
    let sorted = sort(
        values,
        Some(SortOptions {
            descending: largest,
            nulls_first: false,
        }),
    )
    .ok()?;
    let value = array_value_to_string(&sorted, 0).ok()?;
    // Only keep text that casts back to the same value.
    let back = arrow::compute::cast(
        &(Arc::new(arrow::array::StringArray::from(vec![value.as_str()])) as ArrayRef),
        values.data_type(),
    )
    .ok()?;
    (back.null_count() == 0 && back.as_ref() == sorted.slice(0, 1).as_ref()).then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;
    use crate::name::TableRef;
    use crate::storage::StorageLocation;
    use arrow::array::{Date32Array, Decimal128Array, Float64Array, Int64Array, RecordBatch};
    use arrow::array::{StringArray, TimestampMicrosecondArray};
    use arrow::datatypes::{Field, TimeUnit};

    #[tokio::test]
    async fn bounds_and_null_counts_from_the_footer() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = Catalog::open(StorageLocation::open(dir.path().to_str().unwrap()).unwrap())
            .await
            .unwrap();
        let schema = Arc::new(Schema::new(vec![
            Field::new("i", DataType::Int64, true),
            Field::new("f", DataType::Float64, true),
            Field::new("s", DataType::Utf8, true),
            Field::new("long", DataType::Utf8, true),
            Field::new("d", DataType::Date32, true),
            Field::new("t", DataType::Timestamp(TimeUnit::Microsecond, None), true),
            Field::new("m", DataType::Decimal128(10, 2), true),
        ]));
        let long = "x".repeat(100);
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(Int64Array::from(vec![Some(5), None, Some(-3)])),
                Arc::new(Float64Array::from(vec![1.5, 0.25, 2.0])),
                Arc::new(StringArray::from(vec!["pear", "apple", "zoo"])),
                Arc::new(StringArray::from(vec![long.as_str(), "a", "b"])),
                Arc::new(Date32Array::from(vec![19000, 19723, 18000])),
                Arc::new(TimestampMicrosecondArray::from(vec![
                    0,
                    1_700_000_000_000_000,
                    5,
                ])),
                Arc::new(
                    Decimal128Array::from(vec![1250, -5, 99])
                        .with_precision_and_scale(10, 2)
                        .unwrap(),
                ),
            ],
        )
        .unwrap();
        let table = TableRef::new("public", "s").unwrap();
        let mut writer = catalog.data_writer(&table, schema, None);
        writer.write(&batch).await.unwrap();
        let files = writer.finish().await.unwrap();
        let stats = &files[0].statistics;
        let bounds = |c: &str| {
            let s = &stats[c];
            (s.min.as_deref(), s.max.as_deref(), s.null_count)
        };
        assert_eq!(bounds("i"), (Some("-3"), Some("5"), Some(1)));
        assert_eq!(bounds("f"), (Some("0.25"), Some("2.0"), Some(0)));
        assert_eq!(bounds("s"), (Some("apple"), Some("zoo"), Some(0)));
        assert_eq!(
            bounds("d"),
            (Some("2019-04-14"), Some("2024-01-01"), Some(0))
        );
        assert_eq!(bounds("m"), (Some("-0.05"), Some("12.50"), Some(0)));
        assert_eq!(bounds("t").0, Some("1970-01-01T00:00:00"));
        // A bound the writer truncated is not recorded as exact.
        let long_stats = &stats["long"];
        assert!(
            long_stats.max.as_deref().is_none_or(|m| m == long),
            "{long_stats:?}"
        );
    }
}
