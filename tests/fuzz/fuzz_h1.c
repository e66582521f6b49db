/* libFuzzer entry point for the hub's HTTP/1.1 user front end (hub/http/h1.c and the API router
 * behind it): raw bytes in, as a client after the TLS handshake sends them, responses out. */
/* SPDX-License-Identifier: MIT */
#include "fake_hub.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Enough for every request a 64 KiB input can hold ("GET / HTTP/1.1\r\n\r\n"
 * is 18 bytes). */
#define MAX_METHODS 4096

struct req_scan {
    const char *methods[MAX_METHODS];
    size_t n;
    size_t begun;
};

static int rs_begin(http_parser *p)
{
    ((struct req_scan *)p->data)->begun++;
    return 0;
}

/* The method is known from the target on, as the hub knows it: a request
 * refused in its headers is still a HEAD, whose answer has no body. */
static int rs_method(http_parser *p)
{
    struct req_scan *rs = p->data;
    if (rs->n < rs->begun && rs->n < MAX_METHODS)
        rs->methods[rs->n++] = http_method_str((enum http_method)p->method);
    return 0;
}

static int rs_url(http_parser *p, const char *at, size_t len)
{
    (void)at;
    (void)len;
    return rs_method(p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct req_scan rs;
    struct resp_check rc;
    http_parser p;
    http_parser_settings s;
    struct buf out;
    size_t piece;
    int finals;

    if (size < 1 || size > 64 * 1024)
        return 0;
    /* The first byte says how the bytes arrive: in pieces of that size (0: at once). */
    piece = data[0] ? data[0] : size;
    data++;
    size--;
    /* Which requests the same parser sees, to know which answers are to HEAD. */
    memset(&rs, 0, sizeof(rs));
    memset(&s, 0, sizeof(s));
    s.on_message_begin = rs_begin;
    s.on_url = rs_url;
    s.on_headers_complete = rs_method;
    http_parser_init(&p, HTTP_REQUEST);
    p.data = &rs;
    /* After a CONNECT or an Upgrade, http_parser stops; the hub answers
     * neither with a tunnel and parses what follows as the next request. */
    for (size_t off = 0, n; off < size; off += n) {
        n = http_parser_execute(&p, &s, (const char *)data + off, size - off);
        if (!p.upgrade || HTTP_PARSER_ERRNO(&p) != HPE_OK || n == 0)
            break;
    }

    if (getenv("TETHER_FUZZ_SHOW") != NULL)
        for (size_t i = 0; i < rs.n; i++)
            fprintf(stderr, "request %zu: %s\n", i, rs.methods[i]);
    buf_init(&out);
    fake_hub_session(data, size, piece, &out);
    finals = check_responses(&out, rs.methods, rs.n, &rc);
    /* One answer per request at most, plus one 400 for bytes that are none. */
    if ((size_t)finals > rs.begun + 1)
        abort();
    /* Bad input is the client's fault: never a 500. */
    if (rc.n_500 != 0)
        abort();
    buf_free(&rc.body);
    buf_free(&out);
    return 0;
}
