/* Federated queries: one question fanned out to many sites over their tunnels, kept in SQLite. */
/* SPDX-License-Identifier: MIT */
/*
 * Every per-site result moves queued -> sent -> done|error|timeout, or
 * queued -> expired, and each move is committed to SQLite before the hub
 * acts on it (a request leaves only after its "sent" is on disk). A result
 * that was "sent" when its tunnel died or the hub stopped is never resent:
 * the site may have acted on it (docs/queries.md, "Exactly once").
 */
#include "query.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../../common/crypto.h"
#include "../../common/log.h"
#include "../../common/urlpath.h"
#include "../auth/audit.h"
#include "../http/apijson.h"
#include "../http/body.h"
#include "../proxy/fwd.h"
#include "../store/registry_query.h"

#define TICK_MS           500
#define KEEPALIVE_MS      15000
#define BODY_MAX_DEFAULT  (1u << 20)
#define TIMEOUT_DEFAULT_S 30
#define TIMEOUT_MAX_S     3600
#define TTL_DEFAULT_S     86400
#define TTL_MAX_S         (30 * 86400)
#define WAIT_MAX_S        3600
#define LIST_DEFAULT      50
#define LIST_MAX          500
#define PATH_MAX_LEN      2048
#define HDR_COUNT_MAX     64
#define HDR_NAME_MAX      128
#define HDR_VALUE_MAX     8192
#define TARGETS_MAX       100000
#define EXPIRE_BATCH      1000
#define WATCH_BUCKETS     256
#define SSE_BACKLOG_MAX   (64u << 20)
#define DELIVER_MAX       1000000
#define DETAIL_LEN        256
#define LAND_BATCH        64

/* A request body shared by every site of one fan-out. */
struct qbody {
    size_t refs;
    size_t len;
    uint8_t data[];
};

/* One result in flight over a tunnel. */
struct qsend {
    struct query_engine *qe;
    struct tstream *ts; /* NULL once the tunnel side is finished */
    int64_t query_id, site_id;
    char qid[REG_QID_LEN + 1];
    char site[TOKEN_NAME_MAX + 1];
    uint64_t sent_ns;     /* uv_hrtime() when opened */
    uint64_t deadline_ms; /* on uv_now()'s clock */
    int64_t timeout_s;
    int http_status;
    json_t *headers;     /* owned; NULL until the head */
    char site_error[32]; /* the site's own "tether-error" code, if any */
    struct buf body;
    size_t body_max;
    struct qbody *req; /* shared reference */
    size_t req_off;
    struct qsend *prev, *next;
};

enum wkind { W_WAIT, W_EVENTS };

/* A GET ?wait= or an events stream waiting for results of one query. */
struct waiter {
    struct query_engine *qe;
    struct qwatch *w; /* NULL once detached */
    struct ureq *r;   /* NULL once answered or aborted */
    enum wkind kind;
    int64_t last_seq;
    uint64_t last_write_ms;
    int has_timer;
    int dead; /* aborted during a notification; freed after it */
    uv_timer_t timer;
    struct waiter *prev, *next;
};

/* The waiters of one query, found by its row id. */
struct qwatch {
    int64_t query_id;
    char qid[REG_QID_LEN + 1];
    struct waiter *waiters;
    struct qwatch *next;
};

/* A final result waiting for the next batched commit. */
struct qland {
    struct qland *next;
    int64_t query_id, site_id;
    char qid[REG_QID_LEN + 1];
    char site[TOKEN_NAME_MAX + 1];
    int from, status, http_status;
    char *headers_json; /* owned; NULL none */
    struct buf body;
    int has_body;
    char detail[DETAIL_LEN];
    int64_t latency_ms, finished_at;
};

struct query_engine {
    struct hub *h;
    struct reg_qstore *st; /* owned */
    uv_timer_t tick;
    uv_idle_t flush; /* commits landed results once per loop turn */
    int flush_on;
    int open_handles; /* the engine is freed when both handles are closed */
    struct qland *land_head, **land_tail;
    size_t n_land;
    struct qsend *inflight;
    size_t n_inflight;
    struct qwatch *watch[WATCH_BUCKETS];
    int64_t next_expiry; /* smallest expires_at of a queued result; 0 none */
    size_t body_max;
    int in_notify;
    uint64_t last_keepalive_ms;
    struct events_sub sub; /* site online: deliver what waits */
};

static void landed(struct query_engine *qe, int64_t query_id, int64_t site_id, int64_t seq,
                   int complete, const char *qid);

/* --- small helpers --- */

static struct qbody *qbody_new(const uint8_t *data, size_t len)
{
    struct qbody *b = malloc(sizeof(*b) + len);

    if (b == NULL)
        return NULL;
    b->refs = 1;
    b->len = len;
    if (len > 0)
        memcpy(b->data, data, len);
    return b;
}

static void qbody_put(struct qbody *b)
{
    if (b != NULL && --b->refs == 0)
        free(b);
}

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

static int can_see(const struct auth *a, const struct reg_query *q)
{
    return a->admin || q->token_id == a->token_id;
}

/* The tunnel has said hello (its services are known) and the hub is not
 * draining: queries may go down it. */
static int tunnel_ready(struct hub *h, struct tunnel *t)
{
    return t != NULL && tunnel_is_ready(t) && !h->draining;
}

/* --- JSON views --- */

static json_t *jint_or_null(int64_t v, int64_t none)
{
    return v == none ? json_null() : json_integer(v);
}

static json_t *result_json(const struct reg_qresult *r)
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
    json_t *o = result_json(r);

    if (o == NULL)
        return -ENOMEM;
    json_array_append_new(arg, o);
    return 0;
}

static json_t *counts_json(const int64_t counts[REG_Q_NSTATUS])
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
    json_object_set_new(o, "status",
                        json_string(q->n_final == q->n_sites ? "complete" : "running"));
    json_object_set_new(o, "created_at", json_integer(q->created_at));
    json_object_set_new(o, "completed_at", jint_or_null(q->completed_at, 0));
    json_object_set_new(o, "user", json_string(q->actor));
    json_object_set_new(o, "service", json_string(q->service));
    json_object_set_new(o, "method", json_string(q->method));
    json_object_set_new(o, "path", json_string(q->path));
    json_object_set_new(o, "target", json_loads(q->target_json, 0, NULL));
    json_object_set_new(o, "headers", json_loads(q->headers_json, 0, NULL));
    json_object_set_new(o, "timeout_s", json_integer(q->timeout_s));
    json_object_set_new(o, "ttl_s", json_integer(q->ttl_s));
    json_object_set_new(o, "expires_at", json_integer(q->expires_at));
    json_object_set_new(o, "n_sites", json_integer(q->n_sites));
    json_object_set_new(o, "counts", counts_json(counts));
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

/* --- watchers (GET ?wait and the events stream) --- */

static struct qwatch **watch_slot(struct query_engine *qe, int64_t query_id)
{
    struct qwatch **pp = &qe->watch[(uint64_t)query_id % WATCH_BUCKETS];

    while (*pp != NULL && (*pp)->query_id != query_id)
        pp = &(*pp)->next;
    return pp;
}

static struct qwatch *watch_get(struct query_engine *qe, int64_t query_id, const char *qid)
{
    struct qwatch **pp = watch_slot(qe, query_id);

    if (*pp == NULL && qid != NULL) {
        struct qwatch *w = calloc(1, sizeof(*w));
        if (w == NULL)
            return NULL;
        w->query_id = query_id;
        snprintf(w->qid, sizeof(w->qid), "%s", qid);
        *pp = w;
    }
    return *pp;
}

static void watch_drop_if_empty(struct query_engine *qe, struct qwatch *w)
{
    struct qwatch **pp;

    if (w->waiters != NULL)
        return;
    pp = watch_slot(qe, w->query_id);
    if (*pp == w)
        *pp = w->next;
    free(w);
}

static void waiter_unlink(struct waiter *wt)
{
    struct qwatch *w = wt->w;

    if (w == NULL)
        return;
    if (wt->prev)
        wt->prev->next = wt->next;
    else
        w->waiters = wt->next;
    if (wt->next)
        wt->next->prev = wt->prev;
    wt->prev = wt->next = NULL;
    wt->w = NULL;
    watch_drop_if_empty(wt->qe, w);
}

static void waiter_close_cb(uv_handle_t *hd)
{
    free(hd->data);
}

/* Forgets the waiter; its ureq must already be answered or gone. */
static void waiter_free(struct waiter *wt)
{
    waiter_unlink(wt);
    if (wt->has_timer) {
        uv_timer_stop(&wt->timer);
        uv_close((uv_handle_t *)&wt->timer, waiter_close_cb);
    } else {
        free(wt);
    }
}

static void w_abort(struct ureq *r)
{
    struct waiter *wt = r->hctx;

    wt->r = NULL;
    if (wt->qe->in_notify > 0)
        wt->dead = 1;
    else
        waiter_free(wt);
}

static const struct ureq_handler waiter_handler = {NULL, NULL, w_abort, NULL, 0};

/* Answers a waiting GET; the waiter is freed by the caller. */
static void waiter_answer(struct waiter *wt, int status, const char *txt, size_t len)
{
    struct ureq *r = wt->r;

    if (r == NULL)
        return;
    wt->r = NULL;
    ureq_set_handler(r, NULL, NULL);
    if (txt == NULL)
        ureq_error(r, 500, "internal", "could not read the query");
    else
        ureq_respond(r, status, "application/json", txt, len);
}

/* Writes one SSE frame; drops a client that stopped reading. */
static void sse_write(struct waiter *wt, const char *txt, size_t len)
{
    struct ureq *r = wt->r;

    if (r == NULL)
        return;
    if (ureq_backlog(r) > SSE_BACKLOG_MAX) {
        wt->r = NULL;
        ureq_set_handler(r, NULL, NULL);
        ureq_reset(r);
        wt->dead = 1;
        return;
    }
    ureq_respond_body(r, (const uint8_t *)txt, len);
    wt->last_write_ms = uv_now(wt->qe->h->loop);
}

static void sse_end(struct waiter *wt)
{
    struct ureq *r = wt->r;

    if (r == NULL)
        return;
    wt->r = NULL;
    ureq_set_handler(r, NULL, NULL);
    ureq_respond_end(r);
}

/* "event: result" frame for one result; malloc'ed text or NULL. */
static char *event_text(const char *event, json_t *data, int64_t id)
{
    char *js = data ? json_dumps(data, JSON_COMPACT) : NULL;
    char *out = NULL;
    size_t cap;

    if (js == NULL)
        return NULL;
    cap = strlen(js) + strlen(event) + 64;
    out = malloc(cap);
    if (out != NULL) {
        if (id > 0)
            snprintf(out, cap, "event: %s\nid: %lld\ndata: %s\n\n", event, (long long)id, js);
        else
            snprintf(out, cap, "event: %s\ndata: %s\n\n", event, js);
    }
    free(js);
    return out;
}

static char *done_text(struct query_engine *qe, int64_t query_id, const char *qid)
{
    int64_t counts[REG_Q_NSTATUS];
    json_t *o;
    char *txt;

    if (registry_query_counts(qe->st, query_id, counts) != 0)
        return NULL;
    o = json_pack("{s:s,s:s,s:o}", "id", qid, "status", "complete", "counts", counts_json(counts));
    txt = event_text("done", o, 0);
    json_decref(o);
    return txt;
}

static int one_result_cb(const struct reg_qresult *r, void *arg)
{
    *(json_t **)arg = result_json(r);
    return 0;
}

/* Frees waiters aborted while a notification ran. */
static void sweep_dead(struct query_engine *qe, struct waiter *list)
{
    while (list != NULL) {
        struct waiter *wt = list;
        list = wt->next;
        if (wt->dead)
            waiter_free(wt);
    }
}

static char *full_query_text(struct query_engine *qe, const char *qid, size_t *len)
{
    struct reg_query q;
    json_t *o = NULL;
    char *txt = NULL;

    memset(&q, 0, sizeof(q));
    if (registry_query_get(qe->st, qid, &q) == 0)
        o = query_json(qe, &q, 1);
    registry_query_clear(&q);
    if (o != NULL)
        txt = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    *len = txt ? strlen(txt) : 0;
    return txt;
}

/* A result became final: wake whoever waits for this query. */
static void landed(struct query_engine *qe, int64_t query_id, int64_t site_id, int64_t seq,
                   int complete, const char *qid)
{
    struct qwatch *w = watch_get(qe, query_id, NULL);
    struct waiter *wt, *next, *list;
    char *ev = NULL, *done = NULL, *full = NULL;
    size_t full_len = 0;
    json_t *rj = NULL;
    int has_sse = 0;

    if (complete)
        log_event(LOG_INFO, "query_complete", "id=%s", qid);
    if (w == NULL)
        return;
    for (wt = w->waiters; wt != NULL; wt = wt->next)
        if (wt->kind == W_EVENTS)
            has_sse = 1;
    if (has_sse && registry_query_result(qe->st, query_id, site_id, one_result_cb, &rj) == 0)
        ev = event_text("result", rj, seq);
    json_decref(rj);
    qe->in_notify++;
    for (wt = w->waiters; wt != NULL; wt = wt->next) {
        if (wt->kind == W_EVENTS && !wt->dead && ev != NULL && seq > wt->last_seq) {
            sse_write(wt, ev, strlen(ev));
            wt->last_seq = seq;
        }
    }
    if (complete) {
        /* Detach the list first: answering may run other requests of the
         * same connection, which may add waiters for this query. */
        list = w->waiters;
        w->waiters = NULL;
        for (wt = list; wt != NULL; wt = wt->next)
            wt->w = NULL;
        watch_drop_if_empty(qe, w);
        w = NULL;
        for (wt = list; wt != NULL; wt = wt->next) {
            if (wt->dead || wt->r == NULL)
                continue;
            if (wt->kind == W_EVENTS) {
                if (done == NULL)
                    done = done_text(qe, query_id, qid);
                if (done != NULL)
                    sse_write(wt, done, strlen(done));
                sse_end(wt);
            } else {
                if (full == NULL)
                    full = full_query_text(qe, qid, &full_len);
                waiter_answer(wt, 200, full, full_len);
            }
        }
        qe->in_notify--;
        for (wt = list; wt != NULL; wt = next) {
            next = wt->next;
            wt->prev = wt->next = NULL;
            waiter_free(wt);
        }
    } else {
        qe->in_notify--;
        if (qe->in_notify == 0 && (w = watch_get(qe, query_id, NULL)) != NULL)
            sweep_dead(qe, w->waiters);
    }
    free(ev);
    free(done);
    free(full);
}

static void wait_timer_cb(uv_timer_t *t)
{
    struct waiter *wt = t->data;
    struct query_engine *qe = wt->qe;
    char qid[REG_QID_LEN + 1];
    char *full;
    size_t len;

    snprintf(qid, sizeof(qid), "%s", wt->w ? wt->w->qid : "");
    full = full_query_text(qe, qid, &len);
    waiter_answer(wt, 200, full, len);
    free(full);
    waiter_free(wt);
}

/* --- the tunnel side of one site's request --- */

static void send_free(struct qsend *s)
{
    struct query_engine *qe = s->qe;

    if (s->prev)
        s->prev->next = s->next;
    else if (qe->inflight == s)
        qe->inflight = s->next;
    if (s->next)
        s->next->prev = s->prev;
    qe->n_inflight--;
    json_decref(s->headers);
    buf_free(&s->body);
    qbody_put(s->req);
    free(s);
}

static void land_free(struct qland *l)
{
    free(l->headers_json);
    buf_free(&l->body);
    free(l);
}

/* Commits up to LAND_BATCH landed results in one transaction, then wakes
 * their waiters. 0, or <0 if the store failed (they stay queued). */
static int land_flush(struct query_engine *qe)
{
    struct reg_qresult rs[LAND_BATCH];
    struct qland *ls[LAND_BATCH];
    int from[LAND_BATCH], completes[LAND_BATCH], rcs[LAND_BATCH];
    int64_t seqs[LAND_BATCH];
    struct qland *l = qe->land_head;
    size_t n = 0;
    uint64_t t0;
    int rc;

    for (; l != NULL && n < LAND_BATCH; l = l->next, n++) {
        ls[n] = l;
        from[n] = l->from;
        rs[n] = (struct reg_qresult){
            .query_id = l->query_id,
            .site_id = l->site_id,
            .site = l->site,
            .status = l->status,
            .http_status = l->http_status,
            .headers_json = l->headers_json,
            .body = l->has_body ? (l->body.len ? buf_head(&l->body) : (const uint8_t *)"") : NULL,
            .body_len = l->has_body ? l->body.len : 0,
            .detail = l->detail,
            .latency_ms = l->latency_ms,
            .finished_at = l->finished_at,
        };
    }
    if (n == 0)
        return 0;
    t0 = uv_hrtime();
    rc = registry_query_finish_many(qe->st, rs, from, n, seqs, completes, rcs);
    log_event(LOG_DEBUG, "query_commit", "results=%zu ms=%.2f", n,
              (double)(uv_hrtime() - t0) / 1e6);
    if (rc != 0) {
        log_event(LOG_ERROR, "query_store_failed", "op=finish results=%zu error=%s", n,
                  log_q(strerror(-rc)));
        return rc;
    }
    qe->land_head = l;
    if (l == NULL)
        qe->land_tail = &qe->land_head;
    qe->n_land -= n;
    for (size_t i = 0; i < n; i++) {
        if (rcs[i] == 0) {
            log_event(LOG_DEBUG, "query_result", "id=%s site=%s status=%s http=%d latency_ms=%lld",
                      ls[i]->qid, ls[i]->site, registry_query_status_name(ls[i]->status),
                      ls[i]->http_status, (long long)ls[i]->latency_ms);
            landed(qe, ls[i]->query_id, ls[i]->site_id, seqs[i], completes[i], ls[i]->qid);
        } else {
            log_event(LOG_WARN, "query_result_dropped", "id=%s site=%s error=%s", ls[i]->qid,
                      ls[i]->site, log_q(strerror(-rcs[i])));
        }
        land_free(ls[i]);
    }
    return 0;
}

static void flush_cb(uv_idle_t *idle)
{
    struct query_engine *qe = idle->data;

    if (land_flush(qe) != 0 || qe->land_head == NULL) {
        /* On failure the tick tries again, not every loop turn. */
        uv_idle_stop(&qe->flush);
        qe->flush_on = 0;
    }
}

static void land(struct query_engine *qe, struct qland *l)
{
    *qe->land_tail = l;
    qe->land_tail = &l->next;
    qe->n_land++;
    if (!qe->flush_on && !uv_is_closing((uv_handle_t *)&qe->flush)) {
        uv_idle_start(&qe->flush, flush_cb);
        qe->flush_on = 1;
    }
}

/* Queues the final state of s for the next commit and frees s. */
static void send_finish(struct qsend *s, int status, const char *detail, int keep_body)
{
    struct query_engine *qe = s->qe;
    struct qland *l = calloc(1, sizeof(*l));

    if (l == NULL) {
        /* It stays "sent" on disk; the next start turns it into an error. */
        log_event(LOG_ERROR, "query_store_failed", "id=%s site=%s error=\"out of memory\"", s->qid,
                  s->site);
        send_free(s);
        return;
    }
    l->query_id = s->query_id;
    l->site_id = s->site_id;
    snprintf(l->qid, sizeof(l->qid), "%s", s->qid);
    snprintf(l->site, sizeof(l->site), "%s", s->site);
    l->from = REG_Q_SENT;
    l->status = status;
    l->http_status = s->http_status;
    l->headers_json = s->headers ? json_dumps(s->headers, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    buf_init(&l->body);
    if (keep_body) {
        l->has_body = 1;
        l->body = s->body; /* moved */
        buf_init(&s->body);
    }
    snprintf(l->detail, sizeof(l->detail), "%s", detail ? detail : "");
    l->latency_ms = (int64_t)((uv_hrtime() - s->sent_ns) / 1000000);
    l->finished_at = hub_now();
    send_free(s);
    land(qe, l);
}

static void t_head(void *arg, int status, const nghttp2_nv *nva, size_t n)
{
    struct qsend *s = arg;

    s->http_status = status;
    json_decref(s->headers);
    s->headers = json_object();
    for (size_t i = 0; i < n && s->headers != NULL; i++) {
        char name[HDR_NAME_MAX + 1];
        json_t *old, *v;

        if (nva[i].namelen == 0 || nva[i].namelen > HDR_NAME_MAX)
            continue;
        memcpy(name, nva[i].name, nva[i].namelen);
        name[nva[i].namelen] = '\0';
        if (strcmp(name, "tether-error") == 0) {
            snprintf(s->site_error, sizeof(s->site_error), "%.*s",
                     (int)(nva[i].valuelen < 31 ? nva[i].valuelen : 31), nva[i].value);
            continue;
        }
        v = json_stringn((const char *)nva[i].value, nva[i].valuelen);
        if (v == NULL)
            continue; /* not UTF-8: not representable, dropped */
        old = json_object_get(s->headers, name);
        if (json_is_string(old)) {
            /* Repeated field: one comma-separated value (RFC 9110 5.3). */
            size_t jl = json_string_length(old) + json_string_length(v) + 3;
            char *joined = malloc(jl);
            if (joined != NULL) {
                snprintf(joined, jl, "%s, %s", json_string_value(old), json_string_value(v));
                json_decref(v);
                v = json_string(joined);
            }
            free(joined);
        }
        if (v != NULL)
            json_object_set_new(s->headers, name, v);
    }
}

static void t_data(void *arg, const uint8_t *data, size_t len)
{
    struct qsend *s = arg;
    char detail[DETAIL_LEN];

    tunnel_stream_consume(s->ts, len);
    if (s->body.len + len <= s->body_max) {
        if (buf_append(&s->body, data, len) == 0)
            return;
        snprintf(detail, sizeof(detail), "out of memory storing the response");
    } else {
        snprintf(detail, sizeof(detail),
                 "the response body is larger than the %zu-byte limit of the hub", s->body_max);
    }
    tunnel_stream_cancel(s->ts);
    s->ts = NULL;
    send_finish(s, REG_Q_ERROR, detail, 0);
}

static void t_end(void *arg)
{
    struct qsend *s = arg;
    char detail[DETAIL_LEN];
    json_t *j;

    s->ts = NULL;
    if (s->site_error[0] == '\0') {
        send_finish(s, REG_Q_DONE, NULL, 1);
        return;
    }
    /* The site answered for its service: it could not reach it, or it was
     * too slow. Its JSON error says why. */
    j = json_loadb((const char *)buf_head(&s->body), s->body.len, 0, NULL);
    snprintf(detail, sizeof(detail), "site: %s",
             json_is_string(json_object_get(j, "detail"))
                 ? json_string_value(json_object_get(j, "detail"))
                 : s->site_error);
    json_decref(j);
    send_finish(s, strcmp(s->site_error, "gateway_timeout") == 0 ? REG_Q_TIMEOUT : REG_Q_ERROR,
                detail, 1);
}

static void t_error(void *arg, enum tstream_err err, const char *why)
{
    struct qsend *s = arg;
    struct query_engine *qe = s->qe;
    const char *detail = "the site reset the request (its service may have failed)";

    (void)why;
    s->ts = NULL;
    switch (err) {
    case TSTREAM_ERR_REFUSED:
        if (registry_query_requeue(qe->st, s->query_id, s->site_id) == 0) {
            /* The site did not process it, so it may go again. */
            registry_query_next_expiry(qe->st, &qe->next_expiry);
            send_free(s);
            return;
        }
        /* Not requeued: it fails like a lost tunnel. */
        /* fall through */
    case TSTREAM_ERR_GONE:
        detail = qe->h->draining ? "the hub shut down while the query ran (not resent: the site "
                                   "may have acted on it)"
                                 : "site disconnected while the query ran (not resent: the site "
                                   "may have acted on it)";
        break;
    case TSTREAM_ERR_RESET:
        break;
    }
    send_finish(s, REG_Q_ERROR, detail, 0);
}

static size_t t_read_body(void *arg, uint8_t *dst, size_t cap, int *eof)
{
    struct qsend *s = arg;
    size_t left = s->req ? s->req->len - s->req_off : 0;
    size_t n = left < cap ? left : cap;

    if (n > 0) {
        memcpy(dst, s->req->data + s->req_off, n);
        s->req_off += n;
    }
    *eof = s->req_off >= (s->req ? s->req->len : 0);
    return n;
}

static const struct tstream_ops tunnel_side = {t_head, t_data, t_end, t_error, t_read_body};

/* What every site of one query is sent. Strings are borrowed. */
struct qreq {
    const struct reg_query *q;
    json_t *headers;    /* owned */
    struct qbody *body; /* owned reference */
    struct fwd fw;
    char cl[24];
    nghttp2_nv nva[HDR_COUNT_MAX + 12];
    size_t n;
};

static int qreq_init(struct qreq *rq, const struct reg_query *q)
{
    const char *k;
    json_t *v;

    memset(rq, 0, sizeof(*rq));
    rq->q = q;
    rq->headers = json_loads(q->headers_json ? q->headers_json : "{}", 0, NULL);
    rq->body = qbody_new(q->body, q->body_len);
    if (!json_is_object(rq->headers) || rq->body == NULL)
        return -ENOMEM;
    fwd_build(&rq->fw, q->remote, NULL);
    rq->nva[rq->n++] = h2_nv(":method", 7, q->method, strlen(q->method));
    rq->nva[rq->n++] = h2_nv(":scheme", 7, "http", 4);
    rq->nva[rq->n++] = h2_nv(":authority", 10, q->service, strlen(q->service));
    rq->nva[rq->n++] = h2_nv(":path", 5, q->path, strlen(q->path));
    rq->nva[rq->n++] = h2_nv("tether-service", 14, q->service, strlen(q->service));
    rq->nva[rq->n++] = h2_nv("x-tether-user", 13, q->actor, strlen(q->actor));
    rq->nva[rq->n++] = h2_nv("x-tether-query", 14, q->qid, strlen(q->qid));
    rq->nva[rq->n++] = h2_nv("x-forwarded-proto", 17, "https", 5);
    if (rq->fw.addr[0] != '\0') {
        rq->nva[rq->n++] = h2_nv("x-forwarded-for", 15, rq->fw.addr, strlen(rq->fw.addr));
        rq->nva[rq->n++] = h2_nv("forwarded", 9, rq->fw.forwarded, strlen(rq->fw.forwarded));
    }
    if (q->body_len > 0 || strcmp(q->method, "POST") == 0 || strcmp(q->method, "PUT") == 0 ||
        strcmp(q->method, "PATCH") == 0) {
        snprintf(rq->cl, sizeof(rq->cl), "%zu", q->body_len);
        rq->nva[rq->n++] = h2_nv("content-length", 14, rq->cl, strlen(rq->cl));
    }
    json_object_foreach(rq->headers, k, v)
    {
        if (!json_is_string(v) || rq->n >= sizeof(rq->nva) / sizeof(rq->nva[0]))
            continue;
        rq->nva[rq->n++] = h2_nv(k, strlen(k), json_string_value(v), json_string_length(v));
    }
    return 0;
}

static void qreq_clear(struct qreq *rq)
{
    json_decref(rq->headers);
    qbody_put(rq->body);
    rq->headers = NULL;
    rq->body = NULL;
}

/* Opens the stream of an already "sent" result. 0, or <0 if nothing left. */
static int send_start(struct query_engine *qe, struct tunnel *t, struct qreq *rq, int64_t site_id,
                      const char *site)
{
    struct qsend *s = calloc(1, sizeof(*s));
    int rc;

    if (s == NULL)
        return -ENOMEM;
    s->qe = qe;
    s->query_id = rq->q->id;
    s->site_id = site_id;
    snprintf(s->qid, sizeof(s->qid), "%s", rq->q->qid);
    snprintf(s->site, sizeof(s->site), "%s", site);
    s->timeout_s = rq->q->timeout_s;
    s->body_max = qe->body_max;
    buf_init(&s->body);
    s->req = rq->body;
    s->req->refs++;
    s->sent_ns = uv_hrtime();
    s->deadline_ms = uv_now(qe->h->loop) + (uint64_t)rq->q->timeout_s * 1000;
    rc = tunnel_stream_open(t, rq->nva, rq->n, rq->q->body_len > 0, &tunnel_side, s, &s->ts);
    if (rc != 0) {
        qbody_put(s->req);
        free(s);
        return rc;
    }
    s->next = qe->inflight;
    if (qe->inflight)
        qe->inflight->prev = s;
    qe->inflight = s;
    qe->n_inflight++;
    return 0;
}

/* --- delivery of queued results --- */

/* A site's tunnel is up and its services are known (core/events.h): deliver
 * what waits for it. */
static void site_online(void *arg, struct tunnel *t)
{
    struct query_engine *qe = arg;
    struct hub *h = qe->h;
    struct reg_query *v = NULL;
    int64_t *ids = NULL;
    int *ok = NULL;
    size_t n = 0, n_ids = 0, sent = 0;
    int64_t now = hub_now();
    int rc;

    if (qe == NULL || !tunnel_ready(h, t))
        return;
    rc = registry_query_queued_for_site(qe->st, tunnel_site_id(t), now, DELIVER_MAX, &v, &n);
    if (rc != 0 || n == 0) {
        if (rc == 0) /* the decision is logged even when nothing waits: a marker for tests */
            log_event(LOG_INFO, "query_delivered", "site=%s queued=0 sent=0", tunnel_site_name(t));
        goto out;
    }
    ids = calloc(n, sizeof(*ids));
    ok = calloc(n, sizeof(*ok));
    if (ids == NULL || ok == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        struct qland *l;

        if (tunnel_offers(t, v[i].service)) {
            ids[n_ids++] = v[i].id;
            continue;
        }
        l = calloc(1, sizeof(*l));
        if (l == NULL)
            continue; /* stays queued */
        l->query_id = v[i].id;
        l->site_id = tunnel_site_id(t);
        snprintf(l->qid, sizeof(l->qid), "%s", v[i].qid);
        snprintf(l->site, sizeof(l->site), "%s", tunnel_site_name(t));
        l->from = REG_Q_QUEUED;
        l->status = REG_Q_ERROR;
        buf_init(&l->body);
        snprintf(l->detail, sizeof(l->detail), "the site does not offer service \"%s\"",
                 v[i].service);
        l->latency_ms = -1;
        l->finished_at = now;
        land(qe, l);
    }
    /* On disk first, in one transaction: if the hub dies after this, none of
     * them is sent again. */
    rc = registry_query_mark_sent_many(qe->st, tunnel_site_id(t), ids, n_ids, now, ok);
    if (rc != 0)
        goto out;
    for (size_t i = 0, k = 0; i < n; i++) {
        struct qreq rq;

        if (k >= n_ids || ids[k] != v[i].id)
            continue;
        if (!ok[k++])
            continue;
        if (qreq_init(&rq, &v[i]) != 0 ||
            send_start(qe, t, &rq, tunnel_site_id(t), tunnel_site_name(t)) != 0)
            /* Nothing left the hub: it may wait for the next connection. */
            registry_query_requeue(qe->st, v[i].id, tunnel_site_id(t));
        else
            sent++;
        qreq_clear(&rq);
    }
    log_event(LOG_INFO, "query_delivered", "site=%s queued=%zu sent=%zu", tunnel_site_name(t), n,
              sent);
out:
    if (rc != 0)
        log_event(LOG_ERROR, "query_store_failed", "op=deliver site=%s error=%s",
                  tunnel_site_name(t), log_q(strerror(-rc)));
    for (size_t i = 0; i < n; i++)
        registry_query_clear(&v[i]);
    free(v);
    free(ids);
    free(ok);
}

/* --- timers --- */

static void expired_cb(const struct reg_qresult *r, const char *qid, int complete, void *arg)
{
    log_event(LOG_INFO, "query_expired", "id=%s site=%s", qid, r->site);
    landed(arg, r->query_id, r->site_id, r->seq, complete, qid);
}

static void keepalive(struct query_engine *qe, uint64_t now_ms)
{
    static const char ka[] = ": keepalive\n\n";

    qe->in_notify++;
    for (size_t b = 0; b < WATCH_BUCKETS; b++)
        for (struct qwatch *w = qe->watch[b]; w != NULL; w = w->next)
            for (struct waiter *wt = w->waiters; wt != NULL; wt = wt->next)
                if (wt->kind == W_EVENTS && !wt->dead && now_ms - wt->last_write_ms >= KEEPALIVE_MS)
                    sse_write(wt, ka, sizeof(ka) - 1);
    qe->in_notify--;
    for (size_t b = 0; b < WATCH_BUCKETS; b++) {
        struct qwatch *w = qe->watch[b], *wn;
        while (w != NULL) {
            wn = w->next;
            sweep_dead(qe, w->waiters); /* may free w */
            w = wn;
        }
    }
}

static void tick_cb(uv_timer_t *timer)
{
    struct query_engine *qe = timer->data;
    uint64_t now_ms = uv_now(qe->h->loop);
    int64_t now = hub_now();
    struct qsend *s, *next;
    char detail[DETAIL_LEN];
    size_t n;
    int rc;

    for (s = qe->inflight; s != NULL; s = next) {
        next = s->next;
        if (now_ms < s->deadline_ms)
            continue;
        if (s->ts != NULL) {
            tunnel_stream_cancel(s->ts);
            s->ts = NULL;
        }
        snprintf(detail, sizeof(detail), "no answer within timeout_s (%lld s)",
                 (long long)s->timeout_s);
        send_finish(s, REG_Q_TIMEOUT, detail, 0);
        /* Waking waiters cannot free other sends; next is still valid. */
    }
    if (qe->next_expiry != 0 && now > qe->next_expiry) {
        do {
            rc = registry_query_expire(qe->st, now, EXPIRE_BATCH, expired_cb, qe, &n);
        } while (rc == 0 && n == EXPIRE_BATCH);
        if (rc != 0)
            log_event(LOG_ERROR, "query_store_failed", "op=expire error=%s", log_q(strerror(-rc)));
        registry_query_next_expiry(qe->st, &qe->next_expiry);
    }
    if (qe->land_head != NULL && !qe->flush_on) {
        uv_idle_start(&qe->flush, flush_cb);
        qe->flush_on = 1;
    }
    if (now_ms - qe->last_keepalive_ms >= 1000) {
        qe->last_keepalive_ms = now_ms;
        keepalive(qe, now_ms);
    }
}

/* --- submission --- */

struct target {
    int64_t site_id;
    char name[TOKEN_NAME_MAX + 1];
    int status;
    char detail[DETAIL_LEN];
    struct tunnel *t;
};

struct tlist {
    struct target *v;
    size_t n, cap;
};

static int tlist_add(struct tlist *l, int64_t id, const char *name)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        struct target *nv = realloc(l->v, cap * sizeof(*nv));
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
    struct auth auth; /* scope_json owned */
};

static void submit_free(struct submit *sb)
{
    free(sb->auth.scope_json);
    free(sb);
}

struct select_ctx {
    const struct auth *a;
    json_t *labels; /* borrowed; NULL = every site */
    struct tlist *out;
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
    return c->rc;
}

/* Resolves "sites" into targets. On failure returns <0 with *status and msg
 * set for the answer. */
static int resolve_sites(struct hub *h, const struct auth *a, json_t *sites, struct tlist *out,
                         int *status, char *msg, size_t cap)
{
    struct select_ctx c = {a, NULL, out, 0};
    json_t *v;
    size_t i;
    int rc;

    *status = 400;
    if (json_is_string(sites) && strcmp(json_string_value(sites), "*") == 0) {
        rc = registry_site_list(h->reg, select_cb, &c);
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
        rc = registry_site_list(h->reg, select_cb, &c);
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
            rc = registry_site_get(h->reg, json_string_value(v), &s);
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

/* Everything the request asks for, checked; answers r itself on error. */
static int parse_query(struct submit *sb, struct ureq *r, json_t *body, struct reg_query *q,
                       json_t **headers, uint8_t **reqbody, size_t *reqbody_len)
{
    static const char *const known[] = {"sites", "service",     "method",    "path",  "headers",
                                        "body",  "body_base64", "timeout_s", "ttl_s", NULL};
    json_t *jsvc = json_object_get(body, "service");
    json_t *jmethod = json_object_get(body, "method");
    json_t *jpath = json_object_get(body, "path");
    json_t *jbody = json_object_get(body, "body");
    json_t *jb64 = json_object_get(body, "body_base64");
    char msg[256];
    const char *k;

    if (!apijson_only_keys(body, known, &k)) {
        snprintf(msg, sizeof(msg), "unknown field \"%.64s\"", k);
        goto bad;
    }
    if (json_object_get(body, "sites") == NULL) {
        snprintf(msg, sizeof(msg),
                 "\"sites\" is required: \"*\", a list of site names or {\"labels\": {...}}");
        goto bad;
    }
    if (!json_is_string(jsvc) || !token_name_valid(json_string_value(jsvc))) {
        snprintf(msg, sizeof(msg), "\"service\" must be a service name (a-z, 0-9 and '-')");
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
            snprintf(msg, sizeof(msg), "\"method\" must be an upper-case HTTP method such as GET");
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
        int rc = ok ? urlpath_normalize(p, norm, sizeof(norm)) : 0;
        if (!ok) {
            snprintf(msg, sizeof(msg),
                     "\"path\" must start with '/' and be at most %d printable ASCII characters "
                     "without spaces (percent-encode the rest)",
                     PATH_MAX_LEN);
            goto bad;
        }
        if (rc != 0) {
            snprintf(msg, sizeof(msg), "\"path\": %s", urlpath_strerror(rc));
            goto bad;
        }
        q->path = strdup(norm);
    } else {
        q->path = strdup("/");
    }
    if (parse_headers(json_object_get(body, "headers"), headers, msg, sizeof(msg)) != 0)
        goto bad;
    if (jbody != NULL && jb64 != NULL) {
        snprintf(msg, sizeof(msg), "give \"body\" or \"body_base64\", not both");
        goto bad;
    }
    if (jbody != NULL) {
        if (!json_is_string(jbody)) {
            snprintf(msg, sizeof(msg), "\"body\" must be a string (or use \"body_base64\")");
            goto bad;
        }
        *reqbody_len = json_string_length(jbody);
        *reqbody = malloc(*reqbody_len + 1);
        if (*reqbody != NULL)
            memcpy(*reqbody, json_string_value(jbody), *reqbody_len);
    } else if (jb64 != NULL) {
        const char *s = json_is_string(jb64) ? json_string_value(jb64) : NULL;
        size_t sl = s ? strlen(s) : 0;
        *reqbody = malloc(sl / 4 * 3 + 4);
        if (s == NULL || (*reqbody != NULL && crypto_b64_decode(s, sl, 0, *reqbody, sl / 4 * 3 + 4,
                                                                reqbody_len) != 0)) {
            snprintf(msg, sizeof(msg), "\"body_base64\" must be standard base64 text");
            goto bad;
        }
    }
    if (apijson_int_field(body, "timeout_s", TIMEOUT_DEFAULT_S, 1, TIMEOUT_MAX_S, 0, &q->timeout_s,
                          msg, sizeof(msg)) != 0 ||
        apijson_int_field(body, "ttl_s", TTL_DEFAULT_S, 0, TTL_MAX_S, 0, &q->ttl_s, msg,
                          sizeof(msg)) != 0)
        goto bad;
    q->target_json = json_dumps(json_object_get(body, "sites"), JSON_COMPACT | JSON_ENCODE_ANY);
    q->headers_json = json_dumps(*headers, JSON_COMPACT | JSON_SORT_KEYS);
    if (q->path == NULL || q->target_json == NULL || q->headers_json == NULL ||
        ((jbody != NULL || jb64 != NULL) && *reqbody == NULL)) {
        ureq_error(r, 500, "internal", "out of memory");
        return -ENOMEM;
    }
    return 0;
bad:
    ureq_error(r, 400, "bad_request", msg);
    return -EINVAL;
}

static void audit_detail(char *out, size_t cap, const struct reg_query *q, const struct tlist *l)
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
    struct tlist tl = {0};
    json_t *headers = NULL, *out = NULL, *arr;
    uint8_t *reqbody = NULL;
    size_t reqbody_len = 0, n_sent = 0, n_queued = 0;
    int64_t now = hub_now();
    struct qreq rq;
    char *detail = NULL, msg[256];
    uint64_t t0, store_us;
    int rc, status;

    memset(&q, 0, sizeof(q));
    memset(&rq, 0, sizeof(rq));
    if (parse_query(sb, r, body, &q, &headers, &reqbody, &reqbody_len) != 0)
        goto out;
    if (resolve_sites(h, &sb->auth, json_object_get(body, "sites"), &tl, &status, msg,
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
                                   : "bad_request",
                   msg);
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
    q.body = reqbody;
    q.body_len = reqbody_len;
    reqbody = NULL;
    q.expires_at = now + q.ttl_s;
    res = calloc(tl.n, sizeof(*res));
    if (res == NULL) {
        ureq_error(r, 500, "internal", "out of memory");
        goto out;
    }
    for (size_t i = 0; i < tl.n; i++) {
        struct target *t = &tl.v[i];
        struct tunnel *tn = hub_tunnel_find(h, t->site_id);

        if (tunnel_ready(h, tn)) {
            if (tunnel_offers(tn, q.service)) {
                t->status = REG_Q_SENT;
                t->t = tn;
            } else {
                t->status = REG_Q_ERROR;
                snprintf(t->detail, sizeof(t->detail), "the site does not offer service \"%s\"",
                         q.service);
            }
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
    detail = malloc(4096);
    if (detail != NULL) {
        struct audit_row row = {sb->auth.name, r->remote, "query.submit", q.qid, "ok", detail};

        audit_detail(detail, 4096, &q, &tl);
        audit_write(h, &row, AUDIT_SYNC);
    }
    if (qreq_init(&rq, &q) != 0) {
        /* Nothing left: put every "sent" back in the queue. */
        for (size_t i = 0; i < tl.n; i++)
            if (tl.v[i].status == REG_Q_SENT &&
                registry_query_requeue(qe->st, q.id, tl.v[i].site_id) == 0)
                tl.v[i].status = REG_Q_QUEUED, n_queued++;
    } else {
        for (size_t i = 0; i < tl.n; i++) {
            if (tl.v[i].status != REG_Q_SENT)
                continue;
            if (send_start(qe, tl.v[i].t, &rq, tl.v[i].site_id, tl.v[i].name) == 0) {
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
    out = json_object();
    arr = json_array();
    for (size_t i = 0; i < tl.n && arr != NULL; i++) {
        json_t *o = json_pack("{s:s,s:s}", "site", tl.v[i].name, "status",
                              registry_query_status_name(tl.v[i].status));
        if (o != NULL && tl.v[i].detail[0] != '\0')
            json_object_set_new(o, "detail", json_string(tl.v[i].detail));
        json_array_append_new(arr, o);
    }
    json_object_set_new(out, "id", json_string(q.qid));
    json_object_set_new(out, "status",
                        json_string(q.n_final == q.n_sites ? "complete" : "running"));
    json_object_set_new(out, "sites", arr);
    apijson_respond(r, 201, out);
out:
    qreq_clear(&rq);
    free(detail);
    free(res);
    free(tl.v);
    free(reqbody);
    json_decref(headers);
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
    sb->auth = *a;
    sb->auth.scope_json = a->scope_json ? strdup(a->scope_json) : NULL;
    if ((a->scope_json != NULL && sb->auth.scope_json == NULL) ||
        body_read(r, h->cfg.api_body_max, s_done, sb) != 0) {
        submit_free(sb);
        ureq_error(r, 500, "internal", "out of memory");
    }
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
        ureq_error(r, 500, "internal", "registry read failed");
        return;
    }
    apijson_respond(r, 200,
                    json_pack("{s:o,s:o}", "queries", c.arr, "next",
                              c.n == limit ? json_string(c.last) : json_null()));
}

static struct waiter *waiter_new(struct query_engine *qe, struct ureq *r, const struct reg_query *q,
                                 enum wkind kind)
{
    struct waiter *wt = calloc(1, sizeof(*wt));
    struct qwatch *w;

    if (wt == NULL)
        return NULL;
    w = watch_get(qe, q->id, q->qid);
    if (w == NULL) {
        free(wt);
        return NULL;
    }
    wt->qe = qe;
    wt->w = w;
    wt->r = r;
    wt->kind = kind;
    wt->last_write_ms = uv_now(qe->h->loop);
    wt->next = w->waiters;
    if (w->waiters)
        w->waiters->prev = wt;
    w->waiters = wt;
    ureq_set_handler(r, &waiter_handler, wt);
    log_event(LOG_DEBUG, "query_waiting", "id=%s kind=%s", q->qid,
              kind == W_EVENTS ? "events" : "wait");
    return wt;
}

static void show_query(struct query_engine *qe, struct ureq *r, const struct reg_query *q,
                       const char *qs)
{
    char val[32], *end;
    double wait = 0;
    struct waiter *wt;
    int rc;

    if ((rc = apijson_qs_get(qs, "wait", val, sizeof(val))) != 0) {
        wait = rc < 0 ? -1 : strtod(val, &end);
        if (rc < 0 || end == val || *end != '\0' || !(wait >= 0 && wait <= WAIT_MAX_S)) {
            ureq_error(r, 400, "bad_request", "wait must be a number of seconds from 0 to 3600");
            return;
        }
    }
    if (wait > 0 && q->n_final < q->n_sites) {
        wt = waiter_new(qe, r, q, W_WAIT);
        if (wt == NULL) {
            ureq_error(r, 500, "internal", "out of memory");
            return;
        }
        uv_timer_init(qe->h->loop, &wt->timer);
        wt->timer.data = wt;
        wt->has_timer = 1;
        uv_timer_start(&wt->timer, wait_timer_cb, (uint64_t)(wait * 1000.0), 0);
        return;
    }
    apijson_respond(r, 200, query_json(qe, q, 1));
}

struct replay {
    struct buf out;
    int64_t last_seq;
    int failed;
};

static int replay_cb(const struct reg_qresult *res, void *arg)
{
    struct replay *rp = arg;
    json_t *o = result_json(res);
    char *ev = event_text("result", o, res->seq);

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
        done = done_text(qe, q->id, q->qid);
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
    wt = waiter_new(qe, r, q, W_EVENTS);
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

static int engine_up(struct hub *h, struct ureq *r)
{
    if (h->qe != NULL)
        return 1;
    ureq_error(r, 503, "unavailable", "the query engine is not running");
    return 0;
}

void query_api_submit(struct hub *h, struct ureq *r, const struct auth *a)
{
    if (engine_up(h, r))
        submit_start(h, r, a);
}

void query_api_list(struct hub *h, struct ureq *r, const struct auth *a)
{
    const char *qs = strchr(r->target, '?');

    if (engine_up(h, r))
        list_queries(h->qe, r, a, qs ? qs + 1 : "");
}

/* The query qid names, if a may see it: 0, or answers r and returns -1. */
static int query_load(struct query_engine *qe, struct ureq *r, const struct auth *a,
                      const char *qid, struct reg_query *q)
{
    int rc;

    memset(q, 0, sizeof(*q));
    rc = qid_valid(qid) ? registry_query_get(qe->st, qid, q) : -ENOENT;
    if (rc == 0 && !can_see(a, q))
        rc = -ENOENT; /* someone else's query: nothing to learn here */
    if (rc == 0)
        return 0;
    registry_query_clear(q);
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

    if (!engine_up(h, r) || query_load(h->qe, r, a, qid, &q) != 0)
        return;
    show_query(h->qe, r, &q, qs ? qs + 1 : "");
    registry_query_clear(&q);
}

void query_api_events(struct hub *h, struct ureq *r, const struct auth *a, const char *qid)
{
    struct reg_query q;

    if (!engine_up(h, r) || query_load(h->qe, r, a, qid, &q) != 0)
        return;
    query_events(h->qe, r, &q);
    registry_query_clear(&q);
}

/* --- life cycle --- */

static void engine_close_cb(uv_handle_t *hd)
{
    struct query_engine *qe = hd->data;

    if (--qe->open_handles == 0)
        free(qe);
}

int query_init(struct hub *h)
{
    struct query_engine *qe;
    const char *env = getenv("TETHER_QUERY_BODY_MAX");
    int64_t n = 0;
    int rc;

    if (h->qe != NULL)
        return 0;
    qe = calloc(1, sizeof(*qe));
    if (qe == NULL)
        return -ENOMEM;
    qe->h = h;
    qe->body_max = h->cfg.query_body_max ? h->cfg.query_body_max : BODY_MAX_DEFAULT;
    /* The environment variable came first; it still wins over hub.conf. */
    if (env != NULL && env[0] != '\0') {
        char *end;
        unsigned long long v = strtoull(env, &end, 10);
        if (*end == '\0' && v >= 1024 && v <= (256ull << 20))
            qe->body_max = (size_t)v;
        else
            log_event(LOG_WARN, "config_ignored",
                      "key=TETHER_QUERY_BODY_MAX value=%s reason=\"want bytes, 1024 to 268435456\"",
                      log_q(env));
    }
    rc = registry_query_open(h->reg, &qe->st);
    if (rc != 0) {
        free(qe);
        return rc;
    }
    /* Whatever was in flight when the previous run died may have reached its
     * site: it is not sent again (docs/queries.md). */
    rc = registry_query_fail_sent(qe->st,
                                  "the hub restarted while the query ran (not resent: the site "
                                  "may have acted on it)",
                                  hub_now(), &n);
    if (rc == 0)
        rc = registry_query_next_expiry(qe->st, &qe->next_expiry);
    if (rc != 0) {
        registry_query_close(qe->st);
        free(qe);
        return rc;
    }
    if (n > 0)
        log_event(LOG_WARN, "query_recovered", "in_flight_failed=%lld", (long long)n);
    qe->land_tail = &qe->land_head;
    uv_timer_init(h->loop, &qe->tick);
    uv_idle_init(h->loop, &qe->flush);
    qe->tick.data = qe->flush.data = qe;
    qe->open_handles = 2;
    uv_timer_start(&qe->tick, tick_cb, TICK_MS, TICK_MS);
    qe->sub.site_online = site_online;
    qe->sub.arg = qe;
    events_subscribe(&h->subs, &qe->sub);
    h->qe = qe;
    return 0;
}

void query_shutdown(struct hub *h)
{
    struct query_engine *qe = h->qe;
    const char *why = "the hub shut down while the query ran (not resent: the site may have "
                      "acted on it)";

    if (qe == NULL)
        return;
    events_unsubscribe(&qe->sub);
    /* Waiters first: their connections are closing and get no answer. */
    for (size_t b = 0; b < WATCH_BUCKETS; b++) {
        while (qe->watch[b] != NULL) {
            struct qwatch *w = qe->watch[b];
            while (w->waiters != NULL) {
                struct waiter *wt = w->waiters;
                if (wt->r != NULL)
                    ureq_set_handler(wt->r, NULL, NULL);
                wt->r = NULL;
                waiter_free(wt); /* frees w with its last waiter */
                if (qe->watch[b] != w)
                    break;
            }
        }
    }
    while (qe->inflight != NULL) {
        struct qsend *s = qe->inflight;
        if (s->ts != NULL) {
            tunnel_stream_cancel(s->ts);
            s->ts = NULL;
        }
        send_finish(s, REG_Q_ERROR, why, 0);
    }
    while (qe->land_head != NULL && land_flush(qe) == 0)
        ;
    while (qe->land_head != NULL) {
        /* The store failed: these stay "sent" on disk, failed at next start. */
        struct qland *l = qe->land_head;
        qe->land_head = l->next;
        land_free(l);
    }
    h->qe = NULL;
    registry_query_close(qe->st);
    qe->st = NULL;
    uv_timer_stop(&qe->tick);
    uv_idle_stop(&qe->flush);
    uv_close((uv_handle_t *)&qe->tick, engine_close_cb);
    uv_close((uv_handle_t *)&qe->flush, engine_close_cb);
}
