/* Inside the query engine: its state and the calls between engine, delivery, waiters, submit,
 * cancel and views. */
/* SPDX-License-Identifier: MIT */
/*
 * Only included by the files of hub/query/. Every per-site result moves
 * queued -> sent -> done|error|timeout, or queued -> expired|cancelled, or
 * is skipped from the start (sent -> queued only when the site refused the
 * stream, sent -> cancelled if the query was cancelled then), and each move
 * is committed to SQLite before the hub acts on it (a request leaves only
 * after its "sent" is on disk). A result that was "sent" when its tunnel died
 * or the hub stopped is never resent: the site may have acted on it
 * (docs/queries.md, "Exactly once").
 *
 * Who calls whom (all on the loop thread):
 *   submit.c  -> delivery.c (send_start) ; views.c -> waiters.c (wait, stream)
 *   cancel.c  -> store (queued -> cancelled) -> delivery.c (wake later)
 *   tunnel callbacks -> delivery.c (send_finish -> land) ; the flush idle ->
 *   land_flush -> waiters.c (landed) ; engine.c tick -> delivery.c (time
 *   out), waiters.c (keepalive), landed (expiry).
 * Results are committed and waiters woken from the flush idle or the tick,
 * never from inside a tunnel call made by the engine itself.
 */
#ifndef TETHER_QUERY_INT_H
#define TETHER_QUERY_INT_H

#include <assert.h>
#include <jansson.h>
#include <stdint.h>
#include <sys/queue.h>

#include "../../common/buf.h"
#include "../proxy/fwd.h"
#include "query.h"
#include "submit.h"

#define TICK_MS          500
#define KEEPALIVE_MS     15000
#define BODY_MAX_DEFAULT (1u << 20)
#define LIST_DEFAULT     50
#define LIST_MAX         500
#define WAIT_MAX_S       3600
#define HDR_COUNT_MAX    64
#define HDR_NAME_MAX     128
#define HDR_VALUE_MAX    8192
#define EXPIRE_BATCH     1000
#define WATCH_BUCKETS    256
#define SSE_BACKLOG_MAX  (64u << 20)
#define DELIVER_MAX      1000000
#define DETAIL_LEN       QUERY_DETAIL_LEN
#define LAND_BATCH       256

/* A request body shared by every site of one fan-out. */
struct qbody {
    size_t refs;
    size_t len;
    uint8_t data[];
};

/* One result in flight over a tunnel; on qe->inflight from send_start until
 * send_free. */
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
    char *headers_json;  /* owned: the head's fields as a JSON object; NULL until the head */
    char site_error[32]; /* the site's own "tether-error" code, if any */
    struct buf body;
    size_t body_max;
    struct qbody *req; /* shared reference */
    size_t req_off;
    /* Set while tunnel_stream_open runs: a stream error it reports at once
     * is kept here and acted on when the open has returned. */
    int opening;
    int early_error; /* enum tstream_err + 1; 0 none */
    TAILQ_ENTRY(qsend) link;
};
TAILQ_HEAD(qsend_list, qsend);

enum wkind { W_WAIT, W_EVENTS };

/* A GET ?wait= or an events stream waiting for results of one query. */
struct waiter {
    struct query_engine *qe;
    struct qwatch *w; /* the one watch whose list holds it; NULL once detached */
    struct ureq *r;   /* NULL once answered or aborted */
    enum wkind kind;
    int64_t last_seq;
    uint64_t last_write_ms;
    int has_timer;
    /* Finished while a notification ran: on qe->dead, freed by notify_end. */
    int dead;
    uv_timer_t timer;
    TAILQ_ENTRY(waiter) link;      /* in w->waiters (or a detached list) */
    TAILQ_ENTRY(waiter) dead_link; /* in qe->dead while dead */
};
TAILQ_HEAD(waiter_list, waiter);

/* The waiters of one query, found by its row id. Freed with its last waiter. */
struct qwatch {
    int64_t query_id;
    int64_t seen_seq; /* the highest seq its waiters were told of */
    char qid[REG_QID_LEN + 1];
    struct waiter_list waiters;
    size_t n_waiters; /* the length of waiters */
    LIST_ENTRY(qwatch) link;
};
LIST_HEAD(qwatch_list, qwatch);

/* A final result waiting for the next batched commit. */
struct qland {
    STAILQ_ENTRY(qland) link;
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
STAILQ_HEAD(qland_list, qland);

/* A result made final outside the flush (a cancel, committed by its API
 * call): its waiters are woken from the flush idle, like the others. */
struct qwake {
    STAILQ_ENTRY(qwake) link;
    int64_t query_id, site_id, seq;
    int complete;
    char qid[REG_QID_LEN + 1];
};
STAILQ_HEAD(qwake_list, qwake);

/* All of the engine's state: nothing in hub/query/ is global, so that two
 * hubs can run in one process. Owned by struct hub (h->qe). */
struct query_engine {
    struct hub *h;
    struct reg_qstore *st; /* owned */
    uv_timer_t tick;
    uv_idle_t flush; /* commits landed results once per loop turn */
    int flush_on;
    int open_handles; /* the engine is freed when both handles are closed */
    struct qland_list land;
    size_t n_land;
    struct qwake_list wakes; /* committed, waiters not yet told */
    struct qsend_list inflight;
    size_t n_inflight;
    /* The next send the tick looks at: send_free moves it on when it frees
     * that send (a tunnel call may finish other sends at once). */
    struct qsend *tick_next;
    struct qwatch_list watch[WATCH_BUCKETS];
    int64_t next_expiry; /* smallest expires_at of a queued result; 0 none */
    size_t body_max;
    int in_notify; /* > 0 while waiters are being written to */
    struct waiter_list dead;
    size_t n_dead;
    uint64_t last_keepalive_ms;
    struct events_sub sub; /* site online: deliver what waits */
    /* For /metrics (query_stats): since the engine started. */
    uint64_t n_submitted, n_completed, n_deliveries;
    uint64_t n_final[REG_Q_NSTATUS]; /* results that reached each final state */
};

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

/* engine.c */
/* 1 if the engine runs; else answers r with 503 and returns 0. */
int query_engine_up(struct hub *h, struct ureq *r);

/* delivery.c */
/* The tunnel has said hello and the hub is not draining. */
int query_tunnel_ready(struct hub *h, struct tunnel *t);
int query_qreq_init(struct qreq *rq, const struct reg_query *q);
void query_qreq_clear(struct qreq *rq);
/* Opens the stream of an already "sent" result. 0, or <0 if nothing left. */
int query_send_start(struct query_engine *qe, struct tunnel *t, struct qreq *rq, int64_t site_id,
                     const char *site);
/* Queues the final state of s for the next commit and frees s. */
void query_send_finish(struct qsend *s, int status, const char *detail, int keep_body);
/* Commits up to LAND_BATCH landed results; 0 or <0 (they stay queued). */
int query_land_flush(struct query_engine *qe);
/* Makes sure the flush idle runs while results or wakes wait. */
void query_flush_kick(struct query_engine *qe);
/* Queues the wake of a committed final result (query_landed's arguments)
 * for the flush idle; 0 or -ENOMEM. */
int query_wake_later(struct query_engine *qe, const struct reg_qresult *r, int complete,
                     const char *qid);
/* The events subscriber: a site came online. */
void query_site_online(void *arg, struct tunnel *t);
/* Ends every send as "error" with why, commits what it can, frees the rest. */
void query_delivery_shutdown(struct query_engine *qe, const char *why);

/* waiters.c */
/* A result became final (seq is its arrival number): wake the waiters. */
void query_landed(struct query_engine *qe, int64_t query_id, int64_t site_id, int64_t seq,
                  int complete, const char *qid);
/* Results of query_id other hubs committed past what the watch saw: told
 * to its waiters like local ones (no query_complete line: the hub that
 * completed it logs that). */
void query_landed_elsewhere(struct query_engine *qe, int64_t query_id);
/* Writes an SSE comment to streams silent for KEEPALIVE_MS. */
void query_keepalive(struct query_engine *qe, uint64_t now_ms);
/* Makes r wait for q (kind), answered by landed or its timer; NULL if out
 * of memory (r not answered). wait_ms: the timer of a W_WAIT; 0 for W_EVENTS. */
struct waiter *query_waiter_new(struct query_engine *qe, struct ureq *r, const struct reg_query *q,
                                enum wkind kind, uint64_t wait_ms);
/* Forgets every waiter without answering (their connections are closing). */
void query_waiters_shutdown(struct query_engine *qe);
/* "event: NAME" frame; malloc'ed text or NULL. */
char *query_event_text(const char *event, json_t *data, int64_t id);
/* The "done" frame of a complete query; malloc'ed or NULL. */
char *query_done_text(struct query_engine *qe, int64_t query_id, const char *qid);

/* views.c */
/* Loads the query qid names into q if a may see it: 0, or -ENOENT (an
 * invalid id, an unknown query or another user's), or another <0. q is
 * clear on failure. */
int query_get_visible(struct query_engine *qe, const struct auth *a, const char *qid,
                      struct reg_query *q);
/* "running", "complete" or "cancelled" (static). */
const char *query_status_text(const struct reg_query *q);
/* The query with its results as GET shows it; a new reference or NULL. */
json_t *query_view(struct query_engine *qe, const struct reg_query *q);
json_t *query_result_json(const struct reg_qresult *r);
json_t *query_counts_json(const int64_t counts[REG_Q_NSTATUS]);
/* The query qid as the API shows it, with results; malloc'ed text or NULL. */
char *query_full_text(struct query_engine *qe, const char *qid, size_t *len);

#endif
