//! Topic, subscription, producer and consumer state, shared by all connections behind one mutex.
//!
//! Topics keep every entry in memory (an entry is what one SEND carried: one message or one
//! batch). A subscription is a cursor over those entries plus the sets that make at-least-once
//! delivery work: entries dispatched but not acknowledged (`in_flight`, with their consumer),
//! entries to send again (`redeliver`), and acknowledged entries. Dispatching (see
//! [`crate::dispatch`]) runs under the same lock after anything that can let messages flow.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::codec::Payload;
use crate::proto::command_subscribe::{InitialPosition, SubType};
use crate::proto::{MessageIdData, MessageMetadata, ServerError, SingleMessageMetadata};
use crate::{StoredMessage, SubscriptionStats, TopicStats};

/// Identifies a client connection for as long as the broker runs.
pub(crate) type ConnId = u64;

/// Frames queued for a connection's writer task.
pub(crate) type Outbox = mpsc::UnboundedSender<Bytes>;

/// A consumer is named by its connection and the id the client chose on that connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct ConsumerKey {
    pub conn: ConnId,
    pub id: u64,
}

/// A refusal sent back to the client as an ERROR (or in a response's error field).
#[derive(Debug, Clone)]
pub(crate) struct Reject {
    pub error: ServerError,
    pub message: String,
}

impl Reject {
    pub fn new(error: ServerError, message: impl Into<String>) -> Self {
        Reject {
            error,
            message: message.into(),
        }
    }
}

/// One stored SEND.
#[derive(Debug)]
pub(crate) struct Entry {
    pub metadata: MessageMetadata,
    pub data: Bytes,
    /// Magic, checksum, metadata and payload, encoded once and reused by every dispatch.
    pub section: Bytes,
    /// Messages in the entry: 1, or the batch size.
    pub num_messages: u32,
    /// When the broker stored it (what ack delays are measured from).
    pub stored_at: std::time::Instant,
}

#[derive(Debug)]
pub(crate) struct Topic {
    pub ledger_id: u64,
    pub entries: Vec<Entry>,
    pub published: u64,
    pub subscriptions: BTreeMap<String, Subscription>,
}

#[derive(Debug)]
pub(crate) struct Subscription {
    pub sub_type: SubType,
    pub durable: bool,
    /// Messages published before the subscription started; they are not its backlog.
    pub base_messages: u64,
    /// Next entry never dispatched to this subscription.
    pub read_pos: u64,
    /// Every entry below this one is acknowledged (cumulative acks move it).
    pub mark_delete: u64,
    pub redeliver: BTreeSet<u64>,
    pub in_flight: BTreeMap<u64, ConsumerKey>,
    pub acked_entries: BTreeSet<u64>,
    /// Batch indexes acknowledged one by one, for batches not yet fully acknowledged.
    pub partial: HashMap<u64, BTreeSet<i32>>,
    pub redelivery_counts: HashMap<u64, u32>,
    /// Consumers in subscription order: round-robin order for Shared, the first one is the
    /// active consumer for Exclusive and Failover.
    pub consumers: Vec<ConsumerKey>,
    pub next_rr: usize,
    pub acked: u64,
    pub redelivered: u64,
    pub max_permits_seen: u64,
    /// Largest number of entries any one consumer had dispatched and not acknowledged, taken
    /// at each dispatch (a consumer that left still counts until its connection is cleaned
    /// up, so the subscription-wide count can briefly be higher after a reconnect).
    pub max_consumer_in_flight: u64,
    /// From storing to the first acknowledgement, of every entry acknowledged (benchmarks
    /// read it as end-to-end latency; taken by [`State::take_ack_delays`]).
    pub ack_delays: Vec<std::time::Duration>,
}

impl Subscription {
    fn new(sub_type: SubType, durable: bool, start_entry: u64, base_messages: u64) -> Self {
        Subscription {
            sub_type,
            durable,
            base_messages,
            read_pos: start_entry,
            mark_delete: start_entry,
            redeliver: BTreeSet::new(),
            in_flight: BTreeMap::new(),
            acked_entries: BTreeSet::new(),
            partial: HashMap::new(),
            redelivery_counts: HashMap::new(),
            consumers: Vec::new(),
            next_rr: 0,
            acked: 0,
            redelivered: 0,
            max_permits_seen: 0,
            max_consumer_in_flight: 0,
            ack_delays: Vec::new(),
        }
    }

    pub fn is_acked(&self, entry: u64) -> bool {
        entry < self.mark_delete || self.acked_entries.contains(&entry)
    }

    /// Acknowledges a whole entry, counting only the messages not acknowledged before.
    fn ack_entry(&mut self, entry: u64, num_messages: u32) {
        if self.is_acked(entry) {
            return;
        }
        let already = self.partial.remove(&entry).map_or(0, |s| s.len() as u64);
        self.acked += u64::from(num_messages).saturating_sub(already);
        self.acked_entries.insert(entry);
        self.in_flight.remove(&entry);
        self.redeliver.remove(&entry);
        self.redelivery_counts.remove(&entry);
    }

    /// Acknowledges one message of a batch; the entry is done once all of them are.
    fn ack_batch_index(&mut self, entry: u64, index: i32, num_messages: u32) {
        if self.is_acked(entry) || index < 0 || index as u32 >= num_messages {
            return;
        }
        let set = self.partial.entry(entry).or_default();
        if set.insert(index) {
            self.acked += 1;
        }
        if set.len() as u32 >= num_messages {
            self.partial.remove(&entry);
            self.acked_entries.insert(entry);
            self.in_flight.remove(&entry);
            self.redeliver.remove(&entry);
            self.redelivery_counts.remove(&entry);
        }
    }

    /// Puts an in-flight entry back for redelivery, e.g. on nack or when its consumer leaves.
    fn return_entry(&mut self, entry: u64) {
        if self.in_flight.remove(&entry).is_some() && !self.is_acked(entry) {
            self.redeliver.insert(entry);
            *self.redelivery_counts.entry(entry).or_insert(0) += 1;
        }
    }
}

#[derive(Debug)]
pub(crate) struct Consumer {
    pub topic: String,
    pub subscription: String,
    /// Outstanding flow permits, in messages. Signed because a batch entry takes its whole size
    /// from the permits, as on a real broker, which may take them below zero.
    pub permits: i64,
    pub outbox: Outbox,
}

#[derive(Debug)]
struct Producer {
    topic: String,
}

/// What SUBSCRIBE asks for, taken out of the protobuf command.
#[derive(Debug)]
pub(crate) struct SubscribeRequest {
    pub topic: String,
    pub subscription: String,
    pub sub_type: SubType,
    pub durable: bool,
    pub initial_position: InitialPosition,
}

#[derive(Debug, Default)]
pub(crate) struct State {
    pub topics: BTreeMap<String, Topic>,
    pub consumers: HashMap<ConsumerKey, Consumer>,
    producers: HashMap<(ConnId, u64), Producer>,
    next_ledger: u64,
    next_producer_name: u64,
}

/// Turns the short forms clients may send into the full name the broker keys topics by:
/// `t` and `tenant/ns/t` become `persistent://public/default/t` and `persistent://tenant/ns/t`.
pub(crate) fn full_topic_name(topic: &str) -> Result<String, Reject> {
    let invalid = || {
        Reject::new(
            ServerError::InvalidTopicName,
            format!("invalid topic {topic:?}"),
        )
    };
    if let Some((domain, rest)) = topic.split_once("://") {
        if !matches!(domain, "persistent" | "non-persistent") {
            return Err(invalid());
        }
        let parts: Vec<&str> = rest.split('/').collect();
        if parts.len() != 3 || parts.iter().any(|p| p.is_empty()) {
            return Err(invalid());
        }
        return Ok(topic.to_string());
    }
    let parts: Vec<&str> = topic.split('/').collect();
    match parts.as_slice() {
        [name] if !name.is_empty() => Ok(format!("persistent://public/default/{name}")),
        [tenant, ns, name] if parts.iter().all(|p| !p.is_empty()) => {
            Ok(format!("persistent://{tenant}/{ns}/{name}"))
        }
        _ => Err(invalid()),
    }
}

impl State {
    fn topic_mut(&mut self, name: &str) -> &mut Topic {
        let next_ledger = &mut self.next_ledger;
        self.topics.entry(name.to_string()).or_insert_with(|| {
            // Distinct ledger ids per topic make message ids from different topics unequal,
            // as they are on a real broker.
            *next_ledger += 1;
            Topic {
                ledger_id: *next_ledger,
                entries: Vec::new(),
                published: 0,
                subscriptions: BTreeMap::new(),
            }
        })
    }

    /// Registers a producer, creating the topic; returns the producer's name.
    pub fn create_producer(
        &mut self,
        conn: ConnId,
        producer_id: u64,
        topic: &str,
        name: Option<String>,
    ) -> Result<String, Reject> {
        let topic = full_topic_name(topic)?;
        if let Some(existing) = self.producers.get(&(conn, producer_id)) {
            // A retried PRODUCER for the same id: answer as the first time.
            if existing.topic != topic {
                return Err(Reject::new(
                    ServerError::ProducerBusy,
                    format!("producer id {producer_id} is in use on this connection"),
                ));
            }
        }
        self.topic_mut(&topic);
        let name = match name {
            Some(name) if !name.is_empty() => name,
            _ => {
                self.next_producer_name += 1;
                format!("test-broker-{}", self.next_producer_name)
            }
        };
        self.producers
            .insert((conn, producer_id), Producer { topic });
        Ok(name)
    }

    pub fn close_producer(&mut self, conn: ConnId, producer_id: u64) {
        self.producers.remove(&(conn, producer_id));
    }

    /// Stores a SEND; returns the message id for the receipt and the topic to dispatch.
    pub fn publish(
        &mut self,
        conn: ConnId,
        producer_id: u64,
        payload: Payload,
    ) -> Result<(MessageIdData, String), Reject> {
        let topic_name = self
            .producers
            .get(&(conn, producer_id))
            .map(|p| p.topic.clone())
            .ok_or_else(|| {
                Reject::new(
                    ServerError::UnknownError,
                    format!("no producer {producer_id} on this connection"),
                )
            })?;
        let num_messages = match payload.metadata.num_messages_in_batch {
            Some(n) if n > 0 => n as u32,
            _ => 1,
        };
        let section = crate::codec::encode_payload_section(&payload.metadata_raw, &payload.data);
        let topic = self.topic_mut(&topic_name);
        let entry_id = topic.entries.len() as u64;
        topic.entries.push(Entry {
            metadata: payload.metadata,
            data: payload.data,
            section,
            num_messages,
            stored_at: std::time::Instant::now(),
        });
        topic.published += u64::from(num_messages);
        let id = MessageIdData {
            ledger_id: topic.ledger_id,
            entry_id,
            ..Default::default()
        };
        Ok((id, topic_name))
    }

    /// Adds a consumer to a subscription, creating topic and subscription as needed.
    pub fn subscribe(
        &mut self,
        key: ConsumerKey,
        req: SubscribeRequest,
        outbox: Outbox,
    ) -> Result<(), Reject> {
        let topic_name = full_topic_name(&req.topic)?;
        if let Some(existing) = self.consumers.get(&key) {
            // A retried SUBSCRIBE for the same consumer id is answered as the first one was.
            if existing.topic == topic_name && existing.subscription == req.subscription {
                return Ok(());
            }
            return Err(Reject::new(
                ServerError::ConsumerBusy,
                format!("consumer id {} is in use on this connection", key.id),
            ));
        }
        if req.subscription.is_empty() {
            return Err(Reject::new(
                ServerError::UnknownError,
                "empty subscription name",
            ));
        }
        let topic = self.topic_mut(&topic_name);
        let (start_entry, base) = match req.initial_position {
            InitialPosition::Earliest => (0, 0),
            InitialPosition::Latest => (topic.entries.len() as u64, topic.published),
        };
        let sub = topic
            .subscriptions
            .entry(req.subscription.clone())
            .or_insert_with(|| Subscription::new(req.sub_type, req.durable, start_entry, base));
        if sub.consumers.is_empty() {
            sub.sub_type = req.sub_type;
        } else if sub.sub_type == SubType::Exclusive || req.sub_type == SubType::Exclusive {
            return Err(Reject::new(
                ServerError::ConsumerBusy,
                format!(
                    "exclusive subscription {} already has a consumer",
                    req.subscription
                ),
            ));
        }
        sub.consumers.push(key);
        self.consumers.insert(
            key,
            Consumer {
                topic: topic_name,
                subscription: req.subscription,
                permits: 0,
                outbox,
            },
        );
        Ok(())
    }

    /// Adds flow permits; returns the consumer's topic and subscription to dispatch.
    pub fn flow(&mut self, key: ConsumerKey, permits: u32) -> Option<(String, String)> {
        let consumer = self.consumers.get_mut(&key)?;
        consumer.permits += i64::from(permits);
        let now = consumer.permits.max(0) as u64;
        let (topic, sub) = (consumer.topic.clone(), consumer.subscription.clone());
        if let Some(s) = self.subscription_mut(&topic, &sub) {
            s.max_permits_seen = s.max_permits_seen.max(now);
        }
        Some((topic, sub))
    }

    pub fn subscription_mut(&mut self, topic: &str, sub: &str) -> Option<&mut Subscription> {
        self.topics.get_mut(topic)?.subscriptions.get_mut(sub)
    }

    /// Applies an ACK. Ids from another topic's ledger or beyond the topic's end are ignored,
    /// as they cannot name anything this subscription holds.
    pub fn ack(&mut self, key: ConsumerKey, cumulative: bool, ids: &[MessageIdData]) {
        let Some(consumer) = self.consumers.get(&key) else {
            return;
        };
        let Some(topic) = self.topics.get_mut(&consumer.topic) else {
            return;
        };
        let Topic {
            entries,
            subscriptions,
            ledger_id,
            ..
        } = topic;
        let Some(sub) = subscriptions.get_mut(&consumer.subscription) else {
            return;
        };
        for id in ids {
            if id.ledger_id != *ledger_id {
                continue;
            }
            let Some(entry) = entries.get(id.entry_id as usize) else {
                continue;
            };
            let n = entry.num_messages;
            let was_acked = sub.is_acked(id.entry_id);
            if cumulative {
                let first = sub.mark_delete;
                for e in first..id.entry_id {
                    let m = entries.get(e as usize).map_or(1, |x| x.num_messages);
                    sub.ack_entry(e, m);
                }
                match id.batch_index {
                    Some(i) if n > 1 && i >= 0 && (i as u32) < n - 1 => {
                        for j in 0..=i {
                            sub.ack_batch_index(id.entry_id, j, n);
                        }
                    }
                    _ => sub.ack_entry(id.entry_id, n),
                }
                sub.mark_delete = sub.mark_delete.max(id.entry_id);
                sub.read_pos = sub.read_pos.max(sub.mark_delete);
            } else {
                match id.batch_index {
                    Some(i) if n > 1 => sub.ack_batch_index(id.entry_id, i, n),
                    _ => sub.ack_entry(id.entry_id, n),
                }
            }
            if !was_acked && sub.is_acked(id.entry_id) {
                sub.ack_delays.push(entry.stored_at.elapsed());
            }
        }
    }

    /// The ack delays recorded for a subscription since the last call.
    pub fn take_ack_delays(&mut self, topic: &str, sub: &str) -> Vec<std::time::Duration> {
        let Ok(name) = full_topic_name(topic) else {
            return Vec::new();
        };
        self.topics
            .get_mut(&name)
            .and_then(|t| t.subscriptions.get_mut(sub))
            .map(|s| std::mem::take(&mut s.ack_delays))
            .unwrap_or_default()
    }

    /// Returns a consumer's in-flight entries (all of them, or those named) for redelivery.
    pub fn redeliver(
        &mut self,
        key: ConsumerKey,
        ids: &[MessageIdData],
    ) -> Option<(String, String)> {
        let consumer = self.consumers.get(&key)?;
        let (topic_name, sub_name) = (consumer.topic.clone(), consumer.subscription.clone());
        let topic = self.topics.get_mut(&topic_name)?;
        let ledger_id = topic.ledger_id;
        let sub = topic.subscriptions.get_mut(&sub_name)?;
        let owned: Vec<u64> = if ids.is_empty() {
            sub.in_flight
                .iter()
                .filter(|(_, owner)| **owner == key)
                .map(|(e, _)| *e)
                .collect()
        } else {
            ids.iter()
                .filter(|id| id.ledger_id == ledger_id)
                .map(|id| id.entry_id)
                .filter(|e| sub.in_flight.get(e) == Some(&key))
                .collect()
        };
        for entry in owned {
            sub.return_entry(entry);
        }
        Some((topic_name, sub_name))
    }

    /// Removes a consumer, returning its unacknowledged messages to the subscription.
    pub fn close_consumer(&mut self, key: ConsumerKey) -> Option<(String, String)> {
        let consumer = self.consumers.remove(&key)?;
        let topic = self.topics.get_mut(&consumer.topic)?;
        let sub = topic.subscriptions.get_mut(&consumer.subscription)?;
        sub.consumers.retain(|k| *k != key);
        let owned: Vec<u64> = sub
            .in_flight
            .iter()
            .filter(|(_, owner)| **owner == key)
            .map(|(e, _)| *e)
            .collect();
        for entry in owned {
            sub.return_entry(entry);
        }
        if !sub.durable && sub.consumers.is_empty() {
            // A non-durable (reader) cursor lives only as long as its consumer.
            topic.subscriptions.remove(&consumer.subscription);
        }
        Some((consumer.topic, consumer.subscription))
    }

    /// UNSUBSCRIBE: deletes the subscription, allowed only to its last consumer.
    pub fn unsubscribe(&mut self, key: ConsumerKey) -> Result<(), Reject> {
        let consumer = self.consumers.get(&key).ok_or_else(|| {
            Reject::new(
                ServerError::ConsumerNotFound,
                format!("no consumer {}", key.id),
            )
        })?;
        let (topic_name, sub_name) = (consumer.topic.clone(), consumer.subscription.clone());
        if let Some(sub) = self.subscription_mut(&topic_name, &sub_name) {
            if sub.consumers.iter().any(|k| *k != key) {
                return Err(Reject::new(
                    ServerError::ConsumerBusy,
                    "subscription has other connected consumers",
                ));
            }
        }
        self.consumers.remove(&key);
        if let Some(topic) = self.topics.get_mut(&topic_name) {
            topic.subscriptions.remove(&sub_name);
        }
        Ok(())
    }

    /// Forgets a closed connection's producers and consumers; returns what to dispatch.
    pub fn remove_connection(&mut self, conn: ConnId) -> Vec<(String, String)> {
        self.producers.retain(|(c, _), _| *c != conn);
        let keys: Vec<ConsumerKey> = self
            .consumers
            .keys()
            .filter(|k| k.conn == conn)
            .copied()
            .collect();
        keys.into_iter()
            .filter_map(|k| self.close_consumer(k))
            .collect()
    }

    /// The last message id of a consumer's topic (entry `u64::MAX`, i.e. -1, when empty).
    pub fn last_message_id(&self, key: ConsumerKey) -> Option<MessageIdData> {
        let consumer = self.consumers.get(&key)?;
        let topic = self.topics.get(&consumer.topic)?;
        Some(MessageIdData {
            ledger_id: topic.ledger_id,
            entry_id: (topic.entries.len() as u64).wrapping_sub(1),
            ..Default::default()
        })
    }

    pub fn topics_of_namespace(
        &self,
        namespace: &str,
        persistent: bool,
        non_persistent: bool,
    ) -> Vec<String> {
        self.topics
            .keys()
            .filter(|t| {
                let Some((domain, rest)) = t.split_once("://") else {
                    return false;
                };
                let domain_ok = match domain {
                    "persistent" => persistent,
                    "non-persistent" => non_persistent,
                    _ => false,
                };
                domain_ok && rest.rsplit_once('/').is_some_and(|(ns, _)| ns == namespace)
            })
            .cloned()
            .collect()
    }

    pub fn stats(&self, topic: &str) -> Option<TopicStats> {
        let name = full_topic_name(topic).ok()?;
        let topic = self.topics.get(&name)?;
        let subscriptions = topic
            .subscriptions
            .iter()
            .map(|(name, sub)| {
                let unacked_in_flight = sub
                    .in_flight
                    .keys()
                    .map(|e| {
                        let n = topic.entries.get(*e as usize).map_or(1, |x| x.num_messages);
                        let done = sub.partial.get(e).map_or(0, |s| s.len() as u64);
                        u64::from(n).saturating_sub(done)
                    })
                    .sum();
                SubscriptionStats {
                    name: name.clone(),
                    consumers: sub.consumers.len(),
                    acked: sub.acked,
                    backlog: topic
                        .published
                        .saturating_sub(sub.base_messages)
                        .saturating_sub(sub.acked),
                    unacked_in_flight,
                    redelivered: sub.redelivered,
                    max_permits_seen: sub.max_permits_seen,
                    max_consumer_in_flight: sub.max_consumer_in_flight,
                }
            })
            .collect();
        Some(TopicStats {
            published: topic.published,
            subscriptions,
        })
    }

    pub fn messages(&self, topic: &str) -> Vec<StoredMessage> {
        let Some(topic) = full_topic_name(topic)
            .ok()
            .and_then(|n| self.topics.get(&n))
        else {
            return Vec::new();
        };
        topic.entries.iter().flat_map(entry_messages).collect()
    }
}

/// The messages of one entry, splitting a batch into its single messages.
fn entry_messages(entry: &Entry) -> Vec<StoredMessage> {
    let md = &entry.metadata;
    if md.num_messages_in_batch.is_none() {
        return vec![StoredMessage {
            payload: entry.data.to_vec(),
            properties: md
                .properties
                .iter()
                .map(|p| (p.key.clone(), p.value.clone()))
                .collect(),
            key: md.partition_key.clone(),
        }];
    }
    match split_batch(&entry.data, entry.num_messages) {
        Some(messages) => messages,
        // The broker stores batches it cannot parse (e.g. compressed ones) as the client sent
        // them; for inspection they show as one message holding the raw batch.
        None => vec![StoredMessage {
            payload: entry.data.to_vec(),
            properties: Vec::new(),
            key: md.partition_key.clone(),
        }],
    }
}

/// Parses the batch format: `[u32 size][SingleMessageMetadata][payload]` per message.
fn split_batch(data: &[u8], count: u32) -> Option<Vec<StoredMessage>> {
    use prost::Message as _;
    let mut rest = data;
    // `count` comes from the client: do not let it size an allocation.
    let mut out = Vec::with_capacity((count as usize).min(1024));
    for _ in 0..count {
        let size_bytes: [u8; 4] = rest.get(..4)?.try_into().ok()?;
        let size = u32::from_be_bytes(size_bytes) as usize;
        rest = &rest[4..];
        let meta = SingleMessageMetadata::decode(rest.get(..size)?).ok()?;
        rest = &rest[size..];
        let payload_size = usize::try_from(meta.payload_size).ok()?;
        let payload = rest.get(..payload_size)?;
        rest = &rest[payload_size..];
        out.push(StoredMessage {
            payload: payload.to_vec(),
            properties: meta
                .properties
                .iter()
                .map(|p| (p.key.clone(), p.value.clone()))
                .collect(),
            key: meta.partition_key.clone(),
        });
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::full_topic_name;

    #[test]
    fn normalizes_topic_names() {
        assert_eq!(
            full_topic_name("t").ok().as_deref(),
            Some("persistent://public/default/t")
        );
        assert_eq!(
            full_topic_name("a/b/t").ok().as_deref(),
            Some("persistent://a/b/t")
        );
        assert!(full_topic_name("").is_err());
        assert!(full_topic_name("a/b").is_err());
        assert!(full_topic_name("http://a/b/c").is_err());
    }
}
