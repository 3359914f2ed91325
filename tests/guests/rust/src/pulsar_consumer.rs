//! Pulsar trigger (structured mode) with fnvm-guest: writes one line to stderr,
//! `consumed topic=<topic> key=<key or -> attempt=<n> payload=<payload text>`, and consumes the
//! message (exit 0), except when the payload starts with `fail`: then, after the line, it
//! refuses it with `refused <payload>` (on stderr, exit 1), so that the worker retries it and
//! finally dead-letters it. A payload that is not UTF-8 is shown lossily.
use fnvm_guest::pulsar::{consume, Message};

fn main() {
    consume(|msg: Message| {
        let payload = String::from_utf8_lossy(&msg.payload);
        eprintln!(
            "consumed topic={} key={} attempt={} payload={payload}",
            msg.topic,
            msg.key.as_deref().unwrap_or("-"),
            msg.attempt
        );
        if payload.starts_with("fail") {
            return Err(format!("refused {payload}"));
        }
        Ok(())
    })
}
