//! In-process search latency: the same SQL the Flight SQL benchmark sends (`vector_search`,
//! `hybrid_search`, any query with an `id: Int64` column), planned and run by [`QueryEngine`]
//! inside this process (no network, no Arrow IPC). Driven by `bench/vector/bench.py`, which
//! also computes recall from the ids printed here.
//!
//! ```text
//! cargo bench -p lakehouse-server --bench vector_search -- STORAGE QUERIES.sql
//! ```
//! `QUERIES.sql` holds one query per line. Prints one JSON object: `{"latency_ms": [...],
//! "ids": [[...], ...]}`, one entry per query in file order, after one untimed warm-up pass over
//! all queries.

use std::sync::Arc;
use std::time::Instant;

use arrow::array::AsArray;
use arrow::datatypes::Int64Type;
use futures::TryStreamExt;
use lakehouse_catalog::{Catalog, SchemaName, StorageLocation};
use lakehouse_server::query::{Pins, QueryEngine, QueryOptions, RequestScope};

fn usage() -> ! {
    eprintln!(
        "usage: cargo bench -p lakehouse-server --bench vector_search -- STORAGE QUERIES.sql"
    );
    std::process::exit(2)
}

#[tokio::main]
async fn main() {
    // `cargo bench` appends `--bench`; the positional arguments come after `--`.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let [storage, queries] = args.as_slice() else {
        usage()
    };
    let queries: Vec<String> = std::fs::read_to_string(queries)
        .unwrap_or_else(|e| panic!("{queries}: {e}"))
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect();
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
    .await
    .expect("engine");
    let scope =
        RequestScope::new(SchemaName::new(lakehouse_catalog::DEFAULT_SCHEMA).expect("schema"));
    let run = async |sql: &String| -> Vec<i64> {
        let planned = engine
            .plan(sql, &scope, Pins::default(), None)
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
    for sql in &queries {
        run(sql).await;
    }
    let mut latency_ms = Vec::with_capacity(queries.len());
    let mut ids = Vec::with_capacity(queries.len());
    for sql in &queries {
        let started = Instant::now();
        ids.push(run(sql).await);
        latency_ms.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    println!(
        "{}",
        serde_json::json!({ "latency_ms": latency_ms, "ids": ids })
    );
}
