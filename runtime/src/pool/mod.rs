//! The instance pool, the in-process execution backend: a fixed number of instance slots
//! reserved at start, each one contiguous region holding everything an instance needs, handed
//! out and taken back without locks.
//!
//! ```text
//!   one slot (all slots are the same size, back to back in one reservation)
//!   +--------------+------------+-----------------+----------------+------------+--------------------+-----------+
//!   | VmLimits     | guard page | host headroom   | wasm stack     | guard page | linear memory      | guard     |
//!   | vmctx        | (stack     | 256 KiB         | max_wasm_stack | (below the | 4 GiB reservation: | 2 GiB     |
//!   | (max_vmctx)  |  guard)    | host functions  | prologue-      |  memory)   | image CoW + zero   |           |
//!   |              |            | and builtins    | checked        |            | pages, grows by    |           |
//!   |              |            |                 |                |            | mprotect           |           |
//!   +--------------+------------+-----------------+----------------+------------+--------------------+-----------+
//!   ^ header: read-write        ^ GuestStack                       ^ MemoryData
//! ```
//!
//! Tables and the runtime's per-instance bookkeeping live in host memory the slot keeps (and
//! reuses) across instances.
//!
//! A slot remembers the prepared module it was last set up for. Instantiating the same module
//! again (the common case: a worker runs one function many times) writes only what an instance
//! may have changed: globals, tables, segment states, limits. Nothing is mapped and no system
//! call is made: the memory was already reset to the module's image when the previous instance
//! was dropped. Switching a slot to another module zeroes its vmctx, maps the new image and
//! rebuilds the vmctx (a few system calls). `instantiate` prefers a free slot already set up
//! for its module.
//!
//! The parts: [`free_list`] (free slots, a lock-free stack), [`slot`] (setting a slot up,
//! starting an instance), [`reset`] (resetting a slot between instances, the reset thread),
//! [`prepared`] (modules prepared for the pool: memory image and host-call contexts),
//! [`instance`] (a live instance and its call path), and below, the pool itself: acquiring a
//! slot (with module affinity and a bounded wait).
//!
//! Teardown: dropping a [`PooledInstance`] hands the slot to a reset thread (or resets inline if
//! configured so, or if the thread is gone), which restores the pages the instance wrote and
//! re-protects grown memory, then puts the slot back on the free list. An inline reset knows
//! those pages without reading the page tables when the thread took no page fault since before
//! the instance existed (see `crate::faults`). Only a caller finding
//! the pool exhausted waits, on a condition variable, for at most
//! [`PoolConfig::acquire_timeout`].

mod free_list;
mod image;
mod instance;
mod prepared;
mod reset;
mod slot;

pub(crate) use image::MemoryImage;
pub use instance::PooledInstance;
pub use prepared::PooledModule;

use crate::link::InstanceTemplate;
use crate::mmap::{page_size, Mmap};
use crate::traphandlers::GuestStack;
use crate::{
    BackendStats, Engine, ExecutionBackend, Halt, InstanceLimits, InstantiationError, LinkedModule,
    Module, ResourceError, Trap,
};
use fnvm_abi::{TrapCode, MEMORY_GUARD_SIZE, MEMORY_RESERVATION};
use free_list::FreeList;
use instance::SlotLease;
use reset::ResetThread;
use slot::{Slot, VMCTX_START};
use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use thiserror::Error;

/// Free slots `instantiate` looks at for one already set up for its module.
const AFFINITY_PROBES: usize = 4;

/// Sizes of the pool and caps on every instance in it. Checked by [`PoolConfig::validate`].
#[derive(Clone, Debug)]
pub struct PoolConfig {
    /// Number of instance slots (instances alive at once).
    pub slots: u32,
    /// Cap on any instance's linear memory, in wasm pages (64 KiB); an instance's own limit
    /// ([`InstanceLimits::max_memory_bytes`]) may be lower.
    pub max_memory_pages: u32,
    /// Cap on the elements of any table.
    pub max_table_elements: u32,
    /// Largest vmctx a module may need (it grows with functions and globals).
    pub max_vmctx_bytes: usize,
    /// Bytes of stack wasm frames may use (each instance may use less).
    pub max_wasm_stack: usize,
    /// How long `instantiate` waits for a free slot when all are in use.
    pub acquire_timeout: Duration,
    /// Reset slots on a background thread instead of in the dropping thread.
    pub background_reset: bool,
    /// When the pages an instance wrote come to at most this many bytes, they are restored in
    /// place at reset and kept resident (no page faults for the next instance); beyond it,
    /// touched pages are discarded. Bounds the memory an idle slot holds.
    pub keep_resident_bytes: usize,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            slots: 32,
            max_memory_pages: 16384,
            max_table_elements: 1_000_000,
            max_vmctx_bytes: 1 << 20,
            max_wasm_stack: 1 << 20,
            acquire_timeout: Duration::from_millis(100),
            background_reset: true,
            keep_resident_bytes: 4 << 20,
        }
    }
}

/// Why a pool could not be created.
#[derive(Debug, Error)]
pub enum PoolError {
    /// A setting is out of range.
    #[error("invalid pool configuration: {0}")]
    Config(&'static str),
    /// Reserving or protecting the slots' address space failed.
    #[error("reserving the instance pool: {0}")]
    Reserve(#[source] std::io::Error),
    /// The reset thread could not be started.
    #[error("starting the slot reset thread: {0}")]
    ResetThread(#[source] std::io::Error),
}

impl PoolConfig {
    /// Checks every setting; the pool relies on these bounds.
    pub fn validate(&self) -> Result<(), PoolError> {
        let bad = |m| Err(PoolError::Config(m));
        if self.slots == 0 || self.slots > 65_536 {
            return bad("slots must be between 1 and 65536");
        }
        if self.max_memory_pages as u64 > fnvm_abi::WASM_MAX_PAGES {
            return bad("max_memory_pages exceeds 65536 (4 GiB)");
        }
        if self.max_vmctx_bytes < 4096 || self.max_vmctx_bytes > 64 << 20 {
            return bad("max_vmctx_bytes must be between 4 KiB and 64 MiB");
        }
        if self.max_wasm_stack < 16 * 1024 || self.max_wasm_stack > 256 << 20 {
            return bad("max_wasm_stack must be between 16 KiB and 256 MiB");
        }
        if self.max_table_elements > 100_000_000 {
            return bad("max_table_elements exceeds 100 million");
        }
        Ok(())
    }

    fn header_len(&self) -> usize {
        (VMCTX_START + self.max_vmctx_bytes).div_ceil(page_size()) * page_size()
    }

    fn stack_len(&self) -> usize {
        GuestStack::size_for(self.max_wasm_stack)
    }

    fn memory_len(&self) -> usize {
        page_size() + (MEMORY_RESERVATION + MEMORY_GUARD_SIZE) as usize
    }

    /// Bytes of address space one slot reserves.
    pub fn slot_size(&self) -> usize {
        self.header_len() + self.stack_len() + self.memory_len()
    }

    /// Whether instances of `module` (with `template`) fit a slot.
    fn check_fits(
        &self,
        module: &Module,
        template: &InstanceTemplate,
    ) -> Result<(), ResourceError> {
        let vmctx = module.inner.offsets.size() as usize;
        if vmctx > self.max_vmctx_bytes {
            return Err(ResourceError::VmctxTooLarge {
                needed: vmctx,
                limit: self.max_vmctx_bytes,
            });
        }
        if let Some(m) = template.memory {
            if m.limits.min > self.max_memory_pages {
                return Err(ResourceError::MemoryTooLarge {
                    needed: m.limits.min.into(),
                    limit: self.max_memory_pages.into(),
                });
            }
        }
        for (t, _) in template.tables.iter() {
            if t.limits.min > self.max_table_elements {
                return Err(ResourceError::TableTooLarge {
                    needed: t.limits.min.into(),
                    limit: self.max_table_elements.into(),
                });
            }
        }
        Ok(())
    }
}

pub(crate) struct PoolInner {
    engine: Engine,
    config: PoolConfig,
    /// Keeps the reservation mapped; slots hold views into it.
    _map: Mmap,
    slots: Box<[UnsafeCell<Slot>]>,
    free: FreeList,
    /// Callers waiting for a slot, and how they are woken.
    waiters: AtomicUsize,
    wait_lock: Mutex<()>,
    wait_cv: Condvar,
    /// Where dropped instances send their slot when there is a reset thread. Sending takes no
    /// lock (the channel is a lock-free list).
    reset_tx: Option<mpsc::Sender<u32>>,
    in_use: AtomicUsize,
    /// Per slot: id of the linked module it is set up for (0: none), read without owning the
    /// slot to prefer warm slots.
    last_module: Box<[AtomicU64]>,
    /// Module switches so far.
    switches: AtomicU64,
    /// Resets that read the page tables to find the pages to restore (the others knew them
    /// from a fault count, see [`crate::faults`]).
    page_table_scans: AtomicU64,
}

// SAFETY: a slot is only touched by whoever holds its index: the free list hands each index to
// one owner at a time (a SlotLease, then the reset thread, then the free list again), with
// acquire/release ordering on every hand-over. Everything else is atomics or locks.
unsafe impl Sync for PoolInner {}
// SAFETY: as above; slots hold raw pointers into the pool's own mapping and into prepared
// modules they keep alive.
unsafe impl Send for PoolInner {}

impl PoolInner {
    /// # Safety
    /// The caller must own slot `i` (have taken it from the free list and not yet given it back).
    #[expect(
        clippy::mut_from_ref,
        reason = "ownership of the index is the exclusive borrow"
    )]
    unsafe fn slot(&self, i: u32) -> &mut Slot {
        // SAFETY: per the contract, no one else accesses this slot now.
        unsafe { &mut *self.slots[i as usize].get() }
    }

    fn release(&self, i: u32) {
        self.free.push(i);
        self.in_use.fetch_sub(1, Ordering::Relaxed);
        if self.waiters.load(Ordering::Acquire) > 0 {
            let _g = self.wait_lock.lock().unwrap_or_else(|e| e.into_inner());
            self.wait_cv.notify_one();
        }
    }

    /// Counts a finished reset.
    fn reset_done(&self, scanned: bool) {
        if scanned {
            self.page_table_scans.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn acquired(&self, i: u32) -> u32 {
        self.in_use.fetch_add(1, Ordering::Relaxed);
        i
    }

    /// Takes a free slot, preferring one set up for the linked module `want`: it looks at
    /// up to `AFFINITY_PROBES` free slots and gives the others back, so a worker serving several
    /// functions mostly reuses slots that need no module switch.
    fn acquire(&self, want: u64) -> Result<u32, InstantiationError> {
        let mut probed = [0u32; AFFINITY_PROBES];
        let mut n = 0;
        while n < AFFINITY_PROBES {
            let Some(i) = self.free.pop() else { break };
            if self.last_module[i as usize].load(Ordering::Relaxed) == want {
                for &j in &probed[..n] {
                    self.free.push(j);
                }
                return Ok(self.acquired(i));
            }
            probed[n] = i;
            n += 1;
        }
        if n > 0 {
            // No warm slot among them: take a slot set up for no module if there is one, else
            // the one deepest in the stack (the least recently used), leaving the slots other
            // modules just ran for them.
            let pick = (0..n)
                .find(|&k| self.last_module[probed[k] as usize].load(Ordering::Relaxed) == 0)
                .unwrap_or(n - 1);
            for (k, &j) in probed[..n].iter().enumerate().rev() {
                if k != pick {
                    self.free.push(j);
                }
            }
            return Ok(self.acquired(probed[pick]));
        }
        // A slot is usually a reset away (a few microseconds on the reset thread): yield a
        // little before paying for a sleep and a wake-up.
        for _ in 0..64 {
            std::thread::yield_now();
            if let Some(i) = self.free.pop() {
                return Ok(self.acquired(i));
            }
        }
        let start = Instant::now();
        self.waiters.fetch_add(1, Ordering::AcqRel);
        let mut g = self.wait_lock.lock().unwrap_or_else(|e| e.into_inner());
        let result = loop {
            if let Some(i) = self.free.pop() {
                break Some(i);
            }
            let waited = start.elapsed();
            if waited >= self.config.acquire_timeout {
                break None;
            }
            g = self
                .wait_cv
                .wait_timeout(g, self.config.acquire_timeout - waited)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        };
        drop(g);
        self.waiters.fetch_sub(1, Ordering::AcqRel);
        match result {
            Some(i) => Ok(self.acquired(i)),
            None => Err(InstantiationError::PoolExhausted {
                slots: self.config.slots,
                waited: self.config.acquire_timeout,
            }),
        }
    }
}

/// A pool of instance slots: the in-process [`ExecutionBackend`]. Cheap to clone; share it
/// between worker threads.
#[derive(Clone)]
pub struct InstancePool {
    inner: Arc<PoolInner>,
    _reset_thread: Option<Arc<ResetThread>>,
}

impl std::fmt::Debug for InstancePool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InstancePool")
            .field("slots", &self.inner.config.slots)
            .field("in_use", &self.inner.in_use.load(Ordering::Relaxed))
            .finish()
    }
}

impl InstancePool {
    /// Reserves address space for `config.slots` slots (nothing is committed until used) and
    /// starts the reset thread if configured.
    pub fn new(engine: &Engine, config: PoolConfig) -> Result<InstancePool, PoolError> {
        config.validate()?;
        let slot_size = config.slot_size();
        let total = slot_size
            .checked_mul(config.slots as usize)
            .ok_or(PoolError::Config("pool too large"))?;
        let map = Mmap::reserve(total).map_err(PoolError::Reserve)?;
        let mut slots = Vec::with_capacity(config.slots as usize);
        for i in 0..config.slots as usize {
            let at = i * slot_size;
            let (h, s) = (config.header_len(), config.stack_len());
            // SAFETY: the views are disjoint parts of `map`, which the pool keeps mapped for
            // as long as any slot exists (slots are dropped with the pool); nothing uses them
            // yet.
            let (header, stack, memory) = unsafe {
                let header = map.view(at, h).map_err(PoolError::Reserve)?;
                header
                    .protect(0, h, libc::PROT_READ | libc::PROT_WRITE)
                    .map_err(PoolError::Reserve)?;
                let stack = map.view(at + h, s).map_err(PoolError::Reserve)?;
                let stack = GuestStack::in_view(stack, config.max_wasm_stack)
                    .map_err(PoolError::Reserve)?;
                let memory = map
                    .view(at + h + s, config.memory_len())
                    .map_err(PoolError::Reserve)?;
                (header, stack, memory)
            };
            slots.push(UnsafeCell::new(Slot::new(header, stack, memory)));
        }
        let (reset_tx, reset_rx) = if config.background_reset {
            let (tx, rx) = mpsc::channel::<u32>();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        let config_slots = config.slots;
        let inner = Arc::new(PoolInner {
            engine: engine.clone(),
            free: FreeList::new(config.slots),
            config,
            _map: map,
            slots: slots.into_boxed_slice(),
            waiters: AtomicUsize::new(0),
            wait_lock: Mutex::new(()),
            wait_cv: Condvar::new(),
            reset_tx,
            in_use: AtomicUsize::new(0),
            last_module: (0..config_slots).map(|_| AtomicU64::new(0)).collect(),
            switches: AtomicU64::new(0),
            page_table_scans: AtomicU64::new(0),
        });
        let reset_thread = match reset_rx {
            Some(rx) => Some(Arc::new(ResetThread::start(inner.clone(), rx)?)),
            None => None,
        };
        Ok(InstancePool {
            inner,
            _reset_thread: reset_thread,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &PoolConfig {
        &self.inner.config
    }

    /// The engine modules must be loaded with.
    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// Prepares `linked` for this pool (see [`ExecutionBackend::prepare`]).
    pub fn prepare<T: Send + 'static>(
        &self,
        linked: &LinkedModule<T>,
    ) -> Result<PooledModule<T>, InstantiationError> {
        if !linked.module().inner.engine.same(&self.inner.engine) {
            return Err(InstantiationError::WrongEngine);
        }
        self.inner
            .config
            .check_fits(linked.module(), linked.template())?;
        Ok(PooledModule::new(linked)?)
    }

    /// A fresh instance of `pre` with host state `data` (what its host functions receive
    /// through [`Caller::data`](fnvm_host_interface::Caller::data)). Takes a free slot
    /// (preferring one already set up for the module), sets it up if it last ran another
    /// module, and runs the start function if the module has one.
    pub fn instantiate<T: Send + 'static>(
        &self,
        pre: &PooledModule<T>,
        limits: &InstanceLimits,
        data: T,
    ) -> Result<PooledInstance<T>, InstantiationError> {
        let pool = &self.inner;
        if !pre.module().inner.engine.same(&pool.engine) {
            return Err(InstantiationError::WrongEngine);
        }
        let deadline = match limits.timeout {
            None => u64::MAX,
            Some(t) => {
                let ticks = pool
                    .engine
                    .ticks_for(t)
                    .ok_or(InstantiationError::NoEpochTicker)?;
                pool.engine.epoch().saturating_add(ticks)
            }
        };
        let id = pre.linked().id();
        let index = pool.acquire(id)?;
        let max_stack = limits
            .max_wasm_stack
            .unwrap_or(usize::MAX)
            .min(pool.config.max_wasm_stack);
        let mut instance = PooledInstance {
            lease: SlotLease {
                pool: pool.clone(),
                index,
            },
            max_stack,
            data,
        };
        let slot = instance.lease.slot_mut();
        // Before anything of this instance can touch the memory.
        slot.fault_mark = crate::faults::mark();
        if slot.module_id() != Some(id) {
            pool.last_module[index as usize].store(0, Ordering::Relaxed);
            pool.switches.fetch_add(1, Ordering::Relaxed);
            slot.switch_to(&pool.engine, pre.inner.clone(), &pool.config)?;
            pool.last_module[index as usize].store(id, Ordering::Relaxed);
        } else if limits.exact_page_accounting {
            slot.drop_kept_pages()?;
        }
        slot.init_instance(&pool.config, limits, deadline);
        if let Some(start) = pre.module().info().start {
            instance.call_index(start, &[]).map_err(|h| match h {
                Halt::Trap(t) => InstantiationError::Trap(t),
                Halt::Exit { code, .. } => InstantiationError::Trap(Trap {
                    code: TrapCode::HostTrap,
                    host_message: Some(format!("exit with status {code} in the start function")),
                    backtrace: Vec::new(),
                }),
            })?;
        }
        Ok(instance)
    }

    /// Resets so far that read the page tables (`PAGEMAP_SCAN`) to find the pages an instance
    /// wrote. The others restored the pages the previous reset found, because the thread that
    /// ran the instance took no page fault meanwhile (see the module `faults`).
    pub fn page_table_scans(&self) -> u64 {
        self.inner.page_table_scans.load(Ordering::Relaxed)
    }

    /// Current counts.
    pub fn stats(&self) -> BackendStats {
        BackendStats {
            capacity: self.inner.config.slots,
            in_use: self.inner.in_use.load(Ordering::Relaxed),
            module_switches: self.inner.switches.load(Ordering::Relaxed),
        }
    }
}

impl ExecutionBackend for InstancePool {
    type Prepared<T: Send + 'static> = PooledModule<T>;
    type Instance<T: Send + 'static> = PooledInstance<T>;

    fn engine(&self) -> &Engine {
        InstancePool::engine(self)
    }

    fn prepare<T: Send + 'static>(
        &self,
        linked: &LinkedModule<T>,
    ) -> Result<PooledModule<T>, InstantiationError> {
        InstancePool::prepare(self, linked)
    }

    fn linked<T: Send + 'static>(prepared: &PooledModule<T>) -> &LinkedModule<T> {
        prepared.linked()
    }

    fn prepared_resident_bytes<T: Send + 'static>(prepared: &PooledModule<T>) -> usize {
        prepared.resident_bytes()
    }

    fn instantiate<T: Send + 'static>(
        &self,
        prepared: &PooledModule<T>,
        limits: &InstanceLimits,
        data: T,
    ) -> Result<PooledInstance<T>, InstantiationError> {
        InstancePool::instantiate(self, prepared, limits, data)
    }

    fn stats(&self) -> BackendStats {
        InstancePool::stats(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_validates_itself() {
        assert!(PoolConfig::default().validate().is_ok());
        let bad = PoolConfig {
            slots: 0,
            ..PoolConfig::default()
        };
        assert!(bad.validate().is_err());
        let bad = PoolConfig {
            max_memory_pages: 70_000,
            ..PoolConfig::default()
        };
        assert!(bad.validate().is_err());
    }
}
