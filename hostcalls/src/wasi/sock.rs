//! The preview1 socket calls. No socket is ever granted (there are no preopened sockets yet),
//! so every valid descriptor answers `ENOTSOCK` and an unknown one `EBADF`, exactly as
//! wasmtime's preview1 does. Undefined flag bits are `EINVAL`, checked first as wasmtime's
//! bindings decode them before the call.

use super::{Args, Cx};
use crate::errno::Errno;
use crate::trace::Ret;
use crate::types::{fdflags, sock};

fn not_a_socket(cx: &Cx<'_>, fd: u32) -> Result<Ret, Errno> {
    cx.ctx.fds.get(fd)?;
    Err(Errno::Notsock)
}

pub(crate) fn sock_accept(cx: &mut Cx<'_>, a: &Args) -> Result<Ret, Errno> {
    if a.u32(1) & !u32::from(fdflags::ALL) != 0 {
        return Err(Errno::Inval);
    }
    not_a_socket(cx, a.u32(0))
}

pub(crate) fn sock_recv(cx: &mut Cx<'_>, a: &Args) -> Result<Ret, Errno> {
    if a.u32(3) & !sock::RIFLAGS_ALL != 0 {
        return Err(Errno::Inval);
    }
    not_a_socket(cx, a.u32(0))
}

pub(crate) fn sock_send(cx: &mut Cx<'_>, a: &Args) -> Result<Ret, Errno> {
    // `siflags` defines no bits.
    if a.u32(3) != 0 {
        return Err(Errno::Inval);
    }
    not_a_socket(cx, a.u32(0))
}

pub(crate) fn sock_shutdown(cx: &mut Cx<'_>, a: &Args) -> Result<Ret, Errno> {
    if a.u32(1) & !sock::SDFLAGS_ALL != 0 {
        return Err(Errno::Inval);
    }
    not_a_socket(cx, a.u32(0))
}
