//! Instantiation, whole-invocation and hostcall benchmarks: the guest modules, both engines set
//! up the way a FaaS host would run them, and one-call-per-invocation runners.
//!
//! fnvm: an [`fnvm_runtime::InstancePool`] per module (slots reused for the same module, memory
//! reset to the image with `MADV_DONTNEED` on a background thread or inline), a
//! [`fnvm_runtime::LinkedModule`] linked once and prepared once for the pool (a
//! [`fnvm_runtime::PooledModule`]), epoch checks compiled in (its default), and a fresh WASI
//! context per invocation as the instance's host state.
//!
//! wasmtime 48: the pooling instance allocator, copy-on-write memory images
//! (`memory_init_cow`, its default), epoch interruption, a [`wasmtime::InstancePre`] from
//! `Linker::instantiate_pre`, and a fresh `WasiP1Ctx` with a `MemoryOutputPipe` stdout per
//! invocation, linked with `wasmtime_wasi::p1::add_to_linker_sync`. Two allocator settings:
//! its defaults (memory reset with `madvise`) and "tuned" (`pagemap_scan` where the kernel has
//! it and 1 MiB of linear memory and tables kept resident and reset with `memset`).
//!
//! Every invocation checks that stdout is exactly [`HELLO`]; a wrong output is an error.

use crate::fnvm_wasi;
use fnvm_abi::module::Import;
use fnvm_hostcalls::WasiCtx;
use fnvm_runtime::{HostFuncDef, InstancePool, PooledInstance, PooledModule};
use std::fmt::Write as _;
use std::time::{Duration, Instant};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::pipe::{MemoryInputPipe, MemoryOutputPipe};

/// What every hello guest writes to stdout.
pub const HELLO: &[u8] = b"Hello World\n";

/// Slots of each engine's pool (instances alive at once per module).
pub const POOL_SLOTS: u32 = 64;

/// Cap on linear memory in both pools: 1 GiB.
pub const MAX_MEMORY_BYTES: usize = 1 << 30;

/// Capacity of wasmtime's stdout pipe for invocations (the hostcall loops size their own).
const STDOUT_CAPACITY: usize = 1 << 20;

/// Epoch deadline for wasmtime stores: far enough never to be reached.
const FAR_DEADLINE: u64 = 1 << 40;

/// A module with one memory page, one empty exported function and no imports.
pub const EMPTY_WAT: &str = r#"(module
  (memory (export "memory") 1)
  (func (export "_start")))"#;

/// A WASI hello world: one `fd_write` of a 12-byte iovec to fd 1; traps unless the call
/// succeeds and reports 12 bytes written.
pub const HELLO_WAT: &str = r#"(module
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

/// Number and size of the data segments of [`data_wat`]: 16 x 64 KiB = 1 MiB.
pub const DATA_SEGMENTS: usize = 16;
/// Size of each data segment.
pub const DATA_SEGMENT_BYTES: usize = 64 << 10;

/// xorshift64*: the pseudo-random bytes of the data segments.
fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A hello world with 1 MiB of data segments: 16 segments of 64 KiB of pseudo-random bytes, one
/// per wasm page from page 1 on. `_start` reads one 32-bit word from each segment (at a
/// different offset in each), traps unless their xor is the expected value, then writes
/// [`HELLO`] with `fd_write` like [`HELLO_WAT`].
pub fn data_wat() -> String {
    let mut wat = String::with_capacity(DATA_SEGMENTS * DATA_SEGMENT_BYTES * 3 + 4096);
    let mut expected = 0u32;
    let mut reads = String::new();
    wat.push_str("(module\n  (import \"wasi_snapshot_preview1\" \"fd_write\"\n    (func $fd_write (param i32 i32 i32 i32) (result i32)))\n");
    let _ = writeln!(
        wat,
        "  (memory (export \"memory\") {})",
        DATA_SEGMENTS as u32 + 1
    );
    wat.push_str("  (data (i32.const 16) \"Hello World\\n\")\n");
    for i in 0..DATA_SEGMENTS {
        let bytes = pseudo_random(DATA_SEGMENT_BYTES, 0x9e37_79b9_7f4a_7c15 ^ i as u64);
        let base = (i + 1) * DATA_SEGMENT_BYTES;
        let off = (i * 4099) % (DATA_SEGMENT_BYTES - 4);
        expected ^= u32::from_le_bytes(bytes[off..off + 4].try_into().expect("4 bytes"));
        let _ = writeln!(
            reads,
            "    (local.set $x (i32.xor (local.get $x) (i32.load (i32.const {}))))",
            base + off
        );
        let _ = write!(wat, "  (data (i32.const {base}) \"");
        for b in bytes {
            let _ = write!(wat, "\\{b:02x}");
        }
        wat.push_str("\")\n");
    }
    let _ = write!(
        wat,
        r#"  (func (export "_start") (local $x i32)
{reads}    (if (i32.ne (local.get $x) (i32.const {expected})) (then unreachable))
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const 12))
    (if (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))
      (then unreachable))
    (if (i32.ne (i32.load (i32.const 8)) (i32.const 12))
      (then unreachable))))
"#,
        expected = expected as i32
    );
    wat
}

/// The hostcall loops: each export calls its import `n` times (argument) and returns the
/// bitwise or of the errnos (0 if every call succeeded; for `nop_loop` the sum of the results,
/// which is `n`). `fd_write` writes [`HELLO`] to fd 1; `clock_time_get` reads the monotonic
/// clock; `bench::nop` is an empty host function (the identity on an i32).
pub const HOSTCALL_WAT: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "clock_time_get"
    (func $clock_time_get (param i32 i64 i32) (result i32)))
  (import "bench" "nop" (func $nop (param i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "Hello World\n")
  (func (export "_start"))
  (func (export "fd_write_loop") (param $n i32) (result i32) (local $err i32)
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const 12))
    (block $done
      (loop $again
        (br_if $done (i32.eqz (local.get $n)))
        (local.set $err (i32.or (local.get $err)
          (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))))
        (local.set $n (i32.sub (local.get $n) (i32.const 1)))
        (br $again)))
    (local.get $err))
  (func (export "clock_loop") (param $n i32) (result i32) (local $err i32)
    (block $done
      (loop $again
        (br_if $done (i32.eqz (local.get $n)))
        (local.set $err (i32.or (local.get $err)
          (call $clock_time_get (i32.const 1) (i64.const 1) (i32.const 32))))
        (local.set $n (i32.sub (local.get $n) (i32.const 1)))
        (br $again)))
    (if (i64.eqz (i64.load (i32.const 32))) (then unreachable))
    (local.get $err))
  (func (export "nop_loop") (param $n i32) (result i32) (local $sum i32)
    (block $done
      (loop $again
        (br_if $done (i32.eqz (local.get $n)))
        (local.set $sum (i32.add (local.get $sum) (call $nop (i32.const 1))))
        (local.set $n (i32.sub (local.get $n) (i32.const 1)))
        (br $again)))
    (local.get $sum)))"#;

/// Parses wat into wasm.
pub fn wat(source: &str) -> Vec<u8> {
    wat::parse_str(source).expect("benchmark wat parses")
}

/// A WASI program run once per invocation.
#[derive(Clone, Debug)]
pub struct WasiGuest {
    /// Short name used in reports.
    pub name: &'static str,
    /// The module.
    pub wasm: Vec<u8>,
    /// What it reads on stdin.
    pub stdin: Vec<u8>,
}

/// The WASI guests of the invocation benchmarks, in report order. The two built ones
/// (`hello-rust.wasm`, `hello-go.wasm`) and QuickJS come from `benches/build-guests.sh`; a
/// missing one is left out with a note.
pub fn wasi_guests(notes: &mut Vec<String>) -> Vec<WasiGuest> {
    let mut guests = vec![
        WasiGuest {
            name: "hello.wat",
            wasm: wat(HELLO_WAT),
            stdin: Vec::new(),
        },
        WasiGuest {
            name: "hello.wat + 1 MiB data",
            wasm: wat(&data_wat()),
            stdin: Vec::new(),
        },
    ];
    let built: [(&'static str, &str, &[u8]); 3] = [
        ("hello-rust.wasm", "hello-rust.wasm", b""),
        ("hello-go.wasm", "hello-go.wasm", b""),
        // QuickJS prints the value of the program on stdin: a string, followed by a newline.
        (
            "quickjs.wasm 'Hello World'",
            "quickjs.wasm",
            b"'Hello World'",
        ),
    ];
    for (name, file, stdin) in built {
        match std::fs::read(crate::guests_dir().join(file)) {
            Ok(wasm) => guests.push(WasiGuest {
                name,
                wasm,
                stdin: stdin.to_vec(),
            }),
            Err(e) => notes.push(format!(
                "{name}: not built ({e}); run benches/build-guests.sh"
            )),
        }
    }
    guests
}

/// How a pool resets slots.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reset {
    /// On the pool's reset thread (fnvm's default).
    Background,
    /// In the thread that drops the instance.
    Inline,
}

/// One engine configuration of these benchmarks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    /// fnvm's pool, background reset.
    Fnvm,
    /// fnvm's pool, inline reset.
    FnvmInline,
    /// wasmtime's pooling allocator, defaults.
    Wasmtime,
    /// wasmtime's pooling allocator with keep-resident and `pagemap_scan`.
    WasmtimeTuned,
}

impl Engine {
    /// All configurations in report order.
    pub const ALL: [Engine; 4] = [
        Engine::Fnvm,
        Engine::FnvmInline,
        Engine::Wasmtime,
        Engine::WasmtimeTuned,
    ];

    /// Column label.
    pub fn label(self) -> &'static str {
        match self {
            Engine::Fnvm => "fnvm (bg reset)",
            Engine::FnvmInline => "fnvm (inline reset)",
            Engine::Wasmtime => "wasmtime pooling",
            Engine::WasmtimeTuned => "wasmtime pooling tuned",
        }
    }

    /// Whether this is an fnvm configuration.
    pub fn is_fnvm(self) -> bool {
        matches!(self, Engine::Fnvm | Engine::FnvmInline)
    }
}

/// An fnvm pool configuration for these benchmarks.
pub fn fnvm_pool_config(slots: u32, reset: Reset) -> fnvm_runtime::PoolConfig {
    fnvm_runtime::PoolConfig {
        slots,
        max_memory_pages: (MAX_MEMORY_BYTES >> 16) as u32,
        background_reset: reset == Reset::Background,
        ..Default::default()
    }
}

/// A fresh fnvm engine (default configuration: no epoch ticker, no instance has a timeout)
/// and a pool of `slots` on it.
pub fn fnvm_pool(slots: u32, reset: Reset) -> Result<InstancePool, String> {
    let e = fnvm_runtime::Engine::new(fnvm_runtime::EngineConfig::default())
        .map_err(|e| format!("fnvm engine: {e}"))?;
    InstancePool::new(&e, fnvm_pool_config(slots, reset)).map_err(|e| format!("fnvm pool: {e}"))
}

/// Compiles, loads and links `wasm` for fnvm with `resolve`, and prepares it for `pool`.
pub fn fnvm_prepare<T: Send + 'static>(
    pool: &InstancePool,
    wasm: &[u8],
    resolve: impl FnMut(&Import) -> Option<HostFuncDef<T>>,
) -> Result<PooledModule<T>, String> {
    let artifact = fnvm_compiler::compile(wasm, &fnvm_compiler::CompileOptions::default())
        .map_err(|e| format!("fnvm compile: {e}"))?;
    let module = fnvm_runtime::Module::from_artifact(pool.engine(), &artifact)
        .map_err(|e| format!("fnvm load: {e}"))?;
    let linked =
        fnvm_runtime::LinkedModule::new(&module, resolve).map_err(|e| format!("fnvm link: {e}"))?;
    pool.prepare(&linked)
        .map_err(|e| format!("fnvm prepare: {e}"))
}

/// A wasmtime engine with the pooling allocator for `slots` instances, copy-on-write memory
/// images and epoch interruption; `tuned` adds `pagemap_scan` and keep-resident.
pub fn wasmtime_pooling_engine(slots: u32, tuned: bool) -> Result<wasmtime::Engine, String> {
    let mut pool = wasmtime::PoolingAllocationConfig::new();
    pool.total_memories(slots)
        .total_tables(slots)
        .total_core_instances(slots)
        .total_stacks(slots)
        .max_memory_size(MAX_MEMORY_BYTES)
        .table_elements(1_000_000)
        .max_core_instance_size(16 << 20);
    if tuned {
        pool.pagemap_scan(wasmtime::Enabled::Auto)
            .linear_memory_keep_resident(1 << 20)
            .table_keep_resident(1 << 20);
    }
    let mut config = wasmtime::Config::new();
    config
        .allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool))
        .memory_init_cow(true)
        .epoch_interruption(true);
    wasmtime::Engine::new(&config).map_err(|e| format!("wasmtime pooling engine: {e:?}"))
}

/// A wasmtime linker with WASI preview1 (synchronous) and `bench::nop`.
pub fn wasmtime_linker(engine: &wasmtime::Engine) -> Result<wasmtime::Linker<WasiP1Ctx>, String> {
    let mut linker = wasmtime::Linker::new(engine);
    wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |cx| cx)
        .map_err(|e| format!("wasmtime WASI linker: {e:?}"))?;
    linker
        .func_wrap("bench", "nop", |x: i32| x)
        .map_err(|e| format!("wasmtime linker: {e:?}"))?;
    Ok(linker)
}

/// Compiles and links `wasm` for wasmtime.
pub fn wasmtime_prepare(
    engine: &wasmtime::Engine,
    wasm: &[u8],
) -> Result<wasmtime::InstancePre<WasiP1Ctx>, String> {
    let module =
        wasmtime::Module::new(engine, wasm).map_err(|e| format!("wasmtime compile: {e:?}"))?;
    wasmtime_linker(engine)?
        .instantiate_pre(&module)
        .map_err(|e| format!("wasmtime link: {e:?}"))
}

/// A fresh wasmtime WASI context with a captured stdout (and `stdin` on fd 0).
fn wasmtime_ctx(arg0: &str, stdin: &[u8], stdout_capacity: usize) -> (WasiP1Ctx, MemoryOutputPipe) {
    let stdout = MemoryOutputPipe::new(stdout_capacity);
    let mut b = wasmtime_wasi::WasiCtxBuilder::new();
    b.arg(arg0).stdout(stdout.clone());
    if !stdin.is_empty() {
        b.stdin(MemoryInputPipe::new(stdin.to_vec()));
    }
    (b.build_p1(), stdout)
}

fn check_stdout(got: &[u8]) -> Result<(), String> {
    if got == HELLO {
        Ok(())
    } else {
        Err(format!(
            "stdout is {:?}, expected {:?}",
            String::from_utf8_lossy(got),
            String::from_utf8_lossy(HELLO)
        ))
    }
}

/// A module prepared on one engine configuration, ready for invocations. `Send + Sync`: the
/// throughput benchmark shares one between threads.
pub enum Prepared {
    /// fnvm's pool and prepared module (WASI and `bench::nop` imports).
    Fnvm {
        /// The pool (its reset thread, if any, lives as long as it).
        pool: InstancePool,
        /// The module, linked and prepared for the pool.
        pre: PooledModule<WasiCtx>,
    },
    /// wasmtime's engine (owning the pooling allocator) and linked module.
    Wasmtime {
        /// The engine.
        engine: wasmtime::Engine,
        /// The linked module.
        pre: wasmtime::InstancePre<WasiP1Ctx>,
    },
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Prepared::Fnvm { .. } => "Prepared::Fnvm",
            Prepared::Wasmtime { .. } => "Prepared::Wasmtime",
        })
    }
}

/// A live instance of either engine, between instantiation and drop.
#[expect(
    clippy::large_enum_variant,
    reason = "fnvm's instance holds its WasiCtx inline, as the data plane does; boxing it would \
              add an allocation per invocation to what is measured"
)]
pub enum Live {
    /// fnvm, with the invocation's WASI context as its host state.
    Fnvm(PooledInstance<WasiCtx>),
    /// wasmtime: the store owns the instance.
    Wasmtime(wasmtime::Store<WasiP1Ctx>, wasmtime::Instance),
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Live::Fnvm(_) => "Live::Fnvm",
            Live::Wasmtime(..) => "Live::Wasmtime",
        })
    }
}

impl Prepared {
    /// Prepares `wasm` on `engine` with a pool of `slots`.
    pub fn new(engine: Engine, wasm: &[u8], slots: u32) -> Result<Prepared, String> {
        match engine {
            Engine::Fnvm | Engine::FnvmInline => {
                let reset = if engine == Engine::Fnvm {
                    Reset::Background
                } else {
                    Reset::Inline
                };
                let pool = fnvm_pool(slots, reset)?;
                let pre = fnvm_prepare(&pool, wasm, fnvm_wasi::resolve)?;
                Ok(Prepared::Fnvm { pool, pre })
            }
            Engine::Wasmtime | Engine::WasmtimeTuned => {
                let engine = wasmtime_pooling_engine(slots, engine == Engine::WasmtimeTuned)?;
                let pre = wasmtime_prepare(&engine, wasm)?;
                Ok(Prepared::Wasmtime { engine, pre })
            }
        }
    }

    /// Instantiates with a fresh WASI context (argument `arg0`, `stdin` on fd 0, stdout
    /// captured; wasmtime's stdout pipe holds `stdout_capacity` bytes).
    pub fn instantiate_wasi(
        &self,
        arg0: &str,
        stdin: &[u8],
        stdout_capacity: usize,
    ) -> Result<(Live, Option<MemoryOutputPipe>), String> {
        match self {
            Prepared::Fnvm { pool, pre } => {
                let ctx = fnvm_wasi::new_ctx(&[arg0], stdin)?;
                let inst = pool
                    .instantiate(pre, &fnvm_runtime::InstanceLimits::default(), ctx)
                    .map_err(|e| format!("fnvm instantiate: {e}"))?;
                Ok((Live::Fnvm(inst), None))
            }
            Prepared::Wasmtime { engine, pre } => {
                let (ctx, stdout) = wasmtime_ctx(arg0, stdin, stdout_capacity);
                let mut store = wasmtime::Store::new(engine, ctx);
                store.set_epoch_deadline(FAR_DEADLINE);
                let instance = pre
                    .instantiate(&mut store)
                    .map_err(|e| format!("wasmtime instantiate: {e:?}"))?;
                Ok((Live::Wasmtime(store, instance), Some(stdout)))
            }
        }
    }

    /// One whole invocation: fresh WASI context, instantiate, run `_start`, take stdout, drop.
    /// Checks that stdout is exactly [`HELLO`] and that the program exited with status 0.
    pub fn invoke(&self, stdin: &[u8]) -> Result<(), String> {
        let (mut live, pipe) = self.instantiate_wasi("main", stdin, STDOUT_CAPACITY)?;
        live.call_start()?;
        let out = live.finish(pipe)?;
        check_stdout(&out)
    }
}

impl Live {
    /// Runs `_start`; an exit with status 0 counts as success.
    pub fn call_start(&mut self) -> Result<(), String> {
        match self {
            Live::Fnvm(inst) => match inst.call("_start", &[]) {
                Ok(_) | Err(fnvm_runtime::Halt::Exit { code: 0, .. }) => Ok(()),
                Err(h) => Err(format!("fnvm _start: {h}")),
            },
            Live::Wasmtime(store, instance) => {
                let start = instance
                    .get_typed_func::<(), ()>(&mut *store, "_start")
                    .map_err(|e| format!("wasmtime _start: {e:?}"))?;
                match start.call(&mut *store, ()) {
                    Ok(()) => Ok(()),
                    Err(e) => match e.downcast_ref::<wasmtime_wasi::I32Exit>() {
                        Some(wasmtime_wasi::I32Exit(0)) => Ok(()),
                        _ => Err(format!("wasmtime _start: {e:?}")),
                    },
                }
            }
        }
    }

    /// Calls an export taking and returning one i32.
    pub fn call_i32(&mut self, name: &str, arg: i32) -> Result<i32, String> {
        match self {
            Live::Fnvm(inst) => match inst.call(name, &[fnvm_runtime::Val::I32(arg)]) {
                Ok(v) => match v.as_slice() {
                    [fnvm_runtime::Val::I32(x)] => Ok(*x),
                    other => Err(format!("fnvm {name}: unexpected results {other:?}")),
                },
                Err(h) => Err(format!("fnvm {name}: {h}")),
            },
            Live::Wasmtime(store, instance) => {
                let f = instance
                    .get_typed_func::<i32, i32>(&mut *store, name)
                    .map_err(|e| format!("wasmtime {name}: {e:?}"))?;
                f.call(&mut *store, arg)
                    .map_err(|e| format!("wasmtime {name}: {e:?}"))
            }
        }
    }

    /// Host memory the live instance occupies, where the engine can tell (fnvm only).
    pub fn resident_bytes(&self) -> Option<u64> {
        match self {
            Live::Fnvm(inst) => inst.resident_bytes().ok(),
            Live::Wasmtime(..) => None,
        }
    }

    /// Takes stdout and drops the instance (returning its slot).
    pub fn finish(self, pipe: Option<MemoryOutputPipe>) -> Result<Vec<u8>, String> {
        match self {
            Live::Fnvm(inst) => {
                // Ends the instance (its slot goes back to the pool) and returns the context.
                let mut ctx = inst.into_data();
                Ok(ctx.take_stdout())
            }
            Live::Wasmtime(store, _) => {
                drop(store);
                let pipe = pipe.ok_or("wasmtime instance without a stdout pipe")?;
                Ok(pipe
                    .try_into_inner()
                    .ok_or("wasmtime stdout pipe still shared")?
                    .to_vec())
            }
        }
    }
}

/// Median of durations (sorts them).
pub fn median(samples: &mut [Duration]) -> Duration {
    samples.sort();
    let n = samples.len();
    if n == 0 {
        return Duration::ZERO;
    }
    if n % 2 == 1 {
        samples[n / 2]
    } else {
        (samples[n / 2 - 1] + samples[n / 2]) / 2
    }
}

/// Time of `k` calls of `f`, divided by `k`.
pub fn per_call(k: u32, mut f: impl FnMut()) -> Duration {
    let t = Instant::now();
    for _ in 0..k {
        f();
    }
    t.elapsed() / k
}

/// The hostcall loops of [`HOSTCALL_WAT`]: export name, short label.
pub const HOSTCALLS: &[(&str, &str)] = &[
    ("fd_write_loop", "fd_write 12 B to memory"),
    ("clock_loop", "clock_time_get (monotonic)"),
    ("nop_loop", "empty host function"),
];

/// One timed call of a hostcall loop with `n` iterations on a fresh instance (instantiation
/// not timed): the time of the whole call (divide by `n` for one hostcall). Checks the loop's result and, for `fd_write`, that
/// stdout holds `n` copies of [`HELLO`].
pub fn hostcall_sample(prepared: &Prepared, export: &str, n: u32) -> Result<Duration, String> {
    let capacity = HELLO.len() * n as usize + 1;
    let (mut live, pipe) = prepared.instantiate_wasi("main", &[], capacity)?;
    let t = Instant::now();
    let r = live.call_i32(export, n as i32)?;
    let elapsed = t.elapsed();
    let want = if export == "nop_loop" { n as i32 } else { 0 };
    if r != want {
        return Err(format!("{export}({n}) returned {r}, expected {want}"));
    }
    let out = live.finish(pipe)?;
    if export == "fd_write_loop" {
        if out.len() != HELLO.len() * n as usize || !out.chunks(HELLO.len()).all(|c| c == HELLO) {
            return Err(format!(
                "{export}({n}): stdout has {} bytes, expected {} copies of {HELLO:?}",
                out.len(),
                n
            ));
        }
    } else if !out.is_empty() {
        return Err(format!("{export}: unexpected stdout"));
    }
    Ok(elapsed)
}

/// A module without imports prepared on one engine configuration, for the instantiation
/// benchmark: no host state on either side (fnvm: `()`, wasmtime: `Store<()>`).
pub enum Bare {
    /// fnvm's pool and prepared module.
    Fnvm {
        /// The pool.
        pool: InstancePool,
        /// The module, linked (no imports) and prepared for the pool.
        pre: PooledModule<()>,
    },
    /// wasmtime's engine (owning the pooling allocator) and linked module.
    Wasmtime {
        /// The engine.
        engine: wasmtime::Engine,
        /// The linked module.
        pre: wasmtime::InstancePre<()>,
    },
}

impl std::fmt::Debug for Bare {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Bare::Fnvm { .. } => "Bare::Fnvm",
            Bare::Wasmtime { .. } => "Bare::Wasmtime",
        })
    }
}

/// A live instance of a [`Bare`] module; dropping it is the teardown being measured.
pub enum BareLive {
    /// fnvm.
    Fnvm(PooledInstance<()>),
    /// wasmtime: the store owns the instance.
    Wasmtime(wasmtime::Store<()>, wasmtime::Instance),
}

impl std::fmt::Debug for BareLive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BareLive::Fnvm(_) => "BareLive::Fnvm",
            BareLive::Wasmtime(..) => "BareLive::Wasmtime",
        })
    }
}

impl Bare {
    /// Prepares `wasm` (no imports) on `engine` with a pool of `slots`, and checks that an
    /// instance runs its `_start`.
    pub fn new(engine: Engine, wasm: &[u8], slots: u32) -> Result<Bare, String> {
        let bare = match engine {
            Engine::Fnvm | Engine::FnvmInline => {
                let reset = if engine == Engine::Fnvm {
                    Reset::Background
                } else {
                    Reset::Inline
                };
                let pool = fnvm_pool(slots, reset)?;
                // No imports: the resolver is never asked.
                let pre = fnvm_prepare(&pool, wasm, |_| None::<HostFuncDef<()>>)?;
                Bare::Fnvm { pool, pre }
            }
            Engine::Wasmtime | Engine::WasmtimeTuned => {
                let engine = wasmtime_pooling_engine(slots, engine == Engine::WasmtimeTuned)?;
                let module = wasmtime::Module::new(&engine, wasm)
                    .map_err(|e| format!("wasmtime compile: {e:?}"))?;
                let pre = wasmtime::Linker::new(&engine)
                    .instantiate_pre(&module)
                    .map_err(|e| format!("wasmtime link: {e:?}"))?;
                Bare::Wasmtime { engine, pre }
            }
        };
        match bare.instantiate()? {
            BareLive::Fnvm(mut inst) => {
                inst.call("_start", &[])
                    .map_err(|h| format!("fnvm _start: {h}"))?;
            }
            BareLive::Wasmtime(mut store, instance) => instance
                .get_typed_func::<(), ()>(&mut store, "_start")
                .and_then(|f| f.call(&mut store, ()))
                .map_err(|e| format!("wasmtime _start: {e:?}"))?,
        }
        Ok(bare)
    }

    /// Instantiates (fnvm: takes a slot; wasmtime: a new store with a far epoch deadline and
    /// an instance in it).
    pub fn instantiate(&self) -> Result<BareLive, String> {
        match self {
            Bare::Fnvm { pool, pre } => pool
                .instantiate(pre, &fnvm_runtime::InstanceLimits::default(), ())
                .map(BareLive::Fnvm)
                .map_err(|e| format!("fnvm instantiate: {e}")),
            Bare::Wasmtime { engine, pre } => {
                let mut store = wasmtime::Store::new(engine, ());
                store.set_epoch_deadline(FAR_DEADLINE);
                let instance = pre
                    .instantiate(&mut store)
                    .map_err(|e| format!("wasmtime instantiate: {e:?}"))?;
                Ok(BareLive::Wasmtime(store, instance))
            }
        }
    }
}

impl Prepared {
    /// Slots holding an instance or waiting for reset (fnvm); 0 for wasmtime, whose stores
    /// release their slots when dropped.
    pub fn in_use(&self) -> usize {
        match self {
            Prepared::Fnvm { pool, .. } => pool.stats().in_use,
            Prepared::Wasmtime { .. } => 0,
        }
    }
}
