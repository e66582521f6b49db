/* libFuzzer entry point for the address parsers: host:port, service URLs, the hub URL of the tools
 * and the egress proxy URL. What parses must print back to something that parses the same. */
/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/httpc.h"
#include "common/net.h"
#include "common/proxyconnect.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* "host:port", bracketing an IPv6 literal. */
static void hostport(char *out, size_t cap, const char *host, int port)
{
    snprintf(out, cap, strchr(host, ':') ? "[%s]:%d" : "%s:%d", host, port);
}

static void check_host(const char *host)
{
    size_t n = strnlen(host, NET_HOST_MAX + 1);
    if (n == 0 || n > NET_HOST_MAX)
        abort();
    /* Nothing that could end a header line or a URL authority. */
    if (strpbrk(host, "\r\n /@[]?#") != NULL)
        abort();
}

static void fuzz_hostport(const char *s)
{
    char host[NET_HOST_MAX + 1], hp[NET_HOST_MAX + 16], again[NET_HOST_MAX + 1];
    int port, port2;

    for (int def = 0; def <= 6443; def += 6443) {
        if (net_split_hostport(s, def, host, &port) != 0)
            continue;
        check_host(host);
        if (port < 1 || port > 65535)
            abort();
        hostport(hp, sizeof(hp), host, port);
        if (net_split_hostport(hp, 0, again, &port2) != 0 || strcmp(again, host) != 0 ||
            port2 != port)
            abort();
    }
}

static void fuzz_url(const char *s)
{
    /* Indexed by enum net_url_kind: a kind added there must be added here. */
    static const char *const scheme[] = {
        [NET_URL_HTTP] = "http://", [NET_URL_HTTPS] = "https://", [NET_URL_UNIX] = "unix:",
        [NET_URL_TCP] = "tcp://",   [NET_URL_H2C] = "h2c://",     [NET_URL_H2] = "h2://",
    };
    struct net_url u, v;
    char text[2048], hp[NET_HOST_MAX + 16];

    if (net_parse_url(s, &u) != 0)
        return;
    if ((unsigned)u.kind >= sizeof(scheme) / sizeof(scheme[0]) || scheme[u.kind] == NULL ||
        strnlen(u.path, sizeof(u.path)) >= sizeof(u.path))
        abort();
    if (u.kind == NET_URL_UNIX) {
        if (u.path[0] != '/' || u.host[0] != '\0')
            abort();
        snprintf(text, sizeof(text), "unix:%s", u.path);
    } else {
        check_host(u.host);
        if (u.port < 1 || u.port > 65535 || (u.path[0] != '\0' && u.path[0] != '/'))
            abort();
        /* The base path is joined with request paths: no trailing '/'. */
        if (u.path[0] != '\0' && u.path[strlen(u.path) - 1] == '/')
            abort();
        if (u.kind == NET_URL_TCP && u.path[0] != '\0')
            abort();
        hostport(hp, sizeof(hp), u.host, u.port);
        snprintf(text, sizeof(text), "%s%s%s", scheme[u.kind], hp, u.path);
    }
    if (net_parse_url(text, &v) != 0 || v.kind != u.kind || strcmp(v.host, u.host) != 0 ||
        v.port != u.port || strcmp(v.path, u.path) != 0)
        abort();
}

static void fuzz_hub_url(const char *s)
{
    struct httpc_target t, t2;
    char text[600], hp[NET_HOST_MAX + 16];

    memset(&t, 0, sizeof(t));
    if (httpc_target_from_url(s, &t) != 0)
        return;
    check_host(t.host);
    hostport(hp, sizeof(hp), t.host, t.port);
    snprintf(text, sizeof(text), "https://%s", hp);
    memset(&t2, 0, sizeof(t2));
    if (httpc_target_from_url(text, &t2) != 0 || strcmp(t2.host, t.host) != 0 || t2.port != t.port)
        abort();
}

static void fuzz_proxy(const char *s)
{
    struct proxyconnect_proxy p;
    char req[PROXYCONNECT_REQUEST_MAX], name[NET_HOST_MAX + 16];
    size_t len = 0;
    int rc;

    if (proxyconnect_parse_url(s, &p) != 0)
        return;
    check_host(p.host);
    if (p.port < 1 || p.port > 65535 || strchr(p.user, ':') != NULL)
        abort();
    if ((p.user[0] != '\0') != (p.auth[0] != '\0'))
        abort();
    proxyconnect_name(&p, name, sizeof(name));
    /* The request built for any target the parser accepts fits, and is one
     * header block: CRLF only at line ends, one blank line at the end. */
    rc = proxyconnect_request(&p, s + strlen(s) / 2, "ua\r\nX: y", req, sizeof(req), &len);
    if (rc != 0 && rc != -EINVAL)
        abort();
    if (rc == 0) {
        const char *end = strstr(req, "\r\n\r\n");
        if (len != strlen(req) || end == NULL || (size_t)(end - req) + 4 != len)
            abort();
        for (size_t i = 0; i < len; i++)
            if ((req[i] == '\n' && (i == 0 || req[i - 1] != '\r')) ||
                (req[i] == '\r' && req[i + 1] != '\n'))
                abort();
        if (strstr(req, "\r\nX: y") != NULL)
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s;

    /* The parsers take C strings; an exact-size copy keeps ASan on the end. */
    if (size > 4096)
        return 0;
    s = malloc(size + 1);
    if (s == NULL)
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    fuzz_hostport(s);
    fuzz_url(s);
    fuzz_hub_url(s);
    fuzz_proxy(s);
    free(s);
    return 0;
}
