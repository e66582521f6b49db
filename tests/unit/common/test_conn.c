/* Unit tests of conn: a peer that reset before accept has no address, and the conn says so; drained
 * buffers go (small ones at once, large ones at conn_trim). */
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

/* --- buffers of a quiet connection --- */

static struct conn *writer;
static uv_tcp_t sink_srv, sink_conn;
static int drains;
static size_t wbuf_cap_after_small = 1, out_cap_after_small = 1;
static size_t wbuf_cap_after_big, wbuf_cap_after_trim = 1, out_cap_after_trim = 1;
static size_t sunk;
static uint8_t big[256 * 1024];

static void w_drain(struct conn *c)
{
    if (conn_out_pending(c) > 0 || c->writing)
        return;
    drains++;
    if (drains == 1) {
        /* A small write went: the connection holds no buffer. */
        wbuf_cap_after_small = c->wbuf.cap;
        out_cap_after_small = c->tls.out.cap;
        memset(big, 'b', sizeof(big));
        CHECK_EQ_INT(conn_write(c, big, sizeof(big)), 0);
        conn_flush(c);
    } else if (drains == 2) {
        /* A large one: kept for the next burst, until the owner trims. */
        wbuf_cap_after_big = c->wbuf.cap + c->tls.out.cap;
        conn_trim(c);
        wbuf_cap_after_trim = c->wbuf.cap;
        out_cap_after_trim = c->tls.out.cap;
        conn_close(c, "test done");
    }
}

static const struct conn_ops w_ops = {.on_drain = w_drain, .on_close = on_close};

static void sink_alloc(uv_handle_t *h, size_t sz, uv_buf_t *b)
{
    static char space[65536];
    *b = uv_buf_init(space, sizeof(space));
}

static void sink_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    if (n > 0)
        sunk += (size_t)n;
    else if (n < 0)
        uv_close((uv_handle_t *)s, NULL);
}

static void sink_accept(uv_stream_t *server, int status)
{
    CHECK_EQ_INT(status, 0);
    uv_tcp_init(server->loop, &sink_conn);
    CHECK_EQ_INT(uv_accept(server, (uv_stream_t *)&sink_conn), 0);
    uv_read_start((uv_stream_t *)&sink_conn, sink_alloc, sink_read);
    uv_close((uv_handle_t *)server, NULL);
}

static void w_connected(uv_connect_t *req, int status)
{
    struct conn *c = req->data;

    CHECK_EQ_INT(status, 0);
    CHECK_EQ_INT(conn_start(c, 0), 0);
    CHECK_EQ_INT(conn_start_plain(c), 0);
    CHECK_EQ_INT(conn_write(c, (const uint8_t *)"ping", 4), 0);
    conn_flush(c);
}

static void test_buffers_released(uv_loop_t *loop)
{
    static uv_connect_t creq;
    struct sockaddr_in sa;
    int len = sizeof(sa);

    closed = 0;
    uv_ip4_addr("127.0.0.1", 0, &sa);
    uv_tcp_init(loop, &sink_srv);
    CHECK_EQ_INT(uv_tcp_bind(&sink_srv, (const struct sockaddr *)&sa, 0), 0);
    CHECK_EQ_INT(uv_tcp_getsockname(&sink_srv, (struct sockaddr *)&sa, &len), 0);
    CHECK_EQ_INT(uv_listen((uv_stream_t *)&sink_srv, 8, sink_accept), 0);
    writer = conn_new(&group, &w_ops, NULL);
    CHECK(writer != NULL);
    if (writer == NULL)
        return;
    creq.data = writer;
    CHECK_EQ_INT(uv_tcp_connect(&creq, &writer->tcp, (const struct sockaddr *)&sa, w_connected), 0);
    uv_run(loop, UV_RUN_DEFAULT);
    CHECK_EQ_INT(drains, 2);
    CHECK_EQ_INT(wbuf_cap_after_small, 0);
    CHECK_EQ_INT(out_cap_after_small, 0);
    CHECK(wbuf_cap_after_big >= sizeof(big));
    CHECK_EQ_INT(wbuf_cap_after_trim, 0);
    CHECK_EQ_INT(out_cap_after_trim, 0);
    CHECK_EQ_INT(sunk, 4 + sizeof(big));
    CHECK_EQ_INT(closed, 1);
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
    test_buffers_released(loop);
    CHECK_EQ_INT(uv_loop_close(loop), 0);
    TEST_DONE();
}
