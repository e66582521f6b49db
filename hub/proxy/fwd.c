/* The request the hub forwards to a site's service: its header list, the forwarding headers the hub
 * sets, and the names it reserves. */
/* SPDX-License-Identifier: MIT */
#include "fwd.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "../../common/hfield.h"

int fwd_reserved(const char *name)
{
    static const char *const names[] = {"forwarded",   "x-real-ip",           "true-client-ip",
                                        "x-client-ip", "x-cluster-client-ip", "client-ip"};

    if (strncmp(name, "tether-", 7) == 0 || strncmp(name, "x-tether-", 9) == 0 ||
        strncmp(name, "x-forwarded-", 12) == 0)
        return 1;
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (strcmp(name, names[i]) == 0)
            return 1;
    return 0;
}

/* 1 if s is host[:port] with host a DNS-style name, an IPv4 address or a
 * bracketed IPv6 address: anything else is not repeated to the service. */
static int host_valid(const char *s)
{
    size_t n = strlen(s), i = 0, digits = 0;

    if (n == 0 || n > 255)
        return 0;
    if (s[0] == '[') {
        for (i = 1; i < n && s[i] != ']'; i++)
            if (!strchr("0123456789abcdefABCDEF:.", s[i]))
                return 0;
        if (i == n || i == 1)
            return 0;
        i++;
    } else {
        for (; i < n && s[i] != ':'; i++)
            if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
                  (s[i] >= '0' && s[i] <= '9') || s[i] == '.' || s[i] == '-' || s[i] == '_'))
                return 0;
        if (i == 0)
            return 0;
    }
    if (i == n)
        return 1;
    if (s[i] != ':')
        return 0;
    for (i++; i < n; i++, digits++)
        if (s[i] < '0' || s[i] > '9')
            return 0;
    return digits >= 1 && digits <= 5;
}

void fwd_build(struct fwd *f, const char *peer, const char *host)
{
    const char *a = peer, *end;
    int v6 = 0;

    /* "[v6]:port" -> "v6"; "v4:port" -> "v4". */
    if (a[0] == '[') {
        a++;
        end = strchr(a, ']');
        v6 = 1;
    } else {
        end = strrchr(a, ':');
    }
    if (end == NULL)
        end = a + strlen(a);
    if (v6 && end - a > 7 && strncasecmp(a, "::ffff:", 7) == 0 &&
        memchr(a + 7, ':', (size_t)(end - a - 7)) == NULL) {
        a += 7; /* a v4 client of a dual-stack listener */
        v6 = 0;
    }
    snprintf(f->addr, sizeof(f->addr), "%.*s", (int)(end - a), a);
    snprintf(f->host, sizeof(f->host), "%s", host != NULL && host_valid(host) ? host : "");
    /* RFC 7239: an IPv6 node and a host with a port are quoted-strings. */
    snprintf(f->forwarded, sizeof(f->forwarded), "for=%s%s%s;proto=https%s%s%s", v6 ? "\"[" : "",
             f->addr, v6 ? "]\"" : "", f->host[0] ? ";host=\"" : "", f->host,
             f->host[0] ? "\"" : "");
}

/* 1 if the user's header name does not go on to the service. */
static int skip_header(const struct fwd_req *req, const char *name)
{
    static const char *const drop[] = {"authorization", "cookie", "proxy-authorization",
                                       "host",          "expect", "content-length"};
    size_t nl = strlen(name);

    for (size_t i = 0; i < sizeof(drop) / sizeof(drop[0]); i++)
        if (strcmp(name, drop[i]) == 0)
            return 1;
    /* Routing (tether-service) and who is asking are the hub's to say. */
    if (fwd_reserved(name) || h2_hop_by_hop(name, nl))
        return 1;
    /* So are the headers the user's Connection names (RFC 9110 7.6.1). */
    for (size_t i = 0; i < req->n_hdrs; i++)
        if (strcmp(req->hdrs[i].name, "connection") == 0 &&
            hfield_token_listed(req->hdrs[i].value, strlen(req->hdrs[i].value), name, nl))
            return 1;
    return 0;
}

static void add(struct fwd_headers *o, const char *name, const char *value)
{
    o->nv[o->n++] = h2_nv(name, strlen(name), value, strlen(value));
}

size_t fwd_request_trailers(const struct fwd_req *req, const struct buf *trl, unsigned n,
                            nghttp2_nv *out, size_t cap)
{
    nghttp2_nv all[H2_HEADER_COUNT_MAX];
    size_t k = h2_pairs_nv(trl, n, all, H2_HEADER_COUNT_MAX), m = 0;

    /* Each name in trl ends with its NUL. */
    for (size_t i = 0; i < k && m < cap; i++)
        if (!skip_header(req, (const char *)all[i].name))
            out[m++] = all[i];
    return m;
}

/* The user's Host, or NULL. */
static const char *req_host(const struct fwd_req *req)
{
    for (size_t i = 0; i < req->n_hdrs; i++)
        if (strcmp(req->hdrs[i].name, "host") == 0)
            return req->hdrs[i].value;
    return NULL;
}

static void add_length(const struct fwd_req *req, struct fwd_headers *out)
{
    if (req->content_length >= 0 && req->has_body) {
        snprintf(out->cl, sizeof(out->cl), "%lld", (long long)req->content_length);
        add(out, "content-length", out->cl);
    }
}

/* TE is hop-by-hop, but "trailers" says the client takes trailer fields,
 * which gRPC requires of every hop (RFC 9113 8.2.2 allows only that
 * value): it goes on, alone, since the hub passes trailers both ways.
 * Other codings are the hub's own business. */
static void add_te(const struct fwd_req *req, struct fwd_headers *out)
{
    for (size_t i = 0; i < req->n_hdrs && out->n < H2_HEADER_COUNT_MAX; i++)
        if (strcmp(req->hdrs[i].name, "te") == 0 &&
            hfield_token_listed(req->hdrs[i].value, strlen(req->hdrs[i].value), "trailers", 8)) {
            add(out, "te", "trailers");
            break;
        }
}

void fwd_peer_headers(const struct fwd_req *req, struct fwd_headers *out)
{
    const char *host = req_host(req);

    out->n = 0;
    add(out, ":method", req->method);
    if (req->protocol != NULL)
        add(out, ":protocol", req->protocol);
    add(out, ":scheme", "https");
    add(out, ":authority", host != NULL ? host : "tether-peer");
    add(out, ":path", req->path);
    /* The peer hub takes the user's address from here (and only from a
     * peer link), to log it and to tell the site. */
    fwd_build(&out->fw, req->peer, host);
    add(out, "x-forwarded-for", out->fw.addr);
    add_length(req, out);
    /* Credentials go on: the peer hub checks the token itself. */
    for (size_t i = 0; i < req->n_hdrs && out->n < H2_HEADER_COUNT_MAX; i++) {
        const char *n = req->hdrs[i].name;

        if (h2_hop_by_hop(n, strlen(n)) || strcmp(n, "host") == 0 ||
            strcmp(n, "content-length") == 0 || strcmp(n, "expect") == 0 ||
            strcmp(n, "x-forwarded-for") == 0)
            continue;
        add(out, n, req->hdrs[i].value);
    }
    add_te(req, out);
}

void fwd_request_headers(const struct fwd_req *req, struct fwd_headers *out)
{
    const char *host = req_host(req);

    out->n = 0;
    add(out, ":method", req->method);
    if (req->protocol != NULL)
        add(out, ":protocol", req->protocol); /* a byte stream: RFC 8441 */
    add(out, ":scheme", req->protocol != NULL ? "https" : "http");
    add(out, ":authority", req->service);
    add(out, ":path", req->path);
    add(out, "tether-service", req->service);
    add(out, "x-tether-user", req->user);
    /* One set of forwarding headers, all the hub's own (docs/api.md). */
    fwd_build(&out->fw, req->peer, host);
    add(out, "x-forwarded-for", out->fw.addr);
    add(out, "x-forwarded-proto", "https");
    if (out->fw.host[0] != '\0')
        add(out, "x-forwarded-host", out->fw.host);
    add(out, "forwarded", out->fw.forwarded);
    add_length(req, out);
    for (size_t i = 0; i < req->n_hdrs && out->n < H2_HEADER_COUNT_MAX; i++)
        if (!skip_header(req, req->hdrs[i].name))
            add(out, req->hdrs[i].name, req->hdrs[i].value);
    add_te(req, out);
}
