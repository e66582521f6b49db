/* The API's enrollment: a site redeems its token; the admin lists and cancels tokens. */
/* SPDX-License-Identifier: MIT */
#include "api_int.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "../../common/crypto.h"
#include "../../common/log.h"
#include "../tunnel/tunnel.h"
#include "../../common/token.h"
#include "../http/apijson.h"

/* --- enrollment --- */

void enroll(struct areq *q, json_t *body, struct outcome *o)
{
    struct hub *h = q->h;
    json_t *jsite = json_object_get(body, "site");
    json_t *jsecret = json_object_get(body, "secret");
    json_t *jpin = json_object_get(body, "pin");
    char site[TOKEN_NAME_MAX + 1], hash[65];
    struct reg_site s;
    int rc;

    if (json_is_string(jsite) && token_name_valid(json_string_value(jsite))) {
        snprintf(o->actor, sizeof(o->actor), "site:%s", json_string_value(jsite));
        snprintf(o->target, sizeof(o->target), "%s", json_string_value(jsite));
    }
    if (!json_is_string(jsite) || !json_is_string(jsecret) || !json_is_string(jpin) ||
        !crypto_pin_valid(json_string_value(jpin)) || strlen(json_string_value(jsecret)) > 128) {
        outcome_fail(o, 400, "bad_request", "need \"site\", \"secret\" and a valid \"pin\"");
        return;
    }
    /* The site that held a key until now (if online) must not keep a tunnel
     * authenticated by a key the hub is about to forget. */
    memset(&s, 0, sizeof(s));
    registry_site_get(h->reg, json_string_value(jsite), &s);
    token_hash_hex(json_string_value(jsecret), strlen(json_string_value(jsecret)), hash);
    rc = registry_enroll_redeem(h->reg, hash, json_string_value(jpin), hub_now(), site);
    if (rc == 0 && strcmp(site, json_string_value(jsite)) != 0)
        rc = -ENOENT; /* cannot happen unless the token was forged */
    /* Every refusal says what to do next: the operator's command for a new
     * token, named with the site the request gave (nothing learnt here). */
    switch (rc) {
    case 0:
        snprintf(o->detail, sizeof(o->detail), "pin=%s", json_string_value(jpin));
        outcome_succeed(o, 200, json_pack("{s:s}", "site", site));
        break;
    case -ENOENT:
        outcome_fail(o, 401, "unauthorized",
                     "unknown enrollment token (a newer one replaced it, or it is not this "
                     "hub's): ask the hub operator for a new one ('tetherctl site token %s')",
                     json_string_value(jsite));
        break;
    case -EALREADY:
        outcome_fail(o, 403, "forbidden",
                     "enrollment token already used (each token enrolls once): ask the hub "
                     "operator for a new one ('tetherctl site token %s')",
                     json_string_value(jsite));
        break;
    case -ETIMEDOUT:
        outcome_fail(o, 403, "forbidden",
                     "enrollment token expired: ask the hub operator for a new one "
                     "('tetherctl site token %s')",
                     json_string_value(jsite));
        break;
    case -ECANCELED:
        outcome_fail(o, 403, "forbidden",
                     "enrollment token cancelled (the site was revoked, or a newer token was "
                     "issued): ask the hub operator for a new one ('tetherctl site token %s')",
                     json_string_value(jsite));
        break;
    case -EEXIST:
        outcome_fail(o, 409, "name_taken", "this key is already registered to a site");
        break;
    default:
        outcome_fail_store(o, rc, "registry write failed");
        break;
    }
    if (rc != 0) {
        log_event(LOG_WARN, "enroll_refused", "site=%s remote=%s reason=%s",
                  log_q(json_string_value(jsite)), q->remote, log_q(o->detail));
    } else {
        if (s.id != 0 && strcmp(s.pin, json_string_value(jpin)) != 0)
            hub_tunnel_cut(h, s.id, "site enrolled again with a new key");
        log_event(LOG_INFO, "site_enrolled", "site=%s remote=%s pin=%s", site, q->remote,
                  json_string_value(jpin));
    }
    registry_site_clear(&s);
}

static json_t *enroll_json(const struct reg_enroll *e, int64_t now)
{
    const char *status = e->used_at             ? "used"
                         : e->cancelled_at      ? "cancelled"
                         : now >= e->expires_at ? "expired"
                                                : "pending";

    return json_pack("{s:I,s:s,s:s,s:I,s:I,s:o,s:o}", "id", (json_int_t)e->id, "site", e->site,
                     "status", status, "created_at", (json_int_t)e->created_at, "expires_at",
                     (json_int_t)e->expires_at, "used_at",
                     e->used_at ? json_integer(e->used_at) : json_null(), "cancelled_at",
                     e->cancelled_at ? json_integer(e->cancelled_at) : json_null());
}

struct enroll_list_ctx {
    const char *site; /* filter, or NULL */
    int all;
    int64_t now;
    json_t *arr; /* borrowed */
};

static int enroll_list_cb(const struct reg_enroll *e, void *arg)
{
    struct enroll_list_ctx *c = arg;

    if (c->site != NULL && strcmp(c->site, e->site) != 0)
        return 0;
    if (!c->all && (e->used_at || e->cancelled_at || c->now >= e->expires_at))
        return 0;
    json_array_append_new(c->arr, enroll_json(e, c->now));
    return 0;
}

void enrollments_list(struct hub *h, struct ureq *r, const struct auth *a,
                      const struct api_match *m)
{
    char site[TOKEN_NAME_MAX + 2], all[8];
    struct enroll_list_ctx c = {NULL, 0, hub_now(), json_array()};
    const char *qs = api_query_of(r->target);
    int rc;

    if ((rc = apijson_qs_get(qs, "site", site, sizeof(site))) != 0) {
        if (rc < 0 || !token_name_valid(site)) {
            json_decref(c.arr);
            ureq_error(r, 400, "bad_request", "bad site name");
            return;
        }
        c.site = site;
    }
    if ((rc = apijson_qs_get(qs, "all", all, sizeof(all))) < 0) {
        json_decref(c.arr);
        ureq_error(r, 400, "bad_request", "all must be 0 or 1");
        return;
    }
    if (rc > 0)
        c.all = strcmp(all, "0") != 0;
    if ((rc = registry_enroll_list(h->reg, enroll_list_cb, &c)) < 0) {
        json_decref(c.arr);
        api_error_store(r, rc, "registry read failed");
        return;
    }
    apijson_respond(r, 200, json_pack("{s:o}", "enrollments", c.arr));
}

void enrollment_cancel(struct areq *q, json_t *body, struct outcome *o)
{
    struct reg_enroll e;
    int rc;

    rc = registry_enroll_get(q->h->reg, q->id, &e);
    if (rc == -ENOENT) {
        outcome_fail(o, 404, "not_found", "no enrollment token with id %" PRId64, q->id);
        return;
    }
    if (rc != 0) {
        outcome_fail_store(o, rc, "registry read failed");
        return;
    }
    snprintf(o->target, sizeof(o->target), "%s", e.site);
    rc = registry_enroll_cancel(q->h->reg, q->id);
    if (rc == -EALREADY) {
        outcome_fail(o, 409, "conflict", "enrollment token %" PRId64 " was already used", q->id);
        return;
    }
    if (rc == 0)
        rc = registry_enroll_get(q->h->reg, q->id, &e);
    if (rc != 0) {
        outcome_fail_store(o, rc, "registry write failed");
        return;
    }
    snprintf(o->detail, sizeof(o->detail), "enrollment=%" PRId64, q->id);
    outcome_succeed(o, 200, enroll_json(&e, hub_now()));
}
