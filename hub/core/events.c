/* Hub events (hub/core/events.h): the tunnel layer says a site is online without knowing who
 * listens. */
/* SPDX-License-Identifier: MIT */
#include "events.h"

#include <assert.h>
#include <stddef.h>

void events_subscribe(struct events_subs *subs, struct events_sub *s)
{
    assert(s->site_online != NULL || s->site_event != NULL);
    LIST_INSERT_HEAD(subs, s, link);
}

void events_unsubscribe(struct events_sub *s)
{
    LIST_REMOVE(s, link);
}

void events_site_online(struct events_subs *subs, struct tunnel *t)
{
    struct events_sub *s, *next;

    /* A subscriber may unsubscribe itself from inside its call (glibc's
     * <sys/queue.h> has no LIST_FOREACH_SAFE). */
    for (s = LIST_FIRST(subs); s != NULL; s = next) {
        next = LIST_NEXT(s, link);
        if (s->site_online != NULL)
            s->site_online(s->arg, t);
    }
}

void events_site(struct events_subs *subs, enum events_site_kind kind, const char *site)
{
    struct events_sub *s, *next;

    for (s = LIST_FIRST(subs); s != NULL; s = next) {
        next = LIST_NEXT(s, link);
        if (s->site_event != NULL)
            s->site_event(s->arg, kind, site);
    }
}
