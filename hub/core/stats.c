/* Counters the hub's layers keep for /metrics: connections by kind, handshake ends, per-site
 * traffic. */
/* SPDX-License-Identifier: MIT */
#include "stats.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/conn.h"
#include "hub.h"

static const char *const conn_kind_names[STATS_CONN_NKINDS] = {"handshake", "tunnel", "user_h1",
                                                               "user_h2"};
static const char *const hs_kind_names[STATS_HS_NKINDS] = {"unknown", "tunnel", "user"};
static const char *const hs_end_names[STATS_HS_NENDS] = {
    [STATS_HS_ACCEPTED] = "accepted",
    [STATS_HS_UNKNOWN_KEY] = "unknown_key",
    [STATS_HS_SITE_NOT_ACTIVE] = "site_not_active",
    [STATS_HS_NO_VERIFIED_KEY] = "no_verified_key",
    [STATS_HS_REGISTRY_ERROR] = "registry_error",
    [STATS_HS_USER_CONN_CAP] = "user_conn_cap",
    [STATS_HS_FD_RESERVE] = "fd_reserve",
    [STATS_HS_HANDSHAKE_CAP] = "handshake_cap",
    [STATS_HS_NOT_TLS] = "not_tls",
    [STATS_HS_TLS_ERROR] = "tls_error",
    [STATS_HS_TIMEOUT] = "timeout",
    [STATS_HS_PEER_CLOSED] = "peer_closed",
    [STATS_HS_OUT_OF_MEMORY] = "out_of_memory",
    [STATS_HS_OTHER] = "other",
};

/* From a loopback request (a millisecond) to a site behind a slow link
 * (tens of seconds); request_timeout's default, 60 s, is the last. */
const double stats_latency_le[STATS_LATENCY_BUCKETS] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                                        0.5,   1,    2.5,   5,    10,  60};

const char *stats_conn_kind_name(enum stats_conn_kind k)
{
    return k < STATS_CONN_NKINDS ? conn_kind_names[k] : "unknown";
}

const char *stats_hs_kind_name(enum stats_hs_kind k)
{
    return k < STATS_HS_NKINDS ? hs_kind_names[k] : "unknown";
}

const char *stats_hs_end_name(enum stats_hs_end e)
{
    return e < STATS_HS_NENDS ? hs_end_names[e] : "other";
}

/* --- per site --- */

/* The index of the site's entry, or where it would go (*found 0). */
static size_t site_index(const struct stats_sites *t, int64_t site_id, int *found)
{
    size_t lo = 0, hi = t->n;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (t->v[mid]->site_id < site_id)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = lo < t->n && t->v[lo]->site_id == site_id;
    return lo;
}

static struct stats_site *site_get(const struct hub *h, int64_t site_id)
{
    int found;
    size_t i = site_index(&h->site_stats, site_id, &found);

    return found ? h->site_stats.v[i] : NULL;
}

const struct stats_site *stats_site_find(const struct hub *h, int64_t site_id)
{
    return site_get(h, site_id);
}

/* The site's entry, made if it has none; NULL when out of memory. */
static struct stats_site *site_make(struct hub *h, int64_t site_id)
{
    struct stats_sites *t = &h->site_stats;
    struct stats_site *s;
    int found;
    size_t i = site_index(t, site_id, &found);

    if (found)
        return t->v[i];
    if (t->n == t->cap) {
        size_t ncap = t->cap ? t->cap * 2 : 64;
        struct stats_site **nv = realloc(t->v, ncap * sizeof(*nv));

        if (nv == NULL)
            return NULL;
        t->v = nv;
        t->cap = ncap;
    }
    s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    s->site_id = site_id;
    LIST_INIT(&s->taps);
    hist_init(&s->latency, stats_latency_le, STATS_LATENCY_BUCKETS);
    memmove(t->v + i + 1, t->v + i, (t->n - i) * sizeof(*t->v));
    t->v[i] = s;
    t->n++;
    return s;
}

int stats_site_tap(struct hub *h, int64_t site_id, struct stats_tap *tap, const struct conn *c)
{
    struct stats_site *s = site_make(h, site_id);

    tap->site = s;
    tap->conn = c;
    if (s == NULL)
        return -ENOMEM;
    LIST_INSERT_HEAD(&s->taps, tap, link);
    return 0;
}

void stats_site_untap(struct stats_tap *tap)
{
    struct stats_site *s = tap->site;

    if (s == NULL)
        return;
    s->bytes_in += tap->conn->bytes_in;
    s->bytes_out += tap->conn->bytes_out;
    LIST_REMOVE(tap, link);
    tap->site = NULL;
}

void stats_site_bytes(const struct stats_site *s, uint64_t *in, uint64_t *out)
{
    const struct stats_tap *tap;

    *in = s->bytes_in;
    *out = s->bytes_out;
    LIST_FOREACH(tap, &s->taps, link)
    {
        *in += tap->conn->bytes_in;
        *out += tap->conn->bytes_out;
    }
}

static struct stats_service *service_find(struct stats_site *s, const char *name)
{
    for (size_t i = 0; i < s->n_svc; i++)
        if (strcmp(s->svc[i].name, name) == 0)
            return &s->svc[i];
    return NULL;
}

int stats_site_services(struct hub *h, int64_t site_id, char *const *names, size_t n)
{
    struct stats_site *s = site_get(h, site_id);
    struct stats_service *nv;

    if (s == NULL)
        return 0;
    nv = calloc(n ? n : 1, sizeof(*nv));
    if (nv == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        const struct stats_service *old = service_find(s, names[i]);

        if (old != NULL)
            nv[i] = *old;
        else
            snprintf(nv[i].name, sizeof(nv[i].name), "%s", names[i]);
    }
    free(s->svc);
    s->svc = nv;
    s->n_svc = n;
    return 0;
}

void stats_site_request(struct hub *h, int64_t site_id, const char *service, int status,
                        double head_s)
{
    struct stats_site *s = site_get(h, site_id);
    struct stats_service *svc;
    int cls = status >= 100 && status <= 599 ? status / 100 - 1 : -1;

    if (h->proxy_latency.le == NULL) /* a struct hub starts zeroed */
        hist_init(&h->proxy_latency, stats_latency_le, STATS_LATENCY_BUCKETS);
    if (head_s >= 0)
        hist_observe(&h->proxy_latency, head_s);
    if (cls >= 0)
        h->proxy_by_class[cls]++;
    if (s == NULL)
        return;
    if (head_s >= 0)
        hist_observe(&s->latency, head_s);
    if (cls < 0)
        return;
    svc = service_find(s, service);
    if (svc != NULL)
        svc->by_class[cls]++;
}

void stats_hub_latency(const struct hub *h, struct hist *out)
{
    if (h->proxy_latency.le != NULL)
        *out = h->proxy_latency;
    else
        hist_init(out, stats_latency_le, STATS_LATENCY_BUCKETS);
}

static void site_free(struct stats_site *s)
{
    struct stats_tap *tap;

    while ((tap = LIST_FIRST(&s->taps)) != NULL) {
        LIST_REMOVE(tap, link);
        tap->site = NULL;
    }
    free(s->svc);
    free(s);
}

void stats_site_forget(struct hub *h, int64_t site_id)
{
    struct stats_sites *t = &h->site_stats;
    int found;
    size_t i = site_index(t, site_id, &found);

    if (!found)
        return;
    site_free(t->v[i]);
    memmove(t->v + i, t->v + i + 1, (t->n - i - 1) * sizeof(*t->v));
    t->n--;
}

void stats_sites_free(struct hub *h)
{
    struct stats_sites *t = &h->site_stats;

    for (size_t i = 0; i < t->n; i++)
        site_free(t->v[i]);
    free(t->v);
    memset(t, 0, sizeof(*t));
}
