//! Running functions: loading a module once (compile cache, link against the hostcalls,
//! prepare on the execution backend) and invoking it any number of times, each invocation in a
//! fresh instance with its own WASI context, optionally traced into a [`DebugReport`].
//!
//! This is what `fnvm run` does once, and what a worker does per request: the same code path,
//! so the debug report of the CLI is the one the HTTP endpoint returns. Failures come in three
//! kinds a server maps to different answers: [`SetupError`] (the runner itself), [`PrepareError`]
//! (deploy time: the module does not compile, link or fit), [`InvokeError`] (per request: the
//! backend is full, the context cannot be built); how the guest itself ended is the
//! [`Outcome`]'s [`Status`] (a trap, which [`fnvm_runtime::Trap::is_deadline`] tells apart from
//! a timeout).

use crate::cache::{ArtifactCache, CacheError, CacheOutcome};
use crate::report::{DebugReport, Trigger};
use fnvm_hostcalls::{CStrings, Output, Stdin, WasiCtx};
use fnvm_runtime::{
    BackendInstance, Engine, EngineConfig, EngineError, ExecutionBackend, FrameInfo, Halt,
    InstanceLimits, InstancePool, InstantiationError, LinkedModule, Module, PoolConfig, PoolError,
    Trap,
};
use std::borrow::Cow;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use thiserror::Error;

/// Why a runner could not be set up.
#[derive(Debug, Error)]
pub enum SetupError {
    /// The engine (or its epoch ticker) could not be created.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The instance pool could not be created.
    #[error(transparent)]
    Pool(#[from] PoolError),
    /// `/dev/kvm` is missing or unusable (the VM backend needs it).
    #[error("isolation vm needs /dev/kvm: {0}")]
    Kvm(#[source] fnvm_runtime::kvm::VmError),
    /// The KVM backend's threads could not be started.
    #[error("starting the KVM backend: {0}")]
    KvmBackend(#[source] std::io::Error),
}

/// Why a module could not be made ready to invoke: a property of the module (or of the limits
/// it must fit), known when it is deployed.
#[derive(Debug, Error)]
pub enum PrepareError {
    /// Compiling, loading or caching the module failed.
    #[error(transparent)]
    Cache(#[from] CacheError),
    /// Linking or preparing failed: an unknown import, a segment out of bounds, a module too
    /// large for the backend.
    #[error(transparent)]
    Link(#[from] InstantiationError),
}

/// Why an invocation could not run (as opposed to the guest failing, which is an
/// [`Outcome`]).
#[derive(Debug, Error)]
pub enum InvokeError {
    /// No instance could be had: [`InstantiationError::PoolExhausted`] when the backend is full
    /// (retry later), otherwise resources or the start function.
    #[error(transparent)]
    Instantiate(#[from] InstantiationError),
    /// The WASI context could not be built (a preopen is missing, ...).
    #[error(transparent)]
    Wasi(#[from] fnvm_hostcalls::BuildError),
    /// The module has no exported function to run.
    #[error("the module exports no function `{0}`")]
    NoEntry(String),
    /// The invocation ended without an outcome (a bug of the runner).
    #[error("the invocation produced no outcome")]
    NoOutcome,
}

/// Settings of an in-process [`Runner`].
#[derive(Clone, Debug)]
pub struct RunnerConfig {
    /// Where compiled artifacts are cached.
    pub cache_dir: PathBuf,
    /// The instance pool.
    pub pool: PoolConfig,
    /// How often the engine's epoch advances (the unit of invocation timeouts); `None` starts
    /// no ticker thread, and invocations then cannot have a timeout.
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

/// A module ready to invoke: compiled, loaded, linked against the hostcalls and prepared on
/// backend `B`.
pub struct PreparedModule<B: ExecutionBackend = InstancePool> {
    prepared: B::Prepared<WasiCtx>,
    /// Size of the WebAssembly binary (of the artifact, when given one).
    size: u64,
    /// Where the artifact came from.
    pub origin: CacheOutcome,
}

impl<B: ExecutionBackend> Clone for PreparedModule<B> {
    fn clone(&self) -> Self {
        PreparedModule {
            prepared: self.prepared.clone(),
            size: self.size,
            origin: self.origin,
        }
    }
}

impl<B: ExecutionBackend> std::fmt::Debug for PreparedModule<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedModule")
            .field("prepared", &self.prepared)
            .field("size", &self.size)
            .field("origin", &self.origin)
            .finish()
    }
}

impl<B: ExecutionBackend> PreparedModule<B> {
    /// The module as the backend prepared it.
    pub fn prepared(&self) -> &B::Prepared<WasiCtx> {
        &self.prepared
    }

    /// The loaded module.
    pub fn module(&self) -> &Module {
        B::linked(&self.prepared).module()
    }

    /// Size in bytes of the module as uploaded.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Host memory the prepared module holds, shared by its instances.
    pub fn resident_bytes(&self) -> usize {
        B::prepared_resident_bytes(&self.prepared)
    }
}

/// One invocation's inputs and capabilities.
#[derive(Clone, Debug)]
pub struct Invocation {
    /// Arguments, the first being the program name.
    pub args: CStrings,
    /// Environment variables.
    pub env: CStrings,
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
    pub entry: Cow<'static, str>,
    /// Cap on each captured output stream, in bytes.
    pub output_limit: usize,
    /// Read the thread's CPU clock around the run ([`Outcome::run_cpu_time`]). It is a system
    /// call each time (about 0.4 µs here, plus the preemption it invites: 5% of the CPU of a
    /// hello request served over HTTP), so a server asks only when it needs to know.
    pub measure_cpu: bool,
    /// Outbound connections (`host_tcp_connect`, `host_tls_connect`): the egress policy,
    /// limits and TLS roots; `None` (the default) grants none.
    pub net: Option<fnvm_hostcalls::NetConfig>,
}

impl Default for Invocation {
    fn default() -> Self {
        Invocation {
            args: CStrings::new(),
            env: CStrings::new(),
            preopens: Vec::new(),
            stdin: Stdin::Null,
            stdout: Output::Buffer,
            stderr: Output::Buffer,
            debug: false,
            trigger: Trigger::Std,
            limits: InstanceLimits::default(),
            entry: Cow::Borrowed("_start"),
            output_limit: fnvm_hostcalls::DEFAULT_OUTPUT_LIMIT,
            measure_cpu: true,
            net: None,
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
    /// Whether the guest wrote more to a captured stdout than the output limit let through
    /// (`stdout` then holds the first `output_limit` bytes).
    pub stdout_overflowed: bool,
    /// Captured standard error.
    pub stderr: Vec<u8>,
    /// The debug report, when asked for.
    pub report: Option<DebugReport>,
    /// From the start of the invocation until the guest's entry was called (context and
    /// instance).
    pub instantiate_time: Duration,
    /// The entry's run.
    pub run_time: Duration,
    /// The CPU time the run used (its thread's), when [`Invocation::measure_cpu`] asked for
    /// it: with `run_waited`, tells a long `run_time` that the guest caused from scheduling
    /// noise.
    pub run_cpu_time: Option<Duration>,
    /// Whether a hostcall of the run waited (a sleep, a wait for a descriptor).
    pub run_waited: bool,
    /// Hostcalls the guest made.
    pub hostcalls: u64,
    /// Size of the guest's linear memory at the end, in wasm pages (64 KiB).
    pub memory_pages: u64,
}

/// Loads functions and invokes them on an execution backend. Share one per process: it owns
/// the backend (for the in-process pool: the engine, its epoch ticker and the slots) and the
/// compile cache.
#[derive(Debug)]
pub struct Runner<B: ExecutionBackend = InstancePool> {
    backend: B,
    cache: ArtifactCache,
}

impl Runner<InstancePool> {
    /// An in-process runner: an engine (with its epoch ticker), an instance pool and the
    /// compile cache, as `config` says.
    pub fn new(config: RunnerConfig) -> Result<Runner<InstancePool>, SetupError> {
        let engine = Engine::new(EngineConfig {
            max_wasm_stack: config.pool.max_wasm_stack,
            max_memory_pages: config.pool.max_memory_pages,
            max_table_elements: config.pool.max_table_elements,
            epoch_tick: config.epoch_tick,
        })?;
        let pool = InstancePool::new(&engine, config.pool)?;
        Ok(Runner::with_backend(
            pool,
            ArtifactCache::new(config.cache_dir),
        ))
    }
}

impl<B: ExecutionBackend> Runner<B> {
    /// A runner on `backend`, caching compiled artifacts in `cache`.
    pub fn with_backend(backend: B, cache: ArtifactCache) -> Runner<B> {
        Runner { backend, cache }
    }

    /// The compile cache.
    pub fn cache(&self) -> &ArtifactCache {
        &self.cache
    }

    /// The engine modules are loaded with.
    pub fn engine(&self) -> &Engine {
        self.backend.engine()
    }

    /// The execution backend.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// Loads a module from WebAssembly bytes (through the compile cache) or from an artifact,
    /// links it against the hostcalls and prepares it on the backend.
    pub fn load(&self, bytes: &[u8]) -> Result<PreparedModule<B>, PrepareError> {
        let engine = self.backend.engine();
        // A cache hit maps the artifact file (code straight from the page cache).
        let (module, origin) = self.cache.load(
            bytes,
            |a| Module::from_artifact(engine, a),
            |f| Module::from_file(engine, f),
        )?;
        let linked = LinkedModule::new(&module, |imp| {
            fnvm_hostcalls::resolve(&imp.module, &imp.name)
        })?;
        let prepared = self.backend.prepare(&linked)?;
        Ok(PreparedModule {
            prepared,
            size: bytes.len() as u64,
            origin,
        })
    }

    /// Runs `function` once in a fresh instance.
    pub fn invoke(
        &self,
        function: &PreparedModule<B>,
        inv: Invocation,
    ) -> Result<Outcome, InvokeError> {
        let mut out = None;
        self.invoke_then(function, inv, |o| out = Some(o))?;
        out.ok_or(InvokeError::NoOutcome)
    }

    /// Runs `function` once in a fresh instance and hands the outcome to `deliver` before the
    /// instance ends: a server sends its response first and pays for the instance's reset
    /// (inline, when the backend resets inline) after.
    pub fn invoke_then(
        &self,
        function: &PreparedModule<B>,
        inv: Invocation,
        deliver: impl FnOnce(Outcome),
    ) -> Result<(), InvokeError> {
        let t0 = Instant::now();
        let (stdout, stderr) = if inv.debug {
            (Output::Buffer, Output::Buffer)
        } else {
            (inv.stdout, inv.stderr)
        };
        let mut builder = WasiCtx::builder()
            .arg_list(inv.args)
            .environ(inv.env)
            .stdin(inv.stdin)
            .stdout(stdout)
            .stderr(stderr)
            .output_limit(inv.output_limit)
            .trace(inv.debug);
        if let Some(net) = inv.net {
            builder = builder.net(net);
        }
        for (host, guest) in &inv.preopens {
            builder = builder.preopen_dir(host.clone(), guest.clone());
        }
        let wasi = builder.build()?;
        let info = function.module().info();
        if !info.exports.iter().any(|e| e.name == inv.entry) {
            return Err(InvokeError::NoEntry(inv.entry.into_owned()));
        }
        let limits = InstanceLimits {
            exact_page_accounting: inv.debug || inv.limits.exact_page_accounting,
            ..inv.limits.clone()
        };
        let mut inst = self
            .backend
            .instantiate(&function.prepared, &limits, wasi)?;
        // One clock read ends the start and begins the run.
        let t_run = Instant::now();
        let start_time = t_run.duration_since(t0);
        if let Some(d) = inst.data().dmesg_mut() {
            d.start(start_time);
        }
        let cpu_before = inv.measure_cpu.then(fnvm_runtime::thread_cpu_time);
        let waits_before = fnvm_hostcalls::blocking_waits();
        let result = inst.call(&inv.entry, &[]);
        let run_time = t_run.elapsed();
        let run_cpu_time =
            cpu_before.map(|before| fnvm_runtime::thread_cpu_time().saturating_sub(before));
        let run_waited = fnvm_hostcalls::blocking_waits() != waits_before;
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
        let memory_pages = inst.memory_pages();
        let wasi = inst.data();
        let (out, err) = (wasi.take_stdout(), wasi.take_stderr());
        let (stdout_overflowed, hostcalls) = (wasi.stdout_overflowed(), wasi.hostcalls());
        let report = match wasi.take_dmesg() {
            Some(mut dmesg) if inv.debug => {
                let reason = match &status {
                    Status::Exited(code) => {
                        dmesg.halt(*code);
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
        deliver(Outcome {
            status,
            stdout: out,
            stdout_overflowed,
            stderr: err,
            report,
            instantiate_time: start_time,
            run_time,
            run_cpu_time,
            run_waited,
            hostcalls,
            memory_pages,
        });
        // The instance ends here, after the outcome went out.
        drop(inst);
        Ok(())
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

/// A frame as dmesg shows it: its offset in the wasm binary (in the compiled code when unknown:
/// never a host address) and
/// `module!function` (or `<wasm function N>` without a name section).
fn symbol(f: &FrameInfo) -> (usize, String) {
    let at = f.wasm_offset.unwrap_or(f.code_offset) as usize;
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
