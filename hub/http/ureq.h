/* A user request of the hub (struct ureq) and the API its handlers answer it with, the same over
 * HTTP/1.1 and HTTP/2. */
/* SPDX-License-Identifier: MIT */
#ifndef TETHER_UREQ_H
#define TETHER_UREQ_H

#include <nghttp2/nghttp2.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>

#include "../../common/buf.h"
#include "../../common/h2.h"

struct ureq;
struct user_conn; /* the connection a request came on: opaque outside hub/http */

/* Set by whoever handles a request (API or proxy) through ureq_set_handler.
 * All may be NULL. After on_abort, the handler must not touch the ureq. */
struct ureq_handler {
    void (*on_body)(struct ureq *r, const uint8_t *data, size_t len);
    void (*on_end)(struct ureq *r);
    void (*on_abort)(struct ureq *r);
    /* The response output has room again (see ureq_backlog). */
    void (*on_drain)(struct ureq *r);
    /* 0: the front end gives HTTP/2 flow-control credit back for each body
     * piece once on_body returned (the handler took or dropped it). 1: the
     * handler keeps pieces for a while and calls ureq_credit_body as they
     * move on. Whatever is still held when the handler changes or the
     * stream closes is credited by the front end. */
    int holds_body;
};

struct ureq_header {
    char *name; /* lower-case, owned by the ureq */
    char *value;
};

struct ureq {
    struct user_conn *uc;
    int32_t sid; /* HTTP/2 stream id; 0 for HTTP/1.1 */
    char method[24];
    /* HTTP/2 CONNECT: the stream is a byte stream both ways (protocol is
     * extended CONNECT's :protocol, "connect-tcp" for a classic CONNECT);
     * its response may end before its request (half-close) and the request
     * body has no idle deadline. */
    int bytestream;
    char protocol[16];
    char *target; /* request target as sent, owned */
    struct ureq_header *hdrs;
    size_t n_hdrs;
    /* Request trailers (chunked trailer section, HTTP/2 trailing HEADERS):
     * name\0value\0 pairs, names lower-case; complete when on_end runs. */
    struct buf req_trl;
    unsigned n_req_trl;
    int in_trailers; /* the head is complete: fields now are trailers */
    struct h2_hdr_budget budget;
    int64_t content_length; /* -1 unknown */
    int has_body;
    int req_ended;
    int dispatched;   /* HTTP/2: the head was complete and handed to hub->dispatch */
    int active;       /* HTTP/2: counted in the conn's busy streams (until the response ends) */
    int body_watch;   /* the body is awaited under request_body_timeout */
    uint64_t body_at; /* loop time (ms) of the body's last progress */
    int end_sent;     /* HTTP/2: the response's END_STREAM frame is out */
    const struct ureq_handler *handler;
    void *hctx; /* handler's; not owned */
    /* response */
    int resp_started;
    int resp_ended;
    int resp_chunked; /* HTTP/1.1 */
    int head_only;
    size_t in_held;  /* HTTP/2: request-body bytes received, not yet credited */
    int hold_window; /* HTTP/2: the stream window was widened for a lone upload */
    int hold_done;   /* HTTP/2: it held reading paused too long; windows only from now */
    struct buf out;  /* HTTP/2: body bytes not yet taken by nghttp2 */
    int out_eof;
    int deferred;
    struct buf trl; /* response trailers to send: name\0value\0 pairs */
    unsigned n_trl;
    char remote[64];
    int released;           /* the front end is done with it: freed from the loop */
    TAILQ_ENTRY(ureq) link; /* HTTP/2: in the conn's streams; then in its reaped list */
};

/* Lifetime. A ureq is owned by its connection. The front end is done with
 * it once its response has ended and its request was read (or its stream
 * closed, or the connection closed); it is then released, never freed at
 * once: whatever was handed r (a handler, a caller of ureq_respond*,
 * ureq_error or ureq_reset) may go on reading it, and calling ureq_* on it,
 * until the callback it is in returns. ureq_* calls on a released ureq do
 * nothing (respond* return an error). After the handler's on_abort, or once
 * the callback that answered it returned, r must not be used. */

/* Header lookup (name lower-case); NULL if absent. Owned by r. */
const char *ureq_header(const struct ureq *r, const char *name);
/* The hub id of the peer hub that forwarded r; 0 for a user's own request. */
int64_t ureq_peer_hub(const struct ureq *r);
void ureq_set_handler(struct ureq *r, const struct ureq_handler *hd, void *hctx);

/* Response. headers are copied. content_length -1 = unknown (chunked on
 * HTTP/1.1). Status 100..599. */
int ureq_respond_head(struct ureq *r, int status, const nghttp2_nv *hdrs, size_t n,
                      int64_t content_length);
int ureq_respond_body(struct ureq *r, const uint8_t *data, size_t len);
int ureq_respond_end(struct ureq *r);
/* Response trailers (copied), sent at ureq_respond_end: HTTP/2 as a
 * trailing HEADERS frame, HTTP/1.1 in the last chunk of a chunked body (a
 * response with a Content-Length has no place for them: dropped, as RFC
 * 9110 6.5.1 allows). Hop-by-hop names and ones that may not be trailers
 * (content-length, host, pseudo-headers) are dropped. Call before
 * ureq_respond_end. */
int ureq_respond_trailers(struct ureq *r, const nghttp2_nv *hdrs, size_t n);
/* A head that is the whole response (no body, no trailers): HTTP/2 sends it
 * as one HEADERS frame with END_STREAM, as a gRPC status without messages
 * must look; then call ureq_respond_end. */
int ureq_respond_head_whole(struct ureq *r, int status, const nghttp2_nv *hdrs, size_t n);

/* Breaks a response that already started (the client must not take a
 * truncated body for a complete one). */
void ureq_reset(struct ureq *r);
/* Whole small response in one go. */
void ureq_respond(struct ureq *r, int status, const char *content_type, const char *body,
                  size_t len);
/* JSON error {"error","detail"}. */
void ureq_error(struct ureq *r, int status, const char *code, const char *detail);
/* Response bytes waiting in the hub for this request's client. */
size_t ureq_backlog(const struct ureq *r);
/* The part of ureq_backlog not yet passed to the connection: HTTP/2 bytes
 * waiting for the client's flow-control window (0 on HTTP/1.1). */
size_t ureq_queued(const struct ureq *r);
/* Upload backpressure: stop/resume taking request body from the client. */
void ureq_pause_body(struct ureq *r, int pause);
/* r is a long-lived stream whose body may idle for as long as it likes (a
 * gRPC call): request_body_timeout no longer applies to it. */
void ureq_body_no_deadline(struct ureq *r);
/* HTTP/2: len request-body bytes passed on; reopen the client's window
 * (at most by what was received and not yet credited). */
void ureq_credit_body(struct ureq *r, size_t len);

#endif
