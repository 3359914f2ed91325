//! WASI preview1 error numbers and the translation from host (Linux) errno values.
//!
//! Every hostcall returns one of these in its first result slot. The numbering is the witx
//! `errno` enum of `wasi_snapshot_preview1`, which differs from Linux's, so every host error
//! goes through [`Errno::from_host`] before a guest sees it.

use std::fmt;

/// A WASI preview1 `errno` (a `u16` in the witx spec, returned as an `i32`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u16)]
#[allow(missing_docs)] // The variants are the POSIX names; `name()` spells them out.
pub enum Errno {
    Success = 0,
    TooBig = 1,
    Acces = 2,
    Addrinuse = 3,
    Addrnotavail = 4,
    Afnosupport = 5,
    Again = 6,
    Already = 7,
    Badf = 8,
    Badmsg = 9,
    Busy = 10,
    Canceled = 11,
    Child = 12,
    Connaborted = 13,
    Connrefused = 14,
    Connreset = 15,
    Deadlk = 16,
    Destaddrreq = 17,
    Dom = 18,
    Dquot = 19,
    Exist = 20,
    Fault = 21,
    Fbig = 22,
    Hostunreach = 23,
    Idrm = 24,
    Ilseq = 25,
    Inprogress = 26,
    Intr = 27,
    Inval = 28,
    Io = 29,
    Isconn = 30,
    Isdir = 31,
    Loop = 32,
    Mfile = 33,
    Mlink = 34,
    Msgsize = 35,
    Multihop = 36,
    Nametoolong = 37,
    Netdown = 38,
    Netreset = 39,
    Netunreach = 40,
    Nfile = 41,
    Nobufs = 42,
    Nodev = 43,
    Noent = 44,
    Noexec = 45,
    Nolck = 46,
    Nolink = 47,
    Nomem = 48,
    Nomsg = 49,
    Noprotoopt = 50,
    Nospc = 51,
    Nosys = 52,
    Notconn = 53,
    Notdir = 54,
    Notempty = 55,
    Notrecoverable = 56,
    Notsock = 57,
    Notsup = 58,
    Notty = 59,
    Nxio = 60,
    Overflow = 61,
    Ownerdead = 62,
    Perm = 63,
    Pipe = 64,
    Proto = 65,
    Protonosupport = 66,
    Prototype = 67,
    Range = 68,
    Rofs = 69,
    Spipe = 70,
    Srch = 71,
    Stale = 72,
    Timedout = 73,
    Txtbsy = 74,
    Xdev = 75,
    Notcapable = 76,
}

impl Errno {
    /// The value the guest sees.
    pub fn raw(self) -> u16 {
        self as u16
    }

    /// The POSIX-style name (`"EBADF"`, `"SUCCESS"` for 0), as dmesg prints it.
    pub fn name(self) -> &'static str {
        use Errno::*;
        match self {
            Success => "SUCCESS",
            TooBig => "E2BIG",
            Acces => "EACCES",
            Addrinuse => "EADDRINUSE",
            Addrnotavail => "EADDRNOTAVAIL",
            Afnosupport => "EAFNOSUPPORT",
            Again => "EAGAIN",
            Already => "EALREADY",
            Badf => "EBADF",
            Badmsg => "EBADMSG",
            Busy => "EBUSY",
            Canceled => "ECANCELED",
            Child => "ECHILD",
            Connaborted => "ECONNABORTED",
            Connrefused => "ECONNREFUSED",
            Connreset => "ECONNRESET",
            Deadlk => "EDEADLK",
            Destaddrreq => "EDESTADDRREQ",
            Dom => "EDOM",
            Dquot => "EDQUOT",
            Exist => "EEXIST",
            Fault => "EFAULT",
            Fbig => "EFBIG",
            Hostunreach => "EHOSTUNREACH",
            Idrm => "EIDRM",
            Ilseq => "EILSEQ",
            Inprogress => "EINPROGRESS",
            Intr => "EINTR",
            Inval => "EINVAL",
            Io => "EIO",
            Isconn => "EISCONN",
            Isdir => "EISDIR",
            Loop => "ELOOP",
            Mfile => "EMFILE",
            Mlink => "EMLINK",
            Msgsize => "EMSGSIZE",
            Multihop => "EMULTIHOP",
            Nametoolong => "ENAMETOOLONG",
            Netdown => "ENETDOWN",
            Netreset => "ENETRESET",
            Netunreach => "ENETUNREACH",
            Nfile => "ENFILE",
            Nobufs => "ENOBUFS",
            Nodev => "ENODEV",
            Noent => "ENOENT",
            Noexec => "ENOEXEC",
            Nolck => "ENOLCK",
            Nolink => "ENOLINK",
            Nomem => "ENOMEM",
            Nomsg => "ENOMSG",
            Noprotoopt => "ENOPROTOOPT",
            Nospc => "ENOSPC",
            Nosys => "ENOSYS",
            Notconn => "ENOTCONN",
            Notdir => "ENOTDIR",
            Notempty => "ENOTEMPTY",
            Notrecoverable => "ENOTRECOVERABLE",
            Notsock => "ENOTSOCK",
            Notsup => "ENOTSUP",
            Notty => "ENOTTY",
            Nxio => "ENXIO",
            Overflow => "EOVERFLOW",
            Ownerdead => "EOWNERDEAD",
            Perm => "EPERM",
            Pipe => "EPIPE",
            Proto => "EPROTO",
            Protonosupport => "EPROTONOSUPPORT",
            Prototype => "EPROTOTYPE",
            Range => "ERANGE",
            Rofs => "EROFS",
            Spipe => "ESPIPE",
            Srch => "ESRCH",
            Stale => "ESTALE",
            Timedout => "ETIMEDOUT",
            Txtbsy => "ETXTBSY",
            Xdev => "EXDEV",
            Notcapable => "ENOTCAPABLE",
        }
    }

    /// Translates a Linux errno. Values WASI has no name for become `EIO`, which is what a
    /// guest can least misinterpret.
    pub fn from_host(err: rustix::io::Errno) -> Errno {
        Self::from_raw_os_error(err.raw_os_error())
    }

    /// Translates a `std::io::Error`; errors that carry no OS code become `EIO`.
    pub fn from_io(err: &std::io::Error) -> Errno {
        match err.raw_os_error() {
            Some(code) => Self::from_raw_os_error(code),
            None => Errno::Io,
        }
    }

    /// Translates a raw Linux errno value (as in `errno(3)`).
    pub fn from_raw_os_error(code: i32) -> Errno {
        use Errno::*;
        // Aliases (EWOULDBLOCK = EAGAIN, EDEADLOCK = EDEADLK, EOPNOTSUPP = ENOTSUP) share a
        // number on Linux, so listing the canonical name covers them.
        match code {
            0 => Success,
            libc::E2BIG => TooBig,
            libc::EACCES => Acces,
            libc::EADDRINUSE => Addrinuse,
            libc::EADDRNOTAVAIL => Addrnotavail,
            libc::EAFNOSUPPORT => Afnosupport,
            libc::EAGAIN => Again,
            libc::EALREADY => Already,
            libc::EBADF => Badf,
            libc::EBADMSG => Badmsg,
            libc::EBUSY => Busy,
            libc::ECANCELED => Canceled,
            libc::ECHILD => Child,
            libc::ECONNABORTED => Connaborted,
            libc::ECONNREFUSED => Connrefused,
            libc::ECONNRESET => Connreset,
            libc::EDEADLK => Deadlk,
            libc::EDESTADDRREQ => Destaddrreq,
            libc::EDOM => Dom,
            libc::EDQUOT => Dquot,
            libc::EEXIST => Exist,
            libc::EFAULT => Fault,
            libc::EFBIG => Fbig,
            libc::EHOSTUNREACH => Hostunreach,
            libc::EIDRM => Idrm,
            libc::EILSEQ => Ilseq,
            libc::EINPROGRESS => Inprogress,
            libc::EINTR => Intr,
            libc::EINVAL => Inval,
            libc::EIO => Io,
            libc::EISCONN => Isconn,
            libc::EISDIR => Isdir,
            libc::ELOOP => Loop,
            libc::EMFILE => Mfile,
            libc::EMLINK => Mlink,
            libc::EMSGSIZE => Msgsize,
            libc::EMULTIHOP => Multihop,
            libc::ENAMETOOLONG => Nametoolong,
            libc::ENETDOWN => Netdown,
            libc::ENETRESET => Netreset,
            libc::ENETUNREACH => Netunreach,
            libc::ENFILE => Nfile,
            libc::ENOBUFS => Nobufs,
            libc::ENODEV => Nodev,
            libc::ENOENT => Noent,
            libc::ENOEXEC => Noexec,
            libc::ENOLCK => Nolck,
            libc::ENOLINK => Nolink,
            libc::ENOMEM => Nomem,
            libc::ENOMSG => Nomsg,
            libc::ENOPROTOOPT => Noprotoopt,
            libc::ENOSPC => Nospc,
            libc::ENOSYS => Nosys,
            libc::ENOTCONN => Notconn,
            libc::ENOTDIR => Notdir,
            libc::ENOTEMPTY => Notempty,
            libc::ENOTRECOVERABLE => Notrecoverable,
            libc::ENOTSOCK => Notsock,
            libc::ENOTSUP => Notsup,
            libc::ENOTTY => Notty,
            libc::ENXIO => Nxio,
            libc::EOVERFLOW => Overflow,
            libc::EOWNERDEAD => Ownerdead,
            libc::EPERM => Perm,
            libc::EPIPE => Pipe,
            libc::EPROTO => Proto,
            libc::EPROTONOSUPPORT => Protonosupport,
            libc::EPROTOTYPE => Prototype,
            libc::ERANGE => Range,
            libc::EROFS => Rofs,
            libc::ESPIPE => Spipe,
            libc::ESRCH => Srch,
            libc::ESTALE => Stale,
            libc::ETIMEDOUT => Timedout,
            libc::ETXTBSY => Txtbsy,
            libc::EXDEV => Xdev,
            _ => Io,
        }
    }
}

impl From<rustix::io::Errno> for Errno {
    fn from(err: rustix::io::Errno) -> Errno {
        Errno::from_host(err)
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::error::Error for Errno {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbering_matches_witx() {
        assert_eq!(Errno::Success.raw(), 0);
        assert_eq!(Errno::Badf.raw(), 8);
        assert_eq!(Errno::Fault.raw(), 21);
        assert_eq!(Errno::Inval.raw(), 28);
        assert_eq!(Errno::Noent.raw(), 44);
        assert_eq!(Errno::Perm.raw(), 63);
        assert_eq!(Errno::Notcapable.raw(), 76);
    }

    #[test]
    fn host_translation() {
        assert_eq!(Errno::from_host(rustix::io::Errno::NOENT), Errno::Noent);
        assert_eq!(
            Errno::from_host(rustix::io::Errno::WOULDBLOCK),
            Errno::Again
        );
        assert_eq!(
            Errno::from_host(rustix::io::Errno::OPNOTSUPP),
            Errno::Notsup
        );
        assert_eq!(Errno::from_host(rustix::io::Errno::XDEV), Errno::Xdev);
        // Linux-only errnos with no WASI name.
        assert_eq!(Errno::from_host(rustix::io::Errno::NOMEDIUM), Errno::Io);
        assert_eq!(Errno::TooBig.name(), "E2BIG");
    }
}
