//! One snapshot per query: a commit between GetFlightInfo and DoGet changes no answer, for
//! Parquet and Lance tables and for every search function (the ticket pins Lance dataset
//! versions too), and `hybrid_search` searches once per execution, both sides on one version.

use lakehouse_server::ServeConfig;
use lakehouse_tests::models::{ModelServer, minilm_config, smollm2_config};
use lakehouse_tests::{TestServer, column_i64, fetch, ingest_notes, query, update};

const NOTES: [&str; 5] = [
    "Kubernetes cluster migration with Helm charts",
    "Baking sourdough bread at home",
    "Quarterly revenue grew by twelve percent",
    "Training a golden retriever puppy",
    "Migrating databases between clusters",
];

fn with_models(server: &'static ModelServer) -> impl FnOnce(&mut ServeConfig) {
    move |c: &mut ServeConfig| {
        c.embedding.models = [("minilm".to_string(), minilm_config(server))]
            .into_iter()
            .collect();
        c.chat.models = [("smollm2".to_string(), smollm2_config(server))]
            .into_iter()
            .collect();
        c.maintenance.auto_compact = false;
    }
}

/// The answer as text, row by row, for comparing results.
fn rows(batches: &[arrow::array::RecordBatch]) -> String {
    arrow::util::pretty::pretty_format_batches(batches)
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn a_commit_between_get_flight_info_and_do_get_changes_no_answer() {
    let server = TestServer::start_with(with_models(ModelServer::shared())).await;
    ingest_notes(&server, &NOTES).await;
    update(&server, "CREATE INDEX notes_text ON notes USING FTS (body)")
        .await
        .unwrap();
    update(&server, "CREATE TABLE p AS VALUES (1), (2), (3)")
        .await
        .unwrap();
    let queries = [
        "SELECT count(*) AS n FROM p",
        "SELECT id, body FROM notes ORDER BY id",
        "SELECT id FROM vector_search('notes', 'kubernetes cluster', 10) ORDER BY id",
        "SELECT id FROM text_search('notes', 'cluster', 10) ORDER BY id",
        "SELECT id, _score FROM hybrid_search('notes', 'cluster migration', 10) ORDER BY id",
        "SELECT index_name FROM vector_indexes() ORDER BY index_name",
        r#"SELECT get_field(s, 'doc_id') AS doc FROM (SELECT unnest(sources) AS s FROM rag('What moves clusters?', 'notes', '{"k": 10, "min_score": -10, "text_column": "body", "template": "{question} Answer: yes"}')) ORDER BY doc"#,
    ];
    let mut client = server.client().await;
    let mut before = Vec::new();
    let mut infos = Vec::new();
    for sql in queries {
        before.push(rows(&query(&mut client, sql).await.unwrap()));
        infos.push(client.execute(sql.to_string(), None).await.unwrap());
    }
    // Commits to every table read: a Lance delete (one Lance version), a Lance index dropped
    // (another), a Parquet insert (a catalog version).
    assert_eq!(
        update(&server, "DELETE FROM notes WHERE id = 1")
            .await
            .unwrap(),
        1
    );
    update(&server, "DROP INDEX notes_text ON notes")
        .await
        .unwrap();
    assert_eq!(
        update(&server, "INSERT INTO p VALUES (4)").await.unwrap(),
        1
    );
    for ((sql, info), expected) in queries.iter().zip(infos).zip(&before) {
        let got = rows(&fetch(&mut client, info).await.unwrap());
        assert_eq!(&got, expected, "{sql}: the planned version's answer");
    }
    // A new query sees the commits (so the comparison above could fail).
    for (sql, expected) in queries.iter().zip(&before) {
        if sql.contains("text_search") || sql.contains("hybrid_search") {
            // The FTS index is gone: these now fail, which the pinned tickets above did not.
            assert!(query(&mut client, sql).await.is_err(), "{sql}");
            continue;
        }
        let now = rows(&query(&mut client, sql).await.unwrap());
        assert_ne!(&now, expected, "{sql}: a new query reads the new versions");
    }
}

#[tokio::test]
async fn hybrid_search_runs_once_per_execution_on_one_version() {
    // A model server of its own, counting embed requests; no embedding cache.
    let models: &'static ModelServer = Box::leak(Box::new(ModelServer::start()));
    let server = TestServer::start_with(|c| {
        with_models(models)(c);
        for model in c.embedding.models.values_mut() {
            model.cache_bytes = 0;
        }
    })
    .await;
    ingest_notes(&server, &NOTES).await;
    update(&server, "CREATE INDEX notes_text ON notes USING FTS (body)")
        .await
        .unwrap();
    let mut client = server.client().await;
    let sql = "SELECT id, _score FROM hybrid_search('notes', 'kubernetes cluster migration', 3)";
    let (embeds, _) = models.calls().await;
    let info = client.execute(sql.to_string(), None).await.unwrap();
    assert_eq!(
        models.calls().await.0,
        embeds,
        "GetFlightInfo plans without searching"
    );
    let first = fetch(&mut client, info.clone()).await.unwrap();
    assert_eq!(models.calls().await.0, embeds + 1, "one search per DoGet");
    let again = fetch(&mut client, info).await.unwrap();
    assert_eq!(models.calls().await.0, embeds + 2);
    assert_eq!(rows(&first), rows(&again));
    // Both sides read one version: every fused row is a row of that version, each once,
    // and the best one ranks first on both sides (2 / (60 + 1)).
    let ids = column_i64(&first, "id");
    assert_eq!(ids.len(), 3);
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 3, "{ids:?}");
    assert_eq!(ids[0], 1);
    // EXPLAIN plans without searching either.
    query(&mut client, &format!("EXPLAIN {sql}")).await.unwrap();
    assert_eq!(models.calls().await.0, embeds + 2);
}

/// A prepared query without parameters answers from the tables as they are when it is
/// executed: the plan CreatePreparedStatement made (ADBC executes it right away) runs only
/// while every table it read is unchanged, and a query calling `now()` is planned again.
#[tokio::test]
async fn a_prepared_query_reads_the_tables_as_they_are_when_executed() {
    let server = TestServer::start_with(with_models(ModelServer::shared())).await;
    ingest_notes(&server, &NOTES).await;
    update(&server, "CREATE TABLE p AS VALUES (1), (2), (3)")
        .await
        .unwrap();
    let mut client = server.client().await;
    for (sql, change, before, after) in [
        (
            "SELECT count(*) AS n FROM p",
            "INSERT INTO p VALUES (4)",
            3,
            4,
        ),
        (
            "SELECT count(*) AS n FROM notes",
            "DELETE FROM notes WHERE id = 1",
            5,
            4,
        ),
        (
            "SELECT count(*) AS n FROM vector_search('notes', 'kubernetes cluster', 10)",
            "DELETE FROM notes WHERE id = 2",
            4,
            3,
        ),
        (
            "SELECT count(*) AS n FROM p JOIN notes ON p.column1 = notes.id",
            "UPDATE notes SET id = 4 WHERE id = 3",
            2,
            2,
        ),
        (
            "SELECT count(*) AS n FROM p JOIN notes ON p.column1 = notes.id",
            "DELETE FROM p WHERE column1 = 4",
            2,
            0,
        ),
    ] {
        // Executed at once, and again from the same handle.
        let mut prepared = client.prepare(sql.into(), None).await.unwrap();
        for _ in 0..2 {
            let info = prepared.execute().await.unwrap();
            let n = column_i64(&fetch(&mut client, info).await.unwrap(), "n");
            assert_eq!(n, [before], "{sql}");
        }
        // A commit between preparing and executing.
        let mut prepared = client.prepare(sql.into(), None).await.unwrap();
        update(&server, change).await.unwrap();
        let info = prepared.execute().await.unwrap();
        let n = column_i64(&fetch(&mut client, info).await.unwrap(), "n");
        assert_eq!(n, [after], "{sql} after {change}");
    }
    let prepared_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let mut prepared = client
        .prepare("SELECT CAST(now() AS BIGINT) AS n".into(), None)
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let info = prepared.execute().await.unwrap();
    let now = column_i64(&fetch(&mut client, info).await.unwrap(), "n")[0];
    let waited = now - i64::try_from(prepared_at.as_nanos()).unwrap();
    assert!(
        waited >= 1_400_000_000,
        "now() is the execution's instant, not the preparation's: {waited} ns later"
    );
}
