//! Reading `/proc/self/pagemap`: which pages of a range are present in this process, and
//! whether a present page is a private copy of our own (written, or faulted in as fresh zero
//! memory) rather than a shared page of a file or the zero page. The pool uses it to count the
//! pages an instance touched (`currentPages`) and to reset exactly the pages it wrote.

use crate::mmap::page_size;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::OnceLock;

/// Entry bit: the page is present in RAM.
const PRESENT: u64 = 1 << 63;
/// Entry bit: the page is swapped out.
const SWAPPED: u64 = 1 << 62;
/// Entry bit: the page is file-backed or shared anonymous memory.
const FILE_OR_SHARED: u64 = 1 << 61;
/// Entry bit: the page is mapped exclusively by this process (a private copy).
const EXCLUSIVE: u64 = 1 << 56;

/// Buffers reused across resets of one slot.
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    /// Pages (indexes from the memory's base) a reset found written; after a reset that set
    /// `private_known`, every private page of the memory's initial extent is among them.
    pub(crate) written: Vec<usize>,
    pub(crate) entries: Vec<PageEntry>,
    /// Whether `written` still names every private page of the memory's initial extent:
    /// true after a reset, false once the memory is mapped anew or pages are dropped.
    pub(crate) private_known: bool,
    /// Times the page tables were read to find written pages.
    pub(crate) scans: u64,
}

/// One pagemap entry.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PageEntry(u64);

impl PageEntry {
    /// Present in RAM or swapped out: the process has touched it.
    pub(crate) fn resident(self) -> bool {
        self.0 & (PRESENT | SWAPPED) != 0
    }

    /// A private, exclusively mapped anonymous page (a copy-on-write copy of an image page or
    /// a written zero page), or a swapped one: its contents may differ from the initial ones.
    /// Pages that were only read (shared image pages, the zero page) do not qualify.
    pub(crate) fn maybe_written(self) -> bool {
        self.0 & SWAPPED != 0
            || (self.0 & PRESENT != 0 && self.0 & EXCLUSIVE != 0 && self.0 & FILE_OR_SHARED == 0)
    }
}

fn pagemap() -> io::Result<&'static File> {
    static FILE: OnceLock<Result<File, String>> = OnceLock::new();
    FILE.get_or_init(|| File::open("/proc/self/pagemap").map_err(|e| e.to_string()))
        .as_ref()
        .map_err(|e| io::Error::other(format!("opening /proc/self/pagemap: {e}")))
}

/// Fills `out` with the entries of the pages of `[addr, addr + len)` (page aligned).
pub(crate) fn read(addr: usize, len: usize, out: &mut Vec<PageEntry>) -> io::Result<()> {
    let page = page_size();
    let first = addr / page;
    let count = len.div_ceil(page);
    out.clear();
    let f = pagemap()?;
    let mut buf = [0u8; 8 * 512];
    let mut done = 0;
    while done < count {
        let n = (count - done).min(512);
        let bytes = &mut buf[..n * 8];
        f.read_exact_at(bytes, ((first + done) * 8) as u64)?;
        out.extend(bytes.chunks_exact(8).map(|e| {
            PageEntry(u64::from_le_bytes([
                e[0], e[1], e[2], e[3], e[4], e[5], e[6], e[7],
            ]))
        }));
        done += n;
    }
    Ok(())
}

/// Fills `out` with the indexes (from `addr`, in pages) of the pages of `[addr, addr + len)`
/// that may have been written ([`PageEntry::maybe_written`]). Uses the `PAGEMAP_SCAN` ioctl
/// (Linux 6.7+), which walks the page tables in the kernel and returns only matching ranges,
/// and falls back to reading every entry where it is missing.
pub(crate) fn written_pages(
    addr: usize,
    len: usize,
    out: &mut Vec<usize>,
    scratch: &mut Vec<PageEntry>,
) -> io::Result<()> {
    out.clear();
    if scan::supported() {
        match scan::written(addr, len, out) {
            Ok(()) => return Ok(()),
            Err(e)
                if e.raw_os_error() == Some(libc::ENOTTY)
                    || e.raw_os_error() == Some(libc::EINVAL) =>
            {
                scan::unsupported();
                out.clear();
            }
            Err(e) => return Err(e),
        }
    }
    read(addr, len, scratch)?;
    out.extend(
        scratch
            .iter()
            .enumerate()
            .filter(|(_, e)| e.maybe_written())
            .map(|(i, _)| i),
    );
    Ok(())
}

/// The `PAGEMAP_SCAN` ioctl on `/proc/self/pagemap` (linux/fs.h).
mod scan {
    use super::pagemap;
    use crate::mmap::page_size;
    use std::io;
    use std::os::fd::AsRawFd;
    use std::sync::atomic::{AtomicBool, Ordering};

    const PAGE_IS_FILE: u64 = 1 << 2;
    const PAGE_IS_PRESENT: u64 = 1 << 3;
    const PAGE_IS_SWAPPED: u64 = 1 << 4;
    const PAGE_IS_PFNZERO: u64 = 1 << 5;

    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct PageRegion {
        start: u64,
        end: u64,
        categories: u64,
    }

    #[repr(C)]
    struct PmScanArg {
        size: u64,
        flags: u64,
        start: u64,
        end: u64,
        walk_end: u64,
        vec: u64,
        vec_len: u64,
        max_pages: u64,
        category_inverted: u64,
        category_mask: u64,
        category_anyof_mask: u64,
        return_mask: u64,
    }

    /// `_IOWR('f', 16, struct pm_scan_arg)`.
    const PAGEMAP_SCAN: u64 =
        (3 << 30) | ((std::mem::size_of::<PmScanArg>() as u64) << 16) | ((b'f' as u64) << 8) | 16;

    static UNSUPPORTED: AtomicBool = AtomicBool::new(false);

    pub(super) fn supported() -> bool {
        !UNSUPPORTED.load(Ordering::Relaxed)
    }

    pub(super) fn unsupported() {
        UNSUPPORTED.store(true, Ordering::Relaxed);
    }

    /// Pages present or swapped that are neither file pages nor the zero page: private copies.
    pub(super) fn written(addr: usize, len: usize, out: &mut Vec<usize>) -> io::Result<()> {
        let f = pagemap()?;
        let page = page_size() as u64;
        let end = (addr + len) as u64;
        let mut regions = [PageRegion::default(); 64];
        let mut start = addr as u64;
        while start < end {
            let mut arg = PmScanArg {
                size: std::mem::size_of::<PmScanArg>() as u64,
                flags: 0,
                start,
                end,
                walk_end: 0,
                vec: regions.as_mut_ptr() as u64,
                vec_len: regions.len() as u64,
                max_pages: 0,
                category_inverted: PAGE_IS_FILE | PAGE_IS_PFNZERO,
                category_mask: PAGE_IS_FILE | PAGE_IS_PFNZERO,
                category_anyof_mask: PAGE_IS_PRESENT | PAGE_IS_SWAPPED,
                return_mask: PAGE_IS_PRESENT | PAGE_IS_SWAPPED,
            };
            // SAFETY: the ioctl reads `arg` and writes at most `vec_len` regions into
            // `regions`, both alive for the call; it only inspects our own page tables.
            let n = unsafe { libc::ioctl(f.as_raw_fd(), PAGEMAP_SCAN as _, &mut arg) };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            for r in &regions[..n as usize] {
                let (a, b) = (r.start.max(addr as u64), r.end.min(end));
                out.extend(
                    ((a - addr as u64) / page..(b.max(a) - addr as u64) / page).map(|p| p as usize),
                );
            }
            if arg.walk_end <= start {
                return Err(io::Error::other("PAGEMAP_SCAN made no progress"));
            }
            start = arg.walk_end;
        }
        Ok(())
    }
}

/// Number of pages of `[addr, addr + len)` the process has touched.
pub(crate) fn resident_pages(addr: usize, len: usize) -> io::Result<u64> {
    let mut entries = Vec::new();
    read(addr, len, &mut entries)?;
    Ok(entries.iter().filter(|e| e.resident()).count() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mmap::Mmap;

    #[test]
    fn tells_written_pages_from_read_and_untouched_ones() {
        let page = page_size();
        let m = Mmap::reserve(4 * page).unwrap();
        // SAFETY: the mapping is ours, nothing references it; then read-write, 4 pages long.
        unsafe {
            m.protect(0, 4 * page, libc::PROT_READ | libc::PROT_WRITE)
                .unwrap();
            m.as_ptr().write(1); // page 0 written
            let _ = m.as_ptr().add(2 * page).read_volatile(); // page 2 only read
        }
        let mut e = Vec::new();
        read(m.as_ptr() as usize, 4 * page, &mut e).unwrap();
        assert!(e[0].resident() && e[0].maybe_written());
        assert!(!e[1].resident() && !e[1].maybe_written());
        assert!(!e[2].maybe_written(), "a read maps the shared zero page");
        assert!(!e[3].resident());
        assert_eq!(resident_pages(m.as_ptr() as usize, 4 * page).unwrap(), 2);
    }

    /// The kernel-side scan and the entry-by-entry reading agree, on anonymous memory and on a
    /// private file mapping (an image) with pages written, only read, and untouched.
    #[test]
    fn scan_and_read_agree() {
        let page = page_size();
        let n = 300;
        let img = crate::pool::MemoryImage::new(64 * page, |b| b[..100].fill(7)).unwrap();
        let m = Mmap::reserve(n * page).unwrap();
        // SAFETY: a fresh mapping nothing references.
        unsafe {
            m.map_file_private(0, 64 * page, img.fd()).unwrap();
            m.protect(
                64 * page,
                (n - 64) * page,
                libc::PROT_READ | libc::PROT_WRITE,
            )
            .unwrap();
        }
        for i in 0..n {
            // SAFETY: inside the mapping, read-write.
            unsafe {
                match i % 5 {
                    0 | 3 => m.as_ptr().add(i * page + 8).write(1),
                    1 => {
                        let _ = m.as_ptr().add(i * page).read_volatile();
                    }
                    _ => {}
                }
            }
        }
        let (mut scanned, mut scratch) = (Vec::new(), Vec::new());
        written_pages(m.as_ptr() as usize, n * page, &mut scanned, &mut scratch).unwrap();
        read(m.as_ptr() as usize, n * page, &mut scratch).unwrap();
        let by_read: Vec<usize> = (0..n).filter(|&i| scratch[i].maybe_written()).collect();
        let expected: Vec<usize> = (0..n).filter(|i| i % 5 == 0 || i % 5 == 3).collect();
        assert_eq!(by_read, expected);
        assert_eq!(scanned, expected, "scan supported: {}", scan::supported());
        // On kernels that have PAGEMAP_SCAN (6.7+) the scan must have been the one used.
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
        let mut v = release
            .split(|c: char| !c.is_ascii_digit())
            .map(|x| x.parse::<u32>());
        let (major, minor) = (v.next(), v.next());
        if let (Some(Ok(major)), Some(Ok(minor))) = (major, minor) {
            if (major, minor) >= (6, 7) {
                assert!(scan::supported(), "PAGEMAP_SCAN refused on {release}");
            }
        }
    }
}
