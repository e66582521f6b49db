/* The cluster as this hub sees it: GET /v1/hubs, and on which hub each site's tunnel is. */
/* SPDX-License-Identifier: MIT */
#include "api_int.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "../http/apijson.h"
#include "../tunnel/peer.h"

static int add_hub(const struct reg_hub *hub, void *arg)
{
    struct site_where *w = arg;
    struct where_hub *n;

    n = realloc(w->hubs, (w->n_hubs + 1) * sizeof(*w->hubs));
    if (n == NULL)
        return -ENOMEM;
    w->hubs = n;
    n = &w->hubs[w->n_hubs++];
    memset(n, 0, sizeof(*n));
    n->id = hub->id;
    memcpy(n->name, hub->name, sizeof(n->name));
    memcpy(n->pin, hub->pin, sizeof(n->pin));
    n->joined_at = hub->joined_at;
    n->public = json_loads(hub->public_json ? hub->public_json : "[]", 0, NULL);
    if (n->public == NULL)
        n->public = json_array();
    return n->public != NULL ? 0 : -ENOMEM;
}

static int add_session(const struct reg_session *s, void *arg)
{
    struct site_where *w = arg;

    if (w->n == w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 64;
        struct reg_session *n = realloc(w->open, cap * sizeof(*n));

        if (n == NULL)
            return -ENOMEM;
        w->open = n;
        w->cap = cap;
    }
    w->open[w->n++] = *s;
    return 0;
}

/* By site, newest session last. */
static int cmp_session(const void *a, const void *b)
{
    const struct reg_session *x = a, *y = b;

    if (x->site_id != y->site_id)
        return x->site_id < y->site_id ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

int where_load(struct hub *h, int64_t site_id, struct site_where *w)
{
    int rc;

    memset(w, 0, sizeof(*w));
    w->self = h->hub_id;
    rc = registry_hub_list(h->reg, add_hub, w);
    /* One hub: every tunnel is here, and the sitemap says which. */
    if (rc < 0 || w->n_hubs < 2)
        goto out;
    rc = registry_session_open_each(h->reg, site_id, add_session, w);
    if (rc < 0)
        goto out;
    if (w->n > 1)
        qsort(w->open, w->n, sizeof(*w->open), cmp_session);
    rc = 0;
out:
    if (rc < 0)
        where_free(w);
    return rc;
}

void where_free(struct site_where *w)
{
    for (size_t i = 0; i < w->n_hubs; i++)
        json_decref(w->hubs[i].public);
    free(w->hubs);
    free(w->open);
    memset(w, 0, sizeof(*w));
}

const struct where_hub *where_hub(const struct site_where *w, int64_t hub_id)
{
    for (size_t i = 0; i < w->n_hubs; i++)
        if (w->hubs[i].id == hub_id)
            return &w->hubs[i];
    return NULL;
}

/* The site's newest open session, or NULL. */
static const struct reg_session *newest(const struct site_where *w, int64_t site_id)
{
    size_t lo = 0, hi = w->n;

    while (lo < hi) { /* the first session past the site's */
        size_t mid = lo + (hi - lo) / 2;

        if (w->open[mid].site_id <= site_id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo > 0 && w->open[lo - 1].site_id == site_id ? &w->open[lo - 1] : NULL;
}

const struct reg_session *where_remote(struct hub *h, const struct site_where *w, int64_t site_id)
{
    const struct reg_session *s = newest(w, site_id);

    /* A hub this one cannot reach cannot serve the site for its users
     * either (and may be dead with its rows still open): offline here. */
    if (s == NULL || s->hub_id <= 0 || s->hub_id == w->self || !peer_link_up(h, s->hub_id))
        return NULL;
    return s;
}

void hubs_list(struct hub *h, struct ureq *r, const struct auth *a, const struct api_match *m)
{
    struct site_where w;
    json_t *arr;
    int rc;

    (void)a;
    (void)m;
    api_read_records(h); /* the connects just seen, as GET /v1/sites */
    if ((rc = where_load(h, 0, &w)) < 0) {
        api_error_store(r, rc, "registry read failed");
        return;
    }
    arr = json_array();
    for (size_t k = 0; k < w.n_hubs; k++) {
        const struct where_hub *hb = &w.hubs[k];
        int self = hb->id == h->hub_id;
        size_t held = 0;

        if (self) {
            held = h->tunnels.count; /* the live tunnels, not the rows */
        } else {
            for (size_t i = 0; i < w.n; i++) /* sessions that are their site's newest */
                held += w.open[i].hub_id == hb->id &&
                        (i + 1 == w.n || w.open[i + 1].site_id != w.open[i].site_id);
        }
        /* json_pack "O" takes a new reference to the endpoints; append_new
         * steals the object. */
        json_array_append_new(arr, json_pack("{s:I,s:s,s:s,s:O,s:I,s:b,s:s,s:I}", "id",
                                             (json_int_t)hb->id, "name", hb->name, "pin", hb->pin,
                                             "public", hb->public, "joined_at",
                                             (json_int_t)hb->joined_at, "self", self, "link",
                                             self                      ? "self"
                                             : peer_link_up(h, hb->id) ? "up"
                                                                       : "down",
                                             "sites", (json_int_t)held));
    }
    where_free(&w);
    apijson_respond(r, 200, json_pack("{s:o}", "hubs", arr));
}
