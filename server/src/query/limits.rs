//! Admission control and per-query limits: a cap on concurrent queries, a per-query timeout, a
//! result-size guard, and cancellation by query id (Flight `CancelFlightInfo`).
//!
//! Each query execution (a DoGet of a statement ticket, or a data-changing statement) first
//! takes one of `max_concurrent_queries` slots, waiting at most `queue_timeout_secs` for one
//! (then `ResourceExhausted`). While it runs, a [`QueryGuard`] holds the slot and a
//! cancellation token registered under the ticket's query id; when the timeout passes, the
//! result grows past `max_result_bytes`, or the query is cancelled, the stream ends with
//! `DeadlineExceeded`, `ResourceExhausted` or `Cancelled` and the DataFusion stream is dropped,
//! which stops its tasks: the work ends on the server, not only the client's wait.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use super::QueryOptions;
use crate::error::{Error, Result};

/// Default cap on queries running at once.
pub const DEFAULT_MAX_CONCURRENT_QUERIES: usize = 16;
/// Default wait for a free slot, in seconds.
pub const DEFAULT_QUEUE_TIMEOUT_SECS: f64 = 30.0;
/// How long a cancellation of a query that has not started yet is remembered.
const EARLY_CANCEL_MEMORY: Duration = Duration::from_secs(3600);

/// The limits every query runs under, and the registry of running queries.
#[derive(Debug)]
pub struct Admission {
    slots: Arc<Semaphore>,
    max_concurrent: usize,
    queue_timeout: Duration,
    timeout: Option<Duration>,
    max_result_bytes: Option<u64>,
    running: Mutex<HashMap<String, CancellationToken>>,
    /// Queries waiting for a slot now.
    queued: std::sync::atomic::AtomicUsize,
    cancelled_before_start: Mutex<HashMap<String, Instant>>,
}

/// Seconds as a duration; `None` for absent or zero.
fn seconds(name: &str, value: Option<f64>) -> Result<Option<Duration>> {
    match value {
        None => Ok(None),
        Some(0.0) => Ok(None),
        Some(s) => Duration::try_from_secs_f64(s)
            .map(Some)
            .map_err(|_| Error::Config(format!("query.{name} must be a positive number"))),
    }
}

impl Admission {
    /// The limits of `options` (see [`QueryOptions`]).
    ///
    /// # Errors
    /// [`Error::Config`] for a zero query cap or negative durations.
    pub fn new(options: &QueryOptions) -> Result<Self> {
        let max_concurrent = options
            .max_concurrent_queries
            .unwrap_or(DEFAULT_MAX_CONCURRENT_QUERIES);
        if max_concurrent == 0 {
            return Err(Error::Config(
                "query.max_concurrent_queries must be at least 1".into(),
            ));
        }
        let queue_timeout = seconds(
            "queue_timeout_secs",
            Some(
                options
                    .queue_timeout_secs
                    .unwrap_or(DEFAULT_QUEUE_TIMEOUT_SECS),
            ),
        )?
        .unwrap_or(Duration::ZERO);
        Ok(Self {
            slots: Arc::new(Semaphore::new(max_concurrent)),
            max_concurrent,
            queue_timeout,
            timeout: seconds("timeout_secs", options.timeout_secs)?,
            max_result_bytes: options.max_result_bytes.filter(|b| *b > 0),
            running: Mutex::default(),
            queued: Default::default(),
            cancelled_before_start: Mutex::default(),
        })
    }

    /// Takes a slot for one query, registered under `query_id` for cancellation.
    ///
    /// # Errors
    /// [`Error::ResourceExhausted`] when no slot frees up within the queue timeout;
    /// [`Error::Cancelled`] when `query_id` was cancelled before it started.
    pub async fn admit(self: &Arc<Self>, query_id: Option<&str>) -> Result<QueryGuard> {
        if let Some(id) = query_id
            && self
                .cancelled_before_start
                .lock()
                .expect("lock")
                .remove(id)
                .is_some()
        {
            return Err(Error::Cancelled(format!("query {id} was cancelled")));
        }
        let acquire = Arc::clone(&self.slots).acquire_owned();
        let waited = std::time::Instant::now();
        let waiting = Waiting::new(&self.queued);
        let permit = tracing::Instrument::instrument(
            tokio::time::timeout(self.queue_timeout, acquire),
            tracing::info_span!("admission"),
        )
        .await;
        drop(waiting);
        metrics::histogram!(crate::observability::metrics::QUEUE_SECONDS)
            .record(waited.elapsed().as_secs_f64());
        let permit = match permit {
            Ok(permit) => permit.map_err(|_| Error::Internal("query slots closed".into()))?,
            Err(_) => {
                return Err(Error::ResourceExhausted(format!(
                    "server busy: {} queries are running (query.max_concurrent_queries) and \
                     none finished within {:.1} s (query.queue_timeout_secs); retry later",
                    self.max_concurrent,
                    self.queue_timeout.as_secs_f64()
                )));
            }
        };
        let token = CancellationToken::new();
        if let Some(id) = query_id {
            self.running
                .lock()
                .expect("lock")
                .insert(id.to_string(), token.clone());
        }
        Ok(QueryGuard {
            _permit: permit,
            id: query_id.map(String::from),
            admission: Arc::clone(self),
            token,
            deadline: self.timeout.map(|t| tokio::time::Instant::now() + t),
        })
    }

    /// Cancels query `query_id`: a running one stops at once; one not started yet is refused
    /// when it starts (remembered for an hour). Returns whether it was running.
    pub fn cancel(&self, query_id: &str) -> bool {
        if let Some(token) = self.running.lock().expect("lock").get(query_id) {
            token.cancel();
            return true;
        }
        let mut early = self.cancelled_before_start.lock().expect("lock");
        let now = Instant::now();
        early.retain(|_, at| now.duration_since(*at) < EARLY_CANCEL_MEMORY);
        early.insert(query_id.to_string(), now);
        false
    }

    /// Queries holding a slot now.
    pub fn running(&self) -> usize {
        self.max_concurrent - self.slots.available_permits()
    }

    /// Queries waiting for a slot now.
    pub fn queued(&self) -> usize {
        self.queued.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The per-query timeout, if any.
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// The result-size guard in bytes (Flight data sent), if any.
    pub fn max_result_bytes(&self) -> Option<u64> {
        self.max_result_bytes
    }
}

/// Counts one query in [`Admission::queued`] while it lives (also when the wait is dropped).
struct Waiting<'a>(&'a std::sync::atomic::AtomicUsize);

impl<'a> Waiting<'a> {
    fn new(queued: &'a std::sync::atomic::AtomicUsize) -> Self {
        queued.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Self(queued)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// One admitted query: holds its slot until dropped.
#[derive(Debug)]
pub struct QueryGuard {
    _permit: OwnedSemaphorePermit,
    id: Option<String>,
    admission: Arc<Admission>,
    /// Cancelled by [`Admission::cancel`].
    pub token: CancellationToken,
    /// When the query's time is up (`None`: no timeout).
    pub deadline: Option<tokio::time::Instant>,
}

impl QueryGuard {
    /// Runs `work` under this guard: ends with [`Error::DeadlineExceeded`] at the deadline or
    /// [`Error::Cancelled`] on cancellation, dropping `work` (which stops it).
    ///
    /// # Errors
    /// `work`'s errors, or the two above.
    pub async fn run<T>(&self, work: impl Future<Output = Result<T>>) -> Result<T> {
        tokio::select! {
            biased;
            _ = self.token.cancelled() => Err(Error::Cancelled("query cancelled".into())),
            _ = sleep_until(self.deadline) => Err(self.deadline_error()),
            result = work => result,
        }
    }

    /// The error for a query that ran out of time.
    pub fn deadline_error(&self) -> Error {
        Error::DeadlineExceeded(format!(
            "query exceeded its time limit of {:.1} s (query.timeout_secs) and was stopped",
            self.admission.timeout.unwrap_or_default().as_secs_f64()
        ))
    }
}

/// Completes at `deadline`; never without one.
pub async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

impl Drop for QueryGuard {
    fn drop(&mut self) {
        if let Some(id) = &self.id {
            self.admission.running.lock().expect("lock").remove(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn slots_wait_then_refuse_and_cancellation_is_by_id() {
        let options = QueryOptions {
            max_concurrent_queries: Some(1),
            queue_timeout_secs: Some(0.05),
            ..QueryOptions::default()
        };
        let admission = Arc::new(Admission::new(&options).unwrap());
        let first = admission.admit(Some("q1")).await.unwrap();
        assert_eq!(admission.running(), 1);
        let err = admission.admit(None).await.unwrap_err();
        assert!(matches!(err, Error::ResourceExhausted(_)), "{err}");
        assert!(admission.cancel("q1"));
        assert!(first.token.is_cancelled());
        drop(first);
        assert_eq!(admission.running(), 0);
        // Cancelled before it started: refused when it starts, once.
        assert!(!admission.cancel("q2"));
        assert!(matches!(
            admission.admit(Some("q2")).await.unwrap_err(),
            Error::Cancelled(_)
        ));
        assert!(admission.admit(Some("q2")).await.is_ok());

        let zero = QueryOptions {
            max_concurrent_queries: Some(0),
            ..QueryOptions::default()
        };
        assert!(Admission::new(&zero).is_err());
    }
}
