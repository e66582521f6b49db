/* Federated queries: one question fanned out to many sites over their tunnels, kept in SQLite. */
/* SPDX-License-Identifier: MIT */
#ifndef TETHER_QUERY_H
#define TETHER_QUERY_H

#include "../api/api.h"
#include "../core/hub.h"
#include "../tunnel/tunnel.h"
#include "../http/user.h"

/* Sets up the query engine (h->qe): recovers queries left by a previous run
 * and starts its timers. 0 or a negative code. */
int query_init(struct hub *h);
/* Stops timers and frees the engine; after the loop has ended its handles
 * must have been closed (it closes them itself). */
void query_shutdown(struct hub *h);
/* Handles /v1/queries and below; returns 1 if it took the request (answered
 * or installed a handler), 0 if the path is not its own. */
int query_api(struct hub *h, struct ureq *r, const struct api_auth *a);
/* A site's tunnel is up and its services are known: deliver what waits. */
void query_site_online(struct hub *h, struct tunnel *t);

#endif
