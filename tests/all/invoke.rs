//! Invocations through `fnvm_control::Runner`, the path both `fnvm run` and the worker take:
//! isolation between invocations that share one pool slot (memory, globals, file descriptors,
//! preopens, environment), and the debug report built in-process.

use fnvm_control::{Invocation, Runner, RunnerConfig, Status, Trigger};
use fnvm_hostcalls::Stdin;
use std::path::PathBuf;

/// `leak` dirties everything a later invocation could observe: opens a file in the preopen and
/// keeps the fd, writes a secret into memory, sets a global. `probe` exits with a bitmask of
/// what it can still see: bit 0 the leaked fd (4) is open, bit 1 the preopen (3) exists, bit 2
/// the secret is in memory, bit 4 the global is set, bit 5 environ count is not 1.
const GUEST: &str = r#"(module
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_fdstat_get"
    (func $fdstat (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_sizes_get"
    (func $environ_sizes (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 2)
  (data (i32.const 64) "f.txt")
  (global $g (mut i32) (i32.const 0))
  (func (export "leak")
    ;; path_open(3, 0, "f.txt", O_CREAT, all rights, all rights, 0, &fd@0)
    (if (call $path_open (i32.const 3) (i32.const 0) (i32.const 64) (i32.const 5)
          (i32.const 1) (i64.const 0x1fffffff) (i64.const 0x1fffffff) (i32.const 0) (i32.const 0))
      (then (call $exit (i32.const 100))))
    (if (i32.ne (i32.load (i32.const 0)) (i32.const 4)) (then (call $exit (i32.const 101))))
    (i64.store (i32.const 1024) (i64.const 0x5445524345530000))
    (global.set $g (i32.const 1)))
  (func (export "probe") (local $bad i32)
    (if (i32.eqz (call $fdstat (i32.const 4) (i32.const 128)))
      (then (local.set $bad (i32.or (local.get $bad) (i32.const 1)))))
    (if (i32.eqz (call $fdstat (i32.const 3) (i32.const 128)))
      (then (local.set $bad (i32.or (local.get $bad) (i32.const 2)))))
    (if (i64.ne (i64.load (i32.const 1024)) (i64.const 0))
      (then (local.set $bad (i32.or (local.get $bad) (i32.const 4)))))
    (if (global.get $g) (then (local.set $bad (i32.or (local.get $bad) (i32.const 16)))))
    (drop (call $environ_sizes (i32.const 256) (i32.const 260)))
    (if (i32.ne (i32.load (i32.const 256)) (i32.const 1))
      (then (local.set $bad (i32.or (local.get $bad) (i32.const 32)))))
    (call $exit (local.get $bad))))"#;

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("fnvm-invoke-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn runner(cache: &std::path::Path) -> Runner {
    Runner::new(RunnerConfig {
        cache_dir: cache.to_path_buf(),
        pool: fnvm_runtime::PoolConfig {
            slots: 1,
            ..fnvm_runtime::PoolConfig::default()
        },
        ..RunnerConfig::default()
    })
    .unwrap()
}

#[test]
fn invocations_sharing_a_slot_are_isolated() {
    let dir = temp_dir("isolation");
    let runner = runner(&dir.join("cache"));
    let wasm = wat::parse_str(GUEST).unwrap();
    let f = runner.load(&wasm).unwrap();
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    for round in 0..3 {
        let leak = runner
            .invoke(
                &f,
                Invocation {
                    entry: "leak".into(),
                    preopens: vec![(data.clone(), "/data".into())],
                    env: vec![("A".into(), "1".into()), ("B".into(), "2".into())],
                    ..Invocation::default()
                },
            )
            .unwrap();
        assert_eq!(leak.status, Status::Exited(0), "round {round}");
        assert!(data.join("f.txt").exists());
        let probe = runner
            .invoke(
                &f,
                Invocation {
                    entry: "probe".into(),
                    env: vec![("ONLY".into(), "me".into())],
                    ..Invocation::default()
                },
            )
            .unwrap();
        assert_eq!(
            probe.status,
            Status::Exited(0),
            "round {round}: bitmask of what leaked from the previous invocation"
        );
    }
    // The slot comes back once the reset thread has run.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while runner.pool().stats().in_use != 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    assert_eq!(runner.pool().stats().in_use, 0);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_debug_report_is_built_in_process() {
    let dir = temp_dir("report");
    let runner = runner(&dir.join("cache"));
    let wasm = wat::parse_str(
        r#"(module
          (import "wasi_snapshot_preview1" "fd_write"
            (func $fd_write (param i32 i32 i32 i32) (result i32)))
          (memory (export "memory") 16)
          (data (i32.const 8) "Hello World\n")
          (func (export "_start")
            (i32.store (i32.const 0) (i32.const 8))
            (i32.store (i32.const 4) (i32.const 12))
            (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 32)))))"#,
    )
    .unwrap();
    let f = runner.load(&wasm).unwrap();
    let out = runner
        .invoke(
            &f,
            Invocation {
                debug: true,
                stdin: Stdin::Null,
                ..Invocation::default()
            },
        )
        .unwrap();
    assert_eq!(out.status, Status::Exited(0));
    let r = out.report.expect("a report when debugging");
    assert_eq!(r.stdout, "Hello World\n");
    assert_eq!(r.stderr, "");
    assert_eq!(r.trigger, Trigger::Std);
    assert_eq!(r.response_body, "");
    assert_eq!(r.size, wasm.len() as u64);
    // The guest touched its data page and the iovec/nwritten page (one and the same here):
    // at least one 4 KiB page, far fewer than the 256 of its 16 wasm pages.
    assert!(
        r.current_pages >= 1 && r.current_pages < 32,
        "{}",
        r.current_pages
    );
    let d = &r.dmesg;
    assert!(d.starts_with("Start time: "), "{d}");
    let call = d
        .lines()
        .find(|l| l.starts_with("WASI_FD_WRITE(vmctx="))
        .unwrap_or_else(|| panic!("no fd_write entry in {d}"));
    // Arguments in hex as the guest passed them: fd 1, iovs 0, 1 iovec, nwritten at 0x20.
    assert!(call.ends_with(", 01, 00, 01, 20)"), "{call}");
    assert!(d.contains("\tnwritten: 12\n"), "{d}");
    assert!(d.contains("HOST_HALT(vmctx="), "{d}");
    assert!(d.contains("\tGRACEFULLY EXIT\n"), "{d}");
    assert!(d.contains("\nHalt reason: host_halt\n"), "{d}");
    assert!(d.contains("\nRun time: ") && d.ends_with('\n') && d.contains("\nTotal time: "));
    // Second load of the same bytes comes from the cache (the artifact file, mapped).
    assert_eq!(
        runner.load(&wasm).unwrap().origin,
        fnvm_control::CacheOutcome::Hit
    );
    // A damaged entry (truncated, or one flipped byte) is recompiled, never run.
    let cache = fnvm_control::ArtifactCache::new(dir.join("cache"));
    let entry = cache.path_for(&wasm);
    let good = std::fs::read(&entry).unwrap();
    let mut flipped = good.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 0x40;
    for damaged in [good[..good.len() / 2].to_vec(), flipped, Vec::new()] {
        std::fs::write(&entry, &damaged).unwrap();
        let f = runner.load(&wasm).unwrap();
        assert_eq!(f.origin, fnvm_control::CacheOutcome::Compiled);
        assert_eq!(std::fs::read(&entry).unwrap(), good);
        let out = runner.invoke(&f, Invocation::default()).unwrap();
        assert_eq!(out.stdout, b"Hello World\n");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
