//! The guest's file descriptor table.
//!
//! A guest fd is an index into a slab of [`Desc`] entries. Numbers freed by `fd_close` or
//! `fd_renumber` are reused lowest first (like POSIX `open`); the table is capped so a guest
//! cannot exhaust host fds. The three stdio entries are markers: the streams themselves live in
//! the context, so closing or renumbering fd 1 never loses captured output.

use crate::errno::Errno;
use std::collections::BTreeSet;
use std::os::fd::OwnedFd;

/// Default cap on open guest descriptors.
pub const DEFAULT_MAX_FDS: u32 = 4096;

/// One directory entry as `fd_readdir` reports it.
#[derive(Clone, Debug)]
pub(crate) struct Listed {
    pub name: Vec<u8>,
    pub ino: u64,
    pub filetype: u8,
}

/// An open regular file (or other non-directory the guest opened by path).
#[derive(Debug)]
pub(crate) struct File {
    pub fd: OwnedFd,
    /// WASI `filetype` of what was opened.
    pub filetype: u8,
    /// Opened for reading / writing (what `fdstat` rights report).
    pub read: bool,
    pub write: bool,
    /// WASI `fdflags` in effect (`APPEND` is also applied to the host fd; `NONBLOCK` is only
    /// recorded, as wasmtime does, since regular files never block).
    pub fdflags: u16,
}

/// An open directory.
#[derive(Debug)]
pub(crate) struct Dir {
    pub fd: OwnedFd,
    /// The guest path it was preopened as, `None` if the guest opened it.
    pub preopen: Option<String>,
    /// The snapshot `fd_readdir` serves cookies from: refreshed when a listing starts over
    /// (cookie 0), so cookies stay stable while the guest pages through it.
    pub listing: Option<Vec<Listed>>,
}

/// What a guest fd refers to.
#[derive(Debug)]
pub(crate) enum Desc {
    Stdin,
    Stdout,
    Stderr,
    File(File),
    Dir(Dir),
    /// An outbound connection (`host_tcp_connect` / `host_tls_connect`); boxed, as a TLS
    /// session is large.
    Socket(Box<crate::net::socket::Socket>),
}

/// The table.
#[derive(Debug)]
pub(crate) struct FdTable {
    slots: Vec<Option<Desc>>,
    free: BTreeSet<u32>,
    max: u32,
}

impl FdTable {
    pub fn new(max: u32) -> Self {
        FdTable {
            // Stdio and a preopen or two without growing.
            slots: Vec::with_capacity(8),
            free: BTreeSet::new(),
            max,
        }
    }

    pub fn get(&self, fd: u32) -> Result<&Desc, Errno> {
        self.slots
            .get(fd as usize)
            .and_then(Option::as_ref)
            .ok_or(Errno::Badf)
    }

    pub fn get_mut(&mut self, fd: u32) -> Result<&mut Desc, Errno> {
        self.slots
            .get_mut(fd as usize)
            .and_then(Option::as_mut)
            .ok_or(Errno::Badf)
    }

    /// Stores `desc` under the lowest free number.
    pub fn insert(&mut self, desc: Desc) -> Result<u32, Errno> {
        if let Some(fd) = self.free.pop_first() {
            if let Some(slot) = self.slots.get_mut(fd as usize) {
                *slot = Some(desc);
                return Ok(fd);
            }
        }
        let fd = u32::try_from(self.slots.len()).map_err(|_| Errno::Mfile)?;
        if fd >= self.max {
            return Err(Errno::Mfile);
        }
        self.slots.push(Some(desc));
        Ok(fd)
    }

    /// Takes `fd` out of the table (`EBADF` if it is not open).
    pub fn remove(&mut self, fd: u32) -> Result<Desc, Errno> {
        let desc = self
            .slots
            .get_mut(fd as usize)
            .and_then(Option::take)
            .ok_or(Errno::Badf)?;
        self.free.insert(fd);
        Ok(desc)
    }

    /// `fd_renumber`: moves `from` to `to`, closing what `to` held. Both must be open, as in
    /// wasmtime (POSIX `dup2` would accept a closed `to`; preview1 does not).
    pub fn renumber(&mut self, from: u32, to: u32) -> Result<(), Errno> {
        self.get(from)?;
        self.get(to)?;
        if from == to {
            return Ok(());
        }
        let desc = self.remove(from)?;
        if let Some(slot) = self.slots.get_mut(to as usize) {
            // Dropping the old entry closes its host fd.
            *slot = Some(desc);
        }
        Ok(())
    }

    /// Open descriptors in number order.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &Desc)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, d)| d.as_ref().map(|d| (i as u32, d)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowest_first_reuse() {
        let mut t = FdTable::new(8);
        assert_eq!(t.insert(Desc::Stdin).unwrap(), 0);
        assert_eq!(t.insert(Desc::Stdout).unwrap(), 1);
        assert_eq!(t.insert(Desc::Stderr).unwrap(), 2);
        assert_eq!(t.insert(Desc::Stdin).unwrap(), 3);
        t.remove(1).unwrap();
        t.remove(2).unwrap();
        assert_eq!(t.remove(2).unwrap_err(), Errno::Badf);
        assert_eq!(t.insert(Desc::Stdin).unwrap(), 1);
        assert_eq!(t.insert(Desc::Stdin).unwrap(), 2);
        assert_eq!(t.insert(Desc::Stdin).unwrap(), 4);
    }

    #[test]
    fn renumber_and_cap() {
        let mut t = FdTable::new(3);
        t.insert(Desc::Stdin).unwrap();
        t.insert(Desc::Stdout).unwrap();
        t.insert(Desc::Stderr).unwrap();
        assert_eq!(t.insert(Desc::Stdin).unwrap_err(), Errno::Mfile);
        assert_eq!(t.renumber(0, 7).unwrap_err(), Errno::Badf);
        t.renumber(0, 2).unwrap();
        assert!(matches!(t.get(2), Ok(Desc::Stdin)));
        assert_eq!(t.get(0).unwrap_err(), Errno::Badf);
        t.renumber(1, 1).unwrap();
        assert_eq!(t.insert(Desc::Stdout).unwrap(), 0);
    }
}
