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
 * bench_sites handshakes --dir D --prefix P --from I --count N --conns C
 *                        --ms MS [--warmup-ms W] [--server-pid PID]
 *                        (--hub HOST:PORT --hub-pin PIN | --https HOST:PORT --https-pin PIN)
 *     Full connects, one after another on each of C connections at once, each
 *     a new TCP connection and a full TLS 1.3 handshake with the next of the N
 *     identities' client certificate (round robin), the server's key pin
 *     checked. --hub: a real site agent (site/agent.c) per connection; a
 *     connect counts when the hub took its hello (it opened the events
 *     stream), then the agent closes and dials again at once. --https: TLS
 *     with ALPN http/1.1, "GET /hello" with Connection: close; a connect
 *     counts when a 200 answer has ended. Prints "group G" (the key exchange
 *     of the first handshake), "measuring at T" after the warm-up, then
 *     "done D errors E ms M at T self_cpu C server_cpu S": D connects
 *     completed in the M ms after the warm-up, E failed (--https; any failure
 *     counts, warm-up included), C the CPU seconds this process spent in
 *     those M ms and S those of process --server-pid (-1 without it).
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <unistd.h>

#include <wolfssl/options.h>
#include <wolfssl/ssl.h>

#include "common/buf.h"
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
    long warmup_ms;
    long conns;
    const char *https;
    const char *https_pin;
    long server_pid;
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
        snprintf(a->hub_pins[0], sizeof(a->hub_pins[0]), "%s", o->hub_pin);
        a->n_pins = 1;
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

/* ---- handshakes: complete connects per second against one server ---- */

struct hs_slot {
    struct agent a;            /* --hub: the agent of this connection */
    struct conn *c;            /* --https: the connection in progress, or NULL */
    struct tls_pin_verifier v; /* --https: checks the server's pin */
    uv_connect_t req;
    char head[512]; /* --https: the start of the answer */
    size_t head_len;
    size_t body_left; /* --https: body bytes still to come; SIZE_MAX: head not parsed */
};

static struct {
    const struct opts *o;
    uv_loop_t *loop;
    struct conn_ctx cx;
    struct sockaddr_storage addr;
    WOLFSSL_CTX **ctxs; /* one per identity, owned */
    long n_ids, next_id;
    struct hs_slot *slots; /* owned */
    long n_slots;
    int measuring, stopping;
    uint64_t done, errors;
    double t_measure;
    double server_cpu0, self_cpu0;
    uv_timer_t phase;
    char group[64];
} hs;

/* User + system CPU seconds of a process (its threads included), or -1. */
static double proc_cpu_s(long pid)
{
    char path[64], buf[1024], *p;
    unsigned long long ut, st;
    FILE *f;
    size_t n;

    snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
    f = fopen(path, "r");
    if (f == NULL)
        return -1;
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* Fields after the command name, which may hold spaces: utime, stime
     * are the 12th and 13th of them. */
    p = strrchr(buf, ')');
    if (p == NULL ||
        sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static double self_cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

static WOLFSSL_CTX *hs_next_ctx(long *id)
{
    *id = hs.next_id;
    hs.next_id = (hs.next_id + 1) % hs.n_ids;
    return hs.ctxs[*id];
}

static void hs_note_group(WOLFSSL *ssl)
{
    const char *g;
    if (hs.group[0] != '\0' || ssl == NULL)
        return;
    g = wolfSSL_get_curve_name(ssl);
    snprintf(hs.group, sizeof(hs.group), "%s", g != NULL ? g : "?");
    printf("group %s cipher %s\n", hs.group, wolfSSL_get_cipher_name(ssl));
}

static void hs_complete(void)
{
    if (hs.measuring)
        hs.done++;
}

/* --hub: the hub took the hello; close and dial again with the next identity. */
static void hs_agent_live(struct agent *a)
{
    long id;

    if (a->conn == NULL)
        return;
    hs_note_group(a->conn->tls.ssl);
    hs_complete();
    if (hs.stopping)
        return;
    a->ctx = hs_next_ctx(&id);
    site_name(hs.o, id, a->site, sizeof(a->site));
    conn_close(a->conn, "bench cycle");
}

static void hs_https_dial(struct hs_slot *sl);

static const char hs_request[] =
    "GET /hello HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";

static void hs_https_handshake(struct conn *c)
{
    hs_note_group(c->tls.ssl);
    if (conn_write(c, (const uint8_t *)hs_request, sizeof(hs_request) - 1) != 0) {
        conn_close(c, "write failed");
        return;
    }
    conn_flush(c);
}

/* Reads the answer's status line and Content-Length, then its body. */
static int hs_https_data(struct conn *c, const uint8_t *data, size_t len)
{
    struct hs_slot *sl = c->owner;
    char *end, *cl;
    size_t room, hl;

    if (sl->body_left == SIZE_MAX) {
        room = sizeof(sl->head) - 1 - sl->head_len;
        if (len > room)
            len = room;
        memcpy(sl->head + sl->head_len, data, len);
        sl->head_len += len;
        sl->head[sl->head_len] = '\0';
        end = strstr(sl->head, "\r\n\r\n");
        if (end == NULL)
            return sl->head_len < sizeof(sl->head) - 1 ? 0 : -EPROTO;
        if (strncmp(sl->head, "HTTP/1.1 200 ", 13) != 0)
            return -EPROTO;
        cl = strstr(sl->head, "Content-Length: ");
        if (cl == NULL || cl > end)
            return -EPROTO;
        hl = (size_t)(end + 4 - sl->head);
        sl->body_left = strtoul(cl + 16, NULL, 10);
        len = sl->head_len - hl;
    }
    sl->body_left -= len < sl->body_left ? len : sl->body_left;
    if (sl->body_left == 0) {
        hs_complete();
        sl->head_len = 0;
        conn_close(c, "done");
    }
    return 0;
}

static void hs_https_close(struct conn *c, const char *reason)
{
    struct hs_slot *sl = c->owner;

    if (strcmp(reason, "done") != 0) {
        hs.errors++;
        if (hs.errors <= 3)
            fprintf(stderr, "bench_sites: connect failed: %s\n", reason);
    }
    sl->c = NULL;
    if (!hs.stopping)
        hs_https_dial(sl);
}

static const struct conn_ops hs_https_ops = {
    .on_handshake = hs_https_handshake,
    .on_data = hs_https_data,
    .on_close = hs_https_close,
};

static int hs_check_pin(void *arg, const char *pin)
{
    return crypto_pin_equal(pin, hs.o->https_pin) ? 0 : -EACCES;
}

static void hs_https_connected(uv_connect_t *req, int status)
{
    struct hs_slot *sl = req->data;
    struct conn *c = sl->c;
    long id;

    if (status < 0 || c->closing || conn_start(c, 10000) != 0) {
        conn_close(c, status < 0 ? uv_strerror(status) : "cannot start");
        return;
    }
    sl->v.check = hs_check_pin;
    sl->v.arg = sl;
    if (conn_start_tls(c, hs_next_ctx(&id), "localhost", "http/1.1", 0, &sl->v) != 0)
        conn_close(c, "tls setup failed");
}

static void hs_https_dial(struct hs_slot *sl)
{
    struct conn *c = conn_new(&hs.cx, &hs_https_ops, sl);
    int rc;

    if (c == NULL) {
        hs.errors++;
        return;
    }
    sl->c = c;
    sl->head_len = 0;
    sl->body_left = SIZE_MAX;
    sl->req.data = sl;
    rc = uv_tcp_connect(&sl->req, &c->tcp, (const struct sockaddr *)&hs.addr, hs_https_connected);
    if (rc != 0)
        conn_close(c, uv_strerror(rc));
}

static void hs_phase_cb(uv_timer_t *t)
{
    if (!hs.measuring) {
        hs.measuring = 1;
        hs.t_measure = now_s();
        hs.self_cpu0 = self_cpu_s();
        if (hs.o->server_pid > 0)
            hs.server_cpu0 = proc_cpu_s(hs.o->server_pid);
        printf("measuring at %.3f\n", hs.t_measure);
        uv_timer_start(&hs.phase, hs_phase_cb, (uint64_t)hs.o->ms, 0);
        return;
    }
    hs.measuring = 0;
    hs.stopping = 1;
    printf("done %llu errors %llu ms %.0f at %.3f self_cpu %.3f server_cpu %.3f\n",
           (unsigned long long)hs.done, (unsigned long long)hs.errors,
           (now_s() - hs.t_measure) * 1000.0, now_s(), self_cpu_s() - hs.self_cpu0,
           hs.o->server_pid > 0 ? proc_cpu_s(hs.o->server_pid) - hs.server_cpu0 : -1.0);
    for (long i = 0; i < hs.n_slots; i++) {
        struct hs_slot *sl = &hs.slots[i];
        if (hs.o->hub != NULL) {
            agent_stop(&sl->a);
            agent_free(&sl->a);
        } else if (sl->c != NULL) {
            conn_close(sl->c, "done");
        }
    }
    uv_close((uv_handle_t *)&hs.phase, NULL);
}

static int cmd_handshakes(const struct opts *o)
{
    const char *target = o->hub != NULL ? o->hub : o->https;
    const char *pin = o->hub != NULL ? o->hub_pin : o->https_pin;
    char name[TOKEN_NAME_MAX + 1], host[NET_HOST_MAX + 1];
    int port, rc = 2;

    if ((o->hub == NULL) == (o->https == NULL) || pin == NULL || !crypto_pin_valid(pin) ||
        o->conns <= 0 || o->ms <= 0) {
        fprintf(stderr, "bench_sites: handshakes needs --hub HOST:PORT --hub-pin PIN or "
                        "--https HOST:PORT --https-pin PIN, --conns and --ms\n");
        return 2;
    }
    memset(&hs, 0, sizeof(hs));
    hs.o = o;
    hs.loop = uv_default_loop();
    conn_ctx_init(&hs.cx, hs.loop);
    if (net_split_hostport(target, 443, host, &port) != 0 ||
        uv_ip4_addr(host, port, (struct sockaddr_in *)&hs.addr) != 0) {
        fprintf(stderr, "bench_sites: %s is not IPv4-address:port\n", target);
        return 2;
    }
    raise_nofile();
    rc = 1;
    hs.n_ids = o->count;
    hs.ctxs = calloc((size_t)o->count, sizeof(*hs.ctxs));
    hs.slots = calloc((size_t)o->conns, sizeof(*hs.slots));
    if (hs.ctxs == NULL || hs.slots == NULL)
        goto out;
    for (long i = 0; i < o->count; i++) {
        struct crypto_identity id = {0};
        site_name(o, i, name, sizeof(name));
        if (crypto_identity_load(o->dir, name, &id) != 0 || tls_ctx_client(&id, &hs.ctxs[i]) != 0) {
            fprintf(stderr, "bench_sites: cannot load the identity of %s in %s\n", name, o->dir);
            crypto_identity_free(&id);
            goto out;
        }
        crypto_identity_free(&id);
    }
    uv_timer_init(hs.loop, &hs.phase);
    uv_timer_start(&hs.phase, hs_phase_cb, (uint64_t)o->warmup_ms, 0);
    hs.n_slots = o->conns;
    for (long i = 0; i < hs.n_slots; i++) {
        struct hs_slot *sl = &hs.slots[i];
        long id;
        if (o->hub == NULL) {
            hs_https_dial(sl);
            continue;
        }
        agent_init(&sl->a, hs.loop);
        /* Dial again at once after each close: the bench's own cycle. */
        sl->a.backoff_base_ms = 0;
        sl->a.backoff_cap_ms = 0;
        sl->a.on_live = hs_agent_live;
        snprintf(sl->a.hubs[0], sizeof(sl->a.hubs[0]), "%s", o->hub);
        sl->a.n_hubs = 1;
        snprintf(sl->a.hub_pins[0], sizeof(sl->a.hub_pins[0]), "%s", o->hub_pin);
        sl->a.n_pins = 1;
        sl->a.ctx = hs_next_ctx(&id);
        site_name(o, id, sl->a.site, sizeof(sl->a.site));
        agent_start(&sl->a);
    }
    uv_run(hs.loop, UV_RUN_DEFAULT);
    rc = 0;
out:
    uv_loop_close(hs.loop);
    for (long i = 0; hs.ctxs != NULL && i < hs.n_ids; i++)
        if (hs.ctxs[i] != NULL)
            wolfSSL_CTX_free(hs.ctxs[i]);
    free(hs.ctxs);
    free(hs.slots);
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
    fprintf(
        f, "usage:\n"
           "  bench_sites keygen --dir D --prefix P --from I --count N\n"
           "  bench_sites run --dir D --prefix P --from I --count N --hub HOST:PORT\n"
           "                  --hub-pin PIN [--service NAME=URL]... [--ping-interval S]\n"
           "                  [--report-ms MS] [--per-source K]\n"
           "  bench_sites hold --dir D --prefix P --from I --count N --to HOST:PORT\n"
           "                  [--per-source K]\n"
           "  bench_sites aesgcm [--ms MS]\n"
           "  bench_sites handshakes --dir D --prefix P --from I --count N --conns C --ms MS\n"
           "                  [--warmup-ms W] [--server-pid PID] (--hub HOST:PORT --hub-pin PIN |\n"
           "                  --https HOST:PORT --https-pin PIN)\n");
}

int main(int argc, char **argv)
{
    static struct option lopts[] = {
        {"dir", required_argument, 0, 'd'},        {"prefix", required_argument, 0, 'p'},
        {"from", required_argument, 0, 'f'},       {"count", required_argument, 0, 'n'},
        {"hub", required_argument, 0, 'h'},        {"hub-pin", required_argument, 0, 'P'},
        {"service", required_argument, 0, 'S'},    {"ping-interval", required_argument, 0, 'i'},
        {"report-ms", required_argument, 0, 'r'},  {"ms", required_argument, 0, 'm'},
        {"warmup-ms", required_argument, 0, 'w'},  {"conns", required_argument, 0, 'c'},
        {"https", required_argument, 0, 'H'},      {"https-pin", required_argument, 0, 'Q'},
        {"server-pid", required_argument, 0, 's'}, {"per-source", required_argument, 0, 'k'},
        {"to", required_argument, 0, 't'},         {0, 0, 0, 0}};
    struct opts o = {.prefix = "b", .report_ms = 100, .ms = 1000, .warmup_ms = 1000};
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
        case 'w':
            o.warmup_ms = strtol(optarg, NULL, 10);
            break;
        case 'c':
            o.conns = strtol(optarg, NULL, 10);
            break;
        case 'H':
            o.https = optarg;
            break;
        case 'Q':
            o.https_pin = optarg;
            break;
        case 's':
            o.server_pid = strtol(optarg, NULL, 10);
            break;
        case 'k':
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
    } else if (strcmp(argv[1], "handshakes") == 0) {
        rc = cmd_handshakes(&o);
    } else if (strcmp(argv[1], "hold") == 0) {
        rc = cmd_hold(&o);
    } else {
        usage(stderr);
        rc = 2;
    }
    wolfSSL_Cleanup();
    return rc;
}
