//! Query limits: the per-query timeout, CancelFlightInfo, the concurrent-query cap, the result
//! size guard and the memory pool. Each ends the query's work on the server: its slot is freed
//! (the DataFusion stream is dropped) without waiting for the client.

use std::time::{Duration, Instant};

use arrow_flight::{CancelFlightInfoRequest, CancelStatus};
use futures::StreamExt;
use lakehouse_tests::{TestServer, code, column_i64, fetch, query, scalar_i64};
use tonic::Code;

/// A query that runs far longer than any test (counting 10^11 generated rows).
const ENDLESS_COUNT: &str = "SELECT count(*) FROM generate_series(1, 100000000000)";
/// A query that streams batches far longer than any test.
const ENDLESS_ROWS: &str = "SELECT value FROM generate_series(1, 100000000000)";

#[tokio::test]
async fn timeouts_stop_queries_and_statements() {
    let server = TestServer::start_with(|c| c.query.timeout_secs = Some(1.0)).await;
    let mut client = server.client().await;
    let started = Instant::now();
    let err = query(&mut client, ENDLESS_COUNT).await.unwrap_err();
    assert_eq!(code(&err), Code::DeadlineExceeded, "{err}");
    assert!(err.to_string().contains("query.timeout_secs"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(20));
    server.wait_idle().await;

    // A data-changing statement: stopped, and nothing committed.
    let err = client
        .execute_update(format!("CREATE TABLE t AS {ENDLESS_ROWS}"), None)
        .await
        .unwrap_err();
    assert_eq!(code(&err), Code::DeadlineExceeded, "{err}");
    let err = query(&mut client, "SELECT * FROM t").await.unwrap_err();
    assert_eq!(code(&err), Code::NotFound);
    server.wait_idle().await;

    // Quick queries are unaffected.
    assert_eq!(
        scalar_i64(&query(&mut client, "SELECT 1").await.unwrap()),
        1
    );
}

#[tokio::test]
async fn cancel_flight_info_stops_a_running_or_pending_query() {
    let server = TestServer::start().await;
    let mut client = server.client().await;

    // Running: the stream ends with CANCELLED and the slot is freed.
    let info = client.execute(ENDLESS_ROWS.into(), None).await.unwrap();
    let ticket = info.endpoint[0].ticket.clone().unwrap();
    let mut stream = client.do_get(ticket).await.unwrap();
    assert!(stream.next().await.unwrap().unwrap().num_rows() > 0);
    assert_eq!(server.running_queries(), 1);
    let mut flight = arrow_flight::FlightClient::new(server.channel().await);
    let result = flight
        .cancel_flight_info(CancelFlightInfoRequest::new(info.clone()))
        .await
        .unwrap();
    assert_eq!(result.status(), CancelStatus::Cancelled);
    let error = loop {
        match stream.next().await {
            Some(Ok(_)) => continue,
            Some(Err(e)) => break e,
            None => panic!("stream ended without an error"),
        }
    };
    assert_eq!(code(&error), Code::Cancelled, "{error}");
    server.wait_idle().await;

    // Cancelled before DoGet: DoGet is refused.
    let info = client.execute(ENDLESS_ROWS.into(), None).await.unwrap();
    let result = flight
        .cancel_flight_info(CancelFlightInfoRequest::new(info.clone()))
        .await
        .unwrap();
    assert_eq!(result.status(), CancelStatus::Cancelled);
    let err = fetch(&mut client, info).await.unwrap_err();
    assert_eq!(code(&err), Code::Cancelled, "{err}");

    // Metadata results are not cancellable.
    let catalogs = client.get_catalogs().await.unwrap();
    let result = flight
        .cancel_flight_info(CancelFlightInfoRequest::new(catalogs))
        .await
        .unwrap();
    assert_eq!(result.status(), CancelStatus::NotCancellable);
    // The action is listed.
    let actions: Vec<String> = flight
        .list_actions()
        .await
        .unwrap()
        .map(|a| a.unwrap().r#type)
        .collect()
        .await;
    assert!(
        actions.contains(&"CancelFlightInfo".to_string()),
        "{actions:?}"
    );
}

#[tokio::test]
async fn the_concurrency_cap_queues_then_refuses() {
    let server = TestServer::start_with(|c| {
        c.query.max_concurrent_queries = Some(1);
        c.query.queue_timeout_secs = Some(0.3);
    })
    .await;
    let mut client = server.client().await;
    let info = client.execute(ENDLESS_ROWS.into(), None).await.unwrap();
    let mut holder = client
        .do_get(info.endpoint[0].ticket.clone().unwrap())
        .await
        .unwrap();
    assert!(holder.next().await.unwrap().is_ok());

    let mut other = server.client().await;
    let err = query(&mut other, "SELECT 1").await.unwrap_err();
    assert_eq!(code(&err), Code::ResourceExhausted, "{err}");
    assert!(
        err.to_string().contains("query.max_concurrent_queries"),
        "{err}"
    );
    let err = other
        .execute_update("CREATE TABLE t AS SELECT 1 AS x".into(), None)
        .await
        .unwrap_err();
    assert_eq!(code(&err), Code::ResourceExhausted, "{err}");

    // The client hanging up frees the slot on the server.
    drop(holder);
    server.wait_idle().await;
    assert_eq!(scalar_i64(&query(&mut other, "SELECT 2").await.unwrap()), 2);

    // A waiting query gets the slot when it frees up within the queue timeout.
    let info = client.execute(ENDLESS_ROWS.into(), None).await.unwrap();
    let mut holder = client
        .do_get(info.endpoint[0].ticket.clone().unwrap())
        .await
        .unwrap();
    assert!(holder.next().await.unwrap().is_ok());
    let waiting = tokio::spawn(async move { query(&mut other, "SELECT 3").await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(holder);
    assert_eq!(scalar_i64(&waiting.await.unwrap().unwrap()), 3);
}

#[tokio::test]
async fn results_over_max_result_bytes_are_stopped() {
    let server = TestServer::start_with(|c| c.query.max_result_bytes = Some(1_000_000)).await;
    let mut client = server.client().await;
    let err = query(
        &mut client,
        "SELECT value FROM generate_series(1, 10000000)",
    )
    .await
    .unwrap_err();
    assert_eq!(code(&err), Code::ResourceExhausted, "{err}");
    assert!(err.to_string().contains("query.max_result_bytes"), "{err}");
    server.wait_idle().await;
    let rows = query(&mut client, "SELECT value FROM generate_series(1, 1000)")
        .await
        .unwrap();
    assert_eq!(rows.iter().map(|b| b.num_rows()).sum::<usize>(), 1000);
}

#[tokio::test]
async fn the_memory_limit_spills_sorts_and_refuses_what_cannot_spill() {
    let spill = tempfile::tempdir().unwrap();
    let spill_dir = spill.path().to_path_buf();
    let server = TestServer::start_with(|c| {
        c.query.memory_limit_bytes = Some(8 * 1024 * 1024);
        c.query.spill_dir = Some(spill_dir);
    })
    .await;
    let mut client = server.client().await;
    // 3M BIGINTs (24 MB) sorted within 8 MB: the sort spills and the answer is right.
    let batches = query(
        &mut client,
        "SELECT value FROM generate_series(1, 3000000) ORDER BY value DESC",
    )
    .await
    .unwrap();
    let values = column_i64(&batches, "value");
    assert_eq!(values.len(), 3_000_000);
    assert_eq!(values[..3], [3_000_000, 2_999_999, 2_999_998]);
    assert!(values.windows(2).all(|w| w[0] > w[1]), "sorted descending");
    // A hash join's build side cannot spill: refused with the consumers named.
    let err = query(
        &mut client,
        "SELECT count(*) FROM generate_series(1, 3000000) a \
         JOIN generate_series(1, 3000000) b ON a.value = b.value",
    )
    .await
    .unwrap_err();
    assert_eq!(code(&err), Code::ResourceExhausted, "{err}");
    server.wait_idle().await;
}
