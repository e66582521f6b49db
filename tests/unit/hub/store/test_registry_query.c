/* Unit tests of hub/store/queries.c (query persistence) against a real SQLite file. */
/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "hub/store/registry.h"
#include "hub/store/registry_query.h"
#include "hub/store/schema_sql.h"
#include "pgtest.h"
#include "testutil.h"

static char tmpdir[256];
/* The PostgreSQL server's base URL when the tests run there, else NULL. */
static const char *pg;

static struct reg_query make_query(const char *qid, int64_t token_id, int64_t now, int64_t ttl)
{
    struct reg_query q;

    memset(&q, 0, sizeof(q));
    snprintf(q.qid, sizeof(q.qid), "%s", qid);
    q.created_at = now;
    q.token_id = token_id;
    snprintf(q.actor, sizeof(q.actor), "admin");
    snprintf(q.remote, sizeof(q.remote), "127.0.0.1:5000");
    q.target_json = "\"*\"";
    snprintf(q.service, sizeof(q.service), "counts");
    snprintf(q.method, sizeof(q.method), "POST");
    q.path = "/count";
    q.headers_json = "{\"x-a\":\"1\"}";
    q.body = (uint8_t *)"hello";
    q.body_len = 5;
    q.timeout_s = 30;
    q.ttl_s = ttl;
    q.expires_at = now + ttl;
    return q;
}

struct seen {
    char sites[8][64];
    int status[8];
    int64_t seq[8];
    int n;
};

static int seen_cb(const struct reg_qresult *r, void *arg)
{
    struct seen *s = arg;

    if (s->n < 8) {
        snprintf(s->sites[s->n], sizeof(s->sites[0]), "%s", r->site);
        s->status[s->n] = r->status;
        s->seq[s->n] = r->seq;
        s->n++;
    }
    return 0;
}

static int body_cb(const struct reg_qresult *r, void *arg)
{
    /* An empty body must come back as "", not as no body. */
    *(int *)arg = r->body != NULL ? (int)r->body_len : -1;
    return 0;
}

struct expired {
    int n, complete;
    char qid[REG_QID_LEN + 1];
};

static void expired_cb(const struct reg_qresult *r, const char *qid, int complete, void *arg)
{
    struct expired *e = arg;

    e->n++;
    e->complete += complete;
    snprintf(e->qid, sizeof(e->qid), "%s", qid);
}

static int list_cb(const struct reg_query *q, void *arg)
{
    struct seen *s = arg;

    if (s->n < 8)
        snprintf(s->sites[s->n++], sizeof(s->sites[0]), "%s", q->qid);
    return 0;
}

/* Every stored field of one result, for many_targets. */
struct row {
    char site[64], detail[64];
    int status;
    int64_t site_id, seq, sent_at, finished_at, expires_at;
};

struct rows {
    struct row v[32];
    int n;
};

static int rows_cb(const struct reg_qresult *r, void *arg)
{
    struct rows *s = arg;

    if (s->n < 32) {
        struct row *w = &s->v[s->n++];

        snprintf(w->site, sizeof(w->site), "%s", r->site);
        snprintf(w->detail, sizeof(w->detail), "%s", r->detail ? r->detail : "");
        w->status = r->status;
        w->site_id = r->site_id;
        w->seq = r->seq;
        w->sent_at = r->sent_at;
        w->finished_at = r->finished_at;
    }
    return 0;
}

/* 19 targets: two statements of REG_RINSERT_ROWS rows and three alone.
 * Every row keeps its own site, state, detail and times, and the final
 * ones are numbered 1.. in the targets' order across the statements. */
static void many_targets(struct reg_qstore *st, int64_t now)
{
    static const int cycle[4] = {REG_Q_SENT, REG_Q_QUEUED, REG_Q_SKIPPED, REG_Q_ERROR};
    struct reg_qresult t[19];
    char names[19][16], details[19][16];
    struct reg_query q = make_query("q_MANYMANYMANYMANYMANYMA", 5, now, 60);
    struct rows rows = {.n = 0};
    int64_t counts[REG_Q_NSTATUS], seq = 0;

    memset(t, 0, sizeof(t));
    for (int i = 0; i < 19; i++) {
        snprintf(names[i], sizeof(names[i]), "many-%02d", i);
        snprintf(details[i], sizeof(details[i]), "why %d", i);
        t[i].site_id = 100 + i;
        t[i].site = names[i];
        t[i].status = cycle[i % 4];
        t[i].detail = registry_query_status_final(t[i].status) ? details[i] : NULL;
    }
    CHECK_EQ_INT(registry_query_create(st, &q, t, 19, now), 0);
    CHECK_EQ_INT(q.n_final, 9);
    CHECK_EQ_INT(registry_query_counts(st, q.id, counts), 0);
    CHECK_EQ_INT(counts[REG_Q_SENT], 5);
    CHECK_EQ_INT(counts[REG_Q_QUEUED], 5);
    CHECK_EQ_INT(counts[REG_Q_SKIPPED], 5);
    CHECK_EQ_INT(counts[REG_Q_ERROR], 4);
    CHECK_EQ_INT(registry_query_results(st, q.id, 0, 0, rows_cb, &rows), 0);
    CHECK_EQ_INT(rows.n, 19);
    for (int i = 0; i < 19 && i < rows.n; i++) {
        const struct row *w = &rows.v[i]; /* by site name: the targets' order */
        int final = registry_query_status_final(t[i].status);

        CHECK_EQ_STR(w->site, names[i]);
        CHECK_EQ_INT(w->site_id, 100 + i);
        CHECK_EQ_INT(w->status, t[i].status);
        CHECK_EQ_STR(w->detail, final ? details[i] : "");
        CHECK_EQ_INT(w->sent_at, t[i].status == REG_Q_SENT ? now : 0);
        CHECK_EQ_INT(w->finished_at, final ? now : 0);
        CHECK_EQ_INT(w->seq, final ? ++seq : 0);
    }
}

/* A database made by schema 003 (before skipped and cancelled) with a
 * query on it: 004 keeps every row, and the new states then work on it. */
static void upgrade_keeps_queries(void)
{
    char path[300], err[256] = "";
    struct registry *reg = NULL;
    struct reg_qstore *st = NULL;
    struct reg_query q;
    struct seen seen;
    struct expired ex;
    sqlite3 *db = NULL;
    size_t n = 0;

    if (pg) {
#ifdef TETHER_HAVE_PG
        CHECK_EQ_INT(pgtest_create(pg, "rq_old", path, sizeof(path)), 0);
        CHECK_EQ_INT(pgtest_exec(path, "CREATE TABLE tether_meta (key text PRIMARY KEY, "
                                       "value text NOT NULL); INSERT INTO tether_meta VALUES "
                                       "('application', 'tether-hub'), ('schema_version', '3')"),
                     0);
        for (size_t i = 0; i < schema_pg_migrations_n && schema_pg_migrations[i].version <= 3; i++)
            CHECK_EQ_INT(pgtest_exec(path, schema_pg_migrations[i].sql), 0);
        CHECK_EQ_INT(
            pgtest_exec(path,
                        "INSERT INTO queries (id, qid, created_at, token_id, actor, target, "
                        "service, method, path, timeout_s, ttl_s, expires_at, n_sites, n_final) "
                        "VALUES (7, 'q_OLDOLDOLDOLDOLDOLDOLDO', 100, 1, 'admin', '\"*\"', "
                        "'counts', 'GET', '/', 30, 60, 9000000000, 2, 1);"
                        "INSERT INTO query_results (query_id, site_id, site, status, expires_at, "
                        "http_status, body, finished_at, seq) VALUES (7, 1, 'clinic-a', 'done', "
                        "9000000000, 200, '\\x6869', 101, 1);"
                        "INSERT INTO query_results (query_id, site_id, site, status, expires_at) "
                        "VALUES (7, 2, 'clinic-b', 'queued', 9000000000);"),
            0);
#endif
        goto opened;
    }
    snprintf(path, sizeof(path), "%s/old.db", tmpdir);
    CHECK_EQ_INT(sqlite3_open(path, &db), SQLITE_OK);
    for (size_t i = 0; i < schema_sqlite_migrations_n && schema_sqlite_migrations[i].version <= 3;
         i++)
        CHECK_EQ_INT(sqlite3_exec(db, schema_sqlite_migrations[i].sql, NULL, NULL, NULL),
                     SQLITE_OK);
    CHECK_EQ_INT(
        sqlite3_exec(db,
                     "PRAGMA application_id = 1414809682; PRAGMA user_version = 3;"
                     "INSERT INTO queries (id, qid, created_at, token_id, actor, target, service, "
                     "method, path, timeout_s, ttl_s, expires_at, n_sites, n_final) VALUES (7, "
                     "'q_OLDOLDOLDOLDOLDOLDOLDO', 100, 1, 'admin', '\"*\"', 'counts', 'GET', '/', "
                     "30, 60, 9000000000, 2, 1);"
                     "INSERT INTO query_results (query_id, site_id, site, status, expires_at, "
                     "http_status, body, finished_at, seq) VALUES (7, 1, 'clinic-a', 'done', "
                     "9000000000, 200, x'6869', 101, 1);"
                     "INSERT INTO query_results (query_id, site_id, site, status, expires_at) "
                     "VALUES (7, 2, 'clinic-b', 'queued', 9000000000);",
                     NULL, NULL, NULL),
        SQLITE_OK);
    sqlite3_close(db);

opened:
    CHECK_EQ_INT(registry_open(path, &reg, err, sizeof(err)), 0);
    CHECK_EQ_INT(registry_query_open(reg, &st), 0);
    memset(&q, 0, sizeof(q));
    CHECK_EQ_INT(registry_query_get(st, "q_OLDOLDOLDOLDOLDOLDOLDO", &q), 0);
    CHECK_EQ_INT(q.n_final, 1);
    CHECK_EQ_INT(q.cancelled_at, 0);
    memset(&seen, 0, sizeof(seen));
    CHECK_EQ_INT(registry_query_results(st, 7, 0, 0, seen_cb, &seen), 0);
    CHECK_EQ_INT(seen.n, 2);
    CHECK_EQ_INT(seen.status[0], REG_Q_DONE);
    CHECK_EQ_INT(seen.seq[0], 1);
    CHECK_EQ_INT(seen.status[1], REG_Q_QUEUED);
    memset(&ex, 0, sizeof(ex));
    CHECK_EQ_INT(registry_query_cancel(st, 7, "cancelled", 200, expired_cb, &ex, &n), 0);
    CHECK_EQ_INT(n, 1);
    CHECK_EQ_INT(ex.complete, 1);
    CHECK_EQ_INT(registry_check(reg), 0);
    registry_query_clear(&q);
    registry_query_close(st);
    registry_close(reg);
#ifdef TETHER_HAVE_PG
    if (pg)
        CHECK_EQ_INT(pgtest_drop(pg, path), 0);
#endif
}

/* Two hubs claim the same results at once, each through its own connection
 * (queued -> sent is the claim: the UPDATE's row lock makes the second wait
 * for the first and then find the row no longer queued). Each result is
 * claimed exactly once, and on PostgreSQL both hubs win some. */
#define RACE_N 400
struct claimer {
    const char *db;
    int64_t hub_id, query_id, now;
    int reverse;
    int won[RACE_N];
    int errors;
    pthread_barrier_t *go;
};

static void *claim_main(void *arg)
{
    struct claimer *c = arg;
    struct registry *r = NULL;
    struct reg_qstore *st = NULL;
    char err[256];

    if (registry_open(c->db, &r, err, sizeof(err)) != 0 || registry_query_open(r, &st) != 0) {
        c->errors = RACE_N;
        pthread_barrier_wait(c->go);
        goto out;
    }
    registry_use_hub(r, c->hub_id);
    pthread_barrier_wait(c->go);
    for (int k = 0; k < RACE_N; k++) {
        int i = c->reverse ? RACE_N - 1 - k : k;
        int rc = registry_query_mark_sent(st, c->query_id, 1000 + i, c->now);

        if (rc == 0)
            c->won[i] = 1;
        else if (rc != -ENOENT)
            c->errors++;
    }
out:
    if (st != NULL)
        registry_query_close(st);
    if (r != NULL)
        registry_close(r);
    return NULL;
}

static void claim_race(struct reg_qstore *st, const char *db, int64_t now)
{
    static struct reg_qresult t[RACE_N];
    static char names[RACE_N][16];
    static struct claimer c[2];
    struct reg_query q = make_query("q_RACERACERACERACERACERA", 5, now, 600);
    pthread_barrier_t go;
    pthread_t th[2];
    int64_t counts[REG_Q_NSTATUS];
    int once = 0, wins[2] = {0, 0};

    for (int i = 0; i < RACE_N; i++) {
        snprintf(names[i], sizeof(names[i]), "race-%d", i);
        t[i] = (struct reg_qresult){.site_id = 1000 + i, .site = names[i], .status = REG_Q_QUEUED};
    }
    CHECK_EQ_INT(registry_query_create(st, &q, t, RACE_N, now), 0);
    CHECK_EQ_INT(pthread_barrier_init(&go, NULL, 2), 0);
    for (int k = 0; k < 2; k++) {
        memset(&c[k], 0, sizeof(c[k]));
        c[k] = (struct claimer){
            .db = db, .hub_id = 101 + k, .query_id = q.id, .now = now, .reverse = k, .go = &go};
        CHECK_EQ_INT(pthread_create(&th[k], NULL, claim_main, &c[k]), 0);
    }
    for (int k = 0; k < 2; k++)
        CHECK_EQ_INT(pthread_join(th[k], NULL), 0);
    pthread_barrier_destroy(&go);
    for (int i = 0; i < RACE_N; i++) {
        once += c[0].won[i] + c[1].won[i] == 1;
        wins[0] += c[0].won[i];
        wins[1] += c[1].won[i];
    }
    CHECK_EQ_INT(c[0].errors + c[1].errors, 0);
    CHECK_EQ_INT(once, RACE_N); /* every result claimed, none twice */
    /* SQLite lets one writer in at a time (and serves one hub): there the
     * first may well take them all. */
    if (pg != NULL)
        CHECK(wins[0] > 0 && wins[1] > 0);
    printf("claim race: %d results, hub 1 won %d, hub 2 won %d\n", RACE_N, wins[0], wins[1]);
    CHECK_EQ_INT(registry_query_counts(st, q.id, counts), 0);
    CHECK_EQ_INT(counts[REG_Q_SENT], RACE_N);
    CHECK_EQ_INT(counts[REG_Q_QUEUED], 0);
}

int main(void)
{
    char db[300], err[256] = "";
    struct registry *reg = NULL;
    struct reg_qstore *st = NULL;
    const int64_t now = 1800000000;
    struct reg_query q1, q2, got;
    struct reg_qresult t[3] = {
        {.site_id = 1, .site = "clinic-a", .status = REG_Q_SENT},
        {.site_id = 2, .site = "clinic-b", .status = REG_Q_QUEUED},
        {.site_id = 3, .site = "clinic-c", .status = REG_Q_ERROR, .detail = "not offered"},
    };
    struct reg_qresult done = {.query_id = 0,
                               .site_id = 1,
                               .status = REG_Q_DONE,
                               .http_status = 200,
                               .headers_json = "{\"content-type\":\"text/plain\"}",
                               .body = (const uint8_t *)"",
                               .body_len = 0,
                               .latency_ms = 7,
                               .finished_at = now + 1};
    struct reg_query *queued = NULL;
    struct seen seen;
    struct expired ex;
    int64_t counts[REG_Q_NSTATUS], seq = 0, next = 0, n = 0;
    size_t nq = 0, nexp = 0;
    int complete = -1, blen = -2;

    pg = pgtest_server_or_skip();
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/tether-rq-XXXXXX");
    CHECK(mkdtemp(tmpdir) != NULL);
    snprintf(db, sizeof(db), "%s/hub.db", tmpdir);
#ifdef TETHER_HAVE_PG
    if (pg != NULL)
        CHECK_EQ_INT(pgtest_create(pg, "rq", db, sizeof(db)), 0);
#endif
    CHECK_EQ_INT(registry_open(db, &reg, err, sizeof(err)), 0);
    CHECK_EQ_INT(registry_query_open(reg, &st), 0);

    /* create: final targets get seq 1.. in order; counts per status. */
    q1 = make_query("q_AAAAAAAAAAAAAAAAAAAAAA", 5, now, 60);
    CHECK_EQ_INT(registry_query_create(st, &q1, t, 3, now), 0);
    CHECK(q1.id > 0);
    CHECK_EQ_INT(q1.n_final, 1);
    CHECK_EQ_INT(registry_query_counts(st, q1.id, counts), 0);
    CHECK_EQ_INT(counts[REG_Q_SENT], 1);
    CHECK_EQ_INT(counts[REG_Q_QUEUED], 1);
    CHECK_EQ_INT(counts[REG_Q_ERROR], 1);
    /* The same public id twice is refused, and nothing of it is stored. */
    q2 = make_query("q_AAAAAAAAAAAAAAAAAAAAAA", 5, now, 60);
    CHECK_EQ_INT(registry_query_create(st, &q2, t, 3, now), -EEXIST);
    /* A malformed id breaks the CHECK. */
    q2 = make_query("q_bad id", 5, now, 60);
    CHECK_EQ_INT(registry_query_create(st, &q2, t, 1, now), -EINVAL);

    /* get by public id */
    memset(&got, 0, sizeof(got));
    CHECK_EQ_INT(registry_query_get(st, "q_AAAAAAAAAAAAAAAAAAAAAA", &got), 0);
    CHECK_EQ_STR(got.path, "/count");
    CHECK_EQ_STR(got.headers_json, "{\"x-a\":\"1\"}");
    CHECK_EQ_INT(got.n_sites, 3);
    CHECK_EQ_INT(got.completed_at, 0);
    registry_query_clear(&got);
    CHECK_EQ_INT(registry_query_get(st, "q_BBBBBBBBBBBBBBBBBBBBBB", &got), -ENOENT);

    /* sent -> done exactly once; an empty body stays an empty body. */
    done.query_id = q1.id;
    CHECK_EQ_INT(registry_query_finish(st, &done, REG_Q_SENT, &seq, &complete), 0);
    CHECK_EQ_INT(seq, 2);
    CHECK_EQ_INT(complete, 0);
    CHECK_EQ_INT(registry_query_finish(st, &done, REG_Q_SENT, &seq, &complete), -ENOENT);
    CHECK_EQ_INT(registry_query_result(st, q1.id, 1, body_cb, &blen), 0);
    CHECK_EQ_INT(blen, 0);
    /* queued is not sent: finishing it "from sent" does nothing. */
    done.site_id = 2;
    CHECK_EQ_INT(registry_query_finish(st, &done, REG_Q_SENT, &seq, &complete), -ENOENT);

    /* delivery: the queued result of site 2, with the full query and body. */
    CHECK_EQ_INT(registry_query_queued_for_site(st, 2, now, 100, &queued, &nq), 0);
    CHECK_EQ_INT(nq, 1);
    if (nq == 1) {
        CHECK_EQ_INT(queued[0].body_len, 5);
        CHECK(queued[0].body != NULL && memcmp(queued[0].body, "hello", 5) == 0);
        registry_query_clear(&queued[0]);
    }
    free(queued);
    queued = NULL;
    /* past expires_at it is no longer deliverable */
    CHECK_EQ_INT(registry_query_queued_for_site(st, 2, now + 61, 100, &queued, &nq), 0);
    CHECK_EQ_INT(nq, 0);
    free(queued);
    queued = NULL;

    /* queued -> sent once; requeue only from sent. */
    {
        int64_t ids[2] = {q1.id, q1.id};
        int ok[2] = {-1, -1};

        CHECK_EQ_INT(registry_query_mark_sent_many(st, 2, ids, 2, now, ok), 0);
        CHECK_EQ_INT(ok[0], 1);
        CHECK_EQ_INT(ok[1], 0);
    }
    CHECK_EQ_INT(registry_query_mark_sent(st, q1.id, 2, now), -ENOENT);
    CHECK_EQ_INT(registry_query_requeue(st, q1.id, 2), 0);
    CHECK_EQ_INT(registry_query_requeue(st, q1.id, 2), -ENOENT);
    registry_use_hub(reg, 2); /* sent by hub 2 of a cluster */
    CHECK_EQ_INT(registry_query_mark_sent(st, q1.id, 2, now), 0);

    /* start-up: what this hub sent becomes error, not another hub's; the
     * query completes. */
    registry_use_hub(reg, 1);
    CHECK_EQ_INT(registry_query_fail_sent(st, "the hub restarted", now + 2, &n), 0);
    CHECK_EQ_INT(n, 0);
    registry_use_hub(reg, 2);
    CHECK_EQ_INT(registry_query_fail_sent(st, "the hub restarted", now + 2, &n), 0);
    CHECK_EQ_INT(n, 1);
    registry_use_hub(reg, 0);
    memset(&got, 0, sizeof(got));
    CHECK_EQ_INT(registry_query_get(st, "q_AAAAAAAAAAAAAAAAAAAAAA", &got), 0);
    CHECK_EQ_INT(got.n_final, 3);
    CHECK_EQ_INT(got.completed_at, now + 2);
    registry_query_clear(&got);

    /* results in arrival order (seq) and by site name */
    memset(&seen, 0, sizeof(seen));
    CHECK_EQ_INT(registry_query_results(st, q1.id, 1, 0, seen_cb, &seen), 0);
    CHECK_EQ_INT(seen.n, 3);
    CHECK_EQ_STR(seen.sites[0], "clinic-c");
    CHECK_EQ_STR(seen.sites[1], "clinic-a");
    CHECK_EQ_STR(seen.sites[2], "clinic-b");
    CHECK_EQ_INT(seen.seq[2], 3);
    CHECK_EQ_INT(seen.status[2], REG_Q_ERROR);
    memset(&seen, 0, sizeof(seen));
    CHECK_EQ_INT(registry_query_results(st, q1.id, 1, 1, seen_cb, &seen), 0);
    CHECK_EQ_INT(seen.n, 2);
    memset(&seen, 0, sizeof(seen));
    CHECK_EQ_INT(registry_query_results(st, q1.id, 0, 0, seen_cb, &seen), 0);
    CHECK_EQ_STR(seen.sites[0], "clinic-a");
    CHECK_EQ_STR(seen.sites[2], "clinic-c");

    /* expiry: only queued results past expires_at (strictly), in batches. */
    q2 = make_query("q_CCCCCCCCCCCCCCCCCCCCCC", 6, now, 10);
    t[0].status = REG_Q_QUEUED;
    t[1].status = REG_Q_QUEUED;
    CHECK_EQ_INT(registry_query_create(st, &q2, t, 2, now), 0);
    CHECK_EQ_INT(registry_query_next_expiry(st, &next), 0);
    CHECK_EQ_INT(next, now + 10);
    memset(&ex, 0, sizeof(ex));
    CHECK_EQ_INT(registry_query_expire(st, now + 10, 100, expired_cb, &ex, &nexp), 0);
    CHECK_EQ_INT(nexp, 0);
    CHECK_EQ_INT(registry_query_expire(st, now + 11, 1, expired_cb, &ex, &nexp), 0);
    CHECK_EQ_INT(nexp, 1);
    CHECK_EQ_INT(ex.complete, 0);
    CHECK_EQ_STR(ex.qid, "q_CCCCCCCCCCCCCCCCCCCCCC");
    CHECK_EQ_INT(registry_query_expire(st, now + 11, 100, expired_cb, &ex, &nexp), 0);
    CHECK_EQ_INT(nexp, 1);
    CHECK_EQ_INT(ex.n, 2);
    CHECK_EQ_INT(ex.complete, 1);
    CHECK_EQ_INT(registry_query_next_expiry(st, &next), 0);
    CHECK_EQ_INT(next, 0);

    /* cancel: the queued results (not the sent one) become cancelled with
     * cancelled_at, in one go; a second cancel finds nothing; a sent result
     * cannot go back to queued once its query is cancelled. A skipped
     * result is final from the start. */
    {
        struct reg_query q3 = make_query("q_DDDDDDDDDDDDDDDDDDDDDD", 7, now, 100);
        struct reg_qresult t3[4] = {
            {.site_id = 1, .site = "clinic-a", .status = REG_Q_SENT},
            {.site_id = 2, .site = "clinic-b", .status = REG_Q_QUEUED},
            {.site_id = 3, .site = "clinic-c", .status = REG_Q_SKIPPED, .detail = "no service"},
            {.site_id = 4, .site = "clinic-d", .status = REG_Q_QUEUED},
        };
        size_t nc = 0;

        CHECK_EQ_INT(registry_query_create(st, &q3, t3, 4, now), 0);
        CHECK_EQ_INT(q3.n_final, 1);
        CHECK_EQ_INT(registry_query_requeue(st, q3.id, 1), 0); /* before: allowed */
        CHECK_EQ_INT(registry_query_mark_sent(st, q3.id, 1, now), 0);
        memset(&ex, 0, sizeof(ex));
        CHECK_EQ_INT(
            registry_query_cancel(st, q3.id, "cancelled by admin", now + 5, expired_cb, &ex, &nc),
            0);
        CHECK_EQ_INT(nc, 2);
        CHECK_EQ_INT(ex.n, 2);
        CHECK_EQ_INT(ex.complete, 0); /* clinic-a is still out */
        CHECK_EQ_STR(ex.qid, "q_DDDDDDDDDDDDDDDDDDDDDD");
        CHECK_EQ_INT(registry_query_counts(st, q3.id, counts), 0);
        CHECK_EQ_INT(counts[REG_Q_CANCELLED], 2);
        CHECK_EQ_INT(counts[REG_Q_SKIPPED], 1);
        CHECK_EQ_INT(counts[REG_Q_SENT], 1);
        CHECK_EQ_INT(counts[REG_Q_QUEUED], 0);
        memset(&got, 0, sizeof(got));
        CHECK_EQ_INT(registry_query_get(st, "q_DDDDDDDDDDDDDDDDDDDDDD", &got), 0);
        CHECK_EQ_INT(got.cancelled_at, now + 5);
        CHECK_EQ_INT(got.n_final, 3);
        CHECK_EQ_INT(got.completed_at, 0);
        registry_query_clear(&got);
        CHECK_EQ_INT(registry_query_requeue(st, q3.id, 1), -ECANCELED);
        CHECK_EQ_INT(registry_query_cancel(st, q3.id, "again", now + 6, expired_cb, &ex, &nc), 0);
        CHECK_EQ_INT(nc, 0);
        CHECK_EQ_INT(ex.n, 2);
        {
            struct reg_qresult fin = {.query_id = q3.id,
                                      .site_id = 1,
                                      .status = REG_Q_CANCELLED,
                                      .detail = "refused",
                                      .latency_ms = -1,
                                      .finished_at = now + 7};
            int64_t fseq = 0;
            int fdone = 0;

            CHECK_EQ_INT(registry_query_finish(st, &fin, REG_Q_SENT, &fseq, &fdone), 0);
            CHECK_EQ_INT(fdone, 1);
            CHECK_EQ_INT(fseq, 4);
        }
        /* The queued results left are expired by nobody: none is queued. */
        CHECK_EQ_INT(registry_query_next_expiry(st, &next), 0);
        CHECK_EQ_INT(next, 0);
    }

    /* history: newest first, per token, paging by row id */
    memset(&seen, 0, sizeof(seen));
    CHECK_EQ_INT(registry_query_list(st, 0, 0, 10, list_cb, &seen), 0);
    CHECK_EQ_INT(seen.n, 3);
    CHECK_EQ_STR(seen.sites[0], "q_DDDDDDDDDDDDDDDDDDDDDD");
    CHECK_EQ_STR(seen.sites[1], "q_CCCCCCCCCCCCCCCCCCCCCC");
    memset(&seen, 0, sizeof(seen));
    CHECK_EQ_INT(registry_query_list(st, 5, 0, 10, list_cb, &seen), 0);
    CHECK_EQ_INT(seen.n, 1);
    CHECK_EQ_STR(seen.sites[0], "q_AAAAAAAAAAAAAAAAAAAAAA");
    memset(&seen, 0, sizeof(seen));
    CHECK_EQ_INT(registry_query_list(st, 0, q2.id, 10, list_cb, &seen), 0);
    CHECK_EQ_INT(seen.n, 1);
    CHECK_EQ_STR(seen.sites[0], "q_AAAAAAAAAAAAAAAAAAAAAA");

    /* A result that refuses its final state (headers not a JSON object)
     * fails alone in a batch: the other commits with seq 1, the query
     * counts one result, and the refused one later takes seq 2. */
    {
        struct reg_qresult tt[2] = {
            {.site_id = 1, .site = "clinic-a", .status = REG_Q_SENT},
            {.site_id = 2, .site = "clinic-b", .status = REG_Q_SENT},
        };
        struct reg_qresult fin[2] = {
            {.site_id = 1,
             .status = REG_Q_DONE,
             .http_status = 200,
             .headers_json = "[1]",
             .latency_ms = 3,
             .finished_at = now + 8},
            {.site_id = 2,
             .status = REG_Q_DONE,
             .http_status = 200,
             .headers_json = "{}",
             .latency_ms = 4,
             .finished_at = now + 8},
        };
        int from[2] = {REG_Q_SENT, REG_Q_SENT}, cps[2] = {-1, -1}, rcs[2] = {1, 1};
        int64_t seqs[2] = {-1, -1};
        struct reg_query q5 = make_query("q_EEEEEEEEEEEEEEEEEEEEEE", 5, now, 60);

        CHECK_EQ_INT(registry_query_create(st, &q5, tt, 2, now), 0);
        fin[0].query_id = fin[1].query_id = q5.id;
        CHECK_EQ_INT(registry_query_finish_many(st, fin, from, 2, seqs, cps, rcs), 0);
        CHECK_EQ_INT(rcs[0], -EINVAL);
        CHECK_EQ_INT(rcs[1], 0);
        CHECK_EQ_INT(seqs[1], 1);
        CHECK_EQ_INT(cps[1], 0);
        memset(&got, 0, sizeof(got));
        CHECK_EQ_INT(registry_query_get(st, "q_EEEEEEEEEEEEEEEEEEEEEE", &got), 0);
        CHECK_EQ_INT(got.n_final, 1);
        CHECK_EQ_INT(got.completed_at, 0);
        registry_query_clear(&got);
        fin[0].headers_json = "{}";
        CHECK_EQ_INT(registry_query_finish(st, &fin[0], REG_Q_SENT, &seq, &complete), 0);
        CHECK_EQ_INT(seq, 2);
        CHECK_EQ_INT(complete, 1);
        memset(&got, 0, sizeof(got));
        CHECK_EQ_INT(registry_query_get(st, "q_EEEEEEEEEEEEEEEEEEEEEE", &got), 0);
        CHECK_EQ_INT(got.n_final, 2);
        CHECK_EQ_INT(got.completed_at, now + 8);
        registry_query_clear(&got);
    }

    many_targets(st, now);
    claim_race(st, db, now);

    CHECK_EQ_INT(registry_check(reg), 0);
    registry_query_close(st);
    registry_close(reg);
#ifdef TETHER_HAVE_PG
    if (pg)
        CHECK_EQ_INT(pgtest_drop(pg, db), 0);
#endif
    upgrade_keeps_queries();
    {
        char cmd[400];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
        CHECK_EQ_INT(system(cmd), 0);
    }
    TEST_DONE();
}
