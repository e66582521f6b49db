/* The registry's API tokens: create, look up by hash, revoke, count, list. */
/* SPDX-License-Identifier: MIT */
#include "store_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void registry_apitoken_clear(struct reg_apitoken *t)
{
    if (t == NULL)
        return;
    free(t->scope_json);
    free(t->services_json);
    memset(t, 0, sizeof(*t));
}

int registry_apitoken_create(struct registry *r, const char *name, const char *role,
                             const char *scope_json, const char *hash, int64_t expires_at,
                             int64_t now)
{
    return registry_apitoken_create_scoped(r, name, role, scope_json, NULL, hash, expires_at, now);
}

int registry_apitoken_create_scoped(struct registry *r, const char *name, const char *role,
                                    const char *scope_json, const char *services_json,
                                    const char *hash, int64_t expires_at, int64_t now)
{
    struct reg_stmt *st;
    int rc;

    if (r == NULL || registry__empty(name) || registry__empty(role) || registry__empty(hash) ||
        expires_at < 0)
        return -EINVAL;
    st = registry__stmt(r, S_API_CREATE);
    if (registry__bind_text(st, 1, name) < 0 || registry__bind_text(st, 2, role) < 0 ||
        registry__bind_text(st, 3, registry__empty(scope_json) ? NULL : scope_json) < 0 ||
        registry__bind_text(st, 4, hash) < 0 ||
        registry__bind_text(st, 7, registry__empty(services_json) ? NULL : services_json) < 0) {
        registry__done(st);
        return -EIO;
    }
    registry__bind_i64(st, 5, now);
    registry__bind_i64(st, 6, expires_at);
    /* Other hubs' caches must not refuse it for long, nor serve a revoked
     * one: each change tells them in its transaction. */
    rc = registry__tx_begin(r);
    if (rc < 0) {
        registry__done(st);
        return rc;
    }
    rc = registry__exec(st);
    if (rc == 0)
        rc = registry__note_tokens(r, name);
    return registry__tx_end(r, rc);
}

/* Columns of S_API_LOOKUP / S_API_BY_ID / S_API_LIST; t->scope_json and
 * t->services_json are allocated. */
static int apitoken_from_row(struct reg_stmt *st, struct reg_apitoken *t)
{
    memset(t, 0, sizeof(*t));
    t->id = registry__col_i64(st, 0);
    registry__copy_col(st, 1, t->name, sizeof(t->name));
    registry__copy_col(st, 2, t->role, sizeof(t->role));
    t->created_at = registry__col_i64(st, 4);
    t->expires_at = registry__col_i64(st, 5);
    t->revoked_at = registry__col_i64(st, 6);
    if (!registry__col_null(st, 3) && registry__dup_col(st, 3, &t->scope_json) != 0)
        return -ENOMEM;
    if (!registry__col_null(st, 7))
        return registry__dup_col(st, 7, &t->services_json);
    return 0;
}

int registry_apitoken_list(struct registry *r, registry_apitoken_cb cb, void *arg)
{
    struct reg_apitoken t;
    struct reg_stmt *st;
    int rc;

    if (r == NULL || cb == NULL)
        return -EINVAL;
    if (registry__busy(r->st[S_API_LIST]))
        return -EBUSY;
    st = registry__stmt(r, S_API_LIST);
    while ((rc = registry__step(st)) == 1) {
        rc = apitoken_from_row(st, &t);
        if (rc == 0)
            rc = cb(&t, arg);
        registry_apitoken_clear(&t);
        if (rc != 0)
            break;
    }
    registry__done(st);
    return rc;
}

/* Steps st (bound by the caller) for one token row into *out; -ENOENT if
 * none. Resets st. */
static int apitoken_one(struct reg_stmt *st, struct reg_apitoken *out)
{
    int rc = registry__step(st);

    if (rc == 0)
        rc = -ENOENT;
    if (rc == 1)
        rc = apitoken_from_row(st, out);
    registry__done(st);
    if (rc != 0)
        registry_apitoken_clear(out);
    return rc;
}

int registry_apitoken_lookup(struct registry *r, const char *hash, int64_t now,
                             struct reg_apitoken *out)
{
    struct reg_stmt *st;
    int rc;

    if (out)
        memset(out, 0, sizeof(*out));
    if (r == NULL || registry__empty(hash) || out == NULL)
        return -EINVAL;
    st = registry__stmt(r, S_API_LOOKUP);
    if (registry__bind_text(st, 1, hash) < 0) {
        registry__done(st);
        return -EIO;
    }
    rc = apitoken_one(st, out);
    if (rc == 0 && out->revoked_at != 0)
        rc = -EKEYREVOKED;
    else if (rc == 0 && out->expires_at != 0 && now >= out->expires_at)
        rc = -EKEYEXPIRED;
    if (rc != 0)
        registry_apitoken_clear(out);
    return rc;
}

int registry_apitoken_get(struct registry *r, int64_t id, struct reg_apitoken *out)
{
    struct reg_stmt *st;

    if (out)
        memset(out, 0, sizeof(*out));
    if (r == NULL || out == NULL)
        return -EINVAL;
    st = registry__stmt(r, S_API_BY_ID);
    registry__bind_i64(st, 1, id);
    return apitoken_one(st, out);
}

int registry_apitoken_revoke(struct registry *r, const char *name, int64_t now)
{
    struct reg_stmt *st;
    int rc;

    if (r == NULL || registry__empty(name))
        return -EINVAL;
    rc = registry__tx_begin(r);
    if (rc < 0)
        return rc;
    st = registry__stmt(r, S_API_REVOKE);
    if (registry__bind_text(st, 1, name) < 0) {
        registry__done(st);
        rc = -EIO;
        goto out;
    }
    registry__bind_i64(st, 2, now);
    rc = registry__exec(st);
    if (rc < 0)
        goto out;
    if (registry__changes(r) > 0) {
        rc = registry__note_tokens(r, name);
        goto out;
    }
    /* Only revoked tokens carry this name: nothing left to revoke. */
    st = registry__stmt(r, S_API_NAME_EXISTS);
    rc = registry__bind_text(st, 1, name);
    if (rc == 0)
        rc = registry__step(st);
    registry__done(st);
    if (rc >= 0)
        rc = rc == 1 ? -EALREADY : -ENOENT;
out:
    return registry__tx_end(r, rc);
}

int registry_apitoken_count(struct registry *r, int64_t *count)
{
    if (count)
        *count = 0;
    if (r == NULL || count == NULL)
        return -EINVAL;
    return registry__row_i64(registry__stmt(r, S_API_COUNT), count, 1);
}
