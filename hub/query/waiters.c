/* Query waiters: GET ?wait= and the events streams of a query, woken when its results land. */
/* SPDX-License-Identifier: MIT */
/*
 * Writing to a waiter's request may run other requests of the same
 * connection, which may abort waiters or add new ones. So every write to
 * waiters happens between notify_begin and notify_end: a waiter finished in
 * between is only marked dead (and put on qe->dead), and notify_end frees the
 * dead ones, in this one place, once no notification runs.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/log.h"
#include "../store/registry_query.h"
#include "query_int.h"

static struct qwatch_list *watch_bucket(struct query_engine *qe, int64_t query_id)
{
    return &qe->watch[(uint64_t)query_id % WATCH_BUCKETS];
}

static struct qwatch *watch_find(struct query_engine *qe, int64_t query_id)
{
    struct qwatch *w;

    LIST_FOREACH(w, watch_bucket(qe, query_id), link)
    {
        if (w->query_id == query_id)
            return w;
    }
    return NULL;
}

/* The watch of query_id, made if there is none; NULL if out of memory. */
static struct qwatch *watch_get(struct query_engine *qe, int64_t query_id, const char *qid)
{
    struct qwatch *w = watch_find(qe, query_id);

    if (w == NULL) {
        w = calloc(1, sizeof(*w));
        if (w == NULL)
            return NULL;
        w->query_id = query_id;
        snprintf(w->qid, sizeof(w->qid), "%s", qid);
        TAILQ_INIT(&w->waiters);
        LIST_INSERT_HEAD(watch_bucket(qe, query_id), w, link);
    }
    return w;
}

static void watch_drop_if_empty(struct qwatch *w)
{
    assert((w->n_waiters == 0) == TAILQ_EMPTY(&w->waiters));
    if (w->n_waiters != 0)
        return;
    LIST_REMOVE(w, link);
    free(w);
}

static void waiter_unlink(struct waiter *wt)
{
    struct qwatch *w = wt->w;

    if (w == NULL)
        return;
    /* The one watch of its query, the one that lists it. */
    assert(w->n_waiters > 0 && watch_find(wt->qe, w->query_id) == w);
    TAILQ_REMOVE(&w->waiters, wt, link);
    w->n_waiters--;
    wt->w = NULL;
    watch_drop_if_empty(w);
}

static void waiter_close_cb(uv_handle_t *hd)
{
    free(hd->data);
}

/* Forgets the waiter; its ureq must already be answered or gone, and no
 * notification may run (it could be walking the list that holds wt). */
static void waiter_free(struct waiter *wt)
{
    struct query_engine *qe = wt->qe;

    assert(wt->r == NULL);
    assert(qe->in_notify == 0);
    if (wt->dead) {
        assert(qe->n_dead > 0);
        TAILQ_REMOVE(&qe->dead, wt, dead_link);
        qe->n_dead--;
    }
    waiter_unlink(wt);
    if (wt->has_timer) {
        uv_timer_stop(&wt->timer);
        uv_close((uv_handle_t *)&wt->timer, waiter_close_cb);
    } else {
        free(wt);
    }
}

/* A waiter finished during a notification: freed by notify_end. */
static void waiter_retire(struct waiter *wt)
{
    struct query_engine *qe = wt->qe;

    assert(qe->in_notify > 0);
    assert(wt->r == NULL);
    assert(!wt->dead);
    wt->dead = 1;
    TAILQ_INSERT_TAIL(&qe->dead, wt, dead_link);
    qe->n_dead++;
}

static void notify_begin(struct query_engine *qe)
{
    qe->in_notify++;
}

static void notify_end(struct query_engine *qe)
{
    struct waiter *wt;

    assert(qe->in_notify > 0);
    if (--qe->in_notify > 0)
        return;
    while ((wt = TAILQ_FIRST(&qe->dead)) != NULL)
        waiter_free(wt);
    assert(qe->n_dead == 0);
}

static void w_abort(struct ureq *r)
{
    struct waiter *wt = r->hctx;

    assert(wt->r == r && !wt->dead);
    wt->r = NULL;
    if (wt->qe->in_notify > 0)
        waiter_retire(wt);
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

    assert(wt->qe->in_notify > 0);
    if (r == NULL)
        return;
    if (ureq_backlog(r) > SSE_BACKLOG_MAX) {
        wt->r = NULL;
        ureq_set_handler(r, NULL, NULL);
        ureq_reset(r);
        waiter_retire(wt);
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

char *query_event_text(const char *event, json_t *data, int64_t id)
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

char *query_done_text(struct query_engine *qe, int64_t query_id, const char *qid)
{
    int64_t counts[REG_Q_NSTATUS];
    const char *status = "complete";
    struct reg_query q;
    json_t *o;
    char *txt;

    if (registry_query_counts(qe->st, query_id, counts) != 0)
        return NULL;
    /* "complete", or "cancelled" for a query that was. */
    memset(&q, 0, sizeof(q));
    if (registry_query_get(qe->st, qid, &q) == 0)
        status = query_status_text(&q);
    registry_query_clear(&q);
    o = json_pack("{s:s,s:s,s:o}", "id", qid, "status", status, "counts",
                  query_counts_json(counts));
    txt = query_event_text("done", o, 0);
    json_decref(o);
    return txt;
}

static int one_result_cb(const struct reg_qresult *r, void *arg)
{
    *(json_t **)arg = query_result_json(r);
    return 0;
}

/* The query is complete: every waiter gets its last answer and is retired. */
static void answer_all(struct query_engine *qe, struct qwatch *w, int64_t query_id, const char *qid)
{
    struct waiter_list list = TAILQ_HEAD_INITIALIZER(list);
    struct waiter *wt;
    char *done = NULL, *full = NULL;
    size_t full_len = 0;

    assert(qe->in_notify > 0);
    /* Detach the list first: answering may run other requests of the same
     * connection, which may add waiters for this query (to a new watch). */
    TAILQ_CONCAT(&list, &w->waiters, link);
    TAILQ_FOREACH(wt, &list, link)
    {
        assert(wt->w == w);
        wt->w = NULL;
    }
    w->n_waiters = 0;
    watch_drop_if_empty(w);
    TAILQ_FOREACH(wt, &list, link)
    {
        if (wt->dead || wt->r == NULL)
            continue;
        if (wt->kind == W_EVENTS) {
            if (done == NULL)
                done = query_done_text(qe, query_id, qid);
            if (done != NULL)
                sse_write(wt, done, strlen(done));
            sse_end(wt);
        } else {
            if (full == NULL)
                full = query_full_text(qe, qid, &full_len);
            waiter_answer(wt, 200, full, full_len);
        }
    }
    while ((wt = TAILQ_FIRST(&list)) != NULL) {
        TAILQ_REMOVE(&list, wt, link);
        if (!wt->dead)
            waiter_retire(wt);
    }
    free(done);
    free(full);
}

static void landed(struct query_engine *qe, int64_t query_id, int64_t site_id, int64_t seq,
                   int complete, const char *qid)
{
    struct qwatch *w = watch_find(qe, query_id);
    struct waiter *wt;
    char *ev = NULL;
    json_t *rj = NULL;
    int has_sse = 0;

    if (w == NULL)
        return;
    if (seq > w->seen_seq)
        w->seen_seq = seq;
    TAILQ_FOREACH(wt, &w->waiters, link)
    {
        if (wt->kind == W_EVENTS)
            has_sse = 1;
    }
    if (has_sse && registry_query_result(qe->st, query_id, site_id, one_result_cb, &rj) == 0)
        ev = query_event_text("result", rj, seq);
    json_decref(rj);
    notify_begin(qe);
    /* New waiters go in at the head: this walk does not meet them. */
    TAILQ_FOREACH(wt, &w->waiters, link)
    {
        if (wt->kind == W_EVENTS && !wt->dead && ev != NULL && seq > wt->last_seq) {
            sse_write(wt, ev, strlen(ev));
            wt->last_seq = seq;
        }
    }
    if (complete)
        answer_all(qe, w, query_id, qid);
    notify_end(qe);
    free(ev);
}

void query_landed(struct query_engine *qe, int64_t query_id, int64_t site_id, int64_t seq,
                  int complete, const char *qid)
{
    if (complete) {
        qe->n_completed++;
        log_event(LOG_INFO, "query_complete", "id=%s", qid);
    }
    landed(qe, query_id, site_id, seq, complete, qid);
}

struct seqs {
    int64_t (*v)[2]; /* site_id, seq */
    size_t n, cap;
};

static int seq_cb(const struct reg_qresult *r, void *arg)
{
    struct seqs *s = arg;

    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 64;
        int64_t(*v)[2] = realloc(s->v, cap * sizeof(*v));

        if (v == NULL)
            return -ENOMEM;
        s->v = v;
        s->cap = cap;
    }
    s->v[s->n][0] = r->site_id;
    s->v[s->n++][1] = r->seq;
    return 0;
}

void query_landed_elsewhere(struct query_engine *qe, int64_t query_id)
{
    struct qwatch *w = watch_find(qe, query_id);
    struct seqs s = {NULL, 0, 0};
    struct reg_query q;
    char qid[REG_QID_LEN + 1];
    int complete;

    if (w == NULL)
        return;
    snprintf(qid, sizeof(qid), "%s", w->qid);
    memset(&q, 0, sizeof(q));
    if (registry_query_results(qe->st, query_id, 1, w->seen_seq, seq_cb, &s) != 0 ||
        registry_query_get(qe->st, qid, &q) != 0) {
        free(s.v); /* the next note, or the waiter's timer, reads again */
        registry_query_clear(&q);
        return;
    }
    complete = q.n_sites > 0 && q.n_final == q.n_sites;
    registry_query_clear(&q);
    /* Each call may answer and free the watch: looked up again by id. */
    for (size_t i = 0; i < s.n; i++)
        landed(qe, query_id, s.v[i][0], s.v[i][1], complete && i + 1 == s.n, qid);
    if (s.n == 0 && complete)
        landed(qe, query_id, 0, 0, 1, qid);
    free(s.v);
}

static void wait_timer_cb(uv_timer_t *t)
{
    struct waiter *wt = t->data;
    struct query_engine *qe = wt->qe;
    char qid[REG_QID_LEN + 1];
    char *full;
    size_t len;

    assert(!wt->dead && qe->in_notify == 0);
    snprintf(qid, sizeof(qid), "%s", wt->w ? wt->w->qid : "");
    full = query_full_text(qe, qid, &len);
    waiter_answer(wt, 200, full, len);
    free(full);
    waiter_free(wt);
}

struct waiter *query_waiter_new(struct query_engine *qe, struct ureq *r, const struct reg_query *q,
                                enum wkind kind, uint64_t wait_ms)
{
    struct waiter *wt = calloc(1, sizeof(*wt));
    struct qwatch *w;

    assert(kind == W_WAIT || wait_ms == 0);
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
    TAILQ_INSERT_HEAD(&w->waiters, wt, link);
    w->n_waiters++;
    ureq_set_handler(r, &waiter_handler, wt);
    log_event(LOG_DEBUG, "query_waiting", "id=%s kind=%s", q->qid,
              kind == W_EVENTS ? "events" : "wait");
    if (kind == W_WAIT) {
        uv_timer_init(qe->h->loop, &wt->timer);
        wt->timer.data = wt;
        wt->has_timer = 1;
        uv_timer_start(&wt->timer, wait_timer_cb, wait_ms, 0);
    }
    return wt;
}

void query_keepalive(struct query_engine *qe, uint64_t now_ms)
{
    static const char ka[] = ": keepalive\n\n";
    struct qwatch *w;
    struct waiter *wt;

    notify_begin(qe);
    for (size_t b = 0; b < WATCH_BUCKETS; b++) {
        LIST_FOREACH(w, &qe->watch[b], link)
        {
            TAILQ_FOREACH(wt, &w->waiters, link)
            {
                if (wt->kind == W_EVENTS && !wt->dead && now_ms - wt->last_write_ms >= KEEPALIVE_MS)
                    sse_write(wt, ka, sizeof(ka) - 1);
            }
        }
    }
    notify_end(qe);
}

void query_waiters_shutdown(struct query_engine *qe)
{
    assert(qe->in_notify == 0 && qe->n_dead == 0);
    for (size_t b = 0; b < WATCH_BUCKETS; b++) {
        struct qwatch *w;

        while ((w = LIST_FIRST(&qe->watch[b])) != NULL) {
            struct waiter *wt;
            int last;

            do {
                wt = TAILQ_FIRST(&w->waiters);
                assert(wt != NULL);
                if (wt->r != NULL)
                    ureq_set_handler(wt->r, NULL, NULL);
                wt->r = NULL;
                last = w->n_waiters == 1;
                waiter_free(wt); /* frees w with its last waiter */
            } while (!last);
        }
    }
}
