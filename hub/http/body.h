/* Reading a request body whole, bounded, for the JSON API: one reader that also gives HTTP/2
 * credit. */
/* SPDX-License-Identifier: MIT */
#ifndef TETHER_BODY_H
#define TETHER_BODY_H

#include <stddef.h>
#include <stdint.h>

struct ureq;

/* How a body read ended. */
enum body_status {
    BODY_OK,        /* data/len hold the whole body (len may be 0) */
    BODY_TOO_LARGE, /* more than max bytes: the rest was read and dropped */
    BODY_NO_MEMORY, /* a piece could not be kept: never run on a partial body */
    BODY_ABORTED,   /* the request went away: r is NULL, answer nothing */
};

/* Called once when the body has been read. data is borrowed for the call
 * (NULL when len is 0). r is the request, to be answered (NULL on
 * BODY_ABORTED); arg is the caller's. The reader is gone by then. */
typedef void (*body_done_fn)(struct ureq *r, void *arg, enum body_status st, const uint8_t *data,
                             size_t len);

/* Reads r's body, keeping at most max bytes, then calls done. Each piece is
 * credited back to an HTTP/2 client as soon as it is copied (or dropped), so
 * a large body flows and a too-large one is read to its end, which lets the
 * answer reach the client before the stream closes. An HTTP/1.1 request
 * whose Content-Length is already over max, or one whose body has already
 * ended, gets done before body_read returns: callers expect it. Returns 0,
 * or -ENOMEM (nothing installed, done not called: answer r yourself). */
int body_read(struct ureq *r, size_t max, body_done_fn done, void *arg);

#endif
