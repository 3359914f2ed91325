//! The invocation modes and the status mapping: what a request becomes for the guest (raw: the
//! body on stdin, CGI-style variables in the environment; `?trigger=http`: the whole request as
//! one JSON document on stdin, see `guest-sdk/README.md`), and what the guest's outcome becomes
//! for the client: exit 0 → 200 (raw: stdout is the body; http: the guest's response), non-zero
//! exit → 500 (stdout as the body, the code in `Fnvm-Exit-Code`), trap → 500 (kind and
//! backtrace, never a host address), deadline → 504, output over the limit or a malformed
//! structured response → 502 saying what was wrong; `?debug` answers the JSON report instead.

use super::{FunctionState, Served};
use crate::model::Function;
use base64::Engine as _;
use bytes::Bytes;
use fnvm_dataplane::{Invocation, InvokeError, Outcome, Status, Trigger};
use fnvm_hostcalls::{CStrings, Output, Stdin};
use fnvm_runtime::{InstanceLimits, InstantiationError};
use hyper::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};
use hyper::{Method, Uri};
use std::borrow::Cow;
use std::time::Duration;

/// A request as the endpoint read it. Kept in hyper's types: the hot path copies nothing it
/// does not pass on.
#[derive(Clone, Debug)]
pub struct Call {
    /// `GET`, `POST`, ...
    pub method: Method,
    /// The URI as the client sent it.
    pub uri: Uri,
    /// The path after `/{functionId}` (`""` or `/...`).
    pub path_info: String,
    /// The query without fnvm's own parameters (`debug`, `trigger`).
    pub query: String,
    /// Headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
    /// `?debug`: answer the report.
    pub debug: bool,
    /// `?trigger=http`: the structured ABI.
    pub http_trigger: bool,
}

impl Call {
    /// The values of header `name` joined with `", "` (HTTP's rule for repeated fields), as
    /// text (invalid UTF-8 replaced); `None` without one.
    fn header(&self, name: impl hyper::header::AsHeaderName) -> Option<Cow<'_, str>> {
        let mut values = self.headers.get_all(name).iter();
        let first = values.next()?;
        let mut text = String::from_utf8_lossy(first.as_bytes());
        for v in values {
            let t = text.to_mut();
            t.push_str(", ");
            t.push_str(&String::from_utf8_lossy(v.as_bytes()));
        }
        Some(text)
    }
}

/// The URI as the client sent it, in pieces: the scheme and authority of an absolute-form
/// request (`http://host`, else empty) and the path and query.
fn uri_pieces(uri: &Uri) -> (Cow<'_, str>, &str) {
    let pq = uri.path_and_query().map_or("/", |p| p.as_str());
    match (uri.scheme_str(), uri.authority()) {
        (Some(s), Some(a)) => (Cow::Owned(format!("{s}://{a}")), pq),
        _ => (Cow::Borrowed(""), pq),
    }
}

/// Length of the URI as the client sent it.
pub fn uri_len(uri: &Uri) -> usize {
    let (prefix, pq) = uri_pieces(uri);
    prefix.len() + pq.len()
}

/// What the client gets.
#[derive(Debug)]
pub struct Answer {
    /// The status.
    pub status: u16,
    /// The HTTP/1.1 reason phrase, when the function chose one.
    pub reason: Option<hyper::ext::ReasonPhrase>,
    /// The content type, unless `headers` give one.
    pub content_type: Option<HeaderValue>,
    /// Headers.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// The body.
    pub body: Bytes,
}

/// `text/plain; charset=utf-8`.
const TEXT: HeaderValue = HeaderValue::from_static("text/plain; charset=utf-8");

impl Answer {
    /// A plain-text answer.
    pub fn text(status: u16, text: impl Into<Bytes>) -> Answer {
        Answer {
            status,
            reason: None,
            content_type: Some(TEXT),
            headers: Vec::new(),
            body: text.into(),
        }
    }

    /// Adds a header (a value that is not a valid one is left out: fnvm's own are).
    pub fn with(mut self, name: &'static str, value: impl AsRef<str>) -> Answer {
        if let Ok(v) = HeaderValue::from_str(value.as_ref()) {
            self.headers.push((HeaderName::from_static(name), v));
        }
        self
    }
}

/// Appends the decimal digits of `n` to a stack buffer; returns them.
fn decimal(n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    let mut n = n;
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[i..];
        }
    }
}

/// Appends the CGI-style variables of a request to `env`.
fn cgi_env(call: &Call, env: &mut CStrings) {
    // The names are fixed and valid; a value with a NUL (which HTTP's parser lets through in
    // no field) would be left out.
    let _ = env.push_var("REQUEST_METHOD", call.method.as_str());
    let _ = env.push_var("PATH_INFO", &call.path_info);
    let _ = env.push_var("QUERY_STRING", &call.query);
    let _ = env.push_var("SERVER_PROTOCOL", "HTTP/1.1");
    // Which ABI stdin and stdout follow: a program that serves both modes (the JavaScript
    // engine) tells them apart by this.
    let _ = env.push_var(
        "FNVM_TRIGGER",
        if call.http_trigger { "http" } else { "std" },
    );
    let host = call
        .headers
        .get(hyper::header::HOST)
        .map_or(&b""[..], |h| h.as_bytes());
    let (prefix, pq) = uri_pieces(&call.uri);
    let _ = if prefix.is_empty() {
        env.push_var_parts(b"X_FULL_URL", &[b"http://", host, pq.as_bytes()])
    } else {
        env.push_var_parts(b"X_FULL_URL", &[prefix.as_bytes(), pq.as_bytes()])
    };
    let mut digits = [0u8; 20];
    let _ = env.push_var(
        "CONTENT_LENGTH",
        decimal(call.body.len() as u64, &mut digits),
    );
    if let Some(ct) = call.header(CONTENT_TYPE) {
        let _ = env.push_var("CONTENT_TYPE", ct.as_bytes());
    }
    let mut var = String::with_capacity(32);
    for name in call.headers.keys() {
        var.clear();
        var.push_str("HTTP_");
        var.extend(name.as_str().chars().map(|c| {
            if c == '-' {
                '_'
            } else {
                c.to_ascii_uppercase()
            }
        }));
        // Names that cannot be environment variable names are left out (a header name may
        // hold characters a variable's may not); values are printable by HTTP's rules (and
        // made UTF-8, which programs expect of an environment).
        if crate::model::valid_env_name(&var) {
            if let Some(value) = call.header(name) {
                let _ = env.push_var(&var, value.as_bytes());
            }
        }
    }
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
        .keys()
        .filter_map(|k| {
            let v = call.header(k)?;
            Some((
                k.as_str().to_string(),
                serde_json::Value::String(v.into_owned()),
            ))
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "method": call.method.as_str(),
        "uri": uri,
        "path": call.path_info,
        "query": call.query,
        "headers": headers,
        "body": body,
        "bodyEncoding": encoding,
    }))
    .unwrap_or_default()
}

/// A Function's arguments (its id as the program's name) and environment, packed once when the
/// worker learns of its settings.
pub fn packed_args_and_environment(f: &Function) -> (CStrings, CStrings) {
    let mut args = CStrings::new();
    // An id is a plain token; were it not, the program would see no name.
    let _ = args.push_arg(&f.id);
    let mut env = CStrings::new();
    for (k, v) in &f.environment {
        // The API validated them; an entry that is not valid anyway is left out.
        let _ = env.push_var(k, v);
    }
    (args, env)
}

/// The invocation a request makes.
pub fn invocation(call: &Call, f: &FunctionState, output_limit: usize) -> Invocation {
    let mut env = function_env(f);
    cgi_env(call, &mut env);
    let stdin = if call.http_trigger {
        trigger_request(call)
    } else {
        call.body.to_vec()
    };
    let trigger = if call.http_trigger {
        Trigger::Http
    } else {
        Trigger::Std
    };
    invocation_of(f, env, stdin, trigger, call.debug, output_limit)
}

/// The Function's own environment, with room for the variables of one call.
pub fn function_env(f: &FunctionState) -> CStrings {
    let mut env = CStrings::with_capacity(f.environment.as_bytes().len() + 256);
    env.extend_from(&f.environment);
    env
}

/// An invocation of `f` with `env` and `stdin`, under the Function's limits (any trigger).
pub fn invocation_of(
    f: &FunctionState,
    env: CStrings,
    stdin: Vec<u8>,
    trigger: Trigger,
    debug: bool,
    output_limit: usize,
) -> Invocation {
    Invocation {
        args: f.args.clone(),
        env,
        stdin: Stdin::Bytes(stdin),
        stdout: Output::Buffer,
        stderr: Output::Buffer,
        debug,
        trigger,
        limits: InstanceLimits {
            max_memory_bytes: Some(f.function.max_memory),
            timeout: Some(Duration::from_millis(f.function.timeout_ms)),
            ..InstanceLimits::default()
        },
        output_limit,
        net: f.net.clone(),
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
        let header = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("`{name}` is not a valid header name"))?;
        let value = HeaderValue::from_str(value)
            .map_err(|_| format!("header `{name}` has an invalid value"))?;
        // `HeaderName`s are lowercase.
        if !is_framing_or_hop_by_hop(header.as_str()) {
            headers.push((header, value));
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
    let content_type = (!headers.iter().any(|(k, _)| k == CONTENT_TYPE))
        .then(|| HeaderValue::from_static(raw_content_type(&body)));
    Ok(Answer {
        status,
        reason,
        content_type,
        headers,
        body,
    })
}

/// Why a finished invocation failed, for event deliveries (which retry and dead-letter
/// failures): a non-zero exit, a trap, the deadline, output over the limit, or a malformed
/// structured response. `None`: it succeeded (a structured response of any status is the
/// function's answer, not a failure). Call before [`answer`], which takes the output.
pub fn failure(outcome: &Outcome, call: &Call, f: &Function) -> Option<String> {
    if outcome.stdout_overflowed {
        return Some("the function's output is larger than the worker's limit".into());
    }
    match &outcome.status {
        Status::Exited(0) if call.http_trigger => trigger_response(&outcome.stdout)
            .err()
            .map(|why| format!("malformed response: {why}")),
        Status::Exited(0) => None,
        Status::Exited(code) => Some(format!("the function exited with code {code}")),
        Status::Trapped(t) if t.is_deadline() => Some(format!(
            "deadline exceeded: the function ran longer than its timeoutMs ({} ms)",
            f.timeout_ms
        )),
        Status::Trapped(t) => Some(format!("trap: {t}")),
    }
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
            content_type: Some(HeaderValue::from_static(raw_content_type(&stdout))),
            headers: Vec::new(),
            body: stdout,
        },
        Status::Exited(code) => Answer {
            status: 500,
            reason: None,
            content_type: Some(HeaderValue::from_static(raw_content_type(&stdout))),
            headers: Vec::new(),
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
        content_type: Some(HeaderValue::from_static("application/json")),
        headers: Vec::new(),
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
        assert!(ok.headers.iter().any(|(k, v)| k == "x-a" && v == "1"));
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
            .map(|(k, v)| format!("{k}={}", v.to_str().unwrap()))
            .collect();
        assert_eq!(names, ["z=1", "set-cookie=a", "a=2", "set-cookie=b"]);
        assert_eq!(ordered.content_type, Some(TEXT));
        let bin = trigger_response(br#"{"body": "AAEC/w==", "bodyEncoding": "base64"}"#).unwrap();
        assert_eq!((bin.status, &bin.body[..]), (200, &[0u8, 1, 2, 255][..]));
        assert_eq!(
            bin.content_type,
            Some(HeaderValue::from_static("application/octet-stream"))
        );
        let typed = trigger_response(br#"{"headers": {"Content-Type": "text/html"}}"#).unwrap();
        assert_eq!(typed.content_type, None, "the function's own type is kept");
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
        let mut headers = HeaderMap::new();
        headers.append("user-agent", HeaderValue::from_static("curl/8"));
        headers.append("content-type", HeaderValue::from_static("text/plain"));
        headers.append("weird!name", HeaderValue::from_static("v"));
        headers.append("x-twice", HeaderValue::from_static("1"));
        headers.append("x-twice", HeaderValue::from_static("2"));
        headers.append("x-latin1", HeaderValue::from_bytes(b"caf\xe9").unwrap());
        headers.append("host", HeaderValue::from_static("h"));
        let call = Call {
            method: Method::POST,
            uri: "/f/a/b?x=1&debug".parse().unwrap(),
            path_info: "/a/b".into(),
            query: "x=1".into(),
            headers,
            body: Bytes::from_static(b"\xffbin"),
            debug: false,
            http_trigger: true,
        };
        let mut env = CStrings::new();
        cgi_env(&call, &mut env);
        let get = |k: &str| env.var(k).map(|v| std::str::from_utf8(v).unwrap());
        assert_eq!(get("REQUEST_METHOD"), Some("POST"));
        assert_eq!(get("FNVM_TRIGGER"), Some("http"));
        assert_eq!(get("PATH_INFO"), Some("/a/b"));
        assert_eq!(get("QUERY_STRING"), Some("x=1"));
        assert_eq!(get("HTTP_USER_AGENT"), Some("curl/8"));
        assert_eq!(get("CONTENT_TYPE"), Some("text/plain"));
        assert_eq!(get("CONTENT_LENGTH"), Some("4"));
        assert_eq!(get("HTTP_X_TWICE"), Some("1, 2"));
        assert_eq!(get("HTTP_X_LATIN1"), Some("caf\u{fffd}"));
        assert_eq!(get("X_FULL_URL"), Some("http://h/f/a/b?x=1&debug"));
        assert!(env.vars().all(|(n, _)| !n.contains(&b'!')));
        let absolute = Call {
            uri: "http://example.com:8/f?q".parse().unwrap(),
            ..call.clone()
        };
        let mut env = CStrings::new();
        cgi_env(&absolute, &mut env);
        assert_eq!(
            env.var("X_FULL_URL"),
            Some(&b"http://example.com:8/f?q"[..])
        );
        assert_eq!(uri_len(&absolute.uri), "http://example.com:8/f?q".len());
        let mut digits = [0u8; 20];
        assert_eq!(decimal(0, &mut digits), b"0");
        assert_eq!(decimal(u64::MAX, &mut digits), b"18446744073709551615");
        let req: serde_json::Value = serde_json::from_slice(&trigger_request(&call)).unwrap();
        assert_eq!(req["uri"], "/a/b?x=1");
        assert_eq!(req["headers"]["user-agent"], "curl/8");
        assert_eq!(req["headers"]["x-twice"], "1, 2");
        assert_eq!(req["bodyEncoding"], "base64");
        assert_eq!(req["body"], "/2Jpbg==");
    }
}
