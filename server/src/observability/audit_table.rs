//! `audit_log()`: the audit log read back as a table, for `write` users only.
//!
//! Schema (one row per [`AuditRecord`], oldest first): `time` Timestamp(µs, UTC), `principal`
//! Utf8, `peer` Utf8, `rpc` Utf8, `command` Utf8, `query_id` Utf8, `statement` Utf8,
//! `parameters` List<Utf8>, `tables_read` List<Utf8>, `tables_written` List<Utf8>, `rows`
//! UInt64, `bytes` UInt64, `outcome` Utf8, `error` Utf8, `duration_ms` Float64. The log is read
//! when the query executes (records still queued are written first).

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, Float64Array, ListBuilder, RecordBatch, StringArray, StringBuilder,
    TimestampMicrosecondArray, UInt64Array,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::catalog::{TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::execution::TaskContext;

use super::audit::{AuditLog, AuditRecord};
use crate::error::Error;

/// The function's name.
pub const NAME: &str = "audit_log";

/// The result schema (see the module docs).
pub fn schema() -> SchemaRef {
    let text = |name: &str, nullable| Field::new(name, DataType::Utf8, nullable);
    let list = |name: &str| {
        Field::new(
            name,
            DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true))),
            true,
        )
    };
    Arc::new(Schema::new(vec![
        Field::new(
            "time",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        text("principal", true),
        text("peer", true),
        text("rpc", false),
        text("command", false),
        text("query_id", true),
        text("statement", true),
        list("parameters"),
        list("tables_read"),
        list("tables_written"),
        Field::new("rows", DataType::UInt64, false),
        Field::new("bytes", DataType::UInt64, false),
        text("outcome", false),
        text("error", true),
        Field::new("duration_ms", DataType::Float64, false),
    ]))
}

/// The `audit_log()` table function over the server's audit log (`None`: the log is off).
#[derive(Clone)]
pub struct AuditLogFunction {
    log: Option<Arc<AuditLog>>,
}

impl std::fmt::Debug for AuditLogFunction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLogFunction")
            .field("on", &self.log.is_some())
            .finish()
    }
}

impl AuditLogFunction {
    /// The function reading `log`.
    pub fn new(log: Option<Arc<AuditLog>>) -> Self {
        Self { log }
    }
}

impl TableFunctionImpl for AuditLogFunction {
    /// # Errors
    /// `PermissionDenied` unless the caller is a `write` user; `FailedPrecondition`-style
    /// [`Error::Config`] when the audit log is off.
    fn call_with_args(
        &self,
        args: TableFunctionArgs,
    ) -> datafusion::error::Result<Arc<dyn TableProvider>> {
        let external = |e: Error| datafusion::error::DataFusionError::External(Box::new(e));
        match crate::auth::caller() {
            Some(principal) => principal
                .require_write("reading audit_log()")
                .map_err(external)?,
            None => {
                return Err(external(Error::PermissionDenied(
                    "audit_log() can only be read by a write user".into(),
                )));
            }
        }
        let Some(log) = &self.log else {
            return Err(external(Error::Config(
                "the audit log is off: set [audit] path (or --audit-path) to record requests"
                    .into(),
            )));
        };
        lakehouse_vector::deferred_table_without_arguments(
            NAME,
            &args,
            schema(),
            Read {
                log: Arc::clone(log),
            },
        )
    }
}

/// The log, read when the query executes.
#[derive(Clone)]
struct Read {
    log: Arc<AuditLog>,
}

impl std::fmt::Debug for Read {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("audit_log()")
    }
}

#[async_trait::async_trait]
impl lakehouse_vector::Deferred for Read {
    async fn run(self, _ctx: Arc<TaskContext>) -> datafusion::error::Result<RecordBatch> {
        let records = self
            .log
            .read()
            .await
            .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?;
        Ok(batch(&records)?)
    }
}

fn batch(records: &[AuditRecord]) -> datafusion::error::Result<RecordBatch> {
    let text = |f: &dyn Fn(&AuditRecord) -> Option<&str>| -> ArrayRef {
        Arc::new(records.iter().map(f).collect::<StringArray>())
    };
    let list = |f: &dyn Fn(&AuditRecord) -> Option<&Vec<String>>| -> ArrayRef {
        let mut builder = ListBuilder::new(StringBuilder::new());
        for record in records {
            match f(record) {
                Some(values) => {
                    for v in values {
                        builder.values().append_value(v);
                    }
                    builder.append(true);
                }
                None => builder.append(false),
            }
        }
        Arc::new(builder.finish())
    };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(
            records
                .iter()
                .map(|r| Some(r.time.timestamp_micros()))
                .collect::<TimestampMicrosecondArray>()
                .with_timezone("UTC"),
        ),
        text(&|r| r.principal.as_deref()),
        text(&|r| r.peer.as_deref()),
        text(&|r| Some(r.rpc.as_str())),
        text(&|r| Some(r.command.as_str())),
        text(&|r| r.query_id.as_deref()),
        text(&|r| r.statement.as_deref()),
        list(&|r| r.parameters.as_ref()),
        list(&|r| Some(&r.tables_read)),
        list(&|r| Some(&r.tables_written)),
        Arc::new(records.iter().map(|r| r.rows).collect::<UInt64Array>()),
        Arc::new(records.iter().map(|r| r.bytes).collect::<UInt64Array>()),
        text(&|r| Some(r.outcome.as_str())),
        text(&|r| r.error.as_deref()),
        Arc::new(
            records
                .iter()
                .map(|r| r.duration_ms)
                .collect::<Float64Array>(),
        ),
    ];
    Ok(RecordBatch::try_new(schema(), columns)?)
}
