//! Memory images: a module's initial linear memory (its data segments applied), built once per
//! prepared module into a sealed memfd that instance slots map copy-on-write. An instance then
//! pays nothing for its data segments: pages it never touches are never copied, and resetting a
//! slot with `MADV_DONTNEED` brings the image's contents back.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, FromRawFd};

/// A sealed, read-only-by-contract file holding a memory's initial bytes, page aligned.
#[derive(Debug)]
pub(crate) struct MemoryImage {
    file: File,
    len: usize,
    /// The image mapped read-only (shared), to restore pages from without a system call.
    view: crate::mmap::Mmap,
}

impl MemoryImage {
    /// Builds an image of `len` bytes (a multiple of the page size) whose contents `fill`
    /// writes into the zeroed bytes it is given.
    pub(crate) fn new(len: usize, fill: impl FnOnce(&mut [u8])) -> io::Result<MemoryImage> {
        debug_assert!(len.is_multiple_of(crate::mmap::page_size()));
        // SAFETY: memfd_create with a static NUL-terminated name; the returned fd is new and
        // owned by nobody else.
        let fd = unsafe {
            libc::memfd_create(
                c"fnvm-memory-image".as_ptr(),
                libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor we own.
        let file = unsafe { File::from_raw_fd(fd) };
        file.set_len(len as u64)?;
        // Filled through a temporary shared mapping: modules can have tens of thousands of
        // segments (Go's linker emits one per symbol), one write each would be a system call
        // each.
        {
            let map = crate::mmap::Mmap::map_shared_rw(file.as_fd(), len)?;
            // SAFETY: the mapping is `len` writable bytes of a file only we have, and nothing
            // else references it while `fill` runs.
            let bytes = unsafe { std::slice::from_raw_parts_mut(map.as_ptr(), len) };
            fill(bytes);
        }
        // Seal it: slots map it privately, and nothing may change or resize it afterwards.
        let seals =
            libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE | libc::F_SEAL_SEAL;
        // SAFETY: fcntl on our own descriptor.
        if unsafe { libc::fcntl(fd, libc::F_ADD_SEALS, seals) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let view = crate::mmap::Mmap::map_readonly(file.as_fd(), len)?;
        Ok(MemoryImage { file, len, view })
    }

    /// The image's bytes.
    pub(crate) fn bytes(&self) -> &[u8] {
        // SAFETY: the view maps `len` bytes of the sealed file read-only; seals forbid any
        // change to them for the file's lifetime.
        unsafe { std::slice::from_raw_parts(self.view.as_ptr(), self.len) }
    }

    /// Length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The file to map.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileExt;

    #[test]
    fn image_holds_segments_and_is_sealed() {
        let img = MemoryImage::new(8192, |m| {
            m[10..13].copy_from_slice(b"abc");
            m[5000..5003].copy_from_slice(b"xyz");
        })
        .unwrap();
        let mut buf = [0u8; 3];
        img.file.read_exact_at(&mut buf, 10).unwrap();
        assert_eq!(&buf, b"abc");
        img.file.read_exact_at(&mut buf, 5000).unwrap();
        assert_eq!(&buf, b"xyz");
        assert!(
            img.file.write_all_at(b"q", 0).is_err(),
            "sealed against writes"
        );
        assert!(img.file.set_len(4096).is_err(), "sealed against shrinking");
        assert_eq!(&img.bytes()[10..13], b"abc");
        assert_eq!(img.bytes().len(), 8192);
    }
}
