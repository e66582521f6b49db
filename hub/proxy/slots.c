/* The proxy's admission counts: one hash table of holds per (site, connection | token), the
 * split of a site's stream slots into pools, and the caps. */
/* SPDX-License-Identifier: MIT */
#include "slots.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../tunnel/peer.h"
#include "../tunnel/tunnel.h"

static struct proxy_hold_list *bucket(struct hub *h, int64_t site_id, const void *conn,
                                      const char *token)
{
    uint64_t k = (uint64_t)site_id * 0x9e3779b97f4a7c15u;
    if (conn != NULL) {
        k ^= (uint64_t)(uintptr_t)conn >> 4;
    } else {
        for (const char *c = token; *c; c++)
            k = (k ^ (uint8_t)*c) * 0x100000001b3u;
    }
    return &h->holds[(k ^ (k >> 29)) % HUB_HOLD_BUCKETS];
}

struct proxy_hold *slots_take(struct hub *h, int64_t site_id, const void *conn, const char *token,
                              int is_long)
{
    struct proxy_hold_list *l = bucket(h, site_id, conn, token);
    struct proxy_hold *e;

    LIST_FOREACH(e, l, link)
    {
        if (e->site_id == site_id && e->conn == conn &&
            (conn != NULL || strcmp(e->token, token) == 0))
            break;
    }
    if (e == NULL) {
        e = calloc(1, sizeof(*e));
        if (e == NULL)
            return NULL;
        e->site_id = site_id;
        e->conn = conn;
        if (conn == NULL)
            snprintf(e->token, sizeof(e->token), "%s", token);
        TAILQ_INIT(&e->waiting);
        LIST_INSERT_HEAD(l, e, link);
    }
    e->n++;
    e->n_long += is_long != 0;
    return e;
}

void slots_put(struct proxy_hold **pe, int is_long)
{
    struct proxy_hold *e = *pe;

    *pe = NULL;
    if (e == NULL)
        return;
    assert(e->n > 0 && (!is_long || e->n_long > 0));
    e->n_long -= is_long != 0;
    if (--e->n == 0) {
        assert(e->stalled == 0 && e->active == 0 && TAILQ_EMPTY(&e->waiting));
        LIST_REMOVE(e, link);
        free(e);
    }
}

int slots_stall_cap(const struct hub_config *c, const struct proxy_hold *conn,
                    const struct proxy_hold *token)
{
    return conn->stalled >= (unsigned)c->max_stalled_streams_per_conn ||
           token->stalled >= (unsigned)c->max_stalled_streams_per_token;
}

void slots_pools(struct hub *h, int64_t site_id, struct slots_pools *out)
{
    const struct hub_config *c = &h->cfg;
    struct tunnel *t = hub_tunnel_find(h, site_id);
    /* A site on another hub: the link to it (forwarded requests). */
    size_t slots = t != NULL ? tunnel_stream_slots(t) : peer_site_slots(h, site_id);
    size_t reserve = slots / 2 < REQUEST_RESERVE ? slots / 2 : REQUEST_RESERVE;
    size_t share;

    out->long_site = (size_t)c->max_long_streams_per_site;
    if (out->long_site > slots - reserve)
        out->long_site = slots - reserve;
    out->long_token = (size_t)c->max_long_streams_per_token;
    if (out->long_token > out->long_site)
        out->long_token = out->long_site;
    share = (slots - out->long_site) / 4;
    out->share = share > SHARE_MIN ? share : SHARE_MIN;
}

size_t slots_token_share(struct hub *h, int64_t site_id)
{
    struct slots_pools sp;

    slots_pools(h, site_id, &sp);
    return sp.share;
}

enum proxy_refusal slots_over_cap(const struct hub_config *c, const struct proxy_hold *conn,
                                  const struct proxy_hold *token, const struct proxy_hold *site,
                                  int is_long, const struct slots_pools *sp)
{
    unsigned conn_req = conn->n - conn->n_long;
    unsigned token_req = token->n - token->n_long;
    unsigned site_req = site->n - site->n_long;

    if (is_long) {
        /* A connection's long-lived streams are bounded by its HTTP/2
         * SETTINGS_MAX_CONCURRENT_STREAMS (one on HTTP/1.1). A full site
         * is said first: a token's cap may be the site's whole pool. */
        if (site->n_long > sp->long_site)
            return PR_SITE_LONG;
        if (token->n_long > sp->long_token)
            return PR_TOKEN_LONG;
        if (slots_stall_cap(c, conn, token))
            return PR_STALLED;
    } else {
        if (conn_req > (unsigned)c->max_requests_per_conn)
            return PR_CONN_REQUESTS;
        if (token_req > (unsigned)c->max_requests_per_token ||
            (site_req > SITE_MAX_REQUESTS / 2 && token_req > sp->share))
            return PR_TOKEN_REQUESTS;
        if (slots_stall_cap(c, conn, token))
            return PR_STALLED;
    }
    return site->n > SITE_MAX_REQUESTS ? PR_SITE_BUSY : PR_N;
}
