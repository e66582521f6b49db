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
    if (s->url.kind != NET_URL_HTTP && s->url.kind != NET_URL_HTTPS &&
        s->url.kind != NET_URL_UNIX && s->url.kind != NET_URL_H2C && s->url.kind != NET_URL_H2 &&
        s->url.kind != NET_URL_TCP)
        return -ENOTSUP;
    memset(&s->tls, 0, sizeof(s->tls));
    s->tls_ctx = NULL;
    s->restricted = 0;
    for (size_t i = 0; i < c->n_services; i++)
        if (strcmp(c->services[i].name, s->name) == 0)
            return -EEXIST;
    c->n_services++;
    return 0;
}

static int set_path(char *dst, size_t cap, const char *v, const char *key, char *why,
                    size_t why_cap)
{
    if (v == NULL || v[0] == '\0' || strlen(v) >= cap) {
        snprintf(why, why_cap, "%s= wants a file path of 1 to %zu characters", key, cap - 1);
        return -EINVAL;
    }
    memcpy(dst, v, strlen(v) + 1);
    return 0;
}

int site_conf_service_opt(struct site_conf *c, const char *spec, char *why, size_t why_cap)
{
    const char *colon = strchr(spec, ':'), *key, *eq, *v;
    struct agent_service *s = NULL;
    struct tls_svc_conf *t;
    char name[TOKEN_NAME_MAX + 1], k[16];
    size_t nl, kl;

    if (colon == NULL || (nl = (size_t)(colon - spec)) == 0 || nl > TOKEN_NAME_MAX) {
        snprintf(why, why_cap, "expected NAME:KEY[=VALUE]");
        return -EINVAL;
    }
    memcpy(name, spec, nl);
    name[nl] = '\0';
    for (size_t i = 0; i < c->n_services; i++)
        if (strcmp(c->services[i].name, name) == 0)
            s = &c->services[i];
    if (s == NULL) {
        snprintf(why, why_cap, "no service \"%s\" is defined before it", name);
        return -ESRCH;
    }
    key = colon + 1;
    /* Any kind of service may be restricted: the hub then lets only admin
     * tokens and tokens naming the service in "services" use it. */
    if (strcmp(key, "restricted") == 0) {
        s->restricted = 1;
        return 0;
    }
    if (s->url.kind != NET_URL_HTTPS && s->url.kind != NET_URL_H2) {
        snprintf(why, why_cap, "service \"%s\" is not https:// or h2://: it takes no TLS option",
                 name);
        return -EINVAL;
    }
    eq = strchr(key, '=');
    kl = eq ? (size_t)(eq - key) : strlen(key);
    v = eq ? eq + 1 : NULL;
    if (kl == 0 || kl >= sizeof(k)) {
        snprintf(why, why_cap,
                 "expected one of ca=FILE, pin=PIN, cert=FILE, key=FILE, name=HOST, insecure");
        return -EINVAL;
    }
    memcpy(k, key, kl);
    k[kl] = '\0';
    t = &s->tls;
    if (strcmp(k, "ca") == 0)
        return set_path(t->ca_file, sizeof(t->ca_file), v, k, why, why_cap);
    if (strcmp(k, "cert") == 0)
        return set_path(t->cert_file, sizeof(t->cert_file), v, k, why, why_cap);
    if (strcmp(k, "key") == 0)
        return set_path(t->key_file, sizeof(t->key_file), v, k, why, why_cap);
    if (strcmp(k, "pin") == 0) {
        if (v == NULL || !crypto_pin_valid(v)) {
            snprintf(why, why_cap, "pin= wants sha256// and 44 base64 characters");
            return -EINVAL;
        }
        if (t->n_pins == TLS_SVC_PINS_MAX) {
            snprintf(why, why_cap, "more than %d pins", TLS_SVC_PINS_MAX);
            return -E2BIG;
        }
        snprintf(t->pins[t->n_pins++], sizeof(t->pins[0]), "%s", v);
        return 0;
    }
    if (strcmp(k, "name") == 0) {
        char h[NET_HOST_MAX + 1];
        int port;

        /* A host name or IP literal, checked as a URL's host is. */
        if (v == NULL || strlen(v) >= sizeof(t->name) || strchr(v, ':') != NULL ||
            net_split_hostport(v, 443, h, &port) != 0) {
            snprintf(why, why_cap, "name= wants a host name");
            return -EINVAL;
        }
        snprintf(t->name, sizeof(t->name), "%s", h);
        return 0;
    }
    if (strcmp(k, "insecure") == 0) {
        if (v != NULL) {
            snprintf(why, why_cap, "insecure takes no value");
            return -EINVAL;
        }
        t->insecure = 1;
        return 0;
    }
    snprintf(why, why_cap, "unknown option \"%s\" (ca, pin, cert, key, name, insecure)", k);
    return -EINVAL;
}

/* Applies one key; 0, -ENOENT for an unknown key, or -EINVAL with what was
 * expected in why. */
/* Repeated keys a file gives replace, together, what earlier files said. */
#define SEEN_HUB 1
#define SEEN_PIN 2

static int apply(struct site_conf *c, const char *key, const char *v, int *seen, char *why,
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
        /* The hubs of one cluster: any of their keys will do. */
        if (!(*seen & SEEN_PIN)) {
            c->n_pins = 0;
            *seen |= SEEN_PIN;
        }
        if (c->n_pins == AGENT_PIN_MAX) {
            snprintf(why, why_cap, "more than %d hub_pin lines", AGENT_PIN_MAX);
            return -E2BIG;
        }
        snprintf(c->hub_pins[c->n_pins++], sizeof(c->hub_pins[0]), "%s", v);
        snprintf(c->hub_pin, sizeof(c->hub_pin), "%s", c->hub_pins[0]);
    } else if (strcmp(key, "hub") == 0) {
        /* Checked as an endpoint only when dialled: doctor reports a bad
         * one as a verdict of its own. */
        if (!(*seen & SEEN_HUB)) {
            c->n_hubs = 0;
            *seen |= SEEN_HUB;
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
                     : rc == -ENOTSUP ? "only " SITE_CONF_SCHEMES " services are supported"
                                      : "expected NAME=URL");
            return rc;
        }
    } else if (strcmp(key, "service_opt") == 0) {
        return site_conf_service_opt(c, v, why, why_cap);
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
    int seen = 0, rc;

    rc = config_load(path, &cfg, err, err_cap);
    if (rc != 0)
        goto out;
    for (size_t i = 0; i < cfg.n; i++) {
        const struct config_entry *e = &cfg.entries[i];
        char why[128] = "";
        int r = apply(c, e->key, e->value, &seen, why, sizeof(why));

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

/* The options of one https:// service, taken together. */
static int check_tls(const struct agent_service *s, char *err, size_t err_cap)
{
    const struct tls_svc_conf *t = &s->tls;
    const char *why = NULL;

    if (t->insecure && (t->ca_file[0] || t->n_pins > 0))
        why = "insecure excludes ca and pin";
    else if (t->ca_file[0] && t->n_pins > 0)
        why = "ca and pin exclude each other (a pin alone decides)";
    else if (!t->cert_file[0] != !t->key_file[0])
        why = "a client certificate needs both cert and key";
    if (why == NULL)
        return 0;
    snprintf(err, err_cap, "service %s: %s", s->name, why);
    return -EINVAL;
}

int site_conf_check(const struct site_conf *c, char *err, size_t err_cap)
{
    for (size_t i = 0; i < c->n_services; i++)
        if (check_tls(&c->services[i], err, err_cap) != 0)
            return -EINVAL;
    if (c->site[0] != '\0' && c->n_hubs > 0 && c->hub_pin[0] != '\0')
        return 0;
    snprintf(err, err_cap, "needs site, at least one hub and a valid hub_pin (missing:%s%s%s)",
             c->site[0] == '\0' ? " site" : "", c->n_hubs == 0 ? " hub" : "",
             c->hub_pin[0] == '\0' ? " hub_pin" : "");
    return -EINVAL;
}
