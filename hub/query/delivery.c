/* Query delivery: one result's request down a site's tunnel stream, its answer landed and committed
 * in batches. */
/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/log.h"
#include "../store/registry_query.h"
#include "jtext.h"
#include "query_int.h"

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
    if (b != NULL) {
        assert(b->refs > 0);
        if (--b->refs == 0)
            free(b);
    }
}

int query_tunnel_ready(struct hub *h, struct tunnel *t)
{
    return t != NULL && tunnel_is_ready(t) && !h->draining;
}

static void send_free(struct qsend *s)
{
    struct query_engine *qe = s->qe;

    assert(s->ts == NULL);
    assert(qe->n_inflight > 0);
    if (qe->tick_next == s)
        qe->tick_next = TAILQ_NEXT(s, link);
    TAILQ_REMOVE(&qe->inflight, s, link);
    qe->n_inflight--;
    assert((qe->n_inflight == 0) == TAILQ_EMPTY(&qe->inflight));
    free(s->headers_json);
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

int query_land_flush(struct query_engine *qe)
{
    struct reg_qresult rs[LAND_BATCH];
    struct qland *ls[LAND_BATCH];
    int from[LAND_BATCH], completes[LAND_BATCH], rcs[LAND_BATCH];
    int64_t seqs[LAND_BATCH];
    struct qland *l;
    size_t n = 0;
    uint64_t t0;
    int rc;

    STAILQ_FOREACH(l, &qe->land, link)
    {
        if (n == LAND_BATCH)
            break;
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
        n++;
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
    /* Off the queue before any waiter is woken: waking may land more. */
    for (size_t i = 0; i < n; i++) {
        assert(STAILQ_FIRST(&qe->land) == ls[i]);
        STAILQ_REMOVE_HEAD(&qe->land, link);
    }
    assert(qe->n_land >= n);
    qe->n_land -= n;
    assert((qe->n_land == 0) == STAILQ_EMPTY(&qe->land));
    for (size_t i = 0; i < n; i++) {
        if (rcs[i] == 0) {
            log_event(LOG_DEBUG, "query_result", "id=%s site=%s status=%s http=%d latency_ms=%lld",
                      ls[i]->qid, ls[i]->site, registry_query_status_name(ls[i]->status),
                      ls[i]->http_status, (long long)ls[i]->latency_ms);
            qe->n_final[ls[i]->status]++;
            query_landed(qe, ls[i]->query_id, ls[i]->site_id, seqs[i], completes[i], ls[i]->qid);
        } else if (rcs[i] == -ENOENT) {
            /* Not an error: the result was final before this answer came
             * (cancelled, expired, or failed by the hub the site moved to). */
            log_event(LOG_INFO, "query_result_late", "id=%s site=%s status=%s", ls[i]->qid,
                      ls[i]->site, registry_query_status_name(ls[i]->status));
        } else {
            log_event(LOG_WARN, "query_result_dropped", "id=%s site=%s error=%s", ls[i]->qid,
                      ls[i]->site, log_q(strerror(-rcs[i])));
        }
        land_free(ls[i]);
    }
    return 0;
}

int query_wake_later(struct query_engine *qe, const struct reg_qresult *r, int complete,
                     const char *qid)
{
    struct qwake *w = calloc(1, sizeof(*w));

    if (w == NULL)
        return -ENOMEM;
    w->query_id = r->query_id;
    w->site_id = r->site_id;
    w->seq = r->seq;
    w->complete = complete;
    snprintf(w->qid, sizeof(w->qid), "%s", qid);
    STAILQ_INSERT_TAIL(&qe->wakes, w, link);
    return 0;
}

/* Tells the waiters of results committed elsewhere (each off the list
 * first: waking may queue more). */
static void wake_all(struct query_engine *qe)
{
    struct qwake *w;

    while ((w = STAILQ_FIRST(&qe->wakes)) != NULL) {
        STAILQ_REMOVE_HEAD(&qe->wakes, link);
        query_landed(qe, w->query_id, w->site_id, w->seq, w->complete, w->qid);
        free(w);
    }
}

static void flush_cb(uv_idle_t *idle)
{
    struct query_engine *qe = idle->data;
    int failed = query_land_flush(qe) != 0;

    wake_all(qe);
    if (failed || STAILQ_EMPTY(&qe->land)) {
        /* On failure the tick tries again, not every loop turn. */
        uv_idle_stop(&qe->flush);
        qe->flush_on = 0;
    }
}

void query_flush_kick(struct query_engine *qe)
{
    if ((!STAILQ_EMPTY(&qe->land) || !STAILQ_EMPTY(&qe->wakes)) && !qe->flush_on &&
        !uv_is_closing((uv_handle_t *)&qe->flush)) {
        uv_idle_start(&qe->flush, flush_cb);
        qe->flush_on = 1;
    }
}

/* Queues l for the next commit. Never commits or wakes anyone itself: that
 * happens from the flush idle, so a tunnel callback that lands a result
 * never re-enters the engine's callers. */
static void land(struct query_engine *qe, struct qland *l)
{
    STAILQ_INSERT_TAIL(&qe->land, l, link);
    qe->n_land++;
    query_flush_kick(qe);
}

void query_send_finish(struct qsend *s, int status, const char *detail, int keep_body)
{
    struct query_engine *qe = s->qe;
    struct qland *l = calloc(1, sizeof(*l));

    assert(!s->opening);
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
    l->headers_json = s->headers_json; /* moved */
    s->headers_json = NULL;
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

/* --- the tunnel side of one site's request (struct tstream_ops) --- */

/* The order t_head writes fields in: by name (jansson's JSON_SORT_KEYS,
 * what the hub stored before), repeated fields in arrival order. */
static int nv_before(const nghttp2_nv *a, const nghttp2_nv *b)
{
    size_t n = a->namelen < b->namelen ? a->namelen : b->namelen;
    int c = memcmp(a->name, b->name, n);

    return c < 0 || (c == 0 && a->namelen < b->namelen);
}

static int nv_same_name(const nghttp2_nv *a, const nghttp2_nv *b)
{
    return a->namelen == b->namelen && memcmp(a->name, b->name, a->namelen) == 0;
}

/* The answer's head: its fields become one JSON object, written as text
 * (no tree per answer): names lower-case as HTTP/2 has them, a repeated
 * field one comma-separated value (RFC 9110 5.3), a value that is not
 * UTF-8 dropped (JSON cannot carry it), tether-error kept aside. */
static void t_head(void *arg, int status, const nghttp2_nv *nva, size_t n)
{
    struct qsend *s = arg;
    const nghttp2_nv *few[32], **keep = few;
    size_t nk = 0;
    struct buf b;
    struct jtext jt = {&b, 0};

    s->http_status = status;
    free(s->headers_json);
    s->headers_json = NULL;
    if (n > sizeof(few) / sizeof(few[0]) && (keep = malloc(n * sizeof(*keep))) == NULL)
        return; /* no headers kept: out of memory */
    for (size_t i = 0; i < n; i++) {
        const nghttp2_nv *nv = &nva[i];
        size_t k;

        if (nv->namelen == 0 || nv->namelen > HDR_NAME_MAX)
            continue;
        if (nv->namelen == 12 && memcmp(nv->name, "tether-error", 12) == 0) {
            snprintf(s->site_error, sizeof(s->site_error), "%.*s",
                     (int)(nv->valuelen < 31 ? nv->valuelen : 31), nv->value);
            continue;
        }
        if (memchr(nv->name, 0, nv->namelen) != NULL || !jtext_utf8_ok(nv->value, nv->valuelen))
            continue;
        /* Insertion sort, stable: few fields, and equal names keep their order. */
        for (k = nk; k > 0 && nv_before(nv, keep[k - 1]); k--)
            keep[k] = keep[k - 1];
        keep[k] = nv;
        nk++;
    }
    buf_init(&b);
    jtext_lit(&jt, "{");
    for (size_t i = 0; i < nk; i++) {
        if (i > 0 && nv_same_name(keep[i], keep[i - 1])) {
            jtext_lit(&jt, ", ");
        } else {
            if (i > 0)
                jtext_lit(&jt, "\",");
            jtext_str(&jt, (const char *)keep[i]->name, keep[i]->namelen);
            jtext_lit(&jt, ":\"");
        }
        /* The value's escaped text without its quotes: a repeated field's
         * values go into one string. */
        {
            size_t at = b.len;
            jtext_str(&jt, (const char *)keep[i]->value, keep[i]->valuelen);
            if (jt.rc == 0) {
                memmove(buf_head(&b) + at, buf_head(&b) + at + 1, b.len - at - 2);
                b.len -= 2;
            }
        }
    }
    if (nk > 0)
        jtext_lit(&jt, "\"");
    jtext_lit(&jt, "}");
    if (jt.rc == 0 && buf_append(&b, "", 1) == 0 && b.off == 0) {
        s->headers_json = (char *)b.data; /* the buffer's storage, NUL-terminated */
        buf_init(&b);
    }
    buf_free(&b);
    if (keep != few)
        free(keep);
}

static void t_data(void *arg, const uint8_t *data, size_t len)
{
    struct qsend *s = arg;
    struct tstream *ts = s->ts;
    char detail[DETAIL_LEN];

    /* Called from the tunnel's receive path, where the tunnel defers its own
     * sends: consume and cancel call back nobody here. */
    tunnel_stream_consume(ts, len);
    if (s->body.len + len <= s->body_max) {
        if (buf_append(&s->body, data, len) == 0)
            return;
        snprintf(detail, sizeof(detail), "out of memory storing the response");
    } else {
        snprintf(detail, sizeof(detail),
                 "the response body is larger than the %zu-byte limit of the hub", s->body_max);
    }
    s->ts = NULL;
    tunnel_stream_cancel(ts);
    query_send_finish(s, REG_Q_ERROR, detail, 0);
}

static void t_end(void *arg)
{
    struct qsend *s = arg;
    char detail[DETAIL_LEN];
    json_t *j;

    s->ts = NULL;
    if (s->site_error[0] == '\0') {
        query_send_finish(s, REG_Q_DONE, NULL, 1);
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
    query_send_finish(
        s, strcmp(s->site_error, "gateway_timeout") == 0 ? REG_Q_TIMEOUT : REG_Q_ERROR, detail, 1);
}

/* The stream failed: requeue (refused, never processed) or finish as error. */
static void send_failed(struct qsend *s, enum tstream_err err)
{
    struct query_engine *qe = s->qe;
    const char *detail = "the site reset the request (its service may have failed)";
    int rc;

    assert(s->ts == NULL);
    switch (err) {
    case TSTREAM_ERR_REFUSED:
        rc = registry_query_requeue(qe->st, s->query_id, s->site_id);
        if (rc == 0) {
            /* The site did not process it, so it may go again. */
            registry_query_next_expiry(qe->st, &qe->next_expiry);
            send_free(s);
            return;
        }
        if (rc == -ECANCELED) {
            /* Not processed, and the query no longer wants it. */
            query_send_finish(s, REG_Q_CANCELLED,
                              "the query was cancelled before the site took the request (it "
                              "refused the stream)",
                              0);
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
    query_send_finish(s, REG_Q_ERROR, detail, 0);
}

static void t_error(void *arg, enum tstream_err err, const char *why)
{
    struct qsend *s = arg;

    (void)why;
    s->ts = NULL; /* the tunnel frees the stream after this call */
    if (s->opening) {
        /* Inside tunnel_stream_open (nghttp2 could not send the request):
         * send_start acts on it once the open has returned. */
        s->early_error = (int)err + 1;
        return;
    }
    send_failed(s, err);
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

static const struct tstream_ops tunnel_side = {
    .on_head = t_head,
    .on_data = t_data,
    .on_end = t_end,
    .on_error = t_error,
    .read_body = t_read_body,
};

int query_qreq_init(struct qreq *rq, const struct reg_query *q)
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
    /* Never indexed: a query id is new in every query, so in the tunnel's
     * HPACK table it would only push out fields that repeat, and each
     * send would walk every id still there (the encoder's hash chain for
     * that name: 15% of the hub's CPU in a 1,000-site fan-out). */
    rq->nva[rq->n] = h2_nv("x-tether-query", 14, q->qid, strlen(q->qid));
    rq->nva[rq->n++].flags = NGHTTP2_NV_FLAG_NO_INDEX;
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

void query_qreq_clear(struct qreq *rq)
{
    json_decref(rq->headers);
    qbody_put(rq->body);
    rq->headers = NULL;
    rq->body = NULL;
}

int query_send_start(struct query_engine *qe, struct tunnel *t, struct qreq *rq, int64_t site_id,
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
    /* timeout_s counts from the send (docs/queries.md), and the loop's
     * cached time may be older by the store's commit in this same turn (a
     * few ms on PostgreSQL): a deadline from it came early. +1: uv_now is
     * whole milliseconds, rounded down. */
    uv_update_time(qe->h->loop);
    s->deadline_ms = uv_now(qe->h->loop) + 1 + (uint64_t)rq->q->timeout_s * 1000;
    /* On the list before the open: the tunnel may call back during it. */
    TAILQ_INSERT_HEAD(&qe->inflight, s, link);
    qe->n_inflight++;
    s->opening = 1;
    rc = tunnel_stream_open(t, rq->nva, rq->n, rq->q->body_len > 0, &tunnel_side, s, &s->ts);
    s->opening = 0;
    if (rc != 0) {
        s->ts = NULL;
        send_free(s);
        return rc;
    }
    qe->n_deliveries++;
    if (s->early_error != 0)
        send_failed(s, (enum tstream_err)(s->early_error - 1));
    return 0;
}

/* Why the queued query q may not go to t (0: it may), in why. The
 * submitter's token is read again: its services, and the site's restricted
 * set, are those of now, not of the submission. */
static int refusal(struct hub *h, struct tunnel *t, const struct reg_query *q, char *why,
                   size_t cap)
{
    enum auth_svc res;
    struct auth a;

    if (!tunnel_offers(t, q->service)) {
        snprintf(why, cap, "the site does not offer service \"%s\"", q->service);
        return -ENOENT;
    }
    /* A row without its token (never written by the hub: tokens are
     * revoked, not deleted) gets no more than a plain user token. */
    if (auth_token_by_id(h, q->token_id, &a) != 0)
        memset(&a, 0, sizeof(a));
    res = auth_service_allowed(&a, q->service, tunnel_restricts(t, q->service) != 0);
    auth_clear(&a);
    if (res == AUTH_SVC_OK)
        return 0;
    auth_service_refusal(res, tunnel_site_name(t), q->service, why, cap);
    return -EACCES;
}

/* A site's tunnel is up and its services are known (core/events.h): deliver
 * what waits for it. */
/* A result another hub had sent the site that just connected here. */
static void elsewhere_cb(const struct reg_qresult *r, const char *qid, int complete, void *arg)
{
    struct query_engine *qe = arg;

    qe->n_final[REG_Q_ERROR]++;
    query_landed(qe, r->query_id, r->site_id, r->seq, complete, qid);
}

void query_site_online(void *arg, struct tunnel *t)
{
    struct query_engine *qe = arg;
    struct hub *h = qe->h;
    struct reg_query *v = NULL;
    int64_t *ids = NULL;
    int *ok = NULL;
    size_t n = 0, n_ids = 0, sent = 0;
    int64_t now = hub_now();
    int rc;

    if (!query_tunnel_ready(h, t))
        return;
    /* The site holds one tunnel: what another hub of the cluster sent it
     * will never be answered there (at most once: not sent again). */
    rc = registry_query_fail_elsewhere(qe->st, tunnel_site_id(t),
                                       "the hub that sent it lost the site's tunnel (it stopped, "
                                       "or the site moved to another hub); not sent again",
                                       now, elsewhere_cb, qe, &n);
    if (rc != 0)
        goto out;
    n = 0;
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
        char why[QUERY_DETAIL_LEN];
        struct qland *l;

        rc = refusal(h, t, &v[i], why, sizeof(why));
        if (rc == 0) {
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
        /* A site that "*" or labels picked and that does not offer the
         * service is passed over, as at submission; one named is an error. */
        l->status =
            rc == -ENOENT && query_by_selector(v[i].target_json) ? REG_Q_SKIPPED : REG_Q_ERROR;
        buf_init(&l->body);
        snprintf(l->detail, sizeof(l->detail), "%s", why);
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
        if (query_qreq_init(&rq, &v[i]) != 0 ||
            query_send_start(qe, t, &rq, tunnel_site_id(t), tunnel_site_name(t)) != 0)
            /* Nothing left the hub: it may wait for the next connection. */
            registry_query_requeue(qe->st, v[i].id, tunnel_site_id(t));
        else
            sent++;
        query_qreq_clear(&rq);
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

void query_remote_made(struct hub *h, int64_t query_id)
{
    struct query_engine *qe = h->qe;
    int64_t *ids = NULL;
    size_t n = 0;
    struct tunnel *t;
    int rc;

    if (qe == NULL)
        return;
    rc = registry_query_queued_sites(qe->st, query_id, &ids, &n);
    if (rc != 0)
        /* Not lost: the sites get it when they connect, here or elsewhere. */
        log_event(LOG_ERROR, "query_store_failed", "op=remote_deliver error=%s",
                  log_q(strerror(-rc)));
    for (size_t i = 0; i < n; i++)
        if ((t = hub_tunnel_find(h, ids[i])) != NULL)
            query_site_online(qe, t);
    free(ids);
}

void query_remote_results(struct hub *h, int64_t query_id)
{
    if (h->qe != NULL)
        query_landed_elsewhere(h->qe, query_id);
}

void query_delivery_shutdown(struct query_engine *qe, const char *why)
{
    struct qsend *s;
    struct qland *l;

    /* From the head each time: a cancel may finish other sends at once. */
    while ((s = TAILQ_FIRST(&qe->inflight)) != NULL) {
        if (s->ts != NULL) {
            struct tstream *ts = s->ts;
            s->ts = NULL;
            tunnel_stream_cancel(ts); /* silences s itself */
        }
        query_send_finish(s, REG_Q_ERROR, why, 0);
    }
    assert(qe->n_inflight == 0);
    while (!STAILQ_EMPTY(&qe->land) && query_land_flush(qe) == 0)
        ;
    wake_all(qe); /* the waiters are gone by now: this only frees */
    while ((l = STAILQ_FIRST(&qe->land)) != NULL) {
        /* The store failed: these stay "sent" on disk, failed at next start. */
        STAILQ_REMOVE_HEAD(&qe->land, link);
        qe->n_land--;
        land_free(l);
    }
    assert(qe->n_land == 0);
}
