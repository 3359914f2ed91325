//! Resetting slots: what happens to a slot between two instances. An ended instance hands its
//! slot back ([`PoolInner::give_back`]) to the pool's reset thread, or resets it inline when the
//! pool has none (or the thread is gone); the reset restores the pages the instance wrote (kept
//! resident up to a bound, so the next instance takes no page faults) and re-protects grown
//! memory, then the slot goes back on the free list. The pages to restore come from a scan of
//! the page tables, or, when the instance's thread took no page fault meanwhile, from the
//! previous reset (see `crate::faults`).

use super::slot::Slot;
use super::{PoolError, PoolInner};
use crate::ResourceError;
use std::sync::{mpsc, Arc};

/// The message that stops the reset thread (never a slot index: slots are at most 65536).
pub(super) const SHUTDOWN: u32 = u32::MAX;

impl PoolInner {
    /// Takes back slot `i` from an ended instance: to the reset thread if there is one, else
    /// resets it here.
    pub(super) fn give_back(&self, i: u32) {
        if let Some(tx) = &self.reset_tx {
            if tx.send(i).is_ok() {
                return;
            }
        }
        // SAFETY: the caller owned the slot and gives it up to us until we release it.
        let scanned = unsafe { self.slot(i) }.reset(self.config.keep_resident_bytes);
        self.reset_done(scanned);
        self.release(i);
    }
}

impl Slot {
    /// Drops every page kept resident by the last reset, so that the resident pages counted
    /// after the next instance are exactly the ones it touched.
    pub(super) fn drop_kept_pages(&mut self) -> Result<(), ResourceError> {
        if self.kept_extent > 0 {
            self.scratch.private_known = false;
            self.memory
                .discard_kept(self.kept_extent)
                .map_err(ResourceError::Slot)?;
            self.kept_extent = 0;
        }
        Ok(())
    }

    /// Returns the slot to its module's initial memory. Costs in proportion to the pages the
    /// instance touched. Says whether it read the page tables to find them.
    pub(super) fn reset(&mut self, keep_resident: usize) -> bool {
        if let Some(inst) = self.instance.as_deref_mut() {
            inst.host_data = std::ptr::null_mut();
        }
        let mark = self.fault_mark.take();
        if !self.dirty {
            return false;
        }
        let no_new_private = mark.is_some_and(crate::faults::none_since);
        let image = self.prepared.as_ref().and_then(|p| p.image());
        let extent = self.memory.def.length as usize;
        let scans = self.scratch.scans;
        match self
            .memory
            .reset_in_slot(image, keep_resident, &mut self.scratch, no_new_private)
        {
            Ok(kept) => self.kept_extent = if kept > 0 { extent } else { 0 },
            Err(_) => {
                // Could not reset in place: forget the module so the next instance rebuilds
                // the slot from scratch (remapping the whole memory).
                self.prepared = None;
                self.instance = None;
            }
        }
        self.dirty = false;
        self.scratch.scans != scans
    }
}

/// Stops the reset thread when the last pool handle goes (instances still alive then reset
/// inline when dropped).
pub(super) struct ResetThread {
    inner: Arc<PoolInner>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl ResetThread {
    pub(super) fn start(
        inner: Arc<PoolInner>,
        rx: mpsc::Receiver<u32>,
    ) -> Result<ResetThread, PoolError> {
        let worker = inner.clone();
        let handle = std::thread::Builder::new()
            .name("fnvm-slot-reset".into())
            .spawn(move || {
                // Ends at SHUTDOWN, dropping the receiver: instances dropped later reset their
                // slot themselves.
                for i in rx.iter().take_while(|i| *i != SHUTDOWN) {
                    // SAFETY: a dropped instance sent us its slot index and gave up the slot;
                    // we own it until we push it back on the free list.
                    let scanned =
                        unsafe { worker.slot(i) }.reset(worker.config.keep_resident_bytes);
                    worker.reset_done(scanned);
                    worker.release(i);
                }
            })
            .map_err(PoolError::ResetThread)?;
        Ok(ResetThread {
            inner,
            handle: Some(handle),
        })
    }
}

impl Drop for ResetThread {
    fn drop(&mut self) {
        if let Some(tx) = &self.inner.reset_tx {
            let _ = tx.send(SHUTDOWN);
        }
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
