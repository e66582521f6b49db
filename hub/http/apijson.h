/* Small JSON and query-string helpers shared by the hub's API handlers (api.c, query.c). */
/* SPDX-License-Identifier: MIT */
#ifndef TETHER_APIJSON_H
#define TETHER_APIJSON_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

struct ureq;

/* Answers r with o encoded compactly. Takes o's reference (o may be NULL:
 * then, as when encoding fails, r gets a 500). */
void apijson_respond(struct ureq *r, int status, json_t *o);

/* Parses a request body as one JSON object (duplicate keys refused) into
 * *out (a new reference). An empty body is {} when empty_ok, else an error.
 * 0, or -EINVAL with "body is not a JSON object: ..." in msg. */
int apijson_parse_object(const uint8_t *data, size_t len, int empty_ok, json_t **out, char *msg,
                         size_t cap);
/* The raw value of key in a query string qs ("a=1&b=2", without the '?';
 * NULL = none), copied to out (NUL-terminated, no decoding). Returns 1 if
 * present ("key" alone gives ""), 0 if absent, -E2BIG if the value does not
 * fit in cap bytes: an over-long value is an error, never silently cut. */
int apijson_qs_get(const char *qs, const char *key, char *out, size_t cap);

/* 1 if every key of the object body is in the NULL-terminated list keys;
 * else 0 and *bad points at the first unknown key (borrowed from body). */
int apijson_only_keys(json_t *body, const char *const *keys, const char **bad);

/* An optional integer field of body (borrowed) in [lo, hi]: absent (or
 * null when null_absent) gives def. 0, or -EINVAL with a message in msg
 * (if msg is not NULL). */
int apijson_int_field(json_t *body, const char *key, int64_t def, int64_t lo, int64_t hi,
                      int null_absent, int64_t *out, char *msg, size_t cap);

/* 1 if every entry of want (an object, borrowed) is a string equal to the
 * string of the same key in the site's labels (JSON text; NULL = none). An
 * empty want matches; callers that must refuse it check it themselves. */
int apijson_labels_match(json_t *want, const char *site_labels_json);

#endif
