//! A Function with `isolation: "vm"` end to end: its invocations run in KVM micro-VMs on the
//! worker and answer over HTTP as the same module does in process: the raw-mode body and exit
//! code, a trap's kind (500), a deadline in compiled code and in a blocking hostcall (504), the
//! `?debug` report, hostile guests (a stack bomb, a wild load, a division by zero: 500, the VM
//! answering after); and the setting round-trips through the API and the CLI. Needs `/dev/kvm`:
//! skipped without it, a failure under `CI=true`. And, on a worker whose KVM device is missing
//! (`FNVM_KVM_DEVICE` pointing nowhere; runs everywhere), such a deployment ends in `ERROR`
//! with the reason.

use super::endpoint::{call, header, mapper_wasm};
use super::*;

#[test]
fn a_vm_function_answers_like_the_same_module_in_process() {
    if !crate::isolation::kvm_available() {
        return;
    }
    let server = Server::start("isolation", Backends::embedded(), &[]);
    let token = server.token(Some("org-i"));
    let settings = |isolation: &str| {
        format!(r#"{{"timeoutMs": 300, "maxInstances": 2, "isolation": "{isolation}"}}"#)
    };
    let in_process = server.deploy_function("org-i", &token, &settings("process"), &mapper_wasm());
    let in_vm = server.deploy_function("org-i", &token, &settings("vm"), &mapper_wasm());

    // The setting as the API and the CLI show it.
    let f = format!(
        "{}/v4/functions/organisations/org-i/functions/{in_vm}",
        server.api
    );
    let (s, v) = request("GET", &f, Some(&token), None, None);
    assert_eq!((s, v["isolation"].as_str()), (200, Some("vm")), "{v}");
    let shown = ok(server.cli("org-i", &token, &["get", &in_vm]));
    assert!(
        shown.contains("isolation") && shown.contains("vm"),
        "{shown}"
    );
    let created = json(&ok(server.cli(
        "org-i",
        &token,
        &["create", "--name", "by-cli", "--isolation", "vm"],
    )));
    assert_eq!(created["isolation"], "vm", "{created}");
    let refused = server.cli("org-i", &token, &["create", "--isolation", "container"]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("expected \"process\" or \"vm\""),
        "{}",
        stderr(&refused)
    );
    // More than 1 GiB of memory is refused for a VM, with the field named.
    let (s, v) = request(
        "POST",
        &format!("{}/v4/functions/organisations/org-i/functions", server.api),
        Some(&token),
        Some("application/json"),
        Some(br#"{"isolation": "vm", "maxMemory": 2147483648}"#.to_vec()),
    );
    assert_eq!(s, 400, "{v}");
    assert!(v.to_string().contains("maxMemory"), "{v}");
    let (s, v) = request(
        "POST",
        &format!("{}/v4/functions/organisations/org-i/functions", server.api),
        Some(&token),
        Some("application/json"),
        Some(br#"{"isolation": "container"}"#.to_vec()),
    );
    assert_eq!(s, 400, "{v}");

    let url = |fid: &str| format!("{}/{fid}", server.http());
    let post = |fid: &str, body: &[u8]| call("POST", &url(fid), &[], body);
    // ok, exit 3, trap: same status, body and headers that say how it ended.
    for body in [&b""[..], b"e", b"t", b"x"] {
        let (ps, phs, pbody) = post(&in_process, body);
        let (vs, vhs, vbody) = post(&in_vm, body);
        let what = String::from_utf8_lossy(body);
        assert_eq!(
            vs,
            ps,
            "{what:?}: status ({})",
            String::from_utf8_lossy(&vbody)
        );
        assert_eq!(vbody, pbody, "{what:?}: body");
        for h in ["fnvm-exit-code", "fnvm-trap"] {
            assert_eq!(header(&vhs, h), header(&phs, h), "{what:?}: {h}");
        }
    }
    let (s, hs, body) = post(&in_vm, b"t");
    assert_eq!(s, 500);
    assert_eq!(header(&hs, "fnvm-trap"), Some("unreachable"));
    assert!(!String::from_utf8_lossy(&body).contains("0x7f"));
    // The receipt counts the same pages and hostcalls.
    let receipt = |fid: &str| {
        let (_, hs, _) = post(fid, b"");
        let r = header(&hs, "fnvm-invocation")
            .unwrap_or_default()
            .to_string();
        r.split(", ")
            .filter(|p| p.starts_with("pages=") || p.starts_with("hostcalls="))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(receipt(&in_vm), receipt(&in_process));
    assert_eq!(receipt(&in_vm), ["pages=2", "hostcalls=2"]);
    // /metrics shows the VMs: pooled, so far fewer created than instances run.
    let (_, _, metrics) = call("GET", &format!("{}/metrics", server.http()), &[], b"");
    let metrics = String::from_utf8(metrics).unwrap();
    let figure = |name: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in\n{metrics}"))
    };
    assert!(figure("fnvm_vm_pool{state=\"total\"}") >= 2);
    let created = figure("fnvm_vms_created_total");
    assert!(
        (1..=2).contains(&created),
        "{created} VMs for 6 instances, 2 at most at once"
    );

    // An endless guest and one blocked in a hostcall are contained: 504 within the deadline,
    // and the function answers after.
    for what in [&b"l"[..], b"s"] {
        let t = Instant::now();
        let (s, _, body) = post(&in_vm, what);
        assert_eq!(s, 504, "{}", String::from_utf8_lossy(&body));
        assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());
        assert_eq!(post(&in_vm, b"").0, 200, "after a deadline");
    }

    // ?debug: the same report, timings and addresses aside.
    let report = |fid: &str| {
        let (s, hs, body) = call("POST", &format!("{}?debug", url(fid)), &[], b"x");
        assert_eq!(s, 200, "{}", String::from_utf8_lossy(&body));
        assert_eq!(header(&hs, "content-type"), Some("application/json"));
        let mut r: Value = serde_json::from_slice(&body).unwrap();
        let dmesg = r["dmesg"].take();
        let calls: Vec<String> = dmesg
            .as_str()
            .unwrap_or_default()
            .lines()
            .map(|l| l.split(['(', ':']).next().unwrap_or("").trim().to_string())
            .collect();
        (r, calls)
    };
    let (p, p_calls) = report(&in_process);
    let (v, v_calls) = report(&in_vm);
    assert_eq!(v, p, "the report's fields");
    assert_eq!(v_calls, p_calls, "the dmesg trace");
    assert_eq!(v["stdout"], "ok\n");
    assert_eq!(v["stderr"], "oops\n");
    assert!(v_calls.iter().any(|c| c == "WASI_FD_READ"), "{v_calls:?}");
    // The worker did make a KVM backend for it.
    let log = server.log_text();
    assert!(log.contains("KVM backend ready for isolation vm"), "{log}");
    let prepared = |isolation: &str| {
        let needle = format!("function={in_vm} isolation={isolation}");
        server
            .log_text()
            .lines()
            .filter(|l| l.contains("worker: prepared") && l.contains(&needle))
            .count()
    };
    assert!(prepared("vm") >= 1, "{}", server.log_text());

    // Switching the Function to process reloads its deployment there; it answers throughout.
    let (s, v) = request(
        "PUT",
        &f,
        Some(&token),
        Some("application/json"),
        Some(settings("process").into_bytes()),
    );
    assert_eq!((s, v["isolation"].as_str()), (200, Some("process")), "{v}");
    let start = Instant::now();
    while prepared("process") == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{}",
            server.log_text()
        );
        assert_eq!(post(&in_vm, b"").0, 200);
        std::thread::sleep(Duration::from_millis(50));
    }
    let (s, _, body) = post(&in_vm, b"");
    assert_eq!((s, body.as_slice()), (200, &b"ok\n"[..]));
}

/// A guest that, by the first byte of its stdin, recurses without end (`r`), loads far out of
/// its memory (`w`) or divides by zero (`d`); otherwise prints `ok`.
fn hostile_wasm() -> Vec<u8> {
    wat::parse_str(
        r#"(module
          (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
          (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
          (memory (export "memory") 1)
          (data (i32.const 100) "ok\n")
          (func $bomb (param i32) (result i32) (call $bomb (i32.add (local.get 0) (i32.const 1))))
          (func (export "_start") (local $c i32)
            (i32.store (i32.const 16) (i32.const 200))
            (i32.store (i32.const 20) (i32.const 1))
            (drop (call $fd_read (i32.const 0) (i32.const 16) (i32.const 1) (i32.const 24)))
            (local.set $c (i32.load8_u (i32.const 200)))
            (if (i32.eq (local.get $c) (i32.const 114)) (then (drop (call $bomb (i32.const 0)))))
            (if (i32.eq (local.get $c) (i32.const 119)) (then (drop (i32.load (i32.const 0x7fff0000)))))
            (if (i32.eq (local.get $c) (i32.const 100)) (then (drop (i32.div_s (i32.const 1) (i32.const 0)))))
            (i32.store (i32.const 0) (i32.const 100))
            (i32.store (i32.const 4) (i32.const 3))
            (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"#,
    )
    .unwrap()
}

#[test]
fn hostile_guests_are_contained_in_vms_as_in_process() {
    if !crate::isolation::kvm_available() {
        return;
    }
    let server = Server::start("isolation-hostile", Backends::embedded(), &[]);
    let token = server.token(Some("org-h"));
    let deploy = |isolation: &str| {
        let settings = format!(r#"{{"timeoutMs": 2000, "isolation": "{isolation}"}}"#);
        server.deploy_function("org-h", &token, &settings, &hostile_wasm())
    };
    let (in_process, in_vm) = (deploy("process"), deploy("vm"));
    let post =
        |fid: &str, body: &[u8]| call("POST", &format!("{}/{fid}", server.http()), &[], body);
    for (body, trap) in [
        (&b"r"[..], "call stack exhausted"),
        (b"w", "out of bounds memory access"),
        (b"d", "integer divide by zero"),
    ] {
        let (ps, phs, pbody) = post(&in_process, body);
        let (vs, vhs, vbody) = post(&in_vm, body);
        let text = String::from_utf8_lossy(&vbody);
        assert_eq!((vs, ps), (500, 500), "{trap}: {text}");
        assert_eq!(
            header(&vhs, "fnvm-trap"),
            header(&phs, "fnvm-trap"),
            "{trap}"
        );
        assert_eq!(vbody, pbody, "{trap}");
        assert!(text.contains(trap), "{text}");
        assert!(!text.contains("0x7f"), "{text}");
        // The VM is reused (or replaced) cleanly: the next call answers.
        let (s, _, body) = post(&in_vm, b"");
        assert_eq!((s, body.as_slice()), (200, &b"ok\n"[..]), "after {trap}");
    }
}

#[test]
fn a_vm_function_on_a_worker_without_kvm_fails_to_deploy_with_the_reason() {
    let server = Server::start_with_env(
        "isolation-no-kvm",
        Backends::embedded(),
        &[],
        &[("FNVM_KVM_DEVICE", "/nonexistent/kvm")],
    );
    let token = server.token(Some("org-n"));
    let functions = format!("{}/v4/functions/organisations/org-n/functions", server.api);
    let (s, f) = request(
        "POST",
        &functions,
        Some(&token),
        Some("application/json"),
        Some(br#"{"isolation": "vm"}"#.to_vec()),
    );
    assert_eq!(s, 201, "{f}");
    let deps = format!("{functions}/{}/deployments", f["id"].as_str().unwrap());
    let did = upload_and_trigger(&deps, &token, "WASM", "application/wasm", hello_wasm())
        .expect("deploying");
    let d = wait_settled(&format!("{deps}/{did}"), &token);
    assert_eq!(d["status"], "ERROR", "{d}");
    let reason = d["errorReason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("isolation vm needs /dev/kvm") && reason.contains("/nonexistent/kvm"),
        "{d}"
    );
}
