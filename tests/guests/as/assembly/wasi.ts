// Shared helpers for the AssemblyScript guests: raw wasi_snapshot_preview1 imports (declared
// here with plain integers, so that the guests can also pass bad pointers) and small wrappers
// for the file system calls the wasi-shim does not cover. Not a guest itself.

// @ts-ignore: decorator
@external("wasi_snapshot_preview1", "path_open")
export declare function path_open(fd: u32, dirflags: u32, path: usize, path_len: usize, oflags: u32,
  rights_base: u64, rights_inheriting: u64, fdflags: u32, opened: usize): u32;
// @ts-ignore: decorator
@external("wasi_snapshot_preview1", "fd_close")
export declare function fd_close(fd: u32): u32;
// @ts-ignore: decorator
@external("wasi_snapshot_preview1", "fd_read")
export declare function fd_read(fd: u32, iovs: usize, iovs_len: usize, nread: usize): u32;
// @ts-ignore: decorator
@external("wasi_snapshot_preview1", "fd_write")
export declare function fd_write(fd: u32, iovs: usize, iovs_len: usize, nwritten: usize): u32;
// @ts-ignore: decorator
@external("wasi_snapshot_preview1", "fd_seek")
export declare function fd_seek(fd: u32, offset: i64, whence: u32, newoffset: usize): u32;
// @ts-ignore: decorator
@external("wasi_snapshot_preview1", "fd_tell")
export declare function fd_tell(fd: u32, offset: usize): u32;
// @ts-ignore: decorator
@external("wasi_snapshot_preview1", "fd_filestat_get")
export declare function fd_filestat_get(fd: u32, filestat: usize): u32;
// @ts-ignore: decorator
@external("wasi_snapshot_preview1", "fd_filestat_set_size")
export declare function fd_filestat_set_size(fd: u32, size: u64): u32;
// @ts-ignore: decorator
@external("wasi_snapshot_preview1", "fd_readdir")
export declare function fd_readdir(fd: u32, buf: usize, buf_len: usize, cookie: u64, bufused: usize): u32;
// @ts-ignore: decorator
@external("wasi_snapshot_preview1", "fd_prestat_get")
export declare function fd_prestat_get(fd: u32, prestat: usize): u32;
// @ts-ignore: decorator
@external("wasi_snapshot_preview1", "fd_prestat_dir_name")
export declare function fd_prestat_dir_name(fd: u32, path: usize, path_len: usize): u32;
// @ts-ignore: decorator
@external("wasi_snapshot_preview1", "path_filestat_get")
export declare function path_filestat_get(fd: u32, flags: u32, path: usize, path_len: usize, filestat: usize): u32;
// @ts-ignore: decorator
@external("wasi_snapshot_preview1", "path_rename")
export declare function path_rename(fd: u32, old_path: usize, old_path_len: usize, new_fd: u32, new_path: usize, new_path_len: usize): u32;
// @ts-ignore: decorator
@external("wasi_snapshot_preview1", "path_unlink_file")
export declare function path_unlink_file(fd: u32, path: usize, path_len: usize): u32;
// @ts-ignore: decorator
@external("wasi_snapshot_preview1", "path_create_directory")
export declare function path_create_directory(fd: u32, path: usize, path_len: usize): u32;
// @ts-ignore: decorator
@external("wasi_snapshot_preview1", "path_remove_directory")
export declare function path_remove_directory(fd: u32, path: usize, path_len: usize): u32;
// @ts-ignore: decorator
@external("wasi_snapshot_preview1", "poll_oneoff")
export declare function poll_oneoff(subscriptions: usize, events: usize, nsubscriptions: usize, nevents: usize): u32;
// @ts-ignore: decorator
@external("wasi_snapshot_preview1", "random_get")
export declare function random_get(buf: usize, buf_len: usize): u32;
// @ts-ignore: decorator
@external("wasi_snapshot_preview1", "args_get")
export declare function args_get(argv: usize, argv_buf: usize): u32;
// @ts-ignore: decorator
@external("wasi_snapshot_preview1", "clock_time_get")
export declare function clock_time_get(id: u32, precision: u64, time: usize): u32;

export const LOOKUP_SYMLINK_FOLLOW: u32 = 1;
export const O_CREAT: u32 = 1;
export const O_DIRECTORY: u32 = 2;
export const O_TRUNC: u32 = 8;
export const FDFLAGS_APPEND: u32 = 1;
export const WHENCE_SET: u32 = 0;
export const WHENCE_CUR: u32 = 1;
export const WHENCE_END: u32 = 2;
export const FILETYPE_DIRECTORY: u8 = 3;
export const FILETYPE_REGULAR_FILE: u8 = 4;
export const ALL_RIGHTS: u64 = 0x1fffffff;
/** ALL_RIGHTS without fd_datasync, fd_write, fd_allocate and fd_filestat_set_size, which a
 * directory cannot have (as wasi-libc asks for a directory). */
export const DIR_RIGHTS: u64 = ALL_RIGHTS & ~(<u64>(1 | 1 << 6 | 1 << 8 | 1 << 22));

/** 64 bytes of scratch space for results (filestat is the largest). */
const scratch = memory.data(64, 8);

export function println(line: string): void {
  process.stdout.write(line + "\n");
}

/** A string's UTF-8 bytes (kept alive by the caller while their address is in use). */
export function utf8(s: string): ArrayBuffer {
  return String.UTF8.encode(s);
}

export function ptr(buf: ArrayBuffer): usize {
  return changetype<usize>(buf);
}

/** The preopened directory's fd whose guest path is `dir`, or -1 (as fd_prestat_get finds it). */
export function preopen(dir: string): i32 {
  for (let fd: u32 = 3; fd < 64; fd++) {
    if (fd_prestat_get(fd, scratch) != 0) break;
    let len = load<u32>(scratch, 4);
    let name = new ArrayBuffer(<i32>len);
    if (fd_prestat_dir_name(fd, ptr(name), len) != 0) continue;
    if (String.UTF8.decode(name) == dir) return <i32>fd;
  }
  return -1;
}

/** Opens `path` under `dirfd`; the new fd, or -errno. */
export function openAt(dirfd: u32, path: string, oflags: u32 = 0, fdflags: u32 = 0): i32 {
  let p = utf8(path);
  let rights = oflags & O_DIRECTORY ? DIR_RIGHTS : ALL_RIGHTS;
  let err = path_open(dirfd, LOOKUP_SYMLINK_FOLLOW, ptr(p), p.byteLength, oflags,
    rights, ALL_RIGHTS, fdflags, scratch);
  return err == 0 ? load<i32>(scratch) : -<i32>err;
}

export function mustOpen(dirfd: u32, path: string, oflags: u32 = 0, fdflags: u32 = 0): u32 {
  let fd = openAt(dirfd, path, oflags, fdflags);
  if (fd < 0) throw new Error("opening " + path + ": errno " + (-fd).toString());
  return <u32>fd;
}

export function check(err: u32, what: string): void {
  if (err != 0) throw new Error(what + ": errno " + err.toString());
}

/** Writes all of `s`; the number of bytes fd_write reported. */
export function writeString(fd: u32, s: string): usize {
  let data = utf8(s);
  store<usize>(scratch, ptr(data));
  store<usize>(scratch, data.byteLength, sizeof<usize>());
  check(fd_write(fd, scratch, 1, scratch + 2 * sizeof<usize>()), "fd_write");
  return load<usize>(scratch, 2 * sizeof<usize>());
}

/** Reads from the current position to the end of the file. */
export function readRest(fd: u32): string {
  let out = "";
  let buf = new ArrayBuffer(256);
  while (true) {
    store<usize>(scratch, ptr(buf));
    store<usize>(scratch, buf.byteLength, sizeof<usize>());
    check(fd_read(fd, scratch, 1, scratch + 2 * sizeof<usize>()), "fd_read");
    let n = load<usize>(scratch, 2 * sizeof<usize>());
    if (n == 0) break;
    out += String.UTF8.decode(buf.slice(0, <i32>n));
  }
  return out;
}

export function seek(fd: u32, offset: i64, whence: u32): u64 {
  check(fd_seek(fd, offset, whence, scratch), "fd_seek");
  return load<u64>(scratch);
}

export function tell(fd: u32): u64 {
  check(fd_tell(fd, scratch), "fd_tell");
  return load<u64>(scratch);
}

/** The size of an open file (fd_filestat_get). */
export function fileSize(fd: u32): u64 {
  check(fd_filestat_get(fd, scratch), "fd_filestat_get");
  return load<u64>(scratch, 32);
}

/** "file", "dir", "other" or "missing" (path_filestat_get, following symlinks). */
export function kind(dirfd: u32, path: string): string {
  let p = utf8(path);
  if (path_filestat_get(dirfd, LOOKUP_SYMLINK_FOLLOW, ptr(p), p.byteLength, scratch) != 0) return "missing";
  let type = load<u8>(scratch, 16);
  return type == FILETYPE_DIRECTORY ? "dir" : type == FILETYPE_REGULAR_FILE ? "file" : "other";
}

export function statSize(dirfd: u32, path: string): u64 {
  let p = utf8(path);
  check(path_filestat_get(dirfd, LOOKUP_SYMLINK_FOLLOW, ptr(p), p.byteLength, scratch), "path_filestat_get");
  return load<u64>(scratch, 32);
}

/** The names in directory `path` under `dirfd` without "." and "..", sorted, space-separated. */
export function listing(dirfd: u32, path: string): string {
  let fd = mustOpen(dirfd, path, O_DIRECTORY);
  let names = new Array<string>();
  let buf = new ArrayBuffer(4096);
  let cookie: u64 = 0;
  while (true) {
    check(fd_readdir(fd, ptr(buf), buf.byteLength, cookie, scratch), "fd_readdir");
    let used = load<usize>(scratch);
    let at: usize = 0;
    let complete = true;
    while (at < used) {
      // dirent: d_next u64, d_ino u64, d_namlen u32, d_type u8; then the name.
      if (at + 24 > used) { complete = false; break; }
      let namlen = <usize>load<u32>(ptr(buf) + at, 16);
      if (at + 24 + namlen > used) { complete = false; break; }
      let name = String.UTF8.decode(buf.slice(<i32>(at + 24), <i32>(at + 24 + namlen)));
      cookie = load<u64>(ptr(buf) + at);
      if (name != "." && name != "..") names.push(name);
      at += 24 + namlen;
    }
    // A full buffer may have cut the listing short; ask again from the last whole entry.
    if (used < <usize>buf.byteLength && complete) break;
  }
  fd_close(fd);
  names.sort();
  return names.join(" ");
}

export function yes(b: bool): string {
  return b ? "yes" : "no";
}
