/* HTTP header field helpers shared by the hub and the site (no libuv, no nghttp2). */
/* SPDX-License-Identifier: MIT */
#ifndef TETHER_HFIELD_H
#define TETHER_HFIELD_H

#include <stddef.h>

/* 1 if name (nlen bytes) appears, case-insensitively, in the comma-separated
 * token list (llen bytes) of a Connection header's value. */
int hfield_token_listed(const char *list, size_t llen, const char *name, size_t nlen);

#endif
