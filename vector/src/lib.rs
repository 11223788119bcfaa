//! Vector search and AI models for Lakehouse.
//!
//! - [`embedding`]: embedding providers over HTTP (Ollama `/api/embed`, OpenAI-compatible
//!   `/v1/embeddings`), batched, bounded in concurrency, retried with backoff, cached by
//!   (model, text) in a memory-bounded cache.
//! - [`ai`]: the `ai(prompt [, model])` SQL function (registered per query session).
//! - [`chat`]: chat (LLM) providers over HTTP (Ollama `/api/chat`, OpenAI-compatible
//!   `/v1/chat/completions`), bounded in concurrency and retried with backoff.
//! - [`documents`]: text of plain-text, Markdown and HTML documents, and its chunks.
//! - [`ingest`]: chunked, embedded, idempotent document ingest into a Lance document table.
//! - [`table`]: Lance datasets under the catalog's storage root, as DataFusion tables.
//! - [`embed`]: the `embed(text [, model])` SQL function.
//! - [`indexes`]: the `vector_indexes()` SQL table function (the index listing).
//! - [`search`]: the `vector_search`, `text_search` and `hybrid_search` SQL table functions.
//! - [`rag`]: the `rag(question, table [, options])` SQL table function.
//! - [`rerank`]: second-stage reranking by a chat model: the `rerank(query, text [, model])`
//!   SQL function and the `rerank` option of the search functions and `rag`.
//! - [`session`]: the tables one query's session resolved, where the functions find them.
//! - [`nl2sql`]: the `nl2sql(question [, options])` SQL table function (plans, never runs).
//! - [`error`]: the crate's error type.
//!
//! Lance-backed vector tables and the `vector_search` table functions build on these.

pub mod ai;
mod args;
pub mod chat;
pub mod documents;
pub mod embed;
pub mod embedding;
pub mod error;
mod http;
pub mod indexes;
pub mod ingest;
pub mod nl2sql;
mod observe;
pub mod rag;
pub mod rerank;
pub mod search;
pub mod session;
pub mod table;

pub use args::{Deferred, deferred_table, deferred_table_without_arguments};
pub use error::{Error, Result};
pub use observe::{
    INDEX_BUILD_SECONDS_METRIC, INDEX_BUILDS_METRIC, MODEL_CALL_SECONDS_METRIC, MODEL_CALLS_METRIC,
};

use std::sync::Arc;

/// The table functions that search one Lance table named by a string-literal argument, with
/// that argument's position (0-based); the server resolves those tables through the session
/// ([`session::SessionTables`]) before planning a call.
pub const TABLE_SEARCH_FUNCTIONS: [(&str, usize); 4] = [
    ("vector_search", 0),
    ("text_search", 0),
    ("hybrid_search", 0),
    ("rag", 1),
];

/// Table functions that read the session's table names (schema and table lists), so the
/// server builds the session with the catalog's listing when a statement calls one.
pub const LISTING_FUNCTIONS: [&str; 1] = ["nl2sql"];

/// Table functions that read every Lance table, so the server resolves all of them through the
/// session ([`session::SessionTables`]) before planning a call.
pub const ALL_LANCE_TABLES_FUNCTIONS: [&str; 1] = ["vector_indexes"];

/// Registers Lakehouse's SQL functions in `state`: `embed` (scalar, async) and the table
/// functions `vector_search`, `text_search`, `hybrid_search`, `rag`, `nl2sql` and
/// `vector_indexes`, over the Lance tables each session resolved ([`session`]), embedding
/// with `models` and answering (and reranking) with `chat`. (`ai` and `rerank` count rows per
/// query, so the server registers them per session: [`ai::AiFunction::udf`],
/// [`rerank::RerankFunction::udf`].)
///
/// # Errors
/// [`Error::Config`] when DataFusion refuses the registration (not expected).
pub fn register_functions(
    state: &mut datafusion::execution::session_state::SessionState,
    models: &Arc<embedding::EmbeddingModels>,
    chat: &Arc<chat::ChatModels>,
) -> Result<()> {
    use datafusion::execution::FunctionRegistry;
    state
        .register_udf(Arc::new(embed::EmbedFunction::udf(Arc::clone(models))))
        .map_err(|e| Error::Config(format!("registering embed: {e}")))?;
    state.register_udtf(
        "vector_search",
        Arc::new(search::VectorSearchFunction::new(
            Arc::clone(models),
            Arc::clone(chat),
        )),
    );
    state.register_udtf(
        "text_search",
        Arc::new(search::TextSearchFunction::new(Arc::clone(chat))),
    );
    state.register_udtf(
        "hybrid_search",
        Arc::new(search::HybridSearchFunction::new(
            Arc::clone(models),
            Arc::clone(chat),
        )),
    );
    state.register_udtf(
        "rag",
        Arc::new(rag::RagFunction::new(
            search::VectorSearchFunction::new(Arc::clone(models), Arc::clone(chat)),
            search::HybridSearchFunction::new(Arc::clone(models), Arc::clone(chat)),
            Arc::clone(chat),
        )),
    );
    state.register_udtf(
        "nl2sql",
        Arc::new(nl2sql::Nl2SqlFunction::new(Arc::clone(chat))),
    );
    state.register_udtf("vector_indexes", Arc::new(indexes::VectorIndexesFunction));
    Ok(())
}
