//! Change notifications: on PostgreSQL, every write that changes what workers serve (a
//! deployment's status, its deletion, a Function's settings or deletion) sends a `NOTIFY` on
//! one channel, and workers `LISTEN` to it instead of polling fast. SQLite has no such thing:
//! there, [`MetadataStore::changes`] is `None` and workers poll.

use super::{Backend, MetadataStore, StoreError};
use std::time::Duration;

/// The channel workers listen on.
const CHANNEL: &str = "fnvm_changes";

/// How long subscribing may take.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(5);

/// A subscription to change notifications.
#[derive(Debug)]
pub struct Changes {
    listener: sqlx::postgres::PgListener,
}

impl Changes {
    /// Waits for the next notification, or `timeout`; an error when the connection broke (the
    /// caller polls and subscribes again).
    pub async fn wait(&mut self, timeout: Duration) -> Result<(), StoreError> {
        match tokio::time::timeout(timeout, self.listener.recv()).await {
            Err(_) => Ok(()),
            Ok(Ok(_)) => {
                // Coalesce a burst: whatever else is already buffered is covered by the same
                // pass. (Not `try_recv`: it waits for the next notification.)
                while self.listener.next_buffered().is_some() {}
                Ok(())
            }
            Ok(Err(source)) => Err(StoreError::Notifications { source }),
        }
    }
}

impl MetadataStore {
    /// A subscription to change notifications, where the database has them (PostgreSQL), and
    /// it could be made.
    pub async fn changes(&self) -> Option<Changes> {
        if self.backend != Backend::Postgres {
            return None;
        }
        // Bounded: an unreachable database must not hold the caller (it polls meanwhile).
        let subscribe = async {
            let mut listener = sqlx::postgres::PgListener::connect(&self.connect_url).await?;
            listener.listen(CHANNEL).await?;
            Ok::<_, sqlx::Error>(listener)
        };
        match tokio::time::timeout(SUBSCRIBE_TIMEOUT, subscribe).await {
            Ok(Ok(listener)) => Some(Changes { listener }),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "store: subscribing to notifications");
                None
            }
            Err(_) => {
                tracing::warn!("store: subscribing to notifications timed out");
                None
            }
        }
    }

    /// Tells workers that something they serve changed (PostgreSQL; nothing elsewhere). A lost
    /// notification only delays them until their next poll.
    pub(crate) async fn notify_change(&self) {
        if self.backend != Backend::Postgres {
            return;
        }
        let sent = sqlx::query("SELECT 1 FROM (SELECT pg_notify($1, '')) AS n")
            .bind(CHANNEL)
            .execute(&self.pool)
            .await;
        if let Err(e) = sent {
            tracing::warn!(error = %e, "store: sending a change notification");
        }
    }
}
