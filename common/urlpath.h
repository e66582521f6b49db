/* Normalising the path a user asks of a site's service, so it can never leave the service's base.
 */
/* SPDX-License-Identifier: MIT */
#ifndef TETHER_URLPATH_H
#define TETHER_URLPATH_H

#include <stddef.h>

/* Normalises in ("/path[?query]", NUL-terminated) into out (cap bytes, at
 * least strlen(in) + 1,
 * NUL-terminated, never longer than in):
 * - "%2e"/"%2E" is decoded to '.' (RFC 3986 6.2.2.2: the same URI), other
 *   percent-escapes are kept exactly as sent;
 * - runs of '/' become one '/';
 * - "." and ".." segments are removed as RFC 3986 5.2.4 says, except that a
 *   ".." that would climb above "/" is refused instead of clamped;
 * - the query (from the first '?') is copied unchanged.
 * Returns 0, or:
 *   -EINVAL   in does not start with '/', holds a malformed percent-escape,
 *             a path byte RFC 3986 does not allow raw (controls, space, '#',
 *             '"', '<', '>', '[', ']', '^', '`', '{', '|', '}', DEL, bytes
 *             >= 0x80), or a query byte no client sends raw (controls,
 *             space, '#', '"', '<', '>', DEL, bytes >= 0x80);
 *   -EPERM    a ".." climbs above "/" (the path leaves the service's base);
 *   -EILSEQ   an encoded '/', '\' or NUL (%2F, %5C, %00), a raw '\', a "."
 *             or ".." segment followed by ';', "%3B", "%3F" or "%23" (read
 *             as ".." by servers that split there), or an overlong UTF-8
 *             escape ("%C0%AE"): forms some services decode or split on;
 *   -ENOSPC   out is too small. */
int urlpath_normalize(const char *in, char *out, size_t cap);

/* The value of one hex digit, or -1. */
int urlpath_hexval(char c);

/* One line saying why urlpath_normalize refused (for an error detail). */
const char *urlpath_strerror(int rc);

#endif
