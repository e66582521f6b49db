/* Proxying a user request to a site's service through its tunnel, streamed with end-to-end
 * backpressure. */
/* SPDX-License-Identifier: MIT */
#include "proxy.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../common/log.h"
#include "tunnel.h"

/* Upload bytes held for the tunnel before the client is paused. */
#define UP_HIGH (256 * 1024)
#define UP_LOW  (64 * 1024)

struct proxy {
    struct hub *h;
    struct ureq *r;     /* NULL once the user side is finished */
    struct tstream *ts; /* NULL once the tunnel side is finished */
    struct buf up;
    int up_eof;
    int up_paused;
    size_t uncredited;
    uint64_t started_ms;
    uv_timer_t timer; /* no response head within request_timeout_ms: 504 */
    int freeing;
    char site[TOKEN_NAME_MAX + 1];
};

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

static void credit(struct proxy *p)
{
    if (p->ts == NULL || p->uncredited == 0)
        return;
    if (p->r != NULL && ureq_backlog(p->r) >= CONN_HIGH_WATER)
        return; /* the client is slow: hold the site's window shut */
    tunnel_stream_consume(p->ts, p->uncredited);
    p->uncredited = 0;
}

/* --- user side --- */

static void u_body(struct ureq *r, const uint8_t *data, size_t len)
{
    struct proxy *p = r->hctx;
    if (p->ts == NULL) {
        ureq_credit_body(r, len);
        return;
    }
    if (buf_append(&p->up, data, len) != 0)
        return;
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

static const struct ureq_handler user_side = {u_body, u_end, u_abort, u_drain};

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
            strncasecmp((const char *)nva[i].name, "content-length", 14) == 0) {
            char tmp[24];
            snprintf(tmp, sizeof(tmp), "%.*s", (int)(nva[i].valuelen < 20 ? nva[i].valuelen : 20),
                     nva[i].value);
            cl = strtoll(tmp, NULL, 10);
        }
    ureq_respond_head(p->r, status, nva, n, cl);
}

static void t_data(void *arg, const uint8_t *data, size_t len)
{
    struct proxy *p = arg;
    p->uncredited += len;
    if (p->r != NULL)
        ureq_respond_body(p->r, data, len);
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
    struct ureq *r = p->r;

    p->ts = NULL;
    p->r = NULL;
    if (r != NULL) {
        ureq_set_handler(r, NULL, NULL);
        if (!r->resp_started) {
            const char *code = status == 503   ? "site_offline"
                               : status == 504 ? "gateway_timeout"
                                               : "bad_gateway";
            ureq_error(r, status, code, why);
        } else {
            /* Mid-body: the client must see a broken response, not a short
             * one that looks complete. */
            ureq_reset(r);
        }
    }
    proxy_maybe_free(p);
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

static int skip_header(const char *name)
{
    static const char *const drop[] = {"authorization", "cookie",          "proxy-authorization",
                                       "host",          "x-forwarded-for", "x-tether-user",
                                       "expect",        "content-length"};
    for (size_t i = 0; i < sizeof(drop) / sizeof(drop[0]); i++)
        if (strcmp(name, drop[i]) == 0)
            return 1;
    if (strncmp(name, "x-tether-", 9) == 0)
        return 1;
    return h2_hop_by_hop(name, strlen(name));
}

void proxy_start(struct hub *h, struct ureq *r, struct tunnel *t, const char *service,
                 const char *path, const char *user)
{
    nghttp2_nv nva[H2_HEADER_COUNT_MAX + 10];
    struct proxy *p;
    char cl[24], xff[64];
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
    snprintf(xff, sizeof(xff), "%s", r->remote);
    if (strrchr(xff, ':') != NULL && xff[0] != '[')
        *strrchr(xff, ':') = '\0';
    nva[n++] = h2_nv("x-forwarded-for", 15, xff, strlen(xff));
    nva[n++] = h2_nv("x-forwarded-proto", 17, "https", 5);
    if (r->content_length >= 0 && r->has_body) {
        snprintf(cl, sizeof(cl), "%lld", (long long)r->content_length);
        nva[n++] = h2_nv("content-length", 14, cl, strlen(cl));
    }
    for (size_t i = 0; i < r->n_hdrs && n < H2_HEADER_COUNT_MAX; i++) {
        if (skip_header(r->hdrs[i].name))
            continue;
        nva[n++] = h2_nv(r->hdrs[i].name, strlen(r->hdrs[i].name), r->hdrs[i].value,
                         strlen(r->hdrs[i].value));
    }
    ureq_set_handler(r, &user_side, p);
    rc = tunnel_stream_open(t, nva, n, r->has_body, &tunnel_side, p, &p->ts);
    if (rc != 0) {
        p->ts = NULL;
        p->r = NULL;
        ureq_set_handler(r, NULL, NULL);
        if (rc == -EBUSY)
            ureq_error(r, 503, "site_busy", "too many requests are waiting for this site");
        else
            ureq_error(r, 503, "site_offline", "the site's tunnel is closing");
        proxy_maybe_free(p);
        return;
    }
    h->n_proxy_requests++;
    /* The site's own upstream timeout normally answers first (with its 504);
     * this catches a site that cannot answer at all. */
    if (h->cfg.request_timeout_ms > 0)
        uv_timer_start(&p->timer, head_timeout, h->cfg.request_timeout_ms, 0);
}
