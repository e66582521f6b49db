/* tether-site rotate-key: replace the site's key, proving possession of the old one. */
/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../common/cli.h"
#include "../common/config.h"
#include "../common/crypto.h"
#include "../common/httpc.h"
#include "../common/net.h"
#include "../common/token.h"
#include "cmds.h"
#include "conf.h"
#include "../common/proxyconnect.h"

/* The new identity waits under this base name until the hub has taken it. */
#define PENDING "site.new"

static int say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* One line on stderr; returns the exit code 1. */
static int say(const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "tether-site: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return 1;
}

static int path_of(char *out, size_t cap, const char *dir, const char *file)
{
    int n = snprintf(out, cap, "%s/%s", dir, file);
    return n > 0 && (size_t)n < cap ? 0 : -ENAMETOOLONG;
}

static int exists(const char *dir, const char *file)
{
    char p[4200];
    return path_of(p, sizeof(p), dir, file) == 0 && access(p, F_OK) == 0;
}

static int move(const char *dir, const char *from, const char *to)
{
    char a[4200], b[4200];

    if (path_of(a, sizeof(a), dir, from) != 0 || path_of(b, sizeof(b), dir, to) != 0)
        return -ENAMETOOLONG;
    return rename(a, b) == 0 ? 0 : -errno;
}

static void sync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

static void drop_pending(const char *dir)
{
    char p[4200];

    if (path_of(p, sizeof(p), dir, PENDING ".key") == 0)
        unlink(p);
    if (path_of(p, sizeof(p), dir, PENDING ".crt") == 0)
        unlink(p);
}

/* Each rename replaces a file whole; the key goes first, and a crash between
 * the two leaves site.new.crt behind, which the next run finishes moving. */
static int install_pending(const char *dir)
{
    int rc = move(dir, PENDING ".key", "site.key");

    if (rc == 0)
        rc = move(dir, PENDING ".crt", "site.crt");
    sync_dir(dir);
    return rc;
}

static char *b64(const uint8_t *data, size_t len)
{
    size_t cap = (len + 2) / 3 * 4 + 1, n;
    char *s = malloc(cap);

    if (s != NULL && crypto_b64_encode(data, len, 0, s, cap, &n) != 0) {
        free(s);
        s = NULL;
    }
    return s;
}

/* The request body: both certificates, and the statement signed by both keys. */
static char *proof(const char *site, const struct crypto_identity *old_id,
                   const struct crypto_identity *new_id, int64_t ts)
{
    char msg[256];
    uint8_t sig[128], new_sig[128];
    size_t sig_len = 0, new_sig_len = 0;
    char *oc = NULL, *nc = NULL, *s1 = NULL, *s2 = NULL, *text = NULL;
    json_t *body = NULL;
    int n;

    n = snprintf(msg, sizeof(msg), "tether-rotate\n%s\n%s\n%" PRId64, site, new_id->pin, ts);
    if (n < 0 || (size_t)n >= sizeof(msg) ||
        crypto_sign(old_id, msg, (size_t)n, sig, sizeof(sig), &sig_len) != 0 ||
        crypto_sign(new_id, msg, (size_t)n, new_sig, sizeof(new_sig), &new_sig_len) != 0)
        goto out;
    oc = b64(old_id->cert_der, old_id->cert_len);
    nc = b64(new_id->cert_der, new_id->cert_len);
    s1 = b64(sig, sig_len);
    s2 = b64(new_sig, new_sig_len);
    if (oc == NULL || nc == NULL || s1 == NULL || s2 == NULL)
        goto out;
    body = json_pack("{s:s,s:s,s:I,s:s,s:s}", "old_cert", oc, "new_cert", nc, "ts", (json_int_t)ts,
                     "sig", s1, "new_sig", s2);
    if (body != NULL)
        text = json_dumps(body, JSON_COMPACT);
out:
    json_decref(body);
    free(oc);
    free(nc);
    free(s1);
    free(s2);
    return text;
}

int site_cmd_rotate_key(int argc, char **argv)
{
    static const struct option opts[] = {{"state", required_argument, 0, 's'},
                                         {"hub", required_argument, 0, 'H'},
                                         {"proxy", required_argument, 0, 'P'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *state = NULL, *site, *pin, *proxy_url = NULL;
    struct site_conf *conf = NULL;
    struct cli p;
    int use_proxy;
    struct proxyconnect_proxy proxy;
    struct httpc_proxy hproxy;
    char proxy_req[PROXYCONNECT_REQUEST_MAX];
    const char *hubs[TOKEN_HUB_MAX];
    size_t n_hubs = 0, i;
    char conf_path[4200], err[512], path[128];
    struct crypto_identity old_id = {0}, new_id = {0};
    struct httpc_target tgt;
    struct httpc_response resp = {0};
    char *body = NULL;
    int c, rc = 1, answered = 0, resumed = 0, from_args = 0;

    cli_begin(&p, "tether-site", "rotate-key", argc, argv, "h", opts);
    while ((c = cli_next(&p)) != CLI_END) {
        if (c == 'h') {
            site_usage(stdout, "rotate-key");
            return 0;
        } else if (c == 's') {
            state = optarg;
        } else if (c == 'H') {
            if (n_hubs == TOKEN_HUB_MAX)
                return cli_usage_error("tether-site", "rotate-key", "at most %d --hub endpoints",
                                       TOKEN_HUB_MAX);
            hubs[n_hubs++] = optarg;
            from_args = 1;
        } else if (c == 'P') {
            proxy_url = optarg;
        } else if (c == CLI_ARG) {
            return cli_usage_error("tether-site", "rotate-key", "unexpected argument \"%s\"",
                                   optarg);
        } else {
            return CLI_EXIT_USAGE;
        }
    }
    if (state == NULL)
        return cli_usage_error("tether-site", "rotate-key", "rotate-key needs --state DIR");
    conf = calloc(1, sizeof(*conf));
    if (conf == NULL)
        return say("out of memory");
    site_conf_init(conf);
    rc = path_of(conf_path, sizeof(conf_path), state, "site.conf");
    if (rc == 0)
        rc = site_conf_load(conf_path, conf, err, sizeof(err));
    if (rc == -ENOENT || rc == -ENAMETOOLONG) {
        rc = say("%s: not an enrolled site (enroll first)", conf_path);
        goto out;
    }
    if (rc != 0) {
        rc = say("%s", err);
        goto out;
    }
    if (site_conf_check(conf, err, sizeof(err)) != 0) {
        rc = say("%s %s", conf_path, err);
        goto out;
    }
    rc = 1;
    site = conf->site;
    pin = conf->hub_pin;
    if (!from_args) {
        n_hubs = conf->n_hubs;
        for (i = 0; i < n_hubs; i++)
            hubs[i] = conf->hubs[i];
    }
    /* As for run: --proxy wins over site.conf; an empty one means none. */
    use_proxy = conf->use_proxy;
    proxy = conf->proxy;
    if (proxy_url != NULL) {
        use_proxy = proxy_url[0] != '\0';
        if (use_proxy && proxyconnect_parse_url(proxy_url, &proxy) != 0) {
            rc = say("bad --proxy (want http://[user:pass@]host:port)");
            goto out;
        }
    }
    /* A crash between the two renames of an accepted rotation. */
    if (!exists(state, PENDING ".key") && exists(state, PENDING ".crt")) {
        if (move(state, PENDING ".crt", "site.crt") != 0) {
            rc = say("cannot finish the interrupted rotation in %s", state);
            goto out;
        }
        sync_dir(state);
        fprintf(stderr, "tether-site: finished installing the key of an interrupted rotation\n");
    }
    if (crypto_identity_load(state, "site", &old_id) != 0) {
        rc = say("cannot read the site key (site.key, site.crt) in %s", state);
        goto out;
    }
    /* The new key is on disk before the hub hears of it: if this process
     * dies after the hub said yes, the key the hub now expects still exists. */
    if (exists(state, PENDING ".key")) {
        if (crypto_identity_load(state, PENDING, &new_id) != 0) {
            rc = say("%s/" PENDING ".key is left from an interrupted rotation but unreadable: "
                     "remove " PENDING ".key and " PENDING ".crt, then retry",
                     state);
            goto out;
        }
        resumed = 1;
        fprintf(stderr, "tether-site: resuming an interrupted rotation with its new key\n");
    } else if (crypto_identity_generate(site, NULL, 0, &new_id) != 0 ||
               crypto_identity_save(&new_id, state, PENDING) != 0) {
        drop_pending(state);
        rc = say("cannot make or write the new key in %s", state);
        goto out;
    }
    body = proof(site, &old_id, &new_id, (int64_t)time(NULL));
    if (body == NULL) {
        rc = say("cannot sign the rotation request");
        goto out;
    }
    snprintf(path, sizeof(path), "/v1/sites/%s/rotate", site);
    for (i = 0; i < n_hubs && !answered; i++) {
        memset(&tgt, 0, sizeof(tgt));
        if (net_split_hostport(hubs[i], 6443, tgt.host, &tgt.port) != 0) {
            fprintf(stderr, "tether-site: bad hub endpoint \"%s\"\n", hubs[i]);
            continue;
        }
        snprintf(tgt.pin, sizeof(tgt.pin), "%s", pin);
        tgt.alt_pins = (const char(*)[CRYPTO_PIN_LEN + 1]) conf->hub_pins;
        tgt.n_alt_pins = conf->n_pins;
        if (use_proxy) {
            if (httpc_proxy_via(&hproxy, &proxy, hubs[i], proxy_req, sizeof(proxy_req)) != 0)
                continue;
            tgt.proxy = &hproxy;
        }
        httpc_response_free(&resp);
        memset(&resp, 0, sizeof(resp));
        if (httpc_request(&tgt, "POST", path, NULL, "application/json", body, strlen(body), &resp,
                          err, sizeof(err)) != 0) {
            fprintf(stderr, "tether-site: %s: %s\n", hubs[i], err);
            continue;
        }
        answered = 1;
    }
    if (!answered) {
        /* Nothing changed at the hub as far as we know; the pending key is
         * kept so that a retry offers the same one. */
        rc = say("could not reach any hub endpoint; the key is unchanged (retry later)");
        goto out;
    }
    if (resp.status != 200) {
        json_t *e = json_loadb(resp.body ? resp.body : "", resp.body_len, 0, NULL);
        const char *d = json_string_value(json_object_get(e, "detail"));

        fprintf(stderr, "tether-site: the hub refused the new key: %s (HTTP %d)\n",
                d ? d : "no detail", resp.status);
        if (resumed)
            fprintf(stderr,
                    "tether-site: if the interrupted run had already been accepted, install "
                    "its key by hand: mv %s/" PENDING ".key %s/site.key; mv %s/" PENDING
                    ".crt %s/site.crt\n",
                    state, state, state, state);
        else
            drop_pending(state);
        json_decref(e);
        goto out;
    }
    if (install_pending(state) != 0) {
        rc = say("the hub took the new key but it could not be installed: move %s/" PENDING
                 ".key and .crt to site.key and site.crt by hand",
                 state);
        goto out;
    }
    printf("rotated the key of site %s\nold pin %s\nnew pin %s\n"
           "The hub closed the tunnel that used the old key. An agent that does not reload its "
           "key by itself must be restarted (e.g. systemctl restart tether-site).\n",
           site, old_id.pin, new_id.pin);
    rc = 0;
out:
    free(body);
    httpc_response_free(&resp);
    crypto_identity_free(&old_id);
    crypto_identity_free(&new_id);
    free(conf);
    return rc;
}
