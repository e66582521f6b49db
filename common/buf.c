/* Growable byte buffer with a read offset, used as a FIFO between layers. */
/* SPDX-License-Identifier: MIT */
#include "buf.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void buf_init(struct buf *b)
{
    memset(b, 0, sizeof(*b));
}

void buf_free(struct buf *b)
{
    free(b->data);
    buf_init(b);
}

int buf_append(struct buf *b, const void *data, size_t len)
{
    if (len == 0)
        return 0;
    if (b->off + b->len + len > b->cap) {
        /* Reclaim the consumed front before growing, but only when the
         * bytes moved are no more than the bytes reclaimed: a FIFO that is
         * drained in small pieces while nearly full would otherwise move
         * its whole content on every append. */
        if (b->off >= b->len && b->len + len <= b->cap) {
            memmove(b->data, b->data + b->off, b->len);
            b->off = 0;
        } else {
            size_t need = b->len + len;
            /* The bytes would fit after a move we refused: double, so that
             * moves stay rare (the capacity stays within 4x the live bytes). */
            size_t ncap = b->cap ? b->cap * 2 : 4096;
            uint8_t *n;
            while (ncap < need)
                ncap *= 2;
            n = malloc(ncap);
            if (n == NULL)
                return -ENOMEM;
            if (b->len)
                memcpy(n, b->data + b->off, b->len);
            free(b->data);
            b->data = n;
            b->cap = ncap;
            b->off = 0;
        }
    }
    memcpy(b->data + b->off + b->len, data, len);
    b->len += len;
    return 0;
}

void buf_consume(struct buf *b, size_t n)
{
    if (n >= b->len) {
        b->off = 0;
        b->len = 0;
        return;
    }
    b->off += n;
    b->len -= n;
}

int buf_move(struct buf *dst, struct buf *src)
{
    int rc;
    if (dst->len == 0) {
        /* Swap storage: dst keeps src's bytes, src reuses dst's memory, so a
         * steady flow of moves allocates nothing. */
        struct buf tmp = *dst;
        *dst = *src;
        *src = tmp;
        src->off = 0;
        src->len = 0;
        return 0;
    }
    rc = buf_append(dst, buf_head(src), src->len);
    if (rc == 0)
        buf_consume(src, src->len);
    return rc;
}

void buf_shrink(struct buf *b, size_t keep)
{
    if (b->len == 0 && b->cap > keep) {
        free(b->data);
        buf_init(b);
    }
}

int buf_vprintf(struct buf *b, const char *fmt, va_list ap)
{
    char small[256], *big;
    va_list again;
    int n, rc;

    /* Most lines fit the stack copy: one format, one append. */
    va_copy(again, ap);
    n = vsnprintf(small, sizeof(small), fmt, ap);
    if (n < 0 || (size_t)n < sizeof(small)) {
        va_end(again);
        return n < 0 ? -EINVAL : buf_append(b, small, (size_t)n);
    }
    big = malloc((size_t)n + 1);
    if (big == NULL) {
        va_end(again);
        return -ENOMEM;
    }
    vsnprintf(big, (size_t)n + 1, fmt, again);
    va_end(again);
    rc = buf_append(b, big, (size_t)n);
    free(big);
    return rc;
}

int buf_printf(struct buf *b, const char *fmt, ...)
{
    va_list ap;
    int rc;

    va_start(ap, fmt);
    rc = buf_vprintf(b, fmt, ap);
    va_end(ap);
    return rc;
}
