/* A site's live tunnel on the hub: TLS-authenticated connection carrying an HTTP/2 client session
 * to the site. */
/* SPDX-License-Identifier: MIT */
#ifndef TETHER_TUNNEL_H
#define TETHER_TUNNEL_H

#include <nghttp2/nghttp2.h>
#include <stdint.h>
#include <uv.h>

#include "../../common/conn.h"
#include "../../common/h2.h"
#include "../core/hub.h"

/* Per-stream window: big enough for 1 GB/s on loopback, small enough that a
 * stalled reader pins at most this much hub memory. */
#define TUNNEL_STREAM_WINDOW (1 << 20)

/* A tunnel is opaque outside hub/tunnel/ (tunnel_int.h): it is owned by its
 * connection and freed after the connection closed, never by a caller. */
struct tunnel;
struct tstream;

/* Why a tunnel stream failed. Callers switch on this, never on the text,
 * which is only for logs and error details. */
enum tstream_err {
    TSTREAM_ERR_GONE,    /* the tunnel closed under the stream (503) */
    TSTREAM_ERR_REFUSED, /* REFUSED_STREAM: the site did not process it (503) */
    TSTREAM_ERR_RESET,   /* the site reset the stream (502) */
};

/* What a proxied request receives from its tunnel stream. arg belongs to
 * the caller. After on_end or on_error, no callback runs again. on_head,
 * on_data, on_end and on_error run only from the loop (frames arriving, the
 * connection closing), never from inside a tunnel_* call; read_body may run
 * from inside any tunnel_* call that sends (the first bytes of a body go out
 * with its HEADERS), so it must only copy. */
struct tstream_ops {
    void (*on_head)(void *arg, int status, const nghttp2_nv *nva, size_t n);
    /* Response body; the caller must later call tunnel_stream_consume(len)
     * once the bytes left the hub, which reopens the stream's window. */
    void (*on_data)(void *arg, const uint8_t *data, size_t len);
    void (*on_end)(void *arg);
    /* err says what happened; why is the same in words, for logs. */
    void (*on_error)(void *arg, enum tstream_err err, const char *why);
    /* Upload: copy up to cap request-body bytes into dst. Return the count;
     * 0 with *eof=0 means "none yet" (call tunnel_stream_resume later). */
    size_t (*read_body)(void *arg, uint8_t *dst, size_t cap, int *eof);
    /* May be NULL; when set, used instead of read_body. The request body
     * waits in the buffer it returns (*eof once nothing more will be
     * appended); the tunnel sends it from there without a copy, consuming
     * what it sent, and then calls body_taken with the count (which may
     * run where read_body may, and must not close anything either). */
    struct buf *(*body_buf)(void *arg, int *eof);
    void (*body_taken)(void *arg, size_t n);
    /* May be NULL. The site's response trailers (a trailing HEADERS frame
     * with END_STREAM), after the last on_data and just before on_end; the
     * array is valid during the call only. */
    void (*on_trailers)(void *arg, const nghttp2_nv *nva, size_t n);
    /* May be NULL. Asked once, when read_body reported eof: the request
     * trailers to send after the body, into out (at most cap; the strings
     * must stay valid until the call returns: they are copied then).
     * Returns the count, 0 for none. Only copies, as read_body. */
    size_t (*body_trailers)(void *arg, nghttp2_nv *out, size_t cap);
    /* Optional, for byte streams (CONNECT): the site ended its side
     * (END_STREAM) while the stream stays open for the upload; on_end still
     * comes when the stream closes. */
    void (*on_remote_end)(void *arg);
};

/* What the API shows of a live tunnel. The strings are borrowed from the
 * tunnel: valid until the loop runs again. */
struct tunnel_info {
    int64_t session_id;          /* the registry's session row; 0 if none is written (yet) */
    int64_t connected_since;     /* seconds since the epoch */
    int64_t last_seen;           /* seconds since the epoch the site was last heard */
    const char *peer;            /* "ip:port"; NULL once the connection is gone */
    const char *agent_version;   /* "" before the hello */
    const char *services_json;   /* "[]" before the hello */
    const char *restricted_json; /* "[]" before the hello: the restricted services */
    uint64_t bytes_in, bytes_out;
    size_t streams_open; /* requests in flight */
    uint64_t requests;   /* streams opened since connect: proxied requests and query deliveries */
};
void tunnel_get_info(const struct tunnel *t, struct tunnel_info *out);
int64_t tunnel_site_id(const struct tunnel *t);
/* The registry's row of the tunnel's session; 0 while not written yet
 * (the recorder writes it off the loop) or when it could not be. */
int64_t tunnel_session_id(const struct tunnel *t);
/* The site's name; borrowed from t. */
const char *tunnel_site_name(const struct tunnel *t);
/* 1 when t was authenticated with the key of this pin (by a 64-bit hash:
 * a tunnel keeps 8 bytes, not the pin). */
int tunnel_has_key(const struct tunnel *t, const char *pin);
/* 1 while the tunnel takes new streams (not closing). */
int tunnel_is_open(const struct tunnel *t);
/* 1 while open once the hello was answered: the site's services are known. */
int tunnel_is_ready(const struct tunnel *t);
/* A new ping interval, from the tunnel's next PING on. */
void tunnel_set_ping_interval(struct tunnel *t, uint64_t ms);

/* Called by the listener when a tunnel's TLS handshake succeeded with the
 * given pinned site (already checked active). Takes over c. */
int tunnel_attach(struct hub *h, struct conn *c, const struct reg_site *site);

/* Opens a stream carrying a request. nva must include the pseudo headers.
 * Returns 0 and *out, -ENOTCONN if the tunnel is closing or the site no
 * longer takes streams, -EBUSY if the tunnel already carries its maximum of
 * requests. On failure no callback of ops has run and none will. */
int tunnel_stream_open(struct tunnel *t, const nghttp2_nv *nva, size_t n, int has_body,
                       const struct tstream_ops *ops, void *arg, struct tstream **out);
/* 1 when the site's answer ended with its head (no body, no trailers):
 * valid from inside on_head, so a body-less answer (a gRPC "trailers-only"
 * status) is passed on as one HEADERS frame. */
int tunnel_stream_head_ended(const struct tstream *s);
/* Request body became available. */
void tunnel_stream_resume(struct tstream *s);
/* len response bytes were passed on: credit the site's window. */
void tunnel_stream_consume(struct tstream *s, size_t len);
/* The user went away: RST_STREAM(CANCEL); no callback after this. */
void tunnel_stream_cancel(struct tstream *s);

/* Cuts the tunnel (revoke, disable, replaced): GOAWAY then close. The
 * streams' on_error and the tunnel's freeing come later, from the loop. */
void tunnel_kill(struct tunnel *t, const char *reason);
/* SIGTERM: GOAWAY, let streams finish. The GOAWAY's debug data asks the
 * site to come back at a random moment within reconnect_window_ms
 * ("hub shutting down; reconnect_window_ms=N"), so that a restart does not
 * bring every site back in the same second. */
void tunnel_drain(struct tunnel *t, unsigned reconnect_window_ms);
/* 1 if the site offers service. Before the site's hello has arrived the
 * hub cannot know, and says yes: the site itself answers 404 for a service
 * it does not have. No JSON parsing per request. */
int tunnel_offers(const struct tunnel *t, const char *service);
/* 1 if the site marks service restricted (only admin tokens and tokens
 * naming it may use it), 0 if not, -1 before the site's hello: not known
 * yet. No JSON parsing per request. */
int tunnel_restricts(const struct tunnel *t, const char *service);
/* Number of open streams. */
size_t tunnel_stream_count(const struct tunnel *t);
/* Streams the site serves at once (its SETTINGS_MAX_CONCURRENT_STREAMS, at
 * most the tunnel's own cap). */
size_t tunnel_stream_slots(const struct tunnel *t);

/* The site map (sitemap.h) seen as tunnels. */
/* The live tunnel of a site, or NULL. A standby tunnel is not found. */
struct tunnel *hub_tunnel_find(struct hub *h, int64_t site_id);
/* Kills every tunnel of the site, the live one and any on standby; they
 * leave the map at once and close later (tunnel_kill). */
void hub_tunnel_cut(struct hub *h, int64_t site_id, const char *why);
/* Calls fn on every tunnel, standby ones included. The list is taken first,
 * so fn may kill tunnels. */
void hub_tunnel_each(struct hub *h, void (*fn)(struct tunnel *t, void *arg), void *arg);

#endif
