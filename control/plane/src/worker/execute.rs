//! One call of a Function on this worker, as a job for the [`super::invoker`]: a fresh
//! instance runs the invocation; the outcome is recorded (run history, metrics, the guest's
//! stderr into the logs) and turned into the answer the caller gets, with a receipt saying
//! what it cost. The HTTP endpoint and the event deliveries (asynchronous invocations, later
//! Pulsar messages) share it; deliveries also ask whether the call failed and what the guest
//! wrote to stderr.

use super::respond::{self, Answer, Call};
use super::{FunctionState, Served, Worker};
use hyper::header::HeaderValue;
use std::fmt::Write as _;
use std::sync::Arc;

/// What a call gave.
#[derive(Debug)]
pub struct Executed {
    /// The answer (what a synchronous caller gets).
    pub answer: Answer,
    /// The receipt header's value.
    pub receipt: HeaderValue,
    /// Why the call failed, when the job was asked for details (`None`: it succeeded, or
    /// details were not asked for).
    pub failure: Option<String>,
    /// What the guest wrote to stderr, when details were asked for.
    pub stderr: Vec<u8>,
}

/// The job that runs `call` (as `invocation`) on `served` and replies once with what it gave,
/// before the instance is reset. `permit` (an instance of the Function) is held until the job
/// ends. `details`: also say whether it failed and keep its stderr (event deliveries).
#[allow(clippy::too_many_arguments)]
pub fn job<P: Send + 'static>(
    worker: Arc<Worker>,
    served: Arc<Served>,
    state: Arc<FunctionState>,
    call: Call,
    invocation: fnvm_dataplane::Invocation,
    permit: P,
    id: impl std::fmt::Display + Send + 'static,
    details: bool,
) -> impl FnOnce(&mut dyn FnMut(Executed)) + Send + 'static {
    move |reply: &mut dyn FnMut(Executed)| {
        let _permit = permit;
        let _in_use = state.metrics.instance();
        let mut replied = false;
        let result = served.module.invoke_then(invocation, |mut outcome| {
            state.runs.record(
                outcome.instantiate_time + outcome.run_time,
                outcome.run_cpu_time,
                outcome.run_waited,
            );
            state.metrics.instantiate.observe(outcome.instantiate_time);
            state.metrics.run.observe(outcome.run_time);
            if !outcome.stderr.is_empty() {
                worker.logs.push(
                    &state.function.id,
                    &served.deployment.id,
                    &id.to_string(),
                    &outcome.stderr,
                );
            }
            let mut receipt = String::with_capacity(160);
            let _ = write!(
                receipt,
                "id={id}, deployment={}, instantiate_us={}, run_us={}",
                served.deployment.id,
                outcome.instantiate_time.as_micros(),
                outcome.run_time.as_micros(),
            );
            if let Some(cpu) = outcome.run_cpu_time {
                let _ = write!(receipt, ", cpu_us={}", cpu.as_micros());
            }
            let _ = write!(
                receipt,
                ", pages={}, hostcalls={}",
                outcome.memory_pages, outcome.hostcalls,
            );
            let (failure, stderr) = if details {
                (
                    respond::failure(&outcome, &call, &state.function),
                    std::mem::take(&mut outcome.stderr),
                )
            } else {
                (None, Vec::new())
            };
            let answer = respond::answer(&mut outcome, &call, &served, &state.function);
            replied = true;
            reply(Executed {
                answer,
                receipt: receipt_value(receipt),
                failure,
                stderr,
            });
        });
        if let (Err(e), false) = (result, replied) {
            let answer = respond::answer_error(&e);
            let failure =
                details.then(|| String::from_utf8_lossy(&answer.body).trim_end().to_string());
            reply(Executed {
                answer,
                receipt: receipt_value(format!("id={id}")),
                failure,
                stderr: Vec::new(),
            });
        }
    }
}

/// A receipt as a header value (ids and numbers: always a valid one).
pub fn receipt_value(text: String) -> HeaderValue {
    HeaderValue::from_maybe_shared(bytes::Bytes::from(text))
        .unwrap_or_else(|_| HeaderValue::from_static("unavailable"))
}
