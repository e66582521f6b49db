/* The hubs of a site's cluster as its hub last told them: parse, compare, keep in STATE/hubs.json.
 */
/* SPDX-License-Identifier: MIT */
#include "hubs.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/config.h"
#include "../common/net.h"

static int endpoint_ok(const char *s)
{
    char host[NET_HOST_MAX + 1];
    int port;

    return s[0] != '\0' && strlen(s) <= TOKEN_ENDPOINT_MAX &&
           net_split_hostport(s, 0, host, &port) == 0;
}

static int entry_from(json_t *o, struct hubs_entry *e)
{
    json_t *pin = json_object_get(o, "pin"), *eps = json_object_get(o, "endpoints"), *ep;
    size_t i;

    if (!json_is_string(pin) || json_string_length(pin) > CRYPTO_PIN_LEN)
        return -EINVAL;
    memcpy(e->pin, json_string_value(pin), json_string_length(pin) + 1);
    if (!crypto_pin_valid(e->pin) || !json_is_array(eps) || json_array_size(eps) > HUBS_EP_MAX)
        return -EINVAL;
    json_array_foreach(eps, i, ep)
    {
        if (!json_is_string(ep) || json_string_length(ep) > TOKEN_ENDPOINT_MAX ||
            strlen(json_string_value(ep)) != json_string_length(ep))
            return -EINVAL;
        memcpy(e->eps[i], json_string_value(ep), json_string_length(ep) + 1);
        if (!endpoint_ok(e->eps[i]))
            return -EINVAL;
        e->n_eps++;
    }
    return 0;
}

int hubs_parse(const char *json, size_t len, struct hubs_list *out)
{
    json_t *root = NULL, *o;
    size_t i;
    int rc = -EINVAL;

    memset(out, 0, sizeof(*out));
    if (json == NULL || len == 0 || len > HUBS_JSON_MAX)
        goto out;
    root = json_loadb(json, len, JSON_REJECT_DUPLICATES, NULL);
    if (!json_is_array(root) || json_array_size(root) == 0 || json_array_size(root) > HUBS_MAX)
        goto out;
    json_array_foreach(root, i, o)
    {
        if (!json_is_object(o) || entry_from(o, &out->hub[i]) != 0)
            goto out;
        out->n++;
    }
    rc = 0;
out:
    json_decref(root);
    if (rc != 0)
        memset(out, 0, sizeof(*out));
    return rc;
}

int hubs_equal(const struct hubs_list *a, const struct hubs_list *b)
{
    if (a->n != b->n)
        return 0;
    for (size_t i = 0; i < a->n; i++) {
        if (strcmp(a->hub[i].pin, b->hub[i].pin) != 0 || a->hub[i].n_eps != b->hub[i].n_eps)
            return 0;
        for (size_t k = 0; k < a->hub[i].n_eps; k++)
            if (strcmp(a->hub[i].eps[k], b->hub[i].eps[k]) != 0)
                return 0;
    }
    return 1;
}

int hubs_load(const char *state, struct hubs_list *out)
{
    char path[4096], *text = NULL;
    FILE *f;
    size_t n;
    int rc;

    memset(out, 0, sizeof(*out));
    if (snprintf(path, sizeof(path), "%s/hubs.json", state) >= (int)sizeof(path))
        return -ENAMETOOLONG;
    f = fopen(path, "r");
    if (f == NULL)
        return -errno;
    text = malloc(HUBS_JSON_MAX + 1);
    n = text ? fread(text, 1, HUBS_JSON_MAX + 1, f) : 0;
    fclose(f);
    rc = text == NULL ? -ENOMEM : hubs_parse(text, n, out);
    free(text);
    return rc;
}

int hubs_save(const char *state, const struct hubs_list *l)
{
    json_t *root = json_array(), *o, *eps;
    char path[4096], *text = NULL;
    int rc = -ENOMEM;

    if (snprintf(path, sizeof(path), "%s/hubs.json", state) >= (int)sizeof(path)) {
        rc = -ENAMETOOLONG;
        goto out;
    }
    for (size_t i = 0; root != NULL && i < l->n; i++) {
        eps = json_array();
        for (size_t k = 0; eps != NULL && k < l->hub[i].n_eps; k++)
            json_array_append_new(eps, json_string(l->hub[i].eps[k]));
        o = json_pack("{s:s,s:o}", "pin", l->hub[i].pin, "endpoints", eps);
        if (o == NULL || json_array_append_new(root, o) != 0)
            goto out;
    }
    text = root ? json_dumps(root, JSON_INDENT(1)) : NULL;
    if (text == NULL)
        goto out;
    rc = config_write_file(path, text, 0644);
out:
    free(text);
    json_decref(root);
    return rc;
}
