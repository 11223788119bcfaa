//! CSV: one scan over the bytes as they arrive, pieces decoded in parallel, exact error lines.
//!
//! [`CsvScan`] reads the bytes once with csv-core (the tokenizer arrow-csv and the `csv` crate
//! share): it types every column from every value ([`super::csv_types`]) and cuts the file
//! into pieces of whole records about [`CSV_CHUNK_BYTES`] long (quote-aware: a quoted field may
//! span lines). Pieces are decoded by arrow-csv's `Decoder` against a schema ([`decode_piece`]),
//! on several threads, and handed on in file order.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{Field, Schema, SchemaRef};
use bytes::{Buf, Bytes, BytesMut};

use super::csv_types::ColumnTypes;
use super::{BATCH_ROWS, CSV_CHUNK_BYTES, FileIngest, Piece, invalid, open};
use crate::error::{Error, Result};

/// A record whose field count differs from the first line's: record `record` of the file
/// (from 1, the header line counted).
#[derive(Debug)]
pub(super) struct Ragged {
    record: usize,
    expected: usize,
    found: usize,
}

impl Ragged {
    /// The error naming the line the record starts on, found by reading the file at `path`
    /// (holding at least the bytes scanned so far) again.
    pub(super) fn into_error(self, path: &Path, spec: &FileIngest) -> Error {
        let line = record_line(path, spec.csv_delimiter, self.record).unwrap_or(self.record);
        Error::InvalidData {
            location: format!("{} line {line}", spec.name),
            message: format!(
                "expected {} fields, as the first line has, found {}",
                self.expected, self.found
            ),
        }
    }
}

/// One pass over a CSV file's bytes, fed in chunks of any size: column names, column types
/// from every value, and the pieces the file is cut into.
pub(super) struct CsvScan {
    name: String,
    header: bool,
    /// Whether completed pieces come with their bytes.
    keep_bytes: bool,
    parser: csv_core::Reader,
    output: Vec<u8>,
    ends: Vec<usize>,
    out_len: usize,
    ends_len: usize,
    names: Vec<String>,
    types: Vec<ColumnTypes>,
    /// Complete records so far, the header counted.
    records: usize,
    /// Bytes taken by the tokenizer so far.
    consumed: u64,
    /// Bytes fed so far.
    fed: u64,
    piece_start: u64,
    piece_first_record: usize,
    /// The bytes from `piece_start` on (when `keep_bytes`).
    buffer: BytesMut,
    pieces: Vec<Piece>,
}

impl CsvScan {
    /// A scan of the CSV file `spec` describes. With `keep_bytes`, completed pieces come with
    /// their bytes.
    pub(super) fn new(spec: &FileIngest, keep_bytes: bool) -> Self {
        Self {
            name: spec.name.clone(),
            header: spec.csv_header,
            keep_bytes,
            parser: csv_core::ReaderBuilder::new()
                .delimiter(spec.csv_delimiter)
                .build(),
            output: vec![0; 64 * 1024],
            ends: vec![0; 64],
            out_len: 0,
            ends_len: 0,
            names: Vec::new(),
            types: Vec::new(),
            records: 0,
            consumed: 0,
            fed: 0,
            piece_start: 0,
            piece_first_record: 0,
            buffer: BytesMut::new(),
            pieces: Vec::new(),
        }
    }

    /// Feeds the next bytes of the file; pieces completed by them are appended to `ready`
    /// (with empty bytes unless `keep_bytes`).
    ///
    /// # Errors
    /// [`Ragged`]: a record whose field count differs from the first line's.
    pub(super) fn push(
        &mut self,
        chunk: &[u8],
        ready: &mut Vec<(Piece, Bytes)>,
    ) -> std::result::Result<(), Ragged> {
        if self.keep_bytes {
            self.buffer.extend_from_slice(chunk);
        }
        self.fed += chunk.len() as u64;
        self.tokenize(chunk, ready)
    }

    /// Ends the file: the last record and the last piece.
    ///
    /// # Errors
    /// As [`CsvScan::push`].
    pub(super) fn finish(
        &mut self,
        ready: &mut Vec<(Piece, Bytes)>,
    ) -> std::result::Result<(), Ragged> {
        self.tokenize(&[], ready)?;
        if self.consumed > self.piece_start {
            self.cut(ready);
        }
        Ok(())
    }

    /// The schema the values so far imply (names from the header line or `column_1`, ...;
    /// every field nullable); `None` before the first line.
    pub(super) fn schema(&self) -> Option<Schema> {
        (!self.names.is_empty()).then(|| {
            Schema::new(
                self.names
                    .iter()
                    .zip(&self.types)
                    .map(|(name, types)| Field::new(name, types.data_type(), true))
                    .collect::<Vec<_>>(),
            )
        })
    }

    /// The whole file's schema, after [`CsvScan::finish`].
    ///
    /// # Errors
    /// [`Error::InvalidData`] for an empty file or one without columns.
    pub(super) fn final_schema(&self) -> Result<Schema> {
        let refuse = |message: &str| Error::InvalidData {
            location: self.name.clone(),
            message: message.into(),
        };
        if self.fed == 0 {
            return Err(refuse("the file is empty"));
        }
        self.schema().ok_or_else(|| refuse("no columns found"))
    }

    /// Every piece completed so far, in file order.
    pub(super) fn pieces(&self) -> &[Piece] {
        &self.pieces
    }

    /// Runs the tokenizer over `input` (empty: the end of the file).
    fn tokenize(
        &mut self,
        mut input: &[u8],
        ready: &mut Vec<(Piece, Bytes)>,
    ) -> std::result::Result<(), Ragged> {
        use csv_core::ReadRecordResult::*;
        loop {
            let (result, read, written, ends) = self.parser.read_record(
                input,
                &mut self.output[self.out_len..],
                &mut self.ends[self.ends_len..],
            );
            input = &input[read..];
            self.consumed += read as u64;
            self.out_len += written;
            self.ends_len += ends;
            match result {
                InputEmpty => return Ok(()),
                End => return Ok(()),
                OutputFull => {
                    let len = self.output.len() * 2;
                    self.output.resize(len, 0);
                }
                OutputEndsFull => {
                    let len = self.ends.len() * 2;
                    self.ends.resize(len, 0);
                }
                Record => {
                    self.record()?;
                    self.out_len = 0;
                    self.ends_len = 0;
                    if self.consumed - self.piece_start >= CSV_CHUNK_BYTES {
                        self.cut(ready);
                    }
                }
            }
        }
    }

    /// Takes the record just tokenized.
    fn record(&mut self) -> std::result::Result<(), Ragged> {
        self.records += 1;
        let ends = &self.ends[..self.ends_len];
        if self.records == 1 {
            self.names = if self.header {
                let mut start = 0;
                ends.iter()
                    .map(|&end| {
                        let name = String::from_utf8_lossy(&self.output[start..end]).into_owned();
                        start = end;
                        name
                    })
                    .collect()
            } else {
                (1..=ends.len()).map(|i| format!("column_{i}")).collect()
            };
            self.types = vec![ColumnTypes::default(); ends.len()];
            if self.header {
                // The pieces start after the header line.
                if self.keep_bytes {
                    self.buffer
                        .advance((self.consumed - self.piece_start) as usize);
                }
                self.piece_start = self.consumed;
                self.piece_first_record = 1;
                return Ok(());
            }
        }
        if ends.len() != self.names.len() {
            return Err(Ragged {
                record: self.records,
                expected: self.names.len(),
                found: ends.len(),
            });
        }
        let mut start = 0;
        for (types, &end) in self.types.iter_mut().zip(ends) {
            types.add(&self.output[start..end]);
            start = end;
        }
        Ok(())
    }

    fn cut(&mut self, ready: &mut Vec<(Piece, Bytes)>) {
        let piece = Piece {
            start: self.piece_start,
            end: self.consumed,
            first_record: self.piece_first_record,
        };
        let bytes = if self.keep_bytes {
            self.buffer
                .split_to((piece.end - piece.start) as usize)
                .freeze()
        } else {
            Bytes::new()
        };
        self.pieces.push(piece);
        ready.push((piece, bytes));
        self.piece_start = piece.end;
        self.piece_first_record = self.records;
    }
}

/// Decodes one piece's bytes (whole records, no header line) against `schema`.
pub(super) fn decode_piece(
    bytes: &[u8],
    schema: &SchemaRef,
    spec: &FileIngest,
) -> std::result::Result<Vec<RecordBatch>, arrow::error::ArrowError> {
    let mut decoder = arrow::csv::ReaderBuilder::new(Arc::clone(schema))
        .with_header(false)
        .with_delimiter(spec.csv_delimiter)
        .with_batch_size(BATCH_ROWS)
        .build_decoder();
    let mut rest = bytes;
    let mut batches = Vec::new();
    loop {
        loop {
            let read = decoder.decode(rest)?;
            rest = &rest[read..];
            if read == 0 || decoder.capacity() == 0 {
                break;
            }
        }
        match decoder.flush()? {
            Some(batch) => batches.push(batch),
            None => return Ok(batches),
        }
    }
}

/// Pieces decoded at once while the upload streams: all cores but one, which the scan needs.
pub(super) fn decoding_threads() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .saturating_sub(1)
        .max(1)
}

/// Scans the whole CSV file at `path`: its schema (before overrides) and pieces.
///
/// # Errors
/// As [`CsvScan::push`] and [`CsvScan::finish`].
pub(super) fn scan_file(path: &Path, spec: &FileIngest) -> Result<(Schema, Vec<Piece>)> {
    let mut file = open(path, &spec.name)?;
    let mut scan = CsvScan::new(spec, false);
    let mut ready = Vec::new();
    let mut chunk = vec![0; 1 << 20];
    loop {
        let read = file
            .read(&mut chunk)
            .map_err(|e| invalid(spec, e.to_string()))?;
        if read == 0 {
            break;
        }
        scan.push(&chunk[..read], &mut ready)
            .map_err(|e| e.into_error(path, spec))?;
        ready.clear();
    }
    scan.finish(&mut ready)
        .map_err(|e| e.into_error(path, spec))?;
    Ok((scan.final_schema()?, scan.pieces))
}

/// Rewrites arrow-csv's messages ("... for column 2 at line 17 ...") to name the file line and
/// the column.
///
/// arrow-csv's decoder counts records, not lines: its value-parsing errors count data records,
/// its field-count errors records with the header. A quoted field may span lines, so the record
/// is mapped to the line it starts on by reading the file again with the `csv` crate (the same
/// csv-core tokenizer), only on error.
///
/// The decoder that failed started at record `offset` of the file (from 0, the header line
/// counted) and read no header line.
pub(super) fn csv_error(
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
        // Records of this decoder from 0 (arrow-csv's `line_number`).
        number_after(&message, "at line ")
            .or_else(|| number_after(&message, "for line "))
            .map(|n| n + 1 + offset)
    } else {
        // arrow-csv's field-count check: records of this decoder from 1.
        number_after(&message, "for line ").map(|n| n + offset)
    };
    let line = record.map(|record| record_line(path, spec.csv_delimiter, record).unwrap_or(record));
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
fn record_line(path: &Path, delimiter: u8, record: usize) -> Option<usize> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(delimiter)
        .from_reader(BufReader::new(File::open(path).ok()?));
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
