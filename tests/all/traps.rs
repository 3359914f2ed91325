//! Every trap kind is reported with its code and a backtrace of named wasm functions, the host
//! keeps running afterwards, and a fault outside guest code goes to the handler that was there
//! before ours.

use crate::engine::*;
use fnvm_abi::TrapCode;
use fnvm_runtime::Val;

const TRAPPING: &str = r#"(module $m
  (memory 1)
  (table 2 funcref)
  (type $v (func))
  (type $i (func (result i32)))
  (elem (i32.const 0) $ok)
  (func $ok)
  (func $unreachable (export "unreachable") unreachable)
  (func $deep (export "deep") (call $middle))
  (func $middle (call $unreachable))
  (func (export "oob") (result i32) (i32.load (i32.const 65536)))
  (func (export "oob_store") (i32.store (i32.const -4) (i32.const 1)))
  (func (export "oob_big_offset") (result i32) (i32.load offset=0xfffffff0 (i32.const 0)))
  (func (export "div0") (result i32) (i32.div_u (i32.const 1) (i32.const 0)))
  (func (export "overflow") (result i32) (i32.div_s (i32.const 0x80000000) (i32.const -1)))
  (func (export "conv_nan") (result i32) (i32.trunc_f32_s (f32.const nan)))
  (func (export "conv_range") (result i32) (i32.trunc_f64_u (f64.const 1e10)))
  (func (export "call_null") (call_indirect (type $v) (i32.const 1)))
  (func (export "call_oob") (call_indirect (type $v) (i32.const 5)))
  (func (export "call_sig") (result i32) (call_indirect (type $i) (i32.const 0)))
  (func (export "table_oob") (result funcref) (table.get (i32.const 9)))
  (func (export "fill_oob") (memory.fill (i32.const 65000) (i32.const 0) (i32.const 1000)))
  (func $rec (export "recurse") (call $rec))
  (func (export "fine") (result i32) (i32.const 42))
)"#;

#[test]
fn every_trap_kind_is_reported() {
    on_big_stack(|| {
        let engine = engine();
        let (mut store, inst) = instantiate(&engine, TRAPPING);
        let cases = [
            ("unreachable", TrapCode::UnreachableCodeReached),
            ("oob", TrapCode::MemoryOutOfBounds),
            ("oob_store", TrapCode::MemoryOutOfBounds),
            ("oob_big_offset", TrapCode::MemoryOutOfBounds),
            ("div0", TrapCode::IntegerDivisionByZero),
            ("overflow", TrapCode::IntegerOverflow),
            ("conv_nan", TrapCode::BadConversionToInteger),
            ("conv_range", TrapCode::IntegerOverflow),
            ("call_null", TrapCode::IndirectCallToNull),
            ("call_oob", TrapCode::IndirectCallOutOfBounds),
            ("call_sig", TrapCode::BadSignature),
            ("table_oob", TrapCode::TableOutOfBounds),
            ("fill_oob", TrapCode::MemoryOutOfBounds),
            ("recurse", TrapCode::StackOverflow),
        ];
        for (name, code) in cases {
            let f = func(&mut store, inst, name);
            let trap = store.call(f, &[]).unwrap_err();
            assert_eq!(trap.code, code, "{name}: {trap}");
            // The host keeps running guest code after every trap.
            let fine = func(&mut store, inst, "fine");
            assert_eq!(store.call(fine, &[]).unwrap(), vec![Val::I32(42)]);
        }
    });
}

#[test]
fn backtraces_name_the_wasm_functions() {
    on_big_stack(|| {
        let engine = engine();
        let (mut store, inst) = instantiate(&engine, TRAPPING);
        let f = func(&mut store, inst, "deep");
        let trap = store.call(f, &[]).unwrap_err();
        let names: Vec<_> = trap
            .backtrace
            .iter()
            .map(|f| f.func_name.clone().unwrap_or_default())
            .collect();
        assert_eq!(names, ["unreachable", "middle", "deep"], "{trap}");
        assert!(trap.backtrace.iter().all(|f| f.wasm_offset.is_some()));
        assert_eq!(trap.backtrace[0].module_name.as_deref(), Some("m"));
        let text = trap.to_string();
        assert!(text.starts_with("unreachable\n"), "{text}");
        assert!(text.contains("m!middle"), "{text}");
    });
}

#[test]
fn recursion_deeper_than_the_limit_is_a_trap_every_time() {
    on_big_stack(|| {
        let engine = engine();
        let (mut store, inst) = instantiate(&engine, TRAPPING);
        let f = func(&mut store, inst, "recurse");
        for _ in 0..20 {
            let trap = store.call(f, &[]).unwrap_err();
            assert_eq!(trap.code, TrapCode::StackOverflow);
            assert!(trap.to_string().starts_with("call stack exhausted"));
        }
    });
}

#[test]
fn traps_on_many_threads_at_once() {
    let handles: Vec<_> = (0..4)
        .map(|_| {
            std::thread::Builder::new()
                .stack_size(16 << 20)
                .spawn(|| {
                    let engine = engine();
                    let (mut store, inst) = instantiate(&engine, TRAPPING);
                    let oob = func(&mut store, inst, "oob");
                    let fine = func(&mut store, inst, "fine");
                    for _ in 0..200 {
                        assert_eq!(
                            store.call(oob, &[]).unwrap_err().code,
                            TrapCode::MemoryOutOfBounds
                        );
                        assert_eq!(store.call(fine, &[]).unwrap(), vec![Val::I32(42)]);
                    }
                })
                .unwrap()
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

/// In a child process (this same test binary), fault in host code after the engine installed
/// its handlers. With `FNVM_CHILD_PREVIOUS_HANDLER` set, the child first installs its own SIGSEGV
/// handler, which must receive the fault and exit with status 42.
#[test]
fn host_fault_child() {
    let Ok(mode) = std::env::var("FNVM_CHILD_HOST_FAULT") else {
        return;
    };
    // No core file for the deliberate crash.
    let no_core = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: setrlimit with a valid struct, in a child process made for this test.
    unsafe { libc::setrlimit(libc::RLIMIT_CORE, &no_core) };
    if mode == "previous" {
        extern "C" fn exit42(_: libc::c_int) {
            // SAFETY: _exit is async-signal-safe.
            unsafe { libc::_exit(42) }
        }
        // SAFETY: installing a plain handler in a child process made for this test.
        unsafe {
            libc::signal(libc::SIGSEGV, exit42 as *const () as libc::sighandler_t);
        }
    }
    let engine = engine();
    let (mut store, inst) = instantiate(&engine, TRAPPING);
    let oob = func(&mut store, inst, "oob");
    assert!(store.call(oob, &[]).is_err());
    let p = std::hint::black_box(16usize) as *mut u8;
    // SAFETY: deliberately faulting outside guest code; this child process exists to die here.
    unsafe { std::ptr::write_volatile(p, 1) };
    unreachable!("the write to address 16 did not fault");
}

fn run_child(mode: &str) -> std::process::ExitStatus {
    std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "traps::host_fault_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("FNVM_CHILD_HOST_FAULT", mode)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap()
}

#[test]
fn faults_outside_guest_code_go_to_the_previous_handler() {
    use std::os::unix::process::ExitStatusExt;
    let status = run_child("default");
    assert_eq!(status.signal(), Some(libc::SIGSEGV), "{status:?}");
    let status = run_child("previous");
    assert_eq!(status.code(), Some(42), "{status:?}");
}

/// Guest frames live on the store's own guarded stack, not the calling thread's: a thread with
/// a stack far smaller than the guest's limit still runs deep recursion, and still gets a trap
/// (not a crash) when the guest recurses without end.
#[test]
fn guest_stack_is_independent_of_the_host_thread_stack() {
    let engine = engine();
    // Compiling needs a normal stack; only the calls run on the small thread.
    let m = module(
        &engine,
        r#"(module
          (func $down (export "down") (param i32) (result i32)
            (if (result i32) (i32.eqz (local.get 0))
              (then (i32.const 0))
              (else (i32.add (i32.const 1)
                (call $down (i32.sub (local.get 0) (i32.const 1))))))))"#,
    );
    let result = std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(move || {
            let mut store = fnvm_runtime::Store::new(&engine);
            let inst = store.instantiate(&m, &[]).unwrap();
            let down = func(&mut store, inst, "down");
            let deep = store.call(down, &[Val::I32(10_000)]).unwrap();
            let endless = store.call(down, &[Val::I32(-1)]).unwrap_err();
            (deep, endless.code)
        })
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(result.0, vec![Val::I32(10_000)]);
    assert_eq!(result.1, TrapCode::StackOverflow);
}
