/* The API's tokens: create (role, scope by names or labels, lifetime), list and revoke. */
/* SPDX-License-Identifier: MIT */
#include "api_int.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/log.h"
#include "../../common/token.h"
#include "../http/apijson.h"

/* API token lifetime bounds (seconds): ten years. */
#define TOKEN_TTL_MAX (3650LL * 86400)
/* Sites named in one token's scope. */
#define SCOPE_NAMES_MAX 1000
/* Services named in one token's "services" (a site offers at most 64). */
#define SERVICES_NAMES_MAX 64

/* --- API tokens --- */

/* The "sites" of a new token as the scope stored (NULL = all sites). */
static int scope_from_body(json_t *jsites, int admin, char **scope, struct outcome *o)
{
    json_t *v, *labels;
    size_t i;

    *scope = NULL;
    if (admin) {
        if (jsites != NULL && !json_is_null(jsites) &&
            !(json_is_string(jsites) && strcmp(json_string_value(jsites), "*") == 0)) {
            outcome_fail(o, 400, "bad_request",
                         "an admin token reaches every site: leave \"sites\" out");
            return -1;
        }
        return 0;
    }
    /* A user token names its reach explicitly, even when it is everything. */
    if (jsites == NULL || json_is_null(jsites)) {
        outcome_fail(o, 400, "bad_request",
                     "a user token needs \"sites\": \"*\", a list of names or {\"labels\":{...}}");
        return -1;
    }
    if (json_is_string(jsites) && strcmp(json_string_value(jsites), "*") == 0)
        return 0;
    if (json_is_array(jsites)) {
        if (json_array_size(jsites) == 0 || json_array_size(jsites) > SCOPE_NAMES_MAX) {
            outcome_fail(o, 400, "bad_request", "\"sites\" must list 1 to %d site names",
                         SCOPE_NAMES_MAX);
            return -1;
        }
        json_array_foreach(jsites, i, v)
        {
            if (!json_is_string(v) || !token_name_valid(json_string_value(v))) {
                outcome_fail(o, 400, "bad_request",
                             "\"sites\" holds something that is not a site name");
                return -1;
            }
        }
    } else if (json_is_object(jsites)) {
        labels = json_object_get(jsites, "labels");
        if (json_object_size(jsites) != 1 || !json_is_object(labels) ||
            json_object_size(labels) == 0) {
            outcome_fail(o, 400, "bad_request",
                         "a label scope is {\"labels\":{\"key\":\"value\",...}}");
            return -1;
        }
        if (site_labels_check(labels, 0, o) != 0)
            return -1;
    } else {
        outcome_fail(o, 400, "bad_request",
                     "\"sites\" must be \"*\", a list of names or {\"labels\":{...}}");
        return -1;
    }
    *scope = json_dumps(jsites, JSON_COMPACT | JSON_SORT_KEYS);
    if (*scope == NULL) {
        outcome_fail(o, 500, "internal", "out of memory");
        return -1;
    }
    return 0;
}

/* The "services" of a new token as stored (NULL = no limit): absent, null
 * or "*" for none, else a list of 1 to SERVICES_NAMES_MAX distinct service
 * names. An admin token reaches every service and takes no list. */
static int services_from_body(json_t *js, int admin, char **out, struct outcome *o)
{
    json_t *v;
    size_t i;

    *out = NULL;
    if (js == NULL || json_is_null(js) ||
        (json_is_string(js) && strcmp(json_string_value(js), "*") == 0))
        return 0;
    if (admin) {
        outcome_fail(o, 400, "bad_request",
                     "an admin token reaches every service: leave \"services\" out");
        return -1;
    }
    if (!json_is_array(js) || json_array_size(js) == 0 ||
        json_array_size(js) > SERVICES_NAMES_MAX) {
        outcome_fail(o, 400, "bad_request",
                     "\"services\" must be \"*\" or a list of 1 to %d service names",
                     SERVICES_NAMES_MAX);
        return -1;
    }
    json_array_foreach(js, i, v)
    {
        if (!json_is_string(v) || !token_name_valid(json_string_value(v))) {
            outcome_fail(o, 400, "bad_request",
                         "\"services\" holds something that is not a service name "
                         "([a-z0-9][a-z0-9-]{0,62})");
            return -1;
        }
        for (size_t j = 0; j < i; j++)
            if (strcmp(json_string_value(json_array_get(js, j)), json_string_value(v)) == 0) {
                outcome_fail(o, 400, "bad_request", "\"services\" names \"%s\" twice",
                             json_string_value(v));
                return -1;
            }
    }
    *out = json_dumps(js, JSON_COMPACT);
    if (*out == NULL) {
        outcome_fail(o, 500, "internal", "out of memory");
        return -1;
    }
    return 0;
}

static json_t *scope_json_value(const char *scope)
{
    json_t *j = scope ? json_loads(scope, 0, NULL) : NULL;
    return j ? j : json_string("*");
}

void token_create(struct areq *q, json_t *body, struct outcome *o)
{
    static const char *const keys[] = {"name", "role", "sites", "services", "ttl_s", NULL};
    struct hub *h = q->h;
    json_t *jname = json_object_get(body, "name");
    json_t *jrole = json_object_get(body, "role");
    char tok[TOKEN_API_LEN + 1], hash[65];
    char *scope = NULL, *services = NULL;
    const char *name, *role;
    int64_t now = hub_now(), ttl = 0;
    int rc;

    if (json_is_string(jname))
        snprintf(o->target, sizeof(o->target), "%s", json_string_value(jname));
    if (outcome_only_keys(body, keys, o) != 0)
        return;
    if (!json_is_string(jname) || !token_name_valid(json_string_value(jname)) ||
        !json_is_string(jrole) ||
        (strcmp(json_string_value(jrole), "admin") != 0 &&
         strcmp(json_string_value(jrole), "user") != 0)) {
        outcome_fail(o, 400, "bad_request", "need a valid \"name\" and \"role\" admin or user");
        return;
    }
    name = json_string_value(jname);
    role = json_string_value(jrole);
    if (apijson_int_field(body, "ttl_s", 0, 1, TOKEN_TTL_MAX, 1, &ttl, NULL, 0) != 0) {
        outcome_fail(o, 400, "bad_request", "\"ttl_s\" must be an integer from 1 to %lld",
                     (long long)TOKEN_TTL_MAX);
        return;
    }
    if (scope_from_body(json_object_get(body, "sites"), strcmp(role, "admin") == 0, &scope, o) != 0)
        return;
    if (services_from_body(json_object_get(body, "services"), strcmp(role, "admin") == 0, &services,
                           o) != 0)
        goto out;
    if (token_api_generate(tok) != 0 || token_hash_hex(tok, strlen(tok), hash) != 0) {
        outcome_fail(o, 500, "internal", "could not make a token");
        goto out;
    }
    rc = registry_apitoken_create_scoped(h->reg, name, role, scope, services, hash,
                                         ttl ? now + ttl : 0, now);
    if (rc == -EEXIST) {
        outcome_fail(o, 409, "name_taken", "a live token named \"%s\" exists", name);
        goto out;
    }
    if (rc != 0) {
        outcome_fail_store(o, rc, "registry write failed");
        goto out;
    }
    snprintf(o->detail, sizeof(o->detail), "role=%s sites=%s services=%s ttl_s=%lld", role,
             scope ? scope : "*", services ? services : "*", (long long)ttl);
    outcome_succeed(o, 201,
                    json_pack("{s:s,s:s,s:o,s:o,s:o,s:s}", "name", name, "role", role, "sites",
                              scope_json_value(scope), "services", scope_json_value(services),
                              "expires_at", ttl ? json_integer(now + ttl) : json_null(), "token",
                              tok));
out:
    explicit_bzero(tok, sizeof(tok));
    free(scope);
    free(services);
}

struct token_list_ctx {
    int64_t now;
    json_t *arr;        /* borrowed; NULL: only count */
    const char *target; /* counting: the token about to be revoked */
    int other_admins;   /* live admin tokens not named target */
    int target_admin;   /* target is a live admin token */
};

/* An API token's status is derived from its row, never stored. */
enum token_status { TOKEN_ACTIVE, TOKEN_EXPIRED, TOKEN_REVOKED };

static const char *const token_status_names[] = {
    [TOKEN_ACTIVE] = "active",
    [TOKEN_EXPIRED] = "expired",
    [TOKEN_REVOKED] = "revoked",
};

static int token_list_cb(const struct reg_apitoken *t, void *arg)
{
    struct token_list_ctx *c = arg;
    enum token_status st = t->revoked_at                              ? TOKEN_REVOKED
                           : t->expires_at && c->now >= t->expires_at ? TOKEN_EXPIRED
                                                                      : TOKEN_ACTIVE;
    const char *status = token_status_names[st];

    if (c->arr == NULL) {
        if (st == TOKEN_ACTIVE && strcmp(t->role, "admin") == 0) {
            if (strcmp(t->name, c->target) == 0)
                c->target_admin = 1;
            else
                c->other_admins++;
        }
        return 0;
    }
    json_array_append_new(
        c->arr,
        json_pack("{s:s,s:s,s:o,s:o,s:s,s:I,s:o,s:o}", "name", t->name, "role", t->role, "sites",
                  scope_json_value(t->scope_json), "services", scope_json_value(t->services_json),
                  "status", status, "created_at", (json_int_t)t->created_at, "expires_at",
                  t->expires_at ? json_integer(t->expires_at) : json_null(), "revoked_at",
                  t->revoked_at ? json_integer(t->revoked_at) : json_null()));
    return 0;
}

void tokens_list(struct hub *h, struct ureq *r, const struct auth *a, const struct api_match *m)
{
    struct token_list_ctx c = {hub_now(), json_array(), NULL, 0, 0};
    int rc;

    /* A NULL arr would make token_list_cb count admins against a NULL target. */
    if (c.arr == NULL) {
        ureq_error(r, 500, "internal", "out of memory");
        return;
    }
    if ((rc = registry_apitoken_list(h->reg, token_list_cb, &c)) < 0) {
        json_decref(c.arr);
        api_error_store(r, rc, "registry read failed");
        return;
    }
    apijson_respond(r, 200, json_pack("{s:o}", "tokens", c.arr));
}

void token_revoke(struct areq *q, json_t *body, struct outcome *o)
{
    struct token_list_ctx c = {hub_now(), NULL, q->name, 0, 0};
    int64_t now = hub_now();
    int rc;

    if ((rc = registry_apitoken_list(q->h->reg, token_list_cb, &c)) < 0) {
        outcome_fail_store(o, rc, "registry read failed");
        return;
    }
    /* Without a live admin token nobody could manage the hub any more. */
    if (c.target_admin && c.other_admins == 0) {
        outcome_fail(o, 409, "conflict",
                     "\"%s\" is the last live admin token: create another admin token first",
                     q->name);
        return;
    }
    rc = registry_apitoken_revoke(q->h->reg, q->name, now);
    if (rc == -ENOENT) {
        outcome_fail(o, 404, "not_found", "no token named \"%s\"", q->name);
        return;
    }
    if (rc == -EALREADY) {
        outcome_fail(o, 409, "conflict", "token \"%s\" is already revoked", q->name);
        return;
    }
    if (rc != 0) {
        outcome_fail_store(o, rc, "registry write failed");
        return;
    }
    log_event(LOG_INFO, "token_revoked", "token=%s by=%s", q->name, q->auth.name);
    outcome_succeed(o, 200,
                    json_pack("{s:s,s:s,s:I}", "name", q->name, "status", "revoked", "revoked_at",
                              (json_int_t)now));
}
