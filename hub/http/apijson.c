/* Small JSON and query-string helpers shared by the hub's API handlers, written once. */
/* SPDX-License-Identifier: MIT */
#include "apijson.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ureq.h"

void apijson_respond(struct ureq *r, int status, json_t *o)
{
    char *txt = o ? json_dumps(o, JSON_COMPACT) : NULL;

    json_decref(o);
    if (txt == NULL) {
        ureq_error(r, 500, "internal", "could not encode the answer");
        return;
    }
    ureq_respond(r, status, "application/json", txt, strlen(txt));
    free(txt);
}

int apijson_qs_get(const char *qs, const char *key, char *out, size_t cap)
{
    size_t kl = strlen(key);

    if (cap == 0)
        return -E2BIG;
    while (qs != NULL && *qs != '\0') {
        size_t n = strcspn(qs, "&");

        if (n > kl && strncmp(qs, key, kl) == 0 && qs[kl] == '=') {
            size_t vl = n - kl - 1;

            if (vl >= cap)
                return -E2BIG;
            memcpy(out, qs + kl + 1, vl);
            out[vl] = '\0';
            return 1;
        }
        if (n == kl && strncmp(qs, key, kl) == 0) {
            out[0] = '\0';
            return 1;
        }
        qs += n;
        if (*qs == '&')
            qs++;
    }
    return 0;
}

int apijson_only_keys(json_t *body, const char *const *keys, const char **bad)
{
    const char *k;
    json_t *v;

    json_object_foreach(body, k, v)
    {
        int known = 0;

        for (size_t i = 0; keys[i] != NULL; i++)
            if (strcmp(keys[i], k) == 0)
                known = 1;
        if (!known) {
            *bad = k;
            return 0;
        }
    }
    return 1;
}

int apijson_int_field(json_t *body, const char *key, int64_t def, int64_t lo, int64_t hi,
                      int null_absent, int64_t *out, char *msg, size_t cap)
{
    json_t *v = json_object_get(body, key);

    *out = def;
    if (v == NULL || (null_absent && json_is_null(v)))
        return 0;
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi) {
        if (msg != NULL)
            snprintf(msg, cap, "\"%s\" must be an integer from %lld to %lld", key, (long long)lo,
                     (long long)hi);
        return -EINVAL;
    }
    *out = json_integer_value(v);
    return 0;
}

int apijson_labels_match(json_t *want, const char *site_labels_json)
{
    /* have: a new reference, released below. */
    json_t *have = json_loads(site_labels_json ? site_labels_json : "{}", 0, NULL), *v;
    const char *k;
    int ok = 1;

    json_object_foreach(want, k, v)
    {
        json_t *hv = json_object_get(have, k);

        if (!json_is_string(v) || !json_is_string(hv) ||
            strcmp(json_string_value(hv), json_string_value(v)) != 0)
            ok = 0;
    }
    json_decref(have);
    return ok;
}

int apijson_parse_object(const uint8_t *data, size_t len, int empty_ok, json_t **out, char *msg,
                         size_t cap)
{
    json_error_t jerr;
    json_t *o;

    if (len == 0 && empty_ok)
        data = (const uint8_t *)"{}", len = 2;
    o = json_loadb(len ? (const char *)data : "", len, JSON_REJECT_DUPLICATES, &jerr);
    if (o == NULL || !json_is_object(o)) {
        snprintf(msg, cap, "body is not a JSON object: %s (line %d)", o ? "wrong type" : jerr.text,
                 jerr.line);
        json_decref(o);
        *out = NULL;
        return -EINVAL;
    }
    *out = o;
    return 0;
}
