//! Sample data for newcomers: `--sample tpch:SCALE` generates the 8 TPC-H tables in-process with
//! the `tpchgen` crate (spec-conformant dbgen output) and commits each one that is absent.
//!
//! Column types follow the TPC-H spec as `tpchgen-arrow` maps it: identifiers `Int64`, integers
//! `Int32`, money and quantities `Decimal128(15, 2)`, dates `Date32`, text `Utf8`.

use std::fmt::{Display, Write as _};
use std::str::FromStr;
use std::sync::Arc;

use arrow::array::{
    ArrayBuilder, Date32Builder, Decimal128Builder, Int32Builder, Int64Builder, RecordBatch,
    StringBuilder, make_builder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use lakehouse_catalog::{Catalog, DEFAULT_SCHEMA, Error as CatalogError, TableRef, WriteMode};
use serde::{Deserialize, Serialize};
use tokio_stream::wrappers::ReceiverStream;
use tpchgen::generators::{
    CustomerGenerator, LineItemGenerator, NationGenerator, OrderGenerator, PartGenerator,
    PartSuppGenerator, RegionGenerator, SupplierGenerator,
};

use crate::error::Result;

/// A sample data set.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Sample {
    /// TPC-H at the given scale factor (1.0 ≈ 1 GB of CSV; lineitem has ~6 million rows per 1.0).
    Tpch {
        /// Scale factor, > 0.
        scale: f64,
    },
}

impl FromStr for Sample {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("invalid sample {s:?}: expected tpch:SCALE, e.g. tpch:0.1");
        let (kind, scale) = s.split_once(':').ok_or_else(bad)?;
        if kind != "tpch" {
            return Err(bad());
        }
        let scale: f64 = scale.parse().map_err(|_| bad())?;
        if !(scale.is_finite() && scale > 0.0) {
            return Err(bad());
        }
        Ok(Sample::Tpch { scale })
    }
}

impl TryFrom<String> for Sample {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<Sample> for String {
    fn from(s: Sample) -> String {
        s.to_string()
    }
}

impl Display for Sample {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Sample::Tpch { scale } => write!(f, "tpch:{scale}"),
        }
    }
}

/// The TPC-H tables, smallest first.
pub const TPCH_TABLES: [&str; 8] = [
    "region", "nation", "supplier", "customer", "part", "partsupp", "orders", "lineitem",
];

/// Creates every table of `sample` that does not exist yet in the default schema. A table
/// created meanwhile by another process is left as it is.
///
/// # Errors
/// Catalog errors while writing or committing.
pub async fn load(catalog: &Catalog, sample: Sample) -> Result<()> {
    let Sample::Tpch { scale } = sample;
    for name in TPCH_TABLES {
        let table = TableRef::new(DEFAULT_SCHEMA, name)?;
        match catalog.table(&table).await {
            Ok(_) => continue,
            Err(CatalogError::TableNotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
        let schema = tpch_schema(name);
        let (tx, rx) = tokio::sync::mpsc::channel(2);
        let gen_schema = Arc::clone(&schema);
        let generator = tokio::task::spawn_blocking(move || {
            generate(name, scale, gen_schema, &mut |batch| {
                tx.blocking_send(Ok(batch)).is_ok()
            })
        });
        let started = std::time::Instant::now();
        let result = catalog
            .write_stream(
                &table,
                WriteMode::Create,
                &schema,
                None,
                ReceiverStream::new(rx),
            )
            .await;
        generator.await.expect("generator thread panicked");
        match result {
            Ok(m) => tracing::info!(
                %table, rows = m.total_rows, bytes = m.total_bytes,
                ms = started.elapsed().as_millis() as u64, "sample table created"
            ),
            Err(CatalogError::TableExists(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// The Arrow schema of TPC-H table `name` (one of [`TPCH_TABLES`]).
pub fn tpch_schema(name: &str) -> SchemaRef {
    use DataType::{Date32, Int32, Int64, Utf8};
    let money = DataType::Decimal128(15, 2);
    let f = |n: &str, t: &DataType| Field::new(n, t.clone(), false);
    let fields = match name {
        "region" => vec![
            f("r_regionkey", &Int64),
            f("r_name", &Utf8),
            f("r_comment", &Utf8),
        ],
        "nation" => vec![
            f("n_nationkey", &Int64),
            f("n_name", &Utf8),
            f("n_regionkey", &Int64),
            f("n_comment", &Utf8),
        ],
        "supplier" => vec![
            f("s_suppkey", &Int64),
            f("s_name", &Utf8),
            f("s_address", &Utf8),
            f("s_nationkey", &Int64),
            f("s_phone", &Utf8),
            f("s_acctbal", &money),
            f("s_comment", &Utf8),
        ],
        "customer" => vec![
            f("c_custkey", &Int64),
            f("c_name", &Utf8),
            f("c_address", &Utf8),
            f("c_nationkey", &Int64),
            f("c_phone", &Utf8),
            f("c_acctbal", &money),
            f("c_mktsegment", &Utf8),
            f("c_comment", &Utf8),
        ],
        "part" => vec![
            f("p_partkey", &Int64),
            f("p_name", &Utf8),
            f("p_mfgr", &Utf8),
            f("p_brand", &Utf8),
            f("p_type", &Utf8),
            f("p_size", &Int32),
            f("p_container", &Utf8),
            f("p_retailprice", &money),
            f("p_comment", &Utf8),
        ],
        "partsupp" => vec![
            f("ps_partkey", &Int64),
            f("ps_suppkey", &Int64),
            f("ps_availqty", &Int32),
            f("ps_supplycost", &money),
            f("ps_comment", &Utf8),
        ],
        "orders" => vec![
            f("o_orderkey", &Int64),
            f("o_custkey", &Int64),
            f("o_orderstatus", &Utf8),
            f("o_totalprice", &money),
            f("o_orderdate", &Date32),
            f("o_orderpriority", &Utf8),
            f("o_clerk", &Utf8),
            f("o_shippriority", &Int32),
            f("o_comment", &Utf8),
        ],
        "lineitem" => vec![
            f("l_orderkey", &Int64),
            f("l_partkey", &Int64),
            f("l_suppkey", &Int64),
            f("l_linenumber", &Int32),
            f("l_quantity", &money),
            f("l_extendedprice", &money),
            f("l_discount", &money),
            f("l_tax", &money),
            f("l_returnflag", &Utf8),
            f("l_linestatus", &Utf8),
            f("l_shipdate", &Date32),
            f("l_commitdate", &Date32),
            f("l_receiptdate", &Date32),
            f("l_shipinstruct", &Utf8),
            f("l_shipmode", &Utf8),
            f("l_comment", &Utf8),
        ],
        other => unreachable!("not a TPC-H table: {other}"),
    };
    Arc::new(Schema::new(fields))
}

/// Rows per generated batch.
const BATCH_ROWS: usize = 8192;

/// Accumulates generated rows into record batches, column by column.
struct Batcher {
    schema: SchemaRef,
    columns: Vec<Box<dyn ArrayBuilder>>,
    rows: usize,
}

impl Batcher {
    fn new(schema: SchemaRef) -> Self {
        let columns = schema
            .fields()
            .iter()
            .map(|f| make_builder(f.data_type(), BATCH_ROWS))
            .collect();
        Self {
            schema,
            columns,
            rows: 0,
        }
    }

    fn builder<B: ArrayBuilder>(&mut self, column: usize) -> &mut B {
        self.columns[column]
            .as_any_mut()
            .downcast_mut::<B>()
            .expect("builder matches schema")
    }

    fn i64(&mut self, column: usize, v: i64) {
        self.builder::<Int64Builder>(column).append_value(v);
    }

    fn i32(&mut self, column: usize, v: i32) {
        self.builder::<Int32Builder>(column).append_value(v);
    }

    /// A decimal in hundredths (TPC-H money).
    fn cents(&mut self, column: usize, v: i64) {
        self.builder::<Decimal128Builder>(column)
            .append_value(i128::from(v));
    }

    fn date(&mut self, column: usize, days_since_epoch: i32) {
        self.builder::<Date32Builder>(column)
            .append_value(days_since_epoch);
    }

    fn str(&mut self, column: usize, v: &str) {
        self.builder::<StringBuilder>(column).append_value(v);
    }

    fn text(&mut self, column: usize, v: impl Display) {
        let b = self.builder::<StringBuilder>(column);
        write!(b, "{v}").expect("writing to a builder cannot fail");
        b.append_value("");
    }

    /// Ends a row; returns a batch every [`BATCH_ROWS`] rows.
    fn end_row(&mut self) -> Option<RecordBatch> {
        self.rows += 1;
        (self.rows == BATCH_ROWS).then(|| self.finish())
    }

    fn finish(&mut self) -> RecordBatch {
        self.rows = 0;
        let arrays = self.columns.iter_mut().map(|b| b.finish()).collect();
        RecordBatch::try_new(Arc::clone(&self.schema), arrays).expect("columns match schema")
    }
}

/// Generates table `name` at `scale`, handing each batch to `sink` until it returns false.
fn generate(name: &str, scale: f64, schema: SchemaRef, sink: &mut dyn FnMut(RecordBatch) -> bool) {
    let mut b = Batcher::new(schema);
    macro_rules! rows {
        ($generator:expr, |$r:ident| $fill:block) => {
            for $r in $generator.iter() {
                $fill
                if let Some(batch) = b.end_row() {
                    if !sink(batch) {
                        return;
                    }
                }
            }
        };
    }
    match name {
        "region" => rows!(RegionGenerator::new(scale, 1, 1), |r| {
            b.i64(0, r.r_regionkey);
            b.str(1, r.r_name);
            b.str(2, r.r_comment);
        }),
        "nation" => rows!(NationGenerator::new(scale, 1, 1), |r| {
            b.i64(0, r.n_nationkey);
            b.str(1, r.n_name);
            b.i64(2, r.n_regionkey);
            b.str(3, r.n_comment);
        }),
        "supplier" => rows!(SupplierGenerator::new(scale, 1, 1), |r| {
            b.i64(0, r.s_suppkey);
            b.text(1, r.s_name);
            b.text(2, r.s_address);
            b.i64(3, r.s_nationkey);
            b.text(4, r.s_phone);
            b.cents(5, r.s_acctbal.0);
            b.str(6, &r.s_comment);
        }),
        "customer" => rows!(CustomerGenerator::new(scale, 1, 1), |r| {
            b.i64(0, r.c_custkey);
            b.text(1, r.c_name);
            b.text(2, r.c_address);
            b.i64(3, r.c_nationkey);
            b.text(4, r.c_phone);
            b.cents(5, r.c_acctbal.0);
            b.str(6, r.c_mktsegment);
            b.str(7, r.c_comment);
        }),
        "part" => rows!(PartGenerator::new(scale, 1, 1), |r| {
            b.i64(0, r.p_partkey);
            b.text(1, r.p_name);
            b.text(2, r.p_mfgr);
            b.text(3, r.p_brand);
            b.str(4, r.p_type);
            b.i32(5, r.p_size);
            b.str(6, r.p_container);
            b.cents(7, r.p_retailprice.0);
            b.str(8, r.p_comment);
        }),
        "partsupp" => rows!(PartSuppGenerator::new(scale, 1, 1), |r| {
            b.i64(0, r.ps_partkey);
            b.i64(1, r.ps_suppkey);
            b.i32(2, r.ps_availqty);
            b.cents(3, r.ps_supplycost.0);
            b.str(4, r.ps_comment);
        }),
        "orders" => rows!(OrderGenerator::new(scale, 1, 1), |r| {
            b.i64(0, r.o_orderkey);
            b.i64(1, r.o_custkey);
            b.str(2, r.o_orderstatus.as_str());
            b.cents(3, r.o_totalprice.0);
            b.date(4, r.o_orderdate.to_unix_epoch());
            b.str(5, r.o_orderpriority);
            b.text(6, r.o_clerk);
            b.i32(7, r.o_shippriority);
            b.str(8, r.o_comment);
        }),
        "lineitem" => rows!(LineItemGenerator::new(scale, 1, 1), |r| {
            b.i64(0, r.l_orderkey);
            b.i64(1, r.l_partkey);
            b.i64(2, r.l_suppkey);
            b.i32(3, r.l_linenumber);
            b.cents(4, r.l_quantity * 100);
            b.cents(5, r.l_extendedprice.0);
            b.cents(6, r.l_discount.0);
            b.cents(7, r.l_tax.0);
            b.str(8, r.l_returnflag);
            b.str(9, r.l_linestatus);
            b.date(10, r.l_shipdate.to_unix_epoch());
            b.date(11, r.l_commitdate.to_unix_epoch());
            b.date(12, r.l_receiptdate.to_unix_epoch());
            b.str(13, r.l_shipinstruct);
            b.str(14, r.l_shipmode);
            b.str(15, r.l_comment);
        }),
        other => unreachable!("not a TPC-H table: {other}"),
    }
    if b.rows > 0 {
        let batch = b.finish();
        sink(batch);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_specs_parse_or_explain() {
        assert_eq!(
            "tpch:0.1".parse::<Sample>(),
            Ok(Sample::Tpch { scale: 0.1 })
        );
        for bad in ["tpch", "tpcds:1", "tpch:0", "tpch:-1", "tpch:x", "tpch:inf"] {
            let err = bad.parse::<Sample>().unwrap_err();
            assert!(err.contains("expected tpch:SCALE"), "{bad}: {err}");
        }
    }

    #[test]
    fn generated_batches_match_schema_and_row_counts() {
        for (name, rows) in [("region", 5), ("nation", 25), ("supplier", 10)] {
            let schema = tpch_schema(name);
            let mut total = 0;
            generate(name, 0.001, Arc::clone(&schema), &mut |batch| {
                assert_eq!(batch.schema(), schema);
                total += batch.num_rows();
                true
            });
            assert_eq!(total, rows, "{name}");
        }
    }
}
