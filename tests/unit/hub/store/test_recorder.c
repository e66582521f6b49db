/* Unit tests of hub/store/recorder.h: write-behind session and site records on a real SQLite file
 * or a real PostgreSQL server (TETHER_TEST_PG_URL, tests/unit/pgtest.h). */
/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "hub/store/recorder.h"
#include "hub/store/registry.h"
#include "pgtest.h"
#include "testutil.h"

static char tmpdir[256];
static const char *pg; /* the PostgreSQL server's base URL, or NULL: SQLite */
static char made[8][PGTEST_URL_CAP];
static int n_made;

static void db_at(const char *name, char *out, size_t cap)
{
    if (!pg) {
        snprintf(out, cap, "%s/%s", tmpdir, name);
        return;
    }
#ifdef TETHER_HAVE_PG
    CHECK_EQ_INT(pgtest_create(pg, name, out, cap), 0);
#endif
    snprintf(made[n_made++], sizeof(made[0]), "%s", out);
}

static int64_t make_site(struct registry *r, const char *name)
{
    struct reg_site s;
    int64_t id;

    CHECK_EQ_INT(registry_site_create(r, name, "{}", 1000), 0);
    CHECK_EQ_INT(registry_site_get(r, name, &s), 0);
    id = s.id;
    registry_site_clear(&s);
    CHECK(id > 0);
    return id;
}

struct sess_list {
    struct reg_session s[600];
    int n;
};

static int collect(const struct reg_session *s, void *arg)
{
    struct sess_list *l = arg;

    if (l->n < (int)(sizeof(l->s) / sizeof(l->s[0])))
        l->s[l->n++] = *s;
    return 0;
}

static void list_of(struct registry *r, int64_t site, struct sess_list *l)
{
    l->n = 0;
    CHECK(registry_session_list(r, site, 600, collect, l) >= 0);
}

/* Records queued on the loop's side are in the database after a flush, in
 * the order queued, and the open sessions' keys map to their rows. */
static void test_records(const char *path, struct registry *r)
{
    struct recorder *rec;
    struct recorder_stats st;
    struct sess_list *l = calloc(1, sizeof(*l));
    uint64_t keys[200];
    int64_t a = make_site(r, "rec-a"), b = make_site(r, "rec-b");
    struct reg_site s;
    char addr[64], err[256];
    int i, open_a = 0;

    CHECK(l != NULL);
    CHECK_EQ_INT(recorder_open(path, &rec, err, sizeof(err)), 0);
    for (i = 0; i < 200; i++) {
        snprintf(addr, sizeof(addr), "127.0.0.1:%d", 10000 + i);
        CHECK_EQ_INT(recorder_session_open(rec, i % 2 ? b : a, addr, "", 2000 + i, &keys[i]), 0);
        CHECK(keys[i] != 0);
        CHECK(i == 0 || keys[i] != keys[i - 1]);
        CHECK_EQ_INT(recorder_site_seen(rec, i % 2 ? b : a, 2000 + i, NULL, NULL, addr), 0);
    }
    /* Every session of b closes; a's first 50 close, some in the batch that
     * opened them. */
    for (i = 0; i < 200; i++)
        if (i % 2 || i < 100)
            CHECK_EQ_INT(recorder_session_close(rec, keys[i], 3000 + i, "site went away", i, 2 * i),
                         0);
    CHECK_EQ_INT(recorder_site_seen(rec, a, 4000, "agent 1.2", "[\"web\"]", NULL), 0);
    CHECK_EQ_INT(recorder_session_close(rec, 0, 1, "key 0: nothing", 0, 0), 0);
    CHECK_EQ_INT(recorder_flush(rec, 10000), 0);

    list_of(r, b, l);
    CHECK_EQ_INT(l->n, 100);
    for (i = 0; i < l->n; i++) {
        /* Newest first: b's sessions were opened at 2199, 2197, ... */
        int k = 199 - 2 * i;
        snprintf(addr, sizeof(addr), "127.0.0.1:%d", 10000 + k);
        CHECK_EQ_STR(l->s[i].remote_addr, addr);
        CHECK_EQ_INT(l->s[i].connected_at, 2000 + k);
        CHECK_EQ_INT(l->s[i].disconnected_at, 3000 + k);
        CHECK_EQ_STR(l->s[i].reason, "site went away");
        CHECK_EQ_INT(l->s[i].bytes_in, k);
        CHECK_EQ_INT(l->s[i].bytes_out, 2 * k);
        CHECK_EQ_INT(recorder_session_id(rec, keys[k]), 0); /* closed */
    }
    list_of(r, a, l);
    CHECK_EQ_INT(l->n, 100);
    for (i = 0; i < l->n; i++) {
        int k = 198 - 2 * i;
        CHECK_EQ_INT(l->s[i].connected_at, 2000 + k);
        if (k < 100) {
            CHECK_EQ_INT(l->s[i].disconnected_at, 3000 + k);
            CHECK_EQ_INT(recorder_session_id(rec, keys[k]), 0);
        } else {
            /* Open: its key names its row, and the hello's agent reached it. */
            CHECK_EQ_INT(l->s[i].disconnected_at, 0);
            CHECK_EQ_INT(recorder_session_id(rec, keys[k]), l->s[i].id);
            CHECK_EQ_STR(l->s[i].agent_version, "agent 1.2");
            open_a++;
        }
    }
    CHECK_EQ_INT(open_a, 50);
    CHECK_EQ_INT(registry_site_get(r, "rec-a", &s), 0);
    CHECK_EQ_INT(s.last_seen, 4000);
    CHECK_EQ_STR(s.agent_version, "agent 1.2");
    CHECK_EQ_STR(s.services_json, "[\"web\"]");
    CHECK_EQ_STR(s.remote_addr, "127.0.0.1:10198");
    registry_site_clear(&s);

    recorder_get_stats(rec, &st);
    CHECK_EQ_INT(st.queued, 200 + 200 + 150 + 1);
    CHECK_EQ_INT(st.written, st.queued);
    CHECK_EQ_INT(st.failed, 0);
    CHECK(st.last_failed_op == NULL);
    CHECK_EQ_INT(st.dropped, 0);
    CHECK(st.batches >= 1 && st.batches <= st.queued);
    CHECK_EQ_INT(st.depth, 0);

    /* A record the database refuses (its site removed meanwhile) costs
     * none of the others queued with it. */
    {
        int64_t gone = make_site(r, "rec-gone");
        uint64_t k1, k2, k3;

        CHECK_EQ_INT(registry_site_remove(r, "rec-gone"), 0);
        CHECK_EQ_INT(recorder_session_open(rec, b, "x:1", "", 5000, &k1), 0);
        CHECK_EQ_INT(recorder_session_open(rec, gone, "x:2", "", 5001, &k2), 0);
        CHECK_EQ_INT(recorder_session_close(rec, k2, 5002, "gone", 0, 0), 0);
        CHECK_EQ_INT(recorder_session_open(rec, b, "x:3", "", 5003, &k3), 0);
        CHECK_EQ_INT(recorder_flush(rec, 10000), 0);
        recorder_get_stats(rec, &st);
        CHECK_EQ_INT(st.failed, 2); /* the open of the removed site, and its close */
        /* What the daemon logs (session_store_failed): the last refusal. */
        CHECK(st.last_failed_op != NULL && strcmp(st.last_failed_op, "close") == 0);
        CHECK_EQ_INT(st.last_error, -ENOENT);
        CHECK(recorder_session_id(rec, k1) > 0);
        CHECK_EQ_INT(recorder_session_id(rec, k2), 0);
        CHECK(recorder_session_id(rec, k3) > recorder_session_id(rec, k1));
        list_of(r, b, l);
        CHECK_EQ_INT(l->n, 102);
        CHECK_EQ_STR(l->s[0].remote_addr, "x:3");
        CHECK_EQ_STR(l->s[1].remote_addr, "x:1");
    }
    recorder_close(rec);
    free(l);
}

/* A clean stop writes everything queued: no session history is lost. */
static void test_close_drains(const char *path, struct registry *r)
{
    struct recorder *rec;
    struct sess_list *l = calloc(1, sizeof(*l));
    int64_t c = make_site(r, "rec-c");
    char err[256];
    uint64_t key;
    int i;

    CHECK(l != NULL);
    CHECK_EQ_INT(recorder_open(path, &rec, err, sizeof(err)), 0);
    for (i = 0; i < 500; i++) {
        CHECK_EQ_INT(recorder_session_open(rec, c, "127.0.0.1:1", "", 100 + i, &key), 0);
        CHECK_EQ_INT(recorder_session_close(rec, key, 200 + i, "hub shutting down", 0, 0), 0);
    }
    recorder_close(rec); /* no flush first */
    list_of(r, c, l);
    CHECK_EQ_INT(l->n, 500);
    for (i = 0; i < l->n; i++) {
        CHECK_EQ_INT(l->s[i].disconnected_at, 200 + 499 - i);
        CHECK_EQ_STR(l->s[i].reason, "hub shutting down");
    }
    free(l);
}

/* A stalled database: the queue takes at most RECORDER_QUEUE_MAX jobs, the
 * rest are refused at once and counted; a flush gives up after its
 * timeout; once the database moves again everything queued is written. */
static void test_queue_full(const char *path, struct registry *r)
{
    struct recorder *rec;
    struct recorder_stats st;
    sqlite3 *db = NULL;
    int64_t d = make_site(r, "rec-d");
    char err[256];
    uint64_t key;
    int i, refused = 0;

    CHECK_EQ_INT(recorder_open(path, &rec, err, sizeof(err)), 0);
    CHECK_EQ_INT(sqlite3_open(path, &db), SQLITE_OK);
    CHECK_EQ_INT(sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
    for (i = 0; i < RECORDER_QUEUE_MAX + 1000; i++) {
        int rc = recorder_site_seen(rec, d, 10 + i, NULL, NULL, NULL);
        CHECK(rc == 0 || rc == -ENOBUFS);
        refused += rc != 0;
    }
    CHECK_EQ_INT(recorder_session_open(rec, d, "a:1", "", 1, &key), -ENOBUFS);
    CHECK_EQ_INT(key, 0);
    refused++;
    CHECK_EQ_INT(recorder_flush(rec, 50), -ETIMEDOUT);
    recorder_get_stats(rec, &st);
    /* The writer took at most one batch before it waited for the lock. */
    CHECK(refused >= 1001 - RECORDER_BATCH && refused <= 1001);
    CHECK_EQ_INT(st.dropped, refused);
    CHECK_EQ_INT(sqlite3_exec(db, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    CHECK_EQ_INT(recorder_flush(rec, 60000), 0);
    recorder_get_stats(rec, &st);
    CHECK_EQ_INT(st.depth, 0);
    CHECK_EQ_INT(st.written + st.failed, st.queued);
    recorder_close(rec);
}

#ifdef TETHER_HAVE_PG
struct remover {
    struct registry *r;
    int rc;
    struct timespec t0, t1;
};

static void *remove_main(void *arg)
{
    struct remover *m = arg;

    m->rc = registry_site_remove(m->r, "rec-d");
    clock_gettime(CLOCK_MONOTONIC, &m->t1);
    return NULL;
}

static int lock_waiters(PGconn *c)
{
    PGresult *res = PQexec(c, "SELECT count(*) FROM pg_stat_activity WHERE datname = "
                              "current_database() AND wait_event_type = 'Lock'");
    int n = PQresultStatus(res) == PGRES_TUPLES_OK ? atoi(PQgetvalue(res, 0, 0)) : -1;

    PQclear(res);
    return n;
}

static void wait_waiters(PGconn *c, int want)
{
    for (int i = 0; i < 10000 && lock_waiters(c) != want; i++)
        usleep(1000);
    CHECK_EQ_INT(lock_waiters(c), want);
}

static void pg_ok(PGconn *c, const char *sql)
{
    PGresult *res = PQexec(c, sql);

    CHECK(PQresultStatus(res) == PGRES_COMMAND_OK || PQresultStatus(res) == PGRES_TUPLES_OK);
    PQclear(res);
}

/* PostgreSQL: a site removed while the writer's batch closes one of its
 * sessions and marks it seen. The removal locks the site and then deletes
 * its sessions; a batch that took the session first and the site second
 * deadlocked with it, and PostgreSQL broke that after deadlock_timeout by
 * failing one side (the operator's removal got 503). A third connection
 * holds the site so that the removal waits first and the batch second;
 * deadlock_timeout is raised to 3 s for this database, so a removal done in
 * less was never in a deadlock. */
static void test_remove_during_batch(const char *path, struct registry *r)
{
    struct remover m = {.rc = 1};
    struct recorder *rec;
    char err[256], sql[160];
    int64_t d = make_site(r, "rec-d");
    uint64_t key;
    pthread_t th;
    PGconn *c = PQconnectdb(path);
    double ms;

    CHECK(PQstatus(c) == CONNECTION_OK);
    snprintf(sql, sizeof(sql), "ALTER DATABASE \"%s\" SET deadlock_timeout = '3s'", PQdb(c));
    pg_ok(c, sql);
    CHECK_EQ_INT(recorder_open(path, &rec, err, sizeof(err)), 0);
    CHECK_EQ_INT(registry_open(path, &m.r, NULL, 0), 0);
    CHECK_EQ_INT(recorder_session_open(rec, d, "127.0.0.1:4", "", 100, &key), 0);
    CHECK_EQ_INT(recorder_flush(rec, 10000), 0);
    pg_ok(c, "BEGIN");
    snprintf(sql, sizeof(sql), "SELECT 1 FROM sites WHERE id = %" PRId64 " FOR UPDATE", d);
    pg_ok(c, sql);
    CHECK_EQ_INT(pthread_create(&th, NULL, remove_main, &m), 0);
    wait_waiters(c, 1);
    CHECK_EQ_INT(recorder_session_close(rec, key, 200, "site removed", 0, 0), 0);
    CHECK_EQ_INT(recorder_site_seen(rec, d, 200, "0.1.0", NULL, NULL), 0);
    wait_waiters(c, 2);
    clock_gettime(CLOCK_MONOTONIC, &m.t0);
    pg_ok(c, "COMMIT");
    CHECK_EQ_INT(pthread_join(th, NULL), 0);
    ms = (double)(m.t1.tv_sec - m.t0.tv_sec) * 1e3 + (double)(m.t1.tv_nsec - m.t0.tv_nsec) / 1e6;
    CHECK_EQ_INT(m.rc, 0);
    if (ms >= 3000)
        fprintf(stderr, "the removal took %.0f ms: a deadlock, broken by PostgreSQL\n", ms);
    CHECK(ms < 3000);
    CHECK_EQ_INT(recorder_flush(rec, 10000), 0);
    registry_close(m.r);
    recorder_close(rec);
    PQfinish(c);
}
#endif

static void test_open_error(void)
{
    struct recorder *rec = (struct recorder *)1;
    char err[256];

    CHECK(recorder_open("/nonexistent-dir/x/hub.db", &rec, err, sizeof(err)) < 0);
    CHECK(rec == NULL);
    CHECK(err[0] != '\0');
}

int main(void)
{
    const char *base = getenv("TMPDIR");
    char path[512], cmd[600];
    struct registry *r;

    pg = pgtest_server_or_skip();
    snprintf(tmpdir, sizeof(tmpdir), "%s/tether-recorder-XXXXXX", base && *base ? base : "/tmp");
    CHECK(mkdtemp(tmpdir) != NULL);
    test_open_error();
    db_at("recorder.db", path, sizeof(path));
    CHECK_EQ_INT(registry_open(path, &r, NULL, 0), 0);
    test_records(path, r);
    test_close_drains(path, r);
#ifdef TETHER_HAVE_PG
    if (pg)
        test_remove_during_batch(path, r);
#endif
#ifndef TETHER_TORTURE_TEST
    if (!pg)
        test_queue_full(path, r);
#else
    (void)test_queue_full;
#endif
    registry_close(r);
#ifdef TETHER_HAVE_PG
    for (int i = 0; i < n_made; i++)
        CHECK_EQ_INT(pgtest_drop(pg, made[i]), 0);
#endif
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    CHECK_EQ_INT(system(cmd), 0);
    TEST_DONE();
}
