//! The address space of a [`WasmVm`](super::WasmVm): the stub page and the exits its stubs
//! make, the instance region's layout, and the memory slots and page tables that map it all.
//!
//! The stubs are the only guest code not from the artifact. Each leaves the VM by a 4-byte
//! write to its own address in the MMIO page (`mov dword ptr [abs32], imm32`, which KVM's
//! emulator decodes like any other MMIO access):
//!
//! ```text
//!  stub page     what                              MMIO write          the host then
//!  +0x000        entry: call r8 (the export's      EXIT_RETURN, 0      reads the results
//!                array-call trampoline)
//!  +0x040        host call: what an import's       EXIT_HOST_CALL, 0   runs the host function,
//!                context names as its dispatcher;                      answers eax = 0, resumes
//!                ret
//!  +0x080 + 16i  builtin i (the vmctx's builtin    EXIT_BUILTIN, i     runs builtin i on the
//!                table points here); ret                               System V arguments in
//!                                                                      registers, answers rax
//!  +0x400        write-behind: the dispatcher of   none, or (if it     (replays the log later,
//!                an import the host may defer      cannot log the      see [`super::write_behind`])
//!                (`fd_write`); logs the call       call) the host
//!                and returns, or jumps to the      call's
//!                host-call stub
//! ```

use super::super::memory::{GuestMemory, MemoryError, PageFlags, PageTableBuilder, PAGE_SIZE};
use super::super::vm::MemorySlot;
use super::super::{GDT, GDT_ADDR, MMIO_ADDR};
use super::GPA_BASE;
use fnvm_abi::vmoffsets::VALUE_SLOT_SIZE;
use fnvm_abi::Builtin;
use std::sync::Arc;

/// The stub page in slot 0.
pub(super) const STUB_ADDR: u64 = 0x2000;
/// The page tables start here in slot 0 (and fill the rest of it).
pub(super) const TABLES_START: u64 = 0x3000;
/// Bytes between the stack limit and the guard page: what a frame may push before its
/// prologue's check (return address, saved frame pointer), with room to spare.
pub(super) const STACK_SLACK: u64 = 4096;

/// The entry stub's write: the called function returned.
pub(super) const EXIT_RETURN: u64 = MMIO_ADDR;
/// The host-call stub's write: an import was called.
pub(super) const EXIT_HOST_CALL: u64 = MMIO_ADDR + 8;
/// A builtin stub's write, of the builtin's index.
pub(super) const EXIT_BUILTIN: u64 = MMIO_ADDR + 16;

/// Where the host-call stub is.
pub(super) const HOST_CALL_STUB: u64 = STUB_ADDR + 0x40;
const BUILTIN_STUBS: u64 = STUB_ADDR + 0x80;
const BUILTIN_STUB_SIZE: u64 = 16;
/// Bytes of one import's host-call context: the dispatcher (the host-call stub), then the
/// import's index (or, for the write-behind stub, the write log's address).
pub(super) const HOST_CTX_SIZE: u64 = 16;
/// Where the write-behind stub is, and the most room it may take.
pub(super) const WRITE_BEHIND_STUB: u64 = STUB_ADDR + 0x400;
const WRITE_BEHIND_STUB_MAX: usize = 0x400;

/// `mov dword ptr [addr], imm` with a 32-bit absolute address.
fn mov_abs(addr: u64, imm: u32) -> [u8; 11] {
    let a = (addr as u32).to_le_bytes();
    let i = imm.to_le_bytes();
    [
        0xc7, 0x04, 0x25, a[0], a[1], a[2], a[3], i[0], i[1], i[2], i[3],
    ]
}

/// The stub page's contents (see the module comment).
pub(super) fn stub_page() -> Vec<u8> {
    let mut page = vec![0xccu8; PAGE_SIZE as usize]; // int3 between stubs
    let mut put = |at: u64, bytes: &[u8]| {
        let at = (at - STUB_ADDR) as usize;
        page[at..at + bytes.len()].copy_from_slice(bytes);
    };
    put(STUB_ADDR, &[0x41, 0xff, 0xd0]); // call r8
    put(STUB_ADDR + 3, &mov_abs(EXIT_RETURN, 0));
    put(STUB_ADDR + 14, &[0xeb, 0xfe]); // jmp $ (never resumed)
    put(HOST_CALL_STUB, &mov_abs(EXIT_HOST_CALL, 0));
    put(HOST_CALL_STUB + 11, &[0xc3]); // ret
    for b in Builtin::ALL {
        let at = builtin_stub(*b);
        put(at, &mov_abs(EXIT_BUILTIN, *b as u32));
        put(at + 11, &[0xc3]);
    }
    let write_behind = super::write_behind::stub_code();
    assert!(
        write_behind.len() <= WRITE_BEHIND_STUB_MAX,
        "the write-behind stub outgrew its place"
    );
    put(WRITE_BEHIND_STUB, write_behind);
    page
}

/// The guest address of builtin `b`'s stub.
pub(super) fn builtin_stub(b: Builtin) -> u64 {
    BUILTIN_STUBS + b as u64 * BUILTIN_STUB_SIZE
}

/// Where one table lives in the region.
#[derive(Clone, Debug)]
pub(super) struct TableLayout {
    /// The definition `{ base, length, modified }` compiled code reads.
    pub(super) def: u64,
    /// The elements, room for `capacity` of them.
    pub(super) elems: u64,
    pub(super) capacity: u64,
}

/// What decides the region's layout.
#[derive(Clone, Debug)]
pub(super) struct RegionShape {
    pub(super) stack_bytes: u64,
    pub(super) vmctx_bytes: u64,
    pub(super) value_slots: u64,
    pub(super) types: u64,
    pub(super) table_capacities: Vec<u64>,
    pub(super) imports: u64,
    /// Bytes of the write log (0: none).
    pub(super) write_log: u64,
}

/// Where the parts of the instance region are, as host (= guest-virtual) addresses once
/// placed with [`RegionLayout::at`].
///
/// ```text
///  guard page                   not mapped
///  guest stack (rsp = top)      user, RW, NX
///  vmctx                        user, RW, NX
///  values [u64; 2] x n          user, RW, NX
///  table definitions            user, RW, NX   (compiled code sets `modified`)
///  table elements, per table    user, RW, NX
///  write log, if any            user, RW, NX   (the write-behind stub appends)
///  limits, epoch, type ids,     user, RO, NX   (only the host writes them)
///  builtin table, host-call
///  contexts
/// ```
#[derive(Clone, Debug)]
pub(super) struct RegionLayout {
    pub(super) base: u64,
    /// The lowest mapped stack address and the top (initial rsp).
    pub(super) stack_low: u64,
    pub(super) stack_top: u64,
    pub(super) vmctx: u64,
    pub(super) values: u64,
    pub(super) value_slots: u64,
    pub(super) tables: Vec<TableLayout>,
    /// The write log and its length (0: none).
    pub(super) write_log: u64,
    pub(super) write_log_len: u64,
    /// The guest-read-only part: limits, then the epoch counter, then type ids, the builtin
    /// table and the host-call contexts.
    pub(super) ro: u64,
    pub(super) builtins: u64,
    pub(super) host_ctxs: u64,
    pub(super) end: u64,
}

fn pages(n: u64) -> u64 {
    n.div_ceil(PAGE_SIZE) * PAGE_SIZE
}

impl RegionLayout {
    pub(super) fn new(s: &RegionShape) -> RegionLayout {
        let stack_low = PAGE_SIZE; // after the guard page
        let vmctx = stack_low + pages(s.stack_bytes + STACK_SLACK);
        let values = vmctx + pages(s.vmctx_bytes.max(1));
        let defs = values + pages(s.value_slots.max(1) * u64::from(VALUE_SLOT_SIZE));
        let mut at = defs + pages(24 * s.table_capacities.len() as u64);
        let mut tables = Vec::with_capacity(s.table_capacities.len());
        for (i, &capacity) in s.table_capacities.iter().enumerate() {
            tables.push(TableLayout {
                def: defs + 24 * i as u64,
                elems: at,
                capacity,
            });
            at += pages(capacity * 8);
        }
        let write_log = at;
        let write_log_len = pages(s.write_log);
        let ro = write_log + write_log_len;
        let builtins = (ro + 24 + 4 * s.types).next_multiple_of(16);
        let host_ctxs = builtins + 8 * Builtin::ALL.len() as u64;
        let end = pages(host_ctxs + HOST_CTX_SIZE * s.imports);
        RegionLayout {
            base: 0,
            stack_low,
            stack_top: vmctx,
            vmctx,
            values,
            value_slots: s.value_slots.max(1),
            tables,
            write_log,
            write_log_len,
            ro,
            builtins,
            host_ctxs,
            end,
        }
    }

    pub(super) fn len(&self) -> u64 {
        self.end - self.base
    }

    /// The same layout with offsets turned into addresses from `base`.
    pub(super) fn at(&self, base: u64) -> RegionLayout {
        RegionLayout {
            base,
            stack_low: base + self.stack_low,
            stack_top: base + self.stack_top,
            vmctx: base + self.vmctx,
            values: base + self.values,
            value_slots: self.value_slots,
            tables: self
                .tables
                .iter()
                .map(|t| TableLayout {
                    def: base + t.def,
                    elems: base + t.elems,
                    capacity: t.capacity,
                })
                .collect(),
            write_log: base + self.write_log,
            write_log_len: self.write_log_len,
            ro: base + self.ro,
            builtins: base + self.builtins,
            host_ctxs: base + self.host_ctxs,
            end: base + self.end,
        }
    }

    pub(super) fn limits(&self) -> u64 {
        self.ro
    }

    pub(super) fn epoch(&self) -> u64 {
        self.ro + 16
    }

    pub(super) fn type_ids(&self) -> u64 {
        self.ro + 24
    }
}

/// The linear memory's part of the address space: its slot, where the guest sees it, and how
/// much of it is accessible now.
pub(super) struct MemoryMapping {
    pub(super) slot: Arc<GuestMemory>,
    /// Guest-virtual (= host) address of byte 0.
    pub(super) base: u64,
    /// Accessible bytes.
    pub(super) len: u64,
}

/// Slot 0 (GDT, stubs, page tables), the slots of everything else, and the root of the tables.
pub(super) struct AddressSpace {
    pub(super) slots: Vec<MemorySlot>,
    pub(super) tables: super::super::memory::PageTableState,
    /// Where the memory's slot starts in guest-physical space.
    pub(super) memory_gpa: u64,
}

/// An upper bound on the page-table pages needed to map `len` bytes at any address: page
/// tables for each 2 MiB, directories for each 1 GiB and pointer tables for each 512 GiB the
/// range touches (the root is counted by the caller).
fn table_pages(len: u64) -> u64 {
    let spans = |unit: u64| len.div_ceil(unit) + 1;
    spans(2 << 20) + spans(1 << 30) + spans(1 << 39)
}

impl AddressSpace {
    /// Lays out the guest-physical space (slot 0 at 0; code, region and memory from
    /// [`GPA_BASE`] up) and maps, gva = host address: the GDT (supervisor), stubs, MMIO page,
    /// the code (read+execute), the region (see [`RegionLayout`]) and the memory's accessible
    /// part. Slot 0 has room for the tables of the memory's whole slot, committed as needed.
    pub(super) fn build(
        code: Option<GuestMemory>,
        region: &Arc<GuestMemory>,
        layout: &RegionLayout,
        memory: Option<&MemoryMapping>,
    ) -> Result<AddressSpace, MemoryError> {
        // A module without functions has no code to map (and nothing can be called).
        let code_len = code.as_ref().map_or(0, |c| c.len() as u64);
        let code_gpa = GPA_BASE;
        let region_gpa = code_gpa + code_len;
        let memory_gpa = region_gpa + layout.len();
        let memory_slot_len = memory.map_or(0, |m| m.slot.len() as u64);
        let tables = 1
            + table_pages(PAGE_SIZE) * 3
            + table_pages(code_len)
            + table_pages(layout.len())
            + table_pages(memory_slot_len);
        let low = Arc::new(GuestMemory::anonymous(
            (TABLES_START + tables * PAGE_SIZE) as usize,
        )?);
        for (i, entry) in GDT.iter().enumerate() {
            low.write_u64(GDT_ADDR + 8 * i as u64, *entry)?;
        }
        low.write(STUB_ADDR, &stub_page())?;
        let mut pt = PageTableBuilder::fresh(&low, TABLES_START..low.len() as u64)?;
        pt.map(GDT_ADDR, GDT_ADDR, PAGE_SIZE, PageFlags::KERNEL_RODATA)?;
        pt.map(STUB_ADDR, STUB_ADDR, PAGE_SIZE, PageFlags::USER_CODE)?;
        pt.map(MMIO_ADDR, MMIO_ADDR, PAGE_SIZE, PageFlags::USER_DATA)?;
        if let Some(code) = &code {
            pt.map(
                code.host_address(),
                code_gpa,
                code_len,
                PageFlags::USER_CODE,
            )?;
        }
        let gpa = |addr: u64| region_gpa + (addr - layout.base);
        pt.map(
            layout.stack_low,
            gpa(layout.stack_low),
            layout.ro - layout.stack_low,
            PageFlags::USER_DATA,
        )?;
        pt.map(layout.ro, gpa(layout.ro), layout.end - layout.ro, GUEST_RO)?;
        if let Some(m) = memory.filter(|m| m.len > 0) {
            pt.map(m.base, memory_gpa, m.len, PageFlags::USER_DATA)?;
        }
        let tables = pt.state();
        let mut slots = vec![MemorySlot {
            guest_phys_addr: 0,
            memory: low,
        }];
        if let Some(code) = code {
            slots.push(MemorySlot {
                guest_phys_addr: code_gpa,
                memory: Arc::new(code),
            });
        }
        slots.push(MemorySlot {
            guest_phys_addr: region_gpa,
            memory: Arc::clone(region),
        });
        if let Some(m) = memory {
            slots.push(MemorySlot {
                guest_phys_addr: memory_gpa,
                memory: Arc::clone(&m.slot),
            });
        }
        Ok(AddressSpace {
            slots,
            tables,
            memory_gpa,
        })
    }
}

/// Pages the guest reads and only the host writes.
pub(super) const GUEST_RO: PageFlags = PageFlags {
    writable: false,
    user: true,
    executable: false,
};
