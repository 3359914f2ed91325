//! Producing and consuming: round trip of payloads, properties and keys, batches, Shared
//! subscriptions splitting messages, and the regex (pattern) multi-topic consumer.

use std::collections::{BTreeSet, HashMap};

use futures::TryStreamExt;
use pulsar::consumer::InitialPosition;
use pulsar::{Consumer, ConsumerOptions, ProducerOptions, SubType};

use crate::common::*;

#[tokio::test]
async fn produce_100_consume_shared_round_trip() {
    let broker = broker().await;
    let pulsar = client(&broker.url()).await;
    let mut producer = within(pulsar.producer().with_topic("t").build())
        .await
        .expect("producer");
    let mut receipts = Vec::new();
    for i in 0..100 {
        let receipt = within(async {
            producer
                .create_message()
                .with_content(format!("m{i}").into_bytes())
                .with_property("i", i.to_string())
                .with_key(format!("k{i}"))
                .send_non_blocking()
                .await
                .expect("send")
                .await
                .expect("receipt")
        })
        .await;
        receipts.push(receipt);
    }
    // Receipts carry distinct entry ids in publish order.
    let entries: Vec<u64> = receipts
        .iter()
        .map(|r| r.message_id.as_ref().expect("message id").entry_id)
        .collect();
    assert_eq!(entries, (0..100).collect::<Vec<u64>>());
    assert_eq!(broker.topics(), vec!["persistent://public/default/t"]);

    let mut consumer: Consumer<Vec<u8>, _> = within(
        pulsar
            .consumer()
            .with_topic("t")
            .with_subscription("s")
            .with_subscription_type(SubType::Shared)
            .with_options(
                ConsumerOptions::default().with_initial_position(InitialPosition::Earliest),
            )
            .build(),
    )
    .await
    .expect("consumer");
    for i in 0..100 {
        let msg = within(consumer.try_next())
            .await
            .expect("receive")
            .expect("stream open");
        assert_eq!(msg.payload.data, format!("m{i}").into_bytes());
        assert_eq!(msg.key(), Some(format!("k{i}")));
        let props: HashMap<_, _> = msg
            .metadata()
            .properties
            .iter()
            .map(|p| (p.key.clone(), p.value.clone()))
            .collect();
        assert_eq!(props.get("i"), Some(&i.to_string()));
        within(consumer.ack(&msg)).await.expect("ack");
    }
    eventually("100 acks", || sub_stats(&broker, "t", "s").acked == 100).await;
    // Each acknowledged entry's delay since it was stored, once.
    let delays = broker.take_ack_delays("t", "s");
    assert_eq!(delays.len(), 100);
    assert!(delays.iter().all(|d| *d < STEP), "{delays:?}");
    assert!(delays.iter().any(|d| !d.is_zero()));
    assert!(broker.take_ack_delays("t", "s").is_empty());
    assert!(broker.take_ack_delays("t", "nobody").is_empty());
    let stats = broker.stats("t").expect("topic stats");
    assert_eq!(stats.published, 100);
    let sub = sub_stats(&broker, "t", "s");
    assert_eq!(
        (sub.backlog, sub.unacked_in_flight, sub.consumers),
        (0, 0, 1)
    );

    let stored = broker.messages("persistent://public/default/t");
    assert_eq!(stored.len(), 100);
    assert_eq!(stored[7].payload, b"m7");
    assert_eq!(stored[7].key.as_deref(), Some("k7"));
    assert_eq!(
        stored[7].properties,
        vec![("i".to_string(), "7".to_string())]
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn batched_sends_count_their_messages() {
    let broker = broker().await;
    let pulsar = client(&broker.url()).await;
    let mut consumer: Consumer<Vec<u8>, _> = within(
        pulsar
            .consumer()
            .with_topic("batched")
            .with_subscription("s")
            .with_subscription_type(SubType::Shared)
            .build(),
    )
    .await
    .expect("consumer");
    let mut producer = within(
        pulsar
            .producer()
            .with_topic("batched")
            .with_options(ProducerOptions {
                batch_size: Some(10),
                ..Default::default()
            })
            .build(),
    )
    .await
    .expect("producer");
    let mut pending = Vec::new();
    for i in 0..25 {
        let fut = within(producer.send_non_blocking(format!("b{i}").into_bytes()))
            .await
            .expect("queue");
        pending.push(fut);
    }
    within(producer.send_batch()).await.expect("flush");
    for fut in pending {
        within(fut).await.expect("receipt");
    }
    let stats = broker.stats("batched").expect("stats");
    assert_eq!(stats.published, 25);
    let stored = broker.messages("batched");
    let payloads: Vec<Vec<u8>> = stored.into_iter().map(|m| m.payload).collect();
    let expected: Vec<Vec<u8>> = (0..25).map(|i| format!("b{i}").into_bytes()).collect();
    assert_eq!(payloads, expected);

    let mut got = Vec::new();
    while got.len() < 25 {
        let msg = within(consumer.try_next())
            .await
            .expect("receive")
            .expect("open");
        got.push(msg.payload.data.clone());
        within(consumer.ack(&msg)).await.expect("ack");
    }
    assert_eq!(got, expected);
    eventually("25 acks", || sub_stats(&broker, "batched", "s").acked == 25).await;
    assert_eq!(sub_stats(&broker, "batched", "s").backlog, 0);
    broker.shutdown().await;
}

#[tokio::test]
async fn two_shared_consumers_split_the_messages() {
    let broker = broker().await;
    let pulsar = client(&broker.url()).await;
    let mut consumers = Vec::new();
    for name in ["c1", "c2"] {
        let c: Consumer<Vec<u8>, _> = within(
            pulsar
                .consumer()
                .with_topic("split")
                .with_subscription("s")
                .with_consumer_name(name)
                .with_subscription_type(SubType::Shared)
                .build(),
        )
        .await
        .expect("consumer");
        consumers.push(c);
    }
    eventually("2 consumers", || {
        sub_stats(&broker, "split", "s").consumers == 2
    })
    .await;
    let mut producer = within(pulsar.producer().with_topic("split").build())
        .await
        .expect("producer");
    for i in 0..100 {
        within(async { producer.send_non_blocking(format!("{i}")).await?.await })
            .await
            .expect("send");
    }
    let [mut c1, mut c2] = <[_; 2]>::try_from(consumers).unwrap_or_else(|_| unreachable!());
    // Both consumers read concurrently until neither gets anything for a while.
    let (s1, s2) = within(futures::future::join(drain(&mut c1), drain(&mut c2))).await;
    let seen = [s1, s2];
    let (n1, n2) = (seen[0].len(), seen[1].len());
    assert!(
        n1 > 0 && n2 > 0,
        "both consumers got messages: {n1} and {n2}"
    );
    assert_eq!(n1 + n2, 100, "no message twice");
    let all: BTreeSet<u32> = seen
        .iter()
        .flatten()
        .map(|s| s.parse().expect("number"))
        .collect();
    assert_eq!(all, (0..100).collect());
    eventually("100 acks", || sub_stats(&broker, "split", "s").acked == 100).await;
    broker.shutdown().await;
}

#[tokio::test]
async fn regex_consumer_reads_matching_topics_of_the_namespace() {
    let broker = broker().await;
    let pulsar = client(&broker.url()).await;
    for topic in ["pat-a", "pat-b", "other"] {
        let mut p = within(pulsar.producer().with_topic(topic).build())
            .await
            .expect("producer");
        for i in 0..5 {
            within(async { p.send_non_blocking(format!("{topic}/{i}")).await?.await })
                .await
                .expect("send");
        }
    }
    let regex = regex::Regex::new("persistent://public/default/pat-.*").expect("regex");
    let mut consumer: Consumer<Vec<u8>, _> = within(
        pulsar
            .consumer()
            .with_topic_regex(regex)
            .with_lookup_namespace("public/default")
            .with_subscription("pattern")
            .with_subscription_type(SubType::Shared)
            .with_options(
                ConsumerOptions::default().with_initial_position(InitialPosition::Earliest),
            )
            .build(),
    )
    .await
    .expect("pattern consumer");
    let mut got = BTreeSet::new();
    while got.len() < 10 {
        let msg = within(consumer.try_next())
            .await
            .expect("receive")
            .expect("open");
        got.insert(String::from_utf8(msg.payload.data.clone()).expect("utf8"));
        within(consumer.ack(&msg)).await.expect("ack");
    }
    let expected: BTreeSet<String> = ["pat-a", "pat-b"]
        .iter()
        .flat_map(|t| (0..5).map(move |i| format!("{t}/{i}")))
        .collect();
    assert_eq!(got, expected);
    // Nothing subscribed to the topic the pattern does not match.
    assert!(broker
        .stats("other")
        .expect("stats")
        .subscriptions
        .is_empty());
    eventually("pat-a acks", || {
        sub_stats(&broker, "pat-a", "pattern").acked == 5
    })
    .await;
    eventually("pat-b acks", || {
        sub_stats(&broker, "pat-b", "pattern").acked == 5
    })
    .await;
    broker.shutdown().await;
}

/// Receives and acks until no message arrives for half a second; returns the payloads.
async fn drain(c: &mut Consumer<Vec<u8>, pulsar::TokioExecutor>) -> Vec<String> {
    let mut out = Vec::new();
    while let Ok(next) =
        tokio::time::timeout(std::time::Duration::from_millis(500), c.try_next()).await
    {
        let msg = next.expect("receive").expect("open");
        out.push(String::from_utf8(msg.payload.data.clone()).expect("utf8"));
        c.ack(&msg).await.expect("ack");
    }
    out
}
