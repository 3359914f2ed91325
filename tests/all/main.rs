//! fnvm's integration tests, in one test binary with a module per area: the `fnvm` command line
//! (`cli`), scripts running concurrently (`concurrency`), the script runner's own behaviour
//! (`runner`) and the WebAssembly specification scripts (`spec`).

mod cli;
mod concurrency;
mod runner;
mod spec;

use std::sync::{Mutex, MutexGuard};

/// Serialises the tests that run scripts in this process, so that a failure is about the
/// script, not about another test's script running at the same time. Running scripts
/// concurrently is tested on its own, in a child process (see `concurrency`).
fn one_script_at_a_time() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}
