//! Tests of host functions called from a [`WasmVm`]: imports leave the VM, run on the host
//! against the guest's memory through the same `Caller` as in process, and resume the guest with
//! their results; a host function ending the invocation ends the run. Then WASI guests with the
//! real hostcalls (`fnvm-hostcalls`), whose output must equal the in-process pool's. They need
//! /dev/kvm like the other KVM tests (skipping without it, failing under `CI=true`).

use super::tests::skip;
use super::wasm_tests::compile;
use super::*;
use crate::{
    Caller, Engine, EngineConfig, Halt, HostExit, HostFuncDef, InstanceLimits, InstancePool,
    LinkedModule, PoolConfig, Val,
};
use fnvm_abi::{FuncType, TrapCode, ValType};
use fnvm_hostcalls::WasiCtx;

/// Host state of the test imports.
#[derive(Debug, Default)]
struct Host {
    calls: u32,
    seen: Vec<u8>,
}

/// `peek(addr) -> byte`: reads guest memory (0xffff_ffff when out of bounds).
fn peek(caller: &mut Caller<'_, Host>, v: &mut [u64]) -> Result<(), HostExit> {
    let addr = v[0] as usize;
    let (memory, host) = caller.parts();
    host.calls += 1;
    v[0] = memory.get(addr).map_or(0xffff_ffff, |b| u64::from(*b));
    Ok(())
}

/// `record(addr, len)`: copies guest bytes into the host state; traps when out of bounds.
fn record(caller: &mut Caller<'_, Host>, v: &mut [u64]) -> Result<(), HostExit> {
    let (addr, len) = (v[0] as usize, v[1] as usize);
    let (memory, host) = caller.parts();
    host.calls += 1;
    let bytes = addr
        .checked_add(len)
        .and_then(|end| memory.get(addr..end))
        .ok_or_else(|| HostExit::Trap("record: out of bounds".into()))?;
    host.seen.extend_from_slice(bytes);
    Ok(())
}

/// `fill(addr, len, byte) -> len`: writes guest memory.
fn fill(caller: &mut Caller<'_, Host>, v: &mut [u64]) -> Result<(), HostExit> {
    let (addr, len, byte) = (v[0] as usize, v[1] as usize, v[2] as u8);
    let (memory, host) = caller.parts();
    host.calls += 1;
    if let Some(dst) = memory.get_mut(addr..addr + len) {
        dst.fill(byte);
    }
    v[0] = len as u64;
    Ok(())
}

/// `wide(i64, f64, i32) -> (f64, i64)`: mixes value types and has more results than one.
fn wide(caller: &mut Caller<'_, Host>, v: &mut [u64]) -> Result<(), HostExit> {
    caller.data().calls += 1;
    let (a, b, c) = (v[0] as i64, f64::from_bits(v[1]), v[2] as u32);
    v[0] = (b * 2.0).to_bits();
    v[1] = (a + i64::from(c)) as u64;
    Ok(())
}

/// `quit(code)`: ends the invocation with an exit status.
fn quit(_: &mut Caller<'_, Host>, v: &mut [u64]) -> Result<(), HostExit> {
    Err(HostExit::Exit(v[0] as i32))
}

/// `panics()`: a host function that panics (a trap, never an unwind into the guest).
fn panics(_: &mut Caller<'_, Host>, _: &mut [u64]) -> Result<(), HostExit> {
    panic!("host function bug");
}

const IMPORTS: &str = r#"
(module $imports
  (import "host" "peek" (func $peek (param i32) (result i32)))
  (import "host" "record" (func $record (param i32 i32)))
  (import "host" "fill" (func $fill (param i32 i32 i32) (result i32)))
  (import "host" "wide" (func $wide (param i64 f64 i32) (result f64 i64)))
  (import "host" "quit" (func $quit (param i32)))
  (import "host" "panics" (func $panics))
  (memory (export "memory") 1)
  (data (i32.const 32) "from the guest")
  (func (export "peek") (param i32) (result i32)
    local.get 0
    call $peek)
  (func (export "record") (param i32 i32)
    local.get 0
    local.get 1
    call $record)
  (func (export "fill_then_load") (param i32 i32 i32) (result i32)
    local.get 0
    local.get 1
    local.get 2
    call $fill
    drop
    local.get 0
    i32.load8_u)
  (func (export "wide") (param i64 f64 i32) (result f64 i64)
    local.get 0
    local.get 1
    local.get 2
    call $wide)
  (func $deep (param i32)
    local.get 0
    call $quit)
  (func (export "quit") (param i32)
    local.get 0
    call $deep
    unreachable)
  (func (export "panics")
    call $panics)
  (func (export "grow") (param i32) (result i32)
    local.get 0
    memory.grow))
"#;

fn def(
    params: &[ValType],
    results: &[ValType],
    func: fnvm_host_interface::HostFn<Host>,
) -> HostFuncDef<Host> {
    HostFuncDef {
        ty: FuncType {
            params: params.to_vec(),
            results: results.to_vec(),
        },
        func,
        write_behind: None,
    }
}

fn resolve(imp: &fnvm_abi::Import) -> Option<HostFuncDef<Host>> {
    use ValType::*;
    Some(match imp.name.as_str() {
        "peek" => def(&[I32], &[I32], peek),
        "record" => def(&[I32, I32], &[], record),
        "fill" => def(&[I32, I32, I32], &[I32], fill),
        "wide" => def(&[I64, F64, I32], &[F64, I64], wide),
        "quit" => def(&[I32], &[], quit),
        "panics" => def(&[], &[], panics),
        _ => return None,
    })
}

/// A VM running `linked` with host state `data`, or `None` (after `skip`) without /dev/kvm.
pub(super) fn linked_vm<T>(linked: &LinkedModule<T>, data: T) -> Option<WasmVm<T>> {
    let kvm = match Kvm::open() {
        Ok(kvm) => kvm,
        Err(e) => {
            skip(&e);
            return None;
        }
    };
    match WasmVm::with_host(&kvm, linked, data, &WasmVmConfig::default()) {
        Ok(vm) => Some(vm),
        Err(WasmVmError::Vm(e)) => {
            skip(&e);
            None
        }
        Err(e) => panic!("WasmVm::with_host: {e}"),
    }
}

fn imports_vm() -> Option<WasmVm<Host>> {
    let engine = Engine::new(EngineConfig::default()).unwrap();
    let module = compile(&engine, IMPORTS);
    let linked = LinkedModule::new(&module, resolve).unwrap();
    linked_vm(&linked, Host::default())
}

pub(super) fn run<T>(vm: &mut WasmVm<T>, name: &str, args: &[Val]) -> Result<Vec<Val>, Halt> {
    vm.call(name, args)
        .unwrap_or_else(|e| panic!("{name}: host-side failure: {e}"))
}

#[test]
fn host_functions_read_and_write_guest_memory() {
    let Some(mut vm) = imports_vm() else { return };
    assert_eq!(
        run(&mut vm, "peek", &[Val::I32(32)]),
        Ok(vec![Val::I32(b'f'.into())])
    );
    assert_eq!(
        run(&mut vm, "peek", &[Val::I32(65536)]),
        Ok(vec![Val::I32(-1)])
    );
    assert_eq!(
        run(&mut vm, "record", &[Val::I32(32), Val::I32(14)]),
        Ok(vec![])
    );
    assert_eq!(vm.data().unwrap().seen, b"from the guest");
    // The host writes, the guest reads what it wrote.
    assert_eq!(
        run(
            &mut vm,
            "fill_then_load",
            &[Val::I32(1000), Val::I32(8), Val::I32(0x77)]
        ),
        Ok(vec![Val::I32(0x77)])
    );
    assert_eq!(vm.memory().unwrap()[1000..1008], [0x77; 8]);
    assert_eq!(vm.data().unwrap().calls, 4);
    // Host functions see the memory as grown by the guest.
    assert_eq!(run(&mut vm, "grow", &[Val::I32(1)]), Ok(vec![Val::I32(1)]));
    assert_eq!(
        run(
            &mut vm,
            "fill_then_load",
            &[Val::I32(70000), Val::I32(4), Val::I32(9)]
        ),
        Ok(vec![Val::I32(9)])
    );
    assert_eq!(
        run(&mut vm, "peek", &[Val::I32(131071)]),
        Ok(vec![Val::I32(0)])
    );
    assert_eq!(
        run(&mut vm, "peek", &[Val::I32(131072)]),
        Ok(vec![Val::I32(-1)])
    );
}

#[test]
fn host_function_arguments_and_results_of_every_width() {
    let Some(mut vm) = imports_vm() else { return };
    let args = [Val::I64(-5), Val::F64(1.25f64.to_bits()), Val::I32(-1)];
    // -5 + 0xffff_ffff (i32 arguments reach the host zero-extended).
    assert_eq!(
        run(&mut vm, "wide", &args),
        Ok(vec![Val::F64(2.5f64.to_bits()), Val::I64(0xffff_fffa)])
    );
    for n in 0..100 {
        let r = run(&mut vm, "wide", &[Val::I64(n), Val::F64(0), Val::I32(1)]);
        assert_eq!(r, Ok(vec![Val::F64(0), Val::I64(n + 1)]));
    }
}

#[test]
fn a_host_exit_ends_the_call_and_the_vm_runs_on() {
    let Some(mut vm) = imports_vm() else { return };
    for code in [0, 3] {
        match run(&mut vm, "quit", &[Val::I32(code)]) {
            Err(Halt::Exit { code: c, backtrace }) => {
                assert_eq!(c, code);
                // The trampoline's frame is skipped; the guest frames that called it remain.
                let names: Vec<_> = backtrace.iter().map(|f| f.func_name.as_deref()).collect();
                assert_eq!(names, [Some("deep"), None], "{backtrace:?}");
            }
            other => panic!("quit({code}): {other:?}"),
        }
        assert_eq!(
            run(&mut vm, "peek", &[Val::I32(33)]),
            Ok(vec![Val::I32(b'r'.into())])
        );
    }
    match run(&mut vm, "record", &[Val::I32(65530), Val::I32(100)]) {
        Err(Halt::Trap(t)) => {
            assert_eq!(t.code, TrapCode::HostTrap);
            assert_eq!(t.host_message.as_deref(), Some("record: out of bounds"));
        }
        other => panic!("record out of bounds: {other:?}"),
    }
    match run(&mut vm, "panics", &[]) {
        Err(Halt::Trap(t)) => assert_eq!(t.code, TrapCode::HostTrap),
        other => panic!("panicking host function: {other:?}"),
    }
    assert_eq!(
        run(&mut vm, "peek", &[Val::I32(34)]),
        Ok(vec![Val::I32(b'o'.into())])
    );
}

/// The WASI hello of the benchmarks: one `fd_write` of a 12-byte iovec to fd 1.
const HELLO_WAT: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "Hello World\n")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const 12))
    (if (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))
      (then unreachable))
    (if (i32.ne (i32.load (i32.const 8)) (i32.const 12))
      (then unreachable))))"#;

/// How a WASI `_start` ended, its stdout and its stderr.
type Outcome = (Result<(), Halt>, Vec<u8>, Vec<u8>);

/// A fresh WASI context: `args`, a line on stdin, one `GUEST_`-prefixed variable and one
/// other.
fn wasi_ctx(args: &[&str]) -> WasiCtx {
    WasiCtx::builder()
        .args(args.iter().copied())
        .stdin(fnvm_hostcalls::Stdin::Bytes(b"Mixed Case input\n".to_vec()))
        .env("GUEST_A", "1")
        .env("OTHER", "2")
        .build()
        .unwrap()
}

/// Calls `name` of `linked` in process (a one-slot pool) with host state `ctx`: its outcome
/// and the host state after.
pub(super) fn call_in_process(
    engine: &Engine,
    linked: &LinkedModule<WasiCtx>,
    name: &str,
    ctx: WasiCtx,
) -> (Result<Vec<Val>, Halt>, WasiCtx) {
    let config = PoolConfig {
        slots: 1,
        background_reset: false,
        ..PoolConfig::default()
    };
    let pool = InstancePool::new(engine, config).unwrap();
    let pre = pool.prepare(linked).unwrap();
    let mut inst = pool
        .instantiate(&pre, &InstanceLimits::default(), ctx)
        .unwrap();
    let status = inst.call(name, &[]);
    (status, inst.into_data())
}

/// `_start` of `wasm` with WASI in process (the pool): its status, stdout and stderr.
fn wasi_in_process(engine: &Engine, linked: &LinkedModule<WasiCtx>, args: &[&str]) -> Outcome {
    let (status, mut ctx) = call_in_process(engine, linked, "_start", wasi_ctx(args));
    (status.map(|_| ()), ctx.take_stdout(), ctx.take_stderr())
}

/// The same in a VM.
fn wasi_in_vm(linked: &LinkedModule<WasiCtx>, args: &[&str]) -> Option<Outcome> {
    let mut vm = linked_vm(linked, wasi_ctx(args))?;
    let status = run(&mut vm, "_start", &[]).map(|_| ());
    let mut ctx = vm.into_data().unwrap();
    Some((status, ctx.take_stdout(), ctx.take_stderr()))
}

pub(super) fn wasi_linked(engine: &Engine, wasm: &[u8]) -> LinkedModule<WasiCtx> {
    let artifact = fnvm_compiler::compile(wasm, &fnvm_compiler::CompileOptions::default()).unwrap();
    let module = crate::Module::from_artifact(engine, &artifact).unwrap();
    LinkedModule::new(&module, |imp| {
        fnvm_hostcalls::resolve(&imp.module, &imp.name)
    })
    .unwrap()
}

#[test]
fn wasi_hello_prints_the_same_in_the_vm_as_in_process() {
    let engine = Engine::new(EngineConfig::default()).unwrap();
    let linked = wasi_linked(&engine, &wat::parse_str(HELLO_WAT).unwrap());
    let here = wasi_in_process(&engine, &linked, &["main"]);
    assert_eq!(here, (Ok(()), b"Hello World\n".to_vec(), vec![]));
    let Some(there) = wasi_in_vm(&linked, &["main"]) else {
        return;
    };
    assert_eq!(there, here);
}

/// The Rust guests of the WASI integration tests, built (if needed) by `scripts/guests.sh`
/// into `target/guests/rust/`, as those tests do; a failed build fails the test.
pub(super) fn rust_guest(name: &str) -> Vec<u8> {
    static BUILT: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let built = BUILT.get_or_init(|| {
        let out = std::process::Command::new(root.join("scripts/guests.sh"))
            .arg("rust")
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| e.to_string())?;
        match out.status.success() {
            true => Ok(()),
            false => Err(String::from_utf8_lossy(&out.stderr).into_owned()),
        }
    });
    if let Err(e) = built {
        panic!("building the Rust guests: {e}");
    }
    let path = root.join(format!("target/guests/rust/{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// What must be equal between the backends: how `_start` ended (trap code and function names
/// rather than raw frames), stdout and stderr.
fn summary(r: Outcome) -> (String, String, String) {
    let status = match r.0 {
        Ok(()) => "returned".to_owned(),
        Err(Halt::Exit { code, .. }) => format!("exit {code}"),
        Err(Halt::Trap(t)) => {
            let names: Vec<_> = t.backtrace.iter().map(|f| f.func_name.clone()).collect();
            format!("trap {:?} {:?} in {names:?}", t.code, t.host_message)
        }
    };
    let text = |b: Vec<u8>| String::from_utf8_lossy(&b).into_owned();
    (status, text(r.1), text(r.2))
}

#[test]
fn rust_wasi_guests_behave_the_same_in_the_vm_as_in_process() {
    let engine = Engine::new(EngineConfig::default()).unwrap();
    let cases: [(&str, &[&str], &str); 7] = [
        ("hello", &["hello"], "Hello Rust!\n"),
        ("exit", &["exit", "7"], "exiting with 7\n"),
        ("trap", &["trap"], ""),
        (
            "args_env",
            &["args_env", "one", "two words"],
            "one\ntwo words\nGUEST_A=1\n",
        ),
        ("badptr", &["badptr"], ""),
        ("upper", &["upper"], "MIXED CASE INPUT\n"),
        // Blocking host calls (poll_oneoff on a clock) from the VM.
        ("sleep", &["sleep"], ""),
    ];
    for (name, args, stdout) in cases {
        let linked = wasi_linked(&engine, &rust_guest(name));
        let here = summary(wasi_in_process(&engine, &linked, args));
        if !stdout.is_empty() {
            assert_eq!(here.1, stdout, "{name} in process");
        }
        let Some(there) = wasi_in_vm(&linked, args) else {
            return;
        };
        assert_eq!(summary(there), here, "{name}");
    }
}

#[test]
fn the_hostcall_trace_is_the_same_in_the_vm() {
    let engine = Engine::new(EngineConfig::default()).unwrap();
    let traced = || {
        WasiCtx::builder()
            .args(["args_env", "x"])
            .env("GUEST_B", "2")
            .trace(true)
            .trace_id(7)
            .build()
            .unwrap()
    };
    for name in ["hello", "args_env"] {
        let linked = wasi_linked(&engine, &rust_guest(name));
        let config = PoolConfig {
            slots: 1,
            background_reset: false,
            ..PoolConfig::default()
        };
        let pool = InstancePool::new(&engine, config).unwrap();
        let pre = pool.prepare(&linked).unwrap();
        let mut inst = pool
            .instantiate(&pre, &InstanceLimits::default(), traced())
            .unwrap();
        inst.call("_start", &[]).unwrap();
        let here = inst.into_data().take_dmesg().unwrap();
        let Some(mut vm) = linked_vm(&linked, traced()) else {
            return;
        };
        run(&mut vm, "_start", &[]).unwrap();
        let there = vm.into_data().unwrap().take_dmesg().unwrap();
        // Every hostcall, with its arguments (offsets in linear memory) and results.
        assert!(
            here.as_str().contains("WASI_FD_WRITE(vmctx=7,"),
            "{}",
            here.as_str()
        );
        assert_eq!(there.as_str(), here.as_str(), "{name}");
    }
}

/// A fresh directory tree for the `files` or `escape` guest (as tests/all/wasi.rs sets them
/// up): returns the root and the directory to preopen at `/sandbox`.
fn sandbox_tree(guest: &str, tag: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let root =
        std::env::temp_dir().join(format!("fnvm-kvm-{guest}-{tag}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let sandbox = root.join("sandbox");
    std::fs::create_dir_all(sandbox.join("inside-dir")).unwrap();
    if guest == "files" {
        std::fs::remove_dir(sandbox.join("inside-dir")).unwrap();
        std::fs::write(sandbox.join("host.txt"), "from the host\n").unwrap();
    } else {
        std::fs::write(root.join("outside.txt"), "secret outside\n").unwrap();
        std::fs::write(sandbox.join("inside.txt"), "inside\n").unwrap();
        let link = |target: &std::path::Path, name: &str| {
            std::os::unix::fs::symlink(target, sandbox.join(name)).unwrap()
        };
        link(&root.join("outside.txt"), "link-abs");
        link(std::path::Path::new("../outside.txt"), "link-rel");
        link(&root, "link-dir");
        link(std::path::Path::new("inside.txt"), "link-inside");
    }
    (root, sandbox)
}

/// What a sandbox tree holds afterwards: every path under the root with its contents.
fn tree_listing(root: &std::path::Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let path = e.unwrap().path();
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let content = if meta.is_dir() {
                stack.push(path.clone());
                "<dir>".to_owned()
            } else if meta.file_type().is_symlink() {
                "<symlink>".to_owned()
            } else {
                std::fs::read_to_string(&path).unwrap_or_default()
            };
            out.push((rel, content));
        }
    }
    out.sort();
    out
}

#[test]
fn rust_file_guests_see_the_same_sandbox_in_the_vm() {
    let engine = Engine::new(EngineConfig::default()).unwrap();
    let ctx = |sandbox: &std::path::Path, name: &str| {
        WasiCtx::builder()
            .args([name, "/sandbox"])
            .preopen_dir(sandbox, "/sandbox")
            .build()
            .unwrap()
    };
    for name in ["files", "escape"] {
        let linked = wasi_linked(&engine, &rust_guest(name));
        let (root_here, sandbox_here) = sandbox_tree(name, "pool");
        let config = PoolConfig {
            slots: 1,
            background_reset: false,
            ..PoolConfig::default()
        };
        let pool = InstancePool::new(&engine, config).unwrap();
        let pre = pool.prepare(&linked).unwrap();
        let mut inst = pool
            .instantiate(&pre, &InstanceLimits::default(), ctx(&sandbox_here, name))
            .unwrap();
        let status_here = inst.call("_start", &[]).map(|_| ());
        let stdout_here = inst.into_data().take_stdout();
        let (root_there, sandbox_there) = sandbox_tree(name, "vm");
        let Some(mut vm) = linked_vm(&linked, ctx(&sandbox_there, name)) else {
            return;
        };
        let status_there = run(&mut vm, "_start", &[]).map(|_| ());
        let stdout_there = vm.into_data().unwrap().take_stdout();
        assert_eq!(status_here, Ok(()), "{name} in process");
        assert_eq!(status_there, Ok(()), "{name} in the VM");
        assert!(!stdout_here.is_empty());
        assert_eq!(
            String::from_utf8_lossy(&stdout_there),
            String::from_utf8_lossy(&stdout_here),
            "{name}"
        );
        // The guests left the same files behind (and nothing outside the sandbox).
        assert_eq!(
            tree_listing(&root_there),
            tree_listing(&root_here),
            "{name}"
        );
        let _ = std::fs::remove_dir_all(&root_here);
        let _ = std::fs::remove_dir_all(&root_there);
    }
}
