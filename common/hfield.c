/* HTTP header field helpers shared by the hub and the site (no libuv, no nghttp2). */
/* SPDX-License-Identifier: MIT */
#include "hfield.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int hfield_token_listed(const char *list, size_t llen, const char *name, size_t nlen)
{
    size_t i = 0;
    while (i < llen) {
        while (i < llen && (list[i] == ' ' || list[i] == '\t' || list[i] == ','))
            i++;
        size_t s = i;
        while (i < llen && list[i] != ',')
            i++;
        size_t e = i;
        while (e > s && (list[e - 1] == ' ' || list[e - 1] == '\t'))
            e--;
        if (e - s == nlen && nlen > 0 && strncasecmp(list + s, name, nlen) == 0)
            return 1;
    }
    return 0;
}

int hfield_token_valid(const char *s, size_t n)
{
    if (n == 0)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              (ch != 0 && strchr("!#$%&'*+-.^_`|~", ch) != NULL)))
            return 0;
    }
    return 1;
}

int64_t hfield_content_length(const char *v, size_t vlen)
{
    char tmp[24];

    snprintf(tmp, sizeof(tmp), "%.*s", (int)(vlen < 20 ? vlen : 20), v);
    return strtoll(tmp, NULL, 10);
}
