//! The debug report of one invocation: what `?debug` on a Function URL returns and what
//! `fnvm run --debug` prints. Field names and meanings follow the product description's
//! Troubleshooting section.

use serde::Serialize;

/// What triggered an invocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Trigger {
    /// Run from the command line with standard streams (`fnvm run`).
    Std,
    /// An HTTP request.
    Http,
    /// A Pulsar message.
    Pulsar,
}

/// The debug report. Serializes to the JSON object of the product description:
/// `{"stdout", "stderr", "dmesg", "trigger", "responseBody", "currentPages", "size"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DebugReport {
    /// Standard output of the function (lossily decoded as UTF-8).
    pub stdout: String,
    /// Error output of the function.
    pub stderr: String,
    /// The trace: timings, hostcalls with their results, halt reason and backtrace.
    pub dmesg: String,
    /// What triggered the invocation.
    pub trigger: Trigger,
    /// The HTTP response body (HTTP trigger only; empty otherwise).
    pub response_body: String,
    /// 4096-byte pages of linear memory the invocation touched.
    pub current_pages: u64,
    /// Size of the function's WebAssembly binary in bytes.
    pub size: u64,
}

impl DebugReport {
    /// The report as pretty-printed JSON, as the HTTP endpoint and the CLI print it.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_with_the_product_field_names() {
        let r = DebugReport {
            stdout: "Hello Rust!\n".into(),
            stderr: String::new(),
            dmesg: "Start time: 1ms\n".into(),
            trigger: Trigger::Std,
            response_body: String::new(),
            current_pages: 17,
            size: 2310144,
        };
        let json = r.to_json();
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v.as_object().unwrap().len(), 7);
        // In the product description's order.
        let at: Vec<usize> = [
            "stdout",
            "stderr",
            "dmesg",
            "trigger",
            "responseBody",
            "currentPages",
            "size",
        ]
        .iter()
        .map(|k| json.find(&format!("\"{k}\":")).unwrap())
        .collect();
        assert!(at.windows(2).all(|w| w[0] < w[1]), "{json}");
        assert_eq!(v["trigger"], "Std");
        assert_eq!(v["currentPages"], 17);
        assert_eq!(v["size"], 2310144);
        assert_eq!(v["stdout"], "Hello Rust!\n");
    }
}
