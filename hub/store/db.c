/* The registry over its driver: open and close, the statement helpers, transactions. */
/* SPDX-License-Identifier: MIT */
#include "db_drivers.h"
#include "store_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/errmsg.h"

const double registry__commit_le[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                      0.1,    0.25,  0.5,    1,     2.5,  5};
const size_t registry__commit_le_n = sizeof(registry__commit_le) / sizeof(registry__commit_le[0]);

const char *registry_storage_error(int rc)
{
    switch (rc) {
    case -ENOSPC:
        return "the hub's disk is full";
    case -EIO:
        return "the hub's database reported an I/O error";
    case -EBUSY:
        return "the hub's database is locked by another process";
    case -ENOTCONN:
        return "the hub's database is unreachable";
    }
    return NULL;
}

int registry_is_url(const char *where)
{
    return where != NULL &&
           (strncmp(where, "postgresql://", 13) == 0 || strncmp(where, "postgres://", 11) == 0);
}

void registry_where(const char *where, char *out, size_t cap)
{
    const char *p, *at, *colon, *slash, *pw;
    char rest[512];
    size_t n;

    if (cap == 0)
        return;
    if (!registry_is_url(where)) {
        snprintf(out, cap, "%s", where ? where : "");
        return;
    }
    /* postgresql://user:PASSWORD@host/db?password=PASSWORD */
    p = strstr(where, "://") + 3;
    slash = p + strcspn(p, "/?");
    at = memchr(p, '@', (size_t)(slash - p));
    colon = at ? memchr(p, ':', (size_t)(at - p)) : NULL;
    if (colon != NULL)
        snprintf(out, cap, "%.*s:***%s", (int)(colon - where), where, at);
    else
        snprintf(out, cap, "%s", where);
    pw = strstr(out, "password=");
    if (pw != NULL) {
        n = (size_t)(pw - out) + 9;
        snprintf(rest, sizeof(rest), "%s", out + n + strcspn(out + n, "&"));
        snprintf(out + n, cap - n, "***%s", rest);
    }
}

int registry_open(const char *path, struct registry **out, char *err, size_t err_cap)
{
    struct registry *r = NULL;
    int rc;
    size_t i;

    errmsg_set(err, err_cap, "%s", "");
    if (path == NULL || out == NULL) {
        errmsg_set(err, err_cap, "registry_open: no path");
        return -EINVAL;
    }
    *out = NULL;
    r = calloc(1, sizeof(*r));
    if (r == NULL) {
        errmsg_set(err, err_cap, "out of memory");
        return -ENOMEM;
    }
    r->drv = &registry__sqlite;
    if (registry_is_url(path)) {
#ifdef TETHER_HAVE_PG
        r->drv = &registry__pg;
#else
        errmsg_set(err, err_cap, "this tether-hub was built without PostgreSQL support");
        rc = -ENOTSUP;
        goto out;
#endif
    }
    rc = r->drv->open(r, path, err, err_cap);
    if (rc < 0)
        goto out;
    for (i = 0; i < S_COUNT; i++) {
        rc = registry__prepare(r, r->drv->sql[i], &r->st[i]);
        if (rc < 0) {
            char where[512];

            registry_where(path, where, sizeof(where));
            errmsg_set(err, err_cap, "%s: cannot prepare statement %zu", where, i);
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

int registry_max_param(const char *sql, char mark)
{
    int max = 0;
    char quote = 0;

    for (const char *p = sql; *p != '\0'; p++) {
        if (quote) {
            if (*p == quote)
                quote = 0;
        } else if (*p == '\'' || *p == '"') {
            quote = *p;
        } else if (*p == mark) {
            int n = p[1] >= '0' && p[1] <= '9' ? (int)strtol(p + 1, NULL, 10) : 0;

            if (n <= 0 && mark == '?')
                return -1;
            if (n > max)
                max = n;
        }
    }
    return max;
}

int registry_stmt_tables(const char *backend, const char *const **sql, size_t *n,
                         const char *const **qsql, size_t *nq)
{
    const struct registry_driver *d = NULL;

    if (strcmp(backend, registry__sqlite.name) == 0)
        d = &registry__sqlite;
#ifdef TETHER_HAVE_PG
    if (strcmp(backend, registry__pg.name) == 0)
        d = &registry__pg;
#endif
    if (d == NULL)
        return -ENOENT;
    *sql = d->sql;
    *n = S_COUNT;
    *qsql = d->qsql;
    *nq = Q_NSTMT;
    return 0;
}

void registry_close(struct registry *r)
{
    size_t i;

    if (r == NULL)
        return;
    for (i = 0; i < S_COUNT; i++)
        registry__finalize(r->st[i]);
    if (r->drv != NULL)
        r->drv->close(r);
    free(r);
}

int registry_write_gen(struct registry *r, uint64_t *gen)
{
    if (r == NULL || r->drv->write_gen == NULL)
        return -ENOTSUP;
    return r->drv->write_gen(r, gen);
}

void registry_commit_latency(const struct registry *r, struct hist *out)
{
    *out = r->commits;
}

int registry_check(struct registry *r)
{
    if (r == NULL)
        return -EINVAL;
    return r->drv->check(r);
}

int registry_schema_version(struct registry *r)
{
    struct reg_stmt *st;
    int rc;

    if (r == NULL)
        return -EINVAL;
    st = registry__stmt(r, S_USER_VERSION);
    rc = registry__step(st);
    if (rc == 1)
        rc = (int)registry__col_i64(st, 0);
    else if (rc == 0)
        rc = -EIO;
    registry__done(st);
    return rc;
}

int registry__prepare(struct registry *r, const char *sql, struct reg_stmt **out)
{
    return r->drv->prepare(r, sql, out);
}

void registry__finalize(struct reg_stmt *st)
{
    if (st != NULL)
        st->drv->finalize(st);
}

struct reg_stmt *registry__reset(struct reg_stmt *st)
{
    st->drv->reset(st, 1);
    st->busy = 0;
    return st;
}

struct reg_stmt *registry__stmt(struct registry *r, enum stmt_id id)
{
    return registry__reset(r->st[id]);
}

void registry__done(struct reg_stmt *st)
{
    st->drv->reset(st, 0);
    st->busy = 0;
}

int registry__busy(const struct reg_stmt *st)
{
    return st->busy;
}

int registry__step_fk(struct reg_stmt *st, int foreign_key)
{
    int rc = st->drv->step(st, foreign_key);

    st->busy = rc == 1;
    return rc;
}

int registry__exec_fk(struct reg_stmt *st, int foreign_key)
{
    int rc;

    while ((rc = registry__step_fk(st, foreign_key)) == 1)
        ;
    registry__done(st);
    return rc;
}

int registry__exec(struct reg_stmt *st)
{
    return registry__exec_fk(st, -ENOENT);
}

int registry__step(struct reg_stmt *st)
{
    return registry__step_fk(st, -ENOENT);
}

int registry__row_i64(struct reg_stmt *st, int64_t *out, int n)
{
    int rc = registry__step(st);

    if (rc == 1) {
        for (int i = 0; i < n; i++)
            out[i] = registry__col_i64(st, i);
        rc = 0;
    } else if (rc == 0) {
        rc = -EIO; /* an aggregate always has its row */
    }
    registry__done(st);
    return rc;
}

int registry__insert_id(struct reg_stmt *st, int foreign_key, int64_t *id)
{
    int rc = registry__step_fk(st, foreign_key);

    if (rc != 1) {
        registry__done(st);
        return rc;
    }
    *id = registry__col_i64(st, 0);
    /* Run to the end: that is where a single statement commits. */
    rc = registry__exec_fk(st, foreign_key);
    return rc < 0 ? rc : 1;
}

int64_t registry__changes(struct registry *r)
{
    return r->drv->changes(r);
}

int registry__bind_i64(struct reg_stmt *st, int idx, int64_t v)
{
    return st->drv->bind_i64(st, idx, v);
}

int registry__bind_text(struct reg_stmt *st, int idx, const char *s)
{
    if (s == NULL)
        return st->drv->bind_null(st, idx) == 0 ? 0 : -EIO;
    return st->drv->bind_text(st, idx, s, strlen(s)) == 0 ? 0 : -EIO;
}

int registry__bind_text_cut(struct reg_stmt *st, int idx, const char *s, size_t max)
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
    return st->drv->bind_text(st, idx, s, n) == 0 ? 0 : -EIO;
}

int registry__bind_blob(struct reg_stmt *st, int idx, const void *b, size_t len)
{
    if (b == NULL)
        return st->drv->bind_null(st, idx);
    return st->drv->bind_blob(st, idx, b, len);
}

int registry__col_null(struct reg_stmt *st, int col)
{
    return st->drv->col_null(st, col);
}

int64_t registry__col_i64(struct reg_stmt *st, int col)
{
    return st->drv->col_i64(st, col);
}

const char *registry__col_text(struct reg_stmt *st, int col)
{
    return st->drv->col_text(st, col);
}

const void *registry__col_blob(struct reg_stmt *st, int col, size_t *len)
{
    return st->drv->col_blob(st, col, len);
}

void registry__copy_col(struct reg_stmt *st, int col, char *dst, size_t cap)
{
    const char *t = registry__col_text(st, col);

    snprintf(dst, cap, "%s", t ? t : "");
}

int registry__dup_col(struct reg_stmt *st, int col, char **dst)
{
    const char *t = registry__col_text(st, col);

    *dst = strdup(t ? t : "");
    return *dst ? 0 : -ENOMEM;
}

/* Transactions nest (the recorder writes a batch of calls that each may
 * open one): only the outermost begins and commits. */
int registry__tx_begin(struct registry *r)
{
    int rc;

    if (r->tx_depth > 0) {
        r->tx_depth++;
        return 0;
    }
    rc = registry__exec(registry__stmt(r, S_BEGIN_IMMEDIATE));
    if (rc == 0)
        r->tx_depth = 1;
    return rc;
}

int registry__tx_commit(struct registry *r)
{
    if (r->tx_depth > 1) {
        r->tx_depth--;
        return 0;
    }
    r->tx_depth = 0;
    return registry__exec(registry__stmt(r, S_COMMIT));
}

/* After a full disk, an I/O error or out of memory, the database may
 * already have rolled the transaction back by itself; a ROLLBACK then would
 * only fail. */
void registry__tx_rollback(struct registry *r)
{
    /* An inner one leaves the outcome to the outermost, which sees the
     * error its caller returns. */
    if (r->tx_depth > 1) {
        r->tx_depth--;
        return;
    }
    r->tx_depth = 0;
    if (r->drv->in_tx(r))
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

int registry__set_relaxed(struct registry *r, int relaxed)
{
    return r->drv->set_relaxed(r, relaxed);
}
