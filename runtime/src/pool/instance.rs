//! A live instance in a pool slot: calls into it (through the one guest-call path), its host
//! state, its memory accounting, and giving the slot back when it ends.

use super::slot::Slot;
use super::PoolInner;
use crate::call::{call_wasm, host_trap, GuestContext};
use crate::mmap::page_size;
use crate::{BackendInstance, Halt, Val};
use fnvm_abi::module::ExternKind;
use std::sync::Arc;

/// Ownership of one slot, from acquisition until it is handed back (to the reset thread, or
/// reset inline) on drop.
pub(super) struct SlotLease {
    pub(super) pool: Arc<PoolInner>,
    pub(super) index: u32,
}

// SAFETY: the lease owns its slot exclusively (see PoolInner); nothing in a slot is tied to the
// thread that acquired it: traps are caught per call on the calling thread.
unsafe impl Send for SlotLease {}

impl SlotLease {
    pub(super) fn slot(&self) -> &Slot {
        // SAFETY: this lease owns its slot.
        unsafe { &*self.pool.slots[self.index as usize].get() }
    }

    /// The slot, to run or change the instance in it: on another thread than the one it was
    /// created on, the fault count of the creating thread is no evidence any more.
    pub(super) fn slot_mut(&mut self) -> &mut Slot {
        // SAFETY: this lease owns its slot, and `&mut self` makes this the only borrow.
        let slot = unsafe { self.pool.slot(self.index) };
        if slot
            .fault_mark
            .is_some_and(|m| !crate::faults::on_thread_of(&m))
        {
            slot.fault_mark = None;
        }
        slot
    }
}

impl Drop for SlotLease {
    fn drop(&mut self) {
        self.pool.give_back(self.index);
    }
}

/// A live instance in a pool slot, with its host state `T`. Dropping it returns the slot (reset
/// off the caller's path when the pool has a reset thread). `Send`: it may move between threads,
/// and runs on whichever thread calls it.
pub struct PooledInstance<T> {
    pub(super) lease: SlotLease,
    pub(super) max_stack: usize,
    pub(super) data: T,
}

impl<T> std::fmt::Debug for PooledInstance<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PooledInstance")
            .field("slot", &self.lease.index)
            .finish_non_exhaustive()
    }
}

impl<T: Send + 'static> PooledInstance<T> {
    /// Index of the slot (for tests and monitoring).
    pub fn slot_index(&self) -> u32 {
        self.lease.index
    }

    /// Calls the exported function `name`.
    pub fn call(&mut self, name: &str, args: &[Val]) -> Result<Vec<Val>, Halt> {
        let slot = self.lease.slot();
        let Some(inst) = slot.instance.as_deref() else {
            return Err(Halt::Trap(host_trap("instance was reset")));
        };
        let Some(e) = inst
            .module
            .info()
            .exports
            .iter()
            .find(|e| e.name == name && e.kind == ExternKind::Func)
        else {
            return Err(Halt::Trap(host_trap(format!(
                "no exported function `{name}`"
            ))));
        };
        let index = e.index;
        self.call_index(index, args)
    }

    /// Calls function `func` (an index in the module's function space).
    pub(super) fn call_index(&mut self, func: u32, args: &[Val]) -> Result<Vec<Val>, Halt> {
        let max_stack = self.max_stack;
        let data: *mut T = &mut self.data;
        let slot = self.lease.slot_mut();
        let Some(inst) = slot.instance.as_deref_mut() else {
            return Err(Halt::Trap(host_trap("instance was reset")));
        };
        let module = inst.module.clone();
        let info = module.info();
        let Some(ty) = info
            .funcs
            .get(func as usize)
            .and_then(|t| info.types.get(*t as usize))
        else {
            return Err(Halt::Trap(host_trap(format!("no function {func}"))));
        };
        let fr = inst.vmctx.funcref(&module.inner.offsets, func);
        if fr.array_call.is_null() {
            return Err(Halt::Trap(host_trap(
                "calling an imported host function from the host is not supported",
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
        if args.len() != ty.params.len() {
            return Err(Halt::Trap(host_trap(format!(
                "arguments do not match {ty}"
            ))));
        }
        for ((v, a), t) in values.iter_mut().zip(args).zip(&ty.params) {
            v[0] = a.to_raw().filter(|_| a.ty() == *t).ok_or_else(|| {
                Halt::Trap(host_trap(format!(
                    "arguments do not match {ty} (function references cannot be passed to pooled instances)"
                )))
            })?;
        }
        inst.host_data = data.cast();
        let cx = GuestContext {
            code: &slot.code,
            limits: slot.limits(),
            stack: &slot.stack,
            max_stack,
        };
        // SAFETY: `fr` is the funcref of a defined function (non-null array_call) of the live
        // instance in this slot, whose code is in the slot's registry and whose vmctx points at
        // the slot's limits; `values` has room for params and results, the params type-checked
        // above; the host state is this instance's `T`, which the slot's prepared module's host
        // functions take.
        let result = unsafe { call_wasm(&cx, &fr, values) };
        if let Some(inst) = slot.instance.as_deref_mut() {
            inst.host_data = std::ptr::null_mut();
        }
        result?;
        ty.results
            .iter()
            .zip(values.iter())
            .map(|(t, s)| {
                Val::from_raw(*t, s[0]).ok_or_else(|| {
                    Halt::Trap(host_trap(
                        "function references cannot be returned from pooled instances",
                    ))
                })
            })
            .collect()
    }

    /// The accessible bytes of the instance's linear memory, if it has one.
    pub fn memory(&mut self) -> Option<&mut [u8]> {
        let slot = self.lease.slot_mut();
        let has = slot.instance.as_deref().is_some_and(|i| i.memory.is_some());
        has.then(|| slot.memory.data_mut())
    }

    fn has_memory(&self) -> bool {
        let slot = self.lease.slot();
        slot.instance.as_deref().is_some_and(|i| i.memory.is_some())
    }

    /// The host state.
    pub fn data(&mut self) -> &mut T {
        &mut self.data
    }

    /// Ends the instance (its slot goes back to the pool) and returns its host state.
    pub fn into_data(self) -> T {
        let PooledInstance { lease, data, .. } = self;
        drop(lease);
        data
    }

    /// Current size of the linear memory in wasm pages (64 KiB).
    pub fn memory_pages(&self) -> u64 {
        if self.has_memory() {
            self.lease.slot().memory.pages()
        } else {
            0
        }
    }

    /// 4 KiB pages of linear memory present in host memory, from `/proc/self/pagemap`: the
    /// pages the guest touched, plus neighbours of touched image pages the kernel mapped in
    /// with them. The debug report's `currentPages`.
    pub fn resident_memory_pages(&self) -> std::io::Result<u64> {
        if !self.has_memory() {
            return Ok(0);
        }
        self.lease.slot().memory.resident_pages()
    }

    /// Host memory this instance occupies: resident pages of its linear memory, vmctx and
    /// stack (tables and bookkeeping on the heap are not counted).
    pub fn resident_bytes(&self) -> std::io::Result<u64> {
        let slot = self.lease.slot();
        let page = page_size() as u64;
        let header =
            crate::pagemap::resident_pages(slot.header.as_ptr() as usize, slot.header.len())?;
        let (stack_base, stack_len) = slot.stack.range();
        let stack = crate::pagemap::resident_pages(stack_base, stack_len)?;
        Ok((header + stack + self.resident_memory_pages()?) * page)
    }
}

impl<T: Send + 'static> BackendInstance<T> for PooledInstance<T> {
    fn call(&mut self, name: &str, args: &[Val]) -> Result<Vec<Val>, Halt> {
        PooledInstance::call(self, name, args)
    }

    fn data(&mut self) -> &mut T {
        PooledInstance::data(self)
    }

    fn into_data(self) -> T {
        PooledInstance::into_data(self)
    }

    fn memory_pages(&self) -> u64 {
        PooledInstance::memory_pages(self)
    }

    fn resident_memory_pages(&self) -> std::io::Result<u64> {
        PooledInstance::resident_memory_pages(self)
    }

    fn resident_bytes(&self) -> std::io::Result<u64> {
        PooledInstance::resident_bytes(self)
    }
}
