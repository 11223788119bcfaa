//! `OPTIMIZE` and `VACUUM`: table maintenance from SQL, for Parquet and Lance tables.
//!
//! ```sql
//! OPTIMIZE [TABLE] t
//! VACUUM [TABLE] t [RETAIN n HOURS] [DRY RUN]
//! ```
//!
//! sqlparser 0.62 parses neither form (only ClickHouse's `OPTIMIZE TABLE ... FINAL` and
//! Redshift's `VACUUM`), so both are parsed here with sqlparser's own parser primitives.
//! `OPTIMIZE` compacts ([`lakehouse_catalog::Catalog::compact`]; Lance: `compact_files`) and
//! answers the number of files rewritten; `VACUUM` removes versions older than the retention
//! (default `[maintenance] vacuum_retain_hours`, 7 days) and the files only they referenced
//! ([`lakehouse_catalog::Catalog::vacuum`]; Lance: `cleanup_old_versions`) and answers the
//! number of files removed (with `DRY RUN`: that would be removed).

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use datafusion::sql::sqlparser::ast::ObjectName;
use datafusion::sql::sqlparser::dialect::Dialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::Token;
use lakehouse_catalog::{CompactionOptions, Error as CatalogError, Manifest, SchemaName, TableRef};
use serde::{Deserialize, Serialize};

use super::resolve_object_name;
use crate::error::{Error, Result};
use crate::query::QueryEngine;

/// Compaction and vacuum settings (the `[maintenance]` table of the config file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MaintenanceOptions {
    /// Size compaction aims for, in bytes (default 128 MiB). Files below half of it are small.
    pub target_file_bytes: u64,
    /// Compact automatically after commits that pass a threshold below, in the background
    /// without blocking writers (default true). A compaction that loses to a writer of the
    /// same files is dropped; the next commit tries again.
    pub auto_compact: bool,
    /// Automatic compaction starts when a table has at least this many small files
    /// (default 16).
    pub compact_min_files: usize,
    /// ... or a file with at least this fraction of its rows deleted (default 0.2). The same
    /// fraction makes `OPTIMIZE` rewrite a file alone.
    pub compact_deleted_ratio: f64,
    /// Versions younger than this many hours are kept by `VACUUM` without `RETAIN`
    /// (default 168: 7 days).
    pub vacuum_retain_hours: f64,
}

impl Default for MaintenanceOptions {
    fn default() -> Self {
        Self {
            target_file_bytes: 128 * 1024 * 1024,
            auto_compact: true,
            compact_min_files: 16,
            compact_deleted_ratio: 0.2,
            vacuum_retain_hours: 168.0,
        }
    }
}

impl MaintenanceOptions {
    /// The catalog's compaction settings.
    pub fn compaction(&self) -> CompactionOptions {
        CompactionOptions {
            target_file_bytes: self.target_file_bytes,
            deleted_ratio: self.compact_deleted_ratio,
            ..CompactionOptions::default()
        }
    }

    /// Whether `manifest` passes an automatic-compaction threshold.
    fn wants_compaction(&self, manifest: &Manifest) -> bool {
        if manifest.lance.is_some() || manifest.external.is_some() {
            return false;
        }
        let options = self.compaction();
        let small = manifest.files.iter().filter(|f| options.small(f)).count();
        small >= self.compact_min_files || manifest.files.iter().any(|f| options.mostly_deleted(f))
    }
}

/// Tables being compacted in the background (at most one compaction per table).
#[derive(Debug, Default)]
pub struct Compactions(Mutex<HashSet<TableRef>>);

impl Compactions {
    /// Marks `table` as being compacted; false when it already is.
    fn claim(&self, table: &TableRef) -> bool {
        self.0.lock().expect("lock").insert(table.clone())
    }

    /// Marks `table` as no longer being compacted.
    fn release(&self, table: &TableRef) {
        self.0.lock().expect("lock").remove(table);
    }
}

/// How many compactions one automatic-compaction task runs at most, one after another.
pub const AUTO_COMPACTION_ROUNDS: usize = 8;

/// A parsed `OPTIMIZE` or `VACUUM`.
#[derive(Debug, Clone, PartialEq)]
pub enum Maintenance {
    /// `OPTIMIZE [TABLE] t`.
    Optimize {
        /// The table.
        table: ObjectName,
    },
    /// `RESTORE [TABLE] t [TO] VERSION [AS OF] n`.
    Restore {
        /// The table.
        table: ObjectName,
        /// The version to make the newest again.
        version: u64,
    },
    /// `VACUUM [TABLE] t [RETAIN n HOURS] [DRY RUN]`.
    Vacuum {
        /// The table.
        table: ObjectName,
        /// Retention in hours, when given.
        retain_hours: Option<f64>,
        /// Only report what would be removed.
        dry_run: bool,
    },
}

/// `Some` when `sql` is an `OPTIMIZE` or `VACUUM` statement, parsed.
///
/// # Errors
/// [`Error::InvalidArgument`] naming what was expected when the statement starts with
/// `OPTIMIZE` or `VACUUM` but does not follow the grammar above.
pub fn parse(sql: &str, dialect: &dyn Dialect) -> Result<Option<Maintenance>> {
    let head: String = sql
        .trim_start()
        .chars()
        .take(8)
        .collect::<String>()
        .to_ascii_uppercase();
    if !head.starts_with("OPTIMIZE") && !head.starts_with("VACUUM") && !head.starts_with("RESTORE")
    {
        return Ok(None);
    }
    let invalid = |e: String| {
        Error::invalid(format!(
            "{e}; the forms are OPTIMIZE [TABLE] t, VACUUM [TABLE] t [RETAIN n HOURS] [DRY RUN] \
             and RESTORE [TABLE] t TO VERSION n"
        ))
    };
    let mut parser = Parser::new(dialect)
        .try_with_sql(sql)
        .map_err(|e| invalid(e.to_string()))?;
    let restore = matches!(
        &parser.peek_token().token,
        Token::Word(w) if w.value.eq_ignore_ascii_case("RESTORE") && w.quote_style.is_none()
    );
    let statement = if restore {
        parser.next_token();
        let _ = parser.parse_keyword(Keyword::TABLE);
        let table = parser
            .parse_object_name(false)
            .map_err(|e| invalid(e.to_string()))?;
        let _ = parser.parse_keyword(Keyword::TO);
        if !parser.parse_keyword(Keyword::VERSION) {
            return Err(invalid("RESTORE takes TO VERSION n".into()));
        }
        let _ = parser.parse_keywords(&[Keyword::AS, Keyword::OF]);
        let value = parser
            .parse_number_value()
            .map_err(|e| invalid(e.to_string()))?;
        let version = value
            .value
            .to_string()
            .parse::<u64>()
            .map_err(|_| invalid(format!("VERSION {}: not a version number", value.value)))?;
        Maintenance::Restore { table, version }
    } else if parser.parse_keyword(Keyword::OPTIMIZE) {
        let _ = parser.parse_keyword(Keyword::TABLE);
        let table = parser
            .parse_object_name(false)
            .map_err(|e| invalid(e.to_string()))?;
        Maintenance::Optimize { table }
    } else if parser.parse_keyword(Keyword::VACUUM) {
        let _ = parser.parse_keyword(Keyword::TABLE);
        let table = parser
            .parse_object_name(false)
            .map_err(|e| invalid(e.to_string()))?;
        let mut retain_hours = None;
        if parser.parse_keyword(Keyword::RETAIN) {
            let value = parser
                .parse_number_value()
                .map_err(|e| invalid(e.to_string()))?;
            let hours: f64 = value
                .value
                .to_string()
                .parse()
                .map_err(|e| invalid(format!("RETAIN {}: {e}", value.value)))?;
            if !(hours >= 0.0 && hours.is_finite()) {
                return Err(invalid(format!("RETAIN {hours} HOURS is not a duration")));
            }
            if !parser.parse_keyword(Keyword::HOURS) && !parser.parse_keyword(Keyword::HOUR) {
                return Err(invalid("RETAIN n must be followed by HOURS".into()));
            }
            retain_hours = Some(hours);
        }
        let dry_run = parser.parse_keywords(&[Keyword::DRY, Keyword::RUN]);
        Maintenance::Vacuum {
            table,
            retain_hours,
            dry_run,
        }
    } else {
        return Ok(None);
    };
    let _ = parser.consume_token(&Token::SemiColon);
    let rest = parser.peek_token();
    if rest.token != Token::EOF {
        return Err(invalid(format!(
            "unexpected {} after the statement",
            rest.token
        )));
    }
    Ok(Some(statement))
}

impl QueryEngine {
    /// Runs an `OPTIMIZE`, `VACUUM` or `RESTORE` (see the module docs); answers the files
    /// rewritten or removed, or (RESTORE) the rows of the restored version.
    ///
    /// # Errors
    /// Catalog `TableNotFound`, `ReadOnly` (external tables), `ConcurrentChange` (a compaction
    /// that kept losing to writers of the same files); Lance errors.
    pub(super) async fn maintain(
        &self,
        statement: &Maintenance,
        default_schema: &SchemaName,
    ) -> Result<i64> {
        match statement {
            Maintenance::Optimize { table } => {
                let table = resolve_object_name(table, default_schema)?;
                let manifest = self.catalog().table(&table).await?;
                if let Some(lance) = &manifest.lance {
                    let metrics = self.lance_store().compact(&lance.location).await?;
                    return Ok(metrics as i64);
                }
                let mut attempt = 1;
                loop {
                    match self
                        .catalog()
                        .compact(&table, &self.maintenance().compaction())
                        .await
                    {
                        Ok(report) => return Ok(report.files_removed as i64),
                        Err(CatalogError::ConcurrentChange { .. })
                            if attempt < super::dml::STATEMENT_ATTEMPTS =>
                        {
                            attempt += 1;
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
            }
            Maintenance::Restore { table, version } => {
                let table = resolve_object_name(table, default_schema)?;
                let manifest = self.catalog().table(&table).await?;
                if let Some(lance) = &manifest.lance {
                    let dataset = self.lance_store().open(&lance.location).await?;
                    let kept: Vec<_> = dataset
                        .versions()
                        .await
                        .map_err(lakehouse_vector::Error::from)?
                        .into_iter()
                        .map(|v| (v.version, v.timestamp))
                        .collect();
                    lakehouse_catalog::AsOf::Version(*version).select(&table, &kept)?;
                    let restored = self
                        .lance_store()
                        .restore(&lance.location, *version)
                        .await?;
                    return Ok(restored as i64);
                }
                let restored = self.catalog().restore(&table, *version).await?;
                tracing::info!(%table, from = version, version = %restored.version, "restored");
                self.after_commit(&table, &restored);
                Ok(restored.total_rows as i64)
            }
            Maintenance::Vacuum {
                table,
                retain_hours,
                dry_run,
            } => {
                let table = resolve_object_name(table, default_schema)?;
                let hours = retain_hours.unwrap_or(self.maintenance().vacuum_retain_hours);
                let retain = Duration::from_secs_f64(hours * 3600.0);
                let manifest = self.catalog().table(&table).await?;
                if let Some(lance) = &manifest.lance {
                    let removed = self
                        .lance_store()
                        .cleanup(&lance.location, retain, *dry_run)
                        .await?;
                    return Ok(removed as i64);
                }
                let report = self.catalog().vacuum(&table, retain, *dry_run).await?;
                Ok(report.files_removed as i64)
            }
        }
    }
}

impl QueryEngine {
    /// After a commit to `table` that produced `manifest`: starts a background compaction
    /// when automatic compaction is on and a threshold is passed, unless one is running for
    /// that table — that one looks at the head again when it ends and compacts again while a
    /// threshold is passed and it made progress (at most [`AUTO_COMPACTION_ROUNDS`] times), so
    /// files committed while it ran are not left behind. It never blocks the caller; a failed
    /// or conflicting compaction is logged.
    pub fn after_commit(&self, table: &TableRef, manifest: &Manifest) {
        let options = self.maintenance();
        if !options.auto_compact || !options.wants_compaction(manifest) {
            return;
        }
        if !self.compactions().claim(table) {
            return;
        }
        let engine = self.clone();
        let table = table.clone();
        tokio::spawn(async move {
            let options = engine.maintenance();
            let compaction = options.compaction();
            for _ in 0..AUTO_COMPACTION_ROUNDS {
                let progressed = match engine.catalog().compact(&table, &compaction).await {
                    Ok(report) => {
                        tracing::info!(%table, files = report.files_removed, "automatic compaction");
                        report.files_removed > 0
                    }
                    Err(e) => {
                        tracing::info!(%table, error = %e, "automatic compaction not applied");
                        matches!(e, CatalogError::ConcurrentChange { .. })
                    }
                };
                // Commits made while this ran started no compaction of their own (one per
                // table at a time): look at the head again, after leaving the set, so a commit
                // from now on starts its own.
                engine.compactions().release(&table);
                let again = progressed
                    && engine
                        .catalog()
                        .table(&table)
                        .await
                        .is_ok_and(|head| options.wants_compaction(&head));
                if !again || !engine.compactions().claim(&table) {
                    return;
                }
            }
            engine.compactions().release(&table);
        });
    }
}

#[cfg(test)]
mod tests {
    use datafusion::sql::sqlparser::dialect::GenericDialect;

    use super::*;

    fn parsed(sql: &str) -> Result<Option<Maintenance>> {
        parse(sql, &GenericDialect {})
    }

    #[test]
    fn grammar() {
        assert_eq!(parsed("SELECT 1").unwrap(), None);
        let Some(Maintenance::Optimize { table }) = parsed("optimize table s.t;").unwrap() else {
            panic!()
        };
        assert_eq!(table.to_string(), "s.t");
        assert_eq!(
            parsed("VACUUM t RETAIN 0 HOURS DRY RUN").unwrap(),
            Some(Maintenance::Vacuum {
                table: ObjectName::from(vec![datafusion::sql::sqlparser::ast::Ident::new("t")]),
                retain_hours: Some(0.0),
                dry_run: true,
            })
        );
        for bad in [
            "VACUUM",
            "VACUUM t RETAIN HOURS",
            "VACUUM t RETAIN 5",
            "OPTIMIZE t x",
        ] {
            let err = parsed(bad).unwrap_err().to_string();
            assert!(err.contains("the forms are"), "{bad}: {err}");
        }
    }
}
