/* The hub daemon's shared state: loop, registry, TLS contexts, listeners and live site tunnels. */
/* SPDX-License-Identifier: MIT */
#ifndef TETHER_HUB_H
#define TETHER_HUB_H

#include <stdint.h>
#include <sys/queue.h>
#include <uv.h>

#include "../../common/conn.h"
#include "../../common/crypto.h"
#include "../../common/token.h"
#include "../store/registry.h"
#include "events.h"
#include "stats.h"

#define HUB_MAX_LISTEN 8

struct hub;
struct tunnel;
struct site_watch;
struct query_engine;
struct ureq;
struct auth_cache;
struct pin_entry;

/* Called by the user front ends (hub/http) once per request whose head is
 * complete; it answers r or installs a handler (ureq_set_handler). The
 * protocol layer knows no handler by name: main sets this to the API's
 * router. */
typedef void (*hub_dispatch_fn)(struct hub *h, struct ureq *r);

struct hub_config {
    char name[256];                                         /* host name written into tokens */
    char public_eps[TOKEN_HUB_MAX][TOKEN_ENDPOINT_MAX + 1]; /* endpoints for tokens */
    size_t n_public;
    uint64_t ping_interval_ms;         /* default 20000 */
    uint64_t handshake_timeout_ms;     /* default 10000 */
    uint64_t request_timeout_ms;       /* proxied request with no response head; default 60000 */
    uint64_t drain_grace_ms;           /* SIGTERM grace; default 10000 */
    int64_t enroll_ttl_s;              /* default 86400 */
    size_t api_body_max;               /* JSON API request bodies; default 1 MiB */
    size_t query_body_max;             /* a site's answer stored per query; default 1 MiB */
    int max_pending_handshakes_per_ip; /* default 64 */
    /* User connections (docs/operator-guide.md, "Connection limits"). */
    uint64_t request_head_timeout_ms; /* first head after TLS, or a head once begun; 10000 */
    uint64_t idle_timeout_ms;         /* keep-alive / HTTP/2 with no stream open; 60000 */
    uint64_t request_body_timeout_ms; /* a request body with no progress; 30000 */
    int max_user_conns_per_ip;        /* default 256 */
    int fd_reserve;                   /* descriptors users may not take; default 256 */
    int trim_after_closes;            /* fall in open conns that gives heap back; 256; 0 off */
    int access_log;                   /* an "access" line per proxied request; default on */
    /* /metrics exports per-site series while the registry holds at most
     * this many sites; 0: never. Default 500. */
    int metrics_max_sites;
    /* Stalled proxied responses (the user does not read) one user
     * connection, and one token, may hold on one site; default 64 and 128.
     * A stream that stalls past them is reset, new requests get 429. */
    int max_stalled_streams_per_conn;
    int max_stalled_streams_per_token;
    /* Proxied requests in flight (running, waiting for a slot, or with
     * response bytes still in the hub) one user connection, and one token,
     * may have on one site; default 128 and 256. More get 429. */
    int max_requests_per_conn;
    int max_requests_per_token;
    /* Long-lived streams (WebSocket, CONNECT, gRPC calls: their own pool of
     * a site's stream slots, docs/protocol.md) one token, and all tokens
     * together, may have on one site; default 512 and 768. More get 429
     * (token) or 503 (site). */
    int max_long_streams_per_token;
    int max_long_streams_per_site;
};

/* Why the hub refused or reset a proxied request (hub/proxy.c; /metrics). */
enum proxy_refusal {
    PR_CONN_REQUESTS,  /* max_requests_per_conn: 429 */
    PR_TOKEN_REQUESTS, /* max_requests_per_token or the token's share of a busy site: 429 */
    PR_STALLED,        /* max_stalled_streams_*: 429 */
    PR_STALL_RESET,    /* a stream stalled past max_stalled_streams_*: reset */
    PR_SITE_BUSY,      /* the site's 1024 requests in flight: 503 */
    PR_TOKEN_LONG,     /* max_long_streams_per_token: 429 */
    PR_SITE_LONG,      /* the site's long-lived pool is full: 503 */
    PR_N
};

/* Established (and handshaking) user connections per source address; IPv6
 * addresses count per /64. A chained hash of counted keys. */
struct ipcount_slot {
    SLIST_ENTRY(ipcount_slot) next;
    int count;
    char key[64];
};
SLIST_HEAD(ipcount_chain, ipcount_slot);
struct ipcount {
    struct ipcount_chain *buckets; /* owned */
    size_t n_buckets, n_keys;
};

/* The listener's queues (hub/net/listen.c reads and changes them):
 * handshakes waiting behind the per-address cap, those taken into the
 * descriptor reserve, and the refusal log rate limits. In struct hub so two
 * hubs in one process each have their own. */
struct handshake;
TAILQ_HEAD(handshake_queue, handshake);
struct hub_refusals {
    uint64_t last_ms, n; /* last warning logged; refusals since */
};
struct hub_listen_state {
    /* Waiters for the next loop turn's handshake budget, or whose address
     * found no free slot in pending[] (256 addresses mid-handshake), oldest
     * first; those over their address's cap wait in its slot. Not owned
     * (each owned by its conn); TAILQ_INIT by hub_listen. */
    struct handshake_queue queued;
    size_t n_waiters; /* in queued and in every pending[].waiters */
    /* Handshakes started in the loop turn of turn_ms (uv_now), and the idle
     * handle that starts queued ones on the next turns. */
    uint64_t turn_ms;
    int turn_started;
    uv_idle_t admit_idle;
    int admit_idle_on;                /* initialised */
    struct handshake_queue probation; /* oldest first; TAILQ_INIT by hub_listen */
    int n_probation;                  /* in the reserve, in probation or not */
    struct hub_refusals cap_refusals, reserve_refusals, wait_refusals;
    /* Out of memory at accept: the socket libuv holds is taken into
     * reject_tcp and closed; listeners wait their turn in reject_queue. */
    uv_tcp_t reject_tcp;
    int reject_busy;
    uv_stream_t *reject_queue[HUB_MAX_LISTEN]; /* listeners, not owned */
    size_t n_reject_queue;
    struct pin_entry *pins; /* hub/net/listen.c's pin cache; NULL until used (hub_listen_free) */
};

/* Proxied requests in flight, and how many are stalled, per (site, user
 * connection) and per (site, token): hub/proxy.c's. */
#define HUB_HOLD_BUCKETS 64
struct proxy_hold;
LIST_HEAD(proxy_hold_list, proxy_hold);

/* Live tunnels by site id, and the standby list: a small chained hash so
 * 10k sites stay O(1). Declared here so struct hub embeds it; only
 * hub/tunnel/sitemap.c reads or changes it (sitemap.h). */
struct sitemap_entry;
LIST_HEAD(sitemap_chain, sitemap_entry);
struct sitemap {
    struct sitemap_chain *buckets; /* owned; n_buckets heads */
    size_t n_buckets;
    size_t count; /* live entries */
    /* Tunnels that connected while an older tunnel of their site was live:
     * they take its place when they answer the hello, so a connection that
     * never does (tether-site doctor's credential check, a stray second
     * agent) cannot cut a working site off. */
    struct sitemap_chain standby;
    size_t n_standby;
};

struct hub {
    uv_loop_t *loop;
    struct conn_ctx conns;    /* every connection of this hub (conn_ctx_init on loop) */
    hub_dispatch_fn dispatch; /* every user request's head goes here */
    char state_dir[1024];
    struct hub_config cfg;
    struct registry *reg; /* owned */
    /* Owned: the records of connects, hellos and disconnects, written off
     * the loop (store/recorder.h); NULL in hubs without one (unit tests),
     * which write them directly on reg. */
    struct recorder *rec;
    struct crypto_identity id; /* owned */
    int64_t hub_id;            /* this hub's row in the registry's hubs (cluster) */
    struct peers *peers;       /* links to the cluster's other hubs (hub/tunnel/peer.h); owned */
    /* The cluster's hubs as a hello tells sites (hub/tunnel/hello_stream.c):
     * owned JSON text or NULL, and when it was read (loop ms). */
    char *hubs_json;
    uint64_t hubs_read_ms;
    void *tunnel_ctx; /* WOLFSSL_CTX*, owned */
    void *user_ctx;   /* WOLFSSL_CTX*, owned */
    uv_tcp_t listeners[HUB_MAX_LISTEN];
    size_t n_listeners;
    struct sitemap tunnels;   /* entries not owned: each tunnel is owned by its conn */
    struct query_engine *qe;  /* owned by hub/query.c */
    struct events_subs subs;  /* events subscribers (core/events.h); not owned */
    struct site_watch *watch; /* GET /v1/events watchers (hub/api/watch.c); owned there */
    struct proxy_hold_list holds[HUB_HOLD_BUCKETS];
    uv_signal_t sigterm, sigint, sighup;
    uv_timer_t drain_timer;
    int draining;
    uint64_t started_ms;
    /* pending handshakes per source address: tiny open table. A slot with
     * waiters (connections over the cap, oldest first, hub/net/listen.c)
     * always has count > 0: each end of a counted handshake takes the
     * oldest in, so finding the next is O(1) however many wait. */
    struct {
        char ip[48];
        int count;
        struct handshake_queue waiters; /* TAILQ_INIT by hub_listen */
    } pending[256];
    struct ipcount users; /* user connections per source address */
    /* Descriptors: the process limit, those held by other things than
     * connections (measured at listen), and the timer that gives freed heap
     * back after many connections closed (hub/listen.c). */
    long fd_limit;
    int fd_base;
    int fd_reserve; /* cfg.fd_reserve, at most half of fd_limit */
    struct hub_listen_state lst;
    uv_timer_t trim_timer;
    int trim_timer_on;
    size_t conns_peak;   /* most connections open at once since the last trim */
    uint64_t trimmed_ms; /* loop time of the last trim; 0 none yet */
    /* counters for /metrics */
    uint64_t n_requests, n_proxy_requests, n_tunnels_accepted, n_tunnels_refused;
    uint64_t n_users_refused_cap, n_users_refused_reserve, n_users_idle_closed;
    uint64_t n_proxy_refused[PR_N];
    uint64_t proxy_refused_logged_ms[PR_N], proxy_refused_quiet[PR_N]; /* log rate limit */
    size_t n_conns[STATS_CONN_NKINDS]; /* open connections by kind (core/stats.h) */
    /* HTTP/2 uploads whose stream window is widened (hub/http/h2.c, lone
     * uploads), until their stream closes. */
    size_t n_wide_uploads;
    uint64_t n_handshakes[STATS_HS_NKINDS][STATS_HS_NENDS]; /* ended handshakes */
    struct stats_sites site_stats;                          /* per-site counters */
    /* Every site's proxied requests together (stats_site_request): by
     * status class, and the latency to the response head (stats_hub_latency). */
    uint64_t proxy_by_class[STATS_CLASSES];
    struct hist proxy_latency; /* le NULL until the first request */
    /* How late the loop runs a timer due every HUB_LAG_TICK_MS (daemon.c):
     * the loop's lag, le NULL until the daemon starts the timer. */
    struct hist loop_lag;
    uv_timer_t lag_timer;
    uint64_t lag_due_ns; /* uv_hrtime() the timer is due */
    /* Bumped by every state change made through the API, and by every
     * change another hub of a shared database made (hub/cluster.c): read
     * caches of tokens and sites are valid only for the generation they
     * were filled in. */
    uint64_t gen;
    struct auth_cache *auth_cache; /* owned by hub/auth (auth_cache_free); NULL until used */
};

/* Seconds since the epoch: the hub's one wall clock (expiry, audit, last seen). */
int64_t hub_now(void);
/* The test clock-offset file hub_now() honours, or NULL: always NULL unless
 * built with TETHER_TEST_HOOKS. The string is the environment's. */
const char *hub_test_clock_file(void);

#endif
