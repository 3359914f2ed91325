//! Autoscaling: how many replicas each function should have, from the demand the workers
//! report with their leases ([`FunctionLoad`](crate::model::FunctionLoad): counters of
//! instances granted and refused and the time-integral of instances running).
//!
//! Between two reports of a worker, the integral's growth over the interval is the function's
//! mean concurrency there; summed over the workers, its concurrency across the fleet. A replica
//! is worth `target_per_core` concurrent instances per core of its worker (guests are CPU
//! bound), so the function wants `ceil(concurrency / (target_per_core x cores))` replicas, one
//! more while requests are being refused, never more than its `maxInstances` nor the live
//! workers. More replicas are placed at once; fewer only after demand has stayed below the
//! current count for `scale_in_after` (no flapping); none once nothing has asked for the
//! function for `idle_to_zero` (it stays deployed: the next request loads it on a worker). A
//! function whose newest deployment is still `DEPLOYING` keeps a replica to load it, and one
//! with an event trigger or async invocations waiting keeps one to run them. The state
//! here lives in the scheduler's process only: a new scheduler starts from the replicas in
//! place and scales in only after watching for `scale_in_after` itself.

use crate::model::FleetWorker;
use std::collections::HashMap;
use std::time::Duration;

/// The autoscaler's settings.
#[derive(Clone, Debug)]
pub struct ScaleConfig {
    /// Mean concurrent instances per core of a worker that one replica aims at.
    pub target_per_core: f64,
    /// How long demand must stay below the replicas in place before they are reduced.
    pub scale_in_after: Duration,
    /// How long a function may go without a request before it has no replica; `None`: never.
    pub idle_to_zero: Option<Duration>,
}

impl Default for ScaleConfig {
    fn default() -> Self {
        ScaleConfig {
            target_per_core: 0.7,
            scale_in_after: Duration::from_secs(30),
            idle_to_zero: Some(Duration::from_secs(15 * 60)),
        }
    }
}

/// One worker's counters for one function, as last seen.
#[derive(Clone, Copy, Debug)]
struct Sample {
    /// When the worker reported them (its lease renewal), ms since the epoch.
    at: i64,
    busy_us: u64,
    refused: u64,
    /// Mean concurrency since the sample before, and whether any request was refused then.
    concurrency: f64,
    refusing: bool,
}

/// What a function looks like to the autoscaler in one pass.
#[derive(Clone, Copy, Debug)]
pub struct FunctionView {
    /// Replicas in place (placements not leaving).
    pub current: u32,
    /// Its `maxInstances`.
    pub max_instances: u32,
    /// Whether it needs a replica whatever its requests: its newest deployment is
    /// `DEPLOYING` (a replica loads it), or it has an event trigger or async invocations.
    pub keep_one: bool,
    /// The newest of its placements' and its newest deployment's creation, ms since the epoch:
    /// a function is never idle for longer than since then.
    pub since: i64,
}

/// A decision to change a function's replicas, for the log.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    /// From how many.
    pub from: u32,
    /// To how many.
    pub to: u32,
    /// Its concurrency across the fleet.
    pub concurrency: f64,
    /// Why.
    pub reason: &'static str,
}

/// The autoscaler's memory.
#[derive(Debug, Default)]
pub struct Autoscaler {
    config: ScaleConfig,
    samples: HashMap<(String, String), Sample>,
    /// When each function's demand first fell below its replicas (reset when it rises).
    below_since: HashMap<String, i64>,
    /// When each function last got an instance anywhere, ms since the epoch.
    last_request: HashMap<String, i64>,
}

impl Autoscaler {
    /// An autoscaler with `config`.
    pub fn new(config: ScaleConfig) -> Autoscaler {
        Autoscaler {
            config,
            ..Autoscaler::default()
        }
    }

    /// Takes in the live workers' latest reports.
    pub fn observe(&mut self, workers: &[FleetWorker]) {
        let mut seen = HashMap::new();
        for w in workers.iter().filter(|w| w.live) {
            let at = w.renewed_at.0;
            for f in &w.report.functions {
                let key = (w.report.id.clone(), f.function_id.clone());
                let prev = self.samples.get(&key).copied();
                let sample = match prev {
                    // The same report again: nothing new.
                    Some(p) if p.at == at => p,
                    // Counters that went back belong to a restarted worker: start over.
                    Some(p) if at > p.at && f.busy_us >= p.busy_us && f.refused >= p.refused => {
                        let secs = (at - p.at) as f64 / 1000.0;
                        Sample {
                            at,
                            busy_us: f.busy_us,
                            refused: f.refused,
                            concurrency: (f.busy_us - p.busy_us) as f64 / 1e6 / secs,
                            refusing: f.refused > p.refused,
                        }
                    }
                    _ => Sample {
                        at,
                        busy_us: f.busy_us,
                        refused: f.refused,
                        concurrency: 0.0,
                        refusing: false,
                    },
                };
                seen.insert(key, sample);
                if let Some(t) = f.last_request_at {
                    let last = self.last_request.entry(f.function_id.clone()).or_default();
                    *last = (*last).max(t.0);
                }
            }
        }
        // Dead workers' and dropped functions' samples go.
        self.samples = seen;
    }

    /// The replicas function `id` should have at `now` (ms since the epoch), given `live`
    /// workers with `cores` each on average; and the decision, if it changes them.
    pub fn replicas(
        &mut self,
        id: &str,
        f: FunctionView,
        live: usize,
        cores: f64,
        now: i64,
    ) -> (u32, Option<Decision>) {
        let (concurrency, refusing) = self
            .samples
            .iter()
            .filter(|((_, fid), _)| fid == id)
            .fold((0.0, false), |(c, r), (_, s)| {
                (c + s.concurrency, r || s.refusing)
            });
        let per_replica = (self.config.target_per_core * cores.max(1.0)).max(0.5);
        let mut want = (concurrency / per_replica).ceil() as u32;
        if refusing {
            want = want.max(f.current + 1);
        }
        let cap = f.max_instances.max(1).min(live as u32);
        let want = want.max(1).min(cap);
        let decide = |to: u32, reason: &'static str| {
            (to != f.current).then_some(Decision {
                from: f.current,
                to,
                concurrency,
                reason,
            })
        };
        let idle_since = self.last_request.get(id).copied().unwrap_or(0).max(f.since);
        let idle_for = Duration::from_millis(now.saturating_sub(idle_since).max(0) as u64);
        if !f.keep_one && self.config.idle_to_zero.is_some_and(|d| idle_for >= d) {
            self.below_since.remove(id);
            return (0, decide(0, "idle"));
        }
        let floor = u32::from(f.keep_one);
        if want >= f.current {
            self.below_since.remove(id);
            let to = want.max(floor);
            return (to, decide(to, "demand"));
        }
        let since = *self.below_since.entry(id.to_string()).or_insert(now);
        if now - since >= self.config.scale_in_after.as_millis() as i64 {
            self.below_since.remove(id);
            let to = want.max(floor);
            return (to, decide(to, "demand fell"));
        }
        (f.current.max(floor), None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{FunctionLoad, Timestamp};

    fn worker(id: &str, at: i64, loads: &[(&str, u64, u64)]) -> FleetWorker {
        let mut w = FleetWorker::for_tests(id);
        w.report.functions = loads
            .iter()
            .map(|(f, busy_us, refused)| FunctionLoad {
                function_id: f.to_string(),
                share: 4,
                granted: 1,
                refused: *refused,
                busy_us: *busy_us,
                last_request_at: Some(Timestamp(at)),
            })
            .collect();
        w.renewed_at = Timestamp(at);
        w.lease_until = Timestamp(at + 6000);
        w
    }

    fn view(current: u32) -> FunctionView {
        FunctionView {
            current,
            max_instances: 8,
            keep_one: false,
            since: 0,
        }
    }

    fn config() -> ScaleConfig {
        ScaleConfig {
            target_per_core: 0.5,
            scale_in_after: Duration::from_secs(10),
            idle_to_zero: Some(Duration::from_secs(60)),
        }
    }

    #[test]
    fn concurrency_from_two_reports_scales_out_at_once_and_in_after_a_while() {
        let mut a = Autoscaler::new(config());
        // First reports: no rate yet.
        a.observe(&[worker("w1", 1000, &[("f", 0, 0)]), worker("w2", 1000, &[])]);
        assert_eq!(a.replicas("f", view(1), 3, 2.0, 1000), (1, None));
        // 2 s later: 5 instance-seconds on w1, 1 on w2 => concurrency 3; 1 per replica.
        a.observe(&[
            worker("w1", 3000, &[("f", 5_000_000, 0)]),
            worker("w2", 3000, &[("f", 1_000_000, 0)]),
        ]);
        let (n, d) = a.replicas("f", view(1), 3, 2.0, 3000);
        assert_eq!(n, 3);
        assert_eq!(d.unwrap().reason, "demand");
        // Capped by maxInstances and by live workers.
        let capped = FunctionView {
            max_instances: 2,
            ..view(1)
        };
        assert_eq!(a.replicas("f", capped, 3, 2.0, 3000).0, 2);
        assert_eq!(a.replicas("f", view(1), 1, 2.0, 3000).0, 1);
        // Demand drops to 0.5: stays at 3 for 10 s, then 1.
        a.observe(&[
            worker("w1", 5000, &[("f", 6_000_000, 0)]),
            worker("w2", 5000, &[("f", 1_000_000, 0)]),
        ]);
        assert_eq!(a.replicas("f", view(3), 3, 2.0, 5000), (3, None));
        assert_eq!(a.replicas("f", view(3), 3, 2.0, 14_000), (3, None));
        let (n, d) = a.replicas("f", view(3), 3, 2.0, 15_000);
        assert_eq!((n, d.unwrap().reason), (1, "demand fell"));
    }

    #[test]
    fn refusals_add_a_replica_and_idleness_removes_all() {
        let mut a = Autoscaler::new(config());
        a.observe(&[worker("w1", 1000, &[("f", 0, 0)])]);
        a.observe(&[worker("w1", 2000, &[("f", 100_000, 3)])]);
        assert_eq!(a.replicas("f", view(1), 3, 2.0, 2000).0, 2);
        // No more refusals nor load; the last request at 4 s: idle for 60 s at 64 s.
        a.observe(&[worker("w1", 4000, &[("f", 100_000, 3)])]);
        assert_eq!(a.replicas("f", view(2), 3, 2.0, 63_000), (2, None));
        let (n, d) = a.replicas("f", view(2), 3, 2.0, 64_000);
        assert_eq!((n, d.unwrap().reason), (0, "idle"));
        // A newer placement (a request arrived on a worker) counts as activity.
        let demanded = FunctionView {
            since: 70_000,
            ..view(1)
        };
        assert_eq!(a.replicas("f", demanded, 3, 2.0, 71_000).0, 1);
        // Deploying: one replica, whatever the idleness.
        let deploying = FunctionView {
            keep_one: true,
            ..view(0)
        };
        assert_eq!(a.replicas("f", deploying, 3, 2.0, 500_000).0, 1);
    }

    #[test]
    fn a_restarted_worker_or_the_same_report_again_adds_no_demand() {
        let mut a = Autoscaler::new(config());
        a.observe(&[worker("w1", 1000, &[("f", 9_000_000, 0)])]);
        a.observe(&[worker("w1", 1000, &[("f", 9_000_000, 0)])]);
        a.observe(&[worker("w1", 2000, &[("f", 10, 0)])]);
        assert_eq!(a.replicas("f", view(1), 3, 2.0, 2000).0, 1);
    }
}
