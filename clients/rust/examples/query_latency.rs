//! Query latency through the Rust client: each query of a file run over Flight SQL
//! (GetFlightInfo, then DoGet of each endpoint) until its whole result is in this process.
//! Driven by `bench/vector/bench.py`, beside ADBC from Python and the in-process engine, to
//! split a query's time between the client, the two RPCs and the server.
//!
//! ```text
//! cargo run --release -p lakehouse-client --example query_latency -- URL QUERIES.sql
//! ```
//! `QUERIES.sql` holds one query per line, each with an `id: Int64` column. Prints one JSON
//! object: `{"latency_ms": [...], "ids": [[...], ...]}`, one entry per query in file order,
//! after one untimed warm-up pass over all queries.

use std::time::Instant;

use arrow::array::AsArray;
use arrow::datatypes::Int64Type;
use futures::TryStreamExt;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, queries] = args.as_slice() else {
        eprintln!("usage: query_latency URL QUERIES.sql");
        std::process::exit(2)
    };
    let queries: Vec<String> = std::fs::read_to_string(queries)
        .unwrap_or_else(|e| panic!("{queries}: {e}"))
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect();
    let mut client = lakehouse_client::Client::connect(url)
        .await
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    let mut run = async |sql: &str| -> Vec<i64> {
        let batches: Vec<_> = client
            .query(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .try_collect()
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
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
