/* Query cancel: the results of a query not yet sent become cancelled; those sent finish. */
/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/log.h"
#include "../store/registry_query.h"
#include "query_int.h"

/* After the commit, for each result cancelled (registry_qexpired_cb). */
static void cancelled_cb(const struct reg_qresult *r, const char *qid, int complete, void *arg)
{
    struct query_engine *qe = arg;

    qe->n_final[REG_Q_CANCELLED]++;
    /* Committed either way: without memory only its waiters miss it (a
     * GET shows it). */
    if (query_wake_later(qe, r, complete, qid) != 0)
        log_event(LOG_ERROR, "query_wake_lost", "id=%s site=%s error=\"out of memory\"", qid,
                  r->site);
}

/* Why q cannot be cancelled (a 409's detail), given its counts. */
static void refusal(const struct reg_query *q, const int64_t counts[REG_Q_NSTATUS], char *msg,
                    size_t cap)
{
    if (q->n_final == q->n_sites && q->cancelled_at != 0)
        snprintf(msg, cap, "query %s was already cancelled", q->qid);
    else if (q->n_final == q->n_sites)
        snprintf(msg, cap, "query %s is already complete: there is nothing left to cancel", q->qid);
    else if (q->cancelled_at != 0)
        snprintf(msg, cap,
                 "query %s was already cancelled; the %lld site(s) that had it may still answer",
                 q->qid, (long long)counts[REG_Q_SENT]);
    else
        snprintf(msg, cap,
                 "every site still open already has query %s (%lld sent): a request that has "
                 "left cannot be called back; their results land within timeout_s",
                 q->qid, (long long)counts[REG_Q_SENT]);
}

int query_cancel(struct hub *h, const struct auth *a, const char *qid, json_t **answer,
                 const char **code, char *msg, size_t cap)
{
    struct query_engine *qe = h->qe;
    int64_t counts[REG_Q_NSTATUS];
    struct reg_query q;
    char detail[160];
    size_t n = 0;
    int rc, status = 500;

    *answer = NULL;
    *code = "internal";
    memset(&q, 0, sizeof(q));
    if (qe == NULL) {
        *code = "unavailable";
        snprintf(msg, cap, "the query engine is not running");
        return 503;
    }
    rc = query_get_visible(qe, a, qid, &q);
    if (rc == -ENOENT) {
        *code = "not_found";
        snprintf(msg, cap, "no such query");
        return 404;
    }
    if (rc == 0)
        rc = registry_query_counts(qe->st, q.id, counts);
    if (rc != 0) {
        snprintf(msg, cap, "registry read failed");
        goto out;
    }
    if (q.n_final < q.n_sites && q.cancelled_at == 0) {
        snprintf(detail, sizeof(detail), "cancelled by %s before it was sent to this site",
                 a->name);
        rc = registry_query_cancel(qe->st, q.id, detail, hub_now(), cancelled_cb, qe, &n);
        if (rc != 0) {
            const char *why = registry_storage_error(rc);

            if (why != NULL) {
                status = 503;
                *code = "storage_unavailable";
                snprintf(msg, cap, "could not cancel the query: %s; try again later", why);
            } else {
                snprintf(msg, cap, "could not cancel the query");
            }
            log_event(LOG_ERROR, "query_store_failed", "op=cancel id=%s error=%s", q.qid,
                      log_q(strerror(-rc)));
            goto out;
        }
    }
    if (n == 0) {
        status = 409;
        *code = "conflict";
        refusal(&q, counts, msg, cap);
        goto out;
    }
    query_flush_kick(qe);
    log_event(LOG_INFO, "query_cancelled", "id=%s by=%s cancelled=%zu sent=%lld", q.qid, a->name, n,
              (long long)counts[REG_Q_SENT]);
    snprintf(msg, cap, "cancelled=%zu sent=%lld", n, (long long)counts[REG_Q_SENT]);
    registry_query_clear(&q);
    /* Read again: the answer shows the query as it now is. */
    if (registry_query_get(qe->st, qid, &q) == 0)
        *answer = query_view(qe, &q);
    if (*answer == NULL)
        *answer = json_pack("{s:s,s:s}", "id", qid, "status", "running");
    status = 200;
out:
    registry_query_clear(&q);
    return status;
}
