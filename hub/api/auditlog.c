/* The API's audit listing: GET /v1/audit, newest first, a page at a time. */
/* SPDX-License-Identifier: MIT */
#include "api_int.h"

#include <jansson.h>

#include "../http/apijson.h"

#define AUDIT_LIMIT_DEFAULT 100
#define AUDIT_LIMIT_MAX     1000

/* --- audit log --- */

static int audit_cb(const struct reg_audit *a, void *arg)
{
    json_t *arr = arg;

    json_array_append_new(
        arr, json_pack("{s:I,s:I,s:s,s:s,s:s,s:s,s:s,s:s}", "id", (json_int_t)a->id, "ts",
                       (json_int_t)a->ts, "actor", a->actor, "remote", a->remote, "action",
                       a->action, "target", a->target, "result", a->result, "detail", a->detail));
    return 0;
}

void audit_list(struct hub *h, struct ureq *r, const struct auth *a, const struct api_match *m)
{
    char v[24];
    int64_t limit = AUDIT_LIMIT_DEFAULT, before = 0;
    json_t *arr, *last;
    const char *qs = api_query_of(r->target);
    int rc;

    if ((rc = apijson_qs_get(qs, "limit", v, sizeof(v))) != 0) {
        limit = rc < 0 ? -1 : api_parse_nonneg(v);
        if (limit < 1 || limit > AUDIT_LIMIT_MAX) {
            ureq_error(r, 400, "bad_request", "limit must be 1 to 1000");
            return;
        }
    }
    if ((rc = apijson_qs_get(qs, "before", v, sizeof(v))) != 0) {
        before = rc < 0 ? -1 : api_parse_nonneg(v);
        if (before < 1) {
            ureq_error(r, 400, "bad_request", "before must be an entry id (a positive integer)");
            return;
        }
    }
    arr = json_array();
    if ((rc = registry_audit_list(h->reg, before, (int)limit, audit_cb, arr)) < 0) {
        json_decref(arr);
        api_error_store(r, rc, "registry read failed");
        return;
    }
    /* A full page may have more behind it: next_before fetches the next. */
    last = json_array_size(arr) == (size_t)limit ? json_array_get(arr, json_array_size(arr) - 1)
                                                 : NULL;
    apijson_respond(r, 200,
                    json_pack("{s:o,s:o}", "entries", arr, "next_before",
                              last ? json_integer(json_integer_value(json_object_get(last, "id")))
                                   : json_null()));
}
