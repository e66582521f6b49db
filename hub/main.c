/* tether-hub: command line, hub state creation, configuration, start-up, signals and graceful
 * drain. */
/* SPDX-License-Identifier: MIT */
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <sys/resource.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "../common/cli.h"
#include "../common/config.h"
#include "../common/conn.h"
#include "../common/crypto.h"
#include "../common/log.h"
#include "../common/net.h"
#include "../common/tls.h"
#include "../common/token.h"
#include "../common/tune.h"
#include "core/hub.h"
#include "store/registry.h"
#include "query/query.h"
#include "api/api.h"
#include "tunnel/tunnel.h"

#define DEFAULT_PORT   6443
#define DEFAULT_LISTEN "0.0.0.0:6443"
#define PATH_CAP       1200
#define DRAIN_TICK_MS  100
/* After the drain the loop should end by itself; if a handle still keeps it
 * alive this long, something leaked it and we close it by force. */
#define SHUTDOWN_WATCHDOG_MS 5000

#define PROG "tether-hub"

/* Each command's block of the help text; `tether-hub CMD --help` prints its
 * own, `tether-hub --help` all of them. */
static const struct command_help {
    const char *name;
    const char *text;
} commands[] = {
    {"init", "  init --state DIR [--name HOSTNAME] [--public HOST:PORT]... [--force]\n"
             "      Create a hub state in DIR: registry (hub.db), hub key and certificate\n"
             "      (hub.key, hub.crt), a first admin API token (admin.token), hub.conf and\n"
             "      ctl.conf (a ready tetherctl configuration). --public (up to 8, default\n"
             "      HOSTNAME:6443) are the endpoints written into enrollment tokens. Refuses an\n"
             "      existing state unless --force, which deletes its registry and starts over.\n"},
    {"run", "  run --state DIR [--listen HOST:PORT]... [--config FILE] [--ping-interval S]\n"
            "      [--handshake-timeout S] [--drain-grace S]\n"
            "      Serve sites and users (default listen 0.0.0.0:6443; up to 8 addresses).\n"
            "      Reads DIR/hub.conf, then FILE; command line flags win over both.\n"
            "      SIGTERM/SIGINT: drain gracefully (a second one stops at once).\n"
            "      SIGHUP: reload hub.conf and FILE (not the listen addresses).\n"},
    {"version", "  version\n"
                "      Print the version and the wolfSSL build in use (also --version).\n"},
    {"help", "  help\n"
             "      Show this help (also --help, -h; COMMAND --help shows one command's).\n"},
};
#define N_COMMANDS (sizeof(commands) / sizeof(commands[0]))

static const char *const usage_footer =
    "\n"
    "Logs: one line per event on stderr; TETHER_LOG=debug|warn|error sets the level.\n"
    "Exit status: 0 success, 1 failure, 2 usage error.\n";

/* The whole help (cmd NULL) or one command's. */
static void usage(FILE *f, const char *cmd)
{
    if (cmd == NULL)
        fputs("Usage: " PROG " COMMAND [OPTIONS]\n\nCommands:\n", f);
    for (size_t i = 0; i < N_COMMANDS; i++) {
        if (cmd == NULL)
            fputs(commands[i].text, f);
        else if (strcmp(cmd, commands[i].name) == 0)
            fprintf(f, "Usage: " PROG " %s", commands[i].text + 2);
    }
    fputs(usage_footer, f);
}

static int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int fail(const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "tether-hub: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n");
    return EXIT_FAILURE;
}

static int path_join(char *out, size_t cap, const char *dir, const char *file)
{
    int n = snprintf(out, cap, "%s/%s", dir, file);

    return n < 0 || (size_t)n >= cap ? -ENAMETOOLONG : 0;
}

/* A host name, IPv4 literal or IPv6 literal (no brackets, no port). */
static int hostname_ok(const char *s)
{
    size_t len = strlen(s);
    struct in6_addr a6;

    if (len == 0 || len > NET_HOST_MAX)
        return 0;
    if (inet_pton(AF_INET6, s, &a6) == 1)
        return 1;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '.' || c == '_'))
            return 0;
    }
    return 1;
}

/* A "HOST:PORT" endpoint that fits an enrollment token. */
static int endpoint_ok(const char *s)
{
    char host[NET_HOST_MAX + 1];
    int port;

    return strlen(s) <= TOKEN_ENDPOINT_MAX && net_split_hostport(s, 0, host, &port) == 0;
}

/* "NAME:6443", with brackets for an IPv6 literal; -ENAMETOOLONG if it does
 * not fit an endpoint. */
static int default_endpoint(const char *name, char *out, size_t cap)
{
    int n;

    if (strchr(name, ':') != NULL)
        n = snprintf(out, cap, "[%s]:%d", name, DEFAULT_PORT);
    else
        n = snprintf(out, cap, "%s:%d", name, DEFAULT_PORT);
    return n < 0 || (size_t)n >= cap ? -ENAMETOOLONG : 0;
}

static int local_hostname(char *out, size_t cap)
{
    if (gethostname(out, cap) != 0)
        return -errno;
    out[cap - 1] = '\0';
    return out[0] != '\0' ? 0 : -ENOENT;
}

/* --- numbers in configuration files and flags --- */

/* --- run-time configuration --- */

/* What the command line of `run` says; kept for SIGHUP, where the flags must
 * still win over the files. */
struct run_cli {
    const char *state;
    const char *config;
    const char *listen[HUB_MAX_LISTEN];
    size_t n_listen;
    uint64_t ping_ms, handshake_ms, drain_ms;
    int has_ping, has_handshake, has_drain;
};

/* The configuration files' result: hub_config plus the listen addresses. */
struct settings {
    struct hub_config cfg;
    char listen[HUB_MAX_LISTEN][TOKEN_ENDPOINT_MAX + 1];
    size_t n_listen;
};

static void settings_defaults(struct settings *s)
{
    memset(s, 0, sizeof(*s));
    s->cfg.ping_interval_ms = 20000;
    s->cfg.handshake_timeout_ms = 10000;
    s->cfg.request_timeout_ms = 60000;
    s->cfg.drain_grace_ms = 10000;
    s->cfg.enroll_ttl_s = 86400;
    s->cfg.api_body_max = 1u << 20;
    s->cfg.query_body_max = 1u << 20;
    s->cfg.max_pending_handshakes_per_ip = 64;
    s->cfg.request_head_timeout_ms = 10000;
    s->cfg.idle_timeout_ms = 60000;
    s->cfg.request_body_timeout_ms = 30000;
    s->cfg.max_user_conns_per_ip = 256;
    s->cfg.fd_reserve = 256;
    s->cfg.trim_after_closes = 256;
    s->cfg.max_stalled_streams_per_conn = 64;
    s->cfg.max_stalled_streams_per_token = 128;
    s->cfg.max_requests_per_conn = 128;
    s->cfg.max_requests_per_token = 256;
}

/* Bounds of the time keys, in milliseconds. */
struct time_key {
    const char *key;
    size_t off; /* offsetof(struct hub_config, ...) */
    uint64_t min_ms, max_ms;
};

/* Named slots: the flags below pick their key by name, so reordering or
 * adding rows cannot make --drain-grace read the bounds of another key. */
enum time_key_id {
    TK_PING_INTERVAL,
    TK_HANDSHAKE_TIMEOUT,
    TK_REQUEST_TIMEOUT,
    TK_DRAIN_GRACE,
    TK_REQUEST_HEAD_TIMEOUT,
    TK_IDLE_TIMEOUT,
    TK_REQUEST_BODY_TIMEOUT,
    TK_COUNT
};

static const struct time_key time_keys[TK_COUNT] = {
    [TK_PING_INTERVAL] = {"ping_interval", offsetof(struct hub_config, ping_interval_ms), 50,
                          3600000},
    [TK_HANDSHAKE_TIMEOUT] = {"handshake_timeout",
                              offsetof(struct hub_config, handshake_timeout_ms), 100, 600000},
    [TK_REQUEST_TIMEOUT] = {"request_timeout", offsetof(struct hub_config, request_timeout_ms), 100,
                            86400000},
    [TK_DRAIN_GRACE] = {"drain_grace", offsetof(struct hub_config, drain_grace_ms), 0, 3600000},
    [TK_REQUEST_HEAD_TIMEOUT] = {"request_head_timeout",
                                 offsetof(struct hub_config, request_head_timeout_ms), 100,
                                 3600000},
    [TK_IDLE_TIMEOUT] = {"idle_timeout", offsetof(struct hub_config, idle_timeout_ms), 100,
                         86400000},
    [TK_REQUEST_BODY_TIMEOUT] = {"request_body_timeout",
                                 offsetof(struct hub_config, request_body_timeout_ms), 100,
                                 86400000},
};
#define N_TIME_KEYS ((size_t)TK_COUNT)

/* Counts (int fields of hub_config) and their bounds. */
struct count_key {
    const char *key;
    size_t off;
    long long min, max;
};

static const struct count_key count_keys[] = {
    {"max_pending_handshakes_per_ip", offsetof(struct hub_config, max_pending_handshakes_per_ip), 1,
     100000},
    {"max_user_conns_per_ip", offsetof(struct hub_config, max_user_conns_per_ip), 1, 1000000},
    {"fd_reserve", offsetof(struct hub_config, fd_reserve), 16, 1000000},
    {"trim_after_closes", offsetof(struct hub_config, trim_after_closes), 0, 100000000},
    {"max_stalled_streams_per_conn", offsetof(struct hub_config, max_stalled_streams_per_conn), 1,
     100000},
    {"max_stalled_streams_per_token", offsetof(struct hub_config, max_stalled_streams_per_token), 1,
     100000},
    {"max_requests_per_conn", offsetof(struct hub_config, max_requests_per_conn), 1, 100000},
    {"max_requests_per_token", offsetof(struct hub_config, max_requests_per_token), 1, 100000},
};
#define N_COUNT_KEYS (sizeof(count_keys) / sizeof(count_keys[0]))

/* Applies one value; 0, or a negative code with a reason in why. */
static int apply_key(struct settings *s, const char *key, const char *val, int *seen_public,
                     int *seen_listen, char *why, size_t why_cap)
{
    long long n;

    for (size_t i = 0; i < N_TIME_KEYS; i++) {
        assert(time_keys[i].key != NULL); /* every enum slot has its row */
        if (strcmp(key, time_keys[i].key) != 0)
            continue;
        if (cli_parse_seconds_ms(val, time_keys[i].min_ms, time_keys[i].max_ms,
                                 (uint64_t *)((char *)&s->cfg + time_keys[i].off)) != 0) {
            snprintf(why, why_cap, "expected seconds from %g to %g",
                     (double)time_keys[i].min_ms / 1000.0, (double)time_keys[i].max_ms / 1000.0);
            return -EINVAL;
        }
        return 0;
    }
    for (size_t i = 0; i < N_COUNT_KEYS; i++) {
        if (strcmp(key, count_keys[i].key) != 0)
            continue;
        if (cli_parse_int(val, count_keys[i].min, count_keys[i].max, &n) != 0) {
            snprintf(why, why_cap, "expected a count from %lld to %lld", count_keys[i].min,
                     count_keys[i].max);
            return -EINVAL;
        }
        *(int *)((char *)&s->cfg + count_keys[i].off) = (int)n;
        return 0;
    }
    if (strcmp(key, "name") == 0) {
        if (!hostname_ok(val) || strlen(val) >= sizeof(s->cfg.name)) {
            snprintf(why, why_cap, "expected a host name or IP address");
            return -EINVAL;
        }
        snprintf(s->cfg.name, sizeof(s->cfg.name), "%s", val);
    } else if (strcmp(key, "public") == 0) {
        /* A later file's list replaces an earlier one's as a whole. */
        if (!*seen_public) {
            s->cfg.n_public = 0;
            *seen_public = 1;
        }
        if (!endpoint_ok(val)) {
            snprintf(why, why_cap, "expected HOST:PORT");
            return -EINVAL;
        }
        if (s->cfg.n_public == TOKEN_HUB_MAX) {
            snprintf(why, why_cap, "more than 8 public endpoints");
            return -E2BIG;
        }
        snprintf(s->cfg.public_eps[s->cfg.n_public++], sizeof(s->cfg.public_eps[0]), "%s", val);
    } else if (strcmp(key, "listen") == 0) {
        if (!*seen_listen) {
            s->n_listen = 0;
            *seen_listen = 1;
        }
        if (!endpoint_ok(val)) {
            snprintf(why, why_cap, "expected HOST:PORT");
            return -EINVAL;
        }
        if (s->n_listen == HUB_MAX_LISTEN) {
            snprintf(why, why_cap, "more than 8 listen addresses");
            return -E2BIG;
        }
        snprintf(s->listen[s->n_listen++], sizeof(s->listen[0]), "%s", val);
    } else if (strcmp(key, "enroll_ttl") == 0) {
        if (cli_parse_int(val, 60, 365LL * 86400, &n) != 0) {
            snprintf(why, why_cap, "expected whole seconds from 60 to 31536000");
            return -EINVAL;
        }
        s->cfg.enroll_ttl_s = n;
    } else if (strcmp(key, "api_body_max") == 0) {
        if (cli_parse_int(val, 1024, 256LL << 20, &n) != 0) {
            snprintf(why, why_cap, "expected bytes from 1024 to 268435456");
            return -EINVAL;
        }
        s->cfg.api_body_max = (size_t)n;
    } else if (strcmp(key, "query_body_max") == 0) {
        if (cli_parse_int(val, 1024, 256LL << 20, &n) != 0) {
            snprintf(why, why_cap, "expected bytes from 1024 to 268435456");
            return -EINVAL;
        }
        s->cfg.query_body_max = (size_t)n;
    } else {
        return -ENOENT;
    }
    return 0;
}

/* Reads one file into s. A missing file is -ENOENT (err set); the caller
 * decides whether that matters. Unknown keys only warn. */
static int apply_file(const char *path, struct settings *s, char *err, size_t err_cap)
{
    struct config c = {0};
    int seen_public = 0, seen_listen = 0, rc;

    rc = config_load(path, &c, err, err_cap);
    if (rc != 0)
        goto out;
    for (size_t i = 0; i < c.n; i++) {
        const struct config_entry *e = &c.entries[i];
        char why[128] = "";
        int r = apply_key(s, e->key, e->value, &seen_public, &seen_listen, why, sizeof(why));

        if (r == -ENOENT) {
            log_event(LOG_WARN, "config_unknown_key", "file=%s line=%d key=%s", log_q(path),
                      e->line, log_q(e->key));
        } else if (r != 0) {
            snprintf(err, err_cap, "%s:%d: bad %s \"%s\": %s", path, e->line, e->key, e->value,
                     why);
            rc = r;
            goto out;
        }
    }
    rc = 0;
out:
    config_free(&c);
    return rc;
}

/* Defaults, then DIR/hub.conf, then cli->config, then the flags. */
static int load_settings(const struct run_cli *cli, struct settings *s, char *err, size_t err_cap)
{
    char path[PATH_CAP];
    int rc;

    settings_defaults(s);
    if (path_join(path, sizeof(path), cli->state, "hub.conf") != 0) {
        snprintf(err, err_cap, "state directory path too long");
        return -ENAMETOOLONG;
    }
    rc = apply_file(path, s, err, err_cap);
    if (rc == -ENOENT) {
        log_event(LOG_WARN, "config_missing", "file=%s using=defaults", log_q(path));
    } else if (rc != 0) {
        return rc;
    }
    if (cli->config != NULL) {
        rc = apply_file(cli->config, s, err, err_cap);
        if (rc != 0)
            return rc;
    }
    if (s->cfg.name[0] == '\0' && local_hostname(s->cfg.name, sizeof(s->cfg.name)) != 0)
        snprintf(s->cfg.name, sizeof(s->cfg.name), "localhost");
    if (s->cfg.n_public == 0) {
        if (default_endpoint(s->cfg.name, s->cfg.public_eps[0], sizeof(s->cfg.public_eps[0])) !=
            0) {
            snprintf(err, err_cap, "name \"%s\" is too long for a default public endpoint",
                     s->cfg.name);
            return -ENAMETOOLONG;
        }
        s->cfg.n_public = 1;
    }
    if (cli->has_ping)
        s->cfg.ping_interval_ms = cli->ping_ms;
    if (cli->has_handshake)
        s->cfg.handshake_timeout_ms = cli->handshake_ms;
    if (cli->has_drain)
        s->cfg.drain_grace_ms = cli->drain_ms;
    return 0;
}

/* --- init --- */

static int mkdir_p(const char *dir, mode_t mode)
{
    char p[PATH_CAP];
    struct stat st;
    size_t len = strlen(dir);

    if (len == 0 || len >= sizeof(p))
        return -ENAMETOOLONG;
    memcpy(p, dir, len + 1);
    for (char *s = p + 1; *s != '\0'; s++) {
        if (*s != '/')
            continue;
        *s = '\0';
        if (mkdir(p, 0755) != 0 && errno != EEXIST)
            return -errno;
        *s = '/';
    }
    if (mkdir(p, mode) != 0 && errno != EEXIST)
        return -errno;
    if (stat(p, &st) != 0)
        return -errno;
    return S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
}

/* Removes a registry and its WAL companions. */
static void remove_db(const char *db)
{
    char p[PATH_CAP + 8];

    unlink(db);
    snprintf(p, sizeof(p), "%s-wal", db);
    unlink(p);
    snprintf(p, sizeof(p), "%s-shm", db);
    unlink(p);
}

static void add_san(const char **names, size_t *n, size_t max, const char *name)
{
    for (size_t i = 0; i < *n; i++) {
        if (strcasecmp(names[i], name) == 0)
            return;
    }
    if (*n < max)
        names[(*n)++] = name;
}

struct text {
    char buf[8192];
    size_t len;
    int overflow;
};

static void text_add(struct text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void text_add(struct text *t, const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(t->buf + t->len, sizeof(t->buf) - t->len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(t->buf) - t->len)
        t->overflow = 1;
    else
        t->len += (size_t)n;
}

static int write_hub_conf(const char *path, const char *name, char eps[][TOKEN_ENDPOINT_MAX + 1],
                          size_t n_eps)
{
    struct text t = {.len = 0};

    text_add(&t,
             "# tether-hub configuration, written by `tether-hub init`.\n"
             "# Read by `tether-hub run` at start and again on SIGHUP. Lines are\n"
             "# \"key = value\"; '#' starts a comment. Unknown keys are reported and skipped.\n"
             "\n"
             "# Host name of this hub; the default public endpoint is NAME:6443.\n"
             "name = %s\n"
             "\n"
             "# Endpoints (HOST:PORT) that sites dial, written into every new enrollment\n"
             "# token and tried by the site in this order. Repeat the line for several\n"
             "# (at most 8). Changing them affects tokens made after a reload.\n",
             name);
    for (size_t i = 0; i < n_eps; i++)
        text_add(&t, "public = %s\n", eps[i]);
    text_add(&t, "\n"
                 "# Seconds between keepalive PINGs on each site tunnel; a site silent for\n"
                 "# two intervals is disconnected. Keep it under the NAT idle timeout.\n"
                 "ping_interval = 20\n"
                 "\n"
                 "# Other keys, shown with their defaults:\n"
                 "# listen = 0.0.0.0:6443         (repeatable; --listen flags win)\n"
                 "# handshake_timeout = 10        (seconds to finish a TLS handshake)\n"
                 "# request_timeout = 60          (seconds for a site to start answering)\n"
                 "# drain_grace = 10              (seconds SIGTERM waits for streams)\n"
                 "# enroll_ttl = 86400            (seconds an enrollment token lives)\n"
                 "# api_body_max = 1048576        (bytes of a JSON API request body)\n"
                 "# query_body_max = 1048576      (bytes of each site's answer a query keeps)\n"
                 "# max_pending_handshakes_per_ip = 64\n"
                 "# request_head_timeout = 10     (seconds for a user's request head)\n"
                 "# idle_timeout = 60             (seconds a user connection may idle)\n"
                 "# request_body_timeout = 30     (seconds a request body may stall)\n"
                 "# max_user_conns_per_ip = 256   (user connections from one address)\n"
                 "# fd_reserve = 256              (descriptors kept for site tunnels)\n"
                 "# trim_after_closes = 256       (fall in connections that frees heap)\n"
                 "# max_stalled_streams_per_conn = 64   (responses a user does not read,\n"
                 "# max_stalled_streams_per_token = 128  per connection / token and site)\n"
                 "# max_requests_per_conn = 128   (requests in flight per connection and site)\n"
                 "# max_requests_per_token = 256  (requests in flight per token and site)\n");
    if (t.overflow)
        return -ENOSPC;
    return config_write_file(path, t.buf, 0644);
}

#define init_error(...) cli_usage_error(PROG, "init", __VA_ARGS__)
#define run_error(...)  cli_usage_error(PROG, "run", __VA_ARGS__)

static int cmd_init(int argc, char **argv)
{
    const char *state = NULL, *name_arg = NULL, *pubs[TOKEN_HUB_MAX];
    char name[NET_HOST_MAX + 1], eps[TOKEN_HUB_MAX][TOKEN_ENDPOINT_MAX + 1];
    char db[PATH_CAP], p_token[PATH_CAP], p_conf[PATH_CAP], p_ctl[PATH_CAP], err[512];
    char tok[TOKEN_API_LEN + 1], hash[65], shown[PATH_MAX];
    const char *sans[4 + TOKEN_HUB_MAX];
    char san_hosts[TOKEN_HUB_MAX][NET_HOST_MAX + 1];
    size_t n_pubs = 0, n_sans = 0;
    struct crypto_identity id = {0};
    struct registry *reg = NULL;
    struct stat st;
    struct text t = {.len = 0};
    static const struct option init_opts[] = {
        {"state", required_argument, NULL, 's'},  {"name", required_argument, NULL, 'n'},
        {"public", required_argument, NULL, 'p'}, {"force", no_argument, NULL, 'f'},
        {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0}};
    struct cli cli;
    int force = 0, created = 0, ret = EXIT_FAILURE, rc, opt;

    cli_begin(&cli, PROG, "init", argc - 1, argv + 1, "h", init_opts);
    while ((opt = cli_next(&cli)) != CLI_END) {
        switch (opt) {
        case 'h':
            usage(stdout, "init");
            return EXIT_SUCCESS;
        case 'f':
            force = 1;
            break;
        case 's':
            state = optarg;
            break;
        case 'n':
            name_arg = optarg;
            break;
        case 'p':
            if (n_pubs == TOKEN_HUB_MAX)
                return init_error("at most %d --public endpoints", TOKEN_HUB_MAX);
            if (!endpoint_ok(optarg))
                return init_error("invalid --public \"%s\" (expected HOST:PORT)", optarg);
            pubs[n_pubs++] = optarg;
            break;
        case CLI_ARG:
            return init_error("unexpected argument \"%s\"", optarg);
        default:
            return CLI_EXIT_USAGE;
        }
    }
    if (state == NULL || state[0] == '\0')
        return init_error("init needs --state DIR");
    if (name_arg != NULL) {
        if (!hostname_ok(name_arg))
            return init_error("invalid --name \"%s\" (expected a host name)", name_arg);
        snprintf(name, sizeof(name), "%s", name_arg);
    } else if (local_hostname(name, sizeof(name)) != 0 || !hostname_ok(name)) {
        return fail("cannot use this machine's host name; pass --name HOSTNAME");
    }
    for (size_t i = 0; i < n_pubs; i++)
        snprintf(eps[i], sizeof(eps[i]), "%s", pubs[i]);
    if (n_pubs == 0) {
        if (default_endpoint(name, eps[0], sizeof(eps[0])) != 0 || !endpoint_ok(eps[0]))
            return fail("default endpoint \"%s\" is invalid; pass --public HOST:PORT", eps[0]);
        n_pubs = 1;
    }

    if (path_join(db, sizeof(db), state, "hub.db") != 0 ||
        path_join(p_token, sizeof(p_token), state, "admin.token") != 0 ||
        path_join(p_conf, sizeof(p_conf), state, "hub.conf") != 0 ||
        path_join(p_ctl, sizeof(p_ctl), state, "ctl.conf") != 0)
        return fail("state directory path too long");
    if (lstat(db, &st) == 0) {
        if (!force)
            return fail("%s exists: this hub state is already initialised (--force deletes "
                        "its registry and starts over)",
                        db);
        remove_db(db);
    } else if (errno != ENOENT) {
        return fail("cannot check %s: %s", db, strerror(errno));
    }
    rc = mkdir_p(state, 0700);
    if (rc != 0)
        return fail("cannot create %s: %s", state, strerror(-rc));

    /* The certificate names what people type to reach the hub; sites and
     * tetherctl pin the key, so these only matter to other clients. */
    add_san(sans, &n_sans, sizeof(sans) / sizeof(sans[0]), name);
    add_san(sans, &n_sans, sizeof(sans) / sizeof(sans[0]), "localhost");
    add_san(sans, &n_sans, sizeof(sans) / sizeof(sans[0]), "127.0.0.1");
    add_san(sans, &n_sans, sizeof(sans) / sizeof(sans[0]), "::1");
    for (size_t i = 0; i < n_pubs; i++) {
        int port;
        if (net_split_hostport(eps[i], 0, san_hosts[i], &port) == 0)
            add_san(sans, &n_sans, sizeof(sans) / sizeof(sans[0]), san_hosts[i]);
    }
    /* X.509 common names are limited to 64 bytes; the SAN carries the name. */
    rc = crypto_identity_generate(strlen(name) < 64 ? name : "tether-hub", sans, n_sans, &id);
    if (rc != 0) {
        fail("cannot make the hub key and certificate: %s", strerror(-rc));
        goto out;
    }

    rc = registry_open(db, &reg, err, sizeof(err));
    if (rc != 0) {
        fail("cannot create %s: %s", db, err[0] ? err : strerror(-rc));
        goto out;
    }
    created = 1;
    if (token_api_generate(tok) != 0 || token_hash_hex(tok, strlen(tok), hash) != 0) {
        fail("cannot make the admin token");
        goto out;
    }
    rc = registry_apitoken_create(reg, "admin", "admin", NULL, hash, 0, hub_now());
    if (rc != 0) {
        fail("cannot store the admin token in %s: %s", db, strerror(-rc));
        goto out;
    }
    rc = crypto_identity_save(&id, state, "hub");
    if (rc != 0) {
        fail("cannot write %s/hub.key and hub.crt: %s", state, strerror(-rc));
        goto out;
    }
    text_add(&t, "%s\n", tok);
    rc = config_write_file(p_token, t.buf, 0600);
    if (rc != 0) {
        fail("cannot write %s: %s", p_token, strerror(-rc));
        goto out;
    }
    rc = write_hub_conf(p_conf, name, eps, n_pubs);
    if (rc != 0) {
        fail("cannot write %s: %s", p_conf, strerror(-rc));
        goto out;
    }
    t.len = 0;
    text_add(&t,
             "# tetherctl configuration for this hub, written by `tether-hub init`.\n"
             "# Use it with: tetherctl --config FILE, TETHER_CONFIG=FILE, or copy it to\n"
             "# ~/.config/tether/ctl.conf. It holds an admin token: keep it private.\n"
             "hub = https://%s\n"
             "hub_pin = %s\n"
             "token = %s\n",
             eps[0], id.pin, tok);
    rc = t.overflow ? -ENOSPC : config_write_file(p_ctl, t.buf, 0600);
    if (rc != 0) {
        fail("cannot write %s: %s", p_ctl, strerror(-rc));
        goto out;
    }

    if (realpath(state, shown) == NULL)
        snprintf(shown, sizeof(shown), "%s", state);
    printf("Hub state initialised in %s\n"
           "  hub name     %s\n"
           "  hub key pin  %s\n"
           "  endpoints   ",
           shown, name, id.pin);
    for (size_t i = 0; i < n_pubs; i++)
        printf(" %s", eps[i]);
    printf(" (written into enrollment tokens)\n"
           "  admin token  %s/admin.token\n"
           "  tetherctl    %s/ctl.conf\n"
           "\n"
           "Next steps:\n"
           "  tether-hub run --state %s\n"
           "  export TETHER_CONFIG=%s/ctl.conf\n"
           "  tetherctl site add NAME    # prints an enrollment token for tether-site enroll\n",
           shown, shown, shown, shown);
    fflush(stdout);
    created = 0;
    ret = EXIT_SUCCESS;
out:
    if (reg != NULL)
        registry_close(reg);
    /* A half-made state would make the next init refuse; leave none. */
    if (created) {
        remove_db(db);
        unlink(p_token); /* its token was only in that registry */
        unlink(p_ctl);
    }
    crypto_identity_free(&id);
    explicit_bzero(tok, sizeof(tok));
    explicit_bzero(t.buf, sizeof(t.buf));
    return ret;
}

/* --- run --- */

/* The daemon's own state beside struct hub. */
static struct {
    struct run_cli cli;
    uint64_t drain_started_ms;
    int finished;
    uv_timer_t watchdog;
    int watchdog_on;
} d;

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
    tunnel_drain(t);
}

static void set_ping_repeat(struct tunnel *t, void *arg)
{
    tunnel_set_ping_interval(t, *(uint64_t *)arg);
}

static void close_listeners(struct hub *h)
{
    hub_listen_stop(h);
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

/* Everything that keeps the loop alive goes away; uv_run then returns. */
static void finish(struct hub *h, const char *why)
{
    if (d.finished)
        return;
    d.finished = 1;
    log_event(LOG_INFO, "shutdown", "reason=%s tunnels=%zu", log_q(why), h->tunnels.count);
    close_listeners(h);
    conn_close_all(&h->conns, "hub shutting down");
    query_shutdown(h);
    close_handle((uv_handle_t *)&h->sigterm);
    close_handle((uv_handle_t *)&h->sigint);
    close_handle((uv_handle_t *)&h->sighup);
    close_handle((uv_handle_t *)&h->drain_timer);
    if (uv_timer_init(h->loop, &d.watchdog) == 0) {
        d.watchdog_on = 1;
        uv_timer_start(&d.watchdog, watchdog_cb, SHUTDOWN_WATCHDOG_MS, 0);
        uv_unref((uv_handle_t *)&d.watchdog);
    }
}

static void drain_tick(uv_timer_t *timer)
{
    struct hub *h = timer->data;
    uint64_t waited = uv_now(h->loop) - d.drain_started_ms;
    size_t open = 0;

    hub_tunnel_each(h, count_streams, &open);
    if (open == 0)
        finish(h, "drained");
    else if (waited >= h->cfg.drain_grace_ms)
        finish(h, "drain grace period over");
}

static void on_stop_signal(uv_signal_t *sig, int signum)
{
    struct hub *h = sig->data;
    size_t open = 0;

    if (h->draining) {
        log_event(LOG_WARN, "drain_aborted", "signal=%s", strsignal(signum));
        finish(h, "second signal");
        return;
    }
    h->draining = 1;
    d.drain_started_ms = uv_now(h->loop);
    hub_tunnel_each(h, count_streams, &open);
    log_event(LOG_INFO, "draining", "signal=%s tunnels=%zu streams=%zu grace_ms=%llu",
              log_q(strsignal(signum)), h->tunnels.count, open,
              (unsigned long long)h->cfg.drain_grace_ms);
    close_listeners(h);
    hub_tunnel_each(h, drain_one, NULL);
    uv_timer_start(&h->drain_timer, drain_tick, DRAIN_TICK_MS, DRAIN_TICK_MS);
}

static void on_hup(uv_signal_t *sig, int signum)
{
    struct hub *h = sig->data;
    struct settings s;
    char err[512] = "";
    uint64_t ping;

    if (load_settings(&d.cli, &s, err, sizeof(err)) != 0) {
        log_event(LOG_ERROR, "config_reload_failed", "error=%s kept=previous", log_q(err));
        return;
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
}

/* Runs the loop until every handle is closed and its callback ran. */
static void loop_teardown(uv_loop_t *loop, int warn)
{
    for (int round = 0; uv_loop_close(loop) == UV_EBUSY; round++) {
        /* The first round only lets pending close callbacks run. */
        if (round > 0)
            uv_walk(loop, force_close_walk, warn ? "warn" : NULL);
        uv_run(loop, UV_RUN_DEFAULT);
    }
}

static int parse_flag_seconds(const char *flag, const char *v, const struct time_key *k,
                              uint64_t *out, int *has)
{
    if (cli_parse_seconds_ms(v, k->min_ms, k->max_ms, out) != 0)
        return run_error("invalid --%s \"%s\" (expected seconds, %g to %g)", flag, v,
                         (double)k->min_ms / 1000.0, (double)k->max_ms / 1000.0);
    *has = 1;
    return 0;
}

/* 0, -1 after --help, or the exit code of a usage error. */
static int parse_run_args(int argc, char **argv, struct run_cli *cli)
{
    static const struct option opts[] = {{"state", required_argument, NULL, 's'},
                                         {"config", required_argument, NULL, 'c'},
                                         {"listen", required_argument, NULL, 'l'},
                                         {"ping-interval", required_argument, NULL, 'i'},
                                         {"handshake-timeout", required_argument, NULL, 'H'},
                                         {"drain-grace", required_argument, NULL, 'g'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    struct cli p;
    int opt, rc = 0;

    cli_begin(&p, PROG, "run", argc - 1, argv + 1, "h", opts);
    while (rc == 0 && (opt = cli_next(&p)) != CLI_END) {
        switch (opt) {
        case 'h':
            usage(stdout, "run");
            return -1;
        case 's':
            cli->state = optarg;
            break;
        case 'c':
            cli->config = optarg;
            break;
        case 'l':
            if (cli->n_listen == HUB_MAX_LISTEN)
                return run_error("at most %d --listen addresses", HUB_MAX_LISTEN);
            if (!endpoint_ok(optarg))
                return run_error("invalid --listen \"%s\" (expected HOST:PORT)", optarg);
            cli->listen[cli->n_listen++] = optarg;
            break;
        case 'i':
            rc = parse_flag_seconds("ping-interval", optarg, &time_keys[TK_PING_INTERVAL],
                                    &cli->ping_ms, &cli->has_ping);
            break;
        case 'H':
            rc = parse_flag_seconds("handshake-timeout", optarg, &time_keys[TK_HANDSHAKE_TIMEOUT],
                                    &cli->handshake_ms, &cli->has_handshake);
            break;
        case 'g':
            rc = parse_flag_seconds("drain-grace", optarg, &time_keys[TK_DRAIN_GRACE],
                                    &cli->drain_ms, &cli->has_drain);
            break;
        case CLI_ARG:
            return run_error("unexpected argument \"%s\"", optarg);
        default:
            return CLI_EXIT_USAGE;
        }
    }
    if (rc != 0)
        return rc;
    if (cli->state == NULL || cli->state[0] == '\0')
        return run_error("run needs --state DIR");
    return 0;
}

/* Each site holds one connection: thousands of sites need thousands of fds,
 * far above the usual soft limit of 1024. */
static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static int cmd_run(int argc, char **argv)
{
    struct hub *h = NULL;
    struct settings s;
    const char *listen[HUB_MAX_LISTEN];
    char db[PATH_CAP], err[512] = "", addrs[HUB_MAX_LISTEN * (TOKEN_ENDPOINT_MAX + 1)] = "";
    size_t n_listen = 0;
    uv_loop_t *loop = NULL;
    WOLFSSL_CTX *ctx = NULL;
    struct stat st;
    int ret = EXIT_FAILURE, rc, served = 0;

    rc = parse_run_args(argc, argv, &d.cli);
    if (rc != 0)
        return rc < 0 ? EXIT_SUCCESS : rc;
    log_init_from_env();
    raise_fd_limit();

    h = calloc(1, sizeof(*h));
    if (h == NULL)
        return fail("out of memory");
    if (strlen(d.cli.state) >= sizeof(h->state_dir) ||
        path_join(db, sizeof(db), d.cli.state, "hub.db") != 0) {
        fail("state directory path too long");
        goto out;
    }
    snprintf(h->state_dir, sizeof(h->state_dir), "%s", d.cli.state);
    /* registry_open would create an empty registry; a missing one means
     * this directory was never initialised (or is the wrong one). */
    if (stat(db, &st) != 0) {
        fail("cannot open %s: %s (run `tether-hub init --state %s` first)", db, strerror(errno),
             d.cli.state);
        goto out;
    }

    if (load_settings(&d.cli, &s, err, sizeof(err)) != 0) {
        fail("%s", err);
        goto out;
    }
    h->cfg = s.cfg;
    if (d.cli.n_listen > 0) {
        for (size_t i = 0; i < d.cli.n_listen; i++)
            listen[n_listen++] = d.cli.listen[i];
    } else if (s.n_listen > 0) {
        for (size_t i = 0; i < s.n_listen; i++)
            listen[n_listen++] = s.listen[i];
    } else {
        listen[n_listen++] = DEFAULT_LISTEN;
    }
    loop = uv_default_loop();
    h->loop = loop;
    conn_ctx_init(&h->conns, loop);
    h->dispatch = api_dispatch;
    rc = registry_open(db, &h->reg, err, sizeof(err));
    if (rc != 0) {
        fail("cannot open %s: %s", db, err[0] ? err : strerror(-rc));
        goto out;
    }
    rc = registry_session_close_stale(h->reg, hub_now(), "hub restarted");
    if (rc != 0)
        log_event(LOG_WARN, "stale_sessions", "error=%s", log_q(strerror(-rc)));
    rc = crypto_identity_load(d.cli.state, "hub", &h->id);
    if (rc != 0) {
        fail("cannot load the hub key %s/hub.key and certificate %s/hub.crt: %s", d.cli.state,
             d.cli.state, strerror(-rc));
        goto out;
    }
    rc = tls_ctx_tunnel_server(&h->id, &ctx);
    if (rc != 0) {
        fail("cannot set up TLS for site tunnels: %s", strerror(-rc));
        goto out;
    }
    h->tunnel_ctx = ctx;
    rc = tls_ctx_user_server(&h->id, &ctx);
    if (rc != 0) {
        fail("cannot set up TLS for users: %s", strerror(-rc));
        goto out;
    }
    h->user_ctx = ctx;
    h->started_ms = uv_now(loop);
    rc = query_init(h);
    if (rc != 0) {
        fail("cannot start the query engine: %s", strerror(-rc));
        goto out;
    }

    uv_signal_init(loop, &h->sigterm);
    uv_signal_init(loop, &h->sigint);
    uv_signal_init(loop, &h->sighup);
    uv_timer_init(loop, &h->drain_timer);
    h->sigterm.data = h->sigint.data = h->sighup.data = h->drain_timer.data = h;

    for (size_t i = 0; i < n_listen; i++) {
        size_t used = strlen(addrs);

        err[0] = '\0';
        rc = hub_listen(h, listen[i], err, sizeof(err));
        if (rc != 0) {
            fail("cannot listen on %s: %s", listen[i], err[0] ? err : strerror(-rc));
            goto out;
        }
        snprintf(addrs + used, sizeof(addrs) - used, "%s%s", i > 0 ? "," : "", listen[i]);
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
    uv_signal_start(&h->sigterm, on_stop_signal, SIGTERM);
    uv_signal_start(&h->sigint, on_stop_signal, SIGINT);
    uv_signal_start(&h->sighup, on_hup, SIGHUP);
    served = 1;

    uv_run(loop, UV_RUN_DEFAULT);
    ret = EXIT_SUCCESS;
out:
    if (loop != NULL) {
        /* Startup failures leave listeners or signal handles behind. */
        close_listeners(h);
        conn_close_all(&h->conns, "hub shutting down");
        query_shutdown(h);
        close_handle((uv_handle_t *)&h->sigterm);
        close_handle((uv_handle_t *)&h->sigint);
        close_handle((uv_handle_t *)&h->sighup);
        close_handle((uv_handle_t *)&h->drain_timer);
        if (d.watchdog_on)
            close_handle((uv_handle_t *)&d.watchdog);
        loop_teardown(loop, served);
    }
    if (h != NULL) {
        api_shutdown();
        hub_users_free(h);
        if (h->reg != NULL)
            registry_close(h->reg);
        if (h->tunnel_ctx != NULL)
            wolfSSL_CTX_free(h->tunnel_ctx);
        if (h->user_ctx != NULL)
            wolfSSL_CTX_free(h->user_ctx);
        crypto_identity_free(&h->id);
        /* Every tunnel is gone by now; the map's array is all that is left. */
        free(h->tunnels.buckets);
        free(h);
    }
    if (served)
        log_event(LOG_INFO, "hub_stopped", "exit=%d", ret);
    return ret;
}

int main(int argc, char **argv)
{
    const char *cmd;
    int ret, at;

    if (argc >= 2 && strcmp(argv[1], "run") == 0) {
        tune_reexec(argv); /* returns only when untuned; the start-up line says which */
        tune_malloc();
    }
    signal(SIGPIPE, SIG_IGN);
    at = cli_top(PROG, argc, argv, usage, &ret);
    if (at < 0)
        return ret;
    cmd = argv[at];
    if (strcmp(cmd, "help") == 0 || strcmp(cmd, "version") == 0)
        return cli_simple_command(PROG, argc - at, argv + at, usage);
    if (strcmp(cmd, "init") != 0 && strcmp(cmd, "run") != 0)
        return cli_usage_error(PROG, NULL, "unknown command \"%s\"", cmd);
    if (wolfSSL_Init() != WOLFSSL_SUCCESS)
        return fail("cannot initialise wolfSSL");
    ret = strcmp(cmd, "init") == 0 ? cmd_init(argc - at + 1, argv + at - 1)
                                   : cmd_run(argc - at + 1, argv + at - 1);
    wolfSSL_Cleanup();
    return ret;
}
