//! The ceiling of the HTTP benchmark (`benches/http.sh`, server "a"): a bare hyper 1.x
//! HTTP/1.1 server that answers every request, whatever its method and path, with `200 OK`,
//! `Content-Type: text/plain` and the body `Hello World\n`. No WebAssembly, no routing, no
//! body read: what the HTTP stack alone costs on this machine.
//!
//! ```text
//! hyper_hello --listen 127.0.0.1:PORT [--work-us N]
//! ```
//!
//! `--work-us N` spins N µs of CPU in every request before answering: a calibration, to see
//! how the ceiling falls when each request costs that much more (on a machine whose cores wrk
//! shares, the fall is steep; see benches/README.md, "HTTP").
//!
//! A multi-thread Tokio runtime with one worker per CPU (Tokio's default, which follows the
//! process's CPU affinity), keep-alive on (hyper's default, set explicitly), `TCP_NODELAY` on
//! every accepted connection. A request body, if any, is not read; hyper drains up to its
//! limit before reusing the connection.

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;

const BODY: &[u8] = b"Hello World\n";

/// CPU time spent in every request (`--work-us`).
static WORK: std::sync::OnceLock<std::time::Duration> = std::sync::OnceLock::new();

async fn hello(_req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let work = WORK.get().copied().unwrap_or_default();
    if !work.is_zero() {
        let start = std::time::Instant::now();
        while start.elapsed() < work {
            std::hint::spin_loop();
        }
    }
    let mut resp = Response::new(Full::new(Bytes::from_static(BODY)));
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    Ok(resp)
}

fn usage() -> ! {
    eprintln!("usage: hyper_hello --listen ADDR:PORT [--work-us N]");
    std::process::exit(2);
}

fn parse_args() -> SocketAddr {
    let mut listen = None;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--listen" => listen = it.next().and_then(|s| s.parse().ok()),
            "--work-us" => {
                let us: u64 = it
                    .next()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or_else(|| usage());
                let _ = WORK.set(std::time::Duration::from_micros(us));
            }
            "-h" | "--help" => usage(),
            other => {
                eprintln!("hyper_hello: unknown argument {other:?}");
                usage()
            }
        }
    }
    listen.unwrap_or_else(|| usage())
}

fn main() {
    let addr = parse_args();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_io()
        .build()
        .expect("building the Tokio runtime");
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .unwrap_or_else(|e| {
                eprintln!("hyper_hello: binding {addr}: {e}");
                std::process::exit(1);
            });
        eprintln!(
            "hyper_hello: listening on http://{}",
            listener.local_addr().unwrap_or(addr)
        );
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // EMFILE and the like: the connection is lost, the server goes on.
                    eprintln!("hyper_hello: accept: {e}");
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                // Errors are the client's doing (reset, malformed request): nothing to report.
                let _ = http1::Builder::new()
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(stream), service_fn(hello))
                    .await;
            });
        }
    });
}
