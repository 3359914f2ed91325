//! Tests that drive the hostcalls the way the runtime does: through the table's `HostFn`s, a
//! `Caller` over a plain byte vector standing in for linear memory, and a real `WasiCtx`.

mod fs;
mod misc;
mod net;
mod net_tls;

use crate::types::{fdflags, lookupflags, oflags, rights};
use crate::{lookup, Errno, WasiCtx, WasiCtxBuilder, FNVM_MODULE, WASI_MODULE};
use fnvm_host_interface::{Caller, Deadline, HostExit};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

/// Size of the test guest's memory.
pub(crate) const MEM: usize = 64 * 1024;
/// Where tests put strings.
pub(crate) const STR: u32 = 0x1000;
/// A second string area.
pub(crate) const STR2: u32 = 0x2000;
/// Where tests put iovec arrays.
pub(crate) const IOV: u32 = 0x3000;
/// Data buffers.
pub(crate) const BUF: u32 = 0x4000;
/// Result pointers.
pub(crate) const OUT: u32 = 0x100;

/// A directory under the system temp dir, removed on drop.
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    pub(crate) fn new() -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "fnvm-hostcalls-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A guest: memory plus context.
pub(crate) struct Guest {
    pub mem: Vec<u8>,
    pub ctx: WasiCtx,
    /// The invocation deadline the hostcalls see.
    pub deadline: Deadline<'static>,
}

impl Guest {
    pub(crate) fn new(builder: WasiCtxBuilder) -> Guest {
        Guest {
            mem: vec![0; MEM],
            ctx: builder.build().unwrap(),
            deadline: Deadline::NEVER,
        }
    }

    /// A guest whose fd 3 is `dir` preopened as `/sandbox`.
    pub(crate) fn with_dir(dir: &TempDir) -> Guest {
        Guest::new(WasiCtx::builder().preopen_dir(dir.path(), "/sandbox"))
    }

    /// Calls `module.name` with `args`; returns slot 0 afterwards.
    pub(crate) fn call_in(
        &mut self,
        module: &str,
        name: &str,
        args: &[u64],
    ) -> Result<u64, HostExit> {
        let h = lookup(module, name).unwrap_or_else(|| panic!("no hostcall {name}"));
        assert_eq!(
            args.len(),
            h.params.len(),
            "{name} takes {} args",
            h.params.len()
        );
        let mut slots = vec![0u64; h.params.len().max(h.results.len()).max(1)];
        slots[..args.len()].copy_from_slice(args);
        let mut caller = Caller::new(&mut self.mem, &mut self.ctx, &self.deadline);
        (h.func)(&mut caller, &mut slots)?;
        Ok(slots[0])
    }

    /// Calls a WASI hostcall that returns an errno.
    pub(crate) fn call(&mut self, name: &str, args: &[u64]) -> u16 {
        self.call_in(WASI_MODULE, name, args).unwrap() as u16
    }

    /// Calls and expects success.
    pub(crate) fn ok(&mut self, name: &str, args: &[u64]) {
        let e = self.call(name, args);
        assert_eq!(e, 0, "{name}{args:x?} failed with errno {e}");
    }

    /// Calls and expects `errno`.
    pub(crate) fn err(&mut self, name: &str, args: &[u64], errno: Errno) {
        let e = self.call(name, args);
        assert_eq!(
            e,
            errno.raw(),
            "{name}{args:x?}: expected {errno}, got errno {e}"
        );
    }

    pub(crate) fn put(&mut self, at: u32, bytes: &[u8]) {
        self.mem[at as usize..at as usize + bytes.len()].copy_from_slice(bytes);
    }

    pub(crate) fn get(&self, at: u32, len: usize) -> &[u8] {
        &self.mem[at as usize..at as usize + len]
    }

    pub(crate) fn u32_at(&self, at: u32) -> u32 {
        u32::from_le_bytes(self.get(at, 4).try_into().unwrap())
    }

    pub(crate) fn u64_at(&self, at: u32) -> u64 {
        u64::from_le_bytes(self.get(at, 8).try_into().unwrap())
    }

    pub(crate) fn set_u32(&mut self, at: u32, v: u32) {
        self.put(at, &v.to_le_bytes());
    }

    /// Stores `s` at `at` and returns `[ptr, len]` arguments for it.
    pub(crate) fn s(&mut self, at: u32, s: &str) -> [u64; 2] {
        self.put(at, s.as_bytes());
        [at as u64, s.len() as u64]
    }

    /// Writes `data` to `fd` through one iovec; returns `nwritten`.
    pub(crate) fn write(&mut self, fd: u32, data: &[u8]) -> Result<u32, u16> {
        self.put(BUF, data);
        self.set_u32(IOV, BUF);
        self.set_u32(IOV + 4, data.len() as u32);
        match self.call("fd_write", &[fd as u64, IOV as u64, 1, OUT as u64]) {
            0 => Ok(self.u32_at(OUT)),
            e => Err(e),
        }
    }

    /// Reads up to `len` bytes from `fd`.
    pub(crate) fn read(&mut self, fd: u32, len: u32) -> Result<Vec<u8>, u16> {
        self.set_u32(IOV, BUF);
        self.set_u32(IOV + 4, len);
        match self.call("fd_read", &[fd as u64, IOV as u64, 1, OUT as u64]) {
            0 => {
                let n = self.u32_at(OUT) as usize;
                Ok(self.get(BUF, n).to_vec())
            }
            e => Err(e),
        }
    }

    /// `path_open` relative to `dir`; returns the new fd or the errno.
    pub(crate) fn open(
        &mut self,
        dir: u32,
        follow: bool,
        path: &str,
        of: u16,
        base: u64,
        fdf: u16,
    ) -> Result<u32, u16> {
        let [p, l] = self.s(STR, path);
        let lf = if follow {
            lookupflags::SYMLINK_FOLLOW
        } else {
            0
        };
        match self.call(
            "path_open",
            &[
                dir as u64, lf as u64, p, l, of as u64, base, 0, fdf as u64, OUT as u64,
            ],
        ) {
            0 => Ok(self.u32_at(OUT)),
            e => Err(e),
        }
    }

    /// Creates (or truncates) `path` and writes `data` into it.
    pub(crate) fn create(&mut self, dir: u32, path: &str, data: &[u8]) -> u32 {
        let fd = self
            .open(
                dir,
                false,
                path,
                oflags::CREAT | oflags::TRUNC,
                rights::FD_READ | rights::FD_WRITE,
                0,
            )
            .unwrap_or_else(|e| panic!("creating {path}: errno {e}"));
        assert_eq!(self.write(fd, data), Ok(data.len() as u32));
        fd
    }

    /// A path call taking `(fd, path_ptr, path_len)`.
    pub(crate) fn path_call(&mut self, name: &str, dir: u32, path: &str) -> u16 {
        let [p, l] = self.s(STR, path);
        self.call(name, &[dir as u64, p, l])
    }

    /// `path_filestat_get` → (filetype, size) or errno.
    pub(crate) fn stat(&mut self, dir: u32, follow: bool, path: &str) -> Result<(u8, u64), u16> {
        let [p, l] = self.s(STR, path);
        match self.call(
            "path_filestat_get",
            &[dir as u64, follow as u64, p, l, BUF as u64],
        ) {
            0 => Ok((self.get(BUF + 16, 1)[0], self.u64_at(BUF + 32))),
            e => Err(e),
        }
    }
}

#[test]
fn fdflags_constants_match_witx() {
    assert_eq!(fdflags::APPEND, 1);
    assert_eq!(fdflags::SYNC, 16);
    assert_eq!(oflags::TRUNC, 8);
    assert_eq!(rights::SOCK_ACCEPT, 1 << 29);
}

/// A xorshift generator for the randomized tests (no `rand`), seeded.
pub(crate) fn xorshift(seed: u64) -> impl FnMut() -> u64 {
    let mut x = seed;
    move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    }
}

/// Random arguments for hostcall `h`: small numbers, offsets in the guest memory, any 32-bit
/// or 64-bit value, in equal parts.
pub(crate) fn random_args(
    h: &crate::Hostcall,
    mem_len: u64,
    rnd: &mut impl FnMut() -> u64,
) -> Vec<u64> {
    h.params
        .iter()
        .map(|_| match rnd() % 4 {
            0 => rnd() % 8,
            1 => rnd() % mem_len,
            2 => rnd() as u32 as u64,
            _ => rnd(),
        })
        .collect()
}
