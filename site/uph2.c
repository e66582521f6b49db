/* HTTP/2 exchanges between the site agent and an h2c:// or h2:// service: one connection per
 * service, many streams at once, flow control and trailers both ways. */
/* SPDX-License-Identifier: MIT */
#include "uph2.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include "../common/buf.h"
#include "../common/conn.h"
#include "../common/h2.h"
#include "../common/tls.h"

/* A response stream's window: what one stream may hold in the agent while
 * the tunnel does not take it; the agent pauses at its own high-water mark
 * before that. The connection window comes back as bytes arrive. */
#define UPH2_STREAM_WINDOW (256 << 10)
#define UPH2_CONN_WINDOW   (16 << 20)
#define UPH2_CONNECT_MS    10000
#define UPH2_KEY_MAX       (NET_HOST_MAX + 64)

enum hc_state { HC_RESOLVING, HC_CONNECTING, HC_HANDSHAKE, HC_READY, HC_DEAD };

struct uph2_stream;
LIST_HEAD(uph2_stream_list, uph2_stream);

/* One connection to a service. Owned by its conn (freed after the conn's
 * on_close), or by the pending getaddrinfo if that outlives the conn. */
struct uph2_conn {
    LIST_ENTRY(uph2_conn) link;     /* in g_conns while it takes new streams */
    LIST_ENTRY(uph2_conn) all_link; /* in g_all until freed */
    int listed;
    char key[UPH2_KEY_MAX];
    struct net_url url;
    void *tls_ctx; /* WOLFSSL_CTX*, the caller's (h2:// only) */
    struct tls_svc_conf tls;
    struct tls_svc_check chk;
    struct conn *c; /* NULL once closed */
    struct h2 h2;   /* h2.s NULL until connected */
    enum hc_state state;
    uv_getaddrinfo_t gai;
    int gai_busy;
    uv_connect_t creq;
    uint64_t connect_ms;
    int fail_status;
    char why[200];
    struct uph2_stream_list streams; /* every stream not yet freed */
    size_t n_streams;
};

/* One request. Freed here once both its owner (the agent: uph2_abort or
 * its last callback) and nghttp2 (stream closed, or never submitted) let go
 * of it; the agent's pointer is dead after either of the first two. */
struct uph2_stream {
    struct uph2_conn *hc; /* NULL once its connection is gone */
    LIST_ENTRY(uph2_stream) link;
    int32_t id; /* 0 until submitted */
    struct upstream_cbs cbs;
    void *arg;
    int owner_gone; /* aborted, or its last callback given */
    int h2_gone;    /* nghttp2 holds no reference to it */
    /* request: the head until submitted, then body and trailers */
    struct buf req;
    unsigned n_req;
    int has_body;
    struct buf up;
    int up_eof;
    int deferred;
    struct buf trl;
    unsigned n_trl;
    /* response */
    struct h2_hdr_budget budget;
    struct buf hdrs; /* name\0value\0 of the head, then of the trailers */
    unsigned n_hdrs;
    int status;
    int head_seen;
    int head_ended; /* the head came with END_STREAM */
    int paused;
    size_t unconsumed;
};

/* The service connections of the process (tether-site runs one loop), as
 * upstream.c's keep-alive pool: made on first use, shared by every request. */
static struct conn_ctx g_cx;
static uv_loop_t *g_loop;
static LIST_HEAD(, uph2_conn) g_conns = LIST_HEAD_INITIALIZER(g_conns);
static LIST_HEAD(, uph2_conn) g_all = LIST_HEAD_INITIALIZER(g_all);

/* --- header lists (name\0value\0 pairs, common/h2.h) --- */

static size_t pairs_hdr(const struct buf *b, unsigned n, struct upstream_header *out, size_t cap)
{
    nghttp2_nv nv[H2_HEADER_COUNT_MAX];
    size_t k = h2_pairs_nv(b, n, nv, cap < H2_HEADER_COUNT_MAX ? cap : H2_HEADER_COUNT_MAX);

    for (size_t i = 0; i < k; i++) {
        out[i].name = (const char *)nv[i].name;
        out[i].name_len = nv[i].namelen;
        out[i].value = (const char *)nv[i].value;
        out[i].value_len = nv[i].valuelen;
    }
    return k;
}

/* --- streams --- */

/* An idle connection does not keep the loop alive (as upstream.c's pool):
 * tether-site stops on SIGTERM, and uph2_close_idle closes it then. */
static void hc_hold(struct uph2_conn *hc)
{
    if (hc->c == NULL || hc->c->closing)
        return;
    if (hc->n_streams > 0)
        uv_ref((uv_handle_t *)&hc->c->tcp);
    else
        uv_unref((uv_handle_t *)&hc->c->tcp);
}

static void st_free(struct uph2_stream *st)
{
    assert(st->owner_gone && st->h2_gone);
    if (st->hc != NULL) {
        LIST_REMOVE(st, link);
        st->hc->n_streams--;
        hc_hold(st->hc);
    }
    buf_free(&st->req);
    buf_free(&st->up);
    buf_free(&st->trl);
    buf_free(&st->hdrs);
    free(st);
}

static void st_maybe_free(struct uph2_stream *st)
{
    if (st->owner_gone && st->h2_gone)
        st_free(st);
}

/* The owner's last callback: on_end or on_error. */
static void st_error(struct uph2_stream *st, int status, const char *why)
{
    if (st->owner_gone)
        return;
    st->owner_gone = 1;
    st->cbs.on_error(st->arg, status, why);
}

static ssize_t req_read(nghttp2_session *session, int32_t stream_id, uint8_t *dst, size_t length,
                        uint32_t *data_flags, nghttp2_data_source *source, void *user_data)
{
    struct uph2_stream *st = source->ptr;
    ssize_t n;

    if (st->owner_gone) {
        *data_flags |= NGHTTP2_DATA_FLAG_EOF;
        return 0;
    }
    /* The bytes go out in req_send() (h2_send_data_from). */
    n = h2_body_read(&st->up, st->up_eof, &st->deferred, length, data_flags);
    if (n >= 0)
        h2_trailers_at_eof(session, stream_id, data_flags, &st->trl, st->n_trl);
    return n;
}

static int req_send(nghttp2_session *session, nghttp2_frame *frame, const uint8_t *framehd,
                    size_t length, nghttp2_data_source *source, void *user_data)
{
    struct uph2_conn *hc = user_data;
    struct uph2_stream *st = source->ptr;
    int rc = h2_send_data_from(&hc->h2, framehd, length, &st->up);

    /* The service's connection took them: the tunnel may send more. */
    if (rc == 0 && length > 0 && !st->owner_gone && st->cbs.on_body_written != NULL)
        st->cbs.on_body_written(st->arg, length);
    return rc;
}

/* 0, or -EIO when the session takes no new stream (the caller tells). */
static int st_submit(struct uph2_conn *hc, struct uph2_stream *st)
{
    nghttp2_nv nva[H2_HEADER_COUNT_MAX + 8];
    size_t n = h2_pairs_nv(&st->req, st->n_req, nva, sizeof(nva) / sizeof(nva[0]));
    nghttp2_data_provider prd = {{.ptr = st}, req_read};
    int32_t id;

    id = nghttp2_submit_request(hc->h2.s, NULL, nva, n, st->has_body ? &prd : NULL, st);
    buf_free(&st->req);
    st->n_req = 0;
    if (id < 0)
        return -EIO;
    st->id = id;
    st->h2_gone = 0;
    return 0;
}

static void hc_unlist(struct uph2_conn *hc)
{
    if (hc->listed) {
        LIST_REMOVE(hc, link);
        hc->listed = 0;
    }
}

/* A connection that takes no new streams (GOAWAY) closes with its last. */
static void hc_retire(struct uph2_conn *hc)
{
    if (!hc->listed && hc->n_streams == 0 && hc->c != NULL)
        conn_close_after_flush(hc->c, "service connection retired");
}

/* --- nghttp2 callbacks --- */

static int on_header(nghttp2_session *session, const nghttp2_frame *frame, const uint8_t *name,
                     size_t nl, const uint8_t *value, size_t vl, uint8_t flags, void *user_data)
{
    struct uph2_stream *st = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);

    if (st == NULL || frame->hd.type != NGHTTP2_HEADERS)
        return 0;
    if (h2_header_budget(&st->budget, nl, vl) != 0)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    if (nl == 7 && memcmp(name, ":status", 7) == 0) {
        st->status = h2_status_parse(value, vl); /* users see only 100-599 */
        return st->status < 0 ? NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE : 0;
    }
    if (nl > 0 && name[0] == ':')
        return 0;
    if (h2_pairs_add(&st->hdrs, &st->n_hdrs, (const char *)name, nl, (const char *)value, vl) != 0)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    return 0;
}

static void st_deliver(struct uph2_stream *st, int trailers)
{
    struct upstream_header h[H2_HEADER_COUNT_MAX];
    size_t n = pairs_hdr(&st->hdrs, st->n_hdrs, h, H2_HEADER_COUNT_MAX);

    if (!st->owner_gone) {
        if (!trailers)
            st->cbs.on_head(st->arg, st->status, h, n);
        else if (n > 0 && st->cbs.on_trailers != NULL)
            st->cbs.on_trailers(st->arg, h, n);
    }
    buf_free(&st->hdrs);
    st->n_hdrs = 0;
}

static int on_frame_recv(nghttp2_session *session, const nghttp2_frame *frame, void *user_data)
{
    struct uph2_conn *hc = user_data;
    struct uph2_stream *st;
    int ended = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;

    if (frame->hd.stream_id == 0) {
        if (frame->hd.type == NGHTTP2_GOAWAY) {
            /* Streams already taken finish; new ones go to a new connection,
             * and this one closes once they have. */
            hc_unlist(hc);
            hc_retire(hc);
        }
        return 0;
    }
    st = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
    if (st == NULL)
        return 0;
    if (frame->hd.type == NGHTTP2_HEADERS) {
        if (!st->head_seen && st->status >= 100 && st->status < 200) {
            buf_free(&st->hdrs); /* interim response: dropped */
            st->n_hdrs = 0;
            st->status = 0;
            return 0;
        }
        if (!st->head_seen) {
            st->head_seen = 1;
            st->head_ended = ended;
            st_deliver(st, 0);
        } else {
            st_deliver(st, 1);
        }
    }
    if (ended && st->head_seen && !st->owner_gone) {
        st->owner_gone = 1;
        st->cbs.on_end(st->arg);
        /* A request body still being sent is no longer wanted. */
        if (st->deferred) {
            st->deferred = 0;
            nghttp2_session_resume_data(session, st->id);
        }
    }
    return 0;
}

static int on_data_chunk(nghttp2_session *session, uint8_t flags, int32_t stream_id,
                         const uint8_t *data, size_t len, void *user_data)
{
    struct uph2_stream *st = nghttp2_session_get_stream_user_data(session, stream_id);

    nghttp2_session_consume_connection(session, len);
    if (st == NULL || st->owner_gone) {
        nghttp2_session_consume_stream(session, stream_id, len);
        return 0;
    }
    /* The stream's window reopens as the agent takes the bytes on. */
    if (st->paused)
        st->unconsumed += len;
    else
        nghttp2_session_consume_stream(session, stream_id, len);
    st->cbs.on_body(st->arg, data, len);
    return 0;
}

static int on_stream_close(nghttp2_session *session, int32_t stream_id, uint32_t error_code,
                           void *user_data)
{
    struct uph2_stream *st = nghttp2_session_get_stream_user_data(session, stream_id);
    char why[96];

    if (st == NULL)
        return 0;
    nghttp2_session_set_stream_user_data(session, stream_id, NULL);
    st->h2_gone = 1;
    if (!st->owner_gone) {
        snprintf(why, sizeof(why), "the service %s the stream (%s)",
                 error_code == NGHTTP2_REFUSED_STREAM ? "refused" : "reset",
                 nghttp2_http2_strerror(error_code));
        st_error(st, 502, why);
    }
    st_maybe_free(st);
    hc_retire(user_data);
    return 0;
}

/* --- the connection --- */

static const struct h2_callbacks hc_callbacks = {
    .header = on_header,
    .frame_recv = on_frame_recv,
    .data_chunk = on_data_chunk,
    .stream_close = on_stream_close,
    .send_data = req_send,
};

/* A client accepts no pushed streams (max_streams 0 says so too). */
static const struct h2_limits hc_limits = {0, UPH2_STREAM_WINDOW, UPH2_CONN_WINDOW};

static void hc_fail(struct uph2_conn *hc, int status, const char *why)
{
    hc_unlist(hc); /* new requests get a new connection */
    if (hc->why[0] == '\0') {
        hc->fail_status = status;
        snprintf(hc->why, sizeof(hc->why), "%s", why);
    }
    if (hc->c != NULL)
        conn_close(hc->c, hc->why);
}

static void hc_ready(struct uph2_conn *hc)
{
    nghttp2_session *s = NULL;
    struct uph2_stream *st, *next;

    if (h2_session_new(H2_ROLE_SITE_SERVICE, &hc_callbacks, &hc_limits, hc, &s) != 0) {
        hc_fail(hc, 502, "out of memory");
        return;
    }
    h2_init(&hc->h2, s, hc->c);
    hc->state = HC_READY;
    uv_timer_stop(&hc->c->timer);
    for (st = LIST_FIRST(&hc->streams); st != NULL; st = next) {
        next = LIST_NEXT(st, link);
        if (st->id == 0 && !st->owner_gone && st_submit(hc, st) != 0) {
            st_error(st, 502, "the service's connection takes no new stream");
            st_maybe_free(st);
        }
    }
    if (h2_send(&hc->h2) < 0)
        hc_fail(hc, 502, "http2 send error");
}

static void hc_handshake(struct conn *c)
{
    struct uph2_conn *hc = c->owner;
    char alpn[16];

    tls_alpn(&c->tls, alpn, sizeof(alpn));
    if (strcmp(alpn, "h2") != 0) {
        hc_fail(hc, 502, "TLS: the service did not agree to HTTP/2 (ALPN h2)");
        return;
    }
    hc_ready(hc);
}

static int hc_data(struct conn *c, const uint8_t *data, size_t len)
{
    struct uph2_conn *hc = c->owner;
    int rc;

    if (hc->h2.s == NULL)
        return -EPROTO;
    rc = h2_feed(&hc->h2, data, len);
    if (rc < 0) {
        snprintf(hc->why, sizeof(hc->why), "http2 error from the service: %s",
                 nghttp2_strerror(rc));
        hc->fail_status = 502;
        return -EPROTO;
    }
    if (h2_finished(&hc->h2)) {
        hc_unlist(hc);
        conn_close_after_flush(c, "service session finished");
    }
    return 0;
}

static void hc_drain(struct conn *c)
{
    struct uph2_conn *hc = c->owner;

    if (hc->h2.s != NULL && h2_send(&hc->h2) < 0)
        hc_fail(hc, 502, "http2 send error");
}

static void hc_close(struct conn *c, const char *reason)
{
    struct uph2_conn *hc = c->owner;
    struct uph2_stream *st;
    char why[240];

    hc_unlist(hc);
    if (hc->why[0] != '\0') {
        snprintf(why, sizeof(why), "%s", hc->why);
    } else if (hc->state == HC_HANDSHAKE && hc->chk.fail != TLS_SVC_OK) {
        snprintf(why, sizeof(why), "TLS: %s", tls_svc_fail_str(hc->chk.fail));
    } else if (hc->state == HC_HANDSHAKE && tls_peer_alert(&c->tls) != NULL) {
        snprintf(why, sizeof(why), "TLS: the service sent the alert \"%s\"",
                 tls_peer_alert(&c->tls));
    } else if (hc->state == HC_READY) {
        snprintf(why, sizeof(why), "the connection to the service closed: %s", reason);
    } else {
        snprintf(why, sizeof(why), "could not reach the service: %s", reason);
    }
    hc->state = HC_DEAD;
    /* The session first: freeing it closes no stream through callbacks. */
    if (hc->h2.s != NULL)
        h2_free(&hc->h2);
    while ((st = LIST_FIRST(&hc->streams)) != NULL) {
        LIST_REMOVE(st, link);
        hc->n_streams--;
        st->hc = NULL;
        st->h2_gone = 1;
        st_error(st, hc->fail_status ? hc->fail_status : 502, why);
        st_maybe_free(st);
    }
    hc->c = NULL;
    if (!hc->gai_busy) {
        LIST_REMOVE(hc, all_link);
        free(hc);
    }
}

static const struct conn_ops hc_ops = {
    .on_handshake = hc_handshake,
    .on_data = hc_data,
    .on_drain = hc_drain,
    .on_close = hc_close,
};

static void connect_timeout_cb(uv_timer_t *t)
{
    struct conn *c = t->data;
    struct uph2_conn *hc = c->owner;

    if (hc->state == HC_RESOLVING || hc->state == HC_CONNECTING)
        hc_fail(hc, 504, "could not reach the service: connect timed out");
}

static void connect_cb(uv_connect_t *req, int status)
{
    struct uph2_conn *hc = req->data;
    char why[160];
    int rc;

    if (status == UV_ECANCELED || hc->c == NULL || hc->c->closing)
        return;
    if (status < 0) {
        snprintf(why, sizeof(why), "could not reach the service: %s", uv_strerror(status));
        hc_fail(hc, 502, why);
        return;
    }
    rc = conn_start(hc->c, hc->url.kind == NET_URL_H2 ? hc->connect_ms : 0);
    if (rc != 0) {
        hc_fail(hc, 502, "could not reach the service: connection lost");
        return;
    }
    if (hc->url.kind == NET_URL_H2C) {
        hc->state = HC_HANDSHAKE;
        if (conn_start_plain(hc->c) != 0)
            hc_fail(hc, 502, "could not start the connection");
        else
            hc_ready(hc);
        return;
    }
    hc->state = HC_HANDSHAKE;
    /* ALPN h2 is required: a service that would speak HTTP/1.1 here fails
     * the handshake with a reason, not later with garbled frames. */
    if (tls_conn_init_service_alpn(&hc->c->tls, hc->tls_ctx, hc->url.host, &hc->tls, "h2", 1,
                                   &hc->chk) != 0 ||
        conn_start_tls_ready(hc->c) != 0)
        hc_fail(hc, 502, "could not start TLS to the service");
}

static void gai_cb(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct uph2_conn *hc = req->data;
    char why[160];
    int rc;

    hc->gai_busy = 0;
    if (hc->c == NULL) {
        uv_freeaddrinfo(res);
        LIST_REMOVE(hc, all_link);
        free(hc); /* the conn closed while resolving */
        return;
    }
    if (status < 0 || res == NULL) {
        snprintf(why, sizeof(why), "could not resolve the service's host: %s", uv_strerror(status));
        hc_fail(hc, 502, why);
        uv_freeaddrinfo(res);
        return;
    }
    hc->state = HC_CONNECTING;
    hc->creq.data = hc;
    rc = uv_tcp_connect(&hc->creq, &hc->c->tcp, res->ai_addr, connect_cb);
    uv_freeaddrinfo(res);
    if (rc != 0) {
        snprintf(why, sizeof(why), "could not reach the service: %s", uv_strerror(rc));
        hc_fail(hc, 502, why);
    }
}

static struct uph2_conn *hc_get(uv_loop_t *loop, const struct net_url *url,
                                const struct upstream_opts *opts)
{
    char key[UPH2_KEY_MAX], port[16];
    struct addrinfo hints;
    struct uph2_conn *hc;

    snprintf(key, sizeof(key), "%d|%s|%d|%p", (int)url->kind, url->host, url->port,
             opts != NULL ? opts->tls_ctx : NULL);
    LIST_FOREACH(hc, &g_conns, link)
    {
        if (strcmp(hc->key, key) == 0)
            return hc;
    }
    if (g_loop == NULL) {
        conn_ctx_init(&g_cx, loop);
        g_loop = loop;
    }
    assert(g_loop == loop); /* one loop per process (tether-site) */
    hc = calloc(1, sizeof(*hc));
    if (hc == NULL)
        return NULL;
    snprintf(hc->key, sizeof(hc->key), "%s", key);
    hc->url = *url;
    hc->connect_ms =
        opts != NULL && opts->connect_timeout_ms ? opts->connect_timeout_ms : UPH2_CONNECT_MS;
    if (url->kind == NET_URL_H2) {
        hc->tls_ctx = opts->tls_ctx;
        hc->tls = *opts->tls;
    }
    LIST_INIT(&hc->streams);
    hc->c = conn_new(&g_cx, &hc_ops, hc);
    if (hc->c == NULL) {
        free(hc);
        return NULL;
    }
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    snprintf(port, sizeof(port), "%d", url->port);
    hc->gai.data = hc;
    hc->state = HC_RESOLVING;
    LIST_INSERT_HEAD(&g_conns, hc, link);
    LIST_INSERT_HEAD(&g_all, hc, all_link);
    hc->listed = 1;
    if (uv_getaddrinfo(loop, &hc->gai, gai_cb, url->host, port, &hints) != 0) {
        hc_fail(hc, 502, "could not resolve the service's host");
        return hc; /* its streams hear it from the loop (hc_close) */
    }
    hc->gai_busy = 1;
    uv_timer_start(&hc->c->timer, connect_timeout_cb, hc->connect_ms, 0);
    return hc;
}

/* --- the API --- */

int uph2_start(uv_loop_t *loop, const struct net_url *url, const struct upstream_opts *opts,
               const char *method, const char *path, const struct upstream_header *headers,
               size_t n_headers, int has_body, int64_t content_length, int te_trailers,
               const struct upstream_cbs *cbs, void *arg, struct uph2_stream **out)
{
    struct uph2_stream *st = NULL;
    struct uph2_conn *hc;
    char authority[NET_HOST_MAX + 16], cl[24];
    int rc = -ENOTSUP;

    if (url->kind != NET_URL_H2C && url->kind != NET_URL_H2)
        goto out;
    rc = -EINVAL;
    if (url->kind == NET_URL_H2 && (opts == NULL || opts->tls_ctx == NULL || opts->tls == NULL))
        goto out;
    rc = -ENOMEM;
    st = calloc(1, sizeof(*st));
    if (st == NULL)
        goto out;
    st->cbs = *cbs;
    st->arg = arg;
    st->has_body = has_body;
    st->h2_gone = 1;
    snprintf(authority, sizeof(authority), strchr(url->host, ':') ? "[%s]:%d" : "%s:%d", url->host,
             url->port);
    if (h2_pairs_add(&st->req, &st->n_req, ":method", 7, method, strlen(method)) ||
        h2_pairs_add(&st->req, &st->n_req, ":scheme", 7, url->kind == NET_URL_H2 ? "https" : "http",
                     url->kind == NET_URL_H2 ? 5 : 4) ||
        h2_pairs_add(&st->req, &st->n_req, ":authority", 10, authority, strlen(authority)))
        goto out;
    /* :path is the service's base path joined with the request's. */
    if (buf_append(&st->req, ":path", 6) || buf_append(&st->req, url->path, strlen(url->path)) ||
        buf_append(&st->req, path, strlen(path) + 1))
        goto out;
    st->n_req++;
    if (te_trailers && h2_pairs_add(&st->req, &st->n_req, "te", 2, "trailers", 8))
        goto out;
    if (has_body && content_length >= 0) {
        snprintf(cl, sizeof(cl), "%lld", (long long)content_length);
        if (h2_pairs_add(&st->req, &st->n_req, "content-length", 14, cl, strlen(cl)))
            goto out;
    }
    for (size_t i = 0; i < n_headers && st->n_req < H2_HEADER_COUNT_MAX; i++) {
        /* HTTP/2 forbids connection-specific fields (RFC 9113 8.2.2). */
        if (h2_hop_by_hop(headers[i].name, headers[i].name_len))
            continue;
        if (h2_pairs_add(&st->req, &st->n_req, headers[i].name, headers[i].name_len,
                         headers[i].value, headers[i].value_len))
            goto out;
    }
    hc = hc_get(loop, url, opts);
    if (hc == NULL)
        goto out;
    st->hc = hc;
    LIST_INSERT_HEAD(&hc->streams, st, link);
    hc->n_streams++;
    hc_hold(hc);
    if (!has_body)
        st->up_eof = 1;
    if (hc->state == HC_READY) {
        /* nghttp2 calls nothing of ours while submitting; the send that
         * follows may report body bytes taken, but a new stream has none. */
        if (st_submit(hc, st) != 0) {
            rc = -EIO;
            goto out;
        }
        h2_send(&hc->h2);
    }
    *out = st;
    st = NULL;
    rc = 0;
out:
    if (st != NULL) {
        st->owner_gone = 1;
        st->h2_gone = 1;
        if (st->hc == NULL) {
            buf_free(&st->req);
            free(st);
        } else {
            st_free(st);
        }
    }
    return rc;
}

static void st_kick(struct uph2_stream *st)
{
    struct uph2_conn *hc = st->hc;

    if (hc == NULL || hc->h2.s == NULL || st->id == 0)
        return;
    if (st->deferred) {
        st->deferred = 0;
        nghttp2_session_resume_data(hc->h2.s, st->id);
    }
    h2_send(&hc->h2);
}

int uph2_write_body(struct uph2_stream *u, const uint8_t *data, size_t len)
{
    if (u->owner_gone || u->up_eof)
        return -EINVAL;
    if (buf_append(&u->up, data, len) != 0)
        return -ENOMEM;
    st_kick(u);
    return 0;
}

int uph2_end_body(struct uph2_stream *u, const struct upstream_header *trailers, size_t n)
{
    if (u->owner_gone || u->up_eof)
        return 0;
    for (size_t i = 0; i < n && u->n_trl < H2_HEADER_COUNT_MAX; i++) {
        if (h2_hop_by_hop(trailers[i].name, trailers[i].name_len))
            continue;
        if (h2_pairs_add(&u->trl, &u->n_trl, trailers[i].name, trailers[i].name_len,
                         trailers[i].value, trailers[i].value_len))
            return -ENOMEM;
    }
    u->up_eof = 1;
    st_kick(u);
    return 0;
}

void uph2_pause_reading(struct uph2_stream *u, int pause)
{
    struct uph2_conn *hc = u->hc;

    u->paused = pause;
    if (pause || u->unconsumed == 0 || hc == NULL || hc->h2.s == NULL || u->id == 0)
        return;
    nghttp2_session_consume_stream(hc->h2.s, u->id, u->unconsumed);
    u->unconsumed = 0;
    h2_send(&hc->h2);
}

int uph2_head_ended(const struct uph2_stream *u)
{
    return u->head_ended;
}

void uph2_abort(struct uph2_stream *u)
{
    struct uph2_conn *hc = u->hc;

    if (u->owner_gone && !u->h2_gone)
        return; /* already finished; nghttp2 frees it at its close */
    u->owner_gone = 1;
    if (!u->h2_gone && hc != NULL && hc->h2.s != NULL) {
        nghttp2_submit_rst_stream(hc->h2.s, NGHTTP2_FLAG_NONE, u->id, NGHTTP2_CANCEL);
        h2_send(&hc->h2);
        return; /* freed at its stream close */
    }
    st_maybe_free(u);
}

void uph2_close_idle(uv_loop_t *loop)
{
    struct uph2_conn *hc, *next;

    if (g_loop != loop)
        return;
    for (hc = LIST_FIRST(&g_all); hc != NULL; hc = next) {
        struct uph2_stream *st;
        int busy = 0;

        next = LIST_NEXT(hc, all_link);
        /* Streams already aborted (their RST_STREAM maybe not yet out) do
         * not hold the connection. */
        LIST_FOREACH(st, &hc->streams, link)
        busy |= !st->owner_gone;
        if (!busy)
            hc_fail(hc, 502, "site agent stopping");
    }
}
