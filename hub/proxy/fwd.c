/* The forwarding headers the hub sets on a request to a site's service, and the names it reserves.
 */
/* SPDX-License-Identifier: MIT */
#include "fwd.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

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
