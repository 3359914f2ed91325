//! At-least-once delivery: redelivery after a consumer leaves, negative acks (and the client's
//! dead-letter policy, which is what makes the broker's redelivery_count visible), reconnection
//! after the broker drops every connection, and flow control under a large backlog.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::TryStreamExt;
use pulsar::consumer::{DeadLetterPolicy, InitialPosition};
use pulsar::{Consumer, ConsumerOptions, Pulsar, SubType, TokioExecutor};

use crate::common::*;

async fn shared_consumer(
    pulsar: &Pulsar<TokioExecutor>,
    topic: &str,
    sub: &str,
) -> Consumer<Vec<u8>, TokioExecutor> {
    within(
        pulsar
            .consumer()
            .with_topic(topic)
            .with_subscription(sub)
            .with_subscription_type(SubType::Shared)
            .with_options(
                ConsumerOptions::default().with_initial_position(InitialPosition::Earliest),
            )
            .build(),
    )
    .await
    .expect("consumer")
}

async fn publish(pulsar: &Pulsar<TokioExecutor>, topic: &str, n: usize) {
    let mut producer = within(pulsar.producer().with_topic(topic).build())
        .await
        .expect("producer");
    for i in 0..n {
        within(async { producer.send_non_blocking(format!("{i}")).await?.await })
            .await
            .expect("send");
    }
}

#[tokio::test]
async fn unacked_messages_of_a_dropped_consumer_are_redelivered() {
    let broker = broker().await;
    let pulsar = client(&broker.url()).await;
    publish(&pulsar, "redeliver", 10).await;
    let mut first = shared_consumer(&pulsar, "redeliver", "s").await;
    for _ in 0..10 {
        within(first.try_next())
            .await
            .expect("receive")
            .expect("open");
    }
    assert_eq!(sub_stats(&broker, "redeliver", "s").unacked_in_flight, 10);
    drop(first);
    eventually("consumer gone", || {
        sub_stats(&broker, "redeliver", "s").consumers == 0
    })
    .await;
    assert_eq!(sub_stats(&broker, "redeliver", "s").unacked_in_flight, 0);

    let mut second = shared_consumer(&pulsar, "redeliver", "s").await;
    let mut got = BTreeSet::new();
    while got.len() < 10 {
        let msg = within(second.try_next())
            .await
            .expect("receive")
            .expect("open");
        got.insert(String::from_utf8(msg.payload.data.clone()).expect("utf8"));
        within(second.ack(&msg)).await.expect("ack");
    }
    assert_eq!(got, (0..10).map(|i| i.to_string()).collect());
    eventually("acks", || sub_stats(&broker, "redeliver", "s").acked == 10).await;
    let stats = sub_stats(&broker, "redeliver", "s");
    assert_eq!(
        stats.redelivered, 10,
        "every message went out a second time"
    );
    assert_eq!(stats.backlog, 0);
    broker.shutdown().await;
}

#[tokio::test]
async fn nack_redelivers_and_dead_letter_policy_sees_redelivery_count() {
    let broker = broker().await;
    let pulsar = client(&broker.url()).await;
    publish(&pulsar, "nacked", 1).await;

    let mut consumer = shared_consumer(&pulsar, "nacked", "s").await;
    let msg = within(consumer.try_next())
        .await
        .expect("receive")
        .expect("open");
    assert_eq!(msg.payload.data, b"0");
    within(consumer.nack(&msg)).await.expect("nack");
    let again = within(consumer.try_next())
        .await
        .expect("receive")
        .expect("open");
    assert_eq!(again.payload.data, b"0");
    assert_eq!(again.message_id(), msg.message_id());
    within(consumer.ack(&again)).await.expect("ack");
    eventually("ack", || sub_stats(&broker, "nacked", "s").acked == 1).await;
    assert_eq!(sub_stats(&broker, "nacked", "s").redelivered, 1);
    drop(consumer);

    // The client sends a message to its dead-letter topic once the broker's redelivery_count
    // reaches max_redeliver_count, so this only passes if MESSAGE carries the count.
    publish(&pulsar, "dlq-source", 1).await;
    let mut consumer: Consumer<Vec<u8>, _> = within(
        pulsar
            .consumer()
            .with_topic("dlq-source")
            .with_subscription("s")
            .with_subscription_type(SubType::Shared)
            .with_options(
                ConsumerOptions::default().with_initial_position(InitialPosition::Earliest),
            )
            .with_dead_letter_policy(DeadLetterPolicy {
                max_redeliver_count: 1,
                dead_letter_topic: "dlq".into(),
            })
            .build(),
    )
    .await
    .expect("consumer");
    let msg = within(consumer.try_next())
        .await
        .expect("receive")
        .expect("open");
    within(consumer.nack(&msg)).await.expect("nack");
    eventually("dead letter", || broker.messages("dlq").len() == 1).await;
    let dead = &broker.messages("dlq")[0];
    assert_eq!(dead.payload, b"0");
    assert!(
        dead.properties
            .iter()
            .any(|(k, v)| k == "REAL_TOPIC" && v == "dlq-source"),
        "{dead:?}"
    );
    // The client names the original by the id the broker gave it (ledger:entry:partition).
    assert!(
        dead.properties
            .iter()
            .any(|(k, v)| k == "ORIGIN_MESSAGE_ID" && v.ends_with(":0:-1")),
        "{dead:?}"
    );
    // The client acks the original after dead-lettering it.
    eventually("ack after DLQ", || {
        sub_stats(&broker, "dlq-source", "s").acked == 1
    })
    .await;
    broker.shutdown().await;
}

#[tokio::test]
async fn clients_reconnect_after_drop_connections() {
    let broker = broker().await;
    // Separate clients, so separate connections: pulsar-rs does not set TCP_NODELAY, and
    // acks and sends interleaved on one connection wait out delayed ACKs (~40 ms per send).
    let consuming = client(&broker.url()).await;
    let producing = client(&broker.url()).await;
    let mut consumer = shared_consumer(&consuming, "restart", "s").await;
    let mut producer = within(producing.producer().with_topic("restart").build())
        .await
        .expect("producer");

    let received = Arc::new(Mutex::new(BTreeSet::<u32>::new()));
    let reader = {
        let received = received.clone();
        tokio::spawn(async move {
            while let Ok(Some(msg)) = consumer.try_next().await {
                let n = String::from_utf8_lossy(&msg.payload.data)
                    .parse()
                    .unwrap_or(u32::MAX);
                received.lock().expect("lock").insert(n);
                // An ack lost with the connection is fine: the message comes again.
                let _ = consumer.ack(&msg).await;
            }
        })
    };
    let mut confirmed = BTreeSet::new();
    for i in 0..150u32 {
        if i == 50 || i == 100 {
            broker.drop_connections();
        }
        let sent = tokio::time::timeout(STEP, async {
            producer.send_non_blocking(i.to_string()).await?.await
        })
        .await
        .expect("send did not hang");
        // A send may fail around the drop; only receipted messages must arrive.
        if sent.is_ok() {
            confirmed.insert(i);
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert!(
        confirmed.len() >= 140,
        "most sends succeed: {}",
        confirmed.len()
    );
    assert!(
        confirmed.contains(&149),
        "the producer works after the drops"
    );
    eventually("every confirmed message received", || {
        confirmed.is_subset(&received.lock().expect("lock"))
    })
    .await;
    assert!(
        sub_stats(&broker, "restart", "s").consumers == 1,
        "consumer came back"
    );
    // Acks lost with the connections are made good by redelivery: in the end every published
    // message is acknowledged, none stuck with a consumer that is gone.
    eventually("backlog drained", || {
        let s = sub_stats(&broker, "restart", "s");
        s.backlog == 0 && s.unacked_in_flight == 0
    })
    .await;
    reader.abort();
    broker.shutdown().await;
}

#[tokio::test]
async fn flow_control_bounds_outstanding_messages() {
    const QUEUE: u32 = 20;
    let broker = broker().await;
    let pulsar = client(&broker.url()).await;
    let mut producer = within(pulsar.producer().with_topic("flow").build())
        .await
        .expect("producer");
    // Pipelined sends, awaited in chunks smaller than the client's outbound queue (which
    // answers SlowDown when full), to fill the backlog quickly.
    for chunk in 0..200 {
        let mut receipts = Vec::new();
        for i in 0..50 {
            let fut = within(producer.send_non_blocking(format!("{}", chunk * 50 + i)))
                .await
                .expect("queue send");
            receipts.push(fut);
        }
        for r in receipts {
            within(r).await.expect("receipt");
        }
    }
    assert_eq!(broker.stats("flow").expect("stats").published, 10_000);

    let mut consumer: Consumer<Vec<u8>, _> = within(
        pulsar
            .consumer()
            .with_topic("flow")
            .with_subscription("slow")
            .with_subscription_type(SubType::Shared)
            .with_batch_size(QUEUE)
            .with_options(
                ConsumerOptions::default()
                    .with_initial_position(InitialPosition::Earliest)
                    .with_receiver_queue_size(QUEUE),
            )
            .build(),
    )
    .await
    .expect("consumer");
    let mut held = Vec::new();
    for _ in 0..5 {
        held.push(
            within(consumer.try_next())
                .await
                .expect("receive")
                .expect("open"),
        );
    }
    // The client's queue fills and its engine stops asking for more: the broker must stop too.
    // Wait until dispatch settles (two equal snapshots 300 ms apart); if the broker ignored
    // permits it would settle only with the whole backlog in flight, failing the bounds below.
    let mut before = sub_stats(&broker, "flow", "slow");
    let after = within(async {
        loop {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let now = sub_stats(&broker, "flow", "slow");
            if now.unacked_in_flight == before.unacked_in_flight && now.unacked_in_flight > 0 {
                break now;
            }
            before = now;
        }
    })
    .await;
    assert!(
        before.max_permits_seen <= u64::from(QUEUE),
        "permits {before:?}"
    );
    assert!(before.max_permits_seen > 0);
    // Client-side buffering (its queue, one message in hand, permits granted) bounds what is
    // out; far below the backlog.
    assert!(
        (5..=u64::from(3 * QUEUE)).contains(&after.unacked_in_flight),
        "in flight {after:?}"
    );
    assert_eq!(after.backlog, 10_000);

    // Consuming and acking keeps the same bound.
    for msg in held.drain(..) {
        within(consumer.ack(&msg)).await.expect("ack");
    }
    for _ in 0..200 {
        let msg = within(consumer.try_next())
            .await
            .expect("receive")
            .expect("open");
        within(consumer.ack(&msg)).await.expect("ack");
        let s = sub_stats(&broker, "flow", "slow");
        assert!(s.max_permits_seen <= u64::from(QUEUE), "permits {s:?}");
        assert!(
            s.unacked_in_flight <= u64::from(3 * QUEUE),
            "in flight {s:?}"
        );
    }
    eventually("205 acks", || {
        sub_stats(&broker, "flow", "slow").acked == 205
    })
    .await;
    broker.shutdown().await;
}

#[tokio::test]
async fn drop_connections_returns_unacked_messages_for_redelivery() {
    let broker = broker().await;
    let pulsar = client(&broker.url()).await;
    publish(&pulsar, "held", 10).await;
    let mut consumer = shared_consumer(&pulsar, "held", "s").await;
    let mut first = BTreeSet::new();
    for _ in 0..10 {
        let msg = within(consumer.try_next())
            .await
            .expect("receive")
            .expect("open");
        first.insert(msg.payload.data.clone());
    }
    assert_eq!(sub_stats(&broker, "held", "s").unacked_in_flight, 10);
    broker.drop_connections();
    // The consumer reconnects by itself and gets the 10 unacknowledged messages again.
    let mut again = BTreeSet::new();
    while again.len() < 10 {
        let msg = within(consumer.try_next())
            .await
            .expect("receive")
            .expect("open");
        again.insert(msg.payload.data.clone());
        within(consumer.ack(&msg)).await.expect("ack");
    }
    assert_eq!(first, again);
    eventually("acks", || sub_stats(&broker, "held", "s").acked == 10).await;
    let stats = sub_stats(&broker, "held", "s");
    assert_eq!((stats.redelivered, stats.backlog), (10, 0));
    broker.shutdown().await;
}

#[tokio::test]
async fn unacked_message_resend_delay_redelivers() {
    let broker = broker().await;
    let pulsar = client(&broker.url()).await;
    publish(&pulsar, "resend", 1).await;
    let mut consumer: Consumer<Vec<u8>, _> = within(
        pulsar
            .consumer()
            .with_topic("resend")
            .with_subscription("s")
            .with_subscription_type(SubType::Shared)
            .with_options(
                ConsumerOptions::default().with_initial_position(InitialPosition::Earliest),
            )
            .with_unacked_message_resend_delay(Some(Duration::from_millis(100)))
            .build(),
    )
    .await
    .expect("consumer");
    let msg = within(consumer.try_next())
        .await
        .expect("receive")
        .expect("open");
    // Not acked: the client's timer (every 500 ms) asks the broker to redeliver it.
    let again = within(consumer.try_next())
        .await
        .expect("receive")
        .expect("open");
    assert_eq!(again.message_id(), msg.message_id());
    within(consumer.ack(&again)).await.expect("ack");
    eventually("ack", || sub_stats(&broker, "resend", "s").acked == 1).await;
    assert_eq!(sub_stats(&broker, "resend", "s").redelivered, 1);
    broker.shutdown().await;
}
