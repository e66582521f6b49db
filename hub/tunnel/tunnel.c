/* A site's live tunnel on the hub: TLS-authenticated connection carrying an HTTP/2 client session
 * to the site. */
/* SPDX-License-Identifier: MIT */
#include "tunnel_int.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/log.h"
#include "../store/recorder.h"
#include "sitemap.h"

/* The connection window is credited as bytes arrive (on_data_chunk), so it
 * only paces the site; TUNNEL_STREAM_WINDOW (tunnel.h) bounds each stream. */
#define TUNNEL_CONN_WINDOW (64 << 20)
/* Requests in flight on one tunnel, open or waiting in nghttp2 for one of
 * the site's stream slots: past this the hub answers 503 at once instead of
 * queueing without bound. */
#define TUNNEL_MAX_STREAMS 1024

struct tstream {
    struct tunnel *t;
    int32_t id;
    const struct tstream_ops *ops; /* NULL once cancelled or finished */
    void *arg;
    int head_seen;
    int remote_ended;
    int released; /* no longer counted in n_streams (cancelled while queued) */
    int opening;  /* inside tunnel_stream_open: a close is reported by its return */
    int closed;   /* nghttp2 closed it while opening */
    size_t unconsumed;
    struct h2_hdr_budget budget;
    struct buf hdrs; /* name\0value\0 pairs of the response head */
    unsigned n_hdrs;
    int status;
    LIST_ENTRY(tstream) link; /* in t->streams */
};

/* When the site was last heard, in unix seconds: last_heard_ms is the loop's
 * monotonic clock (an offline site once showed 1970 from it). */
static int64_t last_seen(const struct tunnel *t)
{
    return hub_now() - (int64_t)((uv_now(t->hub->loop) - t->last_heard_ms) / 1000);
}

static void tunnel_conn_handshake(struct conn *c) {}

static int tunnel_conn_data(struct conn *c, const uint8_t *data, size_t len)
{
    struct tunnel *t = c->owner;
    int rc = h2_feed(&t->h2, data, len);
    if (rc < 0) {
        snprintf(t->close_reason, sizeof(t->close_reason), "http2 error: %s", nghttp2_strerror(rc));
        return -EPROTO;
    }
    if (h2_finished(&t->h2))
        conn_close_after_flush(c, t->close_reason[0] ? t->close_reason : "session finished");
    return 0;
}

static void tunnel_conn_drain(struct conn *c)
{
    struct tunnel *t = c->owner;
    if (h2_send(&t->h2) < 0)
        conn_close(c, "http2 send error");
}

void tunnel_free_services(struct tunnel *t)
{
    for (size_t i = 0; i < t->n_services; i++)
        free(t->services[i]);
    free(t->services);
    t->services = NULL;
    t->n_services = 0;
    for (size_t i = 0; i < t->n_restricted; i++)
        free(t->restricted[i]);
    free(t->restricted);
    t->restricted = NULL;
    t->n_restricted = 0;
}

static void tunnel_free_cb(uv_handle_t *h)
{
    struct tunnel *t = h->data;

    assert(t->closing && t->conn == NULL);
    assert(LIST_EMPTY(&t->streams) && t->site_entry.where == SITEMAP_NONE);
    tunnel_free_services(t);
    free(t->services_json);
    free(t->restricted_json);
    free(t);
}

int tunnel_offers(const struct tunnel *t, const char *service)
{
    if (!t->hello_done)
        return 1;
    for (size_t i = 0; i < t->n_services; i++)
        if (strcmp(t->services[i], service) == 0)
            return 1;
    return 0;
}

int tunnel_restricts(const struct tunnel *t, const char *service)
{
    if (!t->hello_done)
        return -1;
    for (size_t i = 0; i < t->n_restricted; i++)
        if (strcmp(t->restricted[i], service) == 0)
            return 1;
    return 0;
}

static void stream_unlink(struct tstream *s)
{
    struct tunnel *t = s->t;

    LIST_REMOVE(s, link);
    if (!s->released) {
        assert(t->n_streams > 0);
        t->n_streams--;
    }
    buf_free(&s->hdrs);
    free(s);
}

/* n_streams counts the streams of the list not yet released. O(streams):
 * checked where a tunnel's streams all go at once. */
static void check_streams(const struct tunnel *t)
{
#ifndef NDEBUG
    const struct tstream *s;
    size_t n = 0;

    LIST_FOREACH(s, &t->streams, link)
    {
        assert(s->t == t);
        n += !s->released;
    }
    assert(n == t->n_streams);
#else
    (void)t;
#endif
}

/* --- the site map's view of tunnels (sitemap.h) --- */

static int entry_is_open(const struct sitemap_entry *e)
{
    return !TUNNEL_OF_ENTRY(e)->closing;
}

static void entry_kill(struct sitemap_entry *e, const char *why)
{
    tunnel_kill(TUNNEL_OF_ENTRY(e), why);
}

static const struct sitemap_ops site_ops = {entry_is_open, entry_kill};

struct tunnel *hub_tunnel_find(struct hub *h, int64_t site_id)
{
    struct sitemap_entry *e = sitemap_find(&h->tunnels, site_id);

    return e ? TUNNEL_OF_ENTRY(e) : NULL;
}

void hub_tunnel_cut(struct hub *h, int64_t site_id, const char *why)
{
    sitemap_cut(&h->tunnels, site_id, why, &site_ops);
}

struct each_arg {
    void (*fn)(struct tunnel *t, void *arg);
    void *arg;
};

static void each_one(struct sitemap_entry *e, void *arg)
{
    struct each_arg *ea = arg;

    ea->fn(TUNNEL_OF_ENTRY(e), ea->arg);
}

void hub_tunnel_each(struct hub *h, void (*fn)(struct tunnel *t, void *arg), void *arg)
{
    struct each_arg ea = {fn, arg};

    (void)sitemap_each(&h->tunnels, each_one, &ea);
}

int tunnel_is_standby(const struct tunnel *t)
{
    return t->site_entry.where == SITEMAP_STANDBY;
}

void tunnel_take_over(struct tunnel *t)
{
    sitemap_take_over(&t->hub->tunnels, &t->site_entry, &site_ops);
}

/* The registry's records of a tunnel (its session, when the site was last
 * seen) are queued to the recorder, which writes them off the loop; a hub
 * without one writes them here. They are records, not permissions: a site
 * whose row cannot be written keeps its tunnel (docs/decisions.md). */
static int record_open(struct tunnel *t, const char *peer)
{
    struct hub *h = t->hub;
    int64_t id = 0;
    int rc;

    if (h->rec != NULL)
        return recorder_session_open(h->rec, t->site_id, peer, "", t->connected_since,
                                     &t->session_key);
    rc = registry_session_open(h->reg, t->site_id, peer, "", t->connected_since, &id);
    t->session_key = rc == 0 ? (uint64_t)id : 0;
    return rc;
}

static void record_close(struct tunnel *t, int64_t now, const char *why, int64_t in, int64_t out)
{
    struct hub *h = t->hub;

    if (h->rec != NULL)
        (void)recorder_session_close(h->rec, t->session_key, now, why, in, out);
    else if (t->session_key != 0)
        (void)registry_session_close(h->reg, (int64_t)t->session_key, now, why, in, out);
}

void tunnel__record_seen(struct tunnel *t, int64_t at, const char *agent_version,
                         const char *services_json, const char *remote_addr)
{
    struct hub *h = t->hub;

    if (h->rec != NULL)
        (void)recorder_site_seen(h->rec, t->site_id, at, agent_version, services_json, remote_addr);
    else
        (void)registry_site_seen(h->reg, t->site_id, at, agent_version, services_json, remote_addr);
}

static void tunnel_conn_close(struct conn *c, const char *reason)
{
    struct tunnel *t = c->owner;
    struct hub *h = t->hub;
    const char *why = t->close_reason[0] ? t->close_reason : reason;
    int64_t now = hub_now();

    t->closing = 1;
    check_streams(t);
    while (!LIST_EMPTY(&t->streams)) {
        struct tstream *s = LIST_FIRST(&t->streams);
        const struct tstream_ops *ops = s->ops;
        s->ops = NULL;
        if (ops != NULL)
            ops->on_error(s->arg, TSTREAM_ERR_GONE, "site disconnected");
        stream_unlink(s);
    }
    assert(t->n_streams == 0);
    h2_free(&t->h2);
    sitemap_remove(&h->tunnels, &t->site_entry);
    record_close(t, now, why, (int64_t)c->bytes_in, (int64_t)c->bytes_out);
    stats_site_untap(&t->tap);
    h->n_conns[STATS_CONN_TUNNEL]--;
    tunnel__record_seen(t, last_seen(t), NULL, NULL, NULL);
    events_site(&h->subs, EVENTS_SITE_OFFLINE, t->site);
    log_event(LOG_INFO, "site_disconnected", "site=%s remote=%s reason=%s duration_s=%lld", t->site,
              c->peer, log_q(why), (long long)(now - t->connected_since));
    t->conn = NULL;
    uv_timer_stop(&t->ping_timer);
    uv_close((uv_handle_t *)&t->ping_timer, tunnel_free_cb);
}

static const struct conn_ops tunnel_conn_ops = {
    .on_handshake = tunnel_conn_handshake,
    .on_data = tunnel_conn_data,
    .on_drain = tunnel_conn_drain,
    .on_close = tunnel_conn_close,
};

/* --- nghttp2 callbacks (client side) --- */

static int on_header(nghttp2_session *session, const nghttp2_frame *frame, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *user_data)
{
    struct tstream *s = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
    if (s == NULL || frame->hd.type != NGHTTP2_HEADERS)
        return 0;
    if (h2_header_budget(&s->budget, namelen, valuelen) != 0)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    if (namelen == 7 && memcmp(name, ":status", 7) == 0) {
        /* A status users may not see resets the stream: the user gets a 502. */
        s->status = h2_status_parse(value, valuelen);
        return s->status < 0 ? NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE : 0;
    }
    if (h2_pairs_add(&s->hdrs, &s->n_hdrs, (const char *)name, namelen, (const char *)value,
                     valuelen))
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* this stream only, not the tunnel */
    return 0;
}

static void deliver_head(struct tstream *s)
{
    nghttp2_nv nva[H2_HEADER_COUNT_MAX];
    size_t n = h2_pairs_nv(&s->hdrs, s->n_hdrs, nva, H2_HEADER_COUNT_MAX);

    s->head_seen = 1;
    if (s->ops != NULL)
        s->ops->on_head(s->arg, s->status, nva, n);
    buf_free(&s->hdrs);
    s->n_hdrs = 0;
}

/* A trailing HEADERS frame (nghttp2 lets one through only with END_STREAM
 * and without pseudo-headers). */
static void deliver_trailers(struct tstream *s)
{
    nghttp2_nv nva[H2_HEADER_COUNT_MAX];
    size_t n = h2_pairs_nv(&s->hdrs, s->n_hdrs, nva, H2_HEADER_COUNT_MAX);

    if (s->ops != NULL && s->ops->on_trailers != NULL && n > 0)
        s->ops->on_trailers(s->arg, nva, n);
    buf_free(&s->hdrs);
    s->n_hdrs = 0;
}

static int on_frame_recv(nghttp2_session *session, const nghttp2_frame *frame, void *user_data)
{
    struct tunnel *t = user_data;
    struct tstream *s;

    t->last_heard_ms = uv_now(t->hub->loop);
    t->ping_outstanding = 0;
    if (frame->hd.stream_id == 0) {
        if (frame->hd.type == NGHTTP2_GOAWAY)
            snprintf(t->close_reason, sizeof(t->close_reason), "site sent goaway");
        return 0;
    }
    s = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
    if (s == NULL)
        return 0;
    if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_RESPONSE) {
        if (s->status >= 100 && s->status < 200) {
            buf_free(&s->hdrs); /* interim response */
            s->n_hdrs = 0;
            s->status = 0;
        } else if (!s->head_seen) {
            if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)
                s->remote_ended = 1; /* a head that is the whole answer */
            deliver_head(s);
        }
    } else if (frame->hd.type == NGHTTP2_HEADERS && s->head_seen) {
        deliver_trailers(s);
    }
    if ((frame->hd.flags & NGHTTP2_FLAG_END_STREAM) && !s->remote_ended) {
        s->remote_ended = 1;
        if (s->ops != NULL && s->ops->on_remote_end != NULL && s->head_seen)
            s->ops->on_remote_end(s->arg);
    }
    return 0;
}

static int on_data_chunk(nghttp2_session *session, uint8_t flags, int32_t stream_id,
                         const uint8_t *data, size_t len, void *user_data)
{
    struct tunnel *t = user_data;
    struct tstream *s = nghttp2_session_get_stream_user_data(session, stream_id);

    t->last_heard_ms = uv_now(t->hub->loop);
    /* The connection window comes back at once: the bytes are in the hub's
     * hands now, and a user who does not read them must not hold credit
     * other streams need. Each stream's own window still closes until its
     * user takes the bytes (tunnel_stream_consume), so a stream keeps at
     * most one stream window in the hub. */
    nghttp2_session_consume_connection(session, len);
    if (s == NULL || s->ops == NULL) {
        nghttp2_session_consume_stream(session, stream_id, len);
        return 0;
    }
    s->unconsumed += len;
    s->ops->on_data(s->arg, data, len);
    return 0;
}

static int on_stream_close(nghttp2_session *session, int32_t stream_id, uint32_t error_code,
                           void *user_data)
{
    struct tstream *s = nghttp2_session_get_stream_user_data(session, stream_id);
    const struct tstream_ops *ops;

    if (s == NULL)
        return 0;
    nghttp2_session_set_stream_user_data(session, stream_id, NULL);
    if (s->opening) {
        /* Its HEADERS could not go (the site sent GOAWAY): the caller of
         * tunnel_stream_open hears it from its return value, not from a
         * callback run before that call returned. */
        s->closed = 1;
        return 0;
    }
    ops = s->ops;
    s->ops = NULL;
    if (ops != NULL) {
        if (error_code == NGHTTP2_NO_ERROR && s->remote_ended && s->head_seen)
            ops->on_end(s->arg);
        else if (error_code == NGHTTP2_REFUSED_STREAM)
            ops->on_error(s->arg, TSTREAM_ERR_REFUSED, "site refused the stream");
        else
            ops->on_error(s->arg, TSTREAM_ERR_RESET, "site reset the stream");
    }
    stream_unlink(s);
    return 0;
}

static ssize_t read_body_cb(nghttp2_session *session, int32_t stream_id, uint8_t *dst,
                            size_t length, uint32_t *data_flags, nghttp2_data_source *source,
                            void *user_data)
{
    struct tstream *s = source->ptr;
    int eof = 0;
    size_t n;

    if (s == NULL || s->ops == NULL) {
        *data_flags |= NGHTTP2_DATA_FLAG_EOF;
        return 0;
    }
    if (s->ops->body_buf != NULL) {
        struct buf *b = s->ops->body_buf(s->arg, &eof);
        int deferred = 0;
        ssize_t k = h2_body_read(b, eof, &deferred, length, data_flags);

        /* The bytes go out in send_body_cb (NO_COPY). */
        if (k < 0)
            return k;
        n = (size_t)k;
        eof = (*data_flags & NGHTTP2_DATA_FLAG_EOF) != 0;
    } else {
        n = s->ops->read_body(s->arg, dst, length, &eof);
    }
    if (eof) {
        nghttp2_nv tnv[H2_HEADER_COUNT_MAX];
        size_t tn = 0;

        *data_flags |= NGHTTP2_DATA_FLAG_EOF;
        if (s->ops->body_trailers != NULL)
            tn = s->ops->body_trailers(s->arg, tnv, H2_HEADER_COUNT_MAX);
        /* The request's trailers end the stream instead of the DATA. */
        if (tn > 0 && nghttp2_submit_trailer(session, stream_id, tnv, tn) == 0)
            *data_flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
    } else if (n == 0)
        return NGHTTP2_ERR_DEFERRED;
    return (ssize_t)n;
}

static int send_body_cb(nghttp2_session *session, nghttp2_frame *frame, const uint8_t *framehd,
                        size_t length, nghttp2_data_source *source, void *user_data)
{
    struct tunnel *t = user_data;
    struct tstream *s = source->ptr;
    struct buf *b;
    int eof = 0;

    /* Nothing runs between read_body_cb and this call that could end s. */
    if (s == NULL || s->ops == NULL || s->ops->body_buf == NULL)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    b = s->ops->body_buf(s->arg, &eof);
    if (h2_send_data_from(&t->h2, framehd, length, b) != 0)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    if (s->ops->body_taken != NULL)
        s->ops->body_taken(s->arg, length);
    return 0;
}

/* --- liveness --- */

static void force_close_cb(uv_timer_t *timer)
{
    struct tunnel *t = timer->data;
    if (t->conn != NULL)
        conn_close(t->conn, t->close_reason[0] ? t->close_reason : "closed");
}

static void ping_cb(uv_timer_t *timer)
{
    struct tunnel *t = timer->data;
    uint64_t now = uv_now(t->hub->loop);
    uint64_t iv = t->hub->cfg.ping_interval_ms;

    if (t->conn == NULL || t->closing)
        return;
    if (tunnel_is_standby(t) && !t->hello_done) {
        /* A standby connection has one ping interval to answer its hello.
         * One whose answer never ends, while it answers PINGs, would stay for
         * ever: a stolen key could hold any number of them. */
        tunnel_kill(t, "no answer to the hello in time");
        return;
    }
    if (now - t->last_heard_ms >= 2 * iv) {
        snprintf(t->close_reason, sizeof(t->close_reason), "ping timeout (silent %llu ms)",
                 (unsigned long long)(now - t->last_heard_ms));
        conn_close(t->conn, t->close_reason);
        return;
    }
    tunnel_events_tick(t);
    if (!t->ping_outstanding) {
        nghttp2_submit_ping(t->h2.s, NGHTTP2_FLAG_NONE, NULL);
        t->ping_outstanding = 1;
        h2_send(&t->h2);
    }
    /* Most tunnels are idle most of the time: between two ticks they hold
     * no buffer (docs/benchmarks.md, idle sites). The ping just sent waits
     * in the connection's queue, which keeps it. */
    h2_trim(&t->h2);
    conn_trim(t->conn);
    /* Wake at the silence deadline when it comes before the next tick: a
     * dead peer is dropped two intervals after it went quiet, not three. */
    if (2 * iv - (now - t->last_heard_ms) < iv)
        uv_timer_start(&t->ping_timer, ping_cb, 2 * iv - (now - t->last_heard_ms), iv);
}

static const struct h2_callbacks tunnel_h2_callbacks = {
    .header = on_header,
    .frame_recv = on_frame_recv,
    .data_chunk = on_data_chunk,
    .stream_close = on_stream_close,
    .send_data = send_body_cb,
};

/* The site never opens streams toward the hub. */
static const struct h2_limits tunnel_h2_limits = {0, TUNNEL_STREAM_WINDOW, TUNNEL_CONN_WINDOW};

/* FNV-1a: a revoked key's tunnel is found by the re-check of hub/cluster.c
 * (a collision keeps one tunnel whose key changed: 2^-64). */
static uint64_t key_hash(const char *pin)
{
    uint64_t x = 14695981039346656037ull;

    for (const char *p = pin; p != NULL && *p; p++)
        x = (x ^ (uint8_t)*p) * 1099511628211ull;
    return x;
}

int tunnel_attach(struct hub *h, struct conn *c, const struct reg_site *site)
{
    struct tunnel *t = calloc(1, sizeof(*t));
    int rc = -ENOMEM;

    if (t == NULL)
        goto out;
    t->hub = h;
    t->conn = c;
    t->site_id = site->id;
    t->key_hash = key_hash(site->pin);
    sitemap_entry_init(&t->site_entry, site->id);
    LIST_INIT(&t->streams);
    snprintf(t->site, sizeof(t->site), "%s", site->name);
    t->services_json = strdup("[]");
    t->restricted_json = strdup("[]");
    t->connected_since = hub_now();
    t->last_heard_ms = uv_now(h->loop);
    if (t->services_json == NULL || t->restricted_json == NULL)
        goto out;
    /* The session's frame buffer on pages of its own: the ping tick hands
     * them back while the tunnel is quiet (h2_trim). */
    rc = h2_open(&t->h2, c, H2_ROLE_HUB_TUNNEL, &tunnel_h2_callbacks, &tunnel_h2_limits, t);
    if (rc != 0)
        goto out;
    uv_timer_init(h->loop, &t->ping_timer);
    t->ping_timer.data = t;
    c->ops = &tunnel_conn_ops;
    c->owner = t;

    /* A second tunnel of a site waits on standby and takes over at its
     * hello answer (hello_end). */
    (void)sitemap_arrive(&h->tunnels, &t->site_entry, &site_ops);
    /* The history row is a record, not a permission: a site whose row cannot
     * be written (disk full) keeps its tunnel (docs/decisions.md). */
    rc = record_open(t, c->peer);
    if (rc != 0)
        log_event(LOG_WARN, "session_store_failed", "site=%s op=open error=%s", t->site,
                  log_q(strerror(-rc)));
    tunnel__record_seen(t, t->connected_since, NULL, NULL, c->peer);
    h->n_tunnels_accepted++;
    h->n_conns[STATS_CONN_TUNNEL]++;
    /* Out of memory the site goes uncounted in /metrics, and is served. */
    (void)stats_site_tap(h, t->site_id, &t->tap, c);
    log_event(LOG_INFO, "site_connected", "site=%s remote=%s", t->site, c->peer);
    uv_timer_start(&t->ping_timer, ping_cb, h->cfg.ping_interval_ms, h->cfg.ping_interval_ms);
    tunnel_send_hello(t);
    h2_send(&t->h2);
    rc = 0;
out:
    if (rc != 0 && t != NULL) {
        h2_free(&t->h2);
        free(t->services_json);
        free(t->restricted_json);
        free(t);
    }
    return rc;
}

int tunnel_stream_head_ended(const struct tstream *s)
{
    return s->remote_ended;
}

int tunnel_stream_open(struct tunnel *t, const nghttp2_nv *nva, size_t n, int has_body,
                       const struct tstream_ops *ops, void *arg, struct tstream **out)
{
    struct tstream *s;
    nghttp2_data_provider prd;
    int32_t id;

    if (t->closing || t->conn == NULL || t->conn->closing || t->hub->draining)
        return -ENOTCONN;
    if (t->n_streams >= TUNNEL_MAX_STREAMS)
        return -EBUSY;
    s = calloc(1, sizeof(*s));
    if (s == NULL)
        return -ENOMEM;
    s->t = t;
    s->ops = ops;
    s->arg = arg;
    buf_init(&s->hdrs);
    prd.source.ptr = s;
    prd.read_callback = read_body_cb;
    id = nghttp2_submit_request(t->h2.s, NULL, nva, n, has_body ? &prd : NULL, s);
    if (id < 0) {
        free(s);
        return -EIO;
    }
    s->id = id;
    LIST_INSERT_HEAD(&t->streams, s, link);
    t->n_streams++;
    t->n_opened++;
    s->opening = 1;
    h2_send(&t->h2);
    s->opening = 0;
    if (s->closed) {
        stream_unlink(s);
        return -ENOTCONN;
    }
    *out = s;
    return 0;
}

void tunnel_stream_resume(struct tstream *s)
{
    if (s->ops == NULL || s->t->h2.s == NULL)
        return;
    nghttp2_session_resume_data(s->t->h2.s, s->id);
    h2_send(&s->t->h2);
}

void tunnel_stream_consume(struct tstream *s, size_t len)
{
    if (s->t->h2.s == NULL)
        return;
    if (len > s->unconsumed)
        len = s->unconsumed;
    s->unconsumed -= len;
    nghttp2_session_consume_stream(s->t->h2.s, s->id, len);
    h2_send(&s->t->h2);
}

void tunnel_stream_cancel(struct tstream *s)
{
    s->ops = NULL;
    /* A request still waiting in nghttp2 for a site slot stays there until
     * a slot frees; it must not keep its place under TUNNEL_MAX_STREAMS. */
    if (!s->released) {
        s->released = 1;
        assert(s->t->n_streams > 0);
        s->t->n_streams--;
    }
    if (s->t->h2.s == NULL)
        return;
    nghttp2_submit_rst_stream(s->t->h2.s, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_CANCEL);
    h2_send(&s->t->h2);
}

void tunnel_kill(struct tunnel *t, const char *reason)
{
    if (t->closing || t->conn == NULL)
        return;
    t->closing = 1;
    snprintf(t->close_reason, sizeof(t->close_reason), "%s", reason);
    if (t->h2.s != NULL) {
        nghttp2_submit_goaway(t->h2.s, NGHTTP2_FLAG_NONE, 0, NGHTTP2_NO_ERROR,
                              (const uint8_t *)reason, strlen(reason));
        h2_send(&t->h2);
    }
    conn_close_after_flush(t->conn, reason);
    /* A peer that does not read must not keep a cut tunnel alive. */
    uv_timer_start(&t->ping_timer, force_close_cb, 1000, 0);
}

void tunnel_drain(struct tunnel *t, unsigned reconnect_window_ms)
{
    char why[64];
    int n;

    if (t->h2.s == NULL || t->closing)
        return;
    snprintf(t->close_reason, sizeof(t->close_reason), "hub shutting down");
    tunnel_events_stop(t);
    n = snprintf(why, sizeof(why), "hub shutting down; reconnect_window_ms=%u",
                 reconnect_window_ms);
    assert(n > 0 && (size_t)n < sizeof(why));
    nghttp2_submit_goaway(t->h2.s, NGHTTP2_FLAG_NONE, 0, NGHTTP2_NO_ERROR, (const uint8_t *)why,
                          (size_t)n);
    h2_send(&t->h2);
}

size_t tunnel_stream_count(const struct tunnel *t)
{
    return t->n_streams;
}

size_t tunnel_stream_slots(const struct tunnel *t)
{
    uint32_t n;

    if (t->h2.s == NULL)
        return 0;
    n = nghttp2_session_get_remote_settings(t->h2.s, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
    return n < TUNNEL_MAX_STREAMS ? n : TUNNEL_MAX_STREAMS;
}

void tunnel_get_info(const struct tunnel *t, struct tunnel_info *out)
{
    out->session_id =
        t->hub->rec ? recorder_session_id(t->hub->rec, t->session_key) : (int64_t)t->session_key;
    out->connected_since = t->connected_since;
    out->last_seen = last_seen(t);
    out->peer = t->conn ? t->conn->peer : NULL;
    out->agent_version = t->agent_version;
    out->services_json = t->services_json;
    out->restricted_json = t->restricted_json;
    out->bytes_in = t->conn ? t->conn->bytes_in : 0;
    out->bytes_out = t->conn ? t->conn->bytes_out : 0;
    out->streams_open = t->n_streams;
    out->requests = t->n_opened;
}

int tunnel_has_key(const struct tunnel *t, const char *pin)
{
    return pin != NULL && pin[0] != '\0' && t->key_hash == key_hash(pin);
}

int64_t tunnel_site_id(const struct tunnel *t)
{
    return t->site_id;
}

int64_t tunnel_session_id(const struct tunnel *t)
{
    if (t->hub->rec != NULL)
        return recorder_session_id(t->hub->rec, t->session_key);
    return (int64_t)t->session_key;
}

const char *tunnel_site_name(const struct tunnel *t)
{
    return t->site;
}

int tunnel_is_open(const struct tunnel *t)
{
    return !t->closing;
}

int tunnel_is_ready(const struct tunnel *t)
{
    return !t->closing && t->conn != NULL && !t->conn->closing && t->hello_done;
}

void tunnel_set_ping_interval(struct tunnel *t, uint64_t ms)
{
    if (!t->closing && !uv_is_closing((uv_handle_t *)&t->ping_timer))
        uv_timer_set_repeat(&t->ping_timer, ms);
}
