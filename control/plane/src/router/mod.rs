//! The router role (`fnvm serve --role router`): a placement-aware HTTP front for the fleet's
//! workers. It keeps a routing table from the metadata store (the placements and the live
//! workers, refreshed on every change the store signals, or every `poll`), and sends each
//! request for `/{functionId}/...` to the least loaded worker holding that function
//! ([`proxy`]); a function held nowhere (scaled to zero, or just deployed), or whose holders
//! refuse connections (a worker just died), goes to the least loaded other live worker,
//! which loads it on demand. A request is tried on another worker only
//! when the connection to the first was refused: once a request has been sent, a worker may
//! have started it, and it is never sent again. Routers hold no state of their own beyond the
//! table, so any number can run behind a load balancer.

pub mod proxy;

use crate::model::{FleetWorker, Placement, PlacementReason};
use crate::store::MetadataStore;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// A worker as the router sees it.
#[derive(Debug)]
pub struct Backend {
    /// Its node id.
    pub id: String,
    /// Where it serves functions.
    pub url: String,
    /// Its cores (load is counted per core).
    pub cores: u64,
    /// Invocations it reported running with its last lease renewal.
    pub reported_in_flight: u64,
    /// Its lease lapsed (lately: it may be dead, or the database was away): tried last.
    pub lapsed: bool,
    /// Requests this router has in flight to it now (one counter per worker, carried from
    /// table to table, so requests sent under an older table count it down).
    pub in_flight: Arc<AtomicU64>,
    /// When a request to it last failed (ms since the epoch, 0: never), carried like
    /// `in_flight`: a worker that just failed is tried last for a while (it is probably
    /// dead, and the store says so only once its lease lapses).
    pub failed_at: Arc<AtomicU64>,
}

/// How long a worker whose lease lapsed stays in the table (tried last).
pub const LAPSED_GRACE_MS: i64 = 30_000;

/// How long a worker that failed a request is tried last.
const SUSPECT_FOR_MS: u64 = 3000;

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Backend {
    /// Records a failed request (a refused connection, or one that broke).
    pub fn failed(&self) {
        self.failed_at.store(now_ms(), Ordering::Relaxed);
    }

    /// Whether a request to it failed lately.
    fn suspect(&self, now: u64) -> bool {
        self.lapsed || now.saturating_sub(self.failed_at.load(Ordering::Relaxed)) < SUSPECT_FOR_MS
    }

    /// How loaded the worker looks: what it reported plus what this router sends it now, per
    /// core.
    fn load(&self) -> f64 {
        (self.reported_in_flight + self.in_flight.load(Ordering::Relaxed)) as f64
            / self.cores.max(1) as f64
    }
}

/// What the router knows of the fleet.
#[derive(Debug, Default)]
pub struct Table {
    /// Live workers by id.
    backends: HashMap<String, Arc<Backend>>,
    /// The workers holding each function (with a share of its instances).
    replicas: HashMap<String, Vec<String>>,
}

impl Table {
    /// A table of the live `workers` and their `placements`; the in-flight counts of workers
    /// in `previous` carry over. Workers of `previous` whose lease lapsed less than
    /// [`LAPSED_GRACE_MS`] ago are kept, to be tried last: after the database was away, every
    /// lease has lapsed until the workers renew, which can take their database pools a while
    /// (a dead worker refuses the connection, and the next one is tried).
    pub fn new(workers: &[FleetWorker], placements: &[Placement], previous: &Table) -> Table {
        let now = now_ms() as i64;
        let recent = |w: &FleetWorker| {
            w.live
                || (previous.backends.contains_key(&w.report.id)
                    && w.lease_until.0 + LAPSED_GRACE_MS > now)
        };
        let backends: HashMap<String, Arc<Backend>> = workers
            .iter()
            .filter(|w| recent(w))
            .map(|w| {
                let before = previous.backends.get(&w.report.id);
                let in_flight = before.map_or_else(Arc::default, |b| b.in_flight.clone());
                let failed_at = before.map_or_else(Arc::default, |b| b.failed_at.clone());
                let b = Backend {
                    id: w.report.id.clone(),
                    url: w.report.url.trim_end_matches('/').to_string(),
                    cores: w.report.cores,
                    reported_in_flight: w.report.in_flight,
                    lapsed: !w.live,
                    in_flight,
                    failed_at,
                };
                (w.report.id.clone(), Arc::new(b))
            })
            .collect();
        let mut replicas: HashMap<String, Vec<String>> = HashMap::new();
        for p in placements {
            let serving = p.reason != PlacementReason::Leaving && p.max_instances > 0;
            if serving && backends.contains_key(&p.worker_id) {
                replicas
                    .entry(p.function_id.clone())
                    .or_default()
                    .push(p.worker_id.clone());
            }
        }
        Table { backends, replicas }
    }

    /// The workers to try for `function_id`, best first: those holding it, least loaded
    /// first, then every other live worker, least loaded first (one that does not hold the
    /// function loads it on demand: a function held nowhere, or whose holders are gone, is
    /// still served); in each group, those that failed a request lately last.
    pub fn candidates(&self, function_id: &str) -> Vec<Arc<Backend>> {
        let now = now_ms();
        let by_load = |v: &mut Vec<Arc<Backend>>| {
            v.sort_by(|a, b| {
                (a.suspect(now), a.load())
                    .partial_cmp(&(b.suspect(now), b.load()))
                    .unwrap_or(std::cmp::Ordering::Equal)
                    .then(a.id.cmp(&b.id))
            })
        };
        let holders = self.replicas.get(function_id);
        let holds = |id: &str| holders.is_some_and(|h| h.iter().any(|w| w == id));
        let (mut first, mut rest): (Vec<_>, Vec<_>) =
            self.backends.values().cloned().partition(|b| holds(&b.id));
        by_load(&mut first);
        by_load(&mut rest);
        first.extend(rest);
        first
    }

    /// Live workers known (not counting those whose lease lapsed lately).
    pub fn workers(&self) -> usize {
        self.backends.values().filter(|b| !b.lapsed).count()
    }
}

/// The routing table, shared by the proxy and the task keeping it current.
pub type SharedTable = Arc<RwLock<Arc<Table>>>;

/// Keeps `table` in step with the store until dropped.
pub async fn run(store: MetadataStore, table: SharedTable, poll: Duration) {
    let mut changes = store.changes().await;
    loop {
        match (store.list_workers().await, store.list_placements().await) {
            (Ok(workers), Ok(placements)) => {
                let previous = table.read().unwrap_or_else(|e| e.into_inner()).clone();
                let next = Arc::new(Table::new(&workers, &placements, &previous));
                *table.write().unwrap_or_else(|e| e.into_inner()) = next;
            }
            // Keep routing with what it knows.
            (Err(e), _) | (_, Err(e)) => tracing::warn!(error = %e, "router: reading the fleet"),
        }
        match changes.as_mut() {
            Some(c) => {
                // Worker loads change without a notification: refresh at least every `poll * 5`.
                if let Err(e) = c.wait(poll * 5).await {
                    tracing::warn!(error = %e, "router: change notifications lost; polling");
                    changes = None;
                }
            }
            None => tokio::time::sleep(poll).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Timestamp;

    fn worker(id: &str, in_flight: u64, live: bool) -> FleetWorker {
        let mut w = FleetWorker::for_tests(id);
        w.report.url = format!("http://{id}/");
        w.report.in_flight = in_flight;
        w.live = live;
        w
    }

    fn placed(f: &str, w: &str, share: u32, reason: PlacementReason) -> Placement {
        Placement {
            function_id: f.into(),
            worker_id: w.into(),
            deployment_id: "d".into(),
            max_instances: share,
            reason,
            placed_at: Timestamp(0),
            generation: 1,
            held_max_instances: share,
            loaded_deployment_id: None,
            applied_max_instances: 0,
            acked_generation: 0,
        }
    }

    #[test]
    fn holders_least_loaded_first_else_any_live_worker() {
        let workers = [
            worker("a", 4, true),
            worker("b", 1, true),
            worker("c", 0, true),
            worker("dead", 0, false),
        ];
        let placements = [
            placed("f", "a", 2, PlacementReason::Placed),
            placed("f", "b", 2, PlacementReason::Placed),
            placed("f", "c", 0, PlacementReason::Leaving),
            placed("f", "dead", 2, PlacementReason::Placed),
        ];
        let t = Table::new(&workers, &placements, &Table::default());
        let ids = |v: Vec<Arc<Backend>>| v.iter().map(|b| b.id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(t.candidates("f")), ["b", "a", "c"]);
        assert_eq!(t.candidates("f")[0].url, "http://b");
        // Requests this router has in flight count too.
        t.backends["b"].in_flight.store(4, Ordering::Relaxed);
        assert_eq!(ids(t.candidates("f")), ["a", "b", "c"]);
        // Held nowhere: every live worker.
        assert_eq!(ids(t.candidates("g")), ["c", "a", "b"]);
        // A worker that failed lately goes last in its group.
        t.backends["a"].failed();
        assert_eq!(ids(t.candidates("f")), ["b", "a", "c"]);
        t.backends["b"].failed();
        assert_eq!(ids(t.candidates("f")), ["a", "b", "c"]);
        t.backends["a"].failed_at.store(0, Ordering::Relaxed);
        t.backends["b"].failed_at.store(0, Ordering::Relaxed);
        // A new table shares the in-flight counts.
        let t2 = Table::new(&workers, &placements, &t);
        t.backends["b"].in_flight.fetch_sub(1, Ordering::Relaxed);
        assert_eq!(t2.backends["b"].in_flight.load(Ordering::Relaxed), 3);
        assert_eq!(t2.workers(), 3);
    }
}
