/* HTTP trigger (?trigger=http), the product description's example with fnvm_http.h (from
 * guest-sdk/c): answers 200 with Content-Type: text/plain, X-Powered-By: CleverCloud and the
 * body "User-Agent: <the request's User-Agent>" (empty when it has none). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fnvm_http.h"

int main(void) {
    struct fnvm_http_request req;
    /* A request that cannot be read has been answered (400 / 413) already. */
    if (fnvm_http_request_read(&req) != 0)
        return 0;
    const char *ua = fnvm_http_header(&req, "user-agent");
    if (!ua)
        ua = "";
    size_t len = strlen("User-Agent: ") + strlen(ua);
    char *body = malloc(len + 1);
    if (!body)
        return 1;
    snprintf(body, len + 1, "User-Agent: %s", ua);
    const char *names[] = {"Content-Type", "X-Powered-By"};
    const char *values[] = {"text/plain", "CleverCloud"};
    int r = fnvm_http_respond(200, NULL, names, values, 2, body, len);
    free(body);
    fnvm_http_request_free(&req);
    return r == 0 ? 0 : 1;
}
