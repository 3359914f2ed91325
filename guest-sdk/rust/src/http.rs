//! The HTTP trigger (`?trigger=http`, ABI version 1, see `guest-sdk/README.md`): the request the
//! worker writes on stdin as one JSON object, the response the guest writes back on stdout as
//! one JSON object, and [`serve`], which does both around a handler.
//!
//! Everything here is also usable without stdin and stdout ([`Request::from_json`],
//! [`Response::to_json`], [`handle`]), which is how the tests exercise it on the host.

use std::fmt;
use std::io::{Read, Write};

use crate::json::{self, Value};
use crate::{base64, query};

/// An HTTP request, as the worker describes it (`?trigger=http`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Request {
    /// The method as the client sent it (`GET`, `POST`, ...).
    pub method: String,
    /// [`path`](Self::path), then `?` and [`query`](Self::query) when the query is not empty.
    pub uri: String,
    /// The path after `/{function_id}`, as in the URL (percent-encoding kept): `""` when the URL
    /// stops at the function id, otherwise starting with `/`.
    pub path: String,
    /// The query string without its `?` and without fnvm's own `debug` and `trigger`
    /// parameters; percent-encoding kept. See [`query_param`](Self::query_param).
    pub query: String,
    /// The request headers; names are lowercase, a repeated header's values joined by `", "`.
    pub headers: Headers,
    /// The body, already decoded from base64 when the worker had to encode it.
    pub body: Vec<u8>,
}

impl Request {
    /// Parses the request JSON the worker writes on stdin.
    ///
    /// `method` is required; the other members default to empty (and `uri` to `path` plus
    /// `?query`) so that a hand-written request for a test can be short. Members this version
    /// does not know are ignored: the worker may add some within ABI version 1.
    pub fn from_json(input: &[u8]) -> Result<Request, RequestError> {
        let text = std::str::from_utf8(input).map_err(|e| {
            RequestError::new(format!(
                "the request is not UTF-8 (invalid byte at {})",
                e.valid_up_to()
            ))
        })?;
        let value = json::parse(text).map_err(|e| RequestError::new(format!("not JSON: {e}")))?;
        let Value::Object(members) = value else {
            return Err(RequestError::new(format!(
                "the request is {}, not an object",
                value.kind()
            )));
        };
        let mut fields = Fields::default();
        for (name, value) in members {
            let slot = match name.as_str() {
                "method" => &mut fields.method,
                "uri" => &mut fields.uri,
                "path" => &mut fields.path,
                "query" => &mut fields.query,
                "headers" => &mut fields.headers,
                "body" => &mut fields.body,
                "bodyEncoding" => &mut fields.body_encoding,
                _ => continue,
            };
            if slot.is_some() {
                return Err(RequestError::new(format!("duplicate member {name:?}")));
            }
            *slot = Some(value);
        }

        let method = string(fields.method, "method")?
            .ok_or_else(|| RequestError::new("no \"method\" member".to_string()))?;
        let path = string(fields.path, "path")?.unwrap_or_default();
        let query = string(fields.query, "query")?.unwrap_or_default();
        let uri = match string(fields.uri, "uri")? {
            Some(uri) => uri,
            None if query.is_empty() => path.clone(),
            None => format!("{path}?{query}"),
        };
        let headers = match fields.headers {
            None | Some(Value::Null) => Headers::default(),
            Some(Value::Object(members)) => {
                let mut headers = Headers::default();
                for (name, value) in members {
                    let Value::String(value) = value else {
                        return Err(RequestError::new(format!(
                            "header {name:?} is {}, not a string",
                            value.kind()
                        )));
                    };
                    headers.add(name, value);
                }
                headers
            }
            Some(other) => {
                return Err(RequestError::new(format!(
                    "\"headers\" is {}, not an object",
                    other.kind()
                )))
            }
        };
        let body = string(fields.body, "body")?.unwrap_or_default();
        let body = match string(fields.body_encoding, "bodyEncoding")?.as_deref() {
            None | Some("utf8") => body.into_bytes(),
            Some("base64") => {
                base64::decode(&body).map_err(|e| RequestError::new(format!("\"body\": {e}")))?
            }
            Some(other) => {
                return Err(RequestError::new(format!(
                    "unknown \"bodyEncoding\" {other:?} (expected \"utf8\" or \"base64\")"
                )))
            }
        };
        Ok(Request {
            method,
            uri,
            path,
            query,
            headers,
            body,
        })
    }

    /// The value of header `name`, compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)
    }

    /// The body as text, or why it is not UTF-8.
    pub fn body_text(&self) -> Result<&str, std::str::Utf8Error> {
        std::str::from_utf8(&self.body)
    }

    /// The first value of query parameter `name` (`a=1&b=x%20y` gives `b` → `x y`), decoded as
    /// a form (`%XX` and `+` for a space; invalid UTF-8 replaced by U+FFFD); `Some("")` for a
    /// parameter without `=`; `None` when absent.
    pub fn query_param(&self, name: &str) -> Option<String> {
        query::param(&self.query, name)
    }
}

/// The request members this version knows, as found.
#[derive(Default)]
struct Fields {
    method: Option<Value>,
    uri: Option<Value>,
    path: Option<Value>,
    query: Option<Value>,
    headers: Option<Value>,
    body: Option<Value>,
    body_encoding: Option<Value>,
}

/// An optional string member: absent or `null` is `None`, another type an error.
fn string(value: Option<Value>, name: &str) -> Result<Option<String>, RequestError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(RequestError::new(format!(
            "{name:?} is {}, not a string",
            other.kind()
        ))),
    }
}

/// Request headers: names as the worker gave them (lowercase), in its order, with a
/// case-insensitive lookup.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Headers {
    entries: Vec<(String, String)>,
}

impl Headers {
    /// The value of header `name`, compared case-insensitively.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Adds a header; a name already present (in any case) gets `", "` and the new value
    /// appended, the way the worker joins a repeated header.
    pub fn add(&mut self, name: impl Into<String>, value: impl Into<String>) {
        let (name, value) = (name.into(), value.into());
        match self
            .entries
            .iter_mut()
            .find(|(n, _)| n.eq_ignore_ascii_case(&name))
        {
            Some((_, existing)) => {
                existing.push_str(", ");
                existing.push_str(&value);
            }
            None => self.entries.push((name, value)),
        }
    }

    /// Every header as `(name, value)`, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// How many headers there are.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Why the input is not a request of this ABI; its `Display` is the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestError {
    message: String,
}

impl RequestError {
    fn new(message: String) -> RequestError {
        RequestError { message }
    }
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for RequestError {}

/// An HTTP response, built with chained calls:
///
/// ```
/// use fnvm_guest::http::Response;
/// let response = Response::new(201)
///     .header("Content-Type", "text/plain")
///     .body("created\n");
/// assert_eq!(
///     response.to_json(),
///     r#"{"status":201,"headers":{"Content-Type":"text/plain"},"body":"created\n","bodyEncoding":"utf8"}"#
/// );
/// ```
///
/// Nothing is checked here: a status outside 100..=999 or a header the worker cannot send is
/// written as given, and the worker answers 502 saying what was wrong, which is easier to
/// diagnose than a value silently changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    status: u16,
    status_text: Option<String>,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Default for Response {
    /// `200`, no headers, an empty body.
    fn default() -> Response {
        Response::new(200)
    }
}

impl Response {
    /// A response with this status, the standard reason phrase, no headers and no body.
    pub fn new(status: u16) -> Response {
        Response {
            status,
            status_text: None,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// Replaces the reason phrase (the worker sends the standard one otherwise).
    pub fn status_text(mut self, text: impl Into<String>) -> Response {
        self.status_text = Some(text.into());
        self
    }

    /// Adds a header. Adding the same name again sends another header field with that name, the
    /// way to send several `Set-Cookie` (see [`to_json`](Self::to_json) for how).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Response {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the body: text or bytes (`&str`, `String`, `&[u8]`, `Vec<u8>`). Bytes that are not
    /// UTF-8 are sent base64-encoded and arrive unchanged.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Response {
        self.body = body.into();
        self
    }

    /// The status code.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The headers, in the order they were added.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &str)> {
        self.headers.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// The body's bytes.
    pub fn body_bytes(&self) -> &[u8] {
        &self.body
    }

    /// The response JSON of the ABI, on one line without a trailing newline: `status`, then
    /// `statusText` if set, `headers` (an object with one member per [`header`](Self::header)
    /// call, in order), `body` and `bodyEncoding` (`utf8`, or `base64` for bytes that are not
    /// UTF-8).
    ///
    /// JSON member names should be unique, and a JSON reader that meets the same name twice
    /// keeps one. So a header name given again with exactly the same spelling is written in
    /// another case (`Set-Cookie`, then `set-Cookie`, ...): header names are case-insensitive
    /// and the worker sends every member as its own header field. Should a name have no
    /// spelling left (a name without letters), its value is joined to the first one's with
    /// `", "`, as HTTP allows for most headers.
    pub fn to_json(&self) -> String {
        let mut out = String::with_capacity(64 + self.body.len() * 4 / 3);
        out.push_str("{\"status\":");
        out.push_str(&self.status.to_string());
        if let Some(text) = &self.status_text {
            out.push_str(",\"statusText\":");
            json::write_string(&mut out, text);
        }
        out.push_str(",\"headers\":{");
        for (i, (name, value)) in distinct_names(&self.headers).iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            json::write_string(&mut out, name);
            out.push(':');
            json::write_string(&mut out, value);
        }
        out.push_str("},\"body\":");
        match std::str::from_utf8(&self.body) {
            Ok(text) => {
                json::write_string(&mut out, text);
                out.push_str(",\"bodyEncoding\":\"utf8\"}");
            }
            Err(_) => {
                out.push('"');
                out.push_str(&base64::encode(&self.body));
                out.push_str("\",\"bodyEncoding\":\"base64\"}");
            }
        }
        out
    }
}

/// `headers` with every name made distinct (exactly, not case-insensitively), as
/// [`Response::to_json`] describes.
fn distinct_names(headers: &[(String, String)]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::with_capacity(headers.len());
    for (name, value) in headers {
        let taken = |candidate: &str| out.iter().any(|(n, _)| n == candidate);
        if !taken(name) {
            out.push((name.clone(), value.clone()));
            continue;
        }
        let letters = name.bytes().filter(u8::is_ascii_alphabetic).count().min(16);
        let variant = (1u32..1 << letters)
            .map(|k| case_variant(name, k))
            .find(|candidate| !taken(candidate));
        match variant {
            Some(variant) => out.push((variant, value.clone())),
            None => {
                if let Some((_, first)) = out.iter_mut().find(|(n, _)| n == name) {
                    first.push_str(", ");
                    first.push_str(value);
                }
            }
        }
    }
    out
}

/// `name` with the case of its i-th ASCII letter swapped when bit i of `k` is set.
fn case_variant(name: &str, k: u32) -> String {
    let mut letter = 0;
    name.chars()
        .map(|c| {
            if !c.is_ascii_alphabetic() {
                return c;
            }
            let flip = letter < 32 && k >> letter & 1 == 1;
            letter += 1;
            match (flip, c.is_ascii_uppercase()) {
                (false, _) => c,
                (true, true) => c.to_ascii_lowercase(),
                (true, false) => c.to_ascii_uppercase(),
            }
        })
        .collect()
}

/// The response to a request that could not be parsed: 400, with the reason as plain text.
/// Most often the function was called without `?trigger=http` (stdin is then the raw body), so
/// the text says so.
pub fn bad_request(error: &RequestError) -> Response {
    Response::new(400)
        .header("Content-Type", "text/plain; charset=utf-8")
        .body(format!(
            "fnvm-guest: the function could not read its HTTP trigger request: {error}.\n\
             It expects to be called with ?trigger=http.\n"
        ))
}

/// From the request JSON (stdin's bytes) to the response JSON (stdout's text, newline-ended):
/// parses, calls `handler`, serializes. Input that is not a request is answered with
/// [`bad_request`] and `handler` is not called. [`serve`] does this between stdin and stdout.
pub fn handle<F: FnOnce(Request) -> Response>(input: &[u8], handler: F) -> String {
    respond(Request::from_json(input), handler)
}

fn respond<F: FnOnce(Request) -> Response>(
    request: Result<Request, RequestError>,
    handler: F,
) -> String {
    let response = match request {
        Ok(request) => handler(request),
        Err(error) => {
            // Also on stderr, which the debug report shows next to the response.
            eprintln!("fnvm-guest: bad request: {error}");
            bad_request(&error)
        }
    };
    let mut out = response.to_json();
    out.push('\n');
    out
}

/// Serves one HTTP trigger invocation: reads the request JSON from stdin, calls `handler`, and
/// writes the response JSON to stdout.
///
/// A request it cannot parse gets a 400 response (see [`bad_request`]; the reason also goes to
/// stderr) and the guest still exits 0: the worker then sends that 400 to the client, which
/// tells the caller what went wrong, where a non-zero exit would only give a generic 500. A
/// panic in `handler` is a trap, which the worker answers with 500. If stdout cannot be
/// written, the process exits with status 1 (a 500 too).
pub fn serve<F: FnOnce(Request) -> Response>(handler: F) {
    let mut input = Vec::new();
    let request = match std::io::stdin().lock().read_to_end(&mut input) {
        Ok(_) => Request::from_json(&input),
        Err(e) => Err(RequestError::new(format!("reading stdin: {e}"))),
    };
    let output = respond(request, handler);
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout
        .write_all(output.as_bytes())
        .and_then(|()| stdout.flush())
    {
        eprintln!("fnvm-guest: writing the response to stdout: {e}");
        std::process::exit(1);
    }
}

#[cfg(test)]
#[path = "http_tests.rs"]
mod tests;
