//! `fnvm serve` and `fnvm functions` end to end, as users drive them: the real binary as server
//! and as CLI, on loopback, on SQLite and PostgreSQL, with the artifact store local and on S3:
//! create → set-env → deploy → READY → list → redeploy a release → delete; the API's answers
//! for bad tokens, other organisations, bad fields and uploads; concurrent writers; and a
//! server killed with SIGKILL in the middle of deploys, restarted, with nothing acknowledged
//! lost and nothing stuck.

mod async_invocations;
mod autoscale;
mod builds;
mod endpoint;
mod fleet;
mod guests;
mod isolation;
mod journey;
mod net;
mod outages;
mod pulsar;
mod refusals;
mod reliability;
mod routing;

#[path = "../../support/services.rs"]
mod services;

use serde_json::Value;
use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const FNVM: &str = env!("CARGO_BIN_EXE_fnvm");

/// A WASI hello world (prints `Hello World\n`), as a client would upload it.
pub fn hello_wasm() -> Vec<u8> {
    printing_wasm("Hello World\n")
}

/// A WASI module that prints `text` (at most 200 bytes, no `"` or `\`) and exits 0.
pub fn printing_wasm(text: &str) -> Vec<u8> {
    assert!(text.len() <= 200 && !text.contains(['"', '\\']));
    wat::parse_str(format!(
        r#"(module
          (import "wasi_snapshot_preview1" "fd_write"
            (func $fd_write (param i32 i32 i32 i32) (result i32)))
          (memory (export "memory") 1)
          (data (i32.const 8) "{}")
          (func (export "_start")
            (i32.store (i32.const 0) (i32.const 8))
            (i32.store (i32.const 4) (i32.const {}))
            (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 256)))))"#,
        text.replace('\n', "\\n"),
        text.len()
    ))
    .unwrap()
}

/// A test CA (rcgen) and a certificate for `localhost` it signed, for TLS servers the tests
/// start (trusted by fnvm through `--egress-ca-file`).
pub struct TestCert {
    pub ca_pem: String,
    pub leaf_pem: String,
    pub leaf_der: Vec<u8>,
    pub key_pem: String,
    pub key_der: Vec<u8>,
}

impl TestCert {
    pub fn localhost() -> TestCert {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(rcgen::DnType::CommonName, "fnvm test CA");
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca, ca_key);
        let key = rcgen::KeyPair::generate().unwrap();
        let leaf = rcgen::CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        TestCert {
            ca_pem: ca_cert.pem(),
            leaf_pem: leaf.pem(),
            leaf_der: leaf.der().to_vec(),
            key_pem: key.serialize_pem(),
            key_der: key.serialize_der(),
        }
    }
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

pub fn free_port() -> u16 {
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
    /// Environment variables set for the process.
    env: Vec<(String, String)>,
    log: PathBuf,
    prefix: String,
}

impl Server {
    /// Starts a server with a fresh data directory named after `name`.
    pub fn start(name: &str, backends: Backends, extra: &[&str]) -> Server {
        Server::start_with_env(name, backends, extra, &[])
    }

    /// [`start`](Self::start) with environment variables `env` set for the process.
    pub fn start_with_env(
        name: &str,
        backends: Backends,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Server {
        let extra = extra.iter().map(|s| s.to_string()).collect();
        let mut s = Server::new(
            name,
            backends,
            extra,
            format!("{name}-{}", std::process::id()),
        );
        s.env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        s.api = format!("http://127.0.0.1:{}", s.api_port);
        s.spawn();
        s
    }

    /// Starts another API process on the stores of `api` (the same artifact prefix), with
    /// its own data directory, and waits until it answers.
    pub fn start_api_sharing(name: &str, backends: Backends, api: &Server) -> Server {
        let extra = vec!["--role".to_string(), "api".to_string()];
        let mut s = Server::new(name, backends, extra, api.prefix.clone());
        s.api = format!("http://127.0.0.1:{}", s.api_port);
        s.spawn();
        s
    }

    /// A server not started yet, with a fresh data directory named after `name` and its
    /// artifacts (on S3) under `prefix`.
    fn new(name: &str, backends: Backends, extra: Vec<String>, prefix: String) -> Server {
        let data_dir = scratch_dir(name);
        Server {
            child: None,
            log: data_dir.with_extension("log"),
            data_dir,
            api_port: free_port(),
            http_port: free_port(),
            api: String::new(),
            backends,
            extra,
            env: Vec::new(),
            prefix,
        }
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
            .env_remove("FNVM_ARTIFACT_STORE")
            .envs(self.env.iter().map(|(k, v)| (k, v)));
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
        Server::start_worker_sharing_with(name, backends, api, &[])
    }

    /// [`start_worker_sharing`](Self::start_worker_sharing) with more arguments.
    pub fn start_worker_sharing_with(
        name: &str,
        backends: Backends,
        api: &Server,
        extra: &[&str],
    ) -> Server {
        let mut args = vec!["--role".to_string(), "worker".to_string()];
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut s = Server::new(name, backends, args, api.prefix.clone());
        s.start_process();
        s
    }

    /// Starts a process that plays only the router role on the stores of `api`, listening
    /// where [`http`](Self::http) says (no worker role binds it), and waits until it answers.
    pub fn start_router_sharing(name: &str, backends: Backends, api: &Server) -> Server {
        let mut s = Server::new(name, backends, Vec::new(), api.prefix.clone());
        s.extra = vec![
            "--role".into(),
            "router".into(),
            "--router-listen".into(),
            format!("127.0.0.1:{}", s.http_port),
        ];
        s.start_process();
        let start = Instant::now();
        while ureq::get(&format!("{}/healthz", s.http())).call().is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "the router did not answer:\n{}",
                s.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        s
    }

    /// Stops the process with SIGTERM (a clean shutdown) and waits for it.
    pub fn terminate(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let _ = c.wait();
        }
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

    /// The worker's HTTP endpoint, `http://127.0.0.1:PORT`.
    pub fn http(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    /// Creates a Function of `org` with `settings` (JSON) and deploys `wasm` to it through the
    /// CLI; its id once READY.
    pub fn deploy_function(&self, org: &str, token: &str, settings: &str, wasm: &[u8]) -> String {
        let fid = self.create_function(org, token, settings);
        let file = self.data_dir.with_extension(format!("{fid}.wasm"));
        std::fs::write(&file, wasm).unwrap();
        ok(self.cli(org, token, &["deploy", file.to_str().unwrap(), &fid]));
        let _ = std::fs::remove_file(&file);
        fid
    }

    /// Creates a Function of `org` with `settings` (JSON) through the API; its id.
    pub fn create_function(&self, org: &str, token: &str, settings: &str) -> String {
        let base = format!("{}/v4/functions/organisations/{org}/functions", self.api);
        let (s, f) = request(
            "POST",
            &base,
            Some(token),
            Some("application/json"),
            Some(settings.as_bytes().to_vec()),
        );
        assert_eq!(s, 201, "{f}");
        f["id"].as_str().unwrap().to_string()
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

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The CLI succeeded; its stdout.
#[track_caller]
pub fn ok(o: Output) -> String {
    assert!(
        o.status.success(),
        "fnvm functions failed ({}):\nstdout: {}\nstderr: {}",
        o.status,
        stdout(&o),
        stderr(&o)
    );
    stdout(&o)
}

pub fn json(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

/// A request to the API with an optional token and body.
pub fn request(
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

/// Polls a deployment until it is READY or ERROR.
pub fn wait_settled(url: &str, token: &str) -> Value {
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
pub fn deploy_raw(api: &str, org: &str, token: &str, fid: &str) -> Option<String> {
    let deps = format!("{api}/v4/functions/organisations/{org}/functions/{fid}/deployments");
    upload_and_trigger(&deps, token, "WASM", "application/wasm", hello_wasm())
}

/// Through the API at `deps` (a Function's deployments): creates a deployment of `platform`,
/// uploads `bytes` as `content_type` and triggers packaging; its id, or `None` as soon as a
/// step is refused or the server cannot be reached.
pub fn upload_and_trigger(
    deps: &str,
    token: &str,
    platform: &str,
    content_type: &str,
    bytes: Vec<u8>,
) -> Option<String> {
    let (s, d) = try_request(
        "POST",
        deps,
        Some(token),
        Some("application/json"),
        Some(format!(r#"{{"platform":"{platform}"}}"#).into_bytes()),
    )?;
    if s != 201 {
        return None;
    }
    let (url, did) = (
        d["uploadUrl"].as_str()?.to_string(),
        d["id"].as_str()?.to_string(),
    );
    let (s, _) = try_request("PUT", &url, None, Some(content_type), Some(bytes))?;
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
pub fn try_request(
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
