/* The SQLite driver's own calls, for tests and fuzzers that look under the registry. */
/* SPDX-License-Identifier: MIT */
#ifndef TETHER_DB_SQLITE_H
#define TETHER_DB_SQLITE_H

#include "registry.h"

struct sqlite3;

/* The connection of a registry opened on SQLite (borrowed; NULL for any
 * other backend). Not for the hub: nothing outside hub/store/ may depend on
 * the backend in use. */
struct sqlite3 *registry_sqlite_db(struct registry *r);
/* An SQLite result (extended codes) as 0 or a negative errno: -EEXIST for a
 * unique or primary key, foreign_key for a foreign key violation, -EINVAL
 * for other constraints and too-big values, -ENOMEM, -EBUSY, -ENOSPC for a
 * full disk (SQLITE_FULL), else -EIO (SQLITE_IOERR and the rest). */
int registry_sqlite_map_rc(int rc, int foreign_key);

#endif
