//! The numbers and layouts of `wasi_snapshot_preview1` (the witx spec), as plain constants.
//!
//! Flags and enums arrive from the guest as raw integers; the hostcalls validate them against
//! the masks here (undefined bits are `EINVAL`, as wasmtime's generated bindings do) and encode
//! structs byte by byte at the offsets listed below, little-endian, never by transmuting.

#![allow(missing_docs)] // Each constant is the witx name of the same thing.

/// `rights` bits (u64).
pub mod rights {
    pub const FD_DATASYNC: u64 = 1 << 0;
    pub const FD_READ: u64 = 1 << 1;
    pub const FD_SEEK: u64 = 1 << 2;
    pub const FD_FDSTAT_SET_FLAGS: u64 = 1 << 3;
    pub const FD_SYNC: u64 = 1 << 4;
    pub const FD_TELL: u64 = 1 << 5;
    pub const FD_WRITE: u64 = 1 << 6;
    pub const FD_ADVISE: u64 = 1 << 7;
    pub const FD_ALLOCATE: u64 = 1 << 8;
    pub const PATH_CREATE_DIRECTORY: u64 = 1 << 9;
    pub const PATH_CREATE_FILE: u64 = 1 << 10;
    pub const PATH_LINK_SOURCE: u64 = 1 << 11;
    pub const PATH_LINK_TARGET: u64 = 1 << 12;
    pub const PATH_OPEN: u64 = 1 << 13;
    pub const FD_READDIR: u64 = 1 << 14;
    pub const PATH_READLINK: u64 = 1 << 15;
    pub const PATH_RENAME_SOURCE: u64 = 1 << 16;
    pub const PATH_RENAME_TARGET: u64 = 1 << 17;
    pub const PATH_FILESTAT_GET: u64 = 1 << 18;
    pub const PATH_FILESTAT_SET_SIZE: u64 = 1 << 19;
    pub const PATH_FILESTAT_SET_TIMES: u64 = 1 << 20;
    pub const FD_FILESTAT_GET: u64 = 1 << 21;
    pub const FD_FILESTAT_SET_SIZE: u64 = 1 << 22;
    pub const FD_FILESTAT_SET_TIMES: u64 = 1 << 23;
    pub const PATH_SYMLINK: u64 = 1 << 24;
    pub const PATH_REMOVE_DIRECTORY: u64 = 1 << 25;
    pub const PATH_UNLINK_FILE: u64 = 1 << 26;
    pub const POLL_FD_READWRITE: u64 = 1 << 27;
    pub const SOCK_SHUTDOWN: u64 = 1 << 28;
    pub const SOCK_ACCEPT: u64 = 1 << 29;
    /// Every defined bit.
    pub const ALL: u64 = (1 << 30) - 1;

    /// What a directory descriptor reports as base rights. This is the set wasmtime hard-codes
    /// for preopens and that userlands (and wasi-testsuite) expect to find; notably it lacks
    /// `FD_SEEK` and the `*_SET_SIZE` rights.
    pub const DIRECTORY_BASE: u64 = PATH_CREATE_DIRECTORY
        | PATH_CREATE_FILE
        | PATH_LINK_SOURCE
        | PATH_LINK_TARGET
        | PATH_OPEN
        | FD_READDIR
        | PATH_READLINK
        | PATH_RENAME_SOURCE
        | PATH_RENAME_TARGET
        | PATH_SYMLINK
        | PATH_REMOVE_DIRECTORY
        | PATH_UNLINK_FILE
        | PATH_FILESTAT_GET
        | PATH_FILESTAT_SET_TIMES
        | FD_FILESTAT_GET
        | FD_FILESTAT_SET_TIMES;

    /// Rights meaningful on a regular file (no `path_*` rights: a file is not a directory).
    pub const FILE: u64 = FD_DATASYNC
        | FD_READ
        | FD_SEEK
        | FD_FDSTAT_SET_FLAGS
        | FD_SYNC
        | FD_TELL
        | FD_WRITE
        | FD_ADVISE
        | FD_ALLOCATE
        | FD_FILESTAT_GET
        | FD_FILESTAT_SET_SIZE
        | FD_FILESTAT_SET_TIMES
        | POLL_FD_READWRITE;

    /// Rights of a connected stream socket.
    pub const SOCKET: u64 = FD_READ
        | FD_WRITE
        | FD_FDSTAT_SET_FLAGS
        | FD_FILESTAT_GET
        | POLL_FD_READWRITE
        | SOCK_SHUTDOWN;

    /// What a directory passes on to what is opened beneath it.
    pub const DIRECTORY_INHERITING: u64 = DIRECTORY_BASE | FILE;
}

/// `filetype` (u8).
pub mod filetype {
    pub const UNKNOWN: u8 = 0;
    pub const BLOCK_DEVICE: u8 = 1;
    pub const CHARACTER_DEVICE: u8 = 2;
    pub const DIRECTORY: u8 = 3;
    pub const REGULAR_FILE: u8 = 4;
    pub const SOCKET_DGRAM: u8 = 5;
    pub const SOCKET_STREAM: u8 = 6;
    pub const SYMBOLIC_LINK: u8 = 7;
}

/// `fdflags` (u16).
pub mod fdflags {
    pub const APPEND: u16 = 1 << 0;
    pub const DSYNC: u16 = 1 << 1;
    pub const NONBLOCK: u16 = 1 << 2;
    pub const RSYNC: u16 = 1 << 3;
    pub const SYNC: u16 = 1 << 4;
    pub const ALL: u16 = (1 << 5) - 1;
}

/// `oflags` (u16).
pub mod oflags {
    pub const CREAT: u16 = 1 << 0;
    pub const DIRECTORY: u16 = 1 << 1;
    pub const EXCL: u16 = 1 << 2;
    pub const TRUNC: u16 = 1 << 3;
    pub const ALL: u16 = (1 << 4) - 1;
}

/// `lookupflags` (u32).
pub mod lookupflags {
    pub const SYMLINK_FOLLOW: u32 = 1 << 0;
    pub const ALL: u32 = 1;
}

/// `fstflags` (u16).
pub mod fstflags {
    pub const ATIM: u16 = 1 << 0;
    pub const ATIM_NOW: u16 = 1 << 1;
    pub const MTIM: u16 = 1 << 2;
    pub const MTIM_NOW: u16 = 1 << 3;
    pub const ALL: u16 = (1 << 4) - 1;
}

/// `whence` (u8).
pub mod whence {
    pub const SET: u32 = 0;
    pub const CUR: u32 = 1;
    pub const END: u32 = 2;
}

/// `clockid` (u32).
pub mod clockid {
    pub const REALTIME: u32 = 0;
    pub const MONOTONIC: u32 = 1;
    pub const PROCESS_CPUTIME_ID: u32 = 2;
    pub const THREAD_CPUTIME_ID: u32 = 3;
}

/// `advice` (u8): normal, sequential, random, willneed, dontneed, noreuse.
pub mod advice {
    pub const NORMAL: u32 = 0;
    pub const SEQUENTIAL: u32 = 1;
    pub const RANDOM: u32 = 2;
    pub const WILLNEED: u32 = 3;
    pub const DONTNEED: u32 = 4;
    pub const NOREUSE: u32 = 5;
}

/// `eventtype` (u8).
pub mod eventtype {
    pub const CLOCK: u8 = 0;
    pub const FD_READ: u8 = 1;
    pub const FD_WRITE: u8 = 2;
}

/// `subclockflags` (u16).
pub mod subclockflags {
    pub const ABSTIME: u16 = 1 << 0;
}

/// `eventrwflags` (u16).
pub mod eventrwflags {
    pub const FD_READWRITE_HANGUP: u16 = 1 << 0;
}

/// `riflags` (u16) and `sdflags` (u8) masks; `siflags` has no bits.
pub mod sock {
    pub const RECV_PEEK: u32 = 1 << 0;
    pub const RECV_WAITALL: u32 = 1 << 1;
    pub const SHUT_RD: u32 = 1 << 0;
    pub const SHUT_WR: u32 = 1 << 1;
    pub const RIFLAGS_ALL: u32 = 0b11;
    pub const SDFLAGS_ALL: u32 = 0b11;
}

/// `preopentype` (u8).
pub const PREOPENTYPE_DIR: u8 = 0;

/// Largest `signal` value (`SIGSYS`).
pub const SIGNAL_MAX: u32 = 30;

/// Sizes of the structs the guest passes or receives.
pub mod size {
    pub const IOVEC: u32 = 8;
    pub const FDSTAT: u32 = 24;
    pub const FILESTAT: u32 = 64;
    pub const PRESTAT: u32 = 8;
    pub const DIRENT: u32 = 24;
    pub const SUBSCRIPTION: u32 = 48;
    pub const EVENT: u32 = 32;
}
