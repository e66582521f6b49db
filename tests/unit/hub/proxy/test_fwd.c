/* Unit tests for hub/proxy/fwd.c: forwarding header values, the names a user may not send, and the
 * header list of the request forwarded to a site. */
/* SPDX-License-Identifier: MIT */
#include "hub/proxy/fwd.h"
#include "testutil.h"

#include <string.h>

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

/* --- fwd_request_headers --- */

#define H(n, v)                                                                                    \
    {                                                                                              \
        (char *)(n), (char *)(v)                                                                   \
    }

/* The value of name in the built list, NULL if absent; *count says how
 * many times it appears. */
static const char *nv_get(const struct fwd_headers *fh, const char *name, int *count)
{
    const char *v = NULL;
    int k = 0;

    for (size_t i = 0; i < fh->n; i++)
        if (fh->nv[i].namelen == strlen(name) &&
            memcmp(fh->nv[i].name, name, fh->nv[i].namelen) == 0) {
            static char buf[8][512];
            char *b = buf[k % 8];

            snprintf(b, 512, "%.*s", (int)fh->nv[i].valuelen, (const char *)fh->nv[i].value);
            if (v == NULL)
                v = b;
            k++;
        }
    if (count != NULL)
        *count = k;
    return v;
}

static int nv_has(const struct fwd_headers *fh, const char *name)
{
    int k;

    nv_get(fh, name, &k);
    return k;
}

static void build(struct fwd_headers *fh, const char *peer, const struct ureq_header *h, size_t n,
                  int64_t cl, int has_body)
{
    const struct fwd_req req = {
        .method = "POST",
        .path = "/v1/items?q=1",
        .service = "web",
        .user = "alice",
        .peer = peer,
        .hdrs = h,
        .n_hdrs = n,
        .content_length = cl,
        .has_body = has_body,
    };

    memset(fh, 0xa5, sizeof(*fh));
    fwd_request_headers(&req, fh);
}

static void test_request_pseudo(void)
{
    static const struct ureq_header h[] = {H("host", "hub.example:6443"), H("accept", "*/*")};
    struct fwd_headers fh;

    build(&fh, "203.0.113.7:5555", h, 2, 5, 1);
    /* The pseudo headers come first, in this order (RFC 9113 8.3). */
    CHECK(fh.n >= 4);
    CHECK_EQ_INT(fh.nv[0].namelen, 7);
    CHECK(memcmp(fh.nv[0].name, ":method", 7) == 0);
    CHECK(memcmp(fh.nv[3].name, ":path", 5) == 0);
    CHECK_EQ_STR(nv_get(&fh, ":method", NULL), "POST");
    CHECK_EQ_STR(nv_get(&fh, ":scheme", NULL), "http");
    CHECK_EQ_STR(nv_get(&fh, ":authority", NULL), "web");
    CHECK_EQ_STR(nv_get(&fh, ":path", NULL), "/v1/items?q=1");
    CHECK_EQ_STR(nv_get(&fh, "tether-service", NULL), "web");
    CHECK_EQ_STR(nv_get(&fh, "x-tether-user", NULL), "alice");
    CHECK_EQ_STR(nv_get(&fh, "x-forwarded-for", NULL), "203.0.113.7");
    CHECK_EQ_STR(nv_get(&fh, "x-forwarded-proto", NULL), "https");
    CHECK_EQ_STR(nv_get(&fh, "x-forwarded-host", NULL), "hub.example:6443");
    CHECK_EQ_STR(nv_get(&fh, "forwarded", NULL),
                 "for=203.0.113.7;proto=https;host=\"hub.example:6443\"");
    CHECK_EQ_STR(nv_get(&fh, "content-length", NULL), "5");
    CHECK_EQ_STR(nv_get(&fh, "accept", NULL), "*/*");
    /* The user's Host is said by :authority and X-Forwarded-Host only. */
    CHECK(!nv_has(&fh, "host"));
    /* Every name is lower-case (HTTP/2). */
    for (size_t i = 0; i < fh.n; i++)
        for (size_t k = 0; k < fh.nv[i].namelen; k++)
            CHECK(!(fh.nv[i].name[k] >= 'A' && fh.nv[i].name[k] <= 'Z'));
}

static void test_request_hop_by_hop(void)
{
    static const struct ureq_header h[] = {
        H("connection", "keep-alive, X-Foo"),
        H("keep-alive", "timeout=5"),
        H("x-foo", "secret"),
        H("x-bar", "kept"),
        H("transfer-encoding", "chunked"),
        H("upgrade", "websocket"),
        H("te", "gzip"),
        H("proxy-connection", "keep-alive"),
        H("http2-settings", "AAA"),
        H("expect", "100-continue"),
        H("content-length", "999"),
    };
    struct fwd_headers fh;

    build(&fh, "192.0.2.1:1", h, sizeof(h) / sizeof(h[0]), -1, 1);
    static const char *const gone[] = {
        "connection",       "keep-alive",     "x-foo",  "transfer-encoding", "upgrade", "te",
        "proxy-connection", "http2-settings", "expect", "content-length"};
    for (size_t i = 0; i < sizeof(gone) / sizeof(gone[0]); i++) {
        if (nv_has(&fh, gone[i]))
            fprintf(stderr, "forwarded: %s\n", gone[i]);
        CHECK(!nv_has(&fh, gone[i]));
    }
    /* A header the Connection does not name goes on. */
    CHECK_EQ_STR(nv_get(&fh, "x-bar", NULL), "kept");
    /* Chunked upload: the length is unknown, none is made up. */
    CHECK(!nv_has(&fh, "content-length"));
}

static void test_request_te_trailers(void)
{
    /* TE is hop-by-hop, but "trailers" goes on (gRPC needs it at the
     * service), alone: no other coding is passed. */
    static const struct ureq_header h[] = {H("te", "trailers")};
    static const struct ureq_header h2[] = {H("te", "deflate;q=0.5, Trailers")};
    static const struct ureq_header h3[] = {H("te", "gzip, deflate")};
    struct fwd_headers fh;
    size_t n = 0;

    build(&fh, "192.0.2.1:1", h, 1, 0, 0);
    CHECK_EQ_STR(nv_get(&fh, "te", NULL), "trailers");
    build(&fh, "192.0.2.1:1", h2, 1, 0, 0);
    CHECK_EQ_STR(nv_get(&fh, "te", NULL), "trailers");
    for (size_t i = 0; i < fh.n; i++)
        n += fh.nv[i].namelen == 2 && memcmp(fh.nv[i].name, "te", 2) == 0;
    CHECK(n == 1);
    build(&fh, "192.0.2.1:1", h3, 1, 0, 0);
    CHECK(!nv_has(&fh, "te"));
}

static void test_request_reserved(void)
{
    static const struct ureq_header h[] = {
        H("x-forwarded-for", "6.6.6.6"),
        H("x-forwarded-host", "evil"),
        H("x-forwarded-proto", "http"),
        H("forwarded", "for=6.6.6.6"),
        H("x-real-ip", "6.6.6.6"),
        H("true-client-ip", "6.6.6.6"),
        H("tether-service", "admin"),
        H("x-tether-user", "root"),
        H("x-tether-anything", "1"),
        H("authorization", "Bearer tth_x"),
        H("cookie", "s=1"),
        H("proxy-authorization", "Basic x"),
        H("user-agent", "curl/8"),
    };
    struct fwd_headers fh;
    int k;

    build(&fh, "198.51.100.9:4000", h, sizeof(h) / sizeof(h[0]), 0, 0);
    /* The hub's own values replace the user's, once each. */
    CHECK_EQ_STR(nv_get(&fh, "x-forwarded-for", &k), "198.51.100.9");
    CHECK_EQ_INT(k, 1);
    CHECK_EQ_STR(nv_get(&fh, "x-forwarded-proto", &k), "https");
    CHECK_EQ_INT(k, 1);
    CHECK_EQ_STR(nv_get(&fh, "forwarded", &k), "for=198.51.100.9;proto=https");
    CHECK_EQ_INT(k, 1);
    CHECK_EQ_STR(nv_get(&fh, "tether-service", &k), "web");
    CHECK_EQ_INT(k, 1);
    CHECK_EQ_STR(nv_get(&fh, "x-tether-user", &k), "alice");
    CHECK_EQ_INT(k, 1);
    /* No Host was sent: no X-Forwarded-Host, not the user's either. */
    CHECK(!nv_has(&fh, "x-forwarded-host"));
    CHECK(!nv_has(&fh, "x-real-ip"));
    CHECK(!nv_has(&fh, "true-client-ip"));
    CHECK(!nv_has(&fh, "x-tether-anything"));
    CHECK(!nv_has(&fh, "authorization"));
    CHECK(!nv_has(&fh, "cookie"));
    CHECK(!nv_has(&fh, "proxy-authorization"));
    CHECK_EQ_STR(nv_get(&fh, "user-agent", NULL), "curl/8");
    /* No body: no Content-Length, even of 0. */
    CHECK(!nv_has(&fh, "content-length"));
}

static void test_request_ipv6(void)
{
    static const struct ureq_header h[] = {H("host", "[2001:db8::1]:6443")};
    struct fwd_headers fh;

    build(&fh, "[2001:db8::7]:5555", h, 1, 0, 0);
    CHECK_EQ_STR(nv_get(&fh, "x-forwarded-for", NULL), "2001:db8::7");
    CHECK_EQ_STR(nv_get(&fh, "x-forwarded-host", NULL), "[2001:db8::1]:6443");
    CHECK_EQ_STR(nv_get(&fh, "forwarded", NULL),
                 "for=\"[2001:db8::7]\";proto=https;host=\"[2001:db8::1]:6443\"");
}

static void test_request_many(void)
{
    /* More user headers than a list holds: the list stops at
     * H2_HEADER_COUNT_MAX entries, never past its room. */
    static struct ureq_header h[2 * H2_HEADER_COUNT_MAX];
    static char names[2 * H2_HEADER_COUNT_MAX][16];
    struct fwd_headers fh;

    for (size_t i = 0; i < sizeof(h) / sizeof(h[0]); i++) {
        snprintf(names[i], sizeof(names[i]), "x-h%zu", i);
        h[i].name = names[i];
        h[i].value = (char *)"v";
    }
    build(&fh, "192.0.2.1:1", h, sizeof(h) / sizeof(h[0]), 0, 0);
    CHECK_EQ_INT(fh.n, H2_HEADER_COUNT_MAX);
    CHECK_EQ_STR(nv_get(&fh, "x-h0", NULL), "v");
}

/* Request trailers pass the headers' filter: reserved, hop-by-hop,
 * credential and framing names and those the head's Connection lists stay
 * behind. */
static void test_request_trailers(void)
{
    static const struct ureq_header head[] = {H("connection", "x-private")};
    static const char *const pairs[][2] = {
        {"x-sum", "1"},          {"x-tether-user", "root"},      {"authorization", "Bearer x"},
        {"te", "trailers"},      {"x-forwarded-for", "6.6.6.6"}, {"content-length", "3"},
        {"x-private", "secret"}, {"grpc-status", "0"},
    };
    const struct fwd_req req = {.hdrs = head, .n_hdrs = 1};
    nghttp2_nv out[8];
    struct buf b;
    unsigned n = 0;
    size_t k;

    buf_init(&b);
    for (size_t i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++)
        CHECK_EQ_INT(h2_pairs_add(&b, &n, pairs[i][0], strlen(pairs[i][0]), pairs[i][1],
                                  strlen(pairs[i][1])),
                     0);
    k = fwd_request_trailers(&req, &b, n, out, 8);
    CHECK_EQ_INT(k, 2);
    CHECK(k > 0 && out[0].namelen == 5 && memcmp(out[0].name, "x-sum", 5) == 0);
    CHECK(k > 1 && out[1].namelen == 11 && memcmp(out[1].name, "grpc-status", 11) == 0);
    /* cap bounds the output */
    CHECK_EQ_INT(fwd_request_trailers(&req, &b, n, out, 1), 1);
    buf_free(&b);
}

/* To a peer hub: the user's hub path and credentials go on, the user's
 * address in x-forwarded-for replaces any the user sent, hop-by-hop and
 * framing headers do not cross. */
static void test_peer(void)
{
    static const struct ureq_header h[] = {
        H("host", "hub.example:6443"),   H("authorization", "Bearer tok_x"),
        H("x-forwarded-for", "1.2.3.4"), H("connection", "keep-alive"),
        H("content-length", "5"),        H("expect", "100-continue"),
        H("te", "trailers, deflate"),    H("x-custom", "v"),
        H("forwarded", "for=9.9.9.9"),
    };
    const struct fwd_req req = {
        .method = "PUT",
        .path = "/v1/sites/s1/services/web/a?b=1",
        .service = "web",
        .user = "alice",
        .peer = "192.0.2.7:5555",
        .hdrs = h,
        .n_hdrs = sizeof(h) / sizeof(h[0]),
        .content_length = 5,
        .has_body = 1,
    };
    struct fwd_headers fh;
    int k;

    memset(&fh, 0xa5, sizeof(fh));
    fwd_peer_headers(&req, &fh);
    CHECK_EQ_STR(nv_get(&fh, ":method", NULL), "PUT");
    CHECK_EQ_STR(nv_get(&fh, ":path", NULL), "/v1/sites/s1/services/web/a?b=1");
    CHECK_EQ_STR(nv_get(&fh, ":authority", NULL), "hub.example:6443");
    CHECK_EQ_STR(nv_get(&fh, ":scheme", NULL), "https");
    CHECK(!nv_has(&fh, ":protocol"));
    CHECK_EQ_STR(nv_get(&fh, "authorization", NULL), "Bearer tok_x");
    CHECK_EQ_STR(nv_get(&fh, "x-forwarded-for", &k), "192.0.2.7");
    CHECK_EQ_INT(k, 1);
    CHECK_EQ_STR(nv_get(&fh, "content-length", &k), "5");
    CHECK_EQ_INT(k, 1);
    CHECK_EQ_STR(nv_get(&fh, "te", &k), "trailers");
    CHECK_EQ_INT(k, 1);
    CHECK_EQ_STR(nv_get(&fh, "x-custom", NULL), "v");
    /* The peer's own filter drops it before the site (fwd_reserved). */
    CHECK_EQ_STR(nv_get(&fh, "forwarded", NULL), "for=9.9.9.9");
    CHECK(!nv_has(&fh, "host") && !nv_has(&fh, "connection") && !nv_has(&fh, "expect"));
    CHECK(!nv_has(&fh, "x-tether-user") && !nv_has(&fh, "tether-service"));
}

int main(void)
{
    test_peer();
    test_request_trailers();
    test_build();
    test_reserved();
    test_request_pseudo();
    test_request_hop_by_hop();
    test_request_te_trailers();
    test_request_reserved();
    test_request_ipv6();
    test_request_many();
    TEST_DONE();
}
