/* The hub's HTTP API: the dispatch callback the user front ends call for every request. */
/* SPDX-License-Identifier: MIT */
#ifndef TETHER_API_H
#define TETHER_API_H

#include "../auth/auth.h" /* auth_cache_free, which main calls at exit */
#include "../core/hub.h"
#include "../http/user.h"

/* Called once per request when its head is complete; installs a handler or
 * answers at once. */
void api_dispatch(struct hub *h, struct ureq *r);

#endif
