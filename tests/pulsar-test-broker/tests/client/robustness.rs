//! Malformed input from a client closes that connection only; the broker keeps serving.

use std::time::Duration;

use futures::TryStreamExt;
use pulsar::consumer::InitialPosition;
use pulsar::{Consumer, ConsumerOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::*;

/// Writes `bytes` (then, if `half_close`, shuts the write side) and expects the broker to
/// close the connection: EOF or a reset, within the step timeout.
async fn expect_closed(addr: std::net::SocketAddr, bytes: &[u8], half_close: bool) {
    let mut stream = within(TcpStream::connect(addr)).await.expect("connect");
    // The broker may close before everything is written; that is the point.
    let _ = stream.write_all(bytes).await;
    if half_close {
        let _ = stream.shutdown().await;
    }
    let mut sink = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut sink)).await;
    assert!(
        closed.is_ok(),
        "broker kept the connection open after {bytes:?}"
    );
}

/// A frame with a valid length whose command is not valid protobuf.
fn bad_protobuf_frame() -> Vec<u8> {
    let body = [0xffu8; 16];
    let mut frame = Vec::new();
    frame.extend_from_slice(&(4 + body.len() as u32).to_be_bytes());
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(&body);
    frame
}

/// A well-formed PING sent before CONNECT.
fn ping_before_connect() -> Vec<u8> {
    // BaseCommand { type = PING (18), ping = {} (field 18) }
    let command = [0x08, 18, 0x92, 0x01, 0x00];
    let mut frame = Vec::new();
    frame.extend_from_slice(&(4 + command.len() as u32).to_be_bytes());
    frame.extend_from_slice(&(command.len() as u32).to_be_bytes());
    frame.extend_from_slice(&command);
    frame
}

#[tokio::test]
async fn malformed_input_closes_only_that_connection() {
    let broker = broker().await;
    let addr = broker.addr();

    // A real client connected before the garbage keeps working afterwards.
    let pulsar = client(&broker.url()).await;
    let mut producer = within(pulsar.producer().with_topic("survivor").build())
        .await
        .expect("producer");

    expect_closed(addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", false).await;
    expect_closed(addr, &[0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 1], false).await;
    expect_closed(addr, &[0, 0, 0, 100, 0, 0, 0, 10, 1, 2, 3], true).await;
    expect_closed(addr, &[0, 0, 0, 8, 0, 0, 0, 50, 0, 0, 0, 0], false).await;
    expect_closed(addr, &bad_protobuf_frame(), false).await;
    expect_closed(addr, &ping_before_connect(), false).await;

    within(async { producer.send_non_blocking("still here").await?.await })
        .await
        .expect("old client still sends");
    let fresh = client(&broker.url()).await;
    let mut consumer: Consumer<Vec<u8>, _> = within(
        fresh
            .consumer()
            .with_topic("survivor")
            .with_subscription("s")
            .with_options(
                ConsumerOptions::default().with_initial_position(InitialPosition::Earliest),
            )
            .build(),
    )
    .await
    .expect("new client subscribes");
    let msg = within(consumer.try_next())
        .await
        .expect("receive")
        .expect("open");
    assert_eq!(msg.payload.data, b"still here");
    broker.shutdown().await;
}
