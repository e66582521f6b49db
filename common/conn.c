/* A TLS connection on a libuv TCP handle: reads feed the TLS layer, its output is flushed with
 * batched uv_write. */
/* SPDX-License-Identifier: MIT */
#include "conn.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

/* One loop per process and read callbacks run to completion, so a single
 * read buffer and a single plaintext buffer serve every connection: idle
 * connections then cost no buffer memory. */
static uint8_t read_buf[64 * 1024];
static uint8_t plain_buf[64 * 1024];
static struct conn *all_conns;
static size_t n_live;    /* conns allocated and not yet freed */
static uint64_t n_freed; /* conns freed since start */

/* Deferred flushing: one uv_check (right after the poll phase) and one
 * uv_prepare (right before the loop blocks) write out every connection that
 * asked during the iteration. They exist while any conn does, unreferenced
 * so they never keep the loop alive. */
struct flusher {
    uv_check_t check;
    uv_prepare_t prepare;
    int closes;
};
static struct flusher *flusher;
static struct conn *dirty_conns;

static void dirty_unlink(struct conn *c)
{
    if (!c->dirty)
        return;
    if (c->dirty_prev)
        c->dirty_prev->dirty_next = c->dirty_next;
    else
        dirty_conns = c->dirty_next;
    if (c->dirty_next)
        c->dirty_next->dirty_prev = c->dirty_prev;
    c->dirty_prev = c->dirty_next = NULL;
    c->dirty = 0;
}

static void flush_now(struct conn *c);

static void flush_dirty(void)
{
    while (dirty_conns != NULL) {
        struct conn *c = dirty_conns;
        dirty_unlink(c);
        flush_now(c);
    }
}

static void on_check(uv_check_t *h)
{
    flush_dirty();
}

static void on_prepare(uv_prepare_t *h)
{
    flush_dirty();
}

static void flusher_free_cb(uv_handle_t *h)
{
    struct flusher *f = h->data;
    if (--f->closes == 0)
        free(f);
}

static void flusher_start(uv_loop_t *loop)
{
    if (flusher != NULL)
        return;
    flusher = calloc(1, sizeof(*flusher));
    if (flusher == NULL)
        return; /* conn_flush then writes at once */
    uv_check_init(loop, &flusher->check);
    uv_prepare_init(loop, &flusher->prepare);
    flusher->check.data = flusher->prepare.data = flusher;
    uv_check_start(&flusher->check, on_check);
    uv_prepare_start(&flusher->prepare, on_prepare);
    uv_unref((uv_handle_t *)&flusher->check);
    uv_unref((uv_handle_t *)&flusher->prepare);
}

static void flusher_stop(void)
{
    if (flusher == NULL)
        return;
    flusher->closes = 2;
    uv_close((uv_handle_t *)&flusher->check, flusher_free_cb);
    uv_close((uv_handle_t *)&flusher->prepare, flusher_free_cb);
    flusher = NULL;
}

void conn_close_all(const char *reason)
{
    for (struct conn *c = all_conns; c != NULL; c = c->all_next)
        conn_close(c, reason);
}

struct conn *conn_new(uv_loop_t *loop, const struct conn_ops *ops, void *owner)
{
    struct conn *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    uv_tcp_init(loop, &c->tcp);
    uv_timer_init(loop, &c->timer);
    c->tcp.data = c;
    c->timer.data = c;
    buf_init(&c->early);
    buf_init(&c->wbuf);
    c->ops = ops;
    c->owner = owner;
    c->all_next = all_conns;
    if (all_conns != NULL)
        all_conns->all_prev = c;
    all_conns = c;
    n_live++;
    flusher_start(loop);
    return c;
}

static const struct conn_ops fake_ops = {0};

struct conn *conn_new_fake(uv_loop_t *loop, struct conn_sink *sink, const char *peer)
{
    struct conn *c = conn_new(loop, &fake_ops, NULL);

    if (c == NULL)
        return NULL;
    c->sink = sink;
    snprintf(c->peer, sizeof(c->peer), "%s", peer);
    return c;
}

int conn_fake_feed(struct conn *c, const uint8_t *data, size_t len)
{
    int rc;

    assert(c->sink != NULL);
    if (c->closing)
        return -EPIPE;
    rc = c->ops->on_data != NULL ? c->ops->on_data(c, data, len) : 0;
    if (rc < 0)
        conn_close(c, "protocol error");
    else
        conn_flush(c);
    return rc;
}

static void close_cb(uv_handle_t *h)
{
    struct conn *c = h->data;
    if (--c->pending_closes > 0)
        return;
    if (c->all_prev != NULL)
        c->all_prev->all_next = c->all_next;
    else
        all_conns = c->all_next;
    if (c->all_next != NULL)
        c->all_next->all_prev = c->all_prev;
    dirty_unlink(c);
    if (all_conns == NULL)
        flusher_stop();
    if (c->ops->on_close != NULL)
        c->ops->on_close(c, c->reason);
    if (c->sink != NULL) {
        c->sink->closed = 1;
        snprintf(c->sink->reason, sizeof(c->sink->reason), "%s", c->reason);
    }
    tls_conn_free(&c->tls);
    buf_free(&c->early);
    buf_free(&c->wbuf);
    free(c);
    n_live--;
    n_freed++;
}

size_t conn_live(void)
{
    return n_live;
}

uint64_t conn_freed(void)
{
    return n_freed;
}

void conn_close(struct conn *c, const char *reason)
{
    if (c->closing)
        return;
    c->closing = 1;
    if (reason != c->reason)
        snprintf(c->reason, sizeof(c->reason), "%s", reason ? reason : "closed");
    c->pending_closes = 2;
    uv_close((uv_handle_t *)&c->tcp, close_cb);
    uv_close((uv_handle_t *)&c->timer, close_cb);
}

void conn_close_after_flush(struct conn *c, const char *reason)
{
    if (c->closing || c->close_after_flush)
        return;
    snprintf(c->reason, sizeof(c->reason), "%s", reason ? reason : "closed");
    c->close_after_flush = 1;
    if (c->tls_started)
        tls_shutdown(&c->tls);
    conn_flush(c);
}

size_t conn_out_pending(const struct conn *c)
{
    return c->tls.out.len + c->wbuf.len + c->tls.pending.len;
}

static void write_cb(uv_write_t *req, int status)
{
    struct conn *c = container_of(req, struct conn, wreq);

    c->writing = 0;
    c->bytes_out += c->wbuf.len;
    c->wbuf.len = 0;
    c->wbuf.off = 0;
    if (c->closing)
        return;
    if (status < 0) {
        conn_close(c, status == UV_EPIPE || status == UV_ECONNRESET ? "peer reset" : "write error");
        return;
    }
    if (c->tls_started && c->tls.pending.len > 0 && tls_flush_pending(&c->tls) < 0 &&
        c->tls.fatal) {
        conn_close(c, "tls error");
        return;
    }
    conn_flush(c);
    if (c->closing)
        return;
    if (c->was_above_high && conn_out_pending(c) < CONN_LOW_WATER) {
        c->was_above_high = 0;
        if (c->ops->on_drain != NULL)
            c->ops->on_drain(c);
    } else if (!c->writing && c->ops->on_drain != NULL && conn_out_pending(c) == 0) {
        c->ops->on_drain(c);
    }
}

void conn_flush(struct conn *c)
{
    if (c->closing || c->dirty)
        return;
    if (flusher == NULL) {
        flush_now(c);
        return;
    }
    c->dirty = 1;
    c->dirty_prev = NULL;
    c->dirty_next = dirty_conns;
    if (dirty_conns != NULL)
        dirty_conns->dirty_prev = c;
    dirty_conns = c;
}

static void flush_now(struct conn *c)
{
    uv_buf_t b;
    int rc;

    if (c->closing || c->writing)
        return;
    if (c->tls.out.len == 0) {
        if (c->close_after_flush && c->tls.pending.len == 0)
            conn_close(c, c->reason);
        return;
    }
    /* Hand the whole queue to one write: many TLS records, one syscall. */
    buf_move(&c->wbuf, &c->tls.out);
    b = uv_buf_init((char *)buf_head(&c->wbuf), (unsigned)c->wbuf.len);
    rc = uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, write_cb);
    if (rc < 0) {
        conn_close(c, "write error");
        return;
    }
    c->writing = 1;
    if (conn_out_pending(c) >= CONN_HIGH_WATER)
        c->was_above_high = 1;
}

int conn_write(struct conn *c, const uint8_t *data, size_t len)
{
    int rc;
    if (c->closing)
        return -EPIPE;
    if (c->sink != NULL)
        return buf_append(&c->sink->out, data, len);
    rc = tls_write(&c->tls, data, len);
    if (rc < 0)
        return rc;
    if (conn_out_pending(c) >= CONN_HIGH_WATER)
        c->was_above_high = 1;
    return 0;
}

static void deadline_cb(uv_timer_t *t)
{
    struct conn *c = t->data;
    if (!c->tls.handshake_done)
        conn_close(c, "handshake timeout");
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    b->base = (char *)read_buf;
    b->len = sizeof(read_buf);
}

/* Drives TLS after new ciphertext arrived: handshake, then plaintext up. */
static void pump_tls(struct conn *c)
{
    int rc;
    size_t n;

    if (!c->tls.handshake_done) {
        rc = tls_handshake(&c->tls);
        if (rc == TLS_AGAIN) {
            conn_flush(c);
            return;
        }
        if (rc < 0) {
            char why[96];
            snprintf(why, sizeof(why), "tls handshake failed: %s", tls_error_string(&c->tls));
            /* Send the alert wolfSSL queued before going. */
            conn_flush(c);
            conn_close(c, why);
            return;
        }
        uv_timer_stop(&c->timer);
        if (c->ops->on_handshake != NULL)
            c->ops->on_handshake(c);
        if (c->closing)
            return;
    }
    for (;;) {
        rc = tls_read(&c->tls, plain_buf, sizeof(plain_buf), &n);
        if (rc == TLS_AGAIN)
            break;
        if (rc == TLS_EOF) {
            conn_close(c, "peer closed");
            return;
        }
        if (rc < 0) {
            conn_close(c, "tls error");
            return;
        }
        if (c->ops->on_data(c, plain_buf, n) < 0) {
            conn_close(c, "protocol error");
            return;
        }
        if (c->closing)
            return;
    }
    conn_flush(c);
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
    struct conn *c = s->data;

    if (c->closing)
        return;
    if (nread < 0) {
        conn_close(c, nread == UV_EOF ? "peer closed" : uv_strerror((int)nread));
        return;
    }
    if (nread == 0)
        return;
    c->bytes_in += (uint64_t)nread;
    if (!c->tls_started) {
        if (buf_append(&c->early, b->base, (size_t)nread) != 0) {
            conn_close(c, "out of memory");
            return;
        }
        if (c->ops->on_peek != NULL && c->ops->on_peek(c, buf_head(&c->early), c->early.len) < 0)
            conn_close(c, "refused before tls");
        return;
    }
    /* Let wolfSSL read straight from the read buffer; only what it leaves
     * is copied. */
    tls_lend(&c->tls, (const uint8_t *)b->base, (size_t)nread);
    pump_tls(c);
    if (tls_unlend(&c->tls) != 0)
        conn_close(c, "out of memory");
}

int conn_start(struct conn *c, uint64_t deadline_ms)
{
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    char ip[64] = "?";
    int port = 0, rc;

    /* A peer that reset between accept and here has no name: the socket is
     * dead, and nothing may be read from an unset address. */
    memset(&ss, 0, sizeof(ss));
    rc = uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len);
    if (rc != 0) {
        snprintf(c->peer, sizeof(c->peer), "?:0");
        return rc;
    }
    if (ss.ss_family == AF_INET) {
        uv_ip4_name((struct sockaddr_in *)&ss, ip, sizeof(ip));
        port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    } else if (ss.ss_family == AF_INET6) {
        uv_ip6_name((struct sockaddr_in6 *)&ss, ip, sizeof(ip));
        port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    }
    snprintf(c->peer, sizeof(c->peer), ss.ss_family == AF_INET6 ? "[%s]:%d" : "%s:%d", ip, port);
    uv_tcp_nodelay(&c->tcp, 1);
    if (deadline_ms > 0)
        uv_timer_start(&c->timer, deadline_cb, deadline_ms, 0);
    return uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb);
}

int conn_start_tls(struct conn *c, WOLFSSL_CTX *ctx, const char *sni, const char *alpn,
                   int alpn_required, struct tls_pin_verifier *v)
{
    int rc = tls_conn_init(&c->tls, ctx, sni, alpn, alpn_required);
    if (rc != 0)
        return rc;
    if (v != NULL)
        tls_attach_verifier(c->tls.ssl, v);
    c->tls_started = 1;
    if (c->early.len > 0) {
        rc = tls_feed(&c->tls, buf_head(&c->early), c->early.len);
        buf_free(&c->early);
        if (rc != 0)
            return rc;
    }
    pump_tls(c);
    return 0;
}

static void resume_cb(uv_timer_t *t)
{
    struct conn *c = t->data;
    if (!c->closing && c->tls_started)
        pump_tls(c);
}

void conn_pause_reading(struct conn *c, int pause)
{
    if (c->closing)
        return;
    if (pause) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        return;
    }
    uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb);
    /* Records already received may hold plaintext nobody read yet; process
     * them from the loop, never from inside the caller's callback. */
    if (c->tls_started && c->tls.handshake_done && c->tls.in.len > 0)
        uv_timer_start(&c->timer, resume_cb, 0, 0);
}
