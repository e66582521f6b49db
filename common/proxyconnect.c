/* HTTP CONNECT through an egress proxy: proxy URLs, the request, the bounded incremental reply
 * parser, and the blocking exchange shared by httpc and doctor. */
/* SPDX-License-Identifier: MIT */
#include "proxyconnect.h"

#include <assert.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "crypto.h"
#include "urlpath.h"

#define PROXY_DEFAULT_PORT 3128

/* Percent-decodes s[0..n) into out (NUL-terminated). */
static int pct_decode(const char *s, size_t n, char *out, size_t cap)
{
    size_t o = 0;

    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '%') {
            int hi, lo;
            if (i + 2 >= n)
                return -EINVAL;
            hi = urlpath_hexval(s[i + 1]);
            lo = urlpath_hexval(s[i + 2]);
            if (hi < 0 || lo < 0)
                return -EINVAL;
            c = (char)(hi << 4 | lo);
            i += 2;
        }
        /* A NUL or a line break would end up inside a header. */
        if (c == '\0' || c == '\r' || c == '\n')
            return -EINVAL;
        if (o + 1 >= cap)
            return -EINVAL;
        out[o++] = c;
    }
    out[o] = '\0';
    return 0;
}

int proxyconnect_parse_url(const char *url, struct proxyconnect_proxy *out)
{
    char hostport[NET_HOST_MAX + 16];
    char pass[PROXYCONNECT_CRED_MAX + 1];
    char cred[2 * PROXYCONNECT_CRED_MAX + 2];
    const char *p, *at, *end;
    size_t n, cl, bl;
    int rc = -EINVAL;

    if (url == NULL || out == NULL)
        return -EINVAL;
    memset(out, 0, sizeof(*out));
    pass[0] = '\0';
    if (strncasecmp(url, "http://", 7) != 0)
        goto out;
    p = url + 7;
    n = strcspn(p, "/?#");
    /* Nothing may follow the authority but one '/'. */
    if (p[n] != '\0' && strcmp(p + n, "/") != 0)
        goto out;
    end = p + n;
    at = NULL;
    for (const char *q = p; q < end; q++)
        if (*q == '@')
            at = q;
    if (at != NULL) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        size_t ul = (size_t)((colon ? colon : at) - p);
        if (ul == 0 || pct_decode(p, ul, out->user, sizeof(out->user)) != 0)
            goto out;
        if (colon != NULL &&
            pct_decode(colon + 1, (size_t)(at - colon - 1), pass, sizeof(pass)) != 0)
            goto out;
        /* RFC 7617: the user id may not contain ':'. */
        if (strchr(out->user, ':') != NULL)
            goto out;
        cl = (size_t)snprintf(cred, sizeof(cred), "%s:%s", out->user, pass);
        if (crypto_b64_encode((const uint8_t *)cred, cl, 0, out->auth, sizeof(out->auth), &bl) != 0)
            goto out;
        p = at + 1;
    }
    n = (size_t)(end - p);
    if (n == 0 || n >= sizeof(hostport))
        goto out;
    memcpy(hostport, p, n);
    hostport[n] = '\0';
    if (net_split_hostport(hostport, PROXY_DEFAULT_PORT, out->host, &out->port) != 0)
        goto out;
    rc = 0;
out:
    explicit_bzero(pass, sizeof(pass));
    explicit_bzero(cred, sizeof(cred));
    if (rc != 0)
        memset(out, 0, sizeof(*out));
    return rc;
}

void proxyconnect_name(const struct proxyconnect_proxy *p, char *out, size_t cap)
{
    snprintf(out, cap, strchr(p->host, ':') ? "[%s]:%d" : "%s:%d", p->host, p->port);
}

int proxyconnect_request(const struct proxyconnect_proxy *p, const char *target,
                         const char *user_agent, char *out, size_t cap, size_t *len)
{
    char host[NET_HOST_MAX + 1], hp[NET_HOST_MAX + 10];
    int port, n;

    if (net_split_hostport(target, 0, host, &port) != 0)
        return -EINVAL;
    snprintf(hp, sizeof(hp), strchr(host, ':') ? "[%s]:%d" : "%s:%d", host, port);
    if (user_agent == NULL || strpbrk(user_agent, "\r\n") != NULL)
        user_agent = "tether-site";
    n = snprintf(out, cap,
                 "CONNECT %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: %.64s\r\n%s%s%s"
                 "Proxy-Connection: keep-alive\r\n\r\n",
                 hp, hp, user_agent, p->auth[0] ? "Proxy-Authorization: Basic " : "", p->auth,
                 p->auth[0] ? "\r\n" : "");
    if (n < 0 || (size_t)n >= cap)
        return -ENOSPC;
    *len = (size_t)n;
    return 0;
}

void proxyconnect_reply_init(struct proxyconnect_reply *r)
{
    memset(r, 0, sizeof(*r));
    r->result = PROXYCONNECT_NEED_MORE;
}

/* Checks byte b at offset i of the status line "HTTP/1.x SSS[ reason]":
 * 0, or -1 when it cannot be one. */
static int status_byte(struct proxyconnect_reply *r, size_t i, uint8_t b)
{
    static const char prefix[] = "HTTP/1.";

    if (i < sizeof(prefix) - 1)
        return b == (uint8_t)prefix[i] ? 0 : -1;
    if (i == 7)
        return b == '0' || b == '1' ? 0 : -1;
    if (i == 8)
        return b == ' ' ? 0 : -1;
    if (i < 12) {
        if (b < '0' || b > '9')
            return -1;
        r->status = r->status * 10 + (b - '0');
        return i == 11 && r->status < 100 ? -1 : 0;
    }
    if (i == 12) {
        if (b != ' ' && b != '\r' && b != '\n')
            return -1;
        r->in_reason = b == ' ';
        return 0;
    }
    if (!r->in_reason)
        return 0;
    if (b == '\r' || b == '\n') {
        r->in_reason = 0;
    } else if (b >= 0x20 && b < 0x7f && r->reason_len + 1 < sizeof(r->reason)) {
        r->reason[r->reason_len++] = (char)b;
        r->reason[r->reason_len] = '\0';
    }
    return 0;
}

enum proxyconnect_result proxyconnect_reply_feed(struct proxyconnect_reply *r, const uint8_t *data,
                                                 size_t len, size_t *used)
{
    size_t i = 0;

    if (used != NULL)
        *used = 0;
    for (; i < len && r->result == PROXYCONNECT_NEED_MORE; i++) {
        uint8_t b = data[i];
        int end = 0;

        assert(r->seen < PROXYCONNECT_REPLY_MAX);
        if (status_byte(r, r->seen, b) != 0) {
            r->result = PROXYCONNECT_ERROR;
            r->error = PROXYCONNECT_ERR_NOT_HTTP;
            break;
        }
        r->seen++;
        /* The header ends at the first LF LF or LF CR LF. */
        if (r->lf_state == 1 && b == '\n')
            end = 1;
        else if (r->lf_state == 2 && b == '\n')
            end = 1;
        r->lf_state = b == '\n' ? 1 : (r->lf_state == 1 && b == '\r') ? 2 : 0;
        if (end) {
            r->result = PROXYCONNECT_OK;
        } else if (r->seen == PROXYCONNECT_REPLY_MAX) {
            r->result = PROXYCONNECT_ERROR;
            r->error = PROXYCONNECT_ERR_TOO_LONG;
        }
    }
    if (used != NULL)
        *used = i;
    return r->result;
}

const char *proxyconnect_error_string(enum proxyconnect_error e)
{
    switch (e) {
    case PROXYCONNECT_ERR_TOO_LONG:
        return "reply header over 8 KiB";
    case PROXYCONNECT_ERR_NOT_HTTP:
        return "not an HTTP reply";
    default:
        return "no error";
    }
}

int proxyconnect_auth_refused(int status)
{
    return status == 407 || status == 401;
}

int proxyconnect_exchange(int fd, const char *req, size_t req_len, int64_t deadline,
                          struct proxyconnect_reply *r)
{
    uint8_t peek[PROXYCONNECT_REPLY_MAX];
    int rc;

    proxyconnect_reply_init(r);
    rc = net_send_all(fd, req, req_len, deadline);
    if (rc != 0)
        return rc;
    r->sent = 1;
    for (;;) {
        enum proxyconnect_result res;
        size_t used = 0;
        /* Peek, then take only the header's bytes: TLS reads the rest. */
        ssize_t n = recv(fd, peek, sizeof(peek), MSG_PEEK);

        if (n == 0)
            return -ECONNRESET;
        if (n < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                return -errno;
            rc = net_wait_fd(fd, POLLIN, deadline);
            if (rc != 0)
                return rc;
            continue;
        }
        res = proxyconnect_reply_feed(r, peek, (size_t)n, &used);
        if (res == PROXYCONNECT_ERROR)
            return -EPROTO;
        if (used > 0 && recv(fd, peek, used, 0) != (ssize_t)used)
            return -EIO;
        if (res == PROXYCONNECT_OK)
            return 0;
    }
}
