/* Unit tests of the hello parser (hub/tunnel/hello.h): services and the optional restricted list.
 */
/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "hub/tunnel/hello.h"
#include "testutil.h"

static int parse(const char *js, struct hello_info *out)
{
    return hello_parse((const uint8_t *)js, strlen(js), out);
}

/* -EINVAL, and why mentions word. */
static void refused(const char *js, const char *word)
{
    struct hello_info hi;

    CHECK_EQ_INT(parse(js, &hi), -EINVAL);
    CHECK(hi.why != NULL && strstr(hi.why, word) != NULL);
    CHECK(hi.services == NULL && hi.restricted == NULL);
    hello_info_free(&hi);
}

int main(void)
{
    struct hello_info hi;
    char big[8192];
    size_t n;

    /* An older agent: no "restricted" at all. */
    CHECK_EQ_INT(parse("{\"agent_version\":\"1.0\",\"services\":[\"web\",\"db\"]}", &hi), 0);
    CHECK_EQ_INT((int)hi.n_services, 2);
    CHECK_EQ_INT((int)hi.n_restricted, 0);
    CHECK_EQ_STR(hi.restricted_json, "[]");
    hello_info_free(&hi);

    CHECK_EQ_INT(parse("{\"agent_version\":\"1.1\",\"services\":[\"web\",\"db\"],"
                       "\"restricted\":[\"db\"]}",
                       &hi),
                 0);
    CHECK_EQ_INT((int)hi.n_restricted, 1);
    CHECK_EQ_STR(hi.restricted[0], "db");
    CHECK_EQ_STR(hi.restricted_json, "[\"db\"]");
    hello_info_free(&hi);
    CHECK(hi.restricted == NULL && hi.n_restricted == 0);

    CHECK_EQ_INT(parse("{\"agent_version\":\"1\",\"services\":[],\"restricted\":[]}", &hi), 0);
    hello_info_free(&hi);

    /* Each restricted name is one of the services, given once; a list. */
    refused("{\"agent_version\":\"1\",\"services\":[\"web\"],\"restricted\":[\"db\"]}",
            "restricted");
    refused("{\"agent_version\":\"1\",\"services\":[\"db\"],\"restricted\":[\"db\",\"db\"]}",
            "twice");
    refused("{\"agent_version\":\"1\",\"services\":[\"db\"],\"restricted\":\"db\"}", "restricted");
    refused("{\"agent_version\":\"1\",\"services\":[\"db\"],\"restricted\":[1]}", "restricted");
    refused("{\"agent_version\":\"1\",\"services\":[\"db\"],\"restricted\":null}", "restricted");
    /* Bounded: at most 64 names. */
    n = (size_t)snprintf(big, sizeof(big),
                         "{\"agent_version\":\"1\",\"services\":[\"db\"],"
                         "\"restricted\":[");
    for (int i = 0; i < 65; i++)
        n += (size_t)snprintf(big + n, sizeof(big) - n, "%s\"db\"", i ? "," : "");
    snprintf(big + n, sizeof(big) - n, "]}");
    refused(big, "at most 64");
    /* The bad value is reported for the log. */
    CHECK_EQ_INT(
        parse("{\"agent_version\":\"1\",\"services\":[\"a\"],\"restricted\":[\"zz\"]}", &hi),
        -EINVAL);
    CHECK_EQ_STR(hi.bad, "zz");
    hello_info_free(&hi);
    TEST_DONE();
}
