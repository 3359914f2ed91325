//! Guest-physical memory and the guest's x86-64 page tables.
//!
//! [`GuestMemory`] is one host mapping that a VM registers as a KVM memory slot. It is either an
//! anonymous private mapping or a shared mapping of a memfd; the memfd form exists so that a later
//! step can map the same file privately in other VMs (copy-on-write snapshots) without copying.
//! Inside the crate it can also borrow a mapping someone else owns (a loaded module's code, which
//! is read+execute and shared by every VM running the module); such memory may be read-only, and
//! then the host cannot write it either.
//!
//! The guest writes this memory while the host holds it, so the host never hands out references
//! into it: every access copies through raw pointers (as rust-vmm's `vm-memory` does), which keeps
//! Rust's aliasing rules intact whatever the guest does.
//!
//! [`PageTableBuilder`] writes 4-level page tables (4 KiB pages only) into a range of guest
//! memory. Every guest-virtual page it is not asked to map stays non-present, so the guard gaps of
//! the layout fault. Intermediate entries are always present, writable and user-accessible, and
//! the leaf carries the page's real permissions: x86 combines the levels (writable and user are
//! ANDed, no-execute is ORed), so permissions live in one place, as in Linux.

use std::ops::Range;
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;

/// The size of a guest page (the page tables map 4 KiB pages only).
pub const PAGE_SIZE: u64 = 4096;

const PTE_PRESENT: u64 = 1 << 0;
const PTE_WRITABLE: u64 = 1 << 1;
const PTE_USER: u64 = 1 << 2;
const PTE_NO_EXECUTE: u64 = 1 << 63;
/// Bits 12..52 of an entry: the physical address of the next table or of the page.
const PTE_ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;
/// Guest-virtual addresses below this are the lower canonical half (4-level paging); the builder
/// never maps the upper half, which keeps every mapping user-addressable.
const GVA_LIMIT: u64 = 1 << 47;
/// The architectural limit on guest-physical addresses in a page-table entry.
const GPA_LIMIT: u64 = 1 << 52;

/// Failures of guest memory and page-table operations.
#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    #[error("guest memory size {0:#x} is zero or not a multiple of 4 KiB")]
    BadSize(usize),
    #[error("mapping {len:#x} bytes of guest memory failed: {source}")]
    Mmap { len: usize, source: std::io::Error },
    #[error("memfd_create for guest memory failed: {0}")]
    MemfdCreate(std::io::Error),
    #[error("sizing the guest memory memfd to {len:#x} bytes failed: {source}")]
    MemfdTruncate { len: usize, source: std::io::Error },
    #[error("guest-physical range {gpa:#x}+{len:#x} is outside guest memory ({size:#x} bytes)")]
    OutOfBounds { gpa: u64, len: u64, size: u64 },
    #[error("{what} {value:#x} is not 4 KiB aligned")]
    Unaligned { what: &'static str, value: u64 },
    #[error("mapping is empty (length 0)")]
    EmptyMapping,
    #[error("guest-virtual range {gva:#x}+{len:#x} is outside the lower canonical half")]
    NonCanonical { gva: u64, len: u64 },
    #[error("guest-physical range {gpa:#x}+{len:#x} exceeds 52-bit physical addresses")]
    PhysicalTooHigh { gpa: u64, len: u64 },
    #[error("guest-virtual page {gva:#x} is already mapped")]
    AlreadyMapped { gva: u64 },
    #[error("page-table area {area:x?} is full")]
    TablesFull { area: Range<u64> },
    #[error("guest memory at host address {host:#x} is read-only")]
    ReadOnly { host: u64 },
    #[error("guest memory at host address {host:#x} is a reservation its owner accesses itself")]
    NoHostAccess { host: u64 },
}

/// One contiguous block of guest-physical memory backed by a host mapping, unmapped on drop
/// unless borrowed.
#[derive(Debug)]
pub struct GuestMemory {
    ptr: NonNull<u8>,
    len: usize,
    /// The file behind a shared mapping (`None` for anonymous memory).
    memfd: Option<OwnedFd>,
    /// Whether the host mapping is writable (only borrowed mappings may not be).
    writable: bool,
    /// For a borrowed mapping, what keeps it mapped; `None` when this value owns the mapping.
    owner: Option<Box<dyn std::fmt::Debug + Send + Sync>>,
    /// Whether the host may read and write through this value (false for a reservation whose
    /// inaccessible parts would fault, see [`GuestMemory::reservation`]).
    host_access: bool,
}

// SAFETY: the mapping is plain memory owned by this value; every access goes through raw-pointer
// copies (see the module comment), so sharing it across threads is like sharing memory with the
// guest, which the design already assumes.
unsafe impl Send for GuestMemory {}
// SAFETY: as for Send: `&self` methods only copy bytes in and out through raw pointers.
unsafe impl Sync for GuestMemory {}

impl GuestMemory {
    /// Anonymous private memory of `len` bytes (a multiple of 4 KiB), zero until written. Pages
    /// are committed on first touch, by the host or by the guest.
    pub fn anonymous(len: usize) -> Result<GuestMemory, MemoryError> {
        check_size(len)?;
        let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE;
        let ptr = map(len, flags, -1)?;
        Ok(GuestMemory {
            ptr,
            len,
            memfd: None,
            writable: true,
            owner: None,
            host_access: true,
        })
    }

    /// Memory of `len` bytes in a fresh memfd, mapped shared, so the same contents can later be
    /// mapped copy-on-write elsewhere ([`GuestMemory::memfd`] gives the file).
    pub fn with_memfd(len: usize) -> Result<GuestMemory, MemoryError> {
        check_size(len)?;
        // SAFETY: a constant NUL-terminated name and valid flags; the result is checked.
        let fd = unsafe { libc::memfd_create(c"fnvm-guest".as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(MemoryError::MemfdCreate(std::io::Error::last_os_error()));
        }
        // SAFETY: `fd` was just returned by memfd_create and nothing else owns it.
        let file = unsafe { OwnedFd::from_raw_fd(fd) };
        let size = libc::off_t::try_from(len).map_err(|_| MemoryError::BadSize(len))?;
        // SAFETY: ftruncate on a file descriptor this function owns.
        if unsafe { libc::ftruncate(fd, size) } < 0 {
            let source = std::io::Error::last_os_error();
            return Err(MemoryError::MemfdTruncate { len, source });
        }
        let ptr = map(len, libc::MAP_SHARED, fd)?;
        Ok(GuestMemory {
            ptr,
            len,
            memfd: Some(file),
            writable: true,
            owner: None,
            host_access: true,
        })
    }

    /// Guest memory over `len` bytes at `ptr`, a host mapping that `owner` keeps alive; dropping
    /// the result drops `owner` and unmaps nothing. With `writable` false the host writes
    /// through this value fail with [`MemoryError::ReadOnly`] (and a slot over it is read-only).
    ///
    /// # Safety
    /// `ptr` must be 4 KiB aligned, and `[ptr, ptr + len)` a host mapping that is readable (and
    /// writable if `writable`), that stays mapped with the same contents' identity while `owner`
    /// lives, and that holds nothing but what the guest may see (it becomes guest memory).
    pub(super) unsafe fn borrowed(
        ptr: NonNull<u8>,
        len: usize,
        writable: bool,
        owner: Box<dyn std::fmt::Debug + Send + Sync>,
    ) -> Result<GuestMemory, MemoryError> {
        check_size(len)?;
        check_aligned("host address", ptr.as_ptr() as u64)?;
        Ok(GuestMemory {
            ptr,
            len,
            memfd: None,
            writable,
            owner: Some(owner),
            host_access: true,
        })
    }

    /// A slot over `len` bytes at `ptr`, a reservation that `owner` keeps mapped and whose
    /// parts its owner makes accessible (readable and writable) or not as it pleases, such as a
    /// linear memory that grows by `mprotect`. The host cannot read or write through the
    /// result ([`MemoryError::NoHostAccess`]): the owner accesses its bytes itself. The guest
    /// must only be given page-table mappings of parts the owner made accessible (KVM_RUN fails
    /// with EFAULT on the others).
    ///
    /// # Safety
    /// `ptr` must be 4 KiB aligned, and `[ptr, ptr + len)` a host mapping that stays mapped
    /// (its parts may change protection, or be replaced by other private mappings of the same
    /// range) while `owner` lives, and that holds nothing but what the guest may see.
    pub(in crate::kvm) unsafe fn reservation(
        ptr: NonNull<u8>,
        len: usize,
        owner: Box<dyn std::fmt::Debug + Send + Sync>,
    ) -> Result<GuestMemory, MemoryError> {
        check_size(len)?;
        check_aligned("host address", ptr.as_ptr() as u64)?;
        Ok(GuestMemory {
            ptr,
            len,
            memfd: None,
            writable: true,
            owner: Some(owner),
            host_access: false,
        })
    }

    /// Whether the host mapping (and so a slot over it) is writable.
    pub fn is_writable(&self) -> bool {
        self.writable
    }

    /// The size in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the size is zero (never true: constructors reject it).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The host address of the first byte, for a KVM memory slot.
    pub fn host_address(&self) -> u64 {
        self.ptr.as_ptr() as u64
    }

    /// The memfd behind this memory, if it was created with [`GuestMemory::with_memfd`].
    pub fn memfd(&self) -> Option<BorrowedFd<'_>> {
        self.memfd.as_ref().map(|fd| fd.as_fd())
    }

    /// The host pointer to `[offset, offset + len)` after a bounds check.
    fn range(&self, offset: u64, len: usize) -> Result<*mut u8, MemoryError> {
        if !self.host_access {
            return Err(MemoryError::NoHostAccess {
                host: self.host_address(),
            });
        }
        let size = self.len as u64;
        let end = offset.checked_add(len as u64);
        match end {
            Some(end) if end <= size => {
                // SAFETY: `offset + len <= self.len`, so the pointer stays inside the mapping.
                Ok(unsafe { self.ptr.as_ptr().add(offset as usize) })
            }
            _ => Err(MemoryError::OutOfBounds {
                gpa: offset,
                len: len as u64,
                size,
            }),
        }
    }

    /// The host pointer to `[offset, offset + len)` for writing: bounds and writability checked.
    fn range_mut(&self, offset: u64, len: usize) -> Result<*mut u8, MemoryError> {
        if !self.writable {
            return Err(MemoryError::ReadOnly {
                host: self.host_address(),
            });
        }
        self.range(offset, len)
    }

    /// Copies `bytes` to offset `offset` (the guest-physical address when the slot starts at 0).
    pub fn write(&self, offset: u64, bytes: &[u8]) -> Result<(), MemoryError> {
        let dst = self.range_mut(offset, bytes.len())?;
        // SAFETY: `dst` is valid for `bytes.len()` bytes (checked by `range`) and cannot overlap
        // `bytes`, which the caller borrows from host memory outside this mapping (no reference
        // into the mapping is ever handed out).
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), dst, bytes.len()) };
        Ok(())
    }

    /// Copies `buf.len()` bytes from offset `offset` into `buf`.
    pub fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        let src = self.range(offset, buf.len())?;
        // SAFETY: `src` is valid for `buf.len()` bytes (checked by `range`) and `buf` is host
        // memory outside the mapping.
        unsafe { std::ptr::copy_nonoverlapping(src, buf.as_mut_ptr(), buf.len()) };
        Ok(())
    }

    /// Sets `len` bytes from `offset` to zero.
    pub fn zero(&self, offset: u64, len: usize) -> Result<(), MemoryError> {
        let dst = self.range_mut(offset, len)?;
        // SAFETY: `dst` is valid for `len` bytes (checked by `range`).
        unsafe { std::ptr::write_bytes(dst, 0, len) };
        Ok(())
    }

    /// Reads a little-endian u64 (page-table entries, hostcall answers).
    pub fn read_u64(&self, offset: u64) -> Result<u64, MemoryError> {
        let mut b = [0u8; 8];
        self.read(offset, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    /// Writes a little-endian u64.
    pub fn write_u64(&self, offset: u64, value: u64) -> Result<(), MemoryError> {
        self.write(offset, &value.to_le_bytes())
    }

    /// Stores a u64 at an 8-byte aligned offset in one atomic (release) store, for words a
    /// running guest reads concurrently, such as its epoch counter.
    pub fn store_u64_atomic(&self, offset: u64, value: u64) -> Result<(), MemoryError> {
        if !offset.is_multiple_of(8) {
            return Err(MemoryError::Unaligned {
                what: "atomic store offset",
                value: offset,
            });
        }
        let dst = self.range_mut(offset, 8)?;
        // SAFETY: `dst` is valid for 8 bytes (checked by `range_mut`) and 8-byte aligned (the
        // mapping is page aligned and `offset` a multiple of 8). Every access to guest memory
        // goes through raw pointers, so an atomic view of these bytes aliases no reference.
        let word = unsafe { std::sync::atomic::AtomicU64::from_ptr(dst.cast()) };
        word.store(value, std::sync::atomic::Ordering::Release);
        Ok(())
    }
}

impl Drop for GuestMemory {
    fn drop(&mut self) {
        if self.owner.is_some() {
            // Borrowed: dropping `owner` (after this) releases the mapping.
            return;
        }
        // SAFETY: the mapping was created by `map` with this pointer and length and is owned by
        // this value; VMs and vCPUs keep an `Arc` to it, so no memory slot outlives it.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

fn check_size(len: usize) -> Result<(), MemoryError> {
    if len == 0 || !(len as u64).is_multiple_of(PAGE_SIZE) {
        return Err(MemoryError::BadSize(len));
    }
    Ok(())
}

fn map(len: usize, flags: libc::c_int, fd: libc::c_int) -> Result<NonNull<u8>, MemoryError> {
    // SAFETY: a fresh mapping at an address of the kernel's choosing touches no existing memory.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            flags,
            fd,
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        let source = std::io::Error::last_os_error();
        return Err(MemoryError::Mmap { len, source });
    }
    NonNull::new(ptr.cast()).ok_or_else(|| MemoryError::Mmap {
        len,
        source: std::io::Error::other("mmap returned null"),
    })
}

/// The permissions of a mapped guest-virtual range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageFlags {
    /// Writes allowed (otherwise read-only, also for CPL0 since the layout sets CR0.WP).
    pub writable: bool,
    /// Accessible at CPL3, where guest code runs.
    pub user: bool,
    /// Instruction fetches allowed (otherwise the no-execute bit is set; EFER.NXE is on).
    pub executable: bool,
}

impl PageFlags {
    /// User code: read and execute.
    pub const USER_CODE: PageFlags = PageFlags {
        writable: false,
        user: true,
        executable: true,
    };
    /// User data and stack: read and write, no execute.
    pub const USER_DATA: PageFlags = PageFlags {
        writable: true,
        user: true,
        executable: false,
    };
    /// Supervisor-only read-only data (the GDT): invisible to CPL3 guest code.
    pub const KERNEL_RODATA: PageFlags = PageFlags {
        writable: false,
        user: false,
        executable: false,
    };

    fn leaf_bits(self) -> u64 {
        let mut bits = PTE_PRESENT;
        if self.writable {
            bits |= PTE_WRITABLE;
        }
        if self.user {
            bits |= PTE_USER;
        }
        if !self.executable {
            bits |= PTE_NO_EXECUTE;
        }
        bits
    }
}

/// Where a [`PageTableBuilder`] left off: its area, the next free table page and the root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageTableState {
    area: Range<u64>,
    next: u64,
    root: u64,
}

impl PageTableState {
    /// The guest-physical address of the PML4, for CR3.
    pub fn root(&self) -> u64 {
        self.root
    }
}

/// Writes 4-level page tables into a reserved range of guest memory.
///
/// Table pages are handed out from the range in order and never freed. A failed [`map`] may
/// leave the pages before the failing one mapped.
///
/// [`map`]: PageTableBuilder::map
#[derive(Debug)]
pub struct PageTableBuilder<'m> {
    memory: &'m GuestMemory,
    area: Range<u64>,
    next: u64,
    root: u64,
}

impl<'m> PageTableBuilder<'m> {
    /// Reserves `area` (page aligned, inside `memory`, the slot at guest-physical 0) for tables,
    /// zeroes it and allocates the top-level table (PML4) from it.
    pub fn new(memory: &'m GuestMemory, area: Range<u64>) -> Result<Self, MemoryError> {
        check_aligned("page-table area start", area.start)?;
        check_aligned("page-table area end", area.end)?;
        let len = area.end.saturating_sub(area.start);
        let len = usize::try_from(len).map_err(|_| MemoryError::OutOfBounds {
            gpa: area.start,
            len,
            size: memory.len() as u64,
        })?;
        memory.zero(area.start, len)?;
        Self::fresh(memory, area)
    }

    /// Like [`new`](Self::new), for an area that already reads as zero (fresh anonymous
    /// memory): nothing is written to it but the tables actually allocated, so a large area
    /// reserved for tables that may be needed later commits no memory until they are.
    pub fn fresh(memory: &'m GuestMemory, area: Range<u64>) -> Result<Self, MemoryError> {
        check_aligned("page-table area start", area.start)?;
        check_aligned("page-table area end", area.end)?;
        let len = area.end.saturating_sub(area.start);
        // Bounds: the whole area must lie in guest memory.
        memory.range(area.start, usize::try_from(len).unwrap_or(usize::MAX))?;
        let mut builder = PageTableBuilder {
            memory,
            next: area.start,
            area,
            root: 0,
        };
        builder.root = builder.alloc_table()?;
        Ok(builder)
    }

    /// The guest-physical address of the PML4, for CR3.
    pub fn root(&self) -> u64 {
        self.root
    }

    /// The part of the area holding tables so far.
    pub fn used(&self) -> Range<u64> {
        self.area.start..self.next
    }

    /// Where this builder left off, to continue with [`resume`](Self::resume) later (a
    /// builder borrows its memory, so a VM whose mappings change keeps this instead).
    pub fn state(&self) -> PageTableState {
        PageTableState {
            area: self.area.clone(),
            next: self.next,
            root: self.root,
        }
    }

    /// Continues building the tables `state` describes, in the same `memory`.
    pub fn resume(memory: &'m GuestMemory, state: &PageTableState) -> Self {
        PageTableBuilder {
            memory,
            area: state.area.clone(),
            next: state.next,
            root: state.root,
        }
    }

    /// Makes `len` bytes of guest-virtual space at `gva` non-present again (pages that were
    /// not mapped are skipped; tables stay allocated). The vCPU must not be running; shadow
    /// paging (PVM) may still hold translations of these pages until they are invalidated,
    /// which KVM does when the host changes the backing pages' mapping or protection.
    pub fn unmap(&mut self, gva: u64, len: u64) -> Result<(), MemoryError> {
        check_aligned("guest-virtual address", gva)?;
        check_aligned("mapping length", len)?;
        if gva.checked_add(len).is_none_or(|end| end > GVA_LIMIT) {
            return Err(MemoryError::NonCanonical { gva, len });
        }
        let mut page = gva;
        while page < gva + len {
            match self.leaf_entry(page)? {
                Some(entry_addr) => {
                    self.memory.write_u64(entry_addr, 0)?;
                    page += PAGE_SIZE;
                }
                // No page table here: skip to the next 2 MiB boundary.
                None => page = (page | ((1 << 21) - 1)) + 1,
            }
        }
        Ok(())
    }

    /// The address of the page-table entry for `gva`, if its tables exist.
    fn leaf_entry(&self, gva: u64) -> Result<Option<u64>, MemoryError> {
        let mut table = self.root;
        for shift in [39u32, 30, 21] {
            let entry = self.memory.read_u64(table + ((gva >> shift) & 511) * 8)?;
            if entry & PTE_PRESENT == 0 {
                return Ok(None);
            }
            table = entry & PTE_ADDR_MASK;
        }
        Ok(Some(table + ((gva >> 12) & 511) * 8))
    }

    fn alloc_table(&mut self) -> Result<u64, MemoryError> {
        if self.next >= self.area.end {
            return Err(MemoryError::TablesFull {
                area: self.area.clone(),
            });
        }
        // The area was zeroed in `new`, so the table starts with no entries present.
        let table = self.next;
        self.next += PAGE_SIZE;
        Ok(table)
    }

    /// Maps `len` bytes of guest-virtual space at `gva` to guest-physical `gpa` with `flags`.
    /// All three must be 4 KiB aligned; `gpa` may lie outside guest memory (an MMIO page).
    pub fn map(
        &mut self,
        gva: u64,
        gpa: u64,
        len: u64,
        flags: PageFlags,
    ) -> Result<(), MemoryError> {
        check_aligned("guest-virtual address", gva)?;
        check_aligned("guest-physical address", gpa)?;
        check_aligned("mapping length", len)?;
        if len == 0 {
            return Err(MemoryError::EmptyMapping);
        }
        if gva.checked_add(len).is_none_or(|end| end > GVA_LIMIT) {
            return Err(MemoryError::NonCanonical { gva, len });
        }
        if gpa.checked_add(len).is_none_or(|end| end > GPA_LIMIT) {
            return Err(MemoryError::PhysicalTooHigh { gpa, len });
        }
        for page in 0..len / PAGE_SIZE {
            let off = page * PAGE_SIZE;
            self.map_page(gva + off, gpa + off, flags.leaf_bits())?;
        }
        Ok(())
    }

    fn map_page(&mut self, gva: u64, gpa: u64, leaf: u64) -> Result<(), MemoryError> {
        let mut table = self.root;
        // PML4 (bits 39..48), PDPT (30..39), PD (21..30): find or create the next table.
        for shift in [39u32, 30, 21] {
            let entry_addr = table + ((gva >> shift) & 511) * 8;
            let entry = self.memory.read_u64(entry_addr)?;
            table = if entry & PTE_PRESENT != 0 {
                entry & PTE_ADDR_MASK
            } else {
                let next = self.alloc_table()?;
                let bits = PTE_PRESENT | PTE_WRITABLE | PTE_USER;
                self.memory.write_u64(entry_addr, next | bits)?;
                next
            };
        }
        let entry_addr = table + ((gva >> 12) & 511) * 8;
        if self.memory.read_u64(entry_addr)? & PTE_PRESENT != 0 {
            return Err(MemoryError::AlreadyMapped { gva });
        }
        self.memory.write_u64(entry_addr, gpa | leaf)
    }
}

fn check_aligned(what: &'static str, value: u64) -> Result<(), MemoryError> {
    if !value.is_multiple_of(PAGE_SIZE) {
        return Err(MemoryError::Unaligned { what, value });
    }
    Ok(())
}

/// What a guest-virtual address translates to, with the permissions combined over all levels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Translation {
    pub gpa: u64,
    pub flags: PageFlags,
}

/// Walks the tables rooted at `root` (in `memory`, the slot at guest-physical 0) the way the MMU
/// does, for checks and diagnostics. `None` when a level is non-present or a table lies outside
/// guest memory.
pub fn translate(memory: &GuestMemory, root: u64, gva: u64) -> Option<Translation> {
    if gva >= GVA_LIMIT {
        return None;
    }
    let mut table = root;
    let (mut writable, mut user, mut executable) = (true, true, true);
    for shift in [39u32, 30, 21, 12] {
        let entry = memory.read_u64(table + ((gva >> shift) & 511) * 8).ok()?;
        if entry & PTE_PRESENT == 0 {
            return None;
        }
        writable &= entry & PTE_WRITABLE != 0;
        user &= entry & PTE_USER != 0;
        executable &= entry & PTE_NO_EXECUTE == 0;
        table = entry & PTE_ADDR_MASK;
    }
    Some(Translation {
        gpa: table | (gva & (PAGE_SIZE - 1)),
        flags: PageFlags {
            writable,
            user,
            executable,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_bounds_are_checked() {
        let mem = GuestMemory::anonymous(2 * 4096).unwrap();
        mem.write_u64(8, 0x1122_3344_5566_7788).unwrap();
        assert_eq!(mem.read_u64(8).unwrap(), 0x1122_3344_5566_7788);
        assert!(matches!(
            mem.write(8190, &[0; 3]),
            Err(MemoryError::OutOfBounds { .. })
        ));
        assert!(matches!(
            mem.read_u64(u64::MAX - 2),
            Err(MemoryError::OutOfBounds { .. })
        ));
        assert!(matches!(
            GuestMemory::anonymous(100),
            Err(MemoryError::BadSize(100))
        ));
        assert!(matches!(
            GuestMemory::anonymous(0),
            Err(MemoryError::BadSize(0))
        ));
    }

    #[test]
    fn borrowed_read_only_memory_refuses_host_writes() {
        let owner = GuestMemory::anonymous(2 * 4096).unwrap();
        owner.write_u64(0, 7).unwrap();
        let ptr = NonNull::new(owner.host_address() as *mut u8).unwrap();
        // SAFETY: `owner` is a page-aligned 8 KiB mapping that the borrowed value keeps alive.
        let view = unsafe { GuestMemory::borrowed(ptr, 2 * 4096, false, Box::new(owner)) }.unwrap();
        assert!(!view.is_writable());
        assert_eq!(view.read_u64(0).unwrap(), 7);
        assert!(matches!(
            view.write_u64(0, 1),
            Err(MemoryError::ReadOnly { .. })
        ));
        assert!(matches!(view.zero(0, 8), Err(MemoryError::ReadOnly { .. })));
        // Dropping the view drops the owner, which unmaps (once).
        drop(view);
    }

    #[test]
    fn memfd_memory_is_backed_by_its_file() {
        let mem = GuestMemory::with_memfd(4096).unwrap();
        mem.write(16, b"fnvm").unwrap();
        let fd = mem.memfd().expect("memfd-backed");
        let mut buf = [0u8; 4];
        // SAFETY: pread into a local buffer of the stated length on a live descriptor.
        let n = unsafe {
            libc::pread(
                std::os::fd::AsRawFd::as_raw_fd(&fd),
                buf.as_mut_ptr().cast(),
                4,
                16,
            )
        };
        assert_eq!(n, 4);
        assert_eq!(&buf, b"fnvm");
    }

    #[test]
    fn page_tables_map_only_what_was_asked() {
        let mem = GuestMemory::anonymous(64 * 4096).unwrap();
        let mut pt = PageTableBuilder::new(&mem, 0x1000..0x8000).unwrap();
        pt.map(0x10000, 0x10000, 0x2000, PageFlags::USER_CODE)
            .unwrap();
        pt.map(0x3fe0_0000, 0x3fe0_0000, 0x1000, PageFlags::USER_DATA)
            .unwrap();
        let root = pt.root();
        assert_eq!(root, 0x1000);

        let t = translate(&mem, root, 0x10123).unwrap();
        assert_eq!(t.gpa, 0x10123);
        assert_eq!(t.flags, PageFlags::USER_CODE);
        let t = translate(&mem, root, 0x3fe0_0008).unwrap();
        assert_eq!(t.flags, PageFlags::USER_DATA);
        // Neighbours of mapped ranges stay unmapped (the guards).
        for gva in [0, 0xf000, 0x12000, 0x3fdf_f000, 0x3fe0_1000, 1 << 40] {
            assert_eq!(translate(&mem, root, gva), None, "{gva:#x}");
        }
        // PML4, PDPT, PD and a PT for the code; 0x3fe00000 is in the same first GiB (same PD),
        // so it needs only one more PT.
        assert_eq!(pt.used(), 0x1000..0x6000);
    }

    #[test]
    fn page_table_errors() {
        let mem = GuestMemory::anonymous(16 * 4096).unwrap();
        let mut pt = PageTableBuilder::new(&mem, 0x1000..0x3000).unwrap();
        let f = PageFlags::USER_DATA;
        assert!(matches!(
            pt.map(0x123, 0, 4096, f),
            Err(MemoryError::Unaligned { .. })
        ));
        assert!(matches!(pt.map(0, 0, 0, f), Err(MemoryError::EmptyMapping)));
        assert!(matches!(
            pt.map(GVA_LIMIT - 4096, 0, 8192, f),
            Err(MemoryError::NonCanonical { .. })
        ));
        assert!(matches!(
            pt.map(0, GPA_LIMIT, 4096, f),
            Err(MemoryError::PhysicalTooHigh { .. })
        ));
        // Two table pages: PML4 and PDPT; the PD does not fit.
        assert!(matches!(
            pt.map(0, 0, 4096, f),
            Err(MemoryError::TablesFull { .. })
        ));

        let mut pt = PageTableBuilder::new(&mem, 0x1000..0x6000).unwrap();
        pt.map(0x8000, 0x8000, 4096, f).unwrap();
        assert!(matches!(
            pt.map(0x8000, 0x9000, 4096, f),
            Err(MemoryError::AlreadyMapped { gva: 0x8000 })
        ));
        // Tables outside guest memory.
        assert!(matches!(
            PageTableBuilder::new(&mem, 0xf000..0x11000),
            Err(MemoryError::OutOfBounds { .. })
        ));
    }
}
