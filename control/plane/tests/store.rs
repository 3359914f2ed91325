//! Tests of the metadata store (`fnvm_control::store`): every test runs twice, against SQLite (a
//! fresh file in a fresh directory) and against PostgreSQL (a fresh database, created through
//! the role of the server `scripts/services.sh postgres` starts and dropped when the test ends;
//! databases left by killed runs are dropped by a later run after an hour). Each checks
//! behaviour that a wrong store would fail: owner scoping, all-or-nothing writes, cascades, and
//! the races the store promises to settle (concurrent uploads, transitions, claims, secrets,
//! first connections).

#[path = "../../../tests/support/services.rs"]
mod services;

use fnvm_control::model::{
    Deployment, DeploymentSpec, DeploymentStatus as S, Function, FunctionSpec, Platform, Release,
    Timestamp,
};
use fnvm_control::store::{Backend, MetadataStore, StoreError};
use sqlx::Connection;
use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::time::Duration;

type R = Result<(), StoreError>;

/// Test databases are named `fnvm_t_<creation ms>_<random>`, so that stale ones can be found.
const PG_PREFIX: &str = "fnvm_t_";
/// Test databases older than this are leftovers of killed runs.
const PG_STALE_MS: i64 = 3_600_000;

/// A fresh database for one test, removed when dropped (even when the test fails).
struct TestDb {
    url: String,
    backend: Backend,
    cleanup: Cleanup,
}

enum Cleanup {
    Dir(PathBuf),
    Database { admin_url: String, name: String },
}

fn unique() -> String {
    fnvm_control::model::new_id().replace('-', "")[..16].to_string()
}

impl TestDb {
    async fn sqlite() -> TestDb {
        let dir = std::env::temp_dir().join(format!("fnvm-store-test-{}", unique()));
        std::fs::create_dir_all(&dir).unwrap();
        TestDb {
            url: format!("sqlite://{}", dir.join("meta.db").display()),
            backend: Backend::Sqlite,
            cleanup: Cleanup::Dir(dir),
        }
    }

    async fn postgres() -> TestDb {
        sqlx::any::install_default_drivers();
        let admin_url = tokio::task::spawn_blocking(services::postgres_url)
            .await
            .unwrap();
        let mut admin = sqlx::AnyConnection::connect(&admin_url).await.unwrap();
        static SWEPT: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
        SWEPT
            .get_or_init(|| async {
                let names: Vec<String> =
                    sqlx::query_scalar("SELECT datname::text FROM pg_database")
                        .fetch_all(&mut admin)
                        .await
                        .unwrap();
                for name in names {
                    let born = name
                        .strip_prefix(PG_PREFIX)
                        .and_then(|r| r.split('_').next());
                    let born = born.and_then(|b| b.parse::<i64>().ok());
                    if born.is_some_and(|b| Timestamp::now().0 - b > PG_STALE_MS) {
                        let drop = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                        let _ = sqlx::query(sqlx::AssertSqlSafe(drop))
                            .execute(&mut admin)
                            .await;
                    }
                }
            })
            .await;
        let name = format!("{PG_PREFIX}{}_{}", Timestamp::now().0, unique());
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .unwrap();
        let (base, _) = admin_url.rsplit_once('/').unwrap();
        TestDb {
            url: format!("{base}/{name}"),
            backend: Backend::Postgres,
            cleanup: Cleanup::Database { admin_url, name },
        }
    }

    async fn store(&self) -> MetadataStore {
        let store = MetadataStore::connect(&self.url).await.unwrap();
        assert_eq!(store.backend(), self.backend);
        store
    }

    /// A connection beside the store, to count or damage what it stored.
    async fn raw(&self) -> sqlx::AnyConnection {
        sqlx::any::install_default_drivers();
        sqlx::AnyConnection::connect(&self.url).await.unwrap()
    }

    async fn count(&self, table: &str) -> i64 {
        let sql = format!("SELECT COUNT(*) FROM {table}");
        let q = sqlx::query_scalar(sqlx::AssertSqlSafe(sql));
        q.fetch_one(&mut self.raw().await).await.unwrap()
    }

    async fn exec(&self, sql: &'static str) {
        sqlx::query(sql)
            .execute(&mut self.raw().await)
            .await
            .unwrap();
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        match &self.cleanup {
            Cleanup::Dir(dir) => {
                let _ = std::fs::remove_dir_all(dir);
            }
            Cleanup::Database { admin_url, name } => {
                // Drop cannot await: a thread of its own with a runtime of its own.
                let (admin_url, name) = (admin_url.clone(), name.clone());
                let dropped = std::thread::spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build();
                    rt.unwrap().block_on(async {
                        let mut admin = sqlx::AnyConnection::connect(&admin_url).await?;
                        let drop = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                        sqlx::query(sqlx::AssertSqlSafe(drop))
                            .execute(&mut admin)
                            .await?;
                        Ok::<_, sqlx::Error>(())
                    })
                })
                .join();
                if let Ok(Err(e)) = dropped {
                    eprintln!("could not drop test database: {e}");
                }
            }
        }
    }
}

/// Runs each test against both databases.
macro_rules! both {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                super::$name(&super::TestDb::sqlite().await).await.unwrap()
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                super::$name(&super::TestDb::postgres().await).await.unwrap()
            }
        }
    )*};
}

#[path = "store/fleet.rs"]
mod fleet;
#[path = "store/queue.rs"]
mod queue;
#[path = "store/triggers.rs"]
mod triggers;

both!(
    functions_are_scoped_by_owner,
    replace_is_all_or_nothing,
    deleting_a_function_deletes_its_deployments_and_releases,
    releases_are_content_addressed,
    concurrent_uploads_of_the_same_bytes_make_one_release,
    deployments_are_scoped_by_owner,
    a_release_is_set_only_while_waiting_for_upload,
    transitions_are_compare_and_set,
    builds_keep_their_artifact_key_and_log,
    concurrent_claimers_never_share_a_deployment,
    leases_lapse_and_are_taken_over,
    tokens_belong_to_one_organisation,
    racing_processes_share_one_secret,
    garbage_is_blobs_no_release_references,
    migrations_apply_once,
    concurrent_first_connections_migrate_once,
    what_is_written_survives_a_reconnection,
    unreadable_stored_values_are_errors,
    a_newer_schema_is_refused,
);

fn spec(name: &str) -> FunctionSpec {
    FunctionSpec {
        name: Some(name.into()),
        ..FunctionSpec::default()
    }
}

fn dspec(name: &str) -> DeploymentSpec {
    DeploymentSpec {
        name: Some(name.into()),
        ..DeploymentSpec::default()
    }
}

/// A hash-shaped string for `n`.
fn sha(n: u32) -> String {
    format!("{n:064x}")
}

/// Asserts that `result` failed with an error whose `Debug` form starts with `expected` (its
/// variant, maybe its first fields), and returns the error.
#[track_caller]
fn fails<T: std::fmt::Debug>(result: Result<T, StoreError>, expected: &str) -> StoreError {
    match result {
        Err(e) if format!("{e:?}").starts_with(expected) => e,
        other => panic!("expected {expected}..., got {other:?}"),
    }
}

/// Lets the millisecond clock move, so that "oldest first" has one answer.
async fn tick() {
    tokio::time::sleep(Duration::from_millis(3)).await;
}

async fn func(st: &MetadataStore, owner: &str, name: &str) -> Result<Function, StoreError> {
    st.create_function(owner, &spec(name)).await
}

async fn release(st: &MetadataStore, f: &Function, n: u32) -> Result<Release, StoreError> {
    st.add_release(&f.id, Platform::Wasm, &sha(n), u64::from(n))
        .await
}

/// A WASM deployment named "d" of `f` (as `f`'s owner's).
async fn deploy(
    st: &MetadataStore,
    f: &Function,
    release: Option<&Release>,
    status: S,
) -> Result<Deployment, StoreError> {
    let (release, d) = (release.map(|r| r.id.as_str()), dspec("d"));
    let (owner, p) = (&f.owner_id, Platform::Wasm);
    let made = st
        .create_deployment(owner, &f.id, p, &d, release, status)
        .await?;
    Ok(made.expect("the function exists"))
}

async fn functions_are_scoped_by_owner(db: &TestDb) -> R {
    let st = db.store().await;
    let sp = FunctionSpec {
        name: Some("a1".into()),
        description: Some("desc".into()),
        environment: BTreeMap::from([
            ("QUOTE".into(), "\"'\\ \u{e9}\u{1F600}".into()),
            ("EMPTY".into(), String::new()),
        ]),
        max_memory: 4 << 30,
        max_instances: 1024,
        timeout_ms: 900_000,
        egress_allow: vec!["api.example.com:443".into(), "10.0.0.0/8".into()],
        ..FunctionSpec::default()
    };
    let a1 = st.create_function("org-a", &sp).await?;
    assert_eq!(a1.egress_allow, sp.egress_allow);
    assert_eq!(
        (a1.owner_id.as_str(), a1.name.as_deref()),
        ("org-a", Some("a1"))
    );
    assert_eq!(a1.environment, sp.environment);
    assert_eq!(
        (a1.max_memory, a1.max_instances, a1.timeout_ms),
        (4 << 30, 1024, 900_000)
    );
    assert_eq!(a1.created_at, a1.updated_at);
    tick().await;
    let a2 = func(&st, "org-a", "a2").await?;
    let b1 = func(&st, "org-b", "b1").await?;
    assert_ne!(a1.id, a2.id);

    assert_eq!(
        st.list_functions("org-a").await?,
        vec![a1.clone(), a2.clone()]
    );
    assert_eq!(st.list_functions("org-b").await?, vec![b1.clone()]);
    assert!(st.list_functions("org-c").await?.is_empty());
    assert_eq!(st.get_function("org-a", &a1.id).await?, Some(a1.clone()));
    // Org A neither sees nor changes org B's function.
    assert_eq!(st.get_function("org-a", &b1.id).await?, None);
    assert_eq!(
        st.replace_function("org-a", &b1.id, &spec("x")).await?,
        None
    );
    assert!(!st.delete_function("org-a", &b1.id).await?);
    assert_eq!(st.get_function("org-b", &b1.id).await?, Some(b1));

    assert!(st.delete_function("org-a", &a2.id).await?);
    assert!(!st.delete_function("org-a", &a2.id).await?);
    assert_eq!(st.list_functions("org-a").await?, vec![a1]);
    Ok(())
}

async fn replace_is_all_or_nothing(db: &TestDb) -> R {
    let st = db.store().await;
    let mut sp = spec("before");
    sp.tag = Some("t".into());
    sp.environment = BTreeMap::from([("A".into(), "1".into())]);
    sp.egress_allow = vec!["*.example.com:*".into()];
    let f = st.create_function("org", &sp).await?;
    tick().await;
    // Every field is replaced: absent ones take their defaults.
    let new = FunctionSpec {
        description: Some("d".into()),
        max_memory: 1 << 20,
        ..FunctionSpec::default()
    };
    let r = st.replace_function("org", &f.id, &new).await?.unwrap();
    assert_eq!(
        (r.name, r.tag, r.description.as_deref()),
        (None, None, Some("d"))
    );
    assert!(r.environment.is_empty());
    assert!(r.egress_allow.is_empty());
    assert_eq!((r.max_memory, r.max_instances), (1 << 20, 1));
    assert_eq!(r.created_at, f.created_at);
    assert!(r.updated_at > f.updated_at);
    let stored = st.get_function("org", &f.id).await?.unwrap();
    assert_eq!(stored.description.as_deref(), Some("d"));

    // A value that does not fit is refused and nothing changes, not even the valid fields.
    let bad = FunctionSpec {
        name: Some("changed".into()),
        max_memory: u64::MAX,
        ..FunctionSpec::default()
    };
    let e = st.replace_function("org", &f.id, &bad).await;
    fails(e, r#"OutOfRange { field: "maxMemory""#);
    assert_eq!(st.get_function("org", &f.id).await?, Some(stored));
    let bad = FunctionSpec {
        timeout_ms: i64::MAX as u64 + 1,
        ..FunctionSpec::default()
    };
    let e = st.create_function("org", &bad).await;
    fails(e, r#"OutOfRange { field: "timeoutMs""#);
    assert_eq!(st.list_functions("org").await?.len(), 1);
    Ok(())
}

async fn deleting_a_function_deletes_its_deployments_and_releases(db: &TestDb) -> R {
    let st = db.store().await;
    let f = func(&st, "org", "f").await?;
    let g = func(&st, "org", "g").await?;
    let (rf, rg) = (release(&st, &f, 1).await?, release(&st, &g, 1).await?);
    let df = deploy(&st, &f, Some(&rf), S::Ready).await?;
    let dg = deploy(&st, &g, Some(&rg), S::Ready).await?;

    assert!(!st.delete_function("other-org", &f.id).await?);
    assert_eq!(st.list_releases("org", &f.id).await?.len(), 1);
    assert!(st.delete_function("org", &f.id).await?);
    assert_eq!(st.deployment(&df.id).await?, None);
    assert!(st.list_deployments("org", &f.id).await?.is_empty());
    assert_eq!(
        (db.count("releases").await, db.count("deployments").await),
        (1, 1)
    );
    // The other function keeps everything, including the shared blob.
    assert_eq!(st.deployment(&dg.id).await?, Some(dg));
    assert_eq!(st.list_releases("org", &g.id).await?, vec![rg]);
    assert!(st.unreferenced_blobs(Duration::ZERO).await?.is_empty());
    Ok(())
}

async fn releases_are_content_addressed(db: &TestDb) -> R {
    let st = db.store().await;
    let f = func(&st, "org", "f").await?;
    let g = func(&st, "org", "g").await?;
    let r1 = st.add_release(&f.id, Platform::Rust, &sha(1), 100).await?;
    assert_eq!(
        (r1.function_id.as_str(), r1.platform, r1.size),
        (f.id.as_str(), Platform::Rust, 100)
    );
    // The same bytes again are the same release, as first recorded.
    assert_eq!(
        st.add_release(&f.id, Platform::Wasm, &sha(1), 100).await?,
        r1
    );
    tick().await;
    let r2 = release(&st, &f, 2).await?;
    assert_ne!(r2.id, r1.id);
    // Another function's upload of the same bytes is its own release of the same blob.
    let rg = st.add_release(&g.id, Platform::Rust, &sha(1), 100).await?;
    assert_ne!(rg.id, r1.id);
    assert_eq!(db.count("blobs").await, 2);

    assert_eq!(st.list_releases("org", &f.id).await?, vec![r1.clone(), r2]);
    assert!(st.list_releases("other", &f.id).await?.is_empty());
    assert_eq!(
        st.get_release("org", &f.id, &r1.id).await?,
        Some(r1.clone())
    );
    assert_eq!(st.get_release("other", &f.id, &r1.id).await?, None);
    assert_eq!(st.get_release("org", &g.id, &r1.id).await?, None);

    let (w, upper) = (Platform::Wasm, sha(0xabc).to_uppercase());
    fails(
        st.add_release("nope", w, &sha(3), 1).await,
        "FunctionNotFound",
    );
    let e = st.add_release(&f.id, w, &sha(1), 101).await;
    let e = fails(e, "BlobSizeMismatch");
    assert!(matches!(
        e,
        StoreError::BlobSizeMismatch { stored: 100, .. }
    ));
    let e = st.add_release(&f.id, w, &sha(4), u64::MAX).await;
    fails(e, r#"OutOfRange { field: "size""#);
    fails(st.add_release(&f.id, w, &upper, 1).await, "InvalidSha256");
    // Refused uploads left nothing behind.
    assert_eq!(db.count("blobs").await, 2);
    Ok(())
}

async fn concurrent_uploads_of_the_same_bytes_make_one_release(db: &TestDb) -> R {
    let st = db.store().await;
    let f = func(&st, "org", "f").await?;
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let (st, f) = (st.clone(), f.clone());
            tokio::spawn(async move { release(&st, &f, 9).await })
        })
        .collect();
    let mut ids = HashSet::new();
    for t in tasks {
        ids.insert(t.await.unwrap()?.id);
    }
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert_eq!(st.list_releases("org", &f.id).await?.len(), 1);
    assert_eq!(db.count("blobs").await, 1);
    Ok(())
}

async fn deployments_are_scoped_by_owner(db: &TestDb) -> R {
    let st = db.store().await;
    let f = func(&st, "org-a", "f").await?;
    let g = func(&st, "org-a", "g").await?;
    let h = func(&st, "org-b", "h").await?;
    let (p, w) = (Platform::TinyGo, S::WaitingForUpload);
    let mut d = DeploymentSpec {
        name: Some("one".into()),
        description: Some("first".into()),
        tag: Some("v1".into()),
    };
    let d1 = st
        .create_deployment("org-a", &f.id, p, &d, None, w)
        .await?
        .unwrap();
    assert_eq!(
        (d1.owner_id.as_str(), d1.function_id.as_str()),
        ("org-a", f.id.as_str())
    );
    assert_eq!(
        (d1.platform, d1.status, d1.release_id.clone()),
        (p, w, None)
    );
    assert_eq!(
        (d1.tag.as_deref(), d1.error_reason.clone(), d1.url.clone()),
        (Some("v1"), None, None)
    );
    // No deployment of another owner's function, nor of a missing one.
    assert_eq!(
        st.create_deployment("org-b", &f.id, p, &d, None, w).await?,
        None
    );
    assert_eq!(
        st.create_deployment("org-a", "nope", p, &d, None, w)
            .await?,
        None
    );
    // Nor of another function's release, nor of a missing one.
    let rh = release(&st, &h, 1).await?;
    for r in [rh.id.as_str(), "nope"] {
        let e = st.create_deployment("org-a", &f.id, p, &d, Some(r), w);
        fails(e.await, "ReleaseNotFound");
    }
    tick().await;
    let rf = release(&st, &f, 2).await?;
    let d2 = deploy(&st, &f, Some(&rf), S::Packaging).await?;
    assert_eq!(d2.release_id.as_deref(), Some(rf.id.as_str()));
    let dg = st
        .create_deployment("org-a", &g.id, p, &d, None, w)
        .await?
        .unwrap();
    tick().await;
    let dh = st
        .create_deployment("org-b", &h.id, p, &d, None, w)
        .await?
        .unwrap();

    assert_eq!(
        st.list_deployments("org-a", &f.id).await?,
        vec![d1.clone(), d2.clone()]
    );
    assert!(st.list_deployments("org-b", &f.id).await?.is_empty());
    assert_eq!(
        st.get_deployment("org-a", &f.id, &d1.id).await?,
        Some(d1.clone())
    );
    assert_eq!(st.get_deployment("org-b", &f.id, &d1.id).await?, None);
    assert_eq!(st.get_deployment("org-a", &g.id, &d1.id).await?, None);
    assert_eq!(st.deployment(&dh.id).await?, Some(dh.clone()));
    assert_eq!(
        st.deployments_with_status(w).await?,
        vec![d1.clone(), dg, dh]
    );

    d.tag = None;
    assert_eq!(
        st.update_deployment("org-b", &f.id, &d1.id, &d).await?,
        None
    );
    tick().await;
    let u = st
        .update_deployment("org-a", &f.id, &d1.id, &d)
        .await?
        .unwrap();
    assert_eq!((u.name.as_deref(), u.tag.clone()), (Some("one"), None));
    assert!(u.updated_at > d1.updated_at);
    assert_eq!(st.deployment(&d1.id).await?, Some(u));

    assert!(!st.delete_deployment("org-b", &f.id, &d1.id).await?);
    assert!(!st.delete_deployment("org-a", &g.id, &d1.id).await?);
    assert!(st.delete_deployment("org-a", &f.id, &d1.id).await?);
    assert_eq!(st.deployment(&d1.id).await?, None);
    assert_eq!(st.list_deployments("org-a", &f.id).await?, vec![d2]);
    // The release stays for a later deployment (a rollback).
    assert_eq!(st.list_releases("org-a", &f.id).await?, vec![rf]);
    Ok(())
}

async fn a_release_is_set_only_while_waiting_for_upload(db: &TestDb) -> R {
    let st = db.store().await;
    let f = func(&st, "org", "f").await?;
    let g = func(&st, "org", "g").await?;
    let w = S::WaitingForUpload;
    let d = deploy(&st, &f, None, w).await?;
    let (rf, rg) = (release(&st, &f, 1).await?, release(&st, &g, 2).await?);

    let e = st.set_deployment_release(&d.id, &rg.id).await;
    fails(e, "ReleaseNotFound");
    assert_eq!(st.set_deployment_release("missing", &rf.id).await?, None);
    let set = st.set_deployment_release(&d.id, &rf.id).await?.unwrap();
    assert_eq!(set.release_id.as_deref(), Some(rf.id.as_str()));
    assert!(st
        .transition(&d.id, &[w], S::Packaging, None, None)
        .await?
        .is_some());
    assert_eq!(st.set_deployment_release(&d.id, &rf.id).await?, None);
    Ok(())
}

async fn builds_keep_their_artifact_key_and_log(db: &TestDb) -> R {
    let st = db.store().await;
    let f = func(&st, "org", "f").await?;
    let d = deploy(&st, &f, None, S::WaitingForUpload).await?;
    assert_eq!(d.artifact_key, None);
    // Only while packaging.
    assert!(!st.set_artifact_key(&d.id, &sha(7)).await?);
    let d = deploy(&st, &f, None, S::Packaging).await?;
    assert!(st.set_artifact_key(&d.id, &sha(7)).await?);
    let got = st.deployment(&d.id).await?.unwrap();
    assert_eq!(got.artifact_key, Some(sha(7)));
    // Kept through a transition.
    let moved = st
        .transition(&d.id, &[S::Packaging], S::Deploying, None, None)
        .await?
        .unwrap();
    assert_eq!(moved.artifact_key, Some(sha(7)));
    // Logs: none yet, then the latest one, scoped by owner and Function.
    assert_eq!(st.build_log("org", &f.id, &d.id).await?, Some(None));
    st.put_build_log(&d.id, "first").await?;
    st.put_build_log(&d.id, "error[E0425]: cannot find value `x`")
        .await?;
    assert_eq!(
        st.build_log("org", &f.id, &d.id).await?,
        Some(Some("error[E0425]: cannot find value `x`".into()))
    );
    assert_eq!(st.build_log("other", &f.id, &d.id).await?, None);
    assert_eq!(st.build_log("org", "nope", &d.id).await?, None);
    // The log of a deleted deployment goes with it; one written after is not kept.
    assert!(st.delete_deployment("org", &f.id, &d.id).await?);
    st.put_build_log(&d.id, "late").await?;
    assert_eq!(st.build_log("org", &f.id, &d.id).await?, None);
    Ok(())
}

async fn transitions_are_compare_and_set(db: &TestDb) -> R {
    let st = db.store().await;
    let f = func(&st, "org", "f").await?;
    let d = deploy(&st, &f, None, S::WaitingForUpload).await?;
    assert_eq!(st.transition(&d.id, &[], S::Ready, None, None).await?, None);
    assert_eq!(
        st.transition(&d.id, &[S::Packaging], S::Ready, None, None)
            .await?,
        None
    );
    assert_eq!(
        st.transition("missing", &S::ALL, S::Ready, None, None)
            .await?,
        None
    );
    assert_eq!(st.deployment(&d.id).await?, Some(d.clone()));
    // Any of several statuses may be the expected one.
    let from = [S::Error, S::WaitingForUpload];
    let e = st
        .transition(&d.id, &from, S::Error, Some("boom"), None)
        .await?
        .unwrap();
    assert_eq!(
        (e.status, e.error_reason.as_deref()),
        (S::Error, Some("boom"))
    );
    assert!(e.updated_at >= d.updated_at);
    assert_eq!(st.deployment(&d.id).await?, Some(e));

    // Sixteen processes try the same move at once: exactly one makes it.
    let d = deploy(&st, &f, None, S::Packaging).await?;
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let (st, id) = (st.clone(), d.id.clone());
            let url = format!("https://f{i}.example");
            let to = S::Deploying;
            tokio::spawn(async move {
                st.transition(&id, &[S::Packaging], to, None, Some(&url))
                    .await
            })
        })
        .collect();
    let mut winners = Vec::new();
    for t in tasks {
        winners.extend(t.await.unwrap()?);
    }
    assert_eq!(winners.len(), 1, "{winners:?}");
    let stored = st.deployment(&d.id).await?.unwrap();
    assert_eq!((&stored, stored.status), (&winners[0], S::Deploying));
    // None clears what was set.
    let from = [S::Deploying, S::Ready];
    let r = st
        .transition(&d.id, &from, S::Ready, None, None)
        .await?
        .unwrap();
    assert_eq!((r.status, r.url, r.error_reason), (S::Ready, None, None));
    Ok(())
}

async fn concurrent_claimers_never_share_a_deployment(db: &TestDb) -> R {
    let st = db.store().await;
    let f = func(&st, "org", "f").await?;
    let mut packaging = HashSet::new();
    for i in 0..24 {
        // Some in another status, which no claimer of PACKAGING may get.
        let status = if i % 4 == 0 {
            S::Deploying
        } else {
            S::Packaging
        };
        let d = deploy(&st, &f, None, status).await?;
        if status == S::Packaging {
            packaging.insert(d.id);
        }
    }
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let st = st.clone();
            tokio::spawn(async move {
                let holder = format!("packager-{i}");
                let mut mine = Vec::new();
                let lease = Duration::from_secs(60);
                while let Some(d) = st.claim(S::Packaging, &holder, lease).await? {
                    assert_eq!(d.status, S::Packaging);
                    // Work on it, then pass it on: it leaves PACKAGING.
                    let done = st.transition(&d.id, &[S::Packaging], S::Deploying, None, None);
                    assert!(
                        done.await?.is_some(),
                        "{holder} lost {} it had claimed",
                        d.id
                    );
                    mine.push(d.id);
                }
                Ok::<_, StoreError>(mine)
            })
        })
        .collect();
    let mut claimed = Vec::new();
    for t in tasks {
        claimed.extend(t.await.unwrap()?);
    }
    let distinct: HashSet<_> = claimed.iter().cloned().collect();
    assert_eq!(
        claimed.len(),
        distinct.len(),
        "a deployment was claimed twice"
    );
    assert_eq!(distinct, packaging);
    Ok(())
}

async fn leases_lapse_and_are_taken_over(db: &TestDb) -> R {
    let st = db.store().await;
    let f = func(&st, "org", "f").await?;
    let old = deploy(&st, &f, None, S::Packaging).await?;
    tick().await;
    let young = deploy(&st, &f, None, S::Packaging).await?;
    deploy(&st, &f, None, S::Ready).await?;
    let (short, long) = (Duration::from_millis(300), Duration::from_secs(60));
    let claim = |holder: &'static str, lease, status| {
        let st = st.clone();
        async move { Ok::<_, StoreError>(st.claim(status, holder, lease).await?.map(|d| d.id)) }
    };
    let p = S::Packaging;

    // Oldest first.
    assert_eq!(claim("p1", short, p).await?, Some(old.id.clone()));
    assert_eq!(claim("p2", long, p).await?, Some(young.id.clone()));
    assert_eq!(claim("p3", long, p).await?, None);
    // A holder claiming again does not get what it holds (it is working on it).
    assert_eq!(claim("p1", short, p).await?, None);
    assert!(st.renew(&old.id, "p1", short).await?);
    assert!(!st.renew(&old.id, "p3", short).await?);
    assert!(!st.renew("missing", "p1", short).await?);

    // p1 stops renewing (it crashed): once its lease lapses, p3 takes over and p1 is told.
    tokio::time::sleep(short + Duration::from_millis(100)).await;
    assert_eq!(claim("p3", long, p).await?, Some(old.id.clone()));
    assert!(!st.renew(&old.id, "p1", long).await?);
    assert!(st.renew(&old.id, "p3", long).await?);
    assert_eq!(claim("p1", long, p).await?, None);

    // A transition releases the lease: the next stage's claimer gets it at once.
    assert!(st
        .transition(&old.id, &[p], S::Deploying, None, None)
        .await?
        .is_some());
    assert!(!st.renew(&old.id, "p3", long).await?);
    assert_eq!(claim("w1", long, S::Deploying).await?, Some(old.id.clone()));
    assert_eq!(claim("w2", long, S::Deploying).await?, None);

    // A node restarted after a crash takes over its own earlier incarnation's work at once,
    // but not another node's.
    let third = deploy(&st, &f, None, S::Packaging).await?;
    assert_eq!(claim("node-a/1", long, p).await?, Some(third.id.clone()));
    assert_eq!(claim("node-b/1", long, p).await?, None);
    assert_eq!(claim("node-a/1", long, p).await?, None);
    assert_eq!(claim("node-a/2", long, p).await?, Some(third.id.clone()));
    assert!(!st.renew(&third.id, "node-a/1", long).await?);
    assert!(st.renew(&third.id, "node-a/2", long).await?);
    Ok(())
}

async fn tokens_belong_to_one_organisation(db: &TestDb) -> R {
    let st = db.store().await;
    assert_eq!(st.org_of_token("h1").await?, None);
    st.add_token("org-a", "h1", Some("ci")).await?;
    st.add_token("org-b", "h2", None).await?;
    assert_eq!(st.org_of_token("h1").await?.as_deref(), Some("org-a"));
    assert_eq!(st.org_of_token("h2").await?.as_deref(), Some("org-b"));
    st.add_token("org-a", "h1", None).await?;
    fails(st.add_token("org-b", "h1", None).await, "TokenTaken");
    assert_eq!(st.org_of_token("h1").await?.as_deref(), Some("org-a"));
    Ok(())
}

async fn racing_processes_share_one_secret(db: &TestDb) -> R {
    // Separate stores: separate pools, as separate API processes would have.
    let mut stores = Vec::new();
    for _ in 0..4 {
        stores.push(db.store().await);
    }
    let tasks: Vec<_> = (0..16u8)
        .map(|i| {
            let st = stores[usize::from(i) % stores.len()].clone();
            tokio::spawn(async move { st.secret("signing-key", move || vec![i; 32]).await })
        })
        .collect();
    let mut values = HashSet::new();
    for t in tasks {
        values.insert(t.await.unwrap()?);
    }
    assert_eq!(values.len(), 1, "{values:?}");
    let value = values.into_iter().next().unwrap();
    assert_eq!(value.len(), 32);
    assert_eq!(stores[0].secret("signing-key", Vec::new).await?, value);
    assert_eq!(
        stores[1].secret("other", || vec![0, 255, 7]).await?,
        vec![0, 255, 7]
    );
    Ok(())
}

async fn garbage_is_blobs_no_release_references(db: &TestDb) -> R {
    let st = db.store().await;
    let none = std::time::Duration::ZERO;
    let f = func(&st, "org", "f").await?;
    let g = func(&st, "org", "g").await?;
    release(&st, &f, 1).await?;
    release(&st, &f, 2).await?;
    release(&st, &g, 2).await?;
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    assert!(st.unreferenced_blobs(none).await?.is_empty());
    assert!(!st.begin_blob_collection(&sha(1), none).await?);
    assert!(!st.forget_blob(&sha(1)).await?);

    st.delete_function("org", &f.id).await?;
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    // sha(2) is still g's; sha(1) is garbage, but not within a grace period.
    assert_eq!(st.unreferenced_blobs(none).await?, vec![sha(1)]);
    let hour = std::time::Duration::from_secs(3600);
    assert!(st.unreferenced_blobs(hour).await?.is_empty());
    assert!(!st.begin_blob_collection(&sha(1), hour).await?);
    assert!(!st.begin_blob_collection(&sha(2), none).await?);
    // Not marked: not forgotten.
    assert!(!st.forget_blob(&sha(1)).await?);
    assert!(st.begin_blob_collection(&sha(1), none).await?);
    // An upload of the same bytes waits while the collection is under way...
    let waiting = {
        let st = st.clone();
        tokio::spawn(async move {
            st.touch_blob(&sha(1), 100 + 1, std::time::Duration::from_secs(10))
                .await
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(
        !waiting.is_finished(),
        "a touch did not wait for the collection"
    );
    // ... a marked blob is listed again (a crashed collector's work is resumed) ...
    assert_eq!(st.unreferenced_blobs(hour).await?, vec![sha(1)]);
    assert!(st.forget_blob(&sha(1)).await?);
    assert!(!st.forget_blob(&sha(1)).await?);
    // ... and then records the blob afresh.
    waiting.await.unwrap()?;
    assert_eq!(db.count("blobs").await, 2);
    assert!(st.unreferenced_blobs(hour).await?.is_empty());
    // A touch gives up after its wait.
    assert!(st.begin_blob_collection(&sha(1), none).await.is_ok());
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    assert!(st.begin_blob_collection(&sha(1), none).await?);
    assert!(matches!(
        st.touch_blob(&sha(1), 101, std::time::Duration::from_millis(100))
            .await,
        Err(StoreError::BlobBusy { .. })
    ));
    // A touched blob is not garbage within the grace period, even unreferenced.
    st.forget_blob(&sha(1)).await?;
    st.touch_blob(&sha(3), 103, std::time::Duration::ZERO)
        .await?;
    assert!(st.unreferenced_blobs(hour).await?.is_empty());
    assert!(!st.begin_blob_collection(&sha(3), hour).await?);
    Ok(())
}

async fn migrations_apply_once(db: &TestDb) -> R {
    let first = db.store().await;
    let f = func(&first, "org", "f").await?;
    let second = db.store().await;
    assert_eq!(second.get_function("org", &f.id).await?, Some(f));
    assert_eq!(
        db.count("fnvm_schema_migrations").await,
        fnvm_control::store::known_migrations() as i64
    );
    Ok(())
}

async fn concurrent_first_connections_migrate_once(db: &TestDb) -> R {
    // Four processes start at once against a database no one has opened yet.
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let url = db.url.clone();
            tokio::spawn(async move { MetadataStore::connect(&url).await })
        })
        .collect();
    let mut stores = Vec::new();
    for t in tasks {
        stores.push(t.await.unwrap()?);
    }
    assert_eq!(
        db.count("fnvm_schema_migrations").await,
        fnvm_control::store::known_migrations() as i64
    );
    let f = func(&stores[0], "org", "f").await?;
    assert_eq!(stores[3].get_function("org", &f.id).await?, Some(f));
    Ok(())
}

async fn what_is_written_survives_a_reconnection(db: &TestDb) -> R {
    let st = db.store().await;
    let f = func(&st, "org", "f").await?;
    let r = release(&st, &f, 5).await?;
    let d = deploy(&st, &f, Some(&r), S::Packaging).await?;
    st.add_token("org", "hash", None).await?;
    let key = st.secret("k", || vec![1, 2, 3]).await?;
    st.close().await;
    drop(st);

    let st = db.store().await;
    assert_eq!(st.list_functions("org").await?, vec![f.clone()]);
    assert_eq!(st.list_releases("org", &f.id).await?, vec![r]);
    assert_eq!(st.deployment(&d.id).await?, Some(d));
    assert_eq!(st.org_of_token("hash").await?.as_deref(), Some("org"));
    assert_eq!(st.secret("k", Vec::new).await?, key);
    Ok(())
}

async fn unreadable_stored_values_are_errors(db: &TestDb) -> R {
    let st = db.store().await;
    let f = func(&st, "org", "f").await?;
    let d = deploy(&st, &f, None, S::Ready).await?;

    db.exec("UPDATE deployments SET status = 'SLEEPING'").await;
    fails(st.deployment(&d.id).await, "Corrupt");
    fails(st.list_deployments("org", &f.id).await, "Corrupt");
    db.exec("UPDATE deployments SET status = 'READY', platform = 'COBOL'")
        .await;
    fails(st.get_deployment("org", &f.id, &d.id).await, "Corrupt");

    db.exec("UPDATE functions SET environment = 'not json'")
        .await;
    fails(st.get_function("org", &f.id).await, "Corrupt");
    db.exec("UPDATE functions SET environment = '{}', max_memory = -1")
        .await;
    fails(st.list_functions("org").await, "Corrupt");
    db.exec("UPDATE functions SET max_memory = 1, max_instances = 4294967296")
        .await;
    fails(st.get_function("org", &f.id).await, "Corrupt");

    db.exec("INSERT INTO secrets (name, value, created_at) VALUES ('bad', 'xyz', 0)")
        .await;
    fails(st.secret("bad", Vec::new).await, "Corrupt");
    Ok(())
}

async fn a_newer_schema_is_refused(db: &TestDb) -> R {
    db.store().await.close().await;
    db.exec("INSERT INTO fnvm_schema_migrations (version, applied_at) VALUES (999999, 0)")
        .await;
    let e = MetadataStore::connect(&db.url).await;
    fails(e, "SchemaTooNew { found: 999999");
    Ok(())
}

#[tokio::test]
async fn wrong_postgres_password_is_not_shown() {
    let url = tokio::task::spawn_blocking(services::postgres_url)
        .await
        .unwrap();
    let (userinfo, rest) = url.split_once('@').unwrap();
    let (user, password) = userinfo.rsplit_once(':').unwrap();
    let e = MetadataStore::connect(&format!("{user}:not-the-password-x9@{rest}")).await;
    let e = fails(e, "Connect");
    assert!(!e.is_transient(), "{e:?}");
    assert!(
        !format!("{e} {e:?}").contains("not-the-password-x9"),
        "{e:?}"
    );
    let st = MetadataStore::connect(&url).await.unwrap();
    assert!(!format!("{st:?}").contains(password), "{st:?}");
}
