/* The registry's tunnel sessions: one row per connection, opened and closed. */
/* SPDX-License-Identifier: MIT */
#include "store_int.h"

#include <errno.h>
#include <string.h>

#define SESS_ADDR_MAX   (sizeof(((struct reg_session *)0)->remote_addr) - 1)
#define SESS_AGENT_MAX  (sizeof(((struct reg_session *)0)->agent_version) - 1)
#define SESS_REASON_MAX (sizeof(((struct reg_session *)0)->reason) - 1)

int registry_session_open(struct registry *r, int64_t site_id, const char *remote_addr,
                          const char *agent_version, int64_t now, int64_t *id_out)
{
    struct reg_stmt *st;
    int64_t id = 0;
    int rc;

    if (id_out)
        *id_out = 0;
    if (r == NULL)
        return -EINVAL;
    st = registry__stmt(r, S_SESS_OPEN);
    registry__bind_i64(st, 1, site_id);
    if (registry__bind_text_cut(st, 2, remote_addr, SESS_ADDR_MAX) < 0 ||
        registry__bind_text_cut(st, 3, agent_version, SESS_AGENT_MAX) < 0) {
        registry__done(st);
        return -EIO;
    }
    registry__bind_i64(st, 4, now);
    registry__bind_hub(r, st, 5);
    rc = registry__insert_id(st, -ENOENT, &id); /* unknown site_id: FOREIGN KEY -> -ENOENT */
    if (rc < 0)
        return rc;
    if (rc == 0)
        return -EIO; /* RETURNING gave no row: not what the table does */
    /* The newest session wins: a hub still holding an older one of the site
     * (it did not notice the site leave) closes it (hub/cluster.c). */
    if (r->hub_id > 0 && (rc = registry__note_session(r, site_id, id)) < 0)
        return rc;
    if (id_out)
        *id_out = id;
    return 0;
}

int registry_session_close(struct registry *r, int64_t session_id, int64_t now, const char *reason,
                           int64_t bytes_in, int64_t bytes_out)
{
    struct reg_stmt *st;
    int rc;

    if (r == NULL || bytes_in < 0 || bytes_out < 0)
        return -EINVAL;
    st = registry__stmt(r, S_SESS_CLOSE);
    registry__bind_i64(st, 1, session_id);
    registry__bind_i64(st, 2, now);
    if (registry__bind_text_cut(st, 3, reason, SESS_REASON_MAX) < 0) {
        registry__done(st);
        return -EIO;
    }
    registry__bind_i64(st, 4, bytes_in);
    registry__bind_i64(st, 5, bytes_out);
    rc = registry__exec(st);
    if (rc < 0 || registry__changes(r) == 1)
        return rc;
    st = registry__stmt(r, S_SESS_EXISTS);
    registry__bind_i64(st, 1, session_id);
    rc = registry__step(st);
    registry__done(st);
    if (rc < 0)
        return rc;
    return rc == 1 ? -EALREADY : -ENOENT;
}

int registry_session_close_stale(struct registry *r, int64_t now, const char *reason)
{
    struct reg_stmt *st;

    if (r == NULL)
        return -EINVAL;
    st = registry__stmt(r, S_SESS_CLOSE_STALE);
    registry__bind_i64(st, 1, now);
    if (registry__bind_text_cut(st, 2, reason, SESS_REASON_MAX) < 0) {
        registry__done(st);
        return -EIO;
    }
    registry__bind_hub(r, st, 3);
    return registry__exec(st);
}

int registry_session_where(struct registry *r, int64_t site_id, int64_t *hub_id,
                           int64_t *session_id)
{
    struct reg_stmt *st;
    int rc;

    if (r == NULL || hub_id == NULL)
        return -EINVAL;
    st = registry__stmt(r, S_SESS_WHERE);
    registry__bind_i64(st, 1, site_id);
    rc = registry__step(st);
    if (rc == 1) {
        *hub_id = registry__col_i64(st, 0);
        if (session_id != NULL)
            *session_id = registry__col_i64(st, 1);
    }
    registry__done(st);
    if (rc < 0)
        return rc;
    return rc == 1 ? 0 : -ENOENT;
}

/* The columns both session reads start with. */
static void session_head(struct reg_stmt *st, struct reg_session *s)
{
    memset(s, 0, sizeof(*s));
    s->id = registry__col_i64(st, 0);
    s->site_id = registry__col_i64(st, 1);
    registry__copy_col(st, 2, s->remote_addr, sizeof(s->remote_addr));
    registry__copy_col(st, 3, s->agent_version, sizeof(s->agent_version));
    s->connected_at = registry__col_i64(st, 4);
}

int registry_session_list(struct registry *r, int64_t site_id, int limit, registry_session_cb cb,
                          void *arg)
{
    struct reg_session s;
    struct reg_stmt *st;
    int rc;

    if (r == NULL || cb == NULL || limit <= 0)
        return -EINVAL;
    if (registry__busy(r->st[S_SESS_LIST]))
        return -EBUSY;
    st = registry__stmt(r, S_SESS_LIST);
    registry__bind_i64(st, 1, site_id);
    registry__bind_i64(st, 2, limit);
    while ((rc = registry__step(st)) == 1) {
        session_head(st, &s);
        s.disconnected_at = registry__col_i64(st, 5);
        registry__copy_col(st, 6, s.reason, sizeof(s.reason));
        s.bytes_in = registry__col_i64(st, 7);
        s.bytes_out = registry__col_i64(st, 8);
        rc = cb(&s, arg);
        if (rc != 0)
            break;
    }
    registry__done(st);
    return rc;
}

int registry_session_open_each(struct registry *r, int64_t site_id, registry_session_cb cb,
                               void *arg)
{
    struct reg_session s;
    struct reg_stmt *st;
    int rc;

    if (r == NULL || cb == NULL || site_id < 0)
        return -EINVAL;
    if (registry__busy(r->st[S_SESS_OPEN_EACH]))
        return -EBUSY;
    st = registry__stmt(r, S_SESS_OPEN_EACH);
    registry__bind_i64(st, 1, site_id);
    while ((rc = registry__step(st)) == 1) {
        session_head(st, &s);
        s.hub_id = registry__col_i64(st, 5);
        rc = cb(&s, arg);
        if (rc != 0)
            break;
    }
    registry__done(st);
    return rc;
}
