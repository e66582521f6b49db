/* Unit tests for site/conf.c: the one site.conf loader (good files, layering, missing keys, bad
 * values, comments, over-long lines, https:// services and their options). */
/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../../site/conf.h"
#include "testutil.h"

#define PIN "sha256//AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="

static char dir[] = "/tmp/test_conf.XXXXXX";
static char path[256];

static void write_text(const char *at, const char *text)
{
    tu_write_file(at, text, strlen(text));
}

/* Loads text as a fresh site.conf; returns the loader's code, err filled. */
static int load_text(const char *text, struct site_conf *c, char *err, size_t cap)
{
    write_text(path, text);
    site_conf_init(c);
    err[0] = '\0';
    return site_conf_load(path, c, err, cap);
}

static struct site_conf conf; /* big: 64 services */

static void test_good(void)
{
    char err[512];

    CHECK_EQ_INT(load_text("# Written by tether-site enroll.\n"
                           "site = s1\n"
                           "\n"
                           "   # an indented comment\n"
                           "hub = hub1.example:6443\n"
                           "hub = [::1]:7443\n"
                           "hub_pin = " PIN "\n"
                           "service = web=http://127.0.0.1:8080\n"
                           "service = sock=unix:/run/app.sock\n"
                           "ping_interval = 0.5\n"
                           "connect_timeout = 3\n"
                           "source_port = 40000\n"
                           "proxy = http://u:p@proxy.example:3128\n"
                           "some_future_key = whatever\n",
                           &conf, err, sizeof(err)),
                 0);
    CHECK_EQ_STR(err, "");
    CHECK_EQ_STR(conf.site, "s1");
    CHECK_EQ_INT(conf.n_hubs, 2);
    CHECK_EQ_STR(conf.hubs[0], "hub1.example:6443");
    CHECK_EQ_STR(conf.hubs[1], "[::1]:7443");
    CHECK_EQ_STR(conf.hub_pin, PIN);
    CHECK_EQ_INT(conf.n_services, 2);
    CHECK_EQ_STR(conf.services[0].name, "web");
    CHECK_EQ_STR(conf.services[1].name, "sock");
    CHECK_EQ_INT(conf.has_ping_interval, 1);
    CHECK_EQ_INT(conf.ping_interval_ms, 500);
    CHECK_EQ_INT(conf.has_connect_timeout, 1);
    CHECK_EQ_INT(conf.connect_timeout_ms, 3000);
    CHECK_EQ_INT(conf.source_port, 40000);
    CHECK_EQ_INT(conf.proxy_set, 1);
    CHECK_EQ_INT(conf.use_proxy, 1);
    CHECK_EQ_STR(conf.proxy.host, "proxy.example");
    CHECK_EQ_INT(conf.proxy.port, 3128);
    CHECK_EQ_INT(site_conf_check(&conf, err, sizeof(err)), 0);
}

/* A second file (--config) over the first: scalars replaced, the hub list
 * replaced as a whole, services added, "proxy =" turns the proxy off. */
static void test_layering(void)
{
    char err[512], second[300];

    CHECK_EQ_INT(load_text("site = s1\nhub = a:1\nhub = b:2\nhub_pin = " PIN "\n"
                           "service = web=http://127.0.0.1:1\nproxy = http://px:1\n",
                           &conf, err, sizeof(err)),
                 0);
    snprintf(second, sizeof(second), "%s.2", path);
    write_text(second, "hub = c:3\nservice = api=http://127.0.0.1:2\nproxy =\nping_interval = 0\n");
    CHECK_EQ_INT(site_conf_load(second, &conf, err, sizeof(err)), 0);
    CHECK_EQ_STR(conf.site, "s1");
    CHECK_EQ_INT(conf.n_hubs, 1);
    CHECK_EQ_STR(conf.hubs[0], "c:3");
    CHECK_EQ_INT(conf.n_services, 2);
    CHECK_EQ_STR(conf.services[1].name, "api");
    CHECK_EQ_INT(conf.use_proxy, 0);
    CHECK_EQ_INT(conf.has_ping_interval, 1);
    CHECK_EQ_INT(conf.ping_interval_ms, 0);
    /* The same service name in the second file is refused. */
    write_text(second, "service = web=http://127.0.0.1:9\n");
    CHECK_EQ_INT(site_conf_load(second, &conf, err, sizeof(err)), -EEXIST);
    CHECK(strstr(err, ".2:1: bad service") != NULL);
    unlink(second);
}

static void test_missing(void)
{
    char err[512];

    /* No file at all. */
    site_conf_init(&conf);
    CHECK_EQ_INT(site_conf_load("/nonexistent/dir/site.conf", &conf, err, sizeof(err)), -ENOENT);
    CHECK(strstr(err, "/nonexistent/dir/site.conf") != NULL);

    /* Loads, but lacks what every command needs; the reason lists it. */
    CHECK_EQ_INT(load_text("# nothing but a comment\n", &conf, err, sizeof(err)), 0);
    CHECK_EQ_INT(site_conf_check(&conf, err, sizeof(err)), -EINVAL);
    CHECK(strstr(err, "missing: site hub hub_pin") != NULL);
    CHECK_EQ_INT(load_text("site = s1\nhub_pin = " PIN "\n", &conf, err, sizeof(err)), 0);
    CHECK_EQ_INT(site_conf_check(&conf, err, sizeof(err)), -EINVAL);
    CHECK(strstr(err, "missing: hub)") != NULL);
}

static void test_bad_values(void)
{
    static const struct {
        const char *line, *key;
    } bad[] = {
        {"site = Not_A_Name", "site"},
        {"hub_pin = sha256//short", "hub_pin"},
        {"hub = ", "hub"},
        {"service = web", "service"},
        {"service = web=ftp://x", "service"},
        {"service = 9bad!=http://127.0.0.1:1", "service"},
        {"ping_interval = soon", "ping_interval"},
        {"ping_interval = 3601", "ping_interval"},
        {"ping_interval = -1", "ping_interval"},
        {"connect_timeout = 0.01", "connect_timeout"},
        {"connect_timeout = nan", "connect_timeout"},
        {"source_port = 0", "source_port"},
        {"source_port = 65536", "source_port"},
        {"source_port = 80x", "source_port"},
        {"proxy = socks5://x:1", "proxy"},
    };
    char text[512], err[512], want[64];

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(text, sizeof(text), "site = s1\n# comment\n%s\n", bad[i].line);
        CHECK(load_text(text, &conf, err, sizeof(err)) < 0);
        snprintf(want, sizeof(want), "site.conf:3: bad %s", bad[i].key);
        if (strstr(err, want) == NULL) {
            fprintf(stderr, "for \"%s\": %s\n", bad[i].line, err);
            CHECK(!"error names the file, line and key");
        }
    }
    /* A proxy's password never shows in the message. */
    CHECK(load_text("proxy = http://user:s3cret@:bad\n", &conf, err, sizeof(err)) < 0);
    CHECK(strstr(err, "bad proxy") != NULL);
    CHECK(strstr(err, "s3cret") == NULL);
    /* Nine hub endpoints: more than an agent tries. */
    CHECK_EQ_INT(load_text("hub = a:1\nhub = a:2\nhub = a:3\nhub = a:4\nhub = a:5\nhub = a:6\n"
                           "hub = a:7\nhub = a:8\nhub = a:9\n",
                           &conf, err, sizeof(err)),
                 -E2BIG);
    CHECK(strstr(err, "site.conf:9: bad hub") != NULL);
    /* Not "key = value" at all. */
    CHECK(load_text("site s1\n", &conf, err, sizeof(err)) < 0);
    CHECK(strstr(err, "site.conf:1:") != NULL);
}

static void test_long_lines(void)
{
    size_t n = 5000;
    char *text = malloc(n + 64), err[512];

    CHECK(text != NULL);
    if (text == NULL)
        return;
    /* A hub endpoint longer than any token carries. */
    snprintf(text, n + 64, "hub = %0300d:1\n", 0);
    CHECK_EQ_INT(load_text(text, &conf, err, sizeof(err)), -EINVAL);
    CHECK(strstr(err, "site.conf:1: bad hub") != NULL);
    /* A line longer than the file format allows, even a comment. */
    memset(text, '#', n);
    strcpy(text + n, "\nsite = s1\n");
    CHECK(load_text(text, &conf, err, sizeof(err)) < 0);
    CHECK(strstr(err, "site.conf:1: line longer than") != NULL);
    CHECK_EQ_STR(conf.site, "");
    free(text);
}

#define PIN2 "sha256//BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBA="

/* https:// services and service_opt lines, in a file and as --service-opt. */
static void test_service_opts(void)
{
    char err[512], why[256];
    const struct tls_svc_conf *t;

    CHECK_EQ_INT(load_text("site = s1\nhub = h:1\nhub_pin = " PIN "\n"
                           "service = web=https://web.internal:8443/app\n"
                           "service_opt = web:ca=/etc/tether/web-ca.pem\n"
                           "service_opt = web:cert=/etc/tether/c.pem\n"
                           "service_opt = web:key=/etc/tether/c.key\n"
                           "service = api=https://10.0.0.5\n"
                           "service_opt = api:pin=" PIN "\n"
                           "service_opt = api:pin=" PIN2 "\n"
                           "service = lab=https://[::1]:9443\n"
                           "service_opt = lab:insecure\n",
                           &conf, err, sizeof(err)),
                 0);
    CHECK_EQ_STR(err, "");
    CHECK_EQ_INT(conf.n_services, 3);
    t = &conf.services[0].tls;
    CHECK_EQ_INT(conf.services[0].url.kind, NET_URL_HTTPS);
    CHECK_EQ_INT(conf.services[0].url.port, 8443);
    CHECK_EQ_STR(conf.services[0].url.path, "/app");
    CHECK_EQ_STR(t->ca_file, "/etc/tether/web-ca.pem");
    CHECK_EQ_STR(t->cert_file, "/etc/tether/c.pem");
    CHECK_EQ_STR(t->key_file, "/etc/tether/c.key");
    CHECK_EQ_INT(t->n_pins, 0);
    CHECK_EQ_INT(t->insecure, 0);
    t = &conf.services[1].tls;
    CHECK_EQ_INT(conf.services[1].url.port, 443);
    CHECK_EQ_INT(t->n_pins, 2);
    CHECK_EQ_STR(t->pins[0], PIN);
    CHECK_EQ_STR(t->pins[1], PIN2);
    CHECK_EQ_STR(t->ca_file, "");
    CHECK_EQ_INT(conf.services[2].tls.insecure, 1);
    CHECK_EQ_STR(conf.services[2].url.host, "::1");
    CHECK_EQ_INT(site_conf_check(&conf, err, sizeof(err)), 0);

    /* The same through the function --service-opt uses, after the file:
     * ca= given again replaces the file's. */
    CHECK_EQ_INT(site_conf_service_opt(&conf, "web:ca=/other.pem", why, sizeof(why)), 0);
    CHECK_EQ_STR(conf.services[0].tls.ca_file, "/other.pem");
    CHECK_EQ_INT(site_conf_service_opt(&conf, "api:pin=" PIN, why, sizeof(why)), 0);
    CHECK_EQ_INT(site_conf_service_opt(&conf, "api:pin=" PIN, why, sizeof(why)), 0);
    CHECK_EQ_INT(site_conf_service_opt(&conf, "api:pin=" PIN, why, sizeof(why)), -E2BIG);
    CHECK_EQ_INT(site_conf_service_opt(&conf, "nosuch:insecure", why, sizeof(why)), -ESRCH);
    CHECK(strstr(why, "nosuch") != NULL);
    CHECK_EQ_INT(site_conf_service_opt(&conf, "web", why, sizeof(why)), -EINVAL);
    CHECK_EQ_INT(site_conf_service_opt(&conf, ":ca=/x", why, sizeof(why)), -EINVAL);
    CHECK_EQ_INT(site_conf_service_opt(&conf, "web:colour=blue", why, sizeof(why)), -EINVAL);
    CHECK(strstr(why, "colour") != NULL);
    CHECK_EQ_INT(site_conf_service_opt(&conf, "web:ca=", why, sizeof(why)), -EINVAL);
    CHECK_EQ_INT(site_conf_service_opt(&conf, "web:ca", why, sizeof(why)), -EINVAL);
    CHECK_EQ_INT(site_conf_service_opt(&conf, "web:insecure=yes", why, sizeof(why)), -EINVAL);
    CHECK_EQ_INT(site_conf_service_opt(&conf, "web:pin=sha256//short", why, sizeof(why)), -EINVAL);
    CHECK_EQ_INT(site_conf_service_opt(&conf, "web:name=web.internal", why, sizeof(why)), 0);
    CHECK_EQ_STR(conf.services[0].tls.name, "web.internal");
    CHECK_EQ_INT(site_conf_service_opt(&conf, "web:name=a b", why, sizeof(why)), -EINVAL);
    CHECK_EQ_INT(site_conf_service_opt(&conf, "web:name=web:443", why, sizeof(why)), -EINVAL);
    CHECK_EQ_INT(site_conf_service_opt(&conf, "web:name=", why, sizeof(why)), -EINVAL);
    CHECK_EQ_STR(conf.services[0].tls.name, "web.internal");
    CHECK_EQ_INT(site_conf_add_service(&conf, "plain=http://127.0.0.1:80"), 0);
    CHECK_EQ_INT(site_conf_service_opt(&conf, "plain:insecure", why, sizeof(why)), -EINVAL);
    CHECK(strstr(why, "not https") != NULL);
    /* restricted: any kind of service, no value; a new service starts open. */
    CHECK_EQ_INT(conf.services[conf.n_services - 1].restricted, 0);
    CHECK_EQ_INT(site_conf_service_opt(&conf, "plain:restricted", why, sizeof(why)), 0);
    CHECK_EQ_INT(conf.services[conf.n_services - 1].restricted, 1);
    CHECK_EQ_INT(site_conf_service_opt(&conf, "plain:restricted=yes", why, sizeof(why)), -EINVAL);
    CHECK_EQ_INT(site_conf_service_opt(&conf, "nosuch:restricted", why, sizeof(why)), -ESRCH);
    CHECK_EQ_INT(conf.services[0].restricted, 0);

    /* Options that exclude each other are caught once everything is read. */
    CHECK_EQ_INT(site_conf_service_opt(&conf, "lab:ca=/x.pem", why, sizeof(why)), 0);
    CHECK_EQ_INT(site_conf_check(&conf, err, sizeof(err)), -EINVAL);
    CHECK(strstr(err, "service lab: insecure excludes ca") != NULL);
    CHECK_EQ_INT(load_text("site = s1\nhub = h:1\nhub_pin = " PIN "\n"
                           "service = a=https://a.example\nservice_opt = a:ca=/x\n"
                           "service_opt = a:pin=" PIN "\n",
                           &conf, err, sizeof(err)),
                 0);
    CHECK_EQ_INT(site_conf_check(&conf, err, sizeof(err)), -EINVAL);
    CHECK(strstr(err, "ca and pin exclude each other") != NULL);
    CHECK_EQ_INT(load_text("site = s1\nhub = h:1\nhub_pin = " PIN "\n"
                           "service = a=https://a.example\nservice_opt = a:cert=/c.pem\n",
                           &conf, err, sizeof(err)),
                 0);
    CHECK_EQ_INT(site_conf_check(&conf, err, sizeof(err)), -EINVAL);
    CHECK(strstr(err, "needs both cert and key") != NULL);

    /* In a file, an option for a service not defined above it names the line. */
    CHECK(load_text("service_opt = web:insecure\nservice = web=https://w\n", &conf, err,
                    sizeof(err)) < 0);
    CHECK(strstr(err, "site.conf:1: bad service_opt") != NULL);
    /* A path longer than the limit is refused, not cut. */
    {
        char spec[TLS_SVC_PATH_MAX + 32];
        CHECK_EQ_INT(site_conf_add_service(&conf, "w=https://w"), 0);
        snprintf(spec, sizeof(spec), "w:ca=/%0*d", TLS_SVC_PATH_MAX, 0);
        CHECK_EQ_INT(site_conf_service_opt(&conf, spec, why, sizeof(why)), -EINVAL);
        CHECK_EQ_STR(conf.services[conf.n_services - 1].tls.ca_file, "");
    }
}

int main(void)
{
    if (mkdtemp(dir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(path, sizeof(path), "%s/site.conf", dir);
    test_good();
    test_layering();
    test_missing();
    test_bad_values();
    test_long_lines();
    test_service_opts();
    unlink(path);
    rmdir(dir);
    TEST_DONE();
}
