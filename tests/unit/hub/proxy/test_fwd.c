/* Unit tests for hub/fwd.c: forwarding header values and the names a user may not send. */
/* SPDX-License-Identifier: MIT */
#include "hub/proxy/fwd.h"
#include "testutil.h"

static void expect(const char *peer, const char *host, const char *addr, const char *xfh,
                   const char *forwarded)
{
    struct fwd f;

    fwd_build(&f, peer, host);
    CHECK_EQ_STR(f.addr, addr);
    CHECK_EQ_STR(f.host, xfh);
    CHECK_EQ_STR(f.forwarded, forwarded);
}

static void test_build(void)
{
    expect("203.0.113.7:5555", "hub.example:6443", "203.0.113.7", "hub.example:6443",
           "for=203.0.113.7;proto=https;host=\"hub.example:6443\"");
    expect("[2001:db8::7]:5555", "[2001:db8::1]:6443", "2001:db8::7", "[2001:db8::1]:6443",
           "for=\"[2001:db8::7]\";proto=https;host=\"[2001:db8::1]:6443\"");
    expect("[::ffff:192.0.2.1]:80", NULL, "192.0.2.1", "", "for=192.0.2.1;proto=https");
    expect("[::1]:80", "hub", "::1", "hub", "for=\"[::1]\";proto=https;host=\"hub\"");
    /* A Host that is no host[:port] is not repeated. */
    expect("192.0.2.1:1", "a b", "192.0.2.1", "", "for=192.0.2.1;proto=https");
    expect("192.0.2.1:1", "evil\";for=1.2.3.4", "192.0.2.1", "", "for=192.0.2.1;proto=https");
    expect("192.0.2.1:1", "h:123456", "192.0.2.1", "", "for=192.0.2.1;proto=https");
    expect("192.0.2.1:1", "[zz]:1", "192.0.2.1", "", "for=192.0.2.1;proto=https");
    expect("192.0.2.1:1", ":80", "192.0.2.1", "", "for=192.0.2.1;proto=https");
    expect("", NULL, "", "", "for=;proto=https");
}

static void test_reserved(void)
{
    static const char *const yes[] = {"tether-service", "tether-",         "x-tether-user",
                                      "forwarded",      "x-forwarded-for", "x-forwarded-host",
                                      "x-real-ip",      "true-client-ip"};
    static const char *const no[] = {"x-custom", "tether", "forwarded-for", "accept"};

    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++)
        CHECK(fwd_reserved(yes[i]));
    for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
        CHECK(!fwd_reserved(no[i]));
}

int main(void)
{
    test_build();
    test_reserved();
    TEST_DONE();
}
