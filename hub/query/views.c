/* Query views: a query and its results as JSON, the list, GET one (optionally waiting) and the
 * events stream. */
/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/crypto.h"
#include "../http/apijson.h"
#include "../store/registry_query.h"
#include "jtext.h"
#include "query_int.h"

static int qid_valid(const char *s)
{
    if (strlen(s) != REG_QID_LEN || strncmp(s, "q_", 2) != 0)
        return 0;
    for (const char *p = s + 2; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '-' || *p == '_'))
            return 0;
    return 1;
}

static int can_see(const struct auth *a, const struct reg_query *q)
{
    return a->admin || q->token_id == a->token_id;
}

int query_get_visible(struct query_engine *qe, const struct auth *a, const char *qid,
                      struct reg_query *q)
{
    int rc;

    memset(q, 0, sizeof(*q));
    rc = qid_valid(qid) ? registry_query_get(qe->st, qid, q) : -ENOENT;
    if (rc == 0 && !can_see(a, q))
        rc = -ENOENT; /* someone else's query: nothing to learn here */
    if (rc != 0)
        registry_query_clear(q);
    return rc;
}

const char *query_status_text(const struct reg_query *q)
{
    if (q->n_final < q->n_sites)
        return "running";
    return q->cancelled_at != 0 ? "cancelled" : "complete";
}

/* --- JSON views --- */

static json_t *jint_or_null(int64_t v, int64_t none)
{
    return v == none ? json_null() : json_integer(v);
}

json_t *query_result_json(const struct reg_qresult *r)
{
    json_t *o = json_object();
    json_t *headers = r->headers_json ? json_loads(r->headers_json, 0, NULL) : NULL;
    json_t *body = NULL;

    if (o == NULL) {
        json_decref(headers);
        return NULL;
    }
    json_object_set_new(o, "site", json_string(r->site));
    json_object_set_new(o, "status", json_string(registry_query_status_name(r->status)));
    json_object_set_new(o, "http_status", jint_or_null(r->http_status, 0));
    json_object_set_new(o, "headers", headers ? headers : json_null());
    if (r->body != NULL)
        body = json_stringn((const char *)r->body, r->body_len);
    json_object_set_new(o, "body", body ? body : json_null());
    if (r->body != NULL && body == NULL) {
        /* Not UTF-8 text: JSON cannot carry it as a string. */
        size_t cap = (r->body_len + 2) / 3 * 4 + 1, n;
        char *b64 = malloc(cap);
        if (b64 != NULL && crypto_b64_encode(r->body, r->body_len, 0, b64, cap, &n) == 0)
            json_object_set_new(o, "body_base64", json_stringn(b64, n));
        free(b64);
    }
    json_object_set_new(o, "latency_ms", jint_or_null(r->latency_ms, -1));
    json_object_set_new(o, "sent_at", jint_or_null(r->sent_at, 0));
    json_object_set_new(o, "finished_at", jint_or_null(r->finished_at, 0));
    json_object_set_new(o, "detail",
                        r->detail && r->detail[0] ? json_string(r->detail) : json_null());
    return o;
}

static int add_result_cb(const struct reg_qresult *r, void *arg)
{
    json_t *o = query_result_json(r);

    if (o == NULL)
        return -ENOMEM;
    json_array_append_new(arg, o);
    return 0;
}

json_t *query_counts_json(const int64_t counts[REG_Q_NSTATUS])
{
    json_t *o = json_object();

    for (int i = 0; i < REG_Q_NSTATUS; i++)
        json_object_set_new(o, registry_query_status_name(i), json_integer(counts[i]));
    return o;
}

/* The query without or with its per-site results; NULL on failure. */
static json_t *query_json(struct query_engine *qe, const struct reg_query *q, int with_results)
{
    int64_t counts[REG_Q_NSTATUS];
    json_t *o, *sites;

    if (registry_query_counts(qe->st, q->id, counts) != 0)
        return NULL;
    o = json_object();
    if (o == NULL)
        return NULL;
    json_object_set_new(o, "id", json_string(q->qid));
    json_object_set_new(o, "status", json_string(query_status_text(q)));
    json_object_set_new(o, "created_at", json_integer(q->created_at));
    json_object_set_new(o, "completed_at", jint_or_null(q->completed_at, 0));
    json_object_set_new(o, "cancelled_at", jint_or_null(q->cancelled_at, 0));
    json_object_set_new(o, "user", json_string(q->actor));
    json_object_set_new(o, "service", json_string(q->service));
    json_object_set_new(o, "method", json_string(q->method));
    json_object_set_new(o, "path", json_string(q->path));
    json_object_set_new(o, "target", json_loads(q->target_json, JSON_DECODE_ANY, NULL));
    json_object_set_new(o, "headers", json_loads(q->headers_json, 0, NULL));
    json_object_set_new(o, "timeout_s", json_integer(q->timeout_s));
    json_object_set_new(o, "ttl_s", json_integer(q->ttl_s));
    json_object_set_new(o, "expires_at", json_integer(q->expires_at));
    json_object_set_new(o, "n_sites", json_integer(q->n_sites));
    json_object_set_new(o, "counts", query_counts_json(counts));
    if (with_results) {
        sites = json_array();
        if (sites == NULL ||
            registry_query_results(qe->st, q->id, 0, 0, add_result_cb, sites) != 0) {
            json_decref(sites);
            json_decref(o);
            return NULL;
        }
        json_object_set_new(o, "sites", sites);
    }
    return o;
}

json_t *query_view(struct query_engine *qe, const struct reg_query *q)
{
    return query_json(qe, q, 1);
}

/* --- the same views as text (query_json's output, without the tree) --- */

/* One result as query_result_json prints it, appended to jt. */
static void result_text(struct jtext *jt, const struct reg_qresult *r)
{
    int utf8 = r->body != NULL && jtext_utf8_ok(r->body, r->body_len);

    jtext_lit(jt, "{\"site\":");
    jtext_cstr(jt, r->site);
    jtext_lit(jt, ",\"status\":");
    jtext_cstr(jt, registry_query_status_name(r->status));
    jtext_lit(jt, ",\"http_status\":");
    jtext_i64_or_null(jt, r->http_status, 0);
    /* Stored by the hub as one JSON object (the column's CHECK holds it to
     * that): copied as it is, not parsed and printed again. */
    jtext_lit(jt, ",\"headers\":");
    if (r->headers_json != NULL && r->headers_json[0] != '\0')
        jtext_raw(jt, r->headers_json, strlen(r->headers_json));
    else
        jtext_lit(jt, "null");
    jtext_lit(jt, ",\"body\":");
    if (utf8)
        jtext_str(jt, (const char *)r->body, r->body_len);
    else
        jtext_lit(jt, "null");
    if (r->body != NULL && !utf8) {
        /* Not UTF-8 text: JSON cannot carry it as a string. */
        size_t cap = (r->body_len + 2) / 3 * 4 + 1, n;
        char *b64 = malloc(cap);

        if (b64 == NULL) {
            jt->rc = -ENOMEM;
        } else if (crypto_b64_encode(r->body, r->body_len, 0, b64, cap, &n) == 0) {
            jtext_lit(jt, ",\"body_base64\":");
            jtext_str(jt, b64, n);
        }
        free(b64);
    }
    jtext_lit(jt, ",\"latency_ms\":");
    jtext_i64_or_null(jt, r->latency_ms, -1);
    jtext_lit(jt, ",\"sent_at\":");
    jtext_i64_or_null(jt, r->sent_at, 0);
    jtext_lit(jt, ",\"finished_at\":");
    jtext_i64_or_null(jt, r->finished_at, 0);
    jtext_lit(jt, ",\"detail\":");
    jtext_cstr(jt, r->detail && r->detail[0] ? r->detail : NULL);
    jtext_lit(jt, "}");
}

struct results_text {
    struct jtext *jt;
    int n;
};

static int result_text_cb(const struct reg_qresult *r, void *arg)
{
    struct results_text *rt = arg;

    if (rt->n++ > 0)
        jtext_lit(rt->jt, ",");
    result_text(rt->jt, r);
    return rt->jt->rc;
}

/* The query with its per-site results, as query_json(qe, q, 1) prints it
 * with JSON_COMPACT, appended to out; 0 or a negative code. */
static int query_text(struct query_engine *qe, const struct reg_query *q, struct buf *out)
{
    int64_t counts[REG_Q_NSTATUS];
    struct jtext jt = {out, 0};
    struct results_text rt = {&jt, 0};
    int rc;

    if ((rc = registry_query_counts(qe->st, q->id, counts)) != 0)
        return rc;
    jtext_lit(&jt, "{\"id\":");
    jtext_cstr(&jt, q->qid);
    jtext_lit(&jt, ",\"status\":");
    jtext_cstr(&jt, query_status_text(q));
    jtext_lit(&jt, ",\"created_at\":");
    jtext_i64(&jt, q->created_at);
    jtext_lit(&jt, ",\"completed_at\":");
    jtext_i64_or_null(&jt, q->completed_at, 0);
    jtext_lit(&jt, ",\"cancelled_at\":");
    jtext_i64_or_null(&jt, q->cancelled_at, 0);
    jtext_lit(&jt, ",\"user\":");
    jtext_cstr(&jt, q->actor);
    jtext_lit(&jt, ",\"service\":");
    jtext_cstr(&jt, q->service);
    jtext_lit(&jt, ",\"method\":");
    jtext_cstr(&jt, q->method);
    jtext_lit(&jt, ",\"path\":");
    jtext_cstr(&jt, q->path);
    /* Both stored as JSON the hub wrote (CHECK json_valid): copied. */
    jtext_lit(&jt, ",\"target\":");
    jtext_raw(&jt, q->target_json ? q->target_json : "null",
              q->target_json ? strlen(q->target_json) : 4);
    jtext_lit(&jt, ",\"headers\":");
    jtext_raw(&jt, q->headers_json ? q->headers_json : "{}",
              q->headers_json ? strlen(q->headers_json) : 2);
    jtext_lit(&jt, ",\"timeout_s\":");
    jtext_i64(&jt, q->timeout_s);
    jtext_lit(&jt, ",\"ttl_s\":");
    jtext_i64(&jt, q->ttl_s);
    jtext_lit(&jt, ",\"expires_at\":");
    jtext_i64(&jt, q->expires_at);
    jtext_lit(&jt, ",\"n_sites\":");
    jtext_i64(&jt, q->n_sites);
    jtext_lit(&jt, ",\"counts\":{");
    for (int i = 0; i < REG_Q_NSTATUS; i++) {
        if (i > 0)
            jtext_lit(&jt, ",");
        jtext_cstr(&jt, registry_query_status_name(i));
        jtext_lit(&jt, ":");
        jtext_i64(&jt, counts[i]);
    }
    jtext_lit(&jt, "},\"sites\":[");
    if (jt.rc != 0)
        return jt.rc;
    rc = registry_query_results(qe->st, q->id, 0, 0, result_text_cb, &rt);
    if (rc != 0)
        return rc;
    jtext_lit(&jt, "]}");
    return jt.rc;
}

char *query_full_text(struct query_engine *qe, const char *qid, size_t *len)
{
    struct reg_query q;
    struct buf b;
    char *txt = NULL;

    memset(&q, 0, sizeof(q));
    buf_init(&b);
    *len = 0;
    if (registry_query_get(qe->st, qid, &q) == 0 && query_text(qe, &q, &b) == 0 &&
        buf_append(&b, "", 1) == 0) {
        /* The buffer's storage becomes the text (NUL-terminated). */
        assert(b.off == 0);
        txt = (char *)b.data;
        *len = b.len - 1;
        buf_init(&b);
    }
    buf_free(&b);
    registry_query_clear(&q);
    return txt;
}

/* --- reading --- */

struct list_ctx {
    struct query_engine *qe;
    json_t *arr;
    char last[REG_QID_LEN + 1];
    int n;
};

static int list_cb(const struct reg_query *q, void *arg)
{
    struct list_ctx *c = arg;
    json_t *o = query_json(c->qe, q, 0);

    if (o == NULL)
        return -ENOMEM;
    json_array_append_new(c->arr, o);
    snprintf(c->last, sizeof(c->last), "%s", q->qid);
    c->n++;
    return 0;
}

static void list_queries(struct query_engine *qe, struct ureq *r, const struct auth *a,
                         const char *qs)
{
    struct list_ctx c = {qe, json_array(), "", 0};
    char val[64], *end;
    long limit = LIST_DEFAULT;
    int64_t before = 0;
    int rc;

    if ((rc = apijson_qs_get(qs, "limit", val, sizeof(val))) != 0) {
        limit = rc < 0 ? 0 : strtol(val, &end, 10);
        if (rc < 0 || end == val || *end != '\0' || limit < 1 || limit > LIST_MAX) {
            json_decref(c.arr);
            ureq_error(r, 400, "bad_request", "limit must be an integer from 1 to 500");
            return;
        }
    }
    if ((rc = apijson_qs_get(qs, "before", val, sizeof(val))) != 0) {
        struct reg_query q;

        memset(&q, 0, sizeof(q));
        if (rc < 0 || !qid_valid(val) || registry_query_get(qe->st, val, &q) != 0 ||
            !can_see(a, &q)) {
            registry_query_clear(&q);
            json_decref(c.arr);
            ureq_error(r, 400, "bad_request", "before must be the id of a query you can see");
            return;
        }
        before = q.id;
        registry_query_clear(&q);
    }
    rc = registry_query_list(qe->st, a->admin ? 0 : a->token_id, before, (int)limit, list_cb, &c);
    if (rc != 0) {
        json_decref(c.arr);
        if (registry_storage_error(rc) != NULL)
            ureq_error(r, 503, "storage_unavailable", registry_storage_error(rc));
        else
            ureq_error(r, 500, "internal", "registry read failed");
        return;
    }
    apijson_respond(r, 200,
                    json_pack("{s:o,s:o}", "queries", c.arr, "next",
                              c.n == limit ? json_string(c.last) : json_null()));
}

static void show_query(struct query_engine *qe, struct ureq *r, const struct reg_query *q,
                       const char *qs)
{
    char val[32], *end;
    double wait = 0;
    int rc;

    if ((rc = apijson_qs_get(qs, "wait", val, sizeof(val))) != 0) {
        wait = rc < 0 ? -1 : strtod(val, &end);
        if (rc < 0 || end == val || *end != '\0' || !(wait >= 0 && wait <= WAIT_MAX_S)) {
            ureq_error(r, 400, "bad_request", "wait must be a number of seconds from 0 to 3600");
            return;
        }
    }
    if (wait > 0 && q->n_final < q->n_sites) {
        if (query_waiter_new(qe, r, q, W_WAIT, (uint64_t)(wait * 1000.0)) == NULL)
            ureq_error(r, 500, "internal", "out of memory");
        return;
    }
    {
        struct buf b;

        buf_init(&b);
        if (query_text(qe, q, &b) == 0)
            ureq_respond(r, 200, "application/json", (const char *)buf_head(&b), b.len);
        else
            ureq_error(r, 500, "internal", "could not read the query");
        buf_free(&b);
    }
}

struct replay {
    struct buf out;
    int64_t last_seq;
    int failed;
};

static int replay_cb(const struct reg_qresult *res, void *arg)
{
    struct replay *rp = arg;
    json_t *o = query_result_json(res);
    char *ev = query_event_text("result", o, res->seq);

    json_decref(o);
    if (ev == NULL || buf_append(&rp->out, ev, strlen(ev)) != 0) {
        free(ev);
        rp->failed = 1;
        return -ENOMEM;
    }
    free(ev);
    rp->last_seq = res->seq;
    return 0;
}

static void query_events(struct query_engine *qe, struct ureq *r, const struct reg_query *q)
{
    nghttp2_nv hdrs[] = {
        h2_nv("content-type", 12, "text/event-stream", 17),
        h2_nv("cache-control", 13, "no-store", 8),
        h2_nv("x-accel-buffering", 17, "no", 2),
    };
    struct replay rp;
    struct waiter *wt;
    char *done = NULL;

    memset(&rp, 0, sizeof(rp));
    buf_init(&rp.out);
    /* Results already stored go first, in arrival order. */
    if (registry_query_results(qe->st, q->id, 1, 0, replay_cb, &rp) != 0 || rp.failed) {
        buf_free(&rp.out);
        ureq_error(r, 500, "internal", "registry read failed");
        return;
    }
    if (q->n_final == q->n_sites) {
        done = query_done_text(qe, q->id, q->qid);
        if (done != NULL)
            buf_append(&rp.out, done, strlen(done));
        free(done);
        if (ureq_respond_head(r, 200, hdrs, 3, -1) == 0) {
            ureq_respond_body(r, buf_head(&rp.out), rp.out.len);
            ureq_respond_end(r);
        }
        buf_free(&rp.out);
        return;
    }
    wt = query_waiter_new(qe, r, q, W_EVENTS, 0);
    if (wt == NULL) {
        buf_free(&rp.out);
        ureq_error(r, 500, "internal", "out of memory");
        return;
    }
    wt->last_seq = rp.last_seq;
    if (ureq_respond_head(r, 200, hdrs, 3, -1) == 0) {
        /* A comment first, so that the client sees the stream open at once. */
        ureq_respond_body(r, (const uint8_t *)": open\n\n", 8);
        if (rp.out.len > 0)
            ureq_respond_body(r, buf_head(&rp.out), rp.out.len);
    }
    buf_free(&rp.out);
}

/* --- routing --- */

void query_api_list(struct hub *h, struct ureq *r, const struct auth *a)
{
    const char *qs = strchr(r->target, '?');

    if (query_engine_up(h, r))
        list_queries(h->qe, r, a, qs ? qs + 1 : "");
}

/* The query qid names, if a may see it: 0, or answers r and returns -1. */
static int query_load(struct query_engine *qe, struct ureq *r, const struct auth *a,
                      const char *qid, struct reg_query *q)
{
    int rc = query_get_visible(qe, a, qid, q);

    if (rc == 0)
        return 0;
    if (rc == -ENOENT)
        ureq_error(r, 404, "not_found", "no such query");
    else
        ureq_error(r, 500, "internal", "registry read failed");
    return -1;
}

void query_api_show(struct hub *h, struct ureq *r, const struct auth *a, const char *qid)
{
    const char *qs = strchr(r->target, '?');
    struct reg_query q;

    if (!query_engine_up(h, r) || query_load(h->qe, r, a, qid, &q) != 0)
        return;
    show_query(h->qe, r, &q, qs ? qs + 1 : "");
    registry_query_clear(&q);
}

void query_api_events(struct hub *h, struct ureq *r, const struct auth *a, const char *qid)
{
    struct reg_query q;

    if (!query_engine_up(h, r) || query_load(h->qe, r, a, qid, &q) != 0)
        return;
    query_events(h->qe, r, &q);
    registry_query_clear(&q);
}
