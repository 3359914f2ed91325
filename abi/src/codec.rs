//! A small, bounds-checked binary codec for artifact metadata.
//!
//! Everything is little-endian; sequences carry a `u32` count that is checked against the bytes
//! left before anything is allocated, so a hostile count cannot make the decoder reserve memory it
//! cannot fill.

use thiserror::Error;

/// Why metadata could not be decoded.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum CodecError {
    /// The input ended inside a value.
    #[error("metadata truncated at byte {offset} while reading {what}")]
    Truncated {
        /// Byte offset where more input was needed.
        offset: usize,
        /// What was being read.
        what: &'static str,
    },
    /// A tag or value that no encoder produces.
    #[error("invalid {what} at byte {offset}")]
    Invalid {
        /// Byte offset of the value.
        offset: usize,
        /// What was being read.
        what: &'static str,
    },
}

/// Appends encoded values to a byte vector.
#[derive(Debug, Default)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// An empty writer.
    pub fn new() -> Writer {
        Writer::default()
    }
    /// The bytes written so far.
    pub fn finish(self) -> Vec<u8> {
        self.buf
    }
    /// Writes one byte.
    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    /// Writes a u32.
    pub fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    /// Writes a u64.
    pub fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    /// Writes a length-prefixed byte string.
    pub fn bytes(&mut self, v: &[u8]) {
        self.len(v.len());
        self.buf.extend_from_slice(v);
    }
    /// Writes a length-prefixed UTF-8 string.
    pub fn str(&mut self, v: &str) {
        self.bytes(v.as_bytes());
    }
    /// Writes a sequence length. Lengths come from validated modules and fit in u32.
    pub fn len(&mut self, n: usize) {
        self.u32(u32::try_from(n).unwrap_or(u32::MAX));
    }
    /// Writes a sequence.
    pub fn seq<T: Encode>(&mut self, items: &[T]) {
        self.len(items.len());
        for item in items {
            item.encode(self);
        }
    }
    /// Writes an optional value.
    pub fn opt<T: Encode>(&mut self, v: &Option<T>) {
        match v {
            None => self.u8(0),
            Some(v) => {
                self.u8(1);
                v.encode(self);
            }
        }
    }
}

/// Reads encoded values from a byte slice.
#[derive(Debug)]
pub struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// Reads from `data`.
    pub fn new(data: &'a [u8]) -> Reader<'a> {
        Reader { data, pos: 0 }
    }
    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }
    /// Current byte offset.
    pub fn offset(&self) -> usize {
        self.pos
    }
    /// An error for an invalid value just read.
    pub fn invalid(&self, what: &'static str) -> CodecError {
        CodecError::Invalid {
            offset: self.pos,
            what,
        }
    }
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], CodecError> {
        if self.remaining() < n {
            return Err(CodecError::Truncated {
                offset: self.pos,
                what,
            });
        }
        let s = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    /// Reads one byte.
    pub fn u8(&mut self, what: &'static str) -> Result<u8, CodecError> {
        Ok(self.take(1, what)?[0])
    }
    /// Reads a u32.
    pub fn u32(&mut self, what: &'static str) -> Result<u32, CodecError> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    /// Reads a u64.
    pub fn u64(&mut self, what: &'static str) -> Result<u64, CodecError> {
        let b = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
    /// Reads a length-prefixed byte string.
    pub fn bytes(&mut self, what: &'static str) -> Result<&'a [u8], CodecError> {
        let n = self.u32(what)? as usize;
        self.take(n, what)
    }
    /// Reads a length-prefixed UTF-8 string.
    pub fn str(&mut self, what: &'static str) -> Result<String, CodecError> {
        let b = self.bytes(what)?;
        std::str::from_utf8(b)
            .map(str::to_owned)
            .map_err(|_| self.invalid(what))
    }
    /// Reads a sequence length, refusing one that the remaining input cannot hold at
    /// `min_item_size` bytes per item.
    pub fn len(&mut self, min_item_size: usize, what: &'static str) -> Result<usize, CodecError> {
        let n = self.u32(what)? as usize;
        if n.saturating_mul(min_item_size.max(1)) > self.remaining() {
            return Err(CodecError::Truncated {
                offset: self.pos,
                what,
            });
        }
        Ok(n)
    }
    /// Reads a sequence.
    pub fn seq<T: Decode>(&mut self) -> Result<Vec<T>, CodecError> {
        let n = self.len(T::MIN_SIZE, T::WHAT)?;
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            v.push(T::decode(self)?);
        }
        Ok(v)
    }
    /// Reads an optional value.
    pub fn opt<T: Decode>(&mut self) -> Result<Option<T>, CodecError> {
        match self.u8(T::WHAT)? {
            0 => Ok(None),
            1 => Ok(Some(T::decode(self)?)),
            _ => Err(self.invalid(T::WHAT)),
        }
    }
}

/// A value the metadata writer can encode.
pub trait Encode {
    /// Appends `self`.
    fn encode(&self, w: &mut Writer);
}

/// A value the metadata reader can decode.
pub trait Decode: Sized {
    /// The fewest bytes one encoded value takes (bounds sequence counts).
    const MIN_SIZE: usize;
    /// What the value is, for error messages.
    const WHAT: &'static str;
    /// Reads one value.
    fn decode(r: &mut Reader<'_>) -> Result<Self, CodecError>;
}

impl Encode for u32 {
    fn encode(&self, w: &mut Writer) {
        w.u32(*self);
    }
}

impl Decode for u32 {
    const MIN_SIZE: usize = 4;
    const WHAT: &'static str = "u32";
    fn decode(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        r.u32("u32")
    }
}

impl Encode for String {
    fn encode(&self, w: &mut Writer) {
        w.str(self);
    }
}

impl Decode for String {
    const MIN_SIZE: usize = 4;
    const WHAT: &'static str = "string";
    fn decode(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        r.str("string")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_truncation() {
        let mut w = Writer::new();
        w.u32(7);
        w.str("héllo");
        w.seq(&[1u32, 2, 3]);
        w.opt(&Some(9u32));
        let bytes = w.finish();
        let mut r = Reader::new(&bytes);
        assert_eq!(r.u32("a").unwrap(), 7);
        assert_eq!(r.str("b").unwrap(), "héllo");
        assert_eq!(r.seq::<u32>().unwrap(), vec![1, 2, 3]);
        assert_eq!(r.opt::<u32>().unwrap(), Some(9));
        assert_eq!(r.remaining(), 0);
        for cut in 0..bytes.len() {
            let mut r = Reader::new(&bytes[..cut]);
            let res = (|| -> Result<(), CodecError> {
                r.u32("a")?;
                r.str("b")?;
                r.seq::<u32>()?;
                r.opt::<u32>()?;
                Ok(())
            })();
            assert!(res.is_err(), "cut at {cut} decoded");
        }
    }

    #[test]
    fn absurd_counts_do_not_allocate() {
        let mut w = Writer::new();
        w.u32(u32::MAX);
        let bytes = w.finish();
        let err = Reader::new(&bytes).seq::<u32>().unwrap_err();
        assert!(matches!(err, CodecError::Truncated { .. }));
    }
}
