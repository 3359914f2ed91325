//! Deadlines: a runaway guest ends with an `Interrupt` trap once the engine's epoch reaches the
//! store's deadline, checked at function entries and loop headers.

use crate::engine::*;
use fnvm_abi::TrapCode;
use fnvm_runtime::Val;

const RUNAWAY: &str = r#"(module
  (func (export "spin") (loop $l (br $l)))
  ;; No loop at all: only the checks at function entry can stop it.
  (func $fib (export "fib") (param i32) (result i32)
    (if (result i32) (i32.lt_u (local.get 0) (i32.const 2))
      (then (local.get 0))
      (else (i32.add (call $fib (i32.sub (local.get 0) (i32.const 1)))
                     (call $fib (i32.sub (local.get 0) (i32.const 2)))))))
  (func (export "count") (param i32) (result i32) (local i32)
    (loop $l
      (local.set 1 (i32.add (local.get 1) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get 1) (local.get 0))))
    (local.get 1)))"#;

#[test]
fn runaway_loop_times_out() {
    let engine = engine_with_ticker();
    let (mut store, inst) = instantiate(&engine, RUNAWAY);
    for (name, args) in [("spin", vec![]), ("fib", vec![Val::I32(60)])] {
        store.set_epoch_deadline(2);
        let f = func(&mut store, inst, name);
        let trap = store.call(f, &args).unwrap_err();
        assert_eq!(trap.code, TrapCode::Interrupt, "{name}: {trap}");
    }
    // With a generous deadline, finite work completes.
    store.set_epoch_deadline(1_000_000);
    let f = func(&mut store, inst, "count");
    assert_eq!(
        store.call(f, &[Val::I32(100_000)]).unwrap(),
        vec![Val::I32(100_000)]
    );
}

#[test]
fn without_a_deadline_nothing_interrupts() {
    let engine = engine();
    let (mut store, inst) = instantiate(&engine, RUNAWAY);
    for _ in 0..10 {
        engine.increment_epoch();
    }
    let f = func(&mut store, inst, "count");
    assert_eq!(
        store.call(f, &[Val::I32(1000)]).unwrap(),
        vec![Val::I32(1000)]
    );
}
