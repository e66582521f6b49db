/* The hub's HTTP API router: one table of {method, pattern, role, handler}, /healthz and /readyz.
 */
/* SPDX-License-Identifier: MIT */
#include "api.h"
#include "router.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "../http/apijson.h"
#include "../query/query.h"
#include "api_int.h"

static void healthz(struct hub *h, struct ureq *r, const struct auth *a, const struct api_match *m)
{
    ureq_respond(r, h->draining ? 503 : 200, "text/plain", h->draining ? "draining\n" : "ok\n",
                 h->draining ? 9 : 3);
}

const char *api_unready(struct hub *h)
{
    return h->draining                           ? "draining"
           : registry_schema_version(h->reg) < 0 ? "registry unreadable"
           : h->qe == NULL                       ? "query engine not running"
                                                 : NULL;
}

/* Readiness, for a load balancer: 503 while the hub drains or cannot read
 * its registry, with the reason; /healthz only says the process answers. */
static void readyz(struct hub *h, struct ureq *r, const struct auth *a, const struct api_match *m)
{
    const char *why = api_unready(h);

    apijson_respond(r, why ? 503 : 200,
                    json_pack("{s:b,s:s?,s:I}", "ready", why == NULL, "reason", why, "sites_online",
                              (json_int_t)h->tunnels.count));
}

/* The federated query routes (hub/query). */
static void q_submit(struct hub *h, struct ureq *r, const struct auth *a, const struct api_match *m)
{
    query_api_submit(h, r, a);
}

static void q_list(struct hub *h, struct ureq *r, const struct auth *a, const struct api_match *m)
{
    query_api_list(h, r, a);
}

static void q_show(struct hub *h, struct ureq *r, const struct auth *a, const struct api_match *m)
{
    query_api_show(h, r, a, m->qid);
}

static void q_events(struct hub *h, struct ureq *r, const struct auth *a, const struct api_match *m)
{
    query_api_events(h, r, a, m->qid);
}

/* POST /v1/queries/{qid}/cancel: a state change, audited like the others. */
static void q_cancel(struct areq *q, json_t *body, struct outcome *o)
{
    static const char *const keys[] = {NULL};
    json_t *answer = NULL;
    const char *code = NULL;
    char msg[sizeof(o->detail)];
    int status;

    if (outcome_only_keys(body, keys, o) != 0)
        return;
    status = query_cancel(q->h, &q->auth, q->qid, &answer, &code, msg, sizeof(msg));
    if (status < 400) {
        outcome_succeed(o, status, answer);
        snprintf(o->detail, sizeof(o->detail), "%s", msg); /* for the audit row */
    } else {
        outcome_fail(o, status, code, "%s", msg);
    }
}

/* Every route of the API. Routes of one path are listed together, in the
 * order a 405 names their methods. */
static const struct api_route routes[] = {
    {NULL, "/healthz", ROLE_NONE, healthz, NULL, NULL},
    {NULL, "/readyz", ROLE_NONE, readyz, NULL, NULL},
    {"GET", "/", ROLE_NONE, dash_index, NULL, NULL},
    {"GET", "/ui/app.js", ROLE_NONE, dash_js, NULL, NULL},
    {"GET", "/ui/app.css", ROLE_NONE, dash_css, NULL, NULL},
    {"GET", "/v1/events", ROLE_USER, watch_events, NULL, NULL},
    {"POST", "/v1/enroll", ROLE_NONE, NULL, enroll, "site.enroll"},
    {"POST", "/v1/sites/{site}/rotate", ROLE_NONE, NULL, site_rotate, "site.rotate"},
    {"GET", "/metrics", ROLE_ADMIN, metrics, NULL, NULL},
    {"GET", "/v1/queries/?", ROLE_USER, q_list, NULL, NULL},
    {"POST", "/v1/queries/?", ROLE_USER, q_submit, NULL, NULL},
    {"GET", "/v1/queries/{qid}", ROLE_USER, q_show, NULL, NULL},
    {"GET", "/v1/queries/{qid}/events", ROLE_USER, q_events, NULL, NULL},
    {"POST", "/v1/queries/{qid}/cancel", ROLE_USER, NULL, q_cancel, "query.cancel"},
    {"GET", "/v1/sites", ROLE_USER, sites_list, NULL, NULL},
    {"POST", "/v1/sites", ROLE_ADMIN, NULL, site_create, "site.add"},
    {"GET", "/v1/sites/{site}", ROLE_USER, site_show, NULL, NULL},
    {"PATCH", "/v1/sites/{site}", ROLE_ADMIN, NULL, site_patch, "site.update"},
    {"DELETE", "/v1/sites/{site}", ROLE_ADMIN, NULL, site_remove, "site.remove"},
    {"POST", "/v1/sites/{site}/revoke", ROLE_ADMIN, NULL, site_revoke, "site.revoke"},
    {"POST", "/v1/sites/{site}/enroll", ROLE_ADMIN, NULL, site_enroll_token, "site.token"},
    {NULL, "/v1/sites/{site}/services/*", ROLE_USER, proxy_route, NULL, NULL},
    {"GET", "/v1/tokens", ROLE_ADMIN, tokens_list, NULL, NULL},
    {"POST", "/v1/tokens", ROLE_ADMIN, NULL, token_create, "token.create"},
    {"DELETE", "/v1/tokens/{token}", ROLE_ADMIN, NULL, token_revoke, "token.revoke"},
    {"GET", "/v1/enrollments", ROLE_ADMIN, enrollments_list, NULL, NULL},
    {"DELETE", "/v1/enrollments/{id}", ROLE_ADMIN, NULL, enrollment_cancel, "enroll.cancel"},
    {"GET", "/v1/audit", ROLE_ADMIN, audit_list, NULL, NULL},
    {"GET", "/v1/hubs", ROLE_ADMIN, hubs_list, NULL, NULL},
};
#define N_ROUTES (sizeof(routes) / sizeof(routes[0]))

/* How one pattern fared against a path. */
enum fit {
    FIT_NONE,    /* a literal part differs */
    FIT_CAPTURE, /* the literal parts so far fit, a capture does not */
    FIT_PATH,    /* the whole path fits */
};

/* Captures the segment at *p (up to '/', '?' or the end) as kind (the text
 * between '{' and '}', klen bytes); advances *p. */
static int capture(const char *kind, size_t klen, const char **p, struct api_match *m,
                   const char **miss)
{
    size_t n = strcspn(*p, "/?");
    char seg[TOKEN_NAME_MAX + 2];

    if (klen == 3 && strncmp(kind, "qid", 3) == 0) {
        *miss = "no such query";
        if (n != REG_QID_LEN)
            return -1;
        memcpy(m->qid, *p, n);
        m->qid[n] = '\0';
    } else {
        int site = klen == 4 && strncmp(kind, "site", 4) == 0;

        *miss = site ? "no such site" : "no such endpoint";
        if (n == 0 || n >= sizeof(seg))
            return -1;
        memcpy(seg, *p, n);
        seg[n] = '\0';
        if (klen == 2 && strncmp(kind, "id", 2) == 0) {
            if ((m->id = api_parse_nonneg(seg)) < 1)
                return -1;
        } else {
            assert(site || (klen == 5 && strncmp(kind, "token", 5) == 0));
            if (!token_name_valid(seg))
                return -1;
            assert(n < sizeof(m->name)); /* token_name_valid: at most TOKEN_NAME_MAX */
            memcpy(m->name, seg, n + 1);
        }
    }
    *p += n;
    return 0;
}

/* Fits target's path to pattern, filling m's captures; a FIT_CAPTURE sets
 * *miss to what the 404 says. */
static enum fit fit(const char *pattern, const char *target, struct api_match *m, const char **miss)
{
    const char *pat = pattern, *p = target;

    while (*pat != '\0') {
        if (*pat == '*') {
            m->rest = p;
            return FIT_PATH;
        }
        if (*pat == '{') {
            const char *end = strchr(pat, '}');

            assert(end != NULL);
            if (capture(pat + 1, (size_t)(end - pat - 1), &p, m, miss) != 0)
                return FIT_CAPTURE;
            pat = end + 1;
        } else if (pat[0] == '/' && pat[1] == '?' && pat[2] == '\0') {
            if (*p == '/') /* an optional trailing '/' */
                p++;
            pat += 2;
        } else if (*pat++ != *p++) {
            return FIT_NONE;
        }
    }
    return *p == '\0' || *p == '?' ? FIT_PATH : FIT_NONE;
}

/* Appends method to the 405 list: "A", "A or B", "A, B or C". */
static void allow(char *list, size_t cap, const char *method)
{
    char * or = strstr(list, " or ");
    size_t n = strlen(list);

    if (n == 0) {
        snprintf(list, cap, "%s", method);
    } else if (or != NULL) {
        char last[16];

        snprintf(last, sizeof(last), "%s", or +4);
        snprintf(or, cap - (size_t)(or -list), ", %s or %s", last, method);
    } else {
        snprintf(list + n, cap - n, " or %s", method);
    }
}

void router_match(const char *method, const char *target, struct api_match *m)
{
    const char *miss = NULL, *capture_miss = NULL;
    struct api_match t;

    memset(m, 0, sizeof(*m));
    m->status = 404;
    m->detail = "no such endpoint";
    for (size_t i = 0; i < N_ROUTES; i++) {
        const struct api_route *rt = &routes[i];
        enum fit f;

        assert(rt->pattern != NULL && rt->pattern[0] == '/');
        assert((rt->read != NULL) != (rt->change != NULL));
        assert(rt->change == NULL || rt->action != NULL);
        memset(&t, 0, sizeof(t));
        f = fit(rt->pattern, target, &t, &miss);
        if (f == FIT_CAPTURE && capture_miss == NULL)
            capture_miss = miss;
        if (f != FIT_PATH)
            continue;
        if (rt->role == ROLE_NONE)
            m->open = 1;
        if (rt->method == NULL || strcmp(rt->method, method) == 0) {
            int open = m->open;

            *m = t;
            m->route = rt;
            m->open = open || rt->role == ROLE_NONE;
            return;
        }
        m->status = 405;
        allow(m->allowed, sizeof(m->allowed), rt->method);
    }
    if (m->status == 404 && capture_miss != NULL)
        m->detail = capture_miss;
}

int router_role_status(enum api_role role, const struct auth *a)
{
    if (role == ROLE_NONE)
        return 0;
    if (a == NULL)
        return 401;
    return role == ROLE_ADMIN && !a->admin ? 403 : 0;
}

/* Paths a bearer token is asked for before anything is said about them:
 * an unknown one gets the same 401 as a known one. */
static int behind_bearer(const char *target)
{
    size_t plen = strcspn(target, "?");

    return strncmp(target, "/v1/", 4) == 0 || (plen == 8 && strncmp(target, "/metrics", 8) == 0);
}

/* An admin route refused to a token without the role. A state change is
 * audited like any other outcome. */
static void forbid(struct hub *h, struct ureq *r, const struct api_match *m, const struct auth *a)
{
    struct outcome o;

    if (m->route->change == NULL) {
        ureq_error(r, 403, "forbidden", "admin only");
        return;
    }
    outcome_init(&o, m->route, a, m->name);
    outcome_fail(&o, 403, "forbidden", "admin only");
    outcome_conclude(h, r, &o);
}

void api_dispatch(struct hub *h, struct ureq *r)
{
    struct api_match m;
    struct auth a;
    int bearer, st, rc = 0;

    memset(&a, 0, sizeof(a));
    h->n_requests++;
    router_match(r->method, r->target, &m);
    bearer = !m.open && behind_bearer(r->target);
    if (bearer)
        rc = auth_bearer(h, ureq_header(r, "authorization"), &a);
    if (rc != 0 && rc != -EACCES) {
        char d[160];

        snprintf(d, sizeof(d), "cannot check the token: %s; try again later",
                 registry_storage_error(rc));
        ureq_error(r, 503, "storage_unavailable", d);
        return;
    }
    if (rc != 0) {
        /* The same answer whatever was wrong: no hint of what exists. */
        ureq_error(r, 401, "unauthorized", "missing or invalid bearer token");
        return;
    }
    if (ureq_peer_hub(r) > 0 && m.route != NULL && m.route->read != proxy_route) {
        /* A peer hub forwards requests to sites' services only. */
        ureq_error(r, 403, "forbidden", "a peer hub forwards only requests to sites' services");
    } else if (m.status == 405) {
        char d[80];

        snprintf(d, sizeof(d), "use %s", m.allowed);
        ureq_error(r, 405, "bad_request", d);
    } else if (m.route == NULL) {
        ureq_error(r, 404, "not_found", m.detail);
    } else if ((st = router_role_status(m.route->role, bearer ? &a : NULL)) != 0) {
        assert(st == 403); /* a route that asks a bearer is behind_bearer */
        forbid(h, r, &m, &a);
    } else if (m.route->read != NULL) {
        m.route->read(h, r, bearer ? &a : NULL, &m);
    } else {
        api_change(h, r, m.route, bearer ? &a : NULL, &m);
    }
    auth_clear(&a);
}
