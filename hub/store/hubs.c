/* The registry's hubs: the hubs of one cluster, sharing one database. */
/* SPDX-License-Identifier: MIT */
#include "store_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void registry_hub_clear(struct reg_hub *h)
{
    if (h == NULL)
        return;
    free(h->public_json);
    h->public_json = NULL;
}

void registry_use_hub(struct registry *r, int64_t hub_id)
{
    if (r != NULL)
        r->hub_id = hub_id;
}

void registry__bind_hub(struct registry *r, struct reg_stmt *st, int idx)
{
    if (r->hub_id > 0)
        registry__bind_i64(st, idx, r->hub_id);
    else
        registry__bind_text(st, idx, NULL);
}

/* Runs S_HUB_INSERT or S_HUB_REFRESH (the same four values, in their
 * order): 1 with *id set, 0 when no row was written, or the error. */
static int hub_write(struct registry *r, enum stmt_id which, const char *name, const char *pin,
                     const char *public_json, int64_t now, int64_t *id)
{
    struct reg_stmt *st = registry__stmt(r, which);
    const char *first = which == S_HUB_INSERT ? name : pin;
    const char *second = which == S_HUB_INSERT ? pin : name;

    if (registry__bind_text(st, 1, first) < 0 || registry__bind_text(st, 2, second) < 0 ||
        registry__bind_text(st, 3, public_json) < 0) {
        registry__done(st);
        return -EIO;
    }
    registry__bind_i64(st, 4, now);
    return registry__insert_id(st, -ENOENT, id);
}

int registry_hub_join(struct registry *r, const char *name, const char *pin,
                      const char *public_json, int64_t now, int64_t *id_out)
{
    int64_t id = 0;
    int rc;

    if (r == NULL || registry__empty(name) || registry__empty(pin) || public_json == NULL)
        return -EINVAL;
    rc = hub_write(r, S_HUB_INSERT, name, pin, public_json, now, &id);
    if (rc == 0)
        rc = -EIO; /* RETURNING gave no row */
    if (rc < 0)
        return rc;
    if (id_out)
        *id_out = id;
    return 0;
}

int registry_hub_start(struct registry *r, const char *name, const char *pin,
                       const char *public_json, int64_t now, int64_t *id_out)
{
    int64_t id = 0;
    int rc;

    if (r == NULL || registry__empty(name) || registry__empty(pin) || public_json == NULL)
        return -EINVAL;
    rc = hub_write(r, S_HUB_REFRESH, name, pin, public_json, now, &id);
    if (rc == 0)
        return registry_hub_join(r, name, pin, public_json, now, id_out);
    if (rc < 0)
        return rc;
    if (id_out)
        *id_out = id;
    return 0;
}

int registry_hub_leave(struct registry *r, const char *pin, int64_t now)
{
    struct reg_stmt *st;
    int64_t n = 0;
    int rc;

    if (r == NULL || registry__empty(pin))
        return -EINVAL;
    rc = registry__tx_begin(r);
    if (rc != 0)
        return rc;
    st = registry__stmt(r, S_HUB_ACTIVE);
    rc = registry__row_i64(st, &n, 1);
    if (rc == 0 && n <= 1)
        rc = -EBUSY;
    if (rc == 0) {
        st = registry__stmt(r, S_HUB_LEAVE);
        if (registry__bind_text(st, 1, pin) < 0) {
            registry__done(st);
            rc = -EIO;
        } else {
            registry__bind_i64(st, 2, now);
            rc = registry__exec(st);
            if (rc == 0 && registry__changes(r) == 0)
                rc = -ENOENT;
        }
    }
    return registry__tx_end(r, rc);
}

int registry_hub_list(struct registry *r, registry_hub_cb cb, void *arg)
{
    struct reg_hub h;
    struct reg_stmt *st;
    int rc;

    if (r == NULL || cb == NULL)
        return -EINVAL;
    if (registry__busy(r->st[S_HUB_LIST]))
        return -EBUSY;
    st = registry__stmt(r, S_HUB_LIST);
    while ((rc = registry__step(st)) == 1) {
        memset(&h, 0, sizeof(h));
        h.id = registry__col_i64(st, 0);
        registry__copy_col(st, 1, h.name, sizeof(h.name));
        registry__copy_col(st, 2, h.pin, sizeof(h.pin));
        h.joined_at = registry__col_i64(st, 4);
        h.seen_at = registry__col_i64(st, 5);
        rc = registry__dup_col(st, 3, &h.public_json);
        if (rc == 0)
            rc = cb(&h, arg);
        registry_hub_clear(&h);
        if (rc != 0)
            break;
    }
    registry__done(st);
    return rc;
}
