//! The router end to end, on PostgreSQL and S3: requests through `fnvm serve --role router`
//! reach the worker holding the function; SIGKILL of that worker under load fails only the
//! requests it had in flight (counted), the others go to the remaining workers, which load the
//! function on demand until the scheduler has placed it; SIGKILL of the API process holding
//! the scheduler's role under load fails nothing, and the other API process schedules the
//! next deployment; HAProxy (Debian's) in front of two routers spreads requests over both and
//! loses none when one is killed.

use super::fleet::{all_logs, fleet, get, placements, start_fleet, Clients};
use super::*;
use std::collections::BTreeMap;

/// The URL of the worker holding `fid` once it has loaded it.
fn holder(api: &Server, operator: &str, fid: &str) -> String {
    let start = Instant::now();
    loop {
        let p: Vec<Value> = placements(api, operator)
            .into_iter()
            .filter(|p| p["functionId"] == fid && p["loadedDeploymentId"] == p["deploymentId"])
            .collect();
        if let Some(p) = p.first() {
            let w = fleet(api, operator);
            let w = w.iter().find(|w| w["id"] == p["workerId"]).unwrap();
            return w["url"].as_str().unwrap().to_string();
        }
        assert!(start.elapsed() < Duration::from_secs(30), "{p:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The requests a worker answered for `fid` with status 200, from its `/metrics`.
fn answered(worker: &str, fid: &str) -> u64 {
    let (_, body) = get(&format!("{worker}/metrics"));
    let text = String::from_utf8(body).unwrap();
    let prefix = format!("fnvm_requests_total{{function=\"{fid}\",status=\"200\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map_or(0, |n| n.parse().unwrap())
}

#[test]
fn a_router_follows_placements_and_a_killed_worker_fails_only_its_requests_in_flight() {
    let (backends, api, mut workers, operator) = start_fleet("route", 3, &[]);
    let router = Server::start_router_sharing("route-router", backends, &api);
    let org = api.token(Some("org-r"));
    let fid = api.deploy_function(
        "org-r",
        &org,
        r#"{"maxInstances": 4}"#,
        &printing_wasm("routed"),
    );
    let holding = holder(&api, &operator, &fid);
    let url = format!("{}/{fid}", router.http());
    for _ in 0..40 {
        let (s, body) = get(&url);
        assert_eq!(
            (s, body.as_slice()),
            (200, b"routed".as_slice()),
            "{}",
            router.log_text()
        );
    }
    // Every request went to the worker holding the function.
    for w in &workers {
        let n = answered(&w.http(), &fid);
        assert_eq!(n, if w.http() == holding { 40 } else { 0 }, "{}", w.http());
    }
    // Four clients through the router; SIGKILL of the holder after a second.
    let clients = Clients::start(4, &url);
    std::thread::sleep(Duration::from_secs(1));
    let i = workers.iter().position(|w| w.http() == holding).unwrap();
    workers[i].kill9();
    let killed = Instant::now();
    std::thread::sleep(Duration::from_secs(8));
    let log = clients.stop();
    let mut statuses = BTreeMap::new();
    for (_, s) in log.iter() {
        *statuses.entry(*s).or_insert(0u32) += 1;
    }
    let failed: Vec<&(Instant, u16)> = log.iter().filter(|(_, s)| *s != 200).collect();
    let recovered = log
        .iter()
        .filter(|(t, s)| *t > killed && *s == 200)
        .map(|(t, _)| t.duration_since(killed))
        .min();
    let failing_for = failed
        .iter()
        .map(|(t, _)| t.saturating_duration_since(killed))
        .max();
    eprintln!(
        "worker SIGKILL under load through the router: statuses {statuses:?}, failures up to \
         {failing_for:?} after the kill, first success after it at {recovered:?}"
    );
    // Only what was on its way to the killed worker fails: what it had in flight (one request
    // per client at most) and what the router sent it before the first failure showed it dead
    // (at most one more per client); nothing once that is known.
    assert!(
        failed.iter().all(|(_, s)| *s == 502) && failed.len() <= 8,
        "{statuses:?}\n{}",
        router.log_text()
    );
    assert!(
        failing_for.is_none_or(|d| d < Duration::from_millis(500)),
        "failures until {failing_for:?} after the kill"
    );
    assert!(
        recovered.is_some_and(|d| d < Duration::from_secs(10)),
        "{statuses:?}"
    );
    // The last seconds: everything answered.
    assert!(log
        .iter()
        .filter(|(t, _)| t.saturating_duration_since(killed) > Duration::from_secs(7))
        .all(|(_, s)| *s == 200));

    let (_, metrics) = get(&format!("{}/metrics", router.http()));
    let metrics = String::from_utf8(metrics).unwrap();
    assert!(metrics.contains("fnvm_router_workers 2"), "{metrics}");
}

#[test]
fn haproxy_spreads_over_two_routers_and_loses_nothing_when_one_dies() {
    let haproxy = services::haproxy();
    let (backends, api, workers, _operator) = start_fleet("haproxy", 2, &[]);
    let mut routers: Vec<Server> = (0..2)
        .map(|i| {
            Server::start_router_sharing(&format!("haproxy-router-{i}"), backends.clone(), &api)
        })
        .collect();
    let org = api.token(Some("org-h"));
    let fid = api.deploy_function(
        "org-h",
        &org,
        r#"{"maxInstances": 2}"#,
        &printing_wasm("front"),
    );
    let port = free_port();
    let config = api.data_dir.with_extension("haproxy.cfg");
    let servers: String = routers
        .iter()
        .enumerate()
        .map(|(i, r)| {
            format!(
                "  server r{i} {} check inter 200ms fall 1 rise 1\n",
                r.http().trim_start_matches("http://")
            )
        })
        .collect();
    std::fs::write(
        &config,
        format!(
            "global\n  maxconn 256\n\
             defaults\n  mode http\n  timeout connect 1s\n  timeout client 30s\n  \
             timeout server 30s\n  retries 3\n  option redispatch\n\
             frontend fe\n  bind 127.0.0.1:{port}\n  default_backend routers\n\
             backend routers\n  balance roundrobin\n  option httpchk GET /healthz\n{servers}"
        ),
    )
    .unwrap();
    let mut proxy = Command::new(&haproxy)
        .args(["-db", "-f"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting haproxy");
    let front = format!("http://127.0.0.1:{port}/{fid}");
    let start = Instant::now();
    while try_request(
        "GET",
        &format!("http://127.0.0.1:{port}/healthz"),
        None,
        None,
        None,
    )
    .is_none()
    {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "haproxy did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut failures = 0;
    for _ in 0..40 {
        let (s, body) = get(&front);
        if (s, body.as_slice()) != (200, b"front".as_slice()) {
            failures += 1;
        }
    }
    assert_eq!(failures, 0, "{}", all_logs(&api, &workers));
    // Round robin: both routers forwarded.
    let forwarded = |r: &Server| -> u64 {
        let (_, m) = get(&format!("{}/metrics", r.http()));
        String::from_utf8(m)
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("fnvm_router_requests_total{result=\"forwarded\"} "))
            .map_or(0, |n| n.parse().unwrap())
    };
    assert!(forwarded(&routers[0]) >= 10 && forwarded(&routers[1]) >= 10);
    // One router dies: HAProxy retries its refused connections on the other.
    routers[0].kill9();
    for _ in 0..40 {
        let (s, _) = get(&front);
        if s != 200 {
            failures += 1;
        }
    }
    let _ = proxy.kill();
    let _ = proxy.wait();
    eprintln!("router SIGKILL behind HAProxy: {failures} of 40 sequential requests failed");
    assert_eq!(failures, 0);
}

#[test]
fn killing_the_scheduler_under_load_fails_nothing_and_the_other_api_schedules() {
    let (backends, first, workers, operator) = start_fleet("sched_kill", 2, &[]);
    let second = Server::start_api_sharing("sched_kill-api2", backends.clone(), &first);
    let router = Server::start_router_sharing("sched_kill-router", backends, &first);
    let org = first.token(Some("org-k"));
    let fid = first.deploy_function("org-k", &org, r#"{"maxInstances": 2}"#, &printing_wasm("k"));
    let url = format!("{}/{fid}", router.http());
    let start = Instant::now();
    while get(&url).0 != 200 {
        assert!(start.elapsed() < Duration::from_secs(30));
        std::thread::sleep(Duration::from_millis(50));
    }
    let holder = |api: &Server| -> String {
        let (s, body) = super::fleet::fleet_get(api, &operator, "scheduler");
        assert_eq!(s, 200, "{body}");
        body["holder"].as_str().unwrap().to_string()
    };
    let node = |s: &Server| std::fs::read_to_string(s.data_dir.join("node-id")).unwrap();
    let scheduler = holder(&first);
    let (mut dead, alive) = if scheduler.starts_with(node(&first).trim()) {
        (first, second)
    } else {
        (second, first)
    };
    let clients = Clients::start(2, &url);
    std::thread::sleep(Duration::from_secs(1));
    dead.kill9();
    // The other API process takes the role within the lease (6 s) and places a new function.
    let killed = Instant::now();
    while holder(&alive) == scheduler {
        assert!(
            killed.elapsed() < Duration::from_secs(20),
            "{}",
            alive.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let org2 = alive.token(Some("org-k"));
    let next = alive.deploy_function("org-k", &org2, "{}", &printing_wasm("after"));
    let (s, body) = get(&format!("{}/{next}", router.http()));
    assert_eq!(
        (s, body.as_slice()),
        (200, b"after".as_slice()),
        "{}",
        all_logs(&alive, &workers)
    );
    let statuses: Vec<u16> = clients.stop().into_iter().map(|(_, s)| s).collect();
    let failed = statuses.iter().filter(|s| **s != 200).count();
    eprintln!(
        "scheduler SIGKILL under load: {failed} of {} requests through the router failed; \
         take-over after {:?}",
        statuses.len(),
        killed.elapsed()
    );
    assert_eq!(failed, 0);
}
