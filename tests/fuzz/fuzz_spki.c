/* libFuzzer entry point for the DER walk to a certificate's public key (the pin check, run before
 * authentication) and on to its IP subjectAltNames. */
/* SPDX-License-Identifier: MIT */
#include <stdlib.h>
#include <string.h>

#include "common/crypto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *spki = NULL;
    size_t spki_len = 0;
    char pin[CRYPTO_PIN_LEN + 1], again[CRYPTO_PIN_LEN + 1];
    uint8_t *copy;
    static const uint8_t lo4[4] = {127, 0, 0, 1};
    int rc = crypto_spki_from_cert(data, size, &spki, &spki_len);
    int prc = crypto_pin_from_cert(data, size, pin);

    /* The IP SAN walk after the key (https:// services) stays in bounds and
     * finds nothing where there is no key. */
    if (crypto_cert_has_ip(data, size, lo4, 4) && rc != 0)
        abort();

    /* The pin exists exactly when the walk finds a key. */
    if ((rc == 0) != (prc == 0))
        abort();
    if (rc != 0)
        return 0;
    /* The key lies inside the input, is a SEQUENCE, and is not the whole
     * certificate (which holds at least a signature after it). */
    if (spki < data || spki_len < 2 || spki_len >= size || spki + spki_len > data + size ||
        spki[0] != 0x30)
        abort();
    if (!crypto_pin_valid(pin))
        abort();
    /* The pin is the SHA-256 of exactly those bytes: a copy gives the same. */
    copy = malloc(size);
    if (copy == NULL)
        return 0;
    memcpy(copy, data, size);
    if (crypto_pin_from_cert(copy, size, again) != 0 || !crypto_pin_equal(pin, again))
        abort();
    /* Flipping a byte of the key (its BIT STRING's last byte) changes the pin. */
    copy[spki + spki_len - 1 - data] ^= 0x01;
    if (crypto_pin_from_cert(copy, size, again) == 0 && crypto_pin_equal(pin, again))
        abort();
    free(copy);
    /* A certificate is one whole DER element: no prefix of it, and nothing
     * longer, is one too. */
    if (crypto_spki_from_cert(data, size - 1, &spki, &spki_len) == 0)
        abort();
    return 0;
}
