/* Federated queries: one question fanned out to many sites over their tunnels, durable in SQLite. */
/* SPDX-License-Identifier: MIT */
/* Placeholder while the query engine is written (issue 3): no routes yet. */
#include "query.h"

int query_init(struct hub *h)
{
    return 0;
}

void query_shutdown(struct hub *h)
{
}

int query_api(struct hub *h, struct ureq *r, const struct api_auth *a)
{
    return 0;
}

void query_site_online(struct hub *h, struct tunnel *t)
{
}
