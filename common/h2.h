/* nghttp2 glue shared by every HTTP/2 session (tunnel both ends, user front end): batching,
 * re-entrancy, limits. */
/* SPDX-License-Identifier: MIT */
#ifndef TETHER_H2_H
#define TETHER_H2_H

#include <nghttp2/nghttp2.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "conn.h"

/* Header limits enforced in on_header callbacks (nghttp2 leaves them to us). */
#define H2_HEADER_BYTES_MAX (64 * 1024)
#define H2_HEADER_COUNT_MAX 100

/* One nghttp2 session bound to one conn. The session is created by the
 * caller and owned by this struct (h2_free deletes it). conn is not owned. */
struct h2 {
    nghttp2_session *s;
    struct conn *conn;
    int depth;     /* >0 while inside nghttp2_session_mem_recv */
    int want_send; /* a send was asked for during a callback */
    struct buf stage;
};

void h2_init(struct h2 *h, nghttp2_session *s, struct conn *conn);
void h2_free(struct h2 *h);
/* Feeds received plaintext, then sends what became ready. <0 on a fatal
 * session error (the caller closes the connection). */
int h2_feed(struct h2 *h, const uint8_t *data, size_t len);
/* Serialises ready frames while the connection has room, in 64 KiB TLS
 * writes, and flushes. Safe from anywhere: inside the session's own
 * callbacks it only records the wish and the send happens after. Returns <0
 * on a fatal session error. */
int h2_send(struct h2 *h);
#define H2_FRAME_HDR 9
/* Largest DATA payload whose frame fills exactly one TLS record (2^14 bytes
 * of plaintext): data providers cap their frames at this. */
#define H2_DATA_MAX (16384 - H2_FRAME_HDR)
/* From this payload size on, h2_send_data_from writes in place (see below). */
#define H2_DIRECT_MIN 4096
/* For nghttp2_send_data_callback with NGHTTP2_DATA_FLAG_NO_COPY: sends the
 * 9-byte frame header and `length` bytes taken from the front of src. A large
 * payload with 9 consumed bytes in front of it goes to TLS in place, the
 * header written over those bytes (no copy); anything else is copied into the
 * TLS staging buffer, batched with the other frames. */
int h2_send_data_from(struct h2 *h, const uint8_t *framehd, size_t length, struct buf *src);
/* 1 when nghttp2 has nothing to read or write any more (GOAWAY done). */
int h2_finished(const struct h2 *h);

/* Options common to all our sessions: no automatic WINDOW_UPDATE (we
 * consume only when the next hop took the bytes), bounded header tables. */
nghttp2_option *h2_option_new(int is_site_server);
/* Sends our SETTINGS: push off, max_streams, initial stream window, and a
 * connection window of conn_window bytes. */
int h2_submit_settings(nghttp2_session *s, uint32_t max_streams, uint32_t stream_window,
                       int32_t conn_window);

/* Running header budget for one stream; returns 0 while within limits,
 * NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE (reset the stream) when over. */
struct h2_hdr_budget {
    size_t bytes;
    unsigned count;
};
int h2_header_budget(struct h2_hdr_budget *b, size_t namelen, size_t valuelen);

/* Fills nv with a header; name/value not copied (must outlive the submit
 * call, which copies them). */
static inline nghttp2_nv h2_nv(const char *name, size_t nlen, const char *value, size_t vlen)
{
    nghttp2_nv nv = {(uint8_t *)name, (uint8_t *)value, nlen, vlen, NGHTTP2_NV_FLAG_NONE};
    return nv;
}

/* 1 for hop-by-hop headers (connection, keep-alive, proxy-connection,
 * transfer-encoding, upgrade, te, host is NOT one) that must not cross. */
int h2_hop_by_hop(const char *name, size_t len);

#endif
