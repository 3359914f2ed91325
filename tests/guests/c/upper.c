/* Stdin to stdout (fd_read, fd_write): copies stdin to stdout upper-casing ASCII letters, in
 * 4 KiB reads, then prints "read N bytes" on stderr. */
#include <ctype.h>
#include <stdio.h>
#include <unistd.h>

int main(void) {
    char buf[4096];
    size_t total = 0;
    for (;;) {
        ssize_t n = read(0, buf, sizeof buf);
        if (n < 0) {
            perror("read");
            return 1;
        }
        if (n == 0)
            break;
        total += (size_t)n;
        for (ssize_t i = 0; i < n; i++)
            buf[i] = (char)toupper((unsigned char)buf[i]);
        for (ssize_t done = 0; done < n;) {
            ssize_t w = write(1, buf + done, (size_t)(n - done));
            if (w < 0) {
                perror("write");
                return 1;
            }
            done += w;
        }
    }
    fprintf(stderr, "read %zu bytes\n", total);
    return 0;
}
