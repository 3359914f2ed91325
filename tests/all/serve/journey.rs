//! The whole user journey through the CLI, on every combination of metadata store (SQLite,
//! PostgreSQL) and artifact store (local, S3).

use super::*;

/// The whole user journey through the CLI.
fn journey(name: &str, backends: Backends) {
    let local = backends.s3.is_none();
    let server = Server::start(
        name,
        backends,
        &["--gc-interval-secs", "1", "--gc-grace-secs", "0"],
    );
    let token = server.token(Some("org-a"));
    let cli = |args: &[&str]| server.cli("org-a", &token, args);
    let dir = scratch_dir(&format!("{name}-files"));
    let wasm = dir.join("hello.wasm");
    std::fs::write(&wasm, hello_wasm()).unwrap();

    // create prints the Function as JSON, as the product description shows.
    let f = json(&ok(cli(&[
        "create",
        "--name",
        "hello",
        "--max-memory",
        "1048576",
    ])));
    let fid = f["id"].as_str().unwrap().to_string();
    assert_eq!(f["ownerId"], "org-a");
    assert_eq!(f["maxMemory"], 1_048_576);
    assert_eq!(f["maxInstances"], 1);
    assert_eq!(f["timeoutMs"], 30_000);

    let f = json(&ok(cli(&[
        "set-env",
        "FOO=BAR,HELLO=WORLD",
        &fid,
        "--json",
    ])));
    assert_eq!(f["environment"]["FOO"], "BAR");
    assert_eq!(f["environment"]["HELLO"], "WORLD");
    assert_eq!(f["name"], "hello", "set-env keeps the other fields");

    // deploy: create, upload, trigger, follow; prints the URL.
    let t = Instant::now();
    let url = ok(cli(&["deploy", wasm.to_str().unwrap(), &fid]));
    let took = t.elapsed();
    assert!(url.trim().ends_with(&format!("/{fid}")), "{url}");
    eprintln!("{name}: upload to READY in {took:?}");

    let ds = json(&ok(cli(&["deploy", "list", &fid, "--json"])));
    let ds = ds.as_array().unwrap();
    assert_eq!(ds.len(), 1);
    assert_eq!(ds[0]["status"], "READY");
    assert_eq!(ds[0]["platform"], "WASM");
    assert_eq!(ds[0]["url"].as_str().unwrap(), url.trim());
    let table = ok(cli(&["deploy", "list", &fid]));
    assert!(
        table.contains("READY") && table.contains("STATUS"),
        "{table}"
    );

    let rs = json(&ok(cli(&["releases", &fid, "--json"])));
    let rs = rs.as_array().unwrap();
    assert_eq!(rs.len(), 1);
    let rid = rs[0]["id"].as_str().unwrap().to_string();
    assert_eq!(rs[0]["size"], hello_wasm().len());
    assert_eq!(rs[0]["sha256"].as_str().unwrap().len(), 64);

    // The same bytes again: the same release.
    ok(cli(&["deploy", wasm.to_str().unwrap(), "wasm", &fid]));
    let rs = json(&ok(cli(&["releases", &fid, "--json"])));
    assert_eq!(rs.as_array().unwrap().len(), 1);

    // Redeploy the release (a rollback): no upload, straight to READY.
    let out = json(&ok(cli(&["deploy", "--release", &rid, &fid, "--json"])));
    assert_eq!(out["status"], "READY");
    assert_eq!(out["releaseId"], rid.as_str());
    let ds = json(&ok(cli(&["deploy", "list", &fid, "--json"])));
    assert_eq!(ds.as_array().unwrap().len(), 3);

    let list = ok(cli(&["list"]));
    assert!(list.contains(&fid) && list.contains("hello"), "{list}");
    let one = ok(cli(&["get", &fid]));
    assert!(one.contains("FOO=BAR"), "{one}");

    // A deployment deleted, then the Function.
    let did = ds[0]["id"].as_str().unwrap();
    ok(cli(&["deploy", "delete", &fid, did]));
    let ds = json(&ok(cli(&["deploy", "list", &fid, "--json"])));
    assert_eq!(ds.as_array().unwrap().len(), 2);
    let sha = rs.as_array().unwrap()[0]["sha256"]
        .as_str()
        .unwrap()
        .to_string();
    let blob = server.data_dir.join("artifacts/blobs").join(&sha);
    if local {
        assert!(blob.exists(), "{}", blob.display());
    }
    // The worker's metrics have the Function's series while it is served...
    let metrics = || {
        let (_, _, text) =
            super::endpoint::call("GET", &format!("{}/metrics", server.http()), &[], b"");
        String::from_utf8(text).unwrap()
    };
    let (status, _, _) =
        super::endpoint::call("GET", &format!("{}/{fid}", server.http()), &[], b"");
    assert_eq!(status, 200);
    let series = format!("function=\"{fid}\"");
    assert!(metrics().contains(&series));
    ok(cli(&["delete", &fid]));
    // ... and drops them once it is deleted (a long-lived worker must not keep every
    // Function it ever served).
    let start = Instant::now();
    while metrics().contains(&series) {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the deleted Function's series stay:\n{}",
            metrics()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    if local {
        // Nobody references the code any more: the collector deletes it.
        let start = Instant::now();
        while blob.exists() {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "{} was not collected",
                blob.display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let gone = cli(&["get", &fid]);
    assert!(!gone.status.success());
    assert!(stderr(&gone).contains("404"), "{}", stderr(&gone));
    let list = json(&ok(cli(&["list", "--json"])));
    assert_eq!(list.as_array().unwrap().len(), 0);
}

#[test]
fn journey_on_sqlite_and_a_local_store() {
    journey("sqlite-local", Backends::embedded());
}

#[test]
fn journey_on_postgresql_and_s3() {
    journey("pg-s3", Backends::with(true, true, "pgs3"));
}

#[test]
fn journey_on_postgresql_and_a_local_store() {
    journey("pg-local", Backends::with(true, false, "pglocal"));
}

#[test]
fn journey_on_sqlite_and_s3() {
    journey("sqlite-s3", Backends::with(false, true, "sqlites3"));
}
