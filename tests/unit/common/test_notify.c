/* Unit tests for common/notify.c: what reaches a real NOTIFY_SOCKET (a datagram socket bound here).
 */
/* SPDX-License-Identifier: MIT */
#include "common/notify.h"
#include "testutil.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static int g_sock = -1;

#ifdef TETHER_HAVE_SYSTEMD
/* The next datagram (waits up to 1 s), "" when none came. */
static void next_msg(char *buf, size_t cap)
{
    struct timeval tv = {.tv_sec = 1};
    ssize_t n;

    setsockopt(g_sock, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    n = recv(g_sock, buf, cap - 1, 0);
    buf[n > 0 ? n : 0] = '\0';
}

static void count_tick(void *arg)
{
    (*(int *)arg)++;
}
#endif

int main(void)
{
    char dir[] = "/tmp/tether-notify-XXXXXX", path[64], msg[512], env[32];
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    uv_loop_t loop;
    struct notify_timer t;
    int ticks = 0;

    CHECK(mkdtemp(dir) != NULL);
    snprintf(path, sizeof(path), "%s/notify", dir);
    g_sock = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    CHECK(g_sock >= 0);
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    CHECK_EQ_INT(bind(g_sock, (struct sockaddr *)&sa, sizeof(sa)), 0);
    setenv("NOTIFY_SOCKET", path, 1);
    unsetenv("WATCHDOG_USEC");
    CHECK_EQ_INT((int)notify_watchdog_period_ms(), 0);

#ifdef TETHER_HAVE_SYSTEMD
    notify_ready();
    next_msg(msg, sizeof(msg));
    CHECK_EQ_STR(msg, "READY=1");
    notify_status("%d sites online", 3);
    next_msg(msg, sizeof(msg));
    CHECK_EQ_STR(msg, "STATUS=3 sites online");
    notify_stopping();
    next_msg(msg, sizeof(msg));
    CHECK_EQ_STR(msg, "STOPPING=1");
    /* A status longer than a line is cut, not overflowed. */
    memset(msg, 'x', 400);
    msg[400] = '\0';
    notify_status("%s", msg);
    next_msg(msg, sizeof(msg));
    CHECK(strncmp(msg, "STATUS=xxx", 10) == 0);
    CHECK(strlen(msg) < 256);

    /* WatchdogSec=2 for this PID: WATCHDOG=1 every second from the timer. */
    setenv("WATCHDOG_USEC", "200000", 1);
    snprintf(env, sizeof(env), "%ld", (long)getpid());
    setenv("WATCHDOG_PID", env, 1);
    CHECK_EQ_INT((int)notify_watchdog_period_ms(), 100);
    CHECK_EQ_INT(uv_loop_init(&loop), 0);
    notify_watchdog_start(&loop, &t, count_tick, &ticks);
    CHECK(uv_is_active((uv_handle_t *)&t.timer));
    /* It never keeps a loop alive; referenced here so that the loop runs it. */
    CHECK(!uv_has_ref((uv_handle_t *)&t.timer));
    uv_ref((uv_handle_t *)&t.timer);
    uv_run(&loop, UV_RUN_ONCE);
    next_msg(msg, sizeof(msg));
    CHECK_EQ_STR(msg, "WATCHDOG=1");
    CHECK(ticks >= 1); /* the status callback ran after it */
    uv_close((uv_handle_t *)&t.timer, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK_EQ_INT(uv_loop_close(&loop), 0);
    /* Another process's watchdog is not ours. */
    setenv("WATCHDOG_PID", "1", 1);
    CHECK_EQ_INT((int)notify_watchdog_period_ms(), 0);
#else
    /* Built without libsystemd: nothing is ever sent. */
    (void)env;
    (void)loop;
    (void)t;
    (void)ticks;
    notify_ready();
    struct timeval tv = {.tv_usec = 200000};
    setsockopt(g_sock, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    CHECK(recv(g_sock, msg, sizeof(msg), 0) < 0);
#endif
    close(g_sock);
    unlink(path);
    rmdir(dir);
    TEST_DONE();
}
