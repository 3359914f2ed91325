//! Autoscaling end to end, on PostgreSQL and S3 with three workers: a busy function gets more
//! replicas while its demand lasts (clients sending only to the workers holding it, as a
//! placement-aware router does), fewer when the demand falls, none once it is idle, and comes
//! back on the next request, which says what its cold start cost. The shares of
//! `maxInstances` held never add up to more than it at any sample. And `maxInstances` holds
//! across the fleet: clients hammering every worker directly never see more instances of the
//! function running at once than it allows.

use super::fleet::{all_logs, fleet, get, placements};
use super::*;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// A guest that computes for a while (a counting loop), then prints "busy".
fn busy_wasm(iterations: u32) -> Vec<u8> {
    wat::parse_str(format!(
        r#"(module
          (import "wasi_snapshot_preview1" "fd_write"
            (func $fd_write (param i32 i32 i32 i32) (result i32)))
          (memory (export "memory") 1)
          (data (i32.const 8) "busy")
          (func (export "_start") (local i32)
            (loop $spin
              (local.set 0 (i32.add (local.get 0) (i32.const 1)))
              (br_if $spin (i32.lt_u (local.get 0) (i32.const {iterations}))))
            (i32.store (i32.const 0) (i32.const 8))
            (i32.store (i32.const 4) (i32.const 4))
            (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 256)))))"#
    ))
    .unwrap()
}

/// The function's placements now: (worker URL, share, held) of each, not leaving.
fn replicas(api: &Server, token: &str, fid: &str) -> (Vec<String>, u64) {
    let workers = fleet(api, token);
    let url = |id: &Value| {
        workers
            .iter()
            .find(|w| w["id"] == *id)
            .map(|w| w["url"].as_str().unwrap().to_string())
    };
    let mine: Vec<Value> = placements(api, token)
        .into_iter()
        .filter(|p| p["functionId"] == fid)
        .collect();
    let held = mine
        .iter()
        .map(|p| p["heldMaxInstances"].as_u64().unwrap())
        .sum();
    let urls = mine
        .iter()
        .filter(|p| p["reason"] != "leaving")
        .filter_map(|p| url(&p["workerId"]))
        .collect();
    (urls, held)
}

#[test]
fn a_busy_function_scales_out_in_and_to_zero_then_comes_back() {
    let scaling = ["--scale-in-after-ms", "2000", "--idle-to-zero-ms", "5000"];
    let (_backends, api, workers, operator) = super::fleet::start_fleet("scale", 3, &scaling);
    let org = api.token(Some("org-s"));
    let fid = api.deploy_function(
        "org-s",
        &org,
        r#"{"maxInstances": 6, "timeoutMs": 10000}"#,
        &busy_wasm(20_000_000),
    );
    // Six clients, each sending to the workers holding the function in turn.
    let targets = Arc::new(Mutex::new(replicas(&api, &operator, &fid).0));
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let clients: Vec<_> = (0..6)
        .map(|i| {
            let (targets, stop, ok, fid) = (targets.clone(), stop.clone(), ok.clone(), fid.clone());
            std::thread::spawn(move || {
                let mut n = i;
                while !stop.load(Ordering::Relaxed) {
                    let url = {
                        let t = targets.lock().unwrap();
                        if t.is_empty() {
                            None
                        } else {
                            Some(t[n % t.len()].clone())
                        }
                    };
                    n += 1;
                    let Some(url) = url else {
                        std::thread::sleep(Duration::from_millis(20));
                        continue;
                    };
                    if get(&format!("{url}/{fid}")).0 == 200 {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    // Out: three replicas (concurrency ~6 against 0.7 x 2 cores per replica, capped by the
    // three workers), the shares never over 6.
    let mut most = 0;
    let start = Instant::now();
    while most < 3 {
        let (urls, held) = replicas(&api, &operator, &fid);
        assert!(held <= 6, "held {held}");
        most = most.max(urls.len());
        if !urls.is_empty() {
            *targets.lock().unwrap() = urls;
        }
        assert!(
            start.elapsed() < Duration::from_secs(40),
            "{most} replicas at most\n{}",
            all_logs(&api, &workers)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    assert!(ok.load(Ordering::Relaxed) > 10);
    // In, then to zero: no replica once idle for 5 s (it stays deployed).
    let stopped = Instant::now();
    let mut counts = Vec::new();
    loop {
        let (urls, held) = replicas(&api, &operator, &fid);
        assert!(held <= 6);
        if counts.last() != Some(&urls.len()) {
            counts.push(urls.len());
        }
        if urls.is_empty() && held == 0 {
            break;
        }
        assert!(
            stopped.elapsed() < Duration::from_secs(40),
            "{counts:?}\n{}",
            all_logs(&api, &workers)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(stopped.elapsed() >= Duration::from_secs(4), "{counts:?}");
    assert!(
        api.log_text().contains("reason=\"idle\""),
        "{}",
        api.log_text()
    );
    // Back from zero: any worker answers, and says what the cold start cost.
    let url = format!("{}/{fid}", workers[2].http());
    let (s, hs, body) = super::endpoint::call("GET", &url, &[], b"");
    assert_eq!(
        (s, body.as_slice()),
        (200, b"busy".as_slice()),
        "{}",
        all_logs(&api, &workers)
    );
    let cold = super::endpoint::header(&hs, "fnvm-cold-start").expect("a cold-start header");
    assert!(
        cold.starts_with("load_ms=") && cold.contains("wait_ms="),
        "{cold}"
    );
    let (urls, _) = replicas(&api, &operator, &fid);
    assert_eq!(urls, [workers[2].http()]);
    // A warm request says nothing of a cold start; the worker's metrics count the cold one.
    let (_, hs, _) = super::endpoint::call("GET", &url, &[], b"");
    assert!(super::endpoint::header(&hs, "fnvm-cold-start").is_none());
    // (Cold requests during the load phase, when a client's view of the replicas was stale,
    // count too.)
    let start = Instant::now();
    loop {
        let (_, _, metrics) =
            super::endpoint::call("GET", &format!("{}/metrics", workers[2].http()), &[], b"");
        let metrics = String::from_utf8(metrics).unwrap();
        let cold_starts: u64 = metrics
            .lines()
            .find_map(|l| l.strip_prefix("fnvm_cold_start_seconds_count "))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        let share = format!("fnvm_instance_share{{function=\"{fid}\"}} 6");
        if cold_starts >= 1 && metrics.contains(&share) {
            break;
        }
        let mine: Vec<&str> = metrics
            .lines()
            .filter(|l| l.starts_with("fnvm_cold_start_seconds_count") || l.contains("share"))
            .collect();
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{mine:#?}\n{}",
            all_logs(&api, &workers)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn max_instances_holds_across_the_fleet_when_every_worker_is_asked() {
    let (_backends, api, workers, operator) = super::fleet::start_fleet("maxinst", 3, &[]);
    let org = api.token(Some("org-m"));
    let fid = api.deploy_function(
        "org-m",
        &org,
        r#"{"maxInstances": 2, "timeoutMs": 10000}"#,
        &busy_wasm(30_000_000),
    );
    // Six clients, each going round the three workers, for 6 s; every answer's run, from its
    // receipt, as an interval ending when the answer arrived.
    let urls: Vec<String> = workers
        .iter()
        .map(|w| format!("{}/{fid}", w.http()))
        .collect();
    let runs = Arc::new(Mutex::new(Vec::<(Instant, Duration)>::new()));
    let refused = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..6)
        .map(|i| {
            let (urls, runs, refused, stop) =
                (urls.clone(), runs.clone(), refused.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut n = i;
                while !stop.load(Ordering::Relaxed) {
                    let (s, hs, _) = super::endpoint::call("GET", &urls[n % 3], &[], b"");
                    n += 1;
                    if s != 200 {
                        assert_eq!(s, 503, "only 'busy' may refuse");
                        refused.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    let receipt = super::endpoint::header(&hs, "fnvm-invocation").unwrap();
                    let run_us: u64 = receipt
                        .split(", ")
                        .find_map(|kv| kv.strip_prefix("run_us="))
                        .and_then(|v| v.parse().ok())
                        .expect("run_us in the receipt");
                    runs.lock()
                        .unwrap()
                        .push((Instant::now(), Duration::from_micros(run_us)));
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(6));
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    let runs = runs.lock().unwrap();
    assert!(runs.len() >= 10, "{} runs", runs.len());
    // Intervals shrunk by 10 ms at each end (the answer's way back is not the run's).
    let slack = Duration::from_millis(10);
    let mut edges: Vec<(Instant, i32)> = Vec::new();
    for (end, run) in runs.iter() {
        if *run > slack * 3 {
            edges.push((*end - *run + slack, 1));
            edges.push((*end - slack, -1));
        }
    }
    edges.sort();
    let (mut now, mut most) = (0, 0);
    for (_, d) in edges {
        now += d;
        most = most.max(now);
    }
    let workers_used = workers
        .iter()
        .filter(|w| {
            let (_, _, m) =
                super::endpoint::call("GET", &format!("{}/metrics", w.http()), &[], b"");
            String::from_utf8(m).unwrap().contains(&format!(
                "fnvm_requests_total{{function=\"{fid}\",status=\"200\"}}"
            ))
        })
        .count();
    eprintln!(
        "maxInstances 2 across 3 workers asked directly: {} runs on {workers_used} workers, {} \
         refused (503), at most {most} running at once",
        runs.len(),
        refused.load(Ordering::Relaxed)
    );
    assert!(most <= 2, "{most} instances at once");
    let held: u64 = placements(&api, &operator)
        .iter()
        .filter(|p| p["functionId"] == fid.as_str())
        .map(|p| p["heldMaxInstances"].as_u64().unwrap())
        .sum();
    assert!(held <= 2);
}
