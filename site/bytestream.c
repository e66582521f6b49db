/* A byte stream between the site agent and a tcp:// service: one CONNECT stream of the tunnel,
 * piped both ways with backpressure and half-close. */
/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE /* memmem */
#include "bytestream.h"

#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../common/buf.h"
#include "../common/crypto.h"
#include "../common/hfield.h"

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

#define BS_READ_MAX (64 * 1024)

/* The service's answer to a WebSocket upgrade: its head must fit. */
#define BS_HEAD_MAX (16 * 1024)
#define BS_PASS_MAX 8 /* Sec-WebSocket-Protocol / -Extensions lines passed back */

enum bs_state { BS_RESOLVING, BS_CONNECTING, BS_UPGRADING, BS_OPEN, BS_DEAD };

/* Owned by the agent's stream until bytestream_abort() or on_error; the
 * memory itself is freed once no libuv handle or request refers to it. */
struct bytestream {
    uv_loop_t *loop;
    enum bs_state state;
    const struct bytestream_cbs *cbs;
    void *arg; /* the caller's; NULL once aborted (no callback any more) */
    char host[NET_HOST_MAX + 1];
    char port[8];
    uv_getaddrinfo_t gai;
    struct addrinfo *ai; /* resolved addresses, owned */
    uv_tcp_t tcp;
    int tcp_init;
    uv_connect_t creq;
    uv_timer_t timer;
    uv_shutdown_t sreq;
    struct buf pending;                    /* written before the connection was up */
    int upgrade;                           /* a WebSocket upgrade comes first */
    struct buf req;                        /* the upgrade request */
    struct buf head;                       /* the service's answer to it, while BS_UPGRADING */
    char accept[CRYPTO_WS_ACCEPT_LEN + 1]; /* the Sec-WebSocket-Accept we expect */
    int want_end;                          /* bytestream_end() was called */
    int ended;                             /* shutdown issued */
    int shut_done;                         /* and completed */
    int paused;
    int reading;
    int eof;  /* the service ended its side */
    int refs; /* open handles and requests in flight */
    char readbuf[BS_READ_MAX];
};

struct bs_write {
    uv_write_t req;
    struct bytestream *b;
    size_t len; /* what on_written reports: 0 for the site's own bytes */
    uint8_t data[];
};

static void bs_unref(struct bytestream *b)
{
    assert(b->refs > 0);
    if (--b->refs > 0)
        return;
    if (b->ai != NULL)
        uv_freeaddrinfo(b->ai);
    buf_free(&b->pending);
    buf_free(&b->req);
    buf_free(&b->head);
    free(b);
}

static void close_cb(uv_handle_t *h)
{
    bs_unref(h->data);
}

/* Closes the handles; no callback runs afterwards. */
static void bs_close(struct bytestream *b)
{
    if (b->state == BS_DEAD)
        return;
    b->state = BS_DEAD;
    b->arg = NULL;
    uv_close((uv_handle_t *)&b->timer, close_cb);
    if (b->tcp_init)
        uv_close((uv_handle_t *)&b->tcp, close_cb);
}

static void bs_fail(struct bytestream *b, int status, const char *why)
{
    const struct bytestream_cbs *cbs = b->cbs;
    void *arg = b->arg;

    bs_close(b);
    if (arg != NULL)
        cbs->on_error(arg, status, why);
}

static void fail_errno(struct bytestream *b, const char *what, int err)
{
    char why[400];

    snprintf(why, sizeof(why), "%s %s:%s: %s", what, b->host, b->port, uv_strerror(err));
    bs_fail(b, 502, why);
}

static void write_cb(uv_write_t *req, int status)
{
    struct bs_write *w = container_of(req, struct bs_write, req);
    struct bytestream *b = w->b;
    size_t len = w->len;

    free(w);
    if ((b->state == BS_OPEN || b->state == BS_UPGRADING) && b->arg != NULL) {
        if (status < 0)
            fail_errno(b, "writing to the service at", status);
        else if (len > 0)
            b->cbs->on_written(b->arg, len);
    }
    bs_unref(b);
}

/* credit: the bytes came from the hub (on_written reports them). */
static int send_bytes(struct bytestream *b, const uint8_t *data, size_t len, int credit)
{
    struct bs_write *w = malloc(sizeof(*w) + len);
    uv_buf_t ub;
    int rc;

    if (w == NULL)
        return -ENOMEM;
    w->b = b;
    w->len = credit ? len : 0;
    memcpy(w->data, data, len);
    ub = uv_buf_init((char *)w->data, (unsigned)len);
    rc = uv_write(&w->req, (uv_stream_t *)&b->tcp, &ub, 1, write_cb);
    if (rc != 0) {
        free(w);
        return rc;
    }
    b->refs++;
    return 0;
}

static void shutdown_cb(uv_shutdown_t *req, int status)
{
    struct bytestream *b = req->data;

    b->shut_done = 1;
    if (b->arg == NULL)
        bs_close(b); /* detached (bytestream_abort) once its last bytes are out */
    bs_unref(b);
}

static void maybe_shutdown(struct bytestream *b)
{
    if (b->state != BS_OPEN || !b->want_end || b->ended)
        return;
    b->ended = 1;
    b->sreq.data = b;
    /* libuv shuts the sending side once the queued writes are out. */
    if (uv_shutdown(&b->sreq, (uv_stream_t *)&b->tcp, shutdown_cb) == 0)
        b->refs++;
}

static void alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *out)
{
    struct bytestream *b = h->data;
    *out = uv_buf_init(b->readbuf, sizeof(b->readbuf));
}

static void became_open(struct bytestream *b, const struct upstream_header *h, size_t n);
static void upgrade_read(struct bytestream *b, const uint8_t *data, size_t len);

static void read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *ub)
{
    struct bytestream *b = s->data;

    if (b->state == BS_UPGRADING && b->arg != NULL) {
        if (n > 0)
            upgrade_read(b, (const uint8_t *)ub->base, (size_t)n);
        else if (n < 0)
            bs_fail(b, 502, "the service closed the connection during the WebSocket upgrade");
        return;
    }
    if (b->state != BS_OPEN || b->arg == NULL)
        return;
    if (n > 0) {
        b->cbs->on_data(b->arg, (const uint8_t *)ub->base, (size_t)n);
        return;
    }
    if (n == UV_EOF) {
        uv_read_stop(s);
        b->reading = 0;
        b->eof = 1;
        b->cbs->on_eof(b->arg);
        return;
    }
    if (n < 0)
        fail_errno(b, "reading from the service at", (int)n);
}

static void start_reading(struct bytestream *b)
{
    if (b->state == BS_OPEN && !b->paused && !b->reading && !b->eof) {
        if (uv_read_start((uv_stream_t *)&b->tcp, alloc_cb, read_cb) == 0)
            b->reading = 1;
    }
}

static void connect_cb(uv_connect_t *req, int status)
{
    struct bytestream *b = req->data;

    assert(b->refs > 1); /* the request; the handle still holds b */
    b->refs--;
    if (b->state != BS_CONNECTING)
        return;
    if (status < 0) {
        /* Only the first address is tried: a service names the one it
         * listens on (tcp://127.0.0.1:5432). */
        fail_errno(b, "the service refused or could not be reached at", status);
        return;
    }
    uv_tcp_nodelay(&b->tcp, 1);
    if (b->upgrade) {
        int rc = send_bytes(b, buf_head(&b->req), b->req.len, 0);
        buf_free(&b->req);
        if (rc == 0)
            rc = uv_read_start((uv_stream_t *)&b->tcp, alloc_cb, read_cb);
        if (rc != 0) {
            fail_errno(b, "writing to the service at", rc);
            return;
        }
        b->state = BS_UPGRADING; /* the timer runs on until the 101 */
        return;
    }
    became_open(b, NULL, 0);
    if (b->state == BS_OPEN)
        start_reading(b);
}

/* Connected (and upgraded): the bytes held meanwhile go out. */
static void became_open(struct bytestream *b, const struct upstream_header *h, size_t n)
{
    uv_timer_stop(&b->timer);
    b->state = BS_OPEN;
    b->cbs->on_open(b->arg, h, n);
    if (b->state != BS_OPEN)
        return;
    if (b->pending.len > 0) {
        int rc = send_bytes(b, buf_head(&b->pending), b->pending.len, 1);
        buf_free(&b->pending);
        if (rc != 0) {
            fail_errno(b, "writing to the service at", rc);
            return;
        }
    }
    maybe_shutdown(b);
}

/* 1 when the comma-separated header value v holds token (any case). */
static int has_token(const char *v, const char *token)
{
    return hfield_token_listed(v, strlen(v), token, strlen(token));
}

/* The service's answer to the upgrade, bytes as they come. Past the head
 * they are the service's first WebSocket bytes. */
static void upgrade_read(struct bytestream *b, const uint8_t *data, size_t len)
{
    struct upstream_header pass[BS_PASS_MAX];
    size_t np = 0, hl;
    char *p, *end, *line, *eol;
    int status, up_ok = 0, conn_ok = 0, acc_ok = 0;
    char why[160];

    if (buf_append(&b->head, data, len) != 0) {
        bs_fail(b, 502, "out of memory during the WebSocket upgrade");
        return;
    }
    p = (char *)buf_head(&b->head);
    end = memmem(p, b->head.len, "\r\n\r\n", 4);
    if (end == NULL) {
        if (b->head.len > BS_HEAD_MAX)
            bs_fail(b, 502, "the service's answer to the WebSocket upgrade is too long");
        return;
    }
    hl = (size_t)(end - p) + 4;
    *end = '\0';
    if (strncmp(p, "HTTP/1.1 ", 9) != 0 || strlen(p) < 12) {
        bs_fail(b, 502, "the service did not answer the WebSocket upgrade with HTTP/1.1");
        return;
    }
    status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
    if (status != 101) {
        snprintf(why, sizeof(why), "the service answered the WebSocket upgrade with %.3s, not 101",
                 p + 9);
        bs_fail(b, 502, why);
        return;
    }
    for (line = strstr(p, "\r\n"); line != NULL; line = eol) {
        char *colon, *v;

        line += 2;
        eol = strstr(line, "\r\n");
        if (eol != NULL)
            *eol = '\0';
        colon = strchr(line, ':');
        if (colon == NULL)
            break;
        *colon = '\0';
        for (v = colon + 1; *v == ' ' || *v == '\t'; v++)
            ;
        for (char *t = v + strlen(v); t > v && (t[-1] == ' ' || t[-1] == '\t'); t--)
            t[-1] = '\0';
        if (strcasecmp(line, "upgrade") == 0)
            up_ok = strcasecmp(v, "websocket") == 0;
        else if (strcasecmp(line, "connection") == 0)
            conn_ok = has_token(v, "upgrade");
        else if (strcasecmp(line, "sec-websocket-accept") == 0)
            acc_ok = strcmp(v, b->accept) == 0;
        else if ((strcasecmp(line, "sec-websocket-protocol") == 0 ||
                  strcasecmp(line, "sec-websocket-extensions") == 0) &&
                 np < BS_PASS_MAX) {
            for (char *c = line; *c; c++)
                *c = (char)(*c >= 'A' && *c <= 'Z' ? *c + 32 : *c);
            pass[np++] = (struct upstream_header){line, strlen(line), v, strlen(v)};
        }
        if (eol == NULL)
            break;
    }
    if (!up_ok || !conn_ok || !acc_ok) {
        bs_fail(b, 502,
                !acc_ok ? "the service's Sec-WebSocket-Accept does not match the site's key"
                        : "the service's 101 lacks Upgrade: websocket or Connection: upgrade");
        return;
    }
    became_open(b, pass, np);
    if (b->state != BS_OPEN)
        return;
    if (b->head.len > hl)
        b->cbs->on_data(b->arg, (const uint8_t *)buf_head(&b->head) + hl, b->head.len - hl);
    buf_free(&b->head);
    b->reading = 1; /* reading since the request went */
    if (b->state == BS_OPEN && b->paused) {
        uv_read_stop((uv_stream_t *)&b->tcp);
        b->reading = 0;
    }
}

static void try_connect(struct bytestream *b)
{
    struct addrinfo *ai = b->ai;
    int rc;

    rc = uv_tcp_init(b->loop, &b->tcp);
    if (rc != 0) {
        fail_errno(b, "no socket for", rc);
        return;
    }
    b->tcp_init = 1;
    b->refs++; /* the handle */
    b->tcp.data = b;
    b->creq.data = b;
    rc = uv_tcp_connect(&b->creq, &b->tcp, ai->ai_addr, connect_cb);
    if (rc != 0) {
        fail_errno(b, "cannot connect to", rc);
        return;
    }
    b->refs++; /* the request */
}

static void gai_cb(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct bytestream *b = req->data;

    b->ai = res;
    if (b->state != BS_RESOLVING) {
        bs_unref(b);
        return;
    }
    b->refs--; /* the request */
    if (status < 0 || res == NULL) {
        fail_errno(b, "cannot resolve", status < 0 ? status : UV_EAI_NONAME);
        return;
    }
    b->state = BS_CONNECTING;
    try_connect(b);
}

static void timeout_cb(uv_timer_t *t)
{
    struct bytestream *b = t->data;
    char why[400];

    snprintf(why, sizeof(why), "the service at %s:%s did not accept the connection in time",
             b->host, b->port);
    bs_fail(b, 504, why);
}

/* Skipped from the hub's headers: the site makes these itself. */
static int upgrade_skips(const char *name)
{
    static const char *const skip[] = {"host",
                                       "upgrade",
                                       "connection",
                                       "content-length",
                                       "sec-websocket-key",
                                       "sec-websocket-version",
                                       "sec-websocket-accept"};
    for (size_t i = 0; i < sizeof(skip) / sizeof(skip[0]); i++)
        if (strcasecmp(name, skip[i]) == 0)
            return 1;
    return 0;
}

static int req_printf(struct bytestream *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int req_printf(struct bytestream *b, const char *fmt, ...)
{
    char tmp[512], *p = tmp;
    va_list ap;
    int n, rc;

    va_start(ap, fmt);
    n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n < 0)
        return -EINVAL;
    if ((size_t)n >= sizeof(tmp)) {
        p = malloc((size_t)n + 1);
        if (p == NULL)
            return -ENOMEM;
        va_start(ap, fmt);
        vsnprintf(p, (size_t)n + 1, fmt, ap);
        va_end(ap);
    }
    rc = buf_append(&b->req, p, (size_t)n);
    if (p != tmp)
        free(p);
    return rc;
}

/* The upgrade request, and the accept value it calls for. */
static int build_upgrade(struct bytestream *b, const struct net_url *url,
                         const struct bytestream_upgrade *up)
{
    uint8_t nonce[16];
    char key[32];
    size_t kl;
    int rc = 0;

    if (crypto_random(nonce, sizeof(nonce)) != 0 ||
        crypto_b64_encode(nonce, sizeof(nonce), 0, key, sizeof(key), &kl) != 0 ||
        crypto_ws_accept(key, kl, b->accept) != 0)
        return -EIO;
    rc |= req_printf(b,
                     "GET %s%s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                     "Sec-WebSocket-Version: 13\r\n",
                     url->path, up->path, url->host, url->port, key);
    for (size_t i = 0; i < up->n_hdrs; i++)
        if (!upgrade_skips(up->hdrs[i].name))
            rc |= req_printf(b, "%.*s: %.*s\r\n", (int)up->hdrs[i].name_len, up->hdrs[i].name,
                             (int)up->hdrs[i].value_len, up->hdrs[i].value);
    rc |= buf_append(&b->req, "\r\n", 2);
    return rc != 0 ? -ENOMEM : 0;
}

int bytestream_start(uv_loop_t *loop, const struct net_url *url, uint64_t connect_timeout_ms,
                     const struct bytestream_upgrade *up, const struct bytestream_cbs *cbs,
                     void *arg, struct bytestream **out)
{
    struct addrinfo hints;
    struct bytestream *b;
    int rc;

    *out = NULL;
    if (url->kind != (up != NULL ? NET_URL_HTTP : NET_URL_TCP))
        return -ENOTSUP;
    b = calloc(1, sizeof(*b));
    if (b == NULL)
        return -ENOMEM;
    b->loop = loop;
    b->cbs = cbs;
    b->arg = arg;
    buf_init(&b->pending);
    buf_init(&b->req);
    buf_init(&b->head);
    b->upgrade = up != NULL;
    if (up != NULL && build_upgrade(b, url, up) != 0) {
        buf_free(&b->req);
        free(b);
        return -ENOMEM;
    }
    snprintf(b->host, sizeof(b->host), "%s", url->host);
    snprintf(b->port, sizeof(b->port), "%d", url->port);
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    b->gai.data = b;
    rc = uv_getaddrinfo(loop, &b->gai, gai_cb, b->host, b->port, &hints);
    if (rc != 0) {
        buf_free(&b->req);
        free(b);
        return rc;
    }
    b->refs = 2; /* the request and the timer */
    uv_timer_init(loop, &b->timer);
    b->timer.data = b;
    uv_timer_start(&b->timer, timeout_cb, connect_timeout_ms ? connect_timeout_ms : 10000, 0);
    *out = b;
    return 0;
}

int bytestream_write(struct bytestream *b, const uint8_t *data, size_t len)
{
    if (b->state == BS_DEAD || b->want_end)
        return -EPIPE;
    if (len == 0)
        return 0;
    if (b->state != BS_OPEN)
        return buf_append(&b->pending, data, len);
    return send_bytes(b, data, len, 1);
}

void bytestream_end(struct bytestream *b)
{
    b->want_end = 1;
    maybe_shutdown(b);
}

void bytestream_pause_reading(struct bytestream *b, int pause)
{
    b->paused = pause;
    if (b->state != BS_OPEN)
        return;
    if (pause && b->reading) {
        uv_read_stop((uv_stream_t *)&b->tcp);
        b->reading = 0;
    } else if (!pause) {
        start_reading(b);
    }
}

void bytestream_abort(struct bytestream *b)
{
    /* The tunnel stream closed after both ends said END_STREAM: the bytes
     * still queued for the service go out before the socket closes (a
     * shutdown is under way); any other abort cuts at once. No callback
     * runs either way. */
    b->arg = NULL;
    if (b->state == BS_OPEN && b->ended && !b->shut_done) {
        uv_read_stop((uv_stream_t *)&b->tcp);
        return;
    }
    bs_close(b);
}
