/* The API's /metrics: the hub's counters in the Prometheus text format. */
/* SPDX-License-Identifier: MIT */
#include "api_int.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/crypto.h"
#include "../../common/procstat.h"
#include "../proxy/proxy.h"
#include "../query/query.h"
#include "../store/recorder.h"
#include "../tunnel/peer.h"
#include "../tunnel/tunnel.h"

/* Every number here is counted by the layer that owns its event (core/stats.h,
 * the listener, the tunnel, the proxy, the query engine, the registry);
 * this file only reads and formats them, once per scrape. The families and
 * their meaning are in docs/operator-guide.md ("Metrics"). */

/* The text being built: a growing buffer; err keeps the first failure. */
struct mx {
    struct buf b;
    int err;
};

static void emit(struct mx *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void emit(struct mx *m, const char *fmt, ...)
{
    va_list ap;
    int rc;

    if (m->err != 0)
        return;
    va_start(ap, fmt);
    rc = buf_vprintf(&m->b, fmt, ap);
    va_end(ap);
    if (rc != 0)
        m->err = rc;
}

/* The # HELP and # TYPE lines that open a family. */
static void family(struct mx *m, const char *name, const char *type, const char *help)
{
    emit(m, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* One unlabelled sample, as a family of its own. */
static void single(struct mx *m, const char *name, const char *type, const char *help,
                   unsigned long long v)
{
    family(m, name, type, help);
    emit(m, "%s %llu\n", name, v);
}

/* A label value, escaped as the text format asks (\\, \" and \n); cut to
 * fit out, which holds any site, service or version name. */
static const char *esc(const char *s, char *out, size_t cap)
{
    size_t n = 0;

    for (; *s != '\0' && n + 3 < cap; s++) {
        if (*s == '\\' || *s == '"' || *s == '\n') {
            out[n++] = '\\';
            out[n++] = *s == '\n' ? 'n' : *s;
        } else {
            out[n++] = *s;
        }
    }
    out[n] = '\0';
    return out;
}

/* The samples of a histogram: name_bucket{labels,le=...} (cumulative),
 * _sum and _count. labels is "" or 'k="v",' pairs ending with a comma. */
static void hist_samples(struct mx *m, const char *name, const char *labels, const struct hist *h)
{
    size_t nl = strlen(labels);
    /* _sum and _count take the labels without the trailing comma. */
    int bare = nl > 0 ? (int)nl - 1 : 0;

    for (size_t i = 0; i < h->n; i++)
        emit(m, "%s_bucket{%sle=\"%g\"} %llu\n", name, labels, h->le[i],
             (unsigned long long)hist_cumulative(h, i));
    emit(m, "%s_bucket{%sle=\"+Inf\"} %llu\n", name, labels, (unsigned long long)h->count);
    emit(m, "%s_sum%s%.*s%s %.9g\n", name, nl ? "{" : "", bare, labels, nl ? "}" : "", h->sum);
    emit(m, "%s_count%s%.*s%s %llu\n", name, nl ? "{" : "", bare, labels, nl ? "}" : "",
         (unsigned long long)h->count);
}

static const char *const class_names[STATS_CLASSES] = {"1xx", "2xx", "3xx", "4xx", "5xx"};

/* --- the hub as a whole --- */

static void hub_families(struct mx *m, struct hub *h)
{
    char v1[64], v2[96];
    struct hist hs;

    family(m, "tether_build_info", "gauge",
           "Always 1; the labels say which tether-hub and which wolfSSL build run.");
    emit(m, "tether_build_info{version=\"%s\",wolfssl=\"%s\"} 1\n",
         esc(TETHER_VERSION, v1, sizeof(v1)), esc(crypto_wolfssl_build(), v2, sizeof(v2)));
    single(m, "tether_ready", "gauge",
           "1 while the hub takes traffic (GET /readyz answers 200), 0 while it drains or cannot "
           "read its registry.",
           api_unready(h) == NULL);
    single(m, "tether_sites_online", "gauge", "Sites with a live tunnel to this hub.",
           h->tunnels.count);
    single(m, "tether_requests_total", "counter",
           "Requests whose head reached the API router (API calls and proxied requests).",
           h->n_requests);
    single(m, "tether_proxy_requests_total", "counter",
           "Proxied requests sent down a site's tunnel.", h->n_proxy_requests);
    single(m, "tether_tunnels_accepted_total", "counter",
           "Site tunnels whose handshake succeeded (key pinned, site active).",
           h->n_tunnels_accepted);
    single(m, "tether_tunnels_refused_total", "counter",
           "Tunnel handshakes refused or failed (unknown or disabled key, TLS failure, timeout).",
           h->n_tunnels_refused);
    {
        size_t up_out = 0, up_in = 0;

        peer_count_up(h, &up_out, &up_in);
        family(m, "tether_peer_links", "gauge",
               "Links to the cluster's other hubs that are up: dialled by this hub (out) or by "
               "the other (in).");
        emit(m, "tether_peer_links{dir=\"out\"} %zu\ntether_peer_links{dir=\"in\"} %zu\n", up_out,
             up_in);
    }
    family(m, "tether_users_refused_total", "counter",
           "User connections refused before TLS, by reason (per-address cap, descriptor "
           "reserve).");
    emit(m, "tether_users_refused_total{reason=\"per_address\"} %llu\n",
         (unsigned long long)h->n_users_refused_cap);
    emit(m, "tether_users_refused_total{reason=\"fd_reserve\"} %llu\n",
         (unsigned long long)h->n_users_refused_reserve);
    single(m, "tether_users_timed_out_total", "counter",
           "User connections or requests cut by request_head_timeout, idle_timeout or "
           "request_body_timeout.",
           h->n_users_idle_closed);
    family(m, "tether_proxy_refused_total", "counter",
           "Proxied requests refused (429, 503) or reset by the hub's fairness limits, by "
           "reason.");
    for (int k = 0; k < PR_N; k++)
        emit(m, "tether_proxy_refused_total{reason=\"%s\"} %llu\n",
             proxy_refusal_name((enum proxy_refusal)k), (unsigned long long)h->n_proxy_refused[k]);
    family(m, "tether_proxy_responses_total", "counter",
           "Proxied requests of every site, by the status class the user got (the site's, or "
           "the hub's own 429, 502, 503, 504).");
    for (int c = 0; c < STATS_CLASSES; c++)
        emit(m, "tether_proxy_responses_total{code=\"%s\"} %llu\n", class_names[c],
             (unsigned long long)h->proxy_by_class[c]);
    family(m, "tether_proxy_latency_seconds", "histogram",
           "Time from a proxied request's start to the site's response head, every site.");
    stats_hub_latency(h, &hs);
    hist_samples(m, "tether_proxy_latency_seconds", "", &hs);
    family(m, "tether_connections", "gauge",
           "Open connections by kind: handshaking, site tunnels, users over HTTP/1.1 and "
           "HTTP/2.");
    for (int k = 0; k < STATS_CONN_NKINDS; k++)
        emit(m, "tether_connections{kind=\"%s\"} %zu\n",
             stats_conn_kind_name((enum stats_conn_kind)k), h->n_conns[k]);
    family(m, "tether_handshakes_accepted_total", "counter",
           "TLS handshakes that became a site tunnel or a user connection.");
    for (int k = STATS_HS_TUNNEL; k < STATS_HS_NKINDS; k++)
        emit(m, "tether_handshakes_accepted_total{kind=\"%s\"} %llu\n",
             stats_hs_kind_name((enum stats_hs_kind)k),
             (unsigned long long)h->n_handshakes[k][STATS_HS_ACCEPTED]);
    family(m, "tether_handshakes_refused_total", "counter",
           "Connections that ended before their TLS handshake completed, by kind (from the "
           "ClientHello's ALPN; unknown before it) and reason; a series appears at its first "
           "count.");
    for (int k = 0; k < STATS_HS_NKINDS; k++)
        for (int e = STATS_HS_ACCEPTED + 1; e < STATS_HS_NENDS; e++)
            if (h->n_handshakes[k][e] > 0)
                emit(m, "tether_handshakes_refused_total{kind=\"%s\",reason=\"%s\"} %llu\n",
                     stats_hs_kind_name((enum stats_hs_kind)k),
                     stats_hs_end_name((enum stats_hs_end)e),
                     (unsigned long long)h->n_handshakes[k][e]);
}

static void query_families(struct mx *m, struct hub *h)
{
    struct query_stats q;

    query_stats(h, &q);
    single(m, "tether_queries_submitted_total", "counter",
           "Federated queries accepted (POST /v1/queries) since the hub started.", q.submitted);
    single(m, "tether_queries_completed_total", "counter",
           "Federated queries whose every site result reached a final state.", q.completed);
    family(m, "tether_query_results_total", "counter",
           "Per-site query results that reached a final state, by state.");
    for (int s = 0; s < REG_Q_NSTATUS; s++)
        if (registry_query_status_final(s))
            emit(m, "tether_query_results_total{state=\"%s\"} %llu\n",
                 registry_query_status_name(s), (unsigned long long)q.final[s]);
    single(m, "tether_query_deliveries_total", "counter",
           "Per-site query results sent down a site's tunnel.", q.deliveries);
    family(m, "tether_query_queue_depth", "gauge",
           "Per-site query results queued for a site that is offline (state queued).");
    if (q.queued >= 0)
        emit(m, "tether_query_queue_depth %lld\n", (long long)q.queued);
    family(m, "tether_query_results_in_flight", "gauge",
           "Per-site query results sent and not yet answered (state sent).");
    if (q.sent >= 0)
        emit(m, "tether_query_results_in_flight %lld\n", (long long)q.sent);
}

static void process_families(struct mx *m, struct hub *h)
{
    struct procstat p;
    struct hist commits;

    registry_commit_latency(h->reg, &commits);
    if (h->rec != NULL) {
        /* The writer's connection commits the records: one series for both
         * (same bounds, registry__commit_le). */
        struct hist w;

        recorder_commit_latency(h->rec, &w);
        for (size_t i = 0; i <= commits.n && w.n == commits.n; i++)
            commits.bucket[i] += w.bucket[i];
        commits.count += w.count;
        commits.sum += w.sum;
    }
    family(m, "tether_registry_commit_seconds", "histogram",
           "Time the registry's database takes to commit a write transaction (SQLite: WAL "
           "write and fsync), on the loop's connection and the record writer's.");
    hist_samples(m, "tether_registry_commit_seconds", "", &commits);
    if (h->rec != NULL) {
        struct recorder_stats rs;

        recorder_get_stats(h->rec, &rs);
        family(m, "tether_registry_records_total", "counter",
               "Records of connects, hellos and disconnects (sessions, last seen) the hub "
               "queued for the registry's writer thread, by outcome: written, failed (the "
               "database refused it) or dropped (queue full or out of memory; not written).");
        emit(m, "tether_registry_records_total{outcome=\"written\"} %llu\n",
             (unsigned long long)rs.written);
        emit(m, "tether_registry_records_total{outcome=\"failed\"} %llu\n",
             (unsigned long long)rs.failed);
        emit(m, "tether_registry_records_total{outcome=\"dropped\"} %llu\n",
             (unsigned long long)rs.dropped);
        single(m, "tether_registry_record_batches_total", "counter",
               "Transactions the registry's writer thread committed.", rs.batches);
        single(m, "tether_registry_record_queue", "gauge",
               "Records waiting for the registry's writer thread.", rs.depth);
    }
    if (h->loop_lag.le != NULL) {
        family(m, "tether_hub_loop_lag_seconds", "histogram",
               "How late the event loop runs a timer due every 20 ms: the time every connection "
               "waits before the loop serves it.");
        hist_samples(m, "tether_hub_loop_lag_seconds", "", &h->loop_lag);
    }
    (void)procstat_read(&p);
    {
        /* The names and meanings of Prometheus' process collector; a value
         * /proc did not give (-1) is left out. */
        const struct {
            const char *name, *type, *help;
            double v;
        } pm[] = {
            {"process_open_fds", "gauge", "Number of open file descriptors.", (double)p.open_fds},
            {"process_max_fds", "gauge", "Maximum number of open file descriptors.",
             (double)p.max_fds},
            {"process_resident_memory_bytes", "gauge", "Resident memory size in bytes.",
             (double)p.resident_bytes},
            {"process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.",
             (double)p.virtual_bytes},
            {"process_cpu_seconds_total", "counter",
             "Total user and system CPU time spent in seconds.", p.cpu_seconds},
            {"process_start_time_seconds", "gauge",
             "Start time of the process since unix epoch in seconds.", p.start_time},
        };

        for (size_t i = 0; i < sizeof(pm) / sizeof(pm[0]); i++) {
            if (pm[i].v < 0)
                continue;
            family(m, pm[i].name, pm[i].type, pm[i].help);
            emit(m, "%s %.15g\n", pm[i].name, pm[i].v);
        }
    }
}

/* --- per site --- */

struct msite {
    int64_t id;
    enum reg_site_state state;
    char name[TOKEN_NAME_MAX + 1];
};

/* The registry's sites, read once per scrape (by name). */
struct msites {
    struct msite *v;
    size_t n, cap;
    size_t by_state[REG_SITE_NSTATES];
};

static int collect_site(const struct reg_site *s, void *arg)
{
    struct msites *l = arg;

    if (s->state < REG_SITE_NSTATES)
        l->by_state[s->state]++;
    if (l->n == l->cap) {
        size_t ncap = l->cap ? l->cap * 2 : 256;
        struct msite *nv = realloc(l->v, ncap * sizeof(*nv));

        if (nv == NULL)
            return -ENOMEM;
        l->v = nv;
        l->cap = ncap;
    }
    l->v[l->n].id = s->id;
    l->v[l->n].state = s->state;
    snprintf(l->v[l->n].name, sizeof(l->v[0].name), "%s", s->name);
    l->n++;
    return 0;
}

static void site_families(struct mx *m, struct hub *h, const struct msites *l)
{
    char name[2 * TOKEN_NAME_MAX + 2], svc[2 * TOKEN_NAME_MAX + 2], labels[160];

    family(m, "tether_site_up", "gauge", "1 while the site's tunnel is connected, else 0.");
    for (size_t i = 0; i < l->n; i++) {
        struct tunnel *t = hub_tunnel_find(h, l->v[i].id);

        emit(m, "tether_site_up{site=\"%s\"} %d\n", esc(l->v[i].name, name, sizeof(name)),
             t != NULL && tunnel_is_open(t));
    }
    family(m, "tether_site_active", "gauge",
           "1 while the site is enrolled and enabled (state active): its tunnel should be up.");
    for (size_t i = 0; i < l->n; i++)
        emit(m, "tether_site_active{site=\"%s\"} %d\n", esc(l->v[i].name, name, sizeof(name)),
             l->v[i].state == REG_SITE_ACTIVE);
    family(m, "tether_site_streams_open", "gauge",
           "Streams open on the site's tunnel: proxied requests and query deliveries in flight, "
           "and the hub's own stream that listens for the site's announcements.");
    for (size_t i = 0; i < l->n; i++) {
        struct tunnel *t = hub_tunnel_find(h, l->v[i].id);

        emit(m, "tether_site_streams_open{site=\"%s\"} %zu\n",
             esc(l->v[i].name, name, sizeof(name)), t != NULL ? tunnel_stream_count(t) : 0);
    }
    for (int dir = 0; dir < 2; dir++) {
        const char *fam =
            dir == 0 ? "tether_site_received_bytes_total" : "tether_site_sent_bytes_total";

        family(m, fam, "counter",
               dir == 0 ? "Bytes the hub received from the site over its tunnels (TLS "
                          "included), since the hub started."
                        : "Bytes the hub sent to the site over its tunnels (TLS included), "
                          "since the hub started.");
        for (size_t i = 0; i < l->n; i++) {
            const struct stats_site *st = stats_site_find(h, l->v[i].id);
            uint64_t in = 0, out = 0;

            if (st != NULL)
                stats_site_bytes(st, &in, &out);
            emit(m, "%s{site=\"%s\"} %llu\n", fam, esc(l->v[i].name, name, sizeof(name)),
                 (unsigned long long)(dir == 0 ? in : out));
        }
    }
    family(m, "tether_site_requests_total", "counter",
           "Proxied requests to a service the site announces, by the status class the user "
           "got; a series appears at its first count.");
    for (size_t i = 0; i < l->n; i++) {
        const struct stats_site *st = stats_site_find(h, l->v[i].id);

        for (size_t k = 0; st != NULL && k < st->n_svc; k++)
            for (int c = 0; c < STATS_CLASSES; c++)
                if (st->svc[k].by_class[c] > 0)
                    emit(m,
                         "tether_site_requests_total{site=\"%s\",service=\"%s\",code=\"%s\"} "
                         "%llu\n",
                         esc(l->v[i].name, name, sizeof(name)),
                         esc(st->svc[k].name, svc, sizeof(svc)), class_names[c],
                         (unsigned long long)st->svc[k].by_class[c]);
    }
    family(m, "tether_site_proxy_latency_seconds", "histogram",
           "Time from a proxied request's start to the site's response head; the site's series "
           "appear at its first request.");
    for (size_t i = 0; i < l->n; i++) {
        const struct stats_site *st = stats_site_find(h, l->v[i].id);

        if (st == NULL || st->latency.count == 0)
            continue;
        snprintf(labels, sizeof(labels), "site=\"%s\",", esc(l->v[i].name, name, sizeof(name)));
        hist_samples(m, "tether_site_proxy_latency_seconds", labels, &st->latency);
    }
}

static void sites_families(struct mx *m, struct hub *h)
{
    struct msites l;
    int rc, on;

    memset(&l, 0, sizeof(l));
    rc = registry_site_list(h->reg, collect_site, &l);
    family(m, "tether_sites", "gauge", "Sites in the registry, by state.");
    if (rc == 0)
        for (int s = 0; s < REG_SITE_NSTATES; s++)
            emit(m, "tether_sites{state=\"%s\"} %zu\n",
                 registry_site_state_name((enum reg_site_state)s), l.by_state[s]);
    on = rc == 0 && h->cfg.metrics_max_sites > 0 && l.n <= (size_t)h->cfg.metrics_max_sites;
    single(m, "tether_metrics_max_sites", "gauge",
           "hub.conf's metrics_max_sites: per-site series are exported while the registry holds "
           "at most this many sites.",
           (unsigned long long)h->cfg.metrics_max_sites);
    single(m, "tether_metrics_site_series_enabled", "gauge",
           "1 while per-site series (tether_site_*) are exported; 0 when the registry holds more "
           "sites than metrics_max_sites (or could not be read).",
           on);
    /* A registry that cannot be read turns the site series off (and
     * tether_ready to 0): the rest still answers, which is when it matters. */
    if (on)
        site_families(m, h, &l);
    free(l.v);
}

void metrics(struct hub *h, struct ureq *r, const struct auth *a, const struct api_match *m)
{
    struct mx x = {.err = 0};

    buf_init(&x.b);
    hub_families(&x, h);
    query_families(&x, h);
    process_families(&x, h);
    sites_families(&x, h);
    if (x.err != 0)
        ureq_error(r, 500, "internal", "out of memory");
    else
        ureq_respond(r, 200, "text/plain; version=0.0.4; charset=utf-8",
                     (const char *)buf_head(&x.b), x.b.len);
    buf_free(&x.b);
}
