//! The preview1 socket calls. The only sockets are the outbound connections of
//! [`crate::net`] (`host_tcp_connect` / `host_tls_connect`): on them `sock_recv`, `sock_send`
//! and `sock_shutdown` work; any other valid descriptor answers `ENOTSOCK` and an unknown one
//! `EBADF`, as in wasmtime's preview1. `sock_accept` has nothing to accept from (`ENOTSOCK`
//! on a connection too: it is not a listener). Undefined flag bits are `EINVAL`, checked
//! first as wasmtime's bindings decode them before the call.

use super::{Args, Cx};
use crate::errno::Errno;
use crate::net::socket_mut;
use crate::trace::Ret;
use crate::types::{fdflags, sock};
use std::net::Shutdown;

pub(crate) fn sock_accept(cx: &mut Cx<'_>, a: &Args) -> Result<Ret, Errno> {
    if a.u32(1) & !u32::from(fdflags::ALL) != 0 {
        return Err(Errno::Inval);
    }
    cx.ctx.fds.get(a.u32(0))?;
    Err(Errno::Notsock)
}

pub(crate) fn sock_recv(cx: &mut Cx<'_>, a: &Args) -> Result<Ret, Errno> {
    let (fd, flags, out_len, out_flags) = (a.u32(0), a.u32(3), a.u32(4), a.u32(5));
    if flags & !sock::RIFLAGS_ALL != 0 {
        return Err(Errno::Inval);
    }
    socket_mut(&mut cx.ctx.fds, fd)?;
    cx.mem.check(out_len, 4)?;
    cx.mem.check(out_flags, 2)?;
    let iovs = cx.mem.iovecs(a.u32(1), a.u32(2))?;
    let n = if flags & sock::RECV_PEEK != 0 {
        peek(cx, fd, &iovs)?
    } else {
        crate::net::recv(cx, fd, &iovs, flags & sock::RECV_WAITALL != 0)?
    };
    cx.mem.write_u32(out_len, n as u32)?;
    // roflags: no datagram is ever truncated on a stream.
    cx.mem.write_u16(out_flags, 0)?;
    Ok(Ret::One("ro_datalen", n))
}

/// `RECV_PEEK` on a plain TCP connection: what is there now, left in place (no waiting). A TLS
/// connection has no peek (`ENOTSUP`): its bytes are records, not the guest's data.
fn peek(cx: &mut Cx<'_>, fd: u32, iovs: &[crate::memory::Iovec]) -> Result<u64, Errno> {
    let s = socket_mut(&mut cx.ctx.fds, fd)?;
    if s.tls.is_some() {
        return Err(Errno::Notsup);
    }
    let Some(v) = iovs.first() else { return Ok(0) };
    let buf = cx.mem.slice_mut(v.ptr, v.len)?;
    match s.tcp.peek(buf) {
        Ok(n) => Ok(n as u64),
        Err(e) => Err(crate::net::socket::io_errno(&e)),
    }
}

pub(crate) fn sock_send(cx: &mut Cx<'_>, a: &Args) -> Result<Ret, Errno> {
    // `siflags` defines no bits.
    if a.u32(3) != 0 {
        return Err(Errno::Inval);
    }
    let (fd, out) = (a.u32(0), a.u32(4));
    socket_mut(&mut cx.ctx.fds, fd)?;
    cx.mem.check(out, 4)?;
    let iovs = cx.mem.iovecs(a.u32(1), a.u32(2))?;
    let n = crate::net::send(cx, fd, &iovs)?;
    cx.mem.write_u32(out, n as u32)?;
    Ok(Ret::One("so_datalen", n))
}

pub(crate) fn sock_shutdown(cx: &mut Cx<'_>, a: &Args) -> Result<Ret, Errno> {
    let how = a.u32(1);
    if how & !sock::SDFLAGS_ALL != 0 {
        return Err(Errno::Inval);
    }
    let how = match (how & sock::SHUT_RD != 0, how & sock::SHUT_WR != 0) {
        (true, true) => Shutdown::Both,
        (true, false) => Shutdown::Read,
        (false, true) => Shutdown::Write,
        // Neither direction: wasmtime refuses it too.
        (false, false) => {
            socket_mut(&mut cx.ctx.fds, a.u32(0))?;
            return Err(Errno::Inval);
        }
    };
    let ctx = &mut *cx.ctx;
    let s = socket_mut(&mut ctx.fds, a.u32(0))?;
    let mut unlimited = u64::MAX;
    let left = match ctx.net.as_deref_mut() {
        Some(n) => &mut n.bytes_left,
        None => &mut unlimited,
    };
    s.shutdown(how, left)?;
    Ok(Ret::None)
}
