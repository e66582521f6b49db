/* Dialing helpers for the site: HTTP CONNECT proxies (URL, request, bounded reply parser) and
 * finding the process that holds a local TCP port. */
/* SPDX-License-Identifier: MIT */
#ifndef TETHER_DIAL_H
#define TETHER_DIAL_H

#include <stddef.h>
#include <stdint.h>

#include "../common/net.h"

/* The proxy's reply header may not be longer than this. */
#define DIAL_REPLY_MAX 8192
/* A CONNECT request always fits in this many bytes. */
#define DIAL_REQUEST_MAX 1024
#define DIAL_CRED_MAX    255

/* An egress proxy, parsed from http://[user[:pass]@]host[:port][/]. Everything
 * by value. auth is the base64 of "user:pass" (empty without credentials). */
struct dial_proxy {
    char host[NET_HOST_MAX + 1];
    int port; /* default 3128, the usual proxy port */
    char user[DIAL_CRED_MAX + 1];
    char auth[((2 * DIAL_CRED_MAX + 1 + 2) / 3) * 4 + 1];
};

/* Parses a proxy URL. User and password may be percent-encoded (a '@' or ':'
 * in a password is written %40 / %3A). Returns 0, or -EINVAL (not http://,
 * bad host or port, a path, credentials too long). */
int dial_proxy_parse(const char *url, struct dial_proxy *out);

/* Writes "host:port" of p into out (IPv6 in brackets), for log lines. */
void dial_proxy_name(const struct dial_proxy *p, char *out, size_t cap);

/* Builds the CONNECT request for target "host:port" into out (cap >=
 * DIAL_REQUEST_MAX is always enough). Returns 0 with *len, or -EINVAL when
 * target is not HOST:PORT, -ENOSPC when out is too small. */
int dial_connect_request(const struct dial_proxy *p, const char *target, const char *user_agent,
                         char *out, size_t cap, size_t *len);

/* Parses the proxy's reply to CONNECT from the bytes received so far.
 * Returns 0 once the whole header is there: *status is the HTTP status,
 * *hdr_len how many bytes the header took (bytes after it already belong to
 * the tunnel), reason gets the reason phrase (printable ASCII, truncated to
 * reason_cap). Returns -EAGAIN when more bytes are needed, -EMSGSIZE when
 * the header is longer than DIAL_REPLY_MAX, -EPROTO when it is not an HTTP
 * reply. Reads only data[0..len). */
int dial_connect_reply(const uint8_t *data, size_t len, int *status, size_t *hdr_len, char *reason,
                       size_t reason_cap);

struct httpc_proxy;
/* Fills hp so that the blocking client (common/httpc) reaches target
 * "HOST:PORT" through p: the CONNECT request is built into buf (cap >=
 * DIAL_REQUEST_MAX), which hp then borrows, as it borrows p. Returns 0 or
 * the error of dial_connect_request. */
int dial_httpc_proxy(const struct dial_proxy *p, const char *target, char *buf, size_t cap,
                     struct httpc_proxy *hp);

/* Describes who holds local TCP port `port` in this network namespace, from
 * /proc/net/tcp{,6} and /proc/PID/fd: "pid 123 (python3), listening" or
 * "a socket in state ESTABLISHED owned by no visible process". Returns 0 when
 * some socket uses the port, -ENOENT when none does (out then says so too). */
int dial_port_holder(int port, char *out, size_t cap);

#endif
