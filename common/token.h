/* Enrollment and API token formats: encode, decode (bounded), hash. */
/* SPDX-License-Identifier: MIT */
#ifndef TETHER_TOKEN_H
#define TETHER_TOKEN_H

#include <stddef.h>
#include <stdint.h>

#include "crypto.h"

#define TOKEN_NAME_MAX     63  /* site and token names: [a-z0-9][a-z0-9-]{0,62} */
#define TOKEN_HUB_MAX      8   /* hub endpoints carried in an enrollment token */
#define TOKEN_ENDPOINT_MAX 255 /* "host:port" or "[v6]:port" */
#define TOKEN_SECRET_LEN   32
#define TOKEN_ENCODED_MAX  4096 /* longest encoded enrollment token accepted */
#define TOKEN_PIN_MAX      8    /* other hubs' pins carried in an enrollment token */

/* An enrollment token: "tether1." + base64url(JSON {"v":1,"site","hubs":[...],
 * "pin","pins":[...],"secret"(base64url),"exp"}). "pins", the keys of the
 * other hubs of the issuing hub's cluster, is left out when there are none
 * (agents before it read only "pin"). Everything here is by value. */
struct token_enroll {
    char site[TOKEN_NAME_MAX + 1];
    char hubs[TOKEN_HUB_MAX][TOKEN_ENDPOINT_MAX + 1];
    size_t n_hubs;
    char pin[CRYPTO_PIN_LEN + 1];                 /* the issuing hub's key pin */
    char pins[TOKEN_PIN_MAX][CRYPTO_PIN_LEN + 1]; /* the other hubs' */
    size_t n_pins;
    uint8_t secret[TOKEN_SECRET_LEN];
    int64_t expires_at; /* unix seconds */
};

/* Writes the token text (NUL-terminated) into out. -ENOSPC if cap is short. */
int token_enroll_encode(const struct token_enroll *t, char *out, size_t cap);
/* Parses and validates a token: prefix, size bound, JSON shape, name syntax,
 * 1..TOKEN_HUB_MAX endpoints, pin syntax, secret length. Surrounding white
 * space is ignored. -EINVAL on anything malformed. */
int token_enroll_decode(const char *text, struct token_enroll *out);

/* 1 if name is a valid site/token name. */
int token_name_valid(const char *name);

/* API bearer tokens: "tth_" + base64url(32 random bytes). The hub stores only
 * token_hash() of them. */
#define TOKEN_API_LEN 47 /* 4 + 43 */
int token_api_generate(char out[TOKEN_API_LEN + 1]);
/* SHA-256 of the token text, as lower-case hex (64 chars + NUL). */
int token_hash_hex(const char *token, size_t len, char out[65]);

#endif
