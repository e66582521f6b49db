/* The registry drivers' statement tables, for the test that holds them to each other. */
/* SPDX-License-Identifier: MIT */
#ifndef TETHER_DB_DRIVERS_H
#define TETHER_DB_DRIVERS_H

#include <stddef.h>

/* Not for the hub: nothing outside hub/store/ may depend on the backend in
 * use. */

/* A driver's two statement tables (static storage): the registry's, n
 * entries, and the query store's, nq entries, indexed alike in every
 * driver. backend: "sqlite" or "postgresql". 0, or -ENOENT for a backend
 * this build lacks. */
int registry_stmt_tables(const char *backend, const char *const **sql, size_t *n,
                         const char *const **qsql, size_t *nq);
/* The highest numbered placeholder (mark '?' for ?N, '$' for $N) in a
 * statement's SQL, quoted text skipped; -1 for a bare ? (SQLite would number
 * it by position, which could disagree unseen). db_pg.c sizes its parameter
 * arrays with it. */
int registry_max_param(const char *sql, char mark);

#endif
