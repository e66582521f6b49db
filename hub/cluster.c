/* Changes made through other hubs of a shared registry: cut their tunnels here, forget cached
 * reads. */
/* SPDX-License-Identifier: MIT */
#include "cluster.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/log.h"
#include "auth/auth.h"
#include "core/events.h"
#include "query/query.h"
#include "store/notes.h"
#include "store/registry.h"
#include "tunnel/peer.h"
#include "tunnel/tunnel.h"

/* A re-check of the local tunnels that could not read the registry is
 * tried again this often, until it can. */
#define RECHECK_RETRY_MS 1000

struct cluster {
    struct hub *h;
    struct registry_listener *l;
    uv_timer_t retry;  /* a failed re-check, tried again */
    uint64_t down_ms;  /* loop time the listener was lost; 0 while up */
    int recheck_due;   /* the local tunnels await a re-check */
    int recheck_first; /* ... the first one, since start */
};

/* The reason a tunnel is cut with: the words the hub that made the change
 * logged its own cut with (api/sites.c, enroll.c, rotate.c). */
static const char *cut_reason(enum reg_cut_why why)
{
    switch (why) {
    case REG_CUT_REVOKED:
        return "site revoked by operator";
    case REG_CUT_DISABLED:
        return "site disabled by operator";
    case REG_CUT_REMOVED:
        return "site removed by operator";
    case REG_CUT_ROTATED:
        return "key rotated";
    case REG_CUT_REENROLLED:
        return "site enrolled again with a new key";
    default:
        return "site changed";
    }
}

static void on_note(void *arg, const struct reg_note *n)
{
    struct cluster *cl = arg;
    struct hub *h = cl->h;

    /* Fencing: another hub opened a newer session of a site this hub
     * still holds (its tunnel died unnoticed here, or the site dialled
     * twice): the newer one wins. Not own-filtered: the recorder's own
     * connection sends this hub's, which name this hub. */
    if (n->kind == REG_NOTE_SESSION) {
        struct tunnel *t = hub_tunnel_find(h, n->site_id);
        int64_t mine = t != NULL ? tunnel_session_id(t) : 0;

        peer_note_session(h, n->site_id, n->session_id, n->hub_id);
        if (n->hub_id != h->hub_id && mine > 0 && mine < n->session_id)
            hub_tunnel_cut(h, n->site_id, "replaced by a newer session on another hub");
        return;
    }
    /* This hub's own change took effect here when it was made (api/: the
     * cut, outcome_conclude's forgetting and its watchers' event). */
    if (n->own)
        return;
    /* Queries: no cached row changed. */
    if (n->kind == REG_NOTE_QUERY) {
        query_remote_made(h, n->query_id);
        return;
    }
    if (n->kind == REG_NOTE_RESULTS) {
        query_remote_results(h, n->query_id);
        return;
    }
    /* Every cached token and site is suspect; the pin check of a handshake
     * under way reads its row again (net/listen.c). */
    h->gen++;
    /* And the rows kept for a database outage, by name (a token's, a
     * site's): a revoke made elsewhere before one must not be undone by it. */
    auth_forget(h, n->site);
    if (n->kind == REG_NOTE_TOKENS)
        return;
    /* Cuts are idempotent: no tunnel of the site here, nothing happens;
     * else its site_disconnected line says why. */
    if (n->kind == REG_NOTE_CUT)
        hub_tunnel_cut(h, n->site_id, cut_reason(n->why));
    events_site(&h->subs, EVENTS_SITE_CHANGED, n->site);
}

/* --- the re-check after the listener was away --- */

static void on_retry(uv_timer_t *t);

struct held {
    struct tunnel *t;
    int64_t id;
    int seen;                  /* the registry has the site */
    enum reg_site_state state; /* its state there */
    int key_ok;                /* the tunnel's key is the site's key there */
};

struct held_list {
    struct held *v;
    size_t n, cap;
    int nomem;
};

static void add_tunnel(struct tunnel *t, void *arg)
{
    struct held_list *hl = arg;
    struct held *nv;

    if (!tunnel_is_open(t))
        return; /* already cut */
    if (hl->n == hl->cap) {
        size_t cap = hl->cap ? hl->cap * 2 : 64;

        nv = realloc(hl->v, cap * sizeof(*nv));
        if (nv == NULL) {
            hl->nomem = 1;
            return;
        }
        hl->v = nv;
        hl->cap = cap;
    }
    hl->v[hl->n++] = (struct held){t, tunnel_site_id(t), 0, REG_SITE_PENDING, 0};
}

static int by_id(const void *a, const void *b)
{
    const struct held *x = a, *y = b;

    return x->id < y->id ? -1 : x->id > y->id;
}

static int mark_site(const struct reg_site *s, void *arg)
{
    struct held_list *hl = arg;
    struct held key = {NULL, s->id, 0, REG_SITE_PENDING, 0}, *e;

    e = bsearch(&key, hl->v, hl->n, sizeof(*hl->v), by_id);
    /* Standby tunnels share their site's id: mark each of them. */
    while (e != NULL && e > hl->v && e[-1].id == s->id)
        e--;
    for (; e != NULL && e < hl->v + hl->n && e->id == s->id; e++) {
        e->seen = 1;
        e->state = s->state;
        e->key_ok = tunnel_has_key(e->t, s->pin);
    }
    return 0;
}

/* Notes sent while the listener was away are lost: every tunnel held here
 * is checked against its site's row (state and key), as a cut note would
 * have done. The tunnels listed stay allocated throughout: a cut frees
 * them later, from the loop. One
 * read of every site (a cluster holds far fewer tunnels a hub than sites
 * in all). 0, or the registry's error (tried again later). */
static int recheck(struct cluster *cl, size_t *held, size_t *cut)
{
    struct hub *h = cl->h;
    struct held_list hl = {0};
    int rc;

    *held = *cut = 0;
    hub_tunnel_each(h, add_tunnel, &hl);
    if (hl.nomem) {
        free(hl.v);
        return -ENOMEM;
    }
    if (hl.n == 0)
        return 0;
    qsort(hl.v, hl.n, sizeof(*hl.v), by_id);
    rc = registry_site_list(h->reg, mark_site, &hl);
    if (rc != 0) {
        free(hl.v);
        return rc;
    }
    *held = hl.n;
    for (size_t i = 0; i < hl.n; i++) {
        const struct held *e = &hl.v[i];

        if (e->seen && e->state == REG_SITE_ACTIVE) {
            /* Rotated or enrolled again elsewhere: this tunnel's key is
             * the old one (a standby one may have the new key). */
            if (!e->key_ok && tunnel_is_open(e->t)) {
                tunnel_kill(e->t, "the site's key changed");
                (*cut)++;
            }
            continue;
        }
        if (i > 0 && hl.v[i - 1].id == e->id)
            continue; /* the site's cut took every tunnel of it */
        hub_tunnel_cut(h, e->id,
                       !e->seen                        ? cut_reason(REG_CUT_REMOVED)
                       : e->state == REG_SITE_DISABLED ? cut_reason(REG_CUT_DISABLED)
                                                       : cut_reason(REG_CUT_REVOKED));
        (*cut)++;
    }
    free(hl.v);
    return 0;
}

/* down_ms: how long the listener was away, for the log line; 0 at the
 * first start (nothing to log but what it cut, if anything). */
static void run_recheck(struct cluster *cl, uint64_t down_ms, int first)
{
    size_t held = 0, cut = 0;
    int rc = recheck(cl, &held, &cut);

    if (rc != 0) {
        cl->recheck_due = 1;
        cl->recheck_first = first;
        uv_timer_start(&cl->retry, on_retry, RECHECK_RETRY_MS, 0);
        return;
    }
    cl->recheck_due = 0;
    if (!first || cut > 0)
        log_event(LOG_INFO, "cluster_listen_resumed", "down_ms=%llu tunnels=%zu cut=%zu",
                  (unsigned long long)down_ms, held, cut);
}

static void on_retry(uv_timer_t *t)
{
    struct cluster *cl = t->data;

    if (cl->recheck_due)
        run_recheck(cl, 0, cl->recheck_first);
}

static void on_up(void *arg, int first)
{
    struct cluster *cl = arg;
    struct hub *h = cl->h;
    uint64_t down_ms = cl->down_ms ? uv_now(h->loop) - cl->down_ms : 0;

    cl->down_ms = 0;
    /* What was read while nobody listened may have changed since, and
     * the rows kept for an outage with it. */
    h->gen++;
    if (!first)
        auth_forget_all(h);
    if (first)
        log_event(LOG_INFO, "cluster_listening", "channels=tether_site,tether_token");
    run_recheck(cl, down_ms, first);
}

static void on_down(void *arg, int first, const char *why)
{
    struct cluster *cl = arg;
    struct hub *h = cl->h;

    /* Until the listener is back, a change elsewhere goes unheard: a read
     * cached now is dropped at the next attempt (each is at most 2 s
     * apart) and at the return. */
    h->gen++;
    if (!first)
        return;
    cl->down_ms = uv_now(h->loop);
    if (cl->down_ms == 0)
        cl->down_ms = 1;
    log_event(LOG_WARN, "cluster_listen_lost", "error=%s", log_q(why));
}

static const struct registry_listen_ops listen_ops = {on_note, on_up, on_down};

static void on_closed(uv_handle_t *hd)
{
    free(hd->data);
}

int cluster_start(struct hub *h, struct cluster **out)
{
    struct cluster *cl;
    uint64_t gen;
    int rc;

    *out = NULL;
    /* A registry no other process changes (SQLite) has nothing to tell. */
    if (registry_write_gen(h->reg, &gen) == 0)
        return 0;
    cl = calloc(1, sizeof(*cl));
    if (cl == NULL)
        return -ENOMEM;
    cl->h = h;
    uv_timer_init(h->loop, &cl->retry);
    cl->retry.data = cl;
    rc = registry_listen(h->reg, h->loop, &listen_ops, cl, &cl->l);
    if (rc != 0) {
        uv_close((uv_handle_t *)&cl->retry, on_closed);
        return rc == -ENOTSUP ? 0 : rc;
    }
    *out = cl;
    return 0;
}

void cluster_stop(struct cluster *cl)
{
    if (cl == NULL)
        return;
    registry_listen_stop(cl->l);
    cl->l = NULL;
    uv_close((uv_handle_t *)&cl->retry, on_closed);
}
