/* Query submission: the POSTed JSON checked, its sites resolved, the query stored and sent. */
/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/crypto.h"
#include "../../common/log.h"
#include "../../common/urlpath.h"
#include "../auth/audit.h"
#include "../http/apijson.h"
#include "../http/body.h"
#include "../store/registry_query.h"
#include "jtext.h"
#include "query_int.h"

#define TIMEOUT_DEFAULT_S 30
#define TIMEOUT_MAX_S     3600
#define TTL_DEFAULT_S     86400
#define TTL_MAX_S         (30 * 86400)
#define PATH_MAX_LEN      2048
#define TARGETS_MAX       100000

static int make_qid(char out[REG_QID_LEN + 1])
{
    uint8_t rnd[16];
    size_t n;

    if (crypto_random(rnd, sizeof(rnd)) != 0)
        return -EIO;
    out[0] = 'q';
    out[1] = '_';
    if (crypto_b64_encode(rnd, sizeof(rnd), 1, out + 2, REG_QID_LEN - 1, &n) != 0 || n != 22)
        return -EIO;
    return 0;
}

int query_by_selector(const char *target_json)
{
    return target_json != NULL && target_json[0] != '[';
}

/* Whether s, once connected, announced services without service. */
static int lacks(const struct reg_site *s, const char *service)
{
    json_t *list, *v;
    size_t i;
    int found = 0;

    if (service == NULL || s->last_seen == 0 || s->services_json == NULL)
        return 0;
    list = json_loads(s->services_json, 0, NULL);
    if (!json_is_array(list)) {
        json_decref(list);
        return 0; /* unreadable: judged when it connects */
    }
    json_array_foreach(list, i, v)
    {
        if (json_is_string(v) && strcmp(json_string_value(v), service) == 0)
            found = 1;
    }
    json_decref(list);
    return !found;
}

static int tlist_add(struct query_targets *l, int64_t id, const char *name)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        struct query_target *nv = realloc(l->v, cap * sizeof(*nv));
        if (nv == NULL)
            return -ENOMEM;
        l->v = nv;
        l->cap = cap;
    }
    memset(&l->v[l->n], 0, sizeof(l->v[0]));
    l->v[l->n].site_id = id;
    snprintf(l->v[l->n].name, sizeof(l->v[0].name), "%s", name);
    l->n++;
    return 0;
}

struct submit {
    struct hub *h;
    struct auth auth; /* owned (auth_clear) */
};

static void submit_free(struct submit *sb)
{
    auth_clear(&sb->auth);
    free(sb);
}

struct select_ctx {
    const struct auth *a;
    json_t *labels; /* borrowed; NULL = every site */
    struct query_targets *out;
    int rc;
};

static int select_cb(const struct reg_site *s, void *arg)
{
    struct select_ctx *c = arg;

    if (s->state != REG_SITE_ACTIVE || !auth_site_allowed(c->a, s))
        return 0;
    if (c->labels != NULL && !apijson_labels_match(c->labels, s->labels_json))
        return 0;
    if (c->out->n >= TARGETS_MAX)
        return -E2BIG;
    c->rc = tlist_add(c->out, s->id, s->name);
    if (c->rc == 0)
        c->out->v[c->out->n - 1].lacks_service = lacks(s, c->out->service);
    return c->rc;
}

int query_resolve_sites(struct registry *reg, const struct auth *a, json_t *sites,
                        struct query_targets *out, int *status, char *msg, size_t cap)
{
    struct select_ctx c = {a, NULL, out, 0};
    json_t *v;
    size_t i;
    int rc;

    *status = 400;
    if (json_is_string(sites) && strcmp(json_string_value(sites), "*") == 0) {
        rc = registry_site_list(reg, select_cb, &c);
    } else if (json_is_object(sites)) {
        const char *k;
        json_t *labels = json_object_get(sites, "labels");

        if (json_object_size(sites) != 1 || !json_is_object(labels)) {
            snprintf(msg, cap,
                     "\"sites\" as an object must be {\"labels\": {\"key\": \"value\", ...}}");
            return -EINVAL;
        }
        json_object_foreach(labels, k, v)
        {
            if (!json_is_string(v)) {
                snprintf(msg, cap, "label values in \"sites\" must be strings");
                return -EINVAL;
            }
        }
        c.labels = labels;
        rc = registry_site_list(reg, select_cb, &c);
    } else if (json_is_array(sites)) {
        if (json_array_size(sites) > TARGETS_MAX) {
            snprintf(msg, cap, "too many sites in \"sites\"");
            return -EINVAL;
        }
        rc = 0;
        json_array_foreach(sites, i, v)
        {
            struct reg_site s;
            int dup = 0;

            if (!json_is_string(v) || !token_name_valid(json_string_value(v))) {
                snprintf(msg, cap, "\"sites\" must list site names (a-z, 0-9 and '-')");
                return -EINVAL;
            }
            for (size_t j = 0; j < out->n; j++)
                if (strcmp(out->v[j].name, json_string_value(v)) == 0)
                    dup = 1;
            if (dup)
                continue;
            memset(&s, 0, sizeof(s));
            rc = registry_site_get(reg, json_string_value(v), &s);
            if (rc == 0 && !auth_site_allowed(a, &s)) {
                registry_site_clear(&s);
                *status = 403;
                snprintf(msg, cap, "this token may not use site \"%s\"", json_string_value(v));
                return -EPERM;
            }
            if (rc == -ENOENT) {
                *status = 404;
                snprintf(msg, cap, "no such site: \"%s\"", json_string_value(v));
                return rc;
            }
            if (rc == 0)
                rc = tlist_add(out, s.id, s.name);
            registry_site_clear(&s);
            if (rc != 0)
                break;
        }
    } else {
        snprintf(msg, cap, "\"sites\" must be \"*\", a list of site names or {\"labels\": {...}}");
        return -EINVAL;
    }
    if (rc == -E2BIG) {
        snprintf(msg, cap, "the selector matches too many sites");
        return rc;
    }
    if (rc != 0 && registry_storage_error(rc) != NULL) {
        *status = 503;
        snprintf(msg, cap, "cannot read the sites: %s; try again later",
                 registry_storage_error(rc));
        return rc;
    }
    if (rc != 0) {
        *status = 500;
        snprintf(msg, cap, "registry read failed");
        return rc;
    }
    if (out->n == 0) {
        snprintf(msg, cap, "no site matches \"sites\" (among the sites this token may use)");
        return -ENOENT;
    }
    return 0;
}

static int tchar(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || strchr("!#$%&'*+-.^_`|~", c);
}

/* Headers the hub sets itself or that must not cross a hop. */
static int reserved_header(const char *name)
{
    static const char *const res[] = {"host", "content-length", "expect"};
    for (size_t i = 0; i < sizeof(res) / sizeof(res[0]); i++)
        if (strcmp(name, res[i]) == 0)
            return 1;
    return fwd_reserved(name) || h2_hop_by_hop(name, strlen(name));
}

/* Validates and normalises "headers" into *out (lower-case names). On error
 * writes msg and returns <0. */
static int parse_headers(json_t *in, json_t **out, char *msg, size_t cap)
{
    const char *k;
    json_t *v;

    *out = json_object();
    if (*out == NULL)
        return -ENOMEM;
    if (in == NULL)
        return 0;
    if (!json_is_object(in) || json_object_size(in) > HDR_COUNT_MAX) {
        snprintf(msg, cap, "\"headers\" must be an object of at most %d strings", HDR_COUNT_MAX);
        return -EINVAL;
    }
    json_object_foreach(in, k, v)
    {
        char name[HDR_NAME_MAX + 1];
        size_t kl = strlen(k), vl;
        const char *s;

        if (kl == 0 || kl > HDR_NAME_MAX) {
            snprintf(msg, cap, "header names must be 1 to %d characters", HDR_NAME_MAX);
            return -EINVAL;
        }
        for (size_t i = 0; i <= kl; i++)
            name[i] = (char)((k[i] >= 'A' && k[i] <= 'Z') ? k[i] + 32 : k[i]);
        for (size_t i = 0; i < kl; i++)
            if (!tchar((unsigned char)name[i])) {
                snprintf(msg, cap, "header name \"%.64s\" is not a valid HTTP field name", k);
                return -EINVAL;
            }
        if (reserved_header(name)) {
            snprintf(msg, cap, "header \"%.64s\" is set by the hub and may not be given", name);
            return -EINVAL;
        }
        if (!json_is_string(v)) {
            snprintf(msg, cap, "header \"%.64s\" must have a string value", name);
            return -EINVAL;
        }
        s = json_string_value(v);
        vl = json_string_length(v);
        if (vl > HDR_VALUE_MAX) {
            snprintf(msg, cap, "header \"%.64s\" is longer than %d bytes", name, HDR_VALUE_MAX);
            return -EINVAL;
        }
        for (size_t i = 0; i < vl; i++)
            if (s[i] == '\r' || s[i] == '\n' || s[i] == '\0') {
                snprintf(msg, cap, "header \"%.64s\" holds a line break or NUL", name);
                return -EINVAL;
            }
        if (json_object_get(*out, name) != NULL) {
            snprintf(msg, cap, "header \"%.64s\" is given twice", name);
            return -EINVAL;
        }
        json_object_set(*out, name, v);
    }
    return 0;
}

int query_parse(json_t *body, struct reg_query *q, int *status, char *msg, size_t cap)
{
    static const char *const known[] = {"sites", "service",     "method",    "path",  "headers",
                                        "body",  "body_base64", "timeout_s", "ttl_s", NULL};
    json_t *jsvc = json_object_get(body, "service");
    json_t *jmethod = json_object_get(body, "method");
    json_t *jpath = json_object_get(body, "path");
    json_t *jbody = json_object_get(body, "body");
    json_t *jb64 = json_object_get(body, "body_base64");
    json_t *headers = NULL;
    const char *k;
    int rc = -EINVAL;

    *status = 400;
    if (!apijson_only_keys(body, known, &k)) {
        snprintf(msg, cap, "unknown field \"%.64s\"", k);
        goto bad;
    }
    if (json_object_get(body, "sites") == NULL) {
        snprintf(msg, cap,
                 "\"sites\" is required: \"*\", a list of site names or {\"labels\": {...}}");
        goto bad;
    }
    if (!json_is_string(jsvc) || !token_name_valid(json_string_value(jsvc))) {
        snprintf(msg, cap, "\"service\" must be a service name (a-z, 0-9 and '-')");
        goto bad;
    }
    snprintf(q->service, sizeof(q->service), "%s", json_string_value(jsvc));
    snprintf(q->method, sizeof(q->method), "GET");
    if (jmethod != NULL) {
        const char *m = json_is_string(jmethod) ? json_string_value(jmethod) : "";
        size_t ml = strlen(m);
        int ok = ml >= 1 && ml <= 16 && strcmp(m, "CONNECT") != 0;
        for (size_t i = 0; i < ml; i++)
            if (m[i] < 'A' || m[i] > 'Z')
                ok = 0;
        if (!ok) {
            snprintf(msg, cap, "\"method\" must be an upper-case HTTP method such as GET");
            goto bad;
        }
        snprintf(q->method, sizeof(q->method), "%s", m);
    }
    if (jpath != NULL) {
        const char *p = json_is_string(jpath) ? json_string_value(jpath) : "";
        size_t pl = strlen(p);
        int ok = pl >= 1 && pl <= PATH_MAX_LEN && p[0] == '/';
        for (size_t i = 0; i < pl; i++)
            if ((unsigned char)p[i] <= 0x20 || (unsigned char)p[i] >= 0x7f)
                ok = 0;
        char norm[PATH_MAX_LEN + 1];
        int nrc = ok ? urlpath_normalize(p, norm, sizeof(norm)) : 0;
        if (!ok) {
            snprintf(msg, cap,
                     "\"path\" must start with '/' and be at most %d printable ASCII characters "
                     "without spaces (percent-encode the rest)",
                     PATH_MAX_LEN);
            goto bad;
        }
        if (nrc != 0) {
            snprintf(msg, cap, "\"path\": %s", urlpath_strerror(nrc));
            goto bad;
        }
        q->path = strdup(norm);
    } else {
        q->path = strdup("/");
    }
    if (parse_headers(json_object_get(body, "headers"), &headers, msg, cap) != 0)
        goto bad;
    if (jbody != NULL && jb64 != NULL) {
        snprintf(msg, cap, "give \"body\" or \"body_base64\", not both");
        goto bad;
    }
    if (jbody != NULL) {
        if (!json_is_string(jbody)) {
            snprintf(msg, cap, "\"body\" must be a string (or use \"body_base64\")");
            goto bad;
        }
        q->body_len = json_string_length(jbody);
        q->body = malloc(q->body_len + 1);
        if (q->body != NULL)
            memcpy(q->body, json_string_value(jbody), q->body_len);
    } else if (jb64 != NULL) {
        const char *s = json_is_string(jb64) ? json_string_value(jb64) : NULL;
        size_t sl = s ? strlen(s) : 0;
        q->body = malloc(sl / 4 * 3 + 4);
        if (s == NULL || (q->body != NULL && crypto_b64_decode(s, sl, 0, q->body, sl / 4 * 3 + 4,
                                                               &q->body_len) != 0)) {
            snprintf(msg, cap, "\"body_base64\" must be standard base64 text");
            goto bad;
        }
    }
    if (apijson_int_field(body, "timeout_s", TIMEOUT_DEFAULT_S, 1, TIMEOUT_MAX_S, 0, &q->timeout_s,
                          msg, cap) != 0 ||
        apijson_int_field(body, "ttl_s", TTL_DEFAULT_S, 0, TTL_MAX_S, 0, &q->ttl_s, msg, cap) != 0)
        goto bad;
    q->target_json = json_dumps(json_object_get(body, "sites"), JSON_COMPACT | JSON_ENCODE_ANY);
    q->headers_json = json_dumps(headers, JSON_COMPACT | JSON_SORT_KEYS);
    if (q->path == NULL || q->target_json == NULL || q->headers_json == NULL ||
        ((jbody != NULL || jb64 != NULL) && q->body == NULL)) {
        *status = 500;
        snprintf(msg, cap, "out of memory");
        rc = -ENOMEM;
        goto bad;
    }
    rc = 0;
bad:
    json_decref(headers);
    return rc;
}

static void audit_detail(char *out, size_t cap, const struct reg_query *q,
                         const struct query_targets *l)
{
    size_t o;

    o = (size_t)snprintf(out, cap, "service=%s method=%s path=%.200s sites=%zu:", q->service,
                         q->method, q->path, l->n);
    for (size_t i = 0; i < l->n && o < cap; i++)
        o += (size_t)snprintf(out + o, cap - o, "%s%s", i ? "," : " ", l->v[i].name);
}

static void submit_run(struct submit *sb, struct ureq *r, json_t *body)
{
    struct hub *h = sb->h;
    struct query_engine *qe = h->qe;
    struct reg_query q;
    struct reg_qresult *res = NULL;
    struct query_targets tl = {0};
    size_t n_sent = 0, n_queued = 0;
    int64_t now = hub_now();
    struct qreq rq;
    char *detail = NULL, msg[256];
    enum auth_svc refused;
    uint64_t t0, store_us;
    int rc, status, selector;

    memset(&q, 0, sizeof(q));
    memset(&rq, 0, sizeof(rq));
    if (query_parse(body, &q, &status, msg, sizeof(msg)) != 0) {
        ureq_error(r, status, status == 500 ? "internal" : "bad_request", msg);
        goto out;
    }
    tl.service = q.service;
    if (query_resolve_sites(h->reg, &sb->auth, json_object_get(body, "sites"), &tl, &status, msg,
                            sizeof(msg)) != 0) {
        /* A refusal by scope is worth an audit row (before answering: r may
         * be freed by the answer). */
        if (status == 403) {
            struct audit_row row = {sb->auth.name, r->remote, "query.submit", "", "forbidden", msg};

            audit_write(h, &row, AUDIT_SYNC);
        }
        ureq_error(r, status,
                   status == 403   ? "forbidden"
                   : status == 404 ? "not_found"
                   : status == 500 ? "internal"
                   : status == 503 ? "storage_unavailable"
                                   : "bad_request",
                   msg);
        goto out;
    }
    if ((refused = auth_service_allowed(&sb->auth, q.service, 0)) != AUTH_SVC_OK) {
        struct audit_row row = {sb->auth.name, r->remote, "query.submit", "", "forbidden", msg};

        auth_service_refusal(refused, "", q.service, msg, sizeof(msg));
        audit_write(h, &row, AUDIT_SYNC);
        ureq_error(r, 403, "forbidden", msg);
        goto out;
    }
    if (make_qid(q.qid) != 0) {
        ureq_error(r, 500, "internal", "no randomness for a query id");
        goto out;
    }
    q.created_at = now;
    q.token_id = sb->auth.token_id;
    snprintf(q.actor, sizeof(q.actor), "%s", sb->auth.name);
    snprintf(q.remote, sizeof(q.remote), "%s", r->remote);
    q.expires_at = now + q.ttl_s;
    res = calloc(tl.n, sizeof(*res));
    if (res == NULL) {
        ureq_error(r, 500, "internal", "out of memory");
        goto out;
    }
    selector = query_by_selector(q.target_json);
    for (size_t i = 0; i < tl.n; i++) {
        struct query_target *t = &tl.v[i];
        struct tunnel *tn = hub_tunnel_find(h, t->site_id);

        if (query_tunnel_ready(h, tn)) {
            if (tunnel_offers(tn, q.service) &&
                (refused = auth_service_allowed(&sb->auth, q.service,
                                                tunnel_restricts(tn, q.service))) != AUTH_SVC_OK) {
                /* Per site: another site may not restrict it. */
                t->status = REG_Q_ERROR;
                auth_service_refusal(refused, t->name, q.service, t->detail, sizeof(t->detail));
            } else if (tunnel_offers(tn, q.service)) {
                t->status = REG_Q_SENT;
                t->t = tn;
            } else {
                /* "*" or labels pass over it; a site named is asked in vain. */
                t->status = selector ? REG_Q_SKIPPED : REG_Q_ERROR;
                snprintf(t->detail, sizeof(t->detail), "the site does not offer service \"%s\"",
                         q.service);
            }
        } else if (t->lacks_service) {
            /* Offline: judged by what it offered when last connected. */
            t->status = REG_Q_SKIPPED;
            snprintf(t->detail, sizeof(t->detail),
                     "the site did not offer service \"%s\" when it was last connected", q.service);
        } else if (q.ttl_s == 0) {
            t->status = REG_Q_EXPIRED;
            snprintf(t->detail, sizeof(t->detail), "the site was offline and ttl_s is 0");
        } else {
            t->status = REG_Q_QUEUED;
            n_queued++;
        }
        res[i].site_id = t->site_id;
        res[i].site = t->name;
        res[i].status = t->status;
        res[i].detail = t->detail;
    }
    /* One transaction: the query and every "sent" is on disk before any
     * request leaves. */
    t0 = uv_hrtime();
    rc = registry_query_create(qe->st, &q, res, tl.n, now);
    store_us = (uv_hrtime() - t0) / 1000;
    if (rc != 0) {
        char why[160];

        log_event(LOG_ERROR, "query_store_failed", "op=create error=%s", log_q(strerror(-rc)));
        if (registry_storage_error(rc) != NULL) {
            /* Nothing was stored and nothing sent: the client may submit again. */
            snprintf(why, sizeof(why), "could not store the query: %s; try again later",
                     registry_storage_error(rc));
            ureq_error(r, 503, "storage_unavailable", why);
        } else {
            ureq_error(r, 500, "internal", "could not store the query");
        }
        goto out;
    }
    {
        size_t n_final = 0;

        qe->n_submitted++;
        for (size_t i = 0; i < tl.n; i++)
            if (registry_query_status_final(tl.v[i].status)) {
                qe->n_final[tl.v[i].status]++;
                n_final++;
            }
        if (n_final == tl.n)
            qe->n_completed++;
    }
    detail = malloc(4096);
    if (detail != NULL) {
        struct audit_row row = {sb->auth.name, r->remote, "query.submit", q.qid, "ok", detail};

        audit_detail(detail, 4096, &q, &tl);
        audit_write(h, &row, AUDIT_SYNC);
    }
    if (query_qreq_init(&rq, &q) != 0) {
        /* Nothing left: put every "sent" back in the queue. */
        for (size_t i = 0; i < tl.n; i++)
            if (tl.v[i].status == REG_Q_SENT &&
                registry_query_requeue(qe->st, q.id, tl.v[i].site_id) == 0)
                tl.v[i].status = REG_Q_QUEUED, n_queued++;
    } else {
        for (size_t i = 0; i < tl.n; i++) {
            if (tl.v[i].status != REG_Q_SENT)
                continue;
            if (query_send_start(qe, tl.v[i].t, &rq, tl.v[i].site_id, tl.v[i].name) == 0) {
                n_sent++;
            } else if (registry_query_requeue(qe->st, q.id, tl.v[i].site_id) == 0) {
                tl.v[i].status = REG_Q_QUEUED;
                n_queued++;
            }
        }
    }
    if (n_queued > 0 && (qe->next_expiry == 0 || q.expires_at < qe->next_expiry))
        qe->next_expiry = q.expires_at;
    log_event(LOG_INFO, "query_submitted",
              "id=%s by=%s remote=%s service=%s sites=%zu sent=%zu queued=%zu store_ms=%.2f", q.qid,
              sb->auth.name, r->remote, q.service, tl.n, n_sent, n_queued, store_us / 1000.0);
    {
        /* One entry per site: written as text, not built as a tree. */
        struct buf b;
        struct jtext jt = {&b, 0};

        buf_init(&b);
        jtext_lit(&jt, "{\"id\":");
        jtext_cstr(&jt, q.qid);
        jtext_lit(&jt, ",\"status\":");
        jtext_cstr(&jt, q.n_final == q.n_sites ? "complete" : "running");
        jtext_lit(&jt, ",\"sites\":[");
        for (size_t i = 0; i < tl.n; i++) {
            if (i > 0)
                jtext_lit(&jt, ",");
            jtext_lit(&jt, "{\"site\":");
            jtext_cstr(&jt, tl.v[i].name);
            jtext_lit(&jt, ",\"status\":");
            jtext_cstr(&jt, registry_query_status_name(tl.v[i].status));
            if (tl.v[i].detail[0] != '\0') {
                jtext_lit(&jt, ",\"detail\":");
                jtext_cstr(&jt, tl.v[i].detail);
            }
            jtext_lit(&jt, "}");
        }
        jtext_lit(&jt, "]}");
        if (jt.rc == 0)
            ureq_respond(r, 201, "application/json", (const char *)buf_head(&b), b.len);
        else
            ureq_error(r, 500, "internal", "could not encode the answer");
        buf_free(&b);
    }
out:
    query_qreq_clear(&rq);
    free(detail);
    free(res);
    free(tl.v);
    registry_query_clear(&q);
}

/* The query's body has been read (http/body.h). */
static void s_done(struct ureq *r, void *arg, enum body_status st, const uint8_t *data, size_t len)
{
    struct submit *sb = arg;
    json_t *body = NULL;
    char detail[256];

    if (st == BODY_ABORTED)
        goto out;
    if (sb->h->qe == NULL) {
        ureq_error(r, 503, "unavailable", "the hub is shutting down");
    } else if (st == BODY_TOO_LARGE) {
        snprintf(detail, sizeof(detail), "the query is larger than %zu bytes",
                 sb->h->cfg.api_body_max);
        ureq_error(r, 413, "too_large", detail);
    } else if (st == BODY_NO_MEMORY) {
        ureq_error(r, 500, "internal", "out of memory");
    } else if (apijson_parse_object(data, len, 0, &body, detail, sizeof(detail)) != 0) {
        ureq_error(r, 400, "bad_request", detail);
    } else {
        submit_run(sb, r, body);
    }
out:
    json_decref(body);
    submit_free(sb);
}

static void submit_start(struct hub *h, struct ureq *r, const struct auth *a)
{
    struct submit *sb;

    sb = calloc(1, sizeof(*sb));
    if (sb == NULL) {
        ureq_error(r, 500, "internal", "out of memory");
        return;
    }
    sb->h = h;
    if (auth_copy(&sb->auth, a) != 0 || body_read(r, h->cfg.api_body_max, s_done, sb) != 0) {
        submit_free(sb);
        ureq_error(r, 500, "internal", "out of memory");
    }
}

void query_api_submit(struct hub *h, struct ureq *r, const struct auth *a)
{
    if (query_engine_up(h, r))
        submit_start(h, r, a);
}
