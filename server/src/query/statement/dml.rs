//! Row-level changes on Parquet tables — `DELETE`, `UPDATE`, `MERGE INTO`,
//! `INSERT ... ON CONFLICT`, `TRUNCATE` — by merge-on-read with deletion vectors
//! (`docs/storage-layout.md`):
//!
//! - the rows a statement changes are found by DataFusion: the statement becomes a query over
//!   the target table's [`RowPositions`] (its columns plus each row's data file and position),
//!   with the statement's WHERE (subqueries included) and its USING/FROM tables as joins, so a
//!   statement never changes more rows than its WHERE selects;
//! - `DELETE` writes, per data file with selected rows, a new deletion vector (the union with
//!   the file's old one); a file whose rows are all deleted leaves the table;
//! - `UPDATE` deletes the selected rows the same way and appends their new values (the SET
//!   expressions, evaluated on the old row) as a new data file, so a one-row update writes
//!   kilobytes, not the table;
//! - `MERGE` is one query, target `RIGHT JOIN` source `ON` the condition, whose every row
//!   carries the action of the first WHEN clause that applies (delete, update, insert, or
//!   nothing); a target row acted on twice is the SQL standard's cardinality violation and
//!   nothing is written. `INSERT ... ON CONFLICT` is the MERGE of the inserted rows (as
//!   `excluded`) on the primary key;
//! - each statement is one catalog commit ([`Change::Rewrite`]) answering the affected-row
//!   count. When another writer changed the same files first, the statement runs again on the
//!   new head (up to [`STATEMENT_ATTEMPTS`] times, then `Aborted`); appends and changes to other
//!   files by others never conflict. Primary keys are re-checked on the version the commit
//!   lands on.
//!
//! DataFusion's `TableProvider::delete_from` / `update` hooks are not used: they receive only
//! filters on the target table, while these statements need the selected rows' positions and
//! may select through joins and subqueries.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, BooleanArray, RecordBatch};
use datafusion::arrow::datatypes::{
    DataType, Field, Int32Type, Schema, SchemaRef, UInt32Type, UInt64Type,
};
use datafusion::catalog::{
    CatalogProvider, MemoryCatalogProvider, MemorySchemaProvider, SchemaProvider,
};
use datafusion::logical_expr::{LogicalPlan, Union};
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::{
    Assignment, AssignmentTarget, Delete, Expr as SqlExpr, FromTable, Ident, Insert, Merge,
    MergeAction, MergeClause, MergeClauseKind, MergeInsertKind, ObjectName, Parens, TableFactor,
    TableObject, TableWithJoins, Truncate, Update, Value,
};
use futures::StreamExt;
use lakehouse_catalog::{
    Change, Error as CatalogError, FileChange, Manifest, Operation, RoaringTreemap, SchemaName,
    TableRef,
};

use super::resolve_object_name;
use crate::error::{Error, Result};
use crate::query::positions::{FILE_COLUMN, ROW_COLUMN, RowPositions};
use crate::query::{Pins, QueryEngine, Statement, params};

/// Times a row-level statement runs when other writers keep changing the same files first.
pub const STATEMENT_ATTEMPTS: usize = 5;

/// The catalog and schema under which a statement's target is registered as [`RowPositions`].
const DML_CATALOG: &str = "__lakehouse_dml";
const DML_SCHEMA: &str = "target";

/// What a row selected by a row-level statement does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    /// Nothing (a MERGE row no clause applies to).
    Nothing,
    /// The target row is deleted.
    Delete,
    /// The target row is deleted and the row's values appended.
    Update,
    /// The row's values are appended (MERGE's WHEN NOT MATCHED).
    Insert,
}

/// A DELETE, UPDATE or MERGE, reduced to what runs it: one query over the target's
/// [`RowPositions`] whose rows say which target row (file, position) they act on, what they do
/// (an index into `actions`) and, for updates and inserts, the new row.
pub(super) struct RowChange {
    operation: Operation,
    /// The target table as written.
    name: ObjectName,
    /// Its alias, if any.
    alias: Option<Ident>,
    kind: ChangeKind,
}

enum ChangeKind {
    /// `DELETE ... [USING from] [WHERE selection]`.
    Delete {
        from: Vec<TableWithJoins>,
        selection: Option<SqlExpr>,
    },
    /// `UPDATE ... SET assignments [FROM from] [WHERE selection]`.
    Update {
        assignments: Vec<Assignment>,
        from: Vec<TableWithJoins>,
        selection: Option<SqlExpr>,
    },
    /// `MERGE INTO ... USING source ON on WHEN ...` (also `INSERT ... ON CONFLICT`).
    Merge {
        source: String,
        on: SqlExpr,
        clauses: Vec<MergeClause>,
    },
}

impl ChangeKind {
    /// DELETE of every row: no query needed, every file leaves.
    fn deletes_everything(&self) -> bool {
        matches!(self, ChangeKind::Delete { from, selection: None } if from.is_empty())
    }
}

/// The statement that makes versions of `operation`, for messages.
fn statement_name(operation: Operation) -> &'static str {
    match operation {
        Operation::Update => "UPDATE",
        Operation::Truncate => "TRUNCATE",
        Operation::Merge => "MERGE",
        _ => "DELETE",
    }
}

impl QueryEngine {
    /// The row-level change `statement` makes, when it is one:
    ///
    /// - `DELETE FROM t [AS a] [USING other, ...] [WHERE ...]` (answers the rows deleted);
    /// - `UPDATE t [AS a] SET col = expr, ... [FROM other, ...] [WHERE ...]` (rows updated;
    ///   SET expressions may read the old row and the FROM tables);
    /// - `MERGE INTO t [AS a] USING source [AS s] ON condition WHEN [NOT] MATCHED [AND ...]
    ///   THEN ...`: clauses apply in order, the first whose condition holds acting on a row
    ///   (WHEN MATCHED: UPDATE SET ... or DELETE; WHEN NOT MATCHED: INSERT [(columns)]
    ///   VALUES (...)); rows inserted, updated and deleted. DataFusion 54 does not plan MERGE:
    ///   it becomes one query, target RIGHT JOIN source ON condition, whose rows carry the
    ///   action;
    /// - `INSERT INTO t [(columns)] VALUES ... | SELECT ... ON CONFLICT [(key)] DO NOTHING |
    ///   DO UPDATE SET col = excluded.col, ... [WHERE ...]` on a table with a primary key (the
    ///   conflict target, when given, must be that key): the MERGE of the inserted rows (named
    ///   `excluded`) on the key; bare column names in DO UPDATE read the stored row, as in
    ///   PostgreSQL; rows inserted plus rows updated.
    ///
    /// Run it with [`QueryEngine::change_rows`].
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for several target tables, joins in the target,
    /// `RETURNING`/`ORDER BY`/`LIMIT`, a MERGE without clauses, ON CONFLICT on a table without
    /// a primary key, another conflict target, `ON CONSTRAINT` or MySQL's `ON DUPLICATE KEY`;
    /// catalog `TableNotFound` for ON CONFLICT's table.
    pub(super) async fn row_change(
        &self,
        statement: &datafusion::sql::sqlparser::ast::Statement,
        default_schema: &SchemaName,
    ) -> Result<Option<RowChange>> {
        use datafusion::sql::sqlparser::ast::Statement as SqlStatement;
        Ok(Some(match statement {
            SqlStatement::Delete(delete) => delete_change(delete)?,
            SqlStatement::Update(update) => update_change(update)?,
            SqlStatement::Merge(merge) => merge_change(merge)?,
            SqlStatement::Insert(insert) if insert.on.is_some() => {
                let table = resolve_object_name(&insert_table(insert)?, default_schema)?;
                let manifest = self.catalog().table(&table).await?;
                check_target(&table, &manifest)?;
                on_conflict_change(insert, &manifest)?
            }
            _ => return Ok(None),
        }))
    }

    /// `TRUNCATE [TABLE] [IF EXISTS] t`: a version with no rows (schema and primary key kept);
    /// answers the rows removed.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for several tables or a Lance table; catalog `TableNotFound`
    /// (without `IF EXISTS`) and `ReadOnly`.
    pub(super) async fn truncate(
        &self,
        truncate: &Truncate,
        default_schema: &SchemaName,
    ) -> Result<i64> {
        let [target] = truncate.table_names.as_slice() else {
            return Err(Error::invalid(
                "TRUNCATE takes one table per statement (each statement is one commit)",
            ));
        };
        let table = resolve_object_name(&target.name, default_schema)?;
        let manifest = match self.catalog().table(&table).await {
            Ok(m) => m,
            Err(CatalogError::TableNotFound(_)) if truncate.if_exists => return Ok(0),
            Err(e) => return Err(e.into()),
        };
        check_target(&table, &manifest)?;
        if let Some(lance) = &manifest.lance {
            let dataset = self.lance_store().open(&lance.location).await?;
            let rows =
                lakehouse_vector::table::delete_rows(dataset, datafusion::prelude::lit(true))
                    .await?;
            tracing::info!(%table, rows, "truncated Lance table");
            return Ok(rows as i64);
        }
        let committed = self.catalog().commit(&table, Change::Truncate).await?;
        let removed = manifest.total_rows;
        tracing::info!(%table, version = %committed.version, rows = removed, "truncated");
        Ok(removed as i64)
    }

    /// The parameter schema of a data-changing statement for a prepared statement: for DELETE
    /// and UPDATE the parameters of the row selection, a parameter that is a SET value typed as
    /// its column; empty for other statements (their values are cast when bound).
    ///
    /// # Errors
    /// As [`QueryEngine::delete`] / [`QueryEngine::update`] while planning.
    pub(crate) async fn change_parameter_schema(
        &self,
        statement: &Statement,
        default_schema: &SchemaName,
    ) -> Result<SchemaRef> {
        use datafusion::sql::parser::Statement as DFStatement;
        let change = match statement.parsed() {
            Some(DFStatement::Statement(s)) => self.row_change(s, default_schema).await?,
            _ => None,
        };
        let Some(change) = change else {
            return Ok(Arc::new(Schema::empty()));
        };
        let table = resolve_object_name(&change.name, default_schema)?;
        let manifest = self.catalog().table(&table).await?;
        check_target(&table, &manifest)?;
        let selection = self
            .selection_plan(&change, &table, &manifest, default_schema)
            .await?;
        Ok(selection.parameters)
    }

    /// Runs a row-level change ([`QueryEngine::row_change`]) as one commit and answers the
    /// rows it affected, again on the new head when it loses to a concurrent change of the
    /// same files.
    ///
    /// # Errors
    /// Catalog `TableNotFound`, `ReadOnly` (external tables), `ConcurrentChange` (after
    /// [`STATEMENT_ATTEMPTS`] runs); planning errors of the statement's expressions;
    /// [`Error::InvalidArgument`] for a column the table does not have, a column set twice, a
    /// tuple assignment, a target row that a statement would change twice (the SQL
    /// standard's cardinality violation); `InvalidData` when a new value does not convert to
    /// its column's type or is NULL in a NOT NULL column; `DuplicateKey` when the change
    /// duplicates a primary key. Nothing is written on error.
    pub(super) async fn change_rows(
        &self,
        change: &RowChange,
        default_schema: &SchemaName,
        parameters: Option<&RecordBatch>,
    ) -> Result<i64> {
        let table = resolve_object_name(&change.name, default_schema)?;
        let mut attempt = 1;
        loop {
            let manifest = self.catalog().table(&table).await?;
            check_target(&table, &manifest)?;
            if manifest.lance.is_some() {
                return self
                    .change_lance_rows(change, &table, &manifest, default_schema, parameters)
                    .await;
            }
            match self
                .change_rows_once(change, &table, manifest, default_schema, parameters)
                .await
            {
                Err(Error::Catalog(e @ CatalogError::ConcurrentChange { .. }))
                    if attempt < STATEMENT_ATTEMPTS =>
                {
                    tracing::info!(%table, error = %e, attempt, "running the statement again on the new head");
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    async fn change_rows_once(
        &self,
        change: &RowChange,
        table: &TableRef,
        manifest: Arc<Manifest>,
        default_schema: &SchemaName,
        parameters: Option<&RecordBatch>,
    ) -> Result<i64> {
        let operation = change.operation;
        if change.kind.deletes_everything() {
            let changed: Vec<FileChange> = manifest
                .files
                .iter()
                .map(|f| FileChange {
                    before: f.clone(),
                    after: None,
                })
                .collect();
            if changed.is_empty() {
                return Ok(0);
            }
            let change = Change::Rewrite {
                operation,
                changed,
                files: Vec::new(),
            };
            self.catalog().commit(table, change).await?;
            return Ok(manifest.total_rows as i64);
        }
        let selection = self
            .selection_plan(change, table, &manifest, default_schema)
            .await?;
        let plan = bind(selection.plan, parameters, &selection.parameters)?;
        let ctx = selection.ctx;
        let actions = selection.actions;
        let physical = ctx.state().create_physical_plan(&plan).await?;
        let mut stream = datafusion::physical_plan::execute_stream(physical, ctx.task_ctx())?;
        let writes = actions
            .iter()
            .any(|a| matches!(a, Action::Update | Action::Insert));
        let mut writer = writes.then(|| {
            self.catalog()
                .data_writer(table, manifest.arrow_schema(), None)
        });
        let mut selected: BTreeMap<u32, RoaringTreemap> = BTreeMap::new();
        let mut inserted = 0u64;
        let collected: Result<()> = async {
            while let Some(batch) = stream.next().await {
                let batch = batch?;
                let files = batch.column(0).as_primitive::<UInt32Type>();
                let rows = batch.column(1).as_primitive::<UInt64Type>();
                let walked = walk_selection(&batch, 2, &actions, |i| {
                    if files.is_null(i) || rows.is_null(i) {
                        return Ok(());
                    }
                    let new = selected
                        .entry(files.value(i))
                        .or_default()
                        .insert(rows.value(i));
                    // A row deleted twice is deleted once; changed twice is ambiguous.
                    if !new && operation != Operation::Delete {
                        return Err(cardinality_violation(operation, table));
                    }
                    Ok(())
                })?;
                inserted += walked.inserted;
                if let Some(writer) = writer.as_mut() {
                    writer.write(&walked.values).await?;
                }
            }
            Ok(())
        }
        .await;
        if let Err(e) = collected {
            if let Some(writer) = writer {
                writer.abort().await;
            }
            return Err(e);
        }
        let count: u64 = selected.values().map(RoaringTreemap::len).sum::<u64>() + inserted;
        let files = match writer {
            Some(writer) if count > 0 => writer.finish().await?,
            Some(writer) => {
                writer.abort().await;
                Vec::new()
            }
            None => Vec::new(),
        };
        if count == 0 {
            return Ok(0);
        }
        let mut changed = Vec::with_capacity(selected.len());
        for (index, positions) in selected {
            let file = &manifest.files[index as usize];
            changed.push(
                self.catalog()
                    .delete_positions(table, file, &positions)
                    .await?,
            );
        }
        let check = (writes && !manifest.primary_key.is_empty()).then(|| self.primary_key_check());
        let rewrite = Change::Rewrite {
            operation,
            changed,
            files,
        };
        let committed = self.catalog().commit_checked(table, rewrite, check).await?;
        tracing::info!(%table, version = %committed.version, rows = count, ?operation, "rows changed");
        self.after_commit(table, &committed);
        Ok(count as i64)
    }

    /// The query that selects the rows `change` acts on: `__lakehouse_file`,
    /// `__lakehouse_row` (NULL for MERGE's inserts), the action (an index into
    /// [`Selection::actions`]) and, for statements that write rows, every column's new value
    /// (named as the column), over the target as [`RowPositions`] of `manifest` pinned to its
    /// version, other tables at their newest versions.
    async fn selection_plan(
        &self,
        change: &RowChange,
        table: &TableRef,
        manifest: &Arc<Manifest>,
        default_schema: &SchemaName,
    ) -> Result<Selection> {
        let schema = manifest.arrow_schema();
        let alias = change.alias_sql(table);
        let mut query = SelectionQuery::new(change, table, &schema, &alias);
        let target = dml_target(table, &alias);
        let position = format!("{}, {}", quote(FILE_COLUMN), quote(ROW_COLUMN));
        let action = quote(ACTION_COLUMN);
        let (sql, actions) = match &change.kind {
            ChangeKind::Delete { from, selection } => (
                format!(
                    "SELECT {position}, CAST(1 AS INT) AS {action} FROM {target}{}{}",
                    from_list(from),
                    where_clause(selection)
                ),
                vec![Action::Nothing, Action::Delete],
            ),
            ChangeKind::Update {
                assignments,
                from,
                selection,
            } => {
                let values = query.assigned(assignments)?;
                let columns = query.updated_columns(&values);
                (
                    format!(
                        "SELECT {position}, CAST(1 AS INT) AS {action}, {columns} FROM {target}{}{}",
                        from_list(from),
                        where_clause(selection)
                    ),
                    vec![Action::Nothing, Action::Update],
                )
            }
            ChangeKind::Merge {
                source,
                on,
                clauses,
            } => {
                let merge = query.merge(clauses)?;
                (
                    format!(
                        "SELECT {alias}.{}, {alias}.{}, {} AS {action}, {} FROM {target} \
                         RIGHT JOIN {source} ON ({on})",
                        quote(FILE_COLUMN),
                        quote(ROW_COLUMN),
                        merge.action,
                        merge.columns.join(", "),
                    ),
                    merge.actions,
                )
            }
        };
        let provider = Arc::new(RowPositions::new(
            Arc::clone(manifest),
            Arc::clone(self.catalog().store()),
        ));
        let (ctx, plan) = self
            .plan_on_target(&sql, manifest, provider, None, default_schema)
            .await?;
        let parameters = query.parameter_schema(&plan)?;
        Ok(Selection {
            ctx,
            plan,
            parameters,
            actions,
        })
    }
}

impl QueryEngine {
    /// Plans `sql`, in which `"__lakehouse_dml"."target"."<table>"` is `provider` (the target
    /// of a row-level change as of `manifest`); the target's own name, in subqueries, is
    /// pinned to `manifest`'s version (and a Lance target to `lance_version`, the dataset
    /// version `provider` reads) and other tables resolve to their newest versions.
    async fn plan_on_target(
        &self,
        sql: &str,
        manifest: &Manifest,
        provider: Arc<dyn datafusion::catalog::TableProvider>,
        lance_version: Option<u64>,
        default_schema: &SchemaName,
    ) -> Result<(SessionContext, LogicalPlan)> {
        let table = &manifest.table;
        let statement = self.statement(sql)?;
        let pin = crate::query::TablePin {
            version: manifest.version,
            lance_version,
        };
        let pins = Pins::fixed([((table.clone(), lakehouse_catalog::AsOf::Latest), pin)]);
        let ctx = self.session(default_schema, pins.clone(), false).await?;
        let target = MemorySchemaProvider::new();
        target.register_table(table.table.to_string(), provider)?;
        let catalog = MemoryCatalogProvider::new();
        catalog.register_schema(DML_SCHEMA, Arc::new(target))?;
        ctx.register_catalog(DML_CATALOG, Arc::new(catalog));
        let parsed = statement
            .parsed()
            .cloned()
            .ok_or_else(|| Error::invalid("invalid row selection"))?;
        let plan = crate::query::statement_to_plan(&ctx.state(), parsed, &pins).await?;
        Ok((ctx, plan))
    }

    /// DELETE or UPDATE of a Lance table, one Lance commit, with the user recorded in the
    /// transaction ([`lakehouse_vector::table::COMMITTED_BY`]).
    ///
    /// DELETE: the affected rows' `_rowid`s are found by DataFusion over Lance's own
    /// `TableProvider` (so WHERE may use subqueries and USING tables), then Lance's
    /// `DeleteBuilder` deletes exactly those rows (deletion files). UPDATE runs the same one
    /// selection query as for Parquet tables — every column's new value evaluated by
    /// DataFusion, so SET may use FROM tables, subqueries and bound parameters — and
    /// [`QueryEngine::rewrite_lance`] deletes the old rows and appends the new ones. On a
    /// document table the columns that `lakehouse ingest --embed` owns cannot be updated.
    async fn change_lance_rows(
        &self,
        change: &RowChange,
        table: &TableRef,
        manifest: &Manifest,
        default_schema: &SchemaName,
        parameters: Option<&RecordBatch>,
    ) -> Result<i64> {
        use datafusion::prelude::{col, lit};
        let lance = manifest.lance.as_ref().expect("a Lance table");
        let (from, selection) = match &change.kind {
            ChangeKind::Delete { from, selection } => (from, selection),
            ChangeKind::Update {
                assignments,
                from,
                selection,
            } => {
                return self
                    .update_lance(
                        change,
                        manifest,
                        default_schema,
                        parameters,
                        (assignments, from, selection),
                    )
                    .await;
            }
            ChangeKind::Merge {
                source,
                on,
                clauses,
            } => {
                return self
                    .merge_lance(
                        change,
                        manifest,
                        default_schema,
                        parameters,
                        (source, on, clauses),
                    )
                    .await;
            }
        };
        let alias = change.alias_sql(table);
        let sql = format!(
            "SELECT {alias}.\"_rowid\" FROM {}{}{}",
            dml_target(table, &alias),
            from_list(from),
            where_clause(selection)
        );
        let store = self.lance_store();
        let dataset = store.open(&lance.location).await?;
        let version = dataset.version().version;
        let provider = Arc::new(lance::datafusion::LanceTableProvider::new(
            Arc::clone(&dataset),
            true,
            false,
        ));
        let (ctx, plan) = self
            .plan_on_target(&sql, manifest, provider, Some(version), default_schema)
            .await?;
        let expected = params::parameter_schema(&plan)?;
        let plan = bind(plan, parameters, &expected)?;
        let batches = ctx.state().create_physical_plan(&plan).await?;
        let batches = datafusion::physical_plan::collect(batches, ctx.task_ctx()).await?;
        let mut ids = std::collections::BTreeSet::new();
        for batch in &batches {
            ids.extend(
                batch
                    .column(0)
                    .as_primitive::<UInt64Type>()
                    .values()
                    .iter()
                    .copied(),
            );
        }
        if ids.is_empty() {
            return Ok(0);
        }
        let filter = col("_rowid").in_list(ids.iter().map(|id| lit(*id)).collect(), false);
        let count = lakehouse_vector::table::delete_rows(dataset, filter).await?;
        tracing::info!(%table, rows = count, operation = ?change.operation, "Lance rows deleted");
        Ok(count as i64)
    }
}

impl QueryEngine {
    /// UPDATE of a Lance table: the selection query's rows (`_rowaddr`, the action, every
    /// column's new value) rewritten by [`QueryEngine::rewrite_lance`].
    async fn update_lance(
        &self,
        change: &RowChange,
        manifest: &Manifest,
        default_schema: &SchemaName,
        parameters: Option<&RecordBatch>,
        (assignments, from, selection): (&Vec<Assignment>, &Vec<TableWithJoins>, &Option<SqlExpr>),
    ) -> Result<i64> {
        let table = &manifest.table;
        let schema = manifest.arrow_schema();
        let alias = change.alias_sql(table);
        let mut query = SelectionQuery::new(change, table, &schema, &alias);
        let values = query.assigned(assignments)?;
        if schema.metadata().contains_key("lakehouse.chunk_size")
            && let Some(column) = (0..schema.fields().len())
                .filter(|i| values.contains_key(i))
                .map(|i| schema.field(i).name())
                .find(|name| DOCUMENT_COLUMNS.contains(&name.as_str()))
        {
            return Err(Error::invalid(format!(
                "{table} is a document table: `{column}` belongs to `lakehouse ingest --embed`, \
                 which chunks and embeds documents; re-ingest the document to change it \
                 (UPDATE may change the copied columns)"
            )));
        }
        let sql = format!(
            "SELECT {alias}.\"_rowaddr\", CAST(1 AS INT) AS {}, {} FROM {}{}{}",
            quote(ACTION_COLUMN),
            query.updated_columns(&values),
            dml_target(table, &alias),
            from_list(from),
            where_clause(selection)
        );
        let actions = [Action::Nothing, Action::Update];
        self.rewrite_lance(
            change,
            manifest,
            default_schema,
            parameters,
            &query,
            &sql,
            &actions,
        )
        .await
    }

    /// MERGE into a Lance table: the same one query as for Parquet tables (target RIGHT JOIN
    /// source, each row carrying its action and new values) over Lance's `TableProvider` with
    /// `_rowaddr`, rewritten by [`QueryEngine::rewrite_lance`].
    async fn merge_lance(
        &self,
        change: &RowChange,
        manifest: &Manifest,
        default_schema: &SchemaName,
        parameters: Option<&RecordBatch>,
        (source, on, clauses): (&String, &SqlExpr, &Vec<MergeClause>),
    ) -> Result<i64> {
        let table = &manifest.table;
        if manifest
            .schema
            .arrow
            .metadata()
            .contains_key("lakehouse.chunk_size")
        {
            return Err(Error::invalid(format!(
                "{table} is a document table: its rows come from `lakehouse ingest --embed`; \
                 MERGE is not supported on it (DELETE and UPDATE of copied columns are)"
            )));
        }
        let schema = manifest.arrow_schema();
        let alias = change.alias_sql(table);
        let mut query = SelectionQuery::new(change, table, &schema, &alias);
        query.matched = quote("_rowaddr");
        let merge = query.merge(clauses)?;
        let sql = format!(
            "SELECT {alias}.\"_rowaddr\", {} AS {}, {} FROM {} RIGHT JOIN {source} ON ({on})",
            merge.action,
            quote(ACTION_COLUMN),
            merge.columns.join(", "),
            dml_target(table, &alias),
        );
        self.rewrite_lance(
            change,
            manifest,
            default_schema,
            parameters,
            &query,
            &sql,
            &merge.actions,
        )
        .await
    }

    /// Runs `sql` — a selection query over the Lance target (`_rowaddr`, then each row's
    /// action as an index into `actions`, then every column's new value, as
    /// [`walk_selection`] reads them) — over the newest dataset, and commits its outcome as
    /// one Lance commit: the addresses of deleted and updated rows deleted, updated and
    /// inserted rows appended ([`lakehouse_vector::table::LanceStore::delete_and_append`],
    /// an `Update` transaction in `RewriteRows` mode as Lance's `UpdateBuilder` commits, with
    /// the user recorded). Answers the rows affected.
    ///
    /// # Errors
    /// Planning errors of `sql`; a cardinality violation when a target row is selected twice;
    /// `InvalidData` when a new value does not convert to its column's type; Lance's errors
    /// (a concurrent conflicting commit). Nothing is written on error.
    #[allow(clippy::too_many_arguments)]
    async fn rewrite_lance(
        &self,
        change: &RowChange,
        manifest: &Manifest,
        default_schema: &SchemaName,
        parameters: Option<&RecordBatch>,
        query: &SelectionQuery<'_>,
        sql: &str,
        actions: &[Action],
    ) -> Result<i64> {
        let table = &manifest.table;
        let lance = manifest.lance.as_ref().expect("a Lance table");
        let store = self.lance_store();
        let dataset = store.open(&lance.location).await?;
        let lance_schema: SchemaRef = Arc::new(Schema::from(dataset.schema()));
        let version = dataset.version().version;
        let provider = Arc::new(lance::datafusion::LanceTableProvider::new(
            Arc::clone(&dataset),
            false,
            true,
        ));
        let (ctx, plan) = self
            .plan_on_target(sql, manifest, provider, Some(version), default_schema)
            .await?;
        let expected = query.parameter_schema(&plan)?;
        let plan = bind(plan, parameters, &expected)?;
        let physical = ctx.state().create_physical_plan(&plan).await?;
        let mut stream = datafusion::physical_plan::execute_stream(physical, ctx.task_ctx())?;
        let mut addresses = RoaringTreemap::new();
        let mut rows = Vec::new();
        let mut inserted = 0u64;
        while let Some(batch) = stream.next().await {
            let batch = batch?;
            let addrs = batch.column(0).as_primitive::<UInt64Type>();
            let walked = walk_selection(&batch, 1, actions, |i| {
                if !addrs.is_null(i) && !addresses.insert(addrs.value(i)) {
                    return Err(cardinality_violation(change.operation, table));
                }
                Ok(())
            })?;
            inserted += walked.inserted;
            let values = walked.values;
            if values.num_rows() > 0 {
                let columns = values
                    .columns()
                    .iter()
                    .zip(lance_schema.fields())
                    .map(|(c, f)| datafusion::arrow::compute::cast(c, f.data_type()))
                    .collect::<std::result::Result<Vec<_>, _>>()?;
                rows.push(
                    RecordBatch::try_new(Arc::clone(&lance_schema), columns).map_err(|e| {
                        CatalogError::InvalidData {
                            location: format!("{} of {table}", statement_name(change.operation)),
                            message: e.to_string(),
                        }
                    })?,
                );
            }
        }
        let count = addresses.len() + inserted;
        if count == 0 {
            return Ok(0);
        }
        store.delete_and_append(dataset, &addresses, rows).await?;
        tracing::info!(%table, rows = count, operation = ?change.operation, "Lance rows rewritten");
        Ok(count as i64)
    }
}

/// One batch of a selection query, walked row by row.
struct Walked {
    /// The new values (the columns after the action column) of the rows that write one.
    values: RecordBatch,
    /// How many of the batch's rows are inserts.
    inserted: u64,
}

/// Walks one `batch` of a selection query whose column `action_column` holds each row's
/// action (an index into `actions`; out of range or NULL → [`Action::Nothing`]) and whose
/// later columns hold the new values: `target(i)` is called for each row that deletes or
/// updates a target row, and its error stops the walk.
fn walk_selection(
    batch: &RecordBatch,
    action_column: usize,
    actions: &[Action],
    mut target: impl FnMut(usize) -> Result<()>,
) -> Result<Walked> {
    let action_of = batch.column(action_column).as_primitive::<Int32Type>();
    let mut keep = Vec::with_capacity(batch.num_rows());
    let mut inserted = 0;
    for i in 0..batch.num_rows() {
        let action = (!action_of.is_null(i))
            .then(|| usize::try_from(action_of.value(i)).ok())
            .flatten()
            .and_then(|a| actions.get(a))
            .copied()
            .unwrap_or(Action::Nothing);
        keep.push(matches!(action, Action::Update | Action::Insert));
        match action {
            Action::Nothing => {}
            Action::Insert => inserted += 1,
            Action::Delete | Action::Update => target(i)?,
        }
    }
    let values = batch.project(&(action_column + 1..batch.num_columns()).collect::<Vec<_>>())?;
    let values =
        datafusion::arrow::compute::filter_record_batch(&values, &BooleanArray::from(keep))?;
    Ok(Walked { values, inserted })
}

/// The SQL standard's cardinality violation: `operation` would change one row of `table`
/// twice.
fn cardinality_violation(operation: Operation, table: &TableRef) -> Error {
    Error::invalid(format!(
        "{} would change a row of {table} twice: it matches more than one source row (or \
         parameter row); nothing was written (the SQL standard's cardinality violation)",
        statement_name(operation)
    ))
}

/// The columns of a document table that `lakehouse ingest --embed` owns.
const DOCUMENT_COLUMNS: [&str; 6] = [
    "doc_id",
    "chunk_index",
    "text",
    "embedding",
    "content_hash",
    "source",
];

/// A planned row selection (see [`QueryEngine::selection_plan`]).
struct Selection {
    ctx: SessionContext,
    /// The logical plan, placeholders unbound.
    plan: LogicalPlan,
    /// The parameter schema: DataFusion's inferred types, a parameter that is a SET or INSERT
    /// value typed as its column.
    parameters: SchemaRef,
    /// What each action index does.
    actions: Vec<Action>,
}

/// Name of the selection's action column (`Int32`).
const ACTION_COLUMN: &str = "__lakehouse_action";

/// Builds the SQL of a row selection over one target table.
struct SelectionQuery<'a> {
    table: &'a TableRef,
    schema: &'a SchemaRef,
    /// The target's alias in the query (as SQL).
    alias: &'a str,
    /// Names that may qualify a target column: the alias, the table name.
    qualifiers: [Option<String>; 2],
    /// Placeholders that are a column's whole new value, with that column's type.
    placeholder_types: HashMap<String, DataType>,
    /// The target column that is NULL exactly when a MERGE source row matched no target row
    /// (quoted): [`ROW_COLUMN`], or Lance's `_rowaddr`.
    matched: String,
}

/// MERGE's action expression, per-column value expressions and action table.
struct MergeSql {
    action: String,
    columns: Vec<String>,
    actions: Vec<Action>,
}

impl RowChange {
    /// The target's name in the selection query: its alias, or its quoted table name.
    fn alias_sql(&self, table: &TableRef) -> String {
        match &self.alias {
            Some(alias) => alias.to_string(),
            None => quote(table.table.as_str()),
        }
    }
}

impl<'a> SelectionQuery<'a> {
    fn new(change: &RowChange, table: &'a TableRef, schema: &'a SchemaRef, alias: &'a str) -> Self {
        Self {
            table,
            schema,
            alias,
            qualifiers: [
                change.alias.as_ref().map(normalize),
                Some(table.table.to_string()),
            ],
            placeholder_types: HashMap::new(),
            matched: quote(ROW_COLUMN),
        }
    }
}

/// The target of a row-level change in its selection query: the provider registered as
/// `"__lakehouse_dml"."target"."<table>"` ([`QueryEngine::plan_on_target`]), as `alias`.
fn dml_target(table: &TableRef, alias: &str) -> String {
    format!(
        "{}.{}.{} AS {alias}",
        quote(DML_CATALOG),
        quote(DML_SCHEMA),
        quote(table.table.as_str())
    )
}

impl SelectionQuery<'_> {
    /// Every column's value after an UPDATE, named as the column: its SET expression (`values`,
    /// by column index) or the column unchanged.
    fn updated_columns(&self, values: &HashMap<usize, &SqlExpr>) -> String {
        (0..self.schema.fields().len())
            .map(|i| match values.get(&i) {
                Some(value) => format!("({value}) AS {}", quote(self.schema.field(i).name())),
                None => self.column(i),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The target's column `index`, unchanged, named as itself.
    fn column(&self, index: usize) -> String {
        let name = quote(self.schema.field(index).name());
        format!("{}.{name} AS {name}", self.alias)
    }

    /// The index of the column a SET/INSERT target names.
    fn column_index(&self, target: &ObjectName) -> Result<usize> {
        let parts: Vec<String> = target
            .0
            .iter()
            .filter_map(|p| p.as_ident().map(normalize))
            .collect();
        let Some((column, qualifier)) = parts.split_last() else {
            return Err(Error::invalid(format!("invalid column {target}")));
        };
        if let Some(q) = qualifier.last()
            && !self.qualifiers.iter().flatten().any(|n| n == q)
        {
            return Err(Error::invalid(format!(
                "{target}: {q} is not the table being changed ({})",
                self.table
            )));
        }
        self.schema.index_of(column).map_err(|_| {
            Error::invalid(format!(
                "column {column:?} does not exist in table {} (columns: {})",
                self.table,
                self.schema
                    .fields()
                    .iter()
                    .map(|f| f.name().as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })
    }

    /// Records `value` as column `index`'s new value: a bare placeholder gets the column's type.
    fn note_placeholder(&mut self, index: usize, value: &SqlExpr) {
        if let SqlExpr::Value(v) = value
            && let Value::Placeholder(name) = &v.value
        {
            self.placeholder_types
                .insert(name.clone(), self.schema.field(index).data_type().clone());
        }
    }

    /// The parameters of `plan` (planned from this query's SQL) with their inferred types,
    /// except that a placeholder that is a column's whole new value has that column's type.
    fn parameter_schema(&self, plan: &LogicalPlan) -> Result<SchemaRef> {
        let inferred = params::parameter_schema(plan)?;
        let fields: Vec<Field> = inferred
            .fields()
            .iter()
            .map(|f| match self.placeholder_types.get(f.name()) {
                Some(t) if f.data_type() == &DataType::Null => {
                    Field::new(f.name(), t.clone(), true)
                }
                _ => f.as_ref().clone(),
            })
            .collect();
        Ok(Arc::new(Schema::new(fields)))
    }

    /// SET assignments by column index.
    fn assigned<'e>(
        &mut self,
        assignments: &'e [Assignment],
    ) -> Result<HashMap<usize, &'e SqlExpr>> {
        let mut values = HashMap::new();
        for assignment in assignments {
            let AssignmentTarget::ColumnName(target) = &assignment.target else {
                return Err(Error::invalid(
                    "SET (a, b) = ... is not supported; assign each column",
                ));
            };
            let index = self.column_index(target)?;
            if values.insert(index, &assignment.value).is_some() {
                return Err(Error::invalid(format!(
                    "column {:?} is assigned more than once",
                    self.schema.field(index).name()
                )));
            }
            self.note_placeholder(index, &assignment.value);
        }
        Ok(values)
    }

    /// The action CASE and the value of each column for MERGE's clauses, applied in order:
    /// the first WHEN MATCHED clause whose condition holds acts on a matched target row, the
    /// first WHEN NOT MATCHED clause on a source row with no target row.
    fn merge(&mut self, clauses: &[MergeClause]) -> Result<MergeSql> {
        let matched = format!("{}.{} IS NOT NULL", self.alias, self.matched);
        let mut actions = vec![Action::Nothing];
        // (condition, action index, per-column values) per clause, by kind.
        let mut on_matched: Vec<(String, usize, Vec<String>)> = Vec::new();
        let mut on_new: Vec<(String, usize, Vec<String>)> = Vec::new();
        let columns = self.schema.fields().len();
        for clause in clauses {
            let condition = clause
                .predicate
                .as_ref()
                .map_or_else(|| "TRUE".to_string(), |p| format!("({p})"));
            let index = actions.len();
            match (&clause.clause_kind, &clause.action) {
                (MergeClauseKind::Matched, MergeAction::Delete { .. }) => {
                    actions.push(Action::Delete);
                    let keep = (0..columns).map(|i| self.target_value(i)).collect();
                    on_matched.push((condition, index, keep));
                }
                (MergeClauseKind::Matched, MergeAction::Update(update)) => {
                    if update.update_predicate.is_some() || update.delete_predicate.is_some() {
                        return Err(Error::invalid(
                            "MERGE ... UPDATE SET ... WHERE / DELETE WHERE is not supported; put \
                             the condition in WHEN MATCHED AND ...",
                        ));
                    }
                    actions.push(Action::Update);
                    let values = self.assigned(&update.assignments)?;
                    let row = (0..columns)
                        .map(|i| match values.get(&i) {
                            Some(v) => format!("({v})"),
                            None => self.target_value(i),
                        })
                        .collect();
                    on_matched.push((condition, index, row));
                }
                (
                    MergeClauseKind::NotMatched | MergeClauseKind::NotMatchedByTarget,
                    MergeAction::Insert(insert),
                ) => {
                    let MergeInsertKind::Values(values) = &insert.kind else {
                        return Err(Error::invalid(
                            "MERGE ... INSERT ROW is not supported; list the values: INSERT \
                             [(columns)] VALUES (...)",
                        ));
                    };
                    let [row] = values.rows.as_slice() else {
                        return Err(Error::invalid("MERGE ... INSERT takes one row of VALUES"));
                    };
                    let targets: Vec<usize> = if insert.columns.is_empty() {
                        (0..columns).collect()
                    } else {
                        insert
                            .columns
                            .iter()
                            .map(|c| self.column_index(c))
                            .collect::<Result<_>>()?
                    };
                    if targets.len() != row.len() {
                        return Err(Error::invalid(format!(
                            "MERGE ... INSERT names {} column(s) but gives {} value(s)",
                            targets.len(),
                            row.len()
                        )));
                    }
                    let mut new = vec!["NULL".to_string(); columns];
                    for (&i, value) in targets.iter().zip(row.iter()) {
                        self.note_placeholder(i, value);
                        new[i] = format!("({value})");
                    }
                    actions.push(Action::Insert);
                    on_new.push((condition, index, new));
                }
                (MergeClauseKind::NotMatchedBySource, _) => {
                    return Err(Error::invalid(
                        "MERGE ... WHEN NOT MATCHED BY SOURCE is not supported",
                    ));
                }
                (kind, action) => {
                    return Err(Error::invalid(format!(
                        "MERGE: WHEN {kind} THEN {} is not allowed (WHEN MATCHED takes UPDATE or \
                         DELETE, WHEN NOT MATCHED takes INSERT)",
                        action.to_string().split_whitespace().next().unwrap_or("?")
                    )));
                }
            }
        }
        let case = |arms: &[(String, usize, Vec<String>)],
                    value: &dyn Fn(usize, &Vec<String>) -> String,
                    otherwise: &str| {
            if arms.is_empty() {
                return otherwise.to_string();
            }
            let whens: String = arms
                .iter()
                .map(|(condition, index, row)| {
                    format!(" WHEN {condition} THEN {}", value(*index, row))
                })
                .collect();
            format!("CASE{whens} ELSE {otherwise} END")
        };
        let action = format!(
            "CAST(CASE WHEN {matched} THEN {} ELSE {} END AS INT)",
            case(&on_matched, &|index, _| index.to_string(), "0"),
            case(&on_new, &|index, _| index.to_string(), "0"),
        );
        let columns = (0..columns)
            .map(|i| {
                let name = quote(self.schema.field(i).name());
                format!(
                    "CASE WHEN {matched} THEN {} ELSE {} END AS {name}",
                    case(&on_matched, &|_, row| row[i].clone(), &self.target_value(i)),
                    case(&on_new, &|_, row| row[i].clone(), "NULL"),
                )
            })
            .collect();
        Ok(MergeSql {
            action,
            columns,
            actions,
        })
    }

    /// The target row's value of column `index`.
    fn target_value(&self, index: usize) -> String {
        format!("{}.{}", self.alias, quote(self.schema.field(index).name()))
    }
}

/// `, a, b` for a FROM/USING list.
fn from_list(from: &[TableWithJoins]) -> String {
    from.iter().map(|f| format!(", {f}")).collect()
}

/// ` WHERE ...` or nothing.
fn where_clause(selection: &Option<SqlExpr>) -> String {
    selection
        .as_ref()
        .map_or_else(String::new, |s| format!(" WHERE {s}"))
}

/// `plan` with the parameter rows of `parameters` bound (`expected` gives each parameter's
/// type): one row binds once; N rows run the selection once per row, as one union.
fn bind(
    plan: LogicalPlan,
    parameters: Option<&RecordBatch>,
    expected: &Schema,
) -> Result<LogicalPlan> {
    let Some(batch) = parameters else {
        let unbound = params::unbound(&plan)?;
        if !unbound.is_empty() {
            return Err(Error::invalid(format!(
                "no value bound for parameter(s) {}",
                unbound.join(", ")
            )));
        }
        return Ok(plan);
    };
    let bound = (0..batch.num_rows())
        .map(|row| {
            let values = params::param_values_at(batch, row, expected)?;
            Ok(Arc::new(plan.clone().with_param_values(values)?))
        })
        .collect::<Result<Vec<_>>>()?;
    match bound.len() {
        0 => Err(Error::invalid("no parameter rows were bound")),
        1 => Ok(bound.into_iter().next().expect("one").as_ref().clone()),
        _ => Ok(LogicalPlan::Union(Union::try_new_with_loose_types(bound)?)),
    }
}

/// Refuses row-level changes the target cannot take.
fn check_target(table: &TableRef, manifest: &Manifest) -> Result<()> {
    if manifest.external.is_some() {
        return Err(CatalogError::ReadOnly(table.clone()).into());
    }
    Ok(())
}

fn delete_change(delete: &Delete) -> Result<RowChange> {
    if !delete.tables.is_empty() {
        return Err(Error::invalid(
            "DELETE names one table: DELETE FROM t [USING ...] [WHERE ...]",
        ));
    }
    if delete.returning.is_some() || delete.output.is_some() {
        return Err(Error::invalid("DELETE ... RETURNING is not supported"));
    }
    if delete.limit.is_some() || !delete.order_by.is_empty() {
        return Err(Error::invalid(
            "DELETE ... ORDER BY / LIMIT is not supported",
        ));
    }
    let (FromTable::WithFromKeyword(from) | FromTable::WithoutKeyword(from)) = &delete.from;
    let [target] = from.as_slice() else {
        return Err(Error::invalid(
            "DELETE takes one table; join others with USING",
        ));
    };
    if !target.joins.is_empty() {
        return Err(Error::invalid(
            "DELETE changes one table; join others with USING",
        ));
    }
    let (name, alias) = target_table(&target.relation, "DELETE")?;
    Ok(RowChange {
        operation: Operation::Delete,
        name,
        alias,
        kind: ChangeKind::Delete {
            from: delete.using.clone().unwrap_or_default(),
            selection: delete.selection.clone(),
        },
    })
}

fn update_change(update: &Update) -> Result<RowChange> {
    use datafusion::sql::sqlparser::ast::UpdateTableFromKind;
    if update.returning.is_some() || update.output.is_some() {
        return Err(Error::invalid("UPDATE ... RETURNING is not supported"));
    }
    if update.limit.is_some() || !update.order_by.is_empty() || update.or.is_some() {
        return Err(Error::invalid(
            "UPDATE ... ORDER BY / LIMIT / OR ... is not supported",
        ));
    }
    if !update.table.joins.is_empty() {
        return Err(Error::invalid(
            "UPDATE changes one table; join others with FROM",
        ));
    }
    let (name, alias) = target_table(&update.table.relation, "UPDATE")?;
    let from = match &update.from {
        None => Vec::new(),
        Some(UpdateTableFromKind::AfterSet(from) | UpdateTableFromKind::BeforeSet(from)) => {
            from.clone()
        }
    };
    Ok(RowChange {
        operation: Operation::Update,
        name,
        alias,
        kind: ChangeKind::Update {
            assignments: update.assignments.clone(),
            from,
            selection: update.selection.clone(),
        },
    })
}

fn merge_change(merge: &Merge) -> Result<RowChange> {
    if merge.output.is_some() {
        return Err(Error::invalid(
            "MERGE ... OUTPUT / RETURNING is not supported",
        ));
    }
    if merge.clauses.is_empty() {
        return Err(Error::invalid("MERGE needs at least one WHEN clause"));
    }
    let (name, alias) = target_table(&merge.table, "MERGE")?;
    Ok(RowChange {
        operation: Operation::Merge,
        name,
        alias,
        kind: ChangeKind::Merge {
            source: merge.source.to_string(),
            on: merge.on.as_ref().clone(),
            clauses: merge.clauses.clone(),
        },
    })
}

/// The table an INSERT writes to.
fn insert_table(insert: &Insert) -> Result<ObjectName> {
    match &insert.table {
        TableObject::TableName(name) => Ok(name.clone()),
        other => Err(Error::invalid(format!(
            "INSERT INTO {other} is not supported"
        ))),
    }
}

/// `INSERT ... ON CONFLICT` as the MERGE of its rows on the table's primary key.
fn on_conflict_change(insert: &Insert, manifest: &Manifest) -> Result<RowChange> {
    use datafusion::sql::sqlparser::ast::helpers::attached_token::AttachedToken;
    use datafusion::sql::sqlparser::ast::{
        ConflictTarget, MergeInsertExpr, MergeUpdateExpr, OnConflictAction, OnInsert, Values,
    };
    let table = &manifest.table;
    let Some(OnInsert::OnConflict(on_conflict)) = &insert.on else {
        return Err(Error::invalid(
            "INSERT ... ON DUPLICATE KEY UPDATE is not supported; use ON CONFLICT (key) DO UPDATE",
        ));
    };
    if insert.returning.is_some() || insert.overwrite || insert.source.is_none() {
        return Err(Error::invalid(
            "INSERT ... ON CONFLICT takes VALUES or a query, without OVERWRITE or RETURNING",
        ));
    }
    let key = &manifest.primary_key;
    if key.is_empty() {
        return Err(Error::invalid(format!(
            "INSERT ... ON CONFLICT needs a primary key; {table} has none"
        )));
    }
    match &on_conflict.conflict_target {
        None => {}
        Some(ConflictTarget::Columns(columns)) => {
            let mut named: Vec<String> = columns.iter().map(normalize).collect();
            let mut expected = key.clone();
            named.sort();
            expected.sort();
            if named != expected {
                return Err(Error::invalid(format!(
                    "ON CONFLICT ({}) must name the primary key of {table}: ({})",
                    named.join(", "),
                    key.join(", ")
                )));
            }
        }
        Some(ConflictTarget::OnConstraint(name)) => {
            return Err(Error::invalid(format!(
                "ON CONFLICT ON CONSTRAINT {name} is not supported; name the key columns"
            )));
        }
    }
    let schema = manifest.arrow_schema();
    let columns: Vec<String> = if insert.columns.is_empty() {
        schema.fields().iter().map(|f| f.name().clone()).collect()
    } else {
        insert
            .columns
            .iter()
            .map(|c| {
                c.0.last()
                    .and_then(|p| p.as_ident())
                    .map(normalize)
                    .unwrap_or_default()
            })
            .collect()
    };
    for k in key {
        if !columns.contains(k) {
            return Err(Error::invalid(format!(
                "INSERT ... ON CONFLICT must insert the key column {k:?}"
            )));
        }
    }
    let alias = insert
        .table_alias
        .as_ref()
        .map(|a| a.alias.clone())
        .unwrap_or_else(|| Ident::with_quote('"', table.table.as_str()));
    let excluded = Ident::new("excluded");
    let source = format!(
        "({}) AS {excluded}({})",
        insert.source.as_ref().expect("checked above"),
        columns
            .iter()
            .map(|c| quote(c))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let on = key
        .iter()
        .map(|k| format!("{alias}.{} = {excluded}.{}", quote(k), quote(k)))
        .collect::<Vec<_>>()
        .join(" AND ");
    let on = parse_expr(&on)?;
    let ident_column = |c: &str| ObjectName::from(vec![Ident::with_quote('"', c)]);
    let insert_clause = MergeClause {
        when_token: AttachedToken::empty(),
        clause_kind: MergeClauseKind::NotMatched,
        predicate: None,
        action: MergeAction::Insert(MergeInsertExpr {
            insert_token: AttachedToken::empty(),
            columns: columns.iter().map(|c| ident_column(c)).collect(),
            kind_token: AttachedToken::empty(),
            kind: MergeInsertKind::Values(Values {
                explicit_row: false,
                value_keyword: false,
                rows: vec![Parens::with_empty_span(
                    columns
                        .iter()
                        .map(|c| {
                            SqlExpr::CompoundIdentifier(vec![
                                excluded.clone(),
                                Ident::with_quote('"', c.as_str()),
                            ])
                        })
                        .collect(),
                )],
            }),
            insert_predicate: None,
        }),
    };
    let mut clauses = Vec::new();
    if let OnConflictAction::DoUpdate(update) = &on_conflict.action {
        // Bare names in DO UPDATE mean the stored row (PostgreSQL): qualify them.
        let mut assignments = update.assignments.clone();
        let mut predicate = update.selection.clone();
        for expr in assignments
            .iter_mut()
            .map(|a| &mut a.value)
            .chain(predicate.iter_mut())
        {
            qualify_bare_columns(expr, &alias);
        }
        clauses.push(MergeClause {
            when_token: AttachedToken::empty(),
            clause_kind: MergeClauseKind::Matched,
            predicate,
            action: MergeAction::Update(MergeUpdateExpr {
                update_token: AttachedToken::empty(),
                assignments,
                update_predicate: None,
                delete_predicate: None,
            }),
        });
    }
    clauses.push(insert_clause);
    Ok(RowChange {
        operation: Operation::Merge,
        name: ObjectName::from(vec![
            Ident::with_quote('"', table.schema.as_str()),
            Ident::with_quote('"', table.table.as_str()),
        ]),
        alias: Some(alias),
        kind: ChangeKind::Merge {
            source,
            on,
            clauses,
        },
    })
}

/// Qualifies every bare column name in `expr` with `alias`.
fn qualify_bare_columns(expr: &mut SqlExpr, alias: &Ident) {
    use datafusion::sql::sqlparser::ast::visit_expressions_mut;
    use std::ops::ControlFlow;
    let _ = visit_expressions_mut(expr, |e| {
        if let SqlExpr::Identifier(ident) = e {
            *e = SqlExpr::CompoundIdentifier(vec![alias.clone(), ident.clone()]);
        }
        ControlFlow::<()>::Continue(())
    });
}

/// Parses one SQL expression (generated SQL).
fn parse_expr(sql: &str) -> Result<SqlExpr> {
    use datafusion::sql::sqlparser::dialect::GenericDialect;
    use datafusion::sql::sqlparser::parser::Parser;
    Parser::new(&GenericDialect {})
        .try_with_sql(sql)
        .and_then(|mut p| p.parse_expr())
        .map_err(|e| Error::invalid(format!("{sql}: {e}")))
}

/// The table (and alias) a DELETE/UPDATE/MERGE changes.
fn target_table(target: &TableFactor, statement: &str) -> Result<(ObjectName, Option<Ident>)> {
    match target {
        TableFactor::Table {
            name,
            version: Some(version),
            ..
        } => Err(Error::invalid(format!(
            "{statement} changes the newest version of {name}, not {version}; to bring an old \
             version back use RESTORE TABLE {name} TO VERSION n"
        ))),
        TableFactor::Table {
            name,
            alias,
            args: None,
            ..
        } => Ok((name.clone(), alias.as_ref().map(|a| a.name.clone()))),
        other => Err(Error::invalid(format!(
            "{statement} changes a table, not {other}"
        ))),
    }
}

/// An identifier as DataFusion's planner normalises it: unquoted ones lower-cased.
fn normalize(ident: &Ident) -> String {
    match ident.quote_style {
        Some(_) => ident.value.clone(),
        None => ident.value.to_lowercase(),
    }
}

/// `name` as a double-quoted SQL identifier.
fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
