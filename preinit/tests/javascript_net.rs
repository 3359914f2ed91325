//! JavaScript functions' outbound sockets (`net.WasiTcpConn`, js-engine/README.md) end to end:
//! the engine pre-initialised with a script, invoked through the data plane's Runner with a
//! `NetConfig` (egress policy, limits, TLS roots), against local TCP and TLS servers.

mod common;

use common::{build, js_engine, limits, Function, TempDir};
use fnvm_dataplane::{Invocation, Status};
use fnvm_hostcalls::{CStrings, EgressPolicy, NetConfig, NetLimits, Stdin};
use fnvm_preinit::javascript::build_function;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Egress to loopback allowed (`allow_loopback`) or refused by default, trusting `ca_pem`.
fn net(allow_loopback: bool, ca_pem: &[u8]) -> NetConfig {
    let allow: &[&str] = if allow_loopback {
        &["127.0.0.0/8"]
    } else {
        &[]
    };
    NetConfig {
        policy: Arc::new(EgressPolicy::new(allow, &[], &[]).unwrap()),
        limits: NetLimits::default(),
        tls: NetConfig::tls_config(ca_pem).unwrap(),
    }
}

impl Function {
    /// An HTTP trigger invocation with `headers`: the body of the (default, 200) response.
    fn http(&self, net: Option<NetConfig>, headers: Value) -> String {
        let request = json!({"method": "GET", "uri": "/", "path": "/", "query": "",
                             "headers": headers, "body": "", "bodyEncoding": "utf8"});
        let out = self
            .runner
            .invoke(
                &self.prepared,
                Invocation {
                    env: CStrings::from_vars([("FNVM_TRIGGER", "http")]).unwrap(),
                    stdin: Stdin::Bytes(request.to_string().into_bytes()),
                    net,
                    ..Invocation::default()
                },
            )
            .expect("invoking");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status, Status::Exited(0), "stderr: {stderr}");
        let res: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: stdout {:?}", String::from_utf8_lossy(&out.stdout)));
        assert!(res["status"].is_null(), "{res}");
        res["body"].as_str().expect("a text body").to_string()
    }
}

/// Reads an HTTP request's head from `s`.
fn read_head(s: &mut impl Read) -> Option<String> {
    let mut req = Vec::new();
    let mut b = [0u8; 512];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut b) {
            Ok(0) | Err(_) => return None,
            Ok(n) => req.extend_from_slice(&b[..n]),
        }
    }
    Some(String::from_utf8_lossy(&req).into_owned())
}

fn answer(s: &mut impl Write, head: &str) {
    let path = head.split(' ').nth(1).unwrap_or("?");
    let body = format!("hello {path}");
    let _ = write!(
        s,
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = s.flush();
}

/// A plain HTTP/1.1 server answering `n` connections with `hello <path>`.
fn tcp_server(n: usize) -> (u16, JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let t = std::thread::spawn(move || {
        for _ in 0..n {
            let (mut tcp, _): (TcpStream, _) = l.accept().unwrap();
            tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            if let Some(head) = read_head(&mut tcp) {
                answer(&mut tcp, &head);
            }
        }
    });
    (port, t)
}

const TCP_SCRIPT: &str = r#"
  async function get(address, path) {
    const s = await net.WasiTcpConn.connect(address);
    const n = await s.write(`GET ${path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n`);
    const text = await s.text();
    s.close();
    return {n, text};
  }
  async function trigger_http(req) {
    const address = req.headers["x-target"];
    // A string written, the whole response read as text.
    const a = await get(address, "/one");
    // Bytes written, the response read in small pieces until the end of the stream.
    const s = await net.WasiTcpConn.connect(address);
    const written = await s.write(new TextEncoder().encode("GET /two HTTP/1.1\r\nHost: x\r\n\r\n"));
    await s.closeWrite();
    const chunks = [];
    for (;;) {
      const c = await s.read(7);
      if (!(c instanceof Uint8Array)) throw new Error("read gave no Uint8Array");
      if (c.length === 0) break;
      if (c.length > 7) throw new Error(`read(7) gave ${c.length} bytes`);
      chunks.push(new TextDecoder().decode(c));
    }
    s.close();
    s.close();
    let after;
    try {
      await s.write("x");
    } catch (e) {
      after = e.code;
    }
    const body = (t) => t.slice(t.indexOf("\r\n\r\n") + 4);
    return {body: JSON.stringify({
      n: a.n, status: a.text.split("\r\n")[0], one: body(a.text),
      written, pieces: chunks.length > 3, two: body(chunks.join("")), after,
      tls: s.tls, address: s.address === address,
    })};
  }"#;

#[test]
fn tcp_connect_write_read_close() {
    let Some(f) = build("net-tcp", TCP_SCRIPT) else {
        return;
    };
    let (port, server) = tcp_server(2);
    let body = f.http(
        Some(net(true, b"")),
        json!({"x-target": format!("127.0.0.1:{port}")}),
    );
    server.join().unwrap();
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        body,
        json!({"n": 57, "status": "HTTP/1.1 200 OK", "one": "hello /one", "written": 30,
               "pieces": true, "two": "hello /two", "after": "EBADF", "tls": false,
               "address": true})
    );
}

/// A CA and a server certificate for `localhost` signed by it: (CA PEM, chain, key).
fn pki() -> (String, Vec<CertificateDer<'static>>, Vec<u8>) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "fnvm test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    (
        ca_cert.pem(),
        vec![leaf.der().clone(), ca_cert.der().clone()],
        leaf_key.serialize_der(),
    )
}

/// A TLS HTTP/1.1 server for `n` connections (failed handshakes count and are skipped).
fn tls_server(
    chain: Vec<CertificateDer<'static>>,
    key: Vec<u8>,
    n: usize,
) -> (u16, JoinHandle<()>) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = Arc::new(
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key)))
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
            let Some(head) = read_head(&mut s) else {
                continue;
            };
            answer(&mut s, &head);
            s.conn.send_close_notify();
            let _ = s.flush();
        }
    });
    (port, t)
}

const TLS_SCRIPT: &str = r#"
  async function trigger_http(req) {
    const port = req.headers["x-port"];
    const get = `GET /secure HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n`;
    // connectTls(address, hostname): the certificate is verified for `localhost`.
    const s = await net.WasiTcpConn.connectTls(`127.0.0.1:${port}`, "localhost");
    await s.write(get);
    const a = await s.text();
    s.close();
    // The options form; no hostname: the address's host.
    const t = await net.WasiTcpConn.connect(`localhost:${port}`, {tls: true});
    await t.write(get);
    const b = new TextDecoder().decode(await t.readAll());
    t.close();
    // A name the certificate is not valid for.
    let wrong;
    try {
      await net.WasiTcpConn.connectTls(`127.0.0.1:${port}`, "other.example");
      wrong = "connected";
    } catch (e) {
      wrong = `${e.code} ${e.message}`;
    }
    const body = (x) => x.slice(x.indexOf("\r\n\r\n") + 4);
    return {body: JSON.stringify({a: body(a), b: body(b), tls: s.tls, hostname: s.hostname, wrong})};
  }"#;

#[test]
fn tls_connect_verifies_the_certificate() {
    let Some(f) = build("net-tls", TLS_SCRIPT) else {
        return;
    };
    let (ca_pem, chain, key) = pki();
    let (port, server) = tls_server(chain, key, 3);
    let body = f.http(
        Some(net(true, ca_pem.as_bytes())),
        json!({"x-port": port.to_string()}),
    );
    server.join().unwrap();
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["a"], "hello /secure", "{body}");
    assert_eq!(body["b"], "hello /secure", "{body}");
    assert_eq!(body["tls"], true);
    assert_eq!(body["hostname"], "localhost");
    let wrong = body["wrong"].as_str().unwrap();
    assert!(wrong.starts_with("ECONNABORTED ECONNABORTED: "), "{wrong}");
}

const REFUSED_SCRIPT: &str = r#"
  async function trigger_http(req) {
    try {
      await net.WasiTcpConn.connect(req.headers["x-target"]);
      return "connected";
    } catch (e) {
      return JSON.stringify({message: e.message, code: e.code, errno: e.errno, error: e instanceof Error});
    }
  }"#;

#[test]
fn a_connection_the_policy_refuses_rejects_with_eacces() {
    let Some(f) = build("net-refused", REFUSED_SCRIPT) else {
        return;
    };
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let target = json!({"x-target": format!("127.0.0.1:{}", l.local_addr().unwrap().port())});
    // Loopback is refused by default (no allow list).
    let body: Value = serde_json::from_str(&f.http(Some(net(false, b"")), target.clone())).unwrap();
    assert_eq!(body["code"], "EACCES", "{body}");
    assert_eq!(body["errno"], 2);
    assert_eq!(body["error"], true);
    let msg = body["message"].as_str().unwrap();
    assert!(
        msg.starts_with("EACCES: refused by the egress policy") && msg.contains("127.0.0.1:"),
        "{msg}"
    );
    // No network at all for this invocation.
    let body: Value = serde_json::from_str(&f.http(None, target)).unwrap();
    assert_eq!(body["code"], "ENOTCAPABLE", "{body}");
    // A malformed address.
    let body: Value =
        serde_json::from_str(&f.http(Some(net(true, b"")), json!({"x-target": "no-port"})))
            .unwrap();
    assert_eq!(body["code"], "EINVAL", "{body}");
}

#[test]
fn an_uncaught_connect_error_fails_the_invocation() {
    let script = r#"async function trigger_http() {
        await net.WasiTcpConn.connect("127.0.0.1:9");
      }"#;
    let Some(f) = build("net-uncaught", script) else {
        return;
    };
    let out = f
        .runner
        .invoke(
            &f.prepared,
            Invocation {
                env: CStrings::from_vars([("FNVM_TRIGGER", "std")]).unwrap(),
                net: Some(net(false, b"")),
                ..Invocation::default()
            },
        )
        .unwrap();
    assert_eq!(out.status, Status::Exited(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Uncaught Error: EACCES: refused by the egress policy"),
        "{err}"
    );
}

#[test]
fn connecting_at_build_time_fails_the_build() {
    let Some(engine) = js_engine() else { return };
    for (name, script) in [
        (
            "net-toplevel",
            r#"const conn = net.WasiTcpConn.connect("127.0.0.1:80");
               function trigger_http() {}"#,
        ),
        // Caught, or in a Promise nobody awaits: still refused.
        (
            "net-toplevel-async",
            r#"(async () => { try { await net.WasiTcpConn.connectTls("example.com:443"); } catch (e) {} })();
               function trigger_http() {}"#,
        ),
    ] {
        let dir = TempDir::new(name);
        let err = build_function(engine, script.as_bytes(), &limits(&dir))
            .err()
            .unwrap_or_else(|| panic!("{name}: the script was accepted"));
        let msg = err.to_string();
        assert!(msg.contains("build time"), "{name}: {msg}");
        assert!(msg.contains("inside trigger_http or main"), "{name}: {msg}");
    }
}
