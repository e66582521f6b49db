/* Unit tests of the hub's HTTP/1.1 front end (hub/http/h1.c) fed bytes on a fake conn: parsing,
 * pipelining, smuggling refusals, HEAD, keep-alive, limits, chunked bodies, answer lifetime. */
/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE /* memmem */
#include <http_parser.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fake_user.h"

/* --- the requests the hub dispatched --- */

#define MAX_SEEN 16

struct seen {
    char method[24];
    char target[64];
    char headers[512]; /* "name=value;" for each header, as the ureq holds them */
    struct buf body;
    char trailers[256]; /* "name=value;" of the request trailers, at on_end */
    int ended;
};

static struct seen seen[MAX_SEEN];
static int n_seen;
/* Requests whose answer waits for answer_held(). */
static struct ureq *held[MAX_SEEN];
static int n_held;

static void seen_reset(void)
{
    for (int i = 0; i < MAX_SEEN; i++)
        buf_free(&seen[i].body);
    memset(seen, 0, sizeof(seen));
    n_seen = 0;
    n_held = 0;
}

/* The answer to a request: "<method> <target>" then, if any, its body. */
static void answer(struct ureq *r, const struct seen *s)
{
    char txt[256];
    int n = snprintf(txt, sizeof(txt), "%s %s%s%.*s", s->method, s->target, s->body.len ? " " : "",
                     (int)s->body.len, s->body.len ? (const char *)buf_head(&s->body) : "");

    ureq_respond(r, 200, "text/plain", txt, (size_t)n);
}

static void h_body(struct ureq *r, const uint8_t *data, size_t len)
{
    struct seen *s = r->hctx;

    CHECK_EQ_INT(buf_append(&s->body, data, len), 0);
}

static char after_answer[64];

static void h_end(struct ureq *r)
{
    struct seen *s = r->hctx;
    const char *p = (const char *)buf_head(&r->req_trl);
    size_t off = 0;

    s->ended = 1;
    for (unsigned i = 0; i < r->n_req_trl; i++) {
        size_t nl = strlen(p), vl = strlen(p + nl + 1);
        off +=
            (size_t)snprintf(s->trailers + off, sizeof(s->trailers) - off, "%s=%s;", p, p + nl + 1);
        p += nl + vl + 2;
    }
    ureq_set_handler(r, NULL, NULL);
    if (strcmp(r->target, "/trl") == 0) {
        /* A chunked answer with trailers, some of which may not be ones. */
        const nghttp2_nv t[] = {h2_nv("X-Sum", 5, "42", 2), h2_nv("keep-alive", 10, "1", 1),
                                h2_nv("content-length", 14, "9", 1)};
        CHECK_EQ_INT(ureq_respond_head(r, 200, NULL, 0, -1), 0);
        CHECK_EQ_INT(ureq_respond_body(r, (const uint8_t *)"ok", 2), 0);
        CHECK_EQ_INT(ureq_respond_trailers(r, t, 3), 0);
        CHECK_EQ_INT(ureq_respond_end(r), 0);
        return;
    }
    answer(r, s);
    /* The answer ended the request (read whole, answered): r stays valid
     * until this callback returns, though the front end is done with it. */
    CHECK(r->released);
    snprintf(after_answer, sizeof(after_answer), "%s", r->target);
    CHECK_EQ_INT(ureq_respond_end(r), -EINVAL);
}

static const struct ureq_handler body_handler = {h_body, h_end, NULL, NULL, 0};

/* A held request that went away (its connection closed) is not answered. */
static void held_abort(struct ureq *r)
{
    for (int i = 0; i < n_held; i++)
        if (held[i] == r)
            held[i] = NULL;
}

static const struct ureq_handler held_handler = {NULL, NULL, held_abort, NULL, 0};

static void dispatch(struct hub *h, struct ureq *r)
{
    struct seen *s;
    size_t off = 0;

    (void)h;
    CHECK(n_seen < MAX_SEEN);
    if (n_seen >= MAX_SEEN)
        return ureq_error(r, 500, "test", "too many requests");
    s = &seen[n_seen++];
    snprintf(s->method, sizeof(s->method), "%s", r->method);
    snprintf(s->target, sizeof(s->target), "%s", r->target);
    for (size_t i = 0; i < r->n_hdrs; i++)
        off += (size_t)snprintf(s->headers + off, sizeof(s->headers) - off, "%s=%s;",
                                r->hdrs[i].name, r->hdrs[i].value);
    if (strncmp(r->target, "/held", 5) == 0) {
        held[n_held++] = r;
        ureq_set_handler(r, &held_handler, NULL);
        return;
    }
    if (r->has_body) {
        ureq_set_handler(r, &body_handler, s);
        return;
    }
    answer(r, s);
}

/* --- the responses the hub wrote --- */

#define MAX_RESP 16

struct resp {
    int status;
    int conn_close;
    char body[256];
};

struct resps {
    struct resp r[MAX_RESP];
    int n;        /* complete responses */
    int heads;    /* heads parsed */
    int head_req; /* index of the response that answers a HEAD (-1 none) */
    char field[64];
    int in_connection;
    size_t blen;
};

static int rs_field(http_parser *p, const char *at, size_t len)
{
    struct resps *rs = p->data;

    snprintf(rs->field, sizeof(rs->field), "%.*s", (int)len, at);
    return 0;
}

static int rs_value(http_parser *p, const char *at, size_t len)
{
    struct resps *rs = p->data;

    if (rs->heads < MAX_RESP && strcasecmp(rs->field, "connection") == 0 && len == 5 &&
        strncasecmp(at, "close", 5) == 0)
        rs->r[rs->heads].conn_close = 1;
    return 0;
}

static int rs_headers(http_parser *p)
{
    struct resps *rs = p->data;
    int idx = rs->heads++;

    if (idx < MAX_RESP)
        rs->r[idx].status = (int)p->status_code;
    rs->blen = 0;
    return idx == rs->head_req; /* 1: no body follows */
}

static int rs_body(http_parser *p, const char *at, size_t len)
{
    struct resps *rs = p->data;
    struct resp *r = &rs->r[rs->heads - 1];

    if (rs->heads > MAX_RESP || rs->blen + len >= sizeof(r->body))
        return -1;
    memcpy(r->body + rs->blen, at, len);
    rs->blen += len;
    return 0;
}

static int rs_complete(http_parser *p)
{
    ((struct resps *)p->data)->n++;
    return 0;
}

/* Parses all of out as HTTP/1.1 responses; CHECKs it is nothing else. */
static void parse(const uint8_t *out, size_t len, int head_req, struct resps *rs)
{
    http_parser p;
    http_parser_settings st;
    size_t n;

    memset(rs, 0, sizeof(*rs));
    rs->head_req = head_req;
    memset(&st, 0, sizeof(st));
    st.on_header_field = rs_field;
    st.on_header_value = rs_value;
    st.on_headers_complete = rs_headers;
    st.on_body = rs_body;
    st.on_message_complete = rs_complete;
    http_parser_init(&p, HTTP_RESPONSE);
    p.data = rs;
    n = http_parser_execute(&p, &st, (const char *)out, len);
    CHECK_EQ_INT(HTTP_PARSER_ERRNO(&p), HPE_OK);
    CHECK_EQ_INT(n, len);
    CHECK_EQ_INT(rs->heads, rs->n); /* no response cut short */
}

/* One connection: in fed in pieces, then the responses (the connection
 * stays open for checks; fu_close after). */
static void run(struct fu_conn *u, const char *in, size_t piece, int head_req, struct resps *rs)
{
    const uint8_t *out;
    size_t len;

    seen_reset();
    fu_open(u, "http/1.1");
    fu_feeds(u, in, piece);
    out = fu_take(u, &len);
    parse(out, len, head_req, rs);
}

/* --- tests --- */

static void test_parse(void)
{
    struct fu_conn u;
    struct resps rs;

    run(&u,
        "GET /a/b?x=1&y=%20 HTTP/1.1\r\nHost: hub.example\r\nX-Custom-NAME: Mixed Case\r\n"
        "Accept:   */*\r\n\r\n",
        1000, -1, &rs);
    CHECK_EQ_INT(n_seen, 1);
    CHECK_EQ_STR(seen[0].method, "GET");
    CHECK_EQ_STR(seen[0].target, "/a/b?x=1&y=%20");
    /* Names lower-case, values as sent but for the spaces before them. */
    CHECK_EQ_STR(seen[0].headers, "host=hub.example;x-custom-name=Mixed Case;accept=*/*;");
    CHECK_EQ_INT(rs.n, 1);
    CHECK_EQ_INT(rs.r[0].status, 200);
    CHECK_EQ_STR(rs.r[0].body, "GET /a/b?x=1&y=%20");
    /* Keep-alive: the connection stays, without Connection: close. */
    CHECK(!rs.r[0].conn_close);
    CHECK(!fu_closing(&u));
    fu_close(&u);

    /* The same request a byte at a time. */
    run(&u, "DELETE /x HTTP/1.1\r\nHost: h\r\n\r\n", 1, -1, &rs);
    CHECK_EQ_INT(n_seen, 1);
    CHECK_EQ_STR(seen[0].method, "DELETE");
    CHECK_EQ_STR(rs.r[0].body, "DELETE /x");
    fu_close(&u);
}

static void test_pipelined(void)
{
    struct fu_conn u;
    struct resps rs;
    const uint8_t *out;
    size_t len;

    /* Three requests in one piece, the first answered later: the others
     * are not even parsed before it is, and the answers keep their order. */
    run(&u,
        "GET /held HTTP/1.1\r\nHost: h\r\n\r\nGET /2 HTTP/1.1\r\nHost: h\r\n\r\n"
        "GET /3 HTTP/1.1\r\nHost: h\r\n\r\n",
        1000, -1, &rs);
    CHECK_EQ_INT(n_seen, 1);
    CHECK_EQ_INT(n_held, 1);
    CHECK_EQ_INT(rs.n, 0);
    CHECK(held[0] != NULL);
    if (held[0] != NULL) {
        ureq_set_handler(held[0], NULL, NULL);
        answer(held[0], &seen[0]);
    }
    fu_spin();
    out = fu_take(&u, &len);
    parse(out, len, -1, &rs);
    CHECK_EQ_INT(n_seen, 3);
    CHECK_EQ_INT(rs.n, 3);
    CHECK_EQ_STR(rs.r[0].body, "GET /held");
    CHECK_EQ_STR(rs.r[1].body, "GET /2");
    CHECK_EQ_STR(rs.r[2].body, "GET /3");
    CHECK(!fu_closing(&u));
    fu_close(&u);
}

/* in is refused with a 400 before any request reaches dispatch, and the
 * connection closes. */
static void refused(const char *in, const char *why)
{
    struct fu_conn u;
    struct resps rs;

    run(&u, in, 1000, -1, &rs);
    if (rs.n != 1 || rs.r[0].status != 400 || n_seen != 0)
        fprintf(stderr, "not refused: %s\n", why);
    CHECK_EQ_INT(n_seen, 0);
    CHECK_EQ_INT(rs.n, 1);
    CHECK_EQ_INT(rs.r[0].status, 400);
    CHECK(rs.r[0].conn_close);
    CHECK(strstr(rs.r[0].body, "\"bad_request\"") != NULL);
    CHECK(fu_closing(&u));
    fu_close(&u);
}

static void test_smuggling(void)
{
    refused("POST / HTTP/1.1\r\nHost: h\r\nContent-Length : 5\r\n\r\nhello",
            "space before the colon");
    refused("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
            "two Content-Lengths");
    refused("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
            "a coding before chunked");
    refused("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n"
            "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            "two Transfer-Encodings");
    refused("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
            "chunked not last");
    refused("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
            "0\r\n\r\n",
            "Content-Length and Transfer-Encoding");
    refused("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", "two Hosts");
    refused("GET / HTTP/1.1\r\nHo st: a\r\n\r\n", "space in a name");
}

static void test_head(void)
{
    struct fu_conn u;
    struct resps rs;
    const uint8_t *out;
    size_t len;
    const char *end;

    /* The HEAD's answer says the length of the GET's, with no body: the
     * next response follows its head at once. */
    seen_reset();
    fu_open(&u, "http/1.1");
    fu_feeds(&u, "HEAD /h HTTP/1.1\r\nHost: h\r\n\r\nGET /g HTTP/1.1\r\nHost: h\r\n\r\n", 1000);
    out = fu_take(&u, &len);
    parse(out, len, 0, &rs);
    CHECK_EQ_INT(rs.n, 2);
    CHECK_EQ_INT(rs.r[0].status, 200);
    CHECK_EQ_STR(rs.r[0].body, "");
    CHECK_EQ_STR(rs.r[1].body, "GET /g");
    end = memmem(out, len, "\r\n\r\n", 4);
    CHECK(end != NULL);
    CHECK(memmem(out, len, "Content-Length: 7\r\n", 19) != NULL);
    CHECK(end != NULL && (size_t)(end + 4 - (const char *)out) + 8 <= len &&
          memcmp(end + 4, "HTTP/1.1", 8) == 0);
    fu_close(&u);
}

static void test_close(void)
{
    struct fu_conn u;
    struct resps rs;

    /* Connection: close is honoured and said back. */
    run(&u, "GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n", 1000, -1, &rs);
    CHECK_EQ_INT(rs.n, 1);
    CHECK(rs.r[0].conn_close);
    CHECK(fu_closing(&u));
    fu_close(&u);
    /* HTTP/1.0 closes unless asked to keep alive. */
    run(&u, "GET / HTTP/1.0\r\n\r\n", 1000, -1, &rs);
    CHECK_EQ_INT(rs.n, 1);
    CHECK(rs.r[0].conn_close);
    CHECK(fu_closing(&u));
    fu_close(&u);
    run(&u, "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", 1000, -1, &rs);
    CHECK_EQ_INT(rs.n, 1);
    CHECK(!fu_closing(&u));
    fu_close(&u);
}

static int buf_append_fill(struct buf *b, char ch, size_t n)
{
    char block[1024];
    int rc = 0;

    memset(block, ch, sizeof(block));
    for (size_t done = 0; done < n && rc == 0; done += sizeof(block))
        rc = buf_append(b, block, n - done < sizeof(block) ? n - done : sizeof(block));
    return rc;
}

static void test_oversized(void)
{
    struct buf in;
    char line[64];

    /* A target past 8 KiB. */
    buf_init(&in);
    CHECK_EQ_INT(buf_append(&in, "GET /", 5), 0);
    CHECK_EQ_INT(buf_append_fill(&in, 'a', 9000), 0);
    CHECK_EQ_INT(buf_append(&in, " HTTP/1.1\r\nHost: h\r\n\r\n\0", 23), 0);
    refused((const char *)buf_head(&in), "long target");
    buf_free(&in);
    /* One header value past the head budget (64 KiB). */
    CHECK_EQ_INT(buf_append(&in, "GET / HTTP/1.1\r\nX-Big: ", 23), 0);
    CHECK_EQ_INT(buf_append_fill(&in, 'b', 70000), 0);
    CHECK_EQ_INT(buf_append(&in, "\r\n\r\n\0", 5), 0);
    refused((const char *)buf_head(&in), "long header value");
    buf_free(&in);
    /* More headers than a request may have. */
    CHECK_EQ_INT(buf_append(&in, "GET / HTTP/1.1\r\n", 16), 0);
    for (int i = 0; i < 200; i++) {
        int n = snprintf(line, sizeof(line), "X-H%d: v\r\n", i);
        CHECK_EQ_INT(buf_append(&in, line, (size_t)n), 0);
    }
    CHECK_EQ_INT(buf_append(&in, "\r\n\0", 3), 0);
    refused((const char *)buf_head(&in), "too many headers");
    buf_free(&in);
}

static void test_chunked(void)
{
    struct fu_conn u;
    struct resps rs;

    /* The chunks reach the handler whole and in order, whatever the
     * pieces; its answer from on_end leaves r readable to the end of the
     * callback, and the connection is kept. */
    after_answer[0] = '\0';
    run(&u,
        "POST /up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
        "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\nGET /next HTTP/1.1\r\nHost: h\r\n\r\n",
        3, -1, &rs);
    CHECK_EQ_INT(n_seen, 2);
    CHECK(seen[0].ended);
    CHECK_EQ_INT(rs.n, 2);
    CHECK_EQ_STR(rs.r[0].body, "POST /up hello world");
    CHECK_EQ_STR(rs.r[1].body, "GET /next");
    CHECK_EQ_STR(after_answer, "/up");
    CHECK(!fu_closing(&u));
    fu_close(&u);
    /* The same with a Content-Length. */
    run(&u, "PUT /cl HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n\r\nabcd", 2, -1, &rs);
    CHECK_EQ_INT(rs.n, 1);
    CHECK_EQ_STR(rs.r[0].body, "PUT /cl abcd");
    fu_close(&u);
}

/* Trailers both ways: the request's trailer section is kept apart from its
 * head (fed a byte at a time: the last field ends only at the empty line),
 * and the answer's trailers go in its last chunk, filtered. */
static void test_trailers(void)
{
    struct fu_conn u;
    struct resps rs;
    const uint8_t *out;
    size_t len;

    seen_reset();
    fu_open(&u, "http/1.1");
    fu_feeds(&u,
             "POST /trl HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
             "2\r\nab\r\n0\r\nX-Req-Sum: s1\r\nX-Two: 2\r\n\r\n",
             1);
    out = fu_take(&u, &len);
    CHECK_EQ_INT(n_seen, 1);
    CHECK(seen[0].ended);
    CHECK_EQ_STR(seen[0].trailers, "x-req-sum=s1;x-two=2;");
    CHECK(strstr(seen[0].headers, "x-req-sum") == NULL);
    static const char last[] = "\r\n2\r\nok\r\n0\r\nx-sum: 42\r\n\r\n";
    CHECK(memmem(out, len, last, sizeof(last) - 1) != NULL);
    CHECK(memmem(out, len, "keep-alive: 1", 13) == NULL);
    CHECK(memmem(out, len, "content-length: 9", 17) == NULL);
    parse(out, len, -1, &rs);
    CHECK_EQ_INT(rs.n, 1);
    CHECK_EQ_STR(rs.r[0].body, "ok");
    CHECK(!fu_closing(&u));
    fu_close(&u);
}

int main(void)
{
    fu_init(dispatch);
    test_trailers();
    test_parse();
    test_pipelined();
    test_smuggling();
    test_head();
    test_close();
    test_oversized();
    test_chunked();
    seen_reset();
    fu_done();
    TEST_DONE();
}
