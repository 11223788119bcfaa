//! How many tasks a worker is running, for `workers()`.
//!
//! datafusion-distributed keeps a task on a worker for as long as the coordinator's
//! `CoordinatorChannel` call for it is open: the coordinator opens one per task (its first
//! message is the task's plan) and ends it when the query finishes, fails or is cancelled; the
//! worker then drops the task's state. [`RunningTasks`] wraps the worker service and counts
//! those open calls, and answers the count in the [`RUNNING_TASKS_HEADER`] response metadata
//! of every `GetWorkerInfo` call (the library's response has only the version).

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use http_body_util::BodyExt;
use tonic::body::Body;
use tonic::codegen::{BoxFuture, Service};
use tonic::server::NamedService;

/// Response metadata of `GetWorkerInfo`: the tasks the worker is running, a decimal count.
pub const RUNNING_TASKS_HEADER: &str = "x-lakehouse-running-tasks";

/// The gRPC method that carries one task from the coordinator to a worker.
const TASK_METHOD: &str = "/worker.WorkerService/CoordinatorChannel";
/// The gRPC method the coordinator probes workers with.
const INFO_METHOD: &str = "/worker.WorkerService/GetWorkerInfo";

/// The worker service `S` with its running tasks counted (see the module docs).
#[derive(Debug, Clone)]
pub struct RunningTasks<S> {
    inner: S,
    running: Arc<AtomicU64>,
}

impl<S> RunningTasks<S> {
    /// `inner` (datafusion-distributed's worker server, behind the secret check) counted.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            running: Arc::default(),
        }
    }
}

/// One open task call: counted from when the call arrives until its response stream is done
/// or dropped (the coordinator hung up).
/// The task's `worker_task` trace span (a child of the coordinator's span, from the call's
/// `traceparent`) lives as long as the task.
struct Running {
    count: Arc<AtomicU64>,
    _span: tracing::Span,
}

impl Running {
    fn start(running: &Arc<AtomicU64>, span: tracing::Span) -> Self {
        let now = running.fetch_add(1, Ordering::Relaxed) + 1;
        metrics::counter!(crate::observability::metrics::WORKER_TASKS).increment(1);
        metrics::gauge!(crate::observability::metrics::WORKER_TASKS_RUNNING).set(now as f64);
        Self {
            count: Arc::clone(running),
            _span: span,
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let now = self.count.fetch_sub(1, Ordering::Relaxed) - 1;
        metrics::gauge!(crate::observability::metrics::WORKER_TASKS_RUNNING).set(now as f64);
    }
}

impl<S, B> Service<http::Request<Body>> for RunningTasks<S>
where
    S: Service<http::Request<Body>, Response = http::Response<B>, Error = Infallible>,
    S::Future: Send + 'static,
    B: tonic::codegen::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<tonic::codegen::StdError>,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        match request.uri().path() {
            TASK_METHOD => {
                let span = tracing::info_span!("worker_task", otel.kind = "server");
                crate::observability::traces::set_parent_from(&span, request.headers());
                let running = Running::start(&self.running, span.clone());
                let response = {
                    let _entered = span.enter();
                    self.inner.call(request)
                };
                Box::pin(async move {
                    let response = tracing::Instrument::instrument(response, span).await?;
                    // The task ends with its response stream: the count drops with the body.
                    Ok(response.map(|body| {
                        Body::new(body.map_frame(move |frame| {
                            let _task = &running;
                            frame
                        }))
                    }))
                })
            }
            INFO_METHOD => {
                let running = Arc::clone(&self.running);
                let response = self.inner.call(request);
                Box::pin(async move {
                    let mut response = response.await?.map(Body::new);
                    response
                        .headers_mut()
                        .insert(RUNNING_TASKS_HEADER, running.load(Ordering::Relaxed).into());
                    Ok(response)
                })
            }
            _ => {
                let response = self.inner.call(request);
                Box::pin(async move { Ok(response.await?.map(Body::new)) })
            }
        }
    }
}

impl<S: NamedService> NamedService for RunningTasks<S> {
    const NAME: &'static str = S::NAME;
}
