/* The request the hub forwards to a site's service: its header list, the forwarding headers the hub
 * sets, and the names it reserves. */
/* SPDX-License-Identifier: MIT */
#ifndef TETHER_FWD_H
#define TETHER_FWD_H

#include <nghttp2/nghttp2.h>
#include <stddef.h>
#include <stdint.h>

#include "../../common/h2.h"
#include "../http/ureq.h"

/* 1 if a user may not send this (lower-case) header on to a service: the hub
 * sets it itself or it claims who is asking (tether-*, x-tether-*, forwarded,
 * x-forwarded-*, x-real-ip, true-client-ip, x-client-ip, x-cluster-client-ip,
 * client-ip). */
int fwd_reserved(const char *name);

/* The values of the forwarding headers for one request. */
struct fwd {
    char addr[64];       /* X-Forwarded-For: the bare client address */
    char host[256];      /* X-Forwarded-Host: "" when the user's Host was absent or invalid */
    char forwarded[384]; /* Forwarded (RFC 7239): for=...;proto=https[;host="..."] */
};

/* Fills f from the peer ("ip:port" or "[v6]:port", as conn.c writes it) and
 * the Host (or :authority) the user sent (NULL if none). A v4-mapped v6
 * address is written as the v4 address. */
void fwd_build(struct fwd *f, const char *peer, const char *host);

/* One user request as the site is to hear of it. All borrowed. */
struct fwd_req {
    const char *method;
    const char *protocol; /* extended CONNECT's :protocol (connect-tcp, websocket); NULL: none */
    const char *path;     /* the path on the service (the user's, less the routing prefix) */
    const char *service;  /* the service's name: :authority and tether-service */
    const char *user;     /* the token's name: x-tether-user */
    const char *peer;     /* the user's address, as fwd_build takes it */
    const struct ureq_header *hdrs; /* the user's headers, names lower-case */
    size_t n_hdrs;
    int64_t content_length; /* -1 unknown */
    int has_body;
};

/* Room for the hub's own headers and H2_HEADER_COUNT_MAX in all. */
#define FWD_NV_MAX (H2_HEADER_COUNT_MAX + 10)

/* The header list of the request to the site: nv[0..n). Values point into
 * the fwd_req's strings and into this struct, which must both outlive nv. */
struct fwd_headers {
    struct fwd fw;
    char cl[24];
    nghttp2_nv nv[FWD_NV_MAX];
    size_t n;
};

/* Builds the request's header list: the pseudo headers, routing and who
 * asks (tether-service, x-tether-user), the hub's own forwarding headers
 * (X-Forwarded-For/Proto/Host, Forwarded), the Content-Length when known,
 * then the user's headers but for the hop-by-hop ones (and those its
 * Connection names), credentials (Authorization, Cookie, Proxy-Authorization),
 * Host, Expect, Content-Length and every reserved name (fwd_reserved). User
 * headers are added while the list holds fewer than H2_HEADER_COUNT_MAX
 * entries; the rest are dropped. */
void fwd_request_headers(const struct fwd_req *req, struct fwd_headers *out);
/* The header list of the request forwarded to a peer hub that holds the
 * site's tunnel: req->path is the hub path the user asked
 * (/v1/sites/SITE/services/...), the user's headers go on as they came,
 * Authorization included (the peer checks the token itself), but for the
 * hop-by-hop ones, Host (as :authority), Expect and Content-Length; the
 * user's address in X-Forwarded-For (the peer trusts it from a peer link
 * only). */
void fwd_peer_headers(const struct fwd_req *req, struct fwd_headers *out);

/* The request trailers that go on to the service: those of trl (n
 * name\0value\0 pairs, names lower-case) that pass the same filter as
 * the request's headers (req: its head, for the names its Connection
 * lists), into out (pointing into trl); returns the count, at most cap. */
size_t fwd_request_trailers(const struct fwd_req *req, const struct buf *trl, unsigned n,
                            nghttp2_nv *out, size_t cap);

#endif
