//! A table's kept versions: what time travel reads and `table_history` lists.
//!
//! A version is the manifest `tables/<schema>/<table>/_manifests/<v>.json`; VACUUM removes old
//! ones. Since a table may be dropped and created again under the same name (versions keep
//! counting), the history of a live table starts after its last drop.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use object_store::ObjectStore;

use crate::catalog::Catalog;
use crate::error::{Error, Result};
use crate::layout;
use crate::manifest::Manifest;
use crate::name::{TableRef, Version};

/// Which version of a table a reference reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AsOf {
    /// The newest version.
    Latest,
    /// Version `n` as `table_history` lists it (`VERSION AS OF n`).
    Version(u64),
    /// The newest version committed at or before this instant, to the microsecond
    /// (`TIMESTAMP AS OF`, `FOR SYSTEM_TIME AS OF`).
    Timestamp(DateTime<Utc>),
}

impl std::fmt::Display for AsOf {
    /// `latest`, `v<n>` or `t<RFC 3339 UTC, microseconds>`, the form [`AsOf::parse`] reads.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AsOf::Latest => write!(f, "latest"),
            AsOf::Version(v) => write!(f, "v{v}"),
            AsOf::Timestamp(t) => write!(
                f,
                "t{}",
                t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
            ),
        }
    }
}

impl AsOf {
    /// Reads the form [`AsOf`]'s `Display` writes; `None` for anything else.
    pub fn parse(text: &str) -> Option<AsOf> {
        if text == "latest" || text.is_empty() {
            return Some(AsOf::Latest);
        }
        if let Some(v) = text.strip_prefix('v') {
            return v.parse().ok().map(AsOf::Version);
        }
        let t = text.strip_prefix('t')?;
        DateTime::parse_from_rfc3339(t)
            .ok()
            .map(|t| AsOf::Timestamp(t.with_timezone(&Utc)))
    }

    /// Of versions `(number, committed at)` kept, oldest first, the one this selects; the
    /// error's reason names what is kept.
    ///
    /// # Errors
    /// [`Error::NotKept`] for a version not in `kept` or an instant before the first kept one.
    pub fn select(&self, table: &TableRef, kept: &[(u64, DateTime<Utc>)]) -> Result<u64> {
        let not_kept = |reason: String| Error::NotKept {
            table: table.clone(),
            wanted: match self {
                AsOf::Timestamp(t) => format!("as of {}", t.format("%Y-%m-%d %H:%M:%S%.f UTC")),
                other => format!("{}", other).trim_start_matches('v').to_string(),
            },
            reason,
        };
        let (Some(first), Some(last)) = (kept.first(), kept.last()) else {
            return Err(not_kept("it has no versions".into()));
        };
        match self {
            AsOf::Latest => Ok(last.0),
            AsOf::Version(n) => {
                if kept.iter().any(|(v, _)| v == n) {
                    Ok(*n)
                } else if *n < first.0 {
                    Err(not_kept(format!(
                        "versions before {} were removed by VACUUM or precede the table; the \
                         oldest kept is {} (committed {})",
                        first.0,
                        first.0,
                        first.1.format("%Y-%m-%d %H:%M:%S UTC")
                    )))
                } else {
                    Err(not_kept(format!(
                        "its versions are {}..={}",
                        first.0, last.0
                    )))
                }
            }
            AsOf::Timestamp(t) => kept
                .iter()
                .rev()
                // Compared in microseconds, the precision SQL clients show timestamps in.
                .find(|(_, at)| at.timestamp_micros() <= t.timestamp_micros())
                .map(|(v, _)| *v)
                .ok_or_else(|| {
                    not_kept(format!(
                        "its oldest kept version {} was committed {}",
                        first.0,
                        first.1.format("%Y-%m-%d %H:%M:%S%.f UTC")
                    ))
                }),
        }
    }
}

impl Catalog {
    /// The kept versions of `table` since it was last created, oldest first (the table's
    /// history as time travel sees it). Drop versions are not listed.
    ///
    /// # Errors
    /// [`Error::TableNotFound`] when the table has no live version; [`Error::Storage`],
    /// [`Error::InvalidManifest`].
    pub async fn history(&self, table: &TableRef) -> Result<Vec<Arc<Manifest>>> {
        let head = self.table(table).await?;
        let store: &Arc<dyn ObjectStore> = self.store();
        let mut versions: Vec<Version> = store
            .list(Some(&layout::manifests_prefix(table)))
            .try_filter_map(|m| async move { Ok(layout::parse_manifest_version(&m.location)) })
            .try_collect()
            .await?;
        versions.retain(|v| *v <= head.version);
        versions.sort();
        let mut manifests = Vec::with_capacity(versions.len());
        for version in versions.into_iter().rev() {
            let manifest = if version == head.version {
                Arc::clone(&head)
            } else {
                match self.table_version(table, version).await {
                    Ok(m) => m,
                    // A drop version: the history of the live table starts after it.
                    Err(Error::TableNotFound(_)) => break,
                    // Removed by a VACUUM running now.
                    Err(Error::VersionNotFound { .. }) => continue,
                    Err(e) => return Err(e),
                }
            };
            manifests.push(manifest);
        }
        manifests.reverse();
        Ok(manifests)
    }

    /// The version of `table` that `as_of` selects ([`AsOf::select`] over
    /// [`Catalog::history`]).
    ///
    /// # Errors
    /// As [`Catalog::history`] and [`AsOf::select`].
    pub async fn table_as_of(&self, table: &TableRef, as_of: AsOf) -> Result<Arc<Manifest>> {
        if as_of == AsOf::Latest {
            return self.table(table).await;
        }
        let history = self.history(table).await?;
        let kept: Vec<(u64, DateTime<Utc>)> = history
            .iter()
            .map(|m| (m.version.0, m.created_at))
            .collect();
        let version = as_of.select(table, &kept)?;
        Ok(history
            .into_iter()
            .find(|m| m.version.0 == version)
            .expect("selected from the history"))
    }
}

impl Catalog {
    /// `RESTORE TABLE t TO VERSION n`: commits a new version of `table` whose files, schema,
    /// primary key and ingested sources are those of version `n` (Delta's `RESTORE`); the
    /// versions in between stay in the history.
    ///
    /// # Errors
    /// [`Error::NotKept`] when version `n` is not kept (VACUUM removed it, or it never was);
    /// [`Error::TableNotFound`]; [`Error::ReadOnly`] for external tables; commit errors.
    pub async fn restore(&self, table: &TableRef, n: u64) -> Result<Arc<Manifest>> {
        let to = self.table_as_of(table, AsOf::Version(n)).await?;
        self.commit(table, crate::catalog::Change::Restore { to })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn as_of_selects_kept_versions_and_names_what_is_kept() {
        let t = TableRef::new("public", "t").unwrap();
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let kept = [
            (3, at("2026-12-01T10:00:00Z")),
            (4, at("2026-12-01T11:00:00Z")),
            (6, at("2026-12-01T12:00:00Z")),
        ];
        assert_eq!(AsOf::Version(4).select(&t, &kept).unwrap(), 4);
        assert_eq!(AsOf::Latest.select(&t, &kept).unwrap(), 6);
        let ts = AsOf::Timestamp(at("2026-12-01T11:30:00Z"));
        assert_eq!(ts.select(&t, &kept).unwrap(), 4);
        let exact = AsOf::Timestamp(at("2026-12-01T11:00:00Z"));
        assert_eq!(exact.select(&t, &kept).unwrap(), 4);
        let err = AsOf::Version(1).select(&t, &kept).unwrap_err().to_string();
        assert!(err.contains("oldest kept is 3"), "{err}");
        let err = AsOf::Version(5).select(&t, &kept).unwrap_err().to_string();
        assert!(err.contains("3..=6"), "{err}");
        let err = AsOf::Timestamp(at("2026-12-01T09:00:00Z"))
            .select(&t, &kept)
            .unwrap_err()
            .to_string();
        assert!(err.contains("oldest kept version 3"), "{err}");
        for as_of in [AsOf::Latest, AsOf::Version(7), ts] {
            assert_eq!(AsOf::parse(&as_of.to_string()), Some(as_of));
        }
    }
}
