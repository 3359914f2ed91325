//! The crate's own base64 (RFC 4648 §4: standard alphabet, `=` padding), for bodies that are not
//! UTF-8. Written here because the crate has no dependencies.
//!
//! Decoding is strict, like the worker's: the length must be a multiple of four, padding only at
//! the end, no whitespace, and the unused bits of the last character must be zero (so that every
//! byte string has exactly one encoding). Bad input is an error, never a panic.

use std::fmt;

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Encodes `bytes`, padded.
pub(crate) fn encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        let sextet = |shift: u32| char::from(ALPHABET[(n >> shift & 63) as usize]);
        out.push(sextet(18));
        out.push(sextet(12));
        out.push(if chunk.len() > 1 { sextet(6) } else { '=' });
        out.push(if chunk.len() > 2 { sextet(0) } else { '=' });
    }
    out
}

/// Why a text is not canonical padded base64.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Error {
    /// Byte offset in the text.
    pub(crate) offset: usize,
    pub(crate) message: &'static str,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid base64: {} at byte {}",
            self.message, self.offset
        )
    }
}

fn sextet(c: u8) -> Option<u32> {
    let v = match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => return None,
    };
    Some(u32::from(v))
}

/// Decodes padded standard base64.
pub(crate) fn decode(text: &str) -> Result<Vec<u8>, Error> {
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(4) {
        return Err(Error {
            offset: bytes.len(),
            message: "length is not a multiple of 4",
        });
    }
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    for (index, quad) in bytes.chunks(4).enumerate() {
        let at = index * 4;
        let last = at + 4 == bytes.len();
        // Padding: "xx==" or "xxx=", in the last group only.
        let pad = match (quad[2], quad[3]) {
            (b'=', b'=') => 2,
            (_, b'=') => 1,
            (b'=', _) => {
                return Err(Error {
                    offset: at + 2,
                    message: "'=' in the middle",
                })
            }
            _ => 0,
        };
        if pad > 0 && !last {
            return Err(Error {
                offset: at + 4 - pad,
                message: "'=' before the end",
            });
        }
        let mut n = 0u32;
        for (i, &c) in quad[..4 - pad].iter().enumerate() {
            let v = sextet(c).ok_or(Error {
                offset: at + i,
                message: "character outside the base64 alphabet",
            })?;
            n = n << 6 | v;
        }
        n <<= 6 * pad;
        // With padding, the bits below the last byte must be zero (canonical encoding).
        let unused = match pad {
            2 => n & 0xFFFF,
            1 => n & 0xFF,
            _ => 0,
        };
        if unused != 0 {
            return Err(Error {
                offset: at + 3 - pad,
                message: "non-zero unused bits before the padding",
            });
        }
        let decoded = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&decoded[..3 - pad]);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_rng::Rng;

    #[test]
    fn rfc4648_vectors() {
        let vectors = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (plain, encoded) in vectors {
            assert_eq!(encode(plain.as_bytes()), encoded);
            assert_eq!(decode(encoded).unwrap(), plain.as_bytes());
        }
        assert_eq!(encode(&[0xff, 0xfe, 0xfd, 0x00]), "//79AA==");
        assert_eq!(decode("+/+/").unwrap(), [0xfb, 0xff, 0xbf]);
    }

    #[test]
    fn bad_input_is_an_error() {
        for bad in [
            "Zg", "Zg=", "Z===", "====", "Zm9", "Zg==Zg==", "Z=g=", "Zm=v", "Zm9v\n", " Zm9v",
            "Zm-v", "Zm_v", "Zh==", "Zm9=", "Zm8x=", "é===",
        ] {
            assert!(decode(bad).is_err(), "{bad:?} decoded");
        }
        assert_eq!(
            decode("Zm9v!AAA").unwrap_err(),
            Error {
                offset: 4,
                message: "character outside the base64 alphabet"
            }
        );
    }

    #[test]
    fn random_round_trips() {
        let mut rng = Rng::new(7);
        for _ in 0..2000 {
            let len = rng.below(100);
            let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            let text = encode(&bytes);
            assert_eq!(text.len(), bytes.len().div_ceil(3) * 4);
            assert_eq!(decode(&text).unwrap(), bytes);
        }
    }

    #[test]
    fn random_text_never_panics() {
        let mut rng = Rng::new(8);
        let chars = b"AZaz09+/=-_ \n\xc3\xa9";
        for _ in 0..20000 {
            let len = rng.below(12);
            let bytes: Vec<u8> = (0..len).map(|_| chars[rng.below(chars.len())]).collect();
            if let Ok(text) = std::str::from_utf8(&bytes) {
                // Whatever decodes must encode back to the same text (canonical encodings).
                if let Ok(decoded) = decode(text) {
                    assert_eq!(encode(&decoded), text);
                }
            }
        }
    }
}
