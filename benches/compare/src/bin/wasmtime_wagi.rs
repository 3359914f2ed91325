//! What a peer does (`benches/http.sh`, server "c"): hyper 1.x + wasmtime 48 serving
//! `ANY /{anything}` by running one WASI preview1 module once per request, the way Spin's WAGI
//! executor does: the request body is the guest's stdin, CGI variables are its environment,
//! and its stdout is the response body (`200 OK`). Unlike WAGI, stdout is not parsed for CGI
//! headers: it is the raw body, as in fnvm's raw mode.
//!
//! ```text
//! wasmtime_wagi --listen 127.0.0.1:PORT --module hello.wasm [--slots N] [--tuned]
//! ```
//!
//! The engine is the one of the `wasmtime pooling` column of `report`
//! ([`invoke::wasmtime_pooling_engine`]): the pooling instance allocator with `--slots`
//! instances (default [`invoke::POOL_SLOTS`], 64) of up to 1 GiB of linear memory each,
//! copy-on-write memory images, and epoch interruption *on* with a deadline of 2^40 ticks that
//! nothing ever advances (no ticker thread), so it costs the compiled-in checks and never fires,
//! as in `report`. `--tuned` is the `wasmtime pooling tuned` column instead (keep-resident and
//! `pagemap_scan`). The module is compiled once and linked once into an [`InstancePre`] with
//! `wasmtime_wasi::p1::add_to_linker_sync` ([`invoke::wasmtime_prepare`]).
//!
//! Per request: the body is collected, then on a blocking thread (`spawn_blocking`: the guest
//! never runs on the reactor, and the synchronous WASI p1 functions `block_on` the runtime's
//! handle from there) a fresh `Store` with a `WasiP1Ctx` (argv `[PATH]`, the CGI environment, a
//! `MemoryInputPipe` of the body on stdin, a `MemoryOutputPipe` on stdout) is instantiated from
//! the `InstancePre`, `_start` runs (`proc_exit(0)` counts as success), the store is dropped
//! and stdout becomes the body of a `200`. A trap or a non-zero exit is a `500` with the error
//! as the body; running out of pool slots too.
//!
//! Tokio: one worker thread per CPU, blocking threads up to Tokio's default (512), keep-alive
//! on, `TCP_NODELAY` on every accepted connection.

use fnvm_bench_compare::invoke;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use wasmtime::InstancePre;
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::pipe::{MemoryInputPipe, MemoryOutputPipe};

/// Epoch deadline of every store: far enough never to be reached (nothing advances the epoch).
const FAR_DEADLINE: u64 = 1 << 40;

/// Most a guest may write to stdout (the pipe grows as it is written; this is only the cap).
const STDOUT_CAPACITY: usize = 16 << 20;

/// What every request shares.
struct Server {
    engine: wasmtime::Engine,
    pre: InstancePre<WasiP1Ctx>,
    local: SocketAddr,
}

/// The CGI environment of one request, as WAGI sets it: the request line's parts, the
/// server's and the client's addresses, and every header as `HTTP_NAME` (upper case, `-` to
/// `_`), except `Authorization` and `Connection`, which CGI does not pass on, and
/// `Content-Length` and `Content-Type`, which are `CONTENT_LENGTH` and `CONTENT_TYPE`.
fn cgi_env(
    parts: &hyper::http::request::Parts,
    body_len: usize,
    local: SocketAddr,
    remote: SocketAddr,
) -> Vec<(String, String)> {
    let path = parts.uri.path();
    let query = parts.uri.query().unwrap_or("");
    let host = parts
        .headers
        .get(hyper::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map_or_else(|| local.to_string(), str::to_owned);
    let mut env: Vec<(String, String)> = Vec::with_capacity(20 + parts.headers.len());
    let mut set = |k: &str, v: String| env.push((k.to_owned(), v));
    set("GATEWAY_INTERFACE", "CGI/1.1".into());
    set("SERVER_SOFTWARE", "wasmtime_wagi".into());
    set("SERVER_PROTOCOL", format!("{:?}", parts.version));
    set("SERVER_NAME", local.ip().to_string());
    set("SERVER_PORT", local.port().to_string());
    set("REQUEST_METHOD", parts.method.as_str().into());
    set("SCRIPT_NAME", String::new());
    set("PATH_INFO", path.into());
    set("X_RAW_PATH_INFO", path.into());
    set("PATH_TRANSLATED", path.into());
    set("QUERY_STRING", query.into());
    set("X_MATCHED_ROUTE", "/...".into());
    set("X_FULL_URL", format!("http://{host}{}", parts.uri));
    set("REMOTE_ADDR", remote.ip().to_string());
    set("REMOTE_HOST", remote.ip().to_string());
    set("CONTENT_LENGTH", body_len.to_string());
    set(
        "CONTENT_TYPE",
        parts
            .headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .into(),
    );
    for (name, value) in &parts.headers {
        if name == hyper::header::AUTHORIZATION
            || name == hyper::header::CONNECTION
            || name == hyper::header::CONTENT_LENGTH
            || name == CONTENT_TYPE
        {
            continue;
        }
        let Ok(value) = value.to_str() else { continue };
        let mut key = String::with_capacity(5 + name.as_str().len());
        key.push_str("HTTP_");
        key.extend(name.as_str().chars().map(|c| match c {
            '-' => '_',
            c => c.to_ascii_uppercase(),
        }));
        env.push((key, value.to_owned()));
    }
    env
}

/// One invocation, on a blocking thread: fresh store and WASI context, `_start`, stdout.
fn invoke_guest(
    server: &Server,
    arg0: &str,
    env: &[(String, String)],
    stdin: Bytes,
) -> Result<Bytes, String> {
    let stdout = MemoryOutputPipe::new(STDOUT_CAPACITY);
    let ctx = wasmtime_wasi::WasiCtxBuilder::new()
        .arg(arg0)
        .envs(env)
        .stdin(MemoryInputPipe::new(stdin))
        .stdout(stdout.clone())
        .build_p1();
    let mut store = wasmtime::Store::new(&server.engine, ctx);
    store.set_epoch_deadline(FAR_DEADLINE);
    let instance = server
        .pre
        .instantiate(&mut store)
        .map_err(|e| format!("instantiate: {e:?}"))?;
    let start = instance
        .get_typed_func::<(), ()>(&mut store, "_start")
        .map_err(|e| format!("_start: {e:?}"))?;
    if let Err(e) = start.call(&mut store, ()) {
        match e.downcast_ref::<wasmtime_wasi::I32Exit>() {
            Some(wasmtime_wasi::I32Exit(0)) => {}
            _ => return Err(format!("_start: {e:?}")),
        }
    }
    // The store holds the other handle on the pipe; dropping it also frees the pool slot.
    drop(store);
    Ok(match stdout.try_into_inner() {
        Some(buf) => buf.freeze(),
        None => Bytes::new(),
    })
}

fn respond(status: StatusCode, body: Bytes) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = status;
    resp
}

async fn handle(
    server: Arc<Server>,
    remote: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return Ok(respond(
                StatusCode::BAD_REQUEST,
                Bytes::from(format!("reading the request body: {e}\n")),
            ))
        }
    };
    let env = cgi_env(&parts, body.len(), server.local, remote);
    let arg0 = parts.uri.path().to_owned();
    let result =
        tokio::task::spawn_blocking(move || invoke_guest(&server, &arg0, &env, body)).await;
    Ok(match result {
        Ok(Ok(stdout)) => respond(StatusCode::OK, stdout),
        Ok(Err(e)) => {
            eprintln!("wasmtime_wagi: {e}");
            let mut resp = respond(
                StatusCode::INTERNAL_SERVER_ERROR,
                Bytes::from(format!("{e}\n")),
            );
            resp.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
            resp
        }
        Err(e) => respond(
            StatusCode::INTERNAL_SERVER_ERROR,
            Bytes::from(format!("guest task: {e}\n")),
        ),
    })
}

struct Args {
    listen: SocketAddr,
    module: std::path::PathBuf,
    slots: u32,
    tuned: bool,
}

fn usage() -> ! {
    eprintln!("usage: wasmtime_wagi --listen ADDR:PORT --module FILE.wasm [--slots N] [--tuned]");
    std::process::exit(2);
}

fn parse_args() -> Args {
    let (mut listen, mut module, mut slots, mut tuned) = (None, None, invoke::POOL_SLOTS, false);
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--listen" => listen = it.next().and_then(|s| s.parse().ok()),
            "--module" => module = it.next().map(std::path::PathBuf::from),
            "--slots" => {
                slots = it
                    .next()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or_else(|| usage())
            }
            "--tuned" => tuned = true,
            "-h" | "--help" => usage(),
            other => {
                eprintln!("wasmtime_wagi: unknown argument {other:?}");
                usage()
            }
        }
    }
    match (listen, module) {
        (Some(listen), Some(module)) => Args {
            listen,
            module,
            slots,
            tuned,
        },
        _ => usage(),
    }
}

fn fail(msg: String) -> ! {
    eprintln!("wasmtime_wagi: {msg}");
    std::process::exit(1);
}

fn main() {
    let args = parse_args();
    // Binary modules pass through `wat` unchanged; text ones are parsed.
    let wasm = wat::parse_file(&args.module)
        .unwrap_or_else(|e| fail(format!("reading {}: {e}", args.module.display())));
    let engine =
        invoke::wasmtime_pooling_engine(args.slots, args.tuned).unwrap_or_else(|e| fail(e));
    let pre = invoke::wasmtime_prepare(&engine, &wasm).unwrap_or_else(|e| fail(e));

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_io()
        .build()
        .expect("building the Tokio runtime");
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .unwrap_or_else(|e| fail(format!("binding {}: {e}", args.listen)));
        let local = listener.local_addr().unwrap_or(args.listen);
        eprintln!(
            "wasmtime_wagi: {} on http://{local}/ ({} pooling slots{})",
            args.module.display(),
            args.slots,
            if args.tuned { ", tuned" } else { "" }
        );
        let server = Arc::new(Server { engine, pre, local });
        loop {
            let (stream, remote) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("wasmtime_wagi: accept: {e}");
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let server = server.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| handle(server.clone(), remote, req));
                let _ = http1::Builder::new()
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
}
