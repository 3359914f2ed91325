//! fnvm's data plane: what runs functions, and nothing of the control plane. It loads modules
//! ([`cache`]: compile once, cached by content hash), links them against the hostcalls and
//! prepares them on an execution backend (the runtime's in-process pool by default, or KVM
//! micro-VMs: [`isolation`]), invokes
//! them ([`invoke`]: a fresh instance and WASI context per invocation) and builds the debug
//! report ([`report`]). `fnvm run` and the worker both go through it. It has no database and
//! no network: the control plane (Functions, Releases, Deployments, the stores) sits above it.
//! This crate forbids unsafe code.

#![forbid(unsafe_code)]

pub mod cache;
pub mod invoke;
pub mod isolation;
pub mod report;

pub use cache::{ArtifactCache, CacheError, CacheOutcome};
pub use invoke::{
    Invocation, InvokeError, Outcome, PrepareError, PreparedModule, Runner, RunnerConfig,
    SetupError, Status,
};
pub use isolation::{AnyModule, Isolation, KvmRunnerConfig, UnknownIsolation};
pub use report::{DebugReport, Trigger};
