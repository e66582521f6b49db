/* Unit test of the TLS layer: handshakes and data under WANT_READ and WANT_WRITE at every byte
 * boundary, pin checks. */
/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <wolfssl/options.h>
#include <wolfssl/ssl.h>

#include "common/crypto.h"
#include "common/tls.h"
#include "testutil.h"

struct pin_ok {
    const char *want;
    int calls;
};

static int check_pin(void *arg, const char *pin)
{
    struct pin_ok *p = arg;
    p->calls++;
    return crypto_pin_equal(pin, p->want) ? 0 : -EACCES;
}

/* Moves at most `step` bytes of ciphertext from a's output to b's input. */
static size_t shuttle(struct tls_conn *a, struct tls_conn *b, size_t step)
{
    size_t n = a->out.len < step ? a->out.len : step;
    if (n > 0) {
        tls_feed(b, buf_head(&a->out), n);
        buf_consume(&a->out, n);
    }
    return n;
}

/* Runs both handshakes to completion moving `step` bytes at a time; returns
 * 0 when both finish, <0 if either fails. */
static int handshake(struct tls_conn *cli, struct tls_conn *srv, size_t step)
{
    int rc_c = TLS_AGAIN, rc_s = TLS_AGAIN;
    for (int i = 0; i < 2000000; i++) {
        if (rc_c == TLS_AGAIN)
            rc_c = tls_handshake(cli);
        if (rc_s == TLS_AGAIN)
            rc_s = tls_handshake(srv);
        if (rc_c < 0 && rc_c != TLS_AGAIN)
            return rc_c;
        if (rc_s < 0 && rc_s != TLS_AGAIN)
            return rc_s;
        if (rc_c == 0 && rc_s == 0)
            return 0;
        if (shuttle(cli, srv, step) + shuttle(srv, cli, step) == 0 && rc_c == TLS_AGAIN &&
            rc_s == TLS_AGAIN) {
            /* Output cap reached: drained above; retry pending writes. */
            tls_flush_pending(cli);
            tls_flush_pending(srv);
        }
    }
    return -ETIMEDOUT;
}

/* Sends len bytes from a to b moving `step` bytes at a time with a's output
 * capped at `cap`, and checks they arrive intact. */
static void transfer(struct tls_conn *a, struct tls_conn *b, size_t len, size_t step, size_t cap)
{
    uint8_t *src = malloc(len), *dst = malloc(len + 1);
    size_t got = 0, n;
    int rc;

    for (size_t i = 0; i < len; i++)
        src[i] = (uint8_t)(i * 131 + 7);
    a->out_cap = cap;
    CHECK_EQ_INT(tls_write(a, src, len), 0);
    for (int i = 0; i < 50000000 && got < len; i++) {
        shuttle(a, b, step);
        if (a->out.len == 0 && a->pending.len > 0)
            CHECK(tls_flush_pending(a) >= TLS_AGAIN);
        rc = tls_read(b, dst + got, len - got, &n);
        if (rc == 0)
            got += n;
        else if (rc != TLS_AGAIN)
            break;
    }
    CHECK_EQ_INT(got, len);
    CHECK(memcmp(src, dst, len) == 0);
    CHECK_EQ_INT(a->pending.len, 0);
    a->out_cap = 8u << 20;
    free(src);
    free(dst);
}

/* Like transfer(), but ciphertext is lent (tls_lend) in `step`-byte pieces
 * the way conn.c does from its read buffer; what the reader leaves must be
 * kept by tls_unlend() and read later. */
static void transfer_lent(struct tls_conn *a, struct tls_conn *b, size_t len, size_t step)
{
    uint8_t *src = malloc(len), *dst = malloc(len + 1), *wire;
    size_t got = 0, n, off = 0, wire_len;
    int rc;

    for (size_t i = 0; i < len; i++)
        src[i] = (uint8_t)(i * 17 + 5);
    CHECK_EQ_INT(tls_write(a, src, len), 0);
    wire_len = a->out.len;
    wire = malloc(wire_len);
    memcpy(wire, buf_head(&a->out), wire_len);
    buf_consume(&a->out, wire_len);
    while (off < wire_len) {
        size_t k = wire_len - off < step ? wire_len - off : step;
        tls_lend(b, wire + off, k);
        /* Read only a little each time so that lent bytes are left over. */
        rc = tls_read(b, dst + got, (len - got) < 100 ? len - got : 100, &n);
        if (rc == 0)
            got += n;
        CHECK(rc == 0 || rc == TLS_AGAIN);
        CHECK_EQ_INT(tls_unlend(b), 0);
        CHECK(b->lent == NULL && b->lent_len == 0);
        off += k;
    }
    while (got < len && tls_read(b, dst + got, len - got, &n) == 0)
        got += n;
    CHECK_EQ_INT(got, len);
    CHECK(memcmp(src, dst, len) == 0);
    free(wire);
    free(src);
    free(dst);
}

static void pair(WOLFSSL_CTX *cctx, WOLFSSL_CTX *sctx, struct tls_conn *cli, struct tls_conn *srv,
                 struct tls_pin_verifier *cv, struct tls_pin_verifier *sv)
{
    CHECK_EQ_INT(tls_conn_init(cli, cctx, "hub.example", "tether/1", 1), 0);
    CHECK_EQ_INT(tls_conn_init(srv, sctx, NULL, "tether/1", 1), 0);
    tls_attach_verifier(cli->ssl, cv);
    if (sv != NULL)
        tls_attach_verifier(srv->ssl, sv);
}

/* The pins each side's verifier expects, and what the verifiers saw. */
struct pins {
    struct pin_ok hub, site;
    struct tls_pin_verifier cv, sv;
};

/* pair() with the client expecting hub_pin and the server site_pin. */
static void pair_pinned(WOLFSSL_CTX *cctx, WOLFSSL_CTX *sctx, const char *hub_pin,
                        const char *site_pin, struct pins *p, struct tls_conn *cli,
                        struct tls_conn *srv)
{
    p->hub = (struct pin_ok){hub_pin, 0};
    p->site = (struct pin_ok){site_pin, 0};
    p->cv = (struct tls_pin_verifier){.check = check_pin, .arg = &p->hub};
    p->sv = (struct tls_pin_verifier){.check = check_pin, .arg = &p->site};
    pair(cctx, sctx, cli, srv, &p->cv, &p->sv);
}

/* I/O for a plain wolfSSL client context made here (tls.c's own callbacks
 * are private): the same struct tls_conn buffers, without lending. */
static int test_recv(WOLFSSL *ssl, char *dst, int sz, void *ctx)
{
    struct tls_conn *c = ctx;
    size_t n = c->in.len < (size_t)sz ? c->in.len : (size_t)sz;

    if (n == 0)
        return WOLFSSL_CBIO_ERR_WANT_READ;
    memcpy(dst, buf_head(&c->in), n);
    buf_consume(&c->in, n);
    return (int)n;
}

static int test_send(WOLFSSL *ssl, char *src, int sz, void *ctx)
{
    struct tls_conn *c = ctx;
    return buf_append(&c->out, src, (size_t)sz) == 0 ? sz : WOLFSSL_CBIO_ERR_GENERAL;
}

static WOLFSSL_CTX *plain_client(WOLFSSL_METHOD *method)
{
    WOLFSSL_CTX *ctx = wolfSSL_CTX_new(method);

    CHECK(ctx != NULL);
    if (ctx != NULL) {
        wolfSSL_CTX_SetIORecv(ctx, test_recv);
        wolfSSL_CTX_SetIOSend(ctx, test_send);
        wolfSSL_CTX_set_verify(ctx, WOLFSSL_VERIFY_NONE, NULL);
    }
    return ctx;
}

/* Handshake of a TLS 1.2 client offering only `ciphers` with the users'
 * server; returns the result and, on success, the suite in `got`. */
static int user_tls12(WOLFSSL_CTX *uctx, const char *ciphers, char *got, size_t cap)
{
    WOLFSSL_CTX *c12 = plain_client(wolfTLSv1_2_client_method());
    struct tls_conn cli, srv;
    int rc = -EINVAL;

    got[0] = '\0';
    if (c12 == NULL)
        return rc;
    if (wolfSSL_CTX_set_cipher_list(c12, ciphers) == WOLFSSL_SUCCESS) {
        CHECK_EQ_INT(tls_conn_init(&cli, c12, NULL, NULL, 0), 0);
        CHECK_EQ_INT(tls_conn_init(&srv, uctx, NULL, "h2,http/1.1", 0), 0);
        rc = handshake(&cli, &srv, 1 << 20);
        if (rc == 0) {
            snprintf(got, cap, "%s", wolfSSL_get_cipher_name(cli.ssl));
            CHECK_EQ_STR(wolfSSL_get_version(srv.ssl), "TLSv1.2");
        }
        tls_conn_free(&cli);
        tls_conn_free(&srv);
    }
    wolfSSL_CTX_free(c12);
    return rc;
}

/* The users' side offers TLS 1.3 first and, on TLS 1.2, only ECDHE with an
 * AEAD cipher: a client that knows only CBC suites gets no handshake. */
static void test_user_ciphers(const struct crypto_identity *hub_id)
{
    static const char *const cbc[] = {
        "ECDHE-ECDSA-AES128-SHA",    "ECDHE-ECDSA-AES256-SHA", "ECDHE-ECDSA-AES128-SHA256",
        "ECDHE-ECDSA-AES256-SHA384", "ECDHE-RSA-AES128-SHA",   "AES128-SHA",
    };
    static const char *const aead[] = {
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
    };
    WOLFSSL_CTX *uctx = NULL, *c13;
    struct tls_conn cli, srv;
    char got[80];

    CHECK_EQ_INT(tls_ctx_user_server(hub_id, &uctx), 0);
    for (size_t i = 0; i < sizeof(cbc) / sizeof(cbc[0]); i++) {
        int rc = user_tls12(uctx, cbc[i], got, sizeof(got));
        if (rc == 0)
            fprintf(stderr, "users' side accepted TLS 1.2 with %s\n", got);
        CHECK(rc != 0);
    }
    for (size_t i = 0; i < sizeof(aead) / sizeof(aead[0]); i++) {
        CHECK_EQ_INT(user_tls12(uctx, aead[i], got, sizeof(got)), 0);
        CHECK_EQ_STR(got, aead[i]);
    }
    /* A client that can do both gets TLS 1.3. */
    c13 = plain_client(wolfSSLv23_client_method());
    CHECK_EQ_INT(tls_conn_init(&cli, c13, NULL, "h2", 0), 0);
    CHECK_EQ_INT(tls_conn_init(&srv, uctx, NULL, "h2,http/1.1", 0), 0);
    CHECK_EQ_INT(handshake(&cli, &srv, 1 << 20), 0);
    CHECK_EQ_STR(wolfSSL_get_version(cli.ssl), "TLSv1.3");
    tls_conn_free(&cli);
    tls_conn_free(&srv);
    wolfSSL_CTX_free(c13);
    wolfSSL_CTX_free(uctx);
}

/* The handshake of a pinned pair fails: the verifier v (of the side `by`)
 * saw the peer's key `seen` and said no, and `by` never completed. Frees
 * both ends. */
static void refused(struct tls_conn *cli, struct tls_conn *srv, const struct tls_pin_verifier *v,
                    const char *seen, const struct tls_conn *by)
{
    CHECK(handshake(cli, srv, 1 << 20) < 0);
    CHECK_EQ_STR(v->seen_pin, seen);
    CHECK(v->result != 0);
    CHECK(!by->handshake_done);
    tls_conn_free(cli);
    tls_conn_free(srv);
}

int main(void)
{
    struct crypto_identity hub_id = {0}, site_id = {0}, other_id = {0};
    WOLFSSL_CTX *sctx = NULL, *cctx = NULL, *octx = NULL;
    struct tls_conn cli, srv;
    struct pins p;
    char alpn[32];
    static const size_t steps[] = {1, 2, 3, 7, 100, 1 << 20};

    wolfSSL_Init();
    CHECK_EQ_INT(crypto_identity_generate("hub.example", NULL, 0, &hub_id), 0);
    CHECK_EQ_INT(crypto_identity_generate("site-a", NULL, 0, &site_id), 0);
    CHECK_EQ_INT(crypto_identity_generate("intruder", NULL, 0, &other_id), 0);
    CHECK_EQ_INT(tls_ctx_tunnel_server(&hub_id, &sctx), 0);
    CHECK_EQ_INT(tls_ctx_client(&site_id, &cctx), 0);
    CHECK_EQ_INT(tls_ctx_client(&other_id, &octx), 0);

    /* Handshake with every ciphertext byte delivered alone (WANT_READ at
     * each boundary) and other chunkings; both sides check pins. */
    for (size_t k = 0; k < sizeof(steps) / sizeof(steps[0]); k++) {
        pair_pinned(cctx, sctx, hub_id.pin, site_id.pin, &p, &cli, &srv);
        CHECK_EQ_INT(handshake(&cli, &srv, steps[k]), 0);
        CHECK(p.hub.calls >= 1);
        CHECK(p.site.calls >= 1);
        CHECK_EQ_STR(p.cv.seen_pin, hub_id.pin);
        CHECK_EQ_STR(p.sv.seen_pin, site_id.pin);
        tls_alpn(&cli, alpn, sizeof(alpn));
        CHECK_EQ_STR(alpn, "tether/1");
        if (steps[k] <= 3) {
            /* Data with the sender's output capped at one byte: WANT_WRITE
             * at every boundary, retried through `pending`. */
            transfer(&cli, &srv, 3000, steps[k], 1);
            transfer(&srv, &cli, 3000, steps[k], 1);
        }
        transfer(&cli, &srv, 200000, 4096, 8u << 20);
        transfer_lent(&cli, &srv, 100000, steps[k] < 100 ? 997 : 70000);
        transfer(&srv, &cli, 200000, 16384, 700);
        tls_conn_free(&cli);
        tls_conn_free(&srv);
    }

    /* The server refuses a key it does not know, during the handshake. */
    pair_pinned(octx, sctx, hub_id.pin, site_id.pin, &p, &cli, &srv);
    refused(&cli, &srv, &p.sv, other_id.pin, &srv);

    /* The client refuses a hub whose key is not the pinned one (what an
     * intercepting middlebox looks like). */
    pair_pinned(cctx, sctx, other_id.pin, site_id.pin, &p, &cli, &srv);
    refused(&cli, &srv, &p.cv, hub_id.pin, &cli);

    /* A client without a certificate never completes a tunnel handshake. */
    {
        WOLFSSL_CTX *nctx = NULL;
        CHECK_EQ_INT(tls_ctx_client(NULL, &nctx), 0);
        pair_pinned(nctx, sctx, hub_id.pin, site_id.pin, &p, &cli, &srv);
        CHECK(handshake(&cli, &srv, 1 << 20) < 0);
        CHECK_EQ_INT(p.site.calls, 0);
        tls_conn_free(&cli);
        tls_conn_free(&srv);
        wolfSSL_CTX_free(nctx);
    }

    test_user_ciphers(&hub_id);

    wolfSSL_CTX_free(sctx);
    wolfSSL_CTX_free(cctx);
    wolfSSL_CTX_free(octx);
    crypto_identity_free(&hub_id);
    crypto_identity_free(&site_id);
    crypto_identity_free(&other_id);
    wolfSSL_Cleanup();
    TEST_DONE();
}
