//! Real guests through the worker, deployed with the CLI: `hello` in raw mode and under
//! `?debug`, and the description's `User-Agent` example under `?trigger=http` (with and without
//! `?debug`), from Rust, C, AssemblyScript and Go; then the HTTP trigger's edges with the Rust
//! SDK (binary bodies both ways, the guest's status, a status the worker refuses, a response
//! that is not JSON) and a CGI program in C reading its request variables.

use super::endpoint::{call, header};
use super::*;
use crate::wasi::{guest, Lang, AS, C, GO, RUST};

/// The `User-Agent` every call sends: quotes and a backslash, which the JSON both ways escapes.
const AGENT: &str = r#"agent/1.0 "quoted" \back"#;

fn deploy_guest(server: &Server, token: &str, lang: Lang, name: &str) -> String {
    let wasm = std::fs::read(guest(lang, name)).unwrap();
    server.deploy_function("org-g", token, "{}", &wasm)
}

#[test]
fn hello_and_user_agent_in_every_language_raw_debug_and_http() {
    let server = Server::start("guests-langs", Backends::embedded(), &[]);
    let token = server.token(Some("org-g"));
    for lang in [RUST, C, AS, GO] {
        let hello = format!(
            "{}/{}",
            server.http(),
            deploy_guest(&server, &token, lang, "hello")
        );
        let agent = format!(
            "{}/{}",
            server.http(),
            deploy_guest(&server, &token, lang, "useragent")
        );
        let greeting = format!("Hello {}!\n", lang.name);

        // Raw: stdout is the body.
        let (s, hs, body) = call("GET", &hello, &[], b"");
        assert_eq!(
            (s, String::from_utf8_lossy(&body)),
            (200, greeting.clone().into()),
            "{lang:?}"
        );
        let receipt = header(&hs, "fnvm-invocation").expect("a receipt");
        assert!(receipt.contains("hostcalls="), "{receipt}");

        // ?debug: the report.
        let (s, _, body) = call("GET", &format!("{hello}?debug"), &[], b"");
        assert_eq!(s, 200, "{lang:?}");
        let report: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(report["stdout"], greeting.as_str(), "{lang:?}");
        assert_eq!(report["trigger"], "Std");
        assert!(report["currentPages"].as_u64().unwrap() >= 1, "{report}");
        assert!(report["size"].as_u64().unwrap() > 0, "{report}");
        assert!(
            report["dmesg"]
                .as_str()
                .unwrap()
                .contains("WASI_FD_WRITE(vmctx="),
            "{report}"
        );

        // ?trigger=http: the description's example.
        let (s, hs, body) = call(
            "GET",
            &format!("{agent}?trigger=http"),
            &[("User-Agent", AGENT)],
            b"",
        );
        assert_eq!(s, 200, "{lang:?}: {}", String::from_utf8_lossy(&body));
        assert_eq!(header(&hs, "x-powered-by"), Some("CleverCloud"), "{lang:?}");
        assert_eq!(header(&hs, "content-type"), Some("text/plain"), "{lang:?}");
        assert_eq!(
            String::from_utf8_lossy(&body),
            format!("User-Agent: {AGENT}")
        );

        // ?debug&trigger=http: the report with the structured response in it.
        let (s, _, body) = call(
            "GET",
            &format!("{agent}?debug&trigger=http"),
            &[("User-Agent", AGENT)],
            b"",
        );
        assert_eq!(s, 200, "{lang:?}");
        let report: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(report["trigger"], "Http", "{report}");
        assert_eq!(
            report["responseBody"],
            format!("User-Agent: {AGENT}"),
            "{lang:?}: {report}"
        );

        // Called raw, the guest cannot read a request: in raw mode its stdout is the body, so
        // the caller reads its 400 response document saying to call it with ?trigger=http.
        let (s, _, body) = call("POST", &agent, &[], b"not a request");
        let text = String::from_utf8_lossy(&body);
        assert_eq!(s, 200, "{lang:?}: {text}");
        assert!(
            text.contains("400") && text.contains("trigger=http"),
            "{lang:?}: {text}"
        );
    }
}

#[test]
fn http_trigger_bodies_statuses_malformed_responses_and_cgi() {
    let server = Server::start("guests-http", Backends::embedded(), &[]);
    let token = server.token(Some("org-g"));
    let echo = format!(
        "{}/{}",
        server.http(),
        deploy_guest(&server, &token, RUST, "echo")
    );
    let bad = format!(
        "{}/{}",
        server.http(),
        deploy_guest(&server, &token, RUST, "badresponse")
    );
    let cgi = format!(
        "{}/{}",
        server.http(),
        deploy_guest(&server, &token, C, "cgi")
    );

    // A binary body goes in and comes back unchanged (base64 both ways), with the guest's status.
    let binary: Vec<u8> = (0..100_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
    let (s, hs, body) = call(
        "PUT",
        &format!("{echo}?trigger=http&status=201"),
        &[],
        &binary,
    );
    assert_eq!(s, 201);
    assert_eq!(header(&hs, "x-method"), Some("PUT"));
    assert_eq!(
        header(&hs, "content-type"),
        Some("application/octet-stream")
    );
    assert!(body == binary, "the body came back changed");

    // A status the worker refuses: 502, saying which member was wrong.
    let (s, _, body) = call("GET", &format!("{echo}?trigger=http&status=42"), &[], b"");
    assert_eq!(s, 502);
    let text = String::from_utf8_lossy(&body);
    assert!(
        text.contains("malformed response") && text.contains("`status`"),
        "{text}"
    );

    // A guest that answers something other than a response object: 502.
    let (s, _, body) = call("GET", &format!("{bad}?trigger=http"), &[], b"");
    assert_eq!(s, 502);
    let text = String::from_utf8_lossy(&body);
    assert!(text.contains("not one JSON document"), "{text}");
    // The same guest in raw mode is fine: its stdout is the body.
    let (s, _, body) = call("GET", &bad, &[], b"");
    assert_eq!((s, &body[..]), (200, &b"not json\n"[..]));

    // A CGI program reads the request from its variables and stdin, unchanged.
    let (s, _, body) = call(
        "POST",
        &format!("{cgi}/a/b?x=1&debug_not=2"),
        &[("User-Agent", AGENT)],
        b"the body\n",
    );
    assert_eq!(s, 200);
    assert_eq!(
        String::from_utf8_lossy(&body),
        format!("method=POST path=/a/b query=x=1&debug_not=2 ua={AGENT}\nthe body\n")
    );
}
