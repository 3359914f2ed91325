//! Hostcalls on open descriptors (`fd_*`).
//!
//! Which descriptor kinds a call accepts, and the errno for the others, follow wasmtime's
//! preview1: seek/tell on stdio is `ESPIPE`, on a directory `EBADF`; reads and writes on a
//! directory are `EBADF`; sync/advise/allocate/set_size want a file; rights are reported but
//! only the file/directory distinction is enforced (`fd_fdstat_set_rights` is `ENOTSUP`).

use super::{Args, Cx};
use crate::ctx::{Output, OutputState, StdinState, Stream, WasiCtx};
use crate::errno::Errno;
use crate::fdtable::{Desc, File};
use crate::fs::{self, put_u16, put_u32, put_u64};
use crate::memory::Iovec;
use crate::poll::Wait;
use crate::trace::Ret;
use crate::types::{advice, fdflags, filetype, rights, size, whence, PREOPENTYPE_DIR};
use fnvm_host_interface::WriteBehind;
use rustix::fs::{Advice, OFlags, SeekFrom};
use rustix::io::IoSlice;
use std::num::NonZeroU64;
use std::os::fd::AsFd;

/// The open file behind `fd`: `EBADF` for anything else (as wasmtime's `get_file`).
pub(crate) fn file<'c>(cx: &'c Cx<'_>, fd: u32) -> Result<&'c File, Errno> {
    match cx.ctx.fds.get(fd)? {
        Desc::File(f) => Ok(f),
        _ => Err(Errno::Badf),
    }
}

/// The file behind `fd` for positioned access: stdio is `ESPIPE`, the rest `EBADF`.
fn seekable<'c>(cx: &'c Cx<'_>, fd: u32) -> Result<&'c File, Errno> {
    match cx.ctx.fds.get(fd)? {
        Desc::File(f) => Ok(f),
        Desc::Stdin | Desc::Stdout | Desc::Stderr | Desc::Socket(_) => Err(Errno::Spipe),
        Desc::Dir(_) => Err(Errno::Badf),
    }
}

/// Whether host fd `which` (0, 1, 2) is a terminal; decides whether inherited stdio reports
/// itself as a character device (wasmtime reports "unknown" otherwise).
fn stdio_filetype(cx: &Cx<'_>, desc: &Desc) -> u8 {
    use crate::ctx::Output;
    let tty = match desc {
        Desc::Stdin => {
            matches!(cx.ctx.stdin, StdinState::Inherit) && rustix::termios::isatty(std::io::stdin())
        }
        Desc::Stdout => {
            cx.ctx.stdout.kind == Output::Inherit && rustix::termios::isatty(std::io::stdout())
        }
        Desc::Stderr => {
            cx.ctx.stderr.kind == Output::Inherit && rustix::termios::isatty(std::io::stderr())
        }
        _ => false,
    };
    if tty {
        filetype::CHARACTER_DEVICE
    } else {
        filetype::UNKNOWN
    }
}

pub(crate) fn fd_advise(cx: &mut Cx<'_>, a: &Args) -> Result<Ret, Errno> {
    let adv = match a.u32(3) {
        advice::NORMAL => Advice::Normal,
        advice::SEQUENTIAL => Advice::Sequential,
        advice::RANDOM => Advice::Random,
        advice::WILLNEED => Advice::WillNeed,
        advice::DONTNEED => Advice::DontNeed,
        advice::NOREUSE => Advice::NoReuse,
        _ => return Err(Errno::Inval),
    };
    let f = file(cx, a.u32(0))?;
    rustix::fs::fadvise(&f.fd, a.u64(1), NonZeroU64::new(a.u64(2)), adv)?;
    Ok(Ret::None)
}

pub(crate) fn fd_allocate(cx: &mut Cx<'_>, a: &Args) -> Result<Ret, Errno> {
    // wasmtime does not implement it for files either; guests (and wasi-testsuite) accept
    // ENOTSUP.
    file(cx, a.u32(0))?;
    Err(Errno::Notsup)
}

pub(crate) fn fd_close(cx: &mut Cx<'_>, a: &Args) -> Result<Ret, Errno> {
    cx.ctx.fds.remove(a.u32(0))?;
    Ok(Ret::None)
}

pub(crate) fn fd_datasync(cx: &mut Cx<'_>, a: &Args) -> Result<Ret, Errno> {
    rustix::fs::fdatasync(&file(cx, a.u32(0))?.fd)?;
    Ok(Ret::None)
}

pub(crate) fn fd_sync(cx: &mut Cx<'_>, a: &Args) -> Result<Ret, Errno> {
    rustix::fs::fsync(&file(cx, a.u32(0))?.fd)?;
    Ok(Ret::None)
}

/// Base rights of an open file: file rights, without read or write if it was not opened so.
fn file_rights(f: &File) -> u64 {
    let mut r = rights::FILE;
    if !f.read {
        r &= !rights::FD_READ;
    }
    if !f.write {
        r &= !(rights::FD_WRITE | rights::FD_ALLOCATE | rights::FD_FILESTAT_SET_SIZE);
    }
    r
}

pub(crate) fn fd_fdstat_get(cx: &mut Cx<'_>, a: &Args) -> Result<Ret, Errno> {
    let out = a.u32(1);
    cx.mem.check(out, size::FDSTAT)?;
    let desc = cx.ctx.fds.get(a.u32(0))?;
    let (ft, flags, base, inheriting) = match desc {
        Desc::Stdin => (
            stdio_filetype(cx, desc),
            0,
            rights::FD_READ,
            rights::FD_READ,
        ),
        Desc::Stdout | Desc::Stderr => (
            stdio_filetype(cx, desc),
            0,
            rights::FD_WRITE,
            rights::FD_WRITE,
        ),
        Desc::Dir(_) => (
            filetype::DIRECTORY,
            0,
            rights::DIRECTORY_BASE,
            rights::DIRECTORY_INHERITING,
        ),
        Desc::File(f) => {
            let r = file_rights(f);
            (f.filetype, f.fdflags, r, r)
        }
        Desc::Socket(s) => (
            filetype::SOCKET_STREAM,
            s.fdflags,
            rights::SOCKET,
            rights::SOCKET,
        ),
    };
    let mut b = [0u8; size::FDSTAT as usize];
    b[0] = ft;
    put_u16(&mut b, 2, flags);
    put_u64(&mut b, 8, base);
    put_u64(&mut b, 16, inheriting);
    cx.mem.write_bytes(out, &b)?;
    Ok(Ret::Two("filetype", ft.into(), "flags", flags.into()))
}

pub(crate) fn fd_fdstat_set_flags(cx: &mut Cx<'_>, a: &Args) -> Result<Ret, Errno> {
    let flags = a.u32(1);
    if flags & !u32::from(fdflags::ALL) != 0 {
        return Err(Errno::Inval);
    }
    let flags = flags as u16;
    let f = match cx.ctx.fds.get_mut(a.u32(0))? {
        Desc::File(f) => f,
        // A socket's only flag is NONBLOCK (the host socket never blocks either way).
        Desc::Socket(s) => {
            if flags & !fdflags::NONBLOCK != 0 {
                return Err(Errno::Inval);
            }
            s.fdflags = flags;
            return Ok(Ret::None);
        }
        _ => return Err(Errno::Badf),
    };
    // Only APPEND and NONBLOCK may change, as in wasmtime.
    if flags & (fdflags::DSYNC | fdflags::RSYNC | fdflags::SYNC) != 0 {
        return Err(Errno::Inval);
    }
    let mut host = rustix::fs::fcntl_getfl(&f.fd)?;
    host.set(OFlags::APPEND, flags & fdflags::APPEND != 0);
    rustix::fs::fcntl_setfl(&f.fd, host)?;
    f.fdflags = flags & (fdflags::APPEND | fdflags::NONBLOCK);
    Ok(Ret::None)
}

pub(crate) fn fd_fdstat_set_rights(cx: &mut Cx<'_>, a: &Args) -> Result<Ret, Errno> {
    if (a.u64(1) | a.u64(2)) & !rights::ALL != 0 {
        return Err(Errno::Inval);
    }
    match cx.ctx.fds.get(a.u32(0))? {
        // Rights are tracked loosely (reported, not narrowed), like wasmtime; guests and
        // wasi-testsuite treat ENOTSUP as "rights unsupported".
        Desc::File(_) | Desc::Dir(_) => Err(Errno::Notsup),
        _ => Err(Errno::Badf),
    }
}

pub(crate) fn fd_filestat_get(cx: &mut Cx<'_>, a: &Args) -> Result<Ret, Errno> {
    let out = a.u32(1);
    cx.mem.check(out, size::FILESTAT)?;
    let desc = cx.ctx.fds.get(a.u32(0))?;
    let b = match desc {
        Desc::File(crate::fdtable::File { fd, .. }) | Desc::Dir(crate::fdtable::Dir { fd, .. }) => {
            fs::filestat_bytes(&rustix::fs::fstat(fd)?)
        }
        Desc::Socket(_) => fs::encode_filestat(0, 0, filetype::SOCKET_STREAM, 0, 0, 0, 0, 0),
        _ => fs::encode_filestat(0, 0, stdio_filetype(cx, desc), 0, 0, 0, 0, 0),
    };
    cx.mem.write_bytes(out, &b)?;
    let size = u64::from_le_bytes(b[32..40].try_into().unwrap_or([0; 8]));
    Ok(Ret::Two("filetype", b[16].into(), "size", size))
}

pub(crate) fn fd_filestat_set_size(cx: &mut Cx<'_>, a: &Args) -> Result<Ret, Errno> {
    rustix::fs::ftruncate(&file(cx, a.u32(0))?.fd, a.u64(1))?;
    Ok(Ret::None)
}

pub(crate) fn fd_filestat_set_times(cx: &mut Cx<'_>, a: &Args) -> Result<Ret, Errno> {
    let times = fs::timestamps(a.u64(1), a.u64(2), a.u32(3))?;
    match cx.ctx.fds.get(a.u32(0))? {
        Desc::File(crate::fdtable::File { fd, .. }) | Desc::Dir(crate::fdtable::Dir { fd, .. }) => {
            rustix::fs::futimens(fd, &times)?
        }
        _ => return Err(Errno::Badf),
    }
    Ok(Ret::None)
}

/// Reads into `iovs` from a file at `offset` (or its current position if `None`). Regular files
/// are read buffer by buffer until one comes back short (they never block, so this is what
/// `readv` does); anything else gets one read into the first buffer, so a pipe or terminal
/// never blocks waiting to fill a second buffer. Host descriptors are non-blocking
/// ([`crate::wasi::path`] opens them so): a read that would block waits for input only if the
/// guest's descriptor is blocking, and only until the invocation's deadline.
pub(crate) fn read_file(
    cx: &mut Cx<'_>,
    fd: u32,
    iovs: &[Iovec],
    offset: Option<u64>,
) -> Result<u64, Errno> {
    let f = match cx.ctx.fds.get(fd)? {
        Desc::File(f) => f,
        _ => return Err(Errno::Badf),
    };
    let regular = f.filetype == filetype::REGULAR_FILE;
    let blocking = f.fdflags & fdflags::NONBLOCK == 0;
    let mut total: u64 = 0;
    for v in iovs {
        let buf = cx.mem.slice_mut(v.ptr, v.len)?;
        let n = loop {
            let r = match offset {
                Some(off) => {
                    let at = off.checked_add(total).ok_or(Errno::Overflow)?;
                    rustix::io::pread(&f.fd, &mut *buf, at)
                }
                None => rustix::io::read(&f.fd, &mut *buf),
            };
            match r {
                Ok(n) => break n,
                Err(rustix::io::Errno::AGAIN) if blocking && total == 0 => {
                    let limit = crate::poll::deadline_ns(cx.deadline.deadline().instant())?;
                    if crate::poll::wait_fd(f.fd.as_fd(), false, limit)? == Wait::TimedOut {
                        cx.expired = true;
                        return Err(Errno::Timedout);
                    }
                }
                Err(_) if total > 0 => return Ok(total),
                Err(e) => return Err(e.into()),
            }
        };
        total += n as u64;
        if n < v.len as usize || !regular {
            break;
        }
    }
    Ok(total)
}

/// Reads from the guest's stdin into `iovs`.
pub(crate) fn read_stdin(cx: &mut Cx<'_>, iovs: &[Iovec]) -> Result<u64, Errno> {
    match &mut cx.ctx.stdin {
        StdinState::Null => Ok(0),
        StdinState::Bytes { data, pos } => {
            let rest = data.get(*pos..).unwrap_or_default();
            let n = cx.mem.scatter(iovs, rest)?;
            *pos += n;
            Ok(n as u64)
        }
        StdinState::Inherit => {
            let Some(v) = iovs.first() else { return Ok(0) };
            // The host's stdin may have nothing to read for ever: wait for it only until the
            // invocation's deadline.
            if let Some(limit) = crate::poll::limit_ns(cx)? {
                if !crate::poll::poll_stdin(Some(limit))? {
                    return Err(cx.expire());
                }
            }
            let buf = cx.mem.slice_mut(v.ptr, v.len)?;
            Ok(rustix::io::read(std::io::stdin(), buf)? as u64)
        }
    }
}

pub(crate) fn fd_read(cx: &mut Cx<'_>, a: &Args) -> Result<Ret, Errno> {
    let out = a.u32(3);
    cx.mem.check(out, 4)?;
    let iovs = cx.mem.iovecs(a.u32(1), a.u32(2))?;
    let n = match cx.ctx.fds.get(a.u32(0))? {
        Desc::File(_) => read_file(cx, a.u32(0), &iovs, None)?,
        Desc::Stdin => read_stdin(cx, &iovs)?,
        Desc::Socket(_) => crate::net::recv(cx, a.u32(0), &iovs, false)?,
        _ => return Err(Errno::Badf),
    };
    cx.mem.write_u32(out, n as u32)?;
    Ok(Ret::One("nread", n))
}

pub(crate) fn fd_pread(cx: &mut Cx<'_>, a: &Args) -> Result<Ret, Errno> {
    let out = a.u32(4);
    cx.mem.check(out, 4)?;
    let iovs = cx.mem.iovecs(a.u32(1), a.u32(2))?;
    match cx.ctx.fds.get(a.u32(0))? {
        Desc::File(_) => {}
        Desc::Stdin | Desc::Socket(_) => return Err(Errno::Spipe),
        _ => return Err(Errno::Badf),
    }
    let n = read_file(cx, a.u32(0), &iovs, Some(a.u64(3)))?;
    cx.mem.write_u32(out, n as u32)?;
    Ok(Ret::One("nread", n))
}

/// Writes the buffers of `iovs` to `fd` (at `offset` for `fd_pwrite`).
pub(crate) fn write(
    cx: &mut Cx<'_>,
    fd: u32,
    iovs: &[Iovec],
    offset: Option<u64>,
) -> Result<u64, Errno> {
    match cx.ctx.fds.get(fd)? {
        Desc::Socket(_) if offset.is_some() => return Err(Errno::Spipe),
        Desc::Socket(_) => return crate::net::send(cx, fd, iovs),
        _ => {}
    }
    let bufs = cx.mem.gather(iovs)?;
    let n = match cx.ctx.fds.get(fd)? {
        Desc::File(f) => {
            let slices: smallvec::SmallVec<[IoSlice<'_>; crate::memory::INLINE_IOVECS]> =
                bufs.iter().map(|b| IoSlice::new(b)).collect();
            loop {
                let r = match offset {
                    // On an O_APPEND file Linux appends even here; wasmtime documents the same.
                    Some(off) => rustix::io::pwritev(&f.fd, &slices, off),
                    None => rustix::io::writev(&f.fd, &slices),
                };
                match r {
                    Ok(n) => break n,
                    // As for reads: the host descriptor never blocks, a blocking guest one
                    // waits for room until the deadline.
                    Err(rustix::io::Errno::AGAIN) if f.fdflags & fdflags::NONBLOCK == 0 => {
                        let limit = crate::poll::deadline_ns(cx.deadline.deadline().instant())?;
                        if crate::poll::wait_fd(f.fd.as_fd(), true, limit)? == Wait::TimedOut {
                            cx.expired = true;
                            return Err(Errno::Timedout);
                        }
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Desc::Stdout | Desc::Stderr if offset.is_some() => return Err(Errno::Spipe),
        Desc::Stdout => cx.ctx.stdout.write(Stream::Out, &bufs)?,
        Desc::Stderr => cx.ctx.stderr.write(Stream::Err, &bufs)?,
        _ => return Err(Errno::Badf),
    };
    Ok(n as u64)
}

pub(crate) fn fd_write(cx: &mut Cx<'_>, a: &Args) -> Result<Ret, Errno> {
    let out = a.u32(3);
    cx.mem.check(out, 4)?;
    let iovs = cx.mem.iovecs(a.u32(1), a.u32(2))?;
    let n = write(cx, a.u32(0), &iovs, None)?;
    cx.mem.write_u32(out, n as u32)?;
    Ok(Ret::One("nwritten", n))
}

/// `fd_write`'s write-behind (see [`WriteBehind`]): writes to stdout or stderr captured in
/// memory (or discarded) may be deferred, up to the room left under the output cap, so that
/// deferring never changes what a call answers. Inherited streams are not deferred: their
/// output would reach the terminal late, out of step with the guest.
pub(crate) fn fd_write_behind() -> WriteBehind<WasiCtx> {
    WriteBehind {
        room: write_room,
        replay: write_replay,
        max_iovecs: crate::memory::MAX_IOVECS as u32,
    }
}

/// The output stream `fd` is, if it is one.
fn output(ctx: &mut WasiCtx, fd: u32) -> Option<(Stream, &mut OutputState)> {
    match ctx.fds.get(fd) {
        Ok(Desc::Stdout) => Some((Stream::Out, &mut ctx.stdout)),
        Ok(Desc::Stderr) => Some((Stream::Err, &mut ctx.stderr)),
        _ => None,
    }
}

fn write_room(ctx: &mut WasiCtx, fd: u32) -> u64 {
    match output(ctx, fd) {
        Some((_, out)) => match out.kind {
            Output::Buffer => out.limit.saturating_sub(out.buf.len()) as u64,
            Output::Null => u64::from(u32::MAX),
            Output::Inherit => 0,
        },
        None => 0,
    }
}

fn write_replay(ctx: &mut WasiCtx, args: [u32; 4], bytes: &[u8]) {
    ctx.hostcalls += 1;
    let result = match output(ctx, args[0]) {
        Some((stream, out)) => out
            .write(stream, &[bytes])
            .map(|n| Ret::One("nwritten", n as u64)),
        None => Err(Errno::Badf),
    };
    if let Some(d) = ctx.dmesg.as_deref_mut() {
        d.hostcall("WASI_FD_WRITE", &args.map(u64::from), result);
    }
}

pub(crate) fn fd_pwrite(cx: &mut Cx<'_>, a: &Args) -> Result<Ret, Errno> {
    let out = a.u32(4);
    cx.mem.check(out, 4)?;
    let iovs = cx.mem.iovecs(a.u32(1), a.u32(2))?;
    let n = write(cx, a.u32(0), &iovs, Some(a.u64(3)))?;
    cx.mem.write_u32(out, n as u32)?;
    Ok(Ret::One("nwritten", n))
}

pub(crate) fn fd_prestat_get(cx: &mut Cx<'_>, a: &Args) -> Result<Ret, Errno> {
    let out = a.u32(1);
    cx.mem.check(out, size::PRESTAT)?;
    let name_len = match cx.ctx.fds.get(a.u32(0))? {
        Desc::Dir(crate::fdtable::Dir {
            preopen: Some(p), ..
        }) => u32::try_from(p.len()).map_err(|_| Errno::Overflow)?,
        _ => return Err(Errno::Badf),
    };
    let mut b = [0u8; size::PRESTAT as usize];
    b[0] = PREOPENTYPE_DIR;
    put_u32(&mut b, 4, name_len);
    cx.mem.write_bytes(out, &b)?;
    Ok(Ret::One("pr_name_len", name_len.into()))
}

pub(crate) fn fd_prestat_dir_name(cx: &mut Cx<'_>, a: &Args) -> Result<Ret, Errno> {
    let name = match cx.ctx.fds.get(a.u32(0))? {
        Desc::Dir(crate::fdtable::Dir {
            preopen: Some(p), ..
        }) => p,
        // wasmtime's answer for an open fd that is not a preopen.
        _ => return Err(Errno::Notdir),
    };
    if name.len() > a.u32(2) as usize {
        return Err(Errno::Nametoolong);
    }
    cx.mem.write_bytes(a.u32(1), name.as_bytes())?;
    Ok(Ret::None)
}

pub(crate) fn fd_readdir(cx: &mut Cx<'_>, a: &Args) -> Result<Ret, Errno> {
    let (buf, buf_len, cookie, out) = (a.u32(1), a.u32(2), a.u64(3), a.u32(4));
    cx.mem.check(out, 4)?;
    cx.mem.check(buf, buf_len)?;
    let dir = match cx.ctx.fds.get_mut(a.u32(0))? {
        Desc::Dir(d) => d,
        _ => return Err(Errno::Badf),
    };
    // A listing starting over re-reads the directory; later pages use the same snapshot, so
    // cookies keep meaning the same entry.
    if cookie == 0 || dir.listing.is_none() {
        dir.listing = Some(fs::list_dir(dir.fd.as_fd())?);
    }
    let listing = dir.listing.as_deref().unwrap_or_default();
    let start = usize::try_from(cookie).unwrap_or(usize::MAX);
    let mut at = buf;
    let mut room = buf_len;
    for (i, e) in listing.iter().enumerate().skip(start) {
        if room == 0 {
            break;
        }
        let namlen = u32::try_from(e.name.len()).map_err(|_| Errno::Overflow)?;
        let mut head = [0u8; size::DIRENT as usize];
        put_u64(&mut head, 0, i as u64 + 1);
        put_u64(&mut head, 8, e.ino);
        put_u32(&mut head, 16, namlen);
        head[20] = e.filetype;
        // An entry that does not fit is truncated; the guest sees a full buffer and asks
        // again from the last whole entry's cookie, as preview1 specifies.
        for part in [&head[..], &e.name[..]] {
            let n = room.min(part.len() as u32);
            cx.mem
                .write_bytes(at, part.get(..n as usize).unwrap_or_default())?;
            // Saturating: at the very end of a 4 GiB memory `at` may reach 2^32, and then
            // `room` is 0 and `at` is not used again.
            at = at.saturating_add(n);
            room -= n;
        }
    }
    let used = buf_len - room;
    cx.mem.write_u32(out, used)?;
    Ok(Ret::One("bufused", used.into()))
}

pub(crate) fn fd_renumber(cx: &mut Cx<'_>, a: &Args) -> Result<Ret, Errno> {
    cx.ctx.fds.renumber(a.u32(0), a.u32(1))?;
    Ok(Ret::None)
}

pub(crate) fn fd_seek(cx: &mut Cx<'_>, a: &Args) -> Result<Ret, Errno> {
    let (offset, out) = (a.i64(1), a.u32(3));
    let pos = match a.u32(2) {
        whence::SET => SeekFrom::Start(u64::try_from(offset).map_err(|_| Errno::Inval)?),
        whence::CUR => SeekFrom::Current(offset),
        whence::END => SeekFrom::End(offset),
        _ => return Err(Errno::Inval),
    };
    cx.mem.check(out, 8)?;
    let f = seekable(cx, a.u32(0))?;
    let new = rustix::fs::seek(&f.fd, pos)?;
    cx.mem.write_u64(out, new)?;
    Ok(Ret::One("newoffset", new))
}

pub(crate) fn fd_tell(cx: &mut Cx<'_>, a: &Args) -> Result<Ret, Errno> {
    let out = a.u32(1);
    cx.mem.check(out, 8)?;
    let f = seekable(cx, a.u32(0))?;
    let pos = rustix::fs::tell(&f.fd)?;
    cx.mem.write_u64(out, pos)?;
    Ok(Ret::One("offset", pos))
}
