//! Fleet membership end to end: workers on their own processes (and data directories, as on
//! other machines) register in the shared PostgreSQL and renew their lease; an operator sees
//! them with `GET /v4/fleet/workers` and `fnvm fleet workers`, organisations do not; a worker
//! killed with SIGKILL is dead once its lease lapses, one stopped cleanly leaves at once.
//! Scheduler election and take-over. Placement: functions spread over the workers by load,
//! any worker answers any function (the share moves to where requests arrive, never adding up
//! to more than `maxInstances`), and a killed worker's functions go to the others.

use super::*;

/// `GET /v4/fleet/{what}` as `token`: the status and body.
pub(super) fn fleet_get(api: &Server, token: &str, what: &str) -> (u16, Value) {
    request(
        "GET",
        &format!("{}/v4/fleet/{what}", api.api),
        Some(token),
        None,
        None,
    )
}

/// The workers as an operator sees them, by id.
pub(super) fn fleet(api: &Server, token: &str) -> Vec<Value> {
    let (s, body) = fleet_get(api, token, "workers");
    assert_eq!(s, 200, "{body}");
    body.as_array().unwrap().clone()
}

/// The placements as an operator sees them.
pub(super) fn placements(api: &Server, token: &str) -> Vec<Value> {
    let (s, body) = fleet_get(api, token, "placements");
    assert_eq!(s, 200, "{body}");
    body.as_array().unwrap().clone()
}

fn find<'a>(workers: &'a [Value], url: &str) -> Option<&'a Value> {
    workers.iter().find(|w| w["url"] == url)
}

#[test]
fn workers_register_renew_and_lapse_or_leave() {
    let backends = Backends::with(true, false, "fleet");
    let api = Server::start("fleet-api", backends.clone(), &["--role", "api"]);
    let operator = api.token(None);
    let org = api.token(Some("org-f"));
    let lease = ["--worker-lease-ms", "1500"];
    let mut a = Server::start_worker_sharing_with("fleet-a", backends.clone(), &api, &lease);
    let mut b = Server::start_worker_sharing_with("fleet-b", backends, &api, &lease);
    let start = Instant::now();
    let workers = loop {
        let w = fleet(&api, &operator);
        if find(&w, &a.http()).is_some() && find(&w, &b.http()).is_some() {
            break w;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{w:?}\n{}\n{}",
            a.log_text(),
            b.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(workers.len(), 2, "{workers:?}");
    for w in &workers {
        assert_eq!(w["live"], true, "{w}");
        assert!(w["cores"].as_u64().unwrap() >= 1, "{w}");
        assert!(w["slots"].as_u64().unwrap() >= 1, "{w}");
        assert!(w["memoryBytes"].as_u64().unwrap() > 1 << 20, "{w}");
        assert!(w["residentBytes"].as_u64().unwrap() > 0, "{w}");
        assert_ne!(w["id"], "", "{w}");
    }
    assert_ne!(workers[0]["id"], workers[1]["id"]);
    // Renewals keep coming: the lease end moves on.
    let first = find(&workers, &a.http()).unwrap()["leaseUntil"].clone();
    std::thread::sleep(Duration::from_millis(1200));
    let w = fleet(&api, &operator);
    assert_ne!(find(&w, &a.http()).unwrap()["leaseUntil"], first, "{w:?}");
    // An organisation's token does not see the route; the CLI shows the table.
    for what in ["workers", "scheduler", "placements"] {
        assert_eq!(fleet_get(&api, &org, what).0, 404, "{what}");
    }
    let out = Command::new(FNVM)
        .args(["fleet", "workers", "--api", &api.api, "--token", &operator])
        .output()
        .unwrap();
    let text = ok(out);
    assert!(text.contains(&a.http()) && text.contains("live"), "{text}");
    // SIGKILL: dead once the lease lapses (1.5 s), still listed. SIGTERM: gone at once.
    a.kill9();
    let killed = Instant::now();
    loop {
        let w = fleet(&api, &operator);
        let wa = find(&w, &a.http()).expect("a killed worker stays listed");
        if wa["live"] == false {
            assert_eq!(find(&w, &b.http()).unwrap()["live"], true, "{w:?}");
            // Live ones first.
            assert_eq!(w[0]["url"], b.http(), "{w:?}");
            break;
        }
        assert!(killed.elapsed() < Duration::from_secs(10), "{w:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(killed.elapsed() >= Duration::from_millis(500));
    b.terminate();
    let w = fleet(&api, &operator);
    assert!(find(&w, &b.http()).is_none(), "{w:?}\n{}", b.log_text());
    assert_eq!(w.len(), 1, "{w:?}");
}

/// The scheduler's role as an operator sees it through `api`.
fn scheduler(api: &Server, token: &str) -> Option<Value> {
    let (s, body) = fleet_get(api, token, "scheduler");
    match s {
        200 => Some(body),
        404 => None,
        _ => panic!("{s}: {body}"),
    }
}

#[test]
fn one_api_process_schedules_and_another_takes_over_when_it_dies() {
    let backends = Backends::with(true, false, "sched");
    let mut a = Server::start("sched-a", backends.clone(), &["--role", "api"]);
    let mut b = Server::start("sched-b", backends, &["--role", "api"]);
    let operator = a.token(None);
    let node = |s: &Server| std::fs::read_to_string(s.data_dir.join("node-id")).unwrap();
    let start = Instant::now();
    let first = loop {
        if let Some(s) = scheduler(&a, &operator) {
            if s["live"] == true {
                break s;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{}",
            a.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    // Both processes see the same holder, one of the two.
    assert_eq!(scheduler(&b, &operator).unwrap()["holder"], first["holder"]);
    let holder = first["holder"].as_str().unwrap().to_string();
    let (dead, alive) = if holder.starts_with(node(&a).trim()) {
        (&mut a, &mut b)
    } else {
        assert!(holder.starts_with(node(&b).trim()), "{holder}");
        (&mut b, &mut a)
    };
    // SIGKILL of the holder: the other takes over within the lease (6 s), in the next term.
    dead.kill9();
    let killed = Instant::now();
    let next = loop {
        let s = scheduler(alive, &operator).unwrap();
        if s["holder"] != holder.as_str() && s["live"] == true {
            break s;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(20),
            "{s}\n{}",
            alive.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(
        next["term"].as_u64().unwrap(),
        first["term"].as_u64().unwrap() + 1
    );
    assert!(alive
        .log_text()
        .contains("scheduler: this process schedules"));
}

/// The placements of `fid` once `settled` holds of them, checking at every sample that the
/// shares held never add up to more than `max`.
fn placements_of(
    api: &Server,
    token: &str,
    fid: &str,
    max: u64,
    settled: impl Fn(&[Value]) -> bool,
    logs: &dyn Fn() -> String,
) -> Vec<Value> {
    let start = Instant::now();
    loop {
        let p: Vec<Value> = placements(api, token)
            .into_iter()
            .filter(|p| p["functionId"] == fid)
            .collect();
        let held: u64 = p
            .iter()
            .map(|p| p["heldMaxInstances"].as_u64().unwrap())
            .sum();
        assert!(held <= max, "{p:?}");
        if settled(&p) {
            return p;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{p:?}\n{}",
            logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Every process's log.
pub(super) fn all_logs(api: &Server, workers: &[Server]) -> String {
    workers
        .iter()
        .map(|w| w.log_text())
        .chain([api.log_text()])
        .collect::<Vec<_>>()
        .join("\n----\n")
}

/// A GET of a function's URL: status and body.
pub(super) fn get(url: &str) -> (u16, Vec<u8>) {
    let (s, _, body) = super::endpoint::call("GET", url, &[], b"");
    (s, body)
}

/// One replica, on a live worker, with the whole share, having loaded the deployment placed.
fn one_replica_serving(p: &[Value], max: u64) -> bool {
    p.len() == 1
        && p[0]["maxInstances"] == max
        && p[0]["appliedMaxInstances"] == max
        && p[0]["loadedDeploymentId"] == p[0]["deploymentId"]
}

/// An API process (with `api_args` after `--role api`) and `n` workers (lease 1.5 s) on fresh
/// PostgreSQL and S3 stores, the workers live: (backends, API, workers, operator token).
pub(super) fn start_fleet(
    name: &str,
    n: usize,
    api_args: &[&str],
) -> (Backends, Server, Vec<Server>, String) {
    let backends = Backends::with(true, true, name);
    let mut args = vec!["--role", "api"];
    args.extend_from_slice(api_args);
    let api = Server::start(&format!("{name}-api"), backends.clone(), &args);
    let operator = api.token(None);
    let lease = ["--worker-lease-ms", "1500"];
    let workers: Vec<Server> = (0..n)
        .map(|i| {
            Server::start_worker_sharing_with(
                &format!("{name}-{i}"),
                backends.clone(),
                &api,
                &lease,
            )
        })
        .collect();
    let start = Instant::now();
    while fleet(&api, &operator)
        .iter()
        .filter(|w| w["live"] == true)
        .count()
        < n
    {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{}",
            all_logs(&api, &workers)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    (backends, api, workers, operator)
}

/// Client threads sending GETs to `url` in a loop until stopped, each status recorded with
/// when it came.
pub(super) struct Clients {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    log: std::sync::Arc<std::sync::Mutex<Vec<(Instant, u16)>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Clients {
    /// `n` clients on `url`.
    pub(super) fn start(n: usize, url: &str) -> Clients {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let threads = (0..n)
            .map(|_| {
                let (stop, log, url) = (stop.clone(), log.clone(), url.to_string());
                std::thread::spawn(move || {
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let s = get(&url).0;
                        log.lock().unwrap().push((Instant::now(), s));
                    }
                })
            })
            .collect();
        Clients { stop, log, threads }
    }

    /// Stops the clients; every status with its time.
    pub(super) fn stop(self) -> Vec<(Instant, u16)> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for t in self.threads {
            t.join().unwrap();
        }
        std::mem::take(&mut *self.log.lock().unwrap())
    }
}

#[test]
fn functions_are_placed_by_load_and_any_worker_answers_any_function() {
    let (_backends, api, mut workers, operator) = start_fleet("place", 3, &[]);
    let org = api.token(Some("org-p"));
    let url_of = |worker_id: &Value| -> String {
        let w = fleet(&api, &operator);
        let w = w
            .iter()
            .find(|w| w["id"] == *worker_id)
            .expect("a registered worker");
        w["url"].as_str().unwrap().to_string()
    };
    // Three functions on an idle fleet: one replica each, on three different workers, each
    // with the whole of its maxInstances, loaded ahead of any request.
    let fids: Vec<String> = (0..3)
        .map(|i| {
            api.deploy_function(
                "org-p",
                &org,
                r#"{"maxInstances": 2}"#,
                &printing_wasm(&format!("f{i}")),
            )
        })
        .collect();
    let mut holders = Vec::new();
    for fid in &fids {
        let p = placements_of(
            &api,
            &operator,
            fid,
            2,
            |p| one_replica_serving(p, 2),
            &|| all_logs(&api, &workers),
        );
        holders.push(p[0]["workerId"].clone());
    }
    // Its owner sees the replica (not where it is); `fnvm functions get` shows it.
    let (s, r) = request(
        "GET",
        &format!(
            "{}/v4/functions/organisations/org-p/functions/{}/replicas",
            api.api, fids[0]
        ),
        Some(&org),
        None,
        None,
    );
    assert_eq!(s, 200, "{r}");
    assert_eq!(r.as_array().unwrap().len(), 1, "{r}");
    assert_eq!(r[0]["state"], "serving", "{r}");
    assert_eq!(r[0]["maxInstances"], 2, "{r}");
    assert!(r[0].get("workerId").is_none(), "{r}");
    let text = ok(api.cli("org-p", &org, &["get", &fids[0]]));
    assert!(
        text.contains("replicas") && text.contains("1 (2 instances, serving)"),
        "{text}"
    );
    let other_org = api.token(Some("org-q"));
    let (s, _) = request(
        "GET",
        &format!(
            "{}/v4/functions/organisations/org-q/functions/{}/replicas",
            api.api, fids[0]
        ),
        Some(&other_org),
        None,
        None,
    );
    assert_eq!(s, 404);
    let distinct: std::collections::HashSet<String> =
        holders.iter().map(|h| h.to_string()).collect();
    assert_eq!(distinct.len(), 3, "{holders:?}");
    for (fid, h) in fids.iter().zip(&holders) {
        let (s, body) = get(&format!("{}/{fid}", url_of(h)));
        assert_eq!(s, 200);
        assert!(body.starts_with(b"f"), "{}", String::from_utf8_lossy(&body));
    }
    // A request reaching a worker that does not hold f0 is answered: loaded there on demand,
    // and that worker becomes a replica too, the two shares adding up to maxInstances (the
    // autoscaler removes the idle one only after `--scale-in-after-ms`).
    let f0_holder = url_of(&holders[0]);
    let other = url_of(&holders[1]);
    let (s, body) = get(&format!("{other}/{}", fids[0]));
    assert_eq!(
        (s, body.as_slice()),
        (200, b"f0".as_slice()),
        "{}",
        all_logs(&api, &workers)
    );
    let p = placements_of(
        &api,
        &operator,
        &fids[0],
        2,
        |p| {
            p.iter().any(|p| p["workerId"] == holders[1])
                && p.iter()
                    .all(|p| p["loadedDeploymentId"] == p["deploymentId"] && p["maxInstances"] == 1)
        },
        &|| all_logs(&api, &workers),
    );
    assert_eq!(p.len(), 2, "{p:?}");
    // The former holder still answers (the share comes back on demand).
    let (s, _) = get(&format!("{f0_holder}/{}", fids[0]));
    assert_eq!(s, 200, "{}", all_logs(&api, &workers));
    // An unknown function: 404 anywhere.
    let (s, _) = get(&format!("{other}/no-such-function"));
    assert_eq!(s, 404);
    // A new version of f1 reaches its replica (READY once it has loaded it); deleting f1
    // removes it from every worker.
    let v2 = api.data_dir.with_extension("f1v2.wasm");
    std::fs::write(&v2, printing_wasm("f1v2")).unwrap();
    ok(api.cli("org-p", &org, &["deploy", v2.to_str().unwrap(), &fids[1]]));
    let start = Instant::now();
    while get(&format!("{}/{}", url_of(&holders[1]), fids[1])).1 != b"f1v2" {
        assert!(start.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(20));
    }
    let (s, _) = request(
        "DELETE",
        &format!(
            "{}/v4/functions/organisations/org-p/functions/{}",
            api.api, fids[1]
        ),
        Some(&org),
        None,
        None,
    );
    assert_eq!(s, 204);
    let start = Instant::now();
    while workers
        .iter()
        .any(|w| get(&format!("{}/{}", w.http(), fids[1])).0 != 404)
    {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{}",
            all_logs(&api, &workers)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(placements(&api, &operator)
        .iter()
        .all(|p| p["functionId"] != fids[1].as_str()));
    // SIGKILL of the worker holding f2: its lease lapses (1.5 s), and f2 is placed on, loaded
    // by and served from another worker.
    let i = workers
        .iter()
        .position(|w| w.http() == url_of(&holders[2]))
        .unwrap();
    workers[i].kill9();
    let p = placements_of(
        &api,
        &operator,
        &fids[2],
        2,
        |p| one_replica_serving(p, 2) && p[0]["workerId"] != holders[2],
        &|| all_logs(&api, &workers),
    );
    let (s, body) = get(&format!("{}/{}", url_of(&p[0]["workerId"]), fids[2]));
    assert_eq!((s, body.as_slice()), (200, b"f2".as_slice()));
}
