//! Vector search and AI models for Lakehouse.
//!
//! - [`embedding`]: embedding providers over HTTP (Ollama `/api/embed`, OpenAI-compatible
//!   `/v1/embeddings`), batched, bounded in concurrency, retried with backoff, cached by
//!   (model, text) in a memory-bounded cache.
//! - [`table`]: Lance datasets under the catalog's storage root, as DataFusion tables.
//! - [`embed`]: the `embed(text [, model])` SQL function.
//! - [`indexes`]: the `vector_indexes()` SQL table function (the index listing).
//! - [`search`]: the `vector_search` SQL table function.
//! - [`error`]: the crate's error type.
//!
//! Lance-backed vector tables and the `vector_search` table functions build on these.

pub mod embed;
pub mod embedding;
pub mod error;
pub mod indexes;
pub mod search;
pub mod table;

pub use error::{Error, Result};
