//! The hot cache: answers are the same with the cache cold, warm, at a 1 MiB limit (constant
//! eviction) and off; a repeated query reads its data from memory; `cache_stats()` counts it.
//! With a disk tier, ranges evicted from memory are read from local disk, also after a
//! restart, and a bad disk configuration is refused at start.

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

/// `(hits, misses, evictions, bytes)` of one row of `cache_stats()` (`data`: memory,
/// `data_disk`: the disk tier, whose evictions read as 0).
async fn stats(server: &TestServer, cache: &str) -> (i64, i64, i64, i64) {
    let mut client = server.client().await;
    let batches = query(
        &mut client,
        &format!(
            "SELECT hits, misses, coalesce(evictions, 0) AS evictions, bytes FROM cache_stats() \
             WHERE cache = '{cache}'"
        ),
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
    let (_, misses_before, _, _) = stats(&warm, "data").await;
    let cold = answers(&warm).await;
    let (hits_cold, misses_cold, _, bytes) = stats(&warm, "data").await;
    assert!(misses_cold > misses_before, "the first run reads storage");
    assert!(bytes > 0, "and keeps what it read");
    let again = answers(&warm).await;
    assert_eq!(again, cold, "warm answers equal cold ones");
    let (hits_warm, misses_warm, _, _) = stats(&warm, "data").await;
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
    let (_, _, evictions, bytes) = stats(&small, "data").await;
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
    assert_eq!(stats(&off, "data").await, (0, 0, 0, 0));
}

#[tokio::test]
async fn a_disk_tier_answers_what_memory_evicted_and_survives_a_restart() {
    let disk = tempfile::tempdir().unwrap();
    let with_disk = |c: &mut lakehouse_server::ServeConfig| {
        c.cache.memory_bytes = Some(1 << 20);
        c.cache.disk_path = Some(disk.path().to_path_buf());
        c.cache.disk_bytes = Some(256 << 20);
        c.maintenance.auto_compact = false;
    };
    let loader = TestServer::start_with(with_disk).await;
    fill(&loader).await;
    let storage = loader.storage();
    loader.stop().await;

    // The first start reads storage once; the repeat reads what memory evicted from disk.
    let server = TestServer::start_on(std::sync::Arc::clone(&storage), with_disk).await;
    let cold = answers(&server).await;
    let (_, misses_cold, _, _) = stats(&server, "data_disk").await;
    assert!(misses_cold > 0, "the first run reads storage");
    assert_eq!(answers(&server).await, cold);
    let (hits, misses, _, written) = stats(&server, "data_disk").await;
    assert!(hits > 0, "a 1 MiB memory tier sends repeated reads to disk");
    assert_eq!(misses, misses_cold, "the repeat reads nothing from storage");
    assert!(written > 0, "ranges were written to disk");
    server.stop().await;

    // After a restart on the same disk tier, the same queries read nothing from storage.
    let restarted = TestServer::start_on(std::sync::Arc::clone(&storage), with_disk).await;
    assert_eq!(answers(&restarted).await, cold);
    let (hits, misses, _, _) = stats(&restarted, "data_disk").await;
    assert!(hits > 0, "read from the disk tier after a restart");
    assert_eq!(misses, 0, "nothing read from storage after the restart");
    restarted.stop().await;

    // disk_bytes without disk_path, and a disk tier smaller than one block, are refused.
    for (path, bytes, needle) in [
        (
            None,
            Some(1 << 30),
            "cache.disk_bytes needs cache.disk_path",
        ),
        (
            Some(disk.path().to_path_buf()),
            Some(1024),
            "below one block",
        ),
    ] {
        let mut config = lakehouse_server::ServeConfig {
            storage: storage.path().to_str().unwrap().to_string(),
            ..Default::default()
        };
        config.cache.disk_path = path;
        config.cache.disk_bytes = bytes;
        let Err(err) = lakehouse_server::Server::new(&config).await else {
            panic!("{needle}: the server started");
        };
        assert!(err.to_string().contains(needle), "{err}");
    }
}
