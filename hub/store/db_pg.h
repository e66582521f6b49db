/* The PostgreSQL driver's own calls, for tests that look under the registry. */
/* SPDX-License-Identifier: MIT */
#ifndef TETHER_DB_PG_H
#define TETHER_DB_PG_H

/* Not for the hub: nothing outside hub/store/ may depend on the backend in
 * use. */

/* A SQLSTATE (five characters) as a negative errno: 23505 -EEXIST, 23503
 * foreign_key, other class 23 and class 22 (constraints, bad JSON or text,
 * out of range) and 54000 -EINVAL, 40001 40P01 55P03 57014 (serialization,
 * deadlock, lock or statement timeout) -EBUSY, 53100 -ENOSPC, 53200
 * -ENOMEM, class 08 and 57P01-57P03 (connection lost, server going down)
 * -ENOTCONN, anything else (or NULL) -EIO. */
int registry_pg_map_sqlstate(const char *state, int foreign_key);

#endif
