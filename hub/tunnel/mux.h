/* The hub's HTTP/2 client end that opens request streams to a peer: shared by site tunnels and peer
 * links. */
/* SPDX-License-Identifier: MIT */
#ifndef TETHER_MUX_H
#define TETHER_MUX_H

#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>
#include <uv.h>

#include "../../common/h2.h"
#include "tunnel.h"

/* Requests in flight on one connection, open or waiting in nghttp2 for one
 * of the peer's stream slots: past this the hub answers 503 at once instead
 * of queueing without bound. */
#define TMUX_MAX_STREAMS 1024

struct tstream;
LIST_HEAD(tstream_list, tstream);

/* The words a kind of connection uses for its far end in stream errors and
 * close reasons ("site refused the stream"): static strings. */
struct tmux_kind {
    const char *gone;    /* the connection closed under a stream */
    const char *refused; /* REFUSED_STREAM */
    const char *reset;   /* any other reset */
    const char *goaway;  /* close reason once the peer sent GOAWAY */
};

/* Embedded in its connection's owner (struct tunnel, struct peer_link). The
 * h2 session's user data is the tmux. */
struct tmux {
    struct h2 h2;
    uv_loop_t *loop;
    const struct tmux_kind *kind;
    struct tstream_list streams; /* open streams, owned; cancelled ones stay until closed */
    size_t n_streams;            /* streams of the list not released (tunnel_stream_cancel) */
    uint64_t n_opened;           /* streams opened since the session began */
    uint64_t last_heard_ms;      /* loop time of the last frame received */
    int ping_outstanding;        /* a PING was sent and no frame came since */
    char close_reason[128];      /* "" until a reason is known */
};

/* Starts the client session on c (role: the h2 settings to send). */
int tmux_open(struct tmux *m, uv_loop_t *loop, struct conn *c, enum h2_role role,
              const struct tmux_kind *kind);
/* The connection closed: every stream hears on_error(TSTREAM_ERR_GONE) and
 * is freed, then the session. */
void tmux_close(struct tmux *m);
/* Opens a stream carrying a request, as tunnel_stream_open (tunnel.h) once
 * the owner checked it takes streams. */
int tmux_stream_open(struct tmux *m, const nghttp2_nv *nva, size_t n, int has_body,
                     const struct tstream_ops *ops, void *arg, struct tstream **out);
/* Streams the peer serves at once (its SETTINGS_MAX_CONCURRENT_STREAMS, at
 * most TMUX_MAX_STREAMS). */
size_t tmux_stream_slots(const struct tmux *m);
/* Sends a PING unless one is outstanding. */
void tmux_ping(struct tmux *m);

#endif
