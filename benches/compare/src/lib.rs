//! Shared setup for the fnvm-vs-wasmtime-vs-native benchmarks: locating the guest modules,
//! the kernel table, and ready-to-call kernel instances for each engine. The instantiation,
//! invocation and hostcall benchmarks live in [`invoke`], fnvm's WASI glue in [`fnvm_wasi`].
//!
//! The guests are built by `benches/build-guests.sh` into `guests/out/`. Every case that fails
//! on one engine (compile error, trap, wrong checksum) is reported by the caller and skipped, so
//! one failure does not hide the other results.

use std::path::PathBuf;

/// The kernels' source, compiled natively: the same file the wasm guest is built from.
#[path = "../guests/kernels/src/kernels.rs"]
pub mod kernels;

pub mod fnvm_wasi;
pub mod invoke;

/// Stack size for threads that run guest code: the runtimes run wasm on the calling thread's
/// stack, and criterion's own frames sit below it.
pub const BENCH_STACK: usize = 64 << 20;

/// Runs `f` on a fresh thread with a [`BENCH_STACK`]-sized stack and returns its result.
pub fn on_big_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .name("bench".into())
        .stack_size(BENCH_STACK)
        .spawn(f)
        .expect("spawning the benchmark thread")
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e))
}

/// Directory holding the built guests.
pub fn guests_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("guests/out")
}

/// Reads a built guest module, e.g. `"quickjs.wasm"`.
pub fn read_guest(name: &str) -> Vec<u8> {
    let path = guests_dir().join(name);
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "reading {}: {e}\nbuild the guests first: benches/build-guests.sh",
            path.display()
        )
    })
}

/// The large modules whose compilation is measured.
pub const COMPILE_INPUTS: &[&str] = &["quickjs.wasm", "jsonregex.wasm"];

/// One CPU kernel: its export, its argument, and the native function for the same source.
#[derive(Clone, Copy, Debug)]
pub struct Kernel {
    /// Short name used in reports.
    pub name: &'static str,
    /// Export name in `kernels.wasm`.
    pub export: &'static str,
    /// The size or iteration count passed to it.
    pub arg: u32,
    /// The natively compiled kernel.
    pub native: extern "C" fn(u32) -> u64,
}

/// The kernels with their benchmark arguments (each call takes milliseconds, so call overhead
/// does not matter).
pub const KERNELS: &[Kernel] = &[
    Kernel {
        name: "sha256 64KiB x64",
        export: "kernel_sha256",
        arg: 64,
        native: kernels::kernel_sha256,
    },
    Kernel {
        name: "sort 1M u32",
        export: "kernel_sort",
        arg: 1 << 20,
        native: kernels::kernel_sort,
    },
    Kernel {
        name: "matmul 200x200 f64",
        export: "kernel_matmul",
        arg: 200,
        native: kernels::kernel_matmul,
    },
    Kernel {
        name: "fib(32) calls",
        export: "kernel_fib",
        arg: 32,
        native: kernels::kernel_fib,
    },
];

/// fnvm compile options with or without deadline checks.
pub fn fnvm_options(epoch_interruption: bool) -> fnvm_compiler::CompileOptions {
    fnvm_compiler::CompileOptions {
        epoch_interruption,
        ..Default::default()
    }
}

/// A wasmtime engine with default settings (Cranelift, opt level `speed`), optionally with
/// epoch interruption.
pub fn wasmtime_engine(epoch_interruption: bool) -> wasmtime::Engine {
    let mut config = wasmtime::Config::new();
    config.epoch_interruption(epoch_interruption);
    wasmtime::Engine::new(&config).expect("wasmtime engine")
}

/// A kernel ready to be called repeatedly on one engine.
pub trait Runner {
    /// Calls the kernel once and returns its checksum.
    fn run(&mut self, arg: u32) -> Result<u64, String>;
}

/// The kernels module instantiated in an fnvm store.
pub struct FnvmKernels {
    store: fnvm_runtime::Store,
    instance: fnvm_runtime::Instance,
}

impl std::fmt::Debug for FnvmKernels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FnvmKernels").finish_non_exhaustive()
    }
}

impl FnvmKernels {
    /// Compiles `wasm` once, loads the artifact and instantiates it with no imports.
    pub fn new(wasm: &[u8], epoch_interruption: bool) -> Result<FnvmKernels, String> {
        let artifact = fnvm_compiler::compile(wasm, &fnvm_options(epoch_interruption))
            .map_err(|e| format!("fnvm compile: {e}"))?;
        let engine = fnvm_runtime::Engine::new(fnvm_runtime::EngineConfig::default())
            .map_err(|e| format!("fnvm engine: {e}"))?;
        let module = fnvm_runtime::Module::from_artifact(&engine, &artifact)
            .map_err(|e| format!("fnvm load: {e}"))?;
        let mut store = fnvm_runtime::Store::new(&engine);
        let instance = store
            .instantiate(&module, &[])
            .map_err(|e| format!("fnvm instantiate: {e}"))?;
        Ok(FnvmKernels { store, instance })
    }

    /// A runner for one export.
    pub fn runner(mut self, export: &str) -> Result<FnvmRunner, String> {
        match self.store.get_export(self.instance, export) {
            Some(fnvm_runtime::Extern::Func(func)) => Ok(FnvmRunner {
                store: self.store,
                func,
            }),
            _ => Err(format!("fnvm: no function export {export:?}")),
        }
    }
}

/// Calls one fnvm export.
pub struct FnvmRunner {
    store: fnvm_runtime::Store,
    func: fnvm_runtime::Func,
}

impl std::fmt::Debug for FnvmRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FnvmRunner").finish_non_exhaustive()
    }
}

impl Runner for FnvmRunner {
    fn run(&mut self, arg: u32) -> Result<u64, String> {
        match self
            .store
            .call(self.func, &[fnvm_runtime::Val::I32(arg as i32)])
        {
            Ok(v) => match v.as_slice() {
                [fnvm_runtime::Val::I64(x)] => Ok(*x as u64),
                other => Err(format!("fnvm: unexpected results {other:?}")),
            },
            Err(trap) => Err(format!("fnvm trap: {trap}")),
        }
    }
}

/// Calls one wasmtime export.
pub struct WasmtimeRunner {
    store: wasmtime::Store<()>,
    func: wasmtime::TypedFunc<u32, u64>,
}

impl std::fmt::Debug for WasmtimeRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmtimeRunner").finish_non_exhaustive()
    }
}

impl WasmtimeRunner {
    /// Compiles `wasm` with `Module::new`, instantiates it and looks up `export`. With epoch
    /// interruption the deadline is set far enough away never to be reached.
    pub fn new(
        wasm: &[u8],
        export: &str,
        epoch_interruption: bool,
    ) -> Result<WasmtimeRunner, String> {
        let engine = wasmtime_engine(epoch_interruption);
        let module =
            wasmtime::Module::new(&engine, wasm).map_err(|e| format!("wasmtime compile: {e}"))?;
        let mut store = wasmtime::Store::new(&engine, ());
        if epoch_interruption {
            store.set_epoch_deadline(1 << 40);
        }
        let instance = wasmtime::Instance::new(&mut store, &module, &[])
            .map_err(|e| format!("wasmtime instantiate: {e}"))?;
        let func = instance
            .get_typed_func::<u32, u64>(&mut store, export)
            .map_err(|e| format!("wasmtime export {export:?}: {e}"))?;
        Ok(WasmtimeRunner { store, func })
    }
}

impl Runner for WasmtimeRunner {
    fn run(&mut self, arg: u32) -> Result<u64, String> {
        self.func
            .call(&mut self.store, arg)
            .map_err(|e| format!("wasmtime trap: {e:?}"))
    }
}

/// Calls the natively compiled kernel.
#[derive(Debug)]
pub struct NativeRunner(pub extern "C" fn(u32) -> u64);

impl Runner for NativeRunner {
    fn run(&mut self, arg: u32) -> Result<u64, String> {
        Ok((self.0)(std::hint::black_box(arg)))
    }
}

/// Which engine a runner or compile measurement belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// fnvm, deadline checks on (its default).
    Fnvm,
    /// fnvm with `epoch_interruption: false`.
    FnvmNoEpoch,
    /// wasmtime with its default config (no epoch interruption).
    Wasmtime,
    /// wasmtime with `epoch_interruption(true)` and a far deadline.
    WasmtimeEpoch,
    /// The same Rust source compiled natively.
    Native,
}

impl Side {
    /// Column label.
    pub fn label(self) -> &'static str {
        match self {
            Side::Fnvm => "fnvm (epoch on)",
            Side::FnvmNoEpoch => "fnvm (epoch off)",
            Side::Wasmtime => "wasmtime (epoch off)",
            Side::WasmtimeEpoch => "wasmtime (epoch on)",
            Side::Native => "native",
        }
    }

    /// All sides in report order.
    pub const ALL: [Side; 5] = [
        Side::Fnvm,
        Side::WasmtimeEpoch,
        Side::FnvmNoEpoch,
        Side::Wasmtime,
        Side::Native,
    ];
}

/// Builds a runner for `kernel` on `side`, checking its checksum against the native result.
/// Returns a message instead when the engine fails on it (compile error, trap, mismatch).
pub fn runner_for(
    side: Side,
    wasm: &[u8],
    kernel: &Kernel,
    expected: u64,
) -> Result<Box<dyn Runner>, String> {
    let mut r: Box<dyn Runner> = match side {
        Side::Fnvm => Box::new(FnvmKernels::new(wasm, true)?.runner(kernel.export)?),
        Side::FnvmNoEpoch => Box::new(FnvmKernels::new(wasm, false)?.runner(kernel.export)?),
        Side::Wasmtime => Box::new(WasmtimeRunner::new(wasm, kernel.export, false)?),
        Side::WasmtimeEpoch => Box::new(WasmtimeRunner::new(wasm, kernel.export, true)?),
        Side::Native => Box::new(NativeRunner(kernel.native)),
    };
    let got = r.run(kernel.arg)?;
    if got != expected {
        return Err(format!(
            "{}: wrong checksum for {}({}): {got:#x}, native gives {expected:#x}",
            side.label(),
            kernel.export,
            kernel.arg
        ));
    }
    Ok(r)
}

/// fnvm's compile step as benchmarked: wasm bytes to a serialized artifact.
pub fn fnvm_compile(wasm: &[u8]) -> Result<Vec<u8>, String> {
    fnvm_compiler::compile(wasm, &fnvm_compiler::CompileOptions::default())
        .map_err(|e| format!("fnvm compile: {e}"))
}

/// wasmtime's equivalent: `Engine::precompile_module`, wasm bytes to a serialized artifact.
pub fn wasmtime_compile(engine: &wasmtime::Engine, wasm: &[u8]) -> Result<Vec<u8>, String> {
    engine
        .precompile_module(wasm)
        .map_err(|e| format!("wasmtime precompile: {e:?}"))
}
