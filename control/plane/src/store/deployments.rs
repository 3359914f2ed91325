//! Deployments in the metadata store: the owner-scoped CRUD of the API; the unscoped reads and
//! status changes of the upload endpoint, the packager and workers; and leases, by which those
//! processes share out the deployments to work on. Every status change is a compare-and-set in
//! one statement, so that of two processes changing one deployment exactly one wins.

use super::{is_foreign_key_violation, lease_end, now, MetadataStore, Reader, StoreError};
use crate::model::{Deployment, DeploymentSpec, DeploymentStatus, Platform};
use sqlx::any::AnyRow;
use std::time::Duration;

macro_rules! deployment_columns {
    () => {
        "id, function_id, owner_id, name, description, tag, platform, status, error_reason, \
         url, release_id, created_at, updated_at, artifact_key"
    };
}

/// How many candidates [`MetadataStore::claim`] fetches at once: when claimers race for the
/// oldest, the losers try the next ones without another query.
const CLAIM_CANDIDATES: i64 = 8;

fn deployment_from_row(row: &AnyRow) -> Result<Deployment, StoreError> {
    let r = Reader::new(row, "deployment", "id")?;
    Ok(Deployment {
        id: r.id(),
        function_id: r.get("function_id")?,
        owner_id: r.get("owner_id")?,
        name: r.get("name")?,
        description: r.get("description")?,
        tag: r.get("tag")?,
        platform: r.platform("platform")?,
        status: r.status("status")?,
        error_reason: r.get("error_reason")?,
        url: r.get("url")?,
        release_id: r.get("release_id")?,
        created_at: r.time("created_at")?,
        updated_at: r.time("updated_at")?,
        artifact_key: r.get("artifact_key")?,
    })
}

fn optional(row: Option<AnyRow>) -> Result<Option<Deployment>, StoreError> {
    row.as_ref().map(deployment_from_row).transpose()
}

impl MetadataStore {
    /// Creates a deployment of the Function `function_id` of `owner`, in `status`, of the
    /// release `release_id` if given (which must be a release of that Function:
    /// [`StoreError::ReleaseNotFound`] otherwise). `None` if `owner` has no such Function.
    pub async fn create_deployment(
        &self,
        owner: &str,
        function_id: &str,
        platform: Platform,
        spec: &DeploymentSpec,
        release_id: Option<&str>,
        status: DeploymentStatus,
    ) -> Result<Option<Deployment>, StoreError> {
        const OP: &str = "create_deployment";
        // One statement: the deployment exists only if the Function does, as `owner`'s.
        let result = sqlx::query(concat!(
            "INSERT INTO deployments (",
            deployment_columns!(),
            ") SELECT $1, id, owner_id, $2, $3, $4, $5, $6, NULL, NULL, $7, $8, $8, NULL \
             FROM functions WHERE id = $9 AND owner_id = $10 RETURNING ",
            deployment_columns!()
        ))
        .bind(crate::model::new_id())
        .bind(spec.name.as_deref())
        .bind(spec.description.as_deref())
        .bind(spec.tag.as_deref())
        .bind(platform.as_str())
        .bind(status.as_str())
        .bind(release_id)
        .bind(now())
        .bind(function_id)
        .bind(owner)
        .fetch_optional(&self.pool)
        .await;
        match result {
            Ok(row) => optional(row),
            Err(e) if is_foreign_key_violation(&e) => {
                // The release is not one of this Function's, or the Function was deleted
                // meanwhile.
                match (release_id, self.get_function(owner, function_id).await?) {
                    (Some(release_id), Some(_)) => Err(StoreError::ReleaseNotFound {
                        release_id: release_id.to_string(),
                        function_id: function_id.to_string(),
                    }),
                    _ => Ok(None),
                }
            }
            Err(e) => Err(StoreError::query(OP)(e)),
        }
    }

    /// The deployments of the Function `function_id` of `owner`, oldest first.
    pub async fn list_deployments(
        &self,
        owner: &str,
        function_id: &str,
    ) -> Result<Vec<Deployment>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            deployment_columns!(),
            " FROM deployments WHERE owner_id = $1 AND function_id = $2 ORDER BY created_at, id"
        ))
        .bind(owner)
        .bind(function_id)
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query("list_deployments"))?;
        rows.iter().map(deployment_from_row).collect()
    }

    /// The deployment `id` of the Function `function_id` of `owner`.
    pub async fn get_deployment(
        &self,
        owner: &str,
        function_id: &str,
        id: &str,
    ) -> Result<Option<Deployment>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            deployment_columns!(),
            " FROM deployments WHERE owner_id = $1 AND function_id = $2 AND id = $3"
        ))
        .bind(owner)
        .bind(function_id)
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(StoreError::query("get_deployment"))?;
        optional(row)
    }

    /// The deployment `id`, whoever owns it: for the upload endpoint (whose signed URL names
    /// the deployment), the packager and workers.
    pub async fn deployment(&self, id: &str) -> Result<Option<Deployment>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            deployment_columns!(),
            " FROM deployments WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(StoreError::query("deployment"))?;
        optional(row)
    }

    /// Replaces the name, description and tag of the deployment `id` of the Function
    /// `function_id` of `owner`.
    pub async fn update_deployment(
        &self,
        owner: &str,
        function_id: &str,
        id: &str,
        spec: &DeploymentSpec,
    ) -> Result<Option<Deployment>, StoreError> {
        let row = sqlx::query(concat!(
            "UPDATE deployments SET name = $1, description = $2, tag = $3, updated_at = $4 \
             WHERE owner_id = $5 AND function_id = $6 AND id = $7 RETURNING ",
            deployment_columns!()
        ))
        .bind(spec.name.as_deref())
        .bind(spec.description.as_deref())
        .bind(spec.tag.as_deref())
        .bind(now())
        .bind(owner)
        .bind(function_id)
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(StoreError::query("update_deployment"))?;
        optional(row)
    }

    /// Deletes the deployment `id` of the Function `function_id` of `owner`; whether there was
    /// one. Its release stays.
    pub async fn delete_deployment(
        &self,
        owner: &str,
        function_id: &str,
        id: &str,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "DELETE FROM deployments WHERE owner_id = $1 AND function_id = $2 AND id = $3",
        )
        .bind(owner)
        .bind(function_id)
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(StoreError::query("delete_deployment"))?;
        if done.rows_affected() > 0 {
            self.notify_change().await;
        }
        Ok(done.rows_affected() > 0)
    }

    /// The deployments in `status`, of every owner, oldest first.
    pub async fn deployments_with_status(
        &self,
        status: DeploymentStatus,
    ) -> Result<Vec<Deployment>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            deployment_columns!(),
            " FROM deployments WHERE status = $1 ORDER BY created_at, id"
        ))
        .bind(status.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query("deployments_with_status"))?;
        rows.iter().map(deployment_from_row).collect()
    }

    /// Sets the release of the deployment `id` (an upload arrived), only while it is
    /// `WAITING_FOR_UPLOAD`; `None` if it is gone or past that. The release must be one of the
    /// deployment's Function ([`StoreError::ReleaseNotFound`] otherwise).
    pub async fn set_deployment_release(
        &self,
        id: &str,
        release_id: &str,
    ) -> Result<Option<Deployment>, StoreError> {
        let result = sqlx::query(concat!(
            "UPDATE deployments SET release_id = $1, updated_at = $2 \
             WHERE id = $3 AND status = $4 RETURNING ",
            deployment_columns!()
        ))
        .bind(release_id)
        .bind(now())
        .bind(id)
        .bind(DeploymentStatus::WaitingForUpload.as_str())
        .fetch_optional(&self.pool)
        .await;
        match result {
            Ok(row) => optional(row),
            Err(e) if is_foreign_key_violation(&e) => match self.deployment(id).await? {
                Some(d) => Err(StoreError::ReleaseNotFound {
                    release_id: release_id.to_string(),
                    function_id: d.function_id,
                }),
                None => Ok(None),
            },
            Err(e) => Err(StoreError::query("set_deployment_release")(e)),
        }
    }

    /// Compare-and-set of the status of the deployment `id`: only if it is one of `from`, sets
    /// it to `to` with `error_reason` and `url` as given (`None` clears them), `updatedAt` to
    /// now, and releases any lease. `None` if the deployment is gone or in another status
    /// (someone else moved it first).
    pub async fn transition(
        &self,
        id: &str,
        from: &[DeploymentStatus],
        to: DeploymentStatus,
        error_reason: Option<&str>,
        url: Option<&str>,
    ) -> Result<Option<Deployment>, StoreError> {
        // A fixed number of slots keeps the statement static (prepared once): the distinct
        // statuses of `from` (there are at most as many as statuses exist), padded with
        // repeats of the first.
        let Some(first) = from.first() else {
            return Ok(None);
        };
        let mut slots = [first.as_str(); DeploymentStatus::ALL.len()];
        let mut used = 0;
        for status in from {
            if !slots[..used].contains(&status.as_str()) {
                if let Some(slot) = slots.get_mut(used) {
                    *slot = status.as_str();
                    used += 1;
                }
            }
        }
        let row = sqlx::query(concat!(
            "UPDATE deployments SET status = $1, error_reason = $2, url = $3, updated_at = $4, \
             lease_holder = NULL, lease_until = NULL \
             WHERE id = $5 AND status IN ($6, $7, $8, $9, $10) RETURNING ",
            deployment_columns!()
        ))
        .bind(to.as_str())
        .bind(error_reason)
        .bind(url)
        .bind(now())
        .bind(id)
        .bind(slots[0])
        .bind(slots[1])
        .bind(slots[2])
        .bind(slots[3])
        .bind(slots[4])
        .fetch_optional(&self.pool)
        .await
        .map_err(StoreError::query("transition"))?;
        let d = optional(row)?;
        if d.is_some() {
            self.notify_change().await;
        }
        Ok(d)
    }

    /// Records the key of the artifact the packager built for the deployment `id` while it
    /// packages it; false if it is gone or no longer packaging.
    pub async fn set_artifact_key(&self, id: &str, key: &str) -> Result<bool, StoreError> {
        let done =
            sqlx::query("UPDATE deployments SET artifact_key = $1 WHERE id = $2 AND status = $3")
                .bind(key)
                .bind(id)
                .bind(DeploymentStatus::Packaging.as_str())
                .execute(&self.pool)
                .await
                .map_err(StoreError::query("set_artifact_key"))?;
        Ok(done.rows_affected() == 1)
    }

    /// Keeps the log of the deployment `id`'s build (replacing an earlier one: a build taken
    /// over after a crash logs again). Nothing if the deployment is gone.
    pub async fn put_build_log(&self, id: &str, text: &str) -> Result<(), StoreError> {
        const OP: &str = "put_build_log";
        let mut tx = self.begin_write(OP).await?;
        sqlx::query("DELETE FROM build_logs WHERE deployment_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::query(OP))?;
        // Through the deployment, so that the log of a deleted one is simply not kept.
        sqlx::query(
            "INSERT INTO build_logs (deployment_id, at, text) \
             SELECT id, $2, $3 FROM deployments WHERE id = $1",
        )
        .bind(id)
        .bind(now())
        .bind(text)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::query(OP))?;
        tx.commit().await.map_err(StoreError::query(OP))
    }

    /// The build log of `owner`'s deployment `id` of Function `function_id`: `None` if there
    /// is no such deployment, `Some(None)` if it has no log (nothing was built).
    pub async fn build_log(
        &self,
        owner: &str,
        function_id: &str,
        id: &str,
    ) -> Result<Option<Option<String>>, StoreError> {
        if self.get_deployment(owner, function_id, id).await?.is_none() {
            return Ok(None);
        }
        let row = sqlx::query("SELECT text FROM build_logs WHERE deployment_id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(StoreError::query("build_log"))?;
        let text = match row {
            Some(r) => Some(
                sqlx::Row::try_get::<String, _>(&r, "text")
                    .map_err(StoreError::query("build_log"))?,
            ),
            None => None,
        };
        Ok(Some(text))
    }

    /// Leases to `holder`, until `lease` from now, the oldest deployment in `status` that no
    /// one holds: its lease is absent or lapsed, or held by an earlier incarnation of
    /// `holder`'s node. `None` if there is none. Two claimers never get the same deployment
    /// while its lease runs, and a holder never gets one it already holds (it is working on
    /// it); a holder that stops renewing (it crashed) loses it to the next claimer once the
    /// lease lapses.
    ///
    /// Holders are named `NODE/INSTANCE`: a node restarted after a crash (same `NODE`, new
    /// `INSTANCE`) takes over its own unfinished work at once instead of waiting for the lease.
    pub async fn claim(
        &self,
        status: DeploymentStatus,
        holder: &str,
        lease: Duration,
    ) -> Result<Option<Deployment>, StoreError> {
        const OP: &str = "claim";
        // Earlier incarnations of this node: `NODE/` and anything (a holder without `/` has
        // none). `_` and `%` cannot occur in node ids, which are UUIDs.
        let node_pattern = match holder.split_once('/') {
            Some((node, _)) if !node.contains(['%', '_']) => format!("{node}/%"),
            _ => String::new(),
        };
        loop {
            let at = now();
            let candidates: Vec<String> = sqlx::query_scalar(
                "SELECT id FROM deployments WHERE status = $1 \
                 AND (lease_until IS NULL OR lease_until <= $2 \
                      OR (lease_holder LIKE $3 AND lease_holder <> $4)) \
                 ORDER BY created_at, id LIMIT $5",
            )
            .bind(status.as_str())
            .bind(at)
            .bind(&node_pattern)
            .bind(holder)
            .bind(CLAIM_CANDIDATES)
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::query(OP))?;
            if candidates.is_empty() {
                return Ok(None);
            }
            for id in candidates {
                // The same conditions again, in the statement that takes the lease: on
                // PostgreSQL a concurrent claimer's committed update makes this one re-check
                // them against the new row, and find it taken.
                let row = sqlx::query(concat!(
                    "UPDATE deployments SET lease_holder = $1, lease_until = $2 \
                     WHERE id = $3 AND status = $4 \
                     AND (lease_until IS NULL OR lease_until <= $5 \
                          OR (lease_holder LIKE $6 AND lease_holder <> $1)) \
                     RETURNING ",
                    deployment_columns!()
                ))
                .bind(holder)
                .bind(lease_end(lease))
                .bind(&id)
                .bind(status.as_str())
                .bind(at)
                .bind(&node_pattern)
                .fetch_optional(&self.pool)
                .await
                .map_err(StoreError::query(OP))?;
                if let Some(row) = row {
                    return deployment_from_row(&row).map(Some);
                }
            }
            // Every candidate went to someone else: each loss is another claimer's success,
            // so this ends once the candidates run out.
        }
    }

    /// Extends `holder`'s lease on the deployment `id` to `lease` from now; `false` if the
    /// lease is no longer `holder`'s (it lapsed and another process claimed it, or the
    /// deployment changed status or is gone): `holder` must stop working on it.
    pub async fn renew(&self, id: &str, holder: &str, lease: Duration) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE deployments SET lease_until = $1 WHERE id = $2 AND lease_holder = $3",
        )
        .bind(lease_end(lease))
        .bind(id)
        .bind(holder)
        .execute(&self.pool)
        .await
        .map_err(StoreError::query("renew"))?;
        Ok(done.rows_affected() > 0)
    }
}
