/* Error messages into caller buffers (see errmsg.h). */
/* SPDX-License-Identifier: MIT */
#include "errmsg.h"

#include <stdio.h>

void errmsg_vset(char *err, size_t cap, const char *fmt, va_list ap)
{
    if (err == NULL || cap == 0)
        return;
    vsnprintf(err, cap, fmt, ap);
}

void errmsg_set(char *err, size_t cap, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    errmsg_vset(err, cap, fmt, ap);
    va_end(ap);
}
