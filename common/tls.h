/* TLS as a layer over memory buffers: wolfSSL I/O callbacks read what libuv delivered and queue
 * what it must send. */
/* SPDX-License-Identifier: MIT */
#ifndef TETHER_TLS_H
#define TETHER_TLS_H

#include <stddef.h>
#include <stdint.h>

#include <wolfssl/options.h>
#include <wolfssl/ssl.h>

#include "buf.h"
#include "crypto.h"
#include "net.h"

/* Codes returned by tls_* besides 0 and -errno. */
#define TLS_AGAIN (-11)   /* == -EAGAIN: needs more ciphertext in, or out room */
#define TLS_EOF   (-1000) /* peer sent close_notify */

/* Pin checking. The verify callback computes the SPKI pin of the peer's leaf
 * certificate and asks check(); 0 accepts, any other value refuses the
 * handshake with a bad_certificate alert. Owned by the caller and must
 * outlive the WOLFSSL it is attached to. */
struct tls_pin_verifier {
    int (*check)(void *arg, const char *pin);
    void *arg;
    char seen_pin[CRYPTO_PIN_LEN + 1]; /* leaf pin seen in the last handshake, "" if none */
    int result;                        /* check()'s answer, or -EPROTO if no certificate */
};

/* Context builders. The returned WOLFSSL_CTX is owned by the caller
 * (wolfSSL_CTX_free). id, when non-NULL, is copied into the context as its
 * certificate and key.
 * - tunnel server: TLS 1.3 only, asks for and requires a client certificate,
 *   no session tickets, verification through a per-connection pin verifier.
 * - user server: TLS 1.3, or TLS 1.2 with ECDHE and AES-GCM or ChaCha20-Poly1305
 *   only (no CBC); no client certificate.
 * - client: TLS 1.3 only (tunnel, enroll, tetherctl), pins the server, no
 *   resumption. */
int tls_ctx_tunnel_server(const struct crypto_identity *id, WOLFSSL_CTX **out);
int tls_ctx_user_server(const struct crypto_identity *id, WOLFSSL_CTX **out);
int tls_ctx_client(const struct crypto_identity *id, WOLFSSL_CTX **out);
/* Attaches v to ssl (verify callback + its context). */
void tls_attach_verifier(WOLFSSL *ssl, struct tls_pin_verifier *v);

/* Checking an https:// service's certificate (the site agent as its
 * client). Settings by value; the caller owns the struct.
 * - default: the chain must lead to a CA of ca_file (the system bundle,
 *   TLS_SVC_SYSTEM_CA, when ca_file is ""), be in date, and name the host
 *   (DNS name, or IP address for an IP literal);
 * - pins: the leaf's SPKI pin must be one of them, and then alone decides
 *   (CA, name and dates are not looked at: the key is the identity, as with
 *   the hub's pin);
 * - insecure: nothing is checked (never together with ca_file or pins).
 * cert_file and key_file (PEM, both or neither) are the client certificate
 * sent when the service asks for one. name, when set, stands for the URL's
 * host in SNI and in the certificate check (a service reached by address
 * whose certificate carries its name). */
#define TLS_SVC_SYSTEM_CA "/etc/ssl/certs/ca-certificates.crt"
#define TLS_SVC_PATH_MAX  512
#define TLS_SVC_PINS_MAX  4
struct tls_svc_conf {
    char ca_file[TLS_SVC_PATH_MAX];
    char cert_file[TLS_SVC_PATH_MAX];
    char key_file[TLS_SVC_PATH_MAX];
    char pins[TLS_SVC_PINS_MAX][CRYPTO_PIN_LEN + 1];
    size_t n_pins;
    int insecure;
    char name[NET_HOST_MAX + 1]; /* SNI and name checked instead of the URL's host; "" = host */
};

/* Why a service's certificate was refused. */
enum tls_svc_fail {
    TLS_SVC_OK,
    TLS_SVC_EXPIRED,
    TLS_SVC_NOT_YET_VALID,
    TLS_SVC_UNKNOWN_CA,
    TLS_SVC_NAME_MISMATCH,
    TLS_SVC_PIN_MISMATCH,
    TLS_SVC_BAD_SIGNATURE,
    TLS_SVC_NO_CERT,
    TLS_SVC_OTHER,
};

/* Per connection: what the verify callback needs and what it found. Must
 * outlive the handshake of the WOLFSSL it is attached to. */
struct tls_svc_check {
    char pins[TLS_SVC_PINS_MAX][CRYPTO_PIN_LEN + 1];
    size_t n_pins;
    int insecure;
    uint8_t ip[16]; /* host as an IP literal, matched against IP SANs */
    size_t ip_len;  /* 0: host is a DNS name (wolfSSL matches it) */
    enum tls_svc_fail fail;
    int wolf_err;                      /* wolfSSL's code for fail, 0 if none */
    char seen_pin[CRYPTO_PIN_LEN + 1]; /* leaf pin, "" if not computed */
};

/* Client context for services: TLS 1.2 or 1.3, trust and client certificate
 * from conf. Returns 0, or a negative code with a one-line reason in err. */
int tls_ctx_service(const struct tls_svc_conf *conf, WOLFSSL_CTX **out, char *err, size_t err_cap);
/* A short phrase for f ("certificate expired", ...). */
const char *tls_svc_fail_str(enum tls_svc_fail f);

/* One TLS connection over buffers. */
struct tls_conn {
    WOLFSSL *ssl;        /* owned */
    struct buf in;       /* ciphertext received, not yet consumed by wolfSSL */
    struct buf out;      /* ciphertext to send; the caller drains it with buf_* */
    size_t out_cap;      /* send callback answers WANT_WRITE when out.len >= out_cap */
    struct buf pending;  /* plaintext accepted by tls_write while wolfSSL waited */
    const uint8_t *lent; /* bytes lent by tls_lend(), read after `in`; not owned */
    size_t lent_len;
    size_t rec_left; /* bytes left of the TLS record wolfSSL is reading */
    int handshake_done;
    int fatal;      /* a fatal alert or error happened */
    int last_error; /* wolfSSL error code of the last failure, 0 if none */
};

/* Sets up c with a new WOLFSSL from ctx (server or client by the ctx's method).
 * sni (client only, may be NULL). alpn: comma-separated protocol list, may be
 * NULL; for a server this is the list it accepts, and a mismatch fails the
 * handshake when alpn_required. */
int tls_conn_init(struct tls_conn *c, WOLFSSL_CTX *ctx, const char *sni, const char *alpn,
                  int alpn_required);
void tls_conn_free(struct tls_conn *c);
/* tls_conn_init for a service at host (name or IP literal; conf->name
 * replaces it when set) from a tls_ctx_service context: SNI for names only,
 * name or IP check, pins and insecure from conf into chk, attached as the
 * verify context. */
int tls_conn_init_service(struct tls_conn *c, WOLFSSL_CTX *ctx, const char *host,
                          const struct tls_svc_conf *conf, struct tls_svc_check *chk);
/* The same, offering alpn (comma-separated; the handshake fails when the
 * service picks none of them and alpn_required): "h2" for h2:// services. */
int tls_conn_init_service_alpn(struct tls_conn *c, WOLFSSL_CTX *ctx, const char *host,
                               const struct tls_svc_conf *conf, const char *alpn, int alpn_required,
                               struct tls_svc_check *chk);
/* The last alert the peer sent, as a phrase, or NULL if none. */
const char *tls_peer_alert(struct tls_conn *c);
/* Appends received ciphertext. */
int tls_feed(struct tls_conn *c, const uint8_t *data, size_t len);
/* Lends received ciphertext without copying it: valid until tls_unlend(),
 * which copies whatever wolfSSL did not take into `in`. */
void tls_lend(struct tls_conn *c, const uint8_t *data, size_t len);
int tls_unlend(struct tls_conn *c);
/* Advances the handshake: 0 done, TLS_AGAIN, or a negative code (then
 * c->last_error holds wolfSSL's reason). */
int tls_handshake(struct tls_conn *c);
/* Reads plaintext: 0 with *n > 0, TLS_AGAIN, TLS_EOF or a negative code. */
int tls_read(struct tls_conn *c, uint8_t *dst, size_t cap, size_t *n);
/* Encrypts all of data (it is accepted whole: what wolfSSL cannot take now,
 * because out is at out_cap, waits in `pending` until tls_flush_pending()). */
int tls_write(struct tls_conn *c, const uint8_t *data, size_t len);
/* Retries pending plaintext after out was drained: 0 when nothing is pending
 * any more, TLS_AGAIN if some still waits, negative on error. */
int tls_flush_pending(struct tls_conn *c);
/* Queues close_notify. */
void tls_shutdown(struct tls_conn *c);
/* Negotiated ALPN protocol into buf (NUL-terminated), "" if none. */
void tls_alpn(struct tls_conn *c, char *buf, size_t cap);
/* wolfSSL's text for last_error. */
const char *tls_error_string(struct tls_conn *c);

#endif
