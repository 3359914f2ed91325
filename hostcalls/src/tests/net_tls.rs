//! Outbound TLS (`host_tls_connect`) against a local rustls server whose certificate a test
//! CA (made with rcgen) signed: verification passing for the right name, failing for a wrong
//! name and for an unknown CA, and reads and writes through the session.

use super::net::net_config;
use super::*;
use crate::net::policy::EgressPolicy;
use crate::net::{NetConfig, NetLimits};
use crate::types::{clockid, eventtype};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A CA and a server certificate for `localhost` and `test.fnvm` signed by it.
struct Pki {
    ca_pem: String,
    chain: Vec<CertificateDer<'static>>,
    key: Vec<u8>,
}

fn pki() -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "fnvm test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_string(), "test.fnvm".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    Pki {
        ca_pem: ca_cert.pem(),
        chain: vec![leaf.der().clone(), ca_cert.der().clone()],
        key: leaf_key.serialize_der(),
    }
}

/// A TLS server answering each connection's HTTP request with `body` (for `n` connections;
/// handshakes that fail are counted and skipped).
fn tls_server(pki: &Pki, n: usize, body: &'static str) -> (u16, std::thread::JoinHandle<()>) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = Arc::new(
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                pki.chain.clone(),
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pki.key.clone())),
            )
            .unwrap(),
    );
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let t = std::thread::spawn(move || {
        for _ in 0..n {
            let (tcp, _) = l.accept().unwrap();
            tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let conn = rustls::ServerConnection::new(config.clone()).unwrap();
            let mut s = rustls::StreamOwned::new(conn, tcp);
            let mut req = Vec::new();
            let mut b = [0u8; 512];
            let ok = loop {
                match s.read(&mut b) {
                    Ok(0) | Err(_) => break false,
                    Ok(n) => req.extend_from_slice(&b[..n]),
                }
                if req.windows(4).any(|w| w == b"\r\n\r\n") {
                    break true;
                }
            };
            if !ok {
                continue;
            }
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            s.conn.send_close_notify();
            let _ = s.flush();
        }
    });
    (port, t)
}

/// A traced guest allowed to reach loopback, trusting `ca_pem`'s CA besides the Mozilla roots.
fn tls_guest(ca_pem: &[u8]) -> Guest {
    Guest::new(WasiCtx::builder().trace(true).net(NetConfig {
        policy: Arc::new(EgressPolicy::new(&["127.0.0.0/8"], &[], &[]).unwrap()),
        limits: NetLimits::default(),
        tls: NetConfig::tls_config(ca_pem).unwrap(),
    }))
}

impl Guest {
    /// `host_tls_connect(address, hostname, flags)`: the new fd or the errno.
    fn tls_connect(&mut self, address: &str, hostname: &str, flags: u32) -> Result<u32, u16> {
        let [p, l] = self.s(STR, address);
        let [hp, hl] = self.s(STR2, hostname);
        self.set_u32(OUT, 0xdead_beef);
        let e = self
            .call_in(
                FNVM_MODULE,
                "host_tls_connect",
                &[p, l, hp, hl, flags as u64, OUT as u64],
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
}

#[test]
fn https_get_verified() {
    let pki = pki();
    let (port, server) = tls_server(&pki, 2, "secret over TLS");
    let mut g = tls_guest(pki.ca_pem.as_bytes());
    for hostname in ["test.fnvm", ""] {
        // An empty hostname means the address's host (here `localhost`).
        let addr = if hostname.is_empty() {
            format!("localhost:{port}")
        } else {
            format!("127.0.0.1:{port}")
        };
        let fd = match g.tls_connect(&addr, hostname, 0) {
            Ok(fd) => fd,
            Err(e) => panic!("errno {e}: {}", g.dmesg()),
        };
        let req = "GET / HTTP/1.1\r\nHost: test.fnvm\r\nConnection: close\r\n\r\n";
        assert_eq!(g.write(fd, req.as_bytes()), Ok(req.len() as u32));
        let resp = String::from_utf8(g.read_to_end(fd).unwrap()).unwrap();
        assert!(resp.starts_with("HTTP/1.1 200 OK\r\n"), "{resp}");
        assert!(resp.ends_with("\r\n\r\nsecret over TLS"), "{resp}");
        g.ok("fd_close", &[fd as u64]);
    }
    server.join().unwrap();
    assert!(g.dmesg().contains("HOST_TLS_CONNECT("));
}

#[test]
fn wrong_hostname_and_unknown_ca_fail() {
    let pki = pki();
    let (port, server) = tls_server(&pki, 2, "x");
    let addr = format!("127.0.0.1:{port}");
    let mut g = tls_guest(pki.ca_pem.as_bytes());
    assert_eq!(
        g.tls_connect(&addr, "other.example", 0),
        Err(Errno::Connaborted.raw())
    );
    let d = g.dmesg();
    assert!(
        d.contains("\terrno: ECONNABORTED\n\treason: TLS certificate verification for other.example failed: "),
        "{d}"
    );
    assert_eq!(g.ctx.open_sockets(), 0);
    // Only the Mozilla roots: the test CA is unknown.
    let mut g = tls_guest(b"");
    assert_eq!(
        g.tls_connect(&addr, "test.fnvm", 0),
        Err(Errno::Connaborted.raw())
    );
    let d = g.dmesg();
    assert!(d.contains("UnknownIssuer"), "{d}");
    server.join().unwrap();
}

#[test]
fn not_tls_and_refused() {
    // A server that answers the ClientHello with plain text.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let t = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let mut b = [0u8; 64];
        let _ = s.read(&mut b);
        let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n");
        std::thread::sleep(Duration::from_millis(200));
    });
    let mut g = tls_guest(b"");
    assert_eq!(
        g.tls_connect(&addr, "test.fnvm", 0),
        Err(Errno::Proto.raw())
    );
    assert!(g
        .dmesg()
        .contains("\terrno: EPROTO\n\treason: TLS handshake with test.fnvm failed"));
    t.join().unwrap();
    // A server that closes at once.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let t = std::thread::spawn(move || drop(l.accept().unwrap()));
    assert_eq!(
        g.tls_connect(&addr, "test.fnvm", 0),
        Err(Errno::Connreset.raw())
    );
    t.join().unwrap();
    // The policy applies as for TCP.
    let mut g = Guest::new(WasiCtx::builder().net(net_config(&[], &[], NetLimits::default())));
    assert_eq!(
        g.tls_connect("127.0.0.1:443", "test.fnvm", 0),
        Err(Errno::Acces.raw())
    );
    let mut g = Guest::new(WasiCtx::builder());
    assert_eq!(
        g.tls_connect("127.0.0.1:443", "test.fnvm", 0),
        Err(Errno::Notcapable.raw())
    );
}

#[test]
fn tls_nonblocking_poll_and_budget() {
    let pki = pki();
    let (port, server) = tls_server(&pki, 1, "polled body");
    let mut g = tls_guest(pki.ca_pem.as_bytes());
    let fd = g
        .tls_connect(&format!("127.0.0.1:{port}"), "localhost", 1)
        .unwrap();
    let spent = (64u64 << 20) - g.ctx.net_bytes_left().unwrap();
    assert!(spent > 500, "the handshake is charged: {spent}");
    // Nothing to read yet.
    assert_eq!(g.read(fd, 100), Err(Errno::Again.raw()));
    let req = "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
    assert_eq!(g.write(fd, req.as_bytes()), Ok(req.len() as u32));
    // Poll until the response is readable, then read it all without blocking.
    let mut resp = Vec::new();
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(10) {
        let s = BUF;
        g.put(s, &[0; 96]);
        g.put(s + 8, &[eventtype::FD_READ]);
        g.put(s + 16, &fd.to_le_bytes());
        g.put(s + 48 + 8, &[eventtype::CLOCK]);
        g.put(s + 48 + 16, &clockid::MONOTONIC.to_le_bytes());
        g.put(s + 48 + 24, &5_000_000_000u64.to_le_bytes());
        g.ok("poll_oneoff", &[BUF as u64, STR as u64, 2, OUT as u64]);
        match g.read(fd, 1000) {
            Ok(b) if b.is_empty() => break,
            Ok(b) => resp.extend_from_slice(&b),
            Err(e) => assert_eq!(e, Errno::Again.raw()),
        }
    }
    let resp = String::from_utf8(resp).unwrap();
    assert!(resp.ends_with("polled body"), "{resp}");
    server.join().unwrap();
    // The budget counts records, handshake included: a tiny budget cannot even handshake.
    let (port, server) = tls_server(&pki, 1, "x");
    let mut g = Guest::new(WasiCtx::builder().trace(true).net(NetConfig {
        policy: Arc::new(EgressPolicy::new(&["127.0.0.0/8"], &[], &[]).unwrap()),
        limits: NetLimits {
            max_bytes: 100,
            ..NetLimits::default()
        },
        tls: NetConfig::tls_config(pki.ca_pem.as_bytes()).unwrap(),
    }));
    assert_eq!(
        g.tls_connect(&format!("127.0.0.1:{port}"), "localhost", 0),
        Err(Errno::Dquot.raw())
    );
    server.join().unwrap();
}

#[test]
fn tls_config_errors() {
    assert!(NetConfig::tls_config(b"").is_ok());
    assert!(NetConfig::tls_config(b"  \n").is_ok());
    assert!(matches!(
        NetConfig::tls_config(b"not pem at all"),
        Err(crate::TlsConfigError::Pem(_))
    ));
    assert!(NetConfig::tls_config(
        b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
    )
    .is_err());
    let two = format!("{}{}", pki().ca_pem, pki().ca_pem);
    assert!(NetConfig::tls_config(two.as_bytes()).is_ok());
}
