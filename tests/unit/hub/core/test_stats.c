/* Unit tests for hub/core/stats.c: per-site counters kept across tunnels, bounded by announced
 * services, freed with the site; hub totals; names of kinds and ends. */
/* SPDX-License-Identifier: MIT */
#include <stdlib.h>
#include <string.h>

#include "common/conn.h"
#include "hub/core/hub.h"
#include "hub/core/stats.h"
#include "testutil.h"

static uint64_t by_class(const struct stats_site *s, const char *svc, int cls)
{
    for (size_t i = 0; i < s->n_svc; i++)
        if (strcmp(s->svc[i].name, svc) == 0)
            return s->svc[i].by_class[cls];
    return (uint64_t)-1; /* no such service slot */
}

int main(void)
{
    struct hub *h = calloc(1, sizeof(*h));
    struct conn *c1 = calloc(1, sizeof(*c1)), *c2 = calloc(1, sizeof(*c2));
    struct stats_tap t1, t2, many[8];
    const struct stats_site *s;
    char *web_api[] = {"web", "api"}, *api_db[] = {"api", "db"};
    uint64_t in, out;
    struct hist hl;

    CHECK(h != NULL && c1 != NULL && c2 != NULL);
    memset(&t1, 0, sizeof(t1));
    memset(&t2, 0, sizeof(t2));
    memset(many, 0, sizeof(many));

    /* Nothing counts for a site that never connected, and nothing is made. */
    stats_site_request(h, 7, "web", 200, 0.01);
    CHECK(stats_site_find(h, 7) == NULL);
    CHECK_EQ_INT(h->site_stats.n, 0);
    CHECK_EQ_INT(stats_site_services(h, 7, web_api, 2), 0);
    CHECK(stats_site_find(h, 7) == NULL);
    /* ... but the hub's totals count it. */
    CHECK_EQ_INT(h->proxy_by_class[1], 1);
    stats_hub_latency(h, &hl);
    CHECK_EQ_INT(hl.count, 1);
    CHECK(hl.n == STATS_LATENCY_BUCKETS);

    /* Sites kept sorted by id, whatever order they connect in. */
    for (int64_t id = 50, k = 0; id > 0; id -= 7, k++)
        CHECK_EQ_INT(stats_site_tap(h, id, &many[k], c2), 0);
    for (size_t i = 1; i < h->site_stats.n; i++)
        CHECK(h->site_stats.v[i - 1]->site_id < h->site_stats.v[i]->site_id);
    CHECK_EQ_INT(h->site_stats.n, 8);
    stats_sites_free(h);
    CHECK_EQ_INT(h->site_stats.n, 0);
    CHECK(many[0].site == NULL && many[7].site == NULL);

    /* A tunnel connects: its bytes count live, then stay when it closes. */
    CHECK_EQ_INT(stats_site_tap(h, 7, &t1, c1), 0);
    s = stats_site_find(h, 7);
    CHECK(s != NULL);
    c1->bytes_in = 100;
    c1->bytes_out = 40;
    stats_site_bytes(s, &in, &out);
    CHECK_EQ_INT(in, 100);
    CHECK_EQ_INT(out, 40);
    /* A second tunnel (standby) adds its own. */
    CHECK_EQ_INT(stats_site_tap(h, 7, &t2, c2), 0);
    CHECK(stats_site_find(h, 7) == s);
    c2->bytes_in = 5;
    stats_site_bytes(s, &in, &out);
    CHECK_EQ_INT(in, 105);
    stats_site_untap(&t1);
    c1->bytes_in = 999999; /* the conn is gone: no longer read */
    stats_site_bytes(s, &in, &out);
    CHECK_EQ_INT(in, 105);
    CHECK_EQ_INT(out, 40);
    stats_site_untap(&t1); /* twice: nothing */
    stats_site_bytes(s, &in, &out);
    CHECK_EQ_INT(in, 105);

    /* Requests count per announced service and class; others only in the
     * site's latency and the hub's totals. */
    CHECK_EQ_INT(stats_site_services(h, 7, web_api, 2), 0);
    stats_site_request(h, 7, "web", 200, 0.002);
    stats_site_request(h, 7, "web", 204, 0.003);
    stats_site_request(h, 7, "web", 503, -1); /* the hub's own: no head from the site */
    stats_site_request(h, 7, "api", 404, 0.5);
    stats_site_request(h, 7, "nope", 200, 0.001);
    stats_site_request(h, 7, "web", 0, -1); /* reset before any status */
    CHECK_EQ_INT(by_class(s, "web", 1), 2);
    CHECK_EQ_INT(by_class(s, "web", 4), 1);
    CHECK_EQ_INT(by_class(s, "api", 3), 1);
    CHECK_EQ_INT(by_class(s, "nope", 1), (uint64_t)-1);
    CHECK_EQ_INT(s->latency.count, 4);
    CHECK_EQ_INT(hist_cumulative(&s->latency, 0), 3); /* <= 5 ms */

    /* The site announces again: kept names keep their counts, a dropped
     * name goes, a new one starts at 0. */
    CHECK_EQ_INT(stats_site_services(h, 7, api_db, 2), 0);
    CHECK_EQ_INT(s->n_svc, 2);
    CHECK_EQ_INT(by_class(s, "api", 3), 1);
    CHECK_EQ_INT(by_class(s, "db", 1), 0);
    CHECK_EQ_INT(by_class(s, "web", 1), (uint64_t)-1);
    CHECK_EQ_INT(stats_site_services(h, 7, NULL, 0), 0);
    CHECK_EQ_INT(s->n_svc, 0);

    /* The site is removed: the entry goes, its open tap is unlinked and a
     * later close of that tunnel is harmless. */
    stats_site_forget(h, 7);
    CHECK(stats_site_find(h, 7) == NULL);
    CHECK(t2.site == NULL);
    stats_site_untap(&t2);
    stats_site_forget(h, 7);
    stats_site_request(h, 7, "web", 200, 0.01);
    CHECK(stats_site_find(h, 7) == NULL);

    /* Names. */
    CHECK_EQ_STR(stats_conn_kind_name(STATS_CONN_USER_H2), "user_h2");
    CHECK_EQ_STR(stats_hs_kind_name(STATS_HS_TUNNEL), "tunnel");
    CHECK_EQ_STR(stats_hs_end_name(STATS_HS_UNKNOWN_KEY), "unknown_key");
    for (int e = 0; e < STATS_HS_NENDS; e++)
        CHECK(stats_hs_end_name((enum stats_hs_end)e) != NULL);

    stats_sites_free(h);
    free(c1);
    free(c2);
    free(h);
    TEST_DONE();
}
