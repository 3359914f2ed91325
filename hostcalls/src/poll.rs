//! `poll_oneoff`: waiting for clocks and descriptor readiness.
//!
//! Clock subscriptions (relative or absolute, realtime or monotonic) become one monotonic
//! deadline; the call really sleeps until it (`clock_nanosleep` on an absolute monotonic time,
//! so signals cannot shorten or lengthen it), but never past the invocation's own deadline: a
//! wait that reaches it ends the invocation with the deadline trap, and frees its slot. Files, in-memory stdin and captured output are
//! always ready, as in wasmtime; inherited host stdin and outbound connections
//! ([`crate::net`]) are polled with `poll(2)` (a TLS connection is readable once a whole record is
//! decrypted, not when part of one arrived). The
//! subscriptions are read from guest memory twice (to plan, then to report) rather than copied,
//! so a guest cannot make the host allocate in proportion to `nsubscriptions`; events are
//! written in subscription order, which is safe even when the event array aliases the
//! subscription array (an event is smaller than a subscription).

use crate::ctx::{Output, StdinState};
use crate::errno::Errno;
use crate::fdtable::Desc;
use crate::memory::GuestMemory;
use crate::trace::Ret;
use crate::types::{clockid, eventrwflags, eventtype, size, subclockflags};
use crate::wasi::env::now;
use crate::wasi::{Args, Cx};
use rustix::event::{PollFd, PollFlags};
use rustix::time::Timespec;

/// One decoded subscription.
enum Sub {
    Clock { id: u32, timeout: u64, flags: u16 },
    FdRead(u32),
    FdWrite(u32),
}

fn read_sub(mem: &GuestMemory<'_>, base: u32, i: u32) -> Result<(u64, Sub), Errno> {
    let at = i
        .checked_mul(size::SUBSCRIPTION)
        .and_then(|o| base.checked_add(o))
        .ok_or(Errno::Fault)?;
    let field = |off: u32| at.checked_add(off).ok_or(Errno::Fault);
    let userdata = mem.read_u64(at)?;
    let sub = match mem.read_u8(field(8)?)? {
        eventtype::CLOCK => Sub::Clock {
            id: mem.read_u32(field(16)?)?,
            timeout: mem.read_u64(field(24)?)?,
            // precision (at 32) is a hint, ignored like wasmtime does.
            flags: mem.read_u16(field(40)?)?,
        },
        eventtype::FD_READ => Sub::FdRead(mem.read_u32(field(16)?)?),
        eventtype::FD_WRITE => Sub::FdWrite(mem.read_u32(field(16)?)?),
        _ => return Err(Errno::Inval),
    };
    Ok((userdata, sub))
}

/// The instant the poll started, on both clocks.
#[derive(Clone, Copy)]
struct Start {
    mono: u64,
    real: u64,
}

/// A clock subscription's deadline in monotonic nanoseconds.
fn deadline(start: Start, id: u32, timeout: u64, flags: u16) -> Result<u64, Errno> {
    if flags & !subclockflags::ABSTIME != 0 {
        return Err(Errno::Inval);
    }
    let absolute = flags & subclockflags::ABSTIME != 0;
    match (id, absolute) {
        (clockid::MONOTONIC, true) => Ok(timeout),
        (clockid::REALTIME, true) => Ok(start
            .mono
            .saturating_add(timeout.saturating_sub(start.real))),
        (clockid::MONOTONIC | clockid::REALTIME, false) => Ok(start.mono.saturating_add(timeout)),
        // CPU-time clocks cannot be waited on; wasmtime refuses them the same way.
        _ => Err(Errno::Inval),
    }
}

/// Whether a descriptor subscription is ready now, or depends on the host's stdin or a socket.
enum Readiness {
    Ready {
        nbytes: u64,
        flags: u16,
    },
    HostStdin,
    /// A connection not ready now: wait on its host socket.
    Socket,
}

/// A connection's readiness now (a zero-timeout `poll(2)` of its socket). Plaintext that
/// rustls already decrypted makes a TLS connection readable whatever the socket says; a
/// readable TLS socket may still hold only part of a record (a read then finds nothing yet).
fn socket_readiness(
    s: &mut crate::net::socket::Socket,
    write: bool,
    left: &mut u64,
) -> Result<Readiness, Errno> {
    if !write && s.tls.is_some() {
        if !s.tls_read_ready(left) {
            return Ok(Readiness::Socket);
        }
        let buffered = s.buffered() as u64;
        return Ok(Readiness::Ready {
            nbytes: buffered,
            flags: if buffered == 0 {
                eventrwflags::FD_READWRITE_HANGUP
            } else {
                0
            },
        });
    }
    let events = if write { PollFlags::OUT } else { PollFlags::IN };
    let mut fds = [PollFd::new(&s.tcp, events)];
    let n = loop {
        match rustix::event::poll(&mut fds, Some(&timespec(0))) {
            Ok(n) => break n,
            Err(e) if e == rustix::io::Errno::INTR => continue,
            Err(e) => return Err(e.into()),
        }
    };
    if n == 0 {
        return Ok(Readiness::Socket);
    }
    let rev = fds[0].revents();
    let hangup = rev.intersects(PollFlags::HUP | PollFlags::ERR);
    let nbytes = if write {
        1
    } else {
        rustix::io::ioctl_fionread(&s.tcp).map_or(1, u64::from)
    };
    Ok(Readiness::Ready {
        nbytes,
        flags: if hangup || (!write && nbytes == 0) {
            eventrwflags::FD_READWRITE_HANGUP
        } else {
            0
        },
    })
}

fn readiness(cx: &mut Cx<'_>, fd: u32, write: bool) -> Result<Readiness, Errno> {
    let ctx = &mut *cx.ctx;
    if let Desc::Socket(s) = ctx.fds.get_mut(fd)? {
        // TLS records a non-blocking write left queued go out now: a guest that wrote its
        // request and polls for the answer must not wait on bytes still in the host.
        let mut unlimited = u64::MAX;
        let left = match ctx.net.as_deref_mut() {
            Some(net) => &mut net.bytes_left,
            None => &mut unlimited,
        };
        let _ = s.flush(left);
        return socket_readiness(s, write, left);
    }
    let ready = |nbytes: u64, hangup: bool| Readiness::Ready {
        nbytes,
        flags: if hangup {
            eventrwflags::FD_READWRITE_HANGUP
        } else {
            0
        },
    };
    match (cx.ctx.fds.get(fd)?, write) {
        (Desc::Stdin, false) => Ok(match &cx.ctx.stdin {
            StdinState::Bytes { data, pos } => {
                let left = data.len().saturating_sub(*pos) as u64;
                ready(left, left == 0)
            }
            StdinState::Null => ready(0, true),
            StdinState::Inherit => Readiness::HostStdin,
        }),
        (Desc::File(f), false) => {
            // Bytes left before end of file; zero (hangup) at the end, as wasmtime flags it.
            let size = rustix::fs::fstat(&f.fd).map(|s| s.st_size.max(0) as u64)?;
            let pos = rustix::fs::tell(&f.fd).unwrap_or(0);
            let left = size.saturating_sub(pos);
            Ok(ready(left, left == 0))
        }
        (Desc::File(_), true) => Ok(ready(1, false)),
        (Desc::Stdout, true) | (Desc::Stderr, true) => {
            let out = if matches!(cx.ctx.fds.get(fd)?, Desc::Stdout) {
                &cx.ctx.stdout
            } else {
                &cx.ctx.stderr
            };
            let room = match out.kind {
                Output::Buffer => out.limit.saturating_sub(out.buf.len()) as u64,
                Output::Inherit | Output::Null => 1,
            };
            Ok(ready(room, false))
        }
        // Directories, and stdio in the wrong direction, cannot be polled (wasmtime: EBADF).
        _ => Err(Errno::Badf),
    }
}

fn timespec(nanos: u64) -> Timespec {
    Timespec {
        tv_sec: (nanos / 1_000_000_000) as i64,
        tv_nsec: (nanos % 1_000_000_000) as _,
    }
}

/// The invocation's deadline in monotonic nanoseconds (the clock of [`now`]), if it has one.
pub(crate) fn limit_ns(cx: &Cx<'_>) -> Result<Option<u64>, Errno> {
    deadline_ns(cx.wait_limit())
}

/// `limit` in monotonic nanoseconds (the clock of [`now`]).
pub(crate) fn deadline_ns(limit: Option<std::time::Instant>) -> Result<Option<u64>, Errno> {
    let Some(limit) = limit else {
        return Ok(None);
    };
    let left = limit.saturating_duration_since(std::time::Instant::now());
    let left = u64::try_from(left.as_nanos()).unwrap_or(u64::MAX);
    Ok(Some(now(clockid::MONOTONIC)?.saturating_add(left)))
}

std::thread_local! {
    /// Waits that may have blocked this thread (a sleep, a wait for a descriptor with a time
    /// limit other than "just check"). Every hostcall that can block counts here.
    static BLOCKING_WAITS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// How many times hostcalls on this thread waited (or may have): read before and after a
/// guest's run, it tells a run that was long because it waited from one that computed or
/// was preempted.
pub fn blocking_waits() -> u64 {
    BLOCKING_WAITS.with(|w| w.get())
}

fn count_blocking_wait() {
    BLOCKING_WAITS.with(|w| w.set(w.get().wrapping_add(1)));
}

/// How waiting for a descriptor ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Wait {
    /// It is ready (or hung up, or in error: the next operation will say).
    Ready,
    /// The time limit came first.
    TimedOut,
}

/// Waits until `fd` is ready for reading (or writing) or the monotonic clock reaches `limit`
/// (`None`: no limit, `Some(0)`: just check).
pub(crate) fn wait_fd(
    fd: std::os::fd::BorrowedFd<'_>,
    write: bool,
    limit: Option<u64>,
) -> Result<Wait, Errno> {
    let events = if write { PollFlags::OUT } else { PollFlags::IN };
    if limit != Some(0) {
        count_blocking_wait();
    }
    loop {
        let mut fds = [PollFd::new(&fd, events)];
        let timeout = match limit {
            None => None,
            Some(d) => Some(timespec(d.saturating_sub(now(clockid::MONOTONIC)?))),
        };
        match rustix::event::poll(&mut fds, timeout.as_ref()) {
            Ok(0) => return Ok(Wait::TimedOut),
            Ok(_) => return Ok(Wait::Ready),
            // A stray signal: wait out the rest of the time.
            Err(e) if e == rustix::io::Errno::INTR => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Polls the host's stdin for input until `deadline` (monotonic ns; `None` = forever, `Some(0)`
/// = just check). Returns whether it is readable (or at end of file).
pub(crate) fn poll_stdin(deadline: Option<u64>) -> Result<bool, Errno> {
    use std::os::fd::AsFd;
    Ok(wait_fd(std::io::stdin().as_fd(), false, deadline)? == Wait::Ready)
}

/// Sleeps until the monotonic clock reaches `deadline`.
fn sleep_until(deadline: u64) -> Result<(), Errno> {
    count_blocking_wait();
    let t = timespec(deadline);
    loop {
        match rustix::thread::clock_nanosleep_absolute(rustix::thread::ClockId::Monotonic, &t) {
            Ok(()) => return Ok(()),
            Err(e) if e == rustix::io::Errno::INTR => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Whether a descriptor subscription other than host stdin is ready now.
fn any_fd_ready(cx: &mut Cx<'_>, subs: u32, n: u32) -> Result<bool, Errno> {
    for i in 0..n {
        let (write, fd) = match read_sub(&cx.mem, subs, i)?.1 {
            Sub::FdRead(fd) => (false, fd),
            Sub::FdWrite(fd) => (true, fd),
            Sub::Clock { .. } => continue,
        };
        if let Readiness::Ready { .. } = readiness(cx, fd, write)? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Waits until the host's stdin (if `stdin`) or one of `sockets` is ready, or the monotonic
/// clock reaches `wake`. Returns whether stdin is readable and whether anything was ready.
fn wait_host(
    cx: &Cx<'_>,
    stdin: bool,
    sockets: &std::collections::BTreeMap<u32, PollFlags>,
    wake: Option<u64>,
) -> Result<(bool, bool), Errno> {
    use std::os::fd::AsFd;
    count_blocking_wait();
    let host_stdin = std::io::stdin();
    let mut fds: Vec<PollFd<'_>> = Vec::with_capacity(sockets.len() + 1);
    if stdin {
        fds.push(PollFd::new(&host_stdin, PollFlags::IN));
    }
    for (&fd, &flags) in sockets {
        if let Desc::Socket(s) = cx.ctx.fds.get(fd)? {
            fds.push(PollFd::from_borrowed_fd(s.tcp.as_fd(), flags));
        }
    }
    loop {
        let timeout = match wake {
            None => None,
            Some(d) => Some(timespec(d.saturating_sub(now(clockid::MONOTONIC)?))),
        };
        match rustix::event::poll(&mut fds, timeout.as_ref()) {
            Ok(0) => return Ok((false, false)),
            Ok(_) => {
                let stdin_ready = stdin && fds.first().is_some_and(|f| !f.revents().is_empty());
                return Ok((stdin_ready, true));
            }
            Err(e) if e == rustix::io::Errno::INTR => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

pub(crate) fn poll_oneoff(cx: &mut Cx<'_>, a: &Args) -> Result<Ret, Errno> {
    let (subs, events, n, out) = (a.u32(0), a.u32(1), a.u32(2), a.u32(3));
    if n == 0 {
        // Waiting for nothing would block forever; preview1 and wasmtime call it EINVAL.
        return Err(Errno::Inval);
    }
    cx.mem.array_range(subs, n, size::SUBSCRIPTION)?;
    cx.mem.array_range(events, n, size::EVENT)?;
    cx.mem.check(out, 4)?;
    let start = Start {
        mono: now(clockid::MONOTONIC)?,
        real: now(clockid::REALTIME)?,
    };

    // Plan: the earliest deadline, whether something is ready already, whether stdin matters,
    // which sockets to wait on (a map, so its size is bounded by the fd table, not by
    // `nsubscriptions`).
    let mut earliest: Option<u64> = None;
    let mut ready_now = false;
    let mut host_stdin = false;
    let mut sockets: std::collections::BTreeMap<u32, PollFlags> = Default::default();
    for i in 0..n {
        let sub = read_sub(&cx.mem, subs, i)?.1;
        let write = matches!(sub, Sub::FdWrite(_));
        match sub {
            Sub::Clock { id, timeout, flags } => {
                let d = deadline(start, id, timeout, flags)?;
                earliest = Some(earliest.map_or(d, |e| e.min(d)));
                ready_now |= d <= start.mono;
            }
            Sub::FdRead(fd) | Sub::FdWrite(fd) => match readiness(cx, fd, write)? {
                Readiness::Ready { .. } => ready_now = true,
                Readiness::HostStdin => host_stdin = true,
                Readiness::Socket => {
                    let f = if write { PollFlags::OUT } else { PollFlags::IN };
                    *sockets.entry(fd).or_insert(PollFlags::empty()) |= f;
                }
            },
        }
    }

    // Wait, until the earliest clock or the invocation's deadline, whichever comes first.
    let limit = limit_ns(cx)?;
    let cut_short = match (limit, earliest) {
        (Some(l), Some(e)) => l < e,
        (Some(_), None) => true,
        (None, _) => false,
    };
    let wake = if cut_short { limit } else { earliest };
    let stdin_ready = if ready_now {
        host_stdin && poll_stdin(Some(0))?
    } else if !sockets.is_empty() {
        loop {
            let (stdin_ready, any) = wait_host(cx, host_stdin, &sockets, wake)?;
            if !any {
                if cut_short {
                    return Err(cx.expire());
                }
                break false;
            }
            // A TLS socket that woke with only part of a record has nothing to report yet:
            // wait on (the clock's deadline is absolute, so the total wait is unchanged).
            if stdin_ready || any_fd_ready(cx, subs, n)? {
                break stdin_ready;
            }
        }
    } else if host_stdin {
        let ready = poll_stdin(wake)?;
        if !ready && cut_short {
            return Err(cx.expire());
        }
        ready
    } else {
        if let Some(d) = wake {
            sleep_until(d)?;
        }
        if cut_short {
            return Err(cx.expire());
        }
        false
    };

    // Report, in subscription order.
    let at_end = now(clockid::MONOTONIC)?;
    let mut count: u32 = 0;
    for i in 0..n {
        let (userdata, sub) = read_sub(&cx.mem, subs, i)?;
        let (kind, nbytes, flags) = match sub {
            Sub::Clock { id, timeout, flags } => {
                if deadline(start, id, timeout, flags)? > at_end {
                    continue;
                }
                (eventtype::CLOCK, 0, 0)
            }
            Sub::FdRead(fd) | Sub::FdWrite(fd) => {
                let write = matches!(sub, Sub::FdWrite(_));
                let kind = if write {
                    eventtype::FD_WRITE
                } else {
                    eventtype::FD_READ
                };
                match readiness(cx, fd, write)? {
                    Readiness::Ready { nbytes, flags } => (kind, nbytes, flags),
                    Readiness::HostStdin if stdin_ready => (kind, 1, 0),
                    Readiness::HostStdin | Readiness::Socket => continue,
                }
            }
        };
        let mut ev = [0u8; size::EVENT as usize];
        crate::fs::put_u64(&mut ev, 0, userdata);
        // error (u16 at 8) stays 0: ready events carry no error.
        ev[10] = kind;
        crate::fs::put_u64(&mut ev, 16, nbytes);
        crate::fs::put_u16(&mut ev, 24, flags);
        let at = count
            .checked_mul(size::EVENT)
            .and_then(|o| events.checked_add(o))
            .ok_or(Errno::Fault)?;
        cx.mem.write_bytes(at, &ev)?;
        count += 1;
    }
    cx.mem.write_u32(out, count)?;
    Ok(Ret::One("nevents", count.into()))
}
