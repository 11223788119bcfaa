//! The SQL engine: one DataFusion session per request over the catalog adapter.
//!
//! [`QueryEngine::plan`] parses, plans and optimises a query without running it (GetFlightInfo
//! and GetSchema use it); [`PlannedQuery::execute`] streams the result (DoGet). Planning records
//! the table versions it resolved ([`Pins`]); re-planning with those pins in DoGet reads exactly
//! the same versions.

pub mod cache;
pub mod catalog_adapter;
pub mod dialect;
pub mod documents;
pub mod history;
pub mod limits;
pub mod params;
pub mod positions;
pub mod statement;
pub mod table;
pub mod tables_table;
pub mod time_travel;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, Schema, SchemaRef};
use datafusion::catalog::{CatalogProviderList, MemoryCatalogProviderList};
use datafusion::error::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::execution::memory_pool::{FairSpillPool, TrackConsumersPool};
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::execution::session_state::{SessionState, SessionStateBuilder};
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::prelude::{SQLOptions, SessionConfig, SessionContext};
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::Statement as SqlStatement;
use futures::StreamExt;
use lakehouse_catalog::writer::normalize_type;
use lakehouse_catalog::{CATALOG_NAME, Catalog, SchemaName, TableRef};
use serde::{Deserialize, Serialize};

pub use catalog_adapter::{Pins, TablePin};
pub use statement::Statement;

use crate::error::{Error, Result};

/// Where the catalog's object store is registered in every session's runtime; manifest file
/// paths resolve against it.
pub const STORE_URL: &str = "lakehouse://root";

/// Query settings (the `[query]` table of the config file).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueryOptions {
    /// Partitions each query runs on; default: the number of CPU cores.
    pub target_partitions: Option<usize>,
    /// Rows per record batch inside the engine; default 8192.
    pub batch_size: Option<usize>,
    /// Queries (and data-changing statements) running at once; more wait for a slot
    /// (default [`limits::DEFAULT_MAX_CONCURRENT_QUERIES`]).
    pub max_concurrent_queries: Option<usize>,
    /// Seconds a query waits for a slot before `ResourceExhausted` (default
    /// [`limits::DEFAULT_QUEUE_TIMEOUT_SECS`]; 0: refuse at once when all are taken).
    pub queue_timeout_secs: Option<f64>,
    /// Seconds a query may run, from the start of its execution, before it is stopped with
    /// `DeadlineExceeded` (default: no limit).
    pub timeout_secs: Option<f64>,
    /// Largest result a query may send, in bytes of Flight data; larger ones are stopped with
    /// `ResourceExhausted` (default: no limit).
    pub max_result_bytes: Option<u64>,
    /// Memory all queries together may use for operator state, in bytes (DataFusion's
    /// `FairSpillPool`): sorts, aggregations and joins that can spill to disk do so beyond it;
    /// others fail with `ResourceExhausted` (default: no limit).
    pub memory_limit_bytes: Option<u64>,
    /// Directory for spill files (default: the system temp directory).
    pub spill_dir: Option<std::path::PathBuf>,
    /// Any DataFusion option by its key, e.g. `"datafusion.optimizer.max_passes" = "5"`;
    /// applied last.
    pub datafusion: BTreeMap<String, String>,
}

/// What one request asks of planning, from the client's headers (see
/// `crate::flight::SCHEMA_HEADER` and `crate::flight::DISTRIBUTED_HEADER`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestScope {
    /// The schema unqualified table names resolve in.
    pub default_schema: SchemaName,
    /// Whether the query may run over the workers when the server has some (default `true`;
    /// `false` plans it on this server alone, as a server without workers does).
    pub distributed: bool,
}

impl RequestScope {
    /// Unqualified names in `default_schema`; distribution allowed.
    pub fn new(default_schema: SchemaName) -> Self {
        Self {
            default_schema,
            distributed: true,
        }
    }
}

/// A planned query, ready to stream.
pub struct PlannedQuery {
    ctx: SessionContext,
    plan: Arc<dyn ExecutionPlan>,
    /// The plan's schema with every type replaced by its [`wire_type`]; `None` when equal.
    wire_schema: Option<SchemaRef>,
    /// Table versions the plan reads, by table and `AS OF`.
    pub pins: Vec<((TableRef, lakehouse_catalog::AsOf), TablePin)>,
    /// The statement's text with its version clauses resolved (`t@v3`, see
    /// [`time_travel`]), when it had any: what a ticket must carry instead of the text sent.
    pub resolved_sql: Option<String>,
}

impl PlannedQuery {
    /// The exact schema of the result stream: the plan's schema with no view or dictionary
    /// types ([`wire_type`]); names, nullability and metadata unchanged.
    pub fn schema(&self) -> SchemaRef {
        self.wire_schema
            .clone()
            .unwrap_or_else(|| self.plan.schema())
    }

    /// Whether the plan runs over workers (its root is datafusion-distributed's
    /// `DistributedExec`).
    pub fn is_distributed(&self) -> bool {
        crate::distributed::is_distributed(&self.plan)
    }

    /// The physical plan that [`PlannedQuery::execute`] runs.
    pub fn physical_plan(&self) -> &Arc<dyn ExecutionPlan> {
        &self.plan
    }

    /// Starts executing; batches are produced as the stream is polled.
    ///
    /// # Errors
    /// DataFusion errors raised when the execution starts.
    pub fn execute(&self) -> Result<SendableRecordBatchStream> {
        let stream =
            datafusion::physical_plan::execute_stream(Arc::clone(&self.plan), self.ctx.task_ctx())?;
        let Some(wire) = self.wire_schema.clone() else {
            return Ok(stream);
        };
        // Cast at the wire, batch by batch, rather than adding a projection to the plan: the
        // plan stays exactly what DataFusion's optimizer produced.
        let target = Arc::clone(&wire);
        let cast = stream.map(move |batch| {
            let batch = batch?;
            let columns = batch
                .columns()
                .iter()
                .zip(target.fields())
                .map(|(column, field)| {
                    if column.data_type() == field.data_type() {
                        Ok(Arc::clone(column))
                    } else {
                        datafusion::arrow::compute::cast(column, field.data_type())
                    }
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(RecordBatch::try_new(Arc::clone(&target), columns)?)
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(wire, cast)))
    }
}

/// Builds sessions over the catalog. Cheap to share; a clone (for a spawned task) shares the
/// catalog, limits and models.
#[derive(Clone)]
pub struct QueryEngine {
    catalog: Arc<Catalog>,
    template: SessionState,
    store_url: ObjectStoreUrl,
    admission: Arc<limits::Admission>,
    models: Arc<lakehouse_vector::embedding::EmbeddingModels>,
    chat: Arc<lakehouse_vector::chat::ChatModels>,
    ai_max_rows: usize,
    maintenance: Arc<statement::maintenance::MaintenanceOptions>,
    compactions: Arc<statement::maintenance::Compactions>,
    data_cache: lakehouse_catalog::cache::RangeCache,
    /// Workers eligible queries are distributed to; `None`: every query runs here.
    distribution: Option<crate::distributed::Distribution>,
}

impl QueryEngine {
    /// An engine over `catalog` with `options`, the embedding models of `embedding`, the
    /// chat models of `chat`, the compaction/vacuum settings of `maintenance` and the hot
    /// cache of `cache`.
    ///
    /// # Errors
    /// [`Error::Config`] for an unknown or invalid DataFusion option, or a `[cache]` disk tier
    /// that cannot be opened.
    pub async fn new(
        catalog: Arc<Catalog>,
        options: &QueryOptions,
        embedding: &lakehouse_vector::embedding::EmbeddingConfig,
        chat: &lakehouse_vector::chat::ChatConfig,
        maintenance: &statement::maintenance::MaintenanceOptions,
        cache: &cache::CacheOptions,
    ) -> Result<Self> {
        let models = lakehouse_vector::embedding::EmbeddingModels::new(
            &embedding.models,
            embedding.default_model.as_deref(),
        )?;
        let mut config = SessionConfig::new()
            .with_information_schema(true)
            .with_create_default_catalog_and_schema(false)
            .with_default_catalog_and_schema(CATALOG_NAME, lakehouse_catalog::DEFAULT_SCHEMA);
        if let Some(n) = options.target_partitions {
            config = config.with_target_partitions(n);
        }
        if let Some(n) = options.batch_size {
            config = config.with_batch_size(n);
        }
        // No view types on the wire: the JDBC driver cannot read them.
        config.options_mut().sql_parser.map_string_types_to_utf8view = false;
        if let Some(limit) = options.memory_limit_bytes {
            // Each sort sets aside this much for merging its spill files (default 10 MB); keep
            // it to a quarter of a small pool, so sorts can still spill there. An explicit
            // `datafusion.execution.sort_spill_reservation_bytes` below wins.
            let execution = &mut config.options_mut().execution;
            let quarter = usize::try_from(limit / 4).unwrap_or(usize::MAX);
            execution.sort_spill_reservation_bytes =
                execution.sort_spill_reservation_bytes.min(quarter);
        }
        for (key, value) in &options.datafusion {
            config
                .options_mut()
                .set(key, value)
                .map_err(|e| Error::Config(format!("query.datafusion.{key}: {e}")))?;
        }
        let mut runtime = RuntimeEnvBuilder::new();
        if let Some(bytes) = options.memory_limit_bytes {
            let bytes = usize::try_from(bytes)
                .map_err(|_| Error::Config("query.memory_limit_bytes is too large".into()))?;
            // Track the largest consumers so the error names what used the memory.
            let pool = TrackConsumersPool::new(
                FairSpillPool::new(bytes),
                std::num::NonZeroUsize::new(3).expect("non-zero"),
            );
            runtime = runtime.with_memory_pool(Arc::new(pool));
        }
        if let Some(dir) = &options.spill_dir {
            runtime = runtime.with_temp_file_path(dir);
        }
        let runtime: Arc<RuntimeEnv> = runtime
            .build_arc()
            .map_err(|e| Error::Config(e.to_string()))?;
        let store_url = ObjectStoreUrl::parse(STORE_URL).expect("valid url");
        // Queries read Parquet data and deletion vectors through the hot cache.
        let disk = cache.disk_tier().map_err(Error::Config)?;
        let range_cache =
            lakehouse_catalog::cache::RangeCache::open(cache.memory_bytes(), disk.as_ref())
                .await
                .map_err(|e| Error::Config(format!("cache.disk_path: {e}")))?;
        runtime.register_object_store(
            store_url.as_ref(),
            Arc::new(lakehouse_catalog::cache::CachingStore::new(
                Arc::clone(catalog.store()),
                range_cache.clone(),
            )),
        );
        let (lance_index, lance_metadata) = cache.lance_bytes();
        lakehouse_vector::table::size_lance_caches(lance_index, lance_metadata);
        let mut template = SessionStateBuilder::new()
            .with_config(config)
            .with_runtime_env(runtime)
            .with_default_features()
            .build();
        // Registered once; every session starts from the template.
        let models = Arc::new(models);
        let chat_models = Arc::new(lakehouse_vector::chat::ChatModels::new(chat)?);
        lakehouse_vector::register_functions(&mut template, &models, &chat_models)?;
        template.register_udtf(
            cache::STATS_NAME,
            Arc::new(cache::CacheStatsFunction::new(range_cache.clone())),
        );
        template.register_udtf(
            history::NAME,
            Arc::new(history::TableHistoryFunction::new(Arc::clone(&catalog))),
        );
        template.register_udtf(
            tables_table::NAME,
            Arc::new(tables_table::LakehouseTablesFunction::new(Arc::clone(
                &catalog,
            ))),
        );
        Ok(Self {
            catalog,
            template,
            store_url,
            admission: Arc::new(limits::Admission::new(options)?),
            models,
            chat: chat_models,
            ai_max_rows: chat.ai_max_rows,
            maintenance: Arc::new(maintenance.clone()),
            compactions: Arc::default(),
            data_cache: range_cache,
            distribution: None,
        })
    }

    /// This engine distributing eligible queries as `options` say
    /// ([`crate::distributed::Distribution`]).
    ///
    /// # Errors
    /// [`Error::Config`] for a bad worker URL, or workers without a secret.
    pub fn with_distribution(
        mut self,
        options: &crate::distributed::DistributedOptions,
    ) -> Result<Self> {
        self.distribution =
            crate::distributed::Distribution::new(options, &self.template, self.catalog.id())?;
        self.template.register_udtf(
            crate::distributed::workers_table::NAME,
            Arc::new(crate::distributed::workers_function(
                options,
                self.distribution.as_ref(),
            )?),
        );
        Ok(self)
    }

    /// This engine with `audit_log()` reading `log` (`None`: the log is off, and the function
    /// says so).
    pub fn with_audit(mut self, log: Option<Arc<crate::observability::audit::AuditLog>>) -> Self {
        self.template.register_udtf(
            crate::observability::audit_table::NAME,
            Arc::new(crate::observability::audit_table::AuditLogFunction::new(
                log,
            )),
        );
        self
    }

    /// The runtime every session uses: the object store under [`STORE_URL`], the memory pool,
    /// the spill directory (a worker executes its tasks with it).
    pub fn runtime_env(&self) -> Arc<RuntimeEnv> {
        Arc::clone(self.template.runtime_env())
    }

    /// Compaction and vacuum settings (`[maintenance]`).
    pub fn maintenance(&self) -> &statement::maintenance::MaintenanceOptions {
        &self.maintenance
    }

    fn compactions(&self) -> &statement::maintenance::Compactions {
        &self.compactions
    }

    /// The catalog this engine reads.
    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }

    /// The configured embedding models (`[embedding]`).
    pub fn embedding_models(&self) -> &Arc<lakehouse_vector::embedding::EmbeddingModels> {
        &self.models
    }

    /// Admission control and per-query limits.
    pub fn admission(&self) -> &Arc<limits::Admission> {
        &self.admission
    }

    /// The hot cache queries read Parquet data and deletion vectors through.
    pub fn data_cache(&self) -> &lakehouse_catalog::cache::RangeCache {
        &self.data_cache
    }

    /// A session whose unqualified names resolve in `default_schema`. With `listing`, the
    /// synchronous name lists (information_schema) are read from storage first.
    ///
    /// # Errors
    /// Catalog errors while listing.
    pub async fn session(
        &self,
        default_schema: &SchemaName,
        pins: Pins,
        listing: bool,
    ) -> Result<SessionContext> {
        let (schemas, tables) = if listing {
            let listing = self.catalog.list().await?;
            let schemas = listing.iter().map(|(s, _)| s.clone()).collect();
            let tables = listing
                .into_iter()
                .map(|(schema, manifests)| {
                    let names = manifests
                        .iter()
                        .map(|m| m.table.table.to_string())
                        .collect();
                    (schema, names)
                })
                .collect();
            (schemas, tables)
        } else {
            (vec![default_schema.clone()], HashMap::new())
        };
        let session_tables = Arc::new(lakehouse_vector::session::SessionTables::default());
        let resolver = Arc::new(catalog_adapter::Resolver::new(
            Arc::clone(&self.catalog),
            pins,
            self.store_url.clone(),
            Arc::clone(&session_tables),
        ));
        let provider =
            catalog_adapter::LakehouseCatalogProvider::new(Arc::clone(&resolver), schemas, tables);
        let catalogs = MemoryCatalogProviderList::new();
        catalogs.register_catalog(CATALOG_NAME.to_string(), Arc::new(provider));
        let mut config = self
            .template
            .config()
            .clone()
            .with_extension(session_tables)
            .with_extension(resolver);
        config.options_mut().catalog.default_schema = default_schema.to_string();
        let state = SessionStateBuilder::new_from_existing(self.template.clone())
            .with_config(config)
            .with_catalog_list(Arc::new(catalogs) as Arc<dyn CatalogProviderList>)
            .build();
        let ctx = SessionContext::new_with_state(state);
        // Per session, so each query counts its own ai() and rerank() rows.
        let chat_rows = lakehouse_vector::ai::ChatRowLimit::new(self.ai_max_rows);
        ctx.register_udf(lakehouse_vector::ai::AiFunction::udf(
            Arc::clone(&self.chat),
            chat_rows.clone(),
        ));
        ctx.register_udf(lakehouse_vector::rerank::RerankFunction::udf(
            Arc::clone(&self.chat),
            chat_rows,
        ));
        Ok(ctx)
    }

    /// Parses one statement, with `?` placeholders numbered `$1..$n` first.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for SQL that does not parse or holds several statements.
    fn parse(&self, sql: &str) -> Result<DFStatement> {
        let sql = params::number_placeholders(sql, self.dialect()?.as_ref())?;
        let dialect = dialect::VersioningDialect(self.dialect()?);
        let recursion_limit = self.template.config().options().sql_parser.recursion_limit;
        let mut statements = datafusion::sql::parser::DFParserBuilder::new(sql.as_str())
            .with_dialect(&dialect)
            .with_recursion_limit(recursion_limit)
            .build()?
            .parse_statements()?;
        if statements.len() > 1 {
            return Err(Error::invalid(format!(
                "{} statements given; send one statement per request",
                statements.len()
            )));
        }
        statements
            .pop_front()
            .ok_or_else(|| Error::invalid("no SQL statement given"))
    }

    /// The sqlparser dialect the session parses with (`datafusion.sql_parser.dialect`).
    ///
    /// # Errors
    /// [`Error::Config`] for a dialect sqlparser does not know.
    fn dialect(&self) -> Result<Box<dyn datafusion::sql::sqlparser::dialect::Dialect>> {
        let dialect = self.template.config().options().sql_parser.dialect;
        datafusion::sql::sqlparser::dialect::dialect_from_str(dialect)
            .ok_or_else(|| Error::Config(format!("unsupported SQL dialect {dialect}")))
    }

    /// Plans a query statement to a logical plan in a fresh session (see
    /// [`QueryEngine::plan`]).
    ///
    /// Also answers whether the plan depends on the catalog's listing (information_schema, or a
    /// function that lists tables), which pins do not capture.
    async fn logical(
        &self,
        statement: &Statement,
        default_schema: &SchemaName,
        pins: &Pins,
    ) -> Result<(SessionContext, LogicalPlan, bool)> {
        let statement = match statement.parsed() {
            Some(s) => s.clone(),
            None => return Err(ensure_query_error("CREATE TABLE")),
        };
        ensure_query(&statement)?;
        let calls = table_function_calls(&statement);
        let references = self.template.resolve_table_references(&statement)?;
        let listing = references
            .iter()
            .any(|r| r.schema() == Some("information_schema"))
            || calls.iter().any(|c| {
                lakehouse_vector::LISTING_FUNCTIONS
                    .iter()
                    .chain(&[tables_table::NAME])
                    .any(|f| c.name.eq_ignore_ascii_case(f))
            });
        let ctx = self.session(default_schema, pins.clone(), listing).await?;
        let logical = statement_to_plan(&ctx.state(), statement, pins).await?;
        SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false)
            .verify_plan(&logical)?;
        Ok((ctx, logical, listing))
    }

    /// Plans `sql` (a query, `EXPLAIN`, or `SHOW`) without running it, with `parameters` (a
    /// one-row batch, see [`params`]) bound to its `?`/`$n` placeholders.
    ///
    /// Statements that change anything (DDL, DML, `SET`) are refused here. The result is
    /// wire-compatible: view types are sent as their plain forms and dictionaries as their value
    /// types ([`PlannedQuery::schema`]), so every Flight SQL client can read it.
    ///
    /// # Errors
    /// [`Error::DataFusion`] for SQL that does not parse or plan (mapped to `InvalidArgument`),
    /// a missing table (`NotFound`), or a refused statement kind; [`Error::InvalidArgument`]
    /// for parameters that are missing, surplus or of an unusable type.
    pub async fn plan(
        &self,
        sql: &str,
        scope: &RequestScope,
        pins: Pins,
        parameters: Option<&RecordBatch>,
    ) -> Result<PlannedQuery> {
        let statement = self.statement(sql)?;
        self.plan_statement(&statement, scope, pins, parameters)
            .await
    }

    /// [`QueryEngine::plan`] for a statement already parsed by [`QueryEngine::statement`].
    ///
    /// # Errors
    /// As [`QueryEngine::plan`].
    pub async fn plan_statement(
        &self,
        statement: &Statement,
        scope: &RequestScope,
        pins: Pins,
        parameters: Option<&RecordBatch>,
    ) -> Result<PlannedQuery> {
        use tracing::Instrument;
        let started = std::time::Instant::now();
        let planned = async {
            let (ctx, logical, _) = self
                .logical(statement, &scope.default_schema, &pins)
                .await?;
            self.physical(ctx, logical, parameters, &pins, scope.distributed)
                .await
        }
        .instrument(tracing::info_span!("plan"))
        .await;
        metrics::histogram!(crate::observability::metrics::PLANNING_SECONDS)
            .record(started.elapsed().as_secs_f64());
        planned
    }

    /// Binds `parameters` into `logical` (or refuses unbound placeholders) and creates the
    /// physical plan: with `distributed`, over the workers when there are any and the plan is
    /// eligible ([`crate::distributed::Distribution::eligible`]).
    async fn physical(
        &self,
        ctx: SessionContext,
        mut logical: LogicalPlan,
        parameters: Option<&RecordBatch>,
        pins: &Pins,
        distributed: bool,
    ) -> Result<PlannedQuery> {
        match parameters {
            Some(batch) => {
                let values = params::param_values(batch, &logical)?;
                logical = logical.with_param_values(values)?;
            }
            None => {
                let unbound = params::unbound(&logical)?;
                if !unbound.is_empty() {
                    return Err(Error::invalid(format!(
                        "the statement has parameters ({}); bind their values (DoPut on the \
                         prepared statement) before executing it",
                        unbound.join(", ")
                    )));
                }
            }
        }
        let ctx = match self.distribution.as_ref().filter(|_| distributed) {
            Some(distribution) => {
                if let Some(explained) = distribution.explain(&ctx.state(), &logical).await? {
                    logical = explained;
                    ctx
                } else if let Some(state) = distribution.distribute(ctx.state(), &logical)? {
                    SessionContext::new_with_state(state)
                } else {
                    ctx
                }
            }
            None => ctx,
        };
        let plan = ctx.state().create_physical_plan(&logical).await?;
        tracing::debug!(
            distributed = crate::distributed::is_distributed(&plan),
            "planned"
        );
        let wire_schema = wire_schema(&plan.schema());
        Ok(PlannedQuery {
            ctx,
            plan,
            wire_schema,
            pins: pins.used(),
            resolved_sql: pins.resolved_sql(),
        })
    }

    /// The result schema and parameter schema of `sql`, for a prepared statement. With no
    /// parameters the result schema is exactly what execution streams; with parameters it is
    /// the logical plan's schema in wire types (nullability may differ from execution).
    ///
    /// # Errors
    /// As [`QueryEngine::plan`].
    pub async fn describe(&self, sql: &str, scope: &RequestScope) -> Result<Described> {
        let default_schema = &scope.default_schema;
        let statement = self.statement(sql)?;
        if !statement.is_query() {
            return Ok(Described {
                dataset_schema: update_count_schema(),
                parameter_schema: self
                    .change_parameter_schema(&statement, default_schema)
                    .await?,
                planned: None,
            });
        }
        let pins = Pins::default();
        let (ctx, logical, listing) = self.logical(&statement, default_schema, &pins).await?;
        let parameter_schema = params::parameter_schema(&logical)?;
        if parameter_schema.fields().is_empty() {
            let reusable = !listing && !calls_changing_functions(&logical)?;
            let planned = self
                .physical(ctx, logical, None, &pins, scope.distributed)
                .await?;
            return Ok(Described {
                dataset_schema: planned.schema(),
                parameter_schema,
                planned: reusable.then_some(planned),
            });
        }
        let schema: SchemaRef = Arc::new(logical.schema().as_arrow().clone());
        Ok(Described {
            dataset_schema: wire_schema(&schema).unwrap_or(schema),
            parameter_schema,
            planned: None,
        })
    }

    /// Whether `planned` still reads the newest version of every table it read at its newest
    /// version (`AS OF` pins never move): for each such table, the catalog's head (checked
    /// against storage, [`Catalog::table`]) is the pinned version and, for a Lance table, the
    /// dataset's latest version is the pinned Lance version. A plan that is current answers
    /// exactly what planning again would.
    ///
    /// # Errors
    /// The catalog's storage and manifest errors; Lance's when the latest version cannot be
    /// read. A table dropped since is not an error: the plan is not current.
    pub async fn is_current(&self, planned: &PlannedQuery) -> Result<bool> {
        let tables = planned
            .ctx
            .state()
            .config()
            .get_extension::<lakehouse_vector::session::SessionTables>();
        for ((table, as_of), pin) in &planned.pins {
            if *as_of != lakehouse_catalog::AsOf::Latest {
                continue;
            }
            match self.catalog.table(table).await {
                Ok(head) if head.version == pin.version => {}
                Ok(_) | Err(lakehouse_catalog::Error::TableNotFound(_)) => return Ok(false),
                Err(e) => return Err(e.into()),
            }
            if let Some(version) = pin.lance_version {
                let dataset = tables
                    .as_ref()
                    .and_then(|t| t.get(table))
                    .and_then(|resolved| resolved.dataset);
                let Some(dataset) = dataset else {
                    return Ok(false);
                };
                let latest = dataset
                    .latest_version_id()
                    .await
                    .map_err(lakehouse_vector::Error::from)?;
                if latest != version {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }
}

/// The result of a data-changing statement run as a query: one row, `count: UInt64` (rows
/// written), as DataFusion's DML plans report it.
pub fn update_count_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![datafusion::arrow::datatypes::Field::new(
        "count",
        DataType::UInt64,
        false,
    )]))
}

/// The query whose answer is [`update_count_schema`] with `rows`.
pub fn update_count_query(rows: i64) -> String {
    format!("SELECT arrow_cast({rows}, 'UInt64') AS count")
}

/// Whether `plan` (before optimization) calls a scalar function that is not immutable, such as
/// `now()` (stable: the optimizer folds it to the planning instant) or `random()`: such a plan
/// is not run later in place of planning again.
///
/// # Errors
/// None in practice (the walk does not fail); DataFusion's tree-walk error type.
fn calls_changing_functions(plan: &LogicalPlan) -> Result<bool> {
    use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
    use datafusion::logical_expr::{Expr, Volatility};
    let mut found = false;
    plan.apply_with_subqueries(|node| {
        node.apply_expressions(|expr| {
            expr.apply(|e| {
                if let Expr::ScalarFunction(f) = e
                    && f.func.signature().volatility != Volatility::Immutable
                {
                    found = true;
                    return Ok(TreeNodeRecursion::Stop);
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })
    })?;
    Ok(found)
}

/// What [`QueryEngine::describe`] reports for a prepared statement.
pub struct Described {
    /// Schema of the result.
    pub dataset_schema: SchemaRef,
    /// Parameters `$1..$n` with their inferred types ([`params::parameter_schema`]).
    pub parameter_schema: SchemaRef,
    /// The plan made to learn `dataset_schema`, for a query without parameters whose plan
    /// pins capture everything it read (not a listing): it may run instead of planning again
    /// while [`QueryEngine::is_current`] holds.
    pub planned: Option<PlannedQuery>,
}

/// DataFusion's `statement_to_plan`, except that a table it could not resolve is reported as
/// the catalog's `TableNotFound` (NotFound for the client): DataFusion reports it as a planning
/// error, and the catalog adapter recorded in `pins` which lookups found nothing.
async fn statement_to_plan(
    state: &SessionState,
    statement: DFStatement,
    pins: &Pins,
) -> Result<LogicalPlan> {
    let mut statement = statement;
    if time_travel::rewrite_versions(state, &mut statement).await? {
        pins.set_resolved_sql(statement.to_string());
    }
    resolve_function_tables(state, &statement).await?;
    match state.statement_to_plan(statement).await {
        Ok(plan) => Ok(plan),
        // A name that resolved to no table explains a planning error — unless it is a table
        // function's name (DataFusion looks those up as tables too).
        Err(e) => match (
            e.find_root(),
            pins.missing()
                .into_iter()
                .find(|t| !state.table_functions().contains_key(t.table.as_str())),
        ) {
            (DataFusionError::Plan(_), Some(table)) => {
                Err(lakehouse_catalog::Error::TableNotFound(table).into())
            }
            _ => Err(e.into()),
        },
    }
}

/// Resolves, with the session's [`catalog_adapter::Resolver`], the tables that the table
/// functions called in `statement` read (they look them up synchronously while planning,
/// [`lakehouse_vector::session`]): the table argument of each search function and of
/// `table_history`, every Lance table for the functions that list them.
///
/// # Errors
/// Storage, manifest and Lance errors while resolving; a missing table is left for the
/// function to report.
async fn resolve_function_tables(state: &SessionState, statement: &DFStatement) -> Result<()> {
    let calls = table_function_calls(statement);
    let Some(resolver) = state.config().get_extension::<catalog_adapter::Resolver>() else {
        return Ok(());
    };
    let default_schema = SchemaName::new(state.config().options().catalog.default_schema.as_str())?;
    for call in &calls {
        if lakehouse_vector::ALL_LANCE_TABLES_FUNCTIONS
            .iter()
            .any(|f| call.name.eq_ignore_ascii_case(f))
        {
            resolver.resolve_lance_tables().await?;
            continue;
        }
        let Some((_, position)) = lakehouse_vector::TABLE_SEARCH_FUNCTIONS
            .iter()
            .chain(&[(history::NAME, 0)])
            .find(|(f, _)| call.name.eq_ignore_ascii_case(f))
        else {
            continue;
        };
        if let Some(Some(name)) = call.args.get(*position)
            && let Ok(table) = TableRef::parse(name, &default_schema)
        {
            resolver.resolve(&table).await?;
        }
    }
    Ok(())
}

/// One table-function call in a statement's FROM clauses: the function's name and, per
/// argument, its text when it is a string literal.
#[derive(Debug)]
struct TableFunctionCall {
    name: String,
    args: Vec<Option<String>>,
}

/// The table-function calls anywhere in `statement` (subqueries and joins included), found by
/// sqlparser's AST visitor.
fn table_function_calls(statement: &DFStatement) -> Vec<TableFunctionCall> {
    use datafusion::sql::sqlparser::ast::{
        Expr as SqlExpr, FunctionArg, FunctionArgExpr, TableFactor, Value, Visit, Visitor,
    };
    use std::ops::ControlFlow;
    struct Calls(Vec<TableFunctionCall>);
    impl Visitor for Calls {
        type Break = ();
        fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
            if let TableFactor::Table {
                name,
                args: Some(args),
                ..
            } = factor
                && let Some(name) = name.0.last().and_then(|p| p.as_ident())
            {
                let args = args
                    .args
                    .iter()
                    .map(|arg| match arg {
                        FunctionArg::Unnamed(FunctionArgExpr::Expr(SqlExpr::Value(v))) => {
                            match &v.value {
                                Value::SingleQuotedString(s) => Some(s.clone()),
                                _ => None,
                            }
                        }
                        _ => None,
                    })
                    .collect();
                self.0.push(TableFunctionCall {
                    name: name.value.clone(),
                    args,
                });
            }
            ControlFlow::Continue(())
        }
    }
    let mut calls = Calls(Vec::new());
    let inner = match statement {
        DFStatement::Statement(s) => Some(s.as_ref()),
        DFStatement::Explain(explain) => match explain.statement.as_ref() {
            DFStatement::Statement(s) => Some(s.as_ref()),
            _ => None,
        },
        _ => None,
    };
    if let Some(s) = inner {
        let _ = s.visit(&mut calls);
    }
    calls.0
}

/// Refuses statements that are not queries before anything is resolved: this path only reads.
fn ensure_query(statement: &DFStatement) -> Result<()> {
    fn allowed(statement: &SqlStatement) -> bool {
        match statement {
            SqlStatement::Query(_)
            | SqlStatement::ExplainTable { .. }
            | SqlStatement::ShowTables { .. }
            | SqlStatement::ShowColumns { .. }
            | SqlStatement::ShowFunctions { .. }
            | SqlStatement::ShowVariable { .. } => true,
            SqlStatement::Explain { statement, .. } => allowed(statement),
            _ => false,
        }
    }
    let ok = match statement {
        DFStatement::Statement(s) => allowed(s),
        DFStatement::Explain(explain) => match explain.statement.as_ref() {
            DFStatement::Statement(s) => allowed(s),
            _ => false,
        },
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        let text = statement.to_string();
        let head: String = text
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ");
        Err(ensure_query_error(&head))
    }
}

fn ensure_query_error(head: &str) -> Error {
    Error::invalid(format!(
        "only queries (SELECT, WITH, VALUES, EXPLAIN, SHOW) can run as a Flight SQL query; \
         got `{head} ...`"
    ))
}

/// The type a column is sent as: no view types ([`normalize_type`]) and dictionaries hydrated
/// to their value type.
pub fn wire_type(data_type: &DataType) -> DataType {
    match data_type {
        DataType::Dictionary(_, value) => wire_type(value),
        other => normalize_type(other),
    }
}

/// `schema` with every field's type replaced by its [`wire_type`]; `None` when nothing changes.
fn wire_schema(schema: &SchemaRef) -> Option<SchemaRef> {
    if schema
        .fields()
        .iter()
        .all(|f| &wire_type(f.data_type()) == f.data_type())
    {
        return None;
    }
    let fields: Vec<_> = schema
        .fields()
        .iter()
        .map(|f| f.as_ref().clone().with_data_type(wire_type(f.data_type())))
        .collect();
    Some(Arc::new(Schema::new_with_metadata(
        fields,
        schema.metadata().clone(),
    )))
}
