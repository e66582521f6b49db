/* Changes made through other hubs of a shared registry: cut their tunnels here, forget cached
 * reads. */
/* SPDX-License-Identifier: MIT */
#ifndef TETHER_CLUSTER_H
#define TETHER_CLUSTER_H

#include "core/hub.h"

/* Each hub caches the tokens and sites it read (h->gen) and holds tunnels
 * of its own. When several hubs share one database, a revoke, a disable or
 * a token revoked through hub A must reach hub B's caches and tunnels too:
 * the registry's listener (store/notes.h) hears each change and this
 * module applies it to h (docs/scale-out.md, "Notifications"). */

struct cluster;

/* Starts listening to h->reg's changes. 0 and *out, or 0 and *out NULL
 * when the backend has nothing to listen to (SQLite: one hub per file);
 * -ENOMEM. */
int cluster_start(struct hub *h, struct cluster **out);
/* Stops listening: nothing is applied after this; the memory goes once the
 * loop closed its handles. NULL is a no-op. */
void cluster_stop(struct cluster *cl);

#endif
