//! Pre-initialisation: a module's initialisation function is run once in fnvm's own engine, and
//! the state it leaves (linear memory, mutable globals) is written back into the module as data
//! segments and initial values, so that every instance starts initialised (what Wizer does for
//! wasmtime). JavaScript functions are built on it: the QuickJS engine, with the user's script
//! evaluated at packaging time ([`javascript`]).
//!
//! [`preinitialize`] does it in four steps:
//! 1. [`module`]: validate, refuse what cannot be snapshotted (an imported or 64-bit memory,
//!    several memories, mutable non-numeric globals, instructions that change tables or drop
//!    data segments), and instrument: a getter function exported per mutable defined global
//!    (the pool's instances call functions; they do not expose globals).
//! 2. Run it: compiled and loaded through the data plane's [`Runner`] (compile cache included),
//!    instantiated with the WASI hostcalls (stdin given, no arguments, an empty environment, no
//!    preopens, output captured), the start function run, then `init_export` called, all under
//!    the [`Limits`]' memory cap and timeout: the code may be a user's script.
//! 3. [`snapshot`]: read the memory and the getters.
//! 4. Rewrite the *original* module (the instrumentation is not kept): data segments replaced
//!    by the snapshot's non-zero memory, memory minimum raised to the snapshot's size, mutable
//!    globals initialised to their values, `init_export` and the start section removed (it ran).
//!    Passive data segments keep their indices (active ones become empty passive segments, which
//!    behave as the dropped active ones did). Tables are not snapshotted: modules whose code
//!    could change a table (`table.set`, `table.grow`, ...) are refused (Wizer's rule).

pub mod javascript;
mod module;
mod snapshot;

use fnvm_dataplane::{ArtifactCache, PrepareError, Runner, SetupError};
use fnvm_hostcalls::{Output, Stdin, WasiCtx};
use fnvm_runtime::{ExecutionBackend, Halt, InstanceLimits, InstancePool, PoolConfig, Val};
use std::path::PathBuf;
use std::time::Duration;
use thiserror::Error;

pub use module::GETTER_PREFIX;

/// Bounds on a pre-initialisation run (the code it runs may be a user's).
#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest module accepted, in bytes.
    pub max_module_bytes: usize,
    /// Linear memory cap during initialisation (and so of the snapshot), in bytes.
    pub max_memory_bytes: u64,
    /// How long instantiation and initialisation may run.
    pub timeout: Duration,
    /// Cap on each of stdout and stderr captured during initialisation, in bytes.
    pub max_output_bytes: usize,
    /// Compile cache of the run; `None`: the data plane's default directory.
    pub cache_dir: Option<PathBuf>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_module_bytes: 64 << 20,
            max_memory_bytes: 256 << 20,
            timeout: Duration::from_secs(10),
            max_output_bytes: 1 << 20,
            cache_dir: None,
        }
    }
}

/// A pre-initialised module and what its initialisation printed.
#[derive(Clone, Debug)]
pub struct Preinitialized {
    /// The module, starting from the snapshot.
    pub wasm: Vec<u8>,
    /// What initialisation wrote on stdout.
    pub stdout: Vec<u8>,
    /// What initialisation wrote on stderr.
    pub stderr: Vec<u8>,
}

/// Why a module could not be pre-initialised.
#[derive(Debug, Error)]
pub enum PreinitError {
    /// Not a valid WebAssembly module.
    #[error("invalid module: {0}")]
    Invalid(String),
    /// Valid, but holds something the snapshot cannot capture.
    #[error("cannot pre-initialise this module: {0}")]
    Unsupported(String),
    /// Larger than [`Limits::max_module_bytes`] (or another input over its limit).
    #[error("{what} is {size} bytes, over the limit of {limit}")]
    TooLarge {
        /// What was too large.
        what: &'static str,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The module exports no function of that name.
    #[error("the module exports no function `{0}`")]
    NoInitExport(String),
    /// The engine could not be set up.
    #[error(transparent)]
    Setup(#[from] SetupError),
    /// The module did not compile, link or fit (its memory over the limit, an unknown import).
    #[error(transparent)]
    Prepare(#[from] PrepareError),
    /// The instance could not be created (or its start function failed).
    #[error("instantiating: {0}")]
    Instantiate(#[from] fnvm_runtime::InstantiationError),
    /// The WASI context could not be built.
    #[error(transparent)]
    Wasi(#[from] fnvm_hostcalls::BuildError),
    /// Initialisation ended with a trap or an exit instead of returning.
    #[error("initialisation failed ({halt}){}", tail(.stderr))]
    Failed {
        /// How it ended.
        halt: String,
        /// What it wrote on stdout.
        stdout: String,
        /// What it wrote on stderr.
        stderr: String,
    },
    /// Initialisation ran past [`Limits::timeout`].
    #[error("initialisation ran past its {0:?} timeout")]
    Timeout(Duration),
    /// The snapshot could not be read back (a bug, or a getter returned the wrong type).
    #[error("reading the snapshot: {0}")]
    Snapshot(String),
    /// The rewritten module does not validate (a bug of the rewrite).
    #[error("the pre-initialised module is invalid: {0}")]
    Output(String),
}

fn tail(stderr: &str) -> String {
    let s = stderr.trim_end();
    if s.is_empty() {
        String::new()
    } else {
        format!(":\n{s}")
    }
}

/// Runs `init_export` of `wasm` once with `stdin` and returns the module rewritten to start
/// from the state it left. See the crate documentation.
pub fn preinitialize(
    wasm: &[u8],
    init_export: &str,
    stdin: Vec<u8>,
    limits: &Limits,
) -> Result<Preinitialized, PreinitError> {
    if wasm.len() > limits.max_module_bytes {
        return Err(PreinitError::TooLarge {
            what: "the module",
            size: wasm.len() as u64,
            limit: limits.max_module_bytes as u64,
        });
    }
    let info = module::ModuleInfo::parse(wasm, init_export)?;
    let max_pages = (limits.max_memory_bytes / 65536).clamp(1, 65536);
    if let Some(m) = info.memory {
        if m.initial > max_pages {
            return Err(PreinitError::TooLarge {
                what: "the module's initial memory",
                size: m.initial.saturating_mul(65536),
                limit: limits.max_memory_bytes,
            });
        }
    }
    let instrumented = info.instrument();
    let runner = Runner::new(fnvm_dataplane::RunnerConfig {
        cache_dir: limits
            .cache_dir
            .clone()
            .unwrap_or_else(ArtifactCache::default_dir),
        pool: PoolConfig {
            slots: 1,
            max_memory_pages: max_pages as u32,
            background_reset: false,
            ..PoolConfig::default()
        },
        epoch_tick: Some(Duration::from_millis(10)),
    })?;
    let prepared = runner.load(&instrumented)?;
    let wasi = WasiCtx::builder()
        .arg("preinit")
        .stdin(Stdin::Bytes(stdin))
        .stdout(Output::Buffer)
        .stderr(Output::Buffer)
        .output_limit(limits.max_output_bytes)
        .build()?;
    let instance_limits = InstanceLimits {
        max_memory_bytes: Some(limits.max_memory_bytes),
        timeout: Some(limits.timeout),
        ..InstanceLimits::default()
    };
    let mut inst = runner
        .backend()
        .instantiate(prepared.prepared(), &instance_limits, wasi)
        .map_err(|e| match e {
            fnvm_runtime::InstantiationError::Trap(t) if t.is_deadline() => {
                PreinitError::Timeout(limits.timeout)
            }
            e => PreinitError::Instantiate(e),
        })?;
    let result = inst.call(init_export, &[]);
    let stdout = inst.data().take_stdout();
    let stderr = inst.data().take_stderr();
    let failed = |halt: String| PreinitError::Failed {
        halt,
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    };
    match result {
        Ok(_) => {}
        Err(Halt::Trap(t)) if t.is_deadline() => return Err(PreinitError::Timeout(limits.timeout)),
        Err(Halt::Trap(t)) => return Err(failed(format!("trap: {t}"))),
        Err(Halt::Exit { code, .. }) => return Err(failed(format!("exit status {code}"))),
    }
    let snap = read_snapshot(&mut inst, &info)?;
    drop(inst);
    let wasm = info.rewrite(&snap, init_export);
    wasmparser::Validator::new()
        .validate_all(&wasm)
        .map_err(|e| PreinitError::Output(e.to_string()))?;
    Ok(Preinitialized {
        wasm,
        stdout,
        stderr,
    })
}

/// Reads the memory and the mutable globals (through the instrumentation's getters).
fn read_snapshot(
    inst: &mut <InstancePool as ExecutionBackend>::Instance<WasiCtx>,
    info: &module::ModuleInfo<'_>,
) -> Result<snapshot::Snapshot, PreinitError> {
    let mut snap = snapshot::Snapshot::default();
    for g in info.mutable_globals() {
        let name = format!("{GETTER_PREFIX}{}", g.index);
        let v = inst
            .call(&name, &[])
            .map_err(|e| PreinitError::Snapshot(format!("global {}: {e}", g.index)))?;
        snap.globals.push(match v.as_slice() {
            [Val::I32(v)] => snapshot::Value::I32(*v),
            [Val::I64(v)] => snapshot::Value::I64(*v),
            [Val::F32(v)] => snapshot::Value::F32(*v),
            [Val::F64(v)] => snapshot::Value::F64(*v),
            other => {
                return Err(PreinitError::Snapshot(format!(
                    "global {}: unexpected {other:?}",
                    g.index
                )))
            }
        });
    }
    if info.memory.is_some() {
        let pages = inst.memory_pages();
        let memory = inst
            .memory()
            .ok_or_else(|| PreinitError::Snapshot("the instance has no memory".into()))?;
        let len = usize::try_from(pages * 65536)
            .ok()
            .filter(|l| *l <= memory.len())
            .ok_or_else(|| PreinitError::Snapshot("memory size mismatch".into()))?;
        snap.pages = pages;
        snap.segments = snapshot::segments(&memory[..len]);
    }
    Ok(snap)
}
