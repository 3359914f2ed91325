//! Tests of the HTTP trigger types (`http.rs`): parsing requests (full, minimal, binary bodies,
//! bad ones), building and serializing responses, and `handle` from input bytes to output text.

use super::*;
use crate::test_rng::Rng;

const FULL: &str = r#"{"method": "POST", "uri": "/path/after?x=1&name=J%C3%B6rg+B", "path": "/path/after",
  "query": "x=1&name=J%C3%B6rg+B",
  "headers": {"user-agent": "curl/8.0", "accept": "*/*", "x-quoted": "a \"b\" \\ \u00e9"},
  "body": "hello\nworld", "bodyEncoding": "utf8"}"#;

#[test]
fn parses_a_full_request() {
    let req = Request::from_json(FULL.as_bytes()).unwrap();
    assert_eq!(req.method, "POST");
    assert_eq!(req.uri, "/path/after?x=1&name=J%C3%B6rg+B");
    assert_eq!(req.path, "/path/after");
    assert_eq!(req.query, "x=1&name=J%C3%B6rg+B");
    assert_eq!(req.header("user-agent"), Some("curl/8.0"));
    assert_eq!(req.header("User-Agent"), Some("curl/8.0"));
    assert_eq!(req.header("ACCEPT"), Some("*/*"));
    assert_eq!(req.header("x-quoted"), Some("a \"b\" \\ é"));
    assert_eq!(req.header("missing"), None);
    assert_eq!(req.headers.len(), 3);
    assert_eq!(
        req.headers.iter().map(|(n, _)| n).collect::<Vec<_>>(),
        ["user-agent", "accept", "x-quoted"]
    );
    assert_eq!(req.body, b"hello\nworld");
    assert_eq!(req.body_text(), Ok("hello\nworld"));
    assert_eq!(req.query_param("x").as_deref(), Some("1"));
    assert_eq!(req.query_param("name").as_deref(), Some("Jörg B"));
    assert_eq!(req.query_param("y"), None);
}

#[test]
fn minimal_request_and_defaults() {
    let req = Request::from_json(br#"{"method":"GET"}"#).unwrap();
    assert_eq!(req.method, "GET");
    assert_eq!(
        (req.uri.as_str(), req.path.as_str(), req.query.as_str()),
        ("", "", "")
    );
    assert!(req.headers.is_empty());
    assert!(req.body.is_empty());

    // uri defaults to path?query; null is the same as absent; unknown members are ignored.
    let req = Request::from_json(
        br#"{"method":"GET","path":"/a","query":"b=1","headers":null,"body":null,
             "bodyEncoding":null,"future":{"x":[1,2]},"version":1}"#,
    )
    .unwrap();
    assert_eq!(req.uri, "/a?b=1");
    let req = Request::from_json(br#"{"method":"GET","path":"/a","query":""}"#).unwrap();
    assert_eq!(req.uri, "/a");
}

#[test]
fn binary_body_is_decoded() {
    let req = Request::from_json(br#"{"method":"PUT","body":"AP/+gA==","bodyEncoding":"base64"}"#)
        .unwrap();
    assert_eq!(req.body, [0x00, 0xff, 0xfe, 0x80]);
    assert!(req.body_text().is_err());
}

#[test]
fn repeated_header_names_are_joined() {
    let req =
        Request::from_json(br#"{"method":"GET","headers":{"a":"1","A":"2","b":"3"}}"#).unwrap();
    assert_eq!(req.header("a"), Some("1, 2"));
    assert_eq!(req.headers.len(), 2);
}

#[test]
fn bad_requests_say_why() {
    let cases: &[(&[u8], &str)] = &[
        (b"", "not JSON"),
        (b"hello world", "not JSON"),
        (b"{\"method\":\"GET\"", "not JSON"),
        (b"[]", "the request is an array, not an object"),
        (b"\"GET\"", "the request is a string"),
        (b"{}", "no \"method\" member"),
        (b"{\"method\":null}", "no \"method\" member"),
        (b"{\"method\":1}", "\"method\" is a number, not a string"),
        (
            b"{\"method\":\"GET\",\"method\":\"PUT\"}",
            "duplicate member \"method\"",
        ),
        (
            b"{\"method\":\"GET\",\"headers\":[]}",
            "\"headers\" is an array, not an object",
        ),
        (
            b"{\"method\":\"GET\",\"headers\":{\"a\":1}}",
            "header \"a\" is a number",
        ),
        (
            b"{\"method\":\"GET\",\"body\":\"%%%%\",\"bodyEncoding\":\"base64\"}",
            "invalid base64",
        ),
        (
            b"{\"method\":\"GET\",\"bodyEncoding\":\"gzip\"}",
            "unknown \"bodyEncoding\" \"gzip\"",
        ),
        (b"{\"method\":\"GET\",\"body\":[1]}", "\"body\" is an array"),
        (b"{\"method\":\"\xff\"}", "not UTF-8 (invalid byte at 11)"),
    ];
    for (input, reason) in cases {
        let err = Request::from_json(input).unwrap_err().to_string();
        assert!(
            err.contains(reason),
            "{:?}: {err:?} lacks {reason:?}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn response_json() {
    let r = Response::new(200)
        .header("Content-Type", "text/plain")
        .header("X-Powered-By", "CleverCloud")
        .body("User-Agent: curl/8.0");
    assert_eq!(
        r.to_json(),
        r#"{"status":200,"headers":{"Content-Type":"text/plain","X-Powered-By":"CleverCloud"},"body":"User-Agent: curl/8.0","bodyEncoding":"utf8"}"#
    );
    assert_eq!(
        Response::default().to_json(),
        r#"{"status":200,"headers":{},"body":"","bodyEncoding":"utf8"}"#
    );
    let r = Response::new(418)
        .status_text("I'm a \"teapot\"")
        .header("Set-Cookie", "a=1")
        .header("Set-Cookie", "b=2")
        .body(String::from("line\n\ttab é"));
    assert_eq!(
        r.to_json(),
        r#"{"status":418,"statusText":"I'm a \"teapot\"","headers":{"Set-Cookie":"a=1","set-Cookie":"b=2"},"body":"line\n\ttab é","bodyEncoding":"utf8"}"#
    );
    assert_eq!(r.status(), 418);
    assert_eq!(r.headers().count(), 2);
    assert_eq!(r.body_bytes(), "line\n\ttab é".as_bytes());
    // Not UTF-8: base64.
    let r = Response::new(200).body(vec![0xff, 0x00, 0x61]);
    assert_eq!(
        r.to_json(),
        r#"{"status":200,"headers":{},"body":"/wBh","bodyEncoding":"base64"}"#
    );
    let r = Response::new(200).body(&b"bytes"[..]);
    assert_eq!(r.body_bytes(), b"bytes");
}

#[test]
fn repeated_header_names_get_distinct_spellings() {
    let r = Response::new(200)
        .header("Set-Cookie", "a=1")
        .header("set-Cookie", "b=2")
        .header("Set-Cookie", "c=3")
        .header("Set-Cookie", "d=4")
        .header("X-1", "x")
        .header("1-2", "one")
        .header("1-2", "two");
    let names: Vec<(String, String)> = distinct_names(&r.headers);
    assert_eq!(
        names,
        [
            ("Set-Cookie", "a=1"),
            ("set-Cookie", "b=2"),
            ("SEt-Cookie", "c=3"),
            ("sEt-Cookie", "d=4"),
            ("X-1", "x"),
            ("1-2", "one, two"),
        ]
        .map(|(n, v)| (n.to_string(), v.to_string()))
    );
    // A name with one letter has two spellings; the third value is joined.
    let r = Response::new(200)
        .header("a", "1")
        .header("a", "2")
        .header("a", "3");
    assert_eq!(
        distinct_names(&r.headers),
        [("a", "1, 3"), ("A", "2")].map(|(n, v)| (n.to_string(), v.to_string()))
    );
    // Many repetitions of a long name stay distinct and bounded in time.
    let mut r = Response::new(200);
    for i in 0..300 {
        r = r.header("Set-Cookie", format!("c{i}=1"));
    }
    let names = distinct_names(&r.headers);
    assert_eq!(names.len(), 300);
    for (i, (n, _)) in names.iter().enumerate() {
        assert!(n.eq_ignore_ascii_case("set-cookie"));
        assert!(names[..i].iter().all(|(m, _)| m != n));
    }
}

/// Reads a response JSON back with the crate's own reader, as the worker would.
fn read_back(json: &str) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let Ok(Value::Object(members)) = json::parse(json) else {
        panic!("not an object: {json}");
    };
    let (mut status, mut headers, mut body, mut encoding) =
        (0, vec![], String::new(), String::new());
    for (name, value) in members {
        match (name.as_str(), value) {
            ("status", Value::Number(n)) => status = n.parse().unwrap(),
            ("headers", Value::Object(h)) => {
                headers = h
                    .into_iter()
                    .map(|(n, v)| match v {
                        Value::String(v) => (n, v),
                        other => panic!("header {n}: {other:?}"),
                    })
                    .collect()
            }
            ("body", Value::String(b)) => body = b,
            ("bodyEncoding", Value::String(e)) => encoding = e,
            ("statusText", Value::String(_)) => {}
            other => panic!("unexpected member {other:?}"),
        }
    }
    let body = match encoding.as_str() {
        "utf8" => body.into_bytes(),
        "base64" => base64::decode(&body).unwrap(),
        other => panic!("bodyEncoding {other}"),
    };
    (status, headers, body)
}

#[test]
fn random_bodies_and_headers_round_trip() {
    let mut rng = Rng::new(4);
    for _ in 0..3000 {
        let len = rng.below(64);
        let body: Vec<u8> = match rng.below(3) {
            0 => (0..len).map(|_| rng.next() as u8).collect(),
            1 => (0..len).map(|_| rng.below(0x80) as u8).collect(),
            _ => "é€😀\"\\\n".repeat(len % 5).into_bytes(),
        };
        let value: String = (0..rng.below(20))
            .map(|_| char::from_u32(rng.below(0x800) as u32).unwrap_or('?'))
            .collect();
        let r = Response::new(200 + rng.below(300) as u16)
            .header("X-Value", value.clone())
            .body(body.clone());
        let (status, headers, decoded) = read_back(&r.to_json());
        assert_eq!(status, r.status());
        assert_eq!(headers, [("X-Value".to_string(), value)]);
        assert_eq!(decoded, body);
    }
}

#[test]
fn handle_calls_the_handler() {
    let out = handle(FULL.as_bytes(), |req| {
        Response::new(200)
            .header("X-Method", req.method.clone())
            .body(req.body)
    });
    assert_eq!(
        out,
        "{\"status\":200,\"headers\":{\"X-Method\":\"POST\"},\"body\":\"hello\\nworld\",\"bodyEncoding\":\"utf8\"}\n"
    );
}

#[test]
fn handle_answers_400_to_bad_input() {
    let mut called = false;
    let out = handle(b"raw body, not a request", |_| {
        called = true;
        Response::new(200)
    });
    assert!(!called);
    let (status, headers, body) = read_back(out.trim_end());
    assert_eq!(status, 400);
    assert_eq!(headers[0].0, "Content-Type");
    let body = String::from_utf8(body).unwrap();
    assert!(body.contains("not JSON"), "{body}");
    assert!(body.contains("?trigger=http"), "{body}");
}

#[test]
fn random_inputs_never_panic() {
    let mut rng = Rng::new(5);
    let alphabet = b"{}[]\":,methodbody\\u0 ";
    for _ in 0..20_000 {
        let len = rng.below(40);
        let input: Vec<u8> = (0..len)
            .map(|_| alphabet[rng.below(alphabet.len())])
            .collect();
        let out = handle(&input, |_| Response::new(204));
        assert!(out.starts_with("{\"status\":"), "{out}");
    }
}
