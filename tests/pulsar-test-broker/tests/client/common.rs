//! Helpers shared by the client tests: starting brokers and clients, bounded waits.

use std::future::Future;
use std::time::Duration;

use fnvm_pulsar_test_broker::{BrokerConfig, SubscriptionStats, TestBroker};
use pulsar::{Pulsar, TokioExecutor};

/// Upper bound for any single step; a hang fails the test instead of blocking the suite.
pub const STEP: Duration = Duration::from_secs(20);

pub async fn broker() -> TestBroker {
    TestBroker::start(BrokerConfig::default())
        .await
        .expect("broker starts")
}

pub async fn client(url: &str) -> Pulsar<TokioExecutor> {
    within(Pulsar::builder(url, TokioExecutor).build())
        .await
        .expect("client connects")
}

/// Awaits `fut`, failing the test if it takes longer than [`STEP`].
pub async fn within<T>(fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(STEP, fut)
        .await
        .expect("step timed out")
}

/// Polls `check` until it holds, failing the test after [`STEP`].
pub async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + STEP;
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The stats of one subscription of a topic.
pub fn sub_stats(broker: &TestBroker, topic: &str, sub: &str) -> SubscriptionStats {
    broker
        .stats(topic)
        .and_then(|t| t.subscriptions.into_iter().find(|s| s.name == sub))
        .unwrap_or_default()
}
