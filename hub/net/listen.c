/* Hub listeners: one port for tunnels and users, told apart by the ALPN in the ClientHello before
 * TLS starts. */
/* SPDX-License-Identifier: MIT */
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/resource.h>

#include "../../common/clienthello.h"
#include "../../common/conn.h"
#include "../../common/log.h"
#include "../../common/net.h"
#include "../../common/procstat.h"
#include "../../common/tune.h"
#include "listen.h"
#include "../auth/auth.h"
#include "../core/hub.h"
#include "../http/user.h"
#include "../tunnel/peer.h"
#include "../tunnel/tunnel.h"
#include "../core/ipcount.h"

/* A connection between accept and the end of its TLS handshake. */
struct handshake {
    struct hub *h;
    struct conn *c;
    int tunnel;
    int peer; /* offered tether-peer/1 (and not tether/1): another hub; tunnel is set too */
    int64_t peer_id;
    char peer_name[254];
    int counted;
    int waiting;      /* queued behind the per-address cap */
    int wslot;        /* while waiting: its address's slot in h->pending, or -1 (queued) */
    int user_counted; /* counted in hub_users_inc until the user layer takes over */
    int reserve;      /* accepted into the descriptor reserve: may only become a tunnel */
    int evictable;    /* in `probation`: reserve set, no tether/1 ClientHello seen yet */
    TAILQ_ENTRY(handshake) rlink; /* in h->lst.probation while evictable */
    TAILQ_ENTRY(handshake) wlink; /* in its wait queue while waiting */
    struct tls_pin_verifier v;
    struct reg_site site;
    uint64_t site_gen; /* h->gen when site was read */
    char refusal[128];
    int alpn_seen; /* hs_peek read the ClientHello: tunnel is known */
    int end_set;   /* end says how it ended (else hs_close tells from its reason) */
    enum stats_hs_end end;
};

/* Records how hs ended, for /metrics; the first reason given wins. */
static void hs_end(struct handshake *hs, enum stats_hs_end end)
{
    if (hs->end_set)
        return;
    hs->end = end;
    hs->end_set = 1;
}

/* Pins of active sites as the registry last confirmed them, so that a site's
 * connect costs no SQLite read (3.4% of the hub's CPU per connect in the
 * handshake bench: the read's file locks, and re-reading the pages the
 * recorder's commits made stale). An entry holds only while the registry's
 * connection has changed no row since it was read (registry_write_gen: a
 * revoke, rotation, state change or removal is such a change) and no API
 * call has changed state (h->gen); with a database other hubs share
 * (PostgreSQL) nothing is cached. Only an active site's row is kept; the
 * fields the recorder writes (last seen, agent version, services, address)
 * may be as old as the entry, as in the auth caches. Two-way: a pin goes to
 * one of a pair of entries, and a third pin of a pair is a registry read. */
#define PIN_CACHE 4096

struct pin_entry {
    int used;
    uint64_t wgen, hgen; /* registry_write_gen and h->gen when read */
    struct reg_site s;   /* labels_json, services_json owned by the entry */
};

/* The first of pin's pair of entries, allocated on first use; NULL when
 * caching is off. */
static struct pin_entry *pin_pair(struct hub *h, const char *pin, uint64_t *wgen)
{
    uint32_t x = 2166136261u;

    if (registry_write_gen(h->reg, wgen) != 0)
        return NULL;
    if (h->lst.pins == NULL && (h->lst.pins = calloc(PIN_CACHE, sizeof(*h->lst.pins))) == NULL)
        return NULL;
    for (const char *p = pin; *p; p++)
        x = (x ^ (uint8_t)*p) * 16777619u;
    return &h->lst.pins[(x % (PIN_CACHE / 2)) * 2];
}

static int pin_current(const struct hub *h, const struct pin_entry *e, uint64_t wgen)
{
    return e->used && e->wgen == wgen && e->hgen == h->gen;
}

void hub_listen_free(struct hub *h)
{
    for (size_t i = 0; h->lst.pins != NULL && i < PIN_CACHE; i++)
        registry_site_clear(&h->lst.pins[i].s);
    free(h->lst.pins);
    h->lst.pins = NULL;
}

/* A tether-peer/1 client must present the key of an active hub of this
 * registry: a site's key or a hub of another cluster is refused here, in
 * the handshake. */
static int check_peer_pin(void *arg, const char *pin)
{
    struct handshake *hs = arg;
    int rc = peer_check_pin(hs->h, pin, &hs->peer_id, hs->peer_name, sizeof(hs->peer_name));

    if (rc == -EPERM)
        snprintf(hs->refusal, sizeof(hs->refusal), "not a hub of this cluster");
    else if (rc != 0)
        snprintf(hs->refusal, sizeof(hs->refusal), "registry unavailable: %s", strerror(-rc));
    return rc;
}

static int check_site_pin(void *arg, const char *pin)
{
    struct handshake *hs = arg;
    struct hub *h = hs->h;
    uint64_t wgen = 0;
    struct pin_entry *pair = pin_pair(h, pin, &wgen), *e = NULL;
    int rc;

    registry_site_clear(&hs->site);
    memset(&hs->site, 0, sizeof(hs->site));
    hs->site_gen = h->gen;
    for (int i = 0; pair != NULL && i < 2; i++)
        if (pin_current(h, &pair[i], wgen) && strcmp(pair[i].s.pin, pin) == 0 &&
            registry_site_copy(&hs->site, &pair[i].s) == 0)
            return 0; /* out of memory, the registry is read as without a cache */
    rc = registry_site_by_pin(h->reg, pin, &hs->site);
    if (rc == -ENOENT) {
        snprintf(hs->refusal, sizeof(hs->refusal), "unknown key");
        hs_end(hs, STATS_HS_UNKNOWN_KEY);
        return -EACCES;
    }
    if (rc != 0) {
        snprintf(hs->refusal, sizeof(hs->refusal), "registry error");
        hs_end(hs, STATS_HS_REGISTRY_ERROR);
        return -EIO;
    }
    if (hs->site.state != REG_SITE_ACTIVE) {
        hs_end(hs, STATS_HS_SITE_NOT_ACTIVE);
        snprintf(hs->refusal, sizeof(hs->refusal), "site %s is %s", hs->site.name,
                 registry_site_state_name(hs->site.state));
        return -EACCES;
    }
    /* A free or stale entry of the pair, else the second (the first keeps
     * the pin that came first). */
    if (pair != NULL)
        e = !pin_current(h, &pair[0], wgen) ? &pair[0] : &pair[1];
    if (e != NULL) {
        registry_site_clear(&e->s);
        e->used = registry_site_copy(&e->s, &hs->site) == 0;
        e->wgen = wgen;
        e->hgen = h->gen;
    }
    return 0;
}

/* Connections over the per-address handshake cap wait here with reading
 * paused (their ClientHello stays in the kernel) instead of being refused:
 * a reconnect storm from one NAT address is slowed, not dropped. */
#define WAIT_MAX 8192

/* Handshakes started per loop turn, at most, and only while the turn has
 * run less than TURN_BUSY_MS. A TLS 1.3 handshake costs the hub about
 * 0.4 ms of CPU (tests/bench, section 10), most of it in the steps after
 * its start; a reconnect storm let hundreds start in one turn and the
 * loop's lag reached a second (docs/benchmarks.md, section 5). 32 a turn
 * is about 13 ms of handshake work spread over the next turns, and still
 * more than 2,000 a second, what one core does; a turn already busy (its
 * I/O callbacks began more than TURN_BUSY_MS ago) starts none. The others
 * wait in `queued` with reading paused, their ClientHello in the kernel. */
#define HS_PER_TURN  32
#define TURN_BUSY_MS 8

static struct handshake_queue *wait_queue(struct hub *h, int slot)
{
    return slot >= 0 ? &h->pending[slot].waiters : &h->lst.queued;
}

/* Whether this loop turn may start another handshake. uv_now is the time
 * the turn's polling returned (libuv updates it then), on the clock of
 * uv_hrtime. */
static int turn_left(struct hub *h)
{
    uint64_t now = uv_now(h->loop);

    if (now != h->lst.turn_ms) {
        h->lst.turn_ms = now;
        h->lst.turn_started = 0;
    }
    return h->lst.turn_started < HS_PER_TURN && uv_hrtime() / 1000000 < now + TURN_BUSY_MS;
}

static void admit_cb(uv_idle_t *idle);

/* hs waits: in `queued` (at its head if first), or in its address's slot
 * when the address is at its cap. */
static void wait_link(struct handshake *hs, int queued, int first)
{
    struct hub *h = hs->h;

    hs->wslot = queued ? -1 : hub_pending_slot(h, hs->c->peer);
    if (first)
        TAILQ_INSERT_HEAD(wait_queue(h, hs->wslot), hs, wlink);
    else
        TAILQ_INSERT_TAIL(wait_queue(h, hs->wslot), hs, wlink);
    hs->waiting = 1;
    h->lst.n_waiters++;
    if (hs->wslot < 0 && h->lst.admit_idle_on)
        uv_idle_start(&h->lst.admit_idle, admit_cb);
}

static void wait_unlink(struct handshake *hs)
{
    if (!hs->waiting)
        return;
    assert(hs->h->lst.n_waiters > 0 && !hs->counted);
    TAILQ_REMOVE(wait_queue(hs->h, hs->wslot), hs, wlink);
    hs->waiting = 0;
    hs->h->lst.n_waiters--;
}

static void admit(struct handshake *w)
{
    wait_unlink(w);
    w->counted = 1;
    w->h->lst.turn_started++;
    conn_pause_reading(w->c, 0);
}

/* Starts queued handshakes, oldest first, while the turn allows. One whose
 * address reached its cap meanwhile moves to its address's queue. */
static void admit_queued(struct hub *h)
{
    struct handshake *w;

    while ((w = TAILQ_FIRST(&h->lst.queued)) != NULL && turn_left(h)) {
        if (hub_pending_inc(h, w->c->peer) == 0) {
            admit(w);
            continue;
        }
        if (hub_pending_slot(h, w->c->peer) < 0)
            break; /* no slot free: the next end frees one */
        wait_unlink(w);
        wait_link(w, 0, 0);
    }
    if (TAILQ_EMPTY(&h->lst.queued) && h->lst.admit_idle_on)
        uv_idle_stop(&h->lst.admit_idle);
}

/* Each loop turn while handshakes are queued. */
static void admit_cb(uv_idle_t *idle)
{
    admit_queued(idle->data);
}

/* A counted handshake of the address in pending[slot] ended: the oldest
 * waiter of that address goes on (or to the head of `queued` when this
 * turn has started its share), else the oldest queued one. The queues are
 * per address: in a reconnect storm thousands wait, and a walk over all of
 * them at every end took half the hub's CPU (docs/benchmarks.md, section
 * 5). A waiter in a slot always finds its address's count > 0. */
static void wake_one(struct hub *h, int slot)
{
    struct handshake *w;

    if (slot < 0)
        return;
    w = TAILQ_FIRST(&h->pending[slot].waiters);
    if (w == NULL) {
        admit_queued(h);
        return;
    }
    if (!turn_left(h)) {
        wait_unlink(w);
        wait_link(w, 1, 1);
        return;
    }
    if (hub_pending_inc(h, w->c->peer) == 0)
        admit(w);
}

/* Connections taken into the descriptor reserve that have not finished
 * their handshake: n_probation of them, at most half the reserve (the other
 * half stays for live tunnels and the hub's own files). Those that have not
 * yet shown a tether/1 ClientHello are in `probation`, oldest first, and
 * may be evicted for a newcomer; a site's handshake, once its ClientHello
 * is in, never is. */
/* hs showed a tether/1 ClientHello: it stays counted but is no longer
 * evictable. */
static void probation_keep(struct handshake *hs)
{
    if (!hs->evictable)
        return;
    assert(hs->reserve);
    TAILQ_REMOVE(&hs->h->lst.probation, hs, rlink);
    hs->evictable = 0;
}

static void probation_unlink(struct handshake *hs)
{
    if (!hs->reserve)
        return;
    probation_keep(hs);
    hs->reserve = 0;
    assert(hs->h->lst.n_probation > 0);
    hs->h->lst.n_probation--;
}

/* One warning per event kind per 10 s under a flood, with the count. */
static void refused(struct hub *h, struct hub_refusals *r, const char *event, const struct conn *c)
{
    uint64_t now = uv_now(h->loop);

    r->n++;
    if (r->last_ms != 0 && now - r->last_ms < 10000)
        return;
    log_event(LOG_WARN, event, "remote=%s refused=%llu fds=%zu fd_limit=%ld", c->peer,
              (unsigned long long)r->n, (size_t)h->fd_base + conn_live(&h->conns), h->fd_limit);
    r->last_ms = now;
    r->n = 0;
}

static void hs_free(struct handshake *hs, struct conn *c)
{
    struct hub *h = hs->h;
    enum stats_hs_kind kind = !hs->alpn_seen ? STATS_HS_UNKNOWN
                              : hs->tunnel   ? STATS_HS_TUNNEL
                                             : STATS_HS_USER;

    h->n_handshakes[kind][hs->end_set ? hs->end : STATS_HS_OTHER]++;
    h->n_conns[STATS_CONN_HANDSHAKE]--;
    wait_unlink(hs);
    probation_unlink(hs);
    if (hs->user_counted)
        hub_users_dec(hs->h, c->peer);
    if (hs->counted)
        wake_one(hs->h, hub_pending_dec(hs->h, c->peer));
    registry_site_clear(&hs->site);
    free(hs);
}

static int hs_peek(struct conn *c, const uint8_t *data, size_t len)
{
    struct handshake *hs = c->owner;
    struct hub *h = hs->h;
    struct clienthello_info info;
    int rc = clienthello_parse(data, len, &info);

    if (rc == -EAGAIN)
        return len > CLIENTHELLO_MAX + 64 ? -1 : 0;
    if (rc != 0) {
        log_event(LOG_DEBUG, "not_tls", "remote=%s", c->peer);
        hs_end(hs, STATS_HS_NOT_TLS);
        return -1;
    }
    /* A peer hub is counted and admitted as a tunnel is (it may use the
     * descriptor reserve); only its key check and its owner differ. */
    hs->peer =
        (info.alpn & CLIENTHELLO_ALPN_PEER) != 0 && (info.alpn & CLIENTHELLO_ALPN_TUNNEL) == 0;
    hs->tunnel = (info.alpn & CLIENTHELLO_ALPN_TUNNEL) != 0 || hs->peer;
    hs->alpn_seen = 1;
    if (hs->tunnel)
        probation_keep(hs);
    if (!hs->tunnel && hs->reserve) {
        h->n_users_refused_reserve++;
        hs_end(hs, STATS_HS_FD_RESERVE);
        refused(h, &h->lst.reserve_refusals, "fd_reserve", c);
        return -1;
    }
    if (!hs->tunnel) {
        /* Counted before TLS, so a refused connection costs no handshake. */
        rc = hub_users_inc(h, c->peer);
        if (rc == -EBUSY) {
            h->n_users_refused_cap++;
            refused(h, &h->lst.cap_refusals, "user_conn_cap", c);
        }
        if (rc != 0) {
            hs_end(hs, rc == -EBUSY ? STATS_HS_USER_CONN_CAP : STATS_HS_OUT_OF_MEMORY);
            return -1;
        }
        hs->user_counted = 1;
    }
    if (hs->peer) {
        hs->v.check = check_peer_pin;
        hs->v.arg = hs;
        rc = conn_start_tls(c, h->tunnel_ctx, NULL, PEER_ALPN, 1, &hs->v);
    } else if (hs->tunnel) {
        hs->v.check = check_site_pin;
        hs->v.arg = hs;
        rc = conn_start_tls(c, h->tunnel_ctx, NULL, "tether/1", 1, &hs->v);
    } else {
        /* Users are never asked for a certificate. */
        rc = conn_start_tls(c, h->user_ctx, NULL, "h2,http/1.1", 0, NULL);
    }
    if (rc < 0)
        hs_end(hs, STATS_HS_TLS_ERROR);
    return rc < 0 ? -1 : 0;
}

static void hs_handshake(struct conn *c)
{
    struct handshake *hs = c->owner;
    struct hub *h = hs->h;
    char alpn[32];
    int rc;

    tls_alpn(&c->tls, alpn, sizeof(alpn));
    if (hs->peer) {
        if (hs->v.result != 0 || strcmp(alpn, PEER_ALPN) != 0) {
            hs_end(hs, STATS_HS_NO_VERIFIED_KEY);
            conn_close(c, "peer without a verified hub key");
            return;
        }
        rc = peer_accept(h, c, hs->peer_id, hs->peer_name, hs->v.seen_pin);
    } else if (hs->tunnel) {
        if (hs->v.result != 0 || strcmp(alpn, "tether/1") != 0) {
            hs_end(hs, STATS_HS_NO_VERIFIED_KEY);
            conn_close(c, "tunnel without a verified key");
            return;
        }
        if (hs->site_gen != h->gen) {
            /* A change (a revoke, a disable, new labels) landed while the site
             * took its time to finish the handshake: the cut it made found no
             * tunnel yet, so the row read at the certificate is checked again. */
            char pin[sizeof(hs->site.pin)];

            snprintf(pin, sizeof(pin), "%s", hs->site.pin);
            if (check_site_pin(hs, pin) != 0) {
                conn_close(c, hs->refusal);
                return;
            }
        }
        rc = tunnel_attach(h, c, &hs->site);
        if (rc == 0)
            auth_site_remember(h, &hs->site); /* served through a database outage */
    } else {
        rc = user_attach(h, c, alpn);
        if (rc == 0)
            hs->user_counted = 0; /* now the user layer's to give back */
    }
    if (rc != 0) {
        /* The conn is still ours: hs_close frees hs when it goes. */
        snprintf(hs->refusal, sizeof(hs->refusal), "out of memory");
        hs_end(hs, STATS_HS_OUT_OF_MEMORY);
        conn_close(c, "out of memory");
        return;
    }
    /* The conn now belongs to the tunnel or user layer. */
    hs_end(hs, STATS_HS_ACCEPTED);
    hs_free(hs, c);
}

/* How a handshake the hub did not refuse itself ended, from its conn's
 * close reason (common/conn.c). */
static enum stats_hs_end end_of_reason(const char *reason)
{
    if (strcmp(reason, "handshake timeout") == 0)
        return STATS_HS_TIMEOUT;
    if (strncmp(reason, "tls", 3) == 0)
        return STATS_HS_TLS_ERROR;
    if (strcmp(reason, "out of memory") == 0)
        return STATS_HS_OUT_OF_MEMORY;
    return STATS_HS_PEER_CLOSED;
}

static void hs_close(struct conn *c, const char *reason)
{
    struct handshake *hs = c->owner;

    hs_end(hs, end_of_reason(reason));
    if (hs->peer) {
        log_event(LOG_WARN, "peer_refused", "remote=%s pin=%s reason=%s", c->peer,
                  hs->v.seen_pin[0] ? hs->v.seen_pin : "-",
                  log_q(hs->refusal[0] ? hs->refusal : reason));
    } else if (hs->tunnel) {
        hs->h->n_tunnels_refused++;
        log_event(LOG_WARN, "tunnel_refused", "remote=%s pin=%s reason=%s", c->peer,
                  hs->v.seen_pin[0] ? hs->v.seen_pin : "-",
                  log_q(hs->refusal[0] ? hs->refusal : reason));
    } else {
        log_event(LOG_DEBUG, "handshake_failed", "remote=%s reason=%s", c->peer, log_q(reason));
    }
    hs_free(hs, c);
}

static int hs_data(struct conn *c, const uint8_t *data, size_t len)
{
    return 0;
}

static const struct conn_ops hs_ops = {
    .on_peek = hs_peek,
    .on_handshake = hs_handshake,
    .on_data = hs_data,
    .on_close = hs_close,
};

/* Out of memory at accept: libuv keeps the accepted socket, and stops
 * accepting, until someone takes it; take it into the hub's reject handle
 * and close it. While that close runs, listeners wait their turn. */
static void reject(struct hub *h, uv_stream_t *server);

static void reject_closed(uv_handle_t *hd)
{
    struct hub *h = hd->data;
    struct hub_listen_state *l = &h->lst;

    l->reject_busy = 0;
    if (l->n_reject_queue > 0) {
        uv_stream_t *next = l->reject_queue[0];
        l->n_reject_queue--;
        memmove(l->reject_queue, l->reject_queue + 1,
                l->n_reject_queue * sizeof(l->reject_queue[0]));
        reject(h, next);
    }
}

static void reject(struct hub *h, uv_stream_t *server)
{
    struct hub_listen_state *l = &h->lst;

    if (uv_is_closing((uv_handle_t *)server))
        return;
    if (l->reject_busy) {
        for (size_t i = 0; i < l->n_reject_queue; i++)
            if (l->reject_queue[i] == server)
                return;
        if (l->n_reject_queue < HUB_MAX_LISTEN)
            l->reject_queue[l->n_reject_queue++] = server;
        return;
    }
    uv_tcp_init(server->loop, &l->reject_tcp);
    l->reject_tcp.data = h;
    l->reject_busy = 1;
    uv_accept(server, (uv_stream_t *)&l->reject_tcp);
    uv_close((uv_handle_t *)&l->reject_tcp, reject_closed);
}

/* Descriptors in use: those measured at listen plus one per connection. */
static size_t fds_in_use(const struct hub *h)
{
    return (size_t)h->fd_base + conn_live(&h->conns);
}

static void on_connection(uv_stream_t *server, int status)
{
    struct hub *h = server->data;
    struct handshake *hs;
    struct conn *c;
    int queued;

    if (status < 0)
        return;
    hs = calloc(1, sizeof(*hs));
    if (hs == NULL) {
        reject(h, server);
        return;
    }
    hs->h = h;
    c = conn_new(&h->conns, &hs_ops, hs);
    if (c == NULL) {
        free(hs);
        reject(h, server);
        return;
    }
    hs->c = c;
    h->n_conns[STATS_CONN_HANDSHAKE]++;
    if (conn_live(&h->conns) > h->conns_peak)
        h->conns_peak = conn_live(&h->conns); /* a burst between two trim ticks counts */
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0 || h->draining) {
        hs_end(hs, STATS_HS_OTHER);
        conn_close(c, "accept failed");
        return;
    }
    if (conn_start(c, h->cfg.handshake_timeout_ms) != 0) {
        conn_close(c, "peer gone at accept");
        return;
    }
    if (h->fd_limit > 0 && fds_in_use(h) > (size_t)(h->fd_limit - h->fd_reserve)) {
        /* Only a tunnel may take a reserved descriptor; that this is one is
         * known from its ClientHello (hs_peek). The oldest reserve
         * connection that has not shown one makes room when there is
         * none; if every one has, the newcomer is refused. A connection
         * over its address's cap is refused first, and evicts no one. */
        int max = h->fd_reserve / 2 > 0 ? h->fd_reserve / 2 : 1;
        struct handshake *oldest = TAILQ_FIRST(&h->lst.probation);

        if (hub_pending_inc(h, c->peer) != 0) {
            hs_end(hs, STATS_HS_HANDSHAKE_CAP);
            conn_close(c, "too many pending handshakes");
            return;
        }
        hs->counted = 1;
        if (h->lst.n_probation >= max && oldest == NULL) {
            hs_end(hs, STATS_HS_FD_RESERVE);
            refused(h, &h->lst.reserve_refusals, "fd_reserve", c);
            conn_close(c, "descriptor reserve full of handshaking tunnels");
            return;
        }
        if (h->lst.n_probation >= max) {
            hs_end(oldest, STATS_HS_FD_RESERVE);
            probation_unlink(oldest);
            conn_close(oldest->c, "descriptor reserve full");
        }
        hs->reserve = 1;
        hs->evictable = 1;
        TAILQ_INSERT_TAIL(&h->lst.probation, hs, rlink);
        h->lst.n_probation++;
        return;
    }
    /* Behind those already queued, or over this turn's share: queued. */
    queued = !TAILQ_EMPTY(&h->lst.queued) || !turn_left(h);
    if (queued || hub_pending_inc(h, c->peer) != 0) {
        if (h->lst.n_waiters >= WAIT_MAX) {
            /* One line per 10 s under a flood (a storm refused 54,000 in a
             * minute): a line each cost the loop more than the refusal. */
            struct hub_refusals *r = &h->lst.wait_refusals;
            uint64_t now = uv_now(h->loop);

            r->n++;
            if (r->last_ms == 0 || now - r->last_ms >= 10000) {
                log_event(LOG_WARN, "handshake_cap", "remote=%s waiting=%zu refused=%llu", c->peer,
                          h->lst.n_waiters, (unsigned long long)r->n);
                r->last_ms = now;
                r->n = 0;
            }
            hs_end(hs, STATS_HS_HANDSHAKE_CAP);
            conn_close(c, "too many pending handshakes");
            return;
        }
        conn_pause_reading(c, 1);
        wait_link(hs, queued, 0);
        return;
    }
    hs->counted = 1;
    h->lst.turn_started++;
}

static void fd_measure(struct hub *h)
{
    struct rlimit rl;
    /* Descriptors open now other than connections (listeners, SQLite, the
     * loop's own). */
    int n = procstat_count_fds();

    h->fd_limit = 0;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY || n < 0)
        return; /* no accounting: the kernel's limit alone */
    h->fd_limit = (long)rl.rlim_cur;
    h->fd_base = n - (int)conn_live(&h->conns);
    h->fd_reserve = h->cfg.fd_reserve;
    if (h->fd_reserve > h->fd_limit / 2)
        h->fd_reserve = (int)(h->fd_limit / 2);
}

/* At most one trim per this long: malloc_trim walks the whole heap with the
 * loop stopped (docs/decisions.md has the figures). */
#define TRIM_INTERVAL_MS 10000

/* The open connections fell by trim_after_closes from their peak since the
 * last trim: the state of those that went lies freed all over the heap,
 * which glibc would keep. Steady churn (as many opened as closed) frees
 * nothing worth giving back, and costs no trim. */
static void trim_cb(uv_timer_t *t)
{
    struct hub *h = t->data;
    size_t live = conn_live(&h->conns);
    uint64_t now = uv_now(h->loop), t0;

    if (live > h->conns_peak)
        h->conns_peak = live;
    if (h->cfg.trim_after_closes <= 0 || h->conns_peak - live < (size_t)h->cfg.trim_after_closes ||
        (h->trimmed_ms != 0 && now - h->trimmed_ms < TRIM_INTERVAL_MS))
        return;
    t0 = uv_hrtime();
    tune_trim();
    log_event(LOG_INFO, "heap_trimmed", "conns=%zu peak=%zu ms=%.1f", live, h->conns_peak,
              (double)(uv_hrtime() - t0) / 1e6);
    h->conns_peak = live;
    h->trimmed_ms = now;
}

void hub_listen_stop(struct hub *h)
{
    for (size_t i = 0; i < h->n_listeners; i++)
        if (!uv_is_closing((uv_handle_t *)&h->listeners[i]))
            uv_close((uv_handle_t *)&h->listeners[i], NULL);
    if (h->trim_timer_on && !uv_is_closing((uv_handle_t *)&h->trim_timer))
        uv_close((uv_handle_t *)&h->trim_timer, NULL);
    /* Handshakes still queued go on as others end (wake_one). */
    if (h->lst.admit_idle_on && !uv_is_closing((uv_handle_t *)&h->lst.admit_idle)) {
        uv_close((uv_handle_t *)&h->lst.admit_idle, NULL);
        h->lst.admit_idle_on = 0;
    }
}

int hub_listen(struct hub *h, const char *hostport, char *err, size_t err_cap)
{
    char host[NET_HOST_MAX + 1];
    struct sockaddr_storage ss;
    uv_tcp_t *l;
    int port, rc;

    if (h->n_listeners >= HUB_MAX_LISTEN) {
        snprintf(err, err_cap, "at most %d listen addresses", HUB_MAX_LISTEN);
        return -E2BIG;
    }
    if (h->n_listeners == 0 && h->lst.probation.tqh_last == NULL) {
        /* Before the first accept. */
        TAILQ_INIT(&h->lst.probation);
        TAILQ_INIT(&h->lst.queued);
        for (size_t i = 0; i < sizeof(h->pending) / sizeof(h->pending[0]); i++)
            TAILQ_INIT(&h->pending[i].waiters);
        if (uv_idle_init(h->loop, &h->lst.admit_idle) == 0) {
            h->lst.admit_idle.data = h;
            h->lst.admit_idle_on = 1;
        }
    }
    if (net_split_hostport(hostport, 6443, host, &port) != 0) {
        snprintf(err, err_cap, "bad listen address \"%s\" (want HOST:PORT)", hostport);
        return -EINVAL;
    }
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)&ss) != 0 &&
        uv_ip6_addr(host, port, (struct sockaddr_in6 *)&ss) != 0) {
        snprintf(err, err_cap, "listen address must be a numeric IP: \"%s\"", host);
        return -EINVAL;
    }
    l = &h->listeners[h->n_listeners];
    uv_tcp_init(h->loop, l);
    l->data = h;
    rc = uv_tcp_bind(l, (struct sockaddr *)&ss, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)l, 1024, on_connection);
    if (rc != 0) {
        snprintf(err, err_cap, "%s", uv_strerror(rc));
        uv_close((uv_handle_t *)l, NULL);
        return rc;
    }
    h->n_listeners++;
    fd_measure(h);
    if (!h->trim_timer_on) {
        uv_timer_init(h->loop, &h->trim_timer);
        h->trim_timer.data = h;
        uv_timer_start(&h->trim_timer, trim_cb, 1000, 1000);
        uv_unref((uv_handle_t *)&h->trim_timer);
        h->trim_timer_on = 1;
        h->conns_peak = conn_live(&h->conns);
    }
    log_event(LOG_INFO, "listening", "addr=%s fd_limit=%ld fd_reserve=%d", hostport, h->fd_limit,
              h->fd_reserve);
    return 0;
}
