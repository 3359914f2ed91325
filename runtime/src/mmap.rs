//! Owned anonymous mappings: reserve address space, commit and protect ranges, unmap on drop.

use std::io;
use std::ptr::NonNull;

/// An anonymous private mapping, unmapped on drop.
#[derive(Debug)]
pub(crate) struct Mmap {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain memory owned by this value; sharing the pointer across threads is
// no different from sharing a Box<[u8]>.
unsafe impl Send for Mmap {}
// SAFETY: see above; all mutation goes through &mut or raw pointers handed out under the
// runtime's own synchronisation.
unsafe impl Sync for Mmap {}

pub(crate) fn page_size() -> usize {
    4096
}

impl Mmap {
    /// Reserves `len` bytes of inaccessible address space (no memory is committed).
    pub(crate) fn reserve(len: usize) -> io::Result<Mmap> {
        // SAFETY: a fresh anonymous mapping at an address of the kernel's choosing touches no
        // existing memory.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Mmap {
            ptr: NonNull::new(ptr.cast()).ok_or_else(|| io::Error::other("mmap returned null"))?,
            len,
        })
    }

    /// Start of the mapping.
    pub(crate) fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Length of the mapping.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Changes the protection of `[start, start + len)` (offsets into the mapping, page aligned).
    pub(crate) fn protect(&self, start: usize, len: usize, prot: i32) -> io::Result<()> {
        if !start.is_multiple_of(page_size()) || start.checked_add(len).is_none_or(|e| e > self.len)
        {
            return Err(io::Error::other("protect range outside the mapping"));
        }
        if len == 0 {
            return Ok(());
        }
        // SAFETY: the range lies inside our own mapping (checked above).
        let rc = unsafe { libc::mprotect(self.ptr.as_ptr().add(start).cast(), len, prot) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

impl Drop for Mmap {
    fn drop(&mut self) {
        // SAFETY: we own the mapping and nothing refers to it once its owner is dropped.
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}
