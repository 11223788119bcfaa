//! TLS (rustls through tonic) with certificates generated here (rcgen), and mutual TLS.

use lakehouse_tests::{TestServer, query, scalar_i64, self_signed};

#[tokio::test]
async fn tls_and_mutual_tls() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, server_pem) = self_signed(dir.path(), "server");
    let server = TestServer::start_with(|c| {
        c.tls_cert = Some(cert.clone());
        c.tls_key = Some(key.clone());
    })
    .await;
    let mut client = server.tls_client(&server_pem, None).await.unwrap();
    assert_eq!(
        scalar_i64(&query(&mut client, "SELECT 41 + 1").await.unwrap()),
        42
    );

    // Plain-text clients and clients that do not trust the certificate get nowhere.
    let mut plain = server.client().await;
    assert!(query(&mut plain, "SELECT 1").await.is_err());
    let (_, _, other_pem) = self_signed(dir.path(), "other");
    let untrusting = server.tls_client(&other_pem, None).await;
    match untrusting {
        Err(_) => {}
        Ok(mut c) => assert!(query(&mut c, "SELECT 1").await.is_err()),
    }
    server.stop().await;

    // Mutual TLS: a client certificate signed by the configured CA is required.
    let (client_cert, client_key, client_pem) = self_signed(dir.path(), "client");
    let server = TestServer::start_with(|c| {
        c.tls_cert = Some(cert.clone());
        c.tls_key = Some(key.clone());
        c.tls_client_ca = Some(client_cert.clone());
    })
    .await;
    match server.tls_client(&server_pem, None).await {
        Err(_) => {}
        Ok(mut anonymous) => assert!(query(&mut anonymous, "SELECT 1").await.is_err()),
    }
    let identity = (client_pem, std::fs::read_to_string(&client_key).unwrap());
    let mut known = server
        .tls_client(&server_pem, Some(identity))
        .await
        .unwrap();
    assert_eq!(scalar_i64(&query(&mut known, "SELECT 7").await.unwrap()), 7);
}

#[tokio::test]
async fn incomplete_tls_settings_are_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, _, _) = self_signed(dir.path(), "server");
    let config = lakehouse_server::ServeConfig {
        storage: dir.path().join("data").to_str().unwrap().to_string(),
        tls_cert: Some(cert),
        ..Default::default()
    };
    let err = lakehouse_server::Server::new(&config)
        .await
        .err()
        .expect("refused");
    assert!(
        err.to_string()
            .contains("--tls-cert and --tls-key must be given together"),
        "{err}"
    );
    let config = lakehouse_server::ServeConfig {
        storage: dir.path().join("data").to_str().unwrap().to_string(),
        tls_cert: Some(dir.path().join("missing.crt")),
        tls_key: Some(dir.path().join("missing.key")),
        ..Default::default()
    };
    let err = lakehouse_server::Server::new(&config)
        .await
        .err()
        .expect("refused");
    assert!(err.to_string().contains("missing.crt"), "{err}");
}
