/* The forwarding headers the hub sets on a request to a site's service, and the names it reserves.
 */
/* SPDX-License-Identifier: MIT */
#ifndef TETHER_FWD_H
#define TETHER_FWD_H

#include <stddef.h>

/* 1 if a user may not send this (lower-case) header on to a service: the hub
 * sets it itself or it claims who is asking (tether-*, x-tether-*, forwarded,
 * x-forwarded-*, x-real-ip, true-client-ip, x-client-ip, x-cluster-client-ip,
 * client-ip). */
int fwd_reserved(const char *name);

/* The values of the forwarding headers for one request. */
struct fwd {
    char addr[64];       /* X-Forwarded-For: the bare client address */
    char host[256];      /* X-Forwarded-Host: "" when the user's Host was absent or invalid */
    char forwarded[384]; /* Forwarded (RFC 7239): for=...;proto=https[;host="..."] */
};

/* Fills f from the peer ("ip:port" or "[v6]:port", as conn.c writes it) and
 * the Host (or :authority) the user sent (NULL if none). A v4-mapped v6
 * address is written as the v4 address. */
void fwd_build(struct fwd *f, const char *peer, const char *host);

#endif
