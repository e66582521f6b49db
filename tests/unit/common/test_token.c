/* Unit tests for common/token.c: enrollment token round trip, every rejection, API tokens. */
/* SPDX-License-Identifier: MIT */
#include "common/token.h"
#include "testutil.h"

#include <errno.h>
#include <stdlib.h>

static char g_pin[CRYPTO_PIN_LEN + 1];
static char g_secret_b64[64];

static void make_pin(char out[CRYPTO_PIN_LEN + 1])
{
    uint8_t h[32];
    size_t n;

    CHECK_EQ_INT(crypto_random(h, sizeof(h)), 0);
    memcpy(out, "sha256//", 8);
    CHECK_EQ_INT(crypto_b64_encode(h, sizeof(h), 0, out + 8, CRYPTO_PIN_LEN + 1 - 8, &n), 0);
    CHECK(crypto_pin_valid(out));
}

static void fill_valid(struct token_enroll *t)
{
    memset(t, 0, sizeof(*t));
    strcpy(t->site, "edge-01");
    strcpy(t->hubs[0], "hub.example:6443");
    strcpy(t->hubs[1], "[2001:db8::1]:443");
    strcpy(t->hubs[2], "10.0.0.1:8443");
    t->n_hubs = 3;
    memcpy(t->pin, g_pin, sizeof(g_pin));
    for (int i = 0; i < TOKEN_SECRET_LEN; i++)
        t->secret[i] = (uint8_t)(i * 7 + 1);
    t->expires_at = 1900000000;
}

/* Wraps raw JSON text as a token, bypassing the encoder's own checks. */
static char *wrap(const char *json)
{
    size_t jl = strlen(json), cap = 8 + jl * 2 + 8, n;
    char *out = malloc(cap);

    memcpy(out, "tether1.", 8);
    CHECK_EQ_INT(crypto_b64_encode((const uint8_t *)json, jl, 1, out + 8, cap - 8, &n), 0);
    return out;
}

/* The JSON inside a token (static storage). */
static const char *decoded_json(const char *tok)
{
    static char json[TOKEN_ENCODED_MAX];
    size_t n = 0;

    CHECK_EQ_INT(
        crypto_b64_decode(tok + 8, strlen(tok + 8), 1, (uint8_t *)json, sizeof(json) - 1, &n), 0);
    json[n] = '\0';
    return json;
}

#define PIN9 "sha256//AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="

static int decode_json(const char *json)
{
    struct token_enroll t;
    char *tok = wrap(json);
    int rc = token_enroll_decode(tok, &t);

    free(tok);
    return rc;
}

/* A JSON token body with one member replaced (or dropped when value is NULL). */
static char *json_with(const char *key, const char *value)
{
    const char *keys[] = {"v", "site", "hubs", "pin", "secret", "exp", "pins"};
    char vals[7][1024];
    char *out = malloc(16384);
    size_t pos = 0;
    int first = 1;

    snprintf(vals[0], sizeof(vals[0]), "1");
    snprintf(vals[1], sizeof(vals[1]), "\"edge-01\"");
    snprintf(vals[2], sizeof(vals[2]), "[\"hub.example:6443\"]");
    snprintf(vals[3], sizeof(vals[3]), "\"%s\"", g_pin);
    snprintf(vals[4], sizeof(vals[4]), "\"%s\"", g_secret_b64);
    snprintf(vals[5], sizeof(vals[5]), "1900000000");
    vals[6][0] = '\0'; /* "pins": absent unless given */
    pos += (size_t)sprintf(out + pos, "{");
    for (int i = 0; i < 7; i++) {
        const char *v = vals[i];
        if (key != NULL && strcmp(key, keys[i]) == 0) {
            if (value == NULL)
                continue;
            v = value;
        }
        if (v[0] == '\0')
            continue;
        pos += (size_t)sprintf(out + pos, "%s\"%s\":%s", first ? "" : ",", keys[i], v);
        first = 0;
    }
    sprintf(out + pos, "}");
    return out;
}

/* Returns "\"" prefix, n copies of c, suffix "\"" in a rotating static buffer. */
static const char *quoted(const char *prefix, char c, size_t n, const char *suffix)
{
    static char bufs[4][256];
    static int next;
    char *b = bufs[next++ % 4];
    size_t pl = strlen(prefix);

    b[0] = '"';
    memcpy(b + 1, prefix, pl);
    memset(b + 1 + pl, c, n);
    snprintf(b + 1 + pl + n, sizeof(bufs[0]) - 1 - pl - n, "%s\"", suffix);
    return b;
}

static void reject_member(const char *key, const char *value)
{
    char *json = json_with(key, value);
    int rc = decode_json(json);

    CHECK_EQ_INT(rc, -EINVAL);
    if (rc != -EINVAL)
        fprintf(stderr, "  accepted: %s\n", json);
    free(json);
}

static void test_names(void)
{
    char n63[TOKEN_NAME_MAX + 2];

    CHECK(token_name_valid("a"));
    CHECK(token_name_valid("0"));
    CHECK(token_name_valid("edge-01"));
    CHECK(token_name_valid("a-"));
    memset(n63, 'x', TOKEN_NAME_MAX);
    n63[TOKEN_NAME_MAX] = '\0';
    CHECK(token_name_valid(n63));
    n63[TOKEN_NAME_MAX] = 'x';
    n63[TOKEN_NAME_MAX + 1] = '\0';
    CHECK(!token_name_valid(n63));
    CHECK(!token_name_valid(""));
    CHECK(!token_name_valid(NULL));
    CHECK(!token_name_valid("-a"));
    CHECK(!token_name_valid("Edge"));
    CHECK(!token_name_valid("a_b"));
    CHECK(!token_name_valid("a.b"));
    CHECK(!token_name_valid("a b"));
    CHECK(!token_name_valid("caf\xc3\xa9"));
}

static void test_round_trip(void)
{
    struct token_enroll t, back;
    char text[TOKEN_ENCODED_MAX + 1], padded[TOKEN_ENCODED_MAX + 32];
    size_t len;

    fill_valid(&t);
    CHECK_EQ_INT(token_enroll_encode(&t, text, sizeof(text)), 0);
    CHECK(strncmp(text, "tether1.", 8) == 0);
    /* Safe in a shell and a URL: base64url only, no padding. */
    CHECK(strspn(text + 8, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") ==
          strlen(text + 8));
    CHECK_EQ_INT(token_enroll_decode(text, &back), 0);
    CHECK_EQ_STR(back.site, t.site);
    CHECK_EQ_INT(back.n_hubs, 3);
    CHECK_EQ_STR(back.hubs[0], "hub.example:6443");
    CHECK_EQ_STR(back.hubs[1], "[2001:db8::1]:443");
    CHECK_EQ_STR(back.hubs[2], "10.0.0.1:8443");
    CHECK_EQ_STR(back.pin, g_pin);
    CHECK_EQ_INT(back.n_pins, 0);
    CHECK(strstr(decoded_json(text), "\"pins\"") == NULL); /* one hub: as before clusters */
    CHECK(memcmp(back.secret, t.secret, TOKEN_SECRET_LEN) == 0);
    CHECK_EQ_INT(back.expires_at, 1900000000);

    /* White space around a pasted token is ignored, inside it is not. */
    snprintf(padded, sizeof(padded), "  \t%s\r\n", text);
    CHECK_EQ_INT(token_enroll_decode(padded, &back), 0);
    CHECK_EQ_STR(back.site, "edge-01");
    len = strlen(text);
    snprintf(padded, sizeof(padded), "%.*s %s", (int)(len / 2), text, text + len / 2);
    CHECK_EQ_INT(token_enroll_decode(padded, &back), -EINVAL);

    /* The encoder reports a short buffer instead of truncating. */
    CHECK_EQ_INT(token_enroll_encode(&t, padded, len), -ENOSPC);
    CHECK_EQ_INT(token_enroll_encode(&t, padded, len + 1), 0);
    CHECK_EQ_STR(padded, text);
    CHECK_EQ_INT(token_enroll_encode(&t, padded, 4), -ENOSPC);

    /* The largest legal token: 8 long endpoints. */
    fill_valid(&t);
    t.n_hubs = TOKEN_HUB_MAX;
    for (int i = 0; i < TOKEN_HUB_MAX; i++) {
        memset(t.hubs[i], 'h', TOKEN_ENDPOINT_MAX - 6);
        snprintf(t.hubs[i] + TOKEN_ENDPOINT_MAX - 6, 7, ":%05d", 1000 + i);
        t.hubs[i][0] = (char)('a' + i);
    }
    /* And the other hubs' keys of a cluster of nine. */
    t.n_pins = TOKEN_PIN_MAX;
    for (int i = 0; i < TOKEN_PIN_MAX; i++)
        make_pin(t.pins[i]);
    /* 249-char host names exceed nothing here: NET_HOST_MAX is 253. */
    CHECK_EQ_INT(token_enroll_encode(&t, text, sizeof(text)), 0);
    CHECK(strlen(text) <= TOKEN_ENCODED_MAX);
    CHECK_EQ_INT(token_enroll_decode(text, &back), 0);
    CHECK_EQ_INT(back.n_hubs, TOKEN_HUB_MAX);
    CHECK_EQ_STR(back.hubs[7], t.hubs[7]);
    CHECK_EQ_INT(back.n_pins, TOKEN_PIN_MAX);
    CHECK_EQ_STR(back.pins[0], t.pins[0]);
    CHECK_EQ_STR(back.pins[7], t.pins[7]);
    /* A bad pin among them is refused, by the encoder and the decoder. */
    t.pins[3][9] = '*';
    CHECK_EQ_INT(token_enroll_encode(&t, text, sizeof(text)), -EINVAL);
    t.n_pins = TOKEN_PIN_MAX + 1;
    CHECK_EQ_INT(token_enroll_encode(&t, text, sizeof(text)), -EINVAL);
    reject_member("pins", "[\"sha256//short\"]");
    reject_member("pins", "\"sha256//AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\"");
    reject_member("pins", "[1]");
    reject_member("pins", "[\"" PIN9 "\",\"" PIN9 "\",\"" PIN9 "\",\"" PIN9 "\",\"" PIN9
                          "\",\"" PIN9 "\",\"" PIN9 "\",\"" PIN9 "\",\"" PIN9 "\"]");
}

static void test_encode_rejects(void)
{
    struct token_enroll t;
    char text[TOKEN_ENCODED_MAX + 1];

    fill_valid(&t);
    strcpy(t.site, "Bad_Name");
    CHECK_EQ_INT(token_enroll_encode(&t, text, sizeof(text)), -EINVAL);
    fill_valid(&t);
    t.n_hubs = 0;
    CHECK_EQ_INT(token_enroll_encode(&t, text, sizeof(text)), -EINVAL);
    fill_valid(&t);
    t.n_hubs = TOKEN_HUB_MAX + 1;
    CHECK_EQ_INT(token_enroll_encode(&t, text, sizeof(text)), -EINVAL);
    fill_valid(&t);
    strcpy(t.hubs[1], "no-port");
    CHECK_EQ_INT(token_enroll_encode(&t, text, sizeof(text)), -EINVAL);
    fill_valid(&t);
    t.pin[10] = '*';
    CHECK_EQ_INT(token_enroll_encode(&t, text, sizeof(text)), -EINVAL);
    fill_valid(&t);
    t.expires_at = 0;
    CHECK_EQ_INT(token_enroll_encode(&t, text, sizeof(text)), -EINVAL);
}

static void test_decode_rejects(void)
{
    struct token_enroll t;
    char *json, *tok, buf[TOKEN_ENCODED_MAX * 2];
    char long_str[1024];

    /* The reference body is accepted, so each rejection below is due to its one change. */
    json = json_with(NULL, NULL);
    CHECK_EQ_INT(decode_json(json), 0);
    free(json);

    reject_member("v", NULL);
    reject_member("v", "2");
    reject_member("v", "0");
    reject_member("v", "\"1\"");
    reject_member("v", "1.0");
    reject_member("v", "true");

    reject_member("site", NULL);
    reject_member("site", "7");
    reject_member("site", "\"\"");
    reject_member("site", "\"Edge\"");
    reject_member("site", "\"-edge\"");
    reject_member("site", "\"ed\\u0000ge\"");
    memset(long_str, 0, sizeof(long_str));
    long_str[0] = '"';
    memset(long_str + 1, 'a', TOKEN_NAME_MAX + 1);
    long_str[TOKEN_NAME_MAX + 2] = '"';
    reject_member("site", long_str);

    reject_member("hubs", NULL);
    reject_member("hubs", "\"hub.example:6443\"");
    reject_member("hubs", "[]");
    reject_member("hubs", "[1]");
    reject_member("hubs", "[\"hub.example\"]");
    reject_member("hubs", "[\"hub.example:0\"]");
    reject_member("hubs", "[\"[::1:6443\"]");
    reject_member("hubs", "[\"a:1\",\"\"]");
    reject_member("hubs",
                  "[\"a:1\",\"b:2\",\"c:3\",\"d:4\",\"e:5\",\"f:6\",\"g:7\",\"h:8\",\"i:9\"]");
    memset(long_str, 0, sizeof(long_str));
    strcpy(long_str, "[\"");
    memset(long_str + 2, 'a', TOKEN_ENDPOINT_MAX - 4);
    strcat(long_str, ":6443\"]"); /* 256 characters */
    reject_member("hubs", long_str);

    reject_member("pin", NULL);
    reject_member("pin", "42");
    reject_member("pin", "\"sha256//\"");
    reject_member("pin", quoted("sha1//", 'A', 43, "="));
    reject_member("pin", quoted("sha256//", 'A', 42, "==")); /* 31 bytes */
    reject_member("pin", quoted("sha256//", 'A', 42, "-=")); /* url alphabet */
    reject_member("pin", quoted("sha256//", 'A', 43, "A"));  /* no padding */

    reject_member("secret", NULL);
    reject_member("secret", "123");
    reject_member("secret", quoted("", 'A', 42, ""));  /* 31 bytes */
    reject_member("secret", quoted("", 'A', 44, ""));  /* 33 bytes */
    reject_member("secret", quoted("", 'A', 42, "+")); /* standard alphabet */
    reject_member("secret", quoted("", 'A', 42, "B")); /* stray low bits */
    /* Controls: 43 characters make 32 bytes, with or without the optional '='. */
    json = json_with("secret", quoted("", 'A', 42, "A"));
    CHECK_EQ_INT(decode_json(json), 0);
    free(json);
    json = json_with("secret", quoted("", 'A', 42, "A="));
    CHECK_EQ_INT(decode_json(json), 0);
    free(json);

    reject_member("exp", NULL);
    reject_member("exp", "\"1900000000\"");
    reject_member("exp", "1.9e9");
    reject_member("exp", "0");
    reject_member("exp", "-5");
    reject_member("exp", "null");

    /* Not an object, not JSON, duplicate keys. */
    CHECK_EQ_INT(decode_json("[1,2,3]"), -EINVAL);
    CHECK_EQ_INT(decode_json("not json"), -EINVAL);
    json = json_with(NULL, NULL);
    json[strlen(json) - 1] = '\0';
    snprintf(buf, sizeof(buf), "%s,\"v\":1}", json);
    CHECK_EQ_INT(decode_json(buf), -EINVAL);
    free(json);

    /* Unknown members are tolerated, for later minor additions. */
    json = json_with("exp", "1900000000,\"labels\":{\"k\":\"v\"}");
    CHECK_EQ_INT(decode_json(json), 0);
    free(json);

    /* Prefix. */
    json = json_with(NULL, NULL);
    tok = wrap(json);
    CHECK_EQ_INT(token_enroll_decode(tok, &t), 0);
    tok[6] = '2';
    CHECK_EQ_INT(token_enroll_decode(tok, &t), -EINVAL);
    CHECK_EQ_INT(token_enroll_decode(tok + 8, &t), -EINVAL);
    CHECK_EQ_INT(token_enroll_decode("tether1.", &t), -EINVAL);
    CHECK_EQ_INT(token_enroll_decode("", &t), -EINVAL);
    CHECK_EQ_INT(token_enroll_decode(NULL, &t), -EINVAL);
    free(tok);
    free(json);
}

/* The size bound holds on the encoded text, before any decoding. */
static void test_size_bound(void)
{
    struct token_enroll t;
    char pad[TOKEN_ENCODED_MAX];
    int seen_max = 0, seen_over = 0;

    for (size_t n = 2500; n < 3300 && !(seen_max && seen_over); n++) {
        char value[TOKEN_ENCODED_MAX + 64], *json, *tok;
        size_t len;
        int rc;

        memset(pad, 'p', n);
        pad[n] = '\0';
        snprintf(value, sizeof(value), "1900000000,\"pad\":\"%s\"", pad);
        json = json_with("exp", value);
        tok = wrap(json);
        len = strlen(tok);
        rc = token_enroll_decode(tok, &t);
        if (len == TOKEN_ENCODED_MAX) {
            CHECK_EQ_INT(rc, 0);
            seen_max = 1;
        } else if (len > TOKEN_ENCODED_MAX) {
            CHECK_EQ_INT(rc, -EINVAL);
            seen_over = 1;
        }
        free(json);
        free(tok);
    }
    CHECK(seen_max);
    CHECK(seen_over);

    /* Megabytes of input are refused without reading them all as a token. */
    {
        size_t big = 8 * 1024 * 1024;
        char *huge = malloc(big + 1);
        memset(huge, 'A', big);
        memcpy(huge, "tether1.", 8);
        huge[big] = '\0';
        CHECK_EQ_INT(token_enroll_decode(huge, &t), -EINVAL);
        free(huge);
    }
}

static void test_truncations(void)
{
    struct token_enroll t;
    char text[TOKEN_ENCODED_MAX + 1];
    size_t len;
    int accepted = 0;

    fill_valid(&t);
    CHECK_EQ_INT(token_enroll_encode(&t, text, sizeof(text)), 0);
    len = strlen(text);
    for (size_t cut = 0; cut < len; cut++) {
        /* An exact-size heap copy, so that ASan sees any read past the end. */
        char *p = malloc(cut + 1);
        memcpy(p, text, cut);
        p[cut] = '\0';
        if (token_enroll_decode(p, &t) != -EINVAL)
            accepted++;
        free(p);
    }
    CHECK_EQ_INT(accepted, 0);
    /* A failed decode leaves nothing behind. */
    CHECK_EQ_INT(t.n_hubs, 0);
    CHECK_EQ_STR(t.site, "");

    /* Every single-byte change is either rejected or still a well-formed token. */
    for (size_t i = 8; i < len; i++) {
        char saved = text[i];
        int rc;
        text[i] = saved == 'A' ? 'B' : 'A';
        rc = token_enroll_decode(text, &t);
        CHECK(rc == 0 || rc == -EINVAL);
        if (rc == 0) {
            CHECK(token_name_valid(t.site));
            CHECK(t.n_hubs >= 1 && t.n_hubs <= TOKEN_HUB_MAX);
            CHECK(crypto_pin_valid(t.pin));
        }
        text[i] = saved;
    }
}

static void test_api_tokens(void)
{
    char a[TOKEN_API_LEN + 1], b[TOKEN_API_LEN + 1], h[65];

    CHECK_EQ_INT(token_api_generate(a), 0);
    CHECK_EQ_INT(token_api_generate(b), 0);
    CHECK_EQ_INT(strlen(a), TOKEN_API_LEN);
    CHECK(strncmp(a, "tth_", 4) == 0);
    CHECK(strspn(a + 4, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") ==
          TOKEN_API_LEN - 4);
    CHECK(strcmp(a, b) != 0);

    /* FIPS 180-2 test vector. */
    CHECK_EQ_INT(token_hash_hex("abc", 3, h), 0);
    CHECK_EQ_STR(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    /* Only len bytes are hashed. */
    CHECK_EQ_INT(token_hash_hex("abcdef", 3, h), 0);
    CHECK_EQ_STR(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    CHECK_EQ_INT(token_hash_hex(a, strlen(a), h), 0);
    CHECK_EQ_INT(strlen(h), 64);
    CHECK(strcmp(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad") != 0);
}

int main(void)
{
    uint8_t secret[TOKEN_SECRET_LEN];
    size_t n;

    make_pin(g_pin);
    for (int i = 0; i < TOKEN_SECRET_LEN; i++)
        secret[i] = (uint8_t)(0xa0 + i);
    CHECK_EQ_INT(
        crypto_b64_encode(secret, sizeof(secret), 1, g_secret_b64, sizeof(g_secret_b64), &n), 0);
    test_names();
    test_round_trip();
    test_encode_rejects();
    test_decode_rejects();
    test_size_bound();
    test_truncations();
    test_api_tokens();
    TEST_DONE();
}
