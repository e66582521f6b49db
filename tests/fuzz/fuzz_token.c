/* libFuzzer entry point for token_enroll_decode: no crash; what decodes re-encodes the same. */
/* SPDX-License-Identifier: MIT */
#include "common/token.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct token_enroll t, back;
    char *text, out[TOKEN_ENCODED_MAX + 1];

    /* The decoder takes a C string; an exact-size copy keeps ASan's eye on its end. */
    text = malloc(size + 1);
    if (text == NULL)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    if (token_enroll_decode(text, &t) == 0) {
        if (!token_name_valid(t.site) || t.n_hubs < 1 || t.n_hubs > TOKEN_HUB_MAX ||
            !crypto_pin_valid(t.pin) || t.expires_at <= 0)
            abort();
        /* Anything accepted must survive our own encoder and decode the same. */
        if (token_enroll_encode(&t, out, sizeof(out)) != 0)
            abort();
        if (token_enroll_decode(out, &back) != 0)
            abort();
        if (strcmp(back.site, t.site) != 0 || back.n_hubs != t.n_hubs ||
            strcmp(back.pin, t.pin) != 0 || back.expires_at != t.expires_at ||
            memcmp(back.secret, t.secret, sizeof(t.secret)) != 0)
            abort();
        for (size_t i = 0; i < t.n_hubs; i++) {
            if (strcmp(back.hubs[i], t.hubs[i]) != 0)
                abort();
        }
    }
    free(text);
    return 0;
}
