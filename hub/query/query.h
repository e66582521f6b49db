/* Federated queries: one question fanned out to many sites over their tunnels, kept in SQLite. */
/* SPDX-License-Identifier: MIT */
#ifndef TETHER_QUERY_H
#define TETHER_QUERY_H

#include <jansson.h>

#include "../auth/auth.h"
#include "../core/hub.h"
#include "../tunnel/tunnel.h"
#include "../http/user.h"
#include "../store/registry_query.h"

/* Sets up the query engine (h->qe): recovers queries left by a previous run
 * and starts its timers. 0 or a negative code. */
int query_init(struct hub *h);
/* Stops timers and frees the engine; after the loop has ended its handles
 * must have been closed (it closes them itself). */
void query_shutdown(struct hub *h);

/* Hubs sharing one registry (docs/scale-out.md): another hub made query
 * query_id with results queued for sites; those whose tunnel is on this
 * hub get it now (the registry's conditional mark makes each delivery
 * happen once, whichever hub tries). */
void query_remote_made(struct hub *h, int64_t query_id);
/* Another hub committed final results of query_id: this hub's waiters on
 * it (?wait, SSE) read them. */
void query_remote_results(struct hub *h, int64_t query_id);
/* The engine's counters, for /metrics. */
struct query_stats {
    int running;                   /* the engine runs (else the rest is 0) */
    uint64_t submitted, completed; /* queries, since the hub started */
    uint64_t deliveries;           /* results sent to their site */
    uint64_t final[REG_Q_NSTATUS]; /* results that reached each final state */
    int64_t queued, sent;          /* results waiting, in flight: from the registry; -1 unread */
};
void query_stats(struct hub *h, struct query_stats *out);
/* The routes of /v1/queries, for the API's router. Each answers r (or
 * installs a handler that will); a is the checked caller, borrowed for the
 * call. qid is the path segment as sent: an invalid one is a 404. */
void query_api_submit(struct hub *h, struct ureq *r, const struct auth *a); /* POST /v1/queries */
void query_api_list(struct hub *h, struct ureq *r, const struct auth *a);   /* GET /v1/queries */
/* GET /v1/queries/{qid} */
void query_api_show(struct hub *h, struct ureq *r, const struct auth *a, const char *qid);
/* GET /v1/queries/{qid}/events */
void query_api_events(struct hub *h, struct ureq *r, const struct auth *a, const char *qid);
/* POST /v1/queries/{qid}/cancel, for the API's change flow, which audits
 * and answers: a (borrowed; the submitter's token or an admin) cancels the
 * query qid names. Its results not yet sent become "cancelled"; those sent
 * finish as they will. Returns the HTTP status: 200 with *answer (the query
 * as GET shows it; a new reference) and msg what the audit row adds; else
 * *code (static) and msg, the error's detail (404 unknown or another
 * user's, 409 complete, already cancelled or nothing left unsent). */
int query_cancel(struct hub *h, const struct auth *a, const char *qid, json_t **answer,
                 const char **code, char *msg, size_t cap);
#endif
