/* Crypto helpers over wolfCrypt: randomness, SHA-256, base64, pins, keys, certificates. */
/* SPDX-License-Identifier: MIT */
#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/settings.h>
#include <wolfssl/wolfcrypt/aes.h>
#include <wolfssl/wolfcrypt/asn_public.h>
#include <wolfssl/wolfcrypt/ecc.h>
#include <wolfssl/wolfcrypt/random.h>
#include <wolfssl/wolfcrypt/hash.h>
#include <wolfssl/wolfcrypt/sha.h>
#include <wolfssl/wolfcrypt/sha256.h>

#include "crypto.h"
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define ECC_KEY_DER_MAX 256
#define CERT_DER_MAX    (4096 + CTC_MAX_ALT_SIZE)
#define PEM_FILE_MAX    (64 * 1024)
#define NAME_MAX_LEN    253

/* Wipes and frees a buffer that held key material (NULL is fine). */
static void free_secret(void *p, size_t len)
{
    if (p == NULL)
        return;
    explicit_bzero(p, len);
    free(p);
}

int crypto_random(void *buf, size_t len)
{
    WC_RNG rng;
    uint8_t *p = buf;
    int rc = -EIO;

    if (buf == NULL && len > 0)
        return -EINVAL;
    if (wc_InitRng(&rng) != 0)
        return -EIO;
    while (len > 0) {
        /* wolfCrypt caps one request at RNG_MAX_BLOCK_LEN bytes. */
        word32 chunk = len > 0x8000 ? 0x8000 : (word32)len;
        if (wc_RNG_GenerateBlock(&rng, p, chunk) != 0)
            goto out;
        p += chunk;
        len -= chunk;
    }
    rc = 0;
out:
    wc_FreeRng(&rng);
    return rc;
}

int crypto_ws_accept(const char *key, size_t key_len, char out[CRYPTO_WS_ACCEPT_LEN + 1])
{
    static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    char in[64 + sizeof(guid)];
    uint8_t d[WC_SHA_DIGEST_SIZE];
    size_t n;

    if (key_len > 64)
        return -EINVAL;
    memcpy(in, key, key_len);
    memcpy(in + key_len, guid, sizeof(guid) - 1);
    /* SHA-1 only because RFC 6455 says so: a handshake check, not security. */
    if (wc_ShaHash((const byte *)in, (word32)(key_len + sizeof(guid) - 1), d) != 0)
        return -EIO;
    return crypto_b64_encode(d, sizeof(d), 0, out, CRYPTO_WS_ACCEPT_LEN + 1, &n);
}

int crypto_sha256(const void *data, size_t len, uint8_t out[32])
{
    wc_Sha256 sha;
    const uint8_t *p = data;
    int rc = -EIO;

    if ((data == NULL && len > 0) || out == NULL)
        return -EINVAL;
    if (wc_InitSha256(&sha) != 0)
        return -EIO;
    while (len > 0) {
        word32 chunk = len > UINT32_MAX / 2 ? UINT32_MAX / 2 : (word32)len;
        if (wc_Sha256Update(&sha, p, chunk) != 0)
            goto out;
        p += chunk;
        len -= chunk;
    }
    if (wc_Sha256Final(&sha, out) != 0)
        goto out;
    rc = 0;
out:
    wc_Sha256Free(&sha);
    return rc;
}

static const char b64_std[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char b64_url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

int crypto_b64_encode(const uint8_t *in, size_t len, int url, char *out, size_t cap,
                      size_t *out_len)
{
    const char *alpha = url ? b64_url : b64_std;
    size_t full = len / 3, rest = len % 3, need, o = 0;

    if ((in == NULL && len > 0) || out == NULL)
        return -EINVAL;
    if (full > (SIZE_MAX - 8) / 4)
        return -EINVAL;
    need = full * 4 + (rest == 0 ? 0 : (url ? rest + 1 : 4));
    if (cap < need + 1)
        return -ENOSPC;
    for (size_t i = 0; i < full; i++) {
        uint32_t v = (uint32_t)in[3 * i] << 16 | (uint32_t)in[3 * i + 1] << 8 | in[3 * i + 2];
        out[o++] = alpha[v >> 18 & 63];
        out[o++] = alpha[v >> 12 & 63];
        out[o++] = alpha[v >> 6 & 63];
        out[o++] = alpha[v & 63];
    }
    if (rest > 0) {
        uint32_t v = (uint32_t)in[3 * full] << 16;
        if (rest == 2)
            v |= (uint32_t)in[3 * full + 1] << 8;
        out[o++] = alpha[v >> 18 & 63];
        out[o++] = alpha[v >> 12 & 63];
        if (rest == 2)
            out[o++] = alpha[v >> 6 & 63];
        if (!url) {
            if (rest == 1)
                out[o++] = '=';
            out[o++] = '=';
        }
    }
    out[o] = '\0';
    if (out_len != NULL)
        *out_len = o;
    return 0;
}

static int b64_value(char c, int url)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == (url ? '-' : '+'))
        return 62;
    if (c == (url ? '_' : '/'))
        return 63;
    return -1;
}

int crypto_b64_decode(const char *in, size_t len, int url, uint8_t *out, size_t cap,
                      size_t *out_len)
{
    size_t pad = 0, data_len, need, o = 0;
    uint32_t acc = 0;
    int bits = 0;

    if ((in == NULL && len > 0) || (out == NULL && cap > 0))
        return -EINVAL;
    if (len > 0 && in[len - 1] == '=')
        pad++;
    if (len > 1 && in[len - 2] == '=')
        pad++;
    if (!url || pad > 0) {
        /* Padding, where present, must make whole quanta. */
        if (len % 4 != 0)
            return -EINVAL;
    }
    data_len = len - pad;
    if (data_len % 4 == 1)
        return -EINVAL;
    need = data_len / 4 * 3 + (data_len % 4 == 0 ? 0 : data_len % 4 - 1);
    if (pad > 0 && (data_len % 4) + pad != 4)
        return -EINVAL;
    if (need > cap)
        return -ENOSPC;
    for (size_t i = 0; i < data_len; i++) {
        int v = b64_value(in[i], url);
        if (v < 0)
            return -EINVAL;
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (uint8_t)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    /* Leftover bits must be zero so that each byte string has one encoding:
     * pins and secrets are compared as text. */
    if (acc != 0)
        return -EINVAL;
    if (out_len != NULL)
        *out_len = o;
    return 0;
}

int crypto_hex(const uint8_t *in, size_t len, char *out, size_t cap)
{
    static const char digits[] = "0123456789abcdef";

    if ((in == NULL && len > 0) || out == NULL)
        return -EINVAL;
    if (len > (SIZE_MAX - 1) / 2 || cap < 2 * len + 1)
        return -ENOSPC;
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * len] = '\0';
    return 0;
}

/* Reads one DER TLV from *p (*n bytes left): strict DER lengths, low tag
 * numbers only. On success *val and *vlen hold the contents, *tlv_len the whole
 * element, and *p and *n move past it. */
static int der_next(const uint8_t **p, size_t *n, uint8_t *tag, const uint8_t **val, size_t *vlen,
                    size_t *tlv_len)
{
    const uint8_t *s = *p;
    size_t left = *n, hdr, l;

    if (left < 2)
        return -EINVAL;
    if ((s[0] & 0x1f) == 0x1f)
        return -EINVAL;
    if (s[1] < 0x80) {
        l = s[1];
        hdr = 2;
    } else {
        size_t k = s[1] & 0x7f;
        if (k == 0 || k > 3 || left < 2 + k)
            return -EINVAL;
        if (s[2] == 0)
            return -EINVAL;
        l = 0;
        for (size_t i = 0; i < k; i++)
            l = l << 8 | s[2 + i];
        if (l < 0x80)
            return -EINVAL;
        hdr = 2 + k;
    }
    if (l > left - hdr)
        return -EINVAL;
    *tag = s[0];
    *val = s + hdr;
    *vlen = l;
    *tlv_len = hdr + l;
    *p = s + hdr + l;
    *n = left - hdr - l;
    return 0;
}

/* Reads one TLV and requires its tag. */
static int der_expect(const uint8_t **p, size_t *n, uint8_t want, const uint8_t **val, size_t *vlen,
                      size_t *tlv_len)
{
    uint8_t tag;
    int rc = der_next(p, n, &tag, val, vlen, tlv_len);

    if (rc != 0)
        return rc;
    return tag == want ? 0 : -EINVAL;
}

int crypto_spki_from_cert(const uint8_t *der, size_t len, const uint8_t **spki, size_t *spki_len)
{
    const uint8_t *p = der, *cert, *tbs, *v, *spki_start, *q;
    size_t n = len, cert_n, tbs_n, vn, tl, spki_tl, qn;

    if (der == NULL || spki == NULL || spki_len == NULL)
        return -EINVAL;
    /* Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signature } */
    if (der_expect(&p, &n, 0x30, &cert, &cert_n, &tl) != 0 || n != 0)
        return -EINVAL;
    p = cert;
    n = cert_n;
    if (der_expect(&p, &n, 0x30, &tbs, &tbs_n, &tl) != 0)
        return -EINVAL;
    if (der_expect(&p, &n, 0x30, &v, &vn, &tl) != 0)
        return -EINVAL;
    if (der_expect(&p, &n, 0x03, &v, &vn, &tl) != 0 || n != 0)
        return -EINVAL;

    p = tbs;
    n = tbs_n;
    if (n > 0 && p[0] == 0xa0) {
        /* [0] EXPLICIT version */
        if (der_expect(&p, &n, 0xa0, &v, &vn, &tl) != 0)
            return -EINVAL;
    }
    if (der_expect(&p, &n, 0x02, &v, &vn, &tl) != 0)
        return -EINVAL; /* serialNumber */
    for (int i = 0; i < 4; i++) {
        /* signature, issuer, validity, subject */
        if (der_expect(&p, &n, 0x30, &v, &vn, &tl) != 0)
            return -EINVAL;
    }
    spki_start = p;
    if (der_expect(&p, &n, 0x30, &v, &vn, &spki_tl) != 0)
        return -EINVAL;
    /* SubjectPublicKeyInfo ::= SEQUENCE { algorithm, subjectPublicKey BIT STRING } */
    q = v;
    qn = vn;
    if (der_expect(&q, &qn, 0x30, &v, &vn, &tl) != 0)
        return -EINVAL;
    if (der_expect(&q, &qn, 0x03, &v, &vn, &tl) != 0 || qn != 0 || vn < 1)
        return -EINVAL;
    *spki = spki_start;
    *spki_len = spki_tl;
    return 0;
}

/* Inside a subjectAltName's GeneralNames: an iPAddress ([7], primitive) equal to ip. */
static int general_names_have_ip(const uint8_t *p, size_t n, const uint8_t *ip, size_t ip_len)
{
    const uint8_t *v;
    size_t vn, tl;
    uint8_t tag;

    if (der_expect(&p, &n, 0x30, &v, &vn, &tl) != 0 || n != 0)
        return 0;
    p = v;
    n = vn;
    while (n > 0) {
        if (der_next(&p, &n, &tag, &v, &vn, &tl) != 0)
            return 0;
        if (tag == 0x87 && vn == ip_len && memcmp(v, ip, ip_len) == 0)
            return 1;
    }
    return 0;
}

int crypto_cert_has_ip(const uint8_t *der, size_t len, const uint8_t *ip, size_t ip_len)
{
    static const uint8_t san_oid[] = {0x55, 0x1d, 0x11}; /* 2.5.29.17 */
    const uint8_t *p = der, *v, *spki, *ext, *e;
    size_t n = len, vn, tl, spki_len, en;
    uint8_t tag;

    if (der == NULL || ip == NULL || (ip_len != 4 && ip_len != 16))
        return 0;
    if (crypto_spki_from_cert(der, len, &spki, &spki_len) != 0)
        return 0;
    /* The tbsCertificate's end bounds the walk that follows the SPKI. */
    if (der_expect(&p, &n, 0x30, &v, &vn, &tl) != 0)
        return 0;
    p = v;
    n = vn;
    if (der_expect(&p, &n, 0x30, &v, &vn, &tl) != 0)
        return 0;
    p = spki + spki_len;
    n = (size_t)(v + vn - p);
    while (n > 0) {
        /* [1] issuerUniqueID, [2] subjectUniqueID, [3] extensions */
        if (der_next(&p, &n, &tag, &v, &vn, &tl) != 0)
            return 0;
        if (tag != 0xa3)
            continue;
        if (der_expect(&v, &vn, 0x30, &ext, &en, &tl) != 0)
            return 0;
        while (en > 0) {
            const uint8_t *oid, *val;
            size_t on, valn;

            /* Extension ::= SEQUENCE { extnID, critical BOOLEAN DEFAULT FALSE, extnValue } */
            if (der_expect(&ext, &en, 0x30, &e, &vn, &tl) != 0)
                return 0;
            if (der_expect(&e, &vn, 0x06, &oid, &on, &tl) != 0)
                return 0;
            if (on != sizeof(san_oid) || memcmp(oid, san_oid, on) != 0)
                continue;
            if (vn > 0 && e[0] == 0x01 && der_expect(&e, &vn, 0x01, &val, &valn, &tl) != 0)
                return 0;
            if (der_expect(&e, &vn, 0x04, &val, &valn, &tl) != 0)
                return 0;
            return general_names_have_ip(val, valn, ip, ip_len);
        }
    }
    return 0;
}

int crypto_pin_from_cert(const uint8_t *der, size_t len, char out[CRYPTO_PIN_LEN + 1])
{
    const uint8_t *spki;
    size_t spki_len, blen;
    uint8_t hash[32];
    int rc;

    if (out == NULL)
        return -EINVAL;
    rc = crypto_spki_from_cert(der, len, &spki, &spki_len);
    if (rc != 0)
        return rc;
    rc = crypto_sha256(spki, spki_len, hash);
    if (rc != 0)
        return rc;
    memcpy(out, CRYPTO_PIN_PREFIX, sizeof(CRYPTO_PIN_PREFIX) - 1);
    return crypto_b64_encode(hash, sizeof(hash), 0, out + sizeof(CRYPTO_PIN_PREFIX) - 1,
                             CRYPTO_PIN_LEN + 1 - (sizeof(CRYPTO_PIN_PREFIX) - 1), &blen);
}

int crypto_pin_valid(const char *pin)
{
    const size_t plen = sizeof(CRYPTO_PIN_PREFIX) - 1;
    uint8_t hash[32];
    size_t n;

    if (pin == NULL)
        return 0;
    if (strnlen(pin, CRYPTO_PIN_LEN + 1) != CRYPTO_PIN_LEN)
        return 0;
    if (memcmp(pin, CRYPTO_PIN_PREFIX, plen) != 0)
        return 0;
    if (crypto_b64_decode(pin + plen, CRYPTO_PIN_LEN - plen, 0, hash, sizeof(hash), &n) != 0)
        return 0;
    return n == sizeof(hash);
}

int crypto_pin_equal(const char *a, const char *b)
{
    size_t la, lb;
    unsigned diff = 0;

    if (a == NULL || b == NULL)
        return 0;
    /* Lengths are public (every pin has the same one); only contents are not. */
    la = strnlen(a, CRYPTO_PIN_LEN + 1);
    lb = strnlen(b, CRYPTO_PIN_LEN + 1);
    if (la != lb || la > CRYPTO_PIN_LEN)
        return 0;
    for (size_t i = 0; i < la; i++)
        diff |= (unsigned)(a[i] ^ b[i]);
    return diff == 0;
}

static size_t der_put_len(uint8_t *out, size_t len)
{
    if (len < 0x80) {
        out[0] = (uint8_t)len;
        return 1;
    }
    if (len < 0x100) {
        out[0] = 0x81;
        out[1] = (uint8_t)len;
        return 2;
    }
    out[0] = 0x82;
    out[1] = (uint8_t)(len >> 8);
    out[2] = (uint8_t)len;
    return 3;
}

/* Builds the GeneralNames SEQUENCE that wolfSSL copies into subjectAltName. */
static int build_alt_names(const char *const *names, size_t n, uint8_t *out, size_t cap,
                           size_t *out_len)
{
    uint8_t *body;
    size_t blen = 0, hl;
    int rc = -EINVAL;

    body = malloc(cap);
    if (body == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        const char *s = names[i];
        uint8_t ip[16];
        size_t sl, vlen;
        uint8_t tag;
        const uint8_t *val;

        if (s == NULL)
            goto out;
        sl = strnlen(s, NAME_MAX_LEN + 1);
        if (sl == 0 || sl > NAME_MAX_LEN)
            goto out;
        if (inet_pton(AF_INET, s, ip) == 1) {
            tag = 0x87;
            val = ip;
            vlen = 4;
        } else if (inet_pton(AF_INET6, s, ip) == 1) {
            tag = 0x87;
            val = ip;
            vlen = 16;
        } else {
            for (size_t j = 0; j < sl; j++) {
                if (s[j] <= 0x20 || s[j] >= 0x7f)
                    goto out;
            }
            tag = 0x82;
            val = (const uint8_t *)s;
            vlen = sl;
        }
        if (blen + 4 + vlen > cap) {
            rc = -ENOSPC;
            goto out;
        }
        body[blen++] = tag;
        blen += der_put_len(body + blen, vlen);
        memcpy(body + blen, val, vlen);
        blen += vlen;
    }
    if (blen + 4 > cap) {
        rc = -ENOSPC;
        goto out;
    }
    out[0] = 0x30;
    hl = 1 + der_put_len(out + 1, blen);
    memcpy(out + hl, body, blen);
    *out_len = hl + blen;
    rc = 0;
out:
    free(body);
    return rc;
}

/* Writes an X.509 Time (UTCTime through 2049, GeneralizedTime after) as a
 * full TLV, the form wolfSSL copies into the validity field. */
static int put_time(time_t t, uint8_t *out, size_t cap, int *out_len)
{
    struct tm tm;
    char buf[32];
    int n;

    if (gmtime_r(&t, &tm) == NULL)
        return -EINVAL;
    if (tm.tm_year + 1900 >= 1950 && tm.tm_year + 1900 < 2050) {
        n = snprintf(buf, sizeof(buf), "%02d%02d%02d%02d%02d%02dZ", tm.tm_year % 100, tm.tm_mon + 1,
                     tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
        out[0] = 0x17;
    } else {
        n = snprintf(buf, sizeof(buf), "%04d%02d%02d%02d%02d%02dZ", tm.tm_year + 1900,
                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
        out[0] = 0x18;
    }
    if (n < 0 || (size_t)n + 2 > cap)
        return -ENOSPC;
    out[1] = (uint8_t)n;
    memcpy(out + 2, buf, (size_t)n);
    *out_len = n + 2;
    return 0;
}

/* An RNG and a P-256 key using it, as making, checking and signing with a
 * key need them. */
struct eckey {
    WC_RNG rng;
    ecc_key key;
    int rng_ok, key_ok;
};

/* 0 or -EIO; eckey_free() goes with it either way. */
static int eckey_init(struct eckey *k)
{
    if (wc_InitRng(&k->rng) != 0)
        return -EIO;
    k->rng_ok = 1;
    if (wc_ecc_init(&k->key) != 0)
        return -EIO;
    k->key_ok = 1;
    return 0;
}

/* Moves the two DER buffers into out (which then owns them). */
static void identity_take(struct crypto_identity *out, uint8_t **key_der, uint8_t **cert_der)
{
    out->key_der = *key_der;
    out->cert_der = *cert_der;
    *key_der = NULL;
    *cert_der = NULL;
}

static void eckey_free(struct eckey *k)
{
    if (k->key_ok)
        wc_ecc_free(&k->key);
    if (k->rng_ok)
        wc_FreeRng(&k->rng);
}

int crypto_identity_generate(const char *common_name, const char *const *dns_names, size_t n_names,
                             struct crypto_identity *out)
{
    struct eckey k = {.rng_ok = 0};
    Cert *cert = NULL;
    uint8_t *key_der = NULL, *cert_der = NULL;
    int rc = -EIO, ret;
    size_t cn_len, alt_len = 0;
    time_t now = time(NULL);
    struct tm tm_after;
    time_t after;

    if (out == NULL)
        return -EINVAL;
    memset(out, 0, sizeof(*out));
    if (common_name == NULL || (dns_names == NULL && n_names > 0))
        return -EINVAL;
    cn_len = strnlen(common_name, CTC_NAME_SIZE);
    if (cn_len == 0 || cn_len >= CTC_NAME_SIZE)
        return -EINVAL;

    cert = calloc(1, sizeof(*cert));
    key_der = malloc(ECC_KEY_DER_MAX);
    cert_der = malloc(CERT_DER_MAX);
    if (cert == NULL || key_der == NULL || cert_der == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    if (eckey_init(&k) != 0)
        goto out;
    if (wc_ecc_make_key_ex(&k.rng, 32, &k.key, ECC_SECP256R1) != 0)
        goto out;
    ret = wc_EccKeyToDer(&k.key, key_der, ECC_KEY_DER_MAX);
    if (ret <= 0)
        goto out;
    out->key_len = (size_t)ret;

    if (wc_InitCert(cert) != 0)
        goto out;
    cert->sigType = CTC_SHA256wECDSA;
    cert->selfSigned = 1;
    cert->isCA = 0;
    memcpy(cert->subject.commonName, common_name, cn_len + 1);
    cert->subject.commonNameEnc = CTC_UTF8;
    if (n_names > 0) {
        rc = build_alt_names(dns_names, n_names, cert->altNames, sizeof(cert->altNames), &alt_len);
        if (rc != 0)
            goto out;
        rc = -EIO;
        cert->altNamesSz = (int)alt_len;
    }
    /* notBefore a day back tolerates peers whose clocks lag ours. */
    if (put_time(now - 86400, cert->beforeDate, sizeof(cert->beforeDate), &cert->beforeDateSz) != 0)
        goto out;
    if (gmtime_r(&now, &tm_after) == NULL)
        goto out;
    tm_after.tm_year += 20;
    after = timegm(&tm_after);
    if (after == (time_t)-1 ||
        put_time(after, cert->afterDate, sizeof(cert->afterDate), &cert->afterDateSz) != 0)
        goto out;
    cert->daysValid = 20 * 366;
    if (crypto_random(cert->serial, 16) != 0)
        goto out;
    /* A positive INTEGER with no leading zero byte. */
    cert->serial[0] = (uint8_t)((cert->serial[0] & 0x7f) | 0x40);
    cert->serialSz = 16;
    if (wc_SetSubjectKeyIdFromPublicKey_ex(cert, ECC_TYPE, &k.key) != 0)
        goto out;
    if (wc_SetAuthKeyIdFromPublicKey_ex(cert, ECC_TYPE, &k.key) != 0)
        goto out;

    ret = wc_MakeCert_ex(cert, cert_der, CERT_DER_MAX, ECC_TYPE, &k.key, &k.rng);
    if (ret <= 0)
        goto out;
    ret = wc_SignCert_ex(cert->bodySz, cert->sigType, cert_der, CERT_DER_MAX, ECC_TYPE, &k.key,
                         &k.rng);
    if (ret <= 0)
        goto out;
    out->cert_len = (size_t)ret;
    rc = crypto_pin_from_cert(cert_der, out->cert_len, out->pin);
    if (rc != 0)
        goto out;
    identity_take(out, &key_der, &cert_der);
    rc = 0;
out:
    eckey_free(&k);
    free_secret(key_der, ECC_KEY_DER_MAX);
    free(cert_der);
    free(cert);
    if (rc != 0)
        memset(out, 0, sizeof(*out));
    return rc;
}

static int identity_path(char *buf, size_t cap, const char *dir, const char *base, const char *ext)
{
    int n;

    if (dir == NULL || base == NULL || base[0] == '\0' || strchr(base, '/') != NULL)
        return -EINVAL;
    n = snprintf(buf, cap, "%s/%s.%s", dir, base, ext);
    if (n < 0 || (size_t)n >= cap)
        return -ENAMETOOLONG;
    return 0;
}

/* DIR/BASE.key and DIR/BASE.crt, each into a buffer of PATH_MAX bytes. */
static int identity_paths(char *key_path, char *cert_path, const char *dir, const char *base)
{
    int rc = identity_path(key_path, PATH_MAX, dir, base, "key");

    return rc != 0 ? rc : identity_path(cert_path, PATH_MAX, dir, base, "crt");
}

static int der_to_pem(const uint8_t *der, size_t len, int type, uint8_t **pem, size_t *pem_len)
{
    size_t cap = len * 2 + 128;
    uint8_t *buf = malloc(cap);
    int ret;

    if (buf == NULL)
        return -ENOMEM;
    ret = wc_DerToPem(der, (word32)len, buf, (word32)cap, type);
    if (ret <= 0) {
        free(buf);
        return -EIO;
    }
    *pem = buf;
    *pem_len = (size_t)ret;
    return 0;
}

int crypto_identity_save(const struct crypto_identity *id, const char *dir, const char *base)
{
    char key_path[PATH_MAX], cert_path[PATH_MAX];
    uint8_t *key_pem = NULL, *cert_pem = NULL;
    size_t key_pem_len = 0, cert_pem_len = 0;
    int rc;

    if (id == NULL || id->key_der == NULL || id->cert_der == NULL || id->key_len == 0 ||
        id->cert_len == 0)
        return -EINVAL;
    rc = identity_paths(key_path, cert_path, dir, base);
    if (rc != 0)
        return rc;
    rc = der_to_pem(id->key_der, id->key_len, ECC_PRIVATEKEY_TYPE, &key_pem, &key_pem_len);
    if (rc != 0)
        goto out;
    rc = der_to_pem(id->cert_der, id->cert_len, CERT_TYPE, &cert_pem, &cert_pem_len);
    if (rc != 0)
        goto out;
    /* Each file is replaced whole (temporary file + rename): a crash or a
     * full disk never leaves a truncated key behind. */
    rc = config_write_data(key_path, key_pem, key_pem_len, 0600);
    if (rc != 0)
        goto out;
    rc = config_write_data(cert_path, cert_pem, cert_pem_len, 0644);
out:
    free_secret(key_pem, key_pem_len);
    free(cert_pem);
    return rc;
}

/* A PEM file: config_read_data() of at most PEM_FILE_MAX bytes, not empty. */
static int read_pem(const char *path, uint8_t **data, size_t *len)
{
    char *buf = NULL;
    int rc = config_read_data(path, PEM_FILE_MAX, &buf, len);

    if (rc == 0 && *len == 0) {
        free(buf);
        return -EINVAL;
    }
    if (rc == 0)
        *data = (uint8_t *)buf;
    return rc;
}

/* Decodes a SEC1 P-256 private key; fills the public part if it was absent. */
static int load_private_key(const uint8_t *der, size_t len, ecc_key *key, WC_RNG *rng)
{
    word32 idx = 0;

    if (wc_EccPrivateKeyDecode(der, &idx, key, (word32)len) != 0)
        return -EINVAL;
    if (wc_ecc_get_curve_id(key->idx) != ECC_SECP256R1)
        return -EINVAL;
    if (wc_ecc_set_rng(key, rng) != 0)
        return -EIO;
    if (key->type == ECC_PRIVATEKEY_ONLY && wc_ecc_make_pub_ex(key, NULL, rng) != 0)
        return -EINVAL;
    return 0;
}

int crypto_identity_load(const char *dir, const char *base, struct crypto_identity *out)
{
    char key_path[PATH_MAX], cert_path[PATH_MAX];
    uint8_t *key_pem = NULL, *cert_pem = NULL, *key_der = NULL, *cert_der = NULL;
    uint8_t pub[256];
    size_t key_pem_len = 0, cert_pem_len = 0, spki_len;
    const uint8_t *spki;
    struct eckey k = {.rng_ok = 0};
    int ret, rc;

    if (out == NULL)
        return -EINVAL;
    memset(out, 0, sizeof(*out));
    rc = identity_paths(key_path, cert_path, dir, base);
    if (rc != 0)
        return rc;
    rc = read_pem(key_path, &key_pem, &key_pem_len);
    if (rc != 0)
        goto out;
    rc = read_pem(cert_path, &cert_pem, &cert_pem_len);
    if (rc != 0)
        goto out;
    key_der = malloc(key_pem_len);
    cert_der = malloc(cert_pem_len);
    if (key_der == NULL || cert_der == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    rc = -EINVAL;
    ret = wc_KeyPemToDer(key_pem, (int)key_pem_len, key_der, (int)key_pem_len, NULL);
    if (ret <= 0)
        goto out;
    out->key_len = (size_t)ret;
    ret = wc_CertPemToDer(cert_pem, (int)cert_pem_len, cert_der, (int)cert_pem_len, CERT_TYPE);
    if (ret <= 0)
        goto out;
    out->cert_len = (size_t)ret;
    rc = crypto_pin_from_cert(cert_der, out->cert_len, out->pin);
    if (rc != 0)
        goto out;

    /* The key must belong to the certificate, or TLS would fail much later
     * with a less helpful error. */
    rc = eckey_init(&k);
    if (rc != 0)
        goto out;
    rc = load_private_key(key_der, out->key_len, &k.key, &k.rng);
    if (rc != 0)
        goto out;
    rc = -EINVAL;
    ret = wc_EccPublicKeyToDer(&k.key, pub, sizeof(pub), 1);
    if (ret <= 0)
        goto out;
    if (crypto_spki_from_cert(cert_der, out->cert_len, &spki, &spki_len) != 0)
        goto out;
    if (spki_len != (size_t)ret || memcmp(spki, pub, spki_len) != 0)
        goto out;
    identity_take(out, &key_der, &cert_der);
    rc = 0;
out:
    eckey_free(&k);
    free_secret(key_pem, key_pem_len);
    free_secret(key_der, key_pem_len);
    free(cert_pem);
    free(cert_der);
    if (rc != 0)
        memset(out, 0, sizeof(*out));
    return rc;
}

void crypto_identity_free(struct crypto_identity *id)
{
    if (id == NULL)
        return;
    free_secret(id->key_der, id->key_len);
    free(id->cert_der);
    memset(id, 0, sizeof(*id));
}

int crypto_sign(const struct crypto_identity *id, const void *msg, size_t len, uint8_t *sig,
                size_t sig_cap, size_t *sig_len)
{
    uint8_t hash[32];
    struct eckey k = {.rng_ok = 0};
    word32 slen;
    int rc;

    if (id == NULL || id->key_der == NULL || sig == NULL || sig_len == NULL ||
        (msg == NULL && len > 0))
        return -EINVAL;
    if (sig_cap < 80)
        return -ENOSPC;
    rc = crypto_sha256(msg, len, hash);
    if (rc != 0)
        return rc;
    rc = eckey_init(&k);
    if (rc != 0)
        goto out;
    rc = load_private_key(id->key_der, id->key_len, &k.key, &k.rng);
    if (rc != 0)
        goto out;
    rc = -EIO;
    slen = sig_cap > UINT32_MAX ? UINT32_MAX : (word32)sig_cap;
    if (wc_ecc_sign_hash(hash, sizeof(hash), sig, &slen, &k.rng, &k.key) != 0)
        goto out;
    *sig_len = slen;
    rc = 0;
out:
    eckey_free(&k);
    return rc;
}

int crypto_verify(const uint8_t *cert_der, size_t cert_len, const void *msg, size_t len,
                  const uint8_t *sig, size_t sig_len)
{
    const uint8_t *spki;
    size_t spki_len;
    uint8_t hash[32];
    ecc_key key;
    word32 idx = 0;
    int res = 0, rc;

    if (sig == NULL || sig_len == 0 || sig_len > 256 || (msg == NULL && len > 0))
        return -EINVAL;
    rc = crypto_spki_from_cert(cert_der, cert_len, &spki, &spki_len);
    if (rc != 0)
        return rc;
    rc = crypto_sha256(msg, len, hash);
    if (rc != 0)
        return rc;
    if (wc_ecc_init(&key) != 0)
        return -EIO;
    rc = -EINVAL;
    if (wc_EccPublicKeyDecode(spki, &idx, &key, (word32)spki_len) != 0 || idx != spki_len)
        goto out;
    if (wc_ecc_verify_hash(sig, (word32)sig_len, hash, sizeof(hash), &res, &key) != 0) {
        /* A signature that does not even parse is as bad as a wrong one. */
        rc = -EBADMSG;
        goto out;
    }
    rc = res == 1 ? 0 : -EBADMSG;
out:
    wc_ecc_free(&key);
    return rc;
}

double crypto_aesgcm_mbps(int ms)
{
    const size_t bufsz = 64 * 1024;
    uint8_t key[16] = {0}, iv[12] = {0}, tag[16];
    uint8_t *in = NULL, *outb = NULL;
    struct timespec t0, t1;
    double elapsed = 0, result = -1.0;
    uint64_t bytes = 0;
    Aes aes;
    int aes_ok = 0;

    in = calloc(1, bufsz);
    outb = malloc(bufsz);
    if (in == NULL || outb == NULL)
        goto out;
    if (wc_AesInit(&aes, NULL, INVALID_DEVID) != 0)
        goto out;
    aes_ok = 1;
    if (wc_AesGcmSetKey(&aes, key, sizeof(key)) != 0)
        goto out;
    if (ms < 1)
        ms = 1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    do {
        if (wc_AesGcmEncrypt(&aes, outb, in, (word32)bufsz, iv, sizeof(iv), tag, sizeof(tag), NULL,
                             0) != 0)
            goto out;
        iv[0]++;
        bytes += bufsz;
        clock_gettime(CLOCK_MONOTONIC, &t1);
        elapsed = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    } while (elapsed * 1000.0 < ms);
    if (elapsed > 0)
        result = (double)bytes / 1e6 / elapsed;
out:
    if (aes_ok)
        wc_AesFree(&aes);
    free(in);
    free(outb);
    return result;
}

const char *crypto_wolfssl_build(void)
{
#ifdef TETHER_WOLFSSL_BUILD
    return TETHER_WOLFSSL_BUILD;
#else
    return "unknown";
#endif
}
