//! The fleet's scheduler: the one process (of the API processes) that makes fleet-wide
//! decisions. Every API process contends for the `scheduler` singleton role in the metadata
//! store, renewing every third of its lease; the holder acts, the others wait and take over
//! within one lease when it dies, at once when it stops cleanly. The holder places every
//! function's deployment on workers ([`placement`]), on every change the store signals (or
//! every `poll` where it signals none), writing its plan fenced by its term; and it collects
//! the rows of long-dead workers.

pub mod placement;

use crate::model::{Deployment, DeploymentStatus};
use crate::store::{MetadataStore, StoreError};
use crate::worker::membership::FORGET_DEAD_AFTER;
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

/// Replicas per function (until autoscaling decides them from demand).
const REPLICAS: u32 = 1;

/// Contends for the role and acts while holding it, until the task is dropped.
pub async fn run(store: MetadataStore, holder: String, lease: Duration, poll: Duration) {
    let every = lease / 3;
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
            if let Err(e) = place(&store, &holder, t).await {
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
                if let Err(e) = c.wait(until_renewal.min(poll * 10)).await {
                    tracing::warn!(error = %e, "scheduler: change notifications lost; polling");
                    changes = None;
                }
            }
            None => tokio::time::sleep(until_renewal.min(poll)).await,
        }
    }
}

/// One placement pass as holder of `term`.
async fn place(store: &MetadataStore, holder: &str, term: u64) -> Result<(), StoreError> {
    let workers = store.list_workers().await?;
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
    let to_place = functions_to_place(&deployments, &functions);
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

/// Each function's newest deployment that is `DEPLOYING` or `READY`, with its settings.
fn functions_to_place(
    deployments: &[Deployment],
    functions: &[crate::model::Function],
) -> Vec<FunctionToPlace> {
    let mut newest: HashMap<&str, &Deployment> = HashMap::new();
    for d in deployments {
        let newer = newest
            .get(d.function_id.as_str())
            .is_none_or(|cur| (&d.created_at, &d.id) > (&cur.created_at, &cur.id));
        if newer {
            newest.insert(d.function_id.as_str(), d);
        }
    }
    functions
        .iter()
        .filter_map(|f| {
            let d = newest.get(f.id.as_str())?;
            Some(FunctionToPlace {
                id: f.id.clone(),
                deployment_id: d.id.clone(),
                max_instances: f.max_instances,
                replicas: REPLICAS,
            })
        })
        .collect()
}
