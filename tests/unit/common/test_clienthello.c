/* Unit tests for common/clienthello.c against real wolfSSL ClientHellos and crafted ones. */
/* SPDX-License-Identifier: MIT */
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>

#include "common/clienthello.h"
#include "testutil.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <sys/socket.h>
#include <unistd.h>

#define CAP (CLIENTHELLO_READ_MAX + 64)

/* Runs a real wolfSSL TLS 1.3 client against a plain loopback listener and
 * returns the bytes the listener received before the client waits for an
 * answer: the ClientHello exactly as it travels. */
static size_t capture_hello(const char *alpn, const char *sni, uint8_t *out, size_t cap)
{
    struct sockaddr_in sa = {0};
    WOLFSSL_CTX *ctx = NULL;
    WOLFSSL *ssl = NULL;
    int lfd, cfd = -1, afd = -1, ret, port = 0;
    size_t got = 0;
    struct clienthello_info info;

    lfd = tu_loopback_socket(&port, 1);
    CHECK(lfd >= 0);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sa.sin_port = htons((uint16_t)port);
    cfd = socket(AF_INET, SOCK_STREAM, 0);
    CHECK_EQ_INT(connect(cfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    CHECK_EQ_INT(fcntl(cfd, F_SETFL, O_NONBLOCK), 0);
    afd = accept(lfd, NULL, NULL);
    CHECK(afd >= 0);

    ctx = wolfSSL_CTX_new(wolfTLSv1_3_client_method());
    CHECK(ctx != NULL);
    wolfSSL_CTX_set_verify(ctx, WOLFSSL_VERIFY_NONE, NULL);
    ssl = wolfSSL_new(ctx);
    CHECK(ssl != NULL);
    CHECK_EQ_INT(wolfSSL_set_fd(ssl, cfd), WOLFSSL_SUCCESS);
    if (sni != NULL)
        CHECK_EQ_INT(wolfSSL_UseSNI(ssl, WOLFSSL_SNI_HOST_NAME, sni, (unsigned short)strlen(sni)),
                     WOLFSSL_SUCCESS);
    if (alpn != NULL) {
        char list[128];
        snprintf(list, sizeof(list), "%s", alpn);
        CHECK_EQ_INT(
            wolfSSL_UseALPN(ssl, list, (unsigned)strlen(list), WOLFSSL_ALPN_FAILED_ON_MISMATCH),
            WOLFSSL_SUCCESS);
    }
    /* Non-blocking: sends the ClientHello, then wants to read. */
    ret = wolfSSL_connect(ssl);
    CHECK(ret != WOLFSSL_SUCCESS);
    CHECK_EQ_INT(wolfSSL_get_error(ssl, ret), WOLFSSL_ERROR_WANT_READ);

    for (;;) {
        struct pollfd pfd = {.fd = afd, .events = POLLIN};
        ssize_t r;
        if (poll(&pfd, 1, 2000) != 1)
            break;
        r = read(afd, out + got, cap - got);
        if (r <= 0)
            break;
        got += (size_t)r;
        if (clienthello_parse(out, got, &info) != -EAGAIN)
            break;
    }
    wolfSSL_free(ssl);
    wolfSSL_CTX_free(ctx);
    close(afd);
    close(cfd);
    close(lfd);
    CHECK(got > 0);
    return got;
}

/* Re-frames one handshake message into records of the given sizes (the last
 * size repeats until the message is used up). Returns the new length. */
static size_t refragment(const uint8_t *hs, size_t hs_len, const size_t *sizes, size_t n_sizes,
                         uint8_t *out, size_t cap)
{
    size_t off = 0, o = 0, k = 0;

    while (off < hs_len) {
        size_t sz = sizes[k < n_sizes ? k : n_sizes - 1];
        if (sz > hs_len - off)
            sz = hs_len - off;
        if (o + 5 + sz > cap)
            return 0;
        out[o++] = 22;
        out[o++] = 3;
        out[o++] = k == 0 ? 1 : 3;
        out[o++] = (uint8_t)(sz >> 8);
        out[o++] = (uint8_t)sz;
        memcpy(out + o, hs + off, sz);
        o += sz;
        off += sz;
        k++;
    }
    return o;
}

/* Extracts the handshake message from a single-record ClientHello. */
static size_t handshake_of(const uint8_t *rec, size_t len, uint8_t *hs)
{
    size_t rl = (size_t)rec[3] << 8 | rec[4];

    CHECK(len >= 5 + rl);
    memcpy(hs, rec + 5, rl);
    return rl;
}

/* Parses from an exact-size heap copy, so that ASan flags any read past len. */
static int parse_exact(const uint8_t *data, size_t len, struct clienthello_info *info)
{
    uint8_t *copy = malloc(len ? len : 1);
    int rc;

    memcpy(copy, data, len);
    rc = clienthello_parse(copy, len, info);
    free(copy);
    return rc;
}

/* Every proper prefix must ask for more bytes; the whole must parse the same. */
static void check_prefixes(const uint8_t *data, size_t len, const struct clienthello_info *want)
{
    struct clienthello_info info;
    size_t bad = 0;

    for (size_t l = 0; l < len; l++) {
        if (parse_exact(data, l, &info) != -EAGAIN) {
            if (bad++ == 0)
                fprintf(stderr, "  prefix %zu of %zu did not give -EAGAIN\n", l, len);
        }
    }
    CHECK_EQ_INT(bad, 0);
    CHECK_EQ_INT(parse_exact(data, len, &info), 0);
    CHECK_EQ_INT(info.alpn, want->alpn);
    CHECK_EQ_STR(info.sni, want->sni);
}

/* Flipped bytes may be refused or need more input, but never crash or yield
 * an unterminated name. */
static void check_flips(const uint8_t *data, size_t len)
{
    uint8_t *copy = malloc(len);
    static const uint8_t masks[] = {0x01, 0x80, 0xff, 0x10};
    struct clienthello_info info;
    size_t odd = 0;

    for (size_t i = 0; i < len; i++) {
        for (size_t m = 0; m < sizeof(masks); m++) {
            int rc;
            memcpy(copy, data, len);
            copy[i] ^= masks[m];
            rc = clienthello_parse(copy, len, &info);
            if (rc != 0 && rc != -EAGAIN && rc != -EPROTO)
                odd++;
            if (rc == 0 && strnlen(info.sni, sizeof(info.sni)) >= sizeof(info.sni))
                odd++;
            if (rc != 0 && (info.alpn != 0 || info.sni[0] != '\0'))
                odd++; /* failures leave info empty */
        }
    }
    free(copy);
    CHECK_EQ_INT(odd, 0);
}

static void test_real(const char *alpn, const char *sni, unsigned want_alpn)
{
    static uint8_t buf[CAP], hs[CAP], frag[CAP];
    struct clienthello_info info, want = {0};
    size_t len, hs_len, flen;

    want.alpn = want_alpn;
    if (sni != NULL)
        snprintf(want.sni, sizeof(want.sni), "%s", sni);
    len = capture_hello(alpn, sni, buf, sizeof(buf));
    CHECK_EQ_INT(clienthello_parse(buf, len, &info), 0);
    CHECK_EQ_INT(info.alpn, want_alpn);
    CHECK_EQ_STR(info.sni, want.sni);
    CHECK_EQ_INT(buf[0], 22);
    check_prefixes(buf, len, &want);
    check_flips(buf, len);

    /* The same message spread over several records, including a first record
     * too short to hold the handshake header. */
    hs_len = handshake_of(buf, len, hs);
    {
        const size_t tiny[] = {1, 2, 1000};
        const size_t halves[] = {hs_len / 2, hs_len};
        const size_t three[] = {3, 100};
        size_t sixteen[] = {hs_len / 16 + 1};
        size_t seventeen[] = {hs_len / 17};
        const size_t *plans[] = {tiny, halves, three, sixteen};
        const size_t plan_n[] = {3, 2, 2, 1};

        for (int p = 0; p < 4; p++) {
            flen = refragment(hs, hs_len, plans[p], plan_n[p], frag, sizeof(frag));
            CHECK(flen > len);
            check_prefixes(frag, flen, &want);
        }
        check_flips(frag, flen);
        /* Beyond CLIENTHELLO_MAX_RECORDS records the peer is refused. */
        flen = refragment(hs, hs_len, seventeen, 1, frag, sizeof(frag));
        CHECK_EQ_INT(clienthello_parse(frag, flen, &info), -EPROTO);
    }
}

/* The handshake header of a ClientHello of body_len bytes and its fixed
 * fields up to the extensions: TLS 1.2 legacy version, a random of fill
 * bytes, no session id, one suite (TLS_AES_128_GCM_SHA256), null
 * compression. Returns the bytes written (4 + 41). */
static size_t put_hello_head(uint8_t *out, size_t body_len, uint8_t fill)
{
    size_t o = 0;

    out[o++] = 1;
    out[o++] = (uint8_t)(body_len >> 16);
    out[o++] = (uint8_t)(body_len >> 8);
    out[o++] = (uint8_t)body_len;
    out[o++] = 3;
    out[o++] = 3;
    memset(out + o, fill, 32);
    o += 32;
    out[o++] = 0; /* session id */
    out[o++] = 0;
    out[o++] = 2;
    out[o++] = 0x13;
    out[o++] = 0x01;
    out[o++] = 1; /* compression */
    out[o++] = 0;
    return o;
}

/* A crafted ClientHello with the given extensions block (may be NULL for none). */
static size_t craft(const uint8_t *ext, size_t ext_len, int with_ext_block, uint8_t *out,
                    size_t cap)
{
    size_t body_len = 2 + 32 + 1 + 2 + 2 + 2 + (with_ext_block ? 2 + ext_len : 0);
    size_t o = 0;

    CHECK(9 + body_len <= cap);
    if (9 + body_len > cap)
        return 0;
    out[o++] = 22;
    out[o++] = 3;
    out[o++] = 1;
    out[o++] = (uint8_t)((body_len + 4) >> 8);
    out[o++] = (uint8_t)(body_len + 4);
    o += put_hello_head(out + o, body_len, 0x5a);
    if (with_ext_block) {
        out[o++] = (uint8_t)(ext_len >> 8);
        out[o++] = (uint8_t)ext_len;
        memcpy(out + o, ext, ext_len);
        o += ext_len;
    }
    return o;
}

static size_t put_ext(uint8_t *p, unsigned type, const uint8_t *data, size_t len)
{
    p[0] = (uint8_t)(type >> 8);
    p[1] = (uint8_t)type;
    p[2] = (uint8_t)(len >> 8);
    p[3] = (uint8_t)len;
    memcpy(p + 4, data, len);
    return 4 + len;
}

static size_t sni_ext(uint8_t *p, const char *name, size_t nlen)
{
    uint8_t d[512];

    d[0] = (uint8_t)((nlen + 3) >> 8);
    d[1] = (uint8_t)(nlen + 3);
    d[2] = 0;
    d[3] = (uint8_t)(nlen >> 8);
    d[4] = (uint8_t)nlen;
    memcpy(d + 5, name, nlen);
    return put_ext(p, 0, d, nlen + 5);
}

/* ALPN extension from a list of names. */
static size_t alpn_ext(uint8_t *p, const char *const *names, size_t n)
{
    uint8_t d[512];
    size_t o = 2;

    for (size_t i = 0; i < n; i++) {
        size_t l = strlen(names[i]);
        d[o++] = (uint8_t)l;
        memcpy(d + o, names[i], l);
        o += l;
    }
    d[0] = (uint8_t)((o - 2) >> 8);
    d[1] = (uint8_t)(o - 2);
    return put_ext(p, 16, d, o);
}

static int parse_ext(const uint8_t *ext, size_t len, struct clienthello_info *info)
{
    uint8_t buf[4096];
    size_t n = craft(ext, len, 1, buf, sizeof(buf));

    return parse_exact(buf, n, info);
}

static void test_crafted(void)
{
    uint8_t ext[2048], buf[4096];
    struct clienthello_info info;
    char name[300];
    size_t n;

    /* No extensions at all (an old client): a ClientHello, nothing offered. */
    n = craft(NULL, 0, 0, buf, sizeof(buf));
    CHECK_EQ_INT(parse_exact(buf, n, &info), 0);
    CHECK_EQ_INT(info.alpn, 0);
    CHECK_EQ_STR(info.sni, "");

    /* ALPN names match exactly, not by prefix. */
    {
        const char *names[] = {"h2c", "tether/10", "http/1.0", "h"};
        n = alpn_ext(ext, names, 4);
        CHECK_EQ_INT(parse_ext(ext, n, &info), 0);
        CHECK_EQ_INT(info.alpn, CLIENTHELLO_ALPN_ANY);
    }
    {
        const char *names[] = {"spdy/3", "http/1.1"};
        n = alpn_ext(ext, names, 2);
        CHECK_EQ_INT(parse_ext(ext, n, &info), 0);
        CHECK_EQ_INT(info.alpn, CLIENTHELLO_ALPN_ANY | CLIENTHELLO_ALPN_HTTP11);
    }
    {
        const char *names[] = {"tether/1", "h2", "http/1.1"};
        n = alpn_ext(ext, names, 3);
        CHECK_EQ_INT(parse_ext(ext, n, &info), 0);
        CHECK_EQ_INT(info.alpn, CLIENTHELLO_ALPN_ANY | CLIENTHELLO_ALPN_TUNNEL |
                                    CLIENTHELLO_ALPN_H2 | CLIENTHELLO_ALPN_HTTP11);
        /* Twice the same extension is malformed. */
        memcpy(ext + n, ext, n);
        CHECK_EQ_INT(parse_ext(ext, 2 * n, &info), -EPROTO);
        CHECK_EQ_INT(info.alpn, 0);
    }
    {
        const char *names[] = {"h2", ""};
        n = alpn_ext(ext, names, 2);
        CHECK_EQ_INT(parse_ext(ext, n, &info), -EPROTO); /* empty protocol name */
        names[1] = "http/1.1";
        n = alpn_ext(ext, names, 2);
        ext[5]++; /* list length larger than the extension */
        CHECK_EQ_INT(parse_ext(ext, n, &info), -EPROTO);
        ext[5] -= 2; /* smaller */
        CHECK_EQ_INT(parse_ext(ext, n, &info), -EPROTO);
    }

    /* SNI: 255 bytes is the most, 256 is refused. */
    memset(name, 'a', sizeof(name));
    for (size_t i = 50; i < 255; i += 50)
        name[i] = '.';
    n = sni_ext(ext, name, 255);
    CHECK_EQ_INT(parse_ext(ext, n, &info), 0);
    CHECK_EQ_INT(strlen(info.sni), 255);
    CHECK(memcmp(info.sni, name, 255) == 0);
    n = sni_ext(ext, name, 256);
    CHECK_EQ_INT(parse_ext(ext, n, &info), -EPROTO);
    CHECK_EQ_STR(info.sni, "");
    n = sni_ext(ext, "hub\0evil.example", 16);
    CHECK_EQ_INT(parse_ext(ext, n, &info), -EPROTO);
    n = sni_ext(ext, "", 0);
    CHECK_EQ_INT(parse_ext(ext, n, &info), -EPROTO);
    n = sni_ext(ext, "hub.example", 11);
    ext[n - 1] = '\n';
    CHECK_EQ_INT(parse_ext(ext, n, &info), -EPROTO);

    /* SNI and ALPN together, plus an unknown extension, in any order. */
    {
        const char *names[] = {"h2"};
        uint8_t unknown[3] = {1, 2, 3};
        n = put_ext(ext, 0xfe0d, unknown, 3);
        n += alpn_ext(ext + n, names, 1);
        n += sni_ext(ext + n, "x.example", 9);
        CHECK_EQ_INT(parse_ext(ext, n, &info), 0);
        CHECK_EQ_INT(info.alpn, CLIENTHELLO_ALPN_ANY | CLIENTHELLO_ALPN_H2);
        CHECK_EQ_STR(info.sni, "x.example");
        /* Record and handshake lengths that disagree with the body. */
        n = craft(ext, n, 1, buf, sizeof(buf));
        CHECK_EQ_INT(parse_exact(buf, n, &info), 0);
        CHECK_EQ_INT(parse_exact(buf, n - 1, &info), -EAGAIN);
        buf[4]--; /* record one byte short of the message: the message never completes */
        CHECK_EQ_INT(parse_exact(buf, n - 1, &info), -EAGAIN);
        buf[4]++;
        buf[8]--; /* handshake claims one byte less: extensions overrun it */
        CHECK_EQ_INT(parse_exact(buf, n, &info), -EPROTO);
    }
}

static void test_junk(void)
{
    static const char http[] = "GET / HTTP/1.1\r\nHost: hub\r\n\r\n";
    const uint8_t sslv2[] = {0x80, 0x2e, 0x01, 0x00, 0x02};
    const uint8_t server_hello[] = {22, 3, 3, 0, 4, 2, 0, 0, 0};
    const uint8_t zero_rec[] = {22, 3, 1, 0, 0};
    const uint8_t huge_rec[] = {22, 3, 1, 0x40, 0x01};
    const uint8_t alert[] = {21, 3, 3, 0, 2, 2, 40};
    const uint8_t bad_major[] = {22, 2, 0};
    const uint8_t huge_msg[] = {22, 3, 1, 0x40, 0x00, 1, 0x00, 0x40, 0x01};
    struct clienthello_info info;

    CHECK_EQ_INT(parse_exact((const uint8_t *)http, strlen(http), &info), -EPROTO);
    /* Refused from the first byte on, without waiting for a full header. */
    CHECK_EQ_INT(parse_exact((const uint8_t *)http, 1, &info), -EPROTO);
    CHECK_EQ_INT(parse_exact(sslv2, sizeof(sslv2), &info), -EPROTO);
    CHECK_EQ_INT(parse_exact(server_hello, sizeof(server_hello), &info), -EPROTO);
    CHECK_EQ_INT(parse_exact(zero_rec, sizeof(zero_rec), &info), -EPROTO);
    CHECK_EQ_INT(parse_exact(huge_rec, sizeof(huge_rec), &info), -EPROTO);
    CHECK_EQ_INT(parse_exact(alert, sizeof(alert), &info), -EPROTO);
    CHECK_EQ_INT(parse_exact(bad_major, sizeof(bad_major), &info), -EPROTO);
    CHECK_EQ_INT(parse_exact(huge_msg, sizeof(huge_msg), &info), -EPROTO);
    CHECK_EQ_INT(clienthello_parse((const uint8_t *)"", 0, &info), -EAGAIN);
}

/* The largest accepted ClientHello, in the most records allowed, completes
 * within CLIENTHELLO_READ_MAX bytes; one byte more is refused outright. */
static void test_limits(void)
{
    static uint8_t hs[CLIENTHELLO_MAX + 16], rec[CAP];
    struct clienthello_info info, want = {0};
    size_t body = CLIENTHELLO_MAX - 4, pad = body - (2 + 32 + 1 + 4 + 2 + 2) - 4, o = 0, n;
    size_t per = CLIENTHELLO_MAX / CLIENTHELLO_MAX_RECORDS;

    o += put_hello_head(hs, body, 0);
    hs[o++] = (uint8_t)((pad + 4) >> 8);
    hs[o++] = (uint8_t)(pad + 4);
    hs[o++] = 0; /* padding extension (21) */
    hs[o++] = 21;
    hs[o++] = (uint8_t)(pad >> 8);
    hs[o++] = (uint8_t)pad;
    memset(hs + o, 0, pad);
    o += pad;
    CHECK_EQ_INT(o, CLIENTHELLO_MAX);

    n = refragment(hs, o, &per, 1, rec, sizeof(rec));
    CHECK_EQ_INT(n, CLIENTHELLO_READ_MAX);
    CHECK_EQ_INT(parse_exact(rec, n, &info), 0);
    /* Trailing bytes after the message are not its business. */
    CHECK_EQ_INT(parse_exact(rec, sizeof(rec), &info), 0);
    check_prefixes(rec, n, &want);

    /* One byte over CLIENTHELLO_MAX. */
    hs[3]++;
    hs[o] = 0;
    n = refragment(hs, o + 1, &per, 1, rec, sizeof(rec));
    CHECK_EQ_INT(parse_exact(rec, n, &info), -EPROTO);
}

int main(void)
{
    wolfSSL_Init();
    test_real("tether/1", "hub.example", CLIENTHELLO_ALPN_ANY | CLIENTHELLO_ALPN_TUNNEL);
    /* A hub dialling a peer hub (hub/tunnel/peer.c). */
    test_real("tether-peer/1", NULL, CLIENTHELLO_ALPN_ANY | CLIENTHELLO_ALPN_PEER);
    test_real("h2,http/1.1", "hub.example",
              CLIENTHELLO_ALPN_ANY | CLIENTHELLO_ALPN_H2 | CLIENTHELLO_ALPN_HTTP11);
    test_real(NULL, NULL, 0);
    test_real(NULL, "only-sni.example", 0);
    test_crafted();
    test_junk();
    test_limits();
    wolfSSL_Cleanup();
    TEST_DONE();
}
