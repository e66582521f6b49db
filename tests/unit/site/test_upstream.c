/* Tests for site/upstream.c against real HTTP/1.1 servers on loopback TCP and a unix socket. */
/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE /* strcasestr */
#include "site/upstream.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

#define MIB (1024u * 1024u)

/* ---- shared helpers ---- */

static uint64_t fnv(uint64_t h, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}
#define FNV0 0xcbf29ce484222325ULL

static uint8_t pat(uint64_t i)
{
    return (uint8_t)((i * 7) ^ (i >> 11) ^ (i >> 19));
}

static void fill_pat(uint8_t *b, uint64_t off, size_t n)
{
    for (size_t i = 0; i < n; i++)
        b[i] = pat(off + i);
}

static uint64_t pat_hash(uint64_t n)
{
    uint8_t b[4096];
    uint64_t h = FNV0;
    for (uint64_t off = 0; off < n;) {
        size_t k = n - off < sizeof(b) ? (size_t)(n - off) : sizeof(b);
        fill_pat(b, off, k);
        h = fnv(h, b, k);
        off += k;
    }
    return h;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ---- the test server: blocking sockets, one thread per connection ---- */

struct srv {
    int lfd;
    int port;
    char path[108];
    pthread_t th;
    atomic_int accepted;
    atomic_int live;
    atomic_llong sent; /* body bytes handed to send() by /cl */
};

struct sconn {
    struct srv *s;
    int fd;
    size_t off, len;
    char buf[65536];
};

static int rd_fill(struct sconn *c)
{
    if (c->off == c->len)
        c->off = c->len = 0;
    if (c->len == sizeof(c->buf)) {
        memmove(c->buf, c->buf + c->off, c->len - c->off);
        c->len -= c->off;
        c->off = 0;
    }
    ssize_t n = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, 0);
    if (n <= 0)
        return -1;
    c->len += (size_t)n;
    return 0;
}

/* One line without CRLF into out; -1 on EOF or overlong line. */
static int rd_line(struct sconn *c, char *out, size_t cap)
{
    size_t n = 0;
    for (;;) {
        while (c->off < c->len) {
            char ch = c->buf[c->off++];
            if (ch == '\n') {
                if (n > 0 && out[n - 1] == '\r')
                    n--;
                out[n] = '\0';
                return (int)n;
            }
            if (n + 1 >= cap)
                return -1;
            out[n++] = ch;
        }
        if (rd_fill(c) < 0)
            return -1;
    }
}

static int rd_body(struct sconn *c, uint64_t n, uint64_t *h)
{
    while (n > 0) {
        if (c->off == c->len && rd_fill(c) < 0)
            return -1;
        size_t k = c->len - c->off;
        if (k > n)
            k = (size_t)n;
        *h = fnv(*h, (uint8_t *)c->buf + c->off, k);
        c->off += k;
        n -= k;
    }
    return 0;
}

static int send_all(int fd, const void *p, size_t n)
{
    const char *b = p;
    while (n > 0) {
        ssize_t k = send(fd, b, n, MSG_NOSIGNAL);
        if (k <= 0)
            return -1;
        b += k;
        n -= (size_t)k;
    }
    return 0;
}

static int send_str(int fd, const char *s)
{
    return send_all(fd, s, strlen(s));
}

struct sreq {
    char method[16];
    char target[256];
    long long cl;
    int chunked;
    char raw[8192];
    size_t raw_len;
};

static int read_req(struct sconn *c, struct sreq *r)
{
    char line[8192];
    memset(r, 0, sizeof(*r));
    r->cl = -1;
    int n = rd_line(c, line, sizeof(line));
    if (n <= 0 || sscanf(line, "%15s %255s", r->method, r->target) != 2)
        return -1;
    for (;;) {
        size_t ll = strlen(line);
        if (r->raw_len + ll + 2 < sizeof(r->raw)) {
            memcpy(r->raw + r->raw_len, line, ll);
            memcpy(r->raw + r->raw_len + ll, "\r\n", 2);
            r->raw_len += ll + 2;
        }
        if (n == 0)
            break;
        n = rd_line(c, line, sizeof(line));
        if (n < 0)
            return -1;
        if (strncasecmp(line, "content-length:", 15) == 0)
            r->cl = atoll(line + 15);
        if (strncasecmp(line, "transfer-encoding:", 18) == 0 && strstr(line, "chunked"))
            r->chunked = 1;
    }
    r->raw[r->raw_len] = '\0';
    return 0;
}

static int read_req_body(struct sconn *c, const struct sreq *r, uint64_t *len, uint64_t *h)
{
    char line[256];
    *len = 0;
    *h = FNV0;
    if (r->chunked) {
        for (;;) {
            if (rd_line(c, line, sizeof(line)) < 0)
                return -1;
            uint64_t k = strtoull(line, NULL, 16);
            if (k == 0)
                break;
            if (rd_body(c, k, h) < 0 || rd_line(c, line, sizeof(line)) != 0)
                return -1;
            *len += k;
        }
        while (rd_line(c, line, sizeof(line)) > 0) /* trailers */
            ;
        return 0;
    }
    if (r->cl > 0) {
        if (rd_body(c, (uint64_t)r->cl, h) < 0)
            return -1;
        *len = (uint64_t)r->cl;
    }
    return 0;
}

static uint64_t qnum(const char *target)
{
    const char *q = strstr(target, "n=");
    return q ? strtoull(q + 2, NULL, 10) : 0;
}

static int send_pattern(struct srv *s, int fd, uint64_t n, int chunked)
{
    static _Thread_local uint8_t b[70000];
    char pre[32];
    uint32_t rng = (uint32_t)n | 1;
    for (uint64_t off = 0; off < n;) {
        rng ^= rng << 13;
        rng ^= rng >> 17;
        rng ^= rng << 5;
        size_t k = chunked ? 1 + rng % sizeof(b) : 65536;
        if (k > n - off)
            k = (size_t)(n - off);
        fill_pat(b, off, k);
        if (chunked) {
            snprintf(pre, sizeof(pre), "%zx\r\n", k);
            if (send_str(fd, pre) < 0)
                return -1;
        }
        if (send_all(fd, b, k) < 0 || (chunked && send_str(fd, "\r\n") < 0))
            return -1;
        off += k;
        atomic_fetch_add(&s->sent, (long long)k);
    }
    return chunked ? send_str(fd, "0\r\n\r\n") : 0;
}

/* Serves requests on one connection until EOF; returns to close it. */
static void serve(struct sconn *c)
{
    struct srv *s = c->s;
    struct sreq r;
    char hdr[512];
    int fd = c->fd;
    while (read_req(c, &r) == 0) {
        /* t: the path without the base prefix and without the query (in r.target). */
        char t[256];
        const char *src = strncmp(r.target, "/base", 5) == 0 ? r.target + 5 : r.target;
        size_t tl = strnlen(src, sizeof(t) - 1);
        memcpy(t, src, tl);
        t[tl] = '\0';
        t[strcspn(t, "?")] = '\0';
        uint64_t qn = qnum(r.target);
        uint64_t blen = 0, bh = 0;
        if (strcmp(t, "/continue") == 0 &&
            send_str(fd, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\n"
                         "Link: </a.css>\r\n\r\n") < 0)
            return;
        if (read_req_body(c, &r, &blen, &bh) < 0)
            return;
        if (strcmp(t, "/echo") == 0 || strcmp(t, "/continue") == 0) {
            char body[128];
            int bl = snprintf(body, sizeof(body), "len=%" PRIu64 " hash=%016" PRIx64, blen, bh);
            snprintf(hdr, sizeof(hdr), "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", bl);
            if (send_str(fd, hdr) < 0 || send_all(fd, body, (size_t)bl) < 0)
                return;
        } else if (strcmp(t, "/big") == 0) {
            if (send_str(fd, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n") < 0 ||
                send_pattern(s, fd, qn, 1) < 0)
                return;
        } else if (strcmp(t, "/cl") == 0) {
            snprintf(hdr, sizeof(hdr), "HTTP/1.1 200 OK\r\nContent-Length: %" PRIu64 "\r\n\r\n",
                     qn);
            if (send_str(fd, hdr) < 0)
                return;
            if (strcmp(r.method, "HEAD") != 0 && send_pattern(s, fd, qn, 0) < 0)
                return;
        } else if (strcmp(t, "/eof") == 0) {
            send_str(fd, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n");
            send_pattern(s, fd, qn, 0);
            return;
        } else if (strcmp(t, "/closeafter") == 0) {
            /* Keep-alive by the headers, closed anyway: the race a pool must survive. */
            send_str(fd, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
            return;
        } else if (strcmp(t, "/close") == 0) {
            return;
        } else if (strcmp(t, "/hang") == 0) {
            char tmp[256];
            while (recv(fd, tmp, sizeof(tmp), 0) > 0)
                ;
            return;
        } else if (strcmp(t, "/204") == 0) {
            if (send_str(fd, "HTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n") < 0)
                return;
        } else if (strcmp(t, "/hop") == 0) {
            if (send_str(fd, "HTTP/1.1 200 OK\r\nConnection: X-Private, keep-alive\r\n"
                             "X-Private: secret\r\nKeep-Alive: timeout=5\r\nX-Keep: Yes  \r\n"
                             "Proxy-Authenticate: Basic\r\nX-Empty:\r\nUpgrade: h2c\r\n"
                             "Transfer-Encoding: chunked\r\nX-Last: z\r\n\r\n"
                             "5\r\nhello\r\n0\r\nX-Trailer: t \r\nKeep-Alive: 1\r\n"
                             "X-Private: hidden\r\nConnection: x-private\r\n\r\n") < 0)
                return;
        } else if (strcmp(t, "/reqhdrs") == 0) {
            snprintf(hdr, sizeof(hdr), "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n", r.raw_len);
            if (send_str(fd, hdr) < 0 || send_all(fd, r.raw, r.raw_len) < 0)
                return;
        } else if (strcmp(t, "/manyhdrs") == 0) {
            send_str(fd, "HTTP/1.1 200 OK\r\n");
            for (int i = 0; i < 101; i++) {
                snprintf(hdr, sizeof(hdr), "X-H%d: v\r\n", i);
                send_str(fd, hdr);
            }
            send_str(fd, "Content-Length: 0\r\n\r\n");
        } else if (strcmp(t, "/hugehdr") == 0) {
            char *big = malloc(70001);
            memset(big, 'a', 70000);
            big[70000] = '\0';
            send_str(fd, "HTTP/1.1 200 OK\r\nX-Big: ");
            send_str(fd, big);
            send_str(fd, "\r\nContent-Length: 0\r\n\r\n");
            free(big);
        } else if (strcmp(t, "/malformed") == 0) {
            send_str(fd, "HTTP/1.1 2x0 OK\r\n\r\n");
            return;
        } else {
            send_str(fd, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
        }
    }
}

static void *conn_thread(void *arg)
{
    struct sconn *c = arg;
    struct srv *s = c->s;
    serve(c);
    close(c->fd);
    free(c);
    atomic_fetch_sub(&s->live, 1);
    return NULL;
}

static void *accept_thread(void *arg)
{
    struct srv *s = arg;
    for (;;) {
        int fd = accept(s->lfd, NULL, NULL);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            break; /* shut down */
        }
        struct sconn *c = calloc(1, sizeof(*c));
        c->s = s;
        c->fd = fd;
        atomic_fetch_add(&s->accepted, 1);
        atomic_fetch_add(&s->live, 1);
        pthread_t th;
        pthread_attr_t at;
        pthread_attr_init(&at);
        pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
        if (pthread_create(&th, &at, conn_thread, c) != 0) {
            close(fd);
            free(c);
            atomic_fetch_sub(&s->live, 1);
        }
        pthread_attr_destroy(&at);
    }
    return NULL;
}

static int srv_start_tcp(struct srv *s)
{
    memset(s, 0, sizeof(*s));
    s->lfd = tu_loopback_socket(&s->port, 64);
    if (s->lfd < 0)
        return -1;
    return pthread_create(&s->th, NULL, accept_thread, s) == 0 ? 0 : -1;
}

static int srv_start_unix(struct srv *s, const char *path)
{
    memset(s, 0, sizeof(*s));
    snprintf(s->path, sizeof(s->path), "%s", path);
    unlink(path);
    s->lfd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
    if (bind(s->lfd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(s->lfd, 64) < 0)
        return -1;
    return pthread_create(&s->th, NULL, accept_thread, s) == 0 ? 0 : -1;
}

/* Stops accepting and waits for every connection thread (clients closed first). */
static void srv_stop(struct srv *s)
{
    shutdown(s->lfd, SHUT_RDWR);
    pthread_join(s->th, NULL);
    close(s->lfd);
    for (int i = 0; i < 500 && atomic_load(&s->live) > 0; i++)
        sleep_ms(10);
    CHECK_EQ_INT(atomic_load(&s->live), 0);
    if (s->path[0])
        unlink(s->path);
}

/* ---- the client side ---- */

static uv_loop_t g_loop;

struct ex {
    struct upstream *u;
    int done;
    int heads, ends, errors, bodies;
    int status, err_status;
    char why[96];
    char hdrs[4096];
    char trls[1024]; /* trailers as "name: value\n"; ends counts after them */
    int trls_before_end;
    uint64_t body_len, hash;
    char text[8192];
    size_t text_len;
    uint64_t written;
    int written_cbs, body_writes; /* on_body_written calls; upstream_write_body calls */
    int after_done;               /* callbacks after end, error or abort: must stay 0 */
    uv_timer_t watchdog;
    /* upload driver */
    uint64_t up_total, up_sent;
    int up_ended, up_rc;
    /* pause test */
    int pause_in_body, pause_in_head, paused;
    uint64_t paused_bytes;
    uv_timer_t ptimer;
    long long last_sent;
    int stalls, ticks;
    struct srv *psrv;
    uint64_t sent_at_stall;
    /* abort test */
    int abort_at_body, abort_in_head;
    /* start another exchange from on_end */
    struct ex *chain;
    const struct net_url *chain_url;
    const char *chain_path;
};

static void ex_finish(struct ex *e)
{
    e->done = 1;
    uv_timer_stop(&e->watchdog);
}

static void ex_pump(struct ex *e);

static void ex_on_head(void *arg, int status, const struct upstream_header *h, size_t n)
{
    struct ex *e = arg;
    if (e->done) {
        e->after_done++;
        return;
    }
    e->heads++;
    e->status = status;
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        int k = snprintf(e->hdrs + off, sizeof(e->hdrs) - off, "%.*s: %.*s\n", (int)h[i].name_len,
                         h[i].name, (int)h[i].value_len, h[i].value);
        if (k < 0 || (size_t)k >= sizeof(e->hdrs) - off)
            break;
        off += (size_t)k;
    }
    if (e->abort_in_head) {
        upstream_abort(e->u);
        ex_finish(e);
    } else if (e->pause_in_head) {
        upstream_pause_reading(e->u, 1);
        e->paused = 1;
    }
}

static void ex_on_body(void *arg, const uint8_t *d, size_t len)
{
    struct ex *e = arg;
    if (e->done) {
        e->after_done++;
        return;
    }
    e->bodies++;
    if (e->paused)
        e->paused_bytes += len;
    e->hash = fnv(e->hash, d, len);
    e->body_len += len;
    size_t k = sizeof(e->text) - 1 - e->text_len;
    if (k > len)
        k = len;
    memcpy(e->text + e->text_len, d, k);
    e->text_len += k;
    e->text[e->text_len] = '\0';
    if (e->abort_at_body && e->bodies == e->abort_at_body) {
        upstream_abort(e->u);
        ex_finish(e);
    } else if (e->pause_in_body && e->bodies == 1) {
        upstream_pause_reading(e->u, 1);
        e->paused = 1;
    }
}

static struct upstream_cbs g_cbs;

static void ex_on_trailers(void *arg, const struct upstream_header *h, size_t n)
{
    struct ex *e = arg;
    size_t off = strlen(e->trls);

    for (size_t i = 0; i < n; i++) {
        int k = snprintf(e->trls + off, sizeof(e->trls) - off, "%.*s: %.*s\n", (int)h[i].name_len,
                         h[i].name, (int)h[i].value_len, h[i].value);
        if (k < 0 || (size_t)k >= sizeof(e->trls) - off)
            break;
        off += (size_t)k;
    }
    e->trls_before_end = e->ends == 0;
}

static void ex_on_end(void *arg)
{
    struct ex *e = arg;
    if (e->done) {
        e->after_done++;
        return;
    }
    e->ends++;
    ex_finish(e);
    if (e->chain) {
        struct ex *c = e->chain;
        int rc = upstream_start(&g_loop, e->chain_url, NULL, "GET", e->chain_path, NULL, 0, 0, -1,
                                &g_cbs, c, &c->u);
        CHECK_EQ_INT(rc, 0);
    }
}

static void ex_on_error(void *arg, int status, const char *why)
{
    struct ex *e = arg;
    if (e->done) {
        e->after_done++;
        return;
    }
    e->errors++;
    e->err_status = status;
    snprintf(e->why, sizeof(e->why), "%s", why);
    ex_finish(e);
}

static void ex_on_written(void *arg, size_t len)
{
    struct ex *e = arg;
    if (e->done) {
        e->after_done++;
        return;
    }
    e->written += len;
    e->written_cbs++;
    ex_pump(e);
}

/* Sends the upload like a flow-controlled tunnel: at most 256 KiB not yet
 * confirmed by on_body_written, in pieces of varying size. */
static void ex_pump(struct ex *e)
{
    static uint8_t b[65536 + 17];
    while (!e->done && e->up_sent < e->up_total && e->up_sent - e->written < 256 * 1024) {
        size_t k = 1 + (size_t)((e->up_sent * 7919 + 13) % sizeof(b));
        if (k > e->up_total - e->up_sent)
            k = (size_t)(e->up_total - e->up_sent);
        fill_pat(b, e->up_sent, k);
        int rc = upstream_write_body(e->u, b, k);
        if (rc < 0) {
            e->up_rc = rc;
            return;
        }
        e->body_writes++;
        e->up_sent += k;
    }
    if (!e->done && !e->up_ended && e->up_sent == e->up_total) {
        e->up_ended = 1;
        e->up_rc = upstream_end_body(e->u);
    }
}

static void watchdog_cb(uv_timer_t *t)
{
    struct ex *e = t->data;
    fprintf(stderr, "watchdog: exchange stuck\n");
    CHECK(!"exchange finished in time");
    if (!e->done) {
        upstream_abort(e->u);
        ex_finish(e);
    }
}

static void ex_init(struct ex *e)
{
    memset(e, 0, sizeof(*e));
    e->hash = FNV0;
    uv_timer_init(&g_loop, &e->watchdog);
    e->watchdog.data = e;
    uv_timer_start(&e->watchdog, watchdog_cb, 60000, 0);
    uv_timer_init(&g_loop, &e->ptimer);
    e->ptimer.data = e;
}

static void ex_close(struct ex *e)
{
    uv_close((uv_handle_t *)&e->watchdog, NULL);
    uv_close((uv_handle_t *)&e->ptimer, NULL);
    uv_run(&g_loop, UV_RUN_DEFAULT);
}

static int ex_start(struct ex *e, const struct net_url *url, const struct upstream_opts *o,
                    const char *method, const char *path, const struct upstream_header *h, size_t n,
                    int has_body, int64_t cl)
{
    return upstream_start(&g_loop, url, o, method, path, h, n, has_body, cl, &g_cbs, e, &e->u);
}

/* Runs one exchange to its end; returns the status (or the error status). */
static int run(struct ex *e, const struct net_url *url, const struct upstream_opts *o,
               const char *method, const char *path, const struct upstream_header *h, size_t n,
               int has_body, int64_t cl)
{
    int rc = ex_start(e, url, o, method, path, h, n, has_body, cl);
    CHECK_EQ_INT(rc, 0);
    if (rc < 0)
        return rc;
    if (has_body)
        ex_pump(e);
    uv_run(&g_loop, UV_RUN_DEFAULT);
    CHECK(e->done);
    CHECK_EQ_INT(e->after_done, 0);
    CHECK_EQ_INT(e->ends + e->errors, 1);
    return e->errors ? e->err_status : e->status;
}

static void spin_cb(uv_timer_t *t)
{
    uv_close((uv_handle_t *)t, NULL);
}

/* Runs the loop for ms: pooled connections alone do not keep it alive. */
static void spin(uint64_t ms)
{
    uv_timer_t t;
    uv_timer_init(&g_loop, &t);
    uv_timer_start(&t, spin_cb, ms, 0);
    uv_run(&g_loop, UV_RUN_DEFAULT);
}

static void url_tcp(struct net_url *u, const char *host, int port, const char *base)
{
    memset(u, 0, sizeof(*u));
    u->kind = NET_URL_HTTP;
    snprintf(u->host, sizeof(u->host), "%s", host);
    u->port = port;
    snprintf(u->path, sizeof(u->path), "%s", base);
}

static void url_unix(struct net_url *u, const char *path)
{
    memset(u, 0, sizeof(*u));
    u->kind = NET_URL_UNIX;
    snprintf(u->path, sizeof(u->path), "%s", path);
}

/* ---- tests ---- */

static void test_bad_args(const struct net_url *url)
{
    struct ex e;
    ex_init(&e);
    struct net_url https = *url;
    https.kind = NET_URL_HTTPS;
    /* https:// needs a TLS context (tests/integration/test_https_service.py). */
    CHECK_EQ_INT(ex_start(&e, &https, NULL, "GET", "/", NULL, 0, 0, -1), -EINVAL);
    https.kind = NET_URL_TCP;
    CHECK_EQ_INT(ex_start(&e, &https, NULL, "GET", "/", NULL, 0, 0, -1), -ENOTSUP);
    CHECK_EQ_INT(ex_start(&e, url, NULL, "GE T", "/", NULL, 0, 0, -1), -EINVAL);
    CHECK_EQ_INT(ex_start(&e, url, NULL, "GET", "/a b", NULL, 0, 0, -1), -EINVAL);
    CHECK_EQ_INT(ex_start(&e, url, NULL, "GET", "/", NULL, 0, 0, 5), -EINVAL);
    struct upstream_header inj = {"x-a", 3, "1\r\nX-Evil: 1", 13};
    CHECK_EQ_INT(ex_start(&e, url, NULL, "GET", "/", &inj, 1, 0, -1), -EINVAL);
    struct upstream_header badname = {"x a", 3, "1", 1};
    CHECK_EQ_INT(ex_start(&e, url, NULL, "GET", "/", &badname, 1, 0, -1), -EINVAL);
    ex_finish(&e);
    uv_run(&g_loop, UV_RUN_DEFAULT);
    CHECK_EQ_INT(e.heads + e.ends + e.errors, 0);
    ex_close(&e);
}

static void test_download(const struct net_url *url, const char *path, uint64_t n)
{
    struct ex e;
    ex_init(&e);
    CHECK_EQ_INT(run(&e, url, NULL, "GET", path, NULL, 0, 0, -1), 200);
    CHECK_EQ_INT(e.body_len, n);
    CHECK(e.hash == pat_hash(n));
    ex_close(&e);
}

static void test_upload(const struct net_url *url, uint64_t n, int chunked)
{
    struct ex e;
    ex_init(&e);
    e.up_total = n;
    CHECK_EQ_INT(run(&e, url, NULL, "POST", "/echo", NULL, 0, 1, chunked ? -1 : (int64_t)n), 200);
    CHECK_EQ_INT(e.up_rc, 0);
    CHECK_EQ_INT(e.written, n);
    /* Pieces handed over while a write was in flight leave together: fewer
     * writes (each confirmed once) than pieces. */
    CHECK(e.written_cbs > 0 && e.written_cbs < e.body_writes);
    char want[128];
    snprintf(want, sizeof(want), "len=%" PRIu64 " hash=%016" PRIx64, n, pat_hash(n));
    CHECK_EQ_STR(e.text, want);
    ex_close(&e);
}

static void test_continue(const struct net_url *url)
{
    struct ex e;
    ex_init(&e);
    e.up_total = 100000;
    struct upstream_header h = {"expect", 6, "100-continue", 12};
    CHECK_EQ_INT(run(&e, url, NULL, "POST", "/continue", &h, 1, 1, 100000), 200);
    CHECK_EQ_INT(e.heads, 1);
    CHECK(strstr(e.hdrs, "link") == NULL); /* the 103's header is not the response's */
    char want[128];
    snprintf(want, sizeof(want), "len=100000 hash=%016" PRIx64, pat_hash(100000));
    CHECK_EQ_STR(e.text, want);
    ex_close(&e);
}

static void test_errors(const struct net_url *url, int free_port)
{
    struct ex e;
    struct upstream_opts fast = {.connect_timeout_ms = 2000, .response_timeout_ms = 300};

    ex_init(&e);
    CHECK_EQ_INT(run(&e, url, NULL, "GET", "/close", NULL, 0, 0, -1), 502);
    CHECK(strstr(e.why, "closed") != NULL);
    ex_close(&e);

    ex_init(&e);
    uint64_t t0 = uv_now(&g_loop);
    CHECK_EQ_INT(run(&e, url, &fast, "GET", "/hang", NULL, 0, 0, -1), 504);
    CHECK_EQ_STR(e.why, "response timeout");
    CHECK(uv_now(&g_loop) - t0 >= 250);
    ex_close(&e);

    ex_init(&e);
    CHECK_EQ_INT(run(&e, url, NULL, "GET", "/malformed", NULL, 0, 0, -1), 502);
    CHECK_EQ_STR(e.why, "malformed response");
    ex_close(&e);

    ex_init(&e);
    CHECK_EQ_INT(run(&e, url, NULL, "GET", "/manyhdrs", NULL, 0, 0, -1), 502);
    CHECK_EQ_STR(e.why, "response headers too large");
    CHECK_EQ_INT(e.heads, 0);
    ex_close(&e);

    ex_init(&e);
    CHECK_EQ_INT(run(&e, url, NULL, "GET", "/hugehdr", NULL, 0, 0, -1), 502);
    CHECK_EQ_STR(e.why, "response headers too large");
    ex_close(&e);

    struct net_url refused;
    url_tcp(&refused, "127.0.0.1", free_port, "");
    ex_init(&e);
    CHECK_EQ_INT(run(&e, &refused, NULL, "GET", "/", NULL, 0, 0, -1), 502);
    CHECK_EQ_STR(e.why, "connection refused");
    ex_close(&e);

    struct net_url nosock;
    url_unix(&nosock, "/tmp/tether-upstream-test-missing.sock");
    ex_init(&e);
    CHECK_EQ_INT(run(&e, &nosock, NULL, "GET", "/", NULL, 0, 0, -1), 502);
    ex_close(&e);

    /* A Content-Length body may not grow past what was announced. */
    ex_init(&e);
    CHECK_EQ_INT(ex_start(&e, url, NULL, "PUT", "/echo", NULL, 0, 1, 3), 0);
    CHECK_EQ_INT(upstream_write_body(e.u, (const uint8_t *)"abcd", 4), -EMSGSIZE);
    CHECK_EQ_INT(upstream_write_body(e.u, (const uint8_t *)"abc", 3), 0);
    CHECK_EQ_INT(upstream_end_body(e.u), 0);
    e.up_ended = 1; /* no pumping from on_body_written */
    uv_run(&g_loop, UV_RUN_DEFAULT);
    CHECK_EQ_INT(e.written, 3);
    CHECK(strstr(e.text, "len=3 ") != NULL);
    ex_close(&e);
}

/* A listener whose accept queue is full drops SYNs: the connect hangs. */
static void test_connect_timeout(void)
{
    int port = 0, lfd = tu_loopback_socket(&port, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
                            .sin_port = htons((uint16_t)port)};
    int fill[8], nfill = 0, hung = 0;
    while (nfill < 8 && !hung) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        fill[nfill++] = fd;
        connect(fd, (struct sockaddr *)&a, sizeof(a));
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        hung = poll(&p, 1, 100) == 0;
    }
    if (!hung) {
        fprintf(stderr, "note: kernel never dropped a SYN; connect timeout not checked\n");
    } else {
        struct net_url url;
        url_tcp(&url, "127.0.0.1", ntohs(a.sin_port), "");
        struct upstream_opts o = {.connect_timeout_ms = 300};
        struct ex e;
        ex_init(&e);
        uint64_t t0 = uv_now(&g_loop);
        CHECK_EQ_INT(run(&e, &url, &o, "GET", "/", NULL, 0, 0, -1), 504);
        CHECK_EQ_STR(e.why, "connect timeout");
        CHECK(uv_now(&g_loop) - t0 >= 250);
        ex_close(&e);
    }
    for (int i = 0; i < nfill; i++)
        close(fill[i]);
    close(lfd);
}

static void test_headers(int port)
{
    struct net_url url;
    url_tcp(&url, "127.0.0.1", port, "/base");
    struct ex e;
    ex_init(&e);
    CHECK_EQ_INT(run(&e, &url, NULL, "GET", "/hop", NULL, 0, 0, -1), 200);
    CHECK_EQ_STR(e.text, "hello");
    CHECK(strstr(e.hdrs, "x-keep: Yes\n") != NULL);
    CHECK(strstr(e.hdrs, "x-empty: \n") != NULL);
    CHECK(strstr(e.hdrs, "x-last: z\n") != NULL);
    CHECK(strstr(e.hdrs, "x-private") == NULL);
    CHECK(strstr(e.hdrs, "connection") == NULL);
    CHECK(strstr(e.hdrs, "keep-alive") == NULL);
    CHECK(strstr(e.hdrs, "proxy-") == NULL);
    CHECK(strstr(e.hdrs, "upgrade") == NULL);
    CHECK(strstr(e.hdrs, "transfer-encoding") == NULL);
    CHECK(strstr(e.hdrs, "trailer") == NULL);
    /* Chunked trailers come before the end, lower-case, trimmed, without
     * hop-by-hop fields or the ones their own Connection names. */
    CHECK_EQ_STR(e.trls, "x-trailer: t\n");
    CHECK(e.trls_before_end);
    ex_close(&e);

    struct upstream_header h[] = {
        {":authority", 10, "x", 1}, {"user-agent", 10, "t/1", 3}, {"connection", 10, "x-drop", 6},
        {"x-drop", 6, "1", 1},      {"host", 4, "evil", 4},       {"cookie", 6, "a=1", 3},
        {"te", 2, "trailers", 8},   {"cookie", 6, "b=2", 3},      {"content-length", 14, "99", 2},
        {"x-fine", 6, "ok ok", 5},
    };
    ex_init(&e);
    CHECK_EQ_INT(run(&e, &url, NULL, "GET", "/reqhdrs?q=1", h, sizeof(h) / sizeof(h[0]), 0, -1),
                 200);
    char want[64];
    snprintf(want, sizeof(want), "Host: 127.0.0.1:%d\r\n", port);
    CHECK(strncmp(e.text, "GET /base/reqhdrs?q=1 HTTP/1.1\r\n", 32) == 0);
    CHECK(strstr(e.text, want) != NULL);
    CHECK(strstr(e.text, "user-agent: t/1\r\n") != NULL);
    CHECK(strstr(e.text, "x-fine: ok ok\r\n") != NULL);
    CHECK(strstr(e.text, "Cookie: a=1; b=2\r\n") != NULL);
    CHECK(strstr(e.text, "x-drop") == NULL);
    CHECK(strstr(e.text, "evil") == NULL);
    CHECK(strstr(e.text, "trailers") == NULL);
    CHECK(strstr(e.text, "authority") == NULL);
    CHECK(strcasestr(e.text, "content-length") == NULL);
    CHECK(strcasestr(e.text, "transfer-encoding") == NULL);
    ex_close(&e);
}

static void test_keepalive(void)
{
    struct srv s;
    CHECK_EQ_INT(srv_start_tcp(&s), 0);
    struct net_url url;
    url_tcp(&url, "127.0.0.1", s.port, "");
    struct ex e;

    ex_init(&e);
    CHECK_EQ_INT(run(&e, &url, NULL, "GET", "/cl?n=1000", NULL, 0, 0, -1), 200);
    CHECK_EQ_INT(e.body_len, 1000);
    ex_close(&e);

    ex_init(&e);
    e.up_total = 5000;
    CHECK_EQ_INT(run(&e, &url, NULL, "POST", "/echo", NULL, 0, 1, 5000), 200);
    CHECK(strstr(e.text, "len=5000 ") != NULL);
    ex_close(&e);

    ex_init(&e);
    CHECK_EQ_INT(run(&e, &url, NULL, "HEAD", "/cl?n=100", NULL, 0, 0, -1), 200);
    CHECK_EQ_INT(e.body_len, 0);
    CHECK(strstr(e.hdrs, "content-length: 100\n") != NULL);
    ex_close(&e);

    ex_init(&e);
    CHECK_EQ_INT(run(&e, &url, NULL, "GET", "/204", NULL, 0, 0, -1), 204);
    CHECK_EQ_INT(e.body_len, 0);
    CHECK(strstr(e.hdrs, "x-a: 1\n") != NULL);
    ex_close(&e);

    ex_init(&e);
    CHECK_EQ_INT(run(&e, &url, NULL, "GET", "/big?n=300000", NULL, 0, 0, -1), 200);
    CHECK(e.hash == pat_hash(300000));
    ex_close(&e);
    CHECK_EQ_INT(atomic_load(&s.accepted), 1);

    /* A body that ends at EOF leaves no connection to reuse. */
    ex_init(&e);
    CHECK_EQ_INT(run(&e, &url, NULL, "GET", "/eof?n=1048576", NULL, 0, 0, -1), 200);
    CHECK_EQ_INT(e.body_len, 1048576);
    CHECK(e.hash == pat_hash(1048576));
    ex_close(&e);
    ex_init(&e);
    CHECK_EQ_INT(run(&e, &url, NULL, "GET", "/cl?n=10", NULL, 0, 0, -1), 200);
    ex_close(&e);
    CHECK_EQ_INT(atomic_load(&s.accepted), 2);

    /* The service closes a kept-alive connection just as the next request
     * takes it: that GET is replayed on a fresh connection. */
    struct ex second;
    ex_init(&e);
    ex_init(&second);
    e.chain = &second;
    e.chain_url = &url;
    e.chain_path = "/cl?n=100";
    CHECK_EQ_INT(run(&e, &url, NULL, "GET", "/closeafter", NULL, 0, 0, -1), 200);
    CHECK_EQ_STR(e.text, "ok");
    CHECK(second.done);
    CHECK_EQ_INT(second.ends, 1);
    CHECK_EQ_INT(second.errors, 0);
    CHECK_EQ_INT(second.status, 200);
    CHECK_EQ_INT(second.body_len, 100);
    ex_close(&e);
    ex_close(&second);
    CHECK_EQ_INT(atomic_load(&s.accepted), 3);

    /* A pooled connection the service closes while idle leaves the pool: a
     * POST, which is never replayed, must get a fresh connection. */
    ex_init(&e);
    CHECK_EQ_INT(run(&e, &url, NULL, "GET", "/closeafter", NULL, 0, 0, -1), 200);
    ex_close(&e);
    spin(100);
    ex_init(&e);
    e.up_total = 10;
    CHECK_EQ_INT(run(&e, &url, NULL, "POST", "/echo", NULL, 0, 1, -1), 200);
    CHECK(strstr(e.text, "len=10 ") != NULL);
    ex_close(&e);
    CHECK_EQ_INT(atomic_load(&s.accepted), 4);

    upstream_close_idle(&g_loop);
    uv_run(&g_loop, UV_RUN_DEFAULT);
    srv_stop(&s);
}

static void pause_tick(uv_timer_t *t)
{
    struct ex *e = t->data;
    long long s = atomic_load(&e->psrv->sent);
    e->ticks++;
    e->stalls = s == e->last_sent ? e->stalls + 1 : 0;
    e->last_sent = s;
    if (e->stalls < 2 && e->ticks < 50)
        return;
    uv_timer_stop(t);
    e->sent_at_stall = (uint64_t)s;
    CHECK(e->stalls >= 2);
    e->paused = 0;
    upstream_pause_reading(e->u, 0);
}

static void test_pause(const struct net_url *url, struct srv *s, int in_head)
{
    const uint64_t n = in_head ? 1000 : 24 * MIB;
    char path[64];
    /* Chunked, so one read holds several chunks: pausing must stop the rest of the buffer too. */
    snprintf(path, sizeof(path), "%s?n=%" PRIu64, in_head ? "/cl" : "/big", n);
    struct ex e;
    ex_init(&e);
    e.psrv = s;
    e.pause_in_body = !in_head;
    e.pause_in_head = in_head;
    atomic_store(&s->sent, 0);
    CHECK_EQ_INT(ex_start(&e, url, NULL, "GET", path, NULL, 0, 0, -1), 0);
    int polling = 0;
    while (!e.done) {
        /* Once paused, watch the server's progress until it stalls, then resume. */
        if (e.paused && !polling) {
            polling = 1;
            uv_timer_start(&e.ptimer, pause_tick, 100, 100);
        }
        uv_run(&g_loop, UV_RUN_ONCE);
    }
    CHECK(polling);
    CHECK_EQ_INT(e.ends, 1);
    CHECK_EQ_INT(e.paused_bytes, 0);
    if (!in_head) {
        /* The service was held back by the socket buffers, not done. */
        CHECK(e.sent_at_stall > 0 && e.sent_at_stall < n);
    }
    CHECK_EQ_INT(e.body_len, n);
    CHECK(e.hash == pat_hash(n));
    ex_close(&e);
}

static void test_abort(const struct net_url *url)
{
    struct ex e;

    ex_init(&e);
    e.abort_at_body = 3;
    CHECK_EQ_INT(ex_start(&e, url, NULL, "GET", "/big?n=8388608", NULL, 0, 0, -1), 0);
    uv_run(&g_loop, UV_RUN_DEFAULT);
    CHECK_EQ_INT(e.bodies, 3);
    CHECK_EQ_INT(e.ends + e.errors, 0);
    CHECK_EQ_INT(e.after_done, 0);
    ex_close(&e);

    ex_init(&e);
    e.abort_in_head = 1;
    CHECK_EQ_INT(ex_start(&e, url, NULL, "GET", "/cl?n=5000", NULL, 0, 0, -1), 0);
    uv_run(&g_loop, UV_RUN_DEFAULT);
    CHECK_EQ_INT(e.heads, 1);
    CHECK_EQ_INT(e.bodies + e.ends + e.errors + e.after_done, 0);
    ex_close(&e);

    /* Aborted right after start, with a body write in flight. */
    ex_init(&e);
    CHECK_EQ_INT(ex_start(&e, url, NULL, "POST", "/echo", NULL, 0, 1, -1), 0);
    CHECK_EQ_INT(upstream_write_body(e.u, (const uint8_t *)"xyz", 3), 0);
    upstream_abort(e.u);
    ex_finish(&e);
    uv_run(&g_loop, UV_RUN_DEFAULT);
    CHECK_EQ_INT(e.heads + e.bodies + e.ends + e.errors + e.after_done, 0);
    CHECK_EQ_INT(e.written, 0);
    ex_close(&e);
}

static void test_dns(int port)
{
    struct net_url url;
    url_tcp(&url, "localhost", port, "");
    struct ex e;
    ex_init(&e);
    CHECK_EQ_INT(run(&e, &url, NULL, "GET", "/cl?n=777", NULL, 0, 0, -1), 200);
    CHECK_EQ_INT(e.body_len, 777);
    ex_close(&e);

    /* Aborted while the resolver still runs: its callback must stay silent. */
    upstream_close_idle(&g_loop);
    uv_run(&g_loop, UV_RUN_DEFAULT);
    ex_init(&e);
    CHECK_EQ_INT(ex_start(&e, &url, NULL, "GET", "/cl?n=1", NULL, 0, 0, -1), 0);
    upstream_abort(e.u);
    ex_finish(&e);
    uv_run(&g_loop, UV_RUN_DEFAULT);
    CHECK_EQ_INT(e.heads + e.ends + e.errors + e.after_done, 0);
    ex_close(&e);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    CHECK_EQ_INT(uv_loop_init(&g_loop), 0);
    g_cbs.on_head = ex_on_head;
    g_cbs.on_body = ex_on_body;
    g_cbs.on_end = ex_on_end;
    g_cbs.on_error = ex_on_error;
    g_cbs.on_body_written = ex_on_written;
    g_cbs.on_trailers = ex_on_trailers;

    struct srv tcp, unx;
    CHECK_EQ_INT(srv_start_tcp(&tcp), 0);
    char upath[108];
    snprintf(upath, sizeof(upath), "/tmp/tether-upstream-test-%d.sock", (int)getpid());
    CHECK_EQ_INT(srv_start_unix(&unx, upath), 0);

    int free_port = 0;
    close(tu_loopback_socket(&free_port, -1));

    struct net_url ut, uu;
    url_tcp(&ut, "127.0.0.1", tcp.port, "");
    url_unix(&uu, upath);

    test_bad_args(&ut);
    test_download(&ut, "/big?n=8388608", 8 * MIB);
    test_download(&ut, "/cl?n=8388608", 8 * MIB);
    test_download(&uu, "/big?n=8388608", 8 * MIB);
    test_download(&uu, "/cl?n=3000001", 3000001);
    test_upload(&ut, 8 * MIB, 1);
    test_upload(&ut, 8 * MIB, 0);
    test_upload(&uu, 8 * MIB, 0);
    test_upload(&uu, 1234567, 1);
    test_continue(&ut);
    test_headers(tcp.port);
    test_errors(&ut, free_port);
    test_connect_timeout();
    test_keepalive();
    test_pause(&ut, &tcp, 0);
    test_pause(&uu, &unx, 1);
    test_abort(&ut);
    test_abort(&uu);
    test_dns(tcp.port);

    upstream_close_idle(&g_loop);
    uv_run(&g_loop, UV_RUN_DEFAULT);
    srv_stop(&tcp);
    srv_stop(&unx);
    CHECK_EQ_INT(uv_loop_close(&g_loop), 0);
    TEST_DONE();
}
