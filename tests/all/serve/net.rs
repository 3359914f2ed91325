//! Outbound connections end to end: a function deployed through the platform (the `fetch`
//! guest, in Rust with `fnvm_guest::net` and in C with `fnvm_net.h`) fetches a page from a local HTTPS server (a test CA made
//! with rcgen, trusted through `--egress-ca-file`) and returns it over HTTP; plain TCP the
//! same; loopback is refused without the operator's `--egress-allow`, and a Function's own
//! allowlist narrows what the server allows; a real PostgreSQL client (the rust-postgres
//! project's protocol crate, SCRAM-SHA-256) in a function queries the Debian PostgreSQL.

use super::endpoint::call;
use super::*;
use crate::wasi::{guest, Lang, C, RUST, RUST_NET};
use std::io::{Read, Write};
use std::sync::Arc;

/// A one-shot-per-connection HTTP/1.1 server answering `body` to every request, over TLS
/// when `tls` is given; its port.
fn serve_page(body: &'static str, tls: Option<Arc<rustls::ServerConfig>>) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut tcp) = stream else { continue };
            let tls = tls.clone();
            std::thread::spawn(move || {
                let answer = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                // Reads the request head, answers, closes.
                let exchange = |s: &mut dyn ReadWrite| {
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") {
                        match s.read(&mut byte) {
                            Ok(1) => head.push(byte[0]),
                            _ => return,
                        }
                    }
                    let _ = s.write_all(answer.as_bytes());
                    let _ = s.flush();
                };
                match tls {
                    Some(config) => {
                        let Ok(conn) = rustls::ServerConnection::new(config) else {
                            return;
                        };
                        let mut s = rustls::StreamOwned::new(conn, tcp);
                        exchange(&mut s);
                        s.conn.send_close_notify();
                        let _ = s.flush();
                    }
                    None => exchange(&mut tcp),
                }
            });
        }
    });
    port
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

/// A CA, and a server configuration whose certificate it signed for `localhost`; the CA's PEM.
fn tls_server() -> (Arc<rustls::ServerConfig>, String) {
    let cert = super::TestCert::localhost();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.leaf_der.into()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(cert.key_der.into()),
        )
        .unwrap();
    (Arc::new(config), cert.ca_pem)
}

/// Deploys the Rust `fetch` guest with its environment, and calls it once.
fn fetch(server: &Server, token: &str, settings: &str) -> (u16, String) {
    fetch_in(RUST, server, token, settings)
}

/// The same with the `fetch` guest of `lang`.
fn fetch_in(lang: Lang, server: &Server, token: &str, settings: &str) -> (u16, String) {
    let wasm = std::fs::read(guest(lang, "fetch")).unwrap();
    let fid = server.deploy_function("org-n", token, settings, &wasm);
    let (status, _, body) = call("GET", &format!("{}/{fid}", server.http()), &[], b"");
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[test]
fn a_function_fetches_a_page_over_tls_and_returns_it() {
    let (tls, ca_pem) = tls_server();
    let https = serve_page("a page over TLS", Some(tls));
    let http = serve_page("a page over TCP", None);
    let ca_file = scratch_dir("net-ca").join("ca.pem");
    std::fs::create_dir_all(ca_file.parent().unwrap()).unwrap();
    std::fs::write(&ca_file, ca_pem).unwrap();
    let server = Server::start(
        "net-allowed",
        Backends::embedded(),
        &[
            "--egress-allow",
            "127.0.0.0/8",
            "--egress-ca-file",
            ca_file.to_str().unwrap(),
        ],
    );
    let token = server.token(Some("org-n"));
    let env = |address: String, tls: bool| {
        let mut e = format!(r#""FETCH_ADDRESS": "{address}""#);
        if tls {
            e.push_str(r#", "FETCH_TLS_NAME": "localhost""#);
        }
        format!(r#"{{"timeoutMs": 10000, "environment": {{{e}}}}}"#)
    };
    assert_eq!(
        fetch(&server, &token, &env(format!("127.0.0.1:{https}"), true)),
        (200, "a page over TLS".to_string())
    );
    assert_eq!(
        fetch(&server, &token, &env(format!("127.0.0.1:{http}"), false)),
        (200, "a page over TCP".to_string())
    );
    // The same from C, with fnvm_net.h and plain read()/write().
    assert_eq!(
        fetch_in(C, &server, &token, &env(format!("127.0.0.1:{https}"), true)),
        (200, "a page over TLS".to_string())
    );
    assert_eq!(
        fetch_in(C, &server, &token, &env(format!("127.0.0.1:{http}"), false)),
        (200, "a page over TCP".to_string())
    );
    // A name the host resolves, allowed by the server's rule on its address.
    assert_eq!(
        fetch(&server, &token, &env(format!("localhost:{https}"), true)),
        (200, "a page over TLS".to_string())
    );
    // The wrong name for the certificate: the handshake's verification fails.
    let wrong = format!(
        r#"{{"environment": {{"FETCH_ADDRESS": "127.0.0.1:{https}", "FETCH_TLS_NAME": "example.com"}}}}"#
    );
    let (status, body) = fetch(&server, &token, &wrong);
    assert_eq!(status, 500, "{body}");
    assert!(body.starts_with("error: "), "{body}");
    // A Function's allowlist narrows the server's: another port is refused.
    let narrowed = format!(
        r#"{{"egressAllow": ["127.0.0.1:{http}"], "environment": {{"FETCH_ADDRESS": "127.0.0.1:{https}", "FETCH_TLS_NAME": "localhost"}}}}"#
    );
    let (status, body) = fetch(&server, &token, &narrowed);
    assert_eq!(status, 500, "{body}");
    assert!(body.starts_with("error: "), "{body}");
}

#[test]
fn loopback_is_refused_without_the_operators_allow() {
    let http = serve_page("secret", None);
    let server = Server::start("net-default", Backends::embedded(), &[]);
    let token = server.token(Some("org-n"));
    for address in [
        format!("127.0.0.1:{http}"),
        format!("localhost:{http}"),
        format!("[::ffff:127.0.0.1]:{http}"),
        "169.254.169.254:80".to_string(),
    ] {
        let settings = format!(r#"{{"environment": {{"FETCH_ADDRESS": "{address}"}}}}"#);
        let (status, body) = fetch(&server, &token, &settings);
        assert_eq!(status, 500, "{address}: {body}");
        assert!(body.starts_with("error: "), "{address}: {body}");
        assert!(!body.contains("secret"), "{address}: {body}");
    }
    // A Function cannot open what the server refuses by listing it itself.
    let settings = format!(
        r#"{{"egressAllow": ["127.0.0.0/8"], "environment": {{"FETCH_ADDRESS": "127.0.0.1:{http}"}}}}"#
    );
    let (status, body) = fetch(&server, &token, &settings);
    assert_eq!(status, 500, "{body}");
    // A rule that does not parse is refused by the API.
    let (s, body) = request(
        "POST",
        &format!("{}/v4/functions/organisations/org-n/functions", server.api),
        Some(&token),
        Some("application/json"),
        Some(br#"{"egressAllow": ["10.0.0.0/99"]}"#.to_vec()),
    );
    assert_eq!(s, 400, "{body}");
    assert_eq!(body["field"], "egressAllow[0]", "{body}");
}

#[test]
fn a_function_queries_postgresql_with_a_real_client() {
    // postgres://user:password@127.0.0.1:port/database
    let url = super::services::postgres_url();
    let rest = url.strip_prefix("postgres://").expect("a postgres:// URL");
    let (credentials, rest) = rest.split_once('@').expect("credentials");
    let (user, password) = credentials.split_once(':').expect("a password");
    let (address, database) = rest.split_once('/').expect("a database");
    let database = database.split('?').next().unwrap_or(database);
    let server = Server::start(
        "net-postgres",
        Backends::embedded(),
        &["--egress-allow", "127.0.0.0/8"],
    );
    let token = server.token(Some("org-n"));
    let wasm = std::fs::read(guest(RUST_NET, "pgquery")).unwrap();
    let settings = |query: &str, password: &str| {
        serde_json::json!({
            "timeoutMs": 10000,
            "environment": {
                "PG_ADDRESS": address, "PG_USER": user, "PG_PASSWORD": password,
                "PG_DATABASE": database, "PG_QUERY": query,
            }
        })
        .to_string()
    };
    let run = |settings: String| {
        let fid = server.deploy_function("org-n", &token, &settings, &wasm);
        let (status, _, body) = call("GET", &format!("{}/{fid}", server.http()), &[], b"");
        (status, String::from_utf8_lossy(&body).into_owned())
    };
    assert_eq!(
        run(settings(
            "SELECT 1 + 1, 'fnvm', NULL UNION ALL SELECT 3, current_user, 'x'",
            password
        )),
        (200, format!("2|fnvm|NULL\n3|{user}|x\n"))
    );
    // A wrong password: the server's refusal, through SCRAM.
    let (status, body) = run(settings("SELECT 1", "not-the-password"));
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("password authentication failed"), "{body}");
}
