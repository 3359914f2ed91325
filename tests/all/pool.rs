//! The instance pool: instances of prepared modules in reusable slots. Isolation between
//! invocations sharing a slot, per-instance limits, host functions, exhaustion, module switches
//! and concurrent use.

use crate::engine::*;
use fnvm_abi::{FuncType, TrapCode, ValType};
use fnvm_runtime::{
    Caller, Engine, Halt, HostExit, HostFuncDef, InstanceLimits, InstancePool, InstantiationError,
    LinkError, LinkedModule, PoolConfig, PooledInstance, PooledModule, Val,
};
use std::time::Duration;

fn pool(engine: &Engine, slots: u32, background_reset: bool) -> InstancePool {
    InstancePool::new(
        engine,
        PoolConfig {
            slots,
            background_reset,
            acquire_timeout: Duration::from_secs(5),
            max_memory_pages: 1024,
            ..PoolConfig::default()
        },
    )
    .unwrap()
}

/// Host state of the test host functions.
#[derive(Default)]
struct Counter {
    calls: u32,
    seen: Vec<u8>,
}

fn add(caller: &mut Caller<'_, Counter>, v: &mut [u64]) -> Result<(), HostExit> {
    caller.data().calls += 1;
    v[0] = (v[0] as u32).wrapping_add(v[1] as u32) as u64;
    Ok(())
}

/// Copies guest memory `[ptr, ptr + len)` into the host state, through the checked slice.
fn record(caller: &mut Caller<'_, Counter>, v: &mut [u64]) -> Result<(), HostExit> {
    let (ptr, len) = (v[0] as usize, v[1] as usize);
    let (mem, data) = caller.parts();
    let bytes = mem
        .get(ptr..ptr.saturating_add(len))
        .ok_or_else(|| HostExit::Trap("out of bounds".into()))?
        .to_vec();
    data.seen = bytes;
    Ok(())
}

/// Has the kernel write 8 bytes of 0xee into guest memory at `ptr` (a `read` from a pipe into
/// the checked slice), as WASI's `fd_read` does.
fn kernel_write(caller: &mut Caller<'_, Counter>, v: &mut [u64]) -> Result<(), HostExit> {
    let ptr = v[0] as usize;
    let (mem, _) = caller.parts();
    let dst = mem
        .get_mut(ptr..ptr.saturating_add(8))
        .ok_or_else(|| HostExit::Trap("out of bounds".into()))?;
    let (mut r, mut w) = std::io::pipe().map_err(|e| HostExit::Trap(e.to_string()))?;
    std::io::Write::write_all(&mut w, &[0xee; 8]).map_err(|e| HostExit::Trap(e.to_string()))?;
    std::io::Read::read_exact(&mut r, dst).map_err(|e| HostExit::Trap(e.to_string()))?;
    Ok(())
}

fn exit(_: &mut Caller<'_, Counter>, v: &mut [u64]) -> Result<(), HostExit> {
    Err(HostExit::Exit(v[0] as i32))
}

fn fail(_: &mut Caller<'_, Counter>, _: &mut [u64]) -> Result<(), HostExit> {
    Err(HostExit::Trap("host says no".into()))
}

/// Fails unless both i32 arguments arrive zero-extended, whatever the slots held before.
fn narrow(_: &mut Caller<'_, Counter>, v: &mut [u64]) -> Result<(), HostExit> {
    if v[0] >> 32 != 0 || v[2] >> 32 != 0 {
        return Err(HostExit::Trap(format!(
            "not zero-extended: {:#x} {:#x}",
            v[0], v[2]
        )));
    }
    Ok(())
}

fn resolve(imp: &fnvm_abi::Import) -> Option<HostFuncDef<Counter>> {
    let i32s = |n: usize| vec![ValType::I32; n];
    let (ty, func): (FuncType, fnvm_runtime::HostFn<Counter>) = match imp.name.as_str() {
        "add" => (
            FuncType {
                params: i32s(2),
                results: i32s(1),
            },
            add,
        ),
        "record" => (
            FuncType {
                params: i32s(2),
                results: vec![],
            },
            record,
        ),
        "kernel_write" => (
            FuncType {
                params: i32s(1),
                results: vec![],
            },
            kernel_write,
        ),
        "exit" => (
            FuncType {
                params: i32s(1),
                results: vec![],
            },
            exit,
        ),
        "narrow" => (
            FuncType {
                params: vec![ValType::I32, ValType::I64, ValType::I32],
                results: vec![],
            },
            narrow,
        ),
        "fail" => (
            FuncType {
                params: vec![],
                results: vec![],
            },
            fail,
        ),
        _ => return None,
    };
    Some(HostFuncDef::new(ty, func))
}

/// A fresh instance of `pre` with default limits and a fresh host state.
fn instance(pool: &InstancePool, pre: &PooledModule<Counter>) -> PooledInstance<Counter> {
    pool.instantiate(pre, &InstanceLimits::default(), Counter::default())
        .unwrap()
}

/// `wat` compiled, linked against the test host functions and prepared for `pool`.
fn prepare(pool: &InstancePool, wat: &str) -> PooledModule<Counter> {
    let linked = LinkedModule::new(&module(pool.engine(), wat), resolve).unwrap();
    pool.prepare(&linked).unwrap()
}

/// A guest that changes every kind of instance state it has, and reports what it found first.
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
  ;; What a fresh instance must see: data at 16, zero at 4096 and 70000, global 7, memory of 1
  ;; page, table[1] = $one and table[2] null. Returns a bitmask of the checks that failed.
  ;; Grows the memory by a page (which scribble's own growth then exceeds).
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
    ;; Pages the previous instance grew into and wrote read as zero once grown again.
    (drop (memory.grow (i32.const 1)))
    (if (i32.ne (i32.load (i32.const 70000)) (i32.const 0))
      (then (local.set $bad (i32.or (local.get $bad) (i32.const 64)))))
    (local.get $bad))
  ;; Dirties everything.
  (func (export "scribble")
    (i64.store (i32.const 16) (i64.const -1))
    (i32.store (i32.const 4096) (i32.const 99))
    (global.set $g (i32.const 8))
    (drop (memory.grow (i32.const 3)))
    (i32.store (i32.const 70000) (i32.const 5))
    (table.set (i32.const 1) (ref.func $two))
    (table.set (i32.const 2) (ref.func $two)))
  (func (export "add3") (param i32) (result i32) (call $add (local.get 0) (i32.const 3))))"#;

#[test]
fn a_reused_slot_shows_nothing_of_the_previous_instance() {
    let engine = engine();
    for background in [false, true] {
        let pool = pool(&engine, 1, background);
        let pre = prepare(&pool, STATEFUL);
        let mut first_slot = None;
        for round in 0..5 {
            let mut inst = pool
                .instantiate(&pre, &InstanceLimits::default(), Counter::default())
                .unwrap();
            assert_eq!(
                inst.call("check", &[]).unwrap(),
                vec![Val::I32(0)],
                "round {round}: stale state (bitmask of failed checks)"
            );
            // Host state is the instance's own: a fresh counter every time.
            assert_eq!(
                inst.call("add3", &[Val::I32(4)]).unwrap(),
                vec![Val::I32(7)]
            );
            assert_eq!(inst.data().calls, 1, "round {round}: host state leaked");
            inst.call("scribble", &[]).unwrap();
            assert_eq!(inst.memory_pages(), 5, "1 + check's 1 + scribble's 3");
            assert_ne!(inst.call("check", &[]).unwrap(), vec![Val::I32(0)]);
            assert_eq!(
                *first_slot.get_or_insert(inst.slot_index()),
                inst.slot_index()
            );
        }
    }
}

#[test]
fn a_slot_switching_modules_starts_clean() {
    let engine = engine();
    let pool = pool(&engine, 1, false);
    let a = prepare(&pool, STATEFUL);
    let b = prepare(
        &pool,
        r#"(module (memory 2) (data (i32.const 0) "B")
             (func (export "peek") (param i32) (result i32) (i32.load8_u (local.get 0)))
             (func (export "poke") (i32.store8 (i32.const 70000) (i32.const 9))))"#,
    );
    for _ in 0..3 {
        let mut i = instance(&pool, &a);
        assert_eq!(i.call("check", &[]).unwrap(), vec![Val::I32(0)]);
        i.call("scribble", &[]).unwrap();
        drop(i);
        let mut i = instance(&pool, &b);
        // Where module A wrote (data at 16, 4096, 70000) module B sees its own initial bytes.
        for (addr, want) in [(0, b'B' as i32), (16, 0), (4096, 0), (70000, 0)] {
            assert_eq!(
                i.call("peek", &[Val::I32(addr)]).unwrap(),
                vec![Val::I32(want)]
            );
        }
        i.call("poke", &[]).unwrap();
    }
}

#[test]
fn host_functions_see_the_callers_memory_and_state() {
    let engine = engine();
    let pool = pool(&engine, 2, true);
    let pre = prepare(
        &pool,
        r#"(module
             (import "env" "record" (func $record (param i32 i32)))
             (memory 1) (data (i32.const 100) "hello host")
             (func (export "go") (call $record (i32.const 100) (i32.const 10)))
             (func (export "bad") (call $record (i32.const 65530) (i32.const 100))))"#,
    );
    let mut inst = pool
        .instantiate(&pre, &InstanceLimits::default(), Counter::default())
        .unwrap();
    inst.call("go", &[]).unwrap();
    assert_eq!(inst.data().seen, b"hello host");
    let Err(Halt::Trap(t)) = inst.call("bad", &[]) else {
        panic!("out-of-bounds range must trap in the host function")
    };
    assert_eq!(t.code, TrapCode::HostTrap);
    assert_eq!(t.host_message.as_deref(), Some("out of bounds"));
    assert!(
        t.backtrace.iter().any(|f| f.func_index == 2),
        "host traps carry the guest backtrace: {t}"
    );
}

#[test]
fn exits_and_host_traps_end_the_invocation() {
    let engine = engine();
    let pool = pool(&engine, 1, false);
    let pre = prepare(
        &pool,
        r#"(module
             (import "env" "exit" (func $exit (param i32)))
             (import "env" "fail" (func $fail))
             (func $inner (param i32) (call $exit (local.get 0)) (unreachable))
             (func (export "_start") (call $inner (i32.const 42)))
             (func (export "fail") (call $fail)))"#,
    );
    let mut inst = instance(&pool, &pre);
    match inst.call("_start", &[]) {
        Err(Halt::Exit { code, backtrace }) => {
            assert_eq!(code, 42);
            let funcs: Vec<u32> = backtrace.iter().map(|f| f.func_index).collect();
            assert_eq!(funcs, vec![2, 3], "innermost first: $inner then _start");
        }
        other => panic!("expected exit 42, got {other:?}"),
    }
    match inst.call("fail", &[]) {
        Err(Halt::Trap(t)) => assert_eq!(t.host_message.as_deref(), Some("host says no")),
        other => panic!("expected a host trap, got {other:?}"),
    }
    assert!(matches!(inst.call("nope", &[]), Err(Halt::Trap(_))));
}

#[test]
fn narrow_arguments_reach_host_functions_zero_extended() {
    let engine = engine();
    let pool = pool(&engine, 1, false);
    let pre = prepare(
        &pool,
        r#"(module
             (import "env" "narrow" (func $narrow (param i32 i64 i32)))
             ;; Spills 48 live 64-bit values across a call: its frame, which the host-call
             ;; trampoline's frame reuses next, is left full of values with high bits set.
             (func $nop)
             (func $fill (param i64) (result i64) (local i64 i64 i64 i64 i64 i64 i64 i64 i64 i64 i64 i64 i64 i64 i64 i64 i64 i64 i64 i64 i64 i64 i64 i64 i64 i64 i64 i64 i64 i64 i64 i64 i64 i64 i64 i64 i64 i64 i64 i64 i64 i64 i64 i64 i64 i64 i64 i64)
               (local.set 1 (i64.xor (local.get 0) (i64.const 0)))(local.set 2 (i64.xor (local.get 0) (i64.const 1)))(local.set 3 (i64.xor (local.get 0) (i64.const 2)))(local.set 4 (i64.xor (local.get 0) (i64.const 3)))(local.set 5 (i64.xor (local.get 0) (i64.const 4)))(local.set 6 (i64.xor (local.get 0) (i64.const 5)))(local.set 7 (i64.xor (local.get 0) (i64.const 6)))(local.set 8 (i64.xor (local.get 0) (i64.const 7)))(local.set 9 (i64.xor (local.get 0) (i64.const 8)))(local.set 10 (i64.xor (local.get 0) (i64.const 9)))(local.set 11 (i64.xor (local.get 0) (i64.const 10)))(local.set 12 (i64.xor (local.get 0) (i64.const 11)))(local.set 13 (i64.xor (local.get 0) (i64.const 12)))(local.set 14 (i64.xor (local.get 0) (i64.const 13)))(local.set 15 (i64.xor (local.get 0) (i64.const 14)))(local.set 16 (i64.xor (local.get 0) (i64.const 15)))(local.set 17 (i64.xor (local.get 0) (i64.const 16)))(local.set 18 (i64.xor (local.get 0) (i64.const 17)))(local.set 19 (i64.xor (local.get 0) (i64.const 18)))(local.set 20 (i64.xor (local.get 0) (i64.const 19)))(local.set 21 (i64.xor (local.get 0) (i64.const 20)))(local.set 22 (i64.xor (local.get 0) (i64.const 21)))(local.set 23 (i64.xor (local.get 0) (i64.const 22)))(local.set 24 (i64.xor (local.get 0) (i64.const 23)))(local.set 25 (i64.xor (local.get 0) (i64.const 24)))(local.set 26 (i64.xor (local.get 0) (i64.const 25)))(local.set 27 (i64.xor (local.get 0) (i64.const 26)))(local.set 28 (i64.xor (local.get 0) (i64.const 27)))(local.set 29 (i64.xor (local.get 0) (i64.const 28)))(local.set 30 (i64.xor (local.get 0) (i64.const 29)))(local.set 31 (i64.xor (local.get 0) (i64.const 30)))(local.set 32 (i64.xor (local.get 0) (i64.const 31)))(local.set 33 (i64.xor (local.get 0) (i64.const 32)))(local.set 34 (i64.xor (local.get 0) (i64.const 33)))(local.set 35 (i64.xor (local.get 0) (i64.const 34)))(local.set 36 (i64.xor (local.get 0) (i64.const 35)))(local.set 37 (i64.xor (local.get 0) (i64.const 36)))(local.set 38 (i64.xor (local.get 0) (i64.const 37)))(local.set 39 (i64.xor (local.get 0) (i64.const 38)))(local.set 40 (i64.xor (local.get 0) (i64.const 39)))(local.set 41 (i64.xor (local.get 0) (i64.const 40)))(local.set 42 (i64.xor (local.get 0) (i64.const 41)))(local.set 43 (i64.xor (local.get 0) (i64.const 42)))(local.set 44 (i64.xor (local.get 0) (i64.const 43)))(local.set 45 (i64.xor (local.get 0) (i64.const 44)))(local.set 46 (i64.xor (local.get 0) (i64.const 45)))(local.set 47 (i64.xor (local.get 0) (i64.const 46)))(local.set 48 (i64.xor (local.get 0) (i64.const 47)))
               (call $nop)
               (i64.const 0)(i64.add (local.get 1))(i64.add (local.get 2))(i64.add (local.get 3))(i64.add (local.get 4))(i64.add (local.get 5))(i64.add (local.get 6))(i64.add (local.get 7))(i64.add (local.get 8))(i64.add (local.get 9))(i64.add (local.get 10))(i64.add (local.get 11))(i64.add (local.get 12))(i64.add (local.get 13))(i64.add (local.get 14))(i64.add (local.get 15))(i64.add (local.get 16))(i64.add (local.get 17))(i64.add (local.get 18))(i64.add (local.get 19))(i64.add (local.get 20))(i64.add (local.get 21))(i64.add (local.get 22))(i64.add (local.get 23))(i64.add (local.get 24))(i64.add (local.get 25))(i64.add (local.get 26))(i64.add (local.get 27))(i64.add (local.get 28))(i64.add (local.get 29))(i64.add (local.get 30))(i64.add (local.get 31))(i64.add (local.get 32))(i64.add (local.get 33))(i64.add (local.get 34))(i64.add (local.get 35))(i64.add (local.get 36))(i64.add (local.get 37))(i64.add (local.get 38))(i64.add (local.get 39))(i64.add (local.get 40))(i64.add (local.get 41))(i64.add (local.get 42))(i64.add (local.get 43))(i64.add (local.get 44))(i64.add (local.get 45))(i64.add (local.get 46))(i64.add (local.get 47))(i64.add (local.get 48)))
             (func (export "go") (param i64)
               (drop (call $fill (local.get 0)))
               (call $narrow (i32.wrap_i64 (local.get 0)) (local.get 0)
                             (i32.wrap_i64 (i64.shr_u (local.get 0) (i64.const 1))))))"#,
    );
    let mut inst = instance(&pool, &pre);
    for v in [-1i64, 0x7fff_ffff_ffff_ffff, 0x1234_5678_9abc_def0] {
        inst.call("go", &[Val::I64(v)]).unwrap();
    }
}

#[test]
fn linking_checks_imports() {
    let engine = engine();
    let wrong_type = module(
        &engine,
        r#"(module (import "env" "add" (func (param i64))))"#,
    );
    let err = LinkedModule::new(&wrong_type, resolve).unwrap_err();
    assert!(
        matches!(&err, InstantiationError::Link(LinkError::IncompatibleImport { module, name, .. })
            if module == "env" && name == "add"),
        "{err}"
    );
    assert!(err.to_string().contains("env::add"), "{err}");
    let unknown = module(&engine, r#"(module (import "env" "nope" (func)))"#);
    let err = LinkedModule::new(&unknown, resolve).unwrap_err();
    assert!(
        matches!(&err, InstantiationError::Link(LinkError::UnknownImport { name, .. }) if name == "nope"),
        "{err}"
    );
    let memory = module(&engine, r#"(module (import "env" "m" (memory 1)))"#);
    let err = LinkedModule::new(&memory, resolve).unwrap_err();
    assert!(
        matches!(
            &err,
            InstantiationError::Link(LinkError::UnsupportedImportKind {
                kind: fnvm_abi::ExternKind::Memory,
                ..
            })
        ),
        "{err}"
    );
    let oob = module(
        &engine,
        r#"(module (memory 1) (data (i32.const 65535) "ab"))"#,
    );
    assert!(matches!(
        LinkedModule::new(&oob, resolve),
        Err(InstantiationError::Trap(t)) if t.code == TrapCode::MemoryOutOfBounds
    ));
    // A module that can never fit the pool is refused when prepared, not per request.
    let pool = InstancePool::new(
        &engine,
        PoolConfig {
            slots: 1,
            max_memory_pages: 2,
            ..PoolConfig::default()
        },
    )
    .unwrap();
    let big = LinkedModule::new(&module(&engine, "(module (memory 3))"), resolve).unwrap();
    assert!(matches!(
        pool.prepare(&big),
        Err(InstantiationError::Resource(
            fnvm_runtime::ResourceError::MemoryTooLarge {
                needed: 3,
                limit: 2
            }
        ))
    ));
    // And a module loaded by another engine is refused.
    let other = engine_with_ticker();
    let foreign = LinkedModule::new(&module(&other, "(module)"), resolve).unwrap();
    assert!(matches!(
        pool.prepare(&foreign),
        Err(InstantiationError::WrongEngine)
    ));
}

#[test]
fn per_instance_limits_hold() {
    let engine = engine();
    let pool = pool(&engine, 2, true);
    let pre = prepare(
        &pool,
        r#"(module (memory 1)
             (func (export "grow") (param i32) (result i32) (memory.grow (local.get 0)))
             (func $r (export "recurse") (param i32) (result i32)
               (i32.add (i32.const 1) (call $r (local.get 0))))
             (func (export "spin") (loop $l (br $l))))"#,
    );
    // maxMemory of 4 pages: growing to 4 works, beyond fails with -1.
    let limits = InstanceLimits {
        max_memory_bytes: Some(4 * 65536),
        ..InstanceLimits::default()
    };
    let mut inst = pool.instantiate(&pre, &limits, Counter::default()).unwrap();
    assert_eq!(
        inst.call("grow", &[Val::I32(3)]).unwrap(),
        vec![Val::I32(1)]
    );
    assert_eq!(
        inst.call("grow", &[Val::I32(1)]).unwrap(),
        vec![Val::I32(-1)]
    );
    drop(inst);
    // Another instance of the same module gets its own cap.
    let mut inst = instance(&pool, &pre);
    assert_eq!(
        inst.call("grow", &[Val::I32(10)]).unwrap(),
        vec![Val::I32(1)]
    );
    drop(inst);

    // Stack: a small stack overflows sooner, as a trap, and the slot stays usable.
    let small = InstanceLimits {
        max_wasm_stack: Some(64 * 1024),
        ..InstanceLimits::default()
    };
    for _ in 0..3 {
        let mut inst = pool.instantiate(&pre, &small, Counter::default()).unwrap();
        match inst.call("recurse", &[Val::I32(0)]) {
            Err(Halt::Trap(t)) => assert_eq!(t.code, TrapCode::StackOverflow),
            other => panic!("expected stack overflow, got {other:?}"),
        }
    }

    // A timeout needs an engine that counts time.
    let deadline = InstanceLimits {
        timeout: Some(Duration::from_millis(20)),
        ..InstanceLimits::default()
    };
    assert!(matches!(
        pool.instantiate(&pre, &deadline, Counter::default()),
        Err(InstantiationError::NoEpochTicker)
    ));
    // Deadline: a runaway loop is interrupted.
    let engine = engine_with_ticker();
    let pool = self::pool(&engine, 1, true);
    let pre = prepare(
        &pool,
        r#"(module (func (export "spin") (loop $l (br $l))))"#,
    );
    let mut inst = pool
        .instantiate(&pre, &deadline, Counter::default())
        .unwrap();
    let r = inst.call("spin", &[]);
    assert!(matches!(r, Err(Halt::Trap(t)) if t.is_deadline()));
}

#[test]
fn an_exhausted_pool_waits_then_fails_clearly() {
    let engine = engine();
    let pool = InstancePool::new(
        &engine,
        PoolConfig {
            slots: 2,
            acquire_timeout: Duration::from_millis(50),
            ..PoolConfig::default()
        },
    )
    .unwrap();
    let pre = prepare(&pool, "(module (memory 1))");
    let a = instance(&pool, &pre);
    let b = instance(&pool, &pre);
    assert_ne!(a.slot_index(), b.slot_index());
    let err = pool
        .instantiate(&pre, &InstanceLimits::default(), Counter::default())
        .unwrap_err();
    assert!(
        matches!(err, InstantiationError::PoolExhausted { slots: 2, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("exhausted"));
    // A waiter gets the slot that is given back while it waits.
    let pool2 = pool.clone();
    let pre2 = pre.clone();
    let waiter = std::thread::spawn(move || {
        let long = InstancePool::clone(&pool2);
        let _ = long.stats();
        pool2
            .instantiate(&pre2, &InstanceLimits::default(), Counter::default())
            .map(|i| i.slot_index())
    });
    std::thread::sleep(Duration::from_millis(10));
    drop(a);
    let got = waiter.join().unwrap();
    assert!(got.is_ok(), "{got:?}");
    drop(b);
}

#[test]
fn resident_pages_count_what_the_guest_touched() {
    let engine = engine();
    let pool = InstancePool::new(
        &engine,
        PoolConfig {
            slots: 1,
            background_reset: false,
            keep_resident_bytes: 1 << 20,
            ..PoolConfig::default()
        },
    )
    .unwrap();
    let pre = prepare(
        &pool,
        r#"(module (memory 64)
             (func (export "touch") (param i32) (local i32)
               (loop $l
                 (i32.store (i32.mul (local.get 1) (i32.const 4096)) (i32.const 1))
                 (local.set 1 (i32.add (local.get 1) (i32.const 1)))
                 (br_if $l (i32.lt_u (local.get 1) (local.get 0))))))"#,
    );
    let mut inst = instance(&pool, &pre);
    let before = inst.resident_memory_pages().unwrap();
    inst.call("touch", &[Val::I32(100)]).unwrap();
    let after = inst.resident_memory_pages().unwrap();
    assert_eq!(after - before, 100, "before {before}, after {after}");
    assert!(inst.resident_bytes().unwrap() >= 100 * 4096);
    drop(inst);
    // The 100 written pages are within the keep-resident size: the next instance finds them
    // resident (zeroed again); asking for exact accounting (debug reports) starts it with
    // nothing resident instead.
    let inst = instance(&pool, &pre);
    assert_eq!(inst.resident_memory_pages().unwrap(), 100);
    drop(inst);
    let exact = InstanceLimits {
        exact_page_accounting: true,
        ..InstanceLimits::default()
    };
    let mut inst = pool.instantiate(&pre, &exact, Counter::default()).unwrap();
    assert_eq!(inst.resident_memory_pages().unwrap(), 0);
    inst.call("touch", &[Val::I32(3)]).unwrap();
    assert_eq!(inst.resident_memory_pages().unwrap(), 3);
    drop(inst);
    // Beyond the keep-resident size (1 MiB here) everything touched is discarded.
    let mut inst = instance(&pool, &pre);
    inst.call("touch", &[Val::I32(1024)]).unwrap();
    drop(inst);
    let inst = instance(&pool, &pre);
    assert_eq!(inst.resident_memory_pages().unwrap(), 0);
    drop(inst);

    // A small memory keeps the pages it wrote resident (restored to their initial contents),
    // so the next instance takes no page fault for them.
    let small = prepare(
        &pool,
        r#"(module (memory 2) (data (i32.const 8192) "image")
             (func (export "touch") (param i32) (local i32)
               (loop $l
                 (i32.store (i32.mul (local.get 1) (i32.const 4096)) (i32.const 1))
                 (local.set 1 (i32.add (local.get 1) (i32.const 1)))
                 (br_if $l (i32.lt_u (local.get 1) (local.get 0)))))
             (func (export "sum") (result i32) (local i32 i32)
               (loop $l
                 (local.set 1 (i32.add (local.get 1) (i32.load8_u (local.get 0))))
                 (local.set 0 (i32.add (local.get 0) (i32.const 1)))
                 (br_if $l (i32.lt_u (local.get 0) (i32.const 131072))))
               (local.get 1)))"#,
    );
    let image_sum: i32 = b"image".iter().map(|b| *b as i32).sum();
    let mut inst = instance(&pool, &small);
    inst.call("touch", &[Val::I32(5)]).unwrap();
    // Page 2 starts with the image: the 4-byte store of 1 covers "imag", leaving "e".
    let touched_sum = b'e' as i32 + 5;
    assert_eq!(inst.call("sum", &[]).unwrap(), vec![Val::I32(touched_sum)]);
    drop(inst);
    let mut inst = instance(&pool, &small);
    assert!(inst.resident_memory_pages().unwrap() >= 5);
    assert_eq!(inst.call("sum", &[]).unwrap(), vec![Val::I32(image_sum)]);
}

#[test]
fn instances_run_on_many_threads_at_once() {
    let engine = engine();
    let pool = pool(&engine, 4, true);
    let pre = prepare(&pool, STATEFUL);
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (pool, pre) = (pool.clone(), pre.clone());
            std::thread::spawn(move || {
                for _ in 0..300 {
                    let mut inst = pool
                        .instantiate(&pre, &InstanceLimits::default(), Counter::default())
                        .unwrap();
                    assert_eq!(inst.call("check", &[]).unwrap(), vec![Val::I32(0)]);
                    inst.call("scribble", &[]).unwrap();
                    // A trap on one thread does not disturb the others.
                    let _ = inst.call("add3", &[Val::I32(1)]);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    // Every slot comes back once the reset thread catches up.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while pool.stats().in_use != 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(pool.stats().in_use, 0);
}

#[test]
fn instances_outlive_their_pool_handle() {
    let engine = engine();
    let pool = pool(&engine, 2, true);
    let pre = prepare(&pool, STATEFUL);
    let mut inst = instance(&pool, &pre);
    // The last pool handle goes (its reset thread stops) while the instance still runs.
    drop(pool);
    assert_eq!(inst.call("check", &[]).unwrap(), vec![Val::I32(0)]);
    inst.call("scribble", &[]).unwrap();
    drop(inst);
}

#[test]
fn instances_prefer_slots_set_up_for_their_module() {
    let engine = engine();
    let pool = pool(&engine, 4, false);
    let a = prepare(&pool, STATEFUL);
    let b = prepare(&pool, "(module (memory 1) (func (export \"_start\")))");
    for _ in 0..50 {
        for pre in [&a, &b] {
            let mut inst = instance(&pool, pre);
            inst.call(
                if pre.module().info().exports.len() > 2 {
                    "check"
                } else {
                    "_start"
                },
                &[],
            )
            .unwrap();
        }
    }
    // One switch per module to set a slot up, none afterwards although the two alternate.
    assert_eq!(pool.stats().module_switches, 2);
}

#[test]
fn only_plain_values_cross_the_pooled_instance_boundary() {
    let engine = engine();
    let pool = pool(&engine, 1, false);
    let pre = prepare(
        &pool,
        r#"(module
             (func $f)
             (elem declare func $f)
             (func (export "id") (param i64 externref) (result i64 externref)
               (local.get 0) (local.get 1))
             (func (export "fref") (result funcref) (ref.func $f)))"#,
    );
    let mut inst = instance(&pool, &pre);
    assert_eq!(
        inst.call("id", &[Val::I64(-5), Val::ExternRef(Some(7))])
            .unwrap(),
        vec![Val::I64(-5), Val::ExternRef(Some(7))]
    );
    assert!(matches!(
        inst.call("id", &[Val::I32(1), Val::ExternRef(None)]),
        Err(Halt::Trap(_))
    ));
    match inst.call("fref", &[]) {
        Err(Halt::Trap(t)) => assert!(t.to_string().contains("function references"), "{t}"),
        other => panic!("a non-null funcref must not come back as {other:?}"),
    }
}

/// A guest that reads and writes 8 bytes anywhere in its memory (4 pages: 64 host pages, the
/// first an image page), or has the kernel write them.
const POKE: &str = r#"(module
  (import "env" "kernel_write" (func $kernel_write (param i32)))
  (memory 4)
  (func (export "kernel_write") (param i32) (call $kernel_write (local.get 0)))
  (data (i32.const 0) "pristine")
  (func (export "peek") (param i32) (result i64) (i64.load (local.get 0)))
  (func (export "poke") (param i32 i64) (i64.store (local.get 0) (local.get 1))))"#;

fn peek(inst: &mut PooledInstance<Counter>, addr: i32) -> Val {
    inst.call("peek", &[Val::I32(addr)]).unwrap()[0]
}

fn poke(inst: &mut PooledInstance<Counter>, addr: i32) {
    inst.call("poke", &[Val::I32(addr), Val::I64(-1)]).unwrap();
}

/// What a fresh instance of POKE reads at `addr`.
fn initial(addr: i32) -> Val {
    Val::I64(if addr == 0 { 0x656e697473697270 } else { 0 })
}

#[test]
fn resets_that_skip_the_page_table_scan_still_restore_every_written_page() {
    // Resets skip the scan when the invoking thread took no page fault, except where
    // transparent huge pages are always on (runtime/src/faults.rs).
    let thp_always = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled")
        .is_ok_and(|s| s.contains("[always]"));
    let engine = engine();
    let pool = pool(&engine, 1, false);
    let pre = prepare(&pool, POKE);
    // Every round writes a page no instance wrote before (a fault: the reset must scan) and
    // the pages earlier rounds wrote (already private copies: no fault), after checking that
    // all of them read as they did at the start.
    let pages: Vec<i32> = (0..40).map(|p| p * 4096 + 8 * (p % 3)).collect();
    for (round, &new) in pages.iter().enumerate() {
        let mut inst = instance(&pool, &pre);
        for &addr in &pages[..=round] {
            assert_eq!(
                peek(&mut inst, addr),
                initial(addr),
                "round {round}, {addr}"
            );
        }
        for &addr in &pages[..round] {
            poke(&mut inst, addr);
        }
        poke(&mut inst, new);
    }
    // Now rounds that only write pages written before: no fault, no scan (allowing for a
    // fault or two of the test itself, such as its allocations growing the heap).
    let before = pool.page_table_scans();
    let rounds = 30;
    for round in 0..rounds {
        let mut inst = instance(&pool, &pre);
        for &addr in &pages {
            assert_eq!(
                peek(&mut inst, addr),
                initial(addr),
                "round {round}, {addr}"
            );
            poke(&mut inst, addr);
        }
    }
    let scans = pool.page_table_scans() - before;
    if thp_always {
        assert_eq!(scans, rounds);
    } else {
        assert!(scans <= 3, "{scans} of {rounds} resets scanned");
    }
    // The kernel writing a fresh page (a system call's copy into guest memory) faults too.
    for fresh in [53 * 4096, 54 * 4096 + 16] {
        let mut inst = instance(&pool, &pre);
        inst.call("kernel_write", &[Val::I32(fresh)]).unwrap();
        assert_eq!(
            peek(&mut inst, fresh),
            Val::I64(0xeeeeeeeeeeeeeeee_u64 as i64)
        );
        drop(inst);
        let mut inst = instance(&pool, &pre);
        assert_eq!(
            peek(&mut inst, fresh),
            initial(fresh),
            "written by the kernel"
        );
    }
    // An instance used on another thread: the faults there are not this thread's, so its
    // reset must scan. The helper thread and the channels exist (and have been used once)
    // before, so that this thread takes no fault of its own around the instance.
    let (to_helper, helper_rx) = std::sync::mpsc::channel::<(PooledInstance<Counter>, i32)>();
    let (to_main, main_rx) = std::sync::mpsc::channel::<PooledInstance<Counter>>();
    let helper = std::thread::spawn(move || {
        for (mut inst, addr) in helper_rx {
            assert_eq!(peek(&mut inst, addr), initial(addr));
            poke(&mut inst, addr);
            to_main.send(inst).unwrap();
        }
    });
    for fresh in [50 * 4096, 51 * 4096, 52 * 4096] {
        let inst = instance(&pool, &pre);
        to_helper.send((inst, fresh)).unwrap();
        drop(main_rx.recv().unwrap());
        let mut inst = instance(&pool, &pre);
        assert_eq!(
            peek(&mut inst, fresh),
            initial(fresh),
            "written on another thread"
        );
        for &addr in &pages {
            assert_eq!(peek(&mut inst, addr), initial(addr));
        }
    }
    drop(to_helper);
    helper.join().unwrap();
}
