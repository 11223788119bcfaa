//! The MCP tools and resources: each tool is one or two SQL statements sent to the Lakehouse
//! server over Flight SQL, its answer rendered as a compact table ([`crate::render`]).
//!
//! | tool | SQL |
//! |---|---|
//! | `list_tables` | `SELECT ... FROM lakehouse_tables()` |
//! | `describe_table` | `lakehouse_tables()` for the table, then `SELECT * FROM t LIMIT 3` |
//! | `query` | the agent's SQL, read-only, capped at `max_rows` rows / `max_bytes` bytes |
//! | `vector_search` | `SELECT * FROM vector_search('t', 'query', k [, options])` |
//! | `hybrid_search` | `SELECT * FROM hybrid_search('t', 'query', k)` |
//! | `rag` | `SELECT answer, sources FROM rag('question', 't', options)` |
//! | `nl2sql` | `SELECT sql, valid, error FROM nl2sql('question')`, then the SQL when asked to run it |
//! | `execute` | the agent's statement as CommandStatementUpdate (only with `--allow-writes`) |

use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use futures::TryStreamExt;
use lakehouse_client::Client;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::tool::ToolCallContext;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    ListResourcesResult, PaginatedRequestParams, ReadResourceRequestParams, ReadResourceResponse,
    ReadResourceResult, Resource, ResourceContents, ServerCapabilities, ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler, tool, tool_handler, tool_router};
use serde::Deserialize;
use tokio::sync::Mutex;

use crate::McpOptions;
use crate::render::{self, Table};
use crate::sql::{TableName, literal};

/// Scheme of the table resources: `lakehouse://SCHEMA/TABLE`.
pub const RESOURCE_SCHEME: &str = "lakehouse://";

/// Header that makes a Lakehouse call read-only (the server's `READ_ONLY_HEADER`).
pub const READ_ONLY_HEADER: &str = "x-lakehouse-read-only";

/// Rows of sample data `describe_table` shows.
pub const SAMPLE_ROWS: usize = 3;

/// What a tool answers: its result, or a message for the agent (a tool error).
type Answer = Result<CallToolResult, String>;

/// The MCP server's handler: one per MCP session, all sharing one connection to Lakehouse.
#[derive(Clone)]
pub struct Lakehouse {
    shared: Arc<Shared>,
    tool_router: ToolRouter<Self>,
}

struct Shared {
    options: McpOptions,
    /// The connection, made on first use and again after the server refused its token.
    connection: Mutex<Option<Connection>>,
}

/// A logged-in client, and its read-only twin that every tool but `execute` uses.
#[derive(Clone)]
struct Connection {
    reader: Client,
    writer: Client,
}

impl Lakehouse {
    /// A handler for `options`; it connects on first use.
    pub fn new(options: McpOptions) -> Self {
        let mut tool_router = Self::tool_router();
        if !options.allow_writes {
            tool_router.disable_route("execute");
        }
        Self {
            shared: Arc::new(Shared {
                options,
                connection: Mutex::new(None),
            }),
            tool_router,
        }
    }

    /// Connects now, so that a wrong address or password shows at start (on stderr); the MCP
    /// server starts anyway and tools report the failure until the server answers.
    pub async fn check_connection(&self) {
        if let Err(message) = self.connection().await {
            tracing::warn!("{message}");
        }
    }

    async fn connection(&self) -> Result<Connection, String> {
        let mut slot = self.shared.connection.lock().await;
        if let Some(connection) = slot.as_ref() {
            return Ok(connection.clone());
        }
        let options = &self.shared.options;
        let writer = Client::connect_with(&options.server, options.connect.clone())
            .await
            .map_err(|e| format!("cannot reach Lakehouse at {}: {e}", options.server))?;
        let mut reader = writer.clone();
        reader.flight_sql().set_header(READ_ONLY_HEADER, "true");
        let connection = Connection { reader, writer };
        *slot = Some(connection.clone());
        Ok(connection)
    }

    /// Runs `work` with a client (the read-only one unless `write`); when the server answers
    /// Unauthenticated (an expired token), logs in again and runs it once more.
    async fn with_client<T, F, Fut>(&self, write: bool, work: F) -> Result<T, String>
    where
        F: Fn(Client) -> Fut,
        Fut: std::future::Future<Output = lakehouse_client::Result<T>>,
    {
        for attempt in 0..2 {
            let connection = self.connection().await?;
            let client = if write {
                connection.writer
            } else {
                connection.reader
            };
            match work(client).await {
                Ok(value) => return Ok(value),
                Err(e) => {
                    let expired = e
                        .status()
                        .is_some_and(|s| s.code() == tonic::Code::Unauthenticated);
                    if expired && attempt == 0 && self.shared.options.connect.login.is_some() {
                        *self.shared.connection.lock().await = None;
                        continue;
                    }
                    return Err(message(&e));
                }
            }
        }
        unreachable!("the loop returns")
    }

    /// Runs `sql` read-only and renders its result within `max_rows` rows and the byte cap.
    async fn table(&self, sql: &str, max_rows: usize) -> Result<Table, String> {
        let max_bytes = self.shared.options.max_bytes;
        self.with_client(false, |mut client| {
            let sql = sql.to_string();
            async move {
                let (schema, stream) = client.query_with_schema(&sql).await?;
                render::render(&schema, stream, max_rows, max_bytes).await
            }
        })
        .await
    }

    /// The first row of `sql`'s (one-row) result, as the batch holding it; `what` names the
    /// function for the error when there is none.
    async fn one_row(&self, sql: &str, what: &str) -> Result<RecordBatch, String> {
        self.batches(sql)
            .await?
            .into_iter()
            .find(|b| b.num_rows() > 0)
            .ok_or_else(|| format!("{what} answered no row"))
    }

    /// Runs `sql` read-only and collects its (small) result.
    async fn batches(&self, sql: &str) -> Result<Vec<RecordBatch>, String> {
        self.with_client(false, |mut client| {
            let sql = sql.to_string();
            async move { client.query(&sql).await?.try_collect().await }
        })
        .await
    }

    /// The description of `table`: kind, size, keys, vector columns, indexes, columns with
    /// types, sample rows.
    async fn describe(&self, table: &TableName) -> Result<String, String> {
        let info = self
            .batches(&format!(
                "SELECT kind, version, rows, bytes, primary_key, vector_columns, indexes \
                 FROM lakehouse_tables() WHERE schema_name = {} AND table_name = {}",
                literal(&table.schema),
                literal(&table.table)
            ))
            .await?;
        let Some(info) = info.iter().find(|b| b.num_rows() > 0) else {
            return Err(format!(
                "no table {table}; list_tables shows the tables there are"
            ));
        };
        let mut text = format!("Table {table}\n");
        for (field, column) in info.schema().fields().iter().zip(info.columns()) {
            if column.is_null(0) {
                continue;
            }
            let value = ArrayFormatter::try_new(column.as_ref(), &FormatOptions::default())
                .map_err(|e| e.to_string())?
                .value(0)
                .to_string();
            text.push_str(&format!("{}: {value}\n", field.name()));
        }
        let sample = format!("SELECT * FROM {} LIMIT {SAMPLE_ROWS}", table.sql());
        let (schema, rows) = self
            .with_client(false, |mut client| {
                let sample = sample.clone();
                async move {
                    let (schema, stream) = client.query_with_schema(&sample).await?;
                    let rows = render::render(&schema, stream, SAMPLE_ROWS, usize::MAX).await?;
                    Ok((schema, rows))
                }
            })
            .await?;
        text.push_str("\nColumns (name: Arrow type):\n");
        for field in schema.fields() {
            let nullable = if field.is_nullable() { "" } else { " NOT NULL" };
            text.push_str(&format!(
                "- {}: {}{nullable}\n",
                field.name(),
                field.data_type()
            ));
        }
        text.push_str(&format!("\nSample rows:\n{}", rows.text));
        Ok(text)
    }

    /// Every table as `(schema, table, kind)`.
    async fn tables(&self) -> Result<Vec<(String, String, String)>, String> {
        let batches = self
            .batches("SELECT schema_name, table_name, kind FROM lakehouse_tables()")
            .await?;
        let mut out = Vec::new();
        for batch in &batches {
            let text = |i: usize| batch.column(i).as_string::<i32>();
            for row in 0..batch.num_rows() {
                out.push((
                    text(0).value(row).to_string(),
                    text(1).value(row).to_string(),
                    text(2).value(row).to_string(),
                ));
            }
        }
        Ok(out)
    }
}

/// A client error as the agent reads it: the server's gRPC code and message, or the local
/// failure.
fn message(error: &lakehouse_client::Error) -> String {
    match error.status() {
        Some(status) => format!("{:?}: {}", status.code(), status.message()),
        None => error.to_string(),
    }
}

/// A successful tool result: `text`, plus `structured` as structured content when given.
fn answer(text: String, structured: Option<serde_json::Value>) -> CallToolResult {
    let mut result = CallToolResult::success(vec![ContentBlock::text(text)]);
    result.structured_content = structured;
    result
}

/// A rendered table as a tool result: the table text, a footer, and `{rows, truncated}`.
fn table_answer(table: Table) -> CallToolResult {
    let footer = format!(
        "({} row{}{})",
        table.rows,
        if table.rows == 1 { "" } else { "s" },
        if table.truncated {
            "; truncated: more rows exist — add a LIMIT or narrow the query"
        } else {
            ""
        }
    );
    answer(
        format!("{}{footer}", table.text),
        Some(serde_json::json!({"rows": table.rows, "truncated": table.truncated})),
    )
}

/// `describe_table` arguments.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct DescribeTable {
    /// The table: NAME (schema public) or SCHEMA.NAME, as list_tables shows it.
    pub table: String,
}

/// `query` arguments.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct Query {
    /// One read-only SQL statement (SELECT, WITH, VALUES, EXPLAIN, SHOW) in Apache
    /// DataFusion's dialect (PostgreSQL-like). Tables are SCHEMA.NAME; unqualified names are
    /// in schema public.
    pub sql: String,
    /// Most rows to return (default and upper bound: the server's cap, usually 100).
    #[serde(default)]
    pub max_rows: Option<usize>,
}

/// The `rerank` option of the search functions: `candidates` rated by the default chat model.
fn rerank(candidates: u32) -> serde_json::Value {
    serde_json::json!({ "candidates": candidates })
}

/// A search function's trailing options argument: empty without options, else
/// `, '{"key": ...}'`.
fn options_arg(options: serde_json::Map<String, serde_json::Value>) -> String {
    if options.is_empty() {
        String::new()
    } else {
        format!(
            ", {}",
            literal(&serde_json::Value::Object(options).to_string())
        )
    }
}

/// `vector_search` arguments.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct VectorSearch {
    /// A Lance table (kind lance or documents in list_tables).
    pub table: String,
    /// The text to search for; it is embedded with the model the vector column was made with.
    pub query: String,
    /// How many nearest rows to return (1..100, default 5).
    #[serde(default)]
    pub k: Option<u32>,
    /// A SQL predicate on the table's columns applied before the search, e.g. "year >= 2020".
    #[serde(default)]
    pub filter: Option<String>,
    /// The vector column, when the table has several.
    #[serde(default)]
    pub column: Option<String>,
    /// Re-score this many top candidates (k..100) with the server's chat model and return
    /// the k it rates most relevant, with their _relevance_score (0..1). Slower: one model
    /// call per candidate; needs a chat model on the server.
    #[serde(default)]
    pub rerank: Option<u32>,
}

/// `hybrid_search` arguments.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct HybridSearch {
    /// A Lance table with a vector column and a full-text index on its text (a documents
    /// table gets one with CREATE INDEX name ON table USING FTS (text)).
    pub table: String,
    /// The text to search for, by meaning and by its words (BM25), fused by rank.
    pub query: String,
    /// How many rows to return (1..100, default 5).
    #[serde(default)]
    pub k: Option<u32>,
    /// Re-score this many top candidates (k..100) with the server's chat model and return
    /// the k it rates most relevant, with their _relevance_score (0..1). Slower: one model
    /// call per candidate; needs a chat model on the server.
    #[serde(default)]
    pub rerank: Option<u32>,
}

/// `rag` arguments.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct Rag {
    /// The question to answer from the table's passages.
    pub question: String,
    /// A documents table (or a Lance table with a text column and a vector column).
    pub table: String,
    /// Passages to retrieve (1..100, default 5).
    #[serde(default)]
    pub k: Option<u32>,
    /// "vector" (default) or "hybrid" (vector and full-text, needs a full-text index).
    #[serde(default)]
    pub mode: Option<String>,
    /// Re-score this many top candidates (k..100) with the server's chat model and cite
    /// the k it rates most relevant. Slower: one model
    /// call per candidate; needs a chat model on the server.
    #[serde(default)]
    pub rerank: Option<u32>,
}

/// `nl2sql` arguments.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct Nl2Sql {
    /// A question about the data, in plain language.
    pub question: String,
    /// Also run the SQL when it is valid, and return its rows (default false).
    #[serde(default)]
    pub run: bool,
}

/// `execute` arguments.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct Execute {
    /// One data-changing statement: CREATE TABLE, INSERT, UPDATE, DELETE, MERGE, DROP,
    /// OPTIMIZE, VACUUM, CREATE INDEX, ...
    pub sql: String,
}

/// `k` within 1..=100, default 5.
fn k_or_default(k: Option<u32>) -> Result<u32, String> {
    match k.unwrap_or(5) {
        k @ 1..=100 => Ok(k),
        k => Err(format!("k is {k}; give 1 to 100")),
    }
}

#[tool_router]
impl Lakehouse {
    #[tool(
        description = "List every table: schema, name, kind (parquet: versioned table; \
                       external: read-only files; lance: vector table; documents: chunked, \
                       embedded documents for search and rag), rows, columns, vector columns \
                       and indexes. Start here.",
        annotations(read_only_hint = true)
    )]
    async fn list_tables(&self) -> Answer {
        let table = self
            .table(
                "SELECT schema_name, table_name, kind, rows, columns, vector_columns, indexes \
                 FROM lakehouse_tables() ORDER BY schema_name, table_name",
                usize::MAX,
            )
            .await?;
        Ok(table_answer(table))
    }

    #[tool(
        description = "Describe one table: kind, version, rows, primary key, vector columns \
                       and indexes, every column with its Arrow type, and 3 sample rows.",
        annotations(read_only_hint = true)
    )]
    async fn describe_table(&self, Parameters(args): Parameters<DescribeTable>) -> Answer {
        let table = TableName::parse(&args.table)?;
        Ok(answer(self.describe(&table).await?, None))
    }

    #[tool(
        description = "Run one read-only SQL query (Apache DataFusion SQL, PostgreSQL-like) \
                       and get its rows as a table: columns separated by ' | ', long texts and \
                       vectors shortened, at most max_rows rows (the footer says when rows \
                       were cut). Data-changing statements are refused.",
        annotations(read_only_hint = true)
    )]
    async fn query(&self, Parameters(args): Parameters<Query>) -> Answer {
        let cap = self.shared.options.max_rows;
        let max_rows = args.max_rows.unwrap_or(cap).min(cap);
        Ok(table_answer(self.table(&args.sql, max_rows).await?))
    }

    #[tool(
        description = "Find the k rows of a Lance table nearest in meaning to a text \
                       (embedding similarity), nearest first, with their _distance.",
        annotations(read_only_hint = true)
    )]
    async fn vector_search(&self, Parameters(args): Parameters<VectorSearch>) -> Answer {
        let table = TableName::parse(&args.table)?;
        let k = k_or_default(args.k)?;
        let mut options = serde_json::Map::new();
        if let Some(filter) = args.filter {
            options.insert("filter".into(), filter.into());
        }
        if let Some(column) = args.column {
            options.insert("column".into(), column.into());
        }
        if let Some(candidates) = args.rerank {
            options.insert("rerank".into(), rerank(candidates));
        }
        let options = options_arg(options);
        let sql = format!(
            "SELECT * FROM vector_search({}, {}, {k}{options})",
            table.literal(),
            literal(&args.query)
        );
        Ok(table_answer(
            self.table(&sql, self.shared.options.max_rows).await?,
        ))
    }

    #[tool(
        description = "Find the k rows of a Lance table best matching a text by meaning and by \
                       its words (vector and BM25 full-text search fused by reciprocal rank), \
                       best first, with their _score.",
        annotations(read_only_hint = true)
    )]
    async fn hybrid_search(&self, Parameters(args): Parameters<HybridSearch>) -> Answer {
        let table = TableName::parse(&args.table)?;
        let k = k_or_default(args.k)?;
        let mut options = serde_json::Map::new();
        if let Some(candidates) = args.rerank {
            options.insert("rerank".into(), rerank(candidates));
        }
        let sql = format!(
            "SELECT * FROM hybrid_search({}, {}, {k}{})",
            table.literal(),
            literal(&args.query),
            options_arg(options)
        );
        Ok(table_answer(
            self.table(&sql, self.shared.options.max_rows).await?,
        ))
    }

    #[tool(
        description = "Answer a question from a documents table: retrieve the k most relevant \
                       passages, let the server's chat model answer citing them as [n], and \
                       return the answer with its numbered sources.",
        annotations(read_only_hint = true)
    )]
    async fn rag(&self, Parameters(args): Parameters<Rag>) -> Answer {
        let table = TableName::parse(&args.table)?;
        let mut options = serde_json::json!({"k": k_or_default(args.k)?});
        if let Some(mode) = args.mode {
            options["mode"] = mode.into();
        }
        if let Some(candidates) = args.rerank {
            options["rerank"] = rerank(candidates);
        }
        let sql = format!(
            "SELECT answer, sources FROM rag({}, {}, {})",
            literal(&args.question),
            table.literal(),
            literal(&options.to_string())
        );
        let batch = self.one_row(&sql, "rag").await?;
        let answer_text = batch.column(0).as_string::<i32>().value(0).to_string();
        let sources = batch.column(1).as_list::<i32>().value(0);
        let formatter = ArrayFormatter::try_new(sources.as_ref(), &FormatOptions::default())
            .map_err(|e| e.to_string())?;
        let mut text = format!("{answer_text}\n\nSources:\n");
        for i in 0..sources.len() {
            text.push_str(&format!(
                "[{}] {}\n",
                i + 1,
                render::shorten(&formatter.value(i).to_string())
            ));
        }
        Ok(answer(text, None))
    }

    #[tool(
        description = "Translate a question into one SQL query over the catalog with the \
                       server's chat model; the query is checked by planning it. With run = \
                       true a valid query is also run and its rows returned.",
        annotations(read_only_hint = true)
    )]
    async fn nl2sql(&self, Parameters(args): Parameters<Nl2Sql>) -> Answer {
        let sql = format!(
            "SELECT sql, valid, error FROM nl2sql({})",
            literal(&args.question)
        );
        let batch = self.one_row(&sql, "nl2sql").await?;
        let query = batch.column(0).as_string::<i32>().value(0).to_string();
        let valid = batch.column(1).as_boolean().value(0);
        let error = batch.column(2).as_string::<i32>();
        let mut text = format!("{query}\n");
        if !valid {
            text.push_str(&format!(
                "\nNot valid: {}\n",
                if error.is_null(0) { "" } else { error.value(0) }
            ));
        } else if args.run {
            let table = self.table(&query, self.shared.options.max_rows).await?;
            text.push('\n');
            text.push_str(&table.text);
        }
        Ok(answer(
            text,
            Some(serde_json::json!({"sql": query, "valid": valid})),
        ))
    }

    #[tool(
        description = "Run one data-changing statement (CREATE TABLE, INSERT, UPDATE, DELETE, \
                       MERGE, DROP TABLE, OPTIMIZE, VACUUM, CREATE INDEX, ...) and return the \
                       rows it affected. Needs a user with role write.",
        annotations(destructive_hint = true)
    )]
    async fn execute(&self, Parameters(args): Parameters<Execute>) -> Answer {
        let rows = self
            .with_client(true, |mut client| {
                let sql = args.sql.clone();
                async move { client.execute(&sql).await }
            })
            .await?;
        Ok(answer(
            format!("{rows} rows affected"),
            Some(serde_json::json!({"rows_affected": rows})),
        ))
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Lakehouse {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_resources()
                .build(),
        )
        .with_server_info(Implementation::new("lakehouse", env!("CARGO_PKG_VERSION")))
        .with_instructions(
            "Lakehouse: SQL (Apache DataFusion dialect) over versioned tables, plus vector, \
             full-text and hybrid search and RAG over Lance tables. Start with list_tables, \
             then describe_table for the columns, then query. Use vector_search, hybrid_search \
             and rag on tables of kind documents or lance. Each table is also a resource at \
             lakehouse://SCHEMA/TABLE.",
        )
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        if request.name == "execute" && !self.shared.options.allow_writes {
            return Ok(CallToolResult::error(vec![ContentBlock::text(
                "execute is off: this MCP server is read-only; start `lakehouse mcp` with \
                 --allow-writes (and a user with role write) to change data",
            )])
            .into());
        }
        self.tool_router
            .call(ToolCallContext::new(self, request, context))
            .await
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let tables = self
            .tables()
            .await
            .map_err(|e| ErrorData::internal_error(e, None))?;
        Ok(ListResourcesResult::with_all_items(
            tables
                .into_iter()
                .map(|(schema, table, kind)| {
                    Resource::new(
                        format!("{RESOURCE_SCHEME}{schema}/{table}"),
                        format!("{schema}.{table}"),
                    )
                    .with_description(format!(
                        "{kind} table {schema}.{table}: columns, types, sample rows"
                    ))
                    .with_mime_type("text/plain")
                })
                .collect(),
        ))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let not_found = |why: String| ErrorData::resource_not_found(why, None);
        let (schema, table) = request
            .uri
            .strip_prefix(RESOURCE_SCHEME)
            .and_then(|rest| rest.split_once('/'))
            .ok_or_else(|| {
                not_found(format!(
                    "{} is not a table resource; they are {RESOURCE_SCHEME}SCHEMA/TABLE",
                    request.uri
                ))
            })?;
        let name = TableName {
            schema: schema.to_string(),
            table: table.to_string(),
        };
        let text = self.describe(&name).await.map_err(not_found)?;
        Ok(ReadResourceResult::new(vec![ResourceContents::text(text, request.uri)]).into())
    }
}
