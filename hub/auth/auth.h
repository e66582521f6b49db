/* Who is asking: the bearer token's identity and the sites its scope lets it see. */
/* SPDX-License-Identifier: MIT */
#ifndef TETHER_AUTH_H
#define TETHER_AUTH_H

#include <stdint.h>

#include "../../common/token.h"
#include "../store/registry.h"

struct hub;

/* Who made a request, after the bearer token was checked. */
struct auth {
    int64_t token_id;
    char name[TOKEN_NAME_MAX + 1];
    int admin;
    char *scope_json; /* NULL = all sites; owned (auth_clear frees it) */
};

/* Frees what a holds and zeroes it; a may be all zeroes. */
void auth_clear(struct auth *a);
/* 1 if a may see or use the site s: an admin, an unscoped token, a token
 * naming s, or one whose non-empty label selector s's labels match. */
int auth_site_allowed(const struct auth *a, const struct reg_site *s);

/* Checks an Authorization header value ("Bearer <token>"; NULL: none) and
 * fills out with the token's identity (out->scope_json owned by the caller:
 * auth_clear). Every call looks the token up, through h's read cache: a
 * revoke takes effect on the next request, an expiry at its second. 0, or
 * -EACCES whatever was wrong (out is then zeroed). */
int auth_bearer(struct hub *h, const char *authorization, struct auth *out);
/* registry_site_get through h's read cache (out owned by the caller:
 * registry_site_clear). 0, -ENOENT or the registry's negative code. */
int auth_site_get(struct hub *h, const char *name, struct reg_site *out);
/* Frees h's read caches (at exit; a later call fills them again). */
void auth_cache_free(struct hub *h);

#endif
