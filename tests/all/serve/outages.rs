//! A worker cut off from the metadata store and the API keeps serving what it has, and catches
//! up (subscribes to notifications again, loads the new deployment) once the store is back. The
//! database "goes down" for the worker alone: it reaches PostgreSQL through a TCP relay that the
//! test cuts and restores, while other tests keep using the same server. The same for a whole
//! fleet (API, two workers, a router): requests through the router are all answered while the
//! database is away, and a deployment made once it is back reaches the fleet.

use super::*;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// A TCP relay to one address, which can be cut (every connection closed, none accepted) and
/// restored on the same port.
struct Relay {
    port: u16,
    target: SocketAddr,
    open: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
    acceptor: Option<JoinHandle<()>>,
}

impl Relay {
    fn start(target: SocketAddr) -> Relay {
        let mut r = Relay {
            port: 0,
            target,
            open: Arc::new(AtomicBool::new(false)),
            conns: Arc::new(Mutex::new(Vec::new())),
            acceptor: None,
        };
        r.restore();
        r
    }

    /// Listens (again) and relays every connection.
    fn restore(&mut self) {
        let listener = if self.port == 0 {
            // Below the kernel's ephemeral ports (32768 and up), so that no connection of a
            // test running alongside takes the port while the relay is cut.
            let first = 20_000 + u16::try_from(std::process::id() % 5_000).unwrap();
            (first..32_000)
                .find_map(|port| TcpListener::bind(("127.0.0.1", port)).ok())
                .expect("binding the relay")
        } else {
            TcpListener::bind(("127.0.0.1", self.port)).expect("binding the relay again")
        };
        self.port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        self.open.store(true, Ordering::SeqCst);
        let (open, conns, target) = (self.open.clone(), self.conns.clone(), self.target);
        self.acceptor = Some(std::thread::spawn(move || {
            while open.load(Ordering::SeqCst) {
                let client = match listener.accept() {
                    Ok((c, _)) => c,
                    Err(_) => {
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    }
                };
                client.set_nonblocking(false).unwrap();
                let Ok(server) = TcpStream::connect(target) else {
                    continue;
                };
                let mut all = conns.lock().unwrap();
                all.push(client.try_clone().unwrap());
                all.push(server.try_clone().unwrap());
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(Shutdown::Both);
                        let _ = from.shutdown(Shutdown::Both);
                    });
                }
            }
        }));
    }

    /// Closes every relayed connection and stops listening.
    fn cut(&mut self) {
        self.open.store(false, Ordering::SeqCst);
        if let Some(a) = self.acceptor.take() {
            a.join().unwrap();
        }
        for c in self.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.cut();
    }
}

/// Deploys `wasm` as a new version of `fid`, through the CLI (waits until READY).
fn redeploy(api: &Server, org: &str, token: &str, fid: &str, wasm: &[u8]) {
    let file = api.data_dir.with_extension("v2.wasm");
    std::fs::write(&file, wasm).unwrap();
    ok(api.cli(org, token, &["deploy", file.to_str().unwrap(), fid]));
    let _ = std::fs::remove_file(&file);
}

#[test]
fn a_worker_keeps_serving_while_the_database_and_the_api_are_down() {
    let backends = Backends::with(true, true, "outage");
    let direct = backends.database_url.clone().unwrap();
    // postgres://user:password@HOST:PORT/database
    let (credentials, rest) = direct.split_once('@').unwrap();
    let (host_port, database) = rest.split_once('/').unwrap();
    let mut relay = Relay::start(host_port.parse().unwrap());
    let relayed = format!("{credentials}@127.0.0.1:{}/{database}", relay.port);

    let mut api = Server::start("outage-api", backends.clone(), &["--role", "api"]);
    let worker_backends = Backends {
        database_url: Some(relayed),
        s3: backends.s3.clone(),
    };
    let worker = Server::start_worker_sharing("outage-worker", worker_backends, &api);
    let token = api.token(Some("org-o"));
    let fid = api.deploy_function("org-o", &token, r#"{"name": "hello"}"#, &hello_wasm());
    let url = format!("{}/{fid}", worker.http());
    let get = || endpoint::call("GET", &url, &[], b"");
    let (s, _, body) = get();
    assert_eq!((s, body.as_slice()), (200, &b"Hello World\n"[..]));

    // The database and the API go away; calls keep being answered until the worker has failed
    // a pass against the store (its pool gives up on the database after 10 s), and a while.
    relay.cut();
    api.kill9();
    let start = Instant::now();
    let mut calls = 0;
    let mut noticed = None;
    while noticed.is_none_or(|t: Instant| t.elapsed() < Duration::from_secs(2)) {
        if noticed.is_none()
            && worker
                .log_text()
                .contains("syncing with the metadata store")
        {
            noticed = Some(Instant::now());
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the worker never noticed the outage:\n{}",
            worker.log_text()
        );
        let (s, _, body) = get();
        assert_eq!(
            (s, body.as_slice()),
            (200, &b"Hello World\n"[..]),
            "call {calls} during the outage\n{}",
            worker.log_text()
        );
        calls += 1;
        std::thread::sleep(Duration::from_millis(20));
    }

    // Back: a new version deployed through the API reaches the worker, which reports it READY
    // and switches to it.
    relay.restore();
    api.spawn();
    let again = printing_wasm("Hello again\n");
    redeploy(&api, "org-o", &token, &fid, &again);
    let start = Instant::now();
    loop {
        let (s, _, body) = get();
        assert_eq!(s, 200);
        if body == b"Hello again\n" {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "still the old version\n{}",
            worker.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(calls > 20, "only {calls} calls during the outage");
}

#[test]
fn a_fleet_serves_through_a_database_outage_and_catches_up() {
    let backends = Backends::with(true, true, "fleet_outage");
    let direct = backends.database_url.clone().unwrap();
    let (credentials, rest) = direct.split_once('@').unwrap();
    let (host_port, database) = rest.split_once('/').unwrap();
    let mut relay = Relay::start(host_port.parse().unwrap());
    let relayed = Backends {
        database_url: Some(format!("{credentials}@127.0.0.1:{}/{database}", relay.port)),
        s3: backends.s3.clone(),
    };
    let api = Server::start("fleet-outage-api", relayed.clone(), &["--role", "api"]);
    let lease = ["--worker-lease-ms", "1500"];
    let workers: Vec<Server> = (0..2)
        .map(|i| {
            Server::start_worker_sharing_with(
                &format!("fleet-outage-{i}"),
                relayed.clone(),
                &api,
                &lease,
            )
        })
        .collect();
    let router = Server::start_router_sharing("fleet-outage-router", relayed, &api);
    let token = api.token(Some("org-fo"));
    let fid = api.deploy_function(
        "org-fo",
        &token,
        r#"{"maxInstances": 2}"#,
        &printing_wasm("up"),
    );
    let url = format!("{}/{fid}", router.http());
    let start = Instant::now();
    while endpoint::call("GET", &url, &[], b"").0 != 200 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{}",
            router.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Two clients through the router: 2 s, the database away for 8 s, 6 s after.
    let clients = super::fleet::Clients::start(2, &url);
    std::thread::sleep(Duration::from_secs(2));
    relay.cut();
    std::thread::sleep(Duration::from_secs(8));
    relay.restore();
    std::thread::sleep(Duration::from_secs(6));
    let statuses: Vec<u16> = clients.stop().into_iter().map(|(_, s)| s).collect();
    let failed = statuses.iter().filter(|s| **s != 200).count();
    eprintln!(
        "database outage of 8 s under a fleet: {failed} of {} requests through the router failed",
        statuses.len()
    );
    assert_eq!(
        failed,
        0,
        "{:?}\n{}\n{}",
        statuses.iter().filter(|s| **s != 200).collect::<Vec<_>>(),
        router.log_text(),
        api.log_text()
    );
    assert!(statuses.len() > 100);
    // Caught up: a function deployed now is placed, READY and answers through the router.
    let again = api.deploy_function("org-fo", &token, "{}", &printing_wasm("again"));
    let url = format!("{}/{again}", router.http());
    let start = Instant::now();
    loop {
        let (s, _, body) = endpoint::call("GET", &url, &[], b"");
        if (s, body.as_slice()) == (200, b"again".as_slice()) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{s}\n{}",
            workers
                .iter()
                .map(|w| w.log_text())
                .collect::<Vec<_>>()
                .join("\n---\n")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
