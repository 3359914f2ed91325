//! The router's HTTP side: reads a request's body (bounded in size and time, so a slow client
//! holds no worker), picks the workers to try from the routing table, and forwards the request
//! to the first that accepts the connection, streaming its response back. A refused connection
//! (the worker is gone) moves on to the next candidate: nothing of the request reached it. Any
//! failure after the request went out is a 502: the worker may have run it, and running it
//! again elsewhere could do twice what the caller asked once.

use super::SharedTable;
use bytes::Bytes;
use http_body_util::{BodyExt, Either, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue, HOST};
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The router's limits.
#[derive(Clone, Debug)]
pub struct RouterConfig {
    /// Largest request body, in bytes (413 beyond).
    pub max_body_bytes: u64,
    /// How long a client may take to send its body (408 beyond).
    pub body_timeout: Duration,
    /// How long connecting to a worker may take before the next is tried.
    pub connect_timeout: Duration,
    /// Workers tried per request, at most.
    pub max_attempts: usize,
}

impl Default for RouterConfig {
    fn default() -> Self {
        RouterConfig {
            max_body_bytes: 16 << 20,
            body_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(1),
            max_attempts: 3,
        }
    }
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
struct Counters {
    forwarded: AtomicU64,
    retried: AtomicU64,
    unreachable: AtomicU64,
    failed: AtomicU64,
}

struct Proxy {
    table: SharedTable,
    client: Client<HttpConnector, Full<Bytes>>,
    config: RouterConfig,
    counters: Counters,
}

type Body = Either<Incoming, Full<Bytes>>;

/// The router's listener, until [`RouterServer::stop`].
#[derive(Debug)]
pub struct RouterServer {
    task: tokio::task::JoinHandle<()>,
}

impl RouterServer {
    /// Stops accepting (connections under way are dropped).
    pub async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

/// Serves the router on `listener` until stopped.
pub fn start(
    listener: std::net::TcpListener,
    table: SharedTable,
    config: RouterConfig,
) -> std::io::Result<RouterServer> {
    listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(config.connect_timeout));
    connector.set_nodelay(true);
    let client = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        // hyper retries only a request that never started to be written (its pooled
        // connection turned out closed): safe, nothing reached a worker.
        .retry_canceled_requests(true)
        .build(connector);
    let proxy = Arc::new(Proxy {
        table,
        client,
        config,
        counters: Counters::default(),
    });
    let task = tokio::spawn(async move {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "router: accepting");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let proxy = proxy.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let proxy = proxy.clone();
                    async move { Ok::<_, Infallible>(proxy.handle(req, peer).await) }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(10))
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(stream), service);
                if let Err(e) = conn.await {
                    tracing::debug!(error = %e, "router: connection ended");
                }
            });
        }
    });
    Ok(RouterServer { task })
}

fn text(status: u16, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(Either::Right(Full::new(body.into())));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    r
}

/// Headers that belong to one connection, not to the request (RFC 9110, 7.6.1).
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

impl Proxy {
    async fn handle(&self, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
        let path = req.uri().path();
        if path == "/healthz" {
            return text(200, "ok\n");
        }
        if path == "/metrics" {
            return self.metrics();
        }
        let function_id = path
            .trim_start_matches('/')
            .split('/')
            .next()
            .unwrap_or("")
            .to_string();
        if function_id.is_empty() {
            return text(404, "no function is served here under that id\n");
        }
        let path_and_query = req
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string();
        let (parts, body) = req.into_parts();
        let limited = Limited::new(body, self.config.max_body_bytes as usize);
        let body = match tokio::time::timeout(self.config.body_timeout, limited.collect()).await {
            Ok(Ok(b)) => b.to_bytes(),
            Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
                return text(
                    413,
                    format!(
                        "the request body is larger than {} bytes\n",
                        self.config.max_body_bytes
                    ),
                )
            }
            Ok(Err(_)) => return text(400, "the request body could not be read\n"),
            Err(_) => return text(408, "the request body took too long to arrive\n"),
        };
        let candidates = {
            let table = self.table.read().unwrap_or_else(|e| e.into_inner()).clone();
            table.candidates(&function_id)
        };
        if candidates.is_empty() {
            self.counters.unreachable.fetch_add(1, Ordering::Relaxed);
            let mut r = text(503, "no worker is live; retry shortly\n");
            r.headers_mut()
                .insert("retry-after", HeaderValue::from_static("1"));
            return r;
        }
        for (attempt, backend) in candidates
            .iter()
            .take(self.config.max_attempts.max(1))
            .enumerate()
        {
            let uri = format!("{}{path_and_query}", backend.url);
            let mut builder = Request::builder().method(parts.method.clone()).uri(&uri);
            for (k, v) in &parts.headers {
                if k == HOST || HOP_BY_HOP.contains(&k.as_str()) {
                    continue;
                }
                builder = builder.header(k, v);
            }
            let forwarded_for = match parts.headers.get("x-forwarded-for") {
                Some(v) => format!("{}, {}", v.to_str().unwrap_or(""), peer.ip()),
                None => peer.ip().to_string(),
            };
            builder = builder.header(
                HeaderName::from_static("x-forwarded-for"),
                HeaderValue::from_str(&forwarded_for).unwrap_or(HeaderValue::from_static("")),
            );
            let Ok(forward) = builder.body(Full::new(body.clone())) else {
                return text(400, "the request cannot be forwarded\n");
            };
            backend.in_flight.fetch_add(1, Ordering::Relaxed);
            let sent = self.client.request(forward).await;
            backend.in_flight.fetch_sub(1, Ordering::Relaxed);
            match sent {
                Ok(resp) => {
                    self.counters.forwarded.fetch_add(1, Ordering::Relaxed);
                    if attempt > 0 {
                        self.counters.retried.fetch_add(1, Ordering::Relaxed);
                    }
                    return resp.map(Either::Left);
                }
                // Nothing reached the worker: the next one may take it.
                Err(e) if e.is_connect() => {
                    tracing::debug!(worker = %backend.id, error = %e, "router: worker refused");
                    backend.failed();
                    continue;
                }
                Err(e) => {
                    tracing::warn!(worker = %backend.id, error = %e, "router: forwarding failed");
                    backend.failed();
                    self.counters.failed.fetch_add(1, Ordering::Relaxed);
                    return text(
                        502,
                        "the worker failed while handling the request; it may have run\n",
                    );
                }
            }
        }
        self.counters.unreachable.fetch_add(1, Ordering::Relaxed);
        let mut r = text(
            503,
            "no worker holding the function could be reached; retry shortly\n",
        );
        r.headers_mut()
            .insert("retry-after", HeaderValue::from_static("1"));
        r
    }

    fn metrics(&self) -> Response<Body> {
        let mut out = String::new();
        out.push_str("# HELP fnvm_router_requests_total Requests by what the router did.\n");
        out.push_str("# TYPE fnvm_router_requests_total counter\n");
        let c = &self.counters;
        for (result, n) in [
            ("forwarded", &c.forwarded),
            ("unreachable", &c.unreachable),
            ("failed", &c.failed),
        ] {
            let _ = writeln!(
                out,
                "fnvm_router_requests_total{{result=\"{result}\"}} {}",
                n.load(Ordering::Relaxed)
            );
        }
        out.push_str(
            "# HELP fnvm_router_retried_total Requests forwarded after a refused connection.\n",
        );
        out.push_str("# TYPE fnvm_router_retried_total counter\n");
        let _ = writeln!(
            out,
            "fnvm_router_retried_total {}",
            c.retried.load(Ordering::Relaxed)
        );
        let workers = self
            .table
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .workers();
        out.push_str("# HELP fnvm_router_workers Live workers in the routing table.\n");
        out.push_str("# TYPE fnvm_router_workers gauge\n");
        let _ = writeln!(out, "fnvm_router_workers {workers}");
        let mut r = text(200, out);
        r.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        );
        r
    }
}
