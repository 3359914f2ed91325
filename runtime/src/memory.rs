//! Linear memories: one contiguous reservation per memory, accessed without bounds checks.
//!
//! ```text
//!   +-----------+--------------------------------------+-----------------------------+
//!   | guard     | 4 GiB reservation                    | guard region (2 GiB)        |
//!   | 1 page    | [accessible: current pages][PROT_NONE]| PROT_NONE                   |
//!   +-----------+--------------------------------------+-----------------------------+
//!               ^ base (never moves)
//! ```
//!
//! A 32-bit address plus a static offset below the guard size always lands inside the
//! reservation or its guard, so compiled code needs no bounds check: an access past the current
//! length faults and becomes a trap. `memory.grow` only changes protections.

use crate::mmap::{page_size, Mmap};
use crate::vm::VmDefinition;
use crate::ResourceError;
use fnvm_abi::{MemoryType, MEMORY_GUARD_SIZE, MEMORY_RESERVATION, WASM_PAGE_SIZE};

/// One linear memory.
#[derive(Debug)]
pub(crate) struct MemoryData {
    map: Mmap,
    /// What compiled code reads: base and current length in bytes.
    pub(crate) def: VmDefinition,
    pub(crate) ty: MemoryType,
    /// The lower of the declared maximum and the host cap.
    max_pages: u64,
}

impl MemoryData {
    /// Reserves a memory of type `ty`, with at most `host_cap` pages.
    pub(crate) fn new(ty: MemoryType, host_cap: u32) -> Result<Box<MemoryData>, ResourceError> {
        let declared = ty.limits.max.map_or(fnvm_abi::WASM_MAX_PAGES, u64::from);
        let max_pages = declared.min(host_cap as u64);
        if ty.limits.min as u64 > max_pages {
            return Err(ResourceError::MemoryTooLarge {
                needed: ty.limits.min.into(),
                limit: max_pages,
            });
        }
        let guard_below = page_size();
        let total = guard_below as u64 + MEMORY_RESERVATION + MEMORY_GUARD_SIZE;
        let map = Mmap::reserve(total as usize).map_err(ResourceError::Memory)?;
        let initial = ty.limits.min as u64 * WASM_PAGE_SIZE;
        // SAFETY: granting access to a fresh reservation nothing references yet.
        unsafe {
            map.protect(
                guard_below,
                initial as usize,
                libc::PROT_READ | libc::PROT_WRITE,
            )
        }
        .map_err(ResourceError::Memory)?;
        // SAFETY: the guard page is inside the mapping.
        let base = unsafe { map.as_ptr().add(guard_below) };
        Ok(Box::new(MemoryData {
            map,
            def: VmDefinition {
                base,
                length: initial,
            },
            ty,
            max_pages,
        }))
    }

    /// The memory of an instance slot over `map` (a view of guard page + reservation + guard
    /// inside the pool's mapping), empty until [`MemoryData::setup_in_slot`].
    pub(crate) fn in_slot(map: Mmap) -> Box<MemoryData> {
        // SAFETY: the view is at least one guard page long (the pool lays it out).
        let base = unsafe { map.as_ptr().add(page_size()) };
        Box::new(MemoryData {
            map,
            def: VmDefinition { base, length: 0 },
            ty: MemoryType {
                limits: fnvm_abi::Limits { min: 0, max: None },
            },
            max_pages: 0,
        })
    }

    /// Prepares a slot's memory for a new module: drops the previous module's pages, maps its
    /// image copy-on-write (if any) and makes the initial pages accessible. `image` holds the
    /// first `image.len()` bytes of the initial memory and fits in it.
    pub(crate) fn setup_in_slot(
        &mut self,
        ty: MemoryType,
        image: Option<&crate::pool::MemoryImage>,
    ) -> std::io::Result<()> {
        let guard = page_size();
        // SAFETY: `&mut self` covers the memory's bytes: no reference into the reservation
        // outlives this call's borrow, and no guest runs in the slot during set-up.
        unsafe {
            self.map
                .remap_anonymous(guard, MEMORY_RESERVATION as usize)?
        };
        self.def.length = 0;
        let initial = ty.limits.min as usize * WASM_PAGE_SIZE as usize;
        let mut mapped = 0;
        if let Some(image) = image {
            // SAFETY: as above.
            unsafe { self.map.map_file_private(guard, image.len(), image.fd())? };
            mapped = image.len();
        }
        // SAFETY: granting access.
        unsafe {
            self.map.protect(
                guard + mapped,
                initial.saturating_sub(mapped),
                libc::PROT_READ | libc::PROT_WRITE,
            )?
        };
        self.ty = ty;
        self.def.length = initial as u64;
        Ok(())
    }

    /// Sets the page cap of the next instance in this slot (the lower of the declared maximum
    /// and `cap`).
    pub(crate) fn set_cap(&mut self, cap: u64) {
        let declared = self
            .ty
            .limits
            .max
            .map_or(fnvm_abi::WASM_MAX_PAGES, u64::from);
        self.max_pages = declared.min(cap).max(self.ty.limits.min as u64);
    }

    /// Resets a slot's memory to its module's initial state and makes pages added by
    /// `memory.grow` inaccessible again. Costs in proportion to the pages the instance touched.
    /// Returns how many pages stay resident for the next instance.
    ///
    /// When the pages the instance wrote (found in `/proc/self/pagemap`: private copies) come
    /// to at most `keep_resident` bytes, they are restored in place, by copying the image page
    /// or zeroing, and stay resident, grown ones included (inaccessible until a later
    /// `memory.grow`): the next instance finds them mapped and takes no page fault for them
    /// (faults are the dominant cost of a short invocation, a few microseconds each under
    /// virtualisation). Otherwise every touched page is discarded with `MADV_DONTNEED` (image
    /// pages read as the image again, others as zero).
    ///
    /// `no_new_private`: the caller vouches that the instance made no page private (it took no
    /// page fault, see `crate::faults`). Then, if it did not grow the memory either, the pages
    /// the last reset left private are restored without reading the page tables.
    pub(crate) fn reset_in_slot(
        &mut self,
        image: Option<&crate::pool::MemoryImage>,
        keep_resident: usize,
        scratch: &mut crate::pagemap::Scratch,
        no_new_private: bool,
    ) -> std::io::Result<usize> {
        let page = page_size();
        let guard = page;
        let initial = self.ty.limits.min as usize * WASM_PAGE_SIZE as usize;
        let length = self.def.length as usize;
        // The pages the last reset left private are all the instance can have written, when
        // it made no new page private (see `crate::faults`) and stayed in the initial extent.
        let known = std::mem::replace(&mut scratch.private_known, false);
        let written = if known && no_new_private && length == initial {
            scratch.written.len()
        } else {
            scratch.scans += 1;
            let found = crate::pagemap::written_pages(
                self.def.base as usize,
                length,
                &mut scratch.written,
                &mut scratch.entries,
            );
            match found {
                Ok(()) => scratch.written.len(),
                Err(_) => usize::MAX,
            }
        };
        let kept = if written.saturating_mul(page) <= keep_resident {
            let image = image.map_or(&[][..], |i| i.bytes());
            let mut written_pages = std::mem::take(&mut scratch.written);
            let data = self.data_mut();
            for &i in &written_pages {
                let at = i * page;
                let dst = &mut data[at..at + page];
                match image.get(at..at + page) {
                    Some(src) if at < initial => dst.copy_from_slice(src),
                    _ => dst.fill(0),
                }
            }
            // Pages past the initial extent become inaccessible below; an instance reaches
            // them again only by growing, and then its reset scans.
            written_pages.retain(|&i| i * page < initial);
            scratch.written = written_pages;
            written
        } else {
            // SAFETY: `&mut self` covers the memory's bytes; no instance runs in the slot.
            unsafe { self.map.discard(guard, length)? };
            scratch.written.clear();
            0
        };
        if length > initial {
            // SAFETY: as above; the grown pages become inaccessible again.
            unsafe {
                self.map
                    .protect(guard + initial, length - initial, libc::PROT_NONE)?
            };
        }
        self.def.length = initial as u64;
        scratch.private_known = true;
        Ok(kept)
    }

    /// Drops every page of the slot's memory reservation that is still resident, so that
    /// the resident pages counted after the next instance are exactly the ones it touched.
    pub(crate) fn discard_kept(&mut self, kept_extent: usize) -> std::io::Result<()> {
        // SAFETY: `&mut self` covers the memory's bytes; no instance runs in the slot.
        unsafe { self.map.discard(page_size(), kept_extent) }
    }

    /// Number of 4 KiB pages of the accessible memory that are present in this process (touched
    /// by the instance or mapped in around a touched image page), read from
    /// `/proc/self/pagemap`.
    pub(crate) fn resident_pages(&self) -> std::io::Result<u64> {
        crate::pagemap::resident_pages(self.def.base as usize, self.def.length as usize)
    }

    /// Current size in pages.
    pub(crate) fn pages(&self) -> u64 {
        self.def.length / WASM_PAGE_SIZE
    }

    /// Grows by `delta` pages; returns the old size, or `None` beyond the limits.
    pub(crate) fn grow(&mut self, delta: u64) -> Option<u64> {
        let old = self.pages();
        let new = old.checked_add(delta)?;
        if new > self.max_pages {
            return None;
        }
        let start = page_size() + self.def.length as usize;
        let len = (delta * WASM_PAGE_SIZE) as usize;
        // SAFETY: granting access to pages past the current length.
        unsafe {
            self.map
                .protect(start, len, libc::PROT_READ | libc::PROT_WRITE)
                .ok()?
        };
        self.def.length = new * WASM_PAGE_SIZE;
        Some(old)
    }

    /// The accessible bytes.
    pub(crate) fn data_mut(&mut self) -> &mut [u8] {
        // SAFETY: `[base, base + length)` is mapped read-write and owned by this memory.
        unsafe { std::slice::from_raw_parts_mut(self.def.base, self.def.length as usize) }
    }

    /// Checks that `[offset, offset + len)` lies in the accessible bytes.
    pub(crate) fn check_range(&self, offset: u64, len: u64) -> bool {
        offset
            .checked_add(len)
            .is_some_and(|end| end <= self.def.length)
    }

    #[cfg(test)]
    pub(crate) fn reservation(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fnvm_abi::Limits;

    #[test]
    fn grow_respects_declared_and_host_limits() {
        let ty = MemoryType {
            limits: Limits {
                min: 1,
                max: Some(3),
            },
        };
        let mut m = MemoryData::new(ty, 65536).unwrap();
        assert!(m.reservation() as u64 >= MEMORY_RESERVATION + MEMORY_GUARD_SIZE);
        assert_eq!(m.grow(1), Some(1));
        assert_eq!(m.grow(2), None);
        assert_eq!(m.grow(1), Some(2));
        assert_eq!(m.pages(), 3);
        m.data_mut()[3 * 65536 - 1] = 7;
        let mut capped = MemoryData::new(
            MemoryType {
                limits: Limits { min: 1, max: None },
            },
            2,
        )
        .unwrap();
        assert_eq!(capped.grow(1), Some(1));
        assert_eq!(capped.grow(1), None);
        assert!(MemoryData::new(
            MemoryType {
                limits: Limits { min: 5, max: None }
            },
            2
        )
        .is_err());
    }
}
