//! The interface between execution backends and the host functions guests import.
//!
//! A host function is a plain `fn` pointer ([`HostFn`]) receiving a [`Caller`] and the raw
//! argument slots; it writes its results back into the same slots. No allocation, no boxing and
//! no dynamic value conversion sit on this path: it is what every WASI call of every invocation
//! goes through. The [`Caller`] hands out only safe references: the accessible bytes of the
//! calling instance's linear memory, the invocation's host state (of the type `T` the embedder
//! chose, so nothing is downcast per call) and the invocation's [`Deadline`].
//!
//! This crate belongs to no backend. The in-process pool of `fnvm-runtime` calls host functions
//! from a trampoline on the guest's stack; a backend that runs guests in a micro-VM calls the
//! same functions when the guest exits to the host. The hostcalls crate depends on this crate
//! only, never on a runtime with signal handlers.

#![forbid(unsafe_code)]

use fnvm_abi::FuncType;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// What a host function sees of the instance calling it.
pub struct Caller<'a, T> {
    memory: &'a mut [u8],
    data: &'a mut T,
    deadline: &'a dyn DeadlineSource,
}

impl<T> fmt::Debug for Caller<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Caller")
            .field("memory_len", &self.memory.len())
            .field("deadline", &self.deadline.deadline())
            .finish_non_exhaustive()
    }
}

/// Where a [`Caller`] finds its invocation's deadline when a host function asks: a backend's
/// instance, or a fixed [`Deadline`]. Asked lazily, so that building a `Caller` for each host
/// call costs nothing for host functions that never wait.
pub trait DeadlineSource {
    /// The deadline now.
    fn deadline(&self) -> Deadline<'_>;
}

impl DeadlineSource for Deadline<'_> {
    fn deadline(&self) -> Deadline<'_> {
        *self
    }
}

impl<'a, T> Caller<'a, T> {
    /// A caller over `memory` (the guest's accessible linear memory, empty when it has none),
    /// the host state `data` and where the invocation's deadline comes from (a backend's
    /// instance, or a [`Deadline`] itself). Backends build one per host call; tests of host
    /// functions build their own over a plain buffer.
    pub fn new(memory: &'a mut [u8], data: &'a mut T, deadline: &'a dyn DeadlineSource) -> Self {
        Caller {
            memory,
            data,
            deadline,
        }
    }

    /// The accessible bytes of the caller's linear memory (empty if it has none).
    pub fn memory(&mut self) -> &mut [u8] {
        self.memory
    }

    /// The host state the instance was created with.
    pub fn data(&mut self) -> &mut T {
        self.data
    }

    /// Memory and host state at once (a host function usually needs both).
    pub fn parts(&mut self) -> (&mut [u8], &mut T) {
        (self.memory, self.data)
    }

    /// When the invocation must end. A host function that waits (for a clock, for input)
    /// must wake by then and return [`HostExit::DeadlineExceeded`].
    pub fn deadline(&self) -> Deadline<'a> {
        self.deadline.deadline()
    }

    /// Where the deadline comes from, to ask later (a host function that may or may not wait
    /// keeps this rather than computing the deadline up front).
    pub fn deadline_source(&self) -> &'a dyn DeadlineSource {
        self.deadline
    }
}

/// How a host function ends the invocation instead of returning to the guest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostExit {
    /// The guest asked to exit with this status (WASI `proc_exit`).
    Exit(i32),
    /// The guest trapped in the host (bad state, unsupported request...), with a message.
    Trap(String),
    /// The invocation's deadline passed while the host function waited: the invocation ends
    /// with the same trap as guest code interrupted by its deadline.
    DeadlineExceeded,
}

/// A host function over host state `T`. `values` holds the arguments on entry, one per slot
/// (i32 and f32 zero-extended, i64, f64 as bits), and receives the results; it has
/// `max(params, results, 1)` slots.
pub type HostFn<T> = fn(&mut Caller<'_, T>, &mut [u64]) -> Result<(), HostExit>;

/// A host function with its wasm signature, as resolved for an import.
pub struct HostFuncDef<T> {
    /// The signature the import must have.
    pub ty: FuncType,
    /// The implementation.
    pub func: HostFn<T>,
    /// For a WASI `fd_write`-shaped function (`(fd, iovs, iovs_len, nwritten) -> errno`):
    /// how a backend whose host calls are expensive may defer its calls ([`WriteBehind`]).
    /// Backends are free to ignore it: `func` alone is always right.
    pub write_behind: Option<WriteBehind<T>>,
}

impl<T> HostFuncDef<T> {
    /// A host function of type `ty`, with no write-behind.
    pub fn new(ty: FuncType, func: HostFn<T>) -> HostFuncDef<T> {
        HostFuncDef {
            ty,
            func,
            write_behind: None,
        }
    }
}

/// How a write to an output stream may be done without calling the host at once: the backend
/// (the KVM backend, where each host call is a VM exit) checks the call's arguments against
/// the guest's memory, copies the bytes into a log of its own and answers the guest as
/// `func` would have (`nwritten`, success); later, before any other host call and when the
/// guest stops, it replays each logged call in order. Only calls that cannot fail are logged:
/// the stream must take `room` more bytes, and every pointer must be in bounds; anything else
/// calls `func`.
pub struct WriteBehind<T> {
    /// How many more bytes a write to `fd` would take in full now; 0: do not defer writes to
    /// `fd` (not an output stream, or one whose writes must reach the host at once).
    pub room: fn(&mut T, u32) -> u64,
    /// Does what `func` did for a deferred call: `args` are its four arguments, `bytes` what
    /// its buffers held, all of which the stream takes. Counted and traced like a call.
    pub replay: fn(&mut T, [u32; 4], &[u8]),
    /// Calls with more buffers than this are not deferred (`func` may treat them specially).
    pub max_iovecs: u32,
}

// Manual impls: deriving would require `T: Clone` / `T: Debug`, which a function pointer over
// `T` does not need.
impl<T> Clone for HostFuncDef<T> {
    fn clone(&self) -> Self {
        HostFuncDef {
            ty: self.ty.clone(),
            func: self.func,
            write_behind: self.write_behind.clone(),
        }
    }
}

impl<T> Clone for WriteBehind<T> {
    fn clone(&self) -> Self {
        WriteBehind {
            room: self.room,
            replay: self.replay,
            max_iovecs: self.max_iovecs,
        }
    }
}

impl<T> fmt::Debug for WriteBehind<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WriteBehind")
            .field("max_iovecs", &self.max_iovecs)
            .finish_non_exhaustive()
    }
}

impl<T> fmt::Debug for HostFuncDef<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HostFuncDef")
            .field("ty", &self.ty)
            .field("write_behind", &self.write_behind.is_some())
            .finish_non_exhaustive()
    }
}

/// When an invocation must end, as its backend tracks it. Computed on demand: building a
/// [`Caller`] for every host call must not read a clock.
#[derive(Clone, Copy)]
pub struct Deadline<'a>(DeadlineKind<'a>);

#[derive(Clone, Copy)]
enum DeadlineKind<'a> {
    Never,
    At(Instant),
    /// Compiled code's form: the invocation ends when `counter` (advanced every `tick`)
    /// reaches `at`.
    Epoch {
        counter: &'a AtomicU64,
        at: u64,
        tick: Duration,
    },
}

impl fmt::Debug for Deadline<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            DeadlineKind::Never => f.write_str("Deadline::Never"),
            DeadlineKind::At(i) => write!(f, "Deadline::At({i:?})"),
            DeadlineKind::Epoch { at, tick, .. } => {
                write!(f, "Deadline::Epoch {{ at: {at}, tick: {tick:?} }}")
            }
        }
    }
}

impl<'a> Deadline<'a> {
    /// No deadline.
    pub const NEVER: Deadline<'static> = Deadline(DeadlineKind::Never);

    /// A deadline at a point in time.
    pub fn at(instant: Instant) -> Deadline<'a> {
        Deadline(DeadlineKind::At(instant))
    }

    /// The deadline at which compiled code stops: when `counter`, advanced once every `tick`,
    /// reaches `at`. `at == u64::MAX` means none.
    pub fn epoch(counter: &'a AtomicU64, at: u64, tick: Duration) -> Deadline<'a> {
        if at == u64::MAX {
            return Deadline(DeadlineKind::Never);
        }
        Deadline(DeadlineKind::Epoch { counter, at, tick })
    }

    /// The instant by which a waiting host function must return, or `None` for no deadline.
    /// For an epoch deadline this is an estimate within one tick, as compiled code's check is.
    pub fn instant(&self) -> Option<Instant> {
        match self.0 {
            DeadlineKind::Never => None,
            DeadlineKind::At(i) => Some(i),
            DeadlineKind::Epoch { counter, at, tick } => {
                let now = Instant::now();
                let left = at.saturating_sub(counter.load(Ordering::Relaxed));
                // A deadline too far to represent is as good as none.
                let wait = u32::try_from(left).ok().and_then(|n| tick.checked_mul(n))?;
                now.checked_add(wait)
            }
        }
    }

    /// Whether the deadline has passed.
    pub fn passed(&self) -> bool {
        match self.0 {
            DeadlineKind::Never => false,
            DeadlineKind::At(i) => Instant::now() >= i,
            DeadlineKind::Epoch { counter, at, .. } => counter.load(Ordering::Relaxed) >= at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_deadline_follows_the_counter() {
        let counter = AtomicU64::new(10);
        let tick = Duration::from_millis(10);
        let d = Deadline::epoch(&counter, 13, tick);
        assert!(!d.passed());
        let before = Instant::now();
        let at = d.instant().unwrap();
        assert!(at >= before + Duration::from_millis(30));
        assert!(at <= Instant::now() + Duration::from_millis(30));
        counter.store(13, Ordering::Relaxed);
        assert!(d.passed());
        assert!(d.instant().unwrap() <= Instant::now());
        assert!(Deadline::epoch(&counter, u64::MAX, tick)
            .instant()
            .is_none());
        assert!(!Deadline::epoch(&counter, u64::MAX, tick).passed());
        assert!(Deadline::NEVER.instant().is_none());
        let past = Deadline::at(Instant::now());
        assert!(past.passed());
    }

    #[test]
    fn caller_hands_out_memory_and_state() {
        fn double(caller: &mut Caller<'_, u32>, v: &mut [u64]) -> Result<(), HostExit> {
            let (mem, calls) = caller.parts();
            *calls += 1;
            mem[0] = 7;
            v[0] *= 2;
            Ok(())
        }
        let def = HostFuncDef::<u32> {
            ty: FuncType {
                params: vec![fnvm_abi::ValType::I32],
                results: vec![fnvm_abi::ValType::I32],
            },
            func: double,
            write_behind: None,
        };
        let (mut mem, mut calls) = ([0u8; 4], 0u32);
        let mut slots = [21u64];
        let mut caller = Caller::new(&mut mem, &mut calls, &Deadline::NEVER);
        (def.clone().func)(&mut caller, &mut slots).unwrap();
        assert_eq!((slots[0], calls, mem[0]), (42, 1, 7));
    }
}
