//! Fleet membership in the store, on both databases: a renewal registers or updates a worker,
//! liveness follows the lease, live workers are listed first, a worker removes itself, and
//! only long-dead ones are collected. Singleton roles. Placements: the scheduler's writes
//! fenced by its term, what a worker holds following its acknowledgements, demands, removal
//! only once released (or with a dead worker), readiness once every replica has loaded.

use super::{deploy, func, TestDb, R};
use fnvm_control::model::{
    DeploymentStatus, FunctionLoad, PlacementReason, PlacementTarget, Timestamp, WorkerReport,
};
use fnvm_control::store::PlacementPlan;
use std::time::Duration;

both!(workers_register_renew_lapse_and_leave);

fn report(id: &str, in_flight: u64) -> WorkerReport {
    WorkerReport {
        id: id.into(),
        url: format!("http://{id}:8081"),
        started_at: Timestamp::now(),
        version: "0.1.0".into(),
        cores: 2,
        slots: 16,
        memory_bytes: 24 << 30,
        in_flight,
        slots_in_use: in_flight,
        resident_bytes: 20 << 20,
        deployments: 3,
        functions: vec![FunctionLoad {
            function_id: "f".into(),
            share: 2,
            granted: in_flight * 10,
            refused: 1,
            busy_us: 12_345,
            last_request_at: Some(Timestamp(1_700_000_000_000)),
        }],
    }
}

async fn workers_register_renew_lapse_and_leave(db: &TestDb) -> R {
    let st = db.store().await;
    assert!(st.list_workers().await?.is_empty());
    let short = Duration::from_millis(1500);
    let long = Duration::from_secs(60);
    st.renew_worker(&report("a", 1), short).await?;
    st.renew_worker(&report("b", 0), long).await?;
    let w = st.list_workers().await?;
    assert_eq!(w.len(), 2);
    assert!(w.iter().all(|w| w.live), "{w:?}");
    assert_eq!(
        w[0].report,
        report("a", 1).with_started(w[0].report.started_at)
    );
    // A renewal updates what the worker reported, and its lease.
    st.renew_worker(&report("b", 7), long).await?;
    let w = st.list_workers().await?;
    let b = w.iter().find(|w| w.report.id == "b").unwrap();
    assert_eq!((b.report.in_flight, b.report.slots_in_use), (7, 7));
    assert!(b.lease_until.0 >= b.renewed_at.0 + 59_000, "{b:?}");
    // a's lease lapses: dead, still listed, after the live ones.
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let w = st.list_workers().await?;
    assert_eq!(
        w.iter()
            .map(|w| (w.report.id.as_str(), w.live))
            .collect::<Vec<_>>(),
        [("b", true), ("a", false)]
    );
    // Collecting forgets only workers dead for longer than asked.
    assert_eq!(st.collect_dead_workers(Duration::from_secs(60)).await?, 0);
    assert_eq!(st.collect_dead_workers(Duration::ZERO).await?, 1);
    // A worker that comes back registers again; one that leaves is gone.
    st.renew_worker(&report("a", 0), long).await?;
    assert_eq!(st.list_workers().await?.len(), 2);
    assert!(st.remove_worker("a").await?);
    assert!(!st.remove_worker("a").await?);
    let w = st.list_workers().await?;
    assert_eq!(w.len(), 1);
    assert_eq!(w[0].report.id, "b");
    Ok(())
}

trait WithStarted {
    fn with_started(self, at: Timestamp) -> Self;
}

impl WithStarted for WorkerReport {
    fn with_started(mut self, at: Timestamp) -> Self {
        self.started_at = at;
        self
    }
}

both!(a_singleton_role_has_one_holder_at_a_time);

async fn a_singleton_role_has_one_holder_at_a_time(db: &TestDb) -> R {
    let st = db.store().await;
    let lease = Duration::from_millis(1500);
    assert_eq!(st.singleton("scheduler").await?, None);
    assert_eq!(
        st.acquire_singleton("scheduler", "a", lease).await?,
        Some(1)
    );
    // Held: b is refused; a renews in the same term.
    assert_eq!(st.acquire_singleton("scheduler", "b", lease).await?, None);
    assert_eq!(
        st.acquire_singleton("scheduler", "a", lease).await?,
        Some(1)
    );
    // Another role is independent.
    assert_eq!(st.acquire_singleton("other", "b", lease).await?, Some(1));
    let held = st.singleton("scheduler").await?.unwrap();
    assert_eq!((held.holder.as_str(), held.term), ("a", 1));
    assert!(held.lease_until.0 > Timestamp::now().0);
    // a's lease lapses: b takes over in the next term; a is then refused.
    tokio::time::sleep(Duration::from_millis(1600)).await;
    assert_eq!(
        st.acquire_singleton("scheduler", "b", lease).await?,
        Some(2)
    );
    assert_eq!(st.acquire_singleton("scheduler", "a", lease).await?, None);
    // b stops cleanly: a takes over at once.
    assert!(st.release_singleton("scheduler", "b").await?);
    assert!(!st.release_singleton("scheduler", "nobody").await?);
    assert_eq!(
        st.acquire_singleton("scheduler", "a", lease).await?,
        Some(3)
    );
    // A later incarnation of the holder's node takes the role back at once, in a new term;
    // another node's incarnation does not.
    assert_eq!(
        st.acquire_singleton("scheduler", "node1/inc1", lease)
            .await?,
        None
    );
    assert!(st.release_singleton("scheduler", "a").await?);
    assert_eq!(
        st.acquire_singleton("scheduler", "node1/inc1", lease)
            .await?,
        Some(4)
    );
    assert_eq!(
        st.acquire_singleton("scheduler", "node2/inc1", lease)
            .await?,
        None
    );
    assert_eq!(
        st.acquire_singleton("scheduler", "node1/inc2", lease)
            .await?,
        Some(5)
    );
    assert_eq!(
        st.acquire_singleton("scheduler", "node1/inc1", lease)
            .await?,
        Some(6),
        "(an older incarnation that still runs would take it back too: incarnations of one \
         node never run at once)"
    );
    // Many contenders at once on a free role: exactly one wins.
    let name = "race";
    let wins = futures::future::join_all((0..8).map(|i| {
        let st = st.clone();
        async move {
            st.acquire_singleton(name, &format!("c{i}"), Duration::from_secs(30))
                .await
        }
    }))
    .await;
    let won: Vec<_> = wins
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .flatten()
        .collect();
    assert_eq!(won, [1], "exactly one contender holds the role");
    Ok(())
}

both!(placements_are_fenced_acknowledged_and_released);

fn target(f: &str, w: &str, d: &str, share: u32) -> PlacementTarget {
    PlacementTarget {
        function_id: f.into(),
        worker_id: w.into(),
        deployment_id: d.into(),
        max_instances: share,
        reason: PlacementReason::Placed,
    }
}

async fn placements_are_fenced_acknowledged_and_released(db: &TestDb) -> R {
    let st = db.store().await;
    let long = Duration::from_secs(60);
    st.renew_worker(&report("a", 0), long).await?;
    st.renew_worker(&report("b", 0), long).await?;
    let f = func(&st, "org-a", "placed").await?;
    let d = deploy(&st, &f, None, DeploymentStatus::Deploying).await?;
    let (fid, did) = (f.id.as_str(), d.id.as_str());
    let plan = PlacementPlan {
        upserts: vec![target(fid, "a", did, 2)],
        removals: vec![],
    };
    // Only the role's holder in its term writes.
    assert!(!st.apply_placements("scheduler", "s1", 1, &plan).await?);
    assert_eq!(
        st.acquire_singleton("scheduler", "s1", long).await?,
        Some(1)
    );
    assert!(!st.apply_placements("scheduler", "s1", 2, &plan).await?);
    assert!(!st.apply_placements("scheduler", "s2", 1, &plan).await?);
    assert!(st.list_placements().await?.is_empty());
    assert!(st.apply_placements("scheduler", "s1", 1, &plan).await?);
    let p = &st.placements_of_worker("a").await?[0];
    assert_eq!(
        (
            p.max_instances,
            p.held_max_instances,
            p.generation,
            p.applied_max_instances
        ),
        (2, 2, 1, 0)
    );
    // Not every replica has loaded the deployment: not ready.
    assert!(!st.ready_if_replicated(did, "http://a/f").await?);
    // a acknowledges generation 1 with the deployment loaded: held = applied; ready.
    assert!(st.report_placement(fid, "a", 1, Some(did), 2).await?);
    assert!(st.ready_if_replicated(did, "http://a/f").await?);
    assert!(!st.ready_if_replicated(did, "http://a/f").await?, "once");
    // The placement is drained (share 0, leaving): held stays until a acknowledges the new
    // generation...
    let lower = PlacementPlan {
        upserts: vec![PlacementTarget {
            reason: PlacementReason::Leaving,
            ..target(fid, "a", did, 0)
        }],
        removals: vec![],
    };
    assert!(st.apply_placements("scheduler", "s1", 1, &lower).await?);
    assert!(st.report_placement(fid, "a", 1, Some(did), 2).await?);
    let p = &st.placements_of_worker("a").await?[0];
    assert_eq!(
        (p.max_instances, p.held_max_instances, p.generation),
        (0, 2, 2)
    );
    // ...and a removal does nothing while it holds instances.
    let remove = PlacementPlan {
        upserts: vec![],
        removals: vec![(fid.to_string(), "a".to_string())],
    };
    assert!(st.apply_placements("scheduler", "s1", 1, &remove).await?);
    assert_eq!(st.list_placements().await?.len(), 1);
    // Drained and acknowledged in generation 2: released, then removed.
    assert!(st.report_placement(fid, "a", 2, Some(did), 1).await?);
    assert_eq!(st.placements_of_worker("a").await?[0].held_max_instances, 1);
    assert!(st.report_placement(fid, "a", 2, Some(did), 0).await?);
    assert!(st.apply_placements("scheduler", "s1", 1, &remove).await?);
    assert!(st.list_placements().await?.is_empty());
    assert!(
        !st.report_placement(fid, "a", 2, Some(did), 0).await?,
        "gone"
    );
    // b asks for the function: a demand with no share; asking again changes nothing.
    assert!(st.request_placement(fid, "b", did).await?);
    assert!(!st.request_placement(fid, "b", did).await?);
    let p = &st.placements_of_function(fid).await?[0];
    assert_eq!(
        (p.reason, p.max_instances, p.worker_id.as_str()),
        (PlacementReason::Demand, 0, "b")
    );
    // A leaving placement asked for again is a demand again.
    let leave = PlacementPlan {
        upserts: vec![PlacementTarget {
            reason: PlacementReason::Leaving,
            ..target(fid, "b", did, 0)
        }],
        removals: vec![],
    };
    assert!(st.apply_placements("scheduler", "s1", 1, &leave).await?);
    let left = st.placements_of_worker("b").await?[0].placed_at;
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    assert!(st.request_placement(fid, "b", did).await?);
    // ...placed now: the autoscaler must not find the function idle since the old placement.
    let p = &st.placements_of_worker("b").await?[0];
    assert_eq!(p.reason, PlacementReason::Demand);
    assert!(p.placed_at.0 > left.0, "{:?} after {left:?}", p.placed_at);
    // The scheduler, having read it leaving and unheld before the demand, removes it: the
    // demand stays (the worker waits on it).
    let stale = PlacementPlan {
        upserts: vec![],
        removals: vec![(fid.to_string(), "b".to_string())],
    };
    assert!(st.apply_placements("scheduler", "s1", 1, &stale).await?);
    let p = &st.placements_of_worker("b").await?;
    assert_eq!(p.len(), 1, "a demand removed by a stale plan");
    assert_eq!(p[0].reason, PlacementReason::Demand);
    // A dead worker's placement goes even while it holds a share.
    let grant = PlacementPlan {
        upserts: vec![target(fid, "b", did, 3)],
        removals: vec![],
    };
    assert!(st.apply_placements("scheduler", "s1", 1, &grant).await?);
    assert!(st.remove_worker("b").await?);
    let remove_b = PlacementPlan {
        upserts: vec![],
        removals: vec![(fid.to_string(), "b".to_string())],
    };
    assert!(st.apply_placements("scheduler", "s1", 1, &remove_b).await?);
    assert!(st.list_placements().await?.is_empty());
    // Deleting the function deletes its placements.
    assert!(st.apply_placements("scheduler", "s1", 1, &plan).await?);
    assert!(st.delete_function("org-a", fid).await?);
    assert!(st.list_placements().await?.is_empty());
    Ok(())
}
