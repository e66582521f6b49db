/* The proxy's admission counts: requests and long-lived streams in flight per site, user
 * connection and token, and the caps that refuse or queue them. */
/* SPDX-License-Identifier: MIT */
#ifndef TETHER_HUB_PROXY_SLOTS_H
#define TETHER_HUB_PROXY_SLOTS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>

#include "../core/hub.h"

struct proxy;

/* Proxied requests in flight (n), how many of them are long-lived streams
 * and how many are stalled, for one site and one user connection (conn !=
 * NULL), one token (conn == NULL), or the whole site (conn == NULL, token
 * ""). A request counts from its start until the hub holds none of its
 * bytes any more, even after its tunnel stream ended. An entry lives while
 * n > 0. */
struct proxy_hold {
    LIST_ENTRY(proxy_hold) link;
    int64_t site_id;
    const void *conn;
    char token[TOKEN_NAME_MAX + 1];
    unsigned n;
    unsigned n_long; /* of n: long-lived streams (their own pool) */
    unsigned stalled;
    unsigned active;             /* token and site: tunnel streams open */
    TAILQ_HEAD(, proxy) waiting; /* site: requests waiting for a slot */
};

/* Requests and long-lived streams in flight on one site, across all its
 * users: past this the hub answers 503 site_busy. Past half of it in
 * requests alone, a token already over its share of slots is refused 429,
 * so a few tokens cannot fill it for everyone. */
#define SITE_MAX_REQUESTS 1024
/* A site's stream slots (its SETTINGS_MAX_CONCURRENT_STREAMS, at most the
 * tunnel's 1024) form two pools. Long-lived streams (WebSocket, CONNECT,
 * gRPC calls), idle by nature, take at most max_long_streams_per_site of
 * them, and always leave requests REQUEST_RESERVE slots or half of them,
 * whichever is less. Requests have the rest: a token's share of it is a
 * quarter, at least SHARE_MIN. Its further requests wait in the hub, in
 * order, until one of its own finishes; other tokens' requests are never
 * queued behind them. */
#define REQUEST_RESERVE 256
#define SHARE_MIN       8

/* How a site's stream slots are shared out now (see REQUEST_RESERVE). */
struct slots_pools {
    size_t long_site;  /* long-lived streams on the site */
    size_t long_token; /* of them, one token's */
    size_t share;      /* request slots one token may have open */
};

/* Counts one more request for (site, conn) or (site, token; "" for the
 * whole site); NULL when out of memory. The entry belongs to h->holds and
 * is freed by the slots_put that brings its count to 0. */
struct proxy_hold *slots_take(struct hub *h, int64_t site_id, const void *conn, const char *token,
                              int is_long);
/* Gives back what slots_take counted and sets *pe to NULL (no-op on NULL). */
void slots_put(struct proxy_hold **pe, int is_long);
void slots_pools(struct hub *h, int64_t site_id, struct slots_pools *out);
size_t slots_token_share(struct hub *h, int64_t site_id);
/* 1 when the connection or token already holds its maximum of stalled
 * streams on the site. */
int slots_stall_cap(const struct hub_config *c, const struct proxy_hold *conn,
                    const struct proxy_hold *token);
/* Which cap, if any, refuses a request just counted in conn, token and
 * site; PR_N for none. */
enum proxy_refusal slots_over_cap(const struct hub_config *c, const struct proxy_hold *conn,
                                  const struct proxy_hold *token, const struct proxy_hold *site,
                                  int is_long, const struct slots_pools *sp);

#endif
