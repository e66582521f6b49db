/* The site's hello answer (GET /.tether/hello on its tunnel): parsing and checking of the JSON it
 * sends. */
/* SPDX-License-Identifier: MIT */
#include "hello.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/token.h"

static int version_ok(const char *v)
{
    size_t n = strlen(v);

    if (n == 0 || n > HELLO_VERSION_MAX)
        return 0;
    for (; *v; v++)
        if ((unsigned char)*v < 0x20 || (unsigned char)*v >= 0x7f)
            return 0;
    return 1;
}

void hello_info_free(struct hello_info *h)
{
    for (size_t i = 0; i < h->n_services; i++)
        free(h->services[i]);
    free(h->services);
    free(h->services_json);
    for (size_t i = 0; i < h->n_restricted; i++)
        free(h->restricted[i]);
    free(h->restricted);
    free(h->restricted_json);
    memset(h, 0, sizeof(*h));
}

/* Returns the reason; bad gets a cut copy of the value to blame, if any. */
/* 1 if the array arr holds the string s before index end. */
static int has_before(json_t *arr, size_t end, const char *s)
{
    for (size_t j = 0; j < end; j++)
        if (strcmp(json_string_value(json_array_get(arr, j)), s) == 0)
            return 1;
    return 0;
}

/* The optional "restricted" list: services of svc (checked already), each once. */
static const char *check_restricted(json_t *svc, json_t *res, char *bad, size_t bad_cap)
{
    json_t *v;
    size_t i;

    if (res == NULL)
        return NULL;
    if (!json_is_array(res) || json_array_size(res) > HELLO_SERVICES_MAX)
        return "restricted is not a list of at most 64 names";
    json_array_foreach(res, i, v)
    {
        if (!json_is_string(v) || !has_before(svc, json_array_size(svc), json_string_value(v)) ||
            has_before(res, i, json_string_value(v))) {
            if (json_is_string(v))
                snprintf(bad, bad_cap, "%s", json_string_value(v));
            return "a restricted name is not one of the services, or is given twice";
        }
    }
    return NULL;
}

static const char *check(json_t *root, char *bad, size_t bad_cap)
{
    json_t *ver, *svc, *v;
    size_t i;

    if (!json_is_object(root))
        return "hello is not a JSON object";
    ver = json_object_get(root, "agent_version");
    svc = json_object_get(root, "services");
    if (!json_is_string(ver) || !version_ok(json_string_value(ver))) {
        if (json_is_string(ver))
            snprintf(bad, bad_cap, "%s", json_string_value(ver));
        return "agent_version is not 1-63 printable ASCII characters";
    }
    if (!json_is_array(svc) || json_array_size(svc) > HELLO_SERVICES_MAX)
        return "services is not a list of at most 64 names";
    json_array_foreach(svc, i, v)
    {
        if (!json_is_string(v) || !token_name_valid(json_string_value(v))) {
            if (json_is_string(v))
                snprintf(bad, bad_cap, "%s", json_string_value(v));
            return "a service name is not [a-z0-9][a-z0-9-]{0,62}";
        }
    }
    return check_restricted(svc, json_object_get(root, "restricted"), bad, bad_cap);
}

/* Copies the strings of arr (checked) into *out, n_out counting them. */
static int copy_names(json_t *arr, char ***out, size_t *n_out)
{
    json_t *v;
    size_t i, n = json_array_size(arr);

    *out = calloc(n ? n : 1, sizeof(**out));
    if (*out == NULL)
        return -ENOMEM;
    json_array_foreach(arr, i, v)
    {
        if (((*out)[*n_out] = strdup(json_string_value(v))) == NULL)
            return -ENOMEM;
        (*n_out)++;
    }
    return 0;
}

int hello_parse(const uint8_t *body, size_t len, struct hello_info *out)
{
    json_error_t jerr;
    json_t *root, *svc, *res;
    const char *why;
    char bad[sizeof(out->bad)] = "";
    int rc = -EINVAL;

    memset(out, 0, sizeof(*out));
    /* root: new reference, released at out. */
    root = json_loadb((const char *)body, len, 0, &jerr);
    why = root == NULL ? "hello is not JSON" : check(root, bad, sizeof(bad));
    if (why != NULL)
        goto out;
    rc = -ENOMEM;
    why = "out of memory";
    svc = json_object_get(root, "services");
    res = json_object_get(root, "restricted");
    snprintf(out->agent_version, sizeof(out->agent_version), "%s",
             json_string_value(json_object_get(root, "agent_version")));
    out->services_json = json_dumps(svc, JSON_COMPACT);
    out->restricted_json = res ? json_dumps(res, JSON_COMPACT) : strdup("[]");
    if (out->services_json == NULL || out->restricted_json == NULL ||
        copy_names(svc, &out->services, &out->n_services) != 0 ||
        (res != NULL && copy_names(res, &out->restricted, &out->n_restricted) != 0))
        goto out;
    why = NULL;
    rc = 0;
out:
    json_decref(root);
    if (rc != 0) {
        hello_info_free(out);
        out->why = why;
        snprintf(out->bad, sizeof(out->bad), "%s", bad);
    }
    return rc;
}
