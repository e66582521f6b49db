/* Hearing of changes other hubs make to a shared registry: a listener driven by the hub's loop. */
/* SPDX-License-Identifier: MIT */
#ifndef TETHER_NOTES_H
#define TETHER_NOTES_H

#include <uv.h>

#include "registry.h"

/* Hubs that share one PostgreSQL database each cache what they read
 * (tokens, sites) and hold tunnels of their own; a change made through one
 * hub must reach the others (docs/scale-out.md, "Notifications"). The
 * registry sends a note in the transaction of each such change
 * (registry.h, struct reg_note) and a listener hears them: on PostgreSQL
 * one more connection of its own, non-blocking, LISTENing, read from the
 * loop; it reconnects by itself when lost. SQLite has no listener: one hub
 * per file, and its changes are its own. */

struct registry_listener;

struct registry_listen_ops {
    /* A change another hub (or this one: note->own) committed. */
    void (*note)(void *arg, const struct reg_note *note);
    /* Listening (again): from now on every change is heard. Notes sent
     * while the listener was away are lost: after down, what was read
     * meanwhile must be read again. first: the first time since start. */
    void (*up)(void *arg, int first);
    /* Not listening: the connection failed, was lost, or an attempt to
     * connect again failed (every attempt calls it; first says it is the
     * first since the listener was last up, or since start). why: a
     * one-line reason, valid for the call. The listener tries again after
     * a backoff (0.1 s doubling to 2 s). */
    void (*down)(void *arg, int first, const char *why);
};

/* Starts listening to r's database on loop, calling ops (with arg) from
 * the loop. 0 and *out; -ENOTSUP when r's backend has nothing to listen to
 * (SQLite); -ENOMEM. The first connection is made in the background: up
 * or down comes later. */
int registry_listen(struct registry *r, uv_loop_t *loop, const struct registry_listen_ops *ops,
                    void *arg, struct registry_listener **out);
/* Stops: no callback after this; the listener frees itself once its
 * handles are closed (the loop must run). NULL is a no-op. */
void registry_listen_stop(struct registry_listener *l);

#endif
