//! Invocations through `fnvm_dataplane::Runner`, the path both `fnvm run` and the worker take:
//! isolation between invocations that share one pool slot (memory, globals, file descriptors,
//! preopens, environment), the debug report built in-process, a deadline ending a guest blocked
//! in a hostcall or on a socket, and traces that never show a host address.

use fnvm_dataplane::{Invocation, Runner, RunnerConfig, Status, Trigger};
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
                    env: fnvm_hostcalls::CStrings::from_vars([("A", "1"), ("B", "2")]).unwrap(),
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
                    env: fnvm_hostcalls::CStrings::from_vars([("ONLY", "me")]).unwrap(),
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
    while runner.backend().stats().in_use != 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    assert_eq!(runner.backend().stats().in_use, 0);
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
        fnvm_dataplane::CacheOutcome::Hit
    );
    // A damaged entry (truncated, or one flipped byte) is recompiled, never run.
    let cache = fnvm_dataplane::ArtifactCache::new(dir.join("cache"));
    let entry = cache.path_for(&wasm);
    let good = std::fs::read(&entry).unwrap();
    let mut flipped = good.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 0x40;
    for damaged in [good[..good.len() / 2].to_vec(), flipped, Vec::new()] {
        std::fs::write(&entry, &damaged).unwrap();
        let f = runner.load(&wasm).unwrap();
        assert_eq!(f.origin, fnvm_dataplane::CacheOutcome::Compiled);
        assert_eq!(std::fs::read(&entry).unwrap(), good);
        let out = runner.invoke(&f, Invocation::default()).unwrap();
        assert_eq!(out.stdout, b"Hello World\n");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A guest blocked in a hostcall (`poll_oneoff` on a 60 s clock) is ended by the invocation's
/// deadline with the deadline trap, not when the clock fires, and its slot (the only one) serves
/// the next invocation.
#[test]
fn a_deadline_ends_a_guest_blocked_in_poll_oneoff_and_frees_its_slot() {
    let dir = temp_dir("blocked");
    let runner = runner(&dir.join("cache"));
    let wasm = wat::parse_str(
        r#"(module
          (import "wasi_snapshot_preview1" "poll_oneoff"
            (func $poll (param i32 i32 i32 i32) (result i32)))
          (memory (export "memory") 1)
          (func (export "_start")
            ;; One relative monotonic clock subscription of 60 s at 0; events at 64.
            (i32.store8 (i32.const 8) (i32.const 0))
            (i32.store (i32.const 16) (i32.const 1))
            (i64.store (i32.const 24) (i64.const 60000000000))
            (drop (call $poll (i32.const 0) (i32.const 64) (i32.const 1) (i32.const 128))))
          (func (export "quick")))"#,
    )
    .unwrap();
    let f = runner.load(&wasm).unwrap();
    let timeout = std::time::Duration::from_millis(200);
    let limits = fnvm_runtime::InstanceLimits {
        timeout: Some(timeout),
        ..fnvm_runtime::InstanceLimits::default()
    };
    for debug in [false, true] {
        let t = std::time::Instant::now();
        let out = runner
            .invoke(
                &f,
                Invocation {
                    limits: limits.clone(),
                    debug,
                    ..Invocation::default()
                },
            )
            .unwrap();
        let took = t.elapsed();
        match &out.status {
            Status::Trapped(trap) => assert!(trap.is_deadline(), "{trap}"),
            other => panic!("expected the deadline trap, got {other:?}"),
        }
        assert!(
            took >= timeout - std::time::Duration::from_millis(20),
            "{took:?}"
        );
        assert!(took < std::time::Duration::from_secs(20), "{took:?}");
        // It waited, and used little CPU doing so: a worker must tell this from computing.
        assert!(out.run_waited);
        let cpu = out.run_cpu_time.expect("measured by default");
        assert!(cpu < timeout / 2, "{cpu:?} of CPU");
        if debug {
            let d = out.report.unwrap().dmesg;
            assert!(d.contains(")\n\tDEADLINE EXCEEDED\n"), "{d}");
            assert!(d.contains("WASI_POLL_ONEOFF(vmctx="), "{d}");
            assert!(
                d.contains("\nHalt reason: trap: deadline exceeded\n"),
                "{d}"
            );
        }
        // The pool's only slot is free again for the next invocation.
        let next = runner
            .invoke(
                &f,
                Invocation {
                    entry: "quick".into(),
                    limits: limits.clone(),
                    ..Invocation::default()
                },
            )
            .unwrap();
        assert_eq!(next.status, Status::Exited(0));
        assert!(!next.run_waited);
    }
    assert_eq!(runner.backend().stats().capacity, 1);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The address ranges this process has mapped, from `/proc/self/maps`.
fn mappings() -> Vec<(u64, u64)> {
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .filter_map(|l| {
            let (a, b) = l.split_whitespace().next()?.split_once('-')?;
            Some((
                u64::from_str_radix(a, 16).ok()?,
                u64::from_str_radix(b, 16).ok()?,
            ))
        })
        .collect()
}

/// No number in a debug report's trace is an address of this process (the slot's vmctx, stack
/// and memory, the code, the heap, anything mapped): the trace goes to the function's owner.
#[test]
fn no_dmesg_line_shows_a_host_address() {
    let dir = temp_dir("addresses");
    let runner = runner(&dir.join("cache"));
    let wasm = wat::parse_str(
        r#"(module
          (import "wasi_snapshot_preview1" "fd_write"
            (func $fd_write (param i32 i32 i32 i32) (result i32)))
          (import "wasi_snapshot_preview1" "clock_time_get"
            (func $clock (param i32 i64 i32) (result i32)))
          (import "wasi_snapshot_preview1" "args_sizes_get"
            (func $args (param i32 i32) (result i32)))
          (import "wasi_snapshot_preview1" "fd_close" (func $close (param i32) (result i32)))
          (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
          (memory (export "memory") 1)
          (data (i32.const 8) "Hello World\n")
          (func $work
            (i32.store (i32.const 0) (i32.const 8))
            (i32.store (i32.const 4) (i32.const 12))
            (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 32)))
            (drop (call $clock (i32.const 1) (i64.const 0) (i32.const 40)))
            (drop (call $args (i32.const 48) (i32.const 52)))
            (drop (call $close (i32.const 99))))
          (func (export "_start") (call $work) (call $exit (i32.const 3)))
          (func (export "trap") (call $work) (unreachable))
          (func (export "ret") (call $work)))"#,
    )
    .unwrap();
    let f = runner.load(&wasm).unwrap();
    for entry in ["_start", "trap", "ret"] {
        let out = runner
            .invoke(
                &f,
                Invocation {
                    entry: entry.into(),
                    debug: true,
                    ..Invocation::default()
                },
            )
            .unwrap();
        let d = out.report.unwrap().dmesg;
        assert!(d.contains("WASI_FD_WRITE(vmctx="), "{d}");
        assert!(d.contains("HOST_HALT(vmctx=") || entry == "trap", "{d}");
        // Every run of hex digits, read as hex and as decimal.
        let maps = mappings();
        let tokens = d
            .split(|c: char| !c.is_ascii_hexdigit())
            .filter(|t| !t.is_empty());
        let mut numbers = 0;
        for t in tokens {
            for radix in [16, 10] {
                let Ok(n) = u64::from_str_radix(t, radix) else {
                    continue;
                };
                numbers += 1;
                if let Some((a, b)) = maps.iter().find(|(a, b)| (*a..*b).contains(&n)) {
                    panic!("{entry}: dmesg shows {t}, inside the mapping {a:x}-{b:x}:\n{d}");
                }
            }
        }
        assert!(numbers > 10, "{d}");
        // The id is the same on every line of one invocation.
        let ids: std::collections::HashSet<&str> = d
            .lines()
            .filter_map(|l| l.split("(vmctx=").nth(1)?.split([',', ')']).next())
            .collect();
        assert_eq!(ids.len(), 1, "{d}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A guest blocked reading a socket whose peer never sends ends at the invocation's deadline
/// with the deadline trap, and the socket is closed when the invocation ends (the peer sees the
/// end of the stream), though the guest never closed it.
#[test]
fn a_guest_blocked_on_a_socket_ends_at_the_deadline() {
    let dir = temp_dir("socket-deadline");
    let runner = runner(&dir.join("cache"));
    let wasm = wat::parse_str(
        r#"(module
          (import "fnvm" "host_tcp_connect" (func $connect (param i32 i32 i32 i32) (result i32)))
          (import "wasi_snapshot_preview1" "fd_read" (func $read (param i32 i32 i32 i32) (result i32)))
          (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
          (memory (export "memory") 1)
          (func (export "_start")
            ;; The address from stdin at 0, the fd at 64, an iovec at 80, nread at 96.
            (i32.store (i32.const 80) (i32.const 0))
            (i32.store (i32.const 84) (i32.const 64))
            (if (call $read (i32.const 0) (i32.const 80) (i32.const 1) (i32.const 96))
              (then (call $exit (i32.const 2))))
            (if (call $connect (i32.const 0) (i32.load (i32.const 96)) (i32.const 0) (i32.const 64))
              (then (call $exit (i32.const 3))))
            (i32.store (i32.const 80) (i32.const 256))
            (i32.store (i32.const 84) (i32.const 16))
            (drop (call $read (i32.load (i32.const 64)) (i32.const 80) (i32.const 1) (i32.const 96)))
            (call $exit (i32.const 4))))"#,
    )
    .unwrap();
    let f = runner.load(&wasm).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let net = fnvm_hostcalls::NetConfig {
        policy: std::sync::Arc::new(
            fnvm_hostcalls::EgressPolicy::new(&["127.0.0.0/8"], &[] as &[&str], &[] as &[&str])
                .unwrap(),
        ),
        limits: fnvm_hostcalls::NetLimits::default(),
        tls: fnvm_hostcalls::NetConfig::tls_config(b"").unwrap(),
    };
    let timeout = std::time::Duration::from_millis(300);
    let t = std::time::Instant::now();
    let out = runner
        .invoke(
            &f,
            Invocation {
                stdin: Stdin::Bytes(address.into_bytes()),
                net: Some(net),
                limits: fnvm_runtime::InstanceLimits {
                    timeout: Some(timeout),
                    ..fnvm_runtime::InstanceLimits::default()
                },
                ..Invocation::default()
            },
        )
        .unwrap();
    let took = t.elapsed();
    match &out.status {
        Status::Trapped(trap) => assert!(trap.is_deadline(), "{trap}"),
        other => panic!("expected the deadline trap, got {other:?}"),
    }
    assert!(
        took >= timeout - std::time::Duration::from_millis(20),
        "{took:?}"
    );
    assert!(took < std::time::Duration::from_secs(10), "{took:?}");
    assert!(out.run_waited);
    // The connection the guest left open is closed: the peer reads the end of the stream.
    let (mut peer, _) = listener.accept().unwrap();
    peer.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    let mut buf = [0u8; 8];
    assert_eq!(std::io::Read::read(&mut peer, &mut buf).unwrap(), 0);
    std::fs::remove_dir_all(&dir).unwrap();
}
