/* nghttp2 glue shared by every HTTP/2 session (tunnel both ends, user front end): batching,
 * re-entrancy, limits. */
/* SPDX-License-Identifier: MIT */
#ifndef TETHER_H2_H
#define TETHER_H2_H

#include <nghttp2/nghttp2.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "buf.h"
#include "conn.h"

/* Header limits enforced in on_header callbacks (nghttp2 leaves them to us). */
#define H2_HEADER_BYTES_MAX (64 * 1024)
#define H2_HEADER_COUNT_MAX 100

/* One nghttp2 session bound to one conn. The session is owned by this
 * struct (h2_free deletes it); it is created by the caller (h2_init) or by
 * h2_open, whose session allocates through mem and keeps its frame buffer on
 * pages of its own (fb, owned): such a struct must not move while the
 * session lives. conn is not owned. */
struct h2 {
    nghttp2_session *s;
    struct conn *conn;
    int depth;     /* >0 while inside nghttp2_session_mem_recv */
    int want_send; /* a send was asked for during a callback */
    struct buf stage;
    nghttp2_mem mem; /* h2_open only: mem_user_data is this struct */
    void *fb;        /* nghttp2's frame buffer (h2_open), mmap'ed; NULL if none */
    size_t fb_len;
    int fb_capture; /* inside h2_open: the frame buffer is being allocated */
};

void h2_init(struct h2 *h, nghttp2_session *s, struct conn *conn);
void h2_free(struct h2 *h);
/* For a quiet session (a tunnel between pings): frees the empty staging
 * buffer and, unless a frame waits to be sent, hands the frame buffer's
 * pages back to the kernel (they read as zeros when next written). Does
 * nothing from inside the session's callbacks. */
void h2_trim(struct h2 *h);
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
/* The read callback of a NO_COPY data provider whose bytes wait in src (the
 * send_data callback then sends them with h2_send_data_from): the size of the
 * next DATA frame (at most length and H2_DATA_MAX), with EOF set when eof
 * and they are the last; NGHTTP2_ERR_DEFERRED, and *deferred = 1, when src
 * is empty and more is to come (resume the stream when it comes). */
ssize_t h2_body_read(const struct buf *src, int eof, int *deferred, size_t length,
                     uint32_t *data_flags);

/* 1 when nghttp2 has nothing to read or write any more (GOAWAY done). */
int h2_finished(const struct h2 *h);

/* Who we are on a session: the hub is the client of the tunnel; the hub's
 * user front end and the site are servers; the site is the client of its
 * HTTP/2 services. */
enum h2_role {
    H2_ROLE_HUB_TUNNEL,
    H2_ROLE_HUB_USERS,
    H2_ROLE_SITE,
    H2_ROLE_SITE_SERVICE, /* the site agent, client of an h2c:// or h2:// service */
};

/* The callbacks a session uses; NULL ones are not set. */
struct h2_callbacks {
    nghttp2_on_begin_headers_callback begin_headers;
    nghttp2_on_header_callback header;
    nghttp2_on_frame_recv_callback frame_recv;
    nghttp2_on_data_chunk_recv_callback data_chunk;
    nghttp2_on_stream_close_callback stream_close;
    nghttp2_on_frame_send_callback frame_send;
    nghttp2_send_data_callback send_data; /* for NGHTTP2_DATA_FLAG_NO_COPY bodies */
};

/* What we announce in our SETTINGS (push is always off). */
struct h2_limits {
    uint32_t max_streams;   /* streams the peer may open */
    uint32_t stream_window; /* initial stream window */
    int32_t conn_window;    /* connection window */
};

/* The one place a session is made: client or server by role, with the
 * options all our sessions share (no automatic WINDOW_UPDATE: we consume only
 * when the next hop took the bytes; bounded header tables; on the site, no
 * GOAWAY over the RST_STREAMs of cancelled requests), and our SETTINGS
 * queued. On success *out is owned by the caller (h2_init it, or
 * nghttp2_session_del); on failure *out is NULL. */
int h2_session_new(enum h2_role role, const struct h2_callbacks *cb, const struct h2_limits *lim,
                   void *user_data, nghttp2_session **out);
/* h2_session_new into h (h2_init'ed here) for conn, with the frame buffer on
 * its own pages so that h2_trim can give them back. 0, or <0 with h->s NULL
 * (h2_free it all the same). */
int h2_open(struct h2 *h, struct conn *conn, enum h2_role role, const struct h2_callbacks *cb,
            const struct h2_limits *lim, void *user_data);

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

/* The value of a :status field: 100-599, or -1 for anything else. */
int h2_status_parse(const uint8_t *v, size_t len);

/* Header lists kept as name\0value\0 pairs in a buf (n counts them):
 * h2_pairs_add copies one in (-ENOMEM); h2_pairs_nv points out[] into b
 * (valid while b is unchanged) and returns the count, at most cap. */
int h2_pairs_add(struct buf *b, unsigned *n, const char *name, size_t nl, const char *value,
                 size_t vl);
size_t h2_pairs_nv(const struct buf *b, unsigned n, nghttp2_nv *out, size_t cap);
/* From a data provider's read callback that set NGHTTP2_DATA_FLAG_EOF: when
 * n trailers wait in trl, submits them as the trailing HEADERS frame, which
 * then ends the stream instead of the last DATA (NO_END_STREAM). */
void h2_trailers_at_eof(nghttp2_session *s, int32_t stream_id, uint32_t *data_flags,
                        const struct buf *trl, unsigned n);

/* 1 for hop-by-hop headers (connection, keep-alive, proxy-connection,
 * transfer-encoding, upgrade, te, host is NOT one) that must not cross. */
int h2_hop_by_hop(const char *name, size_t len);

#endif
