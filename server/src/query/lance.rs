//! Writes to Lance tables: creating one (the dataset first, then the catalog record), and
//! appends, each one Lance commit. Reads go through the catalog adapter, which serves a Lance
//! table's newest dataset version as Lance's own `TableProvider`.
//!
//! Lance tables are created by ingest (option `lakehouse.table_format = lance`) or by SQL:
//!
//! ```sql
//! CREATE TABLE [IF NOT EXISTS] name [(column type, ...)] STORED AS LANCE
//!     [WITH (metric = 'cosine' | 'l2' | 'dot', model = 'embedding-model')]
//!     [AS SELECT ...]
//! ```
//!
//! Vector columns are `FixedSizeList<Float32, D>` (SQL type `FLOAT[D]`, or `embed(...)`'s
//! result). `metric` (default cosine) applies to every vector column; `model` names the
//! embedding model of the vector columns, so text queries to `vector_search` are embedded
//! with it; without it, a column made by `embed(text [, model])` records that model. sqlparser
//! knows no `LANCE` storage format, so the clause is cut out of the SQL text by token before
//! parsing ([`strip_stored_as_lance`]) and the rest is planned by DataFusion as `CREATE TABLE`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::error::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::StreamExt;
use lakehouse_catalog::{
    Change, Error as CatalogError, LanceTable, Manifest, TableRef, VectorMetric, WriteMode,
};
use lakehouse_vector::table::{LanceStore, check_schema, vector_columns};

use super::QueryEngine;
use crate::error::{Error, Result};

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
            (None, WriteMode::Append) => Err(CatalogError::TableNotFound(table.clone()).into()),
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

impl QueryEngine {
    /// `CREATE INDEX name ON table USING IVF_PQ|IVF_FLAT|IVF_HNSW_SQ|FTS (column)
    /// [WITH (key = value, ...)]` on a Lance table: builds the Lance index (one Lance commit;
    /// an existing index of that name is replaced). Answers 0 rows.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a missing name, method or column, a Parquet table, a
    /// vector index on a non-vector column, unknown options; catalog `TableNotFound`.
    pub(super) async fn create_index(
        &self,
        create: &datafusion::sql::sqlparser::ast::CreateIndex,
        default_schema: &lakehouse_catalog::SchemaName,
    ) -> Result<i64> {
        use datafusion::sql::sqlparser::ast::{BinaryOperator, Expr as SqlExpr, IndexType};
        use lakehouse_vector::table::IndexKind;
        let name = create
            .name
            .as_ref()
            .ok_or_else(|| Error::invalid("CREATE INDEX needs an index name"))?
            .to_string();
        let kind: IndexKind = match &create.using {
            Some(IndexType::Custom(method)) => method.value.parse()?,
            Some(other) => other.to_string().parse()?,
            None => {
                return Err(Error::invalid(
                    "CREATE INDEX needs USING IVF_PQ, IVF_FLAT, IVF_HNSW_SQ or FTS",
                ));
            }
        };
        let [column] = create.columns.as_slice() else {
            return Err(Error::invalid("CREATE INDEX takes exactly one column"));
        };
        let column = column.column.expr.to_string().trim_matches('"').to_string();
        let table = table_ref(&create.table_name, default_schema, "CREATE INDEX")?;
        let mut options = std::collections::HashMap::new();
        for expr in &create.with {
            match expr {
                SqlExpr::BinaryOp {
                    left,
                    op: BinaryOperator::Eq,
                    right,
                } => {
                    let value = right.to_string().trim_matches('\'').to_string();
                    options.insert(left.to_string().to_ascii_lowercase(), value);
                }
                other => {
                    return Err(Error::invalid(format!(
                        "CREATE INDEX ... WITH takes key = value settings, not {other}"
                    )));
                }
            }
        }
        let manifest = self.catalog().table(&table).await?;
        let Some(lance) = &manifest.lance else {
            return Err(Error::invalid(format!(
                "{table} is a Parquet table; indexes are built on Lance tables"
            )));
        };
        let (metric, dimension) = match kind {
            IndexKind::Fts => (VectorMetric::Cosine, 0),
            _ => {
                let vector = lance
                    .vector_columns
                    .iter()
                    .find(|c| c.name == column)
                    .ok_or_else(|| {
                        Error::invalid(format!(
                            "{table}.{column} is not a vector column (FixedSizeList<Float32, D>)"
                        ))
                    })?;
                (vector.metric, vector.dimension)
            }
        };
        tracing::info!(%table, column = %column, index = %name, ?kind, "building index");
        let seconds = self
            .lance_store()
            .create_index(
                &lance.location,
                &lakehouse_vector::table::IndexSpec {
                    name: name.clone(),
                    kind,
                    column,
                    metric,
                    dimension,
                    options,
                },
            )
            .await?;
        tracing::info!(%table, index = %name, seconds, "index built");
        Ok(0)
    }
}

impl QueryEngine {
    /// `DROP INDEX [IF EXISTS] name [ON [schema.]table]`: drops the Lance index (one Lance
    /// commit). Without `ON`, the index is looked up among all Lance tables.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when the index does not exist (without `IF EXISTS`) or the
    /// name is ambiguous; catalog errors.
    pub(super) async fn drop_index(
        &self,
        names: &[datafusion::sql::sqlparser::ast::ObjectName],
        table: Option<&datafusion::sql::sqlparser::ast::ObjectName>,
        if_exists: bool,
        default_schema: &lakehouse_catalog::SchemaName,
    ) -> Result<i64> {
        let [name] = names else {
            return Err(Error::invalid("DROP INDEX takes one index name"));
        };
        let name = name.to_string().trim_matches('"').to_string();
        let store = self.lance_store();
        let mut owners = Vec::new();
        match table {
            Some(table) => {
                let table = table_ref(table, default_schema, "DROP INDEX")?;
                owners.push(self.catalog().table(&table).await?);
            }
            None => {
                for (_, manifests) in self.catalog().list().await? {
                    owners.extend(manifests);
                }
            }
        }
        let mut found = Vec::new();
        for manifest in owners {
            let Some(lance) = &manifest.lance else {
                continue;
            };
            if store
                .indexes(&lance.location)
                .await?
                .iter()
                .any(|index| index.name == name)
            {
                found.push((manifest.table.clone(), lance.location.clone()));
            }
        }
        match found.as_slice() {
            [] if if_exists => Ok(0),
            [] => Err(Error::invalid(format!("index {name} does not exist"))),
            [(table, location)] => {
                store.drop_index(location, &name).await?;
                tracing::info!(%table, index = %name, "index dropped");
                Ok(0)
            }
            several => Err(Error::invalid(format!(
                "index {name} exists on {} tables; say which: DROP INDEX {name} ON table",
                several.len()
            ))),
        }
    }
}

/// The table an `ON [schema.]table` clause of `statement` names, unqualified names in
/// `default_schema`.
///
/// # Errors
/// [`Error::InvalidArgument`] for more than two name parts or invalid names.
fn table_ref(
    name: &datafusion::sql::sqlparser::ast::ObjectName,
    default_schema: &lakehouse_catalog::SchemaName,
    statement: &str,
) -> Result<TableRef> {
    let parts: Vec<String> = name
        .0
        .iter()
        .map(|p| p.to_string().trim_matches('"').to_string())
        .collect();
    Ok(match parts.as_slice() {
        [t] => TableRef::new(default_schema.to_string(), t.clone())?,
        [s, t] => TableRef::new(s.clone(), t.clone())?,
        _ => return Err(Error::invalid(format!("{statement} ... ON [schema.]table"))),
    })
}

/// `sql` without its `STORED AS LANCE` clause when it is a `CREATE` statement with one at the
/// top level (outside parentheses), else `None`. Works on tokens, so the words inside strings,
/// quoted names and comments do not count.
///
/// # Errors
/// None for SQL that does not tokenize (`Ok(None)`: the parser then reports it).
pub(super) fn strip_stored_as_lance(
    sql: &str,
    dialect: &dyn datafusion::sql::sqlparser::dialect::Dialect,
) -> Result<Option<String>> {
    use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
    // Every statement passes through here; only tokenize those that can hold the clause.
    if !sql.to_ascii_lowercase().contains("lance") {
        return Ok(None);
    }
    let Ok(tokens) = Tokenizer::new(dialect, sql).tokenize_with_location() else {
        return Ok(None);
    };
    let words: Vec<_> = tokens
        .iter()
        .filter(|t| !matches!(t.token, Token::Whitespace(_)))
        .collect();
    let is_word = |i: usize, keyword: &str| {
        matches!(words.get(i), Some(t) if matches!(&t.token, Token::Word(w)
            if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(keyword)))
    };
    if !is_word(0, "CREATE") {
        return Ok(None);
    }
    let mut depth = 0i64;
    for (i, token) in words.iter().enumerate() {
        match token.token {
            Token::LParen => depth += 1,
            Token::RParen => depth -= 1,
            _ => {}
        }
        if depth == 0 && is_word(i, "STORED") && is_word(i + 1, "AS") && is_word(i + 2, "LANCE") {
            let start = super::params::byte_offset(sql, token.span.start);
            let end = super::params::byte_offset(sql, words[i + 2].span.start);
            let (Some(start), Some(end)) = (start, end) else {
                return Err(Error::invalid(
                    "cannot locate STORED AS LANCE in the statement",
                ));
            };
            let end = end + "LANCE".len();
            return Ok(Some(format!("{} {}", &sql[..start], &sql[end..])));
        }
    }
    Ok(None)
}

/// A string option value: a quoted string or a bare word.
fn option_text(value: &datafusion::sql::sqlparser::ast::Expr) -> String {
    use datafusion::sql::sqlparser::ast::{Expr as SqlExpr, Value};
    match value {
        SqlExpr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => s.clone(),
            other => other.to_string(),
        },
        SqlExpr::Identifier(ident) => ident.value.clone(),
        other => other.to_string(),
    }
}

impl QueryEngine {
    /// `CREATE TABLE ... STORED AS LANCE ...` (see the module docs), given `sql` with the
    /// `STORED AS LANCE` clause removed: plans the rest as `CREATE TABLE`, then writes the
    /// query's rows (or none) as a new Lance dataset and records the table. Returns the rows
    /// written.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for another statement than `CREATE TABLE`, `OR REPLACE`,
    /// `TEMPORARY`, primary keys, unknown `WITH` options or metrics, or no vector-capable
    /// schema; catalog `TableExists` (without `IF NOT EXISTS`); DataFusion planning errors.
    pub(super) async fn create_lance_table(
        &self,
        sql: &str,
        default_schema: &lakehouse_catalog::SchemaName,
    ) -> Result<i64> {
        use datafusion::logical_expr::{DdlStatement, LogicalPlan};
        use datafusion::sql::parser::Statement as DFStatement;
        use datafusion::sql::sqlparser::ast::{CreateTableOptions, SqlOption, Statement};
        let not_create =
            || Error::invalid("STORED AS LANCE belongs to CREATE TABLE ... [AS SELECT ...]");
        let DFStatement::Statement(statement) = self.parse(sql)? else {
            return Err(not_create());
        };
        let Statement::CreateTable(mut create) = *statement else {
            return Err(not_create());
        };
        if create.or_replace {
            return Err(Error::invalid(
                "CREATE OR REPLACE is not supported for Lance tables yet; DROP TABLE, then CREATE",
            ));
        }
        let options = match std::mem::replace(&mut create.table_options, CreateTableOptions::None) {
            CreateTableOptions::None => Vec::new(),
            CreateTableOptions::With(o)
            | CreateTableOptions::Options(o)
            | CreateTableOptions::Plain(o)
            | CreateTableOptions::TableProperties(o) => o,
        };
        let mut declared = LanceCreate::default();
        for option in options {
            let SqlOption::KeyValue { key, value } = option else {
                return Err(Error::invalid(format!(
                    "STORED AS LANCE WITH takes key = 'value' settings, not {option}"
                )));
            };
            match key.value.to_ascii_lowercase().as_str() {
                "metric" => {
                    declared.metric = option_text(&value)
                        .parse()
                        .map_err(|e: String| Error::invalid(format!("metric: {e}")))?;
                }
                "model" => declared.model = Some(option_text(&value)),
                other => {
                    return Err(Error::invalid(format!(
                        "unknown Lance table option {other:?}; the options are metric and model"
                    )));
                }
            }
        }
        if let Some(model) = &declared.model {
            self.embedding_models()
                .get(Some(model))
                .map_err(|e| Error::invalid(format!("model: {e}")))?;
        }
        let pins = super::Pins::default();
        let ctx = self.session(default_schema, pins.clone(), false).await?;
        let statement = DFStatement::Statement(Box::new(Statement::CreateTable(create)));
        let plan = super::statement_to_plan(&ctx.state(), statement, &pins).await?;
        let LogicalPlan::Ddl(DdlStatement::CreateMemoryTable(create)) = plan else {
            return Err(not_create());
        };
        if create.temporary {
            return Err(Error::invalid("temporary tables are not supported"));
        }
        if !create.constraints.is_empty() {
            return Err(Error::invalid(
                "Lance tables take no PRIMARY KEY or UNIQUE constraints",
            ));
        }
        let table = super::update::resolve_table(&create.name, default_schema)?;
        match self.catalog().table(&table).await {
            Ok(_) if create.if_not_exists => return Ok(0),
            Ok(_) => return Err(CatalogError::TableExists(table).into()),
            Err(CatalogError::TableNotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
        let physical = ctx.state().create_physical_plan(&create.input).await?;
        let schema = physical.schema();
        let stream = datafusion::physical_plan::execute_stream(physical, ctx.task_ctx())?;
        let rows = self
            .write_lance(
                &table,
                WriteMode::Create,
                None,
                Some(declared),
                &schema,
                stream,
            )
            .await?;
        tracing::info!(%table, rows, "created Lance table");
        Ok(rows as i64)
    }
}

/// A DataFusion error from a stream of `Result<RecordBatch, E>` (ingest decoding errors).
pub fn to_datafusion(e: impl std::error::Error + Send + Sync + 'static) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

#[cfg(test)]
mod tests {
    use datafusion::sql::sqlparser::dialect::GenericDialect;

    use super::strip_stored_as_lance;

    fn strip(sql: &str) -> Option<String> {
        strip_stored_as_lance(sql, &GenericDialect {}).unwrap()
    }

    #[test]
    fn the_clause_is_cut_only_at_the_top_level_of_a_create() {
        assert_eq!(
            strip("CREATE TABLE t stored  as\nLance AS SELECT 1").as_deref(),
            Some("CREATE TABLE t   AS SELECT 1")
        );
        assert_eq!(
            strip("create table t (v FLOAT[3]) STORED AS LANCE WITH (metric = 'l2')").as_deref(),
            Some("create table t (v FLOAT[3])   WITH (metric = 'l2')")
        );
        // Inside strings, quoted names, comments and parentheses the words do not count.
        for sql in [
            "SELECT 'STORED AS LANCE'",
            "INSERT INTO t SELECT 1 AS stored",
            "CREATE TABLE t AS SELECT 'x STORED AS LANCE' AS s",
            "CREATE TABLE t AS SELECT 1 -- STORED AS LANCE",
            "CREATE TABLE t AS SELECT 1 AS \"STORED\"",
            "CREATE TABLE t AS SELECT * FROM (SELECT 1 AS stored) AS lance",
            "CREATE TABLE t STORED AS PARQUET AS SELECT 1",
        ] {
            assert_eq!(strip(sql), None, "{sql}");
        }
        // SQL that does not tokenize is left for the parser to report.
        assert_eq!(
            strip("CREATE TABLE t STORED AS LANCE AS SELECT 'open"),
            None
        );
    }
}
