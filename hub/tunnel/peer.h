/* Hub-to-hub peer links: each hub holds one mutually authenticated HTTP/2 connection to every other
 * hub of its cluster. */
/* SPDX-License-Identifier: MIT */
#ifndef TETHER_PEER_H
#define TETHER_PEER_H

#include <stddef.h>
#include <stdint.h>

#include "../../common/conn.h"
#include "../core/hub.h"
#include "tunnel.h"

/* The ALPN of a peer link (docs/protocol.md, "Hub-to-hub peering"). */
#define PEER_ALPN "tether-peer/1"

/* Starts dialling the cluster's other hubs (the registry's hubs table) and
 * keeping the links alive; a hub alone in its registry dials none. */
int peer_start(struct hub *h);
/* Stops the tick; the links' conns close with the hub's (conn_close_all). */
void peer_stop(struct hub *h);
/* Links up now: dialled by this hub (*out) and by other hubs (*in). */
void peer_count_up(const struct hub *h, size_t *out, size_t *in);
/* Frees the links once the loop ran the conns' close callbacks. */
void peer_free(struct hub *h);
/* The TLS pin check of an accepted tether-peer/1 handshake: 0 when pin is
 * an active hub of this registry other than this one (*hub_id, name get
 * its row), -EPERM when not (a site's key, a hub of another cluster),
 * another negative code when the registry cannot say. */
int peer_check_pin(struct hub *h, const char *pin, int64_t *hub_id, char *name, size_t name_cap);
/* The listener hands over an accepted, verified tether-peer/1 connection of
 * hub hub_id: this hub is its HTTP/2 server. */
int peer_accept(struct hub *h, struct conn *c, int64_t hub_id, const char *name, const char *pin);

/* Where a site is connected: 0 and *hub_id, the hub of its newest open
 * session (0: one recorded before hubs had ids), from a cache kept fresh
 * by peer_note_session, else read from the registry; -ENOENT when it has
 * no open session (or this hub has no peers), another negative code when
 * the registry cannot say and nothing was read before (while the database
 * is away, the last place read serves). */
int peer_site_hub(struct hub *h, int64_t site_id, int64_t *hub_id);
/* A hub opened session session_id of the site (a ses: note, hub/cluster.c). */
void peer_note_session(struct hub *h, int64_t site_id, int64_t session_id, int64_t hub_id);
/* 1 when this hub's link to hub hub_id is up. */
int peer_link_up(struct hub *h, int64_t hub_id);
/* Streams the link to the hub where the site is placed (as last read by
 * peer_site_hub) serves at once; 0 when there is none up. */
size_t peer_site_slots(struct hub *h, int64_t site_id);
/* Opens a stream carrying a forwarded user request on the link to hub
 * hub_id, as tunnel_stream_open: -ENOTCONN when the link is not up. */
int peer_stream_open(struct hub *h, int64_t hub_id, const nghttp2_nv *nva, size_t n, int has_body,
                     const struct tstream_ops *ops, void *arg, struct tstream **out);

#endif
