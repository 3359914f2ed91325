//! Owned anonymous mappings: reserve address space, commit and protect ranges, unmap on drop.
//!
//! Changing what is mapped at an address (discarding pages, remapping, changing protections)
//! invalidates whatever references point into it, so those operations are `unsafe fn`s whose
//! callers promise that nothing borrows the range: the pool (whose slot owner is the only user
//! of a slot's ranges), memories (whose `&mut self` covers their bytes) and guest stacks
//! (mapped before anything runs on them).

use std::io;
use std::ptr::NonNull;

/// An anonymous private mapping, unmapped on drop.
#[derive(Debug)]
pub(crate) struct Mmap {
    ptr: NonNull<u8>,
    len: usize,
    /// Whether dropping this value unmaps it (false for views into a larger mapping, such as an
    /// instance slot's parts inside the pool's reservation).
    owned: bool,
}

// SAFETY: the mapping is plain memory owned by this value; sharing the pointer across threads is
// no different from sharing a Box<[u8]>.
unsafe impl Send for Mmap {}
// SAFETY: the only methods on `&self` that touch the mapped memory or change the mapping are
// `unsafe fn`s whose callers guarantee exclusive use of the range they touch; everything else
// only reads the pointer and length.
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
            owned: true,
        })
    }

    /// A view of `[start, start + len)` of this mapping (page aligned), which does not unmap
    /// anything when dropped.
    ///
    /// # Safety
    /// The view must not outlive this mapping, and its users must not race with other users of
    /// the same range.
    pub(crate) unsafe fn view(&self, start: usize, len: usize) -> io::Result<Mmap> {
        self.check_range(start, len, "view")?;
        // SAFETY: in bounds (checked above).
        let p = unsafe { self.ptr.as_ptr().add(start) };
        Ok(Mmap {
            ptr: NonNull::new(p).ok_or_else(|| io::Error::other("null view"))?,
            len,
            owned: false,
        })
    }

    /// Gives `[start, start + len)` back to the kernel: private anonymous pages read as zero
    /// again, private file pages as the file's contents. Protections are unchanged.
    ///
    /// # Safety
    /// Nothing may hold a reference into the range or access it concurrently: its contents
    /// change under it.
    pub(crate) unsafe fn discard(&self, start: usize, len: usize) -> io::Result<()> {
        self.check_range(start, len, "discard range")?;
        if len == 0 {
            return Ok(());
        }
        // SAFETY: the range lies inside our own mapping (checked above); MADV_DONTNEED only
        // drops page contents, which nothing references (the caller's contract).
        let rc = unsafe {
            libc::madvise(
                self.ptr.as_ptr().add(start).cast(),
                len,
                libc::MADV_DONTNEED,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Replaces `[start, start + len)` with fresh inaccessible, unpopulated anonymous memory,
    /// dropping whatever was mapped there (a memory image, pages of a previous instance).
    ///
    /// # Safety
    /// As for [`Mmap::discard`]: nothing may reference or use the range.
    pub(crate) unsafe fn remap_anonymous(&self, start: usize, len: usize) -> io::Result<()> {
        // SAFETY: the caller's contract.
        unsafe { self.remap(start, len, libc::PROT_NONE, None) }
    }

    /// Maps the first `len` bytes of `fd` copy-on-write at `start`, read-write.
    ///
    /// # Safety
    /// As for [`Mmap::discard`]: nothing may reference or use the range.
    pub(crate) unsafe fn map_file_private(
        &self,
        start: usize,
        len: usize,
        fd: std::os::fd::BorrowedFd<'_>,
    ) -> io::Result<()> {
        // SAFETY: the caller's contract.
        unsafe { self.remap(start, len, libc::PROT_READ | libc::PROT_WRITE, Some(fd)) }
    }

    /// # Safety
    /// As for [`Mmap::discard`].
    unsafe fn remap(
        &self,
        start: usize,
        len: usize,
        prot: i32,
        fd: Option<std::os::fd::BorrowedFd<'_>>,
    ) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        self.check_range(start, len, "remap range")?;
        if len == 0 {
            return Ok(());
        }
        let (flags, raw_fd) = match fd {
            Some(fd) => (libc::MAP_PRIVATE | libc::MAP_FIXED, fd.as_raw_fd()),
            None => (
                libc::MAP_PRIVATE | libc::MAP_FIXED | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
            ),
        };
        // SAFETY: MAP_FIXED replaces pages inside our own mapping only (range checked above);
        // nothing references its old contents (the caller's contract).
        let p = unsafe {
            libc::mmap(
                self.ptr.as_ptr().add(start).cast(),
                len,
                prot,
                flags,
                raw_fd,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Maps the first `len` bytes of `fd` shared and read-only.
    pub(crate) fn map_readonly(fd: std::os::fd::BorrowedFd<'_>, len: usize) -> io::Result<Mmap> {
        Self::map_file_with(fd, 0, len, libc::PROT_READ, libc::MAP_SHARED)
    }

    /// Maps `len` bytes of `fd` from `offset` (page aligned) privately with protection `prot`
    /// (never writable: the file is only read).
    pub(crate) fn map_file(
        fd: std::os::fd::BorrowedFd<'_>,
        offset: usize,
        len: usize,
        prot: i32,
    ) -> io::Result<Mmap> {
        if prot & libc::PROT_WRITE != 0 {
            return Err(io::Error::other("file mappings are read-only"));
        }
        Self::map_file_with(fd, offset, len, prot, libc::MAP_PRIVATE)
    }

    /// Maps the first `len` bytes of `fd` shared and read-write (to fill a file we own).
    pub(crate) fn map_shared_rw(fd: std::os::fd::BorrowedFd<'_>, len: usize) -> io::Result<Mmap> {
        Self::map_file_with(
            fd,
            0,
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
        )
    }

    fn map_file_with(
        fd: std::os::fd::BorrowedFd<'_>,
        offset: usize,
        len: usize,
        prot: i32,
        flags: i32,
    ) -> io::Result<Mmap> {
        use std::os::fd::AsRawFd;
        if !offset.is_multiple_of(page_size()) {
            return Err(io::Error::other("file mapping offset is not page aligned"));
        }
        let off =
            libc::off_t::try_from(offset).map_err(|_| io::Error::other("offset too large"))?;
        // SAFETY: a fresh mapping of a file at an address of the kernel's choosing touches no
        // existing memory.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len.max(1),
                prot,
                flags,
                fd.as_raw_fd(),
                off,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Mmap {
            ptr: NonNull::new(ptr.cast()).ok_or_else(|| io::Error::other("mmap returned null"))?,
            len: len.max(1),
            owned: true,
        })
    }

    /// Checks that `[start, start + len)` is a page-aligned range inside the mapping.
    fn check_range(&self, start: usize, len: usize, what: &str) -> io::Result<()> {
        if !start.is_multiple_of(page_size()) || start.checked_add(len).is_none_or(|e| e > self.len)
        {
            return Err(io::Error::other(format!("{what} outside the mapping")));
        }
        Ok(())
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
    ///
    /// # Safety
    /// When access is taken away, nothing may reference the range (a reference must stay
    /// dereferenceable); granting access is always sound.
    pub(crate) unsafe fn protect(&self, start: usize, len: usize, prot: i32) -> io::Result<()> {
        self.check_range(start, len, "protect range")?;
        if len == 0 {
            return Ok(());
        }
        // SAFETY: the range lies inside our own mapping (checked above); no reference into it
        // loses access (the caller's contract).
        let rc = unsafe { libc::mprotect(self.ptr.as_ptr().add(start).cast(), len, prot) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

impl Drop for Mmap {
    fn drop(&mut self) {
        if !self.owned {
            return;
        }
        // SAFETY: we own the mapping and nothing refers to it once its owner is dropped.
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}
