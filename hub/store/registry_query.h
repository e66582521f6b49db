/* Registry part for federated queries: the queries and their per-site results in SQLite. */
/* SPDX-License-Identifier: MIT */
#ifndef TETHER_REGISTRY_QUERY_H
#define TETHER_REGISTRY_QUERY_H

#include <stddef.h>
#include <stdint.h>

#include "registry.h"

/* "q_" + 22 base64url characters. */
#define REG_QID_LEN 24

/* Per-site result states (docs/queries.md). queued and sent are open; the
 * others are final and never change again. */
enum reg_qstatus {
    REG_Q_QUEUED = 0,
    REG_Q_SENT,
    REG_Q_DONE,
    REG_Q_ERROR,
    REG_Q_TIMEOUT,
    REG_Q_EXPIRED,
    REG_Q_SKIPPED,   /* picked by "*" or labels, but the site does not offer the service */
    REG_Q_CANCELLED, /* not yet sent when the query was cancelled */
    REG_Q_NSTATUS
};
/* "queued", ... ; static strings, "unknown" out of range. */
const char *registry_query_status_name(int status);
/* The status named s (>= 0), or -EINVAL for NULL or any other text. */
int registry_query_status_parse(const char *s);
int registry_query_status_final(int status);

/* A query. Strings and the body are heap copies owned by the struct, freed
 * by registry_query_clear(); in calls that take a query they are borrowed. */
struct reg_query {
    int64_t id; /* row id; set by registry_query_create */
    char qid[REG_QID_LEN + 1];
    int64_t created_at;
    int64_t token_id;
    char actor[64];
    char remote[64];
    char *target_json; /* the "sites" selector as given */
    char service[64];
    char method[17];
    char *path;
    char *headers_json; /* JSON object */
    uint8_t *body;
    size_t body_len;
    int64_t timeout_s, ttl_s, expires_at;
    int64_t n_sites, n_final, completed_at; /* completed_at 0 while open */
    int64_t cancelled_at;                   /* 0: not cancelled */
};
void registry_query_clear(struct reg_query *q);

/* One site's result. Every pointer is borrowed: from the caller when it is an
 * argument, from the registry (valid during the callback only) when it is
 * passed to a callback. */
struct reg_qresult {
    int64_t query_id;
    int64_t site_id;
    const char *site;
    int status;               /* enum reg_qstatus */
    int http_status;          /* 0 = none */
    const char *headers_json; /* NULL = none */
    const uint8_t *body;      /* NULL = none */
    size_t body_len;
    const char *detail;                /* NULL or "" = none; cut to 1024 bytes */
    int64_t latency_ms;                /* -1 = none */
    int64_t sent_at, finished_at, seq; /* 0 = none */
};

/* Cached statements on the registry's connection. Close before
 * registry_close(). */
struct reg_qstore;
int registry_query_open(struct registry *r, struct reg_qstore **out);
void registry_query_close(struct reg_qstore *s);

/* Error codes as in registry.h: -ENOENT not found (or not in the expected
 * state), -EINVAL constraint, -EBUSY locked, -EIO other. */

/* Stores a query and one result per target in one transaction. q->id is set.
 * Each target gives site_id, site, status and (for final states) detail;
 * final targets get seq 1, 2, ... in the order given, finished_at = now. */
int registry_query_create(struct reg_qstore *s, struct reg_query *q,
                          const struct reg_qresult *targets, size_t n, int64_t now);

/* queued -> sent (committed before the request leaves). -ENOENT if the result
 * was not queued. */
int registry_query_mark_sent(struct reg_qstore *s, int64_t query_id, int64_t site_id, int64_t now);
/* The same for n queries of one site in one transaction: ok[i] = 1 if
 * query_ids[i] moved to sent. 0 when committed, else <0 and nothing moved. */
int registry_query_mark_sent_many(struct reg_qstore *s, int64_t site_id, const int64_t *query_ids,
                                  size_t n, int64_t now, int *ok);
/* sent -> queued, for a request known not to have reached the site.
 * -ECANCELED (nothing changed) if the query has been cancelled: the caller
 * finishes the result as cancelled instead. */
int registry_query_requeue(struct reg_qstore *s, int64_t query_id, int64_t site_id);
/* from (queued or sent) -> r->status (final), with r's fields, seq and the
 * query's completion in the same transaction. *seq gets the arrival number,
 * *complete 1 if this was the query's last open result. -ENOENT if the
 * result was not in state from. */
int registry_query_finish(struct reg_qstore *s, const struct reg_qresult *r, int from, int64_t *seq,
                          int *complete);
/* n such transitions in one transaction (one disk flush for a burst of
 * results). Per item: rcs[i] (0 or -ENOENT), seqs[i], completes[i]. Returns 0
 * when committed, else <0 and nothing changed. */
int registry_query_finish_many(struct reg_qstore *s, const struct reg_qresult *rs, const int *from,
                               size_t n, int64_t *seqs, int *completes, int *rcs);

/* Start-up: every result this hub sent (a previous run died with it in
 * flight) becomes error with this detail, and those sent before hubs were
 * named (007); other hubs' are theirs. *n gets the count. */
int registry_query_fail_sent(struct reg_qstore *s, const char *detail, int64_t now, int64_t *n);

/* Queued results whose expires_at < now become expired, at most max per
 * call, in one transaction. cb runs after the commit for each, with the
 * result's query_id, site_id, site and seq set, the query's public id, and
 * complete as above. *n gets the count. */
typedef void (*registry_qexpired_cb)(const struct reg_qresult *r, const char *qid, int complete,
                                     void *arg);
int registry_query_expire(struct reg_qstore *s, int64_t now, size_t max, registry_qexpired_cb cb,
                          void *arg, size_t *n);
/* Cancels query_id: every queued result becomes cancelled (with detail)
 * and the query's cancelled_at is set to now, in one transaction; sent ones
 * are left to finish. cb runs after the commit for each, as for expiry.
 * *n gets the count; with none queued nothing changes (*n = 0). */
int registry_query_cancel(struct reg_qstore *s, int64_t query_id, const char *detail, int64_t now,
                          registry_qexpired_cb cb, void *arg, size_t *n);
/* Smallest expires_at among queued results; 0 when none is queued. */
int registry_query_next_expiry(struct reg_qstore *s, int64_t *out);

/* The queued results of a site that may still be delivered at now (expires_at
 * >= now), oldest query first, at most max: *out gets a malloc'ed array of
 * *n full queries (clear each, then free the array). */
int registry_query_queued_for_site(struct reg_qstore *s, int64_t site_id, int64_t now, size_t max,
                                   struct reg_query **out, size_t *n);

/* Query by public id; -ENOENT if unknown. The body is not loaded. */
int registry_query_get(struct reg_qstore *s, const char *qid, struct reg_query *out);

/* Results of a query. order_by_seq=0: every result by site name;
 * order_by_seq=1: final results with seq > after_seq in arrival order. Stop
 * early by returning non-zero from cb (that value is returned). */
typedef int (*registry_qresult_cb)(const struct reg_qresult *r, void *arg);
int registry_query_results(struct reg_qstore *s, int64_t query_id, int order_by_seq,
                           int64_t after_seq, registry_qresult_cb cb, void *arg);
/* One result; -ENOENT if none. */
int registry_query_result(struct reg_qstore *s, int64_t query_id, int64_t site_id,
                          registry_qresult_cb cb, void *arg);
/* counts[status] for one query. */
int registry_query_counts(struct reg_qstore *s, int64_t query_id, int64_t counts[REG_Q_NSTATUS]);

/* A site connected to this hub: the results another hub of the cluster
 * had sent it and not finished (that hub died or lost the tunnel; the
 * site holds one tunnel at a time) become error with detail, not sent
 * again; cb as for expire, after the commit. Nothing with one hub
 * (registry_use_hub not called). *n gets the count. */
int registry_query_fail_elsewhere(struct reg_qstore *s, int64_t site_id, const char *detail,
                                  int64_t now, registry_qexpired_cb cb, void *arg, size_t *n);
/* The sites with a result of query_id still queued: *ids (malloc'ed, the
 * caller frees it; NULL when none) and *n. */
int registry_query_queued_sites(struct reg_qstore *s, int64_t query_id, int64_t **ids, size_t *n);

/* Results waiting for their site (queued) and sent but not final, over
 * all queries: the delivery queue's depth and what is in flight. */
int registry_query_open_counts(struct reg_qstore *s, int64_t *queued, int64_t *sent);

/* History, newest first: queries with id < before_id (0 = from the newest),
 * of token_id only unless it is 0, at most limit. Bodies are not loaded. The
 * struct passed to cb is valid during the call only. */
typedef int (*registry_query_cb)(const struct reg_query *q, void *arg);
int registry_query_list(struct reg_qstore *s, int64_t token_id, int64_t before_id, int limit,
                        registry_query_cb cb, void *arg);

#endif
