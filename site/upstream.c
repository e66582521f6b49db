/* HTTP/1.1 client that forwards one tunnelled request to a local service, streaming both ways. */
/* SPDX-License-Identifier: MIT */
#include "upstream.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <netdb.h>

#include <http_parser.h>

#include "../common/hfield.h"
#include "../common/tls.h"

#define UP_HDR_BYTES_MAX (64 * 1024)
#define UP_HDR_COUNT_MAX 100
#define UP_INTERIM_MAX   16
#define UP_RBUF_SIZE     (64 * 1024)
#define UP_HOLD_MIN      (64 * 1024)
#define UP_POOL_MAX      256
#define UP_IDLE_MS       4000 /* below the 5 s keep-alive of common servers (node, Apache) */
#define UP_CONNECT_MS    10000
#define UP_RESPONSE_MS   60000
#define UP_KEY_MAX       320
#define UP_SUN_PATH_MAX  sizeof(((struct sockaddr_un *)0)->sun_path)
#define UP_METHOD_MAX    32

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

/* One uv_write: owns its bytes until the write callback. */
struct up_wreq {
    uv_write_t req;
    STAILQ_ENTRY(up_wreq) qlink; /* in u->wq while not yet connected */
    size_t report;               /* request-body bytes to report as written */
    size_t len;
    char data[];
};

struct up_pool;

/* One connection to a service; outlives an exchange when pooled. Freed when
 * both of its handles have closed. */
struct up_conn {
    union {
        uv_handle_t h;
        uv_stream_t s;
        uv_tcp_t tcp;
        uv_pipe_t pipe;
    } io;
    uv_timer_t idle; /* closes a pooled connection nobody reused */
    uv_connect_t creq;
    struct upstream *u;        /* attached exchange; NULL when idle or closing */
    struct up_pool *pool;      /* set while idle in a pool */
    LIST_ENTRY(up_conn) plink; /* in pool->idle while pooled */
    int closing;
    int open_handles;
    int reading;
    int reused;
    size_t writes_pending;
    int is_tls;  /* tls, chk and pbuf set up (https://) */
    int hs_done; /* TLS handshake complete */
    struct tls_conn tls;
    struct tls_svc_check chk; /* the verify callback's context for tls */
    char *pbuf;               /* UP_RBUF_SIZE bytes of plaintext when is_tls */
    char rbuf[UP_RBUF_SIZE];
};

/* Idle connections to one service on one loop. Exists only while non-empty. */
struct up_pool {
    LIST_ENTRY(up_pool) link; /* in g_pools */
    uv_loop_t *loop;
    char key[UP_KEY_MAX];
    LIST_HEAD(, up_conn) idle;
    int n; /* length of idle */
};

/* The agent runs one loop thread; the pool list is only touched from it. */
static LIST_HEAD(, up_pool) g_pools = LIST_HEAD_INITIALIZER(g_pools);

enum up_state { UP_RESOLVING, UP_CONNECTING, UP_HANDSHAKE, UP_ACTIVE, UP_DONE };

struct upstream {
    uv_loop_t *loop;
    struct upstream_cbs cbs;
    void *arg;
    uv_timer_t timer; /* connect timeout, then response idle timeout */
    uv_timer_t kick;  /* parses buffered bytes after a resume, off the caller's stack */
    uv_getaddrinfo_t gai;
    int gai_pending;
    int closes_pending;
    int released;

    enum up_state state;
    int dead; /* no user callback may run any more */
    int is_unix;
    int is_tls;
    WOLFSSL_CTX *tls_ctx;          /* not owned (see upstream_opts) */
    struct tls_svc_conf *tls_conf; /* owned copy, https:// only */
    char host[NET_HOST_MAX + 1];
    int port;
    char sock_path[UP_SUN_PATH_MAX];
    char key[UP_KEY_MAX];
    uint64_t connect_ms, response_ms;
    struct addrinfo *ai, *ai_next;
    struct up_conn *conn;
    STAILQ_HEAD(, up_wreq) wq; /* not yet handed to libuv; STAILQ_INIT at start */
    /* Body bytes gathered while a write is in flight, sent as one write when
     * it completes (set only while conn->writes_pending > 0). */
    struct up_wreq *hold;
    size_t hold_cap;
    char *head; /* request head, kept to replay on a fresh connection */
    size_t head_len;

    int has_body;
    int64_t content_length;
    uint64_t body_sent;
    int body_ended;
    int write_failed;
    int is_head;
    int retryable;
    int retried;

    http_parser parser;
    int in_parser;
    int paused;
    const char *left; /* unparsed bytes in conn->rbuf, kept while paused */
    size_t left_len;
    int got_bytes;
    int msg_complete;
    int keepalive;
    int interim;
    int n_interim;
    int headers_done; /* later header callbacks are chunked-body trailers */
    const char *perr; /* why a parser callback failed */

    char *hbuf; /* response header names and values */
    size_t hlen, hcap, hbytes;
    struct {
        uint32_t no, nl, vo, vl;
    } hdr[UP_HDR_COUNT_MAX];
    size_t nh;
    int last_value;
};

/* ---- connections and the idle pool ---- */

static void up_conn_close_cb(uv_handle_t *h)
{
    struct up_conn *c = h->data;
    if (--c->open_handles > 0)
        return;
    if (c->is_tls)
        tls_conn_free(&c->tls);
    free(c->pbuf);
    free(c);
}

static void pool_remove(struct up_conn *c)
{
    struct up_pool *p = c->pool;
    if (!p)
        return;
    assert(p->n > 0);
    LIST_REMOVE(c, plink);
    c->pool = NULL;
    if (--p->n == 0) {
        assert(LIST_EMPTY(&p->idle));
        LIST_REMOVE(p, link);
        free(p);
    }
}

static void up_conn_close(struct up_conn *c)
{
    if (c->closing)
        return;
    c->closing = 1;
    c->u = NULL;
    pool_remove(c);
    uv_close(&c->io.h, up_conn_close_cb);
    uv_close((uv_handle_t *)&c->idle, up_conn_close_cb);
}

static void up_conn_alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    struct up_conn *c = h->data;
    *buf = uv_buf_init(c->rbuf, sizeof(c->rbuf));
}

static void up_conn_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static void up_conn_read_start(struct up_conn *c)
{
    if (c->reading || c->closing)
        return;
    if (uv_read_start(&c->io.s, up_conn_alloc_cb, up_conn_read_cb) == 0)
        c->reading = 1;
}

static void up_conn_read_stop(struct up_conn *c)
{
    if (!c->reading)
        return;
    uv_read_stop(&c->io.s);
    c->reading = 0;
}

static int up_conn_new(uv_loop_t *loop, int is_unix, struct up_conn **out)
{
    struct up_conn *c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    int r = is_unix ? uv_pipe_init(loop, &c->io.pipe, 0) : uv_tcp_init(loop, &c->io.tcp);
    if (r < 0) {
        free(c);
        return r;
    }
    uv_timer_init(loop, &c->idle);
    c->io.h.data = c;
    c->idle.data = c;
    c->open_handles = 2;
    *out = c;
    return 0;
}

static void up_conn_idle_cb(uv_timer_t *t)
{
    up_conn_close(container_of(t, struct up_conn, idle));
}

static void pool_put(uv_loop_t *loop, const char *key, struct up_conn *c)
{
    struct up_pool *p;

    LIST_FOREACH(p, &g_pools, link)
    if (p->loop == loop && strcmp(p->key, key) == 0)
        break;
    if (!p) {
        p = calloc(1, sizeof(*p));
        if (!p) {
            up_conn_close(c);
            return;
        }
        p->loop = loop;
        snprintf(p->key, sizeof(p->key), "%s", key);
        LIST_INIT(&p->idle);
        LIST_INSERT_HEAD(&g_pools, p, link);
    }
    if (p->n >= UP_POOL_MAX) {
        up_conn_close(c);
        return;
    }
    c->pool = p;
    LIST_INSERT_HEAD(&p->idle, c, plink);
    p->n++;
    /* An idle connection must neither keep the loop alive nor miss the
     * service closing it, so it keeps reading, unreferenced. */
    uv_unref(&c->io.h);
    uv_unref((uv_handle_t *)&c->idle);
    uv_timer_start(&c->idle, up_conn_idle_cb, UP_IDLE_MS, 0);
    up_conn_read_start(c);
}

static struct up_conn *pool_take(uv_loop_t *loop, const char *key)
{
    struct up_pool *p;

    LIST_FOREACH(p, &g_pools, link)
    {
        if (p->loop != loop || strcmp(p->key, key) != 0)
            continue;
        struct up_conn *c = LIST_FIRST(&p->idle);
        pool_remove(c);
        uv_timer_stop(&c->idle);
        uv_ref(&c->io.h);
        uv_ref((uv_handle_t *)&c->idle);
        c->reused = 1;
        return c;
    }
    return NULL;
}

void upstream_close_idle(uv_loop_t *loop)
{
    struct up_pool *p = LIST_FIRST(&g_pools), *next;

    while (p != NULL) {
        next = LIST_NEXT(p, link);
        if (p->loop == loop) {
            while (p->n > 1)
                up_conn_close(LIST_FIRST(&p->idle));
            /* The last close frees p and unlinks it. */
            up_conn_close(LIST_FIRST(&p->idle));
        }
        p = next;
    }
}

/* ---- exchange lifetime ---- */

static void wq_drop(struct upstream *u)
{
    free(u->hold);
    u->hold = NULL;
    u->hold_cap = 0;
    while (!STAILQ_EMPTY(&u->wq)) {
        struct up_wreq *w = STAILQ_FIRST(&u->wq);

        STAILQ_REMOVE_HEAD(&u->wq, qlink);
        free(w);
    }
}

static void u_maybe_free(struct upstream *u)
{
    if (!u->released || u->closes_pending > 0 || u->gai_pending)
        return;
    wq_drop(u);
    if (u->ai)
        uv_freeaddrinfo(u->ai);
    free(u->head);
    free(u->hbuf);
    free(u->tls_conf);
    free(u);
}

static void u_close_cb(uv_handle_t *h)
{
    struct upstream *u = h->data;
    u->closes_pending--;
    u_maybe_free(u);
}

/* Frees the exchange once its handles have closed and no resolver callback
 * is outstanding; never synchronously, so callers up the stack stay safe. */
static void u_release(struct upstream *u)
{
    if (u->released)
        return;
    u->released = 1;
    u->closes_pending = 2;
    uv_close((uv_handle_t *)&u->timer, u_close_cb);
    uv_close((uv_handle_t *)&u->kick, u_close_cb);
}

static void u_detach(struct upstream *u, int reusable)
{
    struct up_conn *c = u->conn;
    if (!c)
        return;
    u->conn = NULL;
    c->u = NULL;
    if (reusable)
        pool_put(u->loop, u->key, c);
    else
        up_conn_close(c);
}

/* Common teardown for every end of an exchange; the caller then runs at most
 * one user callback and u_release(). */
static void u_shutdown(struct upstream *u, int reusable)
{
    u->dead = 1;
    u->state = UP_DONE;
    uv_timer_stop(&u->timer);
    uv_timer_stop(&u->kick);
    u_detach(u, reusable);
    if (u->gai_pending)
        uv_cancel((uv_req_t *)&u->gai);
    wq_drop(u);
}

static void u_fail(struct upstream *u, int status, const char *why)
{
    if (u->dead)
        return;
    u_shutdown(u, 0);
    u->cbs.on_error(u->arg, status, why);
    u_release(u);
}

static int u_request_done(const struct upstream *u)
{
    if (!u->has_body)
        return 1;
    return u->body_ended && (u->content_length < 0 || u->body_sent == (uint64_t)u->content_length);
}

static void u_complete(struct upstream *u, int leftover, int eof)
{
    if (u->dead)
        return;
    struct up_conn *c = u->conn;
    int reusable = c && !leftover && !eof && u->keepalive && u_request_done(u) &&
                   c->writes_pending == 0 && !u->write_failed && STAILQ_EMPTY(&u->wq);
    u_shutdown(u, reusable);
    u->cbs.on_end(u->arg);
    u_release(u);
}

static void u_timer_cb(uv_timer_t *t)
{
    struct upstream *u = container_of(t, struct upstream, timer);
    if (u->dead)
        return;
    u_fail(u, 504,
           u->state == UP_ACTIVE      ? "response timeout"
           : u->state == UP_HANDSHAKE ? "TLS handshake timeout"
                                      : "connect timeout");
}

/* The response timer runs only while the service owes us something: not
 * while the caller has paused reading, and not while the service is waiting
 * for request body the caller has not given yet. */
static void u_arm(struct upstream *u, int reset)
{
    if (u->dead || u->state != UP_ACTIVE)
        return;
    int waiting_on_caller = u->has_body && !u->body_ended && !u->write_failed && !u->got_bytes &&
                            STAILQ_EMPTY(&u->wq) && (!u->conn || u->conn->writes_pending == 0);
    if (u->paused || waiting_on_caller) {
        uv_timer_stop(&u->timer);
        return;
    }
    if (reset || !uv_is_active((uv_handle_t *)&u->timer))
        uv_timer_start(&u->timer, u_timer_cb, u->response_ms, 0);
}

/* ---- writing ---- */

static int up_conn_write(struct up_conn *c, struct up_wreq *w);

static void up_conn_write_cb(uv_write_t *req, int status)
{
    struct up_wreq *w = container_of(req, struct up_wreq, req);
    struct up_conn *c = req->handle->data;
    size_t report = w->report;
    free(w);
    c->writes_pending--;
    struct upstream *u = c->u;
    if (!u || u->dead)
        return;
    if (status < 0) {
        /* The read side decides the outcome: a response may already be
         * waiting in the socket (e.g. 413 then close). */
        u->write_failed = 1;
        u_arm(u, 0);
        return;
    }
    if (u->hold && c->writes_pending == 0) {
        struct up_wreq *h = u->hold;
        u->hold = NULL;
        u->hold_cap = 0;
        if (up_conn_write(c, h) < 0) {
            free(h);
            u->write_failed = 1;
        }
    }
    if (report && u->cbs.on_body_written) {
        u->cbs.on_body_written(u->arg, report);
        if (u->dead)
            return;
    }
    u_arm(u, 1);
}

static int up_conn_write_raw(struct up_conn *c, struct up_wreq *w)
{
    uv_buf_t b = uv_buf_init(w->data, (unsigned int)w->len);
    int r = uv_write(&w->req, &c->io.s, &b, 1, up_conn_write_cb);
    if (r == 0)
        c->writes_pending++;
    return r;
}

static struct up_wreq *wreq_new(size_t len)
{
    struct up_wreq *w = malloc(sizeof(*w) + len);
    if (!w)
        return NULL;
    w->report = 0;
    w->len = len;
    return w;
}

/* Hands the ciphertext TLS queued to libuv as one write that reports
 * `report` request-body bytes when it completes. */
static int up_tls_flush(struct up_conn *c, size_t report)
{
    size_t n = c->tls.out.len;
    struct up_wreq *w;
    int r;

    if (n == 0)
        return 0;
    w = wreq_new(n);
    if (!w)
        return -ENOMEM;
    memcpy(w->data, buf_head(&c->tls.out), n);
    buf_consume(&c->tls.out, n);
    w->report = report;
    r = up_conn_write_raw(c, w);
    if (r < 0)
        free(w);
    return r;
}

/* Takes w only on success; the caller frees it on failure. Over TLS the
 * plaintext is encrypted now and w replaced by its ciphertext. */
static int up_conn_write(struct up_conn *c, struct up_wreq *w)
{
    int r;

    if (!c->is_tls)
        return up_conn_write_raw(c, w);
    r = tls_write(&c->tls, (const uint8_t *)w->data, w->len);
    if (r == 0)
        r = up_tls_flush(c, w->report);
    if (r < 0)
        return r;
    free(w);
    return 0;
}

/* Takes w in every case. */
static int u_send(struct upstream *u, struct up_wreq *w)
{
    if (u->state == UP_ACTIVE && u->conn) {
        int r = up_conn_write(u->conn, w);
        if (r < 0) {
            free(w);
            u->write_failed = 1;
        }
        return r;
    }
    STAILQ_INSERT_TAIL(&u->wq, w, qlink);
    return 0;
}

static int u_queue_head(struct upstream *u)
{
    struct up_wreq *w = wreq_new(u->head_len);
    if (!w)
        return -ENOMEM;
    memcpy(w->data, u->head, u->head_len);
    return u_send(u, w);
}

/* ---- response parsing ---- */

static int hdr_append(struct upstream *u, const char *at, size_t len)
{
    if (len > UP_HDR_BYTES_MAX - u->hbytes) {
        u->perr = "response headers too large";
        return -1;
    }
    if (u->hlen + len > u->hcap) {
        size_t cap = u->hcap ? u->hcap : 1024;
        while (cap < u->hlen + len)
            cap *= 2;
        if (cap > UP_HDR_BYTES_MAX)
            cap = UP_HDR_BYTES_MAX;
        char *nb = realloc(u->hbuf, cap);
        if (!nb) {
            u->perr = "out of memory";
            return -1;
        }
        u->hbuf = nb;
        u->hcap = cap;
    }
    memcpy(u->hbuf + u->hlen, at, len);
    u->hlen += len;
    u->hbytes += len;
    return 0;
}

static int p_begin(http_parser *p)
{
    struct upstream *u = p->data;
    if (u->dead)
        return -1;
    u->nh = 0;
    u->hlen = 0;
    u->hbytes = 0;
    u->last_value = 0;
    u->headers_done = 0;
    return 0;
}

static int p_status(http_parser *p, const char *at, size_t len)
{
    struct upstream *u = p->data;
    if (u->dead)
        return -1;
    if (len > UP_HDR_BYTES_MAX - u->hbytes) {
        u->perr = "response headers too large";
        return -1;
    }
    u->hbytes += len;
    return 0;
}

static int p_field(http_parser *p, const char *at, size_t len)
{
    struct upstream *u = p->data;
    if (u->dead)
        return -1;
    /* After the head, the same lists gather the chunked trailers, under the
     * same bounds. */
    if (u->nh == 0 || u->last_value) {
        /* 4 for ": " and CRLF, so the limit tracks the bytes on the wire. */
        if (u->nh == UP_HDR_COUNT_MAX || u->hbytes + 4 > UP_HDR_BYTES_MAX) {
            u->perr = "response headers too large";
            return -1;
        }
        u->hbytes += 4;
        u->hdr[u->nh].no = (uint32_t)u->hlen;
        u->hdr[u->nh].nl = 0;
        u->hdr[u->nh].vo = (uint32_t)u->hlen;
        u->hdr[u->nh].vl = 0;
        u->nh++;
        u->last_value = 0;
    }
    if (hdr_append(u, at, len) < 0)
        return -1;
    u->hdr[u->nh - 1].nl += (uint32_t)len;
    return 0;
}

static int p_value(http_parser *p, const char *at, size_t len)
{
    struct upstream *u = p->data;
    if (u->dead)
        return -1;
    if (u->nh == 0)
        return -1;
    if (!u->last_value) {
        u->hdr[u->nh - 1].vo = (uint32_t)u->hlen;
        u->hdr[u->nh - 1].vl = 0;
        u->last_value = 1;
    }
    if (hdr_append(u, at, len) < 0)
        return -1;
    u->hdr[u->nh - 1].vl += (uint32_t)len;
    return 0;
}

static int name_is(const char *name, size_t len, const char *lit)
{
    return strlen(lit) == len && strncasecmp(name, lit, len) == 0;
}

static int hop_by_hop(const char *name, size_t len)
{
    /* Trailer is no hop-by-hop field (RFC 9110 6.6.2): trailers pass now. */
    static const char *const hop[] = {"connection", "keep-alive", "te", "transfer-encoding",
                                      "upgrade"};
    for (size_t i = 0; i < sizeof(hop) / sizeof(hop[0]); i++)
        if (name_is(name, len, hop[i]))
            return 1;
    return len >= 6 && strncasecmp(name, "proxy-", 6) == 0;
}

static size_t u_fields(struct upstream *u, struct upstream_header out[UP_HDR_COUNT_MAX]);

static int p_headers_complete(http_parser *p)
{
    struct upstream *u = p->data;
    if (u->dead)
        return -1;
    int status = p->status_code;
    if (status < 100) {
        u->perr = "malformed response";
        return -1;
    }
    if (status == 101) {
        u->perr = "unexpected protocol switch";
        return -1;
    }
    if (status < 200) {
        /* Interim (100 Continue, 103 Early Hints): skipped; the final
         * response follows on the same connection. */
        u->interim = 1;
        if (++u->n_interim > UP_INTERIM_MAX) {
            u->perr = "too many interim responses";
            return -1;
        }
        return 0;
    }
    u->headers_done = 1;
    u->hbytes = 0;

    struct upstream_header out[UP_HDR_COUNT_MAX];
    size_t n = u_fields(u, out);

    /* The lists are free again: they gather the trailers, if any. */
    u->nh = 0;
    u->hlen = 0;
    u->last_value = 0;
    u->cbs.on_head(u->arg, status, out, n);
    if (u->dead)
        return -1;
    return u->is_head ? 1 : 0;
}

/* The fields gathered (head or trailers) without hop-by-hop ones and those
 * their Connection names, lower-cased and trimmed for HTTP/2, into out
 * (pointing into hbuf). */
static size_t u_fields(struct upstream *u, struct upstream_header out[UP_HDR_COUNT_MAX])
{
    size_t n = 0;
    char *b = u->hbuf;
    for (size_t i = 0; i < u->nh; i++) {
        char *name = b + u->hdr[i].no;
        size_t nl = u->hdr[i].nl;
        if (nl == 0 || hop_by_hop(name, nl))
            continue;
        int listed = 0;
        for (size_t j = 0; j < u->nh && !listed; j++) {
            if (name_is(b + u->hdr[j].no, u->hdr[j].nl, "connection"))
                listed = hfield_token_listed(b + u->hdr[j].vo, u->hdr[j].vl, name, nl);
        }
        if (listed)
            continue;
        /* HTTP/2 wants lower-case names and values without CR, LF or
         * surrounding blanks (obs-fold leaves them inside). */
        for (size_t k = 0; k < nl; k++)
            if (name[k] >= 'A' && name[k] <= 'Z')
                name[k] = (char)(name[k] - 'A' + 'a');
        char *val = b + u->hdr[i].vo;
        size_t vl = u->hdr[i].vl;
        for (size_t k = 0; k < vl; k++)
            if (val[k] == '\r' || val[k] == '\n' || val[k] == '\0')
                val[k] = ' ';
        while (vl > 0 && (val[0] == ' ' || val[0] == '\t')) {
            val++;
            vl--;
        }
        while (vl > 0 && (val[vl - 1] == ' ' || val[vl - 1] == '\t'))
            vl--;
        out[n].name = name;
        out[n].name_len = nl;
        out[n].value = val;
        out[n].value_len = vl;
        n++;
    }
    return n;
}

static int p_body(http_parser *p, const char *at, size_t len)
{
    struct upstream *u = p->data;
    if (u->dead)
        return -1;
    if (u->interim || len == 0)
        return 0;
    u->cbs.on_body(u->arg, (const uint8_t *)at, len);
    return u->dead ? -1 : 0;
}

static int p_message_complete(http_parser *p)
{
    struct upstream *u = p->data;
    if (u->dead)
        return -1;
    if (u->interim) {
        u->interim = 0;
        return 0;
    }
    if (u->nh > 0 && u->cbs.on_trailers != NULL) {
        struct upstream_header out[UP_HDR_COUNT_MAX];
        size_t n = u_fields(u, out);

        if (n > 0)
            u->cbs.on_trailers(u->arg, out, n);
        if (u->dead)
            return -1;
    }
    u->msg_complete = 1;
    u->keepalive = http_should_keep_alive(p);
    /* Stop here: whatever follows belongs to no request of ours. */
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings up_settings = {
    .on_message_begin = p_begin,
    .on_status = p_status,
    .on_header_field = p_field,
    .on_header_value = p_value,
    .on_headers_complete = p_headers_complete,
    .on_body = p_body,
    .on_message_complete = p_message_complete,
};

static const char *parse_error_phrase(struct upstream *u)
{
    if (u->perr)
        return u->perr;
    if (HTTP_PARSER_ERRNO(&u->parser) == HPE_HEADER_OVERFLOW)
        return "response headers too large";
    return "malformed response";
}

/* Feeds response bytes (data points into conn->rbuf) to the parser. */
static void u_feed(struct upstream *u, const char *data, size_t len)
{
    u->in_parser = 1;
    size_t n = http_parser_execute(&u->parser, &up_settings, data, len);
    u->in_parser = 0;
    if (u->dead)
        return;
    enum http_errno err = HTTP_PARSER_ERRNO(&u->parser);
    if (err == HPE_PAUSED) {
        if (u->msg_complete) {
            u_complete(u, n < len, 0);
            return;
        }
        /* The caller paused: keep the rest until it resumes. */
        u->left = n < len ? data + n : NULL;
        u->left_len = n < len ? len - n : 0;
        return;
    }
    if (err != HPE_OK) {
        u_fail(u, 502, parse_error_phrase(u));
        return;
    }
    if (u->parser.upgrade)
        u_fail(u, 502, "unexpected protocol switch");
}

static int u_begin_connect(struct upstream *u, int allow_pool);

/* A kept-alive connection may have been closed by the service just as we
 * reused it; an idempotent request without body is then replayed once on a
 * fresh connection, as browsers and Go's client do. */
static int u_try_replay(struct upstream *u)
{
    struct up_conn *c = u->conn;
    if (!c || !c->reused || u->got_bytes || !u->retryable || u->retried)
        return 0;
    u->retried = 1;
    u->write_failed = 0;
    u_detach(u, 0);
    int r = u_queue_head(u);
    if (r == 0)
        r = u_begin_connect(u, 0);
    if (r < 0) {
        u_fail(u, 502, "connect failed");
        return 1;
    }
    if (u->state != UP_ACTIVE)
        uv_timer_start(&u->timer, u_timer_cb, u->connect_ms, 0);
    return 1;
}

static void u_read_end(struct upstream *u, ssize_t nread)
{
    if (u_try_replay(u))
        return;
    if (nread != UV_EOF) {
        u_fail(u, 502, nread == UV_ECONNRESET ? "connection reset" : "read error");
        return;
    }
    /* EOF ends a response that has neither length nor chunking. */
    u->in_parser = 1;
    http_parser_execute(&u->parser, &up_settings, NULL, 0);
    u->in_parser = 0;
    if (u->dead)
        return;
    if (u->msg_complete) {
        u_complete(u, 0, 1);
        return;
    }
    u_fail(u, 502,
           u->got_bytes ? "connection closed before response complete"
                        : "connection closed without response");
}

/* ---- TLS to https:// services ---- */

/* Why the TLS layer failed, as the 502 detail: the certificate check's own
 * reason first, then an alert the service sent, then wolfSSL's text. */
static void u_tls_fail(struct upstream *u, struct up_conn *c, const char *what)
{
    char why[200];
    const char *alert = tls_peer_alert(&c->tls);

    if (c->chk.fail == TLS_SVC_OTHER && c->chk.wolf_err != 0)
        snprintf(why, sizeof(why), "TLS: %s (%s)", tls_svc_fail_str(c->chk.fail),
                 wolfSSL_ERR_reason_error_string((unsigned long)c->chk.wolf_err));
    else if (c->chk.fail != TLS_SVC_OK)
        snprintf(why, sizeof(why), "TLS: %s", tls_svc_fail_str(c->chk.fail));
    else if (alert != NULL)
        snprintf(why, sizeof(why), "TLS: the service sent the alert \"%s\"", alert);
    else
        snprintf(why, sizeof(why), "TLS %s failed: %s", what, tls_error_string(&c->tls));
    u_fail(u, 502, why);
}

/* An idle pooled TLS connection may receive post-handshake messages
 * (session tickets), which wolfSSL takes by itself; plaintext, close_notify
 * or an error make it unusable. 1 = keep it. */
static int up_tls_idle_keep(struct up_conn *c)
{
    size_t n;
    int r = tls_read(&c->tls, (uint8_t *)c->pbuf, UP_RBUF_SIZE, &n);

    if (r == TLS_AGAIN && up_tls_flush(c, 0) == 0)
        return 1;
    return 0;
}

/* Decrypts what TLS holds and parses it, until it needs more bytes, the
 * caller pauses, or the exchange ends. */
static void up_tls_drain(struct upstream *u, struct up_conn *c)
{
    size_t n;
    int r;

    while (!u->dead && !u->paused && c->u == u) {
        r = tls_read(&c->tls, (uint8_t *)c->pbuf, UP_RBUF_SIZE, &n);
        if (r != TLS_AGAIN && r < 0 && r != TLS_EOF) {
            u_tls_fail(u, c, "read");
            return;
        }
        /* Reading may answer the service (key update). */
        if (up_tls_flush(c, 0) < 0) {
            u_fail(u, 502, "write failed");
            return;
        }
        if (r == TLS_AGAIN)
            return;
        if (r == TLS_EOF) {
            u_read_end(u, UV_EOF);
            return;
        }
        u->got_bytes = 1;
        u_arm(u, 1);
        u_feed(u, c->pbuf, n);
    }
}

static int u_connected(struct upstream *u);

/* Ciphertext from the service: handshake, then responses. */
static void up_tls_input(struct upstream *u, struct up_conn *c, size_t len)
{
    int r;

    tls_lend(&c->tls, (const uint8_t *)c->rbuf, len);
    if (!c->hs_done) {
        r = tls_handshake(&c->tls);
        if (r != 0 && r != TLS_AGAIN) {
            u_tls_fail(u, c, "handshake");
            goto out;
        }
        if (up_tls_flush(c, 0) < 0) {
            u_fail(u, 502, "write failed");
            goto out;
        }
        if (r == TLS_AGAIN)
            goto out;
        c->hs_done = 1;
        if (u_connected(u) < 0) {
            u_fail(u, 502, "write failed");
            goto out;
        }
    }
    up_tls_drain(u, c);
out:
    if (tls_unlend(&c->tls) != 0 && !u->dead)
        u_fail(u, 502, "out of memory");
    /* Bytes past the response that ended the exchange: judged now, or they
     * would wait unseen for the next exchange on this connection. */
    if (c->pool != NULL && c->tls.in.len > 0 && !up_tls_idle_keep(c))
        up_conn_close(c);
}

/* TCP is up: starts the handshake. */
static int u_tls_start(struct upstream *u, struct up_conn *c)
{
    int r;

    c->pbuf = malloc(UP_RBUF_SIZE);
    if (!c->pbuf)
        return -ENOMEM;
    r = tls_conn_init_service(&c->tls, u->tls_ctx, u->host, u->tls_conf, &c->chk);
    if (r < 0)
        return r;
    c->is_tls = 1;
    r = tls_handshake(&c->tls);
    if (r != TLS_AGAIN && r != 0)
        return -EPROTO;
    r = up_tls_flush(c, 0);
    if (r < 0)
        return r;
    u->state = UP_HANDSHAKE;
    up_conn_read_start(c);
    return 0;
}

static void up_conn_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct up_conn *c = s->data;
    if (nread == 0)
        return;
    struct upstream *u = c->u;
    if (!u) {
        /* Idle in the pool: any byte or EOF makes it unusable, except
         * TLS's own messages. */
        if (c->is_tls && nread > 0) {
            int keep;
            tls_lend(&c->tls, (const uint8_t *)c->rbuf, (size_t)nread);
            keep = up_tls_idle_keep(c);
            if (tls_unlend(&c->tls) == 0 && keep)
                return;
        }
        up_conn_close(c);
        return;
    }
    if (nread < 0) {
        if (c->is_tls && !c->hs_done) {
            u_tls_fail(u, c, "handshake");
            return;
        }
        u_read_end(u, nread);
        return;
    }
    if (c->is_tls) {
        up_tls_input(u, c, (size_t)nread);
        return;
    }
    u->got_bytes = 1;
    u_arm(u, 1);
    u_feed(u, c->rbuf, (size_t)nread);
}

static void u_kick_cb(uv_timer_t *t)
{
    struct upstream *u = container_of(t, struct upstream, kick);
    if (u->dead || u->paused)
        return;
    if (u->left) {
        const char *data = u->left;
        size_t len = u->left_len;
        u->left = NULL;
        u->left_len = 0;
        if (HTTP_PARSER_ERRNO(&u->parser) == HPE_PAUSED)
            http_parser_pause(&u->parser, 0);
        u_feed(u, data, len);
        if (u->dead || u->paused)
            return;
    }
    if (u->state == UP_ACTIVE && u->conn && u->conn->is_tls) {
        /* Records already received wait in TLS, not in the socket. */
        up_tls_drain(u, u->conn);
        if (u->dead || u->paused)
            return;
    }
    if (u->state == UP_ACTIVE && u->conn)
        up_conn_read_start(u->conn);
    u_arm(u, 1);
}

/* ---- connecting ---- */

/* Returns < 0 when the queued writes could not be handed to libuv; the
 * caller decides whether that is a callback or a return code. */
static int u_connected(struct upstream *u)
{
    struct up_conn *c = u->conn;
    u->state = UP_ACTIVE;
    while (!STAILQ_EMPTY(&u->wq)) {
        struct up_wreq *w = STAILQ_FIRST(&u->wq);

        STAILQ_REMOVE_HEAD(&u->wq, qlink);
        int r = up_conn_write(c, w);
        if (r < 0) {
            free(w);
            return r;
        }
    }
    if (!u->paused)
        up_conn_read_start(c);
    u_arm(u, 1);
    return 0;
}

static const char *connect_error_phrase(int status)
{
    switch (status) {
    case UV_ECONNREFUSED:
        return "connection refused";
    case UV_ENOENT:
        return "service socket not found";
    case UV_ETIMEDOUT:
        return "connect timeout";
    default:
        return "connect failed";
    }
}

static int u_try_next_addr(struct upstream *u);

static void up_conn_connect_cb(uv_connect_t *req, int status)
{
    struct up_conn *c = container_of(req, struct up_conn, creq);
    struct upstream *u = c->u;
    if (!u || c->closing || u->dead)
        return;
    if (status < 0) {
        u_detach(u, 0);
        if (!u->is_unix && u->ai_next && u_try_next_addr(u) == 0)
            return;
        u_fail(u, 502, connect_error_phrase(status));
        return;
    }
    if (!u->is_unix)
        uv_tcp_nodelay(&c->io.tcp, 1);
    if (u->is_tls) {
        if (u_tls_start(u, c) < 0)
            u_fail(u, 502, "TLS setup failed");
        return;
    }
    if (u_connected(u) < 0)
        u_fail(u, 502, "write failed");
}

static void u_attach(struct upstream *u, struct up_conn *c)
{
    u->conn = c;
    c->u = u;
}

static int u_connect_addr(struct upstream *u, const struct sockaddr *sa)
{
    struct up_conn *c;
    int r = up_conn_new(u->loop, 0, &c);
    if (r < 0)
        return r;
    r = uv_tcp_connect(&c->creq, &c->io.tcp, sa, up_conn_connect_cb);
    if (r < 0) {
        up_conn_close(c);
        return r;
    }
    u_attach(u, c);
    u->state = UP_CONNECTING;
    return 0;
}

/* Tries the resolved addresses in order ("localhost" may give ::1 first to
 * a service listening on 127.0.0.1 only). */
static int u_try_next_addr(struct upstream *u)
{
    int last = UV_ECONNREFUSED;
    while (u->ai_next) {
        struct addrinfo *ai = u->ai_next;
        u->ai_next = ai->ai_next;
        if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
            continue;
        int r = u_connect_addr(u, ai->ai_addr);
        if (r == 0)
            return 0;
        last = r;
    }
    return last;
}

static void u_gai_cb(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct upstream *u = container_of(req, struct upstream, gai);
    u->gai_pending = 0;
    if (u->dead) {
        if (res)
            uv_freeaddrinfo(res);
        u_maybe_free(u);
        return;
    }
    if (status < 0 || !res) {
        if (res)
            uv_freeaddrinfo(res);
        u_fail(u, 502, "name resolution failed");
        return;
    }
    if (u->ai)
        uv_freeaddrinfo(u->ai);
    u->ai = res;
    u->ai_next = res;
    int r = u_try_next_addr(u);
    if (r < 0)
        u_fail(u, 502, connect_error_phrase(r));
}

static int u_begin_connect(struct upstream *u, int allow_pool)
{
    struct up_conn *c = allow_pool ? pool_take(u->loop, u->key) : NULL;
    if (c) {
        u_attach(u, c);
        return u_connected(u);
    }
    int r;
    if (u->is_unix) {
        r = up_conn_new(u->loop, 1, &c);
        if (r < 0)
            return r;
        uv_pipe_connect(&c->creq, &c->io.pipe, u->sock_path, up_conn_connect_cb);
        u_attach(u, c);
        u->state = UP_CONNECTING;
        return 0;
    }
    union {
        struct sockaddr sa;
        struct sockaddr_in in4;
        struct sockaddr_in6 in6;
    } addr;
    if (uv_ip4_addr(u->host, u->port, &addr.in4) == 0 ||
        uv_ip6_addr(u->host, u->port, &addr.in6) == 0)
        return u_connect_addr(u, &addr.sa);
    char port[8];
    snprintf(port, sizeof(port), "%d", u->port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    r = uv_getaddrinfo(u->loop, &u->gai, u_gai_cb, u->host, port, &hints);
    if (r < 0)
        return r;
    u->gai_pending = 1;
    u->state = UP_RESOLVING;
    return 0;
}

/* ---- request head ---- */

struct sbuf {
    char *p;
    size_t len, cap;
};

static int sb_add(struct sbuf *b, const char *s, size_t n)
{
    if (n > SIZE_MAX / 2 - b->len)
        return -ENOMEM;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 512;
        while (cap < b->len + n)
            cap *= 2;
        char *np = realloc(b->p, cap);
        if (!np)
            return -ENOMEM;
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    return 0;
}

static int sb_str(struct sbuf *b, const char *s)
{
    return sb_add(b, s, strlen(s));
}

static int valid_value(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] == '\r' || s[i] == '\n' || s[i] == '\0')
            return 0;
    return 1;
}

static int valid_target(const char *s)
{
    if (s[0] == '\0')
        return 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p <= 0x20 || *p == 0x7f)
            return 0;
    return 1;
}

static int request_drops(const char *name, size_t nl, const struct upstream_header *h, size_t n)
{
    if (hop_by_hop(name, nl) || name_is(name, nl, "host") || name_is(name, nl, "content-length"))
        return 1;
    for (size_t j = 0; j < n; j++)
        if (name_is(h[j].name, h[j].name_len, "connection") &&
            hfield_token_listed(h[j].value, h[j].value_len, name, nl))
            return 1;
    return 0;
}

static int build_head(struct upstream *u, const struct net_url *url, const char *method,
                      const char *path, const struct upstream_header *h, size_t n)
{
    int rc = -EINVAL;
    struct sbuf b = {0};
    char num[64];
    int cookies = 0;

    if ((rc = sb_str(&b, method)) < 0 || (rc = sb_str(&b, " ")) < 0)
        goto out;
    if (!u->is_unix && strcmp(path, "*") != 0 && (rc = sb_str(&b, url->path)) < 0)
        goto out;
    if ((rc = sb_str(&b, path)) < 0 || (rc = sb_str(&b, " HTTP/1.1\r\nHost: ")) < 0)
        goto out;
    if (u->is_unix) {
        rc = sb_str(&b, "localhost");
    } else {
        int v6 = strchr(u->host, ':') != NULL;
        if ((rc = sb_str(&b, v6 ? "[" : "")) < 0 || (rc = sb_str(&b, u->host)) < 0 ||
            (rc = sb_str(&b, v6 ? "]" : "")) < 0)
            goto out;
        if (u->port != (u->is_tls ? 443 : 80)) {
            snprintf(num, sizeof(num), ":%d", u->port);
            rc = sb_str(&b, num);
        }
    }
    if (rc < 0 || (rc = sb_str(&b, "\r\n")) < 0)
        goto out;
    for (size_t i = 0; i < n; i++) {
        if (h[i].name_len > 0 && h[i].name[0] == ':')
            continue; /* HTTP/2 pseudo-header: already in the request line */
        rc = -EINVAL;
        if (!hfield_token_valid(h[i].name, h[i].name_len) ||
            !valid_value(h[i].value, h[i].value_len))
            goto out;
        if (request_drops(h[i].name, h[i].name_len, h, n))
            continue;
        if (name_is(h[i].name, h[i].name_len, "cookie")) {
            cookies++;
            continue;
        }
        if ((rc = sb_add(&b, h[i].name, h[i].name_len)) < 0 || (rc = sb_str(&b, ": ")) < 0 ||
            (rc = sb_add(&b, h[i].value, h[i].value_len)) < 0 || (rc = sb_str(&b, "\r\n")) < 0)
            goto out;
    }
    if (cookies > 0) {
        /* HTTP/2 splits cookies into crumbs; HTTP/1.1 wants one line (RFC 9113 8.2.3). */
        if ((rc = sb_str(&b, "Cookie: ")) < 0)
            goto out;
        int k = 0;
        for (size_t i = 0; i < n; i++) {
            if (!name_is(h[i].name, h[i].name_len, "cookie"))
                continue;
            if ((k++ > 0 && (rc = sb_str(&b, "; ")) < 0) ||
                (rc = sb_add(&b, h[i].value, h[i].value_len)) < 0)
                goto out;
        }
        if ((rc = sb_str(&b, "\r\n")) < 0)
            goto out;
    }
    if (u->content_length >= 0) {
        snprintf(num, sizeof(num), "Content-Length: %" PRId64 "\r\n", u->content_length);
        rc = sb_str(&b, num);
    } else if (u->has_body) {
        rc = sb_str(&b, "Transfer-Encoding: chunked\r\n");
    }
    if (rc < 0 || (rc = sb_str(&b, "\r\n")) < 0)
        goto out;
    u->head = b.p;
    u->head_len = b.len;
    b.p = NULL;
    rc = 0;
out:
    free(b.p);
    return rc;
}

/* ---- public API ---- */

int upstream_start(uv_loop_t *loop, const struct net_url *url, const struct upstream_opts *opts,
                   const char *method, const char *path, const struct upstream_header *headers,
                   size_t n_headers, int has_body, int64_t content_length,
                   const struct upstream_cbs *cbs, void *arg, struct upstream **out)
{
    int rc = -EINVAL;
    struct upstream *u = NULL;

    if (!loop || !url || !method || !path || !cbs || !out || (n_headers > 0 && !headers))
        return -EINVAL;
    if (!cbs->on_head || !cbs->on_body || !cbs->on_end || !cbs->on_error)
        return -EINVAL;
    if (url->kind != NET_URL_HTTP && url->kind != NET_URL_HTTPS && url->kind != NET_URL_UNIX)
        return -ENOTSUP;
    if (url->kind == NET_URL_HTTPS && (!opts || !opts->tls_ctx || !opts->tls))
        return -EINVAL;
    size_t ml = strlen(method);
    if (ml > UP_METHOD_MAX || !hfield_token_valid(method, ml) || !valid_target(path))
        return -EINVAL;
    if (strcmp(method, "CONNECT") == 0)
        return -ENOTSUP;
    if (path[0] != '/' && strcmp(path, "*") != 0)
        return -EINVAL;
    if (content_length < -1 || (!has_body && content_length > 0))
        return -EINVAL;
    if (url->kind == NET_URL_UNIX) {
        if (url->path[0] == '\0')
            return -EINVAL;
        if (strlen(url->path) >= UP_SUN_PATH_MAX)
            return -ENAMETOOLONG;
    } else if (url->host[0] == '\0' || url->port < 1 || url->port > 65535 ||
               strlen(url->host) > NET_HOST_MAX) {
        return -EINVAL;
    }

    u = calloc(1, sizeof(*u));
    if (!u)
        return -ENOMEM;
    u->loop = loop;
    STAILQ_INIT(&u->wq);
    u->cbs = *cbs;
    u->arg = arg;
    u->is_unix = url->kind == NET_URL_UNIX;
    u->is_tls = url->kind == NET_URL_HTTPS;
    if (u->is_tls) {
        u->tls_ctx = opts->tls_ctx;
        u->tls_conf = malloc(sizeof(*u->tls_conf));
        if (!u->tls_conf) {
            rc = -ENOMEM;
            goto out;
        }
        *u->tls_conf = *opts->tls;
    }
    u->connect_ms = opts && opts->connect_timeout_ms ? opts->connect_timeout_ms : UP_CONNECT_MS;
    u->response_ms = opts && opts->response_timeout_ms ? opts->response_timeout_ms : UP_RESPONSE_MS;
    u->has_body = has_body != 0;
    u->content_length = content_length;
    u->is_head = strcmp(method, "HEAD") == 0;
    u->retryable = !u->has_body && (strcmp(method, "GET") == 0 || u->is_head ||
                                    strcmp(method, "OPTIONS") == 0 || strcmp(method, "TRACE") == 0);
    if (u->is_unix) {
        memcpy(u->sock_path, url->path, strlen(url->path) + 1); /* length checked above */
        snprintf(u->key, sizeof(u->key), "unix|%s", u->sock_path);
    } else {
        snprintf(u->host, sizeof(u->host), "%s", url->host);
        u->port = url->port;
        /* A TLS connection is only reused under the same context (trust,
         * client certificate) it was checked with. */
        if (u->is_tls)
            snprintf(u->key, sizeof(u->key), "https|%s|%d|%p", url->host, url->port,
                     (void *)u->tls_ctx);
        else
            snprintf(u->key, sizeof(u->key), "http|%s|%d", url->host, url->port);
    }
    http_parser_init(&u->parser, HTTP_RESPONSE);
    u->parser.data = u;

    rc = build_head(u, url, method, path, headers, n_headers);
    if (rc < 0)
        goto out;
    uv_timer_init(loop, &u->timer);
    uv_timer_init(loop, &u->kick);
    u->timer.data = u;
    u->kick.data = u;
    rc = u_queue_head(u);
    if (rc == 0)
        rc = u_begin_connect(u, 1);
    if (rc < 0) {
        u_shutdown(u, 0);
        u_release(u);
        u = NULL;
        goto out;
    }
    if (u->state != UP_ACTIVE)
        uv_timer_start(&u->timer, u_timer_cb, u->connect_ms, 0);
    *out = u;
    u = NULL;
    rc = 0;
out:
    if (u) {
        free(u->head);
        free(u->tls_conf);
        free(u);
    }
    return rc;
}

/* Queues pre + data + post (chunk framing around len body bytes, which are
 * reported as written once sent). While a write is in flight they join the
 * held bytes, so a burst of small body chunks becomes one write. */
static int u_write_body(struct upstream *u, const char *pre, size_t pl, const uint8_t *data,
                        size_t len, const char *post, size_t tl)
{
    size_t n = pl + len + tl;
    struct up_wreq *w;

    if (u->state == UP_ACTIVE && u->conn && (u->hold || u->conn->writes_pending > 0)) {
        w = u->hold;
        if (!w || w->len + n > u->hold_cap) {
            size_t cap = u->hold_cap ? u->hold_cap * 2 : UP_HOLD_MIN;
            while (cap < (w ? w->len : 0) + n)
                cap *= 2;
            w = realloc(u->hold, sizeof(*w) + cap);
            if (!w)
                return -ENOMEM;
            if (!u->hold) {
                w->report = 0;
                w->len = 0;
            }
            u->hold = w;
            u->hold_cap = cap;
        }
    } else {
        w = wreq_new(n);
        if (!w)
            return -ENOMEM;
        w->len = 0;
    }
    if (pl > 0)
        memcpy(w->data + w->len, pre, pl);
    if (len > 0)
        memcpy(w->data + w->len + pl, data, len);
    if (tl > 0)
        memcpy(w->data + w->len + pl + len, post, tl);
    w->len += n;
    w->report += len;
    u->body_sent += len;
    if (w == u->hold)
        return 0;
    return u_send(u, w) < 0 ? -EPIPE : 0;
}

int upstream_write_body(struct upstream *u, const uint8_t *data, size_t len)
{
    if (!u || u->dead)
        return -ECANCELED;
    if (!u->has_body || u->body_ended || (len > 0 && !data))
        return -EINVAL;
    if (u->write_failed)
        return -EPIPE;
    if (len == 0)
        return 0; /* an empty chunk would end a chunked body */
    if (u->content_length >= 0 && len > (uint64_t)u->content_length - u->body_sent)
        return -EMSGSIZE;
    int rc;
    if (u->content_length >= 0) {
        rc = u_write_body(u, NULL, 0, data, len, NULL, 0);
    } else {
        char pre[24];
        int pl = snprintf(pre, sizeof(pre), "%zx\r\n", len);
        rc = u_write_body(u, pre, (size_t)pl, data, len, "\r\n", 2);
    }
    if (rc < 0)
        return rc;
    u_arm(u, 0);
    return 0;
}

int upstream_end_body(struct upstream *u)
{
    return upstream_end_body_trailers(u, NULL, 0);
}

int upstream_end_body_trailers(struct upstream *u, const struct upstream_header *trl, size_t n)
{
    if (!u || u->dead)
        return -ECANCELED;
    if (!u->has_body)
        return 0;
    if (u->body_ended)
        return -EINVAL;
    u->body_ended = 1;
    int rc = 0;
    if (u->content_length < 0) {
        /* RFC 9112 7.1.2: the trailer section follows the last chunk. A
         * body with a Content-Length has no place for one: they are dropped
         * (RFC 9110 6.5.1 allows it). */
        struct buf t;
        size_t k;

        buf_init(&t);
        rc = buf_append(&t, "0\r\n", 3);
        for (k = 0; k < n && rc == 0; k++) {
            if (request_drops(trl[k].name, trl[k].name_len, trl, n) ||
                !hfield_token_valid(trl[k].name, trl[k].name_len) ||
                !valid_value(trl[k].value, trl[k].value_len))
                continue;
            rc = buf_append(&t, trl[k].name, trl[k].name_len) || buf_append(&t, ": ", 2) ||
                 buf_append(&t, trl[k].value, trl[k].value_len) || buf_append(&t, "\r\n", 2);
        }
        if (rc == 0)
            rc = buf_append(&t, "\r\n", 2);
        rc = rc != 0 ? -ENOMEM
                     : u_write_body(u, (const char *)buf_head(&t), t.len, NULL, 0, NULL, 0);
        buf_free(&t);
    } else if (u->body_sent != (uint64_t)u->content_length) {
        rc = -EINVAL; /* the service still waits for the rest; never reused */
    }
    u_arm(u, 0);
    return rc;
}

void upstream_pause_reading(struct upstream *u, int pause)
{
    if (!u || u->dead || !!pause == u->paused)
        return;
    u->paused = !!pause;
    int perr = HTTP_PARSER_ERRNO(&u->parser);
    if (pause) {
        if (u->conn && u->state == UP_ACTIVE) {
            up_conn_read_stop(u->conn);
            uv_timer_stop(&u->timer); /* the connect timer keeps running */
        }
        uv_timer_stop(&u->kick);
        /* Called from on_body/on_head: stop the parser before the rest of
         * the buffer turns into more callbacks. */
        if (u->in_parser && perr == HPE_OK)
            http_parser_pause(&u->parser, 1);
        return;
    }
    if (perr == HPE_PAUSED && !u->msg_complete)
        http_parser_pause(&u->parser, 0);
    if (u->left || (u->conn && u->conn->is_tls)) {
        uv_timer_start(&u->kick, u_kick_cb, 0, 0);
        return;
    }
    if (u->conn && u->state == UP_ACTIVE)
        up_conn_read_start(u->conn);
    u_arm(u, 1);
}

void upstream_abort(struct upstream *u)
{
    if (!u || u->dead)
        return;
    u_shutdown(u, 0);
    u_release(u);
}
