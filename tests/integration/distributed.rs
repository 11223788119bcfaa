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
