//! The interface between guest code and the host functions it imports (hostcalls).
//!
//! A host function is a plain `fn` pointer ([`HostFn`]) receiving a [`Caller`] and the raw
//! argument slots; it writes its results back into the same slots. No allocation, no boxing and
//! no dynamic value conversion sit on this path: it is what every WASI call of every invocation
//! goes through. The [`Caller`] only hands out safe references (the accessible bytes of the
//! caller's linear memory and the host state given at instantiation), so crates implementing
//! hostcalls need no `unsafe` and cannot reach outside the guest's memory.

use crate::{FrameInfo, Trap};
use fnvm_abi::FuncType;
use std::any::Any;
use std::fmt;

/// What a host function sees of the instance calling it.
pub struct Caller<'a> {
    memory: &'a mut [u8],
    data: &'a mut (dyn Any + Send),
    vmctx: usize,
}

impl fmt::Debug for Caller<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Caller")
            .field("memory_len", &self.memory.len())
            .field("vmctx", &format_args!("{:#x}", self.vmctx))
            .finish()
    }
}

impl<'a> Caller<'a> {
    /// A caller over `memory` (the guest's accessible linear memory, empty when it has none) and
    /// the host state `data`. The runtime builds one per host call; tests of host functions
    /// build their own over a plain buffer.
    pub fn new(memory: &'a mut [u8], data: &'a mut (dyn Any + Send), vmctx: usize) -> Self {
        Caller {
            memory,
            data,
            vmctx,
        }
    }

    /// The accessible bytes of the caller's linear memory (empty if it has none).
    pub fn memory(&mut self) -> &mut [u8] {
        self.memory
    }

    /// The host state the instance was created with.
    pub fn data(&mut self) -> &mut (dyn Any + Send) {
        self.data
    }

    /// Memory and host state at once (a host function usually needs both).
    pub fn parts(&mut self) -> (&mut [u8], &mut (dyn Any + Send)) {
        (self.memory, self.data)
    }

    /// The address of the caller's vmctx, which identifies the instance in traces.
    pub fn vmctx(&self) -> usize {
        self.vmctx
    }
}

/// How a host function ends the invocation instead of returning to the guest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostExit {
    /// The guest asked to exit with this status (WASI `proc_exit`).
    Exit(i32),
    /// The guest trapped in the host (bad state, unsupported request...), with a message.
    Trap(String),
}

/// A host function. `values` holds the arguments on entry, one per slot (i32 zero-extended,
/// i64, f32/f64 as bits), and receives the results; it has `max(params, results, 1)` slots.
pub type HostFn = fn(&mut Caller<'_>, &mut [u64]) -> Result<(), HostExit>;

/// A host function with its wasm signature, as resolved for an import.
#[derive(Clone, Debug)]
pub struct HostFuncDef {
    /// The signature the import must have.
    pub ty: FuncType,
    /// The implementation.
    pub func: HostFn,
}

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
