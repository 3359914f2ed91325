//! Confinement of guest paths to their preopened directory, and host/WASI filesystem glue.
//!
//! Every path a guest names is resolved by the kernel with `openat2(dirfd, path,
//! RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)`: absolute paths, `..` above the directory and
//! symlinks (absolute, or relative but leading outside) all fail there, atomically, with
//! `EXDEV`, which the guest sees as `EPERM` (what wasmtime/cap-std answer for an escape).
//! Operations that are not opens (mkdir, unlink, rename, link, symlink, readlink) resolve the
//! *parent* directory that way and then apply the `*at` syscall to the last component only,
//! which never follows a symlink out. Operations on an object that may be a symlink to follow
//! (stat, utimes) open the object itself beneath the directory with `O_PATH` and act on that
//! fd. No path string is ever interpreted by this code beyond splitting off its last component.

use crate::errno::Errno;
use crate::fdtable::Listed;
use crate::types::{filetype, fstflags};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags, Stat, Timestamps};
use rustix::time::Timespec;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

/// How every guest path is resolved.
const RESOLVE: ResolveFlags = ResolveFlags::BENEATH.union(ResolveFlags::NO_MAGICLINKS);

/// Longest path accepted, as Linux's `PATH_MAX`; checked before the path is copied anywhere.
pub(crate) const MAX_PATH: u32 = 4096;

/// `openat2` may answer `EAGAIN` when a concurrent rename races a `..` lookup; retried this
/// many times before giving up.
const AGAIN_RETRIES: u32 = 16;

/// Whether `openat2` works on this kernel (`Err(ENOSYS)` if not).
pub(crate) fn probe_openat2(dir: BorrowedFd<'_>) -> Result<(), Errno> {
    open_beneath(dir, ".", OFlags::PATH | OFlags::DIRECTORY, Mode::empty()).map(drop)
}

/// Rejects paths no resolution needs to see: empty (`ENOENT`, like Linux), absolute (`EPERM`,
/// an escape) or too long.
fn check_path(path: &str) -> Result<(), Errno> {
    if path.is_empty() {
        return Err(Errno::Noent);
    }
    if path.starts_with('/') {
        return Err(Errno::Perm);
    }
    if path.len() > MAX_PATH as usize {
        return Err(Errno::Nametoolong);
    }
    Ok(())
}

/// Opens `path` beneath `dir`. `EXDEV` (an escape attempt) becomes `EPERM`.
pub(crate) fn open_beneath(
    dir: BorrowedFd<'_>,
    path: &str,
    flags: OFlags,
    mode: Mode,
) -> Result<OwnedFd, Errno> {
    check_path(path)?;
    let mut tries = 0;
    loop {
        match rustix::fs::openat2(dir, path, flags | OFlags::CLOEXEC, mode, RESOLVE) {
            Ok(fd) => return Ok(fd),
            Err(e) if e == rustix::io::Errno::AGAIN && tries < AGAIN_RETRIES => tries += 1,
            Err(e) if e == rustix::io::Errno::INTR => {}
            Err(e) if e == rustix::io::Errno::XDEV => return Err(Errno::Perm),
            Err(e) => return Err(Errno::from_host(e)),
        }
    }
}

/// The directory a path's last component lives in: the starting directory itself or one
/// opened beneath it.
pub(crate) enum Parent<'d> {
    Same(BorrowedFd<'d>),
    Opened(OwnedFd),
}

impl AsFd for Parent<'_> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Parent::Same(fd) => *fd,
            Parent::Opened(fd) => fd.as_fd(),
        }
    }
}

/// Splits `path` into its parent directory, opened beneath `dir` (`O_PATH`), and its last
/// component. The component keeps any trailing slashes, so the `*at` call applies the usual
/// "must be a directory" rule itself. A last component of `.` or `..` is resolved as part of
/// the parent (which keeps `..` beneath `dir`) and replaced by `.`, so the `*at` call never
/// sees a `..` it could climb with.
pub(crate) fn parent<'p, 'd>(
    dir: BorrowedFd<'d>,
    path: &'p str,
) -> Result<(Parent<'d>, &'p str), Errno> {
    check_path(path)?;
    let trimmed = path.trim_end_matches('/');
    let (head, last) = match trimmed.rfind('/') {
        Some(i) => (
            trimmed.get(..i).unwrap_or(""),
            trimmed.get(i + 1..).unwrap_or(""),
        ),
        None => ("", trimmed),
    };
    let dirflags = OFlags::PATH | OFlags::DIRECTORY;
    if last == "." || last == ".." {
        let fd = open_beneath(dir, trimmed, dirflags, Mode::empty())?;
        return Ok((Parent::Opened(fd), "."));
    }
    let name = path.get(trimmed.len() - last.len()..).unwrap_or(last);
    if head.is_empty() {
        Ok((Parent::Same(dir), name))
    } else {
        let fd = open_beneath(dir, head, dirflags, Mode::empty())?;
        Ok((Parent::Opened(fd), name))
    }
}

/// Whether `path` ends in a slash (such a last component is followed and must be a directory).
pub(crate) fn has_trailing_slash(path: &str) -> bool {
    path.ends_with('/')
}

/// Opens the object `path` names beneath `dir` as an `O_PATH` fd, following a final symlink
/// only if `follow` (or if the path ends in a slash, as the kernel does).
pub(crate) fn open_object(dir: BorrowedFd<'_>, path: &str, follow: bool) -> Result<OwnedFd, Errno> {
    let mut flags = OFlags::PATH;
    if !follow {
        flags |= OFlags::NOFOLLOW;
    }
    open_beneath(dir, path, flags, Mode::empty())
}

/// `stat` of `path` beneath `dir`.
pub(crate) fn stat_at(dir: BorrowedFd<'_>, path: &str, follow: bool) -> Result<Stat, Errno> {
    let fd = open_object(dir, path, follow)?;
    rustix::fs::fstat(&fd).map_err(Errno::from_host)
}

/// Sets the timestamps of `path` beneath `dir` (of the symlink itself unless `follow`).
pub(crate) fn utimes_at(
    dir: BorrowedFd<'_>,
    path: &str,
    follow: bool,
    times: &Timestamps,
) -> Result<(), Errno> {
    let fd = open_object(dir, path, follow)?;
    // `AT_EMPTY_PATH` acts on the O_PATH fd itself, which is the symlink when not following.
    rustix::fs::utimensat(
        &fd,
        "",
        times,
        AtFlags::EMPTY_PATH | AtFlags::SYMLINK_NOFOLLOW,
    )
    .map_err(Errno::from_host)
}

/// WASI `filetype` of a host `st_mode`. FIFOs have no preview1 code (wasmtime says unknown).
pub(crate) fn filetype_of_mode(mode: u32) -> u8 {
    filetype_of(FileType::from_raw_mode(mode as _))
}

/// WASI `filetype` of a host file type.
fn filetype_of(t: FileType) -> u8 {
    match t {
        FileType::RegularFile => filetype::REGULAR_FILE,
        FileType::Directory => filetype::DIRECTORY,
        FileType::Symlink => filetype::SYMBOLIC_LINK,
        FileType::CharacterDevice => filetype::CHARACTER_DEVICE,
        FileType::BlockDevice => filetype::BLOCK_DEVICE,
        FileType::Socket => filetype::SOCKET_STREAM,
        _ => filetype::UNKNOWN,
    }
}

/// Nanoseconds since the epoch; times before it are reported as 0 (preview1 timestamps are
/// unsigned).
fn nanos(sec: i64, nsec: u64) -> u64 {
    if sec < 0 {
        return 0;
    }
    (sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(nsec)
}

/// The 64-byte preview1 `filestat` of a host `stat`.
#[allow(clippy::unnecessary_cast)] // `Stat` field types differ between architectures.
pub(crate) fn filestat_bytes(st: &Stat) -> [u8; 64] {
    encode_filestat(
        st.st_dev as u64,
        st.st_ino as u64,
        filetype_of_mode(st.st_mode as u32),
        st.st_nlink as u64,
        st.st_size.max(0) as u64,
        nanos(st.st_atime as i64, st.st_atime_nsec as u64),
        nanos(st.st_mtime as i64, st.st_mtime_nsec as u64),
        nanos(st.st_ctime as i64, st.st_ctime_nsec as u64),
    )
}

/// Lays out a `filestat`: dev@0, ino@8, filetype@16, nlink@24, size@32, atim@40, mtim@48,
/// ctim@56.
#[allow(clippy::too_many_arguments)] // One argument per field of the struct it encodes.
pub(crate) fn encode_filestat(
    dev: u64,
    ino: u64,
    ft: u8,
    nlink: u64,
    size: u64,
    atim: u64,
    mtim: u64,
    ctim: u64,
) -> [u8; 64] {
    let mut b = [0u8; 64];
    put_u64(&mut b, 0, dev);
    put_u64(&mut b, 8, ino);
    b[16] = ft;
    put_u64(&mut b, 24, nlink);
    put_u64(&mut b, 32, size);
    put_u64(&mut b, 40, atim);
    put_u64(&mut b, 48, mtim);
    put_u64(&mut b, 56, ctim);
    b
}

/// Stores `v` little-endian at `at` in a fixed-size host buffer (offsets are constants).
pub(crate) fn put_u64(buf: &mut [u8], at: usize, v: u64) {
    if let Some(dst) = buf.get_mut(at..at + 8) {
        dst.copy_from_slice(&v.to_le_bytes());
    }
}

/// Stores `v` little-endian at `at`.
pub(crate) fn put_u32(buf: &mut [u8], at: usize, v: u32) {
    if let Some(dst) = buf.get_mut(at..at + 4) {
        dst.copy_from_slice(&v.to_le_bytes());
    }
}

/// Stores `v` little-endian at `at`.
pub(crate) fn put_u16(buf: &mut [u8], at: usize, v: u16) {
    if let Some(dst) = buf.get_mut(at..at + 2) {
        dst.copy_from_slice(&v.to_le_bytes());
    }
}

/// The `Timestamps` for `utimensat`/`futimens` from preview1 arguments. Setting a time and
/// "now" at once, or undefined flag bits, is `EINVAL`.
pub(crate) fn timestamps(atim: u64, mtim: u64, fst: u32) -> Result<Timestamps, Errno> {
    if fst & !(fstflags::ALL as u32) != 0 {
        return Err(Errno::Inval);
    }
    let fst = fst as u16;
    let one = |set: u16, now: u16, t: u64| -> Result<Timespec, Errno> {
        match (fst & set != 0, fst & now != 0) {
            (true, true) => Err(Errno::Inval),
            (true, false) => Ok(Timespec {
                tv_sec: (t / 1_000_000_000) as i64,
                tv_nsec: (t % 1_000_000_000) as _,
            }),
            (false, true) => Ok(Timespec {
                tv_sec: 0,
                tv_nsec: rustix::fs::UTIME_NOW,
            }),
            (false, false) => Ok(Timespec {
                tv_sec: 0,
                tv_nsec: rustix::fs::UTIME_OMIT,
            }),
        }
    };
    Ok(Timestamps {
        last_access: one(fstflags::ATIM, fstflags::ATIM_NOW, atim)?,
        last_modification: one(fstflags::MTIM, fstflags::MTIM_NOW, mtim)?,
    })
}

/// Reads the whole directory `dir` for `fd_readdir`: `.` and `..` first (both with the
/// directory's own inode, as wasmtime does, so nothing about the parent of a preopen leaks),
/// then the entries in host order. Each entry is `lstat`ed for its inode and type, since
/// `d_ino` can differ from `st_ino` (overlayfs) and `d_type` can be unknown.
#[allow(clippy::unnecessary_cast)] // `Stat` field types differ between architectures.
pub(crate) fn list_dir(dir: BorrowedFd<'_>) -> Result<Vec<Listed>, Errno> {
    let own = rustix::fs::fstat(dir).map_err(Errno::from_host)?;
    let mut out = vec![
        Listed {
            name: b".".to_vec(),
            ino: own.st_ino as u64,
            filetype: filetype::DIRECTORY,
        },
        Listed {
            name: b"..".to_vec(),
            ino: own.st_ino as u64,
            filetype: filetype::DIRECTORY,
        },
    ];
    let mut d = rustix::fs::Dir::read_from(dir).map_err(Errno::from_host)?;
    while let Some(entry) = d.read() {
        let entry = entry.map_err(Errno::from_host)?;
        let name = entry.file_name();
        let bytes = name.to_bytes();
        if bytes == b"." || bytes == b".." {
            continue;
        }
        let (ino, ft) = match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => (st.st_ino as u64, filetype_of_mode(st.st_mode as u32)),
            // Removed meanwhile: report what the directory said.
            Err(_) => (entry.ino(), filetype_of(entry.file_type())),
        };
        out.push(Listed {
            name: bytes.to_vec(),
            ino,
            filetype: ft,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_validation() {
        assert_eq!(
            timestamps(0, 0, (fstflags::ATIM | fstflags::ATIM_NOW) as u32).unwrap_err(),
            Errno::Inval
        );
        assert_eq!(
            timestamps(0, 0, (fstflags::MTIM | fstflags::MTIM_NOW) as u32).unwrap_err(),
            Errno::Inval
        );
        assert_eq!(timestamps(0, 0, 0x10).unwrap_err(), Errno::Inval);
        let t = timestamps(1_500_000_000, 0, fstflags::ATIM as u32).unwrap();
        assert_eq!(t.last_access.tv_sec, 1);
        assert_eq!(t.last_access.tv_nsec, 500_000_000);
        assert_eq!(t.last_modification.tv_nsec, rustix::fs::UTIME_OMIT);
    }

    #[test]
    fn path_checks() {
        assert_eq!(check_path(""), Err(Errno::Noent));
        assert_eq!(check_path("/etc"), Err(Errno::Perm));
        assert_eq!(check_path(&"a".repeat(5000)), Err(Errno::Nametoolong));
        assert!(check_path("a/b").is_ok());
    }
}
