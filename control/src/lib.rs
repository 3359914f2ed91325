//! fnvm's control plane. Today: running functions ([`invoke`]: load through the compile cache,
//! link against the hostcalls, invoke in pooled instances, build the debug report). Later: the
//! API (Function, Release, Deployment), the metadata and artifact stores, the packager, the
//! scheduler, workers, triggers and the CLI client. This crate forbids unsafe code.

#![forbid(unsafe_code)]

pub mod cache;
pub mod invoke;
pub mod report;

pub use cache::{ArtifactCache, CacheError, CacheOutcome};
pub use invoke::{Function, Invocation, InvokeError, Outcome, Runner, RunnerConfig, Status};
pub use report::{DebugReport, Trigger};
