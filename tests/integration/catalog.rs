//! The catalog through a real server: commits and read-back, restart, racing writers, another
//! process's commits, rejected appends, and files of failed commits.

use std::time::Duration;

use lakehouse_catalog::{Change, Error, Operation, TableRef, Version, WriteMode};
use lakehouse_tests::{TestServer, code, open_catalog, people, query, scalar_i64, write};
use sha2::{Digest, Sha256};

fn data_files(dir: &std::path::Path, table: &str) -> Vec<std::path::PathBuf> {
    let data = dir.join("tables/public").join(table).join("data");
    let mut files: Vec<_> = std::fs::read_dir(&data)
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    files.sort();
    files
}

#[tokio::test]
async fn commit_and_read_back() {
    let server = TestServer::start().await;
    let storage = server.storage();
    let catalog = open_catalog(&storage).await;
    assert_eq!(
        write(&catalog, "people", WriteMode::Create, people(0..100))
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        write(&catalog, "people", WriteMode::Append, people(100..150))
            .await
            .unwrap(),
        2
    );

    let mut client = server.client().await;
    let rows = query(&mut client, "SELECT count(*), sum(id) FROM people")
        .await
        .unwrap();
    assert_eq!(scalar_i64(&[rows[0].project(&[0]).unwrap()]), 150);

    // The manifest describes the files exactly: paths, sizes, row counts and content hashes.
    let table = TableRef::new("public", "people").unwrap();
    let manifest = catalog.table(&table).await.unwrap();
    assert_eq!(manifest.version, Version(2));
    assert_eq!(manifest.operation, Operation::Append);
    assert_eq!(manifest.total_rows, 150);
    assert_eq!(manifest.files.len(), 2);
    for file in &manifest.files {
        let bytes = std::fs::read(storage.path().join(&file.path)).unwrap();
        assert_eq!(bytes.len() as u64, file.size_bytes);
        assert_eq!(hex(&Sha256::digest(&bytes)), file.sha256);
    }
    assert_eq!(
        manifest.files.iter().map(|f| f.rows).collect::<Vec<_>>(),
        [100, 50]
    );
    assert!(manifest.schema.fingerprint().starts_with("sha256:"));
    let v1 = catalog.table_version(&table, Version(1)).await.unwrap();
    assert_eq!((v1.operation, v1.total_rows), (Operation::Create, 100));
    let json = std::fs::read_to_string(
        storage
            .path()
            .join("tables/public/people/_manifests/00000000000000000002.json"),
    )
    .unwrap();
    assert!(json.contains("\"format_version\": 2"), "{json}");
    assert!(json.contains("\"row_groups\": ["), "{json}");
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn restart_rebuilds_the_catalog_from_storage_alone() {
    let server = TestServer::start().await;
    let storage = server.storage();
    {
        let catalog = open_catalog(&storage).await;
        write(&catalog, "people", WriteMode::Create, people(0..10))
            .await
            .unwrap();
        write(&catalog, "people", WriteMode::Append, people(10..15))
            .await
            .unwrap();
        write(&catalog, "other", WriteMode::Create, people(0..2))
            .await
            .unwrap();
    }
    server.stop().await;

    let server = TestServer::start_on(storage, |_| {}).await;
    let mut client = server.client().await;
    let count = query(&mut client, "SELECT count(*) FROM people")
        .await
        .unwrap();
    assert_eq!(scalar_i64(&count), 15);
    let count = query(&mut client, "SELECT count(*) FROM other")
        .await
        .unwrap();
    assert_eq!(scalar_i64(&count), 2);
}

#[tokio::test]
async fn a_running_server_sees_commits_of_another_process_at_its_next_query() {
    let server = TestServer::start().await;
    let other_process = open_catalog(&server.storage()).await;
    let mut client = server.client().await;

    let err = query(&mut client, "SELECT * FROM people")
        .await
        .unwrap_err();
    assert_eq!(code(&err), tonic::Code::NotFound);

    write(&other_process, "people", WriteMode::Create, people(0..3))
        .await
        .unwrap();
    let count = query(&mut client, "SELECT count(*) FROM people")
        .await
        .unwrap();
    assert_eq!(scalar_i64(&count), 3);

    write(&other_process, "people", WriteMode::Append, people(3..10))
        .await
        .unwrap();
    let count = query(&mut client, "SELECT count(*) FROM people")
        .await
        .unwrap();
    assert_eq!(scalar_i64(&count), 10);
}

#[tokio::test]
async fn racing_writers_one_wins_the_version_the_other_gets_a_conflict() {
    let dir = tempfile::tempdir().unwrap();
    let a = open_catalog(&dir).await;
    let b = open_catalog(&dir).await;
    write(&a, "people", WriteMode::Create, people(0..1))
        .await
        .unwrap();
    let table = TableRef::new("public", "people").unwrap();
    let head = b.table(&table).await.unwrap();

    // Both build version 2 on version 1; exactly one publish succeeds.
    let mut files = Vec::new();
    for catalog in [&a, &b] {
        let mut writer = catalog.data_writer(&table, head.arrow_schema(), None);
        writer.write(&people(1..2)).await.unwrap();
        files.push(writer.finish().await.unwrap());
    }
    let change = |files: &Vec<_>| Change::Append {
        schema: head.arrow_schema(),
        files: files.clone(),
    };
    let first = a
        .commit_at(&table, Some(Version(1)), change(&files[0]))
        .await;
    let second = b
        .commit_at(&table, Some(Version(1)), change(&files[1]))
        .await;
    assert_eq!(first.unwrap().version, Version(2));
    match second {
        Err(Error::Conflict { version, .. }) => assert_eq!(version, Version(2)),
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(b.table(&table).await.unwrap().total_rows, 2);

    // `commit` re-applies an append on the new head: concurrent appends all land.
    let (x, y) = tokio::join!(
        write(&a, "people", WriteMode::Append, people(10..20)),
        write(&b, "people", WriteMode::Append, people(20..40)),
    );
    let mut versions = vec![x.unwrap(), y.unwrap()];
    versions.sort();
    assert_eq!(versions, [3, 4]);
    assert_eq!(a.table(&table).await.unwrap().total_rows, 32);

    // Two creates of the same new table: one wins, the other is told the table exists.
    let (x, y) = tokio::join!(
        write(&a, "fresh", WriteMode::Create, people(0..1)),
        write(&b, "fresh", WriteMode::Create, people(0..1)),
    );
    let outcomes = [x, y];
    assert_eq!(
        outcomes.iter().filter(|r| r.is_ok()).count(),
        1,
        "{outcomes:?}"
    );
    assert!(
        outcomes
            .iter()
            .any(|r| matches!(r, Err(Error::TableExists(_)))),
        "{outcomes:?}"
    );
}

#[tokio::test]
async fn a_mismatched_append_is_rejected_with_column_differences_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = open_catalog(&dir).await;
    write(&catalog, "people", WriteMode::Create, people(0..5))
        .await
        .unwrap();
    let before = data_files(dir.path(), "people");

    use arrow::array::{Float64Array, RecordBatch};
    use arrow::datatypes::{DataType, Field, Schema};
    let other = RecordBatch::try_new(
        std::sync::Arc::new(Schema::new(vec![
            Field::new("id", DataType::Float64, false),
            Field::new("age", DataType::Float64, true),
        ])),
        vec![
            std::sync::Arc::new(Float64Array::from(vec![1.0])),
            std::sync::Arc::new(Float64Array::from(vec![2.0])),
        ],
    )
    .unwrap();
    let err = write(&catalog, "people", WriteMode::Append, other)
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, Error::SchemaMismatch { .. }), "{err:?}");
    assert!(
        message.contains("column `id`: table has Int64, data has Float64"),
        "{message}"
    );
    assert!(
        message.contains("column `name` (Utf8) is missing from the data"),
        "{message}"
    );
    assert!(
        message.contains("column `age` (Float64) is not in the table"),
        "{message}"
    );
    assert_eq!(data_files(dir.path(), "people"), before);
    let table = TableRef::new("public", "people").unwrap();
    assert_eq!(catalog.table(&table).await.unwrap().version, Version(1));

    // Modes are checked before anything is written.
    let err = write(&catalog, "people", WriteMode::Create, people(0..1))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::TableExists(_)), "{err:?}");
    let err = write(&catalog, "missing", WriteMode::Append, people(0..1))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::TableNotFound(_)), "{err:?}");
    assert!(data_files(dir.path(), "missing").is_empty());
    let err = TableRef::new("public", "../escape").unwrap_err();
    assert!(err.to_string().contains("invalid table name"), "{err}");
}

#[tokio::test]
async fn files_of_a_failed_commit_are_never_read_and_cleanup_removes_them() {
    let server = TestServer::start().await;
    let storage = server.storage();
    let catalog = open_catalog(&storage).await;
    write(&catalog, "people", WriteMode::Create, people(0..10))
        .await
        .unwrap();
    let committed = data_files(storage.path(), "people");

    // A writer that "crashes" after writing its data file, before publishing a manifest.
    let table = TableRef::new("public", "people").unwrap();
    let head = catalog.table(&table).await.unwrap();
    let mut writer = catalog.data_writer(&table, head.arrow_schema(), None);
    writer.write(&people(100..200)).await.unwrap();
    let orphan = writer.finish().await.unwrap();
    assert_eq!(data_files(storage.path(), "people").len(), 2);

    let mut client = server.client().await;
    let count = query(&mut client, "SELECT count(*) FROM people")
        .await
        .unwrap();
    assert_eq!(scalar_i64(&count), 10, "the orphan file must not be read");

    // Young orphans are kept (a commit may still be in progress) ...
    let report = catalog
        .cleanup(Duration::from_secs(3600), false)
        .await
        .unwrap();
    assert_eq!((report.kept_recent, report.deleted.len()), (1, 0));
    // ... a dry run only reports ...
    let report = catalog.cleanup(Duration::ZERO, true).await.unwrap();
    assert_eq!(report.deleted, [orphan[0].path.clone()]);
    assert_eq!(data_files(storage.path(), "people").len(), 2);
    // ... and old ones are removed, committed files untouched.
    let report = catalog.cleanup(Duration::ZERO, false).await.unwrap();
    assert_eq!(report.deleted, [orphan[0].path.clone()]);
    assert_eq!(report.bytes_deleted, orphan[0].size_bytes);
    assert_eq!(data_files(storage.path(), "people"), committed);
    let count = query(&mut client, "SELECT count(*) FROM people")
        .await
        .unwrap();
    assert_eq!(scalar_i64(&count), 10);
}

#[tokio::test]
async fn a_failed_write_deletes_what_it_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = open_catalog(&dir).await;
    write(&catalog, "people", WriteMode::Create, people(0..5))
        .await
        .unwrap();
    let before = data_files(dir.path(), "people");
    let table = TableRef::new("public", "people").unwrap();
    let schema = people(0..1).schema();
    // The stream fails after one good batch: nothing is committed and the file is removed.
    let batches = futures::stream::iter([
        Ok(people(5..10)),
        Err(Error::InvalidData {
            location: "input".into(),
            message: "broken".into(),
        }),
    ]);
    let err = catalog
        .write_stream(&table, WriteMode::Append, &schema, None, batches)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("broken"), "{err}");
    assert_eq!(data_files(dir.path(), "people"), before);
    assert_eq!(catalog.table(&table).await.unwrap().version, Version(1));
}
