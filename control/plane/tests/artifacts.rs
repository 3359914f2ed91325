//! The artifact store against its two kinds of storage: a local directory, and a real
//! S3-compatible server (moto, started by `scripts/services.sh s3`). Every check runs on both;
//! each S3 test works under a prefix of its own, so that tests running in parallel in one bucket
//! never see each other's keys.

#[path = "../../../tests/support/services.rs"]
mod services;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use fnvm_control::artifacts::{ArtifactStore, ArtifactStoreError, S3Options, MULTIPART_THRESHOLD};
use futures::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::ObjectStore;
use sha2::{Digest, Sha256};

/// A directory of its own under cargo's scratch directory for integration tests, emptied first
/// (a run that was interrupted may have left one).
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("artifacts-tests")
        .join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("creating a scratch directory");
    dir
}

/// A key prefix no other test (in this run or an earlier one: moto keeps its objects while it
/// runs) uses.
fn unique_prefix(name: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "tests/{name}-{}-{nanos}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

fn s3_options() -> (String, S3Options) {
    let s3 = services::s3();
    let env = |key: &str| {
        s3.env
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    };
    let options = S3Options {
        endpoint: Some(s3.endpoint.clone()),
        region: env("AWS_REGION"),
        access_key_id: env("AWS_ACCESS_KEY_ID"),
        secret_access_key: env("AWS_SECRET_ACCESS_KEY"),
        session_token: None,
        allow_http: true,
    };
    (s3.bucket, options)
}

/// A store on the S3 server under a prefix of its own, and that prefix.
fn s3_store(name: &str) -> (ArtifactStore, String) {
    let (bucket, options) = s3_options();
    let prefix = unique_prefix(name);
    let url = format!("s3://{bucket}/{prefix}");
    let store = ArtifactStore::s3_with(&url, &options).expect("opening the S3 store");
    (store, prefix)
}

/// Deletes every object under `prefix`: the server outlives the tests and keeps what they
/// store, tens of MiB a run.
async fn remove_s3_prefix(prefix: &str) {
    let (bucket, options) = s3_options();
    let mut builder = AmazonS3Builder::new()
        .with_bucket_name(bucket)
        .with_allow_http(true);
    for (key, value) in [
        (AmazonS3ConfigKey::Endpoint, options.endpoint),
        (AmazonS3ConfigKey::Region, options.region),
        (AmazonS3ConfigKey::AccessKeyId, options.access_key_id),
        (
            AmazonS3ConfigKey::SecretAccessKey,
            options.secret_access_key,
        ),
    ] {
        if let Some(value) = value {
            builder = builder.with_config(key, value);
        }
    }
    let store = builder.build().expect("an S3 client");
    let listed = store
        .list(Some(&object_store::path::Path::from(prefix)))
        .map_ok(|meta| meta.location)
        .boxed();
    let deleted: Vec<_> = store
        .delete_stream(listed)
        .try_collect()
        .await
        .expect("deleting a test's objects");
    drop(deleted);
}

/// `len` pseudo-random bytes (xorshift), different for each seed: content that compresses and
/// repeats nothing, so that a part out of place or missing shows.
fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Writes `data` to a file in `dir` and returns the file and its SHA-256, as the API does with
/// an upload before handing it to the store.
fn blob_file(dir: &Path, name: &str, data: &[u8]) -> (PathBuf, String) {
    let path = dir.join(name);
    std::fs::write(&path, data).expect("writing a blob file");
    (path, sha256_hex(data))
}

/// Defines, for each check (an async fn given a store and a scratch directory for its files), a
/// test on the local store and one on S3.
macro_rules! suite {
    ($($check:ident),* $(,)?) => {
        mod local {
            $(
                #[tokio::test(flavor = "multi_thread")]
                async fn $check() {
                    let dir = super::scratch(concat!("local-", stringify!($check)));
                    let store = super::ArtifactStore::local(&dir.join("store"))
                        .expect("opening the local store");
                    let files = dir.join("files");
                    std::fs::create_dir_all(&files).expect("creating the files directory");
                    super::$check(store, files).await;
                    let _ = std::fs::remove_dir_all(&dir);
                }
            )*
        }
        mod s3 {
            $(
                #[tokio::test(flavor = "multi_thread")]
                async fn $check() {
                    let dir = super::scratch(concat!("s3-", stringify!($check)));
                    let (store, prefix) = super::s3_store(stringify!($check));
                    super::$check(store, dir.clone()).await;
                    super::remove_s3_prefix(&prefix).await;
                    let _ = std::fs::remove_dir_all(&dir);
                }
            )*
        }
    };
}

suite!(
    small_blob_round_trip,
    large_blob_round_trip,
    absent_keys,
    put_blob_is_idempotent,
    delete_blob_removes_its_artifacts,
    invalid_sha256_refused,
    artifacts_keyed_by_compat,
    large_artifact_round_trip,
    failed_put_stores_nothing,
    mismatched_content_stores_nothing,
    readers_never_see_a_partial_blob,
);

async fn small_blob_round_trip(store: ArtifactStore, dir: PathBuf) {
    let data = pseudo_random(100_000, 1);
    let (file, sha) = blob_file(&dir, "small", &data);
    assert!(!store.has_blob(&sha).await.unwrap());
    store.put_blob(&sha, &file).await.unwrap();
    assert!(store.has_blob(&sha).await.unwrap());
    assert_eq!(
        store.get_blob(&sha).await.unwrap().as_deref(),
        Some(&data[..])
    );
    // The empty blob is a blob like any other.
    let (file, sha) = blob_file(&dir, "empty", b"");
    store.put_blob(&sha, &file).await.unwrap();
    assert_eq!(store.get_blob(&sha).await.unwrap(), Some(Bytes::new()));
}

/// Larger than the multipart threshold and not a whole number of parts: several parts and a
/// short last one, reassembled byte for byte.
async fn large_blob_round_trip(store: ArtifactStore, dir: PathBuf) {
    let len = 20 << 20;
    assert!(len as u64 > MULTIPART_THRESHOLD);
    let data = pseudo_random(len + 12_345, 2);
    let (file, sha) = blob_file(&dir, "large", &data);
    store.put_blob(&sha, &file).await.unwrap();
    let got = store.get_blob(&sha).await.unwrap().expect("the blob");
    assert_eq!(got.len(), data.len());
    assert!(got[..] == data[..], "the blob read back differs");
    assert_eq!(sha256_hex(&got), sha);
}

async fn absent_keys(store: ArtifactStore, _dir: PathBuf) {
    let sha = sha256_hex(b"never stored");
    assert!(!store.has_blob(&sha).await.unwrap());
    assert_eq!(store.get_blob(&sha).await.unwrap(), None);
    assert_eq!(store.get_artifact(&sha, 7).await.unwrap(), None);
    // Deleting what is not there is fine.
    store.delete_blob(&sha).await.unwrap();
}

async fn put_blob_is_idempotent(store: ArtifactStore, dir: PathBuf) {
    for (name, len) in [("small", 4096), ("large", 9 << 20)] {
        let data = pseudo_random(len, 3);
        let (file, sha) = blob_file(&dir, name, &data);
        store.put_blob(&sha, &file).await.unwrap();
        store.put_blob(&sha, &file).await.unwrap();
        // Even from another file with the same bytes.
        let (other, _) = blob_file(&dir, &format!("{name}-again"), &data);
        store.put_blob(&sha, &other).await.unwrap();
        assert_eq!(
            store.get_blob(&sha).await.unwrap().as_deref(),
            Some(&data[..])
        );
    }
}

async fn delete_blob_removes_its_artifacts(store: ArtifactStore, dir: PathBuf) {
    let (file, sha) = blob_file(&dir, "doomed", b"(module)");
    let (other_file, other) = blob_file(&dir, "kept", b"(module $kept)");
    store.put_blob(&sha, &file).await.unwrap();
    store.put_blob(&other, &other_file).await.unwrap();
    for compat in [1, 2, u64::MAX] {
        store
            .put_artifact(&sha, compat, Bytes::from(format!("artifact {compat}")))
            .await
            .unwrap();
    }
    store
        .put_artifact(&other, 1, Bytes::from_static(b"other artifact"))
        .await
        .unwrap();

    store.delete_blob(&sha).await.unwrap();
    assert!(!store.has_blob(&sha).await.unwrap());
    for compat in [1, 2, u64::MAX] {
        assert_eq!(store.get_artifact(&sha, compat).await.unwrap(), None);
    }
    // Another blob and its artifact are untouched.
    assert!(store.has_blob(&other).await.unwrap());
    assert_eq!(
        store.get_artifact(&other, 1).await.unwrap().as_deref(),
        Some(&b"other artifact"[..])
    );
    // Again: nothing left is fine.
    store.delete_blob(&sha).await.unwrap();
}

async fn invalid_sha256_refused(store: ArtifactStore, dir: PathBuf) {
    let (file, sha) = blob_file(&dir, "blob", b"bytes");
    let bad = [
        sha.to_uppercase(),
        sha[..63].to_string(),
        format!("{sha}0"),
        format!("../{}", &sha[3..]),
        format!("{}/x", &sha[..62]),
        String::new(),
    ];
    for bad in &bad {
        let refused = |r: Result<(), ArtifactStoreError>| {
            assert!(
                matches!(r, Err(ArtifactStoreError::BadSha256 { .. })),
                "{bad:?}: {r:?}"
            )
        };
        refused(store.put_blob(bad, &file).await);
        refused(store.get_blob(bad).await.map(drop));
        refused(store.has_blob(bad).await.map(drop));
        refused(store.delete_blob(bad).await);
        refused(store.put_artifact(bad, 1, Bytes::new()).await);
        refused(store.get_artifact(bad, 1).await.map(drop));
    }
}

async fn artifacts_keyed_by_compat(store: ArtifactStore, _dir: PathBuf) {
    let sha = sha256_hex(b"(module $compat)");
    store
        .put_artifact(&sha, 0x1234, Bytes::from_static(b"for one machine"))
        .await
        .unwrap();
    store
        .put_artifact(&sha, 0x5678, Bytes::from_static(b"for another"))
        .await
        .unwrap();
    assert_eq!(
        store.get_artifact(&sha, 0x1234).await.unwrap().as_deref(),
        Some(&b"for one machine"[..])
    );
    assert_eq!(
        store.get_artifact(&sha, 0x5678).await.unwrap().as_deref(),
        Some(&b"for another"[..])
    );
    assert_eq!(store.get_artifact(&sha, 0x9abc).await.unwrap(), None);
    // Replacing one leaves the other.
    store
        .put_artifact(&sha, 0x1234, Bytes::from_static(b"recompiled"))
        .await
        .unwrap();
    assert_eq!(
        store.get_artifact(&sha, 0x1234).await.unwrap().as_deref(),
        Some(&b"recompiled"[..])
    );
    assert_eq!(
        store.get_artifact(&sha, 0x5678).await.unwrap().as_deref(),
        Some(&b"for another"[..])
    );
}

/// An artifact above the multipart threshold goes in parts and comes back whole.
async fn large_artifact_round_trip(store: ArtifactStore, _dir: PathBuf) {
    let sha = sha256_hex(b"(module $large)");
    let data = Bytes::from(pseudo_random((17 << 20) + 1, 7));
    store.put_artifact(&sha, 42, data.clone()).await.unwrap();
    let got = store
        .get_artifact(&sha, 42)
        .await
        .unwrap()
        .expect("the artifact");
    assert_eq!(got.len(), data.len());
    assert!(got == data, "the artifact read back differs");
    store.delete_blob(&sha).await.unwrap();
    assert_eq!(store.get_artifact(&sha, 42).await.unwrap(), None);
}

async fn failed_put_stores_nothing(store: ArtifactStore, dir: PathBuf) {
    let sha = sha256_hex(b"missing");
    let missing = dir.join("no-such-file");
    let err = store.put_blob(&sha, &missing).await.unwrap_err();
    assert!(
        matches!(err, ArtifactStoreError::ReadFile { .. }),
        "{err:?}"
    );
    assert!(!store.has_blob(&sha).await.unwrap());
    assert_eq!(store.get_blob(&sha).await.unwrap(), None);
}

/// A file that does not hash to the name it is stored under (it changed after it was hashed)
/// is refused, in one request or in parts, and leaves nothing under the key.
async fn mismatched_content_stores_nothing(store: ArtifactStore, dir: PathBuf) {
    for (name, len) in [("small", 1000), ("large", 17 << 20)] {
        let (file, _) = blob_file(&dir, name, &pseudo_random(len, 4));
        let claimed = sha256_hex(name.as_bytes());
        let err = store.put_blob(&claimed, &file).await.unwrap_err();
        assert!(
            matches!(err, ArtifactStoreError::ContentMismatch { .. }),
            "{name}: {err:?}"
        );
        assert!(!store.has_blob(&claimed).await.unwrap(), "{name}");
        assert_eq!(store.get_blob(&claimed).await.unwrap(), None, "{name}");
    }
}

/// While a large blob is being uploaded in parts, readers find either nothing or all of it.
async fn readers_never_see_a_partial_blob(store: ArtifactStore, dir: PathBuf) {
    let data = Arc::new(pseudo_random(25 << 20, 5));
    let (file, sha) = blob_file(&dir, "watched", &data);
    let writer = {
        let (store, sha) = (store.clone(), sha.clone());
        tokio::spawn(async move { store.put_blob(&sha, &file).await })
    };
    // At least one read starts before the writer is done (`done` is false on the first turn).
    let mut reads = 0;
    loop {
        let done = writer.is_finished();
        match store.get_blob(&sha).await.unwrap() {
            None => {}
            Some(got) => assert!(
                got[..] == data[..],
                "read {} bytes of a {}-byte blob",
                got.len(),
                data.len()
            ),
        }
        reads += 1;
        if done {
            break;
        }
    }
    writer.await.unwrap().unwrap();
    assert!(reads >= 2);
    assert_eq!(
        store.get_blob(&sha).await.unwrap().map(|b| b.len()),
        Some(data.len())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn local_store_keeps_no_staging_files() {
    // After failed and successful uploads, the directory holds exactly the blobs stored: an
    // aborted upload leaves no staging file behind.
    let dir = scratch("local-staging");
    let store = ArtifactStore::local(&dir.join("store")).unwrap();
    let data = pseudo_random(12 << 20, 6);
    let (file, sha) = blob_file(&dir, "blob", &data);
    store
        .put_blob(&sha256_hex(b"other"), &file)
        .await
        .unwrap_err();
    store.put_blob(&sha, &file).await.unwrap();
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir.join("store/blobs")).unwrap() {
        names.push(entry.unwrap().file_name().to_string_lossy().into_owned());
    }
    assert_eq!(names, [sha]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn open_reads_local_urls() {
    let dir = scratch("open-local");
    let sha = sha256_hex(b"via open");
    let (file, _) = blob_file(&dir, "blob", b"via open");
    let url = format!("file://{}", dir.join("by-url").display());
    let store = ArtifactStore::open(&url).unwrap();
    assert!(
        store.describe().starts_with("local:/"),
        "{}",
        store.describe()
    );
    store.put_blob(&sha, &file).await.unwrap();
    assert!(dir.join("by-url/blobs").join(&sha).is_file());
    // A plain path names the same directory.
    let again = ArtifactStore::open(dir.join("by-url").to_str().unwrap()).unwrap();
    assert!(again.has_blob(&sha).await.unwrap());
    for bad in [
        "",
        "ftp://host/x",
        "s3://",
        "s3://bucket/a//b",
        "file://relative",
    ] {
        let err = ArtifactStore::open(bad).unwrap_err();
        assert!(
            matches!(err, ArtifactStoreError::BadUrl { .. }),
            "{bad:?}: {err:?}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn s3_prefixes_keep_stores_apart() {
    let (bucket, options) = s3_options();
    let prefix = unique_prefix("apart");
    let one = ArtifactStore::s3_with(&format!("s3://{bucket}/{prefix}/one"), &options).unwrap();
    let two = ArtifactStore::s3_with(&format!("s3://{bucket}/{prefix}/two"), &options).unwrap();
    let dir = scratch("s3-apart");
    let (file, sha) = blob_file(&dir, "blob", b"in one only");
    one.put_blob(&sha, &file).await.unwrap();
    assert!(one.has_blob(&sha).await.unwrap());
    assert!(!two.has_blob(&sha).await.unwrap());
    assert_eq!(
        one.describe(),
        format!(
            "s3://{bucket}/{prefix}/one at {}",
            options.endpoint.clone().unwrap()
        )
    );
    remove_s3_prefix(&prefix).await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn s3_settings_are_checked_and_never_shown() {
    let secret = "do-not-print-this-secret";
    let options = S3Options {
        endpoint: Some("https://127.0.0.1:9".into()),
        access_key_id: Some("key-id".into()),
        secret_access_key: Some(secret.into()),
        session_token: Some(secret.into()),
        ..S3Options::default()
    };
    // An https endpoint: building the client sets up rustls, which needs its crypto provider
    // (reqwest would panic without one).
    let store = ArtifactStore::s3_with("s3://bucket/prefix", &options).unwrap();
    for shown in [
        store.describe(),
        format!("{store:?}"),
        format!("{options:?}"),
    ] {
        assert!(!shown.contains(secret), "{shown}");
    }
    // Plain http only when allowed.
    let plain = S3Options {
        endpoint: Some("http://127.0.0.1:9".into()),
        ..options.clone()
    };
    let err = ArtifactStore::s3_with("s3://bucket", &plain).unwrap_err();
    assert!(
        matches!(err, ArtifactStoreError::PlainHttp { .. }),
        "{err:?}"
    );
    assert!(!format!("{err} {err:?}").contains(secret));
    let allowed = S3Options {
        allow_http: true,
        ..plain
    };
    ArtifactStore::s3_with("s3://bucket", &allowed).unwrap();
    // s3_with wants an s3:// URL.
    let err = ArtifactStore::s3_with("/tmp/x", &allowed).unwrap_err();
    assert!(matches!(err, ArtifactStoreError::BadUrl { .. }), "{err:?}");
}
