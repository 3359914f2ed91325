//! Outbound connections (fnvm's `host_tcp_connect` / `host_tls_connect` through
//! `fnvm_guest::net`): fetches `FETCH_PATH` (default `/`) from `FETCH_ADDRESS` (`host:port`)
//! with HTTP/1.1, over TLS verified as `FETCH_TLS_NAME` when that is set, and prints the
//! response's body; on failure prints `error: ...` with the errno's kind and exits 1.
use fnvm_guest::net::{TcpStream, TlsStream};
use std::io::{Read, Write};

fn fetch(stream: &mut (impl Read + Write), host: &str, path: &str) -> std::io::Result<Vec<u8>> {
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    Ok(response)
}

fn main() {
    let address = std::env::var("FETCH_ADDRESS").unwrap_or_default();
    let path = std::env::var("FETCH_PATH").unwrap_or_else(|_| "/".into());
    let tls = std::env::var("FETCH_TLS_NAME").ok();
    let host = tls.clone().unwrap_or_else(|| address.clone());
    let result = match &tls {
        Some(name) => {
            TlsStream::connect(&address, name).and_then(|mut s| fetch(&mut s, &host, &path))
        }
        None => TcpStream::connect(&address).and_then(|mut s| fetch(&mut s, &host, &path)),
    };
    match result {
        Ok(response) => {
            let body = match response.windows(4).position(|w| w == b"\r\n\r\n") {
                Some(i) => &response[i + 4..],
                None => &response[..],
            };
            std::io::stdout().write_all(body).unwrap_or(());
        }
        Err(e) => {
            println!("error: {:?}: {e}", e.kind());
            std::process::exit(1);
        }
    }
}
