//! The durable queue of asynchronous invocations (`MetadataStore::enqueue_invocation` and
//! friends), on both databases: claims under a lease that never hand one invocation to two
//! workers, retries after a backoff, dead letters, take-over of a lost worker's invocations,
//! fencing of a late finisher, owner scoping, the per-Function bound and collection.

use super::{func, spec, tick, TestDb, R};
use fnvm_control::model::{
    Function, FunctionSpec, InvocationRequest, InvocationResult, InvocationStatus as Q, Timestamp,
};
use fnvm_control::store::{
    ClaimedInvocation, Enqueued, Finish, MetadataStore, Retried, StoreError,
};
use std::collections::HashSet;
use std::time::Duration;

both!(
    invocations_run_once_per_claim_and_keep_their_result,
    failed_attempts_back_off_then_die_and_can_be_retried,
    a_lost_workers_invocations_are_taken_over_and_its_late_finish_is_refused,
    concurrent_workers_never_claim_one_invocation_twice,
    queues_are_bounded_scoped_and_collected,
);

fn request(n: u32) -> InvocationRequest {
    InvocationRequest {
        method: "POST".into(),
        path: format!("/p{n}"),
        query: "a=1".into(),
        headers: vec![("x-n".into(), n.to_string())],
        body: vec![0, 1, 2, 255],
        debug: false,
        http_trigger: false,
    }
}

async fn enqueue(st: &MetadataStore, f: &Function, n: u32) -> Result<String, StoreError> {
    match st.enqueue_invocation(f, &request(n), 1000).await? {
        Enqueued::Queued(i) => Ok(i.id),
        other => panic!("not queued: {other:?}"),
    }
}

async fn claim(
    st: &MetadataStore,
    holder: &str,
    f: &Function,
    limit: u32,
    lease: Duration,
) -> Result<Vec<ClaimedInvocation>, StoreError> {
    st.claim_invocations(holder, &[f.id.as_str()], limit, lease)
        .await
}

const LONG: Duration = Duration::from_secs(60);

fn ok(body: &str) -> Finish {
    Finish::Succeeded(InvocationResult::with_body(200, body.as_bytes(), 1 << 20))
}

fn retry_in(ms: i64, why: &str) -> Finish {
    Finish::Failed {
        reason: why.into(),
        result: None,
        retry_at: Some(Timestamp(Timestamp::now().0 + ms)),
    }
}

async fn invocations_run_once_per_claim_and_keep_their_result(db: &TestDb) -> R {
    let st = db.store().await;
    let f = func(&st, "org", "f").await?;
    let other = func(&st, "org", "g").await?;
    let a = enqueue(&st, &f, 1).await?;
    tick().await;
    let b = enqueue(&st, &f, 2).await?;
    enqueue(&st, &other, 3).await?;
    let shown = st.invocation("org", &f.id, &a).await?.unwrap();
    assert_eq!(
        (shown.status, shown.attempts, shown.max_attempts),
        (Q::Queued, 0, 3)
    );
    assert!(shown.next_attempt_at.is_some());
    assert_eq!(shown.request.path, "/p1");
    assert_eq!(shown.request.body_bytes, 4);

    // Oldest first, only the Functions asked for, at most `limit`.
    let got = claim(&st, "w1", &f, 1, LONG).await?;
    assert_eq!(got.len(), 1);
    assert_eq!((got[0].id.as_str(), got[0].attempt), (a.as_str(), 1));
    assert_eq!(got[0].request, request(1));
    let got2 = claim(&st, "w1", &f, 10, LONG).await?;
    assert_eq!(
        got2.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
        [b.as_str()]
    );
    assert!(claim(&st, "w2", &f, 10, LONG).await?.is_empty());
    assert_eq!(
        st.invocation("org", &f.id, &a).await?.unwrap().status,
        Q::Running
    );

    assert!(st.finish_invocation(&got[0], "w1", &ok("done")).await?);
    // Once only.
    assert!(!st.finish_invocation(&got[0], "w1", &ok("again")).await?);
    let done = st.invocation("org", &f.id, &a).await?.unwrap();
    assert_eq!((done.status, done.attempts), (Q::Succeeded, 1));
    assert_eq!(done.result.unwrap().body, "done");
    assert!(done.next_attempt_at.is_none());

    // Released (no instance was free): queued again, the attempt not counted.
    let released = Finish::Released {
        retry_at: Timestamp(Timestamp::now().0),
    };
    assert!(st.finish_invocation(&got2[0], "w1", &released).await?);
    let again = claim(&st, "w2", &f, 10, LONG).await?;
    assert_eq!((again[0].id.as_str(), again[0].attempt), (b.as_str(), 1));
    Ok(())
}

async fn failed_attempts_back_off_then_die_and_can_be_retried(db: &TestDb) -> R {
    let st = db.store().await;
    let f = st
        .create_function(
            "org",
            &FunctionSpec {
                max_attempts: 2,
                ..spec("f")
            },
        )
        .await?;
    let id = enqueue(&st, &f, 1).await?;
    let first = claim(&st, "w", &f, 1, LONG).await?.remove(0);
    assert!(
        st.finish_invocation(&first, "w", &retry_in(400, "exit 1"))
            .await?
    );
    let waiting = st.invocation("org", &f.id, &id).await?.unwrap();
    assert_eq!((waiting.status, waiting.attempts), (Q::Queued, 1));
    assert_eq!(
        waiting.last_error.as_deref(),
        Some("attempt 1 of 2: exit 1")
    );
    assert!(waiting.next_attempt_at.unwrap().0 > Timestamp::now().0 + 200);
    // Not before its time.
    assert!(claim(&st, "w", &f, 1, LONG).await?.is_empty());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let second = claim(&st, "w", &f, 1, LONG).await?.remove(0);
    assert_eq!(second.attempt, 2);
    let last = Finish::Failed {
        reason: "trap: unreachable".into(),
        result: Some(InvocationResult::with_body(500, b"trap", 100)),
        retry_at: None,
    };
    assert!(st.finish_invocation(&second, "w", &last).await?);
    let dead = st.invocation("org", &f.id, &id).await?.unwrap();
    assert_eq!((dead.status, dead.attempts), (Q::Dead, 2));
    assert_eq!(
        dead.last_error.as_deref(),
        Some("attempt 2 of 2: trap: unreachable")
    );
    assert_eq!(dead.result.unwrap().status, 500);

    let listed = st
        .invocations("org", &f.id, Some(Q::Dead), None, 100)
        .await?
        .unwrap();
    assert_eq!(listed.iter().map(|i| &i.id).collect::<Vec<_>>(), [&id]);
    assert!(st
        .invocations("org", &f.id, Some(Q::Queued), None, 100)
        .await?
        .unwrap()
        .is_empty());

    // Retried: all its attempts again, due now.
    let Retried::Queued(requeued) = st.retry_invocation("org", &f.id, &id).await? else {
        panic!("not requeued");
    };
    assert_eq!((requeued.status, requeued.attempts), (Q::Queued, 0));
    assert!(matches!(
        st.retry_invocation("org", &f.id, &id).await?,
        Retried::NotDead(Q::Queued)
    ));
    assert!(matches!(
        st.retry_invocation("other", &f.id, &id).await?,
        Retried::NotFound
    ));
    assert_eq!(claim(&st, "w", &f, 1, LONG).await?[0].attempt, 1);
    Ok(())
}

async fn a_lost_workers_invocations_are_taken_over_and_its_late_finish_is_refused(
    db: &TestDb,
) -> R {
    let st = db.store().await;
    let f = st
        .create_function(
            "org",
            &FunctionSpec {
                max_attempts: 2,
                ..spec("f")
            },
        )
        .await?;
    let id = enqueue(&st, &f, 1).await?;
    let short = Duration::from_millis(300);
    let lost = claim(&st, "w1", &f, 1, short).await?.remove(0);
    // Held: nobody else gets it.
    assert!(claim(&st, "w2", &f, 1, LONG).await?.is_empty());
    tokio::time::sleep(short + Duration::from_millis(100)).await;
    // w1 died: w2 takes it over, as the second attempt.
    let taken = claim(&st, "w2", &f, 1, short).await?.remove(0);
    assert_eq!((taken.id.as_str(), taken.attempt), (id.as_str(), 2));
    let shown = st.invocation("org", &f.id, &id).await?.unwrap();
    assert_eq!(
        shown.last_error.as_deref(),
        Some("attempt 1: the worker running it stopped before it ended")
    );
    // w1 was only slow: its result is refused, w2's counts.
    assert!(!st.finish_invocation(&lost, "w1", &ok("late")).await?);
    // w2 dies too, on the last attempt: dead, never running forever.
    tokio::time::sleep(short + Duration::from_millis(100)).await;
    assert!(claim(&st, "w3", &f, 1, LONG).await?.is_empty());
    let dead = st.invocation("org", &f.id, &id).await?.unwrap();
    assert_eq!(dead.status, Q::Dead);
    assert_eq!(
        dead.last_error.as_deref(),
        Some("attempt 2 of 2: the worker running it stopped before it ended")
    );
    assert!(!st.finish_invocation(&taken, "w2", &ok("late")).await?);

    // A node restarted after a crash takes over what its earlier incarnation ran, at once;
    // another node waits for the lease.
    let id = enqueue(&st, &f, 2).await?;
    assert_eq!(claim(&st, "node-a/1", &f, 1, LONG).await?[0].id, id);
    assert!(claim(&st, "node-b/1", &f, 1, LONG).await?.is_empty());
    assert!(claim(&st, "node-a/1", &f, 1, LONG).await?.is_empty());
    let resumed = claim(&st, "node-a/2", &f, 1, LONG).await?.remove(0);
    assert_eq!((resumed.id.as_str(), resumed.attempt), (id.as_str(), 2));
    Ok(())
}

async fn concurrent_workers_never_claim_one_invocation_twice(db: &TestDb) -> R {
    let st = db.store().await;
    let f = func(&st, "org", "f").await?;
    let mut queued = HashSet::new();
    for n in 0..60 {
        queued.insert(enqueue(&st, &f, n).await?);
    }
    let mut tasks = Vec::new();
    for w in 0..4 {
        let (st, f) = (st.clone(), f.clone());
        tasks.push(tokio::spawn(async move {
            let holder = format!("w{w}");
            let mut mine = Vec::new();
            loop {
                let got = claim(&st, &holder, &f, 3, LONG).await?;
                if got.is_empty() {
                    return Ok::<_, StoreError>(mine);
                }
                for c in got {
                    assert!(st.finish_invocation(&c, &holder, &ok("x")).await?);
                    mine.push(c.id);
                }
            }
        }));
    }
    let mut claimed = Vec::new();
    for t in tasks {
        claimed.extend(t.await.unwrap()?);
    }
    let distinct: HashSet<String> = claimed.iter().cloned().collect();
    assert_eq!(
        claimed.len(),
        distinct.len(),
        "an invocation was claimed twice"
    );
    assert_eq!(distinct, queued);
    Ok(())
}

async fn queues_are_bounded_scoped_and_collected(db: &TestDb) -> R {
    let st = db.store().await;
    let f = func(&st, "org", "f").await?;
    for n in 0..3 {
        assert!(matches!(
            st.enqueue_invocation(&f, &request(n), 3).await?,
            Enqueued::Queued(_)
        ));
    }
    assert!(matches!(
        st.enqueue_invocation(&f, &request(9), 3).await?,
        Enqueued::Full
    ));
    // Another owner sees nothing of them.
    let all = st
        .invocations("org", &f.id, None, None, 100)
        .await?
        .unwrap();
    assert_eq!(all.len(), 3);
    assert!(st
        .invocations("other", &f.id, None, None, 100)
        .await?
        .is_none());
    assert!(st.invocation("other", &f.id, &all[0].id).await?.is_none());
    // Pages continue after the last id.
    let page = st.invocations("org", &f.id, None, None, 2).await?.unwrap();
    let rest = st
        .invocations("org", &f.id, None, Some(&page[1].id), 2)
        .await?
        .unwrap();
    assert_eq!(
        page.iter().chain(&rest).map(|i| &i.id).collect::<Vec<_>>(),
        all.iter().map(|i| &i.id).collect::<Vec<_>>()
    );
    // Finished ones are collected after their retention; unfinished ones never.
    for c in claim(&st, "w", &f, 2, LONG).await? {
        assert!(st.finish_invocation(&c, "w", &ok("x")).await?);
    }
    tick().await;
    assert_eq!(st.collect_invocations(Timestamp::now()).await?, 2);
    assert_eq!(
        st.invocations("org", &f.id, None, None, 100)
            .await?
            .unwrap()
            .len(),
        1
    );
    // Deleting the Function deletes its queue.
    assert!(st.delete_function("org", &f.id).await?);
    assert!(matches!(
        st.enqueue_invocation(&f, &request(1), 3).await?,
        Enqueued::NoFunction
    ));
    assert_eq!(db.count("invocations").await, 0);
    Ok(())
}
