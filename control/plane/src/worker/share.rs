//! A function's share of instances on this worker: how many of its invocations may run here at
//! once. The scheduler sets it (the function's `maxInstances` split over its replicas); it can
//! grow (more permits at once) or shrink, and shrinking never stops what runs: the permits in
//! use beyond the new share are retired as they come back. What the worker enforces meanwhile
//! ([`InstanceGate::applied`]: the share plus what is still to retire) is what it reports, so
//! the scheduler gives that part of the share to another worker only once it is retired here.

use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

/// The gate of one function's instances.
#[derive(Debug)]
pub struct InstanceGate {
    permits: Arc<Semaphore>,
    counts: Mutex<Counts>,
    /// Told when the last permit to retire is retired (the worker reports its share then).
    retired: Option<Arc<Notify>>,
}

#[derive(Debug, Default)]
struct Counts {
    /// The share.
    share: u32,
    /// Permits in use beyond the share, to be retired when they come back.
    retiring: u32,
}

/// The right to run one instance; back to the gate (or retired) when dropped.
#[derive(Debug)]
pub struct InstancePermit {
    permit: Option<OwnedSemaphorePermit>,
    gate: Arc<InstanceGate>,
}

impl Drop for InstancePermit {
    fn drop(&mut self) {
        let mut c = self.gate.lock();
        if let Some(p) = self.permit.take() {
            if c.retiring > 0 {
                c.retiring -= 1;
                p.forget();
                if c.retiring == 0 {
                    if let Some(n) = &self.gate.retired {
                        n.notify_one();
                    }
                }
            }
        }
    }
}

impl InstanceGate {
    /// A gate letting `share` instances run at once.
    pub fn new(share: u32) -> Arc<InstanceGate> {
        Self::with_notify(share, None)
    }

    /// A gate letting `share` instances run at once that tells `retired` when a lowered share
    /// is reached.
    pub fn with_notify(share: u32, retired: Option<Arc<Notify>>) -> Arc<InstanceGate> {
        Arc::new(InstanceGate {
            retired,
            permits: Arc::new(Semaphore::new(share as usize)),
            counts: Mutex::new(Counts { share, retiring: 0 }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The share.
    pub fn share(&self) -> u32 {
        self.lock().share
    }

    /// The most instances that may be running now: the share, plus those running beyond a
    /// lowered one.
    pub fn applied(&self) -> u32 {
        let c = self.lock();
        c.share + c.retiring
    }

    /// Instances that could start now.
    pub fn available(&self) -> usize {
        self.permits.available_permits()
    }

    /// Sets the share to `share`.
    pub fn set_share(&self, share: u32) {
        let mut c = self.lock();
        if share >= c.share {
            let more = share - c.share;
            // Permits still out are kept rather than retired, then new ones made.
            let kept = more.min(c.retiring);
            c.retiring -= kept;
            self.permits.add_permits((more - kept) as usize);
        } else {
            let fewer = c.share - share;
            let forgotten = self.permits.forget_permits(fewer as usize) as u32;
            c.retiring += fewer - forgotten;
        }
        c.share = share;
    }

    /// A permit if one is free now.
    pub fn try_acquire(self: &Arc<Self>) -> Option<InstancePermit> {
        let permit = self.permits.clone().try_acquire_owned().ok()?;
        Some(self.wrap(permit))
    }

    /// A permit, waiting at most `wait` for one.
    pub async fn acquire(self: &Arc<Self>, wait: Duration) -> Option<InstancePermit> {
        let permit = tokio::time::timeout(wait, self.permits.clone().acquire_owned())
            .await
            .ok()?
            .ok()?;
        Some(self.wrap(permit))
    }

    /// A permit, waiting as long as it takes.
    pub async fn acquire_when_free(self: &Arc<Self>) -> Option<InstancePermit> {
        let permit = self.permits.clone().acquire_owned().await.ok()?;
        Some(self.wrap(permit))
    }

    fn wrap(self: &Arc<Self>, permit: OwnedSemaphorePermit) -> InstancePermit {
        InstancePermit {
            permit: Some(permit),
            gate: self.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_lowered_share_retires_permits_as_they_come_back() {
        let g = InstanceGate::new(3);
        let a = g.try_acquire().unwrap();
        let b = g.try_acquire().unwrap();
        assert_eq!(g.available(), 1);
        g.set_share(1);
        // The free permit is gone at once; one of the two in use is retired when returned.
        assert_eq!((g.share(), g.applied(), g.available()), (1, 2, 0));
        assert!(g.try_acquire().is_none());
        drop(a);
        assert_eq!((g.applied(), g.available()), (1, 0));
        drop(b);
        assert_eq!((g.applied(), g.available()), (1, 1));
        let c = g.try_acquire().unwrap();
        assert!(g.try_acquire().is_none());
        drop(c);
    }

    #[tokio::test]
    async fn a_raised_share_keeps_permits_that_were_to_retire_and_wakes_a_waiter() {
        let g = InstanceGate::new(2);
        let a = g.try_acquire().unwrap();
        let _b = g.try_acquire().unwrap();
        g.set_share(0);
        assert_eq!(g.applied(), 2);
        g.set_share(1);
        assert_eq!((g.share(), g.applied(), g.available()), (1, 2, 0));
        drop(a);
        assert_eq!((g.applied(), g.available()), (1, 0));
        let g2 = g.clone();
        let waiter =
            tokio::spawn(async move { g2.acquire(Duration::from_secs(5)).await.is_some() });
        tokio::time::sleep(Duration::from_millis(20)).await;
        g.set_share(2);
        assert!(waiter.await.unwrap());
        // Share 2: b and one more.
        let _c = g.acquire(Duration::from_millis(10)).await.unwrap();
        assert!(g.try_acquire().is_none());
    }
}
