/* HTTP CONNECT through an egress proxy, written once: proxy URLs, the request, a bounded
 * incremental reply parser, and a blocking exchange for the tools (the agent drives the parser from
 * libuv). */
/* SPDX-License-Identifier: MIT */
#ifndef TETHER_PROXYCONNECT_H
#define TETHER_PROXYCONNECT_H

#include <stddef.h>
#include <stdint.h>

#include "net.h"

/* The proxy's reply header may not be longer than this. */
#define PROXYCONNECT_REPLY_MAX 8192
/* A CONNECT request always fits in this many bytes. */
#define PROXYCONNECT_REQUEST_MAX 1024
#define PROXYCONNECT_CRED_MAX    255
#define PROXYCONNECT_REASON_MAX  96

/* An egress proxy, parsed from http://[user[:pass]@]host[:port][/]. Everything
 * by value. auth is the base64 of "user:pass" (empty without credentials). */
struct proxyconnect_proxy {
    char host[NET_HOST_MAX + 1];
    int port; /* default 3128, the usual proxy port */
    char user[PROXYCONNECT_CRED_MAX + 1];
    char auth[((2 * PROXYCONNECT_CRED_MAX + 1 + 2) / 3) * 4 + 1];
};

/* Parses a proxy URL. User and password may be percent-encoded (a '@' or ':'
 * in a password is written %40 / %3A). Returns 0, or -EINVAL (not http://,
 * bad host or port, a path, credentials too long). */
int proxyconnect_parse_url(const char *url, struct proxyconnect_proxy *out);

/* Writes "host:port" of p into out (IPv6 in brackets), for messages. */
void proxyconnect_name(const struct proxyconnect_proxy *p, char *out, size_t cap);

/* Builds the CONNECT request for target "host:port" into out (cap >=
 * PROXYCONNECT_REQUEST_MAX is always enough). Returns 0 with *len, or -EINVAL
 * when target is not HOST:PORT, -ENOSPC when out is too small. */
int proxyconnect_request(const struct proxyconnect_proxy *p, const char *target,
                         const char *user_agent, char *out, size_t cap, size_t *len);

/* The reply parser: fed the bytes as they come, in pieces of any size. */
enum proxyconnect_result { PROXYCONNECT_NEED_MORE, PROXYCONNECT_OK, PROXYCONNECT_ERROR };
enum proxyconnect_error {
    PROXYCONNECT_ERR_NONE,
    PROXYCONNECT_ERR_NOT_HTTP, /* not "HTTP/1.x SSS[ reason]" */
    PROXYCONNECT_ERR_TOO_LONG, /* no end of header within PROXYCONNECT_REPLY_MAX bytes */
};

struct proxyconnect_reply {
    size_t seen;   /* header bytes consumed so far */
    int status;    /* valid once the status code's digits are in */
    int lf_state;  /* 0, 1 just after LF, 2 after LF CR: finds the blank line */
    int in_reason; /* collecting the reason phrase of the status line */
    size_t reason_len;
    char reason[PROXYCONNECT_REASON_MAX]; /* printable ASCII, truncated, NUL-terminated */
    enum proxyconnect_result result;
    enum proxyconnect_error error;
    int sent; /* proxyconnect_exchange: the whole request went out */
};

void proxyconnect_reply_init(struct proxyconnect_reply *r);

/* Feeds data[0..len). *used (may be NULL) gets how many bytes belong to the
 * reply header: on OK the bytes after them already belong to the tunnel.
 * Once OK or ERROR, further calls return the same and use nothing. */
enum proxyconnect_result proxyconnect_reply_feed(struct proxyconnect_reply *r, const uint8_t *data,
                                                 size_t len, size_t *used);

/* "not an HTTP reply" or "reply header over 8 KiB", for messages. */
const char *proxyconnect_error_string(enum proxyconnect_error e);

/* 1 for the statuses that mean "wrong or missing credentials": 407, and the
 * 401 some proxies (tinyproxy) send instead. */
int proxyconnect_auth_refused(int status);

/* Blocking: sends req on the connected non-blocking socket fd and reads the
 * reply, never past its header (the tunnel's bytes stay in the socket), until
 * deadline (CLOCK_MONOTONIC ms, net_now_ms). Returns 0 once the header is
 * complete (r->status says whether the proxy agreed; r->sent is set),
 * -ETIMEDOUT, -ECONNRESET when the proxy closed first, -EPROTO when the
 * parser failed (r->error says why), or another -errno. r is initialised
 * here. */
int proxyconnect_exchange(int fd, const char *req, size_t req_len, int64_t deadline,
                          struct proxyconnect_reply *r);

#endif
