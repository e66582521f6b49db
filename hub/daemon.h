/* One running hub on a loop: its state set up from a state directory, served, drained and stopped.
 */
/* SPDX-License-Identifier: MIT */
#ifndef TETHER_HUB_DAEMON_H
#define TETHER_HUB_DAEMON_H

#include <stddef.h>
#include <uv.h>

#include "settings.h"

struct hub;

struct daemon_opts {
    struct settings_cli cli; /* copied; its strings are borrowed and must outlive the hub */
    /* The program sets this: the loop and the process are this hub's alone,
     * so SIGTERM/SIGINT drain, SIGHUP reloads, and a stop arms a watchdog
     * that closes whatever handle still keeps the loop alive. A test running
     * hubs in its own process leaves it 0 (no signal handler is installed)
     * and calls daemon_drain, daemon_reload and daemon_stop itself. */
    int program;
};

/* Opens STATE/hub.db, loads the key, TLS contexts, settings and the query
 * engine, and listens, all on loop. On success *out is the running hub.
 * On failure err says why (one line) and *out may still be set, with some
 * handles open on the loop: in both cases the caller ends with daemon_stop,
 * lets the loop run the close callbacks, then daemon_free. *out is NULL only
 * when nothing was allocated. Logs hub_started. */
int daemon_start(uv_loop_t *loop, const struct daemon_opts *o, struct hub **out, char *err,
                 size_t cap);
/* The first listen address's bound port (what port 0 became); 0 if none. */
int daemon_port(const struct hub *h, size_t i);
/* SIGTERM: stop accepting, let streams finish for drain_grace, then stop.
 * A second call stops at once. */
void daemon_drain(struct hub *h, const char *why);
/* SIGHUP: read the configuration files again (the flags still win); a bad
 * file keeps the running settings. 0 or a negative code. */
int daemon_reload(struct hub *h);
/* Closes everything of this hub that keeps the loop alive (listeners, its
 * connections, query engine, signals, timers); those of another hub on the
 * same loop stay. why (NULL: a start-up failure) is logged. Idempotent; a
 * later call also closes the program's shutdown watchdog, so the program
 * calls it once more after uv_run returned. No callback runs from inside. */
void daemon_stop(struct hub *h, const char *why);
/* After daemon_stop, once the loop has run the close callbacks (uv_run
 * returned, or the loop was run until this hub's connections are gone):
 * frees the hub. NULL is accepted. */
void daemon_free(struct hub *h);
/* Runs the loop until every handle is closed and its callback ran, closing
 * any handle still open (with a warning when warn is set); then the loop is
 * closed. */
void daemon_loop_teardown(uv_loop_t *loop, int warn);

#endif
