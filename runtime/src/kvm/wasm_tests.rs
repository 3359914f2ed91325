//! Tests of [`WasmVm`]: code from the real compiler, run in a micro-VM, checked against the same
//! module run in process. Like the substrate's tests, they skip (with a note on stderr) when
//! /dev/kvm is unusable, except in CI (`CI=true`), where that is a failure.

use super::tests::skip;
use super::*;
use crate::{Engine, EngineConfig, Extern, Halt, Module, Store, Trap, Val};
use fnvm_abi::TrapCode;

const FUNCS: &str = r#"
(module $funcs
  (func $fib (export "fib") (param i32) (result i32)
    local.get 0
    i32.const 2
    i32.lt_s
    if (result i32)
      local.get 0
    else
      local.get 0
      i32.const 1
      i32.sub
      call $fib
      local.get 0
      i32.const 2
      i32.sub
      call $fib
      i32.add
    end)
  (func (export "div") (param i32 i32) (result i32)
    local.get 0
    local.get 1
    i32.div_s)
  (func $boom (export "boom")
    unreachable)
  (func $deep (export "deep") (param i64) (result i64)
    local.get 0
    i64.const 1
    i64.add
    call $deep)
  (func (export "hypot") (param f64 f64) (result f64)
    local.get 0
    local.get 0
    f64.mul
    local.get 1
    local.get 1
    f64.mul
    f64.add
    f64.sqrt)
  (func (export "spin") (result i32)
    (loop $l (br $l))
    i32.const 0)
  (global $count (mut i32) (i32.const 5))
  (func (export "bump") (result i32)
    global.get $count
    i32.const 1
    i32.add
    global.set $count
    global.get $count))
"#;

pub(super) fn compile(engine: &Engine, wat: &str) -> Module {
    let wasm = wat::parse_str(wat).unwrap();
    let artifact =
        fnvm_compiler::compile(&wasm, &fnvm_compiler::CompileOptions::default()).unwrap();
    Module::from_artifact(engine, &artifact).unwrap()
}

/// A VM running `module`, or `None` (after `skip`) without a usable /dev/kvm.
pub(super) fn wasm_vm(module: &Module) -> Option<WasmVm> {
    let kvm = match Kvm::open() {
        Ok(kvm) => kvm,
        Err(e) => {
            skip(&e);
            return None;
        }
    };
    match WasmVm::new(&kvm, module) {
        Ok(vm) => Some(vm),
        // A device that opens but cannot make VMs is just as unusable; other errors are bugs.
        Err(WasmVmError::Vm(e)) => {
            skip(&e);
            None
        }
        Err(e) => panic!("WasmVm::new: {e}"),
    }
}

fn setup() -> Option<(Engine, Module, WasmVm)> {
    let engine = Engine::new(EngineConfig::default()).unwrap();
    let module = compile(&engine, FUNCS);
    let vm = wasm_vm(&module)?;
    Some((engine, module, vm))
}

/// The guest's outcome of a call that must not fail on the host side (nor exit: these
/// modules import nothing that could).
pub(super) fn call<T>(vm: &mut WasmVm<T>, name: &str, args: &[Val]) -> Result<Vec<Val>, Trap> {
    match vm.call(name, args) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(Halt::Trap(t))) => Err(t),
        Ok(Err(exit)) => panic!("{name}: unexpected {exit}"),
        Err(e) => panic!("{name}: host-side failure: {e}"),
    }
}

/// An `i32` argument.
pub(super) fn i(v: i32) -> Val {
    Val::I32(v)
}

/// Runs `script` (export, arguments; state carries over from step to step) on a fresh
/// in-process instance of `module` and in `vm`, asserting that every step gives the same
/// results or the same trap code; the trap codes seen.
#[track_caller]
pub(super) fn same_as_in_process(
    engine: &Engine,
    module: &Module,
    vm: &mut WasmVm,
    script: Vec<(&'static str, Vec<Val>)>,
) -> std::collections::BTreeSet<String> {
    let mut store = Store::new(engine);
    let inst = store.instantiate(module, &[]).unwrap();
    let mut traps = std::collections::BTreeSet::new();
    for (step, (name, args)) in script.into_iter().enumerate() {
        let Some(Extern::Func(f)) = store.get_export(inst, name) else {
            panic!("no export {name}");
        };
        let here = store.call(f, &args).map_err(|t| t.code);
        let there = call(vm, name, &args).map_err(|t| t.code);
        assert_eq!(there, here, "step {step}: {name}{args:?}");
        if let Err(code) = there {
            traps.insert(format!("{code:?}"));
        }
    }
    traps
}

pub(super) fn trap_code<T>(vm: &mut WasmVm<T>, name: &str, args: &[Val]) -> TrapCode {
    match call(vm, name, args) {
        Err(trap) => trap.code,
        Ok(v) => panic!("{name}{args:?} returned {v:?}, expected a trap"),
    }
}

#[test]
fn fib_in_the_vm_equals_fib_in_process() {
    let Some((engine, module, mut vm)) = setup() else {
        return;
    };
    let mut store = Store::new(&engine);
    let inst = store.instantiate(&module, &[]).unwrap();
    let Some(Extern::Func(fib)) = store.get_export(inst, "fib") else {
        panic!("no fib export");
    };
    for n in [0, 1, 2, 10, 20] {
        let here = store.call(fib, &[Val::I32(n)]).unwrap();
        let there = call(&mut vm, "fib", &[Val::I32(n)]).unwrap();
        assert_eq!(there, here, "fib({n})");
    }
    assert_eq!(
        call(&mut vm, "fib", &[Val::I32(20)]),
        Ok(vec![Val::I32(6765)])
    );
}

#[test]
fn vms_of_a_module_share_its_code_mapping_read_only() {
    let Some((_engine, module, mut a)) = setup() else {
        return;
    };
    let mut b = wasm_vm(&module).unwrap();
    for vm in [&a, &b] {
        let code = &vm.vm().slots()[1];
        assert_eq!(code.memory.host_address(), module.code_base() as u64);
        assert_eq!(code.guest_phys_addr, GPA_BASE);
        assert!(!code.memory.is_writable());
    }
    // Separate instances: each VM has its own globals.
    assert_eq!(call(&mut a, "bump", &[]), Ok(vec![Val::I32(6)]));
    assert_eq!(call(&mut b, "bump", &[]), Ok(vec![Val::I32(6)]));
}

#[test]
fn the_guest_sees_only_the_code_stub_gdt_mmio_and_instance_region() {
    let Some((_engine, module, vm)) = setup() else {
        return;
    };
    let flags = |gva: u64| translate(vm.vm().memory(), vm.page_table_root(), gva).map(|t| t.flags);
    let code = module.code_base() as u64;
    let code_end = code + module.code_bytes() as u64;
    let region = vm.instance_region();
    let stack_low = region.start + PAGE_SIZE;
    let guest_ro = PageFlags {
        writable: false,
        user: true,
        executable: false,
    };
    let heap = Box::new(0u64);
    let heap_addr = &*heap as *const u64 as u64;
    let expected = [
        (0, None),
        (GDT_ADDR, Some(PageFlags::KERNEL_RODATA)),
        (0x2000, Some(PageFlags::USER_CODE)),
        (0x3000, None),
        (MMIO_ADDR, Some(PageFlags::USER_DATA)),
        (code - 1, None),
        (code, Some(PageFlags::USER_CODE)),
        (code_end - 1, Some(PageFlags::USER_CODE)),
        (code_end, None),
        (region.start, None),
        (stack_low - 1, None),
        (stack_low, Some(PageFlags::USER_DATA)),
        (vm.stack_limit(), Some(PageFlags::USER_DATA)),
        (region.end - 1, Some(guest_ro)),
        (region.end, None),
        (heap_addr, None),
    ];
    for (gva, want) in expected {
        // The kernel may place the region right next to the code; then a neighbour of one is
        // the other, checked by its own rows.
        let other = (code..code_end).contains(&gva) || (stack_low..region.end).contains(&gva);
        if want.is_none() && other {
            continue;
        }
        assert_eq!(flags(gva), want, "{gva:#x}");
    }
    // Code and region are their own slots, at the host address the guest uses.
    let t = translate(vm.vm().memory(), vm.page_table_root(), code + 5).unwrap();
    assert_eq!(t.gpa, GPA_BASE + 5);
}

#[test]
fn traps_have_the_in_process_trap_codes_and_the_vm_is_reused_after_them() {
    let Some((_engine, _module, mut vm)) = setup() else {
        return;
    };
    let div = |a, b| [Val::I32(a), Val::I32(b)];
    assert_eq!(call(&mut vm, "div", &div(7, 2)), Ok(vec![Val::I32(3)]));
    let cases: [(&str, Vec<Val>, TrapCode); 3] = [
        ("div", div(1, 0).to_vec(), TrapCode::IntegerDivisionByZero),
        ("div", div(i32::MIN, -1).to_vec(), TrapCode::IntegerOverflow),
        ("boom", vec![], TrapCode::UnreachableCodeReached),
    ];
    for round in 0..2 {
        for (name, args, code) in &cases {
            assert_eq!(
                trap_code(&mut vm, name, args),
                *code,
                "round {round}: {name}{args:?}"
            );
            // The same VM and vCPU run ordinary calls right after the trap.
            assert_eq!(call(&mut vm, "div", &div(-9, 3)), Ok(vec![Val::I32(-3)]));
            assert_eq!(
                call(&mut vm, "fib", &[Val::I32(12)]),
                Ok(vec![Val::I32(144)])
            );
        }
    }
}

#[test]
fn trap_backtrace_names_the_function() {
    let Some((_engine, _module, mut vm)) = setup() else {
        return;
    };
    let trap = call(&mut vm, "boom", &[]).unwrap_err();
    assert_eq!(trap.code, TrapCode::UnreachableCodeReached);
    let top = trap.backtrace.first().expect("a frame");
    assert_eq!(top.func_name.as_deref(), Some("boom"));
    assert_eq!(top.module_name.as_deref(), Some("funcs"));
    assert!(top.wasm_offset.is_some());
}

#[test]
fn infinite_recursion_is_a_stack_overflow_trap() {
    let Some((_engine, _module, mut vm)) = setup() else {
        return;
    };
    for _ in 0..3 {
        let trap = call(&mut vm, "deep", &[Val::I64(0)]).unwrap_err();
        assert_eq!(trap.code, TrapCode::StackOverflow);
        // Frame pointers lead through many `deep` frames (the walk stops at its cap).
        assert_eq!(trap.backtrace.len(), 64);
        assert!(trap
            .backtrace
            .iter()
            .all(|f| f.func_name.as_deref() == Some("deep")));
        assert_eq!(
            call(&mut vm, "fib", &[Val::I32(15)]),
            Ok(vec![Val::I32(610)])
        );
    }
}

#[test]
fn floating_point_code_runs_with_the_hosts_features() {
    let Some((_engine, _module, mut vm)) = setup() else {
        return;
    };
    let args = [Val::F64(3f64.to_bits()), Val::F64(4f64.to_bits())];
    assert_eq!(
        call(&mut vm, "hypot", &args),
        Ok(vec![Val::F64(5f64.to_bits())])
    );
}

#[test]
fn epoch_deadline_interrupts_a_loop() {
    let Some((_engine, _module, mut vm)) = setup() else {
        return;
    };
    vm.set_epoch(10).unwrap();
    vm.set_epoch_deadline(10).unwrap();
    assert_eq!(trap_code(&mut vm, "spin", &[]), TrapCode::Interrupt);
    assert_eq!(
        trap_code(&mut vm, "fib", &[Val::I32(3)]),
        TrapCode::Interrupt
    );
    vm.set_epoch_deadline(11).unwrap();
    assert_eq!(call(&mut vm, "fib", &[Val::I32(3)]), Ok(vec![Val::I32(2)]));
}

#[test]
fn another_thread_interrupts_a_running_loop_through_the_epoch() {
    let Some((_engine, _module, mut vm)) = setup() else {
        return;
    };
    vm.set_epoch_deadline(1).unwrap();
    let epoch = vm.epoch_handle();
    let start = std::time::Instant::now();
    let timer = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(50));
        epoch.set(1).unwrap();
    });
    // `spin` loops forever; only the epoch check at its loop header ends it.
    assert_eq!(trap_code(&mut vm, "spin", &[]), TrapCode::Interrupt);
    assert!(start.elapsed() >= std::time::Duration::from_millis(50));
    timer.join().unwrap();
    vm.set_epoch(0).unwrap();
    assert_eq!(call(&mut vm, "fib", &[Val::I32(5)]), Ok(vec![Val::I32(5)]));
}

#[test]
fn a_kick_ends_code_that_checks_no_epoch_where_it_stands() {
    let engine = Engine::new(EngineConfig::default()).unwrap();
    let wasm = wat::parse_str(FUNCS).unwrap();
    let options = fnvm_compiler::CompileOptions {
        epoch_interruption: false,
        ..Default::default()
    };
    let artifact = fnvm_compiler::compile(&wasm, &options).unwrap();
    let module = Module::from_artifact(&engine, &artifact).unwrap();
    let Some(mut vm) = wasm_vm(&module) else {
        return;
    };
    // The epoch says "past the deadline", but this code never looks.
    vm.set_epoch(1).unwrap();
    vm.set_epoch_deadline(1).unwrap();
    let kicker = vm.kicker();
    let start = std::time::Instant::now();
    let timer = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(50));
        kicker.kick();
    });
    let trap = call(&mut vm, "spin", &[]).unwrap_err();
    assert!(start.elapsed() >= std::time::Duration::from_millis(50));
    timer.join().unwrap();
    assert_eq!(trap.code, TrapCode::Interrupt);
    assert_eq!(trap.backtrace.len(), 1, "{:?}", trap.backtrace);
    assert_eq!(trap.backtrace[0].func_index, 5, "{:?}", trap.backtrace);
    // The VM runs the next call as before.
    assert_eq!(
        call(&mut vm, "fib", &[Val::I32(10)]),
        Ok(vec![Val::I32(55)])
    );
    // A kick between calls ends the next call at once, unless cleared first.
    vm.kicker().kick();
    assert_eq!(
        trap_code(&mut vm, "fib", &[Val::I32(10)]),
        TrapCode::Interrupt
    );
    assert_eq!(
        call(&mut vm, "fib", &[Val::I32(10)]),
        Ok(vec![Val::I32(55)])
    );
    vm.kicker().kick();
    vm.clear_kick();
    assert_eq!(
        call(&mut vm, "fib", &[Val::I32(10)]),
        Ok(vec![Val::I32(55)])
    );
    // A kicker outliving its VM does nothing.
    let kicker = vm.kicker();
    drop(vm);
    kicker.kick();
}

#[test]
fn globals_persist_across_calls() {
    let Some((_engine, _module, mut vm)) = setup() else {
        return;
    };
    assert_eq!(call(&mut vm, "bump", &[]), Ok(vec![Val::I32(6)]));
    assert_eq!(call(&mut vm, "bump", &[]), Ok(vec![Val::I32(7)]));
}

#[test]
fn host_side_errors_are_typed() {
    let Some((engine, _module, mut vm)) = setup() else {
        return;
    };
    assert!(matches!(
        vm.call("nope", &[]),
        Err(WasmVmError::NoSuchExport(_))
    ));
    assert!(matches!(
        vm.call("fib", &[]),
        Err(WasmVmError::ArgumentCount {
            expected: 1,
            got: 0,
            ..
        })
    ));
    assert!(matches!(
        vm.call("fib", &[Val::I64(1)]),
        Err(WasmVmError::ArgumentType { index: 0, .. })
    ));
    let importing = compile(&engine, r#"(module (import "m" "f" (func)))"#);
    let kvm = Kvm::open().unwrap();
    assert!(matches!(
        WasmVm::new(&kvm, &importing),
        Err(WasmVmError::Link(_))
    ));
    let huge = compile(&engine, r#"(module (memory 20000))"#);
    assert!(matches!(
        WasmVm::new(&kvm, &huge),
        Err(WasmVmError::MemoryTooLarge {
            pages: 20000,
            limit: 16384
        })
    ));
    // Still fine after the errors.
    assert_eq!(call(&mut vm, "fib", &[Val::I32(7)]), Ok(vec![Val::I32(13)]));
}
