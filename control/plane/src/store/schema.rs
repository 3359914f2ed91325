//! The metadata store's schema, as an ordered list of versioned migrations, and the runner that
//! brings a database up to date when a store connects. Every statement is in the one dialect
//! SQLite and PostgreSQL share (BIGINT epoch milliseconds, TEXT ids, JSON as TEXT), except the
//! lock that keeps two processes starting at once from applying the same migration.
//!
//! Each migration runs in its own transaction together with the row recording it in
//! `fnvm_schema_migrations`, so a failed migration leaves nothing behind. The transaction first
//! takes a database-wide lock (PostgreSQL: `pg_advisory_xact_lock`; SQLite: `BEGIN IMMEDIATE`,
//! which takes the single write lock before reading anything) and only then reads which
//! versions are applied: a process that waited finds the migration done and skips it.

use super::{Backend, StoreError};
use crate::model::Timestamp;
use sqlx::AnyPool;

/// One schema change.
#[derive(Debug)]
pub(crate) struct Migration {
    /// Its version: migrations apply in increasing order, each once.
    pub version: i64,
    /// What it does, for messages.
    pub name: &'static str,
    /// Its statements, run in order (one per query: PostgreSQL's extended protocol takes one
    /// statement at a time).
    pub statements: &'static [&'static str],
}

/// Every migration, oldest first. Append only: a released migration never changes, since
/// databases out there have recorded it as applied.
pub(crate) const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "functions, releases, blobs, deployments, tokens, secrets",
        statements: &[
            "CREATE TABLE functions (
            id TEXT PRIMARY KEY,
            owner_id TEXT NOT NULL,
            name TEXT,
            description TEXT,
            tag TEXT,
            environment TEXT NOT NULL,
            max_memory BIGINT NOT NULL,
            max_instances BIGINT NOT NULL,
            timeout_ms BIGINT NOT NULL,
            created_at BIGINT NOT NULL,
            updated_at BIGINT NOT NULL
        )",
            "CREATE INDEX functions_by_owner ON functions (owner_id, created_at, id)",
            // Uploaded bytes, by content: the artifact store keeps one object per hash, shared by
            // every release (of any function) with these bytes. `touched_at` is renewed by every
            // upload before it stores the bytes, and `deleting` marks a collection under way: the
            // two make uploads and the garbage collector safe against each other (see
            // `MetadataStore::touch_blob`).
            "CREATE TABLE blobs (
            sha256 TEXT PRIMARY KEY,
            size BIGINT NOT NULL,
            created_at BIGINT NOT NULL,
            touched_at BIGINT NOT NULL,
            deleting BIGINT NOT NULL DEFAULT 0
        )",
            "CREATE TABLE releases (
            id TEXT PRIMARY KEY,
            function_id TEXT NOT NULL REFERENCES functions (id) ON DELETE CASCADE,
            platform TEXT NOT NULL,
            sha256 TEXT NOT NULL REFERENCES blobs (sha256),
            size BIGINT NOT NULL,
            created_at BIGINT NOT NULL,
            UNIQUE (function_id, sha256),
            UNIQUE (id, function_id)
        )",
            // The garbage collector looks for blobs no release references.
            "CREATE INDEX releases_by_blob ON releases (sha256)",
            // owner_id repeats the function's so that scoping a query to an owner is one condition;
            // the composite key on the release makes a deployment of another function's release
            // impossible; lease_holder/lease_until say which process works on it until when.
            "CREATE TABLE deployments (
            id TEXT PRIMARY KEY,
            function_id TEXT NOT NULL REFERENCES functions (id) ON DELETE CASCADE,
            owner_id TEXT NOT NULL,
            name TEXT,
            description TEXT,
            tag TEXT,
            platform TEXT NOT NULL,
            status TEXT NOT NULL,
            error_reason TEXT,
            url TEXT,
            release_id TEXT,
            lease_holder TEXT,
            lease_until BIGINT,
            created_at BIGINT NOT NULL,
            updated_at BIGINT NOT NULL,
            FOREIGN KEY (release_id, function_id) REFERENCES releases (id, function_id)
        )",
            "CREATE INDEX deployments_by_function ON deployments (function_id, created_at, id)",
            "CREATE INDEX deployments_by_status ON deployments (status, created_at, id)",
            "CREATE INDEX deployments_by_release ON deployments (release_id, function_id)",
            "CREATE TABLE api_tokens (
            token_hash TEXT PRIMARY KEY,
            org_id TEXT NOT NULL,
            label TEXT,
            created_at BIGINT NOT NULL
        )",
            // Values are lowercase hex: bytes without a database-specific type.
            "CREATE TABLE secrets (
            name TEXT PRIMARY KEY,
            value TEXT NOT NULL,
            created_at BIGINT NOT NULL
        )",
        ],
    },
    Migration {
        version: 2,
        name: "invocation logs",
        statements: &[
            // Guests' stderr, the latest entries of each Function; ordered by (at, id).
            "CREATE TABLE invocation_logs (
                id TEXT PRIMARY KEY,
                function_id TEXT NOT NULL REFERENCES functions (id) ON DELETE CASCADE,
                deployment_id TEXT NOT NULL,
                invocation_id TEXT NOT NULL,
                at BIGINT NOT NULL,
                text TEXT NOT NULL
            )",
            "CREATE INDEX invocation_logs_by_function ON invocation_logs (function_id, at, id)",
        ],
    },
    Migration {
        version: 3,
        name: "server-side builds: the artifact of a built deployment, build logs",
        statements: &[
            // The key its artifact is stored under when it is not the release's (sources built
            // on the server: the inputs' and the toolchain's hash).
            "ALTER TABLE deployments ADD COLUMN artifact_key TEXT",
            // The whole (bounded) log of a deployment's build.
            "CREATE TABLE build_logs (
                deployment_id TEXT PRIMARY KEY REFERENCES deployments (id) ON DELETE CASCADE,
                at BIGINT NOT NULL,
                text TEXT NOT NULL
            )",
        ],
    },
    Migration {
        version: 4,
        name: "a Function's egress allowlist",
        statements: &[
            // A JSON array of rules; empty: the platform's policy alone.
            "ALTER TABLE functions ADD COLUMN egress_allow TEXT NOT NULL DEFAULT '[]'",
        ],
    },
    Migration {
        version: 5,
        name: "asynchronous invocations, a Function's delivery attempts",
        statements: &[
            "ALTER TABLE functions ADD COLUMN max_attempts BIGINT NOT NULL DEFAULT 3",
            "ALTER TABLE functions ADD COLUMN retry_backoff_ms BIGINT NOT NULL DEFAULT 1000",
            // The durable queue of asynchronous invocations and their results. `status` is
            // QUEUED (due at `run_after`), RUNNING (by `lease_holder` until `lease_until`: a
            // lapsed lease is claimable again), SUCCEEDED or DEAD. `attempts` counts the
            // deliveries begun; the delivery settings are the Function's when it was queued.
            // `request` and `result` are JSON.
            "CREATE TABLE invocations (
                id TEXT PRIMARY KEY,
                function_id TEXT NOT NULL REFERENCES functions (id) ON DELETE CASCADE,
                owner_id TEXT NOT NULL,
                status TEXT NOT NULL,
                attempts BIGINT NOT NULL,
                max_attempts BIGINT NOT NULL,
                retry_backoff_ms BIGINT NOT NULL,
                run_after BIGINT NOT NULL,
                lease_holder TEXT,
                lease_until BIGINT,
                request TEXT NOT NULL,
                result TEXT,
                last_error TEXT,
                created_at BIGINT NOT NULL,
                updated_at BIGINT NOT NULL
            )",
            // What workers claim: due queued ones, and running ones whose lease lapsed.
            "CREATE INDEX invocations_due ON invocations (status, run_after)",
            "CREATE INDEX invocations_by_function ON invocations (function_id, status, created_at, id)",
            // What the collector removes: finished ones, oldest first.
            "CREATE INDEX invocations_by_update ON invocations (updated_at)",
        ],
    },
    Migration {
        version: 6,
        name: "Pulsar triggers",
        statements: &[
            // One per Function. The token is sealed (crate::sealed) with the function id as
            // associated data; booleans are 0/1.
            "CREATE TABLE pulsar_triggers (
                function_id TEXT PRIMARY KEY REFERENCES functions (id) ON DELETE CASCADE,
                owner_id TEXT NOT NULL,
                pulsar_url TEXT NOT NULL,
                pulsar_token TEXT,
                topic TEXT NOT NULL,
                topic_is_regex BIGINT NOT NULL,
                structured BIGINT NOT NULL,
                dead_letter_topic TEXT NOT NULL,
                created_at BIGINT NOT NULL,
                updated_at BIGINT NOT NULL
            )",
        ],
    },
    Migration {
        version: 7,
        name: "fleet membership",
        statements: &[
            // One row per worker node, upserted at each lease renewal with what it reports;
            // a worker whose lease_until has passed is dead. Rows of long-dead workers are
            // collected.
            "CREATE TABLE workers (
                id TEXT PRIMARY KEY,
                url TEXT NOT NULL,
                started_at BIGINT NOT NULL,
                version TEXT NOT NULL,
                cores BIGINT NOT NULL,
                slots BIGINT NOT NULL,
                memory_bytes BIGINT NOT NULL,
                in_flight BIGINT NOT NULL,
                slots_in_use BIGINT NOT NULL,
                resident_bytes BIGINT NOT NULL,
                deployments BIGINT NOT NULL,
                renewed_at BIGINT NOT NULL,
                lease_until BIGINT NOT NULL
            )",
        ],
    },
    Migration {
        version: 8,
        name: "singleton roles",
        statements: &[
            // One row per role that exactly one process may play at a time (the scheduler):
            // who holds it, until when, and the term, which grows each time the role changes
            // hands so that a former holder's late writes can be told apart.
            "CREATE TABLE singleton_leases (
                name TEXT PRIMARY KEY,
                holder TEXT NOT NULL,
                term BIGINT NOT NULL,
                acquired_at BIGINT NOT NULL,
                lease_until BIGINT NOT NULL
            )",
        ],
    },
    Migration {
        version: 9,
        name: "placements",
        statements: &[
            // Which workers hold which functions ("replicas"): the scheduler writes the
            // deployment each is to serve and its share of the function's maxInstances
            // (`max_instances`), each write one more `generation`; the worker writes back
            // what it has loaded and the bound it enforces now (`applied_max_instances`) with
            // the generation it read. `held_max_instances` is the most the worker may be
            // enforcing: it grows with every share written and comes down to the applied
            // bound only when the worker acknowledges the latest generation, so a share
            // moves to another worker only after the one giving it up has let go of it.
            // `reason`: 'placed' by the scheduler, 'demand' asked for by a worker that got a
            // request for a function it did not hold, 'leaving' being drained before removal.
            "CREATE TABLE placements (
                function_id TEXT NOT NULL REFERENCES functions (id) ON DELETE CASCADE,
                worker_id TEXT NOT NULL,
                deployment_id TEXT NOT NULL REFERENCES deployments (id) ON DELETE CASCADE,
                max_instances BIGINT NOT NULL,
                reason TEXT NOT NULL,
                placed_at BIGINT NOT NULL,
                generation BIGINT NOT NULL,
                held_max_instances BIGINT NOT NULL,
                loaded_deployment_id TEXT,
                applied_max_instances BIGINT NOT NULL,
                acked_generation BIGINT NOT NULL,
                reported_at BIGINT,
                PRIMARY KEY (function_id, worker_id)
            )",
            "CREATE INDEX placements_by_worker ON placements (worker_id)",
        ],
    },
    Migration {
        version: 10,
        name: "function load in worker reports",
        statements: &[
            // Each worker's per-function demand counters (JSON), renewed with its lease: what
            // the scheduler's autoscaler decides replicas from.
            "ALTER TABLE workers ADD COLUMN function_load TEXT NOT NULL DEFAULT '[]'",
        ],
    },
    Migration {
        version: 11,
        name: "a Function's isolation",
        statements: &[
            // 'process' (a pooled instance in the worker) or 'vm' (a KVM micro-VM).
            "ALTER TABLE functions ADD COLUMN isolation TEXT NOT NULL DEFAULT 'process'",
        ],
    },
];

/// The key of PostgreSQL's advisory lock for migrations: "fnvm_mig" in ASCII, so that it does
/// not collide with another application's lock in a shared database.
const MIGRATION_LOCK: i64 = 0x666e_766d_5f6d_6967;

/// The newest version this build knows.
pub(crate) fn latest_version() -> i64 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

/// Applies every migration the database lacks, in order; refuses a database migrated by a newer
/// build.
pub(crate) async fn migrate(pool: &AnyPool, backend: Backend) -> Result<(), StoreError> {
    for migration in MIGRATIONS {
        apply(pool, backend, migration).await?;
    }
    Ok(())
}

/// Applies `m` unless it is already applied, under the migration lock.
async fn apply(pool: &AnyPool, backend: Backend, m: &Migration) -> Result<(), StoreError> {
    let fail = |source| StoreError::Migrate {
        version: m.version,
        name: m.name,
        source,
    };
    let mut tx = match backend {
        Backend::Sqlite => pool.begin_with("BEGIN IMMEDIATE").await.map_err(fail)?,
        Backend::Postgres => {
            let mut tx = pool.begin().await.map_err(fail)?;
            // Selected through FROM so that the result is an integer, not `void`.
            sqlx::query("SELECT 1 FROM pg_advisory_xact_lock($1)")
                .bind(MIGRATION_LOCK)
                .execute(&mut *tx)
                .await
                .map_err(fail)?;
            tx
        }
    };
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS fnvm_schema_migrations (
            version BIGINT PRIMARY KEY,
            applied_at BIGINT NOT NULL
        )",
    )
    .execute(&mut *tx)
    .await
    .map_err(fail)?;
    let newest: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM fnvm_schema_migrations")
        .fetch_one(&mut *tx)
        .await
        .map_err(fail)?;
    let newest = newest.unwrap_or(0);
    if newest > latest_version() {
        tx.rollback().await.map_err(fail)?;
        return Err(StoreError::SchemaTooNew {
            found: newest,
            known: latest_version(),
        });
    }
    let applied: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM fnvm_schema_migrations WHERE version = $1")
            .bind(m.version)
            .fetch_one(&mut *tx)
            .await
            .map_err(fail)?;
    if applied > 0 {
        // Ends the transaction at once, releasing the lock for the next process.
        return tx.rollback().await.map_err(fail);
    }
    for statement in m.statements {
        sqlx::query(*statement)
            .execute(&mut *tx)
            .await
            .map_err(fail)?;
    }
    sqlx::query("INSERT INTO fnvm_schema_migrations (version, applied_at) VALUES ($1, $2)")
        .bind(m.version)
        .bind(Timestamp::now().0)
        .execute(&mut *tx)
        .await
        .map_err(fail)?;
    tx.commit().await.map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::MIGRATIONS;

    #[test]
    fn versions_increase() {
        assert!(!MIGRATIONS.is_empty());
        for pair in MIGRATIONS.windows(2) {
            assert!(pair[0].version < pair[1].version, "{pair:?}");
        }
        assert!(MIGRATIONS[0].version > 0);
    }
}
