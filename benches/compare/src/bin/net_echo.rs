//! Outbound sockets from a function, against native Rust, side by side in one process: the round
//! trip of a 32-byte echo over TCP on loopback (a guest that connects with fnvm's
//! `host_tcp_connect`, then writes and reads with `fd_write` / `fd_read`, vs `std::net`), and
//! one connect plus TLS handshake (`host_tls_connect` vs rustls on a `std::net::TcpStream`),
//! against echo and TLS servers in threads of this process.
//!
//! ```text
//! cargo run --release --bin net_echo -- [--rounds 15] [--trips 2000] [--handshakes 50]
//! ```
//!
//! Rounds interleave the columns; each round of the echo does `--trips` round trips on one
//! connection (the guest's instantiation and connect, a few tens of µs, are spread over them),
//! each round of the handshake `--handshakes` connections. Medians over rounds, and ratios.

use fnvm_dataplane::{Invocation, Runner, RunnerConfig, Status};
use fnvm_hostcalls::{EgressPolicy, NetConfig, NetLimits, Stdin};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

const MESSAGE: &[u8; 32] = b"0123456789abcdef0123456789abcdef";

/// A guest that reads `host:port` from stdin, connects, and does `trips` round trips of 32
/// bytes (exit status 0; 2-6 name the step that failed).
fn echo_guest(trips: u32) -> Vec<u8> {
    wat::parse_str(format!(
        r#"(module
  (import "fnvm" "host_tcp_connect" (func $connect (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read" (func $read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (local $len i32) (local $fd i32) (local $i i32) (local $got i32)
    (i32.store (i32.const 80) (i32.const 0))
    (i32.store (i32.const 84) (i32.const 64))
    (if (call $read (i32.const 0) (i32.const 80) (i32.const 1) (i32.const 96))
      (then (call $exit (i32.const 2))))
    (local.set $len (i32.load (i32.const 96)))
    (if (call $connect (i32.const 0) (local.get $len) (i32.const 0) (i32.const 64))
      (then (call $exit (i32.const 3))))
    (local.set $fd (i32.load (i32.const 64)))
    (loop $trip
      (i32.store (i32.const 80) (i32.const 128))
      (i32.store (i32.const 84) (i32.const 32))
      (if (call $write (local.get $fd) (i32.const 80) (i32.const 1) (i32.const 96))
        (then (call $exit (i32.const 4))))
      (local.set $got (i32.const 0))
      (loop $rd
        (i32.store (i32.const 80) (i32.add (i32.const 256) (local.get $got)))
        (i32.store (i32.const 84) (i32.sub (i32.const 32) (local.get $got)))
        (if (call $read (local.get $fd) (i32.const 80) (i32.const 1) (i32.const 96))
          (then (call $exit (i32.const 5))))
        (if (i32.eqz (i32.load (i32.const 96))) (then (call $exit (i32.const 6))))
        (local.set $got (i32.add (local.get $got) (i32.load (i32.const 96))))
        (br_if $rd (i32.lt_u (local.get $got) (i32.const 32))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $trip (i32.lt_u (local.get $i) (i32.const {trips})))))
  (data (i32.const 128) "0123456789abcdef0123456789abcdef"))"#
    ))
    .expect("the echo guest")
}

/// A guest that reads `host:port` from stdin and connects over TLS as `localhost` (exit 0, or 3).
fn tls_guest() -> Vec<u8> {
    wat::parse_str(
        r#"(module
  (import "fnvm" "host_tls_connect"
    (func $connect (param i32 i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read" (func $read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (i32.store (i32.const 80) (i32.const 0))
    (i32.store (i32.const 84) (i32.const 64))
    (if (call $read (i32.const 0) (i32.const 80) (i32.const 1) (i32.const 96))
      (then (call $exit (i32.const 2))))
    (if (call $connect (i32.const 0) (i32.load (i32.const 96)) (i32.const 128) (i32.const 9)
                       (i32.const 0) (i32.const 64))
      (then (call $exit (i32.const 3)))))
  (data (i32.const 128) "localhost"))"#,
    )
    .expect("the TLS guest")
}

/// An echo server: every connection gets back what it sends.
fn echo_server() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("binding");
    let port = l.local_addr().expect("address").port();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            std::thread::spawn(move || {
                let _ = s.set_nodelay(true);
                let (mut r, mut w) = (&s, &s);
                let mut buf = [0u8; 4096];
                while let Ok(n) = r.read(&mut buf) {
                    if n == 0 || w.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    port
}

/// A TLS server (a certificate for `localhost` from a fresh CA) that completes handshakes;
/// its port and the CA's PEM.
fn tls_server() -> (u16, String) {
    let ca_key = rcgen::KeyPair::generate().expect("key");
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).expect("CA");
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = rcgen::KeyPair::generate().expect("key");
    let leaf = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .expect("params")
        .signed_by(&key, &issuer)
        .expect("certificate");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = Arc::new(
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(
                vec![leaf.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
            .expect("server config"),
    );
    let l = TcpListener::bind("127.0.0.1:0").expect("binding");
    let port = l.local_addr().expect("address").port();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let config = config.clone();
            std::thread::spawn(move || {
                let Ok(conn) = rustls::ServerConnection::new(config) else {
                    return;
                };
                let mut s = rustls::StreamOwned::new(conn, s);
                let mut buf = [0u8; 64];
                // Until the client goes away (the handshake happens on the way).
                while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
            });
        }
    });
    (port, ca_cert.pem())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn arg(name: &str, default: u32) -> u32 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let (rounds, trips, handshakes) = (
        arg("--rounds", 15),
        arg("--trips", 2000),
        arg("--handshakes", 50),
    );
    let echo_port = echo_server();
    let (tls_port, ca_pem) = tls_server();
    let cache = std::env::temp_dir().join(format!("fnvm-net-bench-{}", std::process::id()));
    let runner = Runner::new(RunnerConfig {
        cache_dir: cache.clone(),
        ..Default::default()
    })
    .expect("runner");
    let echo = runner
        .load(&echo_guest(trips))
        .expect("loading the echo guest");
    let tls = runner.load(&tls_guest()).expect("loading the TLS guest");
    let net = NetConfig {
        policy: Arc::new(
            EgressPolicy::new(&["127.0.0.0/8"], &[] as &[&str], &[] as &[&str]).expect("policy"),
        ),
        limits: NetLimits {
            max_bytes: u64::MAX,
            ..NetLimits::default()
        },
        tls: NetConfig::tls_config(ca_pem.as_bytes()).expect("TLS roots"),
    };
    let invoke = |module, address: String| {
        let out = runner
            .invoke(
                module,
                Invocation {
                    stdin: Stdin::Bytes(address.into_bytes()),
                    net: Some(net.clone()),
                    limits: fnvm_runtime::InstanceLimits {
                        timeout: Some(Duration::from_secs(60)),
                        ..Default::default()
                    },
                    ..Invocation::default()
                },
            )
            .expect("invoking");
        assert_eq!(out.status, Status::Exited(0), "the guest failed");
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::pem::PemObject::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.expect("the CA")).expect("adding the CA");
    }
    let client = Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth(),
    );
    let (mut fnvm_trip, mut native_trip, mut fnvm_tls, mut native_tls) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let t = Instant::now();
        invoke(&echo, format!("127.0.0.1:{echo_port}"));
        fnvm_trip.push(t.elapsed().as_secs_f64() / f64::from(trips));

        let t = Instant::now();
        let mut s = TcpStream::connect(("127.0.0.1", echo_port)).expect("connecting");
        s.set_nodelay(true).expect("nodelay");
        let mut buf = [0u8; 32];
        for _ in 0..trips {
            s.write_all(MESSAGE).expect("writing");
            s.read_exact(&mut buf).expect("reading");
        }
        drop(s);
        native_trip.push(t.elapsed().as_secs_f64() / f64::from(trips));

        let t = Instant::now();
        for _ in 0..handshakes {
            invoke(&tls, format!("127.0.0.1:{tls_port}"));
        }
        fnvm_tls.push(t.elapsed().as_secs_f64() / f64::from(handshakes));

        let t = Instant::now();
        for _ in 0..handshakes {
            let mut tcp = TcpStream::connect(("127.0.0.1", tls_port)).expect("connecting");
            let mut conn = rustls::ClientConnection::new(
                client.clone(),
                "localhost".try_into().expect("name"),
            )
            .expect("client");
            while conn.is_handshaking() {
                conn.complete_io(&mut tcp).expect("handshake");
            }
        }
        native_tls.push(t.elapsed().as_secs_f64() / f64::from(handshakes));
    }
    let _ = std::fs::remove_dir_all(&cache);
    let us = |v: f64| v * 1e6;
    let (ft, nt, fh, nh) = (
        median(fnvm_trip),
        median(native_trip),
        median(fnvm_tls),
        median(native_tls),
    );
    println!("### Outbound sockets: fnvm guest vs native Rust (medians of {rounds} interleaved rounds)\n");
    println!("| what | fnvm | native | fnvm / native |");
    println!("|---|---:|---:|---:|");
    println!(
        "| 32-byte echo round trip over TCP on loopback ({trips} per round, one connection) | {:.1} µs | {:.1} µs | {:.2}x |",
        us(ft),
        us(nt),
        ft / nt
    );
    println!(
        "| connect + TLS handshake ({handshakes} per round; fnvm: a whole invocation) | {:.0} µs | {:.0} µs | {:.2}x |",
        us(fh),
        us(nh),
        fh / nh
    );
}
