//! `nl2sql(question [, options])`: a chat model writes one SQL query for a question about the
//! catalog's tables; the query is validated by building its logical plan only. It is never
//! executed.
//!
//! Result, one row:
//!
//! | column | type | |
//! |---|---|---|
//! | `sql` | Utf8 | the model's query (code fences and a trailing `;` removed) |
//! | `valid` | Boolean | whether it is one read-only query that plans against the catalog |
//! | `error` | Utf8 (nullable) | why it is not valid |
//! | `model` | Utf8 | the chat model's configured name |
//!
//! The prompt describes up to [`MAX_TABLES`] tables of the session's default catalog: each
//! table's columns with their Arrow types and up to [`SAMPLE_ROWS`] sample values per column
//! (read when the query executes). Validation: the answer must parse as exactly one statement,
//! that statement must be a query (`SELECT`/`WITH`/`VALUES`), and DataFusion must plan it in
//! the caller's session with DDL, DML and statements disallowed (`SQLOptions`). Planning reads
//! only table metadata.
//!
//! Options (a JSON object string): `model` (chat model), `schema` (only that schema's tables),
//! `system` (system prompt).

use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::catalog::{TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::DataFusionError;
use datafusion::execution::TaskContext;
use datafusion::execution::session_state::SessionState;
use serde::Deserialize;

use crate::args::{self, Deferred, string_literal};
use crate::chat::{ChatMessage, ChatModel, ChatModels};

/// Most tables described to the model.
pub const MAX_TABLES: usize = 30;
/// Sample values shown per column.
pub const SAMPLE_ROWS: usize = 3;
/// The system prompt when the options do not say (`system`).
pub const DEFAULT_SYSTEM: &str = "You translate questions into one SQL query for Apache \
DataFusion. Use only the tables and columns described. Answer with the SQL query only, no \
explanation.";

/// The `nl2sql` table function.
#[derive(Debug)]
pub struct Nl2SqlFunction {
    chat: Arc<ChatModels>,
}

impl Nl2SqlFunction {
    /// The function over the `chat` models.
    pub fn new(chat: Arc<ChatModels>) -> Self {
        Self { chat }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Options {
    model: Option<String>,
    schema: Option<String>,
    system: Option<String>,
}

fn plan_err(message: impl std::fmt::Display) -> DataFusionError {
    args::plan_err("nl2sql", message)
}

/// The result schema (see the module docs).
pub fn result_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("sql", DataType::Utf8, false),
        Field::new("valid", DataType::Boolean, false),
        Field::new("error", DataType::Utf8, true),
        Field::new("model", DataType::Utf8, false),
    ]))
}

impl TableFunctionImpl for Nl2SqlFunction {
    fn call_with_args(
        &self,
        args: TableFunctionArgs,
    ) -> datafusion::error::Result<Arc<dyn TableProvider>> {
        let exprs = args.exprs();
        if !(1..=2).contains(&exprs.len()) {
            return Err(plan_err(
                "expects (question [, options]), e.g. nl2sql('How many orders per year?')",
            ));
        }
        let question = string_literal(&exprs[0])
            .ok_or_else(|| plan_err("the question must be a string literal"))?;
        let options: Options = args::json_options("nl2sql", exprs.get(1))?;
        let chat = Arc::clone(self.chat.get(options.model.as_deref()).map_err(plan_err)?);
        let state = args
            .session()
            .as_any()
            .downcast_ref::<SessionState>()
            .ok_or_else(|| DataFusionError::Internal("nl2sql needs a SessionState".into()))?
            .clone();
        let run = Nl2SqlRun {
            question: question.to_string(),
            schema: options.schema,
            system: options.system.unwrap_or_else(|| DEFAULT_SYSTEM.into()),
            chat,
            state: Arc::new(state),
        };
        args::deferred_table(result_schema(), run)
    }
}

/// One `nl2sql` call, run when the query executes.
#[derive(Debug, Clone)]
struct Nl2SqlRun {
    question: String,
    schema: Option<String>,
    system: String,
    chat: Arc<ChatModel>,
    /// The caller's session: its catalog is described, and the answer planned, in it.
    state: Arc<SessionState>,
}

#[async_trait::async_trait]
impl Deferred for Nl2SqlRun {
    async fn run(self, _ctx: Arc<TaskContext>) -> datafusion::error::Result<RecordBatch> {
        self.answer().await
    }
}

impl Nl2SqlRun {
    /// `CREATE TABLE`-like lines for the catalog's tables, with sample values.
    async fn describe_catalog(&self) -> datafusion::error::Result<String> {
        let options = self.state.config().options();
        let catalog_name = options.catalog.default_catalog.clone();
        let catalog = self
            .state
            .catalog_list()
            .catalog(&catalog_name)
            .ok_or_else(|| plan_err(format!("no catalog {catalog_name}")))?;
        let mut lines = Vec::new();
        let mut schemas = catalog.schema_names();
        schemas.sort();
        'outer: for schema_name in schemas {
            if self.schema.as_ref().is_some_and(|s| s != &schema_name)
                || schema_name == "information_schema"
            {
                continue;
            }
            let Some(schema) = catalog.schema(&schema_name) else {
                continue;
            };
            let mut tables = schema.table_names();
            tables.sort();
            for table_name in tables {
                if lines.len() >= MAX_TABLES {
                    break 'outer;
                }
                let Some(table) = schema.table(&table_name).await? else {
                    continue;
                };
                let name = format!("{schema_name}.{table_name}");
                let samples = self.samples(&name, &table).await.unwrap_or_default();
                let columns = table
                    .schema()
                    .fields()
                    .iter()
                    .enumerate()
                    .map(|(i, f)| {
                        let sample = samples.get(i).filter(|s| !s.is_empty());
                        match sample {
                            Some(values) => format!(
                                "  {} {} -- e.g. {}",
                                f.name(),
                                f.data_type(),
                                values.join(", ")
                            ),
                            None => format!("  {} {}", f.name(), f.data_type()),
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(",\n");
                lines.push(format!("TABLE {name} (\n{columns}\n)"));
            }
        }
        Ok(lines.join("\n"))
    }

    /// Up to [`SAMPLE_ROWS`] values of each scalar column of `table`, as text.
    async fn samples(
        &self,
        name: &str,
        table: &Arc<dyn TableProvider>,
    ) -> datafusion::error::Result<Vec<Vec<String>>> {
        let schema = table.schema();
        let plan = table
            .scan(self.state.as_ref(), None, &[], Some(SAMPLE_ROWS))
            .await?;
        let batches = datafusion::physical_plan::collect(plan, self.state.task_ctx()).await?;
        let format = FormatOptions::default();
        let mut out = vec![Vec::new(); schema.fields().len()];
        for batch in &batches {
            for (i, column) in batch.columns().iter().enumerate() {
                if matches!(
                    column.data_type(),
                    DataType::List(_) | DataType::FixedSizeList(..) | DataType::Struct(_)
                ) {
                    continue;
                }
                let formatter = ArrayFormatter::try_new(column.as_ref(), &format)?;
                for row in 0..batch.num_rows().min(SAMPLE_ROWS) {
                    if out[i].len() < SAMPLE_ROWS {
                        let value: String = formatter.value(row).to_string();
                        out[i].push(value.chars().take(40).collect());
                    }
                }
            }
        }
        tracing::debug!(table = name, "sampled for nl2sql");
        Ok(out)
    }

    async fn answer(self) -> datafusion::error::Result<RecordBatch> {
        let tables = self.describe_catalog().await?;
        let prompt = format!("Tables:\n{tables}\n\nQuestion: {}\nSQL:", self.question);
        let answer = self
            .chat
            .complete(&[ChatMessage::system(&self.system), ChatMessage::user(prompt)])
            .await
            .map_err(args::to_datafusion)?;
        let sql = extract_sql(&answer);
        let error = validate(&self.state, &sql).await.err();
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(vec![sql])),
            Arc::new(BooleanArray::from(vec![error.is_none()])),
            Arc::new(StringArray::from(vec![error])),
            Arc::new(StringArray::from(vec![self.chat.name().to_string()])),
        ];
        Ok(RecordBatch::try_new(result_schema(), columns)?)
    }
}

/// The SQL in a model's answer: the first fenced code block when there is one, else the whole
/// answer; trimmed, with one trailing `;` removed.
pub fn extract_sql(answer: &str) -> String {
    let body = match answer.split_once("```") {
        Some((_, rest)) => {
            let rest = rest.strip_prefix("sql").unwrap_or(rest);
            rest.split("```").next().unwrap_or(rest)
        }
        None => answer,
    };
    let sql = body.trim();
    sql.strip_suffix(';').unwrap_or(sql).trim().to_string()
}

/// Checks that `sql` is one read-only query that plans in `state`, without running it.
///
/// # Errors
/// The reason, for clients: a parse error, several statements, a statement that is not a
/// query, or DataFusion's planning error (unknown table or column, type errors, ...).
pub async fn validate(state: &SessionState, sql: &str) -> Result<(), String> {
    use datafusion::sql::parser::Statement as DFStatement;
    use datafusion::sql::sqlparser::ast::Statement;
    if sql.is_empty() {
        return Err("the model answered no SQL".into());
    }
    let dialect = state.config().options().sql_parser.dialect;
    let statement = state
        .sql_to_statement(sql, &dialect)
        .map_err(|e| e.to_string())?;
    match &statement {
        DFStatement::Statement(s) if matches!(s.as_ref(), Statement::Query(_)) => {}
        _ => return Err("not a query: only SELECT/WITH/VALUES are accepted (never run)".into()),
    }
    let plan = state
        .statement_to_plan(statement)
        .await
        .map_err(|e| e.to_string())?;
    datafusion::execution::context::SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
        .verify_plan(&plan)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::datasource::MemTable;
    use datafusion::prelude::SessionContext;

    #[test]
    fn sql_is_taken_from_fences_or_the_whole_answer() {
        assert_eq!(extract_sql("SELECT 1;"), "SELECT 1");
        assert_eq!(
            extract_sql("Here:\n```sql\nSELECT a FROM t;\n```\nDone."),
            "SELECT a FROM t"
        );
        assert_eq!(extract_sql("```\nSELECT 2\n```"), "SELECT 2");
    }

    #[tokio::test]
    async fn planted_answers_get_the_right_verdict() {
        let ctx = SessionContext::new();
        let schema = Arc::new(Schema::new(vec![Field::new("a", DataType::Int64, false)]));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![Arc::new(arrow::array::Int64Array::from(vec![1, 2]))],
        )
        .unwrap();
        ctx.register_table(
            "t",
            Arc::new(MemTable::try_new(schema, vec![vec![batch]]).unwrap()),
        )
        .unwrap();
        let state = ctx.state();
        assert_eq!(
            validate(&state, "SELECT a, count(*) FROM t GROUP BY a").await,
            Ok(())
        );
        for (sql, reason) in [
            ("SELECT b FROM t", "b"),
            ("SELECT * FROM nope", "nope"),
            ("DROP TABLE t", "not a query"),
            ("INSERT INTO t VALUES (3)", "not a query"),
            ("SELECT 1; SELECT 2", "single SQL statement"),
            ("SELEC a FROM t", "SELEC"),
            ("", "no SQL"),
        ] {
            let err = validate(&state, sql).await.unwrap_err();
            assert!(err.contains(reason), "{sql}: {err}");
        }
        // Validation never runs anything: the table still has its two rows.
        let rows = ctx
            .sql("SELECT count(*) FROM t")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        assert_eq!(rows[0].num_rows(), 1);
    }
}
