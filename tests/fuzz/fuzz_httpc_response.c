/* libFuzzer entry point for the tools' HTTP/1.1 response reader (common/httpc.c: tetherctl and
 * tether-site enroll read the hub's answers with it): bounded, and how the bytes arrive changes
 * nothing. */
/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/httpc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct httpc_response a, b;
    char err[256], err2[256];
    size_t piece;
    int head, rc, rc2;

    if (size < 1)
        return 0;
    /* First byte: bit 7 a HEAD request, the rest a piece size for the second read. */
    head = (data[0] & 0x80) != 0;
    piece = 1 + (data[0] & 0x7f);
    data++;
    size--;
    err[0] = err2[0] = '\0';
    rc = httpc_parse_response(data, size, size ? size : 1, head, &a, err, sizeof(err));
    if (rc != 0 && rc != -EFBIG && rc != -EPROTO && rc != -ENOMEM)
        abort();
    if (rc != 0) {
        /* A refusal says why, in one line, and leaves nothing behind. */
        if (err[0] == '\0' || strchr(err, '\n') != NULL || a.body != NULL || a.status != 0)
            abort();
    } else {
        if (a.status < 200 || a.status > 999 || a.body == NULL || a.body_len > size ||
            a.body[a.body_len] != '\0' ||
            strnlen(a.content_type, sizeof(a.content_type)) >= sizeof(a.content_type))
            abort();
        if (head && a.body_len != 0)
            abort();
    }
    /* The same bytes in small pieces give the same answer. */
    rc2 = httpc_parse_response(data, size, piece, head, &b, err2, sizeof(err2));
    if (rc2 != rc)
        abort();
    if (rc == 0) {
        if (b.status != a.status || b.body_len != a.body_len ||
            memcmp(b.body, a.body, a.body_len) != 0 || strcmp(b.content_type, a.content_type) != 0)
            abort();
        httpc_response_free(&a);
        httpc_response_free(&b);
    }
    return 0;
}
