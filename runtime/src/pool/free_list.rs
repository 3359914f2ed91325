//! The pool's free slots: a lock-free stack of slot indices, so that taking and returning a
//! slot is one compare-and-swap.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// A lock-free stack of slot indices. The head packs a 32-bit tag (bumped by every change, so a
/// compare-and-swap cannot succeed against a head that was popped and pushed back meanwhile)
/// and the index + 1 of the top slot (0: empty).
pub(super) struct FreeList {
    head: AtomicU64,
    next: Box<[AtomicU32]>,
}

impl FreeList {
    /// A stack holding `0..n`, 0 on top.
    pub(super) fn new(n: u32) -> FreeList {
        let fl = FreeList {
            head: AtomicU64::new(0),
            next: (0..n).map(|_| AtomicU32::new(0)).collect(),
        };
        for i in (0..n).rev() {
            fl.push(i);
        }
        fl
    }

    /// Pushes slot `i` (which the caller owns and gives up).
    pub(super) fn push(&self, i: u32) {
        let mut head = self.head.load(Ordering::Acquire);
        loop {
            self.next[i as usize].store(head as u32, Ordering::Relaxed);
            let new = ((head >> 32).wrapping_add(1) << 32) | (i as u64 + 1);
            match self
                .head
                .compare_exchange_weak(head, new, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return,
                Err(h) => head = h,
            }
        }
    }

    /// Pops a slot, which the caller then owns.
    pub(super) fn pop(&self) -> Option<u32> {
        let mut head = self.head.load(Ordering::Acquire);
        loop {
            let top = head as u32;
            if top == 0 {
                return None;
            }
            let next = self.next[top as usize - 1].load(Ordering::Relaxed);
            let new = ((head >> 32).wrapping_add(1) << 32) | next as u64;
            match self
                .head
                .compare_exchange_weak(head, new, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Some(top - 1),
                Err(h) => head = h,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn free_list_hands_out_each_index_once() {
        let fl = Arc::new(FreeList::new(64));
        let seen: Vec<u32> = std::iter::from_fn(|| fl.pop()).collect();
        assert_eq!(seen.len(), 64);
        let mut sorted = seen.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 64);
        for i in seen {
            fl.push(i);
        }
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let fl = fl.clone();
                std::thread::spawn(move || {
                    for _ in 0..20_000 {
                        if let Some(i) = fl.pop() {
                            fl.push(i);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let mut all: Vec<u32> = std::iter::from_fn(|| fl.pop()).collect();
        all.sort();
        assert_eq!(all, (0..64).collect::<Vec<_>>());
    }
}
