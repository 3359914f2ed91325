//! What the API refuses, and how: tokens, other organisations, fields, media types, upload
//! URLs, sizes, bad modules, and the routes the OpenAPI document describes.

use super::*;

#[test]
fn the_api_refuses_clearly() {
    let server = Server::start(
        "refusals",
        Backends::embedded(),
        &["--max-upload-bytes", "4096"],
    );
    let (a, b) = (server.token(Some("org-a")), server.token(Some("org-b")));
    let op = server.token(None);
    let base = |org: &str| format!("{}/v4/functions/organisations/{org}/functions", server.api);
    let post = |org: &str, tok: Option<&str>, body: &str| {
        request(
            "POST",
            &base(org),
            tok,
            Some("application/json"),
            Some(body.into()),
        )
    };

    // 401 without a token or with an unknown one.
    assert_eq!(request("GET", &base("org-a"), None, None, None).0, 401);
    assert_eq!(
        request("GET", &base("org-a"), Some("fnvm_nope"), None, None).0,
        401
    );
    // 400 naming the field.
    let (s, body) = post("org-a", Some(&a), r#"{"maxMemory": 12}"#);
    assert_eq!(
        (s, body["field"].as_str()),
        (400, Some("maxMemory")),
        "{body}"
    );
    let (s, body) = post("org-a", Some(&a), r#"{"environment": {"1BAD": "x"}}"#);
    assert_eq!(s, 400, "{body}");
    assert_eq!(body["field"], "environment.1BAD");
    let (s, body) = post("org-a", Some(&a), r#"{"nmae": "typo"}"#);
    assert_eq!(s, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("nmae"), "{body}");
    assert_eq!(post("org-a", Some(&a), "not json").0, 400);
    // 415 for a body that is not JSON.
    let (s, _) = request(
        "POST",
        &base("org-a"),
        Some(&a),
        Some("text/plain"),
        Some(b"{}".to_vec()),
    );
    assert_eq!(s, 415);

    let (s, f) = post("org-a", Some(&a), r#"{"name": "mine"}"#);
    assert_eq!(s, 201, "{f}");
    let fid = f["id"].as_str().unwrap();
    let one = format!("{}/{fid}", base("org-a"));
    // Another organisation's token: 404, on its own path and on org A's.
    assert_eq!(request("GET", &one, Some(&b), None, None).0, 404);
    assert_eq!(request("DELETE", &one, Some(&b), None, None).0, 404);
    assert_eq!(
        request(
            "GET",
            &format!("{}/{fid}", base("org-b")),
            Some(&b),
            None,
            None
        )
        .0,
        404
    );
    assert_eq!(request("GET", &base("org-a"), Some(&b), None, None).0, 404);
    let (s, list) = request("GET", &base("org-b"), Some(&b), None, None);
    assert_eq!((s, list), (200, serde_json::json!([])));
    // The operator sees everything, and the deployments by status; others do not.
    assert_eq!(request("GET", &one, Some(&op), None, None).0, 200);
    let by_status = format!("{}/v4/functions/deployments/READY", server.api);
    assert_eq!(request("GET", &by_status, Some(&op), None, None).0, 200);
    assert_eq!(request("GET", &by_status, Some(&a), None, None).0, 404);
    let bad_status = format!("{}/v4/functions/deployments/SLEEPING", server.api);
    assert_eq!(request("GET", &bad_status, Some(&op), None, None).0, 400);

    // Deployments: trigger before upload is 409; the upload URL needs no token but a valid
    // signature; uploads are checked for kind and size.
    let deps = format!("{one}/deployments");
    let (s, d) = request(
        "POST",
        &deps,
        Some(&a),
        Some("application/json"),
        Some(br#"{"platform":"WASM"}"#.to_vec()),
    );
    assert_eq!(s, 201, "{d}");
    assert_eq!(d["status"], "WAITING_FOR_UPLOAD");
    let upload = d["uploadUrl"].as_str().unwrap().to_string();
    let did = d["id"].as_str().unwrap();
    let trigger = format!("{deps}/{did}/trigger");
    assert_eq!(request("POST", &trigger, Some(&a), None, None).0, 409);
    let (s, _) = post("org-a", Some(&a), "{}");
    assert_eq!(s, 201);
    let missing_platform = request(
        "POST",
        &deps,
        Some(&a),
        Some("application/json"),
        Some(b"{}".to_vec()),
    );
    assert_eq!(missing_platform.0, 400);
    assert_eq!(missing_platform.1["field"], "platform");
    let tampered = upload.replace("signature=", "signature=00");
    assert_eq!(
        request(
            "PUT",
            &tampered,
            None,
            Some("application/wasm"),
            Some(hello_wasm())
        )
        .0,
        403
    );
    let unsigned = upload.split('?').next().unwrap().to_string();
    assert_eq!(
        request(
            "PUT",
            &unsigned,
            None,
            Some("application/wasm"),
            Some(hello_wasm())
        )
        .0,
        403
    );
    assert_eq!(
        request(
            "PUT",
            &upload,
            None,
            Some("application/wasm"),
            Some(b"\x7fELF....".to_vec())
        )
        .0,
        422
    );
    assert_eq!(
        request(
            "PUT",
            &upload,
            None,
            Some("multipart/form-data; boundary=x"),
            Some(hello_wasm())
        )
        .0,
        415
    );
    let mut big = hello_wasm();
    big.resize(5000, 0);
    assert_eq!(
        request("PUT", &upload, None, Some("application/wasm"), Some(big)).0,
        413
    );
    // Nothing of the refused uploads was kept.
    let (_, d2) = request("GET", &format!("{deps}/{did}"), Some(&a), None, None);
    assert!(d2["releaseId"].is_null(), "{d2}");
    let (_, releases) = request("GET", &format!("{one}/releases"), Some(&a), None, None);
    assert_eq!(releases, serde_json::json!([]));
    // A good upload, then trigger, then the same trigger again is 409.
    let (s, up) = request(
        "PUT",
        &upload,
        None,
        Some("application/wasm"),
        Some(hello_wasm()),
    );
    assert_eq!(s, 200, "{up}");
    assert_eq!(request("POST", &trigger, Some(&a), None, None).0, 200);
    assert_eq!(request("POST", &trigger, Some(&a), None, None).0, 409);
    // The same bytes under another platform: a conflict, not a silent reinterpretation.
    let (_, d3) = request(
        "POST",
        &deps,
        Some(&a),
        Some("application/json"),
        Some(br#"{"platform":"RUST"}"#.to_vec()),
    );
    let (s, body) = request(
        "PUT",
        d3["uploadUrl"].as_str().unwrap(),
        None,
        Some("text/plain"),
        Some(hello_wasm()),
    );
    assert_eq!(s, 409, "{body}");
    assert!(body["error"].as_str().unwrap().contains("WASM"), "{body}");
    // Someone else's deployment path: 404.
    assert_eq!(
        request("GET", &format!("{deps}/{did}"), Some(&b), None, None).0,
        404
    );
    // An invalid module that starts like one: ERROR with the compiler's reason.
    let did = upload_and_trigger(
        &deps,
        &a,
        "WASM",
        "application/wasm",
        b"\0asm\x01\0\0\0\x01\xff".to_vec(),
    )
    .expect("creating, uploading and triggering a deployment");
    let d = wait_settled(&format!("{deps}/{did}"), &a);
    assert_eq!(d["status"], "ERROR", "{d}");
    let reason = d["errorReason"].as_str().unwrap();
    assert!(reason.contains("invalid module"), "{d}");
    // Not where the server keeps its files.
    assert!(!reason.contains(server.data_dir.to_str().unwrap()), "{d}");
    // A source, on a server without toolchains (none in its data directory): ERROR naming the
    // missing toolchain and how to install it.
    let did = upload_and_trigger(&deps, &a, "RUST", "text/plain", b"fn main() {}".to_vec())
        .expect("creating, uploading and triggering a deployment");
    let d = wait_settled(&format!("{deps}/{did}"), &a);
    assert_eq!(d["status"], "ERROR", "{d}");
    let reason = d["errorReason"].as_str().unwrap();
    assert!(reason.contains("toolchain rust is missing"), "{d}");
    assert!(reason.contains("scripts/toolchains.sh"), "{d}");

    // The OpenAPI document describes the routes; /healthz answers.
    let (s, doc) = request(
        "GET",
        &format!("{}/openapi.json", server.api),
        None,
        None,
        None,
    );
    assert_eq!(s, 200);
    for path in [
        "/v4/functions/organisations/{ownerId}/functions",
        "/v4/functions/organisations/{ownerId}/functions/{functionId}/deployments/{deploymentId}/trigger",
        "/v4/functions/uploads/{deploymentId}",
        "/v4/functions/deployments/{status}",
        "/v4/fleet/workers",
        "/v4/fleet/scheduler",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} missing from openapi.json");
    }
    assert_eq!(
        request("GET", &format!("{}/nowhere", server.api), None, None, None).0,
        404
    );
}
