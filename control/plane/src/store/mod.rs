//! The metadata store: where the control plane keeps Functions, Releases, Deployments (with the
//! leases through which the packager and workers share out work), API tokens and server-wide
//! secrets, in SQLite (one server) or PostgreSQL (several API, packager and worker processes on
//! several machines). This module owns connecting (URL, pool, per-connection SQLite settings)
//! and what every query shares; the queries live beside it by resource (`functions`,
//! `deployments`, `tokens`, `logs`, `invocations`, `triggers`, `workers`), the schema and its
//! migrations in `schema`.
//!
//! One code path serves both databases: sqlx's runtime-generic `Any` driver and one SQL dialect
//! (`$N` placeholders, `ON CONFLICT`, `RETURNING`, BIGINT epoch milliseconds, TEXT ids, JSON
//! text). Every operation that must be atomic is either one statement or one transaction, and
//! every race the API promises to settle (two uploads of the same bytes, two transitions, two
//! claimers, two processes migrating) is settled by the database, not by this process, so that
//! it holds across processes.

mod changes;
mod deployments;
mod error;
mod functions;
mod invocations;
mod logs;
mod placements;
mod schema;
mod tokens;
mod triggers;
mod workers;

pub use changes::Changes;
pub use error::StoreError;
pub use invocations::{ClaimedInvocation, Enqueued, Finish, Retried};
pub use placements::PlacementPlan;
pub use triggers::StoredPulsarTrigger;
pub use workers::SingletonLease;

use crate::model::{DeploymentStatus, Platform, Timestamp};
use error::{is_busy, redact};
use futures::future::BoxFuture;
use sqlx::any::{Any, AnyConnectOptions, AnyPoolOptions, AnyRow};
use sqlx::pool::PoolConnectionMetadata;
use sqlx::Row;
use sqlx::{AnyConnection, AnyPool};
use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a SQLite writer waits for another one before failing: long enough for any of the
/// store's short transactions, short enough that a stuck writer surfaces as an error.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// SQLite serialises writers anyway; a few connections let reads proceed beside a write.
const SQLITE_CONNECTIONS: u32 = 4;
/// PostgreSQL connections per process: several API, packager and worker processes share one
/// server, whose default limit is 100 connections.
const POSTGRES_CONNECTIONS: u32 = 10;
/// How long an operation waits for a free pooled connection (or a new one) before failing:
/// also how long [`MetadataStore::connect`] keeps retrying a server that refuses connections
/// (one that is still starting), before it reports it unreachable.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// Which database a store talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Backend {
    /// A SQLite file.
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

/// The metadata store. Cloning shares the connection pool.
#[derive(Clone)]
pub struct MetadataStore {
    pool: AnyPool,
    backend: Backend,
    /// The URL without its password, for `Debug`.
    url: Arc<str>,
    /// The URL as given (password included), for PostgreSQL's notification connection; never
    /// shown.
    connect_url: Arc<str>,
}

impl fmt::Debug for MetadataStore {
    // The pool's own `Debug` shows its connect options, password included.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetadataStore")
            .field("backend", &self.backend)
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// How many migrations this build applies (rows of `fnvm_schema_migrations` once migrated).
pub fn known_migrations() -> usize {
    schema::MIGRATIONS.len()
}

impl MetadataStore {
    /// Connects to the database at `url` and brings its schema up to date.
    ///
    /// `sqlite:///abs/path.db`, `sqlite://rel/path.db` (the file is created if missing, not its
    /// directory) or `postgres://user:password@host:port/db` (also `postgresql://`, and sqlx's
    /// parameters such as `?sslmode=require`).
    pub async fn connect(url: &str) -> Result<MetadataStore, StoreError> {
        sqlx::any::install_default_drivers();
        let redacted = redact(url);
        let invalid = |reason: &str| StoreError::InvalidUrl {
            url: redacted.clone(),
            reason: reason.to_string(),
        };
        let (backend, url) = if url.starts_with("sqlite:") {
            (
                Backend::Sqlite,
                sqlite_url(url, std::env::current_dir).map_err(|r| invalid(&r))?,
            )
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            (Backend::Postgres, url.to_string())
        } else {
            return Err(invalid("expected a sqlite: or postgres: URL"));
        };
        // The parser's message describes the syntax error, never the URL itself.
        let options = AnyConnectOptions::from_str(&url).map_err(|e| invalid(&e.to_string()))?;
        let pool = match backend {
            Backend::Sqlite => AnyPoolOptions::new()
                .max_connections(SQLITE_CONNECTIONS)
                .after_connect(sqlite_after_connect),
            Backend::Postgres => AnyPoolOptions::new().max_connections(POSTGRES_CONNECTIONS),
        }
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect_with(options)
        .await
        .map_err(|source| StoreError::Connect {
            url: redacted.clone(),
            source,
        })?;
        schema::migrate(&pool, backend).await?;
        Ok(MetadataStore {
            pool,
            backend,
            url: redacted.into(),
            connect_url: url.into(),
        })
    }

    /// Opens (creating it if missing) the SQLite database at `path`.
    pub async fn open_sqlite(path: &Path) -> Result<MetadataStore, StoreError> {
        let text = path.to_str().ok_or_else(|| StoreError::InvalidUrl {
            url: path.display().to_string(),
            reason: "the path is not UTF-8".into(),
        })?;
        MetadataStore::connect(&format!("sqlite://{}", encode_path(text))).await
    }

    /// The database this store talks to.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The database's URL without its password, for logs.
    pub fn describe(&self) -> &str {
        &self.url
    }

    /// Closes every pooled connection, waiting for operations under way; the store (and its
    /// clones) fail every later operation.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Begins a transaction that will write. On SQLite it takes the write lock at once
    /// (`BEGIN IMMEDIATE`): a transaction that read first and then tried to write could fail
    /// at once with `SQLITE_BUSY_SNAPSHOT` instead of waiting its turn.
    async fn begin_write(
        &self,
        operation: &'static str,
    ) -> Result<sqlx::Transaction<'static, Any>, StoreError> {
        match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.pool.begin().await,
        }
        .map_err(StoreError::query(operation))
    }
}

/// A path as the path of a `sqlite:` URL: sqlx percent-decodes it, so `%`, `?`, `#` (and
/// anything unusual) are encoded.
fn encode_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || b"/._-~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// What sqlx is to open for a `sqlite:` URL: its path made absolute (against `cwd()`: the URL
/// parser sqlx uses would resolve a relative path's `..` segments against the root), with
/// `mode=rwc` added unless the URL gives a mode, so that a missing file is created. In-memory
/// databases are refused (each pooled connection would get its own, or share one without the
/// durability settings).
fn sqlite_url(
    url: &str,
    cwd: impl FnOnce() -> std::io::Result<std::path::PathBuf>,
) -> Result<String, String> {
    let (path, query) = match url.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (url, None),
    };
    let path = path
        .strip_prefix("sqlite://")
        .or_else(|| path.strip_prefix("sqlite:"))
        .unwrap_or(path);
    let params: Vec<(&str, &str)> = query
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
        .collect();
    if path.is_empty()
        || path == ":memory:"
        || params.iter().any(|&(k, v)| k == "mode" && v == "memory")
    {
        return Err("in-memory SQLite databases are not supported: give a file".into());
    }
    let path = if path.starts_with('/') {
        path.to_string()
    } else {
        let cwd = cwd().map_err(|e| format!("cannot resolve a relative path: {e}"))?;
        let cwd = cwd.to_str().ok_or("the working directory is not UTF-8")?;
        format!("{}/{path}", encode_path(cwd.trim_end_matches('/')))
    };
    let mode = match query {
        Some(_) if params.iter().any(|&(k, _)| k == "mode") => "",
        Some(_) => "&mode=rwc",
        None => "?mode=rwc",
    };
    let query = query.map(|q| format!("?{q}")).unwrap_or_default();
    Ok(format!("sqlite://{path}{query}{mode}"))
}

/// Settings of every SQLite connection, made before the pool hands it out.
fn sqlite_after_connect(
    conn: &mut AnyConnection,
    _: PoolConnectionMetadata,
) -> BoxFuture<'_, Result<(), sqlx::Error>> {
    Box::pin(sqlite_pragmas(conn))
}

async fn sqlite_pragmas(conn: &mut AnyConnection) -> Result<(), sqlx::Error> {
    // First, so that what follows waits for other writers instead of failing.
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "PRAGMA busy_timeout = {}",
        SQLITE_BUSY_TIMEOUT.as_millis()
    )))
    .execute(&mut *conn)
    .await?;
    // WAL lets readers proceed beside the writer. Switching a new file to it needs an
    // exclusive lock the busy timeout does not wait for, so two processes opening a fresh
    // database at once retry here; once the file is in WAL mode this is a no-op.
    let deadline = Instant::now() + SQLITE_BUSY_TIMEOUT;
    loop {
        match sqlx::query_scalar::<_, String>("PRAGMA journal_mode = WAL")
            .fetch_one(&mut *conn)
            .await
        {
            Ok(mode) if mode.eq_ignore_ascii_case("wal") => break,
            Ok(mode) => {
                return Err(sqlx::Error::Configuration(
                    format!("SQLite cannot use WAL journaling here (journal mode {mode})").into(),
                ))
            }
            Err(sqlx::Error::Database(e)) if is_busy(e.as_ref()) && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(e) => return Err(e),
        }
    }
    // FULL: a commit is on disk (WAL synced) before it is acknowledged; NORMAL could lose the
    // last commits on power loss.
    sqlx::query("PRAGMA synchronous = FULL")
        .execute(&mut *conn)
        .await?;
    sqlx::query("PRAGMA foreign_keys = ON")
        .execute(&mut *conn)
        .await?;
    Ok(())
}

impl MetadataStore {
    /// Whether `owner` has the Function `function_id` (what listing its children checks first,
    /// so that an unknown Function is told from one with nothing to list).
    async fn owns_function(
        &self,
        owner: &str,
        function_id: &str,
        operation: &'static str,
    ) -> Result<bool, StoreError> {
        let found: Option<String> =
            sqlx::query_scalar("SELECT id FROM functions WHERE owner_id = $1 AND id = $2")
                .bind(owner)
                .bind(function_id)
                .fetch_optional(&self.pool)
                .await
                .map_err(StoreError::query(operation))?;
        Ok(found.is_some())
    }
}

/// Now, as stored.
fn now() -> i64 {
    Timestamp::now().0
}

/// `now + lease`, in stored milliseconds.
fn lease_end(lease: Duration) -> i64 {
    now().saturating_add(i64::try_from(lease.as_millis()).unwrap_or(i64::MAX))
}

/// `value` as a BIGINT, refused rather than wrapped when it does not fit.
fn to_db(field: &'static str, value: u64) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::OutOfRange { field, value })
}

/// Whether `e` is a foreign-key violation (a referenced row is missing).
fn is_foreign_key_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.kind() == sqlx::error::ErrorKind::ForeignKeyViolation)
}

/// Reads the columns of one stored row, turning anything unreadable into
/// [`StoreError::Corrupt`] naming the row.
struct Reader<'r> {
    row: &'r AnyRow,
    table: &'static str,
    id: String,
}

impl<'r> Reader<'r> {
    /// A reader of `row` of `table`, whose key is in `key_column`.
    fn new(
        row: &'r AnyRow,
        table: &'static str,
        key_column: &str,
    ) -> Result<Reader<'r>, StoreError> {
        let id = row
            .try_get::<String, _>(key_column)
            .map_err(|e| StoreError::Corrupt {
                what: format!("{table}.{key_column}"),
                detail: e.to_string(),
            })?;
        Ok(Reader { row, table, id })
    }

    fn corrupt(&self, column: &str, detail: impl fmt::Display) -> StoreError {
        StoreError::Corrupt {
            what: format!("{} {} {column}", self.table, self.id),
            detail: detail.to_string(),
        }
    }

    fn id(&self) -> String {
        self.id.clone()
    }

    fn get<T>(&self, column: &str) -> Result<T, StoreError>
    where
        T: sqlx::Decode<'r, Any> + sqlx::Type<Any>,
    {
        self.row
            .try_get::<T, _>(column)
            .map_err(|e| self.corrupt(column, e))
    }

    fn u64(&self, column: &str) -> Result<u64, StoreError> {
        let v: i64 = self.get(column)?;
        u64::try_from(v).map_err(|_| self.corrupt(column, format!("negative: {v}")))
    }

    fn u32(&self, column: &str) -> Result<u32, StoreError> {
        let v: i64 = self.get(column)?;
        u32::try_from(v).map_err(|_| self.corrupt(column, format!("out of range: {v}")))
    }

    fn time(&self, column: &str) -> Result<Timestamp, StoreError> {
        self.get(column).map(Timestamp)
    }

    fn platform(&self, column: &str) -> Result<Platform, StoreError> {
        let v: String = self.get(column)?;
        v.parse().map_err(|e| self.corrupt(column, e))
    }

    fn status(&self, column: &str) -> Result<DeploymentStatus, StoreError> {
        let v: String = self.get(column)?;
        v.parse().map_err(|e| self.corrupt(column, e))
    }
}

#[cfg(test)]
mod tests;
