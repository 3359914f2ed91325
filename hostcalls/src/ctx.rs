//! The per-invocation WASI state ([`WasiCtx`]) and the builder that grants its capabilities.
//!
//! A guest can reach exactly what the builder put here: its arguments and environment, the
//! preopened directories (fd 3, 4, ... in the order given), and stdio wired to in-memory
//! buffers, the host's own stdio, or nothing. Captured output is kept in the context, not in the
//! fd table, so it survives the guest closing or renumbering fds 1 and 2, and the embedder takes
//! it afterwards with [`WasiCtx::take_stdout`] / [`WasiCtx::take_stderr`].

use crate::cstrings::{CStringError, CStrings};
use crate::errno::Errno;
use crate::fdtable::{Desc, Dir, FdTable, DEFAULT_MAX_FDS};
use crate::fs;
use crate::trace::Dmesg;
use rustix::fs::{Mode, OFlags};
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use thiserror::Error;

/// Default cap on each captured output stream: 16 MiB.
pub const DEFAULT_OUTPUT_LIMIT: usize = 16 << 20;

/// Where the guest's fd 0 reads from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Stdin {
    /// These bytes, then end of file (the worker feeds an HTTP request body this way).
    Bytes(Vec<u8>),
    /// The host process's fd 0.
    Inherit,
    /// Immediately at end of file.
    #[default]
    Null,
}

/// Where the guest's fd 1 or 2 writes to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Output {
    /// An in-memory buffer capped at the builder's output limit. A write that reaches the cap
    /// stores what fits and reports that shorter count; once the buffer is full, writes fail
    /// with `EFBIG` (like a file at its size limit). Nothing is silently dropped.
    #[default]
    Buffer,
    /// The host process's fd 1 (for stdout) or 2 (for stderr).
    Inherit,
    /// Discarded (writes succeed).
    Null,
}

/// Why a [`WasiCtx`] could not be built.
#[derive(Debug, Error)]
pub enum BuildError {
    /// A preopened directory could not be opened.
    #[error("cannot open preopened directory {path}: {source}")]
    Preopen {
        /// Host path given.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A guest path for a preopen contains a NUL byte.
    #[error("invalid guest path for a preopened directory: {0:?}")]
    GuestPath(String),
    /// An argument contains a NUL byte (a guest sees arguments as C strings).
    #[error("argument contains a NUL byte: {0:?}")]
    Arg(String),
    /// An environment variable name is empty or contains `=` or NUL, or its value contains NUL.
    #[error("invalid environment variable: {0:?}")]
    Env(String),
    /// The kernel lacks `openat2` (Linux 5.6+), without which preopens cannot be confined.
    #[error("the kernel does not support openat2 (Linux 5.6 or later is required for preopened directories)")]
    Openat2Unsupported,
    /// More preopens than guest fd numbers.
    #[error("too many preopened directories")]
    TooManyPreopens,
}

enum Preopen {
    Path(PathBuf),
    Fd(OwnedFd),
}

/// Builds a [`WasiCtx`].
pub struct WasiCtxBuilder {
    args: CStrings,
    env: CStrings,
    /// The first argument or variable refused, returned by `build`.
    refused: Option<CStringError>,
    preopens: Vec<(Preopen, String)>,
    stdin: Stdin,
    stdout: Output,
    stderr: Output,
    output_limit: usize,
    trace: bool,
    trace_limit: usize,
    trace_id: Option<u32>,
    max_fds: u32,
    net: Option<crate::net::NetConfig>,
}

impl std::fmt::Debug for WasiCtxBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasiCtxBuilder")
            .field("args", &self.args)
            .field("env", &self.env.len())
            .field(
                "preopens",
                &self.preopens.iter().map(|(_, g)| g).collect::<Vec<_>>(),
            )
            .field("stdin", &self.stdin)
            .field("stdout", &self.stdout)
            .field("stderr", &self.stderr)
            .field("trace", &self.trace)
            .field("net", &self.net.is_some())
            .finish()
    }
}

impl Default for WasiCtxBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl WasiCtxBuilder {
    /// No arguments, no environment, no preopens, stdin empty, stdout/stderr captured.
    pub fn new() -> Self {
        WasiCtxBuilder {
            args: CStrings::new(),
            env: CStrings::new(),
            refused: None,
            preopens: Vec::new(),
            stdin: Stdin::Null,
            stdout: Output::Buffer,
            stderr: Output::Buffer,
            output_limit: DEFAULT_OUTPUT_LIMIT,
            trace: false,
            trace_limit: crate::trace::DEFAULT_LIMIT,
            trace_id: None,
            max_fds: DEFAULT_MAX_FDS,
            net: None,
        }
    }

    /// Appends one argument (the first one is `argv[0]`, given as the host wants it).
    pub fn arg(mut self, arg: impl AsRef<[u8]>) -> Self {
        let r = self.args.push_arg(arg);
        self.refuse(r)
    }

    /// Appends arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<[u8]>,
    {
        for a in args {
            let r = self.args.push_arg(a);
            self = self.refuse(r);
        }
        self
    }

    /// Appends arguments already packed (checked when they were). The first call takes the
    /// list as it is, without copying.
    pub fn arg_list(mut self, args: CStrings) -> Self {
        if self.args.is_empty() {
            self.args = args;
        } else {
            self.args.extend_from(&args);
        }
        self
    }

    /// Appends one environment variable.
    pub fn env(mut self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Self {
        let r = self.env.push_var(key, value);
        self.refuse(r)
    }

    /// Appends environment variables.
    pub fn envs<I, K, V>(mut self, vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<[u8]>,
        V: AsRef<[u8]>,
    {
        for (k, v) in vars {
            let r = self.env.push_var(k, v);
            self = self.refuse(r);
        }
        self
    }

    /// Appends an environment already packed (checked when it was). The first call takes the
    /// list as it is, without copying.
    pub fn environ(mut self, vars: CStrings) -> Self {
        if self.env.is_empty() {
            self.env = vars;
        } else {
            self.env.extend_from(&vars);
        }
        self
    }

    /// Keeps the first refusal for `build`.
    fn refuse(mut self, r: Result<(), CStringError>) -> Self {
        if let Err(e) = r {
            self.refused.get_or_insert(e);
        }
        self
    }

    /// Grants the directory `host_path`, visible to the guest as `guest_path`. Preopens get
    /// fds 3, 4, ... in the order of these calls. Nothing outside the directory is reachable
    /// through it. Opened at [`build`](Self::build).
    pub fn preopen_dir(
        mut self,
        host_path: impl Into<PathBuf>,
        guest_path: impl Into<String>,
    ) -> Self {
        self.preopens
            .push((Preopen::Path(host_path.into()), guest_path.into()));
        self
    }

    /// Like [`preopen_dir`](Self::preopen_dir) with a directory the host already opened.
    pub fn preopen_dir_fd(mut self, dir: OwnedFd, guest_path: impl Into<String>) -> Self {
        self.preopens.push((Preopen::Fd(dir), guest_path.into()));
        self
    }

    /// Sets fd 0.
    pub fn stdin(mut self, stdin: Stdin) -> Self {
        self.stdin = stdin;
        self
    }

    /// Sets fd 1.
    pub fn stdout(mut self, out: Output) -> Self {
        self.stdout = out;
        self
    }

    /// Sets fd 2.
    pub fn stderr(mut self, out: Output) -> Self {
        self.stderr = out;
        self
    }

    /// Caps each [`Output::Buffer`] at `bytes` (default [`DEFAULT_OUTPUT_LIMIT`]).
    pub fn output_limit(mut self, bytes: usize) -> Self {
        self.output_limit = bytes;
        self
    }

    /// Turns the dmesg tracer on or off (off by default, and then free).
    pub fn trace(mut self, on: bool) -> Self {
        self.trace = on;
        self
    }

    /// The invocation id the tracer shows on every entry (default: a random one).
    pub fn trace_id(mut self, id: u32) -> Self {
        self.trace_id = Some(id);
        self
    }

    /// Caps the tracer's hostcall log at `bytes` (default 1 MiB).
    pub fn trace_limit(mut self, bytes: usize) -> Self {
        self.trace_limit = bytes;
        self
    }

    /// Caps the number of simultaneously open guest fds (default 4096).
    pub fn max_fds(mut self, n: u32) -> Self {
        self.max_fds = n;
        self
    }

    /// Grants outbound connections (`host_tcp_connect`, `host_tls_connect`) under `config`'s
    /// egress policy and limits; without it both calls are `ENOTCAPABLE`.
    pub fn net(mut self, config: crate::net::NetConfig) -> Self {
        self.net = Some(config);
        self
    }

    /// Opens the preopens and assembles the context.
    pub fn build(self) -> Result<WasiCtx, BuildError> {
        match self.refused {
            Some(CStringError::Arg(a)) => return Err(BuildError::Arg(a)),
            Some(CStringError::Var(v)) => return Err(BuildError::Env(v)),
            None => {}
        }
        let needed = u32::try_from(self.preopens.len())
            .ok()
            .and_then(|n| n.checked_add(3))
            .ok_or(BuildError::TooManyPreopens)?;
        let mut fds = FdTable::new(self.max_fds.max(needed));
        for d in [Desc::Stdin, Desc::Stdout, Desc::Stderr] {
            fds.insert(d).map_err(|_| BuildError::TooManyPreopens)?;
        }
        let mut probed = false;
        for (pre, guest) in self.preopens {
            if guest.contains('\0') {
                return Err(BuildError::GuestPath(guest));
            }
            let fd = match pre {
                Preopen::Fd(fd) => fd,
                Preopen::Path(path) => rustix::fs::open(
                    &path,
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| BuildError::Preopen {
                    path: path.clone(),
                    source: e.into(),
                })?,
            };
            if !probed {
                // Everything beneath a preopen is resolved with openat2; refuse up front
                // rather than fail every path call on an old kernel.
                probed = true;
                if fs::probe_openat2(fd.as_fd()) == Err(Errno::Nosys) {
                    return Err(BuildError::Openat2Unsupported);
                }
            }
            fds.insert(Desc::Dir(Dir {
                fd,
                preopen: Some(guest),
                listing: None,
            }))
            .map_err(|_| BuildError::TooManyPreopens)?;
        }
        Ok(WasiCtx {
            args: self.args,
            env: self.env,
            fds,
            stdin: match self.stdin {
                Stdin::Bytes(data) => StdinState::Bytes { data, pos: 0 },
                Stdin::Inherit => StdinState::Inherit,
                Stdin::Null => StdinState::Null,
            },
            stdout: OutputState::new(self.stdout, self.output_limit),
            stderr: OutputState::new(self.stderr, self.output_limit),
            hostcalls: 0,
            net: self.net.map(|c| Box::new(crate::net::NetState::new(c))),
            dmesg: self.trace.then(|| {
                Box::new(match self.trace_id {
                    Some(id) => Dmesg::with_id(id, self.trace_limit),
                    None => Dmesg::with_limit(self.trace_limit),
                })
            }),
        })
    }
}

/// Stdin as the hostcalls see it.
pub(crate) enum StdinState {
    Bytes { data: Vec<u8>, pos: usize },
    Inherit,
    Null,
}

/// One output stream as the hostcalls see it.
pub(crate) struct OutputState {
    pub kind: Output,
    pub buf: Vec<u8>,
    pub limit: usize,
    /// Whether a write met the cap (and was cut short or refused).
    pub overflowed: bool,
}

/// Which host stream an inherited output goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stream {
    Out,
    Err,
}

impl OutputState {
    fn new(kind: Output, limit: usize) -> Self {
        OutputState {
            kind,
            buf: Vec::new(),
            limit,
            overflowed: false,
        }
    }

    /// Writes the concatenation of `bufs`; returns the count written (see [`Output`] for what
    /// happens at the cap).
    pub fn write(&mut self, stream: Stream, bufs: &[&[u8]]) -> Result<usize, Errno> {
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        match self.kind {
            Output::Null => Ok(total),
            Output::Buffer => {
                if total == 0 {
                    return Ok(0);
                }
                let room = self.limit.saturating_sub(self.buf.len());
                if room < total {
                    self.overflowed = true;
                }
                if room == 0 {
                    return Err(Errno::Fbig);
                }
                let mut left = room.min(total);
                let written = left;
                for b in bufs {
                    let n = b.len().min(left);
                    self.buf.extend_from_slice(b.get(..n).unwrap_or_default());
                    left -= n;
                    if left == 0 {
                        break;
                    }
                }
                Ok(written)
            }
            Output::Inherit => {
                // Through std's handles so output interleaves correctly with the host's own
                // printing; flushed so nothing lingers in std's line buffer.
                let r = match stream {
                    Stream::Out => {
                        let mut out = std::io::stdout().lock();
                        bufs.iter()
                            .try_for_each(|b| out.write_all(b))
                            .and_then(|()| out.flush())
                    }
                    Stream::Err => {
                        let mut out = std::io::stderr().lock();
                        bufs.iter()
                            .try_for_each(|b| out.write_all(b))
                            .and_then(|()| out.flush())
                    }
                };
                r.map(|()| total).map_err(|e| Errno::from_io(&e))
            }
        }
    }
}

/// Everything a WASI guest's hostcalls act on: the host state of the instances they serve
/// (the hostcalls are `HostFn<WasiCtx>`s).
pub struct WasiCtx {
    pub(crate) args: CStrings,
    pub(crate) env: CStrings,
    pub(crate) fds: FdTable,
    pub(crate) stdin: StdinState,
    pub(crate) stdout: OutputState,
    pub(crate) stderr: OutputState,
    pub(crate) dmesg: Option<Box<Dmesg>>,
    /// Hostcalls made so far.
    pub(crate) hostcalls: u64,
    /// Outbound connections' configuration and budget (`None`: not granted).
    pub(crate) net: Option<Box<crate::net::NetState>>,
}

impl std::fmt::Debug for WasiCtx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Summaries only: stdin and the captured streams can be megabytes.
        f.debug_struct("WasiCtx")
            .field("args", &self.args)
            .field("env", &self.env.len())
            .field("open_fds", &self.open_fds())
            .field("stdout", &(self.stdout.kind, self.stdout.buf.len()))
            .field("stderr", &(self.stderr.kind, self.stderr.buf.len()))
            .field("trace", &self.dmesg.is_some())
            .finish_non_exhaustive()
    }
}

impl WasiCtx {
    /// A builder.
    pub fn builder() -> WasiCtxBuilder {
        WasiCtxBuilder::new()
    }

    /// The captured stdout so far ([`Output::Buffer`] only; empty otherwise).
    pub fn stdout(&self) -> &[u8] {
        &self.stdout.buf
    }

    /// The captured stderr so far.
    pub fn stderr(&self) -> &[u8] {
        &self.stderr.buf
    }

    /// Whether the guest wrote more to stdout than the output limit let through.
    pub fn stdout_overflowed(&self) -> bool {
        self.stdout.overflowed
    }

    /// Hostcalls the guest made so far.
    pub fn hostcalls(&self) -> u64 {
        self.hostcalls
    }

    /// Takes the captured stdout, leaving the buffer empty.
    pub fn take_stdout(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.stdout.buf)
    }

    /// Takes the captured stderr, leaving the buffer empty.
    pub fn take_stderr(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.stderr.buf)
    }

    /// The tracer, if tracing is on (the embedder calls [`Dmesg::start`] / [`Dmesg::halt`]
    /// through this).
    pub fn dmesg_mut(&mut self) -> Option<&mut Dmesg> {
        self.dmesg.as_deref_mut()
    }

    /// Takes the tracer out (tracing is off afterwards).
    pub fn take_dmesg(&mut self) -> Option<Dmesg> {
        self.dmesg.take().map(|b| *b)
    }

    /// The arguments the guest sees.
    pub fn args(&self) -> &CStrings {
        &self.args
    }

    /// The environment the guest sees.
    pub fn env(&self) -> &CStrings {
        &self.env
    }

    /// Number of open outbound connections.
    pub fn open_sockets(&self) -> usize {
        self.fds
            .iter()
            .filter(|(_, d)| matches!(d, Desc::Socket(_)))
            .count()
    }

    /// Bytes the guest's connections may still send or receive (`None` without network).
    pub fn net_bytes_left(&self) -> Option<u64> {
        self.net.as_deref().map(|n| n.bytes_left)
    }

    /// Number of open guest fds (stdio included).
    pub fn open_fds(&self) -> usize {
        self.fds.iter().count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_cap() {
        let mut o = OutputState::new(Output::Buffer, 8);
        assert_eq!(o.write(Stream::Out, &[b"hello", b" wo"]), Ok(8));
        assert!(!o.overflowed, "exactly the cap is not an overflow");
        let mut o = OutputState::new(Output::Buffer, 8);
        assert_eq!(o.write(Stream::Out, &[b"hello", b" wor"]), Ok(8));
        assert!(o.overflowed);
        assert_eq!(o.buf, b"hello wo");
        assert_eq!(o.write(Stream::Out, &[b"x"]), Err(Errno::Fbig));
        assert_eq!(o.write(Stream::Out, &[]), Ok(0));
        let mut n = OutputState::new(Output::Null, 0);
        assert_eq!(n.write(Stream::Out, &[b"abc"]), Ok(3));
    }

    #[test]
    fn builder_validation() {
        assert!(matches!(
            WasiCtx::builder().arg("a\0b").build(),
            Err(BuildError::Arg(_))
        ));
        assert!(matches!(
            WasiCtx::builder().env("A=B", "c").build(),
            Err(BuildError::Env(_))
        ));
        assert!(matches!(
            WasiCtx::builder()
                .preopen_dir("/nonexistent/fnvm/dir", "/")
                .build(),
            Err(BuildError::Preopen { .. })
        ));
        let ctx = WasiCtx::builder()
            .arg("prog")
            .env("K", "V")
            .build()
            .unwrap();
        assert_eq!(ctx.open_fds(), 3);
        assert_eq!(ctx.args().iter().collect::<Vec<_>>(), [b"prog"]);
        assert_eq!(ctx.env().var("K"), Some(&b"V"[..]));
    }
}
