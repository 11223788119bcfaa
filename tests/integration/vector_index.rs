//! `CREATE INDEX ... USING IVF_PQ | IVF_FLAT | IVF_HNSW_SQ | FTS` on Lance tables: recall of
//! indexed search against the exact (flat) answer, persistence across restarts, rows appended
//! after the build still found, and the errors for bad statements.

use std::collections::HashSet;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, AsArray, FixedSizeListArray, Float32Array, Int64Array, RecordBatch, StringArray,
};
use arrow::datatypes::{DataType, Field, Int64Type};
use lakehouse_catalog::TableRef;
use lakehouse_tests::{TestServer, code, column_i64, ingest_command, open_catalog, query};
use tonic::Code;

const DIM: usize = 16;

/// Deterministic pseudo-random vectors (a 64-bit LCG), so runs are comparable.
fn random_vectors(n: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut state = seed;
    let mut next = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 33) as f32 / (1u64 << 31) as f32) * 2.0 - 1.0
    };
    (0..n).map(|_| (0..DIM).map(|_| next()).collect()).collect()
}

fn batch(start: i64, vectors: &[Vec<f32>]) -> RecordBatch {
    let ids: Vec<i64> = (start..start + vectors.len() as i64).collect();
    let bodies: Vec<String> = ids.iter().map(|i| format!("row {i}")).collect();
    let values: Vec<f32> = vectors.iter().flatten().copied().collect();
    let item = Arc::new(Field::new("item", DataType::Float32, true));
    let list =
        FixedSizeListArray::new(item, DIM as i32, Arc::new(Float32Array::from(values)), None);
    RecordBatch::try_from_iter(vec![
        ("id", Arc::new(Int64Array::from(ids)) as ArrayRef),
        ("body", Arc::new(StringArray::from(bodies))),
        ("embedding", Arc::new(list)),
    ])
    .unwrap()
}

async fn ingest(server: &TestServer, batch: RecordBatch, create: bool) {
    let options: &[(&str, &str)] = if create {
        &[("lakehouse.table_format", "lance")]
    } else {
        &[]
    };
    let mut client = server.client().await;
    client
        .execute_ingest(
            ingest_command("pts", create, options),
            futures::stream::iter([Ok(batch)]),
        )
        .await
        .unwrap();
}

fn literal(v: &[f32]) -> String {
    format!(
        "[{}]",
        v.iter()
            .map(|x| format!("{x:.6}"))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

async fn top_ids(server: &TestServer, q: &[f32], k: usize, options: &str) -> Vec<i64> {
    let mut client = server.client().await;
    let options = if options.is_empty() {
        String::new()
    } else {
        format!(", '{options}'")
    };
    let sql = format!(
        "SELECT id FROM vector_search('pts', {}, {k}{options}) ORDER BY _distance",
        literal(q)
    );
    column_i64(&query(&mut client, &sql).await.unwrap(), "id")
}

async fn indexes(server: &TestServer) -> Vec<(String, Vec<String>)> {
    let catalog = open_catalog(&server.storage()).await;
    let manifest = catalog
        .table(&TableRef::new("public", "pts").unwrap())
        .await
        .unwrap();
    let store = lakehouse_vector::table::LanceStore::new(catalog.location());
    store
        .indexes(&manifest.lance.clone().unwrap().location)
        .await
        .unwrap()
        .into_iter()
        .map(|index| (index.name, index.columns))
        .collect()
}

#[tokio::test]
async fn ivf_pq_recall_persistence_and_appends() {
    let server = TestServer::start().await;
    let data = random_vectors(2000, 7);
    ingest(&server, batch(0, &data), true).await;
    let queries = random_vectors(20, 99);
    let mut exact = Vec::new();
    for q in &queries {
        exact.push(top_ids(&server, q, 10, "").await);
    }
    let mut client = server.client().await;
    client
        .execute_update(
            "CREATE INDEX pts_vec ON pts USING IVF_PQ (embedding) WITH (num_partitions = 8, num_sub_vectors = 4)"
                .into(),
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        indexes(&server).await,
        [("pts_vec".to_string(), vec!["embedding".to_string()])]
    );

    let mut found = 0;
    for (q, truth) in queries.iter().zip(&exact) {
        let got: HashSet<i64> = top_ids(&server, q, 10, r#"{"nprobes": 8, "refine_factor": 10}"#)
            .await
            .into_iter()
            .collect();
        found += truth.iter().filter(|id| got.contains(id)).count();
    }
    let recall = found as f64 / (10 * queries.len()) as f64;
    eprintln!("IVF_PQ (8 partitions, 4 sub-vectors, nprobes 8, refine 10): recall@10 {recall:.3}");
    assert!(recall >= 0.9, "recall@10 {recall}");

    // Rows appended after the build are still found (Lance searches unindexed fragments).
    let target = queries[0].clone();
    ingest(&server, batch(5000, std::slice::from_ref(&target)), false).await;
    assert_eq!(
        top_ids(&server, &target, 3, r#"{"nprobes": 8}"#).await[0],
        5000
    );

    // The index survives a restart.
    let storage = server.storage();
    server.stop().await;
    let server = TestServer::start_on(storage, |_| {}).await;
    assert_eq!(indexes(&server).await.len(), 1);
    assert_eq!(top_ids(&server, &target, 1, "").await, [5000]);
}

#[tokio::test]
async fn other_index_types_and_bad_statements() {
    let server = TestServer::start().await;
    ingest(&server, batch(0, &random_vectors(300, 3)), true).await;
    let mut client = server.client().await;
    for sql in [
        "CREATE INDEX pts_flat ON pts USING IVF_FLAT (embedding) WITH (num_partitions = 4)",
        "CREATE INDEX pts_hnsw ON pts USING IVF_HNSW_SQ (embedding) WITH (num_partitions = 2)",
        "CREATE INDEX pts_text ON pts USING FTS (body)",
    ] {
        client
            .execute_update(sql.into(), None)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    let names: HashSet<String> = indexes(&server).await.into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        ["pts_flat", "pts_hnsw", "pts_text"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    );
    client
        .execute_update("CREATE TABLE plain AS SELECT 1 AS x".into(), None)
        .await
        .unwrap();
    for (sql, needle) in [
        (
            "CREATE INDEX i ON pts USING BTREE (embedding)",
            "unknown index type",
        ),
        (
            "CREATE INDEX i ON pts USING IVF_PQ (embedding) WITH (num_sub_vectors = 5)",
            "must divide the dimension 16",
        ),
        (
            "CREATE INDEX i ON pts USING IVF_PQ (embedding) WITH (colour = 1)",
            "unknown index option colour",
        ),
        (
            "CREATE INDEX i ON pts USING IVF_PQ (body)",
            "not a vector column",
        ),
        ("CREATE INDEX i ON plain USING IVF_PQ (x)", "Parquet table"),
        ("CREATE INDEX i ON pts (embedding)", "needs USING"),
    ] {
        let err = client.execute_update(sql.into(), None).await.unwrap_err();
        assert_eq!(code(&err), Code::InvalidArgument, "{sql}: {err}");
        assert!(err.to_string().contains(needle), "{sql}: {err}");
    }
    let err = client
        .execute_update(
            "CREATE INDEX i ON nope USING IVF_PQ (embedding)".into(),
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(code(&err), Code::NotFound, "{err}");
}

#[tokio::test]
async fn indexes_are_listed_to_clients_and_dropped() {
    let server = TestServer::start().await;
    ingest(&server, batch(0, &random_vectors(300, 5)), true).await;
    let mut client = server.client().await;
    for sql in [
        "CREATE INDEX pts_vec ON pts USING IVF_FLAT (embedding) WITH (num_partitions = 2)",
        "CREATE INDEX pts_text ON pts USING FTS (body)",
    ] {
        client.execute_update(sql.into(), None).await.unwrap();
    }
    let listed = |batches: Vec<RecordBatch>| -> Vec<String> {
        let mut rows: Vec<String> = batches
            .iter()
            .flat_map(|b| {
                (0..b.num_rows())
                    .map(|i| {
                        (0..b.num_columns())
                            .map(|c| match b.column(c).data_type() {
                                DataType::Int64 => {
                                    b.column(c).as_primitive::<Int64Type>().value(i).to_string()
                                }
                                _ => b.column(c).as_string::<i32>().value(i).to_string(),
                            })
                            .collect::<Vec<_>>()
                            .join("|")
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        rows.sort();
        rows
    };
    let rows = listed(
        query(&mut client, "SELECT * FROM vector_indexes()")
            .await
            .unwrap(),
    );
    assert_eq!(
        rows,
        [
            "public|pts|pts_text|body|Inverted|300",
            "public|pts|pts_vec|embedding|IVF_FLAT|300"
        ]
    );

    client
        .execute_update("DROP INDEX pts_vec".into(), None)
        .await
        .unwrap();
    client
        .execute_update("DROP INDEX pts_text ON pts".into(), None)
        .await
        .unwrap();
    let rows = listed(
        query(&mut client, "SELECT * FROM vector_indexes()")
            .await
            .unwrap(),
    );
    assert!(rows.is_empty(), "{rows:?}");
    let err = client
        .execute_update("DROP INDEX pts_vec".into(), None)
        .await
        .unwrap_err();
    assert_eq!(code(&err), Code::InvalidArgument, "{err}");
    assert!(err.to_string().contains("does not exist"), "{err}");
    client
        .execute_update("DROP INDEX IF EXISTS pts_vec".into(), None)
        .await
        .unwrap();
    // Search still works without the index (flat).
    assert_eq!(
        top_ids(&server, &random_vectors(300, 5)[7], 1, "").await,
        [7]
    );
}

#[tokio::test]
async fn text_search_ranks_by_bm25_over_the_fts_index() {
    let server = TestServer::start().await;
    let texts = [
        "kubernetes cluster migration with helm",
        "baking sourdough bread",
        "kubernetes operators and kubernetes networking",
        "quarterly revenue report",
    ];
    let vectors = random_vectors(texts.len(), 11);
    let mut b = batch(1, &vectors);
    let bodies: ArrayRef = Arc::new(StringArray::from(texts.to_vec()));
    b = RecordBatch::try_new(
        b.schema(),
        vec![b.column(0).clone(), bodies, b.column(2).clone()],
    )
    .unwrap();
    ingest(&server, b, true).await;
    let mut client = server.client().await;
    client
        .execute_update("CREATE INDEX pts_text ON pts USING FTS (body)".into(), None)
        .await
        .unwrap();
    let got = query(
        &mut client,
        "SELECT id, _score FROM text_search('pts', 'kubernetes', 5) ORDER BY _score DESC",
    )
    .await
    .unwrap();
    let ids = column_i64(&got, "id");
    // Both kubernetes rows, the one that says it twice first; nothing else matches.
    assert_eq!(ids, [3, 1]);
    let filtered = query(
        &mut client,
        r#"SELECT id FROM text_search('pts', 'kubernetes', 5, '{"filter": "id < 3"}')"#,
    )
    .await
    .unwrap();
    assert_eq!(
        filtered.iter().map(|b| b.num_rows()).sum::<usize>(),
        1,
        "the pre-filter keeps only id 1"
    );
    let err = query(&mut client, "SELECT * FROM text_search('pts', 'x', 0)")
        .await
        .unwrap_err();
    assert_eq!(code(&err), Code::InvalidArgument, "{err}");
}
