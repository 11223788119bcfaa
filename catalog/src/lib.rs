//! The Lakehouse catalog: the sole metadata authority, kept only in object storage.
//!
//! A catalog (Flight SQL catalog name [`CATALOG_NAME`]) holds schemas; a schema holds tables;
//! each table is a sequence of immutable, numbered versions. A version is defined by one JSON
//! [`Manifest`] listing its Parquet data files, Arrow schema, schema fingerprint, row and byte
//! totals, creation time and the [`Operation`] that made it. The on-storage layout is in
//! [`layout`] and `docs/storage-layout.md`; the commit protocol in [`Catalog`].
//!
//! This crate knows no SQL engine: the DataFusion adapter lives in the server.

pub mod cache;
pub mod catalog;
pub mod deletion;
pub mod durable;
pub mod error;
pub mod history;
pub mod ingest;
pub mod layout;
pub mod maintenance;
pub mod manifest;
pub mod name;
pub mod statistics;
pub mod storage;
pub mod traced;
pub mod writer;

pub use catalog::{
    CATALOG_NAME, COMMIT_CONFLICTS_METRIC, COMMITS_METRIC, Catalog, Change, CleanupReport,
    CommitCheck, CommitScope, Committed, FileChange, WriteMode, as_user, commit_scope, commit_user,
    in_scope, note_commit,
};
pub use deletion::{
    LiveRows, RoaringTreemap, live_selection, read_deletion_vector, read_live_rows,
    write_deletion_vector,
};
pub use error::{Error, Result};
pub use history::AsOf;
pub use ingest::{
    FileFormat, FileIngest, IngestOutcome, IngestReport, parse_schema_overrides, read_file,
};
pub use maintenance::{CompactionOptions, CompactionReport, VacuumReport};
pub use manifest::{
    DataFile, DeletionVector, LanceTable, Manifest, Operation, SourceFile, TableSchema,
    VectorColumn, VectorMetric,
};
pub use name::{DEFAULT_SCHEMA, SchemaName, TableName, TableRef, Version};
pub use storage::StorageLocation;
pub use writer::{DataFileWriter, normalize_schema};
