/* Unit tests for common/crypto.c: encodings, pins checked against OpenSSL, certificates in TLS. */
/* SPDX-License-Identifier: MIT */
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
#include <wolfssl/wolfcrypt/asn_public.h>

#include "common/crypto.h"
#include "testutil.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <dirent.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static char g_dir[] = "/tmp/tether-test-crypto-XXXXXX";
static int g_have_openssl;

/* Runs a shell command and returns its first output line (trimmed) in out. */
static int run(const char *cmd, char *out, size_t cap)
{
    FILE *f = popen(cmd, "r");
    size_t n = 0;

    out[0] = '\0';
    if (f == NULL)
        return -1;
    if (fgets(out, (int)cap, f) != NULL) {
        n = strlen(out);
        while (n > 0 && (out[n - 1] == '\n' || out[n - 1] == '\r'))
            out[--n] = '\0';
    }
    return pclose(f);
}

/* Reads a whole command output (up to cap-1 bytes). */
static size_t run_all(const char *cmd, char *out, size_t cap)
{
    FILE *f = popen(cmd, "r");
    size_t n = 0;

    if (f == NULL)
        return 0;
    n = fread(out, 1, cap - 1, f);
    out[n] = '\0';
    pclose(f);
    return n;
}

static int read_file(const char *path, uint8_t *buf, size_t cap, size_t *len)
{
    FILE *f = fopen(path, "rb");

    if (f == NULL)
        return -1;
    *len = fread(buf, 1, cap, f);
    fclose(f);
    return 0;
}

/* The file at old_path holds exactly want[0..len); the key at key_path (the
 * directory's hub.key) is mode 0600 and loads with pin. */
static void check_key(const char *old_path, const char *key_path, const uint8_t *want, size_t len,
                      const char *pin)
{
    struct crypto_identity loaded;
    uint8_t file[8192];
    size_t flen = 0;
    struct stat st;

    CHECK_EQ_INT(read_file(old_path, file, sizeof(file), &flen), 0);
    CHECK(flen == len && memcmp(file, want, len) == 0);
    CHECK_EQ_INT(stat(key_path, &st), 0);
    CHECK_EQ_INT(st.st_mode & 0777, 0600);
    CHECK_EQ_INT(crypto_identity_load(g_dir, "hub", &loaded), 0);
    CHECK_EQ_STR(loaded.pin, pin);
    crypto_identity_free(&loaded);
}

static void test_sha_b64_hex(void)
{
    static const struct {
        const char *in, *std, *url;
    } v[] = {{"", "", ""},
             {"f", "Zg==", "Zg"},
             {"fo", "Zm8=", "Zm8"},
             {"foo", "Zm9v", "Zm9v"},
             {"foob", "Zm9vYg==", "Zm9vYg"},
             {"fooba", "Zm9vYmE=", "Zm9vYmE"},
             {"foobar", "Zm9vYmFy", "Zm9vYmFy"}};
    uint8_t h[32], bin[300], back[300];
    char txt[512], hex[65];
    size_t n;

    /* FIPS 180-2 vectors. */
    {
        /* RFC 6455 1.3's example; a key over 64 bytes is refused. */
        char acc[CRYPTO_WS_ACCEPT_LEN + 1], big[80];
        CHECK_EQ_INT(crypto_ws_accept("dGhlIHNhbXBsZSBub25jZQ==", 24, acc), 0);
        CHECK_EQ_STR(acc, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        memset(big, 'a', sizeof(big));
        CHECK_EQ_INT(crypto_ws_accept(big, sizeof(big), acc), -EINVAL);
    }
    CHECK_EQ_INT(crypto_sha256("abc", 3, h), 0);
    CHECK_EQ_INT(crypto_hex(h, 32, hex, sizeof(hex)), 0);
    CHECK_EQ_STR(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    CHECK_EQ_INT(crypto_sha256("", 0, h), 0);
    CHECK_EQ_INT(crypto_hex(h, 32, hex, sizeof(hex)), 0);
    CHECK_EQ_STR(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    CHECK_EQ_INT(crypto_sha256("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", 56, h),
                 0);
    CHECK_EQ_INT(crypto_hex(h, 32, hex, sizeof(hex)), 0);
    CHECK_EQ_STR(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    CHECK_EQ_INT(crypto_hex(h, 32, hex, 64), -ENOSPC);

    /* RFC 4648 vectors, both alphabets. */
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        size_t l = strlen(v[i].in);
        CHECK_EQ_INT(crypto_b64_encode((const uint8_t *)v[i].in, l, 0, txt, sizeof(txt), &n), 0);
        CHECK_EQ_STR(txt, v[i].std);
        CHECK_EQ_INT(n, strlen(v[i].std));
        CHECK_EQ_INT(crypto_b64_encode((const uint8_t *)v[i].in, l, 1, txt, sizeof(txt), &n), 0);
        CHECK_EQ_STR(txt, v[i].url);
        CHECK_EQ_INT(crypto_b64_decode(v[i].std, strlen(v[i].std), 0, bin, sizeof(bin), &n), 0);
        CHECK(n == l && memcmp(bin, v[i].in, l) == 0);
        CHECK_EQ_INT(crypto_b64_decode(v[i].url, strlen(v[i].url), 1, bin, sizeof(bin), &n), 0);
        CHECK(n == l && memcmp(bin, v[i].in, l) == 0);
        /* url accepts padding too. */
        CHECK_EQ_INT(crypto_b64_decode(v[i].std, strlen(v[i].std), 1, bin, sizeof(bin), &n), 0);
        CHECK(n == l);
        /* Exact buffer sizes: encode needs room for the NUL, decode does not. */
        CHECK_EQ_INT(crypto_b64_encode((const uint8_t *)v[i].in, l, 0, txt, strlen(v[i].std), &n),
                     -ENOSPC);
        if (l > 0)
            CHECK_EQ_INT(crypto_b64_decode(v[i].std, strlen(v[i].std), 0, bin, l - 1, &n), -ENOSPC);
    }
    /* The two alphabets differ in 62 and 63. */
    bin[0] = 0xfb;
    bin[1] = 0xff;
    CHECK_EQ_INT(crypto_b64_encode(bin, 2, 0, txt, sizeof(txt), &n), 0);
    CHECK_EQ_STR(txt, "+/8=");
    CHECK_EQ_INT(crypto_b64_encode(bin, 2, 1, txt, sizeof(txt), &n), 0);
    CHECK_EQ_STR(txt, "-_8");
    CHECK_EQ_INT(crypto_b64_decode("+/8=", 4, 1, bin, sizeof(bin), &n), -EINVAL);
    CHECK_EQ_INT(crypto_b64_decode("-_8=", 4, 0, bin, sizeof(bin), &n), -EINVAL);

    /* Malformed input. */
    CHECK_EQ_INT(crypto_b64_decode("Zg", 2, 0, bin, sizeof(bin), &n),
                 -EINVAL); /* std needs padding */
    CHECK_EQ_INT(crypto_b64_decode("Zg=", 3, 1, bin, sizeof(bin), &n),
                 -EINVAL);                                                     /* partial padding */
    CHECK_EQ_INT(crypto_b64_decode("Z", 1, 1, bin, sizeof(bin), &n), -EINVAL); /* 6 bits */
    CHECK_EQ_INT(crypto_b64_decode("Zh==", 4, 0, bin, sizeof(bin), &n), -EINVAL); /* stray bits */
    CHECK_EQ_INT(crypto_b64_decode("Zm9v YmFy", 9, 1, bin, sizeof(bin), &n), -EINVAL);
    CHECK_EQ_INT(crypto_b64_decode("Zm=v", 4, 0, bin, sizeof(bin), &n), -EINVAL);
    CHECK_EQ_INT(crypto_b64_decode("Zm9v\n", 5, 1, bin, sizeof(bin), &n), -EINVAL);
    CHECK_EQ_INT(crypto_b64_decode("====", 4, 0, bin, sizeof(bin), &n), -EINVAL);

    /* Random round trips over all tail lengths. */
    for (size_t l = 0; l < 200; l++) {
        CHECK_EQ_INT(crypto_random(bin, l), 0);
        for (int url = 0; url <= 1; url++) {
            size_t tl, bl;
            CHECK_EQ_INT(crypto_b64_encode(bin, l, url, txt, sizeof(txt), &tl), 0);
            CHECK_EQ_INT(crypto_b64_decode(txt, tl, url, back, sizeof(back), &bl), 0);
            CHECK(bl == l && memcmp(bin, back, l) == 0);
        }
    }
}

static void test_random(void)
{
    uint8_t a[32], b[32];
    static uint8_t big[200000];
    int seen[256] = {0}, distinct = 0;

    CHECK_EQ_INT(crypto_random(a, sizeof(a)), 0);
    CHECK_EQ_INT(crypto_random(b, sizeof(b)), 0);
    CHECK(memcmp(a, b, sizeof(a)) != 0);
    CHECK_EQ_INT(crypto_random(a, 0), 0);
    /* Larger than one wolfCrypt request: the whole buffer must be filled. */
    memset(big, 0, sizeof(big));
    CHECK_EQ_INT(crypto_random(big, sizeof(big)), 0);
    for (size_t i = sizeof(big) - 4096; i < sizeof(big); i++)
        seen[big[i]]++;
    for (int i = 0; i < 256; i++)
        distinct += seen[i] > 0;
    CHECK(distinct > 200);
}

static void test_pin_syntax(const char *good)
{
    char p[80];

    CHECK(crypto_pin_valid(good));
    CHECK_EQ_INT(strlen(good), CRYPTO_PIN_LEN);
    CHECK(!crypto_pin_valid(NULL));
    CHECK(!crypto_pin_valid(""));
    CHECK(!crypto_pin_valid(good + 1));
    snprintf(p, sizeof(p), "%sA", good);
    CHECK(!crypto_pin_valid(p));
    snprintf(p, sizeof(p), "sha512//%s", good + 8);
    CHECK(!crypto_pin_valid(p));
    snprintf(p, sizeof(p), "%s", good);
    p[20] = '-';
    CHECK(!crypto_pin_valid(p));
    snprintf(p, sizeof(p), "%s", good);
    p[CRYPTO_PIN_LEN - 1] = 'A'; /* padding replaced: 45th char not '=' */
    CHECK(!crypto_pin_valid(p));

    CHECK(crypto_pin_equal(good, good));
    snprintf(p, sizeof(p), "%s", good);
    CHECK(crypto_pin_equal(good, p));
    p[30] ^= 1;
    CHECK(!crypto_pin_equal(good, p));
    CHECK(!crypto_pin_equal(good, good + 1));
    CHECK(!crypto_pin_equal(good, NULL));
    CHECK(!crypto_pin_equal(NULL, NULL));
}

/* The pin OpenSSL computes the way curl's documentation shows. */
static int openssl_pin(const char *pem_path, char *out, size_t cap)
{
    char cmd[1024];

    snprintf(cmd, sizeof(cmd),
             "openssl x509 -in '%s' -pubkey -noout | openssl pkey -pubin -outform der | "
             "openssl dgst -sha256 -binary | base64",
             pem_path);
    return run(cmd, out, cap);
}

static void test_spki_malformed(const uint8_t *der, size_t len)
{
    const uint8_t *spki;
    size_t spki_len, bad = 0, flips_ok = 0;
    uint8_t *copy;

    CHECK_EQ_INT(crypto_spki_from_cert(der, len, &spki, &spki_len), 0);
    /* Every truncation, from an exact-size heap copy (ASan sees overreads). */
    for (size_t l = 0; l < len; l++) {
        copy = malloc(l ? l : 1);
        memcpy(copy, der, l);
        if (crypto_spki_from_cert(copy, l, &spki, &spki_len) != -EINVAL)
            bad++;
        free(copy);
    }
    CHECK_EQ_INT(bad, 0);
    /* Trailing bytes. */
    copy = malloc(len + 1);
    memcpy(copy, der, len);
    copy[len] = 0;
    CHECK_EQ_INT(crypto_spki_from_cert(copy, len + 1, &spki, &spki_len), -EINVAL);
    free(copy);
    /* Every byte flipped: refused, or an answer inside the buffer. */
    copy = malloc(len);
    for (size_t i = 0; i < len; i++) {
        int rc;
        memcpy(copy, der, len);
        copy[i] ^= 0xff;
        rc = crypto_spki_from_cert(copy, len, &spki, &spki_len);
        if (rc == 0) {
            if (spki < copy || spki_len > len || spki + spki_len > copy + len)
                bad++;
            flips_ok++;
        } else if (rc != -EINVAL) {
            bad++;
        }
    }
    free(copy);
    CHECK_EQ_INT(bad, 0);
    /* Flips inside the key or signature bytes leave the structure intact. */
    CHECK(flips_ok > 0);

    /* Hand-made bad encodings of the outer SEQUENCE. */
    {
        const uint8_t indefinite[] = {0x30, 0x80, 0x30, 0x00, 0x00, 0x00};
        const uint8_t too_long_len[] = {0x30, 0x85, 0, 0, 0, 0, 1, 0};
        const uint8_t non_minimal[] = {0x30, 0x81, 0x02, 0x30, 0x00};
        const uint8_t high_tag[] = {0x3f, 0x01, 0x00};
        const uint8_t huge[] = {0x30, 0x83, 0xff, 0xff, 0xff};
        const uint8_t empty_seq[] = {0x30, 0x00};
        CHECK_EQ_INT(crypto_spki_from_cert(indefinite, sizeof(indefinite), &spki, &spki_len),
                     -EINVAL);
        CHECK_EQ_INT(crypto_spki_from_cert(too_long_len, sizeof(too_long_len), &spki, &spki_len),
                     -EINVAL);
        CHECK_EQ_INT(crypto_spki_from_cert(non_minimal, sizeof(non_minimal), &spki, &spki_len),
                     -EINVAL);
        CHECK_EQ_INT(crypto_spki_from_cert(high_tag, sizeof(high_tag), &spki, &spki_len), -EINVAL);
        CHECK_EQ_INT(crypto_spki_from_cert(huge, sizeof(huge), &spki, &spki_len), -EINVAL);
        CHECK_EQ_INT(crypto_spki_from_cert(empty_seq, sizeof(empty_seq), &spki, &spki_len),
                     -EINVAL);
    }
}

static void test_identity(void)
{
    const char *names[] = {"hub.example", "127.0.0.1", "::1"};
    struct crypto_identity id, other, loaded;
    char path[512], cmd[1024], line[512];
    uint8_t file[8192];
    size_t flen;
    struct stat st;
    Cert *dates = calloc(1, sizeof(*dates));
    struct tm before, after;
    time_t now = time(NULL);

    CHECK_EQ_INT(crypto_identity_generate("hub.example", names, 3, &id), 0);
    CHECK(id.key_der != NULL && id.cert_der != NULL);
    test_pin_syntax(id.pin);
    CHECK_EQ_INT(crypto_identity_generate("site-a", NULL, 0, &other), 0);
    CHECK(!crypto_pin_equal(id.pin, other.pin));
    {
        char pin2[CRYPTO_PIN_LEN + 1];
        CHECK_EQ_INT(crypto_pin_from_cert(id.cert_der, id.cert_len, pin2), 0);
        CHECK_EQ_STR(pin2, id.pin);
    }

    /* Validity: from a day ago, for twenty years (read back by wolfSSL's parser). */
    CHECK_EQ_INT(wc_SetDatesBuffer(dates, id.cert_der, (int)id.cert_len), 0);
    CHECK_EQ_INT(wc_GetCertDates(dates, &before, &after), 0);
    {
        time_t b = timegm(&before), a = timegm(&after);
        CHECK(b <= now - 86400 + 5 && b >= now - 86400 - 120);
        CHECK(a >= now + (time_t)20 * 365 * 86400 && a <= now + (time_t)20 * 366 * 86400 + 120);
    }
    free(dates);

    /* Bad arguments. */
    {
        const char *bad_names[] = {"ok.example", "has space"};
        char long_cn[80];
        memset(long_cn, 'c', sizeof(long_cn) - 1);
        long_cn[sizeof(long_cn) - 1] = '\0';
        CHECK_EQ_INT(crypto_identity_generate("x", bad_names, 2, &loaded), -EINVAL);
        CHECK_EQ_INT(crypto_identity_generate("", NULL, 0, &loaded), -EINVAL);
        CHECK_EQ_INT(crypto_identity_generate(long_cn, NULL, 0, &loaded), -EINVAL);
        CHECK(loaded.key_der == NULL && loaded.cert_der == NULL);
    }

    /* Save: PEM, key 0600 even over a looser existing file, certificate 0644. */
    snprintf(path, sizeof(path), "%s/hub.key", g_dir);
    tu_write_file(path, "old", 3);
    CHECK_EQ_INT(chmod(path, 0666), 0);
    CHECK_EQ_INT(crypto_identity_save(&id, g_dir, "hub"), 0);
    CHECK_EQ_INT(stat(path, &st), 0);
    CHECK_EQ_INT(st.st_mode & 0777, 0600);
    CHECK_EQ_INT(read_file(path, file, sizeof(file) - 1, &flen), 0);
    file[flen] = '\0';
    CHECK(strncmp((char *)file, "-----BEGIN EC PRIVATE KEY-----\n", 31) == 0);
    snprintf(path, sizeof(path), "%s/hub.crt", g_dir);
    CHECK_EQ_INT(stat(path, &st), 0);
    CHECK_EQ_INT(st.st_mode & 0777, 0644);
    CHECK_EQ_INT(read_file(path, file, sizeof(file) - 1, &flen), 0);
    file[flen] = '\0';
    CHECK(strncmp((char *)file, "-----BEGIN CERTIFICATE-----\n", 28) == 0);

    /* A key is replaced whole or not at all: when the write of the new key
     * fails part-way (here the file-size limit makes write() fail after 64
     * bytes, as a full disk would), the old key is still there, intact, with
     * its mode, and no temporary file is left. */
    {
        struct rlimit saved, lim;
        uint8_t old_key[4096];
        size_t blen = 0;
        int rc;
        DIR *d;
        struct dirent *de;
        int leftovers = 0;

        snprintf(path, sizeof(path), "%s/hub.key", g_dir);
        CHECK_EQ_INT(read_file(path, old_key, sizeof(old_key), &blen), 0);
        signal(SIGXFSZ, SIG_IGN);
        CHECK_EQ_INT(getrlimit(RLIMIT_FSIZE, &saved), 0);
        lim = saved;
        lim.rlim_cur = 64;
        CHECK_EQ_INT(setrlimit(RLIMIT_FSIZE, &lim), 0);
        rc = crypto_identity_save(&other, g_dir, "hub");
        CHECK_EQ_INT(setrlimit(RLIMIT_FSIZE, &saved), 0);
        signal(SIGXFSZ, SIG_DFL);
        CHECK_EQ_INT(rc, -EFBIG);
        check_key(path, path, old_key, blen, id.pin);
        d = opendir(g_dir);
        CHECK(d != NULL);
        while (d != NULL && (de = readdir(d)) != NULL)
            if (strstr(de->d_name, ".tmp.") != NULL)
                leftovers++;
        if (d != NULL)
            closedir(d);
        CHECK_EQ_INT(leftovers, 0);
        /* The key is written through a new inode: a hard link to the old
         * file (a backup, an open descriptor) keeps the old bytes. */
        snprintf(cmd, sizeof(cmd), "%s/hub.key.bak", g_dir);
        CHECK_EQ_INT(link(path, cmd), 0);
        CHECK_EQ_INT(crypto_identity_save(&other, g_dir, "hub"), 0);
        check_key(cmd, path, old_key, blen, other.pin);
        unlink(cmd);
        CHECK_EQ_INT(crypto_identity_save(&id, g_dir, "hub"), 0);
    }

    /* Load gives back the same bytes. */
    CHECK_EQ_INT(crypto_identity_load(g_dir, "hub", &loaded), 0);
    CHECK_EQ_STR(loaded.pin, id.pin);
    CHECK(loaded.cert_len == id.cert_len && memcmp(loaded.cert_der, id.cert_der, id.cert_len) == 0);
    CHECK(loaded.key_len == id.key_len && memcmp(loaded.key_der, id.key_der, id.key_len) == 0);
    crypto_identity_free(&loaded);
    CHECK(loaded.key_der == NULL);

    /* Load refuses a key that does not belong to the certificate, and junk. */
    CHECK_EQ_INT(crypto_identity_save(&other, g_dir, "other"), 0);
    snprintf(cmd, sizeof(cmd), "cp '%s/other.key' '%s/hub.key'", g_dir, g_dir);
    CHECK_EQ_INT(system(cmd), 0);
    CHECK_EQ_INT(crypto_identity_load(g_dir, "hub", &loaded), -EINVAL);
    CHECK(loaded.key_der == NULL);
    CHECK_EQ_INT(crypto_identity_save(&id, g_dir, "hub"), 0);
    snprintf(path, sizeof(path), "%s/hub.crt", g_dir);
    tu_write_file(path, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", 59);
    CHECK_EQ_INT(crypto_identity_load(g_dir, "hub", &loaded), -EINVAL);
    CHECK_EQ_INT(crypto_identity_load(g_dir, "missing", &loaded), -ENOENT);
    CHECK_EQ_INT(crypto_identity_load(g_dir, "../x", &loaded), -EINVAL);
    CHECK_EQ_INT(crypto_identity_save(&id, g_dir, "hub"), 0);

    /* Sign and verify. */
    {
        static const char msg[] = "rotate site-a to a new key";
        uint8_t sig[80];
        size_t sl;
        CHECK_EQ_INT(crypto_sign(&id, msg, sizeof(msg) - 1, sig, sizeof(sig), &sl), 0);
        CHECK(sl > 8 && sl <= 72);
        CHECK_EQ_INT(crypto_verify(id.cert_der, id.cert_len, msg, sizeof(msg) - 1, sig, sl), 0);
        CHECK_EQ_INT(crypto_verify(id.cert_der, id.cert_len, msg, sizeof(msg) - 2, sig, sl),
                     -EBADMSG);
        CHECK_EQ_INT(crypto_verify(other.cert_der, other.cert_len, msg, sizeof(msg) - 1, sig, sl),
                     -EBADMSG);
        CHECK_EQ_INT(crypto_verify(id.cert_der, id.cert_len - 1, msg, sizeof(msg) - 1, sig, sl),
                     -EINVAL);
        sig[sl - 1] ^= 1;
        CHECK_EQ_INT(crypto_verify(id.cert_der, id.cert_len, msg, sizeof(msg) - 1, sig, sl),
                     -EBADMSG);
        sig[sl - 1] ^= 1;
        CHECK_EQ_INT(crypto_sign(&id, msg, sizeof(msg) - 1, sig, 79, &sl), -ENOSPC);

        if (g_have_openssl) {
            /* OpenSSL agrees the signature is valid ECDSA-SHA256 over msg. */
            CHECK_EQ_INT(crypto_sign(&id, msg, sizeof(msg) - 1, sig, sizeof(sig), &sl), 0);
            snprintf(path, sizeof(path), "%s/msg", g_dir);
            tu_write_file(path, msg, sizeof(msg) - 1);
            snprintf(path, sizeof(path), "%s/sig", g_dir);
            tu_write_file(path, sig, sl);
            snprintf(cmd, sizeof(cmd),
                     "cd '%s' && openssl x509 -in hub.crt -pubkey -noout > hub.pub && "
                     "openssl dgst -sha256 -verify hub.pub -signature sig msg",
                     g_dir);
            CHECK_EQ_INT(run(cmd, line, sizeof(line)), 0);
            CHECK_EQ_STR(line, "Verified OK");
        }
    }

    test_spki_malformed(id.cert_der, id.cert_len);

    if (!g_have_openssl) {
        fprintf(stderr, "SKIP: openssl not found; pin and certificate cross-checks skipped\n");
    } else {
        static char text[16384];
        char want[600];

        /* OpenSSL parses the certificate and sees our names. */
        snprintf(cmd, sizeof(cmd), "openssl x509 -in '%s/hub.crt' -noout -text 2>&1", g_dir);
        run_all(cmd, text, sizeof(text));
        CHECK(strstr(text, "Subject: CN = hub.example") != NULL);
        CHECK(strstr(text, "DNS:hub.example") != NULL);
        CHECK(strstr(text, "IP Address:127.0.0.1") != NULL);
        CHECK(strstr(text, "IP Address:0:0:0:0:0:0:0:1") != NULL);
        CHECK(strstr(text, "ecdsa-with-SHA256") != NULL);
        CHECK(strstr(text, "prime256v1") != NULL);
        snprintf(cmd, sizeof(cmd), "openssl x509 -in '%s/hub.crt' -noout -checkhost hub.example",
                 g_dir);
        CHECK_EQ_INT(run(cmd, line, sizeof(line)), 0);
        CHECK_EQ_STR(line, "Hostname hub.example does match certificate");
        snprintf(cmd, sizeof(cmd), "openssl x509 -in '%s/hub.crt' -noout -checkip 127.0.0.1",
                 g_dir);
        CHECK_EQ_INT(run(cmd, line, sizeof(line)), 0);
        CHECK_EQ_STR(line, "IP 127.0.0.1 does match certificate");
        /* Usable as its own trust anchor (curl --cacert hub.crt). */
        snprintf(cmd, sizeof(cmd), "openssl verify -CAfile '%s/hub.crt' '%s/hub.crt' 2>&1", g_dir,
                 g_dir);
        CHECK_EQ_INT(run(cmd, line, sizeof(line)), 0);

        /* Our pin equals the one computed the curl way. */
        snprintf(path, sizeof(path), "%s/hub.crt", g_dir);
        CHECK_EQ_INT(openssl_pin(path, line, sizeof(line)), 0);
        snprintf(want, sizeof(want), "sha256//%s", line);
        CHECK_EQ_STR(id.pin, want);

        /* The SPKI we find is byte for byte the one OpenSSL extracts. */
        {
            const uint8_t *spki;
            size_t spki_len;
            snprintf(cmd, sizeof(cmd),
                     "openssl x509 -in '%s/hub.crt' -pubkey -noout | "
                     "openssl pkey -pubin -outform der > '%s/spki.der'",
                     g_dir, g_dir);
            CHECK_EQ_INT(system(cmd), 0);
            snprintf(path, sizeof(path), "%s/spki.der", g_dir);
            CHECK_EQ_INT(read_file(path, file, sizeof(file), &flen), 0);
            CHECK_EQ_INT(crypto_spki_from_cert(id.cert_der, id.cert_len, &spki, &spki_len), 0);
            CHECK(spki_len == flen && memcmp(spki, file, flen) == 0);
        }

        /* Certificates made by OpenSSL (RSA and EC, with extensions) pin the same way. */
        for (int kind = 0; kind < 2; kind++) {
            char pin[CRYPTO_PIN_LEN + 1];
            snprintf(cmd, sizeof(cmd),
                     "cd '%s' && openssl req -x509 -newkey %s -nodes -keyout o.key -out o.crt "
                     "-days 3 -subj /CN=other -addext subjectAltName=DNS:other >/dev/null 2>&1 && "
                     "openssl x509 -in o.crt -outform der -out o.der",
                     g_dir, kind == 0 ? "rsa:2048" : "ec -pkeyopt ec_paramgen_curve:P-384");
            CHECK_EQ_INT(system(cmd), 0);
            snprintf(path, sizeof(path), "%s/o.der", g_dir);
            CHECK_EQ_INT(read_file(path, file, sizeof(file), &flen), 0);
            CHECK_EQ_INT(crypto_pin_from_cert(file, flen, pin), 0);
            snprintf(path, sizeof(path), "%s/o.crt", g_dir);
            CHECK_EQ_INT(openssl_pin(path, line, sizeof(line)), 0);
            snprintf(want, sizeof(want), "sha256//%s", line);
            CHECK_EQ_STR(pin, want);
            if (kind == 0)
                test_spki_malformed(file, flen);
        }
        /* Only P-256 identities load: the last one made above is P-384. */
        CHECK_EQ_INT(crypto_identity_load(g_dir, "o", &loaded), -EINVAL);
        /* An operator's own P-256 key (PKCS#8, as OpenSSL writes it) loads and signs. */
        snprintf(cmd, sizeof(cmd),
                 "cd '%s' && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 "
                 "-nodes -keyout o.key -out o.crt -days 3 -subj /CN=op >/dev/null 2>&1",
                 g_dir);
        CHECK_EQ_INT(system(cmd), 0);
        CHECK_EQ_INT(crypto_identity_load(g_dir, "o", &loaded), 0);
        snprintf(path, sizeof(path), "%s/o.crt", g_dir);
        CHECK_EQ_INT(openssl_pin(path, line, sizeof(line)), 0);
        snprintf(want, sizeof(want), "sha256//%s", line);
        CHECK_EQ_STR(loaded.pin, want);
        {
            uint8_t sig[80];
            size_t sl;
            CHECK_EQ_INT(crypto_sign(&loaded, "m", 1, sig, sizeof(sig), &sl), 0);
            CHECK_EQ_INT(crypto_verify(loaded.cert_der, loaded.cert_len, "m", 1, sig, sl), 0);
        }
        crypto_identity_free(&loaded);
    }
    crypto_identity_free(&id);
    crypto_identity_free(&other);
}

/* --- a real mutual TLS 1.3 handshake with two generated identities --- */

struct side {
    WOLFSSL_CTX *ctx;
    int fd;
    const char *expect_pin; /* the peer's */
    int pin_matched;
    int ok;
};

static int verify_pin(int preverify, WOLFSSL_X509_STORE_CTX *store)
{
    struct side *s = store->userCtx;
    char pin[CRYPTO_PIN_LEN + 1];

    (void)preverify; /* self-signed: the chain check fails by design, the pin decides */
    if (s == NULL || store->certs == NULL || store->totalCerts < 1)
        return 0;
    if (crypto_pin_from_cert(store->certs[0].buffer, store->certs[0].length, pin) != 0)
        return 0;
    if (!crypto_pin_equal(pin, s->expect_pin))
        return 0;
    s->pin_matched = 1;
    return 1;
}

static void *run_side(void *arg)
{
    struct side *s = arg;
    WOLFSSL *ssl = wolfSSL_new(s->ctx);
    char buf[8];
    int ret;

    wolfSSL_SetCertCbCtx(ssl, s);
    wolfSSL_set_fd(ssl, s->fd);
    if (wolfSSL_is_server(ssl))
        ret = wolfSSL_accept(ssl);
    else
        ret = wolfSSL_connect(ssl);
    if (ret == WOLFSSL_SUCCESS) {
        /* One byte each way proves the keys are live. */
        if (wolfSSL_is_server(ssl))
            s->ok =
                wolfSSL_read(ssl, buf, 1) == 1 && buf[0] == 'c' && wolfSSL_write(ssl, "s", 1) == 1;
        else
            s->ok =
                wolfSSL_write(ssl, "c", 1) == 1 && wolfSSL_read(ssl, buf, 1) == 1 && buf[0] == 's';
    }
    wolfSSL_shutdown(ssl);
    wolfSSL_free(ssl);
    close(s->fd);
    return NULL;
}

static WOLFSSL_CTX *make_ctx(int server, const struct crypto_identity *id)
{
    WOLFSSL_CTX *ctx =
        wolfSSL_CTX_new(server ? wolfTLSv1_3_server_method() : wolfTLSv1_3_client_method());

    CHECK(ctx != NULL);
    CHECK_EQ_INT(wolfSSL_CTX_use_certificate_buffer(ctx, id->cert_der, (long)id->cert_len,
                                                    WOLFSSL_FILETYPE_ASN1),
                 WOLFSSL_SUCCESS);
    CHECK_EQ_INT(wolfSSL_CTX_use_PrivateKey_buffer(ctx, id->key_der, (long)id->key_len,
                                                   WOLFSSL_FILETYPE_ASN1),
                 WOLFSSL_SUCCESS);
    wolfSSL_CTX_set_verify(ctx, WOLFSSL_VERIFY_PEER | WOLFSSL_VERIFY_FAIL_IF_NO_PEER_CERT,
                           verify_pin);
    return ctx;
}

/* Returns 1 if the handshake and the byte exchange succeeded on both sides. */
static int handshake(const struct crypto_identity *srv, const struct crypto_identity *cli,
                     const char *server_expects, const char *client_expects, int *both_matched)
{
    int sv[2];
    pthread_t ts, tc;
    struct side s = {0}, c = {0};

    CHECK_EQ_INT(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    s.ctx = make_ctx(1, srv);
    c.ctx = make_ctx(0, cli);
    s.fd = sv[0];
    c.fd = sv[1];
    s.expect_pin = server_expects;
    c.expect_pin = client_expects;
    pthread_create(&ts, NULL, run_side, &s);
    pthread_create(&tc, NULL, run_side, &c);
    pthread_join(ts, NULL);
    pthread_join(tc, NULL);
    wolfSSL_CTX_free(s.ctx);
    wolfSSL_CTX_free(c.ctx);
    *both_matched = s.pin_matched && c.pin_matched;
    return s.ok && c.ok;
}

static void test_tls(void)
{
    struct crypto_identity hub, site, stranger;
    int matched;

    CHECK_EQ_INT(crypto_identity_generate("hub.example", NULL, 0, &hub), 0);
    CHECK_EQ_INT(crypto_identity_generate("site-a", NULL, 0, &site), 0);
    CHECK_EQ_INT(crypto_identity_generate("site-a", NULL, 0, &stranger), 0);
    /* Each side accepts the other by pin alone: server and client certificates both work. */
    CHECK_EQ_INT(handshake(&hub, &site, site.pin, hub.pin, &matched), 1);
    CHECK_EQ_INT(matched, 1);
    /* Same name, other key: the hub refuses it. */
    CHECK_EQ_INT(handshake(&hub, &stranger, site.pin, hub.pin, &matched), 0);
    /* An impostor hub: the site refuses it. */
    CHECK_EQ_INT(handshake(&stranger, &site, site.pin, hub.pin, &matched), 0);
    crypto_identity_free(&hub);
    crypto_identity_free(&site);
    crypto_identity_free(&stranger);
}

static void test_build_info(void)
{
    double mbps = crypto_aesgcm_mbps(30);

    CHECK(mbps > 1.0);
    CHECK(crypto_wolfssl_build() != NULL && crypto_wolfssl_build()[0] != '\0');
#ifdef TETHER_WOLFSSL_BUILD
    CHECK_EQ_STR(crypto_wolfssl_build(), TETHER_WOLFSSL_BUILD);
    CHECK(strcmp(crypto_wolfssl_build(), "unknown") != 0);
#endif
    fprintf(stderr, "wolfSSL %s, AES-128-GCM %.0f MB/s\n", crypto_wolfssl_build(), mbps);
}

/* A self-signed P-256 certificate (openssl req -x509) with subjectAltName
 * DNS:x.example, IP:127.0.0.1, IP:::1. */
static const uint8_t ip_cert[] = {
    0x30, 0x82, 0x01, 0x9b, 0x30, 0x82, 0x01, 0x40, 0xa0, 0x03, 0x02, 0x01, 0x02, 0x02, 0x14, 0x48,
    0x71, 0xac, 0x7b, 0x80, 0xcd, 0x25, 0xcb, 0x6e, 0x0d, 0x08, 0x3c, 0x15, 0x18, 0xa3, 0x5f, 0x45,
    0xb4, 0x9a, 0xdc, 0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02, 0x30,
    0x0d, 0x31, 0x0b, 0x30, 0x09, 0x06, 0x03, 0x55, 0x04, 0x03, 0x0c, 0x02, 0x69, 0x70, 0x30, 0x1e,
    0x17, 0x0d, 0x32, 0x36, 0x31, 0x32, 0x30, 0x37, 0x30, 0x35, 0x34, 0x37, 0x33, 0x36, 0x5a, 0x17,
    0x0d, 0x33, 0x36, 0x31, 0x32, 0x30, 0x34, 0x30, 0x35, 0x34, 0x37, 0x33, 0x36, 0x5a, 0x30, 0x0d,
    0x31, 0x0b, 0x30, 0x09, 0x06, 0x03, 0x55, 0x04, 0x03, 0x0c, 0x02, 0x69, 0x70, 0x30, 0x59, 0x30,
    0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce,
    0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00, 0x04, 0x2d, 0x2e, 0x69, 0x7f, 0xc4, 0x4f, 0x84, 0xc0,
    0xb9, 0xeb, 0xc3, 0x14, 0x3a, 0xbb, 0x79, 0x3e, 0xa3, 0xfc, 0xd8, 0x81, 0x47, 0x76, 0xd6, 0x84,
    0x4d, 0x20, 0x7c, 0xbb, 0x13, 0xae, 0xe9, 0x68, 0x53, 0xa9, 0xc2, 0x8f, 0xf0, 0x4c, 0xea, 0xbc,
    0xd3, 0x72, 0x55, 0xf8, 0xb2, 0xd7, 0xd9, 0x47, 0xd4, 0x3d, 0x65, 0x8a, 0x5b, 0x48, 0xc8, 0x8b,
    0x09, 0x98, 0x22, 0x82, 0x36, 0xfd, 0xee, 0x89, 0xa3, 0x7e, 0x30, 0x7c, 0x30, 0x1d, 0x06, 0x03,
    0x55, 0x1d, 0x0e, 0x04, 0x16, 0x04, 0x14, 0x9f, 0xb6, 0xa4, 0x91, 0xbf, 0x91, 0x6d, 0xf6, 0x3c,
    0x10, 0x9c, 0x1a, 0x20, 0x42, 0xae, 0xd6, 0xa5, 0x61, 0xa2, 0x92, 0x30, 0x1f, 0x06, 0x03, 0x55,
    0x1d, 0x23, 0x04, 0x18, 0x30, 0x16, 0x80, 0x14, 0x9f, 0xb6, 0xa4, 0x91, 0xbf, 0x91, 0x6d, 0xf6,
    0x3c, 0x10, 0x9c, 0x1a, 0x20, 0x42, 0xae, 0xd6, 0xa5, 0x61, 0xa2, 0x92, 0x30, 0x2c, 0x06, 0x03,
    0x55, 0x1d, 0x11, 0x04, 0x25, 0x30, 0x23, 0x82, 0x09, 0x78, 0x2e, 0x65, 0x78, 0x61, 0x6d, 0x70,
    0x6c, 0x65, 0x87, 0x04, 0x7f, 0x00, 0x00, 0x01, 0x87, 0x10, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x30, 0x0c, 0x06, 0x03, 0x55, 0x1d,
    0x13, 0x01, 0x01, 0xff, 0x04, 0x02, 0x30, 0x00, 0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce,
    0x3d, 0x04, 0x03, 0x02, 0x03, 0x49, 0x00, 0x30, 0x46, 0x02, 0x21, 0x00, 0xee, 0x8d, 0xe6, 0x20,
    0x22, 0x2c, 0x7b, 0xd0, 0x5f, 0x00, 0x0c, 0x7a, 0xf6, 0x3e, 0x09, 0xc1, 0xb6, 0x6e, 0x56, 0x37,
    0x51, 0x17, 0x71, 0x79, 0x7e, 0x2c, 0xa6, 0x4f, 0xdc, 0xdf, 0x81, 0x1f, 0x02, 0x21, 0x00, 0xf6,
    0x16, 0xae, 0x09, 0xbe, 0x8e, 0x53, 0x93, 0xfa, 0xe7, 0x7a, 0x0f, 0x01, 0x84, 0xe9, 0xa4, 0x98,
    0x6a, 0x06, 0xf4, 0x93, 0x05, 0x53, 0xeb, 0xfe, 0x57, 0xd6, 0xd2, 0xeb, 0xcd, 0xb3, 0x09};

static void test_cert_has_ip(void)
{
    static const uint8_t lo4[4] = {127, 0, 0, 1}, other4[4] = {127, 0, 0, 2};
    static const uint8_t lo6[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    uint8_t copy[sizeof(ip_cert)];

    CHECK_EQ_INT(crypto_cert_has_ip(ip_cert, sizeof(ip_cert), lo4, 4), 1);
    CHECK_EQ_INT(crypto_cert_has_ip(ip_cert, sizeof(ip_cert), lo6, 16), 1);
    CHECK_EQ_INT(crypto_cert_has_ip(ip_cert, sizeof(ip_cert), other4, 4), 0);
    /* Lengths must agree: 0.0.0.0 is not the first 4 bytes of ::1. */
    CHECK_EQ_INT(crypto_cert_has_ip(ip_cert, sizeof(ip_cert), lo6, 4), 0);
    CHECK_EQ_INT(crypto_cert_has_ip(ip_cert, sizeof(ip_cert), lo4, 3), 0);
    /* Cut short anywhere: never found, never read past the end. */
    for (size_t n = 0; n < sizeof(ip_cert); n++)
        CHECK_EQ_INT(crypto_cert_has_ip(ip_cert, n, lo4, 4), 0);
    /* The same bytes outside a subjectAltName do not count: break the OID. */
    memcpy(copy, ip_cert, sizeof(copy));
    for (size_t i = 0; i + 3 <= sizeof(copy); i++)
        if (copy[i] == 0x55 && copy[i + 1] == 0x1d && copy[i + 2] == 0x11)
            copy[i + 2] = 0x12;
    CHECK_EQ_INT(crypto_cert_has_ip(copy, sizeof(copy), lo4, 4), 0);
}

int main(void)
{
    char cmd[256];

    CHECK(mkdtemp(g_dir) != NULL);
    /* A refused handshake closes its end while the peer may still write. */
    signal(SIGPIPE, SIG_IGN);
    g_have_openssl = system("command -v openssl >/dev/null 2>&1") == 0;
    wolfSSL_Init();
    test_sha_b64_hex();
    test_random();
    test_identity();
    test_tls();
    test_build_info();
    test_cert_has_ip();
    wolfSSL_Cleanup();
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", g_dir);
    CHECK_EQ_INT(system(cmd), 0);
    TEST_DONE();
}
