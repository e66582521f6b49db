/* libFuzzer entry point for config files (hub.conf, site.conf, ctl.conf): bounded, and what parses
 * writes back to a file that parses the same. */
/* SPDX-License-Identifier: MIT */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int blank(char c)
{
    return c == ' ' || c == '\t' || c == '\r';
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct config c, again;
    char err[256];
    char *text, *p;
    size_t cap = 0;
    const char *vals[4];

    err[0] = '\0';
    if (config_parse((const char *)data, size, &c, err, sizeof(err)) != 0) {
        /* A refusal always says why, in one line. */
        if (err[0] == '\0' || strchr(err, '\n') != NULL)
            abort();
        return 0;
    }
    if (c.n > 1024)
        abort();
    for (size_t i = 0; i < c.n; i++) {
        const char *k = c.entries[i].key, *v = c.entries[i].value;
        size_t kl = strlen(k), vl = strlen(v);
        if (kl == 0 || strpbrk(k, "= \t\r\n#") != NULL || strchr(v, '\n') != NULL)
            abort();
        if (vl > 0 && (blank(v[0]) || blank(v[vl - 1])))
            abort();
        if (c.entries[i].line < 1 || (i > 0 && c.entries[i].line <= c.entries[i - 1].line))
            abort();
        cap += kl + vl + 2;
    }
    /* config_get is the last value, config_get_all in file order. */
    if (c.n > 0) {
        const char *k = c.entries[0].key, *last = NULL;
        size_t n = 0;
        for (size_t i = 0; i < c.n; i++)
            if (strcmp(c.entries[i].key, k) == 0) {
                last = c.entries[i].value;
                n++;
            }
        if (config_get(&c, k) != last)
            abort();
        memset(vals, 0, sizeof(vals));
        if (config_get_all(&c, k, vals, 4) != (n < 4 ? n : 4) || vals[0] != c.entries[0].value)
            abort();
    }
    /* Written back one "key=value" a line (never longer than the line it came
     * from), it parses to the same entries. */
    text = malloc(cap + 1);
    if (text == NULL)
        goto out;
    p = text;
    for (size_t i = 0; i < c.n; i++)
        p += sprintf(p, "%s=%s\n", c.entries[i].key, c.entries[i].value);
    if (config_parse(text, (size_t)(p - text), &again, err, sizeof(err)) != 0 || again.n != c.n)
        abort();
    for (size_t i = 0; i < c.n; i++)
        if (strcmp(again.entries[i].key, c.entries[i].key) != 0 ||
            strcmp(again.entries[i].value, c.entries[i].value) != 0)
            abort();
    config_free(&again);
    free(text);
out:
    config_free(&c);
    return 0;
}
