/* tether-site: enroll a site with a hub, then run the agent that keeps its tunnel up. */
/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <wolfssl/options.h>
#include <wolfssl/ssl.h>

#include "../common/cli.h"
#include "../common/config.h"
#include "../common/crypto.h"
#include "../common/httpc.h"
#include "../common/log.h"
#include "../common/net.h"
#include "../common/notify.h"
#include "../common/statelock.h"
#include "../common/tls.h"
#include "../common/token.h"
#include "../common/tune.h"
#include "agent.h"
#include "cmds.h"
#include "hubs.h"
#include "status.h"
#include "conf.h"
#include "../common/proxyconnect.h"

#define PROG "tether-site"

/* Each command's block of the help text (the layout of tether-hub's, which
 * help2man turns into the man page); `tether-site CMD --help` prints its
 * own, `tether-site --help` all of them. doctor's help is longer
 * (site/doctor.c). */
static const struct cli_help commands[] = {
    {"enroll", "  enroll --state DIR [--hub HOST:PORT]... [--proxy URL] TOKEN|-\n"
               "      Make this site's key and register it with the hub, once, with TOKEN\n"
               "      (from 'tetherctl site add' or 'tetherctl site token'; - reads it from\n"
               "      stdin). Writes DIR/site.conf: the hub endpoints (the token's, or the\n"
               "      --hub list, tried in order) and the hub's key pin.\n"},
    {"run", "  run --state DIR [--service NAME=URL]... [--service-opt NAME:KEY[=VALUE]]...\n"
            "      [--config FILE] [--source-port N] [--proxy http://[USER:PASS@]HOST:PORT]\n"
            "      [--ping-interval S] [--connect-timeout S] [--upstream-timeout S]\n"
            "      [--log-format text|json]\n"
            "      Keep one tunnel to the hub and answer its requests with the local\n"
            "      services named. SIGHUP re-reads the services without cutting the\n"
            "      tunnel; SIGTERM stops. One process per state directory.\n"},
    {"doctor", "  doctor --state DIR [--config FILE] [--proxy URL] [--timeout S] [--rtt-warn MS]\n"
               "      Check the way to the hub step by step (name, TCP, proxy, TLS, hub key\n"
               "      pin, ALPN, this site's key, round trip) and say what to tell the\n"
               "      network team at the first failure.\n"},
    {"rotate-key", "  rotate-key --state DIR [--hub HOST:PORT]... [--proxy URL]\n"
                   "      Replace this site's key with a new one, proved by the old; a running\n"
                   "      agent picks it up.\n"},
    {"status", "  status --state DIR\n"
               "      Exit 0 only while the running agent's tunnel is up; print the hub, the\n"
               "      time since connect and the last error (for health checks).\n"},
    {"version", "  version\n"
                "      Print the version and the wolfSSL build in use (also --version).\n"},
    {"help", "  help\n"
             "      Show this help (also --help, -h; COMMAND --help shows one command's).\n"},
};
#define N_COMMANDS (sizeof(commands) / sizeof(commands[0]))

static const char *const run_notes =
    "\n"
    "run: --ping-interval is the hub's ping interval (the site drops a hub silent for\n"
    "two of them; 0 turns that watch off); --source-port dials from that port only.\n"
    "URL: http://HOST[:PORT][/BASE], https://HOST[:PORT][/BASE], unix:/PATH,\n"
    "h2c://HOST[:PORT][/BASE] (HTTP/2 cleartext, e.g. gRPC) or h2://HOST[:PORT][/BASE]\n"
    "(HTTP/2 over TLS). An https:// or h2:// service is checked against the system CAs\n"
    "and its name; its --service-opt keys: ca=FILE (trust that CA file instead),\n"
    "pin=sha256//... (the key alone decides; repeats), cert=FILE and key=FILE (client\n"
    "certificate), name=HOST (SNI and the name checked, instead of the URL's host),\n"
    "insecure (no check at all).\n";

static const char *const usage_footer =
    "\n"
    "Logs: one line per event on stderr; TETHER_LOG=debug|warn|error sets the level.\n"
    "Exit status: 0 success, 1 failure, 2 usage error (doctor: see doctor --help).\n";

void site_usage(FILE *f, const char *cmd)
{
    cli_help_print(f, PROG, commands, N_COMMANDS, cmd);
    if (cmd == NULL || strcmp(cmd, "run") == 0)
        fputs(run_notes, f);
    fputs(usage_footer, f);
}

static int die(const char *msg)
{
    fprintf(stderr, "tether-site: %s\n", msg);
    return 1;
}

static int read_token_stdin(char *buf, size_t cap)
{
    size_t n = fread(buf, 1, cap - 1, stdin);
    buf[n] = '\0';
    return n > 0 ? 0 : -EINVAL;
}

static int cmd_enroll(int argc, char **argv)
{
    static const struct option opts[] = {{"state", required_argument, 0, 's'},
                                         {"hub", required_argument, 0, 'H'},
                                         {"proxy", required_argument, 0, 'P'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *state = NULL, *proxy_url = NULL, *tok = NULL;
    struct cli p;
    struct proxyconnect_proxy proxy;
    struct httpc_proxy hproxy;
    char proxy_req[PROXYCONNECT_REQUEST_MAX];
    const char *hubs[TOKEN_HUB_MAX];
    size_t n_hubs = 0;
    char tokbuf[TOKEN_ENCODED_MAX + 2], path[1200], err[512], secret[64], conf[4096];
    struct token_enroll t;
    struct crypto_identity id = {0};
    struct httpc_target tgt;
    struct httpc_response resp = {0};
    size_t sl, off = 0;
    json_t *body;
    char *btxt;
    int c, rc = 1, ok = 0;

    cli_begin(&p, PROG, "enroll", argc, argv, "h", opts);
    while ((c = cli_next(&p)) != CLI_END) {
        if (c == 'h') {
            site_usage(stdout, "enroll");
            return 0;
        } else if (c == 's') {
            state = optarg;
        } else if (c == 'H') {
            if (n_hubs == TOKEN_HUB_MAX)
                return cli_usage_error(PROG, "enroll", "at most %d --hub endpoints", TOKEN_HUB_MAX);
            hubs[n_hubs++] = optarg;
        } else if (c == 'P') {
            proxy_url = optarg[0] ? optarg : NULL;
        } else if (c == CLI_ARG && tok == NULL) {
            tok = optarg;
        } else if (c == CLI_ARG) {
            return cli_usage_error(PROG, "enroll", "unexpected argument \"%s\"", optarg);
        } else {
            return CLI_EXIT_USAGE;
        }
    }
    if (state == NULL)
        return cli_usage_error(PROG, "enroll", "enroll needs --state DIR");
    if (tok == NULL)
        return cli_usage_error(PROG, "enroll",
                               "enroll needs the TOKEN (or - to read it from stdin)");
    if (proxy_url != NULL && proxyconnect_parse_url(proxy_url, &proxy) != 0)
        return die("bad --proxy (want http://[user:pass@]host:port)");
    if (strcmp(tok, "-") == 0) {
        if (read_token_stdin(tokbuf, sizeof(tokbuf)) != 0)
            return die("no token on standard input");
        tok = tokbuf;
    }
    if (token_enroll_decode(tok, &t) != 0)
        return die("the enrollment token is malformed (copy it whole from `tetherctl site add`)");
    if (t.expires_at < (int64_t)time(NULL)) {
        fprintf(stderr,
                "tether-site: the enrollment token has expired: ask the hub operator for a new "
                "one ('tetherctl site token %s')\n",
                t.site);
        return 1;
    }
    snprintf(path, sizeof(path), "%s/site.conf", state);
    if (access(path, F_OK) == 0)
        return die("this state directory already holds an enrolled site (site.conf exists)");
    if (mkdir(state, 0700) != 0 && errno != EEXIST)
        return die("cannot create the state directory");
    for (size_t i = 0; i < n_hubs; i++) {
        char host[NET_HOST_MAX + 1];
        int port;
        if (net_split_hostport(hubs[i], 6443, host, &port) != 0)
            return die("bad --hub endpoint (want HOST:PORT)");
    }
    if (crypto_identity_generate(t.site, NULL, 0, &id) != 0)
        return die("cannot generate the site key");
    crypto_b64_encode(t.secret, sizeof(t.secret), 1, secret, sizeof(secret), &sl);
    body = json_pack("{s:s,s:s,s:s,s:s}", "site", t.site, "secret", secret, "pin", id.pin,
                     "agent_version", TETHER_VERSION);
    btxt = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    explicit_bzero(secret, sizeof(secret));
    /* Try each endpoint in order, like the agent does. */
    for (size_t i = 0; i < (n_hubs ? n_hubs : t.n_hubs) && !ok; i++) {
        const char *ep = n_hubs ? hubs[i] : t.hubs[i];
        memset(&tgt, 0, sizeof(tgt));
        if (net_split_hostport(ep, 6443, tgt.host, &tgt.port) != 0)
            continue;
        snprintf(tgt.pin, sizeof(tgt.pin), "%s", t.pin);
        tgt.alt_pins = (const char(*)[CRYPTO_PIN_LEN + 1]) t.pins;
        tgt.n_alt_pins = t.n_pins;
        /* A blocked endpoint must not hold up the next one for long. */
        tgt.timeout_ms = 15000;
        if (proxy_url != NULL) {
            if (httpc_proxy_via(&hproxy, &proxy, ep, proxy_req, sizeof(proxy_req)) != 0)
                continue;
            tgt.proxy = &hproxy;
        }
        httpc_response_free(&resp);
        memset(&resp, 0, sizeof(resp));
        if (httpc_request(&tgt, "POST", "/v1/enroll", NULL, "application/json", btxt, strlen(btxt),
                          &resp, err, sizeof(err)) != 0) {
            fprintf(stderr, "tether-site: %s: %s\n", ep, err);
            continue;
        }
        ok = 1;
    }
    if (btxt != NULL)
        explicit_bzero(btxt, strlen(btxt));
    free(btxt);
    if (!ok) {
        rc = die("could not reach any hub endpoint");
        goto out;
    }
    if (resp.status != 200) {
        json_t *e = json_loadb(resp.body ? resp.body : "", resp.body_len, 0, NULL);
        const char *d = json_string_value(json_object_get(e, "detail"));
        fprintf(stderr, "tether-site: enrollment refused: %s (HTTP %d)\n", d ? d : "no detail",
                resp.status);
        json_decref(e);
        goto out;
    }
    if (crypto_identity_save(&id, state, "site") != 0) {
        rc = die("cannot write the site key");
        goto out;
    }
    off += (size_t)snprintf(conf + off, sizeof(conf) - off,
                            "# Written by tether-site enroll.\nsite = %s\n"
                            "# Hub endpoints, tried in order.\n",
                            t.site);
    for (size_t i = 0; i < (n_hubs ? n_hubs : t.n_hubs); i++)
        off += (size_t)snprintf(conf + off, sizeof(conf) - off, "hub = %s\n",
                                n_hubs ? hubs[i] : t.hubs[i]);
    off += (size_t)snprintf(conf + off, sizeof(conf) - off,
                            "# The hub's key pin (checked at every connect)%s.\n"
                            "hub_pin = %s\n",
                            t.n_pins ? "; then the other hubs' of its cluster" : "", t.pin);
    for (size_t i = 0; i < t.n_pins; i++)
        off += (size_t)snprintf(conf + off, sizeof(conf) - off, "hub_pin = %s\n", t.pins[i]);
    /* The way out that worked for enrollment is the way out for run. */
    if (proxy_url != NULL && off < sizeof(conf))
        snprintf(conf + off, sizeof(conf) - off,
                 "# Egress HTTP CONNECT proxy (--proxy of enroll).\nproxy = %s\n", proxy_url);
    if (config_write_file(path, conf, 0600) != 0) {
        rc = die("cannot write site.conf");
        goto out;
    }
    printf("enrolled site %s; key pin %s\nstate in %s; now run: tether-site run --state %s "
           "--service NAME=URL\n",
           t.site, id.pin, state, state);
    rc = 0;
out:
    /* The one-time secret is spent or refused: either way, not kept. */
    explicit_bzero(&t, sizeof(t));
    explicit_bzero(tokbuf, sizeof(tokbuf));
    httpc_response_free(&resp);
    crypto_identity_free(&id);
    return rc;
}

static struct agent agent;
static uv_signal_t sig_term, sig_int, sig_hup;

/* Where run's services come from, kept for SIGHUP: the files are read
 * again, the command line's --service and --service-opt stay (they point
 * into argv). */
static struct {
    const char *state, *config;
    const char *const *svcs, *const *sopts;
    size_t n_svcs, n_sopts;
} src;
/* TLS contexts of services a reload replaced: exchanges that started
 * before may still use them (upstream.h), so they are freed at exit only.
 * An unchanged service keeps its context, so only edits add here. */
static WOLFSSL_CTX **retired;
static size_t n_retired;

static void on_signal(uv_signal_t *h, int signum)
{
    log_event(LOG_INFO, "stopping", "signal=%d", signum);
    notify_stopping();
    agent_stop(&agent);
    uv_close((uv_handle_t *)&sig_term, NULL);
    uv_close((uv_handle_t *)&sig_int, NULL);
    uv_close((uv_handle_t *)&sig_hup, NULL);
}

/* site.conf, then the --config file, then the command line's services and
 * their options, into conf, checked whole. 0, or the exit code (1: a file,
 * 2: a flag) with the reason in err. */
static int load_confs(struct site_conf *conf, char *err, size_t cap)
{
    char path[1200], why[512];
    int rc;

    site_conf_init(conf);
    snprintf(path, sizeof(path), "%s/site.conf", src.state);
    if (access(path, F_OK) != 0) {
        snprintf(err, cap, "%s not found: enroll first (tether-site enroll --state %s TOKEN)", path,
                 src.state);
        return 1;
    }
    if (site_conf_load(path, conf, err, cap) != 0 ||
        (src.config != NULL && site_conf_load(src.config, conf, err, cap) != 0))
        return 1;
    for (size_t i = 0; i < src.n_svcs; i++) {
        rc = site_conf_add_service(conf, src.svcs[i]);
        if (rc != 0) {
            snprintf(err, cap, "bad --service \"%s\": %s", src.svcs[i],
                     rc == -EEXIST    ? "name given twice"
                     : rc == -ENOTSUP ? "only " SITE_CONF_SCHEMES " services are supported"
                                      : "want NAME=URL, URL one of " SITE_CONF_SCHEMES);
            return 2;
        }
    }
    for (size_t i = 0; i < src.n_sopts; i++) {
        if (site_conf_service_opt(conf, src.sopts[i], why, sizeof(why)) != 0) {
            snprintf(err, cap, "bad --service-opt \"%.200s\": %.300s", src.sopts[i], why);
            return 2;
        }
    }
    if (site_conf_check(conf, why, sizeof(why)) != 0) {
        snprintf(err, cap, "site.conf %.500s", why);
        return 1;
    }
    return 0;
}

static void release_tls_services(struct agent_service *svcs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        wolfSSL_CTX_free(svcs[i].tls_ctx); /* NULL is a no-op */
        svcs[i].tls_ctx = NULL;
    }
}

/* 1 if a and b are the same service, same options (their TLS contexts
 * aside). Both come from a zeroed site_conf, so their bytes compare. */
static int same_service(const struct agent_service *a, const struct agent_service *b)
{
    struct agent_service x = *a, y = *b;

    x.tls_ctx = y.tls_ctx = NULL;
    return memcmp(&x, &y, sizeof(x)) == 0;
}

/* The context of the unchanged service s among old (moved out of old), or
 * NULL. */
static void *reuse_ctx(struct agent_service *old, size_t n_old, const struct agent_service *s)
{
    void *ctx;

    for (size_t i = 0; i < n_old; i++)
        if (old[i].tls_ctx != NULL && same_service(&old[i], s)) {
            ctx = old[i].tls_ctx;
            old[i].tls_ctx = NULL;
            return ctx;
        }
    return NULL;
}

/* One TLS context per https:// service of svcs, built before the services
 * are used so that a CA or key file that cannot be read stops the start or
 * refuses the reload; an unchanged service of old (NULL at start) keeps
 * its own. 0, or -1 with the reason in err (svcs then hold no context). An
 * unchecked service is logged loudly. */
static int prepare_tls_services(struct agent_service *svcs, size_t n, struct agent_service *old,
                                size_t n_old, char *err, size_t cap)
{
    char why[TLS_SVC_PATH_MAX + 128];

    for (size_t i = 0; i < n; i++) {
        struct agent_service *s = &svcs[i];
        WOLFSSL_CTX *ctx = NULL;

        if (s->url.kind != NET_URL_HTTPS && s->url.kind != NET_URL_H2)
            continue;
        if ((s->tls_ctx = reuse_ctx(old, n_old, s)) != NULL)
            continue;
        if (tls_ctx_service(&s->tls, &ctx, why, sizeof(why)) != 0) {
            snprintf(err, cap, "service %s: %.400s", s->name, why);
            /* Contexts taken from old go back to it. */
            for (size_t j = 0; j < i; j++) {
                for (size_t k = 0; k < n_old && svcs[j].tls_ctx != NULL; k++)
                    if (old[k].tls_ctx == NULL && same_service(&old[k], &svcs[j])) {
                        old[k].tls_ctx = svcs[j].tls_ctx;
                        svcs[j].tls_ctx = NULL;
                    }
            }
            release_tls_services(svcs, i);
            return -1;
        }
        s->tls_ctx = ctx;
        if (s->tls.insecure)
            log_event(LOG_WARN, "service_insecure",
                      "service=%s msg=\"TLS certificate NOT checked (insecure): anyone on the path "
                      "to %s can impersonate this service\"",
                      s->name, s->url.host);
        else
            log_event(LOG_INFO, "service_tls", "service=%s verify=%s%s client_cert=%s", s->name,
                      s->tls.n_pins > 0 ? "pin" : "ca:",
                      s->tls.n_pins > 0
                          ? ""
                          : log_q(s->tls.ca_file[0] ? s->tls.ca_file : TLS_SVC_SYSTEM_CA),
                      s->tls.cert_file[0] ? "yes" : "no");
    }
    return 0;
}

/* The names of svcs (restricted ones only if only_restricted), comma
 * separated, into buf. */
static void service_names(const struct agent_service *svcs, size_t n, int only_restricted,
                          char *buf, size_t cap)
{
    size_t len = 0;

    buf[0] = '\0';
    for (size_t i = 0; i < n && len < cap; i++)
        if (!only_restricted || svcs[i].restricted)
            len += (size_t)snprintf(buf + len, cap - len, "%s%s", len ? "," : "", svcs[i].name);
}

/* SIGHUP: the services of the files (and the command line, which stays)
 * are read and checked whole; a good new set replaces the old one at once
 * and the hub is told (agent_announce). Streams already running keep the
 * service they started with; the tunnel stays. A bad set changes nothing. */
static void on_hup(uv_signal_t *h, int signum)
{
    /* Static: 64 services make it too big for a comfortable stack frame. */
    static struct site_conf conf;
    char err[2048], names[AGENT_MAX_SERVICES * (TOKEN_NAME_MAX + 1) + 1];
    char restricted[sizeof(names)];
    WOLFSSL_CTX **nr;
    size_t n_old = agent.n_services;
    int changed;

    if (load_confs(&conf, err, sizeof(err)) != 0 ||
        prepare_tls_services(conf.services, conf.n_services, agent.services, agent.n_services, err,
                             sizeof(err)) != 0) {
        log_event(LOG_WARN, "services_reload_refused", "reason=%s kept=%zu", log_q(err),
                  agent.n_services);
        return;
    }
    changed = conf.n_services != n_old;
    for (size_t i = 0; i < conf.n_services && !changed; i++)
        changed = !same_service(&conf.services[i], &agent.services[i]);
    /* What the old set still holds was replaced: retire it. */
    nr = realloc(retired, (n_retired + n_old + 1) * sizeof(*retired));
    if (nr == NULL) {
        release_tls_services(conf.services, conf.n_services);
        log_event(LOG_WARN, "services_reload_refused", "reason=\"out of memory\" kept=%zu",
                  agent.n_services);
        return;
    }
    retired = nr;
    for (size_t i = 0; i < n_old; i++)
        if (agent.services[i].tls_ctx != NULL)
            retired[n_retired++] = agent.services[i].tls_ctx;
    memcpy(agent.services, conf.services, sizeof(agent.services));
    agent.n_services = conf.n_services;
    service_names(agent.services, agent.n_services, 0, names, sizeof(names));
    service_names(agent.services, agent.n_services, 1, restricted, sizeof(restricted));
    log_event(LOG_INFO, "services_reloaded", "services=%s restricted=%s changed=%s", log_q(names),
              log_q(restricted), changed ? "yes" : "no");
    if (changed)
        agent_announce(&agent, "services-changed");
}

/* The hubs the site's hub last listed (STATE/hubs.json) join site.conf's,
 * and every hello brings the list again (agent.c). */
static void learn_saved_hubs(struct agent *a, const char *state)
{
    struct hubs_list *l = malloc(sizeof(*l));
    int rc = l != NULL ? hubs_load(state, l) : -ENOMEM;

    a->n_conf_pins = a->n_pins;
    a->n_conf_hubs = a->n_hubs;
    a->learn_hubs = 1;
    if (rc == 0)
        rc = agent_apply_hubs(a, l);
    if (rc != 0 && rc != -ENOENT)
        log_event(LOG_WARN, "hubs_file_ignored", "dir=%s error=%s", log_q(state),
                  log_q(rc == -EINVAL  ? "not a list of hubs and endpoints"
                        : rc == -EPERM ? "names none of site.conf's hub keys"
                                       : strerror(-rc)));
    free(l);
}

static int cmd_run(int argc, char **argv)
{
    static const struct option opts[] = {{"state", required_argument, 0, 's'},
                                         {"service", required_argument, 0, 'S'},
                                         {"service-opt", required_argument, 0, 'O'},
                                         {"config", required_argument, 0, 'c'},
                                         {"source-port", required_argument, 0, 'p'},
                                         {"ping-interval", required_argument, 0, 'i'},
                                         {"upstream-timeout", required_argument, 0, 'u'},
                                         {"proxy", required_argument, 0, 'P'},
                                         {"connect-timeout", required_argument, 0, 'C'},
                                         {"log-format", required_argument, 0, 'L'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    /* Static: 64 services make it too big for a comfortable stack frame. */
    static struct site_conf conf;
    const char *state = NULL, *config = NULL, *proxy = NULL, *ping = NULL, *upt = NULL,
               *sport = NULL, *ctimeout = NULL;
    const char *svcs[AGENT_MAX_SERVICES], *sopts[AGENT_MAX_SERVICES * 8];
    size_t n_svcs = 0, n_sopts = 0;
    char err[2048];
    WOLFSSL_CTX *ctx = NULL;
    uv_loop_t *loop = uv_default_loop();
    uint64_t ms;
    long long n;
    struct cli p;
    static struct notify_timer sd_watchdog; /* systemd's WATCHDOG=1 */
    pid_t holder = 0;
    int c, rc, lock_fd = -1;

    cli_begin(&p, PROG, "run", argc, argv, "h", opts);
    while ((c = cli_next(&p)) != CLI_END) {
        switch (c) {
        case 'h':
            site_usage(stdout, "run");
            return 0;
        case 's':
            state = optarg;
            break;
        case 'L':
            if (log_set_format_name(optarg) != 0)
                return cli_usage_error(PROG, "run", "--log-format is text or json");
            break;
        case 'S':
            if (n_svcs == AGENT_MAX_SERVICES)
                return cli_usage_error(PROG, "run", "at most %d --service", AGENT_MAX_SERVICES);
            svcs[n_svcs++] = optarg;
            break;
        case 'O':
            if (n_sopts == sizeof(sopts) / sizeof(sopts[0]))
                return cli_usage_error(PROG, "run", "too many --service-opt");
            sopts[n_sopts++] = optarg;
            break;
        case 'c':
            config = optarg;
            break;
        case 'p':
            sport = optarg;
            break;
        case 'i':
            ping = optarg;
            break;
        case 'u':
            upt = optarg;
            break;
        case 'P':
            proxy = optarg;
            break;
        case 'C':
            ctimeout = optarg;
            break;
        case CLI_ARG:
            return cli_usage_error(PROG, "run", "unexpected argument \"%s\"", optarg);
        default:
            return CLI_EXIT_USAGE;
        }
    }
    if (state == NULL)
        return cli_usage_error(PROG, "run", "run needs --state DIR");
    agent_init(&agent, loop);
    src.state = state;
    src.config = config;
    src.svcs = svcs;
    src.n_svcs = n_svcs;
    src.sopts = sopts;
    src.n_sopts = n_sopts;
    if ((rc = load_confs(&conf, err, sizeof(err))) != 0) {
        fprintf(stderr, "tether-site: %s\n", err);
        return rc;
    }
    /* The files, then the flags over them. */
    snprintf(agent.site, sizeof(agent.site), "%s", conf.site);
    memcpy(agent.hub_pins, conf.hub_pins, sizeof(agent.hub_pins));
    agent.n_pins = conf.n_pins;
    memcpy(agent.hubs, conf.hubs, sizeof(agent.hubs));
    agent.n_hubs = conf.n_hubs;
    memcpy(agent.services, conf.services, sizeof(agent.services));
    agent.n_services = conf.n_services;
    if (conf.has_ping_interval)
        agent.ping_interval_ms = conf.ping_interval_ms;
    if (conf.has_connect_timeout)
        agent.connect_timeout_ms = conf.connect_timeout_ms;
    agent.source_port = conf.source_port;
    agent.use_proxy = conf.use_proxy;
    agent.proxy = conf.proxy;
    if (sport != NULL) {
        if (cli_parse_int(sport, 1, 65535, &n) != 0)
            return die("--source-port must be 1..65535");
        agent.source_port = (int)n;
    }
    if (ping != NULL) {
        if (cli_parse_seconds_ms(ping, 0, 3600000, &ms) != 0 || (ms > 0 && ms < 50))
            return die("--ping-interval must be 0 (no watch) or 0.05..3600 seconds");
        agent.ping_interval_ms = ms;
    }
    if (upt != NULL) {
        if (cli_parse_seconds_ms(upt, 1000, 86400000, &ms) != 0)
            return die("--upstream-timeout must be 1..86400 seconds");
        agent.upstream_timeout_ms = ms;
    }
    if (ctimeout != NULL) {
        if (cli_parse_seconds_ms(ctimeout, 100, 600000, &ms) != 0)
            return die("--connect-timeout must be 0.1..600 seconds");
        agent.connect_timeout_ms = ms;
    }
    if (proxy != NULL) {
        if (proxy[0] == '\0') {
            agent.use_proxy = 0;
        } else if (proxyconnect_parse_url(proxy, &agent.proxy) != 0) {
            return die("bad --proxy (want http://[user:pass@]host:port)");
        } else {
            agent.use_proxy = 1;
        }
    }
    /* One agent per state: a second one would take over the site's tunnel
     * and be replaced in turn, forever. Held until the process exits. */
    rc = statelock_acquire(state, &lock_fd, &holder);
    if (rc == -EBUSY) {
        fprintf(stderr, "tether-site: state directory %s is in use by process %ld\n", state,
                (long)holder);
        return 1;
    }
    if (rc != 0) {
        fprintf(stderr, "tether-site: cannot lock the state directory %s/%s: %s\n", state,
                STATELOCK_FILE, strerror(-rc));
        return 1;
    }
    if (crypto_identity_load(state, "site", &agent.id) != 0)
        return die("cannot read the site key (site.key, site.crt) in the state directory");
    if (tls_ctx_client(&agent.id, &ctx) != 0)
        return die("cannot set up TLS");
    agent.ctx = ctx;
    if (snprintf(agent.key_dir, sizeof(agent.key_dir), "%s", state) >= (int)sizeof(agent.key_dir))
        agent.key_dir[0] = '\0'; /* too long to reload from: keep the key loaded now */
    if (snprintf(agent.status_path, sizeof(agent.status_path), "%s/%s", state, STATUS_FILE) >=
        (int)sizeof(agent.status_path))
        agent.status_path[0] = '\0'; /* too long: `tether-site status` says "starting" */
    log_init_from_env();
    learn_saved_hubs(&agent, state);
    log_event(LOG_INFO, "site_started",
              "site=%s version=%s wolfssl=%s memcpy=%s heap_trim_mib=%u services=%zu hubs=%zu",
              agent.site, TETHER_VERSION, log_q(crypto_wolfssl_build()), tune_state(),
              tune_heap_trim_mib(), agent.n_services, agent.n_hubs);
    if (agent.use_proxy) {
        char pname[NET_HOST_MAX + 10];
        proxyconnect_name(&agent.proxy, pname, sizeof(pname));
        /* Never the credentials. */
        log_event(LOG_INFO, "proxy", "via=%s auth=%s", pname,
                  agent.proxy.auth[0] ? "basic" : "none");
    }
    if (agent.source_port > 0)
        log_event(LOG_INFO, "source_port", "port=%d", agent.source_port);
    if (prepare_tls_services(agent.services, agent.n_services, NULL, 0, err, sizeof(err)) != 0) {
        fprintf(stderr, "tether-site: %s\n", err);
        wolfSSL_CTX_free(ctx);
        crypto_identity_free(&agent.id);
        return 1;
    }
    if (agent.ping_interval_ms == 0)
        log_event(LOG_WARN, "watch_off",
                  "msg=\"--ping-interval 0: a silent hub is not noticed; for tests only\"");
    if (strncmp(crypto_wolfssl_build(), "system", 6) == 0)
        log_event(LOG_WARN, "wolfssl_fallback",
                  "msg=\"using the system wolfSSL without AES-NI: TLS will be slow\"");
    uv_signal_init(loop, &sig_term);
    uv_signal_init(loop, &sig_int);
    uv_signal_start(&sig_term, on_signal, SIGTERM);
    uv_signal_start(&sig_int, on_signal, SIGINT);
    uv_signal_init(loop, &sig_hup);
    uv_signal_start(&sig_hup, on_hup, SIGHUP);
    uv_unref((uv_handle_t *)&sig_hup);
    /* The agent's own handles keep the loop alive; when it stops by itself
     * (a fatal error such as a taken source port) the loop must end. */
    uv_unref((uv_handle_t *)&sig_term);
    uv_unref((uv_handle_t *)&sig_int);
    notify_watchdog_start(loop, &sd_watchdog, NULL, NULL);
    agent_start(&agent);
    uv_run(loop, UV_RUN_DEFAULT);
    uv_close((uv_handle_t *)&sd_watchdog.timer, NULL);
    if (!uv_is_closing((uv_handle_t *)&sig_term)) {
        uv_close((uv_handle_t *)&sig_term, NULL);
        uv_close((uv_handle_t *)&sig_int, NULL);
        uv_close((uv_handle_t *)&sig_hup, NULL);
    }
    agent_free(&agent);
    uv_run(loop, UV_RUN_DEFAULT);
    uv_loop_close(loop);
    wolfSSL_CTX_free(agent.ctx); /* may be a reloaded one, not ctx */
    release_tls_services(agent.services, agent.n_services);
    for (size_t i = 0; i < n_retired; i++)
        wolfSSL_CTX_free(retired[i]);
    free(retired);
    crypto_identity_free(&agent.id);
    if (agent.fatal[0]) {
        fprintf(stderr, "tether-site: %s\n", agent.fatal);
        log_event(LOG_ERROR, "fatal", "reason=%s", log_q(agent.fatal));
    }
    log_event(LOG_INFO, "site_stopped", "site=%s", agent.site);
    statelock_release(lock_fd);
    return agent.exit_code;
}

int main(int argc, char **argv)
{
    const char *cmd;
    int rc, at;

    tune_program_start(argc, argv);
    at = cli_top(PROG, argc, argv, site_usage, &rc);
    if (at < 0)
        return rc;
    cmd = argv[at];
    argc -= at;
    argv += at;
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "help") == 0)
        return cli_simple_command(PROG, argc, argv, site_usage);
    wolfSSL_Init();
    if (strcmp(cmd, "enroll") == 0)
        rc = cmd_enroll(argc, argv);
    else if (strcmp(cmd, "run") == 0)
        rc = cmd_run(argc, argv);
    else if (strcmp(cmd, "rotate-key") == 0)
        rc = site_cmd_rotate_key(argc, argv);
    else if (strcmp(cmd, "doctor") == 0)
        rc = site_cmd_doctor(argc, argv);
    else if (strcmp(cmd, "status") == 0)
        rc = site_cmd_status(argc, argv);
    else {
        static const char *const cmds[] = {"enroll", "run",     "rotate-key", "doctor",
                                           "status", "version", "help"};

        rc = cli_unknown_command(PROG, cmd, cmds, sizeof(cmds) / sizeof(cmds[0]));
    }
    wolfSSL_Cleanup();
    return rc;
}
