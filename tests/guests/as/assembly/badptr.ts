// Bad pointers handed to the host through raw WASI imports: an iovec array at 0xFFFFFFF0, an
// iovec whose buffer runs past the end of memory, an out-of-bounds nwritten, an iovec count
// too large for memory, an out-of-bounds path for path_open (on the preopen, fd 3), a huge
// random_get, out-of-bounds args_get and clock_time_get results. Each must fail with errno 21
// (EFAULT) without killing the guest, which prints every errno and then "survived".
import { args_get, clock_time_get, fd_read, fd_write, path_open, println, random_get } from "./wasi";

const BAD: usize = 0xFFFFFFF0;
const text = memory.data<u8>([0x6e, 0x6f, 0x0a]); // "no\n", never written
const goodIov = memory.data(8, 4);
const pastEndIov = memory.data(8, 4);
const out = memory.data(4, 4);

let memoryEnd = <usize>memory.size() << 16;
store<u32>(goodIov, <u32>text);
store<u32>(goodIov, 3, 4);
store<u32>(pastEndIov, <u32>(memoryEnd - 8));
store<u32>(pastEndIov, 100, 4);

println("fd_write bad iovs: " + fd_write(1, BAD, 1, out).toString());
println("fd_write iov past memory: " + fd_write(1, pastEndIov, 1, out).toString());
println("fd_write bad nwritten: " + fd_write(1, goodIov, 1, BAD).toString());
println("fd_write huge iovs_len: " + fd_write(1, goodIov, 0x10000000, out).toString());
println("fd_read iov past memory: " + fd_read(0, pastEndIov, 1, out).toString());
println("path_open bad path: " + path_open(3, 0, 0xFFFFFF00, 10, 0, 0, 0, 0, out).toString());
println("random_get huge len: " + random_get(1024, 0x7fffffff).toString());
println("args_get bad argv: " + args_get(BAD, BAD).toString());
println("clock_time_get bad time: " + clock_time_get(1, 0, BAD).toString());
println("survived");
