//! One instance slot: views of its part of the pool's reservation (header with limits and
//! vmctx, guarded stack, linear memory), plus host-side state kept across instances (tables,
//! instance bookkeeping, the module it is set up for). Setting a slot up for a module and
//! starting an instance in it; resetting it afterwards is in [`super::reset`].

use super::prepared::SlotModule;
use super::PoolConfig;
use crate::instance::{InstanceData, VmCtx};
use crate::link::InitValue;
use crate::memory::MemoryData;
use crate::mmap::Mmap;
use crate::table::TableData;
use crate::traphandlers::{CodeRegistry, GuestStack};
use crate::vm::{VmFuncRef, VmLimits};
use crate::{Engine, InstanceLimits, ResourceError};
use fnvm_abi::{VmOffsets, WASM_PAGE_SIZE};
use std::sync::Arc;

/// Where the vmctx starts in a slot's header (after the VmLimits, 16-byte aligned).
pub(super) const VMCTX_START: usize = 64;

pub(super) struct Slot {
    pub(super) header: Mmap,
    pub(super) stack: GuestStack,
    pub(super) memory: Box<MemoryData>,
    #[expect(
        clippy::vec_box,
        reason = "the vmctx points at each table's definition, which must not move"
    )]
    tables: Vec<Box<TableData>>,
    pub(super) code: CodeRegistry,
    pub(super) instance: Option<Box<InstanceData>>,
    /// The prepared module the slot is set up for; kept alive while the vmctx points into it.
    pub(super) prepared: Option<Arc<dyn SlotModule>>,
    /// Whether an instance ran since the last reset.
    pub(super) dirty: bool,
    /// Buffer for pagemap entries at reset.
    pub(super) scratch: crate::pagemap::Scratch,
    /// Bytes of linear memory, from its base, holding pages the last reset kept resident
    /// (0: none).
    pub(super) kept_extent: usize,
    /// The fault count of the thread the running instance was created on, from before it was
    /// (`None`: no instance, or it was used from another thread): see [`crate::faults`].
    pub(super) fault_mark: Option<crate::faults::FaultMark>,
}

impl Slot {
    /// A slot over the given views of the pool's reservation, set up for no module.
    pub(super) fn new(header: Mmap, stack: GuestStack, memory: Mmap) -> Slot {
        Slot {
            header,
            stack,
            memory: MemoryData::in_slot(memory),
            tables: Vec::new(),
            code: CodeRegistry::default(),
            instance: None,
            prepared: None,
            dirty: false,
            scratch: crate::pagemap::Scratch::default(),
            kept_extent: 0,
            fault_mark: None,
        }
    }

    pub(super) fn limits(&self) -> *mut VmLimits {
        self.header.as_ptr().cast()
    }

    /// Id of the linked module the slot is set up for.
    pub(super) fn module_id(&self) -> Option<u64> {
        self.prepared.as_ref().map(|p| p.id())
    }

    /// Sets the slot up for `pre`: fresh vmctx, the module's memory image, its tables.
    pub(super) fn switch_to(
        &mut self,
        engine: &Engine,
        pre: Arc<dyn SlotModule>,
        config: &PoolConfig,
    ) -> Result<(), ResourceError> {
        let module = pre.module().clone();
        let template = pre.template();
        let offsets = &module.inner.offsets;
        config.check_fits(&module, template)?;
        self.instance = None;
        self.prepared = None;
        // SAFETY: the slot's owner (us) is the only user of its header, and no instance is set
        // up in it any more.
        unsafe { self.header.discard(0, self.header.len()) }.map_err(ResourceError::Slot)?;
        let mem_ty = template.memory.unwrap_or(fnvm_abi::MemoryType {
            limits: fnvm_abi::Limits { min: 0, max: None },
        });
        self.memory
            .setup_in_slot(mem_ty, pre.image())
            .map_err(ResourceError::Slot)?;
        self.scratch.private_known = false;
        self.kept_extent = 0;
        self.tables.clear();
        for (ty, _) in template.tables.iter() {
            self.tables
                .push(TableData::new(*ty, 0, config.max_table_elements)?);
        }
        self.code = CodeRegistry::default();
        self.code.insert(&module);

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
        vmctx.set_header(self.limits(), engine, &module);
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
            // Linking produced one host function per imported function.
            let Some(ctx) = pre.host_call(fi as usize) else {
                break;
            };
            let fr = VmFuncRef {
                wasm_call: tramp,
                array_call: std::ptr::null(),
                type_id: module.inner.type_ids[t as usize] as u64,
                vmctx: ctx as *mut u8,
            };
            vmctx.set_func_import(offsets, fi, &fr);
            fi += 1;
        }
        vmctx.set_defined_funcrefs(&module);
        for (i, t) in self.tables.iter_mut().enumerate() {
            vmctx.set(offsets.table_ptr(i as u32), &mut t.def as *mut _ as u64);
        }
        let memory = template
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
            elems: vec![None; template.passive_elems.len()],
            data_dropped: template.data_dropped.to_vec(),
            host_data: std::ptr::null_mut(),
        });
        let inst_ptr: *mut InstanceData = &mut *inst;
        inst.vmctx.set(VmOffsets::INSTANCE, inst_ptr as u64);
        self.instance = Some(inst);
        self.prepared = Some(pre);
        Ok(())
    }

    /// Writes what an instance may have changed back to the module's initial state and sets
    /// the instance's limits. No system calls.
    pub(super) fn init_instance(
        &mut self,
        config: &PoolConfig,
        limits: &InstanceLimits,
        deadline: u64,
    ) {
        let limits_ptr = self.limits();
        let Some(pre) = &self.prepared else { return };
        let template = pre.template();
        let Some(inst) = self.instance.as_deref_mut() else {
            return;
        };
        let offsets = &inst.module.inner.offsets;
        let vmctx = inst.vmctx.ptr() as u64;
        for (i, g) in template.globals.iter().enumerate() {
            let raw = match *g {
                InitValue::Raw(v) => v,
                InitValue::FuncRef(off) => vmctx + off as u64,
            };
            let at = offsets.defined_global(i as u32);
            inst.vmctx.set(at, raw);
            inst.vmctx.set(at + 8, 0);
        }
        let reloc = |x: &u32| if *x == 0 { 0 } else { vmctx + *x as u64 };
        // Tables are rewritten only if the previous instance changed them (or the slot was
        // just set up): a function that never writes its table pays nothing for it.
        for (t, (_, init)) in self.tables.iter_mut().zip(template.tables.iter()) {
            if t.modified() {
                t.refill(
                    config.max_table_elements,
                    init.len(),
                    init.iter().map(reloc),
                );
            }
        }
        // Passive segments only change by being dropped.
        for (e, init) in inst.elems.iter_mut().zip(template.passive_elems.iter()) {
            if e.is_none() {
                *e = init.as_ref().map(|items| items.iter().map(reloc).collect());
            }
        }
        inst.data_dropped.copy_from_slice(&template.data_dropped);
        let cap_pages = limits
            .max_memory_bytes
            .map_or(u64::MAX, |b| b / WASM_PAGE_SIZE)
            .min(config.max_memory_pages as u64);
        self.memory.set_cap(cap_pages);
        // SAFETY: the limits live at the start of the slot's read-write header.
        unsafe {
            limits_ptr.write(VmLimits {
                stack_limit: 0,
                epoch_deadline: deadline,
            })
        };
        self.dirty = true;
    }
}
