/* The inside of a site tunnel, shared only by the files of hub/tunnel/ (others use tunnel.h). */
/* SPDX-License-Identifier: MIT */
#ifndef TETHER_TUNNEL_INT_H
#define TETHER_TUNNEL_INT_H

#include <stddef.h>
#include <sys/queue.h>

#include "mux.h"
#include "sitemap.h"
#include "tunnel.h"

struct tunnel {
    struct hub *hub;                 /* not owned */
    struct conn *conn;               /* not owned: it owns us through on_close; NULL once closed */
    struct tmux mux;                 /* the HTTP/2 client session and its streams (mux.h) */
    struct sitemap_entry site_entry; /* place in hub->tunnels (sitemap.h) */
    int64_t site_id;
    char site[TOKEN_NAME_MAX + 1];
    uint64_t session_key; /* the recorder's key (or, without one, the row id); 0 none */
    uint64_t key_hash;    /* key_hash() of the pin it was authenticated with */
    int64_t connected_since;
    char agent_version[64];
    char *services_json; /* owned; "[]" until the hello answer */
    uv_timer_t ping_timer;
    int closing;     /* set before the tunnel is freed (tunnel_free_cb asserts it) */
    int hello_done;  /* services known */
    char **services; /* parsed from services_json at hello; owned */
    size_t n_services;
    char *restricted_json; /* owned; "[]" until the hello answer */
    char **restricted;     /* services that need an explicit scope; owned */
    size_t n_restricted;
    /* The site's announcements (GET /.tether/events, hello_stream.c). */
    struct evwatch *ev;   /* the open events stream; owned; NULL when none */
    unsigned ev_failures; /* events streams in a row that ended without news */
    uint64_t ev_retry_ms; /* loop time from which the next one may open */
    int ev_off;           /* the site does not announce (404) or retries ran out */
    int refreshing;       /* a hello refresh is in flight */
    int refresh_again;    /* news came during it: one more afterwards */
    struct stats_tap tap; /* counts conn's bytes into the site's (core/stats.h) */
};

/* Between the tunnel's files (tunnel.c, hello_stream.c). */
/* Sends the hello request; its answer sets the services and, for a standby
 * tunnel, takes over the site (hello_stream.c). */
void tunnel_send_hello(struct tunnel *t);
/* Opens the events stream when none is open and the retry time came
 * (hello_stream.c); called after the first hello and on each ping tick. */
void tunnel_events_tick(struct tunnel *t);
/* Cancels the events stream, if open (drain: it never ends by itself). */
void tunnel_events_stop(struct tunnel *t);
/* Frees services, restricted and their counts (not the JSON texts). */
void tunnel_free_services(struct tunnel *t);
/* 1 while t waits on standby for its hello answer. */
int tunnel_is_standby(const struct tunnel *t);
/* The standby t answered its hello: it becomes the site's live tunnel and
 * the one it replaces is killed (sitemap_take_over). */
void tunnel_take_over(struct tunnel *t);
/* Records that the site was heard at `at` (registry_site_seen), off the
 * loop when the hub has a recorder; NULL arguments stay unchanged. */
void tunnel__record_seen(struct tunnel *t, int64_t at, const char *agent_version,
                         const char *services_json, const char *remote_addr);

#define TUNNEL_OF_ENTRY(e) ((struct tunnel *)((char *)(e)-offsetof(struct tunnel, site_entry)))

#endif
