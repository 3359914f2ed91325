//! Bad pointers handed to the host through raw WASI imports: an iovec array at 0xFFFFFFF0, an
//! iovec whose buffer runs past the end of memory, an out-of-bounds nwritten, an iovec count
//! too large for memory, an out-of-bounds path for path_open (on the preopen, fd 3), a huge
//! random_get, out-of-bounds args_get and clock_time_get results. Each must fail with errno 21
//! (EFAULT) without killing the guest, which prints every errno and then `survived`.
mod wasi {
    #[link(wasm_import_module = "wasi_snapshot_preview1")]
    extern "C" {
        pub fn fd_write(fd: i32, iovs: i32, iovs_len: i32, nwritten: i32) -> i32;
        pub fn fd_read(fd: i32, iovs: i32, iovs_len: i32, nread: i32) -> i32;
        #[allow(clippy::too_many_arguments)]
        pub fn path_open(
            fd: i32,
            dirflags: i32,
            path: i32,
            path_len: i32,
            oflags: i32,
            rights_base: i64,
            rights_inheriting: i64,
            fdflags: i32,
            opened: i32,
        ) -> i32;
        pub fn random_get(buf: i32, len: i32) -> i32;
        pub fn args_get(argv: i32, argv_buf: i32) -> i32;
        pub fn clock_time_get(id: i32, precision: i64, time: i32) -> i32;
    }
}

fn main() {
    let memory_end = (core::arch::wasm32::memory_size(0) * 65536) as u32;
    let text = b"never written\n";
    let mut out: u32 = 0;
    let out_ptr = &mut out as *mut u32 as i32;
    // An iovec (buf, len) pointing at `text`, and one running past the end of memory.
    let good_iov: [u32; 2] = [text.as_ptr() as u32, text.len() as u32];
    let past_end_iov: [u32; 2] = [memory_end - 8, 100];
    let bad = 0xFFFF_FFF0u32 as i32;
    let mut fd = 0i32;

    // SAFETY: every call only hands numbers to the host, which must check them.
    let results = unsafe {
        [
            ("fd_write bad iovs", wasi::fd_write(1, bad, 1, out_ptr)),
            (
                "fd_write iov past memory",
                wasi::fd_write(1, past_end_iov.as_ptr() as i32, 1, out_ptr),
            ),
            (
                "fd_write bad nwritten",
                wasi::fd_write(1, good_iov.as_ptr() as i32, 1, bad),
            ),
            (
                "fd_write huge iovs_len",
                wasi::fd_write(1, good_iov.as_ptr() as i32, 0x1000_0000, out_ptr),
            ),
            (
                "fd_read iov past memory",
                wasi::fd_read(0, past_end_iov.as_ptr() as i32, 1, out_ptr),
            ),
            (
                "path_open bad path",
                wasi::path_open(
                    3,
                    0,
                    0xFFFF_FF00u32 as i32,
                    10,
                    0,
                    0,
                    0,
                    0,
                    &mut fd as *mut i32 as i32,
                ),
            ),
            ("random_get huge len", wasi::random_get(1024, 0x7fff_ffff)),
            ("args_get bad argv", wasi::args_get(bad, bad)),
            ("clock_time_get bad time", wasi::clock_time_get(1, 0, bad)),
        ]
    };
    for (what, errno) in results {
        println!("{what}: {errno}");
    }
    println!("survived");
}
