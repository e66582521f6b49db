/* Unit tests of hub/store/ (registry.h) against real SQLite files in a temporary directory, or a
 * real PostgreSQL server (TETHER_TEST_PG_URL, tests/unit/pgtest.h). */
/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sqlite3.h>

#include "hub/store/db_pg.h"
#include "hub/store/db_sqlite.h"
#include "hub/store/registry.h"
#include "hub/store/schema_sql.h"
#include "pgtest.h"
#include "testutil.h"

static char tmpdir[256];
/* The PostgreSQL server's base URL when the tests run there, else NULL. */
static const char *pg;
/* The databases made on it, dropped at the end. */
static char made[64][PGTEST_URL_CAP];
static int n_made;

static void path_in(char *out, size_t cap, const char *name)
{
    snprintf(out, cap, "%s/%s", tmpdir, name);
}

/* A distinct token_hash_hex()-shaped value (64 lower-case hex) per n. */
static void hash_of(unsigned n, char out[65])
{
    unsigned long long x = 0x9e3779b97f4a7c15ULL * (n + 1);

    snprintf(out, 65, "%016llx%016llx%016llx%016llx", x, x ^ 0xa5a5a5a5a5a5a5a5ULL, ~x, x * 31 + 7);
}

/* A distinct syntactically valid SPKI pin per n. */
static void pin_of(unsigned n, char out[CRYPTO_PIN_LEN + 1])
{
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    unsigned long long x = 0x2545f4914f6cdd1dULL * (n + 1);
    size_t i;

    memcpy(out, "sha256//", 8);
    for (i = 0; i < 43; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out[8 + i] = b64[x % 64];
    }
    out[51] = '=';
    out[52] = '\0';
}

static int latest(void)
{
    if (pg)
        return schema_pg_migrations[schema_pg_migrations_n - 1].version;
    return schema_sqlite_migrations[schema_sqlite_migrations_n - 1].version;
}

/* Where the registry called name lives: a file in tmpdir, or a new
 * database on the PostgreSQL server. */
static void db_at(const char *name, char *out, size_t cap)
{
    char tag[32];

    if (!pg) {
        path_in(out, cap, name);
        return;
    }
    snprintf(tag, sizeof(tag), "%.*s", (int)strcspn(name, "."), name);
#ifdef TETHER_HAVE_PG
    CHECK_EQ_INT(pgtest_create(pg, tag, out, cap), 0);
#endif
    if (n_made < (int)(sizeof(made) / sizeof(made[0])))
        snprintf(made[n_made++], sizeof(made[0]), "%s", out);
}

/* Reads one integer with a connection of its own, as another process would. */
static long long raw_int(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    long long v = -999999;

#ifdef TETHER_HAVE_PG
    if (registry_is_url(path))
        return pgtest_int(path, sql);
#endif
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

static int raw_exec(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    int rc = -1;

    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) == SQLITE_OK)
        rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
    sqlite3_close(db);
    return rc;
}

static struct registry *open_ok(const char *path)
{
    struct registry *r = NULL;
    char err[256];
    int rc = registry_open(path, &r, err, sizeof(err));

    CHECK_EQ_INT(rc, 0);
    if (rc != 0)
        fprintf(stderr, "registry_open(%s): %s\n", path, err);
    return r;
}

/* Creates a site with a redeemed token so it is "active" with pin_of(pin_n). */
static int make_active(struct registry *r, const char *name, unsigned pin_n, unsigned hash_n)
{
    char h[65], pin[CRYPTO_PIN_LEN + 1], site[TOKEN_NAME_MAX + 1];
    int rc;

    hash_of(hash_n, h);
    pin_of(pin_n, pin);
    rc = registry_site_create(r, name, NULL, 1000);
    if (rc == 0)
        rc = registry_enroll_create(r, name, h, 2000, 1000, NULL);
    if (rc == 0)
        rc = registry_enroll_redeem(r, h, pin, 1500, site);
    return rc;
}

static void test_open_fresh(void)
{
    char path[512], mode[16] = "";
    struct registry *r;
    struct stat sb;
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;

    path_in(path, sizeof(path), "fresh.db");
    r = open_ok(path);
    if (r == NULL)
        return;
    CHECK_EQ_INT(registry_schema_version(r), latest());
    CHECK(latest() >= 1);
    CHECK_EQ_INT(raw_int(path, "PRAGMA user_version"), latest());
    CHECK_EQ_INT(raw_int(path, "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name "
                               "IN ('sites','enroll_tokens','api_tokens','sessions','audit')"),
                 5);
    CHECK(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK);
    if (sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        snprintf(mode, sizeof(mode), "%s", (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    sqlite3_close(db);
    CHECK_EQ_STR(mode, "wal");
    CHECK_EQ_INT(stat(path, &sb), 0);
    CHECK_EQ_INT(sb.st_mode & 0777, 0600);
    CHECK_EQ_INT(registry_check(r), 0);
    registry_close(r);
}

/* Changes whenever another connection commits to the file. */
static long long data_version(sqlite3 *db)
{
    sqlite3_stmt *st = NULL;
    long long v = -1;

    if (sqlite3_prepare_v2(db, "PRAGMA data_version", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

static void test_reopen(void)
{
    char path[512];
    struct registry *r, *r2;
    struct reg_site s;
    sqlite3 *watch = NULL;
    long long dv0;

    path_in(path, sizeof(path), "reopen.db");
    r = open_ok(path);
    if (r == NULL)
        return;
    CHECK_EQ_INT(registry_site_create(r, "keep", "{\"env\":\"prod\"}", 10), 0);
    registry_close(r);

    /* A second open applies nothing: no commit is seen by a watcher
     * (data_version), version unchanged, data intact. */
    CHECK(sqlite3_open_v2(path, &watch, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK);
    dv0 = data_version(watch);
    r = open_ok(path);
    r2 = open_ok(path);
    if (r == NULL || r2 == NULL)
        goto out;
    CHECK(dv0 >= 0);
    CHECK_EQ_INT(data_version(watch), dv0);
    /* The watcher does see a real commit (so the check above can fail). */
    CHECK_EQ_INT(registry_site_create(r, "other", NULL, 11), 0);
    CHECK(data_version(watch) != dv0);
    CHECK_EQ_INT(registry_schema_version(r), latest());
    CHECK_EQ_INT(registry_site_get(r2, "keep", &s), 0);
    CHECK_EQ_STR(s.labels_json, "{\"env\":\"prod\"}");
    registry_site_clear(&s);
    CHECK_EQ_INT(raw_int(path, "SELECT count(*) FROM sites"), 2);
out:
    sqlite3_close(watch);
    registry_close(r);
    registry_close(r2);
}

static void test_open_errors(void)
{
    char path[512], err[256], want[128];
    struct registry *r = (struct registry *)&r;
    char garbage[8192];
    size_t i;

    /* Not a database at all. */
    path_in(path, sizeof(path), "garbage.db");
    for (i = 0; i < sizeof(garbage); i++)
        garbage[i] = (char)('a' + i % 26);
    tu_write_file(path, garbage, sizeof(garbage));
    err[0] = '\0';
    CHECK(registry_open(path, &r, err, sizeof(err)) < 0);
    CHECK(r == NULL);
    CHECK(strstr(err, "not a database") != NULL);

    /* Written by a newer tether-hub. */
    path_in(path, sizeof(path), "newer.db");
    r = open_ok(path);
    registry_close(r);
    snprintf(want, sizeof(want), "PRAGMA user_version = %d", latest() + 1);
    CHECK_EQ_INT(raw_exec(path, want), SQLITE_OK);
    err[0] = '\0';
    CHECK_EQ_INT(registry_open(path, &r, err, sizeof(err)), -ENOTSUP);
    CHECK(r == NULL);
    snprintf(want, sizeof(want), "database schema %d is newer than this tether-hub (%d)",
             latest() + 1, latest());
    CHECK_EQ_STR(err, want);

    /* Somebody else's SQLite database: refused, not "migrated". */
    path_in(path, sizeof(path), "foreign.db");
    CHECK_EQ_INT(raw_exec(path, "CREATE TABLE sites (x); INSERT INTO sites VALUES (1)"), SQLITE_OK);
    err[0] = '\0';
    CHECK(registry_open(path, &r, err, sizeof(err)) < 0);
    CHECK(strstr(err, "not a tether-hub database") != NULL);
    CHECK_EQ_INT(raw_int(path, "SELECT count(*) FROM sqlite_schema"), 1);

    /* A directory that does not exist. */
    path_in(path, sizeof(path), "no/such/dir/hub.db");
    err[0] = '\0';
    CHECK_EQ_INT(registry_open(path, &r, err, sizeof(err)), -ENOENT);
    CHECK(err[0] != '\0');
    CHECK_EQ_INT(registry_open(NULL, &r, err, sizeof(err)), -EINVAL);
    /* No message buffer is fine too. */
    CHECK(registry_open(path, &r, NULL, 0) < 0);
}

struct names {
    char v[8][TOKEN_NAME_MAX + 1];
    int n, stop_after;
};

static int collect_site(const struct reg_site *s, void *arg)
{
    struct names *ns = arg;

    if (ns->n < 8)
        snprintf(ns->v[ns->n++], sizeof(ns->v[0]), "%s", s->name);
    return ns->stop_after && ns->n >= ns->stop_after ? 42 : 0;
}

static void test_sites(struct registry *r)
{
    char long_name[80], pin[CRYPTO_PIN_LEN + 1], pin2[CRYPTO_PIN_LEN + 1];
    char pin3[CRYPTO_PIN_LEN + 1], agent[100];
    struct reg_site s;
    struct names ns;

    CHECK_EQ_INT(registry_site_create(r, "bravo", "{\"env\":\"prod\"}", 100), 0);
    CHECK_EQ_INT(registry_site_create(r, "alpha", NULL, 101), 0);
    CHECK_EQ_INT(registry_site_create(r, "charlie-3", "", 102), 0);
    CHECK_EQ_INT(registry_site_create(r, "bravo", NULL, 103), -EEXIST);
    /* Name syntax: [a-z0-9][a-z0-9-]{0,62}. */
    CHECK_EQ_INT(registry_site_create(r, "", NULL, 1), -EINVAL);
    CHECK_EQ_INT(registry_site_create(r, "Upper", NULL, 1), -EINVAL);
    CHECK_EQ_INT(registry_site_create(r, "-dash", NULL, 1), -EINVAL);
    CHECK_EQ_INT(registry_site_create(r, "a b", NULL, 1), -EINVAL);
    memset(long_name, 'x', 64);
    long_name[64] = '\0';
    CHECK_EQ_INT(registry_site_create(r, long_name, NULL, 1), -EINVAL);
    long_name[63] = '\0';
    CHECK_EQ_INT(registry_site_create(r, long_name, NULL, 1), 0);
    CHECK_EQ_INT(registry_site_remove(r, long_name), 0);
    /* Labels must be a JSON object. */
    CHECK_EQ_INT(registry_site_create(r, "delta", "{bad", 1), -EINVAL);
    CHECK_EQ_INT(registry_site_create(r, "delta", "[1]", 1), -EINVAL);

    CHECK_EQ_INT(registry_site_get(r, "bravo", &s), 0);
    CHECK(s.id > 0);
    CHECK_EQ_STR(s.name, "bravo");
    CHECK_EQ_INT(s.state, REG_SITE_PENDING);
    CHECK_EQ_STR(s.pin, "");
    CHECK_EQ_STR(s.labels_json, "{\"env\":\"prod\"}");
    CHECK_EQ_STR(s.services_json, "[]");
    CHECK_EQ_INT(s.created_at, 100);
    CHECK_EQ_INT(s.enrolled_at, 0);
    CHECK_EQ_INT(s.last_seen, 0);
    registry_site_clear(&s);
    CHECK(s.labels_json == NULL && s.name[0] == '\0');
    CHECK_EQ_INT(registry_site_get(r, "alpha", &s), 0);
    CHECK_EQ_STR(s.labels_json, "{}");
    registry_site_clear(&s);
    CHECK_EQ_INT(registry_site_get(r, "nosuch", &s), -ENOENT);
    CHECK(s.labels_json == NULL);

    /* Ordered by name; a non-zero callback result stops and is returned. */
    memset(&ns, 0, sizeof(ns));
    CHECK_EQ_INT(registry_site_list(r, collect_site, &ns), 0);
    CHECK_EQ_INT(ns.n, 3);
    CHECK_EQ_STR(ns.v[0], "alpha");
    CHECK_EQ_STR(ns.v[1], "bravo");
    CHECK_EQ_STR(ns.v[2], "charlie-3");
    memset(&ns, 0, sizeof(ns));
    ns.stop_after = 2;
    CHECK_EQ_INT(registry_site_list(r, collect_site, &ns), 42);
    CHECK_EQ_INT(ns.n, 2);

    /* State machine: pending cannot be enabled or disabled. */
    CHECK_EQ_INT(registry_site_set_state(r, "alpha", REG_SITE_ACTIVE), -EINVAL);
    CHECK_EQ_INT(registry_site_set_state(r, "alpha", REG_SITE_DISABLED), -EINVAL);
    CHECK_EQ_INT(registry_site_set_state(r, "nosuch", REG_SITE_ACTIVE), -ENOENT);
    CHECK_EQ_INT(make_active(r, "echo", 1, 1), 0);
    CHECK_EQ_INT(registry_site_set_state(r, "echo", REG_SITE_REVOKED), -EINVAL);
    CHECK_EQ_INT(registry_site_set_state(r, "echo", REG_SITE_PENDING), -EINVAL);
    CHECK_EQ_INT(registry_site_set_state(r, "echo", REG_SITE_DISABLED), 0);
    CHECK_EQ_INT(registry_site_get(r, "echo", &s), 0);
    CHECK_EQ_INT(s.state, REG_SITE_DISABLED);
    pin_of(1, pin);
    CHECK_EQ_STR(s.pin, pin);
    CHECK_EQ_INT(s.enrolled_at, 1500);
    registry_site_clear(&s);
    CHECK_EQ_INT(registry_site_set_state(r, "echo", REG_SITE_DISABLED), 0);
    CHECK_EQ_INT(registry_site_set_state(r, "echo", REG_SITE_ACTIVE), 0);
    CHECK_EQ_INT(registry_site_by_pin(r, pin, &s), 0);
    CHECK_EQ_STR(s.name, "echo");
    CHECK_EQ_INT(s.state, REG_SITE_ACTIVE);
    registry_site_clear(&s);
    pin_of(99, pin2);
    CHECK_EQ_INT(registry_site_by_pin(r, pin2, &s), -ENOENT);
    CHECK_EQ_INT(registry_site_by_pin(r, "", &s), -EINVAL);

    /* What a connected site reports; NULL leaves a field alone. */
    CHECK_EQ_INT(registry_site_get(r, "echo", &s), 0);
    CHECK_EQ_INT(registry_site_seen(r, s.id, 5000, "tether-site 0.1.0", "[\"web\",\"db\"]",
                                    "192.0.2.7:40000"),
                 0);
    CHECK_EQ_INT(registry_site_seen(r, s.id, 5020, NULL, NULL, NULL), 0);
    CHECK_EQ_INT(registry_site_seen(r, s.id, 5030, NULL, "{\"not\":\"array\"}", NULL), -EINVAL);
    CHECK_EQ_INT(registry_site_seen(r, s.id, 5030, NULL, "[oops", NULL), -EINVAL);
    CHECK_EQ_INT(registry_site_seen(r, 987654, 5030, NULL, NULL, NULL), -ENOENT);
    registry_site_clear(&s);
    CHECK_EQ_INT(registry_site_get(r, "echo", &s), 0);
    CHECK_EQ_INT(s.last_seen, 5020);
    CHECK_EQ_STR(s.agent_version, "tether-site 0.1.0");
    CHECK_EQ_STR(s.services_json, "[\"web\",\"db\"]");
    CHECK_EQ_STR(s.remote_addr, "192.0.2.7:40000");
    /* A version string from the network longer than the field is cut, not refused. */
    memset(agent, 'v', sizeof(agent) - 1);
    agent[sizeof(agent) - 1] = '\0';
    CHECK_EQ_INT(registry_site_seen(r, s.id, 5040, agent, NULL, NULL), 0);
    registry_site_clear(&s);
    CHECK_EQ_INT(registry_site_get(r, "echo", &s), 0);
    CHECK_EQ_INT(strlen(s.agent_version), sizeof(s.agent_version) - 1);

    /* Key rotation. */
    CHECK_EQ_INT(registry_site_rotate_pin(r, s.id, pin2, pin2), -ENOENT); /* wrong old pin */
    CHECK_EQ_INT(registry_site_rotate_pin(r, 987654, pin, pin2), -ENOENT);
    CHECK_EQ_INT(registry_site_rotate_pin(r, s.id, pin, "sha256//short="), -EINVAL);
    CHECK_EQ_INT(registry_site_rotate_pin(r, s.id, pin, ""), -EINVAL);
    CHECK_EQ_INT(make_active(r, "foxtrot", 2, 2), 0);
    pin_of(2, pin3);
    CHECK_EQ_INT(registry_site_rotate_pin(r, s.id, pin, pin3), -EEXIST); /* foxtrot's */
    CHECK_EQ_INT(registry_site_rotate_pin(r, s.id, pin, pin2), 0);
    registry_site_clear(&s);
    CHECK_EQ_INT(registry_site_by_pin(r, pin, &s), -ENOENT);
    CHECK_EQ_INT(registry_site_by_pin(r, pin2, &s), 0);
    CHECK_EQ_STR(s.name, "echo");
    registry_site_clear(&s);

    /* Revoke forgets the key; the site cannot be re-enabled without enrolling. */
    CHECK_EQ_INT(registry_site_revoke(r, "echo"), 0);
    CHECK_EQ_INT(registry_site_get(r, "echo", &s), 0);
    CHECK_EQ_INT(s.state, REG_SITE_REVOKED);
    CHECK_EQ_STR(s.pin, "");
    registry_site_clear(&s);
    CHECK_EQ_INT(registry_site_by_pin(r, pin2, &s), -ENOENT);
    CHECK_EQ_INT(registry_site_set_state(r, "echo", REG_SITE_ACTIVE), -EINVAL);
    CHECK_EQ_INT(registry_site_revoke(r, "echo"), 0); /* idempotent */
    CHECK_EQ_INT(registry_site_revoke(r, "nosuch"), -ENOENT);
    CHECK_EQ_INT(registry_site_revoke(r, "charlie-3"), 0); /* pending -> revoked */
    CHECK_EQ_INT(registry_site_get(r, "charlie-3", &s), 0);
    CHECK_EQ_INT(s.state, REG_SITE_REVOKED);
    registry_site_clear(&s);
    /* The freed pin can be taken by another site. */
    CHECK_EQ_INT(registry_site_get(r, "foxtrot", &s), 0);
    CHECK_EQ_INT(registry_site_rotate_pin(r, s.id, pin3, pin2), 0);
    registry_site_clear(&s);

    CHECK_EQ_INT(registry_site_remove(r, "nosuch"), -ENOENT);
    CHECK_EQ_INT(registry_site_remove(r, "alpha"), 0);
    CHECK_EQ_INT(registry_site_get(r, "alpha", &s), -ENOENT);
    CHECK_EQ_INT(registry_site_remove(r, "alpha"), -ENOENT);
}

struct enrolls {
    struct reg_enroll v[8];
    int n;
};

static int collect_enroll(const struct reg_enroll *e, void *arg)
{
    struct enrolls *es = arg;

    if (es->n < 8)
        es->v[es->n++] = *e;
    return 0;
}

static void test_enroll(struct registry *r)
{
    char h[6][65], pin[CRYPTO_PIN_LEN + 1], pin2[CRYPTO_PIN_LEN + 1], site[TOKEN_NAME_MAX + 1];
    int64_t id[6] = {0};
    struct reg_site s;
    struct enrolls es;
    unsigned i;

    for (i = 0; i < 6; i++)
        hash_of(100 + i, h[i]);
    pin_of(100, pin);
    pin_of(101, pin2);
    CHECK_EQ_INT(registry_site_create(r, "golf", NULL, 1000), 0);
    CHECK_EQ_INT(registry_enroll_create(r, "nosuch", h[0], 2000, 1000, &id[0]), -ENOENT);
    CHECK_EQ_INT(registry_enroll_create(r, "golf", "ABCD", 2000, 1000, &id[0]), -EINVAL);
    CHECK_EQ_INT(registry_enroll_create(r, "golf", h[0], 1000, 1000, &id[0]), -EINVAL);
    for (i = 0; i < 4; i++) {
        CHECK_EQ_INT(registry_enroll_create(r, "golf", h[i], 2000, 1000 + i, &id[i]), 0);
        CHECK(id[i] > 0 && (i == 0 || id[i] > id[i - 1]));
    }
    CHECK_EQ_INT(registry_enroll_create(r, "golf", h[0], 3000, 1000, NULL), -EEXIST);

    /* Unknown, expired (expires_at is the first second it is dead), cancelled. */
    CHECK_EQ_INT(registry_enroll_redeem(r, h[5], pin, 1500, site), -ENOENT);
    CHECK_EQ_INT(registry_enroll_redeem(r, h[0], pin, 2000, site), -ETIMEDOUT);
    CHECK_EQ_STR(site, "");
    CHECK_EQ_INT(registry_enroll_cancel(r, id[1]), 0);
    CHECK_EQ_INT(registry_enroll_cancel(r, id[1]), 0); /* twice is fine */
    CHECK_EQ_INT(registry_enroll_cancel(r, 987654), -ENOENT);
    CHECK_EQ_INT(registry_enroll_redeem(r, h[1], pin, 1500, site), -ECANCELED);
    CHECK_EQ_INT(registry_enroll_redeem(r, h[0], "", 1500, site), -EINVAL);
    CHECK_EQ_INT(registry_enroll_redeem(r, h[0], "sha256//bad", 1500, site), -EINVAL);
    CHECK_EQ_INT(registry_site_get(r, "golf", &s), 0);
    CHECK_EQ_INT(s.state, REG_SITE_PENDING); /* failed redeems changed nothing */
    registry_site_clear(&s);

    /* Success. */
    CHECK_EQ_INT(registry_enroll_redeem(r, h[0], pin, 1999, site), 0);
    CHECK_EQ_STR(site, "golf");
    CHECK_EQ_INT(registry_site_get(r, "golf", &s), 0);
    CHECK_EQ_INT(s.state, REG_SITE_ACTIVE);
    CHECK_EQ_STR(s.pin, pin);
    CHECK_EQ_INT(s.enrolled_at, 1999);
    registry_site_clear(&s);
    CHECK_EQ_INT(registry_enroll_redeem(r, h[0], pin2, 1999, site), -EALREADY);
    CHECK_EQ_INT(registry_enroll_cancel(r, id[0]), -EALREADY);
    /* A used token stays used even once it would have expired. */
    CHECK_EQ_INT(registry_enroll_redeem(r, h[0], pin2, 5000, site), -EALREADY);

    /* Another site holding the pin: -EEXIST, and the token is not burnt. */
    CHECK_EQ_INT(registry_site_create(r, "hotel", NULL, 1000), 0);
    CHECK_EQ_INT(registry_enroll_create(r, "hotel", h[4], 3000, 1000, &id[4]), 0);
    CHECK_EQ_INT(registry_enroll_redeem(r, h[4], pin, 1500, site), -EEXIST);
    CHECK_EQ_INT(registry_enroll_redeem(r, h[4], pin2, 1500, site), 0);
    CHECK_EQ_STR(site, "hotel");

    /* Re-enrolling a disabled site replaces the key but keeps it disabled. */
    CHECK_EQ_INT(registry_site_set_state(r, "golf", REG_SITE_DISABLED), 0);
    pin_of(102, pin2);
    CHECK_EQ_INT(registry_enroll_redeem(r, h[2], pin2, 1600, site), 0);
    CHECK_EQ_INT(registry_site_get(r, "golf", &s), 0);
    CHECK_EQ_INT(s.state, REG_SITE_DISABLED);
    CHECK_EQ_STR(s.pin, pin2);
    registry_site_clear(&s);

    /* Revoking cancels tokens issued before; a fresh one re-enrolls. */
    CHECK_EQ_INT(registry_site_revoke(r, "golf"), 0);
    CHECK_EQ_INT(registry_enroll_redeem(r, h[3], pin2, 1600, site), -ECANCELED);
    CHECK_EQ_INT(registry_enroll_create(r, "golf", h[5], 4000, 3000, &id[5]), 0);
    CHECK_EQ_INT(registry_enroll_redeem(r, h[5], pin2, 3001, site), 0);
    CHECK_EQ_INT(registry_site_get(r, "golf", &s), 0);
    CHECK_EQ_INT(s.state, REG_SITE_ACTIVE);
    CHECK_EQ_STR(s.pin, pin2);
    registry_site_clear(&s);

    /* Newest first, with the site name and each token's fate. */
    memset(&es, 0, sizeof(es));
    CHECK_EQ_INT(registry_enroll_list(r, collect_enroll, &es), 0);
    CHECK_EQ_INT(es.n, 8); /* and two from test_sites */
    CHECK_EQ_INT(es.v[0].id, id[5]);
    CHECK_EQ_STR(es.v[0].site, "golf");
    CHECK_EQ_INT(es.v[0].created_at, 3000);
    CHECK_EQ_INT(es.v[0].expires_at, 4000);
    CHECK_EQ_INT(es.v[0].used_at, 3001);
    CHECK_EQ_INT(es.v[0].cancelled_at, 0);
    CHECK_EQ_STR(es.v[1].site, "hotel");
    CHECK_EQ_INT(es.v[2].id, id[3]);
    CHECK(es.v[2].cancelled_at > 0);
    CHECK_EQ_INT(es.v[2].used_at, 0);
    CHECK_EQ_INT(es.v[5].id, id[0]);
    CHECK_EQ_INT(es.v[5].used_at, 1999);
}

static void test_two_handles(void)
{
    char path[512], h[65], pin[CRYPTO_PIN_LEN + 1], site[TOKEN_NAME_MAX + 1];
    struct registry *a, *b;
    struct reg_site s;

    db_at("two.db", path, sizeof(path));
    a = open_ok(path);
    b = open_ok(path);
    if (a == NULL || b == NULL)
        goto out;
    hash_of(7, h);
    pin_of(7, pin);
    CHECK_EQ_INT(registry_site_create(a, "india", NULL, 10), 0);
    CHECK_EQ_INT(registry_enroll_create(a, "india", h, 100, 10, NULL), 0);
    CHECK_EQ_INT(registry_enroll_redeem(b, h, pin, 20, site), 0);
    CHECK_EQ_INT(registry_enroll_redeem(a, h, pin, 20, site), -EALREADY);
    CHECK_EQ_INT(registry_site_get(a, "india", &s), 0);
    CHECK_EQ_INT(s.state, REG_SITE_ACTIVE);
    registry_site_clear(&s);
out:
    registry_close(a);
    registry_close(b);
}

enum { CHILD_WON = 0, CHILD_USED = 1, CHILD_OPEN = 2, CHILD_OTHER = 3 };

/* Waits on the go pipe so that both children start the same instant. */
static int child_redeem(const char *path, int go_fd, const char *hash, const char *pin)
{
    struct registry *r = NULL;
    char site[TOKEN_NAME_MAX + 1], c;
    int rc;

    if (registry_open(path, &r, NULL, 0) < 0)
        return CHILD_OPEN;
    (void)!read(go_fd, &c, 1);
    rc = registry_enroll_redeem(r, hash, pin, 50, site);
    registry_close(r);
    return rc == 0 ? CHILD_WON : rc == -EALREADY ? CHILD_USED : CHILD_OTHER;
}

static int child_open(const char *path, int go_fd)
{
    struct registry *r = NULL;
    char c, err[256];
    int rc;

    (void)!read(go_fd, &c, 1);
    rc = registry_open(path, &r, err, sizeof(err));
    if (rc < 0)
        fprintf(stderr, "concurrent open: %s\n", err);
    if (rc == 0 && registry_schema_version(r) != latest())
        rc = -1;
    registry_close(r);
    return rc == 0 ? CHILD_WON : CHILD_OPEN;
}

/* Forks two processes (redeem = 1: redeem hash with pin_of(pin_base + i); else open the
 * path) released together; fills their exit codes. */
static void race(const char *path, int redeem, const char *hash, unsigned pin_base, int codes[2])
{
    char pin[CRYPTO_PIN_LEN + 1];
    pid_t pids[2];
    int go[2], i, st;

    codes[0] = codes[1] = -1;
    if (pipe(go) != 0)
        return;
    for (i = 0; i < 2; i++) {
        pids[i] = fork();
        if (pids[i] == 0) {
            close(go[1]);
            pin_of(pin_base + i, pin);
            _exit(redeem ? child_redeem(path, go[0], hash, pin) : child_open(path, go[0]));
        }
    }
    close(go[0]);
    usleep(20000); /* let both children reach the pipe */
    close(go[1]);  /* EOF releases both at once */
    for (i = 0; i < 2; i++) {
        if (pids[i] > 0 && waitpid(pids[i], &st, 0) == pids[i] && WIFEXITED(st))
            codes[i] = WEXITSTATUS(st);
    }
}

static void test_fork_race(void)
{
    char path[512], name[32], h[65], pin[CRYPTO_PIN_LEN + 1];
    struct registry *r;
    struct reg_site s;
    int round, codes[2], one_winner = 0, bad = 0;
    const int rounds = 40;

    db_at("race.db", path, sizeof(path));
    for (round = 0; round < rounds; round++) {
        /* No connection stays open across fork(). */
        r = open_ok(path);
        if (r == NULL)
            return;
        snprintf(name, sizeof(name), "race-%d", round);
        hash_of(5000 + round, h);
        CHECK_EQ_INT(registry_site_create(r, name, NULL, 10), 0);
        CHECK_EQ_INT(registry_enroll_create(r, name, h, 100, 10, NULL), 0);
        registry_close(r);

        race(path, 1, h, 1000 + 2 * round, codes);
        if ((codes[0] == CHILD_WON && codes[1] == CHILD_USED) ||
            (codes[1] == CHILD_WON && codes[0] == CHILD_USED)) {
            one_winner++;
        } else {
            fprintf(stderr, "round %d: child codes %d %d\n", round, codes[0], codes[1]);
            bad++;
            continue;
        }
        /* The winner's key is the one recorded. */
        r = open_ok(path);
        if (r == NULL)
            return;
        pin_of(1000 + 2 * round + (codes[0] == CHILD_WON ? 0 : 1), pin);
        CHECK_EQ_INT(registry_site_get(r, name, &s), 0);
        if (strcmp(s.pin, pin) != 0)
            bad++;
        registry_site_clear(&s);
        registry_close(r);
    }
    CHECK_EQ_INT(one_winner, rounds);
    CHECK_EQ_INT(bad, 0);

    /* Two processes creating the same fresh database at once both succeed. */
    for (round = 0; round < (pg ? 5 : 20); round++) {
        snprintf(name, sizeof(name), "fresh-%d.db", round);
        db_at(name, path, sizeof(path));
        race(path, 0, NULL, 0, codes);
        CHECK_EQ_INT(codes[0], CHILD_WON);
        CHECK_EQ_INT(codes[1], CHILD_WON);
        CHECK_EQ_INT(raw_int(path, pg ? "SELECT value FROM tether_meta WHERE key = "
                                        "'schema_version'"
                                      : "PRAGMA user_version"),
                     latest());
    }
}

static void test_apitokens(struct registry *r)
{
    char h[5][65];
    struct reg_apitoken t;
    int64_t n = -1;
    unsigned i;

    for (i = 0; i < 5; i++)
        hash_of(200 + i, h[i]);
    CHECK_EQ_INT(registry_apitoken_count(r, &n), 0);
    CHECK_EQ_INT(n, 0);
    CHECK_EQ_INT(registry_apitoken_create(r, "admin", "admin", NULL, h[0], 0, 100), 0);
    CHECK_EQ_INT(registry_apitoken_create(r, "ci", "user", "[\"alpha\",\"bravo\"]", h[1], 500, 100),
                 0);
    CHECK_EQ_INT(registry_apitoken_create(r, "ci", "user", NULL, h[2], 0, 100), -EEXIST);
    CHECK_EQ_INT(registry_apitoken_create(r, "other", "user", NULL, h[1], 0, 100), -EEXIST);
    CHECK_EQ_INT(registry_apitoken_create(r, "other", "root", NULL, h[2], 0, 100), -EINVAL);
    CHECK_EQ_INT(registry_apitoken_create(r, "other", "user", "{oops", h[2], 0, 100), -EINVAL);
    CHECK_EQ_INT(registry_apitoken_create(r, "other", "user", "\"alpha\"", h[2], 0, 100), -EINVAL);
    CHECK_EQ_INT(registry_apitoken_create(r, "Other", "user", NULL, h[2], 0, 100), -EINVAL);
    CHECK_EQ_INT(registry_apitoken_create(r, "other", "user", NULL, "zz", 0, 100), -EINVAL);
    CHECK_EQ_INT(registry_apitoken_create(r, "labels", "user", "{\"labels\":{\"env\":\"prod\"}}",
                                          h[3], 0, 100),
                 0);
    CHECK_EQ_INT(registry_apitoken_count(r, &n), 0);
    CHECK_EQ_INT(n, 3);

    CHECK_EQ_INT(registry_apitoken_lookup(r, h[0], 1000000, &t), 0);
    CHECK_EQ_STR(t.name, "admin");
    CHECK_EQ_STR(t.role, "admin");
    CHECK(t.scope_json == NULL);
    CHECK_EQ_INT(t.created_at, 100);
    CHECK_EQ_INT(t.expires_at, 0);
    CHECK_EQ_INT(t.revoked_at, 0);
    registry_apitoken_clear(&t);
    CHECK_EQ_INT(registry_apitoken_lookup(r, h[1], 499, &t), 0);
    CHECK_EQ_STR(t.role, "user");
    CHECK_EQ_STR(t.scope_json, "[\"alpha\",\"bravo\"]");
    CHECK_EQ_INT(t.expires_at, 500);
    registry_apitoken_clear(&t);
    CHECK(t.scope_json == NULL);
    CHECK_EQ_INT(registry_apitoken_lookup(r, h[1], 500, &t), -EKEYEXPIRED);
    CHECK(t.scope_json == NULL);
    CHECK_EQ_INT(registry_apitoken_lookup(r, h[4], 100, &t), -ENOENT);

    CHECK_EQ_INT(registry_apitoken_revoke(r, "labels", 150), 0);
    CHECK_EQ_INT(registry_apitoken_lookup(r, h[3], 160, &t), -EKEYREVOKED);
    CHECK_EQ_INT(registry_apitoken_revoke(r, "labels", 170), -EALREADY);
    CHECK_EQ_INT(registry_apitoken_revoke(r, "nosuch", 170), -ENOENT);
    /* A revoked name may be given to a new token; count keeps both. */
    CHECK_EQ_INT(registry_apitoken_create(r, "labels", "user", NULL, h[4], 0, 200), 0);
    CHECK_EQ_INT(registry_apitoken_lookup(r, h[4], 300, &t), 0);
    CHECK_EQ_STR(t.name, "labels");
    registry_apitoken_clear(&t);
    CHECK_EQ_INT(registry_apitoken_lookup(r, h[3], 300, &t), -EKEYREVOKED);
    CHECK_EQ_INT(registry_apitoken_count(r, &n), 0);
    CHECK_EQ_INT(n, 4);
}

struct sessions {
    struct reg_session v[8];
    int n;
};

static int collect_session(const struct reg_session *s, void *arg)
{
    struct sessions *ss = arg;

    if (ss->n < 8)
        ss->v[ss->n++] = *s;
    return 0;
}

static void test_sessions(struct registry *r)
{
    int64_t sid[4] = {0}, other = 0, site_id;
    struct reg_site s;
    struct sessions ss;
    char reason[300];

    CHECK_EQ_INT(registry_site_create(r, "juliet", NULL, 10), 0);
    CHECK_EQ_INT(registry_site_get(r, "juliet", &s), 0);
    site_id = s.id;
    registry_site_clear(&s);
    CHECK_EQ_INT(registry_session_open(r, 987654, "192.0.2.1:1", "v1", 100, &other), -ENOENT);
    CHECK_EQ_INT(other, 0);
    CHECK_EQ_INT(registry_session_open(r, site_id, "192.0.2.1:1000", "v1", 100, &sid[0]), 0);
    CHECK_EQ_INT(registry_session_open(r, site_id, "192.0.2.1:1001", "v1", 300, &sid[1]), 0);
    CHECK_EQ_INT(registry_session_open(r, site_id, "192.0.2.1:1002", "v2", 200, &sid[2]), 0);
    /* Same second as sid[1]: the later row is newer. */
    CHECK_EQ_INT(registry_session_open(r, site_id, "192.0.2.1:1003", "v2", 300, &sid[3]), 0);
    CHECK(sid[0] > 0 && sid[3] > sid[2]);

    memset(reason, 'r', sizeof(reason) - 1);
    reason[sizeof(reason) - 1] = '\0';
    CHECK_EQ_INT(registry_session_close(r, sid[0], 150, "ping timeout", 1234, 5678), 0);
    CHECK_EQ_INT(registry_session_close(r, sid[0], 160, "again", 1, 1), -EALREADY);
    CHECK_EQ_INT(registry_session_close(r, 987654, 160, "x", 1, 1), -ENOENT);
    CHECK_EQ_INT(registry_session_close(r, sid[2], 160, "x", -1, 1), -EINVAL);
    /* A clock stepped back: closed at its own start, not refused. */
    CHECK_EQ_INT(registry_session_close(r, sid[2], 50, reason, 0, 0), 0);

    memset(&ss, 0, sizeof(ss));
    CHECK_EQ_INT(registry_session_list(r, site_id, 10, collect_session, &ss), 0);
    CHECK_EQ_INT(ss.n, 4);
    CHECK_EQ_INT(ss.v[0].id, sid[3]);
    CHECK_EQ_INT(ss.v[1].id, sid[1]);
    CHECK_EQ_INT(ss.v[2].id, sid[2]);
    CHECK_EQ_INT(ss.v[3].id, sid[0]);
    CHECK_EQ_INT(ss.v[3].disconnected_at, 150);
    CHECK_EQ_STR(ss.v[3].reason, "ping timeout");
    CHECK_EQ_INT(ss.v[3].bytes_in, 1234);
    CHECK_EQ_INT(ss.v[3].bytes_out, 5678);
    CHECK_EQ_STR(ss.v[3].remote_addr, "192.0.2.1:1000");
    CHECK_EQ_STR(ss.v[3].agent_version, "v1");
    CHECK_EQ_INT(ss.v[3].site_id, site_id);
    CHECK_EQ_INT(ss.v[2].disconnected_at, 200);
    CHECK_EQ_INT(strlen(ss.v[2].reason), sizeof(ss.v[2].reason) - 1);
    CHECK_EQ_INT(ss.v[0].disconnected_at, 0);

    memset(&ss, 0, sizeof(ss));
    CHECK_EQ_INT(registry_session_list(r, site_id, 2, collect_session, &ss), 0);
    CHECK_EQ_INT(ss.n, 2);
    CHECK_EQ_INT(ss.v[1].id, sid[1]);
    CHECK_EQ_INT(registry_session_list(r, site_id, 0, collect_session, &ss), -EINVAL);

    /* After a crash: everything still open is closed with the reason given. */
    CHECK_EQ_INT(registry_session_close_stale(r, 1000, "hub restarted"), 0);
    memset(&ss, 0, sizeof(ss));
    CHECK_EQ_INT(registry_session_list(r, site_id, 10, collect_session, &ss), 0);
    CHECK_EQ_INT(ss.v[0].disconnected_at, 1000);
    CHECK_EQ_STR(ss.v[0].reason, "hub restarted");
    CHECK_EQ_INT(ss.v[1].disconnected_at, 1000);
    CHECK_EQ_INT(ss.v[3].disconnected_at, 150); /* already closed: untouched */
    CHECK_EQ_STR(ss.v[3].reason, "ping timeout");
    CHECK_EQ_INT(registry_session_close(r, sid[3], 1100, "x", 0, 0), -EALREADY);
}

struct hub_rows {
    struct reg_hub v[4];
    char pub[4][64];
    int n;
};

static int collect_hub(const struct reg_hub *hub, void *arg)
{
    struct hub_rows *l = arg;

    if (l->n < 4) {
        l->v[l->n] = *hub;
        l->v[l->n].public_json = NULL;
        snprintf(l->pub[l->n++], sizeof(l->pub[0]), "%s", hub->public_json);
    }
    return 0;
}

/* The hubs of a cluster: joins are by key; `run` refreshes a hub's row or
 * adds it (a registry older than hubs); sessions carry their hub, and a
 * hub's start closes only its own (and those without one). */
static void test_hubs(struct registry *r)
{
    static const char *const pa = "sha256//AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    static const char *const pb = "sha256//BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB=";
    struct hub_rows l = {.n = 0};
    struct sessions ss;
    struct reg_site s;
    int64_t a = 0, b = 0, again = 0, site_id, sid[3], where = -1, wsid = -1;

    CHECK_EQ_INT(registry_hub_join(r, "hub1", pa, "[\"h1:6443\"]", 10, &a), 0);
    CHECK_EQ_INT(registry_hub_join(r, "hub1", pa, "[]", 11, NULL), -EEXIST);
    CHECK_EQ_INT(registry_hub_start(r, "hub2", pb, "[\"h2:6443\"]", 12, &b), 0); /* adds */
    CHECK_EQ_INT(registry_hub_start(r, "hub1", pa, "[\"h1:443\"]", 13, &again), 0);
    CHECK(a > 0 && b > a && again == a);
    CHECK_EQ_INT(registry_hub_list(r, collect_hub, &l), 0);
    CHECK_EQ_INT(l.n, 2);
    CHECK_EQ_INT(l.v[0].id, a);
    CHECK_EQ_STR(l.v[0].pin, pa);
    CHECK_EQ_STR(l.pub[0], "[\"h1:443\"]");
    CHECK_EQ_INT(l.v[0].joined_at, 10);
    CHECK_EQ_INT(l.v[0].seen_at, 13);
    CHECK_EQ_STR(l.v[1].name, "hub2");
    CHECK_EQ_INT(registry_hub_join(r, "hub3", pb, "not json", 14, NULL), -EINVAL);

    CHECK_EQ_INT(registry_site_create(r, "kilo", NULL, 10), 0);
    CHECK_EQ_INT(registry_site_get(r, "kilo", &s), 0);
    site_id = s.id;
    registry_site_clear(&s);
    /* Where the site is: its newest open session's hub. */
    CHECK_EQ_INT(registry_session_where(r, site_id, &where, &wsid), -ENOENT);
    CHECK_EQ_INT(registry_session_where(r, site_id, NULL, NULL), -EINVAL);
    registry_use_hub(r, a);
    CHECK_EQ_INT(registry_session_open(r, site_id, "192.0.2.1:1", "v1", 100, &sid[0]), 0);
    CHECK_EQ_INT(registry_session_where(r, site_id, &where, &wsid), 0);
    CHECK_EQ_INT(where, a);
    CHECK_EQ_INT(wsid, sid[0]);
    registry_use_hub(r, b);
    CHECK_EQ_INT(registry_session_open(r, site_id, "192.0.2.1:2", "v1", 101, &sid[1]), 0);
    CHECK_EQ_INT(registry_session_where(r, site_id, &where, &wsid), 0);
    CHECK_EQ_INT(where, b); /* the newer session wins, though a's is still open */
    CHECK_EQ_INT(wsid, sid[1]);
    registry_use_hub(r, 0);
    CHECK_EQ_INT(registry_session_open(r, site_id, "192.0.2.1:3", "v1", 102, &sid[2]), 0);
    CHECK_EQ_INT(registry_session_where(r, site_id, &where, &wsid), 0);
    CHECK_EQ_INT(where, 0); /* recorded without a hub */
    CHECK_EQ_INT(wsid, sid[2]);
    /* Every open session, oldest first, with the hub holding it. */
    memset(&ss, 0, sizeof(ss));
    CHECK_EQ_INT(registry_session_open_each(r, site_id, collect_session, &ss), 0);
    CHECK_EQ_INT(ss.n, 3);
    CHECK_EQ_INT(ss.v[0].id, sid[0]);
    CHECK_EQ_INT(ss.v[0].hub_id, a);
    CHECK_EQ_STR(ss.v[0].remote_addr, "192.0.2.1:1");
    CHECK_EQ_INT(ss.v[0].connected_at, 100);
    CHECK_EQ_INT(ss.v[1].hub_id, b);
    CHECK_EQ_INT(ss.v[2].id, sid[2]);
    CHECK_EQ_INT(ss.v[2].hub_id, 0);
    memset(&ss, 0, sizeof(ss));
    CHECK_EQ_INT(registry_session_open_each(r, 0, collect_session, &ss), 0); /* every site */
    CHECK(ss.n >= 3 && ss.v[ss.n - 1].id == sid[2]); /* earlier tests' sites' too */
    memset(&ss, 0, sizeof(ss));
    CHECK_EQ_INT(registry_session_open_each(r, site_id + 1000, collect_session, &ss), 0);
    CHECK_EQ_INT(ss.n, 0);
    CHECK_EQ_INT(registry_session_open_each(r, -1, collect_session, &ss), -EINVAL);
    registry_use_hub(r, a);
    CHECK_EQ_INT(registry_session_close_stale(r, 200, "hub restarted"), 0);
    memset(&ss, 0, sizeof(ss));
    CHECK_EQ_INT(registry_session_open_each(r, site_id, collect_session, &ss), 0);
    CHECK_EQ_INT(ss.n, 1); /* b's, the only one left open */
    CHECK_EQ_INT(ss.v[0].id, sid[1]);
    memset(&ss, 0, sizeof(ss));
    CHECK_EQ_INT(registry_session_list(r, site_id, 10, collect_session, &ss), 0);
    CHECK_EQ_INT(ss.n, 3);
    CHECK_EQ_INT(ss.v[0].id, sid[2]);
    CHECK_EQ_INT(ss.v[0].disconnected_at, 200); /* no hub: closed */
    CHECK_EQ_INT(ss.v[1].id, sid[1]);
    CHECK_EQ_INT(ss.v[1].disconnected_at, 0); /* hub b's: open */
    CHECK_EQ_INT(ss.v[2].disconnected_at, 200);
    /* Closed ones do not count: b's is the newest open. */
    CHECK_EQ_INT(registry_session_where(r, site_id, &where, &wsid), 0);
    CHECK_EQ_INT(where, b);
    CHECK_EQ_INT(wsid, sid[1]);
    CHECK_EQ_INT(registry_session_close(r, sid[1], 300, "gone", 0, 0), 0);
    CHECK_EQ_INT(registry_session_where(r, site_id, &where, NULL), -ENOENT);
    registry_use_hub(r, 0);
}

static void test_cascade(struct registry *r, const char *path)
{
    char h[65], sql[96];
    struct reg_site s;
    int64_t id, site_id;

    CHECK_EQ_INT(make_active(r, "kilo", 300, 300), 0);
    CHECK_EQ_INT(registry_site_get(r, "kilo", &s), 0);
    site_id = s.id;
    registry_site_clear(&s);
    hash_of(301, h);
    CHECK_EQ_INT(registry_enroll_create(r, "kilo", h, 9000, 10, NULL), 0);
    CHECK_EQ_INT(registry_session_open(r, site_id, "a", "b", 10, &id), 0);
    CHECK(id > 0);
    CHECK_EQ_INT(registry_audit(r, 10, "admin", "", "site.remove", "kilo", "ok", ""), 0);
    CHECK_EQ_INT(raw_int(path, "SELECT count(*) FROM enroll_tokens WHERE site_id IN "
                               "(SELECT id FROM sites WHERE name = 'kilo')"),
                 2);
    CHECK_EQ_INT(registry_site_remove(r, "kilo"), 0);
    CHECK_EQ_INT(raw_int(path, "SELECT count(*) FROM enroll_tokens e LEFT JOIN sites s ON "
                               "s.id = e.site_id WHERE s.id IS NULL"),
                 0);
    CHECK_EQ_INT(raw_int(path, "SELECT count(*) FROM sessions e LEFT JOIN sites s ON "
                               "s.id = e.site_id WHERE s.id IS NULL"),
                 0);
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM sessions WHERE site_id = %lld",
             (long long)site_id);
    CHECK_EQ_INT(raw_int(path, sql), 0);
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM enroll_tokens WHERE site_id = %lld",
             (long long)site_id);
    CHECK_EQ_INT(raw_int(path, sql), 0);
    /* The audit log names sites; it outlives them. */
    CHECK_EQ_INT(raw_int(path, "SELECT count(*) FROM audit WHERE target = 'kilo'"), 1);
    CHECK_EQ_INT(registry_check(r), 0);
}

static void test_audit(struct registry *r, const char *path)
{
    char detail[5001];
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    size_t i;

    CHECK_EQ_INT(registry_audit(r, 77, "admin", "198.51.100.9", "site.create", "lima", "ok",
                                "{\"labels\":{}}"),
                 0);
    CHECK_EQ_INT(registry_audit(r, 78, "hub", NULL, "session.stale", NULL, "ok", NULL), 0);
    CHECK_EQ_INT(registry_audit(r, 79, NULL, NULL, "x", NULL, "ok", NULL), -EINVAL);
    CHECK_EQ_INT(registry_audit(r, 79, "a", NULL, "", NULL, "ok", NULL), -EINVAL);
    CHECK_EQ_INT(registry_audit(r, 79, "a", NULL, "x", NULL, NULL, NULL), -EINVAL);
    /* 2500 two-byte characters: cut to at most 4096 bytes, never mid-character. */
    for (i = 0; i + 2 < sizeof(detail); i += 2)
        memcpy(detail + i, "\xc3\xa9", 2);
    detail[i] = '\0';
    CHECK_EQ_INT(registry_audit(r, 80, "a", NULL, "big", NULL, "ok", detail), 0);
    /* Bytes that are not UTF-8 (and PostgreSQL would refuse) are stored
     * too: free text is cut, never refused. */
    CHECK_EQ_INT(registry_audit(r, 81, "a\xff", NULL, "bad", NULL, "ok", "x\xc3(\xed\xa0\x80y"), 0);
    CHECK_EQ_INT(raw_int(path, "SELECT count(*) FROM audit WHERE ts = 81"), 1);
    if (pg) {
        CHECK_EQ_INT(raw_int(path, "SELECT count(*) FROM audit WHERE ts = 81 AND actor = 'a?' "
                                   "AND detail = 'x?(???y'"),
                     1);
        CHECK_EQ_INT(raw_int(path, "SELECT count(*) FROM audit WHERE ts = 77 AND actor = 'admin' "
                                   "AND remote = '198.51.100.9' AND action = 'site.create' AND "
                                   "target = 'lima' AND result = 'ok' AND "
                                   "detail = '{\"labels\":{}}'"),
                     1);
        CHECK_EQ_INT(raw_int(path, "SELECT count(*) FROM audit WHERE ts = 78 AND actor = 'hub' "
                                   "AND remote = '' AND target = '' AND detail = ''"),
                     1);
        CHECK_EQ_INT(raw_int(path, "SELECT octet_length(detail) FROM audit WHERE ts = 80"), 4096);
        CHECK_EQ_INT(raw_int(path, "SELECT length(detail) FROM audit WHERE ts = 80"), 2048);
        return;
    }

    CHECK(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK);
    CHECK(sqlite3_prepare_v2(db,
                             "SELECT ts, actor, remote, action, target, result, detail FROM audit "
                             "WHERE ts IN (77, 78) ORDER BY ts",
                             -1, &st, NULL) == SQLITE_OK);
    CHECK_EQ_INT(sqlite3_step(st), SQLITE_ROW);
    CHECK_EQ_INT(sqlite3_column_int64(st, 0), 77);
    CHECK_EQ_STR((const char *)sqlite3_column_text(st, 1), "admin");
    CHECK_EQ_STR((const char *)sqlite3_column_text(st, 2), "198.51.100.9");
    CHECK_EQ_STR((const char *)sqlite3_column_text(st, 3), "site.create");
    CHECK_EQ_STR((const char *)sqlite3_column_text(st, 4), "lima");
    CHECK_EQ_STR((const char *)sqlite3_column_text(st, 5), "ok");
    CHECK_EQ_STR((const char *)sqlite3_column_text(st, 6), "{\"labels\":{}}");
    CHECK_EQ_INT(sqlite3_step(st), SQLITE_ROW);
    CHECK_EQ_STR((const char *)sqlite3_column_text(st, 1), "hub");
    CHECK_EQ_STR((const char *)sqlite3_column_text(st, 2), "");
    CHECK_EQ_STR((const char *)sqlite3_column_text(st, 4), "");
    CHECK_EQ_STR((const char *)sqlite3_column_text(st, 6), "");
    CHECK_EQ_INT(sqlite3_step(st), SQLITE_DONE);
    sqlite3_finalize(st);
    st = NULL;
    CHECK(sqlite3_prepare_v2(db,
                             "SELECT length(CAST(detail AS BLOB)), length(detail) FROM audit "
                             "WHERE ts = 80",
                             -1, &st, NULL) == SQLITE_OK);
    CHECK_EQ_INT(sqlite3_step(st), SQLITE_ROW);
    CHECK_EQ_INT(sqlite3_column_int(st, 0), 4096);
    CHECK_EQ_INT(sqlite3_column_int(st, 1), 2048);
    sqlite3_finalize(st);
    sqlite3_close(db);
}

static void test_labels(struct registry *r)
{
    struct reg_site s;

    CHECK_EQ_INT(registry_site_create(r, "lab-a", "{\"env\":\"dev\"}", 1000), 0);
    CHECK_EQ_INT(registry_site_set_labels(r, "lab-a", "{\"env\":\"prod\",\"tier\":\"1\"}"), 0);
    CHECK_EQ_INT(registry_site_get(r, "lab-a", &s), 0);
    CHECK_EQ_STR(s.labels_json, "{\"env\":\"prod\",\"tier\":\"1\"}");
    registry_site_clear(&s);
    CHECK_EQ_INT(registry_site_set_labels(r, "lab-missing", "{}"), -ENOENT);
    /* The schema's CHECK: labels are a JSON object. */
    CHECK_EQ_INT(registry_site_set_labels(r, "lab-a", "[1]"), -EINVAL);
    CHECK_EQ_INT(registry_site_set_labels(r, "lab-a", "{oops"), -EINVAL);
    CHECK_EQ_INT(registry_site_set_labels(r, "lab-a", NULL), -EINVAL);
    CHECK_EQ_INT(registry_site_get(r, "lab-a", &s), 0);
    CHECK_EQ_STR(s.labels_json, "{\"env\":\"prod\",\"tier\":\"1\"}");
    registry_site_clear(&s);
}

struct enroll_seen {
    int n_pending, n_cancelled, n_used;
    int64_t last_id;
};

static int count_enroll(const struct reg_enroll *e, void *arg)
{
    struct enroll_seen *c = arg;

    if (strcmp(e->site, "rei-a") != 0)
        return 0;
    if (e->used_at)
        c->n_used++;
    else if (e->cancelled_at)
        c->n_cancelled++;
    else
        c->n_pending++;
    return 0;
}

static void test_enroll_reissue(struct registry *r)
{
    char h1[65], h2[65], h3[65], h4[65], site[TOKEN_NAME_MAX + 1], pin[CRYPTO_PIN_LEN + 1];
    struct enroll_seen c;
    struct reg_enroll e;
    int64_t id1 = 0, id3 = 0, id = -1;

    hash_of(9101, h1);
    hash_of(9102, h2);
    hash_of(9103, h3);
    hash_of(9104, h4);
    CHECK_EQ_INT(registry_site_create(r, "rei-a", NULL, 1000), 0);
    CHECK_EQ_INT(registry_enroll_create(r, "rei-a", h1, 5000, 1000, &id1), 0);
    CHECK_EQ_INT(registry_enroll_create(r, "rei-a", h2, 5000, 1000, NULL), 0);
    /* A failing insert (hash taken) rolls the cancels back too. */
    CHECK_EQ_INT(registry_enroll_reissue(r, "rei-a", h1, 5000, 1100, &id), -EEXIST);
    CHECK_EQ_INT(id, 0);
    memset(&c, 0, sizeof(c));
    CHECK_EQ_INT(registry_enroll_list(r, count_enroll, &c), 0);
    CHECK_EQ_INT(c.n_pending, 2);
    CHECK_EQ_INT(registry_enroll_reissue(r, "rei-a", h3, 5000, 1100, &id3), 0);
    CHECK(id3 > id1);
    memset(&c, 0, sizeof(c));
    CHECK_EQ_INT(registry_enroll_list(r, count_enroll, &c), 0);
    CHECK_EQ_INT(c.n_pending, 1);
    CHECK_EQ_INT(c.n_cancelled, 2);
    pin_of(9101, pin);
    CHECK_EQ_INT(registry_enroll_redeem(r, h1, pin, 1200, site), -ECANCELED);
    CHECK_EQ_INT(registry_enroll_get(r, id3, &e), 0);
    CHECK_EQ_INT(e.id, id3);
    CHECK_EQ_STR(e.site, "rei-a");
    CHECK_EQ_INT(e.created_at, 1100);
    CHECK_EQ_INT(e.expires_at, 5000);
    CHECK_EQ_INT(e.used_at, 0);
    CHECK_EQ_INT(e.cancelled_at, 0);
    CHECK_EQ_INT(registry_enroll_get(r, id1, &e), 0);
    CHECK(e.cancelled_at != 0);
    CHECK_EQ_INT(registry_enroll_redeem(r, h3, pin, 1200, site), 0);
    CHECK_EQ_INT(registry_enroll_get(r, id3, &e), 0);
    CHECK_EQ_INT(e.used_at, 1200);
    /* A used token stays used: a reissue cancels only unused ones. */
    CHECK_EQ_INT(registry_enroll_reissue(r, "rei-a", h4, 5000, 1300, NULL), 0);
    CHECK_EQ_INT(registry_enroll_get(r, id3, &e), 0);
    CHECK_EQ_INT(e.used_at, 1200);
    CHECK_EQ_INT(e.cancelled_at, 0);
    CHECK_EQ_INT(registry_enroll_get(r, 987654321, &e), -ENOENT);
    CHECK_EQ_INT(registry_enroll_reissue(r, "rei-missing", h2, 5000, 1300, &id), -ENOENT);
    CHECK_EQ_INT(id, 0);
}

struct tok_seen {
    char names[8][TOKEN_NAME_MAX + 1];
    char scopes[8][64];
    int64_t revoked[8];
    int n, stop_at;
};

static int collect_tokens(const struct reg_apitoken *t, void *arg)
{
    struct tok_seen *c = arg;

    if (strncmp(t->name, "lst-", 4) != 0)
        return 0;
    if (c->n < 8) {
        snprintf(c->names[c->n], sizeof(c->names[0]), "%s", t->name);
        snprintf(c->scopes[c->n], sizeof(c->scopes[0]), "%s", t->scope_json ? t->scope_json : "*");
        c->revoked[c->n] = t->revoked_at;
    }
    c->n++;
    return c->stop_at && c->n >= c->stop_at ? 42 : 0;
}

static void test_apitoken_list(struct registry *r)
{
    char h[65];
    struct tok_seen c;

    hash_of(9201, h);
    CHECK_EQ_INT(registry_apitoken_create(r, "lst-b", "user", "[\"x\"]", h, 0, 1000), 0);
    hash_of(9202, h);
    CHECK_EQ_INT(registry_apitoken_create(r, "lst-a", "admin", NULL, h, 0, 1000), 0);
    CHECK_EQ_INT(registry_apitoken_revoke(r, "lst-b", 1100), 0);
    hash_of(9203, h);
    CHECK_EQ_INT(
        registry_apitoken_create(r, "lst-b", "user", "{\"labels\":{\"k\":\"v\"}}", h, 0, 1200), 0);
    memset(&c, 0, sizeof(c));
    CHECK_EQ_INT(registry_apitoken_list(r, collect_tokens, &c), 0);
    CHECK_EQ_INT(c.n, 3);
    CHECK_EQ_STR(c.names[0], "lst-a");
    CHECK_EQ_STR(c.scopes[0], "*");
    CHECK_EQ_STR(c.names[1], "lst-b");
    CHECK_EQ_STR(c.scopes[1], "[\"x\"]");
    CHECK_EQ_INT(c.revoked[1], 1100);
    CHECK_EQ_STR(c.names[2], "lst-b");
    CHECK_EQ_STR(c.scopes[2], "{\"labels\":{\"k\":\"v\"}}");
    CHECK_EQ_INT(c.revoked[2], 0);
    memset(&c, 0, sizeof(c));
    c.stop_at = 2;
    CHECK_EQ_INT(registry_apitoken_list(r, collect_tokens, &c), 42);
    CHECK_EQ_INT(c.n, 2);
    CHECK_EQ_INT(registry_apitoken_list(r, NULL, &c), -EINVAL);
}

struct audit_seen {
    int64_t ids[16];
    char actions[16][16];
    size_t detail_len[16];
    int n;
};

static int collect_audit(const struct reg_audit *a, void *arg)
{
    struct audit_seen *c = arg;

    if (c->n < 16) {
        c->ids[c->n] = a->id;
        snprintf(c->actions[c->n], sizeof(c->actions[0]), "%.15s", a->action);
        c->detail_len[c->n] = strlen(a->detail);
    }
    c->n++;
    return 0;
}

static void test_audit_list(struct registry *r, const char *path)
{
    struct audit_seen c;
    char big[6000], action[16];
    sqlite3_stmt *st = NULL;
    int64_t count_before, newest;
    int i;

    count_before = raw_int(path, "SELECT count(*) FROM audit");
    for (i = 0; i < 5; i++) {
        snprintf(action, sizeof(action), "list.%d", i);
        CHECK_EQ_INT(registry_audit(r, 2000 + i, "admin", "127.0.0.1", action, "t", "ok", ""), 0);
    }
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    /* The relaxed variant writes the same row, visible to another process. */
    CHECK_EQ_INT(
        registry_audit_relaxed(r, 2005, "alice", "127.0.0.1", "list.5", "t", "forwarded", big), 0);
    CHECK_EQ_INT(raw_int(path, "SELECT count(*) FROM audit"), count_before + 6);
    /* ... and leaves the connection as durable as before. */
    if (!pg)
        CHECK(sqlite3_prepare_v2(registry_sqlite_db(r), "PRAGMA synchronous", -1, &st, NULL) ==
              SQLITE_OK);
    if (!pg) {
        CHECK_EQ_INT(sqlite3_step(st), SQLITE_ROW);
        CHECK_EQ_INT(sqlite3_column_int(st, 0), 2); /* FULL */
        sqlite3_finalize(st);
    }

    memset(&c, 0, sizeof(c));
    CHECK_EQ_INT(registry_audit_list(r, 0, 2, collect_audit, &c), 0);
    CHECK_EQ_INT(c.n, 2);
    CHECK_EQ_STR(c.actions[0], "list.5");
    CHECK_EQ_STR(c.actions[1], "list.4");
    CHECK_EQ_INT(c.detail_len[0], 4096);
    CHECK(c.ids[0] > c.ids[1]);
    newest = c.ids[0];
    memset(&c, 0, sizeof(c));
    CHECK_EQ_INT(registry_audit_list(r, newest - 1, 3, collect_audit, &c), 0);
    CHECK_EQ_INT(c.n, 3);
    CHECK_EQ_STR(c.actions[0], "list.3");
    CHECK_EQ_STR(c.actions[2], "list.1");
    CHECK_EQ_INT(c.ids[0], newest - 2);
    memset(&c, 0, sizeof(c));
    CHECK_EQ_INT(registry_audit_list(r, 1, 10, collect_audit, &c), 0);
    CHECK_EQ_INT(c.n, 0);
    CHECK_EQ_INT(registry_audit_list(r, 0, 0, collect_audit, &c), -EINVAL);
    CHECK_EQ_INT(registry_audit_list(r, -1, 5, collect_audit, &c), -EINVAL);
    CHECK_EQ_INT(registry_audit_relaxed(r, 1, NULL, NULL, "x", NULL, "ok", NULL), -EINVAL);
}

struct sess_seen {
    char agent[64];
    int n;
};

static int first_session(const struct reg_session *s, void *arg)
{
    struct sess_seen *c = arg;

    if (c->n++ == 0)
        snprintf(c->agent, sizeof(c->agent), "%s", s->agent_version);
    return 0;
}

static void test_session_agent(struct registry *r)
{
    struct reg_site s;
    struct sess_seen c;
    int64_t sid = 0, old_sid = 0;

    CHECK_EQ_INT(make_active(r, "agv-a", 9301, 9301), 0);
    CHECK_EQ_INT(registry_site_get(r, "agv-a", &s), 0);
    CHECK_EQ_INT(registry_session_open(r, s.id, "192.0.2.1:1", "", 3000, &old_sid), 0);
    CHECK_EQ_INT(registry_session_close(r, old_sid, 3010, "gone", 1, 2), 0);
    CHECK_EQ_INT(registry_session_open(r, s.id, "192.0.2.1:2", "", 3020, &sid), 0);
    /* The hello comes after the session opened: its version lands in both rows. */
    CHECK_EQ_INT(registry_site_seen(r, s.id, 3021, "9.9.9", "[\"web\"]", NULL), 0);
    memset(&c, 0, sizeof(c));
    CHECK_EQ_INT(registry_session_list(r, s.id, 5, first_session, &c), 0);
    CHECK_EQ_INT(c.n, 2);
    CHECK_EQ_STR(c.agent, "9.9.9");
    CHECK_EQ_INT(registry_site_seen(r, 987654321, 3022, "1.0", NULL, NULL), -ENOENT);
    registry_site_clear(&s);
    CHECK_EQ_INT(registry_site_get(r, "agv-a", &s), 0);
    CHECK_EQ_STR(s.agent_version, "9.9.9");
    CHECK_EQ_INT(s.last_seen, 3021);
    registry_site_clear(&s);
}

static int copy_file(const char *from, const char *to)
{
    char buf[65536];
    FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
    size_t n;
    int rc = -1;

    if (in && out) {
        while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
            if (fwrite(buf, 1, n, out) != n)
                goto out;
        rc = 0;
    }
out:
    if (in)
        fclose(in);
    if (out && fclose(out) != 0)
        rc = -1;
    return rc;
}

static void test_corrupt(void)
{
    char path[512], bad[512], detail[400], err[256];
    unsigned char junk[4096];
    struct registry *r;
    struct stat sb;
    long long page, pages;
    int fd, rc, i;

    path_in(path, sizeof(path), "good.db");
    path_in(bad, sizeof(bad), "bad.db");
    r = open_ok(path);
    if (r == NULL)
        return;
    memset(detail, 'd', sizeof(detail) - 1);
    detail[sizeof(detail) - 1] = '\0';
    for (i = 0; i < 500; i++)
        CHECK_EQ_INT(registry_audit(r, i, "admin", "", "fill", "x", "ok", detail), 0);
    CHECK_EQ_INT(registry_check(r), 0);
    registry_close(r); /* last connection: checkpoints into the main file */

    CHECK_EQ_INT(copy_file(path, bad), 0);
    CHECK_EQ_INT(stat(bad, &sb), 0);
    page = raw_int(path, "PRAGMA page_size");
    pages = sb.st_size / page;
    CHECK(pages > 20);
    /* Garbage over the later (audit data) pages; the schema pages up front
     * stay readable, so open works and the check must find the damage. */
    for (i = 0; i < (int)sizeof(junk); i++)
        junk[i] = (unsigned char)(i * 151 + 7);
    fd = open(bad, O_WRONLY);
    CHECK(fd >= 0);
    for (long long p = pages / 2; p < pages; p += 3)
        CHECK_EQ_INT(
            pwrite(fd, junk, (size_t)page < sizeof(junk) ? (size_t)page : sizeof(junk), p * page),
            (size_t)page < sizeof(junk) ? page : (long long)sizeof(junk));
    close(fd);

    rc = registry_open(bad, &r, err, sizeof(err));
    CHECK_EQ_INT(rc, 0);
    if (rc == 0) {
        CHECK_EQ_INT(registry_check(r), -EIO);
        registry_close(r);
    }
    /* The original is untouched by all this. */
    r = open_ok(path);
    if (r) {
        CHECK_EQ_INT(registry_check(r), 0);
        registry_close(r);
    }
}

/* PostgreSQL's own open checks: the twins of test_open_fresh, test_reopen
 * and test_open_errors. */
static void test_pg_open(void)
{
    char url[PGTEST_URL_CAP], err[256], want[PGTEST_URL_CAP];
    struct registry *r = NULL, *r2 = NULL;
    struct reg_site s;

    db_at("fresh.db", url, sizeof(url));
    r = open_ok(url);
    if (r == NULL)
        return;
    CHECK_EQ_INT(registry_schema_version(r), latest());
    CHECK(latest() >= 4);
    CHECK_EQ_INT(raw_int(url, "SELECT count(*) FROM information_schema.tables WHERE table_name "
                              "IN ('sites','enroll_tokens','api_tokens','sessions','audit',"
                              "'queries','query_results','tether_meta')"),
                 8);
    CHECK_EQ_INT(registry_check(r), 0);
    CHECK_EQ_INT(registry_site_create(r, "keep", "{\"env\":\"prod\"}", 10), 0);
    registry_close(r);

    /* Opening again applies nothing and keeps the data; two at once. */
    r = open_ok(url);
    r2 = open_ok(url);
    if (r != NULL && r2 != NULL) {
        CHECK_EQ_INT(registry_schema_version(r), latest());
        CHECK_EQ_INT(registry_site_get(r2, "keep", &s), 0);
        CHECK_EQ_STR(s.labels_json, "{\"env\":\"prod\"}");
        registry_site_clear(&s);
    }
    registry_close(r);
    registry_close(r2);

    /* Written by a newer tether-hub. */
    snprintf(want, sizeof(want),
             "UPDATE tether_meta SET value = '%d' WHERE key = 'schema_version' RETURNING 1",
             latest() + 1);
    CHECK_EQ_INT(raw_int(url, want), 1);
    err[0] = '\0';
    r = (struct registry *)&r;
    CHECK_EQ_INT(registry_open(url, &r, err, sizeof(err)), -ENOTSUP);
    CHECK(r == NULL);
    snprintf(want, sizeof(want), "database schema %d is newer than this tether-hub (%d)",
             latest() + 1, latest());
    CHECK_EQ_STR(err, want);

    /* Somebody else's database: refused, nothing of ours added to it. */
    db_at("foreign.db", url, sizeof(url));
    CHECK_EQ_INT(raw_int(url, "CREATE TABLE sites (x int); SELECT 1"), 1);
    err[0] = '\0';
    CHECK(registry_open(url, &r, err, sizeof(err)) < 0);
    CHECK(strstr(err, "not a tether-hub database") != NULL);
    CHECK_EQ_INT(raw_int(url, "SELECT count(*) FROM information_schema.tables "
                              "WHERE table_schema = 'public'"),
                 1);

    /* No server there: a clear error, soon (connect_timeout is 2 s). */
    err[0] = '\0';
    CHECK_EQ_INT(registry_open("postgresql://postgres@127.0.0.1:1/none", &r, err, sizeof(err)),
                 -ENOTCONN);
    CHECK(strstr(err, "cannot connect") != NULL);
    /* A database that does not exist. */
    snprintf(want, sizeof(want), "%s", url);
    snprintf(strrchr(want, '/') + 1, 32, "no_such_db_here");
    err[0] = '\0';
    CHECK(registry_open(want, &r, err, sizeof(err)) < 0);
    CHECK(strstr(err, "no_such_db_here") != NULL);
}

static void rm_tree(const char *dir)
{
    char cmd[600];

    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    (void)!system(cmd);
}

/* Storage errors are told apart from bad input: the API answers them 503. */
static void test_error_map(void)
{
    CHECK_EQ_INT(registry_sqlite_map_rc(SQLITE_FULL, -ENOENT), -ENOSPC);
    CHECK_EQ_INT(registry_sqlite_map_rc(SQLITE_IOERR_WRITE, -ENOENT), -EIO);
    CHECK_EQ_INT(registry_sqlite_map_rc(SQLITE_IOERR_FSYNC, -ENOENT), -EIO);
    CHECK_EQ_INT(registry_sqlite_map_rc(SQLITE_BUSY_SNAPSHOT, -ENOENT), -EBUSY);
    CHECK_EQ_INT(registry_sqlite_map_rc(SQLITE_CONSTRAINT_UNIQUE, -ENOENT), -EEXIST);
    CHECK(registry_storage_error(-ENOSPC) != NULL &&
          strstr(registry_storage_error(-ENOSPC), "disk is full") != NULL);
    CHECK(registry_storage_error(-EIO) != NULL);
    CHECK(registry_storage_error(-EBUSY) != NULL);
    CHECK(registry_storage_error(-EEXIST) == NULL);
    CHECK(registry_storage_error(-EINVAL) == NULL);
    CHECK(registry_storage_error(-ENOMEM) == NULL);
    CHECK(registry_storage_error(-ENOTCONN) != NULL);
#ifdef TETHER_HAVE_PG
    /* PostgreSQL's SQLSTATEs, the same way. */
    CHECK_EQ_INT(registry_pg_map_sqlstate("23505", -ENOENT), -EEXIST);
    CHECK_EQ_INT(registry_pg_map_sqlstate("23503", -ENOENT), -ENOENT);
    CHECK_EQ_INT(registry_pg_map_sqlstate("23514", -ENOENT), -EINVAL);
    CHECK_EQ_INT(registry_pg_map_sqlstate("22P02", -ENOENT), -EINVAL);
    CHECK_EQ_INT(registry_pg_map_sqlstate("55P03", -ENOENT), -EBUSY);
    CHECK_EQ_INT(registry_pg_map_sqlstate("57014", -ENOENT), -EBUSY);
    CHECK_EQ_INT(registry_pg_map_sqlstate("53100", -ENOENT), -ENOSPC);
    CHECK_EQ_INT(registry_pg_map_sqlstate("08006", -ENOENT), -ENOTCONN);
    CHECK_EQ_INT(registry_pg_map_sqlstate("57P01", -ENOENT), -ENOTCONN);
    CHECK_EQ_INT(registry_pg_map_sqlstate("XX000", -ENOENT), -EIO);
    CHECK_EQ_INT(registry_pg_map_sqlstate(NULL, -ENOENT), -EIO);
#endif
}

/* Messages never show a database password. */
static void test_where(void)
{
    char out[256];

    registry_where("/var/lib/tether/hub.db", out, sizeof(out));
    CHECK_EQ_STR(out, "/var/lib/tether/hub.db");
    registry_where("postgresql://tether:s3cret@db.example:5432/tether", out, sizeof(out));
    CHECK_EQ_STR(out, "postgresql://tether:***@db.example:5432/tether");
    registry_where("postgres://db.example/tether?user=t&password=s3cret&sslmode=require", out,
                   sizeof(out));
    CHECK_EQ_STR(out, "postgres://db.example/tether?user=t&password=***&sslmode=require");
    registry_where("postgresql://tether@db.example/x", out, sizeof(out));
    CHECK_EQ_STR(out, "postgresql://tether@db.example/x");
    CHECK(registry_is_url("postgresql://x"));
    CHECK(registry_is_url("postgres://x"));
    CHECK(!registry_is_url("hub.db"));
    CHECK(!registry_is_url("postgresql:/x"));
}

int main(void)
{
    const char *base = getenv("TMPDIR");
    char path[512];
    struct registry *r;

    pg = pgtest_server_or_skip();
    snprintf(tmpdir, sizeof(tmpdir), "%s/tether-registry-XXXXXX", base && *base ? base : "/tmp");
    if (mkdtemp(tmpdir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    CHECK(schema_sqlite_migrations_n >= 1);
    test_error_map();
    test_where();
    if (pg != NULL) {
        test_pg_open();
    } else {
        test_open_fresh();
        test_reopen();
        test_open_errors();
    }

    db_at("main.db", path, sizeof(path));
    r = open_ok(path);
    if (r) {
        test_sites(r);
        test_enroll(r);
        test_apitokens(r);
        test_sessions(r);
        test_cascade(r, path);
        test_audit(r, path);
        test_labels(r);
        test_enroll_reissue(r);
        test_apitoken_list(r);
        test_audit_list(r, path);
        test_session_agent(r);
        test_hubs(r);
        CHECK_EQ_INT(registry_check(r), 0);
        registry_close(r);
    }
    test_two_handles();
    test_fork_race();
    if (!pg)
        test_corrupt();
#ifdef TETHER_HAVE_PG
    for (int i = 0; i < n_made; i++)
        CHECK_EQ_INT(pgtest_drop(pg, made[i]), 0);
#endif
    rm_tree(tmpdir);
    TEST_DONE();
}
