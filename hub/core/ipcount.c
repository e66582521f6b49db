/* Connections per source address: handshakes in progress and established user connections. */
/* SPDX-License-Identifier: MIT */
#include "ipcount.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/net.h"

int hub_pending_inc(struct hub *h, const char *peer)
{
    char ip[48];
    size_t n = sizeof(h->pending) / sizeof(h->pending[0]);
    int free_slot = -1;

    net_peer_ip(peer, ip, sizeof(ip));
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

int hub_pending_slot(const struct hub *h, const char *peer)
{
    char ip[48];
    net_peer_ip(peer, ip, sizeof(ip));
    for (size_t i = 0; i < sizeof(h->pending) / sizeof(h->pending[0]); i++)
        if (h->pending[i].count > 0 && strcmp(h->pending[i].ip, ip) == 0)
            return (int)i;
    return -1;
}

int hub_pending_dec(struct hub *h, const char *peer)
{
    int i = hub_pending_slot(h, peer);

    if (i >= 0)
        h->pending[i].count--;
    return i;
}

/* --- user connections per source address --- */

/* The counting key of "ip:port" / "[v6]:port": the IPv4 address, or the
 * IPv6 /64 (one host's interface usually owns a whole /64, so counting per
 * address would not limit it). An IPv4-mapped IPv6 address counts as IPv4. */
static void users_key(const char *peer, char *key, size_t cap)
{
    char ip[48];
    struct in6_addr a6;
    size_t n;

    net_peer_ip(peer, ip, sizeof(ip));
    n = strlen(ip);
    if (n >= 2 && ip[0] == '[' && ip[n - 1] == ']') {
        memmove(ip, ip + 1, n - 2);
        ip[n - 2] = '\0';
    }
    if (inet_pton(AF_INET6, ip, &a6) == 1) {
        if (IN6_IS_ADDR_V4MAPPED(&a6)) {
            inet_ntop(AF_INET, &a6.s6_addr[12], key, (socklen_t)cap);
            return;
        }
        memset(&a6.s6_addr[8], 0, 8);
        inet_ntop(AF_INET6, &a6, key, (socklen_t)cap);
        snprintf(key + strlen(key), cap - strlen(key), "/64");
        return;
    }
    snprintf(key, cap, "%s", ip);
}

static size_t users_bucket(const struct ipcount *m, const char *key)
{
    uint64_t x = 1469598103934665603ull; /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)key; *p; p++)
        x = (x ^ *p) * 1099511628211ull;
    return (size_t)x & (m->n_buckets - 1);
}

static struct ipcount_slot *users_find(const struct ipcount *m, const char *key)
{
    struct ipcount_slot *s;
    if (m->n_buckets == 0)
        return NULL;
    SLIST_FOREACH(s, &m->buckets[users_bucket(m, key)], next)
    if (strcmp(s->key, key) == 0)
        return s;
    return NULL;
}

/* Doubles the table; on allocation failure keeps the old one (longer
 * chains, still correct). */
static void users_grow(struct ipcount *m)
{
    size_t nb = m->n_buckets ? m->n_buckets * 2 : 256;
    struct ipcount_chain *b = calloc(nb, sizeof(*b));
    struct ipcount old = *m;

    if (b == NULL)
        return;
    for (size_t i = 0; i < nb; i++)
        SLIST_INIT(&b[i]);
    m->buckets = b;
    m->n_buckets = nb;
    for (size_t i = 0; i < old.n_buckets; i++) {
        struct ipcount_slot *s;
        while ((s = SLIST_FIRST(&old.buckets[i])) != NULL) {
            SLIST_REMOVE_HEAD(&old.buckets[i], next);
            SLIST_INSERT_HEAD(&b[users_bucket(m, s->key)], s, next);
        }
    }
    free(old.buckets);
}

/* The slot of peer's key (NULL if not counted); key receives the key. */
static struct ipcount_slot *users_slot(const struct hub *h, const char *peer, char key[64])
{
    users_key(peer, key, 64);
    return users_find(&h->users, key);
}

int hub_users_inc(struct hub *h, const char *peer)
{
    struct ipcount *m = &h->users;
    char key[64];
    struct ipcount_slot *s = users_slot(h, peer, key);

    if (s != NULL) {
        if (s->count >= h->cfg.max_user_conns_per_ip)
            return -EBUSY;
        s->count++;
        return 0;
    }
    if (h->cfg.max_user_conns_per_ip < 1)
        return -EBUSY;
    if (m->n_keys + 1 > m->n_buckets)
        users_grow(m);
    if (m->n_buckets == 0)
        return -ENOMEM;
    s = calloc(1, sizeof(*s));
    if (s == NULL)
        return -ENOMEM;
    snprintf(s->key, sizeof(s->key), "%s", key);
    s->count = 1;
    SLIST_INSERT_HEAD(&m->buckets[users_bucket(m, key)], s, next);
    m->n_keys++;
    return 0;
}

void hub_users_dec(struct hub *h, const char *peer)
{
    struct ipcount *m = &h->users;
    char key[64];
    struct ipcount_slot *s = users_slot(h, peer, key);

    assert(s != NULL && s->count > 0);
    if (s == NULL || --s->count > 0)
        return;
    SLIST_REMOVE(&m->buckets[users_bucket(m, key)], s, ipcount_slot, next);
    m->n_keys--;
    free(s);
}

int hub_users_count(const struct hub *h, const char *peer)
{
    char key[64];
    const struct ipcount_slot *s = users_slot(h, peer, key);

    return s ? s->count : 0;
}

void hub_users_free(struct hub *h)
{
    struct ipcount *m = &h->users;
    for (size_t i = 0; i < m->n_buckets; i++) {
        struct ipcount_slot *s;
        while ((s = SLIST_FIRST(&m->buckets[i])) != NULL) {
            SLIST_REMOVE_HEAD(&m->buckets[i], next);
            free(s);
        }
    }
    free(m->buckets);
    memset(m, 0, sizeof(*m));
}
