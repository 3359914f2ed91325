//! Placement decisions, and a simulation of the scheduler, the store's placement rows and the
//! workers enforcing their shares under random events (passes, acknowledgements, invocations
//! starting and ending, workers dying and coming back, requests at workers without a replica,
//! replica counts changing), checking after every step that no function ever runs more
//! instances across the fleet than its `maxInstances`.

use super::*;
use crate::model::Timestamp;

fn worker(id: &str, in_flight: u64) -> FleetWorker {
    let mut w = FleetWorker::for_tests(id);
    w.report.in_flight = in_flight;
    w.report.slots_in_use = in_flight;
    w
}

fn function(id: &str, max_instances: u32, replicas: u32) -> FunctionToPlace {
    FunctionToPlace {
        id: id.into(),
        deployment_id: format!("{id}-d1"),
        max_instances,
        replicas,
    }
}

/// The store's rows, changed as the SQL of `store::placements` changes them.
#[derive(Default)]
struct Rows {
    rows: Vec<Placement>,
    clock: i64,
}

impl Rows {
    fn apply(&mut self, plan: &PlacementPlan, live: &HashSet<String>) {
        self.clock += 1;
        for (f, w) in &plan.removals {
            self.rows.retain(|p| {
                !(&p.function_id == f
                    && &p.worker_id == w
                    && ((p.reason == PlacementReason::Leaving && p.held_max_instances == 0)
                        || !live.contains(w)))
            });
        }
        for t in &plan.upserts {
            match self
                .rows
                .iter_mut()
                .find(|p| p.function_id == t.function_id && p.worker_id == t.worker_id)
            {
                Some(p) => {
                    p.deployment_id = t.deployment_id.clone();
                    p.max_instances = t.max_instances;
                    p.reason = t.reason;
                    p.generation += 1;
                    p.held_max_instances = p.held_max_instances.max(t.max_instances);
                }
                None => self.rows.push(Placement {
                    function_id: t.function_id.clone(),
                    worker_id: t.worker_id.clone(),
                    deployment_id: t.deployment_id.clone(),
                    max_instances: t.max_instances,
                    reason: t.reason,
                    placed_at: Timestamp(self.clock),
                    generation: 1,
                    held_max_instances: t.max_instances,
                    loaded_deployment_id: None,
                    applied_max_instances: 0,
                    acked_generation: 0,
                }),
            }
        }
    }

    fn get(&mut self, f: &str, w: &str) -> Option<&mut Placement> {
        self.rows
            .iter_mut()
            .find(|p| p.function_id == f && p.worker_id == w)
    }
}

fn on<'a>(plan: &'a PlacementPlan, f: &str) -> Vec<(&'a str, u32)> {
    let mut v: Vec<_> = plan
        .upserts
        .iter()
        .filter(|t| t.function_id == f)
        .map(|t| (t.worker_id.as_str(), t.max_instances))
        .collect();
    v.sort();
    v
}

#[test]
fn an_idle_fleet_gets_one_function_per_worker() {
    let ws = [worker("a", 0), worker("b", 0), worker("c", 0)];
    let fs = [
        function("f1", 4, 1),
        function("f2", 4, 1),
        function("f3", 4, 1),
    ];
    let plan = plan(&ws, &fs, &[]);
    let mut used: Vec<&str> = plan.upserts.iter().map(|t| t.worker_id.as_str()).collect();
    used.sort();
    assert_eq!(used, ["a", "b", "c"], "{plan:?}");
    assert!(plan.upserts.iter().all(|t| t.max_instances == 4));
}

#[test]
fn a_new_replica_goes_to_the_least_loaded_live_worker() {
    let mut dead = worker("a", 0);
    dead.live = false;
    let ws = [dead, worker("b", 6), worker("c", 1), worker("d", 3)];
    let plan = plan(&ws, &[function("f", 1, 1)], &[]);
    assert_eq!(on(&plan, "f"), [("c", 1)]);
}

#[test]
fn shares_split_max_instances_and_are_capped_by_it() {
    let ws = [worker("a", 0), worker("b", 0), worker("c", 0)];
    let plan5 = plan(&ws, &[function("f", 5, 2)], &[]);
    let shares: Vec<u32> = on(&plan5, "f").iter().map(|s| s.1).collect();
    assert_eq!(shares, [3, 2]);
    // More replicas than maxInstances or workers: as many as can hold a share.
    assert_eq!(on(&plan(&ws, &[function("f", 2, 9)], &[]), "f").len(), 2);
    assert_eq!(on(&plan(&ws, &[function("f", 9, 9)], &[]), "f").len(), 3);
}

#[test]
fn a_share_moves_only_after_its_holder_lets_go() {
    let ws = [worker("a", 0), worker("b", 0)];
    let live: HashSet<String> = ["a".to_string(), "b".to_string()].into();
    let mut rows = Rows::default();
    rows.apply(&plan(&ws, &[function("f", 1, 1)], &[]), &live);
    let holder = rows.rows[0].worker_id.clone();
    let other = if holder == "a" { "b" } else { "a" };
    // A request reaches the other worker, which asks for the function.
    rows.rows.push(Placement {
        function_id: "f".into(),
        worker_id: other.into(),
        deployment_id: "f-d1".into(),
        max_instances: 0,
        reason: PlacementReason::Demand,
        placed_at: Timestamp(100),
        generation: 1,
        held_max_instances: 0,
        loaded_deployment_id: None,
        applied_max_instances: 0,
        acked_generation: 0,
    });
    // maxInstances 1: the demand wins the one replica, but gets the share only once the
    // holder has acknowledged giving it up.
    let p = plan(&ws, &[function("f", 1, 1)], &rows.rows);
    assert_eq!(on(&p, "f"), [(holder.as_str(), 0)], "{p:?}");
    assert_eq!(p.upserts[0].reason, PlacementReason::Leaving);
    rows.apply(&p, &live);
    let p = plan(&ws, &[function("f", 1, 1)], &rows.rows);
    assert!(p.is_empty(), "{p:?}");
    let g = rows.get("f", &holder).unwrap();
    g.applied_max_instances = 0;
    g.acked_generation = g.generation;
    g.held_max_instances = 0;
    let p = plan(&ws, &[function("f", 1, 1)], &rows.rows);
    assert_eq!(on(&p, "f"), [(other, 1)], "{p:?}");
    assert_eq!(p.removals, [("f".to_string(), holder.clone())]);
}

#[test]
fn dead_workers_lose_their_placements_and_a_function_no_longer_served_drains() {
    let ws = [worker("a", 0), worker("b", 0)];
    let live: HashSet<String> = ["a".to_string(), "b".to_string()].into();
    let mut rows = Rows::default();
    rows.apply(&plan(&ws, &[function("f", 2, 1)], &[]), &live);
    let holder = rows.rows[0].worker_id.clone();
    let mut ws2 = ws.clone();
    for w in &mut ws2 {
        w.live = w.report.id != holder;
    }
    let p = plan(&ws2, &[function("f", 2, 1)], &rows.rows);
    assert_eq!(p.removals, [("f".to_string(), holder.clone())]);
    assert_eq!(p.upserts.len(), 1);
    assert_ne!(p.upserts[0].worker_id, holder);
    // Not to be served any more: share zero, then removed once released.
    let p = plan(&ws, &[], &rows.rows);
    assert_eq!(p.upserts[0].reason, PlacementReason::Leaving);
    rows.apply(&p, &live);
    assert!(plan(&ws, &[], &rows.rows).is_empty(), "still held");
    rows.rows[0].held_max_instances = 0;
    assert_eq!(plan(&ws, &[], &rows.rows).removals.len(), 1);
}

/// A worker's side of one placement in the simulation.
#[derive(Clone, Copy, Default)]
struct Enforced {
    /// The share last read.
    share: u32,
    /// The generation it was read in.
    generation: u64,
    /// Instances running.
    running: u32,
}

/// A small deterministic generator (xorshift).
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

#[test]
fn simulated_fleet_never_runs_more_than_max_instances() {
    let names = ["w0", "w1", "w2", "w3"];
    let fns = ["f0", "f1", "f2"];
    for seed in 1..=40u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let mut ws: Vec<FleetWorker> = names.iter().map(|n| worker(n, 0)).collect();
        let mut fs: Vec<FunctionToPlace> = fns
            .iter()
            .enumerate()
            .map(|(i, f)| function(f, 1 + rng.below(5) as u32, 1 + i as u32))
            .collect();
        let mut rows = Rows::default();
        let mut enforced: HashMap<(String, String), Enforced> = HashMap::new();
        for step in 0..3000 {
            let live: HashSet<String> = ws
                .iter()
                .filter(|w| w.live)
                .map(|w| w.report.id.clone())
                .collect();
            let w = names[rng.below(names.len())].to_string();
            let f = fns[rng.below(fns.len())].to_string();
            let key = (f.clone(), w.clone());
            match rng.below(10) {
                0 | 1 => {
                    let p = plan(&ws, &fs, &rows.rows);
                    rows.apply(&p, &live);
                }
                2 if live.contains(&w) => {
                    // The worker reads its row and enforces it at once...
                    let e = enforced.entry(key.clone()).or_default();
                    match rows.get(&f, &w) {
                        Some(p) => {
                            e.share = p.max_instances;
                            e.generation = p.generation;
                        }
                        None => e.share = 0,
                    }
                }
                3 if live.contains(&w) => {
                    // ...and reports it later, whatever the scheduler wrote meanwhile.
                    let e = enforced.entry(key.clone()).or_default();
                    if let Some(p) = rows.get(&f, &w) {
                        let applied = e.share.max(e.running);
                        p.applied_max_instances = applied;
                        p.acked_generation = e.generation;
                        if p.generation == e.generation {
                            p.held_max_instances = applied;
                        }
                    }
                }
                4 | 5 if live.contains(&w) => {
                    let e = enforced.entry(key.clone()).or_default();
                    if e.running < e.share {
                        e.running += 1;
                    }
                }
                6 => {
                    let e = enforced.entry(key.clone()).or_default();
                    e.running = e.running.saturating_sub(1);
                }
                7 => {
                    // A worker dies (all it ran ends) or comes back empty.
                    let i = rng.below(ws.len());
                    ws[i].live = !ws[i].live;
                    let id = ws[i].report.id.clone();
                    enforced.retain(|(_, w), _| *w != id);
                }
                8 if live.contains(&w) && rows.get(&f, &w).is_none() => {
                    rows.rows.push(Placement {
                        function_id: f.clone(),
                        worker_id: w.clone(),
                        deployment_id: format!("{f}-d1"),
                        max_instances: 0,
                        reason: PlacementReason::Demand,
                        placed_at: Timestamp(rows.clock),
                        generation: 1,
                        held_max_instances: 0,
                        loaded_deployment_id: None,
                        applied_max_instances: 0,
                        acked_generation: 0,
                    });
                }
                9 => {
                    let i = rng.below(fs.len());
                    fs[i].replicas = 1 + rng.below(3) as u32;
                }
                _ => {}
            }
            for f in &fs {
                let running: u32 = enforced
                    .iter()
                    .filter(|((fid, _), _)| *fid == f.id)
                    .map(|(_, e)| e.running)
                    .sum();
                let bound = f.max_instances;
                assert!(
                    running <= bound,
                    "seed {seed} step {step}: {} runs {running} > {bound}",
                    f.id
                );
            }
        }
    }
}
