//! `CommandStatementIngest` through arrow-flight's Flight SQL client (what ADBC sends).

use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, BinaryViewArray, Int64Array, RecordBatch, StringViewArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow_flight::error::FlightError;
use arrow_flight::sql::{
    CommandGetTables, CommandStatementIngest, TableDefinitionOptions, TableExistsOption,
    TableNotExistOption,
};
use lakehouse_tests::{TestServer, code, fetch, people, query, scalar_i64};
use tonic::Code;

/// ADBC's ingest modes as TableDefinitionOptions.
fn mode(name: &str) -> TableDefinitionOptions {
    let (not_exist, exists) = match name {
        "create" => (TableNotExistOption::Create, TableExistsOption::Fail),
        "append" => (TableNotExistOption::Fail, TableExistsOption::Append),
        "replace" => (TableNotExistOption::Create, TableExistsOption::Replace),
        "create_append" => (TableNotExistOption::Create, TableExistsOption::Append),
        other => panic!("{other}"),
    };
    TableDefinitionOptions {
        if_not_exist: not_exist as i32,
        if_exists: exists as i32,
    }
}

fn command(table: &str, mode_name: &str) -> CommandStatementIngest {
    CommandStatementIngest {
        table_definition_options: Some(mode(mode_name)),
        table: table.to_string(),
        ..Default::default()
    }
}

async fn ingest(
    server: &TestServer,
    cmd: CommandStatementIngest,
    batches: Vec<RecordBatch>,
) -> Result<i64, FlightError> {
    let mut client = server.client().await;
    let stream = futures::stream::iter(batches.into_iter().map(Ok));
    client.execute_ingest(cmd, stream).await
}

async fn count(server: &TestServer, table: &str) -> i64 {
    let mut client = server.client().await;
    scalar_i64(
        &query(&mut client, &format!("SELECT count(*) FROM {table}"))
            .await
            .unwrap(),
    )
}

#[tokio::test]
async fn ingest_modes_create_append_replace_create_append() {
    let server = TestServer::start().await;
    assert_eq!(
        ingest(&server, command("t", "create"), vec![people(0..10)])
            .await
            .unwrap(),
        10
    );
    assert_eq!(count(&server, "t").await, 10);

    let err = ingest(&server, command("t", "create"), vec![people(0..1)])
        .await
        .unwrap_err();
    assert_eq!(code(&err), Code::AlreadyExists, "{err}");

    let batches = vec![people(10..15), people(15..25)];
    assert_eq!(
        ingest(&server, command("t", "append"), batches)
            .await
            .unwrap(),
        15
    );
    assert_eq!(count(&server, "t").await, 25);

    assert_eq!(
        ingest(&server, command("t", "replace"), vec![people(0..3)])
            .await
            .unwrap(),
        3
    );
    assert_eq!(count(&server, "t").await, 3);

    assert_eq!(
        ingest(&server, command("u", "create_append"), vec![people(0..4)])
            .await
            .unwrap(),
        4
    );
    assert_eq!(
        ingest(&server, command("u", "create_append"), vec![people(4..6)])
            .await
            .unwrap(),
        2
    );
    assert_eq!(count(&server, "u").await, 6);

    // Replace into a missing table creates it.
    assert_eq!(
        ingest(&server, command("v", "replace"), vec![people(0..2)])
            .await
            .unwrap(),
        2
    );

    // Another schema: named in the command.
    let cmd = CommandStatementIngest {
        schema: Some("staging".into()),
        ..command("t", "create")
    };
    assert_eq!(ingest(&server, cmd, vec![people(0..7)]).await.unwrap(), 7);
    assert_eq!(count(&server, "staging.t").await, 7);
    assert_eq!(count(&server, "public.t").await, 3);
}

#[tokio::test]
async fn bad_ingests_are_refused_and_write_nothing() {
    let server = TestServer::start().await;
    ingest(&server, command("t", "create"), vec![people(0..5)])
        .await
        .unwrap();
    let files_before = std::fs::read_dir(server.storage().path().join("tables/public/t/data"))
        .unwrap()
        .count();

    // Append with other columns: the column-level difference, nothing written.
    let other = RecordBatch::try_from_iter(vec![
        ("id", Arc::new(StringViewArray::from(vec!["x"])) as ArrayRef),
        ("extra", Arc::new(Int64Array::from(vec![1])) as ArrayRef),
    ])
    .unwrap();
    let err = ingest(&server, command("t", "append"), vec![other])
        .await
        .unwrap_err();
    assert_eq!(code(&err), Code::InvalidArgument);
    let message = err.to_string();
    assert!(
        message.contains("column `id`: table has Int64, data has Utf8"),
        "{message}"
    );
    assert!(
        message.contains("column `name` (Utf8) is missing from the data"),
        "{message}"
    );
    assert!(
        message.contains("column `extra` (Int64) is not in the table"),
        "{message}"
    );
    let files_after = std::fs::read_dir(server.storage().path().join("tables/public/t/data"))
        .unwrap()
        .count();
    assert_eq!(files_before, files_after);
    assert_eq!(count(&server, "t").await, 5);

    // Append to a missing table.
    let err = ingest(&server, command("missing", "append"), vec![people(0..1)])
        .await
        .unwrap_err();
    assert_eq!(code(&err), Code::NotFound, "{err}");

    // Unsupported options and bad names.
    let cmd = CommandStatementIngest {
        temporary: true,
        ..command("tmp", "create")
    };
    let err = ingest(&server, cmd, vec![people(0..1)]).await.unwrap_err();
    assert_eq!(code(&err), Code::InvalidArgument);
    assert!(err.to_string().contains("temporary"), "{err}");
    let cmd = CommandStatementIngest {
        catalog: Some("elsewhere".into()),
        ..command("x", "create")
    };
    let err = ingest(&server, cmd, vec![people(0..1)]).await.unwrap_err();
    assert_eq!(code(&err), Code::InvalidArgument);
    let err = ingest(&server, command("bad/name", "create"), vec![people(0..1)])
        .await
        .unwrap_err();
    assert_eq!(code(&err), Code::InvalidArgument);
    assert!(err.to_string().contains("invalid table name"), "{err}");

    // A null in a NOT NULL column aborts the write.
    let nulls = RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("name", DataType::Utf8, true),
        ])),
        vec![
            Arc::new(Int64Array::from(vec![Some(1), None])),
            Arc::new(arrow::array::StringArray::from(vec!["a", "b"])),
        ],
    )
    .unwrap();
    let err = ingest(&server, command("t", "append"), vec![nulls])
        .await
        .unwrap_err();
    assert_eq!(code(&err), Code::InvalidArgument);
    assert!(err.to_string().contains("NOT NULL"), "{err}");
    assert_eq!(count(&server, "t").await, 5);
}

#[tokio::test]
async fn view_types_are_normalized_at_ingest() {
    let server = TestServer::start().await;
    let batch = RecordBatch::try_from_iter(vec![
        (
            "s",
            Arc::new(StringViewArray::from(vec!["a", "b"])) as ArrayRef,
        ),
        (
            "b",
            Arc::new(BinaryViewArray::from(vec![b"x".as_ref(), b"y"])) as ArrayRef,
        ),
    ])
    .unwrap();
    ingest(&server, command("views", "create"), vec![batch])
        .await
        .unwrap();

    let mut client = server.client().await;
    let result = query(&mut client, "SELECT s, b FROM views ORDER BY s")
        .await
        .unwrap();
    assert_eq!(result[0].schema().field(0).data_type(), &DataType::Utf8);
    assert_eq!(result[0].schema().field(1).data_type(), &DataType::Binary);
    assert_eq!(result[0].column(0).as_string::<i32>().value(1), "b");

    let info = client
        .get_tables(CommandGetTables {
            include_schema: true,
            ..Default::default()
        })
        .await
        .unwrap();
    let tables = fetch(&mut client, info).await.unwrap();
    let ipc = tables[0].column(4).as_binary::<i32>().value(0).to_vec();
    let schema = arrow::ipc::convert::try_schema_from_ipc_buffer(&ipc).unwrap();
    assert_eq!(schema.field(0).data_type(), &DataType::Utf8);
    assert_eq!(schema.field(1).data_type(), &DataType::Binary);
}

#[tokio::test]
async fn large_and_empty_ingests_stream() {
    let server = TestServer::start().await;
    // 300k rows in 30 batches, streamed into Parquet as they arrive.
    let batches: Vec<_> = (0..30)
        .map(|i| people(i * 10_000..(i + 1) * 10_000))
        .collect();
    assert_eq!(
        ingest(&server, command("big", "create"), batches)
            .await
            .unwrap(),
        300_000
    );
    let mut client = server.client().await;
    let sum = query(&mut client, "SELECT sum(id) FROM big").await.unwrap();
    assert_eq!(scalar_i64(&sum), (0..300_000i64).sum::<i64>());

    // A stream with a schema and no rows creates an empty table with that schema.
    let mut client = server.client().await;
    let schema = people(0..1).schema();
    let stream = arrow_flight::encode::FlightDataEncoderBuilder::new()
        .with_schema(Arc::clone(&schema))
        .with_flight_descriptor(Some(arrow_flight::FlightDescriptor::new_cmd({
            use arrow_flight::sql::ProstMessageExt;
            use prost::Message;
            command("empty", "create").as_any().encode_to_vec()
        })))
        .build(futures::stream::empty());
    use futures::TryStreamExt;
    let data: Vec<_> = stream.try_collect().await.unwrap();
    let mut results = client.do_put(futures::stream::iter(data)).await.unwrap();
    while results.message().await.unwrap().is_some() {}
    assert_eq!(count(&server, "empty").await, 0);
    let result = query(&mut client, "SELECT * FROM empty").await.unwrap();
    assert!(result.iter().all(|b| b.num_rows() == 0));
}
