/* The registry's PostgreSQL driver (libpq): connect, migrations, the $N statement tables, SQLSTATE
 * mapping, commit timing. */
/* SPDX-License-Identifier: MIT */
#include "db_pg.h"
#include "db_drivers.h"
#include "store_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libpq-fe.h>

#include "common/errmsg.h"
#include "schema_sql.h"

/* Serializes migrations of one database across hubs: 0x54544852, "TTHR",
 * as SQLite's application_id. */
#define MIGRATION_LOCK "1414809682"

/* What marks a database as ours in tether_meta (key 'application'). */
#define APPLICATION "tether-hub"

/* The same statements as db_sqlite.c's tables, in PostgreSQL's words:
 * $N parameters; casts where PostgreSQL cannot infer a parameter's type
 * (NULLIF, CASE, GREATEST, INSERT ... SELECT); GREATEST for the scalar
 * max(); booleans (IS NOT NULL, =) come back as t/f, which col_i64 reads as
 * 1/0. The name columns are COLLATE "C" in schema/pg/, so ORDER BY name is
 * bytewise as in SQLite. Every entry keeps its twin's highest $N
 * (tests/unit/hub/store/test_stmt_tables.c). */
static const char *const stmt_pg[S_COUNT] = {
    [S_BEGIN_IMMEDIATE] = "BEGIN",
    [S_COMMIT] = "COMMIT",
    [S_ROLLBACK] = "ROLLBACK",
    [S_USER_VERSION] = "SELECT value::bigint FROM tether_meta WHERE key = 'schema_version'",
    [S_SITE_CREATE] = "INSERT INTO sites (name, labels, created_at) VALUES ($1, $2, $3)",
    [S_SITE_GET] = "SELECT " REG_SITE_COLS " FROM sites WHERE name = $1",
    [S_SITE_BY_PIN] = "SELECT " REG_SITE_COLS " FROM sites WHERE pin = $1",
    [S_SITE_LIST] = "SELECT " REG_SITE_COLS " FROM sites ORDER BY name",
    [S_SITE_STATE_OF] = "SELECT id, state FROM sites WHERE name = $1",
    [S_SITE_SET_STATE] = "UPDATE sites SET state = $2 "
                         "WHERE name = $1 AND state IN ('active', 'disabled')",
    [S_SITE_REVOKE] = "UPDATE sites SET state = 'revoked', pin = NULL WHERE id = $1",
    [S_SITE_REVOKE_TOKENS] = "UPDATE enroll_tokens SET cancelled_at = $2 "
                             "WHERE site_id = $1 AND used_at IS NULL AND cancelled_at IS NULL",
    [S_SITE_REMOVE] = "DELETE FROM sites WHERE name = $1",
    [S_SITE_SEEN] = "UPDATE sites SET last_seen = $2, agent_version = COALESCE($3, agent_version), "
                    "services = COALESCE($4, services), remote_addr = COALESCE($5, remote_addr) "
                    "WHERE id = $1",
    /* Rows are locked after the sort, so in id order. KEY SHARE is what a
     * DELETE waits for and an UPDATE of other columns does not. */
    [S_SITES_LOCK] = "SELECT id FROM sites WHERE id = ANY($1::bigint[]) ORDER BY id FOR KEY SHARE",
    [S_SITE_ROTATE] = "UPDATE sites SET pin = $3 WHERE id = $1 AND pin = $2",
    [S_SITE_ID_EXISTS] = "SELECT 1 FROM sites WHERE id = $1",
    [S_SITE_SET_LABELS] = "UPDATE sites SET labels = $2 WHERE name = $1",
    [S_SITE_NAME_PIN] = "SELECT name, COALESCE(pin, '') FROM sites WHERE id = $1",
    /* Delivered to every LISTENing connection at the commit, not before,
     * and never for a transaction rolled back (docs/scale-out.md). */
    [S_NOTIFY_SITE] = "SELECT pg_notify('tether_site', $1)",
    [S_NOTIFY_TOKENS] = "SELECT pg_notify('tether_token', $1)",
    [S_NOTIFY_QUERY] = "SELECT pg_notify('tether_query', $1)",
    [S_ENROLL_CREATE] = "INSERT INTO enroll_tokens (site_id, secret_hash, created_at, expires_at) "
                        "SELECT id, $2::text, $3::bigint, $4::bigint FROM sites WHERE name = $1 "
                        "RETURNING id",
    /* The single statement that decides who wins a redeem race: PostgreSQL
     * checks the WHERE clause again after waiting for another redeemer's
     * row lock. */
    [S_ENROLL_USE] = "UPDATE enroll_tokens SET used_at = $2 WHERE secret_hash = $1 "
                     "AND used_at IS NULL AND cancelled_at IS NULL AND expires_at > $2 "
                     "RETURNING site_id",
    [S_ENROLL_STATUS] = "SELECT used_at IS NOT NULL, cancelled_at IS NOT NULL "
                        "FROM enroll_tokens WHERE secret_hash = $1",
    [S_ENROLL_BIND_SITE] = "UPDATE sites SET pin = $2, enrolled_at = $3, "
                           "state = CASE state WHEN 'disabled' THEN 'disabled' ELSE 'active' END "
                           "WHERE id = $1 RETURNING name",
    [S_ENROLL_CANCEL] = "UPDATE enroll_tokens SET cancelled_at = $2 "
                        "WHERE id = $1 AND used_at IS NULL AND cancelled_at IS NULL",
    [S_ENROLL_STATUS_ID] = "SELECT used_at IS NOT NULL FROM enroll_tokens WHERE id = $1",
    [S_ENROLL_LIST] = REG_ENROLL_SELECT " ORDER BY e.id DESC",
    [S_ENROLL_GET] = REG_ENROLL_SELECT " WHERE e.id = $1",
    [S_ENROLL_CANCEL_SITE] = "UPDATE enroll_tokens SET cancelled_at = $2 "
                             "WHERE site_id = (SELECT id FROM sites WHERE name = $1) "
                             "AND used_at IS NULL AND cancelled_at IS NULL",
    [S_API_CREATE] = "INSERT INTO api_tokens (name, role, scope, hash, created_at, expires_at, "
                     "services) VALUES ($1, $2, $3, $4, $5, NULLIF($6::bigint, 0), $7)",
    [S_API_LOOKUP] = "SELECT id, name, role, scope, created_at, COALESCE(expires_at, 0), "
                     "COALESCE(revoked_at, 0), services FROM api_tokens WHERE hash = $1",
    [S_API_REVOKE] = "UPDATE api_tokens SET revoked_at = $2 WHERE name = $1 AND revoked_at IS NULL",
    [S_API_BY_ID] = "SELECT id, name, role, scope, created_at, COALESCE(expires_at, 0), "
                    "COALESCE(revoked_at, 0), services FROM api_tokens WHERE id = $1",
    [S_API_NAME_EXISTS] = "SELECT 1 FROM api_tokens WHERE name = $1 LIMIT 1",
    [S_API_COUNT] = "SELECT count(*) FROM api_tokens",
    [S_API_LIST] = "SELECT id, name, role, scope, created_at, COALESCE(expires_at, 0), "
                   "COALESCE(revoked_at, 0), services FROM api_tokens ORDER BY name, id",
    [S_SESS_OPEN] = "INSERT INTO sessions (site_id, remote_addr, agent_version, connected_at, "
                    "hub_id) VALUES ($1, $2, $3, $4, $5) RETURNING id",
    [S_SESS_CLOSE] = "UPDATE sessions SET disconnected_at = GREATEST($2::bigint, connected_at), "
                     "reason = $3, bytes_in = $4, bytes_out = $5 "
                     "WHERE id = $1 AND disconnected_at IS NULL",
    [S_SESS_EXISTS] = "SELECT 1 FROM sessions WHERE id = $1",
    [S_SESS_CLOSE_STALE] = "UPDATE sessions SET disconnected_at = GREATEST($1::bigint, "
                           "connected_at), reason = $2 WHERE disconnected_at IS NULL "
                           "AND ($3::bigint IS NULL OR hub_id IS NULL OR hub_id = $3)",
    [S_SESS_LIST] = "SELECT id, site_id, remote_addr, agent_version, connected_at, "
                    "COALESCE(disconnected_at, 0), reason, bytes_in, bytes_out FROM sessions "
                    "WHERE site_id = $1 ORDER BY connected_at DESC, id DESC LIMIT $2",
    [S_SESS_AGENT] = "UPDATE sessions SET agent_version = $2 "
                     "WHERE site_id = $1 AND disconnected_at IS NULL",
    [S_SESS_WHERE] = "SELECT COALESCE(hub_id, 0), id FROM sessions "
                     "WHERE site_id = $1 AND disconnected_at IS NULL ORDER BY id DESC LIMIT 1",
    [S_SESS_OPEN_EACH] = "SELECT id, site_id, remote_addr, agent_version, connected_at, "
                         "COALESCE(hub_id, 0) FROM sessions WHERE disconnected_at IS NULL "
                         "AND ($1::bigint = 0 OR site_id = $1) ORDER BY id",
    [S_HUB_INSERT] = "INSERT INTO hubs (name, pin, public, joined_at, seen_at) "
                     "VALUES ($1, $2, $3, $4, $4) RETURNING id",
    [S_HUB_REFRESH] = "UPDATE hubs SET name = $2, public = $3, seen_at = $4, state = 'active' "
                      "WHERE pin = $1 RETURNING id",
    [S_HUB_LIST] = "SELECT id, name, pin, public, joined_at, seen_at FROM hubs "
                   "WHERE state = 'active' ORDER BY id",
    [S_HUB_ACTIVE] = "SELECT count(*) FROM hubs WHERE state = 'active'",
    [S_HUB_LEAVE] = "UPDATE hubs SET state = 'removed', seen_at = $2 "
                    "WHERE pin = $1 AND state = 'active'",
    [S_AUDIT] = "INSERT INTO audit (ts, actor, remote, action, target, result, detail) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7)",
    [S_AUDIT_LIST] = "SELECT id, ts, actor, remote, action, target, result, detail FROM audit "
                     "WHERE id < $1 ORDER BY id DESC LIMIT $2",
};

/* Q_RINSERT's columns, and one row of its values (store_int.h numbers them). */
#define QR_HEAD                                                                                    \
    "INSERT INTO query_results (query_id, site_id, site, status, expires_at, sent_at, detail, "    \
    "finished_at, seq) VALUES "
#define QR_ROW(site_id, site, status, sent_at, detail, finished_at, seq)                           \
    "($1, $" #site_id ", $" #site ", $" #status ", $2, NULLIF($" #sent_at                          \
    "::bigint, 0), $" #detail ", NULLIF($" #finished_at "::bigint, 0), NULLIF($" #seq              \
    "::bigint, 0))"

static const char *const qstmt_pg[Q_NSTMT] = {
    [Q_INSERT] = "INSERT INTO queries (qid, created_at, token_id, actor, remote, target, service, "
                 "method, path, headers, body, timeout_s, ttl_s, expires_at, n_sites, n_final, "
                 "completed_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11::bytea, $12, "
                 "$13, $14, $15, $16, NULLIF($17::bigint, 0)) RETURNING id",
    [Q_RINSERT] = QR_HEAD QR_ROW(3, 4, 5, 6, 7, 8, 9),
    [Q_RINSERT_MANY] = QR_HEAD REG_RINSERT_VALUES(QR_ROW),
    [Q_MARK_SENT] = "UPDATE query_results SET status = 'sent', sent_at = $3, sent_by = $4 "
                    "WHERE query_id = $1 AND site_id = $2 AND status = 'queued'",
    [Q_QUEUED_OF] = "SELECT site_id FROM query_results WHERE query_id = $1 AND status = 'queued'",
    [Q_SENT_ELSEWHERE] = "SELECT r.query_id, r.site_id, r.site, q.qid FROM query_results r "
                         "JOIN queries q ON q.id = r.query_id WHERE r.site_id = $1 "
                         "AND r.status = 'sent' AND r.sent_by <> $2",
    /* The rows a submission inserted as sent are this hub's. */
    [Q_SENT_BY] = "UPDATE query_results SET sent_by = $2 "
                  "WHERE query_id = $1 AND status = 'sent' AND sent_by IS NULL",
    [Q_REQUEUE] = "UPDATE query_results SET status = 'queued', sent_at = NULL, sent_by = NULL "
                  "WHERE query_id = $1 AND site_id = $2 AND status = 'sent' AND "
                  "(SELECT cancelled_at FROM queries WHERE id = $1) IS NULL",
    /* Runs inside a savepoint (see pg_prepare): its CHECK may refuse one
     * result, and the transaction must go on with the others. */
    [Q_FINISH] = "UPDATE query_results SET status = $4, http_status = NULLIF($5::bigint, 0), "
                 "headers = $6, body = $7::bytea, detail = $8, "
                 "latency_ms = NULLIF($9::bigint, -1), finished_at = $10, seq = $11 "
                 "WHERE query_id = $1 AND site_id = $2 AND status = $3",
    /* The query's count, read first (under its row lock) by the finishers
     * of a batch: their seqs follow it. */
    [Q_LOCK_COUNT] = "SELECT n_final FROM queries WHERE id = $1 FOR UPDATE",
    /* Counts the $2 results of a batch that became final, at once. */
    [Q_BUMP_N] = "UPDATE queries SET n_final = n_final + $2, "
                 "completed_at = CASE WHEN n_final + $2 = n_sites THEN $3::bigint ELSE NULL END "
                 "WHERE id = $1 RETURNING n_final = n_sites",
    /* A hub's own, and those no hub is named for (sent before 007). */
    [Q_SENT_LIST] = "SELECT query_id, site_id FROM query_results WHERE status = 'sent' "
                    "AND ($1::bigint IS NULL OR sent_by IS NULL OR sent_by = $1)",
    [Q_EXPIRE_LIST] = "SELECT r.query_id, r.site_id, r.site, q.qid FROM query_results r "
                      "JOIN queries q ON q.id = r.query_id "
                      "WHERE r.status = 'queued' AND r.expires_at < $1 ORDER BY r.expires_at "
                      "LIMIT $2",
    [Q_NEXT_EXPIRY] = "SELECT min(expires_at) FROM query_results WHERE status = 'queued'",
    [Q_QUEUED_SITE] = "SELECT " REG_QCOLS ", q.body FROM query_results r "
                      "JOIN queries q ON q.id = r.query_id WHERE r.site_id = $1 AND "
                      "r.status = 'queued' AND r.expires_at >= $2 ORDER BY r.query_id LIMIT $3",
    [Q_GET] = "SELECT " REG_QCOLS " FROM queries q WHERE q.qid = $1",
    [Q_RESULTS_SITE] = "SELECT " REG_RCOLS " FROM query_results WHERE query_id = $1 ORDER BY site",
    [Q_RESULTS_SEQ] = "SELECT " REG_RCOLS " FROM query_results WHERE query_id = $1 AND seq > $2 "
                      "ORDER BY seq",
    [Q_RESULT_ONE] = "SELECT " REG_RCOLS " FROM query_results WHERE query_id = $1 AND site_id = $2",
    [Q_COUNTS] = "SELECT status, count(*) FROM query_results WHERE query_id = $1 GROUP BY status",
    [Q_LIST_ALL] =
        "SELECT " REG_QCOLS " FROM queries q WHERE q.id < $1 ORDER BY q.id DESC LIMIT $2",
    [Q_LIST_TOKEN] = "SELECT " REG_QCOLS " FROM queries q WHERE q.token_id = $3 AND q.id < $1 "
                     "ORDER BY q.id DESC LIMIT $2",
    [Q_CANCEL_LIST] = "SELECT r.query_id, r.site_id, r.site, q.qid FROM query_results r "
                      "JOIN queries q ON q.id = r.query_id "
                      "WHERE r.query_id = $1 AND r.status = 'queued' ORDER BY r.site",
    [Q_CANCEL_MARK] = "UPDATE queries SET cancelled_at = $2 WHERE id = $1",
    [Q_IS_CANCELLED] = "SELECT cancelled_at IS NOT NULL FROM queries WHERE id = $1",
    [Q_OPEN_COUNTS] = "SELECT (SELECT count(*) FROM query_results WHERE status = 'queued'), "
                      "(SELECT count(*) FROM query_results WHERE status = 'sent')",
};

/* A statement of this driver: its parameters as libpq takes them, and the
 * result being read. The whole result comes back at the first step and the
 * cursor walks it, so a listing's callback may run other statements. */
struct pg_stmt {
    struct reg_stmt base; /* first: the rest of hub/store/ sees only this */
    struct pg_conn *c;
    char name[16];
    char *sql;         /* owned copy, to prepare again after a reconnect */
    unsigned prepared; /* the connection generation it is prepared on */
    int savepoint;     /* inside a transaction, runs in a savepoint */
    enum { K_OTHER, K_BEGIN, K_COMMIT, K_ROLLBACK } kind;
    int nparams; /* highest $N */
    char **vals; /* nparams; owned text copies or borrowed blobs */
    int *lens, *fmts, *owned;
    PGresult *res; /* NULL until the first step */
    int row;       /* current row of res */
    /* Decoded bytea of the current row, one buffer per column, freed when
     * the row moves. */
    unsigned char **blobs;
    int nblobs;
};

/* The connection. */
struct pg_conn {
    PGconn *pc;
    struct registry *r;
    char *url;      /* owned: to connect again */
    unsigned gen;   /* bumped at each (re)connect: statements prepare again */
    unsigned names; /* statement names handed out */
    int64_t changes;
    /* The server said it ends the session (a FATAL notice between
     * statements: shutdown, restart, pg_terminate_backend). */
    int server_gone;
    /* Between our BEGIN and its COMMIT or ROLLBACK: a connection lost
     * meanwhile lost the transaction, and no statement may run on a new
     * connection (it would commit half of it) until the rollback. */
    int in_tx;
};

static struct pg_stmt *pst(struct reg_stmt *st)
{
    return (struct pg_stmt *)st;
}

static struct pg_conn *conn(struct registry *r)
{
    return r->impl;
}

/* --- errors --- */

int registry_pg_map_sqlstate(const char *state, int foreign_key)
{
    if (state == NULL || strlen(state) != 5)
        return -EIO;
    if (strcmp(state, "23505") == 0)
        return -EEXIST;
    if (strcmp(state, "23503") == 0)
        return foreign_key;
    /* Constraints, bad JSON, bad text, values out of range or too long. */
    if (strncmp(state, "23", 2) == 0 || strncmp(state, "22", 2) == 0 || strcmp(state, "54000") == 0)
        return -EINVAL;
    /* Serialization, deadlock, lock_timeout, statement_timeout. */
    if (strcmp(state, "40001") == 0 || strcmp(state, "40P01") == 0 || strcmp(state, "55P03") == 0 ||
        strcmp(state, "57014") == 0)
        return -EBUSY;
    if (strcmp(state, "53100") == 0)
        return -ENOSPC;
    if (strcmp(state, "53200") == 0)
        return -ENOMEM;
    /* Connection failures, and the server shutting down or restarting. */
    if (strncmp(state, "08", 2) == 0 || strcmp(state, "57P01") == 0 ||
        strcmp(state, "57P02") == 0 || strcmp(state, "57P03") == 0)
        return -ENOTCONN;
    return -EIO;
}

void registry__pg_msg(const void *pc, char *out, size_t cap)
{
    const char *m = pc ? PQerrorMessage(pc) : "out of memory";
    size_t n = 0;

    for (; *m != '\0' && n + 1 < cap; m++) {
        if (*m == '\n' || *m == '\t' || *m == '\r') {
            if (n > 0 && out[n - 1] != ' ')
                out[n++] = ' ';
            continue;
        }
        out[n++] = *m;
    }
    while (n > 0 && out[n - 1] == ' ')
        n--;
    out[n] = '\0';
}

/* registry__pg_msg into static storage, valid until the next call. */
static const char *pg_msg(PGconn *pc)
{
    static char line[512];

    registry__pg_msg(pc, line, sizeof(line));
    return line;
}

/* A failed result (or none: out of memory, connection lost) as an errno. */
static int res_rc(PGconn *pc, const PGresult *res, int foreign_key)
{
    if (res == NULL)
        return PQstatus(pc) == CONNECTION_OK ? -ENOMEM : -ENOTCONN;
    if (PQstatus(pc) != CONNECTION_OK)
        return -ENOTCONN;
    return registry_pg_map_sqlstate(PQresultErrorField(res, PG_DIAG_SQLSTATE), foreign_key);
}

static int res_ok(const PGresult *res)
{
    ExecStatusType s = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;

    return s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK;
}

/* Runs sql (no parameters) and discards its result: 0 or the mapped error,
 * with the server's message in err when err is not NULL. */
static int exec_simple(PGconn *pc, const char *sql, char *err, size_t err_cap)
{
    PGresult *res = PQexec(pc, sql);
    int rc = 0;

    if (!res_ok(res)) {
        rc = res_rc(pc, res, -ENOENT);
        if (err != NULL)
            errmsg_set(err, err_cap, "%s", pg_msg(pc));
    }
    PQclear(res);
    return rc;
}

/* The first column of the first row of sql as text into out; -ENOENT for no
 * row, or the mapped error. */
static int query_text(PGconn *pc, const char *sql, char *out, size_t cap)
{
    PGresult *res = PQexec(pc, sql);
    int rc = 0;

    if (!res_ok(res))
        rc = res_rc(pc, res, -ENOENT);
    else if (PQntuples(res) < 1 || PQgetisnull(res, 0, 0))
        rc = -ENOENT;
    else
        snprintf(out, cap, "%s", PQgetvalue(res, 0, 0));
    PQclear(res);
    return rc;
}

static uint64_t mono_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* --- migrations --- */

static int latest_version(void)
{
    return schema_pg_migrations_n ? schema_pg_migrations[schema_pg_migrations_n - 1].version : 0;
}

/* Inside the migration lock: makes tether_meta on an empty database, refuses
 * one that is not ours or newer than this program, and gives the version. */
static int meta_version(PGconn *pc, int64_t *version, char *err, size_t err_cap)
{
    char v[64] = "";
    int rc;

    rc = query_text(pc, "SELECT to_regclass('tether_meta') IS NOT NULL", v, sizeof(v));
    if (rc < 0)
        goto sqlerr;
    if (strcmp(v, "t") != 0) {
        /* No meta table: a database of ours before its first migration, or
         * someone else's, which must not get our tables. */
        rc = query_text(pc,
                        "SELECT count(*) FROM information_schema.tables "
                        "WHERE table_schema = current_schema()",
                        v, sizeof(v));
        if (rc < 0)
            goto sqlerr;
        if (strcmp(v, "0") != 0) {
            errmsg_set(err, err_cap, "not a tether-hub database (foreign tables present)");
            return -EINVAL;
        }
        rc = exec_simple(pc,
                         "CREATE TABLE tether_meta (key text PRIMARY KEY, value text NOT NULL); "
                         "INSERT INTO tether_meta VALUES ('application', '" APPLICATION "'), "
                         "('schema_version', '0')",
                         err, err_cap);
        if (rc < 0)
            return rc;
    }
    rc = query_text(pc, "SELECT value FROM tether_meta WHERE key = 'application'", v, sizeof(v));
    if (rc == -ENOENT || (rc == 0 && strcmp(v, APPLICATION) != 0)) {
        errmsg_set(err, err_cap, "not a tether-hub database (tether_meta application \"%s\")", v);
        return -EINVAL;
    }
    if (rc < 0)
        goto sqlerr;
    rc = query_text(pc, "SELECT value FROM tether_meta WHERE key = 'schema_version'", v, sizeof(v));
    if (rc < 0)
        goto sqlerr;
    *version = strtoll(v, NULL, 10);
    if (*version > latest_version()) {
        errmsg_set(err, err_cap, "database schema %lld is newer than this tether-hub (%d)",
                   (long long)*version, latest_version());
        return -ENOTSUP;
    }
    return 0;
sqlerr:
    errmsg_set(err, err_cap, "%s", pg_msg(pc));
    return rc;
}

/* One migration transaction: under the lock, the version is read again so
 * that hubs opening a fresh database at once never run one twice; m NULL
 * only checks (and on an empty database creates) tether_meta. */
static int migrate_one(PGconn *pc, const struct schema_migration *m, int64_t *version, char *err,
                       size_t err_cap)
{
    char sql[128];
    int rc;

    rc = exec_simple(pc,
                     "BEGIN; SET LOCAL statement_timeout = 0; "
                     "SELECT pg_advisory_xact_lock(" MIGRATION_LOCK ")",
                     err, err_cap);
    if (rc < 0)
        goto out;
    rc = meta_version(pc, version, err, err_cap);
    if (rc < 0 || m == NULL || *version >= m->version)
        goto out;
    rc = exec_simple(pc, m->sql, err, err_cap);
    if (rc < 0)
        goto out;
    snprintf(sql, sizeof(sql), "UPDATE tether_meta SET value = '%d' WHERE key = 'schema_version'",
             m->version);
    rc = exec_simple(pc, sql, err, err_cap);
    if (rc == 0)
        *version = m->version;
out:
    if (rc == 0)
        rc = exec_simple(pc, "COMMIT", err, err_cap);
    if (rc < 0) {
        if (m != NULL && err != NULL) {
            char why[200];

            snprintf(why, sizeof(why), "%s", err);
            errmsg_set(err, err_cap, "migration %s: %s", m->name, why);
        }
        if (PQtransactionStatus(pc) != PQTRANS_IDLE)
            exec_simple(pc, "ROLLBACK", NULL, 0);
    }
    return rc;
}

static int migrate(PGconn *pc, char *err, size_t err_cap)
{
    int64_t version = 0;
    int rc;

    for (size_t i = 1; i < schema_pg_migrations_n; i++) {
        if (schema_pg_migrations[i].version <= schema_pg_migrations[i - 1].version) {
            errmsg_set(err, err_cap, "schema migrations out of order at %s",
                       schema_pg_migrations[i].name);
            return -EINVAL;
        }
    }
    rc = migrate_one(pc, NULL, &version, err, err_cap);
    for (size_t i = 0; rc == 0 && i < schema_pg_migrations_n; i++)
        if (schema_pg_migrations[i].version > version)
            rc = migrate_one(pc, &schema_pg_migrations[i], &version, err, err_cap);
    return rc;
}

/* --- connection --- */

/* Session settings, after each connect: a statement that waits on a lock
 * gives up as SQLite's busy_timeout does, and none runs away. */
#define SESSION_SQL                                                                                \
    "SET lock_timeout = '5s'; SET statement_timeout = '10s'; "                                     \
    "SET idle_in_transaction_session_timeout = '60s'"

/* Ours first: the URL's own parameters, expanded from dbname, win. */
static const char *const connect_keys[] = {"connect_timeout",  "keepalives",
                                           "keepalives_idle",  "keepalives_interval",
                                           "keepalives_count", "tcp_user_timeout",
                                           "application_name", "client_encoding",
                                           "dbname",           NULL};
#define CONNECT_VALS(url)                                                                          \
    {                                                                                              \
        "2", "1", "10", "5", "2", "3000", "tether-hub", "UTF8", (url), NULL                        \
    }

static PGconn *pg_connect(const char *url)
{
    const char *vals[] = CONNECT_VALS(url);

    return PQconnectdbParams(connect_keys, vals, 1);
}

void *registry__pg_connect_start(const char *url)
{
    const char *vals[] = CONNECT_VALS(url);

    return PQconnectStartParams(connect_keys, vals, 1);
}

const char *registry__pg_url(struct registry *r)
{
    return conn(r)->url;
}

int registry__pg_backend_pid(struct registry *r)
{
    struct pg_conn *c = conn(r);

    return c->pc != NULL && PQstatus(c->pc) == CONNECTION_OK ? PQbackendPID(c->pc) : 0;
}

/* libpq's messages outside a result (notices, and the FATAL a server sends
 * an idle session it ends) would go to stderr; the daemon logs only its
 * own lines. A FATAL one means the connection is over. */
static void on_notice(void *arg, const PGresult *res)
{
    struct pg_conn *c = arg;
    const char *sev = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);

    if (sev != NULL && (strcmp(sev, "FATAL") == 0 || strcmp(sev, "PANIC") == 0))
        c->server_gone = 1;
}

/* Connects (again): 0, or -ENOTCONN with the reason in err. */
static int pg_reconnect(struct pg_conn *c, char *err, size_t err_cap)
{
    char enc[32] = "";
    int rc;

    if (c->pc != NULL)
        PQfinish(c->pc);
    c->pc = pg_connect(c->url);
    c->gen++;
    c->server_gone = 0;
    if (c->pc == NULL) {
        errmsg_set(err, err_cap, "out of memory");
        return -ENOMEM;
    }
    PQsetNoticeReceiver(c->pc, on_notice, c);
    if (PQstatus(c->pc) != CONNECTION_OK) {
        errmsg_set(err, err_cap, "cannot connect: %s", pg_msg(c->pc));
        return -ENOTCONN;
    }
    rc = exec_simple(c->pc, SESSION_SQL, err, err_cap);
    if (rc < 0)
        return rc;
    /* Text goes in and out as UTF-8; a database in another encoding would
     * convert it (or refuse it) behind the hub's back. SQL_ASCII stores
     * the bytes as given, as SQLite does. */
    rc = query_text(c->pc, "SHOW server_encoding", enc, sizeof(enc));
    if (rc < 0) {
        errmsg_set(err, err_cap, "%s", pg_msg(c->pc));
        return rc;
    }
    if (strcmp(enc, "UTF8") != 0 && strcmp(enc, "SQL_ASCII") != 0) {
        errmsg_set(err, err_cap, "database encoding %s: create it with ENCODING 'UTF8'", enc);
        return -EINVAL;
    }
    return 0;
}

static void pg_close(struct registry *r)
{
    struct pg_conn *c = r->impl;

    if (c == NULL)
        return;
    if (c->pc != NULL)
        PQfinish(c->pc);
    free(c->url);
    free(c);
    r->impl = NULL;
}

static int pg_open(struct registry *r, const char *url, char *err, size_t err_cap)
{
    struct pg_conn *c = calloc(1, sizeof(*c));
    int rc;

    if (c == NULL) {
        errmsg_set(err, err_cap, "out of memory");
        return -ENOMEM;
    }
    c->r = r;
    r->impl = c;
    c->url = strdup(url);
    if (c->url == NULL) {
        errmsg_set(err, err_cap, "out of memory");
        return -ENOMEM;
    }
    rc = pg_reconnect(c, err, err_cap);
    if (rc < 0)
        return rc;
    rc = migrate(c->pc, err, err_cap);
    if (rc < 0)
        return rc;
    hist_init(&r->commits, registry__commit_le, registry__commit_le_n);
    return 0;
}

/* --- statements --- */

/* The highest $N in sql (outside quotes), which is how many parameters
 * PQexecPrepared gets. */
static int prepare_on(struct pg_stmt *st)
{
    PGresult *res;
    int rc = 0;

    res = PQprepare(st->c->pc, st->name, st->sql, 0, NULL);
    if (!res_ok(res))
        rc = res_rc(st->c->pc, res, -ENOENT);
    else
        st->prepared = st->c->gen;
    PQclear(res);
    return rc;
}

static int pg_prepare(struct registry *r, const char *sql, struct reg_stmt **out)
{
    struct pg_conn *c = conn(r);
    struct pg_stmt *st = calloc(1, sizeof(*st));
    int rc = -ENOMEM, n;

    *out = NULL;
    if (st == NULL)
        return -ENOMEM;
    st->base.drv = &registry__pg;
    st->c = c;
    snprintf(st->name, sizeof(st->name), "t%u", ++c->names);
    /* A CHECK may refuse a finish, and finish_many goes on with the other
     * results: PostgreSQL aborts a whole transaction on an error, so this
     * one statement gets a savepoint to roll back to (SQLite undoes only
     * the failed statement by itself). */
    st->savepoint = strcmp(sql, qstmt_pg[Q_FINISH]) == 0;
    st->kind = strcmp(sql, "BEGIN") == 0      ? K_BEGIN
               : strcmp(sql, "COMMIT") == 0   ? K_COMMIT
               : strcmp(sql, "ROLLBACK") == 0 ? K_ROLLBACK
                                              : K_OTHER;
    n = registry_max_param(sql, '$');
    st->nparams = n;
    st->sql = strdup(sql);
    st->vals = calloc((size_t)n + 1, sizeof(*st->vals));
    st->lens = calloc((size_t)n + 1, sizeof(*st->lens));
    st->fmts = calloc((size_t)n + 1, sizeof(*st->fmts));
    st->owned = calloc((size_t)n + 1, sizeof(*st->owned));
    if (st->sql == NULL || st->vals == NULL || st->lens == NULL || st->fmts == NULL ||
        st->owned == NULL)
        goto out;
    rc = prepare_on(st);
out:
    if (rc < 0) {
        free(st->sql);
        free(st->vals);
        free(st->lens);
        free(st->fmts);
        free(st->owned);
        free(st);
        return rc;
    }
    *out = &st->base;
    return 0;
}

static void free_blobs(struct pg_stmt *st)
{
    for (int i = 0; i < st->nblobs; i++) {
        free(st->blobs[i]);
        st->blobs[i] = NULL;
    }
}

static void clear_result(struct pg_stmt *st)
{
    free_blobs(st);
    PQclear(st->res);
    st->res = NULL;
    st->row = 0;
}

static void clear_param(struct pg_stmt *st, int i)
{
    if (st->owned[i])
        free(st->vals[i]);
    st->vals[i] = NULL;
    st->lens[i] = 0;
    st->fmts[i] = 0;
    st->owned[i] = 0;
}

static void pg_reset(struct reg_stmt *base, int clear_bindings)
{
    struct pg_stmt *st = pst(base);

    clear_result(st);
    if (clear_bindings)
        for (int i = 0; i < st->nparams; i++)
            clear_param(st, i);
}

static void pg_finalize(struct reg_stmt *base)
{
    struct pg_stmt *st = pst(base);
    char sql[40];

    pg_reset(base, 1);
    /* The statement outlives nothing but its connection; a registry that
     * stays open drops it from the server too. */
    if (st->c->pc != NULL && PQstatus(st->c->pc) == CONNECTION_OK && st->prepared == st->c->gen &&
        PQtransactionStatus(st->c->pc) == PQTRANS_IDLE) {
        snprintf(sql, sizeof(sql), "DEALLOCATE %s", st->name);
        exec_simple(st->c->pc, sql, NULL, 0);
    }
    free(st->blobs);
    free(st->sql);
    free(st->vals);
    free(st->lens);
    free(st->fmts);
    free(st->owned);
    free(st);
}

static int set_param(struct pg_stmt *st, int idx, char *v, int len, int fmt, int owned)
{
    if (idx < 1 || idx > st->nparams) {
        if (owned)
            free(v);
        return -EINVAL;
    }
    clear_param(st, idx - 1);
    st->vals[idx - 1] = v;
    st->lens[idx - 1] = len;
    st->fmts[idx - 1] = fmt;
    st->owned[idx - 1] = owned;
    return 0;
}

static int pg_bind_null(struct reg_stmt *base, int idx)
{
    return set_param(pst(base), idx, NULL, 0, 0, 0);
}

static int pg_bind_i64(struct reg_stmt *base, int idx, int64_t v)
{
    char *s = malloc(24);

    if (s == NULL)
        return -ENOMEM;
    snprintf(s, 24, "%lld", (long long)v);
    return set_param(pst(base), idx, s, 0, 0, 1);
}

/* Length of the valid UTF-8 sequence at s (n bytes left), or 0. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    size_t len, i;
    uint32_t cp;

    if (s[0] < 0x80)
        return 1;
    if (s[0] >= 0xc2 && s[0] <= 0xdf) {
        len = 2;
        cp = s[0] & 0x1f;
    } else if (s[0] >= 0xe0 && s[0] <= 0xef) {
        len = 3;
        cp = s[0] & 0x0f;
    } else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
        len = 4;
        cp = s[0] & 0x07;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    /* Overlong forms, surrogates, past U+10FFFF. */
    if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10ffff ||
        (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

/* PostgreSQL refuses text that is not UTF-8 where SQLite stores any bytes;
 * the registry's text comes from the network in places (agent version,
 * addresses, reasons, audit detail) and is cut, never refused
 * (docs/registry.md). So a byte that starts no valid sequence becomes '?'
 * (one byte for one: a length already cut to a bound stays in it). */
static int pg_bind_text(struct reg_stmt *base, int idx, const char *s, size_t len)
{
    const unsigned char *u = (const unsigned char *)s;
    char *copy;
    size_t i = 0, k;

    if (len > (size_t)0x3fffffff)
        return -EINVAL;
    copy = malloc(len + 1);
    if (copy == NULL)
        return -ENOMEM;
    while (i < len) {
        k = u[i] == 0 ? 0 : utf8_seq(u + i, len - i);
        if (k == 0) {
            copy[i++] = '?';
            continue;
        }
        memcpy(copy + i, s + i, k);
        i += k;
    }
    copy[len] = '\0';
    return set_param(pst(base), idx, copy, 0, 0, 1);
}

/* Binary format: the bytes as they are, no escaping. */
static int pg_bind_blob(struct reg_stmt *base, int idx, const void *b, size_t len)
{
    if (len > (size_t)0x3fffffff)
        return -EINVAL;
    return set_param(pst(base), idx, (char *)(len ? b : ""), (int)len, 1, 0);
}

static int is_write(const PGresult *res)
{
    const char *tag = PQcmdStatus((PGresult *)res);

    return strncmp(tag, "INSERT", 6) == 0 || strncmp(tag, "UPDATE", 6) == 0 ||
           strncmp(tag, "DELETE", 6) == 0;
}

/* The connection broke (the server restarted, the network failed):
 * outside a transaction, one new connection; the statements prepare again
 * on it when next run. Inside one, the transaction is lost anyway: the
 * error goes up, and the caller's rollback ends it. */
static void maybe_reconnect(struct pg_conn *c)
{
    if (c->pc != NULL && PQstatus(c->pc) == CONNECTION_OK && !c->server_gone)
        return;
    pg_reconnect(c, NULL, 0);
}

static int run(struct pg_stmt *st, int foreign_key)
{
    struct pg_conn *c = st->c;
    PGTransactionStatusType ts;
    uint64_t t0;
    int rc = 0, sp = 0, timed;

    /* Between transactions, read what the server sent meanwhile: a server
     * that restarted or ended the session has closed it (57P01 and EOF),
     * and the statement then goes to a new connection instead of failing
     * on the dead one. Nothing was sent yet, so nothing can run twice. */
    if (!c->in_tx && PQstatus(c->pc) == CONNECTION_OK &&
        PQtransactionStatus(c->pc) == PQTRANS_IDLE && PQconsumeInput(c->pc))
        (void)PQisBusy(c->pc); /* parses it: a FATAL reaches on_notice */
    if (PQstatus(c->pc) != CONNECTION_OK || c->server_gone) {
        if (st->kind == K_ROLLBACK && c->in_tx) {
            c->in_tx = 0; /* the server ended it with the connection */
            return 0;
        }
        if (c->in_tx)
            return -ENOTCONN;
        maybe_reconnect(c);
        if (PQstatus(c->pc) != CONNECTION_OK)
            return -ENOTCONN;
    }
    if (st->kind == K_COMMIT || st->kind == K_ROLLBACK)
        c->in_tx = 0;
    ts = PQtransactionStatus(c->pc);
    if (st->prepared != c->gen) {
        rc = prepare_on(st);
        if (rc < 0)
            return rc;
    }
    if (st->savepoint && ts == PQTRANS_INTRANS) {
        rc = exec_simple(c->pc, "SAVEPOINT tether_stmt", NULL, 0);
        if (rc < 0)
            return rc;
        sp = 1;
    }
    /* A COMMIT, or a write that commits by itself, is timed. */
    timed = ts == PQTRANS_IDLE || st->kind == K_COMMIT;
    t0 = mono_ns();
    st->res = PQexecPrepared(c->pc, st->name, st->nparams, (const char *const *)st->vals, st->lens,
                             st->fmts, 0);
    if (!res_ok(st->res)) {
        rc = res_rc(c->pc, st->res, foreign_key);
        clear_result(st);
        if (sp) {
            exec_simple(c->pc, "ROLLBACK TO SAVEPOINT tether_stmt; RELEASE SAVEPOINT tether_stmt",
                        NULL, 0);
        }
        return rc;
    }
    if (is_write(st->res)) {
        c->changes = strtoll(PQcmdTuples(st->res), NULL, 10);
        if (timed)
            hist_observe(&c->r->commits, (double)(mono_ns() - t0) / 1e9);
    } else if (st->kind == K_COMMIT) {
        hist_observe(&c->r->commits, (double)(mono_ns() - t0) / 1e9);
    }
    if (st->kind == K_BEGIN)
        c->in_tx = 1;
    if (sp && exec_simple(c->pc, "RELEASE SAVEPOINT tether_stmt", NULL, 0) < 0) {
        clear_result(st);
        return -EIO;
    }
    if (st->nblobs < PQnfields(st->res)) {
        unsigned char **nb = realloc(st->blobs, sizeof(*nb) * (size_t)PQnfields(st->res));

        if (nb == NULL) {
            clear_result(st);
            return -ENOMEM;
        }
        for (int i = st->nblobs; i < PQnfields(st->res); i++)
            nb[i] = NULL;
        st->blobs = nb;
        st->nblobs = PQnfields(st->res);
    }
    st->row = -1;
    return 0;
}

static int pg_step(struct reg_stmt *base, int foreign_key)
{
    struct pg_stmt *st = pst(base);
    int rc;

    if (st->res == NULL) {
        rc = run(st, foreign_key);
        if (rc < 0)
            return rc;
    }
    free_blobs(st);
    if (st->row + 1 >= PQntuples(st->res)) {
        st->row = PQntuples(st->res);
        return 0;
    }
    st->row++;
    return 1;
}

static int on_row(struct pg_stmt *st, int col)
{
    return st->res != NULL && st->row >= 0 && st->row < PQntuples(st->res) && col >= 0 &&
           col < PQnfields(st->res);
}

static int pg_col_null(struct reg_stmt *base, int col)
{
    struct pg_stmt *st = pst(base);

    return !on_row(st, col) || PQgetisnull(st->res, st->row, col);
}

static int64_t pg_col_i64(struct reg_stmt *base, int col)
{
    struct pg_stmt *st = pst(base);
    const char *v;

    if (pg_col_null(base, col))
        return 0;
    v = PQgetvalue(st->res, st->row, col);
    /* Booleans (IS NOT NULL, a = b) read as SQLite's 1 and 0. */
    if (v[0] == 't' && v[1] == '\0')
        return 1;
    if (v[0] == 'f' && v[1] == '\0')
        return 0;
    return strtoll(v, NULL, 10);
}

static const char *pg_col_text(struct reg_stmt *base, int col)
{
    struct pg_stmt *st = pst(base);

    if (pg_col_null(base, col))
        return NULL;
    return PQgetvalue(st->res, st->row, col);
}

static int hexval(int ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* bytea comes back in text form, "\x" and two hex digits a byte
 * (bytea_output = hex, the default since PostgreSQL 9.0). */
static const void *pg_col_blob(struct reg_stmt *base, int col, size_t *len)
{
    struct pg_stmt *st = pst(base);
    const char *v;
    size_t n;
    unsigned char *b;

    *len = 0;
    if (pg_col_null(base, col))
        return NULL;
    v = PQgetvalue(st->res, st->row, col);
    n = strlen(v);
    if (n < 2 || v[0] != '\\' || v[1] != 'x' || n % 2 != 0)
        return NULL;
    if (st->blobs[col] == NULL) {
        b = malloc(n / 2 > 0 ? n / 2 : 1);
        if (b == NULL)
            return NULL;
        for (size_t i = 2; i < n; i += 2) {
            int hi = hexval(v[i]), lo = hexval(v[i + 1]);

            if (hi < 0 || lo < 0) {
                free(b);
                return NULL;
            }
            b[i / 2 - 1] = (unsigned char)(hi << 4 | lo);
        }
        st->blobs[col] = b;
    }
    *len = n / 2 - 1;
    /* SQLite gives NULL for a zero-length blob; so does this. */
    return *len ? st->blobs[col] : NULL;
}

static int64_t pg_changes(struct registry *r)
{
    return conn(r)->changes;
}

static int pg_in_tx(struct registry *r)
{
    PGTransactionStatusType ts = PQtransactionStatus(conn(r)->pc);

    return conn(r)->in_tx || ts == PQTRANS_INTRANS || ts == PQTRANS_INERROR || ts == PQTRANS_ACTIVE;
}

/* The server answers and the database is still ours, at a version this
 * program knows. PostgreSQL checks its own pages (checksums, WAL); there is
 * no integrity_check to run. */
static int pg_check(struct registry *r)
{
    struct pg_conn *c = conn(r);
    char v[64] = "";

    if (!c->in_tx)
        maybe_reconnect(c);
    if (query_text(c->pc, "SELECT 1", v, sizeof(v)) < 0 || strcmp(v, "1") != 0)
        return -EIO;
    if (query_text(c->pc, "SELECT value FROM tether_meta WHERE key = 'application'", v, sizeof(v)) <
            0 ||
        strcmp(v, APPLICATION) != 0)
        return -EIO;
    if (query_text(c->pc, "SELECT value FROM tether_meta WHERE key = 'schema_version'", v,
                   sizeof(v)) < 0 ||
        strtoll(v, NULL, 10) != latest_version())
        return -EIO;
    return 0;
}

/* A relaxed commit returns before its WAL record is flushed: it survives a
 * crash of the hub (the server has it), maybe not one of the server. */
static int pg_set_relaxed(struct registry *r, int relaxed)
{
    struct pg_conn *c = conn(r);

    if (!c->in_tx)
        maybe_reconnect(c);
    return exec_simple(
        c->pc, relaxed ? "SET synchronous_commit = off" : "SET synchronous_commit = on", NULL, 0);
}

const struct registry_driver registry__pg = {
    .name = "postgresql",
    .sql = stmt_pg,
    .qsql = qstmt_pg,
    .open = pg_open,
    .close = pg_close,
    .prepare = pg_prepare,
    .finalize = pg_finalize,
    .reset = pg_reset,
    .bind_null = pg_bind_null,
    .bind_i64 = pg_bind_i64,
    .bind_text = pg_bind_text,
    .bind_blob = pg_bind_blob,
    .step = pg_step,
    .col_null = pg_col_null,
    .col_i64 = pg_col_i64,
    .col_text = pg_col_text,
    .col_blob = pg_col_blob,
    .changes = pg_changes,
    .in_tx = pg_in_tx,
    .check = pg_check,
    .set_relaxed = pg_set_relaxed,
};
