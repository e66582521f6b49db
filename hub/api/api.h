/* The hub's HTTP API router: health, sites, enrollment, and the hand-off of proxied requests. */
/* SPDX-License-Identifier: MIT */
#ifndef TETHER_API_H
#define TETHER_API_H

#include "../core/hub.h"
#include "../http/user.h"

/* Called once per request when its head is complete; installs a handler or
 * answers at once. */
void api_dispatch(struct hub *h, struct ureq *r);

/* Frees the API's read caches (tokens, sites); at exit. */
void api_shutdown(void);

#endif
