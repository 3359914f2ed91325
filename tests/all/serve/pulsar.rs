//! The Pulsar trigger end to end: `fnvm serve` consuming from the Pulsar test double
//! (tests/pulsar-test-broker, a broker speaking the binary protocol's subset the client uses),
//! messages published with the real `pulsar` client. Checked: the trigger's API and CLI (the
//! token never shown), messages reaching a function (structured, with token auth) and being
//! acknowledged; a failing function's messages retried then dead-lettered with the reason; a
//! broker dropping every connection mid-stream, and the worker killed with SIGKILL, losing
//! nothing; and a backlog of 10,000 messages never loading more than the function can run.

use super::*;
use crate::wasi::{guest, RUST};
use ::pulsar::{producer, Authentication, Pulsar, TokioExecutor};
use fnvm_pulsar_test_broker::{BrokerConfig, SubscriptionStats, TestBroker};
use std::collections::HashSet;

/// A tokio runtime for the broker and the producer (the tests themselves are synchronous).
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn broker(rt: &tokio::runtime::Runtime, token: Option<&str>) -> TestBroker {
    rt.block_on(TestBroker::start(BrokerConfig {
        auth_token: token.map(str::to_string),
        ..BrokerConfig::default()
    }))
    .unwrap()
}

/// A message to publish: payload, key, properties.
type Outgoing = (String, Option<String>, Vec<(&'static str, &'static str)>);

/// Publishes messages to `topic`, waiting for every receipt.
fn publish(
    rt: &tokio::runtime::Runtime,
    broker: &TestBroker,
    token: Option<&str>,
    topic: &str,
    messages: Vec<Outgoing>,
) {
    rt.block_on(async {
        let mut b = Pulsar::builder(broker.url(), TokioExecutor);
        if let Some(t) = token {
            b = b.with_auth(Authentication {
                name: "token".into(),
                data: t.as_bytes().to_vec(),
            });
        }
        let client: Pulsar<TokioExecutor> = b.build().await.unwrap();
        let mut p = client.producer().with_topic(topic).build().await.unwrap();
        let mut receipts = Vec::new();
        for (payload, key, props) in messages {
            // The client refuses (SlowDown) beyond its pending limit: wait for receipts first.
            if receipts.len() == 50 {
                for r in receipts.drain(..) {
                    let r: producer::SendFuture = r;
                    r.await.unwrap();
                }
            }
            let m = producer::Message {
                payload: payload.into_bytes(),
                partition_key: key,
                properties: props
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                ..Default::default()
            };
            receipts.push(p.send_non_blocking(m).await.unwrap());
        }
        for r in receipts {
            r.await.unwrap();
        }
    });
}

fn stats(broker: &TestBroker, topic: &str, sub: &str) -> SubscriptionStats {
    broker
        .stats(topic)
        .and_then(|t| t.subscriptions.into_iter().find(|s| s.name == sub))
        .unwrap_or_default()
}

/// Waits (up to `secs`) until `check` holds, saying `what` and the server's log if not.
fn eventually(server: &Server, secs: u64, what: &str, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "timed out waiting for {what}\n{}",
            server.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The function's log lines.
fn log_lines(server: &Server, org: &str, token: &str, fid: &str) -> Vec<String> {
    let url = format!(
        "{}/v4/functions/organisations/{org}/functions/{fid}/logs?limit=1000",
        server.api
    );
    let (s, entries) = request("GET", &url, Some(token), None, None);
    assert_eq!(s, 200, "{entries}");
    entries
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|e| {
            e["text"]
                .as_str()
                .unwrap()
                .lines()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect()
}

const ORG: &str = "org-p";

#[test]
fn messages_reach_the_function_are_acknowledged_or_dead_lettered() {
    let rt = runtime();
    let secret = "pulsar-token-31337";
    let broker = broker(&rt, Some(secret));
    let server = Server::start(
        "pulsar",
        Backends::embedded(),
        &["--egress-allow", "127.0.0.0/8"],
    );
    let token = server.token(Some(ORG));
    let wasm = std::fs::read(guest(RUST, "pulsar_consumer")).unwrap();
    let fid = server.deploy_function(
        ORG,
        &token,
        r#"{"maxAttempts": 2, "retryBackoffMs": 50, "maxInstances": 2}"#,
        &wasm,
    );
    let topic = "persistent://public/default/orders";
    let token_file = server.data_dir.with_extension("pulsar-token");
    std::fs::write(&token_file, format!("{secret}\n")).unwrap();
    let set = ok(server.cli(
        ORG,
        &token,
        &[
            "trigger",
            "pulsar",
            "set",
            &fid,
            "--url",
            &broker.url(),
            "--topic",
            topic,
            "--token-file",
            token_file.to_str().unwrap(),
            "--structured",
            "--json",
        ],
    ));
    let set = json(&set);
    assert_eq!(set["has_token"], true);
    assert_eq!(set["pulsar_topic_fqdn"], topic);
    assert_eq!(set["subscription"], format!("fnvm-{fid}"));
    assert_eq!(set["external"], true);
    let dlq = format!("persistent://public/default/fnvm-{fid}-DLQ");
    assert_eq!(set["dead_letter_topic"], dlq.as_str());
    // The token is never shown, by the API or the CLI.
    let url = format!(
        "{}/v4/functions/organisations/{ORG}/functions/{fid}/trigger-pulsar",
        server.api
    );
    let (s, shown) = request("GET", &url, Some(&token), None, None);
    assert_eq!(s, 200);
    assert!(!shown.to_string().contains(secret), "{shown}");
    assert!(!ok(server.cli(ORG, &token, &["trigger", "pulsar", "get", &fid])).contains(secret));
    // Another organisation sees no trigger; bad settings are refused with the field.
    let (s, _) = request("GET", &url, Some(&server.token(Some("org-x"))), None, None);
    assert_eq!(s, 404);
    let (s, e) = request(
        "POST",
        &url,
        Some(&token),
        Some("application/json"),
        Some(
            br#"{"pulsar_url": "http://x:1", "pulsar_topic_fqdn": "persistent://a/b/c"}"#.to_vec(),
        ),
    );
    assert_eq!((s, e["field"].as_str()), (400, Some("pulsar_url")), "{e}");

    // A new subscription starts at the topic's end (Pulsar's default): publish once the
    // worker has subscribed.
    let sub = format!("fnvm-{fid}");
    eventually(&server, 30, "the worker subscribed", || {
        stats(&broker, topic, &sub).consumers == 1
    });
    // Messages reach the function, structured (topic, key, attempt, payload), and are
    // acknowledged; one that fails on both attempts goes to the dead-letter topic with why.
    let mut messages: Vec<Outgoing> = (0..20)
        .map(|i| {
            (
                format!("order-{i}"),
                Some(format!("k{i}")),
                vec![("n", "v")],
            )
        })
        .collect();
    messages.push(("fail-now".into(), None, vec![("trace", "t1")]));
    publish(&rt, &broker, Some(secret), topic, messages);
    eventually(&server, 60, "every message acknowledged", || {
        let s = stats(&broker, topic, &sub);
        s.acked == 21 && s.backlog == 0
    });
    eventually(&server, 30, "the logs of every message", || {
        let lines = log_lines(&server, ORG, &token, &fid);
        (0..20).all(|i| {
            lines.contains(&format!(
                "consumed topic={topic} key=k{i} attempt=1 payload=order-{i}"
            ))
        }) && lines.contains(&format!(
            "consumed topic={topic} key=- attempt=2 payload=fail-now"
        ))
    });
    let dead = broker.messages(&dlq);
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].payload, b"fail-now");
    let prop = |k: &str| {
        dead[0]
            .properties
            .iter()
            .find(|(name, _)| name == k)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(prop("FNVM_ATTEMPTS").as_deref(), Some("2"));
    assert_eq!(prop("trace").as_deref(), Some("t1"));
    assert_eq!(prop("REAL_TOPIC").as_deref(), Some(topic));
    let reason = prop("FNVM_FAILURE_REASON").unwrap();
    assert!(reason.contains("exited with code 1"), "{reason}");

    // The worker's metrics count the attempts by outcome: 20 consumed, one retried then dead.
    let (_, _, metrics) =
        super::endpoint::call("GET", &format!("{}/metrics", server.http()), &[], b"");
    let metrics = String::from_utf8(metrics).unwrap();
    let series = |outcome: &str| {
        format!(
            "fnvm_deliveries_total{{function=\"{fid}\",source=\"pulsar\",outcome=\"{outcome}\"}}"
        )
    };
    for (outcome, n) in [("succeeded", 20), ("retried", 1), ("dead", 1)] {
        assert!(
            metrics.contains(&format!("{} {n}\n", series(outcome))),
            "{outcome} {n} missing from:\n{metrics}"
        );
    }

    // Removed: the worker stops consuming; later messages wait on the broker.
    ok(server.cli(ORG, &token, &["trigger", "pulsar", "delete", &fid]));
    std::thread::sleep(Duration::from_secs(3));
    publish(
        &rt,
        &broker,
        Some(secret),
        topic,
        vec![("late".into(), None, vec![])],
    );
    std::thread::sleep(Duration::from_secs(2));
    let s = stats(&broker, topic, &sub);
    assert_eq!((s.acked, s.backlog, s.consumers), (21, 1, 0), "{s:?}");
    let (s, _) = request("GET", &url, Some(&token), None, None);
    assert_eq!(s, 404);
}

#[test]
fn a_dropping_broker_and_a_killed_worker_lose_nothing_and_a_backlog_stays_bounded() {
    let rt = runtime();
    let broker = broker(&rt, None);
    let mut server = Server::start(
        "pulsar-load",
        Backends::embedded(),
        &["--egress-allow", "127.0.0.0/8"],
    );
    let token = server.token(Some(ORG));
    let wasm = std::fs::read(guest(RUST, "pulsar_consumer")).unwrap();
    let fid = server.deploy_function(ORG, &token, r#"{"maxInstances": 2}"#, &wasm);
    let topic = "persistent://public/default/backlog";
    let sub = format!("fnvm-{fid}");
    // A backlog first (and the subscription, so that it keeps them): 10,000 messages.
    let url = format!(
        "{}/v4/functions/organisations/{ORG}/functions/{fid}/trigger-pulsar",
        server.api
    );
    let spec = format!(
        r#"{{"pulsar_url": "{}", "pulsar_topic_fqdn": "{topic}", "structured": true}}"#,
        broker.url()
    );
    rt.block_on(async {
        let client: Pulsar<TokioExecutor> = Pulsar::builder(broker.url(), TokioExecutor)
            .build()
            .await
            .unwrap();
        let c: ::pulsar::Consumer<Vec<u8>, TokioExecutor> = client
            .consumer()
            .with_options(::pulsar::ConsumerOptions::default().with_receiver_queue_size(1))
            .with_batch_size(1)
            .with_topic(topic)
            .with_subscription(sub.clone())
            .with_subscription_type(::pulsar::SubType::Shared)
            .build()
            .await
            .unwrap();
        drop(c);
    });
    let total = 10_000;
    publish(
        &rt,
        &broker,
        None,
        topic,
        (0..total)
            .map(|i| (format!("m{i}"), None, vec![]))
            .collect(),
    );
    let (s, e) = request(
        "POST",
        &url,
        Some(&token),
        Some("application/json"),
        Some(spec.into_bytes()),
    );
    assert_eq!(s, 200, "{e}");
    // While it works through them, the broker drops every connection twice, then the worker
    // is killed with SIGKILL and started again.
    let mut max_in_flight = 0;
    let start = Instant::now();
    let (mut drops, mut killed) = (0, false);
    loop {
        let s = stats(&broker, topic, &sub);
        max_in_flight = max_in_flight.max(s.unacked_in_flight);
        if s.acked >= total as u64 && s.backlog == 0 {
            break;
        }
        if drops < 2 && s.acked > (drops + 1) * 2000 {
            broker.drop_connections();
            drops += 1;
        }
        if !killed && s.acked > 6000 {
            server.kill9();
            server.spawn();
            killed = true;
        }
        assert!(
            start.elapsed() < Duration::from_secs(240),
            "stuck at {s:?}\n{}",
            server.log_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!((drops, killed), (2, true));
    let s = stats(&broker, topic, &sub);
    // Flow control: the worker never held more than a handful beyond its 2 instances (the
    // client refills its permits as it takes messages: about 2n + 2 for a queue of n).
    assert!(s.max_permits_seen <= 6, "{s:?}");
    // Per consumer: its queue, its running invocations and the acknowledgements on their way.
    // The last are not ours to bound: pulsar-rs's consumer engine takes acknowledgements from
    // the same loop that waits, blocked, to hand the next message to a full queue, and after
    // each hand-over it may send the next flow permit before the acknowledgements queued
    // behind it (10 seen here, 19 on the loaded CI machine). Without flow control it would be
    // thousands: the backlog is 10,000.
    assert!(
        s.max_consumer_in_flight <= 32,
        "{} in flight at one consumer (subscription-wide, sampled: {max_in_flight}): {s:?}",
        s.max_consumer_in_flight
    );
    // Nothing lost: every message was acknowledged, which the worker does only after the
    // function consumed it (some twice, after a drop: at least once). The function's logs
    // (its latest 1,000 entries) show the last ones published.
    eventually(&server, 30, "the logs of the last messages", || {
        let seen: HashSet<String> = log_lines(&server, ORG, &token, &fid)
            .into_iter()
            .filter_map(|l| l.split("payload=").nth(1).map(str::to_string))
            .collect();
        (total - 500..total).all(|i| seen.contains(&format!("m{i}")))
    });
}

/// A CA and a `localhost` certificate it signed: (the broker's identity, the CA's PEM).
fn tls_identity() -> (fnvm_pulsar_test_broker::TlsIdentity, String) {
    let cert = TestCert::localhost();
    let identity = fnvm_pulsar_test_broker::TlsIdentity {
        cert_chain_pem: cert.leaf_pem.into_bytes(),
        private_key_pem: cert.key_pem.into_bytes(),
    };
    (identity, cert.ca_pem)
}

#[test]
fn a_pattern_trigger_over_tls_consumes_every_matching_topic_in_raw_mode() {
    let rt = runtime();
    let (identity, ca_pem) = tls_identity();
    let broker = rt
        .block_on(TestBroker::start(BrokerConfig {
            tls: Some(identity),
            ..BrokerConfig::default()
        }))
        .unwrap();
    assert!(broker.url().starts_with("pulsar+ssl://localhost:"));
    let ca_file = scratch_dir("pulsar-tls-ca").join("ca.pem");
    std::fs::write(&ca_file, ca_pem).unwrap();
    let server = Server::start(
        "pulsar-tls",
        Backends::embedded(),
        &[
            "--egress-allow",
            "127.0.0.0/8",
            "--egress-ca-file",
            ca_file.to_str().unwrap(),
        ],
    );
    let token = server.token(Some(ORG));
    // Raw mode: the payload is stdin; the mapper guest prints "oops" to stderr for `x...`.
    let fid = server.deploy_function(ORG, &token, "{}", &super::endpoint::mapper_wasm());
    let pattern = "persistent://public/default/region-.*";
    ok(server.cli(
        ORG,
        &token,
        &[
            "trigger",
            "pulsar",
            "set",
            &fid,
            "--url",
            &broker.url(),
            "--topic",
            pattern,
            "--regex",
        ],
    ));
    let sub = format!("fnvm-{fid}");
    let topics = [
        "persistent://public/default/region-eu",
        "persistent://public/default/region-us",
    ];
    // Topics exist once named: create them, then wait until the pattern consumer found both.
    for t in topics {
        rt.block_on(async {
            let client: Pulsar<TokioExecutor> = Pulsar::builder(broker.url(), TokioExecutor)
                .with_certificate_chain(std::fs::read(&ca_file).unwrap())
                .build()
                .await
                .unwrap();
            drop(client.producer().with_topic(t).build().await.unwrap());
        });
    }
    eventually(&server, 60, "the pattern consumer on both topics", || {
        topics
            .iter()
            .all(|t| stats(&broker, t, &sub).consumers == 1)
    });
    // Not a matching name: never consumed.
    let other = "persistent://public/default/elsewhere";
    for t in topics.iter().chain([&other]) {
        rt.block_on(async {
            let client: Pulsar<TokioExecutor> = Pulsar::builder(broker.url(), TokioExecutor)
                .with_certificate_chain(std::fs::read(&ca_file).unwrap())
                .build()
                .await
                .unwrap();
            let mut p = client.producer().with_topic(*t).build().await.unwrap();
            for _ in 0..5 {
                p.send_non_blocking(b"x-raw".to_vec())
                    .await
                    .unwrap()
                    .await
                    .unwrap();
            }
        });
    }
    eventually(&server, 60, "both topics consumed", || {
        topics.iter().all(|t| {
            let s = stats(&broker, t, &sub);
            s.acked == 5 && s.backlog == 0
        })
    });
    assert!(broker
        .stats(other)
        .unwrap()
        .subscriptions
        .iter()
        .all(|s| s.name != sub));
    // Raw mode: the mapper read `x` from stdin, so it wrote "oops" to stderr, ten times.
    eventually(&server, 30, "the function's logs", || {
        log_lines(&server, ORG, &token, &fid)
            .iter()
            .filter(|l| *l == "oops")
            .count()
            == 10
    });
}
