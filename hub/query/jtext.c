/* JSON text written straight into a buffer, for the query views that carry one entry per site. */
/* SPDX-License-Identifier: MIT */
#include "jtext.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static int put(struct jtext *jt, const void *p, size_t n)
{
    if (jt->rc == 0 && n > 0)
        jt->rc = buf_append(jt->b, p, n);
    return jt->rc;
}

/* The rules of jansson's utf8_check_string: no overlong forms, no
 * surrogates, nothing above U+10FFFF. */
int jtext_utf8_ok(const uint8_t *s, size_t len)
{
    size_t i = 0;

    while (i < len) {
        uint8_t c = s[i];
        size_t n;
        uint32_t cp;

        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xC2 && c <= 0xDF)
            n = 1, cp = c & 0x1F;
        else if (c >= 0xE0 && c <= 0xEF)
            n = 2, cp = c & 0x0F;
        else if (c >= 0xF0 && c <= 0xF4)
            n = 3, cp = c & 0x07;
        else
            return 0;
        if (len - i - 1 < n)
            return 0;
        for (size_t k = 1; k <= n; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return 0;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10FFFF ||
            (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
        i += n + 1;
    }
    return 1;
}

int jtext_str(struct jtext *jt, const char *s, size_t len)
{
    static const char hex[] = "0123456789ABCDEF"; /* as jansson prints them */
    size_t run = 0;

    put(jt, "\"", 1);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[6];
        size_t n = 2;

        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        put(jt, s + run, i - run);
        run = i + 1;
        esc[0] = '\\';
        switch (c) {
        case '"':
        case '\\':
            esc[1] = (char)c;
            break;
        case '\b':
            esc[1] = 'b';
            break;
        case '\f':
            esc[1] = 'f';
            break;
        case '\n':
            esc[1] = 'n';
            break;
        case '\r':
            esc[1] = 'r';
            break;
        case '\t':
            esc[1] = 't';
            break;
        default:
            memcpy(esc, "\\u00", 4);
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            n = 6;
        }
        put(jt, esc, n);
    }
    put(jt, s + run, len - run);
    return put(jt, "\"", 1);
}

int jtext_cstr(struct jtext *jt, const char *s)
{
    return s ? jtext_str(jt, s, strlen(s)) : jtext_lit(jt, "null");
}

int jtext_raw(struct jtext *jt, const char *s, size_t len)
{
    return put(jt, s, len);
}

int jtext_i64(struct jtext *jt, int64_t v)
{
    char num[24];
    int n = snprintf(num, sizeof(num), "%" PRId64, v);

    return put(jt, num, (size_t)n);
}

int jtext_i64_or_null(struct jtext *jt, int64_t v, int64_t none)
{
    return v == none ? jtext_lit(jt, "null") : jtext_i64(jt, v);
}
