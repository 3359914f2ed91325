//! Tests of [`KvmBackend`] through the [`ExecutionBackend`] interface, as the in-process pool is
//! tested: a reused VM shows nothing of the previous instance (the pool isolation test's guest),
//! VMs move between modules when the backend is full, the cap, timeouts, page accounting and a
//! WASI guest. They need /dev/kvm like the other KVM tests (skipping without it, failing under
//! `CI=true`).

use super::tests::skip;
use super::wasm_tests::compile;
use super::*;
use crate::{
    BackendInstance, Caller, Engine, EngineConfig, ExecutionBackend, Halt, HostExit, HostFuncDef,
    InstanceLimits, InstantiationError, LinkedModule, Val,
};
use fnvm_abi::{FuncType, TrapCode, ValType};
use std::time::Duration;

/// Host state: how many host calls the instance made.
#[derive(Debug, Default)]
struct Counter {
    calls: u32,
}

fn add(caller: &mut Caller<'_, Counter>, v: &mut [u64]) -> Result<(), HostExit> {
    caller.data().calls += 1;
    v[0] = u64::from((v[0] as u32).wrapping_add(v[1] as u32));
    Ok(())
}

fn resolve(imp: &fnvm_abi::Import) -> Option<HostFuncDef<Counter>> {
    (imp.name == "add").then(|| HostFuncDef {
        ty: FuncType {
            params: vec![ValType::I32, ValType::I32],
            results: vec![ValType::I32],
        },
        func: add,
        write_behind: None,
    })
}

/// A backend of at most `vms` VMs resetting on its reset thread, or `None` (after `skip`)
/// without a usable /dev/kvm.
fn backend(engine: &Engine, vms: u32) -> Option<KvmBackend> {
    backend_with(engine, vms, true)
}

/// The same, resetting in the background or inline.
fn backend_with(engine: &Engine, vms: u32, background_reset: bool) -> Option<KvmBackend> {
    backend_config(
        engine,
        KvmBackendConfig {
            vms,
            acquire_timeout: Duration::from_millis(20),
            background_reset,
            ..KvmBackendConfig::default()
        },
    )
}

/// A backend with `config`, or `None` (after `skip`) without a usable /dev/kvm.
fn backend_config(engine: &Engine, config: KvmBackendConfig) -> Option<KvmBackend> {
    let kvm = match Kvm::open() {
        Ok(kvm) => kvm,
        Err(e) => {
            skip(&e);
            return None;
        }
    };
    Some(KvmBackend::new(engine, &kvm, config).unwrap())
}

fn prepare(b: &KvmBackend, wat: &str) -> KvmPrepared<Counter> {
    let linked = LinkedModule::new(&compile(b.engine(), wat), resolve).unwrap();
    b.prepare(&linked).unwrap()
}

fn instance(b: &KvmBackend, pre: &KvmPrepared<Counter>) -> KvmInstance<Counter> {
    b.instantiate(pre, &InstanceLimits::default(), Counter::default())
        .unwrap()
}

/// The in-process pool isolation test's guest (tests/all/pool.rs): it changes every kind of
/// instance state it has, and `check` reports what it found first.
const STATEFUL: &str = r#"(module
  (import "env" "add" (func $add (param i32 i32) (result i32)))
  (memory (export "memory") 1 100)
  (data (i32.const 16) "pristine")
  (global $g (mut i32) (i32.const 7))
  (table 4 funcref)
  (elem (i32.const 1) $one)
  (elem declare func $two)
  (func $one (result i32) (i32.const 1))
  (func $two (result i32) (i32.const 2))
  (type $r (func (result i32)))
  (func (export "check") (result i32) (local $bad i32)
    (if (i64.ne (i64.load (i32.const 16)) (i64.const 0x656e697473697270))
      (then (local.set $bad (i32.or (local.get $bad) (i32.const 1)))))
    (if (i32.ne (i32.load (i32.const 4096)) (i32.const 0))
      (then (local.set $bad (i32.or (local.get $bad) (i32.const 2)))))
    (if (i32.ne (global.get $g) (i32.const 7))
      (then (local.set $bad (i32.or (local.get $bad) (i32.const 4)))))
    (if (i32.ne (memory.size) (i32.const 1))
      (then (local.set $bad (i32.or (local.get $bad) (i32.const 8)))))
    (if (i32.ne (call_indirect (type $r) (i32.const 1)) (i32.const 1))
      (then (local.set $bad (i32.or (local.get $bad) (i32.const 16)))))
    (if (i32.eqz (ref.is_null (table.get (i32.const 2))))
      (then (local.set $bad (i32.or (local.get $bad) (i32.const 32)))))
    (drop (memory.grow (i32.const 1)))
    (if (i32.ne (i32.load (i32.const 70000)) (i32.const 0))
      (then (local.set $bad (i32.or (local.get $bad) (i32.const 64)))))
    (local.get $bad))
  (func (export "scribble")
    (i64.store (i32.const 16) (i64.const -1))
    (i32.store (i32.const 4096) (i32.const 99))
    (global.set $g (i32.const 8))
    (drop (memory.grow (i32.const 3)))
    (i32.store (i32.const 70000) (i32.const 5))
    (table.set (i32.const 1) (ref.func $two))
    (table.set (i32.const 2) (ref.func $two)))
  (func (export "add3") (param i32) (result i32) (call $add (local.get 0) (i32.const 3)))
  (func (export "spin") (loop $l (br $l)))
  (func (export "touch") (param i32)
    (loop $l
      (i32.store8 (i32.mul (local.get 0) (i32.const 4096)) (i32.const 1))
      (local.set 0 (i32.sub (local.get 0) (i32.const 1)))
      (br_if $l (i32.ge_s (local.get 0) (i32.const 0))))))"#;

/// Waits (a little) until no instance is alive or being reset.
fn wait_idle(b: &KvmBackend) {
    let start = std::time::Instant::now();
    while b.stats().in_use > 0 && start.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn engine() -> Engine {
    Engine::new(EngineConfig::default()).unwrap()
}

#[test]
fn a_reused_vm_shows_nothing_of_the_previous_instance() {
    for background in [false, true] {
        reused_vm_isolation(background);
    }
}

fn reused_vm_isolation(background: bool) {
    let engine = engine();
    let Some(b) = backend_with(&engine, 1, background) else {
        return;
    };
    let pre = prepare(&b, STATEFUL);
    for round in 0..5 {
        let mut inst = instance(&b, &pre);
        assert_eq!(
            inst.call("check", &[]),
            Ok(vec![Val::I32(0)]),
            "round {round}: stale state (bitmask of failed checks)"
        );
        // Host state is the instance's own: a fresh counter every time.
        assert_eq!(inst.call("add3", &[Val::I32(4)]), Ok(vec![Val::I32(7)]));
        assert_eq!(inst.data().calls, 1, "round {round}: host state leaked");
        inst.call("scribble", &[]).unwrap();
        assert_eq!(inst.memory_pages(), 5, "1 + check's 1 + scribble's 3");
        assert_ne!(inst.call("check", &[]), Ok(vec![Val::I32(0)]));
        assert_eq!(inst.into_data().calls, 1);
    }
    // One VM, created once, reused four times.
    wait_idle(&b);
    let stats = b.stats();
    assert_eq!((stats.in_use, stats.module_switches), (0, 1));
}

#[test]
fn a_full_backend_moves_an_idle_vm_to_another_module() {
    let engine = engine();
    let Some(b) = backend(&engine, 1) else { return };
    let a = prepare(&b, STATEFUL);
    let other = prepare(
        &b,
        r#"(module (memory 2) (data (i32.const 0) "B")
             (func (export "peek") (param i32) (result i32) (i32.load8_u (local.get 0)))
             (func (export "poke") (i32.store8 (i32.const 70000) (i32.const 9))))"#,
    );
    for _ in 0..3 {
        let mut i = instance(&b, &a);
        assert_eq!(i.call("check", &[]), Ok(vec![Val::I32(0)]));
        i.call("scribble", &[]).unwrap();
        drop(i);
        let mut i = instance(&b, &other);
        for (addr, want) in [(0, b'B' as i32), (16, 0), (4096, 0), (70000, 0)] {
            assert_eq!(i.call("peek", &[Val::I32(addr)]), Ok(vec![Val::I32(want)]));
        }
        i.call("poke", &[]).unwrap();
    }
    assert_eq!(b.stats().module_switches, 6);
    // With every VM in use, the next instance waits and then fails.
    let held = instance(&b, &a);
    match b.instantiate(&a, &InstanceLimits::default(), Counter::default()) {
        Err(InstantiationError::PoolExhausted { slots: 1, .. }) => {}
        other => panic!("expected an exhausted backend, got {other:?}"),
    }
    drop(held);
    instance(&b, &a);
}

#[test]
fn a_timeout_interrupts_the_guest_and_the_vm_is_reused() {
    let engine = engine();
    let Some(b) = backend(&engine, 1) else { return };
    let limits = InstanceLimits {
        timeout: Some(Duration::from_millis(50)),
        ..InstanceLimits::default()
    };
    // With epoch checks the guest traps at its loop's check; without, the watchdog kicks it
    // out of the VM after the grace.
    for epoch_interruption in [true, false] {
        let options = fnvm_compiler::CompileOptions {
            epoch_interruption,
            ..Default::default()
        };
        let wasm = wat::parse_str(STATEFUL).unwrap();
        let artifact = fnvm_compiler::compile(&wasm, &options).unwrap();
        let module = crate::Module::from_artifact(&engine, &artifact).unwrap();
        let pre = b
            .prepare(&LinkedModule::new(&module, resolve).unwrap())
            .unwrap();
        let at_least = match epoch_interruption {
            true => Duration::from_millis(40),
            false => Duration::from_millis(50) + super::backend::KICK_GRACE,
        };
        for _ in 0..2 {
            let mut inst = b.instantiate(&pre, &limits, Counter::default()).unwrap();
            let start = std::time::Instant::now();
            match inst.call("spin", &[]) {
                Err(Halt::Trap(t)) => {
                    assert_eq!(t.code, TrapCode::Interrupt);
                    assert_eq!(t.backtrace.len(), 1, "{:?}", t.backtrace);
                }
                other => panic!("spin: {other:?}"),
            }
            let took = start.elapsed();
            assert!(
                took >= at_least && took < Duration::from_secs(2),
                "{took:?}"
            );
            drop(inst);
            // The same VM, reset: no deadline or kick left over.
            let mut inst = instance(&b, &pre);
            assert_eq!(inst.call("check", &[]), Ok(vec![Val::I32(0)]));
        }
    }
}

#[test]
fn limits_cap_memory_and_pages_are_counted_exactly() {
    let engine = engine();
    let Some(b) = backend(&engine, 1) else { return };
    let pre = prepare(&b, STATEFUL);
    let limits = InstanceLimits {
        max_memory_bytes: Some(3 * 65536),
        exact_page_accounting: true,
        ..InstanceLimits::default()
    };
    let mut inst = b.instantiate(&pre, &limits, Counter::default()).unwrap();
    inst.call("touch", &[Val::I32(9)]).unwrap();
    assert!(inst.resident_memory_pages().unwrap() >= 10);
    // check grows by 1 (2 pages), scribble's 3 more exceed the cap of 3 pages.
    inst.call("check", &[]).unwrap();
    inst.call("scribble", &[]).unwrap();
    assert_eq!(inst.memory_pages(), 2);
    drop(inst);
    let mut inst = b.instantiate(&pre, &limits, Counter::default()).unwrap();
    inst.call("touch", &[Val::I32(2)]).unwrap();
    assert_eq!(inst.resident_memory_pages().unwrap(), 3);
    assert!(inst.resident_bytes().unwrap() >= 3 * 4096);
}

#[test]
fn wasi_hello_through_the_backend() {
    let engine = engine();
    let Some(b) = backend(&engine, 2) else { return };
    let wasm = wat::parse_str(
        r#"(module
          (import "wasi_snapshot_preview1" "fd_write"
            (func $fd_write (param i32 i32 i32 i32) (result i32)))
          (memory (export "memory") 1)
          (data (i32.const 16) "Hello World\n")
          (func (export "_start")
            (i32.store (i32.const 0) (i32.const 16))
            (i32.store (i32.const 4) (i32.const 12))
            (if (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))
              (then unreachable))))"#,
    )
    .unwrap();
    let artifact =
        fnvm_compiler::compile(&wasm, &fnvm_compiler::CompileOptions::default()).unwrap();
    let module = crate::Module::from_artifact(&engine, &artifact).unwrap();
    let linked = LinkedModule::new(&module, |imp| {
        fnvm_hostcalls::resolve(&imp.module, &imp.name)
    })
    .unwrap();
    let pre = b.prepare(&linked).unwrap();
    for _ in 0..10 {
        let ctx = fnvm_hostcalls::WasiCtx::builder().build().unwrap();
        let mut inst = b
            .instantiate(&pre, &InstanceLimits::default(), ctx)
            .unwrap();
        assert_eq!(inst.call("_start", &[]), Ok(vec![]));
        assert_eq!(inst.into_data().take_stdout(), b"Hello World\n");
    }
    assert_eq!(b.stats().module_switches, 1);
}

#[test]
fn hostile_guests_are_contained_and_their_vms_reused() {
    let engine = engine();
    let Some(b) = backend(&engine, 1) else { return };
    let hostile = prepare(
        &b,
        r#"(module
          (memory 1 1)
          (func $bomb (export "bomb") (param i64) (result i64)
            (call $bomb (i64.add (local.get 0) (i64.const 1))))
          (func (export "wild") (param i32) (result i32)
            (i32.load (local.get 0)))
          (func (export "grow") (result i32)
            (memory.grow (i32.const 1)))
          (func (export "spin")
            (loop $l (br $l))))"#,
    );
    let limits = InstanceLimits {
        timeout: Some(Duration::from_millis(200)),
        ..InstanceLimits::default()
    };
    for _ in 0..3 {
        let mut inst = b
            .instantiate(&hostile, &limits, Counter::default())
            .unwrap();
        let code = |r: Result<Vec<Val>, Halt>| match r {
            Err(Halt::Trap(t)) => t.code,
            other => panic!("expected a trap, got {other:?}"),
        };
        assert_eq!(
            code(inst.call("bomb", &[Val::I64(0)])),
            TrapCode::StackOverflow
        );
        for addr in [65536, -1, i32::MIN] {
            assert_eq!(
                code(inst.call("wild", &[Val::I32(addr)])),
                TrapCode::MemoryOutOfBounds
            );
        }
        assert_eq!(inst.call("grow", &[]), Ok(vec![Val::I32(-1)]));
        assert_eq!(inst.call("wild", &[Val::I32(65532)]), Ok(vec![Val::I32(0)]));
        // Last: an infinite loop, ended by the instance's deadline.
        assert_eq!(code(inst.call("spin", &[])), TrapCode::Interrupt);
    }
    // The same VM ran every instance (and the STATEFUL module next to it gets another).
    let pre = prepare(&b, STATEFUL);
    let mut inst = instance(&b, &pre);
    assert_eq!(inst.call("check", &[]), Ok(vec![Val::I32(0)]));
    assert_eq!(b.stats().module_switches, 2);
}

#[test]
fn instances_run_in_parallel_on_several_threads() {
    let engine = engine();
    let Some(b) = backend(&engine, 2) else { return };
    let pre = prepare(&b, STATEFUL);
    std::thread::scope(|s| {
        for t in 0..2 {
            let (b, pre) = (&b, &pre);
            s.spawn(move || {
                for round in 0..20 {
                    let mut inst = instance(b, pre);
                    assert_eq!(
                        inst.call("check", &[]),
                        Ok(vec![Val::I32(0)]),
                        "{t}/{round}"
                    );
                    let n = t * 100 + round;
                    assert_eq!(inst.call("add3", &[Val::I32(n)]), Ok(vec![Val::I32(n + 3)]));
                    inst.call("scribble", &[]).unwrap();
                }
            });
        }
    });
    wait_idle(&b);
    let stats = b.stats();
    assert_eq!(stats.in_use, 0);
    assert!(stats.module_switches <= 2, "{stats:?}");
}

#[test]
fn a_caller_waiting_for_a_place_takes_a_vm_idled_meanwhile() {
    let engine = engine();
    let config = KvmBackendConfig {
        vms: 1,
        acquire_timeout: Duration::from_secs(5),
        ..KvmBackendConfig::default()
    };
    let Some(b) = backend_config(&engine, config) else {
        return;
    };
    let a = prepare(&b, STATEFUL);
    let other = prepare(
        &b,
        r#"(module (func (export "f") (result i32) (i32.const 5)))"#,
    );
    let held = instance(&b, &a);
    std::thread::scope(|s| {
        let waiter = s.spawn(|| {
            let start = std::time::Instant::now();
            let mut i = instance(&b, &other);
            assert_eq!(i.call("f", &[]), Ok(vec![Val::I32(5)]));
            start.elapsed()
        });
        std::thread::sleep(Duration::from_millis(50));
        // The only VM goes idle (for module `a`); the waiter evicts it well before its 5 s.
        drop(held);
        let waited = waiter.join().unwrap();
        assert!(waited < Duration::from_secs(2), "{waited:?}");
    });
}

#[test]
fn a_host_call_waiting_past_the_deadline_ends_the_invocation() {
    let engine = engine();
    let Some(b) = backend(&engine, 1) else { return };
    // The Rust `sleep` guest sleeps 50 ms twice (poll_oneoff on a clock, in the host).
    let wasm = super::wasm_import_tests::rust_guest("sleep");
    let artifact =
        fnvm_compiler::compile(&wasm, &fnvm_compiler::CompileOptions::default()).unwrap();
    let module = crate::Module::from_artifact(&engine, &artifact).unwrap();
    let linked = LinkedModule::new(&module, |imp| {
        fnvm_hostcalls::resolve(&imp.module, &imp.name)
    })
    .unwrap();
    let pre = b.prepare(&linked).unwrap();
    let limits = InstanceLimits {
        timeout: Some(Duration::from_millis(20)),
        ..InstanceLimits::default()
    };
    let ctx = fnvm_hostcalls::WasiCtx::builder().build().unwrap();
    let mut inst = b.instantiate(&pre, &limits, ctx).unwrap();
    let start = std::time::Instant::now();
    match inst.call("_start", &[]) {
        Err(Halt::Trap(t)) => assert_eq!(t.code, TrapCode::Interrupt),
        other => panic!("sleep past the deadline: {other:?}"),
    }
    let took = start.elapsed();
    assert!(took < Duration::from_millis(45), "{took:?}");
    drop(inst);
    // Without a deadline it sleeps to the end.
    let ctx = fnvm_hostcalls::WasiCtx::builder().build().unwrap();
    let mut inst = b
        .instantiate(&pre, &InstanceLimits::default(), ctx)
        .unwrap();
    assert_eq!(inst.call("_start", &[]), Ok(vec![]));
}
