//! One client connection: the CONNECT handshake (with token authentication), reading frames,
//! answering each command, and cleaning up when the connection ends.
//!
//! Frames the broker sends go through an unbounded queue to a writer task, so dispatching (which
//! runs under the state lock) never waits on a socket. The queue cannot grow without bound:
//! MESSAGE frames are limited by the consumer's flow permits, everything else answers a request.
//! Anything malformed from the client ends this connection only, with the reason logged.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch};

use crate::codec::{self, Frame, FrameError};
use crate::dispatch::dispatch;
use crate::proto::base_command::Type;
use crate::proto::command_get_topics_of_namespace::Mode;
use crate::proto::command_lookup_topic_response::LookupType;
use crate::proto::command_partitioned_topic_metadata_response::LookupType as PartitionLookup;
use crate::proto::command_subscribe::{InitialPosition, SubType};
use crate::proto::*;
use crate::state::{full_topic_name, ConnId, ConsumerKey, Reject, SubscribeRequest};
use crate::Shared;

/// Newest protocol version this broker claims; CONNECTED answers min(client's, this).
const PROTOCOL_VERSION: i32 = 21;
const SERVER_VERSION: &str = "fnvm-pulsar-test-broker";

/// Why a connection was closed by the broker.
#[derive(Debug, thiserror::Error)]
enum ConnError {
    #[error("bad frame: {0}")]
    Frame(#[from] FrameError),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("protocol violation: {0}")]
    Protocol(String),
    #[error("connection ended inside a frame ({0} bytes pending)")]
    Truncated(usize),
}

/// How a connection's read loop ended without error.
enum End {
    /// The client closed its side.
    Peer,
    /// The broker decided to close (failed authentication).
    Refused,
    /// `drop_connections` or shutdown.
    Dropped,
}

/// The broker-wide signals a connection obeys, subscribed to when it was accepted.
pub(crate) struct Signals {
    pub drop_epoch: watch::Receiver<u64>,
    pub shutdown: watch::Receiver<bool>,
    /// The socket, to re-arm `TCP_QUICKACK` after each read (see [`quick_ack`]).
    pub socket: Option<std::os::fd::RawFd>,
}

/// Acknowledges the client's segments at once instead of after the delayed-ACK timer. The
/// pulsar client does not set `TCP_NODELAY`: when it writes two small commands in a row (an
/// ack, then a flow request) and the broker has nothing to answer, Nagle holds the second one
/// until the broker's delayed ACK (40 ms), which would make this double, not the code under
/// test, the bottleneck. Linux clears the flag as it pleases, so it is set after every read.
fn quick_ack(fd: std::os::fd::RawFd) {
    let one: libc::c_int = 1;
    // SAFETY: `fd` is the connection's socket, open while its read loop runs; the option value
    // is a live `c_int` of the size given.
    unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_QUICKACK,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

pub(crate) async fn serve<S>(
    shared: Arc<Shared>,
    id: ConnId,
    stream: S,
    peer: SocketAddr,
    signals: Signals,
) where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut reader, mut writer) = tokio::io::split(stream);
    let (outbox, mut queued) = mpsc::unbounded_channel::<Bytes>();
    let mut writer_task = tokio::spawn(async move {
        while let Some(frame) = queued.recv().await {
            if writer.write_all(&frame).await.is_err() {
                return;
            }
        }
        let _ = writer.shutdown().await;
    });
    let mut conn = Conn {
        shared: shared.clone(),
        id,
        outbox,
        connected: false,
    };
    let end = conn.read_loop(&mut reader, signals).await;
    // Return this connection's unacknowledged messages to their subscriptions and hand them
    // to the remaining consumers.
    {
        let mut state = shared.lock();
        for (topic, sub) in state.remove_connection(id) {
            dispatch(&mut state, &topic, &sub);
        }
    }
    drop(conn);
    match end {
        Ok(End::Dropped) => {
            tracing::debug!(%peer, conn = id, "connection dropped by the broker");
            writer_task.abort();
        }
        Ok(End::Peer) | Ok(End::Refused) | Err(_) => {
            if let Err(e) = &end {
                tracing::warn!(%peer, conn = id, "closing connection: {e}");
            }
            // Let queued replies (e.g. the ERROR explaining a refusal) reach the client first.
            if tokio::time::timeout(Duration::from_secs(2), &mut writer_task)
                .await
                .is_err()
            {
                writer_task.abort();
            }
        }
    }
}

struct Conn {
    shared: Arc<Shared>,
    id: ConnId,
    outbox: mpsc::UnboundedSender<Bytes>,
    connected: bool,
}

fn missing(what: &str) -> ConnError {
    ConnError::Protocol(format!("command without its {what} body"))
}

fn cmd(r#type: Type, fill: impl FnOnce(&mut BaseCommand)) -> BaseCommand {
    let mut c = BaseCommand {
        r#type: r#type as i32,
        ..Default::default()
    };
    fill(&mut c);
    c
}

fn error_cmd(request_id: u64, reject: Reject) -> BaseCommand {
    cmd(Type::Error, |c| {
        c.error = Some(CommandError {
            request_id,
            error: reject.error as i32,
            message: reject.message,
        })
    })
}

fn success_cmd(request_id: u64) -> BaseCommand {
    cmd(Type::Success, |c| {
        c.success = Some(CommandSuccess {
            request_id,
            schema: None,
        })
    })
}

impl Conn {
    async fn read_loop<R: AsyncRead + Unpin>(
        &mut self,
        reader: &mut R,
        signals: Signals,
    ) -> Result<End, ConnError> {
        let Signals {
            mut drop_epoch,
            mut shutdown,
            socket,
        } = signals;
        if *shutdown.borrow_and_update() {
            return Ok(End::Dropped);
        }
        let mut buf = BytesMut::with_capacity(64 * 1024);
        loop {
            while let Some(frame) = codec::decode(&mut buf)? {
                if !self.handle(frame)? {
                    return Ok(End::Refused);
                }
            }
            if buf.capacity() - buf.len() < 4096 {
                buf.reserve(64 * 1024);
            }
            tokio::select! {
                read = reader.read_buf(&mut buf) => {
                    if read? == 0 {
                        return if buf.is_empty() { Ok(End::Peer) } else { Err(ConnError::Truncated(buf.len())) };
                    }
                    if let Some(fd) = socket {
                        quick_ack(fd);
                    }
                }
                _ = drop_epoch.changed() => return Ok(End::Dropped),
                _ = shutdown.changed() => return Ok(End::Dropped),
            }
        }
    }

    fn send(&self, command: &BaseCommand) {
        // A closed queue means the writer died with the socket; the read side notices next.
        let _ = self.outbox.send(codec::encode_command(command));
    }

    /// Handles one frame; `Ok(false)` closes the connection after flushing replies.
    fn handle(&mut self, frame: Frame) -> Result<bool, ConnError> {
        let Frame {
            command: c,
            payload,
        } = frame;
        if !self.connected {
            let connect = c
                .connect
                .ok_or_else(|| ConnError::Protocol("first command is not CONNECT".into()))?;
            return Ok(self.on_connect(connect));
        }
        let ty = Type::try_from(c.r#type).ok();
        let shared = self.shared.clone();
        match ty {
            Some(Type::Connect) => return Err(ConnError::Protocol("CONNECT sent twice".into())),
            Some(Type::Ping) => self.send(&cmd(Type::Pong, |c| c.pong = Some(CommandPong {}))),
            Some(Type::Pong) => {}
            Some(Type::Lookup) => {
                let l = c.lookup_topic.ok_or_else(|| missing("lookup_topic"))?;
                let reply = match full_topic_name(&l.topic) {
                    Ok(_) => CommandLookupTopicResponse {
                        broker_service_url: Some(shared.url.clone()),
                        broker_service_url_tls: Some(shared.url.clone()),
                        response: Some(LookupType::Connect as i32),
                        request_id: l.request_id,
                        authoritative: Some(true),
                        proxy_through_service_url: Some(false),
                        ..Default::default()
                    },
                    Err(r) => CommandLookupTopicResponse {
                        response: Some(LookupType::Failed as i32),
                        request_id: l.request_id,
                        error: Some(r.error as i32),
                        message: Some(r.message),
                        ..Default::default()
                    },
                };
                self.send(&cmd(Type::LookupResponse, |c| {
                    c.lookup_topic_response = Some(reply)
                }));
            }
            Some(Type::PartitionedMetadata) => {
                let p = c
                    .partition_metadata
                    .ok_or_else(|| missing("partition_metadata"))?;
                let reply = match full_topic_name(&p.topic) {
                    // Every topic here is non-partitioned: 0 partitions.
                    Ok(_) => CommandPartitionedTopicMetadataResponse {
                        partitions: Some(0),
                        request_id: p.request_id,
                        response: Some(PartitionLookup::Success as i32),
                        ..Default::default()
                    },
                    Err(r) => CommandPartitionedTopicMetadataResponse {
                        request_id: p.request_id,
                        response: Some(PartitionLookup::Failed as i32),
                        error: Some(r.error as i32),
                        message: Some(r.message),
                        ..Default::default()
                    },
                };
                self.send(&cmd(Type::PartitionedMetadataResponse, |c| {
                    c.partition_metadata_response = Some(reply)
                }));
            }
            Some(Type::GetTopicsOfNamespace) => {
                let g = c
                    .get_topics_of_namespace
                    .ok_or_else(|| missing("get_topics_of_namespace"))?;
                let (p, np) = match g.mode.and_then(|m| Mode::try_from(m).ok()) {
                    Some(Mode::NonPersistent) => (false, true),
                    Some(Mode::All) => (true, true),
                    _ => (true, false),
                };
                let topics = shared.lock().topics_of_namespace(&g.namespace, p, np);
                self.send(&cmd(Type::GetTopicsOfNamespaceResponse, |c| {
                    c.get_topics_of_namespace_response = Some(CommandGetTopicsOfNamespaceResponse {
                        request_id: g.request_id,
                        topics,
                        filtered: Some(false),
                        topics_hash: None,
                        changed: Some(true),
                    })
                }));
            }
            Some(Type::Producer) => {
                let p = c.producer.ok_or_else(|| missing("producer"))?;
                let created = shared.lock().create_producer(
                    self.id,
                    p.producer_id,
                    &p.topic,
                    p.producer_name,
                );
                match created {
                    Ok(producer_name) => self.send(&cmd(Type::ProducerSuccess, |c| {
                        c.producer_success = Some(CommandProducerSuccess {
                            request_id: p.request_id,
                            producer_name,
                            last_sequence_id: Some(-1),
                            producer_ready: Some(true),
                            ..Default::default()
                        })
                    })),
                    Err(r) => self.send(&error_cmd(p.request_id, r)),
                }
            }
            Some(Type::Send) => {
                let s = c.send.ok_or_else(|| missing("send"))?;
                let payload =
                    payload.ok_or_else(|| ConnError::Protocol("SEND without payload".into()))?;
                let mut state = shared.lock();
                match state.publish(self.id, s.producer_id, payload) {
                    Ok((message_id, topic)) => {
                        // The receipt goes out before any dispatch of the message, as a
                        // producer may assume it published before consumers see it.
                        self.send(&cmd(Type::SendReceipt, |c| {
                            c.send_receipt = Some(CommandSendReceipt {
                                producer_id: s.producer_id,
                                sequence_id: s.sequence_id,
                                message_id: Some(message_id),
                                highest_sequence_id: s.highest_sequence_id,
                            })
                        }));
                        let subs: Vec<String> = state
                            .topics
                            .get(&topic)
                            .map(|t| t.subscriptions.keys().cloned().collect())
                            .unwrap_or_default();
                        for sub in subs {
                            dispatch(&mut state, &topic, &sub);
                        }
                    }
                    Err(r) => self.send(&cmd(Type::SendError, |c| {
                        c.send_error = Some(CommandSendError {
                            producer_id: s.producer_id,
                            sequence_id: s.sequence_id,
                            error: r.error as i32,
                            message: r.message,
                        })
                    })),
                }
            }
            Some(Type::CloseProducer) => {
                let p = c.close_producer.ok_or_else(|| missing("close_producer"))?;
                shared.lock().close_producer(self.id, p.producer_id);
                self.send(&success_cmd(p.request_id));
            }
            Some(Type::Subscribe) => {
                let s = c.subscribe.ok_or_else(|| missing("subscribe"))?;
                let request_id = s.request_id;
                let key = self.key(s.consumer_id);
                let result = SubType::try_from(s.sub_type)
                    .map_err(|_| {
                        Reject::new(ServerError::UnknownError, "unknown subscription type")
                    })
                    .and_then(|sub_type| {
                        let req = SubscribeRequest {
                            topic: s.topic,
                            subscription: s.subscription,
                            sub_type,
                            durable: s.durable.unwrap_or(true),
                            initial_position: s
                                .initial_position
                                .and_then(|p| InitialPosition::try_from(p).ok())
                                .unwrap_or(InitialPosition::Latest),
                        };
                        shared.lock().subscribe(key, req, self.outbox.clone())
                    });
                match result {
                    Ok(()) => self.send(&success_cmd(request_id)),
                    Err(r) => self.send(&error_cmd(request_id, r)),
                }
            }
            Some(Type::Flow) => {
                let f = c.flow.ok_or_else(|| missing("flow"))?;
                let mut state = shared.lock();
                if let Some((topic, sub)) = state.flow(self.key(f.consumer_id), f.message_permits) {
                    dispatch(&mut state, &topic, &sub);
                }
            }
            Some(Type::Ack) => {
                let a = c.ack.ok_or_else(|| missing("ack"))?;
                let cumulative = a.ack_type == command_ack::AckType::Cumulative as i32;
                shared
                    .lock()
                    .ack(self.key(a.consumer_id), cumulative, &a.message_id);
                // Only acks that carry a request id (protocol 17+ ack receipts) get an answer.
                if let Some(request_id) = a.request_id {
                    self.send(&cmd(Type::AckResponse, |c| {
                        c.ack_response = Some(CommandAckResponse {
                            consumer_id: a.consumer_id,
                            request_id: Some(request_id),
                            ..Default::default()
                        })
                    }));
                }
            }
            Some(Type::RedeliverUnacknowledgedMessages) => {
                let r = c
                    .redeliver_unacknowledged_messages
                    .ok_or_else(|| missing("redeliver_unacknowledged_messages"))?;
                let mut state = shared.lock();
                if let Some((topic, sub)) = state.redeliver(self.key(r.consumer_id), &r.message_ids)
                {
                    dispatch(&mut state, &topic, &sub);
                }
            }
            Some(Type::CloseConsumer) => {
                let cc = c.close_consumer.ok_or_else(|| missing("close_consumer"))?;
                let mut state = shared.lock();
                if let Some((topic, sub)) = state.close_consumer(self.key(cc.consumer_id)) {
                    dispatch(&mut state, &topic, &sub);
                }
                drop(state);
                // Closing an unknown consumer succeeds too: clients close consumers they are
                // not sure still exist (e.g. while reconnecting).
                self.send(&success_cmd(cc.request_id));
            }
            Some(Type::Unsubscribe) => {
                let u = c.unsubscribe.ok_or_else(|| missing("unsubscribe"))?;
                let result = shared.lock().unsubscribe(self.key(u.consumer_id));
                match result {
                    Ok(()) => self.send(&success_cmd(u.request_id)),
                    Err(r) => self.send(&error_cmd(u.request_id, r)),
                }
            }
            Some(Type::GetLastMessageId) => {
                let g = c
                    .get_last_message_id
                    .ok_or_else(|| missing("get_last_message_id"))?;
                let last = shared.lock().last_message_id(self.key(g.consumer_id));
                match last {
                    Some(last_message_id) => self.send(&cmd(Type::GetLastMessageIdResponse, |c| {
                        c.get_last_message_id_response = Some(CommandGetLastMessageIdResponse {
                            last_message_id,
                            request_id: g.request_id,
                            consumer_mark_delete_position: None,
                        })
                    })),
                    None => self.send(&error_cmd(
                        g.request_id,
                        Reject::new(ServerError::ConsumerNotFound, "no such consumer"),
                    )),
                }
            }
            _ => self.not_supported(&c),
        }
        Ok(true)
    }

    /// Answers a request the broker does not implement with an ERROR, so the client's call
    /// fails promptly instead of timing out. Commands without a request id are logged only.
    fn not_supported(&self, c: &BaseCommand) {
        let name = Type::try_from(c.r#type)
            .map(|t| t.as_str_name().to_string())
            .unwrap_or_else(|_| format!("type {}", c.r#type));
        let request_id = c
            .seek
            .as_ref()
            .map(|x| x.request_id)
            .or(c.consumer_stats.as_ref().map(|x| x.request_id))
            .or(c.get_schema.as_ref().map(|x| x.request_id))
            .or(c.get_or_create_schema.as_ref().map(|x| x.request_id));
        match request_id {
            Some(request_id) => {
                tracing::debug!(conn = self.id, "answering unsupported {name} with an error");
                // ServerError has no "not supported" code; NotAllowedError is the closest.
                self.send(&error_cmd(
                    request_id,
                    Reject::new(
                        ServerError::NotAllowedError,
                        format!("{name} is not supported by the fnvm Pulsar test broker"),
                    ),
                ));
            }
            None => tracing::warn!(conn = self.id, "ignoring unsupported command {name}"),
        }
    }

    /// CONNECT: checks the token when one is configured; `false` refuses the connection.
    fn on_connect(&mut self, connect: CommandConnect) -> bool {
        if let Some(expected) = &self.shared.auth_token {
            let ok = connect.auth_method_name.as_deref() == Some("token")
                && connect.auth_data.as_deref() == Some(expected.as_bytes());
            if !ok {
                tracing::info!(conn = self.id, "refusing CONNECT: bad or missing token");
                self.send(&error_cmd(
                    0,
                    Reject::new(ServerError::AuthenticationError, "authentication failed"),
                ));
                return false;
            }
        }
        let version = connect
            .protocol_version
            .unwrap_or(0)
            .clamp(0, PROTOCOL_VERSION);
        self.send(&cmd(Type::Connected, |c| {
            c.connected = Some(CommandConnected {
                server_version: SERVER_VERSION.into(),
                protocol_version: Some(version),
                max_message_size: Some(codec::MAX_MESSAGE_SIZE),
            })
        }));
        self.connected = true;
        true
    }

    fn key(&self, id: u64) -> ConsumerKey {
        ConsumerKey { conn: self.id, id }
    }
}
