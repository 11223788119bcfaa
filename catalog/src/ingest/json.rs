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

use std::io::{BufRead, BufReader, Seek};
use std::path::Path;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Schema, SchemaRef};
use serde_json::Value;

use super::{
    BATCH_ROWS, FileIngest, Piece, decode_in_pieces, invalid, json_error, open, read_range,
};
use crate::error::Result;

/// Cuts the NDJSON file at `path` into pieces of whole lines, about [`super::CSV_CHUNK_BYTES`]
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
        let mut end = (start + super::CSV_CHUNK_BYTES).min(size);
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

/// The schema arrow-json infers for the whole file, from its pieces inferred at once.
///
/// # Errors
/// [`crate::Error::InvalidData`] naming the first line that is not a JSON object.
pub(super) fn infer(path: &Path, spec: &FileIngest, pieces: &[Piece]) -> Result<Schema> {
    let mut schemas = Vec::with_capacity(pieces.len());
    decode_in_pieces(
        pieces,
        |piece| {
            let bytes = read_range(path, spec, piece.start, piece.end)?;
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

/// Decodes the pieces of the NDJSON file at `path` against `schema` (nested) on all cores,
/// flattened to `parent.child` columns, handing the batches to `sink` in file order.
///
/// # Errors
/// [`crate::Error::InvalidData`] naming the file (and line where found) of a value that does
/// not fit.
pub(super) fn read_pieces(
    path: &Path,
    spec: &FileIngest,
    schema: &SchemaRef,
    pieces: &[Piece],
    sink: &mut dyn FnMut(RecordBatch) -> bool,
) -> Result<()> {
    decode_in_pieces(
        pieces,
        |piece| {
            let bytes = read_range(path, spec, piece.start, piece.end)?;
            let reader = arrow::json::ReaderBuilder::new(Arc::clone(schema))
                .with_batch_size(BATCH_ROWS)
                .build(&bytes[..])
                .map_err(|e| json_error(path, spec, e))?;
            reader
                .map(|batch| {
                    batch
                        .map_err(|e| json_error(path, spec, e))?
                        .normalize(".", None)
                        .map_err(|e| invalid(spec, e.to_string()))
                })
                .collect()
        },
        sink,
    )
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
