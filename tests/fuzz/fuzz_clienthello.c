/* libFuzzer entry point for clienthello_parse: no crash, no overread, consistent answers. */
/* SPDX-License-Identifier: MIT */
#include "common/clienthello.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct clienthello_info info;
    int rc = clienthello_parse(data, size, &info);

    if (rc != 0 && rc != -EAGAIN && rc != -EPROTO)
        abort();
    if (rc == 0) {
        if (strnlen(info.sni, sizeof(info.sni)) >= sizeof(info.sni))
            abort();
        if (info.alpn & ~0xfu)
            abort();
        /* Alone, a protocol bit implies the extension was there. */
        if ((info.alpn & 0x7u) != 0 && (info.alpn & CLIENTHELLO_ALPN_ANY) == 0)
            abort();
    } else if (info.alpn != 0 || info.sni[0] != '\0') {
        abort();
    }
    if (rc == -EAGAIN && size >= CLIENTHELLO_READ_MAX)
        abort();
    /* Extra bytes after a complete ClientHello change nothing, and a shorter
     * input never succeeds where the full one is refused. */
    if (size > 0) {
        struct clienthello_info shorter;
        int rc2 = clienthello_parse(data, size - 1, &shorter);
        if (rc2 == 0 &&
            (rc != 0 || shorter.alpn != info.alpn || strcmp(shorter.sni, info.sni) != 0))
            abort();
        if (rc == -EPROTO && rc2 == 0)
            abort();
    }
    return 0;
}
