/* Unit tests of per-service scopes (auth.h): tokens limited to services, restricted services. */
/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/token.h"
#include "hub/auth/auth.h"
#include "hub/core/hub.h"
#include "hub/store/registry.h"
#include "testutil.h"

/* A new API token with a services list; its bearer text in tok. */
static int64_t token_add(struct registry *reg, const char *name, const char *role,
                         const char *services, char tok[TOKEN_API_LEN + 1])
{
    char hash[65];
    struct reg_apitoken t;
    int64_t id;

    CHECK_EQ_INT(token_api_generate(tok), 0);
    CHECK_EQ_INT(token_hash_hex(tok, strlen(tok), hash), 0);
    CHECK_EQ_INT(
        registry_apitoken_create_scoped(reg, name, role, NULL, services, hash, 0, hub_now()), 0);
    CHECK_EQ_INT(registry_apitoken_lookup(reg, hash, hub_now(), &t), 0);
    id = t.id;
    registry_apitoken_clear(&t);
    return id;
}

static int bearer(struct hub *h, const char *tok, struct auth *a)
{
    char v[400];

    snprintf(v, sizeof(v), "Bearer %s", tok);
    return auth_bearer(h, v, a);
}

int main(void)
{
    char tmpdir[64], dbpath[128], err[256], v[400];
    char admin[TOKEN_API_LEN + 1], plain[TOKEN_API_LEN + 1], web[TOKEN_API_LEN + 1];
    struct auth a, b;
    struct hub h;
    char msg[256];
    int64_t web_id;

    /* The rule, without a registry. */
    struct auth adm = {.admin = 1}, usr = {.admin = 0};
    struct auth lst = {.admin = 0, .services_json = (char *)"[\"web\",\"db\"]"};
    CHECK_EQ_INT(auth_service_allowed(&adm, "db", 1), AUTH_SVC_OK);
    CHECK_EQ_INT(auth_service_allowed(&adm, "db", 0), AUTH_SVC_OK);
    CHECK_EQ_INT(auth_service_allowed(&usr, "db", 0), AUTH_SVC_OK);
    CHECK_EQ_INT(auth_service_allowed(&usr, "db", 1), AUTH_SVC_RESTRICTED);
    /* Unknown (-1, before the hello) counts as restricted. */
    CHECK_EQ_INT(auth_service_allowed(&usr, "db", -1), AUTH_SVC_RESTRICTED);
    CHECK_EQ_INT(auth_service_allowed(&lst, "db", 1), AUTH_SVC_OK);
    CHECK_EQ_INT(auth_service_allowed(&lst, "web", 0), AUTH_SVC_OK);
    CHECK_EQ_INT(auth_service_allowed(&lst, "ssh", 0), AUTH_SVC_NOT_LISTED);
    CHECK_EQ_INT(auth_service_allowed(&lst, "we", 0), AUTH_SVC_NOT_LISTED); /* no prefix match */
    CHECK_EQ_INT(auth_list_has("[\"web\"]", "web"), 1);
    CHECK_EQ_INT(auth_list_has("[\"web\"]", "webx"), 0);
    CHECK_EQ_INT(auth_list_has("not json", "web"), 0);
    CHECK_EQ_INT(auth_list_has(NULL, "web"), 0);
    auth_service_refusal(AUTH_SVC_RESTRICTED, "edge-1", "db", msg, sizeof(msg));
    CHECK(strstr(msg, "restricted") != NULL && strstr(msg, "edge-1") != NULL);
    auth_service_refusal(AUTH_SVC_NOT_LISTED, "edge-1", "db", msg, sizeof(msg));
    CHECK(strstr(msg, "\"db\"") != NULL && strstr(msg, "services") != NULL);

    /* Stored, then read back through the bearer (and its cache). */
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/tether-svcscope-XXXXXX");
    CHECK(mkdtemp(tmpdir) != NULL);
    snprintf(dbpath, sizeof(dbpath), "%s/hub.db", tmpdir);
    memset(&h, 0, sizeof(h));
    CHECK_EQ_INT(registry_open(dbpath, &h.reg, err, sizeof(err)), 0);
    CHECK(registry_schema_version(h.reg) >= 3);
    token_add(h.reg, "root", "admin", NULL, admin);
    token_add(h.reg, "plain", "user", NULL, plain);
    web_id = token_add(h.reg, "web", "user", "[\"web\"]", web);
    /* The column takes only a JSON array. */
    {
        char hash[65], tok[TOKEN_API_LEN + 1];
        CHECK_EQ_INT(token_api_generate(tok), 0);
        CHECK_EQ_INT(token_hash_hex(tok, strlen(tok), hash), 0);
        CHECK_EQ_INT(registry_apitoken_create_scoped(h.reg, "bad", "user", NULL, "{\"a\":1}", hash,
                                                     0, hub_now()),
                     -EINVAL);
    }
    for (int round = 0; round < 2; round++) { /* the second from the cache */
        CHECK_EQ_INT(bearer(&h, web, &a), 0);
        CHECK_EQ_STR(a.services_json, "[\"web\"]");
        CHECK_EQ_INT(auth_service_allowed(&a, "web", 1), AUTH_SVC_OK);
        CHECK_EQ_INT(auth_service_allowed(&a, "db", 0), AUTH_SVC_NOT_LISTED);
        CHECK_EQ_INT(auth_copy(&b, &a), 0);
        CHECK(b.services_json != a.services_json && strcmp(b.services_json, "[\"web\"]") == 0);
        auth_clear(&b);
        auth_clear(&a);
        CHECK(a.services_json == NULL);
        CHECK_EQ_INT(bearer(&h, plain, &a), 0);
        CHECK(a.services_json == NULL);
        CHECK_EQ_INT(auth_service_allowed(&a, "db", 1), AUTH_SVC_RESTRICTED);
        auth_clear(&a);
        CHECK_EQ_INT(bearer(&h, admin, &a), 0);
        CHECK_EQ_INT(auth_service_allowed(&a, "db", 1), AUTH_SVC_OK);
        auth_clear(&a);
    }
    /* By id, as a queued query's delivery reads it; revoked still readable. */
    CHECK_EQ_INT(registry_apitoken_revoke(h.reg, "web", hub_now()), 0);
    CHECK_EQ_INT(auth_token_by_id(&h, web_id, &a), 0);
    CHECK_EQ_STR(a.name, "web");
    CHECK_EQ_STR(a.services_json, "[\"web\"]");
    auth_clear(&a);
    CHECK_EQ_INT(auth_token_by_id(&h, 9999, &a), -ENOENT);

    auth_cache_free(&h);
    registry_close(h.reg);
    snprintf(v, sizeof(v), "rm -rf %s", tmpdir);
    CHECK_EQ_INT(system(v), 0);
    TEST_DONE();
}
