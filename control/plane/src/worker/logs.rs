//! Guests' stderr, per Function: every invocation's non-empty stderr is queued here, bounded
//! (an entry is cut at a limit, and beyond a number of queued entries new ones are counted and
//! dropped rather than held), and written to the metadata store in batches, where each Function
//! keeps its latest entries for `GET .../functions/{functionId}/logs` and `fnvm functions logs`.
//! The request path only takes a short lock; the store is written off it.

use crate::model::Timestamp;
use crate::store::MetadataStore;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Most bytes of one invocation's stderr kept.
pub const MAX_ENTRY_BYTES: usize = 8 << 10;
/// Most entries waiting to be written.
const MAX_PENDING: usize = 4096;

/// One invocation's stderr on its way to the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingLog {
    /// The Function.
    pub function_id: String,
    /// The deployment that ran.
    pub deployment_id: String,
    /// The invocation.
    pub invocation_id: String,
    /// When it ended.
    pub at: Timestamp,
    /// Its stderr (cut at [`MAX_ENTRY_BYTES`]).
    pub text: String,
}

/// The queue.
#[derive(Debug, Default)]
pub struct LogBuffer {
    pending: Mutex<Vec<PendingLog>>,
    dropped: AtomicU64,
}

impl LogBuffer {
    /// Queues `stderr` of an invocation (nothing when it is empty).
    pub fn push(&self, function_id: &str, deployment_id: &str, invocation_id: &str, stderr: &[u8]) {
        if stderr.is_empty() {
            return;
        }
        let cut = &stderr[..stderr.len().min(MAX_ENTRY_BYTES)];
        let mut text = String::from_utf8_lossy(cut).into_owned();
        if stderr.len() > MAX_ENTRY_BYTES {
            text.push_str("\n[... cut]");
        }
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if pending.len() >= MAX_PENDING {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        pending.push(PendingLog {
            function_id: function_id.to_string(),
            deployment_id: deployment_id.to_string(),
            invocation_id: invocation_id.to_string(),
            at: Timestamp::now(),
            text,
        });
    }

    /// Takes what is queued.
    pub fn drain(&self) -> Vec<PendingLog> {
        std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Entries dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// Writes the queue to the store every `every`, until dropped. A batch the store refuses is
/// retried once on the next round, then given up (logs must never hold the worker hostage).
pub async fn flush(store: MetadataStore, buffer: Arc<LogBuffer>, every: Duration) {
    let mut retry: Vec<PendingLog> = Vec::new();
    loop {
        tokio::time::sleep(every).await;
        let mut batch = std::mem::take(&mut retry);
        let had_retry = !batch.is_empty();
        batch.extend(buffer.drain());
        if batch.is_empty() {
            continue;
        }
        if let Err(e) = store.append_logs(&batch).await {
            tracing::warn!(error = %e, entries = batch.len(), "worker: writing guests' logs");
            if !had_retry {
                retry = batch;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_cut_and_the_queue_bounded() {
        let b = LogBuffer::default();
        b.push("f", "d", "i", b"");
        assert!(b.drain().is_empty());
        b.push("f", "d", "i", &vec![b'x'; MAX_ENTRY_BYTES + 10]);
        let got = b.drain();
        assert_eq!(got.len(), 1);
        assert!(got[0].text.ends_with("[... cut]"));
        for _ in 0..MAX_PENDING + 5 {
            b.push("f", "d", "i", b"e");
        }
        assert_eq!(b.drain().len(), MAX_PENDING);
        assert_eq!(b.dropped(), 5);
    }
}
