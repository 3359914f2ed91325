/* Outbound connections from C (guest-sdk/c/fnvm_net.h): fetches "/" from FETCH_ADDRESS
 * (host:port) with HTTP/1.1 over TCP, or over TLS verified as FETCH_TLS_NAME when that is set,
 * with plain read()/write()/close() on the descriptor, and prints the response's body; on a
 * failure prints "error: <strerror>" and exits 1. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fnvm_net.h"

int main(void) {
    const char *address = getenv("FETCH_ADDRESS");
    const char *name = getenv("FETCH_TLS_NAME");
    if (!address) address = "";
    uint32_t fd;
    int32_t e = name ? host_tls_connect(address, strlen(address), name, strlen(name), 0, &fd)
                     : host_tcp_connect(address, strlen(address), 0, &fd);
    if (e != 0) {
        printf("error: %s\n", strerror(e));
        return 1;
    }
    char request[512];
    int n = snprintf(request, sizeof request,
                     "GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n",
                     name ? name : address);
    if (n < 0 || (size_t)n >= sizeof request || write((int)fd, request, (size_t)n) != n) {
        printf("error: %s\n", strerror(errno));
        return 1;
    }
    static char response[65536];
    size_t len = 0;
    for (;;) {
        ssize_t got = read((int)fd, response + len, sizeof response - 1 - len);
        if (got < 0) {
            printf("error: %s\n", strerror(errno));
            return 1;
        }
        if (got == 0 || len + (size_t)got >= sizeof response - 1) {
            len += (size_t)(got > 0 ? got : 0);
            break;
        }
        len += (size_t)got;
    }
    response[len] = 0;
    close((int)fd);
    const char *body = strstr(response, "\r\n\r\n");
    fputs(body ? body + 4 : response, stdout);
    return 0;
}
