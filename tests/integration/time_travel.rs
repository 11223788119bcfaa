//! Time travel: `VERSION AS OF`, `TIMESTAMP AS OF` and `FOR SYSTEM_TIME AS OF` on Parquet and
//! Lance tables across inserts, updates, deletes and a compaction; two versions of one table in
//! one query; versioned references pinned in tickets; and the errors (a version VACUUM removed,
//! an instant before the table, a version clause on a change).

use lakehouse_catalog::TableRef;
use lakehouse_tests::models::{ModelServer, minilm_config};
use lakehouse_tests::{TestServer, code, count, fetch, ingest_notes, open_catalog, query, update};
use tonic::Code;

/// The rows of `sql` as text lines, for comparing answers.
async fn rows(server: &TestServer, sql: &str) -> Vec<String> {
    let mut client = server.client().await;
    let batches = query(&mut client, sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    arrow::util::pretty::pretty_format_batches(&batches)
        .unwrap()
        .to_string()
        .lines()
        .map(str::to_string)
        .collect()
}

/// An instant as SQL text, UTC.
fn at(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S%.6f").to_string()
}

#[tokio::test]
async fn parquet_versions_read_back_across_changes_and_compaction() {
    let server = TestServer::start_with(|c| c.maintenance.auto_compact = false).await;
    let catalog = open_catalog(&server.storage()).await;
    let t = TableRef::new("public", "t").unwrap();
    update(&server, "CREATE TABLE t (id BIGINT NOT NULL, v VARCHAR)")
        .await
        .unwrap();
    let changes = [
        "INSERT INTO t VALUES (1, 'a'), (2, 'b'), (3, 'c')",
        "INSERT INTO t VALUES (4, 'd')",
        "UPDATE t SET v = 'B' WHERE id = 2",
        "DELETE FROM t WHERE id = 3",
        "OPTIMIZE t",
    ];
    let snapshot = "SELECT id, v FROM t ORDER BY id";
    let mut seen = vec![(
        catalog.table(&t).await.unwrap(),
        rows(&server, snapshot).await,
    )];
    for change in changes {
        update(&server, change).await.unwrap();
        let head = catalog.table(&t).await.unwrap();
        seen.push((head, rows(&server, snapshot).await));
    }
    assert_eq!(
        seen.last().unwrap().0.version.0,
        6,
        "one version per change"
    );
    for (manifest, expected) in &seen {
        let v = manifest.version.0;
        let when = at(manifest.created_at);
        for sql in [
            format!("SELECT id, v FROM t VERSION AS OF {v} ORDER BY id"),
            format!("SELECT id, v FROM t TIMESTAMP AS OF '{when}' ORDER BY id"),
            format!("SELECT t.id, t.v FROM t FOR SYSTEM_TIME AS OF '{when}' ORDER BY t.id"),
            format!(
                "SELECT id, v FROM public.t FOR SYSTEM_TIME AS OF TIMESTAMP '{when}' + \
                 INTERVAL '1 microsecond' ORDER BY id"
            ),
        ] {
            assert_eq!(&rows(&server, &sql).await, expected, "{sql}");
        }
    }
    // Two versions of one table in one query: the rows version 2 had and the head lacks.
    assert_eq!(
        count(
            &server,
            "SELECT count(*) FROM t VERSION AS OF 2 old LEFT JOIN t now ON old.id = now.id \
             WHERE now.id IS NULL"
        )
        .await,
        1
    );
    assert_eq!(
        rows(
            &server,
            "SELECT a.v AS before, b.v AS after FROM t VERSION AS OF 3 a \
             JOIN t VERSION AS OF 4 b ON a.id = b.id WHERE a.v <> b.v"
        )
        .await,
        rows(&server, "SELECT 'b' AS before, 'B' AS after").await
    );
    // An instant in the future reads the newest version, pinned in the ticket: a commit
    // between GetFlightInfo and DoGet does not change the answer.
    let mut client = server.client().await;
    let future = "SELECT count(*) FROM t TIMESTAMP AS OF now() + INTERVAL '1 day'";
    let info = client.execute(future.into(), None).await.unwrap();
    update(&server, "INSERT INTO t VALUES (9, 'z')")
        .await
        .unwrap();
    let pinned = fetch(&mut client, info).await.unwrap();
    assert_eq!(lakehouse_tests::scalar_i64(&pinned), 3);
    assert_eq!(count(&server, future).await, 4);

    // Errors.
    let first_at = seen[0].0.created_at;
    for (sql, code_wanted, needle) in [
        (
            "SELECT * FROM t VERSION AS OF 99".to_string(),
            Code::NotFound,
            "versions are 1..=7".to_string(),
        ),
        (
            format!(
                "SELECT * FROM t TIMESTAMP AS OF '{}'",
                at(first_at - chrono::Duration::hours(1))
            ),
            Code::NotFound,
            "oldest kept version 1".to_string(),
        ),
        (
            "SELECT * FROM t VERSION AS OF 'x'".to_string(),
            Code::InvalidArgument,
            String::new(),
        ),
        (
            "SELECT * FROM t TIMESTAMP AS OF 'yesterday-ish'".to_string(),
            Code::InvalidArgument,
            "TIMESTAMP AS OF".to_string(),
        ),
        (
            "SELECT * FROM missing VERSION AS OF 1".to_string(),
            Code::NotFound,
            "missing".to_string(),
        ),
        (
            "DELETE FROM t VERSION AS OF 1 WHERE id = 1".to_string(),
            Code::InvalidArgument,
            "RESTORE".to_string(),
        ),
    ] {
        let mut client = server.client().await;
        let err = match query(&mut client, &sql).await {
            Err(e) => e,
            Ok(_) => match client.execute_update(sql.clone(), None).await {
                Err(e) => e,
                Ok(n) => panic!("{sql}: accepted, {n} rows"),
            },
        };
        assert_eq!(code(&err), code_wanted, "{sql}: {err}");
        assert!(err.to_string().contains(&needle), "{sql}: {err}");
    }
    assert_eq!(
        count(&server, "SELECT count(*) FROM t").await,
        4,
        "nothing changed"
    );

    // VACUUM removes old versions: asking for one names the oldest kept.
    update(&server, "VACUUM t RETAIN 0 HOURS").await.unwrap();
    let mut client = server.client().await;
    let err = query(&mut client, "SELECT * FROM t VERSION AS OF 2")
        .await
        .unwrap_err();
    assert_eq!(code(&err), Code::NotFound, "{err}");
    assert!(err.to_string().contains("oldest kept is 7"), "{err}");
    assert_eq!(
        count(&server, "SELECT count(*) FROM t VERSION AS OF 7").await,
        4
    );
}

#[tokio::test]
async fn lance_versions_read_back_by_version_and_time() {
    let server = TestServer::start_with(|c| {
        c.embedding.models = [("minilm".to_string(), minilm_config(ModelServer::shared()))]
            .into_iter()
            .collect();
    })
    .await;
    ingest_notes(&server, &["alpha", "beta", "gamma", "delta"]).await;
    let snapshot = "SELECT id, body FROM notes ORDER BY id";
    let mut seen = vec![rows(&server, snapshot).await];
    update(&server, "DELETE FROM notes WHERE id = 2")
        .await
        .unwrap();
    seen.push(rows(&server, snapshot).await);
    update(&server, "UPDATE notes SET body = 'GAMMA' WHERE id = 3")
        .await
        .unwrap();
    seen.push(rows(&server, snapshot).await);
    // Lance's compaction rewrites the fragments (deleted rows dropped): versions with the same
    // rows (compaction may commit more than one).
    update(&server, "OPTIMIZE notes").await.unwrap();
    let compacted = rows(&server, snapshot).await;
    assert_eq!(&compacted, seen.last().unwrap());
    let versions = count(&server, "SELECT max(version) FROM table_history('notes')").await;
    for _ in seen.len() as i64..versions {
        seen.push(compacted.clone());
    }
    // Lance versions are the dataset's: 1 for the ingest, then one per change.
    for (i, expected) in seen.iter().enumerate() {
        let v = i + 1;
        let sql = format!("SELECT id, body FROM notes VERSION AS OF {v} ORDER BY id");
        assert_eq!(&rows(&server, &sql).await, expected, "{sql}");
    }
    assert!(
        seen.len() >= 4,
        "ingest, delete, update and compaction each add a version"
    );
    // An instant now reads the newest; one before the table existed is NotFound.
    let now = at(chrono::Utc::now());
    assert_eq!(
        &rows(
            &server,
            &format!("SELECT id, body FROM notes TIMESTAMP AS OF '{now}' ORDER BY id")
        )
        .await,
        seen.last().unwrap()
    );
    let mut client = server.client().await;
    let err = query(
        &mut client,
        "SELECT * FROM notes TIMESTAMP AS OF '2000-01-01 00:00:00'",
    )
    .await
    .unwrap_err();
    assert_eq!(code(&err), Code::NotFound, "{err}");
    let err = query(&mut client, "SELECT * FROM notes VERSION AS OF 42")
        .await
        .unwrap_err();
    assert_eq!(code(&err), Code::NotFound, "{err}");
    // Two Lance versions in one query.
    assert_eq!(
        count(
            &server,
            "SELECT count(*) FROM notes VERSION AS OF 1 a JOIN notes VERSION AS OF 3 b \
             ON a.id = b.id AND a.body <> b.body"
        )
        .await,
        1
    );
}

/// A server where `ann` (write) logs in; her client.
async fn ann_server() -> (
    TestServer,
    arrow_flight::sql::client::FlightSqlServiceClient<tonic::transport::Channel>,
) {
    use lakehouse_server::auth::{AuthConfig, AuthMode, Role, UserConfig, hash_password};
    let auth = AuthConfig {
        mode: AuthMode::Basic,
        users: vec![UserConfig {
            name: "ann".into(),
            password_hash: hash_password("ann-pw").unwrap(),
            role: Role::Write,
        }],
        ..AuthConfig::default()
    };
    let server = TestServer::start_with(|c| {
        c.auth = auth;
        c.maintenance.auto_compact = false;
    })
    .await;
    let mut client = server.client().await;
    client.handshake("ann", "ann-pw").await.unwrap();
    (server, client)
}

#[tokio::test]
async fn table_history_lists_versions_and_restore_brings_one_back() {
    let (server, mut client) = ann_server().await;
    for sql in [
        "CREATE TABLE h (id BIGINT NOT NULL, v VARCHAR)",
        "INSERT INTO h VALUES (1, 'a'), (2, 'b'), (3, 'c')",
        "UPDATE h SET v = 'B' WHERE id = 2",
        "DELETE FROM h WHERE id = 3",
        "OPTIMIZE h",
    ] {
        client.execute_update(sql.into(), None).await.unwrap();
    }
    let history = query(
        &mut client,
        "SELECT version, operation, rows_added, rows_removed, total_rows, data_files, \
         committed_by FROM table_history('h')",
    )
    .await
    .unwrap();
    let text = arrow::util::pretty::pretty_format_batches(&history)
        .unwrap()
        .to_string();
    let expected = "\
+---------+-----------+------------+--------------+------------+------------+--------------+
| version | operation | rows_added | rows_removed | total_rows | data_files | committed_by |
+---------+-----------+------------+--------------+------------+------------+--------------+
| 5       | compact   | 2          | 2            | 2          | 1          | ann          |
| 4       | delete    | 0          | 1            | 2          | 2          | ann          |
| 3       | update    | 1          | 1            | 3          | 2          | ann          |
| 2       | append    | 3          | 0            | 3          | 1          | ann          |
| 1       | create    | 0          | 0            | 0          | 0          | ann          |
+---------+-----------+------------+--------------+------------+------------+--------------+";
    assert_eq!(text, expected);
    // created_at is what TIMESTAMP AS OF reads: each version's own instant selects it.
    let times = query(
        &mut client,
        "SELECT version, CAST(created_at AS VARCHAR) AS at FROM table_history('h')",
    )
    .await
    .unwrap();
    let versions = lakehouse_tests::column_i64(&times, "version");
    let ats = lakehouse_tests::column_str(&times, "at");
    for (v, at) in versions.iter().zip(ats) {
        let at = at.unwrap();
        let sql = format!(
            "SELECT count(*) FROM h TIMESTAMP AS OF '{at}' a JOIN h VERSION AS OF {v} b \
             ON a.id = b.id AND a.v = b.v"
        );
        let joined = lakehouse_tests::scalar_i64(&query(&mut client, &sql).await.unwrap());
        let rows = lakehouse_tests::scalar_i64(
            &query(
                &mut client,
                &format!("SELECT count(*) FROM h VERSION AS OF {v}"),
            )
            .await
            .unwrap(),
        );
        assert_eq!(joined, rows, "{sql}");
    }

    // RESTORE makes version 3 the newest again, as version 6; the history keeps 4 and 5.
    let restored = client
        .execute_update("RESTORE TABLE h TO VERSION 3".into(), None)
        .await
        .unwrap();
    assert_eq!(restored, 3, "the rows of version 3");
    let now = query(&mut client, "SELECT id, v FROM h ORDER BY id")
        .await
        .unwrap();
    let then = query(
        &mut client,
        "SELECT id, v FROM h VERSION AS OF 3 ORDER BY id",
    )
    .await
    .unwrap();
    assert_eq!(
        arrow::util::pretty::pretty_format_batches(&now)
            .unwrap()
            .to_string(),
        arrow::util::pretty::pretty_format_batches(&then)
            .unwrap()
            .to_string()
    );
    let top = query(
        &mut client,
        "SELECT version, operation FROM table_history('h') LIMIT 1",
    )
    .await
    .unwrap();
    assert_eq!(lakehouse_tests::column_i64(&top, "version"), [6]);
    assert_eq!(
        lakehouse_tests::column_str(&top, "operation"),
        [Some("restore".to_string())]
    );
    // Writes continue on the restored version.
    client
        .execute_update("INSERT INTO h VALUES (4, 'd')".into(), None)
        .await
        .unwrap();
    assert_eq!(
        lakehouse_tests::scalar_i64(&query(&mut client, "SELECT count(*) FROM h").await.unwrap()),
        4
    );

    // Bad RESTOREs change nothing.
    for (sql, wanted) in [
        ("RESTORE TABLE h TO VERSION 99", Code::NotFound),
        ("RESTORE TABLE nope TO VERSION 1", Code::NotFound),
        ("RESTORE TABLE h TO 3", Code::InvalidArgument),
        ("RESTORE TABLE h TO VERSION x", Code::InvalidArgument),
    ] {
        let err = match client.execute_update(sql.into(), None).await {
            Err(e) => e,
            Ok(n) => panic!("{sql}: accepted ({n})"),
        };
        assert_eq!(code(&err), wanted, "{sql}: {err}");
    }
    for (sql, wanted) in [
        ("SELECT * FROM table_history('nope')", Code::NotFound),
        ("SELECT * FROM table_history(1)", Code::InvalidArgument),
    ] {
        let err = query(&mut client, sql).await.unwrap_err();
        assert_eq!(code(&err), wanted, "{sql}: {err}");
    }
    assert_eq!(
        lakehouse_tests::scalar_i64(
            &query(&mut client, "SELECT max(version) FROM table_history('h')")
                .await
                .unwrap()
        ),
        7
    );
    drop(server);
}

#[tokio::test]
async fn lance_history_and_restore() {
    let server = TestServer::start_with(|c| {
        c.embedding.models = [("minilm".to_string(), minilm_config(ModelServer::shared()))]
            .into_iter()
            .collect();
    })
    .await;
    ingest_notes(&server, &["alpha", "beta", "gamma"]).await;
    update(&server, "DELETE FROM notes WHERE id = 2")
        .await
        .unwrap();
    let history = rows(
        &server,
        "SELECT version, operation, rows_added, rows_removed, total_rows, committed_by \
         FROM table_history('notes')",
    )
    .await;
    let expected = [
        "+---------+-----------+------------+--------------+------------+--------------+",
        "| version | operation | rows_added | rows_removed | total_rows | committed_by |",
        "+---------+-----------+------------+--------------+------------+--------------+",
        "| 2       | Delete    | 0          | 1            | 2          | anonymous    |",
        "| 1       | Overwrite | 3          | 0            | 3          | anonymous    |",
        "+---------+-----------+------------+--------------+------------+--------------+",
    ];
    assert_eq!(history, expected);
    assert_eq!(
        update(&server, "RESTORE TABLE notes TO VERSION 1")
            .await
            .unwrap(),
        3
    );
    assert_eq!(count(&server, "SELECT count(*) FROM notes").await, 3);
    assert_eq!(
        count(&server, "SELECT max(version) FROM table_history('notes')").await,
        3
    );
    let mut client = server.client().await;
    let err = client
        .execute_update("RESTORE TABLE notes TO VERSION 42".into(), None)
        .await
        .unwrap_err();
    assert_eq!(code(&err), Code::NotFound, "{err}");
    // A MERGE is committed by Lakehouse itself, recording the user.
    update(
        &server,
        "MERGE INTO notes USING (SELECT 1 AS id, 'ALPHA' AS b) s ON notes.id = s.id \
         WHEN MATCHED THEN UPDATE SET body = s.b",
    )
    .await
    .unwrap();
    assert_eq!(
        rows(
            &server,
            "SELECT operation, committed_by FROM table_history('notes') LIMIT 1"
        )
        .await,
        [
            "+-----------+--------------+",
            "| operation | committed_by |",
            "+-----------+--------------+",
            "| Update    | anonymous    |",
            "+-----------+--------------+",
        ]
    );
}
