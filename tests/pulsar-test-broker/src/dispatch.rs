//! Message dispatch: moves entries from a subscription to its consumers as permits allow.
//!
//! Redeliveries go first (lowest entry first), then entries never dispatched, in order. An entry
//! goes only to a consumer with permits left: Shared and Key_Shared rotate over the consumers,
//! Exclusive and Failover send to the first (active) consumer only. Every call runs under the
//! state lock, so the queues of all consumers always agree with the subscription's sets.

use crate::codec;
use crate::proto::base_command::Type;
use crate::proto::command_subscribe::SubType;
use crate::proto::{BaseCommand, CommandMessage, MessageIdData};
use crate::state::{ConsumerKey, State, Subscription};

/// Dispatches what it can on one subscription.
pub(crate) fn dispatch(state: &mut State, topic: &str, subscription: &str) {
    let State {
        topics, consumers, ..
    } = state;
    let Some(topic) = topics.get_mut(topic) else {
        return;
    };
    let ledger_id = topic.ledger_id;
    let entries = &topic.entries;
    let Some(sub) = topic.subscriptions.get_mut(subscription) else {
        return;
    };
    loop {
        let (entry_id, redelivery) = match sub.redeliver.first() {
            Some(e) => (*e, true),
            None if (sub.read_pos as usize) < entries.len() => (sub.read_pos, false),
            None => return,
        };
        let Some(entry) = entries
            .get(entry_id as usize)
            .filter(|_| !sub.is_acked(entry_id))
        else {
            // Acknowledged meanwhile (e.g. a cumulative ack past it): nothing to send.
            if redelivery {
                sub.redeliver.remove(&entry_id);
            } else {
                sub.read_pos += 1;
            }
            continue;
        };
        let Some(key) = pick_consumer(sub, consumers) else {
            return;
        };
        let Some(consumer) = consumers.get_mut(&key) else {
            return;
        };
        let redelivery_count = sub.redelivery_counts.get(&entry_id).copied().unwrap_or(0);
        let command = BaseCommand {
            r#type: Type::Message as i32,
            message: Some(CommandMessage {
                consumer_id: key.id,
                message_id: MessageIdData {
                    ledger_id,
                    entry_id,
                    ..Default::default()
                },
                redelivery_count: Some(redelivery_count),
                ..Default::default()
            }),
            ..Default::default()
        };
        let frame = codec::encode_with_payload(&command, &entry.section);
        if consumer.outbox.send(frame).is_err() {
            // The connection's writer is gone and its cleanup is about to remove this
            // consumer; until then it must not be picked again.
            consumer.permits = 0;
            continue;
        }
        consumer.permits -= i64::from(entry.num_messages);
        if redelivery {
            sub.redeliver.remove(&entry_id);
            sub.redelivered += u64::from(entry.num_messages);
        } else {
            sub.read_pos += 1;
        }
        sub.in_flight.insert(entry_id, key);
        let mine = sub.in_flight.values().filter(|k| **k == key).count() as u64;
        sub.max_consumer_in_flight = sub.max_consumer_in_flight.max(mine);
    }
}

/// The consumer the next entry goes to, if any has permits.
fn pick_consumer(
    sub: &mut Subscription,
    consumers: &std::collections::HashMap<ConsumerKey, crate::state::Consumer>,
) -> Option<ConsumerKey> {
    let has_permits = |k: &ConsumerKey| consumers.get(k).is_some_and(|c| c.permits > 0);
    match sub.sub_type {
        SubType::Exclusive | SubType::Failover => {
            sub.consumers.first().copied().filter(has_permits)
        }
        SubType::Shared | SubType::KeyShared => {
            let n = sub.consumers.len();
            (0..n).find_map(|i| {
                let idx = (sub.next_rr + i) % n;
                let key = sub.consumers[idx];
                has_permits(&key).then(|| {
                    sub.next_rr = (idx + 1) % n;
                    key
                })
            })
        }
    }
}
