/* Schema migrations compiled in from schema/sqlite/NNN_name.sql by cmake/embed_schema.cmake. */
/* SPDX-License-Identifier: MIT */
#ifndef TETHER_SCHEMA_SQL_H
#define TETHER_SCHEMA_SQL_H

#include <stddef.h>

struct schema_migration {
    int version;      /* NNN from the file name */
    const char *name; /* file name */
    const char *sql;  /* whole file */
};
/* Ordered by version; static storage. */
extern const struct schema_migration schema_migrations[];
extern const size_t schema_migrations_n;

#endif
