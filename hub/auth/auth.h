/* Who is asking: the bearer token's identity and the sites its scope lets it see. */
/* SPDX-License-Identifier: MIT */
#ifndef TETHER_AUTH_H
#define TETHER_AUTH_H

#include <stdint.h>

#include "../../common/token.h"
#include "../store/registry.h"

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

#endif
