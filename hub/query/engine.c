/* The query engine's life: start-up recovery, the tick (time-outs, expiry, keep-alives) and
 * shutdown. */
/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/log.h"
#include "../store/registry_query.h"
#include "query_int.h"

int query_engine_up(struct hub *h, struct ureq *r)
{
    if (h->qe != NULL)
        return 1;
    ureq_error(r, 503, "unavailable", "the query engine is not running");
    return 0;
}

static void expired_cb(const struct reg_qresult *r, const char *qid, int complete, void *arg)
{
    struct query_engine *qe = arg;

    log_event(LOG_INFO, "query_expired", "id=%s site=%s", qid, r->site);
    qe->n_final[REG_Q_EXPIRED]++;
    query_landed(qe, r->query_id, r->site_id, r->seq, complete, qid);
}

/* Sends past their deadline end as "timeout". */
static void time_out_sends(struct query_engine *qe, uint64_t now_ms)
{
    char detail[DETAIL_LEN];
    struct qsend *s;

    /* Cancelling a stream may make nghttp2 close other streams of the same
     * tunnel at once, finishing (freeing) their sends: qe->tick_next is
     * moved on by send_free, so it is always a live send or NULL. */
    assert(qe->tick_next == NULL);
    for (s = TAILQ_FIRST(&qe->inflight); s != NULL; s = qe->tick_next) {
        qe->tick_next = TAILQ_NEXT(s, link);
        if (now_ms < s->deadline_ms)
            continue;
        if (s->ts != NULL) {
            struct tstream *ts = s->ts;
            s->ts = NULL;
            tunnel_stream_cancel(ts);
        }
        snprintf(detail, sizeof(detail), "no answer within timeout_s (%lld s)",
                 (long long)s->timeout_s);
        query_send_finish(s, REG_Q_TIMEOUT, detail, 0);
    }
    qe->tick_next = NULL;
}

static void tick_cb(uv_timer_t *timer)
{
    struct query_engine *qe = timer->data;
    uint64_t now_ms = uv_now(qe->h->loop);
    int64_t now = hub_now();
    size_t n;
    int rc;

    time_out_sends(qe, now_ms);
    if (qe->next_expiry != 0 && now > qe->next_expiry) {
        do {
            rc = registry_query_expire(qe->st, now, EXPIRE_BATCH, expired_cb, qe, &n);
        } while (rc == 0 && n == EXPIRE_BATCH);
        if (rc != 0)
            log_event(LOG_ERROR, "query_store_failed", "op=expire error=%s", log_q(strerror(-rc)));
        registry_query_next_expiry(qe->st, &qe->next_expiry);
    }
    query_flush_kick(qe);
    if (now_ms - qe->last_keepalive_ms >= 1000) {
        qe->last_keepalive_ms = now_ms;
        query_keepalive(qe, now_ms);
    }
}

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
    STAILQ_INIT(&qe->land);
    STAILQ_INIT(&qe->wakes);
    TAILQ_INIT(&qe->inflight);
    TAILQ_INIT(&qe->dead);
    for (size_t b = 0; b < WATCH_BUCKETS; b++)
        LIST_INIT(&qe->watch[b]);
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
    qe->n_final[REG_Q_ERROR] += (uint64_t)n;
    uv_timer_init(h->loop, &qe->tick);
    uv_idle_init(h->loop, &qe->flush);
    qe->tick.data = qe->flush.data = qe;
    qe->open_handles = 2;
    uv_timer_start(&qe->tick, tick_cb, TICK_MS, TICK_MS);
    qe->sub.site_online = query_site_online;
    qe->sub.arg = qe;
    events_subscribe(&h->subs, &qe->sub);
    h->qe = qe;
    return 0;
}

void query_shutdown(struct hub *h)
{
    struct query_engine *qe = h->qe;

    if (qe == NULL)
        return;
    events_unsubscribe(&qe->sub);
    /* Waiters first: their connections are closing and get no answer. */
    query_waiters_shutdown(qe);
    query_delivery_shutdown(qe, "the hub shut down while the query ran (not resent: the site may "
                                "have acted on it)");
    h->qe = NULL;
    registry_query_close(qe->st);
    qe->st = NULL;
    uv_timer_stop(&qe->tick);
    uv_idle_stop(&qe->flush);
    uv_close((uv_handle_t *)&qe->tick, engine_close_cb);
    uv_close((uv_handle_t *)&qe->flush, engine_close_cb);
}

void query_stats(struct hub *h, struct query_stats *out)
{
    struct query_engine *qe = h->qe;

    memset(out, 0, sizeof(*out));
    out->queued = out->sent = -1;
    if (qe == NULL)
        return;
    out->running = 1;
    out->submitted = qe->n_submitted;
    out->completed = qe->n_completed;
    out->deliveries = qe->n_deliveries;
    memcpy(out->final, qe->n_final, sizeof(out->final));
    if (registry_query_open_counts(qe->st, &out->queued, &out->sent) != 0)
        out->queued = out->sent = -1;
}
