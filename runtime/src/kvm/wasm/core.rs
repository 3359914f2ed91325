//! The part of a [`WasmVm`](super::WasmVm) that does not depend on its host state type: the
//! VM and vCPU, the instance region and its initialisation from the linked module's template,
//! entering the guest, and the run loop that serves builtins (see [`super::builtins`]) and
//! stops at a return, a host call or a trap.
//!
//! Everything read back from the guest (registers at an exit, the stack, value slots, table
//! elements) is untrusted: addresses are checked against the region before any read, and a
//! value that makes no sense ends the call with an error, never a panic.

use super::layout::{
    builtin_stub, AddressSpace, MemoryMapping, RegionLayout, RegionShape, EXIT_BUILTIN,
    EXIT_HOST_CALL, EXIT_RETURN, HOST_CALL_STUB, HOST_CTX_SIZE, STACK_SLACK, STUB_ADDR,
    WRITE_BEHIND_STUB,
};
use super::linear::LinearMemory;
use super::write_behind::WRITE_LOG_BYTES;
use super::{WasmVmConfig, WasmVmError};
use crate::kvm::kick::Kicker;
use crate::kvm::memory::{GuestMemory, PageFlags, PageTableBuilder, PageTableState};
use crate::kvm::vcpu::{entry_regs, Exit, Vcpu};
use crate::kvm::vm::{Kvm, Vm};
use crate::kvm::GDT_ADDR;
use crate::link::{InitValue, InstanceTemplate};
use crate::pool::MemoryImage;
use crate::{FrameInfo, Module, Trap, Val};
use fnvm_abi::module::{ExternKind, ImportType};
use fnvm_abi::vmoffsets::{def, func_import, funcref, limits, VALUE_SLOT_SIZE};
use fnvm_abi::{Builtin, TrapCode, ValType, VmOffsets};
use std::ops::Range;
use std::ptr::NonNull;
use std::sync::Arc;

/// Written memory pages up to this many bytes are restored in place at a reset and stay
/// resident (the in-process pool's default); beyond it they are discarded.
const KEEP_RESIDENT_BYTES: usize = 4 << 20;
/// Most frames a trap's backtrace records (as in process).
const MAX_FRAMES: usize = 64;

/// Host-side state of one table (the authority; the guest's copy of the length is only read
/// by its code).
#[derive(Debug)]
pub(super) struct TableState {
    /// Elements allowed (declared maximum and cap, at most the room in the region).
    pub(super) max: u64,
    pub(super) len: u64,
    /// Elements written since the last reset (they are zeroed at the next).
    pub(super) high_water: u64,
}

/// Why a run stopped.
#[derive(Debug)]
pub(super) enum Stop {
    /// The entered function returned; its results are in the value slots.
    Returned,
    /// Guest code called an import; answer with [`VmCore::answer`] and resume.
    HostCall(HostCall),
    /// Guest code trapped (the run is over).
    Trap(Trap),
}

/// A call of an import, as the host-call stub left it.
#[derive(Debug)]
pub(super) struct HostCall {
    /// Index of the import (among imported functions).
    pub(super) import: usize,
    /// Guest address of the value slots (on the guest stack).
    pub(super) values: u64,
    rsp: u64,
    rbp: u64,
}

/// One instance of a module in a VM, without its host functions.
#[derive(Debug)]
pub(super) struct VmCore {
    // The vCPU and VM descriptors close before the slots' memory is released (both also hold
    // the slots' `Arc`s).
    vcpu: Vcpu,
    vm: Vm,
    pub(super) module: Module,
    pub(super) region: Arc<GuestMemory>,
    pub(super) layout: RegionLayout,
    /// The page tables, to change the memory's mappings.
    pub(super) pt: PageTableState,
    pub(super) memory: Option<LinearMemory>,
    pub(super) memory_gpa: u64,
    pub(super) tables: Vec<TableState>,
    /// Passive element segments still alive (relocated funcref addresses).
    pub(super) elems: Vec<Option<Vec<u64>>>,
    pub(super) data_dropped: Vec<bool>,
    imports: usize,
    /// The import whose calls the write-behind stub logs, and its `max_iovecs`.
    write_behind: Option<(usize, u32)>,
    /// KVM_RUN returns (exits) since the VM was made.
    pub(super) exits: u64,
    /// Buffers for finding the memory pages an instance wrote.
    scratch: crate::pagemap::Scratch,
    /// Whether the last run ended in a way that left the vCPU's state unknown (a fault).
    needs_reset: bool,
}

impl VmCore {
    /// Creates the VM for `module` instantiated from `template` (the instance is initialised,
    /// its start function not run).
    pub(super) fn new(
        kvm: &Kvm,
        module: &Module,
        template: &InstanceTemplate,
        image: Option<&MemoryImage>,
        config: &WasmVmConfig,
        write_behind: Option<(usize, u32)>,
    ) -> Result<VmCore, WasmVmError> {
        let info = module.info();
        let offsets = &module.inner.offsets;
        let value_slots = info
            .types
            .iter()
            .map(|t| t.params.len().max(t.results.len()).max(1))
            .max()
            .unwrap_or(1) as u64;
        let mut tables = Vec::new();
        for (ty, init) in template.tables.iter() {
            let declared = ty.limits.max.map_or(u64::from(u32::MAX), u64::from);
            let max = declared.min(u64::from(config.max_table_elements));
            if init.len() as u64 > max {
                return Err(WasmVmError::TableTooLarge {
                    elements: init.len() as u64,
                    limit: max,
                });
            }
            tables.push(TableState {
                max,
                len: 0,
                high_water: 0,
            });
        }
        let shape = RegionShape {
            stack_bytes: module.inner.engine.config().max_wasm_stack as u64,
            vmctx_bytes: u64::from(offsets.size()),
            value_slots,
            types: info.types.len() as u64,
            table_capacities: tables.iter().map(|t| t.max).collect(),
            imports: u64::from(info.num_imported_funcs()),
            write_log: if write_behind.is_some() {
                WRITE_LOG_BYTES
            } else {
                0
            },
        };
        let shape = RegionLayout::new(&shape);
        let len = usize::try_from(shape.len()).map_err(|_| WasmVmError::TooLarge(shape.len()))?;
        let region = Arc::new(GuestMemory::anonymous(len)?);
        let layout = shape.at(region.host_address());

        let memory = match template.memory {
            Some(ty) => Some(LinearMemory::new(
                ty,
                u64::from(config.max_memory_pages),
                image,
            )?),
            None => None,
        };
        let mapping = match &memory {
            Some(m) => m.slot()?.map(|slot| MemoryMapping {
                slot: Arc::new(slot),
                base: m.base(),
                len: m.len(),
            }),
            None => None,
        };
        let space = AddressSpace::build(code_memory(module)?, &region, &layout, mapping.as_ref())?;
        let vm = Vm::with_slots(kvm, space.slots)?;
        let mut vcpu = Vcpu::new(&vm, 0, space.tables.root(), GDT_ADDR)?;
        if std::arch::is_x86_feature_detected!("avx") {
            // Compiled code uses VEX encodings when the host has AVX (see `enable_avx` for PVM).
            vcpu.enable_avx(&vm)?;
        }
        let mut core = VmCore {
            vcpu,
            vm,
            module: module.clone(),
            region,
            layout,
            pt: space.tables,
            memory,
            memory_gpa: space.memory_gpa,
            tables,
            elems: Vec::new(),
            data_dropped: Vec::new(),
            imports: info.num_imported_funcs() as usize,
            write_behind,
            exits: 0,
            scratch: crate::pagemap::Scratch::default(),
            needs_reset: false,
        };
        core.init_instance(template)?;
        Ok(core)
    }

    /// The VM.
    pub(super) fn vm(&self) -> &Vm {
        &self.vm
    }

    /// Maps bytes `range` of the linear memory in the guest (read-write), after the host made
    /// them accessible.
    pub(super) fn map_memory(&mut self, range: Range<u64>) -> Result<(), WasmVmError> {
        let Some(base) = self.memory.as_ref().map(|m| m.base()) else {
            return Ok(());
        };
        let low = Arc::clone(self.vm.memory());
        let mut pt = PageTableBuilder::resume(&low, &self.pt);
        let mapped = pt.map(
            base + range.start,
            self.memory_gpa + range.start,
            range.end - range.start,
            PageFlags::USER_DATA,
        );
        self.pt = pt.state();
        Ok(mapped?)
    }

    /// Unmaps bytes `range` of the linear memory in the guest, before the host takes them
    /// away (which makes KVM drop its own translations of them).
    pub(super) fn unmap_memory(&mut self, range: Range<u64>) -> Result<(), WasmVmError> {
        let Some(base) = self.memory.as_ref().map(|m| m.base()) else {
            return Ok(());
        };
        let low = Arc::clone(self.vm.memory());
        let mut pt = PageTableBuilder::resume(&low, &self.pt);
        Ok(pt.unmap(base + range.start, range.end - range.start)?)
    }

    /// Offset of `addr` in the region, if it lies in `[low, high)` with `len` bytes to spare.
    fn region_offset(&self, addr: u64, len: u64, low: u64, high: u64) -> Option<u64> {
        let end = addr.checked_add(len)?;
        (addr >= low && end <= high).then(|| addr - self.layout.base)
    }

    /// Writes `v` at guest address `addr` of the region (host-computed addresses only).
    pub(super) fn put(&self, addr: u64, v: u64) -> Result<(), WasmVmError> {
        let off = addr
            .checked_sub(self.layout.base)
            .ok_or(WasmVmError::Unsupported("an address below the region"))?;
        Ok(self.region.write_u64(off, v)?)
    }

    /// Writes the whole instance state a fresh instance starts from: the guest-read-only
    /// part, the vmctx (header, imports, funcrefs, tables, globals), the tables' elements, and
    /// the host-side segment states. Used at creation and at every reset.
    pub(super) fn init_instance(&mut self, template: &InstanceTemplate) -> Result<(), WasmVmError> {
        let l = self.layout.clone();
        let module = self.module.clone();
        let info = module.info();
        let inner = &module.inner;
        let offsets = &inner.offsets;
        // Read-only part: limits, epoch, type ids, builtin table, host-call contexts.
        self.put(
            l.limits() + u64::from(limits::STACK_LIMIT),
            l.stack_low + STACK_SLACK,
        )?;
        self.put(l.limits() + u64::from(limits::EPOCH_DEADLINE), u64::MAX)?;
        self.put(l.epoch(), 0)?;
        for (i, id) in inner.type_ids.iter().enumerate() {
            let at = l.type_ids() + 4 * i as u64 - l.base;
            self.region.write(at, &id.to_le_bytes())?;
        }
        for b in Builtin::ALL {
            self.put(l.builtins + 8 * *b as u64, builtin_stub(*b))?;
        }
        for i in 0..self.imports as u64 {
            let ctx = l.host_ctxs + HOST_CTX_SIZE * i;
            match self.write_behind {
                Some((w, _)) if w as u64 == i => {
                    self.put(ctx, WRITE_BEHIND_STUB)?;
                    self.put(ctx + 8, l.write_log)?;
                }
                _ => {
                    self.put(ctx, HOST_CALL_STUB)?;
                    self.put(ctx + 8, i)?;
                }
            }
        }
        if let Some((_, max_iovecs)) = self.write_behind {
            self.init_write_log(max_iovecs)?;
        }
        // The vmctx, from zero.
        self.region
            .zero(l.vmctx - l.base, (l.values - l.vmctx) as usize)?;
        let vmctx = |off: u32| l.vmctx + u64::from(off);
        self.put(vmctx(VmOffsets::LIMITS), l.limits())?;
        self.put(vmctx(VmOffsets::EPOCH_PTR), l.epoch())?;
        self.put(vmctx(VmOffsets::BUILTINS), l.builtins)?;
        self.put(vmctx(VmOffsets::TYPE_IDS), l.type_ids())?;
        if let Some(m) = &self.memory {
            let mem_def = vmctx(VmOffsets::DEFINED_MEMORY);
            self.put(vmctx(VmOffsets::MEMORY_BASE), m.base())?;
            self.put(vmctx(VmOffsets::MEMORY_DEF), mem_def)?;
            self.put(mem_def + u64::from(def::BASE), m.base())?;
            self.put(mem_def + u64::from(def::LENGTH), m.len())?;
        }
        // INSTANCE stays null: no runtime structure lives in guest memory.
        let code_base = module.code_base() as u64;
        for (fi, imp) in (0u32..).zip(&info.imports) {
            let ImportType::Func(t) = imp.ty else {
                return Err(WasmVmError::Unsupported("imports other than functions"));
            };
            let tramp = code_base + u64::from(info.trampolines[t as usize].host_call.offset);
            let ctx = l.host_ctxs + HOST_CTX_SIZE * u64::from(fi);
            let rec = offsets.imported_func(fi);
            self.put(vmctx(rec + func_import::WASM_CALL), tramp)?;
            self.put(vmctx(rec + func_import::VMCTX), ctx)?;
            let fr = offsets.funcref(fi);
            self.put(vmctx(fr + funcref::WASM_CALL), tramp)?;
            self.put(vmctx(fr + funcref::ARRAY_CALL), 0)?;
            self.put(
                vmctx(fr + funcref::TYPE_ID),
                u64::from(inner.type_ids[t as usize]),
            )?;
            self.put(vmctx(fr + funcref::VMCTX), ctx)?;
        }
        let nif = info.num_imported_funcs();
        for (i, range) in info.code.iter().enumerate() {
            let f = nif + i as u32;
            let t = info.funcs[f as usize] as usize;
            let fr = offsets.funcref(f);
            let tramp = info.trampolines[t].array_call.offset;
            self.put(
                vmctx(fr + funcref::WASM_CALL),
                code_base + u64::from(range.offset),
            )?;
            self.put(
                vmctx(fr + funcref::ARRAY_CALL),
                code_base + u64::from(tramp),
            )?;
            self.put(vmctx(fr + funcref::TYPE_ID), u64::from(inner.type_ids[t]))?;
            self.put(vmctx(fr + funcref::VMCTX), l.vmctx)?;
        }
        let reloc = |off: u32| {
            if off == 0 {
                0
            } else {
                l.vmctx + u64::from(off)
            }
        };
        for (i, ((state, (_, init)), tl)) in self
            .tables
            .iter_mut()
            .zip(template.tables.iter())
            .zip(&l.tables)
            .enumerate()
        {
            let dirty = state.high_water.max(state.len);
            if dirty > 0 {
                self.region.zero(tl.elems - l.base, (dirty * 8) as usize)?;
            }
            let bytes: Vec<u8> = init
                .iter()
                .flat_map(|&off| reloc(off).to_le_bytes())
                .collect();
            self.region.write(tl.elems - l.base, &bytes)?;
            state.len = init.len() as u64;
            state.high_water = state.len;
            let at = |f: u32| tl.def - l.base + u64::from(f);
            self.region.write_u64(at(def::BASE), tl.elems)?;
            self.region.write_u64(at(def::LENGTH), state.len)?;
            self.region.write_u64(at(def::TABLE_MODIFIED), 0)?;
            self.region.write_u64(
                l.vmctx - l.base + u64::from(offsets.table_ptr(i as u32)),
                tl.def,
            )?;
        }
        for (g, init) in template.globals.iter().enumerate() {
            let v = match *init {
                InitValue::Raw(v) => v,
                InitValue::FuncRef(off) => reloc(off),
            };
            self.put(vmctx(offsets.defined_global(g as u32)), v)?;
        }
        self.elems = template
            .passive_elems
            .iter()
            .map(|e| {
                e.as_ref()
                    .map(|items| items.iter().map(|&o| reloc(o)).collect())
            })
            .collect();
        self.data_dropped = template.data_dropped.to_vec();
        Ok(())
    }

    /// Brings the instance back to its initial state for another invocation: memory pages
    /// the last one wrote restored from the image (or zeroed), grown pages unmapped in the
    /// guest and then made inaccessible on the host, and everything [`init_instance`] writes.
    ///
    /// [`init_instance`]: Self::init_instance
    pub(super) fn reset(
        &mut self,
        template: &InstanceTemplate,
        image: Option<&MemoryImage>,
    ) -> Result<(), WasmVmError> {
        if let Some(m) = &self.memory {
            let (initial, len) = (m.initial_len(), m.len());
            if len > initial {
                self.unmap_memory(initial..len)?;
            }
        }
        if let Some(m) = self.memory.as_mut() {
            m.data()
                .reset_in_slot(image, KEEP_RESIDENT_BYTES, &mut self.scratch, false)
                .map_err(WasmVmError::MemorySetup)?;
        }
        self.init_instance(template)
    }

    /// Caps the memory at `pages` for this instance (not beyond its slot).
    pub(super) fn set_memory_cap(&mut self, pages: u64) {
        if let Some(m) = self.memory.as_mut() {
            let cap = pages.min(m.max_pages());
            m.data().set_cap(cap);
        }
    }

    /// Resolves the exported function `name` and writes `args` into the value slots; returns
    /// the function's index and result types.
    pub(super) fn prepare_call(
        &mut self,
        name: &str,
        args: &[Val],
    ) -> Result<(u32, Vec<ValType>), WasmVmError> {
        let info = self.module.info();
        let func = info
            .exports
            .iter()
            .find(|e| e.name == name && e.kind == ExternKind::Func)
            .map(|e| e.index)
            .ok_or_else(|| WasmVmError::NoSuchExport(name.to_owned()))?;
        let ty = info
            .funcs
            .get(func as usize)
            .and_then(|t| info.types.get(*t as usize))
            .ok_or_else(|| WasmVmError::NoSuchExport(name.to_owned()))?;
        if args.len() != ty.params.len() {
            return Err(WasmVmError::ArgumentCount {
                name: name.to_owned(),
                expected: ty.params.len(),
                got: args.len(),
            });
        }
        for (i, (arg, want)) in args.iter().zip(&ty.params).enumerate() {
            let raw = arg.to_raw().filter(|_| arg.ty() == *want).ok_or_else(|| {
                WasmVmError::ArgumentType {
                    name: name.to_owned(),
                    index: i,
                }
            })?;
            self.put(
                self.layout.values + i as u64 * u64::from(VALUE_SLOT_SIZE),
                raw,
            )?;
        }
        Ok((func, ty.results.clone()))
    }

    /// The results of a call that returned, from the value slots.
    pub(super) fn results(&self, types: &[ValType]) -> Result<Vec<Val>, WasmVmError> {
        let l = &self.layout;
        types
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let slot = l.values + i as u64 * u64::from(VALUE_SLOT_SIZE);
                let raw = self.region.read_u64(slot - l.base)?;
                Val::from_raw(*t, raw).ok_or(WasmVmError::UnrepresentableResult(*t))
            })
            .collect()
    }

    /// Sets the registers to enter function `func` (a defined one) through the entry stub,
    /// with its arguments already in the value slots.
    pub(super) fn enter(&mut self, func: u32) -> Result<(), WasmVmError> {
        let info = self.module.info();
        let nif = info.num_imported_funcs();
        let defined = func
            .checked_sub(nif)
            .and_then(|i| info.code.get(i as usize))
            .ok_or(WasmVmError::Unsupported(
                "calling an imported host function from the host",
            ))?;
        let t = info.funcs[func as usize] as usize;
        let l = &self.layout;
        let code_base = self.module.code_base() as u64;
        let mut regs = entry_regs(STUB_ADDR, l.stack_top);
        regs.rdi = l.vmctx;
        regs.rsi = l.vmctx;
        regs.rdx = code_base + u64::from(defined.offset);
        regs.rcx = l.values;
        regs.r8 = code_base + u64::from(info.trampolines[t].array_call.offset);
        if self.needs_reset {
            self.vcpu.reset(&regs)?;
            self.needs_reset = false;
        } else {
            self.vcpu.set_regs(&regs)?;
        }
        Ok(())
    }

    /// A handle that ends the vCPU's run from another thread (see [`Kicker`]).
    pub(super) fn kicker(&self) -> Kicker {
        self.vcpu.kicker()
    }

    /// Forgets a kick that came after the last run ended, so the next call runs.
    pub(super) fn clear_kick(&mut self) {
        self.vcpu.take_kick();
    }

    /// Runs the guest until it returns, calls an import or traps, serving builtins on the way.
    pub(super) fn resume(&mut self) -> Result<Stop, WasmVmError> {
        loop {
            self.exits += 1;
            let exit = match self.vcpu.run() {
                Ok(Exit::Interrupted) if self.vcpu.take_kick() => {
                    // Kicked at the deadline (code that reached no epoch check): the run is
                    // abandoned where it stood, as an interrupt trap there.
                    self.needs_reset = true;
                    let regs = self.vcpu.regs()?;
                    return Ok(Stop::Trap(Trap {
                        code: TrapCode::Interrupt,
                        host_message: None,
                        backtrace: self.backtrace(regs.rip, regs.rbp),
                    }));
                }
                Ok(Exit::Interrupted) => continue,
                Ok(exit) => exit,
                Err(e) => {
                    self.needs_reset = true;
                    return Err(e.into());
                }
            };
            match exit {
                Exit::Mmio {
                    addr: EXIT_RETURN,
                    is_write: true,
                    ..
                } => return Ok(Stop::Returned),
                Exit::Mmio {
                    addr: EXIT_HOST_CALL,
                    is_write: true,
                    ..
                } => {
                    let regs = self.vcpu.regs()?;
                    let at = regs.rdi.wrapping_sub(self.layout.host_ctxs);
                    let import = (at / HOST_CTX_SIZE) as usize;
                    if regs.rdi < self.layout.host_ctxs
                        || !at.is_multiple_of(HOST_CTX_SIZE)
                        || import >= self.imports
                    {
                        self.needs_reset = true;
                        return Err(WasmVmError::BadExit("a host call with no import context"));
                    }
                    return Ok(Stop::HostCall(HostCall {
                        import,
                        values: regs.rdx,
                        rsp: regs.rsp,
                        rbp: regs.rbp,
                    }));
                }
                Exit::Mmio {
                    addr: EXIT_BUILTIN,
                    is_write: true,
                    data,
                    ..
                } => {
                    let mut regs = self.vcpu.regs()?;
                    let Some(b) = Builtin::ALL.get(data as usize).copied() else {
                        self.needs_reset = true;
                        return Err(WasmVmError::BadExit("a builtin exit with no builtin"));
                    };
                    match self.builtin(b, &regs)? {
                        Some(rax) => {
                            regs.rax = rax;
                            self.vcpu.set_regs(&regs)?;
                        }
                        None => {
                            // `Raise`: only reached after a host exit in process; here host
                            // exits end the run at the host call, so this is a trap.
                            let trap = Trap {
                                code: TrapCode::HostTrap,
                                host_message: None,
                                backtrace: self.backtrace_from_call(regs.rsp, regs.rbp),
                            };
                            return Ok(Stop::Trap(trap));
                        }
                    }
                }
                Exit::Shutdown => {
                    self.needs_reset = true;
                    let regs = self.vcpu.regs()?;
                    return Ok(Stop::Trap(self.trap_at(regs.rip, regs.rbp)?));
                }
                other => {
                    self.needs_reset = true;
                    return Err(WasmVmError::UnexpectedExit(other));
                }
            }
        }
    }

    /// Answers a host call: `eax` for the trampoline (0: go on), to resume with.
    pub(super) fn answer(&mut self, rax: u64) -> Result<(), WasmVmError> {
        let mut regs = self.vcpu.regs()?;
        regs.rax = rax;
        Ok(self.vcpu.set_regs(&regs)?)
    }

    /// Reads `n` value slots at guest address `values`, which must lie on the guest stack.
    pub(super) fn read_values(&self, values: u64, n: usize) -> Result<Vec<[u64; 2]>, WasmVmError> {
        let l = &self.layout;
        let len = n as u64 * u64::from(VALUE_SLOT_SIZE);
        let off = self
            .region_offset(values, len, l.stack_low, l.stack_top)
            .ok_or(WasmVmError::BadExit("value slots outside the guest stack"))?;
        let mut bytes = vec![0u8; len as usize];
        self.region.read(off, &mut bytes)?;
        Ok(bytes
            .chunks_exact(16)
            .map(|c| {
                let word = |i: usize| {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(&c[i..i + 8]);
                    u64::from_le_bytes(b)
                };
                [word(0), word(8)]
            })
            .collect())
    }

    /// Writes value slots back (see [`read_values`](Self::read_values)).
    pub(super) fn write_values(&self, values: u64, slots: &[[u64; 2]]) -> Result<(), WasmVmError> {
        let l = &self.layout;
        let len = slots.len() as u64 * u64::from(VALUE_SLOT_SIZE);
        let off = self
            .region_offset(values, len, l.stack_low, l.stack_top)
            .ok_or(WasmVmError::BadExit("value slots outside the guest stack"))?;
        let bytes: Vec<u8> = slots
            .iter()
            .flat_map(|s| s.iter().flat_map(|w| w.to_le_bytes()))
            .collect();
        Ok(self.region.write(off, &bytes)?)
    }

    /// The guest frames of a host call (or builtin) that ends the run.
    pub(super) fn host_call_backtrace(&self, call: &HostCall) -> Vec<FrameInfo> {
        self.backtrace_from_call(call.rsp, call.rbp)
    }

    /// Frames from a stub called by guest code: the return address is at `rsp`.
    fn backtrace_from_call(&self, rsp: u64, rbp: u64) -> Vec<FrameInfo> {
        let l = &self.layout;
        let ret = self
            .region_offset(rsp, 8, l.stack_low, l.stack_top)
            .and_then(|off| self.region.read_u64(off).ok());
        match ret {
            Some(ret) => self.backtrace(ret.wrapping_sub(1), rbp),
            None => Vec::new(),
        }
    }

    /// The trap for a fault at `rip` with frame pointer `rbp`, from the module's trap table.
    fn trap_at(&self, rip: u64, rbp: u64) -> Result<Trap, WasmVmError> {
        let offset = self.code_offset(rip);
        let code = offset
            .and_then(|off| self.module.info().trap_at(off))
            .ok_or(WasmVmError::Fault { offset })?;
        Ok(Trap {
            code,
            host_message: None,
            backtrace: self.backtrace(rip, rbp),
        })
    }

    /// `addr` as an offset into the module's code, if it lies there.
    fn code_offset(&self, addr: u64) -> Option<u32> {
        let off = addr.checked_sub(self.module.code_base() as u64)?;
        (off < self.module.inner.code_len as u64).then_some(off as u32)
    }

    /// Guest frames from `pc` outwards, following saved frame pointers on the guest stack. The
    /// stack is guest-written: every read is bounds-checked and the walk only goes up. Frames
    /// in trampolines are walked through but not reported (as in process).
    fn backtrace(&self, mut pc: u64, mut fp: u64) -> Vec<FrameInfo> {
        let l = &self.layout;
        let info = self.module.info();
        let mut frames = Vec::new();
        for _ in 0..2 * MAX_FRAMES {
            if frames.len() >= MAX_FRAMES {
                break;
            }
            let Some(off) = self.code_offset(pc) else {
                break;
            };
            if let Some(func_index) = info.func_at(off) {
                frames.push(FrameInfo {
                    func_index,
                    func_name: info.func_name(func_index).map(str::to_owned),
                    module_name: info.name.clone(),
                    wasm_offset: info.wasm_offset_at(off),
                    code_offset: off,
                    pc: pc as usize,
                });
            }
            let Some(at) = self.region_offset(fp, 16, l.stack_low, l.stack_top) else {
                break;
            };
            if !fp.is_multiple_of(8) {
                break;
            }
            let (Ok(next_fp), Ok(ret)) = (self.region.read_u64(at), self.region.read_u64(at + 8))
            else {
                break;
            };
            if next_fp <= fp {
                break;
            }
            // The return address points after the call; step back into the call instruction.
            pc = ret.wrapping_sub(1);
            fp = next_fp;
        }
        frames
    }
}

/// The module's code mapping as guest memory: borrowed (the module keeps it mapped), read-only.
/// `None` for a module without code (no functions).
fn code_memory(module: &Module) -> Result<Option<GuestMemory>, WasmVmError> {
    if module.code_bytes() == 0 {
        return Ok(None);
    }
    let base = module.code_base() as *mut u8;
    let ptr = NonNull::new(base).ok_or(WasmVmError::Unsupported("an empty code mapping"))?;
    // SAFETY: the module maps its code page aligned, `code_bytes()` long (its length rounded up
    // to pages, all inside the mapping), readable, never remapped while the module lives; the
    // module clone kept as owner keeps it alive. It holds only the module's code.
    let memory = unsafe {
        GuestMemory::borrowed(ptr, module.code_bytes(), false, Box::new(module.clone()))
    }?;
    Ok(Some(memory))
}
