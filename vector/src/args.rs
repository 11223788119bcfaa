//! What the crate's SQL functions share when they read their arguments and report errors:
//! literals, the JSON `options` argument, model-name arguments, planning errors, and the
//! wrapping of our errors into DataFusion's, and the one-row table that defers its work to
//! execution.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::TableProvider;
use datafusion::catalog::streaming::StreamingTable;
use datafusion::common::{DataFusionError, ScalarValue};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{ColumnarValue, Expr};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::PartitionStream;

/// The literal `expr` is, seeing through casts.
pub(crate) fn literal(expr: &Expr) -> Option<&ScalarValue> {
    match expr {
        Expr::Literal(value, _) => Some(value),
        Expr::Cast(cast) => literal(&cast.expr),
        _ => None,
    }
}

/// The text of a non-NULL string scalar (`Utf8`, `Utf8View`, `LargeUtf8`).
pub(crate) fn scalar_str(value: &ScalarValue) -> Option<&str> {
    match value {
        ScalarValue::Utf8(Some(s))
        | ScalarValue::Utf8View(Some(s))
        | ScalarValue::LargeUtf8(Some(s)) => Some(s.as_str()),
        _ => None,
    }
}

/// The text of `expr` when it is a string literal.
pub(crate) fn string_literal(expr: &Expr) -> Option<&str> {
    literal(expr).and_then(scalar_str)
}

/// The table `name` (`'docs'` or `'schema.docs'`) names, unqualified names in the session's
/// default schema.
///
/// # Errors
/// A planning error for an invalid schema or table name.
pub(crate) fn table_ref(
    function: &str,
    name: &str,
    session: &dyn datafusion::catalog::Session,
) -> datafusion::error::Result<lakehouse_catalog::TableRef> {
    use lakehouse_catalog::{SchemaName, TableRef};
    let default_schema = &session.config().options().catalog.default_schema;
    SchemaName::new(default_schema.as_str())
        .and_then(|default_schema| TableRef::parse(name, &default_schema))
        .map_err(|e| plan_err(function, e))
}

/// `schema` with one more column `name: data_type` (nullable) at the end.
pub(crate) fn with_column(schema: &Schema, name: &str, data_type: DataType) -> SchemaRef {
    let mut fields: Vec<Arc<Field>> = schema.fields().iter().cloned().collect();
    fields.push(Arc::new(Field::new(name, data_type, true)));
    Arc::new(Schema::new(fields))
}

/// Argument `i` of a scalar function call as `Utf8` strings, one per row (NULL as `None`).
///
/// # Errors
/// Arrow's, when the argument does not cast to `Utf8`.
pub(crate) fn strings(
    args: &datafusion::logical_expr::ScalarFunctionArgs,
    i: usize,
) -> datafusion::error::Result<Vec<Option<String>>> {
    use arrow::array::AsArray;
    let array = args.args[i].to_array(args.number_rows)?;
    let array = arrow::compute::cast(&array, &DataType::Utf8)?;
    Ok(array
        .as_string::<i32>()
        .iter()
        .map(|s| s.map(String::from))
        .collect())
}

/// Whether `schema` has a string column (`Utf8`, `LargeUtf8`, `Utf8View`) named `name`.
pub(crate) fn has_string_column(schema: &Schema, name: &str) -> bool {
    schema.field_with_name(name).is_ok_and(|f| {
        matches!(
            f.data_type(),
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
        )
    })
}

/// A planning error of SQL function `function` (gRPC `InvalidArgument` for clients):
/// `"{function}: {message}"`.
pub(crate) fn plan_err(function: &str, message: impl std::fmt::Display) -> DataFusionError {
    DataFusionError::Plan(format!("{function}: {message}"))
}

/// One of our errors (or Lance's) as a DataFusion error the server can still downcast to map
/// its gRPC code.
pub(crate) fn to_datafusion(e: impl std::error::Error + Send + Sync + 'static) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

/// The `options` argument of `function`: absent gives `O::default()`, else a JSON object
/// string literal deserialized into `O` (unknown keys refused when `O` says so).
///
/// # Errors
/// A planning error when `options` is not a string literal or not such a JSON object.
pub(crate) fn json_options<O: serde::de::DeserializeOwned + Default>(
    function: &str,
    options: Option<&Expr>,
) -> datafusion::error::Result<O> {
    let Some(expr) = options else {
        return Ok(O::default());
    };
    let json = string_literal(expr)
        .ok_or_else(|| plan_err(function, "options must be a JSON string literal"))?;
    serde_json::from_str(json)
        .map_err(|e| plan_err(function, format!("options must be a JSON object: {e}")))
}

/// The model name a scalar function got as its optional model argument: `None` when absent.
///
/// # Errors
/// A planning error when the argument is not a string literal.
pub(crate) fn model_name<'a>(
    function: &str,
    value: Option<&'a ScalarValue>,
) -> datafusion::error::Result<Option<&'a str>> {
    value
        .map(|v| {
            scalar_str(v).ok_or_else(|| plan_err(function, "the model must be a string literal"))
        })
        .transpose()
}

/// [`model_name`] for an argument as a scalar function receives it at execution.
///
/// # Errors
/// A planning error when the argument is a column rather than a string literal.
pub(crate) fn model_arg<'a>(
    function: &str,
    value: Option<&'a ColumnarValue>,
) -> datafusion::error::Result<Option<&'a str>> {
    match value {
        None => Ok(None),
        Some(ColumnarValue::Scalar(v)) => model_name(function, Some(v)),
        Some(ColumnarValue::Array(_)) => {
            Err(plan_err(function, "the model must be a string literal"))
        }
    }
}

/// Work that answers one batch when a query executes (never while it is planned).
#[async_trait::async_trait]
pub trait Deferred: Clone + std::fmt::Debug + Send + Sync + 'static {
    /// The batch, computed in the executing query's task context.
    async fn run(self, ctx: Arc<TaskContext>) -> datafusion::error::Result<RecordBatch>;
}

#[derive(Debug)]
struct DeferredStream<R> {
    schema: SchemaRef,
    run: R,
}

impl<R: Deferred> PartitionStream for DeferredStream<R> {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let stream = futures::stream::once(self.run.clone().run(ctx));
        Box::pin(RecordBatchStreamAdapter::new(
            Arc::clone(&self.schema),
            stream,
        ))
    }
}

/// A table of `schema` whose one batch `run` computes each time a query scanning it executes.
///
/// # Errors
/// DataFusion's, when the streaming table cannot be built (not expected).
pub fn deferred_table<R: Deferred>(
    schema: SchemaRef,
    run: R,
) -> datafusion::error::Result<Arc<dyn TableProvider>> {
    let stream = DeferredStream {
        schema: Arc::clone(&schema),
        run,
    };
    Ok(Arc::new(StreamingTable::try_new(
        schema,
        vec![Arc::new(stream)],
    )?))
}

/// [`deferred_table`] for a table function called with no arguments, `name()`.
///
/// # Errors
/// DataFusion's `Plan` error "`name`() takes no arguments" when `args` holds any; otherwise as
/// [`deferred_table`].
pub fn deferred_table_without_arguments<R: Deferred>(
    name: &str,
    args: &datafusion::catalog::TableFunctionArgs,
    schema: SchemaRef,
    run: R,
) -> datafusion::error::Result<Arc<dyn TableProvider>> {
    if !args.exprs().is_empty() {
        return Err(datafusion::error::DataFusionError::Plan(format!(
            "{name}() takes no arguments"
        )));
    }
    deferred_table(schema, run)
}
