/* The hub's site map: live tunnels by site id, and the standby tunnels waiting to take over. */
/* SPDX-License-Identifier: MIT */
#ifndef TETHER_SITEMAP_H
#define TETHER_SITEMAP_H

#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>

#include "../core/hub.h"

/* One tunnel's place in the map, embedded in the tunnel (tunnel_int.h) so
 * the map allocates nothing per site. An entry is in at most one place:
 * the live chain of its site's bucket, or the standby list; `link` serves
 * both, so it cannot be in two at once. The map owns no entry. */
enum sitemap_where { SITEMAP_NONE, SITEMAP_LIVE, SITEMAP_STANDBY };
struct sitemap_entry {
    LIST_ENTRY(sitemap_entry) link;
    int64_t site_id;
    enum sitemap_where where;
};

/* What the map asks of its entries' owner. Both are called synchronously
 * from sitemap_arrive, sitemap_take_over and sitemap_cut, and only after
 * the entry left the map: kill may remove other entries, but must not free
 * an entry that is still in the map. */
struct sitemap_ops {
    /* 1 while the entry's tunnel serves (not closing). */
    int (*is_open)(const struct sitemap_entry *e);
    /* Cut the entry's tunnel (it is no longer in the map). */
    void (*kill)(struct sitemap_entry *e, const char *why);
};

/* e is no longer anywhere, for site_id. */
void sitemap_entry_init(struct sitemap_entry *e, int64_t site_id);

/* The live entry of the site, or NULL. Standby entries are not found. */
struct sitemap_entry *sitemap_find(const struct sitemap *m, int64_t site_id);
/* A new tunnel of e's site connected. If the site has an open live tunnel,
 * e waits on standby (returns SITEMAP_STANDBY) and takes its place only at
 * sitemap_take_over; otherwise e is live (SITEMAP_LIVE), replacing a live
 * entry that was already closing (dropped from the map, not killed). */
enum sitemap_where sitemap_arrive(struct sitemap *m, struct sitemap_entry *e,
                                  const struct sitemap_ops *ops);
/* The standby entry e proved itself (answered its hello): it becomes the
 * site's live entry, and the live one it replaces is killed. */
void sitemap_take_over(struct sitemap *m, struct sitemap_entry *e, const struct sitemap_ops *ops);
/* Removes every entry of the site, live and standby, then kills each. */
void sitemap_cut(struct sitemap *m, int64_t site_id, const char *why,
                 const struct sitemap_ops *ops);
/* Removes e from wherever it is; nothing if it is nowhere. */
void sitemap_remove(struct sitemap *m, struct sitemap_entry *e);
/* Calls fn once on every entry, live then standby. The entries are listed
 * first, so fn may change the map, but must not free an entry it was not
 * given. Returns -ENOMEM (and calls nothing) when the list cannot be made. */
int sitemap_each(struct sitemap *m, void (*fn)(struct sitemap_entry *e, void *arg), void *arg);
/* Live entries, and standby ones. */
size_t sitemap_count(const struct sitemap *m);
size_t sitemap_standby_count(const struct sitemap *m);
/* Frees the table (entries are not the map's). */
void sitemap_free(struct sitemap *m);

#endif
