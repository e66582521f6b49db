/* libFuzzer entry point for the CONNECT reply parser (common/proxyconnect.c) that the agent,
 * httpc and doctor share: it reads the proxy's bytes before TLS. */
/* SPDX-License-Identifier: MIT */
#include <stdlib.h>
#include <string.h>

#include "common/proxyconnect.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static enum proxyconnect_result feed(const uint8_t *data, size_t size, size_t piece,
                                     struct proxyconnect_reply *r, size_t *used)
{
    enum proxyconnect_result res = PROXYCONNECT_NEED_MORE;
    size_t off = 0, u;

    proxyconnect_reply_init(r);
    *used = 0;
    while (off < size && res == PROXYCONNECT_NEED_MORE) {
        size_t n = size - off < piece ? size - off : piece;
        u = 0;
        res = proxyconnect_reply_feed(r, data + off, n, &u);
        if (u > n)
            abort();
        *used += u;
        off += n;
    }
    return res;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct proxyconnect_reply whole, bytes;
    size_t used = 0, used1 = 0;
    enum proxyconnect_result res = feed(data, size, size ? size : 1, &whole, &used);
    enum proxyconnect_result res1 = feed(data, size, 1, &bytes, &used1);

    /* The piece size the bytes arrive in changes nothing. */
    if (res != res1 || whole.error != bytes.error)
        abort();
    if (res == PROXYCONNECT_ERROR) {
        if (whole.error == PROXYCONNECT_ERR_NONE)
            abort();
        if (whole.error == PROXYCONNECT_ERR_TOO_LONG && size < PROXYCONNECT_REPLY_MAX)
            abort();
        return 0;
    }
    if (res == PROXYCONNECT_NEED_MORE) {
        if (size >= PROXYCONNECT_REPLY_MAX)
            abort();
        return 0;
    }
    /* OK: a status, a header ending in LF within the bound, a printable reason. */
    if (whole.status < 100 || whole.status > 999 || whole.status != bytes.status)
        abort();
    if (used != used1 || used < 13 || used > size || used > PROXYCONNECT_REPLY_MAX ||
        data[used - 1] != '\n')
        abort();
    if (strnlen(whole.reason, sizeof(whole.reason)) >= sizeof(whole.reason) ||
        strcmp(whole.reason, bytes.reason) != 0)
        abort();
    for (const char *p = whole.reason; *p; p++)
        if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
            abort();
    /* One byte less is not a whole header yet. */
    if (feed(data, used - 1, used, &bytes, &used1) != PROXYCONNECT_NEED_MORE)
        abort();
    return 0;
}
