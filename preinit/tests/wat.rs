//! Pre-initialisation of small hand-written modules: memory and globals captured, the init
//! export and the start function gone, passive segments kept, and the refusals (a trap, a
//! timeout, limits, unsupported instructions).

mod common;

use common::{limits, runner, TempDir};
use fnvm_hostcalls::WasiCtx;
use fnvm_preinit::{preinitialize, Limits, PreinitError};
use fnvm_runtime::{InstanceLimits, Val};
use std::time::Duration;

const MODULE: &str = r#"
(module
  (memory (export "memory") 1 10)
  (global $g (mut i32) (i32.const 1))
  (global $h (mut i64) (i64.const 0))
  (global $f (mut f64) (f64.const 0))
  (global $c i32 (i32.const 42))
  (data (i32.const 16) "hello")
  (data $p "passive!")
  ;; The start function runs once, before init: after the snapshot it must not run again.
  (func $start (global.set $h (i64.add (global.get $h) (i64.const 100))))
  (start $start)
  (func (export "init")
    (global.set $g (i32.const 7))
    (global.set $f (f64.const 2.5))
    (drop (memory.grow (i32.const 2)))
    (i32.store (i32.const 65536) (i32.const 0x01020304))
    (i32.store (i32.const 196604) (i32.const -1))
    ;; Overwrite part of the active segment.
    (i32.store8 (i32.const 16) (i32.const 72)))
  (func (export "_start"))
  (func (export "get_g") (result i32) global.get $g)
  (func (export "get_h") (result i64) global.get $h)
  (func (export "get_f") (result f64) global.get $f)
  (func (export "get_c") (result i32) global.get $c)
  (func (export "load") (param i32) (result i32) (i32.load (local.get 0)))
  (func (export "init_passive") (param i32) (memory.init $p (local.get 0) (i32.const 0) (i32.const 8)))
)"#;

fn exports(wasm: &[u8]) -> Vec<String> {
    let mut names = Vec::new();
    for p in wasmparser::Parser::new(0).parse_all(wasm) {
        if let Ok(wasmparser::Payload::ExportSection(r)) = p {
            names.extend(r.into_iter().map(|e| e.unwrap().name.to_string()));
        }
    }
    names
}

fn has_start_section(wasm: &[u8]) -> bool {
    wasmparser::Parser::new(0)
        .parse_all(wasm)
        .any(|p| matches!(p, Ok(wasmparser::Payload::StartSection { .. })))
}

#[test]
fn memory_and_globals_are_captured() {
    let dir = TempDir::new("capture");
    let wasm = wat::parse_str(MODULE).unwrap();
    let out = preinitialize(&wasm, "init", Vec::new(), &limits(&dir)).unwrap();
    assert!(!exports(&out.wasm).contains(&"init".to_string()));
    assert!(exports(&out.wasm).contains(&"get_g".to_string()));
    assert!(!exports(&out.wasm)
        .iter()
        .any(|n| n.starts_with(fnvm_preinit::GETTER_PREFIX)));
    assert!(!has_start_section(&out.wasm));

    let runner = runner(&dir);
    let prepared = runner.load(&out.wasm).unwrap();
    let ctx = || WasiCtx::builder().build().unwrap();
    let mut inst = runner
        .backend()
        .instantiate(prepared.prepared(), &InstanceLimits::default(), ctx())
        .unwrap();
    assert_eq!(inst.call("get_g", &[]).unwrap(), vec![Val::I32(7)]);
    // 100, not 200: the start function ran during pre-initialisation only.
    assert_eq!(inst.call("get_h", &[]).unwrap(), vec![Val::I64(100)]);
    assert_eq!(
        inst.call("get_f", &[]).unwrap(),
        vec![Val::F64(2.5f64.to_bits())]
    );
    assert_eq!(inst.call("get_c", &[]).unwrap(), vec![Val::I32(42)]);
    assert_eq!(inst.memory_pages(), 3);
    let load = |inst: &mut fnvm_runtime::PooledInstance<WasiCtx>, at: i32| {
        inst.call("load", &[Val::I32(at)]).unwrap()
    };
    assert_eq!(load(&mut inst, 65536), vec![Val::I32(0x01020304)]);
    assert_eq!(load(&mut inst, 196604), vec![Val::I32(-1)]);
    assert_eq!(
        load(&mut inst, 16),
        vec![Val::I32(i32::from_le_bytes(*b"Hell"))]
    );
    // The passive segment is still there, at its index.
    inst.call("init_passive", &[Val::I32(1000)]).unwrap();
    assert_eq!(
        load(&mut inst, 1000),
        vec![Val::I32(i32::from_le_bytes(*b"pass"))]
    );
}

#[test]
fn a_module_without_data_or_mutable_globals() {
    let dir = TempDir::new("plain");
    let wasm = wat::parse_str(
        r#"(module (memory 1) (func (export "init") (i32.store (i32.const 8) (i32.const 5)))
             (func (export "get") (result i32) (i32.load (i32.const 8))))"#,
    )
    .unwrap();
    let out = preinitialize(&wasm, "init", Vec::new(), &limits(&dir)).unwrap();
    let runner = runner(&dir);
    let prepared = runner.load(&out.wasm).unwrap();
    let mut inst = runner
        .backend()
        .instantiate(
            prepared.prepared(),
            &InstanceLimits::default(),
            WasiCtx::builder().build().unwrap(),
        )
        .unwrap();
    assert_eq!(inst.call("get", &[]).unwrap(), vec![Val::I32(5)]);
}

#[test]
fn init_reads_stdin_and_its_output_is_returned() {
    let dir = TempDir::new("stdin");
    // Reads stdin into memory at 100 with fd_read, echoes it on stdout with fd_write.
    let wasm = wat::parse_str(
        r#"(module
          (import "wasi_snapshot_preview1" "fd_read" (func $read (param i32 i32 i32 i32) (result i32)))
          (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
          (memory (export "memory") 1)
          (global $n (mut i32) (i32.const 0))
          (func (export "init")
            (i32.store (i32.const 0) (i32.const 100))
            (i32.store (i32.const 4) (i32.const 64))
            (drop (call $read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)))
            (global.set $n (i32.load (i32.const 8)))
            (i32.store (i32.const 4) (global.get $n))
            (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 12))))
          (func (export "n") (result i32) global.get $n)
          (func (export "_start")))"#,
    )
    .unwrap();
    let out = preinitialize(&wasm, "init", b"abc".to_vec(), &limits(&dir)).unwrap();
    assert_eq!(out.stdout, b"abc");
    let runner = runner(&dir);
    let prepared = runner.load(&out.wasm).unwrap();
    let mut inst = runner
        .backend()
        .instantiate(
            prepared.prepared(),
            &InstanceLimits::default(),
            WasiCtx::builder().build().unwrap(),
        )
        .unwrap();
    assert_eq!(inst.call("n", &[]).unwrap(), vec![Val::I32(3)]);
}

#[test]
fn a_trap_during_init_is_a_clear_error() {
    let dir = TempDir::new("trap");
    let wasm = wat::parse_str(r#"(module (memory 1) (func (export "init") unreachable))"#).unwrap();
    let err = preinitialize(&wasm, "init", Vec::new(), &limits(&dir)).unwrap_err();
    assert!(matches!(err, PreinitError::Failed { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("trap"), "{msg}");
    assert!(msg.contains("unreachable"), "{msg}");
}

#[test]
fn an_exit_during_init_is_an_error_with_stderr() {
    let dir = TempDir::new("exit");
    let wasm = wat::parse_str(
        r#"(module
          (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
          (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
          (memory 1)
          (data (i32.const 100) "bad script")
          (func (export "init")
            (i32.store (i32.const 0) (i32.const 100))
            (i32.store (i32.const 4) (i32.const 10))
            (drop (call $write (i32.const 2) (i32.const 0) (i32.const 1) (i32.const 8)))
            (call $exit (i32.const 1))))"#,
    )
    .unwrap();
    let err = preinitialize(&wasm, "init", Vec::new(), &limits(&dir)).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("exit status 1") && msg.contains("bad script"),
        "{msg}"
    );
}

#[test]
fn a_runaway_init_times_out() {
    let dir = TempDir::new("timeout");
    let wasm = wat::parse_str(r#"(module (func (export "init") (loop (br 0))))"#).unwrap();
    let l = Limits {
        timeout: Duration::from_millis(200),
        ..limits(&dir)
    };
    let err = preinitialize(&wasm, "init", Vec::new(), &l).unwrap_err();
    assert!(matches!(err, PreinitError::Timeout(_)), "{err:?}");
}

#[test]
fn modules_over_the_limits_are_refused() {
    let dir = TempDir::new("limits");
    let l = Limits {
        max_memory_bytes: 1 << 20,
        ..limits(&dir)
    };
    // 32 pages = 2 MiB initially.
    let big = wat::parse_str(r#"(module (memory 32) (func (export "init")))"#).unwrap();
    let err = preinitialize(&big, "init", Vec::new(), &l).unwrap_err();
    assert!(matches!(err, PreinitError::TooLarge { .. }), "{err:?}");
    // Growing past the limit during init: memory.grow fails (-1), the init traps on it.
    let grows = wat::parse_str(
        r#"(module (memory 1) (func (export "init")
             (if (i32.eq (memory.grow (i32.const 64)) (i32.const -1)) (then unreachable))))"#,
    )
    .unwrap();
    let err = preinitialize(&grows, "init", Vec::new(), &l).unwrap_err();
    assert!(matches!(err, PreinitError::Failed { .. }), "{err:?}");
    let small = Limits {
        max_module_bytes: 8,
        ..limits(&dir)
    };
    let err = preinitialize(&big, "init", Vec::new(), &small).unwrap_err();
    assert!(matches!(err, PreinitError::TooLarge { .. }), "{err:?}");
}

#[test]
fn unsupported_modules_are_refused() {
    let dir = TempDir::new("unsupported");
    let l = limits(&dir);
    let cases = [
        (r#"(module (func (export "other")))"#, "no function `init`"),
        (
            r#"(module (table 1 funcref) (func (export "init") (table.set (i32.const 0) (ref.null func))))"#,
            "table.set",
        ),
        (
            r#"(module (memory 1) (data $d "x") (func (export "init") (data.drop $d)))"#,
            "data.drop",
        ),
        (
            r#"(module (import "env" "m" (memory 1)) (func (export "init")))"#,
            "imports its memory",
        ),
        (
            r#"(module (global (mut funcref) (ref.null func)) (func (export "init")))"#,
            "only numeric globals",
        ),
        ("not wasm", "invalid module"),
    ];
    for (src, expect) in cases {
        let wasm = wat::parse_str(src).unwrap_or_else(|_| src.as_bytes().to_vec());
        let err = preinitialize(&wasm, "init", Vec::new(), &l).unwrap_err();
        assert!(err.to_string().contains(expect), "{src}: {err}");
    }
}
