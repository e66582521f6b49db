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

#include "../common/log.h"
#include "../common/hfield.h"
#include "fwd.h"
#include "tunnel.h"

/* Upload bytes held for the tunnel before the client is paused. */
#define UP_HIGH (256 * 1024)
#define UP_LOW  (64 * 1024)

/* Proxied requests in flight (n) and how many of them are stalled, for one
 * site and one user connection (conn != NULL) or one token (conn == NULL).
 * An entry lives while n > 0. */
struct proxy_hold {
    LIST_ENTRY(proxy_hold) link;
    int64_t site_id;
    const void *conn;
    char token[TOKEN_NAME_MAX + 1];
    unsigned n;
    unsigned stalled;
};

/* A stream is stalled while the hub holds at least half a stream window of
 * response bytes that its user does not take. */
#define STALL_BYTES (TUNNEL_STREAM_WINDOW / 2)

struct proxy {
    struct hub *h;
    struct proxy_hold *by_conn, *by_token; /* our counts; NULL once released */
    int stalled;                           /* counted in by_conn and by_token */
    struct ureq *r;                        /* NULL once the user side is finished */
    struct tstream *ts;                    /* NULL once the tunnel side is finished */
    struct buf up;
    int up_eof;
    int up_paused;
    size_t uncredited;
    uint64_t started_ms;
    /* No response head within request_timeout_ms: 504. Once the head came,
     * it runs stall_kill. */
    uv_timer_t timer;
    int freeing;
    char site[TOKEN_NAME_MAX + 1];
};

static void proxy_fail(struct proxy *p, int status, const char *code, const char *why);
static void stall_check(struct proxy *p);

static struct proxy_hold_list *hold_bucket(struct hub *h, int64_t site_id, const void *conn,
                                           const char *token)
{
    uint64_t k = (uint64_t)site_id * 0x9e3779b97f4a7c15u;
    if (conn != NULL) {
        k ^= (uint64_t)(uintptr_t)conn >> 4;
    } else {
        for (const char *c = token; *c; c++)
            k = (k ^ (uint8_t)*c) * 0x100000001b3u;
    }
    return &h->holds[(k ^ (k >> 29)) % HUB_HOLD_BUCKETS];
}

/* Counts one more request for (site, conn) or (site, token); NULL when out
 * of memory. */
static struct proxy_hold *hold_take(struct hub *h, int64_t site_id, const void *conn,
                                    const char *token)
{
    struct proxy_hold_list *l = hold_bucket(h, site_id, conn, token);
    struct proxy_hold *e;

    LIST_FOREACH(e, l, link)
    {
        if (e->site_id == site_id && e->conn == conn &&
            (conn != NULL || strcmp(e->token, token) == 0))
            break;
    }
    if (e == NULL) {
        e = calloc(1, sizeof(*e));
        if (e == NULL)
            return NULL;
        e->site_id = site_id;
        e->conn = conn;
        if (conn == NULL)
            snprintf(e->token, sizeof(e->token), "%s", token);
        LIST_INSERT_HEAD(l, e, link);
    }
    e->n++;
    return e;
}

static void hold_put(struct proxy_hold **pe)
{
    struct proxy_hold *e = *pe;

    *pe = NULL;
    if (e == NULL)
        return;
    assert(e->n > 0);
    if (--e->n == 0) {
        assert(e->stalled == 0);
        LIST_REMOVE(e, link);
        free(e);
    }
}

/* 1 when this request's connection or token already holds its maximum of
 * stalled streams on the site. */
static int stall_cap_reached(const struct proxy *p)
{
    const struct hub_config *c = &p->h->cfg;
    return p->by_conn->stalled >= (unsigned)c->max_stalled_streams_per_conn ||
           p->by_token->stalled >= (unsigned)c->max_stalled_streams_per_token;
}

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

static void stall_kill(uv_timer_t *t)
{
    struct proxy *p = t->data;

    /* The user may have read meanwhile, or another stalled stream ended. */
    if (p->stalled || p->r == NULL || p->ts == NULL || p->uncredited < STALL_BYTES ||
        !stall_cap_reached(p)) {
        stall_check(p);
        return;
    }
    proxy_fail(p, 429, "too_many_requests", "too many stalled responses from this site");
}

/* Called whenever uncredited bytes change. A stream that stalls past its
 * connection's or token's cap is reset: what one user holds in the hub for
 * a site stays bounded even when many requests started at once. The reset
 * runs from the loop: we may be inside either side's callbacks here. */
static void stall_check(struct proxy *p)
{
    int now = p->r != NULL && p->ts != NULL && p->uncredited >= STALL_BYTES;

    if (now == p->stalled)
        return;
    if (now && stall_cap_reached(p)) {
        uv_timer_start(&p->timer, stall_kill, 0, 0);
        return;
    }
    set_stalled(p, now);
}

static void proxy_free_cb(uv_handle_t *h)
{
    struct proxy *p = h->data;
    buf_free(&p->up);
    free(p);
}

static void proxy_maybe_free(struct proxy *p)
{
    if (p->r != NULL || p->ts != NULL || p->freeing)
        return;
    p->freeing = 1;
    set_stalled(p, 0);
    hold_put(&p->by_conn);
    hold_put(&p->by_token);
    uv_close((uv_handle_t *)&p->timer, proxy_free_cb);
}

static void head_timeout(uv_timer_t *t)
{
    struct proxy *p = t->data;
    struct ureq *r = p->r;

    if (p->ts == NULL || r == NULL || r->resp_started)
        return;
    tunnel_stream_cancel(p->ts);
    p->ts = NULL;
    p->r = NULL;
    ureq_set_handler(r, NULL, NULL);
    ureq_error(r, 504, "gateway_timeout", "the site did not answer in time");
    proxy_maybe_free(p);
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

    if (p->ts != NULL)
        tunnel_stream_cancel(p->ts);
    p->ts = NULL;
    p->r = NULL;
    if (r != NULL) {
        ureq_set_handler(r, NULL, NULL);
        if (!r->resp_started)
            ureq_error(r, status, code, why);
        else
            ureq_reset(r); /* the client must not take a short body for a whole one */
    }
    proxy_maybe_free(p);
}

/* --- user side --- */

static void u_body(struct ureq *r, const uint8_t *data, size_t len)
{
    struct proxy *p = r->hctx;
    if (p->ts == NULL) {
        ureq_credit_body(r, len);
        return;
    }
    if (buf_append(&p->up, data, len) != 0) {
        proxy_fail(p, 500, "internal", "out of memory");
        return;
    }
    if (p->up.len >= UP_HIGH && !p->up_paused) {
        p->up_paused = 1;
        ureq_pause_body(r, 1);
    }
    tunnel_stream_resume(p->ts);
}

static void u_end(struct ureq *r)
{
    struct proxy *p = r->hctx;
    p->up_eof = 1;
    if (p->ts != NULL)
        tunnel_stream_resume(p->ts);
}

static void u_abort(struct ureq *r)
{
    struct proxy *p = r->hctx;
    p->r = NULL;
    if (p->ts != NULL) {
        tunnel_stream_cancel(p->ts);
        p->ts = NULL;
    }
    proxy_maybe_free(p);
}

static void u_drain(struct ureq *r)
{
    credit(r->hctx);
}

static const struct ureq_handler user_side = {u_body, u_end, u_abort, u_drain, 1};

/* Ends the user side; r may be freed inside ureq_respond_end. */
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
    if (p->r == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        if (nva[i].namelen == 14 &&
            strncasecmp((const char *)nva[i].name, "content-length", 14) == 0)
            cl = hfield_content_length((const char *)nva[i].value, nva[i].valuelen);
    ureq_respond_head(p->r, status, nva, n, cl);
}

static void t_data(void *arg, const uint8_t *data, size_t len)
{
    struct proxy *p = arg;
    p->uncredited += len;
    if (p->r != NULL && ureq_respond_body(p->r, data, len) != 0) {
        proxy_fail(p, 502, "bad_gateway", "the hub could not pass the response on");
        return;
    }
    credit(p);
}

static void t_end(void *arg)
{
    struct proxy *p = arg;
    p->ts = NULL;
    if (p->r != NULL) {
        if (!p->r->resp_started)
            ureq_error(p->r, 502, "bad_gateway", "the site ended the response without a head");
        else
            user_finish(p);
        p->r = NULL;
    }
    proxy_maybe_free(p);
}

static void t_error(void *arg, int status, const char *why)
{
    struct proxy *p = arg;

    p->ts = NULL; /* finished: nothing to cancel */
    proxy_fail(p, status,
               status == 503   ? "site_offline"
               : status == 504 ? "gateway_timeout"
                               : "bad_gateway",
               why);
}

static size_t t_read_body(void *arg, uint8_t *dst, size_t cap, int *eof)
{
    struct proxy *p = arg;
    size_t n = p->up.len < cap ? p->up.len : cap;

    if (n > 0) {
        memcpy(dst, buf_head(&p->up), n);
        buf_consume(&p->up, n);
        if (p->r != NULL)
            ureq_credit_body(p->r, n);
    }
    if (p->up_paused && p->up.len < UP_LOW && p->r != NULL) {
        p->up_paused = 0;
        ureq_pause_body(p->r, 0);
    }
    *eof = p->up_eof && p->up.len == 0;
    return n;
}

static const struct tstream_ops tunnel_side = {t_head, t_data, t_end, t_error, t_read_body};

/* 1 if the user's header name does not go on to the service. */
static int skip_header(const struct ureq *r, const char *name)
{
    static const char *const drop[] = {"authorization", "cookie", "proxy-authorization",
                                       "host",          "expect", "content-length"};
    size_t nl = strlen(name);

    for (size_t i = 0; i < sizeof(drop) / sizeof(drop[0]); i++)
        if (strcmp(name, drop[i]) == 0)
            return 1;
    /* Routing (tether-service) and who is asking are the hub's to say. */
    if (fwd_reserved(name) || h2_hop_by_hop(name, nl))
        return 1;
    /* So are the headers the user's Connection names (RFC 9110 7.6.1). */
    for (size_t i = 0; i < r->n_hdrs; i++)
        if (strcmp(r->hdrs[i].name, "connection") == 0 &&
            hfield_token_listed(r->hdrs[i].value, strlen(r->hdrs[i].value), name, nl))
            return 1;
    return 0;
}

void proxy_start(struct hub *h, struct ureq *r, struct tunnel *t, const char *service,
                 const char *path, const char *user)
{
    nghttp2_nv nva[H2_HEADER_COUNT_MAX + 10];
    struct proxy *p;
    struct fwd fw;
    char cl[24];
    size_t n = 0;
    int rc;

    p = calloc(1, sizeof(*p));
    if (p == NULL) {
        ureq_error(r, 500, "internal", "out of memory");
        return;
    }
    p->h = h;
    p->r = r;
    buf_init(&p->up);
    uv_timer_init(h->loop, &p->timer);
    p->timer.data = p;
    snprintf(p->site, sizeof(p->site), "%s", t->site);
    nva[n++] = h2_nv(":method", 7, r->method, strlen(r->method));
    nva[n++] = h2_nv(":scheme", 7, "http", 4);
    nva[n++] = h2_nv(":authority", 10, service, strlen(service));
    nva[n++] = h2_nv(":path", 5, path, strlen(path));
    nva[n++] = h2_nv("tether-service", 14, service, strlen(service));
    nva[n++] = h2_nv("x-tether-user", 13, user, strlen(user));
    /* One set of forwarding headers, all the hub's own (docs/api.md). */
    fwd_build(&fw, r->remote, ureq_header(r, "host"));
    nva[n++] = h2_nv("x-forwarded-for", 15, fw.addr, strlen(fw.addr));
    nva[n++] = h2_nv("x-forwarded-proto", 17, "https", 5);
    if (fw.host[0] != '\0')
        nva[n++] = h2_nv("x-forwarded-host", 16, fw.host, strlen(fw.host));
    nva[n++] = h2_nv("forwarded", 9, fw.forwarded, strlen(fw.forwarded));
    if (r->content_length >= 0 && r->has_body) {
        snprintf(cl, sizeof(cl), "%lld", (long long)r->content_length);
        nva[n++] = h2_nv("content-length", 14, cl, strlen(cl));
    }
    for (size_t i = 0; i < r->n_hdrs && n < H2_HEADER_COUNT_MAX; i++) {
        if (skip_header(r, r->hdrs[i].name))
            continue;
        nva[n++] = h2_nv(r->hdrs[i].name, strlen(r->hdrs[i].name), r->hdrs[i].value,
                         strlen(r->hdrs[i].value));
    }
    ureq_set_handler(r, &user_side, p);
    /* A user who stops reading holds a stream window (1 MiB) in the hub and
     * one of the site's stream slots per request: bounded per connection
     * and per token (stall_check), so others keep theirs. */
    p->by_conn = hold_take(h, t->site_id, r->uc, NULL);
    p->by_token = p->by_conn ? hold_take(h, t->site_id, NULL, user) : NULL;
    if (p->by_token == NULL) {
        proxy_fail(p, 500, "internal", "out of memory");
        return;
    }
    if (stall_cap_reached(p)) {
        proxy_fail(p, 429, "too_many_requests",
                   "too many stalled responses from this site on this connection or token");
        return;
    }
    rc = tunnel_stream_open(t, nva, n, r->has_body, &tunnel_side, p, &p->ts);
    if (rc != 0) {
        p->ts = NULL;
        proxy_fail(p, 503, rc == -EBUSY ? "site_busy" : "site_offline",
                   rc == -EBUSY ? "the site's tunnel carries its maximum of requests"
                                : "the site's tunnel is closing");
        return;
    }
    h->n_proxy_requests++;
    /* The site's own upstream timeout normally answers first (with its 504);
     * this catches a site that cannot answer at all. */
    if (h->cfg.request_timeout_ms > 0)
        uv_timer_start(&p->timer, head_timeout, h->cfg.request_timeout_ms, 0);
}
