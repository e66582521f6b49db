/* Notes to other hubs: their payloads (sent in a change's transaction) and the listener's dispatch.
 */
/* SPDX-License-Identifier: MIT */
#include "notes.h"
#include "store_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Payloads (PostgreSQL's NOTIFY, at most 8000 bytes): on "tether_site",
 * "cut:<id>:<why>:<name>", "chg:<id>:<name>" or "ses:<id>:<session>:<hub>"
 * (a hub opened a session of site id); on "tether_token",
 * "chg:<name>" (the token's); on "tether_query", "new:<query id>" or
 * "res:<query id>". Names are [a-z0-9-] (never ':'), so the name ends the
 * payload. */

static const char *const cut_words[REG_CUT_NWHY] = {
    [REG_CUT_REVOKED] = "revoked",       [REG_CUT_DISABLED] = "disabled",
    [REG_CUT_REMOVED] = "removed",       [REG_CUT_ROTATED] = "rotated",
    [REG_CUT_REENROLLED] = "reenrolled",
};

const char *registry_cut_word(enum reg_cut_why why)
{
    return (unsigned)why < REG_CUT_NWHY ? cut_words[why] : NULL;
}

/* A site name as the schema allows it. */
static int name_ok(const char *s)
{
    size_t n = strlen(s);

    if (n == 0 || n > TOKEN_NAME_MAX || s[0] == '-')
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
            return 0;
    return 1;
}

int registry_note_parse(const char *channel, const char *payload, struct reg_note *out)
{
    const char *p, *colon;
    char *end;
    long long id;

    memset(out, 0, sizeof(*out));
    if (channel == NULL || payload == NULL)
        return -EINVAL;
    if (strcmp(channel, "tether_token") == 0) {
        out->kind = REG_NOTE_TOKENS;
        if (strncmp(payload, "chg", 3) != 0 || (payload[3] != '\0' && payload[3] != ':'))
            return -EINVAL;
        /* A name this hub would not take still moves its caches: a token
         * note is never dropped. */
        if (payload[3] == ':' && name_ok(payload + 4))
            snprintf(out->site, sizeof(out->site), "%s", payload + 4);
        return 0;
    }
    if (strcmp(channel, "tether_query") == 0) {
        if (strncmp(payload, "new:", 4) == 0)
            out->kind = REG_NOTE_QUERY;
        else if (strncmp(payload, "res:", 4) == 0)
            out->kind = REG_NOTE_RESULTS;
        else
            return -EINVAL;
        if (payload[4] < '1' || payload[4] > '9')
            return -EINVAL;
        errno = 0;
        id = strtoll(payload + 4, &end, 10);
        if (*end != '\0' || errno != 0 || id <= 0)
            return -EINVAL;
        out->query_id = (int64_t)id;
        return 0;
    }
    if (strcmp(channel, "tether_site") != 0)
        return -EINVAL;
    if (strncmp(payload, "ses:", 4) == 0) {
        long long v[3];

        p = payload + 4;
        for (int i = 0; i < 3; i++) {
            if (*p < '1' || *p > '9')
                return -EINVAL;
            errno = 0;
            v[i] = strtoll(p, &end, 10);
            if (errno != 0 || v[i] <= 0 || *end != (i < 2 ? ':' : '\0'))
                return -EINVAL;
            p = end + 1;
        }
        out->kind = REG_NOTE_SESSION;
        out->site_id = (int64_t)v[0];
        out->session_id = (int64_t)v[1];
        out->hub_id = (int64_t)v[2];
        return 0;
    }
    if (strncmp(payload, "cut:", 4) == 0)
        out->kind = REG_NOTE_CUT;
    else if (strncmp(payload, "chg:", 4) == 0)
        out->kind = REG_NOTE_CHANGED;
    else
        return -EINVAL;
    p = payload + 4;
    if (*p < '0' || *p > '9')
        return -EINVAL;
    id = strtoll(p, &end, 10);
    if (*end != ':' || id <= 0)
        return -EINVAL;
    out->site_id = (int64_t)id;
    p = end + 1;
    if (out->kind == REG_NOTE_CUT) {
        colon = strchr(p, ':');
        if (colon == NULL)
            return -EINVAL;
        out->why = REG_CUT_NWHY;
        for (int i = 0; i < REG_CUT_NWHY; i++)
            if (strlen(cut_words[i]) == (size_t)(colon - p) &&
                strncmp(p, cut_words[i], (size_t)(colon - p)) == 0)
                out->why = (enum reg_cut_why)i;
        if (out->why == REG_CUT_NWHY)
            return -EINVAL;
        p = colon + 1;
    }
    if (!name_ok(p))
        return -EINVAL;
    snprintf(out->site, sizeof(out->site), "%s", p);
    return 0;
}

int registry__note_site(struct registry *r, enum reg_note_kind kind, int64_t site_id,
                        const char *site, enum reg_cut_why why)
{
    char payload[32 + TOKEN_NAME_MAX + 16];
    struct reg_stmt *st;

    if (kind == REG_NOTE_CUT && registry_cut_word(why) != NULL)
        snprintf(payload, sizeof(payload), "cut:%" PRId64 ":%s:%s", site_id, registry_cut_word(why),
                 site);
    else if (kind == REG_NOTE_CHANGED)
        snprintf(payload, sizeof(payload), "chg:%" PRId64 ":%s", site_id, site);
    else
        return -EINVAL;
    st = registry__stmt(r, S_NOTIFY_SITE);
    if (registry__bind_text(st, 1, payload) < 0) {
        registry__done(st);
        return -EIO;
    }
    return registry__exec(st);
}

int registry__note_tokens(struct registry *r, const char *name)
{
    char payload[8 + TOKEN_NAME_MAX + 1];
    struct reg_stmt *st = registry__stmt(r, S_NOTIFY_TOKENS);

    snprintf(payload, sizeof(payload), "chg:%s", name);
    if (registry__bind_text(st, 1, payload) < 0) {
        registry__done(st);
        return -EIO;
    }
    return registry__exec(st);
}

int registry__note_session(struct registry *r, int64_t site_id, int64_t session_id)
{
    char payload[80];
    struct reg_stmt *st = registry__stmt(r, S_NOTIFY_SITE);

    snprintf(payload, sizeof(payload), "ses:%" PRId64 ":%" PRId64 ":%" PRId64, site_id, session_id,
             r->hub_id);
    if (registry__bind_text(st, 1, payload) < 0) {
        registry__done(st);
        return -EIO;
    }
    return registry__exec(st);
}

int registry__note_query(struct registry *r, enum reg_note_kind kind, int64_t query_id)
{
    char payload[32];
    struct reg_stmt *st = registry__stmt(r, S_NOTIFY_QUERY);

    snprintf(payload, sizeof(payload), "%s:%" PRId64, kind == REG_NOTE_QUERY ? "new" : "res",
             query_id);
    if (registry__bind_text(st, 1, payload) < 0) {
        registry__done(st);
        return -EIO;
    }
    return registry__exec(st);
}

int registry_listen(struct registry *r, uv_loop_t *loop, const struct registry_listen_ops *ops,
                    void *arg, struct registry_listener **out)
{
    *out = NULL;
#ifdef TETHER_HAVE_PG
    if (r != NULL && r->drv == &registry__pg)
        return registry__pg_listen(r, loop, ops, arg, out);
#else
    (void)loop;
    (void)ops;
    (void)arg;
#endif
    (void)r;
    return -ENOTSUP;
}

void registry_listen_stop(struct registry_listener *l)
{
#ifdef TETHER_HAVE_PG
    if (l != NULL)
        registry__pg_listen_stop(l);
#else
    (void)l;
#endif
}
