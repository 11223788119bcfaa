//! Embedding providers against the real model server (MiniLM over llama.cpp, served with the
//! Ollama and OpenAI wire formats): vectors, batching, the cache, retries on 429/5xx, timeouts,
//! a server that goes down, dimension and model errors.

use std::time::{Duration, Instant};

use lakehouse_tests::models::{EMBED_DIMENSION, EMBED_MODEL, ModelServer};
use lakehouse_vector::Error;
use lakehouse_vector::embedding::{Embedder, EmbeddingModelConfig, ProviderKind};

fn config(server: &ModelServer, kind: ProviderKind) -> EmbeddingModelConfig {
    EmbeddingModelConfig::new(kind, server.url(), EMBED_MODEL, EMBED_DIMENSION)
}

fn texts(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[tokio::test]
async fn ollama_and_openai_formats_give_the_same_normalised_vectors() {
    let server = ModelServer::shared();
    let ollama = Embedder::new("minilm", config(server, ProviderKind::Ollama)).unwrap();
    let openai = Embedder::new("minilm-openai", config(server, ProviderKind::OpenAi)).unwrap();
    let input = texts(&[
        "The cat sits on the mat",
        "A feline rests on a rug",
        "Stock markets fell sharply today",
    ]);
    let a = ollama.embed(&input).await.unwrap();
    let b = openai.embed(&input).await.unwrap();
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.len(), EMBED_DIMENSION);
        assert!((dot(x, x) - 1.0).abs() < 1e-3, "L2-normalised");
        assert!(x.iter().zip(y.iter()).all(|(p, q)| (p - q).abs() < 1e-5));
    }
    // Meaning, not letters: the paraphrase is closer than the unrelated sentence.
    assert!(dot(&a[0], &a[1]) > dot(&a[0], &a[2]) + 0.2);
}

#[tokio::test]
async fn batches_keep_order_and_the_cache_saves_requests() {
    let server = ModelServer::shared();
    let embedder = Embedder::new(
        "minilm",
        EmbeddingModelConfig {
            batch_size: 4,
            concurrency: 2,
            ..config(server, ProviderKind::Ollama)
        },
    )
    .unwrap();
    let input: Vec<String> = (0..18).map(|i| format!("sentence number {i}")).collect();
    let all = embedder.embed(&input).await.unwrap();
    assert_eq!(embedder.requests_sent(), 5, "18 texts in batches of 4");
    // Each equals the vector of the text embedded alone (order kept across batches).
    let single = Embedder::new("alone", config(server, ProviderKind::Ollama)).unwrap();
    for i in [0, 7, 17] {
        let one = single.embed(&input[i..=i]).await.unwrap();
        assert!(dot(&one[0], &all[i]) > 0.9999, "text {i}");
    }
    // Cached: no request for texts seen before; duplicates are sent once.
    let again = embedder.embed(&input[3..9]).await.unwrap();
    assert_eq!(embedder.requests_sent(), 5);
    assert_eq!(again[0], all[3]);
    let dupes = texts(&["new text", "new text", "sentence number 1"]);
    let got = embedder.embed(&dupes).await.unwrap();
    assert_eq!(embedder.requests_sent(), 6);
    assert_eq!(got[0], got[1]);
    assert!(embedder.embed(&[]).await.unwrap().is_empty());
}

#[tokio::test]
async fn retries_on_429_and_5xx_then_succeeds() {
    let server = ModelServer::start();
    let embedder = Embedder::new("minilm", config(&server, ProviderKind::Ollama)).unwrap();
    for status in [429, 503] {
        server.inject_faults(status, 2, 0).await;
        let before = embedder.requests_sent();
        let text = format!("retry after {status}");
        let vectors = embedder.embed(&[text]).await.unwrap();
        assert_eq!(vectors[0].len(), EMBED_DIMENSION);
        assert_eq!(
            embedder.requests_sent() - before,
            3,
            "two failures, then success"
        );
    }
}

#[tokio::test]
async fn slow_or_down_servers_are_unavailable_within_the_timeout() {
    let mut server = ModelServer::start();
    let embedder = Embedder::new(
        "minilm",
        EmbeddingModelConfig {
            timeout_ms: 1_000,
            ..config(&server, ProviderKind::Ollama)
        },
    )
    .unwrap();
    // Slow: the answer would take 10 s.
    server.inject_faults(0, 1, 10_000).await;
    let started = Instant::now();
    let err = embedder.embed(&texts(&["slow"])).await.unwrap_err();
    assert!(matches!(err, Error::Unavailable { .. }), "{err}");
    assert!(err.to_string().contains("1000 ms"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    // Always failing: retried until the timeout, then Unavailable.
    server.inject_faults(503, 1_000, 0).await;
    let started = Instant::now();
    let err = embedder.embed(&texts(&["failing"])).await.unwrap_err();
    assert!(err.to_string().contains("503"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(3));
    // Down: connection refused, retried until the timeout.
    server.kill();
    let started = Instant::now();
    let err = embedder.embed(&texts(&["down"])).await.unwrap_err();
    assert!(matches!(err, Error::Unavailable { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_secs(3));
    // The shared server is unaffected.
    let healthy = Embedder::new("ok", config(ModelServer::shared(), ProviderKind::Ollama)).unwrap();
    assert_eq!(healthy.embed(&texts(&["fine"])).await.unwrap().len(), 1);
}

#[tokio::test]
async fn wrong_dimension_unknown_model_and_bad_config_are_clear_errors() {
    let server = ModelServer::shared();
    let wrong = Embedder::new(
        "nomic",
        EmbeddingModelConfig {
            dimension: 768,
            ..config(server, ProviderKind::Ollama)
        },
    )
    .unwrap();
    let err = wrong.embed(&texts(&["x"])).await.unwrap_err();
    assert!(matches!(err, Error::DimensionMismatch { .. }), "{err}");
    let message = err.to_string();
    assert!(
        message.contains("384") && message.contains("768"),
        "{message}"
    );

    let unknown = Embedder::new(
        "missing",
        EmbeddingModelConfig {
            model: "no-such-model".into(),
            ..config(server, ProviderKind::OpenAi)
        },
    )
    .unwrap();
    let before = unknown.requests_sent();
    let err = unknown.embed(&texts(&["x"])).await.unwrap_err();
    assert!(matches!(err, Error::Refused { status: 404, .. }), "{err}");
    assert!(err.to_string().contains("no-such-model"), "{err}");
    assert_eq!(unknown.requests_sent() - before, 1, "4xx is not retried");

    let bad = EmbeddingModelConfig {
        base_url: "localhost:11434".into(),
        ..config(server, ProviderKind::Ollama)
    };
    let err = Embedder::new("bad", bad).unwrap_err().to_string();
    assert!(err.contains("bad") && err.contains("base_url"), "{err}");
}
