/* Error messages into caller buffers: the one printf-into-(err, cap) helper of all modules. */
/* SPDX-License-Identifier: MIT */
#ifndef TETHER_ERRMSG_H
#define TETHER_ERRMSG_H

#include <stdarg.h>
#include <stddef.h>

/* Formats into err (owned by the caller, cap bytes, always terminated, cut
 * if longer). Does nothing when err is NULL or cap is 0, so callers may pass
 * an optional buffer through. */
void errmsg_set(char *err, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void errmsg_vset(char *err, size_t cap, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

#endif
