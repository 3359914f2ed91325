//! Counters and histograms for `/metrics`, in the Prometheus text format: requests by function
//! and status, event deliveries by function, source and outcome, latency histograms
//! (instantiate, run, total) per function, instances in use per function, pool slots,
//! artifact-cache hits, compile durations. Recording is lock-free on the request path (atomics
//! in a per-function record found under a read lock); rendering takes the locks briefly.

use fnvm_runtime::BackendStats;
use std::collections::HashMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// Upper bounds of the latency buckets, in microseconds.
const BUCKETS_US: [u64; 18] = [
    10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000,
    500_000, 1_000_000, 5_000_000, 30_000_000,
];

/// A latency histogram.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS_US.len()],
    count: AtomicU64,
    sum_ns: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        if let Some(i) = BUCKETS_US.iter().position(|b| us <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(
            u64::try_from(d.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        for (i, b) in BUCKETS_US.iter().enumerate() {
            cumulative += self.buckets[i].load(Ordering::Relaxed);
            let le = *b as f64 / 1e6;
            let _ = writeln!(out, "{name}_bucket{{{labels}le=\"{le}\"}} {cumulative}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}le=\"+Inf\"}} {count}");
        let sum = self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
        let labels = labels.trim_end_matches(',');
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {sum}");
        let _ = writeln!(out, "{name}_count{braces} {count}");
    }
}

/// Statuses counted one by one; any other lands in `other`.
const STATUSES: [u16; 11] = [200, 400, 404, 405, 408, 413, 431, 500, 502, 503, 504];

/// Where an event came from (`fnvm_deliveries_total`'s `source`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventSource {
    /// `POST /{functionId}?async`.
    Async,
    /// A Pulsar trigger.
    Pulsar,
}

/// How a delivery attempt ended (`fnvm_deliveries_total`'s `outcome`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// The function consumed it.
    Succeeded,
    /// It failed and will be tried again.
    Retried,
    /// It failed for the last time: dead-lettered.
    Dead,
    /// Not run here (no instance or deployment): handed back, the attempt not counted.
    Released,
}

/// The `source` labels, in the order of [`EventSource`]'s variants.
const SOURCES: [&str; 2] = ["async", "pulsar"];
/// The `outcome` labels, in the order of [`DeliveryOutcome`]'s variants.
const OUTCOMES: [&str; 4] = ["succeeded", "retried", "dead", "released"];
// A label for every variant: the counters are indexed by the variants.
const _: () = assert!(EventSource::Pulsar as usize + 1 == SOURCES.len());
const _: () = assert!(DeliveryOutcome::Released as usize + 1 == OUTCOMES.len());

/// What is recorded per function.
#[derive(Debug, Default)]
pub struct FunctionMetrics {
    statuses: [AtomicU64; STATUSES.len() + 1],
    /// Event deliveries by source and outcome (`SOURCES` x `OUTCOMES`).
    deliveries: [AtomicU64; SOURCES.len() * OUTCOMES.len()],
    /// From the invocation's start to the guest's entry.
    pub instantiate: Histogram,
    /// The guest's run.
    pub run: Histogram,
    /// From the request's arrival to the response.
    pub total: Histogram,
    /// Instances running now.
    in_use: AtomicU64,
    /// The instances this worker may run at once (its share of `maxInstances`).
    share: AtomicU64,
}

impl FunctionMetrics {
    /// Counts a response.
    pub fn status(&self, status: u16) {
        let i = STATUSES
            .iter()
            .position(|s| *s == status)
            .unwrap_or(STATUSES.len());
        self.statuses[i].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts an event delivery attempt's end.
    pub fn delivery(&self, source: EventSource, outcome: DeliveryOutcome) {
        self.deliveries[source as usize * OUTCOMES.len() + outcome as usize]
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Records this worker's share of the function's instances.
    pub fn set_share(&self, share: u32) {
        self.share.store(u64::from(share), Ordering::Relaxed);
    }

    /// An instance starts running (the guard ends it).
    pub fn instance(self: &Arc<Self>) -> InUse {
        self.in_use.fetch_add(1, Ordering::Relaxed);
        InUse(self.clone())
    }
}

/// An instance in use; dropping it counts it out.
#[derive(Debug)]
pub struct InUse(Arc<FunctionMetrics>);

impl Drop for InUse {
    fn drop(&mut self) {
        self.0.in_use.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Every metric of a process.
#[derive(Debug, Default)]
pub struct Metrics {
    functions: RwLock<HashMap<String, Arc<FunctionMetrics>>>,
    cache_hits: AtomicU64,
    cache_misses: AtomicU64,
    jobs_inline: AtomicU64,
    jobs_queued: AtomicU64,
    /// Compilations by the packager.
    pub compile: Histogram,
    /// Server-side builds of sources by the packager.
    pub build: Histogram,
    /// Cold starts: requests that waited for their function to be loaded or given a share here.
    pub cold_start: Histogram,
    pool: RwLock<Option<BackendStatsSource>>,
    /// The KVM backend's VMs, once a worker has made it.
    vm_pool: RwLock<Option<BackendStatsSource>>,
    /// The scheduler's replicas per function (in the process holding the role).
    replicas: RwLock<Vec<(String, u32)>>,
}

/// Where an execution backend's figures come from (the in-process pool's, the KVM backend's).
#[derive(Clone)]
struct BackendStatsSource(Arc<dyn Fn() -> BackendStats + Send + Sync>);

impl std::fmt::Debug for BackendStatsSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BackendStatsSource")
    }
}

impl Metrics {
    /// The record of `function_id`.
    pub fn function(&self, function_id: &str) -> Arc<FunctionMetrics> {
        if let Some(m) = self
            .functions
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(function_id)
        {
            return m.clone();
        }
        let mut all = self.functions.write().unwrap_or_else(|e| e.into_inner());
        all.entry(function_id.to_string()).or_default().clone()
    }

    /// Forgets functions no longer served (their series end).
    pub fn retain_functions(&self, keep: impl Fn(&str) -> bool) {
        let mut all = self.functions.write().unwrap_or_else(|e| e.into_inner());
        all.retain(|id, m| keep(id) || m.in_use.load(Ordering::Relaxed) > 0);
    }

    /// Counts an invocation run on the reactor's thread (`inline`) or an invoker thread.
    pub fn job(&self, inline: bool) {
        let c = if inline {
            &self.jobs_inline
        } else {
            &self.jobs_queued
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Records a cold start that cost `took` (loading and waiting for a share).
    pub fn cold_start(&self, took: std::time::Duration) {
        self.cold_start.observe(took);
    }

    /// The scheduler's replicas per function now.
    pub fn set_replicas(&self, mut replicas: Vec<(String, u32)>) {
        replicas.sort();
        *self.replicas.write().unwrap_or_else(|e| e.into_inner()) = replicas;
    }

    /// Counts an artifact found in (or missing from) the local cache.
    pub fn artifact_cache(&self, hit: bool) {
        let c = if hit {
            &self.cache_hits
        } else {
            &self.cache_misses
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Where the KVM backend's VM figures come from (a worker makes the backend when a
    /// Function first asks for `isolation: "vm"`; until then there are none).
    pub fn set_vm_pool(&self, stats: Arc<dyn Fn() -> BackendStats + Send + Sync>) {
        *self.vm_pool.write().unwrap_or_else(|e| e.into_inner()) = Some(BackendStatsSource(stats));
    }

    /// Where the in-process pool's figures come from.
    pub fn set_pool(&self, stats: Arc<dyn Fn() -> BackendStats + Send + Sync>) {
        *self.pool.write().unwrap_or_else(|e| e.into_inner()) = Some(BackendStatsSource(stats));
    }

    /// The pool's (capacity, in use), once the worker set it.
    pub fn pool_stats(&self) -> Option<(u32, usize)> {
        let pool = self.pool.read().unwrap_or_else(|e| e.into_inner()).clone();
        pool.map(|stats| {
            let s = (stats.0)();
            (s.capacity, s.in_use)
        })
    }

    /// Invocations running now, over every function.
    pub fn in_flight(&self) -> u64 {
        let all = self.functions.read().unwrap_or_else(|e| e.into_inner());
        all.values().map(|m| m.in_use.load(Ordering::Relaxed)).sum()
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let functions: Vec<(String, Arc<FunctionMetrics>)> = {
            let all = self.functions.read().unwrap_or_else(|e| e.into_inner());
            let mut v: Vec<_> = all.iter().map(|(k, m)| (k.clone(), m.clone())).collect();
            v.sort_by(|a, b| a.0.cmp(&b.0));
            v
        };
        out.push_str("# HELP fnvm_requests_total Requests answered, by function and status.\n");
        out.push_str("# TYPE fnvm_requests_total counter\n");
        for (id, m) in &functions {
            for (i, c) in m.statuses.iter().enumerate() {
                let n = c.load(Ordering::Relaxed);
                if n == 0 {
                    continue;
                }
                let status = STATUSES
                    .get(i)
                    .map_or_else(|| "other".to_string(), |s| s.to_string());
                let _ = writeln!(
                    out,
                    "fnvm_requests_total{{function=\"{id}\",status=\"{status}\"}} {n}"
                );
            }
        }
        out.push_str(
            "# HELP fnvm_deliveries_total Event delivery attempts (asynchronous invocations, Pulsar messages), by function, source and outcome.\n",
        );
        out.push_str("# TYPE fnvm_deliveries_total counter\n");
        for (id, m) in &functions {
            for (si, source) in SOURCES.iter().enumerate() {
                for (oi, outcome) in OUTCOMES.iter().enumerate() {
                    let n = m.deliveries[si * OUTCOMES.len() + oi].load(Ordering::Relaxed);
                    if n > 0 {
                        let _ = writeln!(
                            out,
                            "fnvm_deliveries_total{{function=\"{id}\",source=\"{source}\",outcome=\"{outcome}\"}} {n}"
                        );
                    }
                }
            }
        }
        for (name, help, pick) in [
            (
                "fnvm_instantiate_seconds",
                "From an invocation's start to the guest's entry.",
                (|m: &FunctionMetrics| &m.instantiate) as fn(&FunctionMetrics) -> &Histogram,
            ),
            (
                "fnvm_run_seconds",
                "The guest's run.",
                |m: &FunctionMetrics| &m.run,
            ),
            (
                "fnvm_request_seconds",
                "From a request's arrival to its response.",
                |m: &FunctionMetrics| &m.total,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
            for (id, m) in &functions {
                pick(m).render(&mut out, name, &format!("function=\"{id}\","));
            }
        }
        out.push_str("# HELP fnvm_instances_in_use Instances running now, by function.\n");
        out.push_str("# TYPE fnvm_instances_in_use gauge\n");
        for (id, m) in &functions {
            let n = m.in_use.load(Ordering::Relaxed);
            let _ = writeln!(out, "fnvm_instances_in_use{{function=\"{id}\"}} {n}");
        }
        out.push_str(
            "# HELP fnvm_instance_share Instances of a function this worker may run at once (its share of maxInstances).\n",
        );
        out.push_str("# TYPE fnvm_instance_share gauge\n");
        for (id, m) in &functions {
            let n = m.share.load(Ordering::Relaxed);
            let _ = writeln!(out, "fnvm_instance_share{{function=\"{id}\"}} {n}");
        }
        let replicas = self
            .replicas
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if !replicas.is_empty() {
            out.push_str("# HELP fnvm_replicas Workers that should hold a function, as the scheduler decided.\n");
            out.push_str("# TYPE fnvm_replicas gauge\n");
            for (id, n) in &replicas {
                let _ = writeln!(out, "fnvm_replicas{{function=\"{id}\"}} {n}");
            }
        }
        out.push_str("# HELP fnvm_cold_start_seconds Requests that waited for their function to be loaded here or given a share here (load + wait, as in Fnvm-Cold-Start).\n");
        out.push_str("# TYPE fnvm_cold_start_seconds histogram\n");
        self.cold_start
            .render(&mut out, "fnvm_cold_start_seconds", "");
        let pool = self.pool.read().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(stats) = pool {
            let BackendStats {
                capacity, in_use, ..
            } = (stats.0)();
            out.push_str("# HELP fnvm_pool_slots Instance slots of the pool.\n");
            out.push_str("# TYPE fnvm_pool_slots gauge\n");
            let _ = writeln!(out, "fnvm_pool_slots{{state=\"total\"}} {capacity}");
            let _ = writeln!(out, "fnvm_pool_slots{{state=\"in_use\"}} {in_use}");
        }
        let vm_pool = self
            .vm_pool
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some(stats) = vm_pool {
            let s = (stats.0)();
            out.push_str(
                "# HELP fnvm_vm_pool KVM micro-VMs: the most alive at once, and those running or being reset.\n",
            );
            out.push_str("# TYPE fnvm_vm_pool gauge\n");
            let _ = writeln!(out, "fnvm_vm_pool{{state=\"total\"}} {}", s.capacity);
            let _ = writeln!(out, "fnvm_vm_pool{{state=\"in_use\"}} {}", s.in_use);
            out.push_str(
                "# HELP fnvm_vms_created_total KVM micro-VMs created (the rest of the instances reused a pooled VM).\n",
            );
            out.push_str("# TYPE fnvm_vms_created_total counter\n");
            let _ = writeln!(out, "fnvm_vms_created_total {}", s.module_switches);
        }
        out.push_str("# HELP fnvm_artifact_cache_total Artifacts looked up in the local cache.\n");
        out.push_str("# TYPE fnvm_artifact_cache_total counter\n");
        let _ = writeln!(
            out,
            "fnvm_artifact_cache_total{{result=\"hit\"}} {}",
            self.cache_hits.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "fnvm_artifact_cache_total{{result=\"miss\"}} {}",
            self.cache_misses.load(Ordering::Relaxed)
        );
        out.push_str(
            "# HELP fnvm_jobs_total Invocations by the thread they ran on: the reactor's (inline) or an invoker's (queued).\n",
        );
        out.push_str("# TYPE fnvm_jobs_total counter\n");
        for (label, c) in [("inline", &self.jobs_inline), ("queued", &self.jobs_queued)] {
            let _ = writeln!(
                out,
                "fnvm_jobs_total{{thread=\"{label}\"}} {}",
                c.load(Ordering::Relaxed)
            );
        }
        out.push_str("# HELP fnvm_compile_seconds Compilations by the packager.\n");
        out.push_str("# TYPE fnvm_compile_seconds histogram\n");
        self.compile.render(&mut out, "fnvm_compile_seconds", "");
        out.push_str("# HELP fnvm_build_seconds Server-side builds of sources by the packager.\n");
        out.push_str("# TYPE fnvm_build_seconds histogram\n");
        self.build.render(&mut out, "fnvm_build_seconds", "");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        let f = m.function("f1");
        f.status(200);
        f.status(200);
        f.status(504);
        f.status(299);
        f.total.observe(Duration::from_micros(30));
        f.total.observe(Duration::from_millis(2));
        let guard = f.instance();
        f.delivery(EventSource::Pulsar, DeliveryOutcome::Dead);
        f.delivery(EventSource::Pulsar, DeliveryOutcome::Dead);
        f.delivery(EventSource::Async, DeliveryOutcome::Succeeded);
        m.artifact_cache(true);
        m.job(true);
        m.compile.observe(Duration::from_millis(500));
        m.build.observe(Duration::from_secs(3));
        m.set_pool(Arc::new(|| BackendStats {
            capacity: 8,
            in_use: 3,
            module_switches: 0,
        }));
        assert!(!m.render().contains("fnvm_vm_pool"));
        m.set_vm_pool(Arc::new(|| BackendStats {
            capacity: 32,
            in_use: 2,
            module_switches: 5,
        }));
        let text = m.render();
        assert!(
            text.contains("fnvm_vm_pool{state=\"total\"} 32\n"),
            "{text}"
        );
        assert!(
            text.contains("fnvm_vm_pool{state=\"in_use\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("fnvm_vms_created_total 5\n"), "{text}");
        assert!(
            text.contains("fnvm_requests_total{function=\"f1\",status=\"200\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("fnvm_requests_total{function=\"f1\",status=\"504\"} 1\n"));
        assert!(text.contains("fnvm_requests_total{function=\"f1\",status=\"other\"} 1\n"));
        assert!(
            text.contains("fnvm_request_seconds_bucket{function=\"f1\",le=\"0.00005\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("fnvm_request_seconds_bucket{function=\"f1\",le=\"+Inf\"} 2\n"));
        assert!(text.contains("fnvm_request_seconds_count{function=\"f1\"} 2\n"));
        assert!(text.contains("fnvm_instances_in_use{function=\"f1\"} 1\n"));
        assert!(text.contains(
            "fnvm_deliveries_total{function=\"f1\",source=\"pulsar\",outcome=\"dead\"} 2\n"
        ));
        assert!(text.contains(
            "fnvm_deliveries_total{function=\"f1\",source=\"async\",outcome=\"succeeded\"} 1\n"
        ));
        assert!(!text.contains("outcome=\"retried\""));
        assert!(text.contains("fnvm_pool_slots{state=\"in_use\"} 3\n"));
        assert!(text.contains("fnvm_artifact_cache_total{result=\"hit\"} 1\n"));
        assert!(text.contains("fnvm_jobs_total{thread=\"inline\"} 1\n"));
        assert!(text.contains("fnvm_jobs_total{thread=\"queued\"} 0\n"));
        assert!(text.contains("fnvm_compile_seconds_count 1\n"), "{text}");
        assert!(text.contains("fnvm_build_seconds_count 1\n"), "{text}");
        drop(guard);
        assert!(m
            .render()
            .contains("fnvm_instances_in_use{function=\"f1\"} 0\n"));
    }
}
