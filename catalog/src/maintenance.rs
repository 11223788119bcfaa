//! Table maintenance: compaction ([`Catalog::compact`]) and vacuum ([`Catalog::vacuum`]) of
//! Parquet tables, as Delta's `OPTIMIZE` and `VACUUM` do.
//!
//! - **Compaction** rewrites small files, and files with many deleted rows, into files near
//!   [`CompactionOptions::target_file_bytes`], in one commit ([`Operation::Compact`]): the
//!   rewritten files' live rows (deletion vectors applied) go to new files and the old entries
//!   leave the manifest. Readers see the old or the new version, never a mix. A compaction
//!   conflicts like any row-level change: when another commit changed or removed a file it
//!   rewrites, it is not applied ([`Error::ConcurrentChange`]) — rows are never lost or
//!   resurrected — and the caller may run it again on the new head. Appends by others are kept.
//! - **Vacuum** removes versions older than a retention period — never the current version,
//!   nor the newest version committed before the cutoff (the table as it was at the cutoff
//!   stays readable) — and then the data files and deletion vectors only they referenced.
//!   Manifests go first, then files, so a crash in between leaves only unreferenced files,
//!   which [`Catalog::cleanup`] removes.

use std::collections::HashSet;
use std::time::Duration;

use chrono::Utc;
use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStoreExt;
use object_store::path::Path;

use crate::catalog::{Catalog, Change, FileChange};
use crate::deletion::read_live_rows;
use crate::error::{Error, Result};
use crate::layout;
use crate::manifest::{DataFile, Manifest, Operation};
use crate::name::{TableRef, Version};

/// When and how [`Catalog::compact`] rewrites files (the `[maintenance]` settings).
#[derive(Debug, Clone, PartialEq)]
pub struct CompactionOptions {
    /// Size the rewritten files aim for, in bytes (a file is closed once it reaches it).
    pub target_file_bytes: u64,
    /// A file smaller than this fraction of `target_file_bytes` is small (0.5: below 64 MiB
    /// for the default 128 MiB target); compaction needs at least two small files to merge.
    pub small_file_fraction: f64,
    /// A file with at least this fraction of its rows deleted is rewritten even alone.
    pub deleted_ratio: f64,
}

impl Default for CompactionOptions {
    fn default() -> Self {
        Self {
            target_file_bytes: 128 * 1024 * 1024,
            small_file_fraction: 0.5,
            deleted_ratio: 0.2,
        }
    }
}

impl CompactionOptions {
    /// Whether `file` is small: under `small_file_fraction` of `target_file_bytes`.
    pub fn small(&self, file: &DataFile) -> bool {
        (file.size_bytes as f64) < self.target_file_bytes as f64 * self.small_file_fraction
    }

    /// Whether at least `deleted_ratio` of `file`'s rows are deleted.
    pub fn mostly_deleted(&self, file: &DataFile) -> bool {
        file.rows > 0
            && (file.rows - file.live_rows()) as f64 >= file.rows as f64 * self.deleted_ratio
    }

    /// The files of `manifest` a compaction would rewrite: every file with many deleted rows,
    /// and the small files when there are at least two of them (or one with deleted rows).
    /// Empty when there is nothing worth doing.
    pub fn plan<'a>(&self, manifest: &'a Manifest) -> Vec<&'a DataFile> {
        let mostly_deleted: Vec<&DataFile> = manifest
            .files
            .iter()
            .filter(|f| self.mostly_deleted(f))
            .collect();
        let small: Vec<&DataFile> = manifest
            .files
            .iter()
            .filter(|f| self.small(f) && !self.mostly_deleted(f))
            .collect();
        let mut chosen = mostly_deleted;
        if small.len() >= 2 || (!chosen.is_empty() && !small.is_empty()) {
            chosen.extend(small);
        }
        chosen
    }
}

/// What [`Catalog::compact`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompactionReport {
    /// The version it committed; `None` when there was nothing to compact.
    pub version: Option<Version>,
    /// Files rewritten (left the manifest).
    pub files_removed: usize,
    /// Files written.
    pub files_added: usize,
    /// Live rows rewritten.
    pub rows: u64,
    /// Bytes of the removed files, and of the added ones.
    pub bytes_removed: u64,
    /// Bytes of the files written.
    pub bytes_added: u64,
}

/// What [`Catalog::vacuum`] found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VacuumReport {
    /// Versions whose manifests were removed (or would be, with `dry_run`), ascending.
    pub versions_removed: Vec<Version>,
    /// Data files and deletion vectors removed.
    pub files_removed: usize,
    /// Their bytes.
    pub bytes_removed: u64,
}

/// Counter: compactions committed, by `table` (`schema.table`).
pub const COMPACTIONS_METRIC: &str = "lakehouse_compactions_total";

impl Catalog {
    /// Compacts the Parquet table `table` as [`CompactionOptions::plan`] chooses (module docs).
    ///
    /// # Errors
    /// [`Error::TableNotFound`]; [`Error::ReadOnly`] for external tables;
    /// [`Error::InvalidData`] for Lance tables (their datasets compact themselves);
    /// [`Error::ConcurrentChange`] when another commit changed a file being rewritten (nothing
    /// is committed; run it again); storage and Parquet errors.
    pub async fn compact(
        &self,
        table: &TableRef,
        options: &CompactionOptions,
    ) -> Result<CompactionReport> {
        let manifest = self.table(table).await?;
        if manifest.external.is_some() {
            return Err(Error::ReadOnly(table.clone()));
        }
        if manifest.lance.is_some() {
            return Err(Error::InvalidData {
                location: table.to_string(),
                message: "is a Lance table: it is compacted through Lance".into(),
            });
        }
        let chosen = options.plan(&manifest);
        if chosen.is_empty() {
            return Ok(CompactionReport::default());
        }
        let mut writer = self
            .data_writer(table, manifest.arrow_schema(), None)
            .with_target_file_bytes(options.target_file_bytes);
        let mut rows = 0u64;
        for file in &chosen {
            let written = async {
                let mut batches = read_live_rows(self.store(), file, None, None).await?;
                while let Some(live) = batches.next().await {
                    let batch = live?.batch;
                    rows += batch.num_rows() as u64;
                    writer.write(&batch).await?;
                }
                Ok::<_, Error>(())
            }
            .await;
            if let Err(e) = written {
                writer.abort().await;
                return Err(e);
            }
        }
        let files = writer.finish().await?;
        let report = CompactionReport {
            version: None,
            files_removed: chosen.len(),
            files_added: files.len(),
            rows,
            bytes_removed: chosen.iter().map(|f| f.size_bytes).sum(),
            bytes_added: files.iter().map(|f| f.size_bytes).sum(),
        };
        let change = Change::Rewrite {
            operation: Operation::Compact,
            changed: chosen
                .iter()
                .map(|f| FileChange {
                    before: (*f).clone(),
                    after: None,
                })
                .collect(),
            files,
        };
        let committed = self.commit(table, change).await?;
        metrics::counter!(COMPACTIONS_METRIC, "table" => table.to_string()).increment(1);
        tracing::info!(
            %table,
            version = %committed.version,
            files_removed = report.files_removed,
            files_added = report.files_added,
            rows,
            "compacted"
        );
        Ok(CompactionReport {
            version: Some(committed.version),
            ..report
        })
    }

    /// Removes the versions of `table` committed more than `retain` ago and the files only
    /// they referenced (module docs). With `dry_run` nothing is removed. Works on dropped
    /// tables too (their drop version is the current one).
    ///
    /// # Errors
    /// [`Error::Storage`], [`Error::InvalidManifest`]; nothing is removed from a table whose
    /// manifests cannot all be read.
    pub async fn vacuum(
        &self,
        table: &TableRef,
        retain: Duration,
        dry_run: bool,
    ) -> Result<VacuumReport> {
        let cutoff =
            Utc::now() - chrono::Duration::from_std(retain).unwrap_or(chrono::Duration::MAX);
        let mut versions: Vec<Version> = self
            .store()
            .list(Some(&layout::manifests_prefix(table)))
            .try_filter_map(|m| async move { Ok(layout::parse_manifest_version(&m.location)) })
            .try_collect()
            .await?;
        versions.sort();
        let Some(&head) = versions.last() else {
            return Err(Error::TableNotFound(table.clone()));
        };
        let mut manifests = Vec::with_capacity(versions.len());
        for &version in &versions {
            manifests.push(self.manifest_at(table, version).await?);
        }
        // The newest version committed at or before the cutoff stays: it is the table as of
        // the cutoff.
        let as_of_cutoff = manifests
            .iter()
            .rev()
            .find(|m| m.created_at <= cutoff)
            .map(|m| m.version);
        let (removed, kept): (Vec<&Manifest>, Vec<&Manifest>) = manifests.iter().partition(|m| {
            m.version != head && m.created_at < cutoff && Some(m.version) != as_of_cutoff
        });
        let referenced: HashSet<&str> = kept.iter().flat_map(|m| objects_of(m)).collect();
        let mut files: Vec<&str> = removed
            .iter()
            .flat_map(|m| objects_of(m))
            .filter(|p| !referenced.contains(p))
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        files.sort_unstable();
        let sizes: std::collections::HashMap<&str, u64> = removed
            .iter()
            .flat_map(|m| {
                m.files.iter().flat_map(|f| {
                    std::iter::once((f.path.as_str(), f.size_bytes)).chain(
                        f.deletion_vector
                            .iter()
                            .map(|d| (d.path.as_str(), d.size_bytes)),
                    )
                })
            })
            .collect();
        let report = VacuumReport {
            versions_removed: removed.iter().map(|m| m.version).collect(),
            files_removed: files.len(),
            bytes_removed: files
                .iter()
                .map(|p| sizes.get(p).copied().unwrap_or(0))
                .sum(),
        };
        if dry_run {
            return Ok(report);
        }
        for manifest in &removed {
            match self
                .store()
                .delete(&layout::manifest_path(table, manifest.version))
                .await
            {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        for path in &files {
            match self.store().delete(&Path::from(*path)).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        tracing::info!(
            %table,
            versions = report.versions_removed.len(),
            files = report.files_removed,
            bytes = report.bytes_removed,
            "vacuumed"
        );
        Ok(report)
    }
}

/// The objects a manifest references that the catalog owns: data files and deletion vectors
/// (none for external tables, whose files are not ours).
fn objects_of(manifest: &Manifest) -> Vec<&str> {
    if manifest.external.is_some() {
        return Vec::new();
    }
    manifest
        .files
        .iter()
        .flat_map(|f| {
            std::iter::once(f.path.as_str())
                .chain(f.deletion_vector.iter().map(|d| d.path.as_str()))
        })
        .collect()
}
