//! Tests of write-behind (`fd_write` answered in the VM, replayed later): every case the stub
//! logs or hands to the host gives the same answers, output, hostcall count and dmesg trace as
//! in process, in far fewer exits. Like the other KVM tests, they skip without a usable
//! /dev/kvm except in CI (`CI=true`), where that is a failure.

use super::wasm_import_tests::{call_in_process, linked_vm, run, wasi_linked};
use crate::{Engine, EngineConfig, Halt, LinkedModule};
use fnvm_hostcalls::WasiCtx;

/// A guest that calls `fd_write` in every way that matters, and `clock_res_get` between
/// them. `$w` records each call's errno and the `nwritten` it finds (as two u32s from 1024 up;
/// a count at 1020), and `_start` ends by writing that record to stderr, so that the answers
/// the guest saw are compared too.
const WRITER: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "clock_res_get"
    (func $clock (param i32 i32) (result i32)))
  (memory (export "memory") 2)
  (data (i32.const 4096) "hello\n")
  (data (i32.const 4112) "err\n")
  (data (i32.const 4128) "two-")
  (data (i32.const 4144) "parts\n")
  (data (i32.const 4160) "x")
  (func $w (param i32 i32 i32 i32) (local $n i32)
    (i32.store (i32.const 200) (i32.const 0xdead))
    (local.set $n (i32.load (i32.const 1020)))
    (i32.store (i32.add (i32.const 1024) (i32.mul (local.get $n) (i32.const 8)))
      (call $fd_write (local.get 0) (local.get 1) (local.get 2) (local.get 3)))
    (i32.store (i32.add (i32.const 1028) (i32.mul (local.get $n) (i32.const 8)))
      (i32.load (i32.const 200)))
    (i32.store (i32.const 1020) (i32.add (local.get $n) (i32.const 1))))
  (func $iov (param $at i32) (param $ptr i32) (param $len i32)
    (i32.store (local.get $at) (local.get $ptr))
    (i32.store (i32.add (local.get $at) (i32.const 4)) (local.get $len)))
  (func (export "_start") (local $i i32)
    ;; Many short lines to stdout, one call each.
    (call $iov (i32.const 256) (i32.const 4096) (i32.const 6))
    (loop $lines
      (call $w (i32.const 1) (i32.const 256) (i32.const 1) (i32.const 200))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $lines (i32.lt_u (local.get $i) (i32.const 100))))
    ;; stderr; a host call between writes; two buffers, one empty; no buffers.
    (call $iov (i32.const 264) (i32.const 4112) (i32.const 4))
    (call $w (i32.const 2) (i32.const 264) (i32.const 1) (i32.const 200))
    (drop (call $clock (i32.const 0) (i32.const 208)))
    (call $iov (i32.const 272) (i32.const 4128) (i32.const 4))
    (call $iov (i32.const 280) (i32.const 4160) (i32.const 0))
    (call $iov (i32.const 288) (i32.const 4144) (i32.const 6))
    (call $w (i32.const 1) (i32.const 272) (i32.const 3) (i32.const 200))
    (call $w (i32.const 1) (i32.const 272) (i32.const 0) (i32.const 200))
    ;; A buffer past the memory's end; nwritten past it; the iovec array past it.
    (call $iov (i32.const 296) (i32.const 131060) (i32.const 32))
    (call $w (i32.const 1) (i32.const 296) (i32.const 1) (i32.const 200))
    (call $w (i32.const 1) (i32.const 256) (i32.const 1) (i32.const 131070))
    (call $w (i32.const 1) (i32.const 131068) (i32.const 2) (i32.const 200))
    ;; An fd that is no stream; fd 2 through a huge iovec count (wraps nothing).
    (call $w (i32.const 3) (i32.const 256) (i32.const 1) (i32.const 200))
    (call $w (i32.const 2) (i32.const 256) (i32.const -1) (i32.const 200))
    ;; 1025 one-byte buffers: the host uses the first 1024 only.
    (local.set $i (i32.const 0))
    (loop $many
      (call $iov (i32.add (i32.const 16384) (i32.mul (local.get $i) (i32.const 8)))
        (i32.const 4160) (i32.const 1))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $many (i32.lt_u (local.get $i) (i32.const 1025))))
    (call $w (i32.const 1) (i32.const 16384) (i32.const 1025) (i32.const 200))
    ;; More than the write log holds: 100 KiB at once.
    (call $iov (i32.const 304) (i32.const 0) (i32.const 102400))
    (call $w (i32.const 1) (i32.const 304) (i32.const 1) (i32.const 200))
    ;; A buffer in memory grown since the call began.
    (drop (memory.grow (i32.const 1)))
    (i32.store (i32.const 131072) (i32.const 0x0a776f6e))
    (call $iov (i32.const 312) (i32.const 131072) (i32.const 4))
    (call $w (i32.const 1) (i32.const 312) (i32.const 1) (i32.const 200))
    ;; The answers seen, to stderr.
    (call $iov (i32.const 320) (i32.const 1020)
      (i32.add (i32.const 4) (i32.mul (i32.load (i32.const 1020)) (i32.const 8))))
    (drop (call $fd_write (i32.const 2) (i32.const 320) (i32.const 1) (i32.const 200))))
  ;; Three lines, then a trap: the lines are out.
  (func (export "trap")
    (call $iov (i32.const 256) (i32.const 4096) (i32.const 6))
    (call $w (i32.const 1) (i32.const 256) (i32.const 1) (i32.const 200))
    (call $w (i32.const 1) (i32.const 256) (i32.const 1) (i32.const 200))
    (call $w (i32.const 1) (i32.const 256) (i32.const 1) (i32.const 200))
    unreachable)
  ;; 30 lines of 6 bytes against an output limit; returns a hash of the answers seen (the
  ;; output limit would cut them short on stderr).
  (func (export "flood") (result i32) (local $i i32) (local $h i32)
    (call $iov (i32.const 256) (i32.const 4096) (i32.const 6))
    (loop $lines
      (call $w (i32.const 1) (i32.const 256) (i32.const 1) (i32.const 200))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $lines (i32.lt_u (local.get $i) (i32.const 30))))
    (local.set $i (i32.const 0))
    (loop $hash
      (local.set $h (i32.add (i32.mul (local.get $h) (i32.const 31))
        (i32.load (i32.add (i32.const 1024) (i32.mul (local.get $i) (i32.const 4))))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $hash (i32.lt_u (local.get $i) (i32.const 60))))
    (local.get $h)))"#;

/// What must be equal: how the call ended (its results or trap code), stdout, stderr, the
/// hostcall count and the trace.
type Seen = (
    Result<Vec<crate::Val>, String>,
    Vec<u8>,
    Vec<u8>,
    u64,
    String,
);

fn ctx(output_limit: usize) -> WasiCtx {
    WasiCtx::builder()
        .output_limit(output_limit)
        .trace(true)
        .trace_id(9)
        .build()
        .unwrap()
}

fn seen(status: Result<Vec<crate::Val>, Halt>, mut ctx: WasiCtx) -> Seen {
    let status = status.map_err(|h| match h {
        Halt::Trap(t) => format!("trap {:?}", t.code),
        other => other.to_string(),
    });
    let dmesg = ctx.take_dmesg().unwrap().as_str().to_owned();
    (
        status,
        ctx.take_stdout(),
        ctx.take_stderr(),
        ctx.hostcalls(),
        dmesg,
    )
}

fn in_process(engine: &Engine, linked: &LinkedModule<WasiCtx>, name: &str, limit: usize) -> Seen {
    let (status, ctx) = call_in_process(engine, linked, name, ctx(limit));
    seen(status, ctx)
}

/// The same in a VM, and the exits the call made.
fn in_vm(linked: &LinkedModule<WasiCtx>, name: &str, limit: usize) -> Option<(Seen, u64)> {
    let mut vm = linked_vm(linked, ctx(limit))?;
    let before = vm.exits();
    let status = run(&mut vm, name, &[]);
    let exits = vm.exits() - before;
    Some((seen(status, vm.into_data().unwrap()), exits))
}

#[test]
fn writes_answer_print_and_trace_as_in_process_in_few_exits() {
    let engine = Engine::new(EngineConfig::default()).unwrap();
    let linked = wasi_linked(&engine, &wat::parse_str(WRITER).unwrap());
    let here = in_process(&engine, &linked, "_start", 1 << 20);
    assert_eq!(here.0, Ok(vec![]));
    let stdout = &here.1;
    assert!(stdout.starts_with("hello\n".repeat(100).as_bytes()));
    let rest = &stdout[600..];
    assert!(rest.starts_with(b"two-parts\n") && rest.ends_with(b"now\n"));
    // Two-parts, 1024 x, 100 KiB, now.
    assert_eq!(rest.len(), 10 + 1024 + 102400 + 4);
    for errno in [
        "errno: EFAULT",
        "errno: EBADF",
        "nwritten: 1024",
        "nwritten: 102400",
    ] {
        assert!(here.4.contains(errno), "{errno} in\n{}", here.4);
    }
    let Some((there, exits)) = in_vm(&linked, "_start", 1 << 20) else {
        return;
    };
    assert!(there == here, "{}", differences(&there, &here));
    // 100 lines and more in the log; to the host: the clock, the three bad pointers, fd 3,
    // the huge count, 1025 buffers, 100 KiB, the end; plus memory.grow and the return.
    assert!(here.3 > 110, "{} hostcalls", here.3);
    assert!(exits <= 12, "{exits} exits for {} hostcalls", here.3);
}

#[test]
fn a_trap_after_logged_writes_keeps_them_and_a_full_stream_answers_as_in_process() {
    let engine = Engine::new(EngineConfig::default()).unwrap();
    let linked = wasi_linked(&engine, &wat::parse_str(WRITER).unwrap());
    let here = in_process(&engine, &linked, "trap", 1 << 20);
    assert_eq!(here.0, Err("trap UnreachableCodeReached".to_owned()));
    assert_eq!(here.1, b"hello\n".repeat(3));
    let Some((there, exits)) = in_vm(&linked, "trap", 1 << 20) else {
        return;
    };
    assert!(there == here, "{}", differences(&there, &here));
    assert_eq!(exits, 1, "only the trap");
    // 100 bytes of room: 16 lines fit, the 17th is cut to 4 bytes, the rest get EFBIG.
    let here = in_process(&engine, &linked, "flood", 100);
    assert_eq!(here.1.len(), 100);
    assert!(here.4.contains("nwritten: 4\n") && here.4.contains("errno: EFBIG"));
    assert!(matches!(here.0.as_deref(), Ok([crate::Val::I32(_)])));
    let (there, _) = in_vm(&linked, "flood", 100).unwrap();
    assert!(there == here, "{}", differences(&there, &here));
}

/// What differs, without pages of output.
fn differences(vm: &Seen, process: &Seen) -> String {
    let first_diff = |a: &[u8], b: &[u8]| a.iter().zip(b).position(|(x, y)| x != y);
    format!(
        "status {:?} vs {:?}; stdout {} vs {} bytes, first difference at {:?}; stderr {:?} vs {:?}; \
         hostcalls {} vs {}; dmesg:\n{}\n---- in process:\n{}",
        vm.0,
        process.0,
        vm.1.len(),
        process.1.len(),
        first_diff(&vm.1, &process.1),
        vm.2,
        process.2,
        vm.3,
        process.3,
        vm.4,
        process.4
    )
}
