//! Auth: Basic login through the Flight handshake, bearer tokens, expiry, roles; every RPC
//! refuses calls without valid credentials.

use std::time::Duration;

use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::sql::{
    ActionCreatePreparedStatementRequest, CommandGetCatalogs, CommandGetDbSchemas,
    CommandGetPrimaryKeys, CommandGetSqlInfo, CommandGetTableTypes, CommandGetTables,
    CommandGetXdbcTypeInfo, CommandStatementIngest, CommandStatementQuery, ProstMessageExt,
};
use arrow_flight::{
    Action, Criteria, Empty, FlightData, FlightDescriptor, HandshakeRequest, Ticket,
};
use lakehouse_server::auth::{AuthConfig, AuthMode, Role, UserConfig, hash_password};
use lakehouse_tests::{TestServer, code, query, scalar_i64};
use prost::Message;
use tonic::Code;
use tonic::metadata::MetadataValue;

fn users() -> AuthConfig {
    let user = |name: &str, password: &str, role| UserConfig {
        name: name.into(),
        password_hash: hash_password(password).unwrap(),
        role,
    };
    AuthConfig {
        mode: AuthMode::Basic,
        users: vec![
            user("ann", "ann-pw", Role::Write),
            user("bob", "bob-pw", Role::Read),
        ],
        ..AuthConfig::default()
    }
}

async fn start(ttl_secs: u64) -> TestServer {
    let auth = AuthConfig {
        token_ttl_secs: ttl_secs,
        ..users()
    };
    TestServer::start_with(|c| c.auth = auth).await
}

fn basic(user: &str, password: &str) -> String {
    use base64::Engine;
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {encoded}")
}

fn with_auth<T>(message: T, authorization: Option<&str>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(value) = authorization {
        let value: MetadataValue<_> = value.parse().unwrap();
        request.metadata_mut().insert("authorization", value);
    }
    request
}

fn descriptor(command: impl ProstMessageExt) -> FlightDescriptor {
    FlightDescriptor::new_cmd(command.as_any().encode_to_vec())
}

/// Tries every Flight RPC (and each metadata command) with `authorization`; each must fail
/// with Unauthenticated, its message containing `expect`. `ticket` is a valid ticket.
async fn every_rpc_is_refused(
    server: &TestServer,
    authorization: Option<&str>,
    ticket: &Ticket,
    expect: &str,
) {
    let mut raw = FlightServiceClient::new(server.channel().await);
    let mut results: Vec<(&str, Result<(), tonic::Status>)> = Vec::new();
    let handshake = futures::stream::iter([HandshakeRequest::default()]);
    results.push((
        "Handshake",
        raw.handshake(with_auth(handshake, authorization))
            .await
            .map(drop),
    ));
    results.push((
        "ListFlights",
        raw.list_flights(with_auth(Criteria::default(), authorization))
            .await
            .map(drop),
    ));
    let commands = [
        (
            "GetFlightInfo(CommandStatementQuery)",
            descriptor(CommandStatementQuery {
                query: "SELECT 1".into(),
                transaction_id: None,
            }),
        ),
        (
            "GetFlightInfo(CommandGetCatalogs)",
            descriptor(CommandGetCatalogs {}),
        ),
        (
            "GetFlightInfo(CommandGetDbSchemas)",
            descriptor(CommandGetDbSchemas::default()),
        ),
        (
            "GetFlightInfo(CommandGetTables)",
            descriptor(CommandGetTables::default()),
        ),
        (
            "GetFlightInfo(CommandGetTableTypes)",
            descriptor(CommandGetTableTypes {}),
        ),
        (
            "GetFlightInfo(CommandGetSqlInfo)",
            descriptor(CommandGetSqlInfo { info: vec![] }),
        ),
        (
            "GetFlightInfo(CommandGetXdbcTypeInfo)",
            descriptor(CommandGetXdbcTypeInfo { data_type: None }),
        ),
        (
            "GetFlightInfo(CommandGetPrimaryKeys)",
            descriptor(CommandGetPrimaryKeys {
                table: "t".into(),
                ..Default::default()
            }),
        ),
    ];
    for (name, descriptor) in commands {
        results.push((
            name,
            raw.get_flight_info(with_auth(descriptor, authorization))
                .await
                .map(drop),
        ));
    }
    let query = descriptor(CommandStatementQuery {
        query: "SELECT 1".into(),
        transaction_id: None,
    });
    results.push((
        "PollFlightInfo",
        raw.poll_flight_info(with_auth(query.clone(), authorization))
            .await
            .map(drop),
    ));
    results.push((
        "GetSchema",
        raw.get_schema(with_auth(query, authorization))
            .await
            .map(drop),
    ));
    results.push((
        "DoGet",
        raw.do_get(with_auth(ticket.clone(), authorization))
            .await
            .map(drop),
    ));
    let ingest = FlightData {
        flight_descriptor: Some(descriptor(CommandStatementIngest {
            table: "t".into(),
            ..Default::default()
        })),
        ..Default::default()
    };
    results.push((
        "DoPut",
        raw.do_put(with_auth(futures::stream::iter([ingest]), authorization))
            .await
            .map(drop),
    ));
    let create = Action::new(
        "CreatePreparedStatement",
        ActionCreatePreparedStatementRequest {
            query: "SELECT 1".into(),
            transaction_id: None,
        }
        .as_any()
        .encode_to_vec(),
    );
    results.push((
        "DoAction",
        raw.do_action(with_auth(create, authorization))
            .await
            .map(drop),
    ));
    results.push((
        "ListActions",
        raw.list_actions(with_auth(Empty {}, authorization))
            .await
            .map(drop),
    ));
    results.push((
        "DoExchange",
        raw.do_exchange(with_auth(
            futures::stream::iter([FlightData::default()]),
            authorization,
        ))
        .await
        .map(drop),
    ));
    assert_eq!(
        results.len(),
        17,
        "every RPC of FlightService, metadata commands included"
    );
    for (name, result) in results {
        let status = result.expect_err(name);
        assert_eq!(status.code(), Code::Unauthenticated, "{name}: {status:?}");
        assert!(
            status.message().contains(expect),
            "{name}: {:?} lacks {expect:?}",
            status.message()
        );
    }
}

/// A ticket for `SELECT 1`, from a logged-in client.
async fn ticket(server: &TestServer) -> Ticket {
    let mut client = server.client().await;
    client.handshake("ann", "ann-pw").await.unwrap();
    let info = client.execute("SELECT 1".into(), None).await.unwrap();
    info.endpoint[0].ticket.clone().unwrap()
}

#[tokio::test]
async fn every_rpc_needs_credentials() {
    let server = start(3600).await;
    let ticket = ticket(&server).await;
    every_rpc_is_refused(&server, None, &ticket, "authentication required").await;
    let wrong = basic("ann", "not-the-password");
    every_rpc_is_refused(
        &server,
        Some(&wrong),
        &ticket,
        "invalid user name or password",
    )
    .await;
    let unknown = basic("mallory", "ann-pw");
    every_rpc_is_refused(
        &server,
        Some(&unknown),
        &ticket,
        "invalid user name or password",
    )
    .await;
    every_rpc_is_refused(
        &server,
        Some("Bearer not.a.token"),
        &ticket,
        "invalid token",
    )
    .await;

    // The arrow-flight client's login surfaces the refusal.
    let mut client = server.client().await;
    let err = client.handshake("ann", "wrong").await.unwrap_err();
    assert!(
        err.to_string().contains("invalid user name or password"),
        "{err}"
    );
}

#[tokio::test]
async fn expired_tokens_are_refused() {
    let server = start(1).await;
    let mut client = server.client().await;
    let payload = client.handshake("ann", "ann-pw").await.unwrap();
    let token = String::from_utf8(payload.to_vec()).unwrap();
    let ticket = {
        let info = client.execute("SELECT 1".into(), None).await.unwrap();
        info.endpoint[0].ticket.clone().unwrap()
    };
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let bearer = format!("Bearer {token}");
    every_rpc_is_refused(&server, Some(&bearer), &ticket, "token expired").await;
    // ... also as the password of a Basic login, which then falls back to the password check.
    every_rpc_is_refused(&server, Some(&basic("ann", &token)), &ticket, "invalid").await;
    // Logging in again gives a fresh token. (A new client: arrow-flight's client would send
    // its old token in place of the Basic credentials.)
    let mut client = server.client().await;
    client.handshake("ann", "ann-pw").await.unwrap();
    assert_eq!(
        scalar_i64(&query(&mut client, "SELECT 3").await.unwrap()),
        3
    );
}

#[tokio::test]
async fn login_gives_a_bearer_token_usable_as_header_and_as_password() {
    let server = start(3600).await;
    // The handshake answers `authorization: Bearer <token>` in its headers and the token as
    // its payload.
    let mut raw = FlightServiceClient::new(server.channel().await);
    let response = raw
        .handshake(with_auth(
            futures::stream::iter([HandshakeRequest::default()]),
            Some(&basic("bob", "bob-pw")),
        ))
        .await
        .unwrap();
    let header = response
        .metadata()
        .get("authorization")
        .expect("authorization header")
        .to_str()
        .unwrap()
        .to_string();
    let mut answers = response.into_inner();
    let payload = answers.message().await.unwrap().unwrap().payload;
    let token = header.strip_prefix("Bearer ").expect("Bearer scheme");
    assert_eq!(token.as_bytes(), payload.as_ref());

    // The arrow-flight client keeps the token and sends it on every call.
    let mut client = server.client().await;
    client.handshake("bob", "bob-pw").await.unwrap();
    assert_eq!(
        scalar_i64(&query(&mut client, "SELECT 2").await.unwrap()),
        2
    );

    // Tools that only know user/password can pass the token as the password.
    let mut by_token = server.client().await;
    by_token.set_header("authorization", basic("bob", token));
    assert_eq!(
        scalar_i64(&query(&mut by_token, "SELECT 5").await.unwrap()),
        5
    );
    // ... but only as its own user's.
    let mut stolen = server.client().await;
    stolen.set_header("authorization", basic("ann", token));
    let err = query(&mut stolen, "SELECT 5").await.unwrap_err();
    assert_eq!(code(&err), Code::Unauthenticated);

    // Basic credentials on each call work too.
    let mut basic_client = server.client().await;
    basic_client.set_header("authorization", basic("ann", "ann-pw"));
    assert_eq!(
        scalar_i64(&query(&mut basic_client, "SELECT 6").await.unwrap()),
        6
    );

    // Our own client logs in with ConnectOptions.
    let options = lakehouse_client::ConnectOptions {
        login: Some(("bob".into(), "bob-pw".into())),
        ..Default::default()
    };
    let mut ours = lakehouse_client::Client::connect_with(&server.url(), options)
        .await
        .unwrap();
    assert_eq!(ours.query_collect("SELECT 1").await.unwrap().len(), 1);
    let wrong = lakehouse_client::ConnectOptions {
        login: Some(("bob".into(), "nope".into())),
        ..Default::default()
    };
    let err = lakehouse_client::Client::connect_with(&server.url(), wrong)
        .await
        .unwrap_err();
    assert!(matches!(err, lakehouse_client::Error::Login(_)), "{err}");
}

#[tokio::test]
async fn read_users_cannot_write() {
    let server = start(3600).await;
    let mut ann = server.client().await;
    ann.handshake("ann", "ann-pw").await.unwrap();
    let mut bob = server.client().await;
    bob.handshake("bob", "bob-pw").await.unwrap();

    assert_eq!(
        ann.execute_update("CREATE TABLE t (id BIGINT)".into(), None)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        ann.execute_update("INSERT INTO t VALUES (1), (2)".into(), None)
            .await
            .unwrap(),
        2
    );
    // bob reads ...
    assert_eq!(
        scalar_i64(&query(&mut bob, "SELECT count(*) FROM t").await.unwrap()),
        2
    );
    // ... and every way of writing is refused, naming the user and the role.
    let denied = |err: arrow_flight::error::FlightError| {
        assert_eq!(code(&err), Code::PermissionDenied, "{err}");
        assert!(
            err.to_string().contains("user 'bob' has role read"),
            "{err}"
        );
    };
    denied(
        bob.execute_update("INSERT INTO t VALUES (3)".into(), None)
            .await
            .unwrap_err(),
    );
    denied(bob.execute("DROP TABLE t".into(), None).await.unwrap_err());
    let mut prepared = bob
        .prepare("INSERT INTO t VALUES (4)".into(), None)
        .await
        .unwrap();
    denied(prepared.execute_update().await.unwrap_err());
    denied(prepared.execute().await.unwrap_err());
    let batch = arrow::record_batch::RecordBatch::try_from_iter([(
        "id",
        std::sync::Arc::new(arrow::array::Int64Array::from(vec![9])) as _,
    )])
    .unwrap();
    let ingest = CommandStatementIngest {
        table: "t".into(),
        table_definition_options: Some(arrow_flight::sql::TableDefinitionOptions {
            if_not_exist: arrow_flight::sql::TableNotExistOption::Fail.into(),
            if_exists: arrow_flight::sql::TableExistsOption::Append.into(),
        }),
        ..Default::default()
    };
    denied(
        bob.execute_ingest(ingest, futures::stream::iter([Ok(batch)]))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        scalar_i64(&query(&mut ann, "SELECT count(*) FROM t").await.unwrap()),
        2,
        "nothing was written by the refused calls"
    );
}

#[tokio::test]
async fn no_auth_is_refused_off_loopback_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = lakehouse_server::ServeConfig {
        storage: dir.path().to_str().unwrap().to_string(),
        ..Default::default()
    };
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let server = lakehouse_server::Server::new(&config).await.unwrap();
    let err = server
        .serve(listener, std::future::pending())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("not a loopback address") && err.contains("--insecure-no-auth"),
        "{err}"
    );

    config.auth.insecure_no_auth = true;
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let server = lakehouse_server::Server::new(&config).await.unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.serve(listener, async {
        let _ = rx.await;
    }));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!task.is_finished(), "serves when forced");
    tx.send(()).unwrap();
    task.await.unwrap().unwrap();

    // Basic auth without users, or with an unusable hash, fails at start with the reason.
    config.auth = AuthConfig {
        mode: AuthMode::Basic,
        ..AuthConfig::default()
    };
    let err = lakehouse_server::Server::new(&config)
        .await
        .err()
        .expect("refused")
        .to_string();
    assert!(err.contains("at least one"), "{err}");
    config.auth.users = vec![UserConfig {
        name: "ann".into(),
        password_hash: "plain".into(),
        role: Role::Read,
    }];
    let err = lakehouse_server::Server::new(&config)
        .await
        .err()
        .expect("refused")
        .to_string();
    assert!(
        err.contains("'ann'") && err.contains("password_hash"),
        "{err}"
    );
}

/// Lakehouse's Rust client in every security mode: statement and prepared queries, catalogs,
/// schemas, tables, table types, and a file ingest.
#[tokio::test]
async fn the_rust_client_in_every_security_mode() {
    use lakehouse_tests::{SecureServer, Security};
    for security in Security::ALL {
        let secure = SecureServer::start(security, |_| {}).await;
        let mut client = secure.lakehouse_client().await;
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("cities.csv");
        std::fs::write(&csv, "id,city\n1,Lisbon\n2,Porto\n").unwrap();
        let options = lakehouse_client::IngestFileOptions {
            table: "cities".into(),
            ..Default::default()
        };
        let result = client.ingest_file(&csv, &options, |_| {}).await.unwrap();
        assert_eq!(result.rows, 2, "{security:?}");
        let batches = client
            .query_collect("SELECT city FROM cities ORDER BY id")
            .await
            .unwrap();
        assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 2);

        let sql = client.flight_sql();
        let mut prepared = sql
            .prepare("SELECT count(*) FROM cities WHERE id > ?".into(), None)
            .await
            .unwrap();
        prepared
            .set_parameters(
                arrow::record_batch::RecordBatch::try_from_iter([(
                    "id",
                    std::sync::Arc::new(arrow::array::Int64Array::from(vec![1])) as _,
                )])
                .unwrap(),
            )
            .unwrap();
        let info = prepared.execute().await.unwrap();
        assert_eq!(
            scalar_i64(&lakehouse_tests::fetch(sql, info).await.unwrap()),
            1
        );
        prepared.close().await.unwrap();
        for info in [
            sql.get_catalogs().await.unwrap(),
            sql.get_db_schemas(CommandGetDbSchemas::default())
                .await
                .unwrap(),
            sql.get_tables(CommandGetTables {
                include_schema: true,
                ..Default::default()
            })
            .await
            .unwrap(),
            sql.get_table_types().await.unwrap(),
        ] {
            let rows: usize = lakehouse_tests::fetch(sql, info)
                .await
                .unwrap()
                .iter()
                .map(|b| b.num_rows())
                .sum();
            assert!(rows >= 1, "{security:?}");
        }
    }
}
