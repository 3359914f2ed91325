//! Checked access to a guest's linear memory.
//!
//! Every pointer and length a hostcall receives is guest-controlled. [`GuestMemory`] turns each
//! `(ptr, len)` into a host range only after checking that `ptr + len` neither overflows nor
//! runs past the accessible bytes; anything else is [`Errno::Fault`]. Nothing here slices
//! unchecked or panics on guest input, so hostcalls can use these accessors freely.
//! Alignment is not enforced: wasm itself allows unaligned access and the checks that matter
//! for safety are the bounds.

use crate::errno::Errno;
use crate::types::size;
use smallvec::SmallVec;
use std::ops::Range;

/// Upper bound on the iovecs one read or write call processes (Linux's `IOV_MAX`). Larger
/// arrays are legal but are served partially, as a short read or write, so a guest cannot make
/// the host allocate in proportion to a huge array.
pub const MAX_IOVECS: usize = 1024;

/// Iovecs kept without an allocation: a write of stdio from any libc uses one or two.
pub const INLINE_IOVECS: usize = 4;

/// The iovecs of one call.
pub type Iovecs = SmallVec<[Iovec; INLINE_IOVECS]>;

/// The guest's linear memory as a hostcall sees it.
pub struct GuestMemory<'a> {
    bytes: &'a mut [u8],
}

impl std::fmt::Debug for GuestMemory<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The contents can be gigabytes; the size is what is useful.
        f.debug_struct("GuestMemory")
            .field("len", &self.bytes.len())
            .finish()
    }
}

/// One `iovec`/`ciovec`: a buffer address and length in guest memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Iovec {
    /// Guest address of the buffer.
    pub ptr: u32,
    /// Length of the buffer.
    pub len: u32,
}

impl<'a> GuestMemory<'a> {
    /// Wraps the accessible bytes of a linear memory (empty if the guest has none).
    pub fn new(bytes: &'a mut [u8]) -> Self {
        GuestMemory { bytes }
    }

    /// Accessible size in bytes.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether no byte is accessible.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The host range of `len` bytes at `ptr`, if all of it is accessible.
    pub fn range(&self, ptr: u32, len: u32) -> Result<Range<usize>, Errno> {
        let start = ptr as usize;
        let end = start.checked_add(len as usize).ok_or(Errno::Fault)?;
        if end > self.bytes.len() {
            return Err(Errno::Fault);
        }
        Ok(start..end)
    }

    /// Like [`range`](Self::range) for `count` elements of `elem` bytes each (an array).
    pub fn array_range(&self, ptr: u32, count: u32, elem: u32) -> Result<Range<usize>, Errno> {
        let len = (count as usize)
            .checked_mul(elem as usize)
            .ok_or(Errno::Fault)?;
        let start = ptr as usize;
        let end = start.checked_add(len).ok_or(Errno::Fault)?;
        if end > self.bytes.len() {
            return Err(Errno::Fault);
        }
        Ok(start..end)
    }

    /// Checks that `len` bytes at `ptr` are accessible, without touching them. Hostcalls call
    /// this on their output pointers before doing anything with side effects, so a bad result
    /// pointer fails the call before, not after, the host work.
    pub fn check(&self, ptr: u32, len: u32) -> Result<(), Errno> {
        self.range(ptr, len).map(drop)
    }

    /// `len` bytes at `ptr`.
    pub fn slice(&self, ptr: u32, len: u32) -> Result<&[u8], Errno> {
        let r = self.range(ptr, len)?;
        self.bytes.get(r).ok_or(Errno::Fault)
    }

    /// `len` bytes at `ptr`, writable.
    pub fn slice_mut(&mut self, ptr: u32, len: u32) -> Result<&mut [u8], Errno> {
        let r = self.range(ptr, len)?;
        self.bytes.get_mut(r).ok_or(Errno::Fault)
    }

    /// `N` bytes at `ptr` as an array.
    fn read_array<const N: usize>(&self, ptr: u32) -> Result<[u8; N], Errno> {
        let s = self.slice(ptr, N as u32)?;
        let mut out = [0u8; N];
        out.copy_from_slice(s);
        Ok(out)
    }

    /// The byte at `ptr`.
    pub fn read_u8(&self, ptr: u32) -> Result<u8, Errno> {
        Ok(self.read_array::<1>(ptr)?[0])
    }

    /// The little-endian `u16` at `ptr`.
    pub fn read_u16(&self, ptr: u32) -> Result<u16, Errno> {
        Ok(u16::from_le_bytes(self.read_array(ptr)?))
    }

    /// The little-endian `u32` at `ptr`.
    pub fn read_u32(&self, ptr: u32) -> Result<u32, Errno> {
        Ok(u32::from_le_bytes(self.read_array(ptr)?))
    }

    /// The little-endian `u64` at `ptr`.
    pub fn read_u64(&self, ptr: u32) -> Result<u64, Errno> {
        Ok(u64::from_le_bytes(self.read_array(ptr)?))
    }

    /// Stores `bytes` at `ptr`.
    pub fn write_bytes(&mut self, ptr: u32, bytes: &[u8]) -> Result<(), Errno> {
        let len = u32::try_from(bytes.len()).map_err(|_| Errno::Fault)?;
        self.slice_mut(ptr, len)?.copy_from_slice(bytes);
        Ok(())
    }

    /// Stores a byte at `ptr`.
    pub fn write_u8(&mut self, ptr: u32, v: u8) -> Result<(), Errno> {
        self.write_bytes(ptr, &[v])
    }

    /// Stores a little-endian `u16` at `ptr`.
    pub fn write_u16(&mut self, ptr: u32, v: u16) -> Result<(), Errno> {
        self.write_bytes(ptr, &v.to_le_bytes())
    }

    /// Stores a little-endian `u32` at `ptr`.
    pub fn write_u32(&mut self, ptr: u32, v: u32) -> Result<(), Errno> {
        self.write_bytes(ptr, &v.to_le_bytes())
    }

    /// Stores a little-endian `u64` at `ptr`.
    pub fn write_u64(&mut self, ptr: u32, v: u64) -> Result<(), Errno> {
        self.write_bytes(ptr, &v.to_le_bytes())
    }

    /// The UTF-8 string of `len` bytes at `ptr`: `EFAULT` if out of bounds, `EILSEQ` if not
    /// UTF-8 (what wasmtime answers for an invalid path string).
    pub fn read_str(&self, ptr: u32, len: u32) -> Result<&str, Errno> {
        std::str::from_utf8(self.slice(ptr, len)?).map_err(|_| Errno::Ilseq)
    }

    /// The `i`-th entry of the iovec array at `array` (whose bounds the caller checked with
    /// [`iovecs`](Self::iovecs); checked again here anyway).
    fn read_iovec(&self, array: u32, i: u32) -> Result<Iovec, Errno> {
        let at = i
            .checked_mul(size::IOVEC)
            .and_then(|o| array.checked_add(o))
            .ok_or(Errno::Fault)?;
        let ptr = self.read_u32(at)?;
        let len = self.read_u32(at.checked_add(4).ok_or(Errno::Fault)?)?;
        Ok(Iovec { ptr, len })
    }

    /// The first [`MAX_IOVECS`] entries of the iovec array of `count` entries at `array`, each
    /// of whose buffers is in bounds. Empty buffers are skipped. Fails with `EFAULT` if the
    /// array or a used buffer is out of bounds.
    pub fn iovecs(&self, array: u32, count: u32) -> Result<Iovecs, Errno> {
        self.array_range(array, count, size::IOVEC)?;
        let used = (count as usize).min(MAX_IOVECS);
        let mut out = Iovecs::with_capacity(used);
        for i in 0..used as u32 {
            let iov = self.read_iovec(array, i)?;
            self.check(iov.ptr, iov.len)?;
            if iov.len != 0 {
                out.push(iov);
            }
        }
        Ok(out)
    }

    /// The buffers of `iovs` as slices (they may overlap; they are only read).
    pub fn gather(&self, iovs: &[Iovec]) -> Result<SmallVec<[&[u8]; INLINE_IOVECS]>, Errno> {
        iovs.iter().map(|v| self.slice(v.ptr, v.len)).collect()
    }

    /// Copies `src` into the buffers of `iovs` in order; returns how many bytes were stored.
    pub fn scatter(&mut self, iovs: &[Iovec], mut src: &[u8]) -> Result<usize, Errno> {
        let mut total = 0;
        for v in iovs {
            if src.is_empty() {
                break;
            }
            let n = (v.len as usize).min(src.len());
            let (head, tail) = src.split_at(n);
            self.slice_mut(v.ptr, n as u32)?.copy_from_slice(head);
            total += n;
            src = tail;
        }
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds() {
        let mut buf = vec![0u8; 16];
        let mut m = GuestMemory::new(&mut buf);
        assert!(m.check(0, 16).is_ok());
        assert!(m.check(16, 0).is_ok());
        assert_eq!(m.check(17, 0), Err(Errno::Fault));
        assert_eq!(m.check(15, 2), Err(Errno::Fault));
        assert_eq!(m.check(u32::MAX, u32::MAX), Err(Errno::Fault));
        assert_eq!(m.read_u64(9), Err(Errno::Fault));
        assert_eq!(m.write_u32(13, 1), Err(Errno::Fault));
        m.write_u32(12, 0xdead_beef).unwrap();
        assert_eq!(m.read_u32(12), Ok(0xdead_beef));
        assert_eq!(m.read_u16(12), Ok(0xbeef));
        assert_eq!(m.array_range(0, u32::MAX, 48), Err(Errno::Fault));
    }

    #[test]
    fn empty_memory() {
        let mut buf: Vec<u8> = Vec::new();
        let m = GuestMemory::new(&mut buf);
        assert!(m.is_empty());
        assert!(m.check(0, 0).is_ok());
        assert_eq!(m.read_u8(0), Err(Errno::Fault));
    }

    #[test]
    fn strings() {
        let mut buf = b"ok\xffzz".to_vec();
        let m = GuestMemory::new(&mut buf);
        assert_eq!(m.read_str(0, 2), Ok("ok"));
        assert_eq!(m.read_str(0, 3), Err(Errno::Ilseq));
        assert_eq!(m.read_str(4, 2), Err(Errno::Fault));
    }

    #[test]
    fn iovec_arrays() {
        let mut buf = vec![0u8; 64];
        let mut m = GuestMemory::new(&mut buf);
        // [ (32, 4), (0, 0), (40, 8) ]
        m.write_u32(0, 32).unwrap();
        m.write_u32(4, 4).unwrap();
        m.write_u32(16, 40).unwrap();
        m.write_u32(20, 8).unwrap();
        let v = m.iovecs(0, 3).unwrap();
        assert_eq!(
            &v[..],
            [Iovec { ptr: 32, len: 4 }, Iovec { ptr: 40, len: 8 }]
        );
        assert_eq!(m.scatter(&v, b"abcdefg").unwrap(), 7);
        assert_eq!(m.slice(32, 4).unwrap(), b"abcd");
        assert_eq!(m.slice(40, 3).unwrap(), b"efg");
        // A buffer running off the end.
        m.write_u32(20, 30).unwrap();
        assert_eq!(m.iovecs(0, 3), Err(Errno::Fault));
        // An array running off the end.
        assert_eq!(m.iovecs(60, 1), Err(Errno::Fault));
        assert_eq!(m.iovecs(0, u32::MAX), Err(Errno::Fault));
    }
}
