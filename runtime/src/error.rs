//! The runtime's errors, one enum per operation a caller can act on: loading an artifact
//! ([`LoadError`]), linking it ([`LinkError`], a deploy-time refusal), getting the resources
//! an instance needs ([`ResourceError`]), instantiating ([`InstantiationError`], which tells an
//! exhausted pool apart from everything else) and store operations ([`RuntimeError`]).

use crate::Trap;
use fnvm_abi::ExternKind;
use thiserror::Error;

/// Why an artifact could not be loaded.
#[derive(Debug, Error)]
pub enum LoadError {
    /// The artifact is malformed, corrupted, or made for another compiler or CPU.
    #[error(transparent)]
    Artifact(#[from] fnvm_abi::ArtifactError),
    /// Mapping its code failed.
    #[error("mapping code: {0}")]
    Map(#[source] std::io::Error),
    /// The module's vmctx would exceed 4 GiB.
    #[error("the module's vmctx exceeds the runtime's limit")]
    VmctxTooLarge,
}

/// Why a module could not be linked: a property of the module and what the host offers, known
/// at deploy time.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum LinkError {
    /// The host provides no function under this name.
    #[error("import {module}::{name}: unknown import")]
    UnknownImport {
        /// Import module.
        module: String,
        /// Import name.
        name: String,
    },
    /// The import exists with another type.
    #[error("import {module}::{name}: the host provides {found}, the module wants {expected}")]
    IncompatibleImport {
        /// Import module.
        module: String,
        /// Import name.
        name: String,
        /// What the module declares.
        expected: String,
        /// What was offered.
        found: String,
    },
    /// The module imports something other than a function where only host functions exist
    /// (prepared modules: functions import nothing else).
    #[error("import {module}::{name}: only functions can be imported here, not a {kind:?}")]
    UnsupportedImportKind {
        /// Import module.
        module: String,
        /// Import name.
        name: String,
        /// What kind of item it is.
        kind: ExternKind,
    },
    /// A store handle given as an import does not exist in this store.
    #[error("import {module}::{name}: the item belongs to another store")]
    ForeignItem {
        /// Import module.
        module: String,
        /// Import name.
        name: String,
    },
    /// Not as many imports as the module declares.
    #[error("the module needs {expected} imports, {given} were given")]
    ImportCount {
        /// Declared imports.
        expected: usize,
        /// Imports given.
        given: usize,
    },
    /// The module was loaded by another engine (its signature ids mean nothing here).
    #[error("the module belongs to another engine")]
    WrongEngine,
    /// A constant expression reads an imported global, which prepared modules cannot have.
    #[error("a constant expression reads a global, which prepared modules cannot import")]
    GlobalInConstExpr,
}

/// Why memory, address space or a limit stood in the way.
#[derive(Debug, Error)]
pub enum ResourceError {
    /// The module's vmctx is larger than the pool's slots allow.
    #[error("the module needs a {needed}-byte vmctx; the limit is {limit}")]
    VmctxTooLarge {
        /// Bytes needed.
        needed: usize,
        /// Bytes allowed.
        limit: usize,
    },
    /// The module's initial memory exceeds the cap.
    #[error("the module needs {needed} memory pages; the limit is {limit}")]
    MemoryTooLarge {
        /// Pages needed (initial size).
        needed: u64,
        /// Pages allowed.
        limit: u64,
    },
    /// A table's initial size exceeds the cap.
    #[error("a table needs {needed} elements; the limit is {limit}")]
    TableTooLarge {
        /// Elements needed.
        needed: u64,
        /// Elements allowed.
        limit: u64,
    },
    /// The allocator refused a table's elements.
    #[error("allocating a table of {0} elements failed")]
    TableAlloc(u64),
    /// Reserving or committing a linear memory failed.
    #[error("mapping linear memory: {0}")]
    Memory(#[source] std::io::Error),
    /// Building a module's memory image failed.
    #[error("building the memory image: {0}")]
    MemoryImage(#[source] std::io::Error),
    /// Setting up an instance slot (its vmctx, memory image or protections) failed.
    #[error("setting up an instance slot: {0}")]
    Slot(#[source] std::io::Error),
    /// Mapping a guest stack failed.
    #[error("mapping the guest stack: {0}")]
    Stack(#[source] std::io::Error),
}

/// Why instantiation failed.
#[derive(Debug, Error)]
pub enum InstantiationError {
    /// An import is missing or has the wrong type.
    #[error("link error: {0}")]
    Link(#[from] LinkError),
    /// A segment initialiser or the start function trapped.
    #[error("trap during instantiation: {0}")]
    Trap(Trap),
    /// Memory or address space ran out, or a limit was hit.
    #[error("resource error: {0}")]
    Resource(#[from] ResourceError),
    /// Every slot of the instance pool stayed in use for the whole wait.
    #[error("instance pool exhausted: all {slots} slots in use after waiting {waited:?}")]
    PoolExhausted {
        /// Slots in the pool.
        slots: u32,
        /// How long the caller waited.
        waited: std::time::Duration,
    },
    /// The instance was given a timeout, but its engine has no epoch ticker to enforce it in
    /// compiled code.
    #[error("a timeout needs an engine with an epoch ticker (EngineConfig::epoch_tick)")]
    NoEpochTicker,
    /// The prepared module belongs to another backend instance than the one asked.
    #[error("the prepared module belongs to another engine")]
    WrongEngine,
}

/// Errors of store operations other than calls.
#[derive(Debug, Error)]
pub enum RuntimeError {
    /// Memory or address space ran out.
    #[error(transparent)]
    Resource(#[from] ResourceError),
    /// A value of the wrong type.
    #[error("type mismatch: expected {expected}, got {found}")]
    TypeMismatch {
        /// The type wanted.
        expected: fnvm_abi::ValType,
        /// The value's type.
        found: fnvm_abi::ValType,
    },
    /// A handle from another store.
    #[error("the handle belongs to another store")]
    ForeignHandle,
}
