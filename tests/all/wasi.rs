//! WASI programs run with `fnvm run`, written in Rust, C, Go and AssemblyScript: one test per
//! behaviour per language (hello world, arguments and environment, exit codes, files in a
//! preopened directory, escapes from it, clocks and randomness, sleeping, stdin to stdout,
//! traps, bad pointers), the `--debug` report, the compile cache and fnvm's own errors.
//!
//! The guests' sources are in `tests/guests/<lang>/`; `scripts/guests.sh` installs their
//! toolchains when missing and builds them into `target/guests/<lang>/<name>.wasm`. It runs
//! once per test process, before the first guest is needed (it is fast when everything is
//! built), and a failure fails every test that needs a guest: nothing is skipped.
//!
//! Every run gets its own directories under the system's temporary directory, removed
//! afterwards; the compile cache (`FNVM_CACHE_DIR`) is shared by the tests of one process.

use std::ffi::{OsStr, OsString};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const FNVM: &str = env!("CARGO_BIN_EXE_fnvm");
const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// How long one `fnvm run` may take (a Go guest is 2.5 MB of code to compile) before the test
/// kills it and fails.
const RUN_TIMEOUT: Duration = Duration::from_secs(300);

/// Exit status of `fnvm run` when the guest traps.
const TRAP_STATUS: i32 = 134;

/// The guest path at which the tests preopen their directory.
const SANDBOX: &str = "/sandbox";

// ---- Guests -------------------------------------------------------------------------------

/// A guest language: its directory under `target/guests/` and its name in "Hello <name>!".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Lang {
    pub dir: &'static str,
    pub name: &'static str,
}

pub(crate) const RUST: Lang = Lang {
    dir: "rust",
    name: "Rust",
};
pub(crate) const RUST_NET: Lang = Lang {
    dir: "rust-net",
    name: "Rust",
};
pub(crate) const C: Lang = Lang {
    dir: "c",
    name: "C",
};
pub(crate) const GO: Lang = Lang {
    dir: "go",
    name: "Go",
};
pub(crate) const AS: Lang = Lang {
    dir: "as",
    name: "AssemblyScript",
};

/// Runs `scripts/guests.sh` the first time it is called in this process; panics (in every
/// caller) if it failed.
fn build_guests() {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    let result = BUILT.get_or_init(|| {
        let script = Path::new(ROOT).join("scripts/guests.sh");
        match Command::new(&script).stdin(Stdio::null()).output() {
            Ok(out) if out.status.success() => Ok(()),
            Ok(out) => Err(format!(
                "{} failed ({}):\n{}{}",
                script.display(),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )),
            Err(e) => Err(format!("running {}: {e}", script.display())),
        }
    });
    if let Err(e) = result {
        panic!("building the WASI guests: {e}");
    }
}

/// The built guest `name` of `lang`.
pub(crate) fn guest(lang: Lang, name: &str) -> PathBuf {
    build_guests();
    let path = Path::new(ROOT)
        .join("target/guests")
        .join(lang.dir)
        .join(format!("{name}.wasm"));
    assert!(
        path.is_file(),
        "{} is missing after scripts/guests.sh",
        path.display()
    );
    path
}

// ---- Scratch directories ------------------------------------------------------------------

/// A fresh directory under the system's temporary directory, removed when dropped.
#[derive(Debug)]
struct TempDir(PathBuf);

impl TempDir {
    fn new(test: &str) -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("fnvm-wasi-{test}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("creating a temporary directory");
        TempDir(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }

    fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// ---- Running fnvm -------------------------------------------------------------------------

/// The compile cache the tests of this process share, under the temporary directory. Caches
/// left by earlier test processes that are gone are removed first.
fn shared_cache() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let tmp = std::env::temp_dir();
        let prefix = "fnvm-wasi-cache-";
        if let Ok(entries) = std::fs::read_dir(&tmp) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let Some(pid) = name.strip_prefix(prefix) else {
                    continue;
                };
                if !Path::new("/proc").join(pid).exists() {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        tmp.join(format!("{prefix}{}", std::process::id()))
    })
}

/// One `fnvm run` invocation: options, then the file, then the guest's arguments.
#[derive(Debug)]
struct Run {
    options: Vec<OsString>,
    file: PathBuf,
    args: Vec<OsString>,
    cache: PathBuf,
    stdin: Option<Vec<u8>>,
}

impl Run {
    /// `fnvm run FILE`, compiling through this test process's shared cache (content-addressed
    /// and written atomically, so tests share it safely and each guest compiles once).
    fn new(_tmp: &TempDir, file: &Path) -> Run {
        Run {
            options: Vec::new(),
            file: file.to_path_buf(),
            args: Vec::new(),
            cache: shared_cache().to_path_buf(),
            stdin: None,
        }
    }

    /// Compiles through `dir` instead of the shared cache.
    fn cache(mut self, dir: &Path) -> Run {
        self.cache = dir.to_path_buf();
        self
    }

    fn option(mut self, name: &str, value: impl AsRef<OsStr>) -> Run {
        self.options.push(name.into());
        self.options.push(value.as_ref().to_owned());
        self
    }

    fn env(self, var: &str) -> Run {
        self.option("--env", var)
    }

    /// `--dir HOST::GUEST`.
    fn dir(self, host: &Path, guest: &str) -> Run {
        let mut spec = host.as_os_str().to_owned();
        spec.push("::");
        spec.push(guest);
        self.option("--dir", spec)
    }

    fn debug(mut self) -> Run {
        self.options.push("--debug".into());
        self
    }

    fn arg(mut self, arg: impl AsRef<OsStr>) -> Run {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    /// Pipes `bytes` into fnvm's standard input (otherwise it is /dev/null).
    fn pipe_stdin(mut self, bytes: &[u8]) -> Run {
        self.stdin = Some(bytes.to_vec());
        self
    }

    fn output(self) -> Output {
        let mut cmd = Command::new(FNVM);
        cmd.arg("run")
            .args(&self.options)
            .arg(&self.file)
            .args(&self.args)
            .env("FNVM_CACHE_DIR", &self.cache);
        run_with_timeout(cmd, self.stdin)
    }
}

/// Runs `cmd` with piped output (and `stdin` piped in, if any), killing it and failing the test
/// if it takes longer than [`RUN_TIMEOUT`].
fn run_with_timeout(mut cmd: Command, stdin: Option<Vec<u8>>) -> Output {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("starting fnvm");
    let writer = stdin.map(|bytes| {
        let mut pipe = child.stdin.take().unwrap();
        // A guest that stops reading early closes the pipe: that is not this test's failure.
        std::thread::spawn(move || drop(pipe.write_all(&bytes)))
    });
    let reader = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            bytes
        })
    };
    let stdout = reader(Box::new(child.stdout.take().unwrap()));
    let stderr = reader(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + RUN_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for fnvm") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{cmd:?} did not finish within {RUN_TIMEOUT:?}; stderr so far:\n{}",
                String::from_utf8_lossy(&stderr.join().unwrap())
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    if let Some(writer) = writer {
        writer.join().unwrap();
    }
    Output {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts the exit status, showing both outputs otherwise.
#[track_caller]
fn assert_status(out: &Output, code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "exit status {} instead of {code}\n--- stdout:\n{}\n--- stderr:\n{}",
        out.status,
        stdout(out),
        stderr(out)
    );
}

/// Asserts a successful run that printed exactly `expected` and nothing on stderr.
#[track_caller]
fn assert_success(out: &Output, expected: &str) {
    assert_status(out, 0);
    assert_eq!(stdout(out), expected, "stderr:\n{}", stderr(out));
    assert_eq!(stderr(out), "", "unexpected stderr");
}

// ---- Per-language behaviours --------------------------------------------------------------

fn hello(lang: Lang) {
    let tmp = TempDir::new(&format!("{}-hello", lang.dir));
    let out = Run::new(&tmp, &guest(lang, "hello")).output();
    assert_success(&out, &format!("Hello {}!\n", lang.name));
}

fn args_env(lang: Lang) {
    let tmp = TempDir::new(&format!("{}-args-env", lang.dir));
    let out = Run::new(&tmp, &guest(lang, "args_env"))
        .env("GUEST_B=2")
        .env("GUEST_A=x=y")
        .env("GUEST_EMPTY=")
        .env("OTHER=not printed")
        .arg("one")
        .arg("two words")
        .arg("")
        .arg("ünïcödé ✓")
        .arg("--flag")
        .output();
    assert_success(
        &out,
        "one\ntwo words\n\nünïcödé ✓\n--flag\nGUEST_A=x=y\nGUEST_B=2\nGUEST_EMPTY=\n",
    );
}

fn exit_codes(lang: Lang) {
    let tmp = TempDir::new(&format!("{}-exit", lang.dir));
    let wasm = guest(lang, "exit");
    for code in [0, 3, 42] {
        let out = Run::new(&tmp, &wasm).arg(code.to_string()).output();
        assert_status(&out, code);
        assert_eq!(stdout(&out), format!("exiting with {code}\n"));
        assert_eq!(stderr(&out), "", "exit {code}: unexpected stderr");
    }
}

/// What every `files` guest prints, given a directory holding only `host.txt`.
const FILES_OUTPUT: &str = "\
host.txt: from the host
write: 13
read: Hello, files!
seek: 7
read: files!
tell: 13
truncate: size=5
seek end-2: 3
read: lo
stat: size=5 type=file
append: Hello, again
rename: ok
data.txt: missing
renamed.txt: file
mkdir: ok
sub: dir
readdir sub: a.txt b.txt nested
rmdir non-empty: error
unlink: ok
rmdir: ok
sub: missing
readdir: host.txt renamed.txt
";

/// Runs the `files` guest on a fresh directory preopened at `guest_dir` (the host path
/// itself when `None`) and checks its output and what it left on the host.
fn files_in(lang: Lang, guest_dir: Option<&str>) {
    let tmp = TempDir::new(&format!("{}-files", lang.dir));
    let dir = tmp.join("dir");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("host.txt"), "from the host\n").unwrap();
    let run = Run::new(&tmp, &guest(lang, "files"));
    let out = match guest_dir {
        Some(guest_dir) => run.dir(&dir, guest_dir).arg(guest_dir),
        None => run.option("--dir", &dir).arg(&dir),
    }
    .output();
    assert_success(&out, FILES_OUTPUT);

    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["host.txt", "renamed.txt"], "left in the directory");
    assert_eq!(
        std::fs::read_to_string(dir.join("renamed.txt")).unwrap(),
        "Hello, again"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("host.txt")).unwrap(),
        "from the host\n"
    );
}

fn files(lang: Lang) {
    files_in(lang, Some(SANDBOX));
}

/// What every `escape` guest prints when the sandbox holds.
const ESCAPE_OUTPUT: &str = "\
inside: ok
link-inside: ok
dotdot: denied
etc-passwd: denied
link-abs: denied
link-rel: denied
link-dir: denied
create-outside: denied
raw-dotdot: denied
raw-abs: denied
raw-deep: denied
raw-create: denied
";

fn escape(lang: Lang) {
    let tmp = TempDir::new(&format!("{}-escape", lang.dir));
    let sandbox = tmp.join("sandbox");
    std::fs::create_dir_all(sandbox.join("inside-dir")).unwrap();
    std::fs::write(tmp.join("outside.txt"), "secret outside\n").unwrap();
    std::fs::write(sandbox.join("inside.txt"), "inside\n").unwrap();
    let link = |target: &Path, name: &str| {
        std::os::unix::fs::symlink(target, sandbox.join(name)).expect("creating a symlink")
    };
    link(&tmp.join("outside.txt"), "link-abs");
    link(Path::new("../outside.txt"), "link-rel");
    link(tmp.path(), "link-dir");
    link(Path::new("inside.txt"), "link-inside");

    let out = Run::new(&tmp, &guest(lang, "escape"))
        .dir(&sandbox, SANDBOX)
        .arg(SANDBOX)
        .output();
    assert_success(&out, ESCAPE_OUTPUT);
    assert!(
        !tmp.join("escaped.txt").exists(),
        "the guest created a file outside its directory"
    );
    assert_eq!(
        std::fs::read_to_string(tmp.join("outside.txt")).unwrap(),
        "secret outside\n"
    );
}

fn clocks(lang: Lang) {
    let tmp = TempDir::new(&format!("{}-clocks", lang.dir));
    let out = Run::new(&tmp, &guest(lang, "clocks")).output();
    assert_status(&out, 0);
    let text = stdout(&out);
    let mut lines = text.lines();
    let realtime: u64 = lines
        .next()
        .and_then(|l| l.strip_prefix("realtime: "))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no realtime line in:\n{text}"));
    let host = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        realtime.abs_diff(host) <= 60,
        "guest realtime {realtime} s, host {host} s"
    );
    assert_eq!(
        lines.collect::<Vec<_>>(),
        [
            "monotonic increases: yes",
            "random differs: yes",
            "random nonzero: yes"
        ]
    );
    assert_eq!(stderr(&out), "");
}

fn sleep(lang: Lang) {
    let tmp = TempDir::new(&format!("{}-sleep", lang.dir));
    let wasm = guest(lang, "sleep");
    let start = Instant::now();
    let out = Run::new(&tmp, &wasm).output();
    let elapsed = start.elapsed();
    assert_success(
        &out,
        "sleep >= 50ms: yes\n\
         poll_oneoff: errno 0\n\
         poll_oneoff >= 50ms: yes\n\
         events: 1 userdata: 42 error: 0 type: clock\n",
    );
    assert!(
        elapsed >= Duration::from_millis(100),
        "two 50 ms sleeps took {elapsed:?}"
    );
}

/// About 100 KB of ASCII text over many lines, so that the guests need many 4 KiB reads.
fn stdin_text() -> Vec<u8> {
    let mut text = String::new();
    for i in 0..2000 {
        text.push_str(&format!(
            "line {i}: the quick brown fox jumps over the lazy dog\n"
        ));
    }
    text.into_bytes()
}

fn stdin_to_stdout(lang: Lang) {
    let tmp = TempDir::new(&format!("{}-stdin", lang.dir));
    let wasm = guest(lang, "upper");
    let text = stdin_text();
    let upper = String::from_utf8(text.to_ascii_uppercase()).unwrap();
    let read = format!("read {} bytes\n", text.len());

    // --stdin FILE
    let file = tmp.join("input.txt");
    std::fs::write(&file, &text).unwrap();
    let out = Run::new(&tmp, &wasm).option("--stdin", &file).output();
    assert_status(&out, 0);
    assert!(
        stdout(&out) == upper,
        "--stdin: stdout is not the input upper-cased"
    );
    assert_eq!(stderr(&out), read, "--stdin");

    // fnvm's own standard input, a pipe.
    let out = Run::new(&tmp, &wasm).pipe_stdin(&text).output();
    assert_status(&out, 0);
    assert!(
        stdout(&out) == upper,
        "pipe: stdout is not the input upper-cased"
    );
    assert_eq!(stderr(&out), read, "pipe");

    // An empty file.
    let empty = tmp.join("empty.txt");
    std::fs::write(&empty, "").unwrap();
    let out = Run::new(&tmp, &wasm).option("--stdin", &empty).output();
    assert_status(&out, 0);
    assert_eq!(stdout(&out), "", "empty stdin");
    assert_eq!(stderr(&out), "read 0 bytes\n", "empty stdin");
}

fn trap(lang: Lang) {
    let tmp = TempDir::new(&format!("{}-trap", lang.dir));
    let out = Run::new(&tmp, &guest(lang, "trap")).output();
    let (err, out_text) = (stderr(&out), stdout(&out));
    assert!(!out_text.contains("LEAK"), "the guest went on: {out_text}");
    // What the guest printed before it stopped, and what must be on stderr.
    let (printed, status, expected_stderr): (&str, i32, &[&str]) = match lang {
        // panic = "abort": the message, then an `unreachable` trap inside the panic machinery,
        // with deliberately_trap on the stack.
        RUST => (
            "about to trap\n",
            TRAP_STATUS,
            &["deliberate panic: boom", "unreachable", "deliberately_trap"],
        ),
        C => (
            "about to trap\n",
            TRAP_STATUS,
            &["trapping now", "unreachable", "deliberately_trap"],
        ),
        // The optimizer inlines the trapping function, so no name to look for.
        AS => (
            "about to trap\n",
            TRAP_STATUS,
            &["trapping now", "unreachable"],
        ),
        // Go's runtime reports the panic itself and exits with status 2: no trap.
        GO => (
            "about to panic\n",
            2,
            &[
                "panic: assignment to entry in nil map",
                "main.deliberatelyPanic",
            ],
        ),
        _ => unreachable!(),
    };
    assert_status(&out, status);
    assert_eq!(out_text, printed);
    for text in expected_stderr {
        assert!(err.contains(text), "stderr lacks {text:?}:\n{err}");
    }
}

/// What every `badptr` guest prints: EFAULT (21) for each bad pointer.
const BAD_POINTERS_OUTPUT: &str = "\
fd_write bad iovs: 21
fd_write iov past memory: 21
fd_write bad nwritten: 21
fd_write huge iovs_len: 21
fd_read iov past memory: 21
path_open bad path: 21
random_get huge len: 21
args_get bad argv: 21
clock_time_get bad time: 21
survived
";

fn bad_pointers(lang: Lang) {
    let tmp = TempDir::new(&format!("{}-badptr", lang.dir));
    let dir = tmp.join("dir");
    std::fs::create_dir(&dir).unwrap();
    // Input the host would have to copy somewhere if it did not check the iovec first.
    let input = tmp.join("input.txt");
    std::fs::write(&input, "some input that must not be read\n").unwrap();
    let out = Run::new(&tmp, &guest(lang, "badptr"))
        .dir(&dir, SANDBOX)
        .option("--stdin", &input)
        .output();
    assert_success(&out, BAD_POINTERS_OUTPUT);
}

/// The number of 64 KiB pages the module's own memory starts with (its memory section).
fn declared_memory_pages(wasm: &[u8]) -> u64 {
    fn leb(bytes: &[u8], at: &mut usize) -> u64 {
        let (mut value, mut shift) = (0u64, 0);
        loop {
            let byte = bytes[*at];
            *at += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return value;
            }
            shift += 7;
        }
    }
    let mut at = 8;
    while at < wasm.len() {
        let id = wasm[at];
        at += 1;
        let size = leb(wasm, &mut at) as usize;
        if id == 5 {
            let mut p = at;
            let count = leb(wasm, &mut p);
            assert!(count >= 1, "an empty memory section");
            let _flags = leb(wasm, &mut p);
            return leb(wasm, &mut p);
        }
        at += size;
    }
    panic!("the module defines no memory");
}

fn debug_report(lang: Lang) {
    let tmp = TempDir::new(&format!("{}-debug", lang.dir));
    let wasm = guest(lang, "hello");
    let bytes = std::fs::read(&wasm).unwrap();
    let out = Run::new(&tmp, &wasm).debug().output();
    assert_status(&out, 0);
    let text = stdout(&out);
    let report: serde_json::Value = serde_json::from_str(text.trim())
        .unwrap_or_else(|e| panic!("--debug printed no JSON object ({e}):\n{text}"));
    let field = |name: &str| {
        report
            .get(name)
            .unwrap_or_else(|| panic!("no {name:?} in the report: {report}"))
    };
    assert_eq!(field("stdout"), &format!("Hello {}!\n", lang.name));
    assert_eq!(field("stderr"), "");
    assert_eq!(field("trigger"), "Std");
    assert_eq!(field("responseBody"), "");
    assert_eq!(field("size").as_u64(), Some(bytes.len() as u64), "size");
    let dmesg = field("dmesg").as_str().expect("dmesg is a string");
    assert!(dmesg.starts_with("Start time: "), "dmesg: {dmesg}");
    for text in [
        "WASI_FD_WRITE(vmctx=",
        "\tnwritten: ",
        "HOST_HALT(",
        "Halt reason: ",
        "Run time: ",
        "Total time: ",
    ] {
        assert!(dmesg.contains(text), "dmesg lacks {text:?}:\n{dmesg}");
    }
    let pages = field("currentPages")
        .as_u64()
        .expect("currentPages is a non-negative integer");
    // In 4 KiB pages, the memory the module declares. Go's runtime grows its memory at start,
    // so it may touch more than it declared, but not twice as much.
    let declared = declared_memory_pages(&bytes) * 16;
    let bound = if lang == GO { 2 * declared } else { declared };
    assert!(
        pages > 0 && pages < bound,
        "currentPages {pages}, declared memory {declared} 4 KiB pages"
    );
}

/// Generates `rust_NAME`, `c_NAME`, `go_NAME` and `as_NAME` calling `check(LANG)`.
macro_rules! per_language {
    ($($check:ident: $rust:ident, $c:ident, $go:ident, $as:ident;)*) => {$(
        #[test]
        fn $rust() {
            $check(RUST);
        }
        #[test]
        fn $c() {
            $check(C);
        }
        #[test]
        fn $go() {
            $check(GO);
        }
        #[test]
        fn $as() {
            $check(AS);
        }
    )*};
}

per_language! {
    hello: rust_hello, c_hello, go_hello, as_hello;
    args_env: rust_args_env, c_args_env, go_args_env, as_args_env;
    exit_codes: rust_exit_codes, c_exit_codes, go_exit_codes, as_exit_codes;
    files: rust_files, c_files, go_files, as_files;
    escape: rust_escape, c_escape, go_escape, as_escape;
    clocks: rust_clocks, c_clocks, go_clocks, as_clocks;
    sleep: rust_sleep, c_sleep, go_sleep, as_sleep;
    stdin_to_stdout: rust_stdin_to_stdout, c_stdin_to_stdout, go_stdin_to_stdout,
        as_stdin_to_stdout;
    trap: rust_trap, c_trap, go_trap, as_trap;
    bad_pointers: rust_bad_pointers, c_bad_pointers, go_bad_pointers, as_bad_pointers;
    debug_report: rust_debug_report, c_debug_report, go_debug_report, as_debug_report;
}

// ---- Single tests -------------------------------------------------------------------------

/// `--dir HOST` alone preopens HOST at the same path in the guest.
#[test]
fn rust_files_dir_at_its_host_path() {
    files_in(RUST, None);
}

/// The report names every hostcall the guest made.
#[test]
fn debug_report_traces_hostcalls() {
    let tmp = TempDir::new("debug-trace");
    let dir = tmp.join("dir");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("host.txt"), "from the host\n").unwrap();
    let out = Run::new(&tmp, &guest(RUST, "files"))
        .dir(&dir, SANDBOX)
        .arg(SANDBOX)
        .debug()
        .output();
    assert_status(&out, 0);
    let report: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(report["stdout"], FILES_OUTPUT);
    let dmesg = report["dmesg"].as_str().expect("dmesg is a string");
    for call in [
        "WASI_ARGS_GET(",
        "WASI_PATH_OPEN(",
        "WASI_FD_READ(",
        "WASI_FD_WRITE(",
        "WASI_FD_SEEK(",
        "WASI_PATH_RENAME(",
        "WASI_FD_READDIR(",
        "WASI_PATH_REMOVE_DIRECTORY(",
    ] {
        assert!(dmesg.contains(call), "dmesg lacks {call:?}:\n{dmesg}");
    }
}

/// With `--debug` the exit status is still the guest's: its proc_exit code, or 134 for a trap.
#[test]
fn debug_report_keeps_the_exit_status() {
    let tmp = TempDir::new("debug-status");
    let out = Run::new(&tmp, &guest(RUST, "exit"))
        .debug()
        .arg("42")
        .output();
    assert_status(&out, 42);
    let report: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(report["stdout"], "exiting with 42\n");

    let out = Run::new(&tmp, &guest(RUST, "trap")).debug().output();
    assert_status(&out, TRAP_STATUS);
    let report: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(report["stdout"], "about to trap\n");
    let guest_stderr = report["stderr"].as_str().expect("stderr is a string");
    assert!(
        guest_stderr.contains("deliberate panic: boom"),
        "stderr: {guest_stderr}"
    );
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return files;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(files_under(&path));
        } else {
            files.push(path);
        }
    }
    files
}

/// Running the same module twice compiles it once: one artifact in the cache, not rewritten by
/// the second run; another module adds a second one.
#[test]
fn compile_cache_is_reused() {
    let tmp = TempDir::new("cache");
    let wasm = guest(RUST, "hello");
    let cache = tmp.join("cache");
    assert_success(
        &Run::new(&tmp, &wasm).cache(&cache).output(),
        "Hello Rust!\n",
    );
    let artifacts = files_under(&cache);
    assert_eq!(artifacts.len(), 1, "after one run: {artifacts:?}");
    let modified = std::fs::metadata(&artifacts[0])
        .unwrap()
        .modified()
        .unwrap();

    assert_success(
        &Run::new(&tmp, &wasm).cache(&cache).output(),
        "Hello Rust!\n",
    );
    assert_eq!(files_under(&cache), artifacts, "after the second run");
    assert_eq!(
        std::fs::metadata(&artifacts[0])
            .unwrap()
            .modified()
            .unwrap(),
        modified,
        "the second run rewrote the artifact"
    );

    assert_success(
        &Run::new(&tmp, &guest(C, "hello")).cache(&cache).output(),
        "Hello C!\n",
    );
    assert_eq!(files_under(&cache).len(), 2, "after another module");
}

/// An artifact from `fnvm compile` runs like the module it came from.
#[test]
fn run_an_artifact() {
    let tmp = TempDir::new("artifact");
    let artifact = tmp.join("hello.fnvm");
    let mut cmd = Command::new(FNVM);
    cmd.arg("compile")
        .arg(guest(RUST, "hello"))
        .arg("-o")
        .arg(&artifact);
    let out = run_with_timeout(cmd, None);
    assert_status(&out, 0);
    assert_success(&Run::new(&tmp, &artifact).output(), "Hello Rust!\n");
}

/// fnvm's own errors exit with status 1 and say what went wrong.
#[test]
fn run_reports_host_errors() {
    let tmp = TempDir::new("host-errors");
    let missing = tmp.join("does-not-exist.wasm");
    let out = Run::new(&tmp, &missing).output();
    assert_status(&out, 1);
    assert!(
        stderr(&out).contains("does-not-exist.wasm"),
        "stderr: {}",
        stderr(&out)
    );

    let invalid = tmp.join("invalid.wasm");
    std::fs::write(&invalid, b"\0asm\x01\0\0\0\xff\xff\xff\xff").unwrap();
    let out = Run::new(&tmp, &invalid).output();
    assert_status(&out, 1);
    assert!(!stderr(&out).is_empty(), "no message for an invalid module");
    assert_eq!(stdout(&out), "");

    let unknown_import = tmp.join("unknown-import.wasm");
    let wasm = wat::parse_str(
        r#"(module
             (import "wasi_snapshot_preview1" "no_such_function" (func))
             (memory (export "memory") 1)
             (func (export "_start") call 0))"#,
    )
    .unwrap();
    std::fs::write(&unknown_import, wasm).unwrap();
    let out = Run::new(&tmp, &unknown_import).output();
    assert_status(&out, 1);
    assert!(
        stderr(&out).contains("no_such_function"),
        "stderr: {}",
        stderr(&out)
    );
}
