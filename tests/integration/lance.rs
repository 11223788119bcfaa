//! Lance tables in the catalog: created by ingest with `lakehouse.table_format = lance`,
//! appended by ingest and INSERT (one Lance commit each), read, filtered and joined with
//! Parquet tables in the same session, listed by GetTables, kept across restarts.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, AsArray, FixedSizeListArray, Float32Array, Int32Array, Int64Array, RecordBatch,
    StringArray,
};
use arrow::datatypes::{DataType, Field, Schema};
use arrow_flight::sql::CommandGetTables;
use lakehouse_catalog::{TableRef, VectorMetric, WriteMode};
use lakehouse_tests::{
    TestServer, code, column_i64, fetch, ingest_command, open_catalog, people, query, scalar_i64,
    write,
};
use tonic::Code;

const DIM: i32 = 4;

fn vectors(rows: &[[f32; 4]], item_type: DataType) -> ArrayRef {
    let values: Vec<f32> = rows.iter().flatten().copied().collect();
    let item = Arc::new(Field::new("item", item_type.clone(), true));
    let values: ArrayRef = match item_type {
        DataType::Float32 => Arc::new(Float32Array::from(values)),
        _ => Arc::new(Int32Array::from(
            values.iter().map(|v| *v as i32).collect::<Vec<_>>(),
        )),
    };
    Arc::new(FixedSizeListArray::new(item, DIM, values, None))
}

fn docs(ids: &[i64], item_type: DataType) -> RecordBatch {
    let rows: Vec<[f32; 4]> = ids.iter().map(|&i| [i as f32, 1.0, 0.0, 0.0]).collect();
    let bodies: Vec<String> = ids.iter().map(|i| format!("doc {i}")).collect();
    RecordBatch::try_from_iter(vec![
        ("id", Arc::new(Int64Array::from(ids.to_vec())) as ArrayRef),
        ("body", Arc::new(StringArray::from(bodies))),
        ("embedding", vectors(&rows, item_type)),
    ])
    .unwrap()
}

const LANCE: &[(&str, &str)] = &[
    ("lakehouse.table_format", "lance"),
    ("lakehouse.vector.model", "all-minilm"),
];

async fn lance_version(server: &TestServer, table: &str) -> u64 {
    let catalog = open_catalog(&server.storage()).await;
    let manifest = catalog
        .table(&TableRef::new("public", table).unwrap())
        .await
        .unwrap();
    let lance = manifest.lance.clone().expect("a Lance table");
    let store = lakehouse_vector::table::LanceStore::new(catalog.location());
    store.open(&lance.location).await.unwrap().version().version
}

#[tokio::test]
async fn lance_tables_are_created_appended_read_joined_and_listed() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let rows = client
        .execute_ingest(
            ingest_command("docs", true, LANCE),
            futures::stream::iter([Ok(docs(&[1, 2, 3], DataType::Float32))]),
        )
        .await
        .unwrap();
    assert_eq!(rows, 3);

    // The catalog records the table, its location and vector column; the rows are Lance's.
    let catalog = open_catalog(&server.storage()).await;
    let manifest = catalog
        .table(&TableRef::new("public", "docs").unwrap())
        .await
        .unwrap();
    let lance = manifest.lance.clone().unwrap();
    assert!(lance.location.starts_with("tables/public/docs/lance/"));
    assert!(manifest.files.is_empty());
    assert_eq!(lance.vector_columns.len(), 1);
    let column = &lance.vector_columns[0];
    assert_eq!(
        (
            column.name.as_str(),
            column.dimension,
            column.metric,
            column.model.as_deref()
        ),
        ("embedding", 4, VectorMetric::Cosine, Some("all-minilm"))
    );
    assert!(server.storage().path().join(&lance.location).is_dir());
    assert_eq!(lance_version(&server, "docs").await, 1);

    // Appends: ingest without options, and INSERT; each one Lance commit.
    let rows = client
        .execute_ingest(
            ingest_command("docs", false, &[]),
            futures::stream::iter([Ok(docs(&[4, 5], DataType::Float32))]),
        )
        .await
        .unwrap();
    assert_eq!(rows, 2);
    assert_eq!(lance_version(&server, "docs").await, 2);
    let inserted = client
        .execute_update(
            "INSERT INTO docs SELECT id + 10, body, embedding FROM docs WHERE id <= 2".into(),
            None,
        )
        .await
        .unwrap();
    assert_eq!(inserted, 2);
    assert_eq!(lance_version(&server, "docs").await, 3);

    // Read, filter, aggregate and join with a Parquet table in one query.
    let got = query(&mut client, "SELECT id FROM docs WHERE id > 2 ORDER BY id")
        .await
        .unwrap();
    assert_eq!(column_i64(&got, "id"), [3, 4, 5, 11, 12]);
    write(&catalog, "people", WriteMode::Create, people(0..6))
        .await
        .unwrap();
    let joined = query(
        &mut client,
        "SELECT d.id FROM docs d JOIN people p ON p.id = d.id ORDER BY d.id",
    )
    .await
    .unwrap();
    assert_eq!(column_i64(&joined, "id"), [1, 2, 3, 4, 5]);
    assert_eq!(
        scalar_i64(
            &query(&mut client, "SELECT count(*) FROM docs")
                .await
                .unwrap()
        ),
        7
    );

    // GetTables lists it with its vector column.
    let info = client
        .get_tables(CommandGetTables {
            include_schema: true,
            table_name_filter_pattern: Some("docs".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let tables = fetch(&mut client, info).await.unwrap();
    let schema_bytes = tables[0]
        .column_by_name("table_schema")
        .unwrap()
        .as_binary::<i32>()
        .value(0)
        .to_vec();
    let schema: Schema = arrow::ipc::convert::try_schema_from_ipc_buffer(&schema_bytes).unwrap();
    assert!(matches!(
        schema.field_with_name("embedding").unwrap().data_type(),
        DataType::FixedSizeList(_, 4)
    ));

    // Restart: still there.
    let storage = server.storage();
    server.stop().await;
    let server = TestServer::start_on(storage, |_| {}).await;
    let mut client = server.client().await;
    assert_eq!(
        scalar_i64(
            &query(&mut client, "SELECT count(*) FROM docs")
                .await
                .unwrap()
        ),
        7
    );
}

#[tokio::test]
async fn bad_lance_writes_are_refused_and_change_nothing() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    client
        .execute_ingest(
            ingest_command("docs", true, LANCE),
            futures::stream::iter([Ok(docs(&[1], DataType::Float32))]),
        )
        .await
        .unwrap();

    // An append with other columns: refused by Lance, nothing committed.
    let other =
        RecordBatch::try_from_iter(vec![("x", Arc::new(Int64Array::from(vec![1])) as ArrayRef)])
            .unwrap();
    let err = client
        .execute_ingest(
            ingest_command("docs", false, &[]),
            futures::stream::iter([Ok(other)]),
        )
        .await
        .unwrap_err();
    assert_ne!(code(&err), Code::Ok);
    assert_eq!(lance_version(&server, "docs").await, 1);

    // Create over an existing table.
    let err = client
        .execute_ingest(
            ingest_command("docs", true, LANCE),
            futures::stream::iter([Ok(docs(&[2], DataType::Float32))]),
        )
        .await
        .unwrap_err();
    assert_eq!(code(&err), Code::AlreadyExists, "{err}");

    // Vectors must be Float32; the format must be known.
    let err = client
        .execute_ingest(
            ingest_command("ints", true, LANCE),
            futures::stream::iter([Ok(docs(&[1], DataType::Int32))]),
        )
        .await
        .unwrap_err();
    assert_eq!(code(&err), Code::InvalidArgument, "{err}");
    assert!(err.to_string().contains("embedding"), "{err}");
    let err = client
        .execute_ingest(
            ingest_command("x", true, &[("lakehouse.table_format", "orc")]),
            futures::stream::iter([Ok(docs(&[1], DataType::Float32))]),
        )
        .await
        .unwrap_err();
    assert_eq!(code(&err), Code::InvalidArgument, "{err}");
    let missing = query(&mut client, "SELECT * FROM ints").await.unwrap_err();
    assert_eq!(code(&missing), Code::NotFound);

    // Drop, then create again: a new dataset location.
    let catalog = open_catalog(&server.storage()).await;
    let table = TableRef::new("public", "docs").unwrap();
    let first = catalog.table(&table).await.unwrap().lance.clone().unwrap();
    client
        .execute_update("DROP TABLE docs".into(), None)
        .await
        .unwrap();
    client
        .execute_ingest(
            ingest_command("docs", true, LANCE),
            futures::stream::iter([Ok(docs(&[7, 8], DataType::Float32))]),
        )
        .await
        .unwrap();
    let second = catalog.table(&table).await.unwrap().lance.clone().unwrap();
    assert_ne!(first.location, second.location);
    assert_eq!(
        column_i64(
            &query(&mut client, "SELECT id FROM docs ORDER BY id")
                .await
                .unwrap(),
            "id"
        ),
        [7, 8]
    );
}
