/* Telling systemd how the daemon is doing (sd_notify): READY, STATUS, WATCHDOG, STOPPING. */
/* SPDX-License-Identifier: MIT */
#include "notify.h"

#include <stdarg.h>
#include <stdio.h>

#ifdef TETHER_HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

static void send_state(const char *state)
{
#ifdef TETHER_HAVE_SYSTEMD
    (void)sd_notify(0, state);
#else
    (void)state;
#endif
}

void notify_ready(void)
{
    send_state("READY=1");
}

void notify_status(const char *fmt, ...)
{
    char line[256] = "STATUS=";
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(line + 7, sizeof(line) - 7, fmt, ap);
    va_end(ap);
    send_state(line);
}

void notify_stopping(void)
{
    send_state("STOPPING=1");
}

void notify_watchdog(void)
{
    send_state("WATCHDOG=1");
}

uint64_t notify_watchdog_period_ms(void)
{
#ifdef TETHER_HAVE_SYSTEMD
    uint64_t usec = 0;

    if (sd_watchdog_enabled(0, &usec) > 0 && usec > 0)
        return usec / 2000 > 0 ? usec / 2000 : 1;
#endif
    return 0;
}

static void watchdog_tick(uv_timer_t *t)
{
    struct notify_timer *nt = (struct notify_timer *)t; /* timer is its first member */

    notify_watchdog();
    if (nt->status != NULL)
        nt->status(nt->arg);
}

void notify_watchdog_start(uv_loop_t *loop, struct notify_timer *nt, void (*status)(void *arg),
                           void *arg)
{
    uint64_t ms = notify_watchdog_period_ms();

    nt->status = status;
    nt->arg = arg;
    uv_timer_init(loop, &nt->timer);
    if (ms == 0)
        return;
    if (ms > NOTIFY_TICK_MAX_MS)
        ms = NOTIFY_TICK_MAX_MS;
    uv_timer_start(&nt->timer, watchdog_tick, ms, ms);
    /* The watchdog alone must not keep a stopping daemon's loop running. */
    uv_unref((uv_handle_t *)&nt->timer);
}
