/* The registry file: open, migrations, the statement table, error mapping, shared helpers. */
/* SPDX-License-Identifier: MIT */
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

/* Commit latency buckets, in seconds: a WAL commit with fsync takes a
 * fraction of a millisecond on an SSD, tens of milliseconds on a busy
 * disk; a writer waiting for another process's lock up to busy_timeout. */
static const double commit_le[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                   0.1,    0.25,  0.5,    1,     2.5,  5};

#define SITE_COLS                                                                                  \
    "id, name, state, COALESCE(pin, ''), labels, services, agent_version, remote_addr, "           \
    "created_at, COALESCE(enrolled_at, 0), COALESCE(last_seen, 0)"

static const char *const stmt_sql[S_COUNT] = {
    [S_BEGIN_IMMEDIATE] = "BEGIN IMMEDIATE",
    [S_COMMIT] = "COMMIT",
    [S_ROLLBACK] = "ROLLBACK",
    [S_USER_VERSION] = "PRAGMA user_version",
    [S_SITE_CREATE] = "INSERT INTO sites (name, labels, created_at) VALUES (?1, ?2, ?3)",
    [S_SITE_GET] = "SELECT " SITE_COLS " FROM sites WHERE name = ?1",
    [S_SITE_BY_PIN] = "SELECT " SITE_COLS " FROM sites WHERE pin = ?1",
    [S_SITE_LIST] = "SELECT " SITE_COLS " FROM sites ORDER BY name",
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
    [S_SITE_ROTATE] = "UPDATE sites SET pin = ?3 WHERE id = ?1 AND pin = ?2",
    [S_SITE_ID_EXISTS] = "SELECT 1 FROM sites WHERE id = ?1",
    [S_SITE_SET_LABELS] = "UPDATE sites SET labels = ?2 WHERE name = ?1",
    [S_ENROLL_CREATE] = "INSERT INTO enroll_tokens (site_id, secret_hash, created_at, expires_at) "
                        "SELECT id, ?2, ?3, ?4 FROM sites WHERE name = ?1",
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
    [S_ENROLL_LIST] = "SELECT e.id, s.name, e.created_at, e.expires_at, COALESCE(e.used_at, 0), "
                      "COALESCE(e.cancelled_at, 0) FROM enroll_tokens e "
                      "JOIN sites s ON s.id = e.site_id ORDER BY e.id DESC",
    [S_ENROLL_GET] = "SELECT e.id, s.name, e.created_at, e.expires_at, COALESCE(e.used_at, 0), "
                     "COALESCE(e.cancelled_at, 0) FROM enroll_tokens e "
                     "JOIN sites s ON s.id = e.site_id WHERE e.id = ?1",
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
    [S_SESS_OPEN] = "INSERT INTO sessions (site_id, remote_addr, agent_version, connected_at) "
                    "VALUES (?1, ?2, ?3, ?4)",
    /* max(): a clock stepped back must not make the close fail the CHECK. */
    [S_SESS_CLOSE] = "UPDATE sessions SET disconnected_at = max(?2, connected_at), reason = ?3, "
                     "bytes_in = ?4, bytes_out = ?5 WHERE id = ?1 AND disconnected_at IS NULL",
    [S_SESS_EXISTS] = "SELECT 1 FROM sessions WHERE id = ?1",
    [S_SESS_CLOSE_STALE] = "UPDATE sessions SET disconnected_at = max(?1, connected_at), "
                           "reason = ?2 WHERE disconnected_at IS NULL",
    [S_SESS_LIST] = "SELECT id, site_id, remote_addr, agent_version, connected_at, "
                    "COALESCE(disconnected_at, 0), reason, bytes_in, bytes_out FROM sessions "
                    "WHERE site_id = ?1 ORDER BY connected_at DESC, id DESC LIMIT ?2",
    /* The session row keeps what the agent said in its hello, not only the site row. */
    [S_SESS_AGENT] = "UPDATE sessions SET agent_version = ?2 "
                     "WHERE site_id = ?1 AND disconnected_at IS NULL",
    [S_AUDIT] = "INSERT INTO audit (ts, actor, remote, action, target, result, detail) "
                "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    /* Paging by id walks the rowid b-tree backwards: no sort, no index needed. */
    [S_AUDIT_LIST] = "SELECT id, ts, actor, remote, action, target, result, detail FROM audit "
                     "WHERE id < ?1 ORDER BY id DESC LIMIT ?2",
};

struct sqlite3 *registry_db(struct registry *r)
{
    return r->db;
}

int registry_map_rc(int rc, int foreign_key)
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

const char *registry_storage_error(int rc)
{
    switch (rc) {
    case -ENOSPC:
        return "the hub's disk is full";
    case -EIO:
        return "the hub's database reported an I/O error";
    case -EBUSY:
        return "the hub's database is locked by another process";
    }
    return NULL;
}

int registry__map_rc(int rc)
{
    return registry_map_rc(rc, -ENOENT);
}

sqlite3_stmt *registry__reset(sqlite3_stmt *st)
{
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return st;
}

sqlite3_stmt *registry__stmt(struct registry *r, enum stmt_id id)
{
    return registry__reset(r->st[id]);
}

void registry__done(sqlite3_stmt *st)
{
    sqlite3_reset(st);
}

int registry__exec_fk(sqlite3_stmt *st, int foreign_key)
{
    int rc;

    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        ;
    rc = registry_map_rc(rc == SQLITE_DONE ? SQLITE_DONE
                                           : sqlite3_extended_errcode(sqlite3_db_handle(st)),
                         foreign_key);
    sqlite3_reset(st);
    return rc;
}

int registry__step_fk(sqlite3_stmt *st, int foreign_key)
{
    int rc = sqlite3_step(st);

    if (rc == SQLITE_ROW)
        return 1;
    if (rc == SQLITE_DONE)
        return 0;
    return registry_map_rc(sqlite3_extended_errcode(sqlite3_db_handle(st)), foreign_key);
}

int registry__exec(sqlite3_stmt *st)
{
    return registry__exec_fk(st, -ENOENT);
}

int registry__step(sqlite3_stmt *st)
{
    return registry__step_fk(st, -ENOENT);
}

int registry__bind_text(sqlite3_stmt *st, int idx, const char *s)
{
    if (s == NULL)
        return sqlite3_bind_null(st, idx) == SQLITE_OK ? 0 : -EIO;
    return sqlite3_bind_text(st, idx, s, -1, SQLITE_STATIC) == SQLITE_OK ? 0 : -EIO;
}

int registry__bind_text_cut(sqlite3_stmt *st, int idx, const char *s, size_t max)
{
    size_t n;

    if (s == NULL)
        s = "";
    n = strnlen(s, max + 1);
    if (n > max) {
        n = max;
        while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
            n--;
    }
    return sqlite3_bind_text(st, idx, s, (int)n, SQLITE_STATIC) == SQLITE_OK ? 0 : -EIO;
}

void registry__copy_col(sqlite3_stmt *st, int col, char *dst, size_t cap)
{
    const unsigned char *t = sqlite3_column_text(st, col);

    snprintf(dst, cap, "%s", t ? (const char *)t : "");
}

int registry__dup_col(sqlite3_stmt *st, int col, char **dst)
{
    const unsigned char *t = sqlite3_column_text(st, col);

    *dst = strdup(t ? (const char *)t : "");
    return *dst ? 0 : -ENOMEM;
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
        return registry__map_rc(sqlite3_extended_errcode(db));
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        if (text != NULL)
            registry__copy_col(st, 0, text, cap);
        else
            *num = sqlite3_column_int64(st, 0);
        rc = 0;
    } else if (rc == SQLITE_DONE) {
        rc = -ENOENT;
    } else {
        rc = registry__map_rc(sqlite3_extended_errcode(db));
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
    return schema_migrations_n ? schema_migrations[schema_migrations_n - 1].version : 0;
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
        rc = registry__map_rc(sqlite3_extended_errcode(db));
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
        rc = registry__map_rc(sqlite3_extended_errcode(db));
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
        rc = registry__map_rc(sqlite3_extended_errcode(db));
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
        rc = registry__map_rc(sqlite3_extended_errcode(db));
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
    struct registry *r = arg;

    r->commit_t0 = mono_ns();
    return 0; /* go on with the commit */
}

static void on_rollback(void *arg)
{
    struct registry *r = arg;

    r->commit_t0 = 0;
}

/* The commit is in the WAL, synced, and its locks released. Installing a
 * WAL hook replaces SQLite's automatic checkpoint, so it is done here as
 * SQLite's own hook does (sqlite3_wal_autocheckpoint). */
static int on_wal(void *arg, sqlite3 *db, const char *name, int pages)
{
    struct registry *r = arg;

    if (r->commit_t0 != 0) {
        hist_observe(&r->commits, (double)(mono_ns() - r->commit_t0) / 1e9);
        r->commit_t0 = 0;
    }
    if (r->wal_autocheckpoint > 0 && pages >= r->wal_autocheckpoint)
        sqlite3_wal_checkpoint(db, name);
    return SQLITE_OK;
}

void registry_commit_latency(const struct registry *r, struct hist *out)
{
    *out = r->commits;
}

int registry_open(const char *path, struct registry **out, char *err, size_t err_cap)
{
    struct registry *r = NULL;
    char mode[16];
    int64_t fk = 0, uv = 0, ckpt = 0;
    int rc = -EIO, src, waited;
    size_t i;

    errmsg_set(err, err_cap, "%s", "");
    if (path == NULL || out == NULL) {
        errmsg_set(err, err_cap, "registry_open: no path");
        return -EINVAL;
    }
    *out = NULL;
    for (i = 1; i < schema_migrations_n; i++) {
        if (schema_migrations[i].version <= schema_migrations[i - 1].version) {
            errmsg_set(err, err_cap, "schema migrations out of order at %s",
                       schema_migrations[i].name);
            return -EINVAL;
        }
    }
    r = calloc(1, sizeof(*r));
    if (r == NULL) {
        errmsg_set(err, err_cap, "out of memory");
        return -ENOMEM;
    }
    precreate_private(path);
    /* NOMUTEX: a handle and its cached statements serve one thread at a time. */
    src = sqlite3_open_v2(path, &r->db,
                          SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (src != SQLITE_OK) {
        int sys = r->db ? sqlite3_system_errno(r->db) : 0;

        errmsg_set(err, err_cap, "%s: %s", path, r->db ? sqlite3_errmsg(r->db) : "out of memory");
        rc = sys > 0 ? -sys : -EIO;
        goto out;
    }
    sqlite3_extended_result_codes(r->db, 1);
    sqlite3_busy_timeout(r->db, BUSY_TIMEOUT_MS);

    /* The first read of the file: this is where "not a database" shows.
     * Switching to WAL needs an exclusive lock that SQLite does not wait for
     * (no busy handler), so two processes creating the file at once retry. */
    for (waited = 0;; waited += 10) {
        rc = query_one(r->db, "PRAGMA journal_mode = WAL", NULL, mode, sizeof(mode));
        if (rc != -EBUSY || waited >= BUSY_TIMEOUT_MS)
            break;
        usleep(10 * 1000);
    }
    if (rc < 0) {
        errmsg_set(err, err_cap, "%s: %s", path, sqlite3_errmsg(r->db));
        goto out;
    }
    if (strcmp(mode, "wal") != 0 &&
        !(strcmp(mode, "memory") == 0 && strcmp(path, ":memory:") == 0)) {
        errmsg_set(err, err_cap, "%s: cannot use WAL journal (got \"%s\")", path, mode);
        rc = -EIO;
        goto out;
    }
    /* A lost revoke or enrollment after power loss is a security event, so
     * commits are durable rather than merely consistent. */
    if (sqlite3_exec(r->db, "PRAGMA synchronous = FULL; PRAGMA foreign_keys = OFF", NULL, NULL,
                     NULL) != SQLITE_OK) {
        errmsg_set(err, err_cap, "%s: %s", path, sqlite3_errmsg(r->db));
        rc = -EIO;
        goto out;
    }
    rc = check_identity(r->db, path, &uv, err, err_cap);
    if (rc < 0)
        goto out;
    /* Only migrations above the version seen take the write lock, so an
     * up-to-date file opens without writing. */
    for (i = 0; i < schema_migrations_n; i++) {
        if (schema_migrations[i].version <= uv)
            continue;
        rc = apply_migration(r->db, &schema_migrations[i], err, err_cap);
        if (rc < 0)
            goto out;
    }
    if (sqlite3_exec(r->db, "PRAGMA foreign_keys = ON", NULL, NULL, NULL) != SQLITE_OK ||
        query_int(r->db, "PRAGMA foreign_keys", &fk) < 0 || fk != 1) {
        errmsg_set(err, err_cap, "%s: cannot enable foreign keys", path);
        rc = -EIO;
        goto out;
    }
    for (i = 0; i < S_COUNT; i++) {
        if (sqlite3_prepare_v3(r->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &r->st[i],
                               NULL) != SQLITE_OK) {
            errmsg_set(err, err_cap, "%s: prepare: %s", path, sqlite3_errmsg(r->db));
            rc = -EIO;
            goto out;
        }
    }
    /* Commits are timed from here on (the migrations above are not). */
    hist_init(&r->commits, commit_le, sizeof(commit_le) / sizeof(commit_le[0]));
    if (query_int(r->db, "PRAGMA wal_autocheckpoint", &ckpt) < 0)
        ckpt = 1000; /* SQLite's default */
    r->wal_autocheckpoint = (int)ckpt;
    sqlite3_commit_hook(r->db, on_commit, r);
    sqlite3_rollback_hook(r->db, on_rollback, r);
    sqlite3_wal_hook(r->db, on_wal, r);
    *out = r;
    r = NULL;
    rc = 0;
out:
    registry_close(r);
    return rc;
}

void registry_close(struct registry *r)
{
    size_t i;

    if (r == NULL)
        return;
    for (i = 0; i < S_COUNT; i++)
        sqlite3_finalize(r->st[i]);
    sqlite3_close(r->db);
    free(r);
}

int registry_check(struct registry *r)
{
    sqlite3_stmt *st = NULL;
    const unsigned char *t;
    int rc = -EIO, n = 0;

    if (r == NULL)
        return -EINVAL;
    if (sqlite3_prepare_v2(r->db, "PRAGMA integrity_check", -1, &st, NULL) != SQLITE_OK)
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
    if (sqlite3_prepare_v2(r->db, "PRAGMA foreign_key_check", -1, &st, NULL) != SQLITE_OK) {
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

int registry_schema_version(struct registry *r)
{
    sqlite3_stmt *st;
    int rc;

    if (r == NULL)
        return -EINVAL;
    st = registry__stmt(r, S_USER_VERSION);
    rc = registry__step(st);
    if (rc == 1)
        rc = sqlite3_column_int(st, 0);
    else if (rc == 0)
        rc = -EIO;
    registry__done(st);
    return rc;
}

int registry__tx_begin(struct registry *r)
{
    return registry__exec(registry__stmt(r, S_BEGIN_IMMEDIATE));
}

int registry__tx_commit(struct registry *r)
{
    return registry__exec(registry__stmt(r, S_COMMIT));
}

/* After SQLITE_FULL, SQLITE_IOERR or SQLITE_NOMEM, SQLite may already have
 * rolled the transaction back by itself; a ROLLBACK then would only fail. */
void registry__tx_rollback(struct registry *r)
{
    if (!sqlite3_get_autocommit(r->db))
        registry__exec(registry__stmt(r, S_ROLLBACK));
}

int registry__tx_end(struct registry *r, int rc)
{
    if (rc == 0)
        rc = registry__tx_commit(r);
    if (rc != 0)
        registry__tx_rollback(r);
    return rc;
}
