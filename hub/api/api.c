/* The hub's HTTP API router: health, sites, tokens, enrollment, audit, and the hand-off of proxied
 * requests. */
/* SPDX-License-Identifier: MIT */
#include "api.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../../common/crypto.h"
#include "../../common/log.h"
#include "../../common/token.h"
#include "../../common/urlpath.h"
#include "../auth/audit.h"
#include "../auth/auth.h"
#include "../http/apijson.h"
#include "../http/body.h"
#include "../proxy/proxy.h"
#include "../query/query.h"
#include "../tunnel/tunnel.h"

/* How far a rotation proof's timestamp may be from the hub's clock. */
#define ROTATE_SKEW_S 300
/* Certificates and signatures in a rotation request (DER, base64 text). */
#define ROTATE_CERT_MAX 4096
#define ROTATE_SIG_MAX  256
/* Enrollment token lifetime bounds (seconds). */
#define ENROLL_TTL_MAX (30 * 86400)
/* API token lifetime bounds (seconds): ten years. */
#define TOKEN_TTL_MAX (3650LL * 86400)
/* Sites named in one token's scope. */
#define SCOPE_NAMES_MAX     1000
#define AUDIT_LIMIT_DEFAULT 100
#define AUDIT_LIMIT_MAX     1000

/* State-changing API requests. Each one ends in conclude(), which writes its
 * single audit row and answers. */
enum route {
    R_SITE_CREATE,
    R_SITE_PATCH,
    R_SITE_REMOVE,
    R_SITE_REVOKE,
    R_SITE_ENROLL,
    R_SITE_ROTATE,
    R_ENROLL,
    R_TOKEN_CREATE,
    R_TOKEN_REVOKE,
    R_ENROLLMENT_CANCEL,
};

/* What a state-changing request did: enough to answer it and to audit it. */
struct outcome {
    const char *action; /* static */
    char actor[TOKEN_NAME_MAX + 8];
    char target[160];
    int status;
    const char *code; /* error code when status >= 400; static */
    json_t *body;     /* answer when status < 400; owned; NULL = no body */
    char detail[512]; /* the error's detail, or what the audit row adds on success */
};

/* A JSON API request whose body is read whole (bounded) before it runs. */
struct areq {
    struct hub *h;
    enum route route;
    struct auth auth;
    char name[TOKEN_NAME_MAX + 1]; /* site or token name from the path */
    int64_t id;                    /* enrollment id from the path */
    char remote[64];
    struct buf body;
    int too_large;
    int no_memory; /* a body piece could not be kept: never run on a partial body */
};

typedef void (*route_fn)(struct areq *q, json_t *body, struct outcome *o);

static void site_create(struct areq *q, json_t *body, struct outcome *o);
static void site_patch(struct areq *q, json_t *body, struct outcome *o);
static void site_remove(struct areq *q, json_t *body, struct outcome *o);
static void site_revoke(struct areq *q, json_t *body, struct outcome *o);
static void site_enroll_token(struct areq *q, json_t *body, struct outcome *o);
static void site_rotate(struct areq *q, json_t *body, struct outcome *o);
static void enroll(struct areq *q, json_t *body, struct outcome *o);
static void token_create(struct areq *q, json_t *body, struct outcome *o);
static void token_revoke(struct areq *q, json_t *body, struct outcome *o);
static void enrollment_cancel(struct areq *q, json_t *body, struct outcome *o);

static const struct {
    const char *action;
    int admin; /* 0: no bearer at all (the body proves who it is) */
    route_fn run;
} routes[] = {
    [R_SITE_CREATE] = {"site.add", 1, site_create},
    [R_SITE_PATCH] = {"site.update", 1, site_patch},
    [R_SITE_REMOVE] = {"site.remove", 1, site_remove},
    [R_SITE_REVOKE] = {"site.revoke", 1, site_revoke},
    [R_SITE_ENROLL] = {"site.token", 1, site_enroll_token},
    [R_SITE_ROTATE] = {"site.rotate", 0, site_rotate},
    [R_ENROLL] = {"site.enroll", 0, enroll},
    [R_TOKEN_CREATE] = {"token.create", 1, token_create},
    [R_TOKEN_REVOKE] = {"token.revoke", 1, token_revoke},
    [R_ENROLLMENT_CANCEL] = {"enroll.cancel", 1, enrollment_cancel},
};

/* --- outcomes --- */

static void fail(struct outcome *o, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void fail(struct outcome *o, int status, const char *code, const char *fmt, ...)
{
    va_list ap;

    o->status = status;
    o->code = code;
    json_decref(o->body);
    o->body = NULL;
    va_start(ap, fmt);
    vsnprintf(o->detail, sizeof(o->detail), fmt, ap);
    va_end(ap);
}

/* Takes body's reference (NULL: answer without a body). */
static void succeed(struct outcome *o, int status, json_t *body)
{
    o->status = status;
    o->code = NULL;
    json_decref(o->body);
    o->body = body;
}

/* A registry error. The storage failing (disk full, I/O error, locked) is
 * no fault of the request and passes: 503, so a client tries again later;
 * anything else is the hub's own failure. */
static void fail_store(struct outcome *o, int rc, const char *what)
{
    const char *why = registry_storage_error(rc);

    if (why != NULL)
        fail(o, 503, "storage_unavailable", "%s: %s; try again later", what, why);
    else
        fail(o, 500, "internal", "%s", what);
}

static const char *code_for(int status)
{
    switch (status) {
    case 400:
        return "bad_request";
    case 401:
        return "unauthorized";
    case 403:
        return "forbidden";
    case 404:
        return "not_found";
    case 409:
        return "name_taken";
    case 413:
        return "too_large";
    default:
        return "internal";
    }
}

/* The one place where a state-changing request is audited and answered.
 * Audit first: answering may free r. */
static void conclude(struct hub *h, struct ureq *r, struct outcome *o)
{
    const char *result = o->status < 400 ? "ok" : (o->code ? o->code : code_for(o->status));

    struct audit_row row = {o->actor, r->remote, o->action, o->target, result, o->detail};

    if (o->status < 400)
        h->gen++; /* tokens or sites may have changed: drop cached reads */
    audit_write(h, &row, AUDIT_SYNC);
    if (o->status >= 400) {
        ureq_error(r, o->status, o->code ? o->code : code_for(o->status), o->detail);
    } else if (o->body != NULL) {
        apijson_respond(r, o->status, o->body);
        o->body = NULL;
    } else {
        ureq_respond(r, o->status, NULL, "", 0);
    }
    json_decref(o->body);
    o->body = NULL;
}

static void outcome_init(struct outcome *o, enum route route, const struct auth *a,
                         const char *target)
{
    memset(o, 0, sizeof(*o));
    o->action = routes[route].action;
    o->status = 500;
    o->code = "internal";
    snprintf(o->detail, sizeof(o->detail), "not handled");
    if (a != NULL && a->name[0] != '\0')
        snprintf(o->actor, sizeof(o->actor), "%s", a->name);
    snprintf(o->target, sizeof(o->target), "%s", target ? target : "");
}

/* --- authentication and scope --- */

/* Read caches for the per-request checks. Every request still checks its
 * token and site; a cached answer is used only while no state change has
 * happened since it was read (h->gen), and a token's expiry is compared with
 * the clock each time. They keep SQLite, and its file locks, off the path of
 * proxied requests. Direct-mapped: a collision just means a registry read. */
#define AUTH_CACHE 256
#define SITE_CACHE 1024

struct auth_entry {
    const struct hub *hub; /* whose registry it was read from */
    uint64_t gen;          /* 0 = empty */
    char hash[65];
    int64_t expires_at;
    struct auth a; /* a.scope_json owned by the entry */
};
static struct auth_entry auth_cache[AUTH_CACHE];

struct site_entry {
    const struct hub *hub;
    uint64_t gen;
    struct reg_site s; /* labels_json, services_json owned by the entry */
};
static struct site_entry site_cache[SITE_CACHE];

static unsigned str_slot(const char *s, unsigned n)
{
    uint32_t x = 2166136261u;
    for (; *s; s++)
        x = (x ^ (uint8_t)*s) * 16777619u;
    return x % n;
}

static int auth_copy(struct auth *dst, const struct auth *src)
{
    *dst = *src;
    dst->scope_json = NULL;
    if (src->scope_json != NULL && (dst->scope_json = strdup(src->scope_json)) == NULL)
        return -ENOMEM;
    return 0;
}

static int site_copy(struct reg_site *dst, const struct reg_site *src)
{
    *dst = *src;
    dst->labels_json = src->labels_json ? strdup(src->labels_json) : NULL;
    dst->services_json = src->services_json ? strdup(src->services_json) : NULL;
    if ((src->labels_json && !dst->labels_json) || (src->services_json && !dst->services_json)) {
        registry_site_clear(dst);
        return -ENOMEM;
    }
    return 0;
}

/* registry_site_get through the cache (h->gen + 1 so that 0 means empty). */
static int cached_site_get(struct hub *h, const char *name, struct reg_site *out)
{
    struct site_entry *e = &site_cache[str_slot(name, SITE_CACHE)];
    int rc;

    if (e->hub == h && e->gen == h->gen + 1 && strcmp(e->s.name, name) == 0)
        return site_copy(out, &e->s);
    rc = registry_site_get(h->reg, name, out);
    if (rc != 0)
        return rc;
    registry_site_clear(&e->s);
    e->gen = 0;
    if (site_copy(&e->s, out) == 0) {
        e->hub = h;
        e->gen = h->gen + 1;
    }
    return 0;
}

static int authenticate(struct hub *h, struct ureq *r, struct auth *a)
{
    const char *v = ureq_header(r, "authorization");
    struct reg_apitoken t;
    struct auth_entry *e;
    char hash[65];
    int64_t now = hub_now();

    memset(a, 0, sizeof(*a));
    if (v == NULL || strncasecmp(v, "Bearer ", 7) != 0)
        return -EACCES;
    v += 7;
    while (*v == ' ')
        v++;
    if (strlen(v) > 256 || token_hash_hex(v, strlen(v), hash) != 0)
        return -EACCES;
    e = &auth_cache[str_slot(hash, AUTH_CACHE)];
    if (e->hub == h && e->gen == h->gen + 1 && strcmp(e->hash, hash) == 0 &&
        (e->expires_at == 0 || e->expires_at > now))
        return auth_copy(a, &e->a) == 0 ? 0 : -EACCES;
    memset(&t, 0, sizeof(t));
    /* Every request looks its token up: a revoke or an expiry takes effect on
     * the next request, not on the next connection. */
    if (registry_apitoken_lookup(h->reg, hash, now, &t) != 0)
        return -EACCES;
    a->token_id = t.id;
    snprintf(a->name, sizeof(a->name), "%s", t.name);
    a->admin = strcmp(t.role, "admin") == 0;
    a->scope_json = t.scope_json;
    t.scope_json = NULL;
    free(e->a.scope_json);
    memset(e, 0, sizeof(*e));
    if (auth_copy(&e->a, a) == 0) {
        snprintf(e->hash, sizeof(e->hash), "%s", hash);
        e->expires_at = t.expires_at;
        e->hub = h;
        e->gen = h->gen + 1;
    }
    registry_apitoken_clear(&t);
    return 0;
}

/* Frees the caches (at exit, so leak checkers see a clean heap). */
void api_shutdown(void)
{
    for (size_t i = 0; i < AUTH_CACHE; i++) {
        free(auth_cache[i].a.scope_json);
        memset(&auth_cache[i], 0, sizeof(auth_cache[i]));
    }
    for (size_t i = 0; i < SITE_CACHE; i++) {
        registry_site_clear(&site_cache[i].s);
        memset(&site_cache[i], 0, sizeof(site_cache[i]));
    }
}

/* Loads a site the token may use. A scoped token gets 403 for any site
 * outside its scope, whether it exists or not: it learns nothing about sites
 * it may not see. Returns 0, or fills o's error and returns -1. */
static int find_site_in(struct hub *h, const struct auth *a, const char *name, struct reg_site *s,
                        struct outcome *o, int cached)
{
    int rc;

    memset(s, 0, sizeof(*s));
    rc = cached ? cached_site_get(h, name, s) : registry_site_get(h->reg, name, s);
    if (rc == 0 && auth_site_allowed(a, s))
        return 0;
    registry_site_clear(s);
    if (rc != 0 && rc != -ENOENT)
        fail(o, 500, "internal", "registry read failed");
    else if (a != NULL && !a->admin && a->scope_json != NULL)
        fail(o, 403, "forbidden", "this token may not use that site");
    else
        fail(o, 404, "not_found", "no such site");
    return -1;
}

static int find_site(struct hub *h, const struct auth *a, const char *name, struct reg_site *s,
                     struct outcome *o)
{
    return find_site_in(h, a, name, s, o, 0);
}

/* For the request path (proxy, queries): may answer from the read cache. */
static int find_site_cached(struct hub *h, const struct auth *a, const char *name,
                            struct reg_site *s, struct outcome *o)
{
    return find_site_in(h, a, name, s, o, 1);
}

static void cut_tunnel(struct hub *h, int64_t site_id, const char *why)
{
    hub_tunnel_cut(h, site_id, why);
}

/* --- request details --- */

/* The query string of a request target (after '?'), or NULL. */
static const char *query_of(const char *target)
{
    const char *p = strchr(target, '?');

    return p ? p + 1 : NULL;
}

/* Parses a non-negative decimal integer; -1 if not one. */
static int64_t parse_nonneg(const char *s)
{
    int64_t v = 0;

    if (*s == '\0' || strlen(s) > 18)
        return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return -1;
        v = v * 10 + (*s - '0');
    }
    return v;
}

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

static json_t *site_json(struct hub *h, const struct reg_site *s)
{
    struct tunnel *t = hub_tunnel_find(h, s->id);
    json_t *labels = json_loads(s->labels_json ? s->labels_json : "{}", 0, NULL);
    json_t *services;
    int64_t last_seen = s->last_seen;
    struct tunnel_info ti = {0};

    if (t != NULL) {
        tunnel_get_info(t, &ti);
        services = json_loads(ti.services_json, 0, NULL);
        last_seen = ti.last_seen;
    } else {
        services = json_loads(s->services_json ? s->services_json : "[]", 0, NULL);
    }
    /* json_pack "o" steals the labels and services references. */
    return json_pack("{s:s,s:s,s:s?,s:b,s:o,s:o,s:s?,s:s,s:o,s:o,s:I,s:o}", "name", s->name,
                     "state", registry_site_state_name(s->state), "pin", s->pin[0] ? s->pin : NULL,
                     "online", t != NULL, "connected_since",
                     t ? json_integer(ti.connected_since) : json_null(), "last_seen",
                     last_seen ? json_integer(last_seen) : json_null(), "remote_addr",
                     t ? ti.peer : (s->remote_addr[0] ? s->remote_addr : NULL), "agent_version",
                     t && ti.agent_version[0] ? ti.agent_version : s->agent_version, "services",
                     services ? services : json_array(), "labels", labels ? labels : json_object(),
                     "created_at", (json_int_t)s->created_at, "enrolled_at",
                     s->enrolled_at ? json_integer(s->enrolled_at) : json_null());
}

struct list_ctx {
    struct hub *h;
    const struct auth *a;
    json_t *arr; /* borrowed */
};

static int list_cb(const struct reg_site *s, void *arg)
{
    struct list_ctx *lc = arg;
    if (auth_site_allowed(lc->a, s))
        json_array_append_new(lc->arr, site_json(lc->h, s));
    return 0;
}

static void sites_list(struct hub *h, struct ureq *r, const struct auth *a)
{
    json_t *arr = json_array();
    struct list_ctx lc = {h, a, arr};
    if (registry_site_list(h->reg, list_cb, &lc) < 0) {
        json_decref(arr);
        ureq_error(r, 500, "internal", "registry read failed");
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

static void site_show(struct hub *h, struct ureq *r, const struct auth *a, const char *name)
{
    struct session_ctx sc;
    struct outcome o;
    struct reg_site s;
    json_t *obj;

    memset(&o, 0, sizeof(o));
    if (find_site(h, a, name, &s, &o) != 0) {
        ureq_error(r, o.status, o.code, o.detail);
        return;
    }
    obj = site_json(h, &s);
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

#define SITE_LABELS_MAX 64

/* The one limit on a site's label set, for POST /v1/sites and for the result
 * of a PATCH merge alike. */
static int labels_count_check(json_t *labels, struct outcome *o)
{
    if (json_object_size(labels) <= SITE_LABELS_MAX)
        return 0;
    fail(o, 400, "bad_request", "a site has at most %d labels", SITE_LABELS_MAX);
    return -1;
}

/* Checks a labels object (values: strings, or null where nulls_ok). */
static int labels_check(json_t *labels, int nulls_ok, struct outcome *o)
{
    const char *k;
    json_t *v;

    if (!json_is_object(labels)) {
        fail(o, 400, "bad_request", "\"labels\" must be an object of strings");
        return -1;
    }
    json_object_foreach(labels, k, v)
    {
        if (!label_key_ok(k) || !((json_is_string(v) && label_value_ok(json_string_value(v))) ||
                                  (nulls_ok && json_is_null(v)))) {
            fail(o, 400, "bad_request", "bad label \"%.63s\": " LABEL_RULES, k);
            return -1;
        }
    }
    return 0;
}

static void site_create(struct areq *q, json_t *body, struct outcome *o)
{
    static const char *const keys[] = {"name", "labels", "ttl_s", NULL};
    struct hub *h = q->h;
    json_t *jname = json_object_get(body, "name");
    json_t *jlabels = json_object_get(body, "labels");
    char *labels = NULL;
    char tok[TOKEN_ENCODED_MAX];
    const char *name, *bad = NULL;
    int64_t ttl, exp = 0, id = 0;
    int rc;

    if (json_is_string(jname))
        snprintf(o->target, sizeof(o->target), "%s", json_string_value(jname));
    if (!apijson_only_keys(body, keys, &bad)) {
        fail(o, 400, "bad_request", "unknown field \"%.40s\"", bad);
        return;
    }
    if (!json_is_string(jname) || !token_name_valid(json_string_value(jname))) {
        fail(o, 400, "bad_request",
             "\"name\" must be 1-63 characters of a-z, 0-9 and '-', starting with a letter or "
             "digit");
        return;
    }
    name = json_string_value(jname);
    if (jlabels != NULL &&
        (labels_check(jlabels, 0, o) != 0 || labels_count_check(jlabels, o) != 0))
        return;
    if (apijson_int_field(body, "ttl_s", h->cfg.enroll_ttl_s, 1, ENROLL_TTL_MAX, 1, &ttl, NULL,
                          0) != 0) {
        fail(o, 400, "bad_request", "\"ttl_s\" must be an integer from 1 to %d", ENROLL_TTL_MAX);
        return;
    }
    labels = jlabels ? json_dumps(jlabels, JSON_COMPACT | JSON_SORT_KEYS) : strdup("{}");
    rc = labels ? registry_site_create(h->reg, name, labels, hub_now()) : -ENOMEM;
    if (rc == -EEXIST) {
        fail(o, 409, "name_taken", "a site named \"%s\" exists", name);
        goto out;
    }
    if (rc != 0) {
        fail_store(o, rc, "registry write failed");
        goto out;
    }
    rc = make_enroll_token(h, name, ttl, 0, tok, &exp, &id);
    if (rc != 0) {
        registry_site_remove(h->reg, name);
        fail_store(o, rc, "could not make an enrollment token");
        goto out;
    }
    snprintf(o->detail, sizeof(o->detail), "labels=%s enrollment=%" PRId64, labels, id);
    log_event(LOG_INFO, "site_added", "site=%s by=%s", name, q->auth.name);
    succeed(o, 201,
            json_pack("{s:s,s:s,s:I,s:I}", "name", name, "enrollment_token", tok, "expires_at",
                      (json_int_t)exp, "enrollment_id", (json_int_t)id));
out:
    explicit_bzero(tok, sizeof(tok));
    free(labels);
}

static void site_patch(struct areq *q, json_t *body, struct outcome *o)
{
    static const char *const keys[] = {"state", "labels", NULL};
    struct hub *h = q->h;
    json_t *st = json_object_get(body, "state");
    json_t *jl = json_object_get(body, "labels");
    json_t *merged = NULL;
    struct reg_site s;
    const char *bad = NULL;
    enum reg_site_state state = REG_SITE_NSTATES; /* NSTATES: not asked */
    char *labels = NULL, *what = NULL;
    int rc;

    memset(&s, 0, sizeof(s));
    if (!apijson_only_keys(body, keys, &bad)) {
        fail(o, 400, "bad_request", "unknown field \"%.40s\"", bad);
        return;
    }
    if (st == NULL && jl == NULL) {
        fail(o, 400, "bad_request", "give \"state\" and/or \"labels\"");
        return;
    }
    if (st != NULL) {
        if (registry_site_state_parse(json_string_value(st), &state) != 0 ||
            (state != REG_SITE_ACTIVE && state != REG_SITE_DISABLED)) {
            fail(o, 400, "bad_request", "\"state\" must be \"active\" or \"disabled\"");
            return;
        }
        o->action = jl ? "site.update" : state == REG_SITE_ACTIVE ? "site.enable" : "site.disable";
    } else {
        o->action = "site.label";
    }
    /* Labels use JSON merge-patch rules: a string sets, null removes. */
    if (jl != NULL && labels_check(jl, 1, o) != 0)
        return;
    if (find_site(h, &q->auth, q->name, &s, o) != 0)
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
            fail(o, 500, "internal", "out of memory");
            goto out;
        }
    }
    /* State first: when it is refused, nothing has changed. */
    if (state != REG_SITE_NSTATES) {
        rc = registry_site_set_state(h->reg, q->name, state);
        if (rc == -EINVAL) {
            fail(o, 409, "conflict",
                 "site \"%s\" is %s: it has no key to %s; issue a new enrollment token "
                 "(tetherctl site token %s)",
                 q->name, registry_site_state_name(s.state),
                 state == REG_SITE_ACTIVE ? "enable" : "disable", q->name);
            goto out;
        }
        if (rc != 0) {
            fail_store(o, rc, "registry write failed");
            goto out;
        }
        if (state == REG_SITE_DISABLED)
            cut_tunnel(h, s.id, "site disabled by operator");
    }
    if (labels != NULL && (rc = registry_site_set_labels(h->reg, q->name, labels)) != 0) {
        fail_store(o, rc, "registry write failed");
        goto out;
    }
    what = json_dumps(body, JSON_COMPACT | JSON_SORT_KEYS);
    snprintf(o->detail, sizeof(o->detail), "%s", what ? what : "");
    if (state != REG_SITE_NSTATES)
        log_event(LOG_INFO, state == REG_SITE_ACTIVE ? "site_enabled" : "site_disabled",
                  "site=%s by=%s", q->name, q->auth.name);
    registry_site_clear(&s);
    if (find_site(h, &q->auth, q->name, &s, o) == 0)
        succeed(o, 200, site_json(h, &s));
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

    if (find_site(h, &q->auth, q->name, &s, o) != 0)
        return;
    rc = remove ? registry_site_remove(h->reg, q->name) : registry_site_revoke(h->reg, q->name);
    if (rc != 0) {
        fail_store(o, rc, "registry write failed");
    } else {
        cut_tunnel(h, s.id, remove ? "site removed by operator" : "site revoked by operator");
        snprintf(o->detail, sizeof(o->detail), "was %s", registry_site_state_name(s.state));
        log_event(LOG_INFO, remove ? "site_removed" : "site_revoked", "site=%s by=%s", q->name,
                  q->auth.name);
        if (remove)
            succeed(o, 204, NULL);
        else
            succeed(o, 200, json_pack("{s:s,s:s}", "name", q->name, "state", "revoked"));
    }
    registry_site_clear(&s);
}

static void site_remove(struct areq *q, json_t *body, struct outcome *o)
{
    site_remove_or_revoke(q, o, 1);
}

static void site_revoke(struct areq *q, json_t *body, struct outcome *o)
{
    site_remove_or_revoke(q, o, 0);
}

static void site_enroll_token(struct areq *q, json_t *body, struct outcome *o)
{
    static const char *const keys[] = {"ttl_s", NULL};
    struct hub *h = q->h;
    struct reg_site s;
    char tok[TOKEN_ENCODED_MAX];
    const char *bad = NULL;
    int64_t ttl, exp = 0, id = 0;
    int rc;

    if (!apijson_only_keys(body, keys, &bad)) {
        fail(o, 400, "bad_request", "unknown field \"%.40s\"", bad);
        return;
    }
    if (apijson_int_field(body, "ttl_s", h->cfg.enroll_ttl_s, 1, ENROLL_TTL_MAX, 1, &ttl, NULL,
                          0) != 0) {
        fail(o, 400, "bad_request", "\"ttl_s\" must be an integer from 1 to %d", ENROLL_TTL_MAX);
        return;
    }
    if (find_site(h, &q->auth, q->name, &s, o) != 0)
        return;
    rc = make_enroll_token(h, q->name, ttl, 1, tok, &exp, &id);
    if (rc != 0) {
        fail_store(o, rc, "could not make an enrollment token");
    } else {
        snprintf(o->detail, sizeof(o->detail), "enrollment=%" PRId64 " site was %s", id,
                 registry_site_state_name(s.state));
        succeed(o, 201,
                json_pack("{s:s,s:s,s:I,s:I}", "name", q->name, "enrollment_token", tok,
                          "expires_at", (json_int_t)exp, "enrollment_id", (json_int_t)id));
    }
    explicit_bzero(tok, sizeof(tok));
    registry_site_clear(&s);
}

/* Base64 (standard) text field of at most cap decoded bytes. */
static int b64_field(json_t *body, const char *key, uint8_t *out, size_t cap, size_t *len)
{
    json_t *j = json_object_get(body, key);
    const char *v;
    size_t vl;

    if (!json_is_string(j))
        return -EINVAL;
    v = json_string_value(j);
    vl = json_string_length(j);
    if (vl == 0 || vl > (cap + 2) / 3 * 4)
        return -EINVAL;
    return crypto_b64_decode(v, vl, 0, out, cap, len);
}

/* Key rotation: the site proves it holds the key the hub knows (and the new
 * one), no operator involved. */
static void site_rotate(struct areq *q, json_t *body, struct outcome *o)
{
    struct hub *h = q->h;
    uint8_t old_cert[ROTATE_CERT_MAX], new_cert[ROTATE_CERT_MAX];
    uint8_t sig[ROTATE_SIG_MAX], new_sig[ROTATE_SIG_MAX];
    size_t old_len = 0, new_len = 0, sig_len = 0, new_sig_len = 0;
    char old_pin[CRYPTO_PIN_LEN + 1], new_pin[CRYPTO_PIN_LEN + 1], msg[256];
    json_t *jts = json_object_get(body, "ts");
    struct reg_site s;
    int64_t now = hub_now(), ts;
    int n, rc;

    memset(&s, 0, sizeof(s));
    snprintf(o->actor, sizeof(o->actor), "site:%s", q->name);
    if (b64_field(body, "old_cert", old_cert, sizeof(old_cert), &old_len) != 0 ||
        b64_field(body, "new_cert", new_cert, sizeof(new_cert), &new_len) != 0 ||
        b64_field(body, "sig", sig, sizeof(sig), &sig_len) != 0 ||
        b64_field(body, "new_sig", new_sig, sizeof(new_sig), &new_sig_len) != 0 ||
        !json_is_integer(jts)) {
        fail(o, 400, "bad_request",
             "need \"old_cert\", \"new_cert\", \"sig\", \"new_sig\" (base64) and \"ts\"");
        return;
    }
    if (crypto_pin_from_cert(old_cert, old_len, old_pin) != 0 ||
        crypto_pin_from_cert(new_cert, new_len, new_pin) != 0) {
        fail(o, 400, "bad_request", "a certificate cannot be parsed");
        return;
    }
    snprintf(o->detail, sizeof(o->detail), "old=%s new=%s", old_pin, new_pin);
    ts = json_integer_value(jts);
    if (ts < now - ROTATE_SKEW_S || ts > now + ROTATE_SKEW_S) {
        fail(o, 403, "forbidden",
             "the request's time is more than %d s away from the hub's clock (fix the site's "
             "clock)",
             ROTATE_SKEW_S);
        return;
    }
    /* Unknown site and wrong key get the same answer. */
    rc = registry_site_get(h->reg, q->name, &s);
    if (rc != 0 && rc != -ENOENT) {
        fail(o, 500, "internal", "registry read failed");
        goto out;
    }
    if (rc != 0 || s.pin[0] == '\0' || !crypto_pin_equal(s.pin, old_pin)) {
        fail(o, 403, "forbidden", "the hub does not hold that key for this site");
        goto out;
    }
    n = snprintf(msg, sizeof(msg), "tether-rotate\n%s\n%s\n%" PRId64, q->name, new_pin, ts);
    if (n < 0 || (size_t)n >= sizeof(msg) ||
        crypto_verify(old_cert, old_len, msg, (size_t)n, sig, sig_len) != 0 ||
        crypto_verify(new_cert, new_len, msg, (size_t)n, new_sig, new_sig_len) != 0) {
        fail(o, 403, "forbidden", "the proof of possession of the keys does not verify");
        goto out;
    }
    if (crypto_pin_equal(old_pin, new_pin)) {
        fail(o, 400, "bad_request", "the new key is the old key");
        goto out;
    }
    rc = registry_site_rotate_pin(h->reg, s.id, old_pin, new_pin);
    if (rc == -EEXIST) {
        fail(o, 409, "name_taken", "the new key is already registered to a site");
        goto out;
    }
    if (rc == -ENOENT) {
        fail(o, 409, "conflict", "the site's key changed meanwhile");
        goto out;
    }
    if (rc != 0) {
        fail_store(o, rc, "registry write failed");
        goto out;
    }
    /* The tunnel was authenticated with the old key: it must not outlive it.
     * The agent reconnects with the new key. */
    cut_tunnel(h, s.id, "key rotated");
    log_event(LOG_INFO, "site_key_rotated", "site=%s remote=%s old=%s new=%s", q->name, q->remote,
              old_pin, new_pin);
    succeed(o, 200, json_pack("{s:s,s:s}", "site", q->name, "pin", new_pin));
out:
    registry_site_clear(&s);
}

/* --- enrollment --- */

static void enroll(struct areq *q, json_t *body, struct outcome *o)
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
        fail(o, 400, "bad_request", "need \"site\", \"secret\" and a valid \"pin\"");
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
    switch (rc) {
    case 0:
        snprintf(o->detail, sizeof(o->detail), "pin=%s", json_string_value(jpin));
        succeed(o, 200, json_pack("{s:s}", "site", site));
        break;
    case -ENOENT:
        fail(o, 401, "unauthorized", "unknown enrollment token");
        break;
    case -EALREADY:
        fail(o, 403, "forbidden", "enrollment token already used");
        break;
    case -ETIMEDOUT:
        fail(o, 403, "forbidden", "enrollment token expired");
        break;
    case -ECANCELED:
        fail(o, 403, "forbidden", "enrollment token cancelled");
        break;
    case -EEXIST:
        fail(o, 409, "name_taken", "this key is already registered to a site");
        break;
    default:
        fail_store(o, rc, "registry write failed");
        break;
    }
    if (rc != 0) {
        log_event(LOG_WARN, "enroll_refused", "site=%s remote=%s reason=%s",
                  log_q(json_string_value(jsite)), q->remote, log_q(o->detail));
    } else {
        if (s.id != 0 && strcmp(s.pin, json_string_value(jpin)) != 0)
            cut_tunnel(h, s.id, "site enrolled again with a new key");
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

static void enrollments_list(struct hub *h, struct ureq *r)
{
    char site[TOKEN_NAME_MAX + 2], all[8];
    struct enroll_list_ctx c = {NULL, 0, hub_now(), json_array()};
    const char *qs = query_of(r->target);
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
    if (registry_enroll_list(h->reg, enroll_list_cb, &c) < 0) {
        json_decref(c.arr);
        ureq_error(r, 500, "internal", "registry read failed");
        return;
    }
    apijson_respond(r, 200, json_pack("{s:o}", "enrollments", c.arr));
}

static void enrollment_cancel(struct areq *q, json_t *body, struct outcome *o)
{
    struct reg_enroll e;
    int rc;

    rc = registry_enroll_get(q->h->reg, q->id, &e);
    if (rc == -ENOENT) {
        fail(o, 404, "not_found", "no enrollment token with id %" PRId64, q->id);
        return;
    }
    if (rc != 0) {
        fail(o, 500, "internal", "registry read failed");
        return;
    }
    snprintf(o->target, sizeof(o->target), "%s", e.site);
    rc = registry_enroll_cancel(q->h->reg, q->id);
    if (rc == -EALREADY) {
        fail(o, 409, "conflict", "enrollment token %" PRId64 " was already used", q->id);
        return;
    }
    if (rc == 0)
        rc = registry_enroll_get(q->h->reg, q->id, &e);
    if (rc != 0) {
        fail_store(o, rc, "registry write failed");
        return;
    }
    snprintf(o->detail, sizeof(o->detail), "enrollment=%" PRId64, q->id);
    succeed(o, 200, enroll_json(&e, hub_now()));
}

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
            fail(o, 400, "bad_request", "an admin token reaches every site: leave \"sites\" out");
            return -1;
        }
        return 0;
    }
    /* A user token names its reach explicitly, even when it is everything. */
    if (jsites == NULL || json_is_null(jsites)) {
        fail(o, 400, "bad_request",
             "a user token needs \"sites\": \"*\", a list of names or {\"labels\":{...}}");
        return -1;
    }
    if (json_is_string(jsites) && strcmp(json_string_value(jsites), "*") == 0)
        return 0;
    if (json_is_array(jsites)) {
        if (json_array_size(jsites) == 0 || json_array_size(jsites) > SCOPE_NAMES_MAX) {
            fail(o, 400, "bad_request", "\"sites\" must list 1 to %d site names", SCOPE_NAMES_MAX);
            return -1;
        }
        json_array_foreach(jsites, i, v)
        {
            if (!json_is_string(v) || !token_name_valid(json_string_value(v))) {
                fail(o, 400, "bad_request", "\"sites\" holds something that is not a site name");
                return -1;
            }
        }
    } else if (json_is_object(jsites)) {
        labels = json_object_get(jsites, "labels");
        if (json_object_size(jsites) != 1 || !json_is_object(labels) ||
            json_object_size(labels) == 0) {
            fail(o, 400, "bad_request", "a label scope is {\"labels\":{\"key\":\"value\",...}}");
            return -1;
        }
        if (labels_check(labels, 0, o) != 0)
            return -1;
    } else {
        fail(o, 400, "bad_request",
             "\"sites\" must be \"*\", a list of names or {\"labels\":{...}}");
        return -1;
    }
    *scope = json_dumps(jsites, JSON_COMPACT | JSON_SORT_KEYS);
    if (*scope == NULL) {
        fail(o, 500, "internal", "out of memory");
        return -1;
    }
    return 0;
}

static json_t *scope_json_value(const char *scope)
{
    json_t *j = scope ? json_loads(scope, 0, NULL) : NULL;
    return j ? j : json_string("*");
}

static void token_create(struct areq *q, json_t *body, struct outcome *o)
{
    static const char *const keys[] = {"name", "role", "sites", "ttl_s", NULL};
    struct hub *h = q->h;
    json_t *jname = json_object_get(body, "name");
    json_t *jrole = json_object_get(body, "role");
    char tok[TOKEN_API_LEN + 1], hash[65];
    char *scope = NULL;
    const char *bad = NULL, *name, *role;
    int64_t now = hub_now(), ttl = 0;
    int rc;

    if (json_is_string(jname))
        snprintf(o->target, sizeof(o->target), "%s", json_string_value(jname));
    if (!apijson_only_keys(body, keys, &bad)) {
        fail(o, 400, "bad_request", "unknown field \"%.40s\"", bad);
        return;
    }
    if (!json_is_string(jname) || !token_name_valid(json_string_value(jname)) ||
        !json_is_string(jrole) ||
        (strcmp(json_string_value(jrole), "admin") != 0 &&
         strcmp(json_string_value(jrole), "user") != 0)) {
        fail(o, 400, "bad_request", "need a valid \"name\" and \"role\" admin or user");
        return;
    }
    name = json_string_value(jname);
    role = json_string_value(jrole);
    if (apijson_int_field(body, "ttl_s", 0, 1, TOKEN_TTL_MAX, 1, &ttl, NULL, 0) != 0) {
        fail(o, 400, "bad_request", "\"ttl_s\" must be an integer from 1 to %lld",
             (long long)TOKEN_TTL_MAX);
        return;
    }
    if (scope_from_body(json_object_get(body, "sites"), strcmp(role, "admin") == 0, &scope, o) != 0)
        return;
    if (token_api_generate(tok) != 0 || token_hash_hex(tok, strlen(tok), hash) != 0) {
        fail(o, 500, "internal", "could not make a token");
        goto out;
    }
    rc = registry_apitoken_create(h->reg, name, role, scope, hash, ttl ? now + ttl : 0, now);
    if (rc == -EEXIST) {
        fail(o, 409, "name_taken", "a live token named \"%s\" exists", name);
        goto out;
    }
    if (rc != 0) {
        fail_store(o, rc, "registry write failed");
        goto out;
    }
    snprintf(o->detail, sizeof(o->detail), "role=%s sites=%s ttl_s=%lld", role, scope ? scope : "*",
             (long long)ttl);
    succeed(o, 201,
            json_pack("{s:s,s:s,s:o,s:o,s:s}", "name", name, "role", role, "sites",
                      scope_json_value(scope), "expires_at",
                      ttl ? json_integer(now + ttl) : json_null(), "token", tok));
out:
    explicit_bzero(tok, sizeof(tok));
    free(scope);
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
        c->arr, json_pack("{s:s,s:s,s:o,s:s,s:I,s:o,s:o}", "name", t->name, "role", t->role,
                          "sites", scope_json_value(t->scope_json), "status", status, "created_at",
                          (json_int_t)t->created_at, "expires_at",
                          t->expires_at ? json_integer(t->expires_at) : json_null(), "revoked_at",
                          t->revoked_at ? json_integer(t->revoked_at) : json_null()));
    return 0;
}

static void tokens_list(struct hub *h, struct ureq *r)
{
    struct token_list_ctx c = {hub_now(), json_array(), NULL, 0, 0};

    /* A NULL arr would make token_list_cb count admins against a NULL target. */
    if (c.arr == NULL) {
        ureq_error(r, 500, "internal", "out of memory");
        return;
    }
    if (registry_apitoken_list(h->reg, token_list_cb, &c) < 0) {
        json_decref(c.arr);
        ureq_error(r, 500, "internal", "registry read failed");
        return;
    }
    apijson_respond(r, 200, json_pack("{s:o}", "tokens", c.arr));
}

static void token_revoke(struct areq *q, json_t *body, struct outcome *o)
{
    struct token_list_ctx c = {hub_now(), NULL, q->name, 0, 0};
    int64_t now = hub_now();
    int rc;

    if (registry_apitoken_list(q->h->reg, token_list_cb, &c) < 0) {
        fail(o, 500, "internal", "registry read failed");
        return;
    }
    /* Without a live admin token nobody could manage the hub any more. */
    if (c.target_admin && c.other_admins == 0) {
        fail(o, 409, "conflict",
             "\"%s\" is the last live admin token: create another admin token first", q->name);
        return;
    }
    rc = registry_apitoken_revoke(q->h->reg, q->name, now);
    if (rc == -ENOENT) {
        fail(o, 404, "not_found", "no token named \"%s\"", q->name);
        return;
    }
    if (rc == -EALREADY) {
        fail(o, 409, "conflict", "token \"%s\" is already revoked", q->name);
        return;
    }
    if (rc != 0) {
        fail_store(o, rc, "registry write failed");
        return;
    }
    log_event(LOG_INFO, "token_revoked", "token=%s by=%s", q->name, q->auth.name);
    succeed(o, 200,
            json_pack("{s:s,s:s,s:I}", "name", q->name, "status", "revoked", "revoked_at",
                      (json_int_t)now));
}

/* --- audit log --- */

static int audit_cb(const struct reg_audit *a, void *arg)
{
    json_t *arr = arg;

    json_array_append_new(
        arr, json_pack("{s:I,s:I,s:s,s:s,s:s,s:s,s:s,s:s}", "id", (json_int_t)a->id, "ts",
                       (json_int_t)a->ts, "actor", a->actor, "remote", a->remote, "action",
                       a->action, "target", a->target, "result", a->result, "detail", a->detail));
    return 0;
}

static void audit_list(struct hub *h, struct ureq *r)
{
    char v[24];
    int64_t limit = AUDIT_LIMIT_DEFAULT, before = 0;
    json_t *arr, *last;
    const char *qs = query_of(r->target);
    int rc;

    if ((rc = apijson_qs_get(qs, "limit", v, sizeof(v))) != 0) {
        limit = rc < 0 ? -1 : parse_nonneg(v);
        if (limit < 1 || limit > AUDIT_LIMIT_MAX) {
            ureq_error(r, 400, "bad_request", "limit must be 1 to 1000");
            return;
        }
    }
    if ((rc = apijson_qs_get(qs, "before", v, sizeof(v))) != 0) {
        before = rc < 0 ? -1 : parse_nonneg(v);
        if (before < 1) {
            ureq_error(r, 400, "bad_request", "before must be an entry id (a positive integer)");
            return;
        }
    }
    arr = json_array();
    if (registry_audit_list(h->reg, before, (int)limit, audit_cb, arr) < 0) {
        json_decref(arr);
        ureq_error(r, 500, "internal", "registry read failed");
        return;
    }
    /* A full page may have more behind it: next_before fetches the next. */
    last = json_array_size(arr) == (size_t)limit ? json_array_get(arr, json_array_size(arr) - 1)
                                                 : NULL;
    apijson_respond(r, 200,
                    json_pack("{s:o,s:o}", "entries", arr, "next_before",
                              last ? json_integer(json_integer_value(json_object_get(last, "id")))
                                   : json_null()));
}

/* --- buffered-body plumbing --- */

static void areq_free(struct areq *q)
{
    auth_clear(&q->auth);
    free(q);
}

/* The body has been read (http/body.h): run the route and conclude. */
static void a_done(struct ureq *r, void *arg, enum body_status st, const uint8_t *data, size_t len)
{
    struct areq *q = arg;
    json_t *body = NULL;
    struct outcome o;
    char msg[256];

    if (st == BODY_ABORTED)
        goto free;
    outcome_init(&o, q->route, &q->auth, q->name);
    if (q->route == R_SITE_ROTATE)
        snprintf(o.actor, sizeof(o.actor), "site:%s", q->name);
    if (st == BODY_TOO_LARGE)
        fail(&o, 413, "too_large", "request body too large");
    else if (st == BODY_NO_MEMORY)
        fail(&o, 500, "internal", "out of memory");
    else if (apijson_parse_object(data, len, 1, &body, msg, sizeof(msg)) != 0)
        fail(&o, 400, "bad_request", "%s", msg);
    else
        routes[q->route].run(q, body, &o);
    conclude(q->h, r, &o);
    json_decref(body);
free:
    areq_free(q);
}

/* Starts a state-changing request: checks the role, then reads the body
 * and runs the route from a_done. a's scope moves into the request. */
static void mutate(struct hub *h, struct ureq *r, enum route route, struct auth *a,
                   const char *name, int64_t id)
{
    struct areq *q;
    struct outcome o;

    if (routes[route].admin && (a == NULL || !a->admin)) {
        outcome_init(&o, route, a, name);
        fail(&o, 403, "forbidden", "admin only");
        conclude(h, r, &o);
        return;
    }
    q = calloc(1, sizeof(*q));
    if (q == NULL) {
        ureq_error(r, 500, "internal", "out of memory");
        return;
    }
    q->h = h;
    q->route = route;
    q->id = id;
    if (a != NULL) {
        q->auth = *a;
        a->scope_json = NULL; /* moved */
    }
    snprintf(q->name, sizeof(q->name), "%s", name ? name : "");
    snprintf(q->remote, sizeof(q->remote), "%s", r->remote);
    if (body_read(r, h->cfg.api_body_max, a_done, q) != 0) {
        areq_free(q);
        ureq_error(r, 500, "internal", "out of memory");
    }
}

/* --- proxy hand-off --- */

static int method_changes_state(const char *m)
{
    return strcmp(m, "GET") != 0 && strcmp(m, "HEAD") != 0 && strcmp(m, "OPTIONS") != 0;
}

static void proxy_route(struct hub *h, struct ureq *r, const struct auth *a, const char *name,
                        const char *rest)
{
    char service[TOKEN_NAME_MAX + 1];
    /* The service name ends at the first '/' or '?' (a '/' in the query is not a separator). */
    size_t sl = strcspn(rest, "/?");
    char raw[8192], path[8192], target[160], detail[300], remote[sizeof(r->remote)];
    const char *code;
    int audit = method_changes_state(r->method);
    struct outcome o;
    struct reg_site s;
    struct tunnel *t = NULL;
    int rc;

    memset(&o, 0, sizeof(o));
    o.status = 0;
    service[0] = '\0';
    if (sl == 0 || sl > TOKEN_NAME_MAX) {
        fail(&o, 404, "not_found", "no such service");
    } else {
        memcpy(service, rest, sl);
        service[sl] = '\0';
    }
    snprintf(raw, sizeof(raw), "%s%s", rest[sl] == '/' ? "" : "/", rest + sl);
    /* The service sees a path that cannot leave its base (docs/api.md). */
    rc = urlpath_normalize(raw, path, sizeof(path));
    if (rc != 0) {
        snprintf(path, sizeof(path), "%s", raw); /* for the audit row */
        if (o.status == 0)
            fail(&o, 400, "bad_request", "%s", urlpath_strerror(rc));
    }
    if (o.status == 0 && find_site_cached(h, a, name, &s, &o) == 0) {
        t = hub_tunnel_find(h, s.id);
        registry_site_clear(&s);
        if (t == NULL || !tunnel_is_open(t))
            fail(&o, 503, "site_offline", "the site is not connected");
        else if (!tunnel_offers(t, service))
            fail(&o, 404, "not_found", "the site does not offer that service");
    }
    /* Users' requests that may change something at a site are audited too,
     * relaxed (no fsync each): they come at request rates. Reads are not.
     * The row says what the hub decided, refusals included; r may be gone
     * once answered, so what the row needs is copied first. */
    snprintf(target, sizeof(target), "%s/%s", name, service);
    snprintf(detail, sizeof(detail), "%s %.256s", r->method, path);
    snprintf(remote, sizeof(remote), "%s", r->remote);
    if (o.status != 0) {
        code = o.code;
        ureq_error(r, o.status, o.code, o.detail);
    } else if (proxy_start(h, r, t, service, path, a->name, &code) == 0) {
        code = "forwarded";
    }
    if (audit) {
        struct audit_row row = {a->name, remote, "proxy", target, code, detail};

        audit_write(h, &row, AUDIT_RELAXED);
    }
}

/* --- metrics --- */

static void metrics(struct hub *h, struct ureq *r)
{
    char txt[2048];
    int n = snprintf(
        txt, sizeof(txt),
        "# TYPE tether_sites_online gauge\ntether_sites_online %zu\n"
        "# TYPE tether_requests_total counter\ntether_requests_total %llu\n"
        "# TYPE tether_proxy_requests_total counter\ntether_proxy_requests_total %llu\n"
        "# TYPE tether_tunnels_accepted_total counter\n"
        "tether_tunnels_accepted_total %llu\n"
        "# TYPE tether_tunnels_refused_total counter\n"
        "tether_tunnels_refused_total %llu\n"
        "# TYPE tether_users_refused_total counter\n"
        "tether_users_refused_total{reason=\"per_address\"} %llu\n"
        "tether_users_refused_total{reason=\"fd_reserve\"} %llu\n"
        "# TYPE tether_users_timed_out_total counter\n"
        "tether_users_timed_out_total %llu\n",
        h->tunnels.count, (unsigned long long)h->n_requests,
        (unsigned long long)h->n_proxy_requests, (unsigned long long)h->n_tunnels_accepted,
        (unsigned long long)h->n_tunnels_refused, (unsigned long long)h->n_users_refused_cap,
        (unsigned long long)h->n_users_refused_reserve, (unsigned long long)h->n_users_idle_closed);
    n += snprintf(txt + n, sizeof(txt) - (size_t)n, "# TYPE tether_proxy_refused_total counter\n");
    for (int k = 0; k < PR_N; k++)
        n += snprintf(
            txt + n, sizeof(txt) - (size_t)n, "tether_proxy_refused_total{reason=\"%s\"} %llu\n",
            proxy_refusal_name((enum proxy_refusal)k), (unsigned long long)h->n_proxy_refused[k]);
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

/* 1 if p is exactly word (then the end of the path or a query). */
static int is_tail(const char *p, const char *word)
{
    size_t n = strlen(word);
    return strncmp(p, word, n) == 0 && (p[n] == '\0' || p[n] == '?');
}

static void method_not_allowed(struct ureq *r, const char *allowed)
{
    char d[64];
    snprintf(d, sizeof(d), "use %s", allowed);
    ureq_error(r, 405, "bad_request", d);
}

/* Admin-only reads. */
static int admin_read(struct ureq *r, const struct auth *a)
{
    if (!a->admin) {
        ureq_error(r, 403, "forbidden", "admin only");
        return 0;
    }
    if (strcmp(r->method, "GET") != 0) {
        method_not_allowed(r, "GET");
        return 0;
    }
    return 1;
}

/* /v1/sites/{name}/... */
static void site_routes(struct hub *h, struct ureq *r, struct auth *a, const char *name,
                        const char *p)
{
    const char *m = r->method;

    if (*p == '\0' || *p == '?') {
        if (strcmp(m, "GET") == 0)
            site_show(h, r, a, name);
        else if (strcmp(m, "PATCH") == 0)
            mutate(h, r, R_SITE_PATCH, a, name, 0);
        else if (strcmp(m, "DELETE") == 0)
            mutate(h, r, R_SITE_REMOVE, a, name, 0);
        else
            method_not_allowed(r, "GET, PATCH or DELETE");
    } else if (is_tail(p, "/revoke")) {
        if (strcmp(m, "POST") != 0)
            method_not_allowed(r, "POST");
        else
            mutate(h, r, R_SITE_REVOKE, a, name, 0);
    } else if (is_tail(p, "/enroll")) {
        if (strcmp(m, "POST") != 0)
            method_not_allowed(r, "POST");
        else
            mutate(h, r, R_SITE_ENROLL, a, name, 0);
    } else if (strncmp(p, "/services/", 10) == 0) {
        proxy_route(h, r, a, name, p + 10);
    } else {
        ureq_error(r, 404, "not_found", "no such endpoint");
    }
}

void api_dispatch(struct hub *h, struct ureq *r)
{
    const char *path = r->target;
    const char *m = r->method;
    struct auth a;
    char name[TOKEN_NAME_MAX + 2], idtxt[24];
    const char *p;
    size_t plen = strcspn(path, "?");

    h->n_requests++;
    if (plen == 8 && strncmp(path, "/healthz", 8) == 0) {
        ureq_respond(r, h->draining ? 503 : 200, "text/plain", h->draining ? "draining\n" : "ok\n",
                     h->draining ? 9 : 3);
        return;
    }
    /* Routes where the body, not a bearer token, says who is asking. */
    if (plen == 10 && strncmp(path, "/v1/enroll", 10) == 0) {
        if (strcmp(m, "POST") != 0)
            method_not_allowed(r, "POST");
        else
            mutate(h, r, R_ENROLL, NULL, NULL, 0);
        return;
    }
    if (strncmp(path, "/v1/sites/", 10) == 0) {
        p = path + 10;
        if (segment(&p, name, sizeof(name)) == 0 && token_name_valid(name) &&
            is_tail(p, "/rotate")) {
            if (strcmp(m, "POST") != 0)
                method_not_allowed(r, "POST");
            else
                mutate(h, r, R_SITE_ROTATE, NULL, name, 0);
            return;
        }
    }
    if (strncmp(path, "/v1/", 4) != 0 && !(plen == 8 && strncmp(path, "/metrics", 8) == 0)) {
        ureq_error(r, 404, "not_found", "no such endpoint");
        return;
    }
    if (authenticate(h, r, &a) != 0) {
        /* The same answer whatever was wrong: no hint of what exists. */
        ureq_error(r, 401, "unauthorized", "missing or invalid bearer token");
        return;
    }
    if (plen == 8 && strncmp(path, "/metrics", 8) == 0) {
        if (admin_read(r, &a))
            metrics(h, r);
        goto out;
    }
    if (query_api(h, r, &a))
        goto out;
    if (plen == 9 && strncmp(path, "/v1/sites", 9) == 0) {
        if (strcmp(m, "GET") == 0)
            sites_list(h, r, &a);
        else if (strcmp(m, "POST") == 0)
            mutate(h, r, R_SITE_CREATE, &a, NULL, 0);
        else
            method_not_allowed(r, "GET or POST");
        goto out;
    }
    if (plen == 10 && strncmp(path, "/v1/tokens", 10) == 0) {
        if (strcmp(m, "POST") == 0)
            mutate(h, r, R_TOKEN_CREATE, &a, NULL, 0);
        else if (admin_read(r, &a))
            tokens_list(h, r);
        goto out;
    }
    if (strncmp(path, "/v1/tokens/", 11) == 0) {
        p = path + 11;
        if (segment(&p, name, sizeof(name)) != 0 || !token_name_valid(name) ||
            !(*p == '\0' || *p == '?')) {
            ureq_error(r, 404, "not_found", "no such endpoint");
        } else if (strcmp(m, "DELETE") != 0) {
            method_not_allowed(r, "DELETE");
        } else {
            mutate(h, r, R_TOKEN_REVOKE, &a, name, 0);
        }
        goto out;
    }
    if (plen == 15 && strncmp(path, "/v1/enrollments", 15) == 0) {
        if (admin_read(r, &a))
            enrollments_list(h, r);
        goto out;
    }
    if (strncmp(path, "/v1/enrollments/", 16) == 0) {
        int64_t id = -1;

        p = path + 16;
        if (segment(&p, idtxt, sizeof(idtxt)) == 0 && (*p == '\0' || *p == '?'))
            id = parse_nonneg(idtxt);
        if (id < 1)
            ureq_error(r, 404, "not_found", "no such endpoint");
        else if (strcmp(m, "DELETE") != 0)
            method_not_allowed(r, "DELETE");
        else
            mutate(h, r, R_ENROLLMENT_CANCEL, &a, NULL, id);
        goto out;
    }
    if (plen == 9 && strncmp(path, "/v1/audit", 9) == 0) {
        if (admin_read(r, &a))
            audit_list(h, r);
        goto out;
    }
    if (strncmp(path, "/v1/sites/", 10) == 0) {
        p = path + 10;
        if (segment(&p, name, sizeof(name)) != 0 || !token_name_valid(name))
            ureq_error(r, 404, "not_found", "no such site");
        else
            site_routes(h, r, &a, name, p);
        goto out;
    }
    ureq_error(r, 404, "not_found", "no such endpoint");
out:
    auth_clear(&a);
}
