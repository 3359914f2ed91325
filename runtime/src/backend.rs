//! The execution-backend interface: what every way of running guests implements, so that
//! everything above the runtime (the data plane, the worker) is written once.
//!
//! A backend takes a [`LinkedModule`] (backend-neutral: imports resolved and type-checked,
//! segments evaluated), prepares it once in its own form ([`ExecutionBackend::prepare`]), and
//! then hands out fresh, isolated instances of it ([`ExecutionBackend::instantiate`]), one per
//! invocation. An instance ([`BackendInstance`]) runs exports, owns the invocation's host state
//! `T` (what its host functions receive) and reports the memory it holds; dropping it (or
//! [`BackendInstance::into_data`]) ends it, and the backend resets what it used, inline or in
//! the background, before handing it out again.
//!
//! The in-process [`InstancePool`](crate::InstancePool) is the first implementation: guard
//! pages, signal handlers, slots of one contiguous reservation. A micro-VM backend runs the
//! same artifact with the same host functions behind the same interface.

use crate::{Engine, Halt, InstantiationError, LinkedModule, Val};
use std::time::Duration;

/// Per-instance limits; a backend caps each by its own.
#[derive(Clone, Debug, Default)]
pub struct InstanceLimits {
    /// Linear memory cap in bytes (the Function's `maxMemory`); `None`: the backend's cap.
    pub max_memory_bytes: Option<u64>,
    /// Stack for wasm frames in bytes; `None`: the backend's.
    pub max_wasm_stack: Option<usize>,
    /// How long the instance may run, from instantiation: compiled code then traps with
    /// `Interrupt`, and a host function waiting past it ends the invocation with the same
    /// trap. `None`: no deadline. Enforced in epoch ticks of the engine, so the engine needs an
    /// epoch ticker ([`EngineConfig::epoch_tick`](crate::EngineConfig::epoch_tick)).
    pub timeout: Option<Duration>,
    /// Start from a memory with nothing resident, so that
    /// [`BackendInstance::resident_memory_pages`] counts exactly the pages this instance
    /// touched (debug reports). Costs the page faults that pages kept from the previous
    /// instance would have saved.
    pub exact_page_accounting: bool,
}

/// Counts for monitoring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackendStats {
    /// Instances that can be alive at once.
    pub capacity: u32,
    /// Instances alive or being reset.
    pub in_use: usize,
    /// Times an instance had to be set up for another module than the one its resources last
    /// ran (what a backend keeps per module is reused otherwise).
    pub module_switches: u64,
}

/// A way of running guests. Implementations are shared between the threads that invoke.
pub trait ExecutionBackend: Send + Sync + std::fmt::Debug + 'static {
    /// A linked module prepared for this backend. Cheap to clone.
    type Prepared<T: Send + 'static>: Clone + Send + Sync + std::fmt::Debug;
    /// A live instance.
    type Instance<T: Send + 'static>: BackendInstance<T>;

    /// The engine modules must be loaded with.
    fn engine(&self) -> &Engine;

    /// Prepares `linked` once: whatever instances of it share (an image of its initial
    /// memory, its host-call contexts). Refuses modules that can never fit this backend.
    fn prepare<T: Send + 'static>(
        &self,
        linked: &LinkedModule<T>,
    ) -> Result<Self::Prepared<T>, InstantiationError>;

    /// The linked module a prepared one came from.
    fn linked<T: Send + 'static>(prepared: &Self::Prepared<T>) -> &LinkedModule<T>;

    /// Host memory a prepared module holds, shared by all its instances (code, memory image).
    fn prepared_resident_bytes<T: Send + 'static>(prepared: &Self::Prepared<T>) -> usize;

    /// A fresh instance of `prepared` with host state `data`, its start function run. Fails
    /// with [`InstantiationError::PoolExhausted`] when the backend stays full for its whole
    /// wait.
    fn instantiate<T: Send + 'static>(
        &self,
        prepared: &Self::Prepared<T>,
        limits: &InstanceLimits,
        data: T,
    ) -> Result<Self::Instance<T>, InstantiationError>;

    /// Current counts.
    fn stats(&self) -> BackendStats;
}

/// A live instance of a backend. Dropping it ends the instance; its resources are reset
/// before another instance gets them.
pub trait BackendInstance<T>: Send {
    /// Calls the exported function `name`.
    fn call(&mut self, name: &str, args: &[Val]) -> Result<Vec<Val>, Halt>;

    /// The host state.
    fn data(&mut self) -> &mut T;

    /// Ends the instance and returns its host state (e.g. to read captured output).
    fn into_data(self) -> T
    where
        Self: Sized;

    /// Current size of the linear memory in wasm pages (64 KiB).
    fn memory_pages(&self) -> u64;

    /// 4 KiB pages of linear memory present in host memory: the pages the guest touched. The
    /// debug report's `currentPages`.
    fn resident_memory_pages(&self) -> std::io::Result<u64>;

    /// Host memory this instance occupies beyond its prepared module's.
    fn resident_bytes(&self) -> std::io::Result<u64>;
}
