/* The registry's audit log: append (strict or relaxed durability) and page backwards. */
/* SPDX-License-Identifier: MIT */
#include "store_int.h"

#include <errno.h>
#include <string.h>

/* Free-text fields are cut to these byte counts (at a UTF-8 boundary) rather
 * than refused: a long error string must never cost an audit row or a session
 * record. The schema CHECKs the same bounds. */
#define AUDIT_FIELD_MAX  255
#define AUDIT_DETAIL_MAX 4096

static int audit_insert(struct registry *r, int64_t ts, const char *actor, const char *remote,
                        const char *action, const char *target, const char *result,
                        const char *detail)
{
    struct reg_stmt *st;
    int rc = 0;

    st = registry__stmt(r, S_AUDIT);
    registry__bind_i64(st, 1, ts);
    rc |= registry__bind_text_cut(st, 2, actor, AUDIT_FIELD_MAX);
    rc |= registry__bind_text_cut(st, 3, remote, AUDIT_FIELD_MAX);
    rc |= registry__bind_text_cut(st, 4, action, AUDIT_FIELD_MAX);
    rc |= registry__bind_text_cut(st, 5, target, AUDIT_FIELD_MAX);
    rc |= registry__bind_text_cut(st, 6, result, AUDIT_FIELD_MAX);
    rc |= registry__bind_text_cut(st, 7, detail, AUDIT_DETAIL_MAX);
    if (rc != 0) {
        registry__done(st);
        return -EIO;
    }
    return registry__exec(st);
}

int registry_audit(struct registry *r, int64_t ts, const char *actor, const char *remote,
                   const char *action, const char *target, const char *result, const char *detail)
{
    if (r == NULL || actor == NULL || registry__empty(action) || result == NULL)
        return -EINVAL;
    return audit_insert(r, ts, actor, remote, action, target, result, detail);
}

int registry_audit_relaxed(struct registry *r, int64_t ts, const char *actor, const char *remote,
                           const char *action, const char *target, const char *result,
                           const char *detail)
{
    int rc, rc2;

    if (r == NULL || actor == NULL || registry__empty(action) || result == NULL)
        return -EINVAL;
    rc = registry__set_relaxed(r, 1);
    if (rc < 0)
        return rc;
    rc = audit_insert(r, ts, actor, remote, action, target, result, detail);
    /* Durable again for everything else; if even that fails, say so. */
    rc2 = registry__set_relaxed(r, 0);
    return rc == 0 ? rc2 : rc;
}

int registry_audit_list(struct registry *r, int64_t before_id, int limit, registry_audit_cb cb,
                        void *arg)
{
    struct reg_audit a;
    struct reg_stmt *st;
    int rc;

    if (r == NULL || cb == NULL || limit <= 0 || before_id < 0)
        return -EINVAL;
    if (registry__busy(r->st[S_AUDIT_LIST]))
        return -EBUSY;
    st = registry__stmt(r, S_AUDIT_LIST);
    registry__bind_i64(st, 1, before_id > 0 ? before_id : INT64_MAX);
    registry__bind_i64(st, 2, limit);
    while ((rc = registry__step(st)) == 1) {
        memset(&a, 0, sizeof(a));
        a.id = registry__col_i64(st, 0);
        a.ts = registry__col_i64(st, 1);
        registry__copy_col(st, 2, a.actor, sizeof(a.actor));
        registry__copy_col(st, 3, a.remote, sizeof(a.remote));
        registry__copy_col(st, 4, a.action, sizeof(a.action));
        registry__copy_col(st, 5, a.target, sizeof(a.target));
        registry__copy_col(st, 6, a.result, sizeof(a.result));
        registry__copy_col(st, 7, a.detail, sizeof(a.detail));
        rc = cb(&a, arg);
        if (rc != 0)
            break;
    }
    registry__done(st);
    return rc;
}
