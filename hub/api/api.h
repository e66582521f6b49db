/* The hub's HTTP API router: health, sites, enrollment, and the hand-off of proxied requests. */
/* SPDX-License-Identifier: MIT */
#ifndef TETHER_API_H
#define TETHER_API_H

#include "../core/hub.h"
#include "../http/user.h"

/* Called once per request when its head is complete; installs a handler or
 * answers at once. */
void api_dispatch(struct hub *h, struct ureq *r);

/* Who made a request, after the bearer token was checked. */
struct api_auth {
    int64_t token_id;
    char name[TOKEN_NAME_MAX + 1];
    int admin;
    char *scope_json; /* NULL = all sites; owned */
};

/* Frees the API's read caches (tokens, sites); at exit. */
void api_shutdown(void);

/* 1 if auth may see or use this site. */
int api_site_allowed(const struct api_auth *a, const struct reg_site *s);

#endif
