//! Tests of a [`WasmVm`]'s linear memory: data segments, out-of-bounds traps from unmapped guest
//! pages, `memory.grow` mapping new pages, and the memory builtins, each checked against the same
//! module run in process. They need /dev/kvm like the other KVM tests (skipping without it,
//! failing under `CI=true`).

use super::wasm_tests::{call, compile, i, same_as_in_process, wasm_vm};
use super::*;
use crate::{Engine, EngineConfig, Val};
use fnvm_abi::TrapCode;

const MEMORY: &str = r#"
(module $mem
  (memory (export "memory") 1 4)
  (data (i32.const 16) "hello")
  (data $passive "passive bytes")
  (func (export "load8") (param i32) (result i32)
    local.get 0
    i32.load8_u)
  (func (export "load64") (param i32) (result i64)
    local.get 0
    i64.load)
  (func (export "load_far") (param i32) (result i32)
    local.get 0
    i32.load8_u offset=0x7fff0000)
  (func (export "store8") (param i32 i32)
    local.get 0
    local.get 1
    i32.store8)
  (func (export "grow") (param i32) (result i32)
    local.get 0
    memory.grow)
  (func (export "size") (result i32)
    memory.size)
  (func (export "fill") (param i32 i32 i32)
    local.get 0
    local.get 1
    local.get 2
    memory.fill)
  (func (export "copy") (param i32 i32 i32)
    local.get 0
    local.get 1
    local.get 2
    memory.copy)
  (func (export "init") (param i32 i32 i32)
    local.get 0
    local.get 1
    local.get 2
    memory.init $passive)
  (func (export "drop")
    data.drop $passive))
"#;

const PAGE: i32 = 65536;

/// The calls both sides make, in order (state carries over from one to the next).
fn script() -> Vec<(&'static str, Vec<Val>)> {
    vec![
        ("load8", vec![i(16)]),
        ("load8", vec![i(20)]),
        ("load64", vec![i(16)]),
        ("load8", vec![i(PAGE - 1)]),
        ("load8", vec![i(PAGE)]),
        ("load64", vec![i(PAGE - 4)]),
        ("load8", vec![i(-1)]),
        ("load_far", vec![i(0)]),
        ("store8", vec![i(PAGE), i(1)]),
        ("size", vec![]),
        ("grow", vec![i(1)]),
        ("size", vec![]),
        ("load8", vec![i(PAGE)]),
        ("store8", vec![i(2 * PAGE - 1), i(0x5a)]),
        ("load8", vec![i(2 * PAGE - 1)]),
        ("load8", vec![i(2 * PAGE)]),
        ("grow", vec![i(3)]),
        ("grow", vec![i(0)]),
        ("grow", vec![i(2)]),
        ("size", vec![]),
        ("store8", vec![i(4 * PAGE - 1), i(7)]),
        ("load8", vec![i(4 * PAGE - 1)]),
        ("load8", vec![i(4 * PAGE)]),
        ("grow", vec![i(1)]),
        ("fill", vec![i(100), i(0x41), i(10)]),
        ("load64", vec![i(100)]),
        ("fill", vec![i(4 * PAGE - 5), i(1), i(10)]),
        ("copy", vec![i(200), i(16), i(5)]),
        ("load64", vec![i(200)]),
        ("copy", vec![i(18), i(16), i(5)]),
        ("load64", vec![i(16)]),
        ("copy", vec![i(0), i(4 * PAGE - 2), i(3)]),
        ("init", vec![i(300), i(0), i(7)]),
        ("load64", vec![i(300)]),
        ("init", vec![i(300), i(10), i(10)]),
        ("drop", vec![]),
        ("init", vec![i(300), i(0), i(1)]),
        ("init", vec![i(300), i(0), i(0)]),
    ]
}

#[test]
fn memory_in_the_vm_behaves_as_in_process() {
    let engine = Engine::new(EngineConfig::default()).unwrap();
    let module = compile(&engine, MEMORY);
    let Some(mut vm) = wasm_vm(&module) else {
        return;
    };
    same_as_in_process(&engine, &module, &mut vm, script());
    // The script hits every kind of outcome.
    assert_eq!(vm.memory_pages(), 4);
    assert_eq!(vm.memory().unwrap()[4 * PAGE as usize - 1], 7);
}

#[test]
fn out_of_bounds_accesses_trap_and_name_the_function() {
    let engine = Engine::new(EngineConfig::default()).unwrap();
    let module = compile(&engine, MEMORY);
    let Some(mut vm) = wasm_vm(&module) else {
        return;
    };
    for addr in [PAGE, 3 * PAGE, i32::MAX, -1] {
        let trap = call(&mut vm, "load8", &[i(addr)]).unwrap_err();
        assert_eq!(trap.code, TrapCode::MemoryOutOfBounds, "{addr:#x}");
        assert_eq!(trap.backtrace[0].func_index, 0);
        assert_eq!(call(&mut vm, "load8", &[i(16)]), Ok(vec![i(b'h'.into())]));
    }
}

#[test]
fn the_guest_maps_only_the_accessible_pages_and_grow_adds_them() {
    let engine = Engine::new(EngineConfig::default()).unwrap();
    let module = compile(&engine, MEMORY);
    let Some(mut vm) = wasm_vm(&module) else {
        return;
    };
    let region = vm.memory_region().expect("a memory slot");
    // The slot covers the declared maximum (4 pages), not the reservation.
    assert_eq!(region.end - region.start, 4 * PAGE as u64);
    let base = region.start;
    let flags = |vm: &WasmVm, gva: u64| {
        translate(vm.vm().memory(), vm.page_table_root(), gva).map(|t| t.flags)
    };
    assert_eq!(flags(&vm, base), Some(PageFlags::USER_DATA));
    assert_eq!(
        flags(&vm, base + PAGE as u64 - 1),
        Some(PageFlags::USER_DATA)
    );
    assert_eq!(flags(&vm, base + PAGE as u64), None);
    assert_eq!(flags(&vm, base - 1), None);
    assert_eq!(call(&mut vm, "grow", &[i(2)]), Ok(vec![i(1)]));
    assert_eq!(
        flags(&vm, base + 3 * PAGE as u64 - 1),
        Some(PageFlags::USER_DATA)
    );
    assert_eq!(flags(&vm, base + 3 * PAGE as u64), None);
    // The guest sees the memory at its host address, in the memory's own slot.
    let t = translate(vm.vm().memory(), vm.page_table_root(), base + 5).unwrap();
    let slot = &vm.vm().slots()[3];
    assert_eq!(t.gpa, slot.guest_phys_addr + 5);
}

#[test]
fn memory_without_a_maximum_is_capped_and_grows_to_the_cap() {
    let engine = Engine::new(EngineConfig::default()).unwrap();
    let module = compile(
        &engine,
        r#"(module
          (memory 0)
          (func (export "grow") (param i32) (result i32)
            local.get 0
            memory.grow)
          (func (export "load8") (param i32) (result i32)
            local.get 0
            i32.load8_u))"#,
    );
    let Some(mut vm) = wasm_vm(&module) else {
        return;
    };
    // No page at all: every access traps.
    assert_eq!(
        call(&mut vm, "load8", &[i(0)]).unwrap_err().code,
        TrapCode::MemoryOutOfBounds
    );
    assert_eq!(call(&mut vm, "grow", &[i(16385)]), Ok(vec![i(-1)]));
    assert_eq!(call(&mut vm, "grow", &[i(16)]), Ok(vec![i(0)]));
    assert_eq!(call(&mut vm, "load8", &[i(16 * PAGE - 1)]), Ok(vec![i(0)]));
    assert_eq!(call(&mut vm, "grow", &[i(16384 - 16)]), Ok(vec![i(16)]));
    // The last byte of the 1 GiB cap is accessible, the next is not.
    assert_eq!(call(&mut vm, "load8", &[i(0x3fff_ffff)]), Ok(vec![i(0)]));
    assert_eq!(
        call(&mut vm, "load8", &[i(0x4000_0000)]).unwrap_err().code,
        TrapCode::MemoryOutOfBounds
    );
    assert_eq!(call(&mut vm, "grow", &[i(1)]), Ok(vec![i(-1)]));
}

#[test]
fn reset_restores_the_initial_memory_and_unmaps_grown_pages() {
    let engine = Engine::new(EngineConfig::default()).unwrap();
    let module = compile(&engine, MEMORY);
    let Some(mut vm) = wasm_vm(&module) else {
        return;
    };
    let base = vm.memory_region().unwrap().start;
    for round in 0..3 {
        assert_eq!(call(&mut vm, "load8", &[i(16)]), Ok(vec![i(b'h'.into())]));
        assert_eq!(call(&mut vm, "load8", &[i(1000)]), Ok(vec![i(0)]));
        assert_eq!(
            call(&mut vm, "grow", &[i(2)]),
            Ok(vec![i(1)]),
            "round {round}"
        );
        call(&mut vm, "store8", &[i(16), i(b'J'.into())]).unwrap();
        call(&mut vm, "store8", &[i(1000), i(1)]).unwrap();
        call(&mut vm, "store8", &[i(2 * PAGE + 5), i(9)]).unwrap();
        call(&mut vm, "drop", &[]).unwrap();
        assert_eq!(call(&mut vm, "load8", &[i(2 * PAGE + 5)]), Ok(vec![i(9)]));
        vm.reset(()).unwrap();
        assert_eq!(vm.memory_pages(), 1);
        let mapped = translate(vm.vm().memory(), vm.page_table_root(), base + PAGE as u64);
        assert_eq!(mapped, None);
        // The grown page is gone for the guest, though it ran there before the reset.
        assert_eq!(
            call(&mut vm, "load8", &[i(2 * PAGE + 5)]).unwrap_err().code,
            TrapCode::MemoryOutOfBounds
        );
        assert_eq!(
            call(&mut vm, "load8", &[i(PAGE)]).unwrap_err().code,
            TrapCode::MemoryOutOfBounds
        );
        // The passive segment is back.
        call(&mut vm, "init", &[i(300), i(0), i(7)]).unwrap();
        assert_eq!(call(&mut vm, "load8", &[i(300)]), Ok(vec![i(b'p'.into())]));
        vm.reset(()).unwrap();
    }
}
