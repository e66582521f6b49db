/* Dialing helpers for the site: HTTP CONNECT proxies (URL, request, bounded reply parser) and
 * finding the process that holds a local TCP port. */
/* SPDX-License-Identifier: MIT */
#include "dial.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "../common/crypto.h"
#include "../common/httpc.h"
#include "../common/urlpath.h"

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

int dial_proxy_parse(const char *url, struct dial_proxy *out)
{
    char hostport[NET_HOST_MAX + 16];
    char pass[DIAL_CRED_MAX + 1];
    char cred[2 * DIAL_CRED_MAX + 2];
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

void dial_proxy_name(const struct dial_proxy *p, char *out, size_t cap)
{
    snprintf(out, cap, strchr(p->host, ':') ? "[%s]:%d" : "%s:%d", p->host, p->port);
}

int dial_httpc_proxy(const struct dial_proxy *p, const char *target, char *buf, size_t cap,
                     struct httpc_proxy *hp)
{
    size_t len = 0;
    int rc = dial_connect_request(p, target, "tether-site/" TETHER_VERSION, buf, cap, &len);

    if (rc != 0)
        return rc;
    memset(hp, 0, sizeof(*hp));
    hp->host = p->host;
    hp->port = p->port;
    hp->request = buf;
    hp->request_len = len;
    hp->parse_reply = dial_connect_reply;
    hp->reply_max = DIAL_REPLY_MAX;
    return 0;
}

int dial_connect_request(const struct dial_proxy *p, const char *target, const char *user_agent,
                         char *out, size_t cap, size_t *len)
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

/* Index just past the blank line ending the header in d[0..n), or 0. */
static size_t header_end(const uint8_t *d, size_t n)
{
    for (size_t i = 0; i + 1 < n; i++) {
        if (d[i] != '\n')
            continue;
        if (d[i + 1] == '\n')
            return i + 2;
        if (i + 2 < n && d[i + 1] == '\r' && d[i + 2] == '\n')
            return i + 3;
    }
    return 0;
}

int dial_connect_reply(const uint8_t *data, size_t len, int *status, size_t *hdr_len, char *reason,
                       size_t reason_cap)
{
    static const char prefix[] = "HTTP/1.";
    size_t scan = len < DIAL_REPLY_MAX ? len : DIAL_REPLY_MAX;
    size_t end, i, r = 0;
    int st = 0;

    /* Refuse a peer that is not speaking HTTP as early as possible. */
    for (i = 0; i < sizeof(prefix) - 1 && i < len; i++)
        if (data[i] != (uint8_t)prefix[i])
            return -EPROTO;
    end = header_end(data, scan);
    if (end == 0)
        return len >= DIAL_REPLY_MAX ? -EMSGSIZE : -EAGAIN;
    /* "HTTP/1.x SSS[ reason]" then CR? LF. */
    if (end < 12 || (data[7] != '0' && data[7] != '1') || data[8] != ' ')
        return -EPROTO;
    for (i = 9; i < 12; i++) {
        if (data[i] < '0' || data[i] > '9')
            return -EPROTO;
        st = st * 10 + (data[i] - '0');
    }
    if (st < 100)
        return -EPROTO;
    i = 12;
    if (data[i] == ' ')
        i++;
    else if (data[i] != '\r' && data[i] != '\n')
        return -EPROTO;
    if (reason != NULL && reason_cap > 0) {
        for (; i < end && data[i] != '\r' && data[i] != '\n'; i++)
            if (r + 1 < reason_cap && data[i] >= 0x20 && data[i] < 0x7f)
                reason[r++] = (char)data[i];
        reason[r] = '\0';
    }
    *status = st;
    *hdr_len = end;
    return 0;
}

/* --- who holds a port --- */

static const char *tcp_state_name(unsigned st)
{
    static const char *names[] = {"?",          "ESTABLISHED", "SYN_SENT",  "SYN_RECV",
                                  "FIN_WAIT1",  "FIN_WAIT2",   "TIME_WAIT", "CLOSE",
                                  "CLOSE_WAIT", "LAST_ACK",    "LISTEN",    "CLOSING"};
    return st < sizeof(names) / sizeof(names[0]) ? names[st] : "?";
}

/* Finds a socket with local port `port` in one /proc/net table. */
static int scan_table(const char *path, int port, unsigned long *inode, unsigned *state)
{
    char line[512];
    FILE *f = fopen(path, "r");
    int found = 0;

    if (f == NULL)
        return 0;
    /* Header line first. */
    if (fgets(line, sizeof(line), f) == NULL) {
        fclose(f);
        return 0;
    }
    while (fgets(line, sizeof(line), f) != NULL) {
        char local[64], remote[64];
        unsigned st, lport;
        unsigned long ino;
        const char *colon;

        /* sl local rem st tx:rx tr:when retrnsmt uid timeout inode */
        if (sscanf(line, " %*s %63s %63s %x %*s %*s %*s %*u %*u %lu", local, remote, &st, &ino) !=
            4)
            continue;
        colon = strrchr(local, ':');
        if (colon == NULL || sscanf(colon + 1, "%x", &lport) != 1 || (int)lport != port)
            continue;
        /* Prefer a live socket (with an inode) over TIME_WAIT leftovers. */
        if (!found || (*inode == 0 && ino != 0)) {
            *inode = ino;
            *state = st;
        }
        found = 1;
    }
    fclose(f);
    return found;
}

/* Finds the process owning socket inode ino. */
static int find_owner(unsigned long ino, int *pid_out, char *comm, size_t comm_cap)
{
    char want[48], path[64], link[64];
    DIR *proc = opendir("/proc");
    struct dirent *de;
    int found = 0;

    if (proc == NULL)
        return 0;
    snprintf(want, sizeof(want), "socket:[%lu]", ino);
    while (!found && (de = readdir(proc)) != NULL) {
        DIR *fds;
        struct dirent *fe;
        char *endp;
        long pid = strtol(de->d_name, &endp, 10);

        if (*endp != '\0' || pid <= 0)
            continue;
        snprintf(path, sizeof(path), "/proc/%ld/fd", pid);
        fds = opendir(path);
        if (fds == NULL)
            continue;
        while ((fe = readdir(fds)) != NULL) {
            ssize_t n;
            if (fe->d_name[0] == '.')
                continue;
            if (snprintf(path, sizeof(path), "/proc/%ld/fd/%s", pid, fe->d_name) >=
                (int)sizeof(path))
                continue;
            n = readlink(path, link, sizeof(link) - 1);
            if (n <= 0)
                continue;
            link[n] = '\0';
            if (strcmp(link, want) == 0) {
                found = 1;
                break;
            }
        }
        closedir(fds);
        if (found) {
            FILE *f;
            *pid_out = (int)pid;
            comm[0] = '\0';
            snprintf(path, sizeof(path), "/proc/%ld/comm", pid);
            if ((f = fopen(path, "r")) != NULL) {
                if (fgets(comm, (int)comm_cap, f) == NULL)
                    comm[0] = '\0';
                comm[strcspn(comm, "\n")] = '\0';
                fclose(f);
            }
        }
    }
    closedir(proc);
    return found;
}

int dial_port_holder(int port, char *out, size_t cap)
{
    unsigned long ino = 0, ino6 = 0;
    unsigned st = 0, st6 = 0;
    int in4, in6, pid = 0;
    char comm[64];

    in4 = scan_table("/proc/net/tcp", port, &ino, &st);
    in6 = scan_table("/proc/net/tcp6", port, &ino6, &st6);
    if (!in4 && !in6) {
        snprintf(out, cap, "no socket uses it now");
        return -ENOENT;
    }
    if ((!in4 || ino == 0) && in6 && ino6 != 0) {
        ino = ino6;
        st = st6;
    } else if (!in4) {
        st = st6;
    }
    if (ino != 0 && find_owner(ino, &pid, comm, sizeof(comm)))
        snprintf(out, cap, "pid %d (%s), socket state %s", pid, comm[0] ? comm : "?",
                 tcp_state_name(st));
    else
        snprintf(out, cap, "a socket in state %s owned by no process visible to this user",
                 tcp_state_name(st));
    return 0;
}
