//! Event delivery: running a Function for an event that no client waits on (an asynchronous
//! invocation, a Pulsar message), at least once. What the kinds of
//! events share lives here: when a failed delivery is retried (exponential backoff from the
//! Function's `retryBackoffMs`, with jitter, capped), and what is kept of a delivery's answer
//! ([`result_of`]). [`queue`] runs the durable queue of asynchronous invocations, [`pulsar`]
//! the consumers of Pulsar triggers.

pub mod pulsar;
pub mod queue;

use crate::model::InvocationResult;
use crate::worker::execute::Executed;
use std::time::Duration;

/// The longest wait between two attempts, whatever the backoff and attempt.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(3600);

/// Bytes of a result's body kept (the rest is cut, and the result says so).
pub const MAX_STORED_BODY: usize = 1 << 20;

/// Bytes of a delivery's stderr kept with its result (all of it goes to the logs).
pub const MAX_STORED_STDERR: usize = 64 << 10;

/// The wait after failed attempt number `attempt` (1 for the first): `backoff_ms` doubled for
/// each attempt before it, plus up to a tenth more at random (so that events that failed
/// together do not all come back at once), at most [`MAX_RETRY_DELAY`].
pub fn retry_delay(backoff_ms: u64, attempt: u32) -> Duration {
    let doublings = attempt.saturating_sub(1).min(32);
    let base = backoff_ms
        .saturating_mul(1u64 << doublings)
        .min(MAX_RETRY_DELAY.as_millis() as u64);
    let mut r = [0u8; 8];
    let _ = getrandom::fill(&mut r);
    let jitter = u64::from_le_bytes(r) % (base / 10 + 1);
    Duration::from_millis(base + jitter).min(MAX_RETRY_DELAY)
}

/// What is kept of a delivery's answer: status, headers, body (cut to [`MAX_STORED_BODY`]),
/// stderr (cut to [`MAX_STORED_STDERR`]) and, for `?debug`, the report parsed.
pub fn result_of(executed: &Executed, debug: bool) -> InvocationResult {
    let a = &executed.answer;
    let mut result = InvocationResult::with_body(a.status, &a.body, MAX_STORED_BODY);
    let text = |v: &hyper::header::HeaderValue| String::from_utf8_lossy(v.as_bytes()).into_owned();
    if let Some(ct) = &a.content_type {
        result.headers.push(("content-type".into(), text(ct)));
    }
    for (k, v) in &a.headers {
        result.headers.push((k.as_str().to_string(), text(v)));
    }
    let stderr = &executed.stderr[..executed.stderr.len().min(MAX_STORED_STDERR)];
    result.stderr = String::from_utf8_lossy(stderr).into_owned();
    if debug && a.status == 200 {
        result.report = serde_json::from_slice(&a.body).ok();
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_exponentially_with_bounded_jitter() {
        for attempt in 1..=5u32 {
            let base = 100u64 << (attempt - 1);
            for _ in 0..50 {
                let d = retry_delay(100, attempt).as_millis() as u64;
                assert!((base..=base + base / 10).contains(&d), "{attempt}: {d}");
            }
        }
        assert_eq!(retry_delay(3_600_000, 40), MAX_RETRY_DELAY);
        assert_eq!(retry_delay(u64::MAX, u32::MAX), MAX_RETRY_DELAY);
    }
}
