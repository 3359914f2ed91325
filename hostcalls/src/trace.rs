//! The dmesg tracer: a human-readable log of every hostcall an invocation made.
//!
//! It exists only when debugging is on ([`WasiCtxBuilder::trace`](crate::WasiCtxBuilder::trace)):
//! the context holds an `Option<Box<Dmesg>>` and each hostcall pays one `is_some` test when it
//! is off. When on, each call appends
//!
//! ```text
//! WASI_FD_WRITE(vmctx=30c0ffee, 01, ffec8, 01, ffe9c)
//!     nwritten: 12
//! ```
//!
//! (the arguments are the raw slot values in hex, results are indented by a tab). The `vmctx=`
//! field, in the product's trace format, is the invocation's id: a random number drawn when the
//! tracer is created, the same on every line of one invocation. It is never a host address
//! (the trace goes to the function's owner, and a host address would tell them where the
//! runtime's memory lies, defeating ASLR). The embedder brackets the log with
//! [`Dmesg::start`], [`Dmesg::halt`] and [`Dmesg::finish`]. The log is capped
//! ([`DEFAULT_LIMIT`]) so a chatty guest cannot grow host memory without bound: past the cap,
//! one `... trace truncated` line replaces all further hostcall entries.

use crate::errno::Errno;
use std::fmt::Write;
use std::time::Duration;

/// Default cap on the hostcall part of the log, in bytes.
pub const DEFAULT_LIMIT: usize = 1 << 20;

const TRUNCATED: &str = "... trace truncated\n";

/// The named results of a successful hostcall, as the trace prints them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ret {
    /// Nothing but success (`errno: SUCCESS`).
    None,
    /// One named value.
    One(&'static str, u64),
    /// Two named values.
    Two(&'static str, u64, &'static str, u64),
}

/// The log of one invocation.
#[derive(Clone, Debug)]
pub struct Dmesg {
    buf: String,
    limit: usize,
    truncated: bool,
    halted: bool,
    /// The invocation id every entry shows as `vmctx=`.
    id: u32,
}

impl Default for Dmesg {
    fn default() -> Self {
        Self::new()
    }
}

impl Dmesg {
    /// An empty log capped at [`DEFAULT_LIMIT`] bytes of hostcall entries.
    pub fn new() -> Self {
        Self::with_limit(DEFAULT_LIMIT)
    }

    /// An empty log capped at `limit` bytes of hostcall entries, with a random invocation id.
    pub fn with_limit(limit: usize) -> Self {
        Self::with_id(random_id(), limit)
    }

    /// An empty log capped at `limit` bytes of hostcall entries, showing `id` as the
    /// invocation's id (an embedder that has its own request ids may use them).
    pub fn with_id(id: u32, limit: usize) -> Self {
        Dmesg {
            buf: String::new(),
            limit,
            truncated: false,
            halted: false,
            id,
        }
    }

    /// The invocation id the entries show.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Records how long the invocation took to start (`Start time: 2.202681ms`).
    pub fn start(&mut self, start_time: Duration) {
        let _ = write!(self.buf, "Start time: {start_time:?}\n\n");
    }

    /// Records a graceful end with status `code`: the `HOST_HALT` entry. The embedder calls it
    /// when `_start` returns or after `proc_exit`; the `host_halt` hostcall calls it itself.
    /// Only the first call writes (an invocation halts once, and the embedder need not know
    /// whether the guest's own `host_halt` already logged it). Not subject to the cap: it is
    /// the line that says how the run ended.
    pub fn halt(&mut self, code: i32) {
        if self.halted {
            return;
        }
        self.halted = true;
        let _ = write!(
            self.buf,
            "HOST_HALT(vmctx={:x}, {:02x})\n\tGRACEFULLY EXIT\n",
            self.id, code as u32
        );
    }

    /// Appends the epilogue (halt reason, backtrace frames as `(pc, symbol)`, timings) and
    /// returns the whole log.
    pub fn finish(
        mut self,
        halt_reason: &str,
        frames: &[(usize, String)],
        run: Duration,
        total: Duration,
    ) -> String {
        let _ = write!(self.buf, "\nHalt reason: {halt_reason}\n\n");
        for (pc, symbol) in frames {
            let _ = writeln!(self.buf, "\tat 0x{pc:08x}: {symbol}");
        }
        let _ = write!(self.buf, "\nRun time: {run:?}\nTotal time: {total:?}\n");
        self.buf
    }

    /// The log so far.
    pub fn as_str(&self) -> &str {
        &self.buf
    }

    /// Whether hostcall entries were dropped because of the cap.
    pub fn is_truncated(&self) -> bool {
        self.truncated
    }

    /// Appends one hostcall entry, or drops it past the cap.
    pub(crate) fn hostcall(&mut self, name: &str, args: &[u64], result: Result<Ret, Errno>) {
        if self.truncated {
            return;
        }
        let mark = self.buf.len();
        self.call_line(name, args);
        match result {
            Ok(Ret::None) => self.buf.push_str("\terrno: SUCCESS\n"),
            Ok(Ret::One(n, v)) => {
                let _ = writeln!(self.buf, "\t{n}: {v}");
            }
            Ok(Ret::Two(n1, v1, n2, v2)) => {
                let _ = write!(self.buf, "\t{n1}: {v1}\n\t{n2}: {v2}\n");
            }
            Err(e) => {
                let _ = writeln!(self.buf, "\terrno: {}", e.name());
            }
        }
        if self.buf.len() > self.limit {
            self.buf.truncate(mark);
            self.buf.push_str(TRUNCATED);
            self.truncated = true;
        }
    }

    /// Appends `\treason: why` under the last entry (dropped past the cap, like entries).
    pub(crate) fn reason(&mut self, why: &str) {
        if self.truncated {
            return;
        }
        let mark = self.buf.len();
        let _ = writeln!(self.buf, "\treason: {why}");
        if self.buf.len() > self.limit {
            self.buf.truncate(mark);
            self.buf.push_str(TRUNCATED);
            self.truncated = true;
        }
    }

    /// Appends a free-form result line for hostcalls that end the invocation (not subject to
    /// the cap: it says how the run ended).
    pub(crate) fn exit_entry(&mut self, name: &str, args: &[u64], line: &str) {
        self.call_line(name, args);
        let _ = writeln!(self.buf, "\t{line}");
    }

    /// `NAME(vmctx=<id>, args...)` and a newline.
    fn call_line(&mut self, name: &str, args: &[u64]) {
        let _ = write!(self.buf, "{name}(vmctx={:x}", self.id);
        for a in args {
            let _ = write!(self.buf, ", {a:02x}");
        }
        self.buf.push_str(")\n");
    }
}

/// A random invocation id: tells nothing of the host or of other invocations.
fn random_id() -> u32 {
    let mut b = [0u8; 4];
    match getrandom::fill(&mut b) {
        Ok(()) => u32::from_le_bytes(b),
        // No entropy source: a per-process counter mixed with the clock still reveals no
        // address.
        Err(_) => {
            static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos());
            n.wrapping_mul(0x9e37_79b9) ^ t
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn product_example() {
        let mut d = Dmesg::with_id(0x30c0ffee, DEFAULT_LIMIT);
        d.start(Duration::from_nanos(2_202_681));
        d.hostcall(
            "WASI_FD_WRITE",
            &[1, 0xffec8, 1, 0xffe9c],
            Ok(Ret::One("nwritten", 12)),
        );
        d.halt(0);
        d.halt(0);
        let out = d.finish(
            "host_halt",
            &[(
                0x1003,
                "internal::graceful_exit\n\t\tmangled state: no valid stackframe found (rsp:00200010, rbp:00200008)"
                    .to_string(),
            )],
            Duration::from_nanos(3_359_928),
            Duration::from_nanos(5_652_870),
        );
        assert_eq!(
            out,
            "Start time: 2.202681ms\n\nWASI_FD_WRITE(vmctx=30c0ffee, 01, ffec8, 01, ffe9c)\n\tnwritten: 12\nHOST_HALT(vmctx=30c0ffee, 00)\n\tGRACEFULLY EXIT\n\nHalt reason: host_halt\n\n\tat 0x00001003: internal::graceful_exit\n\t\tmangled state: no valid stackframe found (rsp:00200010, rbp:00200008)\n\nRun time: 3.359928ms\nTotal time: 5.65287ms\n"
        );
    }

    #[test]
    fn errors_and_cap() {
        let mut d = Dmesg::with_id(0x10, 100);
        d.hostcall("WASI_FD_CLOSE", &[9], Err(Errno::Badf));
        assert_eq!(d.as_str(), "WASI_FD_CLOSE(vmctx=10, 09)\n\terrno: EBADF\n");
        for _ in 0..10 {
            d.hostcall("WASI_SCHED_YIELD", &[], Ok(Ret::None));
        }
        assert!(d.is_truncated());
        assert!(d.as_str().ends_with("... trace truncated\n"));
        assert_eq!(d.as_str().matches("truncated").count(), 1);
        assert!(d.as_str().len() <= 100 + TRUNCATED.len());
    }

    #[test]
    fn ids_are_random_per_tracer() {
        let ids: std::collections::HashSet<u32> = (0..16).map(|_| Dmesg::new().id()).collect();
        assert!(ids.len() > 1, "16 tracers drew the same id");
    }
}
