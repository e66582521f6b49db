/* Unit tests of hub/query/submit.c's pure part: a submitted query's JSON checked, its "sites"
 * resolved (real SQLite, no socket). */
/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/crypto.h"
#include "hub/query/submit.h"
#include "hub/store/registry.h"
#include "testutil.h"

struct parsed {
    int rc, status;
    char msg[256];
    struct reg_query q;
};

/* Parses the JSON text js (an object) with query_parse. */
static void parse(const char *js, struct parsed *p)
{
    json_t *o = json_loads(js, JSON_ALLOW_NUL, NULL);

    memset(p, 0, sizeof(*p));
    CHECK(json_is_object(o));
    p->rc = query_parse(o, &p->q, &p->status, p->msg, sizeof(p->msg));
    json_decref(o);
}

/* js must be refused with status and a message holding want. */
static void refused(const char *js, int status, const char *want)
{
    struct parsed p;

    parse(js, &p);
    CHECK(p.rc < 0);
    CHECK_EQ_INT(p.status, status);
    if (strstr(p.msg, want) == NULL) {
        fprintf(stderr, "for %s: message \"%s\" lacks \"%s\"\n", js, p.msg, want);
        CHECK(0);
    }
    registry_query_clear(&p.q);
}

/* js must parse, with q.path as want_path. */
static void path_ok(const char *js, const char *want_path)
{
    struct parsed p;

    parse(js, &p);
    CHECK_EQ_INT(p.rc, 0);
    CHECK_EQ_STR(p.q.path, want_path);
    registry_query_clear(&p.q);
}

static void test_valid(void)
{
    struct parsed p;

    /* Every field given. */
    parse(
        "{\"sites\":\"*\",\"service\":\"counts\",\"method\":\"POST\",\"path\":\"/a/./b/../c?x=1\","
        "\"headers\":{\"X-Trace\":\"t1\",\"Accept\":\"text/plain\"},\"body\":\"hi\","
        "\"timeout_s\":5,\"ttl_s\":0}",
        &p);
    CHECK_EQ_INT(p.rc, 0);
    CHECK_EQ_STR(p.q.service, "counts");
    CHECK_EQ_STR(p.q.method, "POST");
    CHECK_EQ_STR(p.q.path, "/a/c?x=1");
    /* Names lower-cased, keys sorted. */
    CHECK_EQ_STR(p.q.headers_json, "{\"accept\":\"text/plain\",\"x-trace\":\"t1\"}");
    CHECK_EQ_STR(p.q.target_json, "\"*\"");
    CHECK_EQ_INT(p.q.body_len, 2);
    CHECK(p.q.body != NULL && memcmp(p.q.body, "hi", 2) == 0);
    CHECK_EQ_INT(p.q.timeout_s, 5);
    CHECK_EQ_INT(p.q.ttl_s, 0);
    registry_query_clear(&p.q);

    /* The defaults. */
    parse("{\"sites\":[\"alpha\"],\"service\":\"s\"}", &p);
    CHECK_EQ_INT(p.rc, 0);
    CHECK_EQ_STR(p.q.method, "GET");
    CHECK_EQ_STR(p.q.path, "/");
    CHECK_EQ_STR(p.q.headers_json, "{}");
    CHECK_EQ_STR(p.q.target_json, "[\"alpha\"]");
    CHECK(p.q.body == NULL);
    CHECK_EQ_INT(p.q.timeout_s, 30);
    CHECK_EQ_INT(p.q.ttl_s, 86400);
    registry_query_clear(&p.q);

    /* An empty text body is a body of 0 bytes, not none. */
    parse("{\"sites\":\"*\",\"service\":\"s\",\"body\":\"\"}", &p);
    CHECK_EQ_INT(p.rc, 0);
    CHECK(p.q.body != NULL);
    CHECK_EQ_INT(p.q.body_len, 0);
    registry_query_clear(&p.q);

    /* body_base64 carries bytes JSON text cannot. */
    parse("{\"sites\":\"*\",\"service\":\"s\",\"body_base64\":\"AP8B\"}", &p);
    CHECK_EQ_INT(p.rc, 0);
    CHECK_EQ_INT(p.q.body_len, 3);
    CHECK(p.q.body != NULL && p.q.body[0] == 0x00 && p.q.body[1] == 0xff && p.q.body[2] == 0x01);
    registry_query_clear(&p.q);
}

static void test_fields(void)
{
    char js[12000], big[9000];
    size_t o;

    refused("{\"sites\":\"*\",\"service\":\"s\",\"bogus\":1}", 400, "unknown field \"bogus\"");
    refused("{\"service\":\"s\"}", 400, "\"sites\" is required");

    /* service: a name (a-z, 0-9, '-'). */
    refused("{\"sites\":\"*\"}", 400, "\"service\" must be a service name");
    refused("{\"sites\":\"*\",\"service\":\"Bad_Name\"}", 400,
            "\"service\" must be a service name");
    refused("{\"sites\":\"*\",\"service\":7}", 400, "\"service\" must be a service name");

    /* method: 1 to 16 upper-case letters, not CONNECT. */
    refused("{\"sites\":\"*\",\"service\":\"s\",\"method\":\"get\"}", 400, "\"method\" must be");
    refused("{\"sites\":\"*\",\"service\":\"s\",\"method\":\"CONNECT\"}", 400,
            "\"method\" must be");
    refused("{\"sites\":\"*\",\"service\":\"s\",\"method\":\"\"}", 400, "\"method\" must be");
    refused("{\"sites\":\"*\",\"service\":\"s\",\"method\":\"ABCDEFGHIJKLMNOPQ\"}", 400,
            "\"method\" must be");
    path_ok("{\"sites\":\"*\",\"service\":\"s\",\"method\":\"ABCDEFGHIJKLMNOP\"}", "/");

    /* path: starts with '/', printable ASCII, normalised, no escape. */
    refused("{\"sites\":\"*\",\"service\":\"s\",\"path\":\"a\"}", 400,
            "\"path\" must start with '/'");
    refused("{\"sites\":\"*\",\"service\":\"s\",\"path\":\"/a b\"}", 400, "\"path\" must start");
    refused("{\"sites\":\"*\",\"service\":\"s\",\"path\":\"/caf\\u00e9\"}", 400, "\"path\" must");
    refused("{\"sites\":\"*\",\"service\":\"s\",\"path\":3}", 400, "\"path\" must start");
    refused("{\"sites\":\"*\",\"service\":\"s\",\"path\":\"/../etc/passwd\"}", 400,
            "\"path\": the path climbs above");
    refused("{\"sites\":\"*\",\"service\":\"s\",\"path\":\"/a%2Fb\"}", 400,
            "\"path\": the path holds");
    path_ok("{\"sites\":\"*\",\"service\":\"s\",\"path\":\"/a//b/./c/..\"}", "/a/b/");
    o = (size_t)snprintf(js, sizeof(js), "{\"sites\":\"*\",\"service\":\"s\",\"path\":\"/");
    memset(js + o, 'a', 2047);
    snprintf(js + o + 2047, sizeof(js) - o - 2047, "\"}");
    big[0] = '/';
    memset(big + 1, 'a', 2047);
    big[2048] = '\0';
    path_ok(js, big); /* 2048 bytes: the limit, kept */
    memset(js + o, 'a', 2048);
    snprintf(js + o + 2048, sizeof(js) - o - 2048, "\"}");
    refused(js, 400, "at most 2048 printable ASCII");

    /* headers */
    refused("{\"sites\":\"*\",\"service\":\"s\",\"headers\":[]}", 400,
            "\"headers\" must be an object of at most 64 strings");
    o = (size_t)snprintf(js, sizeof(js), "{\"sites\":\"*\",\"service\":\"s\",\"headers\":{");
    for (int i = 0; i < 65; i++)
        o += (size_t)snprintf(js + o, sizeof(js) - o, "%s\"h%d\":\"v\"", i ? "," : "", i);
    snprintf(js + o, sizeof(js) - o, "}}");
    refused(js, 400, "\"headers\" must be an object of at most 64 strings");
    refused("{\"sites\":\"*\",\"service\":\"s\",\"headers\":{\"\":\"v\"}}", 400,
            "header names must be 1 to 128 characters");
    memset(big, 'n', 129);
    big[129] = '\0';
    snprintf(js, sizeof(js), "{\"sites\":\"*\",\"service\":\"s\",\"headers\":{\"%s\":\"v\"}}", big);
    refused(js, 400, "header names must be 1 to 128 characters");
    refused("{\"sites\":\"*\",\"service\":\"s\",\"headers\":{\"bad name\":\"v\"}}", 400,
            "header name \"bad name\" is not a valid HTTP field name");
    refused("{\"sites\":\"*\",\"service\":\"s\",\"headers\":{\"a:b\":\"v\"}}", 400,
            "is not a valid HTTP field name");
    /* Reserved: set by the hub (host, length, expect, forwarding, tether-*)
     * or hop-by-hop. */
    {
        static const char *const reserved[] = {
            "Host",
            "content-length",
            "Expect",
            "x-forwarded-for",
            "Forwarded",
            "x-real-ip",
            "tether-service",
            "X-Tether-User",
            "connection",
            "keep-alive",
            "transfer-encoding",
            "upgrade",
            "te",
            "http2-settings",
            "proxy-connection",
        };
        for (size_t i = 0; i < sizeof(reserved) / sizeof(reserved[0]); i++) {
            char want[160], lower[64];
            size_t j;

            for (j = 0; reserved[i][j] && j < sizeof(lower) - 1; j++)
                lower[j] =
                    (char)((reserved[i][j] >= 'A' && reserved[i][j] <= 'Z') ? reserved[i][j] + 32
                                                                            : reserved[i][j]);
            lower[j] = '\0';
            snprintf(js, sizeof(js),
                     "{\"sites\":\"*\",\"service\":\"s\",\"headers\":{\"%s\":\"v\"}}", reserved[i]);
            snprintf(want, sizeof(want), "header \"%s\" is set by the hub and may not be given",
                     lower);
            refused(js, 400, want);
        }
    }
    refused("{\"sites\":\"*\",\"service\":\"s\",\"headers\":{\"x-a\":1}}", 400,
            "header \"x-a\" must have a string value");
    refused("{\"sites\":\"*\",\"service\":\"s\",\"headers\":{\"x-a\":\"1\\r\\nx-b: 2\"}}", 400,
            "header \"x-a\" holds a line break or NUL");
    refused("{\"sites\":\"*\",\"service\":\"s\",\"headers\":{\"x-a\":\"a\\u0000b\"}}", 400,
            "header \"x-a\" holds a line break or NUL");
    refused("{\"sites\":\"*\",\"service\":\"s\",\"headers\":{\"X-A\":\"1\",\"x-a\":\"2\"}}", 400,
            "header \"x-a\" is given twice");
    memset(big, 'v', 8193);
    big[8193] = '\0';
    snprintf(js, sizeof(js), "{\"sites\":\"*\",\"service\":\"s\",\"headers\":{\"x-a\":\"%s\"}}",
             big);
    refused(js, 400, "header \"x-a\" is longer than 8192 bytes");
    big[8192] = '\0';
    snprintf(js, sizeof(js), "{\"sites\":\"*\",\"service\":\"s\",\"headers\":{\"x-a\":\"%s\"}}",
             big);
    path_ok(js, "/");

    /* body */
    refused("{\"sites\":\"*\",\"service\":\"s\",\"body\":\"a\",\"body_base64\":\"YQ==\"}", 400,
            "give \"body\" or \"body_base64\", not both");
    refused("{\"sites\":\"*\",\"service\":\"s\",\"body\":{}}", 400, "\"body\" must be a string");
    refused("{\"sites\":\"*\",\"service\":\"s\",\"body_base64\":\"!!!!\"}", 400,
            "\"body_base64\" must be standard base64 text");
    refused("{\"sites\":\"*\",\"service\":\"s\",\"body_base64\":5}", 400,
            "\"body_base64\" must be standard base64 text");

    /* timeout_s 1..3600, ttl_s 0..30 days */
    refused("{\"sites\":\"*\",\"service\":\"s\",\"timeout_s\":0}", 400,
            "\"timeout_s\" must be an integer from 1 to 3600");
    refused("{\"sites\":\"*\",\"service\":\"s\",\"timeout_s\":3601}", 400,
            "\"timeout_s\" must be an integer from 1 to 3600");
    refused("{\"sites\":\"*\",\"service\":\"s\",\"timeout_s\":\"5\"}", 400,
            "\"timeout_s\" must be");
    refused("{\"sites\":\"*\",\"service\":\"s\",\"ttl_s\":-1}", 400,
            "\"ttl_s\" must be an integer from 0 to 2592000");
    refused("{\"sites\":\"*\",\"service\":\"s\",\"ttl_s\":2592001}", 400,
            "\"ttl_s\" must be an integer from 0 to 2592000");
    {
        struct parsed p;

        parse("{\"sites\":\"*\",\"service\":\"s\",\"timeout_s\":3600,\"ttl_s\":2592000}", &p);
        CHECK_EQ_INT(p.rc, 0);
        CHECK_EQ_INT(p.q.timeout_s, 3600);
        CHECK_EQ_INT(p.q.ttl_s, 2592000);
        registry_query_clear(&p.q);
    }
}

struct resolved {
    int rc, status;
    char msg[256];
    char names[128]; /* comma-separated, in order */
};

static void resolve(struct registry *reg, const struct auth *a, const char *sites_js,
                    struct resolved *out)
{
    json_t *sites = json_loads(sites_js, JSON_DECODE_ANY, NULL);
    struct query_targets tl = {0};
    size_t o = 0;

    memset(out, 0, sizeof(*out));
    CHECK(sites != NULL);
    out->rc = query_resolve_sites(reg, a, sites, &tl, &out->status, out->msg, sizeof(out->msg));
    for (size_t i = 0; i < tl.n && o < sizeof(out->names); i++)
        o += (size_t)snprintf(out->names + o, sizeof(out->names) - o, "%s%s", i ? "," : "",
                              tl.v[i].name);
    free(tl.v);
    json_decref(sites);
}

static void sites_ok(struct registry *reg, const struct auth *a, const char *js, const char *want)
{
    struct resolved r;

    resolve(reg, a, js, &r);
    CHECK_EQ_INT(r.rc, 0);
    CHECK_EQ_STR(r.names, want);
}

static void sites_refused(struct registry *reg, const struct auth *a, const char *js, int status,
                          const char *want)
{
    struct resolved r;

    resolve(reg, a, js, &r);
    CHECK(r.rc < 0);
    CHECK_EQ_INT(r.status, status);
    if (strstr(r.msg, want) == NULL) {
        fprintf(stderr, "for %s: message \"%s\" lacks \"%s\"\n", js, r.msg, want);
        CHECK(0);
    }
}

static int name_order_cb(const struct reg_site *s, void *arg)
{
    char *out = arg;
    size_t o = strlen(out);

    if (s->state == REG_SITE_ACTIVE)
        snprintf(out + o, 128 - o, "%s%s", o ? "," : "", s->name);
    return 0;
}

static void test_sites(struct registry *reg)
{
    struct auth admin = {.token_id = 1, .name = "root", .admin = 1, .scope_json = NULL};
    struct auth named = {
        .token_id = 2, .name = "ops", .admin = 0, .scope_json = (char *)"[\"alpha\"]"};
    struct auth eu = {.token_id = 3,
                      .name = "eu-ops",
                      .admin = 0,
                      .scope_json = (char *)"{\"labels\":{\"region\":\"eu\"}}"};
    char all_active[128] = "";

    CHECK_EQ_INT(registry_site_list(reg, name_order_cb, all_active), 0);
    /* "*": every active site (pending "gamma" is not one). */
    CHECK(strstr(all_active, "gamma") == NULL);
    sites_ok(reg, &admin, "\"*\"", all_active);
    /* A list: exactly those (any state), duplicates dropped, order kept. */
    sites_ok(reg, &admin, "[\"beta\",\"alpha\",\"beta\",\"gamma\"]", "beta,alpha,gamma");
    /* A label selector: the active sites whose labels hold every pair. */
    sites_ok(reg, &admin, "{\"labels\":{\"region\":\"eu\"}}", "alpha");
    sites_ok(reg, &admin, "{\"labels\":{\"region\":\"eu\",\"tier\":\"1\"}}", "alpha");
    /* The empty label selector holds no condition: every active site, as "*". */
    sites_ok(reg, &admin, "{\"labels\":{}}", all_active);

    sites_refused(reg, &admin, "[]", 400, "no site matches \"sites\"");
    sites_refused(reg, &admin, "{\"labels\":{\"region\":\"mars\"}}", 400, "no site matches");
    sites_refused(reg, &admin, "\"all\"", 400, "\"sites\" must be \"*\", a list of site names");
    sites_refused(reg, &admin, "42", 400, "\"sites\" must be \"*\", a list of site names");
    sites_refused(reg, &admin, "[\"alpha\",7]", 400, "\"sites\" must list site names");
    sites_refused(reg, &admin, "[\"Alpha\"]", 400, "\"sites\" must list site names");
    sites_refused(reg, &admin, "[\"nosuch\"]", 404, "no such site: \"nosuch\"");
    sites_refused(reg, &admin, "{\"labels\":{\"region\":1}}", 400,
                  "label values in \"sites\" must be strings");
    sites_refused(reg, &admin, "{\"labels\":{\"region\":\"eu\"},\"x\":1}", 400,
                  "\"sites\" as an object must be {\"labels\"");
    sites_refused(reg, &admin, "{\"labels\":[\"eu\"]}", 400, "\"sites\" as an object must be");

    /* A token scoped to names. */
    sites_ok(reg, &named, "\"*\"", "alpha");
    sites_ok(reg, &named, "[\"alpha\"]", "alpha");
    sites_refused(reg, &named, "[\"alpha\",\"beta\"]", 403, "this token may not use site \"beta\"");
    sites_refused(reg, &named, "{\"labels\":{\"region\":\"us\"}}", 400, "no site matches");
    /* A token scoped by labels. */
    sites_ok(reg, &eu, "\"*\"", "alpha");
    sites_ok(reg, &eu, "[\"gamma\"]", "gamma");
    sites_refused(reg, &eu, "[\"beta\"]", 403, "this token may not use site \"beta\"");
}

/* lacks_service[i] of the targets "sites" (JSON) resolves to for service,
 * as "0,1,...". */
static void lacks_of(struct registry *reg, const struct auth *a, const char *sites_js,
                     const char *service, char *out, size_t cap)
{
    json_t *sites = json_loads(sites_js, JSON_DECODE_ANY, NULL);
    struct query_targets tl = {0};
    int status;
    char msg[256];
    size_t o = 0;

    out[0] = '\0';
    tl.service = service;
    CHECK_EQ_INT(query_resolve_sites(reg, a, sites, &tl, &status, msg, sizeof(msg)), 0);
    for (size_t i = 0; i < tl.n && o < cap; i++)
        o += (size_t)snprintf(out + o, cap - o, "%s%d", i ? "," : "", tl.v[i].lacks_service);
    free(tl.v);
    json_decref(sites);
}

/* A site picked by "*" or labels whose last announced services lack the
 * query's is marked (the submit skips it); a site never connected, or one
 * named, is not. */
static void test_lacks(struct registry *reg)
{
    struct auth admin = {.token_id = 1, .name = "root", .admin = 1, .scope_json = NULL};
    struct reg_site s;
    char got[64];

    memset(&s, 0, sizeof(s));
    CHECK_EQ_INT(registry_site_get(reg, "alpha", &s), 0);
    CHECK_EQ_INT(registry_site_seen(reg, s.id, 1600, NULL, "[\"web\",\"db\"]", NULL), 0);
    registry_site_clear(&s);
    /* alpha, beta (never connected) */
    lacks_of(reg, &admin, "\"*\"", "counts", got, sizeof(got));
    CHECK_EQ_STR(got, "1,0");
    lacks_of(reg, &admin, "\"*\"", "db", got, sizeof(got));
    CHECK_EQ_STR(got, "0,0");
    lacks_of(reg, &admin, "{\"labels\":{\"region\":\"eu\"}}", "counts", got, sizeof(got));
    CHECK_EQ_STR(got, "1");
    lacks_of(reg, &admin, "[\"alpha\",\"beta\"]", "counts", got, sizeof(got));
    CHECK_EQ_STR(got, "0,0");
    lacks_of(reg, &admin, "\"*\"", NULL, got, sizeof(got));
    CHECK_EQ_STR(got, "0,0");
    CHECK(query_by_selector("\"*\""));
    CHECK(query_by_selector("{\"labels\":{}}"));
    CHECK(!query_by_selector("[\"alpha\"]"));
}

/* Enrolls the site (a redeemed token): it becomes "active". c makes the
 * token hash and the key pin distinct. */
static int make_active(struct registry *reg, const char *name, char c)
{
    char hash[65], pin[CRYPTO_PIN_LEN + 1], site[TOKEN_NAME_MAX + 1];
    int rc;

    memset(hash, c, 64);
    hash[64] = '\0';
    memcpy(pin, "sha256//", 8);
    memset(pin + 8, c, 43);
    pin[51] = '=';
    pin[52] = '\0';
    rc = registry_enroll_create(reg, name, hash, 2000, 1000, NULL);
    if (rc == 0)
        rc = registry_enroll_redeem(reg, hash, pin, 1500, site);
    return rc;
}

int main(void)
{
    char tmpdir[] = "/tmp/tether-qsubmit-XXXXXX", db[300], err[256] = "";
    struct registry *reg = NULL;

    test_valid();
    test_fields();

    CHECK(mkdtemp(tmpdir) != NULL);
    snprintf(db, sizeof(db), "%s/hub.db", tmpdir);
    CHECK_EQ_INT(registry_open(db, &reg, err, sizeof(err)), 0);
    CHECK_EQ_INT(registry_site_create(reg, "alpha", "{\"region\":\"eu\",\"tier\":\"1\"}", 10), 0);
    CHECK_EQ_INT(registry_site_create(reg, "beta", "{\"region\":\"us\"}", 11), 0);
    CHECK_EQ_INT(registry_site_create(reg, "gamma", "{\"region\":\"eu\"}", 12), 0);
    CHECK_EQ_INT(make_active(reg, "alpha", 'a'), 0);
    CHECK_EQ_INT(make_active(reg, "beta", 'b'), 0);
    test_sites(reg);
    test_lacks(reg);
    registry_close(reg);
    unlink(db);
    snprintf(db, sizeof(db), "%s/hub.db-wal", tmpdir);
    unlink(db);
    snprintf(db, sizeof(db), "%s/hub.db-shm", tmpdir);
    unlink(db);
    rmdir(tmpdir);
    TEST_DONE();
}
