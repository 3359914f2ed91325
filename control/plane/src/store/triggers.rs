//! Functions' Pulsar triggers in the metadata store: set (create or replace, scoped by owner),
//! read, delete, and the list every worker reads to know what to consume. The token is stored
//! sealed (see `crate::sealed`); only workers open it.

use super::{now, MetadataStore, Reader, StoreError};
use crate::model::{pulsar_subscription, PulsarTrigger, PulsarTriggerSpec};
use sqlx::any::AnyRow;

macro_rules! trigger_columns {
    () => {
        "function_id, pulsar_url, pulsar_token, topic, topic_is_regex, structured, \
         dead_letter_topic, created_at, updated_at"
    };
}

/// A trigger as workers need it: with its sealed token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredPulsarTrigger {
    /// The trigger, as the API shows it.
    pub trigger: PulsarTrigger,
    /// The token, sealed with the function id as associated data.
    pub sealed_token: Option<String>,
}

fn trigger_from_row(row: &AnyRow) -> Result<StoredPulsarTrigger, StoreError> {
    let r = Reader::new(row, "pulsar trigger", "function_id")?;
    let sealed_token: Option<String> = r.get("pulsar_token")?;
    let flag = |column: &str| -> Result<bool, StoreError> {
        let v: i64 = r.get(column)?;
        Ok(v != 0)
    };
    Ok(StoredPulsarTrigger {
        trigger: PulsarTrigger {
            subscription: pulsar_subscription(&r.id()),
            function_id: r.id(),
            pulsar_url: r.get("pulsar_url")?,
            pulsar_topic_fqdn: r.get("topic")?,
            pulsar_topic_fqdn_is_regex: flag("topic_is_regex")?,
            external: true,
            has_token: sealed_token.is_some(),
            structured: flag("structured")?,
            dead_letter_topic: r.get("dead_letter_topic")?,
            created_at: r.time("created_at")?,
            updated_at: r.time("updated_at")?,
        },
        sealed_token,
    })
}

impl MetadataStore {
    /// Sets (creates or replaces) the Pulsar trigger of the Function `function_id` of `owner`;
    /// `None` if there is no such Function. `dead_letter_topic` is the one `spec` resolved to;
    /// `sealed_token` the token sealed.
    pub async fn set_pulsar_trigger(
        &self,
        owner: &str,
        function_id: &str,
        spec: &PulsarTriggerSpec,
        dead_letter_topic: &str,
        sealed_token: Option<&str>,
    ) -> Result<Option<PulsarTrigger>, StoreError> {
        let at = now();
        let row = sqlx::query(concat!(
            "INSERT INTO pulsar_triggers (",
            trigger_columns!(),
            ", owner_id) SELECT id, $3, $4, $5, $6, $7, $8, $9, $9, owner_id FROM functions \
             WHERE id = $1 AND owner_id = $2 \
             ON CONFLICT (function_id) DO UPDATE SET pulsar_url = excluded.pulsar_url, \
             pulsar_token = excluded.pulsar_token, topic = excluded.topic, \
             topic_is_regex = excluded.topic_is_regex, structured = excluded.structured, \
             dead_letter_topic = excluded.dead_letter_topic, updated_at = excluded.updated_at \
             RETURNING ",
            trigger_columns!()
        ))
        .bind(function_id)
        .bind(owner)
        .bind(&spec.pulsar_url)
        .bind(sealed_token)
        .bind(&spec.pulsar_topic_fqdn)
        .bind(i64::from(spec.pulsar_topic_fqdn_is_regex))
        .bind(i64::from(spec.structured))
        .bind(dead_letter_topic)
        .bind(at)
        .fetch_optional(&self.pool)
        .await
        .map_err(StoreError::query("set_pulsar_trigger"))?;
        let t = row.as_ref().map(trigger_from_row).transpose()?;
        if t.is_some() {
            self.notify_change().await;
        }
        Ok(t.map(|t| t.trigger))
    }

    /// The Pulsar trigger of the Function `function_id` of `owner`, if it has one.
    pub async fn pulsar_trigger(
        &self,
        owner: &str,
        function_id: &str,
    ) -> Result<Option<PulsarTrigger>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            trigger_columns!(),
            " FROM pulsar_triggers WHERE owner_id = $1 AND function_id = $2"
        ))
        .bind(owner)
        .bind(function_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(StoreError::query("pulsar_trigger"))?;
        Ok(row
            .as_ref()
            .map(trigger_from_row)
            .transpose()?
            .map(|t| t.trigger))
    }

    /// Deletes the Function's Pulsar trigger; whether it had one.
    pub async fn delete_pulsar_trigger(
        &self,
        owner: &str,
        function_id: &str,
    ) -> Result<bool, StoreError> {
        let done =
            sqlx::query("DELETE FROM pulsar_triggers WHERE owner_id = $1 AND function_id = $2")
                .bind(owner)
                .bind(function_id)
                .execute(&self.pool)
                .await
                .map_err(StoreError::query("delete_pulsar_trigger"))?;
        let deleted = done.rows_affected() > 0;
        if deleted {
            self.notify_change().await;
        }
        Ok(deleted)
    }

    /// Every Pulsar trigger, of every owner, with its sealed token: what workers consume.
    pub async fn pulsar_triggers(&self) -> Result<Vec<StoredPulsarTrigger>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            trigger_columns!(),
            " FROM pulsar_triggers ORDER BY function_id"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query("pulsar_triggers"))?;
        rows.iter().map(trigger_from_row).collect()
    }
}
