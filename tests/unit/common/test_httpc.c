/* Tests for the tools' HTTPS client against a real wolfSSL server thread on loopback. */
/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <wolfssl/options.h>
#include <wolfssl/ssl.h>

#include "common/crypto.h"
#include "common/httpc.h"
#include "testutil.h"

enum mode {
    M_ECHO,        /* answers with method, path, bearer and body */
    M_CHUNKED,     /* answers with a chunked body after a 100 Continue */
    M_SILENT,      /* completes TLS, reads the request, never answers */
    M_HUGE_LEN,    /* announces a body of 64 MiB + 1 */
    M_HUGE_STREAM, /* streams more than 64 MiB without a length */
};

struct server {
    WOLFSSL_CTX *ctx;
    int lfd;
    int port;
    enum mode mode;
    int wake[2];        /* M_SILENT waits on this before closing */
    int handshake;      /* 1 ok, 0 failed, -1 never reached */
    char alpn[32];      /* protocol the server agreed on */
    char sni[64];       /* server name the client asked for */
    size_t request_len; /* bytes of request the server read */
    size_t sent;        /* M_HUGE_STREAM: body bytes written before the client left */
    pthread_t thread;
};

#define REQ_MAX (4u << 20)

/* Linked with -Wl,--wrap=connect: counts the TCP sockets connected and those
 * of them without TCP_NODELAY (Nagle would hold a request's second write,
 * or a `tetherctl connect` stream's bytes, for the hub's delayed ACK). */
int __real_connect(int fd, const struct sockaddr *sa, socklen_t len);
static int g_tcp_connects, g_tcp_nagle;

int __wrap_connect(int fd, const struct sockaddr *sa, socklen_t len)
{
    int v = 0;
    socklen_t vl = sizeof(v);

    if (sa != NULL && (sa->sa_family == AF_INET || sa->sa_family == AF_INET6)) {
        g_tcp_connects++;
        if (getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &v, &vl) != 0 || v == 0)
            g_tcp_nagle++;
    }
    return __real_connect(fd, sa, len);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int write_all(WOLFSSL *ssl, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        int n = wolfSSL_write(ssl, p, len > 65536 ? 65536 : (int)len);
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Reads one request (headers + Content-Length body) into buf; returns its length or -1. */
static long read_request(WOLFSSL *ssl, char *buf, size_t cap, char **body, size_t *body_len)
{
    size_t len = 0, need = 0;
    char *end = NULL;

    while (len < cap - 1) {
        int n = wolfSSL_read(ssl, buf + len, (int)(cap - 1 - len));
        if (n <= 0)
            return -1;
        len += (size_t)n;
        buf[len] = '\0';
        if (end == NULL && (end = strstr(buf, "\r\n\r\n")) != NULL) {
            char *cl = strcasestr(buf, "\r\nContent-Length:");
            need = (size_t)(end + 4 - buf);
            if (cl != NULL && cl < end)
                need += strtoul(cl + 17, NULL, 10);
        }
        if (end != NULL && len >= need)
            break;
    }
    if (end == NULL || len < need)
        return -1;
    *body = end + 4;
    *body_len = need - (size_t)(end + 4 - buf);
    return (long)len;
}

static const char *header_value(const char *req, const char *name, char *out, size_t cap)
{
    char pat[64];
    const char *p, *e;

    snprintf(pat, sizeof(pat), "\r\n%s: ", name);
    p = strcasestr(req, pat);
    out[0] = '\0';
    if (p == NULL)
        return out;
    p += strlen(pat);
    e = strstr(p, "\r\n");
    if (e != NULL && (size_t)(e - p) < cap) {
        memcpy(out, p, (size_t)(e - p));
        out[e - p] = '\0';
    }
    return out;
}

/* Until server_stop(), at most 20 s. */
static void wait_wake(struct server *s)
{
    struct pollfd p = {.fd = s->wake[0], .events = POLLIN};
    poll(&p, 1, 20000);
}

static void serve(struct server *s, WOLFSSL *ssl)
{
    static char req[REQ_MAX];
    char *body = NULL, method[16] = "", path[256] = "", auth[256], resp[1024];
    size_t body_len = 0;
    long n;

    /* Read the request in every mode: closing with unread data would reset
     * the connection and hide what the client does with the answer. */
    n = read_request(ssl, req, sizeof(req), &body, &body_len);
    if (n < 0)
        return;
    s->request_len = (size_t)n;
    if (s->mode == M_HUGE_LEN) {
        const char *h = "HTTP/1.1 200 OK\r\nContent-Length: 67108865\r\n\r\nabc";
        write_all(ssl, h, strlen(h));
        /* Stay until the client gave up, so it never sees a reset instead. */
        wait_wake(s);
        return;
    }
    if (s->mode == M_HUGE_STREAM) {
        static char chunk[1 << 16];
        const char *h = "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n";
        size_t sent = 0;

        memset(chunk, 'x', sizeof(chunk));
        /* Until the client hangs up (it must, at 64 MiB); 256 MiB stops a broken one. */
        if (write_all(ssl, h, strlen(h)) != 0)
            return;
        while (sent < (256u << 20) && write_all(ssl, chunk, sizeof(chunk)) == 0)
            sent += sizeof(chunk);
        s->sent = sent;
        return;
    }
    sscanf(req, "%15s %255s", method, path);
    header_value(req, "Authorization", auth, sizeof(auth));

    if (s->mode == M_SILENT) {
        wait_wake(s);
        return;
    }
    if (s->mode == M_CHUNKED) {
        const char *r = "HTTP/1.1 100 Continue\r\n\r\n"
                        "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\n"
                        "Transfer-Encoding: chunked\r\n\r\n"
                        "7\r\n{\"error\r\n"
                        "1b\r\n\": \"not_found\", \"detail\": \"\r\n"
                        "c\r\nno such site\r\n"
                        "2\r\n\"}\r\n"
                        "0\r\n\r\n";
        write_all(ssl, r, strlen(r));
        return;
    }
    /* M_ECHO: "METHOD PATH AUTH\n" then the body, so the client can compare. */
    char line[600];
    int ln = snprintf(line, sizeof(line), "%s %s %s\n", method, path, auth);
    int hn = snprintf(resp, sizeof(resp),
                      "HTTP/1.1 201 Created\r\nContent-Type: text/plain; charset=utf-8\r\n"
                      "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                      (size_t)ln + body_len);
    if (write_all(ssl, resp, (size_t)hn) == 0 && write_all(ssl, line, (size_t)ln) == 0)
        write_all(ssl, body, body_len);
}

static void *server_main(void *arg)
{
    struct server *s = arg;
    struct timeval tv = {.tv_sec = 20};
    WOLFSSL *ssl = NULL;
    int fd = accept(s->lfd, NULL, NULL);

    if (fd < 0)
        return NULL;
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    ssl = wolfSSL_new(s->ctx);
    if (ssl == NULL)
        goto out;
    wolfSSL_set_fd(ssl, fd);
    char protos[] = "h2,http/1.1";
    wolfSSL_UseALPN(ssl, protos, sizeof(protos) - 1, WOLFSSL_ALPN_CONTINUE_ON_MISMATCH);
    if (wolfSSL_accept(ssl) != WOLFSSL_SUCCESS) {
        s->handshake = 0;
        goto out;
    }
    s->handshake = 1;
    {
        char *name = NULL;
        unsigned short sz = 0;
        void *sni = NULL;
        unsigned short sni_len;

        if (wolfSSL_ALPN_GetProtocol(ssl, &name, &sz) == WOLFSSL_SUCCESS && sz < sizeof(s->alpn)) {
            memcpy(s->alpn, name, sz);
            s->alpn[sz] = '\0';
        }
        sni_len = wolfSSL_SNI_GetRequest(ssl, WOLFSSL_SNI_HOST_NAME, &sni);
        if (sni != NULL && sni_len < sizeof(s->sni)) {
            memcpy(s->sni, sni, sni_len);
            s->sni[sni_len] = '\0';
        }
    }
    serve(s, ssl);
    wolfSSL_shutdown(ssl);
out:
    if (ssl != NULL)
        wolfSSL_free(ssl);
    close(fd);
    return NULL;
}

static int server_start(struct server *s, WOLFSSL_CTX *ctx, enum mode mode)
{
    memset(s, 0, sizeof(*s));
    s->ctx = ctx;
    s->mode = mode;
    s->handshake = -1;
    if (pipe(s->wake) != 0)
        return -1;
    s->lfd = tu_loopback_socket(&s->port, 4);
    if (s->lfd < 0)
        return -1;
    return pthread_create(&s->thread, NULL, server_main, s) == 0 ? 0 : -1;
}

static void server_stop(struct server *s)
{
    if (write(s->wake[1], "x", 1) != 1)
        perror("write");
    /* Wakes an accept() that no client will ever satisfy (a failed test). */
    shutdown(s->lfd, SHUT_RDWR);
    pthread_join(s->thread, NULL);
    close(s->lfd);
    close(s->wake[0]);
    close(s->wake[1]);
}

static void target(struct httpc_target *t, const char *host, int port, const char *pin, int ms)
{
    memset(t, 0, sizeof(*t));
    snprintf(t->host, sizeof(t->host), "%s", host);
    t->port = port;
    snprintf(t->pin, sizeof(t->pin), "%s", pin);
    t->timeout_ms = ms;
}

/* One GET from a new server in mode at 127.0.0.1, with pin and a timeout of
 * ms; the server is stopped after, its record left in *s. Returns what
 * httpc_request() returned. */
static int get_from(struct server *s, WOLFSSL_CTX *ctx, enum mode mode, const char *pin, int ms,
                    const char *path, const char *bearer, struct httpc_response *r, char *err,
                    size_t cap)
{
    struct httpc_target t;
    int rc;

    CHECK_EQ_INT(server_start(s, ctx, mode), 0);
    target(&t, "127.0.0.1", s->port, pin, ms);
    rc = httpc_request(&t, "GET", path, bearer, NULL, NULL, 0, r, err, cap);
    server_stop(s);
    return rc;
}

static void test_url(void)
{
    struct httpc_target t;

    memset(&t, 0, sizeof(t));
    CHECK_EQ_INT(httpc_target_from_url("https://hub.example.org:7443", &t), 0);
    CHECK_EQ_STR(t.host, "hub.example.org");
    CHECK_EQ_INT(t.port, 7443);
    CHECK_EQ_INT(httpc_target_from_url("https://hub.example.org/", &t), 0);
    CHECK_EQ_INT(t.port, 6443);
    CHECK_EQ_INT(httpc_target_from_url("https://[::1]:8443", &t), 0);
    CHECK_EQ_STR(t.host, "::1");
    CHECK_EQ_INT(t.port, 8443);
    CHECK_EQ_INT(httpc_target_from_url("http://hub:6443", &t), -EINVAL);
    CHECK_EQ_INT(httpc_target_from_url("https://", &t), -EINVAL);
    CHECK_EQ_INT(httpc_target_from_url("https://hub:0", &t), -EINVAL);
    CHECK_EQ_INT(httpc_target_from_url("https://hub:6443/base", &t), -EINVAL);
    CHECK_EQ_INT(httpc_target_from_url("https://user@hub:6443", &t), -EINVAL);
}

static void test_round_trip(WOLFSSL_CTX *ctx, const char *pin)
{
    struct server s;
    struct httpc_target t;
    struct httpc_response r;
    char err[256] = "";
    size_t body_len = 300000; /* several TLS records each way */
    char *body = malloc(body_len);
    char expect[256];
    size_t i;
    int rc;

    for (i = 0; i < body_len; i++)
        body[i] = (char)('a' + i % 26);
    CHECK_EQ_INT(server_start(&s, ctx, M_ECHO), 0);
    target(&t, "localhost", s.port, pin, 10000);
    g_tcp_connects = g_tcp_nagle = 0;
    rc = httpc_request(&t, "POST", "/v1/echo?x=1", "tth_secret", "application/json", body, body_len,
                       &r, err, sizeof(err));
    server_stop(&s);
    CHECK_EQ_INT(rc, 0);
    CHECK(g_tcp_connects > 0);
    CHECK_EQ_INT(g_tcp_nagle, 0); /* the socket to the hub has TCP_NODELAY */
    CHECK_EQ_STR(err, "");
    CHECK_EQ_INT(s.handshake, 1);
    CHECK_EQ_STR(s.alpn, "http/1.1");
    CHECK_EQ_STR(s.sni, "localhost");
    CHECK_EQ_INT(r.status, 201);
    CHECK_EQ_STR(r.content_type, "text/plain; charset=utf-8");
    snprintf(expect, sizeof(expect), "POST /v1/echo?x=1 Bearer tth_secret\n");
    CHECK(r.body != NULL && r.body_len == strlen(expect) + body_len);
    if (r.body != NULL && r.body_len == strlen(expect) + body_len) {
        CHECK(memcmp(r.body, expect, strlen(expect)) == 0);
        CHECK(memcmp(r.body + strlen(expect), body, body_len) == 0);
        CHECK_EQ_INT(r.body[r.body_len], '\0');
    }
    httpc_response_free(&r);
    CHECK(r.body == NULL);

    /* No body, no bearer, and an IP literal: no SNI, no Content-Length. */
    rc = get_from(&s, ctx, M_ECHO, pin, 10000, "/v1/sites", NULL, &r, err, sizeof(err));
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_STR(s.sni, "");
    CHECK_EQ_STR(r.body, "GET /v1/sites \n");
    httpc_response_free(&r);
    free(body);
}

static void test_chunked(WOLFSSL_CTX *ctx, const char *pin)
{
    struct server s;
    struct httpc_response r;
    char err[256] = "";
    int rc;

    rc = get_from(&s, ctx, M_CHUNKED, pin, 10000, "/v1/sites/nope", "tok", &r, err, sizeof(err));
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_INT(r.status, 404);
    CHECK_EQ_STR(r.content_type, "application/json");
    CHECK_EQ_STR(r.body, "{\"error\": \"not_found\", \"detail\": \"no such site\"}");
    httpc_response_free(&r);
}

static void test_wrong_pin(WOLFSSL_CTX *ctx, const char *other_pin)
{
    struct server s;
    struct httpc_response r;
    char err[256] = "";
    int rc;

    rc = get_from(&s, ctx, M_ECHO, other_pin, 10000, "/v1/sites", "tth_secret", &r, err,
                  sizeof(err));
    CHECK_EQ_INT(rc, -EKEYREJECTED);
    CHECK(strstr(err, "does not match the pinned key") != NULL);
    CHECK(strstr(err, other_pin) != NULL);
    CHECK_EQ_INT(s.handshake, 0);
    CHECK_EQ_INT(s.request_len, 0);
    CHECK(r.body == NULL);
}

static void test_refused(const char *pin)
{
    struct httpc_target t;
    struct httpc_response r;
    char err[256] = "";
    int port = 0, fd = tu_loopback_socket(&port, 4), rc;

    /* The port was just free; closing the listener makes it refuse. */
    CHECK(fd >= 0);
    close(fd);
    target(&t, "127.0.0.1", port, pin, 5000);
    rc = httpc_request(&t, "GET", "/v1/sites", NULL, NULL, NULL, 0, &r, err, sizeof(err));
    CHECK_EQ_INT(rc, -ECONNREFUSED);
    CHECK(strstr(err, "cannot connect to hub 127.0.0.1") != NULL);
    CHECK(strcasestr(err, "refused") != NULL);

    target(&t, "no-such-host.invalid", 6443, pin, 5000);
    rc = httpc_request(&t, "GET", "/v1/sites", NULL, NULL, NULL, 0, &r, err, sizeof(err));
    CHECK(rc < 0);
    CHECK(strstr(err, "cannot resolve hub host \"no-such-host.invalid\"") != NULL);
}

static void test_timeouts(WOLFSSL_CTX *ctx, const char *pin)
{
    struct server s;
    struct httpc_target t;
    struct httpc_response r;
    char err[256] = "";
    int64_t t0;
    int rc, port = 0, lfd;

    /* TLS done, request read, no answer. */
    CHECK_EQ_INT(server_start(&s, ctx, M_SILENT), 0);
    target(&t, "127.0.0.1", s.port, pin, 600);
    t0 = now_ms();
    rc = httpc_request(&t, "GET", "/v1/sites", NULL, NULL, NULL, 0, &r, err, sizeof(err));
    t0 = now_ms() - t0;
    server_stop(&s);
    CHECK_EQ_INT(rc, -ETIMEDOUT);
    CHECK(strstr(err, "no response from 127.0.0.1") != NULL);
    CHECK_EQ_INT(s.handshake, 1);
    CHECK(s.request_len > 0);
    CHECK(t0 >= 550 && t0 < 5000);

    /* A listener that never accepts: the kernel completes TCP, nobody speaks TLS. */
    lfd = tu_loopback_socket(&port, 4);
    CHECK(lfd >= 0);
    target(&t, "127.0.0.1", port, pin, 400);
    t0 = now_ms();
    rc = httpc_request(&t, "GET", "/v1/sites", NULL, NULL, NULL, 0, &r, err, sizeof(err));
    t0 = now_ms() - t0;
    close(lfd);
    CHECK_EQ_INT(rc, -ETIMEDOUT);
    CHECK(strstr(err, "TLS handshake") != NULL);
    CHECK(t0 >= 350 && t0 < 5000);
}

static void test_too_large(WOLFSSL_CTX *ctx, const char *pin)
{
    struct server s;
    struct httpc_response r;
    char err[256] = "";
    int rc;

    rc = get_from(&s, ctx, M_HUGE_LEN, pin, 10000, "/v1/audit", NULL, &r, err, sizeof(err));
    CHECK_EQ_INT(rc, -EFBIG);
    CHECK(strstr(err, "too large") != NULL);
    CHECK(r.body == NULL);

    rc = get_from(&s, ctx, M_HUGE_STREAM, pin, 60000, "/v1/audit", NULL, &r, err, sizeof(err));
    CHECK_EQ_INT(rc, -EFBIG);
    CHECK(strstr(err, "too large") != NULL);
    CHECK(r.body == NULL);
    /* The client stopped at the bound, not at the end of what was on offer. */
    CHECK(s.sent >= (64u << 20) && s.sent < (256u << 20));
}

static void test_bad_input(const char *pin)
{
    struct httpc_target t;
    struct httpc_response r;
    char err[256] = "";

    /* Nothing may smuggle a header line; no network needed to refuse. */
    target(&t, "127.0.0.1", 1, pin, 1000);
    CHECK_EQ_INT(
        httpc_request(&t, "GET", "/x\r\nX-Evil: 1", NULL, NULL, NULL, 0, &r, err, sizeof(err)),
        -EINVAL);
    CHECK_EQ_INT(
        httpc_request(&t, "GET", "/x", "tok\r\nX-Evil: 1", NULL, NULL, 0, &r, err, sizeof(err)),
        -EINVAL);
    CHECK_EQ_INT(httpc_request(&t, "GET", "x", NULL, NULL, NULL, 0, &r, err, sizeof(err)), -EINVAL);
    target(&t, "127.0.0.1", 1, "sha256//nope", 1000);
    CHECK_EQ_INT(httpc_request(&t, "GET", "/x", NULL, NULL, NULL, 0, &r, err, sizeof(err)),
                 -EINVAL);
    CHECK(strstr(err, "pin") != NULL);
}

/* --- through an HTTP CONNECT proxy: a fake proxy thread on loopback --- */

struct fake_proxy {
    int lfd;
    int port;
    const char *reply; /* written after the request; NULL: relay to relay_port after a 200 */
    size_t reply_len;
    int relay_port;
    char request[2048];
    pthread_t thread;
};

static void relay(int a, int b)
{
    char buf[16384];
    struct pollfd p[2] = {{.fd = a, .events = POLLIN}, {.fd = b, .events = POLLIN}};

    while (poll(p, 2, 5000) > 0) {
        for (int i = 0; i < 2; i++) {
            ssize_t n;
            if (!(p[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            n = read(p[i].fd, buf, sizeof(buf));
            if (n <= 0 || write(p[1 - i].fd, buf, (size_t)n) != n)
                return;
        }
    }
}

static void *proxy_main(void *arg)
{
    struct fake_proxy *fp = arg;
    size_t have = 0;
    int fd = accept(fp->lfd, NULL, NULL);

    if (fd < 0)
        return NULL;
    while (have < sizeof(fp->request) - 1 && !strstr(fp->request, "\r\n\r\n")) {
        ssize_t n = read(fd, fp->request + have, sizeof(fp->request) - 1 - have);
        if (n <= 0)
            break;
        have += (size_t)n;
        fp->request[have] = '\0';
    }
    if (fp->reply != NULL) {
        if (fp->reply_len > 0 && write(fd, fp->reply, fp->reply_len) < 0)
            perror("proxy write");
    } else {
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)fp->relay_port)};
        int up = socket(AF_INET, SOCK_STREAM, 0);
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (up >= 0 && connect(up, (struct sockaddr *)&a, sizeof(a)) == 0) {
            const char ok[] = "HTTP/1.1 200 Connection established\r\n\r\n";
            if (write(fd, ok, sizeof(ok) - 1) == (ssize_t)sizeof(ok) - 1)
                relay(fd, up);
        }
        if (up >= 0)
            close(up);
    }
    close(fd);
    return NULL;
}

static int proxy_case(const char *pin, int relay_port, const char *reply, size_t reply_len,
                      char *err, size_t cap, struct fake_proxy *fp)
{
    static const char req[] = "CONNECT 127.0.0.1:1 HTTP/1.1\r\nHost: 127.0.0.1:1\r\n\r\n";
    struct httpc_proxy hp = {0};
    struct httpc_target t;
    struct httpc_response r;
    int rc;

    memset(fp, 0, sizeof(*fp));
    fp->lfd = tu_loopback_socket(&fp->port, 4);
    fp->reply = reply;
    fp->reply_len = reply_len;
    fp->relay_port = relay_port;
    if (fp->lfd < 0 || pthread_create(&fp->thread, NULL, proxy_main, fp) != 0)
        return -EIO;
    hp.host = "127.0.0.1";
    hp.port = fp->port;
    hp.request = req;
    hp.request_len = sizeof(req) - 1;
    target(&t, "127.0.0.1", 1, pin, 5000);
    t.proxy = &hp;
    rc = httpc_request(&t, "GET", "/via-proxy", NULL, NULL, NULL, 0, &r, err, cap);
    if (rc == 0) {
        CHECK_EQ_INT(r.status, 201); /* the echo server's answer, through the tunnel */
        CHECK(r.body != NULL && strstr(r.body, "/via-proxy") != NULL);
        httpc_response_free(&r);
    }
    /* Wakes the proxy's accept() if the client never got as far as connecting
     * (the torture build fails its allocations). */
    shutdown(fp->lfd, SHUT_RDWR);
    pthread_join(fp->thread, NULL);
    close(fp->lfd);
    CHECK(strncmp(fp->request, req, sizeof(req) - 1) == 0); /* the request, byte for byte */
    return rc;
}

static void test_proxy(WOLFSSL_CTX *ctx, const char *pin)
{
    struct fake_proxy fp;
    struct server s;
    char err[512], big[20000];
    int rc;

    /* 200: TLS to the hub runs through the tunnel the proxy opened. */
    if (server_start(&s, ctx, M_ECHO) != 0) {
        CHECK(0);
        return;
    }
    rc = proxy_case(pin, s.port, NULL, 0, err, sizeof(err), &fp);
    CHECK_EQ_INT(rc, 0);
    server_stop(&s);

    rc = proxy_case(pin, 0, "HTTP/1.1 407 Proxy Authentication Required\r\n\r\n", 46, err,
                    sizeof(err), &fp);
    CHECK_EQ_INT(rc, -EACCES);
    CHECK(strstr(err, "refused the credentials (407") != NULL && strstr(err, "USER:PASS"));

    rc = proxy_case(pin, 0, "HTTP/1.1 403 Forbidden\r\n\r\n", 26, err, sizeof(err), &fp);
    CHECK_EQ_INT(rc, -ECONNREFUSED);
    CHECK(strstr(err, "refused CONNECT to 127.0.0.1:1: 403") != NULL);

    rc = proxy_case(pin, 0, "SSH-2.0-OpenSSH_9.2\r\n\r\n", 23, err, sizeof(err), &fp);
    CHECK_EQ_INT(rc, -EPROTO);
    CHECK(strstr(err, "did not answer CONNECT with HTTP") != NULL);

    rc = proxy_case(pin, 0, "", 0, err, sizeof(err), &fp);
    CHECK_EQ_INT(rc, -ECONNRESET);
    CHECK(strstr(err, "closed the connection before answering") != NULL);

    /* A reply header that never ends is cut at reply_max. */
    memcpy(big, "HTTP/1.1 200 OK\r\n", 17);
    memset(big + 17, 'x', sizeof(big) - 17);
    rc = proxy_case(pin, 0, big, sizeof(big), err, sizeof(err), &fp);
    CHECK_EQ_INT(rc, -EMSGSIZE);
    CHECK(strstr(err, "over 8192 bytes") != NULL);
}

int main(void)
{
    const char *names[] = {"localhost", "127.0.0.1"};
    struct crypto_identity hub = {0}, other = {0};
    WOLFSSL_CTX *ctx = NULL;

    signal(SIGPIPE, SIG_IGN);
    wolfSSL_Init();
    CHECK_EQ_INT(crypto_identity_generate("test-hub", names, 2, &hub), 0);
    CHECK_EQ_INT(crypto_identity_generate("impostor", names, 2, &other), 0);
    CHECK(strcmp(hub.pin, other.pin) != 0);
    ctx = wolfSSL_CTX_new(wolfTLSv1_3_server_method());
    CHECK(ctx != NULL);
    if (ctx == NULL || hub.cert_der == NULL)
        TEST_DONE();
    CHECK_EQ_INT(wolfSSL_CTX_use_certificate_buffer(ctx, hub.cert_der, (long)hub.cert_len,
                                                    WOLFSSL_FILETYPE_ASN1),
                 WOLFSSL_SUCCESS);
    CHECK_EQ_INT(wolfSSL_CTX_use_PrivateKey_buffer(ctx, hub.key_der, (long)hub.key_len,
                                                   WOLFSSL_FILETYPE_ASN1),
                 WOLFSSL_SUCCESS);
    /* Lets the server read which name the client asked for. */
    wolfSSL_CTX_UseSNI(ctx, WOLFSSL_SNI_HOST_NAME, "localhost", 9);
    wolfSSL_CTX_SNI_SetOptions(ctx, WOLFSSL_SNI_HOST_NAME, WOLFSSL_SNI_CONTINUE_ON_MISMATCH);

    test_url();
    test_bad_input(hub.pin);
    test_round_trip(ctx, hub.pin);
    test_chunked(ctx, hub.pin);
    test_wrong_pin(ctx, other.pin);
    test_refused(hub.pin);
    test_timeouts(ctx, hub.pin);
    test_too_large(ctx, hub.pin);
    test_proxy(ctx, hub.pin);

    wolfSSL_CTX_free(ctx);
    crypto_identity_free(&hub);
    crypto_identity_free(&other);
    wolfSSL_Cleanup();
    TEST_DONE();
}
