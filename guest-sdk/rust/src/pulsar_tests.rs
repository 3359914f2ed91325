//! Tests of the Pulsar trigger (`pulsar.rs`): parsing messages (full, minimal, binary payloads,
//! nulls, unknown members, bad ones), random messages written the way the worker writes them and
//! read back, and `handle` from input bytes to the outcome.

use super::*;
use crate::test_rng::Rng;

const FULL: &str = r#"{"topic": "persistent://public/default/orders",
 "messageId": "12:3:-1:0",
 "key": "customer-7",
 "properties": {"source": "web", "trace": "abc", "quoted": "a \"b\" \\ \u00e9"},
 "publishTime": "2026-12-01T12:00:00.123Z",
 "eventTime": "2026-12-01T11:59:59.000Z",
 "attempt": 3,
 "payload": "{\"qty\": 3}",
 "payloadEncoding": "utf8"}"#;

#[test]
fn parses_a_full_message() {
    let msg = Message::from_json(FULL.as_bytes()).unwrap();
    assert_eq!(msg.topic, "persistent://public/default/orders");
    assert_eq!(msg.message_id, "12:3:-1:0");
    assert_eq!(msg.key.as_deref(), Some("customer-7"));
    assert_eq!(
        msg.properties,
        [
            ("source", "web"),
            ("trace", "abc"),
            ("quoted", "a \"b\" \\ é")
        ]
        .map(|(n, v)| (n.to_string(), v.to_string()))
    );
    assert_eq!(msg.property("source"), Some("web"));
    assert_eq!(msg.property("quoted"), Some("a \"b\" \\ é"));
    assert_eq!(
        msg.property("Source"),
        None,
        "property names are case-sensitive"
    );
    assert_eq!(msg.property("missing"), None);
    assert_eq!(msg.publish_time, "2026-12-01T12:00:00.123Z");
    assert_eq!(msg.event_time.as_deref(), Some("2026-12-01T11:59:59.000Z"));
    assert_eq!(msg.attempt, 3);
    assert_eq!(msg.payload, b"{\"qty\": 3}");
    assert_eq!(msg.payload_text(), Ok("{\"qty\": 3}"));
}

#[test]
fn minimal_message_and_defaults() {
    let msg = Message::from_json(br#"{"topic":"t","payload":""}"#).unwrap();
    assert_eq!(
        msg,
        Message {
            topic: "t".to_string(),
            message_id: String::new(),
            key: None,
            properties: Vec::new(),
            publish_time: String::new(),
            event_time: None,
            attempt: 1,
            payload: Vec::new(),
        }
    );

    // null is the same as absent; unknown members are ignored, wherever they are.
    let msg = Message::from_json(
        br#"{"future":{"x":[1,2.5e3,true,null]},"topic":"t","messageId":null,"key":null,
             "properties":null,"publishTime":null,"eventTime":null,"attempt":null,
             "payload":"p","payloadEncoding":null,"redeliveryCount":0,"version":1}"#,
    )
    .unwrap();
    assert_eq!((msg.key, msg.event_time), (None, None));
    assert!(msg.properties.is_empty());
    assert_eq!(msg.attempt, 1);
    assert_eq!(msg.payload, b"p");

    // The example of the README, with its null eventTime.
    let msg = Message::from_json(
        br#"{"topic": "persistent://public/default/orders", "messageId": "12:3:-1:0",
            "key": "customer-7", "properties": {"source": "web", "trace": "abc"},
            "publishTime": "2026-12-01T12:00:00.123Z", "eventTime": null, "attempt": 1,
            "payload": "{\"qty\": 3}", "payloadEncoding": "utf8"}"#,
    )
    .unwrap();
    assert_eq!(msg.event_time, None);
    assert_eq!(msg.attempt, 1);
    assert_eq!(msg.property("trace"), Some("abc"));
}

#[test]
fn binary_payload_is_decoded() {
    let msg =
        Message::from_json(br#"{"topic":"t","payload":"AP/+gA==","payloadEncoding":"base64"}"#)
            .unwrap();
    assert_eq!(msg.payload, [0x00, 0xff, 0xfe, 0x80]);
    assert!(msg.payload_text().is_err());
    let msg =
        Message::from_json(br#"{"topic":"t","payload":"","payloadEncoding":"base64"}"#).unwrap();
    assert!(msg.payload.is_empty());
    // Text may be sent base64-encoded too.
    let msg = Message::from_json(br#"{"topic":"t","payload":"aGk=","payloadEncoding":"base64"}"#)
        .unwrap();
    assert_eq!(msg.payload_text(), Ok("hi"));
}

#[test]
fn attempts() {
    for (text, attempt) in [("1", 1), ("2", 2), ("10", 10), ("4294967295", u32::MAX)] {
        let input = format!(r#"{{"topic":"t","payload":"","attempt":{text}}}"#);
        assert_eq!(
            Message::from_json(input.as_bytes()).map(|m| m.attempt),
            Ok(attempt),
            "{text}"
        );
    }
}

#[test]
fn bad_messages_say_why() {
    let cases: &[(&[u8], &str)] = &[
        (b"", "not JSON"),
        (b"hello world", "not JSON"),
        (b"{\"topic\":\"t\",\"payload\":\"\"", "not JSON"),
        (b"{\"topic\":\"t\",\"payload\":\"\"} x", "not JSON"),
        (b"[]", "the message is an array, not an object"),
        (b"\"t\"", "the message is a string, not an object"),
        (b"null", "the message is null, not an object"),
        (b"{\"topic\":\"\xff\"}", "not UTF-8 (invalid byte at 10)"),
        (b"{\"payload\":\"\"}", "no \"topic\" member"),
        (b"{\"topic\":null,\"payload\":\"\"}", "no \"topic\" member"),
        (b"{\"topic\":\"t\"}", "no \"payload\" member"),
        (
            b"{\"topic\":\"t\",\"payload\":null}",
            "no \"payload\" member",
        ),
        (
            b"{\"topic\":\"t\",\"topic\":\"u\",\"payload\":\"\"}",
            "duplicate member \"topic\"",
        ),
        (
            b"{\"topic\":\"t\",\"payload\":\"\",\"payload\":\"\"}",
            "duplicate member \"payload\"",
        ),
        (
            b"{\"topic\":1,\"payload\":\"\"}",
            "\"topic\" is a number, not a string",
        ),
        (
            b"{\"topic\":\"t\",\"payload\":[1]}",
            "\"payload\" is an array, not a string",
        ),
        (
            b"{\"topic\":\"t\",\"payload\":\"\",\"messageId\":12}",
            "\"messageId\" is a number, not a string",
        ),
        (
            b"{\"topic\":\"t\",\"payload\":\"\",\"key\":false}",
            "\"key\" is a boolean, not a string",
        ),
        (
            b"{\"topic\":\"t\",\"payload\":\"\",\"properties\":[]}",
            "\"properties\" is an array, not an object",
        ),
        (
            b"{\"topic\":\"t\",\"payload\":\"\",\"properties\":\"a=b\"}",
            "\"properties\" is a string, not an object",
        ),
        (
            b"{\"topic\":\"t\",\"payload\":\"\",\"properties\":{\"a\":\"1\",\"b\":2}}",
            "property \"b\" is a number, not a string",
        ),
        (
            b"{\"topic\":\"t\",\"payload\":\"\",\"properties\":{\"a\":null}}",
            "property \"a\" is null, not a string",
        ),
        (
            b"{\"topic\":\"t\",\"payload\":\"\",\"publishTime\":1764590400123}",
            "\"publishTime\" is a number, not a string",
        ),
        (
            b"{\"topic\":\"t\",\"payload\":\"\",\"eventTime\":{}}",
            "\"eventTime\" is an object, not a string",
        ),
        (
            b"{\"topic\":\"t\",\"payload\":\"\",\"attempt\":0}",
            "\"attempt\" 0 is less than 1",
        ),
        (
            b"{\"topic\":\"t\",\"payload\":\"\",\"attempt\":-0}",
            "\"attempt\" -0 is less than 1",
        ),
        (
            b"{\"topic\":\"t\",\"payload\":\"\",\"attempt\":-1}",
            "\"attempt\" -1 is less than 1",
        ),
        (
            b"{\"topic\":\"t\",\"payload\":\"\",\"attempt\":-2.5}",
            "\"attempt\" -2.5 is not an integer",
        ),
        (
            b"{\"topic\":\"t\",\"payload\":\"\",\"attempt\":1.5}",
            "\"attempt\" 1.5 is not an integer",
        ),
        (
            b"{\"topic\":\"t\",\"payload\":\"\",\"attempt\":1.0}",
            "\"attempt\" 1.0 is not an integer",
        ),
        (
            b"{\"topic\":\"t\",\"payload\":\"\",\"attempt\":1e2}",
            "\"attempt\" 1e2 is not an integer",
        ),
        (
            b"{\"topic\":\"t\",\"payload\":\"\",\"attempt\":4294967296}",
            "\"attempt\" 4294967296 is too large",
        ),
        (
            b"{\"topic\":\"t\",\"payload\":\"\",\"attempt\":99999999999999999999999}",
            "is too large",
        ),
        (
            b"{\"topic\":\"t\",\"payload\":\"\",\"attempt\":\"1\"}",
            "\"attempt\" is a string, not a number",
        ),
        (
            b"{\"topic\":\"t\",\"payload\":\"\",\"attempt\":true}",
            "\"attempt\" is a boolean, not a number",
        ),
        (
            b"{\"topic\":\"t\",\"payload\":\"%%%%\",\"payloadEncoding\":\"base64\"}",
            "\"payload\": invalid base64",
        ),
        (
            b"{\"topic\":\"t\",\"payload\":\"aGk\",\"payloadEncoding\":\"base64\"}",
            "\"payload\": invalid base64",
        ),
        (
            b"{\"topic\":\"t\",\"payload\":\"aGk=\\n\",\"payloadEncoding\":\"base64\"}",
            "\"payload\": invalid base64",
        ),
        (
            b"{\"topic\":\"t\",\"payload\":\"\",\"payloadEncoding\":\"gzip\"}",
            "unknown \"payloadEncoding\" \"gzip\" (expected \"utf8\" or \"base64\")",
        ),
        (
            b"{\"topic\":\"t\",\"payload\":\"\",\"payloadEncoding\":\"UTF8\"}",
            "unknown \"payloadEncoding\" \"UTF8\"",
        ),
        (
            b"{\"topic\":\"t\",\"payload\":\"\",\"payloadEncoding\":1}",
            "\"payloadEncoding\" is a number, not a string",
        ),
    ];
    for (input, reason) in cases {
        let err = Message::from_json(input).unwrap_err().to_string();
        assert!(
            err.contains(reason),
            "{:?}: {err:?} lacks {reason:?}",
            String::from_utf8_lossy(input)
        );
    }
}

/// Writes `msg` as the worker does: every member, in the ABI's order, the payload as text when
/// it is UTF-8 and as base64 otherwise; the crate's string writer, an independent number
/// writer.
fn worker_json(msg: &Message) -> String {
    let mut out = String::from("{\"topic\":");
    json::write_string(&mut out, &msg.topic);
    out.push_str(",\"messageId\":");
    json::write_string(&mut out, &msg.message_id);
    out.push_str(",\"key\":");
    match &msg.key {
        Some(key) => json::write_string(&mut out, key),
        None => out.push_str("null"),
    }
    out.push_str(",\"properties\":{");
    for (i, (name, value)) in msg.properties.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        json::write_string(&mut out, name);
        out.push(':');
        json::write_string(&mut out, value);
    }
    out.push_str("},\"publishTime\":");
    json::write_string(&mut out, &msg.publish_time);
    out.push_str(",\"eventTime\":");
    match &msg.event_time {
        Some(time) => json::write_string(&mut out, time),
        None => out.push_str("null"),
    }
    out.push_str(&format!(",\"attempt\":{},\"payload\":", msg.attempt));
    match std::str::from_utf8(&msg.payload) {
        Ok(text) => {
            json::write_string(&mut out, text);
            out.push_str(",\"payloadEncoding\":\"utf8\"}");
        }
        Err(_) => {
            out.push('"');
            out.push_str(&base64::encode(&msg.payload));
            out.push_str("\",\"payloadEncoding\":\"base64\"}");
        }
    }
    out
}

/// A random string of the characters that matter to JSON (quotes, backslashes, control
/// characters), ASCII and multi-byte UTF-8.
fn random_string(rng: &mut Rng) -> String {
    const SPECIAL: &[char] = &[
        '"', '\\', '/', '\u{0}', '\n', '\t', '\u{1f}', '\u{7f}', 'é', '€', '\u{fffd}', '😀',
    ];
    (0..rng.below(24))
        .map(|_| match rng.below(3) {
            0 => SPECIAL[rng.below(SPECIAL.len())],
            1 => char::from(0x20 + rng.below(0x5f) as u8),
            _ => char::from_u32(rng.below(0x11_0000) as u32).unwrap_or('\u{fffd}'),
        })
        .collect()
}

fn random_message(rng: &mut Rng) -> Message {
    let len = rng.below(64);
    let payload: Vec<u8> = match rng.below(3) {
        0 => (0..len).map(|_| rng.next() as u8).collect(),
        1 => (0..len).map(|_| rng.below(0x80) as u8).collect(),
        _ => random_string(rng).into_bytes(),
    };
    let optional = |rng: &mut Rng| (rng.below(3) > 0).then(|| random_string(rng));
    Message {
        topic: random_string(rng),
        message_id: format!(
            "{}:{}:{}:{}",
            rng.next() >> 20,
            rng.below(1000),
            rng.below(5) as i64 - 1,
            rng.below(5) as i64 - 1
        ),
        key: optional(rng),
        properties: (0..rng.below(4))
            .map(|i| (format!("{i}{}", random_string(rng)), random_string(rng)))
            .collect(),
        publish_time: random_string(rng),
        event_time: optional(rng),
        attempt: match rng.below(4) {
            0 => u32::MAX - rng.below(3) as u32,
            _ => 1 + rng.below(20) as u32,
        },
        payload,
    }
}

#[test]
fn random_messages_round_trip() {
    let mut rng = Rng::new(6);
    for _ in 0..3000 {
        let msg = random_message(&mut rng);
        let json = worker_json(&msg);
        assert_eq!(
            Message::from_json(json.as_bytes()).as_ref(),
            Ok(&msg),
            "{json}"
        );
        for (name, value) in &msg.properties {
            assert_eq!(msg.property(name), Some(value.as_str()));
        }
    }
}

#[test]
fn handle_calls_the_handler() {
    let mut seen = None;
    let result = handle(FULL.as_bytes(), |msg| {
        seen = Some((msg.topic.clone(), msg.attempt));
        Ok(())
    });
    assert_eq!(result, Ok(()));
    assert_eq!(
        seen,
        Some(("persistent://public/default/orders".to_string(), 3))
    );

    let result = handle(FULL.as_bytes(), |msg| {
        Err(format!("refused {}", msg.payload_text().unwrap()))
    });
    assert_eq!(result, Err("refused {\"qty\": 3}".to_string()));
}

#[test]
fn handle_refuses_bad_input_without_calling_the_handler() {
    let mut called = false;
    let result = handle(b"raw payload, not a message", |_| {
        called = true;
        Ok(())
    });
    assert!(!called);
    let reason = result.unwrap_err();
    assert!(reason.contains("Pulsar trigger message"), "{reason}");
    assert!(reason.contains("not JSON"), "{reason}");
    assert!(!reason.contains('\n'), "{reason}");
}

#[test]
fn random_inputs_never_panic() {
    let mut rng = Rng::new(7);
    let alphabet = b"{}[]\":,topicpayloadattemptEncodingbase64utf8\\u0-1.e ";
    for _ in 0..20_000 {
        let len = rng.below(60);
        let input: Vec<u8> = (0..len)
            .map(|_| alphabet[rng.below(alphabet.len())])
            .collect();
        let _ = handle(&input, |_| Ok(()));
    }
    // Mutations of a valid message, so that most of the parser is reached.
    let base = worker_json(&Message::from_json(FULL.as_bytes()).unwrap());
    for _ in 0..20_000 {
        let mut bytes = base.as_bytes().to_vec();
        for _ in 0..=rng.below(4) {
            let at = rng.below(bytes.len() + 1);
            let b = alphabet[rng.below(alphabet.len())];
            match rng.below(3) {
                0 if at < bytes.len() => {
                    bytes.remove(at);
                }
                1 if at < bytes.len() => bytes[at] = b,
                _ => bytes.insert(at, b),
            }
        }
        if let Ok(msg) = Message::from_json(&bytes) {
            assert!(msg.attempt >= 1);
            assert_eq!(
                Message::from_json(worker_json(&msg).as_bytes()).as_ref(),
                Ok(&msg)
            );
        }
    }
}
