/* Hub listeners: one port for tunnels and users, told apart by the ALPN in the ClientHello before
 * TLS starts. */
/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/clienthello.h"
#include "../common/conn.h"
#include "../common/log.h"
#include "../common/net.h"
#include "hub.h"
#include "tunnel.h"
#include "user.h"

/* A connection between accept and the end of its TLS handshake. */
struct handshake {
    struct hub *h;
    struct conn *c;
    int tunnel;
    int counted;
    int waiting; /* queued behind the per-address cap */
    struct handshake *wprev, *wnext;
    struct tls_pin_verifier v;
    struct reg_site site;
    char refusal[128];
};

static int check_site_pin(void *arg, const char *pin)
{
    struct handshake *hs = arg;
    int rc;

    registry_site_clear(&hs->site);
    memset(&hs->site, 0, sizeof(hs->site));
    rc = registry_site_by_pin(hs->h->reg, pin, &hs->site);
    if (rc == -ENOENT) {
        snprintf(hs->refusal, sizeof(hs->refusal), "unknown key");
        return -EACCES;
    }
    if (rc != 0) {
        snprintf(hs->refusal, sizeof(hs->refusal), "registry error");
        return -EIO;
    }
    if (strcmp(hs->site.state, "active") != 0) {
        snprintf(hs->refusal, sizeof(hs->refusal), "site %s is %s", hs->site.name, hs->site.state);
        return -EACCES;
    }
    return 0;
}

/* Connections over the per-address handshake cap wait here with reading
 * paused (their ClientHello stays in the kernel) instead of being refused:
 * a reconnect storm from one NAT address is slowed, not dropped. */
#define WAIT_MAX 8192
static struct handshake *waiters;
static size_t n_waiters;

static void wait_unlink(struct handshake *hs)
{
    if (!hs->waiting)
        return;
    if (hs->wprev)
        hs->wprev->wnext = hs->wnext;
    else
        waiters = hs->wnext;
    if (hs->wnext)
        hs->wnext->wprev = hs->wprev;
    hs->waiting = 0;
    n_waiters--;
}

static void wake_one(struct hub *h, const struct conn *gone)
{
    const char *colon = strrchr(gone->peer, ':');
    size_t iplen = colon ? (size_t)(colon - gone->peer) : strlen(gone->peer);
    struct handshake *oldest = NULL;

    /* New waiters go to the head: the last match waited longest. */
    for (struct handshake *w = waiters; w != NULL; w = w->wnext)
        if (strncmp(w->c->peer, gone->peer, iplen) == 0 && w->c->peer[iplen] == ':')
            oldest = w;
    if (oldest == NULL || hub_pending_inc(h, oldest->c->peer) != 0)
        return;
    wait_unlink(oldest);
    oldest->counted = 1;
    conn_pause_reading(oldest->c, 0);
}

static void hs_free(struct handshake *hs, struct conn *c)
{
    wait_unlink(hs);
    if (hs->counted) {
        hub_pending_dec(hs->h, c->peer);
        wake_one(hs->h, c);
    }
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
        return -1;
    }
    hs->tunnel = (info.alpn & CLIENTHELLO_ALPN_TUNNEL) != 0;
    if (hs->tunnel) {
        hs->v.check = check_site_pin;
        hs->v.arg = hs;
        rc = conn_start_tls(c, h->tunnel_ctx, NULL, "tether/1", 1, &hs->v);
    } else {
        /* Users are never asked for a certificate. */
        rc = conn_start_tls(c, h->user_ctx, NULL, "h2,http/1.1", 0, NULL);
    }
    return rc < 0 ? -1 : 0;
}

static void hs_handshake(struct conn *c)
{
    struct handshake *hs = c->owner;
    struct hub *h = hs->h;
    char alpn[32];
    int rc;

    tls_alpn(&c->tls, alpn, sizeof(alpn));
    if (hs->tunnel) {
        if (hs->v.result != 0 || strcmp(alpn, "tether/1") != 0) {
            conn_close(c, "tunnel without a verified key");
            return;
        }
        rc = tunnel_attach(h, c, &hs->site);
    } else {
        rc = user_attach(h, c, alpn);
    }
    /* The conn now belongs to the tunnel or user layer. */
    hs_free(hs, c);
    if (rc != 0)
        conn_close(c, "out of memory");
}

static void hs_close(struct conn *c, const char *reason)
{
    struct handshake *hs = c->owner;
    if (hs->tunnel) {
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

static void on_connection(uv_stream_t *server, int status)
{
    struct hub *h = server->data;
    struct handshake *hs;
    struct conn *c;

    if (status < 0)
        return;
    hs = calloc(1, sizeof(*hs));
    if (hs == NULL)
        return;
    hs->h = h;
    c = conn_new(h->loop, &hs_ops, hs);
    if (c == NULL) {
        free(hs);
        return;
    }
    hs->c = c;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0 || h->draining) {
        conn_close(c, "accept failed");
        return;
    }
    if (conn_start(c, h->cfg.handshake_timeout_ms) != 0) {
        conn_close(c, "read start failed");
        return;
    }
    if (hub_pending_inc(h, c->peer) != 0) {
        if (n_waiters >= WAIT_MAX) {
            log_event(LOG_WARN, "handshake_cap", "remote=%s waiting=%zu", c->peer, n_waiters);
            conn_close(c, "too many pending handshakes");
            return;
        }
        conn_pause_reading(c, 1);
        hs->waiting = 1;
        hs->wnext = waiters;
        if (waiters)
            waiters->wprev = hs;
        waiters = hs;
        n_waiters++;
        return;
    }
    hs->counted = 1;
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
    log_event(LOG_INFO, "listening", "addr=%s", hostport);
    return 0;
}
