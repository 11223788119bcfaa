//! Handshake, GetSqlInfo and the metadata commands, with schemas checked against the Flight SQL
//! spec (FlightSql.proto), written out here independently of the server's builders.

use arrow::array::{AsArray, BinaryArray, StringArray};
use arrow::datatypes::{DataType, Field, Schema, UInt32Type, UnionMode};
use arrow::ipc::convert::try_schema_from_ipc_buffer;
use arrow_flight::sql::{CommandGetDbSchemas, CommandGetTables, SqlInfo};
use lakehouse_catalog::WriteMode;
use lakehouse_tests::{TestServer, fetch, fetch_with_schema, open_catalog, people, write};

fn utf8(name: &str, nullable: bool) -> Field {
    Field::new(name, DataType::Utf8, nullable)
}

fn assert_schema(actual: &Schema, expected: &[Field], what: &str) {
    let actual: Vec<_> = actual
        .fields()
        .iter()
        .map(|f| (f.name().clone(), f.data_type().clone(), f.is_nullable()))
        .collect();
    let expected: Vec<_> = expected
        .iter()
        .map(|f| (f.name().clone(), f.data_type().clone(), f.is_nullable()))
        .collect();
    assert_eq!(actual, expected, "{what} schema");
}

fn strings(batches: &[arrow::array::RecordBatch], column: usize) -> Vec<String> {
    batches
        .iter()
        .flat_map(|b| {
            let c: &StringArray = b.column(column).as_string();
            c.iter()
                .map(|v| v.unwrap_or("<null>").to_string())
                .collect::<Vec<_>>()
        })
        .collect()
}

#[tokio::test]
async fn handshake_without_credentials_succeeds() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let mut raw = client.inner().clone();
    let request = futures::stream::iter([arrow_flight::HandshakeRequest::default()]);
    let response = raw.handshake(request).await.expect("handshake");
    let mut stream = response.into_inner();
    use futures::StreamExt;
    assert!(stream.next().await.expect("one response").is_ok());
    // The Basic-auth form clients send also succeeds while auth is off.
    client
        .handshake("anyone", "anything")
        .await
        .expect("basic handshake");
}

#[tokio::test]
async fn sql_info_has_the_keys_clients_need() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let info = client.get_sql_info(vec![]).await.expect("get_sql_info");
    let batches = fetch(&mut client, info).await.expect("do_get");
    let schema = batches[0].schema();
    assert_eq!(schema.field(0).name(), "info_name");
    assert_eq!(schema.field(0).data_type(), &DataType::UInt32);
    assert!(!schema.field(0).is_nullable());
    assert_eq!(schema.field(1).name(), "value");
    let DataType::Union(fields, UnionMode::Dense) = schema.field(1).data_type() else {
        panic!(
            "value must be a dense union, is {}",
            schema.field(1).data_type()
        );
    };
    let names: Vec<_> = fields.iter().map(|(_, f)| f.name().as_str()).collect();
    assert_eq!(
        names,
        [
            "string_value",
            "bool_value",
            "bigint_value",
            "int32_bitmask",
            "string_list",
            "int32_to_int32_list_map"
        ]
    );
    let ids: Vec<u32> = batches
        .iter()
        .flat_map(|b| b.column(0).as_primitive::<UInt32Type>().values().to_vec())
        .collect();
    let required = [
        SqlInfo::FlightSqlServerName,
        SqlInfo::FlightSqlServerVersion,
        SqlInfo::FlightSqlServerArrowVersion,
        SqlInfo::FlightSqlServerReadOnly,
        SqlInfo::FlightSqlServerSql,
        SqlInfo::FlightSqlServerTransaction,
        SqlInfo::FlightSqlServerCancel,
        SqlInfo::FlightSqlServerBulkIngestion,
        SqlInfo::FlightSqlServerStatementTimeout,
        SqlInfo::SqlDdlCatalog,
        SqlInfo::SqlDdlSchema,
        SqlInfo::SqlDdlTable,
        SqlInfo::SqlIdentifierCase,
        SqlInfo::SqlIdentifierQuoteChar,
        SqlInfo::SqlQuotedIdentifierCase,
        SqlInfo::SqlNullOrdering,
        SqlInfo::SqlKeywords,
        SqlInfo::SqlNumericFunctions,
        SqlInfo::SqlStringFunctions,
        SqlInfo::SqlSystemFunctions,
        SqlInfo::SqlDatetimeFunctions,
        SqlInfo::SqlSearchStringEscape,
        SqlInfo::SqlSupportsColumnAliasing,
        SqlInfo::SqlMaxColumnNameLength,
        SqlInfo::SqlDefaultTransactionIsolation,
    ];
    for key in required {
        assert!(ids.contains(&(key as u32)), "SqlInfo {key:?} missing");
    }

    // Asking for specific keys returns exactly those.
    let info = client
        .get_sql_info(vec![SqlInfo::FlightSqlServerName, SqlInfo::SqlKeywords])
        .await
        .unwrap();
    let batches = fetch(&mut client, info).await.unwrap();
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    assert_eq!(rows, 2);
}

#[tokio::test]
async fn metadata_over_an_empty_catalog() {
    let server = TestServer::start().await;
    let mut client = server.client().await;

    let info = client.get_catalogs().await.unwrap();
    let batches = fetch(&mut client, info.clone()).await.unwrap();
    assert_schema(
        &info.try_decode_schema().unwrap(),
        &[utf8("catalog_name", false)],
        "GetCatalogs",
    );
    assert_eq!(strings(&batches, 0), ["lakehouse"]);

    let info = client
        .get_db_schemas(CommandGetDbSchemas::default())
        .await
        .unwrap();
    let batches = fetch(&mut client, info.clone()).await.unwrap();
    let expected = [utf8("catalog_name", true), utf8("db_schema_name", false)];
    assert_schema(
        &info.try_decode_schema().unwrap(),
        &expected,
        "GetDbSchemas",
    );
    assert_schema(&batches[0].schema(), &expected, "GetDbSchemas stream");
    assert_eq!(strings(&batches, 1), ["public"]);

    for include_schema in [false, true] {
        let info = client
            .get_tables(CommandGetTables {
                include_schema,
                ..Default::default()
            })
            .await
            .unwrap();
        let (stream_schema, batches) = fetch_with_schema(&mut client, info.clone()).await.unwrap();
        let mut expected = vec![
            utf8("catalog_name", true),
            utf8("db_schema_name", true),
            utf8("table_name", false),
            utf8("table_type", false),
        ];
        if include_schema {
            expected.push(Field::new("table_schema", DataType::Binary, false));
        }
        assert_schema(&info.try_decode_schema().unwrap(), &expected, "GetTables");
        assert_schema(&stream_schema, &expected, "GetTables stream");
        assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 0);
    }

    let info = client.get_table_types().await.unwrap();
    let batches = fetch(&mut client, info.clone()).await.unwrap();
    assert_schema(
        &info.try_decode_schema().unwrap(),
        &[utf8("table_type", false)],
        "GetTableTypes",
    );
    assert_eq!(strings(&batches, 0), ["TABLE"]);
}

#[tokio::test]
async fn get_tables_lists_tables_with_jdbc_column_metadata() {
    let server = TestServer::start().await;
    let catalog = open_catalog(&server.storage()).await;
    write(&catalog, "people", WriteMode::Create, people(0..3))
        .await
        .unwrap();
    write(&catalog, "zeta", WriteMode::Create, people(0..1))
        .await
        .unwrap();
    let mut client = server.client().await;

    let info = client
        .get_tables(CommandGetTables {
            include_schema: true,
            table_name_filter_pattern: Some("peo%".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let batches = fetch(&mut client, info).await.unwrap();
    assert_eq!(strings(&batches, 0), ["lakehouse"]);
    assert_eq!(strings(&batches, 1), ["public"]);
    assert_eq!(strings(&batches, 2), ["people"]);
    assert_eq!(strings(&batches, 3), ["TABLE"]);
    let ipc: &BinaryArray = batches[0].column(4).as_binary();
    let schema = try_schema_from_ipc_buffer(ipc.value(0)).expect("IPC schema");
    let id = schema.field_with_name("id").unwrap();
    assert_eq!(id.data_type(), &DataType::Int64);
    assert!(!id.is_nullable());
    let md = id.metadata();
    assert_eq!(md["ARROW:FLIGHT:SQL:TYPE_NAME"], "BIGINT");
    assert_eq!(md["ARROW:FLIGHT:SQL:CATALOG_NAME"], "lakehouse");
    assert_eq!(md["ARROW:FLIGHT:SQL:DB_SCHEMA_NAME"], "public");
    assert_eq!(md["ARROW:FLIGHT:SQL:TABLE_NAME"], "people");
    assert_eq!(md["ARROW:FLIGHT:SQL:PRECISION"], "19");
    assert_eq!(md["ARROW:FLIGHT:SQL:IS_SEARCHABLE"], "1");
    let name = schema.field_with_name("name").unwrap();
    assert_eq!(name.metadata()["ARROW:FLIGHT:SQL:TYPE_NAME"], "VARCHAR");
    assert_eq!(name.metadata()["ARROW:FLIGHT:SQL:IS_CASE_SENSITIVE"], "1");

    // Filters: unknown schema pattern and table type give nothing; catalog filter matches.
    for request in [
        CommandGetTables {
            db_schema_filter_pattern: Some("nope".into()),
            ..Default::default()
        },
        CommandGetTables {
            table_types: vec!["VIEW".into()],
            ..Default::default()
        },
        CommandGetTables {
            catalog: Some("other".into()),
            ..Default::default()
        },
    ] {
        let info = client.get_tables(request.clone()).await.unwrap();
        let rows: usize = fetch(&mut client, info)
            .await
            .unwrap()
            .iter()
            .map(|b| b.num_rows())
            .sum();
        assert_eq!(rows, 0, "{request:?}");
    }
    let info = client
        .get_tables(CommandGetTables::default())
        .await
        .unwrap();
    let batches = fetch(&mut client, info).await.unwrap();
    assert_eq!(strings(&batches, 2), ["people", "zeta"]);
}

#[tokio::test]
async fn get_schema_answers_for_statements() {
    let server = TestServer::start().await;
    let catalog = open_catalog(&server.storage()).await;
    write(&catalog, "people", WriteMode::Create, people(0..3))
        .await
        .unwrap();
    let client = server.client().await;
    let mut raw = client.inner().clone();
    use arrow_flight::sql::{CommandStatementQuery, ProstMessageExt};
    use prost::Message;
    let cmd = CommandStatementQuery {
        query: "SELECT name, id * 2 AS twice FROM people".into(),
        transaction_id: None,
    };
    let descriptor = arrow_flight::FlightDescriptor::new_cmd(cmd.as_any().encode_to_vec());
    let result = raw
        .get_schema(descriptor)
        .await
        .expect("GetSchema")
        .into_inner();
    let schema = Schema::try_from(&result).expect("schema");
    assert_eq!(schema.field(0).name(), "name");
    assert_eq!(schema.field(0).data_type(), &DataType::Utf8);
    assert_eq!(schema.field(1).name(), "twice");
    assert_eq!(schema.field(1).data_type(), &DataType::Int64);
}
