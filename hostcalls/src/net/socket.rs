//! An outbound connection as a guest descriptor: a non-blocking host TCP socket, optionally
//! wrapped in a rustls client connection, and the byte budget every transfer is charged to.
//!
//! The host socket is always non-blocking; a guest descriptor without `NONBLOCK` waits with
//! `poll(2)` in the hostcall, never past the invocation's deadline (as files do in
//! [`crate::wasi::fd`]). The budget counts bytes on the wire (TLS records, not plaintext), in
//! both directions: it is what the network carries for the guest.

use crate::errno::Errno;
use rustls::ClientConnection;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};

/// An open connection.
#[derive(Debug)]
pub(crate) struct Socket {
    pub tcp: TcpStream,
    /// The TLS session over `tcp`, for `host_tls_connect`.
    pub tls: Option<Box<ClientConnection>>,
    /// WASI `fdflags` (only `NONBLOCK` is meaningful).
    pub fdflags: u16,
}

/// What a transfer attempt came to.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Io {
    /// Done: this many bytes (0 on a read: end of stream).
    Done(usize),
    /// Nothing can move now; wait for the socket (`true`: for writing).
    WouldBlock(bool),
}

/// The TCP stream with reads and writes capped by the remaining byte budget.
pub(crate) struct Metered<'a> {
    pub tcp: &'a TcpStream,
    pub left: &'a mut u64,
}

/// The budget is spent (mapped to `EDQUOT`).
fn quota() -> io::Error {
    io::Error::new(io::ErrorKind::QuotaExceeded, "egress byte budget spent")
}

impl Read for Metered<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if *self.left == 0 {
            return Err(quota());
        }
        let n = buf
            .len()
            .min(usize::try_from(*self.left).unwrap_or(usize::MAX));
        let got = (&*self.tcp).read(buf.get_mut(..n).unwrap_or_default())?;
        *self.left = self.left.saturating_sub(got as u64);
        Ok(got)
    }
}

impl Write for Metered<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if *self.left == 0 {
            return Err(quota());
        }
        let n = buf
            .len()
            .min(usize::try_from(*self.left).unwrap_or(usize::MAX));
        let put = (&*self.tcp).write(buf.get(..n).unwrap_or_default())?;
        *self.left = self.left.saturating_sub(put as u64);
        Ok(put)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A host I/O error as the guest sees it.
pub(crate) fn io_errno(e: &io::Error) -> Errno {
    match e.kind() {
        io::ErrorKind::QuotaExceeded => Errno::Dquot,
        io::ErrorKind::WouldBlock => Errno::Again,
        _ => Errno::from_io(e),
    }
}

/// A TLS error after the handshake (a bad record, an alert from the peer): `EPROTO`.
pub(crate) fn tls_errno(_e: &rustls::Error) -> Errno {
    Errno::Proto
}

impl Socket {
    /// Reads into `buf` (not empty) without blocking.
    pub fn read(&mut self, buf: &mut [u8], left: &mut u64) -> Result<Io, Errno> {
        let Some(tls) = self.tls.as_deref_mut() else {
            return match (Metered {
                tcp: &self.tcp,
                left,
            })
            .read(buf)
            {
                Ok(n) => Ok(Io::Done(n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(Io::WouldBlock(false)),
                Err(e) => Err(io_errno(&e)),
            };
        };
        loop {
            match tls.reader().read(buf) {
                Ok(n) => return Ok(Io::Done(n)),
                // The peer closed TCP without close_notify. HTTP and most protocols frame
                // their messages, and servers often skip close_notify: end of stream.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(Io::Done(0)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(io_errno(&e)),
            }
            // Alerts or key updates rustls wants to send go out first (best effort).
            flush_tls(tls, &self.tcp, left)?;
            let mut m = Metered {
                tcp: &self.tcp,
                left,
            };
            match tls.read_tls(&mut m) {
                Ok(_) => {
                    tls.process_new_packets().map_err(|e| tls_errno(&e))?;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Ok(Io::WouldBlock(false))
                }
                Err(e) => return Err(io_errno(&e)),
            }
        }
    }

    /// Writes `data` (not empty) without blocking; for TLS, the plaintext is taken by rustls
    /// and as much of its records as the socket takes are sent.
    pub fn write(&mut self, data: &[u8], left: &mut u64) -> Result<Io, Errno> {
        let Some(tls) = self.tls.as_deref_mut() else {
            return match (Metered {
                tcp: &self.tcp,
                left,
            })
            .write(data)
            {
                Ok(n) => Ok(Io::Done(n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(Io::WouldBlock(true)),
                Err(e) => Err(io_errno(&e)),
            };
        };
        flush_tls(tls, &self.tcp, left)?;
        let n = tls.writer().write(data).map_err(|e| io_errno(&e))?;
        flush_tls(tls, &self.tcp, left)?;
        Ok(if n == 0 {
            Io::WouldBlock(true)
        } else {
            Io::Done(n)
        })
    }

    /// Whether TLS records are still waiting to be sent.
    pub fn unsent(&self) -> bool {
        self.tls.as_deref().is_some_and(|t| t.wants_write())
    }

    /// Sends what TLS records wait, as far as the socket takes them.
    pub fn flush(&mut self, left: &mut u64) -> Result<(), Errno> {
        match self.tls.as_deref_mut() {
            Some(tls) => flush_tls(tls, &self.tcp, left),
            None => Ok(()),
        }
    }

    /// For `poll_oneoff` on a TLS connection: takes in the records the socket holds now
    /// (without blocking) and tells whether a read would return at once: plaintext is
    /// decrypted, the stream ended, or an error waits to be reported. A socket holding only
    /// part of a record is therefore not reported readable.
    pub fn tls_read_ready(&mut self, left: &mut u64) -> bool {
        let Some(tls) = self.tls.as_deref_mut() else {
            return false;
        };
        loop {
            match tls.process_new_packets() {
                Ok(s) if s.plaintext_bytes_to_read() > 0 || s.peer_has_closed() => return true,
                Ok(_) => {}
                Err(_) => return true,
            }
            match tls.read_tls(&mut Metered {
                tcp: &self.tcp,
                left,
            }) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(_) => return true,
            }
        }
    }

    /// Plaintext already decrypted and waiting to be read (TLS only).
    pub fn buffered(&mut self) -> usize {
        match self.tls.as_deref_mut() {
            Some(tls) => tls
                .process_new_packets()
                .map_or(0, |s| s.plaintext_bytes_to_read()),
            None => 0,
        }
    }

    /// `sock_shutdown`: for TLS, a close_notify precedes the write side's shutdown.
    pub fn shutdown(&mut self, how: Shutdown, left: &mut u64) -> Result<(), Errno> {
        if let (Some(tls), Shutdown::Write | Shutdown::Both) = (self.tls.as_deref_mut(), how) {
            tls.send_close_notify();
            flush_tls(tls, &self.tcp, left)?;
        }
        self.tcp.shutdown(how).map_err(|e| io_errno(&e))
    }
}

impl Drop for Socket {
    /// A TLS peer is told the session ends (one non-blocking attempt, outside the budget);
    /// dropping the stream closes the host socket.
    fn drop(&mut self) {
        if let Some(tls) = self.tls.as_deref_mut() {
            tls.send_close_notify();
            let mut unlimited = u64::MAX;
            let _ = flush_tls(tls, &self.tcp, &mut unlimited);
        }
    }
}

/// Writes rustls's pending records until it has none or the socket is full.
pub(crate) fn flush_tls(
    tls: &mut ClientConnection,
    tcp: &TcpStream,
    left: &mut u64,
) -> Result<(), Errno> {
    while tls.wants_write() {
        match tls.write_tls(&mut Metered { tcp, left }) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) => return Err(io_errno(&e)),
        }
    }
    Ok(())
}
