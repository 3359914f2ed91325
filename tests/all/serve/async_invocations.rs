//! Asynchronous invocations end to end (`POST /{functionId}?async`): `202` at once, the result
//! through the API, retries with backoff then a dead letter with the reason, a retried dead
//! letter, `?debug` kept, limits on what is queued, the CLI; and a worker killed with SIGKILL
//! while it runs queued invocations: each runs again, none is lost, none stays running.

use super::endpoint::{call, header, mapper_wasm};
use super::*;

/// A guest that sleeps 1.5 s (in `poll_oneoff`), then prints `slept`.
fn sleeper_wasm() -> Vec<u8> {
    wat::parse_str(
        r#"(module
          (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
          (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
          (memory (export "memory") 1)
          (data (i32.const 100) "slept")
          (func (export "_start")
            (i32.store (i32.const 1040) (i32.const 1))
            (i64.store (i32.const 1048) (i64.const 1500000000))
            (drop (call $poll (i32.const 1024) (i32.const 2048) (i32.const 1) (i32.const 2100)))
            (i32.store (i32.const 0) (i32.const 100))
            (i32.store (i32.const 4) (i32.const 5))
            (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"#,
    )
    .unwrap()
}

/// Queues an invocation; its API path.
fn queue(server: &Server, fid: &str, query: &str, body: &[u8]) -> String {
    let url = format!("{}/{fid}?async{query}", server.http());
    let (s, hs, b) = call("POST", &url, &[("content-type", "text/plain")], body);
    assert_eq!(s, 202, "{}", String::from_utf8_lossy(&b));
    assert_eq!(header(&hs, "content-type"), Some("application/json"));
    let a = json(std::str::from_utf8(&b).unwrap());
    assert_eq!(a["status"], "QUEUED");
    let path = a["statusPath"].as_str().unwrap().to_string();
    assert!(path.ends_with(a["id"].as_str().unwrap()), "{a}");
    path
}

/// Polls an invocation until it is in `status` (within `secs`).
fn wait_for(server: &Server, token: &str, path: &str, status: &str, secs: u64) -> Value {
    let start = Instant::now();
    loop {
        let (s, i) = request(
            "GET",
            &format!("{}{path}", server.api),
            Some(token),
            None,
            None,
        );
        assert_eq!(s, 200, "{i}");
        if i["status"] == status {
            return i;
        }
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "not {status} after {secs} s: {i}\n{}",
            server.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn async_invocations_answer_at_once_retry_and_dead_letter() {
    let server = Server::start(
        "async",
        Backends::embedded(),
        &["--max-async-request-bytes", "1000"],
    );
    let token = server.token(Some("org-q"));
    let fid = server.deploy_function(
        "org-q",
        &token,
        r#"{"maxAttempts": 3, "retryBackoffMs": 100, "maxInstances": 2}"#,
        &mapper_wasm(),
    );

    // Succeeds: the result is what a synchronous call would have answered, stderr kept.
    let path = queue(&server, &fid, "", b"x-marks");
    let done = wait_for(&server, &token, &path, "SUCCEEDED", 30);
    assert_eq!(done["attempts"], 1);
    assert_eq!(done["result"]["status"], 200);
    assert_eq!(done["result"]["body"], "ok\n");
    assert_eq!(done["result"]["stderr"], "oops\n");
    assert_eq!(done["request"]["method"], "POST");
    assert_eq!(done["request"]["bodyBytes"], 7);

    // With ?debug, the report.
    let path = queue(&server, &fid, "&debug", b"x");
    let done = wait_for(&server, &token, &path, "SUCCEEDED", 30);
    assert_eq!(done["result"]["report"]["stdout"], "ok\n", "{done}");
    assert_eq!(done["result"]["report"]["trigger"], "Std");

    // Fails on every attempt (exit 3): retried with backoff, then dead with the reason.
    let started = Instant::now();
    let path = queue(&server, &fid, "", b"e");
    let dead = wait_for(&server, &token, &path, "DEAD", 60);
    // Backoffs of at least 100 and 200 ms between the three attempts.
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(dead["attempts"], 3);
    let last_error = dead["lastError"].as_str().unwrap();
    assert!(
        last_error.starts_with("attempt 3 of 3: the function exited with code 3"),
        "{dead}"
    );
    assert_eq!(dead["result"]["status"], 500);
    assert_eq!(dead["result"]["body"], "bad\n");
    // A trap is a failure too.
    let trapped = queue(&server, &fid, "", b"t");
    let trapped = wait_for(&server, &token, &trapped, "DEAD", 60);
    assert!(
        trapped["lastError"].as_str().unwrap().contains("trap"),
        "{trapped}"
    );

    // The dead letters, listed by the API and the CLI.
    let base = format!(
        "{}/v4/functions/organisations/org-q/functions/{fid}",
        server.api
    );
    let (s, list) = request(
        "GET",
        &format!("{base}/invocations?status=dead"),
        Some(&token),
        None,
        None,
    );
    assert_eq!(s, 200);
    let dead_ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    let id = dead["id"].as_str().unwrap();
    assert_eq!(dead_ids, [id, trapped["id"].as_str().unwrap()]);
    let (s, e) = request(
        "GET",
        &format!("{base}/invocations?status=finished"),
        Some(&token),
        None,
        None,
    );
    assert_eq!(s, 400, "{e}");
    let listed = ok(server.cli(
        "org-q",
        &token,
        &["invocations", "list", &fid, "--status", "dead"],
    ));
    assert!(listed.contains(id) && listed.contains("DEAD"), "{listed}");

    // Retried (by the CLI): all its attempts again, and dead again.
    let retried = ok(server.cli("org-q", &token, &["invocations", "retry", &fid, id]));
    assert!(retried.contains(id), "{retried}");
    let again = wait_for(&server, &token, &path, "DEAD", 60);
    assert_eq!(again["attempts"], 3);
    let (s, e) = request(
        "POST",
        &format!("{base}/invocations/{id}/retry"),
        Some(&token),
        None,
        None,
    );
    let (s2, _) = request(
        "POST",
        &format!("{base}/invocations/{id}/retry"),
        Some(&token),
        None,
        None,
    );
    // The first requeued it; the second found it queued (or already running).
    assert_eq!((s, s2), (200, 409), "{e}");

    // The worker's metrics count the attempts by outcome.
    let (_, _, metrics) = call("GET", &format!("{}/metrics", server.http()), &[], b"");
    let metrics = String::from_utf8(metrics).unwrap();
    for outcome in ["succeeded", "retried", "dead"] {
        assert!(
            metrics.contains(&format!(
                "fnvm_deliveries_total{{function=\"{fid}\",source=\"async\",outcome=\"{outcome}\"}}"
            )),
            "{outcome} missing from:\n{metrics}"
        );
    }

    // Another organisation sees none of it.
    let other = server.token(Some("org-z"));
    let (s, _) = request(
        "GET",
        &format!("{}{path}", server.api),
        Some(&other),
        None,
        None,
    );
    assert_eq!(s, 404);

    // Bodies over the asynchronous limit are refused before anything is queued.
    let (s, _, b) = call(
        "POST",
        &format!("{}/{fid}?async", server.http()),
        &[],
        &[b'x'; 1001],
    );
    assert_eq!(s, 413, "{}", String::from_utf8_lossy(&b));
    let (s, _, _) = call(
        "POST",
        &format!("{}/missing?async", server.http()),
        &[],
        b"x",
    );
    assert_eq!(s, 404);
}

#[test]
fn queued_invocations_survive_the_worker_being_killed() {
    let mut server = Server::start("async-kill9", Backends::embedded(), &[]);
    let token = server.token(Some("org-k"));
    let fid = server.deploy_function(
        "org-k",
        &token,
        r#"{"maxAttempts": 5, "retryBackoffMs": 50, "maxInstances": 3, "timeoutMs": 5000}"#,
        &sleeper_wasm(),
    );
    let paths: Vec<String> = (0..15).map(|_| queue(&server, &fid, "", b"")).collect();
    // Some run (3 at a time, 1.5 s each), the rest wait; then the worker dies.
    let start = Instant::now();
    let running = loop {
        let running: Vec<&String> = paths
            .iter()
            .filter(|p| {
                let (_, i) = request(
                    "GET",
                    &format!("{}{p}", server.api),
                    Some(&token),
                    None,
                    None,
                );
                i["status"] == "RUNNING"
            })
            .collect();
        if !running.is_empty() {
            break running;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "nothing ran");
        std::thread::sleep(Duration::from_millis(20));
    };
    server.kill9();
    server.spawn();
    // Every one finishes; those the dead worker was running ran again.
    for p in &paths {
        let done = wait_for(&server, &token, p, "SUCCEEDED", 60);
        assert_eq!(done["result"]["body"], "slept");
        if running.contains(&p) {
            assert!(done["attempts"].as_u64().unwrap() >= 2, "{done}");
        }
    }
    let base = format!(
        "{}/v4/functions/organisations/org-k/functions/{fid}/invocations",
        server.api
    );
    let (_, all) = request("GET", &base, Some(&token), None, None);
    assert_eq!(all.as_array().unwrap().len(), 15);
    assert!(all
        .as_array()
        .unwrap()
        .iter()
        .all(|i| i["status"] == "SUCCEEDED"));
}
