/* The hub's user connections: HTTP/1.1 (http-parser) and HTTP/2 (nghttp2) front ends producing
 * requests (ureq.h) for the hub's dispatch. */
/* SPDX-License-Identifier: MIT */
#ifndef TETHER_USER_H
#define TETHER_USER_H

#include "../../common/conn.h"
#include "../core/hub.h"
/* What a request is and how it is answered; here too for the includers that
 * took it from this header before it had its own. */
#include "ureq.h"

/* Called by the listener for a user connection whose TLS handshake is done;
 * alpn is "h2" or anything else for HTTP/1.1. On success takes over c and
 * the connection's count in hub_users_inc (given back when c closes); on
 * failure (-ENOMEM) c and the count stay the caller's. */
int user_attach(struct hub *h, struct conn *c, const char *alpn);
/* The same for a verified peer link of hub hub_id (hub/tunnel/peer.c): its
 * HTTP/2 streams are user requests another hub forwards (ureq_peer_hub).
 * It has no idle deadline, is not counted among users, and gone(arg,
 * reason) is called when c closes. On failure c stays the caller's. */
int user_attach_peer(struct hub *h, struct conn *c, int64_t hub_id,
                     void (*gone)(void *arg, const char *reason), void *arg);

#endif
