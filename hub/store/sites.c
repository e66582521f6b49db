/* The registry's sites table: create, look up, state changes, last seen, pin rotation. */
/* SPDX-License-Identifier: MIT */
#include "store_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const state_names[REG_SITE_NSTATES] = {
    [REG_SITE_PENDING] = "pending",
    [REG_SITE_ACTIVE] = "active",
    [REG_SITE_DISABLED] = "disabled",
    [REG_SITE_REVOKED] = "revoked",
};

const char *registry_site_state_name(enum reg_site_state st)
{
    if ((int)st < 0 || st >= REG_SITE_NSTATES)
        return "unknown";
    return state_names[st];
}

int registry_site_state_parse(const char *s, enum reg_site_state *out)
{
    for (int i = 0; s != NULL && i < REG_SITE_NSTATES; i++) {
        if (strcmp(s, state_names[i]) == 0) {
            *out = (enum reg_site_state)i;
            return 0;
        }
    }
    return -EINVAL;
}

void registry_site_clear(struct reg_site *s)
{
    if (s == NULL)
        return;
    free(s->labels_json);
    free(s->services_json);
    memset(s, 0, sizeof(*s));
}

int registry_site_copy(struct reg_site *dst, const struct reg_site *src)
{
    *dst = *src;
    dst->labels_json = src->labels_json ? strdup(src->labels_json) : NULL;
    dst->services_json = src->services_json ? strdup(src->services_json) : NULL;
    if ((src->labels_json && !dst->labels_json) || (src->services_json && !dst->services_json)) {
        registry_site_clear(dst);
        return -ENOMEM;
    }
    return 0;
}

static int site_from_row(struct reg_stmt *st, struct reg_site *s)
{
    int rc;

    memset(s, 0, sizeof(*s));
    s->id = registry__col_i64(st, 0);
    registry__copy_col(st, 1, s->name, sizeof(s->name));
    /* The schema's CHECK allows only the four names: anything else is a
     * damaged file. */
    if (registry_site_state_parse(registry__col_text(st, 2), &s->state) < 0)
        return -EIO;
    registry__copy_col(st, 3, s->pin, sizeof(s->pin));
    rc = registry__dup_col(st, 4, &s->labels_json);
    if (rc == 0)
        rc = registry__dup_col(st, 5, &s->services_json);
    registry__copy_col(st, 6, s->agent_version, sizeof(s->agent_version));
    registry__copy_col(st, 7, s->remote_addr, sizeof(s->remote_addr));
    s->created_at = registry__col_i64(st, 8);
    s->enrolled_at = registry__col_i64(st, 9);
    s->last_seen = registry__col_i64(st, 10);
    if (rc < 0)
        registry_site_clear(s);
    return rc;
}

static int site_state_of(struct registry *r, const char *name, int64_t *id, char state[16]);

/* Inside a change's transaction: tells other hubs site name changed. */
static int note_changed(struct registry *r, const char *name)
{
    int64_t id = 0;
    int rc = site_state_of(r, name, &id, NULL);

    return rc < 0 ? rc : registry__note_site(r, REG_NOTE_CHANGED, id, name, REG_CUT_NWHY);
}

int registry_site_create(struct registry *r, const char *name, const char *labels_json, int64_t now)
{
    struct reg_stmt *st;
    int rc;

    if (r == NULL || registry__empty(name))
        return -EINVAL;
    rc = registry__tx_begin(r);
    if (rc < 0)
        return rc;
    st = registry__stmt(r, S_SITE_CREATE);
    if (registry__bind_text(st, 1, name) < 0 ||
        registry__bind_text(st, 2, registry__empty(labels_json) ? "{}" : labels_json) < 0 ||
        registry__bind_i64(st, 3, now) < 0) {
        registry__done(st);
        rc = -EIO;
        goto out;
    }
    rc = registry__exec(st);
    /* Other hubs' site watchers see it added, as this hub's do. */
    if (rc == 0)
        rc = note_changed(r, name);
out:
    return registry__tx_end(r, rc);
}

static int site_get_by(struct registry *r, enum stmt_id id, const char *key, struct reg_site *out)
{
    struct reg_stmt *st;
    int rc;

    if (out == NULL)
        return -EINVAL;
    memset(out, 0, sizeof(*out));
    if (r == NULL || registry__empty(key))
        return -EINVAL;
    st = registry__stmt(r, id);
    rc = registry__bind_text(st, 1, key);
    if (rc == 0)
        rc = registry__step(st);
    if (rc == 1)
        rc = site_from_row(st, out);
    else if (rc == 0)
        rc = -ENOENT;
    registry__done(st);
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
    struct reg_stmt *st;
    int rc;

    if (r == NULL || cb == NULL)
        return -EINVAL;
    /* The cached cursor cannot serve a nested listing from inside cb. */
    if (registry__busy(r->st[S_SITE_LIST]))
        return -EBUSY;
    st = registry__stmt(r, S_SITE_LIST);
    while ((rc = registry__step(st)) == 1) {
        rc = site_from_row(st, &s);
        if (rc < 0)
            break;
        rc = cb(&s, arg);
        registry_site_clear(&s);
        if (rc != 0)
            break;
    }
    registry__done(st);
    return rc;
}

/* Classifies a failed conditional UPDATE on a site by name. */
static int site_state_of(struct registry *r, const char *name, int64_t *id, char state[16])
{
    struct reg_stmt *st = registry__stmt(r, S_SITE_STATE_OF);
    int rc = registry__bind_text(st, 1, name);

    if (rc == 0)
        rc = registry__step(st);
    if (rc == 1) {
        if (id)
            *id = registry__col_i64(st, 0);
        if (state)
            registry__copy_col(st, 1, state, 16);
        rc = 0;
    } else if (rc == 0) {
        rc = -ENOENT;
    }
    registry__done(st);
    return rc;
}

int registry_site_set_state(struct registry *r, const char *name, enum reg_site_state state)
{
    struct reg_stmt *st;
    int64_t id = 0;
    int rc;

    if (r == NULL || registry__empty(name) ||
        (state != REG_SITE_ACTIVE && state != REG_SITE_DISABLED))
        return -EINVAL;
    rc = registry__tx_begin(r);
    if (rc < 0)
        return rc;
    st = registry__stmt(r, S_SITE_SET_STATE);
    if (registry__bind_text(st, 1, name) < 0 ||
        registry__bind_text(st, 2, registry_site_state_name(state)) < 0) {
        registry__done(st);
        rc = -EIO;
        goto out;
    }
    rc = registry__exec(st);
    if (rc < 0)
        goto out;
    if (registry__changes(r) == 1) {
        rc = site_state_of(r, name, &id, NULL);
        if (rc == 0)
            rc =
                registry__note_site(r, state == REG_SITE_DISABLED ? REG_NOTE_CUT : REG_NOTE_CHANGED,
                                    id, name, REG_CUT_DISABLED);
        goto out;
    }
    /* Not changed: either no such site, or it is pending/revoked (no key to use). */
    rc = site_state_of(r, name, NULL, NULL);
    if (rc == 0)
        rc = -EINVAL;
out:
    return registry__tx_end(r, rc);
}

int registry_site_revoke(struct registry *r, const char *name)
{
    struct reg_stmt *st;
    int64_t id = 0;
    int rc;

    if (r == NULL || registry__empty(name))
        return -EINVAL;
    rc = registry__tx_begin(r);
    if (rc < 0)
        return rc;
    rc = site_state_of(r, name, &id, NULL);
    if (rc < 0)
        goto out;
    st = registry__stmt(r, S_SITE_REVOKE);
    registry__bind_i64(st, 1, id);
    rc = registry__exec(st);
    if (rc < 0)
        goto out;
    /* Tokens issued before the revoke must not bring the site back. */
    st = registry__stmt(r, S_SITE_REVOKE_TOKENS);
    registry__bind_i64(st, 1, id);
    registry__bind_i64(st, 2, (int64_t)time(NULL));
    rc = registry__exec(st);
    if (rc < 0)
        goto out;
    rc = registry__note_site(r, REG_NOTE_CUT, id, name, REG_CUT_REVOKED);
    if (rc < 0)
        goto out;
    rc = registry__tx_commit(r);
out:
    if (rc < 0)
        registry__tx_rollback(r);
    return rc;
}

int registry__lock_sites(struct registry *r, const int64_t *ids, size_t n)
{
    struct reg_stmt *st;
    char *list = NULL;
    size_t cap = n * 21 + 3, len = 0;
    int rc = -ENOMEM;

    if (n == 0)
        return 0;
    if ((list = malloc(cap)) == NULL)
        goto out;
    list[len++] = '{';
    for (size_t i = 0; i < n; i++)
        len += (size_t)snprintf(list + len, cap - len, "%s%" PRId64, i ? "," : "", ids[i]);
    list[len++] = '}';
    list[len] = '\0';
    st = registry__stmt(r, S_SITES_LOCK);
    if (registry__bind_text(st, 1, list) < 0) {
        registry__done(st);
        rc = -EIO;
        goto out;
    }
    rc = registry__exec(st);
out:
    free(list);
    return rc;
}

int registry_site_remove(struct registry *r, const char *name)
{
    struct reg_stmt *st;
    int64_t id = 0;
    int rc;

    if (r == NULL || registry__empty(name))
        return -EINVAL;
    rc = registry__tx_begin(r);
    if (rc < 0)
        return rc;
    rc = site_state_of(r, name, &id, NULL);
    if (rc < 0)
        goto out;
    st = registry__stmt(r, S_SITE_REMOVE);
    if (registry__bind_text(st, 1, name) < 0) {
        registry__done(st);
        rc = -EIO;
        goto out;
    }
    rc = registry__exec(st);
    if (rc == 0 && registry__changes(r) == 0)
        rc = -ENOENT;
    if (rc == 0)
        rc = registry__note_site(r, REG_NOTE_CUT, id, name, REG_CUT_REMOVED);
out:
    return registry__tx_end(r, rc);
}

int registry_site_seen(struct registry *r, int64_t site_id, int64_t last_seen,
                       const char *agent_version, const char *services_json,
                       const char *remote_addr)
{
    struct reg_stmt *st;
    int rc = 0;

    if (r == NULL)
        return -EINVAL;
    st = registry__stmt(r, S_SITE_SEEN);
    registry__bind_i64(st, 1, site_id);
    registry__bind_i64(st, 2, last_seen);
    /* Agent version and address come from the network: cut, never refuse. */
    if (agent_version)
        rc |= registry__bind_text_cut(st, 3, agent_version,
                                      sizeof(((struct reg_site *)0)->agent_version) - 1);
    rc |= registry__bind_text(st, 4, services_json);
    if (remote_addr)
        rc |= registry__bind_text_cut(st, 5, remote_addr,
                                      sizeof(((struct reg_site *)0)->remote_addr) - 1);
    if (rc != 0) {
        registry__done(st);
        return -EIO;
    }
    if (agent_version == NULL) {
        rc = registry__exec(st);
        if (rc == 0 && registry__changes(r) == 0)
            rc = -ENOENT;
        return rc;
    }
    /* Two rows change: one transaction, one commit (one fsync). */
    rc = registry__tx_begin(r);
    if (rc < 0) {
        registry__done(st);
        return rc;
    }
    rc = registry__exec(st);
    if (rc == 0 && registry__changes(r) == 0)
        rc = -ENOENT;
    if (rc == 0) {
        st = registry__stmt(r, S_SESS_AGENT);
        registry__bind_i64(st, 1, site_id);
        if (registry__bind_text_cut(st, 2, agent_version,
                                    sizeof(((struct reg_session *)0)->agent_version) - 1) < 0) {
            registry__done(st);
            rc = -EIO;
        } else {
            rc = registry__exec(st);
        }
    }
    if (rc == 0)
        rc = registry__tx_commit(r);
    if (rc < 0)
        registry__tx_rollback(r);
    return rc;
}

int registry_site_set_labels(struct registry *r, const char *name, const char *labels_json)
{
    struct reg_stmt *st;
    int rc;

    if (r == NULL || registry__empty(name) || registry__empty(labels_json))
        return -EINVAL;
    rc = registry__tx_begin(r);
    if (rc < 0)
        return rc;
    st = registry__stmt(r, S_SITE_SET_LABELS);
    if (registry__bind_text(st, 1, name) < 0 || registry__bind_text(st, 2, labels_json) < 0) {
        registry__done(st);
        rc = -EIO;
        goto out;
    }
    rc = registry__exec(st); /* not a JSON object: CHECK -> -EINVAL */
    if (rc == 0 && registry__changes(r) == 0)
        rc = -ENOENT;
    if (rc == 0)
        rc = note_changed(r, name);
out:
    return registry__tx_end(r, rc);
}

/* The name and pin ("" none) of site id; -ENOENT unknown. */
int registry__site_name_pin(struct registry *r, int64_t id, char name[TOKEN_NAME_MAX + 1],
                            char pin[CRYPTO_PIN_LEN + 1])
{
    struct reg_stmt *st = registry__stmt(r, S_SITE_NAME_PIN);
    int rc;

    registry__bind_i64(st, 1, id);
    rc = registry__step(st);
    if (rc == 1) {
        registry__copy_col(st, 0, name, TOKEN_NAME_MAX + 1);
        registry__copy_col(st, 1, pin, CRYPTO_PIN_LEN + 1);
        rc = 0;
    } else if (rc == 0) {
        rc = -ENOENT;
    }
    registry__done(st);
    return rc;
}

static int site_id_exists(struct registry *r, int64_t id)
{
    struct reg_stmt *st = registry__stmt(r, S_SITE_ID_EXISTS);
    int rc;

    registry__bind_i64(st, 1, id);
    rc = registry__step(st);
    registry__done(st);
    return rc;
}

int registry_site_rotate_pin(struct registry *r, int64_t site_id, const char *old_pin,
                             const char *new_pin)
{
    char name[TOKEN_NAME_MAX + 1], pin[CRYPTO_PIN_LEN + 1];
    struct reg_stmt *st;
    int rc;

    if (r == NULL || registry__empty(old_pin) || registry__empty(new_pin))
        return -EINVAL;
    rc = registry__tx_begin(r);
    if (rc < 0)
        return rc;
    st = registry__stmt(r, S_SITE_ROTATE);
    registry__bind_i64(st, 1, site_id);
    if (registry__bind_text(st, 2, old_pin) < 0 || registry__bind_text(st, 3, new_pin) < 0) {
        registry__done(st);
        rc = -EIO;
        goto out;
    }
    rc = registry__exec(st);
    if (rc < 0)
        goto out;
    if (registry__changes(r) == 1) {
        rc = registry__site_name_pin(r, site_id, name, pin);
        if (rc == 0)
            rc = registry__note_site(r, REG_NOTE_CUT, site_id, name, REG_CUT_ROTATED);
        goto out;
    }
    /* No site with this id holds old_pin (unknown, or rotated meanwhile). */
    rc = site_id_exists(r, site_id);
    if (rc >= 0)
        rc = -ENOENT;
out:
    return registry__tx_end(r, rc);
}
