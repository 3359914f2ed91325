//! The CPU time the calling thread has used, from `CLOCK_THREAD_CPUTIME_ID` (exact;
//! `getrusage`'s is only as fine as the scheduler tick: a 3 µs run can read as 4 ms). Taken
//! before and after a guest's run, it tells a run that computed from one that was only
//! preempted by the scheduler (wall time without CPU time), which a busy machine does to short
//! runs all the time.

use std::time::Duration;

/// CPU time (user and system) the calling thread has used so far; zero if the kernel refuses
/// (it does not, for this clock on Linux).
pub fn thread_cpu_time() -> Duration {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one `timespec` into the valid, exclusive pointer.
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) } != 0 {
        return Duration::ZERO;
    }
    Duration::from_secs(u64::try_from(t.tv_sec).unwrap_or(0))
        + Duration::from_nanos(u64::try_from(t.tv_nsec).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn computing_counts_and_sleeping_does_not() {
        let start = thread_cpu_time();
        let t = std::time::Instant::now();
        let mut x = 0u64;
        while t.elapsed() < Duration::from_millis(30) {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        let computed = thread_cpu_time() - start;
        assert!(computed >= Duration::from_millis(10), "{computed:?}");
        let before = thread_cpu_time();
        std::thread::sleep(Duration::from_millis(20));
        let slept = thread_cpu_time() - before;
        assert!(slept < Duration::from_millis(10), "{slept:?}");
    }
}
