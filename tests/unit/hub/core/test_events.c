/* Unit tests for hub/core/events.c: site online, offline and changed reach the subscribers that
 * asked. */
/* SPDX-License-Identifier: MIT */
#include <stdio.h>
#include <string.h>

#include "hub/core/events.h"
#include "testutil.h"

struct rec {
    struct events_sub sub;
    int online, offline, changed;
    char last[64];
    int leave; /* unsubscribe itself on its next call */
};

static void on_online(void *arg, struct tunnel *t)
{
    struct rec *r = arg;

    r->online++;
    snprintf(r->last, sizeof(r->last), "%s", (const char *)t);
    if (r->leave)
        events_unsubscribe(&r->sub);
}

static void on_event(void *arg, enum events_site_kind kind, const char *site)
{
    struct rec *r = arg;

    if (kind == EVENTS_SITE_OFFLINE)
        r->offline++;
    else
        r->changed++;
    snprintf(r->last, sizeof(r->last), "%s", site);
    if (r->leave)
        events_unsubscribe(&r->sub);
}

int main(void)
{
    struct events_subs subs = LIST_HEAD_INITIALIZER(subs);
    struct rec q, w, x;
    char name[] = "clinic-a"; /* stands for the tunnel: the callback only passes it on */

    memset(&q, 0, sizeof(q));
    memset(&w, 0, sizeof(w));
    memset(&x, 0, sizeof(x));
    /* The query engine's kind: online only. */
    q.sub.site_online = on_online;
    q.sub.arg = &q;
    /* A watcher's kind: offline and changed (and online). */
    w.sub.site_online = on_online;
    w.sub.site_event = on_event;
    w.sub.arg = &w;
    /* Events only, and it leaves on its first call. */
    x.sub.site_event = on_event;
    x.sub.arg = &x;
    x.leave = 1;
    events_subscribe(&subs, &q.sub);
    events_subscribe(&subs, &w.sub);
    events_subscribe(&subs, &x.sub);

    events_site_online(&subs, (struct tunnel *)name);
    CHECK_EQ_INT(q.online, 1);
    CHECK_EQ_INT(w.online, 1);
    CHECK_EQ_INT(x.online, 0);
    CHECK_EQ_STR(w.last, "clinic-a");

    events_site(&subs, EVENTS_SITE_OFFLINE, "clinic-b");
    CHECK_EQ_INT(q.offline + q.changed, 0); /* no site_event: not called */
    CHECK_EQ_INT(w.offline, 1);
    CHECK_EQ_STR(w.last, "clinic-b");
    CHECK_EQ_INT(x.offline, 1); /* and it left */

    events_site(&subs, EVENTS_SITE_CHANGED, "clinic-c");
    CHECK_EQ_INT(w.changed, 1);
    CHECK_EQ_INT(w.offline, 1);
    CHECK_EQ_INT(x.changed, 0);
    CHECK_EQ_STR(w.last, "clinic-c");

    events_unsubscribe(&w.sub);
    events_site(&subs, EVENTS_SITE_CHANGED, "clinic-d");
    CHECK_EQ_INT(w.changed, 1);
    events_unsubscribe(&q.sub);
    CHECK(LIST_EMPTY(&subs));
    TEST_DONE();
}
