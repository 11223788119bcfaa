//! `nl2sql(question [, options])` with the real chat model (SmolLM2-135M): one row with the
//! model's SQL and a verdict that agrees with planning that SQL independently; nothing runs.

use arrow::array::{Array, AsArray};
use lakehouse_server::ServeConfig;
use lakehouse_tests::models::{ModelServer, smollm2_config};
use lakehouse_tests::{TestServer, code, query, scalar_i64};
use tonic::Code;

fn with_chat(c: &mut ServeConfig) {
    c.chat.models = [("smollm2".to_string(), smollm2_config(ModelServer::shared()))]
        .into_iter()
        .collect();
}

#[tokio::test]
async fn nl2sql_returns_the_model_sql_with_a_true_verdict() {
    let server = TestServer::start_with(with_chat).await;
    let mut client = server.client().await;
    for sql in [
        "CREATE TABLE customers AS SELECT * FROM (VALUES (1, 'Ada', 'UK'), (2, 'Linus', 'FI')) \
         v(id, name, country)",
        "CREATE TABLE orders AS SELECT * FROM (VALUES (10, 1, 99.5), (11, 2, 12.0)) \
         v(id, customer_id, amount)",
    ] {
        client.execute_update(sql.into(), None).await.unwrap();
    }
    let batches = query(
        &mut client,
        "SELECT * FROM nl2sql('How many customers are there in each country?')",
    )
    .await
    .unwrap();
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 1);
    let b = &batches[0];
    let sql = b
        .column_by_name("sql")
        .unwrap()
        .as_string::<i32>()
        .value(0)
        .to_string();
    let valid = b.column_by_name("valid").unwrap().as_boolean().value(0);
    let error = b.column_by_name("error").unwrap().as_string::<i32>();
    let model = b
        .column_by_name("model")
        .unwrap()
        .as_string::<i32>()
        .value(0);
    assert_eq!(model, "smollm2");
    assert!(!sql.is_empty());
    assert_eq!(error.is_null(0), valid, "error exactly when invalid");
    // The verdict agrees with planning the SQL through Flight SQL (prepare plans, never runs).
    let is_query = ["select", "with", "values"]
        .iter()
        .any(|k| sql.trim_start().to_ascii_lowercase().starts_with(k));
    if is_query {
        let prepared = client.prepare(sql.clone(), None).await;
        assert_eq!(prepared.is_ok(), valid, "{sql}: {:?}", error.value(0));
    } else {
        assert!(!valid, "{sql}");
    }
    // Nothing ran: the tables are as they were.
    assert_eq!(
        scalar_i64(
            &query(&mut client, "SELECT count(*) FROM customers")
                .await
                .unwrap()
        ),
        2
    );
    assert_eq!(
        scalar_i64(
            &query(&mut client, "SELECT count(*) FROM orders")
                .await
                .unwrap()
        ),
        2
    );

    for (sql, message) in [
        ("SELECT * FROM nl2sql()", "expects (question"),
        (
            "SELECT * FROM nl2sql('q', '{\"model\": \"gpt\"}')",
            "unknown chat model gpt",
        ),
        (
            "SELECT * FROM nl2sql('q', '{\"colour\": 1}')",
            "unknown field",
        ),
    ] {
        let err = query(&mut client, sql).await.unwrap_err();
        assert_eq!(code(&err), Code::InvalidArgument, "{sql}: {err}");
        assert!(err.to_string().contains(message), "{sql}: {err}");
    }
}
