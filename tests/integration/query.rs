//! Queries through Flight SQL: statements, prepared statements, pinned versions, streaming
//! limits, wire types, errors, EXPLAIN, information_schema and the TPC-H sample.

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{DataType, Int64Type};
use arrow_flight::sql::{ActionClosePreparedStatementRequest, ProstMessageExt};
use arrow_flight::{Action, Ticket};
use futures::TryStreamExt;
use lakehouse_catalog::WriteMode;
use lakehouse_server::sample::{Sample, TPCH_TABLES};
use lakehouse_tests::{TestServer, code, fetch, open_catalog, people, query, scalar_i64, write};
use prost::Message;
use tonic::Code;

fn rows(batches: &[RecordBatch]) -> usize {
    batches.iter().map(|b| b.num_rows()).sum()
}

#[tokio::test]
async fn statement_query_streams_with_the_schema_flight_info_announced() {
    let server = TestServer::start().await;
    let catalog = open_catalog(&server.storage()).await;
    write(&catalog, "people", WriteMode::Create, people(0..20_000))
        .await
        .unwrap();
    let mut client = server.client().await;

    let info = client
        .execute(
            "SELECT id, name, id % 7 AS bucket FROM people WHERE id >= 5 ORDER BY id".into(),
            None,
        )
        .await
        .unwrap();
    let announced = info.clone().try_decode_schema().unwrap();
    let batches = fetch(&mut client, info).await.unwrap();
    assert_eq!(rows(&batches), 19_995);
    for batch in &batches {
        assert_eq!(
            batch.schema().as_ref(),
            &announced,
            "stream schema differs from FlightInfo"
        );
    }
    let first = batches[0].column(0).as_primitive::<Int64Type>().value(0);
    assert_eq!(first, 5);

    // An empty result still carries the schema.
    let info = client
        .execute("SELECT id FROM people WHERE id < 0".into(), None)
        .await
        .unwrap();
    let announced = info.clone().try_decode_schema().unwrap();
    let ticket = info.endpoint[0].ticket.clone().unwrap();
    let mut stream = client.do_get(ticket).await.unwrap();
    assert!(stream.try_next().await.unwrap().is_none());
    assert_eq!(stream.schema().map(|s| s.as_ref().clone()), Some(announced));

    // Our own client streams the same result.
    let mut ours = server.lakehouse_client().await;
    let batches = ours
        .query_collect("SELECT count(*) FROM people")
        .await
        .unwrap();
    assert_eq!(scalar_i64(&batches), 20_000);
}

#[tokio::test]
async fn prepared_statements_execute_repeatedly_and_close() {
    let server = TestServer::start().await;
    let catalog = open_catalog(&server.storage()).await;
    write(&catalog, "people", WriteMode::Create, people(0..10))
        .await
        .unwrap();
    let mut client = server.client().await;

    let mut prepared = client
        .prepare("SELECT count(*) AS n FROM people".into(), None)
        .await
        .unwrap();
    assert_eq!(prepared.dataset_schema().unwrap().field(0).name(), "n");
    let info = prepared.execute().await.unwrap();
    assert_eq!(scalar_i64(&fetch(&mut client, info).await.unwrap()), 10);
    // Each execution sees the newest data.
    write(&catalog, "people", WriteMode::Append, people(10..15))
        .await
        .unwrap();
    let info = prepared.execute().await.unwrap();
    assert_eq!(scalar_i64(&fetch(&mut client, info).await.unwrap()), 15);
    prepared.close().await.unwrap();

    // Preparing bad SQL fails at once; closing a garbage handle is InvalidArgument.
    let err = client.prepare("SELEC 1".into(), None).await.unwrap_err();
    assert_eq!(code(&err), Code::InvalidArgument);
    let close = ActionClosePreparedStatementRequest {
        prepared_statement_handle: vec![0xff, 0x01].into(),
    };
    let action = Action::new("ClosePreparedStatement", close.as_any().encode_to_vec());
    let err = client.do_action(action).await.unwrap_err();
    assert_eq!(code(&err), Code::InvalidArgument);
}

#[tokio::test]
async fn the_ticket_pins_the_versions_the_plan_was_made_against() {
    let server = TestServer::start().await;
    let catalog = open_catalog(&server.storage()).await;
    write(&catalog, "people", WriteMode::Create, people(0..10))
        .await
        .unwrap();
    let mut client = server.client().await;

    let info = client
        .execute("SELECT count(*) FROM people".into(), None)
        .await
        .unwrap();
    write(&catalog, "people", WriteMode::Append, people(10..30))
        .await
        .unwrap();
    write(&catalog, "people", WriteMode::Replace, people(0..1))
        .await
        .unwrap();
    assert_eq!(
        scalar_i64(&fetch(&mut client, info.clone()).await.unwrap()),
        10
    );
    // The ticket can be redeemed again, with the same answer.
    assert_eq!(scalar_i64(&fetch(&mut client, info).await.unwrap()), 10);
    // A new statement sees the newest version.
    let count = query(&mut client, "SELECT count(*) FROM people")
        .await
        .unwrap();
    assert_eq!(scalar_i64(&count), 1);
}

#[tokio::test]
async fn errors_carry_the_right_codes_and_messages() {
    let server = TestServer::start().await;
    let mut client = server.client().await;

    let err = query(&mut client, "SELECT * FROM nope").await.unwrap_err();
    assert_eq!(code(&err), Code::NotFound);
    assert!(
        err.to_string().contains("table public.nope not found"),
        "{err}"
    );

    let err = query(&mut client, "SELEC 1").await.unwrap_err();
    assert_eq!(code(&err), Code::InvalidArgument);
    assert!(err.to_string().contains("SELEC"), "{err}");

    let err = query(&mut client, "SELECT no_such_column FROM (SELECT 1 AS a)")
        .await
        .unwrap_err();
    assert_eq!(code(&err), Code::InvalidArgument);

    // Session statements are refused with a clear message.
    let err = query(&mut client, "SET datafusion.execution.batch_size = 1")
        .await
        .unwrap_err();
    assert_eq!(code(&err), Code::InvalidArgument, "{err}");
    assert!(err.to_string().contains("not supported"), "{err}");

    // Garbage tickets and handles are InvalidArgument, never a panic.
    let ticket = arrow_flight::sql::TicketStatementQuery {
        statement_handle: vec![0xff, 0xff, 0xff].into(),
    };
    let err = client
        .do_get(Ticket::new(ticket.as_any().encode_to_vec()))
        .await
        .map(|_| ())
        .unwrap_err();
    assert_eq!(code(&err), Code::InvalidArgument);
    let err = client
        .do_get(Ticket::new(b"not a command".to_vec()))
        .await
        .unwrap_err();
    assert_eq!(code(&err), Code::InvalidArgument);

    // The server is healthy after all that.
    let one = query(&mut client, "SELECT 1::BIGINT").await.unwrap();
    assert_eq!(scalar_i64(&one), 1);
}

#[tokio::test]
async fn explain_information_schema_and_show_tables_work() {
    let server = TestServer::start().await;
    let catalog = open_catalog(&server.storage()).await;
    write(&catalog, "people", WriteMode::Create, people(0..3))
        .await
        .unwrap();
    let mut client = server.client().await;

    let plan = query(&mut client, "EXPLAIN SELECT * FROM people WHERE id = 1")
        .await
        .unwrap();
    let text: Vec<String> = plan
        .iter()
        .flat_map(|b| {
            b.column(1)
                .as_string::<i32>()
                .iter()
                .map(|s| s.unwrap().to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(
        text.iter().any(|t| t.contains("DataSourceExec")),
        "{text:?}"
    );

    let tables = query(
        &mut client,
        "SELECT table_catalog, table_schema, table_name FROM information_schema.tables \
         WHERE table_schema = 'public'",
    )
    .await
    .unwrap();
    assert_eq!(rows(&tables), 1);
    assert_eq!(tables[0].column(2).as_string::<i32>().value(0), "people");

    let show = query(&mut client, "SHOW TABLES").await.unwrap();
    assert!(rows(&show) >= 1);
    let columns = query(
        &mut client,
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'people' ORDER BY ordinal_position",
    )
    .await
    .unwrap();
    assert_eq!(rows(&columns), 2);
}

#[tokio::test]
async fn no_view_types_and_no_oversized_messages_on_the_wire() {
    let server = TestServer::start().await;
    let mut client = server.client().await;

    let batches = query(
        &mut client,
        "SELECT arrow_cast('a', 'Utf8View') AS s, arrow_cast(X'01', 'BinaryView') AS b, \
         arrow_cast('x', 'Dictionary(Int32, Utf8)') AS d",
    )
    .await
    .unwrap();
    let schema = batches[0].schema();
    assert_eq!(schema.field(0).data_type(), &DataType::Utf8);
    assert_eq!(schema.field(1).data_type(), &DataType::Binary);
    assert_eq!(schema.field(2).data_type(), &DataType::Utf8);

    // ~24 MB of result: every FlightData message stays below gRPC's 4 MiB default.
    let info = client
        .execute(
            "SELECT repeat('x', 1200) AS s FROM generate_series(1, 20000)".into(),
            None,
        )
        .await
        .unwrap();
    let ticket = info.endpoint[0].ticket.clone().unwrap();
    let mut raw = client.inner().clone();
    let mut stream = raw.do_get(ticket).await.unwrap().into_inner();
    let (mut messages, mut largest) = (0, 0);
    while let Some(data) = stream.message().await.unwrap() {
        messages += 1;
        largest = largest.max(data.data_body.len() + data.data_header.len());
    }
    assert!(messages > 6, "{messages} messages");
    assert!(
        largest < 4 * 1024 * 1024,
        "largest FlightData message {largest} bytes"
    );
}

#[tokio::test]
async fn sample_tpch_is_created_once_and_queryable() {
    let sample = Sample::Tpch { scale: 0.01 };
    let server = TestServer::start_with(|c| c.sample = Some(sample)).await;
    let mut client = server.client().await;
    let expected = [
        ("region", 5),
        ("nation", 25),
        ("supplier", 100),
        ("customer", 1_500),
        ("part", 2_000),
        ("partsupp", 8_000),
        ("orders", 15_000),
        ("lineitem", 60_175),
    ];
    assert_eq!(expected.map(|(t, _)| t), TPCH_TABLES);
    for (table, count) in expected {
        let result = query(&mut client, &format!("SELECT count(*) FROM {table}"))
            .await
            .unwrap();
        assert_eq!(scalar_i64(&result), count, "{table}");
    }
    // TPC-H Q6 (forecasting revenue change) runs over the sample.
    let q6 = query(
        &mut client,
        "SELECT sum(l_extendedprice * l_discount) AS revenue FROM lineitem \
         WHERE l_shipdate >= DATE '1994-01-01' AND l_shipdate < DATE '1995-01-01' \
         AND l_discount BETWEEN 0.05 AND 0.07 AND l_quantity < 24",
    )
    .await
    .unwrap();
    assert_eq!(rows(&q6), 1);

    // A restart with the same sample keeps the tables (still version 1).
    let storage = server.storage();
    server.stop().await;
    let server = TestServer::start_on(storage.clone(), |c| c.sample = Some(sample)).await;
    let catalog = open_catalog(&storage).await;
    let table = lakehouse_catalog::TableRef::new("public", "lineitem").unwrap();
    assert_eq!(catalog.table(&table).await.unwrap().version.0, 1);
    let mut client = server.client().await;
    let result = query(&mut client, "SELECT count(*) FROM lineitem")
        .await
        .unwrap();
    assert_eq!(scalar_i64(&result), 60_175);
}

/// Regression: DataFusion 54's `substr` yields `Utf8View`; casting it for the wire used to be a
/// projection above the plan, under which the optimizer dropped the ORDER BY of queries with a
/// scalar subquery (TPC-H Q22). The wire cast now happens on the stream.
#[tokio::test]
async fn order_by_survives_the_wire_cast() {
    let server = TestServer::start().await;
    let catalog = open_catalog(&server.storage()).await;
    let ids: Vec<i64> = (0..5_000).map(|i| (i * 7919) % 5_000).collect();
    let batch = people(0..1);
    let names: Vec<String> = ids.iter().map(|i| format!("{:03}x", i % 997)).collect();
    let batch = RecordBatch::try_new(
        batch.schema(),
        vec![
            std::sync::Arc::new(arrow::array::Int64Array::from(ids)),
            std::sync::Arc::new(arrow::array::StringArray::from(names)),
        ],
    )
    .unwrap();
    write(&catalog, "people", WriteMode::Create, batch)
        .await
        .unwrap();
    let mut client = server.client().await;
    let batches = query(
        &mut client,
        "SELECT substr(name, 1, 3) AS prefix, count(*) AS n FROM people \
         WHERE id > (SELECT min(id) FROM people) GROUP BY 1 ORDER BY prefix",
    )
    .await
    .unwrap();
    assert_eq!(batches[0].schema().field(0).data_type(), &DataType::Utf8);
    let prefixes: Vec<String> = batches
        .iter()
        .flat_map(|b| {
            b.column(0)
                .as_string::<i32>()
                .iter()
                .map(|s| s.unwrap().to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(prefixes.len(), 997);
    let mut sorted = prefixes.clone();
    sorted.sort();
    assert_eq!(prefixes, sorted);
}

/// Graceful shutdown: a stream in flight when the server is told to stop is delivered whole,
/// the server then stops, and new connections are refused.
#[tokio::test]
async fn shutdown_lets_in_flight_streams_finish() {
    let server = TestServer::start().await;
    let catalog = open_catalog(&server.storage()).await;
    write(&catalog, "people", WriteMode::Create, people(0..200_000))
        .await
        .unwrap();
    let mut client = server.client().await;
    let info = client
        .execute("SELECT * FROM people".into(), None)
        .await
        .unwrap();
    let ticket = info.endpoint[0].ticket.clone().unwrap();
    let mut stream = client.do_get(ticket).await.unwrap();
    let first = stream.try_next().await.unwrap().expect("a first batch");
    let url = server.url();

    let stopping = tokio::spawn(server.stop());
    let mut rows = first.num_rows();
    while let Some(batch) = stream.try_next().await.unwrap() {
        rows += batch.num_rows();
    }
    assert_eq!(rows, 200_000);
    tokio::time::timeout(std::time::Duration::from_secs(30), stopping)
        .await
        .expect("server stopped after the stream ended")
        .unwrap();
    assert!(lakehouse_client::Client::connect(&url).await.is_err());
}
