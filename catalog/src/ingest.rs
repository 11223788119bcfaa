//! File ingest: CSV, NDJSON and Parquet files parsed with arrow-csv, arrow-json and parquet, and
//! committed as one table version.
//!
//! The file is read from a local path (the server spools uploads there), at least twice:
//!
//! 1. **Schema inference over the whole file**, never a sample, so a type holds for every row.
//!    CSV uses arrow-csv's inference (booleans, integers, floats, dates, timestamps, else Utf8),
//!    then one conservative refinement: a column inferred as a number stays Utf8 when some value
//!    has a leading zero (`007`, zip codes) or does not fit in an `Int64`. NDJSON uses
//!    arrow-json's inference; nested objects become `parent.child` columns
//!    ([`RecordBatch::normalize`]). Parquet carries its own schema. View types are normalised
//!    to `Utf8`/`Binary`. `--schema name=Type,...` overrides win over inference.
//!    For CSV the two whole-file passes (arrow-csv's inference; the leading-zero/overflow
//!    evidence with the `csv` crate) run at once on two threads; the second also notes where
//!    records start every [`CSV_CHUNK_BYTES`] (quote-aware: a quoted field may span lines).
//! 2. **Parsing** in batches of [`BATCH_ROWS`] rows, streamed into Parquet data files. CSV
//!    files are cut at those record starts and the pieces decoded on all cores but one (left to
//!    the Parquet writer), handed on in file order while later pieces decode. The first malformed row
//!    aborts the ingest with an [`Error::InvalidData`] naming the file, line and column;
//!    nothing is committed and the partial data files are deleted.
//!
//! A file whose SHA-256 equals that of a file already ingested into the table's current version
//! is not ingested again ([`IngestOutcome::Unchanged`]).

use std::fs::File;
use std::io::{BufRead, BufReader, Seek};
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use tokio_stream::wrappers::ReceiverStream;

use crate::catalog::{Catalog, WriteMode};
use crate::error::{Error, Result};
use crate::manifest::{Manifest, SourceFile};
use crate::name::TableRef;
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

impl Catalog {
    /// Ingests the file at `path` into `table` as one new version (see the module docs).
    /// `sha256` is the file's content hash (lowercase hex), computed by the caller while
    /// receiving it. `check` runs on the version about to be published (primary keys), and
    /// [`WriteMode::Upsert`] replaces stored rows by key.
    ///
    /// # Errors
    /// [`Error::InvalidData`] naming the file (and line and column where known) for unreadable
    /// or malformed input and bad overrides; otherwise as [`Catalog::write_stream`].
    pub async fn ingest_file(
        &self,
        table: &TableRef,
        mode: WriteMode,
        path: &Path,
        sha256: &str,
        spec: FileIngest,
        check: Option<crate::CommitCheck>,
    ) -> Result<IngestOutcome> {
        let path_buf = path.to_path_buf();
        let infer_spec = spec.clone();
        let started = std::time::Instant::now();
        let inferred = tokio::task::spawn_blocking(move || infer_schema(&path_buf, &infer_spec))
            .await
            .expect("schema inference panicked")?;
        tracing::info!(file = %spec.name, infer_ms = started.elapsed().as_millis(), "schema inferred");
        let schema = Arc::clone(&inferred.schema);
        // After inference, so bad input and bad overrides are reported even for known content.
        if mode != WriteMode::Create {
            match self.table(table).await {
                Ok(head) if head.has_source(sha256) => {
                    return Ok(IngestOutcome::Unchanged { manifest: head });
                }
                Ok(_) | Err(Error::TableNotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        let (tx, rx) = tokio::sync::mpsc::channel(2);
        let path_buf = path.to_path_buf();
        let read_spec = spec.clone();
        let reader = tokio::task::spawn_blocking(move || {
            let mut rows = 0u64;
            let result = read_batches(&path_buf, &read_spec, &inferred, &mut |batch| {
                rows += batch.num_rows() as u64;
                tx.blocking_send(Ok(batch)).is_ok()
            });
            if let Err(e) = result {
                let _ = tx.blocking_send(Err(e));
            }
            rows
        });
        let source = SourceFile {
            name: spec.name.clone(),
            sha256: sha256.to_string(),
        };
        let written = self
            .write_stream_checked(
                table,
                mode,
                &schema,
                Some(source),
                ReceiverStream::new(rx),
                check,
            )
            .await;
        let rows = reader.await.expect("file reader panicked");
        Ok(IngestOutcome::Committed {
            manifest: written?,
            rows,
        })
    }
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
    /// CSV: the pieces the file is decoded in (see [`CsvPiece`]; one for a file below
    /// [`CSV_CHUNK_BYTES`]); empty for other formats.
    pieces: Vec<CsvPiece>,
}

/// A run of whole CSV records: bytes `start..end` of the file, whose first record is record
/// `first_record` of the file (from 0, the header line counted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CsvPiece {
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
    let inferred = match spec.format {
        FileFormat::Csv => {
            // Two whole-file passes at once, on two threads: arrow-csv's type inference, and
            // the evidence that keeps numeric-looking columns as text.
            let format = arrow::csv::reader::Format::default()
                .with_header(spec.csv_header)
                .with_delimiter(spec.csv_delimiter);
            let (inferred, evidence) = std::thread::scope(|scope| {
                let evidence = scope.spawn(|| text_evidence(path, spec));
                let inferred = format
                    .infer_schema(BufReader::new(file), None)
                    .map_err(|e| csv_error(path, spec, None, e, 0));
                let evidence = evidence.join().expect("CSV evidence pass panicked");
                (inferred, evidence)
            });
            let (schema, _) = inferred?;
            let (evidence, found_pieces) = evidence?;
            pieces = found_pieces;
            refine_csv_schema(schema, &evidence)
        }
        FileFormat::NdJson => {
            let mut reader = BufReader::new(file);
            let (schema, _) =
                arrow::json::reader::infer_json_schema_from_seekable(&mut reader, None)
                    .map_err(|e| json_error(path, spec, e))?;
            reader.rewind().map_err(|e| invalid(spec, e.to_string()))?;
            schema
        }
        FileFormat::Parquet => {
            let builder = ParquetRecordBatchReaderBuilder::try_new(file)
                .map_err(|e| invalid(spec, format!("not a readable Parquet file: {e}")))?;
            builder.schema().as_ref().clone()
        }
    };
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
    })
}

/// Per CSV column, whether any value has a leading zero (`007`, `-01.5`) and whether any
/// non-empty value does not parse as an `Int64`.
#[derive(Debug, Clone, Copy, Default)]
struct TextEvidence {
    leading_zero: bool,
    not_int64: bool,
}

/// The records of the CSV file at `path` as the `csv` crate reads them (spec's delimiter; the
/// header line is record 1; rows of any length), for passes beside arrow-csv's.
fn csv_records(path: &Path, spec: &FileIngest) -> Result<csv::Reader<BufReader<File>>> {
    Ok(csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(spec.csv_delimiter)
        .from_reader(BufReader::new(open(path, &spec.name)?)))
}

/// One pass over the CSV file at `path` collecting [`TextEvidence`] for every column, whatever
/// type inference gives it (so it can run beside inference), and the pieces the file can be
/// cut into at record starts, about [`CSV_CHUNK_BYTES`] each (one piece for a smaller file).
fn text_evidence(path: &Path, spec: &FileIngest) -> Result<(Vec<TextEvidence>, Vec<CsvPiece>)> {
    let mut reader = csv_records(path, spec)?;
    let mut evidence: Vec<TextEvidence> = Vec::new();
    let mut record = csv::ByteRecord::new();
    let mut cuts = vec![(0u64, 0usize)];
    let mut records = 0usize;
    loop {
        let start = reader.position().byte();
        if !reader
            .read_byte_record(&mut record)
            .map_err(|e| invalid(spec, e.to_string()))?
        {
            break;
        }
        records += 1;
        if start >= cuts.last().expect("one cut").0 + CSV_CHUNK_BYTES {
            cuts.push((start, records - 1));
        }
        if records == 1 && spec.csv_header {
            continue;
        }
        if evidence.len() < record.len() {
            evidence.resize(record.len(), TextEvidence::default());
        }
        for (value, seen) in record.iter().zip(evidence.iter_mut()) {
            if value.is_empty() || (seen.leading_zero && seen.not_int64) {
                continue;
            }
            let digits = value.strip_prefix(b"-").unwrap_or(value);
            if digits.len() > 1 && digits[0] == b'0' && digits[1].is_ascii_digit() {
                seen.leading_zero = true;
            }
            if !seen.not_int64
                && std::str::from_utf8(value).map_or(true, |v| v.parse::<i64>().is_err())
            {
                seen.not_int64 = true;
            }
        }
    }
    let size = reader
        .get_ref()
        .get_ref()
        .metadata()
        .map_err(|e| invalid(spec, e.to_string()))?
        .len();
    let pieces = cuts
        .iter()
        .zip(cuts.iter().skip(1).map(|c| c.0).chain([size]))
        .map(|(&(start, first_record), end)| CsvPiece {
            start,
            end,
            first_record,
        })
        .collect();
    Ok((evidence, pieces))
}

/// CSV refinement: numeric columns with leading zeros, or integers beyond `Int64`, stay Utf8
/// (`evidence` from [`text_evidence`], by column position).
fn refine_csv_schema(schema: Schema, evidence: &[TextEvidence]) -> Schema {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let seen = evidence.get(i).copied().unwrap_or_default();
            let demote = match f.data_type() {
                DataType::Int64 => seen.leading_zero || seen.not_int64,
                DataType::Float64 => seen.leading_zero,
                _ => false,
            };
            let f = f.as_ref().clone();
            if demote {
                f.with_data_type(DataType::Utf8)
            } else {
                f
            }
        })
        .collect();
    Schema::new(fields)
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
        FileFormat::Csv => read_csv_pieces(path, spec, schema, &inferred.pieces, sink)?,
        FileFormat::NdJson => {
            let file = open(path, &spec.name)?;
            // Decode with the nested schema, then flatten each batch to `parent.child` columns.
            let reader = arrow::json::ReaderBuilder::new(Arc::clone(schema))
                .with_batch_size(BATCH_ROWS)
                .build(BufReader::new(file))
                .map_err(|e| json_error(path, spec, e))?;
            for batch in reader {
                let batch = batch.map_err(|e| json_error(path, spec, e))?;
                let flat = batch
                    .normalize(".", None)
                    .map_err(|e| invalid(spec, e.to_string()))?;
                if !sink(flat) {
                    break;
                }
            }
        }
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

/// Decodes the CSV file at `path` piece by piece, a piece per core but one (left to the
/// Parquet writer) at once, handing the batches to `sink` in file order until it returns
/// false. At most that many pieces' batches are held in memory, plus the one being handed on.
fn read_csv_pieces(
    path: &Path,
    spec: &FileIngest,
    schema: &SchemaRef,
    pieces: &[CsvPiece],
    sink: &mut dyn FnMut(RecordBatch) -> bool,
) -> Result<()> {
    use std::io::Read;
    // One core is left to the Parquet writer that consumes the batches.
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .saturating_sub(1)
        .max(1);
    let decode = |piece: &CsvPiece| -> Result<Vec<RecordBatch>> {
        let mut file = open(path, &spec.name)?;
        file.seek(std::io::SeekFrom::Start(piece.start))
            .map_err(|e| invalid(spec, e.to_string()))?;
        let header = piece.first_record == 0 && spec.csv_header;
        let error = |e| csv_error(path, spec, Some(schema), e, piece.first_record);
        arrow::csv::ReaderBuilder::new(Arc::clone(schema))
            .with_header(header)
            .with_delimiter(spec.csv_delimiter)
            .with_batch_size(BATCH_ROWS)
            .build_buffered(BufReader::new(file.take(piece.end - piece.start)))
            .map_err(error)?
            .map(|batch| batch.map_err(error))
            .collect()
    };
    // The oldest piece is handed on while up to `threads` later ones decode.
    std::thread::scope(|scope| {
        let mut next = pieces.iter();
        let mut pending = std::collections::VecDeque::new();
        for piece in next.by_ref().take(threads) {
            pending.push_back(scope.spawn(move || decode(piece)));
        }
        while let Some(oldest) = pending.pop_front() {
            let batches = oldest.join().expect("CSV decoding panicked")?;
            if let Some(piece) = next.next() {
                pending.push_back(scope.spawn(move || decode(piece)));
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

/// Rewrites arrow-csv's messages ("... for column 2 at line 17 ...") to name the file line and
/// the column.
///
/// arrow-csv's decoder counts records, not lines: its value-parsing errors count data records,
/// its field-count errors records with the header. A quoted field may span lines, so the record
/// is mapped to the line it starts on by reading the file again with the `csv` crate (the same
/// csv-core tokenizer), only on error. Errors of the `csv` crate itself (from type inference)
/// already name file lines.
///
/// The reader that failed started at record `offset` of the file (from 0, the header line
/// counted).
fn csv_error(
    path: &Path,
    spec: &FileIngest,
    schema: Option<&SchemaRef>,
    e: arrow::error::ArrowError,
    offset: usize,
) -> Error {
    let message = e.to_string();
    let data_record =
        message.contains("Error while parsing value") || message.contains("Error parsing column");
    // The file record (from 1, the header counted) an arrow-csv decoder error names.
    let record = if data_record {
        // Records of this reader from 0, the header counted (arrow-csv's `line_number`).
        number_after(&message, "at line ")
            .or_else(|| number_after(&message, "for line "))
            .map(|n| n + 1 + offset)
    } else {
        // arrow-csv's field-count check: records of this reader from 1, the header counted.
        number_after(&message, "for line ").map(|n| n + offset)
    };
    let line = match record {
        Some(record) => Some(record_line(path, spec, record).unwrap_or(record)),
        // The csv crate (type inference reads the whole file with it) counts file lines.
        None => number_after(&message, "at line "),
    };
    let column = number_after(&message, "for column ")
        .or_else(|| number_after(&message, "parsing column "))
        .and_then(|i| schema.and_then(|s| s.fields().get(i).map(|f| f.name().clone())));
    let location = match (line, column) {
        (Some(line), Some(column)) => format!("{} line {line}, column `{column}`", spec.name),
        (Some(line), None) => format!("{} line {line}", spec.name),
        _ => spec.name.clone(),
    };
    Error::InvalidData { location, message }
}

/// The file line (from 1) on which record `record` (from 1, the header line counted) of the CSV
/// file at `path` starts; `None` when the file has fewer records or cannot be read.
fn record_line(path: &Path, spec: &FileIngest, record: usize) -> Option<usize> {
    let mut reader = csv_records(path, spec).ok()?;
    let mut row = csv::ByteRecord::new();
    for _ in 0..record {
        if !reader.read_byte_record(&mut row).ok()? {
            return None;
        }
    }
    usize::try_from(row.position()?.line()).ok()
}

fn number_after(text: &str, marker: &str) -> Option<usize> {
    let rest = &text[text.find(marker)? + marker.len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
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
