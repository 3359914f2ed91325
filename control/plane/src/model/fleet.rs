//! The fleet as the control plane sees it: the workers that have registered in the metadata
//! store, what each reported of itself with its latest lease renewal (where it serves, what it
//! has, how loaded it is), and whether its lease still runs. An fnvm extension of the API
//! (`GET /v4/fleet/workers`, operators only): the real platform does not expose its workers.

use super::Timestamp;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What a worker reports of itself each time it renews its lease.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkerReport {
    /// The worker's node id (kept in its data directory, so a restarted worker is the same).
    pub id: String,
    /// Where it serves functions (`--public-url`, or its HTTP listen address).
    pub url: String,
    /// When this process started.
    #[schema(value_type = String, format = DateTime)]
    pub started_at: Timestamp,
    /// fnvm's version.
    pub version: String,
    /// Capacity: CPUs the worker may use.
    pub cores: u64,
    /// Capacity: instance slots of its pool.
    pub slots: u64,
    /// Capacity: the machine's memory, in bytes.
    pub memory_bytes: u64,
    /// Load: invocations running now.
    pub in_flight: u64,
    /// Load: pool slots in use now (running, or waiting to be reset).
    pub slots_in_use: u64,
    /// Load: the process's resident memory, in bytes.
    pub resident_bytes: u64,
    /// Deployments it has loaded and serves.
    pub deployments: u64,
    /// Load per function it holds or has run (counters since the worker started serving the
    /// function: the scheduler takes differences between reports).
    #[serde(default)]
    pub functions: Vec<FunctionLoad>,
}

/// One function's demand on one worker.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FunctionLoad {
    /// The function.
    pub function_id: String,
    /// The instances it may run here at once (its share).
    pub share: u32,
    /// Instances granted so far.
    pub granted: u64,
    /// Requests refused for want of an instance so far.
    pub refused: u64,
    /// The time-integral of its instances running, in instance-microseconds: its difference
    /// between two reports over their interval is the mean concurrency.
    pub busy_us: u64,
    /// When it last got an instance here.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_request_at: Option<Timestamp>,
}

/// A registered worker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FleetWorker {
    /// Its latest report.
    #[serde(flatten)]
    pub report: WorkerReport,
    /// When it last renewed its lease.
    #[schema(value_type = String, format = DateTime)]
    pub renewed_at: Timestamp,
    /// When its lease ends unless renewed.
    #[schema(value_type = String, format = DateTime)]
    pub lease_until: Timestamp,
    /// Whether the lease still runs (`leaseUntil` is in the future): a worker whose lease
    /// lapsed is dead, and out of every placement.
    pub live: bool,
}

#[cfg(test)]
impl FleetWorker {
    /// A live worker `id` (`http://{id}`, 2 cores, 16 slots, 16 GiB, idle), for tests.
    pub(crate) fn for_tests(id: &str) -> FleetWorker {
        FleetWorker {
            report: WorkerReport {
                id: id.into(),
                url: format!("http://{id}"),
                started_at: Timestamp(0),
                version: "0".into(),
                cores: 2,
                slots: 16,
                memory_bytes: 1 << 34,
                in_flight: 0,
                slots_in_use: 0,
                resident_bytes: 1 << 26,
                deployments: 0,
                functions: vec![],
            },
            renewed_at: Timestamp(0),
            lease_until: Timestamp(0),
            live: true,
        }
    }
}

/// Who schedules the fleet: the API process holding the scheduler's role.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FleetScheduler {
    /// The holder: the process's node id and incarnation.
    pub holder: String,
    /// Grows by one each time the role changes hands.
    pub term: u64,
    /// When the holder took the role.
    #[schema(value_type = String, format = DateTime)]
    pub acquired_at: Timestamp,
    /// When its lease ends unless renewed.
    #[schema(value_type = String, format = DateTime)]
    pub lease_until: Timestamp,
    /// Whether the lease still runs (if not, the next API process to renew takes over).
    pub live: bool,
}

/// Why a worker holds a function.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum PlacementReason {
    /// The scheduler chose the worker, by load.
    Placed,
    /// The worker got a request for a function it did not hold and asked for it; the scheduler
    /// then gives it a share of the function's instances like any replica.
    Demand,
    /// Being taken off the worker: its share is zero, and the placement goes once the worker
    /// has drained what it runs.
    Leaving,
}

impl PlacementReason {
    /// The name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            PlacementReason::Placed => "placed",
            PlacementReason::Demand => "demand",
            PlacementReason::Leaving => "leaving",
        }
    }

    /// The reason stored as `s`.
    pub fn parse(s: &str) -> Option<PlacementReason> {
        Some(match s {
            "placed" => PlacementReason::Placed,
            "demand" => PlacementReason::Demand,
            "leaving" => PlacementReason::Leaving,
            _ => return None,
        })
    }
}

/// One replica of a function: a worker that is to serve one of its deployments, with a share
/// of the function's `maxInstances` (the shares of all its replicas never add up to more).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Placement {
    /// The function.
    pub function_id: String,
    /// The worker's node id.
    pub worker_id: String,
    /// The deployment the worker is to serve (during a rollout, the new one).
    pub deployment_id: String,
    /// The instances of the function this worker may run at once, as the scheduler assigned.
    pub max_instances: u32,
    /// Why the worker holds the function.
    pub reason: PlacementReason,
    /// When the scheduler (or the worker, for a demand) made the placement.
    #[schema(value_type = String, format = DateTime)]
    pub placed_at: Timestamp,
    /// Grows by one with each change the scheduler writes.
    pub generation: u64,
    /// The most instances the worker may be letting run: what the scheduler counts against
    /// the function's `maxInstances` (a lowered share counts at its old value until the
    /// worker acknowledges it).
    pub held_max_instances: u32,
    /// The worker's report: the deployment it has loaded and serves, if any.
    pub loaded_deployment_id: Option<String>,
    /// The worker's report: the instances it lets run at once now (above `maxInstances` while
    /// it drains after a lowered share).
    pub applied_max_instances: u32,
    /// The worker's report: the generation it acted on.
    pub acked_generation: u64,
}

/// A placement as the scheduler writes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlacementTarget {
    /// The function.
    pub function_id: String,
    /// The worker.
    pub worker_id: String,
    /// The deployment it is to serve.
    pub deployment_id: String,
    /// Its share of the function's instances.
    pub max_instances: u32,
    /// Why.
    pub reason: PlacementReason,
}

/// One replica of a function as its owner sees it (which worker holds it is the operator's
/// business: `GET /v4/fleet/placements`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Replica {
    /// The deployment it serves (or is loading).
    pub deployment_id: String,
    /// The instances it may run at once: its share of the function's `maxInstances`.
    pub max_instances: u32,
    /// `serving` (loaded, with a share), `loading` (not loaded yet, or no share yet) or
    /// `leaving` (being drained).
    pub state: String,
}

impl Replica {
    /// The owner's view of `p`.
    pub fn of(p: &Placement) -> Replica {
        let state = if p.reason == PlacementReason::Leaving {
            "leaving"
        } else if p.loaded_deployment_id.as_deref() == Some(p.deployment_id.as_str())
            && p.max_instances > 0
        {
            "serving"
        } else {
            "loading"
        };
        Replica {
            deployment_id: p.deployment_id.clone(),
            max_instances: p.max_instances,
            state: state.into(),
        }
    }
}
