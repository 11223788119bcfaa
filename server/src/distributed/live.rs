//! The coordinator's worker list and which of its workers are up.
//!
//! The list is `[distributed] workers` (`--workers`) followed by the URLs in
//! `[distributed] workers_file` (`--workers-file`), which a background task re-reads every
//! [`LiveWorkers::PROBE_INTERVAL`] when its content changed — the hook for orchestrators that
//! add and remove workers. A file that cannot be read or holds a bad URL keeps the last good
//! list (logged as a warning), so a half-written file never empties the cluster. The same task
//! probes every listed worker (`GetWorkerInfo`, [`super::workers_table`]); the planner
//! distributes over those that answered ([`WorkerResolver`]).

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use datafusion::error::DataFusionError;
use datafusion_distributed::WorkerResolver;
use url::Url;

use super::{DistributedOptions, WorkerChannels, worker_url, workers_table};
use crate::error::{Error, Result};

/// A listed worker: (as configured, as dialled).
pub type Listed = (String, Url);

/// The listed workers and which of them answered their last probe (see the module docs).
/// Clones share one list.
#[derive(Debug, Clone)]
pub struct LiveWorkers {
    /// In list order: `[distributed] workers`, then the workers file's.
    listed: Arc<RwLock<Arc<Vec<Listed>>>>,
    up: Arc<RwLock<Vec<Url>>>,
}

impl LiveWorkers {
    /// How often the background task re-reads the workers file and probes the workers.
    pub const PROBE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);

    /// `listed`, all taken to be up until probed.
    pub(super) fn new(listed: Vec<Listed>) -> Self {
        let up = listed.iter().map(|(_, url)| url.clone()).collect();
        Self {
            listed: Arc::new(RwLock::new(Arc::new(listed))),
            up: Arc::new(RwLock::new(up)),
        }
    }

    /// The listed workers now.
    pub fn listed(&self) -> Arc<Vec<Listed>> {
        Arc::clone(&self.listed.read().expect("worker list lock"))
    }

    /// Replaces the list; workers that stay keep their state, new ones count as down until
    /// probed.
    fn set_listed(&self, listed: Vec<Listed>) {
        let mut up = self.up.write().expect("worker list lock");
        up.retain(|u| listed.iter().any(|(_, url)| url == u));
        *self.listed.write().expect("worker list lock") = Arc::new(listed);
    }

    /// Records which workers of `listed` (a list this returned) answered a probe: `up[i]`
    /// for the i-th; workers no longer listed are ignored.
    pub fn update(&self, listed: &[Listed], up: &[bool]) {
        let current = self.listed();
        let live = listed
            .iter()
            .zip(up)
            .filter(|((_, url), up)| **up && current.iter().any(|(_, u)| u == url))
            .map(|((_, url), _)| url.clone())
            .collect();
        *self.up.write().expect("worker list lock") = live;
    }

    /// Takes `url` off the live list until a probe finds it again.
    pub fn mark_down(&self, url: &Url) {
        self.up
            .write()
            .expect("worker list lock")
            .retain(|u| u != url);
    }

    /// Takes the worker configured as `shown` off the live list until a probe finds it again.
    pub fn mark_down_configured(&self, shown: &str) {
        if let Some((_, url)) = self.listed().iter().find(|(s, _)| s == shown) {
            self.mark_down(url);
        }
    }

    /// `url` (as dialled) as configured, for messages.
    pub fn configured(&self, url: &Url) -> String {
        self.listed()
            .iter()
            .find(|(_, dialled)| dialled == url)
            .map_or_else(|| url.to_string(), |(shown, _)| shown.clone())
    }

    /// The workers that answered their last probe.
    pub fn up(&self) -> Vec<Url> {
        self.up.read().expect("worker list lock").clone()
    }

    /// Probes every listed worker now with `secret` over `channels` and records which
    /// answered; returns the list probed and each worker's answer, in list order.
    pub(super) async fn probe(
        &self,
        secret: Option<&str>,
        channels: &WorkerChannels,
    ) -> (Arc<Vec<Listed>>, Vec<workers_table::ProbeResult>) {
        let listed = self.listed();
        let answers = workers_table::probe_all(&listed, secret, channels).await;
        self.update(
            &listed,
            &answers.iter().map(Result::is_ok).collect::<Vec<_>>(),
        );
        (listed, answers)
    }

    /// Every [`LiveWorkers::PROBE_INTERVAL`] until the last clone of this list is dropped:
    /// re-reads `source`'s file when it changed, then probes every listed worker over
    /// `channels` with `secret`.
    pub(super) fn watch(
        &self,
        source: WorkerList,
        secret: Option<String>,
        channels: WorkerChannels,
    ) {
        let weak_up = Arc::downgrade(&self.up);
        let weak_listed = Arc::downgrade(&self.listed);
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(Self::PROBE_INTERVAL);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut last_file = source.file_content().ok();
            loop {
                interval.tick().await;
                let (Some(up), Some(listed)) = (weak_up.upgrade(), weak_listed.upgrade()) else {
                    return;
                };
                let live = Self { listed, up };
                if source.file.is_some() {
                    match source.file_content() {
                        Ok(content) if last_file.as_ref() != Some(&content) => {
                            match source.parse(&content) {
                                Ok(listed) => {
                                    tracing::info!(workers = listed.len(), "worker list changed");
                                    live.set_listed(listed);
                                }
                                Err(e) => {
                                    tracing::warn!(%e, "keeping the last worker list");
                                }
                            }
                            // Once per change: a bad file is reported once, not every probe.
                            last_file = Some(content);
                        }
                        Ok(_) => {}
                        Err(e) => tracing::warn!(%e, "keeping the last worker list"),
                    }
                }
                live.probe(secret.as_deref(), &channels).await;
            }
        });
    }
}

impl WorkerResolver for LiveWorkers {
    fn get_urls(&self) -> std::result::Result<Vec<Url>, DataFusionError> {
        Ok(self.up())
    }
}

/// Where the worker list comes from: `[distributed] workers` and the workers file.
#[derive(Debug, Clone)]
pub(super) struct WorkerList {
    fixed: Vec<String>,
    file: Option<PathBuf>,
}

impl WorkerList {
    pub(super) fn new(options: &DistributedOptions) -> Self {
        Self {
            fixed: options.workers.clone(),
            file: options.workers_file.clone(),
        }
    }

    /// Whether any worker can ever be listed (some are configured, or a file may name some).
    pub(super) fn is_empty(&self) -> bool {
        self.fixed.is_empty() && self.file.is_none()
    }

    /// The list now: the fixed workers, then the file's.
    ///
    /// # Errors
    /// [`Error::Config`] naming the file when it cannot be read, or naming a URL that does not
    /// parse.
    pub(super) fn read(&self) -> Result<Vec<Listed>> {
        self.parse(&self.file_content()?)
    }

    /// The workers file's text ("" without one).
    fn file_content(&self) -> Result<String> {
        let Some(path) = &self.file else {
            return Ok(String::new());
        };
        std::fs::read_to_string(path)
            .map_err(|e| Error::Config(format!("workers file {}: {e}", path.display())))
    }

    /// The fixed workers followed by those in `file_content`, each once.
    fn parse(&self, file_content: &str) -> Result<Vec<Listed>> {
        let from_file = file_content
            .lines()
            .map(|line| line.split('#').next().unwrap_or_default())
            .flat_map(|line| line.split([',', ' ', '\t']))
            .map(str::trim)
            .filter(|w| !w.is_empty());
        let mut listed: Vec<Listed> = Vec::new();
        for (i, shown) in self
            .fixed
            .iter()
            .map(String::as_str)
            .chain(from_file)
            .enumerate()
        {
            let url = worker_url(shown).map_err(|e| match (&self.file, i >= self.fixed.len()) {
                (Some(path), true) => in_file(path, e),
                _ => e,
            })?;
            if !listed.iter().any(|(_, u)| *u == url) {
                listed.push((shown.to_string(), url));
            }
        }
        Ok(listed)
    }
}

/// `e` (a bad worker URL) said to come from the workers file at `path`.
fn in_file(path: &Path, e: Error) -> Error {
    match e {
        Error::Config(message) => {
            Error::Config(format!("workers file {}: {message}", path.display()))
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(fixed: &[&str], file: Option<&Path>) -> WorkerList {
        WorkerList {
            fixed: fixed.iter().map(|s| s.to_string()).collect(),
            file: file.map(Path::to_path_buf),
        }
    }

    #[test]
    fn the_file_adds_workers_after_the_fixed_ones_each_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("workers");
        std::fs::write(
            &path,
            "# the cluster\ngrpc://a:1\n\ngrpc://b:2, grpc://c:3  # two more\ngrpc://a:1\n",
        )
        .unwrap();
        let shown: Vec<String> = list(&["grpc://z:9", "grpc://b:2"], Some(&path))
            .read()
            .unwrap()
            .into_iter()
            .map(|(s, _)| s)
            .collect();
        assert_eq!(
            shown,
            ["grpc://z:9", "grpc://b:2", "grpc://a:1", "grpc://c:3"]
        );
    }

    #[test]
    fn a_bad_or_missing_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("workers");
        let missing = list(&[], Some(&path)).read().unwrap_err().to_string();
        assert!(
            missing.contains("workers file") && missing.contains(path.to_str().unwrap()),
            "{missing}"
        );
        std::fs::write(&path, "grpc://a:1\nftp://b:2\n").unwrap();
        let bad = list(&[], Some(&path)).read().unwrap_err().to_string();
        assert!(
            bad.contains("workers file") && bad.contains("ftp://b:2"),
            "{bad}"
        );
    }
}
