/* Growable byte buffer with a read offset, used as a FIFO between layers. */
/* SPDX-License-Identifier: MIT */
#ifndef TETHER_BUF_H
#define TETHER_BUF_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

/* Bytes live at data[off .. off+len). The buffer owns data. */
struct buf {
    uint8_t *data;
    size_t off;
    size_t len;
    size_t cap;
};

void buf_init(struct buf *b);
void buf_free(struct buf *b);
/* Appends; -ENOMEM on allocation failure. */
int buf_append(struct buf *b, const void *data, size_t len);
/* Drops n bytes from the front. */
void buf_consume(struct buf *b, size_t n);
/* Pointer to the first unread byte. */
static inline uint8_t *buf_head(const struct buf *b)
{
    return b->data + b->off;
}
/* Moves all of src to the end of dst (may steal src's storage). */
int buf_move(struct buf *dst, struct buf *src);
/* Releases memory of an empty buffer that grew beyond `keep` bytes. */
void buf_shrink(struct buf *b, size_t keep);
/* Appends printf-style text (no NUL); -ENOMEM, or -EINVAL for a bad format. */
int buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int buf_vprintf(struct buf *b, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

#endif
