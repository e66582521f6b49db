/* The API's key rotation: a site proves it holds its key and the new one, no operator involved. */
/* SPDX-License-Identifier: MIT */
#include "api_int.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "../../common/crypto.h"
#include "../../common/log.h"
#include "../tunnel/tunnel.h"

/* How far a rotation proof's timestamp may be from the hub's clock. */
#define ROTATE_SKEW_S 300
/* Certificates and signatures in a rotation request (DER, base64 text). */
#define ROTATE_CERT_MAX 4096
#define ROTATE_SIG_MAX  256

/* Base64 (standard) text field of at most cap decoded bytes. */
static int b64_field(json_t *body, const char *key, uint8_t *out, size_t cap, size_t *len)
{
    json_t *j = json_object_get(body, key);
    const char *v;
    size_t vl;

    if (!json_is_string(j))
        return -EINVAL;
    v = json_string_value(j);
    vl = json_string_length(j);
    if (vl == 0 || vl > (cap + 2) / 3 * 4)
        return -EINVAL;
    return crypto_b64_decode(v, vl, 0, out, cap, len);
}

/* Key rotation: the site proves it holds the key the hub knows (and the new
 * one), no operator involved. */
void site_rotate(struct areq *q, json_t *body, struct outcome *o)
{
    struct hub *h = q->h;
    uint8_t old_cert[ROTATE_CERT_MAX], new_cert[ROTATE_CERT_MAX];
    uint8_t sig[ROTATE_SIG_MAX], new_sig[ROTATE_SIG_MAX];
    size_t old_len = 0, new_len = 0, sig_len = 0, new_sig_len = 0;
    char old_pin[CRYPTO_PIN_LEN + 1], new_pin[CRYPTO_PIN_LEN + 1], msg[256];
    json_t *jts = json_object_get(body, "ts");
    struct reg_site s;
    int64_t now = hub_now(), ts;
    int n, rc;

    memset(&s, 0, sizeof(s));
    snprintf(o->actor, sizeof(o->actor), "site:%s", q->name);
    if (b64_field(body, "old_cert", old_cert, sizeof(old_cert), &old_len) != 0 ||
        b64_field(body, "new_cert", new_cert, sizeof(new_cert), &new_len) != 0 ||
        b64_field(body, "sig", sig, sizeof(sig), &sig_len) != 0 ||
        b64_field(body, "new_sig", new_sig, sizeof(new_sig), &new_sig_len) != 0 ||
        !json_is_integer(jts)) {
        outcome_fail(o, 400, "bad_request",
                     "need \"old_cert\", \"new_cert\", \"sig\", \"new_sig\" (base64) and \"ts\"");
        return;
    }
    if (crypto_pin_from_cert(old_cert, old_len, old_pin) != 0 ||
        crypto_pin_from_cert(new_cert, new_len, new_pin) != 0) {
        outcome_fail(o, 400, "bad_request", "a certificate cannot be parsed");
        return;
    }
    snprintf(o->detail, sizeof(o->detail), "old=%s new=%s", old_pin, new_pin);
    ts = json_integer_value(jts);
    if (ts < now - ROTATE_SKEW_S || ts > now + ROTATE_SKEW_S) {
        outcome_fail(
            o, 403, "forbidden",
            "the request's time is more than %d s away from the hub's clock (fix the site's "
            "clock)",
            ROTATE_SKEW_S);
        return;
    }
    /* Unknown site and wrong key get the same answer. */
    rc = registry_site_get(h->reg, q->name, &s);
    if (rc != 0 && rc != -ENOENT) {
        outcome_fail_store(o, rc, "registry read failed");
        goto out;
    }
    if (rc != 0 || s.pin[0] == '\0' || !crypto_pin_equal(s.pin, old_pin)) {
        outcome_fail(o, 403, "forbidden", "the hub does not hold that key for this site");
        goto out;
    }
    n = snprintf(msg, sizeof(msg), "tether-rotate\n%s\n%s\n%" PRId64, q->name, new_pin, ts);
    if (n < 0 || (size_t)n >= sizeof(msg) ||
        crypto_verify(old_cert, old_len, msg, (size_t)n, sig, sig_len) != 0 ||
        crypto_verify(new_cert, new_len, msg, (size_t)n, new_sig, new_sig_len) != 0) {
        outcome_fail(o, 403, "forbidden", "the proof of possession of the keys does not verify");
        goto out;
    }
    if (crypto_pin_equal(old_pin, new_pin)) {
        outcome_fail(o, 400, "bad_request", "the new key is the old key");
        goto out;
    }
    rc = registry_site_rotate_pin(h->reg, s.id, old_pin, new_pin);
    if (rc == -EEXIST) {
        outcome_fail(o, 409, "name_taken", "the new key is already registered to a site");
        goto out;
    }
    if (rc == -ENOENT) {
        outcome_fail(o, 409, "conflict", "the site's key changed meanwhile");
        goto out;
    }
    if (rc != 0) {
        outcome_fail_store(o, rc, "registry write failed");
        goto out;
    }
    /* The tunnel was authenticated with the old key: it must not outlive it.
     * The agent reconnects with the new key. */
    hub_tunnel_cut(h, s.id, "key rotated");
    log_event(LOG_INFO, "site_key_rotated", "site=%s remote=%s old=%s new=%s", q->name, q->remote,
              old_pin, new_pin);
    outcome_succeed(o, 200, json_pack("{s:s,s:s}", "site", q->name, "pin", new_pin));
out:
    registry_site_clear(&s);
}
