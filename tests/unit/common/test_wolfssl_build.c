/* Checks the linked wolfSSL is the build CMake claims, and that its AES-GCM works. */
/* SPDX-License-Identifier: MIT */
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
#include <wolfssl/version.h>
#include <wolfssl/wolfcrypt/aes.h>
#include <wolfssl/wolfcrypt/ecc.h>
#include <wolfssl/wolfcrypt/error-crypt.h>
#include <wolfssl/wolfcrypt/random.h>

#include <stdint.h>
#include <time.h>

#include "testutil.h"

#ifndef TETHER_WOLFSSL_BUILD
#error "TETHER_WOLFSSL_BUILD must come from cmake/wolfssl.cmake"
#endif

/* The options a source build must have; a missing one fails the test by name. */
static void check_source_options(int want_aesni)
{
    int aesni = 0, tls13 = 0, alpn = 0, sni = 0, verify_cb = 0, alt_names = 0, gcm = 0;
    int ed25519 = 0, x25519 = 0, ecc = 0, certgen = 0, keygen = 0, der_to_pem = 0;
    int sp_ecc = 0, sp_x86_64_asm = 0;
#ifdef WOLFSSL_AESNI
    aesni = 1;
#endif
#ifdef WOLFSSL_TLS13
    tls13 = 1;
#endif
#ifdef HAVE_ALPN
    alpn = 1;
#endif
#ifdef HAVE_SNI
    sni = 1;
#endif
#ifdef WOLFSSL_ALWAYS_VERIFY_CB
    verify_cb = 1;
#endif
#ifdef WOLFSSL_ALT_NAMES
    alt_names = 1;
#endif
#ifdef HAVE_AESGCM
    gcm = 1;
#endif
#ifdef HAVE_ED25519
    ed25519 = 1;
#endif
#ifdef HAVE_CURVE25519
    x25519 = 1;
#endif
#ifdef HAVE_ECC
    ecc = 1;
#endif
#ifdef WOLFSSL_CERT_GEN
    certgen = 1;
#endif
#ifdef WOLFSSL_KEY_GEN
    keygen = 1;
#endif
#ifdef WOLFSSL_DER_TO_PEM
    der_to_pem = 1;
#endif
#ifdef WOLFSSL_HAVE_SP_ECC
    sp_ecc = 1;
#endif
#ifdef WOLFSSL_SP_X86_64_ASM
    sp_x86_64_asm = 1;
#endif
    if (want_aesni)
        CHECK(aesni);
    CHECK(tls13);
    CHECK(alpn);
    CHECK(sni);
    CHECK(verify_cb);
    CHECK(alt_names);
    CHECK(gcm);
    CHECK(ed25519);
    CHECK(x25519);
    CHECK(ecc);
    CHECK(certgen);
    CHECK(keygen);
    CHECK(der_to_pem);
    /* deploy/build-wolfssl.sh: single-precision P-256, with assembly on
     * x86-64 (a prefix built by an older recipe lacks it: rebuild it). */
    CHECK(sp_ecc);
#if defined(__x86_64__)
    CHECK(sp_x86_64_asm);
#else
    (void)sp_x86_64_asm;
#endif
}

/* "5.7.2-0.1+deb13u2" or "5.7.2" names library "5.7.2"; "5.7.20" does not.
 * (strchr also matches the terminating NUL, which is the exact-match case.) */
static int version_names(const char *claimed, const char *lib)
{
    size_t n = strlen(lib);
    return strncmp(claimed, lib, n) == 0 && strchr("-+~", claimed[n]) != NULL;
}

#ifdef HAVE_AESGCM
static int unhex(const char *hex, unsigned char *out, size_t cap)
{
    size_t n = strlen(hex) / 2;
    if (n > cap)
        return -1;
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        if (sscanf(hex + 2 * i, "%2x", &v) != 1)
            return -1;
        out[i] = (unsigned char)v;
    }
    return (int)n;
}

/* GCM spec (McGrew & Viega) test case 4: AES-128 with associated data. */
static void check_gcm_known_answer(void)
{
    unsigned char key[16], iv[12], aad[20], pt[60], ct[60], tag[16];
    unsigned char out[60], back[60], got_tag[16];
    Aes aes;

    CHECK_EQ_INT(unhex("feffe9928665731c6d6a8f9467308308", key, sizeof(key)), 16);
    CHECK_EQ_INT(unhex("cafebabefacedbaddecaf888", iv, sizeof(iv)), 12);
    CHECK_EQ_INT(unhex("feedfacedeadbeeffeedfacedeadbeefabaddad2", aad, sizeof(aad)), 20);
    CHECK_EQ_INT(unhex("d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
                       "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39",
                       pt, sizeof(pt)),
                 60);
    CHECK_EQ_INT(unhex("42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e"
                       "21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091",
                       ct, sizeof(ct)),
                 60);
    CHECK_EQ_INT(unhex("5bc94fbc3221a5db94fae95ae7121a47", tag, sizeof(tag)), 16);

    CHECK_EQ_INT(wc_AesInit(&aes, NULL, INVALID_DEVID), 0);
    CHECK_EQ_INT(wc_AesGcmSetKey(&aes, key, sizeof(key)), 0);
    CHECK_EQ_INT(wc_AesGcmEncrypt(&aes, out, pt, sizeof(pt), iv, sizeof(iv), got_tag,
                                  sizeof(got_tag), aad, sizeof(aad)),
                 0);
    CHECK(memcmp(out, ct, sizeof(ct)) == 0);
    CHECK(memcmp(got_tag, tag, sizeof(tag)) == 0);
    CHECK_EQ_INT(wc_AesGcmDecrypt(&aes, back, ct, sizeof(ct), iv, sizeof(iv), tag, sizeof(tag), aad,
                                  sizeof(aad)),
                 0);
    CHECK(memcmp(back, pt, sizeof(pt)) == 0);
    wc_AesFree(&aes);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* 1 MiB round trip, tamper detection, and the throughput to show in the log. */
static void check_gcm_bulk(void)
{
    enum { SZ = 1 << 20 };
    unsigned char key[16], iv[12], aad[13], tag[16];
    unsigned char *pt = malloc(SZ), *ct = malloc(SZ), *back = malloc(SZ);
    uint32_t x = 0x9e3779b9u;
    Aes aes;

    CHECK(pt != NULL && ct != NULL && back != NULL);
    if (pt == NULL || ct == NULL || back == NULL)
        goto out;
    /* xorshift32: deterministic, not constant, so a no-op cipher cannot pass. */
    for (size_t i = 0; i < SZ; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        pt[i] = (unsigned char)x;
    }
    memcpy(key, pt, sizeof(key));
    memcpy(iv, pt + 16, sizeof(iv));
    memcpy(aad, pt + 32, sizeof(aad));

    CHECK_EQ_INT(wc_AesInit(&aes, NULL, INVALID_DEVID), 0);
    CHECK_EQ_INT(wc_AesGcmSetKey(&aes, key, sizeof(key)), 0);
    CHECK_EQ_INT(
        wc_AesGcmEncrypt(&aes, ct, pt, SZ, iv, sizeof(iv), tag, sizeof(tag), aad, sizeof(aad)), 0);
    CHECK(memcmp(ct, pt, SZ) != 0);
    CHECK_EQ_INT(
        wc_AesGcmDecrypt(&aes, back, ct, SZ, iv, sizeof(iv), tag, sizeof(tag), aad, sizeof(aad)),
        0);
    CHECK(memcmp(back, pt, SZ) == 0);

    /* The last byte: covered by the tag like every other. */
    ct[SZ - 1] ^= 1;
    CHECK_EQ_INT(
        wc_AesGcmDecrypt(&aes, back, ct, SZ, iv, sizeof(iv), tag, sizeof(tag), aad, sizeof(aad)),
        AES_GCM_AUTH_E);
    ct[SZ - 1] ^= 1;
    tag[0] ^= 0x80;
    CHECK_EQ_INT(
        wc_AesGcmDecrypt(&aes, back, ct, SZ, iv, sizeof(iv), tag, sizeof(tag), aad, sizeof(aad)),
        AES_GCM_AUTH_E);

    /* Informational only: machines differ too much for a threshold. */
    int rounds = 0;
    double t0 = now_s(), dt = 0;
    do {
        if (wc_AesGcmEncrypt(&aes, ct, pt, SZ, iv, sizeof(iv), tag, sizeof(tag), aad,
                             sizeof(aad)) != 0)
            break;
        rounds++;
        dt = now_s() - t0;
    } while (dt < 0.3 && rounds < 2048);
    CHECK(rounds > 0);
    if (rounds > 0 && dt > 0)
        printf("AES-128-GCM encrypt: %.0f MB/s (%d x 1 MiB in %.3f s)\n",
               (double)rounds * SZ / 1e6 / dt, rounds, dt);
    wc_AesFree(&aes);
out:
    free(pt);
    free(ct);
    free(back);
}
#endif /* HAVE_AESGCM */

#ifdef HAVE_ECC
/* P-256 sign, verify and a refused tampered hash with the linked code (the
 * single-precision assembly on a source build), and its sign rate. */
static void check_p256(void)
{
    ecc_key key;
    WC_RNG rng;
    byte hash[32], sig[80];
    word32 sig_len;
    int ok = 0, n = 0;
    struct timespec a, b;
    double dt = 0;

    memset(hash, 0xa5, sizeof(hash));
    CHECK(wc_InitRng(&rng) == 0);
    CHECK(wc_ecc_init(&key) == 0);
    CHECK(wc_ecc_make_key_ex(&rng, 32, &key, ECC_SECP256R1) == 0);
    sig_len = sizeof(sig);
    CHECK(wc_ecc_sign_hash(hash, sizeof(hash), sig, &sig_len, &rng, &key) == 0);
    CHECK(wc_ecc_verify_hash(sig, sig_len, hash, sizeof(hash), &ok, &key) == 0 && ok == 1);
    hash[0] ^= 1;
    ok = 1;
    CHECK(wc_ecc_verify_hash(sig, sig_len, hash, sizeof(hash), &ok, &key) == 0 && ok == 0);
    clock_gettime(CLOCK_MONOTONIC, &a);
    do {
        sig_len = sizeof(sig);
        if (wc_ecc_sign_hash(hash, sizeof(hash), sig, &sig_len, &rng, &key) != 0)
            break;
        n++;
        clock_gettime(CLOCK_MONOTONIC, &b);
        dt = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
    } while (dt < 0.2);
    printf("P-256 ECDSA sign: %.0f/s\n", dt > 0 ? n / dt : 0.0);
    wc_ecc_free(&key);
    wc_FreeRng(&rng);
}
#endif

int main(void)
{
    const char *build = TETHER_WOLFSSL_BUILD;
    const char *lib = wolfSSL_lib_version();
    const char *sp = strchr(build, ' ');

    printf("TETHER_WOLFSSL_BUILD: %s\n", build);
    printf("wolfSSL_lib_version(): %s (headers %s)\n", lib, LIBWOLFSSL_VERSION_STRING);

    /* Headers and library from the same wolfSSL, and the one CMake named. */
    CHECK_EQ_STR(lib, LIBWOLFSSL_VERSION_STRING);
    CHECK(sp != NULL);
    if (sp != NULL) {
        size_t flen = (size_t)(sp - build);
        int known = (flen == 12 && strncmp(build, "source-aesni", 12) == 0) ||
                    (flen == 6 && strncmp(build, "source", 6) == 0) ||
                    (flen == 6 && strncmp(build, "system", 6) == 0);
        CHECK(known);
        CHECK(version_names(sp + 1, lib));
    }

    if (strncmp(build, "source", 6) == 0)
        check_source_options(strncmp(build, "source-aesni", 12) == 0);
#ifdef HAVE_ECC
    check_p256();
#endif

#ifdef HAVE_AESGCM
    check_gcm_known_answer();
    check_gcm_bulk();
#else
    /* A source build is configured with --enable-aesgcm. */
    CHECK(strncmp(build, "source", 6) != 0);
    printf("AES-GCM not in this wolfSSL\n");
#endif
    fflush(stdout);
    TEST_DONE();
}
