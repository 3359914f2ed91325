//! Instances as compiled code sees them: the vmctx storage and the runtime's per-instance data
//! the vmctx points back to. Shared by the general [`Store`](crate::Store) and the pool.

use crate::memory::MemoryData;
use crate::table::TableData;
use crate::vm::{VmDefinition, VmFuncRef, VmLimits};
use crate::{Engine, Module, Trap};
use fnvm_abi::module::*;
use fnvm_abi::vmoffsets::{func_import, funcref};
use fnvm_abi::{TrapCode, VmOffsets};
use fnvm_host_interface::{Deadline, DeadlineSource};

/// A vmctx: 16-byte aligned, zeroed storage, either owned (stores) or inside an instance slot
/// of the pool (which owns the memory and keeps it mapped for the slot's lifetime). Reads and
/// writes are bounds-checked: a wrong offset is a bug that stops the process, never a write
/// outside the vmctx.
pub(crate) struct VmCtx {
    ptr: *mut u8,
    len: usize,
    _owned: Option<Box<[u128]>>,
}

impl VmCtx {
    pub(crate) fn new(size: u32) -> VmCtx {
        let mut mem = vec![0u128; (size as usize).div_ceil(16).max(1)].into_boxed_slice();
        VmCtx {
            ptr: mem.as_mut_ptr().cast(),
            len: mem.len() * 16,
            _owned: Some(mem),
        }
    }

    /// A vmctx over `len` bytes at `ptr`.
    ///
    /// # Safety
    /// `ptr` must be 16-byte aligned and `[ptr, ptr + len)` readable, writable and not used for
    /// anything else while the returned value (or any instance using it) is alive.
    pub(crate) unsafe fn in_slot(ptr: *mut u8, len: usize) -> VmCtx {
        VmCtx {
            ptr,
            len,
            _owned: None,
        }
    }

    pub(crate) fn ptr(&self) -> *mut u8 {
        self.ptr
    }

    fn check(&self, off: u32) -> usize {
        let off = off as usize;
        assert!(
            off.is_multiple_of(8) && off + 8 <= self.len,
            "vmctx offset {off} outside a {}-byte vmctx",
            self.len
        );
        off
    }

    /// Writes a pointer-sized value at `off`.
    pub(crate) fn set(&self, off: u32, v: u64) {
        let off = self.check(off);
        // SAFETY: in bounds and 8-aligned (checked); the storage is ours (see `in_slot`).
        unsafe { (self.ptr.add(off) as *mut u64).write(v) }
    }

    /// Reads a pointer-sized value at `off`.
    pub(crate) fn get(&self, off: u32) -> u64 {
        let off = self.check(off);
        // SAFETY: as in `set`.
        unsafe { (self.ptr.add(off) as *const u64).read() }
    }

    /// The header fields every vmctx of `module` has: the limits it checks, the engine's epoch
    /// counter, the builtins and the engine-wide signature ids.
    pub(crate) fn set_header(&self, limits: *const VmLimits, engine: &Engine, module: &Module) {
        self.set(VmOffsets::LIMITS, limits as u64);
        self.set(VmOffsets::EPOCH_PTR, engine.epoch_ptr() as u64);
        self.set(VmOffsets::BUILTINS, crate::builtins::table() as u64);
        self.set(VmOffsets::TYPE_IDS, module.inner.type_ids.as_ptr() as u64);
    }

    /// Points the vmctx at its linear memory's definition (whose base never moves).
    ///
    /// # Safety
    /// `def` must point to a live definition that outlives the instance.
    pub(crate) unsafe fn set_memory(&self, def: *const VmDefinition) {
        // SAFETY: per the contract.
        self.set(VmOffsets::MEMORY_BASE, unsafe { (*def).base } as u64);
        self.set(VmOffsets::MEMORY_DEF, def as u64);
    }

    /// The import record and the funcref record of imported function `index`.
    pub(crate) fn set_func_import(&self, offsets: &VmOffsets, index: u32, fr: &VmFuncRef) {
        let rec = offsets.imported_func(index);
        self.set(rec + func_import::WASM_CALL, fr.wasm_call as u64);
        self.set(rec + func_import::VMCTX, fr.vmctx as u64);
        self.set_funcref(offsets.funcref(index), fr);
    }

    /// The funcref records of `module`'s defined functions, whose vmctx is this one.
    pub(crate) fn set_defined_funcrefs(&self, module: &Module) {
        let info = module.info();
        let code_base = module.code_base();
        let nif = info.num_imported_funcs();
        for (i, range) in info.code.iter().enumerate() {
            let f = nif + i as u32;
            let t = info.funcs[f as usize] as usize;
            // SAFETY: code and trampoline ranges were checked against the code length at load.
            let (wasm_call, array_call) = unsafe {
                (
                    code_base.add(range.offset as usize),
                    code_base.add(info.trampolines[t].array_call.offset as usize),
                )
            };
            let fr = VmFuncRef {
                wasm_call,
                array_call,
                type_id: module.inner.type_ids[t] as u64,
                vmctx: self.ptr,
            };
            self.set_funcref(module.inner.offsets.funcref(f), &fr);
        }
    }

    fn set_funcref(&self, at: u32, fr: &VmFuncRef) {
        self.set(at + funcref::WASM_CALL, fr.wasm_call as u64);
        self.set(at + funcref::ARRAY_CALL, fr.array_call as u64);
        self.set(at + funcref::TYPE_ID, fr.type_id);
        self.set(at + funcref::VMCTX, fr.vmctx as u64);
    }

    /// The funcref record of function `index` (imported or defined).
    pub(crate) fn funcref(&self, offsets: &VmOffsets, index: u32) -> VmFuncRef {
        let at = offsets.funcref(index);
        VmFuncRef {
            wasm_call: self.get(at + funcref::WASM_CALL) as *const u8,
            array_call: self.get(at + funcref::ARRAY_CALL) as *const u8,
            type_id: self.get(at + funcref::TYPE_ID),
            vmctx: self.get(at + funcref::VMCTX) as *mut u8,
        }
    }
}

/// The runtime's side of an instance; the vmctx's `INSTANCE` field points to it.
pub(crate) struct InstanceData {
    pub(crate) module: Module,
    pub(crate) vmctx: VmCtx,
    /// The linear memory (its store index, for exports) and where it lives.
    pub(crate) memory: Option<(u32, *mut MemoryData)>,
    /// The tables (store index, where each lives).
    pub(crate) tables: Vec<(u32, *mut TableData)>,
    /// Passive element segments still alive (None once dropped).
    pub(crate) elems: Vec<Option<Vec<u64>>>,
    /// Whether each data segment was dropped.
    pub(crate) data_dropped: Vec<bool>,
    /// The host state of the running invocation, a `T` of the instance's host functions; set
    /// by whoever enters the guest, for the duration of the call (null otherwise).
    pub(crate) host_data: *mut (),
}

impl DeadlineSource for InstanceData {
    /// The instance's deadline as host functions see it.
    fn deadline(&self) -> Deadline<'_> {
        let engine = &self.module.inner.engine;
        let Some(tick) = engine.epoch_tick() else {
            // Nothing advances the epoch on its own: no wall-clock deadline to wait for.
            return Deadline::NEVER;
        };
        let limits = self.vmctx.get(VmOffsets::LIMITS) as *const VmLimits;
        if limits.is_null() {
            // The header is not set up yet: no guest code has run.
            return Deadline::NEVER;
        }
        // SAFETY: a vmctx's LIMITS field is only ever written by `set_header`, with the live
        // limits of its store or slot, which outlive the instance.
        let at = unsafe { (*limits).epoch_deadline };
        Deadline::epoch(engine.epoch_counter(), at, tick)
    }
}

/// The instance data of the vmctx `vmctx`.
///
/// # Safety
/// `vmctx` must be the vmctx of a live instance, and no other reference to its data may be in
/// use while the returned one is.
pub(crate) unsafe fn instance_of<'a>(vmctx: *mut u8) -> &'a mut InstanceData {
    // SAFETY: the INSTANCE slot of every vmctx holds its InstanceData, which outlives guest code.
    unsafe { &mut *(*(vmctx.add(VmOffsets::INSTANCE as usize) as *const *mut InstanceData)) }
}

/// The instance's memory, for builtins and host calls of modules that validated with one.
///
/// # Safety
/// The memory must be alive (its owner, a store or a slot, outlives the instance) and no other
/// reference to it may be in use while the returned one is: guest code is suspended in the
/// builtin or host call asking for it.
pub(crate) unsafe fn memory_of<'a>(inst: &InstanceData) -> Option<&'a mut MemoryData> {
    // SAFETY: per the contract.
    inst.memory.map(|(_, m)| unsafe { &mut *m })
}

/// Table `t` of an instance. Tables are owned by the store or slot and outlive the instance;
/// callers turn the pointer into a reference for the duration of one builtin.
pub(crate) fn table_of(inst: &InstanceData, t: u32) -> Option<*mut TableData> {
    inst.tables.get(t as usize).map(|(_, p)| *p)
}

pub(crate) fn trap(code: TrapCode) -> Trap {
    Trap {
        code,
        host_message: None,
        backtrace: Vec::new(),
    }
}

/// Evaluates a constant expression in an instance being initialised.
pub(crate) fn const_eval(inst: &InstanceData, e: &ConstExpr) -> u64 {
    let offsets = &inst.module.inner.offsets;
    match *e {
        ConstExpr::I32(v) => v as u32 as u64,
        ConstExpr::I64(v) => v as u64,
        ConstExpr::F32(v) => v as u64,
        ConstExpr::F64(v) => v,
        ConstExpr::RefNull => 0,
        ConstExpr::RefFunc(f) => inst.vmctx.ptr() as u64 + offsets.funcref(f) as u64,
        ConstExpr::GlobalGet(g) => {
            let ni = inst.module.info().num_imported_globals();
            if g < ni {
                let p = inst.vmctx.get(offsets.imported_global_ptr(g)) as *const u64;
                // SAFETY: imported global storage lives as long as the store.
                unsafe { p.read() }
            } else {
                inst.vmctx.get(offsets.defined_global(g - ni))
            }
        }
    }
}
