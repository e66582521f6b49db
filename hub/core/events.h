/* Hub events: lower layers announce what happened, higher ones subscribe (a site came online). */
/* SPDX-License-Identifier: MIT */
#ifndef TETHER_EVENTS_H
#define TETHER_EVENTS_H

#include <sys/queue.h>

struct tunnel;

/* A site's tunnel has answered its hello: its services are known and it
 * takes requests. t is borrowed for the call; it is open (not closing). */
typedef void (*events_site_online_fn)(void *arg, struct tunnel *t);

/* What else happened to a site, for watchers (GET /v1/events). */
enum events_site_kind {
    EVENTS_SITE_OFFLINE, /* its tunnel closed */
    EVENTS_SITE_CHANGED, /* the API changed it (state, labels, key, added, removed) */
};
/* site is the site's name, borrowed for the call. */
typedef void (*events_site_fn)(void *arg, enum events_site_kind kind, const char *site);

/* One subscription, owned by the subscriber (embedded in its state): it
 * stays linked until events_unsubscribe. Either callback may be NULL, not
 * both. */
struct events_sub {
    LIST_ENTRY(events_sub) link;
    events_site_online_fn site_online;
    events_site_fn site_event;
    void *arg;
};
LIST_HEAD(events_subs, events_sub);

/* Links s into the subscribers (struct hub's subs); s->site_online and
 * s->arg are set by the caller. */
void events_subscribe(struct events_subs *subs, struct events_sub *s);
void events_unsubscribe(struct events_sub *s);
/* Tells every subscriber (the latest first). A subscriber may unsubscribe
 * itself from inside its call, not another one. */
void events_site_online(struct events_subs *subs, struct tunnel *t);
/* The same for an offline or changed site. */
void events_site(struct events_subs *subs, enum events_site_kind kind, const char *site);

#endif
