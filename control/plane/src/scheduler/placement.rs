//! Placement: which workers hold each function, decided from the fleet's state as the store
//! has it. A plain function of its inputs, so that it is tested without a database.
//!
//! For each function with a deployment to serve, the scheduler keeps `replicas` workers
//! holding it (never more than its `maxInstances`, nor than live workers): replicas that a
//! worker asked for because requests reached it come first, then those already placed, then
//! new ones on the least loaded live workers. The function's `maxInstances` is split into
//! shares, one per replica, and the shares of all its placements never add up to more: a
//! share is counted at the most its worker may be enforcing (`held`), so a share taken from
//! one worker is given to another only after the first has acknowledged giving it up. Replicas
//! no longer wanted are first drained (`leaving`, share zero) and removed once their worker
//! holds nothing; those of dead workers go at once.

use crate::model::{FleetWorker, Placement, PlacementReason, PlacementTarget};
use crate::store::PlacementPlan;
use std::collections::{HashMap, HashSet};

/// A function the scheduler places.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FunctionToPlace {
    /// The function.
    pub id: String,
    /// The deployment its replicas are to serve: its newest one that is `DEPLOYING` or
    /// `READY`.
    pub deployment_id: String,
    /// Its `maxInstances`, across the fleet.
    pub max_instances: u32,
    /// How many workers should hold it (0: none, it scaled to zero; workers that get requests
    /// for it still ask for it, and get it).
    pub replicas: u32,
}

/// How loaded a worker is, for choosing where a new replica goes: its running invocations per
/// core, its slots in use, its memory, and (so that an idle fleet still spreads) a quarter per
/// function it holds.
fn load(w: &FleetWorker, holds: usize) -> f64 {
    let r = &w.report;
    let per = |n: u64, of: u64| n as f64 / of.max(1) as f64;
    per(r.in_flight, r.cores)
        + per(r.slots_in_use, r.slots)
        + per(r.resident_bytes, r.memory_bytes)
        + 0.25 * holds as f64
}

/// The changes that bring `placements` to what `functions` need on the live `workers`.
pub fn plan(
    workers: &[FleetWorker],
    functions: &[FunctionToPlace],
    placements: &[Placement],
) -> PlacementPlan {
    let mut plan = PlacementPlan::default();
    let live: HashMap<&str, &FleetWorker> = workers
        .iter()
        .filter(|w| w.live)
        .map(|w| (w.report.id.as_str(), w))
        .collect();
    if live.is_empty() {
        // Nowhere to place anything: keep what is recorded for when workers come back.
        return plan;
    }
    let mut holds: HashMap<&str, usize> = HashMap::new();
    for p in placements {
        if live.contains_key(p.worker_id.as_str()) {
            *holds.entry(p.worker_id.as_str()).or_default() += 1;
        }
    }
    let mut by_function: HashMap<&str, Vec<&Placement>> = HashMap::new();
    for p in placements {
        by_function
            .entry(p.function_id.as_str())
            .or_default()
            .push(p);
    }
    let wanted: HashMap<&str, &FunctionToPlace> =
        functions.iter().map(|f| (f.id.as_str(), f)).collect();

    // Functions no longer to be served: drain, then remove.
    let mut gone: Vec<&str> = by_function
        .keys()
        .copied()
        .filter(|f| !wanted.contains_key(f))
        .collect();
    gone.sort_unstable();
    for f in gone {
        for p in &by_function[f] {
            if live.contains_key(p.worker_id.as_str()) {
                drain(&mut plan, p);
            } else {
                plan.removals
                    .push((p.function_id.clone(), p.worker_id.clone()));
            }
        }
    }

    let mut ids: Vec<&str> = wanted.keys().copied().collect();
    ids.sort_unstable();
    for id in ids {
        let f = wanted[id];
        let existing = by_function.get(id).map(Vec::as_slice).unwrap_or(&[]);
        let (alive, dead): (Vec<&Placement>, Vec<&Placement>) = existing
            .iter()
            .partition(|p| live.contains_key(p.worker_id.as_str()));
        for p in dead {
            plan.removals
                .push((p.function_id.clone(), p.worker_id.clone()));
        }
        let max = f.max_instances.max(1);
        let demanded = alive
            .iter()
            .filter(|p| p.reason == PlacementReason::Demand)
            .count() as u32;
        let replicas = f.replicas.max(demanded).min(max) as usize;
        let replicas = replicas.min(live.len());

        // Which to keep: demanded first, then placed, then leaving ones (loaded already).
        let mut candidates = alive.clone();
        candidates.sort_by_key(|p| {
            let rank = match p.reason {
                PlacementReason::Demand => 0,
                PlacementReason::Placed => 1,
                PlacementReason::Leaving => 2,
            };
            (rank, p.placed_at.0, p.worker_id.clone())
        });
        let kept: Vec<&Placement> = candidates.iter().take(replicas).copied().collect();
        let kept_workers: HashSet<&str> = kept.iter().map(|p| p.worker_id.as_str()).collect();
        let holding: HashSet<&str> = alive.iter().map(|p| p.worker_id.as_str()).collect();
        let mut new_workers: Vec<&str> = Vec::new();
        while kept.len() + new_workers.len() < replicas {
            let best = live
                .iter()
                .filter(|(id, _)| !holding.contains(*id) && !new_workers.contains(id))
                .map(|(id, w)| (load(w, holds.get(id).copied().unwrap_or(0)), *id))
                .min_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(b.1)));
            let Some((_, w)) = best else { break };
            *holds.entry(w).or_default() += 1;
            new_workers.push(w);
        }

        // Shares: `max` split over the replicas in worker order.
        let mut members: Vec<(&str, Option<&Placement>)> = kept
            .iter()
            .map(|p| (p.worker_id.as_str(), Some(*p)))
            .chain(new_workers.iter().map(|w| (*w, None)))
            .collect();
        members.sort_by_key(|m| m.0);
        let n = members.len().max(1) as u32;
        let held: u32 = alive.iter().map(|p| p.held_max_instances).sum();
        let mut free = max.saturating_sub(held);
        for (i, (worker, p)) in members.iter().enumerate() {
            let share = max / n + u32::from((i as u32) < max % n);
            let held = p.map_or(0, |p| p.held_max_instances);
            // Lowering is always safe; raising only takes what nobody holds.
            let assigned = if share <= held {
                share
            } else {
                let more = (share - held).min(free);
                free -= more;
                held + more
            };
            let reason = if assigned == 0 {
                p.map_or(PlacementReason::Placed, |p| match p.reason {
                    PlacementReason::Leaving => PlacementReason::Placed,
                    r => r,
                })
            } else {
                PlacementReason::Placed
            };
            let target = PlacementTarget {
                function_id: f.id.clone(),
                worker_id: worker.to_string(),
                deployment_id: f.deployment_id.clone(),
                max_instances: assigned,
                reason,
            };
            let unchanged = p.is_some_and(|p| {
                p.deployment_id == target.deployment_id
                    && p.max_instances == target.max_instances
                    && p.reason == target.reason
            });
            if !unchanged {
                plan.upserts.push(target);
            }
        }
        for p in alive {
            if !kept_workers.contains(p.worker_id.as_str()) {
                drain(&mut plan, p);
            }
        }
    }
    plan
}

/// Takes `p` towards removal: share zero first, then gone once its worker holds nothing.
fn drain(plan: &mut PlacementPlan, p: &Placement) {
    if p.reason != PlacementReason::Leaving || p.max_instances != 0 {
        plan.upserts.push(PlacementTarget {
            function_id: p.function_id.clone(),
            worker_id: p.worker_id.clone(),
            deployment_id: p.deployment_id.clone(),
            max_instances: 0,
            reason: PlacementReason::Leaving,
        });
    } else if p.held_max_instances == 0 {
        plan.removals
            .push((p.function_id.clone(), p.worker_id.clone()));
    }
}

#[cfg(test)]
#[path = "placement_tests.rs"]
mod tests;
