//! Tests of the store that need no PostgreSQL server, or its insides: the settings of every
//! pooled SQLite connection (durability, waiting writers), URL handling and the redaction of
//! passwords, and that acknowledged SQLite writes survive the writer being killed. The
//! behaviour of the store on both databases is tested in `tests/store.rs`.

use super::{sqlite_url, MetadataStore, StoreError, SQLITE_BUSY_TIMEOUT, SQLITE_CONNECTIONS};
use crate::model::{new_id, FunctionSpec};
use std::collections::HashSet;
use std::path::PathBuf;

/// A fresh directory, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let dir = std::env::temp_dir().join(format!("fnvm-store-unit-{}", new_id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_sqlite_connection_is_durable_and_waits_for_writers() {
    let dir = TempDir::new();
    let store = MetadataStore::open_sqlite(&dir.0.join("meta.db"))
        .await
        .unwrap();
    // Hold every connection of the pool at once, so that each one is checked.
    let mut conns = Vec::new();
    for _ in 0..SQLITE_CONNECTIONS {
        conns.push(store.pool.acquire().await.unwrap());
    }
    for conn in &mut conns {
        let journal: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&mut **conn)
            .await
            .unwrap();
        assert_eq!(journal.to_ascii_lowercase(), "wal");
        let busy = SQLITE_BUSY_TIMEOUT.as_millis() as i64;
        // synchronous = 2 is FULL.
        for (name, want) in [
            ("synchronous", 2),
            ("foreign_keys", 1),
            ("busy_timeout", busy),
        ] {
            let sql = sqlx::AssertSqlSafe(format!("PRAGMA {name}"));
            let got: i64 = sqlx::query_scalar(sql)
                .fetch_one(&mut **conn)
                .await
                .unwrap();
            assert_eq!(got, want, "{name}");
        }
    }
    drop(conns);
    store.close().await;
}

#[test]
fn sqlite_urls_are_absolute_create_missing_files_and_refuse_memory() {
    let url = |u| sqlite_url(u, || Ok("/w d".into())).unwrap();
    assert_eq!(url("sqlite:///a/b.db"), "sqlite:///a/b.db?mode=rwc");
    assert_eq!(url("sqlite:/a/b.db"), "sqlite:///a/b.db?mode=rwc");
    assert_eq!(
        url("sqlite://b.db?cache=private"),
        "sqlite:///w%20d/b.db?cache=private&mode=rwc"
    );
    assert_eq!(
        url("sqlite:../b.db?mode=ro"),
        "sqlite:///w%20d/../b.db?mode=ro"
    );
    assert!(sqlite_url("sqlite::memory:", || unreachable!()).is_err());
    assert!(sqlite_url("sqlite://?mode=memory", || unreachable!()).is_err());
    assert!(sqlite_url("sqlite://x.db?mode=memory", || unreachable!()).is_err());
}

#[tokio::test]
async fn odd_paths_and_relative_urls_open() {
    let dir = TempDir::new();
    let odd = dir.0.join("a dir?#%");
    std::fs::create_dir_all(&odd).unwrap();
    let store = MetadataStore::open_sqlite(&odd.join("m é.db"))
        .await
        .unwrap();
    store.add_token("org", "h", None).await.unwrap();
    store.close().await;
    assert!(odd.join("m é.db").exists());
    // sqlite://rel/path is relative to the working directory: reached here through `..`s from
    // it, which every test process shares.
    let cwd = std::env::current_dir().unwrap();
    let up = "../".repeat(cwd.components().count());
    let target = dir.0.join("rel.db");
    let target = target.to_str().unwrap().trim_start_matches('/');
    let rel = format!("sqlite://{up}{target}");
    MetadataStore::connect(&rel).await.unwrap().close().await;
    assert!(dir.0.join("rel.db").exists());
}

#[tokio::test]
async fn bad_urls_are_refused_without_their_password() {
    let fails = |r: Result<MetadataStore, StoreError>| r.unwrap_err();
    for url in [
        "mysql://u:hunter2@h/db",
        "sqlite::memory:",
        "postgres://u:hunter2@[::1/db",
    ] {
        let e = fails(MetadataStore::connect(url).await);
        assert!(matches!(e, StoreError::InvalidUrl { .. }), "{url}: {e}");
        assert!(!format!("{e} {e:?}").contains("hunter2"), "{e:?}");
    }
    // A name that never resolves (a refused connection is retried for seconds, in case the
    // server is starting).
    let e = fails(MetadataStore::connect("postgres://u:hunter2@fnvm.invalid/db").await);
    assert!(matches!(e, StoreError::Connect { .. }), "{e}");
    assert!(e.is_transient(), "{e:?}");
    assert!(!format!("{e} {e:?}").contains("hunter2"), "{e:?}");
    let dir = TempDir::new();
    let e = fails(MetadataStore::open_sqlite(&dir.0.join("missing-dir/meta.db")).await);
    assert!(matches!(e, StoreError::Connect { .. }), "{e}");
}

/// With `FNVM_STORE_KILL_CHILD=<file>`, the child of [`sqlite_writes_survive_kill_9`]: writes
/// functions forever, printing each id once the store has acknowledged it.
#[tokio::test]
async fn kill_9_child() {
    let Some(path) = std::env::var_os("FNVM_STORE_KILL_CHILD") else {
        return;
    };
    let store = MetadataStore::open_sqlite(path.as_ref()).await.unwrap();
    let spec = FunctionSpec::default();
    loop {
        let f = store.create_function("org", &spec).await.unwrap();
        println!("acked {}", f.id);
    }
}

#[test]
fn sqlite_writes_survive_kill_9() {
    use std::io::BufRead;
    let dir = TempDir::new();
    let path = dir.0.join("meta.db");
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["store::tests::kill_9_child", "--exact", "--nocapture"])
        .env("FNVM_STORE_KILL_CHILD", &path)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut acked = Vec::new();
    for line in std::io::BufReader::new(child.stdout.take().unwrap()).lines() {
        if let Some(id) = line.unwrap().strip_prefix("acked ") {
            acked.push(id.to_string());
            if acked.len() == 200 {
                break;
            }
        }
    }
    child.kill().unwrap(); // SIGKILL, while it writes
    child.wait().unwrap();
    assert_eq!(acked.len(), 200);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = MetadataStore::open_sqlite(&path).await.unwrap();
        let functions = store.list_functions("org").await.unwrap();
        let stored: HashSet<String> = functions.into_iter().map(|f| f.id).collect();
        for id in &acked {
            assert!(stored.contains(id), "acknowledged function {id} was lost");
        }
    });
}
