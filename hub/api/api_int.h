/* Inside hub/api only: the outcome/conclude flow of state changes and the handlers' names. */
/* SPDX-License-Identifier: MIT */
#ifndef TETHER_API_INT_H
#define TETHER_API_INT_H

#include <jansson.h>
#include <stdint.h>

#include "../../common/buf.h"
#include "../../common/token.h"
#include "../auth/auth.h"
#include "../core/hub.h"
#include "../http/user.h"
#include "../store/registry_query.h"
#include "router.h"

/* What a state-changing request did: enough to answer it and to audit it. */
struct outcome {
    const char *action; /* static */
    char actor[TOKEN_NAME_MAX + 8];
    char target[160];
    int status;
    const char *code; /* error code when status >= 400; static */
    json_t *body;     /* answer when status < 400; owned; NULL = no body */
    char detail[512]; /* the error's detail, or what the audit row adds on success */
};

/* A state-changing request whose body is read whole (bounded) before it runs. */
struct areq {
    struct hub *h;
    const struct api_route *route; /* static table entry */
    struct auth auth;              /* zero for ROLE_NONE routes; scope owned */
    char name[TOKEN_NAME_MAX + 1]; /* site or token name from the path */
    int64_t id;                    /* enrollment id from the path */
    char qid[REG_QID_LEN + 1];     /* query id from the path */
    char remote[64];
};

/* outcome.c: the flow of state changes. */
void outcome_fail(struct outcome *o, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Takes body's reference (NULL: answer without a body). */
void outcome_succeed(struct outcome *o, int status, json_t *body);
/* A registry error: 503 storage_unavailable if the storage failed, else 500. */
void outcome_fail_store(struct outcome *o, int rc, const char *what);
/* The same for a read answered directly: 503 storage_unavailable when the
 * storage failed, else 500. */
void api_error_store(struct ureq *r, int rc, const char *what);
/* 0 if body has no other key than keys (NULL-ended); else fails o (400). */
int outcome_only_keys(json_t *body, const char *const *keys, struct outcome *o);
/* The one place where a state change is audited (one row) and answered.
 * Audit first, then answer: one row, one answer. o->status must be set. */
void outcome_conclude(struct hub *h, struct ureq *r, struct outcome *o);
/* Starts o for route with actor a (NULL: none) and target. */
void outcome_init(struct outcome *o, const struct api_route *route, const struct auth *a,
                  const char *target);
/* Reads r's body and runs route->change on it, then concludes. a's scope
 * moves into the request (a may be NULL). The role was checked. */
void api_change(struct hub *h, struct ureq *r, const struct api_route *route, struct auth *a,
                const struct api_match *m);
/* Loads a site a may use (cached: through the read cache, for the request
 * path). A scoped token gets 403 for any site outside its scope, existing or
 * not. 0, or fills o's error and returns -1. */
int api_find_site(struct hub *h, const struct auth *a, const char *name, struct reg_site *s,
                  struct outcome *o, int cached);
/* Why the hub does not take traffic (static: "draining", ...), or NULL
 * when it does: /readyz's answer and /metrics' tether_ready. */
const char *api_unready(struct hub *h);
/* The query string of a request target (after '?'), or NULL. */
const char *api_query_of(const char *target);
/* A non-negative decimal integer of at most 18 digits; -1 if not one. */
int64_t api_parse_nonneg(const char *s);

/* hubs.c: where the cluster's sites are connected, as the registry and
 * this hub's peer links say. */
struct where_hub {
    int64_t id;
    char name[254];
    char pin[CRYPTO_PIN_LEN + 1];
    int64_t joined_at;
    json_t *public; /* owned: its endpoints, a JSON array */
};
struct site_where {
    int64_t self;           /* this hub's id */
    struct where_hub *hubs; /* owned; the active hubs */
    size_t n_hubs;
    struct reg_session *open; /* owned; open sessions by site, newest last (cluster only) */
    size_t n, cap;
};
/* Reads the hubs and, on a cluster of several, the open sessions (of
 * site_id only, unless 0). 0, or a registry error with *w empty. */
int where_load(struct hub *h, int64_t site_id, struct site_where *w);
void where_free(struct site_where *w);
const struct where_hub *where_hub(const struct site_where *w, int64_t hub_id);
/* The site's newest open session when it is on another hub that this one's
 * link reaches (so its users are served there), else NULL. Borrowed from w. */
const struct reg_session *where_remote(struct hub *h, const struct site_where *w, int64_t site_id);
void hubs_list(struct hub *h, struct ureq *r, const struct auth *a, const struct api_match *m);

/* sites.c */
/* Waits (boundedly) for the connect and disconnect records queued so far:
 * a read of sites or hubs then shows what the user just saw happen. */
void api_read_records(struct hub *h);
void sites_list(struct hub *h, struct ureq *r, const struct auth *a, const struct api_match *m);
void site_show(struct hub *h, struct ureq *r, const struct auth *a, const struct api_match *m);
void site_create(struct areq *q, json_t *body, struct outcome *o);
void site_patch(struct areq *q, json_t *body, struct outcome *o);
void site_remove(struct areq *q, json_t *body, struct outcome *o);
void site_revoke(struct areq *q, json_t *body, struct outcome *o);
void site_enroll_token(struct areq *q, json_t *body, struct outcome *o);
/* Checks a labels object (values: strings, or null where nulls_ok). */
int site_labels_check(json_t *labels, int nulls_ok, struct outcome *o);

/* rotate.c */
void site_rotate(struct areq *q, json_t *body, struct outcome *o);

/* enroll.c */
void enroll(struct areq *q, json_t *body, struct outcome *o);
void enrollments_list(struct hub *h, struct ureq *r, const struct auth *a,
                      const struct api_match *m);
void enrollment_cancel(struct areq *q, json_t *body, struct outcome *o);

/* tokens.c */
void tokens_list(struct hub *h, struct ureq *r, const struct auth *a, const struct api_match *m);
void token_create(struct areq *q, json_t *body, struct outcome *o);
void token_revoke(struct areq *q, json_t *body, struct outcome *o);

/* auditlog.c */
void audit_list(struct hub *h, struct ureq *r, const struct auth *a, const struct api_match *m);

/* The dashboard's files (dashboard.c), open to all: they hold no data. */
void dash_index(struct hub *h, struct ureq *r, const struct auth *a, const struct api_match *m);
void dash_js(struct hub *h, struct ureq *r, const struct auth *a, const struct api_match *m);
void dash_css(struct hub *h, struct ureq *r, const struct auth *a, const struct api_match *m);
/* GET /v1/events: site changes as Server-Sent Events (watch.c). */
void watch_events(struct hub *h, struct ureq *r, const struct auth *a, const struct api_match *m);

/* metrics.c */
void metrics(struct hub *h, struct ureq *r, const struct auth *a, const struct api_match *m);

/* handoff.c: /v1/sites/{site}/services/<rest> to the site's tunnel. */
void proxy_route(struct hub *h, struct ureq *r, const struct auth *a, const struct api_match *m);

#endif
