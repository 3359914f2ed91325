//! The invocation modes and the status mapping: what a request becomes for the guest (raw: the
//! body on stdin, CGI-style variables in the environment; `?trigger=http`: the whole request as
//! one JSON document on stdin, see `guest-sdk/README.md`), and what the guest's outcome becomes
//! for the client: exit 0 → 200 (raw: stdout is the body; http: the guest's response), non-zero
//! exit → 500 (stdout as the body, the code in `Fnvm-Exit-Code`), trap → 500 (kind and
//! backtrace, never a host address), deadline → 504, output over the limit or a malformed
//! structured response → 502 saying what was wrong; `?debug` answers the JSON report instead.

use super::Served;
use crate::model::Function;
use base64::Engine as _;
use bytes::Bytes;
use fnvm_dataplane::{Invocation, InvokeError, Outcome, Status, Trigger};
use fnvm_hostcalls::{Output, Stdin};
use fnvm_runtime::{InstanceLimits, InstantiationError};
use std::time::Duration;

/// A request as the endpoint read it.
#[derive(Clone, Debug)]
pub struct Call {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The path after `/{functionId}` (`""` or `/...`).
    pub path_info: String,
    /// The query without fnvm's own parameters (`debug`, `trigger`).
    pub query: String,
    /// Headers, names lowercase, repeated ones joined with `", "`.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Bytes,
    /// The URL as the client asked for it.
    pub full_url: String,
    /// `?debug`: answer the report.
    pub debug: bool,
    /// `?trigger=http`: the structured ABI.
    pub http_trigger: bool,
}

impl Call {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What the client gets.
#[derive(Debug)]
pub struct Answer {
    /// The status.
    pub status: u16,
    /// The HTTP/1.1 reason phrase, when the function chose one.
    pub reason: Option<hyper::ext::ReasonPhrase>,
    /// Headers.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Bytes,
}

impl Answer {
    /// A plain-text answer.
    pub fn text(status: u16, text: impl Into<String>) -> Answer {
        Answer {
            status,
            reason: None,
            headers: vec![("content-type".into(), "text/plain; charset=utf-8".into())],
            body: Bytes::from(text.into()),
        }
    }

    fn with(mut self, name: &str, value: impl Into<String>) -> Answer {
        self.headers.push((name.to_string(), value.into()));
        self
    }
}

/// The CGI-style variables of a request (after the Function's own environment).
fn cgi_env(call: &Call) -> Vec<(String, String)> {
    let mut env = vec![
        ("REQUEST_METHOD".to_string(), call.method.clone()),
        ("PATH_INFO".to_string(), call.path_info.clone()),
        ("QUERY_STRING".to_string(), call.query.clone()),
        ("SERVER_PROTOCOL".to_string(), "HTTP/1.1".to_string()),
        ("X_FULL_URL".to_string(), call.full_url.clone()),
        ("CONTENT_LENGTH".to_string(), call.body.len().to_string()),
    ];
    if let Some(ct) = call.header("content-type") {
        env.push(("CONTENT_TYPE".to_string(), ct.to_string()));
    }
    for (name, value) in &call.headers {
        let var: String = name
            .chars()
            .map(|c| {
                if c == '-' {
                    '_'
                } else {
                    c.to_ascii_uppercase()
                }
            })
            .collect();
        // Names that cannot be environment variable names are left out (a header name may
        // hold characters a variable's may not); values are printable by HTTP's rules.
        if crate::model::valid_env_name(&var) && !value.contains('\0') {
            env.push((format!("HTTP_{var}"), value.clone()));
        }
    }
    env
}

/// The request as the HTTP trigger's JSON document.
fn trigger_request(call: &Call) -> Vec<u8> {
    let (body, encoding) = match std::str::from_utf8(&call.body) {
        Ok(text) => (text.to_string(), "utf8"),
        Err(_) => (
            base64::engine::general_purpose::STANDARD.encode(&call.body),
            "base64",
        ),
    };
    let uri = if call.query.is_empty() {
        call.path_info.clone()
    } else {
        format!("{}?{}", call.path_info, call.query)
    };
    let headers: serde_json::Map<String, serde_json::Value> = call
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "method": call.method,
        "uri": uri,
        "path": call.path_info,
        "query": call.query,
        "headers": headers,
        "body": body,
        "bodyEncoding": encoding,
    }))
    .unwrap_or_default()
}

/// The invocation a request makes.
pub fn invocation(call: &Call, f: &Function, output_limit: usize) -> Invocation {
    let mut env: Vec<(String, String)> = f
        .environment
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    env.extend(cgi_env(call));
    let stdin = if call.http_trigger {
        trigger_request(call)
    } else {
        call.body.to_vec()
    };
    Invocation {
        args: vec![f.id.clone()],
        env,
        stdin: Stdin::Bytes(stdin),
        stdout: Output::Buffer,
        stderr: Output::Buffer,
        debug: call.debug,
        trigger: if call.http_trigger {
            Trigger::Http
        } else {
            Trigger::Std
        },
        limits: InstanceLimits {
            max_memory_bytes: Some(f.max_memory),
            timeout: Some(Duration::from_millis(f.timeout_ms)),
            ..InstanceLimits::default()
        },
        output_limit,
        ..Invocation::default()
    }
}

/// The content type of a raw body: text when it is UTF-8.
fn raw_content_type(body: &[u8]) -> &'static str {
    if std::str::from_utf8(body).is_ok() {
        "text/plain; charset=utf-8"
    } else {
        "application/octet-stream"
    }
}

/// A structured response as the guest wrote it: every member kept as JSON so that each can be
/// checked with its own message, and the headers as an ordered list, so that their order and
/// repeated names survive (a JSON map would sort and merge them). Unknown members are ignored.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireResponse {
    status: Option<serde_json::Value>,
    status_text: Option<serde_json::Value>,
    headers: Option<OrderedMembers>,
    body: Option<serde_json::Value>,
    body_encoding: Option<serde_json::Value>,
}

/// A JSON object's members in the order they were written, repeats included.
struct OrderedMembers(Vec<(String, serde_json::Value)>);

impl<'de> serde::Deserialize<'de> for OrderedMembers {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Members;
        impl<'de> serde::de::Visitor<'de> for Members {
            type Value = OrderedMembers;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("`headers` as an object of strings")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<OrderedMembers, A::Error> {
                let mut members = Vec::new();
                while let Some(member) = map.next_entry::<String, serde_json::Value>()? {
                    members.push(member);
                }
                Ok(OrderedMembers(members))
            }
        }
        d.deserialize_map(Members)
    }
}

/// Response headers fnvm never passes on: it frames the response and owns the connection, so
/// the guest's framing and hop-by-hop headers would contradict what is on the wire.
fn is_framing_or_hop_by_hop(lowercase_name: &str) -> bool {
    matches!(
        lowercase_name,
        "content-length"
            | "transfer-encoding"
            | "connection"
            | "keep-alive"
            | "proxy-connection"
            | "upgrade"
            | "te"
            | "trailer"
    )
}

/// A structured response the guest wrote, checked; or what is wrong with it.
fn trigger_response(stdout: &[u8]) -> Result<Answer, String> {
    let wire: WireResponse = match serde_json::from_slice::<serde_json::Value>(stdout) {
        Err(e) => {
            return Err(format!(
                "the function's output is not one JSON document: {e}"
            ))
        }
        Ok(serde_json::Value::Object(_)) => serde_json::from_slice(stdout)
            .map_err(|e| format!("the function's response is malformed: {e}"))?,
        Ok(_) => return Err("the function's output is not a JSON object".into()),
    };
    use serde_json::Value;
    let status = match wire.status {
        None => 200,
        Some(s) => s
            .as_u64()
            // A final response cannot be informational (1xx): the client would wait for more.
            .filter(|s| (200..=999).contains(s))
            .ok_or("`status` must be an integer from 200 to 999")? as u16,
    };
    let reason = match wire.status_text {
        None => None,
        Some(Value::String(t)) => Some(
            hyper::ext::ReasonPhrase::try_from(t.into_bytes())
                .map_err(|_| "`statusText` holds characters a reason phrase cannot")?,
        ),
        Some(_) => return Err("`statusText` must be a string".into()),
    };
    let mut headers = Vec::new();
    for (name, value) in wire.headers.map(|h| h.0).unwrap_or_default() {
        let value = value
            .as_str()
            .ok_or_else(|| format!("header `{name}`'s value is not a string"))?;
        hyper::header::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("`{name}` is not a valid header name"))?;
        hyper::header::HeaderValue::from_str(value)
            .map_err(|_| format!("header `{name}` has an invalid value"))?;
        if !is_framing_or_hop_by_hop(&name.to_ascii_lowercase()) {
            headers.push((name, value.to_string()));
        }
    }
    let text = match wire.body {
        None => String::new(),
        Some(Value::String(s)) => s,
        Some(_) => return Err("`body` must be a string".into()),
    };
    let body = match wire.body_encoding {
        None => Bytes::from(text),
        Some(Value::String(e)) if e == "utf8" => Bytes::from(text),
        Some(Value::String(e)) if e == "base64" => Bytes::from(
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .map_err(|e| format!("`body` is not valid base64: {e}"))?,
        ),
        Some(other) => {
            return Err(format!(
                "`bodyEncoding` must be \"utf8\" or \"base64\", not {other}"
            ))
        }
    };
    if !headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
    {
        headers.push(("content-type".into(), raw_content_type(&body).into()));
    }
    Ok(Answer {
        status,
        reason,
        headers,
        body,
    })
}

/// The client's answer to a finished invocation.
pub fn answer(outcome: &mut Outcome, call: &Call, served: &Served, f: &Function) -> Answer {
    if call.debug {
        return debug_answer(outcome, call, served);
    }
    let stdout = Bytes::from(std::mem::take(&mut outcome.stdout));
    if outcome.stdout_overflowed {
        return Answer::text(
            502,
            format!(
                "the function's output is larger than the worker's limit of {} bytes\n",
                stdout.len()
            ),
        );
    }
    match &outcome.status {
        Status::Exited(0) if call.http_trigger => trigger_response(&stdout)
            .unwrap_or_else(|why| Answer::text(502, format!("malformed response: {why}\n"))),
        Status::Exited(0) => Answer {
            status: 200,
            reason: None,
            headers: vec![("content-type".into(), raw_content_type(&stdout).into())],
            body: stdout,
        },
        Status::Exited(code) => Answer {
            status: 500,
            reason: None,
            headers: vec![("content-type".into(), raw_content_type(&stdout).into())],
            body: stdout,
        }
        .with("fnvm-exit-code", code.to_string()),
        Status::Trapped(t) if t.is_deadline() => Answer::text(
            504,
            format!(
                "deadline exceeded: the function ran longer than its timeoutMs ({} ms)\n",
                f.timeout_ms
            ),
        ),
        Status::Trapped(t) => {
            Answer::text(500, format!("trap: {t}\n")).with("fnvm-trap", t.code.message())
        }
    }
}

/// `?debug`: the report, with the response body of the HTTP trigger when there is one.
fn debug_answer(outcome: &mut Outcome, call: &Call, served: &Served) -> Answer {
    let Some(mut report) = outcome.report.take() else {
        return Answer::text(500, "no debug report was produced\n");
    };
    report.size = served.code_size;
    if call.http_trigger {
        report.response_body = match trigger_response(&outcome.stdout) {
            Ok(a) => String::from_utf8_lossy(&a.body).into_owned(),
            Err(_) => String::from_utf8_lossy(&outcome.stdout).into_owned(),
        };
    }
    Answer {
        status: 200,
        reason: None,
        headers: vec![("content-type".into(), "application/json".into())],
        body: Bytes::from(report.to_json()),
    }
}

/// The client's answer when no invocation could run.
pub fn answer_error(e: &InvokeError) -> Answer {
    match e {
        InvokeError::Instantiate(InstantiationError::PoolExhausted { .. }) => {
            Answer::text(503, "the worker is at capacity; retry shortly\n").with("retry-after", "1")
        }
        InvokeError::Instantiate(InstantiationError::Trap(t)) => {
            Answer::text(500, format!("trap while starting the function: {t}\n"))
        }
        InvokeError::NoEntry(name) => Answer::text(
            500,
            format!("the function's module exports no `{name}` to run\n"),
        ),
        other => {
            tracing::error!(error = %other, "worker: an invocation could not run");
            Answer::text(500, "the invocation could not run\n")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn structured_responses_are_checked() {
        let ok = trigger_response(
            br#"{"status": 201, "statusText": "Created", "headers": {"X-A": "1"}, "body": "hi"}"#,
        )
        .unwrap();
        assert_eq!(ok.status, 201);
        assert_eq!(&ok.body[..], b"hi");
        assert!(ok.headers.iter().any(|(k, v)| k == "X-A" && v == "1"));
        assert_eq!(
            ok.reason.as_ref().map(|r| r.as_bytes()),
            Some(&b"Created"[..])
        );
        let ordered = trigger_response(
            br#"{"headers": {"Z": "1", "Set-Cookie": "a", "A": "2", "Set-Cookie": "b",
                 "Connection": "close", "Keep-Alive": "x", "Content-Length": "9"}}"#,
        )
        .unwrap();
        let names: Vec<_> = ordered
            .headers
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        assert_eq!(
            names,
            [
                "Z=1",
                "Set-Cookie=a",
                "A=2",
                "Set-Cookie=b",
                "content-type=text/plain; charset=utf-8"
            ]
        );
        let bin = trigger_response(br#"{"body": "AAEC/w==", "bodyEncoding": "base64"}"#).unwrap();
        assert_eq!((bin.status, &bin.body[..]), (200, &[0u8, 1, 2, 255][..]));
        assert!(bin
            .headers
            .iter()
            .any(|(_, v)| v == "application/octet-stream"));
        for (bad, why) in [
            (&b"not json"[..], "not one JSON document"),
            (b"[1]", "not a JSON object"),
            (br#"{"status": 42}"#, "`status`"),
            (br#"{"headers": {"X": 1}}"#, "not a string"),
            (br#"{"headers": {"Bad Name": "x"}}"#, "valid header name"),
            (br#"{"body": 5}"#, "`body`"),
            (br#"{"body": "@@", "bodyEncoding": "base64"}"#, "base64"),
            (br#"{"bodyEncoding": "rot13"}"#, "rot13"),
            (br#"{"bodyEncoding": 5}"#, "`bodyEncoding`"),
            (br#"{"status": 101}"#, "`status`"),
            (br#"{"status": 200.5}"#, "`status`"),
            (br#"{"statusText": 7}"#, "`statusText`"),
            (br#"{"statusText": "a\nb"}"#, "reason phrase"),
            (br#"{"headers": [["a", "b"]]}"#, "object of strings"),
            (br#"{} trailing"#, "not one JSON document"),
        ] {
            let e = trigger_response(bad).unwrap_err();
            assert!(e.contains(why), "{e}");
        }
    }

    #[test]
    fn requests_become_cgi_variables_and_json() {
        let call = Call {
            method: "POST".into(),
            path_info: "/a/b".into(),
            query: "x=1".into(),
            headers: vec![
                ("user-agent".into(), "curl/8".into()),
                ("content-type".into(), "text/plain".into()),
                ("weird!name".into(), "v".into()),
            ],
            body: Bytes::from_static(b"\xffbin"),
            full_url: "http://h/f/a/b?x=1".into(),
            debug: false,
            http_trigger: true,
        };
        let env = cgi_env(&call);
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("REQUEST_METHOD"), Some("POST"));
        assert_eq!(get("PATH_INFO"), Some("/a/b"));
        assert_eq!(get("QUERY_STRING"), Some("x=1"));
        assert_eq!(get("HTTP_USER_AGENT"), Some("curl/8"));
        assert_eq!(get("CONTENT_TYPE"), Some("text/plain"));
        assert_eq!(get("CONTENT_LENGTH"), Some("4"));
        assert!(env.iter().all(|(n, _)| !n.contains('!')));
        let req: serde_json::Value = serde_json::from_slice(&trigger_request(&call)).unwrap();
        assert_eq!(req["uri"], "/a/b?x=1");
        assert_eq!(req["headers"]["user-agent"], "curl/8");
        assert_eq!(req["bodyEncoding"], "base64");
        assert_eq!(req["body"], "/2Jpbg==");
    }
}
