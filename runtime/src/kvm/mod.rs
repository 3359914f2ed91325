//! The KVM micro-VM substrate: a hardware-isolated VM with no guest operating system.
//!
//! This module owns one VM per guest with its memory slots ([`Vm`]), a vCPU in 64-bit user mode
//! ([`Vcpu`]) whose runs end in typed [`Exit`]s, guest-physical memory and the page tables that
//! map it ([`GuestMemory`], [`PageTableBuilder`]), and the standard guest address-space layout
//! below ([`Layout`]). Guest code runs at CPL3 because on this host's KVM (PVM, nested software
//! virtualisation) only user mode runs natively; CPL0 is emulated per instruction. With no guest
//! kernel and no IDT, every exception is a triple fault ([`Exit::Shutdown`]), and the guest leaves
//! (ends, or calls the host) by writing to the MMIO page: guest-physical memory that no slot
//! covers, so KVM exits with [`Exit::Mmio`]. [`WasmVm`] runs compiled WebAssembly on it, from
//! the same artifact and with the same host functions as the in-process backend, with its own
//! layout (see the `wasm` module), and [`KvmBackend`] pools such VMs behind the
//! [`ExecutionBackend`](crate::ExecutionBackend) interface (see the `backend` module).
//!
//! Guest-virtual addresses equal guest-physical ones where mapped (identity mapping, 4 KiB pages);
//! everything not drawn as mapped is non-present, so touching it faults:
//!
//! ```text
//!  guest-virtual = guest-physical                     page flags        memory slot 0
//!  0x0000_0000 +------------------------------+
//!              | null guard                   |  not mapped             |
//!  0x0000_1000 +------------------------------+                         |
//!              | GDT (null, code, data)       |  supervisor, RO, NX     |
//!  0x0000_2000 +------------------------------+                         |
//!              | page tables (PML4, PDPT,     |  not mapped: only the   |
//!              |   PDs, PTs), 14 pages        |  MMU reads them         |
//!  0x0001_0000 +------------------------------+                         |
//!              | code, 64 KiB                 |  user, RO, executable   |
//!  0x0002_0000 +------------------------------+                         |
//!              | guard, 64 KiB                |  not mapped             |
//!  0x0003_0000 +------------------------------+                         |
//!              | data                         |  user, RW, NX           |
//!  size - 128K +------------------------------+                         |
//!              | stack guard, 64 KiB          |  not mapped             |
//!  size -  64K +------------------------------+                         |
//!              | stack, 64 KiB (rsp = size)   |  user, RW, NX           |
//!  size        +------------------------------+  (default size 2 MiB)   v
//!              | not mapped                   |
//!  0x3fe0_0000 +------------------------------+
//!              | MMIO exit page               |  user, RW, NX; no slot: every access exits
//!  0x3fe0_1000 +------------------------------+
//!              | not mapped                   |
//! ```

mod backend;
#[cfg(test)]
mod backend_tests;
mod kick;
mod memory;
#[cfg(test)]
mod spec_tests;
#[cfg(test)]
mod tests;
mod vcpu;
mod vm;
mod wasm;
#[cfg(test)]
mod wasm_import_tests;
#[cfg(test)]
mod wasm_memory_tests;
#[cfg(test)]
mod wasm_table_tests;
#[cfg(test)]
mod wasm_tests;
#[cfg(test)]
mod write_behind_tests;

pub use backend::{KvmBackend, KvmBackendConfig, KvmInstance, KvmPrepared};
pub use kick::{kick_signal, Kicker};
/// The general registers, as KVM lays them out.
pub use kvm_bindings::kvm_regs;
pub use memory::{
    translate, GuestMemory, MemoryError, PageFlags, PageTableBuilder, PageTableState, Translation,
    PAGE_SIZE,
};
pub use vcpu::{entry_regs, Exit, Vcpu, VcpuError};
pub use vm::{Kvm, MemorySlot, Vm, VmError, KVM_PATH};
pub use wasm::{EpochHandle, WasmVm, WasmVmConfig, WasmVmError, GPA_BASE};

use std::ops::Range;

/// The GDT: the probe's three descriptors (PVM runs CPL3 on its own selectors, but the register
/// state still names a GDT).
pub const GDT_ADDR: u64 = 0x1000;
/// Where the page tables are built.
pub const PAGE_TABLES: Range<u64> = 0x2000..0x1_0000;
/// Guest code, read-only and executable.
pub const CODE: Range<u64> = 0x1_0000..0x2_0000;
/// Where data starts (it ends at the stack guard).
pub const DATA_START: u64 = 0x3_0000;
/// The stack size, and the size of the unmapped guard below it.
pub const STACK_SIZE: u64 = 0x1_0000;
/// The MMIO exit page: mapped for user writes, backed by no memory slot.
pub const MMIO_ADDR: u64 = 0x3fe0_0000;
/// The default size of slot 0.
pub const DEFAULT_MEMORY_SIZE: usize = 2 << 20;

/// The GDT's contents: null, 64-bit code (DPL0), data (DPL0), as the probe writes them.
const GDT: [u64; 3] = [0, 0x00af_9b00_0000_ffff, 0x00cf_9300_0000_ffff];

/// The standard layout (see the module diagram) for a slot 0 of a given size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    /// The page-table root, for CR3.
    pub cr3: u64,
    /// Where code was loaded (its first byte is the entry point of a guest built for it).
    pub code: Range<u64>,
    /// The data range.
    pub data: Range<u64>,
    /// The stack range; a run starts with `rsp = stack.end`.
    pub stack: Range<u64>,
    /// The MMIO exit page's guest address (virtual and physical).
    pub mmio: u64,
}

impl Layout {
    /// Writes the standard layout into `memory` (slot 0 at guest-physical 0): the GDT, page tables
    /// mapping the code, data, stack and MMIO pages, and `code` at the start of the code range.
    /// Leaves data and stack as they are (zero in fresh memory). The page-table area holds 14
    /// tables, enough for a slot 0 of up to 20 MiB; beyond that this fails with `TablesFull`.
    pub fn prepare(memory: &GuestMemory, code: &[u8]) -> Result<Layout, MemoryError> {
        let size = memory.len() as u64;
        let stack = size.saturating_sub(STACK_SIZE)..size;
        let data = DATA_START..stack.start.saturating_sub(STACK_SIZE);
        if data.is_empty() || !size.is_multiple_of(PAGE_SIZE) {
            // Too small for the layout: report the part that does not fit.
            return Err(MemoryError::OutOfBounds {
                gpa: DATA_START,
                len: 3 * STACK_SIZE,
                size,
            });
        }
        if code.len() as u64 > CODE.end - CODE.start {
            return Err(MemoryError::OutOfBounds {
                gpa: CODE.start,
                len: code.len() as u64,
                size: CODE.end - CODE.start,
            });
        }
        for (i, entry) in GDT.iter().enumerate() {
            memory.write_u64(GDT_ADDR + 8 * i as u64, *entry)?;
        }
        memory.write(CODE.start, code)?;
        let mut pt = PageTableBuilder::new(memory, PAGE_TABLES)?;
        pt.map(GDT_ADDR, GDT_ADDR, PAGE_SIZE, PageFlags::KERNEL_RODATA)?;
        pt.map(
            CODE.start,
            CODE.start,
            CODE.end - CODE.start,
            PageFlags::USER_CODE,
        )?;
        pt.map(
            data.start,
            data.start,
            data.end - data.start,
            PageFlags::USER_DATA,
        )?;
        pt.map(stack.start, stack.start, STACK_SIZE, PageFlags::USER_DATA)?;
        pt.map(MMIO_ADDR, MMIO_ADDR, PAGE_SIZE, PageFlags::USER_DATA)?;
        Ok(Layout {
            cr3: pt.root(),
            code: CODE,
            data,
            stack,
            mmio: MMIO_ADDR,
        })
    }

    /// Registers for a run entering at `rip` with an empty stack.
    pub fn entry_regs(&self, rip: u64) -> kvm_regs {
        entry_regs(rip, self.stack.end)
    }
}
