/* Blocking HTTPS/1.1 client for the command-line tools (tetherctl, tether-site enroll): pins the
 * hub key. */
/* SPDX-License-Identifier: MIT */
#ifndef TETHER_HTTPC_H
#define TETHER_HTTPC_H

#include <stddef.h>

#include "crypto.h"

/* An HTTP CONNECT proxy between us and the hub (the site's egress proxy).
 * Everything borrowed from the caller. The reply is read with
 * proxyconnect_exchange. */
struct httpc_proxy {
    const char *host;
    int port;
    const char *request; /* the whole CONNECT request, built by the caller */
    size_t request_len;
};

struct proxyconnect_proxy;
/* Fills hp so that a request reaches target "HOST:PORT" through p: the
 * CONNECT request (User-Agent tether-site/VERSION) is built into buf (cap >=
 * PROXYCONNECT_REQUEST_MAX), which hp then borrows, as it borrows p. Returns
 * 0 or the error of proxyconnect_request. */
int httpc_proxy_via(struct httpc_proxy *hp, const struct proxyconnect_proxy *p, const char *target,
                    char *buf, size_t cap);

/* A streamed answer's body, piece by piece as it arrives: 0 to go on, else
 * the request ends there with that (negative) code. */
typedef int (*httpc_body_fn)(void *arg, const char *data, size_t len);

struct httpc_target {
    char host[256];
    int port;
    char pin[CRYPTO_PIN_LEN + 1]; /* the hub's key pin; required */
    /* Other keys accepted as well (the other hubs of a cluster): n_alt_pins
     * of them, borrowed; NULL when none. */
    const char (*alt_pins)[CRYPTO_PIN_LEN + 1];
    size_t n_alt_pins;
    int timeout_ms;                  /* whole request; default 30000 when 0 */
    const struct httpc_proxy *proxy; /* NULL: straight to host:port; borrowed */
    /* Streaming (an event stream): the body of a 2xx answer goes to on_body
     * (with body_arg, borrowed) instead of into the response, and
     * timeout_ms is then the longest silence allowed, not the whole
     * request's time. NULL: the body is kept whole. */
    httpc_body_fn on_body;
    void *body_arg;
};

/* Parses "https://host:port" (port default 6443) into t (pin untouched). */
int httpc_target_from_url(const char *url, struct httpc_target *t);

struct httpc_response {
    int status;
    char *body; /* malloc'ed, NUL-terminated; owned by the response */
    size_t body_len;
    char content_type[128];
};
void httpc_response_free(struct httpc_response *r);

/* Reads a response from data[0..len), the whole stream up to its end, fed
 * to the parser in pieces of `piece` (> 0) bytes as they would arrive: what
 * httpc_request does with the bytes it receives (bounded the same way). For
 * tests and fuzzing. Returns 0 with resp filled (free with
 * httpc_response_free), or the code and err httpc_request would give. */
int httpc_parse_response(const uint8_t *data, size_t len, size_t piece, int head_only,
                         struct httpc_response *resp, char *err, size_t err_cap);

/* Makes one request over a fresh TLS 1.3 connection (ALPN http/1.1) to t.
 * bearer (may be NULL) goes in "Authorization: Bearer". body may be NULL.
 * Responses larger than 64 MiB fail with -EFBIG. On failure returns a
 * negative code and writes a one-line reason into err: name resolution,
 * connect (refused / timed out), the proxy's refusal of CONNECT (its status
 * and reason; -EACCES for 401/407), TLS handshake, or "hub key does not match
 * the pinned key (something on the path may intercept TLS)". */
int httpc_request(const struct httpc_target *t, const char *method, const char *path,
                  const char *bearer, const char *content_type, const char *body, size_t body_len,
                  struct httpc_response *resp, char *err, size_t err_cap);

#endif
