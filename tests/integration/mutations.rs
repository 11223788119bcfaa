//! Row-level changes on Parquet tables (DELETE, UPDATE, TRUNCATE): catalog versions, deletion
//! vectors and the bytes a change writes, refusals that leave nothing behind, concurrent
//! writers, and prepared statements with one and several parameter rows.

use std::collections::BTreeSet;
use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use lakehouse_catalog::{Operation, TableRef, Version};
use lakehouse_tests::{
    TestServer, code, column_i64, column_str, count, open_catalog, query, update,
};
use tonic::Code;

/// Every object under the table's `data/` and `deletes/` folders.
fn objects(server: &TestServer, table: &str) -> BTreeSet<String> {
    let root = server.storage().path().join("tables/public").join(table);
    let mut found = BTreeSet::new();
    for dir in ["data", "deletes"] {
        if let Ok(entries) = std::fs::read_dir(root.join(dir)) {
            for entry in entries {
                found.insert(format!(
                    "{dir}/{}",
                    entry.unwrap().file_name().to_string_lossy()
                ));
            }
        }
    }
    found
}

/// A server without automatic compaction, for tests that count versions.
/// Parameter rows for `SET name = ? WHERE id = ?`: one row per (name, id).
fn names_and_ids(names: Vec<&str>, ids: Vec<i64>) -> RecordBatch {
    RecordBatch::try_from_iter(vec![
        ("a", Arc::new(StringArray::from(names)) as ArrayRef),
        ("b", Arc::new(Int64Array::from(ids)) as ArrayRef),
    ])
    .unwrap()
}

async fn start() -> TestServer {
    TestServer::start_with(|c| c.maintenance.auto_compact = false).await
}

#[tokio::test]
async fn one_row_update_writes_kilobytes_and_deletes_use_deletion_vectors() {
    let server = start().await;
    let catalog = open_catalog(&server.storage()).await;
    let t = TableRef::new("public", "people").unwrap();
    update(
        &server,
        "CREATE TABLE people (id BIGINT NOT NULL, name VARCHAR, city VARCHAR, PRIMARY KEY (id))",
    )
    .await
    .unwrap();
    let rows = update(
        &server,
        "INSERT INTO people SELECT value, concat('name ', value), \
         CASE WHEN value % 3 = 0 THEN NULL ELSE concat('city ', value % 100) END \
         FROM generate_series(1, 15000)",
    )
    .await
    .unwrap();
    assert_eq!(rows, 15000);
    let before = catalog.table(&t).await.unwrap();
    assert_eq!(before.files.len(), 1);
    assert_eq!(before.files[0].row_groups, vec![15000]);

    // One row, by key: a deletion vector and a one-row file, not a rewrite.
    let sql = "UPDATE people SET city = 'Paris', name = upper(name) WHERE id = 7";
    assert_eq!(update(&server, sql).await.unwrap(), 1);
    let m = catalog.table(&t).await.unwrap();
    assert_eq!(
        (m.version, m.operation, m.total_rows),
        (Version(3), Operation::Update, 15000)
    );
    assert_eq!(m.files.len(), 2);
    let old = &m.files[0];
    assert_eq!(
        old.path, before.files[0].path,
        "the big file is not rewritten"
    );
    let dv = old.deletion_vector.as_ref().expect("a deletion vector");
    assert_eq!(dv.cardinality, 1);
    assert!(
        dv.size_bytes < 100,
        "deletion vector of {} bytes",
        dv.size_bytes
    );
    assert_eq!(m.files[1].rows, 1);
    let written = dv.size_bytes + m.files[1].size_bytes;
    assert!(
        written < 4096 && written * 20 < old.size_bytes,
        "a one-row update wrote {written} bytes for a table of {} bytes",
        old.size_bytes
    );
    let mut client = server.client().await;
    let got = query(&mut client, "SELECT name, city FROM people WHERE id = 7")
        .await
        .unwrap();
    assert_eq!(column_str(&got, "name"), [Some("NAME 7".to_string())]);
    assert_eq!(column_str(&got, "city"), [Some("Paris".to_string())]);
    assert_eq!(count(&server, "SELECT count(*) FROM people").await, 15000);
    assert_eq!(
        count(&server, "SELECT count(*) FROM people WHERE id = 7").await,
        1,
        "the old row is gone"
    );

    // Deletes: a range, then the updated row, whose one-row file then leaves the manifest.
    assert_eq!(
        update(&server, "DELETE FROM people WHERE id > 14000")
            .await
            .unwrap(),
        1000
    );
    assert_eq!(
        update(&server, "DELETE FROM people WHERE id = 7")
            .await
            .unwrap(),
        1
    );
    let m = catalog.table(&t).await.unwrap();
    assert_eq!(
        (m.version, m.operation, m.total_rows),
        (Version(5), Operation::Delete, 13999)
    );
    assert_eq!(
        m.files.len(),
        1,
        "the fully deleted one-row file left the table"
    );
    assert_eq!(
        m.files[0].deletion_vector.as_ref().unwrap().cardinality,
        1001
    );
    assert_eq!(count(&server, "SELECT count(*) FROM people").await, 13999);
    assert_eq!(
        count(&server, "SELECT max(id) FROM people").await,
        14000,
        "aggregates skip deleted rows"
    );
    // No match: no new version.
    assert_eq!(
        update(&server, "DELETE FROM people WHERE id = 7")
            .await
            .unwrap(),
        0
    );
    assert_eq!(catalog.table(&t).await.unwrap().version, Version(5));

    // Earlier versions still read as they were (old manifests keep their deletion vectors).
    let v3 = catalog.table_version(&t, Version(3)).await.unwrap();
    assert_eq!(v3.total_rows, 15000);

    assert_eq!(
        update(&server, "TRUNCATE TABLE people").await.unwrap(),
        13999
    );
    let m = catalog.table(&t).await.unwrap();
    assert_eq!(
        (m.operation, m.total_rows, m.files.len()),
        (Operation::Truncate, 0, 0)
    );
    assert_eq!(m.primary_key, ["id"], "the key survives TRUNCATE");
    assert_eq!(count(&server, "SELECT count(*) FROM people").await, 0);
    assert_eq!(
        update(&server, "INSERT INTO people VALUES (1, 'a', 'b')")
            .await
            .unwrap(),
        1
    );
    assert_eq!(count(&server, "SELECT count(*) FROM people").await, 1);
}

#[tokio::test]
async fn where_with_subqueries_using_and_update_from() {
    let server = start().await;
    for sql in [
        "CREATE TABLE t (id BIGINT NOT NULL, v BIGINT, s VARCHAR)",
        "INSERT INTO t VALUES (1, 10, 'a'), (2, 20, NULL), (3, NULL, 'c'), (4, 40, 'd'), (5, 50, 'e')",
        "CREATE TABLE other (k BIGINT, w BIGINT)",
        "INSERT INTO other VALUES (2, 200), (4, 400), (4, 401), (9, 900)",
    ] {
        update(&server, sql).await.unwrap();
    }
    // A WHERE with an IN subquery over another table deletes exactly the rows it selects, even
    // though `other` holds key 4 twice.
    assert_eq!(
        update(
            &server,
            "DELETE FROM t WHERE id IN (SELECT k FROM other) AND v < 30"
        )
        .await
        .unwrap(),
        1
    );
    // A correlated EXISTS, and an expression reading the old row (NULL stays NULL).
    assert_eq!(
        update(
            &server,
            "UPDATE t SET v = v * 2, s = coalesce(s, 'none') \
             WHERE NOT EXISTS (SELECT 1 FROM other o WHERE o.k = t.id)"
        )
        .await
        .unwrap(),
        3
    );
    let mut client = server.client().await;
    let rows = query(&mut client, "SELECT id, v, s FROM t ORDER BY id")
        .await
        .unwrap();
    assert_eq!(column_i64(&rows, "id"), [1, 3, 4, 5]);
    let v: Vec<Option<i64>> = rows
        .iter()
        .flat_map(|b| {
            let a = b.column_by_name("v").unwrap();
            let a = a.as_any().downcast_ref::<Int64Array>().unwrap();
            a.iter().collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(v, [Some(20), None, Some(40), Some(100)]);
    assert_eq!(
        column_str(&rows, "s"),
        [Some("a"), Some("c"), Some("d"), Some("e")].map(|s| s.map(String::from))
    );
    // UPDATE ... FROM: a target row matching two source rows is a cardinality violation.
    let err = update(
        &server,
        "UPDATE t SET v = other.w FROM other WHERE t.id = other.k",
    )
    .await
    .unwrap_err();
    assert_eq!(code(&err), Code::InvalidArgument, "{err}");
    assert!(
        err.to_string().contains("more than one source row"),
        "{err}"
    );
    assert_eq!(
        update(
            &server,
            "UPDATE t AS x SET v = o.w FROM other o WHERE x.id = o.k AND o.w = 400"
        )
        .await
        .unwrap(),
        1
    );
    // DELETE ... USING.
    assert_eq!(
        update(
            &server,
            "DELETE FROM t USING other WHERE t.id = other.k AND other.w > 400"
        )
        .await
        .unwrap(),
        1
    );
    assert_eq!(count(&server, "SELECT count(*) FROM t").await, 3);
    assert_eq!(
        count(&server, "SELECT count(*) FROM t WHERE id = 4").await,
        0
    );
}

#[tokio::test]
async fn refused_changes_name_the_problem_and_write_nothing() {
    let server = start().await;
    let catalog = open_catalog(&server.storage()).await;
    let t = TableRef::new("public", "k").unwrap();
    for sql in [
        "CREATE TABLE k (id BIGINT NOT NULL, n BIGINT NOT NULL, s VARCHAR, PRIMARY KEY (id))",
        "INSERT INTO k VALUES (1, 1, 'a'), (2, 2, 'b'), (3, 3, 'c')",
    ] {
        update(&server, sql).await.unwrap();
    }
    let version = catalog.table(&t).await.unwrap().version;
    let files = objects(&server, "k");
    for (sql, expected, needle) in [
        (
            "UPDATE k SET nope = 1",
            Code::InvalidArgument,
            "does not exist in table public.k",
        ),
        (
            "UPDATE k SET n = 'abc' WHERE id = 1",
            Code::InvalidArgument,
            "abc",
        ),
        (
            "UPDATE k SET n = NULL WHERE id = 2",
            Code::InvalidArgument,
            "NOT NULL",
        ),
        (
            "UPDATE k SET id = 2 WHERE id = 1",
            Code::AlreadyExists,
            "duplicate primary key",
        ),
        (
            "UPDATE k SET id = 7",
            Code::AlreadyExists,
            "duplicate primary key",
        ),
        (
            "UPDATE k SET n = 1, n = 2",
            Code::InvalidArgument,
            "more than once",
        ),
        (
            "UPDATE k SET n = 1 WHERE nope = 1",
            Code::InvalidArgument,
            "nope",
        ),
        (
            "DELETE FROM k WHERE nope = 1",
            Code::InvalidArgument,
            "nope",
        ),
        ("DELETE FROM missing", Code::NotFound, "missing"),
        ("UPDATE missing SET a = 1", Code::NotFound, "missing"),
        ("TRUNCATE missing", Code::NotFound, "missing"),
        (
            "DELETE FROM k RETURNING id",
            Code::InvalidArgument,
            "RETURNING",
        ),
        ("TRUNCATE k, k", Code::InvalidArgument, "one table"),
    ] {
        let err = update(&server, sql).await.unwrap_err();
        assert_eq!(code(&err), expected, "{sql}: {err}");
        assert!(err.to_string().contains(needle), "{sql}: {err}");
    }
    assert_eq!(
        update(&server, "TRUNCATE IF EXISTS missing").await.unwrap(),
        0
    );
    assert_eq!(
        catalog.table(&t).await.unwrap().version,
        version,
        "nothing committed"
    );
    assert_eq!(objects(&server, "k"), files, "no files left behind");
    assert_eq!(count(&server, "SELECT sum(n) FROM k").await, 6);

    // External tables are read-only, naming the table.
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        server
            .storage()
            .path()
            .join("tables/public/k")
            .join(files.iter().find(|f| f.starts_with("data/")).unwrap()),
        dir.path().join("part.parquet"),
    )
    .unwrap();
    let sql = format!(
        "CREATE EXTERNAL TABLE ext STORED AS PARQUET LOCATION '{}/'",
        dir.path().display()
    );
    update(&server, &sql).await.unwrap();
    for sql in [
        "DELETE FROM ext",
        "DELETE FROM ext WHERE id = 1",
        "UPDATE ext SET n = 0",
        "TRUNCATE ext",
    ] {
        let err = update(&server, sql).await.unwrap_err();
        assert_eq!(code(&err), Code::FailedPrecondition, "{sql}: {err}");
        assert!(err.to_string().contains("public.ext"), "{sql}: {err}");
    }
    assert_eq!(count(&server, "SELECT count(*) FROM ext").await, 3);
}

#[tokio::test]
async fn concurrent_updates_of_one_row_lose_nothing() {
    let server = Arc::new(TestServer::start().await);
    for sql in [
        "CREATE TABLE c (id BIGINT NOT NULL, n BIGINT NOT NULL)",
        "INSERT INTO c VALUES (1, 0), (2, 0)",
    ] {
        update(&server, sql).await.unwrap();
    }
    let writer = |sql: &'static str| {
        let server = Arc::clone(&server);
        tokio::spawn(async move {
            let mut ok = 0;
            for _ in 0..8 {
                match update(&server, sql).await {
                    Ok(1) => ok += 1,
                    Ok(other) => panic!("{sql} changed {other} rows"),
                    Err(e) => assert_eq!(code(&e), Code::Aborted, "{e}"),
                }
            }
            ok
        })
    };
    let a = writer("UPDATE c SET n = n + 1 WHERE id = 1");
    let b = writer("UPDATE c SET n = n + 1 WHERE id = 1");
    let appends = {
        let server = Arc::clone(&server);
        tokio::spawn(async move {
            for i in 0..8 {
                let sql = format!("INSERT INTO c VALUES ({}, 0)", 100 + i);
                update(&server, &sql).await.unwrap();
            }
        })
    };
    let (a, b, _) = (a.await.unwrap(), b.await.unwrap(), appends.await.unwrap());
    assert!(a + b > 0);
    assert_eq!(
        count(&server, "SELECT n FROM c WHERE id = 1").await,
        a + b,
        "every acknowledged increment is there, once"
    );
    assert_eq!(
        count(&server, "SELECT count(*) FROM c").await,
        10,
        "no append lost"
    );
}

#[tokio::test]
async fn prepared_updates_and_deletes_by_key_as_dbeavers_editor_sends_them() {
    let server = start().await;
    let catalog = open_catalog(&server.storage()).await;
    let t = TableRef::new("public", "p").unwrap();
    for sql in [
        "CREATE TABLE p (id BIGINT NOT NULL, name VARCHAR, PRIMARY KEY (id))",
        "INSERT INTO p VALUES (1, 'a'), (2, 'b'), (3, 'c'), (4, 'd')",
    ] {
        update(&server, sql).await.unwrap();
    }
    // The JDBC driver's sequence: CreatePreparedStatement, then per execution one DoPut of
    // CommandPreparedStatementUpdate carrying the parameter rows (executeUpdate: one row;
    // executeBatch: N rows); DBeaver's data editor qualifies and quotes every name.
    let mut client = server.client().await;
    let mut prepared = client
        .prepare(
            r#"UPDATE "lakehouse"."public"."p" SET "name"=? WHERE "id"=?"#.into(),
            None,
        )
        .await
        .unwrap();
    let params = prepared.parameter_schema().unwrap().clone();
    assert_eq!(params.fields().len(), 2);
    assert_eq!(
        params.field(0).data_type(),
        &arrow::datatypes::DataType::Utf8
    );
    assert_eq!(
        params.field(1).data_type(),
        &arrow::datatypes::DataType::Int64
    );
    prepared
        .set_parameters(names_and_ids(vec!["A"], vec![1]))
        .unwrap();
    assert_eq!(prepared.execute_update().await.unwrap(), 1);
    let version = catalog.table(&t).await.unwrap().version;
    // Several parameter rows (JDBC executeBatch): one commit.
    prepared
        .set_parameters(names_and_ids(vec!["B", "C"], vec![2, 3]))
        .unwrap();
    assert_eq!(prepared.execute_update().await.unwrap(), 2);
    assert_eq!(catalog.table(&t).await.unwrap().version, version.next());

    let mut delete = client
        .prepare(r#"DELETE FROM "public"."p" WHERE "id"=?"#.into(), None)
        .await
        .unwrap();
    delete
        .set_parameters(
            RecordBatch::try_from_iter(vec![(
                "a",
                Arc::new(Int64Array::from(vec![1, 4, 99])) as ArrayRef,
            )])
            .unwrap(),
        )
        .unwrap();
    assert_eq!(delete.execute_update().await.unwrap(), 2);
    let rows = query(&mut client, "SELECT id, name FROM p ORDER BY id")
        .await
        .unwrap();
    assert_eq!(column_i64(&rows, "id"), [2, 3]);
    assert_eq!(
        column_str(&rows, "name"),
        [Some("B".to_string()), Some("C".to_string())]
    );
}

#[tokio::test]
async fn merge_cardinality_violations_and_malformed_merges_write_nothing() {
    let server = start().await;
    let catalog = open_catalog(&server.storage()).await;
    let t = TableRef::new("public", "m").unwrap();
    for sql in [
        "CREATE TABLE m (id BIGINT NOT NULL, v BIGINT, PRIMARY KEY (id))",
        "INSERT INTO m VALUES (1, 1), (2, 2)",
        "CREATE TABLE src (id BIGINT, v BIGINT)",
        "INSERT INTO src VALUES (1, 10), (1, 11), (3, 30)",
        "CREATE TABLE nokey (id BIGINT)",
    ] {
        update(&server, sql).await.unwrap();
    }
    let version = catalog.table(&t).await.unwrap().version;
    let files = objects(&server, "m");
    for (sql, expected, needle) in [
        (
            "MERGE INTO m USING src ON m.id = src.id WHEN MATCHED THEN UPDATE SET v = src.v \
             WHEN NOT MATCHED THEN INSERT VALUES (src.id, src.v)",
            Code::InvalidArgument,
            "cardinality",
        ),
        (
            "MERGE INTO m USING src ON m.id = src.id WHEN MATCHED THEN DELETE",
            Code::InvalidArgument,
            "cardinality",
        ),
        (
            "MERGE INTO m USING src ON m.id = src.id WHEN MATCHED THEN INSERT VALUES (1, 1)",
            Code::InvalidArgument,
            "not allowed",
        ),
        (
            "MERGE INTO m USING src ON m.id = src.id WHEN NOT MATCHED THEN INSERT (id) \
             VALUES (src.id, src.v)",
            Code::InvalidArgument,
            "1 column(s) but gives 2",
        ),
        (
            "MERGE INTO m USING src ON WHEN MATCHED THEN DELETE",
            Code::InvalidArgument,
            "",
        ),
        (
            "MERGE INTO m USING src ON m.id = src.id WHEN NOT MATCHED THEN INSERT (nope) \
             VALUES (1)",
            Code::InvalidArgument,
            "nope",
        ),
        (
            "MERGE INTO m USING src ON m.id = src.id WHEN NOT MATCHED THEN INSERT (v) VALUES (1)",
            Code::InvalidArgument,
            "NOT NULL",
        ),
        (
            "INSERT INTO m VALUES (5, 5) ON CONFLICT (v) DO NOTHING",
            Code::InvalidArgument,
            "must name the primary key",
        ),
        (
            "INSERT INTO nokey VALUES (1) ON CONFLICT DO NOTHING",
            Code::InvalidArgument,
            "needs a primary key",
        ),
        (
            "INSERT INTO m VALUES (7, 7), (7, 8) ON CONFLICT DO NOTHING",
            Code::AlreadyExists,
            "duplicate primary key",
        ),
    ] {
        let err = update(&server, sql).await.unwrap_err();
        assert_eq!(code(&err), expected, "{sql}: {err}");
        assert!(err.to_string().contains(needle), "{sql}: {err}");
    }
    assert_eq!(
        catalog.table(&t).await.unwrap().version,
        version,
        "nothing committed"
    );
    assert_eq!(objects(&server, "m"), files, "no files left behind");

    // A merge that only inserts is an append-like merge version; the count covers each action.
    let sql = "MERGE INTO m USING (SELECT DISTINCT id FROM src) AS s ON m.id = s.id \
               WHEN MATCHED THEN UPDATE SET v = m.v * 100 \
               WHEN NOT MATCHED THEN INSERT VALUES (s.id, 0)";
    assert_eq!(update(&server, sql).await.unwrap(), 2);
    let m = catalog.table(&t).await.unwrap();
    assert_eq!((m.operation, m.total_rows), (Operation::Merge, 3));
    let mut client = server.client().await;
    let rows = query(&mut client, "SELECT id, v FROM m ORDER BY id")
        .await
        .unwrap();
    assert_eq!(column_i64(&rows, "id"), [1, 2, 3]);
    assert_eq!(column_i64(&rows, "v"), [100, 2, 0]);
}

#[tokio::test]
async fn two_writers_inserting_one_new_key_at_once_yield_one_row() {
    let server = Arc::new(TestServer::start().await);
    update(
        &server,
        "CREATE TABLE u (id BIGINT NOT NULL, w VARCHAR, PRIMARY KEY (id))",
    )
    .await
    .unwrap();
    for key in 0..6 {
        let insert = |writer: &'static str| {
            let server = Arc::clone(&server);
            tokio::spawn(async move {
                let sql = format!("INSERT INTO u VALUES ({key}, '{writer}')");
                update(&server, &sql).await
            })
        };
        let (a, b) = (insert("a"), insert("b"));
        let results = [a.await.unwrap(), b.await.unwrap()];
        let ok = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(ok, 1, "key {key}: {results:?}");
        for result in &results {
            if let Err(e) = result {
                assert_eq!(code(e), Code::AlreadyExists, "{e}");
            }
        }
    }
    assert_eq!(count(&server, "SELECT count(*) FROM u").await, 6);
    assert_eq!(count(&server, "SELECT count(DISTINCT id) FROM u").await, 6);
}

#[tokio::test]
async fn lance_updates_take_from_tables_subqueries_and_parameters_and_record_the_user() {
    let server = start().await;
    for sql in [
        "CREATE TABLE items (id BIGINT, name VARCHAR, qty BIGINT, v FLOAT[2]) STORED AS LANCE \
         WITH (metric = 'l2')",
        "INSERT INTO items VALUES (1, 'a', 10, [1.0, 0.0]), (2, 'b', 20, [0.0, 1.0]), \
         (3, 'c', 30, [1.0, 1.0])",
        "CREATE INDEX items_name ON items USING FTS (name)",
        "CREATE TABLE price (id BIGINT, qty BIGINT)",
        "INSERT INTO price VALUES (2, 200), (3, 300), (3, 301)",
    ] {
        update(&server, sql).await.unwrap();
    }
    async fn version(server: &TestServer) -> i64 {
        count(server, "SELECT max(version) FROM table_history('items')").await
    }
    let before = version(&server).await;
    // Row 3 matches two price rows: refused, nothing committed.
    let err = update(
        &server,
        "UPDATE items SET qty = price.qty FROM price WHERE items.id = price.id",
    )
    .await
    .unwrap_err();
    assert_eq!(code(&err), Code::InvalidArgument, "{err}");
    assert!(err.to_string().contains("twice"), "{err}");
    assert_eq!(version(&server).await, before);
    assert_eq!(count(&server, "SELECT sum(qty) FROM items").await, 60);
    // FROM with one source row per target row; a scalar subquery in SET.
    assert_eq!(
        update(
            &server,
            "UPDATE items AS i SET qty = p.qty FROM (SELECT id, max(qty) AS qty FROM price \
             GROUP BY id) p WHERE i.id = p.id"
        )
        .await
        .unwrap(),
        2
    );
    assert_eq!(
        update(
            &server,
            "UPDATE items SET qty = (SELECT min(qty) FROM price) + qty WHERE id = 1"
        )
        .await
        .unwrap(),
        1
    );
    assert_eq!(
        count(&server, "SELECT sum(qty) FROM items").await,
        210 + 200 + 301
    );
    // Bound parameters in SET, one row and then two rows in one Lance commit.
    let mut client = server.client().await;
    let mut prepared = client
        .prepare("UPDATE items SET name = ? WHERE id = ?".into(), None)
        .await
        .unwrap();
    let params = prepared.parameter_schema().unwrap().clone();
    assert_eq!(
        params.field(0).data_type(),
        &arrow::datatypes::DataType::Utf8
    );
    prepared
        .set_parameters(names_and_ids(vec!["x"], vec![1]))
        .unwrap();
    assert_eq!(prepared.execute_update().await.unwrap(), 1);
    let before = version(&server).await;
    prepared
        .set_parameters(names_and_ids(vec!["y", "z"], vec![2, 3]))
        .unwrap();
    assert_eq!(prepared.execute_update().await.unwrap(), 2);
    assert_eq!(version(&server).await, before + 1, "one Lance commit");
    // The same row twice among the parameter rows: the cardinality violation.
    prepared
        .set_parameters(names_and_ids(vec!["p", "q"], vec![2, 2]))
        .unwrap();
    let err = prepared.execute_update().await.unwrap_err();
    assert_eq!(code(&err), Code::InvalidArgument, "{err}");
    let rows = query(&mut client, "SELECT id, name, qty FROM items ORDER BY id")
        .await
        .unwrap();
    assert_eq!(column_i64(&rows, "id"), [1, 2, 3]);
    assert_eq!(
        column_str(&rows, "name"),
        [Some("x"), Some("y"), Some("z")].map(|s| s.map(String::from))
    );
    // Vectors were carried over; the vector and full-text indexes answer.
    let nearest = query(
        &mut client,
        "SELECT id FROM vector_search('items', [0.0, 1.0], 1)",
    )
    .await
    .unwrap();
    assert_eq!(column_i64(&nearest, "id"), [2]);
    let found = query(&mut client, "SELECT id FROM text_search('items', 'z', 5)")
        .await
        .unwrap();
    assert_eq!(column_i64(&found, "id"), [3]);
    // Every commit a request made records its user (index build, updates, deletes).
    update(&server, "DELETE FROM items WHERE id = 1")
        .await
        .unwrap();
    update(&server, "TRUNCATE items").await.unwrap();
    let history = query(
        &mut client,
        "SELECT operation, committed_by FROM table_history('items') ORDER BY version",
    )
    .await
    .unwrap();
    let operations = column_str(&history, "operation");
    for expected in ["CreateIndex", "Update", "Delete"] {
        assert!(
            operations.iter().any(|o| o.as_deref() == Some(expected)),
            "{operations:?}"
        );
    }
    assert!(
        column_str(&history, "committed_by")
            .iter()
            .all(|u| u.as_deref() == Some("anonymous")),
        "{:?}",
        column_str(&history, "committed_by")
    );
}

#[tokio::test]
async fn delete_update_truncate_on_a_lance_table_keep_its_index_working() {
    let server = start().await;
    for sql in [
        "CREATE TABLE notes (id BIGINT, tag VARCHAR, body VARCHAR, v FLOAT[3]) STORED AS LANCE \
         WITH (metric = 'l2')",
        "INSERT INTO notes VALUES \
         (1, 'a', 'the red fox jumps', [1.0, 0.0, 0.0]), \
         (2, 'b', 'a blue whale sings', [0.0, 1.0, 0.0]), \
         (3, 'a', 'green frogs croak', [0.0, 0.0, 1.0]), \
         (4, NULL, 'the red planet', [1.0, 1.0, 0.0])",
        "CREATE INDEX notes_body ON notes USING FTS (body)",
        "CREATE TABLE gone (id BIGINT)",
        "INSERT INTO gone VALUES (2)",
    ] {
        update(&server, sql).await.unwrap();
    }
    // WHERE with a subquery over a Parquet table: DataFusion finds the rows, Lance deletes.
    assert_eq!(
        update(
            &server,
            "DELETE FROM notes WHERE id IN (SELECT id FROM gone)"
        )
        .await
        .unwrap(),
        1
    );
    // SET expressions read the old row.
    assert_eq!(
        update(
            &server,
            "UPDATE notes SET body = upper(body), tag = coalesce(tag, 'none') WHERE body LIKE '%red%'"
        )
        .await
        .unwrap(),
        2
    );
    let mut client = server.client().await;
    let rows = query(&mut client, "SELECT id, tag, body FROM notes ORDER BY id")
        .await
        .unwrap();
    assert_eq!(column_i64(&rows, "id"), [1, 3, 4]);
    assert_eq!(
        column_str(&rows, "tag"),
        [Some("a"), Some("a"), Some("none")].map(|s| s.map(String::from))
    );
    assert_eq!(
        column_str(&rows, "body"),
        [
            Some("THE RED FOX JUMPS"),
            Some("green frogs croak"),
            Some("THE RED PLANET")
        ]
        .map(|s| s.map(String::from))
    );
    // The full-text index and vector search still answer, without the deleted row.
    let found = query(
        &mut client,
        "SELECT id FROM text_search('notes', 'frogs', 5) ORDER BY id",
    )
    .await
    .unwrap();
    assert_eq!(column_i64(&found, "id"), [3]);
    let nearest = query(
        &mut client,
        "SELECT id FROM vector_search('notes', [0.0, 1.0, 0.0], 1)",
    )
    .await
    .unwrap();
    assert_eq!(
        column_i64(&nearest, "id"),
        [4],
        "the deleted row 2 is not found"
    );

    for (sql, needle) in [
        ("UPDATE notes SET nope = 1", "does not exist"),
        // Every target row matches two source rows: the cardinality violation.
        (
            "UPDATE notes SET tag = 'x' FROM (SELECT 1 AS k UNION ALL SELECT 2) s",
            "twice",
        ),
    ] {
        let err = update(&server, sql).await.unwrap_err();
        assert_eq!(code(&err), Code::InvalidArgument, "{sql}: {err}");
        assert!(err.to_string().contains(needle), "{sql}: {err}");
    }
    // MERGE: matched rows deleted or updated, unmatched source rows inserted, one Lance commit.
    let catalog = open_catalog(&server.storage()).await;
    let notes = catalog
        .table(&TableRef::new("public", "notes").unwrap())
        .await
        .unwrap();
    let versions = server
        .storage()
        .path()
        .join(&notes.lance.as_ref().unwrap().location)
        .join("_versions");
    let commits = || std::fs::read_dir(&versions).unwrap().count();
    let before = commits();
    let sql = "MERGE INTO notes n USING (SELECT 1 AS id, 'x' AS t UNION ALL SELECT 3, 'y' \
               UNION ALL SELECT 9, 'z') AS s ON n.id = s.id \
               WHEN MATCHED AND s.id = 1 THEN DELETE \
               WHEN MATCHED THEN UPDATE SET tag = s.t \
               WHEN NOT MATCHED THEN INSERT (id, tag, body, v) VALUES (s.id, s.t, 'new', [0.0, 0.0, 9.0])";
    assert_eq!(update(&server, sql).await.unwrap(), 3);
    assert_eq!(commits(), before + 1, "one Lance commit");
    let rows = query(&mut client, "SELECT id, tag FROM notes ORDER BY id")
        .await
        .unwrap();
    assert_eq!(column_i64(&rows, "id"), [3, 4, 9]);
    assert_eq!(
        column_str(&rows, "tag"),
        [Some("y"), Some("none"), Some("z")].map(|s| s.map(String::from))
    );
    let found = query(
        &mut client,
        "SELECT id FROM text_search('notes', 'frogs', 5) ORDER BY id",
    )
    .await
    .unwrap();
    assert_eq!(
        column_i64(&found, "id"),
        [3],
        "the index still answers after the merge"
    );
    let err = update(
        &server,
        "MERGE INTO notes USING (SELECT 3 AS id UNION ALL SELECT 3) AS s ON notes.id = s.id \
         WHEN MATCHED THEN DELETE",
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("cardinality"), "{err}");
    assert_eq!(update(&server, "TRUNCATE notes").await.unwrap(), 3);
    assert_eq!(count(&server, "SELECT count(*) FROM notes").await, 0);
}

#[tokio::test]
async fn bulk_ingest_upserts_by_primary_key_in_one_commit() {
    let server = start().await;
    let catalog = open_catalog(&server.storage()).await;
    let kv = TableRef::new("public", "kv").unwrap();
    for sql in [
        "CREATE TABLE kv (id BIGINT NOT NULL, v VARCHAR, PRIMARY KEY (id))",
        "INSERT INTO kv VALUES (1, 'a'), (2, 'b')",
        "CREATE TABLE plain (id BIGINT NOT NULL, v VARCHAR)",
    ] {
        update(&server, sql).await.unwrap();
    }
    let rows = |ids: Vec<i64>, values: Vec<&str>| {
        RecordBatch::try_from_iter(vec![
            ("id", Arc::new(Int64Array::from(ids)) as ArrayRef),
            ("v", Arc::new(StringArray::from(values)) as ArrayRef),
        ])
        .unwrap()
    };
    let upsert = |table: &str| {
        lakehouse_tests::ingest_command(table, false, &[("lakehouse.ingest.mode", "upsert")])
    };
    let ingest = async |cmd, batch: RecordBatch| {
        let mut client = server.client().await;
        client
            .execute_ingest(cmd, futures::stream::iter([Ok(batch)]))
            .await
    };
    let version = catalog.table(&kv).await.unwrap().version;
    assert_eq!(
        ingest(upsert("kv"), rows(vec![2, 3], vec!["B", "C"]))
            .await
            .unwrap(),
        2
    );
    let m = catalog.table(&kv).await.unwrap();
    assert_eq!(
        (m.version, m.operation, m.total_rows),
        (version.next(), Operation::Merge, 3)
    );
    let mut client = server.client().await;
    let got = query(&mut client, "SELECT id, v FROM kv ORDER BY id")
        .await
        .unwrap();
    assert_eq!(column_i64(&got, "id"), [1, 2, 3]);
    assert_eq!(
        column_str(&got, "v"),
        [Some("a"), Some("B"), Some("C")].map(|s| s.map(String::from))
    );
    let files = objects(&server, "kv");
    for (cmd, batch, expected, needle) in [
        (
            upsert("kv"),
            rows(vec![4, 4], vec!["x", "y"]),
            Code::AlreadyExists,
            "duplicate primary key",
        ),
        (
            upsert("plain"),
            rows(vec![1], vec!["x"]),
            Code::InvalidArgument,
            "primary key",
        ),
        (
            upsert("missing"),
            rows(vec![1], vec!["x"]),
            Code::NotFound,
            "missing",
        ),
        (
            lakehouse_tests::ingest_command("kv", false, &[("lakehouse.ingest.mode", "merge")]),
            rows(vec![1], vec!["x"]),
            Code::InvalidArgument,
            "use upsert",
        ),
    ] {
        let err = ingest(cmd, batch).await.unwrap_err();
        assert_eq!(code(&err), expected, "{err}");
        assert!(err.to_string().contains(needle), "{err}");
    }
    assert_eq!(
        objects(&server, "kv"),
        files,
        "nothing written by refused upserts"
    );
    assert_eq!(count(&server, "SELECT count(*) FROM kv").await, 3);
}
