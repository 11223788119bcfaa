//! Query results as a compact text table for an agent: one header line of column names, one
//! line per row, cells separated by ` | `; long texts and vectors shortened; the rows and
//! bytes capped.

use arrow::array::{Array, ArrayRef, RecordBatch};
use arrow::datatypes::{DataType, SchemaRef};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use futures::{Stream, StreamExt};

/// Most characters of one cell; longer texts end in `… (N chars)`.
pub const MAX_CELL_CHARS: usize = 300;

/// Lists (vectors) with more values than this show their first [`LIST_HEAD`] values and their
/// length.
const MAX_LIST_VALUES: usize = 8;
/// Values shown of a long list.
const LIST_HEAD: usize = 3;

/// A rendered result.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    /// The header line and the row lines, `\n`-terminated.
    pub text: String,
    /// Rows rendered.
    pub rows: usize,
    /// True when rows were left out (the row or byte cap was reached).
    pub truncated: bool,
}

/// Renders the batches of `stream` (result schema `schema`) until `max_rows` rows or
/// `max_bytes` bytes of text; reading stops there (the rest of the stream is dropped, which
/// cancels it on the server).
///
/// # Errors
/// The stream's first error; arrow's when a value cannot be formatted.
pub async fn render<E>(
    schema: &SchemaRef,
    mut stream: impl Stream<Item = Result<RecordBatch, E>> + Unpin,
    max_rows: usize,
    max_bytes: usize,
) -> Result<Table, E>
where
    E: From<arrow::error::ArrowError>,
{
    let mut text = header(schema);
    let mut rows = 0;
    let mut truncated = false;
    'batches: while let Some(batch) = stream.next().await {
        let batch = batch?;
        let columns: Vec<Cells> = batch
            .columns()
            .iter()
            .map(Cells::new)
            .collect::<Result<_, _>>()?;
        for row in 0..batch.num_rows() {
            if rows == max_rows {
                truncated = true;
                break 'batches;
            }
            let line = columns
                .iter()
                .map(|c| c.cell(row))
                .collect::<Vec<_>>()
                .join(" | ");
            if text.len() + line.len() + 1 > max_bytes && rows > 0 {
                truncated = true;
                break 'batches;
            }
            text.push_str(&line);
            text.push('\n');
            rows += 1;
        }
    }
    Ok(Table {
        text,
        rows,
        truncated,
    })
}

/// The header line: column names.
fn header(schema: &SchemaRef) -> String {
    let mut line = schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect::<Vec<_>>()
        .join(" | ");
    line.push('\n');
    line
}

/// One column of a batch, formatted cell by cell.
struct Cells<'a> {
    array: &'a ArrayRef,
    formatter: ArrayFormatter<'a>,
}

/// How values are written: NULL spelled out.
const OPTIONS: FormatOptions<'static> = FormatOptions::new().with_null("NULL");

impl<'a> Cells<'a> {
    fn new(array: &'a ArrayRef) -> Result<Self, arrow::error::ArrowError> {
        Ok(Self {
            array,
            formatter: ArrayFormatter::try_new(array.as_ref(), &OPTIONS)?,
        })
    }

    fn cell(&self, row: usize) -> String {
        if let Some(values) = list_values(self.array, row)
            && values.len() > MAX_LIST_VALUES
        {
            let head = ArrayFormatter::try_new(values.as_ref(), &OPTIONS)
                .map(|f| {
                    (0..LIST_HEAD)
                        .map(|i| f.value(i).to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default();
            return format!("[{head}, … ({} values)]", values.len());
        }
        shorten(&self.formatter.value(row).to_string())
    }
}

/// The values of row `row` of a list column; `None` for other types and NULL lists.
fn list_values(array: &ArrayRef, row: usize) -> Option<ArrayRef> {
    use arrow::array::AsArray;
    if array.is_null(row) {
        return None;
    }
    match array.data_type() {
        DataType::List(_) => Some(array.as_list::<i32>().value(row)),
        DataType::LargeList(_) => Some(array.as_list::<i64>().value(row)),
        DataType::FixedSizeList(_, _) => Some(array.as_fixed_size_list().value(row)),
        _ => None,
    }
}

/// `value` on one line (newlines as `\n`, `|` escaped), at most [`MAX_CELL_CHARS`] characters.
pub fn shorten(value: &str) -> String {
    let chars = value.chars().count();
    let mut out: String = value
        .chars()
        .take(MAX_CELL_CHARS)
        .collect::<String>()
        .replace('\\', "\\\\")
        .replace('\n', "\\n")
        .replace('\r', "")
        .replace('|', "\\|");
    if chars > MAX_CELL_CHARS {
        out.push_str(&format!("… ({chars} chars)"));
    }
    out
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{FixedSizeListArray, Float32Array, Int64Array, StringArray};
    use arrow::datatypes::{Field, Schema};

    use super::*;

    fn batch() -> RecordBatch {
        let vectors = FixedSizeListArray::try_new(
            Arc::new(Field::new("item", DataType::Float32, true)),
            10,
            Arc::new(Float32Array::from(
                (0..20).map(|i| i as f32).collect::<Vec<_>>(),
            )),
            None,
        )
        .unwrap();
        RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("id", DataType::Int64, false),
                Field::new("note", DataType::Utf8, true),
                Field::new("v", vectors.data_type().clone(), true),
            ])),
            vec![
                Arc::new(Int64Array::from(vec![1, 2])),
                Arc::new(StringArray::from(vec![Some("a|b\nc"), None])),
                Arc::new(vectors),
            ],
        )
        .unwrap()
    }

    #[tokio::test]
    async fn cells_are_one_line_and_vectors_short() {
        let batch = batch();
        let stream = futures::stream::iter([Ok::<_, arrow::error::ArrowError>(batch.clone())]);
        let table = render(&batch.schema(), stream, 10, 10_000).await.unwrap();
        assert_eq!(
            table.text,
            "id | note | v\n1 | a\\|b\\nc | [0.0, 1.0, 2.0, … (10 values)]\n\
             2 | NULL | [10.0, 11.0, 12.0, … (10 values)]\n"
        );
        assert_eq!((table.rows, table.truncated), (2, false));
    }

    #[tokio::test]
    async fn caps_stop_reading() {
        let batch = batch();
        let stream = futures::stream::iter([
            Ok::<_, arrow::error::ArrowError>(batch.clone()),
            Ok(batch.clone()),
        ]);
        let table = render(&batch.schema(), stream, 3, 10_000).await.unwrap();
        assert_eq!((table.rows, table.truncated), (3, true));
        let stream = futures::stream::iter([Ok::<_, arrow::error::ArrowError>(batch.clone())]);
        let table = render(&batch.schema(), stream, 10, 50).await.unwrap();
        assert_eq!((table.rows, table.truncated), (1, true));
    }

    #[test]
    fn long_text_is_cut() {
        let long = "x".repeat(MAX_CELL_CHARS + 5);
        let short = shorten(&long);
        assert!(short.ends_with(&format!("… ({} chars)", MAX_CELL_CHARS + 5)));
        assert_eq!(short.chars().filter(|c| *c == 'x').count(), MAX_CELL_CHARS);
    }
}
