/* Files and directories in a preopened directory (argv[1], as the guest sees it): path_open
 * (create, truncate, append), fd_write, fd_read, fd_seek (start, end), fd_tell,
 * fd_filestat_set_size, fd_filestat_get, path_filestat_get, path_rename, path_unlink_file,
 * path_create_directory, fd_readdir, path_remove_directory. The host puts host.txt there
 * first; the guest leaves renamed.txt behind. Every language prints the same lines. */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *dir;

static const char *path(const char *name) {
    static char buf[2][512];
    static int which;
    which ^= 1;
    snprintf(buf[which], sizeof buf[which], "%s/%s", dir, name);
    return buf[which];
}

static void die(const char *what) {
    perror(what);
    exit(1);
}

static const char *read_rest(int fd) {
    static char buf[256];
    ssize_t n = read(fd, buf, sizeof buf - 1);
    if (n < 0)
        die("read");
    buf[n] = 0;
    return buf;
}

static const char *kind(const char *p) {
    struct stat st;
    if (stat(p, &st) != 0)
        return "missing";
    return S_ISDIR(st.st_mode) ? "dir" : S_ISREG(st.st_mode) ? "file" : "other";
}

static int by_name(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void listing(const char *label, const char *p) {
    DIR *d = opendir(p);
    if (!d)
        die("opendir");
    char *names[64];
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < 64)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            names[n++] = strdup(e->d_name);
    closedir(d);
    qsort(names, n, sizeof *names, by_name);
    printf("%s:", label);
    for (size_t i = 0; i < n; i++) {
        printf(" %s", names[i]);
        free(names[i]);
    }
    printf("\n");
}

static void slurp(const char *label, const char *p) {
    int fd = open(p, O_RDONLY);
    if (fd < 0)
        die(p);
    printf("%s: %s", label, read_rest(fd));
    close(fd);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: files DIR\n");
        return 1;
    }
    dir = argv[1];
    slurp("host.txt", path("host.txt"));

    int fd = open(path("data.txt"), O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        die("creating data.txt");
    printf("write: %zd\n", write(fd, "Hello, files!", 13));
    lseek(fd, 0, SEEK_SET);
    printf("read: %s\n", read_rest(fd));
    printf("seek: %lld\n", (long long)lseek(fd, 7, SEEK_SET));
    printf("read: %s\n", read_rest(fd));
    printf("tell: %lld\n", (long long)lseek(fd, 0, SEEK_CUR));
    if (ftruncate(fd, 5) != 0)
        die("ftruncate");
    struct stat st;
    if (fstat(fd, &st) != 0)
        die("fstat");
    printf("truncate: size=%lld\n", (long long)st.st_size);
    printf("seek end-2: %lld\n", (long long)lseek(fd, -2, SEEK_END));
    printf("read: %s\n", read_rest(fd));
    close(fd);

    if (stat(path("data.txt"), &st) != 0)
        die("stat");
    printf("stat: size=%lld type=%s\n", (long long)st.st_size, kind(path("data.txt")));
    fd = open(path("data.txt"), O_WRONLY | O_APPEND);
    if (fd < 0 || write(fd, ", again", 7) != 7)
        die("append");
    close(fd);
    slurp("append", path("data.txt"));
    printf("\n");

    if (rename(path("data.txt"), path("renamed.txt")) != 0)
        die("rename");
    printf("rename: ok\n");
    printf("data.txt: %s\n", kind(path("data.txt")));
    printf("renamed.txt: %s\n", kind(path("renamed.txt")));

    if (mkdir(path("sub"), 0755) != 0)
        die("mkdir");
    printf("mkdir: ok\n");
    printf("sub: %s\n", kind(path("sub")));
    close(open(path("sub/b.txt"), O_WRONLY | O_CREAT, 0644));
    close(open(path("sub/a.txt"), O_WRONLY | O_CREAT, 0644));
    if (mkdir(path("sub/nested"), 0755) != 0)
        die("mkdir nested");
    listing("readdir sub", path("sub"));
    printf("rmdir non-empty: %s\n", rmdir(path("sub")) != 0 ? "error" : "ok");
    if (unlink(path("sub/a.txt")) != 0 || unlink(path("sub/b.txt")) != 0)
        die("unlink");
    printf("unlink: ok\n");
    if (rmdir(path("sub/nested")) != 0 || rmdir(path("sub")) != 0)
        die("rmdir");
    printf("rmdir: ok\n");
    printf("sub: %s\n", kind(path("sub")));
    listing("readdir", dir);
    return 0;
}
