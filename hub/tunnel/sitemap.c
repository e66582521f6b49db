/* The hub's site map: live tunnels by site id, and the standby tunnels waiting to take over. */
/* SPDX-License-Identifier: MIT */
#include "sitemap.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>

static size_t bucket_of(const struct sitemap *m, int64_t id)
{
    uint64_t x = (uint64_t)id * 0x9E3779B97F4A7C15ull;
    return (size_t)(x >> 32) & (m->n_buckets - 1);
}

/* Doubles the table; on allocation failure keeps the old one (longer
 * chains, still correct). */
static void map_grow(struct sitemap *m)
{
    size_t nb = m->n_buckets ? m->n_buckets * 2 : 64;
    struct sitemap_chain *b = calloc(nb, sizeof(*b));
    struct sitemap_chain *old = m->buckets;
    size_t old_n = m->n_buckets;

    if (b == NULL)
        return;
    for (size_t i = 0; i < nb; i++)
        LIST_INIT(&b[i]);
    m->buckets = b;
    m->n_buckets = nb;
    for (size_t i = 0; i < old_n; i++) {
        struct sitemap_entry *e;
        while ((e = LIST_FIRST(&old[i])) != NULL) {
            LIST_REMOVE(e, link);
            LIST_INSERT_HEAD(&b[bucket_of(m, e->site_id)], e, link);
        }
    }
    free(old);
}

void sitemap_entry_init(struct sitemap_entry *e, int64_t site_id)
{
    e->site_id = site_id;
    e->where = SITEMAP_NONE;
    e->link.le_next = NULL;
    e->link.le_prev = NULL;
}

struct sitemap_entry *sitemap_find(const struct sitemap *m, int64_t site_id)
{
    struct sitemap_entry *e;

    if (m->n_buckets == 0)
        return NULL;
    LIST_FOREACH(e, &m->buckets[bucket_of(m, site_id)], link)
    {
        assert(e->where == SITEMAP_LIVE);
        if (e->site_id == site_id)
            return e;
    }
    return NULL;
}

/* e becomes the site's live entry. There is none already (callers took it
 * out). Out of memory for the first table, e stays out of the map: the
 * tunnel works but cannot be found, as before this module existed. */
static void put_live(struct sitemap *m, struct sitemap_entry *e)
{
    assert(e->where == SITEMAP_NONE);
    assert(sitemap_find(m, e->site_id) == NULL);
    if (m->count + 1 > m->n_buckets)
        map_grow(m);
    if (m->n_buckets == 0)
        return;
    LIST_INSERT_HEAD(&m->buckets[bucket_of(m, e->site_id)], e, link);
    e->where = SITEMAP_LIVE;
    m->count++;
}

void sitemap_remove(struct sitemap *m, struct sitemap_entry *e)
{
    switch (e->where) {
    case SITEMAP_NONE:
        return;
    case SITEMAP_LIVE:
        assert(m->count > 0);
        m->count--;
        break;
    case SITEMAP_STANDBY:
        assert(m->n_standby > 0);
        m->n_standby--;
        break;
    }
    LIST_REMOVE(e, link);
    e->where = SITEMAP_NONE;
}

enum sitemap_where sitemap_arrive(struct sitemap *m, struct sitemap_entry *e,
                                  const struct sitemap_ops *ops)
{
    struct sitemap_entry *old = sitemap_find(m, e->site_id);

    assert(e->where == SITEMAP_NONE);
    if (old != NULL && ops->is_open(old)) {
        LIST_INSERT_HEAD(&m->standby, e, link);
        e->where = SITEMAP_STANDBY;
        m->n_standby++;
        return SITEMAP_STANDBY;
    }
    if (old != NULL)
        sitemap_remove(m, old); /* closing already: it goes on its own */
    put_live(m, e);
    return SITEMAP_LIVE;
}

void sitemap_take_over(struct sitemap *m, struct sitemap_entry *e, const struct sitemap_ops *ops)
{
    struct sitemap_entry *old = sitemap_find(m, e->site_id);

    assert(e->where == SITEMAP_STANDBY);
    sitemap_remove(m, e);
    if (old != NULL)
        sitemap_remove(m, old);
    put_live(m, e);
    if (old != NULL)
        ops->kill(old, "replaced by a newer connection of the same site");
}

void sitemap_cut(struct sitemap *m, int64_t site_id, const char *why, const struct sitemap_ops *ops)
{
    struct sitemap_chain gone = LIST_HEAD_INITIALIZER(gone);
    struct sitemap_entry *e = sitemap_find(m, site_id), *next;

    if (e != NULL) {
        sitemap_remove(m, e);
        LIST_INSERT_HEAD(&gone, e, link);
    }
    for (e = LIST_FIRST(&m->standby); e != NULL; e = next) {
        next = LIST_NEXT(e, link);
        if (e->site_id == site_id) {
            sitemap_remove(m, e);
            LIST_INSERT_HEAD(&gone, e, link);
        }
    }
    /* Killed only once all are out, so kill may change the map. */
    while ((e = LIST_FIRST(&gone)) != NULL) {
        LIST_REMOVE(e, link);
        e->link.le_next = NULL;
        e->link.le_prev = NULL;
        ops->kill(e, why);
    }
}

int sitemap_each(struct sitemap *m, void (*fn)(struct sitemap_entry *e, void *arg), void *arg)
{
    size_t n = 0, cap = m->count + m->n_standby;
    struct sitemap_entry **all, *e;

    if (cap == 0)
        return 0;
    all = calloc(cap, sizeof(*all));
    if (all == NULL)
        return -ENOMEM;
    for (size_t b = 0; b < m->n_buckets; b++)
        LIST_FOREACH(e, &m->buckets[b], link)
    all[n++] = e;
    LIST_FOREACH(e, &m->standby, link)
    all[n++] = e;
    assert(n == cap);
    for (size_t i = 0; i < n; i++)
        fn(all[i], arg);
    free(all);
    return 0;
}

size_t sitemap_count(const struct sitemap *m)
{
    return m->count;
}

size_t sitemap_standby_count(const struct sitemap *m)
{
    return m->n_standby;
}

void sitemap_free(struct sitemap *m)
{
    free(m->buckets);
    m->buckets = NULL;
    m->n_buckets = 0;
    m->count = 0;
}
