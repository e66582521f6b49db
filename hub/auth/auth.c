/* Who is asking: bearer identity, site scope, and the read caches behind them (auth.h). */
/* SPDX-License-Identifier: MIT */
#include "auth.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../core/hub.h"
#include "../http/apijson.h"

/* Read caches for the per-request checks. Every request still checks its
 * token and site; a cached answer is used only while no state change has
 * happened since it was read (h->gen), and a token's expiry is compared with
 * the clock each time. They keep SQLite, and its file locks, off the path of
 * proxied requests. Direct-mapped: a collision just means a registry read.
 * One per hub, so two hubs in one process share nothing.
 *
 * While the database is unreachable (-ENOTCONN: a PostgreSQL restart), an
 * entry older than h->gen still answers: nothing can change in the registry
 * while it is down, and what changed before was made through this hub,
 * whose changes forget the entries they name (auth_forget). So connected
 * sites stay served through an outage; a token or site not in the cache
 * stays a 503. Other storage errors (-EBUSY: another process holds the
 * lock, and may be changing rows) never use it. */
#define AUTH_CACHE 256
#define SITE_CACHE 1024
/* Longest bearer token looked at; longer ones are refused unhashed. */
#define BEARER_MAX 256

struct auth_entry {
    uint64_t gen; /* h->gen + 1 when filled; 0 = empty or forgotten */
    int known;    /* holds a row the registry gave, good through an outage */
    char hash[65];
    int64_t expires_at;
    struct auth a; /* a's JSON texts owned by the entry */
};

struct site_entry {
    uint64_t gen;      /* as auth_entry's */
    int known;         /* as auth_entry's */
    struct reg_site s; /* labels_json, services_json owned by the entry */
};

struct auth_cache {
    struct auth_entry tokens[AUTH_CACHE];
    struct site_entry sites[SITE_CACHE];
};

void auth_clear(struct auth *a)
{
    free(a->scope_json);
    free(a->services_json);
    a->scope_json = NULL;
    a->services_json = NULL;
}

int auth_list_has(const char *list_json, const char *name)
{
    json_t *list, *v;
    size_t i;
    int ok = 0;

    if (list_json == NULL)
        return 0;
    /* list: a new reference, released below. */
    list = json_loads(list_json, 0, NULL);
    json_array_foreach(list, i, v)
    {
        if (json_is_string(v) && strcmp(json_string_value(v), name) == 0)
            ok = 1;
    }
    json_decref(list);
    return ok;
}

enum auth_svc auth_service_allowed(const struct auth *a, const char *service, int restricted)
{
    if (a->services_json != NULL)
        return auth_list_has(a->services_json, service) ? AUTH_SVC_OK : AUTH_SVC_NOT_LISTED;
    if (restricted && !a->admin)
        return AUTH_SVC_RESTRICTED;
    return AUTH_SVC_OK;
}

void auth_service_refusal(enum auth_svc why, const char *site, const char *service, char *buf,
                          size_t cap)
{
    if (why == AUTH_SVC_NOT_LISTED)
        snprintf(buf, cap, "this token may not use service \"%s\" (not in its \"services\")",
                 service);
    else
        snprintf(buf, cap,
                 "service \"%s\" of site \"%s\" is restricted: it needs an admin token or a "
                 "token naming it in \"services\"",
                 service, site);
}

int auth_site_allowed(const struct auth *a, const struct reg_site *s)
{
    json_t *scope, *labels, *v;
    size_t i;
    int ok = 0;

    if (a->admin || a->scope_json == NULL)
        return 1;
    /* scope: a new reference, released below. */
    scope = json_loads(a->scope_json, 0, NULL);
    if (json_is_array(scope)) {
        json_array_foreach(scope, i, v)
        {
            if (json_is_string(v) && strcmp(json_string_value(v), s->name) == 0)
                ok = 1;
        }
    } else if (json_is_object(scope) && json_is_object(labels = json_object_get(scope, "labels")) &&
               json_object_size(labels) > 0) {
        /* An empty selector would match every site: never from token_create,
         * and refused here too in case a row was written by hand. */
        ok = apijson_labels_match(labels, s->labels_json);
    }
    json_decref(scope);
    return ok;
}

/* h's caches, made on first use; NULL when out of memory (then every read
 * goes to the registry). */
static struct auth_cache *cache_of(struct hub *h)
{
    if (h->auth_cache == NULL)
        h->auth_cache = calloc(1, sizeof(*h->auth_cache));
    return h->auth_cache;
}

static unsigned str_slot(const char *s, unsigned n)
{
    uint32_t x = 2166136261u;
    for (; *s; s++)
        x = (x ^ (uint8_t)*s) * 16777619u;
    return x % n;
}

int auth_copy(struct auth *dst, const struct auth *src)
{
    *dst = *src;
    dst->scope_json = NULL;
    dst->services_json = NULL;
    if ((src->scope_json != NULL && (dst->scope_json = strdup(src->scope_json)) == NULL) ||
        (src->services_json != NULL && (dst->services_json = strdup(src->services_json)) == NULL)) {
        auth_clear(dst);
        return -ENOMEM;
    }
    return 0;
}

static void site_fill(struct site_entry *e, const struct reg_site *s, uint64_t gen)
{
    registry_site_clear(&e->s);
    e->gen = 0;
    e->known = 0;
    if (registry_site_copy(&e->s, s) == 0) {
        e->gen = gen;
        e->known = 1;
    }
}

int auth_site_get(struct hub *h, const char *name, struct reg_site *out)
{
    struct auth_cache *c = cache_of(h);
    struct site_entry *e = c ? &c->sites[str_slot(name, SITE_CACHE)] : NULL;
    int rc;

    if (e != NULL && e->gen == h->gen + 1 && strcmp(e->s.name, name) == 0)
        return registry_site_copy(out, &e->s);
    rc = registry_site_get(h->reg, name, out);
    if (rc == -ENOTCONN && e != NULL && e->known && strcmp(e->s.name, name) == 0)
        return registry_site_copy(out, &e->s);
    if (rc != 0 || e == NULL)
        return rc;
    site_fill(e, out, h->gen + 1);
    return 0;
}

void auth_site_remember(struct hub *h, const struct reg_site *s)
{
    struct auth_cache *c = cache_of(h);

    /* Not fresh (gen 0): the next request reads the row once more. */
    if (c != NULL)
        site_fill(&c->sites[str_slot(s->name, SITE_CACHE)], s, 0);
}

void auth_forget(struct hub *h, const char *name)
{
    struct auth_cache *c = h->auth_cache;
    struct site_entry *e;

    if (c == NULL || name == NULL || name[0] == '\0')
        return;
    for (size_t i = 0; i < AUTH_CACHE; i++) {
        if (strcmp(c->tokens[i].a.name, name) == 0) {
            c->tokens[i].gen = 0;
            c->tokens[i].known = 0;
        }
    }
    e = &c->sites[str_slot(name, SITE_CACHE)];
    if (strcmp(e->s.name, name) == 0) {
        e->gen = 0;
        e->known = 0;
    }
}

void auth_forget_all(struct hub *h)
{
    struct auth_cache *c = h->auth_cache;

    if (c == NULL)
        return;
    for (size_t i = 0; i < AUTH_CACHE; i++) {
        c->tokens[i].gen = 0;
        c->tokens[i].known = 0;
    }
    for (size_t i = 0; i < SITE_CACHE; i++) {
        c->sites[i].gen = 0;
        c->sites[i].known = 0;
    }
}

/* a = the identity of row t, whose JSON texts a takes over. */
static void auth_take(struct auth *a, struct reg_apitoken *t)
{
    a->token_id = t->id;
    snprintf(a->name, sizeof(a->name), "%s", t->name);
    a->admin = strcmp(t->role, "admin") == 0;
    a->scope_json = t->scope_json;
    a->services_json = t->services_json;
    t->scope_json = NULL;
    t->services_json = NULL;
}

/* Fills a from the registry's row for hash, and the cache entry e (may be
 * NULL) with a copy. */
static int lookup(struct hub *h, const char *hash, int64_t now, struct auth *a,
                  struct auth_entry *e)
{
    struct reg_apitoken t;
    int rc;

    memset(&t, 0, sizeof(t));
    /* Every request looks its token up: a revoke or an expiry takes effect on
     * the next request, not on the next connection. */
    rc = registry_apitoken_lookup(h->reg, hash, now, &t);
    if (rc != 0 && registry_storage_error(rc) != NULL) {
        if (rc == -ENOTCONN && e != NULL && e->known && strcmp(e->hash, hash) == 0 &&
            (e->expires_at == 0 || e->expires_at > now))
            return auth_copy(a, &e->a) == 0 ? 0 : -EACCES;
        return rc;
    }
    if (rc != 0)
        return -EACCES;
    auth_take(a, &t);
    if (e != NULL) {
        auth_clear(&e->a);
        memset(e, 0, sizeof(*e));
        if (auth_copy(&e->a, a) == 0) {
            snprintf(e->hash, sizeof(e->hash), "%s", hash);
            e->expires_at = t.expires_at;
            e->gen = h->gen + 1;
            e->known = 1;
        }
    }
    registry_apitoken_clear(&t);
    return 0;
}

int auth_token_by_id(struct hub *h, int64_t id, struct auth *out)
{
    struct reg_apitoken t;
    int rc;

    memset(out, 0, sizeof(*out));
    rc = registry_apitoken_get(h->reg, id, &t);
    if (rc != 0)
        return rc;
    auth_take(out, &t);
    registry_apitoken_clear(&t);
    return 0;
}

int auth_bearer(struct hub *h, const char *v, struct auth *a)
{
    struct auth_cache *c;
    struct auth_entry *e;
    char hash[65];
    int64_t now = hub_now();

    memset(a, 0, sizeof(*a));
    if (v == NULL || strncasecmp(v, "Bearer ", 7) != 0)
        return -EACCES;
    v += 7;
    while (*v == ' ')
        v++;
    if (strlen(v) > BEARER_MAX || token_hash_hex(v, strlen(v), hash) != 0)
        return -EACCES;
    c = cache_of(h);
    e = c ? &c->tokens[str_slot(hash, AUTH_CACHE)] : NULL;
    if (e != NULL && e->gen == h->gen + 1 && strcmp(e->hash, hash) == 0 &&
        (e->expires_at == 0 || e->expires_at > now))
        return auth_copy(a, &e->a) == 0 ? 0 : -EACCES;
    return lookup(h, hash, now, a, e);
}

void auth_cache_free(struct hub *h)
{
    struct auth_cache *c = h->auth_cache;

    if (c == NULL)
        return;
    for (size_t i = 0; i < AUTH_CACHE; i++)
        auth_clear(&c->tokens[i].a);
    for (size_t i = 0; i < SITE_CACHE; i++)
        registry_site_clear(&c->sites[i].s);
    free(c);
    h->auth_cache = NULL;
}
