/* fnvm_http.h: the guest side of fnvm's HTTP trigger (?trigger=http, ABI version 1, described
 * in guest-sdk/README.md) for C functions built with clang --target=wasm32-wasi and wasi-libc.
 * Single header, C99, every function `static inline` (so that unused ones cost nothing and
 * raise no -Wunused-function); no global state.
 *
 *   #include "fnvm_http.h"
 *   int main(void) {
 *       struct fnvm_http_request req;
 *       if (fnvm_http_request_read(&req) != 0)
 *           return 0;  // it already answered 400 / 413 / 500, see below
 *       const char *ua = fnvm_http_header(&req, "User-Agent");
 *       const char *names[] = {"Content-Type"}, *values[] = {"text/plain"};
 *       fnvm_http_respond(200, NULL, names, values, 1, ua ? ua : "", ua ? strlen(ua) : 0);
 *       fnvm_http_request_free(&req);
 *       return 0;
 *   }
 *
 * Reading is bounded and never undefined on bad input: the request may not exceed
 * FNVM_HTTP_MAX_REQUEST_BYTES of JSON (define it before including to change it), nesting is
 * bounded by FNVM_HTTP_MAX_DEPTH, the input must be UTF-8 and strict JSON. When reading fails,
 * fnvm_http_request_read answers by itself (a response JSON on stdout: 413 when too large, 400
 * when malformed, 500 when out of memory or stdin fails, the reason in the body and on stderr)
 * and returns non-zero; the guest should then just exit 0 so that the worker sends that answer.
 * The request is parsed in place: its strings point into one buffer that
 * fnvm_http_request_free releases. */
#ifndef FNVM_HTTP_H
#define FNVM_HTTP_H

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Largest request JSON read from stdin, in bytes; larger requests get a 413 answer. The default
 * takes what the worker lets through by default: a 16 MiB body, base64-encoded when it is not
 * UTF-8 (4/3 of its size), plus the headers. Memory grows with the request, not to this. */
#ifndef FNVM_HTTP_MAX_REQUEST_BYTES
#define FNVM_HTTP_MAX_REQUEST_BYTES ((size_t)32 << 20)
#endif

/* How deep arrays and objects may nest in the request (it has two levels; members a later
 * version adds are skipped, whatever their depth up to this). */
#ifndef FNVM_HTTP_MAX_DEPTH
#define FNVM_HTTP_MAX_DEPTH 64
#endif

/* What fnvm_http_request_read and fnvm_http_request_parse return. */
enum fnvm_http_result {
    FNVM_HTTP_OK = 0,
    FNVM_HTTP_MALFORMED = 1, /* not a request of this ABI: 400 */
    FNVM_HTTP_TOO_LARGE = 2, /* over FNVM_HTTP_MAX_REQUEST_BYTES: 413 */
    FNVM_HTTP_NO_MEMORY = 3, /* 500 */
    FNVM_HTTP_IO = 4         /* stdin could not be read: 500 */
};

/* One request header: the name as the worker sends it (lowercase). Both strings are
 * NUL-terminated; the lengths count the bytes before the NUL (a value may hold an escaped
 * \u0000, then only the length tells its end). */
struct fnvm_http_header {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
};

/* A parsed request. Every string is NUL-terminated and never NULL after a successful read
 * (absent members are ""). The body is decoded from base64 when the worker had to encode it;
 * it is followed by a NUL byte too, for text bodies. */
struct fnvm_http_request {
    const char *method; /* GET, POST, ... */
    const char *uri;    /* path, then "?" and query when the query is not empty */
    const char *path;   /* after /{function_id}: "" or "/..."; percent-encoding kept */
    const char *query;  /* without "?" and without fnvm's debug and trigger parameters */
    size_t method_len, uri_len, path_len, query_len;
    const struct fnvm_http_header *headers;
    size_t header_count;
    const unsigned char *body;
    size_t body_len;
    /* Why parsing failed (a static string) and at which byte of the input. */
    const char *error;
    size_t error_offset;
    /* Private: what fnvm_http_request_free releases. */
    char *priv_input;
    struct fnvm_http_header *priv_headers;
    char *priv_uri;
};

/* ---- UTF-8, base64, ASCII case -------------------------------------------------------- */

/* ASCII lowercase, whatever the C locale says. */
static inline unsigned char fnvm_http__lower(unsigned char c) {
    return c >= 'A' && c <= 'Z' ? (unsigned char)(c - 'A' + 'a') : c;
}

/* The length of the well-formed UTF-8 sequence at s[0..n) (1 to 4), or 0 if there is none:
 * no overlong forms, no surrogates, nothing beyond U+10FFFF (RFC 3629). */
static inline size_t fnvm_http__utf8_len(const unsigned char *s, size_t n) {
    unsigned char c = s[0];
    if (c < 0x80)
        return 1;
    size_t len;
    unsigned char lo = 0x80, hi = 0xBF; /* the allowed range of the second byte */
    if (c >= 0xC2 && c <= 0xDF)
        len = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        if (c == 0xE0)
            lo = 0xA0;
        if (c == 0xED)
            hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        if (c == 0xF0)
            lo = 0x90;
        if (c == 0xF4)
            hi = 0x8F;
    } else
        return 0;
    if (n < len || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if (s[i] < 0x80 || s[i] > 0xBF)
            return 0;
    return len;
}

/* Whether s[0..n) is UTF-8; on failure *bad is the offset of the first invalid byte. */
static inline int fnvm_http__utf8_valid(const unsigned char *s, size_t n, size_t *bad) {
    size_t i = 0;
    while (i < n) {
        size_t l = fnvm_http__utf8_len(s + i, n - i);
        if (l == 0) {
            if (bad)
                *bad = i;
            return 0;
        }
        i += l;
    }
    return 1;
}

static const char fnvm_http__b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static inline int fnvm_http__b64_value(unsigned char c) {
    const char *at = c ? strchr(fnvm_http__b64, c) : NULL;
    return at ? (int)(at - fnvm_http__b64) : -1;
}

/* Decodes padded standard base64 (RFC 4648 section 4, canonical: zero unused bits) from
 * s[0..n) into out, which may be s itself (the output never overtakes the input). Returns the
 * decoded length, or (size_t)-1 when s is not canonical padded base64. */
static inline size_t fnvm_http__b64_decode(const unsigned char *s, size_t n, unsigned char *out) {
    if (n % 4 != 0)
        return (size_t)-1;
    size_t o = 0;
    for (size_t i = 0; i < n; i += 4) {
        size_t pad = 0;
        if (s[i + 3] == '=')
            pad = s[i + 2] == '=' ? 2 : 1;
        else if (s[i + 2] == '=')
            return (size_t)-1;
        if (pad && i + 4 != n)
            return (size_t)-1;
        unsigned long v = 0;
        for (size_t k = 0; k < 4 - pad; k++) {
            int d = fnvm_http__b64_value(s[i + k]);
            if (d < 0)
                return (size_t)-1;
            v = v << 6 | (unsigned long)d;
        }
        v <<= 6 * pad;
        if ((pad == 2 && (v & 0xFFFF)) || (pad == 1 && (v & 0xFF)))
            return (size_t)-1;
        unsigned char b0 = (unsigned char)(v >> 16), b1 = (unsigned char)(v >> 8), b2 = (unsigned char)v;
        out[o++] = b0;
        if (pad < 2)
            out[o++] = b1;
        if (pad < 1)
            out[o++] = b2;
    }
    return o;
}

/* ---- The request: an in-place JSON reader --------------------------------------------- */

struct fnvm_http__parser {
    char *s;
    size_t n, pos;
    const char *error;
    size_t error_offset;
};

static inline int fnvm_http__fail(struct fnvm_http__parser *p, const char *why) {
    if (!p->error) {
        p->error = why;
        p->error_offset = p->pos;
    }
    return -1;
}

static inline void fnvm_http__ws(struct fnvm_http__parser *p) {
    while (p->pos < p->n &&
           (p->s[p->pos] == ' ' || p->s[p->pos] == '\t' || p->s[p->pos] == '\n' || p->s[p->pos] == '\r'))
        p->pos++;
}

static inline int fnvm_http__peek(const struct fnvm_http__parser *p) {
    return p->pos < p->n ? (unsigned char)p->s[p->pos] : -1;
}

static inline int fnvm_http__hex4(struct fnvm_http__parser *p, unsigned *unit) {
    if (p->n - p->pos < 4)
        return fnvm_http__fail(p, "expected four hex digits in a \\u escape");
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        unsigned char c = (unsigned char)p->s[p->pos];
        unsigned d;
        if (c >= '0' && c <= '9')
            d = (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            d = (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            d = (unsigned)(c - 'A' + 10);
        else
            return fnvm_http__fail(p, "expected four hex digits in a \\u escape");
        v = v * 16 + d;
        p->pos++;
    }
    *unit = v;
    return 0;
}

/* Reads the string at the current '"', decoding its escapes in place: the text is written
 * from the opening quote on (an escape is never shorter than what it decodes to, so writing
 * stays behind reading) and NUL-terminated before the closing quote. */
static inline int fnvm_http__string(struct fnvm_http__parser *p, char **out, size_t *out_len) {
    size_t w = p->pos; /* where decoded text goes */
    char *start = p->s + w;
    p->pos++;          /* the opening quote */
    for (;;) {
        if (p->pos >= p->n)
            return fnvm_http__fail(p, "unexpected end of input in a string");
        unsigned char c = (unsigned char)p->s[p->pos];
        if (c == '"') {
            p->s[w] = '\0';
            p->pos++;
            *out = start;
            *out_len = (size_t)(p->s + w - start);
            return 0;
        }
        if (c < 0x20)
            return fnvm_http__fail(p, "control character in a string (must be escaped)");
        if (c != '\\') {
            p->s[w++] = (char)c;
            p->pos++;
            continue;
        }
        p->pos++;
        if (p->pos >= p->n)
            return fnvm_http__fail(p, "unexpected end of input in an escape");
        char e = p->s[p->pos++];
        unsigned cp;
        static const char named[] = "\"\\/bfnrt", decoded[] = "\"\\/\b\f\n\r\t";
        switch (e) {
        case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
            cp = (unsigned char)decoded[strchr(named, e) - named];
            break;
        case 'u':
            if (fnvm_http__hex4(p, &cp) != 0)
                return -1;
            if (cp >= 0xDC00 && cp <= 0xDFFF)
                return fnvm_http__fail(p, "unpaired surrogate in a \\u escape");
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                /* A high surrogate must be followed by an escaped low one. */
                unsigned low;
                if (p->n - p->pos < 2 || p->s[p->pos] != '\\' || p->s[p->pos + 1] != 'u')
                    return fnvm_http__fail(p, "unpaired surrogate in a \\u escape");
                p->pos += 2;
                if (fnvm_http__hex4(p, &low) != 0)
                    return -1;
                if (low < 0xDC00 || low > 0xDFFF)
                    return fnvm_http__fail(p, "unpaired surrogate in a \\u escape");
                cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
            }
            break;
        default:
            p->pos--;
            return fnvm_http__fail(p, "invalid escape");
        }
        /* UTF-8 of cp: at most 4 bytes for 12 read (3 for 6 from a single \u). */
        int extra = cp < 0x80 ? 0 : cp < 0x800 ? 1 : cp < 0x10000 ? 2 : 3;
        static const unsigned char lead[4] = {0x00, 0xC0, 0xE0, 0xF0};
        p->s[w++] = (char)(lead[extra] | cp >> (6 * extra));
        for (int k = extra - 1; k >= 0; k--)
            p->s[w++] = (char)(0x80 | (cp >> (6 * k) & 0x3F));
    }
}

/* Skips digits; how many there were. */
static inline size_t fnvm_http__digits(struct fnvm_http__parser *p) {
    size_t start = p->pos;
    while (p->pos < p->n && p->s[p->pos] >= '0' && p->s[p->pos] <= '9')
        p->pos++;
    return p->pos - start;
}

/* -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
static inline int fnvm_http__number(struct fnvm_http__parser *p) {
    if (fnvm_http__peek(p) == '-')
        p->pos++;
    if (fnvm_http__peek(p) == '0')
        p->pos++;
    else if (fnvm_http__digits(p) == 0)
        return fnvm_http__fail(p, "expected a digit in a number");
    if (fnvm_http__peek(p) == '.') {
        p->pos++;
        if (fnvm_http__digits(p) == 0)
            return fnvm_http__fail(p, "expected a digit after '.' in a number");
    }
    if (fnvm_http__peek(p) == 'e' || fnvm_http__peek(p) == 'E') {
        p->pos++;
        if (fnvm_http__peek(p) == '+' || fnvm_http__peek(p) == '-')
            p->pos++;
        if (fnvm_http__digits(p) == 0)
            return fnvm_http__fail(p, "expected a digit in a number's exponent");
    }
    return 0;
}

static inline int fnvm_http__literal(struct fnvm_http__parser *p, const char *word) {
    size_t len = strlen(word);
    if (p->n - p->pos < len || memcmp(p->s + p->pos, word, len) != 0)
        return fnvm_http__fail(p, "invalid literal");
    p->pos += len;
    return 0;
}

static const char fnvm_http__no_memory[] = "out of memory";

/* Steps through an object: at its '{' (*first set) or after a member's value, reads the next
 * member's name and ':'. Returns 1 with the name, 0 at the closing '}', -1 on bad input. */
static inline int fnvm_http__member(struct fnvm_http__parser *p, int *first, char **name,
                                    size_t *name_len) {
    if (*first) {
        *first = 0;
        p->pos++; /* '{' */
        fnvm_http__ws(p);
        if (fnvm_http__peek(p) == '}') {
            p->pos++;
            return 0;
        }
    } else {
        fnvm_http__ws(p);
        int c = fnvm_http__peek(p);
        if (c == '}') {
            p->pos++;
            return 0;
        }
        if (c != ',')
            return fnvm_http__fail(p, c < 0 ? "unexpected end of input in an object"
                                            : "expected ',' or '}' in an object");
        p->pos++;
        fnvm_http__ws(p);
    }
    if (fnvm_http__peek(p) != '"')
        return fnvm_http__fail(p, "expected a string (an object member's name)");
    if (fnvm_http__string(p, name, name_len) != 0)
        return -1;
    fnvm_http__ws(p);
    if (fnvm_http__peek(p) != ':')
        return fnvm_http__fail(p, "expected ':' after an object member's name");
    p->pos++;
    fnvm_http__ws(p);
    return 1;
}

/* Checks and skips any value (members this version does not know), nesting at most
 * FNVM_HTTP_MAX_DEPTH levels (counting the request object), so recursion is bounded. */
static inline int fnvm_http__skip(struct fnvm_http__parser *p, int depth) {
    int c = fnvm_http__peek(p), first = 1, m;
    char *text;
    size_t len;
    if (c == '"')
        return fnvm_http__string(p, &text, &len);
    if (c == 't' || c == 'f' || c == 'n')
        return fnvm_http__literal(p, c == 't' ? "true" : c == 'f' ? "false" : "null");
    if (c == '-' || (c >= '0' && c <= '9'))
        return fnvm_http__number(p);
    if (c != '{' && c != '[')
        return fnvm_http__fail(p, c < 0 ? "unexpected end of input, expected a value" : "expected a value");
    if (depth >= FNVM_HTTP_MAX_DEPTH)
        return fnvm_http__fail(p, "nesting too deep");
    if (c == '{') {
        while ((m = fnvm_http__member(p, &first, &text, &len)) == 1)
            if (fnvm_http__skip(p, depth + 1) != 0)
                return -1;
        return m;
    }
    p->pos++; /* '[' */
    fnvm_http__ws(p);
    if (fnvm_http__peek(p) == ']') {
        p->pos++;
        return 0;
    }
    for (;;) {
        fnvm_http__ws(p);
        if (fnvm_http__skip(p, depth + 1) != 0)
            return -1;
        fnvm_http__ws(p);
        c = fnvm_http__peek(p);
        p->pos++;
        if (c == ']')
            return 0;
        if (c != ',') {
            p->pos--;
            return fnvm_http__fail(p, c < 0 ? "unexpected end of input in an array"
                                            : "expected ',' or ']' in an array");
        }
    }
}

/* An optional string member: a string, or null (then *out stays as it was). */
static inline int fnvm_http__opt_string(struct fnvm_http__parser *p, char **out, size_t *len,
                                        int *seen) {
    if (*seen)
        return fnvm_http__fail(p, "duplicate member");
    *seen = 1;
    if (fnvm_http__peek(p) == 'n')
        return fnvm_http__literal(p, "null");
    if (fnvm_http__peek(p) != '"')
        return fnvm_http__fail(p, "a member that must be a string is not one");
    return fnvm_http__string(p, out, len);
}

/* The "headers" member: an object of strings, or null. */
static inline int fnvm_http__headers(struct fnvm_http__parser *p, struct fnvm_http_request *req) {
    int first = 1, m;
    size_t cap = 0;
    struct fnvm_http_header h;
    char *name, *value;
    if (fnvm_http__peek(p) == 'n')
        return fnvm_http__literal(p, "null");
    if (fnvm_http__peek(p) != '{')
        return fnvm_http__fail(p, "\"headers\" is not an object");
    while ((m = fnvm_http__member(p, &first, &name, &h.name_len)) == 1) {
        if (fnvm_http__peek(p) != '"')
            return fnvm_http__fail(p, "a header's value is not a string");
        if (fnvm_http__string(p, &value, &h.value_len) != 0)
            return -1;
        h.name = name;
        h.value = value;
        if (req->header_count == cap) {
            /* Every header takes at least 6 bytes of input, so this cannot overflow. */
            size_t ncap = cap ? cap * 2 : 16;
            struct fnvm_http_header *grown = (struct fnvm_http_header *)realloc(
                req->priv_headers, ncap * sizeof *grown);
            if (!grown)
                return fnvm_http__fail(p, fnvm_http__no_memory);
            req->priv_headers = grown;
            cap = ncap;
        }
        req->priv_headers[req->header_count++] = h;
    }
    req->headers = req->priv_headers;
    return m;
}

/* Parses the request JSON in buf[0..len), in place (buf is modified and must outlive req; it
 * is not freed by fnvm_http_request_free unless fnvm_http_request_read allocated it). Members
 * this version does not know are skipped; "method" is required, the others default to "" (and
 * "uri" to path?query). On failure req->error and req->error_offset say why and where, and
 * what was allocated is released. */
static inline int fnvm_http_request_parse(struct fnvm_http_request *req, char *buf, size_t len) {
    static char empty[1] = "";
    memset(req, 0, sizeof *req);
    struct fnvm_http__parser p = {buf, len, 0, NULL, 0};
    char *method = NULL, *uri = NULL, *path = empty, *query = empty, *body = empty, *enc = NULL;
    size_t enc_len = 0, body_len = 0;
    int seen_method = 0, seen_uri = 0, seen_path = 0, seen_query = 0, seen_headers = 0,
        seen_body = 0, seen_enc = 0;
    size_t bad;
    if (!fnvm_http__utf8_valid((const unsigned char *)buf, len, &bad)) {
        p.pos = bad;
        fnvm_http__fail(&p, "the request is not UTF-8");
        goto fail;
    }
    fnvm_http__ws(&p);
    if (fnvm_http__peek(&p) != '{') {
        fnvm_http__fail(&p, "the request is not a JSON object");
        goto fail;
    }
    char *name;
    size_t name_len;
    int first = 1, m;
    while ((m = fnvm_http__member(&p, &first, &name, &name_len)) == 1) {
        int r;
        /* Names are compared with their length, so that "method\u0000x" is not "method". */
#define FNVM_HTTP__IS(lit) (name_len == sizeof(lit) - 1 && memcmp(name, lit, sizeof(lit) - 1) == 0)
        if (FNVM_HTTP__IS("method"))
            r = fnvm_http__opt_string(&p, &method, &req->method_len, &seen_method);
        else if (FNVM_HTTP__IS("uri"))
            r = fnvm_http__opt_string(&p, &uri, &req->uri_len, &seen_uri);
        else if (FNVM_HTTP__IS("path"))
            r = fnvm_http__opt_string(&p, &path, &req->path_len, &seen_path);
        else if (FNVM_HTTP__IS("query"))
            r = fnvm_http__opt_string(&p, &query, &req->query_len, &seen_query);
        else if (FNVM_HTTP__IS("body"))
            r = fnvm_http__opt_string(&p, &body, &body_len, &seen_body);
        else if (FNVM_HTTP__IS("bodyEncoding"))
            r = fnvm_http__opt_string(&p, &enc, &enc_len, &seen_enc);
        else if (FNVM_HTTP__IS("headers"))
            r = seen_headers++ ? fnvm_http__fail(&p, "duplicate member") : fnvm_http__headers(&p, req);
        else
            r = fnvm_http__skip(&p, 1);
#undef FNVM_HTTP__IS
        if (r != 0)
            goto fail;
    }
    if (m != 0)
        goto fail;
    fnvm_http__ws(&p);
    if (p.pos != p.n) {
        fnvm_http__fail(&p, "unexpected text after the request object");
        goto fail;
    }
    if (!method) {
        fnvm_http__fail(&p, "no \"method\" member");
        goto fail;
    }
    if (!enc || (enc_len == 4 && memcmp(enc, "utf8", 4) == 0)) {
        /* The text as it is. */
    } else if (enc_len == 6 && memcmp(enc, "base64", 6) == 0) {
        size_t n = fnvm_http__b64_decode((const unsigned char *)body, body_len, (unsigned char *)body);
        if (n == (size_t)-1) {
            fnvm_http__fail(&p, "\"body\" is not padded standard base64");
            goto fail;
        }
        body[n] = '\0';
        body_len = n;
    } else {
        fnvm_http__fail(&p, "unknown \"bodyEncoding\" (expected \"utf8\" or \"base64\")");
        goto fail;
    }
    if (!uri) {
        if (req->query_len == 0) {
            uri = path;
            req->uri_len = req->path_len;
        } else {
            size_t n = req->path_len + 1 + req->query_len;
            req->priv_uri = (char *)malloc(n + 1);
            if (!req->priv_uri) {
                fnvm_http__fail(&p, fnvm_http__no_memory);
                goto fail;
            }
            memcpy(req->priv_uri, path, req->path_len);
            req->priv_uri[req->path_len] = '?';
            memcpy(req->priv_uri + req->path_len + 1, query, req->query_len + 1);
            uri = req->priv_uri;
            req->uri_len = n;
        }
    }
    req->method = method;
    req->uri = uri;
    req->path = path;
    req->query = query;
    req->body = (const unsigned char *)body;
    req->body_len = body_len;
    if (!req->headers)
        req->header_count = 0;
    return FNVM_HTTP_OK;
fail:
    free(req->priv_headers);
    free(req->priv_uri);
    memset(req, 0, sizeof *req);
    req->error = p.error ? p.error : "malformed request";
    req->error_offset = p.error_offset;
    return req->error == fnvm_http__no_memory ? FNVM_HTTP_NO_MEMORY : FNVM_HTTP_MALFORMED;
}

/* Releases what the request holds (safe on a zeroed or already released request). */
static inline void fnvm_http_request_free(struct fnvm_http_request *req) {
    free(req->priv_headers);
    free(req->priv_uri);
    free(req->priv_input);
    memset(req, 0, sizeof *req);
}

/* The value of header `name` (compared case-insensitively, ASCII), or NULL. Should the request
 * hold the same name twice (the worker joins repeated headers, so it never does), the first
 * one is found. */
static inline const char *fnvm_http_header(const struct fnvm_http_request *req, const char *name) {
    size_t len = strlen(name);
    for (size_t i = 0; i < req->header_count; i++) {
        const struct fnvm_http_header *h = &req->headers[i];
        size_t k = 0;
        while (h->name_len == len && k < len &&
               fnvm_http__lower((unsigned char)h->name[k]) == fnvm_http__lower((unsigned char)name[k]))
            k++;
        if (h->name_len == len && k == len)
            return h->value;
    }
    return NULL;
}

/* ---- The response: a JSON writer ------------------------------------------------------ */

/* Writes s[0..n) as a JSON string: `"`, `\` and control characters escaped (\b \f \n \r \t
 * by name, the others as \u00xx, as Go and the Rust crate do), bytes that are not UTF-8
 * replaced by U+FFFD (JSON text must be UTF-8). */
static inline void fnvm_http__put_string(FILE *out, const char *str, size_t n) {
    const unsigned char *s = (const unsigned char *)str;
    static const char hex[] = "0123456789abcdef";
    putc('"', out);
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        if (c == '"' || c == '\\') {
            putc('\\', out);
            putc(c, out);
        } else if (c < 0x20) {
            static const char named[] = "\b\f\n\r\t", letters[] = "bfnrt";
            const char *at = (const char *)memchr(named, c, 5);
            putc('\\', out);
            if (at)
                putc(letters[at - named], out);
            else
                fprintf(out, "u00%c%c", hex[c >> 4], hex[c & 15]);
        } else if (c < 0x80) {
            putc(c, out);
        } else {
            size_t l = fnvm_http__utf8_len(s + i, n - i);
            if (l == 0) {
                fputs("\xEF\xBF\xBD", out);
                i++;
                continue;
            }
            fwrite(s + i, 1, l, out);
            i += l;
            continue;
        }
        i++;
    }
    putc('"', out);
}

static inline void fnvm_http__put_base64(FILE *out, const unsigned char *s, size_t n) {
    putc('"', out);
    for (size_t i = 0; i < n; i += 3) {
        size_t left = n - i;
        unsigned long v = (unsigned long)s[i] << 16;
        if (left > 1)
            v |= (unsigned long)s[i + 1] << 8;
        if (left > 2)
            v |= s[i + 2];
        putc(fnvm_http__b64[v >> 18 & 63], out);
        putc(fnvm_http__b64[v >> 12 & 63], out);
        putc(left > 1 ? fnvm_http__b64[v >> 6 & 63] : '=', out);
        putc(left > 2 ? fnvm_http__b64[v & 63] : '=', out);
    }
    putc('"', out);
}

/* Into buf (at least strlen(name) + 1 bytes): `name` with the case of its i-th ASCII letter
 * swapped when bit i of k is set. */
static inline void fnvm_http__case_variant(const char *name, unsigned long k, char *buf) {
    unsigned letter = 0;
    size_t i = 0;
    for (; name[i]; i++) {
        char c = name[i];
        int upper = c >= 'A' && c <= 'Z', lower = c >= 'a' && c <= 'z';
        if (upper || lower) {
            if (letter < 16 && (k >> letter & 1))
                c = upper ? (char)(c - 'A' + 'a') : (char)(c - 'a' + 'A');
            letter++;
        }
        buf[i] = c;
    }
    buf[i] = '\0';
}

/* Writes the response JSON to `out` (see fnvm_http_respond). */
static inline int fnvm_http_respond_to(FILE *out, int status, const char *status_text,
                                       const char *const *names, const char *const *values,
                                       size_t header_count, const void *body, size_t body_len) {
    /* JSON member names should be unique and a reader keeps one of two equal names, so a
     * header name given again with the same spelling is written in another case (Set-Cookie,
     * set-Cookie, ...): header names are case-insensitive and the worker sends each member as
     * its own header field. written[i] is the spelling used for header i. */
    char **written = NULL;
    int result = 0;
    if (header_count > 0) {
        written = (char **)calloc(header_count, sizeof *written);
        if (!written)
            return -1;
    }
    for (size_t i = 0; i < header_count; i++) {
        size_t len = strlen(names[i]), letters = 0;
        written[i] = (char *)malloc(len + 1);
        if (!written[i]) {
            result = -1;
            goto done;
        }
        memcpy(written[i], names[i], len + 1);
        for (size_t k = 0; k < len; k++)
            letters += (names[i][k] | 0x20) >= 'a' && (names[i][k] | 0x20) <= 'z';
        if (letters > 16)
            letters = 16;
        for (unsigned long k = 1;; k++) {
            size_t j = 0;
            while (j < i && strcmp(written[j], written[i]) != 0)
                j++;
            /* Distinct, or no spelling left (a name without letters): written as it is, and
             * the worker keeps one of the two. */
            if (j == i || k >= 1UL << letters)
                break;
            fnvm_http__case_variant(names[i], k, written[i]);
        }
    }
    fprintf(out, "{\"status\":%d", status);
    if (status_text) {
        fputs(",\"statusText\":", out);
        fnvm_http__put_string(out, status_text, strlen(status_text));
    }
    fputs(",\"headers\":{", out);
    for (size_t i = 0; i < header_count; i++) {
        if (i > 0)
            putc(',', out);
        fnvm_http__put_string(out, written[i], strlen(written[i]));
        putc(':', out);
        fnvm_http__put_string(out, values[i], strlen(values[i]));
    }
    fputs("},\"body\":", out);
    if (!body)
        body_len = 0;
    if (body_len == 0 || fnvm_http__utf8_valid((const unsigned char *)body, body_len, NULL)) {
        fnvm_http__put_string(out, (const char *)body, body_len);
        fputs(",\"bodyEncoding\":\"utf8\"}\n", out);
    } else {
        fnvm_http__put_base64(out, (const unsigned char *)body, body_len);
        fputs(",\"bodyEncoding\":\"base64\"}\n", out);
    }
    if (fflush(out) != 0 || ferror(out))
        result = -1;
done:
    for (size_t i = 0; i < header_count; i++)
        free(written[i]);
    free(written);
    return result;
}

/* Writes the response JSON on stdout, one line: `status` (written as given; the worker
 * answers 502 outside 100..999), `statusText` unless NULL (the worker then uses the standard
 * reason), the header_count headers names[i]: values[i] (C strings, in order; a name given
 * twice is sent twice, see fnvm_http_respond_to), and the body: body_len bytes, sent as text
 * when they are UTF-8 and base64-encoded otherwise, so that binary bodies arrive unchanged.
 * Returns 0, or -1 when stdout could not be written or memory ran out (exit non-zero then:
 * the worker answers 500). */
static inline int fnvm_http_respond(int status, const char *status_text, const char *const *names,
                                    const char *const *values, size_t header_count, const void *body,
                                    size_t body_len) {
    return fnvm_http_respond_to(stdout, status, status_text, names, values, header_count, body,
                                body_len);
}

/* Answers a request that could not be read: `status` with a text body saying why (and the same
 * on stderr, which the debug report shows). */
static inline void fnvm_http__refuse(int status, const char *why, size_t offset, int with_offset) {
    char text[512];
    if (with_offset)
        snprintf(text, sizeof text,
                 "fnvm_http: the function could not read its HTTP trigger request: %s at byte %lu.\n"
                 "It expects to be called with ?trigger=http.\n",
                 why, (unsigned long)offset);
    else
        snprintf(text, sizeof text,
                 "fnvm_http: the function could not read its HTTP trigger request: %s.\n", why);
    fputs(text, stderr);
    const char *names[] = {"Content-Type"}, *values[] = {"text/plain; charset=utf-8"};
    fnvm_http_respond(status, NULL, names, values, 1, text, strlen(text));
}

/* Reads the request JSON from stdin (at most FNVM_HTTP_MAX_REQUEST_BYTES) and parses it into
 * req. On failure it writes the answer itself (413 too large, 400 malformed, 500 out of memory
 * or unreadable stdin) and returns non-zero; req is then empty and needs no freeing. */
static inline int fnvm_http_request_read(struct fnvm_http_request *req) {
    /* The buffer grows to at most one byte over the limit, which is how "larger" is seen. */
    const size_t max = FNVM_HTTP_MAX_REQUEST_BYTES;
    size_t cap = 0, len = 0;
    char *buf = NULL;
    int r = FNVM_HTTP_OK;
    memset(req, 0, sizeof *req);
    while (r == FNVM_HTTP_OK) {
        if (len == cap) {
            size_t ncap = cap ? cap * 2 : 64 << 10;
            ncap = len > max ? 0 : ncap > max + 1 ? max + 1 : ncap;
            char *grown = ncap ? (char *)realloc(buf, ncap) : NULL;
            if (!grown) {
                r = ncap ? FNVM_HTTP_NO_MEMORY : FNVM_HTTP_TOO_LARGE;
                break;
            }
            buf = grown;
            cap = ncap;
        }
        ssize_t n = read(0, buf + len, cap - len);
        if (n == 0)
            break;
        if (n < 0 && errno != EINTR)
            r = FNVM_HTTP_IO;
        if (n > 0)
            len += (size_t)n;
    }
    if (r == FNVM_HTTP_OK && len > max)
        r = FNVM_HTTP_TOO_LARGE;
    if (r == FNVM_HTTP_OK)
        r = fnvm_http_request_parse(req, buf, len);
    if (r == FNVM_HTTP_OK) {
        req->priv_input = buf;
        return r;
    }
    free(buf);
    if (r == FNVM_HTTP_TOO_LARGE) {
        char why[96];
        snprintf(why, sizeof why, "the request is larger than %lu bytes", (unsigned long)max);
        fnvm_http__refuse(413, why, 0, 0);
    } else if (r == FNVM_HTTP_MALFORMED)
        fnvm_http__refuse(400, req->error, req->error_offset, 1);
    else
        fnvm_http__refuse(500, r == FNVM_HTTP_IO ? "stdin could not be read" : "out of memory", 0, 0);
    return r;
}

#endif /* FNVM_HTTP_H */
