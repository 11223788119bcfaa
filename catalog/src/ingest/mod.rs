//! File ingest: CSV, NDJSON and Parquet files parsed with arrow-csv, arrow-json and parquet, and
//! committed as one table version.
//!
//! **Schema inference covers the whole file**, never a sample, so a type holds for every row.
//! CSV columns are typed by the rules of arrow-csv's inference (booleans, integers, floats,
//! dates, timestamps, else Utf8), with one conservative refinement: a number with a leading
//! zero (`007`, zip codes) or beyond `Int64` keeps its column Utf8 ([`csv_types`]). NDJSON
//! uses arrow-json's inference; nested objects become `parent.child` columns
//! ([`RecordBatch::normalize`]). Parquet carries its own schema. View types are normalised to
//! `Utf8`/`Binary`. `--schema name=Type,...` overrides win over inference.
//!
//! **CSV uploads are parsed while they stream in** ([`Catalog::ingest_upload`]): one scan
//! (csv-core, on one thread) spools the bytes, hashes them, types every column from every
//! value and cuts the file into pieces of whole records ([`CSV_CHUNK_BYTES`], quote-aware).
//! The schema the first piece implies is taken as a speculation: pieces are decoded against it
//! by arrow-csv on the other cores and written to Parquet as they complete, in file order. When
//! a later value contradicts it (an `Int64` column meets `2.5` or `n/a`, a Null column meets a
//! value) the speculative files are dropped and, once the upload has ended, the spooled file is
//! decoded again against the whole-file schema — the same answer as typing first, at the cost
//! of a second decode only for such files.
//!
//! NDJSON uploads are parsed while they stream in too: the scan cuts them at line ends, the
//! first piece's schema (arrow-json's inference) is the speculation, and each later piece is
//! decoded against it only when the piece's own schema merges into it unchanged ([`json`]);
//! otherwise the spooled file is inferred in pieces, merged and decoded again. A Parquet upload
//! whose columns need no change is stored as it is, without decoding
//! ([`crate::DataFileWriter::copy_parquet`]); other Parquet files are decoded and rewritten.
//! The first malformed row aborts the ingest with an [`Error::InvalidData`] naming the file,
//! line and column; nothing is committed and the partial data files are deleted.
//!
//! A file whose SHA-256 equals that of a file already ingested into the table's current version
//! is not ingested again ([`IngestOutcome::Unchanged`]).

mod csv;
mod csv_types;
mod json;
mod spool;
mod upload;

pub use upload::IngestReport;

use std::fs::File;
use std::io::{BufRead, BufReader, Seek};
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::error::{Error, Result};
use crate::manifest::Manifest;
use crate::writer::normalize_schema;

/// Rows per parsed batch.
pub const BATCH_ROWS: usize = 8192;

/// Bytes of CSV one decoding thread takes at a time (the piece then ends at the next record
/// start).
pub const CSV_CHUNK_BYTES: u64 = 16 * 1024 * 1024;

/// Input file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    /// Comma-separated values (RFC 4180; delimiter configurable), header line by default.
    Csv,
    /// Newline-delimited JSON: one object per line.
    NdJson,
    /// Apache Parquet.
    Parquet,
}

impl FileFormat {
    /// The format implied by a file name's extension: `.csv`/`.tsv`, `.json`/`.ndjson`/`.jsonl`,
    /// `.parquet`/`.pq`; `None` for anything else.
    pub fn from_file_name(name: &str) -> Option<Self> {
        let extension = Path::new(name).extension()?.to_str()?.to_ascii_lowercase();
        match extension.as_str() {
            "csv" | "tsv" => Some(Self::Csv),
            "json" | "ndjson" | "jsonl" => Some(Self::NdJson),
            "parquet" | "pq" => Some(Self::Parquet),
            _ => None,
        }
    }
}

/// How to read one file.
#[derive(Debug, Clone)]
pub struct FileIngest {
    /// The file's name as the user gave it; used in messages and recorded in the manifest.
    pub name: String,
    /// Its format.
    pub format: FileFormat,
    /// Column types that replace inferred ones ([`parse_schema_overrides`]).
    pub overrides: Vec<(String, DataType)>,
    /// CSV: whether the first line holds column names (else columns are `column_1`, ...).
    pub csv_header: bool,
    /// CSV: the field delimiter (`b'\t'` for `.tsv` files by default).
    pub csv_delimiter: u8,
}

impl FileIngest {
    /// Defaults for `name` in `format`: header on, delimiter `,` (tab for `.tsv`), no overrides.
    pub fn new(name: impl Into<String>, format: FileFormat) -> Self {
        let name = name.into();
        let tsv = name.to_ascii_lowercase().ends_with(".tsv");
        Self {
            name,
            format,
            overrides: Vec::new(),
            csv_header: true,
            csv_delimiter: if tsv { b'\t' } else { b',' },
        }
    }
}

/// What [`Catalog::ingest_file`] did.
#[derive(Debug, Clone)]
pub enum IngestOutcome {
    /// The file's content was already part of the table; nothing was written.
    Unchanged {
        /// The table's current version.
        manifest: Arc<Manifest>,
    },
    /// The file was committed as a new version.
    Committed {
        /// The new version.
        manifest: Arc<Manifest>,
        /// Rows read from the file.
        rows: u64,
    },
}

/// Parses column type overrides: `name=Type` pairs separated by commas, types in Arrow's
/// notation (`Int64`, `Float64`, `Utf8`, `Boolean`, `Date32`, `Decimal128(10, 2)`,
/// `Timestamp(Microsecond, None)`; commas inside parentheses do not separate pairs).
///
/// # Errors
/// [`Error::InvalidData`] naming the pair that is not `name=Type` or the type Arrow does not know.
pub fn parse_schema_overrides(spec: &str) -> Result<Vec<(String, DataType)>> {
    let invalid = |message: String| Error::InvalidData {
        location: "--schema".to_string(),
        message,
    };
    let mut pairs = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    let mut parts = Vec::new();
    for (i, c) in spec.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&spec[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&spec[start..]);
    for part in parts.into_iter().map(str::trim).filter(|p| !p.is_empty()) {
        let (name, type_name) = part
            .split_once('=')
            .ok_or_else(|| invalid(format!("expected name=Type, got {part:?}")))?;
        let data_type = DataType::from_str(type_name.trim()).map_err(|e| {
            invalid(format!(
                "column `{}`: unknown type {:?} ({e})",
                name.trim(),
                type_name.trim()
            ))
        })?;
        pairs.push((name.trim().to_string(), data_type));
    }
    Ok(pairs)
}

/// Reads the whole file at `path` as `spec` describes — the same inference, overrides and
/// NDJSON flattening as [`Catalog::ingest_file`] — into batches of at most [`BATCH_ROWS`] rows
/// (for callers that ingest the rows elsewhere, e.g. as documents). Blocking: call it from a
/// blocking task.
///
/// # Errors
/// [`Error::InvalidData`] naming the file (and line and column where known) for unreadable or
/// malformed input and bad overrides.
pub fn read_file(path: &Path, spec: &FileIngest) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    let inferred = infer_schema(path, spec)?;
    let mut batches = Vec::new();
    read_batches(path, spec, &inferred, &mut |batch| {
        batches.push(batch);
        true
    })?;
    Ok((inferred.schema, batches))
}

fn open(path: &Path, name: &str) -> Result<File> {
    File::open(path).map_err(|e| Error::InvalidData {
        location: name.to_string(),
        message: format!("cannot open: {e}"),
    })
}

fn invalid(spec: &FileIngest, message: impl Into<String>) -> Error {
    Error::InvalidData {
        location: spec.name.clone(),
        message: message.into(),
    }
}

/// The schemas of a file, from one inference pass.
#[derive(Debug)]
struct Inferred {
    /// The schema the table gets (NDJSON flattened to `parent.child` columns).
    schema: SchemaRef,
    /// The schema the file is decoded with: for NDJSON the nested one (flattened after
    /// decoding), otherwise `schema`.
    decode: SchemaRef,
    /// CSV and NDJSON: the pieces the file is decoded in (one for a file below
    /// [`CSV_CHUNK_BYTES`]); empty for Parquet.
    pieces: Vec<Piece>,
    /// Parquet whose columns need no change (no overrides, nothing to normalise): its footer,
    /// so the file can be stored as it is ([`crate::DataFileWriter::copy_parquet`]).
    as_is: Option<Arc<parquet::file::metadata::ParquetMetaData>>,
}

/// A run of whole records: bytes `start..end` of the file. CSV: its first record is record
/// `first_record` of the file (from 0, the header line counted), and the header line is in no
/// piece; NDJSON: whole lines, `first_record` unused (0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Piece {
    start: u64,
    end: u64,
    first_record: usize,
}

/// The schemas the file is ingested with (inference, refinement, overrides, normalisation).
fn infer_schema(path: &Path, spec: &FileIngest) -> Result<Inferred> {
    let file = open(path, &spec.name)?;
    if file.metadata().map(|m| m.len()).unwrap_or(0) == 0 {
        return Err(invalid(spec, "the file is empty"));
    }
    let mut pieces = Vec::new();
    let mut footer = None;
    let inferred = match spec.format {
        FileFormat::Csv => {
            let (schema, found) = csv::scan_file(path, spec)?;
            pieces = found;
            schema
        }
        FileFormat::NdJson => {
            pieces = json::pieces(path, spec)?;
            json::infer(path, spec, &pieces)?
        }
        FileFormat::Parquet => {
            let builder = ParquetRecordBatchReaderBuilder::try_new(file)
                .map_err(|e| invalid(spec, format!("not a readable Parquet file: {e}")))?;
            footer = Some(Arc::clone(builder.metadata()));
            builder.schema().as_ref().clone()
        }
    };
    let mut result = with_overrides(&inferred, spec, pieces)?;
    if spec.overrides.is_empty() && inferred.fields() == result.schema.fields() {
        result.as_is = footer;
    }
    Ok(result)
}

/// The schemas a file with the `inferred` schema is ingested with: `--schema` overrides
/// applied, types normalised, NDJSON flattened.
///
/// # Errors
/// [`Error::InvalidData`] when the file has no columns or an override names a column it does
/// not have.
fn with_overrides(inferred: &Schema, spec: &FileIngest, pieces: Vec<Piece>) -> Result<Inferred> {
    if inferred.fields().is_empty() {
        return Err(invalid(spec, "no columns found"));
    }
    let mut fields: Vec<Field> = inferred
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    for (name, data_type) in &spec.overrides {
        let field = fields
            .iter_mut()
            .find(|f| f.name() == name)
            .ok_or_else(|| {
                let columns: Vec<_> = inferred
                    .fields()
                    .iter()
                    .map(|f| f.name().as_str())
                    .collect();
                invalid(
                    spec,
                    format!(
                        "--schema names column `{name}`, which is not in the file (columns: {})",
                        columns.join(", ")
                    ),
                )
            })?;
        *field = field.clone().with_data_type(data_type.clone());
    }
    let decode = Arc::new(normalize_schema(&Schema::new(fields)));
    let schema = match spec.format {
        FileFormat::NdJson => Arc::new(
            decode
                .normalize(".", None)
                .map_err(|e| invalid(spec, e.to_string()))?,
        ),
        _ => Arc::clone(&decode),
    };
    Ok(Inferred {
        schema,
        decode,
        pieces,
        as_is: None,
    })
}

/// Reads the file in batches conforming to `schema`, handing each to `sink` until it returns
/// false (the consumer stopped).
fn read_batches(
    path: &Path,
    spec: &FileIngest,
    inferred: &Inferred,
    sink: &mut dyn FnMut(RecordBatch) -> bool,
) -> Result<()> {
    let schema = &inferred.decode;
    match spec.format {
        // Pieces on all cores; errors name the file line (and column) of the bad value.
        FileFormat::Csv => decode_in_pieces(
            path,
            spec,
            &inferred.pieces,
            |piece, bytes| {
                csv::decode_piece(&bytes, schema, spec)
                    .map_err(|e| csv::csv_error(path, spec, Some(schema), e, piece.first_record))
            },
            sink,
        )?,
        FileFormat::NdJson => decode_in_pieces(
            path,
            spec,
            &inferred.pieces,
            |_, bytes| json::decode_piece(&bytes, schema).map_err(|e| json_error(path, spec, e)),
            sink,
        )?,
        FileFormat::Parquet => {
            let file = open(path, &spec.name)?;
            let reader = ParquetRecordBatchReaderBuilder::try_new(file)
                .and_then(|b| b.with_batch_size(BATCH_ROWS).build())
                .map_err(|e| invalid(spec, format!("not a readable Parquet file: {e}")))?;
            for batch in reader {
                let batch = batch.map_err(|e| invalid(spec, e.to_string()))?;
                if !sink(batch) {
                    break;
                }
            }
        }
    }
    Ok(())
}

/// Decodes `pieces` of the file at `path`, each read and passed to `decode` with its bytes, a
/// piece per core at once, handing the batches to `sink` in file order until it returns false:
/// the oldest piece is handed on while later ones decode (the Parquet writer consuming them
/// shares the cores; on 2 cores one decoding thread beside it left a core idle half the time).
/// At most that many pieces' bytes and batches are held in memory, plus the one being handed on.
///
/// # Errors
/// The first piece's error, in file order; [`Error::InvalidData`] when the file cannot be read.
fn decode_in_pieces(
    path: &Path,
    spec: &FileIngest,
    pieces: &[Piece],
    decode: impl Fn(&Piece, Vec<u8>) -> Result<Vec<RecordBatch>> + Sync,
    sink: &mut dyn FnMut(RecordBatch) -> bool,
) -> Result<()> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let decode = &decode;
    let read_and_decode = move |piece: &Piece| decode(piece, read_range(path, spec, piece)?);
    let read_and_decode = &read_and_decode;
    std::thread::scope(|scope| {
        let mut next = pieces.iter();
        let mut pending = std::collections::VecDeque::new();
        for piece in next.by_ref().take(threads) {
            pending.push_back(scope.spawn(move || read_and_decode(piece)));
        }
        while let Some(oldest) = pending.pop_front() {
            let batches = oldest.join().expect("decoding a piece panicked")?;
            if let Some(piece) = next.next() {
                pending.push_back(scope.spawn(move || read_and_decode(piece)));
            }
            for batch in batches {
                if !sink(batch) {
                    return Ok(());
                }
            }
        }
        Ok(())
    })
}

/// The bytes of `piece` in the file at `path`.
fn read_range(path: &Path, spec: &FileIngest, piece: &Piece) -> Result<Vec<u8>> {
    use std::io::Read;
    let mut file = open(path, &spec.name)?;
    file.seek(std::io::SeekFrom::Start(piece.start))
        .map_err(|e| invalid(spec, e.to_string()))?;
    let len = piece.end - piece.start;
    let mut bytes = Vec::with_capacity(len as usize);
    file.take(len)
        .read_to_end(&mut bytes)
        .map_err(|e| invalid(spec, e.to_string()))?;
    Ok(bytes)
}

/// A JSON error located by line and column: arrow-json does not report positions, so on error
/// the file is scanned with serde_json for the first line that is not valid JSON.
fn json_error(path: &Path, spec: &FileIngest, e: arrow::error::ArrowError) -> Error {
    let located = File::open(path).ok().and_then(|f| {
        BufReader::new(f).lines().enumerate().find_map(|(i, line)| {
            let line = line.ok()?;
            if line.trim().is_empty() {
                return None;
            }
            match serde_json::from_str::<serde_json::Value>(&line) {
                Ok(serde_json::Value::Object(_)) => None,
                Ok(_) => Some((i + 1, 1, "expected a JSON object".to_string())),
                Err(err) => Some((i + 1, err.column(), err.to_string())),
            }
        })
    });
    match located {
        Some((line, column, message)) => Error::InvalidData {
            location: format!("{} line {line}, column {column}", spec.name),
            message,
        },
        None => invalid(spec, e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn overrides_parse_with_nested_commas() {
        let o =
            parse_schema_overrides("a=Int64, ts=Timestamp(Microsecond, None),d=Decimal128(10, 2)")
                .unwrap();
        assert_eq!(o[0], ("a".into(), DataType::Int64));
        assert_eq!(
            o[1].1,
            DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, None)
        );
        assert_eq!(o[2].1, DataType::Decimal128(10, 2));
        let err = parse_schema_overrides("a:Int64").unwrap_err().to_string();
        assert!(err.contains("expected name=Type"), "{err}");
        let err = parse_schema_overrides("a=Integer64")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("column `a`: unknown type \"Integer64\""),
            "{err}"
        );
    }

    #[test]
    fn formats_from_names() {
        assert_eq!(FileFormat::from_file_name("a.CSV"), Some(FileFormat::Csv));
        assert_eq!(
            FileFormat::from_file_name("x/y.jsonl"),
            Some(FileFormat::NdJson)
        );
        assert_eq!(
            FileFormat::from_file_name("t.parquet"),
            Some(FileFormat::Parquet)
        );
        assert_eq!(FileFormat::from_file_name("t.xlsx"), None);
        assert_eq!(
            FileIngest::new("a.tsv", FileFormat::Csv).csv_delimiter,
            b'\t'
        );
    }

    fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn csv_inference_is_conservative() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            &dir,
            "a.csv",
            "id,zip,price,big,flag,day\n1,02139,1.5,1,true,2024-01-02\n2,10001,2,99999999999999999999,false,2024-02-03\n",
        );
        let spec = FileIngest::new("a.csv", FileFormat::Csv);
        let schema = infer_schema(&path, &spec).unwrap().schema;
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
                DataType::Utf8,
                DataType::Boolean,
                DataType::Date32
            ]
        );
    }

    #[test]
    fn malformed_rows_name_file_line_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(&dir, "bad.csv", "a,b\n1,2\n3\n");
        let spec = FileIngest::new("bad.csv", FileFormat::Csv);
        let schema = infer_schema(&path, &spec);
        let err = match schema {
            Err(e) => e,
            Ok(inferred) => read_batches(&path, &spec, &inferred, &mut |_| true).unwrap_err(),
        };
        let text = err.to_string();
        assert!(text.starts_with("bad.csv line 3"), "{text}");

        let mut spec = FileIngest::new("typed.csv", FileFormat::Csv);
        spec.overrides = vec![("b".into(), DataType::Int64)];
        let path = write(&dir, "typed.csv", "a,b\n1,2\n3,x\n");
        let inferred = infer_schema(&path, &spec).unwrap();
        let err = read_batches(&path, &spec, &inferred, &mut |_| true)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("typed.csv line 3, column `b`"), "{err}");

        let path = write(&dir, "bad.json", "{\"a\": 1}\n{\"a\": 2,,}\n");
        let spec = FileIngest::new("bad.json", FileFormat::NdJson);
        let err = infer_schema(&path, &spec).unwrap_err().to_string();
        assert!(err.starts_with("bad.json line 2, column"), "{err}");
    }

    #[test]
    fn nested_json_is_flattened() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            &dir,
            "n.json",
            "{\"id\": 1, \"user\": {\"name\": \"a\", \"geo\": {\"lat\": 1.5}}}\n{\"id\": 2, \"user\": {\"name\": \"b\"}}\n",
        );
        let spec = FileIngest::new("n.json", FileFormat::NdJson);
        let inferred = infer_schema(&path, &spec).unwrap();
        let names: Vec<_> = inferred
            .schema
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        // arrow-json's inference orders object keys by name.
        assert_eq!(names, ["id", "user.geo.lat", "user.name"]);
        let mut rows = 0;
        read_batches(&path, &spec, &inferred, &mut |b| {
            assert_eq!(
                b.schema()
                    .fields()
                    .iter()
                    .map(|f| f.name().clone())
                    .collect::<Vec<_>>(),
                names
            );
            rows += b.num_rows();
            true
        })
        .unwrap();
        assert_eq!(rows, 2);
    }
}
