/* HTTP header field helpers shared by the hub and the site (no libuv, no nghttp2). */
/* SPDX-License-Identifier: MIT */
#ifndef TETHER_HFIELD_H
#define TETHER_HFIELD_H

#include <stddef.h>
#include <stdint.h>

/* 1 if name (nlen bytes) appears, case-insensitively, in the comma-separated
 * token list (llen bytes) of a Connection header's value. */
int hfield_token_listed(const char *list, size_t llen, const char *name, size_t nlen);

/* 1 if s[0..n) is an RFC 9110 token (a valid field name or method): at
 * least one of A-Z a-z 0-9 !#$%&'*+-.^_`|~. */
int hfield_token_valid(const char *s, size_t n);

/* The value of a content-length field (vlen bytes, not NUL-terminated) as
 * strtoll reads its first 20 bytes. nghttp2 has already refused a malformed
 * one on HTTP/2; this only converts. */
int64_t hfield_content_length(const char *v, size_t vlen);

#endif
