//! Fleet membership in the metadata store, and the roles one process of the fleet plays at a
//! time (the scheduler): each worker upserts its row with what it reports
//! and a new lease end, every few seconds ([`MetadataStore::renew_worker`]); readers list the
//! fleet with each worker's liveness decided by its lease; a worker that stops cleanly
//! removes its row, and rows of workers dead for long are collected. Leases are compared with
//! this process's clock, as every lease in the store is: the fleet's clocks must agree to well
//! within a lease (NTP does).

use super::{lease_end, now, to_db, MetadataStore, Reader, StoreError};
use crate::model::{FleetWorker, Timestamp, WorkerReport};
use sqlx::any::AnyRow;
use std::time::Duration;

macro_rules! worker_columns {
    () => {
        "id, url, started_at, version, cores, slots, memory_bytes, in_flight, slots_in_use, \
         resident_bytes, deployments, renewed_at, lease_until, function_load"
    };
}

fn worker_from_row(row: &AnyRow, at: i64) -> Result<FleetWorker, StoreError> {
    let r = Reader::new(row, "worker", "id")?;
    let lease_until = r.time("lease_until")?;
    let load: String = r.get("function_load")?;
    let functions = serde_json::from_str(&load).map_err(|e| r.corrupt("function_load", e))?;
    Ok(FleetWorker {
        report: WorkerReport {
            id: r.id(),
            url: r.get("url")?,
            started_at: r.time("started_at")?,
            version: r.get("version")?,
            cores: r.u64("cores")?,
            slots: r.u64("slots")?,
            memory_bytes: r.u64("memory_bytes")?,
            in_flight: r.u64("in_flight")?,
            slots_in_use: r.u64("slots_in_use")?,
            resident_bytes: r.u64("resident_bytes")?,
            deployments: r.u64("deployments")?,
            functions,
        },
        renewed_at: r.time("renewed_at")?,
        lease_until,
        live: lease_until.0 > at,
    })
}

impl MetadataStore {
    /// Registers the worker `report.id`, or renews its lease, with what it reports: its lease
    /// then runs for `lease` from now.
    pub async fn renew_worker(
        &self,
        report: &WorkerReport,
        lease: Duration,
    ) -> Result<(), StoreError> {
        let at = now();
        sqlx::query(concat!(
            "INSERT INTO workers (",
            worker_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) \
             ON CONFLICT (id) DO UPDATE SET url = excluded.url, \
             started_at = excluded.started_at, version = excluded.version, \
             cores = excluded.cores, slots = excluded.slots, \
             memory_bytes = excluded.memory_bytes, in_flight = excluded.in_flight, \
             slots_in_use = excluded.slots_in_use, resident_bytes = excluded.resident_bytes, \
             deployments = excluded.deployments, renewed_at = excluded.renewed_at, \
             lease_until = excluded.lease_until, function_load = excluded.function_load"
        ))
        .bind(&report.id)
        .bind(&report.url)
        .bind(report.started_at.0)
        .bind(&report.version)
        .bind(to_db("cores", report.cores)?)
        .bind(to_db("slots", report.slots)?)
        .bind(to_db("memory_bytes", report.memory_bytes)?)
        .bind(to_db("in_flight", report.in_flight)?)
        .bind(to_db("slots_in_use", report.slots_in_use)?)
        .bind(to_db("resident_bytes", report.resident_bytes)?)
        .bind(to_db("deployments", report.deployments)?)
        .bind(at)
        .bind(lease_end(lease))
        .bind(serde_json::to_string(&report.functions).unwrap_or_else(|_| "[]".into()))
        .execute(&self.pool)
        .await
        .map_err(StoreError::query("renewing a worker's lease"))?;
        Ok(())
    }

    /// Every registered worker, live ones first, each group by id.
    pub async fn list_workers(&self) -> Result<Vec<FleetWorker>, StoreError> {
        let at = now();
        let rows = sqlx::query(concat!(
            "SELECT ",
            worker_columns!(),
            " FROM workers ORDER BY id"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query("listing workers"))?;
        let mut workers = rows
            .iter()
            .map(|r| worker_from_row(r, at))
            .collect::<Result<Vec<_>, _>>()?;
        workers.sort_by_key(|w| !w.live);
        Ok(workers)
    }

    /// Removes the worker `id` (it is stopping); whether it was registered.
    pub async fn remove_worker(&self, id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM workers WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(StoreError::query("removing a worker"))?;
        Ok(done.rows_affected() > 0)
    }

    /// Removes workers whose lease ended more than `dead_for` ago; how many.
    pub async fn collect_dead_workers(&self, dead_for: Duration) -> Result<u64, StoreError> {
        let before = Timestamp::now()
            .0
            .saturating_sub(i64::try_from(dead_for.as_millis()).unwrap_or(i64::MAX));
        let done = sqlx::query("DELETE FROM workers WHERE lease_until < $1")
            .bind(before)
            .execute(&self.pool)
            .await
            .map_err(StoreError::query("collecting dead workers"))?;
        Ok(done.rows_affected())
    }
}

/// A role held by one process at a time, as the store last recorded it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SingletonLease {
    /// The role.
    pub name: String,
    /// Who holds (or last held) it.
    pub holder: String,
    /// Grows by one each time the role changes hands.
    pub term: u64,
    /// When the current holder took it.
    pub acquired_at: Timestamp,
    /// When the lease ends unless renewed.
    pub lease_until: Timestamp,
}

impl MetadataStore {
    /// Takes or renews the role `name` for `holder` for `lease` from now: granted if nobody
    /// holds it, `holder` already does, the holder's lease has lapsed, or the holder is an
    /// earlier incarnation of the same node (holders are `node/incarnation`: a restarted
    /// process takes its role back at once instead of waiting for its old lease). Returns the
    /// term (unchanged on a renewal, one more on a change of hands), or `None` if another
    /// holder's lease still runs. One statement, so two contenders on any number of machines
    /// never both win.
    pub async fn acquire_singleton(
        &self,
        name: &str,
        holder: &str,
        lease: Duration,
    ) -> Result<Option<u64>, StoreError> {
        let at = now();
        // Earlier incarnations of this node (`_` and `%` cannot occur in node ids, UUIDs); an
        // empty pattern matches nothing else than an empty holder, which never exists.
        let node_pattern = match holder.split_once('/') {
            Some((node, _)) if !node.is_empty() && !node.contains(['%', '_']) => {
                format!("{node}/%")
            }
            _ => String::new(),
        };
        let term: Option<i64> = sqlx::query_scalar(
            "INSERT INTO singleton_leases (name, holder, term, acquired_at, lease_until) \
             VALUES ($1, $2, 1, $3, $4) \
             ON CONFLICT (name) DO UPDATE SET \
             term = CASE WHEN singleton_leases.holder = excluded.holder \
                    THEN singleton_leases.term ELSE singleton_leases.term + 1 END, \
             acquired_at = CASE WHEN singleton_leases.holder = excluded.holder \
                    THEN singleton_leases.acquired_at ELSE excluded.acquired_at END, \
             holder = excluded.holder, lease_until = excluded.lease_until \
             WHERE singleton_leases.holder = excluded.holder \
                OR singleton_leases.lease_until < excluded.acquired_at \
                OR singleton_leases.holder LIKE $5 \
             RETURNING term",
        )
        .bind(name)
        .bind(holder)
        .bind(at)
        .bind(lease_end(lease))
        .bind(&node_pattern)
        .fetch_optional(&self.pool)
        .await
        .map_err(StoreError::query("acquiring a singleton role"))?;
        term.map(|t| {
            u64::try_from(t).map_err(|_| StoreError::Corrupt {
                what: format!("singleton lease {name} term"),
                detail: format!("negative: {t}"),
            })
        })
        .transpose()
    }

    /// Gives up the role `name` if `holder` has it (a clean stop), so another takes it at once.
    pub async fn release_singleton(&self, name: &str, holder: &str) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE singleton_leases SET lease_until = 0 WHERE name = $1 AND holder = $2",
        )
        .bind(name)
        .bind(holder)
        .execute(&self.pool)
        .await
        .map_err(StoreError::query("releasing a singleton role"))?;
        Ok(done.rows_affected() > 0)
    }

    /// The role `name` as last recorded, if anybody ever held it.
    pub async fn singleton(&self, name: &str) -> Result<Option<SingletonLease>, StoreError> {
        let row = sqlx::query(
            "SELECT name, holder, term, acquired_at, lease_until FROM singleton_leases \
             WHERE name = $1",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await
        .map_err(StoreError::query("reading a singleton role"))?;
        row.map(|row| {
            let r = Reader::new(&row, "singleton lease", "name")?;
            Ok(SingletonLease {
                name: r.id(),
                holder: r.get("holder")?,
                term: r.u64("term")?,
                acquired_at: r.time("acquired_at")?,
                lease_until: r.time("lease_until")?,
            })
        })
        .transpose()
    }
}
