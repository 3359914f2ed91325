//! The Pulsar trigger (structured mode, ABI "Pulsar trigger, version 1", see
//! `guest-sdk/README.md`): each Pulsar message is one invocation, the worker writes the message
//! on stdin as one JSON object, and the guest's exit status says whether it consumed it (0: the
//! worker acknowledges the message; anything else, or a trap: it retries, then dead-letters).
//! [`consume`] does all of this around a handler:
//!
//! ```no_run
//! use fnvm_guest::pulsar::{consume, Message};
//!
//! fn main() {
//!     consume(|msg: Message| {
//!         let order = msg.payload_text().map_err(|e| format!("payload: {e}"))?;
//!         eprintln!("order from {}: {order}", msg.key.as_deref().unwrap_or("-"));
//!         Ok(())
//!     })
//! }
//! ```
//!
//! Everything here is also usable without stdin and the exit status ([`Message::from_json`],
//! [`handle`]), which is how the tests exercise it on the host.

use std::fmt;
use std::io::Read;

use crate::base64;
use crate::json::{self, Value};

/// A Pulsar message, as the worker describes it (the Pulsar trigger's structured mode).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The full name of the topic the message came from
    /// (`persistent://public/default/orders`).
    pub topic: String,
    /// The message id, `ledger:entry:partition:batchIndex` in decimal (`12:3:-1:0`; partition
    /// and batch index are `-1` when there is none). `""` when the worker did not give one.
    pub message_id: String,
    /// The partition key, `None` when the producer gave none.
    pub key: Option<String>,
    /// The message's properties, in the worker's order. See [`property`](Self::property).
    pub properties: Vec<(String, String)>,
    /// When the broker stored the message: RFC 3339 with milliseconds, in UTC
    /// (`2026-12-01T12:00:00.123Z`). `""` when the worker did not give it.
    pub publish_time: String,
    /// The producer's event time, as the worker wrote it, when the producer set one.
    pub event_time: Option<String>,
    /// This delivery's attempt on this worker: 1 for the first, then 2, 3, ... for the retries.
    pub attempt: u32,
    /// The payload, already decoded from base64 when the worker had to encode it.
    pub payload: Vec<u8>,
}

impl Message {
    /// Parses the message JSON the worker writes on stdin.
    ///
    /// `topic` and `payload` are required; the other members default (`messageId` and
    /// `publishTime` to `""`, `key` and `eventTime` to `None`, `properties` to none, `attempt`
    /// to 1, `payloadEncoding` to `"utf8"`) so that a hand-written message for a test can be
    /// short, and `null` means the same as absent. A member of the wrong type is an error, as is
    /// an `attempt` that is not an integer from 1 to `u32::MAX` written without fraction or
    /// exponent. Members this version does not know are ignored: the worker may add some within
    /// version 1.
    pub fn from_json(input: &[u8]) -> Result<Message, MessageError> {
        let text = std::str::from_utf8(input).map_err(|e| {
            MessageError::new(format!(
                "the message is not UTF-8 (invalid byte at {})",
                e.valid_up_to()
            ))
        })?;
        let value = json::parse(text).map_err(|e| MessageError::new(format!("not JSON: {e}")))?;
        let Value::Object(members) = value else {
            return Err(MessageError::new(format!(
                "the message is {}, not an object",
                value.kind()
            )));
        };
        let mut fields = Fields::default();
        for (name, value) in members {
            let slot = match name.as_str() {
                "topic" => &mut fields.topic,
                "messageId" => &mut fields.message_id,
                "key" => &mut fields.key,
                "properties" => &mut fields.properties,
                "publishTime" => &mut fields.publish_time,
                "eventTime" => &mut fields.event_time,
                "attempt" => &mut fields.attempt,
                "payload" => &mut fields.payload,
                "payloadEncoding" => &mut fields.payload_encoding,
                _ => continue,
            };
            if slot.is_some() {
                return Err(MessageError::new(format!("duplicate member {name:?}")));
            }
            *slot = Some(value);
        }

        let topic = string(fields.topic, "topic")?
            .ok_or_else(|| MessageError::new("no \"topic\" member".to_string()))?;
        let message_id = string(fields.message_id, "messageId")?.unwrap_or_default();
        let key = string(fields.key, "key")?;
        let properties = match fields.properties {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Object(members)) => {
                let mut properties = Vec::with_capacity(members.len());
                for (name, value) in members {
                    let Value::String(value) = value else {
                        return Err(MessageError::new(format!(
                            "property {name:?} is {}, not a string",
                            value.kind()
                        )));
                    };
                    properties.push((name, value));
                }
                properties
            }
            Some(other) => {
                return Err(MessageError::new(format!(
                    "\"properties\" is {}, not an object",
                    other.kind()
                )))
            }
        };
        let publish_time = string(fields.publish_time, "publishTime")?.unwrap_or_default();
        let event_time = string(fields.event_time, "eventTime")?;
        let attempt = match fields.attempt {
            None | Some(Value::Null) => 1,
            Some(Value::Number(text)) => attempt(&text)?,
            Some(other) => {
                return Err(MessageError::new(format!(
                    "\"attempt\" is {}, not a number",
                    other.kind()
                )))
            }
        };
        let payload = string(fields.payload, "payload")?
            .ok_or_else(|| MessageError::new("no \"payload\" member".to_string()))?;
        let payload = match string(fields.payload_encoding, "payloadEncoding")?.as_deref() {
            None | Some("utf8") => payload.into_bytes(),
            Some("base64") => base64::decode(&payload)
                .map_err(|e| MessageError::new(format!("\"payload\": {e}")))?,
            Some(other) => {
                return Err(MessageError::new(format!(
                    "unknown \"payloadEncoding\" {other:?} (expected \"utf8\" or \"base64\")"
                )))
            }
        };
        Ok(Message {
            topic,
            message_id,
            key,
            properties,
            publish_time,
            event_time,
            attempt,
            payload,
        })
    }

    /// The value of property `name` (compared exactly: Pulsar property names are
    /// case-sensitive); the first one should the worker have given the name twice.
    pub fn property(&self, name: &str) -> Option<&str> {
        self.properties
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The payload as text, or why it is not UTF-8.
    pub fn payload_text(&self) -> Result<&str, std::str::Utf8Error> {
        std::str::from_utf8(&self.payload)
    }
}

/// The message members this version knows, as found.
#[derive(Default)]
struct Fields {
    topic: Option<Value>,
    message_id: Option<Value>,
    key: Option<Value>,
    properties: Option<Value>,
    publish_time: Option<Value>,
    event_time: Option<Value>,
    attempt: Option<Value>,
    payload: Option<Value>,
    payload_encoding: Option<Value>,
}

/// An optional string member: absent or `null` is `None`, another type an error.
fn string(value: Option<Value>, name: &str) -> Result<Option<String>, MessageError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(MessageError::new(format!(
            "{name:?} is {}, not a string",
            other.kind()
        ))),
    }
}

/// `attempt` from its JSON number text (already checked against the JSON grammar): an integer
/// without fraction or exponent, from 1 to `u32::MAX`.
fn attempt(text: &str) -> Result<u32, MessageError> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(MessageError::new(format!(
            "\"attempt\" {text} is not an integer"
        )));
    }
    if text.starts_with('-') || digits.bytes().all(|b| b == b'0') {
        return Err(MessageError::new(format!(
            "\"attempt\" {text} is less than 1"
        )));
    }
    digits
        .parse()
        .map_err(|_| MessageError::new(format!("\"attempt\" {text} is too large")))
}

/// Why the input is not a message of this ABI; its `Display` is the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageError {
    message: String,
}

impl MessageError {
    fn new(message: String) -> MessageError {
        MessageError { message }
    }
}

impl fmt::Display for MessageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for MessageError {}

/// From the message JSON (stdin's bytes) to the outcome: parses, then calls `handler` and
/// returns what it returns. Input that is not a message is an `Err` saying why (which the
/// worker's retries will not fix: the message ends up dead-lettered with that reason), and
/// `handler` is not called. [`consume`] does this with stdin and the exit status.
pub fn handle<F: FnOnce(Message) -> Result<(), String>>(
    input: &[u8],
    handler: F,
) -> Result<(), String> {
    outcome(Message::from_json(input), handler)
}

fn outcome<F: FnOnce(Message) -> Result<(), String>>(
    message: Result<Message, MessageError>,
    handler: F,
) -> Result<(), String> {
    match message {
        Ok(message) => handler(message),
        Err(error) => Err(format!(
            "fnvm-guest: the function could not read its Pulsar trigger message: {error} \
             (it expects the trigger's structured mode, \"structured\": true)"
        )),
    }
}

/// Consumes one Pulsar trigger invocation: reads the message JSON from stdin and calls
/// `handler`.
///
/// When the handler returns `Ok(())`, this returns, and the guest exits 0 when `main` ends: the
/// worker acknowledges the message. When it returns `Err(reason)`, or the input is not a
/// message (see [`handle`]), or stdin cannot be read, the reason and a newline go to stderr
/// (the Function's logs) and the process exits with status 1: the worker retries the message
/// with backoff, then publishes it to the dead-letter topic. A panic in `handler` is a trap,
/// which the worker treats as a failure too. stdout is ignored in this mode.
pub fn consume<F: FnOnce(Message) -> Result<(), String>>(handler: F) {
    let mut input = Vec::new();
    let message = match std::io::stdin().lock().read_to_end(&mut input) {
        Ok(_) => Message::from_json(&input),
        Err(e) => Err(MessageError::new(format!("reading stdin: {e}"))),
    };
    if let Err(reason) = outcome(message, handler) {
        eprintln!("{reason}");
        std::process::exit(1);
    }
}

#[cfg(test)]
#[path = "pulsar_tests.rs"]
mod tests;
