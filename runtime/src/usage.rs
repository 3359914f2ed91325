//! What the calling thread has used so far: CPU time from `CLOCK_THREAD_CPUTIME_ID` (exact;
//! `getrusage`'s is only as fine as the scheduler tick) and context switches from
//! `getrusage(RUSAGE_THREAD)`. Taken before and after a guest's run, the difference tells a run
//! that computed (CPU time) or waited (voluntary switches: a hostcall blocked) from one that was
//! only preempted by the scheduler (wall time without either), which a busy machine does to
//! short runs all the time.

use std::time::Duration;

/// A snapshot of the calling thread's resource use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ThreadUsage {
    /// CPU time (user and system).
    pub cpu: Duration,
    /// Times the thread gave up the CPU to wait (blocking system calls, futexes).
    pub voluntary_switches: u64,
    /// Times the scheduler took the CPU from it.
    pub involuntary_switches: u64,
}

impl ThreadUsage {
    /// The calling thread's use so far; zero if the kernel refuses (it does not, for
    /// `RUSAGE_THREAD` on Linux ≥ 2.6.26).
    pub fn now() -> ThreadUsage {
        // SAFETY: `rusage` is plain data, all zeroes is a valid value.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: getrusage writes one `rusage` into the valid, exclusive pointer it is given.
        if unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) } != 0 {
            return ThreadUsage::default();
        }
        let mut cpu = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes one `timespec` into the valid, exclusive pointer.
        if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut cpu) } != 0 {
            return ThreadUsage::default();
        }
        ThreadUsage {
            cpu: Duration::from_secs(u64::try_from(cpu.tv_sec).unwrap_or(0))
                + Duration::from_nanos(u64::try_from(cpu.tv_nsec).unwrap_or(0)),
            voluntary_switches: u64::try_from(ru.ru_nvcsw).unwrap_or(0),
            involuntary_switches: u64::try_from(ru.ru_nivcsw).unwrap_or(0),
        }
    }

    /// What was used between `earlier` and `self`.
    pub fn since(&self, earlier: &ThreadUsage) -> ThreadUsage {
        ThreadUsage {
            cpu: self.cpu.saturating_sub(earlier.cpu),
            voluntary_switches: self
                .voluntary_switches
                .saturating_sub(earlier.voluntary_switches),
            involuntary_switches: self
                .involuntary_switches
                .saturating_sub(earlier.involuntary_switches),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn computing_counts_cpu_and_sleeping_counts_a_voluntary_switch() {
        let start = ThreadUsage::now();
        let t = std::time::Instant::now();
        let mut x = 0u64;
        while t.elapsed() < Duration::from_millis(30) {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        let computed = ThreadUsage::now().since(&start);
        assert!(computed.cpu >= Duration::from_millis(10), "{computed:?}");
        let before = ThreadUsage::now();
        std::thread::sleep(Duration::from_millis(20));
        let slept = ThreadUsage::now().since(&before);
        assert!(slept.voluntary_switches >= 1, "{slept:?}");
        assert!(slept.cpu < Duration::from_millis(10), "{slept:?}");
    }
}
