//! OPTIMIZE (compaction), automatic compaction and VACUUM on Parquet and Lance tables: file
//! counts, the rows read before and after, compaction racing deletes, and what VACUUM keeps.

use std::sync::Arc;
use std::time::Duration;

use lakehouse_catalog::{Operation, TableRef, Version};
use lakehouse_server::config::ServeConfig;
use lakehouse_tests::{TestServer, code, count, open_catalog, query, update};
use tonic::Code;

fn manual(c: &mut ServeConfig) {
    c.maintenance.auto_compact = false;
}

/// 25 ten-row appends: 25 files.
async fn small_appends(server: &TestServer, table: &str) {
    update(
        server,
        &format!("CREATE TABLE {table} (id BIGINT NOT NULL, s VARCHAR)"),
    )
    .await
    .unwrap();
    for i in 0..25 {
        let values: Vec<String> = (0..10)
            .map(|j| format!("({}, 'row {}')", i * 10 + j, i * 10 + j))
            .collect();
        let sql = format!("INSERT INTO {table} VALUES {}", values.join(", "));
        update(server, &sql).await.unwrap();
    }
}

#[tokio::test]
async fn optimize_merges_small_files_and_drops_deleted_rows() {
    let server = TestServer::start_with(manual).await;
    let catalog = open_catalog(&server.storage()).await;
    let t = TableRef::new("public", "t").unwrap();
    small_appends(&server, "t").await;
    assert_eq!(catalog.table(&t).await.unwrap().files.len(), 25);
    let sum = count(&server, "SELECT sum(id) FROM t").await;

    assert_eq!(update(&server, "OPTIMIZE t").await.unwrap(), 25);
    let m = catalog.table(&t).await.unwrap();
    assert_eq!(
        (m.operation, m.files.len(), m.total_rows),
        (Operation::Compact, 1, 250)
    );
    assert_eq!(count(&server, "SELECT sum(id) FROM t").await, sum);
    // Nothing left to do: no new version.
    assert_eq!(update(&server, "OPTIMIZE TABLE t").await.unwrap(), 0);
    assert_eq!(catalog.table(&t).await.unwrap().version, m.version);

    // A file with a fifth of its rows deleted is rewritten alone, without them.
    assert_eq!(
        update(&server, "DELETE FROM t WHERE id % 4 = 0")
            .await
            .unwrap(),
        63
    );
    assert_eq!(update(&server, "OPTIMIZE t").await.unwrap(), 1);
    let m = catalog.table(&t).await.unwrap();
    assert_eq!((m.files.len(), m.total_rows), (1, 187));
    assert!(m.files[0].deletion_vector.is_none());
    assert_eq!(
        count(&server, "SELECT count(*) FROM t WHERE id % 4 = 0").await,
        0
    );

    for (sql, expected) in [
        ("OPTIMIZE missing", Code::NotFound),
        ("OPTIMIZE t extra", Code::InvalidArgument),
        ("VACUUM t RETAIN HOURS", Code::InvalidArgument),
    ] {
        let err = update(&server, sql).await.unwrap_err();
        assert_eq!(code(&err), expected, "{sql}: {err}");
    }
}

#[tokio::test]
async fn automatic_compaction_after_small_appends() {
    let server = TestServer::start_with(|c| c.maintenance.compact_min_files = 4).await;
    let catalog = open_catalog(&server.storage()).await;
    let t = TableRef::new("public", "auto").unwrap();
    small_appends(&server, "auto").await;
    // The compaction runs in the background; wait for the file count to settle.
    let mut files = usize::MAX;
    for _ in 0..100 {
        let m = catalog.table(&t).await.unwrap();
        files = m.files.len();
        if files < 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        files < 4,
        "{files} files after 25 appends with automatic compaction"
    );
    assert_eq!(count(&server, "SELECT count(*) FROM auto").await, 250);
    assert_eq!(
        count(&server, "SELECT count(DISTINCT id) FROM auto").await,
        250
    );
}

#[tokio::test]
async fn compaction_racing_deletes_never_loses_or_resurrects_rows() {
    let server = Arc::new(TestServer::start_with(manual).await);
    small_appends(&server, "r").await;
    let deletes = {
        let server = Arc::clone(&server);
        tokio::spawn(async move {
            let mut deleted = 0;
            for i in 0..25 {
                let sql = format!("DELETE FROM r WHERE id = {}", i * 10 + 3);
                deleted += update(&server, &sql).await.unwrap();
            }
            deleted
        })
    };
    let compactions = {
        let server = Arc::clone(&server);
        tokio::spawn(async move {
            for _ in 0..6 {
                match update(&server, "OPTIMIZE r").await {
                    Ok(_) => {}
                    Err(e) => assert_eq!(code(&e), Code::Aborted, "{e}"),
                }
            }
        })
    };
    let deleted = deletes.await.unwrap();
    compactions.await.unwrap();
    assert_eq!(deleted, 25, "each delete found its row exactly once");
    assert_eq!(count(&server, "SELECT count(*) FROM r").await, 225);
    assert_eq!(
        count(&server, "SELECT count(*) FROM r WHERE id % 10 = 3").await,
        0
    );
    update(&server, "OPTIMIZE r").await.unwrap();
    assert_eq!(count(&server, "SELECT count(*) FROM r").await, 225);
}

#[tokio::test]
async fn vacuum_removes_old_versions_and_only_their_files() {
    let server = TestServer::start_with(manual).await;
    let catalog = open_catalog(&server.storage()).await;
    let t = TableRef::new("public", "v").unwrap();
    small_appends(&server, "v").await;
    update(&server, "DELETE FROM v WHERE id < 5").await.unwrap();
    update(&server, "OPTIMIZE v").await.unwrap();
    let head = catalog.table(&t).await.unwrap();
    let dir = server.storage().path().join("tables/public/v");
    let listed = |sub: &str| std::fs::read_dir(dir.join(sub)).map_or(0, |d| d.count());
    assert_eq!(listed("_manifests"), head.version.0 as usize);

    // The default retention (7 days) keeps everything.
    assert_eq!(update(&server, "VACUUM v").await.unwrap(), 0);
    let would = update(&server, "VACUUM v RETAIN 0 HOURS DRY RUN")
        .await
        .unwrap();
    assert_eq!(
        would, 26,
        "25 data files and one deletion vector are only in old versions"
    );
    assert_eq!(
        listed("_manifests"),
        head.version.0 as usize,
        "a dry run removes nothing"
    );

    assert_eq!(
        update(&server, "VACUUM v RETAIN 0 HOURS").await.unwrap(),
        would
    );
    assert_eq!(listed("_manifests"), 1, "only the current version is left");
    assert_eq!(listed("data"), 1);
    assert_eq!(listed("deletes"), 0);
    assert_eq!(count(&server, "SELECT count(*) FROM v").await, 245);
    let err = catalog
        .table_version(&t, Version(2))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("no version 2"), "{err}");
    // Versions continue from the head.
    update(&server, "INSERT INTO v VALUES (1000, 'x')")
        .await
        .unwrap();
    assert_eq!(
        catalog.table(&t).await.unwrap().version,
        head.version.next()
    );
}

#[tokio::test]
async fn optimize_and_vacuum_on_a_lance_table() {
    let server = TestServer::start_with(manual).await;
    update(
        &server,
        "CREATE TABLE pts (id BIGINT, v FLOAT[3]) STORED AS LANCE WITH (metric = 'l2')",
    )
    .await
    .unwrap();
    for i in 0..5 {
        let sql = format!("INSERT INTO pts VALUES ({i}, [{i}.0, 0.0, 0.0])");
        update(&server, &sql).await.unwrap();
    }
    assert!(update(&server, "OPTIMIZE pts").await.unwrap() >= 5);
    assert!(update(&server, "VACUUM pts RETAIN 0 HOURS").await.unwrap() > 0);
    assert_eq!(count(&server, "SELECT count(*) FROM pts").await, 5);
    let mut client = server.client().await;
    let rows = query(
        &mut client,
        "SELECT id FROM vector_search('pts', [3.0, 0.0, 0.0], 1)",
    )
    .await
    .unwrap();
    assert_eq!(lakehouse_tests::column_i64(&rows, "id"), [3]);
}

#[tokio::test]
async fn point_queries_skip_files_by_manifest_statistics() {
    let server = TestServer::start_with(manual).await;
    let catalog = open_catalog(&server.storage()).await;
    small_appends(&server, "p").await;
    let m = catalog
        .table(&TableRef::new("public", "p").unwrap())
        .await
        .unwrap();
    let stats = &m.files[3].statistics["id"];
    assert_eq!(
        (stats.min.as_deref(), stats.max.as_deref(), stats.null_count),
        (Some("30"), Some("39"), Some(0))
    );
    assert_eq!(
        count(&server, "SELECT count(*) FROM p WHERE id = 55").await,
        1
    );
    assert_eq!(
        count(&server, "SELECT count(*) FROM p WHERE id BETWEEN 15 AND 34").await,
        20
    );
    let mut client = server.client().await;
    let files_read = |plan: &[arrow::array::RecordBatch]| {
        let text: Vec<String> = lakehouse_tests::column_str(plan, "plan")
            .into_iter()
            .flatten()
            .collect();
        let text = text.join("\n");
        text.matches(".parquet").count()
    };
    let plan = query(&mut client, "EXPLAIN SELECT s FROM p WHERE id = 55")
        .await
        .unwrap();
    assert_eq!(
        files_read(&plan),
        1,
        "only the file whose range holds 55 is read"
    );
    let plan = query(&mut client, "EXPLAIN SELECT s FROM p WHERE id > 1000")
        .await
        .unwrap();
    assert_eq!(files_read(&plan), 0);
    let plan = query(&mut client, "EXPLAIN SELECT s FROM p WHERE s LIKE 'row%'")
        .await
        .unwrap();
    assert!(files_read(&plan) >= 1);

    // EXPLAIN ANALYZE counts the files pruned at planning and the files read, in DataFusion's
    // file-pruning metric of the Parquet scan.
    let analyzed = |plan: &[arrow::array::RecordBatch]| {
        let text: Vec<String> = lakehouse_tests::column_str(plan, "plan")
            .into_iter()
            .flatten()
            .collect();
        let text = text.join("\n");
        let metric = text
            .split("files_ranges_pruned_statistics=")
            .nth(1)
            .unwrap_or_else(|| panic!("no file pruning metric in\n{text}"));
        metric.split([',', ']']).next().unwrap().trim().to_string()
    };
    for (sql, expected) in [
        ("SELECT s FROM p WHERE id = 55", "25 total → 1 matched"),
        (
            "SELECT s FROM p WHERE id BETWEEN 15 AND 34",
            "25 total → 3 matched",
        ),
        ("SELECT s FROM p WHERE id > 1000", "25 total → 0 matched"),
        ("SELECT s FROM p", "25 total → 25 matched"),
    ] {
        let plan = query(&mut client, &format!("EXPLAIN ANALYZE {sql}"))
            .await
            .unwrap();
        assert_eq!(analyzed(&plan), expected, "{sql}");
    }
}

#[tokio::test]
async fn row_changes_open_only_the_files_statistics_admit() {
    let server = TestServer::start_with(manual).await;
    let catalog = open_catalog(&server.storage()).await;
    small_appends(&server, "p").await;
    let m = catalog
        .table(&TableRef::new("public", "p").unwrap())
        .await
        .unwrap();
    // Take away the file of ids 0..9: a change whose filter excludes it by the manifest's
    // statistics never opens it, one whose filter cannot be judged by them does.
    let first = server.storage().path().join(&m.files[0].path);
    std::fs::remove_file(&first).unwrap();
    assert_eq!(
        update(&server, "DELETE FROM p WHERE id = 55")
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        update(&server, "UPDATE p SET s = 'x' WHERE id BETWEEN 100 AND 104")
            .await
            .unwrap(),
        5
    );
    let err = update(&server, "DELETE FROM p WHERE id % 100 = 56")
        .await
        .unwrap_err();
    assert!(err.to_string().contains(&m.files[0].path), "{err}");
    assert_eq!(
        count(&server, "SELECT count(*) FROM p WHERE id >= 10").await,
        239
    );
    assert_eq!(
        count(&server, "SELECT count(*) FROM p WHERE s = 'x'").await,
        5
    );
}
