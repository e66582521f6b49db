/* Internal to hub/store/: the statement table and the helpers the table files share. */
/* SPDX-License-Identifier: MIT */
#ifndef TETHER_STORE_INT_H
#define TETHER_STORE_INT_H

/* Only the .c files of hub/store/ include this header (tools/check-layers.sh
 * enforces it). Public names are registry_*; internal ones registry__*, as in
 * libuv. */

#include <stddef.h>
#include <stdint.h>

#include <sqlite3.h>

#include "../../common/hist.h"
#include "registry.h"

/* One prepared statement per job, all prepared by registry_open() (their SQL
 * is the table in db.c) and reused: a call resets and binds, never prepares. */
enum stmt_id {
    S_BEGIN_IMMEDIATE,
    S_COMMIT,
    S_ROLLBACK,
    S_USER_VERSION,
    S_SITE_CREATE,
    S_SITE_GET,
    S_SITE_BY_PIN,
    S_SITE_LIST,
    S_SITE_STATE_OF,
    S_SITE_SET_STATE,
    S_SITE_REVOKE,
    S_SITE_REVOKE_TOKENS,
    S_SITE_REMOVE,
    S_SITE_SEEN,
    S_SITE_ROTATE,
    S_SITE_ID_EXISTS,
    S_SITE_SET_LABELS,
    S_ENROLL_CREATE,
    S_ENROLL_USE,
    S_ENROLL_STATUS,
    S_ENROLL_BIND_SITE,
    S_ENROLL_CANCEL,
    S_ENROLL_STATUS_ID,
    S_ENROLL_LIST,
    S_ENROLL_GET,
    S_ENROLL_CANCEL_SITE,
    S_API_CREATE,
    S_API_LOOKUP,
    S_API_BY_ID,
    S_API_REVOKE,
    S_API_NAME_EXISTS,
    S_API_COUNT,
    S_API_LIST,
    S_SESS_OPEN,
    S_SESS_CLOSE,
    S_SESS_EXISTS,
    S_SESS_CLOSE_STALE,
    S_SESS_LIST,
    S_SESS_AGENT,
    S_AUDIT,
    S_AUDIT_LIST,
    S_COUNT
};

/* Owns the connection and every statement in st[]. */
struct registry {
    sqlite3 *db;
    sqlite3_stmt *st[S_COUNT];
    /* Write transactions' commits, timed from SQLite's commit hook to its
     * WAL hook (db.c); commit_t0 is CLOCK_MONOTONIC ns, 0 when none runs. */
    struct hist commits;
    uint64_t commit_t0;
    int wal_autocheckpoint; /* pages: the WAL hook checkpoints as SQLite's own did */
};

/* Resets st and clears its bindings; returns st. */
sqlite3_stmt *registry__reset(sqlite3_stmt *st);
/* The cached statement id, reset and with its bindings cleared (borrowed). */
sqlite3_stmt *registry__stmt(struct registry *r, enum stmt_id id);
/* Resets so the statement holds no read snapshot once we are done with it. */
void registry__done(sqlite3_stmt *st);

/* registry_map_rc() for the registry's own tables, where a foreign key names
 * a site that does not exist (any more): -ENOENT. */
int registry__map_rc(int rc);
/* Steps a statement that returns no row we need, then resets it; 0 or the
 * mapped error, a foreign-key violation becoming foreign_key. */
int registry__exec_fk(sqlite3_stmt *st, int foreign_key);
/* Steps once: 1 row, 0 none, <0 mapped error. The statement is left positioned. */
int registry__step_fk(sqlite3_stmt *st, int foreign_key);
/* The same with a foreign-key violation meaning -ENOENT. */
int registry__exec(sqlite3_stmt *st);
int registry__step(sqlite3_stmt *st);

/* BEGIN IMMEDIATE / COMMIT on r's connection; 0 or mapped error. */
int registry__tx_begin(struct registry *r);
int registry__tx_commit(struct registry *r);
/* Rolls back if a transaction is still open (SQLite may have ended it). */
void registry__tx_rollback(struct registry *r);
/* Ends a transaction by the outcome rc of its work: commits when rc is 0,
 * else, or when the commit fails, rolls back. Returns the final outcome. */
int registry__tx_end(struct registry *r, int rc);

/* Binds s (NULL = SQL NULL), borrowed until the statement is reset; 0 or -EIO. */
int registry__bind_text(sqlite3_stmt *st, int idx, const char *s);
/* Binds at most max bytes of s (NULL = ""), cut back to a UTF-8 boundary; 0 or -EIO. */
int registry__bind_text_cut(sqlite3_stmt *st, int idx, const char *s, size_t max);
/* Copies a text column into dst (NULL = ""), truncating to cap. */
void registry__copy_col(sqlite3_stmt *st, int col, char *dst, size_t cap);
/* *dst = a heap copy of a text column (NULL = ""), owned by the caller; 0 or -ENOMEM. */
int registry__dup_col(sqlite3_stmt *st, int col, char **dst);

static inline int registry__empty(const char *s)
{
    return s == NULL || s[0] == '\0';
}

#endif
