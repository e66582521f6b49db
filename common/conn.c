/* A TLS connection on a libuv TCP handle: reads feed the TLS layer, its output is flushed with
 * batched uv_write. */
/* SPDX-License-Identifier: MIT */
#include "conn.h"

#include <assert.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

/* Drained buffers up to this size are freed at once: an idle connection
 * (a site between pings) then holds no buffer at all, and allocating one
 * again costs less than the write it serves. Larger ones (a bulk transfer's)
 * stay while the flow goes on, so it does not grow a buffer again for every
 * burst; conn_trim gives them back once the connection is quiet. */
#define CONN_BUF_KEEP (16u << 10)

/* What a group holds while any of its conns lives: the shared read and
 * plaintext buffers, and the deferred flush: one uv_check (right after the
 * poll phase) and one uv_prepare (right before the loop blocks) write out
 * every connection of the group that asked during the iteration. The
 * handles are unreferenced so they never keep the loop alive. When the last
 * conn goes, the group lets go of this block and the close callbacks free
 * it; a new conn then makes a new one. */
struct conn_bufs {
    uint8_t read_buf[64 * 1024];
    uint8_t plain_buf[64 * 1024];
    uv_check_t check;
    uv_prepare_t prepare;
    struct conn_ctx *cx; /* NULL once let go */
    int closes;
};

void conn_ctx_init(struct conn_ctx *cx, uv_loop_t *loop)
{
    memset(cx, 0, sizeof(*cx));
    cx->loop = loop;
    LIST_INIT(&cx->all);
    TAILQ_INIT(&cx->dirty);
}

static void dirty_unlink(struct conn *c)
{
    if (!c->dirty)
        return;
    assert(!TAILQ_EMPTY(&c->cx->dirty));
    TAILQ_REMOVE(&c->cx->dirty, c, dirty_link);
    c->dirty = 0;
}

static void flush_now(struct conn *c);

static void flush_dirty(struct conn_bufs *b)
{
    struct conn_ctx *cx = b->cx;
    struct conn *c;

    if (cx == NULL)
        return;
    /* flush_now may close conns, never free them (that waits for the
     * loop), so the head is always a live member. */
    while ((c = TAILQ_FIRST(&cx->dirty)) != NULL) {
        assert(c->dirty && c->cx == cx);
        dirty_unlink(c);
        flush_now(c);
    }
}

static void on_check(uv_check_t *h)
{
    flush_dirty(h->data);
}

static void on_prepare(uv_prepare_t *h)
{
    flush_dirty(h->data);
}

static void bufs_free_cb(uv_handle_t *h)
{
    struct conn_bufs *b = h->data;

    assert(b->cx == NULL && b->closes > 0);
    if (--b->closes == 0)
        free(b);
}

static int bufs_start(struct conn_ctx *cx)
{
    struct conn_bufs *b;

    if (cx->bufs != NULL)
        return 0;
    b = malloc(sizeof(*b));
    if (b == NULL)
        return -ENOMEM;
    b->cx = cx;
    b->closes = 0;
    uv_check_init(cx->loop, &b->check);
    uv_prepare_init(cx->loop, &b->prepare);
    b->check.data = b->prepare.data = b;
    uv_check_start(&b->check, on_check);
    uv_prepare_start(&b->prepare, on_prepare);
    uv_unref((uv_handle_t *)&b->check);
    uv_unref((uv_handle_t *)&b->prepare);
    cx->bufs = b;
    return 0;
}

static void bufs_stop(struct conn_ctx *cx)
{
    struct conn_bufs *b = cx->bufs;

    if (b == NULL)
        return;
    assert(LIST_EMPTY(&cx->all) && TAILQ_EMPTY(&cx->dirty));
    b->cx = NULL;
    b->closes = 2;
    uv_close((uv_handle_t *)&b->check, bufs_free_cb);
    uv_close((uv_handle_t *)&b->prepare, bufs_free_cb);
    cx->bufs = NULL;
}

void conn_close_all(struct conn_ctx *cx, const char *reason)
{
    struct conn *c;

    /* conn_close only marks and starts uv_close: the list stays as it is
     * until the close callbacks run. */
    LIST_FOREACH(c, &cx->all, all_link)
    conn_close(c, reason);
}

struct conn *conn_new(struct conn_ctx *cx, const struct conn_ops *ops, void *owner)
{
    struct conn *c;

    assert(cx != NULL && cx->loop != NULL);
    if (bufs_start(cx) != 0)
        return NULL;
    c = calloc(1, sizeof(*c));
    if (c == NULL) {
        if (LIST_EMPTY(&cx->all))
            bufs_stop(cx);
        return NULL;
    }
    uv_tcp_init(cx->loop, &c->tcp);
    uv_timer_init(cx->loop, &c->timer);
    c->tcp.data = c;
    c->timer.data = c;
    buf_init(&c->early);
    buf_init(&c->wbuf);
    c->ops = ops;
    c->owner = owner;
    c->cx = cx;
    LIST_INSERT_HEAD(&cx->all, c, all_link);
    cx->n_live++;
    return c;
}

static const struct conn_ops fake_ops = {0};

struct conn *conn_new_fake(struct conn_ctx *cx, struct conn_sink *sink, const char *peer)
{
    struct conn *c = conn_new(cx, &fake_ops, NULL);

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

/* The only place a conn is freed: after both its handles closed. */
static void close_cb(uv_handle_t *h)
{
    struct conn *c = h->data;
    struct conn_ctx *cx = c->cx;

    assert(c->closing && c->pending_closes > 0);
    if (--c->pending_closes > 0)
        return;
    assert(cx->n_live > 0 && !c->writing);
    LIST_REMOVE(c, all_link);
    dirty_unlink(c);
    if (LIST_EMPTY(&cx->all))
        bufs_stop(cx);
    if (c->ops->on_close != NULL)
        c->ops->on_close(c, c->reason);
    if (c->sink != NULL) {
        c->sink->closed = 1;
        snprintf(c->sink->reason, sizeof(c->sink->reason), "%s", c->reason);
    }
    tls_conn_free(&c->tls);
    buf_free(&c->early);
    buf_free(&c->wbuf);
    c->cx = NULL; /* a use after this trips the asserts before ASan would */
    free(c);
    cx->n_live--;
    cx->n_freed++;
}

size_t conn_live(const struct conn_ctx *cx)
{
    return cx->n_live;
}

uint64_t conn_freed(const struct conn_ctx *cx)
{
    return cx->n_freed;
}

void conn_close(struct conn *c, const char *reason)
{
    assert(c->cx != NULL);
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

/* The write of wbuf ended (status < 0: it failed). */
static void write_done(struct conn *c, int status)
{
    c->writing = 0;
    c->bytes_out += c->wbuf.len;
    c->wbuf.len = 0;
    c->wbuf.off = 0;
    if (c->wbuf.cap <= CONN_BUF_KEEP)
        buf_free(&c->wbuf);
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

static void write_cb(uv_write_t *req, int status)
{
    write_done(container_of(req, struct conn, wreq), status);
}

void conn_flush(struct conn *c)
{
    if (c->closing || c->dirty)
        return;
    assert(c->cx->bufs != NULL); /* a live conn keeps its group's block */
    c->dirty = 1;
    TAILQ_INSERT_TAIL(&c->cx->dirty, c, dirty_link);
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
    /* Most writes fit in the socket at once (a tunnel's frames for one
     * request): done here, they cost no uv_write, whose completion has
     * libuv re-arm the socket's epoll entry, one more syscall per write
     * (a 1,000-site fan-out writes once to each tunnel). The rest, if
     * any, goes to uv_write; its callback finishes as before. */
    c->writing = 1;
    rc = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
    if (rc == (int)b.len || (rc < 0 && rc != UV_EAGAIN)) {
        write_done(c, rc < 0 ? rc : 0);
        return;
    }
    if (rc > 0) {
        c->bytes_out += (uint64_t)rc;
        buf_consume(&c->wbuf, (size_t)rc);
        b = uv_buf_init((char *)buf_head(&c->wbuf), (unsigned)c->wbuf.len);
    }
    rc = uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, write_cb);
    if (rc < 0) {
        c->writing = 0;
        conn_close(c, "write error");
        return;
    }
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
    /* Cleartext (conn_start_plain): the bytes queue where records would. */
    rc = c->plain ? buf_append(&c->tls.out, data, len) : tls_write(&c->tls, data, len);
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
    struct conn *c = h->data;
    struct conn_bufs *bufs = c->cx->bufs;

    b->base = (char *)bufs->read_buf;
    b->len = sizeof(bufs->read_buf);
}

/* Drives TLS after new ciphertext arrived: handshake, then plaintext up. */
static void pump_tls(struct conn *c)
{
    uint8_t *plain = c->cx->bufs->plain_buf;
    size_t cap = sizeof(c->cx->bufs->plain_buf);
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
        rc = tls_read(&c->tls, plain, cap, &n);
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
        if (c->ops->on_data(c, plain, n) < 0) {
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
    if (c->plain) {
        if (c->ops->on_data(c, (const uint8_t *)b->base, (size_t)nread) < 0)
            conn_close(c, "protocol error");
        else
            conn_flush(c);
        return;
    }
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
    /* Most reads end on a record boundary: nothing waits in `in`. */
    buf_shrink(&c->tls.in, 0);
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

int conn_start_tls_ready(struct conn *c)
{
    int rc;

    assert(c->tls.ssl != NULL && !c->tls_started && !c->plain);
    c->tls_started = 1;
    if (c->early.len > 0) {
        rc = tls_feed(&c->tls, buf_head(&c->early), c->early.len);
        buf_free(&c->early);
        if (rc != 0)
            return rc;
    }
    pump_tls(c);
    buf_shrink(&c->tls.in, 0); /* the ClientHello, once wolfSSL took it */
    return 0;
}

int conn_start_tls(struct conn *c, WOLFSSL_CTX *ctx, const char *sni, const char *alpn,
                   int alpn_required, struct tls_pin_verifier *v)
{
    int rc = tls_conn_init(&c->tls, ctx, sni, alpn, alpn_required);
    if (rc != 0)
        return rc;
    if (v != NULL)
        tls_attach_verifier(c->tls.ssl, v);
    return conn_start_tls_ready(c);
}

int conn_start_plain(struct conn *c)
{
    int rc = 0;

    assert(!c->tls_started);
    c->plain = 1;
    c->tls.handshake_done = 1; /* nothing to wait for: no handshake deadline */
    uv_timer_stop(&c->timer);
    if (c->early.len > 0)
        rc = c->ops->on_data(c, buf_head(&c->early), c->early.len);
    buf_free(&c->early);
    return rc < 0 ? rc : 0;
}

static void resume_cb(uv_timer_t *t)
{
    struct conn *c = t->data;
    if (!c->closing && c->tls_started)
        pump_tls(c);
}

int conn_keepalive(struct conn *c, unsigned idle_s, unsigned intvl_s, unsigned count)
{
    uv_os_fd_t fd;
    int rc = uv_tcp_keepalive(&c->tcp, 1, idle_s), v;

    if (rc != 0 || uv_fileno((uv_handle_t *)&c->tcp, &fd) != 0)
        return rc;
    /* libuv sets only the idle time; the kernel's default probe interval
     * (75 s) and count (9) would take 11 minutes to find a dead peer. */
    v = (int)intvl_s;
    if (setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &v, sizeof(v)) != 0)
        return -errno;
    v = (int)count;
    if (setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &v, sizeof(v)) != 0)
        return -errno;
    return 0;
}

void conn_trim(struct conn *c)
{
    if (c->closing)
        return;
    if (!c->writing)
        buf_shrink(&c->wbuf, 0);
    buf_shrink(&c->tls.out, 0);
    buf_shrink(&c->tls.in, 0);
    buf_shrink(&c->tls.pending, 0);
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
