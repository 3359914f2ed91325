//! Running functions: loading a module once (compile cache, link against the hostcalls, memory
//! image) and invoking it any number of times, each invocation in a fresh instance from the
//! pool with its own WASI context, optionally traced into a [`DebugReport`].
//!
//! This is what `fnvm run` does once, and what a worker does per request: the same code path,
//! so the debug report of the CLI is the one the HTTP endpoint returns.

use crate::cache::{ArtifactCache, CacheError, CacheOutcome};
use crate::report::{DebugReport, Trigger};
use fnvm_hostcalls::{Output, Stdin, WasiCtx};
use fnvm_runtime::{
    Engine, EngineConfig, FrameInfo, Halt, InstanceLimits, InstancePool, InstancePre,
    InstantiationError, Module, PoolConfig, Trap,
};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use thiserror::Error;

/// Why a function could not be loaded or invoked (as opposed to the guest failing, which is an
/// [`Outcome`]).
#[derive(Debug, Error)]
pub enum InvokeError {
    /// Compiling or caching the module failed.
    #[error(transparent)]
    Cache(#[from] CacheError),
    /// Linking or instantiating failed (unknown import, pool exhausted, ...).
    #[error(transparent)]
    Instantiate(#[from] InstantiationError),
    /// The WASI context could not be built (a preopen is missing, ...).
    #[error(transparent)]
    Wasi(#[from] fnvm_hostcalls::BuildError),
    /// The engine or the pool could not be created.
    #[error("runtime set-up: {0}")]
    Setup(String),
    /// The module has no exported function to run.
    #[error("the module exports no function `{0}`")]
    NoEntry(String),
}

/// Settings of a [`Runner`].
#[derive(Clone, Debug)]
pub struct RunnerConfig {
    /// Where compiled artifacts are cached.
    pub cache_dir: PathBuf,
    /// The instance pool.
    pub pool: PoolConfig,
    /// How often the engine's epoch advances (the unit of invocation deadlines); `None` starts
    /// no ticker thread, and deadlines then never expire.
    pub epoch_tick: Option<Duration>,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        RunnerConfig {
            cache_dir: ArtifactCache::default_dir(),
            pool: PoolConfig::default(),
            epoch_tick: Some(Duration::from_millis(10)),
        }
    }
}

/// A module ready to invoke: compiled, loaded, linked, with its memory image built.
#[derive(Debug, Clone)]
pub struct Function {
    pre: InstancePre,
    /// Size of the WebAssembly binary (of the artifact, when given one).
    size: u64,
    /// Where the artifact came from.
    pub origin: CacheOutcome,
}

impl Function {
    /// The prepared module.
    pub fn prepared(&self) -> &InstancePre {
        &self.pre
    }

    /// Size in bytes of the module as uploaded.
    pub fn size(&self) -> u64 {
        self.size
    }
}

/// One invocation's inputs and capabilities.
#[derive(Clone, Debug)]
pub struct Invocation {
    /// Arguments, `args[0]` being the program name.
    pub args: Vec<String>,
    /// Environment variables.
    pub env: Vec<(String, String)>,
    /// Preopened directories: (host path, guest path).
    pub preopens: Vec<(PathBuf, String)>,
    /// Standard input.
    pub stdin: Stdin,
    /// Standard output (captured in the outcome when [`Output::Buffer`]).
    pub stdout: Output,
    /// Standard error.
    pub stderr: Output,
    /// Trace hostcalls and build a debug report (stdout and stderr are then captured).
    pub debug: bool,
    /// What triggered the invocation.
    pub trigger: Trigger,
    /// Memory, stack and deadline limits.
    pub limits: InstanceLimits,
    /// The export to run.
    pub entry: String,
}

impl Default for Invocation {
    fn default() -> Self {
        Invocation {
            args: Vec::new(),
            env: Vec::new(),
            preopens: Vec::new(),
            stdin: Stdin::Null,
            stdout: Output::Buffer,
            stderr: Output::Buffer,
            debug: false,
            trigger: Trigger::Std,
            limits: InstanceLimits::default(),
            entry: "_start".into(),
        }
    }
}

/// How the guest ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    /// The entry returned (status 0) or the guest called `proc_exit`.
    Exited(i32),
    /// The guest trapped.
    Trapped(Trap),
}

/// What an invocation produced.
#[derive(Debug)]
pub struct Outcome {
    /// How the guest ended.
    pub status: Status,
    /// Captured standard output (empty unless captured).
    pub stdout: Vec<u8>,
    /// Captured standard error.
    pub stderr: Vec<u8>,
    /// The debug report, when asked for.
    pub report: Option<DebugReport>,
}

/// Loads functions and invokes them. Share one per process: it owns the engine, the instance
/// pool and the epoch ticker.
#[derive(Debug)]
pub struct Runner {
    engine: Engine,
    pool: InstancePool,
    cache: ArtifactCache,
    /// Held for its Drop, which stops the thread.
    _ticker: Option<Ticker>,
}

#[derive(Debug)]
struct Ticker {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Ticker {
    /// Advances `engine`'s epoch every `tick`: deadlines are counted in these ticks.
    fn start(engine: &Engine, tick: Duration) -> Result<Ticker, InvokeError> {
        let stop = Arc::new(AtomicBool::new(false));
        let (engine, stop2) = (engine.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("fnvm-epoch".into())
            .spawn(move || {
                while !stop2.load(Ordering::Relaxed) {
                    std::thread::park_timeout(tick);
                    engine.increment_epoch();
                }
            })
            .map_err(|e| InvokeError::Setup(format!("starting the epoch ticker: {e}")))?;
        Ok(Ticker {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

impl Runner {
    /// Creates the engine and the pool.
    pub fn new(config: RunnerConfig) -> Result<Runner, InvokeError> {
        let engine = Engine::new(EngineConfig {
            max_wasm_stack: config.pool.max_wasm_stack,
            max_memory_pages: config.pool.max_memory_pages,
            max_table_elements: config.pool.max_table_elements,
        })
        .map_err(|e| InvokeError::Setup(e.to_string()))?;
        let pool = InstancePool::new(&engine, config.pool.clone())
            .map_err(|e| InvokeError::Setup(e.to_string()))?;
        let ticker = match config.epoch_tick {
            Some(tick) => Some(Ticker::start(&engine, tick)?),
            None => None,
        };
        Ok(Runner {
            engine,
            pool,
            cache: ArtifactCache::new(config.cache_dir),
            _ticker: ticker,
        })
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The pool.
    pub fn pool(&self) -> &InstancePool {
        &self.pool
    }

    /// Loads a module from WebAssembly bytes (through the compile cache) or from an artifact,
    /// and links it against the hostcalls.
    pub fn load(&self, bytes: &[u8]) -> Result<Function, InvokeError> {
        let engine = &self.engine;
        // A cache hit maps the artifact file (code straight from the page cache).
        let (module, origin) = self.cache.load(
            bytes,
            |a| Module::from_artifact(engine, a),
            |f| Module::from_file(engine, f),
        )?;
        let pre = InstancePre::new(&module, &mut |imp| {
            fnvm_hostcalls::resolve(&imp.module, &imp.name)
        })?;
        Ok(Function {
            pre,
            size: bytes.len() as u64,
            origin,
        })
    }

    /// Runs `function` once in a fresh instance.
    pub fn invoke(&self, function: &Function, inv: Invocation) -> Result<Outcome, InvokeError> {
        let t0 = Instant::now();
        let (stdout, stderr) = if inv.debug {
            (Output::Buffer, Output::Buffer)
        } else {
            (inv.stdout, inv.stderr)
        };
        let mut builder = WasiCtx::builder()
            .args(inv.args.iter().cloned())
            .envs(inv.env.iter().cloned())
            .stdin(inv.stdin.clone())
            .stdout(stdout)
            .stderr(stderr)
            .trace(inv.debug);
        for (host, guest) in &inv.preopens {
            builder = builder.preopen_dir(host.clone(), guest.clone());
        }
        let wasi = builder.build()?;
        let info = function.pre.module().info();
        if !info.exports.iter().any(|e| e.name == inv.entry) {
            return Err(InvokeError::NoEntry(inv.entry));
        }
        let limits = fnvm_runtime::InstanceLimits {
            exact_page_accounting: inv.debug || inv.limits.exact_page_accounting,
            ..inv.limits.clone()
        };
        let mut inst = self
            .pool
            .instantiate(&function.pre, &limits, Box::new(wasi))?;
        let vmctx = inst.vmctx();
        let start_time = t0.elapsed();
        if let Some(d) = wasi_of(&mut inst).and_then(|w| w.dmesg_mut()) {
            d.start(start_time);
        }
        let t_run = Instant::now();
        let result = inst.call(&inv.entry, &[]);
        let run_time = t_run.elapsed();
        let (status, frames) = match result {
            Ok(_) => (Status::Exited(0), Vec::new()),
            Err(Halt::Exit { code, backtrace }) => (Status::Exited(code), backtrace),
            Err(Halt::Trap(t)) => {
                let frames = t.backtrace.clone();
                (Status::Trapped(t), frames)
            }
        };
        let current_pages = if inv.debug {
            inst.resident_memory_pages().unwrap_or(0)
        } else {
            0
        };
        let mut wasi = inst
            .take_data()
            .and_then(|d| d.downcast::<WasiCtx>().ok())
            .ok_or_else(|| InvokeError::Setup("the instance lost its WASI context".into()))?;
        drop(inst);
        let (out, err) = (wasi.take_stdout(), wasi.take_stderr());
        let report = match wasi.take_dmesg() {
            Some(mut dmesg) if inv.debug => {
                let reason = match &status {
                    Status::Exited(code) => {
                        dmesg.halt(vmctx, *code);
                        "host_halt".to_string()
                    }
                    Status::Trapped(t) => format!("trap: {}", t.code.message()),
                };
                let symbols: Vec<(usize, String)> = if frames.is_empty() {
                    // A normal return: the entry itself is where the guest halted, shown at
                    // the start of its body.
                    vec![(
                        entry_offset(info, &inv.entry),
                        format!("{} (returned)", inv.entry),
                    )]
                } else {
                    frames.iter().map(symbol).collect()
                };
                let dmesg = dmesg.finish(&reason, &symbols, run_time, t0.elapsed());
                Some(DebugReport {
                    stdout: String::from_utf8_lossy(&out).into_owned(),
                    stderr: String::from_utf8_lossy(&err).into_owned(),
                    dmesg,
                    trigger: inv.trigger,
                    response_body: String::new(),
                    current_pages,
                    size: function.size,
                })
            }
            _ => None,
        };
        Ok(Outcome {
            status,
            stdout: out,
            stderr: err,
            report,
        })
    }
}

/// Offset in the wasm binary of the body of the exported function `name` (0 if unknown).
fn entry_offset(info: &fnvm_abi::ModuleInfo, name: &str) -> usize {
    let offset = || {
        let e = info.exports.iter().find(|e| e.name == name)?;
        let defined = e.index.checked_sub(info.num_imported_funcs())?;
        let range = info.code.get(defined as usize)?;
        // The first instruction of the body with a known wasm offset (the prologue has none).
        let i = info
            .addr_map
            .partition_point(|m| m.code_offset < range.offset);
        let entry = info.addr_map.get(i)?;
        range
            .contains(entry.code_offset)
            .then_some(entry.wasm_offset)
    };
    offset().map_or(0, |o| o as usize)
}

fn wasi_of(inst: &mut fnvm_runtime::PooledInstance) -> Option<&mut WasiCtx> {
    inst.data()?.downcast_mut::<WasiCtx>()
}

/// A frame as dmesg shows it: its offset in the wasm binary (the native pc when unknown) and
/// `module!function` (or `<wasm function N>` without a name section).
fn symbol(f: &FrameInfo) -> (usize, String) {
    let at = f.wasm_offset.map_or(f.pc, |o| o as usize);
    let name = match &f.func_name {
        Some(n) => n.clone(),
        None => format!("<wasm function {}>", f.func_index),
    };
    let name = match &f.module_name {
        Some(m) => format!("{m}!{name}"),
        None => name,
    };
    (at, name)
}
