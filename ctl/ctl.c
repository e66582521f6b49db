/* tetherctl's shared state and helpers: hub connection, request/response handling, output
 * formatting. */
/* SPDX-License-Identifier: MIT */
#include "ctl.h"

#include <errno.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/cli.h"
#include "common/crypto.h"
#include "common/token.h"
#include "table.h"

void ctl_err(const char *fmt, ...)
{
    va_list ap;

    fputs("tetherctl: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

/* The command being run, for the --help hint of usage errors. */
static const char *usage_cmd;

void ctl_set_command(const char *words)
{
    usage_cmd = words;
}

int ctl_usage_err(const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return cli_usage_error("tetherctl", usage_cmd, "%s", msg);
}

static int default_config_path(char *buf, size_t cap)
{
    const char *home = getenv("HOME");
    int n;

    if (home == NULL || home[0] == '\0') {
        struct passwd *pw = getpwuid(getuid());
        home = pw != NULL ? pw->pw_dir : NULL;
    }
    if (home == NULL)
        return -ENOENT;
    n = snprintf(buf, cap, "%s/.config/tether/ctl.conf", home);
    return n > 0 && (size_t)n < cap ? 0 : -ENAMETOOLONG;
}

int ctl_connect(struct ctl *c)
{
    char defpath[4096], err[512] = "";
    const char *path = NULL, *env = getenv("TETHER_CONFIG"), *hub, *pin;
    int loaded = 0, rc;
    struct stat st;

    if (c->connected)
        return CTL_EXIT_OK;
    if (c->config_path != NULL)
        path = c->config_path;
    else if (env != NULL && env[0] != '\0')
        path = env;
    else if (default_config_path(defpath, sizeof(defpath)) == 0 &&
             !(stat(defpath, &st) != 0 && errno == ENOENT))
        path = defpath; /* the default file is optional; an explicit one is not */

    if (path != NULL) {
        rc = config_load(path, &c->cfg, err, sizeof(err));
        if (rc != 0) {
            if (err[0] != '\0')
                ctl_err("%s", err);
            else
                ctl_err("cannot read %s: %s", path, strerror(-rc));
            return CTL_EXIT_FAIL;
        }
        loaded = 1;
    }
    hub = c->hub_url != NULL ? c->hub_url : loaded ? config_get(&c->cfg, "hub") : NULL;
    pin = c->pin != NULL ? c->pin : loaded ? config_get(&c->cfg, "hub_pin") : NULL;
    c->bearer = c->token != NULL ? c->token : loaded ? config_get(&c->cfg, "token") : NULL;

    if (hub == NULL) {
        ctl_err("no hub configured: pass --hub https://HOST:PORT or set \"hub = ...\" in %s",
                path != NULL ? path : "~/.config/tether/ctl.conf");
        return CTL_EXIT_FAIL;
    }
    if (httpc_target_from_url(hub, &c->target) != 0) {
        if (c->hub_url != NULL)
            return ctl_usage_err("invalid --hub \"%s\" (expected https://HOST[:PORT])", hub);
        ctl_err("invalid hub URL \"%s\" in %s (expected https://HOST[:PORT])", hub, path);
        return CTL_EXIT_FAIL;
    }
    if (pin == NULL) {
        ctl_err("no hub key pin: pass --pin sha256//... or set \"hub_pin = ...\" in %s",
                path != NULL ? path : "~/.config/tether/ctl.conf");
        return CTL_EXIT_FAIL;
    }
    if (!crypto_pin_valid(pin) || strlen(pin) >= sizeof(c->target.pin)) {
        if (c->pin != NULL)
            return ctl_usage_err("invalid --pin \"%s\" (expected sha256// and 44 base64 "
                                 "characters)",
                                 pin);
        ctl_err("invalid hub_pin \"%s\" in %s (expected sha256// and 44 base64 characters)", pin,
                path);
        return CTL_EXIT_FAIL;
    }
    snprintf(c->target.pin, sizeof(c->target.pin), "%s", pin);
    if (c->bearer == NULL || c->bearer[0] == '\0') {
        ctl_err("no API token: pass --token or set \"token = ...\" in %s",
                path != NULL ? path : "~/.config/tether/ctl.conf");
        return CTL_EXIT_FAIL;
    }
    /* Like ssh with its keys: a token in a file others can read is a leak. */
    if (c->token == NULL && path != NULL && stat(path, &st) == 0 && (st.st_mode & 0077) != 0)
        ctl_err("warning: %s holds an API token but others may read it (chmod 600 %s)", path, path);
    c->connected = 1;
    return CTL_EXIT_OK;
}

void ctl_free(struct ctl *c)
{
    config_free(&c->cfg);
    c->bearer = NULL;
    c->connected = 0;
}

/* What to do next after the hub refused path with status, error code and
 * detail:
 * a static hint, or "" when the detail says enough. */
static const char *next_step(int status, const char *code, const char *detail, const char *path)
{
    static const struct {
        const char *prefix; /* of the request path */
        const char *hint;
    } lists[] = {
        {"/v1/sites/", "'tetherctl site list' shows the sites"},
        {"/v1/queries/", "'tetherctl query list' shows the queries this token can see"},
        {"/v1/tokens/", "'tetherctl token list' shows the API tokens"},
        {"/v1/enrollments/", "'tetherctl enroll list --all' shows the enrollment tokens"},
    };

    if (status == 401)
        return "the API token is unknown, revoked or expired: use another one (--token, or "
               "\"token =\" in the configuration), or have an admin make one with "
               "'tetherctl token create'";
    if (status == 403 && detail != NULL && strcmp(detail, "admin only") == 0)
        return "this needs an admin token ('tetherctl token list' shows each token's role)";
    if (status != 404 || code == NULL || strcmp(code, "not_found") != 0)
        return "";
    for (size_t i = 0; i < sizeof(lists) / sizeof(lists[0]); i++)
        if (strncmp(path, lists[i].prefix, strlen(lists[i].prefix)) == 0)
            return lists[i].hint;
    return "";
}

/* Prints the hub's {"error","detail"} answer, or what can be said without
 * one, and what to do next where the answer alone does not say. */
static void report_hub_error(const struct httpc_response *r, const char *path)
{
    json_t *j = json_loadb(r->body, r->body_len, 0, NULL); /* owned here */
    const char *detail = ctl_jstr(j, "detail");
    const char *hint = next_step(r->status, ctl_jstr(j, "error"), detail, path);
    char *clean;

    if (detail == NULL || detail[0] == '\0')
        detail = ctl_jstr(j, "error");
    if (detail != NULL && detail[0] != '\0') {
        clean = table_clean(detail);
        ctl_err("%s (HTTP %d)%s%s", clean != NULL ? clean : detail, r->status,
                hint[0] != '\0' ? "; " : "", hint);
    } else {
        /* Not our hub's error shape (a proxy in between?): show its first line. */
        char line[201];
        size_t n = 0;

        while (n < r->body_len && n < sizeof(line) - 1 && r->body[n] != '\n' &&
               r->body[n] != '\r' && r->body[n] != '\0') {
            line[n] = r->body[n];
            n++;
        }
        line[n] = '\0';
        clean = table_clean(line);
        if (clean != NULL && clean[0] != '\0')
            ctl_err("the hub answered HTTP %d: %s", r->status, clean);
        else
            ctl_err("the hub answered HTTP %d", r->status);
    }
    free(clean);
    json_decref(j);
}

/* The exit code of a hub's answer that is not a success. */
static int exit_for_status(int status)
{
    if (status == 404)
        return CTL_EXIT_NOT_FOUND;
    if (status == 401 || status == 403)
        return CTL_EXIT_DENIED;
    if (status == 409)
        return CTL_EXIT_CONFLICT;
    return CTL_EXIT_FAIL;
}

void ctl_report_unreachable(const char *err)
{
    const char *hint = "";

    if (strstr(err, "does not match the pinned key") != NULL)
        hint = "; if the hub's key was replaced on purpose, put its new pin in \"hub_pin =\" "
               "(tether-hub init wrote it to STATE/ctl.conf)";
    else if (strstr(err, "cannot connect") != NULL || strstr(err, "cannot resolve") != NULL ||
             strstr(err, "timed out connecting") != NULL)
        hint = "; is tether-hub running there, and is \"hub =\" (or --hub) its address?";
    ctl_err("%s%s", err[0] != '\0' ? err : "request failed", hint);
}

int ctl_call(struct ctl *c, const char *method, const char *path, json_t *body, json_t **out)
{
    struct httpc_response r = {0};
    json_error_t jerr;
    char *text = NULL, err[512] = "";
    int rc;

    if (out != NULL)
        *out = NULL;
    rc = ctl_connect(c);
    if (rc != CTL_EXIT_OK)
        return rc;
    rc = CTL_EXIT_FAIL;
    if (body != NULL) {
        text = json_dumps(body, JSON_COMPACT);
        if (text == NULL) {
            ctl_err("cannot encode the request");
            goto out;
        }
    }
    if (httpc_request(&c->target, method, path, c->bearer, text != NULL ? "application/json" : NULL,
                      text, text != NULL ? strlen(text) : 0, &r, err, sizeof(err)) != 0) {
        ctl_report_unreachable(err);
        rc = CTL_EXIT_NETWORK;
        goto out;
    }
    if (r.status < 200 || r.status > 299) {
        report_hub_error(&r, path);
        rc = exit_for_status(r.status);
        goto out;
    }
    if (out != NULL && r.body_len == 0) {
        *out = json_object(); /* 204 No Content */
        if (*out == NULL) {
            ctl_err("out of memory");
            goto out;
        }
    } else if (out != NULL) {
        *out = json_loadb(r.body, r.body_len, JSON_REJECT_DUPLICATES, &jerr);
        if (*out == NULL) {
            ctl_err("the hub's answer is not valid JSON (HTTP %d): %s", r.status, jerr.text);
            goto out;
        }
    }
    rc = CTL_EXIT_OK;
out:
    free(text);
    httpc_response_free(&r);
    return rc;
}

int ctl_stream(struct ctl *c, const char *path, int idle_s, httpc_body_fn on_body, void *arg,
               char *err, size_t cap)
{
    struct httpc_target t;
    struct httpc_response r = {0};
    int rc;

    err[0] = '\0';
    rc = ctl_connect(c);
    if (rc != CTL_EXIT_OK)
        return rc;
    t = c->target;
    t.timeout_ms = idle_s * 1000;
    t.on_body = on_body;
    t.body_arg = arg;
    if (httpc_request(&t, "GET", path, c->bearer, NULL, NULL, 0, &r, err, cap) != 0) {
        rc = CTL_EXIT_NETWORK;
    } else if (r.status < 200 || r.status > 299) {
        report_hub_error(&r, path);
        rc = exit_for_status(r.status);
    } else {
        snprintf(err, cap, "the hub ended the stream");
        rc = CTL_EXIT_NETWORK;
    }
    httpc_response_free(&r);
    return rc;
}

void ctl_kv(const char *key, const char *value)
{
    char *clean = table_clean(value != NULL && value[0] != '\0' ? value : "-");

    printf("%-17s %s\n", key, clean != NULL ? clean : "?");
    free(clean);
}

int ctl_get_list(struct ctl *c, const char *path, const char *key, size_t ncols,
                 const char *const *head, json_t **resp, json_t **list, struct table **t)
{
    int rc;

    *resp = NULL;
    *list = NULL;
    *t = NULL;
    rc = ctl_call(c, "GET", path, NULL, resp);
    if (rc != CTL_EXIT_OK)
        return rc;
    if (c->json) {
        ctl_print_json(*resp);
        return CTL_EXIT_OK;
    }
    *list = json_object_get(*resp, key);
    if (!json_is_array(*list)) {
        ctl_err("the hub's answer has no \"%s\" list", key);
        return CTL_EXIT_FAIL;
    }
    *t = table_new(ncols, head);
    if (*t == NULL) {
        ctl_err("out of memory");
        return CTL_EXIT_FAIL;
    }
    return CTL_EXIT_OK;
}

int ctl_table_add(struct table *t, const char *const *row)
{
    if (t != NULL && table_add(t, row) == 0)
        return CTL_EXIT_OK;
    ctl_err("out of memory");
    return CTL_EXIT_FAIL;
}

void ctl_print_json(json_t *j)
{
    /* jansson escapes control characters, so this is safe for terminals. */
    json_dumpf(j, stdout, JSON_INDENT(2));
    fputc('\n', stdout);
}

const char *ctl_jstr(json_t *obj, const char *key)
{
    json_t *v = json_is_object(obj) ? json_object_get(obj, key) : NULL;

    return json_is_string(v) ? json_string_value(v) : NULL;
}

long long ctl_jint(json_t *obj, const char *key)
{
    json_t *v = json_is_object(obj) ? json_object_get(obj, key) : NULL;

    if (json_is_integer(v))
        return (long long)json_integer_value(v);
    if (json_is_real(v)) {
        double d = json_real_value(v);
        if (d > -9e18 && d < 9e18)
            return (long long)d;
    }
    return 0;
}

void ctl_fmt_time(long long unix_s, char *buf, size_t cap)
{
    time_t t = (time_t)unix_s;
    struct tm tm;

    if (unix_s <= 0) {
        snprintf(buf, cap, "-");
        return;
    }
    if (localtime_r(&t, &tm) == NULL || strftime(buf, cap, "%Y-%m-%d %H:%M:%S", &tm) == 0)
        snprintf(buf, cap, "%lld", unix_s);
}

void ctl_fmt_bytes(long long n, char *buf, size_t cap)
{
    static const char *const units[] = {"KiB", "MiB", "GiB", "TiB", "PiB"};
    double v = (double)n;
    size_t u = 0;

    if (n < 1024) {
        snprintf(buf, cap, "%lld B", n < 0 ? 0 : n);
        return;
    }
    v /= 1024;
    while (v >= 1024 && u + 1 < sizeof(units) / sizeof(units[0])) {
        v /= 1024;
        u++;
    }
    snprintf(buf, cap, "%.1f %s", v, units[u]);
}

void ctl_fmt_duration(long long s, char *buf, size_t cap)
{
    if (s < 0)
        snprintf(buf, cap, "-");
    else if (s < 60)
        snprintf(buf, cap, "%llds", s);
    else if (s < 3600)
        snprintf(buf, cap, "%lldm %llds", s / 60, s % 60);
    else if (s < 86400)
        snprintf(buf, cap, "%lldh %lldm", s / 3600, s % 3600 / 60);
    else
        snprintf(buf, cap, "%lldd %lldh", s / 86400, s % 86400 / 3600);
}

char *ctl_join_array(json_t *arr, const char *sep)
{
    char *s = NULL;
    size_t len = 0, i, n = 0;
    FILE *f = open_memstream(&s, &len);
    json_t *v;

    if (f == NULL)
        return NULL;
    if (json_is_array(arr))
        json_array_foreach(arr, i, v)
        {
            if (!json_is_string(v))
                continue;
            fprintf(f, "%s%s", n++ > 0 ? sep : "", json_string_value(v));
        }
    if (fclose(f) != 0) {
        free(s);
        return NULL;
    }
    return s;
}

char *ctl_join_object(json_t *obj, const char *sep)
{
    char *s = NULL;
    size_t len = 0, n = 0;
    FILE *f = open_memstream(&s, &len);
    const char *key;
    json_t *v;

    if (f == NULL)
        return NULL;
    if (json_is_object(obj))
        json_object_foreach(obj, key, v)
        {
            fprintf(f, "%s%s=", n++ > 0 ? sep : "", key);
            if (json_is_string(v)) {
                fputs(json_string_value(v), f);
            } else {
                char *d = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY); /* owned here */
                fputs(d != NULL ? d : "?", f);
                free(d);
            }
        }
    if (fclose(f) != 0) {
        free(s);
        return NULL;
    }
    return s;
}

int ctl_check_name(const char *what, const char *name)
{
    if (token_name_valid(name))
        return CTL_EXIT_OK;
    return ctl_usage_err("invalid %s name \"%s\": use lower-case letters, digits and '-', "
                         "starting with a letter or digit, at most %d characters",
                         what, name, TOKEN_NAME_MAX);
}

int ctl_parse_sites(const char *v, json_t **out)
{
    json_t *j = NULL;
    char *copy = NULL, *save = NULL, *tok;
    int label = v != NULL && strncmp(v, "label=", 6) == 0;
    int rc = CTL_EXIT_USAGE;

    *out = NULL;
    if (v == NULL || strcmp(v, "*") == 0 || strcmp(v, "all") == 0) {
        *out = json_string("*");
        return *out ? CTL_EXIT_OK : CTL_EXIT_FAIL;
    }
    copy = strdup(label ? v + 6 : v);
    j = label ? json_object() : json_array();
    if (copy == NULL || j == NULL) {
        ctl_err("out of memory");
        rc = CTL_EXIT_FAIL;
        goto out;
    }
    for (tok = strtok_r(copy, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
        if (label) {
            char *eq = strchr(tok, '=');
            json_t *val;

            if (eq == NULL || eq == tok) {
                ctl_usage_err("--sites label=KEY=VALUE[,KEY=VALUE]..., got \"%s\"", v);
                goto out;
            }
            *eq = '\0';
            val = json_string(eq + 1);
            if (val == NULL || json_object_set_new(j, tok, val) != 0) {
                ctl_usage_err("--sites \"%s\" is not valid UTF-8 text", v);
                goto out;
            }
        } else {
            if (ctl_check_name("site", tok) != CTL_EXIT_OK)
                goto out;
            json_array_append_new(j, json_string(tok));
        }
    }
    if (json_is_array(j) ? json_array_size(j) == 0 : json_object_size(j) == 0) {
        ctl_usage_err("--sites names no site");
        goto out;
    }
    if (label) {
        *out = json_pack("{s:o}", "labels", j);
        j = NULL;
    } else {
        *out = j;
        j = NULL;
    }
    rc = *out != NULL ? CTL_EXIT_OK : CTL_EXIT_FAIL;
out:
    json_decref(j);
    free(copy);
    return rc;
}

int ctl_parse_count(const char *opt, const char *v, long long max, long long *out)
{
    long long n;

    if (cli_parse_int(v, 1, max, &n) != 0)
        return ctl_usage_err("%s expects a whole number from 1 to %lld, got \"%s\"", opt, max, v);
    *out = n;
    return CTL_EXIT_OK;
}

const char *ctl_opt(const struct ctl_args *a, const char *name)
{
    const char *v = NULL;
    size_t i;

    for (i = 0; i < a->nopt; i++)
        if (strcmp(a->opt[i].name, name) == 0)
            v = a->opt[i].value != NULL ? a->opt[i].value : "";
    return v;
}
