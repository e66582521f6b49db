/* The hub daemon's shared state: clock, live-tunnel map and per-address handshake accounting. */
/* SPDX-License-Identifier: MIT */
#include "hub.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tunnel.h"

int64_t hub_now(void)
{
    return (int64_t)time(NULL);
}

static size_t bucket_of(const struct tunnel_map *m, int64_t id)
{
    uint64_t x = (uint64_t)id * 0x9E3779B97F4A7C15ull;
    return (size_t)(x >> 32) & (m->n_buckets - 1);
}

static void map_grow(struct tunnel_map *m)
{
    size_t nb = m->n_buckets ? m->n_buckets * 2 : 64;
    struct tunnel **b = calloc(nb, sizeof(*b));
    struct tunnel_map nm = {b, nb, 0};

    if (b == NULL)
        return; /* keep the old table: longer chains, still correct */
    for (size_t i = 0; i < m->n_buckets; i++) {
        struct tunnel *t = m->buckets[i];
        while (t != NULL) {
            struct tunnel *next = t->map_next;
            size_t k = bucket_of(&nm, t->site_id);
            t->map_next = b[k];
            b[k] = t;
            nm.count++;
            t = next;
        }
    }
    free(m->buckets);
    *m = nm;
}

struct tunnel *hub_tunnel_find(struct hub *h, int64_t site_id)
{
    struct tunnel_map *m = &h->tunnels;
    if (m->n_buckets == 0)
        return NULL;
    for (struct tunnel *t = m->buckets[bucket_of(m, site_id)]; t != NULL; t = t->map_next)
        if (t->site_id == site_id)
            return t;
    return NULL;
}

void hub_tunnel_cut(struct hub *h, int64_t site_id, const char *why)
{
    struct tunnel *t = hub_tunnel_find(h, site_id);

    if (t != NULL) {
        hub_tunnel_del(h, t);
        tunnel_kill(t, why);
    }
    /* tunnel_kill frees nothing now (the conn closes later): the walk is safe. */
    for (t = h->standby; t != NULL; t = t->standby_next)
        if (t->site_id == site_id)
            tunnel_kill(t, why);
}

void hub_tunnel_put(struct hub *h, struct tunnel *t)
{
    struct tunnel_map *m = &h->tunnels;
    size_t k;
    if (m->count + 1 > m->n_buckets)
        map_grow(m);
    if (m->n_buckets == 0)
        return;
    k = bucket_of(m, t->site_id);
    t->map_next = m->buckets[k];
    m->buckets[k] = t;
    m->count++;
}

void hub_tunnel_del(struct hub *h, struct tunnel *t)
{
    struct tunnel_map *m = &h->tunnels;
    struct tunnel **pp;
    if (m->n_buckets == 0)
        return;
    for (pp = &m->buckets[bucket_of(m, t->site_id)]; *pp != NULL; pp = &(*pp)->map_next)
        if (*pp == t) {
            *pp = t->map_next;
            t->map_next = NULL;
            m->count--;
            return;
        }
}

/* Address part of "ip:port" / "[v6]:port". */
static void peer_ip(const char *peer, char *ip, size_t cap)
{
    const char *colon = strrchr(peer, ':');
    size_t n = colon ? (size_t)(colon - peer) : strlen(peer);
    if (n >= cap)
        n = cap - 1;
    memcpy(ip, peer, n);
    ip[n] = '\0';
}

int hub_pending_inc(struct hub *h, const char *peer)
{
    char ip[48];
    size_t n = sizeof(h->pending) / sizeof(h->pending[0]);
    int free_slot = -1;

    peer_ip(peer, ip, sizeof(ip));
    for (size_t i = 0; i < n; i++) {
        if (h->pending[i].count > 0 && strcmp(h->pending[i].ip, ip) == 0) {
            if (h->pending[i].count >= h->cfg.max_pending_handshakes_per_ip)
                return -EBUSY;
            h->pending[i].count++;
            return 0;
        }
        if (h->pending[i].count == 0 && free_slot < 0)
            free_slot = (int)i;
    }
    if (free_slot < 0)
        return -EBUSY; /* 256 addresses mid-handshake at once: shed load */
    snprintf(h->pending[free_slot].ip, sizeof(h->pending[0].ip), "%s", ip);
    h->pending[free_slot].count = 1;
    return 0;
}

void hub_pending_dec(struct hub *h, const char *peer)
{
    char ip[48];
    peer_ip(peer, ip, sizeof(ip));
    for (size_t i = 0; i < sizeof(h->pending) / sizeof(h->pending[0]); i++)
        if (h->pending[i].count > 0 && strcmp(h->pending[i].ip, ip) == 0) {
            h->pending[i].count--;
            return;
        }
}
