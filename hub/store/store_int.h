/* Internal to hub/store/: statement ids, the database driver seam, the helpers the table files
 * share. */
/* SPDX-License-Identifier: MIT */
#ifndef TETHER_STORE_INT_H
#define TETHER_STORE_INT_H

/* Only the .c files of hub/store/ include this header (tools/check-layers.sh
 * enforces it). Public names are registry_*; internal ones registry__*, as in
 * libuv. */

#include <stddef.h>
#include <stdint.h>

#include "../../common/hist.h"
#include "registry.h"

/* One prepared statement per job, all prepared by registry_open() (their SQL
 * is the driver's table, db_sqlite.c or db_pg.c) and reused: a call resets and binds,
 * never prepares. */
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
    S_SITES_LOCK,
    S_SITE_ROTATE,
    S_SITE_ID_EXISTS,
    S_SITE_SET_LABELS,
    S_SITE_NAME_PIN,
    S_NOTIFY_SITE,
    S_NOTIFY_TOKENS,
    S_NOTIFY_QUERY,
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
    S_SESS_WHERE,
    S_SESS_OPEN_EACH,
    S_HUB_INSERT,
    S_HUB_REFRESH,
    S_HUB_LIST,
    S_HUB_ACTIVE,
    S_HUB_LEAVE,
    S_AUDIT,
    S_AUDIT_LIST,
    S_COUNT
};

/* The statements of the query store (queries.c), prepared by
 * registry_query_open() from the driver's second table. */
enum qstmt {
    Q_INSERT,
    Q_RINSERT,
    Q_RINSERT_MANY,
    Q_MARK_SENT,
    Q_SENT_BY,
    Q_QUEUED_OF,
    Q_SENT_ELSEWHERE,
    Q_REQUEUE,
    Q_FINISH,
    Q_LOCK_COUNT,
    Q_BUMP_N,
    Q_SENT_LIST,
    Q_EXPIRE_LIST,
    Q_NEXT_EXPIRY,
    Q_QUEUED_SITE,
    Q_GET,
    Q_RESULTS_SITE,
    Q_RESULTS_SEQ,
    Q_RESULT_ONE,
    Q_COUNTS,
    Q_LIST_ALL,
    Q_LIST_TOKEN,
    Q_CANCEL_LIST,
    Q_CANCEL_MARK,
    Q_IS_CANCELLED,
    Q_OPEN_COUNTS,
    Q_NSTMT
};

/* Rows of one Q_RINSERT_MANY. Both drivers number its parameters alike:
 * query_id ?1 and expires_at ?2 for every row, then seven per row (site_id,
 * site, status, sent_at, detail, finished_at, seq) from ?3; Q_RINSERT is
 * its first row alone. */
#define REG_RINSERT_ROWS 8
/* The values of Q_RINSERT_MANY, ROW(site_id, site, status, sent_at,
 * detail, finished_at, seq) being a driver's row with those parameters. */
/* clang-format off */
#define REG_RINSERT_VALUES(ROW) \
    ROW(3, 4, 5, 6, 7, 8, 9) ", " \
    ROW(10, 11, 12, 13, 14, 15, 16) ", " \
    ROW(17, 18, 19, 20, 21, 22, 23) ", " \
    ROW(24, 25, 26, 27, 28, 29, 30) ", " \
    ROW(31, 32, 33, 34, 35, 36, 37) ", " \
    ROW(38, 39, 40, 41, 42, 43, 44) ", " \
    ROW(45, 46, 47, 48, 49, 50, 51) ", " \
    ROW(52, 53, 54, 55, 56, 57, 58)
/* clang-format on */

/* Column lists both drivers' tables select, in the order their readers
 * take them (site_from_row in sites.c; read_query and read_result in
 * queries.c). Portable SQL. */
#define REG_SITE_COLS                                                                              \
    "id, name, state, COALESCE(pin, ''), labels, services, agent_version, remote_addr, "           \
    "created_at, COALESCE(enrolled_at, 0), COALESCE(last_seen, 0)"

/* One enrollment token and its site's name (S_ENROLL_LIST, S_ENROLL_GET). */
#define REG_ENROLL_SELECT                                                                          \
    "SELECT e.id, s.name, e.created_at, e.expires_at, COALESCE(e.used_at, 0), "                    \
    "COALESCE(e.cancelled_at, 0) FROM enroll_tokens e JOIN sites s ON s.id = e.site_id"

#define REG_QCOLS                                                                                  \
    "q.id, q.qid, q.created_at, q.token_id, q.actor, q.remote, q.target, q.service, q.method, "    \
    "q.path, q.headers, q.timeout_s, q.ttl_s, q.expires_at, q.n_sites, q.n_final, "                \
    "COALESCE(q.completed_at, 0), COALESCE(q.cancelled_at, 0)"

#define REG_RCOLS                                                                                  \
    "query_id, site_id, site, status, COALESCE(http_status, 0), headers, body, detail, "           \
    "COALESCE(latency_ms, -1), COALESCE(sent_at, 0), COALESCE(finished_at, 0), COALESCE(seq, 0)"

/* Commit latency buckets, in seconds, of every driver (so that the
 * backends' /metrics compare): a WAL commit with fsync takes a fraction of
 * a millisecond on an SSD, tens of milliseconds on a busy disk; a writer
 * waiting for another's lock up to the lock timeout. */
extern const double registry__commit_le[];
extern const size_t registry__commit_le_n;

/* A prepared statement. Each driver embeds this as the first member of its
 * own statement struct; the rest of hub/store/ sees only this part. */
struct reg_stmt {
    const struct registry_driver *drv;
    /* A cursor is open: a row was returned and the statement was not yet
     * run to its end or reset. A cached listing statement cannot serve a
     * nested listing from inside its own callback. */
    int busy;
};

/* A database backend, under the registry__* helpers below: the only code
 * in hub/store/ that knows which database is in use. Statement calls
 * return 0 or a negative errno unless said otherwise. */
struct registry_driver {
    const char *name;
    /* SQL of every statement, indexed by enum stmt_id and enum qstmt. */
    const char *const *sql;
    const char *const *qsql;
    /* Opens or creates the database at path, applies the migrations, and
     * sets r->impl (the driver's own, freed by close). From then on the
     * driver times every committed write transaction into r->commits.
     * On failure *err gets a one-line message. */
    int (*open)(struct registry *r, const char *path, char *err, size_t err_cap);
    void (*close)(struct registry *r);
    int (*prepare)(struct registry *r, const char *sql, struct reg_stmt **out);
    void (*finalize)(struct reg_stmt *st);
    /* Ends the statement's execution; clear_bindings: also unbinds. */
    void (*reset)(struct reg_stmt *st, int clear_bindings);
    int (*bind_null)(struct reg_stmt *st, int idx);
    int (*bind_i64)(struct reg_stmt *st, int idx, int64_t v);
    /* len bytes of s (not NUL-terminated), borrowed until the reset. */
    int (*bind_text)(struct reg_stmt *st, int idx, const char *s, size_t len);
    /* len bytes of b (len 0: an empty value, not NULL), borrowed alike. */
    int (*bind_blob)(struct reg_stmt *st, int idx, const void *b, size_t len);
    /* 1 row, 0 done, or the mapped error, a foreign-key violation becoming
     * foreign_key. */
    int (*step)(struct reg_stmt *st, int foreign_key);
    /* Columns of the current row; a NULL reads as 0 / NULL. Text and blob
     * pointers are valid until the statement moves. */
    int (*col_null)(struct reg_stmt *st, int col);
    int64_t (*col_i64)(struct reg_stmt *st, int col);
    const char *(*col_text)(struct reg_stmt *st, int col);
    const void *(*col_blob)(struct reg_stmt *st, int col, size_t *len);
    /* Rows changed by the last INSERT, UPDATE or DELETE run to its end. */
    int64_t (*changes)(struct registry *r);
    /* 1 while a transaction is open (the database may end one by itself
     * after an I/O error). */
    int (*in_tx)(struct registry *r);
    /* registry_check(): 0 or -EIO. */
    int (*check)(struct registry *r);
    /* relaxed 1: the next commits need not wait for the disk (they survive
     * a crash of the hub, maybe not a power cut); 0: durable again. */
    int (*set_relaxed)(struct registry *r, int relaxed);
    /* registry_write_gen(); NULL: the database may change under other
     * processes' hands, so nothing read from it may be cached. */
    int (*write_gen)(struct registry *r, uint64_t *gen);
};

/* SQLite (db_sqlite.c), the default, and PostgreSQL (db_pg.c, when built
 * with libpq), chosen by registry_open() from its argument. */
extern const struct registry_driver registry__sqlite;
#ifdef TETHER_HAVE_PG
extern const struct registry_driver registry__pg;
#endif

/* Owns the driver's connection (impl) and every statement in st[]. */
struct registry {
    const struct registry_driver *drv;
    void *impl;
    struct reg_stmt *st[S_COUNT];
    /* Write transactions' commits, as the driver times them. */
    struct hist commits;
    /* Transactions begun and not ended (registry__tx_begin nests). */
    int tx_depth;
    /* This hub's row in hubs (registry_use_hub), 0 when not set. */
    int64_t hub_id;
};

/* Prepares sql on r's connection into *out (freed by registry__finalize). */
int registry__prepare(struct registry *r, const char *sql, struct reg_stmt **out);
void registry__finalize(struct reg_stmt *st);

/* Resets st and clears its bindings; returns st. */
struct reg_stmt *registry__reset(struct reg_stmt *st);
/* The cached statement id, reset and with its bindings cleared (borrowed). */
struct reg_stmt *registry__stmt(struct registry *r, enum stmt_id id);
/* Resets so the statement holds no read snapshot once we are done with it. */
void registry__done(struct reg_stmt *st);
/* 1 while a row of st is open (see struct reg_stmt). */
int registry__busy(const struct reg_stmt *st);

/* Steps a statement that returns no row we need, then resets it; 0 or the
 * mapped error, a foreign-key violation becoming foreign_key. */
int registry__exec_fk(struct reg_stmt *st, int foreign_key);
/* Steps once: 1 row, 0 none, <0 mapped error. The statement is left positioned. */
int registry__step_fk(struct reg_stmt *st, int foreign_key);
/* The same with a foreign-key violation meaning -ENOENT. */
int registry__exec(struct reg_stmt *st);
int registry__step(struct reg_stmt *st);
/* Reads the one row of an aggregate SELECT: its first n integer columns into
 * out. 0, -EIO without a row, or the mapped error. Resets st. */
int registry__row_i64(struct reg_stmt *st, int64_t *out, int n);
/* Runs an INSERT ... RETURNING id to its end: 1 with *id set, 0 when it
 * inserted nothing, or the mapped error. Resets st. */
int registry__insert_id(struct reg_stmt *st, int foreign_key, int64_t *id);
/* Inside a transaction: takes the rows of sites ids[0..n) (any order,
 * repeats allowed) in id order, as a DELETE of one of them would wait for.
 * A transaction that touches sessions rows before their site's row (the
 * recorder's batches) takes its sites first: a site's removal, which locks
 * the site and then deletes its sessions, would otherwise deadlock with it.
 * 0 or the mapped error; ids is the caller's. */
int registry__lock_sites(struct registry *r, const int64_t *ids, size_t n);
/* Binds this hub's id (registry_use_hub) at idx, or NULL when not set. */
void registry__bind_hub(struct registry *r, struct reg_stmt *st, int idx);
/* Rows changed by r's last INSERT, UPDATE or DELETE. */
int64_t registry__changes(struct registry *r);

/* Inside the transaction of a change other hubs must hear of (notes.c):
 * tells them at its commit, and not at all if it rolls back (PostgreSQL's
 * pg_notify; SQLite, whose one hub is the only writer, runs a no-op).
 * site is the site's name. 0 or the mapped error. */
int registry__note_site(struct registry *r, enum reg_note_kind kind, int64_t site_id,
                        const char *site, enum reg_cut_why why);
int registry__note_tokens(struct registry *r, const char *name);
/* REG_NOTE_SESSION: this hub (r's) opened session_id of site_id. */
int registry__note_session(struct registry *r, int64_t site_id, int64_t session_id);
/* REG_NOTE_QUERY or REG_NOTE_RESULTS of a query, in the open transaction. */
int registry__note_query(struct registry *r, enum reg_note_kind kind, int64_t query_id);
/* The name and pin ("" when none) of site id; -ENOENT unknown. */
int registry__site_name_pin(struct registry *r, int64_t id, char name[TOKEN_NAME_MAX + 1],
                            char pin[CRYPTO_PIN_LEN + 1]);

#ifdef TETHER_HAVE_PG
/* For the PostgreSQL listener (db_pg_listen.c): r's URL; the server
 * process of r's connection (0 when not connected), to tell this hub's own
 * notifications from other hubs'; a connection to url begun with
 * PQconnectStartParams and the driver's defaults (a PGconn *, NULL out of
 * memory). */
const char *registry__pg_url(struct registry *r);
int registry__pg_backend_pid(struct registry *r);
void *registry__pg_connect_start(const char *url);
/* libpq's message of pc (a PGconn *; NULL: out of memory) on one line into
 * out, as every registry message is: its newlines and tabs ("...failed:
 * Connection refused\n\tIs the server running...") become single spaces,
 * the trailing ones go. */
void registry__pg_msg(const void *pc, char *out, size_t cap);
/* notes.h's registry_listen and registry_listen_stop on PostgreSQL. */
struct uv_loop_s;
struct registry_listener;
struct registry_listen_ops;
int registry__pg_listen(struct registry *r, struct uv_loop_s *loop,
                        const struct registry_listen_ops *ops, void *arg,
                        struct registry_listener **out);
void registry__pg_listen_stop(struct registry_listener *l);
#endif

/* BEGIN IMMEDIATE / COMMIT on r's connection; 0 or mapped error. */
int registry__tx_begin(struct registry *r);
int registry__tx_commit(struct registry *r);
/* Rolls back if a transaction is still open (the database may have ended it). */
void registry__tx_rollback(struct registry *r);
/* Ends a transaction by the outcome rc of its work: commits when rc is 0,
 * else, or when the commit fails, rolls back. Returns the final outcome. */
int registry__tx_end(struct registry *r, int rc);
/* See registry_driver.set_relaxed. */
int registry__set_relaxed(struct registry *r, int relaxed);

/* Binds; 0 or -EIO. */
int registry__bind_i64(struct reg_stmt *st, int idx, int64_t v);
/* Binds s (NULL = SQL NULL), borrowed until the statement is reset; 0 or -EIO. */
int registry__bind_text(struct reg_stmt *st, int idx, const char *s);
/* Binds at most max bytes of s (NULL = ""), cut back to a UTF-8 boundary; 0 or -EIO. */
int registry__bind_text_cut(struct reg_stmt *st, int idx, const char *s, size_t max);
/* Binds len bytes of b, borrowed; NULL stays NULL, len 0 is an empty value.
 * 0, -EINVAL for a value too big, or -EIO. */
int registry__bind_blob(struct reg_stmt *st, int idx, const void *b, size_t len);

/* Columns of the row st is on; SQL NULL reads as 0, NULL text, NULL blob. */
int registry__col_null(struct reg_stmt *st, int col);
int64_t registry__col_i64(struct reg_stmt *st, int col);
/* Valid until the statement moves. */
const char *registry__col_text(struct reg_stmt *st, int col);
const void *registry__col_blob(struct reg_stmt *st, int col, size_t *len);
/* Copies a text column into dst (NULL = ""), truncating to cap. */
void registry__copy_col(struct reg_stmt *st, int col, char *dst, size_t cap);
/* *dst = a heap copy of a text column (NULL = ""), owned by the caller; 0 or -ENOMEM. */
int registry__dup_col(struct reg_stmt *st, int col, char **dst);

static inline int registry__empty(const char *s)
{
    return s == NULL || s[0] == '\0';
}

#endif
