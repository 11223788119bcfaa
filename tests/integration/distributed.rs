//! Distributed execution: the worker service a server mounts when `[distributed] secret` is
//! set, and the secret every call to it must carry. (Whole clusters of processes — a
//! coordinator and three `lakehouse worker`s answering TPC-H — are in
//! tests/python/test_distributed.py.)

use lakehouse_server::distributed::SECRET_HEADER;
use lakehouse_tests::TestServer;
use tonic::Code;

const SECRET: &str = "cluster-secret-for-tests";

/// A raw `worker.WorkerService/GetWorkerInfo` call (an empty request; the answer decoded as an
/// empty message) with `secret` in its metadata.
async fn worker_info(server: &TestServer, secret: Option<&str>) -> Result<(), tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(server.channel().await);
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let mut request = tonic::Request::new(());
    if let Some(secret) = secret {
        request
            .metadata_mut()
            .insert(SECRET_HEADER, secret.parse().unwrap());
    }
    let path = http::uri::PathAndQuery::from_static("/worker.WorkerService/GetWorkerInfo");
    let codec = tonic_prost::ProstCodec::<(), ()>::default();
    grpc.unary(request, path, codec).await.map(|_| ())
}

/// With a secret, the worker service answers only calls that carry it; without one, no worker
/// service is mounted at all.
#[tokio::test]
async fn worker_calls_need_the_cluster_secret() {
    let server = TestServer::start_with(|c| c.distributed.secret = Some(SECRET.into())).await;
    let refused = worker_info(&server, None).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    assert!(refused.message().contains("secret"), "{refused:?}");
    let wrong = worker_info(&server, Some("not-the-secret"))
        .await
        .unwrap_err();
    assert_eq!(wrong.code(), Code::Unauthenticated, "{wrong:?}");
    worker_info(&server, Some(SECRET)).await.unwrap();
    // Flight SQL is served beside it as before.
    let mut client = server.client().await;
    lakehouse_tests::query(&mut client, "SELECT 1")
        .await
        .unwrap();

    let plain = TestServer::start().await;
    let missing = worker_info(&plain, Some(SECRET)).await.unwrap_err();
    assert_eq!(missing.code(), Code::Unimplemented, "{missing:?}");
}

/// The `[distributed]` TLS settings of a node: trusts `ca`, presents `identity` (cert, key).
fn distributed_tls(
    c: &mut lakehouse_server::ServeConfig,
    ca: &std::path::Path,
    identity: Option<(&std::path::Path, &std::path::Path)>,
) {
    c.distributed.secret = Some(SECRET.into());
    c.distributed.ca = Some(ca.to_path_buf());
    if let Some((cert, key)) = identity {
        c.distributed.client_cert = Some(cert.to_path_buf());
        c.distributed.client_key = Some(key.to_path_buf());
    }
}

/// Workers that require client certificates (`--tls-client-ca`): a coordinator listing them as
/// `grpc+tls://` and presenting a certificate they trust distributes over them (the workers
/// present theirs to each other for shuffles); one without a certificate finds them down and
/// answers alone; TLS settings that cannot work are refused at start, naming the setting.
#[tokio::test]
async fn workers_over_mutual_tls() {
    use lakehouse_tests::{column_str, query, scalar_i64, self_signed, update};
    let dir = tempfile::tempdir().unwrap();
    let (worker_cert, worker_key, _) = self_signed(dir.path(), "worker");
    let (node_cert, node_key, _) = self_signed(dir.path(), "node");
    let worker_config = |c: &mut lakehouse_server::ServeConfig| {
        c.tls_cert = Some(worker_cert.clone());
        c.tls_key = Some(worker_key.clone());
        c.tls_client_ca = Some(node_cert.clone());
        distributed_tls(c, &worker_cert, Some((&node_cert, &node_key)));
    };
    let first = TestServer::start_with(worker_config).await;
    let storage = first.storage();
    let second = TestServer::start_on(storage.clone(), worker_config).await;
    let workers: Vec<String> = [&first, &second]
        .iter()
        .map(|w| format!("grpc+tls://127.0.0.1:{}", w.port()))
        .collect();
    let coordinator = TestServer::start_on(storage.clone(), |c| {
        distributed_tls(c, &worker_cert, Some((&node_cert, &node_key)));
        c.distributed.workers = workers.clone();
        c.distributed.bytes_per_task = 4096;
    })
    .await;
    update(
        &coordinator,
        "CREATE TABLE t AS SELECT value AS k, value % 7 AS g FROM generate_series(1, 100000)",
    )
    .await
    .unwrap();
    let mut client = coordinator.client().await;
    let sql = "SELECT g, count(*) AS n FROM t GROUP BY g ORDER BY g";
    let explained = query(&mut client, &format!("EXPLAIN {sql}")).await.unwrap();
    let plan = column_str(&explained, "plan")
        .into_iter()
        .flatten()
        .collect::<String>();
    assert!(
        plan.contains("DistributedExec") && plan.contains("tasks=2"),
        "{plan}"
    );
    let answer = query(&mut client, sql).await.unwrap();
    assert_eq!(
        lakehouse_tests::column_i64(&answer, "n")
            .iter()
            .sum::<i64>(),
        100_000
    );
    let listed = query(&mut client, "SELECT * FROM workers()").await.unwrap();
    assert_eq!(
        column_str(&listed, "state"),
        [Some("up".into()), Some("up".into())]
    );
    assert_eq!(
        column_str(&listed, "url"),
        workers.iter().cloned().map(Some).collect::<Vec<_>>()
    );

    // No client certificate: the workers refuse the TLS handshake; queries run here alone.
    let anonymous = TestServer::start_on(storage.clone(), |c| {
        distributed_tls(c, &worker_cert, None);
        c.distributed.workers = workers.clone();
    })
    .await;
    let mut client = anonymous.client().await;
    let listed = query(&mut client, "SELECT state, error FROM workers()")
        .await
        .unwrap();
    assert_eq!(
        column_str(&listed, "state"),
        [Some("down".into()), Some("down".into())]
    );
    let answer = query(&mut client, "SELECT count(*) FROM t").await.unwrap();
    assert_eq!(scalar_i64(&answer), 100_000);

    // Settings that cannot work stop the start, naming what is missing.
    let refused = |configure: &dyn Fn(&mut lakehouse_server::ServeConfig)| {
        let mut config = lakehouse_server::ServeConfig {
            storage: storage.path().to_str().unwrap().to_string(),
            ..Default::default()
        };
        configure(&mut config);
        async move {
            lakehouse_server::Server::new(&config)
                .await
                .err()
                .expect("refused")
                .to_string()
        }
    };
    let no_ca = refused(&|c| {
        c.distributed.secret = Some(SECRET.into());
        c.distributed.workers = workers.clone();
        c.distributed.client_cert = Some(node_cert.clone());
        c.distributed.client_key = Some(node_key.clone());
    })
    .await;
    assert!(no_ca.contains("[distributed] ca"), "{no_ca}");
    let tls_without_ca = refused(&|c| {
        c.distributed.secret = Some(SECRET.into());
        c.distributed.workers = workers.clone();
    })
    .await;
    assert!(
        tls_without_ca.contains(&workers[0]) && tls_without_ca.contains("[distributed] ca"),
        "{tls_without_ca}"
    );
    let half = refused(&|c| {
        distributed_tls(c, &worker_cert, None);
        c.distributed.client_cert = Some(node_cert.clone());
    })
    .await;
    assert!(half.contains("client_key"), "{half}");
    let missing = refused(&|c| distributed_tls(c, &dir.path().join("nope.pem"), None)).await;
    assert!(missing.contains("nope.pem"), "{missing}");
}
