// Files and directories in a preopened directory (argv[1], as the guest sees it), with raw
// calls on the preopen's fd: path_open (create, truncate, append), fd_write, fd_read, fd_seek
// (start, end), fd_tell, fd_filestat_set_size, fd_filestat_get, path_filestat_get, path_rename,
// path_unlink_file, path_create_directory, fd_readdir, path_remove_directory. The host puts
// host.txt there first; the guest leaves renamed.txt behind. Every language prints the same
// lines.
import {
  FDFLAGS_APPEND, O_CREAT, O_TRUNC, WHENCE_CUR, WHENCE_END, WHENCE_SET, check, fd_close,
  fd_filestat_set_size, fileSize, kind, listing, mustOpen, path_create_directory,
  path_remove_directory, path_rename, path_unlink_file, preopen, println, ptr, readRest, seek,
  statSize, tell, utf8, writeString
} from "./wasi";

let dirfd = preopen(process.argv[1]);
if (dirfd < 0) throw new Error("no preopen for " + process.argv[1]);
let dir = <u32>dirfd;

function slurp(name: string): string {
  let fd = mustOpen(dir, name);
  let text = readRest(fd);
  fd_close(fd);
  return text;
}

function mkdir(name: string): void {
  let p = utf8(name);
  check(path_create_directory(dir, ptr(p), p.byteLength), "mkdir " + name);
}

function rmdir(name: string): u32 {
  let p = utf8(name);
  return path_remove_directory(dir, ptr(p), p.byteLength);
}

function unlink(name: string): void {
  let p = utf8(name);
  check(path_unlink_file(dir, ptr(p), p.byteLength), "unlink " + name);
}

process.stdout.write("host.txt: " + slurp("host.txt"));

let fd = mustOpen(dir, "data.txt", O_CREAT | O_TRUNC);
println("write: " + writeString(fd, "Hello, files!").toString());
seek(fd, 0, WHENCE_SET);
println("read: " + readRest(fd));
println("seek: " + seek(fd, 7, WHENCE_SET).toString());
println("read: " + readRest(fd));
println("tell: " + tell(fd).toString());
check(fd_filestat_set_size(fd, 5), "fd_filestat_set_size");
println("truncate: size=" + fileSize(fd).toString());
println("seek end-2: " + seek(fd, -2, WHENCE_END).toString());
println("read: " + readRest(fd));
// fd_tell and a relative seek agree.
if (tell(fd) != seek(fd, 0, WHENCE_CUR)) throw new Error("fd_tell disagrees with fd_seek");
fd_close(fd);

println("stat: size=" + statSize(dir, "data.txt").toString() + " type=" + kind(dir, "data.txt"));
fd = mustOpen(dir, "data.txt", 0, FDFLAGS_APPEND);
writeString(fd, ", again");
fd_close(fd);
println("append: " + slurp("data.txt"));

let from = utf8("data.txt");
let to = utf8("renamed.txt");
check(path_rename(dir, ptr(from), from.byteLength, dir, ptr(to), to.byteLength), "rename");
println("rename: ok");
println("data.txt: " + kind(dir, "data.txt"));
println("renamed.txt: " + kind(dir, "renamed.txt"));

mkdir("sub");
println("mkdir: ok");
println("sub: " + kind(dir, "sub"));
fd_close(mustOpen(dir, "sub/b.txt", O_CREAT));
fd_close(mustOpen(dir, "sub/a.txt", O_CREAT));
mkdir("sub/nested");
println("readdir sub: " + listing(dir, "sub"));
println("rmdir non-empty: " + (rmdir("sub") != 0 ? "error" : "ok"));
unlink("sub/a.txt");
unlink("sub/b.txt");
println("unlink: ok");
check(rmdir("sub/nested"), "rmdir sub/nested");
check(rmdir("sub"), "rmdir sub");
println("rmdir: ok");
println("sub: " + kind(dir, "sub"));
println("readdir: " + listing(dir, "."));
