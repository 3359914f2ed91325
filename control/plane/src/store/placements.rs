//! Placements in the metadata store: which workers hold which functions, the deployment each
//! is to serve and its share of the function's instances. Written from two sides:
//! the scheduler's plan ([`MetadataStore::apply_placements`], fenced by its term so that a
//! former scheduler that has not yet noticed losing the role writes nothing), and each worker's
//! report of what it has loaded and the bound it enforces now
//! ([`MetadataStore::report_placement`]), or its request for a function it got a request for
//! and did not hold ([`MetadataStore::request_placement`]). Every change notifies (PostgreSQL),
//! so workers and the scheduler react within milliseconds rather than at their next poll.

use super::{now, Backend, MetadataStore, Reader, StoreError};
use crate::model::{DeploymentStatus, Placement, PlacementReason, PlacementTarget};
use sqlx::any::AnyRow;

macro_rules! placement_columns {
    () => {
        "function_id, worker_id, deployment_id, max_instances, reason, placed_at, generation, \
         held_max_instances, loaded_deployment_id, applied_max_instances, acked_generation"
    };
}

fn placement_from_row(row: &AnyRow) -> Result<Placement, StoreError> {
    let r = Reader::new(row, "placement", "function_id")?;
    let reason: String = r.get("reason")?;
    Ok(Placement {
        function_id: r.id(),
        worker_id: r.get("worker_id")?,
        deployment_id: r.get("deployment_id")?,
        max_instances: r.u32("max_instances")?,
        reason: PlacementReason::parse(&reason)
            .ok_or_else(|| r.corrupt("reason", format!("unknown: {reason:?}")))?,
        placed_at: r.time("placed_at")?,
        generation: r.u64("generation")?,
        held_max_instances: r.u32("held_max_instances")?,
        loaded_deployment_id: r.get("loaded_deployment_id")?,
        applied_max_instances: r.u32("applied_max_instances")?,
        acked_generation: r.u64("acked_generation")?,
    })
}

/// The scheduler's changes, written at once.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PlacementPlan {
    /// Placements to create or update (deployment, share, reason).
    pub upserts: Vec<PlacementTarget>,
    /// Placements to remove: (function, worker).
    pub removals: Vec<(String, String)>,
}

impl PlacementPlan {
    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.upserts.is_empty() && self.removals.is_empty()
    }
}

impl MetadataStore {
    /// Every placement, by function then worker.
    pub async fn list_placements(&self) -> Result<Vec<Placement>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            placement_columns!(),
            " FROM placements ORDER BY function_id, worker_id"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query("listing placements"))?;
        rows.iter().map(placement_from_row).collect()
    }

    /// The placements on worker `worker_id`.
    pub async fn placements_of_worker(
        &self,
        worker_id: &str,
    ) -> Result<Vec<Placement>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            placement_columns!(),
            " FROM placements WHERE worker_id = $1 ORDER BY function_id"
        ))
        .bind(worker_id)
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query("listing a worker's placements"))?;
        rows.iter().map(placement_from_row).collect()
    }

    /// The replicas of function `function_id`.
    pub async fn placements_of_function(
        &self,
        function_id: &str,
    ) -> Result<Vec<Placement>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            placement_columns!(),
            " FROM placements WHERE function_id = $1 ORDER BY worker_id"
        ))
        .bind(function_id)
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query("listing a function's placements"))?;
        rows.iter().map(placement_from_row).collect()
    }

    /// Functions that need a replica whatever their requests: those with an event trigger
    /// (someone must consume it) or async invocations queued or running.
    pub async fn functions_with_background_work(
        &self,
    ) -> Result<std::collections::HashSet<String>, StoreError> {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT function_id FROM pulsar_triggers UNION \
             SELECT DISTINCT function_id FROM invocations WHERE status IN ('QUEUED', 'RUNNING')",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query("listing functions with background work"))?;
        Ok(ids.into_iter().collect())
    }

    /// Writes the scheduler's `plan` in one transaction if `holder` still holds `role` in
    /// `term` with a lease that runs; `false` (nothing written) otherwise. On PostgreSQL the
    /// role's row stays locked until the plan is written, so a take-over waits for it; on
    /// SQLite the write lock taken first does the same.
    pub async fn apply_placements(
        &self,
        role: &str,
        holder: &str,
        term: u64,
        plan: &PlacementPlan,
    ) -> Result<bool, StoreError> {
        const OP: &str = "writing placements";
        let mut tx = self.begin_write(OP).await?;
        let check = match self.backend {
            Backend::Postgres => {
                "SELECT term FROM singleton_leases WHERE name = $1 AND holder = $2 \
                 AND term = $3 AND lease_until > $4 FOR UPDATE"
            }
            Backend::Sqlite => {
                "SELECT term FROM singleton_leases WHERE name = $1 AND holder = $2 \
                 AND term = $3 AND lease_until > $4"
            }
        };
        let at = now();
        let held: Option<i64> = sqlx::query_scalar(check)
            .bind(role)
            .bind(holder)
            .bind(i64::try_from(term).unwrap_or(i64::MAX))
            .bind(at)
            .fetch_optional(&mut *tx)
            .await
            .map_err(StoreError::query(OP))?;
        if held.is_none() {
            return Ok(false);
        }
        let at = now();
        // A placement goes only once it is leaving and its worker holds no share of it, or
        // with the worker (removals of dead workers' placements are unconditional). Leaving
        // still when this runs: the plan was made from an earlier read, and a worker that got
        // a request meanwhile turned the placement into a demand (`request_placement`), which
        // it then waits on.
        for (function_id, worker_id) in &plan.removals {
            sqlx::query(
                "DELETE FROM placements WHERE function_id = $1 AND worker_id = $2 \
                 AND ((reason = 'leaving' AND held_max_instances = 0) \
                 OR NOT EXISTS (SELECT 1 FROM workers w \
                 WHERE w.id = placements.worker_id AND w.lease_until > $3))",
            )
            .bind(function_id)
            .bind(worker_id)
            .bind(at)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::query(OP))?;
        }
        for p in &plan.upserts {
            sqlx::query(
                "INSERT INTO placements (function_id, worker_id, deployment_id, max_instances, \
                 reason, placed_at, generation, held_max_instances, loaded_deployment_id, \
                 applied_max_instances, acked_generation, reported_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, 1, $4, NULL, 0, 0, NULL) \
                 ON CONFLICT (function_id, worker_id) DO UPDATE SET \
                 deployment_id = excluded.deployment_id, \
                 max_instances = excluded.max_instances, reason = excluded.reason, \
                 generation = placements.generation + 1, \
                 held_max_instances = CASE \
                   WHEN excluded.max_instances > placements.held_max_instances \
                   THEN excluded.max_instances ELSE placements.held_max_instances END",
            )
            .bind(&p.function_id)
            .bind(&p.worker_id)
            .bind(&p.deployment_id)
            .bind(i64::from(p.max_instances))
            .bind(p.reason.as_str())
            .bind(at)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::query(OP))?;
        }
        tx.commit().await.map_err(StoreError::query(OP))?;
        if !plan.is_empty() {
            self.notify_change().await;
        }
        Ok(true)
    }

    /// Worker `worker_id` reports, for its placement of `function_id` as it read it in
    /// `generation`, the deployment it has loaded and the instances it lets run at once now.
    /// If `generation` is the latest, what the worker holds comes down to `applied`. Whether
    /// the placement exists (if not, the worker must not serve the function on it).
    pub async fn report_placement(
        &self,
        function_id: &str,
        worker_id: &str,
        generation: u64,
        loaded_deployment_id: Option<&str>,
        applied_max_instances: u32,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE placements SET loaded_deployment_id = $3, applied_max_instances = $4, \
             acked_generation = $5, reported_at = $6, held_max_instances = CASE \
               WHEN generation = $5 THEN $4 ELSE held_max_instances END \
             WHERE function_id = $1 AND worker_id = $2",
        )
        .bind(function_id)
        .bind(worker_id)
        .bind(loaded_deployment_id)
        .bind(i64::from(applied_max_instances))
        .bind(i64::try_from(generation).unwrap_or(i64::MAX))
        .bind(now())
        .execute(&self.pool)
        .await
        .map_err(StoreError::query("reporting a placement"))?;
        if done.rows_affected() > 0 {
            self.notify_change().await;
        }
        Ok(done.rows_affected() > 0)
    }

    /// Worker `worker_id` got a request for `function_id`, which it does not hold (or is
    /// giving up): it asks for a replica (serving `deployment_id`) with no share yet, which the
    /// scheduler gives it. Placed now, also over a leaving placement: the autoscaler counts a
    /// function idle only since its newest placement, and this one comes with a request.
    /// Whether this changed anything (`false`: it holds the function).
    pub async fn request_placement(
        &self,
        function_id: &str,
        worker_id: &str,
        deployment_id: &str,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO placements (function_id, worker_id, deployment_id, max_instances, \
             reason, placed_at, generation, held_max_instances, loaded_deployment_id, \
             applied_max_instances, acked_generation, reported_at) \
             VALUES ($1, $2, $3, 0, 'demand', $4, 1, 0, NULL, 0, 0, NULL) \
             ON CONFLICT (function_id, worker_id) DO UPDATE SET reason = 'demand', \
             deployment_id = excluded.deployment_id, placed_at = excluded.placed_at \
             WHERE placements.reason = 'leaving'",
        )
        .bind(function_id)
        .bind(worker_id)
        .bind(deployment_id)
        .bind(now())
        .execute(&self.pool)
        .await
        .map_err(StoreError::query("requesting a placement"))?;
        if done.rows_affected() > 0 {
            self.notify_change().await;
        }
        Ok(done.rows_affected() > 0)
    }

    /// Reports deployment `deployment_id` `READY` (with `url`) if it is `DEPLOYING` and every
    /// replica placed to serve it has loaded it (and there is one). Whether it did.
    pub async fn ready_if_replicated(
        &self,
        deployment_id: &str,
        url: &str,
    ) -> Result<bool, StoreError> {
        let (placed, loaded): (i64, i64) = sqlx::query_as(
            "SELECT COUNT(*), COALESCE(SUM(CASE WHEN loaded_deployment_id = deployment_id \
             THEN 1 ELSE 0 END), 0) FROM placements WHERE deployment_id = $1",
        )
        .bind(deployment_id)
        .fetch_one(&self.pool)
        .await
        .map_err(StoreError::query("counting a deployment's replicas"))?;
        if placed == 0 || loaded < placed {
            return Ok(false);
        }
        let d = self
            .transition(
                deployment_id,
                &[DeploymentStatus::Deploying],
                DeploymentStatus::Ready,
                None,
                Some(url),
            )
            .await?;
        Ok(d.is_some())
    }
}
