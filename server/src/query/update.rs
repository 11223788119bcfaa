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

use super::{Pins, QueryEngine};
use crate::error::{Error, Result};

impl QueryEngine {
    /// Runs one data-changing statement and returns the number of rows it wrote (see the
    /// module docs for each statement).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for queries (use CommandStatementQuery), unsupported
    /// statements (UPDATE, DELETE, views, temporary tables) and bad SQL; catalog errors
    /// (`TableExists` → AlreadyExists, `TableNotFound` → NotFound, schema mismatch, ...).
    pub async fn execute_update(&self, sql: &str, default_schema: &SchemaName) -> Result<i64> {
        let dialect = self.template.config().options().sql_parser.dialect;
        let statement = self.template.sql_to_statement(sql, &dialect)?;
        let pins = Pins::default();
        let ctx = self.session(default_schema, pins.clone(), false).await?;
        let plan = super::statement_to_plan(&ctx.state(), statement, &pins).await?;
        let table_ref = |name: &TableReference| -> Result<TableRef> {
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
        };
        let catalog = self.catalog();
        match plan {
            LogicalPlan::Ddl(DdlStatement::CreateMemoryTable(create)) => {
                if create.temporary {
                    return Err(Error::invalid("temporary tables are not supported"));
                }
                if !create.constraints.is_empty() {
                    return Err(Error::invalid(
                        "table constraints (PRIMARY KEY, UNIQUE) are not accepted by this \
                         server version; create the table without them",
                    ));
                }
                let table = table_ref(&create.name)?;
                if create.if_not_exists && catalog.table(&table).await.is_ok() {
                    return Ok(0);
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
        let rows = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counted = Arc::clone(&rows);
        let location = format!("writing {table}");
        let batches = stream.map(move |batch| match batch {
            Ok(batch) => {
                counted.fetch_add(
                    batch.num_rows() as u64,
                    std::sync::atomic::Ordering::Relaxed,
                );
                Ok(batch)
            }
            Err(e) => Err(CatalogError::InvalidData {
                location: location.clone(),
                message: e.to_string(),
            }),
        });
        self.catalog()
            .write_stream(table, mode, &schema, None, Box::pin(batches))
            .await?;
        Ok(rows.load(std::sync::atomic::Ordering::Relaxed) as i64)
    }
}
