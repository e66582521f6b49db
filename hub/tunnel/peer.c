/* Hub-to-hub peer links: each hub holds one mutually authenticated HTTP/2 connection to every other
 * hub of its cluster. */
/* SPDX-License-Identifier: MIT */
#include "peer.h"

#include <assert.h>
#include <errno.h>
#include <jansson.h>
#include <netdb.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/crypto.h"
#include "../../common/log.h"
#include "../../common/net.h"
#include "../../common/tls.h"
#include "../http/user.h"
#include "../store/registry.h"
#include "mux.h"

/* The hubs table is read again this often: a hub that joins or leaves is
 * dialled or dropped within it. */
#define PEER_HUBS_READ_MS 2000
/* The tick that dials, pings and times links out. */
#define PEER_TICK_MS 200
/* The dialling side PINGs every PEER_PING_MS; a link silent for two
 * intervals is dead (docs/plans/scale-out.md §4.5). A killed hub is noticed
 * at once: its sockets close. The accepting side answers PINGs and has TCP
 * keepalive (a user connection's, hub/http/user.c). */
#define PEER_PING_MS      5000
#define PEER_HANDSHAKE_MS 10000
/* Reconnect backoff: doubles from the first to the cap, with jitter, so a
 * restarted hub is found again within seconds without a storm of dials. */
#define PEER_BACKOFF_FIRST_MS 200
#define PEER_BACKOFF_MAX_MS   5000
/* Where sites are connected (their newest open session's hub), cached so
 * that a proxied request does not read the database each time: the ses:
 * notes keep it fresh (hub/cluster.c); a read is trusted this long
 * anyway, in case a note was missed, and "nowhere" a shorter time. A site
 * id picks its slot (direct-mapped: a collision costs one read). */
#define PEER_PLACE_SLOTS   1024
#define PEER_PLACE_TTL_MS  10000
#define PEER_PLACE_NONE_MS 1000

enum peer_state {
    PEER_IDLE,       /* no connection; dialled again at retry_ms */
    PEER_RESOLVING,  /* the endpoint's name is being resolved (off the loop) */
    PEER_CONNECTING, /* TCP connect or TLS handshake in progress */
    PEER_UP,         /* verified, HTTP/2 session open */
};

/* A link this hub dialled: it is the HTTP/2 client (the tmux). */
struct peer_out {
    struct peers *ps;
    int64_t hub_id;
    char name[254];
    char pin[CRYPTO_PIN_LEN + 1];
    char endpoint[NET_HOST_MAX + 16]; /* "HOST:PORT" from the hubs row */
    int active;                       /* in the hubs table at the last read */
    enum peer_state state;
    struct conn *conn; /* NULL while idle */
    int mux_on;
    struct tmux mux;
    struct tls_pin_verifier v;
    uv_connect_t creq;
    uv_getaddrinfo_t gai;              /* while PEER_RESOLVING */
    char resolving[NET_HOST_MAX + 16]; /* the endpoint being resolved */
    uint64_t retry_ms;
    unsigned backoff_ms;
    uint64_t up_ms, ping_ms;
    unsigned failures; /* dials in a row that failed */
    LIST_ENTRY(peer_out) link;
};

/* A link another hub dialled: this hub is its HTTP/2 server. */
/* A link another hub dialled: this hub is its HTTP/2 server, through the
 * user front end (its streams are forwarded user requests, hub/http). It
 * lives as long as its conn; the dialler's PINGs keep it alive. */
struct peer_in {
    struct peers *ps;
    struct conn *conn;
    int64_t hub_id;
    char name[254];
    char pin[CRYPTO_PIN_LEN + 1];
    uint64_t up_ms;
    LIST_ENTRY(peer_in) link;
};

/* One cached site place. */
struct place {
    int64_t site_id;    /* 0: empty */
    int64_t hub_id;     /* -1: no open session */
    int64_t session_id; /* the session that placed it there */
    uint64_t gen;       /* h->gen it was read in */
    uint64_t at_ms;     /* loop time it was read or noted */
};

struct peers {
    struct hub *h;
    struct place place[PEER_PLACE_SLOTS];
    WOLFSSL_CTX *ctx; /* client: presents the hub's key, pins the peer */
    uv_timer_t tick;
    int tick_on;
    int stopping;
    uint64_t hubs_read_ms;
    LIST_HEAD(, peer_out) out;
    LIST_HEAD(, peer_in) in;
};

static const struct tmux_kind peer_kind = {
    .gone = "peer hub disconnected",
    .refused = "peer hub refused the stream",
    .reset = "peer hub reset the stream",
    .goaway = "peer hub sent goaway",
};

static uint64_t now_ms(const struct peers *ps)
{
    return uv_now(ps->h->loop);
}

/* --- links this hub dialled --- */

static void out_failed(struct peer_out *o, const char *reason);

static void out_retry_later(struct peer_out *o)
{
    unsigned b = o->backoff_ms ? o->backoff_ms : PEER_BACKOFF_FIRST_MS;

    /* Up to a quarter more, so that hubs restarted together do not dial in
     * step. */
    o->retry_ms = now_ms(o->ps) + b + (unsigned)rand() % (b / 4 + 1);
    o->backoff_ms = b * 2 > PEER_BACKOFF_MAX_MS ? PEER_BACKOFF_MAX_MS : b * 2;
}

static int out_check_pin(void *arg, const char *pin)
{
    const struct peer_out *o = arg;

    return crypto_pin_equal(pin, o->pin) ? 0 : -EPERM;
}

static void out_handshake(struct conn *c)
{
    struct peer_out *o = c->owner;
    struct peers *ps = o->ps;
    char alpn[32];

    tls_alpn(&c->tls, alpn, sizeof(alpn));
    if (o->v.result != 0 || strcmp(alpn, PEER_ALPN) != 0) {
        conn_close(c, o->v.result != 0 ? "peer key is not the hubs row's pin" : "no tether-peer/1");
        return;
    }
    if (tmux_open(&o->mux, ps->h->loop, c, H2_ROLE_HUB_TUNNEL, &peer_kind) != 0) {
        conn_close(c, "out of memory");
        return;
    }
    o->mux_on = 1;
    o->state = PEER_UP;
    o->up_ms = o->ping_ms = now_ms(ps);
    o->backoff_ms = 0;
    o->failures = 0;
    h2_send(&o->mux.h2);
    log_event(LOG_INFO, "peer_link_up", "peer=%s hub_id=%lld remote=%s pin=%s dir=out",
              log_q(o->name), (long long)o->hub_id, c->peer, o->pin);
}

static int out_data(struct conn *c, const uint8_t *data, size_t len)
{
    struct peer_out *o = c->owner;
    int rc;

    if (!o->mux_on)
        return -EPROTO;
    rc = h2_feed(&o->mux.h2, data, len);
    if (rc < 0) {
        snprintf(o->mux.close_reason, sizeof(o->mux.close_reason), "http2 error: %s",
                 nghttp2_strerror(rc));
        return -EPROTO;
    }
    if (h2_finished(&o->mux.h2))
        conn_close_after_flush(c,
                               o->mux.close_reason[0] ? o->mux.close_reason : "session finished");
    return 0;
}

static void out_drain(struct conn *c)
{
    struct peer_out *o = c->owner;

    if (o->mux_on && h2_send(&o->mux.h2) < 0)
        conn_close(c, "http2 send error");
}

static void out_close(struct conn *c, const char *reason)
{
    struct peer_out *o = c->owner;
    struct peers *ps = o->ps;
    int was_up = o->mux_on;

    if (o->mux_on) {
        const char *why = o->mux.close_reason[0] ? o->mux.close_reason : reason;

        log_event(LOG_INFO, "peer_link_down",
                  "peer=%s hub_id=%lld remote=%s reason=%s up_ms=%llu dir=out", log_q(o->name),
                  (long long)o->hub_id, c->peer, log_q(why),
                  (unsigned long long)(now_ms(ps) - o->up_ms));
        tmux_close(&o->mux);
        o->mux_on = 0;
        o->backoff_ms = 0;
    }
    memset(&o->mux, 0, sizeof(o->mux));
    o->conn = NULL;
    if (was_up || ps->stopping) {
        o->state = PEER_IDLE;
        out_retry_later(o);
    } else {
        out_failed(o, reason);
    }
}

static const struct conn_ops out_ops = {
    .on_handshake = out_handshake,
    .on_data = out_data,
    .on_drain = out_drain,
    .on_close = out_close,
};

static void out_connected(uv_connect_t *req, int status)
{
    struct peer_out *o = req->data;
    struct conn *c = (struct conn *)((char *)req->handle - offsetof(struct conn, tcp));

    if (c->closing)
        return;
    if (status < 0) {
        conn_close(c, uv_strerror(status));
        return;
    }
    o->v.check = out_check_pin;
    o->v.arg = o;
    o->v.seen_pin[0] = '\0';
    o->v.result = -EPROTO;
    if (conn_start(c, PEER_HANDSHAKE_MS) != 0 ||
        conn_start_tls(c, o->ps->ctx, NULL, PEER_ALPN, 1, &o->v) != 0)
        conn_close(c, "cannot start TLS");
}

static void out_failed(struct peer_out *o, const char *reason)
{
    o->failures++;
    log_event(o->failures == 1 ? LOG_WARN : LOG_DEBUG, "peer_link_failed",
              "peer=%s hub_id=%lld endpoint=%s reason=%s failures=%u", log_q(o->name),
              (long long)o->hub_id, log_q(o->endpoint), log_q(reason), o->failures);
    o->state = PEER_IDLE;
    out_retry_later(o);
}

static void out_connect(struct peer_out *o, const struct sockaddr *sa)
{
    struct conn *c = conn_new(&o->ps->h->conns, &out_ops, o);
    int rc;

    if (c == NULL) {
        o->state = PEER_IDLE;
        out_retry_later(o);
        return;
    }
    o->conn = c;
    o->state = PEER_CONNECTING;
    o->creq.data = o;
    rc = uv_tcp_connect(&o->creq, &c->tcp, sa, out_connected);
    if (rc != 0)
        conn_close(c, uv_strerror(rc)); /* out_close schedules the retry */
}

static void out_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct peer_out *o = req->data;

    assert(o->state == PEER_RESOLVING);
    o->state = PEER_IDLE;
    if (o->ps->stopping) {
        /* nothing: the hub is going */
    } else if (strcmp(o->resolving, o->endpoint) != 0) {
        o->retry_ms = now_ms(o->ps); /* the hubs row changed meanwhile: dial the new one */
    } else if (status != 0 || res == NULL) {
        out_failed(o, "cannot resolve the endpoint");
    } else {
        out_connect(o, res->ai_addr);
    }
    uv_freeaddrinfo(res);
}

/* Dials "HOST:PORT": an IP literal at once, a name once the libuv thread
 * pool has resolved it (a resolver that hangs must not stall the loop). */
static void out_dial(struct peer_out *o)
{
    char host[NET_HOST_MAX + 1], port_s[16];
    struct sockaddr_storage ss;
    struct addrinfo hints;
    int port;

    memset(&ss, 0, sizeof(ss));
    if (net_split_hostport(o->endpoint, 0, host, &port) != 0 || port <= 0) {
        out_failed(o, "not a HOST:PORT endpoint");
        return;
    }
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)&ss) == 0 ||
        uv_ip6_addr(host, port, (struct sockaddr_in6 *)&ss) == 0) {
        out_connect(o, (const struct sockaddr *)&ss);
        return;
    }
    memset(&hints, 0, sizeof(hints));
    hints.ai_socktype = SOCK_STREAM;
    snprintf(port_s, sizeof(port_s), "%d", port);
    snprintf(o->resolving, sizeof(o->resolving), "%s", o->endpoint);
    o->gai.data = o;
    o->state = PEER_RESOLVING;
    if (uv_getaddrinfo(o->ps->h->loop, &o->gai, out_resolved, host, port_s, &hints) != 0)
        out_failed(o, "cannot resolve the endpoint");
}

/* --- links other hubs dialled --- */

/* The user front end closed the link (user_attach_peer). */
static void in_gone(void *arg, const char *reason)
{
    struct peer_in *p = arg;

    log_event(LOG_INFO, "peer_link_down",
              "peer=%s hub_id=%lld remote=%s reason=%s up_ms=%llu dir=in", log_q(p->name),
              (long long)p->hub_id, p->conn->peer, log_q(reason),
              (unsigned long long)(now_ms(p->ps) - p->up_ms));
    LIST_REMOVE(p, link);
    free(p);
}

struct pin_find {
    const char *pin;
    int64_t self;
    int64_t id;
    char *name;
    size_t name_cap;
};

static int pin_find_cb(const struct reg_hub *row, void *arg)
{
    struct pin_find *f = arg;

    if (row->id == f->self || !crypto_pin_equal(row->pin, f->pin))
        return 0;
    f->id = row->id;
    snprintf(f->name, f->name_cap, "%s", row->name);
    return 1;
}

int peer_check_pin(struct hub *h, const char *pin, int64_t *hub_id, char *name, size_t name_cap)
{
    struct pin_find f = {pin, h->hub_id, 0, name, name_cap};
    int rc = registry_hub_list(h->reg, pin_find_cb, &f);

    if (rc < 0)
        return rc;
    if (rc == 0 || f.id <= 0)
        return -EPERM;
    *hub_id = f.id;
    return 0;
}

int peer_accept(struct hub *h, struct conn *c, int64_t hub_id, const char *name, const char *pin)
{
    struct peers *ps = h->peers;
    struct peer_in *p;
    int rc = -ENOMEM;

    if (ps == NULL || ps->stopping)
        return -ENOTCONN;
    p = calloc(1, sizeof(*p));
    if (p == NULL)
        goto out;
    p->ps = ps;
    p->conn = c;
    p->hub_id = hub_id;
    snprintf(p->name, sizeof(p->name), "%s", name);
    snprintf(p->pin, sizeof(p->pin), "%s", pin);
    p->up_ms = now_ms(ps);
    rc = user_attach_peer(h, c, hub_id, in_gone, p);
    if (rc != 0)
        goto out;
    LIST_INSERT_HEAD(&ps->in, p, link);
    log_event(LOG_INFO, "peer_link_up", "peer=%s hub_id=%lld remote=%s pin=%s dir=in", log_q(name),
              (long long)hub_id, c->peer, pin);
    rc = 0;
out:
    if (rc != 0)
        free(p);
    return rc;
}

/* --- the cluster's hubs and the tick --- */

static struct peer_out *out_find(struct peers *ps, int64_t id)
{
    struct peer_out *o;

    LIST_FOREACH(o, &ps->out, link)
    if (o->hub_id == id)
        return o;
    return NULL;
}

/* The active hubs, as read (their public_json owned here). */
struct hub_rows {
    struct reg_hub *v;
    size_t n, cap;
};

static int collect_cb(const struct reg_hub *row, void *arg)
{
    struct hub_rows *rs = arg;

    if (rs->n == rs->cap) {
        size_t cap = rs->cap ? rs->cap * 2 : 8;
        struct reg_hub *v = realloc(rs->v, cap * sizeof(*v));

        if (v == NULL)
            return -ENOMEM;
        rs->v = v;
        rs->cap = cap;
    }
    rs->v[rs->n] = *row;
    rs->v[rs->n].public_json = strdup(row->public_json ? row->public_json : "[]");
    if (rs->v[rs->n].public_json == NULL)
        return -ENOMEM;
    rs->n++;
    return 0;
}

/* 1 when a hub other than rs->v[me] lists endpoint ep. */
static int shared_endpoint(const struct hub_rows *rs, size_t me, const char *ep)
{
    for (size_t j = 0; j < rs->n; j++) {
        json_t *eps, *e;
        size_t k;
        int hit = 0;

        if (j == me)
            continue;
        eps = json_loads(rs->v[j].public_json, 0, NULL);
        json_array_foreach(eps, k, e) hit |=
            json_is_string(e) && strcmp(json_string_value(e), ep) == 0;
        json_decref(eps);
        if (hit)
            return 1;
    }
    return 0;
}

/* The endpoint to dial hub rs->v[i] at: its first one that no other hub
 * lists (an address several hubs share is a load balancer, which would
 * hand the dial to any of them); "" when it has none of its own. */
static void own_endpoint(const struct hub_rows *rs, size_t i, char *out, size_t cap)
{
    json_t *eps = json_loads(rs->v[i].public_json, 0, NULL), *e;
    size_t k;

    out[0] = '\0';
    json_array_foreach(eps, k, e)
    {
        const char *ep = json_string_value(e);

        if (ep != NULL && !shared_endpoint(rs, i, ep)) {
            snprintf(out, cap, "%s", ep);
            break;
        }
    }
    json_decref(eps);
}

static void apply_row(struct peers *ps, const struct reg_hub *row, const char *ep)
{
    struct peer_out *o;

    if (row->id == ps->h->hub_id || !crypto_pin_valid(row->pin))
        return;
    o = out_find(ps, row->id);
    if (o == NULL) {
        if ((o = calloc(1, sizeof(*o))) == NULL)
            return; /* tried again at the next read */
        o->ps = ps;
        o->hub_id = row->id;
        o->retry_ms = now_ms(ps);
        LIST_INSERT_HEAD(&ps->out, o, link);
    } else if (o->conn != NULL && (strcmp(o->pin, row->pin) != 0 || strcmp(o->endpoint, ep) != 0)) {
        conn_close(o->conn, "the hub's key or endpoint changed");
    }
    snprintf(o->name, sizeof(o->name), "%s", row->name);
    snprintf(o->pin, sizeof(o->pin), "%s", row->pin);
    snprintf(o->endpoint, sizeof(o->endpoint), "%s", ep);
    o->active = 2; /* seen in this read */
}

static void read_hubs(struct peers *ps)
{
    struct hub_rows rs = {NULL, 0, 0};
    struct peer_out *o;
    char ep[NET_HOST_MAX + 16];
    int rc;

    LIST_FOREACH(o, &ps->out, link)
    o->active = o->active ? 1 : 0;
    rc = registry_hub_list(ps->h->reg, collect_cb, &rs);
    for (size_t i = 0; rc == 0 && i < rs.n; i++) {
        own_endpoint(&rs, i, ep, sizeof(ep));
        apply_row(ps, &rs.v[i], ep);
    }
    for (size_t i = 0; i < rs.n; i++)
        registry_hub_clear(&rs.v[i]);
    free(rs.v);
    /* Unreadable (database down): the links stay as they are. */
    if (rc < 0) {
        LIST_FOREACH(o, &ps->out, link)
        o->active = o->active ? 2 : 0;
        return;
    }
    LIST_FOREACH(o, &ps->out, link)
    {
        o->active = o->active == 2;
        if (!o->active && o->conn != NULL)
            conn_close(o->conn, "the hub left the cluster");
    }
}

static void tick_cb(uv_timer_t *timer)
{
    struct peers *ps = timer->data;
    uint64_t now = now_ms(ps), iv = PEER_PING_MS;
    struct peer_out *o;

    if (ps->stopping || ps->h->draining)
        return;
    if (ps->hubs_read_ms == 0 || now - ps->hubs_read_ms >= PEER_HUBS_READ_MS) {
        ps->hubs_read_ms = now;
        read_hubs(ps);
    }
    LIST_FOREACH(o, &ps->out, link)
    {
        if (o->state == PEER_IDLE && o->active && o->endpoint[0] && now >= o->retry_ms)
            out_dial(o);
        if (o->state != PEER_UP || o->conn == NULL || o->conn->closing)
            continue;
        if (now - o->mux.last_heard_ms >= 2 * iv) {
            snprintf(o->mux.close_reason, sizeof(o->mux.close_reason),
                     "ping timeout (silent %llu ms)",
                     (unsigned long long)(now - o->mux.last_heard_ms));
            conn_close(o->conn, o->mux.close_reason);
        } else if (now - o->ping_ms >= iv) {
            o->ping_ms = now;
            tmux_ping(&o->mux);
        }
    }
}

int peer_start(struct hub *h)
{
    struct peers *ps = calloc(1, sizeof(*ps));
    WOLFSSL_CTX *ctx = NULL;
    int rc = -ENOMEM;

    if (ps == NULL)
        goto out;
    rc = tls_ctx_client(&h->id, &ctx);
    if (rc != 0)
        goto out;
    ps->h = h;
    ps->ctx = ctx;
    LIST_INIT(&ps->out);
    LIST_INIT(&ps->in);
    uv_timer_init(h->loop, &ps->tick);
    ps->tick.data = ps;
    ps->tick_on = 1;
    uv_timer_start(&ps->tick, tick_cb, 0, PEER_TICK_MS);
    h->peers = ps;
    ps = NULL;
    rc = 0;
out:
    free(ps);
    return rc;
}

void peer_stop(struct hub *h)
{
    struct peers *ps = h->peers;
    struct peer_out *o;

    if (ps == NULL || ps->stopping)
        return;
    ps->stopping = 1;
    if (ps->tick_on)
        uv_close((uv_handle_t *)&ps->tick, NULL);
    /* A resolve that has not started yet never will (its callback sees
     * UV_EAI_CANCELED); one running ends on its own, before the loop does. */
    LIST_FOREACH(o, &ps->out, link)
    if (o->state == PEER_RESOLVING)
        (void)uv_cancel((uv_req_t *)&o->gai);
}

void peer_count_up(const struct hub *h, size_t *out, size_t *in)
{
    const struct peers *ps = h->peers;
    const struct peer_out *o;
    const struct peer_in *p;

    *out = *in = 0;
    if (ps == NULL)
        return;
    LIST_FOREACH(o, &ps->out, link)
    *out += o->state == PEER_UP;
    LIST_FOREACH(p, &ps->in, link)
    *in += !p->conn->closing;
}

/* --- where sites are --- */

static struct place *place_slot(struct peers *ps, int64_t site_id)
{
    return &ps->place[(uint64_t)site_id % PEER_PLACE_SLOTS];
}

void peer_note_session(struct hub *h, int64_t site_id, int64_t session_id, int64_t hub_id)
{
    struct peers *ps = h->peers;
    struct place *pl;

    if (ps == NULL || site_id <= 0)
        return;
    pl = place_slot(ps, site_id);
    /* Notes may pass each other: an older session never displaces a newer. */
    if (pl->site_id == site_id && pl->hub_id >= 0 && pl->session_id > session_id)
        return;
    pl->site_id = site_id;
    pl->hub_id = hub_id;
    pl->session_id = session_id;
    pl->gen = h->gen;
    pl->at_ms = now_ms(ps);
}

int peer_site_hub(struct hub *h, int64_t site_id, int64_t *hub_id)
{
    struct peers *ps = h->peers;
    struct place *pl;
    int64_t where = 0, sid = 0;
    int rc;

    if (ps == NULL)
        return -ENOENT;
    pl = place_slot(ps, site_id);
    if (pl->site_id == site_id && pl->gen == h->gen &&
        now_ms(ps) - pl->at_ms < (pl->hub_id < 0 ? PEER_PLACE_NONE_MS : PEER_PLACE_TTL_MS)) {
        *hub_id = pl->hub_id;
        return pl->hub_id < 0 ? -ENOENT : 0;
    }
    rc = registry_session_where(h->reg, site_id, &where, &sid);
    if (rc < 0 && rc != -ENOENT) {
        /* The database is away: the place last read (or noted) still
         * serves, whatever its generation (losing the listener bumps it),
         * as the tunnel it names still does and no newer session can be
         * recorded meanwhile; auth.c's rows do the same. Read again next
         * time. */
        if (pl->site_id == site_id && pl->hub_id >= 0) {
            *hub_id = pl->hub_id;
            return 0;
        }
        return rc;
    }
    pl->site_id = site_id;
    pl->hub_id = rc == 0 ? where : -1;
    pl->session_id = sid;
    pl->gen = h->gen;
    pl->at_ms = now_ms(ps);
    *hub_id = pl->hub_id;
    return rc;
}

/* The link to hub hub_id when it is up, else NULL. */
static struct peer_out *out_up(struct hub *h, int64_t hub_id)
{
    struct peer_out *o;

    if (h->peers == NULL || h->peers->stopping || hub_id <= 0)
        return NULL;
    o = out_find(h->peers, hub_id);
    if (o == NULL || o->state != PEER_UP || o->conn == NULL || o->conn->closing)
        return NULL;
    return o;
}

int peer_link_up(struct hub *h, int64_t hub_id)
{
    return out_up(h, hub_id) != NULL;
}

size_t peer_site_slots(struct hub *h, int64_t site_id)
{
    struct place *pl = h->peers != NULL ? place_slot(h->peers, site_id) : NULL;
    struct peer_out *o;

    /* The place proxy_route just read: no database read here. */
    if (pl == NULL || pl->site_id != site_id || (o = out_up(h, pl->hub_id)) == NULL)
        return 0;
    return tmux_stream_slots(&o->mux);
}

int peer_stream_open(struct hub *h, int64_t hub_id, const nghttp2_nv *nva, size_t n, int has_body,
                     const struct tstream_ops *ops, void *arg, struct tstream **out)
{
    struct peer_out *o = out_up(h, hub_id);

    if (o == NULL || h->draining)
        return -ENOTCONN;
    return tmux_stream_open(&o->mux, nva, n, has_body, ops, arg, out);
}

void peer_free(struct hub *h)
{
    struct peers *ps = h->peers;

    if (ps == NULL)
        return;
    /* The loop ran every close callback: no link holds a conn. */
    while (!LIST_EMPTY(&ps->out)) {
        struct peer_out *o = LIST_FIRST(&ps->out);

        LIST_REMOVE(o, link);
        free(o);
    }
    if (ps->ctx != NULL)
        wolfSSL_CTX_free(ps->ctx);
    free(ps);
    h->peers = NULL;
}
