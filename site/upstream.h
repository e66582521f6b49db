/* One HTTP/1.1 exchange between the site agent and a local service (plain or TLS), streamed both
 * ways. */
/* SPDX-License-Identifier: MIT */
#ifndef TETHER_UPSTREAM_H
#define TETHER_UPSTREAM_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "../common/net.h"
#include "../common/tls.h"

/* A request header as (name, value) byte strings. The caller keeps them
 * alive only for the duration of upstream_start(): it copies them. */
struct upstream_header {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
};

/* Callbacks into the tunnel stream that owns this exchange. None is called
 * from inside upstream_start() or after upstream_abort(). `arg` is the
 * caller's. Header arrays passed to on_head are owned by the upstream and
 * valid during the call only. */
struct upstream_cbs {
    /* Response status line and headers parsed (hop-by-hop headers such as
     * Connection, Keep-Alive, Transfer-Encoding, Upgrade, Proxy-* removed). */
    void (*on_head)(void *arg, int status, const struct upstream_header *h, size_t n);
    /* Response body bytes (de-chunked). The caller copies them. To stop the
     * flow, call upstream_pause_reading(u, 1) from here or later. */
    void (*on_body)(void *arg, const uint8_t *data, size_t len);
    /* Response complete; the upstream may be reused or closed internally; the
     * handle is dead after this call. */
    void (*on_end)(void *arg);
    /* Failed before or during the response: http_status is 502 (refused,
     * reset, malformed response) or 504 (connect or response timeout).
     * `why` is a short human phrase. The handle is dead after this call. */
    void (*on_error)(void *arg, int http_status, const char *why);
    /* len request-body bytes given to upstream_write_body() have reached the
     * kernel (uv_write completed): the tunnel may now credit its window. */
    void (*on_body_written)(void *arg, size_t len);
    /* May be NULL. The response's trailer fields (HTTP/1.1 chunked
     * trailers, HTTP/2 trailing HEADERS), hop-by-hop names removed, names
     * lower-case; just before on_end. */
    void (*on_trailers)(void *arg, const struct upstream_header *h, size_t n);
};

struct upstream_opts {
    uint64_t connect_timeout_ms;  /* default 10000 when 0 */
    uint64_t response_timeout_ms; /* idle time allowed with no response bytes; default 60000 */
    /* https:// only (both required): the context from tls_ctx_service(),
     * which the caller keeps until the exchange ends (its connections hold
     * their own reference), and the service's TLS settings (copied). A
     * certificate refused is a 502 whose phrase names the reason. */
    void *tls_ctx; /* WOLFSSL_CTX* */
    const struct tls_svc_conf *tls;
};

struct upstream;

/* Starts an exchange with the service at url (NET_URL_HTTP, NET_URL_HTTPS
 * or NET_URL_UNIX; -ENOTSUP for others): connects, sends "METHOD url.path+path HTTP/1.1" with
 * the given headers plus Host, and either Content-Length (if content_length
 * >= 0) or chunked encoding (content_length == -1 and has_body) for the body
 * that follows through upstream_write_body(). Returns 0 and *out, or a
 * negative code (then no callback will ever run). */
int upstream_start(uv_loop_t *loop, const struct net_url *url, const struct upstream_opts *opts,
                   const char *method, const char *path, const struct upstream_header *headers,
                   size_t n_headers, int has_body, int64_t content_length,
                   const struct upstream_cbs *cbs, void *arg, struct upstream **out);
/* Queues request body bytes (copied). */
int upstream_write_body(struct upstream *u, const uint8_t *data, size_t len);
/* No more request body. */
int upstream_end_body(struct upstream *u);
/* The same with request trailers (copied), sent in a chunked body's last
 * chunk; hop-by-hop names and invalid fields are dropped, and so is every
 * trailer of a body with a Content-Length (it has no place for them). */
int upstream_end_body_trailers(struct upstream *u, const struct upstream_header *trl, size_t n);
/* Stops (1) or resumes (0) reading the response from the service. */
void upstream_pause_reading(struct upstream *u, int pause);
/* Cancels: closes the connection; no callback runs after this returns. The
 * memory is freed from the uv_close callback. */
void upstream_abort(struct upstream *u);
/* Kept-alive connections wait unreferenced in a per-service pool (at most 16,
 * a few seconds each); this closes those of loop now, so that uv_loop_close()
 * can succeed at shutdown. Exchanges in progress are not affected. */
void upstream_close_idle(uv_loop_t *loop);

#endif
