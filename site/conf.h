/* site.conf: the one loader of the site's configuration, used by run, doctor and rotate-key. */
/* SPDX-License-Identifier: MIT */
#ifndef TETHER_SITE_CONF_H
#define TETHER_SITE_CONF_H

/* The service URL schemes site_conf_add_service takes (for messages). */
#define SITE_CONF_SCHEMES "http://, https://, h2c://, h2://, tcp:// and unix:"

#include <stddef.h>
#include <stdint.h>

#include "../common/crypto.h"
#include "../common/token.h"
#include "agent.h"
#include "../common/proxyconnect.h"

/* What site.conf and the --config files say. Plain values, no pointers:
 * the caller owns the struct. Keys (docs/site-guide.md):
 *   site = NAME    hub_pin = sha256//... (repeats)    hub = HOST:PORT (repeats)
 *   service = NAME=URL (repeats)   ping_interval = S   connect_timeout = S
 *   source_port = N        proxy = http://[USER:PASS@]HOST:PORT ("" = none)
 *   service_opt = NAME:KEY[=VALUE] (repeats; any service: restricted;
 *                 https:// services: ca=FILE, pin=PIN (up to 4), cert=FILE,
 *                 key=FILE, name=HOST, insecure)
 * Unknown keys are ignored, so that an older agent reads a newer file. */
struct site_conf {
    char site[TOKEN_NAME_MAX + 1];                    /* "" if not given */
    char hub_pin[CRYPTO_PIN_LEN + 1];                 /* hub_pins[0], "" when none */
    char hub_pins[AGENT_PIN_MAX][CRYPTO_PIN_LEN + 1]; /* hub_pin lines (repeats) */
    size_t n_pins;
    char hubs[TOKEN_HUB_MAX][TOKEN_ENDPOINT_MAX + 1]; /* in the order to try */
    size_t n_hubs;
    struct agent_service services[AGENT_MAX_SERVICES];
    size_t n_services;
    uint64_t ping_interval_ms;   /* valid when has_ping_interval */
    uint64_t connect_timeout_ms; /* valid when has_connect_timeout */
    int has_ping_interval, has_connect_timeout;
    int source_port; /* 0 = not given */
    int proxy_set;   /* a proxy key was read: use_proxy then says which */
    int use_proxy;
    struct proxyconnect_proxy proxy; /* when use_proxy */
};

/* An empty configuration. */
void site_conf_init(struct site_conf *c);

/* Reads path over what c holds: site, hub_pin, ping_interval,
 * connect_timeout, source_port and proxy replace earlier values; the file's
 * hub lines replace the earlier list as a whole; its services are added.
 * Returns 0; -ENOENT if the file does not exist; or another negative code
 * with a one-line reason naming the file, line and key in err (never a
 * proxy's credentials). On an error c may be partly updated. */
int site_conf_load(const char *path, struct site_conf *c, char *err, size_t err_cap);

/* Adds a service "NAME=URL" (URL http://, https://, unix:). Returns 0,
 * -EINVAL (malformed or too many), -ENOTSUP (a scheme the agent does not
 * serve yet) or -EEXIST (the name is taken). */
int site_conf_add_service(struct site_conf *c, const char *spec);

/* Applies a per-service option "NAME:KEY[=VALUE]" to the service NAME, which
 * must already be defined. Returns 0, -ESRCH (no such service), -E2BIG (too
 * many pins) or -EINVAL, with the reason in why. Options that exclude each
 * other are caught by site_conf_check(), once every source is read. */
int site_conf_service_opt(struct site_conf *c, const char *spec, char *why, size_t why_cap);

/* 0 if c has what every command needs (a site, a hub, a hub_pin) and each
 * https:// service's options agree (not insecure with ca or pin, not ca with
 * pin, cert with key); else -EINVAL with a reason in err. */
int site_conf_check(const struct site_conf *c, char *err, size_t err_cap);

#endif
