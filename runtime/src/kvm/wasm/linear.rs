//! The linear memory of a [`WasmVm`](super::WasmVm), backed exactly as an instance slot of the
//! in-process pool backs it: a [`MemoryData`] over its own reservation (guard page, 4 GiB,
//! guard region), the module's memory image mapped copy-on-write from its sealed memfd, and
//! `memory.grow` by `mprotect`.
//!
//! The guest sees it at its host address (gva = host address, like everything else), through
//! one KVM memory slot over the part it can ever grow to (its declared maximum, capped by
//! [`WasmVmConfig::max_memory_pages`](super::WasmVmConfig::max_memory_pages)). The guest page
//! tables map only the accessible pages; the rest of the reservation and its guard are not
//! mapped, so an access there is a page fault, a triple fault with `rip` at the access, which
//! the module's trap table calls `HeapOutOfBounds`, as the in-process signal handler does.
//! Growing maps the new pages in the guest (adding mappings needs no invalidation: the vCPU
//! finds them at its next fault); shrinking back at a reset unmaps them and then takes the
//! host pages away (`mprotect`), which makes KVM drop its translations of them.

use crate::memory::MemoryData;
use crate::mmap::{page_size, Mmap};
use crate::pool::MemoryImage;
use fnvm_abi::{MemoryType, MEMORY_GUARD_SIZE, MEMORY_RESERVATION, WASM_MAX_PAGES, WASM_PAGE_SIZE};
use std::cell::UnsafeCell;
use std::ptr::NonNull;
use std::sync::Arc;

use super::super::memory::GuestMemory;
use super::WasmVmError;

/// The memory, shared by its owner ([`LinearMemory`]) and the memory slot over it, which only
/// keeps it mapped.
struct Shared(UnsafeCell<Box<MemoryData>>);

// SAFETY: only the `LinearMemory` holding the other `Arc` ever accesses the `MemoryData`
// (through `&mut self`); the slot's `GuestMemory` only keeps it alive and refuses host access
// (it is a `GuestMemory::reservation`). `MemoryData` itself is an owned mapping.
unsafe impl Send for Shared {}
// SAFETY: as for `Send`: no `&self` access to the contents exists.
unsafe impl Sync for Shared {}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LinearMemory")
    }
}

/// A VM's linear memory.
#[derive(Debug)]
pub(super) struct LinearMemory {
    shared: Arc<Shared>,
    ty: MemoryType,
    /// The most pages it may have (declared maximum and cap); its slot covers them.
    max_pages: u64,
}

impl LinearMemory {
    /// A memory of type `ty` with at most `cap_pages` pages, its first bytes from `image`.
    pub(super) fn new(
        ty: MemoryType,
        cap_pages: u64,
        image: Option<&MemoryImage>,
    ) -> Result<LinearMemory, WasmVmError> {
        let declared = ty.limits.max.map_or(WASM_MAX_PAGES, u64::from);
        let max_pages = declared.min(cap_pages).min(WASM_MAX_PAGES);
        if u64::from(ty.limits.min) > max_pages {
            return Err(WasmVmError::MemoryTooLarge {
                pages: ty.limits.min.into(),
                limit: max_pages,
            });
        }
        let total = page_size() as u64 + MEMORY_RESERVATION + MEMORY_GUARD_SIZE;
        let map = Mmap::reserve(total as usize).map_err(WasmVmError::MemorySetup)?;
        let mut data = MemoryData::in_slot(map);
        data.setup_in_slot(ty, image)
            .map_err(WasmVmError::MemorySetup)?;
        data.set_cap(max_pages);
        Ok(LinearMemory {
            shared: Arc::new(Shared(UnsafeCell::new(data))),
            ty,
            max_pages,
        })
    }

    /// The memory data.
    pub(super) fn data(&mut self) -> &mut MemoryData {
        // SAFETY: see `Shared`: this is the only place its contents are reached, and `&mut
        // self` makes the borrow exclusive.
        unsafe { &mut *self.shared.0.get() }
    }

    fn data_ref(&self) -> &MemoryData {
        // SAFETY: as in `data`; `&self` excludes a `&mut` from `data` for this borrow.
        unsafe { &*self.shared.0.get() }
    }

    /// Host (= guest-virtual) address of byte 0.
    pub(super) fn base(&self) -> u64 {
        self.data_ref().def.base as u64
    }

    /// Accessible bytes.
    pub(super) fn len(&self) -> u64 {
        self.data_ref().def.length
    }

    /// The most pages the memory can have (what its slot covers).
    pub(super) fn max_pages(&self) -> u64 {
        self.max_pages
    }

    /// 4 KiB pages of the accessible memory present in host memory.
    pub(super) fn resident_pages(&self) -> std::io::Result<u64> {
        self.data_ref().resident_pages()
    }

    /// Drops every resident page of the part the memory can grow to (image pages read as the
    /// image again, others as zero), so the next instance's resident pages are its own.
    pub(super) fn discard_resident(&mut self) -> std::io::Result<()> {
        let extent = (self.max_pages * WASM_PAGE_SIZE) as usize;
        self.data().discard_kept(extent)
    }

    /// Accessible bytes of a fresh instance.
    pub(super) fn initial_len(&self) -> u64 {
        u64::from(self.ty.limits.min) * WASM_PAGE_SIZE
    }

    /// A memory slot over everything the memory can grow to, or `None` if it can never have a
    /// page. The slot keeps the memory mapped.
    pub(super) fn slot(&self) -> Result<Option<GuestMemory>, WasmVmError> {
        let len = self.max_pages * WASM_PAGE_SIZE;
        if len == 0 {
            return Ok(None);
        }
        let base = NonNull::new(self.base() as *mut u8)
            .ok_or(WasmVmError::Unsupported("a memory at address 0"))?;
        let owner = Box::new(Arc::clone(&self.shared));
        // SAFETY: `base` is page aligned (a page into the reservation) and `len` bytes of the
        // reservation follow it (at most 4 GiB); `owner` keeps the reservation mapped, and it
        // holds nothing but the guest's own memory.
        let slot = unsafe { GuestMemory::reservation(base, len as usize, owner) }?;
        Ok(Some(slot))
    }
}
