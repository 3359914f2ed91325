//! Fleet membership end to end: workers on their own processes (and data directories, as on
//! other machines) register in the shared PostgreSQL and renew their lease; an operator sees
//! them with `GET /v4/fleet/workers` and `fnvm fleet workers`, organisations do not; a worker
//! killed with SIGKILL is dead once its lease lapses, one stopped cleanly leaves at once.

use super::*;

/// The workers as an operator sees them, by id.
fn fleet(api: &Server, token: &str) -> Vec<Value> {
    let (s, body) = request(
        "GET",
        &format!("{}/v4/fleet/workers", api.api),
        Some(token),
        None,
        None,
    );
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
    let (s, _) = request(
        "GET",
        &format!("{}/v4/fleet/workers", api.api),
        Some(&org),
        None,
        None,
    );
    assert_eq!(s, 404);
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
    let (s, body) = request(
        "GET",
        &format!("{}/v4/fleet/scheduler", api.api),
        Some(token),
        None,
        None,
    );
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
