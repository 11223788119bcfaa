//! Time travel in SQL: `t VERSION AS OF n`, `t TIMESTAMP AS OF e` (Delta/Databricks) and
//! `t FOR SYSTEM_TIME AS OF e` (SQL:2011, BigQuery).
//!
//! Statements are parsed with the session's dialect wrapped in
//! [`super::dialect::VersioningDialect`], so sqlparser reads the version clauses. DataFusion's
//! relation planner would ignore them, so before planning ([`rewrite_versions`]) every
//! versioned table reference becomes a reference the catalog adapter resolves at that version:
//! `[lakehouse.][schema.]"t@<as of>" AS t`, with `<as of>` in [`AsOf`]'s text form (`v3`,
//! `t2026-12-01T10:00:00.000000Z`). The alias keeps `t.column` working; pins are keyed by
//! table and `AS OF`, so `t VERSION AS OF 1 a JOIN t b` reads two versions of one table. A
//! timestamp is any constant expression DataFusion casts to `TIMESTAMP` (`'2026-12-01
//! 10:00:00'`, `now() - INTERVAL '1 hour'`), read as UTC when it carries no zone.

use std::ops::ControlFlow;

use datafusion::common::ScalarValue;
use datafusion::execution::session_state::SessionState;
use datafusion::logical_expr::{Expr, LogicalPlan};
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{
    Expr as SqlExpr, Ident, ObjectNamePart, Statement as SqlStatement, TableAlias, TableFactor,
    TableVersion, Value, VisitMut, VisitorMut,
};
use lakehouse_catalog::AsOf;

use crate::error::{Error, Result};

/// Separates a table's name from its [`AsOf`] in a rewritten reference.
pub const AS_OF_SEPARATOR: char = '@';

/// The table name and [`AsOf`] of a rewritten reference (`t@v3`); `None` for a plain name.
pub fn split_as_of(name: &str) -> Option<(&str, AsOf)> {
    let (table, as_of) = name.split_once(AS_OF_SEPARATOR)?;
    Some((table, AsOf::parse(as_of)?))
}

/// The SQL statement inside `statement` (also under DataFusion's `EXPLAIN`).
fn sql_statement(statement: &mut DFStatement) -> Option<&mut SqlStatement> {
    match statement {
        DFStatement::Statement(s) => Some(s.as_mut()),
        DFStatement::Explain(explain) => match explain.statement.as_mut() {
            DFStatement::Statement(s) => Some(s.as_mut()),
            _ => None,
        },
        _ => None,
    }
}

/// Rewrites every versioned table reference of `statement` to a reference pinned to its
/// [`AsOf`] (see the module docs); timestamps are evaluated in `state`. True when something
/// was rewritten: the statement's text then names the exact versions, and a ticket carries
/// that text, so DoGet reads what GetFlightInfo planned even for `now()`-relative instants.
///
/// # Errors
/// [`Error::InvalidArgument`] for a version that is not a non-negative integer, a timestamp
/// expression that is not constant or not a timestamp, a version clause on a table function,
/// and the clauses other than the three supported (`AT(...)`, `CHANGES`).
pub async fn rewrite_versions(state: &SessionState, statement: &mut DFStatement) -> Result<bool> {
    let Some(statement) = sql_statement(statement) else {
        return Ok(false);
    };
    struct Collect(Vec<TableVersion>);
    impl VisitorMut for Collect {
        type Break = ();
        fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
            if let TableFactor::Table {
                version: Some(version),
                ..
            } = factor
            {
                self.0.push(version.clone());
            }
            ControlFlow::Continue(())
        }
    }
    let mut versions = Collect(Vec::new());
    let _ = statement.visit(&mut versions);
    if versions.0.is_empty() {
        return Ok(false);
    }
    let mut as_ofs = Vec::with_capacity(versions.0.len());
    for version in &versions.0 {
        as_ofs.push(as_of(state, version).await?);
    }
    struct Apply {
        as_ofs: std::vec::IntoIter<AsOf>,
        normalize: bool,
        error: Option<Error>,
    }
    impl VisitorMut for Apply {
        type Break = ();
        fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
            let TableFactor::Table {
                name,
                alias,
                version: version @ Some(_),
                args,
                ..
            } = factor
            else {
                return ControlFlow::Continue(());
            };
            if args.is_some() {
                self.error = Some(Error::invalid(format!(
                    "{name}: a table function takes no version clause"
                )));
                return ControlFlow::Break(());
            }
            let as_of = self.as_ofs.next().expect("one per version clause");
            let Some(ObjectNamePart::Identifier(ident)) = name.0.last_mut() else {
                self.error = Some(Error::invalid(format!("{name}: not a table name")));
                return ControlFlow::Break(());
            };
            let original = ident.clone();
            let table = if original.quote_style.is_none() && self.normalize {
                original.value.to_lowercase()
            } else {
                original.value.clone()
            };
            *ident = Ident::with_quote('"', format!("{table}{AS_OF_SEPARATOR}{as_of}"));
            if alias.is_none() {
                *alias = Some(TableAlias {
                    explicit: true,
                    name: original,
                    columns: Vec::new(),
                    at: None,
                });
            }
            *version = None;
            ControlFlow::Continue(())
        }
    }
    let mut apply = Apply {
        as_ofs: as_ofs.into_iter(),
        normalize: state
            .config()
            .options()
            .sql_parser
            .enable_ident_normalization,
        error: None,
    };
    let _ = statement.visit(&mut apply);
    match apply.error {
        Some(e) => Err(e),
        None => Ok(true),
    }
}

/// The [`AsOf`] a version clause asks for.
async fn as_of(state: &SessionState, version: &TableVersion) -> Result<AsOf> {
    match version {
        TableVersion::VersionAsOf(expr) => {
            let number = match expr {
                SqlExpr::Value(v) => match &v.value {
                    Value::Number(n, _) => n.parse::<u64>().ok(),
                    _ => None,
                },
                _ => None,
            };
            number.map(AsOf::Version).ok_or_else(|| {
                Error::invalid(format!(
                    "VERSION AS OF {expr}: a version is a non-negative integer, as \
                     table_history lists it"
                ))
            })
        }
        TableVersion::TimestampAsOf(expr) | TableVersion::ForSystemTimeAsOf(expr) => {
            timestamp(state, expr).await.map(AsOf::Timestamp)
        }
        other => Err(Error::invalid(format!(
            "{other}: not supported; use VERSION AS OF n, TIMESTAMP AS OF '...' or FOR \
             SYSTEM_TIME AS OF '...'"
        ))),
    }
}

/// The UTC instant the constant `expr` is, as DataFusion casts it to `TIMESTAMP`.
async fn timestamp(state: &SessionState, expr: &SqlExpr) -> Result<chrono::DateTime<chrono::Utc>> {
    let bad = |why: &str| {
        Error::invalid(format!(
            "TIMESTAMP AS OF {expr}: {why}; give a timestamp such as '2026-12-01 10:00:00' (UTC) \
             or '2026-12-01T10:00:00+01:00'"
        ))
    };
    let plan = state
        .create_logical_plan(&format!("SELECT CAST(({expr}) AS TIMESTAMP)"))
        .await
        .map_err(|e| bad(&e.to_string()))?;
    let plan = state.optimize(&plan).map_err(|e| bad(&e.to_string()))?;
    let LogicalPlan::Projection(projection) = &plan else {
        return Err(bad("not a constant"));
    };
    let mut value = projection.expr.first();
    while let Some(Expr::Alias(alias)) = value {
        value = Some(alias.expr.as_ref());
    }
    match value {
        Some(Expr::Literal(ScalarValue::TimestampNanosecond(Some(ns), _), _)) => {
            Ok(chrono::DateTime::from_timestamp_nanos(*ns))
        }
        Some(Expr::Literal(v, _)) if v.is_null() => Err(bad("it is NULL")),
        _ => Err(bad("not a constant")),
    }
}
