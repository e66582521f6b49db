/* libFuzzer entry point for the CONNECT reply parser the site's two dialers share (site/dial.c,
 * used by common/httpc.c and site/agent.c): it reads the proxy's bytes before TLS. */
/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "site/dial.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_reason(const char *reason, size_t cap)
{
    size_t n = strnlen(reason, cap);
    if (n >= cap)
        abort();
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)reason[i] < 0x20 || (unsigned char)reason[i] >= 0x7f)
            abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *copy;
    int status = -1, st2 = -1;
    size_t hdr = 0, hdr2 = 0;
    char reason[64], small[4];
    int rc = dial_connect_reply(data, size, &status, &hdr, reason, sizeof(reason));

    if (rc != 0 && rc != -EAGAIN && rc != -EMSGSIZE && rc != -EPROTO)
        abort();
    if (rc == -EAGAIN && size >= DIAL_REPLY_MAX)
        abort();
    if (rc == -EMSGSIZE && size < DIAL_REPLY_MAX)
        abort();
    if (rc != 0) {
        /* A refused or incomplete reply stays so for any prefix (the dialers
         * feed it byte by byte): never a status from fewer bytes. */
        if (size > 0 && dial_connect_reply(data, size / 2, &st2, &hdr2, NULL, 0) == 0)
            abort();
        return 0;
    }
    if (status < 100 || status > 999 || hdr < 13 || hdr > size || hdr > DIAL_REPLY_MAX)
        abort();
    if (data[hdr - 1] != '\n')
        abort();
    check_reason(reason, sizeof(reason));
    /* Exactly the header, in a buffer of its own size, gives the same
     * answer; one byte less is not complete yet. The bytes after it (the
     * start of the tunnel) change nothing. */
    copy = malloc(hdr);
    if (copy == NULL)
        return 0;
    memcpy(copy, data, hdr);
    if (dial_connect_reply(copy, hdr, &st2, &hdr2, small, sizeof(small)) != 0 || st2 != status ||
        hdr2 != hdr)
        abort();
    check_reason(small, sizeof(small));
    if (strncmp(small, reason, sizeof(small) - 1) != 0)
        abort();
    if (dial_connect_reply(copy, hdr - 1, &st2, &hdr2, NULL, 0) != -EAGAIN)
        abort();
    free(copy);
    return 0;
}
