//! `vector_search` over Lance tables: flat nearest-neighbour search with vector and text
//! queries (MiniLM from the real model server), `_distance` checked against brute force,
//! pre-filters, joins, and the errors for bad arguments.

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::Float32Type;
use lakehouse_server::ServeConfig;
use lakehouse_tests::models::{EMBED_DIMENSION, ModelServer, minilm_config, minilm_vectors};
use lakehouse_tests::{
    TestServer, code, column_i64, column_str, ingest_lance, ingest_notes, notes_batch, query,
};
use tonic::Code;

fn column_f32(batches: &[RecordBatch], name: &str) -> Vec<f32> {
    batches
        .iter()
        .flat_map(|b| {
            b.column_by_name(name)
                .unwrap()
                .as_primitive::<Float32Type>()
                .values()
                .to_vec()
        })
        .collect()
}

fn with_minilm(c: &mut ServeConfig) {
    let models = [("minilm".to_string(), minilm_config(ModelServer::shared()))];
    c.embedding.models = models.into_iter().collect();
}

#[tokio::test]
async fn vector_queries_return_the_k_nearest_with_exact_distances() {
    let server = TestServer::start().await;
    // 200 points on a circle in the first two dimensions, plus noise dimensions.
    let ids: Vec<i64> = (0..200).collect();
    let vectors: Vec<Vec<f32>> = ids
        .iter()
        .map(|&i| {
            let a = i as f32 * std::f32::consts::TAU / 200.0;
            vec![a.cos(), a.sin(), (i % 7) as f32 * 0.01, 0.5]
        })
        .collect();
    let bodies: Vec<String> = ids.iter().map(|i| format!("point {i}")).collect();
    ingest_lance(
        &server,
        "points",
        notes_batch(&ids, &bodies, &vectors),
        "none",
    )
    .await;
    let mut client = server.client().await;

    let q = [1.0f32, 0.05, 0.0, 0.5];
    let sql = format!(
        "SELECT id, body, _distance FROM vector_search('points', [{}], 5) ORDER BY _distance",
        q.map(|v| v.to_string()).join(", ")
    );
    let got = query(&mut client, &sql).await.unwrap();
    // Brute force cosine distances.
    let cosine = |v: &[f32]| {
        let dot: f32 = v.iter().zip(&q).map(|(a, b)| a * b).sum();
        let nv = v.iter().map(|a| a * a).sum::<f32>().sqrt();
        let nq = q.iter().map(|a| a * a).sum::<f32>().sqrt();
        1.0 - dot / (nv * nq)
    };
    let mut expected: Vec<(i64, f32)> = ids
        .iter()
        .map(|&i| (i, cosine(&vectors[i as usize])))
        .collect();
    expected.sort_by(|a, b| a.1.total_cmp(&b.1));
    assert_eq!(
        column_i64(&got, "id"),
        expected[..5].iter().map(|e| e.0).collect::<Vec<_>>()
    );
    for (d, e) in column_f32(&got, "_distance").iter().zip(&expected) {
        assert!((d - e.1).abs() < 1e-4, "{d} vs {}", e.1);
    }

    // Pre-filter: still k rows when k rows match, all matching.
    let filtered = query(
        &mut client,
        "SELECT id FROM vector_search('points', [1.0, 0.0, 0.0, 0.5], 4, '{\"filter\": \"id >= 100\"}')",
    )
    .await
    .unwrap();
    let filtered_ids = column_i64(&filtered, "id");
    assert_eq!(filtered_ids.len(), 4);
    assert!(filtered_ids.iter().all(|&i| i >= 100), "{filtered_ids:?}");

    // It is a table: aggregate and join.
    let joined = query(
        &mut client,
        "SELECT count(*) AS n FROM vector_search('points', [0.0, 1.0, 0.0, 0.5], 10) s \
         JOIN points p ON p.id = s.id WHERE p.id < 100",
    )
    .await
    .unwrap();
    assert_eq!(column_i64(&joined, "n"), [10]);

    // Bad arguments name the problem.
    for (sql, needle) in [
        (
            "SELECT * FROM vector_search('nope', [1.0, 0.0, 0.0, 0.5], 3)",
            "not found",
        ),
        (
            "SELECT * FROM vector_search('points', [1.0, 0.0], 3)",
            "2 dimensions",
        ),
        (
            "SELECT * FROM vector_search('points', [1.0, 0.0, 0.0, 0.5], 0)",
            "k must be",
        ),
        (
            "SELECT * FROM vector_search('points', [1.0, 0.0, 0.0, 0.5], 3, 'x')",
            "JSON",
        ),
        (
            "SELECT * FROM vector_search('points', [1.0, 0.0, 0.0, 0.5])",
            "expects",
        ),
        (
            "SELECT * FROM vector_search('points', [1.0, 0.0, 0.0, 0.5], 3, '{\"column\": \"body\"}')",
            "no vector column body",
        ),
    ] {
        let err = query(&mut client, sql).await.unwrap_err();
        // A missing table is NotFound, as it is in FROM; bad arguments are InvalidArgument.
        let expected = if needle.contains("not found") && !needle.contains("model") {
            Code::NotFound
        } else {
            Code::InvalidArgument
        };
        assert_eq!(code(&err), expected, "{sql}: {err}");
        assert!(err.to_string().contains(needle), "{sql}: {err}");
    }
    client
        .execute_update("CREATE TABLE plain AS SELECT 1 AS x".into(), None)
        .await
        .unwrap();
    let err = query(
        &mut client,
        "SELECT * FROM vector_search('plain', [1.0], 1)",
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("Parquet table"), "{err}");
}

#[tokio::test]
async fn text_queries_are_embedded_with_the_column_model() {
    let server = TestServer::start_with(with_minilm).await;
    let texts = [
        "Kubernetes cluster migration with Helm charts",
        "Baking sourdough bread at home",
        "Quarterly revenue grew by twelve percent",
        "Training a golden retriever puppy",
    ];
    ingest_notes(&server, &texts).await;
    let mut client = server.client().await;
    for (question, expected) in [
        ("who can move our container platform?", 1),
        ("how do I make bread", 2),
        ("dog obedience", 4),
    ] {
        let got = query(
            &mut client,
            &format!("SELECT id FROM vector_search('notes', '{question}', 1)"),
        )
        .await
        .unwrap();
        assert_eq!(column_i64(&got, "id"), [expected], "{question}");
    }
    let all = query(
        &mut client,
        "SELECT id, _distance FROM vector_search('notes', 'money and profits', 4) ORDER BY _distance",
    )
    .await
    .unwrap();
    assert_eq!(column_i64(&all, "id")[0], 3);
    assert_eq!(all.iter().map(|b| b.num_rows()).sum::<usize>(), 4);
    assert!(all[0].column_by_name("_distance").unwrap().null_count() == 0);
}

#[tokio::test]
async fn embed_returns_the_model_vectors_and_null_for_null() {
    let server = TestServer::start_with(with_minilm).await;
    let mut client = server.client().await;
    let expected = minilm_vectors(&["The cat sits on the mat".to_string()]).await;
    let got = query(
        &mut client,
        "SELECT embed('The cat sits on the mat') AS v, embed('The cat sits on the mat', 'minilm') AS w",
    )
    .await
    .unwrap();
    for name in ["v", "w"] {
        let list = got[0].column_by_name(name).unwrap().as_fixed_size_list();
        assert_eq!(list.value_length(), EMBED_DIMENSION as i32);
        let values = list.value(0);
        let values = values.as_primitive::<Float32Type>().values();
        let dot: f32 = values
            .iter()
            .zip(expected[0].iter())
            .map(|(a, b)| a * b)
            .sum();
        assert!(dot > 0.9999, "{name}: {dot}");
    }
    client
        .execute_update(
            "CREATE TABLE notes AS SELECT * FROM (VALUES (1, 'alpha'), (2, NULL), (3, 'gamma')) v(id, body)"
                .into(),
            None,
        )
        .await
        .unwrap();
    let rows = query(
        &mut client,
        "SELECT id, embed(body) AS v FROM notes ORDER BY id",
    )
    .await
    .unwrap();
    let nulls: Vec<bool> = rows
        .iter()
        .flat_map(|b| {
            let v = b.column_by_name("v").unwrap();
            (0..v.len()).map(|i| v.is_null(i)).collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(nulls, [false, true, false]);
    let err = query(&mut client, "SELECT embed('x', 'nope')")
        .await
        .unwrap_err();
    assert_eq!(code(&err), Code::InvalidArgument, "{err}");
    assert!(
        err.to_string().contains("unknown embedding model nope"),
        "{err}"
    );

    // Without configured models, embed() says so.
    let bare = TestServer::start().await;
    let mut client = bare.client().await;
    let err = query(&mut client, "SELECT embed('x')").await.unwrap_err();
    assert!(
        err.to_string().contains("no default embedding model")
            && err
                .to_string()
                .contains("add a [embedding.models.NAME] section"),
        "{err}"
    );
}

#[tokio::test]
async fn hybrid_search_fuses_vector_and_text_ranks() {
    let server = TestServer::start_with(with_minilm).await;
    let texts = [
        "Kubernetes cluster migration with Helm charts",
        "Baking sourdough bread at home",
        "Quarterly revenue grew by twelve percent",
        "Training a golden retriever puppy",
        "Migrating databases between clusters",
    ];
    ingest_notes(&server, &texts).await;
    let mut client = server.client().await;
    client
        .execute_update(
            "CREATE INDEX notes_text ON notes USING FTS (body)".into(),
            None,
        )
        .await
        .unwrap();
    let got = query(
        &mut client,
        "SELECT id, _score FROM hybrid_search('notes', 'kubernetes cluster migration', 3)",
    )
    .await
    .unwrap();
    let ids = column_i64(&got, "id");
    assert_eq!(ids.len(), 3);
    assert_eq!(ids[0], 1, "first on both sides");
    let scores: Vec<f64> = got
        .iter()
        .flat_map(|b| {
            b.column_by_name("_score")
                .unwrap()
                .as_primitive::<arrow::datatypes::Float64Type>()
                .values()
                .to_vec()
        })
        .collect();
    assert!(
        (scores[0] - 2.0 / 61.0).abs() < 1e-9,
        "rank 1 on both sides: {}",
        scores[0]
    );
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
    // With the text side weighted 0, the order is the vector order.
    let vector_only = query(
        &mut client,
        r#"SELECT id FROM hybrid_search('notes', 'dog obedience', 2, '{"text_weight": 0}')"#,
    )
    .await
    .unwrap();
    let nearest = query(
        &mut client,
        "SELECT id FROM vector_search('notes', 'dog obedience', 2) ORDER BY _distance",
    )
    .await
    .unwrap();
    assert_eq!(column_i64(&vector_only, "id"), column_i64(&nearest, "id"));
    let err = query(
        &mut client,
        "SELECT * FROM hybrid_search('notes', 'x', 3, '{\"bogus\": 1}')",
    )
    .await
    .unwrap_err();
    assert_eq!(code(&err), Code::InvalidArgument, "{err}");
}

/// Embeddings made outside (no model recorded for the column): `hybrid_search(table, text,
/// vector, k)` searches the text with BM25 and the given vector, fused as with a model.
#[tokio::test]
async fn hybrid_search_takes_the_query_vector_beside_the_text() {
    let server = TestServer::start().await;
    let ids: Vec<i64> = (0..100).collect();
    let vectors: Vec<Vec<f32>> = ids
        .iter()
        .map(|&i| {
            let a = i as f32 * std::f32::consts::TAU / 100.0;
            vec![a.cos(), a.sin(), 0.5]
        })
        .collect();
    let words = ["alpha", "bravo", "charlie", "delta", "echo"];
    let bodies: Vec<String> = ids
        .iter()
        .map(|&i| format!("{} {}", words[i as usize % 5], i))
        .collect();
    ingest_lance(
        &server,
        "points",
        notes_batch(&ids, &bodies, &vectors),
        "none",
    )
    .await;
    let mut client = server.client().await;
    client
        .execute_update(
            "CREATE INDEX points_text ON points USING FTS (body)".into(),
            None,
        )
        .await
        .unwrap();
    let literal = |v: &[f32]| {
        let items: Vec<String> = v.iter().map(|x| format!("{x:?}")).collect();
        format!("[{}]", items.join(", "))
    };
    // Point 40's vector and its own word and number: rank 1 on both sides.
    let sql = format!(
        "SELECT id, _score FROM hybrid_search('points', 'alpha 40', {}, 5)",
        literal(&vectors[40])
    );
    let got = query(&mut client, &sql).await.unwrap();
    let ids_got = column_i64(&got, "id");
    assert_eq!(ids_got.len(), 5);
    assert_eq!(ids_got[0], 40);
    let top = got[0]
        .column_by_name("_score")
        .unwrap()
        .as_primitive::<arrow::datatypes::Float64Type>()
        .value(0);
    assert!(
        (top - 2.0 / 61.0).abs() < 1e-9,
        "rank 1 on both sides: {top}"
    );
    let mut ids = async |sql: String| column_i64(&query(&mut client, &sql).await.unwrap(), "id");
    // Text weighted 0: the vector order, as vector_search gives it for the same vector.
    let vector_only = ids(format!(
        r#"SELECT id FROM hybrid_search('points', 'bravo', {}, 4, '{{"text_weight": 0}}')"#,
        literal(&vectors[70])
    ))
    .await;
    let nearest = ids(format!(
        "SELECT id FROM vector_search('points', {}, 4) ORDER BY _distance",
        literal(&vectors[70])
    ))
    .await;
    assert_eq!(vector_only, nearest);
    // Vector weighted 0: only rows holding a query word score.
    let text_only = ids(format!(
        r#"SELECT id FROM hybrid_search('points', 'charlie', {}, 3, '{{"vector_weight": 0}}')"#,
        literal(&vectors[1])
    ))
    .await;
    assert!(text_only.iter().all(|id| id % 5 == 2), "{text_only:?}");
    // Bad calls name what is wrong.
    for (sql, needle) in [
        (
            "SELECT * FROM hybrid_search('points', 'alpha', [1.0, 0.0], 3)".to_string(),
            "2 dimensions",
        ),
        (
            "SELECT * FROM hybrid_search('points', 'alpha', 3, 3, '{}')".to_string(),
            "(table, text, vector, k, options)",
        ),
        (
            format!(
                "SELECT * FROM hybrid_search('points', 42, {}, 3)",
                literal(&vectors[0])
            ),
            "string literal",
        ),
        // Without the vector, the text needs a model for the column, and there is none.
        (
            "SELECT * FROM hybrid_search('points', 'alpha', 3)".to_string(),
            "embedding",
        ),
    ] {
        let err = query(&mut client, &sql).await.unwrap_err();
        assert_eq!(code(&err), Code::InvalidArgument, "{sql}: {err}");
        assert!(err.to_string().contains(needle), "{sql}: {err}");
    }
}

#[tokio::test]
async fn lance_tables_are_created_from_sql_with_embed() {
    let server = TestServer::start_with(with_minilm).await;
    let mut client = server.client().await;
    client
        .execute_update(
            "CREATE TABLE docs AS SELECT * FROM (VALUES \
             (1, 'Kubernetes cluster migration with Helm charts'), \
             (2, 'Baking sourdough bread at home'), \
             (3, 'Quarterly revenue grew by twelve percent'), \
             (4, NULL)) v(id, body)"
                .into(),
            None,
        )
        .await
        .unwrap();
    let rows = client
        .execute_update(
            "CREATE TABLE docs_vec STORED AS LANCE AS \
             SELECT id, body, embed(body) AS embedding FROM docs"
                .into(),
            None,
        )
        .await
        .unwrap();
    assert_eq!(rows, 4);
    // The vector column records embed's model, so text queries need no model argument.
    let top = query(
        &mut client,
        "SELECT id FROM vector_search('docs_vec', 'how do I make bread', 1)",
    )
    .await
    .unwrap();
    assert_eq!(column_i64(&top, "id"), [2]);
    client
        .execute_update(
            "INSERT INTO docs_vec SELECT 5, 'Pasta carbonara with guanciale', \
             embed('Pasta carbonara with guanciale')"
                .into(),
            None,
        )
        .await
        .unwrap();
    let top = query(
        &mut client,
        "SELECT d.id, d.body FROM vector_search('docs_vec', 'Italian cooking', 1) s \
         JOIN docs_vec d ON d.id = s.id",
    )
    .await
    .unwrap();
    assert_eq!(column_i64(&top, "id"), [5]);

    // Declared columns, no rows yet; the metric applies to the FLOAT[3] column.
    let rows = client
        .execute_update(
            "CREATE TABLE points (id BIGINT, v FLOAT[3]) stored as lance WITH (metric = 'l2')"
                .into(),
            None,
        )
        .await
        .unwrap();
    assert_eq!(rows, 0);
    client
        .execute_update(
            "INSERT INTO points VALUES (1, [2.0, 0.0, 0.0]), (2, [0.0, 5.0, 0.0])".into(),
            None,
        )
        .await
        .unwrap();
    let near = query(
        &mut client,
        "SELECT id, _distance FROM vector_search('points', [1.0, 0.0, 0.0], 1)",
    )
    .await
    .unwrap();
    assert_eq!(column_i64(&near, "id"), [1]);
    assert_eq!(column_f32(&near, "_distance"), [1.0], "squared L2");

    // Bad statements are refused and leave nothing behind.
    for (sql, expected, message) in [
        (
            "CREATE TABLE bad STORED AS LANCE WITH (colour = 'red') AS SELECT 1 AS x",
            Code::InvalidArgument,
            "colour",
        ),
        (
            "CREATE TABLE bad STORED AS LANCE WITH (metric = 'manhattan') AS SELECT 1 AS x",
            Code::InvalidArgument,
            "metric",
        ),
        (
            "CREATE TABLE bad STORED AS LANCE WITH (model = 'nope') AS SELECT 1 AS x",
            Code::InvalidArgument,
            "unknown embedding model nope",
        ),
        (
            "CREATE OR REPLACE TABLE docs_vec STORED AS LANCE AS SELECT 1 AS x",
            Code::InvalidArgument,
            "OR REPLACE",
        ),
        (
            "CREATE TABLE docs_vec STORED AS LANCE AS SELECT 1 AS x",
            Code::AlreadyExists,
            "docs_vec",
        ),
        (
            "CREATE TABLE bad (id BIGINT PRIMARY KEY) STORED AS LANCE",
            Code::InvalidArgument,
            "PRIMARY KEY",
        ),
        (
            "CREATE TABLE bad STORED AS LANCE AS SELECT no_such_column FROM docs",
            Code::InvalidArgument,
            "no_such_column",
        ),
        (
            "CREATE VIEW bad STORED AS LANCE AS SELECT 1 AS x",
            Code::InvalidArgument,
            "STORED AS LANCE belongs to CREATE TABLE",
        ),
    ] {
        let err = client.execute_update(sql.into(), None).await.unwrap_err();
        assert_eq!(code(&err), expected, "{sql}: {err}");
        assert!(err.to_string().contains(message), "{sql}: {err}");
    }
    let rows = client
        .execute_update(
            "CREATE TABLE IF NOT EXISTS docs_vec STORED AS LANCE AS SELECT 1 AS x".into(),
            None,
        )
        .await
        .unwrap();
    assert_eq!(rows, 0);
    let tables = query(
        &mut client,
        "SELECT table_name FROM information_schema.tables \
         WHERE table_schema = 'public' ORDER BY table_name",
    )
    .await
    .unwrap();
    let names: Vec<String> = column_str(&tables, "table_name")
        .into_iter()
        .flatten()
        .collect();
    assert_eq!(names, ["docs", "docs_vec", "points"]);
    assert_eq!(
        column_i64(
            &query(&mut client, "SELECT count(*) AS n FROM docs_vec")
                .await
                .unwrap(),
            "n"
        ),
        [5]
    );
}
