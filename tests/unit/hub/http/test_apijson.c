/* Unit tests of hub/apijson: query-string values, unknown keys, bounded integers, label matching.
 */
/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <jansson.h>
#include <string.h>

#include "hub/http/apijson.h"
#include "testutil.h"

static void qs(void)
{
    char v[8];

    CHECK_EQ_INT(apijson_qs_get("a=1&limit=25&b", "limit", v, sizeof(v)), 1);
    CHECK_EQ_STR(v, "25");
    CHECK_EQ_INT(apijson_qs_get("a=1&b", "b", v, sizeof(v)), 1);
    CHECK_EQ_STR(v, "");
    CHECK_EQ_INT(apijson_qs_get("limits=3&xlimit=4", "limit", v, sizeof(v)), 0);
    CHECK_EQ_INT(apijson_qs_get("", "limit", v, sizeof(v)), 0);
    CHECK_EQ_INT(apijson_qs_get(NULL, "limit", v, sizeof(v)), 0);
    /* 7 bytes fit in 8; 8 do not: an error, never a cut value. */
    CHECK_EQ_INT(apijson_qs_get("limit=1234567", "limit", v, sizeof(v)), 1);
    CHECK_EQ_STR(v, "1234567");
    strcpy(v, "old");
    CHECK_EQ_INT(apijson_qs_get("x=1&limit=12345678&y=2", "limit", v, sizeof(v)), -E2BIG);
    CHECK_EQ_STR(v, "old");
    CHECK_EQ_INT(apijson_qs_get("limit=1", "limit", v, 0), -E2BIG);
}

static void keys(void)
{
    static const char *const known[] = {"name", "labels", "ttl_s", NULL};
    json_t *ok = json_pack("{s:s, s:i}", "name", "a", "ttl_s", 3);
    json_t *bad = json_pack("{s:s, s:i}", "name", "a", "ttl", 3);
    json_t *empty = json_object();
    const char *k = NULL;

    CHECK(ok && bad && empty);
    CHECK_EQ_INT(apijson_only_keys(ok, known, &k), 1);
    CHECK(k == NULL);
    CHECK_EQ_INT(apijson_only_keys(empty, known, &k), 1);
    CHECK_EQ_INT(apijson_only_keys(bad, known, &k), 0);
    CHECK(k != NULL && strcmp(k, "ttl") == 0);
    json_decref(ok);
    json_decref(bad);
    json_decref(empty);
}

static void ints(void)
{
    json_t *b =
        json_pack("{s:i, s:i, s:i, s:n, s:s}", "in", 5, "lo", 0, "hi", 11, "nul", "str", "5");
    char msg[128] = "";
    int64_t out = 0;

    CHECK(b != NULL);
    CHECK_EQ_INT(apijson_int_field(b, "in", 7, 1, 10, 0, &out, msg, sizeof(msg)), 0);
    CHECK_EQ_INT(out, 5);
    CHECK_EQ_INT(apijson_int_field(b, "absent", 7, 1, 10, 0, &out, msg, sizeof(msg)), 0);
    CHECK_EQ_INT(out, 7);
    CHECK_EQ_INT(apijson_int_field(b, "lo", 7, 1, 10, 0, &out, msg, sizeof(msg)), -EINVAL);
    CHECK_EQ_STR(msg, "\"lo\" must be an integer from 1 to 10");
    CHECK_EQ_INT(apijson_int_field(b, "hi", 7, 1, 10, 0, &out, NULL, 0), -EINVAL);
    CHECK_EQ_INT(apijson_int_field(b, "str", 7, 1, 10, 0, &out, NULL, 0), -EINVAL);
    /* null: an error, or the default where the caller says null is absent. */
    CHECK_EQ_INT(apijson_int_field(b, "nul", 7, 1, 10, 0, &out, NULL, 0), -EINVAL);
    CHECK_EQ_INT(apijson_int_field(b, "nul", 7, 1, 10, 1, &out, NULL, 0), 0);
    CHECK_EQ_INT(out, 7);
    json_decref(b);
}

static void labels(void)
{
    json_t *want = json_pack("{s:s, s:s}", "env", "prod", "zone", "eu");
    json_t *nonstr = json_pack("{s:i}", "env", 1);
    json_t *none = json_object();

    CHECK(want && nonstr && none);
    CHECK_EQ_INT(apijson_labels_match(want, "{\"env\":\"prod\",\"zone\":\"eu\",\"x\":\"y\"}"), 1);
    CHECK_EQ_INT(apijson_labels_match(want, "{\"env\":\"prod\"}"), 0);
    CHECK_EQ_INT(apijson_labels_match(want, "{\"env\":\"prod\",\"zone\":\"us\"}"), 0);
    CHECK_EQ_INT(apijson_labels_match(want, "{\"env\":\"prod\",\"zone\":1}"), 0);
    CHECK_EQ_INT(apijson_labels_match(want, NULL), 0);
    CHECK_EQ_INT(apijson_labels_match(want, "not json"), 0);
    CHECK_EQ_INT(apijson_labels_match(nonstr, "{\"env\":\"1\"}"), 0);
    CHECK_EQ_INT(apijson_labels_match(none, NULL), 1);
    json_decref(want);
    json_decref(nonstr);
    json_decref(none);
}

int main(void)
{
    qs();
    keys();
    ints();
    labels();
    TEST_DONE();
}
