/* Enrollment and API token formats: encode, decode (bounded), hash. */
/* SPDX-License-Identifier: MIT */
#include "token.h"

#include "net.h"

#include <errno.h>
#include <jansson.h>
#include <string.h>

#define ENROLL_PREFIX     "tether1."
#define ENROLL_PREFIX_LEN (sizeof(ENROLL_PREFIX) - 1)
/* Decoded JSON of the largest acceptable token. */
#define ENROLL_JSON_MAX (TOKEN_ENCODED_MAX / 4 * 3 + 3)
/* Room for white space around a pasted token (a newline, a CRLF, indentation). */
#define ENROLL_SPACE_MAX 64
#define API_PREFIX       "tth_"

int token_name_valid(const char *name)
{
    size_t len;

    if (name == NULL)
        return 0;
    len = strnlen(name, TOKEN_NAME_MAX + 1);
    if (len == 0 || len > TOKEN_NAME_MAX)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || (i > 0 && c == '-');
        if (!ok)
            return 0;
    }
    return 1;
}

static int endpoint_valid(const char *s)
{
    char host[NET_HOST_MAX + 1];
    int port;
    size_t len = strnlen(s, TOKEN_ENDPOINT_MAX + 1);

    if (len == 0 || len > TOKEN_ENDPOINT_MAX)
        return 0;
    /* No default port: a token must say exactly where to dial. */
    return net_split_hostport(s, 0, host, &port) == 0;
}

static int enroll_valid(const struct token_enroll *t)
{
    if (!token_name_valid(t->site) || t->n_hubs < 1 || t->n_hubs > TOKEN_HUB_MAX ||
        !crypto_pin_valid(t->pin) || t->expires_at <= 0 || t->n_pins > TOKEN_PIN_MAX)
        return 0;
    for (size_t i = 0; i < t->n_hubs; i++) {
        if (!endpoint_valid(t->hubs[i]))
            return 0;
    }
    for (size_t i = 0; i < t->n_pins; i++) {
        if (!crypto_pin_valid(t->pins[i]))
            return 0;
    }
    return 1;
}

int token_enroll_encode(const struct token_enroll *t, char *out, size_t cap)
{
    char secret[64];
    size_t slen, jlen, blen;
    json_t *root = NULL, *hubs = NULL, *pins = NULL;
    char *json = NULL;
    int rc = -EINVAL;

    if (t == NULL || out == NULL || !enroll_valid(t))
        return -EINVAL;
    if (crypto_b64_encode(t->secret, TOKEN_SECRET_LEN, 1, secret, sizeof(secret), &slen) != 0)
        return -EINVAL;
    hubs = json_array();
    if (hubs == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < t->n_hubs; i++) {
        if (json_array_append_new(hubs, json_string(t->hubs[i])) != 0) {
            rc = -ENOMEM;
            goto out;
        }
    }
    root = json_pack("{s:i, s:s, s:O, s:s, s:s, s:I}", "v", 1, "site", t->site, "hubs", hubs, "pin",
                     t->pin, "secret", secret, "exp", (json_int_t)t->expires_at);
    if (root == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    if (t->n_pins > 0) {
        pins = json_array();
        for (size_t i = 0; pins != NULL && i < t->n_pins; i++)
            if (json_array_append_new(pins, json_string(t->pins[i])) != 0) {
                json_decref(pins);
                pins = NULL;
            }
        if (pins == NULL || json_object_set_new(root, "pins", pins) != 0) {
            rc = -ENOMEM;
            goto out;
        }
    }
    json = json_dumps(root, JSON_COMPACT);
    if (json == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    jlen = strlen(json);
    if (jlen > ENROLL_JSON_MAX)
        goto out;
    if (cap < ENROLL_PREFIX_LEN + 1) {
        rc = -ENOSPC;
        goto out;
    }
    memcpy(out, ENROLL_PREFIX, ENROLL_PREFIX_LEN);
    rc = crypto_b64_encode((const uint8_t *)json, jlen, 1, out + ENROLL_PREFIX_LEN,
                           cap - ENROLL_PREFIX_LEN, &blen);
    if (rc != 0) {
        out[0] = '\0';
        goto out;
    }
    if (ENROLL_PREFIX_LEN + blen > TOKEN_ENCODED_MAX) {
        out[0] = '\0';
        rc = -EINVAL;
        goto out;
    }
    rc = 0;
out:
    if (json != NULL) {
        explicit_bzero(json, strlen(json));
        free(json);
    }
    explicit_bzero(secret, sizeof(secret));
    json_decref(root);
    json_decref(hubs);
    return rc;
}

static int is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Copies a JSON string member of at most max bytes (no NUL inside) into dst. */
static int get_str(json_t *v, char *dst, size_t max)
{
    size_t len;

    if (!json_is_string(v))
        return -EINVAL;
    len = json_string_length(v);
    if (len == 0 || len > max || memchr(json_string_value(v), '\0', len) != NULL)
        return -EINVAL;
    memcpy(dst, json_string_value(v), len);
    dst[len] = '\0';
    return 0;
}

static int get_string(json_t *root, const char *key, char *dst, size_t max)
{
    return get_str(json_object_get(root, key), dst, max);
}

static int get_pin(json_t *v, char dst[CRYPTO_PIN_LEN + 1])
{
    return get_str(v, dst, CRYPTO_PIN_LEN) == 0 && crypto_pin_valid(dst) ? 0 : -EINVAL;
}

int token_enroll_decode(const char *text, struct token_enroll *out)
{
    const size_t limit = TOKEN_ENCODED_MAX + 2 * ENROLL_SPACE_MAX;
    uint8_t json[ENROLL_JSON_MAX];
    size_t len, start = 0, jlen = 0, n, slen;
    json_t *root = NULL, *v, *hubs, *pins;
    json_error_t jerr;
    char secret[64];
    int rc = -EINVAL;

    if (out == NULL)
        return -EINVAL;
    memset(out, 0, sizeof(*out));
    if (text == NULL)
        return -EINVAL;
    /* Bound the scan itself: text may be whatever arrived on stdin. */
    len = strnlen(text, limit + 1);
    if (len > limit)
        return -EINVAL;
    while (start < len && is_space(text[start]))
        start++;
    while (len > start && is_space(text[len - 1]))
        len--;
    len -= start;
    text += start;
    if (len > TOKEN_ENCODED_MAX || len <= ENROLL_PREFIX_LEN ||
        memcmp(text, ENROLL_PREFIX, ENROLL_PREFIX_LEN) != 0)
        return -EINVAL;
    if (crypto_b64_decode(text + ENROLL_PREFIX_LEN, len - ENROLL_PREFIX_LEN, 1, json, sizeof(json),
                          &jlen) != 0)
        goto out;
    root = json_loadb((const char *)json, jlen, JSON_REJECT_DUPLICATES, &jerr);
    if (!json_is_object(root))
        goto out;

    v = json_object_get(root, "v");
    if (!json_is_integer(v) || json_integer_value(v) != 1)
        goto out;
    if (get_string(root, "site", out->site, TOKEN_NAME_MAX) != 0 || !token_name_valid(out->site))
        goto out;
    hubs = json_object_get(root, "hubs");
    if (!json_is_array(hubs))
        goto out;
    n = json_array_size(hubs);
    if (n < 1 || n > TOKEN_HUB_MAX)
        goto out;
    for (size_t i = 0; i < n; i++) {
        json_t *h = json_array_get(hubs, i);
        size_t hl;
        if (!json_is_string(h))
            goto out;
        hl = json_string_length(h);
        if (hl == 0 || hl > TOKEN_ENDPOINT_MAX || memchr(json_string_value(h), '\0', hl) != NULL)
            goto out;
        memcpy(out->hubs[i], json_string_value(h), hl);
        out->hubs[i][hl] = '\0';
        if (!endpoint_valid(out->hubs[i]))
            goto out;
    }
    out->n_hubs = n;
    if (get_pin(json_object_get(root, "pin"), out->pin) != 0)
        goto out;
    pins = json_object_get(root, "pins");
    if (pins != NULL && (!json_is_array(pins) || json_array_size(pins) > TOKEN_PIN_MAX))
        goto out;
    for (size_t i = 0; pins != NULL && i < json_array_size(pins); i++) {
        if (get_pin(json_array_get(pins, i), out->pins[i]) != 0)
            goto out;
        out->n_pins++;
    }
    if (get_string(root, "secret", secret, sizeof(secret) - 1) != 0)
        goto out;
    if (crypto_b64_decode(secret, strlen(secret), 1, out->secret, sizeof(out->secret), &slen) !=
            0 ||
        slen != TOKEN_SECRET_LEN)
        goto out;
    v = json_object_get(root, "exp");
    if (!json_is_integer(v) || json_integer_value(v) <= 0)
        goto out;
    out->expires_at = (int64_t)json_integer_value(v);
    rc = 0;
out:
    json_decref(root);
    explicit_bzero(json, sizeof(json));
    explicit_bzero(secret, sizeof(secret));
    if (rc != 0)
        explicit_bzero(out, sizeof(*out));
    return rc;
}

int token_api_generate(char out[TOKEN_API_LEN + 1])
{
    uint8_t raw[32];
    size_t blen;
    int rc;

    if (out == NULL)
        return -EINVAL;
    rc = crypto_random(raw, sizeof(raw));
    if (rc == 0) {
        memcpy(out, API_PREFIX, sizeof(API_PREFIX) - 1);
        rc = crypto_b64_encode(raw, sizeof(raw), 1, out + sizeof(API_PREFIX) - 1,
                               TOKEN_API_LEN + 1 - (sizeof(API_PREFIX) - 1), &blen);
    }
    explicit_bzero(raw, sizeof(raw));
    return rc;
}

int token_hash_hex(const char *token, size_t len, char out[65])
{
    uint8_t hash[32];
    int rc;

    if (token == NULL || out == NULL)
        return -EINVAL;
    rc = crypto_sha256(token, len, hash);
    if (rc != 0)
        return rc;
    return crypto_hex(hash, sizeof(hash), out, 65);
}
