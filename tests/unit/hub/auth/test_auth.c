/* Unit tests of hub/auth (auth.h): bearer parsing, roles, scopes, and per-hub read caches. */
/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "common/token.h"
#include "hub/auth/auth.h"
#include "hub/core/hub.h"
#include "hub/store/db_sqlite.h"
#include "hub/store/registry.h"
#include "testutil.h"

static char tmpdir[64], dbpath[128];

/* A new API token in the registry; its bearer text in tok. */
static void token_add(struct registry *reg, const char *name, const char *role, const char *scope,
                      int64_t expires_at, char tok[TOKEN_API_LEN + 1])
{
    char hash[65];

    CHECK_EQ_INT(token_api_generate(tok), 0);
    CHECK_EQ_INT(token_hash_hex(tok, strlen(tok), hash), 0);
    CHECK_EQ_INT(registry_apitoken_create(reg, name, role, scope, hash, expires_at, hub_now()), 0);
}

/* auth_bearer with "Bearer <tok>". */
static int bearer(struct hub *h, const char *tok, struct auth *a)
{
    char v[400];

    snprintf(v, sizeof(v), "Bearer %s", tok);
    return auth_bearer(h, v, a);
}

/* 1 if the token may see the site (loaded through the cache). */
static int may_see(struct hub *h, const char *tok, const char *site)
{
    struct auth a;
    struct reg_site s;
    int ok = -1;

    memset(&s, 0, sizeof(s));
    if (bearer(h, tok, &a) == 0 && auth_site_get(h, site, &s) == 0)
        ok = auth_site_allowed(&a, &s);
    registry_site_clear(&s);
    auth_clear(&a);
    return ok;
}

int main(void)
{
    char err[256], admin[TOKEN_API_LEN + 1], all[TOKEN_API_LEN + 1], names[TOKEN_API_LEN + 1];
    char labels[TOKEN_API_LEN + 1], empty[TOKEN_API_LEN + 1], old[TOKEN_API_LEN + 1];
    char v[400];
    struct hub h, h2;
    struct auth a;
    struct reg_site s;
    int64_t now = hub_now();

    snprintf(tmpdir, sizeof(tmpdir), "/tmp/tether-auth-XXXXXX");
    CHECK(mkdtemp(tmpdir) != NULL);
    snprintf(dbpath, sizeof(dbpath), "%s/hub.db", tmpdir);
    memset(&h, 0, sizeof(h));
    CHECK_EQ_INT(registry_open(dbpath, &h.reg, err, sizeof(err)), 0);
    h2 = h; /* a second hub on the same registry */
    CHECK_EQ_INT(registry_site_create(h.reg, "edge-1", "{\"env\":\"prod\",\"zone\":\"a\"}", now),
                 0);
    CHECK_EQ_INT(registry_site_create(h.reg, "edge-2", "{\"env\":\"dev\"}", now), 0);
    token_add(h.reg, "root", "admin", NULL, 0, admin);
    token_add(h.reg, "all", "user", NULL, 0, all);
    token_add(h.reg, "names", "user", "[\"edge-1\"]", 0, names);
    token_add(h.reg, "labels", "user", "{\"labels\":{\"env\":\"prod\"}}", 0, labels);
    token_add(h.reg, "empty", "user", "{\"labels\":{}}", 0, empty);
    token_add(h.reg, "old", "user", NULL, now + 3600, old);
    /* The registry takes no expiry in the past: age the row by hand. */
    CHECK_EQ_INT(
        sqlite3_exec(
            registry_sqlite_db(h.reg),
            "UPDATE api_tokens SET created_at = created_at - 100, expires_at = created_at - 10 "
            "WHERE name = 'old'",
            NULL, NULL, NULL),
        SQLITE_OK);

    /* Bearer parsing: the scheme is case-insensitive, spaces before the
     * token are skipped; anything else is -EACCES with out zeroed. */
    CHECK_EQ_INT(bearer(&h, admin, &a), 0);
    CHECK_EQ_STR(a.name, "root");
    CHECK_EQ_INT(a.admin, 1);
    CHECK(a.scope_json == NULL);
    auth_clear(&a);
    snprintf(v, sizeof(v), "bearer    %s", names);
    CHECK_EQ_INT(auth_bearer(&h, v, &a), 0);
    CHECK_EQ_STR(a.name, "names");
    CHECK_EQ_INT(a.admin, 0);
    CHECK_EQ_STR(a.scope_json, "[\"edge-1\"]");
    auth_clear(&a);
    CHECK_EQ_INT(auth_bearer(&h, NULL, &a), -EACCES);
    snprintf(v, sizeof(v), "Basic %s", admin);
    CHECK_EQ_INT(auth_bearer(&h, v, &a), -EACCES);
    CHECK_EQ_INT(auth_bearer(&h, "Bearer", &a), -EACCES);
    CHECK_EQ_INT(bearer(&h, "tth_not-a-token", &a), -EACCES);
    CHECK_EQ_INT(a.name[0], '\0');
    memset(v, 'a', 300);
    v[300] = '\0';
    CHECK_EQ_INT(bearer(&h, v, &a), -EACCES); /* over-long: refused unhashed */
    /* An expired token is refused. */
    CHECK_EQ_INT(bearer(&h, old, &a), -EACCES);

    /* Scope: admin and unscoped tokens see all; a name list its names; a
     * label selector the sites it matches; an empty selector nothing. */
    CHECK_EQ_INT(may_see(&h, admin, "edge-2"), 1);
    CHECK_EQ_INT(may_see(&h, all, "edge-2"), 1);
    CHECK_EQ_INT(may_see(&h, names, "edge-1"), 1);
    CHECK_EQ_INT(may_see(&h, names, "edge-2"), 0);
    CHECK_EQ_INT(may_see(&h, labels, "edge-1"), 1);
    CHECK_EQ_INT(may_see(&h, labels, "edge-2"), 0);
    CHECK_EQ_INT(may_see(&h, empty, "edge-1"), 0);
    CHECK_EQ_INT(may_see(&h, empty, "edge-2"), 0);
    memset(&s, 0, sizeof(s));
    CHECK_EQ_INT(auth_site_get(&h, "nowhere", &s), -ENOENT);

    /* The caches hold answers for one generation: a change written behind
     * the hub's back is not seen until h->gen moves (the API bumps it on
     * every state change), and a second hub has caches of its own. The
     * token cache is direct-mapped by a hash of the (random) token, so "all"
     * is looked up again just before: one of the lookups above may have
     * taken its slot (about 1 run in 100). */
    CHECK_EQ_INT(bearer(&h, all, &a), 0);
    auth_clear(&a);
    CHECK_EQ_INT(registry_apitoken_revoke(h.reg, "all", hub_now()), 0);
    CHECK_EQ_INT(registry_site_set_labels(h.reg, "edge-2", "{\"env\":\"prod\"}"), 0);
    CHECK_EQ_INT(bearer(&h, all, &a), 0); /* cached */
    auth_clear(&a);
    CHECK_EQ_INT(may_see(&h, labels, "edge-2"), 0); /* cached labels */
    CHECK_EQ_INT(bearer(&h2, all, &a), -EACCES);    /* h2 shares no cache */
    CHECK_EQ_INT(may_see(&h2, labels, "edge-2"), 1);
    CHECK(h.auth_cache != NULL && h2.auth_cache != NULL && h.auth_cache != h2.auth_cache);
    h.gen++;
    CHECK_EQ_INT(bearer(&h, all, &a), -EACCES);
    CHECK_EQ_INT(may_see(&h, labels, "edge-2"), 1);

    /* Freed at exit; a later use fills them again. */
    auth_cache_free(&h);
    CHECK(h.auth_cache == NULL);
    auth_cache_free(&h); /* twice is harmless */
    CHECK_EQ_INT(bearer(&h, admin, &a), 0);
    auth_clear(&a);
    CHECK(h.auth_cache != NULL);

    auth_cache_free(&h);
    auth_cache_free(&h2);
    registry_close(h.reg);
    snprintf(v, sizeof(v), "rm -rf %s", tmpdir);
    CHECK_EQ_INT(system(v), 0);
    TEST_DONE();
}
