//! Real builds with the real toolchains in the real sandbox (bubblewrap): a hello per language,
//! project archives, compile errors, and builds that try to escape or exhaust the sandbox
//! (network, server files, fork bomb, endless loops, full disk, endless output).
//!
//! Setup runs `scripts/toolchains.sh target/toolchains` once (fast when everything is there).
//! When it fails or a toolchain is still missing, the tests fail under `CI=true` and are
//! skipped with a notice otherwise.

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use fnvm_builds::{build, input_hash, BuildError, Built, Language, Limits, Source, Toolchains};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// The toolchains, installed by scripts/toolchains.sh; `None` (skip) outside CI when they
/// cannot be had.
fn toolchains() -> Option<&'static Toolchains> {
    static TC: OnceLock<Result<Toolchains, String>> = OnceLock::new();
    let r = TC.get_or_init(|| {
        let dir = repo().join("target/toolchains");
        let out = Command::new("bash")
            .arg(repo().join("scripts/toolchains.sh"))
            .arg(&dir)
            .output()
            .map_err(|e| format!("running scripts/toolchains.sh: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "scripts/toolchains.sh failed:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let tc = Toolchains::new(dir);
        let missing: Vec<String> = tc
            .check()
            .into_iter()
            .filter(|s| !s.present && s.name != "javascript")
            .map(|s| format!("{}: {}", s.name, s.detail))
            .collect();
        if missing.is_empty() {
            Ok(tc)
        } else {
            Err(format!("missing toolchains: {}", missing.join("; ")))
        }
    });
    match r {
        Ok(tc) => Some(tc),
        Err(e) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("CI=true: the build toolchains are required: {e}")
        }
        Err(e) => {
            eprintln!("NOTICE: skipping fnvm-builds test (not under CI=true): {e}");
            None
        }
    }
}

macro_rules! toolchains {
    () => {
        match toolchains() {
            Some(tc) => tc,
            None => return,
        }
    };
}

fn file(name: &str, code: &str) -> Source {
    Source::File {
        name: name.into(),
        bytes: code.as_bytes().to_vec(),
    }
}

fn tar_gz(files: &[(&str, &str)]) -> Source {
    let mut b = tar::Builder::new(Vec::new());
    for (path, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, path, data.as_bytes()).unwrap();
    }
    let raw = b.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&raw).unwrap();
    Source::Archive {
        bytes: gz.finish().unwrap(),
    }
}

fn zip(files: &[(&str, &str)]) -> Source {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (path, data) in files {
        w.start_file(*path, zip::write::SimpleFileOptions::default())
            .unwrap();
        w.write_all(data.as_bytes()).unwrap();
    }
    Source::Archive {
        bytes: w.finish().unwrap().into_inner(),
    }
}

fn ok(r: Result<Built, BuildError>) -> Built {
    match r {
        Ok(b) => {
            assert!(b.wasm.starts_with(b"\0asm"), "not a wasm module");
            b
        }
        Err(e) => panic!("build failed: {e}\nlog:\n{}", e.log().unwrap_or("")),
    }
}

fn timed<T>(what: &str, f: impl FnOnce() -> T) -> T {
    let t = Instant::now();
    let r = f();
    eprintln!("{what}: {:.1?}", t.elapsed());
    r
}

/// Runs a module with fnvm itself when its release binary is there (built by others; this
/// test does not build it): the output, or None.
fn run_with_fnvm(wasm: &[u8]) -> Option<String> {
    let fnvm = repo().join("target/release/fnvm");
    if !fnvm.is_file() {
        eprintln!("NOTICE: target/release/fnvm not built: the module is not run");
        return None;
    }
    let path = std::env::temp_dir().join(format!("fnvm-builds-hello-{}.wasm", std::process::id()));
    std::fs::write(&path, wasm).unwrap();
    let out = Command::new(fnvm).arg("run").arg(&path).output().unwrap();
    let _ = std::fs::remove_file(&path);
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

// --- hello in each language, single files --------------------------------------------------

#[test]
fn rust_hello_file() {
    let tc = toolchains!();
    let src = file(
        "hello.rs",
        "fn main() { println!(\"Hello Rust! ABI {}\", fnvm_guest::ABI_VERSION); }\n",
    );
    let b = timed("rust hello", || {
        ok(build(Language::Rust, &src, tc, &Limits::default()))
    });
    if let Some(out) = run_with_fnvm(&b.wasm) {
        assert_eq!(out, "Hello Rust! ABI 1\n");
    }
    // The cache key is stable and depends on the toolchain.
    let v = tc.version(Language::Rust).unwrap();
    assert!(v.starts_with("rustc ") && v.contains("fnvm-guest"), "{v}");
    assert_eq!(
        input_hash(Language::Rust, &src, &v),
        input_hash(Language::Rust, &src, &v)
    );
}

#[test]
fn go_hello_file() {
    let tc = toolchains!();
    let src = file(
        "main.go",
        "package main\n\nimport \"fmt\"\n\nfunc main() {\n\tfmt.Println(\"Hello Go!\")\n}\n",
    );
    let b = timed("go hello", || {
        ok(build(Language::Go, &src, tc, &Limits::default()))
    });
    if let Some(out) = run_with_fnvm(&b.wasm) {
        assert_eq!(out, "Hello Go!\n");
    }
}

#[test]
fn assemblyscript_hello_file() {
    let tc = toolchains!();
    let src = file(
        "index.ts",
        "process.stdout.write(\"Hello AssemblyScript!\\n\");\n",
    );
    let b = timed("assemblyscript hello", || {
        ok(build(
            Language::AssemblyScript,
            &src,
            tc,
            &Limits::default(),
        ))
    });
    if let Some(out) = run_with_fnvm(&b.wasm) {
        assert_eq!(out, "Hello AssemblyScript!\n");
    }
}

// --- project archives -----------------------------------------------------------------------

#[test]
fn rust_project_tar_gz() {
    let tc = toolchains!();
    // fnvm-guest from "crates.io", patched to the platform's copy; a module of its own.
    let src = tar_gz(&[
        (
            "proj/Cargo.toml",
            "[package]\nname = \"greeter\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[dependencies]\nfnvm-guest = \"0.1\"\n",
        ),
        (
            "proj/src/main.rs",
            "mod greet;\nfn main() { println!(\"{}\", greet::greeting(fnvm_guest::ABI_VERSION)); }\n",
        ),
        (
            "proj/src/greet.rs",
            "pub fn greeting(v: u32) -> String { format!(\"Hello from an archive, ABI {v}\") }\n",
        ),
    ]);
    let b = ok(build(Language::Rust, &src, tc, &Limits::default()));
    if let Some(out) = run_with_fnvm(&b.wasm) {
        assert_eq!(out, "Hello from an archive, ABI 1\n");
    }
}

#[test]
fn go_module_zip() {
    let tc = toolchains!();
    let src = zip(&[
        ("go.mod", "module example.com/hello\n\ngo 1.21\n"),
        (
            "main.go",
            "package main\n\nimport (\n\t\"fmt\"\n\t\"example.com/hello/greet\"\n)\n\nfunc main() { fmt.Println(greet.Greeting()) }\n",
        ),
        (
            "greet/greet.go",
            "package greet\n\nfunc Greeting() string { return \"Hello from a module\" }\n",
        ),
    ]);
    let b = ok(build(Language::Go, &src, tc, &Limits::default()));
    if let Some(out) = run_with_fnvm(&b.wasm) {
        assert_eq!(out, "Hello from a module\n");
    }
    // A dependency from the network cannot be had.
    let src = zip(&[
        (
            "go.mod",
            "module example.com/hello\n\ngo 1.21\n\nrequire github.com/pkg/errors v0.9.1\n",
        ),
        (
            "main.go",
            "package main\n\nimport \"github.com/pkg/errors\"\n\nfunc main() { _ = errors.New(\"x\") }\n",
        ),
    ]);
    match build(Language::Go, &src, tc, &Limits::default()) {
        Err(BuildError::Failed { reason, .. }) => {
            assert!(reason.contains("GOPROXY=off"), "{reason}")
        }
        other => panic!("expected Failed, got {other:?}"),
    }
}

#[test]
fn assemblyscript_package_tar_gz() {
    let tc = toolchains!();
    let src = tar_gz(&[
        (
            "asconfig.json",
            "{\"extends\": \"./node_modules/@assemblyscript/wasi-shim/asconfig.json\"}\n",
        ),
        (
            "assembly/index.ts",
            "import { greeting } from \"./greet\";\nprocess.stdout.write(greeting() + \"\\n\");\n",
        ),
        (
            "assembly/greet.ts",
            "export function greeting(): string { return \"Hello from a package\"; }\n",
        ),
        // The platform's packages replace the archive's.
        (
            "node_modules/assemblyscript/bin/asc.js",
            "process.exit(3)\n",
        ),
    ]);
    let b = ok(build(
        Language::AssemblyScript,
        &src,
        tc,
        &Limits::default(),
    ));
    if let Some(out) = run_with_fnvm(&b.wasm) {
        assert_eq!(out, "Hello from a package\n");
    }
}

// --- compile errors and bad sources ----------------------------------------------------------

fn failed(r: Result<Built, BuildError>) -> (String, String) {
    match r {
        Err(BuildError::Failed { reason, log }) => (reason, log),
        other => panic!("expected Failed, got {other:?}"),
    }
}

#[test]
fn compile_errors_carry_the_compilers_message() {
    let tc = toolchains!();
    let l = Limits::default();
    let (reason, log) = failed(build(
        Language::Rust,
        &file(
            "main.rs",
            "fn main() { println!(\"{}\", undefined_thing); }\n",
        ),
        tc,
        &l,
    ));
    assert!(reason.starts_with("error[E0425]"), "{reason}");
    assert!(reason.contains("undefined_thing") && reason.len() <= 2100);
    assert!(log.contains("Compiling function"), "{log}");

    let (reason, _) = failed(build(
        Language::Go,
        &file(
            "main.go",
            "package main\n\nfunc main() {\n\tundefinedThing()\n}\n",
        ),
        tc,
        &l,
    ));
    assert!(reason.contains("undefined: undefinedThing"), "{reason}");

    let (reason, _) = failed(build(
        Language::AssemblyScript,
        &file("index.ts", "undefinedThing();\n"),
        tc,
        &l,
    ));
    assert!(
        reason.starts_with("ERROR") && reason.contains("undefinedThing"),
        "{reason}"
    );
}

#[test]
fn bad_sources_are_refused_before_building() {
    let tc = toolchains!();
    let l = Limits::default();
    let err = build(Language::Rust, &file("main.go", "package main"), tc, &l).unwrap_err();
    assert!(
        matches!(err, BuildError::Source(ref m) if m.contains("*.rs")),
        "{err}"
    );
    let err = build(
        Language::Go,
        &Source::Archive {
            bytes: b"garbage".to_vec(),
        },
        tc,
        &l,
    )
    .unwrap_err();
    assert!(matches!(err, BuildError::Source(_)), "{err}");
    let err = build(Language::Rust, &tar_gz(&[("README", "no project")]), tc, &l).unwrap_err();
    assert!(
        matches!(err, BuildError::Source(ref m) if m.contains("Cargo.toml")),
        "{err}"
    );
    let small = Limits {
        source_bytes: 10,
        ..Limits::default()
    };
    let err = build(
        Language::Go,
        &file("main.go", "package main // long"),
        tc,
        &small,
    )
    .unwrap_err();
    assert!(
        matches!(err, BuildError::Source(ref m) if m.contains("limit")),
        "{err}"
    );
}

#[test]
fn missing_toolchains_are_named() {
    let tc = Toolchains::new("/nonexistent/fnvm-toolchains");
    for (l, name) in [
        (Language::Rust, "rust"),
        (Language::Go, "go"),
        (Language::AssemblyScript, "assemblyscript"),
    ] {
        match tc.version(l) {
            Err(BuildError::ToolchainMissing { name: n, detail }) => {
                assert_eq!(n, name);
                assert!(detail.contains("toolchains.sh"), "{detail}");
            }
            other => panic!("expected ToolchainMissing, got {other:?}"),
        }
    }
    let status = tc.check();
    let names: Vec<&str> = status.iter().map(|s| s.name).collect();
    assert_eq!(
        names,
        ["bubblewrap", "rust", "go", "assemblyscript", "javascript"]
    );
    assert!(status[1..].iter().all(|s| !s.present));
    let err = build(
        Language::Go,
        &file("main.go", "package main\nfunc main() {}\n"),
        &tc,
        &Limits::default(),
    )
    .unwrap_err();
    assert!(matches!(err, BuildError::ToolchainMissing { .. }), "{err}");
}

// --- escapes and exhaustion, from a Rust build script ----------------------------------------

/// A Cargo project whose build script is `build_rs` (it runs inside the sandbox, as any
/// user's build code would).
fn with_build_script(build_rs: &str) -> Source {
    tar_gz(&[
        (
            "Cargo.toml",
            "[package]\nname = \"evil\"\nversion = \"0.1.0\"\nedition = \"2021\"\nbuild = \"build.rs\"\n",
        ),
        ("build.rs", build_rs),
        ("src/main.rs", "fn main() {}\n"),
    ])
}

#[test]
fn build_code_cannot_reach_the_network_or_the_servers_files() {
    let tc = toolchains!();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    // Secrets in places a server has: its working tree (under /work here) and root's home.
    let secret = format!("fnvm-secret-{}", std::process::id());
    let in_repo = repo().join(format!("target/fnvm-builds-secret-{}", std::process::id()));
    std::fs::write(&in_repo, &secret).unwrap();
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let in_home = Path::new(&home).join(format!(".fnvm-builds-secret-{}", std::process::id()));
    let home_written = std::fs::write(&in_home, &secret).is_ok();
    let build_rs = format!(
        r#"use std::net::{{TcpStream, SocketAddr}};
use std::time::Duration;
fn try_connect(addr: &str) -> String {{
    match TcpStream::connect_timeout(&addr.parse::<SocketAddr>().unwrap(), Duration::from_secs(2)) {{
        Ok(_) => "OK".into(),
        Err(e) => format!("ERR({{e}})"),
    }}
}}
fn try_read(p: &str) -> String {{
    match std::fs::read_to_string(p) {{ Ok(s) => format!("OK:{{s}}"), Err(e) => format!("ERR({{e}})") }}
}}
fn status(field: &str) -> String {{
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines().find_map(|l| l.strip_prefix(field)).unwrap_or("?").split_whitespace().next().unwrap_or("?").to_string()
}}
fn main() {{
    let userns = match std::process::Command::new("/usr/bin/unshare").args(["-U", "/bin/true"]).output() {{
        Ok(o) if o.status.success() => "OK".to_string(),
        Ok(o) => format!("ERR({{}})", String::from_utf8_lossy(&o.stderr).trim()),
        Err(e) => format!("ERR({{e}})"),
    }};
    let writable: Vec<&str> = ["/dev/shm/x", "/x", "/dev/x", "/src/x", "/opt/fnvm/rust/sysroot/x", "/usr/x"]
        .into_iter()
        .filter(|p| std::fs::write(p, "x").is_ok())
        .collect();
    let report = format!(
        "REPORT writable={{writable:?}} uid={{}} caps={{}} userns={{}} local={{}} remote={{}} repo={{}} home={{}} work_exists={{}} root_exists={{}} passwd={{}}",
        status("Uid:"),
        status("CapEff:"),
        userns,
        try_connect("127.0.0.1:{port}"),
        try_connect("1.1.1.1:80"),
        try_read({repo_path:?}),
        try_read({home_path:?}),
        std::path::Path::new("/work").exists(),
        std::path::Path::new("/root").exists(),
        try_read("/etc/passwd").len(),
    );
    panic!("{{report}}");
}}
"#,
        repo_path = in_repo.to_str().unwrap(),
        home_path = in_home.to_str().unwrap(),
    );
    let r = build(
        Language::Rust,
        &with_build_script(&build_rs),
        tc,
        &Limits::default(),
    );
    let _ = std::fs::remove_file(&in_repo);
    if home_written {
        let _ = std::fs::remove_file(&in_home);
    }
    let (_, log) = failed(r);
    let report = log
        .lines()
        .find(|l| l.contains("REPORT writable="))
        .unwrap_or_else(|| panic!("no report in the log:\n{log}"));
    eprintln!("{report}");
    assert!(
        report.contains("REPORT writable=[] uid=65534 caps=0000000000000000 userns=ERR("),
        "{report}"
    );
    assert!(report.contains("local=ERR("), "{report}");
    assert!(report.contains("remote=ERR("), "{report}");
    assert!(report.contains("repo=ERR("), "{report}");
    assert!(report.contains("home=ERR("), "{report}");
    assert!(
        report.contains("work_exists=false root_exists=false"),
        "{report}"
    );
    assert!(!log.contains(&secret), "a secret leaked into the log");
    match listener.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("the build reached the host's listener: {other:?}"),
    }
}

fn limit(r: Result<Built, BuildError>) -> (String, String) {
    match r {
        Err(BuildError::Limit { what, log }) => (what, log),
        Err(e) => panic!("expected Limit, got {e}\nlog:\n{}", e.log().unwrap_or("")),
        Ok(_) => panic!("expected Limit, the build succeeded"),
    }
}

#[test]
fn a_fork_bomb_ends_at_the_process_limit() {
    let tc = toolchains!();
    // A shell fork bomb in the background, and the build script spawning without end: when
    // a spawn fails (the limit), it tries again, as a real bomb does.
    let build_rs = r#"use std::process::Command;
fn main() {
    let _ = Command::new("/bin/sh").arg("-c").arg("b() { b | b & }; b").spawn();
    let mut kids = Vec::new();
    let mut failures = 0u64;
    loop {
        match Command::new("/bin/sleep").arg("600").spawn() {
            Ok(c) => kids.push(c),
            Err(e) => {
                failures += 1;
                if failures % 1000 == 1 {
                    eprintln!("spawn failed ({failures} times, {} running): {e}", kids.len());
                }
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        }
    }
}
"#;
    // Cargo waits for the build script's output to end, which the bomb's processes keep
    // open: the build hangs with every slot taken until the wall time.
    let limits = Limits {
        processes: 100,
        wall: Duration::from_secs(15),
        ..Limits::default()
    };
    let t = Instant::now();
    let bomb = std::thread::spawn(move || {
        build(Language::Rust, &with_build_script(build_rs), tc, &limits)
    });
    // Meanwhile, another build (as the same host user, nobody) is unaffected: processes are
    // counted per user namespace, that is per build.
    std::thread::sleep(Duration::from_secs(5));
    let hello = "package main\n\nimport \"fmt\"\n\nfunc main() { fmt.Println(\"ok\") }\n";
    let other = Limits {
        processes: 100,
        ..Limits::default()
    };
    ok(build(Language::Go, &file("main.go", hello), tc, &other));
    assert!(!bomb.is_finished(), "the bomb should still be running");
    let (what, log) = limit(bomb.join().unwrap());
    eprintln!("fork bomb: {what}");
    assert!(what.contains("processes (100)"), "{what}\n{log}");
    assert!(t.elapsed() < Duration::from_secs(60));
}

#[test]
fn an_endless_loop_ends_at_the_cpu_limit() {
    let tc = toolchains!();
    let limits = Limits {
        cpu_seconds: 3,
        ..Limits::default()
    };
    let t = Instant::now();
    let src = with_build_script(
        "fn main() { let mut x = 0u64; loop { x = std::hint::black_box(x + 1); } }\n",
    );
    let (what, _) = limit(build(Language::Rust, &src, tc, &limits));
    eprintln!("endless loop: {what}");
    assert!(what.contains("CPU time"), "{what}");
    assert!(t.elapsed() < Duration::from_secs(60));
}

#[test]
fn an_endless_wait_ends_at_the_wall_time_limit() {
    let tc = toolchains!();
    let limits = Limits {
        wall: Duration::from_secs(10),
        ..Limits::default()
    };
    let t = Instant::now();
    // Sleeps (no CPU), in a child that would outlive the script if the sandbox let it.
    let src = with_build_script(
        "fn main() { let _ = std::process::Command::new(\"/bin/sleep\").arg(\"1000\").status(); }\n",
    );
    let (what, log) = limit(build(Language::Rust, &src, tc, &limits));
    assert!(what.contains("wall time"), "{what}");
    assert!(log.contains("[fnvm: build stopped: wall time"), "{log}");
    let took = t.elapsed();
    assert!(
        took >= Duration::from_secs(10) && took < Duration::from_secs(16),
        "{took:?}"
    );
}

#[test]
fn filling_the_disk_ends_at_the_disk_limit() {
    let tc = toolchains!();
    let limits = Limits {
        disk_bytes: 96 << 20,
        ..Limits::default()
    };
    let build_rs = r#"use std::io::Write;
fn main() {
    let dir = std::env::var("OUT_DIR").unwrap();
    let chunk = vec![7u8; 1 << 20];
    for i in 0.. {
        let mut f = std::fs::File::create(format!("{dir}/fill{i}")).unwrap();
        for _ in 0..16 {
            if let Err(e) = f.write_all(&chunk) {
                panic!("write failed after {i} files: {e}");
            }
        }
    }
}
"#;
    let (what, _) = limit(build(
        Language::Rust,
        &with_build_script(build_rs),
        tc,
        &limits,
    ));
    eprintln!("disk: {what}");
    assert!(what.contains("disk space"), "{what}");
}

#[test]
fn endless_output_is_bounded() {
    let tc = toolchains!();
    let limits = Limits {
        log_bytes: 64 << 10,
        ..Limits::default()
    };
    // 32 MiB on stderr, then a failure (cargo shows a failed build script's output).
    let build_rs = r#"use std::io::Write;
fn main() {
    let line = [b'z'; 1023];
    let mut err = std::io::stderr().lock();
    for _ in 0..32 * 1024 {
        err.write_all(&line).unwrap();
        err.write_all(b"\n").unwrap();
    }
    panic!("the end of the noise");
}
"#;
    let (reason, log) = failed(build(
        Language::Rust,
        &with_build_script(build_rs),
        tc,
        &limits,
    ));
    assert!(log.len() < (64 << 10) + 1024, "{}", log.len());
    assert!(log.contains("bytes of build output cut here"), "{log}");
    assert!(log.contains("the end of the noise"));
    assert!(reason.len() <= 2100);
}

#[test]
fn memory_and_module_size_are_limited() {
    let tc = toolchains!();
    let limits = Limits {
        memory_bytes: 256 << 20,
        ..Limits::default()
    };
    let build_rs = "fn main() { let v = vec![1u8; 1 << 30]; println!(\"{}\", v[12345]); }\n";
    let (what, _) = limit(build(
        Language::Rust,
        &with_build_script(build_rs),
        tc,
        &limits,
    ));
    eprintln!("memory: {what}");
    assert!(what.contains("memory"), "{what}");

    let limits = Limits {
        artifact_bytes: 1000,
        ..Limits::default()
    };
    let hello = "package main\n\nfunc main() { println(\"hi\") }\n";
    let (what, _) = limit(build(Language::Go, &file("main.go", hello), tc, &limits));
    assert!(what.contains("module size"), "{what}");
}

#[test]
fn check_reports_every_toolchain() {
    let tc = toolchains!();
    let status = tc.check();
    for s in &status {
        eprintln!(
            "check: {} present={} version={:?} detail={}",
            s.name, s.present, s.version, s.detail
        );
    }
    let names: Vec<&str> = status.iter().map(|s| s.name).collect();
    assert_eq!(
        names,
        ["bubblewrap", "rust", "go", "assemblyscript", "javascript"]
    );
    assert!(status[..4].iter().all(|s| s.present && s.version.is_some()));
}

#[test]
fn toolchains_the_build_user_cannot_reach_are_reported() {
    if !rustix::process::geteuid().is_root() {
        return; // only root switches builds to another user
    }
    use std::os::unix::fs::PermissionsExt;
    let base = std::env::temp_dir().join(format!("fnvm-builds-private-{}", std::process::id()));
    let go = base.join("tc/go");
    std::fs::create_dir_all(go.join("bin")).unwrap();
    std::fs::write(go.join("bin/go"), "").unwrap();
    std::fs::write(go.join("VERSION"), "go1.27.3\n").unwrap();
    std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o700)).unwrap();
    let r = Toolchains::new(base.join("tc")).version(Language::Go);
    let _ = std::fs::remove_dir_all(&base);
    match r {
        Err(BuildError::ToolchainMissing { name: "go", detail }) => {
            assert!(detail.contains("not reachable"), "{detail}")
        }
        other => panic!("expected ToolchainMissing, got {other:?}"),
    }
}
