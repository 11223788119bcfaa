//! Statements: SQL text is parsed once here ([`QueryEngine::statement`]), classified
//! ([`Statement::is_query`]), and every statement that changes something becomes catalog (or
//! Lance) changes in this module and its children, one atomic commit per statement:
//!
//! | statement | catalog effect | affected rows |
//! |---|---|---|
//! | `CREATE [OR REPLACE] TABLE [IF NOT EXISTS] t (cols [, PRIMARY KEY (...)])` | new empty table (version 1) | 0 |
//! | `CREATE [OR REPLACE] TABLE [IF NOT EXISTS] t AS SELECT ...` | new table with the rows | rows written |
//! | `CREATE EXTERNAL TABLE t STORED AS PARQUET LOCATION 'url'` | read-only table over existing files | 0 |
//! | `CREATE TABLE [IF NOT EXISTS] t [(cols)] STORED AS LANCE [WITH (...)] [AS SELECT ...]` | new Lance table ([`ddl`]) | rows written |
//! | `INSERT INTO t [(cols)] VALUES ... / SELECT ...` | append version | rows written |
//! | `INSERT OVERWRITE t ...` | replace version | rows written |
//! | `DELETE FROM t [USING ...] [WHERE ...]` | delete version: deletion vectors ([`dml`]) | rows deleted |
//! | `UPDATE t SET col = expr, ... [FROM ...] [WHERE ...]` | update version: deletion vectors + new rows ([`dml`]) | rows updated |
//! | `MERGE INTO t USING s ON ... WHEN [NOT] MATCHED [AND ...] THEN ...` | merge version ([`dml`]) | rows inserted, updated, deleted |
//! | `INSERT INTO t ... ON CONFLICT [(key)] DO NOTHING / DO UPDATE SET ...` | merge version on the primary key | rows inserted and updated |
//! | `TRUNCATE [TABLE] t` | truncate version (no files) | rows removed |
//! | `DROP TABLE [IF EXISTS] t` | drop version | 0 |
//! | `OPTIMIZE [TABLE] t` | compact version ([`maintenance`]) | files rewritten |
//! | `VACUUM [TABLE] t [RETAIN n HOURS] [DRY RUN]` | old versions and their files removed | files removed |
//! | `CREATE INDEX` / `DROP INDEX` | Lance index commit | 0 |
//! | `CREATE SCHEMA [IF NOT EXISTS] s` / `DROP SCHEMA [IF EXISTS] s [CASCADE]` | schema marker | 0 |
//!
//! Queries (`SELECT`, `WITH`, `VALUES`, `EXPLAIN`, `SHOW`) are planned by
//! [`QueryEngine::plan_statement`]; everything else runs through
//! [`QueryEngine::execute_update`].

pub mod ddl;
pub mod dml;
pub mod maintenance;
pub mod write;

use datafusion::arrow::array::RecordBatch;
use datafusion::common::TableReference;
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{DdlStatement, DmlStatement, LogicalPlan, WriteOp};
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{ObjectName, ObjectType, Statement as SqlStatement};
use lakehouse_catalog::{CATALOG_NAME, Error as CatalogError, SchemaName, TableRef, WriteMode};

pub use write::LanceCreate;

use super::{Pins, QueryEngine, params};
use crate::error::{Error, Result};

/// One SQL statement, parsed once: `?` placeholders numbered `$1..$n`, then parsed with the
/// session's dialect.
#[derive(Debug, Clone)]
pub struct Statement {
    kind: Kind,
}

#[derive(Debug, Clone)]
enum Kind {
    /// `SELECT`, `WITH`, `VALUES`, `EXPLAIN`, `SHOW`: read-only, planned by DataFusion.
    Query(DFStatement),
    /// `CREATE TABLE ... STORED AS LANCE`, parsed without that clause.
    CreateLance(Box<datafusion::sql::sqlparser::ast::CreateTable>),
    /// `OPTIMIZE` or `VACUUM` ([`maintenance`]).
    Maintenance(maintenance::Maintenance),
    /// Any other statement.
    Change(DFStatement),
}

impl Statement {
    /// True for statements that only read (`SELECT`, `WITH`, `VALUES`, `EXPLAIN`, `SHOW`):
    /// they run as Flight SQL queries; everything else changes something.
    pub fn is_query(&self) -> bool {
        matches!(self.kind, Kind::Query(_))
    }

    /// The parsed statement, for planning a query.
    pub(super) fn parsed(&self) -> Option<&DFStatement> {
        match &self.kind {
            Kind::Query(s) | Kind::Change(s) => Some(s),
            Kind::CreateLance(_) | Kind::Maintenance(_) => None,
        }
    }
}

impl QueryEngine {
    /// Parses `sql` (one statement) and classifies it.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] or [`Error::DataFusion`] (InvalidArgument for the client) for
    /// SQL that does not tokenize or parse, or holds several statements.
    pub fn statement(&self, sql: &str) -> Result<Statement> {
        if let Some(maintenance) = maintenance::parse(sql, self.dialect()?.as_ref())? {
            return Ok(Statement {
                kind: Kind::Maintenance(maintenance),
            });
        }
        if let Some(rest) = ddl::strip_stored_as_lance(sql, self.dialect()?.as_ref())? {
            let not_create =
                || Error::invalid("STORED AS LANCE belongs to CREATE TABLE ... [AS SELECT ...]");
            let DFStatement::Statement(statement) = self.parse(&rest)? else {
                return Err(not_create());
            };
            let SqlStatement::CreateTable(create) = *statement else {
                return Err(not_create());
            };
            return Ok(Statement {
                kind: Kind::CreateLance(Box::new(create)),
            });
        }
        let parsed = self.parse(sql)?;
        let kind = if super::ensure_query(&parsed).is_ok() {
            Kind::Query(parsed)
        } else {
            Kind::Change(parsed)
        };
        Ok(Statement { kind })
    }

    /// Runs one data-changing statement and returns the number of rows it affected (see the
    /// module docs for each statement).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for queries (use CommandStatementQuery), unsupported
    /// statements (views, temporary tables, MERGE, ...) and bad SQL; catalog errors
    /// (`TableExists` → AlreadyExists, `TableNotFound` → NotFound, schema mismatch,
    /// `ReadOnly` for external tables, `ConcurrentChange` → Aborted, ...).
    ///
    /// `parameters` binds `?`/`$n` placeholders: one row for any statement; several rows for
    /// `INSERT`, `UPDATE` and `DELETE`, which then run once per parameter row, all in one
    /// commit (JDBC `executeBatch`, ADBC `executemany`).
    ///
    /// The statement takes a query slot and runs under the per-query timeout (see
    /// [`super::limits`]).
    pub async fn execute_update(
        &self,
        statement: &Statement,
        default_schema: &SchemaName,
        parameters: Option<&RecordBatch>,
    ) -> Result<i64> {
        let guard = self.admission().admit(None).await?;
        guard
            .run(self.run_update(statement, default_schema, parameters))
            .await
    }

    async fn run_update(
        &self,
        statement: &Statement,
        default_schema: &SchemaName,
        parameters: Option<&RecordBatch>,
    ) -> Result<i64> {
        let statement = match &statement.kind {
            Kind::Query(_) => {
                return Err(Error::invalid(
                    "this statement does not change data; run queries as CommandStatementQuery",
                ));
            }
            Kind::CreateLance(create) => {
                return self
                    .create_lance_table(create.as_ref().clone(), default_schema)
                    .await;
            }
            Kind::Maintenance(statement) => {
                return self.maintain(statement, default_schema).await;
            }
            Kind::Change(statement) => statement,
        };
        // Statements DataFusion does not plan (or plans only as filters on one table), handled
        // on the parsed AST.
        if let DFStatement::Statement(inner) = statement {
            match inner.as_ref() {
                SqlStatement::CreateIndex(create) => {
                    return self.create_index(create, default_schema).await;
                }
                SqlStatement::Drop {
                    object_type: ObjectType::Index,
                    if_exists,
                    names,
                    table,
                    ..
                } => {
                    return self
                        .drop_index(names, table.as_ref(), *if_exists, default_schema)
                        .await;
                }
                SqlStatement::Truncate(truncate) => {
                    return self.truncate(truncate, default_schema).await;
                }
                other => {
                    if let Some(change) = self.row_change(other, default_schema).await? {
                        return self.change_rows(&change, default_schema, parameters).await;
                    }
                }
            }
        }
        let pins = Pins::default();
        let ctx = self.session(default_schema, pins.clone(), false).await?;
        let plan = super::statement_to_plan(&ctx.state(), statement.clone(), &pins).await?;
        let plan = match parameters {
            Some(batch) => write::bind_rows(plan, batch)?,
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
                "{} is not supported here",
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
}

/// The catalog table `name` refers to, unqualified names in `default_schema`. Every statement
/// resolves its target table through this function (or [`resolve_object_name`]).
///
/// # Errors
/// [`Error::InvalidArgument`] for another catalog than [`CATALOG_NAME`] or invalid names.
pub fn resolve_table(name: &TableReference, default_schema: &SchemaName) -> Result<TableRef> {
    if let Some(catalog) = name.catalog()
        && catalog != CATALOG_NAME
    {
        return Err(Error::invalid(format!(
            "unknown catalog {catalog:?}; the catalog is {CATALOG_NAME:?}"
        )));
    }
    Ok(TableRef::qualify(
        name.schema(),
        name.table(),
        default_schema,
    )?)
}

/// [`resolve_table`] for a name in the SQL AST, normalised as DataFusion's planner does
/// (unquoted identifiers lower-cased).
///
/// # Errors
/// As [`resolve_table`], and for names of more than three parts.
pub fn resolve_object_name(name: &ObjectName, default_schema: &SchemaName) -> Result<TableRef> {
    let reference = datafusion::sql::planner::object_name_to_table_reference(name.clone(), true)?;
    resolve_table(&reference, default_schema)
}
