//! Integration tests: each starts a real server on 127.0.0.1:0 and talks to it with real
//! Flight SQL clients. One test binary, one module per area.

mod auth;
mod cache;
mod catalog;
mod chat;
mod distributed;
mod documents;
mod embedding;
mod ingest;
mod ingest_file;
mod jdbc;
mod lance;
mod limits;
mod maintenance;
mod metadata;
mod mutations;
mod nl2sql;
mod params;
mod query;
mod rag;
mod snapshots;
mod time_travel;
mod tls;
mod vector_index;
mod vector_search;
mod writes;
