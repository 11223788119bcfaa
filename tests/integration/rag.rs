//! `rag(question, table [, options])` with the real models (MiniLM embeddings, SmolLM2 chat):
//! the planted document comes first among the sources, answers repeat at temperature 0,
//! nothing relevant gives "I don't know" without asking the model, hybrid retrieval, errors.

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{Float64Type, Int64Type};
use lakehouse_server::ServeConfig;
use lakehouse_tests::models::{ModelServer, minilm_config, smollm2_config};
use lakehouse_tests::{TestServer, code, query};
use tonic::Code;

fn with_models(c: &mut ServeConfig) {
    let server = ModelServer::shared();
    c.embedding.models = [("minilm".to_string(), minilm_config(server))]
        .into_iter()
        .collect();
    c.chat.models = [("smollm2".to_string(), smollm2_config(server))]
        .into_iter()
        .collect();
}

const DOCS: [(i64, &str); 5] = [
    (1, "Our cafeteria serves vegetarian lasagne every Tuesday."),
    (
        2,
        "The Zorblax project deadline is the fourteenth of March.",
    ),
    (
        3,
        "Quarterly revenue grew by twelve percent over last year.",
    ),
    (
        4,
        "Kubernetes clusters are upgraded during the weekend window.",
    ),
    (5, "The football team won the regional championship final."),
];

/// (answer, [(doc_id, chunk_index, score)], model, generation_ms) of a one-row rag result.
fn unpack(batches: &[RecordBatch]) -> (String, Vec<(String, i64, f64)>, String, f64) {
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 1);
    let b = &batches[0];
    let answer = b
        .column_by_name("answer")
        .unwrap()
        .as_string::<i32>()
        .value(0);
    let list = b
        .column_by_name("sources")
        .unwrap()
        .as_list::<i32>()
        .value(0);
    let sources = list.as_struct();
    let ids = sources.column_by_name("doc_id").unwrap().as_string::<i32>();
    let chunks = sources
        .column_by_name("chunk_index")
        .unwrap()
        .as_primitive::<Int64Type>();
    let scores = sources
        .column_by_name("score")
        .unwrap()
        .as_primitive::<Float64Type>();
    let rows = (0..sources.len())
        .map(|i| (ids.value(i).to_string(), chunks.value(i), scores.value(i)))
        .collect();
    let model = b
        .column_by_name("model")
        .unwrap()
        .as_string::<i32>()
        .value(0);
    let generation = b
        .column_by_name("generation_ms")
        .unwrap()
        .as_primitive::<Float64Type>()
        .value(0);
    (answer.to_string(), rows, model.to_string(), generation)
}

#[tokio::test]
async fn rag_answers_from_the_planted_document_and_says_when_it_does_not_know() {
    let server = TestServer::start_with(with_models).await;
    let mut client = server.client().await;
    let values = DOCS
        .iter()
        .map(|(id, text)| format!("({id}, '{text}')"))
        .collect::<Vec<_>>()
        .join(", ");
    client
        .execute_update(
            format!("CREATE TABLE docs AS SELECT * FROM (VALUES {values}) v(id, body)"),
            None,
        )
        .await
        .unwrap();
    client
        .execute_update(
            "CREATE TABLE chunks STORED AS LANCE AS SELECT CAST(id AS VARCHAR) AS doc_id, \
             CAST(0 AS BIGINT) AS chunk_index, body AS text, embed(body) AS embedding FROM docs"
                .into(),
            None,
        )
        .await
        .unwrap();
    let sql = "SELECT * FROM rag('When is the Zorblax project deadline?', 'chunks', '{\"k\": 3}')";
    let (answer, sources, model, generation_ms) = unpack(&query(&mut client, sql).await.unwrap());
    assert_eq!(sources[0].0, "2", "{sources:?}");
    assert_eq!(sources[0].1, 0);
    assert!(sources.len() <= 3 && sources.windows(2).all(|w| w[0].2 >= w[1].2));
    assert!(!answer.is_empty());
    assert_eq!(model, "smollm2");
    assert!(generation_ms > 0.0);
    let (again, _, _, _) = unpack(&query(&mut client, sql).await.unwrap());
    assert_eq!(answer, again, "temperature 0: the same answer");

    // Hybrid retrieval (BM25 + vectors) finds it too.
    client
        .execute_update(
            "CREATE INDEX chunks_text ON chunks USING FTS (text)".into(),
            None,
        )
        .await
        .unwrap();
    let (_, sources, _, _) = unpack(
        &query(
            &mut client,
            "SELECT * FROM rag('Zorblax deadline', 'chunks', '{\"mode\": \"hybrid\", \"k\": 2}')",
        )
        .await
        .unwrap(),
    );
    assert_eq!(sources[0].0, "2", "{sources:?}");

    // Nothing relevant enough: no model call, an honest answer.
    let (answer, sources, _, generation_ms) = unpack(
        &query(
            &mut client,
            "SELECT * FROM rag('How tall is Mount Everest?', 'chunks', '{\"min_score\": 0.95}')",
        )
        .await
        .unwrap(),
    );
    assert!(sources.is_empty());
    assert!(answer.starts_with("I don't know"), "{answer}");
    assert_eq!(generation_ms, 0.0);

    for (sql, message) in [
        ("SELECT * FROM rag('q', 'nope')", "not found"),
        ("SELECT * FROM rag('q', 'docs')", "Parquet table"),
        (
            "SELECT * FROM rag('q', 'chunks', '{\"text_column\": \"doc_id2\"}')",
            "no text column doc_id2",
        ),
        (
            "SELECT * FROM rag('q', 'chunks', '{\"mode\": \"magic\"}')",
            "mode",
        ),
        (
            "SELECT * FROM rag('q', 'chunks', '{\"colour\": 1}')",
            "unknown field",
        ),
        (
            "SELECT * FROM rag('q', 'chunks', '{\"model\": \"gpt\"}')",
            "unknown chat model gpt",
        ),
        ("SELECT * FROM rag('q')", "expects (question, table"),
    ] {
        let err = query(&mut client, sql).await.unwrap_err();
        // A missing table is NotFound, as it is in FROM; bad arguments are InvalidArgument.
        let expected = if message.contains("not found") && !message.contains("model") {
            Code::NotFound
        } else {
            Code::InvalidArgument
        };
        assert_eq!(code(&err), expected, "{sql}: {err}");
        assert!(err.to_string().contains(message), "{sql}: {err}");
    }
}
