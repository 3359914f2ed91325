//! Page faults taken by the calling thread, as evidence that an instance made no new page of
//! its memory private.
//!
//! A pool slot's reset restores the pages of linear memory that are private copies (written,
//! or faulted in as fresh zero memory), found by a `PAGEMAP_SCAN` of the memory: a system call
//! that walks the page tables, about a tenth of a hello-world request's server CPU. But a page
//! only becomes private through a page fault (copy-on-write of an image page, a first touch of
//! zero memory, a swapped page coming back), and the kernel counts every fault against the
//! thread that takes it (`getrusage(RUSAGE_THREAD)`'s `ru_minflt` and `ru_majflt`, faults taken
//! inside system calls copying to guest memory included). An instance runs, and its host
//! functions write its memory, on the thread that calls it; so if the thread that created,
//! called and dropped it took no fault in between, its memory has exactly the private pages the
//! last reset left, and the reset can restore those without scanning.
//!
//! One read of the counter per instance: the baseline is the last count read on the thread
//! (before the instance existed), and any fault since, wherever it was, makes the reset scan.
//!
//! Not evidence when a page can turn private without a fault of ours: transparent huge pages
//! set to `always`, where khugepaged may collapse a slot's memory into a huge page behind our
//! back (every 4 KiB page of it then writable without a fault). [`mark`] gives no mark then.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// The fault count of one thread at a moment before an instance was created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FaultMark {
    thread: u64,
    faults: u64,
}

static NEXT_THREAD: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// This thread's number (never reused, unlike OS thread ids).
    static THREAD: u64 = NEXT_THREAD.fetch_add(1, Ordering::Relaxed);
    /// The last fault count read on this thread.
    static LAST: Cell<Option<u64>> = const { Cell::new(None) };
}

/// Page faults (minor and major) taken by the calling thread so far.
fn read() -> Option<u64> {
    // SAFETY: an all-zero rusage is a valid value of the plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes one rusage into `usage`, alive for the call.
    let r = unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) };
    (r == 0).then(|| (usage.ru_minflt as u64).wrapping_add(usage.ru_majflt as u64))
}

/// Whether fault counts are evidence on this machine (see the module's note on huge pages).
fn trustworthy() -> bool {
    static TRUSTED: OnceLock<bool> = OnceLock::new();
    *TRUSTED.get_or_init(|| {
        std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled")
            .map(|s| !s.contains("[always]"))
            // No THP support in the kernel: nothing can collapse pages.
            .unwrap_or(true)
    })
}

/// The calling thread's fault count now or earlier: the baseline for an instance about to be
/// created on this thread. `None` where counts are no evidence or cannot be read.
pub(crate) fn mark() -> Option<FaultMark> {
    if !trustworthy() {
        return None;
    }
    let faults = match LAST.with(Cell::get) {
        Some(f) => f,
        None => {
            let f = read()?;
            LAST.with(|l| l.set(Some(f)));
            f
        }
    };
    Some(FaultMark {
        thread: THREAD.with(|t| *t),
        faults,
    })
}

/// Whether the calling thread is the one `mark` was taken on.
pub(crate) fn on_thread_of(mark: &FaultMark) -> bool {
    THREAD.with(|t| *t) == mark.thread
}

/// Whether the calling thread is `mark`'s and has taken no page fault since. Reads the count
/// (which becomes the thread's baseline for later marks).
pub(crate) fn none_since(mark: FaultMark) -> bool {
    if !on_thread_of(&mark) {
        return false;
    }
    let Some(now) = read() else {
        LAST.with(|l| l.set(None));
        return false;
    };
    LAST.with(|l| l.set(Some(now)));
    now == mark.faults
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fault_on_the_thread_is_seen_and_other_threads_never_vouch() {
        let Some(m) = mark() else {
            // Only on machines with transparent huge pages always on.
            assert!(!trustworthy());
            return;
        };
        // Touching fresh anonymous memory faults.
        let mut v = vec![0u8; 1 << 20];
        for i in (0..v.len()).step_by(4096) {
            // SAFETY: in bounds; volatile so the writes happen.
            unsafe { std::ptr::write_volatile(v.as_mut_ptr().add(i), 1) };
        }
        assert!(!none_since(m), "256 page faults went unseen");
        let m = mark().unwrap();
        // Writing pages already present takes no fault.
        for i in (0..v.len()).step_by(4096) {
            // SAFETY: as above.
            unsafe { std::ptr::write_volatile(v.as_mut_ptr().add(i), 2) };
        }
        assert!(none_since(m));
        let m = mark().unwrap();
        let elsewhere = std::thread::spawn(move || (on_thread_of(&m), none_since(m)))
            .join()
            .unwrap();
        assert_eq!(elsewhere, (false, false));
        drop(v);
    }
}
