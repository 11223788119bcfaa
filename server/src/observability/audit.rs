//! The audit log: one JSON line per request ([`AuditRecord`]) — who, from where, which RPC and
//! statement, the tables read and written with their versions, rows and bytes returned, the
//! outcome and the duration.
//!
//! Records go through a bounded queue ([`AuditOptions::queue_capacity`]) to one writer task:
//! a request never waits for the log; when the queue is full the record is dropped and counted
//! in `lakehouse_audit_dropped_total`. The target ([`AuditOptions::path`]) is either a local
//! file, rotated by size by `file-rotate` (`audit.jsonl`, `audit.jsonl.1`, … newest first), or,
//! for a URL (`s3://bucket/prefix`, `file:///dir`), a prefix in an object store that receives
//! one immutable segment object (`audit-<UTC time>-<uuid>.jsonl`) per flush.
//! `SELECT * FROM audit_log()` reads every file or segment back ([`AuditLog::read`]).

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use file_rotate::compression::Compression;
use file_rotate::suffix::AppendCount;
use file_rotate::{ContentLimit, FileRotate};
use futures::TryStreamExt;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use crate::error::{Error, Result};

/// Default rotation size of a local audit file, in bytes (100 MiB).
pub const DEFAULT_MAX_FILE_BYTES: u64 = 100 * 1024 * 1024;
/// Default number of rotated local files kept besides the current one.
pub const DEFAULT_KEEP_FILES: usize = 10;
/// Default capacity of the record queue, in records.
pub const DEFAULT_QUEUE_CAPACITY: usize = 10_000;
/// Default interval between object-store segment writes, in seconds.
pub const DEFAULT_FLUSH_SECS: u64 = 10;

/// The `[audit]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditOptions {
    /// Where records go: a local file path, or an object-store prefix URL (`s3://bucket/p`,
    /// `file:///dir`, with the S3 settings of the storage's `AWS_*` variables). Off when unset.
    pub path: Option<String>,
    /// Log the values bound to prepared-statement parameters (default false: elided).
    pub log_parameters: bool,
    /// A local file is rotated when it grows past this many bytes.
    pub max_file_bytes: u64,
    /// Rotated local files kept (the oldest is deleted).
    pub keep_files: usize,
    /// Records waiting to be written at most; more are dropped (and counted).
    pub queue_capacity: usize,
    /// Seconds between segment writes to an object store (records are also flushed at
    /// shutdown).
    pub flush_secs: u64,
}

impl Default for AuditOptions {
    fn default() -> Self {
        Self {
            path: None,
            log_parameters: false,
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
            keep_files: DEFAULT_KEEP_FILES,
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            flush_secs: DEFAULT_FLUSH_SECS,
        }
    }
}

/// One audit line. Field order is the JSON's; absent values are `null`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// When the request arrived (RFC 3339, UTC, microseconds).
    pub time: DateTime<Utc>,
    /// The authenticated user (`anonymous` without auth); for a refused login, the user name
    /// it claimed, if any.
    pub principal: Option<String>,
    /// The client's address (`IP:PORT`).
    pub peer: Option<String>,
    /// The Flight method (`GetFlightInfo`, `DoGet`, `DoPut`, `DoAction`, `Handshake`, …).
    pub rpc: String,
    /// The Flight SQL command or action (`CommandStatementQuery`, `CreatePreparedStatement`,
    /// …), empty when none.
    pub command: String,
    /// The query id of a statement's ticket (as in CancelFlightInfo and `query_history()`).
    pub query_id: Option<String>,
    /// The statement text (SQL), or the target table of a bulk ingest.
    pub statement: Option<String>,
    /// The bound parameter values, rendered as text: only with `log_parameters = true`.
    pub parameters: Option<Vec<String>>,
    /// Tables read, `schema.table@version`.
    pub tables_read: Vec<String>,
    /// Tables written, `schema.table@version` (the versions the request committed).
    pub tables_written: Vec<String>,
    /// Result rows streamed (DoGet), or rows changed/ingested (updates, ingest).
    pub rows: u64,
    /// Result bytes streamed (Flight data), or bytes received for ingest.
    pub bytes: u64,
    /// The gRPC status code name (`Ok`, `Unauthenticated`, `InvalidArgument`, …).
    pub outcome: String,
    /// The error message when the outcome is not `Ok`.
    pub error: Option<String>,
    /// Milliseconds from the request to its last message.
    pub duration_ms: f64,
}

enum Target {
    File(PathBuf),
    Store {
        store: Arc<dyn ObjectStore>,
        prefix: object_store::path::Path,
    },
}

enum Message {
    Record(Box<AuditRecord>),
    /// Write everything queued before this, then answer.
    Flush(oneshot::Sender<()>),
}

/// The running audit log: a queue and its writer task.
pub struct AuditLog {
    sender: mpsc::Sender<Message>,
    target: Arc<Target>,
    log_parameters: bool,
}

impl AuditLog {
    /// Opens the log `options` describe and starts its writer; `None` when `path` is unset.
    ///
    /// # Errors
    /// [`Error::Config`] when the local file's directory is missing or the file cannot be
    /// opened, or the URL names no store we can open; the message names the path.
    pub fn open(options: &AuditOptions) -> Result<Option<Arc<Self>>> {
        let Some(path) = &options.path else {
            return Ok(None);
        };
        if options.queue_capacity == 0 {
            return Err(Error::Config(
                "audit.queue_capacity must be at least 1".into(),
            ));
        }
        let target = if path.contains("://") {
            let location = lakehouse_catalog::StorageLocation::open(path)
                .map_err(|e| Error::Config(format!("audit.path {path}: {e}")))?;
            Target::Store {
                store: Arc::clone(&location.store),
                prefix: object_store::path::Path::default(),
            }
        } else {
            let file = PathBuf::from(path);
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&file)
                .map_err(|e| Error::Config(format!("audit.path {path}: cannot open: {e}")))?;
            Target::File(file)
        };
        let target = Arc::new(target);
        let (sender, receiver) = mpsc::channel(options.queue_capacity);
        tokio::spawn(write_loop(Arc::clone(&target), receiver, options.clone()));
        Ok(Some(Arc::new(Self {
            sender,
            target,
            log_parameters: options.log_parameters,
        })))
    }

    /// Whether records carry parameter values (`log_parameters`).
    pub fn log_parameters(&self) -> bool {
        self.log_parameters
    }

    /// Queues `record`; drops it (counting `lakehouse_audit_dropped_total`) when the queue is
    /// full. Never waits.
    pub fn record(&self, record: AuditRecord) {
        if self
            .sender
            .try_send(Message::Record(Box::new(record)))
            .is_err()
        {
            metrics::counter!(super::metrics::AUDIT_DROPPED).increment(1);
        }
    }

    /// Writes every record queued so far (waits for the writer).
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.sender.send(Message::Flush(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }

    /// Every record written so far, oldest file or segment first (records queued are flushed
    /// first).
    ///
    /// # Errors
    /// [`Error::Io`] or a storage error reading the log; [`Error::Internal`] naming the file
    /// and line of a record that is not valid JSON.
    pub async fn read(&self) -> Result<Vec<AuditRecord>> {
        self.flush().await;
        let mut parts: Vec<(String, Bytes)> = Vec::new();
        match self.target.as_ref() {
            Target::File(path) => {
                let mut files = rotated_files(path);
                files.push(path.clone());
                for file in files {
                    match tokio::fs::read(&file).await {
                        Ok(bytes) => parts.push((file.display().to_string(), bytes.into())),
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(source) => {
                            return Err(Error::Io {
                                context: format!("reading audit file {}", file.display()),
                                source,
                            });
                        }
                    }
                }
            }
            Target::Store { store, prefix } => {
                let mut objects: Vec<_> = store
                    .list(Some(prefix))
                    .try_collect()
                    .await
                    .map_err(lakehouse_catalog::Error::from)?;
                objects.sort_by(|a, b| a.location.cmp(&b.location));
                for object in objects {
                    let bytes = store
                        .get(&object.location)
                        .await
                        .map_err(lakehouse_catalog::Error::from)?
                        .bytes()
                        .await
                        .map_err(lakehouse_catalog::Error::from)?;
                    parts.push((object.location.to_string(), bytes));
                }
            }
        }
        let mut records = Vec::new();
        for (name, bytes) in parts {
            for (i, line) in bytes.split(|b| *b == b'\n').enumerate() {
                if line.is_empty() {
                    continue;
                }
                let record = serde_json::from_slice(line).map_err(|e| {
                    Error::Internal(format!("audit log {name} line {}: {e}", i + 1))
                })?;
                records.push(record);
            }
        }
        Ok(records)
    }
}

/// The writer: takes records off the queue and appends them, in batches, to the target.
async fn write_loop(
    target: Arc<Target>,
    mut receiver: mpsc::Receiver<Message>,
    options: AuditOptions,
) {
    let mut file = match target.as_ref() {
        Target::File(path) => Some(FileRotate::new(
            path,
            AppendCount::new(options.keep_files.max(1)),
            ContentLimit::BytesSurpassed(
                usize::try_from(options.max_file_bytes).unwrap_or(usize::MAX),
            ),
            Compression::None,
            None,
        )),
        Target::Store { .. } => None,
    };
    let mut pending: Vec<u8> = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_secs(options.flush_secs.max(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let message = tokio::select! {
            message = receiver.recv() => message,
            _ = tick.tick() => {
                flush_segment(&target, &mut pending).await;
                continue;
            }
        };
        let mut waiters = Vec::new();
        let mut batch = Vec::new();
        let mut closed = false;
        match message {
            Some(Message::Record(r)) => batch.push(r),
            Some(Message::Flush(tx)) => waiters.push(tx),
            None => closed = true,
        }
        // Take what else is queued now: one write per burst.
        while let Ok(message) = receiver.try_recv() {
            match message {
                Message::Record(r) => batch.push(r),
                Message::Flush(tx) => waiters.push(tx),
            }
        }
        let mut lines = Vec::new();
        for record in &batch {
            if serde_json::to_writer(&mut lines, record).is_ok() {
                lines.push(b'\n');
            }
        }
        match &mut file {
            Some(file) => {
                if !lines.is_empty() {
                    if let Err(e) = file.write_all(&lines).and_then(|()| file.flush()) {
                        tracing::warn!(error = %e, records = batch.len(), "audit log write failed");
                    } else {
                        metrics::counter!(super::metrics::AUDIT_WRITTEN)
                            .increment(batch.len() as u64);
                    }
                }
            }
            None => {
                pending.extend_from_slice(&lines);
                metrics::counter!(super::metrics::AUDIT_WRITTEN).increment(batch.len() as u64);
                if !waiters.is_empty() || closed {
                    flush_segment(&target, &mut pending).await;
                }
            }
        }
        for waiter in waiters {
            let _ = waiter.send(());
        }
        if closed {
            return;
        }
    }
}

/// Writes `pending` as one new segment object (object-store targets; a no-op for files or when
/// nothing is pending).
async fn flush_segment(target: &Target, pending: &mut Vec<u8>) {
    let Target::Store { store, prefix } = target else {
        return;
    };
    if pending.is_empty() {
        return;
    }
    let name = format!(
        "audit-{}-{}.jsonl",
        Utc::now().format("%Y%m%dT%H%M%S%.6fZ"),
        uuid::Uuid::new_v4()
    );
    let path = prefix.clone().join(name);
    let body = PutPayload::from(std::mem::take(pending));
    if let Err(e) = store.put(&path, body).await {
        tracing::warn!(error = %e, %path, "audit segment write failed; records lost");
    }
}

/// The rotated files of the local audit file `path` (`path.N`), oldest (highest `N`) first.
fn rotated_files(path: &std::path::Path) -> Vec<PathBuf> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str())) else {
        return Vec::new();
    };
    let dir = if dir.as_os_str().is_empty() {
        std::path::Path::new(".")
    } else {
        dir
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut numbered: Vec<(u64, PathBuf)> = entries
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let file_name = entry.file_name();
            let n = file_name
                .to_str()?
                .strip_prefix(name)?
                .strip_prefix('.')?
                .parse()
                .ok()?;
            Some((n, entry.path()))
        })
        .collect();
    numbered.sort_by_key(|entry| std::cmp::Reverse(entry.0));
    numbered.into_iter().map(|(_, p)| p).collect()
}
