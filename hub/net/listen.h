/* The hub's listeners: one port for sites and users, told apart by ALPN after the TLS handshake. */
/* SPDX-License-Identifier: MIT */
#ifndef TETHER_LISTEN_H
#define TETHER_LISTEN_H

#include <stddef.h>

#include "../core/hub.h"

/* Listens on hostport ("host:port", "[v6]:port"); err gets the reason of a
 * failure. 0 or a negative code. */
int hub_listen(struct hub *h, const char *hostport, char *err, size_t err_cap);
/* Closes the listeners and the heap trim timer (drain and shutdown). */
void hub_listen_stop(struct hub *h);
/* Frees what the listeners kept for the hub's life (the pin cache). */
void hub_listen_free(struct hub *h);

#endif
