/* schema/sqlite/ and schema/pg/ migrate to the same tables: columns, NULLs, keys and indexes. */
/* SPDX-License-Identifier: MIT */
/* Registered as unit-pg/hub/store/schema_equiv only (CMakeLists.txt): it
 * needs the PostgreSQL server of the fixture `pg` (tests/unit/pgtest.h),
 * and exits 77 without one. CHECK constraints are not compared here: the
 * store tests run the same refusals on both backends. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "hub/store/registry.h"
#include "pgtest.h"
#include "testutil.h"

#define MAX_ROWS 256

/* A sorted list of description lines, one per table, column or index. */
struct desc {
    char *v[MAX_ROWS];
    int n;
};

static void add(struct desc *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void add(struct desc *d, const char *fmt, ...)
{
    char line[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (d->n < MAX_ROWS)
        d->v[d->n++] = strdup(line);
}

static int cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void sqlite_desc(const char *path, struct desc *d)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *tables = NULL, *st = NULL;
    char sql[256];

    CHECK(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK);
    CHECK(sqlite3_prepare_v2(db,
                             "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT "
                             "LIKE 'sqlite_%' ORDER BY name",
                             -1, &tables, NULL) == SQLITE_OK);
    while (sqlite3_step(tables) == SQLITE_ROW) {
        const char *t = (const char *)sqlite3_column_text(tables, 0);
        char pk[256] = "";

        add(d, "table %s", t);
        /* Columns in order: a column is nullable unless NOT NULL or in the
         * primary key (INTEGER PRIMARY KEY is the rowid, never NULL). */
        snprintf(sql, sizeof(sql), "PRAGMA table_info(\"%s\")", t);
        CHECK(sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK);
        for (int i = 0; sqlite3_step(st) == SQLITE_ROW; i++) {
            const char *c = (const char *)sqlite3_column_text(st, 1);
            int notnull = sqlite3_column_int(st, 3), inpk = sqlite3_column_int(st, 5);

            add(d, "column %s.%02d %s %s", t, i, c, notnull || inpk ? "not null" : "null");
            if (inpk > 0)
                snprintf(pk + strlen(pk), sizeof(pk) - strlen(pk), "%d:%s ", inpk, c);
        }
        sqlite3_finalize(st);
        add(d, "primary key %s (%s)", t, pk);
        /* Indexes other than the primary key's: unique or not, partial or
         * not, columns in order; the name of the ones created by name (a
         * UNIQUE column's index is SQLite's autoindex, PostgreSQL's _key). */
        snprintf(sql, sizeof(sql), "PRAGMA index_list(\"%s\")", t);
        CHECK(sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK);
        while (sqlite3_step(st) == SQLITE_ROW) {
            const char *name = (const char *)sqlite3_column_text(st, 1);
            const char *origin = (const char *)sqlite3_column_text(st, 3);
            int unique = sqlite3_column_int(st, 2), partial = sqlite3_column_int(st, 4);
            char cols[256] = "", isql[300];
            sqlite3_stmt *ii = NULL;

            if (strcmp(origin, "pk") == 0)
                continue;
            snprintf(isql, sizeof(isql), "PRAGMA index_info(\"%s\")", name);
            CHECK(sqlite3_prepare_v2(db, isql, -1, &ii, NULL) == SQLITE_OK);
            while (sqlite3_step(ii) == SQLITE_ROW)
                snprintf(cols + strlen(cols), sizeof(cols) - strlen(cols), "%s ",
                         (const char *)sqlite3_column_text(ii, 2));
            sqlite3_finalize(ii);
            add(d, "index %s %s%s%s(%s)", t, strcmp(origin, "c") == 0 ? name : "-",
                unique ? " unique" : "", partial ? " partial" : "", cols);
        }
        sqlite3_finalize(st);
    }
    sqlite3_finalize(tables);
    sqlite3_close(db);
}

static PGresult *q(PGconn *pc, const char *sql)
{
    PGresult *res = PQexec(pc, sql);

    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        fprintf(stderr, "%s: %s", sql, PQerrorMessage(pc));
    CHECK(PQresultStatus(res) == PGRES_TUPLES_OK);
    return res;
}

static void pg_desc(const char *url, struct desc *d)
{
    PGconn *pc = PQconnectdb(url);
    PGresult *t, *res;
    char sql[1024];

    CHECK(PQstatus(pc) == CONNECTION_OK);
    /* tether_meta is the PostgreSQL driver's own (SQLite keeps the same in
     * PRAGMAs). */
    t = q(pc, "SELECT table_name FROM information_schema.tables WHERE table_schema = "
              "current_schema() AND table_name <> 'tether_meta' ORDER BY table_name");
    for (int i = 0; i < PQntuples(t); i++) {
        const char *tn = PQgetvalue(t, i, 0);
        char pk[256] = "";

        add(d, "table %s", tn);
        snprintf(sql, sizeof(sql),
                 "SELECT column_name, is_nullable FROM information_schema.columns WHERE "
                 "table_schema = current_schema() AND table_name = '%s' ORDER BY ordinal_position",
                 tn);
        res = q(pc, sql);
        for (int j = 0; j < PQntuples(res); j++)
            add(d, "column %s.%02d %s %s", tn, j, PQgetvalue(res, j, 0),
                strcmp(PQgetvalue(res, j, 1), "YES") == 0 ? "null" : "not null");
        PQclear(res);
        snprintf(sql, sizeof(sql),
                 "SELECT a.attname FROM pg_index x JOIN pg_attribute a ON a.attrelid = "
                 "x.indrelid AND a.attnum = ANY (x.indkey) WHERE x.indrelid = '%s'::regclass "
                 "AND x.indisprimary ORDER BY array_position(x.indkey::int2[], a.attnum)",
                 tn);
        res = q(pc, sql);
        for (int j = 0; j < PQntuples(res); j++)
            snprintf(pk + strlen(pk), sizeof(pk) - strlen(pk), "%d:%s ", j + 1,
                     PQgetvalue(res, j, 0));
        PQclear(res);
        add(d, "primary key %s (%s)", tn, pk);
        snprintf(sql, sizeof(sql),
                 "SELECT c.relname, x.indisunique, x.indpred IS NOT NULL, "
                 "EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = x.indexrelid), "
                 "(SELECT string_agg(a.attname || ' ', '' ORDER BY "
                 "array_position(x.indkey::int2[], a.attnum)) FROM pg_attribute a "
                 "WHERE a.attrelid = x.indrelid AND a.attnum = ANY (x.indkey)) "
                 "FROM pg_index x JOIN pg_class c ON c.oid = x.indexrelid "
                 "WHERE x.indrelid = '%s'::regclass AND NOT x.indisprimary",
                 tn);
        res = q(pc, sql);
        for (int j = 0; j < PQntuples(res); j++)
            add(d, "index %s %s%s%s(%s)", tn,
                strcmp(PQgetvalue(res, j, 3), "t") == 0 ? "-" : PQgetvalue(res, j, 0),
                strcmp(PQgetvalue(res, j, 1), "t") == 0 ? " unique" : "",
                strcmp(PQgetvalue(res, j, 2), "t") == 0 ? " partial" : "", PQgetvalue(res, j, 4));
        PQclear(res);
    }
    PQclear(t);
    PQfinish(pc);
}

int main(void)
{
    const char *server = pgtest_server_or_skip();
    char dir[] = "/tmp/tether-schema-XXXXXX", path[300], url[PGTEST_URL_CAP], err[256] = "";
    struct registry *r = NULL;
    struct desc a = {.n = 0}, b = {.n = 0};
    int i, j, same = 1;

    if (server == NULL) {
        fprintf(stderr, "needs PostgreSQL: set TETHER_TEST_PG_URL or TETHER_TEST_PG_URL_FILE\n");
        return 77;
    }
    CHECK(mkdtemp(dir) != NULL);
    snprintf(path, sizeof(path), "%s/hub.db", dir);
    CHECK_EQ_INT(registry_open(path, &r, err, sizeof(err)), 0);
    registry_close(r);
    r = NULL;
    CHECK_EQ_INT(pgtest_create(server, "schema", url, sizeof(url)), 0);
    CHECK_EQ_INT(registry_open(url, &r, err, sizeof(err)), 0);
    registry_close(r);

    sqlite_desc(path, &a);
    pg_desc(url, &b);
    qsort(a.v, (size_t)a.n, sizeof(a.v[0]), cmp);
    qsort(b.v, (size_t)b.n, sizeof(b.v[0]), cmp);
    CHECK(a.n > 40); /* 7 tables, their columns and indexes were seen */
    /* Walk both sorted lists and print every line only one side has. */
    for (i = 0, j = 0; i < a.n || j < b.n;) {
        int c = i == a.n ? 1 : j == b.n ? -1 : strcmp(a.v[i], b.v[j]);

        if (c == 0) {
            i++;
            j++;
            continue;
        }
        same = 0;
        if (c < 0)
            fprintf(stderr, "sqlite only:     %s\n", a.v[i++]);
        else
            fprintf(stderr, "postgresql only: %s\n", b.v[j++]);
    }
    CHECK(same);
    CHECK_EQ_INT(a.n, b.n);
    for (i = 0; i < a.n; i++)
        free(a.v[i]);
    for (i = 0; i < b.n; i++)
        free(b.v[i]);
    CHECK_EQ_INT(pgtest_drop(server, url), 0);
    unlink(path);
    snprintf(path, sizeof(path), "%s/hub.db-wal", dir);
    unlink(path);
    snprintf(path, sizeof(path), "%s/hub.db-shm", dir);
    unlink(path);
    rmdir(dir);
    TEST_DONE();
}
