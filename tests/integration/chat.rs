//! Chat providers and `ai()` against the real model server (SmolLM2-135M over llama.cpp,
//! Ollama and OpenAI wire formats): answers, repeatability at temperature 0, the per-query row
//! cap, retries, and a model server that goes down.

use std::time::{Duration, Instant};

use lakehouse_server::ServeConfig;
use lakehouse_tests::models::{ModelServer, smollm2_config};
use lakehouse_tests::{TestServer, code, column_str, query};
use lakehouse_vector::Error;
use lakehouse_vector::chat::{ChatMessage, ChatModel, ChatModelConfig};
use lakehouse_vector::embedding::ProviderKind;
use tonic::Code;

fn chat_config(server: &ModelServer, max_rows: usize) -> impl FnOnce(&mut ServeConfig) {
    let model = smollm2_config(server);
    move |c: &mut ServeConfig| {
        c.chat.models = [("smollm2".to_string(), model)].into_iter().collect();
        c.chat.ai_max_rows = max_rows;
    }
}

#[tokio::test]
async fn ollama_and_openai_chat_answer_repeatably_at_temperature_0() {
    let server = ModelServer::shared();
    let question = [ChatMessage::user("What is the capital of France?")];
    let mut answers = Vec::new();
    for kind in [ProviderKind::Ollama, ProviderKind::OpenAi] {
        let model = ChatModel::new(
            "smollm2",
            ChatModelConfig {
                provider: kind,
                max_tokens: 32,
                ..smollm2_config(server)
            },
        )
        .unwrap();
        let first = model.complete(&question).await.unwrap();
        let second = model.complete(&question).await.unwrap();
        assert!(!first.is_empty());
        assert_eq!(first, second, "temperature 0 repeats");
        answers.push(first);
    }
    assert_eq!(
        answers[0], answers[1],
        "same model, same answer in both formats"
    );
    assert!(answers[0].contains("Paris"), "{}", answers[0]);

    // Unknown model: refused, not retried; bad config: clear errors.
    let unknown = ChatModel::new(
        "x",
        ChatModelConfig::new(ProviderKind::Ollama, server.url(), "no-such-model"),
    )
    .unwrap();
    let err = unknown.complete(&question).await.unwrap_err();
    assert!(matches!(err, Error::Refused { status: 404, .. }), "{err}");
    let err = ChatModel::new(
        "bad",
        ChatModelConfig {
            temperature: 7.0,
            ..smollm2_config(server)
        },
    )
    .unwrap_err();
    assert!(err.to_string().contains("temperature"), "{err}");
}

#[tokio::test]
async fn ai_answers_every_row_within_the_row_cap() {
    let server = TestServer::start_with(chat_config(ModelServer::shared(), 5)).await;
    let mut client = server.client().await;
    client
        .execute_update(
            "CREATE TABLE cities AS SELECT * FROM (VALUES (1, 'France'), (2, 'Italy'), \
             (3, NULL), (4, 'Spain'), (5, 'Japan')) v(id, country)"
                .into(),
            None,
        )
        .await
        .unwrap();
    let sql = "SELECT id, ai('What is the capital of ' || country || '?') AS answer \
               FROM cities ORDER BY id";
    let first = column_str(&query(&mut client, sql).await.unwrap(), "answer");
    assert_eq!(first.len(), 5);
    assert!(first[2].is_none(), "NULL prompt, NULL answer");
    assert!(
        first
            .iter()
            .enumerate()
            .all(|(i, a)| i == 2 || a.as_ref().is_some_and(|a| !a.is_empty())),
        "{first:?}"
    );
    assert!(first[0].as_ref().unwrap().contains("Paris"), "{first:?}");
    // Each query has its own count: the same query runs again, with the same answers.
    let second = column_str(&query(&mut client, sql).await.unwrap(), "answer");
    assert_eq!(first, second);

    // Over the cap: refused before the rows over it reach the model.
    client
        .execute_update(
            "CREATE TABLE many AS SELECT * FROM (VALUES (1, 'a'), (2, 'b'), (3, 'c'), \
             (4, 'd'), (5, 'e'), (6, 'f')) v(id, t)"
                .into(),
            None,
        )
        .await
        .unwrap();
    let err = query(&mut client, "SELECT ai(t) FROM many")
        .await
        .unwrap_err();
    assert_eq!(code(&err), Code::ResourceExhausted, "{err}");
    assert!(err.to_string().contains("ai_max_rows = 5"), "{err}");
    // A LIMIT keeps a query under the cap.
    let limited = query(&mut client, "SELECT ai(t) AS a FROM many LIMIT 2")
        .await
        .unwrap();
    assert_eq!(column_str(&limited, "a").len(), 2);

    for (sql, message) in [
        ("SELECT ai('hi', 'nope')", "unknown chat model nope"),
        ("SELECT ai('hi', t) FROM many", "must be a string literal"),
    ] {
        let err = query(&mut client, sql).await.unwrap_err();
        assert_eq!(code(&err), Code::InvalidArgument, "{sql}: {err}");
        assert!(err.to_string().contains(message), "{sql}: {err}");
    }
    // Without chat models, ai() says so.
    let bare = TestServer::start().await;
    let mut client = bare.client().await;
    let err = query(&mut client, "SELECT ai('x')").await.unwrap_err();
    assert!(err.to_string().contains("no default chat model"), "{err}");
    assert!(
        err.to_string().contains("add a [chat.models.NAME] section"),
        "{err}"
    );
}

#[tokio::test]
async fn a_chat_server_that_fails_or_goes_down_is_retried_then_unavailable() {
    let mut models = ModelServer::start();
    // The retry budget (timeout_ms) leaves room for two refused calls and a slow answer on a
    // loaded 2-core machine.
    let config = ChatModelConfig {
        timeout_ms: 8_000,
        max_tokens: 16,
        ..smollm2_config(&models)
    };
    let server = TestServer::start_with(move |c: &mut ServeConfig| {
        c.chat.models = [("smollm2".to_string(), config)].into_iter().collect();
    })
    .await;
    let mut client = server.client().await;
    // Two 503s, then an answer: retried.
    models.inject_faults(503, 2, 0).await;
    let answer = query(&mut client, "SELECT ai('Say hello') AS a")
        .await
        .unwrap();
    assert!(
        column_str(&answer, "a")[0]
            .as_ref()
            .is_some_and(|a| !a.is_empty())
    );

    // Stopped mid-test: Unavailable within the timeout, and the server stays healthy.
    models.kill();
    let started = Instant::now();
    let err = query(&mut client, "SELECT ai('Say hello') AS a")
        .await
        .unwrap_err();
    assert_eq!(code(&err), Code::Unavailable, "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(8 + 7),
        "{:?}",
        started.elapsed()
    );
    let one = query(&mut client, "SELECT 1 AS one").await.unwrap();
    assert_eq!(one[0].num_rows(), 1);
}
