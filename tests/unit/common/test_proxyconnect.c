/* Unit tests for common/proxyconnect.c: proxy URLs, CONNECT requests, the incremental reply parser
 * (whole, byte at a time, split CRLF, caps), the blocking exchange over a socketpair, and the
 * peer-address and content-length helpers. */
/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../../../common/hfield.h"
#include "../../../common/net.h"
#include "../../../common/proxyconnect.h"
#include "testutil.h"

static void test_proxy_parse(void)
{
    struct proxyconnect_proxy p;
    char name[300];

    CHECK_EQ_INT(proxyconnect_parse_url("http://proxy.example:8080", &p), 0);
    CHECK_EQ_STR(p.host, "proxy.example");
    CHECK_EQ_INT(p.port, 8080);
    CHECK_EQ_STR(p.auth, "");
    CHECK_EQ_STR(p.user, "");
    CHECK_EQ_INT(proxyconnect_parse_url("HTTP://10.0.0.1/", &p), 0);
    CHECK_EQ_STR(p.host, "10.0.0.1");
    CHECK_EQ_INT(p.port, 3128);
    CHECK_EQ_INT(proxyconnect_parse_url("http://[2001:db8::1]:3129", &p), 0);
    CHECK_EQ_STR(p.host, "2001:db8::1");
    proxyconnect_name(&p, name, sizeof(name));
    CHECK_EQ_STR(name, "[2001:db8::1]:3129");

    /* RFC 7617's example credentials and their published encoding. */
    CHECK_EQ_INT(proxyconnect_parse_url("http://Aladdin:open%20sesame@px:3128", &p), 0);
    CHECK_EQ_STR(p.user, "Aladdin");
    CHECK_EQ_STR(p.auth, "QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
    /* '@' and ':' inside a password, percent-encoded; the last '@' ends it. */
    CHECK_EQ_INT(proxyconnect_parse_url("http://u:p%40ss:w@px:1", &p), 0);
    CHECK_EQ_STR(p.host, "px");
    {
        struct proxyconnect_proxy q;
        CHECK_EQ_INT(proxyconnect_parse_url("http://u:p%40ss%3Aw@px:1", &q), 0);
        CHECK_EQ_STR(q.auth, "dTpwQHNzOnc=");
    }
    /* A user alone gets an empty password. */
    CHECK_EQ_INT(proxyconnect_parse_url("http://bob@px", &p), 0);
    CHECK_EQ_STR(p.auth, "Ym9iOg==");

    CHECK_EQ_INT(proxyconnect_parse_url("https://px:3128", &p), -EINVAL);
    CHECK_EQ_INT(proxyconnect_parse_url("socks5://px:1080", &p), -EINVAL);
    CHECK_EQ_INT(proxyconnect_parse_url("http://", &p), -EINVAL);
    CHECK_EQ_INT(proxyconnect_parse_url("http://px:0", &p), -EINVAL);
    CHECK_EQ_INT(proxyconnect_parse_url("http://px:70000", &p), -EINVAL);
    CHECK_EQ_INT(proxyconnect_parse_url("http://px:80/path", &p), -EINVAL);
    CHECK_EQ_INT(proxyconnect_parse_url("http://:pw@px", &p), -EINVAL);
    CHECK_EQ_INT(proxyconnect_parse_url("http://u:p%0d%0aX: y@px", &p), -EINVAL);
    CHECK_EQ_INT(proxyconnect_parse_url("http://u:p%4@px", &p), -EINVAL);
    CHECK_EQ_INT(proxyconnect_parse_url("http://u:p%@px", &p), -EINVAL);
    CHECK_EQ_INT(proxyconnect_parse_url(NULL, &p), -EINVAL);
    {
        char big[700];
        memset(big, 'a', sizeof(big));
        memcpy(big, "http://", 7);
        memcpy(big + sizeof(big) - 5, "@p:1", 5);
        CHECK_EQ_INT(proxyconnect_parse_url(big, &p), -EINVAL);
    }
}

static void test_request(void)
{
    struct proxyconnect_proxy p;
    char out[PROXYCONNECT_REQUEST_MAX];
    size_t len = 0;

    CHECK_EQ_INT(proxyconnect_parse_url("http://px:3128", &p), 0);
    CHECK_EQ_INT(
        proxyconnect_request(&p, "hub.example:6443", "tether-site/1", out, sizeof(out), &len), 0);
    CHECK_EQ_INT(len, strlen(out));
    CHECK(strncmp(out, "CONNECT hub.example:6443 HTTP/1.1\r\n", 35) == 0);
    CHECK(strstr(out, "\r\nHost: hub.example:6443\r\n") != NULL);
    CHECK(strstr(out, "Proxy-Authorization") == NULL);
    CHECK(len >= 4 && memcmp(out + len - 4, "\r\n\r\n", 4) == 0);

    CHECK_EQ_INT(proxyconnect_parse_url("http://Aladdin:open%20sesame@px", &p), 0);
    CHECK_EQ_INT(proxyconnect_request(&p, "[2001:db8::2]:443", NULL, out, sizeof(out), &len), 0);
    CHECK(strncmp(out, "CONNECT [2001:db8::2]:443 HTTP/1.1\r\n", 36) == 0);
    CHECK(strstr(out, "\r\nProxy-Authorization: Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==\r\n") != NULL);
    /* Only one blank line, at the end. */
    CHECK(strstr(out, "\r\n\r\n") == out + len - 4);
    /* A header injection through the user agent is refused. */
    CHECK_EQ_INT(proxyconnect_request(&p, "h:1", "x\r\nEvil: 1", out, sizeof(out), &len), 0);
    CHECK(strstr(out, "Evil") == NULL);

    CHECK_EQ_INT(proxyconnect_request(&p, "no-port", NULL, out, sizeof(out), &len), -EINVAL);
    CHECK_EQ_INT(proxyconnect_request(&p, "h:1", NULL, out, 20, &len), -ENOSPC);
}

/* Feeds s (n bytes) in pieces of `step` bytes (0: all at once); returns the
 * result and fills r. *used_total counts the bytes the parser took. */
static enum proxyconnect_result feed(const char *s, size_t n, size_t step,
                                     struct proxyconnect_reply *r, size_t *used_total)
{
    enum proxyconnect_result res = PROXYCONNECT_NEED_MORE;
    size_t off = 0;

    proxyconnect_reply_init(r);
    *used_total = 0;
    while (off < n && res == PROXYCONNECT_NEED_MORE) {
        size_t k = step == 0 || n - off < step ? n - off : step, used = 0;

        res = proxyconnect_reply_feed(r, (const uint8_t *)s + off, k, &used);
        /* Needing more means every byte given was taken. */
        if (res == PROXYCONNECT_NEED_MORE)
            CHECK_EQ_INT(used, k);
        *used_total += used;
        off += k;
    }
    return res;
}

/* The same reply, whole and byte by byte and in 3-byte pieces, gives the
 * same answer. */
static void expect(const char *s, enum proxyconnect_result want, int status, const char *reason,
                   enum proxyconnect_error err, size_t hdr_len)
{
    static const size_t steps[] = {0, 1, 3};
    size_t n = strlen(s);

    for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
        struct proxyconnect_reply r;
        size_t used = 0;
        enum proxyconnect_result res = feed(s, n, steps[i], &r, &used);

        if (res != want)
            fprintf(stderr, "\"%.40s\" in pieces of %zu: result %d, want %d\n", s, steps[i],
                    (int)res, (int)want);
        CHECK_EQ_INT(res, want);
        if (want == PROXYCONNECT_OK) {
            CHECK_EQ_INT(r.status, status);
            CHECK_EQ_STR(r.reason, reason);
            /* 0: the whole of s is the header. */
            CHECK_EQ_INT(used, hdr_len ? hdr_len : n);
            CHECK_EQ_INT(r.seen, hdr_len ? hdr_len : n);
        }
        if (want == PROXYCONNECT_ERROR)
            CHECK_EQ_INT(r.error, err);
    }
}

static void test_reply(void)
{
    const char *ok = "HTTP/1.0 200 Connection established\r\nProxy-agent: tinyproxy\r\n\r\n";
    char buf[PROXYCONNECT_REPLY_MAX + 64];
    struct proxyconnect_reply r;
    size_t oklen = strlen(ok), used = 0;

    expect(ok, PROXYCONNECT_OK, 200, "Connection established", 0, 0);
    expect("HTTP/1.1 407 Proxy Authentication Required\r\n"
           "Proxy-Authenticate: Basic realm=\"x\"\r\n\r\n",
           PROXYCONNECT_OK, 407, "Proxy Authentication Required", 0, 0);
    expect("HTTP/1.1 403 Forbidden\r\n\r\n", PROXYCONNECT_OK, 403, "Forbidden", 0, 0);
    /* Bare LFs, and no reason phrase. */
    expect("HTTP/1.1 403\n\n", PROXYCONNECT_OK, 403, "", 0, 0);
    /* LF CR LF ends it too; a CR alone inside the header does not. */
    expect("HTTP/1.1 200 OK\nA: b\r\n\r\n", PROXYCONNECT_OK, 200, "OK", 0, 0);
    expect("HTTP/1.1 200 OK\r\nA: \rb\r\n\r\n", PROXYCONNECT_OK, 200, "OK", 0, 0);
    /* Control bytes are left out of the reason. */
    expect("HTTP/1.1 502 Bad\x01 gateway\r\n\r\n", PROXYCONNECT_OK, 502, "Bad gateway", 0, 0);

    /* Not HTTP: TLS, HTTP/2, bad digits, status under 100, no space. */
    expect("\x16\x03\x01\x02\x00", PROXYCONNECT_ERROR, 0, NULL, PROXYCONNECT_ERR_NOT_HTTP, 0);
    expect("HTTP/2 200\r\n\r\n", PROXYCONNECT_ERROR, 0, NULL, PROXYCONNECT_ERR_NOT_HTTP, 0);
    expect("HTTP/1.1 2x0 OK\r\n\r\n", PROXYCONNECT_ERROR, 0, NULL, PROXYCONNECT_ERR_NOT_HTTP, 0);
    expect("HTTP/1.1 099 x\r\n\r\n", PROXYCONNECT_ERROR, 0, NULL, PROXYCONNECT_ERR_NOT_HTTP, 0);
    expect("HTTP/1.1 200OK\r\n\r\n", PROXYCONNECT_ERROR, 0, NULL, PROXYCONNECT_ERR_NOT_HTTP, 0);
    expect("SSH-2.0-OpenSSH_9.6\r\n", PROXYCONNECT_ERROR, 0, NULL, PROXYCONNECT_ERR_NOT_HTTP, 0);
    /* A non-HTTP peer is refused at its first wrong byte. */
    proxyconnect_reply_init(&r);
    CHECK_EQ_INT(proxyconnect_reply_feed(&r, (const uint8_t *)"X", 1, &used), PROXYCONNECT_ERROR);

    /* Every proper prefix of a good reply needs more bytes. */
    for (size_t n = 0; n < oklen; n++)
        CHECK_EQ_INT(feed(ok, n, 1, &r, &used), PROXYCONNECT_NEED_MORE);

    /* Split CRLF: the blank line arrives in pieces "\r", "\n\r", "\n". */
    proxyconnect_reply_init(&r);
    CHECK_EQ_INT(proxyconnect_reply_feed(&r, (const uint8_t *)"HTTP/1.1 200 OK\r", 16, &used),
                 PROXYCONNECT_NEED_MORE);
    CHECK_EQ_INT(proxyconnect_reply_feed(&r, (const uint8_t *)"\n\r", 2, &used),
                 PROXYCONNECT_NEED_MORE);
    CHECK_EQ_INT(proxyconnect_reply_feed(&r, (const uint8_t *)"\n\x16\x03", 3, &used),
                 PROXYCONNECT_OK);
    /* The tunnel's first bytes are not part of the header. */
    CHECK_EQ_INT(used, 1);
    CHECK_EQ_INT(r.seen, 19);
    CHECK_EQ_INT(r.status, 200);
    /* Once done it stays done and takes nothing more. */
    CHECK_EQ_INT(proxyconnect_reply_feed(&r, (const uint8_t *)"more", 4, &used), PROXYCONNECT_OK);
    CHECK_EQ_INT(used, 0);

    /* Bytes of the tunnel in the same read as the header are left over. */
    memcpy(buf, ok, oklen);
    memcpy(buf + oklen, "\x16\x03\x03", 3);
    proxyconnect_reply_init(&r);
    CHECK_EQ_INT(proxyconnect_reply_feed(&r, (uint8_t *)buf, oklen + 3, &used), PROXYCONNECT_OK);
    CHECK_EQ_INT(used, oklen);

    /* A header that never ends is refused at the cap, not buffered forever,
     * fed whole or byte by byte. */
    memcpy(buf, "HTTP/1.1 200 OK\r\n", 17);
    for (size_t i = 17; i < sizeof(buf); i++)
        buf[i] = (i % 40 == 39) ? '\n' : 'x';
    CHECK_EQ_INT(feed(buf, PROXYCONNECT_REPLY_MAX - 1, 0, &r, &used), PROXYCONNECT_NEED_MORE);
    CHECK_EQ_INT(feed(buf, PROXYCONNECT_REPLY_MAX, 0, &r, &used), PROXYCONNECT_ERROR);
    CHECK_EQ_INT(r.error, PROXYCONNECT_ERR_TOO_LONG);
    CHECK_EQ_INT(feed(buf, sizeof(buf), 1, &r, &used), PROXYCONNECT_ERROR);
    CHECK_EQ_INT(r.error, PROXYCONNECT_ERR_TOO_LONG);
    CHECK_EQ_INT(r.seen, PROXYCONNECT_REPLY_MAX);
    /* A header end past the cap does not count. */
    memcpy(buf + PROXYCONNECT_REPLY_MAX + 10, "\r\n\r\n", 4);
    CHECK_EQ_INT(feed(buf, sizeof(buf), 0, &r, &used), PROXYCONNECT_ERROR);
    CHECK_EQ_INT(r.error, PROXYCONNECT_ERR_TOO_LONG);
    /* The last byte of the cap may end it. */
    memcpy(buf + PROXYCONNECT_REPLY_MAX - 2, "\n\n", 2);
    CHECK_EQ_INT(feed(buf, sizeof(buf), 0, &r, &used), PROXYCONNECT_OK);
    CHECK_EQ_INT(used, PROXYCONNECT_REPLY_MAX);

    CHECK_EQ_STR(proxyconnect_error_string(PROXYCONNECT_ERR_TOO_LONG), "reply header over 8 KiB");
    CHECK_EQ_STR(proxyconnect_error_string(PROXYCONNECT_ERR_NOT_HTTP), "not an HTTP reply");
    CHECK(proxyconnect_auth_refused(407) && proxyconnect_auth_refused(401));
    CHECK(!proxyconnect_auth_refused(403) && !proxyconnect_auth_refused(200));
}

/* The blocking exchange over a socketpair (no network): the request goes out
 * whole, and the reply is read up to its header only. */
static void test_exchange(void)
{
    static const char req[] = "CONNECT h:1 HTTP/1.1\r\nHost: h:1\r\n\r\n";
    static const char rep[] = "HTTP/1.1 200 OK\r\n\r\nTLS-BYTES";
    struct proxyconnect_reply r;
    char got[128];
    int sv[2];
    ssize_t n;

    CHECK_EQ_INT(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    CHECK_EQ_INT(write(sv[1], rep, sizeof(rep) - 1), (ssize_t)(sizeof(rep) - 1));
    CHECK_EQ_INT(proxyconnect_exchange(sv[0], req, sizeof(req) - 1, net_now_ms() + 5000, &r), 0);
    CHECK_EQ_INT(r.status, 200);
    CHECK(r.sent);
    n = read(sv[1], got, sizeof(got));
    CHECK_EQ_INT(n, (ssize_t)(sizeof(req) - 1));
    CHECK(n > 0 && memcmp(got, req, (size_t)n) == 0);
    n = read(sv[0], got, sizeof(got));
    CHECK_EQ_INT(n, 9);
    CHECK(n == 9 && memcmp(got, "TLS-BYTES", 9) == 0);

    /* Closed before answering; no answer in time; not HTTP. */
    CHECK_EQ_INT(write(sv[1], "HTTP/1.1 2", 10), 10);
    shutdown(sv[1], SHUT_WR);
    CHECK_EQ_INT(proxyconnect_exchange(sv[0], req, sizeof(req) - 1, net_now_ms() + 5000, &r),
                 -ECONNRESET);
    close(sv[0]);
    close(sv[1]);
    CHECK_EQ_INT(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    CHECK_EQ_INT(proxyconnect_exchange(sv[0], req, sizeof(req) - 1, net_now_ms() + 50, &r),
                 -ETIMEDOUT);
    CHECK(r.sent);
    CHECK_EQ_INT(write(sv[1], "SSH-2.0\r\n", 9), 9);
    CHECK_EQ_INT(proxyconnect_exchange(sv[0], req, sizeof(req) - 1, net_now_ms() + 5000, &r),
                 -EPROTO);
    CHECK_EQ_INT(r.error, PROXYCONNECT_ERR_NOT_HTTP);
    close(sv[0]);
    close(sv[1]);
}

static void test_helpers(void)
{
    char ip[64];

    net_peer_ip("192.0.2.1:443", ip, sizeof(ip));
    CHECK_EQ_STR(ip, "192.0.2.1");
    net_peer_ip("[2001:db8::1]:443", ip, sizeof(ip));
    CHECK_EQ_STR(ip, "[2001:db8::1]");
    net_peer_ip("noport", ip, sizeof(ip));
    CHECK_EQ_STR(ip, "noport");
    net_peer_ip("192.0.2.1:443", ip, 4);
    CHECK_EQ_STR(ip, "192");

    /* The one content-length reader: strtoll of the first 20 bytes. */
    CHECK_EQ_INT(hfield_content_length("1234", 4), 1234);
    CHECK_EQ_INT(hfield_content_length("12345", 2), 12);
    CHECK_EQ_INT(hfield_content_length("0", 1), 0);
    CHECK_EQ_INT(hfield_content_length("000000000000000000123", 21), 12);
}

int main(void)
{
    test_proxy_parse();
    test_request();
    test_reply();
    test_exchange();
    test_helpers();
    TEST_DONE();
}
