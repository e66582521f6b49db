/* The hub's user connections: attach after the TLS handshake, the deadlines while no request is in
 * progress (request_head_timeout, idle_timeout, request_body_timeout), close. The protocols are in
 * h1.c and h2.c, the request object in ureq.c. */
/* SPDX-License-Identifier: MIT */
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http_int.h"

#include "../core/ipcount.h"

/* --- deadlines (request_head_timeout, idle_timeout) --- */

/* Time for a closing connection's last bytes (408, GOAWAY) to go out. */
#define UC_LINGER_MS 2000

/* TCP keepalive on user connections: a WebSocket or TCP stream may idle for
 * hours. A probe each minute of silence keeps NAT and firewall mappings on
 * the user's path alive (350 s idle timeouts are common), and a user gone
 * without a FIN (a laptop closed) is found within two minutes more, so its
 * long-lived streams give their slots back. */
#define UC_KEEPALIVE_IDLE_S  60
#define UC_KEEPALIVE_INTVL_S 10
#define UC_KEEPALIVE_COUNT   6

static void idle_cb(uv_timer_t *t);

void uc_arm(struct user_conn *uc, enum uc_wait what)
{
    uint64_t ms = what == UC_HEAD   ? uc->hub->cfg.request_head_timeout_ms
                  : what == UC_IDLE ? uc->hub->cfg.idle_timeout_ms
                                    : UC_LINGER_MS;
    uc->wait = what;
    /* A peer link idles between requests: its PINGs tell whether it lives. */
    if (uc->peer_hub_id > 0 && what != UC_CLOSE) {
        uv_timer_stop(&uc->idle_timer);
        return;
    }
    uc->armed_out = uc->conn->bytes_out;
    uv_timer_start(&uc->idle_timer, idle_cb, ms, 0);
}

void uc_busy(struct user_conn *uc)
{
    uc->wait = UC_BUSY;
    uv_timer_stop(&uc->idle_timer);
}

static void idle_cb(uv_timer_t *t)
{
    struct user_conn *uc = t->data;
    struct conn *c = uc->conn;
    static const char timeout408[] = "HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\n"
                                     "Connection: close\r\n\r\n";

    if (uc->dead || c == NULL || c->closing || uc->wait == UC_BUSY)
        return;
    if (uc->wait == UC_CLOSE) {
        conn_close(c, "idle close unanswered");
        return;
    }
    /* A response still going out to a client that reads it is no idling
     * (HTTP/2: a stream whose response ended may still have bytes to send). */
    if ((conn_out_pending(c) > 0 || (uc->is_h2 && !TAILQ_EMPTY(&uc->streams))) &&
        c->bytes_out != uc->armed_out) {
        uc_arm(uc, uc->wait);
        return;
    }
    if (c->close_after_flush) {
        conn_close(c, "idle close unanswered");
        return;
    }
    uc->hub->n_users_idle_closed++;
    if (uc->is_h2) {
        h2u_goaway(uc);
    } else if (uc->wait == UC_HEAD && uc->cur != NULL && !uc->cur->resp_started) {
        conn_write(c, (const uint8_t *)timeout408, sizeof(timeout408) - 1);
    }
    conn_close_after_flush(c, uc->wait == UC_HEAD ? "request head timeout" : "idle timeout");
    if (!c->closing)
        uc_arm(uc, UC_CLOSE);
}

/* --- request body deadline (request_body_timeout) --- */

static void body_cb(uv_timer_t *t);

/* r's body is awaited from now: the conn's body timer fires at the earliest
 * deadline of the bodies it waits for (and re-arms itself from there). */
void body_watch(struct user_conn *uc, struct ureq *r)
{
    if (uc->hub->cfg.request_body_timeout_ms == 0)
        return; /* a hub set up without the default (hub.conf allows >= 0.1 s) */
    r->body_watch = 1;
    r->body_at = uv_now(uc->hub->loop);
    if (!uv_is_active((uv_handle_t *)&uc->body_timer))
        uv_timer_start(&uc->body_timer, body_cb, uc->hub->cfg.request_body_timeout_ms, 0);
}

static int body_waiting(const struct ureq *r)
{
    return r->body_watch && !r->req_ended && !r->resp_ended;
}

/* No body byte for request_body_timeout, whether the client stalls or the
 * hub stopped reading because the site does not take the upload: the
 * request is cut (408 if no answer began, else reset). */
static void body_cut(struct user_conn *uc, struct ureq *r)
{
    char detail[96];

    r->body_watch = 0;
    uc->hub->n_users_idle_closed++;
    ureq_abort(r);
    if (r->resp_started) {
        ureq_reset(r);
        return;
    }
    snprintf(detail, sizeof(detail), "no request body bytes for %llu ms",
             (unsigned long long)uc->hub->cfg.request_body_timeout_ms);
    ureq_error(r, 408, "request_timeout", detail);
    /* HTTP/1.1: the conn closes after the 408 (the body is unread), and
     * what the client sends meanwhile is ignored. */
    if (!uc->is_h2 && !uc->dead && !uc->conn->closing)
        uc_arm(uc, UC_CLOSE);
}

static void body_cb(uv_timer_t *t)
{
    struct user_conn *uc = t->data;
    uint64_t lim = uc->hub->cfg.request_body_timeout_ms, now, next;
    struct ureq *r;

again:
    if (uc->dead || uc->conn == NULL || uc->conn->closing)
        return;
    now = uv_now(uc->hub->loop);
    next = 0;
    for (r = uc->is_h2 ? TAILQ_FIRST(&uc->streams) : uc->cur; r != NULL;
         r = uc->is_h2 ? TAILQ_NEXT(r, link) : NULL) {
        if (!body_waiting(r))
            continue;
        if (now - r->body_at >= lim) {
            /* Cutting may close and free streams: scan again. */
            body_cut(uc, r);
            goto again;
        }
        if (next == 0 || lim - (now - r->body_at) < next)
            next = lim - (now - r->body_at);
    }
    if (next > 0)
        uv_timer_start(&uc->body_timer, body_cb, next, 0);
}

/* --- connection --- */

static int user_data_cb(struct conn *c, const uint8_t *data, size_t len)
{
    struct user_conn *uc = c->owner;

    return uc->is_h2 ? h2u_data(uc, data, len) : h1_data(uc, data, len);
}

static void user_drain_cb(struct conn *c)
{
    struct user_conn *uc = c->owner;

    if (uc->is_h2)
        h2u_drain(uc);
    else
        h1_drain(uc);
}

static void uc_free_cb(uv_handle_t *h)
{
    struct user_conn *uc = h->data;

    assert(uc->timers_open > 0);
    if (--uc->timers_open == 0) {
        ureq_reap(uc);
        free(uc);
    }
}

static void uc_close_timers(struct user_conn *uc)
{
    uv_close((uv_handle_t *)&uc->resume_timer, uc_free_cb);
    uv_close((uv_handle_t *)&uc->idle_timer, uc_free_cb);
    uv_close((uv_handle_t *)&uc->body_timer, uc_free_cb);
    uv_close((uv_handle_t *)&uc->reap_timer, uc_free_cb);
}

static void user_close_cb(struct conn *c, const char *reason)
{
    struct user_conn *uc = c->owner;
    uc->dead = 1;
    /* The requests' handlers hear of it; the requests are freed with uc. */
    if (uc->is_h2)
        h2u_close(uc);
    else
        h1_close(uc);
    if (uc->peer_hub_id > 0) {
        uc->peer_gone(uc->peer_arg, reason);
    } else {
        hub_users_dec(uc->hub, c->peer);
        uc->hub->n_conns[uc->is_h2 ? STATS_CONN_USER_H2 : STATS_CONN_USER_H1]--;
    }
    uc->conn = NULL;
    uc_close_timers(uc);
}

static const struct conn_ops user_conn_ops = {
    .on_data = user_data_cb,
    .on_drain = user_drain_cb,
    .on_close = user_close_cb,
};

static int attach(struct hub *h, struct conn *c, const char *alpn, int64_t peer_hub_id,
                  void (*gone)(void *arg, const char *reason), void *arg)
{
    struct user_conn *uc = calloc(1, sizeof(*uc));
    int rc = -ENOMEM;

    if (uc == NULL)
        return -ENOMEM;
    uc->hub = h;
    uc->conn = c;
    uc->peer_hub_id = peer_hub_id;
    uc->peer_gone = gone;
    uc->peer_arg = arg;
    buf_init(&uc->backlog);
    buf_init(&uc->hname);
    buf_init(&uc->hval);
    TAILQ_INIT(&uc->streams);
    TAILQ_INIT(&uc->reaped);
    uv_timer_init(h->loop, &uc->resume_timer);
    uv_timer_init(h->loop, &uc->idle_timer);
    uv_timer_init(h->loop, &uc->body_timer);
    uv_timer_init(h->loop, &uc->reap_timer);
    uc->resume_timer.data = uc->idle_timer.data = uc->body_timer.data = uc;
    uc->reap_timer.data = uc;
    uc->timers_open = 4;
    if (strcmp(alpn, "h2") == 0) {
        uc->is_h2 = 1;
        if (h2u_start(uc) != 0)
            goto out;
    } else {
        h1_start(uc);
    }
    c->ops = &user_conn_ops;
    c->owner = uc;
    (void)conn_keepalive(c, UC_KEEPALIVE_IDLE_S, UC_KEEPALIVE_INTVL_S, UC_KEEPALIVE_COUNT);
    uc_arm(uc, UC_HEAD);
    if (peer_hub_id == 0)
        h->n_conns[uc->is_h2 ? STATS_CONN_USER_H2 : STATS_CONN_USER_H1]++;
    if (uc->is_h2)
        h2_send(&uc->h2);
    rc = 0;
out:
    if (rc != 0)
        uc_close_timers(uc);
    return rc;
}

int user_attach(struct hub *h, struct conn *c, const char *alpn)
{
    return attach(h, c, alpn, 0, NULL, NULL);
}

int user_attach_peer(struct hub *h, struct conn *c, int64_t hub_id,
                     void (*gone)(void *arg, const char *reason), void *arg)
{
    if (hub_id <= 0 || gone == NULL)
        return -EINVAL;
    return attach(h, c, "h2", hub_id, gone, arg);
}
