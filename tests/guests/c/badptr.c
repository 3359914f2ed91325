/* Bad pointers handed to the host through raw WASI imports: an iovec array at 0xFFFFFFF0, an
 * iovec whose buffer runs past the end of memory, an out-of-bounds nwritten, an iovec count
 * too large for memory, an out-of-bounds path for path_open (on the preopen, fd 3), a huge
 * random_get, out-of-bounds args_get and clock_time_get results. Each must fail with errno 21
 * (EFAULT) without killing the guest, which prints every errno and then "survived".
 * The imports are declared here with plain integers so that no libc wrapper touches the
 * pointers first. */
#include <stdint.h>
#include <stdio.h>

#define WASI(name) __attribute__((import_module("wasi_snapshot_preview1"), import_name(#name)))

WASI(fd_write) int32_t raw_fd_write(int32_t fd, uint32_t iovs, uint32_t n, uint32_t out);
WASI(fd_read) int32_t raw_fd_read(int32_t fd, uint32_t iovs, uint32_t n, uint32_t out);
WASI(path_open) int32_t raw_path_open(int32_t fd, int32_t dirflags, uint32_t path,
                                      uint32_t path_len, int32_t oflags, int64_t rights_base,
                                      int64_t rights_inheriting, int32_t fdflags, uint32_t out);
WASI(random_get) int32_t raw_random_get(uint32_t buf, uint32_t len);
WASI(args_get) int32_t raw_args_get(uint32_t argv, uint32_t argv_buf);
WASI(clock_time_get) int32_t raw_clock_time_get(int32_t id, int64_t precision, uint32_t out);

#define BAD 0xFFFFFFF0u
#define P(x) ((uint32_t)(uintptr_t)(x))

int main(void) {
    uint32_t memory_end = (uint32_t)__builtin_wasm_memory_size(0) * 65536u;
    static const char text[] = "never written\n";
    static uint32_t good_iov[2], past_end_iov[2];
    static uint32_t out;
    static int32_t fd;
    good_iov[0] = P(text);
    good_iov[1] = sizeof text - 1;
    past_end_iov[0] = memory_end - 8;
    past_end_iov[1] = 100;

    printf("fd_write bad iovs: %d\n", raw_fd_write(1, BAD, 1, P(&out)));
    printf("fd_write iov past memory: %d\n", raw_fd_write(1, P(past_end_iov), 1, P(&out)));
    printf("fd_write bad nwritten: %d\n", raw_fd_write(1, P(good_iov), 1, BAD));
    printf("fd_write huge iovs_len: %d\n", raw_fd_write(1, P(good_iov), 0x10000000, P(&out)));
    printf("fd_read iov past memory: %d\n", raw_fd_read(0, P(past_end_iov), 1, P(&out)));
    printf("path_open bad path: %d\n",
           raw_path_open(3, 0, 0xFFFFFF00u, 10, 0, 0, 0, 0, P(&fd)));
    printf("random_get huge len: %d\n", raw_random_get(1024, 0x7fffffff));
    printf("args_get bad argv: %d\n", raw_args_get(BAD, BAD));
    printf("clock_time_get bad time: %d\n", raw_clock_time_get(1, 0, BAD));
    printf("survived\n");
    return 0;
}
