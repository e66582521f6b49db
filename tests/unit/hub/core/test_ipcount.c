/* Unit tests for hub/net/ipcount.c: per-address handshake and user-connection counts, without
 * sockets. */
/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hub/core/ipcount.h"
#include "testutil.h"

/* The user cap counts an IPv4 address, or an IPv6 /64, whatever the port;
 * an IPv4-mapped IPv6 address is its IPv4 address. */
static void test_users_keys(struct hub *h)
{
    h->cfg.max_user_conns_per_ip = 2;
    CHECK_EQ_INT(hub_users_inc(h, "192.0.2.1:1000"), 0);
    CHECK_EQ_INT(hub_users_inc(h, "[::ffff:192.0.2.1]:2000"), 0);
    CHECK_EQ_INT(hub_users_inc(h, "192.0.2.1:3000"), -EBUSY);
    CHECK_EQ_INT(hub_users_count(h, "192.0.2.1:9"), 2);
    CHECK_EQ_INT(hub_users_inc(h, "192.0.2.2:1000"), 0); /* another address */

    CHECK_EQ_INT(hub_users_inc(h, "[2001:db8:1:2::1]:443"), 0);
    CHECK_EQ_INT(hub_users_inc(h, "[2001:db8:1:2:ffff::9]:443"), 0); /* same /64 */
    CHECK_EQ_INT(hub_users_inc(h, "[2001:db8:1:2::77]:1"), -EBUSY);
    CHECK_EQ_INT(hub_users_inc(h, "[2001:db8:1:3::1]:443"), 0); /* next /64 */
    CHECK_EQ_INT(hub_users_count(h, "[2001:db8:1:2::]:0"), 2);

    hub_users_dec(h, "192.0.2.1:1000");
    CHECK_EQ_INT(hub_users_count(h, "192.0.2.1:1"), 1);
    CHECK_EQ_INT(hub_users_inc(h, "192.0.2.1:4000"), 0); /* room again */
    hub_users_dec(h, "192.0.2.1:1");
    hub_users_dec(h, "192.0.2.1:1");
    CHECK_EQ_INT(hub_users_count(h, "192.0.2.1:1"), 0);
    CHECK_EQ_INT(hub_users_count(h, "192.0.2.2:1"), 1);

    h->cfg.max_user_conns_per_ip = 0; /* no user connections at all */
    CHECK_EQ_INT(hub_users_inc(h, "198.51.100.1:1"), -EBUSY);
    hub_users_free(h);
    CHECK_EQ_INT(hub_users_count(h, "192.0.2.2:1"), 0);
}

/* Many addresses grow the table; every count stays exact. */
static void test_users_many(struct hub *h)
{
    char peer[64];

    h->cfg.max_user_conns_per_ip = 3;
    for (int round = 0; round < 2; round++)
        for (int i = 0; i < 5000; i++) {
            snprintf(peer, sizeof(peer), "10.%d.%d.1:%d", i / 250, i % 250, 1000 + round);
            CHECK_EQ_INT(hub_users_inc(h, peer), 0);
        }
    for (int i = 0; i < 5000; i += 499) {
        snprintf(peer, sizeof(peer), "10.%d.%d.1:7", i / 250, i % 250);
        CHECK_EQ_INT(hub_users_count(h, peer), 2);
    }
    for (int i = 0; i < 5000; i++) {
        snprintf(peer, sizeof(peer), "10.%d.%d.1:1", i / 250, i % 250);
        hub_users_dec(h, peer);
        hub_users_dec(h, peer);
    }
    CHECK_EQ_INT(h->users.n_keys, 0); /* a key goes with its last connection */
    hub_users_free(h);
}

/* Handshakes per address: the cap is per address, and a slot comes back. */
static void test_pending(struct hub *h)
{
    char peer[64];

    h->cfg.max_pending_handshakes_per_ip = 2;
    CHECK_EQ_INT(hub_pending_inc(h, "203.0.113.5:1"), 0);
    CHECK_EQ_INT(hub_pending_inc(h, "203.0.113.5:2"), 0);
    CHECK_EQ_INT(hub_pending_inc(h, "203.0.113.5:3"), -EBUSY);
    CHECK_EQ_INT(hub_pending_inc(h, "203.0.113.6:3"), 0);
    hub_pending_dec(h, "203.0.113.5:1");
    CHECK_EQ_INT(hub_pending_inc(h, "203.0.113.5:4"), 0);
    hub_pending_dec(h, "203.0.113.5:2");
    hub_pending_dec(h, "203.0.113.5:4");
    hub_pending_dec(h, "203.0.113.6:3");
    /* 256 addresses at once fill the table: the next one is shed. */
    for (int i = 0; i < 256; i++) {
        snprintf(peer, sizeof(peer), "10.0.%d.%d:1", i / 200, i % 200);
        CHECK_EQ_INT(hub_pending_inc(h, peer), 0);
    }
    CHECK_EQ_INT(hub_pending_inc(h, "10.9.9.9:1"), -EBUSY);
    hub_pending_dec(h, "10.0.0.0:1");
    CHECK_EQ_INT(hub_pending_inc(h, "10.9.9.9:1"), 0);
}

int main(void)
{
    struct hub *a = calloc(1, sizeof(*a)), *b = calloc(1, sizeof(*b));

    CHECK(a != NULL && b != NULL);
    if (a == NULL || b == NULL)
        return 1;
    test_users_keys(a);
    test_users_many(a);
    test_pending(a);
    /* Two hubs in one process count apart. */
    b->cfg.max_user_conns_per_ip = 1;
    a->cfg.max_user_conns_per_ip = 1;
    CHECK_EQ_INT(hub_users_inc(a, "192.0.2.9:1"), 0);
    CHECK_EQ_INT(hub_users_inc(b, "192.0.2.9:1"), 0);
    CHECK_EQ_INT(hub_users_inc(a, "192.0.2.9:2"), -EBUSY);
    CHECK_EQ_INT(hub_users_count(b, "192.0.2.9:1"), 1);
    hub_users_free(a);
    hub_users_free(b);
    free(a);
    free(b);
    TEST_DONE();
}
