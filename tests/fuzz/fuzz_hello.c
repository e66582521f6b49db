/* libFuzzer entry point for the hello JSON a site sends the hub (hub/hello.c): bounded, and
 * everything kept goes back out in JSON (API, registry) intact. */
/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hub/tunnel/hello.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct hello_info h;
    json_t *arr, *s;
    size_t strings = 0, i;
    json_t *v;
    int rc;

    /* The hub keeps at most 64 KiB of a hello. */
    if (size > 64 * 1024)
        return 0;
    rc = hello_parse(data, size, &h);
    if (rc != 0) {
        if (rc != -EINVAL && rc != -ENOMEM)
            abort();
        if (h.services != NULL || h.services_json != NULL || h.agent_version[0] != '\0')
            abort();
        return 0;
    }
    /* The version fits, and is valid UTF-8: the API sends it in JSON. */
    if (strnlen(h.agent_version, sizeof(h.agent_version)) >= sizeof(h.agent_version))
        abort();
    s = json_string(h.agent_version);
    if (s == NULL)
        abort();
    json_decref(s);
    /* services_json is a JSON array whose string members are services[]. */
    if (h.services_json == NULL) {
        if (h.n_services != 0)
            abort();
    } else {
        arr = json_loads(h.services_json, 0, NULL);
        if (arr == NULL || !json_is_array(arr))
            abort();
        json_array_foreach(arr, i, v)
        {
            if (!json_is_string(v))
                continue;
            if (strings >= h.n_services || strcmp(json_string_value(v), h.services[strings]) != 0)
                abort();
            strings++;
        }
        if (strings != h.n_services)
            abort();
        json_decref(arr);
    }
    hello_info_free(&h);
    return 0;
}
