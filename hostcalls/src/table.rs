//! The hostcall table: every function a guest may import, with its wasm signature.
//!
//! The linker resolves each import once per module with [`resolve`] (a binary search over
//! [`HOSTCALLS`], sorted by module then name); nothing here runs per call.

use crate::ctx::WasiCtx;
use crate::host::hc_host_halt;
use crate::net;
use crate::poll::poll_oneoff;
use crate::wasi::env::{self, hc_proc_exit};
use crate::wasi::{fd, path, sock};
use fnvm_abi::{FuncType, ValType};
use fnvm_host_interface::{HostFn, HostFuncDef};

/// The WASI preview1 module name.
pub const WASI_MODULE: &str = "wasi_snapshot_preview1";
/// fnvm's own import module.
pub const FNVM_MODULE: &str = "fnvm";

/// One importable host function.
#[derive(Debug)]
pub struct Hostcall {
    /// Import module (`wasi_snapshot_preview1` or `fnvm`).
    pub module: &'static str,
    /// Import name.
    pub name: &'static str,
    /// Name in dmesg traces (`WASI_FD_WRITE`, `HOST_HALT`).
    pub trace_name: &'static str,
    /// Parameter types.
    pub params: &'static [ValType],
    /// Result types.
    pub results: &'static [ValType],
    /// The implementation.
    pub func: HostFn<WasiCtx>,
}

impl Hostcall {
    /// The signature as a [`FuncType`].
    pub fn func_type(&self) -> FuncType {
        FuncType {
            params: self.params.to_vec(),
            results: self.results.to_vec(),
        }
    }

    /// What the linker binds an import to.
    pub fn def(&self) -> HostFuncDef<WasiCtx> {
        HostFuncDef {
            ty: self.func_type(),
            func: self.func,
            // The one hostcall a backend may defer (see WriteBehind).
            write_behind: (self.module == WASI_MODULE && self.name == "fd_write")
                .then(fd::fd_write_behind),
        }
    }
}

use ValType::{I32, I64};

macro_rules! table {
    (@func raw $f:path, $trace:literal, [$($p:ident),*]) => { $f };
    (@func body $f:path, $trace:literal, [$($p:ident),*]) => {
        // A non-capturing closure is a plain `fn`: this is the hostcall's `HostFn`, with its
        // name, signature and body as constants.
        |caller, slots| crate::wasi::run(caller, slots, $trace, &[$($p),*], $f)
    };
    ($( $module:ident $name:literal $trace:literal ( $($p:ident),* ) -> [ $($r:ident),* ] $kind:ident $f:path ;)*) => {
        /// Every hostcall, sorted by `(module, name)`.
        pub static HOSTCALLS: &[Hostcall] = &[
            $( Hostcall {
                module: $module,
                name: $name,
                trace_name: $trace,
                params: &[$($p),*],
                results: &[$($r),*],
                func: table!(@func $kind $f, $trace, [$($p),*]),
            }, )*
        ];
    };
}

table! {
    FNVM_MODULE "host_halt" "HOST_HALT" (I32) -> [] raw hc_host_halt;
    FNVM_MODULE "host_tcp_connect" "HOST_TCP_CONNECT" (I32, I32, I32, I32) -> [I32] body net::host_tcp_connect;
    FNVM_MODULE "host_tls_connect" "HOST_TLS_CONNECT" (I32, I32, I32, I32, I32, I32) -> [I32] body net::host_tls_connect;
    WASI_MODULE "args_get" "WASI_ARGS_GET" (I32, I32) -> [I32] body env::args_get;
    WASI_MODULE "args_sizes_get" "WASI_ARGS_SIZES_GET" (I32, I32) -> [I32] body env::args_sizes_get;
    WASI_MODULE "clock_res_get" "WASI_CLOCK_RES_GET" (I32, I32) -> [I32] body env::clock_res_get;
    WASI_MODULE "clock_time_get" "WASI_CLOCK_TIME_GET" (I32, I64, I32) -> [I32] body env::clock_time_get;
    WASI_MODULE "environ_get" "WASI_ENVIRON_GET" (I32, I32) -> [I32] body env::environ_get;
    WASI_MODULE "environ_sizes_get" "WASI_ENVIRON_SIZES_GET" (I32, I32) -> [I32] body env::environ_sizes_get;
    WASI_MODULE "fd_advise" "WASI_FD_ADVISE" (I32, I64, I64, I32) -> [I32] body fd::fd_advise;
    WASI_MODULE "fd_allocate" "WASI_FD_ALLOCATE" (I32, I64, I64) -> [I32] body fd::fd_allocate;
    WASI_MODULE "fd_close" "WASI_FD_CLOSE" (I32) -> [I32] body fd::fd_close;
    WASI_MODULE "fd_datasync" "WASI_FD_DATASYNC" (I32) -> [I32] body fd::fd_datasync;
    WASI_MODULE "fd_fdstat_get" "WASI_FD_FDSTAT_GET" (I32, I32) -> [I32] body fd::fd_fdstat_get;
    WASI_MODULE "fd_fdstat_set_flags" "WASI_FD_FDSTAT_SET_FLAGS" (I32, I32) -> [I32] body fd::fd_fdstat_set_flags;
    WASI_MODULE "fd_fdstat_set_rights" "WASI_FD_FDSTAT_SET_RIGHTS" (I32, I64, I64) -> [I32] body fd::fd_fdstat_set_rights;
    WASI_MODULE "fd_filestat_get" "WASI_FD_FILESTAT_GET" (I32, I32) -> [I32] body fd::fd_filestat_get;
    WASI_MODULE "fd_filestat_set_size" "WASI_FD_FILESTAT_SET_SIZE" (I32, I64) -> [I32] body fd::fd_filestat_set_size;
    WASI_MODULE "fd_filestat_set_times" "WASI_FD_FILESTAT_SET_TIMES" (I32, I64, I64, I32) -> [I32] body fd::fd_filestat_set_times;
    WASI_MODULE "fd_pread" "WASI_FD_PREAD" (I32, I32, I32, I64, I32) -> [I32] body fd::fd_pread;
    WASI_MODULE "fd_prestat_dir_name" "WASI_FD_PRESTAT_DIR_NAME" (I32, I32, I32) -> [I32] body fd::fd_prestat_dir_name;
    WASI_MODULE "fd_prestat_get" "WASI_FD_PRESTAT_GET" (I32, I32) -> [I32] body fd::fd_prestat_get;
    WASI_MODULE "fd_pwrite" "WASI_FD_PWRITE" (I32, I32, I32, I64, I32) -> [I32] body fd::fd_pwrite;
    WASI_MODULE "fd_read" "WASI_FD_READ" (I32, I32, I32, I32) -> [I32] body fd::fd_read;
    WASI_MODULE "fd_readdir" "WASI_FD_READDIR" (I32, I32, I32, I64, I32) -> [I32] body fd::fd_readdir;
    WASI_MODULE "fd_renumber" "WASI_FD_RENUMBER" (I32, I32) -> [I32] body fd::fd_renumber;
    WASI_MODULE "fd_seek" "WASI_FD_SEEK" (I32, I64, I32, I32) -> [I32] body fd::fd_seek;
    WASI_MODULE "fd_sync" "WASI_FD_SYNC" (I32) -> [I32] body fd::fd_sync;
    WASI_MODULE "fd_tell" "WASI_FD_TELL" (I32, I32) -> [I32] body fd::fd_tell;
    WASI_MODULE "fd_write" "WASI_FD_WRITE" (I32, I32, I32, I32) -> [I32] body fd::fd_write;
    WASI_MODULE "path_create_directory" "WASI_PATH_CREATE_DIRECTORY" (I32, I32, I32) -> [I32] body path::path_create_directory;
    WASI_MODULE "path_filestat_get" "WASI_PATH_FILESTAT_GET" (I32, I32, I32, I32, I32) -> [I32] body path::path_filestat_get;
    WASI_MODULE "path_filestat_set_times" "WASI_PATH_FILESTAT_SET_TIMES" (I32, I32, I32, I32, I64, I64, I32) -> [I32] body path::path_filestat_set_times;
    WASI_MODULE "path_link" "WASI_PATH_LINK" (I32, I32, I32, I32, I32, I32, I32) -> [I32] body path::path_link;
    WASI_MODULE "path_open" "WASI_PATH_OPEN" (I32, I32, I32, I32, I32, I64, I64, I32, I32) -> [I32] body path::path_open;
    WASI_MODULE "path_readlink" "WASI_PATH_READLINK" (I32, I32, I32, I32, I32, I32) -> [I32] body path::path_readlink;
    WASI_MODULE "path_remove_directory" "WASI_PATH_REMOVE_DIRECTORY" (I32, I32, I32) -> [I32] body path::path_remove_directory;
    WASI_MODULE "path_rename" "WASI_PATH_RENAME" (I32, I32, I32, I32, I32, I32) -> [I32] body path::path_rename;
    WASI_MODULE "path_symlink" "WASI_PATH_SYMLINK" (I32, I32, I32, I32, I32) -> [I32] body path::path_symlink;
    WASI_MODULE "path_unlink_file" "WASI_PATH_UNLINK_FILE" (I32, I32, I32) -> [I32] body path::path_unlink_file;
    WASI_MODULE "poll_oneoff" "WASI_POLL_ONEOFF" (I32, I32, I32, I32) -> [I32] body poll_oneoff;
    WASI_MODULE "proc_exit" "WASI_PROC_EXIT" (I32) -> [] raw hc_proc_exit;
    WASI_MODULE "proc_raise" "WASI_PROC_RAISE" (I32) -> [I32] body env::proc_raise;
    WASI_MODULE "random_get" "WASI_RANDOM_GET" (I32, I32) -> [I32] body env::random_get;
    WASI_MODULE "sched_yield" "WASI_SCHED_YIELD" () -> [I32] body env::sched_yield;
    WASI_MODULE "sock_accept" "WASI_SOCK_ACCEPT" (I32, I32, I32) -> [I32] body sock::sock_accept;
    WASI_MODULE "sock_recv" "WASI_SOCK_RECV" (I32, I32, I32, I32, I32, I32) -> [I32] body sock::sock_recv;
    WASI_MODULE "sock_send" "WASI_SOCK_SEND" (I32, I32, I32, I32, I32) -> [I32] body sock::sock_send;
    WASI_MODULE "sock_shutdown" "WASI_SOCK_SHUTDOWN" (I32, I32) -> [I32] body sock::sock_shutdown;
}

/// The hostcall importable as `module`.`name`.
pub fn lookup(module: &str, name: &str) -> Option<&'static Hostcall> {
    HOSTCALLS
        .binary_search_by(|h| (h.module, h.name).cmp(&(module, name)))
        .ok()
        .and_then(|i| HOSTCALLS.get(i))
}

/// What the linker binds the import `module`.`name` to, if fnvm provides it.
pub fn resolve(module: &str, name: &str) -> Option<HostFuncDef<WasiCtx>> {
    lookup(module, name).map(Hostcall::def)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorted_and_complete() {
        for w in HOSTCALLS.windows(2) {
            assert!(
                (w[0].module, w[0].name) < (w[1].module, w[1].name),
                "{} must sort before {}",
                w[0].name,
                w[1].name
            );
        }
        let wasi = HOSTCALLS.iter().filter(|h| h.module == WASI_MODULE).count();
        assert_eq!(wasi, 46);
        for h in HOSTCALLS {
            assert!(std::ptr::eq(lookup(h.module, h.name).unwrap(), h));
            if h.module == WASI_MODULE {
                assert_eq!(h.trace_name, format!("WASI_{}", h.name.to_uppercase()));
            }
        }
        assert!(lookup(WASI_MODULE, "nope").is_none());
        assert!(lookup("wasi_unstable", "fd_write").is_none());
        let d = resolve(WASI_MODULE, "fd_write").unwrap();
        assert_eq!(d.ty.params, vec![I32, I32, I32, I32]);
        assert_eq!(d.ty.results, vec![I32]);
        assert_eq!(
            resolve(FNVM_MODULE, "host_halt").unwrap().ty.results,
            vec![]
        );
    }
}
