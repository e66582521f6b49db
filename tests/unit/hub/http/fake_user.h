/* For the hub/http unit tests: a hub with only what the user front end needs (loop, deadlines,
 * dispatch) and user connections on fake conns, driven byte by byte without sockets. */
/* SPDX-License-Identifier: MIT */
#ifndef TETHER_TEST_FAKE_USER_H
#define TETHER_TEST_FAKE_USER_H

#include <string.h>

#include "common/buf.h"
#include "common/conn.h"
#include "hub/core/hub.h"
#include "hub/http/ureq.h"
#include "hub/http/user.h"
#include "hub/core/ipcount.h"
#include "testutil.h"

#define FU_PEER "192.0.2.7:40000"

static struct hub fu_hub;

/* dispatch: where each request head goes. */
static void fu_init(hub_dispatch_fn dispatch)
{
    fu_hub.loop = uv_default_loop();
    conn_ctx_init(&fu_hub.conns, fu_hub.loop);
    fu_hub.dispatch = dispatch;
    fu_hub.cfg.request_head_timeout_ms = 10000;
    fu_hub.cfg.idle_timeout_ms = 10000;
    fu_hub.cfg.request_body_timeout_ms = 10000;
    fu_hub.cfg.max_user_conns_per_ip = 64;
}

/* Lets the loop run what is due now (timers at 0 ms, closes), a few rounds. */
static void fu_spin(void)
{
    for (int i = 0; i < 8; i++)
        uv_run(fu_hub.loop, UV_RUN_NOWAIT);
}

/* One user connection: what the hub writes lands in sink.out. */
struct fu_conn {
    struct conn_sink sink;
    struct conn *c;
    size_t seen; /* bytes of sink.out already read by fu_take */
};

static void fu_open(struct fu_conn *u, const char *alpn)
{
    memset(u, 0, sizeof(*u));
    buf_init(&u->sink.out);
    u->c = conn_new_fake(&fu_hub.conns, &u->sink, FU_PEER);
    CHECK(u->c != NULL);
    /* user_attach takes over the connection's count, as the listener's. */
    CHECK_EQ_INT(hub_users_inc(&fu_hub, FU_PEER), 0);
    CHECK_EQ_INT(user_attach(&fu_hub, u->c, alpn), 0);
}

/* Feeds in[0..len) in pieces of piece bytes, the loop running between. */
static void fu_feed(struct fu_conn *u, const void *in, size_t len, size_t piece)
{
    const uint8_t *p = in;

    for (size_t off = 0; off < len && !u->sink.closed; off += piece) {
        size_t n = len - off < piece ? len - off : piece;

        if (!u->c->closing)
            conn_fake_feed(u->c, p + off, n);
        fu_spin();
    }
}

static void fu_feeds(struct fu_conn *u, const char *s, size_t piece)
{
    fu_feed(u, s, strlen(s), piece);
}

/* 1 once the hub closed (or is closing) the connection. */
static int fu_closing(const struct fu_conn *u)
{
    return u->sink.closed || u->c->closing;
}

/* The hub's output not read yet; *len its size. */
static const uint8_t *fu_take(struct fu_conn *u, size_t *len)
{
    const uint8_t *p = buf_head(&u->sink.out) + u->seen;

    *len = u->sink.out.len - u->seen;
    u->seen = u->sink.out.len;
    return p;
}

/* Closes the connection if the hub did not, and lets it be freed. */
static void fu_close(struct fu_conn *u)
{
    if (!u->sink.closed && !u->c->closing)
        conn_close(u->c, "test done");
    for (int i = 0; i < 100 && !u->sink.closed; i++)
        fu_spin();
    CHECK(u->sink.closed);
    buf_free(&u->sink.out);
}

/* At the end: no connection of the hub's left open. */
static void fu_done(void)
{
    fu_spin();
    CHECK_EQ_INT(hub_users_count(&fu_hub, FU_PEER), 0);
    hub_users_free(&fu_hub);
    fu_spin();
}

#endif
