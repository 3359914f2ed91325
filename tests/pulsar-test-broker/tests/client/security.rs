//! Token authentication and TLS (`pulsar+ssl://`) with a test CA the client verifies.

use futures::TryStreamExt;
use pulsar::consumer::InitialPosition;
use pulsar::{
    Authentication, ConnectionRetryOptions, Consumer, ConsumerOptions, Pulsar, TokioExecutor,
};

use fnvm_pulsar_test_broker::{BrokerConfig, TestBroker, TlsIdentity};

use crate::common::*;

/// Sends one message and reads it back, proving the connection works end to end.
async fn round_trip(pulsar: &Pulsar<TokioExecutor>, topic: &str) {
    let mut producer = within(pulsar.producer().with_topic(topic).build())
        .await
        .expect("producer");
    within(async { producer.send_non_blocking("hello").await?.await })
        .await
        .expect("send");
    let mut consumer: Consumer<Vec<u8>, _> = within(
        pulsar
            .consumer()
            .with_topic(topic)
            .with_subscription("s")
            .with_options(
                ConsumerOptions::default().with_initial_position(InitialPosition::Earliest),
            )
            .build(),
    )
    .await
    .expect("consumer");
    let msg = within(consumer.try_next())
        .await
        .expect("receive")
        .expect("open");
    assert_eq!(msg.payload.data, b"hello");
}

/// Builds a client and creates a producer: `Err` if either step fails.
async fn try_connect(url: &str, auth: Option<Authentication>) -> Result<(), pulsar::Error> {
    let mut builder =
        Pulsar::builder(url, TokioExecutor).with_connection_retry_options(ConnectionRetryOptions {
            max_retries: 1,
            ..Default::default()
        });
    if let Some(auth) = auth {
        builder = builder.with_auth(auth);
    }
    let pulsar = builder.build().await?;
    pulsar.producer().with_topic("t").build().await.map(drop)
}

fn token(t: &str) -> Option<Authentication> {
    Some(Authentication {
        name: "token".into(),
        data: t.as_bytes().to_vec(),
    })
}

#[tokio::test]
async fn token_auth_accepts_the_right_token_only() {
    let broker = TestBroker::start(BrokerConfig {
        auth_token: Some("s3cret".into()),
        ..Default::default()
    })
    .await
    .expect("broker");
    let url = broker.url();
    // pulsar-rs reports a refused CONNECT as a generic "fatal error when connecting" (the
    // AuthenticationError only reaches its log), so the refusals below can only be checked as
    // errors; the client with the right token is the control that the broker itself works.
    let good = within(
        Pulsar::builder(url.clone(), TokioExecutor)
            .with_auth(Authentication {
                name: "token".into(),
                data: b"s3cret".to_vec(),
            })
            .build(),
    )
    .await
    .expect("client with the right token");
    round_trip(&good, "authed").await;

    assert!(
        within(try_connect(&url, token("wrong"))).await.is_err(),
        "wrong token refused"
    );
    assert!(
        within(try_connect(&url, None)).await.is_err(),
        "missing token refused"
    );
    let other_method = Some(Authentication {
        name: "basic".into(),
        data: b"s3cret".to_vec(),
    });
    assert!(
        within(try_connect(&url, other_method)).await.is_err(),
        "other method refused"
    );
    // Refused clients created nothing.
    assert_eq!(broker.topics(), vec!["persistent://public/default/authed"]);
    broker.shutdown().await;
}

/// A CA and a `localhost` certificate it signed: (identity for the broker, CA PEM).
fn test_identity() -> (TlsIdentity, String) {
    let ca_key = rcgen::KeyPair::generate().expect("CA key");
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "fnvm pulsar test CA");
    let ca_cert = ca.self_signed(&ca_key).expect("CA cert");
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = rcgen::KeyPair::generate().expect("leaf key");
    let leaf = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .expect("leaf params")
        .signed_by(&key, &issuer)
        .expect("leaf cert");
    let identity = TlsIdentity {
        cert_chain_pem: leaf.pem().into_bytes(),
        private_key_pem: key.serialize_pem().into_bytes(),
    };
    (identity, ca_cert.pem())
}

#[tokio::test]
async fn tls_with_a_verified_test_ca() {
    let (identity, ca_pem) = test_identity();
    let broker = TestBroker::start(BrokerConfig {
        tls: Some(identity),
        ..Default::default()
    })
    .await
    .expect("broker");
    let url = broker.url();
    assert!(url.starts_with("pulsar+ssl://localhost:"), "{url}");

    let pulsar = within(
        Pulsar::builder(url.clone(), TokioExecutor)
            .with_certificate_chain(ca_pem.into_bytes())
            .build(),
    )
    .await
    .expect("TLS client trusting the test CA");
    round_trip(&pulsar, "secure").await;

    // Without the CA the client must reject the certificate: verification is real.
    assert!(
        within(try_connect(&url, None)).await.is_err(),
        "untrusted certificate refused"
    );
    // A plain-TCP client cannot talk to the TLS listener either.
    let plain = url.replace("pulsar+ssl://localhost", "pulsar://127.0.0.1");
    assert!(
        within(try_connect(&plain, None)).await.is_err(),
        "plain TCP refused"
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn invalid_tls_identity_is_an_error() {
    let result = TestBroker::start(BrokerConfig {
        tls: Some(TlsIdentity {
            cert_chain_pem: b"not a certificate".to_vec(),
            private_key_pem: b"not a key".to_vec(),
        }),
        ..Default::default()
    })
    .await;
    assert!(result.is_err());
}
