/* A byte stream between the site agent and a tcp:// service: one CONNECT stream of the tunnel,
 * piped both ways with backpressure and half-close. */
/* SPDX-License-Identifier: MIT */
#ifndef TETHER_BYTESTREAM_H
#define TETHER_BYTESTREAM_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "../common/net.h"
#include "upstream.h"

/* Callbacks into the tunnel stream that owns the byte stream; arg is the
 * caller's. None runs from inside a bytestream_* call or after
 * bytestream_abort(). */
struct bytestream_cbs {
    /* The service accepted the connection (and, for an upgrade, answered
     * 101 with the right Sec-WebSocket-Accept): bytes may flow. h holds the
     * service's Sec-WebSocket-Protocol / -Extensions (valid during the call;
     * none for raw TCP). */
    void (*on_open)(void *arg, const struct upstream_header *h, size_t n);
    /* Bytes from the service; the caller copies them (and may pause). */
    void (*on_data)(void *arg, const uint8_t *data, size_t len);
    /* The service closed its sending side (EOF). Writing may go on. */
    void (*on_eof)(void *arg);
    /* Failed: http_status 502 (refused, unreachable, reset) or 504 (connect
     * timeout); why is a short phrase. The handle is dead after this. */
    void (*on_error)(void *arg, int http_status, const char *why);
    /* len bytes given to bytestream_write() reached the kernel. */
    void (*on_written)(void *arg, size_t len);
};

struct bytestream;

/* A WebSocket upgrade made by the site (RFC 6455 4.1): GET path with
 * Upgrade, Connection, its own Sec-WebSocket-Key and -Version 13, and hdrs
 * (borrowed during bytestream_start; Host, Upgrade, Connection, Content-Length
 * and Sec-WebSocket-Key/-Version/-Accept among them are left out). */
struct bytestream_upgrade {
    const char *path;
    const struct upstream_header *hdrs;
    size_t n_hdrs;
};

/* Dials url: NET_URL_TCP with up NULL (raw TCP), NET_URL_HTTP with up (a
 * WebSocket upgrade first); -ENOTSUP for others. Timeout in ms (10000 when
 * 0) until the service accepted (and answered the upgrade). Returns 0 and
 * *out, or a negative code (then no callback ever runs). */
int bytestream_start(uv_loop_t *loop, const struct net_url *url, uint64_t connect_timeout_ms,
                     const struct bytestream_upgrade *up, const struct bytestream_cbs *cbs,
                     void *arg, struct bytestream **out);
/* Queues bytes for the service (copied); they go out once it is connected. */
int bytestream_write(struct bytestream *b, const uint8_t *data, size_t len);
/* No more bytes for the service: shutdown(SHUT_WR) once the queue is out. */
void bytestream_end(struct bytestream *b);
/* Stops (1) or resumes (0) reading from the service. */
void bytestream_pause_reading(struct bytestream *b, int pause);
/* Closes; no callback runs after this returns. Freed from uv_close. */
void bytestream_abort(struct bytestream *b);

#endif
