/* The site's hello answer (GET /.tether/hello on its tunnel): parsing of the JSON it sends. */
/* SPDX-License-Identifier: MIT */
#include "hello.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

/* Copies s into dst (cap bytes with the NUL), cutting before a partial UTF-8
 * character: the version goes back out in JSON, which must stay valid. */
static void copy_utf8(char *dst, size_t cap, const char *s)
{
    size_t n = strnlen(s, cap);

    if (n >= cap) {
        n = cap - 1;
        while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
            n--;
    }
    memcpy(dst, s, n);
    dst[n] = '\0';
}

void hello_info_free(struct hello_info *h)
{
    for (size_t i = 0; i < h->n_services; i++)
        free(h->services[i]);
    free(h->services);
    free(h->services_json);
    memset(h, 0, sizeof(*h));
}

int hello_parse(const uint8_t *body, size_t len, struct hello_info *out)
{
    json_error_t jerr;
    json_t *root, *svc, *ver, *v;
    size_t i, n;
    int rc = -EINVAL;

    memset(out, 0, sizeof(*out));
    /* root: new reference, released at out. */
    root = json_loadb((const char *)body, len, 0, &jerr);
    if (root == NULL || !json_is_object(root))
        goto out;
    rc = -ENOMEM;
    ver = json_object_get(root, "agent_version");
    svc = json_object_get(root, "services");
    if (json_is_string(ver))
        copy_utf8(out->agent_version, sizeof(out->agent_version), json_string_value(ver));
    if (json_is_array(svc)) {
        n = json_array_size(svc);
        out->services_json = json_dumps(svc, JSON_COMPACT);
        out->services = calloc(n ? n : 1, sizeof(*out->services));
        if (out->services_json == NULL || out->services == NULL)
            goto out;
        json_array_foreach(svc, i, v)
        {
            if (!json_is_string(v))
                continue;
            if ((out->services[out->n_services] = strdup(json_string_value(v))) == NULL)
                goto out;
            out->n_services++;
        }
    }
    rc = 0;
out:
    json_decref(root);
    if (rc != 0)
        hello_info_free(out);
    return rc;
}
