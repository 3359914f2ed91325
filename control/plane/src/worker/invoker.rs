//! The threads guest code runs on. The HTTP reactor hands each invocation, as a job, to a fixed
//! set of threads (sized to the machine and the pool), and keeps accepting and reading requests
//! while they compute. A job sends its outcome back before the instance it used is reset, so the
//! response leaves first and the reset costs the invoking thread, not the client.
//!
//! One exception, for speed: handing a job to another thread costs several context switches
//! (measured: 6.3 per request, against 0.4 when the reactor's thread runs it; on these machines
//! that is a third of the throughput). A job that is known to be short, of a Function whose
//! recent invocations all were ([`RunHistory`]), may run on the reactor thread that read the
//! request, while one of `inline_slots` is free ([`Invoker::dispatch`]). The HTTP threads of
//! [`super::reactors`] each own their connections, so each may: a short run delays only its
//! own connections. On a shared runtime there are fewer slots than threads, so that one
//! always accepts and reads. A guest that turns out slow costs its thread once, then its
//! Function runs on the invoker threads again.
//!
//! Telling a slow guest from a preempted one takes the run's CPU time, and the thread's CPU
//! clock is a system call (5% of a hello request's CPU here). So a short Function's runs are
//! not measured; one that lasts long on the wall clock puts the Function on probation, and the
//! next runs, measured, decide ([`RunHistory::wants_cpu_time`]).

use std::sync::atomic::{AtomicIsize, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A unit of work for an invoker thread.
pub type Job = Box<dyn FnOnce() + Send + 'static>;

/// The invoker threads.
#[derive(Debug)]
pub struct Invoker {
    tx: crossbeam_channel::Sender<Job>,
    threads: usize,
    /// Jobs that may run on reactor threads at once (0: never).
    inline_slots: AtomicIsize,
    _joins: Arc<Joins>,
}

/// Where a job went: run here already, with what it replied (`None` if it did not, a bug),
/// or queued for an invoker thread, which replies on the channel.
#[derive(Debug)]
pub enum Dispatched<R> {
    /// On the calling (reactor) thread, finished.
    Inline(Option<R>),
    /// Queued for an invoker thread.
    Queued(tokio::sync::oneshot::Receiver<R>),
}

/// The invoker threads are gone (the worker is shutting down).
#[derive(Debug)]
pub struct Closed;

/// A run that computed this long, or waited in a hostcall and lasted this long, makes its
/// Function's next jobs go to the invoker threads. A run that only lasted long because the
/// scheduler preempted its thread does not: a busy machine does that to short runs all the
/// time, and must not lose the fast path exactly when it is busiest.
pub const SHORT_RUN: Duration = Duration::from_millis(1);

/// Short runs in a row before a Function's jobs may run inline.
const SHORT_STREAK: u32 = 16;

/// Runs measured after one whose CPU time was not read and that took long on the wall clock
/// (computing, or preempted: the measured runs tell).
const PROBATION_RUNS: u32 = 4;

/// How long a Function that ran long stays off the reactor, whatever it does meanwhile: doubled
/// by each long run within [`LONG_RUN_MEMORY`] of the previous one, up to [`MAX_PENALTY`]. A
/// run preempted by the scheduler looks long too; such noise costs a second of the slower path,
/// while a Function that is often long is soon kept off the reactor for minutes.
const FIRST_PENALTY: Duration = Duration::from_secs(1);
const MAX_PENALTY: Duration = Duration::from_secs(600);
const LONG_RUN_MEMORY: Duration = Duration::from_secs(60);

/// Whether a Function's recent invocations were all short.
#[derive(Debug)]
pub struct RunHistory {
    /// Short runs since the last long one.
    streak: AtomicU32,
    /// Runs still to measure the CPU time of.
    probation: AtomicU32,
    /// Until when (milliseconds since `epoch`) it stays off the reactor.
    penalty_until_ms: AtomicU64,
    /// The last penalty, in milliseconds, and when (since `epoch`) the last long run was.
    last_penalty_ms: AtomicU64,
    last_long_ms: AtomicU64,
    epoch: Instant,
}

impl Default for RunHistory {
    fn default() -> Self {
        RunHistory {
            streak: AtomicU32::new(0),
            probation: AtomicU32::new(0),
            penalty_until_ms: AtomicU64::new(0),
            last_penalty_ms: AtomicU64::new(0),
            last_long_ms: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }
}

impl RunHistory {
    /// Whether the next job may run inline.
    pub fn is_short(&self) -> bool {
        self.streak.load(Ordering::Relaxed) >= SHORT_STREAK
            && self.now_ms() >= self.penalty_until_ms.load(Ordering::Relaxed)
    }

    /// Whether the next run's CPU time is needed: while the Function is not known short (its
    /// runs then go to the invoker threads, where a system call is nothing to a long run), and
    /// on probation. A short Function's runs are not measured: the CPU clock is a system call
    /// that would cost every request.
    pub fn wants_cpu_time(&self) -> bool {
        !self.is_short() || self.probation.load(Ordering::Relaxed) > 0
    }

    /// Records a run: its wall time (instantiation included), its CPU time if it was measured,
    /// and whether a hostcall of it waited.
    pub fn record(&self, took: Duration, cpu: Option<Duration>, waited: bool) {
        let long = match cpu {
            Some(cpu) => cpu >= SHORT_RUN || (took >= SHORT_RUN && waited),
            None => took >= SHORT_RUN && waited,
        };
        if !long && cpu.is_none() && took >= SHORT_RUN {
            // Computing or preempted: unknown. Measure the next runs; one that computes long
            // then makes the penalty, one preempted again changes nothing.
            self.probation.store(PROBATION_RUNS, Ordering::Relaxed);
            return;
        }
        if !long {
            let _ = self
                .streak
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                    Some(n.saturating_add(1))
                });
            if cpu.is_some() {
                let _ = self
                    .probation
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
            }
            return;
        }
        // Races between threads recording at once only blur the doubling; each store is whole.
        self.streak.store(0, Ordering::Relaxed);
        let now = self.now_ms();
        let last = self.last_penalty_ms.load(Ordering::Relaxed);
        let recent = last > 0
            && now.saturating_sub(self.last_long_ms.load(Ordering::Relaxed))
                < LONG_RUN_MEMORY.as_millis() as u64;
        let penalty = if recent {
            (last * 2).min(MAX_PENALTY.as_millis() as u64)
        } else {
            FIRST_PENALTY.as_millis() as u64
        };
        self.last_penalty_ms.store(penalty, Ordering::Relaxed);
        self.last_long_ms.store(now, Ordering::Relaxed);
        self.penalty_until_ms
            .store(now + penalty, Ordering::Relaxed);
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }
}

/// Joins the threads when the last handle goes (after the channel closes).
#[derive(Debug)]
struct Joins(std::sync::Mutex<Vec<std::thread::JoinHandle<()>>>);

impl Drop for Joins {
    fn drop(&mut self) {
        let handles = std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()));
        for h in handles {
            let _ = h.join();
        }
    }
}

impl Invoker {
    /// Starts `threads` invoker threads; up to `inline_slots` short jobs may run on their
    /// callers' threads at once (see the module's documentation).
    pub fn new(
        threads: usize,
        inline_slots: usize,
        confine: Option<super::Confine>,
    ) -> std::io::Result<Invoker> {
        let (tx, rx) = crossbeam_channel::unbounded::<Job>();
        let mut joins = Vec::with_capacity(threads);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), String>>();
        for i in 0..threads.max(1) {
            let rx = rx.clone();
            let ready = ready_tx.clone();
            joins.push(
                std::thread::Builder::new()
                    .name(format!("fnvm-invoke-{i}"))
                    .spawn(move || {
                        let confined = confine.map_or(Ok(()), |c| c());
                        let failed = confined.is_err();
                        let _ = ready.send(confined);
                        if failed {
                            return;
                        }
                        // Ends when every sender is gone.
                        for job in rx.iter() {
                            // A panicking job (a bug) must not take the thread with it.
                            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                        }
                    })?,
            );
        }
        drop(ready_tx);
        for _ in 0..threads.max(1) {
            match ready_rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(std::io::Error::other(e)),
                Err(_) => return Err(std::io::Error::other("an invoker thread ended at start")),
            }
        }
        Ok(Invoker {
            tx,
            threads: threads.max(1),
            inline_slots: AtomicIsize::new(isize::try_from(inline_slots).unwrap_or(0)),
            _joins: Arc::new(Joins(std::sync::Mutex::new(joins))),
        })
    }

    /// Threads.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Queues `job`; it runs on the first free thread.
    pub fn submit(&self, job: Job) -> Result<(), Job> {
        self.tx.send(job).map_err(|e| e.into_inner())
    }

    /// Runs `job` here if it is `short` and an inline slot is free, else queues it. The job
    /// replies through the function it is given as soon as it has its result (before cleaning
    /// up: a queued job's reply then reaches the caller early); a job run here costs neither a
    /// box nor a channel.
    pub fn dispatch<R, F>(&self, job: F, short: bool) -> Result<Dispatched<R>, Closed>
    where
        R: Send + 'static,
        F: FnOnce(&mut dyn FnMut(R)) + Send + 'static,
    {
        if short && self.inline_slots.fetch_sub(1, Ordering::Acquire) > 0 {
            let mut out = None;
            // Given back even if the job panics (a bug), which must not reach the reactor.
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                job(&mut |r| {
                    out.get_or_insert(r);
                })
            }));
            self.inline_slots.fetch_add(1, Ordering::Release);
            return Ok(Dispatched::Inline(out));
        }
        if short {
            self.inline_slots.fetch_add(1, Ordering::Release);
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.submit(Box::new(move || {
            let mut tx = Some(tx);
            job(&mut |r| {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(r);
                }
            })
        }))
        .map_err(|_| Closed)?;
        Ok(Dispatched::Queued(rx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_run_off_the_caller_and_a_panic_spares_the_thread() {
        let inv = Invoker::new(2, 0, None).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let caller = std::thread::current().id();
        for i in 0..10 {
            let tx = tx.clone();
            inv.submit(Box::new(move || {
                if i == 3 {
                    panic!("a buggy job");
                }
                tx.send((i, std::thread::current().id())).unwrap();
            }))
            .unwrap_or_else(|_| panic!("submit"));
        }
        drop(tx);
        let got: Vec<_> = rx.iter().collect();
        assert_eq!(got.len(), 9);
        assert!(got.iter().all(|(_, t)| *t != caller));
    }

    /// The thread a job ran on, and where it was placed.
    fn thread_of(inv: &Invoker, short: bool) -> (Option<std::thread::ThreadId>, bool) {
        match inv
            .dispatch(|reply| reply(std::thread::current().id()), short)
            .unwrap()
        {
            Dispatched::Inline(t) => (t, true),
            Dispatched::Queued(rx) => (rx.blocking_recv().ok(), false),
        }
    }

    #[test]
    fn short_jobs_run_inline_while_a_slot_is_free() {
        let inv = Arc::new(Invoker::new(1, 1, None).unwrap());
        let caller = std::thread::current().id();
        assert_eq!(thread_of(&inv, true), (Some(caller), true));
        // Not short: queued, on another thread.
        let (t, inline) = thread_of(&inv, false);
        assert!(!inline);
        assert_ne!(t, Some(caller));
        assert!(t.is_some());
        // The only slot taken by a job that dispatches another: that one is queued.
        let inv2 = inv.clone();
        let outer = inv
            .dispatch(move |reply| reply(thread_of(&inv2, true)), true)
            .unwrap();
        match outer {
            Dispatched::Inline(Some((t, inline))) => {
                assert!(!inline);
                assert_ne!(t, Some(caller));
            }
            other => panic!("{other:?}"),
        }
        // A panicking inline job gives its slot back and replies nothing.
        let panicked = inv
            .dispatch(|_reply: &mut dyn FnMut(())| panic!("a buggy job"), true)
            .unwrap();
        assert!(matches!(panicked, Dispatched::Inline(None)));
        assert_eq!(inv.inline_slots.load(Ordering::SeqCst), 1);
        // A reply comes before the job ends; only the first counts.
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let queued = inv
            .dispatch(
                move |reply| {
                    reply(1);
                    reply(2);
                    std::thread::sleep(Duration::from_millis(50));
                    done_tx.send(()).unwrap();
                },
                false,
            )
            .unwrap();
        let Dispatched::Queued(rx) = queued else {
            panic!("not queued")
        };
        assert_eq!(rx.blocking_recv().unwrap(), 1);
        assert!(done_rx.try_recv().is_err(), "replied before the job ended");
        done_rx.recv().unwrap();
    }

    #[test]
    fn a_long_run_of_unmeasured_cpu_puts_a_function_on_probation() {
        let us = Duration::from_micros;
        let h = RunHistory::default();
        assert!(h.wants_cpu_time(), "not known short yet");
        for _ in 0..SHORT_STREAK {
            h.record(us(5), Some(us(5)), false);
        }
        assert!(h.is_short() && !h.wants_cpu_time());
        // Short, unmeasured: nothing changes.
        h.record(us(5), None, false);
        assert!(h.is_short() && !h.wants_cpu_time());
        // Long on the wall clock, unmeasured: still short, but the next runs are measured.
        h.record(Duration::from_millis(20), None, false);
        assert!(h.is_short() && h.wants_cpu_time());
        // Preempted, as the measured runs show: probation ends.
        for _ in 0..PROBATION_RUNS {
            h.record(us(5), Some(us(5)), false);
        }
        assert!(h.is_short() && !h.wants_cpu_time());
        // Computing: the measured run after the unmeasured long one makes the penalty.
        h.record(Duration::from_millis(20), None, false);
        h.record(
            Duration::from_millis(20),
            Some(Duration::from_millis(19)),
            false,
        );
        assert!(!h.is_short() && h.wants_cpu_time());
        // Waiting long needs no measurement.
        let w = RunHistory::default();
        for _ in 0..SHORT_STREAK {
            w.record(us(5), Some(us(5)), false);
        }
        w.record(Duration::from_millis(20), None, true);
        assert!(!w.is_short());
    }

    #[test]
    fn a_function_is_short_after_a_streak_and_not_after_a_long_run() {
        let us = Duration::from_micros;
        let h = RunHistory::default();
        assert!(!h.is_short(), "nothing known yet");
        for _ in 0..SHORT_STREAK {
            h.record(us(5), Some(us(5)), false);
        }
        assert!(h.is_short());
        // Preempted: long on the wall clock, not the guest's doing.
        h.record(Duration::from_millis(20), Some(us(5)), false);
        assert!(h.is_short());
        // Waited in a hostcall.
        h.record(Duration::from_millis(20), Some(us(5)), true);
        assert!(!h.is_short());
        for _ in 0..SHORT_STREAK {
            h.record(us(5), Some(us(5)), false);
        }
        assert!(!h.is_short(), "still within the penalty");
        assert_eq!(h.last_penalty_ms.load(Ordering::SeqCst), 1000);
        // Long again soon after (computing): the penalty doubles.
        h.record(SHORT_RUN, Some(SHORT_RUN), false);
        assert_eq!(h.last_penalty_ms.load(Ordering::SeqCst), 2000);
        for _ in 0..20 {
            h.record(SHORT_RUN * 2, Some(SHORT_RUN * 2), false);
        }
        assert_eq!(
            h.last_penalty_ms.load(Ordering::SeqCst),
            MAX_PENALTY.as_millis() as u64
        );
    }
}
