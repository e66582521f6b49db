/* Terminal tables for tetherctl: columns aligned by display width, untrusted text made safe to
 * print. */
/* SPDX-License-Identifier: MIT */
#define _XOPEN_SOURCE 700
#include "table.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <wchar.h>

struct table {
    size_t ncols;
    char **cells; /* (rows + 1) * ncols; row 0 is the header */
    size_t rows;  /* data rows */
    size_t cap;   /* rows the cells array has room for, header included */
    unsigned char *right;
};

/* Decodes one UTF-8 sequence at s (n bytes available). Returns its length
 * and the code point, or 0 when the bytes are not valid UTF-8. */
static size_t utf8_decode(const unsigned char *s, size_t n, uint32_t *cp)
{
    size_t len, i;
    uint32_t c;

    if (s[0] < 0x80) {
        *cp = s[0];
        return 1;
    }
    if (s[0] >= 0xc2 && s[0] <= 0xdf) {
        len = 2;
        c = s[0] & 0x1f;
    } else if (s[0] >= 0xe0 && s[0] <= 0xef) {
        len = 3;
        c = s[0] & 0x0f;
    } else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
        len = 4;
        c = s[0] & 0x07;
    } else {
        return 0;
    }
    if (len > n)
        return 0;
    for (i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        c = (c << 6) | (s[i] & 0x3f);
    }
    /* Overlong forms, surrogates and values past U+10FFFF. */
    if ((len == 3 && c < 0x800) || (len == 4 && (c < 0x10000 || c > 0x10ffff)) ||
        (c >= 0xd800 && c <= 0xdfff))
        return 0;
    *cp = c;
    return len;
}

static int unsafe_cp(uint32_t c)
{
    return c < 0x20 || c == 0x7f || (c >= 0x80 && c <= 0x9f) || (c >= 0x202a && c <= 0x202e) ||
           (c >= 0x2066 && c <= 0x2069);
}

char *table_clean(const char *s)
{
    const unsigned char *p = (const unsigned char *)(s != NULL ? s : "");
    size_t n = strlen((const char *)p), i = 0, o = 0;
    char *out = malloc(n + 1);

    if (out == NULL)
        return NULL;
    while (i < n) {
        uint32_t cp;
        size_t len = utf8_decode(p + i, n - i, &cp);

        if (len == 0 || unsafe_cp(cp)) {
            out[o++] = '?';
            i += len != 0 ? len : 1;
            continue;
        }
        memcpy(out + o, p + i, len);
        o += len;
        i += len;
    }
    out[o] = '\0';
    return out;
}

size_t table_width(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t n = strlen(s), i = 0, w = 0;

    while (i < n) {
        uint32_t cp;
        size_t len = utf8_decode(p + i, n - i, &cp);
        int cw;

        if (len == 0) {
            w++;
            i++;
            continue;
        }
        i += len;
        /* wcwidth needs a UTF-8 locale for anything past ASCII; without one
         * it answers -1 and one column is the best guess. */
        cw = cp < 0x80 ? 1 : wcwidth((wchar_t)cp);
        w += cw >= 0 ? (size_t)cw : 1;
    }
    return w;
}

struct table *table_new(size_t ncols, const char *const *headers)
{
    struct table *t = calloc(1, sizeof(*t));
    size_t i;

    if (t == NULL || ncols == 0)
        goto fail;
    t->ncols = ncols;
    t->cap = 8;
    t->cells = calloc(t->cap * ncols, sizeof(char *));
    t->right = calloc(ncols, 1);
    if (t->cells == NULL || t->right == NULL)
        goto fail;
    for (i = 0; i < ncols; i++) {
        t->cells[i] = table_clean(headers[i]);
        if (t->cells[i] == NULL)
            goto fail;
    }
    return t;
fail:
    table_free(t);
    return NULL;
}

void table_free(struct table *t)
{
    size_t i;

    if (t == NULL)
        return;
    if (t->cells != NULL)
        for (i = 0; i < (t->rows + 1) * t->ncols; i++)
            free(t->cells[i]);
    free(t->cells);
    free(t->right);
    free(t);
}

void table_align_right(struct table *t, size_t col)
{
    if (col < t->ncols)
        t->right[col] = 1;
}

size_t table_rows(const struct table *t)
{
    return t->rows;
}

int table_add(struct table *t, const char *const *cells)
{
    char **row;
    size_t i;

    if (t->rows + 1 >= t->cap) {
        size_t cap = t->cap * 2;
        char **nc = realloc(t->cells, cap * t->ncols * sizeof(char *));

        if (nc == NULL)
            return -ENOMEM;
        t->cells = nc;
        t->cap = cap;
    }
    row = t->cells + (t->rows + 1) * t->ncols;
    for (i = 0; i < t->ncols; i++) {
        const char *c = cells[i] != NULL && cells[i][0] != '\0' ? cells[i] : "-";

        row[i] = table_clean(c);
        if (row[i] == NULL) {
            while (i-- > 0)
                free(row[i]);
            return -ENOMEM;
        }
    }
    t->rows++;
    return 0;
}

static void pad(FILE *out, size_t n)
{
    while (n-- > 0)
        fputc(' ', out);
}

void table_print(const struct table *t, FILE *out)
{
    size_t *w = calloc(t->ncols, sizeof(*w));
    size_t r, c;

    if (w == NULL)
        return;
    for (r = 0; r <= t->rows; r++)
        for (c = 0; c < t->ncols; c++) {
            size_t cw = table_width(t->cells[r * t->ncols + c]);
            if (cw > w[c])
                w[c] = cw;
        }
    for (r = 0; r <= t->rows; r++) {
        for (c = 0; c < t->ncols; c++) {
            const char *cell = t->cells[r * t->ncols + c];
            size_t gap = w[c] - table_width(cell);
            int last = c + 1 == t->ncols;

            if (c > 0)
                fputs("  ", out);
            if (t->right[c])
                pad(out, gap);
            fputs(cell, out);
            if (!t->right[c] && !last)
                pad(out, gap);
        }
        fputc('\n', out);
    }
    free(w);
}
