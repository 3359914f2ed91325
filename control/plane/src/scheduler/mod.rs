//! The fleet's scheduler: the one process (of the API processes) that makes fleet-wide
//! decisions. Every API process contends for the `scheduler` singleton role in the metadata
//! store, renewing every third of its lease; the holder acts, the others wait and take over
//! within one lease when it dies, at once when it stops cleanly. The holder decides how many
//! replicas each function needs from the demand workers report ([`autoscale`]) and places them
//! on workers ([`placement`]), on every change the store signals (or every `poll` where it
//! signals none), writing its plan fenced by its term; and it collects the rows of long-dead
//! workers.

pub mod autoscale;
pub mod placement;

use crate::model::{Deployment, DeploymentStatus, FleetWorker, Placement, PlacementReason};
use crate::store::{MetadataStore, StoreError};
use crate::worker::membership::FORGET_DEAD_AFTER;
use autoscale::{Autoscaler, FunctionView, ScaleConfig};
use placement::FunctionToPlace;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The role's name in the store.
pub const ROLE: &str = "scheduler";

/// How long the role stays with a holder that stopped renewing.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(6);

/// How often the holder places where the store sends no change notifications (SQLite), and
/// at the latest after a missed one.
pub const DEFAULT_POLL: Duration = Duration::from_millis(200);

/// Which workers the scheduler treats as dead: a worker whose lease lapsed only after it has
/// been seen lapsed for half a lease. A lapsed lease may be the scheduler's own doing: after
/// the database was unreachable for everyone (restarted, cut off), every lease has lapsed,
/// and the workers renew within a third of theirs once it is back; moving every function
/// meanwhile would disrupt what is served for nothing. A worker that really died loses its
/// placements half a lease later than its lease says.
#[derive(Debug, Default)]
struct DeathWatch {
    lapsed_since: HashMap<String, Instant>,
}

impl DeathWatch {
    /// Whether a lapsed worker is being watched.
    fn watching(&self) -> bool {
        !self.lapsed_since.is_empty()
    }

    /// `workers`, with those lapsed for less than half their lease still live.
    fn judge(&mut self, mut workers: Vec<FleetWorker>) -> Vec<FleetWorker> {
        let now = Instant::now();
        let mut seen = HashMap::new();
        for w in &mut workers {
            if w.live {
                continue;
            }
            let since = self.lapsed_since.get(&w.report.id).copied().unwrap_or(now);
            seen.insert(w.report.id.clone(), since);
            let lease_ms = w.lease_until.0.saturating_sub(w.renewed_at.0).max(0) as u64;
            if now.duration_since(since) < Duration::from_millis(lease_ms / 2) {
                w.live = true;
            }
        }
        self.lapsed_since = seen;
        workers
    }
}

/// Contends for the role and acts while holding it, until the task is dropped.
pub async fn run(
    store: MetadataStore,
    holder: String,
    lease: Duration,
    poll: Duration,
    scale: ScaleConfig,
    metrics: std::sync::Arc<crate::metrics::Metrics>,
) {
    let every = lease / 3;
    let mut autoscaler = Autoscaler::new(scale);
    let mut deaths = DeathWatch::default();
    let mut term = None;
    let mut renewed_at = None::<Instant>;
    let mut collected_at = None::<Instant>;
    let mut changes = store.changes().await;
    loop {
        if renewed_at.is_none_or(|t| t.elapsed() >= every) {
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
            renewed_at = Some(Instant::now());
        }
        if let Some(t) = term {
            if let Err(e) = place(&store, &holder, t, &mut autoscaler, &mut deaths, &metrics).await
            {
                tracing::warn!(error = %e, "scheduler: placing");
            }
            if collected_at.is_none_or(|t| t.elapsed() > Duration::from_secs(3600)) {
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
        }
        // Until the next change, poll or renewal, whichever comes first.
        let until_renewal =
            renewed_at.map_or(Duration::ZERO, |t| every.saturating_sub(t.elapsed()));
        match changes.as_mut() {
            Some(c) => {
                // A lease lapsing sends no notification: look again soon while a worker is
                // being watched, and every few polls anyway.
                let most = if deaths.watching() { poll } else { poll * 5 };
                if let Err(e) = c.wait(until_renewal.min(most)).await {
                    tracing::warn!(error = %e, "scheduler: change notifications lost; polling");
                    changes = None;
                }
            }
            None => tokio::time::sleep(until_renewal.min(poll)).await,
        }
    }
}

/// One pass as holder of `term`: replicas from demand, then placement.
async fn place(
    store: &MetadataStore,
    holder: &str,
    term: u64,
    autoscaler: &mut Autoscaler,
    deaths: &mut DeathWatch,
    metrics: &crate::metrics::Metrics,
) -> Result<(), StoreError> {
    let workers = deaths.judge(store.list_workers().await?);
    let mut deployments = store
        .deployments_with_status(DeploymentStatus::Deploying)
        .await?;
    deployments.extend(
        store
            .deployments_with_status(DeploymentStatus::Ready)
            .await?,
    );
    let functions = store.serving_functions().await?;
    let placements = store.list_placements().await?;
    let background = store.functions_with_background_work().await?;
    autoscaler.observe(&workers);
    let live: Vec<_> = workers.iter().filter(|w| w.live).collect();
    let cores = live.iter().map(|w| w.report.cores as f64).sum::<f64>() / live.len().max(1) as f64;
    let now = crate::model::Timestamp::now().0;
    let mut to_place = Vec::new();
    for (f, d) in newest_deployments(&deployments, &functions) {
        let mine: Vec<&Placement> = placements
            .iter()
            .filter(|p| p.function_id == f.id)
            .collect();
        let view = FunctionView {
            current: mine
                .iter()
                .filter(|p| p.reason != PlacementReason::Leaving)
                .count() as u32,
            max_instances: f.max_instances,
            keep_one: d.status == DeploymentStatus::Deploying || background.contains(&f.id),
            since: mine
                .iter()
                .map(|p| p.placed_at.0)
                .chain([d.created_at.0])
                .max()
                .unwrap_or(0),
        };
        let (replicas, decision) = autoscaler.replicas(&f.id, view, live.len(), cores, now);
        if let Some(d) = decision {
            tracing::info!(function = %f.id, from = d.from, to = d.to,
                concurrency = format!("{:.2}", d.concurrency), reason = d.reason,
                "scheduler: replicas");
        }
        to_place.push(FunctionToPlace {
            id: f.id.clone(),
            deployment_id: d.id.clone(),
            max_instances: f.max_instances,
            replicas,
        });
    }
    metrics.set_replicas(
        to_place
            .iter()
            .map(|f| (f.id.clone(), f.replicas))
            .collect(),
    );
    let plan = placement::plan(&workers, &to_place, &placements);
    if plan.is_empty() {
        return Ok(());
    }
    if store.apply_placements(ROLE, holder, term, &plan).await? {
        tracing::info!(
            upserts = plan.upserts.len(),
            removals = plan.removals.len(),
            "scheduler: placements changed"
        );
        for t in &plan.upserts {
            tracing::debug!(function = %t.function_id, worker = %t.worker_id,
                deployment = %t.deployment_id, share = t.max_instances, reason = t.reason.as_str(),
                "scheduler: placement");
        }
    }
    Ok(())
}

/// Each function with a deployment `DEPLOYING` or `READY`, and its newest such.
fn newest_deployments<'a>(
    deployments: &'a [Deployment],
    functions: &'a [crate::model::Function],
) -> Vec<(&'a crate::model::Function, &'a Deployment)> {
    let newest = crate::model::newest_per_function(deployments.iter());
    functions
        .iter()
        .filter_map(|f| Some((f, *newest.get(f.id.as_str())?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Timestamp;

    fn worker(id: &str, live: bool) -> FleetWorker {
        let mut w = FleetWorker::for_tests(id);
        w.renewed_at = Timestamp(1_000);
        w.lease_until = Timestamp(1_200);
        w.live = live;
        w
    }

    #[test]
    fn a_lapsed_worker_is_dead_after_half_a_lease_of_being_seen_lapsed() {
        let mut d = DeathWatch::default();
        let live = |ws: Vec<FleetWorker>| ws.iter().map(|w| w.live).collect::<Vec<_>>();
        // Lease 200 ms: lapsed workers stay live for 100 ms of watching.
        assert_eq!(
            live(d.judge(vec![worker("a", true), worker("b", false)])),
            [true, true]
        );
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(
            live(d.judge(vec![worker("a", true), worker("b", false)])),
            [true, true]
        );
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(
            live(d.judge(vec![worker("a", true), worker("b", false)])),
            [true, false]
        );
        // Renewed: forgotten; lapsed again: watched from the start again.
        assert_eq!(live(d.judge(vec![worker("b", true)])), [true]);
        assert_eq!(live(d.judge(vec![worker("b", false)])), [true]);
    }
}
