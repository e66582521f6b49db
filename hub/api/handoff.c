/* Hands /v1/sites/{site}/services/... to the site's tunnel after scope and path checks. */
/* SPDX-License-Identifier: MIT */
#include "api_int.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "../../common/urlpath.h"
#include "../auth/audit.h"
#include "../auth/auth.h"
#include "../proxy/proxy.h"
#include "../tunnel/peer.h"
#include "../tunnel/tunnel.h"

/* --- proxy hand-off --- */

static int method_changes_state(const char *m)
{
    return strcmp(m, "GET") != 0 && strcmp(m, "HEAD") != 0 && strcmp(m, "OPTIONS") != 0;
}

/* Every request and stream is checked, not its connection: a token's
 * services and a site's restricted set are read again each time. */
static int service_refuse(struct outcome *o, enum auth_svc why, const char *site,
                          const char *service)
{
    char msg[256];

    auth_service_refusal(why, site, service, msg, sizeof(msg));
    outcome_fail(o, 403, "forbidden", "%s", msg);
    return 1;
}

/* 503 for a site without a tunnel, saying why and what would bring it
 * back: its state decides (the code stays site_offline for scripts). */
static void offline(struct outcome *o, const struct reg_site *s)
{
    static const struct {
        const char *why, *cmd, *then; /* "site NAME WHY: 'tetherctl site CMD NAME' THEN" */
    } by_state[REG_SITE_NSTATES] = {
        [REG_SITE_PENDING] = {"has not enrolled yet", "token",
                              "gives a token for 'tether-site enroll' on it"},
        [REG_SITE_DISABLED] = {"is disabled, so the hub refuses its tunnel", "enable",
                               "lets it connect again"},
        [REG_SITE_REVOKED] = {"was revoked and cannot connect until it enrolls again", "token",
                              "gives the new token it needs"},
    };
    char seen[48] = "it has never connected";

    if (s->state < REG_SITE_NSTATES && by_state[s->state].why != NULL) {
        outcome_fail(o, 503, "site_offline", "site \"%s\" %s: 'tetherctl site %s %s' %s", s->name,
                     by_state[s->state].why, by_state[s->state].cmd, s->name,
                     by_state[s->state].then);
        return;
    }
    if (s->last_seen > 0) {
        time_t t = (time_t)s->last_seen;
        struct tm tm;

        if (gmtime_r(&t, &tm) != NULL)
            strftime(seen, sizeof(seen), "last seen %Y-%m-%d %H:%M:%S UTC", &tm);
    }
    outcome_fail(o, 503, "site_offline",
                 "site \"%s\" is not connected (%s); its agent (tether-site run) is down or "
                 "cannot reach the hub: 'tether-site doctor' on the site says why",
                 s->name, seen);
}

/* 404 for a service the connected site does not offer, naming those it does. */
static void not_offered(struct outcome *o, struct tunnel *t, const char *service)
{
    struct tunnel_info info;

    tunnel_get_info(t, &info);
    outcome_fail(o, 404, "not_found",
                 "the site does not offer service \"%s\" (it offers %.300s; a site adds one "
                 "with --service NAME=URL)",
                 service, info.services_json);
}

/* The peer hub to forward a request for the site to, when its tunnel is
 * not here: its newest session's hub, with a link up; 0 when none. A
 * request a peer forwarded is never sent on (no loops): if the site left
 * this hub, it is offline here. */
static int64_t peer_hop(struct hub *h, struct ureq *r, int64_t site_id)
{
    int64_t where = 0;
    size_t out, in;

    /* No link up (one hub alone, SQLite): nothing to read. */
    peer_count_up(h, &out, &in);
    if (out == 0)
        return 0;
    if (ureq_peer_hub(r) > 0 || peer_site_hub(h, site_id, &where) != 0 || where == h->hub_id ||
        !peer_link_up(h, where))
        return 0;
    return where;
}

void proxy_route(struct hub *h, struct ureq *r, const struct auth *a, const struct api_match *m)
{
    const char *name = m->name, *rest = m->rest;
    char service[TOKEN_NAME_MAX + 1];
    /* The service name ends at the first '/' or '?' (a '/' in the query is not a separator). */
    size_t sl = strcspn(rest, "/?");
    char raw[8192], path[8192], target[160], detail[300], remote[sizeof(r->remote)];
    const char *code;
    int audit = method_changes_state(r->method), svc_refused = 0;
    struct outcome o;
    struct reg_site s;
    struct tunnel *t = NULL;
    int64_t site_id = 0; /* the site's, once found */
    int64_t via = 0;     /* the peer hub holding its tunnel, when not this one */
    char site_name[TOKEN_NAME_MAX + 1] = "";
    int rc;

    memset(&o, 0, sizeof(o));
    o.status = 0;
    service[0] = '\0';
    if (sl == 0 || sl > TOKEN_NAME_MAX) {
        outcome_fail(&o, 404, "not_found", "no such service");
    } else {
        memcpy(service, rest, sl);
        service[sl] = '\0';
    }
    snprintf(raw, sizeof(raw), "%s%s", rest[sl] == '/' ? "" : "/", rest + sl);
    /* The service sees a path that cannot leave its base (docs/api.md). */
    rc = urlpath_normalize(raw, path, sizeof(path));
    if (rc != 0) {
        snprintf(path, sizeof(path), "%s", raw); /* for the audit row */
        if (o.status == 0)
            outcome_fail(&o, 400, "bad_request", "%s", urlpath_strerror(rc));
    }
    if (o.status == 0 && api_find_site(h, a, name, &s, &o, 1) == 0) {
        site_id = s.id;
        t = hub_tunnel_find(h, s.id);
        snprintf(site_name, sizeof(site_name), "%s", s.name);
        if (auth_service_allowed(a, service, 0) != AUTH_SVC_OK)
            svc_refused = service_refuse(&o, AUTH_SVC_NOT_LISTED, name, service);
        else if ((t == NULL || !tunnel_is_open(t)) && (via = peer_hop(h, r, s.id)) > 0)
            t = NULL; /* the hub holding it checks the service and its restriction */
        else if (t == NULL || !tunnel_is_open(t))
            offline(&o, &s);
        else if (!tunnel_offers(t, service))
            not_offered(&o, t, service);
        else if (tunnel_restricts(t, service) < 0 &&
                 auth_service_allowed(a, service, 1) != AUTH_SVC_OK)
            /* Before the hello the hub cannot tell: refuse, never guess open. */
            outcome_fail(&o, 503, "site_offline",
                         "the site is still connecting (its hello has not arrived); try again");
        else if (auth_service_allowed(a, service, tunnel_restricts(t, service)) != AUTH_SVC_OK)
            svc_refused = service_refuse(&o, AUTH_SVC_RESTRICTED, name, service);
        registry_site_clear(&s);
    }
    /* Users' requests that may change something at a site are audited too,
     * relaxed (no fsync each): they come at request rates. Reads are not.
     * The row says what the hub decided, refusals included; r may be gone
     * once answered, so what the row needs is copied first. */
    snprintf(target, sizeof(target), "%s/%s", name, service);
    snprintf(detail, sizeof(detail), "%s %.256s", r->method, path);
    snprintf(remote, sizeof(remote), "%s", r->remote);
    if (o.status != 0) {
        struct proxy_access acc = {name, service, r->method, path, a->name, o.status, 0, 0, 0};

        code = o.code;
        proxy_access_log(h, &acc);
        if (site_id != 0) /* a site's refusal counts in its requests (by service, if known) */
            stats_site_request(h, site_id, service, o.status, -1);
        ureq_error(r, o.status, o.code, o.detail);
    } else if (via > 0) {
        if (proxy_start_via(h, r, via, site_id, site_name, service, path, a->name, &code) == 0)
            code = "forwarded";
    } else if (proxy_start(h, r, t, service, path, a->name, &code) == 0) {
        code = "forwarded";
    }
    /* A refusal by service scope is audited whatever the method; a
     * forwarded request was audited by the hub it came through. */
    if ((audit || svc_refused) && ureq_peer_hub(r) == 0) {
        struct audit_row row = {a->name, remote, "proxy", target, code, detail};

        audit_write(h, &row, AUDIT_RELAXED);
    }
}
