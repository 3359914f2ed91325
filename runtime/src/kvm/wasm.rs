//! Running compiled WebAssembly in a KVM micro-VM: the same artifact, the same code bytes, as the
//! in-process backend.
//!
//! Compiled code is position independent (calls inside it are pc-relative), but its vmctx holds
//! absolute addresses (funcrefs, the limits, epoch and type-id pointers) and the in-process
//! runtime builds those from host addresses. Instead of relocating anything, a [`WasmVm`] makes
//! guest-virtual addresses equal to the host-virtual addresses of everything the code touches:
//! the module's code mapping itself (shared read-only by every VM of the module, never copied)
//! and one dedicated instance region (a fresh mmap holding the guest stack, the vmctx, the
//! argument/result slots and a page the guest may only read). Each is a KVM memory slot whose
//! `userspace_addr` is that host mapping; their guest-physical addresses are allocated compactly
//! from [`GPA_BASE`] up, and the page tables map gva = host VA to them. Nothing else of the host
//! is mapped: no heap page is ever shared with the guest, and everything the guest can write is
//! read back by the host only through bounds-checked copies, as untrusted data.
//!
//! ```text
//!  guest-virtual                       guest-physical     flags            backing
//!  0x0000_0000  null guard             -                  not mapped       slot 0 (anonymous)
//!  0x0000_1000  GDT                    = gva              supervisor, RO
//!  0x0000_2000  entry stub             = gva              user, RO, exec
//!  0x0000_3000  page tables            = gva              not mapped
//!  0x3fe0_0000  MMIO exit page         = gva, no slot     user, RW         (every access exits)
//!
//!  code base    module code            GPA_BASE + ...     user, RO, exec   slot 1: the Module's
//!  (host VA)    (array-call trampolines                                    own mapping, read-
//!               and functions)                                             only slot
//!
//!  region       guard page             next GPA ...       not mapped       slot 2: instance
//!  (host VA)    guest stack (rsp = top)                   user, RW, NX     region, a dedicated
//!               vmctx                                     user, RW, NX     anonymous mmap
//!               values [u64; 2] x n                       user, RW, NX
//!               limits, epoch, type ids                   user, RO, NX     (host writes them)
//! ```
//!
//! A call enters the stub with the System V arguments of the export's array-call trampoline in
//! registers (callee and caller vmctx, `wasm_call`, the values pointer) plus the trampoline in
//! `r8` and the MMIO page in `rbx`; the stub calls the trampoline and then writes to the MMIO
//! page, which ends the run. Results are read from the values slots.
//!
//! Traps: the guest has no IDT, so a `ud2` trap site, a division by zero or any other exception
//! is a triple fault ([`Exit::Shutdown`]) with `rip` still at the faulting instruction. That
//! `rip`, as an offset into the code, is looked up in the module's trap table, the same table the
//! in-process signal handler uses, so traps get the same [`TrapCode`](fnvm_abi::TrapCode)s. The stack limit in the
//! limits page is the stack's low end plus a margin, so deep recursion fails the prologue check
//! (a `StackOverflow` trap site) before it reaches the unmapped guard page. Backtraces walk the
//! frame-pointer chain through the host's view of the stack, bounds-checked.
//!
//! Deadlines: code keeps its epoch checks. The vmctx's epoch pointer points at a counter in the
//! read-only page, which only the host writes ([`WasmVm::set_epoch`], or an [`EpochHandle`] from
//! another thread while a call runs: guest code sees the new value at its next check and traps
//! with `Interrupt`); the deadline is in the limits next to it ([`WasmVm::set_epoch_deadline`],
//! never by default). The engine's own counter is not shared with the guest (it lives in host
//! heap memory).
//!
//! Supported in this step: modules without imports, linear memories, tables, element or data
//! segments, or a start function (defined globals are fine). Builtins are not reachable (the
//! vmctx's builtin table pointer is null: a call through it faults). The instance persists across
//! calls, also after a trap (its globals keep their values), and the same VM and vCPU run every
//! call; a call after a fault first restores the vCPU's segment and control registers.

use super::memory::{GuestMemory, MemoryError, PageFlags, PageTableBuilder, PAGE_SIZE};
use super::vcpu::{entry_regs, Exit, Vcpu, VcpuError};
use super::vm::{Kvm, MemorySlot, Vm, VmError};
use super::{GDT, GDT_ADDR, MMIO_ADDR};
use crate::{FrameInfo, Module, Trap, Val};
use fnvm_abi::module::{ConstExpr, ExternKind, FuncType};
use fnvm_abi::vmoffsets::{funcref, limits, VALUE_SLOT_SIZE};
use fnvm_abi::VmOffsets;
use std::ptr::NonNull;
use std::sync::Arc;

/// Where the guest-physical addresses of the code and instance slots start (just above the
/// MMIO exit page, so no slot covers it).
pub const GPA_BASE: u64 = 0x4000_0000;
/// The entry stub's page in slot 0.
const STUB_ADDR: u64 = 0x2000;
/// The page tables start here in slot 0 (and fill the rest of it).
const TABLES_START: u64 = 0x3000;
/// Bytes between the stack limit and the guard page: what a frame may push before its
/// prologue's check (return address, saved frame pointer), with room to spare.
const STACK_SLACK: u64 = 4096;
/// Most frames a trap's backtrace records (as in process).
const MAX_FRAMES: usize = 64;

/// The entry stub: call the array-call trampoline, then exit through the MMIO page.
#[rustfmt::skip]
const STUB: [u8; 11] = [
    0x41, 0xff, 0xd0,                   // call r8                  ; trampoline(rdi, rsi, rdx, rcx)
    0xc7, 0x03, 0x00, 0x00, 0x00, 0x00, // mov dword ptr [rbx], 0   ; exit: MMIO write
    0xeb, 0xfe,                         // jmp $                    ; never resumed
];

/// Failures of the host side: creating the VM, bad arguments, the vCPU misbehaving. What the
/// guest's code does (return or trap) is the `Ok` side of [`WasmVm::call`].
#[derive(Debug, thiserror::Error)]
pub enum WasmVmError {
    #[error(transparent)]
    Vm(#[from] VmError),
    #[error(transparent)]
    Vcpu(#[from] VcpuError),
    #[error(transparent)]
    Memory(#[from] MemoryError),
    #[error("the KVM backend does not run modules with {0} yet")]
    Unsupported(&'static str),
    #[error("the module's instance region ({0:#x} bytes) is too large")]
    TooLarge(u64),
    #[error("no exported function named {0:?}")]
    NoSuchExport(String),
    #[error("{name} takes {expected} arguments, {got} given")]
    ArgumentCount {
        name: String,
        expected: usize,
        got: usize,
    },
    #[error("argument {index} of {name} has the wrong type")]
    ArgumentType { name: String, index: usize },
    #[error("a result of type {0:?} cannot leave the VM (a non-null reference)")]
    UnrepresentableResult(fnvm_abi::ValType),
    #[error("the guest faulted at {rip:#x}, which is no trap site of the module")]
    Fault { rip: u64 },
    #[error("unexpected exit from the guest: {0:?}")]
    UnexpectedExit(Exit),
}

/// Where the parts of the instance region are, as host (= guest-virtual) addresses.
#[derive(Clone, Debug)]
struct RegionLayout {
    base: u64,
    /// The lowest mapped stack address and the top (initial rsp).
    stack_low: u64,
    stack_top: u64,
    vmctx: u64,
    values: u64,
    /// The guest-read-only page(s): limits, then the epoch counter, then type ids.
    ro: u64,
    end: u64,
}

impl RegionLayout {
    fn new(stack_bytes: u64, vmctx_bytes: u64, value_slots: u64, types: u64) -> RegionLayout {
        let pages = |n: u64| n.div_ceil(PAGE_SIZE) * PAGE_SIZE;
        let stack_low = PAGE_SIZE; // after the guard page
        let vmctx = stack_low + pages(stack_bytes + STACK_SLACK);
        let values = vmctx + pages(vmctx_bytes.max(1));
        let ro = values + pages(value_slots.max(1) * u64::from(VALUE_SLOT_SIZE));
        let end = ro + pages(16 + 8 + 4 * types);
        RegionLayout {
            base: 0,
            stack_low,
            stack_top: vmctx,
            vmctx,
            values,
            ro,
            end,
        }
    }

    fn len(&self) -> u64 {
        self.end - self.base
    }

    /// The same layout with offsets turned into addresses from `base`.
    fn at(&self, base: u64) -> RegionLayout {
        RegionLayout {
            base,
            stack_low: base + self.stack_low,
            stack_top: base + self.stack_top,
            vmctx: base + self.vmctx,
            values: base + self.values,
            ro: base + self.ro,
            end: base + self.end,
        }
    }

    fn limits(&self) -> u64 {
        self.ro
    }

    fn epoch(&self) -> u64 {
        self.ro + 16
    }

    fn type_ids(&self) -> u64 {
        self.ro + 24
    }
}

/// One instance of a module in its own micro-VM, with one vCPU.
#[derive(Debug)]
pub struct WasmVm {
    // The vCPU and VM descriptors close before the slots' memory is released (both also hold
    // the slots' `Arc`s).
    vcpu: Vcpu,
    vm: Vm,
    module: Module,
    region: Arc<GuestMemory>,
    layout: RegionLayout,
    /// The page-table root (in slot 0).
    cr3: u64,
    /// Whether the last run ended in a way that left the vCPU's state unknown (a fault).
    needs_reset: bool,
}

impl WasmVm {
    /// Creates a VM running an instance of `module` (see the module comment for what it may
    /// contain), with a guest stack of the engine's `max_wasm_stack` bytes.
    pub fn new(kvm: &Kvm, module: &Module) -> Result<WasmVm, WasmVmError> {
        let info = module.info();
        check_supported(info)?;
        let offsets = &module.inner.offsets;
        let value_slots = info
            .types
            .iter()
            .map(|t| t.params.len().max(t.results.len()).max(1))
            .max()
            .unwrap_or(1) as u64;
        let stack = module.inner.engine.config().max_wasm_stack as u64;
        let shape = RegionLayout::new(
            stack,
            u64::from(offsets.size()),
            value_slots,
            info.types.len() as u64,
        );
        let len = usize::try_from(shape.len()).map_err(|_| WasmVmError::TooLarge(shape.len()))?;
        let region = Arc::new(GuestMemory::anonymous(len)?);
        let layout = shape.at(region.host_address());

        let code = code_memory(module)?;
        let code_base = code.host_address();
        let code_len = code.len() as u64;
        let code_gpa = GPA_BASE;
        let region_gpa = GPA_BASE + code_len;

        // Slot 0: GDT, stub and enough page tables for every mapping below.
        let tables =
            1 + table_pages(PAGE_SIZE) * 3 + table_pages(code_len) + table_pages(shape.len());
        let low = Arc::new(GuestMemory::anonymous(
            (TABLES_START + tables * PAGE_SIZE) as usize,
        )?);
        for (i, entry) in GDT.iter().enumerate() {
            low.write_u64(GDT_ADDR + 8 * i as u64, *entry)?;
        }
        low.write(STUB_ADDR, &STUB)?;
        let mut pt = PageTableBuilder::new(&low, TABLES_START..low.len() as u64)?;
        pt.map(GDT_ADDR, GDT_ADDR, PAGE_SIZE, PageFlags::KERNEL_RODATA)?;
        pt.map(STUB_ADDR, STUB_ADDR, PAGE_SIZE, PageFlags::USER_CODE)?;
        pt.map(MMIO_ADDR, MMIO_ADDR, PAGE_SIZE, PageFlags::USER_DATA)?;
        pt.map(code_base, code_gpa, code_len, PageFlags::USER_CODE)?;
        let gpa = |addr: u64| region_gpa + (addr - layout.base);
        let rw = layout.ro - layout.stack_low;
        pt.map(
            layout.stack_low,
            gpa(layout.stack_low),
            rw,
            PageFlags::USER_DATA,
        )?;
        let guest_ro = PageFlags {
            writable: false,
            user: true,
            executable: false,
        };
        pt.map(layout.ro, gpa(layout.ro), layout.end - layout.ro, guest_ro)?;
        let cr3 = pt.root();

        let slots = vec![
            MemorySlot {
                guest_phys_addr: 0,
                memory: low,
            },
            MemorySlot {
                guest_phys_addr: code_gpa,
                memory: Arc::new(code),
            },
            MemorySlot {
                guest_phys_addr: region_gpa,
                memory: Arc::clone(&region),
            },
        ];
        let vm = Vm::with_slots(kvm, slots)?;
        let mut vcpu = Vcpu::new(&vm, 0, cr3, GDT_ADDR)?;
        if std::arch::is_x86_feature_detected!("avx") {
            // Compiled code uses VEX encodings when the host has AVX (see `enable_avx` for PVM).
            vcpu.enable_avx(&vm)?;
        }
        let mut this = WasmVm {
            vcpu,
            vm,
            module: module.clone(),
            region,
            layout,
            cr3,
            needs_reset: false,
        };
        this.init_instance()?;
        Ok(this)
    }

    /// Writes the read-only page and the vmctx: the header, defined funcrefs, globals.
    fn init_instance(&mut self) -> Result<(), WasmVmError> {
        let l = self.layout.clone();
        let r = &self.region;
        let at = |addr: u64| addr - l.base;
        let info = self.module.info();
        let inner = &self.module.inner;
        let offsets = &inner.offsets;
        r.write_u64(
            at(l.limits() + u64::from(limits::STACK_LIMIT)),
            l.stack_low + STACK_SLACK,
        )?;
        r.write_u64(at(l.limits() + u64::from(limits::EPOCH_DEADLINE)), u64::MAX)?;
        r.write_u64(at(l.epoch()), 0)?;
        for (i, id) in inner.type_ids.iter().enumerate() {
            r.write(at(l.type_ids() + 4 * i as u64), &id.to_le_bytes())?;
        }
        let vmctx = |off: u32| at(l.vmctx + u64::from(off));
        r.write_u64(vmctx(VmOffsets::LIMITS), l.limits())?;
        r.write_u64(vmctx(VmOffsets::EPOCH_PTR), l.epoch())?;
        r.write_u64(vmctx(VmOffsets::TYPE_IDS), l.type_ids())?;
        // BUILTINS, MEMORY_*, INSTANCE stay null (none of them exists here).
        let code_base = self.module.code_base() as u64;
        for (i, range) in info.code.iter().enumerate() {
            let f = i as u32; // no imported functions
            let t = info.funcs[i] as usize;
            let rec = offsets.funcref(f);
            let tramp = info.trampolines[t].array_call.offset;
            r.write_u64(
                vmctx(rec + funcref::WASM_CALL),
                code_base + u64::from(range.offset),
            )?;
            r.write_u64(
                vmctx(rec + funcref::ARRAY_CALL),
                code_base + u64::from(tramp),
            )?;
            r.write_u64(vmctx(rec + funcref::TYPE_ID), u64::from(inner.type_ids[t]))?;
            r.write_u64(vmctx(rec + funcref::VMCTX), l.vmctx)?;
        }
        for (g, init) in info.global_inits.iter().enumerate() {
            let v = match *init {
                ConstExpr::I32(v) => v as u32 as u64,
                ConstExpr::I64(v) => v as u64,
                ConstExpr::F32(v) => u64::from(v),
                ConstExpr::F64(v) => v,
                ConstExpr::RefNull => 0,
                ConstExpr::RefFunc(f) => l.vmctx + u64::from(offsets.funcref(f)),
                ConstExpr::GlobalGet(_) => {
                    return Err(WasmVmError::Unsupported("imported globals"))
                }
            };
            r.write_u64(vmctx(offsets.defined_global(g as u32)), v)?;
        }
        Ok(())
    }

    /// Calls the exported function `name` with `args`. The outer `Result` is the host side (bad
    /// arguments, KVM failures, a fault that is no trap site); the inner one is what the guest
    /// did: its results, or the trap it hit. The VM stays usable after either.
    pub fn call(
        &mut self,
        name: &str,
        args: &[Val],
    ) -> Result<Result<Vec<Val>, Trap>, WasmVmError> {
        let info = self.module.info();
        let func = info
            .exports
            .iter()
            .find(|e| e.name == name && e.kind == ExternKind::Func)
            .map(|e| e.index)
            .ok_or_else(|| WasmVmError::NoSuchExport(name.to_owned()))?;
        // Validation guarantees the index; no imports, so it is a defined function.
        let t = info.funcs[func as usize] as usize;
        let ty: &FuncType = &info.types[t];
        if args.len() != ty.params.len() {
            return Err(WasmVmError::ArgumentCount {
                name: name.to_owned(),
                expected: ty.params.len(),
                got: args.len(),
            });
        }
        let l = &self.layout;
        for (i, (arg, want)) in args.iter().zip(&ty.params).enumerate() {
            let raw = arg.to_raw().filter(|_| arg.ty() == *want).ok_or_else(|| {
                WasmVmError::ArgumentType {
                    name: name.to_owned(),
                    index: i,
                }
            })?;
            let slot = l.values + i as u64 * u64::from(VALUE_SLOT_SIZE);
            self.region.write_u64(slot - l.base, raw)?;
        }
        let code_base = self.module.code_base() as u64;
        let mut regs = entry_regs(STUB_ADDR, l.stack_top);
        regs.rdi = l.vmctx;
        regs.rsi = l.vmctx;
        regs.rdx = code_base + u64::from(info.code[func as usize].offset);
        regs.rcx = l.values;
        regs.r8 = code_base + u64::from(info.trampolines[t].array_call.offset);
        regs.rbx = MMIO_ADDR;
        if self.needs_reset {
            self.vcpu.reset(&regs)?;
            self.needs_reset = false;
        } else {
            self.vcpu.set_regs(&regs)?;
        }
        let exit = loop {
            match self.vcpu.run() {
                Ok(Exit::Interrupted) => continue,
                Ok(exit) => break exit,
                Err(e) => {
                    self.needs_reset = true;
                    return Err(e.into());
                }
            }
        };
        match exit {
            Exit::Mmio {
                addr: MMIO_ADDR,
                is_write: true,
                ..
            } => {}
            Exit::Shutdown => {
                self.needs_reset = true;
                let regs = self.vcpu.regs()?;
                return self.trap_at(regs.rip, regs.rbp).map(Err);
            }
            other => {
                self.needs_reset = true;
                return Err(WasmVmError::UnexpectedExit(other));
            }
        }
        let mut results = Vec::with_capacity(ty.results.len());
        for (i, t) in ty.results.iter().enumerate() {
            let slot = l.values + i as u64 * u64::from(VALUE_SLOT_SIZE);
            let raw = self.region.read_u64(slot - l.base)?;
            let v = Val::from_raw(*t, raw).ok_or(WasmVmError::UnrepresentableResult(*t))?;
            results.push(v);
        }
        Ok(Ok(results))
    }

    /// The trap for a fault at `rip` with frame pointer `rbp`, from the module's trap table.
    fn trap_at(&self, rip: u64, rbp: u64) -> Result<Trap, WasmVmError> {
        let code = self
            .code_offset(rip)
            .and_then(|off| self.module.info().trap_at(off))
            .ok_or(WasmVmError::Fault { rip })?;
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
    /// stack is guest-written: every read is bounds-checked and the walk only goes up.
    fn backtrace(&self, mut pc: u64, mut fp: u64) -> Vec<FrameInfo> {
        let l = &self.layout;
        let info = self.module.info();
        let mut frames = Vec::new();
        while frames.len() < MAX_FRAMES {
            let Some(off) = self.code_offset(pc) else {
                break;
            };
            let Some(func_index) = info.func_at(off) else {
                break;
            };
            frames.push(FrameInfo {
                func_index,
                func_name: info.func_name(func_index).map(str::to_owned),
                module_name: info.name.clone(),
                wasm_offset: info.wasm_offset_at(off),
                code_offset: off,
                pc: pc as usize,
            });
            if fp < l.stack_low || fp > l.stack_top.saturating_sub(16) || !fp.is_multiple_of(8) {
                break;
            }
            let (Ok(next_fp), Ok(ret)) = (
                self.region.read_u64(fp - l.base),
                self.region.read_u64(fp + 8 - l.base),
            ) else {
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

    /// Sets the guest's epoch counter (what its epoch checks compare with the deadline).
    pub fn set_epoch(&self, epoch: u64) -> Result<(), WasmVmError> {
        self.epoch_handle().set(epoch)
    }

    /// A handle that sets the guest's epoch counter from any thread, also during a call.
    pub fn epoch_handle(&self) -> EpochHandle {
        EpochHandle {
            region: Arc::clone(&self.region),
            offset: self.layout.epoch() - self.layout.base,
        }
    }

    /// Sets the epoch at which running code traps with [`TrapCode::Interrupt`](fnvm_abi::TrapCode::Interrupt).
    pub fn set_epoch_deadline(&self, deadline: u64) -> Result<(), WasmVmError> {
        let l = &self.layout;
        let at = l.limits() + u64::from(limits::EPOCH_DEADLINE) - l.base;
        Ok(self.region.write_u64(at, deadline)?)
    }

    /// The lowest stack address wasm frames may use (the limit in the guest's `VmLimits`).
    pub fn stack_limit(&self) -> u64 {
        self.layout.stack_low + STACK_SLACK
    }

    /// The guest-physical address of the page tables' root (in slot 0, `vm().memory()`), to
    /// inspect the mappings with [`translate`](super::translate).
    pub fn page_table_root(&self) -> u64 {
        self.cr3
    }

    /// The host (= guest-virtual) address range of the instance region: guard page, stack,
    /// vmctx, value slots and the guest-read-only page, in that order.
    pub fn instance_region(&self) -> std::ops::Range<u64> {
        self.layout.base..self.layout.end
    }

    /// The VM, for inspection.
    pub fn vm(&self) -> &Vm {
        &self.vm
    }
}

/// Sets a [`WasmVm`]'s epoch counter from another thread (a deadline timer). It keeps the
/// counter's memory alive, not the VM.
#[derive(Clone, Debug)]
pub struct EpochHandle {
    region: Arc<GuestMemory>,
    offset: u64,
}

impl EpochHandle {
    /// Sets the counter (one atomic store; running guest code reads it at its epoch checks).
    pub fn set(&self, epoch: u64) -> Result<(), WasmVmError> {
        Ok(self.region.store_u64_atomic(self.offset, epoch)?)
    }
}

/// Rejects what this step does not run yet.
fn check_supported(info: &fnvm_abi::ModuleInfo) -> Result<(), WasmVmError> {
    let unsupported = [
        (!info.imports.is_empty(), "imports"),
        (!info.memories.is_empty(), "a linear memory"),
        (!info.tables.is_empty(), "tables"),
        (!info.elems.is_empty(), "element segments"),
        (!info.datas.is_empty(), "data segments"),
        (info.start.is_some(), "a start function"),
    ];
    match unsupported.iter().find(|(bad, _)| *bad) {
        Some((_, what)) => Err(WasmVmError::Unsupported(what)),
        None => Ok(()),
    }
}

/// The module's code mapping as guest memory: borrowed (the module keeps it mapped), read-only.
fn code_memory(module: &Module) -> Result<GuestMemory, WasmVmError> {
    let base = module.code_base() as *mut u8;
    let ptr = NonNull::new(base).ok_or(WasmVmError::Unsupported("an empty code mapping"))?;
    // SAFETY: the module maps its code page aligned, `code_bytes()` long (its length rounded up
    // to pages, all inside the mapping), readable, never remapped while the module lives; the
    // module clone kept as owner keeps it alive. It holds only the module's code.
    let memory = unsafe {
        GuestMemory::borrowed(ptr, module.code_bytes(), false, Box::new(module.clone()))
    }?;
    Ok(memory)
}

/// An upper bound on the page-table pages needed to map `len` bytes at any address: page
/// tables for each 2 MiB, directories for each 1 GiB and pointer tables for each 512 GiB the
/// range touches (the root is counted by the caller).
fn table_pages(len: u64) -> u64 {
    let spans = |unit: u64| len.div_ceil(unit) + 1;
    spans(2 << 20) + spans(1 << 30) + spans(1 << 39)
}
