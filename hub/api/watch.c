/* GET /v1/events: Server-Sent Events of site changes (online, offline, changed), per token scope.
 */
/* SPDX-License-Identifier: MIT */
/*
 * One struct site_watch per hub (h->watch), made by the first watcher and
 * freed with the last one; it holds the events subscription. Writing to a
 * watcher's request may run other requests of the same connection, which
 * may end watchers: every walk runs between notify_begin and notify_end, and
 * a watcher ended in between is only marked dead and freed by notify_end.
 */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../tunnel/tunnel.h"
#include "api_int.h"

/* An SSE comment after this much silence keeps proxies and browsers from
 * closing an idle stream. */
#define WATCH_KEEPALIVE_MS 15000
/* Events are small; a watcher this far behind has stopped reading and is
 * dropped rather than buffered for. */
#define WATCH_BACKLOG_MAX (256u << 10)

struct watcher {
    TAILQ_ENTRY(watcher) link;
    struct site_watch *sw;
    struct ureq *r; /* NULL once answered or gone */
    struct auth a;  /* the token's identity and scope (scope owned) */
    uv_timer_t ka;  /* keep-alive; the watcher is freed from its close cb */
    int dead;       /* ended during a walk: freed by notify_end */
};
TAILQ_HEAD(watcher_list, watcher);

struct site_watch {
    struct hub *h;
    struct events_sub sub;
    struct watcher_list list;
    size_t n;
    int in_notify;
};

static void ka_close_cb(uv_handle_t *hd)
{
    free(hd->data);
}

static void sw_release(struct site_watch *sw)
{
    if (sw->n != 0 || sw->in_notify != 0)
        return;
    events_unsubscribe(&sw->sub);
    sw->h->watch = NULL;
    free(sw);
}

/* Unlinks and frees wt (its request already answered or gone). */
static void watcher_free(struct watcher *wt)
{
    struct site_watch *sw = wt->sw;

    assert(wt->r == NULL && sw->n > 0);
    TAILQ_REMOVE(&sw->list, wt, link);
    sw->n--;
    auth_clear(&wt->a);
    uv_timer_stop(&wt->ka);
    uv_close((uv_handle_t *)&wt->ka, ka_close_cb);
}

static void watcher_end(struct watcher *wt)
{
    struct site_watch *sw = wt->sw;

    assert(wt->r == NULL);
    if (sw->in_notify > 0) {
        wt->dead = 1;
        return;
    }
    watcher_free(wt);
    sw_release(sw);
}

static void notify_begin(struct site_watch *sw)
{
    sw->in_notify++;
}

static void notify_end(struct site_watch *sw)
{
    struct watcher *wt, *next;

    assert(sw->in_notify > 0);
    if (--sw->in_notify > 0)
        return;
    for (wt = TAILQ_FIRST(&sw->list); wt != NULL; wt = next) {
        next = TAILQ_NEXT(wt, link);
        if (wt->dead)
            watcher_free(wt);
    }
    sw_release(sw);
}

static void w_abort(struct ureq *r)
{
    struct watcher *wt = r->hctx;

    assert(wt->r == r && !wt->dead);
    wt->r = NULL;
    watcher_end(wt);
}

static const struct ureq_handler watcher_handler = {NULL, NULL, w_abort, NULL, 0};

/* Writes one frame; drops a watcher that stopped reading. Inside a walk. */
static void watcher_write(struct watcher *wt, const char *txt, size_t len)
{
    struct ureq *r = wt->r;

    assert(wt->sw->in_notify > 0);
    if (r == NULL || wt->dead)
        return;
    if (ureq_backlog(r) > WATCH_BACKLOG_MAX) {
        wt->r = NULL;
        ureq_set_handler(r, NULL, NULL);
        ureq_reset(r);
        wt->dead = 1;
        return;
    }
    ureq_respond_body(r, (const uint8_t *)txt, len);
    uv_timer_again(&wt->ka);
}

static void ka_cb(uv_timer_t *t)
{
    static const char ka[] = ": keepalive\n\n";
    struct watcher *wt = t->data;
    struct site_watch *sw = wt->sw;

    notify_begin(sw);
    watcher_write(wt, ka, sizeof(ka) - 1);
    notify_end(sw);
}

static const char *kind_name(int kind)
{
    return kind < 0 ? "online" : kind == EVENTS_SITE_OFFLINE ? "offline" : "changed";
}

/* Sends {"site","event","state"} to every watcher whose token may see the
 * site; state is the site's after the change, "removed" once it is gone.
 * kind: an events_site_kind, or -1 for online. */
static void broadcast(struct site_watch *sw, int kind, const char *name)
{
    struct reg_site s;
    struct watcher *wt;
    json_t *o;
    char *js, *txt = NULL;
    size_t cap;
    int found;

    memset(&s, 0, sizeof(s));
    /* A removed site is gone from the registry: judged by its name alone. */
    found = auth_site_get(sw->h, name, &s) == 0;
    if (!found)
        snprintf(s.name, sizeof(s.name), "%s", name);
    o = json_pack("{s:s,s:s,s:s}", "site", name, "event", kind_name(kind), "state",
                  found ? registry_site_state_name(s.state) : "removed");
    js = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    cap = js != NULL ? strlen(js) + 32 : 0;
    txt = js != NULL ? malloc(cap) : NULL;
    if (txt == NULL) {
        free(js);
        if (found)
            registry_site_clear(&s);
        return;
    }
    snprintf(txt, cap, "event: site\ndata: %s\n\n", js);
    free(js);
    notify_begin(sw);
    TAILQ_FOREACH(wt, &sw->list, link)
    {
        if (!wt->dead && wt->r != NULL && auth_site_allowed(&wt->a, &s))
            watcher_write(wt, txt, strlen(txt));
    }
    notify_end(sw);
    if (found)
        registry_site_clear(&s);
    free(txt);
}

static void on_online(void *arg, struct tunnel *t)
{
    broadcast(arg, -1, tunnel_site_name(t));
}

static void on_event(void *arg, enum events_site_kind kind, const char *site)
{
    broadcast(arg, (int)kind, site);
}

void watch_events(struct hub *h, struct ureq *r, const struct auth *a, const struct api_match *m)
{
    static const char hello[] = ": tether site events\n\n";
    nghttp2_nv hdrs[] = {
        h2_nv("content-type", 12, "text/event-stream", 17),
        h2_nv("cache-control", 13, "no-store", 8),
        h2_nv("x-accel-buffering", 17, "no", 2),
    };
    struct site_watch *sw = h->watch;
    struct watcher *wt;

    assert(a != NULL);
    if (sw == NULL) {
        sw = calloc(1, sizeof(*sw));
        if (sw == NULL) {
            ureq_error(r, 500, "internal", "out of memory");
            return;
        }
        sw->h = h;
        TAILQ_INIT(&sw->list);
        sw->sub.site_online = on_online;
        sw->sub.site_event = on_event;
        sw->sub.arg = sw;
        events_subscribe(&h->subs, &sw->sub);
        h->watch = sw;
    }
    wt = calloc(1, sizeof(*wt));
    if (wt != NULL && a->scope_json != NULL) {
        wt->a.scope_json = strdup(a->scope_json);
        if (wt->a.scope_json == NULL) {
            free(wt);
            wt = NULL;
        }
    }
    if (wt == NULL) {
        sw_release(sw);
        ureq_error(r, 500, "internal", "out of memory");
        return;
    }
    wt->a.token_id = a->token_id;
    wt->a.admin = a->admin;
    snprintf(wt->a.name, sizeof(wt->a.name), "%s", a->name);
    wt->sw = sw;
    wt->r = r;
    uv_timer_init(h->loop, &wt->ka);
    wt->ka.data = wt;
    TAILQ_INSERT_TAIL(&sw->list, wt, link);
    sw->n++;
    ureq_set_handler(r, &watcher_handler, wt);
    uv_timer_start(&wt->ka, ka_cb, WATCH_KEEPALIVE_MS, WATCH_KEEPALIVE_MS);
    notify_begin(sw);
    if (ureq_respond_head(r, 200, hdrs, 3, -1) == 0) {
        watcher_write(wt, hello, sizeof(hello) - 1);
    } else {
        ureq_set_handler(r, NULL, NULL);
        wt->r = NULL;
        wt->dead = 1;
    }
    notify_end(sw);
}
