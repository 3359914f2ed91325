/* Raw mode (no ?trigger): the CGI-style variables and stdin. Prints
 * "method=$REQUEST_METHOD path=$PATH_INFO query=$QUERY_STRING ua=$HTTP_USER_AGENT" (unset ones
 * empty), a newline, then the request body (stdin) unchanged. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static const char *var(const char *name) {
    const char *v = getenv(name);
    return v ? v : "";
}

int main(void) {
    printf("method=%s path=%s query=%s ua=%s\n", var("REQUEST_METHOD"), var("PATH_INFO"),
           var("QUERY_STRING"), var("HTTP_USER_AGENT"));
    if (fflush(stdout) != 0)
        return 1;
    char buf[4096];
    for (;;) {
        ssize_t n = read(0, buf, sizeof buf);
        if (n < 0) {
            perror("read");
            return 1;
        }
        if (n == 0)
            break;
        for (ssize_t done = 0; done < n;) {
            ssize_t w = write(1, buf + done, (size_t)(n - done));
            if (w < 0) {
                perror("write");
                return 1;
            }
            done += w;
        }
    }
    return 0;
}
