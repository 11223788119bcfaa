//! Statements that change data, for `CommandStatementUpdate`: DataFusion's SQL planner turns
//! them into its DDL/DML logical plans, and this module carries each out through the catalog,
//! one atomic commit per statement:
//!
//! | statement | catalog effect | affected rows |
//! |---|---|---|
//! | `CREATE [OR REPLACE] TABLE [IF NOT EXISTS] t (cols)` | new empty table (version 1) | 0 |
//! | `CREATE [OR REPLACE] TABLE [IF NOT EXISTS] t AS SELECT ...` | new table with the rows | rows written |
//! | `INSERT INTO t [(cols)] VALUES ... / SELECT ...` | append version | rows written |
//! | `INSERT OVERWRITE t ...` | replace version | rows written |
//! | `DROP TABLE [IF EXISTS] t` | drop version | 0 |
//! | `CREATE TABLE [IF NOT EXISTS] t [(cols)] STORED AS LANCE [WITH (...)] [AS SELECT ...]` | new Lance table (see [`super::lance`]) | rows written |
//! | `CREATE INDEX` / `DROP INDEX` | Lance index commit | 0 |
//! | `CREATE SCHEMA [IF NOT EXISTS] s` / `DROP SCHEMA [IF EXISTS] s [CASCADE]` | schema marker | 0 |
//!
//! The query part of CTAS and INSERT ... SELECT streams straight into Parquet files (never
//! collected); INSERT's cast of the input to the table's columns is DataFusion's.

use std::sync::Arc;

use datafusion::common::TableReference;
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{DdlStatement, DmlStatement, LogicalPlan, WriteOp};
use futures::StreamExt;
use lakehouse_catalog::{
    CATALOG_NAME, Error as CatalogError, SchemaName, TableName, TableRef, WriteMode,
};

use datafusion::arrow::array::RecordBatch;
use datafusion::logical_expr::Union;

use super::{Pins, QueryEngine, params};
use crate::error::{Error, Result};

impl QueryEngine {
    /// Runs one data-changing statement and returns the number of rows it wrote (see the
    /// module docs for each statement).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for queries (use CommandStatementQuery), unsupported
    /// statements (UPDATE, DELETE, views, temporary tables) and bad SQL; catalog errors
    /// (`TableExists` → AlreadyExists, `TableNotFound` → NotFound, schema mismatch, ...).
    ///
    /// `parameters` binds `?`/`$n` placeholders: one row for any statement; several rows for
    /// `INSERT`, which then inserts the statement's rows once per parameter row, all in one
    /// commit (JDBC `executeBatch`, ADBC `executemany`).
    ///
    /// The statement takes a query slot and runs under the per-query timeout (see
    /// [`super::limits`]).
    pub async fn execute_update(
        &self,
        sql: &str,
        default_schema: &SchemaName,
        parameters: Option<&RecordBatch>,
    ) -> Result<i64> {
        let guard = self.admission().admit(None).await?;
        guard
            .run(self.run_update(sql, default_schema, parameters))
            .await
    }

    async fn run_update(
        &self,
        sql: &str,
        default_schema: &SchemaName,
        parameters: Option<&RecordBatch>,
    ) -> Result<i64> {
        // Statements DataFusion does not plan, handled on the parsed AST.
        let lance_ddl = super::lance::strip_stored_as_lance(sql, self.dialect()?.as_ref())?;
        if let Some(rest) = lance_ddl {
            return self.create_lance_table(&rest, default_schema).await;
        }
        let statement = self.parse(sql)?;
        if let datafusion::sql::parser::Statement::Statement(inner) = &statement
            && let datafusion::sql::sqlparser::ast::Statement::CreateIndex(create) = inner.as_ref()
        {
            return self.create_index(create, default_schema).await;
        }
        if let datafusion::sql::parser::Statement::Statement(inner) = &statement
            && let datafusion::sql::sqlparser::ast::Statement::Drop {
                object_type: datafusion::sql::sqlparser::ast::ObjectType::Index,
                if_exists,
                names,
                table,
                ..
            } = inner.as_ref()
        {
            return self
                .drop_index(names, table.as_ref(), *if_exists, default_schema)
                .await;
        }
        let pins = Pins::default();
        let ctx = self.session(default_schema, pins.clone(), false).await?;
        let plan = super::statement_to_plan(&ctx.state(), statement, &pins).await?;
        let plan = match parameters {
            Some(batch) => bind_rows(plan, batch)?,
            None => {
                let unbound = params::unbound(&plan)?;
                if !unbound.is_empty() {
                    return Err(Error::invalid(format!(
                        "no value bound for parameter(s) {}",
                        unbound.join(", ")
                    )));
                }
                plan
            }
        };
        let table_ref = |name: &TableReference| resolve_table(name, default_schema);
        let catalog = self.catalog();
        match plan {
            LogicalPlan::Ddl(DdlStatement::CreateMemoryTable(create)) => {
                if create.temporary {
                    return Err(Error::invalid("temporary tables are not supported"));
                }
                let table = table_ref(&create.name)?;
                if create.if_not_exists && catalog.table(&table).await.is_ok() {
                    return Ok(0);
                }
                if !create.constraints.is_empty() {
                    return self.create_with_key(&table, &create).await;
                }
                let mode = if create.or_replace {
                    WriteMode::Replace
                } else {
                    WriteMode::Create
                };
                self.write_plan(&ctx, &table, mode, &create.input).await
            }
            LogicalPlan::Dml(DmlStatement {
                table_name,
                op: WriteOp::Insert(op),
                input,
                ..
            }) => {
                let table = table_ref(&table_name)?;
                let mode = match op {
                    InsertOp::Append => WriteMode::Append,
                    InsertOp::Overwrite => WriteMode::Replace,
                    InsertOp::Replace => {
                        return Err(Error::invalid("INSERT OR REPLACE is not supported"));
                    }
                };
                self.write_plan(&ctx, &table, mode, &input).await
            }
            LogicalPlan::Dml(DmlStatement { op, .. }) => Err(Error::invalid(format!(
                "{} is not supported; tables take CREATE, INSERT and DROP",
                op.name()
            ))),
            LogicalPlan::Ddl(DdlStatement::CreateExternalTable(create)) => {
                let table = table_ref(&create.name)?;
                if create.if_not_exists && catalog.table(&table).await.is_ok() {
                    return Ok(0);
                }
                self.create_external(&ctx, &table, &create).await
            }
            LogicalPlan::Ddl(DdlStatement::DropTable(drop)) => {
                let table = table_ref(&drop.name)?;
                match catalog
                    .commit(&table, lakehouse_catalog::Change::Drop)
                    .await
                {
                    Ok(_) => Ok(0),
                    Err(CatalogError::TableNotFound(_)) if drop.if_exists => Ok(0),
                    Err(e) => Err(e.into()),
                }
            }
            LogicalPlan::Ddl(DdlStatement::CreateCatalogSchema(create)) => {
                let name = create
                    .schema_name
                    .rsplit('.')
                    .next()
                    .unwrap_or(&create.schema_name);
                catalog
                    .create_schema(&SchemaName::new(name)?, create.if_not_exists)
                    .await?;
                Ok(0)
            }
            LogicalPlan::Ddl(DdlStatement::DropCatalogSchema(drop)) => {
                let name = drop.name.schema_name().to_string();
                catalog
                    .drop_schema(&SchemaName::new(name)?, drop.if_exists, drop.cascade)
                    .await?;
                Ok(0)
            }
            LogicalPlan::Ddl(other) => {
                Err(Error::invalid(format!("{} is not supported", other.name())))
            }
            LogicalPlan::Statement(statement) => Err(Error::invalid(format!(
                "{} statements are not supported (no session variables or transactions)",
                statement.name()
            ))),
            _ => Err(Error::invalid(
                "this statement does not change data; run queries as CommandStatementQuery",
            )),
        }
    }

    /// `CREATE TABLE t (...) PRIMARY KEY (...)`: an empty table whose manifest records the key
    /// (key columns become NOT NULL). Keys are declared on empty tables only; rows come by
    /// INSERT, which checks them.
    async fn create_with_key(
        &self,
        table: &TableRef,
        create: &datafusion::logical_expr::CreateMemoryTable,
    ) -> Result<i64> {
        use datafusion::common::Constraint;
        if !matches!(create.input.as_ref(), LogicalPlan::EmptyRelation(e) if !e.produce_one_row) {
            return Err(Error::invalid(
                "a primary key is declared with CREATE TABLE t (columns, PRIMARY KEY (...)); \
                 fill the table with INSERT",
            ));
        }
        let input = create.input.schema().as_arrow().clone();
        let mut key = Vec::new();
        for constraint in create.constraints.iter() {
            match constraint {
                Constraint::PrimaryKey(indices) if key.is_empty() => {
                    key = indices
                        .iter()
                        .map(|i| input.field(*i).name().clone())
                        .collect();
                }
                _ => {
                    return Err(Error::invalid(
                        "only one PRIMARY KEY constraint is supported (no UNIQUE)",
                    ));
                }
            }
        }
        let fields: Vec<_> = input
            .fields()
            .iter()
            .map(|f| {
                let f = f.as_ref().clone();
                if key.contains(f.name()) {
                    f.with_nullable(false)
                } else {
                    f
                }
            })
            .collect();
        let schema = Arc::new(lakehouse_catalog::normalize_schema(
            &datafusion::arrow::datatypes::Schema::new(fields),
        ));
        let change = lakehouse_catalog::Change::Create {
            schema,
            files: vec![],
            primary_key: key,
        };
        self.catalog().commit(table, change).await?;
        Ok(0)
    }

    /// The check to pass to [`lakehouse_catalog::Catalog::write_stream_checked`] so that a
    /// write into a table with a primary key is refused when it would duplicate a key: the
    /// returned future fails with the catalog's `DuplicateKey` (naming the key value) when the
    /// candidate version holds a key twice, and with its storage errors when reading fails.
    pub fn primary_key_check(
        &self,
    ) -> impl FnOnce(
        lakehouse_catalog::Manifest,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = lakehouse_catalog::Result<()>> + Send>,
    > + use<> {
        let state = self.template.clone();
        let store_url = self.store_url.clone();
        move |candidate| Box::pin(duplicate_key_check(state, store_url, candidate))
    }

    /// `CREATE EXTERNAL TABLE t STORED AS PARQUET LOCATION 'url'`: lists the Parquet files at
    /// the location now, reads their schema and row counts from the footers, and registers
    /// them as a read-only table. Nothing is copied; the file list is fixed at registration
    /// (re-register to pick up new files).
    async fn create_external(
        &self,
        ctx: &datafusion::prelude::SessionContext,
        table: &TableRef,
        create: &datafusion::logical_expr::CreateExternalTable,
    ) -> Result<i64> {
        use datafusion::datasource::file_format::FileFormat;
        use datafusion::datasource::file_format::parquet::ParquetFormat;
        use datafusion::datasource::listing::ListingTableUrl;
        use futures::TryStreamExt;
        if !create.file_type.eq_ignore_ascii_case("parquet") {
            return Err(Error::invalid(format!(
                "external tables are Parquet only (STORED AS PARQUET), got {}",
                create.file_type
            )));
        }
        if !create.table_partition_cols.is_empty() || create.temporary || create.or_replace {
            return Err(Error::invalid(
                "external tables take no PARTITIONED BY, TEMPORARY or OR REPLACE",
            ));
        }
        let state = ctx.state();
        let url = ListingTableUrl::parse(&create.location)?;
        super::table::ensure_object_store(state.runtime_env(), url.object_store().as_ref())?;
        let store = state.runtime_env().object_store(url.object_store())?;
        let objects: Vec<_> = url
            .list_all_files(&state, store.as_ref(), "parquet")
            .await?
            .try_collect()
            .await?;
        if objects.is_empty() {
            return Err(Error::invalid(format!(
                "no Parquet files at {}",
                create.location
            )));
        }
        let format = ParquetFormat::default();
        let schema = format.infer_schema(&state, &store, &objects).await?;
        let base = url.object_store();
        let mut files = Vec::with_capacity(objects.len());
        for object in &objects {
            let reader = parquet::arrow::async_reader::ParquetObjectReader::new(
                std::sync::Arc::clone(&store),
                object.location.clone(),
            )
            .with_file_size(object.size);
            let builder = parquet::arrow::ParquetRecordBatchStreamBuilder::new(reader)
                .await
                .map_err(|e| Error::invalid(format!("{}: {e}", object.location)))?;
            let base_url: &url::Url = base.as_ref();
            let file_url = base_url
                .join(object.location.as_ref())
                .map_err(|e| Error::invalid(format!("{}: {e}", object.location)))?;
            files.push(lakehouse_catalog::DataFile {
                path: file_url.to_string(),
                size_bytes: object.size,
                rows: builder.metadata().file_metadata().num_rows() as u64,
                sha256: String::new(),
                source: None,
            });
        }
        let change = lakehouse_catalog::Change::CreateExternal {
            schema: Arc::new(lakehouse_catalog::normalize_schema(&schema)),
            location: create.location.clone(),
            files,
        };
        self.catalog().commit(table, change).await?;
        Ok(0)
    }

    /// Executes `input` and commits its rows to `table` with `mode`; returns the row count.
    async fn write_plan(
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
                self.primary_key_check(),
            )
            .await?;
        Ok((manifest, rows.load(Ordering::Relaxed)))
    }
}

/// The catalog table `name` refers to, unqualified names in `default_schema`.
///
/// # Errors
/// [`Error::InvalidArgument`] for another catalog than [`CATALOG_NAME`] or invalid names.
pub(super) fn resolve_table(
    name: &TableReference,
    default_schema: &SchemaName,
) -> Result<TableRef> {
    if let Some(catalog) = name.catalog()
        && catalog != CATALOG_NAME
    {
        return Err(Error::invalid(format!(
            "unknown catalog {catalog:?}; the catalog is {CATALOG_NAME:?}"
        )));
    }
    Ok(TableRef {
        schema: match name.schema() {
            Some(s) => SchemaName::new(s)?,
            None => default_schema.clone(),
        },
        table: TableName::new(name.table())?,
    })
}

/// Refuses `candidate` (the table with the new files appended) when two rows share a primary
/// key: `SELECT key FROM candidate GROUP BY key HAVING count(*) > 1 LIMIT 1`, via DataFusion's
/// DataFrame API. Tables without a key pass at once.
async fn duplicate_key_check(
    state: datafusion::execution::session_state::SessionState,
    store_url: datafusion::execution::object_store::ObjectStoreUrl,
    candidate: lakehouse_catalog::Manifest,
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
    let provider = Arc::new(super::table::VersionTable::new(
        Arc::new(candidate),
        store_url,
    ));
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
fn bind_rows(plan: LogicalPlan, batch: &RecordBatch) -> Result<LogicalPlan> {
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
