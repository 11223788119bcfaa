//! Bind parameters on prepared statements: `?` placeholders, the parameter schema, values bound
//! by DoPut (carried in the stateless handle), and the errors for wrong bindings.

use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, Int32Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::DataType;
use lakehouse_catalog::WriteMode;
use lakehouse_tests::{TestServer, code, column_i64, fetch, open_catalog, people, write};
use tonic::Code;

fn batch(columns: Vec<(&str, ArrayRef)>) -> RecordBatch {
    RecordBatch::try_from_iter(columns).unwrap()
}

#[tokio::test]
async fn question_mark_parameters_bind_and_rebind() {
    let server = TestServer::start().await;
    let catalog = open_catalog(&server.storage()).await;
    write(&catalog, "people", WriteMode::Create, people(0..100))
        .await
        .unwrap();
    let mut client = server.client().await;

    let mut prepared = client
        .prepare(
            "SELECT id, name FROM people WHERE id >= ? AND name <> ? AND name <> '?' ORDER BY id"
                .into(),
            None,
        )
        .await
        .unwrap();
    let params = prepared.parameter_schema().unwrap().clone();
    let names: Vec<_> = params.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(names, ["$1", "$2"]);
    assert_eq!(params.field(0).data_type(), &DataType::Int64);
    assert_eq!(params.field(1).data_type(), &DataType::Utf8);

    // Int32 binds to the Int64 parameter (cast to the inferred type).
    prepared
        .set_parameters(batch(vec![
            ("a", Arc::new(Int32Array::from(vec![95])) as ArrayRef),
            ("b", Arc::new(StringArray::from(vec!["n97"])) as ArrayRef),
        ]))
        .unwrap();
    let info = prepared.execute().await.unwrap();
    let rows = fetch(&mut client, info).await.unwrap();
    let ids = column_i64(&rows, "id");
    assert_eq!(ids, [95, 96, 98, 99]);

    // Re-binding the same prepared statement.
    prepared
        .set_parameters(batch(vec![
            ("a", Arc::new(Int64Array::from(vec![99])) as ArrayRef),
            ("b", Arc::new(StringArray::from(vec!["x"])) as ArrayRef),
        ]))
        .unwrap();
    let info = prepared.execute().await.unwrap();
    let rows = fetch(&mut client, info).await.unwrap();
    assert_eq!(rows.iter().map(|b| b.num_rows()).sum::<usize>(), 1);
    assert_eq!(rows[0].column(1).as_string::<i32>().value(0), "n99");
    prepared.close().await.unwrap();
}

#[tokio::test]
async fn wrong_bindings_are_invalid_argument() {
    let server = TestServer::start().await;
    let catalog = open_catalog(&server.storage()).await;
    write(&catalog, "people", WriteMode::Create, people(0..10))
        .await
        .unwrap();
    let mut client = server.client().await;

    // Executing without binding.
    let mut prepared = client
        .prepare("SELECT * FROM people WHERE id = ?".into(), None)
        .await
        .unwrap();
    let err = prepared.execute().await.unwrap_err();
    assert_eq!(code(&err), Code::InvalidArgument);
    assert!(err.to_string().contains("$1"), "{err}");

    // Too many values.
    let two = batch(vec![
        ("a", Arc::new(Int64Array::from(vec![1])) as ArrayRef),
        ("b", Arc::new(Int64Array::from(vec![2])) as ArrayRef),
    ]);
    prepared.set_parameters(two).unwrap();
    let err = prepared.execute().await.unwrap_err();
    assert_eq!(code(&err), Code::InvalidArgument);
    assert!(
        err.to_string().contains("1 parameter(s), 2 value(s)"),
        "{err}"
    );

    // A value that cannot be the parameter's type.
    let text = batch(vec![(
        "a",
        Arc::new(StringArray::from(vec!["seven"])) as ArrayRef,
    )]);
    prepared.set_parameters(text).unwrap();
    let err = prepared.execute().await.unwrap_err();
    assert_eq!(code(&err), Code::InvalidArgument);
    assert!(err.to_string().contains("parameter $1"), "{err}");

    // Two rows for a query.
    let rows = batch(vec![(
        "a",
        Arc::new(Int64Array::from(vec![1, 2])) as ArrayRef,
    )]);
    prepared.set_parameters(rows).unwrap();
    let err = prepared.execute().await.unwrap_err();
    assert_eq!(code(&err), Code::InvalidArgument);
    assert!(err.to_string().contains("one row"), "{err}");

    // The server still answers.
    let one = batch(vec![("a", Arc::new(Int64Array::from(vec![3])) as ArrayRef)]);
    prepared.set_parameters(one).unwrap();
    let info = prepared.execute().await.unwrap();
    assert_eq!(fetch(&mut client, info).await.unwrap()[0].num_rows(), 1);
}

#[tokio::test]
async fn insert_parameters_one_row_or_a_batch_in_one_commit() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    client
        .execute_update(
            "CREATE TABLE items (id BIGINT NOT NULL, label VARCHAR)".into(),
            None,
        )
        .await
        .unwrap();
    let catalog = open_catalog(&server.storage()).await;
    let table = lakehouse_catalog::TableRef::new("public", "items").unwrap();

    // A batch of parameter rows (JDBC executeBatch, ADBC executemany): one commit.
    let mut insert = client
        .prepare("INSERT INTO items VALUES (?, ?)".into(), None)
        .await
        .unwrap();
    insert
        .set_parameters(batch(vec![
            ("a", Arc::new(Int32Array::from(vec![1, 2, 3])) as ArrayRef),
            (
                "b",
                Arc::new(StringArray::from(vec![Some("one"), None, Some("three")])),
            ),
        ]))
        .unwrap();
    assert_eq!(insert.execute_update().await.unwrap(), 3);
    let manifest = catalog.table(&table).await.unwrap();
    assert_eq!((manifest.version.0, manifest.total_rows), (2, 3));

    // One row through the query path (ADBC's cursor.execute with parameters).
    insert
        .set_parameters(batch(vec![
            ("a", Arc::new(Int64Array::from(vec![4])) as ArrayRef),
            ("b", Arc::new(StringArray::from(vec!["four"]))),
        ]))
        .unwrap();
    let info = insert.execute().await.unwrap();
    let counted = fetch(&mut client, info).await.unwrap();
    assert_eq!(lakehouse_tests::scalar_i64(&counted), 1);
    // Redeeming the ticket again does not insert again.
    let rows = lakehouse_tests::query(&mut client, "SELECT id, label FROM items ORDER BY id")
        .await
        .unwrap();
    let ids = column_i64(&rows, "id");
    assert_eq!(ids, [1, 2, 3, 4]);
    let labels: Vec<Option<String>> = rows
        .iter()
        .flat_map(|b| {
            b.column(1)
                .as_string::<i32>()
                .iter()
                .map(|s| s.map(String::from))
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(
        labels,
        [
            Some("one".into()),
            None,
            Some("three".into()),
            Some("four".into())
        ]
    );

    // Bad rows: the row and parameter are named; nothing is written.
    insert
        .set_parameters(batch(vec![
            ("a", Arc::new(StringArray::from(vec!["5", "x"])) as ArrayRef),
            ("b", Arc::new(StringArray::from(vec!["five", "ex"]))),
        ]))
        .unwrap();
    let err = insert.execute_update().await.unwrap_err();
    assert_eq!(code(&err), Code::InvalidArgument);
    assert!(
        err.to_string().contains("parameter $1 (parameter row 2)"),
        "{err}"
    );
    insert
        .set_parameters(batch(vec![(
            "a",
            Arc::new(Int64Array::from(vec![5, 6])) as ArrayRef,
        )]))
        .unwrap();
    let err = insert.execute_update().await.unwrap_err();
    assert!(
        err.to_string().contains("2 parameter(s), 1 value(s)"),
        "{err}"
    );
    // A NULL key violates NOT NULL.
    insert
        .set_parameters(batch(vec![
            (
                "a",
                Arc::new(Int64Array::from(vec![Some(7), None])) as ArrayRef,
            ),
            ("b", Arc::new(StringArray::from(vec!["seven", "null"]))),
        ]))
        .unwrap();
    assert!(insert.execute_update().await.is_err());
    // Unbound parameters.
    let err = client
        .execute_update("INSERT INTO items VALUES (?, 'x')".into(), None)
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("no value bound for parameter(s) $1"),
        "{err}"
    );
    // Several rows for a statement other than INSERT.
    let mut ctas = client
        .prepare("CREATE TABLE other AS SELECT ? AS v".into(), None)
        .await
        .unwrap();
    ctas.set_parameters(batch(vec![(
        "v",
        Arc::new(Int64Array::from(vec![1, 2])) as ArrayRef,
    )]))
    .unwrap();
    let err = ctas.execute_update().await.unwrap_err();
    assert!(
        err.to_string().contains("only INSERT takes several rows"),
        "{err}"
    );
    let manifest = catalog.table(&table).await.unwrap();
    assert_eq!((manifest.version.0, manifest.total_rows), (3, 4));
}
