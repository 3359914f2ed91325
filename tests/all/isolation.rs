//! `fnvm run --isolation vm`: the WASI guests run in a KVM micro-VM behave as they do in
//! process. Each test runs the same guest (Rust; and the C, Go and AssemblyScript ones built by
//! `scripts/guests.sh` with their toolchains) both ways and compares what a user sees: the
//! exit status, stdout, stderr (for a trap: its kind and the frames named), what it left in a
//! preopened directory, and the `--debug` report's fields (its timings and the hostcalls'
//! argument addresses aside). Without a usable `/dev/kvm` the VM runs must fail with a clear
//! error, not a panic (tested with `FNVM_KVM_DEVICE` pointing at a missing device). And
//! `fnvm wast --isolation vm`: scripts of import-free instances give the same counts in VMs;
//! linking (`register`, imports) fails with its reason.
//!
//! The tests need `/dev/kvm`: without it they skip with a note on stderr, except under
//! `CI=true`, where they fail, as the runtime's KVM tests do. The Rust guests are built by
//! `scripts/guests.sh rust` (once per test process).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

const FNVM: &str = env!("CARGO_BIN_EXE_fnvm");
const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Whether `/dev/kvm` can be used; a failure under `CI=true`, a skip (with a note) elsewhere.
pub(crate) fn kvm_available() -> bool {
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm");
    match opened {
        Ok(_) => true,
        Err(e) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("no usable /dev/kvm in CI: {e}")
        }
        Err(e) => {
            eprintln!("skipped: no usable /dev/kvm ({e})");
            false
        }
    }
}

/// The built Rust guest `name` (`scripts/guests.sh rust` runs once per process).
fn guest(name: &str) -> PathBuf {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        let out = Command::new(Path::new(ROOT).join("scripts/guests.sh"))
            .arg("rust")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| e.to_string())?;
        match out.status.success() {
            true => Ok(()),
            false => Err(String::from_utf8_lossy(&out.stderr).into_owned()),
        }
    });
    if let Err(e) = built {
        panic!("building the Rust guests: {e}");
    }
    Path::new(ROOT)
        .join("target/guests/rust")
        .join(format!("{name}.wasm"))
}

/// A compile cache for this test process.
fn cache() -> PathBuf {
    std::env::temp_dir().join(format!("fnvm-isolation-cache-{}", std::process::id()))
}

/// `fnvm run --isolation ISOLATION [options] FILE [args]`, with `stdin` as its input.
fn run(isolation: &str, options: &[&str], file: &Path, args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(FNVM)
        .arg("run")
        .args(["--isolation", isolation])
        .args(options)
        .arg(file)
        .args(args)
        .env("FNVM_CACHE_DIR", cache())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting fnvm");
    let mut pipe = child.stdin.take().unwrap();
    let input = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        let _ = pipe.write_all(&input);
    });
    let out = child.wait_with_output().expect("waiting for fnvm");
    writer.join().unwrap();
    out
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs the Rust guest `name` both ways and asserts the same status, stdout and stderr;
/// returns the VM's.
#[track_caller]
fn same(options: &[&str], name: &str, args: &[&str], stdin: &[u8]) -> Output {
    same_file(options, &guest(name), args, stdin)
}

/// [`same`] for the module at `wasm`.
#[track_caller]
fn same_file(options: &[&str], wasm: &Path, args: &[&str], stdin: &[u8]) -> Output {
    let process = run("process", options, wasm, args, stdin);
    let vm = run("vm", options, wasm, args, stdin);
    let what = format!("{} {args:?}", wasm.display());
    assert_eq!(
        vm.status.code(),
        process.status.code(),
        "{what}: exit status\n--- vm stderr:\n{}",
        text(&vm.stderr)
    );
    assert_eq!(text(&vm.stdout), text(&process.stdout), "{what}: stdout");
    assert_eq!(text(&vm.stderr), text(&process.stderr), "{what}: stderr");
    vm
}

#[test]
fn hello_is_the_same_in_a_vm() {
    if !kvm_available() {
        return;
    }
    let out = same(&[], "hello", &[], b"");
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(text(&out.stdout), "Hello Rust!\n");
}

#[test]
fn args_env_and_exit_codes_are_the_same_in_a_vm() {
    if !kvm_available() {
        return;
    }
    let out = same(
        &[
            "--env",
            "GUEST_B=2",
            "--env",
            "GUEST_A=x=y",
            "--env",
            "OTHER=no",
        ],
        "args_env",
        &["one", "two words", "", "ünïcödé ✓"],
        b"",
    );
    assert_eq!(
        text(&out.stdout),
        "one\ntwo words\n\nünïcödé ✓\nGUEST_A=x=y\nGUEST_B=2\n"
    );
    for code in ["0", "3", "42"] {
        let out = same(&[], "exit", &[code], b"");
        assert_eq!(out.status.code(), code.parse().ok());
    }
}

#[test]
fn a_trap_is_the_same_in_a_vm() {
    if !kvm_available() {
        return;
    }
    // Same stderr: the panic message, the trap's kind and every frame of its backtrace.
    let out = same(&[], "trap", &[], b"");
    assert_eq!(out.status.code(), Some(134));
    let err = text(&out.stderr);
    for part in [
        "deliberate panic: boom",
        "trap: unreachable",
        "deliberately_trap",
    ] {
        assert!(err.contains(part), "stderr lacks {part:?}:\n{err}");
    }
}

#[test]
fn stdin_files_and_sleep_are_the_same_in_a_vm() {
    if !kvm_available() {
        return;
    }
    let input: Vec<u8> = (0..2000)
        .flat_map(|i| format!("line {i}: the quick brown fox\n").into_bytes())
        .collect();
    let out = same(&[], "upper", &[], &input);
    assert_eq!(out.stdout, input.to_ascii_uppercase());
    // The files guest, each way in a fresh directory: the same output and the same tree left.
    let wasm = guest("files");
    let mut left = Vec::new();
    let mut printed = Vec::new();
    for isolation in ["process", "vm"] {
        let dir = std::env::temp_dir().join(format!(
            "fnvm-isolation-files-{isolation}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("host.txt"), "from the host\n").unwrap();
        let spec = format!("{}::/sandbox", dir.display());
        let out = run(isolation, &["--dir", &spec], &wasm, &["/sandbox"], b"");
        assert_eq!(
            out.status.code(),
            Some(0),
            "{isolation}: {}",
            text(&out.stderr)
        );
        printed.push(text(&out.stdout));
        let mut names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        let renamed = std::fs::read_to_string(dir.join("renamed.txt")).unwrap_or_default();
        left.push((names, renamed));
        std::fs::remove_dir_all(&dir).unwrap();
    }
    assert_eq!(printed[1], printed[0], "files: stdout");
    assert!(printed[0].ends_with("readdir: host.txt renamed.txt\n"));
    assert_eq!(left[1], left[0], "files: what is left in the directory");
    same(&[], "sleep", &[], b"");
}

/// The report's fields that do not depend on timing or addresses: everything but `dmesg`, and
/// dmesg's lines without numbers.
fn report_shape(out: &Output) -> (serde_json::Value, Vec<String>) {
    let mut report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("no JSON report ({e}):\n{}", text(&out.stdout)));
    let dmesg = report["dmesg"].take();
    let lines = dmesg
        .as_str()
        .unwrap_or_default()
        .lines()
        .map(|l| {
            // Call names and halt reasons, not timings or the vmctx token.
            l.split(['(', ':']).next().unwrap_or("").trim().to_string()
        })
        .collect();
    (report, lines)
}

#[test]
fn the_debug_report_is_the_same_in_a_vm() {
    if !kvm_available() {
        return;
    }
    for (name, status) in [("hello", 0), ("trap", 134), ("exit", 3)] {
        let wasm = guest(name);
        let process = run("process", &["--debug"], &wasm, &["3"], b"");
        let vm = run("vm", &["--debug"], &wasm, &["3"], b"");
        assert_eq!(
            vm.status.code(),
            Some(status),
            "{name}: {}",
            text(&vm.stderr)
        );
        assert_eq!(process.status.code(), Some(status), "{name}");
        let (p, p_lines) = report_shape(&process);
        let (v, v_lines) = report_shape(&vm);
        assert_eq!(v, p, "{name}: the report's fields");
        assert_eq!(v_lines, p_lines, "{name}: the dmesg trace");
        assert!(v_lines.iter().any(|l| l == "Halt reason"), "{v_lines:?}");
    }
}

#[test]
fn a_timeout_is_the_same_in_a_vm() {
    if !kvm_available() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("fnvm-isolation-loop-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let wat = dir.join("loop.wat");
    std::fs::write(
        &wat,
        r#"(module (memory (export "memory") 1) (func (export "_start") (loop (br 0))))"#,
    )
    .unwrap();
    let mut errs = Vec::new();
    for isolation in ["process", "vm"] {
        let start = std::time::Instant::now();
        let out = run(isolation, &["--timeout-ms", "200"], &wat, &[], b"");
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(134), "{isolation}: {err}");
        assert!(
            err.contains("trap: deadline exceeded"),
            "{isolation}: {err}"
        );
        assert!(start.elapsed() < std::time::Duration::from_secs(20));
        errs.push(err);
    }
    assert_eq!(errs[1], errs[0], "the trap and its backtrace");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn without_kvm_the_vm_isolation_is_a_clear_error() {
    let out = Command::new(FNVM)
        .args(["run", "--isolation", "vm"])
        .arg(guest("hello"))
        .env("FNVM_CACHE_DIR", cache())
        .env("FNVM_KVM_DEVICE", "/nonexistent/kvm")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("isolation vm needs /dev/kvm") && err.contains("/nonexistent/kvm"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    assert!(out.stdout.is_empty());
}

#[test]
fn wast_scripts_run_in_vms_and_linking_is_refused_with_its_reason() {
    if !kvm_available() {
        return;
    }
    let wast = |isolation: &str, files: &[PathBuf]| {
        Command::new(FNVM)
            .args(["wast", "--isolation", isolation])
            .args(files)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    // The repository's scripts (traps of every kind, modules with start functions, memories,
    // tables) need one import-free instance at a time: the same counts in VMs.
    let scripts: Vec<PathBuf> = ["modules.wast", "traps.wast"]
        .iter()
        .map(|s| Path::new(ROOT).join("tests/all/scripts").join(s))
        .collect();
    let process = wast("process", &scripts);
    let vm = wast("vm", &scripts);
    assert_eq!(vm.status.code(), Some(0), "{}", text(&vm.stderr));
    assert_eq!(text(&vm.stdout), text(&process.stdout));
    assert!(text(&vm.stdout).contains(" passed, 0 failed"));
    // A script linking instances: register and imports fail, with the reason.
    let script = std::env::temp_dir().join(format!("fnvm-isolation-{}.wast", std::process::id()));
    std::fs::write(
        &script,
        r#"(module $a (func (export "f") (result i32) (i32.const 7)))
(register "a" $a)
(module (import "a" "f" (func (result i32))) (func (export "g") (result i32) (call 0)))
(assert_return (invoke $a "f") (i32.const 7))
"#,
    )
    .unwrap();
    let out = wast("vm", std::slice::from_ref(&script));
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("register is not supported with --isolation vm"),
        "{err}"
    );
    assert!(err.contains("a module with imports"), "{err}");
    assert!(
        text(&out.stdout).contains("2 passed, 2 failed"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(
        wast("process", std::slice::from_ref(&script)).status.code(),
        Some(0)
    );
    let _ = std::fs::remove_file(&script);
}

#[test]
fn memory_caps_are_the_same_in_a_vm() {
    if !kvm_available() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("fnvm-isolation-grow-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let wat = dir.join("grow.wat");
    // Grows by 20000 pages (1.25 GiB) and traps if that fails.
    std::fs::write(
        &wat,
        r#"(module (memory 1) (func (export "_start")
             (if (i32.eq (memory.grow (i32.const 20000)) (i32.const -1)) (then unreachable))))"#,
    )
    .unwrap();
    for (options, status) in [(&[][..], 0), (&["--max-memory", "65536"][..], 134)] {
        let mut errs = Vec::new();
        for isolation in ["process", "vm"] {
            let out = run(isolation, options, &wat, &[], b"");
            let err = text(&out.stderr);
            assert_eq!(
                out.status.code(),
                Some(status),
                "{isolation} {options:?}: {err}"
            );
            errs.push(err);
        }
        assert_eq!(errs[1], errs[0], "{options:?}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The C, Go and AssemblyScript guests (and the Rust ones) print, exit and trap alike in a VM:
/// each language's runtime and libc start up, make their hostcalls and end there as in process.
#[test]
fn every_language_s_guests_are_the_same_in_a_vm() {
    if !kvm_available() {
        return;
    }
    use crate::wasi::{guest, AS, C, GO, RUST};
    for lang in [C, GO, AS, RUST] {
        let out = same_file(&[], &guest(lang, "hello"), &[], b"");
        assert_eq!(out.status.code(), Some(0), "{}", lang.name);
        assert!(!out.stdout.is_empty(), "{}", lang.name);
        let env = [
            "--env",
            "GUEST_A=x=y",
            "--env",
            "GUEST_B=2",
            "--env",
            "GUEST_EMPTY=",
        ];
        let out = same_file(
            &env,
            &guest(lang, "args_env"),
            &["one", "two words", ""],
            b"",
        );
        assert_eq!(out.status.code(), Some(0), "{}", lang.name);
        let out = same_file(&[], &guest(lang, "exit"), &["42"], b"");
        assert_eq!(out.status.code(), Some(42), "{}", lang.name);
        let out = same_file(
            &[],
            &guest(lang, "upper"),
            &[],
            b"Mixed Case, twice\n".repeat(500).as_slice(),
        );
        assert_eq!(out.status.code(), Some(0), "{}", lang.name);
        assert!(
            text(&out.stdout).starts_with("MIXED CASE, TWICE"),
            "{}",
            lang.name
        );
        let out = same_file(&[], &guest(lang, "trap"), &[], b"");
        assert_ne!(out.status.code(), Some(0), "{}", lang.name);
    }
}
