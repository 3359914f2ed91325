//! The services tests talk to (PostgreSQL, an S3-compatible server; HAProxy, installed), started by
//! `scripts/services.sh` the first time a test asks, once per test process. A service that
//! cannot be started fails the test that needs it: nothing is skipped.

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::Path;
use std::sync::OnceLock;

/// Runs `scripts/services.sh NAME` (once per process and service) and returns the settings it
/// printed.
fn start(name: &'static str) -> &'static HashMap<String, String> {
    static POSTGRES: OnceLock<HashMap<String, String>> = OnceLock::new();
    static S3: OnceLock<HashMap<String, String>> = OnceLock::new();
    static HAPROXY: OnceLock<HashMap<String, String>> = OnceLock::new();
    let cell = match name {
        "postgres" => &POSTGRES,
        "s3" => &S3,
        "haproxy" => &HAPROXY,
        _ => panic!("unknown service {name}"),
    };
    cell.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .ancestors()
            .find(|p| p.join("scripts/services.sh").exists())
            .expect("the repository root (with scripts/services.sh)");
        let out = std::process::Command::new(root.join("scripts/services.sh"))
            .arg(name)
            .stderr(std::process::Stdio::inherit())
            .output()
            .unwrap_or_else(|e| panic!("running scripts/services.sh {name}: {e}"));
        assert!(
            out.status.success(),
            "scripts/services.sh {name} failed ({}); see its messages above",
            out.status
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    })
}

fn setting(service: &'static str, key: &str) -> String {
    start(service)
        .get(key)
        .unwrap_or_else(|| panic!("scripts/services.sh {service} printed no {key}"))
        .clone()
}

/// A URL of a running PostgreSQL server whose database the tests may use.
pub fn postgres_url() -> String {
    setting("postgres", "FNVM_TEST_POSTGRES_URL")
}

/// A running S3-compatible server: its endpoint, a bucket in it, and the credentials and
/// region to use (`AWS_*` variables, as a client would read them).
#[derive(Clone, Debug)]
pub struct S3 {
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    /// A bucket that exists.
    pub bucket: String,
    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION` and their values.
    pub env: Vec<(String, String)>,
}

/// The S3-compatible server.
pub fn s3() -> S3 {
    let env = ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"]
        .iter()
        .map(|k| (k.to_string(), setting("s3", k)))
        .collect();
    S3 {
        endpoint: setting("s3", "FNVM_TEST_S3_ENDPOINT"),
        bucket: setting("s3", "FNVM_TEST_S3_BUCKET"),
        env,
    }
}

/// Debian's haproxy binary (installed if missing).
pub fn haproxy() -> String {
    setting("haproxy", "FNVM_TEST_HAPROXY")
}
