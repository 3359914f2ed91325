/* Escapes from a preopened directory (argv[1] as the guest sees it; the host preopens only it,
 * as fd 3, with outside.txt next to it and symlinks inside). Opening through libc paths and
 * through raw path_open calls on fd 3: every way out must fail ("denied"; "LEAK" if it
 * succeeded), while the controls inside the directory must work ("ok"). */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <wasi/api.h>

static const char *dir;

static void report(const char *label, int opened, int should_open) {
    const char *verdict = opened ? (should_open ? "ok" : "LEAK")
                                 : (should_open ? "FAILED" : "denied");
    printf("%s: %s\n", label, verdict);
}

static int try_open(const char *name, int flags) {
    char p[512];
    if (name[0] == '/')
        snprintf(p, sizeof p, "%s", name);
    else
        snprintf(p, sizeof p, "%s/%s", dir, name);
    int fd = open(p, flags, 0644);
    if (fd >= 0)
        close(fd);
    return fd >= 0;
}

static void raw_open(const char *label, const char *p, __wasi_oflags_t oflags) {
    __wasi_fd_t fd;
    __wasi_errno_t err = __wasi_path_open(3, __WASI_LOOKUPFLAGS_SYMLINK_FOLLOW, p, oflags,
                                          0x1fffffff, 0x1fffffff, 0, &fd);
    if (err == 0)
        (void)__wasi_fd_close(fd);
    report(label, err == 0, 0);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: escape DIR\n");
        return 1;
    }
    dir = argv[1];
    report("inside", try_open("inside.txt", O_RDONLY), 1);
    report("link-inside", try_open("link-inside", O_RDONLY), 1);
    report("dotdot", try_open("../outside.txt", O_RDONLY), 0);
    report("etc-passwd", try_open("/etc/passwd", O_RDONLY), 0);
    report("link-abs", try_open("link-abs", O_RDONLY), 0);
    report("link-rel", try_open("link-rel", O_RDONLY), 0);
    report("link-dir", try_open("link-dir/outside.txt", O_RDONLY), 0);
    report("create-outside", try_open("../escaped.txt", O_WRONLY | O_CREAT | O_TRUNC), 0);

    raw_open("raw-dotdot", "../outside.txt", 0);
    raw_open("raw-abs", "/etc/passwd", 0);
    raw_open("raw-deep", "inside-dir/../../outside.txt", 0);
    raw_open("raw-create", "../escaped.txt", __WASI_OFLAGS_CREAT);
    return 0;
}
