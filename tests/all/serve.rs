//! `fnvm serve` and `fnvm functions` end to end, as users drive them: the real binary as server
//! and as CLI, on loopback, on SQLite and PostgreSQL, with the artifact store local and on S3:
//! create → set-env → deploy → READY → list → redeploy a release → delete; the API's answers
//! for bad tokens, other organisations, bad fields and uploads; concurrent writers; and a
//! server killed with SIGKILL in the middle of deploys, restarted, with nothing acknowledged
//! lost and nothing stuck.

#[path = "../support/services.rs"]
mod services;

use serde_json::Value;
use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const FNVM: &str = env!("CARGO_BIN_EXE_fnvm");

/// A WASI hello world (prints `Hello World\n`), as a client would upload it.
pub fn hello_wasm() -> Vec<u8> {
    wat::parse_str(
        r#"(module
          (import "wasi_snapshot_preview1" "fd_write"
            (func $fd_write (param i32 i32 i32 i32) (result i32)))
          (memory (export "memory") 1)
          (data (i32.const 8) "Hello World\n")
          (func (export "_start")
            (i32.store (i32.const 0) (i32.const 8))
            (i32.store (i32.const 4) (i32.const 12))
            (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 32)))))"#,
    )
    .unwrap()
}

/// A fresh directory under Cargo's scratch space for integration tests.
pub fn scratch_dir(name: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("serve")
        .join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Where a test server keeps its metadata and artifacts.
#[derive(Clone, Debug, Default)]
pub struct Backends {
    /// `--database-url` (None: SQLite in the data directory).
    pub database_url: Option<String>,
    /// S3 (None: a local directory).
    pub s3: Option<services::S3>,
}

impl Backends {
    /// SQLite and a local directory: the embedded defaults.
    pub fn embedded() -> Backends {
        Backends::default()
    }

    /// PostgreSQL (a fresh database) and/or S3 (a fresh prefix).
    pub fn with(postgres: bool, s3: bool, name: &str) -> Backends {
        Backends {
            database_url: postgres.then(|| fresh_postgres_database(name)),
            s3: s3.then(services::s3),
        }
    }
}

/// A new, empty PostgreSQL database for one test, through the test role's URL.
fn fresh_postgres_database(name: &str) -> String {
    let url = services::postgres_url();
    let db = format!(
        "fnvm_e2e_{}_{}_{}",
        name,
        std::process::id(),
        Instant::now().elapsed().as_nanos() % 1_000_000
    )
    .to_lowercase();
    let out = Command::new("psql")
        .arg(&url)
        .args(["-v", "ON_ERROR_STOP=1", "-c"])
        .arg(format!("CREATE DATABASE {db}"))
        .output()
        .expect("running psql");
    assert!(
        out.status.success(),
        "creating database {db}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (base, _) = url.rsplit_once('/').unwrap();
    format!("{base}/{db}")
}

/// A running `fnvm serve`.
pub struct Server {
    child: Option<Child>,
    pub data_dir: PathBuf,
    pub api: String,
    api_port: u16,
    http_port: u16,
    backends: Backends,
    extra: Vec<String>,
    log: PathBuf,
    prefix: String,
}

impl Server {
    /// Starts a server with a fresh data directory named after `name`.
    pub fn start(name: &str, backends: Backends, extra: &[&str]) -> Server {
        let data_dir = scratch_dir(name);
        let mut s = Server {
            child: None,
            log: data_dir.with_extension("log"),
            data_dir,
            api_port: free_port(),
            http_port: free_port(),
            api: String::new(),
            backends,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            prefix: format!("{name}-{}", std::process::id()),
        };
        s.api = format!("http://127.0.0.1:{}", s.api_port);
        s.spawn();
        s
    }

    fn command(&self) -> Command {
        let mut c = Command::new(FNVM);
        c.arg("serve")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--api-listen")
            .arg(format!("127.0.0.1:{}", self.api_port))
            .arg("--http-listen")
            .arg(format!("127.0.0.1:{}", self.http_port))
            .args(&self.extra)
            .env_remove("FNVM_DATABASE_URL")
            .env_remove("FNVM_ARTIFACT_STORE");
        if let Some(u) = &self.backends.database_url {
            c.arg("--database-url").arg(u);
        }
        if let Some(s3) = &self.backends.s3 {
            c.arg("--artifact-store")
                .arg(format!("s3://{}/{}", s3.bucket, self.prefix))
                .env("AWS_ENDPOINT_URL", &s3.endpoint)
                .env("AWS_ALLOW_HTTP", "true");
            for (k, v) in &s3.env {
                c.env(k, v);
            }
        }
        c
    }

    /// Starts a process that plays only the worker role (no API to wait for), on the stores
    /// of `api` (its own data directory, as on another machine).
    pub fn start_worker_sharing(name: &str, backends: Backends, api: &Server) -> Server {
        let data_dir = scratch_dir(name);
        let mut s = Server {
            child: None,
            log: data_dir.with_extension("log"),
            data_dir,
            api_port: free_port(),
            http_port: free_port(),
            api: String::new(),
            backends,
            extra: vec!["--role".into(), "worker".into()],
            prefix: api.prefix.clone(),
        };
        s.start_process();
        s
    }

    fn start_process(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = self
            .command()
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting fnvm serve");
        self.child = Some(child);
    }

    /// Starts the process (again) and waits until the API answers.
    pub fn spawn(&mut self) {
        self.start_process();
        let start = Instant::now();
        loop {
            if let Ok(resp) = ureq::get(&format!("{}/healthz", self.api)).call() {
                if resp.status() == 200 {
                    return;
                }
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("fnvm serve exited with {status}:\n{}", self.log_text());
            }
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "fnvm serve did not answer in 2 minutes:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the process with SIGKILL: no chance to clean up.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The server's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A new token for `org` (or an operator token for `None`), made with `fnvm admin`.
    pub fn token(&self, org: Option<&str>) -> String {
        let mut c = Command::new(FNVM);
        c.args(["admin", "token", "create", "--data-dir"])
            .arg(&self.data_dir)
            .env_remove("FNVM_DATABASE_URL");
        match org {
            Some(o) => c.args(["--org", o]),
            None => c.arg("--operator"),
        };
        if let Some(u) = &self.backends.database_url {
            c.arg("--database-url").arg(u);
        }
        let out = c.output().expect("running fnvm admin");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        text.split_whitespace().last().unwrap().to_string()
    }

    /// `fnvm functions ARGS` as `org` with `token`.
    pub fn cli(&self, org: &str, token: &str, args: &[&str]) -> Output {
        Command::new(FNVM)
            .arg("functions")
            .args(["--api", &self.api, "--org", org, "--token", token])
            .args(args)
            .env_remove("FNVM_API")
            .env_remove("FNVM_TOKEN")
            .env_remove("FNVM_ORG")
            .output()
            .expect("running fnvm functions")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // A passing test leaves nothing behind; a failing one keeps its data and log.
        let _cleanup = (!std::thread::panicking()).then(|| RemoveDir(self.data_dir.clone()));
        if let Some(mut c) = self.child.take() {
            // SIGTERM first: a clean shutdown is part of what is tested.
            let _ = Command::new("kill").arg(c.id().to_string()).status();
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(10) {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Removes a directory (and the log beside it) when dropped.
struct RemoveDir(PathBuf);

impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
        let _ = std::fs::remove_file(self.0.with_extension("log"));
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The CLI succeeded; its stdout.
#[track_caller]
fn ok(o: Output) -> String {
    assert!(
        o.status.success(),
        "fnvm functions failed ({}):\nstdout: {}\nstderr: {}",
        o.status,
        stdout(&o),
        stderr(&o)
    );
    stdout(&o)
}

fn json(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

/// The whole user journey through the CLI.
fn journey(name: &str, backends: Backends) {
    let local = backends.s3.is_none();
    let server = Server::start(
        name,
        backends,
        &["--gc-interval-secs", "1", "--gc-grace-secs", "0"],
    );
    let token = server.token(Some("org-a"));
    let cli = |args: &[&str]| server.cli("org-a", &token, args);
    let dir = scratch_dir(&format!("{name}-files"));
    let wasm = dir.join("hello.wasm");
    std::fs::write(&wasm, hello_wasm()).unwrap();

    // create prints the Function as JSON, as the product description shows.
    let f = json(&ok(cli(&[
        "create",
        "--name",
        "hello",
        "--max-memory",
        "1048576",
    ])));
    let fid = f["id"].as_str().unwrap().to_string();
    assert_eq!(f["ownerId"], "org-a");
    assert_eq!(f["maxMemory"], 1_048_576);
    assert_eq!(f["maxInstances"], 1);
    assert_eq!(f["timeoutMs"], 30_000);

    let f = json(&ok(cli(&[
        "set-env",
        "FOO=BAR,HELLO=WORLD",
        &fid,
        "--json",
    ])));
    assert_eq!(f["environment"]["FOO"], "BAR");
    assert_eq!(f["environment"]["HELLO"], "WORLD");
    assert_eq!(f["name"], "hello", "set-env keeps the other fields");

    // deploy: create, upload, trigger, follow; prints the URL.
    let t = Instant::now();
    let url = ok(cli(&["deploy", wasm.to_str().unwrap(), &fid]));
    let took = t.elapsed();
    assert!(url.trim().ends_with(&format!("/{fid}")), "{url}");
    eprintln!("{name}: upload to READY in {took:?}");

    let ds = json(&ok(cli(&["deploy", "list", &fid, "--json"])));
    let ds = ds.as_array().unwrap();
    assert_eq!(ds.len(), 1);
    assert_eq!(ds[0]["status"], "READY");
    assert_eq!(ds[0]["platform"], "WASM");
    assert_eq!(ds[0]["url"].as_str().unwrap(), url.trim());
    let table = ok(cli(&["deploy", "list", &fid]));
    assert!(
        table.contains("READY") && table.contains("STATUS"),
        "{table}"
    );

    let rs = json(&ok(cli(&["releases", &fid, "--json"])));
    let rs = rs.as_array().unwrap();
    assert_eq!(rs.len(), 1);
    let rid = rs[0]["id"].as_str().unwrap().to_string();
    assert_eq!(rs[0]["size"], hello_wasm().len());
    assert_eq!(rs[0]["sha256"].as_str().unwrap().len(), 64);

    // The same bytes again: the same release.
    ok(cli(&["deploy", wasm.to_str().unwrap(), "wasm", &fid]));
    let rs = json(&ok(cli(&["releases", &fid, "--json"])));
    assert_eq!(rs.as_array().unwrap().len(), 1);

    // Redeploy the release (a rollback): no upload, straight to READY.
    let out = json(&ok(cli(&["deploy", "--release", &rid, &fid, "--json"])));
    assert_eq!(out["status"], "READY");
    assert_eq!(out["releaseId"], rid.as_str());
    let ds = json(&ok(cli(&["deploy", "list", &fid, "--json"])));
    assert_eq!(ds.as_array().unwrap().len(), 3);

    let list = ok(cli(&["list"]));
    assert!(list.contains(&fid) && list.contains("hello"), "{list}");
    let one = ok(cli(&["get", &fid]));
    assert!(one.contains("FOO=BAR"), "{one}");

    // A deployment deleted, then the Function.
    let did = ds[0]["id"].as_str().unwrap();
    ok(cli(&["deploy", "delete", &fid, did]));
    let ds = json(&ok(cli(&["deploy", "list", &fid, "--json"])));
    assert_eq!(ds.as_array().unwrap().len(), 2);
    let sha = rs.as_array().unwrap()[0]["sha256"]
        .as_str()
        .unwrap()
        .to_string();
    let blob = server.data_dir.join("artifacts/blobs").join(&sha);
    if local {
        assert!(blob.exists(), "{}", blob.display());
    }
    ok(cli(&["delete", &fid]));
    if local {
        // Nobody references the code any more: the collector deletes it.
        let start = Instant::now();
        while blob.exists() {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "{} was not collected",
                blob.display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let gone = cli(&["get", &fid]);
    assert!(!gone.status.success());
    assert!(stderr(&gone).contains("404"), "{}", stderr(&gone));
    let list = json(&ok(cli(&["list", "--json"])));
    assert_eq!(list.as_array().unwrap().len(), 0);
}

#[test]
fn journey_on_sqlite_and_a_local_store() {
    journey("sqlite-local", Backends::embedded());
}

#[test]
fn journey_on_postgresql_and_s3() {
    journey("pg-s3", Backends::with(true, true, "pgs3"));
}

#[test]
fn journey_on_postgresql_and_a_local_store() {
    journey("pg-local", Backends::with(true, false, "pglocal"));
}

#[test]
fn journey_on_sqlite_and_s3() {
    journey("sqlite-s3", Backends::with(false, true, "sqlites3"));
}

/// A request to the API with an optional token and body.
fn request(
    method: &str,
    url: &str,
    token: Option<&str>,
    content_type: Option<&str>,
    body: Option<Vec<u8>>,
) -> (u16, Value) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut req = ureq::http::Request::builder().method(method).uri(url);
    if let Some(t) = token {
        req = req.header("Authorization", format!("Bearer {t}"));
    }
    if let Some(ct) = content_type {
        req = req.header("Content-Type", ct);
    }
    let req = req.body(body.unwrap_or_default()).unwrap();
    let mut resp = agent.run(req).expect("sending the request");
    let status = resp.status().as_u16();
    let mut text = String::new();
    resp.body_mut()
        .as_reader()
        .read_to_string(&mut text)
        .unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[test]
fn the_api_refuses_clearly() {
    let server = Server::start(
        "refusals",
        Backends::embedded(),
        &["--max-upload-bytes", "4096"],
    );
    let (a, b) = (server.token(Some("org-a")), server.token(Some("org-b")));
    let op = server.token(None);
    let base = |org: &str| format!("{}/v4/functions/organisations/{org}/functions", server.api);
    let post = |org: &str, tok: Option<&str>, body: &str| {
        request(
            "POST",
            &base(org),
            tok,
            Some("application/json"),
            Some(body.into()),
        )
    };

    // 401 without a token or with an unknown one.
    assert_eq!(request("GET", &base("org-a"), None, None, None).0, 401);
    assert_eq!(
        request("GET", &base("org-a"), Some("fnvm_nope"), None, None).0,
        401
    );
    // 400 naming the field.
    let (s, body) = post("org-a", Some(&a), r#"{"maxMemory": 12}"#);
    assert_eq!(
        (s, body["field"].as_str()),
        (400, Some("maxMemory")),
        "{body}"
    );
    let (s, body) = post("org-a", Some(&a), r#"{"environment": {"1BAD": "x"}}"#);
    assert_eq!(s, 400, "{body}");
    assert_eq!(body["field"], "environment.1BAD");
    let (s, body) = post("org-a", Some(&a), r#"{"nmae": "typo"}"#);
    assert_eq!(s, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("nmae"), "{body}");
    assert_eq!(post("org-a", Some(&a), "not json").0, 400);
    // 415 for a body that is not JSON.
    let (s, _) = request(
        "POST",
        &base("org-a"),
        Some(&a),
        Some("text/plain"),
        Some(b"{}".to_vec()),
    );
    assert_eq!(s, 415);

    let (s, f) = post("org-a", Some(&a), r#"{"name": "mine"}"#);
    assert_eq!(s, 201, "{f}");
    let fid = f["id"].as_str().unwrap();
    let one = format!("{}/{fid}", base("org-a"));
    // Another organisation's token: 404, on its own path and on org A's.
    assert_eq!(request("GET", &one, Some(&b), None, None).0, 404);
    assert_eq!(request("DELETE", &one, Some(&b), None, None).0, 404);
    assert_eq!(
        request(
            "GET",
            &format!("{}/{fid}", base("org-b")),
            Some(&b),
            None,
            None
        )
        .0,
        404
    );
    assert_eq!(request("GET", &base("org-a"), Some(&b), None, None).0, 404);
    let (s, list) = request("GET", &base("org-b"), Some(&b), None, None);
    assert_eq!((s, list), (200, serde_json::json!([])));
    // The operator sees everything, and the deployments by status; others do not.
    assert_eq!(request("GET", &one, Some(&op), None, None).0, 200);
    let by_status = format!("{}/v4/functions/deployments/READY", server.api);
    assert_eq!(request("GET", &by_status, Some(&op), None, None).0, 200);
    assert_eq!(request("GET", &by_status, Some(&a), None, None).0, 404);
    let bad_status = format!("{}/v4/functions/deployments/SLEEPING", server.api);
    assert_eq!(request("GET", &bad_status, Some(&op), None, None).0, 400);

    // Deployments: trigger before upload is 409; the upload URL needs no token but a valid
    // signature; uploads are checked for kind and size.
    let deps = format!("{one}/deployments");
    let (s, d) = request(
        "POST",
        &deps,
        Some(&a),
        Some("application/json"),
        Some(br#"{"platform":"WASM"}"#.to_vec()),
    );
    assert_eq!(s, 201, "{d}");
    assert_eq!(d["status"], "WAITING_FOR_UPLOAD");
    let upload = d["uploadUrl"].as_str().unwrap().to_string();
    let did = d["id"].as_str().unwrap();
    let trigger = format!("{deps}/{did}/trigger");
    assert_eq!(request("POST", &trigger, Some(&a), None, None).0, 409);
    let (s, _) = post("org-a", Some(&a), "{}");
    assert_eq!(s, 201);
    let missing_platform = request(
        "POST",
        &deps,
        Some(&a),
        Some("application/json"),
        Some(b"{}".to_vec()),
    );
    assert_eq!(missing_platform.0, 400);
    assert_eq!(missing_platform.1["field"], "platform");
    let tampered = upload.replace("signature=", "signature=00");
    assert_eq!(
        request(
            "PUT",
            &tampered,
            None,
            Some("application/wasm"),
            Some(hello_wasm())
        )
        .0,
        403
    );
    let unsigned = upload.split('?').next().unwrap().to_string();
    assert_eq!(
        request(
            "PUT",
            &unsigned,
            None,
            Some("application/wasm"),
            Some(hello_wasm())
        )
        .0,
        403
    );
    assert_eq!(
        request(
            "PUT",
            &upload,
            None,
            Some("application/wasm"),
            Some(b"\x7fELF....".to_vec())
        )
        .0,
        422
    );
    assert_eq!(
        request(
            "PUT",
            &upload,
            None,
            Some("multipart/form-data; boundary=x"),
            Some(hello_wasm())
        )
        .0,
        415
    );
    let mut big = hello_wasm();
    big.resize(5000, 0);
    assert_eq!(
        request("PUT", &upload, None, Some("application/wasm"), Some(big)).0,
        413
    );
    // Nothing of the refused uploads was kept.
    let (_, d2) = request("GET", &format!("{deps}/{did}"), Some(&a), None, None);
    assert!(d2["releaseId"].is_null(), "{d2}");
    let (_, releases) = request("GET", &format!("{one}/releases"), Some(&a), None, None);
    assert_eq!(releases, serde_json::json!([]));
    // A good upload, then trigger, then the same trigger again is 409.
    let (s, up) = request(
        "PUT",
        &upload,
        None,
        Some("application/wasm"),
        Some(hello_wasm()),
    );
    assert_eq!(s, 200, "{up}");
    assert_eq!(request("POST", &trigger, Some(&a), None, None).0, 200);
    assert_eq!(request("POST", &trigger, Some(&a), None, None).0, 409);
    // Someone else's deployment path: 404.
    assert_eq!(
        request("GET", &format!("{deps}/{did}"), Some(&b), None, None).0,
        404
    );
    // An invalid module that starts like one: ERROR with the compiler's reason.
    let (_, d) = request(
        "POST",
        &deps,
        Some(&a),
        Some("application/json"),
        Some(br#"{"platform":"WASM"}"#.to_vec()),
    );
    let url = d["uploadUrl"].as_str().unwrap();
    let did = d["id"].as_str().unwrap();
    let (s, _) = request(
        "PUT",
        url,
        None,
        Some("application/wasm"),
        Some(b"\0asm\x01\0\0\0\x01\xff".to_vec()),
    );
    assert_eq!(s, 200);
    assert_eq!(
        request(
            "POST",
            &format!("{deps}/{did}/trigger"),
            Some(&a),
            None,
            None
        )
        .0,
        200
    );
    let d = wait_settled(&format!("{deps}/{did}"), &a);
    assert_eq!(d["status"], "ERROR", "{d}");
    assert!(
        d["errorReason"]
            .as_str()
            .unwrap()
            .contains("invalid module"),
        "{d}"
    );
    // Source platforms are accepted and end in ERROR with a clear reason (until server-side
    // compilation exists).
    let (_, d) = request(
        "POST",
        &deps,
        Some(&a),
        Some("application/json"),
        Some(br#"{"platform":"RUST"}"#.to_vec()),
    );
    let (url, did) = (d["uploadUrl"].as_str().unwrap(), d["id"].as_str().unwrap());
    assert_eq!(
        request(
            "PUT",
            url,
            None,
            Some("text/plain"),
            Some(b"fn main() {}".to_vec())
        )
        .0,
        200
    );
    assert_eq!(
        request(
            "POST",
            &format!("{deps}/{did}/trigger"),
            Some(&a),
            None,
            None
        )
        .0,
        200
    );
    let d = wait_settled(&format!("{deps}/{did}"), &a);
    assert_eq!(d["status"], "ERROR", "{d}");
    assert!(d["errorReason"].as_str().unwrap().contains("RUST"), "{d}");

    // The OpenAPI document describes the routes; /healthz answers.
    let (s, doc) = request(
        "GET",
        &format!("{}/openapi.json", server.api),
        None,
        None,
        None,
    );
    assert_eq!(s, 200);
    for path in [
        "/v4/functions/organisations/{ownerId}/functions",
        "/v4/functions/organisations/{ownerId}/functions/{functionId}/deployments/{deploymentId}/trigger",
        "/v4/functions/uploads/{deploymentId}",
        "/v4/functions/deployments/{status}",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} missing from openapi.json");
    }
    assert_eq!(
        request("GET", &format!("{}/nowhere", server.api), None, None, None).0,
        404
    );
}

/// Polls a deployment until it is READY or ERROR.
fn wait_settled(url: &str, token: &str) -> Value {
    let start = Instant::now();
    loop {
        let (s, d) = request("GET", url, Some(token), None, None);
        assert_eq!(s, 200, "{d}");
        if d["status"] == "READY" || d["status"] == "ERROR" {
            return d;
        }
        assert!(start.elapsed() < Duration::from_secs(120), "stuck: {d}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Creates a WASM deployment of `fid`, uploads the hello module and triggers it; the id.
fn deploy_raw(api: &str, org: &str, token: &str, fid: &str) -> Option<String> {
    let deps = format!("{api}/v4/functions/organisations/{org}/functions/{fid}/deployments");
    let (s, d) = try_request(
        "POST",
        &deps,
        Some(token),
        Some("application/json"),
        Some(br#"{"platform":"WASM"}"#.to_vec()),
    )?;
    if s != 201 {
        return None;
    }
    let (url, did) = (
        d["uploadUrl"].as_str()?.to_string(),
        d["id"].as_str()?.to_string(),
    );
    let (s, _) = try_request(
        "PUT",
        &url,
        None,
        Some("application/wasm"),
        Some(hello_wasm()),
    )?;
    if s != 200 {
        return None;
    }
    let (s, _) = try_request(
        "POST",
        &format!("{deps}/{did}/trigger"),
        Some(token),
        None,
        None,
    )?;
    (s == 200).then_some(did)
}

/// Like [`request`], but `None` when the server cannot be reached (it was killed).
fn try_request(
    method: &str,
    url: &str,
    token: Option<&str>,
    content_type: Option<&str>,
    body: Option<Vec<u8>>,
) -> Option<(u16, Value)> {
    let (method, url, token, ct) = (
        method.to_string(),
        url.to_string(),
        token.map(str::to_string),
        content_type.map(str::to_string),
    );
    std::panic::catch_unwind(move || request(&method, &url, token.as_deref(), ct.as_deref(), body))
        .ok()
}

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
    let (s, f) = request(
        "POST",
        &base,
        Some(&token),
        Some("application/json"),
        Some(b"{}".to_vec()),
    );
    assert_eq!(s, 201);
    let one = format!("{base}/{}", f["id"].as_str().unwrap());
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
    let (s, f) = request(
        "POST",
        &base,
        Some(&token),
        Some("application/json"),
        Some(b"{}".to_vec()),
    );
    assert_eq!(s, 201);
    let fid = f["id"].as_str().unwrap().to_string();
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
