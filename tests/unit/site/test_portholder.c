/* Unit tests for site/dial.c: proxy URLs, CONNECT requests, the bounded reply parser, port holders.
 */
/* SPDX-License-Identifier: MIT */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../../../site/dial.h"
#include "testutil.h"

static void test_proxy_parse(void)
{
    struct dial_proxy p;
    char name[300];

    CHECK_EQ_INT(dial_proxy_parse("http://proxy.example:8080", &p), 0);
    CHECK_EQ_STR(p.host, "proxy.example");
    CHECK_EQ_INT(p.port, 8080);
    CHECK_EQ_STR(p.auth, "");
    CHECK_EQ_STR(p.user, "");
    CHECK_EQ_INT(dial_proxy_parse("HTTP://10.0.0.1/", &p), 0);
    CHECK_EQ_STR(p.host, "10.0.0.1");
    CHECK_EQ_INT(p.port, 3128);
    CHECK_EQ_INT(dial_proxy_parse("http://[2001:db8::1]:3129", &p), 0);
    CHECK_EQ_STR(p.host, "2001:db8::1");
    dial_proxy_name(&p, name, sizeof(name));
    CHECK_EQ_STR(name, "[2001:db8::1]:3129");

    /* RFC 7617's example credentials and their published encoding. */
    CHECK_EQ_INT(dial_proxy_parse("http://Aladdin:open%20sesame@px:3128", &p), 0);
    CHECK_EQ_STR(p.user, "Aladdin");
    CHECK_EQ_STR(p.auth, "QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
    /* '@' and ':' inside a password, percent-encoded; the last '@' ends it. */
    CHECK_EQ_INT(dial_proxy_parse("http://u:p%40ss:w@px:1", &p), 0);
    CHECK_EQ_STR(p.host, "px");
    {
        struct dial_proxy q;
        CHECK_EQ_INT(dial_proxy_parse("http://u:p%40ss%3Aw@px:1", &q), 0);
        CHECK_EQ_STR(q.auth, "dTpwQHNzOnc=");
    }
    /* A user alone gets an empty password. */
    CHECK_EQ_INT(dial_proxy_parse("http://bob@px", &p), 0);
    CHECK_EQ_STR(p.auth, "Ym9iOg==");

    CHECK_EQ_INT(dial_proxy_parse("https://px:3128", &p), -EINVAL);
    CHECK_EQ_INT(dial_proxy_parse("socks5://px:1080", &p), -EINVAL);
    CHECK_EQ_INT(dial_proxy_parse("http://", &p), -EINVAL);
    CHECK_EQ_INT(dial_proxy_parse("http://px:0", &p), -EINVAL);
    CHECK_EQ_INT(dial_proxy_parse("http://px:70000", &p), -EINVAL);
    CHECK_EQ_INT(dial_proxy_parse("http://px:80/path", &p), -EINVAL);
    CHECK_EQ_INT(dial_proxy_parse("http://:pw@px", &p), -EINVAL);
    CHECK_EQ_INT(dial_proxy_parse("http://u:p%0d%0aX: y@px", &p), -EINVAL);
    CHECK_EQ_INT(dial_proxy_parse("http://u:p%4@px", &p), -EINVAL);
    CHECK_EQ_INT(dial_proxy_parse("http://u:p%@px", &p), -EINVAL);
    CHECK_EQ_INT(dial_proxy_parse(NULL, &p), -EINVAL);
    {
        char big[700];
        memset(big, 'a', sizeof(big));
        memcpy(big, "http://", 7);
        memcpy(big + sizeof(big) - 5, "@p:1", 5);
        CHECK_EQ_INT(dial_proxy_parse(big, &p), -EINVAL);
    }
}

static void test_request(void)
{
    struct dial_proxy p;
    char out[DIAL_REQUEST_MAX];
    size_t len = 0;

    CHECK_EQ_INT(dial_proxy_parse("http://px:3128", &p), 0);
    CHECK_EQ_INT(
        dial_connect_request(&p, "hub.example:6443", "tether-site/1", out, sizeof(out), &len), 0);
    CHECK_EQ_INT(len, strlen(out));
    CHECK(strncmp(out, "CONNECT hub.example:6443 HTTP/1.1\r\n", 35) == 0);
    CHECK(strstr(out, "\r\nHost: hub.example:6443\r\n") != NULL);
    CHECK(strstr(out, "Proxy-Authorization") == NULL);
    CHECK(len >= 4 && memcmp(out + len - 4, "\r\n\r\n", 4) == 0);

    CHECK_EQ_INT(dial_proxy_parse("http://Aladdin:open%20sesame@px", &p), 0);
    CHECK_EQ_INT(dial_connect_request(&p, "[2001:db8::2]:443", NULL, out, sizeof(out), &len), 0);
    CHECK(strncmp(out, "CONNECT [2001:db8::2]:443 HTTP/1.1\r\n", 36) == 0);
    CHECK(strstr(out, "\r\nProxy-Authorization: Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==\r\n") != NULL);
    /* Only one blank line, at the end. */
    CHECK(strstr(out, "\r\n\r\n") == out + len - 4);
    /* A header injection through the user agent is refused. */
    CHECK_EQ_INT(dial_connect_request(&p, "h:1", "x\r\nEvil: 1", out, sizeof(out), &len), 0);
    CHECK(strstr(out, "Evil") == NULL);

    CHECK_EQ_INT(dial_connect_request(&p, "no-port", NULL, out, sizeof(out), &len), -EINVAL);
    CHECK_EQ_INT(dial_connect_request(&p, "h:1", NULL, out, 20, &len), -ENOSPC);
}

static int reply(const char *s, int *status, size_t *hl, char *reason, size_t rcap)
{
    return dial_connect_reply((const uint8_t *)s, strlen(s), status, hl, reason, rcap);
}

static void test_reply(void)
{
    const char *ok = "HTTP/1.0 200 Connection established\r\nProxy-agent: tinyproxy\r\n\r\n";
    char buf[DIAL_REPLY_MAX + 64], reason[64];
    int status = 0;
    size_t hl = 0, oklen = strlen(ok);

    CHECK_EQ_INT(reply(ok, &status, &hl, reason, sizeof(reason)), 0);
    CHECK_EQ_INT(status, 200);
    CHECK_EQ_INT(hl, oklen);
    CHECK_EQ_STR(reason, "Connection established");

    /* Bytes of the tunnel right after the header are not part of it. */
    memcpy(buf, ok, oklen);
    memcpy(buf + oklen, "\x16\x03\x03", 3);
    CHECK_EQ_INT(dial_connect_reply((uint8_t *)buf, oklen + 3, &status, &hl, NULL, 0), 0);
    CHECK_EQ_INT(hl, oklen);

    /* Every proper prefix needs more bytes. */
    for (size_t n = 0; n < oklen; n++) {
        int rc = dial_connect_reply((const uint8_t *)ok, n, &status, &hl, reason, sizeof(reason));
        if (rc != -EAGAIN) {
            fprintf(stderr, "prefix of %zu bytes gave %d\n", n, rc);
            CHECK(0);
        }
    }

    CHECK_EQ_INT(reply("HTTP/1.1 407 Proxy Authentication Required\r\n"
                       "Proxy-Authenticate: Basic realm=\"x\"\r\n\r\n",
                       &status, &hl, reason, 8),
                 0);
    CHECK_EQ_INT(status, 407);
    CHECK_EQ_STR(reason, "Proxy A"); /* truncated to the buffer */
    CHECK_EQ_INT(reply("HTTP/1.1 403\n\n", &status, &hl, reason, sizeof(reason)), 0);
    CHECK_EQ_INT(status, 403);
    CHECK_EQ_STR(reason, "");
    CHECK_EQ_INT(hl, 14);

    CHECK_EQ_INT(reply("\x16\x03\x01\x02\x00", &status, &hl, reason, sizeof(reason)), -EPROTO);
    CHECK_EQ_INT(reply("HTTP/2 200\r\n\r\n", &status, &hl, reason, sizeof(reason)), -EPROTO);
    CHECK_EQ_INT(reply("HTTP/1.1 2x0 OK\r\n\r\n", &status, &hl, reason, sizeof(reason)), -EPROTO);
    CHECK_EQ_INT(reply("HTTP/1.1 099 x\r\n\r\n", &status, &hl, reason, sizeof(reason)), -EPROTO);
    CHECK_EQ_INT(reply("HTTP/1.1 200OK\r\n\r\n", &status, &hl, reason, sizeof(reason)), -EPROTO);

    /* A header that never ends is refused at the cap, not buffered forever. */
    memcpy(buf, "HTTP/1.1 200 OK\r\n", 17);
    for (size_t i = 17; i < sizeof(buf); i++)
        buf[i] = (i % 40 == 39) ? '\n' : 'x';
    CHECK_EQ_INT(dial_connect_reply((uint8_t *)buf, DIAL_REPLY_MAX - 1, &status, &hl, NULL, 0),
                 -EAGAIN);
    CHECK_EQ_INT(dial_connect_reply((uint8_t *)buf, DIAL_REPLY_MAX, &status, &hl, NULL, 0),
                 -EMSGSIZE);
    CHECK_EQ_INT(dial_connect_reply((uint8_t *)buf, sizeof(buf), &status, &hl, NULL, 0), -EMSGSIZE);
    /* A header end past the cap does not count. */
    memcpy(buf + DIAL_REPLY_MAX + 10, "\r\n\r\n", 4);
    CHECK_EQ_INT(dial_connect_reply((uint8_t *)buf, sizeof(buf), &status, &hl, NULL, 0), -EMSGSIZE);
}

static void test_port_holder(void)
{
    struct sockaddr_in sa;
    socklen_t sl = sizeof(sa);
    char out[256], want[64], comm[64] = "";
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    FILE *f;
    int port;

    CHECK(fd >= 0);
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK_EQ_INT(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    CHECK_EQ_INT(listen(fd, 1), 0);
    CHECK_EQ_INT(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
    port = ntohs(sa.sin_port);

    CHECK_EQ_INT(dial_port_holder(port, out, sizeof(out)), 0);
    snprintf(want, sizeof(want), "pid %d (", (int)getpid());
    CHECK(strstr(out, want) == out);
    CHECK(strstr(out, "LISTEN") != NULL);
    if ((f = fopen("/proc/self/comm", "r")) != NULL) {
        if (fgets(comm, sizeof(comm), f) != NULL)
            comm[strcspn(comm, "\n")] = '\0';
        fclose(f);
    }
    CHECK(comm[0] != '\0' && strstr(out, comm) != NULL);
    close(fd);
    /* Closed listener: nothing holds it any more. */
    CHECK_EQ_INT(dial_port_holder(port, out, sizeof(out)), -ENOENT);
}

int main(void)
{
    test_proxy_parse();
    test_request();
    test_reply();
    test_port_holder();
    TEST_DONE();
}
