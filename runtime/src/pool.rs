//! The instance pool: a fixed number of instance slots reserved at start, each one contiguous
//! region holding everything an instance needs, handed out and taken back without locks.
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
//! rebuilds the vmctx (a few system calls).
//!
//! Teardown: dropping a [`PooledInstance`] hands the slot to a reset thread (or resets inline if
//! configured so, or if the thread is gone), which discards the memory pages the instance
//! touched (`MADV_DONTNEED`: image pages read as the image again, the rest as zero) and
//! re-protects grown memory, then puts the slot back on the free list. Free slots form a
//! lock-free stack of indices (tagged head against ABA), so taking and returning a slot is a
//! compare-and-swap; only a caller finding the pool exhausted waits, on a condition variable,
//! for at most [`PoolConfig::acquire_timeout`].

use crate::host::Halt;
use crate::instance::{symbolize, InstanceData, VmCtx};
use crate::memory::MemoryData;
use crate::mmap::{page_size, Mmap};
use crate::prepare::{GlobalInit, InstancePre, PreInner};
use crate::table::TableData;
use crate::traphandlers::{catch_traps, CodeRegistry, GuestStack};
use crate::vm::{VmFuncRef, VmLimits};
use crate::{Engine, FrameInfo, InstantiationError, Trap, Val};
use fnvm_abi::module::ExternKind;
use fnvm_abi::{TrapCode, VmOffsets, MEMORY_GUARD_SIZE, MEMORY_RESERVATION, WASM_PAGE_SIZE};
use std::any::Any;
use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use thiserror::Error;

/// Free slots `instantiate` looks at for one already set up for its module.
const AFFINITY_PROBES: usize = 4;

/// The message that stops the reset thread (never a slot index: slots are at most 65536).
const SHUTDOWN: u32 = u32::MAX;

/// Where the vmctx starts in a slot's header (after the VmLimits, 16-byte aligned).
const VMCTX_START: usize = 64;

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
    Config(String),
    /// Reserving or protecting the slots' address space failed.
    #[error("reserving the instance pool: {0}")]
    Reserve(#[from] std::io::Error),
}

impl PoolConfig {
    /// Checks every setting; the pool relies on these bounds.
    pub fn validate(&self) -> Result<(), PoolError> {
        let bad = |m: &str| Err(PoolError::Config(m.into()));
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
}

/// Per-instance limits; each is capped by the pool's.
#[derive(Clone, Debug, Default)]
pub struct InstanceLimits {
    /// Linear memory cap in bytes (the Function's `maxMemory`); `None`: the pool's cap.
    pub max_memory_bytes: Option<u64>,
    /// Stack for wasm frames in bytes; `None`: the pool's.
    pub max_wasm_stack: Option<usize>,
    /// Epoch ticks the instance may run before it traps with `Interrupt`; `None`: no deadline.
    pub deadline_ticks: Option<u64>,
    /// Start from a memory with nothing resident, so that
    /// [`PooledInstance::resident_memory_pages`] counts exactly the pages this instance touched
    /// (debug reports). Costs the page faults that pages kept from the previous instance
    /// would have saved.
    pub exact_page_accounting: bool,
}

/// A lock-free stack of slot indices. The head packs a 32-bit tag (bumped by every change, so a
/// compare-and-swap cannot succeed against a head that was popped and pushed back meanwhile)
/// and the index + 1 of the top slot (0: empty).
struct FreeList {
    head: AtomicU64,
    next: Box<[AtomicU32]>,
}

impl FreeList {
    fn new(n: u32) -> FreeList {
        let fl = FreeList {
            head: AtomicU64::new(0),
            next: (0..n).map(|_| AtomicU32::new(0)).collect(),
        };
        for i in (0..n).rev() {
            fl.push(i);
        }
        fl
    }

    fn push(&self, i: u32) {
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

    fn pop(&self) -> Option<u32> {
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

/// One instance slot: views of its part of the pool's reservation, plus host-side state kept
/// across instances.
struct Slot {
    header: Mmap,
    stack: GuestStack,
    memory: Box<MemoryData>,
    #[expect(
        clippy::vec_box,
        reason = "the vmctx points at each table's definition, which must not move"
    )]
    tables: Vec<Box<TableData>>,
    code: CodeRegistry,
    instance: Option<Box<InstanceData>>,
    /// The prepared module the slot is set up for.
    prepared: Option<InstancePre>,
    data: Option<Box<dyn Any + Send>>,
    /// Whether an instance ran since the last reset.
    dirty: bool,
    /// Buffer for pagemap entries at reset.
    scratch: crate::pagemap::Scratch,
    /// Bytes of linear memory, from its base, holding pages the last reset kept resident
    /// (0: none).
    kept_extent: usize,
}

impl Slot {
    fn limits(&self) -> *mut VmLimits {
        self.header.as_ptr().cast()
    }

    /// Sets the slot up for `pre`: fresh vmctx, the module's memory image, its tables.
    fn switch_to(
        &mut self,
        engine: &Engine,
        pre: &InstancePre,
        config: &PoolConfig,
    ) -> Result<(), InstantiationError> {
        let res = |e: std::io::Error| InstantiationError::Resource(format!("setting up slot: {e}"));
        let p: &PreInner = &pre.inner;
        let module = &p.module;
        let offsets = &module.inner.offsets;
        if offsets.size() as usize > config.max_vmctx_bytes {
            return Err(InstantiationError::Resource(format!(
                "the module needs a {}-byte vmctx; the pool allows {}",
                offsets.size(),
                config.max_vmctx_bytes
            )));
        }
        self.instance = None;
        self.prepared = None;
        self.header.discard(0, self.header.len()).map_err(res)?;
        let mem_ty = p.memory.unwrap_or(fnvm_abi::MemoryType {
            limits: fnvm_abi::Limits { min: 0, max: None },
        });
        if mem_ty.limits.min > config.max_memory_pages {
            return Err(InstantiationError::Resource(format!(
                "the module needs {} memory pages; the pool allows {}",
                mem_ty.limits.min, config.max_memory_pages
            )));
        }
        self.memory
            .setup_in_slot(mem_ty, p.image.as_ref())
            .map_err(res)?;
        self.kept_extent = 0;
        self.tables.clear();
        for (ty, _) in p.tables.iter() {
            let t = TableData::new(*ty, 0, config.max_table_elements)
                .map_err(InstantiationError::Resource)?;
            self.tables.push(t);
        }
        self.code = CodeRegistry::default();
        self.code.insert(module);

        // SAFETY: the vmctx area lies in the slot's read-write header, 16-byte aligned, and is
        // used only by this slot's instance.
        let vmctx = unsafe {
            VmCtx::in_slot(
                self.header.as_ptr().add(VMCTX_START),
                self.header.len() - VMCTX_START,
            )
        };
        let info = module.info();
        let code_base = module.code_base();
        vmctx.set_header(self.limits(), engine, module);
        // SAFETY: the slot's memory definition lives as long as the slot.
        unsafe { vmctx.set_memory(&self.memory.def) };
        let mut fi = 0u32;
        for imp in &info.imports {
            let fnvm_abi::ImportType::Func(t) = imp.ty else {
                continue;
            };
            // SAFETY: trampoline offsets were checked against the code length at load.
            let tramp =
                unsafe { code_base.add(info.trampolines[t as usize].host_call.offset as usize) };
            let ctx: *const _ = &p.host_calls[fi as usize];
            let fr = VmFuncRef {
                wasm_call: tramp,
                array_call: std::ptr::null(),
                type_id: module.inner.type_ids[t as usize] as u64,
                vmctx: ctx as *mut u8,
            };
            vmctx.set_func_import(offsets, fi, &fr);
            fi += 1;
        }
        vmctx.set_defined_funcrefs(module);
        for (i, t) in self.tables.iter_mut().enumerate() {
            vmctx.set(offsets.table_ptr(i as u32), &mut t.def as *mut _ as u64);
        }
        let memory = p
            .memory
            .map(|_| (0u32, &mut *self.memory as *mut MemoryData));
        let tables = self
            .tables
            .iter_mut()
            .enumerate()
            .map(|(i, t)| (i as u32, &mut **t as *mut TableData))
            .collect();
        let mut inst = Box::new(InstanceData {
            module: module.clone(),
            vmctx,
            memory,
            tables,
            elems: vec![None; p.passive_elems.len()],
            data_dropped: p.data_dropped.to_vec(),
            host_data: None,
        });
        let inst_ptr: *mut InstanceData = &mut *inst;
        inst.vmctx.set(VmOffsets::INSTANCE, inst_ptr as u64);
        self.instance = Some(inst);
        self.prepared = Some(pre.clone());
        Ok(())
    }

    /// Writes what an instance may have changed back to the module's initial state and installs
    /// the host state. No system calls.
    fn init_instance(
        &mut self,
        engine: &Engine,
        config: &PoolConfig,
        limits: &InstanceLimits,
        data: Box<dyn Any + Send>,
    ) {
        let limits_ptr = self.limits();
        let Some(pre) = &self.prepared else { return };
        let p: &PreInner = &pre.inner;
        let Some(inst) = self.instance.as_deref_mut() else {
            return;
        };
        let offsets = &p.module.inner.offsets;
        let vmctx = inst.vmctx.ptr() as u64;
        for (i, g) in p.globals.iter().enumerate() {
            let raw = match *g {
                GlobalInit::Raw(v) => v,
                GlobalInit::FuncRef(off) => vmctx + off as u64,
            };
            let at = offsets.defined_global(i as u32);
            inst.vmctx.set(at, raw);
            inst.vmctx.set(at + 8, 0);
        }
        let reloc = |x: &u32| if *x == 0 { 0 } else { vmctx + *x as u64 };
        // Tables are rewritten only if the previous instance changed them (or the slot was
        // just set up): a function that never writes its table pays nothing for it.
        for (t, (_, init)) in self.tables.iter_mut().zip(p.tables.iter()) {
            if t.modified() {
                t.refill(
                    config.max_table_elements,
                    init.len(),
                    init.iter().map(reloc),
                );
            }
        }
        // Passive segments only change by being dropped.
        for (e, init) in inst.elems.iter_mut().zip(p.passive_elems.iter()) {
            if e.is_none() {
                *e = init.as_ref().map(|items| items.iter().map(reloc).collect());
            }
        }
        inst.data_dropped.copy_from_slice(&p.data_dropped);
        let cap_pages = limits
            .max_memory_bytes
            .map_or(u64::MAX, |b| b / WASM_PAGE_SIZE)
            .min(config.max_memory_pages as u64);
        self.memory.set_cap(cap_pages);
        let deadline = limits
            .deadline_ticks
            .map_or(u64::MAX, |t| engine.epoch().saturating_add(t));
        // SAFETY: the limits live at the start of the slot's read-write header.
        unsafe {
            limits_ptr.write(VmLimits {
                stack_limit: 0,
                epoch_deadline: deadline,
            })
        };
        let data = self.data.insert(data);
        inst.host_data = Some(&mut **data as *mut (dyn Any + Send));
        self.dirty = true;
    }

    /// Returns the slot to its module's initial memory; drops the host state.
    fn reset(&mut self, keep_resident: usize) {
        if let Some(inst) = self.instance.as_deref_mut() {
            inst.host_data = None;
        }
        self.data = None;
        if !self.dirty {
            return;
        }
        let image = self.prepared.as_ref().and_then(|p| p.inner.image.as_ref());
        let extent = self.memory.def.length as usize;
        let reset = self
            .memory
            .reset_in_slot(image, keep_resident, &mut self.scratch);
        if let Ok(kept) = reset {
            self.kept_extent = if kept > 0 { extent } else { 0 };
        }
        if reset.is_err() {
            // Could not reset in place: forget the module so the next instance rebuilds the
            // slot from scratch (remapping the whole memory).
            self.prepared = None;
            self.instance = None;
        }
        self.dirty = false;
    }
}

struct PoolInner {
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
    /// Per slot: id of the prepared module it is set up for (0: none), read without owning
    /// the slot to prefer warm slots.
    last_module: Box<[AtomicU64]>,
    /// Module switches so far.
    switches: AtomicU64,
}

// SAFETY: a slot is only touched by whoever holds its index: the free list hands each index to
// one owner at a time (a PooledInstance, then the reset thread, then the free list again), with
// acquire/release ordering on every hand-over. Everything else is atomics or locks.
unsafe impl Sync for PoolInner {}
// SAFETY: as above; slots hold raw pointers into the pool's own mapping only.
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

    /// Takes a free slot, preferring one set up for the prepared module `want`: it looks at
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
                self.in_use.fetch_add(1, Ordering::Relaxed);
                return Ok(i);
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
            self.in_use.fetch_add(1, Ordering::Relaxed);
            return Ok(probed[pick]);
        }
        // A slot is usually a reset away (a few microseconds on the reset thread): yield a
        // little before paying for a sleep and a wake-up.
        for _ in 0..64 {
            std::thread::yield_now();
            if let Some(i) = self.free.pop() {
                self.in_use.fetch_add(1, Ordering::Relaxed);
                return Ok(i);
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
            Some(i) => {
                self.in_use.fetch_add(1, Ordering::Relaxed);
                Ok(i)
            }
            None => Err(InstantiationError::PoolExhausted {
                slots: self.config.slots,
                waited: self.config.acquire_timeout,
            }),
        }
    }
}

/// A pool of instance slots. Cheap to clone; share it between worker threads.
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

/// Stops the reset thread when the last pool handle goes (instances still alive then reset
/// inline when dropped).
struct ResetThread {
    inner: Arc<PoolInner>,
    handle: Option<std::thread::JoinHandle<()>>,
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

/// Counts for monitoring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolStats {
    /// Slots in the pool.
    pub slots: u32,
    /// Slots holding a live instance or waiting for reset.
    pub in_use: usize,
    /// Times a slot was set up for another module than the one it last ran (a few system
    /// calls and page faults each); slots set up for the module asked for are preferred.
    pub module_switches: u64,
}

impl InstancePool {
    /// Reserves address space for `config.slots` slots (nothing is committed until used) and
    /// starts the reset thread if configured.
    pub fn new(engine: &Engine, config: PoolConfig) -> Result<InstancePool, PoolError> {
        config.validate()?;
        let slot_size = config.slot_size();
        let total = slot_size
            .checked_mul(config.slots as usize)
            .ok_or_else(|| PoolError::Config("pool too large".into()))?;
        let map = Mmap::reserve(total)?;
        let mut slots = Vec::with_capacity(config.slots as usize);
        for i in 0..config.slots as usize {
            let at = i * slot_size;
            let (h, s) = (config.header_len(), config.stack_len());
            // SAFETY: the views are disjoint parts of `map`, which the pool keeps mapped for
            // as long as any slot exists (slots are dropped with the pool).
            let (header, stack, memory) = unsafe {
                (
                    map.view(at, h)?,
                    map.view(at + h, s)?,
                    map.view(at + h + s, config.memory_len())?,
                )
            };
            header.protect(0, h, libc::PROT_READ | libc::PROT_WRITE)?;
            slots.push(UnsafeCell::new(Slot {
                header,
                stack: GuestStack::in_view(stack, config.max_wasm_stack)?,
                memory: MemoryData::in_slot(memory),
                tables: Vec::new(),
                code: CodeRegistry::default(),
                instance: None,
                prepared: None,
                data: None,
                dirty: false,
                scratch: crate::pagemap::Scratch::default(),
                kept_extent: 0,
            }));
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
        });
        let reset_thread = if let Some(rx) = reset_rx {
            let worker = inner.clone();
            let handle = std::thread::Builder::new()
                .name("fnvm-slot-reset".into())
                .spawn(move || {
                    // Ends at SHUTDOWN, dropping the receiver: instances dropped later reset
                    // their slot themselves.
                    for i in rx.iter().take_while(|i| *i != SHUTDOWN) {
                        // SAFETY: a dropped instance sent us its slot index and gave up the
                        // slot; we own it until we push it back on the free list.
                        unsafe { worker.slot(i) }.reset(worker.config.keep_resident_bytes);
                        worker.release(i);
                    }
                })?;
            Some(Arc::new(ResetThread {
                inner: inner.clone(),
                handle: Some(handle),
            }))
        } else {
            None
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

    /// Current counts.
    pub fn stats(&self) -> PoolStats {
        PoolStats {
            slots: self.inner.config.slots,
            in_use: self.inner.in_use.load(Ordering::Relaxed),
            module_switches: self.inner.switches.load(Ordering::Relaxed),
        }
    }

    /// A fresh instance of `pre` with host state `data` (what its host functions receive as
    /// [`Caller::data`](crate::Caller::data)). Takes a free slot (preferring none in
    /// particular), sets it up if it last ran another module, and runs the start function if the
    /// module has one.
    pub fn instantiate(
        &self,
        pre: &InstancePre,
        limits: &InstanceLimits,
        data: Box<dyn Any + Send>,
    ) -> Result<PooledInstance, InstantiationError> {
        if !Arc::ptr_eq(
            &pre.inner.module.inner.engine.inner,
            &self.inner.engine.inner,
        ) {
            return Err(InstantiationError::Link(
                "module belongs to another engine".into(),
            ));
        }
        let index = self.inner.acquire(pre.inner.id)?;
        let max_stack = limits
            .max_wasm_stack
            .unwrap_or(usize::MAX)
            .min(self.inner.config.max_wasm_stack);
        let mut instance = PooledInstance {
            pool: self.inner.clone(),
            index,
            max_stack,
        };
        // SAFETY: we own the slot we just acquired (the PooledInstance gives it back on drop).
        let slot = unsafe { self.inner.slot(index) };
        let same = slot
            .prepared
            .as_ref()
            .is_some_and(|p| Arc::ptr_eq(&p.inner, &pre.inner));
        if !same {
            self.inner.last_module[index as usize].store(0, Ordering::Relaxed);
            self.inner.switches.fetch_add(1, Ordering::Relaxed);
            slot.switch_to(&self.inner.engine, pre, &self.inner.config)?;
            self.inner.last_module[index as usize].store(pre.inner.id, Ordering::Relaxed);
        } else if limits.exact_page_accounting && slot.kept_extent > 0 {
            slot.memory
                .discard_kept(slot.kept_extent)
                .map_err(|e| InstantiationError::Resource(format!("resetting slot memory: {e}")))?;
            slot.kept_extent = 0;
        }
        slot.init_instance(&self.inner.engine, &self.inner.config, limits, data);
        if let Some(start) = pre.inner.module.info().start {
            instance.invoke_index(start, &[]).map_err(|h| match h {
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
}

/// A live instance in a pool slot. Dropping it returns the slot (reset off the caller's path when
/// the pool has a reset thread). `Send`: it may move between threads, and runs on whichever
/// thread calls it.
pub struct PooledInstance {
    pool: Arc<PoolInner>,
    index: u32,
    max_stack: usize,
}

// SAFETY: the instance owns its slot exclusively (see PoolInner); nothing in it is tied to the
// thread that created it: traps are caught per call on the calling thread.
unsafe impl Send for PooledInstance {}

impl std::fmt::Debug for PooledInstance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PooledInstance")
            .field("slot", &self.index)
            .finish()
    }
}

impl PooledInstance {
    fn slot(&self) -> &Slot {
        // SAFETY: this instance owns its slot.
        unsafe { &*self.pool.slots[self.index as usize].get() }
    }

    fn slot_mut(&mut self) -> &mut Slot {
        // SAFETY: this instance owns its slot, and `&mut self` makes this the only borrow.
        unsafe { self.pool.slot(self.index) }
    }

    fn inst(&self) -> &InstanceData {
        // An instance exists while the PooledInstance does: instantiate only hands one out
        // after switch_to succeeded, and only reset (on drop) can clear it.
        self.slot()
            .instance
            .as_deref()
            .expect("a pooled instance has instance data")
    }

    /// Index of the slot (for traces and tests).
    pub fn slot_index(&self) -> u32 {
        self.index
    }

    /// The address of the instance's vmctx, as host functions see it in [`Caller::vmctx`](crate::Caller::vmctx).
    pub fn vmctx(&self) -> usize {
        self.inst().vmctx.ptr() as usize
    }

    /// Calls the exported function `name`.
    pub fn call(&mut self, name: &str, args: &[Val]) -> Result<Vec<Val>, Halt> {
        let info = self.inst().module.info();
        let Some(e) = info
            .exports
            .iter()
            .find(|e| e.name == name && e.kind == ExternKind::Func)
        else {
            return Err(Halt::Trap(host_trap(format!(
                "no exported function `{name}`"
            ))));
        };
        let index = e.index;
        self.invoke_index(index, args)
    }

    fn invoke_index(&mut self, func: u32, args: &[Val]) -> Result<Vec<Val>, Halt> {
        let max_stack = self.max_stack;
        let slot = self.slot_mut();
        let Some(inst) = slot.instance.as_deref() else {
            return Err(Halt::Trap(host_trap("instance was reset".into())));
        };
        let module = inst.module.clone();
        let ty = &module.info().types[module.info().funcs[func as usize] as usize];
        if args.len() != ty.params.len() {
            return Err(Halt::Trap(host_trap(format!(
                "arguments do not match {ty}"
            ))));
        }
        // SAFETY: the funcref record lies in this instance's vmctx.
        let fr: VmFuncRef = unsafe {
            *(inst
                .vmctx
                .ptr()
                .add(module.inner.offsets.funcref(func) as usize) as *const VmFuncRef)
        };
        if fr.array_call.is_null() {
            return Err(Halt::Trap(host_trap(
                "calling an imported host function from the host is not supported".into(),
            )));
        }
        let n = ty.params.len().max(ty.results.len()).max(1);
        let mut small = [[0u64; 2]; 8];
        let mut big;
        let values: &mut [[u64; 2]] = if n <= small.len() {
            &mut small[..n]
        } else {
            big = vec![[0u64; 2]; n];
            &mut big
        };
        for ((slot_v, a), t) in values.iter_mut().zip(args).zip(&ty.params) {
            slot_v[0] = a.to_raw().filter(|_| a.ty() == *t).ok_or_else(|| {
                Halt::Trap(host_trap(format!(
                    "arguments do not match {ty} (function references cannot be passed to pooled instances)"
                )))
            })?;
        }
        let limits = slot.limits();
        let stack_top = slot.stack.top();
        let wasm_limit = slot
            .stack
            .wasm_limit()
            .max(stack_top.saturating_sub(max_stack));
        // SAFETY: the limits live in the slot's header, owned by this instance.
        unsafe { (*limits).stack_limit = wasm_limit as u64 };
        type ArrayCall = unsafe extern "C" fn(*mut u8, *mut u8, *const u8, *mut [u64; 2]);
        // SAFETY: array_call points at the array-call trampoline of this function's type in the
        // module's loaded, executable code.
        let entry: ArrayCall = unsafe { std::mem::transmute(fr.array_call) };
        let values_ptr = values.as_mut_ptr();
        let result = catch_traps(&slot.code, stack_top, &mut || {
            // SAFETY: the trampoline reads params and writes results in `values`, which has room
            // for both; the vmctx is live for the instance's lifetime.
            unsafe { entry(fr.vmctx, fr.vmctx, fr.wasm_call, values_ptr) }
        });
        match result {
            Ok(()) => ty
                .results
                .iter()
                .zip(values.iter())
                .map(|(t, s)| {
                    Val::from_raw(*t, s[0]).ok_or_else(|| {
                        Halt::Trap(host_trap(
                            "function references cannot be returned from pooled instances".into(),
                        ))
                    })
                })
                .collect(),
            Err(act) => {
                let backtrace = symbolize(&slot.code, &act.frames[..act.nframes]);
                Err(match act.exit {
                    Some(code) => Halt::Exit { code, backtrace },
                    None => Halt::Trap(Trap {
                        code: act.trap.unwrap_or(TrapCode::HostTrap),
                        host_message: act.host_error.map(|e| e.0),
                        backtrace,
                    }),
                })
            }
        }
    }

    /// The host state given at instantiation.
    pub fn data(&mut self) -> Option<&mut (dyn Any + Send)> {
        self.slot_mut().data.as_deref_mut()
    }

    /// Takes the host state out (e.g. to read captured output); host functions called later see
    /// none.
    pub fn take_data(&mut self) -> Option<Box<dyn Any + Send>> {
        let slot = self.slot_mut();
        if let Some(inst) = slot.instance.as_deref_mut() {
            inst.host_data = None;
        }
        slot.data.take()
    }

    /// The accessible bytes of the instance's linear memory, if it has one.
    pub fn memory(&mut self) -> Option<&mut [u8]> {
        let slot = self.slot_mut();
        let has = slot.instance.as_deref().is_some_and(|i| i.memory.is_some());
        has.then(|| slot.memory.data_mut())
    }

    /// Current size of the linear memory in wasm pages (64 KiB).
    pub fn memory_pages(&self) -> u64 {
        if self.inst().memory.is_some() {
            self.slot().memory.pages()
        } else {
            0
        }
    }

    /// 4 KiB pages of linear memory present in host memory: the pages the guest touched (plus
    /// neighbours of touched image pages the kernel mapped in with them). The debug report's
    /// `currentPages`.
    pub fn resident_memory_pages(&self) -> std::io::Result<u64> {
        if self.inst().memory.is_none() {
            return Ok(0);
        }
        self.slot().memory.resident_pages()
    }

    /// Host memory this instance occupies: resident pages of its linear memory, vmctx and
    /// stack (tables and bookkeeping on the heap are not counted).
    pub fn resident_bytes(&self) -> std::io::Result<u64> {
        let slot = self.slot();
        let page = page_size() as u64;
        let header =
            crate::pagemap::resident_pages(slot.header.as_ptr() as usize, slot.header.len())?;
        let stack_base = slot.stack.top() - self.pool.config.stack_len();
        let stack = crate::pagemap::resident_pages(stack_base, self.pool.config.stack_len())?;
        Ok((header + stack + self.resident_memory_pages()?) * page)
    }

    /// Moves the deadline to `ticks` epochs from now.
    pub fn set_epoch_deadline(&mut self, ticks: u64) {
        let deadline = self.pool.engine.epoch().saturating_add(ticks);
        let limits = self.slot_mut().limits();
        // SAFETY: the limits live in the slot's header, owned by this instance.
        unsafe { (*limits).epoch_deadline = deadline };
    }
}

fn host_trap(message: String) -> Trap {
    Trap {
        code: TrapCode::HostTrap,
        host_message: Some(message),
        backtrace: Vec::<FrameInfo>::new(),
    }
}

impl Drop for PooledInstance {
    fn drop(&mut self) {
        let i = self.index;
        if let Some(tx) = &self.pool.reset_tx {
            if tx.send(i).is_ok() {
                return;
            }
        }
        // SAFETY: we own the slot until we release it.
        unsafe { self.pool.slot(i) }.reset(self.pool.config.keep_resident_bytes);
        self.pool.release(i);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
