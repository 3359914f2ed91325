//! Subscription types and their rules (Exclusive refuses a second consumer, Failover sends to
//! the active consumer only), cumulative acks, unsubscribe and GET_LAST_MESSAGE_ID.

use futures::TryStreamExt;
use pulsar::consumer::InitialPosition;
use pulsar::{Consumer, ConsumerOptions, OperationRetryOptions, Pulsar, SubType, TokioExecutor};

use crate::common::*;

async fn consumer(
    pulsar: &Pulsar<TokioExecutor>,
    topic: &str,
    sub_type: SubType,
) -> Result<Consumer<Vec<u8>, TokioExecutor>, pulsar::Error> {
    pulsar
        .consumer()
        .with_topic(topic)
        .with_subscription("s")
        .with_subscription_type(sub_type)
        .with_options(ConsumerOptions::default().with_initial_position(InitialPosition::Earliest))
        .build()
        .await
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
async fn exclusive_refuses_a_second_consumer() {
    let broker = broker().await;
    // ConsumerBusy is retried by the client; with no retries the refusal surfaces at once.
    let pulsar = within(
        Pulsar::builder(broker.url(), TokioExecutor)
            .with_operation_retry_options(OperationRetryOptions {
                max_retries: Some(0),
                ..Default::default()
            })
            .build(),
    )
    .await
    .expect("client");
    let first = within(consumer(&pulsar, "excl", SubType::Exclusive))
        .await
        .expect("first consumer");
    let second = within(consumer(&pulsar, "excl", SubType::Exclusive)).await;
    assert!(second.is_err(), "second exclusive consumer refused");
    assert_eq!(sub_stats(&broker, "excl", "s").consumers, 1);
    drop(first);
    eventually("first gone", || {
        sub_stats(&broker, "excl", "s").consumers == 0
    })
    .await;
    within(consumer(&pulsar, "excl", SubType::Exclusive))
        .await
        .expect("exclusive again once the first left");
    broker.shutdown().await;
}

#[tokio::test]
async fn failover_sends_to_the_active_consumer_only() {
    let broker = broker().await;
    let pulsar = client(&broker.url()).await;
    let mut active = within(consumer(&pulsar, "fo", SubType::Failover))
        .await
        .expect("first");
    let mut standby = within(consumer(&pulsar, "fo", SubType::Failover))
        .await
        .expect("second");
    publish(&pulsar, "fo", 10).await;
    for i in 0..10 {
        let msg = within(active.try_next())
            .await
            .expect("receive")
            .expect("open");
        assert_eq!(msg.payload.data, i.to_string().into_bytes());
        within(active.ack(&msg)).await.expect("ack");
    }
    let idle =
        tokio::time::timeout(std::time::Duration::from_millis(300), standby.try_next()).await;
    assert!(idle.is_err(), "standby received nothing");
    eventually("acks", || sub_stats(&broker, "fo", "s").acked == 10).await;
    broker.shutdown().await;
}

#[tokio::test]
async fn cumulative_ack_last_message_id_and_unsubscribe() {
    let broker = broker().await;
    let pulsar = client(&broker.url()).await;
    publish(&pulsar, "cumul", 10).await;
    let mut c = within(consumer(&pulsar, "cumul", SubType::Exclusive))
        .await
        .expect("consumer");
    let mut last = None;
    for _ in 0..10 {
        last = Some(within(c.try_next()).await.expect("receive").expect("open"));
    }
    let last = last.expect("ten messages");
    within(c.cumulative_ack(&last))
        .await
        .expect("cumulative ack");
    eventually("cumulative ack", || {
        sub_stats(&broker, "cumul", "s").acked == 10
    })
    .await;
    let s = sub_stats(&broker, "cumul", "s");
    assert_eq!((s.backlog, s.unacked_in_flight), (0, 0));

    let ids = within(c.get_last_message_id())
        .await
        .expect("last message id");
    assert_eq!(ids.len(), 1);
    assert_eq!(ids[0].entry_id, 9);
    assert_eq!(ids[0].ledger_id, last.message_id().ledger_id);

    within(c.unsubscribe()).await.expect("unsubscribe");
    let stats = broker.stats("cumul").expect("stats");
    assert!(stats.subscriptions.is_empty(), "{stats:?}");
    assert_eq!(stats.published, 10);
    broker.shutdown().await;
}
