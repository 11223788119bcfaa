//! SQL writes through CommandStatementUpdate (and as queries, as ADBC's DB-API sends them): each
//! statement checked against the new catalog version and the affected rows.

use arrow::array::AsArray;
use arrow::datatypes::{DataType, UInt64Type};
use lakehouse_catalog::{Operation, SchemaName, TableRef, Version};
use lakehouse_tests::{TestServer, code, open_catalog, query, scalar_i64, update};
use tonic::Code;

#[tokio::test]
async fn create_insert_ctas_drop_and_schemas() {
    let server = TestServer::start().await;
    let catalog = open_catalog(&server.storage()).await;
    let t = TableRef::new("staging", "t").unwrap();

    assert_eq!(update(&server, "CREATE SCHEMA staging").await.unwrap(), 0);
    assert!(
        catalog
            .schemas()
            .await
            .unwrap()
            .contains(&SchemaName::new("staging").unwrap())
    );
    let err = update(&server, "CREATE SCHEMA staging").await.unwrap_err();
    assert_eq!(code(&err), Code::AlreadyExists);
    assert_eq!(
        update(&server, "CREATE SCHEMA IF NOT EXISTS staging")
            .await
            .unwrap(),
        0
    );

    assert_eq!(
        update(
            &server,
            "CREATE TABLE staging.t (id BIGINT NOT NULL, name VARCHAR, price DECIMAL(10, 2))"
        )
        .await
        .unwrap(),
        0
    );
    let m = catalog.table(&t).await.unwrap();
    assert_eq!(
        (m.version, m.operation, m.total_rows),
        (Version(1), Operation::Create, 0)
    );
    let schema = m.arrow_schema();
    assert_eq!(schema.field(0).data_type(), &DataType::Int64);
    assert!(!schema.field(0).is_nullable());
    assert_eq!(schema.field(1).data_type(), &DataType::Utf8);
    assert_eq!(schema.field(2).data_type(), &DataType::Decimal128(10, 2));

    let sql = "INSERT INTO staging.t VALUES (1, 'a', 1.50), (2, 'b', NULL)";
    assert_eq!(update(&server, sql).await.unwrap(), 2);
    let m = catalog.table(&t).await.unwrap();
    assert_eq!(
        (m.version, m.operation, m.total_rows),
        (Version(2), Operation::Append, 2)
    );

    let sql = "INSERT INTO staging.t (id, name) SELECT id + 10, upper(name) FROM staging.t";
    assert_eq!(update(&server, sql).await.unwrap(), 2);
    let m = catalog.table(&t).await.unwrap();
    assert_eq!((m.version, m.total_rows), (Version(3), 4));
    let mut client = server.client().await;
    let names = query(
        &mut client,
        "SELECT name FROM staging.t WHERE id > 10 ORDER BY id",
    )
    .await
    .unwrap();
    let names: Vec<_> = names[0]
        .column(0)
        .as_string::<i32>()
        .iter()
        .map(|s| s.unwrap())
        .collect();
    assert_eq!(names, ["A", "B"]);

    // CTAS, streamed from the query.
    let sql =
        "CREATE TABLE big AS SELECT value AS n, value % 7 AS bucket FROM generate_series(1, 50000)";
    assert_eq!(update(&server, sql).await.unwrap(), 50_000);
    let big = TableRef::new("public", "big").unwrap();
    assert_eq!(catalog.table(&big).await.unwrap().total_rows, 50_000);
    let err = update(&server, "CREATE TABLE big AS SELECT 1 AS x")
        .await
        .unwrap_err();
    assert_eq!(code(&err), Code::AlreadyExists);
    assert_eq!(
        update(&server, "CREATE TABLE IF NOT EXISTS big AS SELECT 1 AS x")
            .await
            .unwrap(),
        0
    );
    assert_eq!(catalog.table(&big).await.unwrap().version, Version(1));
    assert_eq!(
        update(&server, "CREATE OR REPLACE TABLE big AS SELECT 1 AS x")
            .await
            .unwrap(),
        1
    );
    let m = catalog.table(&big).await.unwrap();
    assert_eq!(
        (m.version, m.operation, m.total_rows),
        (Version(2), Operation::Replace, 1)
    );

    // DROP TABLE, DROP SCHEMA.
    assert_eq!(update(&server, "DROP TABLE big").await.unwrap(), 0);
    let err = query(&mut client, "SELECT * FROM big").await.unwrap_err();
    assert_eq!(code(&err), Code::NotFound);
    assert_eq!(
        code(&update(&server, "DROP TABLE big").await.unwrap_err()),
        Code::NotFound
    );
    assert_eq!(
        update(&server, "DROP TABLE IF EXISTS big").await.unwrap(),
        0
    );
    let err = update(&server, "DROP SCHEMA staging").await.unwrap_err();
    assert_eq!(code(&err), Code::FailedPrecondition);
    assert!(err.to_string().contains("holds tables t"), "{err}");
    assert_eq!(
        update(&server, "DROP SCHEMA staging CASCADE")
            .await
            .unwrap(),
        0
    );
    assert!(
        !catalog
            .schemas()
            .await
            .unwrap()
            .contains(&SchemaName::new("staging").unwrap())
    );
    assert_eq!(
        code(&update(&server, "DROP SCHEMA public").await.unwrap_err()),
        Code::FailedPrecondition
    );

    // A dropped table can be created again; its versions continue.
    assert_eq!(
        update(&server, "CREATE TABLE big AS SELECT 2 AS y")
            .await
            .unwrap(),
        1
    );
    assert_eq!(catalog.table(&big).await.unwrap().version, Version(4));
}

#[tokio::test]
async fn bad_writes_are_refused_and_change_nothing() {
    let server = TestServer::start().await;
    let catalog = open_catalog(&server.storage()).await;
    update(&server, "CREATE TABLE t (id BIGINT NOT NULL, name VARCHAR)")
        .await
        .unwrap();
    update(&server, "INSERT INTO t VALUES (1, 'a')")
        .await
        .unwrap();
    let t = TableRef::new("public", "t").unwrap();

    for (sql, expected, text) in [
        (
            "INSERT INTO t VALUES ('x', 'y')",
            Code::InvalidArgument,
            "x",
        ),
        (
            "INSERT INTO t VALUES (NULL, 'y')",
            Code::InvalidArgument,
            "non-nullable",
        ),
        ("INSERT INTO missing VALUES (1)", Code::NotFound, "missing"),
        (
            "UPDATE t SET name = 'b' RETURNING id",
            Code::InvalidArgument,
            "not supported",
        ),
        (
            "DELETE FROM t LIMIT 1",
            Code::InvalidArgument,
            "not supported",
        ),
        (
            "CREATE TABLE k2 (id BIGINT PRIMARY KEY) AS SELECT 1",
            Code::InvalidArgument,
            "PRIMARY KEY",
        ),
        ("SELECT 1", Code::InvalidArgument, "CommandStatementQuery"),
        ("CREATE TABL x", Code::InvalidArgument, "TABL"),
        (
            "CREATE VIEW v AS SELECT 1",
            Code::InvalidArgument,
            "not supported",
        ),
    ] {
        let err = update(&server, sql).await.unwrap_err();
        assert_eq!(code(&err), expected, "{sql}: {err}");
        assert!(err.to_string().contains(text), "{sql}: {err}");
    }
    let m = catalog.table(&t).await.unwrap();
    assert_eq!((m.version, m.total_rows), (Version(2), 1));
}

#[tokio::test]
async fn writes_sent_as_queries_or_prepared_statements_run_once() {
    let server = TestServer::start().await;
    let catalog = open_catalog(&server.storage()).await;
    let mut client = server.client().await;
    query(&mut client, "CREATE TABLE t (id BIGINT)")
        .await
        .unwrap();

    // As a query (ADBC DB-API): runs at GetFlightInfo; the ticket answers the count, and
    // redeeming it again does not write again.
    let info = client
        .execute("INSERT INTO t VALUES (1), (2), (3)".into(), None)
        .await
        .unwrap();
    for _ in 0..2 {
        let batches = lakehouse_tests::fetch(&mut client, info.clone())
            .await
            .unwrap();
        assert_eq!(batches[0].schema().field(0).name(), "count");
        assert_eq!(
            batches[0].column(0).as_primitive::<UInt64Type>().value(0),
            3
        );
    }
    let t = TableRef::new("public", "t").unwrap();
    assert_eq!(catalog.table(&t).await.unwrap().total_rows, 3);

    // As a prepared statement (JDBC): Create, then ExecuteUpdate.
    let mut prepared = client
        .prepare("INSERT INTO t VALUES (4)".into(), None)
        .await
        .unwrap();
    assert_eq!(prepared.dataset_schema().unwrap().field(0).name(), "count");
    assert_eq!(prepared.execute_update().await.unwrap(), 1);
    prepared.close().await.unwrap();
    assert_eq!(
        scalar_i64(&query(&mut client, "SELECT count(*) FROM t").await.unwrap()),
        4
    );
}

#[tokio::test]
async fn primary_keys_are_recorded_reported_and_enforced() {
    use arrow_flight::sql::CommandGetPrimaryKeys;
    let server = TestServer::start().await;
    let catalog = open_catalog(&server.storage()).await;
    let k = TableRef::new("public", "k").unwrap();
    assert_eq!(
        update(
            &server,
            "CREATE TABLE k (id BIGINT, name VARCHAR, PRIMARY KEY (id))"
        )
        .await
        .unwrap(),
        0
    );
    let m = catalog.table(&k).await.unwrap();
    assert_eq!(m.primary_key, ["id"]);
    assert!(!m.arrow_schema().field(0).is_nullable());
    assert_eq!(
        update(&server, "INSERT INTO k VALUES (1, 'a'), (2, 'b')")
            .await
            .unwrap(),
        2
    );
    let files = std::fs::read_dir(server.storage().path().join("tables/public/k/data"))
        .unwrap()
        .count();

    for (sql, key) in [
        ("INSERT INTO k VALUES (2, 'again')", "(id)=(2)"),
        ("INSERT INTO k VALUES (3, 'c'), (3, 'd')", "(id)=(3)"),
    ] {
        let err = update(&server, sql).await.unwrap_err();
        assert_eq!(code(&err), Code::AlreadyExists, "{sql}: {err}");
        assert!(
            err.to_string()
                .contains(&format!("duplicate primary key {key}")),
            "{sql}: {err}"
        );
    }
    let err = update(&server, "INSERT INTO k VALUES (NULL, 'x')")
        .await
        .unwrap_err();
    assert_eq!(code(&err), Code::InvalidArgument, "{err}");
    let m = catalog.table(&k).await.unwrap();
    assert_eq!((m.version, m.total_rows), (Version(2), 2));
    let after = std::fs::read_dir(server.storage().path().join("tables/public/k/data"))
        .unwrap()
        .count();
    assert_eq!(files, after, "refused inserts leave no files");
    assert_eq!(
        update(&server, "INSERT INTO k VALUES (3, 'c')")
            .await
            .unwrap(),
        1
    );

    // Bulk ingest (ADBC) into a keyed table is checked too.
    let mut client = server.client().await;
    let batch = arrow::array::RecordBatch::try_from_iter(vec![
        (
            "id",
            std::sync::Arc::new(arrow::array::Int64Array::from(vec![9, 1]))
                as arrow::array::ArrayRef,
        ),
        (
            "name",
            std::sync::Arc::new(arrow::array::StringArray::from(vec!["z", "dup"])) as _,
        ),
    ])
    .unwrap();
    let cmd = arrow_flight::sql::CommandStatementIngest {
        table: "k".into(),
        table_definition_options: Some(arrow_flight::sql::TableDefinitionOptions {
            if_not_exist: arrow_flight::sql::TableNotExistOption::Fail as i32,
            if_exists: arrow_flight::sql::TableExistsOption::Append as i32,
        }),
        ..Default::default()
    };
    let err = client
        .execute_ingest(cmd, futures::stream::iter([Ok(batch)]))
        .await
        .unwrap_err();
    assert_eq!(code(&err), Code::AlreadyExists, "{err}");

    // Composite keys, reported in key order.
    update(
        &server,
        "CREATE TABLE c (a INT, b VARCHAR, v INT, PRIMARY KEY (a, b))",
    )
    .await
    .unwrap();
    update(&server, "INSERT INTO c VALUES (1, 'x', 0), (1, 'y', 0)")
        .await
        .unwrap();
    let err = update(&server, "INSERT INTO c VALUES (1, 'x', 5)")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("(a, b)=(1, x)"), "{err}");
    let info = client
        .get_primary_keys(CommandGetPrimaryKeys {
            catalog: None,
            db_schema: Some("public".into()),
            table: "c".into(),
        })
        .await
        .unwrap();
    let rows = lakehouse_tests::fetch(&mut client, info).await.unwrap();
    let columns: Vec<_> = rows[0]
        .column(3)
        .as_string::<i32>()
        .iter()
        .map(|s| s.unwrap())
        .collect();
    assert_eq!(columns, ["a", "b"]);
    assert_eq!(rows[0].column(4).as_string::<i32>().value(0), "c_pkey");
    let sequence: Vec<i32> = rows[0]
        .column(5)
        .as_primitive::<arrow::datatypes::Int32Type>()
        .values()
        .to_vec();
    assert_eq!(sequence, [1, 2]);
}

#[tokio::test]
async fn external_parquet_is_registered_in_place_and_read_only() {
    let server = TestServer::start().await;
    let catalog = open_catalog(&server.storage()).await;
    let outside = tempfile::tempdir().unwrap();
    let dir = outside.path().join("ext");
    std::fs::create_dir_all(&dir).unwrap();
    for (i, ids) in [(0, 0..100), (1, 100..250)] {
        let batch = lakehouse_tests::people(ids);
        let file = std::fs::File::create(dir.join(format!("part-{i}.parquet"))).unwrap();
        let mut writer = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
    }
    let location = format!("file://{}/", dir.display());
    let sql = format!("CREATE EXTERNAL TABLE ext STORED AS PARQUET LOCATION '{location}'");
    assert_eq!(update(&server, &sql).await.unwrap(), 0);
    let ext = TableRef::new("public", "ext").unwrap();
    let m = catalog.table(&ext).await.unwrap();
    assert_eq!(m.external.as_deref(), Some(location.as_str()));
    assert_eq!((m.files.len(), m.total_rows), (2, 250));
    assert!(
        m.files.iter().all(|f| f.path.starts_with("file:///")),
        "{:?}",
        m.files
    );

    let mut client = server.client().await;
    let sum = query(&mut client, "SELECT sum(id) FROM ext WHERE name <> 'n0'")
        .await
        .unwrap();
    assert_eq!(scalar_i64(&sum), (1..250i64).sum::<i64>());

    // Writes are refused and write nothing; nothing was copied into storage.
    let err = update(&server, "INSERT INTO ext VALUES (1000, 'x')")
        .await
        .unwrap_err();
    assert_eq!(code(&err), Code::FailedPrecondition, "{err}");
    assert!(err.to_string().contains("read-only"), "{err}");
    assert!(
        !server
            .storage()
            .path()
            .join("tables/public/ext/data")
            .exists()
    );
    assert_eq!(catalog.table(&ext).await.unwrap().version, Version(1));

    // Dropping unregisters; the files stay.
    assert_eq!(update(&server, "DROP TABLE ext").await.unwrap(), 0);
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 2);

    let empty = outside.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let sql = format!(
        "CREATE EXTERNAL TABLE e2 STORED AS PARQUET LOCATION 'file://{}/'",
        empty.display()
    );
    let err = update(&server, &sql).await.unwrap_err();
    assert_eq!(code(&err), Code::InvalidArgument, "{err}");
    assert!(err.to_string().contains("no Parquet files"), "{err}");
    let sql = format!("CREATE EXTERNAL TABLE e3 STORED AS CSV LOCATION '{location}'");
    let err = update(&server, &sql).await.unwrap_err();
    assert!(err.to_string().contains("Parquet only"), "{err}");
}

#[tokio::test]
async fn the_schema_header_sets_the_default_schema() {
    let server = TestServer::start().await;
    update(&server, "CREATE SCHEMA staging").await.unwrap();
    update(&server, "CREATE TABLE staging.t AS SELECT 1 AS x")
        .await
        .unwrap();
    update(&server, "CREATE TABLE t AS SELECT 2 AS x")
        .await
        .unwrap();

    let mut client = server.client().await;
    assert_eq!(
        scalar_i64(
            &query(&mut client, "SELECT CAST(x AS BIGINT) FROM t")
                .await
                .unwrap()
        ),
        2
    );
    client.set_header("x-lakehouse-schema", "staging");
    assert_eq!(
        scalar_i64(
            &query(&mut client, "SELECT CAST(x AS BIGINT) FROM t")
                .await
                .unwrap()
        ),
        1
    );
    // Writes and ingest land in the chosen schema too.
    client
        .execute_update("CREATE TABLE u AS SELECT 3 AS y".into(), None)
        .await
        .unwrap();
    let catalog = open_catalog(&server.storage()).await;
    assert!(
        catalog
            .table(&TableRef::new("staging", "u").unwrap())
            .await
            .is_ok()
    );

    client.set_header("x-lakehouse-schema", "no/such");
    let err = query(&mut client, "SELECT 1").await.unwrap_err();
    assert_eq!(code(&err), Code::InvalidArgument, "{err}");
    assert!(err.to_string().contains("invalid schema name"), "{err}");
}

#[tokio::test]
async fn insert_overwrite_replaces_the_rows() {
    let server = TestServer::start().await;
    let catalog = open_catalog(&server.storage()).await;
    update(&server, "CREATE TABLE t (id BIGINT)").await.unwrap();
    update(&server, "INSERT INTO t VALUES (1), (2), (3)")
        .await
        .unwrap();
    assert_eq!(
        update(&server, "INSERT OVERWRITE t VALUES (9)")
            .await
            .unwrap(),
        1
    );
    let m = catalog
        .table(&TableRef::new("public", "t").unwrap())
        .await
        .unwrap();
    assert_eq!(
        (m.version, m.operation, m.total_rows),
        (Version(3), Operation::Replace, 1)
    );
}
