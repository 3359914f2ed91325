//! The worker's HTTP endpoint: `ANY /{functionId}[/path]` runs the function's serving
//! deployment in a fresh instance (`/metrics` and `/healthz` beside). hyper serves HTTP/1.1 on
//! the reactor threads ([`super::reactors`]); a request's body is read in full first (bounded
//! in size and time, so a slow client holds no instance), then an instance permit of the
//! Function is taken (bounded wait, then 503), and the invocation runs on an invoker thread,
//! or on the reactor thread itself when the Function is known to be short
//! ([`super::invoker`]). Every response carries a receipt, `Fnvm-Invocation`, saying what it
//! cost.
//! `?async` queues the invocation instead ([`crate::delivery::queue`]) and answers `202` once
//! it is stored.

use super::execute::{self, receipt_value};
use super::invoker::{Dispatched, Invoker};
use super::reactors::{self, Reactors};
use super::respond::{self, Answer, Call};
use super::Worker;
use crate::delivery::queue::{self, AsyncQueue};
use crate::model::{Accepted, Function, InvocationRequest};
use crate::store::Enqueued;
use bytes::{Bytes, BytesMut};
use futures::FutureExt as _;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body as _, Incoming};
use hyper::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a request waits for an instance of a function this worker holds no share of (the
/// scheduler moves a share in a few passes: the worker giving it up drains first).
const PLACEMENT_WAIT: Duration = Duration::from_secs(5);

/// Limits of the endpoint.
#[derive(Clone, Debug)]
pub struct HttpConfig {
    /// Largest request body, in bytes (413 beyond).
    pub max_body_bytes: u64,
    /// Largest request head (line and headers), in bytes (431 beyond).
    pub max_header_bytes: usize,
    /// Largest response body a guest may write, in bytes (502 beyond).
    pub max_response_bytes: usize,
    /// How long a request waits for one of its Function's instances (503 after).
    pub instance_wait: Duration,
    /// How long a client may take to send a request's head.
    pub header_timeout: Duration,
    /// How long a client may stay silent while sending a body (408 after).
    pub body_idle_timeout: Duration,
    /// How long a client may take to send a whole body (408 after).
    pub body_timeout: Duration,
    /// Whether jobs of Functions known to be short may run on the reactor's threads (see
    /// [`super::invoker`]).
    pub inline_short_jobs: bool,
    /// Threads that accept and serve connections, each with a reactor of its own; 0 serves on
    /// the calling runtime instead.
    pub reactor_threads: usize,
    /// What each reactor thread applies to itself first (the seccomp filter), if anything:
    /// they run short guests inline.
    pub confine: Option<super::Confine>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            max_body_bytes: 16 << 20,
            max_header_bytes: 64 << 10,
            max_response_bytes: 16 << 20,
            instance_wait: Duration::from_secs(1),
            header_timeout: Duration::from_secs(10),
            body_idle_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(60),
            inline_short_jobs: true,
            reactor_threads: 0,
            confine: None,
        }
    }
}

/// Everything a request needs.
#[derive(Debug)]
struct Endpoint {
    worker: Arc<Worker>,
    invoker: Arc<Invoker>,
    queue: Arc<AsyncQueue>,
    config: HttpConfig,
    /// Invocation ids: a random prefix of this process and a counter.
    id_prefix: u32,
    next_id: AtomicU64,
}

/// Serves `listener` on `config.reactor_threads` threads of its own (see [`reactors`]), or on
/// the current tokio runtime if that is 0.
pub fn start(
    listener: std::net::TcpListener,
    worker: Arc<Worker>,
    invoker: Arc<Invoker>,
    queue: Arc<AsyncQueue>,
    config: HttpConfig,
) -> std::io::Result<Reactors> {
    let mut prefix = [0u8; 4];
    let _ = getrandom::fill(&mut prefix);
    let threads = config.reactor_threads;
    let config_confine = config.confine;
    let endpoint = Arc::new(Endpoint {
        worker,
        invoker,
        queue,
        config,
        id_prefix: u32::from_le_bytes(prefix),
        next_id: AtomicU64::new(1),
    });
    reactors::start(listener, threads, config_confine, move |stream| {
        serve_connection(endpoint.clone(), stream)
    })
}

/// Serves one connection until it closes.
async fn serve_connection(endpoint: Arc<Endpoint>, stream: tokio::net::TcpStream) {
    let header_timeout = endpoint.config.header_timeout;
    let service = hyper::service::service_fn(move |req| {
        let endpoint = endpoint.clone();
        async move { Ok::<_, Infallible>(endpoint.handle(req).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        // A backstop for the connection's buffer; the head's own limit is checked per request
        // (431).
        .max_buf_size(256 << 10)
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service);
    if let Err(e) = conn.await {
        tracing::debug!(error = %e, "worker: connection ended");
    }
}

/// A response from an answer, with the receipt when there is one.
fn response(answer: Answer, receipt: Option<HeaderValue>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(answer.body));
    *r.status_mut() =
        hyper::StatusCode::from_u16(answer.status).unwrap_or(hyper::StatusCode::BAD_GATEWAY);
    let headers = r.headers_mut();
    if let Some(ct) = answer.content_type {
        headers.insert(CONTENT_TYPE, ct);
    }
    for (k, v) in answer.headers {
        headers.append(k, v);
    }
    if let Some(receipt) = receipt {
        headers.insert(FNVM_INVOCATION, receipt);
    }
    if let Some(reason) = answer.reason {
        r.extensions_mut().insert(reason);
    }
    r
}

/// The receipt header.
const FNVM_INVOCATION: HeaderName = HeaderName::from_static("fnvm-invocation");

/// What a cold start cost: loading the function here, waiting for a share of its instances.
const FNVM_COLD_START: HeaderName = HeaderName::from_static("fnvm-cold-start");

/// An invocation's id: this process's random prefix and a counter, in hex.
#[derive(Clone, Copy, Debug)]
struct InvocationId(u32, u64);

impl std::fmt::Display for InvocationId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:08x}{:08x}", self.0, self.1)
    }
}

/// fnvm's own query parameters of a request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Modes {
    /// `debug`: answer the debug report.
    debug: bool,
    /// `trigger=http`: the structured HTTP trigger.
    http_trigger: bool,
    /// `async`: queue the invocation, answer 202 at once.
    queued: bool,
}

/// Splits fnvm's own query parameters (`debug`, `trigger=http`, `async`) from the function's.
fn split_query(query: Option<&str>) -> (Modes, String) {
    let mut modes = Modes::default();
    let mut rest = Vec::new();
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match (k, v) {
            ("debug", _) => modes.debug = true,
            ("trigger", "http") => modes.http_trigger = true,
            ("trigger", _) => {}
            ("async", _) => modes.queued = true,
            _ => rest.push(pair),
        }
    }
    (modes, rest.join("&"))
}

impl Endpoint {
    async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let start = Instant::now();
        let path = req.uri().path();
        if path == "/metrics" {
            let mut a = Answer::text(200, self.worker.metrics.render());
            a.content_type = Some(HeaderValue::from_static("text/plain; version=0.0.4"));
            return response(a, None);
        }
        if path == "/healthz" {
            return response(Answer::text(200, "ok\n"), None);
        }
        let rest = path.strip_prefix('/').unwrap_or(path);
        let (fid, path_info) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let Some((served, state, loaded_in)) = self.worker.route_or_demand(fid).await else {
            return response(
                Answer::text(404, "no function is served here under that id\n"),
                None,
            );
        };
        let fm = state.metrics.clone();
        let (modes, query) = split_query(req.uri().query());
        let path_info = path_info.to_string();
        let (parts, body) = req.into_parts();
        let head_bytes: usize = respond::uri_len(&parts.uri)
            + parts
                .headers
                .iter()
                .map(|(k, v)| k.as_str().len() + v.len() + 4)
                .sum::<usize>();
        if head_bytes > self.config.max_header_bytes {
            fm.status(431);
            return response(
                Answer::text(
                    431,
                    format!(
                        "the request's head is larger than {} bytes\n",
                        self.config.max_header_bytes
                    ),
                ),
                None,
            );
        }
        let max_body = if modes.queued {
            self.queue.config.max_request_bytes
        } else {
            self.config.max_body_bytes
        };
        let body = match self.read_body(body, &parts.headers, max_body).await {
            Ok(b) => b,
            Err(a) => {
                fm.status(a.status);
                return response(a, None);
            }
        };
        if modes.queued {
            let request = queue::request_of(
                &parts.method,
                &path_info,
                &query,
                &parts.headers,
                &body,
                modes.debug,
                modes.http_trigger,
            );
            // The store, off this thread: it is confined (see `Worker::off_guest_threads`).
            let (queue, f) = (self.queue.clone(), state.function.clone());
            let a = self
                .worker
                .off_guest_threads(async move { enqueue(&queue, &f, &request).await })
                .await
                .unwrap_or_else(|| {
                    Answer::text(503, "the invocation could not be queued; retry shortly\n")
                        .with("retry-after", "1")
                });
            fm.status(a.status);
            return response(a, None);
        }
        // Most requests find a free instance: no timer then.
        let cold = loaded_in.is_some() || state.instances.share() == 0;
        // Only a cold start's wait is reported.
        let waited = cold.then(Instant::now);
        let permit = match state.instances.try_acquire() {
            Some(p) => Some(p),
            None => {
                // No share here yet (asked for on demand, or moving from another worker):
                // the scheduler's hand-over takes a few passes.
                let wait = if state.instances.share() == 0 {
                    self.config.instance_wait.max(PLACEMENT_WAIT)
                } else {
                    self.config.instance_wait
                };
                state.instances.acquire(wait).await
            }
        };
        let Some(permit) = permit else {
            fm.status(503);
            let a = Answer::text(
                503,
                format!(
                    "all {} instances of this function are busy; retry shortly\n",
                    state.function.max_instances
                ),
            )
            .with("retry-after", "1");
            return response(a, None);
        };
        // A cold start (loaded here for this request, or waiting for a share to come here):
        // the response says what it cost.
        // The metric counts what the header reports, so each cold response is one observation.
        let cold_start = cold
            .then(|| {
                let load = loaded_in.unwrap_or_default();
                let wait = waited.map(|w| w.elapsed()).unwrap_or_default();
                self.worker.metrics.cold_start(load + wait);
                let (load_ms, wait_ms) = (load.as_millis(), wait.as_millis());
                HeaderValue::from_str(&format!("load_ms={load_ms}, wait_ms={wait_ms}")).ok()
            })
            .flatten();
        let call = Call {
            method: parts.method,
            uri: parts.uri,
            path_info,
            query,
            headers: parts.headers,
            body,
            debug: modes.debug,
            http_trigger: modes.http_trigger,
        };
        let mut invocation = respond::invocation(&call, &state, self.config.max_response_bytes);
        invocation.measure_cpu = state.runs.wants_cpu_time();
        let id = InvocationId(self.id_prefix, self.next_id.fetch_add(1, Ordering::Relaxed));
        let short = self.config.inline_short_jobs && state.runs.is_short();
        let job = execute::job(
            self.worker.clone(),
            served,
            state,
            call,
            invocation,
            permit,
            id,
            false,
        );
        let reply = match self.invoker.dispatch(job, short) {
            Ok(Dispatched::Inline(reply)) => {
                self.worker.metrics.job(true);
                reply
            }
            Ok(Dispatched::Queued(rx)) => {
                self.worker.metrics.job(false);
                rx.await.ok()
            }
            Err(_) => {
                fm.status(503);
                return response(Answer::text(503, "the worker is shutting down\n"), None);
            }
        };
        let (answer, receipt) = match reply {
            Some(e) => (e.answer, e.receipt),
            None => (
                Answer::text(500, "the invocation ended without an answer\n"),
                receipt_value(format!("id={id}")),
            ),
        };
        fm.status(answer.status);
        fm.total.observe(start.elapsed());
        let mut r = response(answer, Some(receipt));
        if let Some(v) = cold_start {
            r.headers_mut().insert(FNVM_COLD_START, v);
        }
        r
    }

    /// Reads a whole body of at most `max` bytes within the time limits.
    async fn read_body(
        &self,
        mut body: Incoming,
        headers: &HeaderMap,
        max: u64,
    ) -> Result<Bytes, Answer> {
        if body.is_end_stream() {
            return Ok(Bytes::new());
        }
        let too_large = || {
            Answer::text(
                413,
                format!("the request body is larger than {max} bytes\n"),
            )
        };
        let declared = headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > max) {
            return Err(too_large());
        }
        let deadline = Instant::now() + self.config.body_timeout;
        // A body in one frame (the usual case) is kept as it came, without a copy.
        let mut first: Option<Bytes> = None;
        let mut buf = BytesMut::new();
        loop {
            // What hyper already buffered needs no timer.
            let frame = match body.frame().now_or_never() {
                Some(frame) => frame,
                None => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    let wait = left.min(self.config.body_idle_timeout);
                    match tokio::time::timeout(wait, body.frame()).await {
                        Err(_) => {
                            return Err(Answer::text(408, "the request body came too slowly\n"))
                        }
                        Ok(frame) => frame,
                    }
                }
            };
            let frame = match frame {
                None => break,
                Some(Err(e)) => {
                    return Err(Answer::text(
                        400,
                        format!("reading the request body: {e}\n"),
                    ))
                }
                Some(Ok(f)) => f,
            };
            if let Ok(data) = frame.into_data() {
                let held = first.as_ref().map_or(0, Bytes::len) + buf.len();
                if held as u64 + data.len() as u64 > max {
                    return Err(too_large());
                }
                if first.is_none() && buf.is_empty() {
                    first = Some(data);
                } else {
                    if let Some(f) = first.take() {
                        buf.extend_from_slice(&f);
                    }
                    buf.extend_from_slice(&data);
                }
            }
        }
        Ok(match first {
            Some(f) => f,
            None => buf.freeze(),
        })
    }
}

/// Queues an asynchronous invocation; the answer says where to follow it.
async fn enqueue(queue: &AsyncQueue, f: &Function, request: &InvocationRequest) -> Answer {
    match queue.enqueue(f, request).await {
        Ok(Enqueued::Queued(inv)) => {
            let accepted = Accepted {
                status_path: format!(
                    "/v4/functions/organisations/{}/functions/{}/invocations/{}",
                    f.owner_id, f.id, inv.id
                ),
                id: inv.id,
                status: inv.status,
            };
            let mut a = Answer::text(202, serde_json::to_vec(&accepted).unwrap_or_default());
            a.content_type = Some(HeaderValue::from_static("application/json"));
            a
        }
        Ok(Enqueued::Full) => Answer::text(
            429,
            format!(
                "the function already has {} unfinished asynchronous invocations; retry later\n",
                queue.config.max_unfinished
            ),
        )
        .with("retry-after", "10"),
        Ok(Enqueued::NoFunction) => Answer::text(404, "no function is served here under that id\n"),
        Err(e) => {
            tracing::warn!(error = %e, "worker: queueing an invocation");
            Answer::text(503, "the invocation could not be queued; retry shortly\n")
                .with("retry-after", "1")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnvm_parameters_leave_the_query() {
        let m = |debug, http_trigger, queued| Modes {
            debug,
            http_trigger,
            queued,
        };
        assert_eq!(split_query(None), (m(false, false, false), String::new()));
        assert_eq!(
            split_query(Some("debug&trigger=http&x=1&y")),
            (m(true, true, false), "x=1&y".into())
        );
        assert_eq!(
            split_query(Some("debug=1")),
            (m(true, false, false), String::new())
        );
        assert_eq!(
            split_query(Some("trigger=pulsar&a=b&async")),
            (m(false, false, true), "a=b".into())
        );
    }
}
