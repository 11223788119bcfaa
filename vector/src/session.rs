//! The tables one query reads, as its session resolved them: the one place the SQL functions
//! of this crate find a table.
//!
//! DataFusion calls table functions synchronously while planning, so they cannot look a table
//! up in storage themselves. The server resolves every table a statement names — in FROM
//! clauses and in the table arguments of the search functions — through the session's catalog
//! before planning (pinned to the ticket's versions in DoGet) and records each in the
//! session's [`SessionTables`]; the functions read it from there with [`resolved`]. A Lance
//! table is resolved to its dataset checked out at one version, so everything one query reads
//! of it (SQL scans, both sides of `hybrid_search`, `rag`'s retrieval) reads that version.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use lakehouse_catalog::{Manifest, TableRef};

/// One table as a query reads it.
#[derive(Debug, Clone)]
pub struct ResolvedTable {
    /// The catalog version's manifest (schema, kind, vector columns).
    pub manifest: Arc<Manifest>,
    /// For a Lance table, its dataset checked out at the version the query reads.
    pub dataset: Option<Arc<lance::Dataset>>,
}

impl ResolvedTable {
    /// The Lance dataset version read, for Lance tables.
    pub fn lance_version(&self) -> Option<u64> {
        self.dataset.as_ref().map(|d| d.version().version)
    }
}

/// The tables a session resolved, by name (a session config extension: put it in the
/// `SessionConfig` with `with_extension`, find it with `get_extension`).
#[derive(Debug, Default)]
pub struct SessionTables {
    tables: Mutex<BTreeMap<TableRef, ResolvedTable>>,
}

impl SessionTables {
    /// Records `resolved` as what the session reads for `table`.
    pub fn insert(&self, table: TableRef, resolved: ResolvedTable) {
        self.tables.lock().expect("lock").insert(table, resolved);
    }

    /// What the session reads for `table`, when it resolved it.
    pub fn get(&self, table: &TableRef) -> Option<ResolvedTable> {
        self.tables.lock().expect("lock").get(table).cloned()
    }

    /// Every resolved table, by name.
    pub fn all(&self) -> Vec<(TableRef, ResolvedTable)> {
        self.tables
            .lock()
            .expect("lock")
            .iter()
            .map(|(t, r)| (t.clone(), r.clone()))
            .collect()
    }
}

/// The table `name` (`'docs'` or `'schema.docs'`, unqualified names in the session's default
/// schema) as the session resolved it, for SQL function `function`.
///
/// # Errors
/// A planning error for an invalid name, or `table ... not found` when the session did not
/// resolve it (no such table).
pub fn resolved(
    function: &str,
    name: &str,
    session: &dyn datafusion::catalog::Session,
) -> datafusion::error::Result<(TableRef, ResolvedTable)> {
    let table = crate::args::table_ref(function, name, session)?;
    let resolved = session
        .config()
        .get_extension::<SessionTables>()
        .and_then(|tables| tables.get(&table))
        .ok_or_else(|| crate::args::plan_err(function, format!("table {table} not found")))?;
    Ok((table, resolved))
}
