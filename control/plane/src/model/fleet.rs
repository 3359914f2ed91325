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
