/* The registry's enrollment tokens: issue, reissue, redeem (binds the site's pin), cancel, list. */
/* SPDX-License-Identifier: MIT */
#include "store_int.h"

#include <errno.h>
#include <string.h>
#include <time.h>

/* One row insert of a new token for site; -ENOENT if there is no such site. */
static int insert_token(struct registry *r, const char *site, const char *secret_hash,
                        int64_t expires_at, int64_t now, int64_t *id_out)
{
    struct reg_stmt *st = registry__stmt(r, S_ENROLL_CREATE);
    int64_t id = 0;
    int rc;

    if (registry__bind_text(st, 1, site) < 0 || registry__bind_text(st, 2, secret_hash) < 0) {
        registry__done(st);
        return -EIO;
    }
    registry__bind_i64(st, 3, now);
    registry__bind_i64(st, 4, expires_at);
    rc = registry__insert_id(st, -ENOENT, &id);
    if (rc < 0)
        return rc;
    if (rc == 0)
        return -ENOENT;
    if (id_out)
        *id_out = id;
    return 0;
}

/* Cancels the site's unused tokens (inside the caller's transaction). */
static int cancel_unused(struct registry *r, const char *site, int64_t now)
{
    struct reg_stmt *st = registry__stmt(r, S_ENROLL_CANCEL_SITE);

    if (registry__bind_text(st, 1, site) < 0) {
        registry__done(st);
        return -EIO;
    }
    registry__bind_i64(st, 2, now);
    return registry__exec(st);
}

/* create (reissue 0) and reissue (1): a reissue first cancels the earlier
 * unused tokens, in the same transaction. */
static int new_token(struct registry *r, const char *site, const char *secret_hash,
                     int64_t expires_at, int64_t now, int64_t *id_out, int reissue)
{
    int rc;

    if (id_out)
        *id_out = 0;
    if (r == NULL || registry__empty(site) || registry__empty(secret_hash))
        return -EINVAL;
    if (!reissue)
        return insert_token(r, site, secret_hash, expires_at, now, id_out);
    rc = registry__tx_begin(r);
    if (rc < 0)
        return rc;
    rc = cancel_unused(r, site, now);
    if (rc == 0)
        rc = insert_token(r, site, secret_hash, expires_at, now, id_out);
    rc = registry__tx_end(r, rc);
    if (rc < 0 && id_out)
        *id_out = 0;
    return rc;
}

int registry_enroll_create(struct registry *r, const char *site, const char *secret_hash,
                           int64_t expires_at, int64_t now, int64_t *id_out)
{
    return new_token(r, site, secret_hash, expires_at, now, id_out, 0);
}

int registry_enroll_reissue(struct registry *r, const char *site, const char *secret_hash,
                            int64_t expires_at, int64_t now, int64_t *id_out)
{
    return new_token(r, site, secret_hash, expires_at, now, id_out, 1);
}

static void enroll_from_row(struct reg_stmt *st, struct reg_enroll *e)
{
    memset(e, 0, sizeof(*e));
    e->id = registry__col_i64(st, 0);
    registry__copy_col(st, 1, e->site, sizeof(e->site));
    e->created_at = registry__col_i64(st, 2);
    e->expires_at = registry__col_i64(st, 3);
    e->used_at = registry__col_i64(st, 4);
    e->cancelled_at = registry__col_i64(st, 5);
}

int registry_enroll_get(struct registry *r, int64_t id, struct reg_enroll *out)
{
    struct reg_stmt *st;
    int rc;

    if (out)
        memset(out, 0, sizeof(*out));
    if (r == NULL || out == NULL)
        return -EINVAL;
    st = registry__stmt(r, S_ENROLL_GET);
    registry__bind_i64(st, 1, id);
    rc = registry__step(st);
    if (rc == 1) {
        enroll_from_row(st, out);
        rc = 0;
    } else if (rc == 0) {
        rc = -ENOENT;
    }
    registry__done(st);
    return rc;
}

/* Why a token could not be used: it was checked under the same write lock. */
static int enroll_why_not(struct registry *r, const char *secret_hash)
{
    struct reg_stmt *st = registry__stmt(r, S_ENROLL_STATUS);
    int rc = registry__bind_text(st, 1, secret_hash);

    if (rc == 0)
        rc = registry__step(st);
    if (rc == 0)
        rc = -ENOENT;
    else if (rc == 1 && registry__col_i64(st, 0))
        rc = -EALREADY;
    else if (rc == 1 && registry__col_i64(st, 1))
        rc = -ECANCELED;
    else if (rc == 1)
        rc = -ETIMEDOUT;
    registry__done(st);
    return rc;
}

int registry_enroll_redeem(struct registry *r, const char *secret_hash, const char *pin,
                           int64_t now, char site_out[TOKEN_NAME_MAX + 1])
{
    char name[TOKEN_NAME_MAX + 1], old_pin[CRYPTO_PIN_LEN + 1];
    struct reg_stmt *st;
    int64_t site_id = 0;
    int rc, bound = 0;

    if (site_out)
        site_out[0] = '\0';
    if (r == NULL || registry__empty(secret_hash) || registry__empty(pin))
        return -EINVAL;
    /* IMMEDIATE takes the write lock first, so the check and both updates
     * see one state of the file, whichever process or handle gets there. */
    rc = registry__tx_begin(r);
    if (rc < 0)
        return rc;
    st = registry__stmt(r, S_ENROLL_USE);
    rc = registry__bind_text(st, 1, secret_hash);
    registry__bind_i64(st, 2, now);
    if (rc == 0)
        rc = registry__step(st);
    if (rc == 1)
        site_id = registry__col_i64(st, 0);
    if (rc == 1)
        rc = registry__exec(st); /* finish the RETURNING statement */
    else
        registry__done(st);
    if (rc < 0)
        goto out;
    if (site_id == 0) {
        rc = enroll_why_not(r, secret_hash);
        goto out;
    }
    /* The key the site held before: a new one cuts its tunnels on every
     * hub (the old key must not stay connected), the same one does not. */
    rc = registry__site_name_pin(r, site_id, name, old_pin);
    if (rc < 0)
        goto out;
    st = registry__stmt(r, S_ENROLL_BIND_SITE);
    registry__bind_i64(st, 1, site_id);
    rc = registry__bind_text(st, 2, pin);
    registry__bind_i64(st, 3, now);
    if (rc == 0)
        rc = registry__step(st);
    if (rc == 1) {
        bound = 1;
        if (site_out)
            registry__copy_col(st, 0, site_out, TOKEN_NAME_MAX + 1);
        rc = registry__exec(st);
    } else {
        registry__done(st);
    }
    if (rc == 0 && !bound)
        rc = -ENOENT;
    if (rc == 0 && old_pin[0] != '\0' && strcmp(old_pin, pin) != 0)
        rc = registry__note_site(r, REG_NOTE_CUT, site_id, name, REG_CUT_REENROLLED);
    else if (rc == 0)
        rc = registry__note_site(r, REG_NOTE_CHANGED, site_id, name, REG_CUT_NWHY);
    if (rc < 0)
        goto out;
    rc = registry__tx_commit(r);
out:
    if (rc < 0) {
        registry__tx_rollback(r);
        if (site_out)
            site_out[0] = '\0';
    }
    return rc;
}

int registry_enroll_cancel(struct registry *r, int64_t id)
{
    struct reg_stmt *st;
    int rc;

    if (r == NULL)
        return -EINVAL;
    st = registry__stmt(r, S_ENROLL_CANCEL);
    registry__bind_i64(st, 1, id);
    registry__bind_i64(st, 2, (int64_t)time(NULL));
    rc = registry__exec(st);
    if (rc < 0 || registry__changes(r) == 1)
        return rc;
    /* Cancelling twice is fine; cancelling a used token is not possible. */
    st = registry__stmt(r, S_ENROLL_STATUS_ID);
    registry__bind_i64(st, 1, id);
    rc = registry__step(st);
    if (rc == 0)
        rc = -ENOENT;
    else if (rc == 1)
        rc = registry__col_i64(st, 0) ? -EALREADY : 0;
    registry__done(st);
    return rc;
}

int registry_enroll_list(struct registry *r, registry_enroll_cb cb, void *arg)
{
    struct reg_enroll e;
    struct reg_stmt *st;
    int rc;

    if (r == NULL || cb == NULL)
        return -EINVAL;
    if (registry__busy(r->st[S_ENROLL_LIST]))
        return -EBUSY;
    st = registry__stmt(r, S_ENROLL_LIST);
    while ((rc = registry__step(st)) == 1) {
        enroll_from_row(st, &e);
        rc = cb(&e, arg);
        if (rc != 0)
            break;
    }
    registry__done(st);
    return rc;
}
