//! Fleet membership in the store, on both databases: a renewal registers or updates a worker,
//! liveness follows the lease, live workers are listed first, a worker removes itself, and
//! only long-dead ones are collected.

use super::{TestDb, R};
use fnvm_control::model::{Timestamp, WorkerReport};
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
