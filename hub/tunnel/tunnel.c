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
#include "mux.h"
#include "sitemap.h"

/* When the site was last heard, in unix seconds: last_heard_ms is the loop's
 * monotonic clock (an offline site once showed 1970 from it). */
static int64_t last_seen(const struct tunnel *t)
{
    return hub_now() - (int64_t)((uv_now(t->hub->loop) - t->mux.last_heard_ms) / 1000);
}

/* How stream errors and close reasons name the far end of a tunnel. */
static const struct tmux_kind site_kind = {
    .gone = "site disconnected",
    .refused = "site refused the stream",
    .reset = "site reset the stream",
    .goaway = "site sent goaway",
};

static void tunnel_conn_handshake(struct conn *c) {}

static int tunnel_conn_data(struct conn *c, const uint8_t *data, size_t len)
{
    struct tunnel *t = c->owner;
    int rc = h2_feed(&t->mux.h2, data, len);
    if (rc < 0) {
        snprintf(t->mux.close_reason, sizeof(t->mux.close_reason), "http2 error: %s",
                 nghttp2_strerror(rc));
        return -EPROTO;
    }
    if (h2_finished(&t->mux.h2))
        conn_close_after_flush(c,
                               t->mux.close_reason[0] ? t->mux.close_reason : "session finished");
    return 0;
}

static void tunnel_conn_drain(struct conn *c)
{
    struct tunnel *t = c->owner;
    if (h2_send(&t->mux.h2) < 0)
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
    assert(LIST_EMPTY(&t->mux.streams) && t->site_entry.where == SITEMAP_NONE);
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
    const char *why = t->mux.close_reason[0] ? t->mux.close_reason : reason;
    int64_t now = hub_now();

    t->closing = 1;
    tmux_close(&t->mux);
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

/* --- liveness --- */

static void force_close_cb(uv_timer_t *timer)
{
    struct tunnel *t = timer->data;
    if (t->conn != NULL)
        conn_close(t->conn, t->mux.close_reason[0] ? t->mux.close_reason : "closed");
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
    if (now - t->mux.last_heard_ms >= 2 * iv) {
        snprintf(t->mux.close_reason, sizeof(t->mux.close_reason), "ping timeout (silent %llu ms)",
                 (unsigned long long)(now - t->mux.last_heard_ms));
        conn_close(t->conn, t->mux.close_reason);
        return;
    }
    tunnel_events_tick(t);
    tmux_ping(&t->mux);
    /* Most tunnels are idle most of the time: between two ticks they hold
     * no buffer (docs/benchmarks.md, idle sites). The ping just sent waits
     * in the connection's queue, which keeps it. */
    h2_trim(&t->mux.h2);
    conn_trim(t->conn);
    /* Wake at the silence deadline when it comes before the next tick: a
     * dead peer is dropped two intervals after it went quiet, not three. */
    if (2 * iv - (now - t->mux.last_heard_ms) < iv)
        uv_timer_start(&t->ping_timer, ping_cb, 2 * iv - (now - t->mux.last_heard_ms), iv);
}

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
    snprintf(t->site, sizeof(t->site), "%s", site->name);
    t->services_json = strdup("[]");
    t->restricted_json = strdup("[]");
    t->connected_since = hub_now();
    if (t->services_json == NULL || t->restricted_json == NULL)
        goto out;
    rc = tmux_open(&t->mux, h->loop, c, H2_ROLE_HUB_TUNNEL, &site_kind);
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
    h2_send(&t->mux.h2);
    rc = 0;
out:
    if (rc != 0 && t != NULL) {
        h2_free(&t->mux.h2);
        free(t->services_json);
        free(t->restricted_json);
        free(t);
    }
    return rc;
}

int tunnel_stream_open(struct tunnel *t, const nghttp2_nv *nva, size_t n, int has_body,
                       const struct tstream_ops *ops, void *arg, struct tstream **out)
{
    if (t->closing || t->conn == NULL || t->conn->closing || t->hub->draining)
        return -ENOTCONN;
    return tmux_stream_open(&t->mux, nva, n, has_body, ops, arg, out);
}

void tunnel_kill(struct tunnel *t, const char *reason)
{
    if (t->closing || t->conn == NULL)
        return;
    t->closing = 1;
    snprintf(t->mux.close_reason, sizeof(t->mux.close_reason), "%s", reason);
    if (t->mux.h2.s != NULL) {
        nghttp2_submit_goaway(t->mux.h2.s, NGHTTP2_FLAG_NONE, 0, NGHTTP2_NO_ERROR,
                              (const uint8_t *)reason, strlen(reason));
        h2_send(&t->mux.h2);
    }
    conn_close_after_flush(t->conn, reason);
    /* A peer that does not read must not keep a cut tunnel alive. */
    uv_timer_start(&t->ping_timer, force_close_cb, 1000, 0);
}

void tunnel_drain(struct tunnel *t, unsigned reconnect_window_ms)
{
    char why[64];
    int n;

    if (t->mux.h2.s == NULL || t->closing)
        return;
    snprintf(t->mux.close_reason, sizeof(t->mux.close_reason), "hub shutting down");
    tunnel_events_stop(t);
    n = snprintf(why, sizeof(why), "hub shutting down; reconnect_window_ms=%u",
                 reconnect_window_ms);
    assert(n > 0 && (size_t)n < sizeof(why));
    nghttp2_submit_goaway(t->mux.h2.s, NGHTTP2_FLAG_NONE, 0, NGHTTP2_NO_ERROR, (const uint8_t *)why,
                          (size_t)n);
    h2_send(&t->mux.h2);
}

size_t tunnel_stream_count(const struct tunnel *t)
{
    return t->mux.n_streams;
}

size_t tunnel_stream_slots(const struct tunnel *t)
{
    return tmux_stream_slots(&t->mux);
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
    out->streams_open = t->mux.n_streams;
    out->requests = t->mux.n_opened;
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
