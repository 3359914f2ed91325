//! The durable queue of asynchronous invocations, as a worker runs it. `POST
//! /{functionId}?async` queues the request in the metadata store ([`AsyncQueue::enqueue`]:
//! committed before the client hears `202`) and wakes this worker's loop ([`run`]); the loop
//! claims due invocations of the Functions it serves under a lease, never more than it can run
//! at once, runs each on the invoker threads like any call, and records the result, a retry
//! after backoff, or a dead letter. Other workers' loops find work by polling (and take over
//! the invocations of a worker that died, once their lease lapses). The loop also collects
//! finished invocations after their retention.

use super::{result_of, retry_delay};
use crate::metrics::{DeliveryOutcome, EventSource};
use crate::model::{Function, InvocationRequest, Timestamp};
use crate::store::{ClaimedInvocation, Enqueued, Finish, MetadataStore, StoreError};
use crate::worker::execute::{self, Executed};
use crate::worker::invoker::{Dispatched, Invoker};
use crate::worker::respond::{self, Call};
use crate::worker::Worker;
use bytes::Bytes;
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Notify, Semaphore};

/// Settings of the queue.
#[derive(Clone, Debug)]
pub struct QueueConfig {
    /// Largest request body an asynchronous invocation may have (it is stored until it runs).
    pub max_request_bytes: u64,
    /// Unfinished (queued or running) invocations a Function may have; more are refused (429).
    pub max_unfinished: u64,
    /// How long finished invocations (results, dead letters) are kept.
    pub retention: Duration,
    /// How often a worker looks for due invocations it was not woken for.
    pub poll: Duration,
    /// Invocations this worker runs at once.
    pub concurrency: usize,
    /// Largest response body a guest may write (as for HTTP calls).
    pub max_response_bytes: usize,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            max_request_bytes: 1 << 20,
            max_unfinished: 100_000,
            retention: Duration::from_secs(24 * 3600),
            poll: Duration::from_millis(250),
            concurrency: 4,
            max_response_bytes: 16 << 20,
        }
    }
}

/// How long a claimed invocation may wait for an instance of its Function before it is put
/// back (uncounted) for later.
const INSTANCE_WAIT: Duration = Duration::from_secs(5);
/// A lease covers the wait for an instance, the Function's timeout and this much more.
const LEASE_GRACE: Duration = Duration::from_secs(5);
/// How often finished invocations past their retention are collected.
const COLLECT_EVERY: Duration = Duration::from_secs(60);
/// How long recording an attempt's end is retried while the database is unreachable (after
/// that the lease lapses and another attempt runs: at least once).
const FINISH_RETRY_FOR: Duration = Duration::from_secs(60);

/// The queue as this worker sees it: the store, its wake-up, and who it is.
#[derive(Debug)]
pub struct AsyncQueue {
    store: MetadataStore,
    wake: Notify,
    /// Settings.
    pub config: QueueConfig,
    /// This process's name on the leases it takes.
    holder: String,
}

impl AsyncQueue {
    /// A queue on `store`, worked by this process of the node `node` (restarted after a
    /// crash, it takes over at once what its earlier incarnation was running).
    pub fn new(store: MetadataStore, node: &str, config: QueueConfig) -> Arc<AsyncQueue> {
        Arc::new(AsyncQueue {
            store,
            wake: Notify::new(),
            config,
            holder: format!("{node}/{}", crate::model::new_id()),
        })
    }

    /// Queues `request` for `f` (durably: when this returns, it is committed) and wakes the
    /// loop.
    pub async fn enqueue(
        &self,
        f: &Function,
        request: &InvocationRequest,
    ) -> Result<Enqueued, StoreError> {
        let queued = self
            .store
            .enqueue_invocation(f, request, self.config.max_unfinished)
            .await?;
        if matches!(queued, Enqueued::Queued(_)) {
            self.wake.notify_one();
        }
        Ok(queued)
    }
}

/// Runs due invocations of the Functions `worker` serves, on `invoker`'s threads, until the
/// task is dropped.
pub async fn run(queue: Arc<AsyncQueue>, worker: Arc<Worker>, invoker: Arc<Invoker>) {
    let running = Arc::new(Semaphore::new(queue.config.concurrency.max(1)));
    let mut collected_at: Option<Instant> = None;
    loop {
        if collected_at.is_none_or(|t| t.elapsed() >= COLLECT_EVERY) {
            collected_at = Some(Instant::now());
            collect(&queue).await;
        }
        // Claim only what can run now: the rest stays queued for this or another worker.
        let free = running.available_permits();
        if free == 0 {
            if let Ok(p) = running.clone().acquire_owned().await {
                drop(p);
            }
            continue;
        }
        let served = worker.served_functions();
        let ids: Vec<&str> = served.iter().map(|(id, _)| id.as_str()).collect();
        let longest = served.iter().map(|(_, t)| *t).max().unwrap_or_default();
        let lease = INSTANCE_WAIT + longest + LEASE_GRACE;
        let limit = u32::try_from(free).unwrap_or(u32::MAX);
        match queue
            .store
            .claim_invocations(&queue.holder, &ids, limit, lease)
            .await
        {
            Ok(claimed) if !claimed.is_empty() => {
                for c in claimed {
                    let Ok(permit) = running.clone().try_acquire_owned() else {
                        // Cannot happen (we claimed at most the free permits); put it back.
                        finish(&queue, &worker, &c, released()).await;
                        continue;
                    };
                    let (queue, worker, invoker) = (queue.clone(), worker.clone(), invoker.clone());
                    tokio::spawn(async move {
                        let _permit = permit;
                        deliver(&queue, &worker, &invoker, c).await;
                    });
                }
                // There may be more due.
                continue;
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "queue: claiming invocations"),
        }
        tokio::select! {
            () = queue.wake.notified() => {}
            () = tokio::time::sleep(queue.config.poll) => {}
        }
    }
}

/// Removes finished invocations past their retention.
async fn collect(queue: &AsyncQueue) {
    let keep_ms = i64::try_from(queue.config.retention.as_millis()).unwrap_or(i64::MAX);
    let before = Timestamp(Timestamp::now().0.saturating_sub(keep_ms));
    match queue.store.collect_invocations(before).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(removed = n, "queue: collected finished invocations"),
        Err(e) => tracing::warn!(error = %e, "queue: collecting finished invocations"),
    }
}

fn released() -> Finish {
    Finish::Released {
        retry_at: Timestamp(Timestamp::now().0 + 1000),
    }
}

/// A failed attempt: queued again after its backoff, or dead after the last.
fn failed(c: &ClaimedInvocation, reason: String, executed: Option<(&Executed, bool)>) -> Finish {
    let retry_at = (c.attempt < c.max_attempts).then(|| {
        let wait = retry_delay(c.retry_backoff_ms, c.attempt);
        Timestamp(Timestamp::now().0 + i64::try_from(wait.as_millis()).unwrap_or(i64::MAX))
    });
    Finish::Failed {
        reason,
        result: executed.map(|(e, debug)| result_of(e, debug)),
        retry_at,
    }
}

/// Runs one claimed invocation and records how it ended.
async fn deliver(
    queue: &AsyncQueue,
    worker: &Arc<Worker>,
    invoker: &Invoker,
    c: ClaimedInvocation,
) {
    let Some((served, state)) = worker.route(&c.function_id) else {
        // Undeployed since it was claimed: it runs when a deployment is ready again (here or
        // on another worker), or dies after its attempts.
        let f = failed(&c, "no deployment of the function is ready".into(), None);
        return finish(queue, worker, &c, f).await;
    };
    let call = match call_of(&c.function_id, &c.request) {
        Ok(call) => call,
        Err(why) => {
            // The stored request cannot be replayed: no retry would do better.
            let f = Finish::Failed {
                reason: why,
                result: None,
                retry_at: None,
            };
            return finish(queue, worker, &c, f).await;
        }
    };
    let Some(permit) = state.instances.acquire(INSTANCE_WAIT).await else {
        // Every instance busy (or none here, while the share moves): later.
        return finish(queue, worker, &c, released()).await;
    };
    let debug = call.debug;
    let mut invocation = respond::invocation(&call, &state, queue.config.max_response_bytes);
    invocation.measure_cpu = state.runs.wants_cpu_time();
    let job = execute::job(
        worker.clone(),
        served,
        state,
        call,
        invocation,
        permit,
        c.id.clone(),
        true,
    );
    let executed = match invoker.dispatch(job, false) {
        Ok(Dispatched::Inline(e)) => e,
        Ok(Dispatched::Queued(rx)) => rx.await.ok(),
        // Shutting down: another worker runs it when the lease lapses.
        Err(_) => return,
    };
    let f = match executed {
        None => failed(&c, "the invocation ended without an answer".into(), None),
        Some(e) => match &e.failure {
            None => Finish::Succeeded(result_of(&e, debug)),
            Some(why) => failed(&c, why.clone(), Some((&e, debug))),
        },
    };
    finish(queue, worker, &c, f).await;
}

/// Records `f` (and counts it in `/metrics`), retrying while the database is unreachable.
async fn finish(queue: &AsyncQueue, worker: &Worker, c: &ClaimedInvocation, f: Finish) {
    let start = Instant::now();
    let mut wait = Duration::from_millis(100);
    loop {
        match queue.store.finish_invocation(c, &queue.holder, &f).await {
            Ok(true) => {
                let outcome = match &f {
                    Finish::Succeeded(_) => DeliveryOutcome::Succeeded,
                    Finish::Failed {
                        retry_at: Some(_), ..
                    } => DeliveryOutcome::Retried,
                    Finish::Failed { retry_at: None, .. } => DeliveryOutcome::Dead,
                    Finish::Released { .. } => DeliveryOutcome::Released,
                };
                worker
                    .metrics
                    .function(&c.function_id)
                    .delivery(EventSource::Async, outcome);
                return;
            }
            Ok(false) => {
                tracing::warn!(invocation = %c.id, "queue: the lease lapsed before the attempt ended; another attempt counts");
                return;
            }
            Err(e) if start.elapsed() < FINISH_RETRY_FOR => {
                tracing::warn!(invocation = %c.id, error = %e, "queue: recording an attempt; retrying");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(5));
            }
            Err(e) => {
                tracing::error!(invocation = %c.id, error = %e, "queue: could not record an attempt; it runs again when its lease lapses");
                return;
            }
        }
    }
}

/// The call a stored request makes.
fn call_of(function_id: &str, r: &InvocationRequest) -> Result<Call, String> {
    let method = hyper::Method::from_bytes(r.method.as_bytes())
        .map_err(|_| format!("the stored request's method {:?} is not valid", r.method))?;
    let target = if r.query.is_empty() {
        format!("/{function_id}{}", r.path)
    } else {
        format!("/{function_id}{}?{}", r.path, r.query)
    };
    let uri: hyper::Uri = target
        .parse()
        .map_err(|_| "the stored request's path is not valid".to_string())?;
    let mut headers = HeaderMap::with_capacity(r.headers.len());
    for (k, v) in &r.headers {
        // Stored from a valid request; one that does not parse any more is left out.
        if let (Ok(k), Ok(v)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            headers.append(k, v);
        }
    }
    Ok(Call {
        method,
        uri,
        path_info: r.path.clone(),
        query: r.query.clone(),
        headers,
        body: Bytes::from(r.body.clone()),
        debug: r.debug,
        http_trigger: r.http_trigger,
    })
}

/// The stored form of a request to `/{functionId}{path_info}?async`.
pub fn request_of(
    method: &hyper::Method,
    path_info: &str,
    query: &str,
    headers: &HeaderMap,
    body: &[u8],
    debug: bool,
    http_trigger: bool,
) -> InvocationRequest {
    InvocationRequest {
        method: method.as_str().to_string(),
        path: path_info.to_string(),
        query: query.to_string(),
        headers: headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: body.to_vec(),
        debug,
        http_trigger,
    }
}
