//! `lakehouse ingest` through the Rust client: CSV, NDJSON and Parquet files parsed on the
//! server, content-hash no-ops, and malformed input rejected with nothing written.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, Int64Array, RecordBatch, StringViewArray};
use arrow::datatypes::{DataType, Float64Type, Int64Type};
use lakehouse_client::{FileFormat, IngestFileOptions, IngestMode};
use lakehouse_tests::{TestServer, query, scalar_i64};
use tonic::Code;

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn options(table: &str) -> IngestFileOptions {
    IngestFileOptions {
        table: table.to_string(),
        ..Default::default()
    }
}

fn status(err: &lakehouse_client::Error) -> (Code, String) {
    let s = err.status().unwrap_or_else(|| panic!("no status: {err}"));
    (s.code(), s.message().to_string())
}

fn data_file_count(server: &TestServer, table: &str) -> usize {
    std::fs::read_dir(
        server
            .storage()
            .path()
            .join("tables/public")
            .join(table)
            .join("data"),
    )
    .map(|d| d.count())
    .unwrap_or(0)
}

#[tokio::test]
async fn csv_ingest_infers_types_and_identical_files_are_no_ops() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let first = write(
        dir.path(),
        "orders.csv",
        "id,zip,price,shipped,day\n1,02139,9.5,true,2024-01-02\n2,10001,20,false,2024-02-03\n",
    );
    let mut client = server.lakehouse_client().await;
    let result = client
        .ingest_file(&first, &options("orders"), |_| {})
        .await
        .unwrap();
    assert_eq!((result.version, result.rows, result.no_op), (1, 2, false));
    assert_eq!(result.content_sha256.len(), 64);

    let mut sql = server.client().await;
    let batches = query(&mut sql, "SELECT * FROM orders ORDER BY id")
        .await
        .unwrap();
    let schema = batches[0].schema();
    let types: Vec<_> = schema
        .fields()
        .iter()
        .map(|f| f.data_type().clone())
        .collect();
    assert_eq!(
        types,
        [
            DataType::Int64,
            DataType::Utf8,
            DataType::Float64,
            DataType::Boolean,
            DataType::Date32
        ]
    );
    assert_eq!(batches[0].column(1).as_string::<i32>().value(0), "02139");
    assert_eq!(
        batches[0].column(2).as_primitive::<Float64Type>().value(1),
        20.0
    );

    // The same content again: reported, nothing written.
    let again = client
        .ingest_file(&first, &options("orders"), |_| {})
        .await
        .unwrap();
    assert!(again.no_op, "{again:?}");
    assert_eq!(again.version, 1);
    assert!(again.message.contains("unchanged"), "{}", again.message);
    assert_eq!(data_file_count(&server, "orders"), 1);

    // A different file appends as the next version.
    let second = write(
        dir.path(),
        "more.csv",
        "id,zip,price,shipped,day\n3,00501,1.25,true,2024-03-04\n",
    );
    let result = client
        .ingest_file(&second, &options("orders"), |_| {})
        .await
        .unwrap();
    assert_eq!((result.version, result.rows), (2, 1));
    assert_eq!(
        scalar_i64(
            &query(&mut sql, "SELECT count(*) FROM orders")
                .await
                .unwrap()
        ),
        3
    );

    // Overrides win over inference; progress reports the bytes sent.
    let sent = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let seen = Arc::clone(&sent);
    let opts = IngestFileOptions {
        schema_overrides: "id=Utf8".into(),
        ..options("typed")
    };
    client
        .ingest_file(&second, &opts, move |p| {
            if let lakehouse_client::IngestProgress::Uploaded(n) = p {
                seen.store(n, std::sync::atomic::Ordering::Relaxed)
            }
        })
        .await
        .unwrap();
    assert_eq!(
        sent.load(std::sync::atomic::Ordering::Relaxed),
        std::fs::metadata(&second).unwrap().len()
    );
    let typed = query(&mut sql, "SELECT id FROM typed").await.unwrap();
    assert_eq!(typed[0].schema().field(0).data_type(), &DataType::Utf8);
}

#[tokio::test]
async fn ndjson_is_flattened_and_parquet_view_types_are_normalised() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let json = write(
        dir.path(),
        "events.ndjson",
        "{\"id\": 1, \"user\": {\"name\": \"ann\", \"geo\": {\"lat\": 1.5}}}\n\n{\"id\": 2, \"user\": {\"name\": \"bob\"}}\n",
    );
    let mut client = server.lakehouse_client().await;
    let result = client
        .ingest_file(&json, &options("events"), |_| {})
        .await
        .unwrap();
    assert_eq!(result.rows, 2);
    let mut sql = server.client().await;
    let rows = query(
        &mut sql,
        "SELECT \"user.name\" FROM events WHERE \"user.geo.lat\" IS NULL",
    )
    .await
    .unwrap();
    assert_eq!(rows[0].column(0).as_string::<i32>().value(0), "bob");

    // Parquet written with view types in its embedded Arrow schema (as DataFusion, Polars and
    // tpchgen-cli write it).
    let batch = RecordBatch::try_from_iter(vec![
        ("id", Arc::new(Int64Array::from(vec![1, 2, 3])) as ArrayRef),
        (
            "s",
            Arc::new(StringViewArray::from(vec!["a", "b", "c"])) as ArrayRef,
        ),
    ])
    .unwrap();
    let path = dir.path().join("views.parquet");
    let mut writer = parquet::arrow::ArrowWriter::try_new(
        std::fs::File::create(&path).unwrap(),
        batch.schema(),
        None,
    )
    .unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    let result = client
        .ingest_file(&path, &options("views"), |_| {})
        .await
        .unwrap();
    assert_eq!(result.rows, 3);
    let rows = query(&mut sql, "SELECT s, id FROM views ORDER BY id")
        .await
        .unwrap();
    assert_eq!(rows[0].schema().field(0).data_type(), &DataType::Utf8);
    assert_eq!(rows[0].column(1).as_primitive::<Int64Type>().value(2), 3);
}

#[tokio::test]
async fn malformed_files_are_rejected_whole_with_file_line_and_column() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut client = server.lakehouse_client().await;
    let good = write(dir.path(), "good.csv", "a,b\n1,x\n2,y\n");
    client
        .ingest_file(&good, &options("t"), |_| {})
        .await
        .unwrap();
    let files = data_file_count(&server, "t");

    // Wrong number of fields on line 4 (after many good rows): whole file rejected.
    let mut text = String::from("a,b\n1,x\n2,y\n3\n");
    for i in 0..20_000 {
        text.push_str(&format!("{i},z\n"));
    }
    let bad = write(dir.path(), "bad.csv", &text);
    let err = client
        .ingest_file(&bad, &options("t"), |_| {})
        .await
        .unwrap_err();
    let (code, message) = status(&err);
    assert_eq!(code, Code::InvalidArgument);
    assert!(message.starts_with("bad.csv line 4"), "{message}");

    // A value that does not parse as the column's (overridden) type names line and column.
    let typed = write(dir.path(), "typed.csv", "a,b\n1,x\n2,y\nthree,z\n");
    let opts = IngestFileOptions {
        schema_overrides: "a=Int64".into(),
        ..options("t")
    };
    let (code, message) = status(&client.ingest_file(&typed, &opts, |_| {}).await.unwrap_err());
    assert_eq!(code, Code::InvalidArgument);
    assert!(
        message.starts_with("typed.csv line 4, column `a`"),
        "{message}"
    );

    // Quoted fields spanning lines before the bad row: the line named is the file's line.
    let multi = write(
        dir.path(),
        "multi.csv",
        "a,b\n1,\"two\nlines\"\n2,\"three\nmore\nlines\"\n3\n4,z\n",
    );
    let (code, message) = status(
        &client
            .ingest_file(&multi, &options("t"), |_| {})
            .await
            .unwrap_err(),
    );
    assert_eq!(code, Code::InvalidArgument);
    assert!(message.starts_with("multi.csv line 7"), "{message}");
    let multi_typed = write(
        dir.path(),
        "multi_typed.csv",
        "a,b\n1,\"x\ny\"\n2,\"p\n\nq\"\nthree,z\n5,w\n",
    );
    let (code, message) = status(
        &client
            .ingest_file(&multi_typed, &opts, |_| {})
            .await
            .unwrap_err(),
    );
    assert_eq!(code, Code::InvalidArgument);
    assert!(
        message.starts_with("multi_typed.csv line 7, column `a`"),
        "{message}"
    );
    assert_eq!(
        data_file_count(&server, "t"),
        files,
        "nothing was committed"
    );

    let json = write(dir.path(), "bad.json", "{\"a\": 1}\n{\"a\": 2\n");
    let (code, message) = status(
        &client
            .ingest_file(&json, &options("j"), |_| {})
            .await
            .unwrap_err(),
    );
    assert_eq!(code, Code::InvalidArgument);
    assert!(message.starts_with("bad.json line 2, column"), "{message}");

    let opts = IngestFileOptions {
        schema_overrides: "nope=Int64".into(),
        ..options("t")
    };
    let (_, message) = status(&client.ingest_file(&good, &opts, |_| {}).await.unwrap_err());
    assert!(
        message.contains("`nope`, which is not in the file (columns: a, b)"),
        "{message}"
    );

    let weird = write(dir.path(), "data.xlsx", "a\n1\n");
    let (code, message) = status(
        &client
            .ingest_file(&weird, &options("t"), |_| {})
            .await
            .unwrap_err(),
    );
    assert_eq!(code, Code::InvalidArgument);
    assert!(message.contains("cannot tell the format"), "{message}");

    let empty = write(dir.path(), "empty.csv", "");
    let (_, message) = status(
        &client
            .ingest_file(&empty, &options("t"), |_| {})
            .await
            .unwrap_err(),
    );
    assert!(
        message.contains("empty.csv: the file is empty"),
        "{message}"
    );

    let not_parquet = write(dir.path(), "fake.parquet", "not parquet at all");
    let (_, message) = status(
        &client
            .ingest_file(&not_parquet, &options("t"), |_| {})
            .await
            .unwrap_err(),
    );
    assert!(
        message.starts_with("fake.parquet: not a readable Parquet file"),
        "{message}"
    );

    // Modes.
    let opts = IngestFileOptions {
        mode: IngestMode::Create,
        ..options("t")
    };
    let (code, _) = status(&client.ingest_file(&typed, &opts, |_| {}).await.unwrap_err());
    assert_eq!(code, Code::AlreadyExists);
    let opts = IngestFileOptions {
        mode: IngestMode::Append,
        format: FileFormat::Csv,
        ..options("missing")
    };
    let (code, _) = status(&client.ingest_file(&good, &opts, |_| {}).await.unwrap_err());
    assert_eq!(code, Code::NotFound);

    // Nothing of the rejected files was written or committed.
    assert_eq!(data_file_count(&server, "t"), files);
    let mut sql = server.client().await;
    assert_eq!(
        scalar_i64(&query(&mut sql, "SELECT count(*) FROM t").await.unwrap()),
        2
    );
    let err = client
        .ingest_file(&dir.path().join("absent.csv"), &options("t"), |_| {})
        .await
        .unwrap_err();
    assert!(matches!(err, lakehouse_client::Error::Io { .. }), "{err}");
}

/// A CSV larger than one decoding piece (`CSV_CHUNK_BYTES`), with quoted fields spanning lines
/// throughout: pieces decoded on all cores give the same rows as the file; a value in row
/// 1,000,000 that contradicts the type of the rows before it makes the column text (inference
/// reads the whole file); a malformed row in a later piece names its file line.
#[tokio::test]
async fn large_csv_files_decode_in_pieces_with_whole_file_types_and_exact_lines() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut client = server.lakehouse_client().await;
    let rows = 1_200_000usize;
    let mut text = String::from("id,code,note\n");
    let mut line = 2; // the file line the next row starts on
    let mut bad_line = 0;
    let mut x12_line = 0;
    let mut bad = text.clone();
    for i in 1..=rows {
        let code = if i == 1_000_000 {
            x12_line = line;
            "x12".to_string()
        } else {
            (i % 977).to_string()
        };
        let row = if i % 5_000 == 0 {
            format!("{i},{code},\"two\nlines, {i}\"\n")
        } else {
            format!("{i},{code},n{i}\n")
        };
        text.push_str(&row);
        if i == 1_100_000 {
            bad.push_str(&format!("{i},{code}\n"));
            bad_line = line;
        } else {
            bad.push_str(&row);
        }
        line += row.matches('\n').count();
    }
    assert!(text.len() as u64 > lakehouse_catalog::ingest::CSV_CHUNK_BYTES + 4_000_000);
    let good = write(dir.path(), "big.csv", &text);
    let result = client
        .ingest_file(&good, &options("big"), |_| {})
        .await
        .unwrap();
    assert_eq!(result.rows, rows as u64);
    let mut sql = server.client().await;
    let batches = query(
        &mut sql,
        "SELECT count(*) AS n, sum(id) AS s, count(DISTINCT id) AS d FROM big",
    )
    .await
    .unwrap();
    let n = |name: &str| {
        batches[0]
            .column_by_name(name)
            .unwrap()
            .as_primitive::<Int64Type>()
            .value(0)
    };
    let expected_sum = (rows * (rows + 1) / 2) as i64;
    assert_eq!(
        (n("n"), n("s"), n("d")),
        (rows as i64, expected_sum, rows as i64)
    );
    let typed = query(
        &mut sql,
        "SELECT code, note FROM big WHERE id IN (1000000, 1105000) ORDER BY id",
    )
    .await
    .unwrap();
    assert_eq!(
        typed[0].schema().field(0).data_type(),
        &DataType::Utf8,
        "code became text"
    );
    let notes: Vec<String> = typed
        .iter()
        .flat_map(|b| {
            arrow::compute::cast(b.column(1), &DataType::Utf8)
                .unwrap()
                .as_string::<i32>()
                .iter()
                .map(|v| v.unwrap().to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(notes, ["two\nlines, 1000000", "two\nlines, 1105000"]);

    // With `code` given as text no later value contradicts the first piece's schema, so every
    // piece is decoded once, while the upload streams: the same rows as the re-decoded file.
    let as_text = IngestFileOptions {
        schema_overrides: "code=Utf8".into(),
        ..options("streamed")
    };
    let result = client.ingest_file(&good, &as_text, |_| {}).await.unwrap();
    assert_eq!(result.rows, rows as u64);
    let same = query(
        &mut sql,
        "SELECT count(*) AS n FROM big b JOIN streamed s \
         ON b.id = s.id AND b.code = s.code AND b.note = s.note",
    )
    .await
    .unwrap();
    assert_eq!(
        same[0].column(0).as_primitive::<Int64Type>().value(0),
        rows as i64
    );

    let files = data_file_count(&server, "big");
    // With the column forced to Int64, row 1,000,000 (decoded in a later piece) is named by
    // its file line and column.
    let forced = IngestFileOptions {
        schema_overrides: "code=Int64".into(),
        ..options("forced")
    };
    let (code, message) = status(
        &client
            .ingest_file(&good, &forced, |_| {})
            .await
            .unwrap_err(),
    );
    assert_eq!(code, Code::InvalidArgument);
    assert!(
        message.starts_with(&format!("big.csv line {x12_line}, column `code`")),
        "expected line {x12_line}: {message}"
    );
    let bad = write(dir.path(), "bad_big.csv", &bad);
    let (code, message) = status(
        &client
            .ingest_file(&bad, &options("big"), |_| {})
            .await
            .unwrap_err(),
    );
    assert_eq!(code, Code::InvalidArgument);
    assert!(
        message.starts_with(&format!("bad_big.csv line {bad_line}")),
        "expected line {bad_line}: {message}"
    );
    assert_eq!(
        data_file_count(&server, "big"),
        files,
        "nothing was committed"
    );
}

/// An upload cut off mid-stream (fewer bytes than the command announced, as when the client
/// dies) commits nothing and leaves no data file; the same file sent whole then ingests.
#[tokio::test]
async fn an_upload_cut_off_mid_stream_commits_nothing() {
    use futures::StreamExt;
    let server = TestServer::start().await;
    let mut text = String::from("id,name\n");
    for i in 0..50_000 {
        text.push_str(&format!("{i},name-{i}\n"));
    }
    let command = lakehouse_proto::CommandIngestFile {
        table: "cut".into(),
        file_name: "cut.csv".into(),
        size_bytes: text.len() as u64,
        ..Default::default()
    };
    let descriptor = arrow_flight::FlightDescriptor::new_cmd(lakehouse_proto::pack_any(&command));
    let first = arrow_flight::FlightData {
        flight_descriptor: Some(descriptor),
        ..Default::default()
    };
    // Half of the bytes, cut in the middle of a row.
    let sent = bytes::Bytes::from(text.clone()).slice(..text.len() / 2);
    let chunks: Vec<_> = sent
        .chunks(64 * 1024)
        .map(|c| arrow_flight::FlightData {
            data_body: bytes::Bytes::copy_from_slice(c),
            ..Default::default()
        })
        .collect();
    let upload = futures::stream::iter(std::iter::once(first).chain(chunks)).boxed();
    let mut client = server.lakehouse_client().await;
    let status = match client.flight_sql().do_put(upload).await {
        Ok(mut answers) => answers
            .next()
            .await
            .expect("an answer")
            .expect_err("an incomplete upload is refused"),
        Err(arrow_flight::error::FlightError::Tonic(status)) => *status,
        Err(other) => panic!("{other}"),
    };
    assert_eq!(status.code(), Code::InvalidArgument, "{status}");
    assert!(status.message().contains("upload incomplete"), "{status}");
    assert_eq!(data_file_count(&server, "cut"), 0, "no data file left");
    let mut sql = server.client().await;
    let missing = query(&mut sql, "SELECT count(*) FROM cut")
        .await
        .unwrap_err();
    assert!(missing.to_string().contains("cut"), "{missing}");

    let dir = tempfile::tempdir().unwrap();
    let whole = write(dir.path(), "cut.csv", &text);
    let result = client
        .ingest_file(&whole, &options("cut"), |_| {})
        .await
        .unwrap();
    assert_eq!(result.rows, 50_000);
}

/// The data files of `table` in the server's storage, with their bytes.
fn data_files(server: &TestServer, table: &str) -> Vec<Vec<u8>> {
    let dir = server
        .storage()
        .path()
        .join("tables/public")
        .join(table)
        .join("data");
    std::fs::read_dir(dir)
        .map(|d| {
            d.map(|e| std::fs::read(e.unwrap().path()).unwrap())
                .collect()
        })
        .unwrap_or_default()
}

/// A Parquet file whose columns already are what the table stores is kept as it is: the data
/// file holds the uploaded bytes (row groups and ZSTD pages untouched); one that needs a change
/// (view types, a `--schema` override) is decoded and written anew. Appends of either kind read
/// back the same rows.
#[tokio::test]
async fn parquet_files_needing_no_change_are_stored_as_they_are() {
    use parquet::basic::{Compression, ZstdLevel};
    use parquet::file::properties::WriterProperties;
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut client = server.lakehouse_client().await;
    let rows = 50_000i64;
    let batch = RecordBatch::try_from_iter(vec![
        (
            "id",
            Arc::new(Int64Array::from_iter_values(0..rows)) as ArrayRef,
        ),
        (
            "name",
            Arc::new(arrow::array::StringArray::from_iter_values(
                (0..rows).map(|i| format!("n{}", i % 100)),
            )) as ArrayRef,
        ),
    ])
    .unwrap();
    let write_parquet = |name: &str, batch: &RecordBatch| {
        let path = dir.path().join(name);
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::default()))
            .set_max_row_group_row_count(Some(20_000))
            .build();
        let mut writer = parquet::arrow::ArrowWriter::try_new(
            std::fs::File::create(&path).unwrap(),
            batch.schema(),
            Some(props),
        )
        .unwrap();
        writer.write(batch).unwrap();
        writer.close().unwrap();
        path
    };
    let plain = write_parquet("plain.parquet", &batch);
    let result = client
        .ingest_file(&plain, &options("kept"), |_| {})
        .await
        .unwrap();
    assert_eq!(result.rows, rows as u64);
    let stored = data_files(&server, "kept");
    assert_eq!(
        stored,
        [std::fs::read(&plain).unwrap()],
        "stored byte for byte"
    );
    let mut sql = server.client().await;
    let total = query(
        &mut sql,
        "SELECT count(*), sum(id), count(DISTINCT name) FROM kept",
    )
    .await
    .unwrap();
    assert_eq!(
        total[0].column(0).as_primitive::<Int64Type>().value(0),
        rows
    );
    assert_eq!(
        total[0].column(1).as_primitive::<Int64Type>().value(0),
        rows * (rows - 1) / 2
    );
    assert_eq!(total[0].column(2).as_primitive::<Int64Type>().value(0), 100);
    // Pruning still works on the kept file's own statistics.
    let one = query(&mut sql, "SELECT name FROM kept WHERE id = 41234")
        .await
        .unwrap();
    assert_eq!(one[0].column(0).as_string::<i32>().value(0), "n34");

    // The same rows with `name` as a view type need normalising: decoded, written anew, and
    // appended next to the kept file.
    let views = RecordBatch::try_from_iter(vec![
        ("id", Arc::clone(batch.column(0))),
        (
            "name",
            arrow::compute::cast(batch.column(1), &DataType::Utf8View).unwrap(),
        ),
    ])
    .unwrap();
    let views = write_parquet("views.parquet", &views);
    let result = client
        .ingest_file(&views, &options("kept"), |_| {})
        .await
        .unwrap();
    assert_eq!(result.rows, rows as u64);
    let stored = data_files(&server, "kept");
    assert_eq!(stored.len(), 2);
    assert!(
        !stored.contains(&std::fs::read(&views).unwrap()),
        "decoded, not copied"
    );
    // An override also means decoding: `id` as text cannot be appended to the Int64 column.
    let forced = IngestFileOptions {
        schema_overrides: "id=Utf8".into(),
        ..options("kept")
    };
    let more = RecordBatch::try_from_iter(vec![
        (
            "id",
            Arc::new(Int64Array::from_iter_values(rows..rows + 10)) as ArrayRef,
        ),
        (
            "name",
            Arc::new(arrow::array::StringArray::from_iter_values(
                (0..10).map(|i| format!("m{i}")),
            )) as ArrayRef,
        ),
    ])
    .unwrap();
    let more = write_parquet("more.parquet", &more);
    let (code, message) = status(
        &client
            .ingest_file(&more, &forced, |_| {})
            .await
            .unwrap_err(),
    );
    assert_eq!(code, Code::InvalidArgument, "{message}");
    assert_eq!(data_files(&server, "kept").len(), 2, "nothing written");
    let total = query(&mut sql, "SELECT count(*) FROM kept").await.unwrap();
    assert_eq!(scalar_i64(&total), 2 * rows);
}

/// An NDJSON file of several pieces is inferred piece by piece and merged as arrow-json
/// merges values: a column of integers meeting `2.5` in a later piece is Float64, a nested
/// field first seen late is a column, and every row arrives; a bad line in a later piece names
/// its line.
#[tokio::test]
async fn large_ndjson_files_infer_in_pieces_with_whole_file_types() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut client = server.lakehouse_client().await;
    let rows = 400_000usize;
    let mut text = String::new();
    let mut bad = String::new();
    for i in 1..=rows {
        let score = if i == 250_000 {
            "2.5".to_string()
        } else {
            i.to_string()
        };
        let extra = if i == 390_000 {
            ", \"user\": {\"late\": \"yes\"}"
        } else {
            ""
        };
        let line = format!(
            "{{\"id\": {i}, \"score\": {score}, \"note\": \"{}\"{extra}}}\n",
            "x".repeat(60)
        );
        text.push_str(&line);
        bad.push_str(if i == 370_000 {
            "{\"id\": 1,,}\n"
        } else {
            &line
        });
    }
    assert!(text.len() as u64 > 2 * lakehouse_catalog::ingest::CSV_CHUNK_BYTES);
    let good = write(dir.path(), "big.ndjson", &text);
    let result = client
        .ingest_file(&good, &options("events"), |_| {})
        .await
        .unwrap();
    assert_eq!(result.rows, rows as u64);
    let mut sql = server.client().await;
    let batches = query(
        &mut sql,
        "SELECT count(*) AS n, sum(id) AS s, max(score) AS m, \
         count(\"user.late\") AS late FROM events",
    )
    .await
    .unwrap();
    let schema = batches[0].schema();
    assert_eq!(schema.field(2).data_type(), &DataType::Float64, "score");
    let b = &batches[0];
    assert_eq!(
        b.column(0).as_primitive::<Int64Type>().value(0),
        rows as i64
    );
    assert_eq!(
        b.column(1).as_primitive::<Int64Type>().value(0),
        (rows * (rows + 1) / 2) as i64
    );
    assert_eq!(
        b.column(2).as_primitive::<Float64Type>().value(0),
        rows as f64
    );
    assert_eq!(b.column(3).as_primitive::<Int64Type>().value(0), 1);
    let bad = write(dir.path(), "bad.ndjson", &bad);
    let (code, message) = status(
        &client
            .ingest_file(&bad, &options("events"), |_| {})
            .await
            .unwrap_err(),
    );
    assert_eq!(code, Code::InvalidArgument);
    assert!(
        message.starts_with("bad.ndjson line 370000, column"),
        "{message}"
    );
}
