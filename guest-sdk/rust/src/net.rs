//! Outbound connections from a function: [`TcpStream`] and [`TlsStream`], opened by fnvm's host
//! functions `host_tcp_connect` and `host_tls_connect` (import module `fnvm`; WASI preview1 can
//! use sockets but not open them). Both implement [`Read`] and [`Write`], so existing crates
//! that take a `Read + Write` (an HTTP/1.1 client, a PostgreSQL or Redis protocol
//! implementation) work over them. The ABI (parameters, errnos, the egress policy that decides
//! where a function may connect) is in `hostcalls/NET.md` of fnvm's repository.
//!
//! ```no_run
//! use std::io::{Read, Write};
//! let mut s = fnvm_guest::net::TlsStream::connect("example.com:443", "example.com")?;
//! s.write_all(b"GET / HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n")?;
//! let mut page = String::new();
//! s.read_to_string(&mut page)?;
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! The host resolves names, checks every address against the policy, connects (TLS: handshake
//! and certificate verification against `hostname`, with the host's roots) and gives back a
//! file descriptor; reads and writes are plain `fd_read` / `fd_write` on it, so a read blocks
//! until data, end of stream, or the invocation's deadline. Everything the invocation opened is
//! closed when it ends. Outside WebAssembly (the crate's host tests) connecting is
//! [`io::ErrorKind::Unsupported`].

use std::io::{self, Read, Write};

/// `flags` bit: the new descriptor does not block (reads and writes return `WouldBlock`).
pub const FLAG_NONBLOCK: u32 = 1;

#[cfg(target_os = "wasi")]
mod sys {
    use std::os::fd::{FromRawFd, RawFd};

    #[link(wasm_import_module = "fnvm")]
    extern "C" {
        fn host_tcp_connect(
            address: *const u8,
            address_len: usize,
            flags: u32,
            fd: *mut u32,
        ) -> u32;
        fn host_tls_connect(
            address: *const u8,
            address_len: usize,
            hostname: *const u8,
            hostname_len: usize,
            flags: u32,
            fd: *mut u32,
        ) -> u32;
    }

    #[link(wasm_import_module = "wasi_snapshot_preview1")]
    extern "C" {
        fn sock_shutdown(fd: u32, how: u32) -> u32;
    }

    /// An errno from the host as an `io::Error` (std on WASI keeps WASI errnos as OS errors).
    fn errno(e: u32) -> std::io::Error {
        std::io::Error::from_raw_os_error(e as i32)
    }

    /// The descriptor as a `File`: its `Read`/`Write` are `fd_read`/`fd_write`, and dropping it
    /// closes the descriptor.
    fn file(fd: u32) -> std::fs::File {
        // SAFETY: `fd` was just returned by the host for this connection and nothing else owns
        // it: the `File` becomes its only owner and closes it once.
        unsafe { std::fs::File::from_raw_fd(fd as RawFd) }
    }

    pub(super) fn tcp(address: &str, flags: u32) -> std::io::Result<std::fs::File> {
        let mut fd = 0u32;
        // SAFETY: the pointers and lengths describe `address` and `fd`, both alive for the call;
        // the host reads the first and writes four bytes to the second.
        let e = unsafe { host_tcp_connect(address.as_ptr(), address.len(), flags, &mut fd) };
        if e != 0 {
            return Err(errno(e));
        }
        Ok(file(fd))
    }

    pub(super) fn tls(address: &str, hostname: &str, flags: u32) -> std::io::Result<std::fs::File> {
        let mut fd = 0u32;
        // SAFETY: as for `tcp`, with `hostname` as well.
        let e = unsafe {
            host_tls_connect(
                address.as_ptr(),
                address.len(),
                hostname.as_ptr(),
                hostname.len(),
                flags,
                &mut fd,
            )
        };
        if e != 0 {
            return Err(errno(e));
        }
        Ok(file(fd))
    }

    pub(super) fn shutdown(f: &std::fs::File, how: u32) -> std::io::Result<()> {
        use std::os::fd::AsRawFd;
        // SAFETY: a plain call on a descriptor this `File` owns.
        match unsafe { sock_shutdown(f.as_raw_fd() as u32, how) } {
            0 => Ok(()),
            e => Err(errno(e)),
        }
    }
}

#[cfg(not(target_os = "wasi"))]
mod sys {
    fn unsupported() -> std::io::Error {
        std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "fnvm's sockets exist only inside a function (wasm32-wasip1)",
        )
    }

    pub(super) fn tcp(_: &str, _: u32) -> std::io::Result<std::fs::File> {
        Err(unsupported())
    }

    pub(super) fn tls(_: &str, _: &str, _: u32) -> std::io::Result<std::fs::File> {
        Err(unsupported())
    }

    pub(super) fn shutdown(_: &std::fs::File, _: u32) -> std::io::Result<()> {
        Err(unsupported())
    }
}

/// Which halves [`TcpStream::shutdown`] closes (WASI's `sdflags`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shutdown {
    /// No more reads.
    Read,
    /// No more writes: the peer sees the end of the stream.
    Write,
    /// Both.
    Both,
}

impl Shutdown {
    fn flags(self) -> u32 {
        match self {
            Shutdown::Read => 1,
            Shutdown::Write => 2,
            Shutdown::Both => 3,
        }
    }
}

/// A TCP connection opened by the host.
#[derive(Debug)]
pub struct TcpStream {
    file: std::fs::File,
}

impl TcpStream {
    /// Connects to `address` (`host:port`, `ip:port` or `[ipv6]:port`), blocking.
    pub fn connect(address: &str) -> io::Result<TcpStream> {
        TcpStream::connect_with_flags(address, 0)
    }

    /// Connects with `flags` ([`FLAG_NONBLOCK`]).
    pub fn connect_with_flags(address: &str, flags: u32) -> io::Result<TcpStream> {
        sys::tcp(address, flags).map(|file| TcpStream { file })
    }

    /// Closes one or both halves.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        sys::shutdown(&self.file, how.flags())
    }
}

impl Read for TcpStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.file.read(buf)
    }
}

impl Write for TcpStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A TLS connection opened by the host: the handshake and certificate verification (against
/// `hostname`, with the host's roots) are done when [`TlsStream::connect`] returns; reads and
/// writes are plaintext.
#[derive(Debug)]
pub struct TlsStream {
    file: std::fs::File,
}

impl TlsStream {
    /// Connects to `address` and verifies the server as `hostname`, blocking.
    pub fn connect(address: &str, hostname: &str) -> io::Result<TlsStream> {
        TlsStream::connect_with_flags(address, hostname, 0)
    }

    /// Connects with `flags` ([`FLAG_NONBLOCK`]).
    pub fn connect_with_flags(address: &str, hostname: &str, flags: u32) -> io::Result<TlsStream> {
        sys::tls(address, hostname, flags).map(|file| TlsStream { file })
    }

    /// Closes one or both halves (the write half sends TLS's close_notify first).
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        sys::shutdown(&self.file, how.flags())
    }
}

impl Read for TlsStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.file.read(buf)
    }
}

impl Write for TlsStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outside_a_function_connecting_is_unsupported() {
        let e = TcpStream::connect("127.0.0.1:1").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::Unsupported);
        let e = TlsStream::connect("example.com:443", "example.com").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::Unsupported);
        assert_eq!(
            [Shutdown::Read, Shutdown::Write, Shutdown::Both].map(Shutdown::flags),
            [1, 2, 3]
        );
    }
}
