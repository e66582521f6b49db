/* TLS as a layer over memory buffers: wolfSSL I/O callbacks read what libuv delivered and queue
 * what it must send. */
/* SPDX-License-Identifier: MIT */
#include "tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <wolfssl/error-ssl.h>
#include <wolfssl/wolfcrypt/error-crypt.h>

/* Production cap on queued ciphertext: far above the upper layers' own
 * high-water marks, so `pending` is a safety net rather than a path. */
#define TLS_OUT_CAP_DEFAULT (8u << 20)

/* Bytes wolfSSL may take now: never past the end of the current record, so
 * wolfSSL holds one record at a time and never has to move a tail of the
 * next one around its buffer (ShrinkInputBuffer). */
static size_t record_room(struct tls_conn *c, size_t avail)
{
    if (c->rec_left == 0) {
        uint8_t hdr[5];
        size_t from_in = c->in.len < 5 ? c->in.len : 5;
        if (avail < 5)
            return 0;
        if (from_in > 0)
            memcpy(hdr, buf_head(&c->in), from_in);
        if (from_in < 5)
            memcpy(hdr + from_in, c->lent, 5 - from_in);
        c->rec_left = 5 + ((size_t)hdr[3] << 8 | hdr[4]);
    }
    return c->rec_left < avail ? c->rec_left : avail;
}

static int io_recv(WOLFSSL *ssl, char *dst, int sz, void *ctx)
{
    struct tls_conn *c = ctx;
    size_t room = record_room(c, c->in.len + c->lent_len);
    size_t want = room < (size_t)sz ? room : (size_t)sz;
    size_t n = 0, k;

    if (want == 0)
        return WOLFSSL_CBIO_ERR_WANT_READ;
    if (c->in.len > 0) {
        k = c->in.len < want ? c->in.len : want;
        memcpy(dst, buf_head(&c->in), k);
        buf_consume(&c->in, k);
        n += k;
    }
    if (n < want) {
        k = want - n;
        memcpy(dst + n, c->lent, k);
        c->lent += k;
        c->lent_len -= k;
        n += k;
    }
    c->rec_left -= n;
    return (int)n;
}

static int io_send(WOLFSSL *ssl, char *src, int sz, void *ctx)
{
    struct tls_conn *c = ctx;
    size_t room;

    if (c->out.len >= c->out_cap)
        return WOLFSSL_CBIO_ERR_WANT_WRITE;
    /* Take what fits below the cap; wolfSSL resends the rest later. */
    room = c->out_cap - c->out.len;
    if ((size_t)sz > room)
        sz = (int)room;
    if (buf_append(&c->out, src, (size_t)sz) != 0)
        return WOLFSSL_CBIO_ERR_GENERAL;
    return sz;
}

static int verify_cb(int preverify, WOLFSSL_X509_STORE_CTX *store)
{
    struct tls_pin_verifier *v = store->userCtx;

    if (v == NULL || v->check == NULL)
        return 0;
    /* Intermediates carry no trust here: the leaf's pin alone decides. */
    if (store->error_depth != 0)
        return 1;
    if (store->certs == NULL || store->totalCerts < 1) {
        v->result = -EPROTO;
        return 0;
    }
    if (crypto_pin_from_cert(store->certs[0].buffer, store->certs[0].length, v->seen_pin) != 0) {
        v->seen_pin[0] = '\0';
        v->result = -EPROTO;
        return 0;
    }
    v->result = v->check(v->arg, v->seen_pin);
    return v->result == 0;
}

static int ctx_common(WOLFSSL_METHOD *method, const struct crypto_identity *id, WOLFSSL_CTX **out)
{
    WOLFSSL_CTX *ctx = NULL;
    int rc = -EIO;

    if (method == NULL)
        goto out;
    ctx = wolfSSL_CTX_new(method);
    if (ctx == NULL)
        goto out;
    wolfSSL_CTX_SetIORecv(ctx, io_recv);
    wolfSSL_CTX_SetIOSend(ctx, io_send);
    if (id != NULL) {
        if (wolfSSL_CTX_use_certificate_buffer(ctx, id->cert_der, (long)id->cert_len,
                                               WOLFSSL_FILETYPE_ASN1) != WOLFSSL_SUCCESS)
            goto out;
        if (wolfSSL_CTX_use_PrivateKey_buffer(ctx, id->key_der, (long)id->key_len,
                                              WOLFSSL_FILETYPE_ASN1) != WOLFSSL_SUCCESS)
            goto out;
    }
    *out = ctx;
    ctx = NULL;
    rc = 0;
out:
    if (ctx != NULL)
        wolfSSL_CTX_free(ctx);
    return rc;
}

int tls_ctx_tunnel_server(const struct crypto_identity *id, WOLFSSL_CTX **out)
{
    int rc = ctx_common(wolfTLSv1_3_server_method(), id, out);
    if (rc != 0)
        return rc;
    wolfSSL_CTX_set_verify(*out, WOLFSSL_VERIFY_PEER | WOLFSSL_VERIFY_FAIL_IF_NO_PEER_CERT,
                           verify_cb);
    /* Resumption would skip the client-certificate check. */
    wolfSSL_CTX_no_ticket_TLSv13(*out);
    wolfSSL_CTX_set_session_cache_mode(*out, WOLFSSL_SESS_CACHE_OFF);
    return 0;
}

/* Users' side, in the hub's order of preference: TLS 1.3, and for TLS 1.2
 * only ECDHE (forward secrecy) with an AEAD cipher. No CBC suite (LUCKY13 and
 * its kin), no static RSA; the hub's key is ECDSA P-256. */
#define USER_CIPHERS                                                                               \
    "TLS13-AES128-GCM-SHA256:TLS13-AES256-GCM-SHA384:TLS13-CHACHA20-POLY1305-SHA256:"              \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305"

int tls_ctx_user_server(const struct crypto_identity *id, WOLFSSL_CTX **out)
{
    int rc = ctx_common(wolfSSLv23_server_method(), id, out);
    if (rc != 0)
        return rc;
    if (wolfSSL_CTX_set_cipher_list(*out, USER_CIPHERS) != WOLFSSL_SUCCESS) {
        wolfSSL_CTX_free(*out);
        *out = NULL;
        return -EIO;
    }
    wolfSSL_CTX_SetMinVersion(*out, WOLFSSL_TLSV1_2);
    wolfSSL_CTX_set_verify(*out, WOLFSSL_VERIFY_NONE, NULL);
    return 0;
}

int tls_ctx_client(const struct crypto_identity *id, WOLFSSL_CTX **out)
{
    int rc = ctx_common(wolfTLSv1_3_client_method(), id, out);
    if (rc != 0)
        return rc;
    wolfSSL_CTX_set_verify(*out, WOLFSSL_VERIFY_PEER, verify_cb);
    wolfSSL_CTX_set_session_cache_mode(*out, WOLFSSL_SESS_CACHE_OFF);
    return 0;
}

void tls_attach_verifier(WOLFSSL *ssl, struct tls_pin_verifier *v)
{
    /* The context installed verify_cb; it finds v through this pointer. */
    v->seen_pin[0] = '\0';
    v->result = -EPROTO;
    wolfSSL_SetCertCbCtx(ssl, v);
}

/* ---- https:// services ---- */

static enum tls_svc_fail svc_fail_of(int err)
{
    switch (err) {
    case ASN_AFTER_DATE_E:
        return TLS_SVC_EXPIRED;
    case ASN_BEFORE_DATE_E:
        return TLS_SVC_NOT_YET_VALID;
    case ASN_NO_SIGNER_E:
    case ASN_SELF_SIGNED_E:
        return TLS_SVC_UNKNOWN_CA;
    case DOMAIN_NAME_MISMATCH:
    case IPADDR_MISMATCH:
        return TLS_SVC_NAME_MISMATCH;
    case ASN_SIG_CONFIRM_E:
        return TLS_SVC_BAD_SIGNATURE;
    default:
        return TLS_SVC_OTHER;
    }
}

static int svc_refuse(struct tls_svc_check *chk, enum tls_svc_fail f, int err)
{
    /* The first reason found is the one reported. */
    if (chk->fail == TLS_SVC_OK) {
        chk->fail = f;
        chk->wolf_err = err;
    }
    return 0;
}

/* wolfSSL (built with WOLFSSL_ALWAYS_VERIFY_CB) calls this for the leaf
 * always and for other certificates when they fail; 1 accepts. */
static int svc_verify_cb(int preverify, WOLFSSL_X509_STORE_CTX *store)
{
    struct tls_svc_check *chk = store->userCtx;
    const uint8_t *der;
    size_t der_len;

    if (chk == NULL)
        return 0;
    if (chk->insecure)
        return 1;
    if (chk->n_pins > 0) {
        /* The leaf's key alone decides: chain problems do not matter. */
        if (store->error_depth != 0)
            return 1;
        if (store->certs == NULL || store->totalCerts < 1)
            return svc_refuse(chk, TLS_SVC_NO_CERT, 0);
        der = store->certs[0].buffer;
        der_len = (size_t)store->certs[0].length;
        if (crypto_pin_from_cert(der, der_len, chk->seen_pin) != 0)
            return svc_refuse(chk, TLS_SVC_OTHER, 0);
        for (size_t i = 0; i < chk->n_pins; i++)
            if (crypto_pin_equal(chk->seen_pin, chk->pins[i]))
                return 1;
        return svc_refuse(chk, TLS_SVC_PIN_MISMATCH, 0);
    }
    if (!preverify)
        return svc_refuse(chk, svc_fail_of(store->error), store->error);
    if (store->error_depth == 0 && chk->ip_len > 0) {
        /* This wolfSSL does not decode IP SANs: match them here. */
        if (store->certs == NULL || store->totalCerts < 1)
            return svc_refuse(chk, TLS_SVC_NO_CERT, 0);
        if (!crypto_cert_has_ip(store->certs[0].buffer, (size_t)store->certs[0].length, chk->ip,
                                chk->ip_len))
            return svc_refuse(chk, TLS_SVC_NAME_MISMATCH, IPADDR_MISMATCH);
    }
    return 1;
}

/* Trust and client certificate of a service's context; 0 or -EINVAL with err. */
static int svc_ctx_setup(WOLFSSL_CTX *ctx, const struct tls_svc_conf *conf, char *err,
                         size_t err_cap)
{
    const char *ca;
    int r;

    wolfSSL_CTX_SetMinVersion(ctx, WOLFSSL_TLSV1_2);
    if (!conf->insecure && conf->n_pins == 0) {
        /* A CA file given replaces the system's: a private CA for an
         * internal service should not also let every public CA vouch for it. */
        ca = conf->ca_file[0] ? conf->ca_file : TLS_SVC_SYSTEM_CA;
        if (conf->ca_file[0])
            r = wolfSSL_CTX_load_verify_locations(ctx, ca, NULL);
        else /* a system bundle may hold a certificate wolfSSL cannot read */
            r = wolfSSL_CTX_load_verify_locations_ex(ctx, ca, NULL, WOLFSSL_LOAD_FLAG_IGNORE_ERR);
        if (r != WOLFSSL_SUCCESS) {
            snprintf(err, err_cap, "cannot load CA certificates from %s", ca);
            return -EINVAL;
        }
    }
    wolfSSL_CTX_set_verify(ctx, conf->insecure ? WOLFSSL_VERIFY_NONE : WOLFSSL_VERIFY_PEER,
                           svc_verify_cb);
    if (!conf->cert_file[0] && !conf->key_file[0])
        return 0;
    if (!conf->cert_file[0] || !conf->key_file[0]) {
        snprintf(err, err_cap, "a client certificate needs both cert and key");
        return -EINVAL;
    }
    if (wolfSSL_CTX_use_certificate_chain_file(ctx, conf->cert_file) != WOLFSSL_SUCCESS) {
        snprintf(err, err_cap, "cannot load the client certificate %s", conf->cert_file);
        return -EINVAL;
    }
    if (wolfSSL_CTX_use_PrivateKey_file(ctx, conf->key_file, WOLFSSL_FILETYPE_PEM) !=
        WOLFSSL_SUCCESS) {
        snprintf(err, err_cap, "cannot load the client key %s", conf->key_file);
        return -EINVAL;
    }
    return 0;
}

int tls_ctx_service(const struct tls_svc_conf *conf, WOLFSSL_CTX **out, char *err, size_t err_cap)
{
    WOLFSSL_CTX *ctx = NULL;
    int rc = ctx_common(wolfSSLv23_client_method(), NULL, &ctx);

    if (rc != 0) {
        snprintf(err, err_cap, "cannot set up TLS");
        return rc;
    }
    rc = svc_ctx_setup(ctx, conf, err, err_cap);
    if (rc != 0) {
        wolfSSL_CTX_free(ctx);
        return rc;
    }
    *out = ctx;
    return 0;
}

const char *tls_svc_fail_str(enum tls_svc_fail f)
{
    switch (f) {
    case TLS_SVC_OK:
        return "ok";
    case TLS_SVC_EXPIRED:
        return "certificate expired";
    case TLS_SVC_NOT_YET_VALID:
        return "certificate not yet valid";
    case TLS_SVC_UNKNOWN_CA:
        return "certificate signed by an unknown CA";
    case TLS_SVC_NAME_MISMATCH:
        return "certificate name mismatch";
    case TLS_SVC_PIN_MISMATCH:
        return "certificate pin mismatch";
    case TLS_SVC_BAD_SIGNATURE:
        return "certificate signature invalid";
    case TLS_SVC_NO_CERT:
        return "no certificate";
    case TLS_SVC_OTHER:
        break;
    }
    return "certificate rejected";
}

int tls_conn_init_service(struct tls_conn *c, WOLFSSL_CTX *ctx, const char *host,
                          const struct tls_svc_conf *conf, struct tls_svc_check *chk)
{
    return tls_conn_init_service_alpn(c, ctx, host, conf, "http/1.1", 0, chk);
}

int tls_conn_init_service_alpn(struct tls_conn *c, WOLFSSL_CTX *ctx, const char *host,
                               const struct tls_svc_conf *conf, const char *alpn, int alpn_required,
                               struct tls_svc_check *chk)
{
    struct in6_addr a6;
    struct in_addr a4;
    int is_ip = 0, rc;

    memset(chk, 0, sizeof(*chk));
    if (conf->name[0] != '\0')
        host = conf->name;
    if (inet_pton(AF_INET, host, &a4) == 1) {
        memcpy(chk->ip, &a4, 4);
        chk->ip_len = 4;
        is_ip = 1;
    } else if (inet_pton(AF_INET6, host, &a6) == 1) {
        memcpy(chk->ip, &a6, 16);
        chk->ip_len = 16;
        is_ip = 1;
    }
    memcpy(chk->pins, conf->pins, sizeof(chk->pins));
    chk->n_pins = conf->n_pins;
    chk->insecure = conf->insecure;
    /* RFC 6066: no IP literals in SNI. */
    rc = tls_conn_init(c, ctx, is_ip ? NULL : host, alpn, alpn_required);
    if (rc != 0)
        return rc;
    if (!is_ip && !chk->insecure && chk->n_pins == 0 &&
        wolfSSL_check_domain_name(c->ssl, host) != WOLFSSL_SUCCESS) {
        tls_conn_free(c);
        return -ENOMEM;
    }
    wolfSSL_SetCertCbCtx(c->ssl, chk);
    return 0;
}

const char *tls_peer_alert(struct tls_conn *c)
{
    WOLFSSL_ALERT_HISTORY h;

    if (c->ssl == NULL || wolfSSL_get_alert_history(c->ssl, &h) != WOLFSSL_SUCCESS)
        return NULL;
    switch (h.last_rx.code) {
    case 40:
        return "handshake failure";
    case 42:
        return "bad certificate";
    case 45:
        return "certificate expired";
    case 46:
        return "certificate unknown";
    case 48:
        return "unknown CA";
    case 70:
        return "protocol version";
    case 80:
        return "internal error";
    case 112:
        return "unrecognized name";
    case 116:
        return "certificate required";
    default:
        return h.last_rx.code > 0 ? "alert" : NULL;
    }
}

int tls_conn_init(struct tls_conn *c, WOLFSSL_CTX *ctx, const char *sni, const char *alpn,
                  int alpn_required)
{
    int rc = -EIO;

    memset(c, 0, sizeof(*c));
    buf_init(&c->in);
    buf_init(&c->out);
    buf_init(&c->pending);
    c->out_cap = TLS_OUT_CAP_DEFAULT;
    c->ssl = wolfSSL_new(ctx);
    if (c->ssl == NULL)
        goto out;
    wolfSSL_SetIOReadCtx(c->ssl, c);
    wolfSSL_SetIOWriteCtx(c->ssl, c);
    if (sni != NULL && sni[0] != '\0' &&
        wolfSSL_UseSNI(c->ssl, WOLFSSL_SNI_HOST_NAME, sni, (unsigned short)strlen(sni)) !=
            WOLFSSL_SUCCESS)
        goto out;
    if (alpn != NULL) {
        char list[128];
        size_t n = strlen(alpn);
        if (n >= sizeof(list)) {
            rc = -EINVAL;
            goto out;
        }
        /* wolfSSL_UseALPN may write into the list it is given. */
        memcpy(list, alpn, n + 1);
        if (wolfSSL_UseALPN(c->ssl, list, (unsigned)n,
                            alpn_required ? WOLFSSL_ALPN_FAILED_ON_MISMATCH
                                          : WOLFSSL_ALPN_CONTINUE_ON_MISMATCH) != WOLFSSL_SUCCESS)
            goto out;
    }
    rc = 0;
out:
    if (rc != 0)
        tls_conn_free(c);
    return rc;
}

void tls_conn_free(struct tls_conn *c)
{
    if (c->ssl != NULL)
        wolfSSL_free(c->ssl);
    c->ssl = NULL;
    buf_free(&c->in);
    buf_free(&c->out);
    buf_free(&c->pending);
}

int tls_feed(struct tls_conn *c, const uint8_t *data, size_t len)
{
    return buf_append(&c->in, data, len);
}

void tls_lend(struct tls_conn *c, const uint8_t *data, size_t len)
{
    c->lent = data;
    c->lent_len = len;
}

int tls_unlend(struct tls_conn *c)
{
    int rc = 0;
    if (c->lent_len > 0)
        rc = buf_append(&c->in, c->lent, c->lent_len);
    c->lent = NULL;
    c->lent_len = 0;
    return rc;
}

static int map_error(struct tls_conn *c, int ret)
{
    int err = wolfSSL_get_error(c->ssl, ret);

    if (err == WOLFSSL_ERROR_WANT_READ || err == WOLFSSL_ERROR_WANT_WRITE)
        return TLS_AGAIN;
    if (err == WOLFSSL_ERROR_ZERO_RETURN)
        return TLS_EOF;
    c->last_error = err;
    c->fatal = 1;
    return -EPROTO;
}

int tls_handshake(struct tls_conn *c)
{
    int ret;

    if (c->handshake_done)
        return 0;
    if (c->fatal)
        return -EPROTO;
    ret = wolfSSL_negotiate(c->ssl);
    if (ret == WOLFSSL_SUCCESS) {
        c->handshake_done = 1;
        return 0;
    }
    return map_error(c, ret);
}

int tls_read(struct tls_conn *c, uint8_t *dst, size_t cap, size_t *n)
{
    int ret;

    *n = 0;
    if (c->fatal)
        return -EPROTO;
    if (cap > 0x7fffffff)
        cap = 0x7fffffff;
    ret = wolfSSL_read(c->ssl, dst, (int)cap);
    if (ret > 0) {
        *n = (size_t)ret;
        return 0;
    }
    return map_error(c, ret);
}

int tls_flush_pending(struct tls_conn *c)
{
    int ret;

    if (c->pending.len == 0)
        return 0;
    if (c->fatal)
        return -EPROTO;
    /* After WANT_WRITE wolfSSL must be called again with the same bytes; it
     * remembers how far it got. Appending to `pending` keeps that prefix. */
    while (c->pending.len > 0) {
        size_t chunk = c->pending.len > (1u << 30) ? (1u << 30) : c->pending.len;
        ret = wolfSSL_write(c->ssl, buf_head(&c->pending), (int)chunk);
        if (ret <= 0)
            return map_error(c, ret);
        buf_consume(&c->pending, (size_t)ret);
    }
    buf_shrink(&c->pending, 1u << 16);
    return 0;
}

int tls_write(struct tls_conn *c, const uint8_t *data, size_t len)
{
    int ret, rc;

    if (c->fatal)
        return -EPROTO;
    if (len == 0)
        return 0;
    if (c->pending.len == 0) {
        /* Common case: encrypt straight from the caller's bytes. */
        while (len > 0) {
            size_t chunk = len > (1u << 30) ? (1u << 30) : len;
            ret = wolfSSL_write(c->ssl, data, (int)chunk);
            if (ret <= 0) {
                rc = map_error(c, ret);
                if (rc != TLS_AGAIN)
                    return rc;
                /* wolfSSL wants this same buffer again later: keep it. */
                return buf_append(&c->pending, data, len);
            }
            data += ret;
            len -= (size_t)ret;
        }
        return 0;
    }
    rc = buf_append(&c->pending, data, len);
    if (rc != 0)
        return rc;
    rc = tls_flush_pending(c);
    return rc == TLS_AGAIN ? 0 : rc;
}

void tls_shutdown(struct tls_conn *c)
{
    if (c->ssl != NULL && !c->fatal)
        wolfSSL_shutdown(c->ssl);
}

void tls_alpn(struct tls_conn *c, char *dst, size_t cap)
{
    char *name = NULL;
    unsigned short sz = 0;

    dst[0] = '\0';
    if (wolfSSL_ALPN_GetProtocol(c->ssl, &name, &sz) == WOLFSSL_SUCCESS && name != NULL &&
        sz < cap) {
        memcpy(dst, name, sz);
        dst[sz] = '\0';
    }
}

const char *tls_error_string(struct tls_conn *c)
{
    static char msg[WOLFSSL_MAX_ERROR_SZ];
    return wolfSSL_ERR_error_string((unsigned long)c->last_error, msg);
}
