//! Document ingest through the Rust client (`CommandIngestFile` with `DocumentOptions`, and
//! `CommandPruneDocuments`) against the real MiniLM model server: the server's interim progress
//! reports, the final counts, a prune, and the refusals.

use std::sync::{Arc, Mutex};

use lakehouse_client::{DocumentOptions, IngestFileOptions, IngestFileResult, IngestProgress};
use lakehouse_tests::models::{ModelServer, minilm_config};
use lakehouse_tests::{TestServer, query, scalar_i64};
use tonic::Code;

fn options(source: &str, chunk_size: u32) -> IngestFileOptions {
    IngestFileOptions {
        table: "manual".into(),
        documents: Some(DocumentOptions {
            source: source.into(),
            chunk_size,
            chunk_overlap: Some(20),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[tokio::test]
async fn the_server_reports_progress_and_prune_keeps_only_the_given_sources() {
    let server = TestServer::start_with(|c| {
        c.embedding.models = [("minilm".to_string(), minilm_config(ModelServer::shared()))]
            .into_iter()
            .collect();
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    // ~300 sentences: more chunks than one embedding group, so progress arrives in steps.
    let long: String = (0..300)
        .map(|i| format!("Sentence number {i} of the operations manual describes step {i}.\n\n"))
        .collect();
    let manual = dir.path().join("manual.txt");
    std::fs::write(&manual, &long).unwrap();
    let faq = dir.path().join("faq.md");
    std::fs::write(&faq, "# FAQ\n\nThe office opens at nine.\n").unwrap();

    let mut client = server.lakehouse_client().await;
    let reports: Arc<Mutex<Vec<IngestFileResult>>> = Arc::default();
    let seen = Arc::clone(&reports);
    let result = client
        .ingest_file(&manual, &options("ops/manual.txt", 100), move |p| {
            if let IngestProgress::Server(report) = p {
                seen.lock().unwrap().push(report);
            }
        })
        .await
        .unwrap();
    assert_eq!((result.documents, result.documents_unchanged), (1, 0));
    assert!(result.chunks > 256, "{result:?}");
    let reports = reports.lock().unwrap().clone();
    assert!(reports.len() >= 2, "interim reports: {reports:?}");
    assert!(
        reports
            .iter()
            .all(|r| r.progress && r.chunks_total == result.chunks)
    );
    assert!(reports.windows(2).all(|w| w[0].chunks <= w[1].chunks));
    assert_eq!(reports.last().unwrap().chunks, result.chunks);

    client
        .ingest_file(&faq, &options("faq.md", 100), |_| {})
        .await
        .unwrap();
    let mut sql = server.client().await;
    let total = scalar_i64(
        &query(&mut sql, "SELECT count(*) FROM manual")
            .await
            .unwrap(),
    );
    assert_eq!(total as u64, result.chunks + 1);

    let pruned = client
        .prune_documents("manual", vec!["faq.md".into()])
        .await
        .unwrap();
    assert_eq!(
        (pruned.sources_deleted, pruned.chunks_deleted),
        (1, result.chunks)
    );
    let left = query(&mut sql, "SELECT count(*) FROM manual")
        .await
        .unwrap();
    assert_eq!(scalar_i64(&left), 1);

    // Refusals: other chunk settings than the table's; prune of a table that is not a
    // document table or does not exist.
    let err = client
        .ingest_file(&faq, &options("faq.md", 300), |_| {})
        .await
        .unwrap_err();
    let status = err.status().unwrap();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains("chunked with size 100"),
        "{status:?}"
    );
    sql.execute_update("CREATE TABLE plain AS SELECT 1 AS x".into(), None)
        .await
        .unwrap();
    let err = client.prune_documents("plain", vec![]).await.unwrap_err();
    assert_eq!(err.status().unwrap().code(), Code::InvalidArgument);
    let err = client.prune_documents("missing", vec![]).await.unwrap_err();
    assert_eq!(err.status().unwrap().code(), Code::NotFound);
}
