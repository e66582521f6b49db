/* Connections per source address: handshakes in progress and established user connections. */
/* SPDX-License-Identifier: MIT */
#ifndef TETHER_IPCOUNT_H
#define TETHER_IPCOUNT_H

#include "hub.h"

/* The tables live in struct hub (pending[], users). The listener (hub/net)
 * counts each connection in; the user layer (hub/http) gives a user
 * connection's count back when it closes; main frees the table at exit. */

/* Source-address handshake accounting: inc is -EBUSY at
 * max_pending_handshakes_per_ip, or when 256 addresses handshake at once. */
int hub_pending_inc(struct hub *h, const char *peer);
/* Gives one count of peer's address back; returns its slot in pending[]
 * (free again when its count is 0), or -1 if it had none. */
int hub_pending_dec(struct hub *h, const char *peer);
/* The slot in pending[] of peer's address, or -1. */
int hub_pending_slot(const struct hub *h, const char *peer);

/* User connections per source address (max_user_conns_per_ip; IPv6 counts
 * per /64): inc is -EBUSY at the cap and -ENOMEM when out of memory;
 * hub_users_dec undoes one inc. */
int hub_users_inc(struct hub *h, const char *peer);
int hub_users_count(const struct hub *h, const char *peer);
void hub_users_dec(struct hub *h, const char *peer);
void hub_users_free(struct hub *h);

#endif
