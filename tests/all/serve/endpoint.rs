//! The worker's HTTP endpoint: every status mapping, `?debug`, the receipt header, limits and
//! timeouts (also of guests blocked in hostcalls), `maxInstances`, logs and metrics, a redeploy
//! under load without a failed request, and one function's load not slowing another's.

use super::*;

/// A guest whose behaviour the first byte of its stdin (the request body) chooses: `e` prints
/// "bad" and exits 3, `t` traps, `l` loops, `s` sleeps 60 s in `poll_oneoff`, `b` writes 64 KiB,
/// `x` writes "oops" to stderr; then (or otherwise) it prints `ok`.
pub fn mapper_wasm() -> Vec<u8> {
    wat::parse_str(
        r#"(module
          (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
          (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
          (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
          (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
          (memory (export "memory") 2)
          (data (i32.const 100) "ok\n")
          (data (i32.const 110) "bad\n")
          (data (i32.const 120) "oops\n")
          (func $write (param $fd i32) (param $ptr i32) (param $len i32)
            (i32.store (i32.const 0) (local.get $ptr))
            (i32.store (i32.const 4) (local.get $len))
            (drop (call $fd_write (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 8))))
          (func (export "_start") (local $c i32)
            (i32.store (i32.const 16) (i32.const 200))
            (i32.store (i32.const 20) (i32.const 1))
            (drop (call $fd_read (i32.const 0) (i32.const 16) (i32.const 1) (i32.const 24)))
            (local.set $c (i32.load8_u (i32.const 200)))
            (if (i32.eq (local.get $c) (i32.const 101))
              (then (call $write (i32.const 1) (i32.const 110) (i32.const 4)) (call $exit (i32.const 3))))
            (if (i32.eq (local.get $c) (i32.const 116)) (then unreachable))
            (if (i32.eq (local.get $c) (i32.const 108)) (then (loop $l (br $l))))
            (if (i32.eq (local.get $c) (i32.const 115))
              (then
                (i32.store (i32.const 1040) (i32.const 1))
                (i64.store (i32.const 1048) (i64.const 60000000000))
                (drop (call $poll (i32.const 1024) (i32.const 2048) (i32.const 1) (i32.const 2100)))))
            (if (i32.eq (local.get $c) (i32.const 98))
              (then (call $write (i32.const 1) (i32.const 65536) (i32.const 65536))))
            (if (i32.eq (local.get $c) (i32.const 120))
              (then (call $write (i32.const 2) (i32.const 120) (i32.const 5))))
            (call $write (i32.const 1) (i32.const 100) (i32.const 3))))"#,
    )
    .unwrap()
}

/// A request to the endpoint; status, headers and body.
pub fn call(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut req = ureq::http::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let mut resp = agent
        .run(req.body(body.to_vec()).unwrap())
        .expect("calling the function");
    let status = resp.status().as_u16();
    let hs = resp
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let mut out = Vec::new();
    resp.body_mut()
        .with_config()
        .limit(64 << 20)
        .reader()
        .read_to_end(&mut out)
        .unwrap();
    (status, hs, out)
}

pub fn header<'a>(hs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    hs.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

#[test]
fn statuses_debug_receipts_limits_logs_and_metrics() {
    let server = Server::start(
        "endpoint",
        Backends::embedded(),
        &[
            "--max-response-bytes",
            "1000",
            "--max-request-bytes",
            "4096",
            "--instance-wait-ms",
            "100",
        ],
    );
    let token = server.token(Some("org-e"));
    let fid = server.deploy_function(
        "org-e",
        &token,
        r#"{"name": "mapper", "timeoutMs": 300, "maxInstances": 1, "environment": {"K": "v"}}"#,
        &mapper_wasm(),
    );
    let url = format!("{}/{fid}", server.http());
    let post = |body: &[u8]| call("POST", &url, &[], body);

    // exit 0 -> 200, stdout is the body; the receipt says what it cost.
    let (s, hs, body) = post(b"");
    assert_eq!((s, body.as_slice()), (200, &b"ok\n"[..]));
    let receipt = header(&hs, "fnvm-invocation").expect("a receipt");
    for part in [
        "id=",
        "instantiate_us=",
        "run_us=",
        "cpu_us=",
        "pages=2",
        "hostcalls=2",
    ] {
        assert!(receipt.contains(part), "{receipt}");
    }
    // non-zero exit -> 500 with stdout and the code.
    let (s, hs, body) = post(b"e");
    assert_eq!((s, body.as_slice()), (500, &b"bad\n"[..]));
    assert_eq!(header(&hs, "fnvm-exit-code"), Some("3"));
    // trap -> 500 with its kind, no host address.
    let (s, hs, body) = post(b"t");
    let text = String::from_utf8_lossy(&body);
    assert_eq!(s, 500, "{text}");
    assert!(text.contains("unreachable"), "{text}");
    assert!(!text.contains("0x7f"), "{text}");
    assert_eq!(header(&hs, "fnvm-trap"), Some("unreachable"));
    // deadline -> 504, in compiled code and in a blocking hostcall.
    for what in [&b"l"[..], b"s"] {
        let t = Instant::now();
        let (s, _, body) = post(what);
        assert_eq!(s, 504, "{}", String::from_utf8_lossy(&body));
        assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());
    }
    // Output over the limit -> 502.
    let (s, _, body) = post(b"b");
    assert_eq!(s, 502, "{}", String::from_utf8_lossy(&body));
    // A body over the limit -> 413 (no instance taken); a head over the limit -> 431.
    assert_eq!(post(&vec![b'a'; 5000]).0, 413);
    let huge = "x".repeat(70 << 10);
    assert_eq!(call("GET", &url, &[("x-huge", &huge)], b"").0, 431);
    // Unknown function -> 404.
    assert_eq!(
        call("GET", &format!("{}/nope", server.http()), &[], b"").0,
        404
    );
    // maxInstances 1: while one runs, another waits its bounded time, then 503 + Retry-After.
    let busy = {
        let url = url.clone();
        std::thread::spawn(move || call("POST", &url, &[], b"l").0)
    };
    std::thread::sleep(Duration::from_millis(100));
    let (s, hs, _) = post(b"");
    assert_eq!(s, 503);
    assert_eq!(header(&hs, "retry-after"), Some("1"));
    assert_eq!(busy.join().unwrap(), 504);
    assert_eq!(post(b"").0, 200, "the instance is free again");

    // ?debug: the report, here of a run that wrote to stderr.
    let (s, hs, body) = call("POST", &format!("{url}?debug"), &[], b"x");
    assert_eq!(s, 200);
    assert_eq!(header(&hs, "content-type"), Some("application/json"));
    let report: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(report["stdout"], "ok\n");
    assert_eq!(report["stderr"], "oops\n");
    assert_eq!(report["trigger"], "Std");
    assert_eq!(report["size"], mapper_wasm().len());
    assert!(report["dmesg"]
        .as_str()
        .unwrap()
        .contains("WASI_FD_READ(vmctx="));

    // The stderr reaches the Function's log.
    let logs = format!(
        "{}/v4/functions/organisations/org-e/functions/{fid}/logs",
        server.api
    );
    let start = Instant::now();
    loop {
        let (s, entries) = request("GET", &logs, Some(&token), None, None);
        assert_eq!(s, 200, "{entries}");
        let entries = entries.as_array().unwrap().clone();
        if entries.iter().any(|e| e["text"] == "oops\n") {
            let cli = ok(server.cli("org-e", &token, &["logs", &fid]));
            assert!(cli.contains("oops"), "{cli}");
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "no log entry");
        std::thread::sleep(Duration::from_millis(100));
    }
    // And the metrics count what happened.
    let (s, _, text) = call("GET", &format!("{}/metrics", server.http()), &[], b"");
    let text = String::from_utf8(text).unwrap();
    assert_eq!(s, 200);
    for line in [
        format!("fnvm_requests_total{{function=\"{fid}\",status=\"200\"}}"),
        format!("fnvm_requests_total{{function=\"{fid}\",status=\"504\"}} 3"),
        format!("fnvm_requests_total{{function=\"{fid}\",status=\"503\"}} 1"),
        format!("fnvm_run_seconds_count{{function=\"{fid}\"}}"),
        "fnvm_pool_slots{state=\"total\"}".to_string(),
    ] {
        assert!(text.contains(&line), "{line} missing from:\n{text}");
    }
    let (s, _, api_metrics) = call("GET", &format!("{}/metrics", server.api), &[], b"");
    assert_eq!(s, 200);
    assert!(String::from_utf8(api_metrics)
        .unwrap()
        .contains("fnvm_compile_seconds_count 1"));
}

/// Deploying a new version while clients call the function fails no request; the new version
/// takes over.
#[test]
fn a_redeploy_under_load_fails_no_request() {
    let server = Server::start("redeploy", Backends::embedded(), &[]);
    let token = server.token(Some("org-d"));
    let fid = server.deploy_function(
        "org-d",
        &token,
        r#"{"maxInstances": 16}"#,
        &printing_wasm("v1"),
    );
    let url = format!("{}/{fid}", server.http());
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (url, stop) = (url.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut seen = Vec::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let (s, _, body) = call("GET", &url, &[], b"");
                    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&body));
                    seen.push(body);
                }
                seen
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let file = server.data_dir.with_extension("v2.wasm");
    std::fs::write(&file, printing_wasm("v2")).unwrap();
    ok(server.cli("org-d", &token, &["deploy", file.to_str().unwrap(), &fid]));
    let start = Instant::now();
    while call("GET", &url, &[], b"").2 != b"v2" {
        assert!(start.elapsed() < Duration::from_secs(20), "v2 never served");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut total = 0;
    for c in clients {
        let seen = c.join().unwrap();
        total += seen.len();
        assert!(seen.iter().all(|b| b == b"v1" || b == b"v2"));
        // Once a client saw v2, it never sees v1 again.
        if let Some(first) = seen.iter().position(|b| b == b"v2") {
            assert!(seen[first..].iter().all(|b| b == b"v2"));
        }
    }
    assert!(total > 100, "only {total} requests");
}

/// The p99 latency of `n` sequential calls of `url`.
fn p99(url: &str, n: usize) -> Duration {
    let mut times: Vec<Duration> = (0..n)
        .map(|_| {
            let t = Instant::now();
            let (s, _, _) = call("GET", url, &[], b"");
            assert_eq!(s, 200);
            t.elapsed()
        })
        .collect();
    times.sort();
    times[n * 99 / 100]
}

/// One function saturating its instances with runaway guests, another trapping in a loop: a
/// third, quick function keeps its latency.
#[test]
fn a_busy_function_does_not_slow_another() {
    let server = Server::start(
        "isolation",
        Backends::embedded(),
        &["--instance-wait-ms", "50"],
    );
    let token = server.token(Some("org-i"));
    let quick = server.deploy_function("org-i", &token, r#"{"maxInstances": 4}"#, &hello_wasm());
    let busy = server.deploy_function(
        "org-i",
        &token,
        r#"{"maxInstances": 2, "timeoutMs": 200}"#,
        &mapper_wasm(),
    );
    let quick_url = format!("{}/{quick}", server.http());
    let busy_url = format!("{}/{busy}", server.http());
    let before = p99(&quick_url, 300);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load: Vec<_> = (0..6)
        .map(|i| {
            let (url, stop) = (busy_url.clone(), stop.clone());
            std::thread::spawn(move || {
                let what: &[u8] = if i % 2 == 0 { b"l" } else { b"t" };
                let mut statuses = std::collections::BTreeMap::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    *statuses.entry(call("POST", &url, &[], what).0).or_insert(0) += 1;
                }
                statuses
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let during = p99(&quick_url, 300);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut seen = std::collections::BTreeMap::new();
    for l in load {
        for (s, n) in l.join().unwrap() {
            *seen.entry(s).or_insert(0) += n;
        }
    }
    eprintln!(
        "isolation: quick p99 {before:?} alone, {during:?} beside the busy function {seen:?}"
    );
    // The busy function really was saturated (timeouts, traps, and 503s once both instances ran).
    assert!(
        seen.contains_key(&504) && seen.contains_key(&500),
        "{seen:?}"
    );
    // Two cores shared with two runaway guests and the load: the quick function's p99 stays in
    // milliseconds, not in the busy function's timeouts.
    assert!(
        during < Duration::from_millis(150),
        "p99 {during:?} beside the busy function (alone: {before:?})"
    );
    // The quick function's calls ran on the reactor's threads, the busy one's on invoker
    // threads.
    let (_, _, text) = call("GET", &format!("{}/metrics", server.http()), &[], b"");
    let text = String::from_utf8(text).unwrap();
    let jobs = |thread: &str| -> u64 {
        let prefix = format!("fnvm_jobs_total{{thread=\"{thread}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no {prefix} in:\n{text}"))
    };
    assert!(jobs("inline") > 100, "{text}");
    assert!(jobs("queued") > 10, "{text}");
}

/// A client that sends its request slowly holds no instance (the body is read before a slot
/// is taken) and is cut off after the idle timeout; one that never finishes its head is
/// disconnected after the head timeout.
#[test]
fn slow_clients_hold_no_instance() {
    use std::io::Write;
    use std::net::TcpStream;
    let server = Server::start(
        "slow-clients",
        Backends::embedded(),
        &[
            "--instance-wait-ms",
            "100",
            "--body-idle-timeout-ms",
            "1000",
            "--header-timeout-ms",
            "1000",
        ],
    );
    let token = server.token(Some("org-s"));
    let fid = server.deploy_function(
        "org-s",
        &token,
        r#"{"name": "mapper", "maxInstances": 1}"#,
        &mapper_wasm(),
    );
    let url = format!("{}/{fid}", server.http());
    let addr = server.http().trim_start_matches("http://").to_string();
    let read_all = |mut c: TcpStream| {
        c.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        let start = Instant::now();
        let mut out = Vec::new();
        let _ = c.read_to_end(&mut out);
        (start.elapsed(), String::from_utf8_lossy(&out).into_owned())
    };

    // A body that stalls after 2 of its 10 bytes.
    let mut body_staller = TcpStream::connect(&addr).unwrap();
    write!(
        body_staller,
        "POST /{fid} HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nab"
    )
    .unwrap();
    // A head that never ends.
    let mut head_staller = TcpStream::connect(&addr).unwrap();
    write!(head_staller, "POST /{fid} HTTP/1.1\r\nHost: x\r\n").unwrap();
    std::thread::sleep(Duration::from_millis(200));
    // The only instance is free for others meanwhile.
    for _ in 0..3 {
        let (s, _, body) = call("POST", &url, &[], b"");
        assert_eq!((s, body.as_slice()), (200, &b"ok\n"[..]));
    }
    let (waited, answer) = read_all(body_staller);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(waited < Duration::from_secs(10), "{waited:?}");
    let (waited, answer) = read_all(head_staller);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer}"
    );
    assert!(waited < Duration::from_secs(10), "{waited:?}");
}

/// `maxMemory` caps a guest's linear memory: growing past it fails inside the guest (as
/// `memory.grow` does), and the receipt shows the 64 KiB pages the guest ended with.
#[test]
fn max_memory_caps_the_guest() {
    let server = Server::start("max-memory", Backends::embedded(), &[]);
    let token = server.token(Some("org-m"));
    // Starts with 1 page; grows by 15 (to 1 MiB), then by 1 more; prints which succeeded.
    let grower = wat::parse_str(
        r#"(module
          (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
          (memory (export "memory") 1)
          (data (i32.const 100) "YN")
          (func $say (param $ok i32)
            (i32.store (i32.const 0)
              (select (i32.const 100) (i32.const 101) (local.get $ok)))
            (i32.store (i32.const 4) (i32.const 1))
            (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))))
          (func (export "_start")
            (call $say (i32.ne (memory.grow (i32.const 15)) (i32.const -1)))
            (call $say (i32.ne (memory.grow (i32.const 1)) (i32.const -1)))))"#,
    )
    .unwrap();
    let capped = server.deploy_function(
        "org-m",
        &token,
        r#"{"name": "capped", "maxMemory": 1048576}"#,
        &grower,
    );
    let roomy = server.deploy_function("org-m", &token, r#"{"name": "roomy"}"#, &grower);
    let (s, hs, body) = call("GET", &format!("{}/{capped}", server.http()), &[], b"");
    assert_eq!((s, body.as_slice()), (200, &b"YN"[..]));
    let receipt = header(&hs, "fnvm-invocation").unwrap();
    assert!(receipt.contains("pages=16,"), "{receipt}");
    let (s, hs, body) = call("GET", &format!("{}/{roomy}", server.http()), &[], b"");
    assert_eq!((s, body.as_slice()), (200, &b"YY"[..]));
    let receipt = header(&hs, "fnvm-invocation").unwrap();
    assert!(receipt.contains("pages=17,"), "{receipt}");
}
