/* site.conf: the one loader of the site's configuration, used by run, doctor and rotate-key. */
/* SPDX-License-Identifier: MIT */
#include "conf.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "../common/cli.h"
#include "../common/config.h"
#include "../common/net.h"

void site_conf_init(struct site_conf *c)
{
    memset(c, 0, sizeof(*c));
}

int site_conf_add_service(struct site_conf *c, const char *spec)
{
    const char *eq = strchr(spec, '=');
    struct agent_service *s;
    size_t nl;

    if (eq == NULL || c->n_services >= AGENT_MAX_SERVICES)
        return -EINVAL;
    nl = (size_t)(eq - spec);
    if (nl == 0 || nl > TOKEN_NAME_MAX)
        return -EINVAL;
    s = &c->services[c->n_services];
    memcpy(s->name, spec, nl);
    s->name[nl] = '\0';
    if (!token_name_valid(s->name) || net_parse_url(eq + 1, &s->url) != 0)
        return -EINVAL;
    if (s->url.kind != NET_URL_HTTP && s->url.kind != NET_URL_UNIX)
        return -ENOTSUP;
    for (size_t i = 0; i < c->n_services; i++)
        if (strcmp(c->services[i].name, s->name) == 0)
            return -EEXIST;
    c->n_services++;
    return 0;
}

/* Applies one key; 0, -ENOENT for an unknown key, or -EINVAL with what was
 * expected in why. */
static int apply(struct site_conf *c, const char *key, const char *v, int *seen_hub, char *why,
                 size_t why_cap)
{
    long long n;
    int rc;

    if (strcmp(key, "site") == 0) {
        if (!token_name_valid(v)) {
            snprintf(why, why_cap, "expected a site name");
            return -EINVAL;
        }
        snprintf(c->site, sizeof(c->site), "%s", v);
    } else if (strcmp(key, "hub_pin") == 0) {
        if (!crypto_pin_valid(v)) {
            snprintf(why, why_cap, "expected sha256// and 44 base64 characters");
            return -EINVAL;
        }
        snprintf(c->hub_pin, sizeof(c->hub_pin), "%s", v);
    } else if (strcmp(key, "hub") == 0) {
        /* Checked as an endpoint only when dialled: doctor reports a bad
         * one as a verdict of its own. */
        if (!*seen_hub) {
            c->n_hubs = 0;
            *seen_hub = 1;
        }
        if (v[0] == '\0' || strlen(v) > TOKEN_ENDPOINT_MAX) {
            snprintf(why, why_cap, "expected HOST:PORT of at most %d characters",
                     TOKEN_ENDPOINT_MAX);
            return -EINVAL;
        }
        if (c->n_hubs == TOKEN_HUB_MAX) {
            snprintf(why, why_cap, "more than %d hub endpoints", TOKEN_HUB_MAX);
            return -E2BIG;
        }
        snprintf(c->hubs[c->n_hubs++], sizeof(c->hubs[0]), "%s", v);
    } else if (strcmp(key, "service") == 0) {
        rc = site_conf_add_service(c, v);
        if (rc != 0) {
            snprintf(why, why_cap, "%s",
                     rc == -EEXIST    ? "the name is given twice"
                     : rc == -ENOTSUP ? "only http:// and unix: services are supported so far"
                                      : "expected NAME=URL");
            return rc;
        }
    } else if (strcmp(key, "ping_interval") == 0) {
        if (cli_parse_seconds_ms(v, 0, 3600000, &c->ping_interval_ms) != 0) {
            snprintf(why, why_cap, "expected seconds from 0 to 3600");
            return -EINVAL;
        }
        c->has_ping_interval = 1;
    } else if (strcmp(key, "connect_timeout") == 0) {
        if (cli_parse_seconds_ms(v, 100, 600000, &c->connect_timeout_ms) != 0) {
            snprintf(why, why_cap, "expected seconds from 0.1 to 600");
            return -EINVAL;
        }
        c->has_connect_timeout = 1;
    } else if (strcmp(key, "source_port") == 0) {
        if (cli_parse_int(v, 1, 65535, &n) != 0) {
            snprintf(why, why_cap, "expected a port from 1 to 65535");
            return -EINVAL;
        }
        c->source_port = (int)n;
    } else if (strcmp(key, "proxy") == 0) {
        c->proxy_set = 1;
        c->use_proxy = 0; /* "proxy =" turns off one set earlier */
        if (v[0] != '\0') {
            if (proxyconnect_parse_url(v, &c->proxy) != 0) {
                snprintf(why, why_cap, "expected http://[user:pass@]host:port");
                return -EINVAL;
            }
            c->use_proxy = 1;
        }
    } else {
        return -ENOENT;
    }
    return 0;
}

int site_conf_load(const char *path, struct site_conf *c, char *err, size_t err_cap)
{
    struct config cfg = {0};
    int seen_hub = 0, rc;

    rc = config_load(path, &cfg, err, err_cap);
    if (rc != 0)
        goto out;
    for (size_t i = 0; i < cfg.n; i++) {
        const struct config_entry *e = &cfg.entries[i];
        char why[128] = "";
        int r = apply(c, e->key, e->value, &seen_hub, why, sizeof(why));

        if (r == -ENOENT)
            continue;
        if (r != 0) {
            /* A proxy value may carry a password: never echoed. */
            if (strcmp(e->key, "proxy") == 0)
                snprintf(err, err_cap, "%s:%d: bad proxy: %s", path, e->line, why);
            else
                snprintf(err, err_cap, "%s:%d: bad %s \"%.200s\": %s", path, e->line, e->key,
                         e->value, why);
            rc = r;
            goto out;
        }
    }
    rc = 0;
out:
    config_free(&cfg);
    return rc;
}

int site_conf_check(const struct site_conf *c, char *err, size_t err_cap)
{
    if (c->site[0] != '\0' && c->n_hubs > 0 && c->hub_pin[0] != '\0')
        return 0;
    snprintf(err, err_cap, "needs site, at least one hub and a valid hub_pin (missing:%s%s%s)",
             c->site[0] == '\0' ? " site" : "", c->n_hubs == 0 ? " hub" : "",
             c->hub_pin[0] == '\0' ? " hub_pin" : "");
    return -EINVAL;
}
