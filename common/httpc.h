/* Blocking HTTPS/1.1 client for the command-line tools (tetherctl, tether-site enroll): pins the
 * hub key. */
/* SPDX-License-Identifier: MIT */
#ifndef TETHER_HTTPC_H
#define TETHER_HTTPC_H

#include <stddef.h>

#include "crypto.h"

struct httpc_target {
    char host[256];
    int port;
    char pin[CRYPTO_PIN_LEN + 1]; /* the hub's key pin; required */
    int timeout_ms;               /* whole request; default 30000 when 0 */
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

/* Makes one request over a fresh TLS 1.3 connection (ALPN http/1.1) to t.
 * bearer (may be NULL) goes in "Authorization: Bearer". body may be NULL.
 * Responses larger than 64 MiB fail with -EFBIG. On failure returns a
 * negative code and writes a one-line reason into err: name resolution,
 * connect (refused / timed out), TLS handshake, or "hub key does not match
 * the pinned key (something on the path may intercept TLS)". */
int httpc_request(const struct httpc_target *t, const char *method, const char *path,
                  const char *bearer, const char *content_type, const char *body, size_t body_len,
                  struct httpc_response *resp, char *err, size_t err_cap);

#endif
