/* The API's state changes: read the body, run the change, audit (one row) and answer. */
/* SPDX-License-Identifier: MIT */
#include "api_int.h"

#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/log.h"
#include "../auth/audit.h"
#include "../http/apijson.h"
#include "../http/body.h"

void outcome_fail(struct outcome *o, int status, const char *code, const char *fmt, ...)
{
    va_list ap;

    assert(status >= 400);
    o->status = status;
    o->code = code;
    json_decref(o->body);
    o->body = NULL;
    va_start(ap, fmt);
    vsnprintf(o->detail, sizeof(o->detail), fmt, ap);
    va_end(ap);
}

void outcome_succeed(struct outcome *o, int status, json_t *body)
{
    assert(status >= 200 && status < 400);
    o->status = status;
    o->code = NULL;
    json_decref(o->body);
    o->body = body;
}

/* The storage failing (disk full, I/O error, locked) is no fault of the
 * request and passes: 503, so a client tries again later; anything else is
 * the hub's own failure. */
void outcome_fail_store(struct outcome *o, int rc, const char *what)
{
    const char *why = registry_storage_error(rc);

    if (why != NULL)
        outcome_fail(o, 503, "storage_unavailable", "%s: %s; try again later", what, why);
    else
        outcome_fail(o, 500, "internal", "%s", what);
}

void api_error_store(struct ureq *r, int rc, const char *what)
{
    const char *why = registry_storage_error(rc);
    char d[200];

    if (why == NULL) {
        ureq_error(r, 500, "internal", what);
        return;
    }
    snprintf(d, sizeof(d), "%s: %s; try again later", what, why);
    ureq_error(r, 503, "storage_unavailable", d);
}

int outcome_only_keys(json_t *body, const char *const *keys, struct outcome *o)
{
    const char *bad = NULL;

    if (apijson_only_keys(body, keys, &bad))
        return 0;
    outcome_fail(o, 400, "bad_request", "unknown field \"%.40s\"", bad);
    return -1;
}

static const char *code_for(int status)
{
    switch (status) {
    case 400:
        return "bad_request";
    case 401:
        return "unauthorized";
    case 403:
        return "forbidden";
    case 404:
        return "not_found";
    case 409:
        return "name_taken";
    case 413:
        return "too_large";
    default:
        return "internal";
    }
}

void outcome_conclude(struct hub *h, struct ureq *r, struct outcome *o)
{
    const char *result;

    assert(o->action != NULL);
    assert(o->status >= 200 && o->status <= 599);
    result = o->status < 400 ? "ok" : (o->code ? o->code : code_for(o->status));
    struct audit_row row = {o->actor, r->remote, o->action, o->target, result, o->detail};

    /* Tokens or sites may have changed: drop cached reads. A 5xx may follow
     * a write that was stored (a lost COMMIT reply, a read-back that
     * failed), so it forgets too. */
    if (o->status < 400 || o->status >= 500) {
        h->gen++;
        auth_forget(h, o->target);
    }
    audit_write(h, &row, AUDIT_SYNC);
    /* A 4xx is the caller's to read; a 5xx is the hub's, and its operator's. */
    if (o->status >= 500)
        log_event(LOG_WARN, "api_failed", "action=%s target=%s by=%s status=%d code=%s detail=%s",
                  o->action, o->target, o->actor, o->status, result, o->detail);
    if (o->status >= 400) {
        ureq_error(r, o->status, o->code ? o->code : code_for(o->status), o->detail);
    } else if (o->body != NULL) {
        apijson_respond(r, o->status, o->body);
        o->body = NULL;
    } else {
        ureq_respond(r, o->status, NULL, "", 0);
    }
    json_decref(o->body);
    o->body = NULL;
    /* Dashboards watching GET /v1/events re-read the site. */
    if (o->status < 400 && strncmp(o->action, "site.", 5) == 0 && o->target[0] != '\0')
        events_site(&h->subs, EVENTS_SITE_CHANGED, o->target);
}

void outcome_init(struct outcome *o, const struct api_route *route, const struct auth *a,
                  const char *target)
{
    assert(route->change != NULL && route->action != NULL);
    memset(o, 0, sizeof(*o));
    o->action = route->action;
    o->status = 500;
    o->code = "internal";
    snprintf(o->detail, sizeof(o->detail), "not handled");
    if (a != NULL && a->name[0] != '\0')
        snprintf(o->actor, sizeof(o->actor), "%s", a->name);
    else if (route->role == ROLE_NONE && target != NULL && target[0] != '\0')
        snprintf(o->actor, sizeof(o->actor), "site:%s", target); /* the site proves itself */
    snprintf(o->target, sizeof(o->target), "%s", target ? target : "");
}

int api_find_site(struct hub *h, const struct auth *a, const char *name, struct reg_site *s,
                  struct outcome *o, int cached)
{
    int rc;

    memset(s, 0, sizeof(*s));
    rc = cached ? auth_site_get(h, name, s) : registry_site_get(h->reg, name, s);
    if (rc == 0 && auth_site_allowed(a, s))
        return 0;
    registry_site_clear(s);
    if (rc != 0 && rc != -ENOENT)
        outcome_fail_store(o, rc, "registry read failed");
    else if (a != NULL && !a->admin && a->scope_json != NULL)
        outcome_fail(o, 403, "forbidden", "this token may not use that site");
    else
        outcome_fail(o, 404, "not_found", "no such site");
    return -1;
}

const char *api_query_of(const char *target)
{
    const char *p = strchr(target, '?');

    return p ? p + 1 : NULL;
}

int64_t api_parse_nonneg(const char *s)
{
    int64_t v = 0;

    if (*s == '\0' || strlen(s) > 18)
        return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return -1;
        v = v * 10 + (*s - '0');
    }
    return v;
}

static void areq_free(struct areq *q)
{
    auth_clear(&q->auth);
    free(q);
}

/* The body has been read (http/body.h): run the change and conclude. */
static void a_done(struct ureq *r, void *arg, enum body_status st, const uint8_t *data, size_t len)
{
    struct areq *q = arg;
    json_t *body = NULL;
    struct outcome o;
    char msg[256];

    if (st == BODY_ABORTED)
        goto free;
    outcome_init(&o, q->route, &q->auth, q->qid[0] != '\0' ? q->qid : q->name);
    if (st == BODY_TOO_LARGE)
        outcome_fail(&o, 413, "too_large", "request body too large");
    else if (st == BODY_NO_MEMORY)
        outcome_fail(&o, 500, "internal", "out of memory");
    else if (apijson_parse_object(data, len, 1, &body, msg, sizeof(msg)) != 0)
        outcome_fail(&o, 400, "bad_request", "%s", msg);
    else
        q->route->change(q, body, &o);
    outcome_conclude(q->h, r, &o);
    json_decref(body);
free:
    areq_free(q);
}

void api_change(struct hub *h, struct ureq *r, const struct api_route *route, struct auth *a,
                const struct api_match *m)
{
    struct areq *q;

    assert(route->change != NULL);
    q = calloc(1, sizeof(*q));
    if (q == NULL) {
        ureq_error(r, 500, "internal", "out of memory");
        return;
    }
    q->h = h;
    q->route = route;
    q->id = m->id;
    if (a != NULL) {
        q->auth = *a;
        a->scope_json = NULL; /* moved */
        a->services_json = NULL;
    }
    snprintf(q->name, sizeof(q->name), "%s", m->name);
    snprintf(q->qid, sizeof(q->qid), "%s", m->qid);
    snprintf(q->remote, sizeof(q->remote), "%s", r->remote);
    if (body_read(r, h->cfg.api_body_max, a_done, q) != 0) {
        areq_free(q);
        ureq_error(r, 500, "internal", "out of memory");
    }
}
