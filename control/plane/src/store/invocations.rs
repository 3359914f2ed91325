//! The durable queue of asynchronous invocations in the metadata store: queueing one (bounded
//! per Function), workers claiming due ones under a lease (PostgreSQL: `FOR UPDATE SKIP LOCKED`,
//! so that workers never wait on each other's rows; SQLite: its single writer), finishing an
//! attempt (fenced: only the holder of the current attempt's lease may), retrying dead letters,
//! and collecting finished ones after their retention.
//!
//! At least once: an attempt is counted when it is claimed, and a running invocation whose
//! worker was lost (its lease lapsed) is claimable again, or dead when that was its last
//! attempt. Nothing is ever left `RUNNING` past its lease.

use super::{now, to_db, Backend, MetadataStore, Reader, StoreError};
use crate::model::{
    new_id, Function, Invocation, InvocationRequest, InvocationResult, InvocationStatus,
    RequestSummary, Timestamp,
};
use sqlx::any::AnyRow;
use std::time::Duration;

macro_rules! invocation_columns {
    () => {
        "id, function_id, status, attempts, max_attempts, run_after, request, result, \
         last_error, created_at, updated_at"
    };
}

/// An invocation a worker claimed: what it needs to run it and to report.
#[derive(Clone, Debug)]
pub struct ClaimedInvocation {
    /// Its id.
    pub id: String,
    /// The Function it runs.
    pub function_id: String,
    /// This attempt's number (1 for the first).
    pub attempt: u32,
    /// Attempts before it is dead-lettered.
    pub max_attempts: u32,
    /// The wait before the first retry, in milliseconds.
    pub retry_backoff_ms: u64,
    /// What to run.
    pub request: InvocationRequest,
}

/// How an attempt ended.
#[derive(Clone, Debug)]
pub enum Finish {
    /// With a result.
    Succeeded(InvocationResult),
    /// In failure: queued again at `retry_at`, or dead when that is `None`.
    Failed {
        /// Why.
        reason: String,
        /// What it answered, if it ran.
        result: Option<InvocationResult>,
        /// When to try again.
        retry_at: Option<Timestamp>,
    },
    /// Not run (no instance of the Function was free in time): queued again at `retry_at`,
    /// the attempt not counted.
    Released {
        /// When to try again.
        retry_at: Timestamp,
    },
}

/// What queueing gave.
#[derive(Debug)]
pub enum Enqueued {
    /// Queued.
    Queued(Box<Invocation>),
    /// The Function already has its maximum of unfinished invocations.
    Full,
    /// The Function is gone.
    NoFunction,
}

/// What a retry of a dead letter gave.
#[derive(Debug)]
pub enum Retried {
    /// Queued again, with all its attempts.
    Queued(Box<Invocation>),
    /// No such invocation (for this owner and Function).
    NotFound,
    /// It is not dead: in this status.
    NotDead(InvocationStatus),
}

fn status_of(r: &Reader<'_>, column: &str) -> Result<InvocationStatus, StoreError> {
    let v: String = r.get(column)?;
    v.parse().map_err(|e| r.corrupt(column, e))
}

fn invocation_from_row(row: &AnyRow) -> Result<Invocation, StoreError> {
    let r = Reader::new(row, "invocation", "id")?;
    let status = status_of(&r, "status")?;
    let request: String = r.get("request")?;
    let request: InvocationRequest =
        serde_json::from_str(&request).map_err(|e| r.corrupt("request", e))?;
    let result: Option<String> = r.get("result")?;
    let result = result
        .map(|t| serde_json::from_str::<InvocationResult>(&t))
        .transpose()
        .map_err(|e| r.corrupt("result", e))?;
    Ok(Invocation {
        id: r.id(),
        function_id: r.get("function_id")?,
        status,
        attempts: r.u32("attempts")?,
        max_attempts: r.u32("max_attempts")?,
        next_attempt_at: (status == InvocationStatus::Queued)
            .then(|| r.time("run_after"))
            .transpose()?,
        last_error: r.get("last_error")?,
        request: RequestSummary::from(&request),
        result,
        created_at: r.time("created_at")?,
        updated_at: r.time("updated_at")?,
    })
}

fn to_json<T: serde::Serialize>(what: &str, v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Corrupt {
        what: format!("{what} to store"),
        detail: e.to_string(),
    })
}

impl MetadataStore {
    /// Queues an invocation of `f` (with `f`'s delivery settings), unless `f` already has
    /// `max_unfinished` queued or running ones.
    pub async fn enqueue_invocation(
        &self,
        f: &Function,
        request: &InvocationRequest,
        max_unfinished: u64,
    ) -> Result<Enqueued, StoreError> {
        const OP: &str = "enqueue_invocation";
        let request = to_json("request", request)?;
        let at = now();
        let mut tx = self.begin_write(OP).await?;
        // Counted in the transaction that inserts: on SQLite it holds the write lock; on
        // PostgreSQL two racing requests may both pass at the bound, which only lets the queue
        // exceed it by the number of racing requests.
        let unfinished: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM invocations WHERE function_id = $1 \
             AND status IN ('QUEUED', 'RUNNING')",
        )
        .bind(&f.id)
        .fetch_one(&mut *tx)
        .await
        .map_err(StoreError::query(OP))?;
        if unfinished >= to_db("max_unfinished", max_unfinished)? {
            return Ok(Enqueued::Full);
        }
        // Through the Function, so that one deleted meanwhile gets nothing queued.
        let row = sqlx::query(concat!(
            "INSERT INTO invocations (id, function_id, owner_id, status, attempts, max_attempts, \
             retry_backoff_ms, run_after, request, created_at, updated_at) \
             SELECT $1, id, owner_id, 'QUEUED', 0, $3, $4, $5, $6, $5, $5 \
             FROM functions WHERE id = $2 RETURNING ",
            invocation_columns!()
        ))
        .bind(new_id())
        .bind(&f.id)
        .bind(i64::from(f.max_attempts))
        .bind(to_db("retryBackoffMs", f.retry_backoff_ms)?)
        .bind(at)
        .bind(request)
        .fetch_optional(&mut *tx)
        .await
        .map_err(StoreError::query(OP))?;
        let Some(row) = row else {
            return Ok(Enqueued::NoFunction);
        };
        let invocation = invocation_from_row(&row)?;
        tx.commit().await.map_err(StoreError::query(OP))?;
        Ok(Enqueued::Queued(Box::new(invocation)))
    }

    /// Claims up to `limit` due invocations of the Functions `functions` for `holder`, each
    /// for `lease`: queued ones whose time has come, and running ones whose worker was lost
    /// (lease lapsed, or held by an earlier incarnation of `holder`'s node: holders are named
    /// `NODE/INSTANCE`, as for [`MetadataStore::claim`]). Running ones lost on their last
    /// attempt become dead instead.
    pub async fn claim_invocations(
        &self,
        holder: &str,
        functions: &[&str],
        limit: u32,
        lease: Duration,
    ) -> Result<Vec<ClaimedInvocation>, StoreError> {
        const OP: &str = "claim_invocations";
        if functions.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        let at = now();
        let until = at.saturating_add(i64::try_from(lease.as_millis()).unwrap_or(i64::MAX));
        // Earlier incarnations of this node (`_` and `%` cannot occur in node ids, UUIDs).
        let node_pattern = match holder.split_once('/') {
            Some((node, _)) if !node.contains(['%', '_']) => format!("{node}/%"),
            _ => String::new(),
        };
        let mut tx = self.begin_write(OP).await?;
        sqlx::query(
            "UPDATE invocations SET status = 'DEAD', lease_holder = NULL, lease_until = NULL, \
             updated_at = $1, last_error = 'attempt ' || attempts || ' of ' || max_attempts || \
             ': the worker running it stopped before it ended' \
             WHERE status = 'RUNNING' AND attempts >= max_attempts \
             AND (lease_until < $1 OR (lease_holder LIKE $2 AND lease_holder <> $3))",
        )
        .bind(at)
        .bind(&node_pattern)
        .bind(holder)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::query(OP))?;
        // `$5..` are the Functions' ids.
        let ids: Vec<String> = (0..functions.len())
            .map(|i| format!("${}", i + 5))
            .collect();
        let lock = match self.backend {
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let sql = format!(
            "UPDATE invocations SET status = 'RUNNING', attempts = attempts + 1, \
             lease_holder = $1, lease_until = $2, updated_at = $3, \
             last_error = CASE WHEN status = 'RUNNING' THEN 'attempt ' || attempts || \
             ': the worker running it stopped before it ended' ELSE last_error END \
             WHERE id IN (SELECT id FROM invocations WHERE \
             ((status = 'QUEUED' AND run_after <= $3) OR (status = 'RUNNING' AND \
             (lease_until < $3 OR (lease_holder LIKE $4 AND lease_holder <> $1)))) \
             AND function_id IN ({}) ORDER BY run_after, id LIMIT {}{lock}) \
             RETURNING id, function_id, attempts, max_attempts, retry_backoff_ms, request",
            ids.join(", "),
            limit
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(holder)
            .bind(until)
            .bind(at)
            .bind(&node_pattern);
        for f in functions {
            q = q.bind(*f);
        }
        let rows = q.fetch_all(&mut *tx).await.map_err(StoreError::query(OP))?;
        tx.commit().await.map_err(StoreError::query(OP))?;
        let mut claimed = Vec::with_capacity(rows.len());
        for row in &rows {
            let r = Reader::new(row, "invocation", "id")?;
            let request: String = r.get("request")?;
            claimed.push(ClaimedInvocation {
                id: r.id(),
                function_id: r.get("function_id")?,
                attempt: r.u32("attempts")?,
                max_attempts: r.u32("max_attempts")?,
                retry_backoff_ms: r.u64("retry_backoff_ms")?,
                request: serde_json::from_str(&request).map_err(|e| r.corrupt("request", e))?,
            });
        }
        Ok(claimed)
    }

    /// Records how the claimed attempt ended (or that it did not run); `false` when `holder` no
    /// longer holds it (its lease lapsed and another worker took it over: that one counts).
    pub async fn finish_invocation(
        &self,
        claimed: &ClaimedInvocation,
        holder: &str,
        finish: &Finish,
    ) -> Result<bool, StoreError> {
        const OP: &str = "finish_invocation";
        let at = now();
        let (status, result, last_error, run_after, counted) = match finish {
            Finish::Succeeded(result) => (
                InvocationStatus::Succeeded,
                Some(to_json("result", result)?),
                None,
                None,
                1,
            ),
            Finish::Released { retry_at } => {
                (InvocationStatus::Queued, None, None, Some(retry_at.0), 0)
            }
            Finish::Failed {
                reason,
                result,
                retry_at,
            } => (
                if retry_at.is_some() {
                    InvocationStatus::Queued
                } else {
                    InvocationStatus::Dead
                },
                result.as_ref().map(|r| to_json("result", r)).transpose()?,
                Some(format!(
                    "attempt {} of {}: {reason}",
                    claimed.attempt, claimed.max_attempts
                )),
                retry_at.map(|t| t.0),
                1,
            ),
        };
        let done = sqlx::query(
            "UPDATE invocations SET status = $1, result = COALESCE($2, result), \
             last_error = COALESCE($3, last_error), run_after = COALESCE($4, run_after), \
             lease_holder = NULL, lease_until = NULL, updated_at = $5, \
             attempts = attempts - 1 + $9 \
             WHERE id = $6 AND lease_holder = $7 AND attempts = $8 AND status = 'RUNNING'",
        )
        .bind(status.as_str())
        .bind(result)
        .bind(last_error)
        .bind(run_after)
        .bind(at)
        .bind(&claimed.id)
        .bind(holder)
        .bind(i64::from(claimed.attempt))
        .bind(i64::from(counted))
        .execute(&self.pool)
        .await
        .map_err(StoreError::query(OP))?;
        Ok(done.rows_affected() == 1)
    }

    /// The invocation `id` of the Function `function_id` of `owner`.
    pub async fn invocation(
        &self,
        owner: &str,
        function_id: &str,
        id: &str,
    ) -> Result<Option<Invocation>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            invocation_columns!(),
            " FROM invocations WHERE owner_id = $1 AND function_id = $2 AND id = $3"
        ))
        .bind(owner)
        .bind(function_id)
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(StoreError::query("invocation"))?;
        row.as_ref().map(invocation_from_row).transpose()
    }

    /// The Function's invocations (in `status`, when given), oldest first, after the one with
    /// id `after` (a page's last id continues it), at most `limit`; `None` when the Function
    /// does not exist for `owner`.
    pub async fn invocations(
        &self,
        owner: &str,
        function_id: &str,
        status: Option<InvocationStatus>,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Option<Vec<Invocation>>, StoreError> {
        const OP: &str = "invocations";
        if !self.owns_function(owner, function_id, OP).await? {
            return Ok(None);
        }
        let (after_at, after_id) = match after {
            Some(id) => {
                let at: Option<i64> = sqlx::query_scalar(
                    "SELECT created_at FROM invocations WHERE function_id = $1 AND id = $2",
                )
                .bind(function_id)
                .bind(id)
                .fetch_optional(&self.pool)
                .await
                .map_err(StoreError::query(OP))?;
                (at.unwrap_or(i64::MIN), id.to_string())
            }
            None => (i64::MIN, String::new()),
        };
        let rows = sqlx::query(concat!(
            "SELECT ",
            invocation_columns!(),
            " FROM invocations WHERE function_id = $1 AND ($2 = '' OR status = $2) \
             AND (created_at > $3 OR (created_at = $3 AND id > $4)) \
             ORDER BY created_at, id LIMIT $5"
        ))
        .bind(function_id)
        .bind(status.map_or("", InvocationStatus::as_str))
        .bind(after_at)
        .bind(after_id)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query(OP))?;
        rows.iter()
            .map(invocation_from_row)
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    /// Queues a dead letter again, with all its attempts.
    pub async fn retry_invocation(
        &self,
        owner: &str,
        function_id: &str,
        id: &str,
    ) -> Result<Retried, StoreError> {
        let at = now();
        let row = sqlx::query(concat!(
            "UPDATE invocations SET status = 'QUEUED', attempts = 0, run_after = $1, \
             updated_at = $1, lease_holder = NULL, lease_until = NULL \
             WHERE owner_id = $2 AND function_id = $3 AND id = $4 AND status = 'DEAD' \
             RETURNING ",
            invocation_columns!()
        ))
        .bind(at)
        .bind(owner)
        .bind(function_id)
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(StoreError::query("retry_invocation"))?;
        if let Some(row) = row {
            return Ok(Retried::Queued(Box::new(invocation_from_row(&row)?)));
        }
        Ok(match self.invocation(owner, function_id, id).await? {
            Some(i) => Retried::NotDead(i.status),
            None => Retried::NotFound,
        })
    }

    /// Removes the invocations that finished (succeeded or dead) before `before`; how many.
    pub async fn collect_invocations(&self, before: Timestamp) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "DELETE FROM invocations WHERE status IN ('SUCCEEDED', 'DEAD') AND updated_at < $1",
        )
        .bind(before.0)
        .execute(&self.pool)
        .await
        .map_err(StoreError::query("collect_invocations"))?;
        Ok(done.rows_affected())
    }
}
