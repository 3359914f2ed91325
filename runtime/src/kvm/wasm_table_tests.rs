//! Tests of a [`WasmVm`]'s tables, element segments and start function: `call_indirect`
//! through tables in the instance region, the table builtins run on the host, an imported host
//! function reached through a table, and resets that bring all of it back. Checked against the
//! same module run in process. They need /dev/kvm like the other KVM tests (skipping without
//! it, failing under `CI=true`).

use super::tests::skip;
use super::wasm_tests::{call, compile, i, same_as_in_process, wasm_vm};
use super::*;
use crate::{Caller, Engine, EngineConfig, Extern, HostExit, HostFuncDef, LinkedModule, Store};
use crate::{Trap, Val};
use fnvm_abi::{FuncType, TrapCode, ValType};

const TABLES: &str = r#"
(module $tables
  (type $i2i (func (param i32) (result i32)))
  (type $i2l (func (param i32) (result i64)))
  (table $t 4 10 funcref)
  (table $u 1 funcref)
  (elem (table $t) (i32.const 1) func $double $square)
  (elem (table $u) (i32.const 0) func $square)
  (elem $pass func $inc $double)
  (global $started (mut i32) (i32.const 0))
  (func $start
    global.get $started
    i32.const 1
    i32.add
    global.set $started)
  (start $start)
  (func $double (param i32) (result i32)
    local.get 0
    i32.const 2
    i32.mul)
  (func $square (param i32) (result i32)
    local.get 0
    local.get 0
    i32.mul)
  (func $inc (param i32) (result i32)
    local.get 0
    i32.const 1
    i32.add)
  (func (export "started") (result i32)
    global.get $started)
  (func (export "call") (param i32 i32) (result i32)
    local.get 1
    local.get 0
    call_indirect $t (type $i2i))
  (func (export "call_u") (param i32 i32) (result i32)
    local.get 1
    local.get 0
    call_indirect $u (type $i2i))
  (func (export "wrong_type") (param i32) (result i64)
    i32.const 3
    local.get 0
    call_indirect $t (type $i2l))
  (func (export "size") (result i32)
    table.size $t)
  (func (export "grow") (param i32) (result i32)
    ref.null func
    local.get 0
    table.grow $t)
  (func (export "grow_with_inc") (param i32) (result i32)
    ref.func $inc
    local.get 0
    table.grow $t)
  (func (export "init") (param i32 i32 i32)
    local.get 0
    local.get 1
    local.get 2
    table.init $t $pass)
  (func (export "drop")
    elem.drop $pass)
  (func (export "copy") (param i32 i32 i32)
    local.get 0
    local.get 1
    local.get 2
    table.copy $t $t)
  (func (export "copy_to_u") (param i32 i32 i32)
    local.get 0
    local.get 1
    local.get 2
    table.copy $u $t)
  (func (export "fill_inc") (param i32 i32)
    local.get 0
    ref.func $inc
    local.get 1
    table.fill $t)
  (func (export "set_null") (param i32)
    local.get 0
    ref.null func
    table.set $t)
  (func (export "is_null") (param i32) (result i32)
    local.get 0
    table.get $t
    ref.is_null))
"#;

/// The calls both sides make, in order (state carries over).
fn script() -> Vec<(&'static str, Vec<Val>)> {
    vec![
        ("started", vec![]),
        ("call", vec![i(1), i(5)]),
        ("call", vec![i(2), i(5)]),
        ("call", vec![i(0), i(5)]),
        ("call", vec![i(4), i(5)]),
        ("call", vec![i(-1), i(5)]),
        ("call_u", vec![i(0), i(6)]),
        ("wrong_type", vec![i(1)]),
        ("size", vec![]),
        ("grow", vec![i(2)]),
        ("size", vec![]),
        ("call", vec![i(5), i(1)]),
        ("grow_with_inc", vec![i(1)]),
        ("call", vec![i(6), i(1)]),
        ("grow", vec![i(10)]),
        ("init", vec![i(0), i(0), i(2)]),
        ("call", vec![i(0), i(1)]),
        ("call", vec![i(1), i(1)]),
        ("init", vec![i(5), i(0), i(2)]),
        ("init", vec![i(6), i(0), i(2)]),
        ("init", vec![i(0), i(1), i(2)]),
        ("drop", vec![]),
        ("init", vec![i(0), i(0), i(1)]),
        ("init", vec![i(0), i(0), i(0)]),
        ("copy", vec![i(2), i(0), i(3)]),
        ("call", vec![i(2), i(7)]),
        ("call", vec![i(4), i(7)]),
        ("copy", vec![i(5), i(0), i(3)]),
        ("copy_to_u", vec![i(0), i(2), i(1)]),
        ("call_u", vec![i(0), i(6)]),
        ("fill_inc", vec![i(3), i(4)]),
        ("call", vec![i(6), i(1)]),
        ("fill_inc", vec![i(5), i(4)]),
        ("set_null", vec![i(1)]),
        ("is_null", vec![i(1)]),
        ("is_null", vec![i(2)]),
        ("call", vec![i(1), i(1)]),
        ("set_null", vec![i(7)]),
        ("started", vec![]),
    ]
}

#[test]
fn tables_in_the_vm_behave_as_in_process() {
    let engine = Engine::new(EngineConfig::default()).unwrap();
    let module = compile(&engine, TABLES);
    let Some(mut vm) = wasm_vm(&module) else {
        return;
    };
    let traps = same_as_in_process(&engine, &module, &mut vm, script());
    // Null entries, bounds and signatures were all checked.
    assert_eq!(traps.len(), 4, "{traps:?}");
}

#[test]
fn reset_brings_back_the_tables_segments_and_start_state() {
    let engine = Engine::new(EngineConfig::default()).unwrap();
    let module = compile(&engine, TABLES);
    let Some(mut vm) = wasm_vm(&module) else {
        return;
    };
    let oob = expected_oob_code(&engine);
    for _ in 0..3 {
        // The start function ran once per instance.
        assert_eq!(call(&mut vm, "started", &[]), Ok(vec![i(1)]));
        assert_eq!(call(&mut vm, "size", &[]), Ok(vec![i(4)]));
        assert_eq!(call(&mut vm, "call", &[i(1), i(5)]), Ok(vec![i(10)]));
        assert!(call(&mut vm, "call", &[i(0), i(5)]).is_err());
        call(&mut vm, "grow_with_inc", &[i(3)]).unwrap();
        call(&mut vm, "init", &[i(0), i(0), i(1)]).unwrap();
        call(&mut vm, "drop", &[]).unwrap();
        call(&mut vm, "set_null", &[i(1)]).unwrap();
        assert_eq!(call(&mut vm, "call", &[i(6), i(5)]), Ok(vec![i(6)]));
        vm.reset(()).unwrap();
        // Grown elements are beyond the length again (and were cleared).
        assert_eq!(
            call(&mut vm, "call", &[i(6), i(5)]).map_err(|t| t.code),
            Err(oob)
        );
        vm.reset(()).unwrap();
    }
}

/// The trap code of `call_indirect` past the table's end in process.
fn expected_oob_code(engine: &Engine) -> TrapCode {
    let module = compile(engine, TABLES);
    let mut store = Store::new(engine);
    let inst = store.instantiate(&module, &[]).unwrap();
    let Some(Extern::Func(f)) = store.get_export(inst, "call") else {
        panic!("no call export");
    };
    match store.call(f, &[i(6), i(5)]) {
        Err(Trap { code, .. }) => code,
        Ok(v) => panic!("call past the end returned {v:?}"),
    }
}

fn triple(_: &mut Caller<'_, ()>, v: &mut [u64]) -> Result<(), HostExit> {
    v[0] = u64::from((v[0] as u32).wrapping_mul(3));
    Ok(())
}

#[test]
fn an_imported_host_function_is_called_through_a_table() {
    let engine = Engine::new(EngineConfig::default()).unwrap();
    let module = compile(
        &engine,
        r#"(module
          (type $i2i (func (param i32) (result i32)))
          (import "host" "triple" (func $triple (type $i2i)))
          (table 2 funcref)
          (elem (i32.const 0) func $triple $local)
          (func $local (param i32) (result i32)
            local.get 0
            call $triple
            i32.const 1
            i32.add)
          (func (export "call") (param i32 i32) (result i32)
            local.get 1
            local.get 0
            call_indirect (type $i2i)))"#,
    );
    let linked = LinkedModule::new(&module, |_| {
        Some(HostFuncDef {
            ty: FuncType {
                params: vec![ValType::I32],
                results: vec![ValType::I32],
            },
            func: triple,
            write_behind: None,
        })
    })
    .unwrap();
    let kvm = match Kvm::open() {
        Ok(kvm) => kvm,
        Err(e) => return skip(&e),
    };
    let mut vm = match WasmVm::with_host(&kvm, &linked, (), &WasmVmConfig::default()) {
        Ok(vm) => vm,
        Err(WasmVmError::Vm(e)) => return skip(&e),
        Err(e) => panic!("{e}"),
    };
    assert_eq!(call(&mut vm, "call", &[i(0), i(7)]), Ok(vec![i(21)]));
    assert_eq!(call(&mut vm, "call", &[i(1), i(7)]), Ok(vec![i(22)]));
}
