/* Telling systemd how the daemon is doing (sd_notify): READY, STATUS, WATCHDOG, STOPPING. */
/* SPDX-License-Identifier: MIT */
#ifndef TETHER_NOTIFY_H
#define TETHER_NOTIFY_H

#include <stdint.h>
#include <uv.h>

/*
 * Through libsystemd's sd_notify when tether was built with it
 * (TETHER_HAVE_SYSTEMD); otherwise every call does nothing. Without
 * NOTIFY_SOCKET in the environment (not started by systemd with Type=notify)
 * the calls do nothing either. Errors are ignored: a lost notification must
 * never stop the daemon.
 */

/* READY=1: the daemon serves (hub: listening; site: first tunnel up). */
void notify_ready(void);
/* STATUS=text: one line systemctl status shows. */
void notify_status(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* STOPPING=1: a drain or stop began. */
void notify_stopping(void);
/* WATCHDOG=1: the loop is alive. */
void notify_watchdog(void);
/* Half the watchdog interval systemd asked for (WatchdogSec=, via
 * WATCHDOG_USEC and WATCHDOG_PID) in milliseconds, or 0 when off. */
uint64_t notify_watchdog_period_ms(void);

/* A timer sending WATCHDOG=1 every notify_watchdog_period_ms (at most
 * every NOTIFY_TICK_MAX_MS), then calling status(arg) when set, so that the
 * STATUS line stays fresh. */
#define NOTIFY_TICK_MAX_MS 5000
struct notify_timer {
    uv_timer_t timer; /* embedded; the caller closes it with uv_close */
    void (*status)(void *arg);
    void *arg; /* borrowed */
};

/* Initialises nt->timer on loop and starts it when systemd's watchdog is on
 * (otherwise it stays idle). The timer never keeps the loop alive. status
 * and arg are copied into nt. */
void notify_watchdog_start(uv_loop_t *loop, struct notify_timer *nt, void (*status)(void *arg),
                           void *arg);

#endif
