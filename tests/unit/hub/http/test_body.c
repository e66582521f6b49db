/* Unit tests of the bounded body reader (hub/http/body.c) through the user front ends on fake
 * conns: HTTP/2 credit given back as the body is read, limits, drain, abort; HTTP/1.1 early
 * refusal. */
/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE /* memmem */
#include <nghttp2/nghttp2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fake_user.h"
#include "hub/http/body.h"

/* --- the hub's side: every request's body read with body_read --- */

static size_t body_max;
static int in_body_read; /* done ran before body_read returned */
static struct {
    int calls;
    enum body_status st;
    int sync;
    uint8_t *data;
    size_t len;
} got;

static void done(struct ureq *r, void *arg, enum body_status st, const uint8_t *data, size_t len)
{
    (void)arg;
    got.calls++;
    got.st = st;
    got.sync = in_body_read;
    free(got.data);
    got.data = len ? malloc(len) : NULL;
    if (len)
        memcpy(got.data, data, len);
    got.len = len;
    if (st == BODY_OK)
        ureq_respond(r, 200, "text/plain", "ok", 2);
    else if (st == BODY_TOO_LARGE)
        ureq_error(r, 413, "too_large", "body over the limit");
    else
        CHECK(r == NULL);
}

static void dispatch(struct hub *h, struct ureq *r)
{
    (void)h;
    in_body_read = 1;
    CHECK_EQ_INT(body_read(r, body_max, done, NULL), 0);
    in_body_read = 0;
}

static void got_reset(size_t max)
{
    free(got.data);
    memset(&got, 0, sizeof(got));
    body_max = max;
}

/* --- an HTTP/2 client (nghttp2) on the other end --- */

struct client {
    nghttp2_session *s;
    struct buf to_hub;
    int32_t sid;
    const uint8_t *up; /* the upload */
    size_t up_len, up_off;
    int status;
    int closed;              /* the stream closed */
    uint32_t close_code;     /* its error code */
    int stream_wu, conn_wu;  /* WINDOW_UPDATE frames received for the stream, the conn */
    size_t sent_when_1st_wu; /* upload bytes sent when the first stream WINDOW_UPDATE came */
    struct buf resp;
};

static ssize_t cl_send(nghttp2_session *s, const uint8_t *data, size_t len, int flags, void *ud)
{
    struct client *cl = ud;

    (void)s;
    (void)flags;
    return buf_append(&cl->to_hub, data, len) == 0 ? (ssize_t)len : NGHTTP2_ERR_CALLBACK_FAILURE;
}

static int cl_frame_recv(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
    struct client *cl = ud;

    (void)s;
    if (f->hd.type != NGHTTP2_WINDOW_UPDATE)
        return 0;
    if (f->hd.stream_id == 0) {
        cl->conn_wu++;
    } else if (f->hd.stream_id == cl->sid) {
        if (cl->stream_wu++ == 0)
            cl->sent_when_1st_wu = cl->up_off;
    }
    return 0;
}

static int cl_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name, size_t nl,
                     const uint8_t *value, size_t vl, uint8_t flags, void *ud)
{
    struct client *cl = ud;

    (void)s;
    (void)f;
    (void)flags;
    (void)vl;
    if (nl == 7 && memcmp(name, ":status", 7) == 0)
        cl->status = (int)strtol((const char *)value, NULL, 10);
    return 0;
}

static int cl_data(nghttp2_session *s, uint8_t flags, int32_t sid, const uint8_t *data, size_t len,
                   void *ud)
{
    struct client *cl = ud;

    (void)s;
    (void)flags;
    (void)sid;
    return buf_append(&cl->resp, data, len) == 0 ? 0 : NGHTTP2_ERR_CALLBACK_FAILURE;
}

static int cl_close(nghttp2_session *s, int32_t sid, uint32_t code, void *ud)
{
    struct client *cl = ud;

    (void)s;
    if (sid == cl->sid) {
        cl->closed = 1;
        cl->close_code = code;
    }
    return 0;
}

static ssize_t cl_read_up(nghttp2_session *s, int32_t sid, uint8_t *dst, size_t len,
                          uint32_t *flags, nghttp2_data_source *src, void *ud)
{
    struct client *cl = ud;
    size_t n = cl->up_len - cl->up_off;

    (void)s;
    (void)sid;
    (void)src;
    if (n > len)
        n = len;
    memcpy(dst, cl->up + cl->up_off, n);
    cl->up_off += n;
    if (cl->up_off == cl->up_len)
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)n;
}

static void client_new(struct client *cl, const uint8_t *up, size_t up_len)
{
    nghttp2_session_callbacks *cb;
    nghttp2_data_provider prd;
    nghttp2_nv nv[] = {
        {(uint8_t *)":method", (uint8_t *)"POST", 7, 4, 0},
        {(uint8_t *)":scheme", (uint8_t *)"https", 7, 5, 0},
        {(uint8_t *)":authority", (uint8_t *)"hub.example", 10, 11, 0},
        {(uint8_t *)":path", (uint8_t *)"/up", 5, 3, 0},
    };

    memset(cl, 0, sizeof(*cl));
    buf_init(&cl->to_hub);
    buf_init(&cl->resp);
    cl->up = up;
    cl->up_len = up_len;
    CHECK_EQ_INT(nghttp2_session_callbacks_new(&cb), 0);
    nghttp2_session_callbacks_set_send_callback(cb, cl_send);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, cl_frame_recv);
    nghttp2_session_callbacks_set_on_header_callback(cb, cl_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, cl_data);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, cl_close);
    CHECK_EQ_INT(nghttp2_session_client_new(&cl->s, cb, cl), 0);
    nghttp2_session_callbacks_del(cb);
    CHECK_EQ_INT(nghttp2_submit_settings(cl->s, NGHTTP2_FLAG_NONE, NULL, 0), 0);
    prd.source.ptr = NULL;
    prd.read_callback = cl_read_up;
    cl->sid = nghttp2_submit_request(cl->s, NULL, nv, 4, &prd, NULL);
    CHECK(cl->sid > 0);
}

static void client_free(struct client *cl)
{
    nghttp2_session_del(cl->s);
    buf_free(&cl->to_hub);
    buf_free(&cl->resp);
}

/* Client and hub talk until neither has more to say (or the stream closed
 * and all was read). Returns the rounds it took. */
static int pump(struct client *cl, struct fu_conn *u, int max_rounds)
{
    int round;

    for (round = 0; round < max_rounds; round++) {
        const uint8_t *out;
        size_t len;
        int moved = 0;

        CHECK(nghttp2_session_send(cl->s) == 0);
        if (cl->to_hub.len > 0) {
            struct buf b = cl->to_hub;

            buf_init(&cl->to_hub);
            fu_feed(u, buf_head(&b), b.len, b.len);
            buf_free(&b);
            moved = 1;
        }
        fu_spin();
        out = fu_take(u, &len);
        if (len > 0) {
            CHECK_EQ_INT(nghttp2_session_mem_recv(cl->s, out, len), (ssize_t)len);
            moved = 1;
        }
        if (!moved && !nghttp2_session_want_write(cl->s))
            break;
        if (fu_closing(u))
            break;
    }
    return round;
}

static uint8_t *pattern(size_t n)
{
    uint8_t *p = malloc(n);

    for (size_t i = 0; p != NULL && i < n; i++)
        p[i] = (uint8_t)(i * 7 + i / 251);
    return p;
}

/* A connection and a client about to upload n bytes to a reader of max. */
static uint8_t *h2_start(struct fu_conn *u, struct client *cl, size_t n, size_t max)
{
    uint8_t *up = pattern(n);

    CHECK(up != NULL);
    got_reset(max);
    fu_open(u, "h2");
    client_new(cl, up, n);
    return up;
}

static void h2_finish(struct fu_conn *u, struct client *cl, uint8_t *up)
{
    client_free(cl);
    fu_close(u);
    free(up);
}

/* --- tests --- */

/* 3 MiB through a 1 MiB stream window: it gets through only because the
 * reader credits what it copies, and arrives whole. */
static void test_h2_credit(void)
{
    const size_t n = 3u << 20;
    struct fu_conn u;
    struct client cl;
    uint8_t *up = h2_start(&u, &cl, n, 4u << 20);

    pump(&cl, &u, 10000);
    CHECK_EQ_INT(cl.up_off, n);
    CHECK_EQ_INT(got.calls, 1);
    CHECK_EQ_INT(got.st, BODY_OK);
    CHECK_EQ_INT(got.len, n);
    CHECK(got.data != NULL && memcmp(got.data, up, n) == 0);
    CHECK(cl.stream_wu > 0);
    CHECK(cl.conn_wu > 0);
    /* Credit came back before the first window was used up. */
    CHECK(cl.sent_when_1st_wu > 0 && cl.sent_when_1st_wu <= (1u << 20));
    CHECK_EQ_INT(cl.status, 200);
    CHECK(cl.closed);
    CHECK_EQ_INT(cl.close_code, NGHTTP2_NO_ERROR);
    CHECK(!fu_closing(&u));
    h2_finish(&u, &cl, up);
}

/* Past max: BODY_TOO_LARGE, but only once the whole body was read (and
 * credited), so the 413 reaches the client on a cleanly ended stream. */
static void test_h2_too_large(void)
{
    const size_t n = 3u << 20;
    struct fu_conn u;
    struct client cl;
    uint8_t *up = h2_start(&u, &cl, n, 100 * 1000);

    pump(&cl, &u, 10000);
    CHECK_EQ_INT(cl.up_off, n);
    CHECK_EQ_INT(got.calls, 1);
    CHECK_EQ_INT(got.st, BODY_TOO_LARGE);
    CHECK_EQ_INT(got.len, 0);
    CHECK(!got.sync);
    CHECK(cl.stream_wu > 0);
    CHECK_EQ_INT(cl.status, 413);
    CHECK(cl.resp.len > 0 && memmem(buf_head(&cl.resp), cl.resp.len, "too_large", 9) != NULL);
    CHECK(cl.closed);
    CHECK_EQ_INT(cl.close_code, NGHTTP2_NO_ERROR);
    h2_finish(&u, &cl, up);
}

/* The client gives up mid-body: done hears BODY_ABORTED with r NULL, and
 * the connection goes on. */
static void test_h2_abort(void)
{
    struct fu_conn u;
    struct client cl;
    uint8_t *up = h2_start(&u, &cl, 400 * 1000, 1u << 20);

    /* Send what the first window allows (64 KiB), then reset the stream. */
    CHECK(nghttp2_session_send(cl.s) == 0);
    CHECK(cl.up_off > 0 && cl.up_off < cl.up_len);
    fu_feed(&u, buf_head(&cl.to_hub), cl.to_hub.len, 4096);
    buf_free(&cl.to_hub);
    CHECK_EQ_INT(got.calls, 0);
    CHECK_EQ_INT(nghttp2_submit_rst_stream(cl.s, NGHTTP2_FLAG_NONE, cl.sid, NGHTTP2_CANCEL), 0);
    pump(&cl, &u, 100);
    CHECK_EQ_INT(got.calls, 1);
    CHECK_EQ_INT(got.st, BODY_ABORTED);
    CHECK(!fu_closing(&u));
    h2_finish(&u, &cl, up);
}

/* Sends one HTTP/1.1 request in pieces to a reader of max bytes: done ran
 * once with st, and the answer begins with status_line. Returns the output. */
static const uint8_t *h1_post(struct fu_conn *u, size_t max, const char *req, size_t piece,
                              enum body_status st, const char *status_line, size_t *len)
{
    const uint8_t *out;

    got_reset(max);
    fu_feeds(u, req, piece);
    CHECK_EQ_INT(got.calls, 1);
    CHECK_EQ_INT(got.st, st);
    out = fu_take(u, len);
    CHECK(*len > 12 && memcmp(out, status_line, 12) == 0);
    return out;
}

/* HTTP/1.1: a Content-Length over max is answered at once, before any
 * body byte (done runs inside body_read), and the connection closes. */
static void test_h1_declared_too_large(void)
{
    struct fu_conn u;
    const uint8_t *out;
    size_t len;

    fu_open(&u, "http/1.1");
    out = h1_post(&u, 1000, "POST /up HTTP/1.1\r\nHost: h\r\nContent-Length: 1000000\r\n\r\n", 1000,
                  BODY_TOO_LARGE, "HTTP/1.1 413", &len);
    CHECK(got.sync);
    CHECK(memmem(out, len, "Connection: close", 17) != NULL);
    fu_close(&u);
}

/* HTTP/1.1 under max: the exact bytes, however they arrive. */
static void test_h1_ok(void)
{
    struct fu_conn u;
    size_t len;

    fu_open(&u, "http/1.1");
    h1_post(&u, 1000, "POST /up HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\nhello world", 4,
            BODY_OK, "HTTP/1.1 200", &len);
    CHECK(!got.sync);
    CHECK_EQ_INT(got.len, 11);
    CHECK(got.data != NULL && memcmp(got.data, "hello world", 11) == 0);
    /* Chunked past max: read to its end, then 413. */
    h1_post(&u, 8,
            "POST /up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
            "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
            5, BODY_TOO_LARGE, "HTTP/1.1 413", &len);
    CHECK(!got.sync);
    fu_close(&u);
}

int main(void)
{
    fu_init(dispatch);
    test_h2_credit();
    test_h2_too_large();
    test_h2_abort();
    test_h1_declared_too_large();
    test_h1_ok();
    got_reset(0);
    fu_done();
    TEST_DONE();
}
