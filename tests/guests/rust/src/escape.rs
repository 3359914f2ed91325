//! Escapes from a preopened directory (argv[1] as the guest sees it; the host preopens only it,
//! as fd 3, with `outside.txt` next to it and symlinks inside). Opening through the standard
//! library and through raw path_open calls on fd 3: every way out must fail ("denied"; "LEAK"
//! if it succeeded), while the controls inside the directory must work ("ok").
use std::fs::{File, OpenOptions};

mod wasi {
    #[link(wasm_import_module = "wasi_snapshot_preview1")]
    extern "C" {
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
        pub fn fd_close(fd: i32) -> i32;
    }
}

const PREOPEN: i32 = 3;
const LOOKUP_SYMLINK_FOLLOW: i32 = 1;
const O_CREAT: i32 = 1;
const ALL_RIGHTS: i64 = 0x1fff_ffff;

fn report(label: &str, opened: bool, should_open: bool) {
    let verdict = match (opened, should_open) {
        (true, true) => "ok",
        (false, false) => "denied",
        (true, false) => "LEAK",
        (false, true) => "FAILED",
    };
    println!("{label}: {verdict}");
}

fn raw_open(label: &str, path: &str, oflags: i32) {
    let mut fd: i32 = -1;
    // SAFETY: the pointers are to live guest memory of the given lengths.
    let errno = unsafe {
        wasi::path_open(
            PREOPEN,
            LOOKUP_SYMLINK_FOLLOW,
            path.as_ptr() as i32,
            path.len() as i32,
            oflags,
            ALL_RIGHTS,
            ALL_RIGHTS,
            0,
            &mut fd as *mut i32 as i32,
        )
    };
    if errno == 0 {
        // SAFETY: closing the descriptor just opened.
        unsafe { wasi::fd_close(fd) };
    }
    report(label, errno == 0, false);
}

fn main() {
    let dir = std::env::args().nth(1).expect("usage: escape DIR");
    let open = |name: &str| File::open(format!("{dir}/{name}")).is_ok();

    report("inside", open("inside.txt"), true);
    report("link-inside", open("link-inside"), true);
    report("dotdot", open("../outside.txt"), false);
    report("etc-passwd", File::open("/etc/passwd").is_ok(), false);
    report("link-abs", open("link-abs"), false);
    report("link-rel", open("link-rel"), false);
    report("link-dir", open("link-dir/outside.txt"), false);
    let created = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(format!("{dir}/../escaped.txt"))
        .is_ok();
    report("create-outside", created, false);

    raw_open("raw-dotdot", "../outside.txt", 0);
    raw_open("raw-abs", "/etc/passwd", 0);
    raw_open("raw-deep", "inside-dir/../../outside.txt", 0);
    raw_open("raw-create", "../escaped.txt", O_CREAT);
}
