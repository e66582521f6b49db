/* Address and URL parsing shared by the daemons and tools. */
/* SPDX-License-Identifier: MIT */
#ifndef TETHER_NET_H
#define TETHER_NET_H

#include <stddef.h>
#include <stdint.h>

#define NET_HOST_MAX 253

/* "host:port", "[v6]:port" or, if default_port > 0, a bare "host". Port
 * 1..65535. host gets the name without brackets. */
int net_split_hostport(const char *s, int default_port, char host[NET_HOST_MAX + 1], int *port);
/* s[0..len) is 1..NET_HOST_MAX bytes of a host name or IPv4 literal
 * (letters, digits, '-', '.', and '_' as container runtimes use). */
int net_host_chars_ok(const char *s, size_t len);

/* A service URL for a site: http://host[:port][/base], https://host[:port][/base],
 * unix:/path, tcp://host:port, h2c://host[:port][/base], h2://host[:port][/base]. */
enum net_url_kind {
    NET_URL_HTTP,
    NET_URL_HTTPS,
    NET_URL_UNIX,
    NET_URL_TCP,
    NET_URL_H2C, /* h2c://host[:port][/base]: HTTP/2 with prior knowledge, cleartext */
    NET_URL_H2,  /* h2://host[:port][/base]: HTTP/2 over TLS (ALPN h2) */
};
struct net_url {
    enum net_url_kind kind;
    char host[NET_HOST_MAX + 1]; /* empty for unix */
    int port;
    char path[1024]; /* unix: socket path; http(s): base path without trailing '/', may be "" */
};
int net_parse_url(const char *s, struct net_url *out);

/* The IP part of a peer string "ip:port" or "[v6]:port" as conn.c writes it
 * (everything before the last ':'; the whole string without one), into ip
 * (truncated to cap). */
void net_peer_ip(const char *peer, char *ip, size_t cap);

/* Blocking I/O for the command-line tools, against a deadline in
 * CLOCK_MONOTONIC milliseconds (net_now_ms). */
int64_t net_now_ms(void);
/* Waits until fd is ready for events: 0, -ETIMEDOUT or -errno. */
int net_wait_fd(int fd, short events, int64_t deadline);
/* Sends all of data on the non-blocking socket fd (MSG_NOSIGNAL): 0,
 * -ETIMEDOUT or -errno. */
int net_send_all(int fd, const void *data, size_t len, int64_t deadline);

#endif
