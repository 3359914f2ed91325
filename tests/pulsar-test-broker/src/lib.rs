//! An in-process Apache Pulsar **test double**: a broker speaking the subset of the Pulsar binary
//! protocol that the `pulsar` (pulsar-rs) client uses, so fnvm's tests can produce and consume
//! with the real client without a Pulsar server. This file owns the public API: configuration,
//! starting and stopping the broker, the accept loop, and the inspection calls tests use.
//!
//! State lives in memory only. See README.md for the implemented protocol subset and for what
//! was verified (against the real client only, never against a real Pulsar broker).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

mod codec;
mod connection;
mod dispatch;
mod proto;
mod state;
mod tls;

use state::State;

/// How to run a [`TestBroker`].
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// Address to listen on; tests use `127.0.0.1:0`.
    pub listen: SocketAddr,
    /// When set, the broker speaks TLS only (`pulsar+ssl://`).
    pub tls: Option<TlsIdentity>,
    /// When set, CONNECT must carry auth method `token` with exactly this token.
    pub auth_token: Option<String>,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            tls: None,
            auth_token: None,
        }
    }
}

/// The broker's TLS certificate chain and private key, PEM-encoded.
#[derive(Clone)]
pub struct TlsIdentity {
    pub cert_chain_pem: Vec<u8>,
    pub private_key_pem: Vec<u8>,
}

impl std::fmt::Debug for TlsIdentity {
    // The key stays out of logs and test failure output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsIdentity")
            .field(
                "cert_chain_pem",
                &format_args!("{} bytes", self.cert_chain_pem.len()),
            )
            .finish_non_exhaustive()
    }
}

/// Why the broker could not start.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("could not listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("invalid TLS identity: {0}")]
    Tls(String),
}

/// Per-topic counters, as [`TestBroker::stats`] reports them.
#[derive(Debug, Clone, Default)]
pub struct TopicStats {
    /// Messages accepted from producers (a batch counts its entries).
    pub published: u64,
    pub subscriptions: Vec<SubscriptionStats>,
}

/// Per-subscription counters; all counts are in messages.
#[derive(Debug, Clone, Default)]
pub struct SubscriptionStats {
    pub name: String,
    pub consumers: usize,
    pub acked: u64,
    /// Published since the subscription started and not yet acknowledged.
    pub backlog: u64,
    /// Dispatched to a consumer and not yet acknowledged.
    pub unacked_in_flight: u64,
    /// Messages dispatched again after a nack, a redelivery request or a consumer leaving.
    pub redelivered: u64,
    /// Largest outstanding flow permits any consumer of the subscription ever had.
    pub max_permits_seen: u64,
    /// Largest number of entries any one consumer had dispatched and not yet acknowledged.
    pub max_consumer_in_flight: u64,
}

/// A published message as stored, for tests that read a topic without consuming it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    pub payload: Vec<u8>,
    pub properties: Vec<(String, String)>,
    /// The partition key the producer set, if any.
    pub key: Option<String>,
}

/// State shared by the accept loop, every connection and the [`TestBroker`] handle.
#[derive(Debug)]
pub(crate) struct Shared {
    state: Mutex<State>,
    pub auth_token: Option<String>,
    pub url: String,
    /// Bumped by [`TestBroker::drop_connections`]; every connection watches it.
    pub drop_epoch: watch::Sender<u64>,
    pub shutdown: watch::Sender<bool>,
    next_conn: AtomicU64,
}

impl Shared {
    /// Locks the state. A panic while holding the lock cannot leave it half-updated in a way
    /// worse than the panic itself, so a poisoned lock is used as is rather than panicking too.
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running broker; dropping it stops it (as [`TestBroker::shutdown`] does, without waiting).
#[derive(Debug)]
pub struct TestBroker {
    shared: Arc<Shared>,
    addr: SocketAddr,
    accept: Option<tokio::task::JoinHandle<()>>,
}

impl TestBroker {
    /// Binds the listener and starts accepting connections on the current tokio runtime.
    pub async fn start(config: BrokerConfig) -> Result<TestBroker, BrokerError> {
        let acceptor = match &config.tls {
            Some(identity) => Some(tls::acceptor(identity)?),
            None => None,
        };
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| BrokerError::Bind {
                    addr: config.listen,
                    source,
                })?;
        let addr = listener.local_addr().map_err(|source| BrokerError::Bind {
            addr: config.listen,
            source,
        })?;
        // The TLS URL names `localhost`, the name test certificates are issued for; the client
        // verifies it, so an IP address would need an IP SAN instead.
        let url = if acceptor.is_some() {
            format!("pulsar+ssl://localhost:{}", addr.port())
        } else {
            format!("pulsar://{}:{}", addr.ip(), addr.port())
        };
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            auth_token: config.auth_token,
            url,
            drop_epoch: watch::Sender::new(0),
            shutdown: watch::Sender::new(false),
            next_conn: AtomicU64::new(1),
        });
        let accept = tokio::spawn(accept_loop(listener, acceptor, shared.clone()));
        Ok(TestBroker {
            shared,
            addr,
            accept: Some(accept),
        })
    }

    /// The service URL clients connect to.
    pub fn url(&self) -> String {
        self.shared.url.clone()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Closes every client connection at once (as a broker crash/restart would), keeping all
    /// topic and subscription state: unacknowledged messages are redelivered when consumers
    /// come back.
    pub fn drop_connections(&self) {
        self.shared.drop_epoch.send_modify(|e| *e += 1);
    }

    /// Full names of all topics, e.g. `persistent://public/default/t`, sorted.
    pub fn topics(&self) -> Vec<String> {
        self.shared.lock().topics.keys().cloned().collect()
    }

    /// Counters of a topic (short names like `t` are accepted), or `None` if it does not exist.
    pub fn stats(&self, topic: &str) -> Option<TopicStats> {
        self.shared.lock().stats(topic)
    }

    /// For each entry of `topic` that subscription `sub` acknowledged since the last call, the
    /// time from the broker storing it to its first acknowledgement: the end-to-end latency of
    /// a consumer that acknowledges after processing.
    pub fn take_ack_delays(&self, topic: &str, sub: &str) -> Vec<Duration> {
        self.shared.lock().take_ack_delays(topic, sub)
    }

    /// Every message published to a topic, in order, batches split into their messages.
    pub fn messages(&self, topic: &str) -> Vec<StoredMessage> {
        self.shared.lock().messages(topic)
    }

    /// Stops accepting, closes all connections and waits for the broker's tasks to end.
    pub async fn shutdown(mut self) {
        self.shared.shutdown.send_replace(true);
        if let Some(accept) = self.accept.take() {
            let _ = accept.await;
        }
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        self.shared.shutdown.send_replace(true);
    }
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    shared: Arc<Shared>,
) {
    let mut shutdown = shared.shutdown.subscribe();
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let id = shared.next_conn.fetch_add(1, Ordering::Relaxed);
                    // Subscribe now, not in the task: a drop_connections() right after this
                    // accept must reach this connection too.
                    let signals = connection::Signals {
                        drop_epoch: shared.drop_epoch.subscribe(),
                        shutdown: shared.shutdown.subscribe(),
                        socket: Some(std::os::fd::AsRawFd::as_raw_fd(&stream)),
                    };
                    let shared = shared.clone();
                    let acceptor = acceptor.clone();
                    connections.spawn(async move {
                        // Small frames (acks, flow, receipts) must not wait for Nagle.
                        let _ = stream.set_nodelay(true);
                        match acceptor {
                            None => connection::serve(shared, id, stream, peer, signals).await,
                            Some(acceptor) => match tls::handshake(&acceptor, stream).await {
                                Ok(stream) => connection::serve(shared, id, stream, peer, signals).await,
                                Err(e) => tracing::warn!(%peer, "TLS handshake failed: {e}"),
                            },
                        }
                    });
                }
                // Accept errors (e.g. too many open files) are transient: keep serving.
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            // Reap finished connection tasks so the set does not grow without bound.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            _ = stopped(&mut shutdown) => break,
        }
    }
    drop(listener);
    // Connections see the same shutdown flag and close themselves; give them a moment to do
    // so cleanly, then abort whatever is left.
    let drain = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(Duration::from_secs(2), drain)
        .await
        .is_err()
    {
        connections.shutdown().await;
    }
}

/// Resolves once shutdown is requested (or the broker handle is gone).
async fn stopped(rx: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is not Send; drop it here rather than in the select.
    let _ = rx.wait_for(|s| *s).await.map(|_| ());
}
