//! Reliability: a server killed with SIGKILL in the middle of deploys, concurrent clients, and
//! the roles apart in separate processes.

use super::*;

/// `kill -9` of the server at arbitrary points of deploys, then a restart, repeatedly: every
/// acknowledged write is there, nothing stays packaging or deploying, and READY deployments are
/// served again without recompiling.
fn survives_kill9(name: &str, backends: Backends) {
    let mut server = Server::start(name, backends, &[]);
    let token = server.token(Some("org-k"));
    let base = format!("{}/v4/functions/organisations/org-k/functions", server.api);
    let mut functions: Vec<String> = Vec::new();
    let mut deployments: Vec<(String, String)> = Vec::new();
    for round in 0..5u64 {
        let (api, tok) = (server.api.clone(), token.clone());
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop2 = stop.clone();
        let base2 = base.clone();
        let client = std::thread::spawn(move || {
            let (mut fs, mut ds) = (Vec::new(), Vec::new());
            while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
                let Some((201, f)) = try_request(
                    "POST",
                    &base2,
                    Some(&tok),
                    Some("application/json"),
                    Some(b"{}".to_vec()),
                ) else {
                    break;
                };
                let fid = f["id"].as_str().unwrap().to_string();
                fs.push(fid.clone());
                match deploy_raw(&api, "org-k", &tok, &fid) {
                    Some(did) => ds.push((fid, did)),
                    None => break,
                }
            }
            (fs, ds)
        });
        // Kill at a different point of the work each round.
        std::thread::sleep(Duration::from_millis(150 + 170 * round));
        server.kill9();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let (fs, ds) = client.join().unwrap();
        eprintln!(
            "{name} round {round}: {} functions and {} deploys acknowledged before the kill",
            fs.len(),
            ds.len()
        );
        functions.extend(fs);
        deployments.extend(ds);
        server.spawn();
        for fid in &functions {
            let (s, _) = request("GET", &format!("{base}/{fid}"), Some(&token), None, None);
            assert_eq!(s, 200, "round {round}: acknowledged function {fid} lost");
        }
        for (fid, did) in &deployments {
            let d = wait_settled(&format!("{base}/{fid}/deployments/{did}"), &token);
            assert_eq!(
                d["status"],
                "READY",
                "round {round}: {d}\n{}",
                server.log_text()
            );
        }
    }
    assert!(
        deployments.len() >= 3,
        "too few deploys acknowledged to mean anything: {}",
        deployments.len()
    );
    // Nothing is left packaging or deploying (including deploys whose trigger was done but
    // not acknowledged before the kill).
    let op = server.token(None);
    let start = Instant::now();
    loop {
        let mut stuck = Vec::new();
        for status in ["PACKAGING", "DEPLOYING"] {
            let url = format!("{}/v4/functions/deployments/{status}", server.api);
            let (s, list) = request("GET", &url, Some(&op), None, None);
            assert_eq!(s, 200);
            stuck.extend(
                list.as_array()
                    .unwrap()
                    .iter()
                    .filter(|d| d["ownerId"] == "org-k")
                    .cloned(),
            );
        }
        if stuck.is_empty() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "still in progress: {stuck:?}\n{}",
            server.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // READY deployments came back from their artifacts: the worker compiled nothing itself.
    let cache = server.data_dir.join("cache");
    let compiled = std::fs::read_dir(&cache).map(|d| d.count()).unwrap_or(0);
    assert_eq!(
        compiled,
        0,
        "the worker recompiled modules into {}",
        cache.display()
    );
}

#[test]
fn a_killed_server_loses_nothing_on_sqlite() {
    survives_kill9("kill9-sqlite", Backends::embedded());
}

#[test]
fn a_killed_server_loses_nothing_on_postgresql() {
    survives_kill9("kill9-pg", Backends::with(true, false, "kill9"));
}

/// Parallel clients: replacing one Function from 16 threads leaves exactly one writer's whole
/// settings; many Functions created at once are all there; two deploys of one Function at once
/// both become READY.
#[test]
fn concurrent_clients_lose_no_update() {
    let server = Server::start("concurrency", Backends::embedded(), &[]);
    let token = server.token(Some("org-c"));
    let base = format!("{}/v4/functions/organisations/org-c/functions", server.api);
    let one = format!("{base}/{}", server.create_function("org-c", &token, "{}"));
    let writers: Vec<_> = (0..16u32)
        .map(|i| {
            let (one, token, base) = (one.clone(), token.clone(), base.clone());
            std::thread::spawn(move || {
                for round in 0..10u32 {
                    let body = serde_json::json!({
                        "name": format!("w{i}"),
                        "environment": {"WRITER": i.to_string(), "ROUND": round.to_string()},
                        "maxInstances": i + 1,
                        "timeoutMs": 1000 + i,
                    });
                    let (s, _) = request(
                        "PUT",
                        &one,
                        Some(&token),
                        Some("application/json"),
                        Some(body.to_string().into_bytes()),
                    );
                    assert_eq!(s, 200);
                    let (s, _) = request(
                        "POST",
                        &base,
                        Some(&token),
                        Some("application/json"),
                        Some(b"{}".to_vec()),
                    );
                    assert_eq!(s, 201);
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    let (_, f) = request("GET", &one, Some(&token), None, None);
    let i: u32 = f["environment"]["WRITER"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(f["name"], format!("w{i}"), "{f}");
    assert_eq!(f["maxInstances"], i + 1, "{f}");
    assert_eq!(f["timeoutMs"], 1000 + i, "{f}");
    let (_, list) = request("GET", &base, Some(&token), None, None);
    assert_eq!(list.as_array().unwrap().len(), 1 + 16 * 10);

    let fid = f["id"].as_str().unwrap().to_string();
    let deploys: Vec<_> = (0..2)
        .map(|_| {
            let (api, token, fid) = (server.api.clone(), token.clone(), fid.clone());
            std::thread::spawn(move || deploy_raw(&api, "org-c", &token, &fid).unwrap())
        })
        .collect();
    for d in deploys {
        let did = d.join().unwrap();
        let d = wait_settled(&format!("{one}/deployments/{did}"), &token);
        assert_eq!(d["status"], "READY", "{d}");
    }
}

/// The roles apart, as on different machines: an API process and a worker process sharing
/// only PostgreSQL and an S3 bucket. The worker learns of the deployment from the database,
/// fetches the artifact from S3, and reports it READY with its own URL.
#[test]
fn api_and_worker_processes_meet_only_in_the_stores() {
    let backends = Backends::with(true, true, "roles");
    let api = Server::start("roles-api", backends.clone(), &["--role", "api"]);
    let token = api.token(Some("org-r"));
    let base = format!("{}/v4/functions/organisations/org-r/functions", api.api);
    let fid = api.create_function("org-r", &token, "{}");
    let did = deploy_raw(&api.api, "org-r", &token, &fid).unwrap();
    // With no worker, the deployment is packaged and waits in DEPLOYING.
    let url = format!("{base}/{fid}/deployments/{did}");
    let start = Instant::now();
    loop {
        let (_, d) = request("GET", &url, Some(&token), None, None);
        if d["status"] == "DEPLOYING" {
            break;
        }
        assert!(d["status"] != "ERROR" && d["status"] != "READY", "{d}");
        assert!(start.elapsed() < Duration::from_secs(60), "{d}");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    let (_, d) = request("GET", &url, Some(&token), None, None);
    assert_eq!(
        d["status"], "DEPLOYING",
        "nothing but a worker may make it READY"
    );
    let worker = Server::start_worker_sharing("roles-worker", backends, &api);
    let d = wait_settled(&url, &token);
    assert_eq!(d["status"], "READY", "{d}\n{}", worker.log_text());
    assert!(
        d["url"].as_str().unwrap().ends_with(&format!("/{fid}")),
        "{d}"
    );
}
