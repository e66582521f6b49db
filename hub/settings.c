/* hub.conf and the run flags: defaults, keys and their bounds, into struct hub_config. */
/* SPDX-License-Identifier: MIT */
#include "settings.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "../common/cli.h"
#include "../common/config.h"
#include "../common/log.h"
#include "../common/net.h"
#include "store/registry.h"

int settings_path_join(char *out, size_t cap, const char *dir, const char *file)
{
    int n = snprintf(out, cap, "%s/%s", dir, file);

    return n < 0 || (size_t)n >= cap ? -ENAMETOOLONG : 0;
}

/* A host name, IPv4 literal or IPv6 literal (no brackets, no port). */
int settings_hostname_ok(const char *s)
{
    size_t len = strlen(s);
    struct in6_addr a6;

    if (len == 0 || len > NET_HOST_MAX)
        return 0;
    if (inet_pton(AF_INET6, s, &a6) == 1)
        return 1;
    return net_host_chars_ok(s, len);
}

/* A "HOST:PORT" endpoint that fits an enrollment token. */
int settings_endpoint_ok(const char *s)
{
    char host[NET_HOST_MAX + 1];
    int port;

    return strlen(s) <= TOKEN_ENDPOINT_MAX && net_split_hostport(s, 0, host, &port) == 0;
}

/* "NAME:6443", with brackets for an IPv6 literal; -ENAMETOOLONG if it does
 * not fit an endpoint. */
int settings_default_endpoint(const char *name, char *out, size_t cap)
{
    int n;

    if (strchr(name, ':') != NULL)
        n = snprintf(out, cap, "[%s]:%d", name, SETTINGS_DEFAULT_PORT);
    else
        n = snprintf(out, cap, "%s:%d", name, SETTINGS_DEFAULT_PORT);
    return n < 0 || (size_t)n >= cap ? -ENAMETOOLONG : 0;
}

int settings_local_hostname(char *out, size_t cap)
{
    if (gethostname(out, cap) != 0)
        return -errno;
    out[cap - 1] = '\0';
    return out[0] != '\0' ? 0 : -ENOENT;
}
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
    s->cfg.access_log = 1;
    s->cfg.metrics_max_sites = 500;
    s->cfg.max_stalled_streams_per_conn = 64;
    s->cfg.max_stalled_streams_per_token = 128;
    s->cfg.max_requests_per_conn = 128;
    s->cfg.max_requests_per_token = 256;
    s->cfg.max_long_streams_per_token = 512;
    s->cfg.max_long_streams_per_site = 768;
}

/* Bounds of the time keys, in milliseconds. */
struct time_key {
    const char *key;
    size_t off; /* offsetof(struct hub_config, ...) */
    uint64_t min_ms, max_ms;
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

int settings_parse_seconds(enum settings_time_key k, const char *v, uint64_t *out_ms, char *why,
                           size_t why_cap)
{
    const struct time_key *t = &time_keys[k];

    assert(k < TK_COUNT && t->key != NULL); /* every enum slot has its row */
    if (cli_parse_seconds_ms(v, t->min_ms, t->max_ms, out_ms) == 0)
        return 0;
    snprintf(why, why_cap, "expected seconds from %g to %g", (double)t->min_ms / 1000.0,
             (double)t->max_ms / 1000.0);
    return -EINVAL;
}

void settings_time_bounds(enum settings_time_key k, uint64_t *min_ms, uint64_t *max_ms)
{
    assert(k < TK_COUNT);
    *min_ms = time_keys[k].min_ms;
    *max_ms = time_keys[k].max_ms;
}

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
    {"max_long_streams_per_token", offsetof(struct hub_config, max_long_streams_per_token), 1,
     100000},
    {"max_long_streams_per_site", offsetof(struct hub_config, max_long_streams_per_site), 1,
     100000},
    {"metrics_max_sites", offsetof(struct hub_config, metrics_max_sites), 0, 10000000},
};
#define N_COUNT_KEYS (sizeof(count_keys) / sizeof(count_keys[0]))

/* Applies one value; 0, or a negative code with a reason in why. */
static int apply_key(struct settings *s, const char *key, const char *val, int *seen_public,
                     int *seen_listen, char *why, size_t why_cap)
{
    long long n;

    for (size_t i = 0; i < N_TIME_KEYS; i++) {
        if (strcmp(key, time_keys[i].key) != 0)
            continue;
        return settings_parse_seconds((enum settings_time_key)i, val,
                                      (uint64_t *)((char *)&s->cfg + time_keys[i].off), why,
                                      why_cap);
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
        if (!settings_hostname_ok(val) || strlen(val) >= sizeof(s->cfg.name)) {
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
        if (!settings_endpoint_ok(val)) {
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
        if (!settings_endpoint_ok(val)) {
            snprintf(why, why_cap, "expected HOST:PORT");
            return -EINVAL;
        }
        if (s->n_listen == HUB_MAX_LISTEN) {
            snprintf(why, why_cap, "more than 8 listen addresses");
            return -E2BIG;
        }
        snprintf(s->listen[s->n_listen++], sizeof(s->listen[0]), "%s", val);
    } else if (strcmp(key, "enroll_ttl") == 0) {
        /* The same bound as a request's ttl_s (docs/api.md): 30 days. */
        if (cli_parse_int(val, 60, 30LL * 86400, &n) != 0) {
            snprintf(why, why_cap, "expected whole seconds from 60 to 2592000");
            return -EINVAL;
        }
        s->cfg.enroll_ttl_s = n;
    } else if (strcmp(key, "api_body_max") == 0) {
        if (cli_parse_int(val, 1024, 256LL << 20, &n) != 0) {
            snprintf(why, why_cap, "expected bytes from 1024 to 268435456");
            return -EINVAL;
        }
        s->cfg.api_body_max = (size_t)n;
    } else if (strcmp(key, "access_log") == 0) {
        if (strcmp(val, "on") != 0 && strcmp(val, "off") != 0) {
            snprintf(why, why_cap, "expected on or off");
            return -EINVAL;
        }
        s->cfg.access_log = strcmp(val, "on") == 0;
    } else if (strcmp(key, "db") == 0) {
        if (!settings_db_ok(val)) {
            snprintf(why, why_cap, "expected a postgresql:// URL");
            return -EINVAL;
        }
        snprintf(s->db, sizeof(s->db), "%s", val);
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
int settings_load(const struct settings_cli *cli, struct settings *s, char *err, size_t err_cap)
{
    char path[SETTINGS_PATH_CAP];
    int rc;

    settings_defaults(s);
    if (settings_path_join(path, sizeof(path), cli->state, "hub.conf") != 0) {
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
    if (s->cfg.name[0] == '\0' && settings_local_hostname(s->cfg.name, sizeof(s->cfg.name)) != 0)
        snprintf(s->cfg.name, sizeof(s->cfg.name), "localhost");
    if (s->cfg.n_public == 0) {
        if (settings_default_endpoint(s->cfg.name, s->cfg.public_eps[0],
                                      sizeof(s->cfg.public_eps[0])) != 0) {
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

void settings_text_add(struct settings_text *t, const char *fmt, ...)
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

int settings_db_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;

    if (n == 0 || n >= SETTINGS_DB_CAP || !registry_is_url(s))
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] <= ' ' || s[i] == 0x7f)
            return 0;
    return 1;
}

int settings_db(const char *state, char *out, size_t cap, char *err, size_t err_cap)
{
    char path[SETTINGS_PATH_CAP];
    struct config c = {0};
    const char *v;
    int rc;

    out[0] = '\0';
    if (settings_path_join(path, sizeof(path), state, "hub.conf") != 0) {
        snprintf(err, err_cap, "state directory path too long");
        return -ENAMETOOLONG;
    }
    rc = config_load(path, &c, err, err_cap);
    if (rc == -ENOENT)
        return 0; /* no hub.conf: the SQLite file, as before */
    if (rc != 0)
        return rc;
    v = config_get(&c, "db");
    if (v != NULL && !settings_db_ok(v)) {
        snprintf(err, err_cap, "%s: bad db: expected a postgresql:// URL", path);
        rc = -EINVAL;
    } else if (v != NULL) {
        snprintf(out, cap, "%s", v);
    }
    config_free(&c);
    return rc;
}

int settings_public_json(const char eps[][TOKEN_ENDPOINT_MAX + 1], size_t n_eps, char **out)
{
    json_t *a = json_array();
    int rc = -ENOMEM;

    *out = NULL;
    for (size_t i = 0; a != NULL && i < n_eps; i++)
        if (json_array_append_new(a, json_string(eps[i])) != 0)
            goto out;
    if (a != NULL && (*out = json_dumps(a, JSON_COMPACT)) != NULL)
        rc = 0;
out:
    json_decref(a);
    return rc;
}

int settings_write_conf(const char *path, const char *name, char eps[][TOKEN_ENDPOINT_MAX + 1],
                        size_t n_eps, const char *db)
{
    struct settings_text t = {.len = 0};

    settings_text_add(
        &t,
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
        settings_text_add(&t, "public = %s\n", eps[i]);
    if (db != NULL)
        settings_text_add(&t,
                          "\n"
                          "# The registry's PostgreSQL database (libpq URL), instead of hub.db in\n"
                          "# the state directory. Read at start only. A password may also come\n"
                          "# from ~/.pgpass or PGPASSFILE rather than this line.\n"
                          "db = %s\n",
                          db);
    settings_text_add(
        &t, "\n"
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
            "# max_requests_per_token = 256  (requests in flight per token and site)\n"
            "# max_long_streams_per_token = 512  (WebSocket, CONNECT and gRPC streams\n"
            "# max_long_streams_per_site = 768   per token and site / per site)\n"
            "# access_log = on               (an \"access\" line per proxied request)\n"
            "# metrics_max_sites = 500       (per-site /metrics series up to this many\n"
            "#                                sites; 0 never)\n");
    if (t.overflow)
        return -ENOSPC;
    return config_write_file(path, t.buf, db != NULL ? 0600 : 0644);
}
