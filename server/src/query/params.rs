//! Bind parameters: `?` numbering, parameter schemas, and bound values.
//!
//! DataFusion parses every `?` as the same placeholder, so [`number_placeholders`] renames them
//! `$1..$n` from left to right (by token, so `?` inside strings and comments is left alone)
//! before planning. Bound values arrive as a one-row Arrow batch (Flight SQL DoPut on the
//! prepared statement), travel inside stateless handles and tickets as Arrow IPC
//! ([`encode_parameters`]), and are cast to the types DataFusion inferred for each parameter.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::ipc::reader::StreamReader;
use datafusion::arrow::ipc::writer::StreamWriter;
use datafusion::common::{ParamValues, ScalarValue};
use datafusion::logical_expr::LogicalPlan;
use datafusion::sql::sqlparser::dialect::Dialect;
use datafusion::sql::sqlparser::tokenizer::{Location, Token, Tokenizer};

use crate::error::{Error, Result};

/// `sql` with each `?` placeholder replaced by `$1`, `$2`, ... in order of appearance.
///
/// # Errors
/// [`Error::InvalidArgument`] when the SQL does not tokenize (unterminated string, ...).
pub fn number_placeholders(sql: &str, dialect: &dyn Dialect) -> Result<String> {
    if !sql.contains('?') {
        return Ok(sql.to_string());
    }
    let tokens = Tokenizer::new(dialect, sql)
        .tokenize_with_location()
        .map_err(|e| Error::invalid(e.to_string()))?;
    let mut offsets = Vec::new();
    for token in &tokens {
        if token.token == Token::Placeholder("?".to_string()) {
            offsets.push(
                byte_offset(sql, token.span.start)
                    .ok_or_else(|| Error::invalid("cannot locate a `?` placeholder"))?,
            );
        }
    }
    let mut out = String::with_capacity(sql.len() + offsets.len() * 2);
    let mut last = 0;
    for (n, offset) in offsets.iter().enumerate() {
        out.push_str(&sql[last..*offset]);
        out.push_str(&format!("${}", n + 1));
        last = offset + 1;
    }
    out.push_str(&sql[last..]);
    Ok(out)
}

/// The byte offset in `sql` of a tokenizer `location` (1-based line and column, in chars), or
/// `None` when it lies outside `sql`.
pub(super) fn byte_offset(sql: &str, location: Location) -> Option<usize> {
    let line = (location.line as usize).checked_sub(1)?;
    let start = if line == 0 {
        0
    } else {
        sql.match_indices('\n').nth(line - 1)?.0 + 1
    };
    sql[start..]
        .char_indices()
        .nth((location.column as usize).checked_sub(1)?)
        .map(|(i, _)| start + i)
}

/// The parameters `$1..$n` of `plan` with the types DataFusion inferred (`Null` when it could
/// not infer one), as an Arrow schema with fields named `$1`, `$2`, ... in order.
///
/// # Errors
/// DataFusion errors, or parameters that are not positional (`$name`).
pub fn parameter_schema(plan: &LogicalPlan) -> Result<SchemaRef> {
    let types = plan.get_parameter_types()?;
    let mut params: Vec<(usize, Option<DataType>)> = types
        .into_iter()
        .map(|(name, data_type)| {
            let n = name
                .strip_prefix('$')
                .and_then(|n| n.parse::<usize>().ok())
                .ok_or_else(|| {
                    Error::invalid(format!("unsupported parameter {name}; use ? or $1"))
                })?;
            Ok((n, data_type))
        })
        .collect::<Result<_>>()?;
    params.sort_by_key(|(n, _)| *n);
    let fields: Vec<Field> = params
        .into_iter()
        .map(|(n, t)| {
            // Announced in the types every client reads (no view types).
            let t = t.map_or(DataType::Null, |t| super::wire_type(&t));
            Field::new(format!("${n}"), t, true)
        })
        .collect();
    Ok(Arc::new(Schema::new(fields)))
}

/// The values of a one-row parameter batch for `plan`, each cast to the type inferred for its
/// parameter. Columns bind to `$1..$n` by position.
///
/// # Errors
/// [`Error::InvalidArgument`] when the batch has other than one row, a different number of
/// columns than the statement has parameters, or a value that cannot be cast.
pub fn param_values(batch: &RecordBatch, plan: &LogicalPlan) -> Result<ParamValues> {
    if batch.num_rows() != 1 {
        return Err(Error::invalid(format!(
            "a query binds one row of parameters, got {} rows",
            batch.num_rows()
        )));
    }
    param_values_at(batch, 0, parameter_schema(plan)?.as_ref())
}

/// The values of row `row` of `batch` for parameters `expected` (see [`parameter_schema`]),
/// each cast to its parameter's type.
///
/// # Errors
/// As [`param_values`], naming the row when the batch has several.
pub fn param_values_at(batch: &RecordBatch, row: usize, expected: &Schema) -> Result<ParamValues> {
    if batch.num_columns() != expected.fields().len() {
        return Err(Error::invalid(format!(
            "the statement has {} parameter(s), {} value(s) were bound",
            expected.fields().len(),
            batch.num_columns()
        )));
    }
    let at_row = if batch.num_rows() > 1 {
        format!(" (parameter row {})", row + 1)
    } else {
        String::new()
    };
    let values = batch
        .columns()
        .iter()
        .zip(expected.fields())
        .map(|(column, field)| {
            let value = ScalarValue::try_from_array(column, row)?;
            match field.data_type() {
                DataType::Null => Ok(value),
                target if value.data_type() == *target => Ok(value),
                target => value.cast_to(target).map_err(|e| {
                    Error::invalid(format!(
                        "parameter {}{at_row}: cannot use {} value {value} as {target}: {e}",
                        field.name(),
                        value.data_type()
                    ))
                }),
            }
        })
        .collect::<Result<Vec<ScalarValue>>>()?;
    Ok(ParamValues::from(values))
}

/// A parameter batch as Arrow IPC stream bytes (for handles and tickets).
///
/// # Errors
/// Arrow errors while encoding.
pub fn encode_parameters(batch: &RecordBatch) -> Result<Vec<u8>> {
    let mut writer = StreamWriter::try_new(Vec::new(), &batch.schema())?;
    writer.write(batch)?;
    Ok(writer.into_inner()?)
}

/// The parameter batch encoded by [`encode_parameters`] (several batches are concatenated);
/// `None` for empty bytes.
///
/// # Errors
/// [`Error::InvalidArgument`] when the bytes are not such a stream.
pub fn decode_parameters(bytes: &[u8]) -> Result<Option<RecordBatch>> {
    if bytes.is_empty() {
        return Ok(None);
    }
    let invalid = |e: datafusion::arrow::error::ArrowError| {
        Error::invalid(format!("invalid parameters in handle: {e}"))
    };
    let reader = StreamReader::try_new(bytes, None).map_err(invalid)?;
    let schema = reader.schema();
    let batches = reader.collect::<Result<Vec<_>, _>>().map_err(invalid)?;
    Ok(Some(
        datafusion::arrow::compute::concat_batches(&schema, &batches).map_err(invalid)?,
    ))
}

/// Placeholder names used by `plan` that have no value (for a clear error before execution).
pub fn unbound(plan: &LogicalPlan) -> Result<Vec<String>> {
    let types: HashMap<String, Option<DataType>> = plan.get_parameter_types()?;
    let mut names: Vec<String> = types.into_keys().collect();
    names.sort();
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::dialect::GenericDialect;

    #[test]
    fn question_marks_are_numbered_outside_strings_and_comments() {
        let d = GenericDialect {};
        let sql = "SELECT '?', x FROM t -- what?\nWHERE a = ? AND b = 'it''s ?' AND c IN (?, ?)";
        assert_eq!(
            number_placeholders(sql, &d).unwrap(),
            "SELECT '?', x FROM t -- what?\nWHERE a = $1 AND b = 'it''s ?' AND c IN ($2, $3)"
        );
        assert_eq!(number_placeholders("SELECT 1", &d).unwrap(), "SELECT 1");
        assert_eq!(
            number_placeholders("SELECT 'é', ?", &d).unwrap(),
            "SELECT 'é', $1"
        );
    }

    #[test]
    fn parameters_round_trip_through_ipc() {
        let batch = RecordBatch::try_from_iter(vec![(
            "a",
            Arc::new(datafusion::arrow::array::Int64Array::from(vec![5])) as _,
        )])
        .unwrap();
        let bytes = encode_parameters(&batch).unwrap();
        assert_eq!(decode_parameters(&bytes).unwrap(), Some(batch));
        assert_eq!(decode_parameters(&[]).unwrap(), None);
        assert!(decode_parameters(b"junk").is_err());
    }
}
