//! The Arrow Flight SQL JDBC driver's call sequence (what DBeaver does on connect and browse),
//! replayed with arrow-flight's client: the driver jar itself cannot be installed here.
//!
//! Connect: Handshake (Basic credentials in the `authorization` header), GetSqlInfo.
//! Browse: getCatalogs, getSchemas, getTables (without schemas), getTableTypes, getColumns
//! (GetTables with `include_schema`, reading the `ARROW:FLIGHT:SQL:*` field metadata),
//! getTypeInfo (GetXdbcTypeInfo), getPrimaryKeys / getImportedKeys / getExportedKeys /
//! getCrossReference. Query: every statement is a prepared statement — Create, GetFlightInfo,
//! DoGet, Close.

use std::collections::HashSet;

use arrow::array::{AsArray, BinaryArray, RecordBatch};
use arrow::datatypes::{DataType, Int32Type, Schema, UInt32Type};
use arrow::ipc::convert::try_schema_from_ipc_buffer;
use arrow_flight::sql::{
    CommandGetCrossReference, CommandGetDbSchemas, CommandGetExportedKeys, CommandGetImportedKeys,
    CommandGetPrimaryKeys, CommandGetTables, CommandGetXdbcTypeInfo, SqlInfo,
};
use lakehouse_server::sample::Sample;
use lakehouse_tests::{LOGIN, SecureServer, Security, fetch, fetch_with_schema};

fn strings(batches: &[RecordBatch], column: &str) -> Vec<String> {
    batches
        .iter()
        .flat_map(|b| {
            let c = b.column_by_name(column).unwrap().as_string::<i32>();
            c.iter()
                .map(|v| v.unwrap_or("").to_string())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Types the JDBC driver reads without surprises (no view, large or dictionary types).
fn jdbc_readable(data_type: &DataType) -> bool {
    use DataType::*;
    matches!(
        data_type,
        Null | Boolean
            | Int8
            | Int16
            | Int32
            | Int64
            | UInt8
            | UInt16
            | UInt32
            | UInt64
            | Float32
            | Float64
            | Decimal128(_, _)
            | Utf8
            | Binary
            | Date32
            | Time64(_)
            | Timestamp(_, _)
            | Interval(_)
    )
}

#[tokio::test]
async fn jdbc_connect_browse_and_query_sequence() {
    for security in Security::ALL {
        let secure =
            SecureServer::start(security, |c| c.sample = Some(Sample::Tpch { scale: 0.01 })).await;
        jdbc_sequence(&secure).await;
    }
}

async fn jdbc_sequence(secure: &SecureServer) {
    let mut client = secure.connect().await;

    // Connect: Basic handshake. With auth the answer carries `authorization: Bearer <token>`,
    // which the client replays on every later call (arrow-flight's client keeps it as the
    // driver does); without auth any credentials are accepted.
    let payload = client.handshake(LOGIN.0, LOGIN.1).await.expect("handshake");
    assert_eq!(
        !payload.is_empty(),
        secure.security != Security::Plain && secure.security != Security::Tls,
        "a token comes back exactly when auth is on"
    );

    // GetSqlInfo, all keys; the driver caches them and reads SQL_KEYWORDS etc. on connect.
    let info = client.get_sql_info(vec![]).await.unwrap();
    let sql_info = fetch(&mut client, info).await.unwrap();
    let ids: HashSet<u32> = sql_info
        .iter()
        .flat_map(|b| b.column(0).as_primitive::<UInt32Type>().values().to_vec())
        .collect();
    for key in [
        SqlInfo::FlightSqlServerName,
        SqlInfo::FlightSqlServerReadOnly,
        SqlInfo::SqlKeywords,
        SqlInfo::SqlNumericFunctions,
        SqlInfo::SqlStringFunctions,
        SqlInfo::SqlSystemFunctions,
        SqlInfo::SqlDatetimeFunctions,
        SqlInfo::SqlIdentifierQuoteChar,
        SqlInfo::SqlSearchStringEscape,
        SqlInfo::SqlDefaultTransactionIsolation,
    ] {
        assert!(ids.contains(&(key as u32)), "{key:?}");
    }

    // Browse.
    let info = client.get_catalogs().await.unwrap();
    assert_eq!(
        strings(&fetch(&mut client, info).await.unwrap(), "catalog_name"),
        ["lakehouse"]
    );

    let info = client
        .get_db_schemas(CommandGetDbSchemas {
            catalog: Some("lakehouse".into()),
            db_schema_filter_pattern: Some("%".into()),
        })
        .await
        .unwrap();
    assert_eq!(
        strings(&fetch(&mut client, info).await.unwrap(), "db_schema_name"),
        ["public"]
    );

    let info = client
        .get_tables(CommandGetTables {
            catalog: Some("lakehouse".into()),
            db_schema_filter_pattern: Some("%".into()),
            table_name_filter_pattern: Some("%".into()),
            table_types: vec!["TABLE".into(), "VIEW".into()],
            include_schema: false,
        })
        .await
        .unwrap();
    let tables = fetch(&mut client, info).await.unwrap();
    assert_eq!(tables[0].num_columns(), 4);
    assert_eq!(strings(&tables, "table_name").len(), 8);

    let info = client.get_table_types().await.unwrap();
    assert_eq!(
        strings(&fetch(&mut client, info).await.unwrap(), "table_type"),
        ["TABLE"]
    );

    // getColumns("lakehouse", "public", "lineitem", "%").
    let info = client
        .get_tables(CommandGetTables {
            catalog: Some("lakehouse".into()),
            db_schema_filter_pattern: Some("public".into()),
            table_name_filter_pattern: Some("lineitem".into()),
            table_types: vec![],
            include_schema: true,
        })
        .await
        .unwrap();
    let columns = fetch(&mut client, info).await.unwrap();
    let ipc: &BinaryArray = columns[0]
        .column_by_name("table_schema")
        .unwrap()
        .as_binary();
    let schema: Schema = try_schema_from_ipc_buffer(ipc.value(0)).unwrap();
    assert_eq!(schema.fields().len(), 16);
    let mut type_names = HashSet::new();
    for field in schema.fields() {
        let md = field.metadata();
        for key in [
            "CATALOG_NAME",
            "DB_SCHEMA_NAME",
            "TABLE_NAME",
            "TYPE_NAME",
            "IS_AUTO_INCREMENT",
            "IS_CASE_SENSITIVE",
            "IS_READ_ONLY",
            "IS_SEARCHABLE",
            "REMARKS",
        ] {
            assert!(
                md.contains_key(&format!("ARROW:FLIGHT:SQL:{key}")),
                "{} lacks {key}",
                field.name()
            );
        }
        assert_eq!(md["ARROW:FLIGHT:SQL:TABLE_NAME"], "lineitem");
        if let DataType::Decimal128(p, s) = field.data_type() {
            assert_eq!(md["ARROW:FLIGHT:SQL:PRECISION"], p.to_string());
            assert_eq!(md["ARROW:FLIGHT:SQL:SCALE"], s.to_string());
        }
        assert!(
            jdbc_readable(field.data_type()),
            "{}: {}",
            field.name(),
            field.data_type()
        );
        type_names.insert(md["ARROW:FLIGHT:SQL:TYPE_NAME"].clone());
    }

    // getTypeInfo: every type name getColumns reported resolves.
    let info = client
        .get_xdbc_type_info(CommandGetXdbcTypeInfo { data_type: None })
        .await
        .unwrap();
    let types = fetch(&mut client, info).await.unwrap();
    let listed: HashSet<String> = strings(&types, "type_name").into_iter().collect();
    for name in &type_names {
        assert!(listed.contains(name), "GetXdbcTypeInfo lacks {name}");
    }
    // Filtered by JDBC type code (BIGINT = -5).
    let info = client
        .get_xdbc_type_info(CommandGetXdbcTypeInfo {
            data_type: Some(-5),
        })
        .await
        .unwrap();
    let bigint = fetch(&mut client, info).await.unwrap();
    let codes: Vec<i32> = bigint
        .iter()
        .flat_map(|b| {
            b.column_by_name("data_type")
                .unwrap()
                .as_primitive::<Int32Type>()
                .values()
                .to_vec()
        })
        .collect();
    assert!(
        !codes.is_empty() && codes.iter().all(|c| *c == -5),
        "{codes:?}"
    );

    // Keys: empty, with the spec's schemas (never UNIMPLEMENTED).
    let info = client
        .get_primary_keys(CommandGetPrimaryKeys {
            catalog: Some("lakehouse".into()),
            db_schema: Some("public".into()),
            table: "lineitem".into(),
        })
        .await
        .unwrap();
    let (schema, rows) = fetch_with_schema(&mut client, info).await.unwrap();
    let names: Vec<_> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(
        names,
        [
            "catalog_name",
            "db_schema_name",
            "table_name",
            "column_name",
            "key_name",
            "key_sequence"
        ]
    );
    assert_eq!(rows.iter().map(|b| b.num_rows()).sum::<usize>(), 0);
    let foreign = [
        client
            .get_imported_keys(CommandGetImportedKeys {
                catalog: None,
                db_schema: None,
                table: "lineitem".into(),
            })
            .await
            .unwrap(),
        client
            .get_exported_keys(CommandGetExportedKeys {
                catalog: None,
                db_schema: None,
                table: "orders".into(),
            })
            .await
            .unwrap(),
        client
            .get_cross_reference(CommandGetCrossReference {
                pk_catalog: None,
                pk_db_schema: None,
                pk_table: "orders".into(),
                fk_catalog: None,
                fk_db_schema: None,
                fk_table: "lineitem".into(),
            })
            .await
            .unwrap(),
    ];
    for info in foreign {
        let (schema, rows) = fetch_with_schema(&mut client, info).await.unwrap();
        assert_eq!(schema.fields().len(), 13);
        assert_eq!(schema.field(11).name(), "update_rule");
        assert_eq!(schema.field(11).data_type(), &DataType::UInt8);
        assert_eq!(rows.iter().map(|b| b.num_rows()).sum::<usize>(), 0);
    }

    // executeQuery: Create -> GetFlightInfo -> DoGet -> Close.
    let mut prepared = client
        .prepare(
            "SELECT o_orderpriority, count(*) AS n, sum(o_totalprice) AS total, min(o_orderdate) AS first \
             FROM orders GROUP BY 1 ORDER BY 1"
                .into(),
            None,
        )
        .await
        .unwrap();
    let announced = prepared.dataset_schema().unwrap().clone();
    let info = prepared.execute().await.unwrap();
    let (schema, batches) = fetch_with_schema(&mut client, info).await.unwrap();
    assert_eq!(schema.as_ref(), &announced);
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 5);
    for field in schema.fields() {
        assert!(
            jdbc_readable(field.data_type()),
            "{}: {}",
            field.name(),
            field.data_type()
        );
    }
    prepared.close().await.unwrap();
}
