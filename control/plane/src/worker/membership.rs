//! Fleet membership: a worker registers itself in the metadata store and renews its lease
//! every third of it, each time with what it has and how loaded it is ([`WorkerReport`]), so
//! that the rest of the platform knows which workers are alive and where load can go. A
//! worker whose lease lapses (killed, partitioned, its machine gone) is dead to every reader
//! within one lease; one that stops cleanly removes itself at once. While the database is
//! unreachable the worker keeps serving and keeps trying; the lease may lapse meanwhile, and
//! the next renewal brings it back.

use super::Worker;
use crate::metrics::Metrics;
use crate::model::{Timestamp, WorkerReport};
use crate::store::MetadataStore;
use std::sync::Arc;
use std::time::Duration;

/// How long a worker's registration stays live without a renewal, by default. Renewals come
/// every third of it, so two can be lost (a slow database, a pause) before the worker is dead.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(6);

/// Rows of workers dead for longer than this are collected by the scheduler (a worker that
/// comes back after that registers again).
pub const FORGET_DEAD_AFTER: Duration = Duration::from_secs(24 * 3600);

/// What does not change while the worker runs.
#[derive(Clone, Debug)]
pub struct Identity {
    /// The node id.
    pub id: String,
    /// Where it serves functions.
    pub url: String,
    /// When this process started.
    pub started_at: Timestamp,
    /// CPUs it may use.
    pub cores: u64,
}

/// The report of now.
pub fn report(identity: &Identity, worker: &Worker, metrics: &Metrics) -> WorkerReport {
    let (slots, slots_in_use) = metrics.pool_stats().unwrap_or((0, 0));
    WorkerReport {
        id: identity.id.clone(),
        url: identity.url.clone(),
        started_at: identity.started_at,
        version: env!("CARGO_PKG_VERSION").to_string(),
        cores: identity.cores,
        slots: u64::from(slots),
        memory_bytes: memory_total().unwrap_or(0),
        in_flight: metrics.in_flight(),
        slots_in_use: slots_in_use as u64,
        resident_bytes: resident().unwrap_or(0),
        deployments: worker.loaded_ids().len() as u64,
        functions: worker.function_loads(),
    }
}

/// Registers and renews until the task is dropped.
pub async fn run(
    store: MetadataStore,
    identity: Identity,
    worker: Arc<Worker>,
    metrics: Arc<Metrics>,
    lease: Duration,
) {
    let every = lease / 3;
    let mut failing = false;
    loop {
        let r = report(&identity, &worker, &metrics);
        match store.renew_worker(&r, lease).await {
            Ok(()) => {
                if failing {
                    tracing::info!(node = %identity.id, "fleet: lease renewed again");
                    failing = false;
                }
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(node = %identity.id, error = %e, "fleet: cannot renew the lease; serving on, retrying");
                    failing = true;
                }
            }
        }
        tokio::time::sleep(every).await;
    }
}

/// The machine's memory, from `/proc/meminfo`.
fn memory_total() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = s.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// This process's resident memory, from `/proc/self/status`.
fn resident() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_figures_are_read() {
        assert!(memory_total().unwrap() > 1 << 20);
        assert!(resident().unwrap() > 0);
    }
}
