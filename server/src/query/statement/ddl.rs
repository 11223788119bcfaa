//! Statements that create or drop things: tables (Parquet, Lance, external), schemas, and
//! Lance indexes.
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

use datafusion::logical_expr::LogicalPlan;
use lakehouse_catalog::{Error as CatalogError, TableRef, VectorMetric, WriteMode};

use super::resolve_object_name;
use super::write::LanceCreate;
use crate::error::{Error, Result};
use crate::query::QueryEngine;

impl QueryEngine {
    /// `CREATE TABLE t (...) PRIMARY KEY (...)`: an empty table whose manifest records the key
    /// (key columns become NOT NULL). Keys are declared on empty tables only; rows come by
    /// INSERT, which checks them.
    pub(super) async fn create_with_key(
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

    /// `CREATE EXTERNAL TABLE t STORED AS PARQUET LOCATION 'url'`: lists the Parquet files at
    /// the location now, reads their schema and row counts from the footers, and registers
    /// them as a read-only table. Nothing is copied; the file list is fixed at registration
    /// (re-register to pick up new files).
    pub(super) async fn create_external(
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
        crate::query::table::ensure_object_store(state.runtime_env(), url.object_store().as_ref())?;
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
                row_groups: Vec::new(),
                deletion_vector: None,
                statistics: Default::default(),
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
        let table = resolve_object_name(&create.table_name, default_schema)?;
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
                let table = resolve_object_name(table, default_schema)?;
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
            let start = crate::query::params::byte_offset(sql, token.span.start);
            let end = crate::query::params::byte_offset(sql, words[i + 2].span.start);
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
    /// `CREATE TABLE ... STORED AS LANCE ...` (see the module docs), given the statement
    /// parsed with the `STORED AS LANCE` clause removed: plans the rest as `CREATE TABLE`, then
    /// writes the query's rows (or none) as a new Lance dataset and records the table. Returns
    /// the rows written.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for `OR REPLACE`, `TEMPORARY`, primary keys, unknown `WITH`
    /// options or metrics, or no vector-capable schema; catalog `TableExists` (without
    /// `IF NOT EXISTS`); DataFusion planning errors.
    pub(super) async fn create_lance_table(
        &self,
        mut create: datafusion::sql::sqlparser::ast::CreateTable,
        default_schema: &lakehouse_catalog::SchemaName,
    ) -> Result<i64> {
        use datafusion::logical_expr::{DdlStatement, LogicalPlan};
        use datafusion::sql::parser::Statement as DFStatement;
        use datafusion::sql::sqlparser::ast::{CreateTableOptions, SqlOption, Statement};
        let not_create =
            || Error::invalid("STORED AS LANCE belongs to CREATE TABLE ... [AS SELECT ...]");
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
        let pins = crate::query::Pins::default();
        let ctx = self.session(default_schema, pins.clone(), false).await?;
        let statement = DFStatement::Statement(Box::new(Statement::CreateTable(create)));
        let plan = crate::query::statement_to_plan(&ctx.state(), statement, &pins).await?;
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
        let table = super::resolve_table(&create.name, default_schema)?;
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
