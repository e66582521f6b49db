/* Proxying a user request to a site's service through its tunnel, streamed with end-to-end
 * backpressure. */
/* SPDX-License-Identifier: MIT */
#include "proxy.h"

#include <assert.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../../common/log.h"
#include "../../common/hfield.h"
#include "fwd.h"
#include "slots.h"
#include "../tunnel/peer.h"
#include "../tunnel/tunnel.h"

/* Upload bytes held for the tunnel before the client is paused. */
#define UP_HIGH (256 * 1024)
#define UP_LOW  (64 * 1024)

/* A stream is stalled while the hub holds at least half a stream window of
 * response bytes that its user does not take, or while its user, free to
 * send more of its upload, sent none for UP_STALL_MS. */
#define STALL_BYTES (TUNNEL_STREAM_WINDOW / 2)
#define UP_STALL_MS 5000

struct proxy {
    struct hub *h;
    struct proxy_hold *by_conn, *by_token, *by_site; /* our counts; NULL once released */
    int stalled;                                     /* counted in by_conn and by_token */
    struct ureq *r;                                  /* NULL once the user side is finished */
    struct tstream *ts;                              /* NULL once the tunnel side is finished */
    int64_t site_id;
    int64_t via_hub; /* the peer hub that holds the site's tunnel; 0: this hub */
    int queued;      /* waiting for a slot (in by_site->waiting) or about to open */
    int waiting;     /* in by_site->waiting */
    int active;      /* counted in by_token->active and by_site->active */
    int t_ended;     /* the site's response is complete; r->out still holds some */
    int connect;     /* a CONNECT: a byte stream once the site answered 2xx */
    int is_long;     /* a long-lived stream: a CONNECT or a gRPC call (n_long) */
    int grpc;        /* a gRPC call: its deadline is the client's, not request_timeout */
    TAILQ_ENTRY(proxy) wlink;
    char service[TOKEN_NAME_MAX + 1];
    char *path; /* owned */
    struct buf up;
    int up_eof;
    int up_paused;
    size_t uncredited;
    uint64_t started_ms;
    /* No response head within request_timeout_ms: 504. Once the head came,
     * it runs stall_kill. */
    uv_timer_t timer;
    /* Upload progress (UP_STALL_MS), then stall_kill from the loop. */
    uv_timer_t aux;
    int up_stalled;
    int handles; /* open uv handles; freed at 0 */
    int freeing;
    char site[TOKEN_NAME_MAX + 1];
    /* For the access line. */
    char method[24];
    char user[TOKEN_NAME_MAX + 1];
    int status; /* the user's answer: the site's head, or the hub's error */
    uint64_t bytes_in, bytes_out;
    /* For /metrics: uv_hrtime() at the start, and the site's response head
     * came this long after it (-1: none came). */
    uint64_t started_ns;
    double head_s;
};

static void proxy_fail(struct proxy *p, int status, const char *code, const char *why);
static void stall_check(struct proxy *p);
static void refused(struct proxy *p, enum proxy_refusal kind);

static void set_stalled(struct proxy *p, int on)
{
    if (p->stalled == on || p->by_conn == NULL || p->by_token == NULL)
        return;
    p->stalled = on;
    if (on) {
        p->by_conn->stalled++;
        p->by_token->stalled++;
    } else {
        assert(p->by_conn->stalled > 0 && p->by_token->stalled > 0);
        p->by_conn->stalled--;
        p->by_token->stalled--;
    }
}

/* Response bytes of this request the hub holds for its user: received from
 * the site and not yet credited back while the stream runs, then what is
 * left queued for the user once the site's response is complete. */
static size_t held(const struct proxy *p)
{
    if (p->r == NULL)
        return 0;
    return p->ts != NULL ? p->uncredited : ureq_queued(p->r);
}

static int stalled_now(const struct proxy *p)
{
    return p->r != NULL && (held(p) >= STALL_BYTES || p->up_stalled);
}

static void stall_kill(uv_timer_t *t)
{
    struct proxy *p = t->data;

    /* The user may have read meanwhile, or another stalled stream ended. */
    if (p->stalled || !stalled_now(p) || !slots_stall_cap(&p->h->cfg, p->by_conn, p->by_token)) {
        stall_check(p);
        return;
    }
    refused(p, PR_STALL_RESET);
    proxy_fail(p, 429, "too_many_requests", "too many stalled responses from this site");
}

/* Called whenever uncredited bytes change. A stream that stalls past its
 * connection's or token's cap is reset: what one user holds in the hub for
 * a site stays bounded even when many requests started at once. The reset
 * runs from the loop: we may be inside either side's callbacks here. */
static void stall_check(struct proxy *p)
{
    int now = stalled_now(p);

    if (now == p->stalled)
        return;
    if (now && slots_stall_cap(&p->h->cfg, p->by_conn, p->by_token)) {
        uv_timer_start(&p->aux, stall_kill, 0, 0);
        return;
    }
    set_stalled(p, now);
}

static void proxy_free_cb(uv_handle_t *h)
{
    struct proxy *p = h->data;
    if (--p->handles > 0)
        return;
    buf_free(&p->up);
    free(p->path);
    free(p);
}

void proxy_access_log(struct hub *h, const struct proxy_access *a)
{
    size_t plen = strcspn(a->path ? a->path : "", "?");
    char path[512];

    if (!h->cfg.access_log)
        return;
    snprintf(path, sizeof(path), "%.*s", (int)(plen < sizeof(path) ? plen : sizeof(path) - 1),
             a->path ? a->path : "");
    log_event(LOG_INFO, "access",
              "site=%s service=%s method=%s path=%s status=%d bytes_in=%llu bytes_out=%llu ms=%llu "
              "token=%s",
              log_q(a->site), log_q(a->service), log_q(a->method), log_q(path), a->status,
              (unsigned long long)a->bytes_in, (unsigned long long)a->bytes_out,
              (unsigned long long)a->ms, log_q(a->token));
}

static void proxy_maybe_free(struct proxy *p)
{
    if (p->r != NULL || p->ts != NULL || p->freeing)
        return;
    assert(!p->waiting && !p->active);
    p->freeing = 1;
    {
        struct proxy_access a = {p->site,     p->service,   p->method,
                                 p->path,     p->user,      p->status,
                                 p->bytes_in, p->bytes_out, uv_now(p->h->loop) - p->started_ms};

        proxy_access_log(p->h, &a);
    }
    stats_site_request(p->h, p->site_id, p->service, p->status, p->head_s);
    set_stalled(p, 0);
    slots_put(&p->by_conn, p->is_long);
    slots_put(&p->by_token, p->is_long);
    slots_put(&p->by_site, p->is_long);
    uv_close((uv_handle_t *)&p->timer, proxy_free_cb);
    uv_close((uv_handle_t *)&p->aux, proxy_free_cb);
}

static void open_stream(uv_timer_t *t);

/* Hands the site's slots to waiting requests whose token is under its
 * share, oldest first. They open from the loop (open_stream). */
static void wake_waiting(struct hub *h, struct proxy_hold *site)
{
    size_t share = slots_token_share(h, site->site_id);
    struct proxy *q, *next;

    for (q = TAILQ_FIRST(&site->waiting); q != NULL; q = next) {
        next = TAILQ_NEXT(q, wlink);
        if (q->by_token->active >= share)
            continue;
        TAILQ_REMOVE(&site->waiting, q, wlink);
        q->waiting = 0;
        q->active = 1;
        q->by_token->active++;
        site->active++;
        uv_timer_start(&q->timer, open_stream, 0, 0);
    }
}

/* The request no longer holds one of the site's slots. */
static void slot_release(struct proxy *p)
{
    if (!p->active)
        return;
    p->active = 0;
    assert(p->by_token->active > 0 && p->by_site->active > 0);
    p->by_token->active--;
    p->by_site->active--;
    if (!TAILQ_EMPTY(&p->by_site->waiting))
        wake_waiting(p->h, p->by_site);
}

/* Gives up the tunnel side, whatever state it is in. */
static void tunnel_side_drop(struct proxy *p)
{
    if (p->waiting) {
        TAILQ_REMOVE(&p->by_site->waiting, p, wlink);
        p->waiting = 0;
    }
    p->queued = 0;
    if (p->ts != NULL)
        tunnel_stream_cancel(p->ts);
    p->ts = NULL;
    slot_release(p);
}

static void head_timeout(uv_timer_t *t)
{
    struct proxy *p = t->data;

    if (p->r == NULL || p->r->resp_started || (p->ts == NULL && !p->queued))
        return;
    proxy_fail(p, 504, "gateway_timeout", "the site did not answer in time");
}

/* Reopens the site's stream window by the bytes that left the hub for the
 * user's connection. Bytes still queued for this stream (HTTP/2 flow
 * control of the user) stay uncredited, so a stream holds at most one
 * tunnel stream window in the hub however slow its reader is. */
static void credit(struct proxy *p)
{
    size_t queued = 0, n;

    if (p->ts == NULL || p->uncredited == 0)
        goto out;
    if (p->r != NULL) {
        queued = ureq_queued(p->r);
        if (ureq_backlog(p->r) - queued >= CONN_HIGH_WATER)
            goto out; /* the client is slow: hold the site's window shut */
    }
    n = queued < p->uncredited ? p->uncredited - queued : 0;
    if (n > 0) {
        tunnel_stream_consume(p->ts, n);
        p->uncredited -= n;
    }
out:
    stall_check(p);
}

/* Breaks both sides: the tunnel stream is cancelled, the user gets status
 * (or a reset once the response started). */
static void proxy_fail(struct proxy *p, int status, const char *code, const char *why)
{
    struct ureq *r = p->r;

    tunnel_side_drop(p);
    p->r = NULL;
    if (r != NULL) {
        ureq_set_handler(r, NULL, NULL);
        if (!r->resp_started) {
            ureq_error(r, status, code, why);
            p->status = status;
        } else {
            ureq_reset(r); /* the client must not take a short body for a whole one */
        }
    }
    proxy_maybe_free(p);
}

/* --- user side --- */

/* The user sent no upload byte for UP_STALL_MS. It counts as stalled only
 * when it could have: the hub was not holding its upload back. */
static void up_idle(uv_timer_t *t)
{
    struct proxy *p = t->data;

    if (p->r == NULL || p->up_eof)
        return;
    if (p->up_paused) {
        uv_timer_start(&p->aux, up_idle, UP_STALL_MS, 0);
        return;
    }
    p->up_stalled = 1;
    stall_check(p);
}

static void up_progress(struct proxy *p)
{
    if (p->is_long)
        return; /* a long-lived stream may be quiet for as long as it likes */
    if (p->up_eof)
        uv_timer_stop(&p->aux);
    else
        uv_timer_start(&p->aux, up_idle, UP_STALL_MS, 0);
    if (p->up_stalled) {
        p->up_stalled = 0;
        stall_check(p);
    }
}

static void u_body(struct ureq *r, const uint8_t *data, size_t len)
{
    struct proxy *p = r->hctx;
    if (p->ts == NULL && !p->queued) {
        ureq_credit_body(r, len);
        return;
    }
    if (buf_append(&p->up, data, len) != 0) {
        proxy_fail(p, 500, "internal", "out of memory");
        return;
    }
    p->bytes_in += len;
    if (p->up.len >= UP_HIGH && !p->up_paused) {
        p->up_paused = 1;
        ureq_pause_body(r, 1);
    }
    if (p->ts != NULL)
        tunnel_stream_resume(p->ts);
    up_progress(p);
}

/* A byte stream whose user has ended both ways (sent END_STREAM and been
 * sent it) is done with its user, whose stream now closes and goes; the
 * tunnel side may still be carrying the last upload bytes to the site. */
static void user_done(struct proxy *p)
{
    struct ureq *r = p->r;

    if (!p->connect || r == NULL || !r->req_ended || !r->resp_ended)
        return;
    p->r = NULL;
    set_stalled(p, 0);
    ureq_set_handler(r, NULL, NULL);
    proxy_maybe_free(p);
}

static void u_end(struct ureq *r)
{
    struct proxy *p = r->hctx;
    p->up_eof = 1;
    up_progress(p);
    if (p->ts != NULL)
        tunnel_stream_resume(p->ts);
    user_done(p);
}

static void u_abort(struct ureq *r)
{
    struct proxy *p = r->hctx;
    p->r = NULL;
    set_stalled(p, 0);
    tunnel_side_drop(p);
    proxy_maybe_free(p);
}

static void user_finish(struct proxy *p);

static void u_drain(struct ureq *r)
{
    struct proxy *p = r->hctx;

    if (!p->t_ended) {
        credit(p);
        return;
    }
    /* The response is complete at the site: this request counts until the
     * hub holds none of its bytes. */
    if (ureq_queued(r) > 0) {
        stall_check(p);
        return;
    }
    set_stalled(p, 0);
    user_finish(p);
    proxy_maybe_free(p);
}

static const struct ureq_handler user_side = {u_body, u_end, u_abort, u_drain, 1};

/* Ends the user side; ureq_respond_end finishes r (the loop frees it later). */
static void user_finish(struct proxy *p)
{
    struct ureq *r = p->r;
    p->r = NULL;
    ureq_set_handler(r, NULL, NULL);
    ureq_respond_end(r);
}

/* --- tunnel side --- */

static void t_head(void *arg, int status, const nghttp2_nv *nva, size_t n)
{
    struct proxy *p = arg;
    int64_t cl = -1;

    uv_timer_stop(&p->timer);
    if (p->head_s < 0)
        p->head_s = (double)(uv_hrtime() - p->started_ns) / 1e9;
    if (p->r == NULL)
        return;
    p->status = status;
    for (size_t i = 0; i < n; i++)
        if (nva[i].namelen == 14 &&
            strncasecmp((const char *)nva[i].name, "content-length", 14) == 0)
            cl = hfield_content_length((const char *)nva[i].value, nva[i].valuelen);
    if (p->ts != NULL && tunnel_stream_head_ended(p->ts) && status >= 200)
        ureq_respond_head_whole(p->r, status, nva, n);
    else
        ureq_respond_head(p->r, status, nva, n, cl);
}

static void t_trailers(void *arg, const nghttp2_nv *nva, size_t n)
{
    struct proxy *p = arg;

    if (p->r != NULL && ureq_respond_trailers(p->r, nva, n) != 0)
        proxy_fail(p, 502, "bad_gateway", "the hub could not pass the trailers on");
}

static void t_data(void *arg, const uint8_t *data, size_t len)
{
    struct proxy *p = arg;
    p->uncredited += len;
    p->bytes_out += len;
    if (p->r != NULL && ureq_respond_body(p->r, data, len) != 0) {
        proxy_fail(p, 502, "bad_gateway", "the hub could not pass the response on");
        return;
    }
    credit(p);
}

static void t_end(void *arg);

/* A byte stream's site end said END_STREAM: so does the user's, after the
 * bytes still queued; the upload may go on (half-close). */
static void t_remote_end(void *arg)
{
    struct proxy *p = arg;

    if (!p->connect)
        return;
    if (p->r != NULL && p->r->bytestream && p->r->resp_started) {
        ureq_respond_end(p->r);
        user_done(p);
        return;
    }
    /* A refusal (the site's error answer is complete): no byte stream
     * follows, so the site's stream goes now as after any response. */
    if (p->ts != NULL)
        tunnel_stream_cancel(p->ts);
    t_end(p);
}

static void t_end(void *arg)
{
    struct proxy *p = arg;
    p->ts = NULL;
    slot_release(p); /* the site's slot is free; the request still counts */
    if (p->r != NULL) {
        if (!p->r->resp_started) {
            ureq_error(p->r, 502, "bad_gateway", "the site ended the response without a head");
        } else if (ureq_queued(p->r) > 0) {
            /* Its user has not taken it all: it stays counted (u_drain). */
            p->t_ended = 1;
            stall_check(p);
            return;
        } else {
            set_stalled(p, 0);
            user_finish(p);
        }
        p->r = NULL;
    }
    proxy_maybe_free(p);
}

static void t_error(void *arg, enum tstream_err err, const char *why)
{
    struct proxy *p = arg;

    p->ts = NULL; /* finished: nothing to cancel */
    switch (err) {
    case TSTREAM_ERR_GONE:
    case TSTREAM_ERR_REFUSED:
        proxy_fail(p, 503, "site_offline", why);
        return;
    case TSTREAM_ERR_RESET:
        break;
    }
    proxy_fail(p, 502, "bad_gateway", why);
}

/* The upload waits in p->up; the tunnel sends it from there (no copy). */
static struct buf *t_body_buf(void *arg, int *eof)
{
    struct proxy *p = arg;

    *eof = p->up_eof;
    return &p->up;
}

static void t_body_taken(void *arg, size_t n)
{
    struct proxy *p = arg;

    if (p->r != NULL)
        ureq_credit_body(p->r, n);
    if (p->up_paused && p->up.len < UP_LOW && p->r != NULL) {
        p->up_paused = 0;
        ureq_pause_body(p->r, 0);
    }
}

/* The user's request trailers, filtered as its headers were, follow the
 * body down the tunnel. */
static size_t t_body_trailers(void *arg, nghttp2_nv *out, size_t cap)
{
    struct proxy *p = arg;
    struct ureq *r = p->r;

    if (r == NULL || r->n_req_trl == 0)
        return 0;
    const struct fwd_req req = {.hdrs = r->hdrs, .n_hdrs = r->n_hdrs};
    return fwd_request_trailers(&req, &r->req_trl, r->n_req_trl, out, cap);
}

static const struct tstream_ops tunnel_side = {
    .on_head = t_head,
    .on_data = t_data,
    .on_end = t_end,
    .on_error = t_error,
    .body_buf = t_body_buf,
    .body_taken = t_body_taken,
    .on_trailers = t_trailers,
    .body_trailers = t_body_trailers,
    .on_remote_end = t_remote_end,
};

static const char *const refusal_names[PR_N] = {
    "conn_requests", "token_requests",     "stalled",          "stall_reset",
    "site_busy",     "token_long_streams", "site_long_streams"};

const char *proxy_refusal_name(enum proxy_refusal kind)
{
    return refusal_names[kind];
}

/* Counts a refusal or a reset for /metrics and logs it, at most one line
 * per kind and second (an attacker must not flood the log); the line says
 * how many went unlogged before it. */
static void refused(struct proxy *p, enum proxy_refusal kind)
{
    struct hub *h = p->h;
    uint64_t now = uv_now(h->loop);

    h->n_proxy_refused[kind]++;
    if (h->proxy_refused_logged_ms[kind] != 0 && now - h->proxy_refused_logged_ms[kind] < 1000) {
        h->proxy_refused_quiet[kind]++;
        return;
    }
    h->proxy_refused_logged_ms[kind] = now;
    log_event(LOG_WARN, "proxy_refused", "kind=%s site=%s token=%s remote=%s unlogged=%llu",
              refusal_names[kind], log_q(p->site), log_q(p->by_token ? p->by_token->token : "-"),
              log_q(p->r != NULL ? p->r->remote : "-"),
              (unsigned long long)h->proxy_refused_quiet[kind]);
    h->proxy_refused_quiet[kind] = 0;
}

/* Submits the request on the site's tunnel. The caller counted it active. */
static int stream_submit(struct proxy *p, struct tunnel *t)
{
    struct ureq *r = p->r;
    char peer_path[8192];
    int via = p->via_hub > 0, rc;
    struct fwd_req req = {
        .method = r->method,
        .protocol = r->bytestream ? r->protocol : NULL,
        .path = p->path,
        .service = p->service,
        .user = p->by_token->token,
        .peer = r->remote,
        .hdrs = r->hdrs,
        .n_hdrs = r->n_hdrs,
        .content_length = r->content_length,
        .has_body = r->has_body,
    };
    struct fwd_headers fh;

    if (via) {
        /* To the hub that holds the tunnel: the user's own hub path (a
         * CONNECT by authority becomes a connect-tcp one). */
        if (r->target != NULL && r->target[0] == '/') {
            snprintf(peer_path, sizeof(peer_path), "%s", r->target);
        } else {
            snprintf(peer_path, sizeof(peer_path), "/v1/sites/%s/services/%s", p->site, p->service);
            if (r->bytestream)
                req.protocol = "connect-tcp";
        }
        req.path = peer_path;
        fwd_peer_headers(&req, &fh);
    } else {
        fwd_request_headers(&req, &fh);
    }
    p->queued = 0;
    rc = via ? peer_stream_open(p->h, p->via_hub, fh.nv, fh.n, r->has_body, &tunnel_side, p, &p->ts)
             : tunnel_stream_open(t, fh.nv, fh.n, r->has_body, &tunnel_side, p, &p->ts);
    if (rc != 0) {
        p->ts = NULL;
        return -EBUSY;
    }
    p->h->n_proxy_requests++;
    /* The site's own upstream timeout normally answers first (with its 504);
     * this catches a site that cannot answer at all. A gRPC server may send
     * its first message, and its head with it, after minutes (a watch): the
     * call's deadline is its client's (grpc-timeout). */
    if (p->h->cfg.request_timeout_ms > 0 && !p->grpc)
        uv_timer_start(&p->timer, head_timeout, p->h->cfg.request_timeout_ms, 0);
    return 0;
}

/* A waiting request got a slot (wake_waiting). */
static void open_stream(uv_timer_t *tm)
{
    struct proxy *p = tm->data;
    struct tunnel *t = p->via_hub > 0 ? NULL : hub_tunnel_find(p->h, p->site_id);

    if (p->r == NULL || !p->queued || p->waiting)
        return;
    if (p->via_hub > 0 ? stream_submit(p, NULL) != 0
                       : t == NULL || !tunnel_is_open(t) || stream_submit(p, t) != 0)
        proxy_fail(p, 503, "site_offline", "the site's tunnel is closing");
}

/* A gRPC call (content-type application/grpc, +proto and the like; not
 * grpc-web, whose calls end their request at once). HTTP/2 only. */
static int is_grpc(const struct ureq *r)
{
    const char *ct = ureq_header(r, "content-type");

    if (r->sid == 0 || ct == NULL || strncasecmp(ct, "application/grpc", 16) != 0)
        return 0;
    return ct[16] == '\0' || ct[16] == '+' || ct[16] == ';';
}

/* Answers a refusal: 503 site_busy for a full site, else 429. */
static int refuse(struct proxy *p, enum proxy_refusal kind, const struct slots_pools *sp,
                  const char **code)
{
    int status = kind == PR_SITE_BUSY || kind == PR_SITE_LONG ? 503 : 429;
    char why[160];

    switch (kind) {
    case PR_SITE_BUSY:
        snprintf(why, sizeof(why), "the site carries its maximum of requests");
        break;
    case PR_SITE_LONG:
        snprintf(why, sizeof(why),
                 "the site carries its maximum of long-lived streams (WebSocket, CONNECT, "
                 "gRPC): %zu",
                 sp->long_site);
        break;
    case PR_TOKEN_LONG:
        snprintf(why, sizeof(why),
                 "too many long-lived streams (WebSocket, CONNECT, gRPC) to this site with this "
                 "token: %zu at most",
                 sp->long_token);
        break;
    case PR_STALLED:
        snprintf(why, sizeof(why),
                 "too many stalled responses from this site on this connection or token");
        break;
    case PR_CONN_REQUESTS:
        snprintf(why, sizeof(why), "too many requests to this site on this connection");
        break;
    default:
        snprintf(why, sizeof(why), "too many requests to this site with this token");
        break;
    }
    refused(p, kind);
    *code = status == 503 ? "site_busy" : "too_many_requests";
    proxy_fail(p, status, *code, why);
    return status;
}

static int begin(struct hub *h, struct ureq *r, struct tunnel *t, int64_t site_id, const char *site,
                 int64_t via_hub, const char *service, const char *path, const char *user,
                 const char **code)
{
    const struct hub_config *c = &h->cfg;
    enum proxy_refusal kind;
    struct slots_pools sp;
    struct proxy *p;

    *code = "internal";
    if (strcmp(r->method, "CONNECT") == 0 && !r->bytestream) {
        *code = "bad_request";
        ureq_error(r, 400, *code, "CONNECT is carried over HTTP/2 only");
        return 400;
    }
    p = calloc(1, sizeof(*p));
    if (p == NULL || (p->path = strdup(path)) == NULL) {
        free(p);
        ureq_error(r, 500, "internal", "out of memory");
        return 500;
    }
    p->h = h;
    p->r = r;
    p->connect = r->bytestream;
    p->grpc = is_grpc(r);
    p->is_long = p->connect || p->grpc;
    p->site_id = site_id;
    p->via_hub = via_hub;
    buf_init(&p->up);
    uv_timer_init(h->loop, &p->timer);
    uv_timer_init(h->loop, &p->aux);
    p->timer.data = p->aux.data = p;
    p->handles = 2;
    snprintf(p->site, sizeof(p->site), "%s", site);
    snprintf(p->service, sizeof(p->service), "%s", service);
    snprintf(p->method, sizeof(p->method), "%s", r->method);
    snprintf(p->user, sizeof(p->user), "%s", user);
    p->started_ms = uv_now(h->loop);
    p->started_ns = uv_hrtime();
    p->head_s = -1;
    ureq_set_handler(r, &user_side, p);
    /* What one connection, one token and everyone together may have in
     * flight on this site, and hold stalled (docs/protocol.md, "Flow
     * control"). */
    /* A peer hub's link carries many users' connections, each already held
     * to its caps by that hub: a forwarded request counts as its own. */
    p->by_conn =
        slots_take(h, p->site_id, ureq_peer_hub(r) > 0 ? (const void *)r : r->uc, NULL, p->is_long);
    p->by_token = p->by_conn ? slots_take(h, p->site_id, NULL, user, p->is_long) : NULL;
    p->by_site = p->by_token ? slots_take(h, p->site_id, NULL, "", p->is_long) : NULL;
    if (p->by_site == NULL) {
        proxy_fail(p, 500, "internal", "out of memory");
        return 500;
    }
    slots_pools(h, p->site_id, &sp);
    kind = slots_over_cap(&h->cfg, p->by_conn, p->by_token, p->by_site, p->is_long, &sp);
    if (kind != PR_N)
        return refuse(p, kind, &sp, code);
    p->queued = 1;
    if (p->is_long) {
        /* Idle is the normal state of a long-lived stream: no upload
         * deadline, and no slot of the request pool. */
        if (p->grpc)
            ureq_body_no_deadline(r);
    } else {
        if (r->has_body && !r->req_ended)
            uv_timer_start(&p->aux, up_idle, UP_STALL_MS, 0);
        if (p->by_token->active >= sp.share) {
            /* Its token has its share of the site's slots: wait for one of
             * its own requests to finish (wake_waiting), at most
             * request_timeout. */
            p->waiting = 1;
            TAILQ_INSERT_TAIL(&p->by_site->waiting, p, wlink);
            if (c->request_timeout_ms > 0)
                uv_timer_start(&p->timer, head_timeout, c->request_timeout_ms, 0);
            return 0;
        }
        p->active = 1;
        p->by_token->active++;
        p->by_site->active++;
    }
    if (stream_submit(p, t) != 0) {
        *code = "site_offline";
        proxy_fail(p, 503, "site_offline", "the site's tunnel is closing");
        return 503;
    }
    return 0;
}

int proxy_start(struct hub *h, struct ureq *r, struct tunnel *t, const char *service,
                const char *path, const char *user, const char **code)
{
    return begin(h, r, t, tunnel_site_id(t), tunnel_site_name(t), 0, service, path, user, code);
}

int proxy_start_via(struct hub *h, struct ureq *r, int64_t via_hub, int64_t site_id,
                    const char *site, const char *service, const char *path, const char *user,
                    const char **code)
{
    return begin(h, r, NULL, site_id, site, via_hub, service, path, user, code);
}
