/* Growable byte buffer with a read offset, used as a FIFO between layers. */
/* SPDX-License-Identifier: MIT */
#include "buf.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A buffer's first allocation. */
#define BUF_FIRST 4096

/* Spare storage of the first sizes (4, 8 and 16 KiB). Short-lived buffers
 * of a few KiB (a session's HTTP/2 staging buffer, a connection's write
 * buffer: each freed once sent, so that idle connections hold none) are
 * allocated and freed on every send; glibc serves these sizes from its
 * bins, not its thread cache, and malloc, free and bin unlinking took
 * about 6% of the hub's CPU in the fan-out bench. A few spares of each
 * size kept here take most of that out. Static storage: what is left at
 * exit is still reachable, not a leak. */
#define BUF_CLASSES 3
#define BUF_SPARES  16

static struct {
    pthread_mutex_t mu;
    size_t n[BUF_CLASSES];
    uint8_t *p[BUF_CLASSES][BUF_SPARES];
} spares = {PTHREAD_MUTEX_INITIALIZER, {0}, {{0}}};

/* The spare class of storage of cap bytes, or -1. */
static int spare_class(size_t cap)
{
    for (int i = 0; i < BUF_CLASSES; i++)
        if (cap == (size_t)BUF_FIRST << i)
            return i;
    return -1;
}

/* Storage of cap bytes: a spare, or malloc's. */
static uint8_t *data_alloc(size_t cap)
{
    int k = spare_class(cap);
    uint8_t *p = NULL;

    if (k >= 0) {
        pthread_mutex_lock(&spares.mu);
        if (spares.n[k] > 0)
            p = spares.p[k][--spares.n[k]];
        pthread_mutex_unlock(&spares.mu);
    }
    return p != NULL ? p : malloc(cap);
}

/* Frees storage of cap bytes, or keeps it as a spare. */
static void data_free(uint8_t *p, size_t cap)
{
    int k = spare_class(cap);

    if (p != NULL && k >= 0) {
        pthread_mutex_lock(&spares.mu);
        if (spares.n[k] < BUF_SPARES) {
            spares.p[k][spares.n[k]++] = p;
            p = NULL;
        }
        pthread_mutex_unlock(&spares.mu);
    }
    free(p);
}

void buf_init(struct buf *b)
{
    memset(b, 0, sizeof(*b));
}

void buf_free(struct buf *b)
{
    data_free(b->data, b->cap);
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
            size_t ncap = b->cap ? b->cap * 2 : BUF_FIRST;
            uint8_t *n;
            while (ncap < need)
                ncap *= 2;
            n = data_alloc(ncap);
            if (n == NULL)
                return -ENOMEM;
            if (b->len)
                memcpy(n, b->data + b->off, b->len);
            data_free(b->data, b->cap);
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
    if (b->len == 0 && b->cap > keep)
        buf_free(b);
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
