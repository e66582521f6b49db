/* Counters the hub's layers keep for /metrics: connections by kind, handshake ends, per-site
 * traffic. */
/* SPDX-License-Identifier: MIT */
#ifndef TETHER_STATS_H
#define TETHER_STATS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>

#include "../../common/hist.h"
#include "../../common/token.h"

/* Each layer counts the events it owns (listener, tunnel, user front ends,
 * proxy) into struct hub; hub/api/metrics.c only formats. Counting is a
 * few additions: no allocation and no SQLite per request. */

struct hub;
struct conn;

/* Open connections by kind (struct hub's n_conns). */
enum stats_conn_kind {
    STATS_CONN_HANDSHAKE, /* accepted, TLS handshake not finished */
    STATS_CONN_TUNNEL,    /* a site's tunnel, live, standby or closing */
    STATS_CONN_USER_H1,   /* a user's HTTP/1.1 connection */
    STATS_CONN_USER_H2,   /* a user's HTTP/2 connection */
    STATS_CONN_NKINDS
};
/* "handshake", "tunnel", "user_h1", "user_h2"; static. */
const char *stats_conn_kind_name(enum stats_conn_kind k);

/* What a handshake was for, as far as the hub knew when it ended: the
 * ClientHello's ALPN says tunnel or user; before it, unknown. */
enum stats_hs_kind { STATS_HS_UNKNOWN, STATS_HS_TUNNEL, STATS_HS_USER, STATS_HS_NKINDS };
/* "unknown", "tunnel", "user"; static. */
const char *stats_hs_kind_name(enum stats_hs_kind k);

/* How a handshake ended (struct hub's n_handshakes). */
enum stats_hs_end {
    STATS_HS_ACCEPTED,        /* the connection became a tunnel or a user connection */
    STATS_HS_UNKNOWN_KEY,     /* a site key the registry does not hold */
    STATS_HS_SITE_NOT_ACTIVE, /* the key's site is disabled (or not enrolled) */
    STATS_HS_NO_VERIFIED_KEY, /* tether/1 without a checked client certificate */
    STATS_HS_REGISTRY_ERROR,  /* the key could not be looked up */
    STATS_HS_USER_CONN_CAP,   /* max_user_conns_per_ip */
    STATS_HS_FD_RESERVE,      /* the descriptor reserve is for tunnels */
    STATS_HS_HANDSHAKE_CAP,   /* too many handshakes waiting from one address */
    STATS_HS_NOT_TLS,         /* the first bytes were no TLS ClientHello */
    STATS_HS_TLS_ERROR,       /* the TLS handshake failed */
    STATS_HS_TIMEOUT,         /* handshake_timeout */
    STATS_HS_PEER_CLOSED,     /* the peer went away first */
    STATS_HS_OUT_OF_MEMORY,
    STATS_HS_OTHER, /* the hub closed it for another reason (a drain) */
    STATS_HS_NENDS
};
/* "accepted", "unknown_key", ...; static. */
const char *stats_hs_end_name(enum stats_hs_end e);

/* --- per site --- */

/* Status classes 1xx to 5xx of requests. */
#define STATS_CLASSES 5
/* Upper bounds of the proxy latency histogram, in seconds. */
#define STATS_LATENCY_BUCKETS 12
extern const double stats_latency_le[STATS_LATENCY_BUCKETS];

/* Requests of one service the site announced, by status class. */
struct stats_service {
    char name[TOKEN_NAME_MAX + 1];
    uint64_t by_class[STATS_CLASSES];
};

/* One open tunnel's connection counted into its site's bytes; embedded in
 * the tunnel, linked into its site's entry while the connection is open. */
struct stats_site;
struct stats_tap {
    LIST_ENTRY(stats_tap) link;
    struct stats_site *site; /* NULL when not linked (or the site was forgotten) */
    const struct conn *conn; /* not owned: the tunnel's connection */
};
LIST_HEAD(stats_tap_list, stats_tap);

/* A registered site's counters since the hub started: created when it
 * first connects, kept across reconnects, freed when the site is removed.
 * So their number is bounded by the registry's sites, and a service's
 * counters exist only for a name the site itself announced. */
struct stats_site {
    int64_t site_id;
    uint64_t bytes_in, bytes_out; /* of its closed tunnel connections */
    struct stats_tap_list taps;   /* its open tunnel connections; not owned */
    struct stats_service *svc;    /* owned; the site's announced services */
    size_t n_svc;
    struct hist latency; /* request start to response head, seconds */
};

/* The entries, sorted by site id (a binary search per request). Owned by
 * struct hub; each entry owned by the table. */
struct stats_sites {
    struct stats_site **v;
    size_t n, cap;
};

/* Links tap (for the connection c) into the site's entry, made first if
 * the site has none. -ENOMEM: nothing linked, the site goes uncounted. */
int stats_site_tap(struct hub *h, int64_t site_id, struct stats_tap *tap, const struct conn *c);
/* The connection closes: its bytes move into the entry's, the tap leaves. */
void stats_site_untap(struct stats_tap *tap);
/* The site (now) announces these services: counters of names it still
 * announces are kept, others dropped, new ones start at 0. Nothing when
 * the site has no entry; -ENOMEM keeps the old set. names are borrowed. */
int stats_site_services(struct hub *h, int64_t site_id, char *const *names, size_t n);
/* A proxied request to service ended with status (0: none was sent) and
 * its response head came head_s seconds after it started (< 0: none came).
 * It counts in the hub's totals, and in the site's entry if it has one; a
 * service the site did not announce counts in no per-service series. */
void stats_site_request(struct hub *h, int64_t site_id, const char *service, int status,
                        double head_s);
/* Copies the latency of every site's requests together into out (empty
 * before the first). */
void stats_hub_latency(const struct hub *h, struct hist *out);
/* The site was removed: its entry is freed (its taps unlinked). */
void stats_site_forget(struct hub *h, int64_t site_id);
/* The site's entry, or NULL; borrowed until the loop runs again. */
const struct stats_site *stats_site_find(const struct hub *h, int64_t site_id);
/* Bytes from and to the site so far: its closed connections' and its open
 * ones'. */
void stats_site_bytes(const struct stats_site *s, uint64_t *in, uint64_t *out);
/* Frees every entry (at exit). */
void stats_sites_free(struct hub *h);

#endif
