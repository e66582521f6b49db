/* JSON text written straight into a buffer, for the query views that carry one entry per site. */
/* SPDX-License-Identifier: MIT */
#ifndef TETHER_HUB_QUERY_JTEXT_H
#define TETHER_HUB_QUERY_JTEXT_H

#include <stddef.h>
#include <stdint.h>

#include "../../common/buf.h"

/* Why not jansson here: a 1,000-site answer built as a tree costs a dozen
 * allocations per site and a second walk to print it; these append to one
 * buffer the text jansson's JSON_COMPACT would print. The caller owns the
 * buffer. Every function returns 0 or -ENOMEM; the first failure sticks in
 * jt->rc, so a caller may check once at the end. */
struct jtext {
    struct buf *b;
    int rc;
};

/* 1 when s[0..len) is UTF-8 that JSON can carry as a string (what jansson's
 * json_stringn accepts). */
int jtext_utf8_ok(const uint8_t *s, size_t len);
/* "s" escaped; the caller checked it with jtext_utf8_ok (or knows it ASCII). */
int jtext_str(struct jtext *jt, const char *s, size_t len);
/* "s" (NUL-terminated), or null for NULL. */
int jtext_cstr(struct jtext *jt, const char *s);
/* Bytes appended as they are: punctuation, or JSON text already valid. */
int jtext_raw(struct jtext *jt, const char *s, size_t len);
/* A literal, e.g. jtext_lit(jt, "{\"id\":"). */
#define jtext_lit(jt, s) jtext_raw((jt), "" s, sizeof(s) - 1)
int jtext_i64(struct jtext *jt, int64_t v);
/* v as an integer, or null when it equals none. */
int jtext_i64_or_null(struct jtext *jt, int64_t v, int64_t none);

#endif
