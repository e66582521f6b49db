/* The API's sites: list, show, create, patch, remove, revoke, and their enrollment tokens. */
/* SPDX-License-Identifier: MIT */
#include "api_int.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/crypto.h"
#include "../../common/log.h"
#include "../../common/token.h"
#include "../auth/auth.h"
#include "../http/apijson.h"
#include "../store/recorder.h"
#include "../tunnel/tunnel.h"

/* Enrollment token lifetime bounds (seconds). */
#define ENROLL_TTL_MAX (30 * 86400)

/* Label keys look like identifiers; values are short text without control
 * characters or ',' (which separates pairs on the command line). */
static int label_key_ok(const char *k)
{
    size_t n = strlen(k);

    if (n == 0 || n > 63)
        return 0;
    return strspn(k, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._/-") == n;
}

static int label_value_ok(const char *v)
{
    size_t n = strlen(v);

    if (n > 255)
        return 0;
    for (const unsigned char *p = (const unsigned char *)v; *p; p++)
        if (*p < 0x20 || *p == 0x7f || *p == ',')
            return 0;
    return 1;
}

#define LABEL_RULES                                                                                \
    "label keys are 1-63 of A-Z a-z 0-9 . _ / -, values at most 255 bytes without ',' or "         \
    "control characters"

/* --- sites --- */

/* w: where the cluster's tunnels are (NULL: this hub's only). */
static json_t *site_json(struct hub *h, const struct reg_site *s, const struct site_where *w)
{
    struct tunnel *t = hub_tunnel_find(h, s->id);
    const struct reg_session *far = t == NULL && w != NULL ? where_remote(h, w, s->id) : NULL;
    const struct where_hub *at = NULL;
    json_t *labels = json_loads(s->labels_json ? s->labels_json : "{}", 0, NULL);
    json_t *services, *restricted = NULL, *o;
    int64_t last_seen = s->last_seen;
    struct tunnel_info ti = {0};

    if (t != NULL) {
        tunnel_get_info(t, &ti);
        services = json_loads(ti.services_json, 0, NULL);
        /* Only the live tunnel knows: the site says it in each hello. */
        restricted = json_loads(ti.restricted_json, 0, NULL);
        last_seen = ti.last_seen;
    } else {
        services = json_loads(s->services_json ? s->services_json : "[]", 0, NULL);
    }
    if (far != NULL) { /* another hub holds the tunnel: its session row says what it can */
        ti.peer = far->remote_addr;
        ti.agent_version = far->agent_version;
        ti.connected_since = far->connected_at;
    }
    /* json_pack "o" steals the labels and services references. */
    o = json_pack("{s:s,s:s,s:s?,s:b,s:o,s:o,s:s?,s:s,s:o,s:o,s:I,s:o}", "name", s->name, "state",
                  registry_site_state_name(s->state), "pin", s->pin[0] ? s->pin : NULL, "online",
                  t != NULL || far != NULL, "connected_since",
                  t || far ? json_integer(ti.connected_since) : json_null(), "last_seen",
                  last_seen ? json_integer(last_seen) : json_null(), "remote_addr",
                  t || far ? ti.peer : (s->remote_addr[0] ? s->remote_addr : NULL), "agent_version",
                  (t || far) && ti.agent_version[0] ? ti.agent_version : s->agent_version,
                  "services", services ? services : json_array(), "labels",
                  labels ? labels : json_object(), "created_at", (json_int_t)s->created_at,
                  "enrolled_at", s->enrolled_at ? json_integer(s->enrolled_at) : json_null());
    /* null while offline: not known then. set_new steals restricted. */
    if (o != NULL)
        json_object_set_new(o, "restricted", restricted ? restricted : json_null());
    else
        json_decref(restricted);
    /* online: reachable through this hub; local: this hub holds the tunnel.
     * On a cluster: which hub holds it (GET /v1/hubs lists them). */
    if (o != NULL)
        json_object_set_new(o, "local", json_boolean(t != NULL));
    if (o != NULL && w != NULL && w->n_hubs > 1 && (t != NULL || far != NULL) &&
        (at = where_hub(w, t != NULL ? w->self : far->hub_id)) != NULL) {
        json_object_set_new(o, "hub_id", json_integer((json_int_t)at->id));
        json_object_set_new(o, "hub", json_string(at->name));
    }
    if (o != NULL && t != NULL) { /* the live tunnel's counters (TLS records, both ways) */
        json_object_set_new(o, "bytes_in", json_integer((json_int_t)ti.bytes_in));
        json_object_set_new(o, "bytes_out", json_integer((json_int_t)ti.bytes_out));
        json_object_set_new(o, "requests", json_integer((json_int_t)ti.requests));
        json_object_set_new(o, "streams_open", json_integer((json_int_t)ti.streams_open));
    }
    return o;
}

struct list_ctx {
    struct hub *h;
    const struct auth *a;
    const struct site_where *w;
    json_t *arr; /* borrowed */
};

static int list_cb(const struct reg_site *s, void *arg)
{
    struct list_ctx *lc = arg;
    if (auth_site_allowed(lc->a, s))
        json_array_append_new(lc->arr, site_json(lc->h, s, lc->w));
    return 0;
}

/* What a user reads of sites (last seen, agent version, sessions) must show
 * the connects and disconnects they just saw happen: before such a read the
 * loop waits for the records queued so far (docs/registry.md). Usually
 * nothing or one batch; a stalled database delays the read at most
 * READ_RECORDS_MS, then it shows what is written. */
#define READ_RECORDS_MS 2000
void api_read_records(struct hub *h)
{
    if (h->rec != NULL)
        (void)recorder_flush(h->rec, READ_RECORDS_MS);
}

void sites_list(struct hub *h, struct ureq *r, const struct auth *a, const struct api_match *m)
{
    json_t *arr = json_array();
    struct site_where w;
    struct list_ctx lc = {h, a, &w, arr};
    int rc;

    api_read_records(h);
    rc = where_load(h, 0, &w);
    if (rc == 0)
        rc = registry_site_list(h->reg, list_cb, &lc);
    where_free(&w);
    if (rc < 0) {
        json_decref(arr);
        api_error_store(r, rc, "registry read failed");
        return;
    }
    apijson_respond(r, 200, json_pack("{s:o}", "sites", arr));
}

struct session_ctx {
    struct hub *h;
    struct tunnel *t; /* the live tunnel, if any */
    json_t *arr;      /* borrowed */
};

static int session_cb(const struct reg_session *s, void *arg)
{
    struct session_ctx *sc = arg;
    int64_t in = s->bytes_in, out = s->bytes_out, end = s->disconnected_at;
    struct tunnel_info ti = {0};
    int live;

    if (sc->t != NULL)
        tunnel_get_info(sc->t, &ti);
    live = end == 0 && sc->t != NULL && ti.session_id == s->id && ti.peer != NULL;
    /* The open session's counters live in the connection until it closes. */
    if (live) {
        in = (int64_t)ti.bytes_in;
        out = (int64_t)ti.bytes_out;
    }
    json_array_append_new(sc->arr,
                          json_pack("{s:I,s:o,s:I,s:s,s:s,s:I,s:I,s:s,s:b}", "connected_at",
                                    (json_int_t)s->connected_at, "disconnected_at",
                                    end ? json_integer(end) : json_null(), "duration_s",
                                    (json_int_t)((end ? end : hub_now()) - s->connected_at),
                                    "remote_addr", s->remote_addr, "reason", s->reason, "bytes_in",
                                    (json_int_t)in, "bytes_out", (json_int_t)out, "agent_version",
                                    s->agent_version, "live", live));
    return 0;
}

void site_show(struct hub *h, struct ureq *r, const struct auth *a, const struct api_match *m)
{
    const char *name = m->name;
    struct session_ctx sc;
    struct site_where w;
    struct outcome o;
    struct reg_site s;
    json_t *obj;

    memset(&o, 0, sizeof(o));
    api_read_records(h);
    if (api_find_site(h, a, name, &s, &o, 0) != 0) {
        ureq_error(r, o.status, o.code, o.detail);
        return;
    }
    if (where_load(h, s.id, &w) < 0)
        memset(&w, 0, sizeof(w)); /* the site as this hub alone sees it */
    obj = site_json(h, &s, &w);
    where_free(&w);
    sc.h = h;
    sc.t = hub_tunnel_find(h, s.id);
    sc.arr = json_array();
    registry_session_list(h->reg, s.id, 20, session_cb, &sc);
    json_object_set_new(obj, "sessions", sc.arr);
    registry_site_clear(&s);
    apijson_respond(r, 200, obj);
}

/* Makes an enrollment token for an existing site and stores its hash;
 * reissue cancels the site's unused ones first. */
/* Another hub of the cluster goes into the token: its pin, and those of its
 * endpoints the token does not have yet, while there is room. */
static int add_cluster_hub(const struct reg_hub *hub, void *arg)
{
    struct token_enroll *t = arg;
    json_t *eps, *ep;
    size_t i, k;

    if (strcmp(hub->pin, t->pin) == 0 || t->n_pins == TOKEN_PIN_MAX || !crypto_pin_valid(hub->pin))
        return 0;
    snprintf(t->pins[t->n_pins++], sizeof(t->pins[0]), "%s", hub->pin);
    eps = json_loads(hub->public_json ? hub->public_json : "[]", 0, NULL);
    json_array_foreach(eps, i, ep)
    {
        const char *s = json_string_value(ep);

        if (s == NULL || strlen(s) > TOKEN_ENDPOINT_MAX || t->n_hubs == TOKEN_HUB_MAX)
            continue;
        for (k = 0; k < t->n_hubs && strcmp(t->hubs[k], s) != 0; k++)
            ;
        if (k == t->n_hubs)
            snprintf(t->hubs[t->n_hubs++], sizeof(t->hubs[0]), "%s", s);
    }
    json_decref(eps);
    return 0;
}

static int make_enroll_token(struct hub *h, const char *name, int64_t ttl, int reissue,
                             char tok[TOKEN_ENCODED_MAX], int64_t *expires_at, int64_t *id)
{
    struct token_enroll t;
    char secret_b64[64], hash[65];
    int64_t now = hub_now();
    size_t sl;
    int rc;

    memset(&t, 0, sizeof(t));
    snprintf(t.site, sizeof(t.site), "%s", name);
    for (size_t i = 0; i < h->cfg.n_public; i++)
        snprintf(t.hubs[t.n_hubs++], sizeof(t.hubs[0]), "%s", h->cfg.public_eps[i]);
    snprintf(t.pin, sizeof(t.pin), "%s", h->id.pin);
    t.expires_at = now + ttl;
    /* This hub first: a site dials its endpoints in the token's order. */
    rc = registry_hub_list(h->reg, add_cluster_hub, &t);
    if (rc == 0)
        rc = crypto_random(t.secret, sizeof(t.secret));
    if (rc == 0)
        rc = crypto_b64_encode(t.secret, sizeof(t.secret), 1, secret_b64, sizeof(secret_b64), &sl);
    if (rc == 0)
        rc = token_hash_hex(secret_b64, sl, hash);
    if (rc == 0)
        rc = token_enroll_encode(&t, tok, TOKEN_ENCODED_MAX);
    if (rc == 0)
        rc = reissue ? registry_enroll_reissue(h->reg, name, hash, t.expires_at, now, id)
                     : registry_enroll_create(h->reg, name, hash, t.expires_at, now, id);
    explicit_bzero(t.secret, sizeof(t.secret));
    explicit_bzero(secret_b64, sizeof(secret_b64));
    *expires_at = t.expires_at;
    return rc;
}

/* "ttl_s" of a new enrollment token: the hub's default when absent. */
static int enroll_ttl(struct hub *h, json_t *body, int64_t *ttl, struct outcome *o)
{
    if (apijson_int_field(body, "ttl_s", h->cfg.enroll_ttl_s, 1, ENROLL_TTL_MAX, 1, ttl, NULL, 0) ==
        0)
        return 0;
    outcome_fail(o, 400, "bad_request", "\"ttl_s\" must be an integer from 1 to %d",
                 ENROLL_TTL_MAX);
    return -1;
}

#define SITE_LABELS_MAX 64

/* The one limit on a site's label set, for POST /v1/sites and for the result
 * of a PATCH merge alike. */
static int labels_count_check(json_t *labels, struct outcome *o)
{
    if (json_object_size(labels) <= SITE_LABELS_MAX)
        return 0;
    outcome_fail(o, 400, "bad_request", "a site has at most %d labels", SITE_LABELS_MAX);
    return -1;
}

/* Checks a labels object (values: strings, or null where nulls_ok). */
int site_labels_check(json_t *labels, int nulls_ok, struct outcome *o)
{
    const char *k;
    json_t *v;

    if (!json_is_object(labels)) {
        outcome_fail(o, 400, "bad_request", "\"labels\" must be an object of strings");
        return -1;
    }
    json_object_foreach(labels, k, v)
    {
        if (!label_key_ok(k) || !((json_is_string(v) && label_value_ok(json_string_value(v))) ||
                                  (nulls_ok && json_is_null(v)))) {
            outcome_fail(o, 400, "bad_request", "bad label \"%.63s\": " LABEL_RULES, k);
            return -1;
        }
    }
    return 0;
}

void site_create(struct areq *q, json_t *body, struct outcome *o)
{
    static const char *const keys[] = {"name", "labels", "ttl_s", NULL};
    struct hub *h = q->h;
    json_t *jname = json_object_get(body, "name");
    json_t *jlabels = json_object_get(body, "labels");
    char *labels = NULL;
    char tok[TOKEN_ENCODED_MAX];
    const char *name;
    int64_t ttl, exp = 0, id = 0;
    int rc;

    if (json_is_string(jname))
        snprintf(o->target, sizeof(o->target), "%s", json_string_value(jname));
    if (outcome_only_keys(body, keys, o) != 0)
        return;
    if (!json_is_string(jname) || !token_name_valid(json_string_value(jname))) {
        outcome_fail(
            o, 400, "bad_request",
            "\"name\" must be 1-63 characters of a-z, 0-9 and '-', starting with a letter or "
            "digit");
        return;
    }
    name = json_string_value(jname);
    if (jlabels != NULL &&
        (site_labels_check(jlabels, 0, o) != 0 || labels_count_check(jlabels, o) != 0))
        return;
    if (enroll_ttl(h, body, &ttl, o) != 0)
        return;
    labels = jlabels ? json_dumps(jlabels, JSON_COMPACT | JSON_SORT_KEYS) : strdup("{}");
    rc = labels ? registry_site_create(h->reg, name, labels, hub_now()) : -ENOMEM;
    if (rc == -EEXIST) {
        outcome_fail(o, 409, "name_taken", "a site named \"%s\" exists", name);
        goto out;
    }
    if (rc != 0) {
        outcome_fail_store(o, rc, "registry write failed");
        goto out;
    }
    rc = make_enroll_token(h, name, ttl, 0, tok, &exp, &id);
    if (rc != 0) {
        registry_site_remove(h->reg, name);
        outcome_fail_store(o, rc, "could not make an enrollment token");
        goto out;
    }
    snprintf(o->detail, sizeof(o->detail), "labels=%s enrollment=%" PRId64, labels, id);
    log_event(LOG_INFO, "site_added", "site=%s by=%s", name, q->auth.name);
    outcome_succeed(o, 201,
                    json_pack("{s:s,s:s,s:I,s:I}", "name", name, "enrollment_token", tok,
                              "expires_at", (json_int_t)exp, "enrollment_id", (json_int_t)id));
out:
    explicit_bzero(tok, sizeof(tok));
    free(labels);
}

void site_patch(struct areq *q, json_t *body, struct outcome *o)
{
    static const char *const keys[] = {"state", "labels", NULL};
    struct hub *h = q->h;
    json_t *st = json_object_get(body, "state");
    json_t *jl = json_object_get(body, "labels");
    json_t *merged = NULL;
    struct reg_site s;
    enum reg_site_state state = REG_SITE_NSTATES; /* NSTATES: not asked */
    char *labels = NULL, *what = NULL;
    int rc;

    memset(&s, 0, sizeof(s));
    if (outcome_only_keys(body, keys, o) != 0)
        return;
    if (st == NULL && jl == NULL) {
        outcome_fail(o, 400, "bad_request", "give \"state\" and/or \"labels\"");
        return;
    }
    if (st != NULL) {
        if (registry_site_state_parse(json_string_value(st), &state) != 0 ||
            (state != REG_SITE_ACTIVE && state != REG_SITE_DISABLED)) {
            outcome_fail(o, 400, "bad_request", "\"state\" must be \"active\" or \"disabled\"");
            return;
        }
        o->action = jl ? "site.update" : state == REG_SITE_ACTIVE ? "site.enable" : "site.disable";
    } else {
        o->action = "site.label";
    }
    /* Labels use JSON merge-patch rules: a string sets, null removes. */
    if (jl != NULL && site_labels_check(jl, 1, o) != 0)
        return;
    if (api_find_site(h, &q->auth, q->name, &s, o, 0) != 0)
        return;
    if (jl != NULL) {
        const char *k;
        json_t *v;

        merged = json_loads(s.labels_json ? s.labels_json : "{}", 0, NULL);
        if (!json_is_object(merged)) {
            json_decref(merged);
            merged = json_object();
        }
        json_object_foreach(jl, k, v)
        {
            if (json_is_null(v))
                json_object_del(merged, k);
            else
                json_object_set(merged, k, v);
        }
        if (labels_count_check(merged, o) != 0)
            goto out;
        labels = json_dumps(merged, JSON_COMPACT | JSON_SORT_KEYS);
        if (labels == NULL) {
            outcome_fail(o, 500, "internal", "out of memory");
            goto out;
        }
    }
    /* State first: when it is refused, nothing has changed. */
    if (state != REG_SITE_NSTATES) {
        rc = registry_site_set_state(h->reg, q->name, state);
        if (rc == -EINVAL) {
            outcome_fail(o, 409, "conflict",
                         "site \"%s\" is %s: it has no key to %s; issue a new enrollment token "
                         "(tetherctl site token %s)",
                         q->name, registry_site_state_name(s.state),
                         state == REG_SITE_ACTIVE ? "enable" : "disable", q->name);
            goto out;
        }
        if (rc != 0) {
            outcome_fail_store(o, rc, "registry write failed");
            goto out;
        }
        if (state == REG_SITE_DISABLED)
            hub_tunnel_cut(h, s.id, "site disabled by operator");
    }
    if (labels != NULL && (rc = registry_site_set_labels(h->reg, q->name, labels)) != 0) {
        outcome_fail_store(o, rc, "registry write failed");
        goto out;
    }
    what = json_dumps(body, JSON_COMPACT | JSON_SORT_KEYS);
    snprintf(o->detail, sizeof(o->detail), "%s", what ? what : "");
    if (state != REG_SITE_NSTATES)
        log_event(LOG_INFO, state == REG_SITE_ACTIVE ? "site_enabled" : "site_disabled",
                  "site=%s by=%s", q->name, q->auth.name);
    registry_site_clear(&s);
    if (api_find_site(h, &q->auth, q->name, &s, o, 0) == 0)
        outcome_succeed(o, 200, site_json(h, &s, NULL));
out:
    free(what);
    free(labels);
    json_decref(merged);
    registry_site_clear(&s);
}

static void site_remove_or_revoke(struct areq *q, struct outcome *o, int remove)
{
    struct hub *h = q->h;
    struct reg_site s;
    int rc;

    if (api_find_site(h, &q->auth, q->name, &s, o, 0) != 0)
        return;
    rc = remove ? registry_site_remove(h->reg, q->name) : registry_site_revoke(h->reg, q->name);
    if (rc != 0) {
        outcome_fail_store(o, rc, "registry write failed");
    } else {
        hub_tunnel_cut(h, s.id, remove ? "site removed by operator" : "site revoked by operator");
        if (remove) /* its counters go with it: /metrics keeps no removed site */
            stats_site_forget(h, s.id);
        snprintf(o->detail, sizeof(o->detail), "was %s", registry_site_state_name(s.state));
        log_event(LOG_INFO, remove ? "site_removed" : "site_revoked", "site=%s by=%s", q->name,
                  q->auth.name);
        if (remove)
            outcome_succeed(o, 204, NULL);
        else
            outcome_succeed(o, 200, json_pack("{s:s,s:s}", "name", q->name, "state", "revoked"));
    }
    registry_site_clear(&s);
}

void site_remove(struct areq *q, json_t *body, struct outcome *o)
{
    site_remove_or_revoke(q, o, 1);
}

void site_revoke(struct areq *q, json_t *body, struct outcome *o)
{
    site_remove_or_revoke(q, o, 0);
}

void site_enroll_token(struct areq *q, json_t *body, struct outcome *o)
{
    static const char *const keys[] = {"ttl_s", NULL};
    struct hub *h = q->h;
    struct reg_site s;
    char tok[TOKEN_ENCODED_MAX];
    int64_t ttl, exp = 0, id = 0;
    int rc;

    if (outcome_only_keys(body, keys, o) != 0)
        return;
    if (enroll_ttl(h, body, &ttl, o) != 0)
        return;
    if (api_find_site(h, &q->auth, q->name, &s, o, 0) != 0)
        return;
    rc = make_enroll_token(h, q->name, ttl, 1, tok, &exp, &id);
    if (rc != 0) {
        outcome_fail_store(o, rc, "could not make an enrollment token");
    } else {
        snprintf(o->detail, sizeof(o->detail), "enrollment=%" PRId64 " site was %s", id,
                 registry_site_state_name(s.state));
        outcome_succeed(o, 201,
                        json_pack("{s:s,s:s,s:I,s:I}", "name", q->name, "enrollment_token", tok,
                                  "expires_at", (json_int_t)exp, "enrollment_id", (json_int_t)id));
    }
    explicit_bzero(tok, sizeof(tok));
    registry_site_clear(&s);
}
