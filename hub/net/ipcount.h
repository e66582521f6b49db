/* Connections per source address: handshakes in progress and established user connections. */
/* SPDX-License-Identifier: MIT */
#ifndef TETHER_IPCOUNT_H
#define TETHER_IPCOUNT_H

#include "../core/hub.h"

/* The tables live in struct hub (pending[], users); only this module and
 * the listener change them. hub_users_dec and hub_users_free are declared
 * in core/hub.h: the user layer (hub/http) gives a connection's count back
 * when it closes, and main frees the table, without including hub/net. */

/* Source-address handshake accounting: inc is -EBUSY at
 * max_pending_handshakes_per_ip, or when 256 addresses handshake at once. */
int hub_pending_inc(struct hub *h, const char *peer);
void hub_pending_dec(struct hub *h, const char *peer);

/* User connections per source address (max_user_conns_per_ip; IPv6 counts
 * per /64): inc is -EBUSY at the cap and -ENOMEM when out of memory;
 * hub_users_dec undoes one inc. */
int hub_users_inc(struct hub *h, const char *peer);
int hub_users_count(const struct hub *h, const char *peer);

#endif
