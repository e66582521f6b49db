/* Schema migrations compiled in from schema/<backend>/NNN_name.sql by cmake/embed_schema.cmake. */
/* SPDX-License-Identifier: MIT */
#ifndef TETHER_SCHEMA_SQL_H
#define TETHER_SCHEMA_SQL_H

#include <stddef.h>

struct schema_migration {
    int version;      /* NNN from the file name */
    const char *name; /* file name */
    const char *sql;  /* whole file */
};
/* One array per backend, ordered by version; static storage. The two carry
 * the same numbers (tests/unit/hub/store/test_stmt_tables.c). */
extern const struct schema_migration schema_sqlite_migrations[];
extern const size_t schema_sqlite_migrations_n;
extern const struct schema_migration schema_pg_migrations[];
extern const size_t schema_pg_migrations_n;

#endif
