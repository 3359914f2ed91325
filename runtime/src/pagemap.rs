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
        m.protect(0, 4 * page, libc::PROT_READ | libc::PROT_WRITE)
            .unwrap();
        // SAFETY: the mapping is ours, read-write, 4 pages long.
        unsafe {
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
}
