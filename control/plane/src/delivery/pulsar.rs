//! The Pulsar trigger, as a worker runs it. For every Function that has a trigger and is served
//! here, one consumer (the `pulsar` crate, a real client: token auth, TLS) on the Function's
//! shared subscription (`fnvm-{functionId}`: each message goes to one of the workers); [`run`]
//! starts, replaces and stops them as triggers and deployments change, and keeps them running
//! while the metadata store is away.
//!
//! Each message is one invocation (raw: the payload on stdin; structured: the Pulsar trigger's
//! JSON document, `guest-sdk/README.md`), with `FNVM_TRIGGER=pulsar`. At most `maxInstances`
//! messages of a Function are in hand at once on a worker, and its receiver queue is as small,
//! so a backlog never loads more messages than can run. A message is acknowledged once an
//! attempt succeeds; a failed attempt (non-zero exit, trap, deadline) is retried here after the
//! Function's backoff, and after `maxAttempts` the message is published to the dead-letter
//! topic with the reason in its properties, then acknowledged. A message whose attempts this
//! worker cannot finish (its consumer stopped, the worker died) is redelivered by the broker:
//! at least once. A consumer that loses its broker reconnects with backoff; what it could not
//! connect to (refused by the egress policy, bad token) is written to the Function's logs.

use super::retry_delay;
use crate::metrics::{DeliveryOutcome, EventSource};
use crate::model::{PulsarTrigger, Timestamp};
use crate::sealed::Sealer;
use crate::store::MetadataStore;
use crate::worker::execute;
use crate::worker::invoker::{Dispatched, Invoker};
use crate::worker::respond::{self, Call};
use crate::worker::{FunctionState, Worker};
use base64::Engine as _;
use bytes::Bytes;
use fnvm_dataplane::{Invocation, Trigger};
use futures::TryStreamExt as _;
use pulsar::consumer::Message;
use pulsar::{Authentication, Consumer, ConsumerOptions, Pulsar, SubType, TokioExecutor};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinHandle;

/// Settings of the Pulsar consumers.
#[derive(Clone, Debug, Default)]
pub struct PulsarConfig {
    /// CA certificates (PEM) trusted for `pulsar+ssl://` brokers besides the Mozilla roots.
    pub ca_pem: Vec<u8>,
    /// Largest stdout a guest may write (as for HTTP calls; the output is discarded).
    pub max_output_bytes: usize,
}

/// How often the triggers are read again.
const POLL: Duration = Duration::from_secs(1);
/// The first and the longest wait before reconnecting to a broker.
const RECONNECT_MIN: Duration = Duration::from_millis(500);
const RECONNECT_MAX: Duration = Duration::from_secs(30);
/// How long a message waits before it is handed back when no deployment of its Function is
/// ready here (another worker, or this one later, takes it).
const NOT_SERVED_WAIT: Duration = Duration::from_secs(1);

/// A trigger as stored, which is what a running consumer was started with.
type Wanted = crate::store::StoredPulsarTrigger;

/// Keeps one consumer per Function with a trigger that this worker serves, until dropped.
pub async fn run(
    store: MetadataStore,
    worker: Arc<Worker>,
    invoker: Arc<Invoker>,
    config: PulsarConfig,
) {
    let mut running: HashMap<String, (Wanted, JoinHandle<()>)> = HashMap::new();
    let mut sealer: Option<Arc<Sealer>> = None;
    loop {
        match store.pulsar_triggers().await {
            Ok(triggers) => {
                let served: std::collections::HashSet<String> = worker
                    .served_functions()
                    .into_iter()
                    .map(|(id, _)| id)
                    .collect();
                let wanted: HashMap<String, Wanted> = triggers
                    .into_iter()
                    .filter(|t| served.contains(&t.trigger.function_id))
                    .map(|t| (t.trigger.function_id.clone(), t))
                    .collect();
                // Gone or changed: stop (its unacknowledged messages go back to the broker).
                running.retain(|id, (started, task)| {
                    let keep = wanted.get(id) == Some(started) && !task.is_finished();
                    if !keep {
                        task.abort();
                    }
                    keep
                });
                for (id, t) in wanted {
                    if running.contains_key(&id) {
                        continue;
                    }
                    if t.sealed_token.is_some() && sealer.is_none() {
                        match Sealer::of(&store).await {
                            Ok(s) => sealer = Some(Arc::new(s)),
                            Err(e) => {
                                tracing::warn!(error = %e, "pulsar: reading the sealing key");
                                continue;
                            }
                        }
                    }
                    let token = match (&t.sealed_token, &sealer) {
                        (Some(sealed), Some(s)) => match s.open(sealed, &id) {
                            Ok(token) => Some(token),
                            Err(e) => {
                                report(&worker, &id, &format!("the trigger's token: {e}"));
                                continue;
                            }
                        },
                        _ => None,
                    };
                    let task = tokio::spawn(consume(
                        t.trigger.clone(),
                        token,
                        worker.clone(),
                        invoker.clone(),
                        config.clone(),
                    ));
                    running.insert(id, (t, task));
                }
            }
            // Keep consuming with what we have.
            Err(e) => tracing::warn!(error = %e, "pulsar: reading the triggers"),
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Writes a line about a Function's trigger to its logs (what its owner sees).
fn report(worker: &Worker, function_id: &str, text: &str) {
    tracing::warn!(function = function_id, "pulsar trigger: {text}");
    let deployment = worker
        .route(function_id)
        .map(|(s, _)| s.deployment.id.clone())
        .unwrap_or_default();
    worker.logs.push(
        function_id,
        &deployment,
        "pulsar-trigger",
        format!("pulsar trigger: {text}\n").as_bytes(),
    );
}

/// Consumes the trigger's topic until the task is aborted, reconnecting with backoff.
async fn consume(
    trigger: PulsarTrigger,
    token: Option<Vec<u8>>,
    worker: Arc<Worker>,
    invoker: Arc<Invoker>,
    config: PulsarConfig,
) {
    let mut wait = RECONNECT_MIN;
    loop {
        let started = Instant::now();
        let why = match session(&trigger, token.as_deref(), &worker, &invoker, &config).await {
            Ok(()) => "the broker ended the subscription".to_string(),
            Err(why) => why,
        };
        if started.elapsed() > RECONNECT_MAX {
            wait = RECONNECT_MIN;
        }
        report(
            &worker,
            &trigger.function_id,
            &format!("{why}; reconnecting in {} ms", wait.as_millis()),
        );
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(RECONNECT_MAX);
    }
}

/// What became of a message.
enum Verdict {
    /// Consumed: acknowledge it.
    Ack,
    /// Not run here: hand it back for redelivery.
    Nack,
    /// Failed on every attempt: to the dead-letter topic with the reason, then acknowledge.
    Dead { reason: String, attempts: u32 },
}

/// One connection's worth of consuming: returns why it ended.
async fn session(
    trigger: &PulsarTrigger,
    token: Option<&[u8]>,
    worker: &Arc<Worker>,
    invoker: &Arc<Invoker>,
    config: &PulsarConfig,
) -> Result<(), String> {
    check_egress(worker, &trigger.pulsar_url).await?;
    let mut builder = Pulsar::builder(trigger.pulsar_url.clone(), TokioExecutor);
    if let Some(t) = token {
        builder = builder.with_auth(Authentication {
            name: "token".into(),
            data: t.to_vec(),
        });
    }
    if !config.ca_pem.is_empty() {
        builder = builder.with_certificate_chain(config.ca_pem.clone());
    }
    // A refused subscription (busy, not ready) is retried here with backoff, not forever
    // inside the client.
    builder = builder.with_operation_retry_options(pulsar::OperationRetryOptions {
        max_retries: Some(3),
        ..pulsar::OperationRetryOptions::default()
    });
    let client: Pulsar<TokioExecutor> = builder
        .build()
        .await
        .map_err(|e| format!("connecting to {}: {e}", trigger.pulsar_url))?;
    let fid = trigger.function_id.as_str();
    let in_hand = worker
        .route(fid)
        .map_or(1, |(_, s)| s.instances.share().max(1));
    let mut consumer_builder = client
        .consumer()
        .with_subscription_type(SubType::Shared)
        .with_subscription(trigger.subscription.clone())
        .with_batch_size(in_hand)
        .with_options(ConsumerOptions::default().with_receiver_queue_size(in_hand));
    if trigger.pulsar_topic_fqdn_is_regex {
        let (_, tenant, namespace, _) = crate::model::topic_parts(&trigger.pulsar_topic_fqdn)
            .ok_or("the topic pattern names no namespace")?;
        let re = regex::Regex::new(&trigger.pulsar_topic_fqdn)
            .map_err(|e| format!("the topic pattern: {e}"))?;
        consumer_builder = consumer_builder
            .with_topic_regex(re)
            .with_lookup_namespace(format!("{tenant}/{namespace}"))
            .with_topic_refresh(Duration::from_secs(10));
    } else {
        consumer_builder = consumer_builder.with_topic(trigger.pulsar_topic_fqdn.clone());
    }
    let mut consumer: Consumer<Vec<u8>, TokioExecutor> = consumer_builder
        .build()
        .await
        .map_err(|e| format!("subscribing to {}: {e}", trigger.pulsar_topic_fqdn))?;
    let mut dead_letters: Option<pulsar::Producer<TokioExecutor>> = None;
    let slots = Arc::new(Semaphore::new(in_hand as usize));
    // A delivery's slot is given back with its verdict and freed only once the verdict went to
    // the broker, and verdicts are handled before new messages are taken: otherwise messages
    // are taken while acknowledgements wait, and the unacknowledged ones pile up at the broker
    // (measured with the test broker: 30 at one consumer whose queue holds 2).
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<(
        Message<Vec<u8>>,
        Verdict,
        Option<tokio::sync::OwnedSemaphorePermit>,
    )>();
    let mut slot = None;
    loop {
        tokio::select! {
            biased;
            Some((msg, verdict, _slot)) = done_rx.recv() => match verdict {
                Verdict::Ack => consumer.ack(&msg).await.map_err(|e| format!("acknowledging: {e}"))?,
                Verdict::Nack => consumer.nack(&msg).await.map_err(|e| format!("handing back: {e}"))?,
                Verdict::Dead { reason, attempts } => {
                    if dead_letters.is_none() {
                        dead_letters = Some(
                            client
                                .producer()
                                .with_topic(trigger.dead_letter_topic.clone())
                                .build()
                                .await
                                .map_err(|e| format!("opening the dead-letter topic: {e}"))?,
                        );
                    }
                    let producer = dead_letters.as_mut().ok_or("no dead-letter producer")?;
                    let sent = async {
                        producer.send_non_blocking(dead_letter(&msg, &reason, attempts, fid)).await?.await
                    };
                    match sent.await {
                        Ok(_) => consumer.ack(&msg).await.map_err(|e| format!("acknowledging: {e}"))?,
                        Err(e) => {
                            report(worker, fid, &format!("publishing to the dead-letter topic: {e}"));
                            consumer.nack(&msg).await.map_err(|e| format!("handing back: {e}"))?;
                        }
                    }
                }
            },
            permit = slots.clone().acquire_owned(), if slot.is_none() => {
                slot = permit.ok();
            }
            next = consumer.try_next(), if slot.is_some() => match next {
                Ok(Some(msg)) => {
                    let permit = slot.take();
                    let (worker, invoker, done) = (worker.clone(), invoker.clone(), done_tx.clone());
                    let (fid, structured) = (fid.to_string(), trigger.structured);
                    let max_output = config.max_output_bytes;
                    tokio::spawn(async move {
                        let verdict = deliver(&worker, &invoker, &fid, &msg, structured, max_output).await;
                        let _ = done.send((msg, verdict, permit));
                    });
                }
                Ok(None) => return Ok(()),
                Err(e) => return Err(format!("receiving: {e}")),
            },
        }
    }
}

/// Refuses a broker the platform's egress policy does not allow (the trigger's URL is the
/// user's: it must not reach the worker's own network).
async fn check_egress(worker: &Worker, url: &str) -> Result<(), String> {
    let host_port = url
        .split_once("://")
        .map_or(url, |(_, r)| r)
        .trim_end_matches('/');
    let (host, port) = host_port
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h, p.parse::<u16>().ok()?)))
        .ok_or("the broker URL has no port")?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<std::net::SocketAddr> = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::net::lookup_host((host, port)),
    )
    .await
    .map_err(|_| format!("resolving {host} timed out"))?
    .map_err(|e| format!("resolving {host}: {e}"))?
    .collect();
    if addrs.is_empty() {
        return Err(format!("{host} has no address"));
    }
    for a in addrs {
        worker
            .egress_policy()
            .check(host, a.ip(), port)
            .map_err(|r| format!("the broker's address is not allowed: {r}"))?;
    }
    Ok(())
}

/// Runs `msg` until an attempt succeeds or the Function's attempts are spent.
async fn deliver(
    worker: &Arc<Worker>,
    invoker: &Invoker,
    fid: &str,
    msg: &Message<Vec<u8>>,
    structured: bool,
    max_output: usize,
) -> Verdict {
    let mut attempt = 1u32;
    loop {
        let Some((served, state)) = worker.route(fid) else {
            tokio::time::sleep(NOT_SERVED_WAIT).await;
            worker
                .metrics
                .function(fid)
                .delivery(EventSource::Pulsar, DeliveryOutcome::Released);
            return Verdict::Nack;
        };
        let fm = state.metrics.clone();
        let max_attempts = state.function.max_attempts.max(1);
        let backoff = state.function.retry_backoff_ms;
        let Some(permit) = state.instances.acquire_when_free().await else {
            return Verdict::Nack;
        };
        let (stdin, vars) = input(msg, attempt, structured);
        let invocation = invocation(&state, stdin, &vars, max_output);
        // What the job needs of a call to judge and answer it (the modes); the message is in
        // the invocation's stdin already.
        let call = Call {
            method: hyper::Method::POST,
            uri: hyper::Uri::from_static("/"),
            path_info: String::new(),
            query: String::new(),
            headers: hyper::HeaderMap::new(),
            body: Bytes::new(),
            debug: false,
            http_trigger: false,
        };
        let id = format!("pulsar-{}", message_id(msg));
        let job = execute::job(
            worker.clone(),
            served,
            state,
            call,
            invocation,
            permit,
            id,
            true,
        );
        let executed = match invoker.dispatch(job, false) {
            Ok(Dispatched::Inline(e)) => e,
            Ok(Dispatched::Queued(rx)) => rx.await.ok(),
            Err(_) => return Verdict::Nack,
        };
        let failure = match executed {
            Some(e) => e.failure,
            None => Some("the invocation ended without an answer".into()),
        };
        let Some(reason) = failure else {
            fm.delivery(EventSource::Pulsar, DeliveryOutcome::Succeeded);
            return Verdict::Ack;
        };
        if attempt >= max_attempts {
            fm.delivery(EventSource::Pulsar, DeliveryOutcome::Dead);
            return Verdict::Dead {
                reason,
                attempts: attempt,
            };
        }
        fm.delivery(EventSource::Pulsar, DeliveryOutcome::Retried);
        tokio::time::sleep(retry_delay(backoff, attempt)).await;
        attempt += 1;
    }
}

/// `ledger:entry:partition:batchIndex`.
fn message_id(msg: &Message<Vec<u8>>) -> String {
    let id = &msg.message_id.id;
    format!(
        "{}:{}:{}:{}",
        id.ledger_id,
        id.entry_id,
        id.partition.unwrap_or(-1),
        id.batch_index.unwrap_or(-1)
    )
}

/// What the guest gets: its stdin (the payload, or the structured document) and the variables
/// describing the message.
fn input(
    msg: &Message<Vec<u8>>,
    attempt: u32,
    structured: bool,
) -> (Vec<u8>, Vec<(&'static str, String)>) {
    let meta = &msg.payload.metadata;
    let id = message_id(msg);
    let published = Timestamp(i64::try_from(meta.publish_time).unwrap_or(i64::MAX)).to_rfc3339();
    let mut vars = vec![
        ("FNVM_TRIGGER", "pulsar".to_string()),
        ("PULSAR_TOPIC", msg.topic.clone()),
        ("PULSAR_MESSAGE_ID", id.clone()),
        ("PULSAR_PUBLISH_TIME", published.clone()),
        ("PULSAR_ATTEMPT", attempt.to_string()),
    ];
    if let Some(k) = &meta.partition_key {
        vars.push(("PULSAR_KEY", k.clone()));
    }
    let data = &msg.payload.data;
    if !structured {
        return (data.clone(), vars);
    }
    let (payload, encoding) = match std::str::from_utf8(data) {
        Ok(text) => (text.to_string(), "utf8"),
        Err(_) => (
            base64::engine::general_purpose::STANDARD.encode(data),
            "base64",
        ),
    };
    let properties: serde_json::Map<String, serde_json::Value> = meta
        .properties
        .iter()
        .map(|kv| (kv.key.clone(), serde_json::Value::String(kv.value.clone())))
        .collect();
    let event_time = meta
        .event_time
        .filter(|t| *t > 0)
        .map(|t| Timestamp(i64::try_from(t).unwrap_or(i64::MAX)).to_rfc3339());
    let doc = serde_json::json!({
        "topic": msg.topic,
        "messageId": id,
        "key": meta.partition_key,
        "properties": properties,
        "publishTime": published,
        "eventTime": event_time,
        "attempt": attempt,
        "payload": payload,
        "payloadEncoding": encoding,
    });
    (serde_json::to_vec(&doc).unwrap_or_default(), vars)
}

/// The invocation a message makes.
fn invocation(
    f: &FunctionState,
    stdin: Vec<u8>,
    vars: &[(&'static str, String)],
    output_limit: usize,
) -> Invocation {
    let mut env = respond::function_env(f);
    for (k, v) in vars {
        // Names are fixed; a value with a NUL is left out.
        let _ = env.push_var(k, v.as_bytes());
    }
    let mut invocation =
        respond::invocation_of(f, env, stdin, Trigger::Pulsar, false, output_limit);
    invocation.measure_cpu = f.runs.wants_cpu_time();
    invocation
}

/// The dead letter of `msg`: its payload, key and properties, with why it died.
fn dead_letter(
    msg: &Message<Vec<u8>>,
    reason: &str,
    attempts: u32,
    function_id: &str,
) -> pulsar::producer::Message {
    let meta = &msg.payload.metadata;
    let mut properties: HashMap<String, String> = meta
        .properties
        .iter()
        .map(|kv| (kv.key.clone(), kv.value.clone()))
        .collect();
    properties.insert("FNVM_FAILURE_REASON".into(), reason.to_string());
    properties.insert("FNVM_ATTEMPTS".into(), attempts.to_string());
    properties.insert("FNVM_FUNCTION_ID".into(), function_id.to_string());
    // The names Pulsar's own dead-letter policy uses.
    properties.insert("REAL_TOPIC".into(), msg.topic.clone());
    properties.insert("ORIGIN_MESSAGE_ID".into(), message_id(msg));
    pulsar::producer::Message {
        payload: msg.payload.data.clone(),
        properties,
        partition_key: meta.partition_key.clone(),
        event_time: meta.event_time,
        ..Default::default()
    }
}
