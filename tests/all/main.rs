//! fnvm's integration tests, in one test binary with a module per area: the `fnvm` command line
//! (`cli`), scripts running concurrently (`concurrency`), the script runner's own behaviour
//! (`runner`) and the WebAssembly specification scripts (`spec`); the engine itself: traps
//! and backtraces (`traps`), deadlines (`deadline`) and bad input of every kind (`bad_input`);
//! the instance pool (`pool`); invocations through the data plane (`invoke`: isolation, the
//! debug report, deadlines in blocking hostcalls, no host address in traces); and WASI
//! programs in Rust, C, AssemblyScript and Go compiled from source and run with `fnvm run`
//! (`wasi`), the Rust ones again in a KVM micro-VM with `--isolation vm` (`isolation`); and
//! the platform, `fnvm serve` with the `fnvm functions` client, end to end
//! (`serve`).
//! Tests run in parallel on purpose: guest traps on one thread must not disturb another.

mod bad_input;
mod cli;
mod concurrency;
mod deadline;
mod engine;
mod invoke;
mod isolation;
mod pool;
mod runner;
mod serve;
mod spec;
mod traps;
mod wasi;
