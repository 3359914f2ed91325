//! The `fnvm` binary as a user runs it: `fnvm compile` on good and bad input, the output
//! format and exit status of `fnvm wast`, and the limits of `fnvm run` (WASI programs are
//! tested in `wasi`).

use std::path::PathBuf;
use std::process::{Command, Output};

const FNVM: &str = env!("CARGO_BIN_EXE_fnvm");

/// A fresh path for test `name` under Cargo's scratch directory for integration tests.
fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("cli");
    std::fs::create_dir_all(&dir).expect("creating the scratch directory");
    let path = dir.join(name);
    let _ = std::fs::remove_file(&path);
    path
}

fn fnvm(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(FNVM)
        .args(args)
        .output()
        .expect("running fnvm")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn compile_wat_writes_an_artifact() {
    let input = scratch("add.wat");
    let output = scratch("add.fnvm");
    std::fs::write(
        &input,
        r#"(module (func (export "add") (param i32 i32) (result i32)
             local.get 0 local.get 1 i32.add))"#,
    )
    .unwrap();
    let out = fnvm(&[
        "compile".as_ref(),
        input.as_ref(),
        "-o".as_ref(),
        output.as_ref(),
    ]);
    assert!(
        out.status.success(),
        "fnvm compile failed: {}",
        stderr(&out)
    );
    let artifact = std::fs::read(&output).expect("reading the artifact");
    assert!(
        artifact.starts_with(&fnvm_abi::artifact::MAGIC),
        "artifact starts with {:?}",
        &artifact[..artifact.len().min(8)]
    );
}

#[test]
fn compile_wasm_binary_writes_an_artifact() {
    let input = scratch("empty.wasm");
    let output = scratch("empty.fnvm");
    std::fs::write(&input, b"\0asm\x01\0\0\0").unwrap();
    let out = fnvm(&[
        "compile".as_ref(),
        input.as_ref(),
        "-o".as_ref(),
        output.as_ref(),
    ]);
    assert!(
        out.status.success(),
        "fnvm compile failed: {}",
        stderr(&out)
    );
    assert!(std::fs::read(&output).unwrap().starts_with(b"\0fnvmart"));
}

#[test]
fn compile_garbage_fails_naming_the_byte_offset() {
    // A valid header followed by a section id that does not exist.
    let cases: [(&str, &[u8]); 2] = [
        (
            "garbage-after-header.wasm",
            b"\0asm\x01\0\0\0\xff\xff\xff\xff",
        ),
        ("garbage.bin", b"\xff\xfe\xfd\x00\x01garbage"),
    ];
    for (name, bytes) in cases {
        let input = scratch(name);
        let output = scratch(&format!("{name}.fnvm"));
        std::fs::write(&input, bytes).unwrap();
        let out = fnvm(&[
            "compile".as_ref(),
            input.as_ref(),
            "-o".as_ref(),
            output.as_ref(),
        ]);
        assert!(!out.status.success(), "{name}: fnvm compile succeeded");
        let err = stderr(&out);
        assert!(err.contains("byte offset"), "{name}: stderr: {err}");
        assert!(
            err.contains(name),
            "{name}: stderr does not name the file: {err}"
        );
        assert!(!output.exists(), "{name}: an artifact was written");
    }
}

#[test]
fn compile_invalid_text_fails_with_its_location() {
    let input = scratch("bad.wat");
    let output = scratch("bad.fnvm");
    std::fs::write(&input, "(module (func (result i32) i32.bogus))").unwrap();
    let out = fnvm(&[
        "compile".as_ref(),
        input.as_ref(),
        "-o".as_ref(),
        output.as_ref(),
    ]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("bad.wat:1:"), "stderr: {err}");
}

#[test]
fn compile_missing_input_fails() {
    let input = scratch("does-not-exist.wasm");
    let output = scratch("does-not-exist.fnvm");
    let out = fnvm(&[
        "compile".as_ref(),
        input.as_ref(),
        "-o".as_ref(),
        output.as_ref(),
    ]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("reading"), "stderr: {}", stderr(&out));
}

#[test]
fn wast_reports_counts_and_failures() {
    let script = scratch("one-failure.wast");
    std::fs::write(
        &script,
        r#"(module (func (export "one") (result i32) i32.const 1))
(assert_return (invoke "one") (i32.const 1))
(assert_return (invoke "one") (i32.const 2))
"#,
    )
    .unwrap();
    let out = fnvm(&["wast".as_ref(), script.as_ref()]);
    assert_eq!(out.status.code(), Some(1), "stderr: {}", stderr(&out));
    let stdout = stdout(&out);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines,
        ["one-failure.wast: 2 passed, 1 failed", "2 passed, 1 failed"]
    );
    let err = stderr(&out);
    assert!(
        err.contains("one-failure.wast:3:2: assert_return: expected [i32:2], got [i32:1]"),
        "stderr: {err}"
    );
}

#[test]
fn wast_exits_zero_when_everything_passes() {
    let script = scratch("all-pass.wast");
    std::fs::write(
        &script,
        r#"(module (func (export "one") (result i32) i32.const 1))
(assert_return (invoke "one") (i32.const 1))
"#,
    )
    .unwrap();
    let excluded = scratch("simd_excluded.wast");
    std::fs::write(&excluded, "(this does not even parse").unwrap();
    let out = fnvm(&[
        "wast".as_ref(),
        "--exclude".as_ref(),
        "simd_".as_ref(),
        script.as_ref(),
        excluded.as_ref(),
    ]);
    assert!(out.status.success(), "stderr: {}", stderr(&out));
    assert_eq!(stdout(&out).lines().last(), Some("2 passed, 0 failed"));
}

/// `fnvm run` enforces `--timeout-ms` (a trap, status 134) and `--max-memory` (memory.grow
/// fails beyond it); the guest reports what it got through its exit status.
#[test]
fn run_enforces_timeout_and_memory_limits() {
    let spin = scratch("spin.wat");
    std::fs::write(
        &spin,
        r#"(module (func (export "_start") (loop $l (br $l))))"#,
    )
    .unwrap();
    let cache = scratch("cache-limits");
    let run = |args: &[&str], file: &PathBuf| {
        Command::new(FNVM)
            .arg("run")
            .args(args)
            .arg(file)
            .env("FNVM_CACHE_DIR", &cache)
            .output()
            .expect("running fnvm")
    };
    let out = run(&["--timeout-ms", "50"], &spin);
    assert_eq!(out.status.code(), Some(134), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("deadline exceeded"),
        "{}",
        stderr(&out)
    );

    // A guest blocked reading fnvm's own stdin (a pipe nobody writes to, left open) is ended
    // by the deadline too, not left waiting for input.
    let read = scratch("read-stdin.wat");
    std::fs::write(
        &read,
        r#"(module
             (import "wasi_snapshot_preview1" "fd_read"
               (func $read (param i32 i32 i32 i32) (result i32)))
             (memory 1)
             (func (export "_start")
               (i32.store (i32.const 0) (i32.const 64))
               (i32.store (i32.const 4) (i32.const 16))
               (drop (call $read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)))))"#,
    )
    .unwrap();
    let t = std::time::Instant::now();
    let mut child = Command::new(FNVM)
        .args(["run", "--timeout-ms", "300"])
        .arg(&read)
        .env("FNVM_CACHE_DIR", &cache)
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("running fnvm");
    let open_stdin = child.stdin.take();
    let out = child.wait_with_output().expect("waiting for fnvm");
    drop(open_stdin);
    assert_eq!(out.status.code(), Some(134), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("deadline exceeded"),
        "{}",
        stderr(&out)
    );
    assert!(t.elapsed() < std::time::Duration::from_secs(30));

    // Exits with the page count memory.grow returned (or 255 for -1).
    let grow = scratch("grow.wat");
    std::fs::write(
        &grow,
        r#"(module
             (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
             (memory 1)
             (func (export "_start")
               (call $exit (i32.and (memory.grow (i32.const 3)) (i32.const 255)))))"#,
    )
    .unwrap();
    let out = run(&[], &grow);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let out = run(&["--max-memory", "196608"], &grow);
    assert_eq!(out.status.code(), Some(255), "{}", stderr(&out));
}
