/* Crypto helpers over wolfCrypt: randomness, SHA-256, base64, SPKI pins, key and certificate
 * making. */
/* SPDX-License-Identifier: MIT */
#ifndef TETHER_CRYPTO_H
#define TETHER_CRYPTO_H

#include <stddef.h>
#include <stdint.h>

/* A pin is "sha256//" followed by the standard base64 (with padding) of the
 * SHA-256 of the DER SubjectPublicKeyInfo: the same string curl's
 * --pinnedpubkey takes, so users can pin the hub with curl directly. */
#define CRYPTO_PIN_PREFIX "sha256//"
#define CRYPTO_PIN_LEN    52 /* 8 + 44 */

/* All functions return 0 on success or a negative errno-style code
 * (-EINVAL bad input, -ENOSPC output too small, -EIO library failure). */

int crypto_random(void *buf, size_t len);
int crypto_sha256(const void *data, size_t len, uint8_t out[32]);
/* RFC 6455 4.2.2: Sec-WebSocket-Accept for the key (as sent, up to 64
 * bytes): base64(SHA-1(key + GUID)), 28 characters and a NUL. */
#define CRYPTO_WS_ACCEPT_LEN 28
int crypto_ws_accept(const char *key, size_t key_len, char out[CRYPTO_WS_ACCEPT_LEN + 1]);

/* Base64. url=1: base64url alphabet, no padding on encode, padding optional on
 * decode. url=0: standard alphabet with padding. *out_len excludes the NUL
 * that encode always writes. Decode rejects any character outside the
 * alphabet. */
int crypto_b64_encode(const uint8_t *in, size_t len, int url, char *out, size_t cap,
                      size_t *out_len);
int crypto_b64_decode(const char *in, size_t len, int url, uint8_t *out, size_t cap,
                      size_t *out_len);
/* Lower-case hex, NUL-terminated; cap must be >= 2*len+1. */
int crypto_hex(const uint8_t *in, size_t len, char *out, size_t cap);

/* Finds the SubjectPublicKeyInfo inside an X.509 certificate with a bounded
 * DER walk (no allocation). *spki points into der. */
int crypto_spki_from_cert(const uint8_t *der, size_t len, const uint8_t **spki, size_t *spki_len);
/* Computes the pin of a DER certificate into out (NUL-terminated). */
int crypto_pin_from_cert(const uint8_t *der, size_t len, char out[CRYPTO_PIN_LEN + 1]);
/* 1 if the certificate's subjectAltName lists the IP address ip (4 or 16
 * bytes), 0 if not or if der is malformed. Bounded DER walk. */
int crypto_cert_has_ip(const uint8_t *der, size_t len, const uint8_t *ip, size_t ip_len);
/* Syntax check of a pin string: prefix, 44 base64 chars decoding to 32
 * bytes. Returns 1 if valid, 0 if not. */
int crypto_pin_valid(const char *pin);
/* Constant-time comparison of two NUL-terminated pins; 1 if equal. */
int crypto_pin_equal(const char *a, const char *b);

/* An identity: a P-256 private key and a self-signed certificate, both DER.
 * The struct owns both buffers; free with crypto_identity_free. */
struct crypto_identity {
    uint8_t *key_der;
    size_t key_len;
    uint8_t *cert_der;
    size_t cert_len;
    char pin[CRYPTO_PIN_LEN + 1];
};

/* Makes a new key and a self-signed certificate valid for 20 years with the
 * given common name; dns_names (may be NULL/0) go into subjectAltName, and an
 * entry that parses as an IPv4/IPv6 address becomes an IP SAN. */
int crypto_identity_generate(const char *common_name, const char *const *dns_names, size_t n_names,
                             struct crypto_identity *out);
/* Writes DIR/BASE.key (PEM, mode 0600) and DIR/BASE.crt (PEM, mode 0644). */
int crypto_identity_save(const struct crypto_identity *id, const char *dir, const char *base);
/* Reads them back (PEM) and fills pin. */
int crypto_identity_load(const char *dir, const char *base, struct crypto_identity *out);
void crypto_identity_free(struct crypto_identity *id);

/* Signs msg with the identity's key (ECDSA P-256 over SHA-256, DER signature)
 * and verifies such a signature against a DER certificate's key. Used for key
 * rotation proofs. sig_cap >= 80 is enough. crypto_verify returns -EBADMSG
 * when the signature does not match. */
int crypto_sign(const struct crypto_identity *id, const void *msg, size_t len, uint8_t *sig,
                size_t sig_cap, size_t *sig_len);
int crypto_verify(const uint8_t *cert_der, size_t cert_len, const void *msg, size_t len,
                  const uint8_t *sig, size_t sig_len);

/* AES-128-GCM encryption speed of the linked wolfSSL in MB/s (1e6 bytes),
 * measured over roughly `ms` milliseconds. */
double crypto_aesgcm_mbps(int ms);
/* "source-aesni 5.7.2" or "system 5.5.4": which wolfSSL is linked. */
const char *crypto_wolfssl_build(void);

#endif
