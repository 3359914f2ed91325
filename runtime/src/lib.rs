//! fnvm's runtime: loads artifacts, links them, and runs them in isolated instances.
//!
//! It never generates code (it does not link Cranelift): everything executable, including the
//! trampolines between host and guest, comes from the artifact. The pieces:
//! - [`Engine`]: process-wide state: the signature registry, the epoch counter for deadlines
//!   and the thread that advances it.
//! - [`Module`]: an artifact mapped read+execute with its checked metadata.
//! - [`LinkedModule`]: backend-neutral linking: imports resolved against host functions and
//!   type-checked, segments evaluated into an instance template.
//! - [`ExecutionBackend`] and [`BackendInstance`]: the interface every way of running guests
//!   implements: prepare a linked module once, instantiate it per invocation with its host
//!   state, call exports, account memory, reset on drop. [`InstancePool`] is the in-process
//!   backend (pre-reserved slots with guard pages, copy-on-write memory images, traps from
//!   signal handlers).
//! - The host-function interface ([`Caller`], [`HostFn`], [`HostExit`], [`Deadline`]) lives in
//!   `fnvm-host-interface`, which the hostcalls depend on instead of this crate; it is
//!   re-exported here.
//! - [`Store`]: the general, linkable form: owns instances, memories, tables, globals and host
//!   functions that may import each other (the spec test scripts need it).
//! - One path into the guest (`call`) and one host-call dispatch (`hostcall`), shared by the
//!   pool and the store; traps are caught by signal handlers (`traphandlers`) and returned as
//!   [`Trap`] values.
//! - `kvm` (Linux x86_64): the KVM micro-VM backend: a VM with no guest OS whose code runs at
//!   CPL3 and exits by MMIO, and `KvmBackend`, the second [`ExecutionBackend`] (what `fnvm run
//!   --isolation vm` and Functions with `isolation: vm` run on).

mod backend;
mod builtins;
mod call;
mod engine;
mod error;
mod faults;
mod hostcall;
mod instance;
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
pub mod kvm;
mod link;
mod memory;
mod mmap;
mod module;
mod pagemap;
mod pool;
mod store;
mod table;
mod traphandlers;
mod usage;
pub mod vm;

pub use backend::{BackendInstance, BackendStats, ExecutionBackend, InstanceLimits};
pub use engine::{Engine, EngineConfig, EngineError};
pub use error::{InstantiationError, LinkError, LoadError, ResourceError, RuntimeError};
/// The ABI types this crate's interface speaks in (signatures, imports).
pub use fnvm_abi::{FuncType, Import, ValType};
pub use fnvm_host_interface::{Caller, Deadline, DeadlineSource, HostExit, HostFn, HostFuncDef};
pub use link::LinkedModule;
pub use module::{MappedFile, Module};
pub use pool::{InstancePool, PoolConfig, PoolError, PooledInstance, PooledModule};
pub use store::{Extern, Func, Global, Instance, Memory, Store, Table};
pub use usage::thread_cpu_time;

use fnvm_abi::TrapCode;
use std::fmt;

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
    /// Offset of the instruction in the module's compiled code (in the artifact, not in host
    /// memory).
    pub code_offset: u32,
    /// Native pc: a host address, for host-side diagnostics only. Never show it to a
    /// function's owner (use the offsets).
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

impl Trap {
    /// Whether the invocation ran out of time (compiled code reached its deadline, or a host
    /// function waited past it): what a server answers with a gateway timeout.
    pub fn is_deadline(&self) -> bool {
        self.code == TrapCode::Interrupt
    }
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

/// Why an invocation stopped before its export returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Halt {
    /// A host function ended it with an exit status ([`HostExit::Exit`]).
    Exit {
        /// The status.
        code: i32,
        /// The guest frames that led to the exit, innermost first.
        backtrace: Vec<FrameInfo>,
    },
    /// Guest code or a host function trapped.
    Trap(Trap),
}

impl fmt::Display for Halt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Halt::Exit { code, .. } => write!(f, "exit with status {code}"),
            Halt::Trap(t) => t.fmt(f),
        }
    }
}

impl std::error::Error for Halt {}
