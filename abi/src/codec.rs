//! A small, bounds-checked binary codec for artifact metadata.
//!
//! Everything is little-endian; sequences carry a `u32` count that is checked against the bytes
//! left before anything is allocated, so a hostile count cannot make the decoder reserve memory it
//! cannot fill. Enums are a one-byte tag followed by the variant's fields; `codec_enum!` writes
//! both directions of such an encoding from one list, so the tags exist in one place only.

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
    /// Writes a boolean as one byte, 0 or 1.
    pub fn bool(&mut self, v: bool) {
        self.u8(u8::from(v));
    }
    /// Writes an optional value: a boolean "present" tag, then the value if there is one.
    pub fn opt<T: Encode>(&mut self, v: &Option<T>) {
        self.bool(v.is_some());
        if let Some(v) = v {
            v.encode(self);
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
    /// An error for an invalid value that starts at the current offset.
    pub fn invalid(&self, what: &'static str) -> CodecError {
        self.invalid_at(self.pos, what)
    }
    /// An error for an invalid value that starts at `offset` (usually already read past).
    pub fn invalid_at(&self, offset: usize, what: &'static str) -> CodecError {
        CodecError::Invalid { offset, what }
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
    /// Reads a boolean written by [`Writer::bool`]; any byte but 0 and 1 is invalid.
    pub fn bool(&mut self, what: &'static str) -> Result<bool, CodecError> {
        let at = self.pos;
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(self.invalid_at(at, what)),
        }
    }
    /// Reads a length-prefixed UTF-8 string.
    pub fn str(&mut self, what: &'static str) -> Result<String, CodecError> {
        let at = self.pos;
        let b = self.bytes(what)?;
        std::str::from_utf8(b)
            .map(str::to_owned)
            .map_err(|_| self.invalid_at(at, what))
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
    /// Reads an optional value written by [`Writer::opt`].
    pub fn opt<T: Decode>(&mut self) -> Result<Option<T>, CodecError> {
        if self.bool(T::WHAT)? {
            Ok(Some(T::decode(self)?))
        } else {
            Ok(None)
        }
    }
}

/// Bytes of the count in front of every sequence and string.
pub(crate) const LEN_SIZE: usize = 4;
/// Bytes of the presence tag in front of every optional value.
pub(crate) const OPT_SIZE: usize = 1;
/// Bytes of the tag in front of every `codec_enum!` variant.
pub(crate) const TAG_SIZE: usize = 1;

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
        r.u32(Self::WHAT)
    }
}

impl Encode for u64 {
    fn encode(&self, w: &mut Writer) {
        w.u64(*self);
    }
}

impl Decode for u64 {
    const MIN_SIZE: usize = 8;
    const WHAT: &'static str = "u64";
    fn decode(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        r.u64(Self::WHAT)
    }
}

// Signed numbers are stored as their two's-complement bits: the bytes of the unsigned number of
// the same width.

impl Encode for i32 {
    fn encode(&self, w: &mut Writer) {
        w.u32(*self as u32);
    }
}

impl Decode for i32 {
    const MIN_SIZE: usize = 4;
    const WHAT: &'static str = "i32";
    fn decode(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        Ok(r.u32(Self::WHAT)? as i32)
    }
}

impl Encode for i64 {
    fn encode(&self, w: &mut Writer) {
        w.u64(*self as u64);
    }
}

impl Decode for i64 {
    const MIN_SIZE: usize = 8;
    const WHAT: &'static str = "i64";
    fn decode(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        Ok(r.u64(Self::WHAT)? as i64)
    }
}

impl Encode for bool {
    fn encode(&self, w: &mut Writer) {
        w.bool(*self);
    }
}

impl Decode for bool {
    const MIN_SIZE: usize = 1;
    const WHAT: &'static str = "boolean";
    fn decode(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        r.bool(Self::WHAT)
    }
}

impl Encode for String {
    fn encode(&self, w: &mut Writer) {
        w.str(self);
    }
}

impl Decode for String {
    const MIN_SIZE: usize = LEN_SIZE;
    const WHAT: &'static str = "string";
    fn decode(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        r.str("string")
    }
}

/// The smallest of `sizes` (0 for none): `codec_enum!` computes `MIN_SIZE` with it at compile
/// time.
pub(crate) const fn min_of(sizes: &[usize]) -> usize {
    let mut min = if sizes.is_empty() { 0 } else { sizes[0] };
    let mut i = 1;
    while i < sizes.len() {
        if sizes[i] < min {
            min = sizes[i];
        }
        i += 1;
    }
    min
}

/// Implements [`Encode`] and [`Decode`] for an enum from one list of `tag => variant` pairs.
///
/// The encoding is the tag as one byte, then each field of the variant in order with its own
/// `Encode`. Writing each tag once is the point: the encoder and the decoder cannot disagree on a
/// number; a tag used twice or a variant left out does not compile (the generated matches deny
/// unreachable patterns and must be exhaustive); a tag that does not fit a byte is rejected by
/// the `overflowing_literals` lint. Decoding an unknown tag is [`CodecError::Invalid`] at the
/// tag's offset. `MIN_SIZE` is computed: the tag plus the fields of the smallest variant.
///
/// Variants are unit, tuple with exactly one field, or struct (fields encoded in the order
/// listed, which must be the wire order):
///
/// ```text
/// codec_enum!(ConstExpr, "constant expression" {
///     0 => I32(i32),
///     4 => RefNull,
/// });
/// codec_enum!(ElemMode, "element segment mode" {
///     0 => Active { table: u32, offset: ConstExpr },
///     1 => Passive,
/// });
/// ```
///
/// Tags are part of the artifact format: never renumber one (bump `FORMAT_VERSION` if you must).
macro_rules! codec_enum {
    // Entry: wrap each variant's fields (none, `(T)` or `{ f: T, .. }`) in one `[...]` token tree
    // so that the arms below can pass them around as a single `$fields:tt`.
    ($ty:ident, $what:literal { $(
        $tag:literal => $variant:ident $(($tty:ty))? $({ $($field:ident : $fty:ty),+ $(,)? })?
    ),+ $(,)? }) => {
        $crate::codec::codec_enum!(@impl $ty, $what {
            $($tag => $variant [$(($tty))? $({ $($field: $fty),+ })?])+
        });
    };

    (@impl $ty:ident, $what:literal { $($tag:literal => $variant:ident $fields:tt)+ }) => {
        impl $crate::codec::Encode for $ty {
            #[deny(unreachable_patterns)]
            fn encode(&self, w: &mut $crate::codec::Writer) {
                match self {
                    $($crate::codec::codec_enum!(@pattern value $variant $fields) => {
                        w.u8($tag);
                        $crate::codec::codec_enum!(@encode w value $fields);
                    })+
                }
            }
        }

        impl $crate::codec::Decode for $ty {
            const MIN_SIZE: usize = $crate::codec::TAG_SIZE
                + $crate::codec::min_of(&[$($crate::codec::codec_enum!(@size $fields)),+]);
            const WHAT: &'static str = $what;
            #[deny(unreachable_patterns)]
            fn decode(
                r: &mut $crate::codec::Reader<'_>,
            ) -> Result<Self, $crate::codec::CodecError> {
                let at = r.offset();
                Ok(match r.u8(Self::WHAT)? {
                    $($tag => $crate::codec::codec_enum!(@decode r $variant $fields),)+
                    _ => return Err(r.invalid_at(at, Self::WHAT)),
                })
            }
        }
    };

    // The helpers below get the names they bind and use (`value`, `w`, `r`) from the `@impl`
    // arm: a name made up inside a helper would be invisible to the other helper (hygiene).
    (@pattern $v:ident $variant:ident []) => { Self::$variant };
    (@pattern $v:ident $variant:ident [($fty:ty)]) => { Self::$variant($v) };
    (@pattern $v:ident $variant:ident [{ $($f:ident : $fty:ty),+ }]) => {
        Self::$variant { $($f),+ }
    };

    (@encode $w:ident $v:ident []) => {};
    (@encode $w:ident $v:ident [($fty:ty)]) => { $crate::codec::Encode::encode($v, $w) };
    (@encode $w:ident $v:ident [{ $($f:ident : $fty:ty),+ }]) => {
        $($crate::codec::Encode::encode($f, $w);)+
    };

    (@decode $r:ident $variant:ident []) => { Self::$variant };
    (@decode $r:ident $variant:ident [($fty:ty)]) => {
        Self::$variant(<$fty as $crate::codec::Decode>::decode($r)?)
    };
    // Struct expression fields are evaluated in the order written, which is the wire order.
    (@decode $r:ident $variant:ident [{ $($f:ident : $fty:ty),+ }]) => {
        Self::$variant { $($f: <$fty as $crate::codec::Decode>::decode($r)?),+ }
    };

    (@size []) => { 0 };
    (@size [($fty:ty)]) => { <$fty as $crate::codec::Decode>::MIN_SIZE };
    (@size [{ $($f:ident : $fty:ty),+ }]) => { 0 $(+ <$fty as $crate::codec::Decode>::MIN_SIZE)+ };
}
pub(crate) use codec_enum;

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
    fn numbers_keep_their_bits() {
        let mut w = Writer::new();
        (-1i32).encode(&mut w);
        i64::MIN.encode(&mut w);
        u64::MAX.encode(&mut w);
        true.encode(&mut w);
        let bytes = w.finish();
        assert_eq!(bytes[..4], [0xff; 4]);
        assert_eq!(bytes[4..12], [0, 0, 0, 0, 0, 0, 0, 0x80]);
        assert_eq!(bytes[20], 1);
        let mut r = Reader::new(&bytes);
        assert_eq!(i32::decode(&mut r).unwrap(), -1);
        assert_eq!(i64::decode(&mut r).unwrap(), i64::MIN);
        assert_eq!(u64::decode(&mut r).unwrap(), u64::MAX);
        assert!(bool::decode(&mut r).unwrap());
        assert_eq!(r.remaining(), 0);
    }

    #[test]
    fn invalid_values_are_reported_where_they_start() {
        // An option tag of 2 after a u32: the error points at the tag, not past it.
        let bytes = [1, 0, 0, 0, 2, 0, 0, 0, 0];
        let mut r = Reader::new(&bytes);
        r.u32("a").unwrap();
        assert_eq!(
            r.opt::<u32>().unwrap_err(),
            CodecError::Invalid {
                offset: 4,
                what: "u32"
            }
        );
        // A string that is not UTF-8: the error points at its length prefix.
        let bytes = [0, 1, 0, 0, 0, 0xff];
        let mut r = Reader::new(&bytes);
        r.u8("pad").unwrap();
        assert_eq!(
            r.str("name").unwrap_err(),
            CodecError::Invalid {
                offset: 1,
                what: "name"
            }
        );
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
