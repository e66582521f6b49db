/* Unit test of conn_start: a peer that reset before accept has no address, and the conn says so. */
/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdio.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "common/conn.h"
#include "testutil.h"

static struct conn_ctx group;
static struct conn *accepted;
static int start_rc = 1;
static int closed;
static char peer[64];

static void on_close(struct conn *c, const char *reason)
{
    closed++;
}

static const struct conn_ops ops = {.on_close = on_close};

/* Fills the stack below the caller with AF_INET6 so that a read of an unset
 * sockaddr_storage there would take it for IPv6 ("[?]:0"). */
static void __attribute__((noinline)) paint_stack(void)
{
    volatile uint16_t area[4096];
    for (size_t i = 0; i < sizeof(area) / sizeof(area[0]); i++)
        area[i] = AF_INET6;
}

static int __attribute__((noinline)) start_painted(struct conn *c)
{
    paint_stack();
    return conn_start(c, 1000);
}

static void on_connection(uv_stream_t *server, int status)
{
    struct conn *c;

    CHECK_EQ_INT(status, 0);
    c = conn_new(&group, &ops, NULL);
    CHECK(c != NULL);
    if (c == NULL)
        return;
    CHECK_EQ_INT(uv_accept(server, (uv_stream_t *)&c->tcp), 0);
    start_rc = start_painted(c);
    accepted = c;
    snprintf(peer, sizeof(peer), "%s", c->peer);
    conn_close(c, "test done");
    uv_close((uv_handle_t *)server, NULL);
}

int main(void)
{
    uv_loop_t *loop = uv_default_loop();
    uv_tcp_t server;
    struct sockaddr_in sa;
    int len = sizeof(sa), fd;
    struct linger lg = {1, 0};

    conn_ctx_init(&group, loop);
    uv_ip4_addr("127.0.0.1", 0, &sa);
    uv_tcp_init(loop, &server);
    CHECK_EQ_INT(uv_tcp_bind(&server, (const struct sockaddr *)&sa, 0), 0);
    CHECK_EQ_INT(uv_tcp_getsockname(&server, (struct sockaddr *)&sa, &len), 0);
    CHECK_EQ_INT(uv_listen((uv_stream_t *)&server, 8, on_connection), 0);

    /* Connect, then reset at once (linger 0): the connection waits in the
     * accept queue with its peer already gone. */
    fd = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(fd >= 0);
    CHECK_EQ_INT(connect(fd, (const struct sockaddr *)&sa, sizeof(sa)), 0);
    CHECK_EQ_INT(setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
    close(fd);
    usleep(50000);

    uv_run(loop, UV_RUN_DEFAULT);
    CHECK(accepted != NULL);
    /* The address could not be read: an error, never a made-up peer. */
    CHECK(start_rc < 0);
    CHECK_EQ_STR(peer, "?:0");
    CHECK_EQ_INT(closed, 1);
    CHECK_EQ_INT(uv_loop_close(loop), 0);
    TEST_DONE();
}
