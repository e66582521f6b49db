/* The registry's SQLite driver: open, migrations, the statement tables, error mapping, commit
 * timing. */
/* SPDX-License-Identifier: MIT */
#include "db_sqlite.h"
#include "store_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "common/errmsg.h"
#include "schema_sql.h"

/* "TTHR": marks a file as ours, so a foreign SQLite database is refused
 * instead of having our tables added to it. */
#define REGISTRY_APP_ID 0x54544852

#define BUSY_TIMEOUT_MS 5000

static const char *const stmt_sql[S_COUNT] = {
    [S_BEGIN_IMMEDIATE] = "BEGIN IMMEDIATE",
    [S_COMMIT] = "COMMIT",
    [S_ROLLBACK] = "ROLLBACK",
    [S_USER_VERSION] = "PRAGMA user_version",
    [S_SITE_CREATE] = "INSERT INTO sites (name, labels, created_at) VALUES (?1, ?2, ?3)",
    [S_SITE_GET] = "SELECT " REG_SITE_COLS " FROM sites WHERE name = ?1",
    [S_SITE_BY_PIN] = "SELECT " REG_SITE_COLS " FROM sites WHERE pin = ?1",
    [S_SITE_LIST] = "SELECT " REG_SITE_COLS " FROM sites ORDER BY name",
    [S_SITE_STATE_OF] = "SELECT id, state FROM sites WHERE name = ?1",
    [S_SITE_SET_STATE] = "UPDATE sites SET state = ?2 "
                         "WHERE name = ?1 AND state IN ('active', 'disabled')",
    [S_SITE_REVOKE] = "UPDATE sites SET state = 'revoked', pin = NULL WHERE id = ?1",
    [S_SITE_REVOKE_TOKENS] = "UPDATE enroll_tokens SET cancelled_at = ?2 "
                             "WHERE site_id = ?1 AND used_at IS NULL AND cancelled_at IS NULL",
    [S_SITE_REMOVE] = "DELETE FROM sites WHERE name = ?1",
    [S_SITE_SEEN] = "UPDATE sites SET last_seen = ?2, agent_version = COALESCE(?3, agent_version), "
                    "services = COALESCE(?4, services), remote_addr = COALESCE(?5, remote_addr) "
                    "WHERE id = ?1",
    /* SQLite's write lock is the whole database's: no row order to keep. */
    [S_SITES_LOCK] = "SELECT 1 WHERE ?1 IS NULL",
    [S_SITE_ROTATE] = "UPDATE sites SET pin = ?3 WHERE id = ?1 AND pin = ?2",
    [S_SITE_ID_EXISTS] = "SELECT 1 FROM sites WHERE id = ?1",
    [S_SITE_SET_LABELS] = "UPDATE sites SET labels = ?2 WHERE name = ?1",
    [S_SITE_NAME_PIN] = "SELECT name, COALESCE(pin, '') FROM sites WHERE id = ?1",
    /* One hub per SQLite file: no other hub to tell (PostgreSQL's
     * pg_notify, db_pg.c). */
    [S_NOTIFY_SITE] = "SELECT 1 WHERE ?1 IS NULL",
    [S_NOTIFY_TOKENS] = "SELECT 1 WHERE ?1 IS NULL",
    [S_NOTIFY_QUERY] = "SELECT 1 WHERE ?1 IS NULL",
    [S_ENROLL_CREATE] = "INSERT INTO enroll_tokens (site_id, secret_hash, created_at, expires_at) "
                        "SELECT id, ?2, ?3, ?4 FROM sites WHERE name = ?1 RETURNING id",
    /* The single statement that decides who wins a redeem race. */
    [S_ENROLL_USE] = "UPDATE enroll_tokens SET used_at = ?2 WHERE secret_hash = ?1 "
                     "AND used_at IS NULL AND cancelled_at IS NULL AND expires_at > ?2 "
                     "RETURNING site_id",
    [S_ENROLL_STATUS] = "SELECT used_at IS NOT NULL, cancelled_at IS NOT NULL "
                        "FROM enroll_tokens WHERE secret_hash = ?1",
    /* An operator's "disabled" outlives a re-enrollment: the site cannot undo it. */
    [S_ENROLL_BIND_SITE] = "UPDATE sites SET pin = ?2, enrolled_at = ?3, "
                           "state = CASE state WHEN 'disabled' THEN 'disabled' ELSE 'active' END "
                           "WHERE id = ?1 RETURNING name",
    [S_ENROLL_CANCEL] = "UPDATE enroll_tokens SET cancelled_at = ?2 "
                        "WHERE id = ?1 AND used_at IS NULL AND cancelled_at IS NULL",
    [S_ENROLL_STATUS_ID] = "SELECT used_at IS NOT NULL FROM enroll_tokens WHERE id = ?1",
    [S_ENROLL_LIST] = REG_ENROLL_SELECT " ORDER BY e.id DESC",
    [S_ENROLL_GET] = REG_ENROLL_SELECT " WHERE e.id = ?1",
    [S_ENROLL_CANCEL_SITE] = "UPDATE enroll_tokens SET cancelled_at = ?2 "
                             "WHERE site_id = (SELECT id FROM sites WHERE name = ?1) "
                             "AND used_at IS NULL AND cancelled_at IS NULL",
    [S_API_CREATE] = "INSERT INTO api_tokens (name, role, scope, hash, created_at, expires_at, "
                     "services) VALUES (?1, ?2, ?3, ?4, ?5, NULLIF(?6, 0), ?7)",
    [S_API_LOOKUP] = "SELECT id, name, role, scope, created_at, COALESCE(expires_at, 0), "
                     "COALESCE(revoked_at, 0), services FROM api_tokens WHERE hash = ?1",
    [S_API_REVOKE] = "UPDATE api_tokens SET revoked_at = ?2 WHERE name = ?1 AND revoked_at IS NULL",
    [S_API_BY_ID] = "SELECT id, name, role, scope, created_at, COALESCE(expires_at, 0), "
                    "COALESCE(revoked_at, 0), services FROM api_tokens WHERE id = ?1",
    [S_API_NAME_EXISTS] = "SELECT 1 FROM api_tokens WHERE name = ?1 LIMIT 1",
    [S_API_COUNT] = "SELECT count(*) FROM api_tokens",
    [S_API_LIST] = "SELECT id, name, role, scope, created_at, COALESCE(expires_at, 0), "
                   "COALESCE(revoked_at, 0), services FROM api_tokens ORDER BY name, id",
    [S_SESS_OPEN] = "INSERT INTO sessions (site_id, remote_addr, agent_version, connected_at, "
                    "hub_id) VALUES (?1, ?2, ?3, ?4, ?5) RETURNING id",
    /* max(): a clock stepped back must not make the close fail the CHECK. */
    [S_SESS_CLOSE] = "UPDATE sessions SET disconnected_at = max(?2, connected_at), reason = ?3, "
                     "bytes_in = ?4, bytes_out = ?5 WHERE id = ?1 AND disconnected_at IS NULL",
    [S_SESS_EXISTS] = "SELECT 1 FROM sessions WHERE id = ?1",
    [S_SESS_CLOSE_STALE] = "UPDATE sessions SET disconnected_at = max(?1, connected_at), "
                           "reason = ?2 WHERE disconnected_at IS NULL "
                           "AND (?3 IS NULL OR hub_id IS NULL OR hub_id = ?3)",
    [S_SESS_LIST] = "SELECT id, site_id, remote_addr, agent_version, connected_at, "
                    "COALESCE(disconnected_at, 0), reason, bytes_in, bytes_out FROM sessions "
                    "WHERE site_id = ?1 ORDER BY connected_at DESC, id DESC LIMIT ?2",
    /* The session row keeps what the agent said in its hello, not only the site row. */
    [S_SESS_AGENT] = "UPDATE sessions SET agent_version = ?2 "
                     "WHERE site_id = ?1 AND disconnected_at IS NULL",
    /* The newest open session is the site's place: a newer one always wins
     * (the ses: note makes the older hub close its own). */
    [S_SESS_WHERE] = "SELECT COALESCE(hub_id, 0), id FROM sessions "
                     "WHERE site_id = ?1 AND disconnected_at IS NULL ORDER BY id DESC LIMIT 1",
    [S_SESS_OPEN_EACH] = "SELECT id, site_id, remote_addr, agent_version, connected_at, "
                         "COALESCE(hub_id, 0) FROM sessions WHERE disconnected_at IS NULL "
                         "AND (?1 = 0 OR site_id = ?1) ORDER BY id",
    [S_HUB_INSERT] = "INSERT INTO hubs (name, pin, public, joined_at, seen_at) "
                     "VALUES (?1, ?2, ?3, ?4, ?4) RETURNING id",
    [S_HUB_REFRESH] = "UPDATE hubs SET name = ?2, public = ?3, seen_at = ?4, state = 'active' "
                      "WHERE pin = ?1 RETURNING id",
    [S_HUB_LIST] = "SELECT id, name, pin, public, joined_at, seen_at FROM hubs "
                   "WHERE state = 'active' ORDER BY id",
    [S_HUB_ACTIVE] = "SELECT count(*) FROM hubs WHERE state = 'active'",
    [S_HUB_LEAVE] = "UPDATE hubs SET state = 'removed', seen_at = ?2 "
                    "WHERE pin = ?1 AND state = 'active'",
    [S_AUDIT] = "INSERT INTO audit (ts, actor, remote, action, target, result, detail) "
                "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    /* Paging by id walks the rowid b-tree backwards: no sort, no index needed. */
    [S_AUDIT_LIST] = "SELECT id, ts, actor, remote, action, target, result, detail FROM audit "
                     "WHERE id < ?1 ORDER BY id DESC LIMIT ?2",
};

/* Q_RINSERT's columns, and one row of its values (store_int.h numbers them). */
#define QR_HEAD                                                                                    \
    "INSERT INTO query_results (query_id, site_id, site, status, expires_at, sent_at, detail, "    \
    "finished_at, seq) VALUES "
#define QR_ROW(site_id, site, status, sent_at, detail, finished_at, seq)                           \
    "(?1, ?" #site_id ", ?" #site ", ?" #status ", ?2, NULLIF(?" #sent_at ", 0), ?" #detail        \
    ", NULLIF(?" #finished_at ", 0), NULLIF(?" #seq ", 0))"

/* The query store's statements (queries.c). */
static const char *const qstmt_sql[Q_NSTMT] = {
    [Q_INSERT] = "INSERT INTO queries (qid, created_at, token_id, actor, remote, target, service, "
                 "method, path, headers, body, timeout_s, ttl_s, expires_at, n_sites, n_final, "
                 "completed_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, "
                 "?14, ?15, ?16, NULLIF(?17, 0)) RETURNING id",
    [Q_RINSERT] = QR_HEAD QR_ROW(3, 4, 5, 6, 7, 8, 9),
    /* REG_RINSERT_ROWS rows in one statement: a 1,000-site query's rows
     * cost an eighth of the statement runs (each a reset, a step and the
     * opening of the table's and its indexes' cursors). */
    [Q_RINSERT_MANY] = QR_HEAD REG_RINSERT_VALUES(QR_ROW),
    [Q_MARK_SENT] = "UPDATE query_results SET status = 'sent', sent_at = ?3, sent_by = ?4 "
                    "WHERE query_id = ?1 AND site_id = ?2 AND status = 'queued'",
    [Q_QUEUED_OF] = "SELECT site_id FROM query_results WHERE query_id = ?1 AND status = 'queued'",
    [Q_SENT_ELSEWHERE] = "SELECT r.query_id, r.site_id, r.site, q.qid FROM query_results r "
                         "JOIN queries q ON q.id = r.query_id WHERE r.site_id = ?1 "
                         "AND r.status = 'sent' AND r.sent_by <> ?2",
    /* The rows a submission inserted as sent are this hub's. */
    [Q_SENT_BY] = "UPDATE query_results SET sent_by = ?2 "
                  "WHERE query_id = ?1 AND status = 'sent' AND sent_by IS NULL",
    /* A cancelled query never waits again: the caller cancels the result. */
    [Q_REQUEUE] = "UPDATE query_results SET status = 'queued', sent_at = NULL, sent_by = NULL "
                  "WHERE query_id = ?1 AND site_id = ?2 AND status = 'sent' AND "
                  "(SELECT cancelled_at FROM queries WHERE id = ?1) IS NULL",
    /* The state in the WHERE clause is what makes a transition happen once. */
    [Q_FINISH] = "UPDATE query_results SET status = ?4, http_status = NULLIF(?5, 0), headers = ?6, "
                 "body = ?7, detail = ?8, latency_ms = NULLIF(?9, -1), finished_at = ?10, "
                 "seq = ?11 WHERE query_id = ?1 AND site_id = ?2 AND status = ?3",
    /* Counts a result that is still in state ?3 and gives its seq. SET
     * expressions see the old n_final. */
    /* The query's count, read first (under its row lock) by the finishers
     * of a batch: their seqs follow it. */
    [Q_LOCK_COUNT] = "SELECT n_final FROM queries WHERE id = ?1",
    /* Counts the ?2 results of a batch that became final, at once. */
    [Q_BUMP_N] = "UPDATE queries SET n_final = n_final + ?2, "
                 "completed_at = CASE WHEN n_final + ?2 = n_sites THEN ?3 ELSE NULL END "
                 "WHERE id = ?1 RETURNING n_final = n_sites",
    /* A hub's own, and those no hub is named for (sent before 007). */
    [Q_SENT_LIST] = "SELECT query_id, site_id FROM query_results WHERE status = 'sent' "
                    "AND (?1 IS NULL OR sent_by IS NULL OR sent_by = ?1)",
    [Q_EXPIRE_LIST] = "SELECT r.query_id, r.site_id, r.site, q.qid FROM query_results r "
                      "JOIN queries q ON q.id = r.query_id "
                      "WHERE r.status = 'queued' AND r.expires_at < ?1 ORDER BY r.expires_at "
                      "LIMIT ?2",
    [Q_NEXT_EXPIRY] = "SELECT min(expires_at) FROM query_results WHERE status = 'queued'",
    [Q_QUEUED_SITE] = "SELECT " REG_QCOLS ", q.body FROM query_results r "
                      "JOIN queries q ON q.id = r.query_id WHERE r.site_id = ?1 AND "
                      "r.status = 'queued' AND r.expires_at >= ?2 ORDER BY r.query_id LIMIT ?3",
    [Q_GET] = "SELECT " REG_QCOLS " FROM queries q WHERE q.qid = ?1",
    [Q_RESULTS_SITE] = "SELECT " REG_RCOLS " FROM query_results WHERE query_id = ?1 ORDER BY site",
    [Q_RESULTS_SEQ] = "SELECT " REG_RCOLS " FROM query_results WHERE query_id = ?1 AND seq > ?2 "
                      "ORDER BY seq",
    [Q_RESULT_ONE] = "SELECT " REG_RCOLS " FROM query_results WHERE query_id = ?1 AND site_id = ?2",
    [Q_COUNTS] = "SELECT status, count(*) FROM query_results WHERE query_id = ?1 GROUP BY status",
    /* Paging by id walks the rowid b-tree backwards: no sort. */
    [Q_LIST_ALL] =
        "SELECT " REG_QCOLS " FROM queries q WHERE q.id < ?1 ORDER BY q.id DESC LIMIT ?2",
    [Q_LIST_TOKEN] = "SELECT " REG_QCOLS " FROM queries q WHERE q.token_id = ?3 AND q.id < ?1 "
                     "ORDER BY q.id DESC LIMIT ?2",
    [Q_CANCEL_LIST] = "SELECT r.query_id, r.site_id, r.site, q.qid FROM query_results r "
                      "JOIN queries q ON q.id = r.query_id "
                      "WHERE r.query_id = ?1 AND r.status = 'queued' ORDER BY r.site",
    [Q_CANCEL_MARK] = "UPDATE queries SET cancelled_at = ?2 WHERE id = ?1",
    [Q_IS_CANCELLED] = "SELECT cancelled_at IS NOT NULL FROM queries WHERE id = ?1",
    /* Each count walks its partial index only (queued or sent rows). */
    [Q_OPEN_COUNTS] = "SELECT (SELECT count(*) FROM query_results WHERE status = 'queued'), "
                      "(SELECT count(*) FROM query_results WHERE status = 'sent')",
};

/* A statement of this driver. */
struct sq_stmt {
    struct reg_stmt base; /* first: the rest of hub/store/ sees only this */
    sqlite3_stmt *st;
};

/* The connection and its commit timing. */
struct sq_conn {
    sqlite3 *db;
    struct registry *r; /* the registry that owns this (for its commits histogram) */
    /* Write transactions' commits, timed from SQLite's commit hook to its
     * WAL hook; commit_t0 is CLOCK_MONOTONIC ns, 0 when none runs. */
    uint64_t commit_t0;
    int wal_autocheckpoint; /* pages: the WAL hook checkpoints as SQLite's own did */
};

static sqlite3_stmt *sq(struct reg_stmt *st)
{
    return ((struct sq_stmt *)st)->st;
}

static sqlite3 *conn(struct registry *r)
{
    return ((struct sq_conn *)r->impl)->db;
}

struct sqlite3 *registry_sqlite_db(struct registry *r)
{
    return r != NULL && r->drv == &registry__sqlite ? conn(r) : NULL;
}

int registry_sqlite_map_rc(int rc, int foreign_key)
{
    switch (rc) {
    case SQLITE_OK:
    case SQLITE_ROW:
    case SQLITE_DONE:
        return 0;
    case SQLITE_CONSTRAINT_UNIQUE:
    case SQLITE_CONSTRAINT_PRIMARYKEY:
        return -EEXIST;
    case SQLITE_CONSTRAINT_FOREIGNKEY:
        return foreign_key;
    case SQLITE_CONSTRAINT_CHECK:
    case SQLITE_CONSTRAINT_NOTNULL:
    case SQLITE_TOOBIG:
    case SQLITE_RANGE:
        return -EINVAL;
    case SQLITE_NOMEM:
        return -ENOMEM;
    }
    switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return -EBUSY;
    case SQLITE_FULL:
        return -ENOSPC;
    }
    return -EIO;
}

static int map_rc(int rc)
{
    return registry_sqlite_map_rc(rc, -ENOENT);
}

/* Runs one statement outside the cache and reads the first column of its
 * first row: as an integer into *num, or as text into text (cap bytes)
 * when text is not NULL. 0, -ENOENT for no row, or the mapped error. */
static int query_one(sqlite3 *db, const char *sql, int64_t *num, char *text, size_t cap)
{
    sqlite3_stmt *st = NULL;
    int rc;

    rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    if (rc != SQLITE_OK)
        return map_rc(sqlite3_extended_errcode(db));
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        if (text != NULL) {
            const unsigned char *t = sqlite3_column_text(st, 0);

            snprintf(text, cap, "%s", t ? (const char *)t : "");
        } else
            *num = sqlite3_column_int64(st, 0);
        rc = 0;
    } else if (rc == SQLITE_DONE) {
        rc = -ENOENT;
    } else {
        rc = map_rc(sqlite3_extended_errcode(db));
    }
    sqlite3_finalize(st);
    return rc;
}

static int query_int(sqlite3 *db, const char *sql, int64_t *out)
{
    return query_one(db, sql, out, NULL, 0);
}

/* A file created by SQLite gets 0644 less umask; the registry holds token
 * hashes and the audit log, so a new one is made 0600 (-wal and -shm follow
 * the main file's mode). */
static void precreate_private(const char *path)
{
    int fd;

    if (strcmp(path, ":memory:") == 0 || strncmp(path, "file:", 5) == 0)
        return;
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd >= 0)
        close(fd);
}

static int latest_version(void)
{
    return schema_sqlite_migrations_n
               ? schema_sqlite_migrations[schema_sqlite_migrations_n - 1].version
               : 0;
}

/* Applies one migration if the database is still below it. The version is
 * read again under the write lock, so two processes opening a fresh file at
 * once never run the same migration twice. */
static int apply_migration(sqlite3 *db, const struct schema_migration *m, char *err, size_t err_cap)
{
    char *msg = NULL;
    char sql[64];
    int64_t uv = 0, app_id = 0, fk_bad = 0;
    int rc = -EIO, in_tx = 0;

    if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, &msg) != SQLITE_OK) {
        rc = map_rc(sqlite3_extended_errcode(db));
        errmsg_set(err, err_cap, "migration %s: %s", m->name, msg ? msg : "cannot lock");
        goto out;
    }
    in_tx = 1;
    if (query_int(db, "PRAGMA user_version", &uv) < 0 ||
        query_int(db, "PRAGMA application_id", &app_id) < 0) {
        errmsg_set(err, err_cap, "migration %s: %s", m->name, sqlite3_errmsg(db));
        goto out;
    }
    if (uv >= m->version) {
        rc = 0;
        goto commit;
    }
    if (uv == 0 && app_id == 0) {
        snprintf(sql, sizeof(sql), "PRAGMA application_id = %d", REGISTRY_APP_ID);
        if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
            errmsg_set(err, err_cap, "migration %s: %s", m->name, msg ? msg : "?");
            goto out;
        }
    }
    if (sqlite3_exec(db, m->sql, NULL, NULL, &msg) != SQLITE_OK) {
        rc = map_rc(sqlite3_extended_errcode(db));
        errmsg_set(err, err_cap, "migration %s: %s", m->name, msg ? msg : "?");
        goto out;
    }
    /* Foreign keys are off while migrating, so a migration may rebuild a
     * parent table (create, copy, drop, rename) without cascading deletes;
     * what it leaves behind must still be consistent. */
    rc = query_int(db, "PRAGMA foreign_key_check", &fk_bad);
    if (rc != -ENOENT) {
        errmsg_set(err, err_cap, "migration %s: %s", m->name,
                   rc == 0 ? "leaves foreign key violations" : sqlite3_errmsg(db));
        rc = -EIO;
        goto out;
    }
    snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", m->version);
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        errmsg_set(err, err_cap, "migration %s: %s", m->name, msg ? msg : "?");
        goto out;
    }
    rc = 0;
commit:
    if (sqlite3_exec(db, "COMMIT", NULL, NULL, &msg) != SQLITE_OK) {
        rc = map_rc(sqlite3_extended_errcode(db));
        errmsg_set(err, err_cap, "migration %s: commit: %s", m->name, msg ? msg : "?");
        goto out;
    }
    in_tx = 0;
out:
    if (in_tx)
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    sqlite3_free(msg);
    return rc;
}

/* Refuses files that are not ours or come from a newer tether-hub before any
 * migration touches them. */
static int check_identity(sqlite3 *db, const char *path, int64_t *uv_out, char *err, size_t err_cap)
{
    int64_t uv = 0, app_id = 0, n_tables = 0;
    int latest = latest_version(), rc = 0;

    /* One read transaction: another process creating the same fresh file
     * may commit its first migration between two of these reads, and a
     * version of 0 with its tables present would look like a foreign file. */
    if (sqlite3_exec(db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK ||
        query_int(db, "PRAGMA user_version", &uv) < 0 ||
        query_int(db, "PRAGMA application_id", &app_id) < 0 ||
        query_int(db, "SELECT count(*) FROM sqlite_schema", &n_tables) < 0 ||
        sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        errmsg_set(err, err_cap, "%s: %s", path, sqlite3_errmsg(db));
        rc = map_rc(sqlite3_extended_errcode(db));
        if (!sqlite3_get_autocommit(db))
            sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
        return rc < 0 ? rc : -EIO;
    }
    if (app_id != 0 && app_id != REGISTRY_APP_ID) {
        errmsg_set(err, err_cap, "%s: not a tether-hub database (application_id %lld)", path,
                   (long long)app_id);
        return -EINVAL;
    }
    if (app_id == 0 && (uv != 0 || n_tables != 0)) {
        errmsg_set(err, err_cap, "%s: not a tether-hub database (foreign tables present)", path);
        return -EINVAL;
    }
    if (uv > latest) {
        errmsg_set(err, err_cap, "database schema %lld is newer than this tether-hub (%d)",
                   (long long)uv, latest);
        return -ENOTSUP;
    }
    *uv_out = uv;
    return 0;
}

static uint64_t mono_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* SQLite is about to commit a write transaction (explicit, or a single
 * statement's own). */
static int on_commit(void *arg)
{
    struct sq_conn *c = arg;

    c->commit_t0 = mono_ns();
    return 0; /* go on with the commit */
}

static void on_rollback(void *arg)
{
    struct sq_conn *c = arg;

    c->commit_t0 = 0;
}

/* The commit is in the WAL, synced, and its locks released. Installing a
 * WAL hook replaces SQLite's automatic checkpoint, so it is done here as
 * SQLite's own hook does (sqlite3_wal_autocheckpoint). */
static int on_wal(void *arg, sqlite3 *db, const char *name, int pages)
{
    struct sq_conn *c = arg;

    if (c->commit_t0 != 0) {
        hist_observe(&c->r->commits, (double)(mono_ns() - c->commit_t0) / 1e9);
        c->commit_t0 = 0;
    }
    if (c->wal_autocheckpoint > 0 && pages >= c->wal_autocheckpoint)
        sqlite3_wal_checkpoint(db, name);
    return SQLITE_OK;
}

static void sq_close(struct registry *r)
{
    struct sq_conn *c = r->impl;

    if (c == NULL)
        return;
    sqlite3_close(c->db);
    free(c);
    r->impl = NULL;
}

static int sq_open(struct registry *r, const char *path, char *err, size_t err_cap)
{
    struct sq_conn *c;
    char mode[16];
    int64_t fk = 0, uv = 0, ckpt = 0;
    int rc = -EIO, src, waited;
    size_t i;

    for (i = 1; i < schema_sqlite_migrations_n; i++) {
        if (schema_sqlite_migrations[i].version <= schema_sqlite_migrations[i - 1].version) {
            errmsg_set(err, err_cap, "schema migrations out of order at %s",
                       schema_sqlite_migrations[i].name);
            return -EINVAL;
        }
    }
    c = calloc(1, sizeof(*c));
    if (c == NULL) {
        errmsg_set(err, err_cap, "out of memory");
        return -ENOMEM;
    }
    c->r = r;
    r->impl = c;
    precreate_private(path);
    /* NOMUTEX: a handle and its cached statements serve one thread at a time. */
    src = sqlite3_open_v2(path, &c->db,
                          SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (src != SQLITE_OK) {
        int sys = c->db ? sqlite3_system_errno(c->db) : 0;

        errmsg_set(err, err_cap, "%s: %s", path, c->db ? sqlite3_errmsg(c->db) : "out of memory");
        return sys > 0 ? -sys : -EIO;
    }
    sqlite3_extended_result_codes(c->db, 1);
    sqlite3_busy_timeout(c->db, BUSY_TIMEOUT_MS);

    /* The first read of the file: this is where "not a database" shows.
     * Switching to WAL needs an exclusive lock that SQLite does not wait for
     * (no busy handler), so two processes creating the file at once retry. */
    for (waited = 0;; waited += 10) {
        rc = query_one(c->db, "PRAGMA journal_mode = WAL", NULL, mode, sizeof(mode));
        if (rc != -EBUSY || waited >= BUSY_TIMEOUT_MS)
            break;
        usleep(10 * 1000);
    }
    if (rc < 0) {
        errmsg_set(err, err_cap, "%s: %s", path, sqlite3_errmsg(c->db));
        return rc;
    }
    if (strcmp(mode, "wal") != 0 &&
        !(strcmp(mode, "memory") == 0 && strcmp(path, ":memory:") == 0)) {
        errmsg_set(err, err_cap, "%s: cannot use WAL journal (got \"%s\")", path, mode);
        return -EIO;
    }
    /* A lost revoke or enrollment after power loss is a security event, so
     * commits are durable rather than merely consistent. */
    if (sqlite3_exec(c->db, "PRAGMA synchronous = FULL; PRAGMA foreign_keys = OFF", NULL, NULL,
                     NULL) != SQLITE_OK) {
        errmsg_set(err, err_cap, "%s: %s", path, sqlite3_errmsg(c->db));
        return -EIO;
    }
    rc = check_identity(c->db, path, &uv, err, err_cap);
    if (rc < 0)
        return rc;
    /* Only migrations above the version seen take the write lock, so an
     * up-to-date file opens without writing. */
    for (i = 0; i < schema_sqlite_migrations_n; i++) {
        if (schema_sqlite_migrations[i].version <= uv)
            continue;
        rc = apply_migration(c->db, &schema_sqlite_migrations[i], err, err_cap);
        if (rc < 0)
            return rc;
    }
    if (sqlite3_exec(c->db, "PRAGMA foreign_keys = ON", NULL, NULL, NULL) != SQLITE_OK ||
        query_int(c->db, "PRAGMA foreign_keys", &fk) < 0 || fk != 1) {
        errmsg_set(err, err_cap, "%s: cannot enable foreign keys", path);
        return -EIO;
    }
    /* Commits are timed from here on (the migrations above are not). */
    hist_init(&r->commits, registry__commit_le, registry__commit_le_n);
    if (query_int(c->db, "PRAGMA wal_autocheckpoint", &ckpt) < 0)
        ckpt = 1000; /* SQLite's default */
    c->wal_autocheckpoint = (int)ckpt;
    sqlite3_commit_hook(c->db, on_commit, c);
    sqlite3_rollback_hook(c->db, on_rollback, c);
    sqlite3_wal_hook(c->db, on_wal, c);
    return 0;
}

static int sq_prepare(struct registry *r, const char *sql, struct reg_stmt **out)
{
    struct sq_stmt *st = calloc(1, sizeof(*st));
    sqlite3 *db = conn(r);
    int rc;

    *out = NULL;
    if (st == NULL)
        return -ENOMEM;
    st->base.drv = &registry__sqlite;
    if (sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st->st, NULL) != SQLITE_OK) {
        rc = map_rc(sqlite3_extended_errcode(db));
        free(st);
        return rc < 0 ? rc : -EIO;
    }
    *out = &st->base;
    return 0;
}

static void sq_finalize(struct reg_stmt *st)
{
    sqlite3_finalize(sq(st));
    free(st);
}

static void sq_reset(struct reg_stmt *st, int clear_bindings)
{
    sqlite3_reset(sq(st));
    if (clear_bindings)
        sqlite3_clear_bindings(sq(st));
}

static int bind_rc(int rc)
{
    return rc == SQLITE_OK ? 0 : rc == SQLITE_TOOBIG || rc == SQLITE_RANGE ? -EINVAL : -EIO;
}

static int sq_bind_null(struct reg_stmt *st, int idx)
{
    return bind_rc(sqlite3_bind_null(sq(st), idx));
}

static int sq_bind_i64(struct reg_stmt *st, int idx, int64_t v)
{
    return bind_rc(sqlite3_bind_int64(sq(st), idx, v));
}

static int sq_bind_text(struct reg_stmt *st, int idx, const char *s, size_t len)
{
    if (len > (size_t)0x7fffffff)
        return -EINVAL;
    return bind_rc(sqlite3_bind_text(sq(st), idx, s, (int)len, SQLITE_STATIC));
}

static int sq_bind_blob(struct reg_stmt *st, int idx, const void *b, size_t len)
{
    if (len > (size_t)0x7fffffff)
        return -EINVAL;
    /* An empty blob is a zero-length value, not NULL. */
    if (len == 0)
        return bind_rc(sqlite3_bind_zeroblob(sq(st), idx, 0));
    return bind_rc(sqlite3_bind_blob(sq(st), idx, b, (int)len, SQLITE_STATIC));
}

static int sq_step(struct reg_stmt *st, int foreign_key)
{
    int rc = sqlite3_step(sq(st));

    if (rc == SQLITE_ROW)
        return 1;
    if (rc == SQLITE_DONE)
        return 0;
    return registry_sqlite_map_rc(sqlite3_extended_errcode(sqlite3_db_handle(sq(st))), foreign_key);
}

static int sq_col_null(struct reg_stmt *st, int col)
{
    return sqlite3_column_type(sq(st), col) == SQLITE_NULL;
}

static int64_t sq_col_i64(struct reg_stmt *st, int col)
{
    return sqlite3_column_int64(sq(st), col);
}

static const char *sq_col_text(struct reg_stmt *st, int col)
{
    return (const char *)sqlite3_column_text(sq(st), col);
}

/* The pointer first, then the size: the order SQLite asks for. */
static const void *sq_col_blob(struct reg_stmt *st, int col, size_t *len)
{
    const void *b = sqlite3_column_blob(sq(st), col);

    *len = (size_t)sqlite3_column_bytes(sq(st), col);
    return b;
}

static int64_t sq_changes(struct registry *r)
{
    return sqlite3_changes(conn(r));
}

/* One hub per SQLite file (its state lock): every change is this process's,
 * and those of the loop's connection all count here. */
static int sq_write_gen(struct registry *r, uint64_t *gen)
{
    *gen = (uint64_t)sqlite3_total_changes64(conn(r));
    return 0;
}

static int sq_in_tx(struct registry *r)
{
    return !sqlite3_get_autocommit(conn(r));
}

static int sq_check(struct registry *r)
{
    sqlite3_stmt *st = NULL;
    const unsigned char *t;
    int rc = -EIO, n = 0;

    if (sqlite3_prepare_v2(conn(r), "PRAGMA integrity_check", -1, &st, NULL) != SQLITE_OK)
        goto out;
    while ((n = sqlite3_step(st)) == SQLITE_ROW) {
        t = sqlite3_column_text(st, 0);
        if (t == NULL || strcmp((const char *)t, "ok") != 0)
            goto out;
    }
    if (n != SQLITE_DONE)
        goto out;
    sqlite3_finalize(st);
    /* A row pointing at a site that is gone is damage too. */
    if (sqlite3_prepare_v2(conn(r), "PRAGMA foreign_key_check", -1, &st, NULL) != SQLITE_OK) {
        st = NULL;
        goto out;
    }
    if (sqlite3_step(st) != SQLITE_DONE)
        goto out;
    rc = 0;
out:
    sqlite3_finalize(st);
    return rc;
}

/* The synchronous level is read when a statement is compiled, so these
 * PRAGMAs are prepared each time rather than cached. In WAL mode NORMAL
 * still survives a crash of the process; only an OS crash or power cut
 * may lose the last rows. */
static int sq_set_relaxed(struct registry *r, int relaxed)
{
    sqlite3 *db = conn(r);

    if (sqlite3_exec(db, relaxed ? "PRAGMA synchronous = NORMAL" : "PRAGMA synchronous = FULL",
                     NULL, NULL, NULL) != SQLITE_OK)
        return map_rc(sqlite3_extended_errcode(db));
    return 0;
}

const struct registry_driver registry__sqlite = {
    .name = "sqlite",
    .sql = stmt_sql,
    .qsql = qstmt_sql,
    .open = sq_open,
    .close = sq_close,
    .prepare = sq_prepare,
    .finalize = sq_finalize,
    .reset = sq_reset,
    .bind_null = sq_bind_null,
    .bind_i64 = sq_bind_i64,
    .bind_text = sq_bind_text,
    .bind_blob = sq_bind_blob,
    .step = sq_step,
    .col_null = sq_col_null,
    .col_i64 = sq_col_i64,
    .col_text = sq_col_text,
    .col_blob = sq_col_blob,
    .changes = sq_changes,
    .write_gen = sq_write_gen,
    .in_tx = sq_in_tx,
    .check = sq_check,
    .set_relaxed = sq_set_relaxed,
};
