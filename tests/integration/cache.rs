//! The hot cache: answers are the same with the cache cold, warm, at a 1 MiB limit (constant
//! eviction) and off; a repeated query reads its data from memory; `cache_stats()` counts it.

use lakehouse_tests::{TestServer, query, update};

/// Every row of a few queries over a table of many files with deletes, as text.
async fn answers(server: &TestServer) -> Vec<String> {
    let mut client = server.client().await;
    let mut out = Vec::new();
    for sql in [
        "SELECT count(*), sum(id), min(s), max(s) FROM big",
        "SELECT id, s FROM big WHERE id % 997 = 3 ORDER BY id",
        "SELECT substr(s, 1, 2) AS p, count(*) FROM big GROUP BY p ORDER BY p LIMIT 5",
        "SELECT id FROM big WHERE id BETWEEN 40000 AND 40010 ORDER BY id",
    ] {
        let batches = query(&mut client, sql).await.unwrap();
        out.push(
            arrow::util::pretty::pretty_format_batches(&batches)
                .unwrap()
                .to_string(),
        );
    }
    out
}

/// `(hits, misses, evictions, bytes)` from `cache_stats()`.
async fn stats(server: &TestServer) -> (i64, i64, i64, i64) {
    let mut client = server.client().await;
    let batches = query(
        &mut client,
        "SELECT hits, misses, evictions, bytes FROM cache_stats()",
    )
    .await
    .unwrap();
    let col = |name: &str| lakehouse_tests::column_i64(&batches, name)[0];
    (col("hits"), col("misses"), col("evictions"), col("bytes"))
}

async fn fill(server: &TestServer) {
    update(server, "CREATE TABLE big (id BIGINT NOT NULL, s VARCHAR)")
        .await
        .unwrap();
    // High-entropy strings: about 4 MB of Parquet over four files.
    for chunk in 0..4 {
        let sql = format!(
            "INSERT INTO big SELECT value + {start} AS id, md5(CAST(value + {start} AS VARCHAR)) \
             AS s FROM generate_series(0, 99999)",
            start = chunk * 100_000
        );
        update(server, &sql).await.unwrap();
    }
    update(server, "DELETE FROM big WHERE id % 10 = 7")
        .await
        .unwrap();
}

#[tokio::test]
async fn answers_are_the_same_cold_warm_evicting_and_off() {
    let warm = TestServer::start_with(|c| c.maintenance.auto_compact = false).await;
    fill(&warm).await;
    let (_, misses_before, _, _) = stats(&warm).await;
    let cold = answers(&warm).await;
    let (hits_cold, misses_cold, _, bytes) = stats(&warm).await;
    assert!(misses_cold > misses_before, "the first run reads storage");
    assert!(bytes > 0, "and keeps what it read");
    let again = answers(&warm).await;
    assert_eq!(again, cold, "warm answers equal cold ones");
    let (hits_warm, misses_warm, _, _) = stats(&warm).await;
    assert_eq!(
        misses_warm, misses_cold,
        "a repeated run reads nothing from storage"
    );
    assert!(hits_warm > hits_cold);

    // The same storage behind a 1 MiB cache: constant eviction, same answers.
    let storage = warm.storage();
    warm.stop().await;
    let small = TestServer::start_on(std::sync::Arc::clone(&storage), |c| {
        c.cache.memory_bytes = Some(1 << 20);
        c.maintenance.auto_compact = false;
    })
    .await;
    assert_eq!(answers(&small).await, cold);
    assert_eq!(answers(&small).await, cold);
    let (_, _, evictions, bytes) = stats(&small).await;
    assert!(evictions > 0, "a 1 MiB cache evicts");
    assert!(bytes <= 1 << 20, "{bytes} bytes held");
    small.stop().await;

    // And with no cache at all.
    let off = TestServer::start_on(storage, |c| {
        c.cache.memory_bytes = Some(0);
        c.maintenance.auto_compact = false;
    })
    .await;
    assert_eq!(answers(&off).await, cold);
    assert_eq!(stats(&off).await, (0, 0, 0, 0));
}
