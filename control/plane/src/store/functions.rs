//! Functions and their releases in the metadata store, and the blobs (uploaded bytes by hash)
//! releases point to: creating, reading, replacing and deleting Functions scoped by owner;
//! recording an upload as a content-addressed release, race-free; finding blobs no release uses.

use super::{now, to_db, MetadataStore, Reader, StoreError};
use crate::model::{new_id, Function, FunctionSpec, Platform, Release};
use sqlx::any::AnyRow;
use std::collections::BTreeMap;
use std::time::Duration;

macro_rules! function_columns {
    () => {
        "id, owner_id, name, description, tag, environment, max_memory, max_instances, \
         timeout_ms, created_at, updated_at, egress_allow, max_attempts, retry_backoff_ms, \
         isolation"
    };
}

macro_rules! release_columns {
    () => {
        "id, function_id, platform, sha256, size, created_at"
    };
}

fn function_from_row(row: &AnyRow) -> Result<Function, StoreError> {
    let r = Reader::new(row, "function", "id")?;
    let environment: String = r.get("environment")?;
    let environment: BTreeMap<String, String> =
        serde_json::from_str(&environment).map_err(|e| r.corrupt("environment", e))?;
    let egress_allow: String = r.get("egress_allow")?;
    let egress_allow: Vec<String> =
        serde_json::from_str(&egress_allow).map_err(|e| r.corrupt("egress_allow", e))?;
    Ok(Function {
        id: r.id(),
        owner_id: r.get("owner_id")?,
        name: r.get("name")?,
        description: r.get("description")?,
        tag: r.get("tag")?,
        environment,
        max_memory: r.u64("max_memory")?,
        max_instances: r.u32("max_instances")?,
        timeout_ms: r.u64("timeout_ms")?,
        egress_allow,
        max_attempts: r.u32("max_attempts")?,
        retry_backoff_ms: r.u64("retry_backoff_ms")?,
        isolation: {
            let v: String = r.get("isolation")?;
            v.parse().map_err(|e| r.corrupt("isolation", e))?
        },
        created_at: r.time("created_at")?,
        updated_at: r.time("updated_at")?,
    })
}

fn release_from_row(row: &AnyRow) -> Result<Release, StoreError> {
    let r = Reader::new(row, "release", "id")?;
    Ok(Release {
        id: r.id(),
        function_id: r.get("function_id")?,
        platform: r.platform("platform")?,
        sha256: r.get("sha256")?,
        size: r.u64("size")?,
        created_at: r.time("created_at")?,
    })
}

/// A spec's stored values (checked to fit before anything is written).
struct StoredSpec {
    environment: String,
    egress_allow: String,
    max_memory: i64,
    max_instances: i64,
    timeout_ms: i64,
    max_attempts: i64,
    retry_backoff_ms: i64,
}

impl StoredSpec {
    fn new(spec: &FunctionSpec) -> Result<StoredSpec, StoreError> {
        Ok(StoredSpec {
            // A map of strings always serialises; the error is kept rather than unwrapped.
            environment: serde_json::to_string(&spec.environment).map_err(|e| {
                StoreError::Corrupt {
                    what: "environment to store".into(),
                    detail: e.to_string(),
                }
            })?,
            egress_allow: serde_json::to_string(&spec.egress_allow).map_err(|e| {
                StoreError::Corrupt {
                    what: "egress rules to store".into(),
                    detail: e.to_string(),
                }
            })?,
            max_memory: to_db("maxMemory", spec.max_memory)?,
            max_instances: i64::from(spec.max_instances),
            timeout_ms: to_db("timeoutMs", spec.timeout_ms)?,
            max_attempts: i64::from(spec.max_attempts),
            retry_backoff_ms: to_db("retryBackoffMs", spec.retry_backoff_ms)?,
        })
    }
}

/// Whether `s` looks like what [`Release::sha256`] holds: 64 lowercase hex digits (so that one
/// content has one spelling, and one release).
fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

impl MetadataStore {
    /// Creates a Function of `owner`.
    pub async fn create_function(
        &self,
        owner: &str,
        spec: &FunctionSpec,
    ) -> Result<Function, StoreError> {
        let stored = StoredSpec::new(spec)?;
        let at = now();
        let row = sqlx::query(concat!(
            "INSERT INTO functions (",
            function_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10, $11, $12, $13, $14) RETURNING ",
            function_columns!()
        ))
        .bind(new_id())
        .bind(owner)
        .bind(spec.name.as_deref())
        .bind(spec.description.as_deref())
        .bind(spec.tag.as_deref())
        .bind(stored.environment)
        .bind(stored.max_memory)
        .bind(stored.max_instances)
        .bind(stored.timeout_ms)
        .bind(at)
        .bind(stored.egress_allow)
        .bind(stored.max_attempts)
        .bind(stored.retry_backoff_ms)
        .bind(spec.isolation.as_str())
        .fetch_one(&self.pool)
        .await
        .map_err(StoreError::query("create_function"))?;
        function_from_row(&row)
    }

    /// The Functions of `owner`, oldest first.
    pub async fn list_functions(&self, owner: &str) -> Result<Vec<Function>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            function_columns!(),
            " FROM functions WHERE owner_id = $1 ORDER BY created_at, id"
        ))
        .bind(owner)
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query("list_functions"))?;
        rows.iter().map(function_from_row).collect()
    }

    /// The Function `id` of `owner`.
    pub async fn get_function(
        &self,
        owner: &str,
        id: &str,
    ) -> Result<Option<Function>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            function_columns!(),
            " FROM functions WHERE owner_id = $1 AND id = $2"
        ))
        .bind(owner)
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(StoreError::query("get_function"))?;
        row.as_ref().map(function_from_row).transpose()
    }

    /// Replaces every field of the Function `id` of `owner` at once; `None` if there is none.
    pub async fn replace_function(
        &self,
        owner: &str,
        id: &str,
        spec: &FunctionSpec,
    ) -> Result<Option<Function>, StoreError> {
        let stored = StoredSpec::new(spec)?;
        let row = sqlx::query(concat!(
            "UPDATE functions SET name = $1, description = $2, tag = $3, environment = $4, \
             max_memory = $5, max_instances = $6, timeout_ms = $7, updated_at = $8, \
             egress_allow = $11, max_attempts = $12, retry_backoff_ms = $13, isolation = $14 \
             WHERE owner_id = $9 AND id = $10 RETURNING ",
            function_columns!()
        ))
        .bind(spec.name.as_deref())
        .bind(spec.description.as_deref())
        .bind(spec.tag.as_deref())
        .bind(stored.environment)
        .bind(stored.max_memory)
        .bind(stored.max_instances)
        .bind(stored.timeout_ms)
        .bind(now())
        .bind(owner)
        .bind(id)
        .bind(stored.egress_allow)
        .bind(stored.max_attempts)
        .bind(stored.retry_backoff_ms)
        .bind(spec.isolation.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(StoreError::query("replace_function"))?;
        let f = row.as_ref().map(function_from_row).transpose()?;
        if f.is_some() {
            self.notify_change().await;
        }
        Ok(f)
    }

    /// The Functions that have a deployment workers serve (`DEPLOYING` or `READY`), of every
    /// owner: what a worker needs of their settings.
    pub async fn serving_functions(&self) -> Result<Vec<Function>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            function_columns!(),
            " FROM functions f WHERE EXISTS (SELECT 1 FROM deployments d \
             WHERE d.function_id = f.id AND d.status IN ('DEPLOYING', 'READY')) \
             ORDER BY created_at, id"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query("serving_functions"))?;
        rows.iter().map(function_from_row).collect()
    }

    /// Deletes the Function `id` of `owner` with its deployments and releases; whether there
    /// was one. The blobs stay, for the garbage collector ([`MetadataStore::unreferenced_blobs`]).
    pub async fn delete_function(&self, owner: &str, id: &str) -> Result<bool, StoreError> {
        const OP: &str = "delete_function";
        let mut tx = self.begin_write(OP).await?;
        // Children first (the foreign keys also cascade, which catches a release committed
        // by a concurrent upload after these statements ran).
        sqlx::query("DELETE FROM deployments WHERE owner_id = $1 AND function_id = $2")
            .bind(owner)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::query(OP))?;
        sqlx::query(
            "DELETE FROM releases WHERE function_id = $2 \
             AND EXISTS (SELECT 1 FROM functions f WHERE f.id = $2 AND f.owner_id = $1)",
        )
        .bind(owner)
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::query(OP))?;
        let deleted = sqlx::query("DELETE FROM functions WHERE owner_id = $1 AND id = $2")
            .bind(owner)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::query(OP))?
            .rows_affected();
        tx.commit().await.map_err(StoreError::query(OP))?;
        if deleted > 0 {
            self.notify_change().await;
        }
        Ok(deleted > 0)
    }

    /// Records uploaded bytes (`sha256`, lowercase hex, and `size`) as a release of the
    /// Function `function_id`, and the blob if it is new. Idempotent: the same bytes for the
    /// same Function are one release, which is returned as first recorded (with its platform),
    /// whoever else records them at the same time.
    pub async fn add_release(
        &self,
        function_id: &str,
        platform: Platform,
        sha256: &str,
        size: u64,
    ) -> Result<Release, StoreError> {
        const OP: &str = "add_release";
        if !is_sha256_hex(sha256) {
            return Err(StoreError::InvalidSha256 {
                sha256: sha256.chars().take(80).collect(),
            });
        }
        let stored_size = to_db("size", size)?;
        let at = now();
        let mut tx = self.begin_write(OP).await?;
        // A concurrent insert of the same blob or release makes these wait for it, then do
        // nothing: the row is there.
        sqlx::query(
            "INSERT INTO blobs (sha256, size, created_at, touched_at) VALUES ($1, $2, $3, $3) \
             ON CONFLICT (sha256) DO NOTHING",
        )
        .bind(sha256)
        .bind(stored_size)
        .bind(at)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::query(OP))?;
        let recorded: i64 = sqlx::query_scalar("SELECT size FROM blobs WHERE sha256 = $1")
            .bind(sha256)
            .fetch_one(&mut *tx)
            .await
            .map_err(StoreError::query(OP))?;
        if recorded != stored_size {
            tx.rollback().await.map_err(StoreError::query(OP))?;
            return Err(StoreError::BlobSizeMismatch {
                sha256: sha256.to_string(),
                stored: u64::try_from(recorded).unwrap_or(0),
                given: size,
            });
        }
        // `WHERE` also keeps SQLite from reading `ON CONFLICT` as a join constraint.
        let inserted = sqlx::query(concat!(
            "INSERT INTO releases (",
            release_columns!(),
            ") SELECT $1, id, $3, $4, $5, $6 FROM functions WHERE id = $2 \
             ON CONFLICT (function_id, sha256) DO NOTHING RETURNING ",
            release_columns!()
        ))
        .bind(new_id())
        .bind(function_id)
        .bind(platform.as_str())
        .bind(sha256)
        .bind(stored_size)
        .bind(at)
        .fetch_optional(&mut *tx)
        .await
        .map_err(StoreError::query(OP))?;
        let row = match inserted {
            Some(row) => row,
            None => {
                let existing = sqlx::query(concat!(
                    "SELECT ",
                    release_columns!(),
                    " FROM releases WHERE function_id = $1 AND sha256 = $2"
                ))
                .bind(function_id)
                .bind(sha256)
                .fetch_optional(&mut *tx)
                .await
                .map_err(StoreError::query(OP))?;
                match existing {
                    Some(row) => row,
                    None => {
                        tx.rollback().await.map_err(StoreError::query(OP))?;
                        return Err(StoreError::FunctionNotFound {
                            function_id: function_id.to_string(),
                        });
                    }
                }
            }
        };
        tx.commit().await.map_err(StoreError::query(OP))?;
        release_from_row(&row)
    }

    /// The releases of the Function `function_id` of `owner`, oldest first (none if the
    /// Function is not `owner`'s).
    pub async fn list_releases(
        &self,
        owner: &str,
        function_id: &str,
    ) -> Result<Vec<Release>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            release_columns!(),
            " FROM releases WHERE function_id = $2 \
             AND EXISTS (SELECT 1 FROM functions f WHERE f.id = $2 AND f.owner_id = $1) \
             ORDER BY created_at, id"
        ))
        .bind(owner)
        .bind(function_id)
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query("list_releases"))?;
        rows.iter().map(release_from_row).collect()
    }

    /// The release `release_id` of the Function `function_id` of `owner`.
    pub async fn get_release(
        &self,
        owner: &str,
        function_id: &str,
        release_id: &str,
    ) -> Result<Option<Release>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            release_columns!(),
            " FROM releases WHERE id = $3 AND function_id = $2 \
             AND EXISTS (SELECT 1 FROM functions f WHERE f.id = $2 AND f.owner_id = $1)"
        ))
        .bind(owner)
        .bind(function_id)
        .bind(release_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(StoreError::query("get_release"))?;
        row.as_ref().map(release_from_row).transpose()
    }

    /// Records that the bytes `sha256` (of `size` bytes) are about to be stored in the artifact
    /// store: creates their blob or renews its `touched_at`. Call it before storing the bytes,
    /// then record the release within [`MetadataStore::unreferenced_blobs`]'s grace period: the
    /// garbage collector leaves recently touched blobs alone. If a collection of these very
    /// bytes is under way, waits for it to finish (so the bytes are stored again after it
    /// deleted them, never before), up to `wait`.
    pub async fn touch_blob(
        &self,
        sha256: &str,
        size: u64,
        wait: Duration,
    ) -> Result<(), StoreError> {
        const OP: &str = "touch_blob";
        if !is_sha256_hex(sha256) {
            return Err(StoreError::InvalidSha256 {
                sha256: sha256.chars().take(80).collect(),
            });
        }
        let stored_size = to_db("size", size)?;
        let start = std::time::Instant::now();
        loop {
            let at = now();
            let touched = sqlx::query(
                "INSERT INTO blobs (sha256, size, created_at, touched_at) VALUES ($1, $2, $3, $3) \
                 ON CONFLICT (sha256) DO UPDATE SET touched_at = excluded.touched_at \
                 WHERE blobs.deleting = 0",
            )
            .bind(sha256)
            .bind(stored_size)
            .bind(at)
            .execute(&self.pool)
            .await
            .map_err(StoreError::query(OP))?
            .rows_affected();
            if touched > 0 {
                return Ok(());
            }
            if start.elapsed() >= wait {
                return Err(StoreError::BlobBusy {
                    sha256: sha256.to_string(),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The hashes of the blobs no release references, untouched for `grace` (or whose
    /// collection a crashed collector left under way), oldest first: the artifact store's
    /// garbage.
    pub async fn unreferenced_blobs(&self, grace: Duration) -> Result<Vec<String>, StoreError> {
        sqlx::query_scalar(
            "SELECT sha256 FROM blobs b \
             WHERE (b.deleting = 1 OR b.touched_at < $1) \
             AND NOT EXISTS (SELECT 1 FROM releases r WHERE r.sha256 = b.sha256) \
             ORDER BY created_at, sha256",
        )
        .bind(now() - grace_millis(grace))
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query("unreferenced_blobs"))
    }

    /// Marks the blob `sha256` as being collected, if it still is garbage (unreferenced, and
    /// untouched for `grace`); whether it did. Only then may the collector delete its bytes,
    /// and [`MetadataStore::forget_blob`] the row; uploads of the same bytes wait meanwhile.
    pub async fn begin_blob_collection(
        &self,
        sha256: &str,
        grace: Duration,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE blobs SET deleting = 1 WHERE sha256 = $1 \
             AND (deleting = 1 OR touched_at < $2) \
             AND NOT EXISTS (SELECT 1 FROM releases r WHERE r.sha256 = $1)",
        )
        .bind(sha256)
        .bind(now() - grace_millis(grace))
        .execute(&self.pool)
        .await
        .map_err(StoreError::query("begin_blob_collection"))?;
        Ok(done.rows_affected() > 0)
    }

    /// Forgets a blob whose collection began and whose bytes are deleted; whether it did.
    pub async fn forget_blob(&self, sha256: &str) -> Result<bool, StoreError> {
        let result = sqlx::query(
            "DELETE FROM blobs WHERE sha256 = $1 AND deleting = 1 \
             AND NOT EXISTS (SELECT 1 FROM releases r WHERE r.sha256 = $1)",
        )
        .bind(sha256)
        .execute(&self.pool)
        .await;
        match result {
            Ok(done) => Ok(done.rows_affected() > 0),
            // A release committed after this statement's snapshot: the foreign key refuses the
            // delete, which is the answer.
            Err(e) if super::is_foreign_key_violation(&e) => Ok(false),
            Err(e) => Err(StoreError::query("forget_blob")(e)),
        }
    }
}

/// `grace` in milliseconds, saturating.
fn grace_millis(grace: Duration) -> i64 {
    i64::try_from(grace.as_millis()).unwrap_or(i64::MAX / 2)
}
