/* Unit tests of hub/query/jtext.c: its JSON text against what jansson prints for the same values.
 */
/* SPDX-License-Identifier: MIT */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hub/query/jtext.h"
#include "testutil.h"

/* s[0..len) as jtext_str writes it must be what jansson's JSON_COMPACT
 * prints for the same string, and jtext_utf8_ok must accept exactly what
 * json_stringn accepts. */
static void same_as_jansson(const char *s, size_t len)
{
    json_t *j = json_stringn(s, len);
    struct buf b;
    struct jtext jt = {&b, 0};

    CHECK_EQ_INT(jtext_utf8_ok((const uint8_t *)s, len), j != NULL);
    if (j != NULL) {
        char *want = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);

        buf_init(&b);
        CHECK_EQ_INT(jtext_str(&jt, s, len), 0);
        CHECK_EQ_INT(buf_append(&b, "", 1), 0);
        CHECK_EQ_STR((const char *)buf_head(&b), want);
        free(want);
        buf_free(&b);
    }
    json_decref(j);
}

static void test_strings(void)
{
    static const struct {
        const char *s;
        size_t len;
    } cases[] = {
        {"", 0},
        {"plain", 5},
        {"quote \" backslash \\ slash /", 27},
        {"\b\f\n\r\t", 5},
        {"\x01\x1f\x7f", 3},
        {"nul \0 inside", 12},
        {"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", 14},
        {"\xc0\xaf", 2},         /* overlong */
        {"\xe0\x80\xaf", 3},     /* overlong */
        {"\xed\xa0\x80", 3},     /* surrogate */
        {"\xf4\x90\x80\x80", 4}, /* above U+10FFFF */
        {"\xe2\x82", 2},         /* cut short */
        {"\x80", 1},             /* lone continuation */
        {"\xff", 1},
        {"ok then \xc3", 9},
        {"\xef\xbf\xbf \xf4\x8f\xbf\xbf", 8}, /* U+FFFF, U+10FFFF */
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        same_as_jansson(cases[i].s, cases[i].len);
    /* Every single byte and every pair: the escapes and the UTF-8 rules. */
    for (int a = 0; a < 256; a++) {
        char one[1] = {(char)a};

        same_as_jansson(one, 1);
        for (int c = 0; c < 256; c += 7) {
            char two[2] = {(char)a, (char)c};
            same_as_jansson(two, 2);
        }
    }
}

static void test_values(void)
{
    struct buf b;
    struct jtext jt = {&b, 0};

    buf_init(&b);
    jtext_lit(&jt, "[");
    jtext_i64(&jt, INT64_MIN);
    jtext_lit(&jt, ",");
    jtext_i64_or_null(&jt, -1, -1);
    jtext_lit(&jt, ",");
    jtext_i64_or_null(&jt, 42, 0);
    jtext_lit(&jt, ",");
    jtext_cstr(&jt, NULL);
    jtext_lit(&jt, ",");
    jtext_cstr(&jt, "x");
    jtext_lit(&jt, "]");
    CHECK_EQ_INT(jt.rc, 0);
    CHECK_EQ_INT(buf_append(&b, "", 1), 0);
    CHECK_EQ_STR((const char *)buf_head(&b), "[-9223372036854775808,null,42,null,\"x\"]");
    buf_free(&b);
}

int main(void)
{
    test_strings();
    test_values();
    TEST_DONE();
}
