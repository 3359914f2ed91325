//! A function's share of instances on this worker: how many of its invocations may run here at
//! once. The scheduler sets it (the function's `maxInstances` split over its replicas); it can
//! grow (more permits at once) or shrink, and shrinking never stops what runs: the permits in
//! use beyond the new share are retired as they come back. What the worker enforces meanwhile
//! ([`InstanceGate::applied`]: the share plus what is still to retire) is what it reports, so
//! the scheduler gives that part of the share to another worker only once it is retired here.
//! The gate also measures the function's demand here ([`Demand`]): instances granted and
//! refused, and the time-integral of instances running, from which the scheduler's autoscaler
//! derives the mean concurrency between two reports.

use crate::model::Timestamp;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

/// The gate of one function's instances.
#[derive(Debug)]
pub struct InstanceGate {
    permits: Arc<Semaphore>,
    counts: Mutex<Counts>,
    /// Told when the last permit to retire is retired (the worker reports its share then).
    retired: Option<Arc<Notify>>,
}

#[derive(Debug)]
struct Counts {
    /// The share.
    share: u32,
    /// Permits in use beyond the share, to be retired when they come back.
    retiring: u32,
    /// Instances running now.
    running: u32,
    /// Instances granted and refused (no permit within the wait), since the gate was made.
    granted: u64,
    refused: u64,
    /// The integral of `running` over time, in instance-microseconds, up to `changed`.
    busy_us: u64,
    changed: Instant,
    /// When an instance was last granted (on the monotonic clock, read once per grant anyway;
    /// turned into wall-clock time only when the demand is read).
    last_granted: Option<Instant>,
}

impl Counts {
    /// Brings `busy_us` up to now.
    fn account(&mut self, now: Instant) {
        let us = now.saturating_duration_since(self.changed).as_micros() as u64;
        self.busy_us = self
            .busy_us
            .saturating_add(us.saturating_mul(u64::from(self.running)));
        self.changed = now;
    }
}

/// A function's demand on this worker, counted since its gate was made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Demand {
    /// Instances granted.
    pub granted: u64,
    /// Requests refused for want of an instance.
    pub refused: u64,
    /// The time-integral of instances running, in instance-microseconds.
    pub busy_us: u64,
    /// When an instance was last granted.
    pub last_granted: Option<Timestamp>,
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
        c.account(Instant::now());
        c.running = c.running.saturating_sub(1);
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
            counts: Mutex::new(Counts {
                share,
                retiring: 0,
                running: 0,
                granted: 0,
                refused: 0,
                busy_us: 0,
                changed: Instant::now(),
                last_granted: None,
            }),
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

    /// The demand so far.
    pub fn demand(&self) -> Demand {
        let mut c = self.lock();
        let now = Instant::now();
        c.account(now);
        let wall = Timestamp::now();
        Demand {
            granted: c.granted,
            refused: c.refused,
            busy_us: c.busy_us,
            last_granted: c.last_granted.map(|at| {
                let ago = now.saturating_duration_since(at).as_millis();
                Timestamp(
                    wall.0
                        .saturating_sub(i64::try_from(ago).unwrap_or(i64::MAX)),
                )
            }),
        }
    }

    /// A permit if one is free now (not counted as refused if none is: the caller waits).
    pub fn try_acquire(self: &Arc<Self>) -> Option<InstancePermit> {
        let permit = self.permits.clone().try_acquire_owned().ok()?;
        Some(self.wrap(permit))
    }

    /// A permit, waiting at most `wait` for one; a refusal is counted if none came.
    pub async fn acquire(self: &Arc<Self>, wait: Duration) -> Option<InstancePermit> {
        let permit = tokio::time::timeout(wait, self.permits.clone().acquire_owned()).await;
        match permit {
            Ok(Ok(permit)) => Some(self.wrap(permit)),
            _ => {
                self.lock().refused += 1;
                None
            }
        }
    }

    /// A permit, waiting as long as it takes.
    pub async fn acquire_when_free(self: &Arc<Self>) -> Option<InstancePermit> {
        let permit = self.permits.clone().acquire_owned().await.ok()?;
        Some(self.wrap(permit))
    }

    fn wrap(self: &Arc<Self>, permit: OwnedSemaphorePermit) -> InstancePermit {
        let mut c = self.lock();
        let now = Instant::now();
        c.account(now);
        c.running += 1;
        c.granted += 1;
        c.last_granted = Some(now);
        drop(c);
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
    async fn demand_counts_grants_refusals_and_busy_time() {
        let g = InstanceGate::new(2);
        assert_eq!(g.demand(), Demand::default());
        let before = Timestamp::now();
        let a = g.try_acquire().unwrap();
        let b = g.try_acquire().unwrap();
        assert!(g.acquire(Duration::from_millis(1)).await.is_none());
        std::thread::sleep(Duration::from_millis(30));
        drop(a);
        let d = g.demand();
        assert_eq!((d.granted, d.refused), (2, 1));
        // The last grant in wall-clock time: after `before`, 30 ms or more before now (to the
        // millisecond, truncated).
        let granted = d.last_granted.unwrap();
        assert!(granted.0 >= before.0 - 1, "{granted:?} {before:?}");
        assert!(granted.0 <= Timestamp::now().0 - 29, "{granted:?}");
        // Two instances for at least 30 ms: at least 60 instance-ms.
        assert!(d.busy_us >= 60_000, "{d:?}");
        std::thread::sleep(Duration::from_millis(20));
        // One still runs: the integral grows while it does, and stops once it ends.
        drop(b);
        let e = g.demand();
        assert!(e.busy_us >= d.busy_us + 20_000, "{e:?}");
        std::thread::sleep(Duration::from_millis(10));
        assert!(g.demand().busy_us < e.busy_us + 1_000);
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
