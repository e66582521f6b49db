/* The hub's HTTP API router: health, sites, enrollment, and the hand-off of proxied requests. */
/* SPDX-License-Identifier: MIT */
#include "api.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../common/crypto.h"
#include "../common/log.h"
#include "../common/token.h"
#include "proxy.h"
#include "query.h"
#include "tunnel.h"

enum route {
    R_SITES_CREATE,
    R_SITE_PATCH,
    R_ENROLL,
    R_TOKENS_CREATE,
};

/* A JSON API request whose body is read whole (bounded) before it runs. */
struct areq {
    struct hub *h;
    enum route route;
    struct api_auth auth;
    char name[TOKEN_NAME_MAX + 1];
    struct buf body;
    int too_large;
};

static void auth_clear(struct api_auth *a)
{
    free(a->scope_json);
    a->scope_json = NULL;
}

static void audit(struct hub *h, const struct api_auth *a, const struct ureq *r, const char *action,
                  const char *target, const char *result, const char *detail)
{
    registry_audit(h->reg, hub_now(), a ? a->name : "-", r->remote, action, target, result, detail);
}

static void respond_json(struct ureq *r, int status, json_t *o)
{
    /* Takes o's reference. */
    char *txt = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (txt == NULL) {
        ureq_error(r, 500, "internal", "could not encode the answer");
        return;
    }
    ureq_respond(r, status, "application/json", txt, strlen(txt));
    free(txt);
}

/* --- authentication and scope --- */

static int authenticate(struct hub *h, struct ureq *r, struct api_auth *a)
{
    const char *v = ureq_header(r, "authorization");
    struct reg_apitoken t;
    char hash[65];

    memset(a, 0, sizeof(*a));
    if (v == NULL || strncasecmp(v, "Bearer ", 7) != 0)
        return -EACCES;
    v += 7;
    while (*v == ' ')
        v++;
    if (strlen(v) > 256 || token_hash_hex(v, strlen(v), hash) != 0)
        return -EACCES;
    memset(&t, 0, sizeof(t));
    if (registry_apitoken_lookup(h->reg, hash, hub_now(), &t) != 0)
        return -EACCES;
    a->token_id = t.id;
    snprintf(a->name, sizeof(a->name), "%s", t.name);
    a->admin = strcmp(t.role, "admin") == 0;
    a->scope_json = t.scope_json;
    t.scope_json = NULL;
    registry_apitoken_clear(&t);
    return 0;
}

int api_site_allowed(const struct api_auth *a, const struct reg_site *s)
{
    json_t *scope, *labels, *site_labels;
    const char *k;
    json_t *v;
    size_t i;
    int ok = 0;

    if (a->admin || a->scope_json == NULL)
        return 1;
    /* scope and site_labels: new references, released below. */
    scope = json_loads(a->scope_json, 0, NULL);
    site_labels = json_loads(s->labels_json ? s->labels_json : "{}", 0, NULL);
    if (json_is_array(scope)) {
        json_array_foreach(scope, i, v)
        {
            if (json_is_string(v) && strcmp(json_string_value(v), s->name) == 0)
                ok = 1;
        }
    } else if (json_is_object(scope) && json_is_object(labels = json_object_get(scope, "labels"))) {
        ok = 1;
        json_object_foreach(labels, k, v)
        {
            json_t *sv = json_object_get(site_labels, k);
            if (!json_is_string(v) || !json_is_string(sv) ||
                strcmp(json_string_value(v), json_string_value(sv)) != 0)
                ok = 0;
        }
    }
    json_decref(scope);
    json_decref(site_labels);
    return ok;
}

/* --- sites --- */

static json_t *site_json(struct hub *h, const struct reg_site *s)
{
    struct tunnel *t = hub_tunnel_find(h, s->id);
    json_t *labels = json_loads(s->labels_json ? s->labels_json : "{}", 0, NULL);
    json_t *services;
    int64_t last_seen = s->last_seen;

    if (t != NULL) {
        services = json_loads(t->services_json, 0, NULL);
        last_seen = hub_now() - (int64_t)((uv_now(h->loop) - t->last_heard_ms) / 1000);
    } else {
        services = json_loads(s->services_json ? s->services_json : "[]", 0, NULL);
    }
    /* json_pack "o" steals the labels and services references. */
    return json_pack(
        "{s:s,s:s,s:b,s:o,s:o,s:s?,s:s,s:o,s:o,s:I}", "name", s->name, "state", s->state, "online",
        t != NULL, "connected_since", t ? json_integer(t->connected_since) : json_null(),
        "last_seen", last_seen ? json_integer(last_seen) : json_null(), "remote_addr",
        t ? t->conn->peer : (s->remote_addr[0] ? s->remote_addr : NULL), "agent_version",
        t && t->agent_version[0] ? t->agent_version : s->agent_version, "services",
        services ? services : json_array(), "labels", labels ? labels : json_object(), "created_at",
        (json_int_t)s->created_at);
}

struct list_ctx {
    struct hub *h;
    const struct api_auth *a;
    json_t *arr; /* borrowed */
};

static int list_cb(const struct reg_site *s, void *arg)
{
    struct list_ctx *lc = arg;
    if (api_site_allowed(lc->a, s))
        json_array_append_new(lc->arr, site_json(lc->h, s));
    return 0;
}

static void sites_list(struct hub *h, struct ureq *r, const struct api_auth *a)
{
    json_t *arr = json_array();
    struct list_ctx lc = {h, a, arr};
    if (registry_site_list(h->reg, list_cb, &lc) < 0) {
        json_decref(arr);
        ureq_error(r, 500, "internal", "registry read failed");
        return;
    }
    respond_json(r, 200, json_pack("{s:o}", "sites", arr));
}

static int session_cb(const struct reg_session *s, void *arg)
{
    json_array_append_new(
        arg, json_pack("{s:I,s:o,s:s,s:s,s:I,s:I,s:s}", "connected_at", (json_int_t)s->connected_at,
                       "disconnected_at",
                       s->disconnected_at ? json_integer(s->disconnected_at) : json_null(),
                       "remote_addr", s->remote_addr, "reason", s->reason, "bytes_in",
                       (json_int_t)s->bytes_in, "bytes_out", (json_int_t)s->bytes_out,
                       "agent_version", s->agent_version));
    return 0;
}

static int load_site(struct hub *h, struct ureq *r, const struct api_auth *a, const char *name,
                     struct reg_site *s)
{
    int rc;
    memset(s, 0, sizeof(*s));
    rc = registry_site_get(h->reg, name, s);
    if (rc == -ENOENT || (rc == 0 && !api_site_allowed(a, s))) {
        /* A token that may not see a site learns nothing about it. */
        if (rc == 0 && !a->admin)
            ureq_error(r, 403, "forbidden", "this token may not use that site");
        else
            ureq_error(r, 404, "not_found", "no such site");
        registry_site_clear(s);
        return -ENOENT;
    }
    if (rc != 0) {
        ureq_error(r, 500, "internal", "registry read failed");
        return rc;
    }
    return 0;
}

static void site_show(struct hub *h, struct ureq *r, const struct api_auth *a, const char *name)
{
    struct reg_site s;
    json_t *o, *sess;

    if (load_site(h, r, a, name, &s) != 0)
        return;
    o = site_json(h, &s);
    sess = json_array();
    registry_session_list(h->reg, s.id, 20, session_cb, sess);
    json_object_set_new(o, "sessions", sess);
    registry_site_clear(&s);
    respond_json(r, 200, o);
}

static void site_create(struct areq *q, struct ureq *r, json_t *body)
{
    struct hub *h = q->h;
    json_t *jname = json_object_get(body, "name");
    json_t *jlabels = json_object_get(body, "labels");
    json_t *jttl = json_object_get(body, "ttl_s");
    struct token_enroll t;
    char *labels = NULL;
    char secret_b64[64], hash[65], tok[TOKEN_ENCODED_MAX];
    size_t sl;
    int64_t now = hub_now(), ttl = h->cfg.enroll_ttl_s;
    const char *name;
    const char *k;
    json_t *v;
    int rc;

    if (!json_is_string(jname) || !token_name_valid(json_string_value(jname))) {
        ureq_error(r, 400, "bad_request",
                   "\"name\" must be 1-63 characters of a-z, 0-9 and '-', starting with a letter "
                   "or digit");
        return;
    }
    name = json_string_value(jname);
    if (jlabels != NULL && !json_is_object(jlabels)) {
        ureq_error(r, 400, "bad_request", "\"labels\" must be an object of strings");
        return;
    }
    json_object_foreach(jlabels, k, v)
    {
        if (!json_is_string(v) || strlen(k) > 63 || strlen(json_string_value(v)) > 255) {
            ureq_error(r, 400, "bad_request", "\"labels\" must map short keys to short strings");
            return;
        }
    }
    if (jttl != NULL) {
        if (!json_is_integer(jttl) || json_integer_value(jttl) < 60 ||
            json_integer_value(jttl) > 30 * 86400) {
            ureq_error(r, 400, "bad_request", "\"ttl_s\" must be an integer from 60 to 2592000");
            return;
        }
        ttl = json_integer_value(jttl);
    }
    labels = jlabels ? json_dumps(jlabels, JSON_COMPACT | JSON_SORT_KEYS) : strdup("{}");
    rc = registry_site_create(h->reg, name, labels, now);
    free(labels);
    if (rc == -EEXIST) {
        /* Audit first: answering may free r. */
        audit(h, &q->auth, r, "site.add", name, "conflict", "");
        ureq_error(r, 409, "name_taken", "a site with that name exists");
        return;
    }
    if (rc != 0) {
        ureq_error(r, 500, "internal", "registry write failed");
        return;
    }
    memset(&t, 0, sizeof(t));
    snprintf(t.site, sizeof(t.site), "%s", name);
    for (size_t i = 0; i < h->cfg.n_public; i++)
        snprintf(t.hubs[t.n_hubs++], sizeof(t.hubs[0]), "%s", h->cfg.public_eps[i]);
    snprintf(t.pin, sizeof(t.pin), "%s", h->id.pin);
    t.expires_at = now + ttl;
    if (crypto_random(t.secret, sizeof(t.secret)) != 0 ||
        crypto_b64_encode(t.secret, sizeof(t.secret), 1, secret_b64, sizeof(secret_b64), &sl) !=
            0 ||
        token_hash_hex(secret_b64, sl, hash) != 0 ||
        registry_enroll_create(h->reg, name, hash, t.expires_at, now, NULL) != 0 ||
        token_enroll_encode(&t, tok, sizeof(tok)) != 0) {
        registry_site_remove(h->reg, name);
        ureq_error(r, 500, "internal", "could not make an enrollment token");
        return;
    }
    audit(h, &q->auth, r, "site.add", name, "ok", "");
    log_event(LOG_INFO, "site_added", "site=%s by=%s", name, q->auth.name);
    respond_json(r, 201,
                 json_pack("{s:s,s:s,s:I}", "name", name, "enrollment_token", tok, "expires_at",
                           (json_int_t)t.expires_at));
}

static void cut_tunnel(struct hub *h, int64_t site_id, const char *why)
{
    struct tunnel *t = hub_tunnel_find(h, site_id);
    if (t != NULL) {
        hub_tunnel_del(h, t);
        tunnel_kill(t, why);
    }
}

static void site_patch(struct areq *q, struct ureq *r, json_t *body)
{
    struct hub *h = q->h;
    json_t *st = json_object_get(body, "state");
    struct reg_site s;
    int rc;

    if (!json_is_string(st) || (strcmp(json_string_value(st), "active") != 0 &&
                                strcmp(json_string_value(st), "disabled") != 0)) {
        ureq_error(r, 400, "bad_request", "\"state\" must be \"active\" or \"disabled\"");
        return;
    }
    if (load_site(h, r, &q->auth, q->name, &s) != 0)
        return;
    rc = registry_site_set_state(h->reg, q->name, json_string_value(st));
    if (rc == -EINVAL) {
        ureq_error(r, 409, "conflict", "a pending or revoked site must enroll first");
    } else if (rc != 0) {
        ureq_error(r, 500, "internal", "registry write failed");
    } else {
        if (strcmp(json_string_value(st), "disabled") == 0)
            cut_tunnel(h, s.id, "site disabled by operator");
        registry_site_clear(&s);
        audit(h, &q->auth, r, "site.state", q->name, "ok", json_string_value(st));
        if (load_site(h, r, &q->auth, q->name, &s) == 0)
            respond_json(r, 200, site_json(h, &s));
    }
    registry_site_clear(&s);
}

static void site_revoke_or_remove(struct hub *h, struct ureq *r, const struct api_auth *a,
                                  const char *name, int remove)
{
    struct reg_site s;
    int rc;

    if (load_site(h, r, a, name, &s) != 0)
        return;
    rc = remove ? registry_site_remove(h->reg, name) : registry_site_revoke(h->reg, name);
    if (rc != 0) {
        ureq_error(r, 500, "internal", "registry write failed");
    } else {
        cut_tunnel(h, s.id, remove ? "site removed by operator" : "site revoked by operator");
        audit(h, a, r, remove ? "site.remove" : "site.revoke", name, "ok", "");
        log_event(LOG_INFO, remove ? "site_removed" : "site_revoked", "site=%s by=%s", name,
                  a->name);
        if (remove)
            ureq_respond(r, 204, NULL, "", 0);
        else
            respond_json(r, 200, json_pack("{s:s,s:s}", "name", name, "state", "revoked"));
    }
    registry_site_clear(&s);
}

/* --- enrollment --- */

static void enroll(struct areq *q, struct ureq *r, json_t *body)
{
    struct hub *h = q->h;
    json_t *jsite = json_object_get(body, "site");
    json_t *jsecret = json_object_get(body, "secret");
    json_t *jpin = json_object_get(body, "pin");
    char site[TOKEN_NAME_MAX + 1], hash[65];
    const char *detail = NULL;
    int status = 0, rc;

    if (!json_is_string(jsite) || !json_is_string(jsecret) || !json_is_string(jpin) ||
        !crypto_pin_valid(json_string_value(jpin)) || strlen(json_string_value(jsecret)) > 128) {
        ureq_error(r, 400, "bad_request", "need \"site\", \"secret\" and a valid \"pin\"");
        return;
    }
    token_hash_hex(json_string_value(jsecret), strlen(json_string_value(jsecret)), hash);
    rc = registry_enroll_redeem(h->reg, hash, json_string_value(jpin), hub_now(), site);
    if (rc == 0 && strcmp(site, json_string_value(jsite)) != 0)
        rc = -ENOENT; /* cannot happen unless the token was forged */
    switch (rc) {
    case 0:
        break;
    case -ENOENT:
        status = 401, detail = "unknown enrollment token";
        break;
    case -EALREADY:
        status = 403, detail = "enrollment token already used";
        break;
    case -ETIMEDOUT:
        status = 403, detail = "enrollment token expired";
        break;
    case -ECANCELED:
        status = 403, detail = "enrollment token cancelled";
        break;
    case -EEXIST:
        status = 409, detail = "this key is already registered to a site";
        break;
    default:
        status = 500, detail = "registry write failed";
        break;
    }
    audit(h, NULL, r, "site.enroll", json_string_value(jsite), rc == 0 ? "ok" : "refused",
          detail ? detail : "");
    if (rc != 0) {
        log_event(LOG_WARN, "enroll_refused", "site=%s remote=%s reason=%s",
                  log_q(json_string_value(jsite)), r->remote, log_q(detail));
        ureq_error(r, status,
                   status == 401   ? "unauthorized"
                   : status == 403 ? "forbidden"
                   : status == 409 ? "name_taken"
                                   : "internal",
                   detail);
        return;
    }
    log_event(LOG_INFO, "site_enrolled", "site=%s remote=%s pin=%s", site, r->remote,
              json_string_value(jpin));
    respond_json(r, 200, json_pack("{s:s}", "site", site));
}

/* --- API tokens --- */

static void token_create(struct areq *q, struct ureq *r, json_t *body)
{
    struct hub *h = q->h;
    json_t *jname = json_object_get(body, "name");
    json_t *jrole = json_object_get(body, "role");
    json_t *jsites = json_object_get(body, "sites");
    json_t *jttl = json_object_get(body, "ttl_s");
    char tok[TOKEN_API_LEN + 1], hash[65];
    char *scope = NULL;
    int64_t now = hub_now(), exp = 0;
    int rc;

    if (!json_is_string(jname) || !token_name_valid(json_string_value(jname)) ||
        !json_is_string(jrole) ||
        (strcmp(json_string_value(jrole), "admin") != 0 &&
         strcmp(json_string_value(jrole), "user") != 0)) {
        ureq_error(r, 400, "bad_request", "need a valid \"name\" and \"role\" admin or user");
        return;
    }
    if (jsites != NULL && !json_is_null(jsites) &&
        !(json_is_string(jsites) && strcmp(json_string_value(jsites), "*") == 0)) {
        if (!json_is_array(jsites) && !json_is_object(jsites)) {
            ureq_error(r, 400, "bad_request",
                       "\"sites\" must be \"*\", a list of names or {\"labels\":{...}}");
            return;
        }
        scope = json_dumps(jsites, JSON_COMPACT | JSON_SORT_KEYS);
    }
    if (jttl != NULL && json_is_integer(jttl) && json_integer_value(jttl) > 0)
        exp = now + json_integer_value(jttl);
    if (token_api_generate(tok) != 0 || token_hash_hex(tok, strlen(tok), hash) != 0) {
        free(scope);
        ureq_error(r, 500, "internal", "could not make a token");
        return;
    }
    rc = registry_apitoken_create(h->reg, json_string_value(jname), json_string_value(jrole), scope,
                                  hash, exp, now);
    free(scope);
    if (rc == -EEXIST) {
        ureq_error(r, 409, "name_taken", "a token with that name exists");
        return;
    }
    if (rc != 0) {
        ureq_error(r, 500, "internal", "registry write failed");
        return;
    }
    audit(h, &q->auth, r, "token.create", json_string_value(jname), "ok", json_string_value(jrole));
    respond_json(r, 201,
                 json_pack("{s:s,s:s,s:s}", "name", json_string_value(jname), "role",
                           json_string_value(jrole), "token", tok));
}

/* --- buffered-body plumbing --- */

static void areq_free(struct areq *q)
{
    auth_clear(&q->auth);
    buf_free(&q->body);
    free(q);
}

static void a_body(struct ureq *r, const uint8_t *data, size_t len)
{
    struct areq *q = r->hctx;
    if (q->too_large || q->body.len + len > q->h->cfg.api_body_max) {
        q->too_large = 1;
        return;
    }
    buf_append(&q->body, data, len);
}

static void a_end(struct ureq *r)
{
    struct areq *q = r->hctx;
    json_error_t jerr;
    json_t *body = NULL;
    char detail[256];

    ureq_set_handler(r, NULL, NULL);
    if (q->too_large) {
        ureq_error(r, 413, "too_large", "request body too large");
        goto out;
    }
    body = json_loadb(q->body.len ? (const char *)buf_head(&q->body) : "{}",
                      q->body.len ? q->body.len : 2, JSON_REJECT_DUPLICATES, &jerr);
    if (body == NULL || !json_is_object(body)) {
        snprintf(detail, sizeof(detail), "body is not a JSON object: %s (line %d)",
                 body ? "wrong type" : jerr.text, jerr.line);
        ureq_error(r, 400, "bad_request", detail);
        goto out;
    }
    switch (q->route) {
    case R_SITES_CREATE:
        site_create(q, r, body);
        break;
    case R_SITE_PATCH:
        site_patch(q, r, body);
        break;
    case R_ENROLL:
        enroll(q, r, body);
        break;
    case R_TOKENS_CREATE:
        token_create(q, r, body);
        break;
    }
out:
    json_decref(body);
    areq_free(q);
}

static void a_abort(struct ureq *r)
{
    areq_free(r->hctx);
}

static const struct ureq_handler buffered = {a_body, a_end, a_abort, NULL};

static void read_body_then(struct hub *h, struct ureq *r, enum route route, struct api_auth *a,
                           const char *name)
{
    struct areq *q = calloc(1, sizeof(*q));
    if (q == NULL) {
        ureq_error(r, 500, "internal", "out of memory");
        return;
    }
    q->h = h;
    q->route = route;
    if (a != NULL) {
        q->auth = *a;
        a->scope_json = NULL; /* moved */
    }
    snprintf(q->name, sizeof(q->name), "%s", name ? name : "");
    buf_init(&q->body);
    if (r->content_length > (int64_t)h->cfg.api_body_max) {
        areq_free(q);
        ureq_error(r, 413, "too_large", "request body too large");
        return;
    }
    ureq_set_handler(r, &buffered, q);
    if (r->req_ended)
        a_end(r);
}

/* --- proxy hand-off --- */

static void proxy_route(struct hub *h, struct ureq *r, const struct api_auth *a, const char *name,
                        const char *rest)
{
    char service[TOKEN_NAME_MAX + 1];
    const char *slash = strchr(rest, '/');
    const char *q = strchr(rest, '?');
    size_t sl = slash ? (size_t)(slash - rest) : (q ? (size_t)(q - rest) : strlen(rest));
    char path[8192];
    struct reg_site s;
    struct tunnel *t;
    json_t *svcs, *v;
    size_t i;
    int offered = 0;

    if (sl == 0 || sl > TOKEN_NAME_MAX) {
        ureq_error(r, 404, "not_found", "no such service");
        return;
    }
    memcpy(service, rest, sl);
    service[sl] = '\0';
    snprintf(path, sizeof(path), "%s%s", rest[sl] == '/' ? "" : "/", rest + sl);
    if (load_site(h, r, a, name, &s) != 0)
        return;
    t = hub_tunnel_find(h, s.id);
    registry_site_clear(&s);
    if (t == NULL || t->closing) {
        ureq_error(r, 503, "site_offline", "the site is not connected");
        return;
    }
    svcs = json_loads(t->services_json, 0, NULL);
    json_array_foreach(svcs, i, v)
    {
        if (json_is_string(v) && strcmp(json_string_value(v), service) == 0)
            offered = 1;
    }
    json_decref(svcs);
    if (!offered) {
        ureq_error(r, 404, "not_found", "the site does not offer that service");
        return;
    }
    proxy_start(h, r, t, service, path, a->name);
}

/* --- metrics --- */

static void metrics(struct hub *h, struct ureq *r)
{
    char txt[1024];
    int n =
        snprintf(txt, sizeof(txt),
                 "# TYPE tether_sites_online gauge\ntether_sites_online %zu\n"
                 "# TYPE tether_requests_total counter\ntether_requests_total %llu\n"
                 "# TYPE tether_proxy_requests_total counter\ntether_proxy_requests_total %llu\n"
                 "# TYPE tether_tunnels_accepted_total counter\n"
                 "tether_tunnels_accepted_total %llu\n"
                 "# TYPE tether_tunnels_refused_total counter\n"
                 "tether_tunnels_refused_total %llu\n",
                 h->tunnels.count, (unsigned long long)h->n_requests,
                 (unsigned long long)h->n_proxy_requests, (unsigned long long)h->n_tunnels_accepted,
                 (unsigned long long)h->n_tunnels_refused);
    ureq_respond(r, 200, "text/plain; version=0.0.4", txt, (size_t)n);
}

/* --- router --- */

/* Copies the path segment at *p (up to '/', '?' or end) into out; advances. */
static int segment(const char **p, char *out, size_t cap)
{
    size_t n = strcspn(*p, "/?");
    if (n == 0 || n >= cap)
        return -1;
    memcpy(out, *p, n);
    out[n] = '\0';
    *p += n;
    return 0;
}

void api_dispatch(struct hub *h, struct ureq *r)
{
    const char *path = r->target;
    const char *m = r->method;
    struct api_auth a;
    char name[TOKEN_NAME_MAX + 2];
    const char *p;
    size_t plen = strcspn(path, "?");

    h->n_requests++;
    if (plen == 8 && strncmp(path, "/healthz", 8) == 0) {
        ureq_respond(r, h->draining ? 503 : 200, "text/plain", h->draining ? "draining\n" : "ok\n",
                     h->draining ? 9 : 3);
        return;
    }
    if (plen == 10 && strncmp(path, "/v1/enroll", 10) == 0) {
        if (strcmp(m, "POST") != 0)
            ureq_error(r, 405, "bad_request", "use POST");
        else
            read_body_then(h, r, R_ENROLL, NULL, NULL);
        return;
    }
    if (strncmp(path, "/v1/", 4) != 0 && !(plen == 8 && strncmp(path, "/metrics", 8) == 0)) {
        ureq_error(r, 404, "not_found", "no such endpoint");
        return;
    }
    if (authenticate(h, r, &a) != 0) {
        ureq_error(r, 401, "unauthorized", "missing or invalid bearer token");
        return;
    }
    if (plen == 8 && strncmp(path, "/metrics", 8) == 0) {
        if (!a.admin)
            ureq_error(r, 403, "forbidden", "admin only");
        else
            metrics(h, r);
        goto out;
    }
    if (query_api(h, r, &a))
        goto out;
    if (plen == 9 && strncmp(path, "/v1/sites", 9) == 0) {
        if (strcmp(m, "GET") == 0) {
            sites_list(h, r, &a);
        } else if (strcmp(m, "POST") == 0) {
            if (!a.admin)
                ureq_error(r, 403, "forbidden", "admin only");
            else
                read_body_then(h, r, R_SITES_CREATE, &a, NULL);
        } else {
            ureq_error(r, 405, "bad_request", "use GET or POST");
        }
        goto out;
    }
    if (plen == 10 && strncmp(path, "/v1/tokens", 10) == 0) {
        if (!a.admin)
            ureq_error(r, 403, "forbidden", "admin only");
        else if (strcmp(m, "POST") != 0)
            ureq_error(r, 405, "bad_request", "use POST");
        else
            read_body_then(h, r, R_TOKENS_CREATE, &a, NULL);
        goto out;
    }
    if (strncmp(path, "/v1/sites/", 10) == 0) {
        p = path + 10;
        if (segment(&p, name, sizeof(name)) != 0 || !token_name_valid(name)) {
            ureq_error(r, 404, "not_found", "no such site");
            goto out;
        }
        if (*p == '\0' || *p == '?') {
            if (strcmp(m, "GET") == 0)
                site_show(h, r, &a, name);
            else if (!a.admin)
                ureq_error(r, 403, "forbidden", "admin only");
            else if (strcmp(m, "PATCH") == 0)
                read_body_then(h, r, R_SITE_PATCH, &a, name);
            else if (strcmp(m, "DELETE") == 0)
                site_revoke_or_remove(h, r, &a, name, 1);
            else
                ureq_error(r, 405, "bad_request", "use GET, PATCH or DELETE");
            goto out;
        }
        if (strncmp(p, "/revoke", 7) == 0 && (p[7] == '\0' || p[7] == '?')) {
            if (!a.admin)
                ureq_error(r, 403, "forbidden", "admin only");
            else if (strcmp(m, "POST") != 0)
                ureq_error(r, 405, "bad_request", "use POST");
            else
                site_revoke_or_remove(h, r, &a, name, 0);
            goto out;
        }
        if (strncmp(p, "/services/", 10) == 0) {
            proxy_route(h, r, &a, name, p + 10);
            goto out;
        }
    }
    ureq_error(r, 404, "not_found", "no such endpoint");
out:
    auth_clear(&a);
}
