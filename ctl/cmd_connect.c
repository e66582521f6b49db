/* tetherctl connect: a site's tcp:// service as a local listener or on stdin/stdout, each local
 * connection one HTTP/2 CONNECT stream on one pinned TLS connection to the hub. */
/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <unistd.h>

#include <jansson.h>
#include <uv.h>

#include "cmd.h"
#include "common/conn.h"
#include "common/h2.h"
#include "common/net.h"
#include "common/tls.h"

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

/* Local bytes held for the hub before the local side is paused. */
#define LOCAL_HIGH (256 << 10)
#define LOCAL_LOW  (64 << 10)
#define READ_MAX   (64 << 10)
#define ERR_MAX    4096 /* bytes of an error answer kept for the message */

/* The stream window is what the hub may send ahead of the local reader: at
 * 1 MiB one TCP stream stalled on scheduling delays (601 MB/s against ssh -R's
 * 792 in the same bench run); at 4 MiB it kept up (727 against 768). Only
 * this client's memory pays for it, within the 32 MiB connection window. */
static const struct h2_limits ctl_h2_limits = {
    .max_streams = 100, /* the hub opens none (no push) */
    .stream_window = 4 << 20,
    .conn_window = 32 << 20,
};

struct cstream;

/* One run: the hub connection and the local streams. */
struct session {
    uv_loop_t *loop;
    struct ctl *c;
    const char *site, *service;
    char path[200];
    int stdio;
    struct conn_ctx cx;
    WOLFSSL_CTX *ctx;
    struct tls_pin_verifier v;
    struct conn *conn; /* NULL while not connected */
    int ready;         /* TLS up, h2 session made, the hub's SETTINGS heard */
    int was_ready;     /* ready once: the pin and the address are right */
    int dialing;
    struct h2 h2;
    uv_getaddrinfo_t gai;
    uv_connect_t creq;
    uv_tcp_t listener;
    int listening;
    uv_signal_t sigint, sigterm;
    LIST_HEAD(, cstream) streams;
    int exit_code;
    int stopping;
};

/* A local connection (or stdin/stdout) and its CONNECT stream. */
struct cstream {
    struct session *s;
    LIST_ENTRY(cstream) link;
    int32_t sid;         /* 0 until opened */
    uv_stream_t *in;     /* local bytes come from here */
    uv_stream_t *out;    /* and hub bytes go there (same handle for TCP) */
    uv_tcp_t tcp;        /* --listen */
    uv_pipe_t pin, pout; /* --stdio (or tty) */
    uv_tty_t tin, tout;
    int handles;   /* open local handles; freed at 0 */
    struct buf up; /* local -> hub, waiting for the stream's window */
    int up_eof;    /* local EOF seen */
    int deferred;
    int paused;
    int status;     /* the hub's answer; 0 before */
    struct buf err; /* body of an error answer */
    int remote_ended;
    int closed; /* the stream is gone */
    int local_closing;
    uv_shutdown_t sreq;
    int shut_pending; /* the local side's shutdown is under way */
    char readbuf[READ_MAX];
};

struct cwrite {
    uv_write_t req;
    struct cstream *cs;
    size_t len;
    uint8_t data[];
};

static void session_stop(struct session *s);
static void dial(struct session *s);

/* --- local side --- */

static void local_closed(uv_handle_t *h)
{
    struct cstream *cs = h->data;
    if (--cs->handles > 0)
        return;
    buf_free(&cs->up);
    buf_free(&cs->err);
    free(cs);
}

static void close_handle(struct cstream *cs, uv_stream_t *h)
{
    if (h != NULL && !uv_is_closing((uv_handle_t *)h))
        uv_close((uv_handle_t *)h, local_closed);
}

/* The local side goes; the stream, if open, is cancelled by the caller. */
static void local_close(struct cstream *cs)
{
    struct session *s = cs->s;

    if (cs->local_closing)
        return;
    cs->local_closing = 1;
    LIST_REMOVE(cs, link);
    if (cs->sid > 0 && s->h2.s != NULL) {
        nghttp2_session_set_stream_user_data(s->h2.s, cs->sid, NULL);
        if (!cs->closed) /* the local side went first: the stream goes too */
            nghttp2_submit_rst_stream(s->h2.s, NGHTTP2_FLAG_NONE, cs->sid, NGHTTP2_CANCEL);
        h2_send(&s->h2);
    }
    close_handle(cs, cs->in);
    if (cs->out != cs->in)
        close_handle(cs, cs->out);
    if (s->stdio)
        session_stop(s);
}

static void pause_local(struct cstream *cs, int pause)
{
    if (cs->paused == pause || cs->up_eof || cs->local_closing)
        return;
    cs->paused = pause;
    if (pause)
        uv_read_stop(cs->in);
}

static void alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *out)
{
    struct cstream *cs = h->data;
    *out = uv_buf_init(cs->readbuf, sizeof(cs->readbuf));
}

static void kick(struct cstream *cs)
{
    struct session *s = cs->s;
    if (cs->sid > 0 && cs->deferred && s->h2.s != NULL) {
        cs->deferred = 0;
        nghttp2_session_resume_data(s->h2.s, cs->sid);
    }
    if (s->h2.s != NULL)
        h2_send(&s->h2);
}

static void local_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b)
{
    struct cstream *cs = st->data;

    if (n > 0) {
        if (buf_append(&cs->up, b->base, (size_t)n) != 0) {
            fprintf(stderr, "tetherctl: out of memory\n");
            local_close(cs);
            return;
        }
        if (cs->up.len >= LOCAL_HIGH)
            pause_local(cs, 1);
        kick(cs);
        return;
    }
    if (n < 0) {
        /* EOF (or a read error, taken as the end): END_STREAM after what is queued. */
        uv_read_stop(st);
        cs->up_eof = 1;
        kick(cs);
    }
}

static void resume_local(struct cstream *cs)
{
    if (cs->local_closing || cs->up_eof || cs->sid <= 0 || cs->status != 200)
        return;
    if (cs->paused && cs->up.len >= LOCAL_LOW)
        return;
    cs->paused = 0;
    uv_read_start(cs->in, alloc_cb, local_read);
}

static void write_cb(uv_write_t *req, int status)
{
    struct cwrite *w = container_of(req, struct cwrite, req);
    struct cstream *cs = w->cs;
    struct session *s = cs->s;

    /* The local side took the bytes: only now may the hub send more. */
    if (status == 0 && !cs->local_closing && cs->sid > 0 && s->h2.s != NULL) {
        nghttp2_session_consume_stream(s->h2.s, cs->sid, w->len);
        h2_send(&s->h2);
    }
    free(w);
}

/* The stream is over (both ways or reset): the local side closes once
 * what is queued for it was written (the shutdown completed). */
static void maybe_finish(struct cstream *cs)
{
    if (cs->closed && !cs->shut_pending && !cs->local_closing)
        local_close(cs);
}

static void shutdown_cb(uv_shutdown_t *req, int status)
{
    struct cstream *cs = req->data;

    (void)status;
    cs->shut_pending = 0;
    if (!cs->local_closing)
        maybe_finish(cs);
}

/* --- the hub's HTTP/2 session --- */

static int on_header(nghttp2_session *ss, const nghttp2_frame *f, const uint8_t *name, size_t nl,
                     const uint8_t *value, size_t vl, uint8_t flags, void *ud)
{
    struct cstream *cs = nghttp2_session_get_stream_user_data(ss, f->hd.stream_id);

    if (cs != NULL && f->hd.type == NGHTTP2_HEADERS && nl == 7 && memcmp(name, ":status", 7) == 0)
        cs->status =
            vl == 3 ? (value[0] - '0') * 100 + (value[1] - '0') * 10 + (value[2] - '0') : 999;
    return 0;
}

/* "tetherctl: clinic-a/db: DETAIL (HTTP 502)", and the exit code of it. */
static int report_refusal(struct cstream *cs)
{
    struct session *s = cs->s;
    json_t *j = json_loadb((const char *)buf_head(&cs->err), cs->err.len, 0, NULL);
    const char *detail = j != NULL ? ctl_jstr(j, "detail") : NULL;

    fprintf(stderr, "tetherctl: %s/%s: %s (HTTP %d)\n", s->site, s->service,
            detail != NULL && detail[0] != '\0' ? detail : "the hub refused the connection",
            cs->status);
    json_decref(j);
    return cs->status == 404                        ? CTL_EXIT_NOT_FOUND
           : cs->status == 401 || cs->status == 403 ? CTL_EXIT_DENIED
                                                    : CTL_EXIT_FAIL;
}

static void open_stream(struct cstream *cs);

static int on_frame_recv(nghttp2_session *ss, const nghttp2_frame *f, void *ud)
{
    struct session *s = ud;
    struct cstream *cs;

    if (f->hd.type == NGHTTP2_SETTINGS && !(f->hd.flags & NGHTTP2_FLAG_ACK) && !s->ready) {
        /* The hub said it takes extended CONNECT (RFC 8441 3): streams go now. */
        s->ready = s->was_ready = 1;
        LIST_FOREACH(cs, &s->streams, link)
        if (cs->sid == 0)
            open_stream(cs);
        return 0;
    }
    cs = nghttp2_session_get_stream_user_data(ss, f->hd.stream_id);
    if (cs == NULL)
        return 0;
    if (f->hd.type == NGHTTP2_HEADERS && cs->status == 200)
        resume_local(cs);
    if ((f->hd.type == NGHTTP2_HEADERS || f->hd.type == NGHTTP2_DATA) &&
        (f->hd.flags & NGHTTP2_FLAG_END_STREAM) && !cs->remote_ended) {
        cs->remote_ended = 1;
        if (cs->status == 200) {
            /* The service ended its side: so does the local one. */
            cs->sreq.data = cs;
            if (uv_shutdown(&cs->sreq, cs->out, shutdown_cb) == 0)
                cs->shut_pending = 1;
        }
    }
    return 0;
}

static int on_data_chunk(nghttp2_session *ss, uint8_t flags, int32_t sid, const uint8_t *data,
                         size_t len, void *ud)
{
    struct cstream *cs = nghttp2_session_get_stream_user_data(ss, sid);
    struct cwrite *w;
    uv_buf_t b;

    /* Connection credit at once: one slow local reader must not stall the others. */
    nghttp2_session_consume_connection(ss, len);
    if (cs == NULL || cs->local_closing) {
        nghttp2_session_consume_stream(ss, sid, len);
        return 0;
    }
    if (cs->status != 200) {
        size_t n = cs->err.len + len <= ERR_MAX ? len : 0;
        buf_append(&cs->err, data, n);
        nghttp2_session_consume_stream(ss, sid, len);
        return 0;
    }
    w = malloc(sizeof(*w) + len);
    if (w == NULL)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    w->cs = cs;
    w->len = len;
    memcpy(w->data, data, len);
    b = uv_buf_init((char *)w->data, (unsigned)len);
    if (uv_write(&w->req, cs->out, &b, 1, write_cb) != 0) {
        free(w);
        nghttp2_session_consume_stream(ss, sid, len);
    }
    return 0;
}

static int on_stream_close(nghttp2_session *ss, int32_t sid, uint32_t code, void *ud)
{
    struct session *s = ud;
    struct cstream *cs = nghttp2_session_get_stream_user_data(ss, sid);

    if (cs == NULL)
        return 0;
    cs->closed = 1;
    if (cs->status != 200) {
        int rc = cs->status > 0 ? report_refusal(cs) : CTL_EXIT_FAIL;
        if (cs->status == 0)
            fprintf(stderr, "tetherctl: %s/%s: the hub reset the stream (HTTP/2 error %u)\n",
                    s->site, s->service, code);
        if (s->stdio)
            s->exit_code = rc;
    } else if (code != NGHTTP2_NO_ERROR) {
        fprintf(stderr, "tetherctl: %s/%s: the connection was cut (HTTP/2 error %u)\n", s->site,
                s->service, code);
        if (s->stdio)
            s->exit_code = CTL_EXIT_FAIL;
        cs->shut_pending = 0; /* nothing more is owed to the local side */
    }
    nghttp2_session_set_stream_user_data(ss, sid, NULL);
    cs->sid = -1;
    maybe_finish(cs);
    return 0;
}

static ssize_t up_read(nghttp2_session *ss, int32_t sid, uint8_t *dst, size_t length,
                       uint32_t *flags, nghttp2_data_source *src, void *ud)
{
    struct cstream *cs = src->ptr;
    return h2_body_read(&cs->up, cs->up_eof, &cs->deferred, length, flags);
}

static int up_send(nghttp2_session *ss, nghttp2_frame *f, const uint8_t *framehd, size_t length,
                   nghttp2_data_source *src, void *ud)
{
    struct session *s = ud;
    struct cstream *cs = src->ptr;
    int rc = h2_send_data_from(&s->h2, framehd, length, &cs->up);

    if (cs->paused && cs->up.len < LOCAL_LOW)
        resume_local(cs);
    return rc;
}

static void open_stream(struct cstream *cs)
{
    struct session *s = cs->s;
    char auth[600];
    nghttp2_nv nva[6];
    nghttp2_data_provider prd = {{.ptr = cs}, up_read};
    int32_t id;

    snprintf(auth, sizeof(auth), "Bearer %s", s->c->bearer);
    nva[0] = h2_nv(":method", 7, "CONNECT", 7);
    nva[1] = h2_nv(":protocol", 9, "connect-tcp", 11);
    nva[2] = h2_nv(":scheme", 7, "https", 5);
    nva[3] = h2_nv(":authority", 10, s->c->target.host, strlen(s->c->target.host));
    nva[4] = h2_nv(":path", 5, s->path, strlen(s->path));
    nva[5] = h2_nv("authorization", 13, auth, strlen(auth));
    id = nghttp2_submit_request(s->h2.s, NULL, nva, 6, &prd, cs);
    if (id < 0) {
        fprintf(stderr, "tetherctl: cannot open a stream: %s\n", nghttp2_strerror(id));
        if (s->stdio)
            s->exit_code = CTL_EXIT_FAIL;
        local_close(cs);
        return;
    }
    cs->sid = id;
    h2_send(&s->h2);
}

/* --- the hub connection --- */

static int check_pin(void *arg, const char *pin)
{
    struct session *s = arg;
    return strcmp(pin, s->c->target.pin) == 0 ? 0 : -EPERM;
}

static void hub_handshake(struct conn *c)
{
    struct session *s = c->owner;
    static const struct h2_callbacks cb = {
        .header = on_header,
        .frame_recv = on_frame_recv,
        .data_chunk = on_data_chunk,
        .stream_close = on_stream_close,
        .send_data = up_send,
    };
    nghttp2_session *ns = NULL;
    char alpn[16];

    tls_alpn(&c->tls, alpn, sizeof(alpn));
    if (strcmp(alpn, "h2") != 0 ||
        h2_session_new(H2_ROLE_HUB_TUNNEL, &cb, &ctl_h2_limits, s, &ns) != 0) {
        conn_close(c, "the hub did not speak HTTP/2");
        return;
    }
    h2_init(&s->h2, ns, c);
    h2_send(&s->h2); /* our SETTINGS; streams open once the hub's arrive */
}

static int hub_data(struct conn *c, const uint8_t *data, size_t len)
{
    struct session *s = c->owner;
    if (s->h2.s == NULL || h2_feed(&s->h2, data, len) < 0)
        return -EPROTO;
    if (h2_finished(&s->h2))
        conn_close_after_flush(c, "the hub ended the session");
    return 0;
}

static void hub_drain(struct conn *c)
{
    struct session *s = c->owner;
    if (s->h2.s != NULL)
        h2_send(&s->h2);
}

static void hub_close(struct conn *c, const char *reason)
{
    struct session *s = c->owner;
    struct cstream *cs, *next;

    if (!s->was_ready) {
        if (s->v.result != 0 && s->v.seen_pin[0] != '\0')
            fprintf(stderr,
                    "tetherctl: hub key does not match the pinned key (something on the path may "
                    "intercept TLS): pinned %s, got %s\n",
                    s->c->target.pin, s->v.seen_pin);
        else
            fprintf(stderr, "tetherctl: cannot reach the hub at %s:%d: %s\n", s->c->target.host,
                    s->c->target.port, reason);
        s->exit_code = CTL_EXIT_NETWORK;
    } else if (!s->stopping) {
        fprintf(stderr, "tetherctl: the connection to the hub closed: %s\n", reason);
        if (s->stdio && s->exit_code == CTL_EXIT_OK)
            s->exit_code = CTL_EXIT_NETWORK;
    }
    if (s->h2.s != NULL)
        h2_free(&s->h2);
    s->conn = NULL;
    s->ready = 0;
    for (cs = LIST_FIRST(&s->streams); cs != NULL; cs = next) {
        next = LIST_NEXT(cs, link);
        local_close(cs);
    }
    /* A listener goes on (the next connection dials again) once the hub
     * was reached; a hub never reached ends the run. */
    if (!s->listening || !s->was_ready)
        session_stop(s);
}

static const struct conn_ops hub_ops = {NULL, hub_handshake, hub_data, hub_drain, hub_close};

static void connect_cb(uv_connect_t *req, int status)
{
    struct session *s = req->data;
    struct conn *c = s->conn;

    s->dialing = 0;
    if (status < 0) {
        conn_close(c, uv_strerror(status));
        return;
    }
    s->v.check = check_pin;
    s->v.arg = s;
    if (conn_start(c, 10000) != 0 ||
        conn_start_tls(c, s->ctx, s->c->target.host, "h2", 1, &s->v) != 0)
        conn_close(c, "TLS could not start");
}

static void gai_cb(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct session *s = req->data;
    int rc;

    if (status < 0 || res == NULL || s->stopping) {
        if (!s->stopping) {
            fprintf(stderr, "tetherctl: cannot resolve %s: %s\n", s->c->target.host,
                    uv_strerror(status));
            s->exit_code = CTL_EXIT_NETWORK;
        }
        s->dialing = 0;
        uv_freeaddrinfo(res);
        if (!s->listening || s->stopping)
            session_stop(s);
        return;
    }
    s->conn = conn_new(&s->cx, &hub_ops, s);
    if (s->conn == NULL) {
        uv_freeaddrinfo(res);
        s->dialing = 0;
        s->exit_code = CTL_EXIT_FAIL;
        session_stop(s);
        return;
    }
    s->creq.data = s;
    rc = uv_tcp_connect(&s->creq, &s->conn->tcp, res->ai_addr, connect_cb);
    uv_freeaddrinfo(res);
    if (rc != 0) {
        s->dialing = 0;
        conn_close(s->conn, uv_strerror(rc));
    }
}

static void dial(struct session *s)
{
    char port[8];
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};

    if (s->conn != NULL || s->dialing || s->stopping)
        return;
    s->dialing = 1;
    snprintf(port, sizeof(port), "%d", s->c->target.port);
    s->gai.data = s;
    if (uv_getaddrinfo(s->loop, &s->gai, gai_cb, s->c->target.host, port, &hints) != 0) {
        s->dialing = 0;
        s->exit_code = CTL_EXIT_NETWORK;
        session_stop(s);
    }
}

/* --- local connections --- */

static struct cstream *cstream_new(struct session *s)
{
    struct cstream *cs = calloc(1, sizeof(*cs));
    if (cs == NULL)
        return NULL;
    cs->s = s;
    buf_init(&cs->up);
    buf_init(&cs->err);
    LIST_INSERT_HEAD(&s->streams, cs, link);
    return cs;
}

static void cstream_go(struct cstream *cs)
{
    struct session *s = cs->s;
    if (s->ready)
        open_stream(cs);
    else
        dial(s);
}

static void on_accept(uv_stream_t *l, int status)
{
    struct session *s = l->data;
    struct cstream *cs;

    if (status < 0)
        return;
    cs = cstream_new(s);
    if (cs == NULL)
        return;
    uv_tcp_init(s->loop, &cs->tcp);
    cs->handles = 1;
    cs->tcp.data = cs;
    cs->in = cs->out = (uv_stream_t *)&cs->tcp;
    if (uv_accept(l, cs->in) != 0) {
        local_close(cs);
        return;
    }
    uv_tcp_nodelay(&cs->tcp, 1);
    cstream_go(cs);
}

/* stdin / stdout as a stream: a pipe or socket (ssh's ProxyCommand) or a tty. */
static uv_stream_t *std_handle(struct cstream *cs, int fd, uv_pipe_t *p, uv_tty_t *t)
{
    uv_handle_type ty = uv_guess_handle(fd);

    if (ty == UV_TTY) {
        if (uv_tty_init(cs->s->loop, t, fd, fd == 0) != 0)
            return NULL;
        t->data = cs;
        cs->handles++;
        return (uv_stream_t *)t;
    }
    if (ty != UV_NAMED_PIPE && ty != UV_TCP)
        return NULL;
    if (uv_pipe_init(cs->s->loop, p, 0) != 0)
        return NULL;
    p->data = cs;
    cs->handles++;
    if (uv_pipe_open(p, fd) != 0)
        return NULL;
    return (uv_stream_t *)p;
}

static void on_signal(uv_signal_t *sig, int signum)
{
    struct session *s = sig->data;
    s->exit_code = s->stdio ? CTL_EXIT_FAIL : CTL_EXIT_OK;
    session_stop(s);
}

static void session_stop(struct session *s)
{
    struct cstream *cs, *next;

    if (s->stopping)
        return;
    s->stopping = 1;
    for (cs = LIST_FIRST(&s->streams); cs != NULL; cs = next) {
        next = LIST_NEXT(cs, link);
        local_close(cs);
    }
    if (s->listening)
        uv_close((uv_handle_t *)&s->listener, NULL);
    s->listening = 0;
    uv_close((uv_handle_t *)&s->sigint, NULL);
    uv_close((uv_handle_t *)&s->sigterm, NULL);
    if (s->conn != NULL) {
        if (s->h2.s != NULL) {
            nghttp2_session_terminate_session(s->h2.s, NGHTTP2_NO_ERROR);
            h2_send(&s->h2);
        }
        conn_close_after_flush(s->conn, "done");
    }
}

static int start_listen(struct session *s, const char *spec)
{
    char host[NET_HOST_MAX + 1];
    struct sockaddr_storage sa;
    int port, rc;

    if (net_split_hostport(spec, 0, host, &port) != 0)
        return ctl_usage_err("--listen wants HOST:PORT, e.g. 127.0.0.1:5432");
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)&sa) != 0 &&
        uv_ip6_addr(host, port, (struct sockaddr_in6 *)&sa) != 0)
        return ctl_usage_err("--listen wants an IP address, not \"%s\"", host);
    uv_tcp_init(s->loop, &s->listener);
    s->listener.data = s;
    s->listening = 1;
    rc = uv_tcp_bind(&s->listener, (struct sockaddr *)&sa, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&s->listener, 128, on_accept);
    if (rc != 0) {
        ctl_err("cannot listen on %s: %s", spec, uv_strerror(rc));
        return CTL_EXIT_FAIL;
    }
    fprintf(stderr, "tetherctl: %s/%s on %s\n", s->site, s->service, spec);
    return CTL_EXIT_OK;
}

int cmd_connect(struct ctl *c, const struct ctl_args *a)
{
    const char *listen = ctl_opt(a, "listen"), *stdio = ctl_opt(a, "stdio");
    struct session s;
    uv_loop_t loop;
    int rc;

    if ((listen == NULL) == (stdio == NULL))
        return ctl_usage_err("connect wants exactly one of --listen HOST:PORT and --stdio");
    if ((rc = ctl_check_name("site", a->pos[0])) != CTL_EXIT_OK ||
        (rc = ctl_check_name("service", a->pos[1])) != CTL_EXIT_OK)
        return rc;
    if ((rc = ctl_connect(c)) != CTL_EXIT_OK)
        return rc;
    memset(&s, 0, sizeof(s));
    s.c = c;
    s.site = a->pos[0];
    s.service = a->pos[1];
    s.stdio = stdio != NULL;
    snprintf(s.path, sizeof(s.path), "/v1/sites/%s/services/%s", s.site, s.service);
    LIST_INIT(&s.streams);
    if (tls_ctx_client(NULL, &s.ctx) != 0) {
        ctl_err("cannot set up TLS");
        return CTL_EXIT_FAIL;
    }
    signal(SIGPIPE, SIG_IGN);
    uv_loop_init(&loop);
    s.loop = &loop;
    conn_ctx_init(&s.cx, &loop);
    uv_signal_init(&loop, &s.sigint);
    uv_signal_init(&loop, &s.sigterm);
    s.sigint.data = s.sigterm.data = &s;
    uv_signal_start(&s.sigint, on_signal, SIGINT);
    uv_signal_start(&s.sigterm, on_signal, SIGTERM);
    if (s.stdio) {
        struct cstream *cs = cstream_new(&s);
        if (cs == NULL || (cs->in = std_handle(cs, 0, &cs->pin, &cs->tin)) == NULL ||
            (cs->out = std_handle(cs, 1, &cs->pout, &cs->tout)) == NULL) {
            ctl_err("--stdio wants stdin and stdout to be pipes, sockets or a terminal");
            s.exit_code = CTL_EXIT_USAGE;
            if (cs != NULL && cs->handles == 0) {
                LIST_REMOVE(cs, link);
                free(cs);
            }
            session_stop(&s);
        } else {
            cstream_go(cs);
        }
    } else {
        rc = start_listen(&s, listen);
        if (rc != CTL_EXIT_OK) {
            s.exit_code = rc;
            session_stop(&s);
        } else {
            dial(&s); /* at once: a wrong pin or an unreachable hub shows now */
        }
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    wolfSSL_CTX_free(s.ctx);
    return s.exit_code;
}
