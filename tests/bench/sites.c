/* Benchmark site simulator: many real site agents (own key, own TLS tunnel each) in one loop. */
/* SPDX-License-Identifier: MIT */
/*
 * bench_sites keygen --dir D --prefix P --from I --count N
 *     Makes N identities named P-IIIII (site.key/.crt style files D/P-IIIII.key
 *     and .crt) and prints "NAME PIN" per site, for the runner to register and
 *     enroll through the hub's API.
 * bench_sites run --dir D --prefix P --from I --count N --hub HOST:PORT --hub-pin PIN
 *                 [--service NAME=URL]... [--ping-interval S] [--report-ms MS]
 *     Runs one agent (site/agent.c, unchanged) per identity, all in one libuv
 *     loop, each with its own WOLFSSL_CTX holding its own key. Prints
 *     "loaded N" once, then "connected C of N at T" (T: unix seconds with
 *     milliseconds) whenever the number of connected agents changes. SIGTERM
 *     or SIGINT stops every agent and exits.
 *     --per-source K: agent I dials from its own loopback address, one per K
 *     agents (bench_source_ip), so that one destination is not limited to one
 *     source address's ephemeral ports.
 * bench_sites hold --dir D --prefix P --from I --count N --to HOST:PORT [--per-source K]
 *     The peer of an idle site: N TLS 1.3 connections (ALPN h2, the client
 *     certificate of identity P-I) to a server such as nginx, each with an
 *     HTTP/2 client session (preface and SETTINGS sent, SETTINGS answered),
 *     then quiet. The server's certificate is not checked. Prints "loaded N"
 *     and "connected C of N at T" as run does; SIGTERM or SIGINT closes them.
 * bench_sites aesgcm [--ms MS]
 *     Prints the AES-128-GCM speed of the linked wolfSSL on one core, in MB/s:
 *     the ceiling the report compares bulk transfers with.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>

#include <wolfssl/options.h>
#include <wolfssl/ssl.h>

#include "common/conn.h"
#include "common/crypto.h"
#include "common/h2.h"
#include "common/log.h"
#include "common/net.h"
#include "common/tls.h"
#include "common/token.h"
#include "site/agent.h"
#include "site/conf.h"

struct opts {
    const char *dir;
    const char *prefix;
    long from, count;
    const char *hub;
    const char *hub_pin;
    const char *services[AGENT_MAX_SERVICES];
    size_t n_services;
    long ping_s;
    long report_ms;
    long ms;
    long per_source; /* agents per loopback source address; 0: the kernel picks */
    const char *to;  /* hold: the server */
};

static struct agent *agents;
static WOLFSSL_CTX **ctxs;
static long n_agents;
static long last_reported = -1;
static uv_timer_t report_timer;
static uv_signal_t sig_term, sig_int;

static void site_name(const struct opts *o, long i, char *out, size_t cap)
{
    snprintf(out, cap, "%s-%05ld", o->prefix, o->from + i);
}

/* The loopback address of connection i (global index from + i): 127.10.X.Y,
 * a new one every per_source connections; "" when per_source is 0. */
static void bench_source_ip(const struct opts *o, long i, char *out, size_t cap)
{
    long q;

    if (o->per_source <= 0) {
        out[0] = '\0';
        return;
    }
    q = (o->from + i) / o->per_source;
    snprintf(out, cap, "127.10.%ld.%ld", (q / 250) % 256, q % 250 + 1);
}

static double now_s(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

/* Enough descriptors for thousands of tunnels: the soft limit up to the hard one. */
static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static int cmd_keygen(const struct opts *o)
{
    char name[TOKEN_NAME_MAX + 1];

    for (long i = 0; i < o->count; i++) {
        struct crypto_identity id = {0};
        site_name(o, i, name, sizeof(name));
        if (crypto_identity_generate(name, NULL, 0, &id) != 0 ||
            crypto_identity_save(&id, o->dir, name) != 0) {
            fprintf(stderr, "bench_sites: cannot make the identity of %s in %s\n", name, o->dir);
            crypto_identity_free(&id);
            return 1;
        }
        printf("%s %s\n", name, id.pin);
        crypto_identity_free(&id);
    }
    return 0;
}

/* "connected C of N at T" when C changed since the last line, or always. */
static void print_connected(long c, long n, int force)
{
    if (c != last_reported || force) {
        printf("connected %ld of %ld at %.3f\n", c, n, now_s());
        last_reported = c;
    }
}

/* The report timer and the watchers of SIGTERM and SIGINT. */
static void handles_start(uv_loop_t *loop, uv_timer_cb on_tick, uv_signal_cb on_sig, long ms)
{
    uv_timer_init(loop, &report_timer);
    uv_timer_start(&report_timer, on_tick, 0, (uint64_t)ms);
    uv_signal_init(loop, &sig_term);
    uv_signal_init(loop, &sig_int);
    uv_signal_start(&sig_term, on_sig, SIGTERM);
    uv_signal_start(&sig_int, on_sig, SIGINT);
}

/* Lets the loop end once the connections are closed. */
static void handles_close(void)
{
    uv_timer_stop(&report_timer);
    uv_close((uv_handle_t *)&report_timer, NULL);
    uv_close((uv_handle_t *)&sig_term, NULL);
    uv_close((uv_handle_t *)&sig_int, NULL);
}

static void report(int force)
{
    long c = 0;
    for (long i = 0; i < n_agents; i++)
        c += agents[i].state == AG_CONNECTED;
    print_connected(c, n_agents, force);
}

static void report_cb(uv_timer_t *t)
{
    report(0);
}

static void on_signal(uv_signal_t *h, int signum)
{
    report(1);
    for (long i = 0; i < n_agents; i++)
        agent_stop(&agents[i]);
    handles_close();
}

static int cmd_run(const struct opts *o)
{
    /* Static: 64 services make it too big for a comfortable stack frame. */
    static struct site_conf svc;
    uv_loop_t *loop = uv_default_loop();
    char name[TOKEN_NAME_MAX + 1];
    int rc = 1;

    if (o->hub == NULL || o->hub_pin == NULL || !crypto_pin_valid(o->hub_pin)) {
        fprintf(stderr, "bench_sites: run needs --hub HOST:PORT and a valid --hub-pin\n");
        return 2;
    }
    /* The site's own parser of NAME=URL, so the agents serve what a site would. */
    site_conf_init(&svc);
    for (size_t k = 0; k < o->n_services; k++)
        if (site_conf_add_service(&svc, o->services[k]) != 0) {
            fprintf(stderr, "bench_sites: bad --service %s\n", o->services[k]);
            return 2;
        }
    raise_nofile();
    agents = calloc((size_t)o->count, sizeof(*agents));
    ctxs = calloc((size_t)o->count, sizeof(*ctxs));
    if (agents == NULL || ctxs == NULL) {
        fprintf(stderr, "bench_sites: out of memory for %ld agents\n", o->count);
        goto out;
    }
    for (long i = 0; i < o->count; i++) {
        struct agent *a = &agents[i];
        agent_init(a, loop);
        n_agents++;
        site_name(o, i, name, sizeof(name));
        snprintf(a->site, sizeof(a->site), "%s", name);
        snprintf(a->hubs[0], sizeof(a->hubs[0]), "%s", o->hub);
        a->n_hubs = 1;
        snprintf(a->hub_pin, sizeof(a->hub_pin), "%s", o->hub_pin);
        if (o->ping_s > 0)
            a->ping_interval_ms = (uint64_t)o->ping_s * 1000;
        memcpy(a->services, svc.services, sizeof(a->services));
        a->n_services = svc.n_services;
        bench_source_ip(o, i, a->source_ip, sizeof(a->source_ip));
        if (crypto_identity_load(o->dir, name, &a->id) != 0) {
            fprintf(stderr, "bench_sites: cannot read the identity of %s in %s\n", name, o->dir);
            goto out;
        }
        if (tls_ctx_client(&a->id, &ctxs[i]) != 0) {
            fprintf(stderr, "bench_sites: cannot set up TLS for %s\n", name);
            goto out;
        }
        a->ctx = ctxs[i];
    }
    printf("loaded %ld at %.3f\n", n_agents, now_s());
    fflush(stdout);
    handles_start(loop, report_cb, on_signal, o->report_ms);
    /* All at once: the hub sees the fastest arrival this process can make. */
    for (long i = 0; i < n_agents; i++)
        agent_start(&agents[i]);
    uv_run(loop, UV_RUN_DEFAULT);
    rc = 0;
out:
    for (long i = 0; i < n_agents; i++)
        agent_free(&agents[i]);
    uv_run(loop, UV_RUN_DEFAULT);
    uv_loop_close(loop);
    for (long i = 0; i < n_agents; i++) {
        if (ctxs[i] != NULL)
            wolfSSL_CTX_free(ctxs[i]);
        crypto_identity_free(&agents[i].id);
    }
    free(ctxs);
    free(agents);
    return rc;
}

/* --- hold: idle TLS + HTTP/2 connections to a peer server --- */

struct holder {
    struct conn *c;
    struct h2 h2;
    struct tls_pin_verifier v;
    int connected;
    uv_connect_t creq;
};

static struct holder *holders;
static long n_holders, n_up;
static struct conn_ctx hold_conns;
static WOLFSSL_CTX *hold_ctx;
static struct sockaddr_storage hold_addr;
static int hold_stopping;

static int hold_any_pin(void *arg, const char *pin)
{
    return 0;
}

static void hold_handshake(struct conn *c)
{
    static const struct h2_callbacks cb = {0};
    static const struct h2_limits lim = {100, 65535, 65535};
    struct holder *hd = c->owner;

    if (h2_open(&hd->h2, c, H2_ROLE_HUB_TUNNEL, &cb, &lim, hd) != 0) {
        conn_close(c, "http2 session");
        return;
    }
    hd->connected = 1;
    n_up++;
    if (h2_send(&hd->h2) < 0)
        conn_close(c, "http2 send");
}

static int hold_data(struct conn *c, const uint8_t *data, size_t len)
{
    struct holder *hd = c->owner;

    return hd->h2.s != NULL ? h2_feed(&hd->h2, data, len) : 0;
}

static void hold_drain(struct conn *c)
{
    struct holder *hd = c->owner;

    if (hd->h2.s != NULL && h2_send(&hd->h2) < 0)
        conn_close(c, "http2 send");
}

static void hold_close(struct conn *c, const char *reason)
{
    struct holder *hd = c->owner;

    if (hd->connected)
        n_up--;
    hd->connected = 0;
    h2_free(&hd->h2);
    hd->c = NULL;
    if (!hold_stopping)
        fprintf(stderr, "bench_sites: connection %ld closed: %s\n", (long)(hd - holders), reason);
}

static const struct conn_ops hold_ops = {
    .on_handshake = hold_handshake,
    .on_data = hold_data,
    .on_drain = hold_drain,
    .on_close = hold_close,
};

static void hold_connected(uv_connect_t *req, int status)
{
    struct holder *hd = req->data;

    if (hd->c == NULL)
        return;
    if (status < 0 || conn_start(hd->c, 60000) != 0 ||
        conn_start_tls(hd->c, hold_ctx, NULL, "h2", 1, &hd->v) != 0)
        conn_close(hd->c, status < 0 ? uv_strerror(status) : "tls start");
}

static void hold_report_cb(uv_timer_t *t)
{
    print_connected(n_up, n_holders, 0);
}

static void hold_signal(uv_signal_t *h, int signum)
{
    print_connected(n_up, n_holders, 1);
    hold_stopping = 1;
    conn_close_all(&hold_conns, "stopping");
    handles_close();
}

static int cmd_hold(const struct opts *o)
{
    uv_loop_t *loop = uv_default_loop();
    struct crypto_identity id = {0};
    char name[TOKEN_NAME_MAX + 1], host[NET_HOST_MAX + 1], ip[48];
    int port, rc = 1;

    if (o->to == NULL || net_split_hostport(o->to, 443, host, &port) != 0 ||
        uv_ip4_addr(host, port, (struct sockaddr_in *)&hold_addr) != 0) {
        fprintf(stderr, "bench_sites: hold needs --to IPV4:PORT\n");
        return 2;
    }
    raise_nofile();
    site_name(o, 0, name, sizeof(name));
    if (crypto_identity_load(o->dir, name, &id) != 0 || tls_ctx_client(&id, &hold_ctx) != 0) {
        fprintf(stderr, "bench_sites: cannot set up TLS with the identity %s in %s\n", name,
                o->dir);
        goto out;
    }
    holders = calloc((size_t)o->count, sizeof(*holders));
    if (holders == NULL)
        goto out;
    n_holders = o->count;
    conn_ctx_init(&hold_conns, loop);
    printf("loaded %ld at %.3f\n", n_holders, now_s());
    fflush(stdout);
    handles_start(loop, hold_report_cb, hold_signal, o->report_ms);
    for (long i = 0; i < n_holders; i++) {
        struct holder *hd = &holders[i];

        hd->v.check = hold_any_pin;
        hd->c = conn_new(&hold_conns, &hold_ops, hd);
        if (hd->c == NULL)
            break;
        bench_source_ip(o, i, ip, sizeof(ip));
        if (ip[0] != '\0') {
            struct sockaddr_in local;
            uv_ip4_addr(ip, 0, &local);
            if (uv_tcp_bind(&hd->c->tcp, (const struct sockaddr *)&local, 0) != 0) {
                conn_close(hd->c, "cannot bind the source address");
                continue;
            }
        }
        hd->creq.data = hd;
        if (uv_tcp_connect(&hd->creq, &hd->c->tcp, (const struct sockaddr *)&hold_addr,
                           hold_connected) != 0)
            conn_close(hd->c, "connect");
    }
    uv_run(loop, UV_RUN_DEFAULT);
    rc = 0;
out:
    uv_loop_close(loop);
    free(holders);
    if (hold_ctx != NULL)
        wolfSSL_CTX_free(hold_ctx);
    crypto_identity_free(&id);
    return rc;
}

static void usage(FILE *f)
{
    fprintf(f, "usage:\n"
               "  bench_sites keygen --dir D --prefix P --from I --count N\n"
               "  bench_sites run --dir D --prefix P --from I --count N --hub HOST:PORT\n"
               "                  --hub-pin PIN [--service NAME=URL]... [--ping-interval S]\n"
               "                  [--report-ms MS] [--per-source K]\n"
               "  bench_sites hold --dir D --prefix P --from I --count N --to HOST:PORT\n"
               "                  [--per-source K]\n"
               "  bench_sites aesgcm [--ms MS]\n");
}

int main(int argc, char **argv)
{
    static struct option lopts[] = {{"dir", required_argument, 0, 'd'},
                                    {"prefix", required_argument, 0, 'p'},
                                    {"from", required_argument, 0, 'f'},
                                    {"count", required_argument, 0, 'n'},
                                    {"hub", required_argument, 0, 'h'},
                                    {"hub-pin", required_argument, 0, 'P'},
                                    {"service", required_argument, 0, 'S'},
                                    {"ping-interval", required_argument, 0, 'i'},
                                    {"report-ms", required_argument, 0, 'r'},
                                    {"ms", required_argument, 0, 'm'},
                                    {"per-source", required_argument, 0, 's'},
                                    {"to", required_argument, 0, 't'},
                                    {0, 0, 0, 0}};
    struct opts o = {.prefix = "b", .report_ms = 100, .ms = 1000};
    int c, rc;

    signal(SIGPIPE, SIG_IGN);
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    optind = 2;
    while ((c = getopt_long(argc, argv, "", lopts, NULL)) != -1) {
        switch (c) {
        case 'd':
            o.dir = optarg;
            break;
        case 'p':
            o.prefix = optarg;
            break;
        case 'f':
            o.from = strtol(optarg, NULL, 10);
            break;
        case 'n':
            o.count = strtol(optarg, NULL, 10);
            break;
        case 'h':
            o.hub = optarg;
            break;
        case 'P':
            o.hub_pin = optarg;
            break;
        case 'S':
            if (o.n_services < AGENT_MAX_SERVICES)
                o.services[o.n_services++] = optarg;
            break;
        case 'i':
            o.ping_s = strtol(optarg, NULL, 10);
            break;
        case 'r':
            o.report_ms = strtol(optarg, NULL, 10);
            break;
        case 'm':
            o.ms = strtol(optarg, NULL, 10);
            break;
        case 's':
            o.per_source = strtol(optarg, NULL, 10);
            break;
        case 't':
            o.to = optarg;
            break;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc || (strcmp(argv[1], "aesgcm") != 0 &&
                           (o.dir == NULL || o.count <= 0 || o.from < 0 || o.report_ms <= 0))) {
        usage(stderr);
        return 2;
    }
    /* Only problems: thousands of agents would otherwise log every connect. */
    log_set_level(LOG_ERROR);
    if (getenv("TETHER_LOG") != NULL)
        log_init_from_env();
    wolfSSL_Init();
    if (strcmp(argv[1], "aesgcm") == 0) {
        double mbps = crypto_aesgcm_mbps(o.ms > 0 ? (int)o.ms : 1000);
        printf("aes128gcm_mbps %.0f\n", mbps);
        rc = mbps > 0 ? 0 : 1;
    } else if (strcmp(argv[1], "keygen") == 0) {
        rc = cmd_keygen(&o);
    } else if (strcmp(argv[1], "run") == 0) {
        rc = cmd_run(&o);
    } else if (strcmp(argv[1], "hold") == 0) {
        rc = cmd_hold(&o);
    } else {
        usage(stderr);
        rc = 2;
    }
    wolfSSL_Cleanup();
    return rc;
}
