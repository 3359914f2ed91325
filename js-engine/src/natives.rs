//! What the JavaScript API (src/prelude.js) needs from Rust: buffered output, base64 and UTF-8
//! conversions, and `Math.random` reseeded per invocation (the snapshot would otherwise freeze
//! QuickJS's seed, and every invocation would draw the same numbers).

use rquickjs::{Ctx, Function, Object, Result, TypedArray};
use std::cell::{Cell, RefCell};
use std::io::Write;

thread_local! {
    static STDOUT: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    static STDERR: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    static RANDOM: Cell<u64> = const { Cell::new(0x2545_f491_4f6c_dd1d) };
}

/// Output is written out when a buffer grows past this, and at the end of every entry point.
const FLUSH_AT: usize = 64 * 1024;

/// Appends to stdout's (fd 1) or stderr's (any other fd) buffer.
pub fn write(fd: i32, data: &[u8]) {
    let cell = if fd == 1 { &STDOUT } else { &STDERR };
    let full = cell.with(|b| {
        let mut b = b.borrow_mut();
        b.extend_from_slice(data);
        b.len() >= FLUSH_AT
    });
    if full {
        flush();
    }
}

/// Writes both buffers out (errors are ignored: there is nowhere to report them) and empties
/// them, so that nothing buffered ends up in a snapshot.
pub fn flush() {
    STDOUT.with(|b| {
        let mut b = b.borrow_mut();
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(&b).and_then(|()| out.flush());
        b.clear();
        b.shrink_to(0);
    });
    STDERR.with(|b| {
        let mut b = b.borrow_mut();
        let _ = std::io::stderr().lock().write_all(&b);
        b.clear();
        b.shrink_to(0);
    });
}

#[link(wasm_import_module = "wasi_snapshot_preview1")]
extern "C" {
    #[link_name = "random_get"]
    fn wasi_random_get(buf: *mut u8, len: usize) -> u16;
}

/// Seeds `Math.random` from WASI's `random_get` (once per invocation).
pub fn seed_random() {
    let mut seed = [0u8; 8];
    // SAFETY: `seed` is 8 writable bytes; random_get writes at most `len` bytes into it.
    let errno = unsafe { wasi_random_get(seed.as_mut_ptr(), seed.len()) };
    let s = u64::from_le_bytes(seed);
    if errno == 0 && s != 0 {
        RANDOM.with(|r| r.set(s));
    }
}

fn random() -> f64 {
    RANDOM.with(|r| {
        // xorshift64*, as QuickJS's own Math.random.
        let mut x = r.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        r.set(x);
        let v = x.wrapping_mul(0x2545_f491_4f6c_dd1d);
        (v >> 11) as f64 / (1u64 << 53) as f64
    })
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard padded base64 (RFC 4648 section 4).
pub fn b64encode(data: &[u8]) -> String {
    let mut s = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                s.push(B64[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

/// Decodes standard base64, padded or not, ignoring ASCII whitespace.
pub fn b64decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    let (mut acc, mut bits, mut pad) = (0u32, 0u32, 0usize);
    for &c in s.as_bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => {
                pad += 1;
                continue;
            }
            b' ' | b'\t' | b'\r' | b'\n' => continue,
            _ => return None,
        };
        if pad > 0 {
            return None;
        }
        acc = acc << 6 | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    (pad <= 2).then_some(out)
}

/// The natives object the prelude receives.
pub fn install<'js>(ctx: &Ctx<'js>) -> Result<Object<'js>> {
    let n = Object::new(ctx.clone())?;
    n.set(
        "write",
        Function::new(ctx.clone(), |fd: i32, s: rquickjs::Coerced<String>| {
            write(fd, s.0.as_bytes())
        })?,
    )?;
    n.set(
        "random",
        Function::new(ctx.clone(), random)?.with_name("random")?,
    )?;
    n.set(
        "b64encode",
        Function::new(ctx.clone(), |b: TypedArray<'js, u8>| {
            // SAFETY: no JavaScript runs while the slice is borrowed.
            b64encode(unsafe { b.as_bytes() }.unwrap_or(&[]))
        })?,
    )?;
    n.set(
        "b64decode",
        Function::new(ctx.clone(), |ctx: Ctx<'js>, s: String| {
            match b64decode(&s) {
                Some(v) => TypedArray::<u8>::new(ctx, v),
                None => Err(rquickjs::Exception::throw_type(&ctx, "invalid base64")),
            }
        })?,
    )?;
    n.set(
        "utf8encode",
        Function::new(ctx.clone(), |ctx: Ctx<'js>, s: String| {
            TypedArray::<u8>::new(ctx, s.into_bytes())
        })?,
    )?;
    n.set(
        "utf8decode",
        Function::new(ctx.clone(), |b: TypedArray<'js, u8>| {
            // SAFETY: no JavaScript runs while the slice is borrowed.
            String::from_utf8_lossy(unsafe { b.as_bytes() }.unwrap_or(&[])).into_owned()
        })?,
    )?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips() {
        for s in [
            &b""[..],
            b"f",
            b"fo",
            b"foo",
            b"foob",
            b"fooba",
            b"foobar",
            &[0, 255, 128],
        ] {
            assert_eq!(b64decode(&b64encode(s)).as_deref(), Some(s));
        }
        assert_eq!(b64encode(b"foobar"), "Zm9vYmFy");
        assert_eq!(b64decode("iVBORw0KGgo=").unwrap().len(), 8);
        assert!(b64decode("a=b").is_none());
    }
}
