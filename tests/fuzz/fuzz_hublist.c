/* libFuzzer entry point for the cluster's hub list a hub sends a site (site/hubs.c): bounded, and
 * what it keeps is only valid pins and endpoints. */
/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/net.h"
#include "site/hubs.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct hubs_list l, again;
    char host[NET_HOST_MAX + 1];
    int port;

    if (hubs_parse((const char *)data, size, &l) != 0) {
        if (l.n != 0)
            abort();
        return 0;
    }
    if (size > HUBS_JSON_MAX || l.n == 0 || l.n > HUBS_MAX)
        abort();
    for (size_t i = 0; i < l.n; i++) {
        if (!crypto_pin_valid(l.hub[i].pin) || l.hub[i].n_eps > HUBS_EP_MAX)
            abort();
        for (size_t k = 0; k < l.hub[i].n_eps; k++)
            if (strnlen(l.hub[i].eps[k], TOKEN_ENDPOINT_MAX + 1) > TOKEN_ENDPOINT_MAX ||
                net_split_hostport(l.hub[i].eps[k], 0, host, &port) != 0)
                abort();
    }
    /* The same input gives the same list. */
    if (hubs_parse((const char *)data, size, &again) != 0 || !hubs_equal(&l, &again))
        abort();
    return 0;
}
