/* A TLS connection on a libuv TCP handle: reads feed the TLS layer, its output is flushed with
 * batched uv_write. */
/* SPDX-License-Identifier: MIT */
#ifndef TETHER_CONN_H
#define TETHER_CONN_H

#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>
#include <uv.h>

#include "tls.h"

/* Upper layers stop producing when this much ciphertext waits to be sent,
 * and are told (on_drain) when it has fallen below CONN_LOW_WATER. */
#define CONN_HIGH_WATER (1u << 20)
#define CONN_LOW_WATER  (256u << 10)

struct conn;
struct conn_bufs;
LIST_HEAD(conn_list, conn);
TAILQ_HEAD(conn_queue, conn);

/* The connections of one owner (a hub, a site agent, a test) on one loop:
 * the list closed by conn_close_all, the batched-flush queue, and the read
 * and plaintext buffers every read callback of the group shares (read
 * callbacks run to completion, so one pair serves all). Embedded in its
 * owner and set up with conn_ctx_init, which cannot fail; the buffers and
 * the flush handles exist only while a conn of the group does, so an idle
 * group holds no memory and no handle. Two groups, on one loop or two,
 * share nothing: two hubs can run in one process. The owner must not let
 * the group go before its last conn was freed (conn_live() == 0 once the
 * loop ran the close callbacks). */
struct conn_ctx {
    uv_loop_t *loop;         /* not owned */
    struct conn_list all;    /* every live conn of the group */
    struct conn_queue dirty; /* conns waiting for the end-of-iteration flush */
    struct conn_bufs *bufs;  /* owned; NULL while no conn lives */
    size_t n_live;           /* conns allocated and not yet freed */
    uint64_t n_freed;        /* conns freed since conn_ctx_init */
};

void conn_ctx_init(struct conn_ctx *cx, uv_loop_t *loop);

/* Callbacks of the layer above. All run on the loop; none may free the conn:
 * they call conn_close() and the memory goes away from the uv_close callback,
 * after on_close.
 *
 * No callback runs from inside conn_close, conn_close_after_flush,
 * conn_close_all, conn_write, conn_flush, conn_start or conn_pause_reading:
 * their failures close the conn, and on_close comes later from the loop.
 * conn_start_tls and conn_fake_feed are the exceptions, and callers expect
 * it: conn_start_tls drives the handshake over the bytes already received,
 * so on_handshake and on_data may run before it returns (a server's early
 * bytes hold at most a ClientHello, so in practice only a client's
 * handshake failure closes from there); conn_fake_feed is on_data. */
struct conn_ops {
    /* Raw bytes before TLS starts (only while conn_start_tls has not been
     * called): return 0 to keep waiting, <0 to close. The bytes stay
     * buffered and are fed to TLS when it starts. */
    int (*on_peek)(struct conn *c, const uint8_t *data, size_t len);
    /* TLS handshake finished. */
    void (*on_handshake)(struct conn *c);
    /* Decrypted bytes; valid during the call only. Return <0 to close. */
    int (*on_data)(struct conn *c, const uint8_t *data, size_t len);
    /* Output fell below CONN_LOW_WATER after being above it, or a flush
     * finished: the layer above may produce again. */
    void (*on_drain)(struct conn *c);
    /* The connection is going away (reason is static or owned by conn).
     * Called once, from the uv_close callback; the owner drops its
     * references here. After it returns, the conn is freed. */
    void (*on_close)(struct conn *c, const char *reason);
};

struct conn {
    uv_tcp_t tcp;     /* embedded; conn is recovered with container_of */
    uv_timer_t timer; /* handshake deadline; free for the owner after */
    struct tls_conn tls;
    int tls_started;
    int plain;        /* conn_start_plain: no TLS at all */
    struct buf early; /* bytes read before TLS started */
    const struct conn_ops *ops;
    void *owner; /* the layer above; not owned */
    uv_write_t wreq;
    struct buf wbuf; /* ciphertext handed to the uv_write in flight */
    int writing;
    int closing;
    int close_after_flush;
    int was_above_high;
    int pending_closes;
    char reason[128];
    char peer[64]; /* "ip:port" */
    uint64_t bytes_in, bytes_out;
    struct conn_ctx *cx;          /* the group; not owned */
    LIST_ENTRY(conn) all_link;    /* in cx->all while allocated */
    TAILQ_ENTRY(conn) dirty_link; /* in cx->dirty while dirty */
    int dirty;
    struct conn_sink *sink; /* conn_new_fake only; not owned */
};

/* Allocates a conn of group cx for an accepted or to-be-connected socket;
 * tcp is initialised on cx->loop. Returns NULL on allocation failure. */
struct conn *conn_new(struct conn_ctx *cx, const struct conn_ops *ops, void *owner);
/* After uv_accept / uv_tcp_connect succeeded: fills peer, starts reading and
 * arms a handshake deadline of deadline_ms (0 = none). Returns 0, or a
 * negative libuv code when the peer is already gone (its address cannot be
 * read; peer is then "?:0") or reading cannot start: the caller closes. */
int conn_start(struct conn *c, uint64_t deadline_ms);
/* Starts TLS over the connection (feeds any early bytes) and, for a client,
 * sends the ClientHello. v (may be NULL) checks the peer's key pin during the
 * handshake; it is not owned and must outlive the handshake. */
int conn_start_tls(struct conn *c, WOLFSSL_CTX *ctx, const char *sni, const char *alpn,
                   int alpn_required, struct tls_pin_verifier *v);
/* conn_start_tls for a c->tls the caller set up itself (for example with
 * tls_conn_init_service, to check a service's certificate its own way). */
int conn_start_tls_ready(struct conn *c);
/* No TLS on this conn (a cleartext service such as h2c://): on_data gets
 * the bytes as read, conn_write queues them as they are. Same callback
 * rules as conn_start_tls. */
int conn_start_plain(struct conn *c);
/* Conns of the group alive now (each holds at most one socket), and conns
 * freed since conn_ctx_init: for descriptor accounting and heap trimming. */
size_t conn_live(const struct conn_ctx *cx);
uint64_t conn_freed(const struct conn_ctx *cx);

/* Tests and fuzzing: a conn with no socket and no TLS. What the layer above
 * writes is appended in clear to sink->out, and conn_fake_feed hands that
 * layer bytes as if they came decrypted from the peer (returns its on_data
 * answer; <0 closes the conn as a real one does). Closing and freeing go
 * through the loop as for a real conn; sink->closed is set once the conn is
 * freed. The sink belongs to the caller and must outlive the conn. */
struct conn_sink {
    struct buf out;
    int closed;
    char reason[128];
};
struct conn *conn_new_fake(struct conn_ctx *cx, struct conn_sink *sink, const char *peer);
int conn_fake_feed(struct conn *c, const uint8_t *data, size_t len);
/* Closes every live conn of the group (shutdown); those of other groups on
 * the same loop are left alone. */
void conn_close_all(struct conn_ctx *cx, const char *reason);
/* Encrypts and queues plaintext; call conn_flush() after a batch. */
int conn_write(struct conn *c, const uint8_t *data, size_t len);
/* Asks for whatever ciphertext is queued to be written. The write happens
 * once per loop iteration for all connections (after the I/O callbacks, or
 * before the loop would block), so many small responses share a syscall. */
void conn_flush(struct conn *c);
/* Ciphertext waiting to be written (queued and in flight). */
size_t conn_out_pending(const struct conn *c);
/* Closes now (idempotent). reason is copied. */
void conn_close(struct conn *c, const char *reason);
/* Closes once everything queued has been written (TLS close_notify first). */
void conn_close_after_flush(struct conn *c, const char *reason);
/* TCP keepalive on the socket: a probe after idle_s seconds without
 * traffic, then every intvl_s; count unanswered probes close it (the next
 * read fails). 0, or a negative code (a conn without a socket: nothing). */
int conn_keepalive(struct conn *c, unsigned idle_s, unsigned intvl_s, unsigned count);
/* Frees the connection's empty buffers whatever their size (those of a
 * transfer that ended; small ones go as soon as they drain): for an owner
 * that knows the connection is quiet, such as a tunnel's ping tick. */
void conn_trim(struct conn *c);
/* Pauses or resumes reading from the socket. */
void conn_pause_reading(struct conn *c, int pause);

#endif
