//! Runs a standalone test broker on a given address, for benchmarks and manual experiments:
//! `pulsar-test-broker [ADDR]` (default 127.0.0.1:6650). Plain TCP, no authentication.

use fnvm_pulsar_test_broker::{BrokerConfig, TestBroker};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let listen = match std::env::args().nth(1) {
        Some(addr) => addr.parse()?,
        None => "127.0.0.1:6650".parse()?,
    };
    let broker = TestBroker::start(BrokerConfig {
        listen,
        ..BrokerConfig::default()
    })
    .await?;
    println!("{}", broker.url());
    tokio::signal::ctrl_c().await?;
    broker.shutdown().await;
    Ok(())
}
