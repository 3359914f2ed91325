//! Filesystem hostcalls in a temporary preopened directory, including escape attempts.

use super::*;
use crate::types::{filetype, fstflags, whence};
use std::os::unix::fs::symlink;

const PRE: u32 = 3;
const RW: u64 = rights::FD_READ | rights::FD_WRITE;

/// Decodes an `fd_readdir` buffer into (d_next, d_ino, type, name) tuples of whole entries.
fn dirents(buf: &[u8]) -> Vec<(u64, u64, u8, String)> {
    let mut out = Vec::new();
    let mut b = buf;
    while b.len() >= 24 {
        let next = u64::from_le_bytes(b[0..8].try_into().unwrap());
        let ino = u64::from_le_bytes(b[8..16].try_into().unwrap());
        let len = u32::from_le_bytes(b[16..20].try_into().unwrap()) as usize;
        if b.len() < 24 + len {
            break;
        }
        out.push((
            next,
            ino,
            b[20],
            String::from_utf8_lossy(&b[24..24 + len]).into(),
        ));
        b = &b[24 + len..];
    }
    out
}

fn readdir(g: &mut Guest, fd: u32, len: u32, cookie: u64) -> (u32, Vec<(u64, u64, u8, String)>) {
    g.ok(
        "fd_readdir",
        &[fd as u64, BUF as u64, len as u64, cookie, OUT as u64],
    );
    let used = g.u32_at(OUT);
    (used, dirents(g.get(BUF, used as usize)))
}

#[test]
fn file_lifecycle() {
    let dir = TempDir::new();
    let mut g = Guest::with_dir(&dir);
    let fd = g.create(PRE, "a.txt", b"hello world");
    assert_eq!(
        std::fs::read(dir.path().join("a.txt")).unwrap(),
        b"hello world"
    );

    g.ok("fd_tell", &[fd as u64, OUT as u64]);
    assert_eq!(g.u64_at(OUT), 11);
    g.ok("fd_seek", &[fd as u64, 6, whence::SET as u64, OUT as u64]);
    assert_eq!(g.u64_at(OUT), 6);
    assert_eq!(g.read(fd, 100).unwrap(), b"world");
    g.ok(
        "fd_seek",
        &[fd as u64, (-5i64) as u64, whence::END as u64, OUT as u64],
    );
    assert_eq!(g.u64_at(OUT), 6);
    g.ok(
        "fd_seek",
        &[fd as u64, (-6i64) as u64, whence::CUR as u64, OUT as u64],
    );
    assert_eq!(g.u64_at(OUT), 0);
    g.err(
        "fd_seek",
        &[fd as u64, (-1i64) as u64, whence::CUR as u64, OUT as u64],
        Errno::Inval,
    );
    g.err(
        "fd_seek",
        &[fd as u64, (-1i64) as u64, whence::SET as u64, OUT as u64],
        Errno::Inval,
    );
    g.err("fd_seek", &[fd as u64, 0, 3, OUT as u64], Errno::Inval);
    // Two iovecs read in one call.
    g.set_u32(IOV, BUF);
    g.set_u32(IOV + 4, 3);
    g.set_u32(IOV + 8, BUF + 100);
    g.set_u32(IOV + 12, 4);
    g.ok("fd_read", &[fd as u64, IOV as u64, 2, OUT as u64]);
    assert_eq!(g.u32_at(OUT), 7);
    assert_eq!(g.get(BUF, 3), b"hel");
    assert_eq!(g.get(BUF + 100, 4), b"lo w");

    // pread/pwrite leave the position alone.
    g.put(BUF, b"HELLO");
    g.set_u32(IOV, BUF);
    g.set_u32(IOV + 4, 5);
    g.ok("fd_pwrite", &[fd as u64, IOV as u64, 1, 0, OUT as u64]);
    assert_eq!(g.u32_at(OUT), 5);
    g.set_u32(IOV, BUF + 200);
    g.set_u32(IOV + 4, 64);
    g.ok("fd_pread", &[fd as u64, IOV as u64, 1, 3, OUT as u64]);
    assert_eq!(g.get(BUF + 200, g.u32_at(OUT) as usize), b"LO world");
    g.ok("fd_tell", &[fd as u64, OUT as u64]);
    assert_eq!(g.u64_at(OUT), 7);

    // Sizes.
    g.ok("fd_filestat_get", &[fd as u64, BUF as u64]);
    assert_eq!(g.get(BUF + 16, 1)[0], filetype::REGULAR_FILE);
    assert_eq!(g.u64_at(BUF + 32), 11);
    g.ok("fd_filestat_set_size", &[fd as u64, 4]);
    assert_eq!(g.stat(PRE, false, "a.txt"), Ok((filetype::REGULAR_FILE, 4)));
    assert_eq!(std::fs::read(dir.path().join("a.txt")).unwrap(), b"HELL");
    g.ok("fd_sync", &[fd as u64]);
    g.ok("fd_datasync", &[fd as u64]);
    g.ok("fd_advise", &[fd as u64, 0, 0, 1]);
    g.err("fd_advise", &[fd as u64, 0, 0, 6], Errno::Inval);
    g.err("fd_allocate", &[fd as u64, 0, 10], Errno::Notsup);
    g.ok("fd_close", &[fd as u64]);
    g.err("fd_close", &[fd as u64], Errno::Badf);

    // Directories, rename, unlink.
    assert_eq!(g.path_call("path_create_directory", PRE, "sub"), 0);
    assert_eq!(
        g.path_call("path_create_directory", PRE, "sub"),
        Errno::Exist.raw()
    );
    assert_eq!(g.stat(PRE, false, "sub").unwrap().0, filetype::DIRECTORY);
    let [o, ol] = g.s(STR, "a.txt");
    let [n, nl] = g.s(STR2, "sub/b.txt");
    g.ok("path_rename", &[PRE as u64, o, ol, PRE as u64, n, nl]);
    assert!(dir.path().join("sub/b.txt").exists());
    assert_eq!(g.stat(PRE, false, "a.txt"), Err(Errno::Noent.raw()));
    assert_eq!(
        g.path_call("path_remove_directory", PRE, "sub"),
        Errno::Notempty.raw()
    );
    assert_eq!(g.path_call("path_unlink_file", PRE, "sub/b.txt"), 0);
    assert_eq!(g.path_call("path_remove_directory", PRE, "sub"), 0);
    assert!(!dir.path().join("sub").exists());
    assert_eq!(
        g.path_call("path_unlink_file", PRE, "nothing"),
        Errno::Noent.raw()
    );
}

#[test]
fn readdir_cookies_and_truncation() {
    let dir = TempDir::new();
    let mut g = Guest::with_dir(&dir);
    for name in ["alpha", "beta", "gamma"] {
        let fd = g.create(PRE, name, b"x");
        g.ok("fd_close", &[fd as u64]);
    }
    let d = g
        .open(PRE, false, "", 0, 0, 0)
        .expect_err("the empty path names nothing");
    assert_eq!(d, Errno::Noent.raw());
    let d = g.open(PRE, false, ".", oflags::DIRECTORY, 0, 0).unwrap();
    g.ok("fd_filestat_get", &[d as u64, BUF as u64]);
    let own_ino = g.u64_at(BUF + 8);

    let (used, all) = readdir(&mut g, d, 4096, 0);
    assert!(used < 4096);
    assert_eq!(all.len(), 5);
    assert_eq!(
        (all[0].0, all[0].1, all[0].2, all[0].3.as_str()),
        (1, own_ino, filetype::DIRECTORY, ".")
    );
    assert_eq!((all[1].0, all[1].3.as_str()), (2, ".."));
    let mut names: Vec<_> = all[2..].iter().map(|e| e.3.clone()).collect();
    names.sort();
    assert_eq!(names, ["alpha", "beta", "gamma"]);
    for (i, e) in all.iter().enumerate() {
        assert_eq!(e.0, i as u64 + 1, "cookies count entries");
    }
    let alpha = all.iter().find(|e| e.3 == "alpha").unwrap();
    assert_eq!(alpha.2, filetype::REGULAR_FILE);
    assert_eq!(
        alpha.1,
        std::fs::metadata(dir.path().join("alpha"))
            .map(|m| {
                use std::os::unix::fs::MetadataExt;
                m.ino()
            })
            .unwrap()
    );

    // Resume after the second entry: the same three names, in the same order.
    let (_, rest) = readdir(&mut g, d, 4096, 2);
    assert_eq!(rest, all[2..].to_vec());
    // Past the end.
    let (used, none) = readdir(&mut g, d, 4096, 99);
    assert_eq!((used, none.len()), (0, 0));
    // A buffer that cuts an entry: full buffer, only whole entries decode.
    let (used, part) = readdir(&mut g, d, 24 + 1 + 24 + 2 + 10, 0);
    assert_eq!(used, 24 + 1 + 24 + 2 + 10);
    assert_eq!(part.len(), 2);
    // Paging with a small buffer sees everything exactly once.
    let mut cookie = 0;
    let mut seen = Vec::new();
    loop {
        let (used, page) = readdir(&mut g, d, 40, cookie);
        if let Some(e) = page.first() {
            cookie = e.0;
            seen.push(e.3.clone());
        }
        if used < 40 {
            break;
        }
        assert!(!page.is_empty(), "a 40-byte buffer fits one short entry");
    }
    assert_eq!(seen.len(), 5);
    // Not a directory.
    g.err(
        "fd_readdir",
        &[1, BUF as u64, 100, 0, OUT as u64],
        Errno::Badf,
    );
}

#[test]
fn escapes_are_refused() {
    let outer = TempDir::new();
    let dir = TempDir::new();
    std::fs::write(outer.path().join("secret"), b"top secret").unwrap();
    std::fs::create_dir(dir.path().join("a")).unwrap();
    symlink("/etc", dir.path().join("etc_link")).unwrap();
    symlink(outer.path(), dir.path().join("outer_link")).unwrap();
    symlink("../..", dir.path().join("a/up")).unwrap();
    let mut g = Guest::with_dir(&dir);
    let perm = Err(Errno::Perm.raw());

    for p in [
        "../x",
        "/etc/passwd",
        "etc_link/passwd",
        "a/../../x",
        "a/up/x",
        "outer_link/secret",
        "..",
        "a/../..",
    ] {
        assert_eq!(
            g.open(PRE, true, p, 0, rights::FD_READ, 0),
            perm,
            "open {p}"
        );
        assert_eq!(
            g.open(PRE, false, p, oflags::CREAT, RW, 0),
            perm,
            "create {p}"
        );
        assert_eq!(
            g.stat(PRE, true, p).unwrap_err(),
            Errno::Perm.raw(),
            "stat {p}"
        );
    }
    // The symlinks themselves are fine to look at without following.
    assert_eq!(
        g.stat(PRE, false, "etc_link").unwrap().0,
        filetype::SYMBOLIC_LINK
    );
    assert_eq!(
        g.stat(PRE, true, "etc_link").unwrap_err(),
        Errno::Perm.raw()
    );
    assert_eq!(
        g.stat(PRE, false, "etc_link/").unwrap_err(),
        Errno::Perm.raw()
    );
    assert_eq!(
        g.open(PRE, false, "etc_link", 0, 0, 0),
        Err(Errno::Loop.raw())
    );
    let [p, l] = g.s(STR, "etc_link");
    g.ok(
        "path_readlink",
        &[PRE as u64, p, l, BUF as u64, 64, OUT as u64],
    );
    assert_eq!(g.get(BUF, g.u32_at(OUT) as usize), b"/etc");
    let [p, l] = g.s(STR, "outer_link/");
    g.err(
        "path_readlink",
        &[PRE as u64, p, l, BUF as u64, 64, OUT as u64],
        Errno::Perm,
    );

    // Nothing that creates, removes or changes may reach outside either.
    for (call, p) in [
        ("path_create_directory", "../evil"),
        ("path_create_directory", "outer_link/evil"),
        ("path_unlink_file", "outer_link/secret"),
        ("path_unlink_file", "../secret"),
        ("path_remove_directory", "a/up/x"),
        ("path_remove_directory", ".."),
    ] {
        assert_eq!(g.path_call(call, PRE, p), Errno::Perm.raw(), "{call} {p}");
    }
    let [o, ol] = g.s(STR, "outer_link/secret");
    let [n, nl] = g.s(STR2, "stolen");
    g.err(
        "path_rename",
        &[PRE as u64, o, ol, PRE as u64, n, nl],
        Errno::Perm,
    );
    g.err(
        "path_link",
        &[PRE as u64, 0, o, ol, PRE as u64, n, nl],
        Errno::Perm,
    );
    let [o, ol] = g.s(STR, "x");
    let [n, nl] = g.s(STR2, "../planted");
    g.err(
        "path_rename",
        &[PRE as u64, o, ol, PRE as u64, n, nl],
        Errno::Perm,
    );
    let [t, tl] = g.s(STR, "anything");
    g.err("path_symlink", &[t, tl, PRE as u64, n, nl], Errno::Perm);
    let [p, l] = g.s(STR, "outer_link/secret");
    for follow in [0, 1] {
        g.err(
            "path_filestat_set_times",
            &[PRE as u64, follow, p, l, 0, 0, fstflags::MTIM as u64],
            Errno::Perm,
        );
    }
    g.err(
        "path_filestat_set_times",
        &[PRE as u64, 1, p, 10, 0, 0, fstflags::MTIM as u64],
        Errno::Perm,
    );
    // Absolute symlink targets are refused; relative ones may point anywhere, but following
    // them stays confined.
    let [t, tl] = g.s(STR, "/etc/passwd");
    let [n, nl] = g.s(STR2, "abs");
    g.err("path_symlink", &[t, tl, PRE as u64, n, nl], Errno::Perm);
    let [t, tl] = g.s(STR, "../../../../etc/passwd");
    let [n, nl] = g.s(STR2, "rel");
    g.ok("path_symlink", &[t, tl, PRE as u64, n, nl]);
    assert_eq!(g.open(PRE, true, "rel", 0, rights::FD_READ, 0), perm);

    assert_eq!(
        std::fs::read(outer.path().join("secret")).unwrap(),
        b"top secret"
    );
    assert!(!outer.path().join("evil").exists());
    assert!(!dir.path().parent().unwrap().join("evil").exists());
    assert!(!dir.path().parent().unwrap().join("planted").exists());
}

#[test]
fn symlinks_inside_are_followed() {
    let dir = TempDir::new();
    let mut g = Guest::with_dir(&dir);
    assert_eq!(g.path_call("path_create_directory", PRE, "target"), 0);
    let fd = g.create(PRE, "target/f", b"data");
    g.ok("fd_close", &[fd as u64]);
    let [t, tl] = g.s(STR, "target");
    let [n, nl] = g.s(STR2, "link");
    g.ok("path_symlink", &[t, tl, PRE as u64, n, nl]);
    let fd = g.open(PRE, false, "link/f", 0, rights::FD_READ, 0).unwrap();
    assert_eq!(g.read(fd, 10).unwrap(), b"data");
    // Opening the link itself needs SYMLINK_FOLLOW.
    let e = g
        .open(PRE, false, "link", oflags::DIRECTORY, 0, 0)
        .unwrap_err();
    assert!(e == Errno::Notdir.raw() || e == Errno::Loop.raw(), "{e}");
    let d = g.open(PRE, true, "link", oflags::DIRECTORY, 0, 0).unwrap();
    assert_eq!(g.stat(d, false, "f"), Ok((filetype::REGULAR_FILE, 4)));
    assert_eq!(g.stat(PRE, true, "link").unwrap().0, filetype::DIRECTORY);
    // readlink truncates to the buffer.
    let [p, l] = g.s(STR, "link");
    g.ok(
        "path_readlink",
        &[PRE as u64, p, l, BUF as u64, 3, OUT as u64],
    );
    assert_eq!((g.u32_at(OUT), g.get(BUF, 3)), (3, &b"tar"[..]));
    let [p, l] = g.s(STR, "target/f");
    g.err(
        "path_readlink",
        &[PRE as u64, p, l, BUF as u64, 3, OUT as u64],
        Errno::Inval,
    );
    // A self loop.
    let [t, tl] = g.s(STR, "loop");
    let [n, nl] = g.s(STR2, "loop");
    g.ok("path_symlink", &[t, tl, PRE as u64, n, nl]);
    assert_eq!(g.open(PRE, true, "loop", 0, 0, 0), Err(Errno::Loop.raw()));
    // Hard links, but not through a symlink flag.
    let [o, ol] = g.s(STR, "target/f");
    let [n, nl] = g.s(STR2, "hard");
    g.ok("path_link", &[PRE as u64, 0, o, ol, PRE as u64, n, nl]);
    g.err(
        "path_link",
        &[PRE as u64, 0, o, ol, PRE as u64, n, nl],
        Errno::Exist,
    );
    g.err(
        "path_link",
        &[PRE as u64, 1, o, ol, PRE as u64, n, nl],
        Errno::Inval,
    );
    assert_eq!(std::fs::read(dir.path().join("hard")).unwrap(), b"data");
}

#[test]
fn trailing_slashes_follow_linux() {
    let dir = TempDir::new();
    let mut g = Guest::with_dir(&dir);
    assert_eq!(g.path_call("path_create_directory", PRE, "dir/"), 0);
    let fd = g.create(PRE, "file", b"");
    g.ok("fd_close", &[fd as u64]);
    assert_eq!(
        g.path_call("path_unlink_file", PRE, "dir"),
        Errno::Isdir.raw()
    );
    assert_eq!(
        g.path_call("path_unlink_file", PRE, "dir/"),
        Errno::Isdir.raw()
    );
    assert_eq!(
        g.path_call("path_unlink_file", PRE, "file/"),
        Errno::Notdir.raw()
    );
    assert_eq!(
        g.path_call("path_remove_directory", PRE, "file"),
        Errno::Notdir.raw()
    );
    assert_eq!(
        g.path_call("path_remove_directory", PRE, "file/"),
        Errno::Notdir.raw()
    );
    assert_eq!(
        g.open(PRE, false, "file/", 0, 0, 0),
        Err(Errno::Notdir.raw())
    );
    assert_eq!(
        g.open(PRE, false, "file///", 0, 0, 0),
        Err(Errno::Notdir.raw())
    );
    let d = g.open(PRE, false, "dir///", 0, 0, 0).unwrap();
    g.ok("fd_close", &[d as u64]);
    let [t, tl] = g.s(STR, "source");
    let [n, nl] = g.s(STR2, "target/");
    g.err("path_symlink", &[t, tl, PRE as u64, n, nl], Errno::Noent);
    let [n, nl] = g.s(STR2, "dir/");
    g.err("path_symlink", &[t, tl, PRE as u64, n, nl], Errno::Exist);
    let [n, nl] = g.s(STR2, "file/");
    g.err("path_symlink", &[t, tl, PRE as u64, n, nl], Errno::Notdir);
    let [o, ol] = g.s(STR, "file");
    let [n, nl] = g.s(STR2, "link/");
    g.err(
        "path_link",
        &[PRE as u64, 0, o, ol, PRE as u64, n, nl],
        Errno::Noent,
    );
    let [o, ol] = g.s(STR, "dir/");
    let [n, nl] = g.s(STR2, "moved/");
    g.ok("path_rename", &[PRE as u64, o, ol, PRE as u64, n, nl]);
    assert_eq!(g.path_call("path_remove_directory", PRE, "moved/"), 0);
    // "." and ".." as last components.
    assert_eq!(
        g.path_call("path_create_directory", PRE, "."),
        Errno::Exist.raw()
    );
    assert_eq!(
        g.path_call("path_unlink_file", PRE, "."),
        Errno::Isdir.raw()
    );
    assert_eq!(
        g.path_call("path_remove_directory", PRE, "."),
        Errno::Inval.raw()
    );
    assert_eq!(g.stat(PRE, false, ".").unwrap().0, filetype::DIRECTORY);
    assert_eq!(
        g.open(PRE, false, "./file/../file", 0, 0, 0).unwrap_err(),
        Errno::Notdir.raw()
    );
}

#[test]
fn path_open_rules() {
    let dir = TempDir::new();
    let mut g = Guest::with_dir(&dir);
    let f = g.create(PRE, "f", b"abc");
    assert_eq!(
        g.open(PRE, false, "f", oflags::DIRECTORY, 0, 0),
        Err(Errno::Notdir.raw())
    );
    assert_eq!(
        g.open(PRE, false, "d", oflags::DIRECTORY | oflags::CREAT, 0, 0),
        Err(Errno::Inval.raw())
    );
    assert_eq!(
        g.open(PRE, false, "f", oflags::CREAT | oflags::EXCL, 0, 0),
        Err(Errno::Exist.raw())
    );
    assert_eq!(
        g.open(PRE, false, "missing", 0, 0, 0),
        Err(Errno::Noent.raw())
    );
    assert_eq!(
        g.open(PRE, false, ".", oflags::DIRECTORY, RW, 0),
        Err(Errno::Isdir.raw())
    );
    assert_eq!(
        g.open(PRE, false, "f", 0, 0, fdflags::SYNC),
        Err(Errno::Notsup.raw())
    );
    assert_eq!(g.open(PRE, false, "f", 0x10, 0, 0), Err(Errno::Inval.raw()));
    assert_eq!(
        g.open(PRE, false, "f", 0, 1 << 40, 0),
        Err(Errno::Inval.raw())
    );
    assert_eq!(
        g.open(f, false, "x", oflags::CREAT, 0, 0),
        Err(Errno::Notdir.raw())
    );
    assert_eq!(g.open(1, false, "x", 0, 0, 0), Err(Errno::Badf.raw()));
    assert_eq!(g.open(99, false, "x", 0, 0, 0), Err(Errno::Badf.raw()));
    let d = g.open(
        PRE,
        false,
        ".",
        oflags::DIRECTORY,
        rights::FD_READ,
        fdflags::NONBLOCK,
    );
    assert!(d.is_ok());

    // Read-only and write-only opens report and enforce their mode.
    let ro = g.open(PRE, false, "f", 0, rights::FD_READ, 0).unwrap();
    assert_eq!(g.write(ro, b"x"), Err(Errno::Badf.raw()));
    g.ok("fd_fdstat_get", &[ro as u64, BUF as u64]);
    let base = g.u64_at(BUF + 8);
    assert_eq!(g.get(BUF, 1)[0], filetype::REGULAR_FILE);
    assert!(base & rights::FD_READ != 0 && base & rights::FD_WRITE == 0);
    assert_eq!(base & rights::PATH_OPEN, 0, "files carry no path rights");
    let wo = g.open(PRE, false, "f", 0, rights::FD_WRITE, 0).unwrap();
    assert_eq!(g.read(wo, 4), Err(Errno::Badf.raw()));
    g.ok("fd_fdstat_get", &[wo as u64, BUF as u64]);
    let base = g.u64_at(BUF + 8);
    assert!(base & rights::FD_READ == 0 && base & rights::FD_WRITE != 0);

    // Append mode, set at open and toggled afterwards.
    let ap = g.open(PRE, false, "f", 0, RW, fdflags::APPEND).unwrap();
    g.ok("fd_fdstat_get", &[ap as u64, BUF as u64]);
    assert_eq!(g.get(BUF + 2, 2), fdflags::APPEND.to_le_bytes());
    assert_eq!(g.write(ap, b"def"), Ok(3));
    g.ok("fd_fdstat_set_flags", &[ap as u64, 0]);
    g.ok("fd_seek", &[ap as u64, 0, 0, OUT as u64]);
    assert_eq!(g.write(ap, b"X"), Ok(1));
    assert_eq!(std::fs::read(dir.path().join("f")).unwrap(), b"Xbcdef");
    g.err(
        "fd_fdstat_set_flags",
        &[ap as u64, fdflags::SYNC as u64],
        Errno::Inval,
    );
    g.err("fd_fdstat_set_flags", &[PRE as u64, 0], Errno::Badf);
    g.err("fd_fdstat_set_rights", &[ap as u64, 0, 0], Errno::Notsup);
    g.err("fd_fdstat_set_rights", &[1, 0, 0], Errno::Badf);

    // Truncating open.
    let t = g.open(PRE, false, "f", oflags::TRUNC, 0, 0).unwrap();
    g.ok("fd_close", &[t as u64]);
    assert_eq!(std::fs::read(dir.path().join("f")).unwrap(), b"");

    // Path strings: NUL, bad UTF-8, too long, out of bounds.
    assert_eq!(g.open(PRE, false, "f\0", 0, 0, 0), Err(Errno::Inval.raw()));
    g.put(STR, b"\xff\xfe");
    g.err(
        "path_open",
        &[PRE as u64, 0, STR as u64, 2, 0, 0, 0, 0, OUT as u64],
        Errno::Ilseq,
    );
    g.err(
        "path_open",
        &[PRE as u64, 0, STR as u64, 5000, 0, 0, 0, 0, OUT as u64],
        Errno::Nametoolong,
    );
    g.err(
        "path_open",
        &[PRE as u64, 0, MEM as u64 - 2, 3, 0, 0, 0, 0, OUT as u64],
        Errno::Fault,
    );
    g.err(
        "path_open",
        &[PRE as u64, 0, STR as u64, 1, 0, 0, 0, 0, MEM as u64 - 1],
        Errno::Fault,
    );
}

#[test]
fn directory_descriptor_rules() {
    let dir = TempDir::new();
    let mut g = Guest::with_dir(&dir);
    let d = g
        .open(PRE, false, ".", oflags::DIRECTORY, rights::FD_SEEK, 0)
        .unwrap();
    g.err(
        "fd_seek",
        &[d as u64, 0, whence::CUR as u64, OUT as u64],
        Errno::Badf,
    );
    g.err("fd_tell", &[d as u64, OUT as u64], Errno::Badf);
    assert_eq!(g.read(d, 10), Err(Errno::Badf.raw()));
    assert_eq!(g.write(d, b"x"), Err(Errno::Badf.raw()));
    g.err("fd_allocate", &[d as u64, 0, 1], Errno::Badf);
    g.err("fd_filestat_set_size", &[d as u64, 0], Errno::Badf);
    g.err("fd_sync", &[d as u64], Errno::Badf);
    g.ok(
        "fd_filestat_set_times",
        &[d as u64, 0, 0, fstflags::MTIM_NOW as u64],
    );
    g.ok("fd_fdstat_get", &[d as u64, BUF as u64]);
    assert_eq!(g.get(BUF, 1)[0], filetype::DIRECTORY);
    let base = g.u64_at(BUF + 8);
    let inheriting = g.u64_at(BUF + 16);
    assert_eq!(base & rights::FD_SEEK, 0);
    assert_eq!(base & rights::FD_FILESTAT_SET_SIZE, 0);
    assert_ne!(base & rights::PATH_OPEN, 0);
    assert_ne!(inheriting & rights::FD_READ, 0);
    // The preopen reports the same rights (what userlands reopen it with).
    g.ok("fd_fdstat_get", &[PRE as u64, BUF as u64]);
    assert_eq!(g.u64_at(BUF + 8), base);
    // Path calls want a directory.
    let f = g.create(PRE, "file", b"");
    assert_eq!(
        g.path_call("path_create_directory", f, "x"),
        Errno::Badf.raw()
    );
    assert_eq!(g.path_call("path_unlink_file", 0, "x"), Errno::Badf.raw());
}

#[test]
fn prestat_renumber_and_fd_reuse() {
    let dir = TempDir::new();
    let dir2 = TempDir::new();
    let mut g = Guest::new(
        WasiCtx::builder()
            .preopen_dir(dir.path(), "/sandbox")
            .preopen_dir(dir2.path(), "/other"),
    );
    g.ok("fd_prestat_get", &[3, OUT as u64]);
    assert_eq!((g.get(OUT, 1)[0], g.u32_at(OUT + 4)), (0, 8));
    g.ok("fd_prestat_get", &[4, OUT as u64]);
    assert_eq!(g.u32_at(OUT + 4), 6);
    g.err("fd_prestat_get", &[5, OUT as u64], Errno::Badf);
    g.err("fd_prestat_get", &[1, OUT as u64], Errno::Badf);
    g.ok("fd_prestat_dir_name", &[3, BUF as u64, 20]);
    assert_eq!(g.get(BUF, 8), b"/sandbox");
    g.err(
        "fd_prestat_dir_name",
        &[3, BUF as u64, 7],
        Errno::Nametoolong,
    );
    g.err(
        "fd_prestat_dir_name",
        &[3, BUF as u64, 0],
        Errno::Nametoolong,
    );
    g.err("fd_prestat_dir_name", &[0, BUF as u64, 20], Errno::Notdir);
    g.err("fd_prestat_dir_name", &[9, BUF as u64, 20], Errno::Badf);
    g.err(
        "fd_prestat_dir_name",
        &[3, MEM as u64 - 4, 20],
        Errno::Fault,
    );

    // New fds take the lowest free number.
    let a = g.create(3, "a", b"A");
    let b = g.create(3, "b", b"B");
    assert_eq!((a, b), (5, 6));
    g.ok("fd_close", &[a as u64]);
    assert_eq!(g.create(3, "c", b"C"), 5);

    // Renumbering a file over stdout redirects it; the source fd is gone.
    g.ok("fd_renumber", &[b as u64, 1]);
    g.err("fd_close", &[b as u64], Errno::Badf);
    assert_eq!(g.write(1, b"+more"), Ok(5));
    assert_eq!(std::fs::read(dir.path().join("b")).unwrap(), b"B+more");
    g.err("fd_renumber", &[1, 40], Errno::Badf);
    g.err("fd_renumber", &[40, 1], Errno::Badf);
    g.ok("fd_renumber", &[1, 1]);
    // Over a preopen: it is no longer a preopen.
    let d = g.open(3, false, ".", oflags::DIRECTORY, 0, 0).unwrap();
    g.ok("fd_renumber", &[d as u64, 4]);
    g.err("fd_prestat_get", &[4, OUT as u64], Errno::Badf);
    g.ok("fd_fdstat_get", &[4, BUF as u64]);
    g.err("fd_fdstat_get", &[d as u64, BUF as u64], Errno::Badf);
    // Closing a preopen.
    g.ok("fd_close", &[3]);
    g.err("fd_prestat_get", &[3, OUT as u64], Errno::Badf);
}

#[test]
fn timestamps() {
    let dir = TempDir::new();
    let mut g = Guest::with_dir(&dir);
    let f = g.create(PRE, "file", b"x");
    let [t, tl] = g.s(STR, "file");
    let [n, nl] = g.s(STR2, "sym");
    g.ok("path_symlink", &[t, tl, PRE as u64, n, nl]);
    let mtime = |g: &mut Guest, follow: u64, path: &str| {
        let [p, l] = g.s(STR, path);
        g.ok("path_filestat_get", &[PRE as u64, follow, p, l, BUF as u64]);
        g.u64_at(BUF + 48)
    };
    let file_m = mtime(&mut g, 0, "file");
    let sym_m = mtime(&mut g, 0, "sym");
    // Set the symlink's own mtime; the file keeps its own.
    let [p, l] = g.s(STR, "sym");
    g.ok(
        "path_filestat_set_times",
        &[PRE as u64, 0, p, l, 0, 1_000_000_123, fstflags::MTIM as u64],
    );
    assert_eq!(mtime(&mut g, 0, "sym"), 1_000_000_123);
    assert_eq!(mtime(&mut g, 0, "file"), file_m);
    assert_eq!(mtime(&mut g, 1, "sym"), file_m);
    // Through the link.
    let [p, l] = g.s(STR, "sym");
    g.ok(
        "path_filestat_set_times",
        &[PRE as u64, 1, p, l, 0, 2_000_000_000, fstflags::MTIM as u64],
    );
    assert_eq!(mtime(&mut g, 0, "file"), 2_000_000_000);
    assert_ne!(sym_m, 0);
    // On the fd.
    g.ok(
        "fd_filestat_set_times",
        &[
            f as u64,
            5,
            3_000_000_000,
            (fstflags::MTIM | fstflags::ATIM) as u64,
        ],
    );
    g.ok("fd_filestat_get", &[f as u64, BUF as u64]);
    assert_eq!((g.u64_at(BUF + 40), g.u64_at(BUF + 48)), (5, 3_000_000_000));
    g.err(
        "fd_filestat_set_times",
        &[f as u64, 0, 0, (fstflags::MTIM | fstflags::MTIM_NOW) as u64],
        Errno::Inval,
    );
    g.err(
        "path_filestat_set_times",
        &[
            PRE as u64,
            0,
            p,
            l,
            0,
            0,
            (fstflags::ATIM | fstflags::ATIM_NOW) as u64,
        ],
        Errno::Inval,
    );
    g.err("fd_filestat_set_times", &[1, 0, 0, 0], Errno::Badf);
    g.err(
        "path_filestat_get",
        &[PRE as u64, 2, p, l, BUF as u64],
        Errno::Inval,
    );
}

/// A FIFO in a preopened directory: opening it never blocks on its other end; a blocking read
/// with no data waits only until the invocation's deadline (then ends it), a non-blocking one
/// answers `EAGAIN`, and data written meanwhile is read as usual.
#[test]
fn fifo_reads_wait_only_until_the_deadline() {
    use fnvm_host_interface::{Deadline, HostExit};
    use std::io::Write;
    use std::time::{Duration, Instant};
    let dir = TempDir::new();
    let fifo = dir.path().join("pipe");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    let mut g = Guest::with_dir(&dir);
    // No writer yet: the open returns at once (a blocking open would wait for one).
    let fd = g.open(3, true, "pipe", 0, rights::FD_READ, 0).unwrap();
    let nb = g
        .open(3, true, "pipe", 0, rights::FD_READ, fdflags::NONBLOCK)
        .unwrap();
    // A writer that writes nothing: reads would block.
    let mut writer = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
    g.set_u32(IOV, BUF);
    g.set_u32(IOV + 4, 16);
    g.err(
        "fd_read",
        &[nb as u64, IOV as u64, 1, OUT as u64],
        Errno::Again,
    );
    let t = Instant::now();
    g.deadline = Deadline::at(t + Duration::from_millis(50));
    assert_eq!(
        g.call_in(
            WASI_MODULE,
            "fd_read",
            &[fd as u64, IOV as u64, 1, OUT as u64]
        ),
        Err(HostExit::DeadlineExceeded)
    );
    assert!(
        t.elapsed() >= Duration::from_millis(45),
        "{:?}",
        t.elapsed()
    );
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    // Data arrives: a blocking read returns it.
    g.deadline = Deadline::at(Instant::now() + Duration::from_secs(60));
    writer.write_all(b"ping").unwrap();
    g.ok("fd_read", &[fd as u64, IOV as u64, 1, OUT as u64]);
    assert_eq!(g.u32_at(OUT), 4);
    assert_eq!(g.get(BUF, 4), b"ping");
    // The writer gone and the pipe empty: end of file, not a wait.
    drop(writer);
    g.ok("fd_read", &[fd as u64, IOV as u64, 1, OUT as u64]);
    assert_eq!(g.u32_at(OUT), 0);
}
