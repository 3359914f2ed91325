//! Outbound sockets: `host_tcp_connect` and `host_tls_connect` (import module `fnvm`), the
//! egress policy they obey, their per-invocation limits, and the reads and writes of the
//! descriptors they return. `hostcalls/NET.md` is the guest-facing reference.
//!
//! WASI preview1 can use a socket but not open one; these two calls open a TCP connection
//! (optionally TLS, verified by rustls) and hand the guest an ordinary descriptor that
//! `fd_read`/`fd_write`, `sock_recv`/`sock_send`/`sock_shutdown`, `fd_close`, `fd_fdstat_*` and
//! `poll_oneoff` serve. Without a [`NetConfig`] in the context the calls are `ENOTCAPABLE`.
//! Every socket lives in the fd table, so dropping the [`WasiCtx`](crate::WasiCtx) at the end
//! of the invocation closes them all, whatever the guest did.

pub mod policy;
pub(crate) mod socket;

use crate::errno::Errno;
use crate::fdtable::Desc;
use crate::memory::Iovec;
use crate::poll::Wait;
use crate::trace::Ret;
use crate::types::fdflags;
use crate::wasi::{Args, Cx};
use policy::EgressPolicy;
use rustls::pki_types::{pem::PemObject, CertificateDer, ServerName};
use rustls::ClientConfig;
use socket::{io_errno, Io, Socket};
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::{Duration, Instant};
use thiserror::Error;

/// `flags` bit 0 of the connect calls: the new descriptor is non-blocking.
pub const CONNECT_NONBLOCK: u32 = 1;

/// The longest `host:port` (a 253-byte name, brackets, a colon and 5 digits fit easily).
const MAX_ADDRESS: u32 = 300;
/// The longest DNS name.
const MAX_NAME: usize = 253;
/// At most this many resolved addresses are tried.
const MAX_ADDRS: usize = 16;

/// Per-invocation limits on outbound connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NetLimits {
    /// Connections open at once (closing one makes room): the next connect is `EMFILE`.
    pub max_connections: u32,
    /// Bytes sent plus received over all connections of the invocation, counted on the wire
    /// (TLS records, handshakes included): past it, transfers are `EDQUOT`.
    pub max_bytes: u64,
    /// Bound on one connect call: resolving, connecting and the TLS handshake (`ETIMEDOUT`).
    pub connect_timeout: Duration,
}

impl Default for NetLimits {
    /// 16 connections, 64 MiB, 5 s.
    fn default() -> Self {
        NetLimits {
            max_connections: 16,
            max_bytes: 64 << 20,
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// Why a TLS client configuration could not be built.
#[derive(Debug, Error)]
pub enum TlsConfigError {
    /// The extra CA bundle is not PEM, or has no certificate.
    #[error("invalid PEM in the extra CA certificates: {0}")]
    Pem(String),
    /// A certificate of the bundle was refused as a trust anchor.
    #[error("invalid extra CA certificate: {0}")]
    Certificate(rustls::Error),
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Config(rustls::Error),
}

/// What the guest's outbound connections are allowed to do: given to
/// [`WasiCtxBuilder::net`](crate::WasiCtxBuilder::net).
#[derive(Clone, Debug)]
pub struct NetConfig {
    /// Where connections may go.
    pub policy: Arc<EgressPolicy>,
    /// How many, how much, how long.
    pub limits: NetLimits,
    /// The TLS client configuration (roots, protocol versions) `host_tls_connect` uses.
    pub tls: Arc<ClientConfig>,
}

impl NetConfig {
    /// A TLS client configuration verifying servers against the Mozilla roots (webpki-roots)
    /// plus the CA certificates in `extra_ca_pem` (PEM, possibly empty), with rustls's ring
    /// provider and safe default protocol versions.
    pub fn tls_config(extra_ca_pem: &[u8]) -> Result<Arc<ClientConfig>, TlsConfigError> {
        let mut roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        if !extra_ca_pem.iter().all(u8::is_ascii_whitespace) {
            let mut n = 0;
            for cert in CertificateDer::pem_slice_iter(extra_ca_pem) {
                let cert = cert.map_err(|e| TlsConfigError::Pem(e.to_string()))?;
                roots.add(cert).map_err(TlsConfigError::Certificate)?;
                n += 1;
            }
            if n == 0 {
                return Err(TlsConfigError::Pem("no CERTIFICATE block".into()));
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(TlsConfigError::Config)?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Arc::new(config))
    }
}

/// The network state of one invocation.
#[derive(Debug)]
pub(crate) struct NetState {
    pub config: NetConfig,
    /// Bytes the guest may still send or receive.
    pub bytes_left: u64,
}

impl NetState {
    pub fn new(config: NetConfig) -> NetState {
        NetState {
            bytes_left: config.limits.max_bytes,
            config,
        }
    }
}

/// `host:port` split: the host as asked (lowercased name or IP literal) and its IP if literal.
#[derive(Debug, PartialEq, Eq)]
struct Target {
    host: String,
    ip: Option<IpAddr>,
    port: u16,
}

/// Parses `host:port`, `a.b.c.d:port` or `[v6]:port`: `EINVAL` for anything else.
fn parse_address(s: &str) -> Result<Target, Errno> {
    let (host, ip, port) = if let Some(rest) = s.strip_prefix('[') {
        let (inside, port) = rest.split_once("]:").ok_or(Errno::Inval)?;
        let ip: std::net::Ipv6Addr = inside.parse().map_err(|_| Errno::Inval)?;
        (inside.to_string(), Some(IpAddr::V6(ip)), port)
    } else {
        let (host, port) = s.rsplit_once(':').ok_or(Errno::Inval)?;
        match host.parse::<std::net::Ipv4Addr>() {
            Ok(ip) => (host.to_string(), Some(IpAddr::V4(ip)), port),
            Err(_) => (
                policy::normalize_name(host).ok_or(Errno::Inval)?,
                None,
                port,
            ),
        }
    };
    let port = match port.parse::<u16>() {
        Ok(0) | Err(_) => return Err(Errno::Inval),
        Ok(p) => p,
    };
    Ok(Target { host, ip, port })
}

/// The UTF-8 text of `len` bytes at `ptr`: `EFAULT` out of bounds, `EINVAL` if longer than
/// `max` or not UTF-8.
fn text(cx: &Cx<'_>, ptr: u32, len: u32, max: u32) -> Result<String, Errno> {
    cx.mem.check(ptr, len)?;
    if len > max {
        return Err(Errno::Inval);
    }
    let b = cx.mem.slice(ptr, len)?;
    std::str::from_utf8(b)
        .map(str::to_string)
        .map_err(|_| Errno::Inval)
}

/// `host_tcp_connect(address_ptr, address_size, flags, fd_ptr) -> errno` (module `fnvm`).
///
/// Opens a TCP connection to `address` (`host:port`, `a.b.c.d:port` or `[v6]:port`; a name is
/// resolved by the host) and writes the new descriptor at `fd_ptr` (u32). `flags` bit 0 makes
/// it non-blocking; other bits are `EINVAL`. Errnos: `EFAULT` (pointers), `EINVAL` (flags,
/// malformed address, name over 253 bytes, not UTF-8), `ENOTCAPABLE` (no network granted),
/// `EACCES` (egress policy), `EMFILE` (connection limit), `EHOSTUNREACH` (name does not
/// resolve), `ECONNREFUSED` and other connect errors, `ETIMEDOUT` (connect timeout), `EDQUOT`
/// (byte budget). See `hostcalls/NET.md`.
pub(crate) fn host_tcp_connect(cx: &mut Cx<'_>, a: &Args) -> Result<Ret, Errno> {
    connect(cx, (a.u32(0), a.u32(1)), None, a.u32(2), a.u32(3))
}

/// `host_tls_connect(address_ptr, address_size, hostname_ptr, hostname_size, flags, fd_ptr)
/// -> errno` (module `fnvm`).
///
/// As [`host_tcp_connect`], then a TLS handshake (rustls) verifying the server's certificate
/// for `hostname` (also the SNI; empty: the address's host) against the Mozilla roots and the
/// operator's CAs, within the connect timeout. Reads and writes on the descriptor then carry
/// plaintext. More errnos: `ECONNABORTED` (certificate verification failed), `EPROTO` (other
/// handshake failures), `ECONNRESET` (closed during the handshake); the reason is in dmesg.
pub(crate) fn host_tls_connect(cx: &mut Cx<'_>, a: &Args) -> Result<Ret, Errno> {
    connect(
        cx,
        (a.u32(0), a.u32(1)),
        Some((a.u32(2), a.u32(3))),
        a.u32(4),
        a.u32(5),
    )
}

/// How a wait within a connect ended badly.
enum Late {
    /// The connect timeout: `ETIMEDOUT`.
    Timeout,
    /// The invocation's deadline: the invocation ends.
    Deadline,
}

/// The instant a connect must be done by, and which limit it is.
#[derive(Clone, Copy)]
struct Limit {
    at: Instant,
    invocation: bool,
}

impl Limit {
    fn late(self) -> Late {
        if self.invocation {
            Late::Deadline
        } else {
            Late::Timeout
        }
    }

    fn left(self) -> Duration {
        self.at.saturating_duration_since(Instant::now())
    }
}

/// A failed connect: the errno (or the deadline), and the reason dmesg shows.
struct Failure(Result<Errno, Late>, String);

fn fail(e: Errno, why: impl Into<String>) -> Failure {
    Failure(Ok(e), why.into())
}

fn connect(
    cx: &mut Cx<'_>,
    address: (u32, u32),
    sni: Option<(u32, u32)>,
    flags: u32,
    fd_ptr: u32,
) -> Result<Ret, Errno> {
    if flags & !CONNECT_NONBLOCK != 0 {
        return Err(Errno::Inval);
    }
    cx.mem.check(fd_ptr, 4)?;
    let address = text(cx, address.0, address.1, MAX_ADDRESS)?;
    let hostname = match sni {
        Some((p, l)) => Some(text(cx, p, l, MAX_NAME as u32)?),
        None => None,
    };
    let Some(net) = cx.ctx.net.as_deref() else {
        cx.note(|| "no network capability: the invocation was given no egress policy".into());
        return Err(Errno::Notcapable);
    };
    let target = parse_address(&address)?;
    let open = cx
        .ctx
        .fds
        .iter()
        .filter(|(_, d)| matches!(d, Desc::Socket(_)))
        .count();
    let max = net.config.limits.max_connections;
    if open >= max as usize {
        cx.note(|| format!("{open} connections are open, the limit is {max}"));
        return Err(Errno::Mfile);
    }
    // The name the certificate must carry: the one given, or the address's host.
    let server_name = match &hostname {
        None if sni.is_none() => None,
        Some(h) if !h.is_empty() => Some(
            ServerName::try_from(h.as_str())
                .map_err(|_| Errno::Inval)?
                .to_owned(),
        ),
        _ => Some(
            ServerName::try_from(target.host.as_str())
                .map_err(|_| Errno::Inval)?
                .to_owned(),
        ),
    };
    let connect_by = Instant::now() + net.config.limits.connect_timeout;
    let limit = match cx.wait_limit() {
        Some(d) if d < connect_by => Limit {
            at: d,
            invocation: true,
        },
        _ => Limit {
            at: connect_by,
            invocation: false,
        },
    };
    let config = net.config.clone();
    let mut left = net.bytes_left;
    let result = dial(&config, &target, limit, server_name, &mut left);
    if let Some(n) = cx.ctx.net.as_deref_mut() {
        n.bytes_left = left;
    }
    let sock = match result {
        Ok(s) => s,
        Err(Failure(e, why)) => {
            cx.note(|| why);
            return match e {
                Ok(e) => Err(e),
                Err(Late::Timeout) => Err(Errno::Timedout),
                Err(Late::Deadline) => Err(cx.expire()),
            };
        }
    };
    let peer = sock.tcp.peer_addr().ok();
    let mut sock = sock;
    if flags & CONNECT_NONBLOCK != 0 {
        sock.fdflags = fdflags::NONBLOCK;
    }
    let fd = cx.ctx.fds.insert(Desc::Socket(Box::new(sock)))?;
    cx.mem.write_u32(fd_ptr, fd)?;
    if let Some(p) = peer {
        cx.note(|| format!("connected to {p}"));
    }
    Ok(Ret::One("fd", fd.into()))
}

/// Resolves, checks each address against the policy, connects to the first allowed one that
/// answers, and does the TLS handshake if asked.
fn dial(
    config: &NetConfig,
    target: &Target,
    limit: Limit,
    server_name: Option<ServerName<'static>>,
    left: &mut u64,
) -> Result<Socket, Failure> {
    let addrs = resolve(target, limit)?;
    let mut refused = None;
    let mut last = None;
    let mut tcp = None;
    for addr in addrs {
        if let Err(r) = config.policy.check(&target.host, addr.ip(), target.port) {
            refused.get_or_insert(r);
            continue;
        }
        let wait = limit.left();
        if wait.is_zero() {
            return Err(Failure(
                Err(limit.late()),
                format!("connecting to {addr}: timed out"),
            ));
        }
        // The exact address checked is dialled: never the name again.
        match TcpStream::connect_timeout(&addr, wait) {
            Ok(s) => {
                tcp = Some(s);
                break;
            }
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                return Err(Failure(
                    Err(limit.late()),
                    format!("connecting to {addr}: timed out"),
                ));
            }
            Err(e) => last = Some((addr, e)),
        }
    }
    let tcp = match (tcp, last, refused) {
        (Some(t), _, _) => t,
        (None, Some((addr, e)), _) => {
            return Err(fail(io_errno(&e), format!("connecting to {addr}: {e}")))
        }
        (None, None, Some(r)) => return Err(fail(Errno::Acces, format!("egress policy: {r}"))),
        (None, None, None) => {
            return Err(fail(
                Errno::Hostunreach,
                format!("{}: no address", target.host),
            ))
        }
    };
    let setup = |e: std::io::Error| fail(io_errno(&e), format!("socket setup: {e}"));
    tcp.set_nonblocking(true).map_err(setup)?;
    tcp.set_nodelay(true).map_err(setup)?;
    let tls = match server_name {
        None => None,
        Some(name) => Some(handshake(config, &tcp, name, limit, left)?),
    };
    Ok(Socket {
        tcp,
        tls,
        fdflags: 0,
    })
}

/// The target's addresses: the literal, or what DNS says within the limit (getaddrinfo cannot
/// be interrupted, so it runs on a helper thread that is abandoned at the limit).
fn resolve(target: &Target, limit: Limit) -> Result<Vec<SocketAddr>, Failure> {
    if let Some(ip) = target.ip {
        return Ok(vec![SocketAddr::new(ip, target.port)]);
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let query = (target.host.clone(), target.port);
    let spawned = std::thread::Builder::new()
        .name("fnvm-dns".into())
        .spawn(move || {
            let r = query
                .to_socket_addrs()
                .map(|a| a.take(MAX_ADDRS).collect::<Vec<_>>());
            let _ = tx.send(r);
        });
    if let Err(e) = spawned {
        return Err(fail(Errno::Again, format!("cannot resolve: {e}")));
    }
    match rx.recv_timeout(limit.left()) {
        Ok(Ok(a)) if !a.is_empty() => Ok(a),
        Ok(Ok(_)) => Err(fail(
            Errno::Hostunreach,
            format!("{}: no address", target.host),
        )),
        Ok(Err(e)) => Err(fail(
            Errno::Hostunreach,
            format!("cannot resolve {}: {e}", target.host),
        )),
        Err(_) => Err(Failure(
            Err(limit.late()),
            format!("resolving {}: timed out", target.host),
        )),
    }
}

/// The TLS handshake over the connected, non-blocking `tcp`, within `limit`.
fn handshake(
    config: &NetConfig,
    tcp: &TcpStream,
    name: ServerName<'static>,
    limit: Limit,
    left: &mut u64,
) -> Result<Box<rustls::ClientConnection>, Failure> {
    let shown = name.to_str().into_owned();
    let mut tls = rustls::ClientConnection::new(config.tls.clone(), name)
        .map_err(|e| fail(Errno::Proto, format!("TLS setup: {e}")))?;
    let wait = |write: bool| -> Result<(), Failure> {
        let at = crate::poll::deadline_ns(Some(limit.at)).map_err(|e| fail(e, "clock"))?;
        match crate::poll::wait_fd(tcp.as_fd(), write, at) {
            Ok(Wait::Ready) => Ok(()),
            Ok(Wait::TimedOut) => Err(Failure(
                Err(limit.late()),
                format!("TLS handshake with {shown}: timed out"),
            )),
            Err(e) => Err(fail(e, "poll")),
        }
    };
    loop {
        socket::flush_tls(&mut tls, tcp, left)
            .map_err(|e| fail(e, format!("TLS handshake with {shown}: sending: {e}")))?;
        if tls.wants_write() {
            wait(true)?;
            continue;
        }
        if !tls.is_handshaking() {
            return Ok(Box::new(tls));
        }
        let mut m = socket::Metered { tcp, left };
        match tls.read_tls(&mut m) {
            Ok(0) => {
                return Err(fail(
                    Errno::Connreset,
                    format!("TLS handshake with {shown}: the server closed the connection"),
                ))
            }
            Ok(_) => {
                if let Err(e) = tls.process_new_packets() {
                    // Send the alert that says why, best effort.
                    let _ = socket::flush_tls(&mut tls, tcp, left);
                    return Err(match e {
                        rustls::Error::InvalidCertificate(_) => fail(
                            Errno::Connaborted,
                            format!("TLS certificate verification for {shown} failed: {e}"),
                        ),
                        e => fail(
                            Errno::Proto,
                            format!("TLS handshake with {shown} failed: {e}"),
                        ),
                    });
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => wait(false)?,
            Err(e) => {
                return Err(fail(
                    io_errno(&e),
                    format!("TLS handshake with {shown}: {e}"),
                ))
            }
        }
    }
}

/// The socket behind `fd`: `ENOTSOCK` for another descriptor, `EBADF` if none.
pub(crate) fn socket_mut(fds: &mut crate::fdtable::FdTable, fd: u32) -> Result<&mut Socket, Errno> {
    match fds.get_mut(fd)? {
        Desc::Socket(s) => Ok(s),
        _ => Err(Errno::Notsock),
    }
}

/// Reads from socket `fd` into the first of `iovs` (waiting, for a blocking descriptor, until
/// data, end of stream, or the invocation's deadline); with `all`, keeps reading until the
/// buffer is full or the stream ends (`RECV_WAITALL`).
pub(crate) fn recv(cx: &mut Cx<'_>, fd: u32, iovs: &[Iovec], all: bool) -> Result<u64, Errno> {
    let Some(v) = iovs.first().copied() else {
        socket_mut(&mut cx.ctx.fds, fd)?;
        return Ok(0);
    };
    let deadline = cx.wait_limit();
    let mut total: usize = 0;
    let expired = {
        let ctx = &mut *cx.ctx;
        let sock = socket_mut(&mut ctx.fds, fd)?;
        let state = ctx.net.as_deref_mut().ok_or(Errno::Notsock)?;
        let blocking = sock.fdflags & fdflags::NONBLOCK == 0;
        let buf = cx.mem.slice_mut(v.ptr, v.len)?;
        loop {
            let rest = buf.get_mut(total..).unwrap_or_default();
            if rest.is_empty() {
                break false;
            }
            match sock.read(rest, &mut state.bytes_left) {
                Ok(Io::Done(0)) => break false,
                Ok(Io::Done(n)) => {
                    total += n;
                    if !all {
                        break false;
                    }
                }
                Ok(Io::WouldBlock(write)) => {
                    if total > 0 && !all {
                        break false;
                    }
                    if !blocking {
                        if total > 0 {
                            break false;
                        }
                        return Err(Errno::Again);
                    }
                    let at = crate::poll::deadline_ns(deadline)?;
                    if crate::poll::wait_fd(sock.tcp.as_fd(), write, at)? == Wait::TimedOut {
                        break true;
                    }
                }
                Err(_) if total > 0 => break false,
                Err(e) => return Err(e),
            }
        }
    };
    if expired {
        return Err(cx.expire());
    }
    Ok(total as u64)
}

/// Writes the buffers of `iovs` to socket `fd`: a blocking descriptor sends all of them
/// (waiting for room until the invocation's deadline), a non-blocking one what fits now
/// (`EAGAIN` if nothing does).
pub(crate) fn send(cx: &mut Cx<'_>, fd: u32, iovs: &[Iovec]) -> Result<u64, Errno> {
    let deadline = cx.wait_limit();
    let mut total: usize = 0;
    let expired = 'out: {
        let ctx = &mut *cx.ctx;
        let sock = socket_mut(&mut ctx.fds, fd)?;
        let state = ctx.net.as_deref_mut().ok_or(Errno::Notsock)?;
        let blocking = sock.fdflags & fdflags::NONBLOCK == 0;
        let bufs = cx.mem.gather(iovs)?;
        for b in bufs {
            let mut off = 0;
            while off < b.len() {
                match sock.write(b.get(off..).unwrap_or_default(), &mut state.bytes_left) {
                    Ok(Io::Done(n)) => {
                        off += n;
                        total += n;
                    }
                    Ok(Io::WouldBlock(_)) if !blocking => {
                        if total > 0 {
                            break 'out false;
                        }
                        return Err(Errno::Again);
                    }
                    Ok(Io::WouldBlock(_)) => {
                        let at = crate::poll::deadline_ns(deadline)?;
                        if crate::poll::wait_fd(sock.tcp.as_fd(), true, at)? == Wait::TimedOut {
                            break 'out true;
                        }
                    }
                    Err(_) if total > 0 => break 'out false,
                    Err(e) => return Err(e),
                }
            }
        }
        // A blocking TLS write returns once its records are on the wire.
        while blocking && sock.unsent() {
            sock.flush(&mut state.bytes_left)?;
            if sock.unsent() {
                let at = crate::poll::deadline_ns(deadline)?;
                if crate::poll::wait_fd(sock.tcp.as_fd(), true, at)? == Wait::TimedOut {
                    break 'out true;
                }
            }
        }
        false
    };
    if expired {
        return Err(cx.expire());
    }
    Ok(total as u64)
}
