//! The catalog's one error type.

use crate::name::{TableRef, Version};

/// Errors of the catalog. Each variant says what went wrong and where; the server maps them to
/// gRPC codes in one place (`lakehouse_server::error`).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A schema or table name is not a valid identifier (see [`crate::name`]).
    #[error("invalid {kind} name {name:?}: {reason}")]
    InvalidName {
        /// "schema" or "table".
        kind: &'static str,
        /// The rejected name.
        name: String,
        /// Why it was rejected.
        reason: &'static str,
    },

    /// The table has no live version (never created, or dropped).
    #[error("table {0} not found")]
    TableNotFound(TableRef),

    /// The schema does not exist.
    #[error("schema {0:?} not found")]
    SchemaNotFound(String),

    /// A version of the table that does not exist was asked for.
    #[error("table {table} has no version {version}")]
    VersionNotFound {
        /// The table.
        table: TableRef,
        /// The missing version.
        version: Version,
    },

    /// Time travel to a version or an instant the table does not keep (removed by VACUUM,
    /// before the table existed, or not yet committed); `reason` names what is kept.
    #[error("table {table} has no version {wanted}: {reason}")]
    NotKept {
        /// The table.
        table: TableRef,
        /// The version asked for (`3`, `as of 2026-12-01 10:00:00 UTC`).
        wanted: String,
        /// What the table keeps.
        reason: String,
    },

    /// `CREATE SCHEMA` of a schema that exists.
    #[error("schema {0:?} already exists")]
    SchemaExists(String),

    /// `DROP SCHEMA` without `CASCADE` of a schema that holds tables, or of `public`.
    #[error("schema {schema:?} cannot be dropped: {reason}")]
    SchemaNotDroppable {
        /// The schema.
        schema: String,
        /// Why ("it holds tables a, b; use CASCADE", "it is the default schema").
        reason: String,
    },

    /// Create of a table that already has a live version.
    #[error("table {0} already exists")]
    TableExists(TableRef),

    /// A write to an external (read-only) table.
    #[error("table {0} is an external table (read-only): its files belong to another owner")]
    ReadOnly(TableRef),

    /// A write would give two rows the same primary key; `key` shows the columns and value,
    /// e.g. `(id)=(5)`.
    #[error("duplicate primary key {key} in table {table}")]
    DuplicateKey {
        /// The table.
        table: TableRef,
        /// Key columns and the duplicated value.
        key: String,
    },

    /// Another writer published the version this commit wanted, and retrying on the new head
    /// did not succeed within the retry budget (or the caller asked not to retry).
    #[error(
        "commit conflict on table {table}: version {version} was published by another writer; \
         retry the operation"
    )]
    Conflict {
        /// The table.
        table: TableRef,
        /// The version both writers raced for.
        version: Version,
    },

    /// A row-level change (DELETE, UPDATE, ...) lost to another writer that changed or
    /// removed a data file this change also changes: applying it on the new head could lose
    /// that writer's change, so it is not applied. The statement may be run again.
    #[error(
        "concurrent change on table {table}: version {version} changed the rows of {path} \
         that this statement also changes; nothing was written, run the statement again"
    )]
    ConcurrentChange {
        /// The table.
        table: TableRef,
        /// The version that changed the file first.
        version: Version,
        /// The data file both changes touch.
        path: String,
    },

    /// Appended data does not have the table's schema. `differences` lists every column that
    /// differs, one per entry, e.g. "column `b`: table has Int64, data has Utf8".
    #[error("schema mismatch for table {table}: {}", differences.join("; "))]
    SchemaMismatch {
        /// The table.
        table: TableRef,
        /// Column-level differences.
        differences: Vec<String>,
    },

    /// Input data could not be parsed. `location` names the file and, when known, the line and
    /// column ("orders.csv line 17, column `price`").
    #[error("{location}: {message}")]
    InvalidData {
        /// File, line and column of the problem.
        location: String,
        /// What is wrong with it.
        message: String,
    },

    /// A manifest in storage is not readable by this version of Lakehouse.
    #[error("manifest {path} is invalid: {message}")]
    InvalidManifest {
        /// Object path of the manifest.
        path: String,
        /// What is wrong with it.
        message: String,
    },

    /// The storage URL or options are not usable.
    #[error("invalid storage configuration {url:?}: {message}")]
    InvalidStorage {
        /// The storage URL as given.
        url: String,
        /// What is wrong.
        message: String,
    },

    /// Object storage failed (I/O error, network, permissions).
    #[error("object storage error: {0}")]
    Storage(#[from] object_store::Error),

    /// Arrow failed while converting or validating data.
    #[error("arrow error: {0}")]
    Arrow(#[from] arrow::error::ArrowError),

    /// Parquet failed while writing or reading a data file.
    #[error("parquet error: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
}

/// The catalog's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
