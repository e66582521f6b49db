/* Inside the user front end (hub/http): the connection shared by the ureq API, the HTTP/1.1 and
 * HTTP/2 front ends and the deadlines. Included only by hub/http/ files. */
/* SPDX-License-Identifier: MIT */
#ifndef TETHER_HTTP_INT_H
#define TETHER_HTTP_INT_H

#include <http_parser.h>
#include <sys/queue.h>

#include "../../common/buf.h"
#include "../../common/h2.h"
#include "user.h"

#define TARGET_MAX (8 * 1024)

/* What the connection's deadline is waiting for. */
enum uc_wait {
    UC_BUSY,  /* a request is in progress: no deadline here */
    UC_HEAD,  /* a request head: the first one, or one that has begun */
    UC_IDLE,  /* the next request (keep-alive; HTTP/2 with no stream open) */
    UC_CLOSE, /* timed out, closing after a last word: hard close when it fires */
};

TAILQ_HEAD(ureq_list, ureq);

/* One user connection. Owned by its conn (c->owner); freed once its timers
 * have closed after the conn closed (uc_free_cb). */
struct user_conn {
    struct hub *hub;
    struct conn *conn; /* NULL once closed */
    int is_h2;
    /* A peer hub's link: its hub id (0 for a user), told when it closes. */
    int64_t peer_hub_id;
    void (*peer_gone)(void *arg, const char *reason);
    void *peer_arg;
    /* HTTP/1.1 */
    http_parser parser;
    struct ureq *cur;   /* the request being read or answered; owned */
    struct buf backlog; /* bytes received while a response was in progress */
    int resume_wait;    /* the next request waits for the output to drain */
    struct buf hname, hval;
    int in_value;
    const char *bad; /* why a callback refused the request (static), or NULL */
    int close_after;
    int dead;
    /* HTTP/2 */
    struct h2 h2;
    struct ureq_list streams; /* open streams with a ureq; owned */
    int h2_active; /* streams whose request head is complete and response not yet ended */
    /* HTTP/2: the upload that has reading paused (h2u_pause_body), or NULL */
    struct ureq *h2_holder;
    /* HTTP/1.1: the next request's start from the loop; HTTP/2: how long
     * h2_holder may keep reading paused (USER_HOLD_MAX_MS). */
    uv_timer_t resume_timer;
    /* Deadlines while no request is in progress (see uc_arm). */
    uv_timer_t idle_timer;
    enum uc_wait wait;
    int heads;             /* request heads completed */
    uint64_t armed_out;    /* conn->bytes_out when the deadline was armed */
    uv_timer_t body_timer; /* request_body_timeout of the bodies awaited (body_cb) */
    /* Requests done with (released), freed from the loop once the callback
     * that finished them has returned (reap_cb), or with the conn. Owned. */
    struct ureq_list reaped;
    uv_timer_t reap_timer;
    int timers_open; /* handles to close before uc is freed */
};

/* user.c: deadlines and the connection */
void uc_arm(struct user_conn *uc, enum uc_wait what);
void uc_busy(struct user_conn *uc);
/* r's body is awaited from now (request_body_timeout). */
void body_watch(struct user_conn *uc, struct ureq *r);

/* ureq.c: the request object */
struct ureq *ureq_new(struct user_conn *uc, int32_t sid);
/* The front end is done with r: no callback reaches its handler any more and
 * every ureq_* call on it is a no-op; it is freed from the loop (reap_cb),
 * never under the caller's feet. */
void ureq_release(struct ureq *r);
/* Frees released requests (reap_cb, and the conn's last close). */
void ureq_reap(struct user_conn *uc);
int ureq_add_header(struct ureq *r, const char *name, size_t nl, const char *value, size_t vl);
/* A request a peer hub forwarded: its remote is the user's, from the
 * x-forwarded-for the peer set (as "ADDR:0"; "[ADDR]:0" for IPv6). */
void ureq_peer_remote(struct ureq *r);
/* Tells the handler the request is gone, once; it must not touch r after. */
void ureq_abort(struct ureq *r);

/* h1.c: HTTP/1.1 front end */
void h1_start(struct user_conn *uc);
int h1_data(struct user_conn *uc, const uint8_t *data, size_t len);
void h1_drain(struct user_conn *uc);
void h1_close(struct user_conn *uc);
int h1_write_head(struct ureq *r, int status, const nghttp2_nv *hdrs, size_t n,
                  int64_t content_length);
int h1_write_body(struct ureq *r, const uint8_t *data, size_t len);
void h1_end(struct ureq *r);

/* h2.c: HTTP/2 front end. h2u_: the user side's, apart from common/h2.c. */
int h2u_start(struct user_conn *uc);
int h2u_data(struct user_conn *uc, const uint8_t *data, size_t len);
void h2u_drain(struct user_conn *uc);
void h2u_goaway(struct user_conn *uc);
void h2u_close(struct user_conn *uc);
int h2u_submit_head(struct ureq *r, int status, const nghttp2_nv *hdrs, size_t n,
                    int64_t content_length);
int h2u_write_body(struct ureq *r, const uint8_t *data, size_t len);
void h2u_end(struct ureq *r);
void h2u_reset(struct ureq *r);
/* Upload backpressure on HTTP/2 (see h2.c, "Lone uploads"). */
void h2u_pause_body(struct ureq *r, int pause);
/* r no longer holds the connection's reading paused (its handler changed). */
void h2u_unhold(struct ureq *r);

#endif
