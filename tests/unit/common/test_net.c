/* Unit tests for common/net.c: host:port splitting and service URL parsing. */
/* SPDX-License-Identifier: MIT */
#include "common/net.h"
#include "testutil.h"

#include <errno.h>

static void expect_hp(const char *s, int def, const char *host, int port)
{
    char h[NET_HOST_MAX + 1];
    int p = -1;
    int rc = net_split_hostport(s, def, h, &p);

    CHECK_EQ_INT(rc, 0);
    if (rc == 0) {
        CHECK_EQ_STR(h, host);
        CHECK_EQ_INT(p, port);
    } else {
        fprintf(stderr, "  input was \"%s\"\n", s);
    }
}

static void reject_hp(const char *s, int def)
{
    char h[NET_HOST_MAX + 1] = "untouched";
    int p = 4242;
    int rc = net_split_hostport(s, def, h, &p);

    CHECK_EQ_INT(rc, -EINVAL);
    if (rc != -EINVAL)
        fprintf(stderr, "  input was \"%s\"\n", s ? s : "(null)");
    /* A refused input leaves the outputs alone. */
    CHECK_EQ_STR(h, "untouched");
    CHECK_EQ_INT(p, 4242);
}

static void test_hostport(void)
{
    char long_host[NET_HOST_MAX + 8];

    expect_hp("hub.example:6443", 0, "hub.example", 6443);
    expect_hp("127.0.0.1:1", 0, "127.0.0.1", 1);
    expect_hp("h:65535", 0, "h", 65535);
    expect_hp("[::1]:6443", 0, "::1", 6443);
    expect_hp("[2001:db8::5]:443", 0, "2001:db8::5", 443);
    expect_hp("[::1]", 6443, "::1", 6443);
    expect_hp("hub.example", 6443, "hub.example", 6443);
    expect_hp("db_1:5432", 0, "db_1", 5432);

    reject_hp("hub.example", 0);     /* no port, no default */
    reject_hp("[::1]", 0);           /* same, bracketed */
    reject_hp("h:0", 0);             /* port 0 */
    reject_hp("h:65536", 0);         /* port too big */
    reject_hp("h:x", 0);             /* port not a number */
    reject_hp("h:", 6443);           /* empty port even with a default */
    reject_hp("h:+80", 0);           /* sign */
    reject_hp("h: 80", 0);           /* blank */
    reject_hp("h:123456", 0);        /* six digits */
    reject_hp(":80", 0);             /* empty host */
    reject_hp("", 6443);             /* empty */
    reject_hp("[]:80", 0);           /* empty brackets */
    reject_hp("[::1:80", 0);         /* unbalanced */
    reject_hp("::1]:80", 0);         /* unbalanced */
    reject_hp("[::1]x", 0);          /* junk after bracket */
    reject_hp("[::1]:", 0);          /* empty port after bracket */
    reject_hp("[hub.example]:1", 0); /* brackets only for IPv6 */
    reject_hp("::1", 6443);          /* bare IPv6 is ambiguous */
    reject_hp("a b:80", 0);          /* blank in host */
    reject_hp("user@h:80", 0);       /* userinfo */
    reject_hp("h/x:80", 0);          /* path in host */
    reject_hp("h", 70000);           /* default port out of range */
    expect_hp("h:80", 70000, "h", 80);
    reject_hp(NULL, 80);

    memset(long_host, 'a', NET_HOST_MAX);
    long_host[NET_HOST_MAX] = '\0';
    expect_hp(long_host, 80, long_host, 80);
    long_host[NET_HOST_MAX] = 'a';
    long_host[NET_HOST_MAX + 1] = '\0';
    reject_hp(long_host, 80);
}

static void expect_url(const char *s, enum net_url_kind kind, const char *host, int port,
                       const char *path)
{
    struct net_url u;
    int rc = net_parse_url(s, &u);

    CHECK_EQ_INT(rc, 0);
    if (rc != 0) {
        fprintf(stderr, "  input was \"%s\"\n", s);
        return;
    }
    CHECK_EQ_INT(u.kind, kind);
    CHECK_EQ_STR(u.host, host);
    CHECK_EQ_INT(u.port, port);
    CHECK_EQ_STR(u.path, path);
}

static void reject_url(const char *s)
{
    struct net_url u;
    int rc = net_parse_url(s, &u);

    CHECK_EQ_INT(rc, -EINVAL);
    if (rc != -EINVAL)
        fprintf(stderr, "  input was \"%s\"\n", s);
}

static void test_url(void)
{
    char buf[2048];

    expect_url("http://127.0.0.1:8080", NET_URL_HTTP, "127.0.0.1", 8080, "");
    expect_url("http://localhost:8080/base/", NET_URL_HTTP, "localhost", 8080, "/base");
    expect_url("http://localhost:8080/a/b//", NET_URL_HTTP, "localhost", 8080, "/a/b");
    expect_url("http://h", NET_URL_HTTP, "h", 80, "");
    expect_url("http://h/", NET_URL_HTTP, "h", 80, "");
    expect_url("https://h", NET_URL_HTTPS, "h", 443, "");
    expect_url("https://[::1]:8443/api", NET_URL_HTTPS, "::1", 8443, "/api");
    expect_url("HTTP://h:81", NET_URL_HTTP, "h", 81, "");
    expect_url("unix:/run/x.sock", NET_URL_UNIX, "", 0, "/run/x.sock");
    expect_url("tcp://db:5432", NET_URL_TCP, "db", 5432, "");
    expect_url("h2c://127.0.0.1:50051", NET_URL_H2C, "127.0.0.1", 50051, "");
    expect_url("H2C://g/pre/", NET_URL_H2C, "g", 80, "/pre");
    expect_url("h2://[::1]:8443", NET_URL_H2, "::1", 8443, "");
    expect_url("h2://g", NET_URL_H2, "g", 443, "");

    reject_url("tcp://db");        /* tcp needs a port */
    reject_url("tcp://db:5432/x"); /* and has no path */
    reject_url("ftp://h");
    reject_url("h2c:/h");
    reject_url("h2c://");
    reject_url("h3://h");
    reject_url("h2s://h");
    reject_url("http:/h");
    reject_url("http://");
    reject_url("http://:80");
    reject_url("http://h:0");
    reject_url("http://h:99999");
    reject_url("http://u:p@h");
    reject_url("http://h/a b");
    reject_url("http://h/a?q=1");
    reject_url("http://h/a#f");
    reject_url("unix:");
    reject_url("unix:relative.sock");
    reject_url("h:80");
    reject_url("");
    /* sun_path holds 107 bytes and a NUL. */
    memset(buf, 0, sizeof(buf));
    memcpy(buf, "unix:/", 6);
    memset(buf + 6, 'a', 106);
    expect_url(buf, NET_URL_UNIX, "", 0, buf + 5);
    buf[6 + 106] = 'a';
    reject_url(buf);
    /* Over-long base path. */
    memcpy(buf, "http://h/", 9);
    memset(buf + 9, 'p', sizeof(buf) - 10);
    buf[sizeof(buf) - 1] = '\0';
    reject_url(buf);
}

int main(void)
{
    test_hostport();
    test_url();
    TEST_DONE();
}
