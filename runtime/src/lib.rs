//! fnvm's runtime: loads artifacts, instantiates them in guarded memory and runs them.
//!
//! It never generates code (it does not link Cranelift): everything executable, including the
//! trampolines between host and guest, comes from the artifact. The pieces:
//! - [`Engine`]: process-wide state: the signature registry and the epoch counter for deadlines.
//! - [`Module`]: an artifact mapped read+execute with its checked metadata.
//! - [`InstancePre`] and [`InstancePool`]: how functions run. A module linked once against its
//!   host functions, with its memory image and instance templates; a pool of pre-reserved
//!   instance slots handing out fresh, isolated [`PooledInstance`]s in well under a
//!   microsecond and resetting them off the request's path.
//! - [`Caller`], [`HostFn`], [`HostExit`]: the interface host functions (the hostcalls crate)
//!   implement: raw argument slots, the guest memory as a checked slice, the host state.
//! - [`Store`]: the general, linkable form: owns instances, memories, tables, globals and host
//!   functions that may import each other (the spec test scripts need it); handles such as
//!   [`Func`] index into it.
//! - Traps are caught by signal handlers (`traphandlers`) and returned as [`Trap`] values.

mod host;
mod image;
mod instance;
mod memory;
mod mmap;
mod module;
mod pagemap;
mod pool;
mod prepare;
mod store;
mod table;
mod traphandlers;
pub mod vm;

pub use host::{Caller, Halt, HostExit, HostFn, HostFuncDef};
pub use module::{MappedFile, Module};
pub use pool::{InstanceLimits, InstancePool, PoolConfig, PoolError, PoolStats, PooledInstance};
pub use prepare::InstancePre;
pub use store::{Extern, Func, Global, Instance, Memory, Store, Table};

use fnvm_abi::{FuncType, TrapCode};
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use thiserror::Error;

/// A WebAssembly value as the host sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Val {
    /// i32.
    I32(i32),
    /// i64.
    I64(i64),
    /// f32, as bits.
    F32(u32),
    /// f64, as bits.
    F64(u64),
    /// funcref.
    FuncRef(Option<Func>),
    /// externref carrying a host value.
    ExternRef(Option<u32>),
}

impl Val {
    /// The value's type.
    pub fn ty(&self) -> fnvm_abi::ValType {
        use fnvm_abi::ValType as T;
        match self {
            Val::I32(_) => T::I32,
            Val::I64(_) => T::I64,
            Val::F32(_) => T::F32,
            Val::F64(_) => T::F64,
            Val::FuncRef(_) => T::FuncRef,
            Val::ExternRef(_) => T::ExternRef,
        }
    }

    /// The value as an argument/result slot holds it, for every value that needs no store to
    /// encode: `None` for a non-null funcref (a handle into a store).
    pub(crate) fn to_raw(self) -> Option<u64> {
        Some(match self {
            Val::I32(x) => x as u32 as u64,
            Val::I64(x) => x as u64,
            Val::F32(x) => x as u64,
            Val::F64(x) => x,
            Val::FuncRef(None) | Val::ExternRef(None) => 0,
            Val::FuncRef(Some(_)) => return None,
            Val::ExternRef(Some(x)) => x as u64 + 1,
        })
    }

    /// Decodes a slot of type `ty`; `None` for a non-null funcref (it needs a store).
    pub(crate) fn from_raw(ty: fnvm_abi::ValType, raw: u64) -> Option<Val> {
        use fnvm_abi::ValType as T;
        Some(match ty {
            T::I32 => Val::I32(raw as u32 as i32),
            T::I64 => Val::I64(raw as i64),
            T::F32 => Val::F32(raw as u32),
            T::F64 => Val::F64(raw),
            T::FuncRef if raw == 0 => Val::FuncRef(None),
            T::FuncRef => return None,
            T::ExternRef if raw == 0 => Val::ExternRef(None),
            T::ExternRef => Val::ExternRef(Some((raw - 1) as u32)),
        })
    }
}

/// An error returned by a host function; the guest traps with it.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("{0}")]
pub struct HostError(pub String);

/// A guest frame in a backtrace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrameInfo {
    /// Function index in its module.
    pub func_index: u32,
    /// Function name from the name section, if any.
    pub func_name: Option<String>,
    /// Module name from the name section, if any.
    pub module_name: Option<String>,
    /// Offset of the instruction in the wasm module's bytes, if known.
    pub wasm_offset: Option<u32>,
    /// Native pc.
    pub pc: usize,
}

/// Why guest execution stopped abnormally.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trap {
    /// What happened.
    pub code: TrapCode,
    /// Message of a host function that trapped.
    pub host_message: Option<String>,
    /// Guest frames, innermost first.
    pub backtrace: Vec<FrameInfo>,
}

impl fmt::Display for Trap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host_message {
            Some(m) => write!(f, "{}: {m}", self.code.message())?,
            None => f.write_str(self.code.message())?,
        }
        for (i, fr) in self.backtrace.iter().enumerate() {
            write!(f, "\n  {i}: ")?;
            if let Some(m) = &fr.module_name {
                write!(f, "{m}!")?;
            }
            match &fr.func_name {
                Some(n) => write!(f, "{n}")?,
                None => write!(f, "<wasm function {}>", fr.func_index)?,
            }
            if let Some(o) = fr.wasm_offset {
                write!(f, " @ {o:#x}")?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for Trap {}

/// Why an artifact could not be loaded.
#[derive(Debug, Error)]
pub enum LoadError {
    /// The artifact is malformed, corrupted, or made for another compiler or CPU.
    #[error(transparent)]
    Artifact(#[from] fnvm_abi::ArtifactError),
    /// Mapping its code failed.
    #[error("mapping code: {0}")]
    Map(std::io::Error),
    /// A runtime limit is exceeded.
    #[error("runtime limit: {0}")]
    Limit(String),
}

/// Why instantiation failed.
#[derive(Debug, Error)]
pub enum InstantiationError {
    /// An import is missing or has the wrong type.
    #[error("link error: {0}")]
    Link(String),
    /// A segment initialiser or the start function trapped.
    #[error("trap during instantiation: {0}")]
    Trap(Trap),
    /// Memory or address space ran out, or a limit was hit.
    #[error("resource error: {0}")]
    Resource(String),
    /// Every slot of the instance pool stayed in use for the whole wait.
    #[error("instance pool exhausted: all {slots} slots in use after waiting {waited:?}")]
    PoolExhausted {
        /// Slots in the pool.
        slots: u32,
        /// How long the caller waited.
        waited: std::time::Duration,
    },
}

/// Errors of store operations other than calls.
#[derive(Debug, Error)]
pub enum RuntimeError {
    /// Memory or address space ran out.
    #[error("resource error: {0}")]
    Resource(String),
    /// A value or handle of the wrong kind.
    #[error("type error: {0}")]
    Type(String),
}

/// Engine settings.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Bytes of host stack guest code may use in one call from the host.
    pub max_wasm_stack: usize,
    /// Host cap on pages of any one linear memory (memory.grow fails beyond it).
    pub max_memory_pages: u32,
    /// Host cap on elements of any one table.
    pub max_table_elements: u32,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            max_wasm_stack: 1 << 20,
            max_memory_pages: 65536,
            max_table_elements: 10_000_000,
        }
    }
}

#[derive(Debug, Default)]
struct TypeRegistry {
    ids: HashMap<FuncType, u32>,
    types: Vec<FuncType>,
}

#[derive(Debug)]
struct EngineInner {
    config: EngineConfig,
    epoch: AtomicU64,
    types: Mutex<TypeRegistry>,
}

/// Process-wide runtime state. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Engine {
    inner: Arc<EngineInner>,
}

impl Engine {
    /// Creates an engine.
    pub fn new(config: EngineConfig) -> Result<Engine, RuntimeError> {
        if config.max_wasm_stack < 16 * 1024 {
            return Err(RuntimeError::Resource("max_wasm_stack below 16 KiB".into()));
        }
        Ok(Engine {
            inner: Arc::new(EngineInner {
                config,
                epoch: AtomicU64::new(0),
                types: Mutex::new(TypeRegistry::default()),
            }),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }

    /// Advances the epoch; invocations whose deadline is reached trap with `Interrupt` at their
    /// next function entry or loop header.
    pub fn increment_epoch(&self) {
        self.inner.epoch.fetch_add(1, Ordering::Relaxed);
    }

    /// The current epoch.
    pub fn epoch(&self) -> u64 {
        self.inner.epoch.load(Ordering::Relaxed)
    }

    pub(crate) fn epoch_ptr(&self) -> *const u64 {
        self.inner.epoch.as_ptr()
    }

    /// The engine-wide id of a signature (structurally equal signatures share one).
    pub(crate) fn register_type(&self, ty: &FuncType) -> u32 {
        let mut reg = self.inner.types.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(id) = reg.ids.get(ty) {
            return *id;
        }
        let id = reg.types.len() as u32;
        reg.types.push(ty.clone());
        reg.ids.insert(ty.clone(), id);
        id
    }

    pub(crate) fn type_of(&self, id: u32) -> Option<FuncType> {
        let reg = self.inner.types.lock().unwrap_or_else(|e| e.into_inner());
        reg.types.get(id as usize).cloned()
    }
}
