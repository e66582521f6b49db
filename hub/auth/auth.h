/* Who is asking: the bearer token's identity and the sites its scope lets it see. */
/* SPDX-License-Identifier: MIT */
#ifndef TETHER_AUTH_H
#define TETHER_AUTH_H

#include <stddef.h>
#include <stdint.h>

#include "../../common/token.h"
#include "../store/registry.h"

struct hub;

/* Who made a request, after the bearer token was checked. */
struct auth {
    int64_t token_id;
    char name[TOKEN_NAME_MAX + 1];
    int admin;
    char *scope_json;    /* NULL = all sites; owned (auth_clear frees it) */
    char *services_json; /* NULL = every unrestricted service; else a JSON array
                            of the only services allowed; owned likewise */
};

/* What auth_service_allowed decided. */
enum auth_svc {
    AUTH_SVC_OK = 0,
    AUTH_SVC_NOT_LISTED, /* the token names services, not this one */
    AUTH_SVC_RESTRICTED, /* the site restricts it: admin or a token naming it only */
};

/* Frees what a holds and zeroes it; a may be all zeroes. */
void auth_clear(struct auth *a);
/* dst = a deep copy of src (dst owned by the caller: auth_clear). 0 or
 * -ENOMEM (dst then holds nothing). */
int auth_copy(struct auth *dst, const struct auth *src);
/* 1 if a may see or use the site s: an admin, an unscoped token, a token
 * naming s, or one whose non-empty label selector s's labels match. */
int auth_site_allowed(const struct auth *a, const struct reg_site *s);
/* May a use service on a site where it is restricted (1) or not (0)? A
 * token with a services list may use exactly those (restricted or not); one
 * without may use every unrestricted service, and restricted ones only if
 * it is an admin token. Checked on every request and stream: a cheap call,
 * no registry read. */
enum auth_svc auth_service_allowed(const struct auth *a, const char *service, int restricted);
/* A refusal's detail for the 403 answer and the audit row, into buf. */
void auth_service_refusal(enum auth_svc why, const char *site, const char *service, char *buf,
                          size_t cap);
/* 1 if the JSON array text list (NULL: no list) holds name. */
int auth_list_has(const char *list_json, const char *name);
/* The identity of token id as its row says now, whatever its state (a
 * queued query is delivered for the token that submitted it). 0, -ENOENT or
 * the registry's negative code; out owned by the caller (auth_clear). */
int auth_token_by_id(struct hub *h, int64_t id, struct auth *out);

/* Checks an Authorization header value ("Bearer <token>"; NULL: none) and
 * fills out with the token's identity (out->scope_json owned by the caller:
 * auth_clear). Every call looks the token up, through h's read cache: a
 * revoke takes effect on the next request, an expiry at its second. 0,
 * -EACCES whatever was wrong with the token (out is then zeroed), or the
 * registry's storage error (registry_storage_error names it) when the token
 * cannot be looked up and was not read before. */
int auth_bearer(struct hub *h, const char *authorization, struct auth *out);
/* registry_site_get through h's read cache (out owned by the caller:
 * registry_site_clear). 0, -ENOENT or the registry's negative code. */
int auth_site_get(struct hub *h, const char *name, struct reg_site *out);
/* Keeps a copy of s, just read from the registry (a site connecting), so
 * that its requests are served through a database outage. */
void auth_site_remember(struct hub *h, const struct reg_site *s);
/* A change was made (or may have been) through this hub to what name
 * names: forgets the tokens and the site of that name, for the outage
 * fallback too (h->gen covers the fresh reads). Every change to a token or
 * a site names it as its audit target. */
void auth_forget(struct hub *h, const char *name);
/* The same for every token and site: changes may have been missed (a
 * shared database's notifications lost, hub/cluster.c). */
void auth_forget_all(struct hub *h);
/* Frees h's read caches (at exit; a later call fills them again). */
void auth_cache_free(struct hub *h);

#endif
