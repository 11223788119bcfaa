//! Where rows go into a table, for every path that writes them (INSERT, CREATE TABLE AS,
//! Flight SQL bulk ingest, file ingest, document ingest): Parquet tables through the catalog's
//! data-file writer (one commit, primary keys checked on every commit attempt), Lance tables
//! through one Lance commit.
//!
//! The query part of CTAS and INSERT ... SELECT streams straight into Parquet files (never
//! collected); INSERT's cast of the input to the table's columns is DataFusion's.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::error::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::logical_expr::{DmlStatement, LogicalPlan, Union, WriteOp};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::StreamExt;
use lakehouse_catalog::{
    Change, Error as CatalogError, LanceTable, Manifest, TableRef, VectorMetric, WriteMode,
};
use lakehouse_vector::table::{LanceStore, check_schema, vector_columns};

use crate::error::{Error, Result};
use crate::query::{QueryEngine, params};

/// How a new Lance table is declared (ingest options `lakehouse.table_format = lance`,
/// `lakehouse.vector.metric`, `lakehouse.vector.model`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LanceCreate {
    /// Distance of the vector columns (default cosine).
    pub metric: VectorMetric,
    /// The embedding model that made the vectors, when known.
    pub model: Option<String>,
}

impl Default for LanceCreate {
    fn default() -> Self {
        Self {
            metric: VectorMetric::Cosine,
            model: None,
        }
    }
}

impl LanceCreate {
    /// The Lance declaration in ingest `options`, if they ask for a Lance table.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an unknown table format or metric.
    pub fn from_options(
        options: &std::collections::HashMap<String, String>,
    ) -> Result<Option<Self>> {
        match options
            .get("lakehouse.table_format")
            .map(|f| f.to_ascii_lowercase())
        {
            None => Ok(None),
            Some(f) if f == "parquet" => Ok(None),
            Some(f) if f == "lance" => {
                let metric = match options.get("lakehouse.vector.metric") {
                    Some(m) => m.parse().map_err(|e: String| {
                        Error::invalid(format!("lakehouse.vector.metric: {e}"))
                    })?,
                    None => VectorMetric::Cosine,
                };
                Ok(Some(Self {
                    metric,
                    model: options.get("lakehouse.vector.model").cloned(),
                }))
            }
            Some(other) => Err(Error::invalid(format!(
                "lakehouse.table_format {other:?}: use parquet or lance"
            ))),
        }
    }
}

/// `batches` with view types cast to their plain forms (what the table schema records), as a
/// DataFusion stream that counts the rows it passes into `rows`.
fn normalized(
    schema: &SchemaRef,
    batches: SendableRecordBatchStream,
    rows: Arc<AtomicU64>,
) -> SendableRecordBatchStream {
    // Field metadata (e.g. `embed`'s model name) is recorded in the catalog, not in Lance.
    let fields: Vec<_> = lakehouse_catalog::normalize_schema(schema)
        .fields()
        .iter()
        .map(|f| f.as_ref().clone().with_metadata(Default::default()))
        .collect();
    // Schema-level metadata (a document table's chunk settings) is kept: Lance stores it.
    let target: SchemaRef = Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()));
    let out = Arc::clone(&target);
    let stream = batches.map(move |batch| {
        let batch = batch?;
        rows.fetch_add(batch.num_rows() as u64, Ordering::Relaxed);
        if batch.schema().fields() == target.fields() {
            return Ok(batch);
        }
        let columns = batch
            .columns()
            .iter()
            .zip(target.fields())
            .map(|(c, f)| datafusion::arrow::compute::cast(c, f.data_type()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(RecordBatch::try_new(Arc::clone(&target), columns)?)
    });
    Box::pin(RecordBatchStreamAdapter::new(out, stream))
}

impl QueryEngine {
    /// The check to pass to a commit ([`lakehouse_catalog::CommitCheck`]) so that a write into
    /// a table with a primary key is refused when it would duplicate a key: it runs on every
    /// commit attempt against the manifest about to be published, and fails with the catalog's
    /// `DuplicateKey` (naming the key value) when that version holds a key twice, and with its
    /// storage errors when reading fails.
    pub fn primary_key_check(&self) -> lakehouse_catalog::CommitCheck {
        let state = self.template.clone();
        let store_url = self.store_url.clone();
        Arc::new(move |candidate| {
            Box::pin(duplicate_key_check(
                state.clone(),
                store_url.clone(),
                candidate,
            ))
        })
    }

    /// Executes `input` and commits its rows to `table` with `mode`; returns the row count.
    pub(super) async fn write_plan(
        &self,
        ctx: &datafusion::prelude::SessionContext,
        table: &TableRef,
        mode: WriteMode,
        input: &Arc<LogicalPlan>,
    ) -> Result<i64> {
        let state = ctx.state();
        let physical = state.create_physical_plan(input).await?;
        let schema = physical.schema();
        let stream = datafusion::physical_plan::execute_stream(physical, ctx.task_ctx())?;
        if mode != WriteMode::Create
            && let Ok(live) = self.catalog().table(table).await
            && live.lance.is_some()
        {
            let rows = self
                .write_lance(table, mode, Some(live), None, &schema, stream)
                .await?;
            return Ok(rows as i64);
        }
        let (_, rows) = self
            .write_batches(table, mode, &schema, stream, format!("writing {table}"))
            .await?;
        Ok(rows as i64)
    }

    /// Writes a stream of record batches to `table` as one commit (through
    /// [`lakehouse_catalog::Catalog::write_stream_checked`] with the primary-key check) and
    /// returns the new version and the number of rows written. A stream error aborts the write
    /// and is reported as the catalog's `InvalidData` at `location`.
    ///
    /// # Errors
    /// As `write_stream_checked`, including `DuplicateKey`.
    pub async fn write_batches<S, E>(
        &self,
        table: &TableRef,
        mode: WriteMode,
        schema: &datafusion::arrow::datatypes::SchemaRef,
        batches: S,
        location: String,
    ) -> Result<(Arc<lakehouse_catalog::Manifest>, u64)>
    where
        S: futures::Stream<Item = std::result::Result<datafusion::arrow::array::RecordBatch, E>>
            + Send,
        E: std::fmt::Display,
    {
        use std::sync::atomic::{AtomicU64, Ordering};
        let rows = Arc::new(AtomicU64::new(0));
        let counted = Arc::clone(&rows);
        let batches = batches.map(move |batch| match batch {
            Ok(batch) => {
                counted.fetch_add(batch.num_rows() as u64, Ordering::Relaxed);
                Ok(batch)
            }
            Err(e) => Err(CatalogError::InvalidData {
                location: location.clone(),
                message: e.to_string(),
            }),
        });
        let manifest = self
            .catalog()
            .write_stream_checked(
                table,
                mode,
                schema,
                None,
                Box::pin(batches),
                Some(self.primary_key_check()),
            )
            .await?;
        self.after_commit(table, &manifest);
        Ok((manifest, rows.load(Ordering::Relaxed)))
    }
}

impl QueryEngine {
    /// Where this engine's Lance datasets live.
    pub fn lance_store(&self) -> LanceStore {
        LanceStore::new(self.catalog().location())
    }

    /// Writes `batches` to the Lance table `table`: appends to it when it is a live Lance table
    /// (one Lance commit), or creates it when missing and `create` declares it. Returns the
    /// rows written.
    ///
    /// # Errors
    /// `TableExists` for `WriteMode::Create` on a live table; `TableNotFound` for an append to
    /// a missing one; [`Error::InvalidArgument`] for a Parquet table named as Lance, a replace
    /// (not supported for Lance yet) or a non-Float32 vector column; Lance's errors (schema
    /// mismatch on append).
    pub async fn write_lance(
        &self,
        table: &TableRef,
        mode: WriteMode,
        live: Option<Arc<Manifest>>,
        create: Option<LanceCreate>,
        schema: &SchemaRef,
        batches: SendableRecordBatchStream,
    ) -> Result<u64> {
        let store = self.lance_store();
        let rows = Arc::new(AtomicU64::new(0));
        let schema_with_metadata = schema.as_ref();
        let stream = normalized(schema, batches, Arc::clone(&rows));
        match (live, mode) {
            (Some(live), WriteMode::Append | WriteMode::CreateOrAppend) => {
                let Some(lance) = &live.lance else {
                    return Err(Error::invalid(format!(
                        "{table} is a Parquet table; it cannot take lakehouse.table_format = lance"
                    )));
                };
                store.append(&lance.location, stream).await?;
                Ok(rows.load(Ordering::Relaxed))
            }
            (Some(_), WriteMode::Create) => Err(CatalogError::TableExists(table.clone()).into()),
            (Some(_), WriteMode::Replace) => Err(Error::invalid(format!(
                "replacing the rows of Lance table {table} is not supported yet; drop and \
                 create it"
            ))),
            (Some(_), WriteMode::Upsert) => Err(Error::invalid(format!(
                "upserts need a primary key; Lance table {table} has none"
            ))),
            (None, WriteMode::Append | WriteMode::Upsert) => {
                Err(CatalogError::TableNotFound(table.clone()).into())
            }
            (None, _) => {
                let create = create.unwrap_or_default();
                let arrow_schema: Schema = stream.schema().as_ref().clone();
                check_schema(&arrow_schema)?;
                let location = lakehouse_catalog::layout::new_lance_location(table).to_string();
                let dataset = store.create(&location, stream).await?;
                let schema: SchemaRef = Arc::new(Schema::from(dataset.schema()));
                let lance = LanceTable {
                    vector_columns: vector_columns(
                        schema_with_metadata,
                        create.metric,
                        create.model.as_deref(),
                    ),
                    location: location.clone(),
                };
                let change = Change::CreateLance { schema, lance };
                if let Err(e) = self.catalog().commit(table, change).await {
                    // Not recorded: nothing may point at the dataset, so remove it.
                    store.remove(&location).await;
                    return Err(e.into());
                }
                Ok(rows.load(Ordering::Relaxed))
            }
        }
    }
}

/// Refuses `candidate` (the table with the new files appended) when two rows share a primary
/// key: `SELECT key FROM candidate GROUP BY key HAVING count(*) > 1 LIMIT 1`, via DataFusion's
/// DataFrame API. Tables without a key pass at once.
async fn duplicate_key_check(
    state: datafusion::execution::session_state::SessionState,
    store_url: datafusion::execution::object_store::ObjectStoreUrl,
    candidate: Arc<lakehouse_catalog::Manifest>,
) -> lakehouse_catalog::Result<()> {
    use datafusion::common::Column;
    use datafusion::functions_aggregate::expr_fn::count;
    use datafusion::logical_expr::{Expr, col, lit};
    if candidate.primary_key.is_empty() {
        return Ok(());
    }
    let table = candidate.table.clone();
    let failed = |e: datafusion::error::DataFusionError| CatalogError::InvalidData {
        location: format!("checking the primary key of {table}"),
        message: e.to_string(),
    };
    let key: Vec<Expr> = candidate
        .primary_key
        .iter()
        .map(|c| Expr::Column(Column::from_name(c)))
        .collect();
    let names = candidate.primary_key.clone();
    let provider = Arc::new(crate::query::table::VersionTable::new(candidate, store_url));
    let ctx = datafusion::prelude::SessionContext::new_with_state(state);
    let duplicates = ctx
        .read_table(provider)
        .and_then(|df| df.aggregate(key, vec![count(lit(1)).alias("__n")]))
        .and_then(|df| df.filter(col("__n").gt(lit(1))))
        .and_then(|df| df.limit(0, Some(1)))
        .map_err(failed)?
        .collect()
        .await
        .map_err(failed)?;
    let Some(row) = duplicates.iter().find(|b| b.num_rows() > 0) else {
        return Ok(());
    };
    let values: Vec<String> = (0..names.len())
        .map(|i| {
            datafusion::arrow::util::display::array_value_to_string(row.column(i), 0)
                .unwrap_or_else(|_| "?".into())
        })
        .collect();
    Err(CatalogError::DuplicateKey {
        table,
        key: format!("({})=({})", names.join(", "), values.join(", ")),
    })
}

/// `plan` with `batch`'s parameter rows bound: one row binds into any statement; several bind
/// into an INSERT's input once each, united into one input (one commit).
pub(super) fn bind_rows(plan: LogicalPlan, batch: &RecordBatch) -> Result<LogicalPlan> {
    let expected = params::parameter_schema(&plan)?;
    match batch.num_rows() {
        0 => Err(Error::invalid("no parameter rows were bound")),
        1 => Ok(plan.with_param_values(params::param_values_at(batch, 0, &expected)?)?),
        rows => match plan {
            LogicalPlan::Dml(
                dml @ DmlStatement {
                    op: WriteOp::Insert(_),
                    ..
                },
            ) => {
                let inputs = (0..rows)
                    .map(|row| {
                        let values = params::param_values_at(batch, row, &expected)?;
                        Ok(Arc::new(
                            dml.input.as_ref().clone().with_param_values(values)?,
                        ))
                    })
                    .collect::<Result<Vec<_>>>()?;
                let union = Union::try_new_with_loose_types(inputs)?;
                Ok(LogicalPlan::Dml(DmlStatement {
                    input: Arc::new(LogicalPlan::Union(union)),
                    ..dml
                }))
            }
            _ => Err(Error::invalid(format!(
                "{rows} parameter rows were bound; only INSERT takes several rows, other \
                 statements bind one"
            ))),
        },
    }
}

/// A DataFusion error from a stream of `Result<RecordBatch, E>` (ingest decoding errors).
pub fn to_datafusion(e: impl std::error::Error + Send + Sync + 'static) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}
