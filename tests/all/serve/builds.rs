//! Server-side builds end to end, through the real binary and the CLI: a source file of each
//! platform (`.rs`, `.go`, `.ts`, `.js`) is deployed with `fnvm functions deploy FILE FID` and
//! answers over HTTP in raw and `?trigger=http` modes (the description's `User-Agent` example
//! in Rust and JavaScript); a compile error is an `ERROR` carrying the compiler's message with
//! the whole log behind `deploy logs`; builds that try to leave their sandbox (the network, the
//! server's files) or never end are refused with a clear reason.
//!
//! The toolchains come from the repository's own installers (`scripts/toolchains.sh`,
//! `scripts/js-engine.sh`, idempotent), run once per test process.

use super::endpoint::call;
use super::{json, ok, scratch_dir, stderr, stdout, Backends, Server};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The toolchains directory, installed (or checked) once.
fn toolchains() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let dir = root.join("target/toolchains");
        for script in ["scripts/toolchains.sh", "scripts/js-engine.sh"] {
            let out = std::process::Command::new(root.join(script))
                .current_dir(root)
                .output()
                .unwrap_or_else(|e| panic!("running {script}: {e}"));
            assert!(
                out.status.success(),
                "{script} failed (the builds need its toolchains):\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        dir
    })
}

/// A server building with the installed toolchains, and `extra` flags.
fn server(name: &str, extra: &[&str]) -> Server {
    let dir = toolchains().to_str().unwrap().to_string();
    let mut args = vec!["--toolchains-dir", dir.as_str()];
    args.extend_from_slice(extra);
    Server::start(name, Backends::embedded(), &args)
}

const RUST: &str = r#"
use fnvm_guest::http::{serve, Request, Response};

fn main() {
    if std::env::var("FNVM_TRIGGER").as_deref() == Ok("http") {
        serve(|req: Request| {
            Response::new(200)
                .header("Content-Type", "text/plain")
                .header("X-Powered-By", "CleverCloud")
                .body(format!("User-Agent: {}", req.header("user-agent").unwrap_or("")))
        })
    } else {
        println!("Hello from Rust");
    }
}
"#;

const GO: &str = r#"package main

import (
	"fmt"
	"os"
)

func main() {
	if os.Getenv("FNVM_TRIGGER") == "http" {
		fmt.Print(`{"status": 200, "headers": {"Content-Type": "text/plain"}, "body": "Go over http"}`)
		return
	}
	fmt.Println("Hello from Go")
}
"#;

const ASSEMBLYSCRIPT: &str = r#"
if (process.env.has("FNVM_TRIGGER") && process.env.get("FNVM_TRIGGER") == "http") {
  process.stdout.write('{"status": 200, "body": "AssemblyScript over http"}');
} else {
  process.stdout.write("Hello from AssemblyScript\n");
}
"#;

const JAVASCRIPT: &str = r#"
function trigger_http(request) {
  return {
    status: 200,
    statusText: "OK",
    headers: {
      "Content-Type": "text/plain",
      "X-Powered-By": "CleverCloud",
    },
    body: `User-Agent: ${request.headers["User-Agent"]}`,
  };
}
function main(input) {
  return "Hello from JavaScript\n";
}
"#;

/// Writes `text` as `name` next to the server's data.
fn source(server: &Server, name: &str, text: &str) -> PathBuf {
    let path = server.data_dir.with_extension(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// Deploys `file` to a new Function through the CLI; its URL.
fn deploy(server: &Server, token: &str, file: &Path) -> (String, String) {
    let fid = server.create_function("org-b", token, r#"{"timeoutMs": 5000}"#);
    let url = ok(server.cli(
        "org-b",
        token,
        &["deploy", file.to_str().unwrap(), &fid, "--wait-secs", "600"],
    ));
    (fid, url.trim().to_string())
}

#[test]
fn sources_of_every_platform_deploy_and_answer() {
    let server = server("builds-platforms", &[]);
    let token = server.token(Some("org-b"));
    for (file, text, raw, http) in [
        (
            "hello.rs",
            RUST,
            "Hello from Rust\n",
            "User-Agent: curl/8.0",
        ),
        ("hello.go", GO, "Hello from Go\n", "Go over http"),
        (
            "hello.ts",
            ASSEMBLYSCRIPT,
            "Hello from AssemblyScript\n",
            "AssemblyScript over http",
        ),
        (
            "hello.js",
            JAVASCRIPT,
            "Hello from JavaScript\n",
            "User-Agent: curl/8.0",
        ),
    ] {
        let path = source(&server, file, text);
        let t = Instant::now();
        let (fid, _) = deploy(&server, &token, &path);
        eprintln!("{file}: deployed in {:?}", t.elapsed());
        let url = format!("{}/{fid}", server.http());
        let (s, _, body) = call("GET", &url, &[], b"");
        assert_eq!(
            (s, String::from_utf8_lossy(&body).as_ref()),
            (200, raw),
            "{file}, raw mode"
        );
        let (s, headers, body) = call(
            "GET",
            &format!("{url}?trigger=http"),
            &[("User-Agent", "curl/8.0")],
            b"",
        );
        assert_eq!(
            (s, String::from_utf8_lossy(&body).as_ref()),
            (200, http),
            "{file}, http trigger"
        );
        if file == "hello.rs" || file == "hello.js" {
            assert!(
                headers
                    .iter()
                    .any(|(k, v)| k.eq_ignore_ascii_case("x-powered-by") && v == "CleverCloud"),
                "{file}: {headers:?}"
            );
        }
        // The log of a successful build is kept too.
        let list = json(&ok(server.cli(
            "org-b",
            &token,
            &["deploy", "list", &fid, "--json"],
        )));
        let did = list[0]["id"].as_str().unwrap().to_string();
        let log = server.cli("org-b", &token, &["deploy", "logs", &fid, &did]);
        assert!(log.status.success(), "{}", stderr(&log));
    }
    // The same source again: one artifact, reused (the build log says so).
    let path = source(&server, "again.rs", RUST);
    let t = Instant::now();
    let (fid, _) = deploy(&server, &token, &path);
    let list = json(&ok(server.cli(
        "org-b",
        &token,
        &["deploy", "list", &fid, "--json"],
    )));
    let did = list[0]["id"].as_str().unwrap().to_string();
    let log = stdout(&server.cli("org-b", &token, &["deploy", "logs", &fid, &did]));
    assert!(log.contains("built by the same toolchain before"), "{log}");
    eprintln!("hello.rs again: deployed in {:?}", t.elapsed());
}

#[test]
fn compile_errors_are_errors_with_the_compilers_message() {
    let server = server("builds-errors", &[]);
    let token = server.token(Some("org-b"));
    for (file, text, message) in [
        (
            "broken.rs",
            "fn main() { println!(\"{}\", missing); }\n",
            "cannot find value `missing`",
        ),
        (
            "broken.js",
            "function trigger_http(r) { return {; }\n",
            "SyntaxError",
        ),
        (
            "broken.go",
            "package main\n\nfunc main() { undefinedCall() }\n",
            "undefined: undefinedCall",
        ),
    ] {
        let path = source(&server, file, text);
        let fid = server.create_function("org-b", &token, "{}");
        let out = server.cli("org-b", &token, &["deploy", path.to_str().unwrap(), &fid]);
        assert!(!out.status.success(), "{file} deployed");
        let err = stderr(&out);
        assert!(err.contains("deployment failed"), "{file}: {err}");
        assert!(err.contains(message), "{file}: {err}");
        assert!(err.contains("fnvm functions deploy logs"), "{file}: {err}");
        let list = json(&ok(server.cli(
            "org-b",
            &token,
            &["deploy", "list", &fid, "--json"],
        )));
        assert_eq!(list[0]["status"], "ERROR");
        let did = list[0]["id"].as_str().unwrap().to_string();
        let log = ok(server.cli("org-b", &token, &["deploy", "logs", &fid, &did]));
        assert!(log.contains(message), "{file}: {log}");
    }
}

/// A Cargo project whose build script runs `body`, packed as `.tar.gz` with the `tar` command.
fn build_script_project(dir: &Path, body: &str) -> PathBuf {
    let project = dir.join("escape");
    std::fs::create_dir_all(project.join("src")).unwrap();
    std::fs::write(
        project.join("Cargo.toml"),
        "[package]\nname = \"escape\"\nversion = \"0.1.0\"\nedition = \"2021\"\nbuild = \"build.rs\"\n",
    )
    .unwrap();
    std::fs::write(project.join("src/main.rs"), "fn main() {}\n").unwrap();
    std::fs::write(project.join("build.rs"), body).unwrap();
    let archive = dir.join("escape.tar.gz");
    let out = std::process::Command::new("tar")
        .arg("czf")
        .arg(&archive)
        .arg("-C")
        .arg(&project)
        .arg(".")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    archive
}

#[test]
fn builds_cannot_reach_the_network_or_the_servers_files_or_run_forever() {
    let server = server(
        "builds-escapes",
        &["--build-wall-secs", "30", "--build-cpu-secs", "20"],
    );
    let token = server.token(Some("org-b"));
    let scratch = scratch_dir("builds-escapes-src");
    // A listener on the host: a build that reaches it would be accepted.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    // A file of the server's: its metadata database.
    let secret = server.data_dir.join("metadata.db");
    assert!(secret.exists());
    for (what, body, reason) in [
        (
            "network",
            format!(
                "fn main() {{ std::net::TcpStream::connect((\"127.0.0.1\", {port})).expect(\"connecting out\"); }}\n"
            ),
            "connecting out",
        ),
        (
            "server file",
            format!(
                "fn main() {{ std::fs::read({:?}).expect(\"reading the server's database\"); }}\n",
                secret
            ),
            "reading the server's database",
        ),
        (
            "forever",
            "fn main() { loop {} }\n".to_string(),
            "build stopped: CPU time (20 s per process)",
        ),
    ] {
        let dir = scratch.join(what.replace(' ', "-"));
        std::fs::create_dir_all(&dir).unwrap();
        let archive = build_script_project(&dir, &body);
        let fid = server.create_function("org-b", &token, "{}");
        let t = Instant::now();
        let out = server.cli(
            "org-b",
            &token,
            &["deploy", archive.to_str().unwrap(), "rust", &fid],
        );
        assert!(!out.status.success(), "{what}: the build succeeded");
        let err = stderr(&out);
        assert!(err.contains(reason), "{what}: {err}");
        assert!(t.elapsed() < Duration::from_secs(120), "{what}: {:?}", t.elapsed());
    }
    assert!(
        listener.accept().is_err(),
        "a build connected to the host's loopback"
    );
    // The server is unharmed: a good build still works.
    let path = source(&server, "after.rs", RUST);
    let (fid, _) = deploy(&server, &token, &path);
    let (s, _, body) = call("GET", &format!("{}/{fid}", server.http()), &[], b"");
    assert_eq!((s, body.as_slice()), (200, &b"Hello from Rust\n"[..]));
}
