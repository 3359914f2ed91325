/* Host test of fnvm_http.h (built and run by test.sh, under AddressSanitizer and UBSan): the
 * request parser on good, bad, truncated, deeply nested and randomly mutated input; the
 * response writer's escaping, base64 and repeated header names; a round trip of random bodies
 * through the writer and the parser. `test_host read` instead reads a request from stdin with
 * fnvm_http_request_read and echoes it, for test.sh's checks of the 400 / 413 answers. */
#include "fnvm_http.h"

#include <stdint.h>

static int failures = 0;

#define CHECK(cond)                                                                          \
    do {                                                                                     \
        if (!(cond)) {                                                                       \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);         \
            failures++;                                                                      \
        }                                                                                    \
    } while (0)

/* Parses a copy of text[0..len) in a buffer of exactly len bytes (no NUL after it), so that
 * the sanitizer catches any read past the end. The copy is returned in *copy for freeing. */
static int parse_exact(struct fnvm_http_request *req, const char *text, size_t len, char **copy) {
    *copy = (char *)malloc(len ? len : 1);
    if (len)
        memcpy(*copy, text, len);
    return fnvm_http_request_parse(req, *copy, len);
}

static int parse_str(struct fnvm_http_request *req, const char *text, char **copy) {
    return parse_exact(req, text, strlen(text), copy);
}

static const char FULL[] =
    "{\"method\": \"POST\", \"uri\": \"/a/b?x=1\", \"path\": \"/a/b\", \"query\": \"x=1\",\n"
    " \"headers\": {\"user-agent\": \"curl/8.0\", \"accept\": \"*/*\",\n"
    "   \"x-esc\": \"q\\\"b\\\\s\\/n\\nt\\tu\\u00e9\\u20AC\\ud83d\\ude00\"},\n"
    " \"future\": [1, -2.5e3, true, false, null, {\"a\": [\"b\"]}],\n"
    " \"body\": \"AP/+gA==\", \"bodyEncoding\": \"base64\"}\n";

static void test_full_request(void) {
    struct fnvm_http_request req;
    char *copy;
    CHECK(parse_str(&req, FULL, &copy) == FNVM_HTTP_OK);
    CHECK(strcmp(req.method, "POST") == 0 && req.method_len == 4);
    CHECK(strcmp(req.uri, "/a/b?x=1") == 0 && req.uri_len == 8);
    CHECK(strcmp(req.path, "/a/b") == 0 && strcmp(req.query, "x=1") == 0);
    CHECK(req.header_count == 3);
    CHECK(fnvm_http_header(&req, "User-Agent") && strcmp(fnvm_http_header(&req, "User-Agent"), "curl/8.0") == 0);
    CHECK(fnvm_http_header(&req, "ACCEPT") && strcmp(fnvm_http_header(&req, "ACCEPT"), "*/*") == 0);
    CHECK(fnvm_http_header(&req, "user-agent2") == NULL && fnvm_http_header(&req, "user-agen") == NULL);
    const char *esc = fnvm_http_header(&req, "x-esc");
    CHECK(esc && strcmp(esc, "q\"b\\s/n\nt\tu\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80") == 0);
    CHECK(req.body_len == 4 && memcmp(req.body, "\x00\xff\xfe\x80", 4) == 0);
    fnvm_http_request_free(&req);
    free(copy);

    /* Minimal: defaults; uri from path and query; null members; an escaped NUL. */
    CHECK(parse_str(&req, "{\"method\":\"GET\",\"path\":\"/p\",\"query\":\"q=1\",\"headers\":null,"
                          "\"body\":\"a\\u0000b\",\"bodyEncoding\":null}", &copy) == FNVM_HTTP_OK);
    CHECK(strcmp(req.uri, "/p?q=1") == 0 && req.uri_len == 6);
    CHECK(req.header_count == 0 && req.body_len == 3 && memcmp(req.body, "a\0b", 3) == 0);
    fnvm_http_request_free(&req);
    free(copy);
    CHECK(parse_str(&req, " {\"method\":\"GET\"} ", &copy) == FNVM_HTTP_OK);
    CHECK(strcmp(req.uri, "") == 0 && strcmp(req.path, "") == 0 && req.body_len == 0);
    CHECK(req.body && req.body[0] == 0);
    fnvm_http_request_free(&req);
    free(copy);
}

static void test_bad_requests(void) {
    static const char *const bad[] = {
        "", " ", "null", "[]", "\"GET\"", "{", "{}", "{\"method\":null}", "{\"method\":1}",
        "{\"method\":\"GET\"", "{\"method\":\"GET\",}", "{\"method\":\"GET\"} x",
        "{\"method\":\"GET\"}{}", "{\"method\":\"GET\",\"method\":\"PUT\"}",
        "{\"method\":\"GET\",\"headers\":[]}", "{\"method\":\"GET\",\"headers\":{\"a\":1}}",
        "{\"method\":\"GET\",\"headers\":{\"a\":\"1\",}}", "{\"method\":\"GET\",\"headers\":{},\"headers\":{}}",
        "{\"method\":\"GET\",\"body\":\"%%%%\",\"bodyEncoding\":\"base64\"}",
        "{\"method\":\"GET\",\"body\":\"Zg=\",\"bodyEncoding\":\"base64\"}",
        "{\"method\":\"GET\",\"body\":\"Zh==\",\"bodyEncoding\":\"base64\"}",
        "{\"method\":\"GET\",\"bodyEncoding\":\"gzip\"}", "{\"method\":\"GET\",\"body\":[]}",
        "{\"method\":\"\\x\"}", "{\"method\":\"\\u12\"}", "{\"method\":\"\\u12G4\"}",
        "{\"method\":\"\\ud83d\"}", "{\"method\":\"\\ud83d\\u0041\"}", "{\"method\":\"\\ude00\"}",
        "{\"method\":\"\\ud83d\\", "{\"method\":\"a\tb\"}", "{\"method\":\"\xff\"}",
        "{\"method\":\"\xc0\xaf\"}", "{\"method\":\"\xed\xa0\x80\"}", "{\"method\":\"\xf4\x90\x80\x80\"}",
        "{\"method\":\"GET\",\"x\":tru}", "{\"method\":\"GET\",\"x\":01}", "{\"method\":\"GET\",\"x\":1.}",
        "{\"method\":\"GET\",\"x\":-}", "{\"method\":\"GET\",\"x\":1e}", "{\"method\":\"GET\",\"x\":[1,]}",
        "{\"method\":\"GET\",\"x\":[1 2]}", "{\"method\":\"GET\",\"x\":{\"a\"}}", "{\"method\":\"GET\",\"x\":{1:2}}",
        "{\"method\":\"GET\",\"x\":[}", "{\"method\":\"GET\",\"x\":{]}", "{method:\"GET\"}",
        "\xEF\xBB\xBF{\"method\":\"GET\"}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        struct fnvm_http_request req;
        char *copy;
        int r = parse_str(&req, bad[i], &copy);
        if (r != FNVM_HTTP_MALFORMED || !req.error) {
            fprintf(stderr, "bad input %zu parsed (%d): %s\n", i, r, bad[i]);
            failures++;
        }
        CHECK(req.method == NULL && req.priv_headers == NULL);
        fnvm_http_request_free(&req);
        free(copy);
    }
    /* Every proper prefix of a valid request is an error. */
    size_t len = strlen(FULL);
    while (len > 0 && FULL[len - 1] == '\n')
        len--;
    for (size_t end = 0; end < len; end++) {
        struct fnvm_http_request req;
        char *copy;
        int r = parse_exact(&req, FULL, end, &copy);
        if (r == FNVM_HTTP_OK) {
            fprintf(stderr, "prefix of %zu bytes parsed\n", end);
            failures++;
        }
        fnvm_http_request_free(&req);
        free(copy);
    }
}

static void test_nesting(void) {
    for (size_t depth = 60; depth <= 70; depth++) {
        size_t n = strlen("{\"method\":\"GET\",\"x\":}") + 2 * depth;
        char *text = (char *)malloc(n + 1);
        size_t at = (size_t)sprintf(text, "{\"method\":\"GET\",\"x\":");
        for (size_t i = 0; i < depth; i++)
            text[at++] = '[';
        for (size_t i = 0; i < depth; i++)
            text[at++] = ']';
        text[at++] = '}';
        struct fnvm_http_request req;
        char *copy;
        int r = parse_exact(&req, text, at, &copy);
        /* The top-level object is level 0: the member's arrays may nest 63 deep. */
        CHECK((r == FNVM_HTTP_OK) == (depth < FNVM_HTTP_MAX_DEPTH));
        fnvm_http_request_free(&req);
        free(copy);
        free(text);
    }
    size_t huge = 1000000;
    char *text = (char *)malloc(huge);
    memcpy(text, "{\"method\":\"GET\",\"x\":", 20);
    memset(text + 20, '[', huge - 20);
    struct fnvm_http_request req;
    CHECK(fnvm_http_request_parse(&req, text, huge) == FNVM_HTTP_MALFORMED);
    CHECK(strcmp(req.error, "nesting too deep") == 0);
    free(text);
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t rng(void) {
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1Dull;
}

/* Checks the invariants of a parsed request: every string NUL-terminated at its length. */
static void check_sane(const struct fnvm_http_request *req) {
    CHECK(req->method && req->uri && req->path && req->query && req->body);
    CHECK(req->method[req->method_len] == 0 && req->uri[req->uri_len] == 0);
    CHECK(req->path[req->path_len] == 0 && req->query[req->query_len] == 0);
    CHECK(req->body[req->body_len] == 0);
    for (size_t i = 0; i < req->header_count; i++)
        CHECK(req->headers[i].name[req->headers[i].name_len] == 0 &&
              req->headers[i].value[req->headers[i].value_len] == 0);
}

static void test_random_mutations(void) {
    static const char alphabet[] = "{}[]:,\"\\u0aZ-+.eE \n\xc3\xa9tfn=/\x01\xff";
    size_t base = strlen(FULL), ok = 0;
    char *buf = (char *)malloc(base + 16);
    for (int iter = 0; iter < 300000; iter++) {
        memcpy(buf, FULL, base);
        size_t len = base;
        int edits = 1 + (int)(rng() % 4);
        for (int e = 0; e < edits; e++) {
            size_t at = (size_t)(rng() % (len + 1));
            char c = alphabet[rng() % (sizeof alphabet - 1)];
            switch (rng() % 3) {
            case 0:
                if (at < len) {
                    memmove(buf + at, buf + at + 1, len - at - 1);
                    len--;
                }
                break;
            case 1:
                if (at < len)
                    buf[at] = c;
                break;
            default:
                memmove(buf + at + 1, buf + at, len - at);
                buf[at] = c;
                len++;
            }
        }
        struct fnvm_http_request req;
        char *copy;
        if (parse_exact(&req, buf, len, &copy) == FNVM_HTTP_OK) {
            check_sane(&req);
            ok++;
        } else
            CHECK(req.error != NULL && req.error_offset <= len);
        fnvm_http_request_free(&req);
        free(copy);
    }
    free(buf);
    /* Pure noise too. */
    unsigned char noise[64];
    for (int iter = 0; iter < 200000; iter++) {
        size_t len = (size_t)(rng() % sizeof noise);
        for (size_t i = 0; i < len; i++)
            noise[i] = (unsigned char)alphabet[rng() % (sizeof alphabet - 1)];
        struct fnvm_http_request req;
        char *copy;
        if (parse_exact(&req, (const char *)noise, len, &copy) == FNVM_HTTP_OK)
            check_sane(&req);
        fnvm_http_request_free(&req);
        free(copy);
    }
    fprintf(stderr, "random mutations: %zu of 300000 still parsed\n", ok);
}

/* What fnvm_http_respond_to wrote, NUL-terminated (free it). */
static char *respond_text(int status, const char *status_text, const char *const *names,
                          const char *const *values, size_t count, const void *body, size_t len) {
    FILE *f = tmpfile();
    CHECK(fnvm_http_respond_to(f, status, status_text, names, values, count, body, len) == 0);
    long size = ftell(f);
    rewind(f);
    char *text = (char *)calloc((size_t)size + 1, 1);
    CHECK(fread(text, 1, (size_t)size, f) == (size_t)size);
    fclose(f);
    return text;
}

static void test_responses(void) {
    const char *names[] = {"Content-Type", "X-Powered-By"}, *values[] = {"text/plain", "CleverCloud"};
    char *t = respond_text(200, NULL, names, values, 2, "User-Agent: curl/8.0", 20);
    CHECK(strcmp(t, "{\"status\":200,\"headers\":{\"Content-Type\":\"text/plain\",\"X-Powered-By\":"
                    "\"CleverCloud\"},\"body\":\"User-Agent: curl/8.0\",\"bodyEncoding\":\"utf8\"}\n") == 0);
    free(t);
    t = respond_text(204, "No \"Content\"", NULL, NULL, 0, NULL, 5);
    CHECK(strcmp(t, "{\"status\":204,\"statusText\":\"No \\\"Content\\\"\",\"headers\":{},\"body\":\"\","
                    "\"bodyEncoding\":\"utf8\"}\n") == 0);
    free(t);
    const char *n2[] = {"X-Esc"}, *v2[] = {"a\"b\\c\nd\x01\x7f\xc3\xa9\xff!"};
    t = respond_text(200, NULL, n2, v2, 1, "\xff\x00\x61", 3);
    CHECK(strcmp(t, "{\"status\":200,\"headers\":{\"X-Esc\":\"a\\\"b\\\\c\\nd\\u0001\x7f\xc3\xa9\xEF\xBF\xBD!\"},"
                    "\"body\":\"/wBh\",\"bodyEncoding\":\"base64\"}\n") == 0);
    free(t);
    const char *n3[] = {"Set-Cookie", "set-Cookie", "Set-Cookie", "1-2", "1-2"};
    const char *v3[] = {"a", "b", "c", "d", "e"};
    t = respond_text(200, NULL, n3, v3, 5, "", 0);
    CHECK(strcmp(t, "{\"status\":200,\"headers\":{\"Set-Cookie\":\"a\",\"set-Cookie\":\"b\",\"SEt-Cookie\":\"c\","
                    "\"1-2\":\"d\",\"1-2\":\"e\"},\"body\":\"\",\"bodyEncoding\":\"utf8\"}\n") == 0);
    free(t);
}

/* Random bodies and header values through the writer, then back through the parser (the
 * response with a "method" member added is a request to it; "status" is skipped). */
static void test_round_trips(void) {
    for (int iter = 0; iter < 20000; iter++) {
        unsigned char body[200];
        char value[40];
        size_t len = (size_t)(rng() % sizeof body);
        int kind = (int)(rng() % 3);
        for (size_t i = 0; i < len; i++)
            body[i] = kind == 0 ? (unsigned char)rng() : kind == 1 ? (unsigned char)(rng() % 0x80)
                                                                   : (unsigned char)"\xc3\xa9\"\\\n\x01"[rng() % 6];
        size_t vlen = (size_t)(rng() % (sizeof value - 1));
        for (size_t i = 0; i < vlen; i++)
            value[i] = (char)(1 + rng() % 0x7f); /* ASCII without NUL: unchanged by the writer */
        value[vlen] = 0;
        const char *names[] = {"X-Value"}, *values[] = {value};
        char *text = respond_text((int)(rng() % 1000), NULL, names, values, 1, body, len);
        size_t tlen = strlen(text);
        char *req_text = (char *)malloc(tlen + 32);
        int n = sprintf(req_text, "{\"method\":\"R\",%s", text + 1);
        struct fnvm_http_request req;
        char *copy;
        int r = parse_exact(&req, req_text, (size_t)n, &copy);
        CHECK(r == FNVM_HTTP_OK);
        if (r == FNVM_HTTP_OK) {
            CHECK(req.body_len == len && memcmp(req.body, body, len) == 0);
            CHECK(fnvm_http_header(&req, "x-value") && strcmp(fnvm_http_header(&req, "x-value"), value) == 0);
        }
        fnvm_http_request_free(&req);
        free(copy);
        free(req_text);
        free(text);
    }
}

/* `test_host read`: what a guest does. Echoes method, path, query, user-agent and body. */
static int read_mode(void) {
    struct fnvm_http_request req;
    if (fnvm_http_request_read(&req) != 0)
        return 0;
    const char *ua = fnvm_http_header(&req, "user-agent");
    const char *names[] = {"X-Method", "X-Path", "X-Query", "X-UA"};
    const char *values[] = {req.method, req.path, req.query, ua ? ua : ""};
    int r = fnvm_http_respond(200, "OK", names, values, 4, req.body, req.body_len);
    fnvm_http_request_free(&req);
    return r == 0 ? 0 : 1;
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "read") == 0)
        return read_mode();
    test_full_request();
    test_bad_requests();
    test_nesting();
    test_responses();
    test_round_trips();
    test_random_mutations();
    if (failures) {
        fprintf(stderr, "%d check(s) failed\n", failures);
        return 1;
    }
    fprintf(stderr, "all checks passed\n");
    return 0;
}
