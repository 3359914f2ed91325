//! Asynchronous invocations as the API shows them: `POST /{functionId}?async` queues an
//! invocation (its request kept as [`InvocationRequest`]) and answers [`Accepted`]; a worker runs
//! it, retrying with backoff, and records its [`InvocationResult`], or dead-letters it after
//! the Function's `maxAttempts`; `GET .../invocations/{id}` shows an [`Invocation`].

use super::Timestamp;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use utoipa::ToSchema;

/// Where an asynchronous invocation is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum InvocationStatus {
    /// Waiting for a worker (first delivery, or a retry after its backoff).
    Queued,
    /// A worker runs it (or ran it and was lost: it is queued again when its lease lapses).
    Running,
    /// Ran to a result.
    Succeeded,
    /// Failed on every attempt: a dead letter, until retried.
    Dead,
}

impl InvocationStatus {
    /// As stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            InvocationStatus::Queued => "QUEUED",
            InvocationStatus::Running => "RUNNING",
            InvocationStatus::Succeeded => "SUCCEEDED",
            InvocationStatus::Dead => "DEAD",
        }
    }
}

impl fmt::Display for InvocationStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for InvocationStatus {
    type Err = String;

    /// Any case (`dead`, `DEAD`), as a query parameter may give it.
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_uppercase().as_str() {
            "QUEUED" => Ok(InvocationStatus::Queued),
            "RUNNING" => Ok(InvocationStatus::Running),
            "SUCCEEDED" => Ok(InvocationStatus::Succeeded),
            "DEAD" => Ok(InvocationStatus::Dead),
            _ => Err(format!(
                "unknown invocation status {s:?} (QUEUED, RUNNING, SUCCEEDED or DEAD)"
            )),
        }
    }
}

/// The request of an asynchronous invocation, kept until it has run: what the worker rebuilds
/// the call from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InvocationRequest {
    /// HTTP method.
    pub method: String,
    /// The path after the Function's id (`""` or `/...`).
    pub path: String,
    /// The query without fnvm's own parameters.
    pub query: String,
    /// Headers, in order (values as text; bytes that are not UTF-8 replaced).
    pub headers: Vec<(String, String)>,
    /// The body, base64 in JSON.
    #[serde(with = "base64_bytes")]
    pub body: Vec<u8>,
    /// `?debug` was asked: the result is the debug report.
    pub debug: bool,
    /// `?trigger=http` was asked.
    pub http_trigger: bool,
}

/// What an [`Invocation`] shows of its request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RequestSummary {
    /// HTTP method.
    pub method: String,
    /// The path after the Function's id.
    pub path: String,
    /// The Function's query string.
    pub query: String,
    /// Bytes of body.
    pub body_bytes: u64,
    /// Whether the debug report was asked for.
    pub debug: bool,
    /// `Std` (raw) or `Http` (structured).
    pub trigger: String,
}

impl From<&InvocationRequest> for RequestSummary {
    fn from(r: &InvocationRequest) -> RequestSummary {
        RequestSummary {
            method: r.method.clone(),
            path: r.path.clone(),
            query: r.query.clone(),
            body_bytes: r.body.len() as u64,
            debug: r.debug,
            trigger: if r.http_trigger { "Http" } else { "Std" }.into(),
        }
    }
}

/// How a body is written in JSON.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum BodyEncoding {
    /// As text (it was valid UTF-8).
    Utf8,
    /// Base64 (standard alphabet, padded).
    Base64,
}

/// What an invocation answered: the HTTP response a synchronous call would have had.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InvocationResult {
    /// HTTP status.
    pub status: u16,
    /// Response headers, in order.
    pub headers: Vec<(String, String)>,
    /// The body (the debug report's JSON when `?debug` was asked).
    pub body: String,
    /// How `body` is written.
    pub body_encoding: BodyEncoding,
    /// Whether the body was cut to the stored limit.
    pub body_truncated: bool,
    /// What the guest wrote to stderr (cut to the stored limit).
    pub stderr: String,
    /// The debug report, parsed, when `?debug` was asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub report: Option<serde_json::Value>,
}

impl InvocationResult {
    /// A result with `body`, written as text when it is UTF-8, and cut to `max_body` bytes.
    pub fn with_body(status: u16, body: &[u8], max_body: usize) -> InvocationResult {
        let truncated = body.len() > max_body;
        let body = &body[..body.len().min(max_body)];
        let (body, body_encoding) = match std::str::from_utf8(body) {
            Ok(text) => (text.to_string(), BodyEncoding::Utf8),
            Err(_) => (
                base64::engine::general_purpose::STANDARD.encode(body),
                BodyEncoding::Base64,
            ),
        };
        InvocationResult {
            status,
            headers: Vec::new(),
            body,
            body_encoding,
            body_truncated: truncated,
            stderr: String::new(),
            report: None,
        }
    }
}

/// An asynchronous invocation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Invocation {
    /// Identifier.
    pub id: String,
    /// The Function it runs.
    pub function_id: String,
    /// Where it is.
    pub status: InvocationStatus,
    /// Deliveries begun so far.
    pub attempts: u32,
    /// Deliveries before it is dead-lettered (the Function's `maxAttempts` when queued).
    pub max_attempts: u32,
    /// When it is next due, while `QUEUED`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub next_attempt_at: Option<Timestamp>,
    /// Why the last attempt failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// What was asked.
    pub request: RequestSummary,
    /// What it answered (the last attempt's, for a dead letter).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<InvocationResult>,
    /// When it was queued.
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    /// When it last changed.
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Timestamp,
}

/// The answer to `POST /{functionId}?async`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Accepted {
    /// The invocation's id.
    pub id: String,
    /// `QUEUED`.
    pub status: InvocationStatus,
    /// Where the API shows it (a path of the API).
    pub status_path: String,
}

/// Bytes as base64 text in JSON.
mod base64_bytes {
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_parse_in_any_case_and_round_trip() {
        for s in [
            InvocationStatus::Queued,
            InvocationStatus::Running,
            InvocationStatus::Succeeded,
            InvocationStatus::Dead,
        ] {
            assert_eq!(s.as_str().parse::<InvocationStatus>(), Ok(s));
            assert_eq!(s.as_str().to_lowercase().parse::<InvocationStatus>(), Ok(s));
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        assert!("finished".parse::<InvocationStatus>().is_err());
    }

    #[test]
    fn requests_keep_binary_bodies_and_results_say_how_theirs_is_written() {
        let r = InvocationRequest {
            method: "POST".into(),
            path: "/a".into(),
            query: "x=1".into(),
            headers: vec![("content-type".into(), "application/octet-stream".into())],
            body: vec![0, 159, 146, 150, 255],
            debug: false,
            http_trigger: true,
        };
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<InvocationRequest>(&json).unwrap(), r);
        let summary = RequestSummary::from(&r);
        assert_eq!((summary.body_bytes, summary.trigger.as_str()), (5, "Http"));

        let text = InvocationResult::with_body(200, "héllo".as_bytes(), 100);
        assert_eq!(
            (text.body.as_str(), text.body_encoding, text.body_truncated),
            ("héllo", BodyEncoding::Utf8, false)
        );
        let binary = InvocationResult::with_body(200, &[0xff, 0xfe, 1, 2], 3);
        assert_eq!(binary.body_encoding, BodyEncoding::Base64);
        assert!(binary.body_truncated);
        assert_eq!(
            base64::engine::general_purpose::STANDARD
                .decode(&binary.body)
                .unwrap(),
            [0xff, 0xfe, 1]
        );
    }
}
