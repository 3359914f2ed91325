//! What the JavaScript API (src/prelude.js) needs from Rust: buffered output, base64 and UTF-8
//! conversions, `Math.random` reseeded per invocation (the snapshot would otherwise freeze
//! QuickJS's seed, and every invocation would draw the same numbers), and outbound sockets
//! (fnvm's `host_tcp_connect` / `host_tls_connect`, then WASI `fd_read` / `fd_write` /
//! `sock_shutdown` / `fd_close` on the descriptor: hostcalls/NET.md).

use rquickjs::{Ctx, Function, IntoJs, Object, Result, TypedArray, Value};
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
    #[link_name = "fd_read"]
    fn wasi_fd_read(fd: u32, iovs: *const Iovec, iovs_len: usize, nread: *mut usize) -> u16;
    #[link_name = "fd_write"]
    fn wasi_fd_write(fd: u32, iovs: *const Iovec, iovs_len: usize, nwritten: *mut usize) -> u16;
    #[link_name = "fd_close"]
    fn wasi_fd_close(fd: u32) -> u16;
    #[link_name = "sock_shutdown"]
    fn wasi_sock_shutdown(fd: u32, how: u8) -> u16;
}

#[link(wasm_import_module = "fnvm")]
extern "C" {
    fn host_tcp_connect(address: *const u8, address_len: usize, flags: u32, fd: *mut u32) -> u16;
    fn host_tls_connect(
        address: *const u8,
        address_len: usize,
        hostname: *const u8,
        hostname_len: usize,
        flags: u32,
        fd: *mut u32,
    ) -> u16;
}

/// WASI's `iovec` / `ciovec`.
#[repr(C)]
struct Iovec {
    buf: *const u8,
    len: usize,
}

/// Largest single read (`conn.read(max)` is capped to it).
const MAX_READ: usize = 16 << 20;
/// What `readAll` reads at a time.
const READ_CHUNK: usize = 64 * 1024;

/// Opens a blocking connection: TCP when `hostname` is `None`, TLS for it otherwise (empty:
/// the host part of `address`). The descriptor, or the WASI errno.
pub fn connect(address: &str, hostname: Option<&str>) -> std::result::Result<u32, u16> {
    let mut fd = 0u32;
    // SAFETY: the pointers and lengths describe live strings and `fd`; the host reads the
    // strings and writes four bytes at `fd` on success.
    let e = unsafe {
        match hostname {
            None => host_tcp_connect(address.as_ptr(), address.len(), 0, &mut fd),
            Some(h) => host_tls_connect(
                address.as_ptr(),
                address.len(),
                h.as_ptr(),
                h.len(),
                0,
                &mut fd,
            ),
        }
    };
    if e == 0 {
        Ok(fd)
    } else {
        Err(e)
    }
}

/// One `fd_read` of at most `buf.len()` bytes: the count (0 = end of stream) or the errno.
fn read_into(fd: u32, buf: &mut [u8]) -> std::result::Result<usize, u16> {
    let iov = Iovec {
        buf: buf.as_mut_ptr(),
        len: buf.len(),
    };
    let mut n = 0usize;
    // SAFETY: one iovec over `buf`, writable for its length; the host writes the count at `n`.
    match unsafe { wasi_fd_read(fd, &iov, 1, &mut n) } {
        0 => Ok(n.min(buf.len())),
        e => Err(e),
    }
}

/// Reads what is there (waiting for at least a byte, or the end of the stream: empty).
pub fn read(fd: u32, max: usize) -> std::result::Result<Vec<u8>, u16> {
    let mut buf = vec![0u8; max.clamp(1, MAX_READ)];
    let n = read_into(fd, &mut buf)?;
    buf.truncate(n);
    Ok(buf)
}

/// Reads until the end of the stream.
pub fn read_all(fd: u32) -> std::result::Result<Vec<u8>, u16> {
    let mut out = Vec::new();
    loop {
        let len = out.len();
        out.resize(len + READ_CHUNK, 0);
        let n = read_into(fd, &mut out[len..]);
        let n = n.inspect_err(|_| out.truncate(len))?;
        out.truncate(len + n);
        if n == 0 {
            return Ok(out);
        }
    }
}

/// Writes all of `data` (fd_write until everything is sent): the count, or the errno.
pub fn write_all(fd: u32, data: &[u8]) -> std::result::Result<usize, u16> {
    let mut done = 0;
    while done < data.len() {
        let iov = Iovec {
            buf: data[done..].as_ptr(),
            len: data.len() - done,
        };
        let mut n = 0usize;
        // SAFETY: one iovec over the unsent part of `data`; the host writes the count at `n`.
        match unsafe { wasi_fd_write(fd, &iov, 1, &mut n) } {
            0 if n == 0 => return Err(ERRNO_IO),
            0 => done += n.min(data.len() - done),
            e => return Err(e),
        }
    }
    Ok(done)
}

/// WASI's `EIO` (a write that made no progress).
const ERRNO_IO: u16 = 29;

/// `sock_shutdown` (`how`: 1 = reads, 2 = writes, 3 = both): the errno (0 = done).
pub fn shutdown(fd: u32, how: u8) -> u16 {
    // SAFETY: a plain call on a descriptor number.
    unsafe { wasi_sock_shutdown(fd, how) }
}

/// `fd_close`: the errno (0 = closed).
pub fn close(fd: u32) -> u16 {
    // SAFETY: a plain call; the prelude closes each connection's descriptor once.
    unsafe { wasi_fd_close(fd) }
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
    install_net(ctx, &n)?;
    Ok(n)
}

/// Bytes for the prelude, or the errno as a number (the prelude builds the Error).
fn bytes_or_errno<'js>(ctx: Ctx<'js>, r: std::result::Result<Vec<u8>, u16>) -> Result<Value<'js>> {
    match r {
        Ok(v) => TypedArray::<u8>::new(ctx.clone(), v)?.into_js(&ctx),
        Err(e) => Ok(Value::new_int(ctx, e.into())),
    }
}

/// A count for the prelude, or minus the errno.
fn count_or_errno(r: std::result::Result<usize, u16>) -> f64 {
    match r {
        Ok(n) => n as f64,
        Err(e) => -f64::from(e),
    }
}

/// The socket natives: `netConnect(address, hostname?)` (the fd, or minus the errno),
/// `netRead(fd, max)` and `netReadAll(fd)` (bytes, or the errno as a number), `netWrite(fd,
/// bytes)` (the count, or minus the errno); `netShutdown(fd, how)` and `netClose(fd)` return the
/// errno (0: done).
fn install_net<'js>(ctx: &Ctx<'js>, n: &Object<'js>) -> Result<()> {
    n.set(
        "netConnect",
        Function::new(ctx.clone(), |address: String, hostname: Option<String>| {
            count_or_errno(connect(&address, hostname.as_deref()).map(|fd| fd as usize))
        })?,
    )?;
    n.set(
        "netRead",
        Function::new(ctx.clone(), |ctx: Ctx<'js>, fd: u32, max: f64| {
            let max = if max.is_nan() {
                READ_CHUNK
            } else {
                max.clamp(1.0, MAX_READ as f64) as usize
            };
            bytes_or_errno(ctx, read(fd, max))
        })?,
    )?;
    n.set(
        "netReadAll",
        Function::new(ctx.clone(), |ctx: Ctx<'js>, fd: u32| {
            bytes_or_errno(ctx, read_all(fd))
        })?,
    )?;
    n.set(
        "netWrite",
        Function::new(ctx.clone(), |fd: u32, b: TypedArray<'js, u8>| {
            // SAFETY: no JavaScript runs while the slice is borrowed.
            count_or_errno(write_all(fd, unsafe { b.as_bytes() }.unwrap_or(&[])))
        })?,
    )?;
    n.set(
        "netShutdown",
        Function::new(ctx.clone(), |fd: u32, how: u8| i32::from(shutdown(fd, how)))?,
    )?;
    n.set(
        "netClose",
        Function::new(ctx.clone(), |fd: u32| i32::from(close(fd)))?,
    )?;
    Ok(())
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
