//! The build output: [`BoundedLog`] keeps the first and the last bytes of a stream of any
//! length and says how much it cut; [`reason`] picks the compiler's first error out of a log
//! (the short message a user sees first), and [`limit_hit`] recognizes, from the messages the
//! kernel's answers produce, which limit a failed build ran into.

use crate::Language;

/// The largest reason, in bytes.
pub(crate) const REASON_BYTES: usize = 2048;

/// The first `head_cap` and the last `tail_cap` bytes of a stream, and its total length.
#[derive(Debug)]
pub(crate) struct BoundedLog {
    head: Vec<u8>,
    head_cap: usize,
    /// A ring buffer once full: `tail_start` is the oldest byte.
    tail: Vec<u8>,
    tail_cap: usize,
    tail_start: usize,
    total: u64,
}

impl BoundedLog {
    /// Keeps at most `cap` bytes: half from the start, half from the end.
    pub(crate) fn new(cap: usize) -> BoundedLog {
        let head_cap = cap / 2;
        BoundedLog {
            head: Vec::new(),
            head_cap,
            tail: Vec::new(),
            tail_cap: cap - head_cap,
            tail_start: 0,
            total: 0,
        }
    }

    pub(crate) fn push(&mut self, mut bytes: &[u8]) {
        self.total += bytes.len() as u64;
        let room = self.head_cap - self.head.len();
        if room > 0 {
            let n = room.min(bytes.len());
            self.head.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
        }
        if self.tail_cap == 0 {
            return;
        }
        // Only the last tail_cap bytes of this chunk can survive.
        if bytes.len() > self.tail_cap {
            bytes = &bytes[bytes.len() - self.tail_cap..];
        }
        for &b in bytes {
            if self.tail.len() < self.tail_cap {
                self.tail.push(b);
            } else {
                self.tail[self.tail_start] = b;
                self.tail_start = (self.tail_start + 1) % self.tail_cap;
            }
        }
    }

    /// The kept bytes as text (invalid UTF-8 replaced), with a line saying how many bytes were
    /// cut between the head and the tail, if any.
    pub(crate) fn finish(self) -> String {
        let kept = (self.head.len() + self.tail.len()) as u64;
        let mut tail = Vec::with_capacity(self.tail.len());
        tail.extend_from_slice(&self.tail[self.tail_start..]);
        tail.extend_from_slice(&self.tail[..self.tail_start]);
        let mut out = String::from_utf8_lossy(&self.head).into_owned();
        if self.total > kept {
            if !out.ends_with('\n') && !out.is_empty() {
                out.push('\n');
            }
            out.push_str(&format!(
                "[fnvm: {} bytes of build output cut here; {} bytes in all, the first and last {} kept]\n",
                self.total - kept,
                self.total,
                kept
            ));
        }
        out.push_str(&String::from_utf8_lossy(&tail));
        out
    }
}

/// Whether a log line starts a compiler error of `language`.
fn starts_error(language: Language, line: &str) -> bool {
    let t = line.trim_start();
    // The build scripts' own messages (no artifact, several binaries, ...).
    if t.starts_with("fnvm-build:") {
        return true;
    }
    match language {
        // rustc: `error[E0425]: ...`, `error: ...`; cargo: `error: failed to ...`.
        Language::Rust => t.starts_with("error[") || t.starts_with("error:"),
        // go: `./main.go:5:2: undefined: x`, `go: errors parsing go.mod`, `main.go:1:1: ...`.
        Language::Go => t.starts_with("go: ") || (t.contains(".go:") && t.contains(": ")),
        // asc: `ERROR TS2304: Cannot find name 'x'.`, `ERROR AS...`.
        Language::AssemblyScript => t.starts_with("ERROR"),
    }
}

/// The compiler's first error and what follows it, at most [`REASON_BYTES`] bytes; the end of
/// the log when no line looks like an error.
pub(crate) fn reason(language: Language, log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    let text = match lines.iter().position(|l| starts_error(language, l)) {
        Some(first) => lines[first..].join("\n"),
        None => {
            // The last lines that fit.
            let mut start = lines.len();
            let mut size = 0;
            while start > 0 && size + lines[start - 1].len() < REASON_BYTES {
                start -= 1;
                size += lines[start].len() + 1;
            }
            lines[start..].join("\n")
        }
    };
    let text = text.trim();
    if text.is_empty() {
        return "the build failed without output".to_string();
    }
    truncate(text, REASON_BYTES)
}

/// `text` cut to at most `max` bytes on a character boundary, with an ellipsis when cut.
pub(crate) fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max.saturating_sub(4);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{} ...", &text[..end])
}

/// Which limit a failed build hit, judged from its output: the messages that the kernel's
/// answers to an over-limit process (EAGAIN from fork, EFBIG, SIGXFSZ, SIGXCPU, ENOMEM) become
/// in the toolchains and in the shell. A heuristic (a build may print these words itself),
/// used only for builds that failed, and only to name the cause. `None` when nothing points at a limit.
pub(crate) fn limit_hit(log: &str) -> Option<LimitKind> {
    let l = log.to_ascii_lowercase();
    let any = |needles: &[&str]| needles.iter().any(|n| l.contains(n));
    // Rust's `(signal: 24)` is how cargo reports a build script killed by SIGXCPU; error
    // numbers are matched with their closing parenthesis (`os error 11` is a prefix of 111).
    if any(&["sigxcpu", "cpu time limit exceeded", "signal: 24)"]) {
        Some(LimitKind::Cpu)
    } else if any(&[
        // ENOSPC is not here: it also comes from limits that are not the disk's (user
        // namespaces); a full tmpfs is measured instead (`sandbox::free_space`).
        "file too large",
        "sigxfsz",
        "signal: 25)",
        "file size limit exceeded",
    ]) {
        Some(LimitKind::Disk)
    } else if any(&[
        "resource temporarily unavailable",
        "os error 11)",
        "cannot fork",
        "fork: retry",
        "pthread_create failed",
        "failed to create new os thread",
        "failed to spawn thread",
    ]) {
        Some(LimitKind::Processes)
    } else if any(&[
        "memory allocation of",
        "cannot allocate memory",
        "out of memory",
        "os error 12)",
        "heap out of memory",
    ]) {
        Some(LimitKind::Memory)
    } else {
        None
    }
}

/// A limit recognized by [`limit_hit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LimitKind {
    Cpu,
    Disk,
    Processes,
    Memory,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_log_keeps_head_and_tail() {
        let mut log = BoundedLog::new(10);
        log.push(b"abc");
        log.push(b"defgh");
        assert_eq!(log.finish(), "abcdefgh");

        let mut log = BoundedLog::new(10);
        for chunk in [&b"0123456789"[..], b"abcdefghij", b"XYZ"] {
            log.push(chunk);
        }
        let out = log.finish();
        assert!(out.starts_with("01234\n[fnvm: 13 bytes"), "{out}");
        assert!(out.ends_with("ijXYZ"), "{out}");

        let mut log = BoundedLog::new(4);
        log.push(&vec![b'x'; 1 << 20]);
        log.push(b"end");
        let out = log.finish();
        assert!(out.ends_with("\nnd"), "{out}");
        assert!(out.len() < 200);
    }

    #[test]
    fn reason_starts_at_the_first_error() {
        let log = "   Compiling f v0.1.0\nwarning: unused\nerror[E0425]: cannot find value `x`\n --> src/main.rs:1:13\n\nerror: aborting\n";
        let r = reason(Language::Rust, log);
        assert!(r.starts_with("error[E0425]: cannot find value `x`"), "{r}");
        assert!(r.contains("aborting"));

        let log = "# fnvm.build/function\n./main.go:4:2: undefined: x\n";
        assert_eq!(reason(Language::Go, log), "./main.go:4:2: undefined: x");

        let log = "ERROR TS2304: Cannot find name 'x'.\n   :\n 1 │ x\n";
        assert!(reason(Language::AssemblyScript, log).starts_with("ERROR TS2304"));

        // No recognizable error: the end of the log, bounded.
        let long = "z".repeat(100) + "\n";
        let r = reason(Language::Rust, &long.repeat(100));
        assert!(r.len() <= REASON_BYTES && r.len() > 1000, "{}", r.len());
        assert_eq!(reason(Language::Go, ""), "the build failed without output");
        // Multi-byte characters are cut on a boundary.
        let r = reason(Language::Rust, &format!("error: {}", "é".repeat(3000)));
        assert!(r.len() <= REASON_BYTES);
    }

    #[test]
    fn limits_are_recognized() {
        assert_eq!(
            limit_hit(
                "process didn't exit successfully (signal: 24, SIGXCPU: CPU time limit exceeded)"
            ),
            Some(LimitKind::Cpu)
        );
        assert_eq!(
            limit_hit("File too large (os error 27)"),
            Some(LimitKind::Disk)
        );
        assert_eq!(
            limit_hit("Resource temporarily unavailable (os error 11)"),
            Some(LimitKind::Processes)
        );
        assert_eq!(limit_hit("error[E0425]: cannot find value"), None);
        assert_eq!(
            limit_hit("Connection refused (os error 111), unreachable (os error 101)"),
            None
        );
        assert_eq!(
            limit_hit("build-script-build` (signal: 24)"),
            Some(LimitKind::Cpu)
        );
    }
}
