//! NDJSON: the file cut at line ends into pieces, each inferred and decoded by arrow-json on
//! its own core.
//!
//! NDJSON holds one object per line, so any line end is a record boundary. Each piece's schema
//! is inferred by arrow-json (`infer_json_schema`); the pieces' schemas are merged by inferring
//! again over one *witness* line per piece — an object whose values have exactly the piece's
//! types (`1` for Int64, `1.5` for Float64, `"s"` for Utf8, `[w]` for lists, nested objects) —
//! so the merge follows arrow-json's own coercions (Int64 with Float64 gives Float64, a scalar
//! with a list gives a list, anything with text gives text). A unit test checks it against
//! inference over the whole file.
//!
//! An upload is cut while it arrives ([`JsonScan`]); the first piece's schema is the
//! speculation, and each later piece is decoded against it only when merging the piece's own
//! schema into it changes nothing ([`decode_speculative`]) — then the speculation holds for
//! the whole file, since merging is arrow-json's coercion applied piece by piece.

use std::io::{BufRead, BufReader, Seek};
use std::path::Path;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Schema, SchemaRef};
use arrow::error::ArrowError;
use bytes::{Bytes, BytesMut};
use serde_json::Value;

use super::{
    BATCH_ROWS, CSV_CHUNK_BYTES, FileIngest, Piece, decode_in_pieces, invalid, json_error, open,
};
use crate::error::Result;

/// Cuts the NDJSON file at `path` into pieces of whole lines, about [`CSV_CHUNK_BYTES`]
/// each (one for a smaller file).
pub(super) fn pieces(path: &Path, spec: &FileIngest) -> Result<Vec<Piece>> {
    let mut file = BufReader::new(open(path, &spec.name)?);
    let size = file
        .get_ref()
        .metadata()
        .map_err(|e| invalid(spec, e.to_string()))?
        .len();
    let mut pieces = Vec::new();
    let mut start = 0u64;
    let mut skipped = Vec::new();
    while start < size {
        let mut end = (start + CSV_CHUNK_BYTES).min(size);
        if end < size {
            file.seek(std::io::SeekFrom::Start(end))
                .map_err(|e| invalid(spec, e.to_string()))?;
            skipped.clear();
            end += file
                .read_until(b'\n', &mut skipped)
                .map_err(|e| invalid(spec, e.to_string()))? as u64;
        }
        pieces.push(Piece {
            start,
            end,
            first_record: 0,
        });
        start = end;
    }
    Ok(pieces)
}

/// One pass over an NDJSON upload's bytes, fed in chunks of any size: pieces of whole lines
/// about [`CSV_CHUNK_BYTES`] long (a line longer than that is one piece), with their bytes,
/// and arrow-json's schema for the first piece.
#[derive(Default)]
pub(super) struct JsonScan {
    /// The bytes from `piece_start` on.
    buffer: BytesMut,
    /// How much of `buffer` is known to hold no line end.
    searched: usize,
    piece_start: u64,
    pieces: Vec<Piece>,
    /// The first piece's schema; `None` before it, or when it is not NDJSON (then the
    /// whole-file inference names the line).
    first: Option<Schema>,
}

impl JsonScan {
    /// Feeds the next bytes of the file; pieces completed by them are appended to `ready`.
    pub(super) fn push(&mut self, chunk: &[u8], ready: &mut Vec<(Piece, Bytes)>) {
        self.buffer.extend_from_slice(chunk);
        if (self.buffer.len() as u64) < CSV_CHUNK_BYTES {
            return;
        }
        match self.buffer[self.searched..]
            .iter()
            .rposition(|&b| b == b'\n')
        {
            Some(at) => self.cut(self.searched + at + 1, ready),
            None => self.searched = self.buffer.len(),
        }
    }

    /// Ends the file: the last piece (its last line may lack a line end).
    pub(super) fn finish(&mut self, ready: &mut Vec<(Piece, Bytes)>) {
        if !self.buffer.is_empty() {
            self.cut(self.buffer.len(), ready);
        }
    }

    /// The first piece's schema (arrow-json's inference, nested), once it is cut.
    pub(super) fn schema(&self) -> Option<Schema> {
        self.first.clone()
    }

    /// Every piece completed so far, in file order.
    pub(super) fn pieces(&self) -> &[Piece] {
        &self.pieces
    }

    fn cut(&mut self, len: usize, ready: &mut Vec<(Piece, Bytes)>) {
        let bytes = self.buffer.split_to(len).freeze();
        let piece = Piece {
            start: self.piece_start,
            end: self.piece_start + len as u64,
            first_record: 0,
        };
        if self.pieces.is_empty() {
            self.first = arrow::json::reader::infer_json_schema(&bytes[..], None)
                .ok()
                .map(|(schema, _)| schema);
        }
        self.pieces.push(piece);
        ready.push((piece, bytes));
        self.piece_start = piece.end;
        // What is left follows the last line end.
        self.searched = self.buffer.len();
    }
}

/// Decodes one piece's lines against `decode` (the nested schema, overrides applied),
/// flattened, when the piece's own values fit `speculative` (the nested schema inferred so
/// far): merging the piece's schema into it changes nothing.
///
/// # Errors
/// [`ArrowError::SchemaError`] when the piece implies another schema (the speculation is
/// over); arrow-json's error for a line that is not a JSON object or a value that does not fit.
pub(super) fn decode_speculative(
    bytes: &[u8],
    speculative: &SchemaRef,
    decode: &SchemaRef,
) -> std::result::Result<Vec<RecordBatch>, ArrowError> {
    let (piece, _) = arrow::json::reader::infer_json_schema(bytes, None)?;
    if merge(&[Arc::clone(speculative), Arc::new(piece)])? != **speculative {
        return Err(ArrowError::SchemaError(
            "a later line changes the inferred schema".into(),
        ));
    }
    decode_piece(bytes, decode)
}

/// Decodes one piece's lines against `decode` (nested), flattened to `parent.child` columns.
pub(super) fn decode_piece(
    bytes: &[u8],
    decode: &SchemaRef,
) -> std::result::Result<Vec<RecordBatch>, ArrowError> {
    arrow::json::ReaderBuilder::new(Arc::clone(decode))
        .with_batch_size(BATCH_ROWS)
        .build(bytes)?
        .map(|batch| batch?.normalize(".", None))
        .collect()
}

/// The schema arrow-json infers for the whole file, from its pieces inferred at once.
///
/// # Errors
/// [`crate::Error::InvalidData`] naming the first line that is not a JSON object.
pub(super) fn infer(path: &Path, spec: &FileIngest, pieces: &[Piece]) -> Result<Schema> {
    let mut schemas = Vec::with_capacity(pieces.len());
    decode_in_pieces(
        path,
        spec,
        pieces,
        |_, bytes| {
            let (schema, _) = arrow::json::reader::infer_json_schema(&bytes[..], None)
                .map_err(|e| json_error(path, spec, e))?;
            // One empty batch carries the piece's schema through the ordered hand-on.
            Ok(vec![RecordBatch::new_empty(Arc::new(schema))])
        },
        &mut |batch| {
            schemas.push(batch.schema());
            true
        },
    )?;
    merge(&schemas).map_err(|e| json_error(path, spec, e))
}

/// The pieces' schemas merged as arrow-json merges values (see the module docs).
fn merge(schemas: &[SchemaRef]) -> std::result::Result<Schema, arrow::error::ArrowError> {
    let mut witnesses = String::new();
    for schema in schemas {
        let object: serde_json::Map<String, Value> = schema
            .fields()
            .iter()
            .map(|f| (f.name().clone(), witness(f.data_type())))
            .collect();
        witnesses.push_str(&Value::Object(object).to_string());
        witnesses.push('\n');
    }
    let (schema, _) = arrow::json::reader::infer_json_schema(witnesses.as_bytes(), None)?;
    Ok(schema)
}

/// A JSON value arrow-json infers `data_type` from.
fn witness(data_type: &DataType) -> Value {
    match data_type {
        DataType::Null => Value::Null,
        DataType::Boolean => Value::Bool(true),
        DataType::Int64 => Value::from(1),
        DataType::Float64 => Value::from(1.5),
        DataType::List(field) => Value::Array(vec![witness(field.data_type())]),
        DataType::Struct(fields) => Value::Object(
            fields
                .iter()
                .map(|f| (f.name().clone(), witness(f.data_type())))
                .collect(),
        ),
        // arrow-json infers nothing else; strings are Utf8.
        _ => Value::from("s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// arrow-json's schema for `lines` inferred at once, and merged from one piece per line.
    fn whole_and_merged(lines: &[&str]) -> (Schema, Schema) {
        let text = lines.join("\n");
        let (whole, _) = arrow::json::reader::infer_json_schema(text.as_bytes(), None).unwrap();
        let pieces: Vec<SchemaRef> = lines
            .iter()
            .map(|line| {
                Arc::new(
                    arrow::json::reader::infer_json_schema(line.as_bytes(), None)
                        .unwrap()
                        .0,
                )
            })
            .collect();
        (whole, merge(&pieces).unwrap())
    }

    /// Pieces cut from chunks of any size end at line ends, cover the bytes in order, and a
    /// line longer than a piece is one piece.
    #[test]
    fn uploads_are_cut_at_line_ends() {
        let piece = CSV_CHUNK_BYTES as usize;
        let mut text = String::new();
        let mut i = 0;
        while text.len() < 2 * piece {
            text.push_str(&format!(
                "{{\"id\": {i}, \"s\": \"{}\"}}\n",
                "y".repeat(i % 300)
            ));
            i += 1;
        }
        text.push_str(&format!(
            "{{\"id\": 0, \"s\": \"{}\"}}\n",
            "z".repeat(piece + 10)
        ));
        text.push_str("{\"id\": 1}"); // no line end
        for chunk in [1 << 20, 999_999, 7 << 20] {
            let mut scan = JsonScan::default();
            let mut ready = Vec::new();
            for part in text.as_bytes().chunks(chunk) {
                scan.push(part, &mut ready);
            }
            scan.finish(&mut ready);
            let mut joined = Vec::new();
            for (at, (piece, bytes)) in ready.iter().enumerate() {
                assert_eq!(piece.start as usize, joined.len());
                assert_eq!((piece.end - piece.start) as usize, bytes.len());
                if at + 1 < ready.len() {
                    assert_eq!(bytes.last(), Some(&b'\n'));
                }
                joined.extend_from_slice(bytes);
            }
            assert_eq!(joined, text.as_bytes());
            assert!(ready.len() >= 3, "{}", ready.len());
            assert!(ready.iter().any(|(p, _)| p.end - p.start > CSV_CHUNK_BYTES));
            let names: Vec<_> = scan
                .schema()
                .unwrap()
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .collect();
            assert_eq!(names, ["id", "s"]);
        }
    }

    #[test]
    fn merged_piece_schemas_equal_whole_file_inference() {
        let files: [&[&str]; 8] = [
            &[r#"{"a": 1}"#, r#"{"a": 2.5}"#],
            &[r#"{"a": 1}"#, r#"{"a": "x"}"#],
            &[r#"{"a": null}"#, r#"{"a": true}"#],
            &[r#"{"a": 1}"#, r#"{"a": [2, 3]}"#],
            &[r#"{"a": [1]}"#, r#"{"a": [1.5]}"#, r#"{"b": "z"}"#],
            &[r#"{"u": {"x": 1}}"#, r#"{"u": {"y": "s", "x": 2.5}}"#],
            &[r#"{"a": []}"#, r#"{"a": [1]}"#],
            &[
                r#"{"z": 1, "a": {"n": null}}"#,
                r#"{"a": {"n": {"deep": [true]}}}"#,
            ],
        ];
        for lines in files {
            let (whole, merged) = whole_and_merged(lines);
            assert_eq!(merged, whole, "{lines:?}");
        }
    }
}
