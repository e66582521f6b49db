/* The registry's tunnel sessions: one row per connection, opened and closed. */
/* SPDX-License-Identifier: MIT */
#include "store_int.h"

#include <errno.h>
#include <string.h>

#include <sqlite3.h>

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
    st = registry__stmt(r, S_SESS_OPEN);
    sqlite3_bind_int64(st, 1, site_id);
    if (registry__bind_text_cut(st, 2, remote_addr, SESS_ADDR_MAX) < 0 ||
        registry__bind_text_cut(st, 3, agent_version, SESS_AGENT_MAX) < 0) {
        registry__done(st);
        return -EIO;
    }
    sqlite3_bind_int64(st, 4, now);
    rc = registry__exec(st); /* unknown site_id: FOREIGN KEY -> -ENOENT */
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
    st = registry__stmt(r, S_SESS_CLOSE);
    sqlite3_bind_int64(st, 1, session_id);
    sqlite3_bind_int64(st, 2, now);
    if (registry__bind_text_cut(st, 3, reason, SESS_REASON_MAX) < 0) {
        registry__done(st);
        return -EIO;
    }
    sqlite3_bind_int64(st, 4, bytes_in);
    sqlite3_bind_int64(st, 5, bytes_out);
    rc = registry__exec(st);
    if (rc < 0 || sqlite3_changes(r->db) == 1)
        return rc;
    st = registry__stmt(r, S_SESS_EXISTS);
    sqlite3_bind_int64(st, 1, session_id);
    rc = registry__step(st);
    registry__done(st);
    if (rc < 0)
        return rc;
    return rc == 1 ? -EALREADY : -ENOENT;
}

int registry_session_close_stale(struct registry *r, int64_t now, const char *reason)
{
    sqlite3_stmt *st;

    if (r == NULL)
        return -EINVAL;
    st = registry__stmt(r, S_SESS_CLOSE_STALE);
    sqlite3_bind_int64(st, 1, now);
    if (registry__bind_text_cut(st, 2, reason, SESS_REASON_MAX) < 0) {
        registry__done(st);
        return -EIO;
    }
    return registry__exec(st);
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
    st = registry__stmt(r, S_SESS_LIST);
    sqlite3_bind_int64(st, 1, site_id);
    sqlite3_bind_int(st, 2, limit);
    while ((rc = registry__step(st)) == 1) {
        memset(&s, 0, sizeof(s));
        s.id = sqlite3_column_int64(st, 0);
        s.site_id = sqlite3_column_int64(st, 1);
        registry__copy_col(st, 2, s.remote_addr, sizeof(s.remote_addr));
        registry__copy_col(st, 3, s.agent_version, sizeof(s.agent_version));
        s.connected_at = sqlite3_column_int64(st, 4);
        s.disconnected_at = sqlite3_column_int64(st, 5);
        registry__copy_col(st, 6, s.reason, sizeof(s.reason));
        s.bytes_in = sqlite3_column_int64(st, 7);
        s.bytes_out = sqlite3_column_int64(st, 8);
        rc = cb(&s, arg);
        if (rc != 0)
            break;
    }
    registry__done(st);
    return rc;
}
