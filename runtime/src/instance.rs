//! Instances as compiled code sees them: the vmctx storage, the runtime's per-instance data the
//! vmctx points back to, and the builtins compiled code calls (memory and table operations that
//! need the runtime). Shared by the general [`Store`](crate::Store) and the instance pool.

use crate::memory::MemoryData;
use crate::table::TableData;
use crate::traphandlers::{self, CodeRegistry};
use crate::vm::{VmDefinition, VmFuncRef, VmLimits};
use crate::{Engine, FrameInfo, Module, Trap};
use fnvm_abi::module::*;
use fnvm_abi::vmoffsets::{func_import, funcref};
use fnvm_abi::{TrapCode, VmOffsets};
use std::any::Any;

/// A vmctx: 16-byte aligned, zeroed storage, either owned (stores) or inside an instance slot
/// of the pool (which owns the memory and keeps it mapped for the slot's lifetime).
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

    /// Writes a pointer-sized value at `off`.
    pub(crate) fn set(&self, off: u32, v: u64) {
        debug_assert!(off as usize + 8 <= self.len);
        // SAFETY: `off` comes from VmOffsets for this vmctx's shape, so it is in bounds and
        // 8-aligned.
        unsafe { (self.ptr.add(off as usize) as *mut u64).write(v) }
    }

    pub(crate) fn get(&self, off: u32) -> u64 {
        debug_assert!(off as usize + 8 <= self.len);
        // SAFETY: as in `set`.
        unsafe { (self.ptr.add(off as usize) as *const u64).read() }
    }

    /// The header fields every vmctx of `module` has: the limits it checks, the engine's epoch
    /// counter, the builtins and the engine-wide signature ids.
    pub(crate) fn set_header(&self, limits: *const VmLimits, engine: &Engine, module: &Module) {
        self.set(VmOffsets::LIMITS, limits as u64);
        self.set(VmOffsets::EPOCH_PTR, engine.epoch_ptr() as u64);
        self.set(VmOffsets::BUILTINS, BUILTINS.0.as_ptr() as u64);
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
}

pub(crate) struct InstanceData {
    pub(crate) module: Module,
    pub(crate) vmctx: VmCtx,
    pub(crate) memory: Option<(u32, *mut MemoryData)>,
    pub(crate) tables: Vec<(u32, *mut TableData)>,
    /// Passive element segments still alive (None once dropped).
    pub(crate) elems: Vec<Option<Vec<u64>>>,
    /// Whether each data segment was dropped.
    pub(crate) data_dropped: Vec<bool>,
    /// The host state host functions receive ([`crate::Caller::data`]); set by the pool.
    pub(crate) host_data: Option<*mut (dyn Any + Send)>,
}

// ---- builtins ----------------------------------------------------------------------------------

/// # Safety
/// `vmctx` must be the vmctx of a live instance.
pub(crate) unsafe fn instance_of<'a>(vmctx: *mut u8) -> &'a mut InstanceData {
    // SAFETY: the INSTANCE slot of every vmctx holds its InstanceData, which outlives guest code.
    unsafe { &mut *(*(vmctx.add(VmOffsets::INSTANCE as usize) as *const *mut InstanceData)) }
}

extern "C" fn memory_grow(vmctx: *mut u8, delta: u32) -> u32 {
    // SAFETY: called by compiled code with its own vmctx.
    let inst = unsafe { instance_of(vmctx) };
    let Some((_, mem)) = inst.memory else {
        return u32::MAX;
    };
    // SAFETY: the memory is owned by the store and outlives the instance.
    let mem = unsafe { &mut *mem };
    mem.grow(delta as u64).map_or(u32::MAX, |old| old as u32)
}

/// The instance's memory, for builtins of modules that validated with one.
pub(crate) fn memory_of(inst: &mut InstanceData) -> Option<&mut MemoryData> {
    // SAFETY: the memory is owned by the store and outlives the instance.
    inst.memory.map(|(_, m)| unsafe { &mut *m })
}

extern "C" fn memory_fill(vmctx: *mut u8, dst: u32, val: u32, len: u32) -> u32 {
    // SAFETY: called by compiled code with its own vmctx.
    let inst = unsafe { instance_of(vmctx) };
    let Some(mem) = memory_of(inst) else { return 1 };
    if !mem.check_range(dst as u64, len as u64) {
        return 1;
    }
    mem.data_mut()[dst as usize..(dst as usize + len as usize)].fill(val as u8);
    0
}

extern "C" fn memory_copy(vmctx: *mut u8, dst: u32, src: u32, len: u32) -> u32 {
    // SAFETY: called by compiled code with its own vmctx.
    let inst = unsafe { instance_of(vmctx) };
    let Some(mem) = memory_of(inst) else { return 1 };
    if !mem.check_range(dst as u64, len as u64) || !mem.check_range(src as u64, len as u64) {
        return 1;
    }
    mem.data_mut()
        .copy_within(src as usize..src as usize + len as usize, dst as usize);
    0
}

extern "C" fn memory_init(vmctx: *mut u8, seg: u32, dst: u32, src: u32, len: u32) -> u32 {
    // SAFETY: called by compiled code with its own vmctx.
    let inst = unsafe { instance_of(vmctx) };
    let module = inst.module.clone();
    let data: &[u8] = match module.info().datas.get(seg as usize) {
        Some(d) if !inst.data_dropped.get(seg as usize).copied().unwrap_or(true) => &d.data,
        _ => &[],
    };
    let Some(mem) = memory_of(inst) else { return 1 };
    init_from(mem.data_mut(), dst, data, src, len)
}

/// The bounds check and copy shared by `memory.init` and `table.init`: copies
/// `src[src_off..src_off + len]` to `dst[dst_off..]`, or returns 1 (trap) if either range is
/// out of bounds, writing nothing.
pub(crate) fn init_from<T: Copy>(
    dst: &mut [T],
    dst_off: u32,
    src: &[T],
    src_off: u32,
    len: u32,
) -> u32 {
    let in_bounds = |off: u32, total: usize| (off as u64 + len as u64) <= total as u64;
    if !in_bounds(dst_off, dst.len()) || !in_bounds(src_off, src.len()) {
        return 1;
    }
    let (d, s, n) = (dst_off as usize, src_off as usize, len as usize);
    dst[d..d + n].copy_from_slice(&src[s..s + n]);
    0
}

extern "C" fn data_drop(vmctx: *mut u8, seg: u32) {
    // SAFETY: called by compiled code with its own vmctx.
    let inst = unsafe { instance_of(vmctx) };
    if let Some(d) = inst.data_dropped.get_mut(seg as usize) {
        *d = true;
    }
}

/// Table `t` of an instance. Tables are owned by the store and outlive the instance; callers
/// turn the pointer into a reference for the duration of one builtin.
pub(crate) fn table_of(inst: &InstanceData, t: u32) -> Option<*mut TableData> {
    inst.tables.get(t as usize).map(|(_, p)| *p)
}

extern "C" fn table_grow(vmctx: *mut u8, t: u32, delta: u32, init: u64) -> u32 {
    // SAFETY: called by compiled code with its own vmctx.
    let inst = unsafe { instance_of(vmctx) };
    let Some(table) = table_of(inst, t) else {
        return u32::MAX;
    };
    // SAFETY: see `table_of`; no other reference to the table is live during the builtin.
    let table = unsafe { &mut *table };
    table
        .grow(delta as u64, init)
        .map_or(u32::MAX, |old| old as u32)
}

extern "C" fn table_fill(vmctx: *mut u8, t: u32, dst: u32, val: u64, len: u32) -> u32 {
    // SAFETY: called by compiled code with its own vmctx.
    let inst = unsafe { instance_of(vmctx) };
    let Some(table) = table_of(inst, t) else {
        return 1;
    };
    // SAFETY: see `table_of`; no other reference to the table is live during the builtin.
    let table = unsafe { &mut *table };
    if !table.check_range(dst as u64, len as u64) {
        return 1;
    }
    table.elems_mut()[dst as usize..dst as usize + len as usize].fill(val);
    0
}

extern "C" fn table_copy(vmctx: *mut u8, dt: u32, st: u32, dst: u32, src: u32, len: u32) -> u32 {
    // SAFETY: called by compiled code with its own vmctx.
    let inst = unsafe { instance_of(vmctx) };
    let (Some(src_p), Some(dst_p)) = (table_of(inst, st), table_of(inst, dt)) else {
        return 1;
    };
    // SAFETY: see `table_of`; the source is only read, and when the two tables are the same
    // table only the mutable reference is used.
    let (src_t, dst_t) = unsafe { (&*src_p, &mut *dst_p) };
    let (s, d, n) = (src as usize, dst as usize, len as usize);
    if !src_t.check_range(src as u64, len as u64) || !dst_t.check_range(dst as u64, len as u64) {
        return 1;
    }
    if std::ptr::eq(src_p, dst_p) {
        dst_t.elems_mut().copy_within(s..s + n, d);
    } else {
        let items: Vec<u64> = src_t.elems()[s..s + n].to_vec();
        dst_t.elems_mut()[d..d + n].copy_from_slice(&items);
    }
    0
}

extern "C" fn table_init(vmctx: *mut u8, t: u32, seg: u32, dst: u32, src: u32, len: u32) -> u32 {
    // SAFETY: called by compiled code with its own vmctx.
    let inst = unsafe { instance_of(vmctx) };
    let Some(table) = table_of(inst, t) else {
        return 1;
    };
    let items: &[u64] = match inst.elems.get(seg as usize) {
        Some(Some(items)) => items,
        _ => &[],
    };
    // SAFETY: see `table_of`; the table is owned by the store, not by the instance whose
    // segment we read, so the two borrows do not overlap.
    let table = unsafe { &mut *table };
    init_from(table.elems_mut(), dst, items, src, len)
}

extern "C" fn elem_drop(vmctx: *mut u8, seg: u32) {
    // SAFETY: called by compiled code with its own vmctx.
    let inst = unsafe { instance_of(vmctx) };
    if let Some(e) = inst.elems.get_mut(seg as usize) {
        *e = None;
    }
}

/// Builtin function pointers, in `Builtin` order.
pub(crate) struct BuiltinTable(pub(crate) [*const (); 11]);
// SAFETY: the table holds only function addresses, immutable for the process lifetime.
unsafe impl Sync for BuiltinTable {}

pub(crate) static BUILTINS: BuiltinTable = BuiltinTable([
    memory_grow as *const (),
    memory_fill as *const (),
    memory_copy as *const (),
    memory_init as *const (),
    data_drop as *const (),
    table_grow as *const (),
    table_fill as *const (),
    table_copy as *const (),
    table_init as *const (),
    elem_drop as *const (),
    traphandlers::fnvm_raise as *const (),
]);

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
        ConstExpr::RefFunc(f) => {
            // SAFETY: the funcref array is inside the vmctx.
            (unsafe { inst.vmctx.ptr().add(offsets.funcref(f) as usize) }) as u64
        }
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

pub(crate) fn symbolize(registry: &CodeRegistry, pcs: &[usize]) -> Vec<FrameInfo> {
    pcs.iter()
        .filter_map(|&pc| {
            let code = registry.lookup(pc)?;
            let off = (pc - code.base) as u32;
            let m = &code.module;
            let func_index = m.func_at(off)?;
            Some(FrameInfo {
                func_index,
                func_name: m.func_name(func_index).map(str::to_owned),
                module_name: m.name.clone(),
                wasm_offset: m.wasm_offset_at(off),
                pc,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn builtin_table_covers_every_builtin() {
        assert_eq!(super::BUILTINS.0.len(), fnvm_abi::Builtin::ALL.len());
        assert_eq!(fnvm_abi::Builtin::Raise as usize, 10);
    }
}
