/* The site agent: dials the hub, keeps one TLS tunnel up, and serves the hub's HTTP/2 requests from
 * local services. */
/* SPDX-License-Identifier: MIT */
#ifndef TETHER_AGENT_H
#define TETHER_AGENT_H

#include <stdint.h>
#include <sys/queue.h>
#include <uv.h>

#include "../common/conn.h"
#include "../common/crypto.h"
#include "../common/h2.h"
#include "../common/net.h"
#include "../common/token.h"
#include "../common/proxyconnect.h"
#include "portholder.h"

/* Hub keys a site trusts: the issuing hub's and the other hubs' of its
 * cluster an enrollment token carries. */
#define AGENT_PIN_MAX 16

#define AGENT_MAX_SERVICES 64

enum agent_state {
    AG_IDLE,
    AG_RESOLVING,
    AG_CONNECTING,
    AG_HANDSHAKE,
    AG_CONNECTED,
    AG_BACKOFF,
    AG_STOPPED,
};

struct agent_service {
    char name[TOKEN_NAME_MAX + 1];
    struct net_url url;
    struct tls_svc_conf tls; /* https:// only: how the service is checked */
    int restricted;          /* only admin tokens and tokens naming it (the hub checks) */
    /* WOLFSSL_CTX* built from tls before the agent starts (https:// only,
     * else NULL); owned by whoever built it (tether-site run). */
    void *tls_ctx;
};

struct sstream;

#define AGENT_PATH_MAX 1024

/* Everything by value except: ctx (owned; the caller frees the agent's ctx
 * when the loop has ended, which may differ from the one it set after a key
 * reload), id (owned, likewise), conn (owned
 * through its close callback), streams (owned). */
struct agent {
    uv_loop_t *loop;
    struct conn_ctx conns; /* the tunnel's connection (one at a time) */
    char site[TOKEN_NAME_MAX + 1];
    char hubs[TOKEN_HUB_MAX][TOKEN_ENDPOINT_MAX + 1];
    size_t n_hubs;
    size_t hub_idx; /* endpoint being tried or in use */
    /* The keys of the hubs of its cluster (site.conf's hub_pin lines): any
     * of them is accepted at every endpoint. */
    char hub_pins[AGENT_PIN_MAX][CRYPTO_PIN_LEN + 1];
    size_t n_pins;
    /* The first n_conf_pins keys and n_conf_hubs endpoints are site.conf's;
     * those after them were learned from the hub's list (learn_hubs: the
     * tether-hubs header of each hello, kept in key_dir/hubs.json; bench
     * agents do not learn). hubs_sig: SHA-256 of the last list applied. */
    size_t n_conf_pins, n_conf_hubs;
    int learn_hubs, has_hubs_sig;
    uint8_t hubs_sig[32];
    struct crypto_identity id;
    void *ctx; /* WOLFSSL_CTX* */
    /* State directory whose site.key/site.crt are loaded again before a dial
     * when site.crt changed (tether-site rotate-key run next to the agent);
     * empty: never. */
    char key_dir[AGENT_PATH_MAX];
    /* STATE/status, rewritten at each state change for `tether-site status`
     * (site/status.h); empty: none. */
    char status_path[AGENT_PATH_MAX];
    char last_error[320]; /* why the last connection ended or failed */
    uint64_t key_sig[3];  /* device, inode, mtime (ns) of site.crt when loaded */
    struct agent_service services[AGENT_MAX_SERVICES];
    size_t n_services;
    int source_port;    /* 0 = any */
    char source_ip[48]; /* numeric local address to dial from, of the hub's family; "" = any */
    uint64_t ping_interval_ms; /* the hub's interval; silence for 2x is death; 0 = no watch */
    uint64_t upstream_timeout_ms;
    uint64_t connect_timeout_ms; /* TCP connect (SYN without SYN-ACK) */
    uint64_t backoff_base_ms, backoff_cap_ms;
    int use_proxy;
    struct proxyconnect_proxy proxy; /* egress HTTP CONNECT proxy when use_proxy */

    enum agent_state state;
    struct conn *conn;
    struct h2 h2;
    struct tls_pin_verifier v;
    uv_getaddrinfo_t gai;
    uv_connect_t connect_req;
    uv_timer_t backoff_timer;
    uv_timer_t watch_timer;
    uv_timer_t connect_timer;
    uv_write_t proxy_wreq;
    char proxy_req[PROXYCONNECT_REQUEST_MAX]; /* the CONNECT request while it is written */
    int proxy_wait;                           /* waiting for the proxy's reply */
    struct proxyconnect_reply proxy_reply;    /* parses it while proxy_wait */
    char close_why[320];                      /* a reason longer than conn's, for the next close */
    unsigned attempt; /* failed rounds over all endpoints since last success */
    /* Loop time of the first failure since the last success (0: connected or
     * never tried): no wait is longer than the time already offline. */
    uint64_t offline_since_ms;
    /* From a draining hub's GOAWAY: the next wait is random within it, once. */
    unsigned hub_window_ms;
    size_t tried_in_round;
    uint64_t last_heard_ms;
    LIST_HEAD(, sstream) streams; /* open streams, owned (zeroed = empty) */
    int stopping;
    int exit_code;
    char fatal[256]; /* set when the agent must stop (e.g. source port taken) */
    /* Observer, may be NULL: called when the hub opens its events stream,
     * which it first does once it took this connection's hello (bench_sites
     * counts complete connects with it). It may close a->conn. */
    void (*on_live)(struct agent *a);
};

/* Fills defaults (ping 20 s, upstream timeout 60 s, connect timeout 10 s, backoff
 * 500 ms..30 s). */
void agent_init(struct agent *a, uv_loop_t *loop);
/* Starts dialing. ctx and identity must be set. */
int agent_start(struct agent *a);
/* GOAWAY, close, no reconnect; the loop ends when everything closed. */
void agent_stop(struct agent *a);
void agent_free(struct agent *a);

/* Writes line (and a newline) on each open GET /.tether/events stream of
 * the hub (docs/protocol.md), e.g. "services-changed" after a->services
 * changed. Streams that carry requests are not touched. */
void agent_announce(struct agent *a, const char *line);

struct hubs_list;
/* The keys and endpoints of l (site/hubs.h) after site.conf's: a->hub_pins
 * and a->hubs become the first n_conf_pins and n_conf_hubs entries plus
 * those of l not among them, as many as fit. The endpoint in use keeps its
 * place in the rotation. -EPERM, and nothing changes, when l names none of
 * site.conf's keys: a list of another cluster (site.conf's hub_pin was
 * changed since) never widens what the operator pinned. l is the caller's. */
int agent_apply_hubs(struct agent *a, const struct hubs_list *l);

/* What the site announces in its HTTP/2 SETTINGS (doctor announces the same). */
extern const struct h2_limits agent_h2_limits;

#endif
