/* The hub's SQLite registry: one database file, compiled-in migrations, cached statements. */
/* SPDX-License-Identifier: MIT */
#include "registry.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "schema_sql.h"

/* "TTHR": marks a file as ours, so a foreign SQLite database is refused
 * instead of having our tables added to it. */
#define REGISTRY_APP_ID 0x54544852

#define BUSY_TIMEOUT_MS 5000

/* Free-text fields are cut to these byte counts (at a UTF-8 boundary) rather
 * than refused: a long error string must never cost an audit row or a session
 * record. The schema CHECKs the same bounds. */
#define AUDIT_FIELD_MAX  255
#define AUDIT_DETAIL_MAX 4096

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
    [S_API_CREATE] = "INSERT INTO api_tokens (name, role, scope, hash, created_at, expires_at) "
                     "VALUES (?1, ?2, ?3, ?4, ?5, NULLIF(?6, 0))",
    [S_API_LOOKUP] = "SELECT id, name, role, scope, created_at, COALESCE(expires_at, 0), "
                     "COALESCE(revoked_at, 0) FROM api_tokens WHERE hash = ?1",
    [S_API_REVOKE] = "UPDATE api_tokens SET revoked_at = ?2 WHERE name = ?1 AND revoked_at IS NULL",
    [S_API_NAME_EXISTS] = "SELECT 1 FROM api_tokens WHERE name = ?1 LIMIT 1",
    [S_API_COUNT] = "SELECT count(*) FROM api_tokens",
    [S_API_LIST] = "SELECT id, name, role, scope, created_at, COALESCE(expires_at, 0), "
                   "COALESCE(revoked_at, 0) FROM api_tokens ORDER BY name, id",
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

struct registry {
    sqlite3 *db;
    sqlite3_stmt *st[S_COUNT];
};

struct sqlite3 *registry_db(struct registry *r)
{
    return r->db;
}

static void set_err(char *err, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t cap, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL || cap == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, cap, fmt, ap);
    va_end(ap);
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

/* Here a foreign key names a site that does not exist (any more). */
static int map_rc(int rc)
{
    return registry_map_rc(rc, -ENOENT);
}

static sqlite3_stmt *stmt(struct registry *r, enum stmt_id id)
{
    sqlite3_stmt *st = r->st[id];

    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return st;
}

/* Resets so the statement holds no read snapshot once we are done with it. */
static void done(sqlite3_stmt *st)
{
    sqlite3_reset(st);
}

/* Steps a statement that returns no row we need; 0 or mapped error. */
static int exec_stmt(sqlite3_stmt *st)
{
    int rc;

    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        ;
    rc = map_rc(rc == SQLITE_DONE ? SQLITE_DONE : sqlite3_extended_errcode(sqlite3_db_handle(st)));
    sqlite3_reset(st);
    return rc;
}

/* Steps once: 1 row, 0 none, <0 error. The statement is left positioned. */
static int step_row(sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);

    if (rc == SQLITE_ROW)
        return 1;
    if (rc == SQLITE_DONE)
        return 0;
    return map_rc(sqlite3_extended_errcode(sqlite3_db_handle(st)));
}

static int bind_text(sqlite3_stmt *st, int idx, const char *s)
{
    if (s == NULL)
        return sqlite3_bind_null(st, idx) == SQLITE_OK ? 0 : -EIO;
    return sqlite3_bind_text(st, idx, s, -1, SQLITE_STATIC) == SQLITE_OK ? 0 : -EIO;
}

/* Binds at most max bytes of s (NULL = ""), cut back to a UTF-8 boundary. */
static int bind_text_cut(sqlite3_stmt *st, int idx, const char *s, size_t max)
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

static void copy_col(sqlite3_stmt *st, int col, char *dst, size_t cap)
{
    const unsigned char *t = sqlite3_column_text(st, col);

    snprintf(dst, cap, "%s", t ? (const char *)t : "");
}

static int dup_col(sqlite3_stmt *st, int col, char **dst)
{
    const unsigned char *t = sqlite3_column_text(st, col);

    *dst = strdup(t ? (const char *)t : "");
    return *dst ? 0 : -ENOMEM;
}

static int empty(const char *s)
{
    return s == NULL || s[0] == '\0';
}

void registry_site_clear(struct reg_site *s)
{
    if (s == NULL)
        return;
    free(s->labels_json);
    free(s->services_json);
    memset(s, 0, sizeof(*s));
}

void registry_apitoken_clear(struct reg_apitoken *t)
{
    if (t == NULL)
        return;
    free(t->scope_json);
    memset(t, 0, sizeof(*t));
}

/* Runs one statement outside the cache and returns its first integer column. */
static int query_int(sqlite3 *db, const char *sql, int64_t *out)
{
    sqlite3_stmt *st = NULL;
    int rc;

    rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    if (rc != SQLITE_OK)
        return map_rc(sqlite3_extended_errcode(db));
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *out = sqlite3_column_int64(st, 0);
        rc = 0;
    } else if (rc == SQLITE_DONE) {
        rc = -ENOENT;
    } else {
        rc = map_rc(sqlite3_extended_errcode(db));
    }
    sqlite3_finalize(st);
    return rc;
}

/* Runs one statement outside the cache and returns its first text column. */
static int query_text(sqlite3 *db, const char *sql, char *out, size_t cap)
{
    sqlite3_stmt *st = NULL;
    int rc;

    rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    if (rc != SQLITE_OK)
        return map_rc(sqlite3_extended_errcode(db));
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        copy_col(st, 0, out, cap);
        rc = 0;
    } else if (rc == SQLITE_DONE) {
        rc = -ENOENT;
    } else {
        rc = map_rc(sqlite3_extended_errcode(db));
    }
    sqlite3_finalize(st);
    return rc;
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
        rc = map_rc(sqlite3_extended_errcode(db));
        set_err(err, err_cap, "migration %s: %s", m->name, msg ? msg : "cannot lock");
        goto out;
    }
    in_tx = 1;
    if (query_int(db, "PRAGMA user_version", &uv) < 0 ||
        query_int(db, "PRAGMA application_id", &app_id) < 0) {
        set_err(err, err_cap, "migration %s: %s", m->name, sqlite3_errmsg(db));
        goto out;
    }
    if (uv >= m->version) {
        rc = 0;
        goto commit;
    }
    if (uv == 0 && app_id == 0) {
        snprintf(sql, sizeof(sql), "PRAGMA application_id = %d", REGISTRY_APP_ID);
        if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
            set_err(err, err_cap, "migration %s: %s", m->name, msg ? msg : "?");
            goto out;
        }
    }
    if (sqlite3_exec(db, m->sql, NULL, NULL, &msg) != SQLITE_OK) {
        rc = map_rc(sqlite3_extended_errcode(db));
        set_err(err, err_cap, "migration %s: %s", m->name, msg ? msg : "?");
        goto out;
    }
    /* Foreign keys are off while migrating, so a migration may rebuild a
     * parent table (create, copy, drop, rename) without cascading deletes;
     * what it leaves behind must still be consistent. */
    rc = query_int(db, "PRAGMA foreign_key_check", &fk_bad);
    if (rc != -ENOENT) {
        set_err(err, err_cap, "migration %s: %s", m->name,
                rc == 0 ? "leaves foreign key violations" : sqlite3_errmsg(db));
        rc = -EIO;
        goto out;
    }
    snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", m->version);
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        set_err(err, err_cap, "migration %s: %s", m->name, msg ? msg : "?");
        goto out;
    }
    rc = 0;
commit:
    if (sqlite3_exec(db, "COMMIT", NULL, NULL, &msg) != SQLITE_OK) {
        rc = map_rc(sqlite3_extended_errcode(db));
        set_err(err, err_cap, "migration %s: commit: %s", m->name, msg ? msg : "?");
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
    int latest = latest_version();

    if (query_int(db, "PRAGMA user_version", &uv) < 0 ||
        query_int(db, "PRAGMA application_id", &app_id) < 0 ||
        query_int(db, "SELECT count(*) FROM sqlite_schema", &n_tables) < 0) {
        set_err(err, err_cap, "%s: %s", path, sqlite3_errmsg(db));
        return map_rc(sqlite3_extended_errcode(db));
    }
    if (app_id != 0 && app_id != REGISTRY_APP_ID) {
        set_err(err, err_cap, "%s: not a tether-hub database (application_id %lld)", path,
                (long long)app_id);
        return -EINVAL;
    }
    if (app_id == 0 && (uv != 0 || n_tables != 0)) {
        set_err(err, err_cap, "%s: not a tether-hub database (foreign tables present)", path);
        return -EINVAL;
    }
    if (uv > latest) {
        set_err(err, err_cap, "database schema %lld is newer than this tether-hub (%d)",
                (long long)uv, latest);
        return -ENOTSUP;
    }
    *uv_out = uv;
    return 0;
}

int registry_open(const char *path, struct registry **out, char *err, size_t err_cap)
{
    struct registry *r = NULL;
    char mode[16];
    int64_t fk = 0, uv = 0;
    int rc = -EIO, src, waited;
    size_t i;

    set_err(err, err_cap, "%s", "");
    if (path == NULL || out == NULL) {
        set_err(err, err_cap, "registry_open: no path");
        return -EINVAL;
    }
    *out = NULL;
    for (i = 1; i < schema_migrations_n; i++) {
        if (schema_migrations[i].version <= schema_migrations[i - 1].version) {
            set_err(err, err_cap, "schema migrations out of order at %s",
                    schema_migrations[i].name);
            return -EINVAL;
        }
    }
    r = calloc(1, sizeof(*r));
    if (r == NULL) {
        set_err(err, err_cap, "out of memory");
        return -ENOMEM;
    }
    precreate_private(path);
    /* NOMUTEX: a handle and its cached statements serve one thread at a time. */
    src = sqlite3_open_v2(path, &r->db,
                          SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (src != SQLITE_OK) {
        int sys = r->db ? sqlite3_system_errno(r->db) : 0;

        set_err(err, err_cap, "%s: %s", path, r->db ? sqlite3_errmsg(r->db) : "out of memory");
        rc = sys > 0 ? -sys : -EIO;
        goto out;
    }
    sqlite3_extended_result_codes(r->db, 1);
    sqlite3_busy_timeout(r->db, BUSY_TIMEOUT_MS);

    /* The first read of the file: this is where "not a database" shows.
     * Switching to WAL needs an exclusive lock that SQLite does not wait for
     * (no busy handler), so two processes creating the file at once retry. */
    for (waited = 0;; waited += 10) {
        rc = query_text(r->db, "PRAGMA journal_mode = WAL", mode, sizeof(mode));
        if (rc != -EBUSY || waited >= BUSY_TIMEOUT_MS)
            break;
        usleep(10 * 1000);
    }
    if (rc < 0) {
        set_err(err, err_cap, "%s: %s", path, sqlite3_errmsg(r->db));
        goto out;
    }
    if (strcmp(mode, "wal") != 0 &&
        !(strcmp(mode, "memory") == 0 && strcmp(path, ":memory:") == 0)) {
        set_err(err, err_cap, "%s: cannot use WAL journal (got \"%s\")", path, mode);
        rc = -EIO;
        goto out;
    }
    /* A lost revoke or enrollment after power loss is a security event, so
     * commits are durable rather than merely consistent. */
    if (sqlite3_exec(r->db, "PRAGMA synchronous = FULL; PRAGMA foreign_keys = OFF", NULL, NULL,
                     NULL) != SQLITE_OK) {
        set_err(err, err_cap, "%s: %s", path, sqlite3_errmsg(r->db));
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
        set_err(err, err_cap, "%s: cannot enable foreign keys", path);
        rc = -EIO;
        goto out;
    }
    for (i = 0; i < S_COUNT; i++) {
        if (sqlite3_prepare_v3(r->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &r->st[i],
                               NULL) != SQLITE_OK) {
            set_err(err, err_cap, "%s: prepare: %s", path, sqlite3_errmsg(r->db));
            rc = -EIO;
            goto out;
        }
    }
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
    st = stmt(r, S_USER_VERSION);
    rc = step_row(st);
    if (rc == 1)
        rc = sqlite3_column_int(st, 0);
    else if (rc == 0)
        rc = -EIO;
    done(st);
    return rc;
}

static int tx_begin(struct registry *r)
{
    return exec_stmt(stmt(r, S_BEGIN_IMMEDIATE));
}

static int tx_commit(struct registry *r)
{
    return exec_stmt(stmt(r, S_COMMIT));
}

/* After SQLITE_FULL, SQLITE_IOERR or SQLITE_NOMEM, SQLite may already have
 * rolled the transaction back by itself; a ROLLBACK then would only fail. */
static void tx_rollback(struct registry *r)
{
    if (!sqlite3_get_autocommit(r->db))
        exec_stmt(stmt(r, S_ROLLBACK));
}

/* ---- sites ---- */

static int site_from_row(sqlite3_stmt *st, struct reg_site *s)
{
    int rc;

    memset(s, 0, sizeof(*s));
    s->id = sqlite3_column_int64(st, 0);
    copy_col(st, 1, s->name, sizeof(s->name));
    copy_col(st, 2, s->state, sizeof(s->state));
    copy_col(st, 3, s->pin, sizeof(s->pin));
    rc = dup_col(st, 4, &s->labels_json);
    if (rc == 0)
        rc = dup_col(st, 5, &s->services_json);
    copy_col(st, 6, s->agent_version, sizeof(s->agent_version));
    copy_col(st, 7, s->remote_addr, sizeof(s->remote_addr));
    s->created_at = sqlite3_column_int64(st, 8);
    s->enrolled_at = sqlite3_column_int64(st, 9);
    s->last_seen = sqlite3_column_int64(st, 10);
    if (rc < 0)
        registry_site_clear(s);
    return rc;
}

int registry_site_create(struct registry *r, const char *name, const char *labels_json, int64_t now)
{
    sqlite3_stmt *st;

    if (r == NULL || empty(name))
        return -EINVAL;
    st = stmt(r, S_SITE_CREATE);
    if (bind_text(st, 1, name) < 0 ||
        bind_text(st, 2, empty(labels_json) ? "{}" : labels_json) < 0 ||
        sqlite3_bind_int64(st, 3, now) != SQLITE_OK) {
        done(st);
        return -EIO;
    }
    return exec_stmt(st);
}

static int site_get_by(struct registry *r, enum stmt_id id, const char *key, struct reg_site *out)
{
    sqlite3_stmt *st;
    int rc;

    if (out == NULL)
        return -EINVAL;
    memset(out, 0, sizeof(*out));
    if (r == NULL || empty(key))
        return -EINVAL;
    st = stmt(r, id);
    rc = bind_text(st, 1, key);
    if (rc == 0)
        rc = step_row(st);
    if (rc == 1)
        rc = site_from_row(st, out);
    else if (rc == 0)
        rc = -ENOENT;
    done(st);
    return rc;
}

int registry_site_get(struct registry *r, const char *name, struct reg_site *out)
{
    return site_get_by(r, S_SITE_GET, name, out);
}

int registry_site_by_pin(struct registry *r, const char *pin, struct reg_site *out)
{
    return site_get_by(r, S_SITE_BY_PIN, pin, out);
}

int registry_site_list(struct registry *r, registry_site_cb cb, void *arg)
{
    struct reg_site s;
    sqlite3_stmt *st;
    int rc;

    if (r == NULL || cb == NULL)
        return -EINVAL;
    /* The cached cursor cannot serve a nested listing from inside cb. */
    if (sqlite3_stmt_busy(r->st[S_SITE_LIST]))
        return -EBUSY;
    st = stmt(r, S_SITE_LIST);
    while ((rc = step_row(st)) == 1) {
        rc = site_from_row(st, &s);
        if (rc < 0)
            break;
        rc = cb(&s, arg);
        registry_site_clear(&s);
        if (rc != 0)
            break;
    }
    done(st);
    return rc;
}

/* Classifies a failed conditional UPDATE on a site by name. */
static int site_state_of(struct registry *r, const char *name, int64_t *id, char state[16])
{
    sqlite3_stmt *st = stmt(r, S_SITE_STATE_OF);
    int rc = bind_text(st, 1, name);

    if (rc == 0)
        rc = step_row(st);
    if (rc == 1) {
        if (id)
            *id = sqlite3_column_int64(st, 0);
        if (state)
            copy_col(st, 1, state, 16);
        rc = 0;
    } else if (rc == 0) {
        rc = -ENOENT;
    }
    done(st);
    return rc;
}

int registry_site_set_state(struct registry *r, const char *name, const char *state)
{
    sqlite3_stmt *st;
    int rc;

    if (r == NULL || empty(name) || state == NULL ||
        (strcmp(state, "active") != 0 && strcmp(state, "disabled") != 0))
        return -EINVAL;
    st = stmt(r, S_SITE_SET_STATE);
    if (bind_text(st, 1, name) < 0 || bind_text(st, 2, state) < 0) {
        done(st);
        return -EIO;
    }
    rc = exec_stmt(st);
    if (rc < 0)
        return rc;
    if (sqlite3_changes(r->db) == 1)
        return 0;
    /* Not changed: either no such site, or it is pending/revoked (no key to use). */
    rc = site_state_of(r, name, NULL, NULL);
    return rc < 0 ? rc : -EINVAL;
}

int registry_site_revoke(struct registry *r, const char *name)
{
    sqlite3_stmt *st;
    int64_t id = 0;
    int rc;

    if (r == NULL || empty(name))
        return -EINVAL;
    rc = tx_begin(r);
    if (rc < 0)
        return rc;
    rc = site_state_of(r, name, &id, NULL);
    if (rc < 0)
        goto out;
    st = stmt(r, S_SITE_REVOKE);
    sqlite3_bind_int64(st, 1, id);
    rc = exec_stmt(st);
    if (rc < 0)
        goto out;
    /* Tokens issued before the revoke must not bring the site back. */
    st = stmt(r, S_SITE_REVOKE_TOKENS);
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_int64(st, 2, (int64_t)time(NULL));
    rc = exec_stmt(st);
    if (rc < 0)
        goto out;
    rc = tx_commit(r);
out:
    if (rc < 0)
        tx_rollback(r);
    return rc;
}

int registry_site_remove(struct registry *r, const char *name)
{
    sqlite3_stmt *st;
    int rc;

    if (r == NULL || empty(name))
        return -EINVAL;
    st = stmt(r, S_SITE_REMOVE);
    if (bind_text(st, 1, name) < 0) {
        done(st);
        return -EIO;
    }
    rc = exec_stmt(st);
    if (rc == 0 && sqlite3_changes(r->db) == 0)
        rc = -ENOENT;
    return rc;
}

int registry_site_seen(struct registry *r, int64_t site_id, int64_t last_seen,
                       const char *agent_version, const char *services_json,
                       const char *remote_addr)
{
    sqlite3_stmt *st;
    int rc = 0;

    if (r == NULL)
        return -EINVAL;
    st = stmt(r, S_SITE_SEEN);
    sqlite3_bind_int64(st, 1, site_id);
    sqlite3_bind_int64(st, 2, last_seen);
    /* Agent version and address come from the network: cut, never refuse. */
    if (agent_version)
        rc |=
            bind_text_cut(st, 3, agent_version, sizeof(((struct reg_site *)0)->agent_version) - 1);
    rc |= bind_text(st, 4, services_json);
    if (remote_addr)
        rc |= bind_text_cut(st, 5, remote_addr, sizeof(((struct reg_site *)0)->remote_addr) - 1);
    if (rc != 0) {
        done(st);
        return -EIO;
    }
    if (agent_version == NULL) {
        rc = exec_stmt(st);
        if (rc == 0 && sqlite3_changes(r->db) == 0)
            rc = -ENOENT;
        return rc;
    }
    /* Two rows change: one transaction, one commit (one fsync). */
    rc = tx_begin(r);
    if (rc < 0) {
        done(st);
        return rc;
    }
    rc = exec_stmt(st);
    if (rc == 0 && sqlite3_changes(r->db) == 0)
        rc = -ENOENT;
    if (rc == 0) {
        st = stmt(r, S_SESS_AGENT);
        sqlite3_bind_int64(st, 1, site_id);
        if (bind_text_cut(st, 2, agent_version,
                          sizeof(((struct reg_session *)0)->agent_version) - 1) < 0) {
            done(st);
            rc = -EIO;
        } else {
            rc = exec_stmt(st);
        }
    }
    if (rc == 0)
        rc = tx_commit(r);
    if (rc < 0)
        tx_rollback(r);
    return rc;
}

int registry_site_set_labels(struct registry *r, const char *name, const char *labels_json)
{
    sqlite3_stmt *st;
    int rc;

    if (r == NULL || empty(name) || empty(labels_json))
        return -EINVAL;
    st = stmt(r, S_SITE_SET_LABELS);
    if (bind_text(st, 1, name) < 0 || bind_text(st, 2, labels_json) < 0) {
        done(st);
        return -EIO;
    }
    rc = exec_stmt(st); /* not a JSON object: CHECK -> -EINVAL */
    if (rc == 0 && sqlite3_changes(r->db) == 0)
        rc = -ENOENT;
    return rc;
}

static int site_id_exists(struct registry *r, int64_t id)
{
    sqlite3_stmt *st = stmt(r, S_SITE_ID_EXISTS);
    int rc;

    sqlite3_bind_int64(st, 1, id);
    rc = step_row(st);
    done(st);
    return rc;
}

int registry_site_rotate_pin(struct registry *r, int64_t site_id, const char *old_pin,
                             const char *new_pin)
{
    sqlite3_stmt *st;
    int rc;

    if (r == NULL || empty(old_pin) || empty(new_pin))
        return -EINVAL;
    st = stmt(r, S_SITE_ROTATE);
    sqlite3_bind_int64(st, 1, site_id);
    if (bind_text(st, 2, old_pin) < 0 || bind_text(st, 3, new_pin) < 0) {
        done(st);
        return -EIO;
    }
    rc = exec_stmt(st);
    if (rc < 0)
        return rc;
    if (sqlite3_changes(r->db) == 1)
        return 0;
    /* No site with this id holds old_pin (unknown, or rotated meanwhile). */
    rc = site_id_exists(r, site_id);
    return rc < 0 ? rc : -ENOENT;
}

/* ---- enrollment tokens ---- */

int registry_enroll_create(struct registry *r, const char *site, const char *secret_hash,
                           int64_t expires_at, int64_t now, int64_t *id_out)
{
    sqlite3_stmt *st;
    int rc;

    if (id_out)
        *id_out = 0;
    if (r == NULL || empty(site) || empty(secret_hash))
        return -EINVAL;
    st = stmt(r, S_ENROLL_CREATE);
    if (bind_text(st, 1, site) < 0 || bind_text(st, 2, secret_hash) < 0) {
        done(st);
        return -EIO;
    }
    sqlite3_bind_int64(st, 3, now);
    sqlite3_bind_int64(st, 4, expires_at);
    rc = exec_stmt(st);
    if (rc < 0)
        return rc;
    if (sqlite3_changes(r->db) == 0)
        return -ENOENT;
    if (id_out)
        *id_out = sqlite3_last_insert_rowid(r->db);
    return 0;
}

int registry_enroll_reissue(struct registry *r, const char *site, const char *secret_hash,
                            int64_t expires_at, int64_t now, int64_t *id_out)
{
    sqlite3_stmt *st;
    int rc;

    if (id_out)
        *id_out = 0;
    if (r == NULL || empty(site) || empty(secret_hash))
        return -EINVAL;
    rc = tx_begin(r);
    if (rc < 0)
        return rc;
    st = stmt(r, S_ENROLL_CANCEL_SITE);
    if (bind_text(st, 1, site) < 0) {
        done(st);
        rc = -EIO;
        goto out;
    }
    sqlite3_bind_int64(st, 2, now);
    rc = exec_stmt(st);
    if (rc == 0)
        rc = registry_enroll_create(r, site, secret_hash, expires_at, now, id_out);
    if (rc == 0)
        rc = tx_commit(r);
out:
    if (rc < 0) {
        tx_rollback(r);
        if (id_out)
            *id_out = 0;
    }
    return rc;
}

static void enroll_from_row(sqlite3_stmt *st, struct reg_enroll *e)
{
    memset(e, 0, sizeof(*e));
    e->id = sqlite3_column_int64(st, 0);
    copy_col(st, 1, e->site, sizeof(e->site));
    e->created_at = sqlite3_column_int64(st, 2);
    e->expires_at = sqlite3_column_int64(st, 3);
    e->used_at = sqlite3_column_int64(st, 4);
    e->cancelled_at = sqlite3_column_int64(st, 5);
}

int registry_enroll_get(struct registry *r, int64_t id, struct reg_enroll *out)
{
    sqlite3_stmt *st;
    int rc;

    if (out)
        memset(out, 0, sizeof(*out));
    if (r == NULL || out == NULL)
        return -EINVAL;
    st = stmt(r, S_ENROLL_GET);
    sqlite3_bind_int64(st, 1, id);
    rc = step_row(st);
    if (rc == 1) {
        enroll_from_row(st, out);
        rc = 0;
    } else if (rc == 0) {
        rc = -ENOENT;
    }
    done(st);
    return rc;
}

/* Why a token could not be used: it was checked under the same write lock. */
static int enroll_why_not(struct registry *r, const char *secret_hash)
{
    sqlite3_stmt *st = stmt(r, S_ENROLL_STATUS);
    int rc = bind_text(st, 1, secret_hash);

    if (rc == 0)
        rc = step_row(st);
    if (rc == 0)
        rc = -ENOENT;
    else if (rc == 1 && sqlite3_column_int(st, 0))
        rc = -EALREADY;
    else if (rc == 1 && sqlite3_column_int(st, 1))
        rc = -ECANCELED;
    else if (rc == 1)
        rc = -ETIMEDOUT;
    done(st);
    return rc;
}

int registry_enroll_redeem(struct registry *r, const char *secret_hash, const char *pin,
                           int64_t now, char site_out[TOKEN_NAME_MAX + 1])
{
    sqlite3_stmt *st;
    int64_t site_id = 0;
    int rc, bound = 0;

    if (site_out)
        site_out[0] = '\0';
    if (r == NULL || empty(secret_hash) || empty(pin))
        return -EINVAL;
    /* IMMEDIATE takes the write lock first, so the check and both updates
     * see one state of the file, whichever process or handle gets there. */
    rc = tx_begin(r);
    if (rc < 0)
        return rc;
    st = stmt(r, S_ENROLL_USE);
    rc = bind_text(st, 1, secret_hash);
    sqlite3_bind_int64(st, 2, now);
    if (rc == 0)
        rc = step_row(st);
    if (rc == 1)
        site_id = sqlite3_column_int64(st, 0);
    if (rc == 1)
        rc = exec_stmt(st); /* finish the RETURNING statement */
    else
        done(st);
    if (rc < 0)
        goto out;
    if (site_id == 0) {
        rc = enroll_why_not(r, secret_hash);
        goto out;
    }
    st = stmt(r, S_ENROLL_BIND_SITE);
    sqlite3_bind_int64(st, 1, site_id);
    rc = bind_text(st, 2, pin);
    sqlite3_bind_int64(st, 3, now);
    if (rc == 0)
        rc = step_row(st);
    if (rc == 1) {
        bound = 1;
        if (site_out)
            copy_col(st, 0, site_out, TOKEN_NAME_MAX + 1);
        rc = exec_stmt(st);
    } else {
        done(st);
    }
    if (rc == 0 && !bound)
        rc = -ENOENT;
    if (rc < 0)
        goto out;
    rc = tx_commit(r);
out:
    if (rc < 0) {
        tx_rollback(r);
        if (site_out)
            site_out[0] = '\0';
    }
    return rc;
}

int registry_enroll_cancel(struct registry *r, int64_t id)
{
    sqlite3_stmt *st;
    int rc;

    if (r == NULL)
        return -EINVAL;
    st = stmt(r, S_ENROLL_CANCEL);
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_int64(st, 2, (int64_t)time(NULL));
    rc = exec_stmt(st);
    if (rc < 0 || sqlite3_changes(r->db) == 1)
        return rc;
    /* Cancelling twice is fine; cancelling a used token is not possible. */
    st = stmt(r, S_ENROLL_STATUS_ID);
    sqlite3_bind_int64(st, 1, id);
    rc = step_row(st);
    if (rc == 0)
        rc = -ENOENT;
    else if (rc == 1)
        rc = sqlite3_column_int(st, 0) ? -EALREADY : 0;
    done(st);
    return rc;
}

int registry_enroll_list(struct registry *r, registry_enroll_cb cb, void *arg)
{
    struct reg_enroll e;
    sqlite3_stmt *st;
    int rc;

    if (r == NULL || cb == NULL)
        return -EINVAL;
    if (sqlite3_stmt_busy(r->st[S_ENROLL_LIST]))
        return -EBUSY;
    st = stmt(r, S_ENROLL_LIST);
    while ((rc = step_row(st)) == 1) {
        enroll_from_row(st, &e);
        rc = cb(&e, arg);
        if (rc != 0)
            break;
    }
    done(st);
    return rc;
}

/* ---- API tokens ---- */

int registry_apitoken_create(struct registry *r, const char *name, const char *role,
                             const char *scope_json, const char *hash, int64_t expires_at,
                             int64_t now)
{
    sqlite3_stmt *st;

    if (r == NULL || empty(name) || empty(role) || empty(hash) || expires_at < 0)
        return -EINVAL;
    st = stmt(r, S_API_CREATE);
    if (bind_text(st, 1, name) < 0 || bind_text(st, 2, role) < 0 ||
        bind_text(st, 3, empty(scope_json) ? NULL : scope_json) < 0 || bind_text(st, 4, hash) < 0) {
        done(st);
        return -EIO;
    }
    sqlite3_bind_int64(st, 5, now);
    sqlite3_bind_int64(st, 6, expires_at);
    return exec_stmt(st);
}

/* Columns of S_API_LOOKUP / S_API_LIST; t->scope_json is allocated. */
static int apitoken_from_row(sqlite3_stmt *st, struct reg_apitoken *t)
{
    memset(t, 0, sizeof(*t));
    t->id = sqlite3_column_int64(st, 0);
    copy_col(st, 1, t->name, sizeof(t->name));
    copy_col(st, 2, t->role, sizeof(t->role));
    t->created_at = sqlite3_column_int64(st, 4);
    t->expires_at = sqlite3_column_int64(st, 5);
    t->revoked_at = sqlite3_column_int64(st, 6);
    if (sqlite3_column_type(st, 3) != SQLITE_NULL)
        return dup_col(st, 3, &t->scope_json);
    return 0;
}

int registry_apitoken_list(struct registry *r, registry_apitoken_cb cb, void *arg)
{
    struct reg_apitoken t;
    sqlite3_stmt *st;
    int rc;

    if (r == NULL || cb == NULL)
        return -EINVAL;
    if (sqlite3_stmt_busy(r->st[S_API_LIST]))
        return -EBUSY;
    st = stmt(r, S_API_LIST);
    while ((rc = step_row(st)) == 1) {
        rc = apitoken_from_row(st, &t);
        if (rc == 0)
            rc = cb(&t, arg);
        registry_apitoken_clear(&t);
        if (rc != 0)
            break;
    }
    done(st);
    return rc;
}

int registry_apitoken_lookup(struct registry *r, const char *hash, int64_t now,
                             struct reg_apitoken *out)
{
    struct reg_apitoken t;
    sqlite3_stmt *st;
    int rc;

    if (out)
        memset(out, 0, sizeof(*out));
    if (r == NULL || empty(hash) || out == NULL)
        return -EINVAL;
    memset(&t, 0, sizeof(t));
    st = stmt(r, S_API_LOOKUP);
    rc = bind_text(st, 1, hash);
    if (rc == 0)
        rc = step_row(st);
    if (rc == 0)
        rc = -ENOENT;
    if (rc < 0)
        goto out;
    rc = apitoken_from_row(st, &t);
    if (rc < 0)
        goto out;
    if (t.revoked_at != 0)
        rc = -EKEYREVOKED;
    else if (t.expires_at != 0 && now >= t.expires_at)
        rc = -EKEYEXPIRED;
    else
        rc = 0;
out:
    done(st);
    if (rc == 0)
        *out = t;
    else
        registry_apitoken_clear(&t);
    return rc;
}

int registry_apitoken_revoke(struct registry *r, const char *name, int64_t now)
{
    sqlite3_stmt *st;
    int rc;

    if (r == NULL || empty(name))
        return -EINVAL;
    st = stmt(r, S_API_REVOKE);
    if (bind_text(st, 1, name) < 0) {
        done(st);
        return -EIO;
    }
    sqlite3_bind_int64(st, 2, now);
    rc = exec_stmt(st);
    if (rc < 0 || sqlite3_changes(r->db) > 0)
        return rc;
    /* Only revoked tokens carry this name: nothing left to revoke. */
    st = stmt(r, S_API_NAME_EXISTS);
    rc = bind_text(st, 1, name);
    if (rc == 0)
        rc = step_row(st);
    done(st);
    if (rc < 0)
        return rc;
    return rc == 1 ? -EALREADY : -ENOENT;
}

int registry_apitoken_count(struct registry *r, int64_t *count)
{
    sqlite3_stmt *st;
    int rc;

    if (count)
        *count = 0;
    if (r == NULL || count == NULL)
        return -EINVAL;
    st = stmt(r, S_API_COUNT);
    rc = step_row(st);
    if (rc == 1) {
        *count = sqlite3_column_int64(st, 0);
        rc = 0;
    } else if (rc == 0) {
        rc = -EIO;
    }
    done(st);
    return rc;
}

/* ---- sessions ---- */

#define SESS_ADDR_MAX   (sizeof(((struct reg_session *)0)->remote_addr) - 1)
#define SESS_AGENT_MAX  (sizeof(((struct reg_session *)0)->agent_version) - 1)
#define SESS_REASON_MAX (sizeof(((struct reg_session *)0)->reason) - 1)

int registry_session_open(struct registry *r, int64_t site_id, const char *remote_addr,
                          const char *agent_version, int64_t now, int64_t *id_out)
{
    sqlite3_stmt *st;
    int rc;

    if (id_out)
        *id_out = 0;
    if (r == NULL)
        return -EINVAL;
    st = stmt(r, S_SESS_OPEN);
    sqlite3_bind_int64(st, 1, site_id);
    if (bind_text_cut(st, 2, remote_addr, SESS_ADDR_MAX) < 0 ||
        bind_text_cut(st, 3, agent_version, SESS_AGENT_MAX) < 0) {
        done(st);
        return -EIO;
    }
    sqlite3_bind_int64(st, 4, now);
    rc = exec_stmt(st); /* unknown site_id: FOREIGN KEY -> -ENOENT */
    if (rc == 0 && id_out)
        *id_out = sqlite3_last_insert_rowid(r->db);
    return rc;
}

int registry_session_close(struct registry *r, int64_t session_id, int64_t now, const char *reason,
                           int64_t bytes_in, int64_t bytes_out)
{
    sqlite3_stmt *st;
    int rc;

    if (r == NULL || bytes_in < 0 || bytes_out < 0)
        return -EINVAL;
    st = stmt(r, S_SESS_CLOSE);
    sqlite3_bind_int64(st, 1, session_id);
    sqlite3_bind_int64(st, 2, now);
    if (bind_text_cut(st, 3, reason, SESS_REASON_MAX) < 0) {
        done(st);
        return -EIO;
    }
    sqlite3_bind_int64(st, 4, bytes_in);
    sqlite3_bind_int64(st, 5, bytes_out);
    rc = exec_stmt(st);
    if (rc < 0 || sqlite3_changes(r->db) == 1)
        return rc;
    st = stmt(r, S_SESS_EXISTS);
    sqlite3_bind_int64(st, 1, session_id);
    rc = step_row(st);
    done(st);
    if (rc < 0)
        return rc;
    return rc == 1 ? -EALREADY : -ENOENT;
}

int registry_session_close_stale(struct registry *r, int64_t now, const char *reason)
{
    sqlite3_stmt *st;

    if (r == NULL)
        return -EINVAL;
    st = stmt(r, S_SESS_CLOSE_STALE);
    sqlite3_bind_int64(st, 1, now);
    if (bind_text_cut(st, 2, reason, SESS_REASON_MAX) < 0) {
        done(st);
        return -EIO;
    }
    return exec_stmt(st);
}

int registry_session_list(struct registry *r, int64_t site_id, int limit, registry_session_cb cb,
                          void *arg)
{
    struct reg_session s;
    sqlite3_stmt *st;
    int rc;

    if (r == NULL || cb == NULL || limit <= 0)
        return -EINVAL;
    if (sqlite3_stmt_busy(r->st[S_SESS_LIST]))
        return -EBUSY;
    st = stmt(r, S_SESS_LIST);
    sqlite3_bind_int64(st, 1, site_id);
    sqlite3_bind_int(st, 2, limit);
    while ((rc = step_row(st)) == 1) {
        memset(&s, 0, sizeof(s));
        s.id = sqlite3_column_int64(st, 0);
        s.site_id = sqlite3_column_int64(st, 1);
        copy_col(st, 2, s.remote_addr, sizeof(s.remote_addr));
        copy_col(st, 3, s.agent_version, sizeof(s.agent_version));
        s.connected_at = sqlite3_column_int64(st, 4);
        s.disconnected_at = sqlite3_column_int64(st, 5);
        copy_col(st, 6, s.reason, sizeof(s.reason));
        s.bytes_in = sqlite3_column_int64(st, 7);
        s.bytes_out = sqlite3_column_int64(st, 8);
        rc = cb(&s, arg);
        if (rc != 0)
            break;
    }
    done(st);
    return rc;
}

/* ---- audit ---- */

static int audit_insert(struct registry *r, int64_t ts, const char *actor, const char *remote,
                        const char *action, const char *target, const char *result,
                        const char *detail)
{
    sqlite3_stmt *st;
    int rc = 0;

    st = stmt(r, S_AUDIT);
    sqlite3_bind_int64(st, 1, ts);
    rc |= bind_text_cut(st, 2, actor, AUDIT_FIELD_MAX);
    rc |= bind_text_cut(st, 3, remote, AUDIT_FIELD_MAX);
    rc |= bind_text_cut(st, 4, action, AUDIT_FIELD_MAX);
    rc |= bind_text_cut(st, 5, target, AUDIT_FIELD_MAX);
    rc |= bind_text_cut(st, 6, result, AUDIT_FIELD_MAX);
    rc |= bind_text_cut(st, 7, detail, AUDIT_DETAIL_MAX);
    if (rc != 0) {
        done(st);
        return -EIO;
    }
    return exec_stmt(st);
}

int registry_audit(struct registry *r, int64_t ts, const char *actor, const char *remote,
                   const char *action, const char *target, const char *result, const char *detail)
{
    if (r == NULL || actor == NULL || empty(action) || result == NULL)
        return -EINVAL;
    return audit_insert(r, ts, actor, remote, action, target, result, detail);
}

int registry_audit_relaxed(struct registry *r, int64_t ts, const char *actor, const char *remote,
                           const char *action, const char *target, const char *result,
                           const char *detail)
{
    int rc;

    if (r == NULL || actor == NULL || empty(action) || result == NULL)
        return -EINVAL;
    /* The synchronous level is read when a statement is compiled, so these
     * PRAGMAs are prepared each time rather than cached. In WAL mode NORMAL
     * still survives a crash of the process; only an OS crash or power cut
     * may lose the last rows. */
    if (sqlite3_exec(r->db, "PRAGMA synchronous = NORMAL", NULL, NULL, NULL) != SQLITE_OK)
        return map_rc(sqlite3_extended_errcode(r->db));
    rc = audit_insert(r, ts, actor, remote, action, target, result, detail);
    /* FULL again for everything else; if even that fails, say so. */
    if (sqlite3_exec(r->db, "PRAGMA synchronous = FULL", NULL, NULL, NULL) != SQLITE_OK && rc == 0)
        rc = map_rc(sqlite3_extended_errcode(r->db));
    return rc;
}

int registry_audit_list(struct registry *r, int64_t before_id, int limit, registry_audit_cb cb,
                        void *arg)
{
    struct reg_audit a;
    sqlite3_stmt *st;
    int rc;

    if (r == NULL || cb == NULL || limit <= 0 || before_id < 0)
        return -EINVAL;
    if (sqlite3_stmt_busy(r->st[S_AUDIT_LIST]))
        return -EBUSY;
    st = stmt(r, S_AUDIT_LIST);
    sqlite3_bind_int64(st, 1, before_id > 0 ? before_id : INT64_MAX);
    sqlite3_bind_int(st, 2, limit);
    while ((rc = step_row(st)) == 1) {
        memset(&a, 0, sizeof(a));
        a.id = sqlite3_column_int64(st, 0);
        a.ts = sqlite3_column_int64(st, 1);
        copy_col(st, 2, a.actor, sizeof(a.actor));
        copy_col(st, 3, a.remote, sizeof(a.remote));
        copy_col(st, 4, a.action, sizeof(a.action));
        copy_col(st, 5, a.target, sizeof(a.target));
        copy_col(st, 6, a.result, sizeof(a.result));
        copy_col(st, 7, a.detail, sizeof(a.detail));
        rc = cb(&a, arg);
        if (rc != 0)
            break;
    }
    done(st);
    return rc;
}
