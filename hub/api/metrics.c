/* The API's /metrics: the hub's counters in the Prometheus text format. */
/* SPDX-License-Identifier: MIT */
#include "api_int.h"

#include <stdio.h>

#include "../proxy/proxy.h"

/* --- metrics --- */

void metrics(struct hub *h, struct ureq *r, const struct auth *a, const struct api_match *m)
{
    char txt[2048];
    int n = snprintf(
        txt, sizeof(txt),
        "# TYPE tether_sites_online gauge\ntether_sites_online %zu\n"
        "# TYPE tether_requests_total counter\ntether_requests_total %llu\n"
        "# TYPE tether_proxy_requests_total counter\ntether_proxy_requests_total %llu\n"
        "# TYPE tether_tunnels_accepted_total counter\n"
        "tether_tunnels_accepted_total %llu\n"
        "# TYPE tether_tunnels_refused_total counter\n"
        "tether_tunnels_refused_total %llu\n"
        "# TYPE tether_users_refused_total counter\n"
        "tether_users_refused_total{reason=\"per_address\"} %llu\n"
        "tether_users_refused_total{reason=\"fd_reserve\"} %llu\n"
        "# TYPE tether_users_timed_out_total counter\n"
        "tether_users_timed_out_total %llu\n",
        h->tunnels.count, (unsigned long long)h->n_requests,
        (unsigned long long)h->n_proxy_requests, (unsigned long long)h->n_tunnels_accepted,
        (unsigned long long)h->n_tunnels_refused, (unsigned long long)h->n_users_refused_cap,
        (unsigned long long)h->n_users_refused_reserve, (unsigned long long)h->n_users_idle_closed);
    n += snprintf(txt + n, sizeof(txt) - (size_t)n, "# TYPE tether_proxy_refused_total counter\n");
    for (int k = 0; k < PR_N; k++)
        n += snprintf(
            txt + n, sizeof(txt) - (size_t)n, "tether_proxy_refused_total{reason=\"%s\"} %llu\n",
            proxy_refusal_name((enum proxy_refusal)k), (unsigned long long)h->n_proxy_refused[k]);
    ureq_respond(r, 200, "text/plain; version=0.0.4", txt, (size_t)n);
}
