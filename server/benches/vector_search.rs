//! In-process `vector_search` latency: the same SQL the Flight SQL benchmark sends, planned and
//! run by [`QueryEngine`] inside this process (no network, no Arrow IPC). Driven by
//! `bench/vector/bench.py`, which also computes recall from the ids printed here.
//!
//! ```text
//! cargo bench -p lakehouse-server --bench vector_search -- STORAGE TABLE QUERIES.parquet K [OPTIONS_JSON]
//! ```
//! `QUERIES.parquet` holds one column `q: FixedSizeList<Float32, D>`; the table must have an
//! `id: Int64` column. Prints one JSON object: `{"latency_ms": [...], "ids": [[...], ...]}`,
//! one entry per query in file order, after one untimed warm-up pass over all queries.

use std::sync::Arc;
use std::time::Instant;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{Float32Type, Int64Type};
use futures::TryStreamExt;
use lakehouse_catalog::{Catalog, SchemaName, StorageLocation};
use lakehouse_server::query::{Pins, QueryEngine, QueryOptions};

fn usage() -> ! {
    eprintln!(
        "usage: cargo bench -p lakehouse-server --bench vector_search -- \
         STORAGE TABLE QUERIES.parquet K [OPTIONS_JSON]"
    );
    std::process::exit(2)
}

fn read_queries(path: &str) -> Vec<String> {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|b| b.build())
        .unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut literals = Vec::new();
    for batch in reader {
        let batch = batch.unwrap_or_else(|e| panic!("{path}: {e}"));
        let list = batch
            .column_by_name("q")
            .unwrap_or_else(|| panic!("{path}: no column q"))
            .as_fixed_size_list();
        for i in 0..list.len() {
            let values = list.value(i);
            let values: Vec<String> = values
                .as_primitive::<Float32Type>()
                .values()
                .iter()
                .map(|v| format!("{v:?}"))
                .collect();
            literals.push(format!("[{}]", values.join(",")));
        }
    }
    literals
}

#[tokio::main]
async fn main() {
    // `cargo bench` appends `--bench`; the positional arguments come after `--`.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let [storage, table, queries, k, rest @ ..] = args.as_slice() else {
        usage()
    };
    let options = match rest {
        [] => String::new(),
        [json] => format!(", '{json}'"),
        _ => usage(),
    };
    let location = StorageLocation::open(storage).expect("storage");
    let catalog = Arc::new(Catalog::open(location).await.expect("catalog"));
    let engine = QueryEngine::new(
        catalog,
        &QueryOptions::default(),
        &Default::default(),
        &Default::default(),
        &Default::default(),
        &Default::default(),
    )
    .expect("engine");
    let schema = SchemaName::new(lakehouse_catalog::DEFAULT_SCHEMA).expect("schema");
    let literals = read_queries(queries);
    let run = async |literal: &String| -> Vec<i64> {
        let sql = format!("SELECT id FROM vector_search('{table}', {literal}, {k}{options})");
        let planned = engine
            .plan(&sql, &schema, Pins::default(), None)
            .await
            .expect("plan");
        let batches: Vec<_> = planned
            .execute()
            .expect("execute")
            .try_collect()
            .await
            .expect("results");
        batches
            .iter()
            .flat_map(|b| {
                b.column_by_name("id")
                    .expect("id column")
                    .as_primitive::<Int64Type>()
                    .values()
                    .to_vec()
            })
            .collect()
    };
    for literal in &literals {
        run(literal).await;
    }
    let mut latency_ms = Vec::with_capacity(literals.len());
    let mut ids = Vec::with_capacity(literals.len());
    for literal in &literals {
        let started = Instant::now();
        ids.push(run(literal).await);
        latency_ms.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    println!(
        "{}",
        serde_json::json!({ "latency_ms": latency_ms, "ids": ids })
    );
}
