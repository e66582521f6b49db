/* Address and URL parsing shared by the daemons and tools. */
/* SPDX-License-Identifier: MIT */
#include "net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>

/* Longest input worth looking at: "[" host "]:" 5 digits. */
#define HOSTPORT_MAX (NET_HOST_MAX + 8)

static int parse_port(const char *s, size_t len, int *port)
{
    int v = 0;

    if (len == 0 || len > 5)
        return -EINVAL;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -EINVAL;
        v = v * 10 + (s[i] - '0');
    }
    if (v < 1 || v > 65535)
        return -EINVAL;
    *port = v;
    return 0;
}

/* Host names, IPv4 literals and the names container runtimes hand out ('_'). */
int net_host_chars_ok(const char *s, size_t len)
{
    if (len == 0 || len > NET_HOST_MAX)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '.' || c == '_'))
            return 0;
    }
    return 1;
}

int net_split_hostport(const char *s, int default_port, char host[NET_HOST_MAX + 1], int *port)
{
    size_t len, hlen;
    const char *h, *rest, *colon;
    int p = default_port;
    struct in6_addr a6;
    char tmp[NET_HOST_MAX + 1];

    if (s == NULL || host == NULL || port == NULL)
        return -EINVAL;
    len = strnlen(s, HOSTPORT_MAX + 1);
    if (len == 0 || len > HOSTPORT_MAX)
        return -EINVAL;
    if (s[0] == '[') {
        const char *close = memchr(s, ']', len);
        if (close == NULL)
            return -EINVAL;
        h = s + 1;
        hlen = (size_t)(close - h);
        rest = close + 1;
        if (hlen == 0 || hlen > NET_HOST_MAX)
            return -EINVAL;
        memcpy(tmp, h, hlen);
        tmp[hlen] = '\0';
        /* Brackets are for IPv6 literals only. */
        if (inet_pton(AF_INET6, tmp, &a6) != 1)
            return -EINVAL;
        if (*rest == ':') {
            if (parse_port(rest + 1, len - (size_t)(rest + 1 - s), &p) != 0)
                return -EINVAL;
        } else if (*rest != '\0') {
            return -EINVAL;
        }
    } else {
        if (memchr(s, ']', len) != NULL || memchr(s, '[', len) != NULL)
            return -EINVAL;
        colon = memchr(s, ':', len);
        if (colon != NULL) {
            /* A second colon means a bare IPv6 literal: ambiguous, must be bracketed. */
            if (memchr(colon + 1, ':', len - (size_t)(colon + 1 - s)) != NULL)
                return -EINVAL;
            hlen = (size_t)(colon - s);
            if (parse_port(colon + 1, len - hlen - 1, &p) != 0)
                return -EINVAL;
        } else {
            hlen = len;
        }
        if (!net_host_chars_ok(s, hlen))
            return -EINVAL;
        memcpy(tmp, s, hlen);
        tmp[hlen] = '\0';
    }
    if (p < 1 || p > 65535)
        return -EINVAL;
    memcpy(host, tmp, hlen + 1);
    *port = p;
    return 0;
}

static int path_chars_ok(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c >= 0x7f || c == '?' || c == '#')
            return 0;
    }
    return 1;
}

static int starts_with_ci(const char *s, const char *prefix)
{
    return strncasecmp(s, prefix, strlen(prefix)) == 0;
}

int net_parse_url(const char *s, struct net_url *out)
{
    static const struct {
        const char *prefix;
        enum net_url_kind kind;
        int port; /* the default; 0: none, the URL must say */
    } schemes[] = {
        {"http://", NET_URL_HTTP, 80}, {"https://", NET_URL_HTTPS, 443},
        {"h2c://", NET_URL_H2C, 80},   {"h2://", NET_URL_H2, 443},
        {"tcp://", NET_URL_TCP, 0},
    };
    size_t i;
    char auth[HOSTPORT_MAX + 1];
    const char *p, *slash;
    size_t len, alen, plen;
    int default_port, rc = -EINVAL;

    if (s == NULL || out == NULL)
        return -EINVAL;
    memset(out, 0, sizeof(*out));
    len = strnlen(s, sizeof(out->path) + HOSTPORT_MAX + 16);
    if (len >= sizeof(out->path) + HOSTPORT_MAX + 16)
        return -EINVAL;

    if (starts_with_ci(s, "unix:")) {
        struct sockaddr_un sun;
        p = s + 5;
        plen = len - 5;
        /* The path must fit in sun_path with its NUL, or connect() cannot use it. */
        if (plen < 2 || p[0] != '/' || plen >= sizeof(sun.sun_path) || !path_chars_ok(p, plen))
            return -EINVAL;
        out->kind = NET_URL_UNIX;
        memcpy(out->path, p, plen + 1);
        return 0;
    }
    for (i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++)
        if (starts_with_ci(s, schemes[i].prefix))
            break;
    if (i == sizeof(schemes) / sizeof(schemes[0]))
        return -EINVAL;
    out->kind = schemes[i].kind;
    p = s + strlen(schemes[i].prefix);
    default_port = schemes[i].port;
    len -= (size_t)(p - s);
    slash = memchr(p, '/', len);
    alen = slash != NULL ? (size_t)(slash - p) : len;
    if (alen == 0 || alen > HOSTPORT_MAX)
        goto out;
    memcpy(auth, p, alen);
    auth[alen] = '\0';
    if (net_split_hostport(auth, default_port, out->host, &out->port) != 0)
        goto out;
    if (slash != NULL) {
        if (out->kind == NET_URL_TCP)
            goto out;
        plen = len - alen;
        /* The base path is joined with request paths, so drop trailing '/'. */
        while (plen > 0 && slash[plen - 1] == '/')
            plen--;
        if (plen >= sizeof(out->path) || !path_chars_ok(slash, plen))
            goto out;
        memcpy(out->path, slash, plen);
        out->path[plen] = '\0';
    }
    rc = 0;
out:
    if (rc != 0)
        memset(out, 0, sizeof(*out));
    return rc;
}

void net_peer_ip(const char *peer, char *ip, size_t cap)
{
    const char *colon = strrchr(peer, ':');
    size_t n = colon ? (size_t)(colon - peer) : strlen(peer);

    snprintf(ip, cap, "%.*s", (int)n, peer);
}

int64_t net_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int net_wait_fd(int fd, short events, int64_t deadline)
{
    struct pollfd pfd = {.fd = fd, .events = events};

    for (;;) {
        int64_t left = deadline - net_now_ms();
        int n;

        if (left <= 0)
            return -ETIMEDOUT;
        n = poll(&pfd, 1, left > INT32_MAX ? INT32_MAX : (int)left);
        if (n > 0)
            return 0;
        if (n == 0)
            return -ETIMEDOUT;
        if (errno != EINTR)
            return -errno;
    }
}

int net_send_all(int fd, const void *data, size_t len, int64_t deadline)
{
    const uint8_t *p = data;

    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        int rc;

        if (n > 0) {
            p += n;
            len -= (size_t)n;
            continue;
        }
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            return -errno;
        rc = net_wait_fd(fd, POLLOUT, deadline);
        if (rc != 0)
            return rc;
    }
    return 0;
}
