/* hub.conf and the run flags: defaults, keys and their bounds, into struct hub_config. */
/* SPDX-License-Identifier: MIT */
#ifndef TETHER_HUB_SETTINGS_H
#define TETHER_HUB_SETTINGS_H

#include <stddef.h>
#include <stdint.h>

#include "../common/token.h"
#include "core/hub.h"

#define SETTINGS_DEFAULT_PORT   6443
#define SETTINGS_DEFAULT_LISTEN "0.0.0.0:6443"
#define SETTINGS_PATH_CAP       1200
#define SETTINGS_DB_CAP         1024

/* What the command line of `run` says; kept for SIGHUP, where the flags must
 * still win over the files. The strings are not owned (argv, or the
 * caller's) and must outlive the daemon. */
struct settings_cli {
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
    /* hub.conf's `db`: the registry's database URL; "" = STATE/hub.db.
     * Read at start only (a reload keeps the registry it has). */
    char db[SETTINGS_DB_CAP];
};

/* The time keys a flag can also set; the flags pick their key by this
 * name, never by a position in the table. */
enum settings_time_key {
    TK_PING_INTERVAL,
    TK_HANDSHAKE_TIMEOUT,
    TK_REQUEST_TIMEOUT,
    TK_DRAIN_GRACE,
    TK_REQUEST_HEAD_TIMEOUT,
    TK_IDLE_TIMEOUT,
    TK_REQUEST_BODY_TIMEOUT,
    TK_COUNT
};

/* Parses seconds for key k within its bounds; 0, or -EINVAL with the
 * expected range in why. */
int settings_parse_seconds(enum settings_time_key k, const char *v, uint64_t *out_ms, char *why,
                           size_t why_cap);

/* Key k's bounds in milliseconds. */
void settings_time_bounds(enum settings_time_key k, uint64_t *min_ms, uint64_t *max_ms);

/* Defaults, then STATE/hub.conf (missing: a warning), then cli->config, then
 * the flags. 0, or a negative code with the reason in err. Unknown keys are
 * logged and skipped. */
int settings_load(const struct settings_cli *cli, struct settings *s, char *err, size_t err_cap);

/* Writes the hub.conf that `init` leaves: name, public endpoints, the
 * database URL db (NULL: none, the registry is STATE/hub.db) and every other
 * key commented out with its default. With a db the file is 0600 (a URL
 * may hold a password), else 0644. */
int settings_write_conf(const char *path, const char *name, char eps[][TOKEN_ENDPOINT_MAX + 1],
                        size_t n_eps, const char *db);
/* The endpoints as the registry's hubs.public keeps them, a JSON array of
 * strings: 0 and *out (the caller frees it), or -ENOMEM. */
int settings_public_json(const char eps[][TOKEN_ENDPOINT_MAX + 1], size_t n_eps, char **out);
/* A database URL that hub.conf's `db` and `init --db` take: postgresql://
 * or postgres://, no blanks or control characters, shorter than
 * SETTINGS_DB_CAP. */
int settings_db_ok(const char *s);
/* STATE/hub.conf's `db` into out ("" when it has none, or there is no
 * hub.conf): where `run` opens the registry, read before anything else.
 * 0, or a negative code with the reason in err. */
int settings_db(const char *state, char *out, size_t cap, char *err, size_t err_cap);

/* "DIR/FILE" into out; -ENAMETOOLONG if it does not fit. */
int settings_path_join(char *out, size_t cap, const char *dir, const char *file);
/* A host name, IPv4 literal or IPv6 literal (no brackets, no port). */
int settings_hostname_ok(const char *s);
/* A "HOST:PORT" endpoint that fits an enrollment token. */
int settings_endpoint_ok(const char *s);
/* "NAME:6443", with brackets for an IPv6 literal; -ENAMETOOLONG if it does
 * not fit an endpoint. */
int settings_default_endpoint(const char *name, char *out, size_t cap);
/* This machine's host name; -ENOENT if it has none. */
int settings_local_hostname(char *out, size_t cap);

/* A growing text buffer for the files init writes. */
struct settings_text {
    char buf[8192];
    size_t len;
    int overflow;
};
void settings_text_add(struct settings_text *t, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif
