//! Guests' logs in the metadata store: each Function keeps its latest entries (what its
//! invocations wrote to stderr), appended by workers in batches and read by the API in order.

use super::{MetadataStore, Reader, StoreError};
use crate::model::{new_id, LogEntry};
use crate::worker::logs::PendingLog;
use std::collections::HashSet;

/// Entries each Function keeps.
pub const LOG_ENTRIES_KEPT: i64 = 1000;

impl MetadataStore {
    /// Appends entries (of any Functions) and trims each Function touched to its latest
    /// [`LOG_ENTRIES_KEPT`]. Entries of Functions deleted meanwhile are dropped.
    pub async fn append_logs(&self, entries: &[PendingLog]) -> Result<(), StoreError> {
        const OP: &str = "append_logs";
        let mut tx = self.begin_write(OP).await?;
        let mut touched = HashSet::new();
        for e in entries {
            // Through the Function, so that an entry of a deleted one is simply not inserted.
            sqlx::query(
                "INSERT INTO invocation_logs (id, function_id, deployment_id, invocation_id, at, text) \
                 SELECT $1, id, $3, $4, $5, $6 FROM functions WHERE id = $2",
            )
            .bind(new_id())
            .bind(&e.function_id)
            .bind(&e.deployment_id)
            .bind(&e.invocation_id)
            .bind(e.at.0)
            .bind(&e.text)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::query(OP))?;
            touched.insert(e.function_id.as_str());
        }
        for f in touched {
            sqlx::query(
                "DELETE FROM invocation_logs WHERE function_id = $1 AND id NOT IN \
                 (SELECT id FROM invocation_logs WHERE function_id = $1 \
                  ORDER BY at DESC, id DESC LIMIT $2)",
            )
            .bind(f)
            .bind(LOG_ENTRIES_KEPT)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::query(OP))?;
        }
        tx.commit().await.map_err(StoreError::query(OP))
    }

    /// The Function's entries after `after` (a previous entry's `cursor`; `None`: from the
    /// oldest kept), oldest first, at most `limit`; `None` when the Function does not exist
    /// for `owner`.
    pub async fn logs(
        &self,
        owner: &str,
        function_id: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Option<Vec<LogEntry>>, StoreError> {
        const OP: &str = "logs";
        if !self.owns_function(owner, function_id, OP).await? {
            return Ok(None);
        }
        // A cursor is `AT.ID`; anything unreadable starts from the beginning.
        let (at, id) = after
            .and_then(|c| c.split_once('.'))
            .and_then(|(a, i)| Some((a.parse::<i64>().ok()?, i.to_string())))
            .unwrap_or((i64::MIN, String::new()));
        let rows = sqlx::query(
            "SELECT id, deployment_id, invocation_id, at, text FROM invocation_logs \
             WHERE function_id = $1 AND (at > $2 OR (at = $2 AND id > $3)) \
             ORDER BY at, id LIMIT $4",
        )
        .bind(function_id)
        .bind(at)
        .bind(id)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query(OP))?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let r = Reader::new(row, "invocation log", "id")?;
            let at = r.time("at")?;
            out.push(LogEntry {
                cursor: format!("{}.{}", at.0, r.id()),
                at,
                deployment_id: r.get("deployment_id")?,
                invocation_id: r.get("invocation_id")?,
                text: r.get("text")?,
            });
        }
        Ok(Some(out))
    }
}
