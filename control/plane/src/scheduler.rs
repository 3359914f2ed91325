//! The fleet's scheduler: the one process (of the API processes) that makes fleet-wide
//! decisions. Every API process contends for the `scheduler` singleton role in the metadata
//! store, renewing every third of its lease; the holder acts, the others wait and take over
//! within one lease when it dies, at once when it stops cleanly. Today it collects the rows of
//! long-dead workers; placement and autoscaling come next (issue 15).

use crate::store::MetadataStore;
use crate::worker::membership::FORGET_DEAD_AFTER;
use std::time::{Duration, Instant};

/// The role's name in the store.
pub const ROLE: &str = "scheduler";

/// How long the role stays with a holder that stopped renewing.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(6);

/// Contends for the role and acts while holding it, until the task is dropped.
pub async fn run(store: MetadataStore, holder: String, lease: Duration) {
    let every = lease / 3;
    let mut term = None;
    let mut collected_at = None::<Instant>;
    loop {
        let now_term = match store.acquire_singleton(ROLE, &holder, lease).await {
            Ok(t) => t,
            Err(e) => {
                // Cannot tell: act as not holding it (another may take over meanwhile).
                tracing::warn!(error = %e, "scheduler: cannot renew the role");
                None
            }
        };
        match (term, now_term) {
            (None, Some(t)) => {
                tracing::info!(%holder, term = t, "scheduler: this process schedules")
            }
            (Some(t), None) => tracing::warn!(%holder, term = t, "scheduler: lost the role"),
            _ => {}
        }
        term = now_term;
        if term.is_some() && collected_at.is_none_or(|t| t.elapsed() > Duration::from_secs(3600)) {
            match store.collect_dead_workers(FORGET_DEAD_AFTER).await {
                Ok(n) => {
                    collected_at = Some(Instant::now());
                    if n > 0 {
                        tracing::info!(workers = n, "scheduler: forgot long-dead workers");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "scheduler: collecting dead workers"),
            }
        }
        tokio::time::sleep(every).await;
    }
}
