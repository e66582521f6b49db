/* One running hub on a loop: its state set up from a state directory, served, drained and stopped.
 */
/* SPDX-License-Identifier: MIT */
#include "daemon.h"

#include <wolfssl/options.h>
#include <wolfssl/ssl.h>

#include <assert.h>
#include <errno.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../common/conn.h"
#include "../common/crypto.h"
#include "../common/log.h"
#include "../common/notify.h"
#include "../common/statelock.h"
#include "../common/tls.h"
#include "../common/tune.h"
#include "api/api.h"
#include "cluster.h"
#include "core/hub.h"
#include "core/ipcount.h"
#include "net/listen.h"
#include "query/query.h"
#include "store/recorder.h"
#include "store/registry.h"
#include "tunnel/peer.h"
#include "tunnel/tunnel.h"

#define DRAIN_TICK_MS 100
/* After the drain the loop should end by itself; if a handle still keeps it
 * alive this long, something leaked it and we close it by force. */
#define SHUTDOWN_WATCHDOG_MS 5000
/* A draining hub asks its sites to come back spread over a window that
 * grows with their number, 250 a second, so a restart with 1,000 sites sees
 * them back over 4 s rather than half of them in one second, and one site
 * comes back at once. The window stops growing at 20 s: 19,000 sites (the
 * most one hub's 20,000 descriptors hold) then come at 950 a second, under
 * the 1,500-2,500 handshakes a second one hub core takes (tests/bench,
 * section 10), and are back within 30 s of the restart with 10 s left for
 * the restart itself and the stragglers (docs/benchmarks.md, section 5). */
#define RECONNECT_SPREAD_PER_S  250
#define RECONNECT_WINDOW_MAX_MS 20000

/* The loop's lag: a timer due every LAG_TICK_MS counts how late it runs
 * (tether_hub_loop_lag_seconds). 50 wake-ups a second cost nothing next to
 * the work they watch, and a stall of one tick shows. */
#define LAG_TICK_MS 20
static const double lag_le[] = {0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5};

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

/* The daemon's own state beside struct hub; daemon_* recover it from the
 * hub. Owned by whoever daemon_start gave the hub to. */
struct daemon {
    struct hub hub;
    struct daemon_opts o;
    uint64_t drain_started_ms;
    int handles_on; /* signals and drain timer initialised */
    int stopped;
    uv_timer_t watchdog;
    int watchdog_on;
    int lock_fd;                  /* STATE/lock held while the hub runs; -1 none */
    struct notify_timer sdnotify; /* systemd's WATCHDOG=1 and STATUS (program only) */
    int sdnotify_on;
    int lag_on; /* hub.lag_timer initialised */
    unsigned lag_ticks;
    uint64_t rec_failed_seen; /* the recorder's failures already logged */
    /* Changes made through other hubs of a shared database (cluster.h);
     * NULL on SQLite. */
    struct cluster *cluster;
};

static struct daemon *daemon_of(struct hub *h)
{
    return container_of(h, struct daemon, hub);
}

static void close_handle(uv_handle_t *hd)
{
    if (hd->loop != NULL && !uv_is_closing(hd))
        uv_close(hd, NULL);
}

static void count_streams(struct tunnel *t, void *arg)
{
    *(size_t *)arg += tunnel_stream_count(t);
}

static void drain_one(struct tunnel *t, void *arg)
{
    tunnel_drain(t, *(const unsigned *)arg);
}

static void set_ping_repeat(struct tunnel *t, void *arg)
{
    tunnel_set_ping_interval(t, *(uint64_t *)arg);
}

static void force_close_walk(uv_handle_t *hd, void *arg)
{
    if (uv_is_closing(hd))
        return;
    if (arg != NULL)
        log_event(LOG_WARN, "handle_left_open", "type=%s active=%d",
                  uv_handle_type_name(uv_handle_get_type(hd)), uv_is_active(hd));
    uv_close(hd, NULL);
}

static void watchdog_cb(uv_timer_t *timer)
{
    log_event(LOG_WARN, "shutdown_stuck", "waited_ms=%d action=\"closing what is left\"",
              SHUTDOWN_WATCHDOG_MS);
    uv_walk(timer->loop, force_close_walk, "warn");
    uv_stop(timer->loop);
}

static void lag_tick(uv_timer_t *timer);

/* The writer thread cannot log (only the loop does): once a second the loop
 * logs the records the database refused since the last look (disk full, a
 * site removed meanwhile), one line for all of them. */
static void report_record_failures(struct hub *h)
{
    struct daemon *d = daemon_of(h);
    struct recorder_stats rs;

    if (h->rec == NULL)
        return;
    recorder_get_stats(h->rec, &rs);
    if (rs.failed == d->rec_failed_seen)
        return;
    log_event(LOG_WARN, "session_store_failed", "op=%s records=%llu error=%s",
              rs.last_failed_op != NULL ? rs.last_failed_op : "?",
              (unsigned long long)(rs.failed - d->rec_failed_seen),
              log_q(strerror(-rs.last_error)));
    d->rec_failed_seen = rs.failed;
}

/* Due LAG_TICK_MS after the loop's time, as libuv counts it. Unreferenced:
 * the timer never keeps the loop alive. */
static void lag_arm(struct hub *h)
{
    h->lag_due_ns = (uv_now(h->loop) + LAG_TICK_MS) * 1000000ULL;
    uv_timer_start(&h->lag_timer, lag_tick, LAG_TICK_MS, 0);
    uv_unref((uv_handle_t *)&h->lag_timer);
}

static void lag_tick(uv_timer_t *timer)
{
    struct hub *h = timer->data;
    uint64_t now = uv_hrtime();

    hist_observe(&h->loop_lag, now > h->lag_due_ns ? (double)(now - h->lag_due_ns) / 1e9 : 0);
    lag_arm(h);
    if (++daemon_of(h)->lag_ticks % (1000 / LAG_TICK_MS) == 0)
        report_record_failures(h);
}

void daemon_stop(struct hub *h, const char *why)
{
    struct daemon *d = daemon_of(h);

    if (d->stopped) {
        /* The program's call after uv_run returned: the watchdog is done. */
        if (d->watchdog_on)
            close_handle((uv_handle_t *)&d->watchdog);
        return;
    }
    d->stopped = 1;
    if (why != NULL)
        log_event(LOG_INFO, "shutdown", "reason=%s tunnels=%zu", log_q(why), h->tunnels.count);
    hub_listen_stop(h);
    cluster_stop(d->cluster);
    d->cluster = NULL;
    peer_stop(h);
    conn_close_all(&h->conns, "hub shutting down");
    query_shutdown(h);
    if (d->handles_on) {
        close_handle((uv_handle_t *)&h->sigterm);
        close_handle((uv_handle_t *)&h->sigint);
        close_handle((uv_handle_t *)&h->sighup);
        close_handle((uv_handle_t *)&h->drain_timer);
    }
    if (d->sdnotify_on)
        close_handle((uv_handle_t *)&d->sdnotify.timer);
    if (d->lag_on)
        close_handle((uv_handle_t *)&h->lag_timer);
    /* Only the program owns the loop: the watchdog closes every handle. */
    if (d->o.program && why != NULL && uv_timer_init(h->loop, &d->watchdog) == 0) {
        d->watchdog_on = 1;
        uv_timer_start(&d->watchdog, watchdog_cb, SHUTDOWN_WATCHDOG_MS, 0);
        uv_unref((uv_handle_t *)&d->watchdog);
    }
}

static void drain_tick(uv_timer_t *timer)
{
    struct hub *h = timer->data;
    uint64_t waited = uv_now(h->loop) - daemon_of(h)->drain_started_ms;
    size_t open = 0;

    hub_tunnel_each(h, count_streams, &open);
    if (open == 0)
        daemon_stop(h, "drained");
    else if (waited >= h->cfg.drain_grace_ms)
        daemon_stop(h, "drain grace period over");
}

static unsigned reconnect_window_ms(size_t sites)
{
    uint64_t ms = (uint64_t)sites * 1000 / RECONNECT_SPREAD_PER_S;
    return ms > RECONNECT_WINDOW_MAX_MS ? RECONNECT_WINDOW_MAX_MS : (unsigned)ms;
}

void daemon_drain(struct hub *h, const char *why)
{
    size_t open = 0;
    unsigned window;

    if (daemon_of(h)->stopped)
        return;
    if (h->draining) {
        log_event(LOG_WARN, "drain_aborted", "signal=%s", why);
        daemon_stop(h, "second signal");
        return;
    }
    h->draining = 1;
    notify_stopping();
    daemon_of(h)->drain_started_ms = uv_now(h->loop);
    hub_tunnel_each(h, count_streams, &open);
    log_event(LOG_INFO, "draining", "signal=%s tunnels=%zu streams=%zu grace_ms=%llu", log_q(why),
              h->tunnels.count, open, (unsigned long long)h->cfg.drain_grace_ms);
    hub_listen_stop(h);
    window = reconnect_window_ms(h->tunnels.count);
    hub_tunnel_each(h, drain_one, &window);
    uv_timer_start(&h->drain_timer, drain_tick, DRAIN_TICK_MS, DRAIN_TICK_MS);
}

static void on_stop_signal(uv_signal_t *sig, int signum)
{
    daemon_drain(sig->data, strsignal(signum));
}

int daemon_reload(struct hub *h)
{
    struct settings s;
    char err[512] = "";
    uint64_t ping;
    int rc;

    rc = settings_load(&daemon_of(h)->o.cli, &s, err, sizeof(err));
    if (rc != 0) {
        log_event(LOG_ERROR, "config_reload_failed", "error=%s kept=previous", log_q(err));
        return rc;
    }
    h->cfg = s.cfg;
    h->fd_reserve = h->cfg.fd_reserve;
    if (h->fd_limit > 0 && h->fd_reserve > h->fd_limit / 2)
        h->fd_reserve = (int)(h->fd_limit / 2);
    ping = h->cfg.ping_interval_ms;
    hub_tunnel_each(h, set_ping_repeat, &ping);
    log_event(LOG_INFO, "config_reloaded",
              "name=%s public=%zu ping_interval_ms=%llu handshake_timeout_ms=%llu "
              "request_timeout_ms=%llu drain_grace_ms=%llu enroll_ttl_s=%lld",
              h->cfg.name, h->cfg.n_public, (unsigned long long)h->cfg.ping_interval_ms,
              (unsigned long long)h->cfg.handshake_timeout_ms,
              (unsigned long long)h->cfg.request_timeout_ms,
              (unsigned long long)h->cfg.drain_grace_ms, (long long)h->cfg.enroll_ttl_s);
    return 0;
}

static void on_hup(uv_signal_t *sig, int signum)
{
    daemon_reload(sig->data);
}

void daemon_loop_teardown(uv_loop_t *loop, int warn)
{
    for (int round = 0; uv_loop_close(loop) == UV_EBUSY; round++) {
        /* The first round only lets pending close callbacks run. */
        if (round > 0)
            uv_walk(loop, force_close_walk, warn ? "warn" : NULL);
        uv_run(loop, UV_RUN_DEFAULT);
    }
}

int daemon_port(const struct hub *h, size_t i)
{
    struct sockaddr_storage ss;
    int len = sizeof(ss);

    if (i >= h->n_listeners ||
        uv_tcp_getsockname(&h->listeners[i], (struct sockaddr *)&ss, &len) != 0)
        return 0;
    if (ss.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return 0;
}

/* Settings, registry, identity and TLS contexts, in that order (a bad
 * configuration touches nothing); err says which failed. */
/* This hub's row in the cluster's hubs, by its key's pin: its name and
 * endpoints as configured now. Enrollment tokens list every hub's. */
static int register_hub(struct hub *h, char *err, size_t cap)
{
    char *pub = NULL;
    int rc = settings_public_json((const char(*)[TOKEN_ENDPOINT_MAX + 1]) h->cfg.public_eps,
                                  h->cfg.n_public, &pub);

    if (rc == 0)
        rc = registry_hub_start(h->reg, h->cfg.name, h->id.pin, pub, hub_now(), &h->hub_id);
    free(pub);
    if (rc != 0)
        snprintf(err, cap, "cannot record this hub in the registry: %s", strerror(-rc));
    else
        registry_use_hub(h->reg, h->hub_id);
    return rc;
}

static int open_state(struct hub *h, const struct settings_cli *cli, struct settings *s, char *err,
                      size_t cap)
{
    const char *state = cli->state;
    char db[SETTINGS_DB_CAP > SETTINGS_PATH_CAP ? SETTINGS_DB_CAP : SETTINGS_PATH_CAP];
    char why[256] = "", shown[SETTINGS_DB_CAP];
    WOLFSSL_CTX *ctx = NULL;
    struct stat st;
    pid_t holder = 0;
    int rc;

    if (strlen(state) >= sizeof(h->state_dir) ||
        settings_path_join(db, sizeof(db), state, "hub.db") != 0) {
        snprintf(err, cap, "state directory path too long");
        return -ENAMETOOLONG;
    }
    snprintf(h->state_dir, sizeof(h->state_dir), "%s", state);
    /* hub.conf's db (init --db) names a PostgreSQL database instead of
     * STATE/hub.db; only the registry's opening differs. */
    rc = settings_db(state, shown, sizeof(shown), err, cap);
    if (rc != 0)
        return rc;
    if (shown[0] != '\0')
        snprintf(db, sizeof(db), "%s", shown);
    /* registry_open would create an empty registry; a missing one means
     * this directory was never initialised (or is the wrong one). */
    if (shown[0] == '\0' && stat(db, &st) != 0) {
        rc = -errno;
        snprintf(err, cap, "cannot open %s: %s (run `tether-hub init --state %s` first)", db,
                 strerror(-rc), state);
        return rc;
    }
    rc = settings_load(cli, s, err, cap);
    if (rc != 0)
        return rc;
    h->cfg = s->cfg;
    /* Before the registry is opened (it is written at once): one hub per state. */
    rc = statelock_acquire(state, &daemon_of(h)->lock_fd, &holder);
    if (rc == -EBUSY) {
        snprintf(err, cap, "state directory %s is in use by process %ld", state, (long)holder);
        return rc;
    }
    if (rc != 0) {
        snprintf(err, cap, "cannot lock the state directory %s/%s: %s", state, STATELOCK_FILE,
                 strerror(-rc));
        return rc;
    }
    rc = registry_open(db, &h->reg, why, sizeof(why));
    if (rc != 0) {
        registry_where(db, shown, sizeof(shown));
        snprintf(err, cap, "cannot open %s: %s", shown, why[0] ? why : strerror(-rc));
        return rc;
    }
    rc = crypto_identity_load(state, "hub", &h->id);
    if (rc != 0) {
        snprintf(err, cap, "cannot load the hub key %s/hub.key and certificate %s/hub.crt: %s",
                 state, state, strerror(-rc));
        return rc;
    }
    rc = register_hub(h, err, cap);
    if (rc != 0)
        return rc;
    rc = registry_session_close_stale(h->reg, hub_now(), "hub restarted");
    if (rc != 0)
        log_event(LOG_WARN, "stale_sessions", "error=%s", log_q(strerror(-rc)));
    /* Its own connection, after close_stale: every session it writes is
     * this run's. */
    rc = recorder_open(db, &h->rec, why, sizeof(why));
    if (rc != 0) {
        registry_where(db, shown, sizeof(shown));
        snprintf(err, cap, "cannot open %s for the registry writer: %s", shown,
                 why[0] ? why : strerror(-rc));
        return rc;
    }
    recorder_use_hub(h->rec, h->hub_id);
    rc = tls_ctx_tunnel_server(&h->id, &ctx);
    if (rc != 0) {
        snprintf(err, cap, "cannot set up TLS for site tunnels: %s", strerror(-rc));
        return rc;
    }
    h->tunnel_ctx = ctx;
    rc = tls_ctx_user_server(&h->id, &ctx);
    if (rc != 0) {
        snprintf(err, cap, "cannot set up TLS for users: %s", strerror(-rc));
        return rc;
    }
    h->user_ctx = ctx;
    return 0;
}

/* The flags' addresses, else the files', else the default; all listening. */
static int listen_all(struct hub *h, const struct settings_cli *cli, const struct settings *s,
                      char *addrs, size_t addrs_cap, char *err, size_t cap)
{
    const char *listen[HUB_MAX_LISTEN];
    size_t n = 0;
    char why[256];
    int rc;

    if (cli->n_listen > 0) {
        for (size_t i = 0; i < cli->n_listen; i++)
            listen[n++] = cli->listen[i];
    } else if (s->n_listen > 0) {
        for (size_t i = 0; i < s->n_listen; i++)
            listen[n++] = s->listen[i];
    } else {
        listen[n++] = SETTINGS_DEFAULT_LISTEN;
    }
    addrs[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        size_t used = strlen(addrs);

        why[0] = '\0';
        rc = hub_listen(h, listen[i], why, sizeof(why));
        if (rc != 0) {
            snprintf(err, cap, "cannot listen on %s: %s", listen[i], why[0] ? why : strerror(-rc));
            return rc;
        }
        snprintf(addrs + used, addrs_cap - used, "%s%s", i > 0 ? "," : "", listen[i]);
    }
    return 0;
}

/* systemd's STATUS line: how many sites are online now. */
static void notify_sites(void *arg)
{
    struct hub *h = arg;

    notify_status("%zu sites online%s", h->tunnels.count, h->draining ? ", draining" : "");
}

int daemon_start(uv_loop_t *loop, const struct daemon_opts *o, struct hub **out, char *err,
                 size_t cap)
{
    struct daemon *d;
    struct hub *h;
    struct settings s;
    char addrs[HUB_MAX_LISTEN * (TOKEN_ENDPOINT_MAX + 1)];
    int rc;

    *out = NULL;
    err[0] = '\0';
    d = calloc(1, sizeof(*d));
    if (d == NULL) {
        snprintf(err, cap, "out of memory");
        return -ENOMEM;
    }
    d->o = *o;
    d->lock_fd = -1;
    h = &d->hub;
    *out = h;
    h->loop = loop;
    conn_ctx_init(&h->conns, loop);
    h->dispatch = api_dispatch;
    /* Handles first, so that daemon_stop may close them whatever failed. */
    uv_signal_init(loop, &h->sigterm);
    uv_signal_init(loop, &h->sigint);
    uv_signal_init(loop, &h->sighup);
    uv_timer_init(loop, &h->drain_timer);
    h->sigterm.data = h->sigint.data = h->sighup.data = h->drain_timer.data = h;
    d->handles_on = 1;
    if (o->cli.state == NULL || o->cli.state[0] == '\0') {
        snprintf(err, cap, "no state directory");
        return -EINVAL;
    }
    rc = open_state(h, &o->cli, &s, err, cap);
    if (rc != 0)
        return rc;
    h->started_ms = uv_now(loop);
    hist_init(&h->loop_lag, lag_le, sizeof(lag_le) / sizeof(lag_le[0]));
    uv_timer_init(loop, &h->lag_timer);
    h->lag_timer.data = h;
    d->lag_on = 1;
    lag_arm(h);
    /* Before the first site can connect: a change made elsewhere from then
     * on reaches its tunnel. */
    rc = cluster_start(h, &d->cluster);
    if (rc != 0) {
        snprintf(err, cap, "cannot listen to the registry's changes: %s", strerror(-rc));
        return rc;
    }
    rc = query_init(h);
    if (rc != 0) {
        snprintf(err, cap, "cannot start the query engine: %s", strerror(-rc));
        return rc;
    }
    rc = listen_all(h, &o->cli, &s, addrs, sizeof(addrs), err, cap);
    if (rc != 0)
        return rc;
    /* Links to the cluster's other hubs (a hub alone in its registry has
     * none to dial). */
    rc = peer_start(h);
    if (rc != 0) {
        snprintf(err, cap, "cannot start the peer links: %s", strerror(-rc));
        return rc;
    }
    log_event(LOG_INFO, "hub_started",
              "version=%s wolfssl=%s memcpy=%s heap_trim_mib=%u listen=%s name=%s pin=%s "
              "ping_interval_ms=%llu fd_limit=%ld fd_reserve=%d",
              TETHER_VERSION, log_q(crypto_wolfssl_build()), tune_state(), tune_heap_trim_mib(),
              addrs, h->cfg.name, h->id.pin, (unsigned long long)h->cfg.ping_interval_ms,
              h->fd_limit, h->fd_reserve);
    if (hub_test_clock_file() != NULL)
        log_event(LOG_WARN, "test_clock", "file=%s", log_q(hub_test_clock_file()));
    if (strncmp(crypto_wolfssl_build(), "system", 6) == 0)
        log_event(LOG_WARN, "wolfssl_fallback",
                  "build=%s detail=\"SYSTEM wolfSSL WITHOUT AES-NI IN USE: TLS will be slow "
                  "(about 30x slower AES-GCM); rebuild with the source wolfSSL "
                  "(deploy/build-wolfssl.sh)\"",
                  log_q(crypto_wolfssl_build()));
    if (o->program) {
        uv_signal_start(&h->sigterm, on_stop_signal, SIGTERM);
        uv_signal_start(&h->sigint, on_stop_signal, SIGINT);
        uv_signal_start(&h->sighup, on_hup, SIGHUP);
        notify_watchdog_start(loop, &d->sdnotify, notify_sites, h);
        d->sdnotify_on = 1;
        notify_sites(h);
        notify_ready();
    }
    return 0;
}

void daemon_free(struct hub *h)
{
    struct daemon *d;

    if (h == NULL)
        return;
    d = daemon_of(h);
    assert(d->stopped);
    /* The loop ran the close callbacks: no conn of this hub is left. */
    assert(conn_live(&h->conns) == 0);
    if (d->watchdog_on)
        assert(uv_is_closing((uv_handle_t *)&d->watchdog));
    auth_cache_free(h);
    hub_listen_free(h);
    peer_free(h);
    hub_users_free(h);
    stats_sites_free(h);
    /* Every tunnel closed, its session's end queued: written before the
     * registry closes, so a clean stop loses no history. */
    recorder_close(h->rec);
    h->rec = NULL;
    if (h->reg != NULL)
        registry_close(h->reg);
    if (h->tunnel_ctx != NULL)
        wolfSSL_CTX_free(h->tunnel_ctx);
    if (h->user_ctx != NULL)
        wolfSSL_CTX_free(h->user_ctx);
    crypto_identity_free(&h->id);
    free(h->hubs_json);
    statelock_release(d->lock_fd);
    /* Every tunnel is gone by now; the map's array is all that is left. */
    free(h->tunnels.buckets);
    free(d);
}
