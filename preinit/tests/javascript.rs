//! JavaScript functions end to end: the QuickJS engine (scripts/js-engine.sh) pre-initialised
//! with a script by `javascript::build_function`, then loaded and invoked through the data
//! plane's Runner as the worker does (`FNVM_TRIGGER=http` with the request JSON on stdin, or the
//! raw mode).

mod common;

use common::{build, js_engine, limits, Function, TempDir};
use fnvm_dataplane::{Invocation, Outcome, Status};
use fnvm_hostcalls::{CStrings, Stdin};
use fnvm_preinit::javascript::build_function;
use fnvm_preinit::PreinitError;
use serde_json::{json, Value};

fn build_err(name: &str, script: &str) -> Option<PreinitError> {
    let engine = js_engine()?;
    let dir = TempDir::new(name);
    match build_function(engine, script.as_bytes(), &limits(&dir)) {
        Ok(_) => panic!("{name}: the script was accepted"),
        Err(e) => Some(e),
    }
}

impl Function {
    fn invoke(&self, vars: &[(&str, &str)], stdin: &[u8]) -> Outcome {
        let env = CStrings::from_vars(vars.iter().copied()).unwrap();
        self.runner
            .invoke(
                &self.prepared,
                Invocation {
                    env,
                    stdin: Stdin::Bytes(stdin.to_vec()),
                    ..Invocation::default()
                },
            )
            .expect("invoking")
    }

    /// An HTTP trigger invocation: the response document.
    fn http(&self, request: Value) -> Value {
        let out = self.invoke(&[("FNVM_TRIGGER", "http")], request.to_string().as_bytes());
        assert_eq!(
            out.status,
            Status::Exited(0),
            "stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: stdout {:?}", String::from_utf8_lossy(&out.stdout)))
    }
}

fn request(headers: Value, body: &str) -> Value {
    json!({"method": "GET", "uri": "/hello?x=1", "path": "/hello", "query": "x=1",
           "headers": headers, "body": body, "bodyEncoding": "utf8"})
}

const EXAMPLE: &str = r#"function trigger_http(request) {
  return {status: 200, statusText: "OK", headers: {"Content-Type": "text/plain", "X-Powered-By": "CleverCloud"}, body: `User-Agent: ${request.headers["User-Agent"]}`};
}"#;

#[test]
fn the_description_example_answers_with_the_user_agent() {
    let Some(f) = build("example", EXAMPLE) else {
        return;
    };
    let res = f.http(request(json!({"user-agent": "curl/8", "host": "x"}), ""));
    assert_eq!(res["status"], 200);
    assert_eq!(res["statusText"], "OK");
    assert_eq!(res["headers"]["Content-Type"], "text/plain");
    assert_eq!(res["headers"]["X-Powered-By"], "CleverCloud");
    assert_eq!(res["body"], "User-Agent: curl/8");
    assert_eq!(res["bodyEncoding"], "utf8");
}

#[test]
fn the_request_has_every_member() {
    let script = r#"
      function trigger_http(req) {
        console.log("to stderr under the trigger");
        return {body: {method: req.method, uri: req.uri, path: req.path, query: req.query,
          ct: req.headers.get("Content-Type"), has: "ACCEPT" in req.headers,
          keys: Object.keys(req.headers).sort(), body: req.body,
          bin: req.bin === undefined ? null : 0}};
      }"#;
    let Some(f) = build("request", script) else {
        return;
    };
    let out = f.invoke(
        &[("FNVM_TRIGGER", "http")],
        json!({"method": "POST", "uri": "/a?b=1", "path": "/a", "query": "b=1",
               "headers": {"content-type": "text/plain", "accept": "*/*"},
               "body": "héllo", "bodyEncoding": "utf8"})
        .to_string()
        .as_bytes(),
    );
    assert_eq!(out.status, Status::Exited(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "to stderr under the trigger\n"
    );
    let res: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(res["headers"]["Content-Type"], "application/json");
    let body: Value = serde_json::from_str(res["body"].as_str().unwrap()).unwrap();
    assert_eq!(
        body,
        json!({"method": "POST", "uri": "/a?b=1", "path": "/a", "query": "b=1",
               "ct": "text/plain", "has": true, "keys": ["accept", "content-type"],
               "body": "héllo", "bin": null})
    );
}

#[test]
fn binary_bodies_are_uint8arrays_both_ways() {
    let script = r#"
      function trigger_http(req) {
        const b = req.body;
        return {headers: {"content-type": "application/octet-stream"},
                body: new Uint8Array([b instanceof Uint8Array ? 1 : 0, b.length, b[0], 0xff])};
      }"#;
    let Some(f) = build("binary", script) else {
        return;
    };
    // 0x89 0x50 0x4e 0x47
    let res = f.http(
        json!({"method": "PUT", "uri": "/", "path": "/", "query": "",
        "headers": {}, "body": "iVBORw==", "bodyEncoding": "base64"}),
    );
    assert_eq!(res["bodyEncoding"], "base64");
    assert_eq!(res["body"], "AQSJ/w=="); // [1, 4, 0x89, 0xff]
}

#[test]
fn a_promise_returning_handler_is_awaited() {
    let script = r#"
      const later = (v) => new Promise((resolve) => Promise.resolve().then(() => resolve(v)));
      async function trigger_http(req) {
        const who = await later(req.headers["x-name"]);
        return {status: 201, body: `hello ${who}`};
      }"#;
    let Some(f) = build("promise", script) else {
        return;
    };
    let res = f.http(request(json!({"x-name": "async"}), ""));
    assert_eq!(res["status"], 201);
    assert_eq!(res["body"], "hello async");
}

#[test]
fn raw_mode_calls_main_with_stdin() {
    let script = r#"
      console.log("evaluated once");
      function main(input) {
        console.log("log", 1, {a: [1, "x"]});
        return `got ${input.toUpperCase()} from ${process.env.REQUEST_METHOD}`;
      }"#;
    let Some(f) = build("raw-main", script) else {
        return;
    };
    assert_eq!(f.log, "evaluated once\n");
    let out = f.invoke(
        &[("FNVM_TRIGGER", "std"), ("REQUEST_METHOD", "POST")],
        b"body",
    );
    assert_eq!(out.status, Status::Exited(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "log 1 { a: [ 1, \"x\" ] }\ngot BODY from POST"
    );
}

#[test]
fn raw_mode_without_main_calls_trigger_http_with_cgi_variables() {
    let script = r#"function trigger_http(r) {
        return {status: 404, body: `${r.method} ${r.uri} ${r.headers["User-Agent"]} ${r.body}`};
      }"#;
    let Some(f) = build("raw-http", script) else {
        return;
    };
    let out = f.invoke(
        &[
            ("FNVM_TRIGGER", "std"),
            ("REQUEST_METHOD", "PATCH"),
            ("PATH_INFO", "/p"),
            ("QUERY_STRING", "q=2"),
            ("HTTP_USER_AGENT", "curl/8"),
        ],
        b"data",
    );
    assert_eq!(out.status, Status::Exited(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "PATCH /p?q=2 curl/8 data"
    );
}

#[test]
fn a_throwing_handler_exits_1_with_the_stack_on_stderr() {
    let script = r#"
      function check(r) { throw new TypeError(`bad ${r.path}`); }
      function trigger_http(r) { return check(r); }"#;
    let Some(f) = build("throw", script) else {
        return;
    };
    let out = f.invoke(
        &[("FNVM_TRIGGER", "http")],
        request(json!({}), "").to_string().as_bytes(),
    );
    assert_eq!(out.status, Status::Exited(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("TypeError: bad /hello"), "{err}");
    assert!(err.contains("at check (function.js:2"), "{err}");
    assert!(err.contains("at trigger_http (function.js:3"), "{err}");
    assert!(!err.contains("fnvm:prelude"), "{err}");
}

#[test]
fn a_rejected_promise_exits_1() {
    let script = r#"async function main() { await null; throw new Error("later"); }"#;
    let Some(f) = build("reject", script) else {
        return;
    };
    let out = f.invoke(&[("FNVM_TRIGGER", "std")], b"");
    assert_eq!(out.status, Status::Exited(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Error: later") && err.contains("at main"),
        "{err}"
    );
}

#[test]
fn every_invocation_starts_from_the_snapshot() {
    let script = r#"
      let counter = 0;
      const seen = [];
      function trigger_http() {
        counter += 1;
        seen.push(Math.random());
        return {body: JSON.stringify({counter, seen: seen.length, r: seen[0]})};
      }"#;
    let Some(f) = build("isolation", script) else {
        return;
    };
    let mut randoms = Vec::new();
    for _ in 0..5 {
        let res = f.http(request(json!({}), ""));
        let body: Value = serde_json::from_str(res["body"].as_str().unwrap()).unwrap();
        assert_eq!(body["counter"], 1);
        assert_eq!(body["seen"], 1);
        randoms.push(body["r"].as_f64().unwrap());
    }
    randoms.sort_by(f64::total_cmp);
    randoms.dedup();
    assert_eq!(randoms.len(), 5, "Math.random is reseeded per invocation");
}

#[test]
fn a_script_without_a_handler_is_refused() {
    let Some(err) = build_err("nohandler", "var x = 1; function other() {}") else {
        return;
    };
    let msg = err.to_string();
    assert!(
        msg.contains("neither `function trigger_http(request)` nor `function main(input)`"),
        "{msg}"
    );
}

#[test]
fn a_syntax_error_is_refused_with_quickjs_message() {
    let Some(err) = build_err("syntax", "function trigger_http(r) { return {;\n}") else {
        return;
    };
    match &err {
        PreinitError::Failed { stderr, .. } => {
            assert!(stderr.contains("SyntaxError"), "{stderr}");
            assert!(stderr.contains("function.js:1"), "{stderr}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_script_throwing_at_top_level_is_refused() {
    let Some(err) = build_err("toplevel", "throw new RangeError('no config');") else {
        return;
    };
    assert!(err.to_string().contains("RangeError: no config"), "{err}");
}

#[test]
fn invalid_scripts_are_refused_before_running() {
    let Some(engine) = js_engine() else { return };
    let dir = TempDir::new("invalid");
    let err = build_function(engine, b"\xff\xfe", &limits(&dir)).unwrap_err();
    assert!(err.to_string().contains("UTF-8"), "{err}");
}

#[test]
fn clocks_run_and_text_codecs_work() {
    let script = r#"
      const built = Date.now();
      function main() {
        return `${Date.now() >= built} ${new TextDecoder().decode(new TextEncoder().encode("é"))} ${btoa("hi")} ${atob("aGk=")}`;
      }"#;
    let Some(f) = build("clocks", script) else {
        return;
    };
    let out = f.invoke(&[("FNVM_TRIGGER", "std")], b"");
    assert_eq!(
        out.status,
        Status::Exited(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "true é aGk= hi");
}

#[test]
fn runaway_recursion_is_a_trap_and_the_next_invocation_is_fine() {
    let script = r#"function main(i) {
        function f(n) { return n === 0 ? 0 : f(n - 1) + 1; }
        return String(f(Number(i)));
      }"#;
    let Some(f) = build("recursion", script) else {
        return;
    };
    let out = f.invoke(&[("FNVM_TRIGGER", "std")], b"500");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "500");
    let out = f.invoke(&[("FNVM_TRIGGER", "std")], b"10000000");
    assert!(
        matches!(&out.status, Status::Trapped(t) if t.code == fnvm_abi::TrapCode::StackOverflow),
        "{:?}",
        out.status
    );
    let out = f.invoke(&[("FNVM_TRIGGER", "std")], b"3");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "3");
}
