//! Outbound TCP connections (`host_tcp_connect`): a guest-side HTTP GET, the egress policy
//! through the hostcall, the limits, the invocation deadline, poll and NONBLOCK, closing at
//! the end, and hostile arguments. Everything stays on loopback, opened by the server's allow
//! list as an operator's `--egress-allow` would.

use super::*;
use crate::net::policy::EgressPolicy;
use crate::net::{NetConfig, NetLimits};
use crate::types::{clockid, eventtype, filetype, sock};
use fnvm_host_interface::Deadline;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// The TLS configuration with only the Mozilla roots (built once: it is not cheap).
pub(crate) fn default_tls() -> Arc<rustls::ClientConfig> {
    static TLS: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    TLS.get_or_init(|| NetConfig::tls_config(b"").unwrap())
        .clone()
}

/// A network configuration with these lists.
pub(crate) fn net_config(allow: &[&str], function: &[&str], limits: NetLimits) -> NetConfig {
    NetConfig {
        policy: Arc::new(EgressPolicy::new(allow, &[], function).unwrap()),
        limits,
        tls: default_tls(),
    }
}

/// A traced guest allowed to reach loopback.
pub(crate) fn loopback_guest() -> Guest {
    Guest::new(WasiCtx::builder().trace(true).net(net_config(
        &["127.0.0.0/8", "::1"],
        &[],
        NetLimits::default(),
    )))
}

impl Guest {
    /// `host_tcp_connect(address, flags)`: the new fd or the errno.
    pub(crate) fn tcp_connect(&mut self, address: &str, flags: u32) -> Result<u32, u16> {
        let [p, l] = self.s(STR, address);
        self.set_u32(OUT, 0xdead_beef);
        let e = self
            .call_in(
                FNVM_MODULE,
                "host_tcp_connect",
                &[p, l, flags as u64, OUT as u64],
            )
            .unwrap() as u16;
        match e {
            0 => Ok(self.u32_at(OUT)),
            e => {
                assert_eq!(self.u32_at(OUT), 0xdead_beef, "written on failure");
                Err(e)
            }
        }
    }

    /// The dmesg log so far.
    pub(crate) fn dmesg(&mut self) -> String {
        self.ctx
            .dmesg_mut()
            .map(|d| d.as_str().to_string())
            .unwrap_or_default()
    }

    /// Reads until end of stream (or an error).
    pub(crate) fn read_to_end(&mut self, fd: u32) -> Result<Vec<u8>, u16> {
        let mut all = Vec::new();
        loop {
            let got = self.read(fd, 1000)?;
            if got.is_empty() {
                return Ok(all);
            }
            all.extend_from_slice(&got);
        }
    }
}

/// A one-shot HTTP/1.1 server: answers the first request with `body`, then closes.
fn http_server(body: &'static str) -> (u16, std::thread::JoinHandle<String>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let t = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let mut req = Vec::new();
        let mut b = [0u8; 512];
        while !req.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut b).unwrap();
            if n == 0 {
                break;
            }
            req.extend_from_slice(&b[..n]);
        }
        write!(
            s,
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        String::from_utf8(req).unwrap()
    });
    (port, t)
}

#[test]
fn http_get_over_tcp() {
    let (port, server) = http_server("hello from the host");
    let mut g = loopback_guest();
    let fd = g.tcp_connect(&format!("127.0.0.1:{port}"), 0).unwrap();
    assert_eq!(fd, 3);
    let req = format!("GET /x HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    assert_eq!(g.write(fd, req.as_bytes()), Ok(req.len() as u32));
    let resp = String::from_utf8(g.read_to_end(fd).unwrap()).unwrap();
    assert!(resp.starts_with("HTTP/1.1 200 OK\r\n"), "{resp}");
    assert!(resp.ends_with("\r\n\r\nhello from the host"), "{resp}");
    assert_eq!(server.join().unwrap(), req);
    // The descriptor is a stream socket.
    g.ok("fd_fdstat_get", &[fd as u64, BUF as u64]);
    assert_eq!(g.get(BUF, 1), [filetype::SOCKET_STREAM]);
    g.ok("fd_filestat_get", &[fd as u64, BUF as u64]);
    assert_eq!(g.get(BUF + 16, 1), [filetype::SOCKET_STREAM]);
    g.err("fd_seek", &[fd as u64, 0, 0, OUT as u64], Errno::Spipe);
    g.ok("fd_close", &[fd as u64]);
    assert_eq!(g.ctx.open_sockets(), 0);
    let d = g.dmesg();
    assert!(
        d.contains(&format!(
            "HOST_TCP_CONNECT(vmctx={:x}, 1000, {:02x}, 00, 100)\n\tfd: 3\n\treason: connected to 127.0.0.1:{port}\n",
            g.ctx.dmesg_mut().unwrap().id(),
            format!("127.0.0.1:{port}").len()
        )),
        "{d}"
    );
    // Bytes were charged both ways.
    assert!(g.ctx.net_bytes_left().unwrap() < (64 << 20) - req.len() as u64);
}

#[test]
fn ipv6_and_names() {
    let l = TcpListener::bind("[::1]:0");
    let Ok(l) = l else { return }; // no IPv6 loopback on this host
    let port = l.local_addr().unwrap().port();
    let mut g = loopback_guest();
    let fd = g.tcp_connect(&format!("[::1]:{port}"), 0).unwrap();
    let (mut s, _) = l.accept().unwrap();
    s.write_all(b"v6").unwrap();
    assert_eq!(g.read(fd, 10).unwrap(), b"v6");
    // "localhost" resolves (to ::1 or 127.0.0.1, both open here).
    let l4 = TcpListener::bind("127.0.0.1:0").unwrap();
    let p4 = l4.local_addr().unwrap().port();
    let l6 = TcpListener::bind(format!("[::1]:{p4}"));
    let fd = g.tcp_connect(&format!("LocalHost.:{p4}"), 0);
    assert!(fd.is_ok() || l6.is_err(), "{fd:?}: {}", g.dmesg());
}

#[test]
fn policy_refusals() {
    // Nothing listens there: a refusal must come before any packet is sent.
    let mut g = Guest::new(WasiCtx::builder().trace(true).net(net_config(
        &[],
        &[],
        NetLimits::default(),
    )));
    for a in [
        "127.0.0.1:80",
        "[::1]:80",
        "[::ffff:127.0.0.1]:80",
        "10.1.2.3:80",
        "169.254.169.254:80",
        "[fd00:ec2::254]:80",
        "0.0.0.0:80",
        "localhost:80",
    ] {
        assert_eq!(g.tcp_connect(a, 0), Err(Errno::Acces.raw()), "{a}");
    }
    let d = g.dmesg();
    assert!(
        d.contains("\terrno: EACCES\n\treason: egress policy: 169.254.169.254 is a cloud metadata address, refused by default"),
        "{d}"
    );
    assert!(d.contains("127.0.0.1 is loopback"), "{d}");
    assert_eq!(g.ctx.open_sockets(), 0);

    // A function allowlist that does not match refuses, one that does allows.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{port}");
    let mut g = Guest::new(WasiCtx::builder().trace(true).net(net_config(
        &["127.0.0.0/8"],
        &["api.example.com:443", "127.0.0.1:1"],
        NetLimits::default(),
    )));
    assert_eq!(g.tcp_connect(&addr, 0), Err(Errno::Acces.raw()));
    assert!(g
        .dmesg()
        .contains("is not in the function's egress allowlist"));
    let mut g = Guest::new(WasiCtx::builder().net(net_config(
        &["127.0.0.0/8"],
        &[&format!("127.0.0.1:{port}")],
        NetLimits::default(),
    )));
    assert!(g.tcp_connect(&addr, 0).is_ok());
    let mut g = Guest::new(WasiCtx::builder().net(net_config(
        &["127.0.0.0/8"],
        &[&format!("localhost:{port}")],
        NetLimits::default(),
    )));
    assert_eq!(g.tcp_connect(&addr, 0), Err(Errno::Acces.raw()));
    // Server deny beats everything.
    let mut g = Guest::new(WasiCtx::builder().net(NetConfig {
        policy: Arc::new(EgressPolicy::new(&["*"], &["127.0.0.1"], &[]).unwrap()),
        limits: NetLimits::default(),
        tls: default_tls(),
    }));
    assert_eq!(g.tcp_connect(&addr, 0), Err(Errno::Acces.raw()));
}

#[test]
fn without_network_not_capable() {
    let mut g = Guest::new(WasiCtx::builder().trace(true));
    assert_eq!(
        g.tcp_connect("127.0.0.1:80", 0),
        Err(Errno::Notcapable.raw())
    );
    assert!(g
        .dmesg()
        .contains("\terrno: ENOTCAPABLE\n\treason: no network capability"));
    // Socket calls on other descriptors are still ENOTSOCK.
    g.err("sock_shutdown", &[1, 2], Errno::Notsock);
}

#[test]
fn refused_and_bad_addresses() {
    let mut g = loopback_guest();
    // A port nothing listens on (bound then closed).
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    assert_eq!(
        g.tcp_connect(&format!("127.0.0.1:{port}"), 0),
        Err(Errno::Connrefused.raw())
    );
    assert!(g
        .dmesg()
        .contains("\terrno: ECONNREFUSED\n\treason: connecting to 127.0.0.1:"));
    for bad in [
        "",
        "127.0.0.1",
        "127.0.0.1:",
        "127.0.0.1:0",
        "127.0.0.1:65536",
        "127.0.0.1:http",
        "::1:80",
        "[::1]",
        "[127.0.0.1]:80",
        "[::1]80",
        "exa mple.com:80",
        "a..b:80",
        "host\0name:80",
    ] {
        assert_eq!(g.tcp_connect(bad, 0), Err(Errno::Inval.raw()), "{bad:?}");
    }
    let long = format!("{}.com:80", ["a"; 127].join("."));
    assert_eq!(g.tcp_connect(&long, 0), Err(Errno::Inval.raw()));
    assert_eq!(
        g.tcp_connect(&format!("{}:80", "a".repeat(64)), 0),
        Err(Errno::Inval.raw())
    );
    // Unknown flags.
    assert_eq!(
        g.tcp_connect(&format!("127.0.0.1:{port}"), 2),
        Err(Errno::Inval.raw())
    );
    assert_eq!(
        g.tcp_connect(&format!("127.0.0.1:{port}"), 1 << 31),
        Err(Errno::Inval.raw())
    );
}

#[test]
fn hostile_pointers() {
    let mut g = loopback_guest();
    let end = MEM as u64;
    let call = |g: &mut Guest, args: &[u64]| -> u16 {
        g.call_in(FNVM_MODULE, "host_tcp_connect", args).unwrap() as u16
    };
    g.set_u32(OUT, 7);
    // Address out of bounds, running off the end, huge.
    assert_eq!(call(&mut g, &[end, 4, 0, OUT as u64]), Errno::Fault.raw());
    assert_eq!(
        call(&mut g, &[end - 2, 14, 0, OUT as u64]),
        Errno::Fault.raw()
    );
    assert_eq!(
        call(&mut g, &[0, u32::MAX as u64, 0, OUT as u64]),
        Errno::Fault.raw()
    );
    assert_eq!(
        call(&mut g, &[u32::MAX as u64, u32::MAX as u64, 0, OUT as u64]),
        Errno::Fault.raw()
    );
    // In bounds but longer than any address: EINVAL.
    assert_eq!(call(&mut g, &[0, 4096, 0, OUT as u64]), Errno::Inval.raw());
    // Not UTF-8.
    g.put(STR, b"\xff\xfe:80");
    assert_eq!(
        call(&mut g, &[STR as u64, 5, 0, OUT as u64]),
        Errno::Inval.raw()
    );
    // fd_ptr out of bounds (checked before connecting: nothing is opened).
    let [p, l] = g.s(STR, "127.0.0.1:9");
    assert_eq!(call(&mut g, &[p, l, 0, end - 3]), Errno::Fault.raw());
    assert_eq!(
        call(&mut g, &[p, l, 0, u32::MAX as u64]),
        Errno::Fault.raw()
    );
    assert_eq!(g.u32_at(OUT), 7, "nothing written on failure");
    assert_eq!(g.ctx.open_sockets(), 0);
    // TLS: the hostname's pointer and length too, and a name over 253 bytes.
    let tls = |g: &mut Guest, args: &[u64]| -> u16 {
        g.call_in(FNVM_MODULE, "host_tls_connect", args).unwrap() as u16
    };
    assert_eq!(
        tls(&mut g, &[p, l, end, 9, 0, OUT as u64]),
        Errno::Fault.raw()
    );
    assert_eq!(
        tls(&mut g, &[p, l, STR2 as u64, u32::MAX as u64, 0, OUT as u64]),
        Errno::Fault.raw()
    );
    g.put(STR2, "a".repeat(254).as_bytes());
    assert_eq!(
        tls(&mut g, &[p, l, STR2 as u64, 254, 0, OUT as u64]),
        Errno::Inval.raw()
    );
    g.put(STR2, b"bad name!");
    assert_eq!(
        tls(&mut g, &[p, l, STR2 as u64, 9, 0, OUT as u64]),
        Errno::Inval.raw()
    );
    assert_eq!(
        tls(&mut g, &[p, l, 0, 0, 4, OUT as u64]),
        Errno::Inval.raw()
    );
    assert_eq!(g.u32_at(OUT), 7);
    // Reads and writes on a socket with hostile iovecs.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let fd = g
        .tcp_connect(&listener.local_addr().unwrap().to_string(), 0)
        .unwrap() as u64;
    g.set_u32(IOV, (MEM - 2) as u32);
    g.set_u32(IOV + 4, 3);
    g.err("fd_read", &[fd, IOV as u64, 1, OUT as u64], Errno::Fault);
    g.err("fd_write", &[fd, IOV as u64, 1, OUT as u64], Errno::Fault);
    g.err("fd_write", &[fd, end - 4, 1, OUT as u64], Errno::Fault);
    g.set_u32(IOV, BUF);
    g.set_u32(IOV + 4, 3);
    g.err("fd_write", &[fd, IOV as u64, 1, end - 3], Errno::Fault);
    g.err(
        "sock_recv",
        &[fd, IOV as u64, 1, 0, end - 3, OUT as u64],
        Errno::Fault,
    );
    g.err("sock_send", &[fd, IOV as u64, 1, 0, end - 1], Errno::Fault);
}

#[test]
fn connection_limit() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let mut g = loopback_guest();
    let fds: Vec<u32> = (0..16).map(|_| g.tcp_connect(&addr, 0).unwrap()).collect();
    assert_eq!(g.ctx.open_sockets(), 16);
    assert_eq!(g.tcp_connect(&addr, 0), Err(Errno::Mfile.raw()));
    assert!(g
        .dmesg()
        .contains("\terrno: EMFILE\n\treason: 16 connections are open, the limit is 16\n"));
    // Closing one makes room for one.
    g.ok("fd_close", &[fds[3] as u64]);
    assert_eq!(g.tcp_connect(&addr, 0), Ok(fds[3]));
    assert_eq!(g.tcp_connect(&addr, 0), Err(Errno::Mfile.raw()));
    // A smaller limit.
    let mut g = Guest::new(WasiCtx::builder().net(net_config(
        &["127.0.0.0/8"],
        &[],
        NetLimits {
            max_connections: 1,
            ..NetLimits::default()
        },
    )));
    g.tcp_connect(&addr, 0).unwrap();
    assert_eq!(g.tcp_connect(&addr, 0), Err(Errno::Mfile.raw()));
}

#[test]
fn byte_budget() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let mut g = Guest::new(WasiCtx::builder().trace(true).net(net_config(
        &["127.0.0.0/8"],
        &[],
        NetLimits {
            max_bytes: 10,
            ..NetLimits::default()
        },
    )));
    let fd = g.tcp_connect(&addr, 0).unwrap();
    let (mut s, _) = l.accept().unwrap();
    // 6 bytes out, then only 4 more fit: a short write, then EDQUOT.
    assert_eq!(g.write(fd, b"123456"), Ok(6));
    assert_eq!(g.write(fd, b"789abc"), Ok(4));
    assert_eq!(g.write(fd, b"x"), Err(Errno::Dquot.raw()));
    let mut got = [0u8; 10];
    s.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"123456789a");
    // Reading is charged too.
    s.write_all(b"reply").unwrap();
    assert_eq!(g.read(fd, 10), Err(Errno::Dquot.raw()));
    assert_eq!(g.ctx.net_bytes_left(), Some(0));
    // Budget shared by every connection of the invocation: a new one cannot read either.
    let fd2 = g.tcp_connect(&addr, 0).unwrap();
    assert_eq!(g.write(fd2, b"x"), Err(Errno::Dquot.raw()));
    // Reads are capped to what is left.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let mut g = Guest::new(WasiCtx::builder().net(net_config(
        &["127.0.0.0/8"],
        &[],
        NetLimits {
            max_bytes: 3,
            ..NetLimits::default()
        },
    )));
    let fd = g.tcp_connect(&addr, 0).unwrap();
    let (mut s, _) = l.accept().unwrap();
    s.write_all(b"abcdef").unwrap();
    assert_eq!(g.read(fd, 10).unwrap(), b"abc");
    assert_eq!(g.read(fd, 10), Err(Errno::Dquot.raw()));
}

/// A listener whose accept queue is full: the kernel drops further SYNs, so a connect to it
/// hangs until its timeout (on loopback, no packet leaves the machine).
fn full_listener() -> (TcpListener, Vec<TcpStream>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let mut fill = Vec::new();
    // std listens with a backlog of 128 or SOMAXCONN (4096 by default): a little over either.
    for _ in 0..5000 {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
            Ok(s) => fill.push(s),
            Err(_) => return (l, fill),
        }
    }
    panic!("the accept queue never filled");
}

#[test]
fn connect_timeout() {
    let (l, _fill) = full_listener();
    let addr = l.local_addr().unwrap().to_string();
    let mut g = Guest::new(WasiCtx::builder().trace(true).net(net_config(
        &["127.0.0.0/8"],
        &[],
        NetLimits {
            connect_timeout: Duration::from_millis(300),
            ..NetLimits::default()
        },
    )));
    let t = Instant::now();
    assert_eq!(g.tcp_connect(&addr, 0), Err(Errno::Timedout.raw()));
    let took = t.elapsed();
    assert!(took >= Duration::from_millis(250), "{took:?}");
    assert!(took < Duration::from_secs(4), "{took:?}");
    assert!(g
        .dmesg()
        .contains("\terrno: ETIMEDOUT\n\treason: connecting to "));
    // The invocation's deadline, when it comes first, ends the invocation instead.
    g.deadline = Deadline::at(Instant::now() + Duration::from_millis(100));
    let [p, len] = g.s(STR, &addr);
    assert_eq!(
        g.call_in(FNVM_MODULE, "host_tcp_connect", &[p, len, 0, OUT as u64]),
        Err(HostExit::DeadlineExceeded)
    );
    assert!(g
        .dmesg()
        .contains("\tDEADLINE EXCEEDED\n\treason: connecting to "));
}

#[test]
fn blocked_read_ends_at_the_deadline() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut g = loopback_guest();
    let fd = g
        .tcp_connect(&l.local_addr().unwrap().to_string(), 0)
        .unwrap();
    let (_peer, _) = l.accept().unwrap(); // says nothing
    let t = Instant::now();
    g.deadline = Deadline::at(t + Duration::from_millis(100));
    g.set_u32(IOV, BUF);
    g.set_u32(IOV + 4, 10);
    assert_eq!(
        g.call_in(
            WASI_MODULE,
            "fd_read",
            &[fd as u64, IOV as u64, 1, OUT as u64]
        ),
        Err(HostExit::DeadlineExceeded)
    );
    let waited = t.elapsed();
    assert!(waited >= Duration::from_millis(90), "{waited:?}");
    assert!(waited < Duration::from_secs(5), "{waited:?}");
    assert!(g.dmesg().ends_with("\tDEADLINE EXCEEDED\n"));
    // sock_recv too.
    assert_eq!(
        g.call_in(
            WASI_MODULE,
            "sock_recv",
            &[fd as u64, IOV as u64, 1, 0, OUT as u64, OUT as u64 + 4]
        ),
        Err(HostExit::DeadlineExceeded)
    );
}

#[test]
fn nonblocking_and_poll() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let mut g = loopback_guest();
    let fd = g.tcp_connect(&addr, 1).unwrap();
    let (mut peer, _) = l.accept().unwrap();
    g.ok("fd_fdstat_get", &[fd as u64, BUF as u64]);
    assert_eq!(
        u16::from_le_bytes([g.get(BUF + 2, 2)[0], g.get(BUF + 2, 2)[1]]),
        4
    );
    assert_eq!(g.read(fd, 10), Err(Errno::Again.raw()));
    // Blocking again, then non-blocking through fd_fdstat_set_flags.
    g.ok("fd_fdstat_set_flags", &[fd as u64, 0]);
    g.ok("fd_fdstat_get", &[fd as u64, BUF as u64]);
    assert_eq!(g.get(BUF + 2, 2), [0, 0]);
    g.err("fd_fdstat_set_flags", &[fd as u64, 1], Errno::Inval);
    g.ok("fd_fdstat_set_flags", &[fd as u64, 4]);
    assert_eq!(g.read(fd, 10), Err(Errno::Again.raw()));

    // poll: FD_READ on the socket and a 50 ms clock: the clock fires, the socket is not ready.
    let sub = |g: &mut Guest, i: u32, ud: u64, kind: u8, fd: u32, timeout: u64| {
        let s = BUF + 48 * i;
        g.put(s, &[0; 48]);
        g.put(s, &ud.to_le_bytes());
        g.put(s + 8, &[kind]);
        if kind == eventtype::CLOCK {
            g.put(s + 16, &clockid::MONOTONIC.to_le_bytes());
            g.put(s + 24, &timeout.to_le_bytes());
        } else {
            g.put(s + 16, &fd.to_le_bytes());
        }
    };
    sub(&mut g, 0, 1, eventtype::FD_READ, fd, 0);
    sub(&mut g, 1, 2, eventtype::CLOCK, 0, 50_000_000);
    let t = Instant::now();
    g.ok("poll_oneoff", &[BUF as u64, STR as u64, 2, OUT as u64]);
    assert!(t.elapsed() >= Duration::from_millis(45));
    assert_eq!(g.u32_at(OUT), 1);
    assert_eq!(g.u64_at(STR), 2);
    // Data arriving in 50 ms wakes a poll with a 10 s clock.
    let writer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        peer.write_all(b"ping").unwrap();
        peer
    });
    sub(&mut g, 1, 2, eventtype::CLOCK, 0, 10_000_000_000);
    let t = Instant::now();
    g.ok("poll_oneoff", &[BUF as u64, STR as u64, 2, OUT as u64]);
    assert!(t.elapsed() < Duration::from_secs(5));
    assert_eq!(g.u32_at(OUT), 1);
    assert_eq!(g.u64_at(STR), 1);
    assert_eq!(g.get(STR + 10, 1), [eventtype::FD_READ]);
    assert_eq!(g.u64_at(STR + 16), 4, "nbytes");
    let mut peer = writer.join().unwrap();
    // Writable at once.
    sub(&mut g, 0, 3, eventtype::FD_WRITE, fd, 0);
    g.ok("poll_oneoff", &[BUF as u64, STR as u64, 1, OUT as u64]);
    assert_eq!(g.u32_at(OUT), 1);
    assert_eq!(g.get(STR + 10, 1), [eventtype::FD_WRITE]);
    // sock_recv with PEEK leaves the data; then it is read.
    g.set_u32(IOV, BUF + 1024);
    g.set_u32(IOV + 4, 2);
    g.ok(
        "sock_recv",
        &[
            fd as u64,
            IOV as u64,
            1,
            sock::RECV_PEEK as u64,
            OUT as u64,
            OUT as u64 + 4,
        ],
    );
    assert_eq!(g.u32_at(OUT), 2);
    assert_eq!(g.read(fd, 10).unwrap(), b"ping");
    // The peer's close: readable with hangup, then end of stream.
    drop(peer.shutdown(std::net::Shutdown::Write));
    sub(&mut g, 0, 4, eventtype::FD_READ, fd, 0);
    g.ok("poll_oneoff", &[BUF as u64, STR as u64, 1, OUT as u64]);
    assert_eq!(g.u32_at(OUT), 1);
    assert_eq!(g.read(fd, 10).unwrap(), b"");
    // A poll that would outlast the deadline ends the invocation.
    let l2 = TcpListener::bind("127.0.0.1:0").unwrap();
    let fd2 = g
        .tcp_connect(&l2.local_addr().unwrap().to_string(), 0)
        .unwrap();
    g.deadline = Deadline::at(Instant::now() + Duration::from_millis(50));
    sub(&mut g, 0, 5, eventtype::FD_READ, fd2, 0);
    assert_eq!(
        g.call_in(
            WASI_MODULE,
            "poll_oneoff",
            &[BUF as u64, STR as u64, 1, OUT as u64]
        ),
        Err(HostExit::DeadlineExceeded)
    );
    let _ = peer.write_all(b"");
}

#[test]
fn sock_send_recv_shutdown() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut g = loopback_guest();
    let fd = g
        .tcp_connect(&l.local_addr().unwrap().to_string(), 0)
        .unwrap() as u64;
    let (mut peer, _) = l.accept().unwrap();
    g.put(BUF, b"echo me");
    g.set_u32(IOV, BUF);
    g.set_u32(IOV + 4, 7);
    g.ok("sock_send", &[fd, IOV as u64, 1, 0, OUT as u64]);
    assert_eq!(g.u32_at(OUT), 7);
    g.err(
        "sock_send",
        &[fd, IOV as u64, 1, 1, OUT as u64],
        Errno::Inval,
    );
    // Shutting the write side: the peer sees the end of the request.
    g.ok("sock_shutdown", &[fd, sock::SHUT_WR as u64]);
    let mut got = Vec::new();
    peer.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"echo me");
    assert_eq!(g.write(fd as u32, b"x"), Err(Errno::Pipe.raw()));
    peer.write_all(b"0123456789").unwrap();
    drop(peer);
    // WAITALL fills the buffer.
    g.set_u32(IOV, BUF);
    g.set_u32(IOV + 4, 8);
    g.ok(
        "sock_recv",
        &[
            fd,
            IOV as u64,
            1,
            sock::RECV_WAITALL as u64,
            OUT as u64,
            OUT as u64 + 4,
        ],
    );
    assert_eq!(g.u32_at(OUT), 8);
    assert_eq!(g.get(BUF, 8), b"01234567");
    g.set_u32(IOV + 4, 8);
    g.ok(
        "sock_recv",
        &[fd, IOV as u64, 1, 0, OUT as u64, OUT as u64 + 4],
    );
    assert_eq!(g.u32_at(OUT), 2);
    g.err("sock_shutdown", &[fd, 0], Errno::Inval);
    g.err("sock_accept", &[fd, 0, OUT as u64], Errno::Notsock);
    g.err(
        "fd_pread",
        &[fd, IOV as u64, 1, 0, OUT as u64],
        Errno::Spipe,
    );
}

#[test]
fn sockets_close_when_the_invocation_ends() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let mut g = loopback_guest();
    let a = g.tcp_connect(&addr, 0).unwrap();
    let _b = g.tcp_connect(&addr, 1).unwrap();
    // One renumbered over another (the one replaced closes then).
    g.ok("fd_renumber", &[a as u64, 1]);
    let mut peers: Vec<TcpStream> = (0..2).map(|_| l.accept().unwrap().0).collect();
    assert_eq!(g.ctx.open_sockets(), 2);
    drop(g);
    for p in &mut peers {
        p.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut b = [0u8; 1];
        assert_eq!(p.read(&mut b).unwrap(), 0, "EOF after the context is gone");
    }
}

/// Random arguments over random memory against a guest with live connections (one of them
/// TLS-less and peerless, one with a chatty peer): no panic, every answer an errno or the
/// deadline. The connect calls are left out (random memory must not dial anything), and the
/// function allowlist would confine them to loopback anyway.
#[test]
fn random_calls_on_sockets_never_panic() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let mut g = Guest::new(
        WasiCtx::builder()
            .trace(true)
            .trace_limit(1 << 14)
            .net(net_config(&["127.0.0.0/8"], &[&addr], NetLimits::default())),
    );
    g.tcp_connect(&addr, 1).unwrap();
    g.tcp_connect(&addr, 0).unwrap();
    let (_quiet, _) = l.accept().unwrap();
    let (mut chatty, _) = l.accept().unwrap();
    chatty.write_all(&[7; 4096]).unwrap();
    let mut rnd = super::xorshift(0x2545_f491_4f6c_dd1d);
    for b in g.mem.iter_mut() {
        *b = rnd() as u8;
    }
    for round in 0..3000 {
        let h = &crate::HOSTCALLS[(rnd() % crate::HOSTCALLS.len() as u64) as usize];
        if matches!(
            h.name,
            "proc_exit" | "host_halt" | "host_tcp_connect" | "host_tls_connect"
        ) {
            continue;
        }
        let args = super::random_args(h, MEM as u64, &mut rnd);
        // Anything that waits stops at a deadline just ahead.
        g.deadline = Deadline::at(Instant::now() + Duration::from_millis(2));
        match g.call_in(h.module, h.name, &args) {
            Ok(e) => assert!(e <= 76, "{} returned {e}", h.name),
            Err(HostExit::DeadlineExceeded) => {}
            Err(e) => panic!("round {round}: {} -> {e:?}", h.name),
        }
    }
}
