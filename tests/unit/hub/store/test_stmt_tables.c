/* The SQLite and PostgreSQL drivers' statement tables and migrations are complete and agree. */
/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hub/store/db_drivers.h"
#include "hub/store/db_pg.h"
#include "hub/store/schema_sql.h"
#include "testutil.h"

#ifdef TETHER_HAVE_PG
static void compare(const char *what, const char *const *sq, const char *const *pg, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int a, b;

        if (sq[i] == NULL || pg[i] == NULL) {
            fprintf(stderr, "%s statement %zu: missing in %s\n", what, i,
                    sq[i] == NULL ? "sqlite" : "postgresql");
            CHECK(0);
            continue;
        }
        a = registry_max_param(sq[i], '?');
        b = registry_max_param(pg[i], '$');
        if (a != b)
            fprintf(stderr, "%s statement %zu: ?%d in sqlite, $%d in postgresql\n  %s\n  %s\n",
                    what, i, a, b, sq[i], pg[i]);
        CHECK_EQ_INT(a, b);
        CHECK(strchr(pg[i], '?') == NULL); /* no SQLite placeholder left behind */
    }
}
#endif

int main(void)
{
    const char *const *sq, *const *sqq, *const *pg, *const *pgq;
    size_t n_sq = 0, nq_sq = 0, n_pg = 0, nq_pg = 0;

    CHECK_EQ_INT(registry_stmt_tables("sqlite", &sq, &n_sq, &sqq, &nq_sq), 0);
    CHECK(n_sq > 10 && nq_sq > 10);
    CHECK_EQ_INT(registry_stmt_tables("nosuch", &sq, &n_sq, &sqq, &nq_sq), -ENOENT);
    /* The parameter scanners themselves: quoted text and casts do not count. */
    CHECK_EQ_INT(
        registry_max_param("SELECT '$9', \"$8\" FROM t WHERE a = $2 AND b = $10::int", '$'), 10);
    CHECK_EQ_INT(registry_max_param("SELECT '?9' FROM t WHERE a = ?2", '?'), 2);
    CHECK_EQ_INT(registry_max_param("SELECT ? FROM t", '?'), -1);
    /* Migrations carry the same numbers on both backends. */
    CHECK_EQ_INT(schema_sqlite_migrations_n, schema_pg_migrations_n);
    for (size_t i = 0; i < schema_sqlite_migrations_n && i < schema_pg_migrations_n; i++) {
        CHECK_EQ_INT(schema_sqlite_migrations[i].version, schema_pg_migrations[i].version);
        CHECK_EQ_STR(schema_sqlite_migrations[i].name, schema_pg_migrations[i].name);
    }
#ifdef TETHER_HAVE_PG
    CHECK_EQ_INT(registry_stmt_tables("postgresql", &pg, &n_pg, &pgq, &nq_pg), 0);
    CHECK_EQ_INT(n_pg, n_sq);
    CHECK_EQ_INT(nq_pg, nq_sq);
    if (n_pg == n_sq && nq_pg == nq_sq) {
        compare("registry", sq, pg, n_sq);
        compare("query", sqq, pgq, nq_sq);
    }
#else
    (void)pg;
    (void)pgq;
    (void)n_pg;
    (void)nq_pg;
    fprintf(stderr, "built without libpq: only the SQLite tables and migrations checked\n");
#endif
    TEST_DONE();
}
