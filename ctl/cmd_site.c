/* tetherctl site commands: add, list, show. */
/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cmd.h"
#include "common/token.h"
#include "table.h"

/* Longest enrollment token lifetime accepted on the command line (a year);
 * the hub applies its own policy too. */
#define TTL_MAX (366LL * 86400)

/* Site names go into URL paths, so they are checked here, not only at the hub. */
static int check_name(const char *name)
{
    if (token_name_valid(name))
        return CTL_EXIT_OK;
    return ctl_usage_err("invalid site name \"%s\": use lower-case letters, digits and '-', "
                         "starting with a letter or digit, at most %d characters",
                         name, TOKEN_NAME_MAX);
}

int cmd_site_add(struct ctl *c, const struct ctl_args *a)
{
    json_t *req = json_object();    /* owned here */
    json_t *labels = json_object(); /* owned here until moved into req */
    json_t *resp = NULL;            /* owned here */
    const char *name = a->pos[0], *tok;
    int rc = CTL_EXIT_FAIL;
    size_t i;

    if (req == NULL || labels == NULL) {
        ctl_err("out of memory");
        goto out;
    }
    rc = check_name(name);
    if (rc != CTL_EXIT_OK)
        goto out;
    for (i = 0; i < a->nopt; i++) {
        const char *v = a->opt[i].value;

        if (strcmp(a->opt[i].name, "label") == 0) {
            const char *eq = strchr(v, '=');
            char *key;
            json_t *val;

            if (eq == NULL || eq == v) {
                rc = ctl_usage_err("--label expects KEY=VALUE, got \"%s\"", v);
                goto out;
            }
            key = strndup(v, (size_t)(eq - v));
            val = json_string(eq + 1); /* NULL if not UTF-8 */
            if (key == NULL || val == NULL || json_object_set_new(labels, key, val) != 0) {
                free(key);
                rc = ctl_usage_err("--label \"%s\" is not valid UTF-8 text", v);
                goto out;
            }
            free(key);
        } else if (strcmp(a->opt[i].name, "ttl") == 0) {
            char *end = NULL;
            long long ttl;

            errno = 0;
            ttl = strtoll(v, &end, 10);
            if (errno != 0 || end == v || *end != '\0' || ttl <= 0 || ttl > TTL_MAX) {
                rc = ctl_usage_err("--ttl expects seconds between 1 and %lld, got \"%s\"", TTL_MAX,
                                   v);
                goto out;
            }
            json_object_set_new(req, "ttl_s", json_integer(ttl));
        }
    }
    json_object_set_new(req, "name", json_string(name));
    json_object_set_new(req, "labels", labels); /* req now holds the only reference */
    labels = NULL;

    rc = ctl_call(c, "POST", "/v1/sites", req, &resp);
    if (rc != CTL_EXIT_OK)
        goto out;
    if (c->json) {
        ctl_print_json(resp);
        goto out;
    }
    tok = ctl_jstr(resp, "enrollment_token");
    if (tok == NULL || tok[0] == '\0') {
        ctl_err("the hub's answer has no enrollment_token");
        rc = CTL_EXIT_FAIL;
        goto out;
    }
    printf("%s\n", tok);
    /* Guidance only for a person at a terminal: a script capturing the token
     * gets nothing but the token. */
    if (isatty(STDOUT_FILENO) && isatty(STDERR_FILENO)) {
        char exp[32];

        ctl_fmt_time(ctl_jint(resp, "expires_at"), exp, sizeof(exp));
        fprintf(stderr,
                "Single-use token, valid until %s. On the site, run:\n"
                "  tether-site enroll --state DIR -   (and paste the token)\n",
                exp);
    }
out:
    json_decref(labels);
    json_decref(req);
    json_decref(resp);
    return rc;
}

int cmd_site_list(struct ctl *c, const struct ctl_args *a)
{
    static const char *const head[] = {"NAME",    "STATE",           "ONLINE",
                                       "ADDRESS", "CONNECTED-SINCE", "LAST-SEEN",
                                       "VERSION", "SERVICES",        "LABELS"};
    json_t *resp = NULL; /* owned here; everything below borrows from it */
    json_t *sites, *s;
    struct table *t = NULL;
    size_t i;
    int rc;

    rc = ctl_call(c, "GET", "/v1/sites", NULL, &resp);
    if (rc != CTL_EXIT_OK)
        goto out;
    if (c->json) {
        ctl_print_json(resp);
        goto out;
    }
    rc = CTL_EXIT_FAIL;
    sites = json_object_get(resp, "sites");
    if (!json_is_array(sites)) {
        ctl_err("the hub's answer has no \"sites\" list");
        goto out;
    }
    t = table_new(9, head);
    if (t == NULL) {
        ctl_err("out of memory");
        goto out;
    }
    json_array_foreach(sites, i, s)
    {
        char since[32], seen[32];
        char *services = ctl_join_array(json_object_get(s, "services"), ",");
        char *labels = ctl_join_object(json_object_get(s, "labels"), ",");
        const char *row[9] = {ctl_jstr(s, "name"),
                              ctl_jstr(s, "state"),
                              json_is_true(json_object_get(s, "online")) ? "yes" : "no",
                              ctl_jstr(s, "remote_addr"),
                              since,
                              seen,
                              ctl_jstr(s, "agent_version"),
                              services,
                              labels};
        int add_rc;

        ctl_fmt_time(ctl_jint(s, "connected_since"), since, sizeof(since));
        ctl_fmt_time(ctl_jint(s, "last_seen"), seen, sizeof(seen));
        add_rc = services != NULL && labels != NULL ? table_add(t, row) : -ENOMEM;
        free(services);
        free(labels);
        if (add_rc != 0) {
            ctl_err("out of memory");
            goto out;
        }
    }
    table_print(t, stdout);
    if (table_rows(t) == 0 && isatty(STDERR_FILENO))
        fprintf(stderr, "No sites yet: register one with 'tetherctl site add NAME'.\n");
    rc = CTL_EXIT_OK;
out:
    table_free(t);
    json_decref(resp);
    return rc;
}

static void kv(const char *key, const char *value)
{
    char *clean = table_clean(value != NULL && value[0] != '\0' ? value : "-");

    printf("%-17s %s\n", key, clean != NULL ? clean : "?");
    free(clean);
}

static int print_sessions(json_t *sessions)
{
    static const char *const head[] = {"CONNECTED", "DISCONNECTED", "DURATION",  "ADDRESS",
                                       "VERSION",   "BYTES-IN",     "BYTES-OUT", "REASON"};
    struct table *t = table_new(8, head);
    json_t *s;
    size_t i;
    int rc = -ENOMEM;

    if (t == NULL)
        goto out;
    table_align_right(t, 2);
    table_align_right(t, 5);
    table_align_right(t, 6);
    json_array_foreach(sessions, i, s)
    {
        char on[32], off[32], dur[32], in[32], outb[32];
        long long t_on = ctl_jint(s, "connected_at"), t_off = ctl_jint(s, "disconnected_at");
        const char *row[8] = {on,
                              off,
                              dur,
                              ctl_jstr(s, "remote_addr"),
                              ctl_jstr(s, "agent_version"),
                              in,
                              outb,
                              ctl_jstr(s, "reason")};

        ctl_fmt_time(t_on, on, sizeof(on));
        ctl_fmt_time(t_off, off, sizeof(off));
        /* A session without an end is the live one: its duration runs to now. */
        if (t_on > 0)
            ctl_fmt_duration((t_off > 0 ? t_off : (long long)time(NULL)) - t_on, dur, sizeof(dur));
        else
            snprintf(dur, sizeof(dur), "-");
        ctl_fmt_bytes(ctl_jint(s, "bytes_in"), in, sizeof(in));
        ctl_fmt_bytes(ctl_jint(s, "bytes_out"), outb, sizeof(outb));
        if (table_add(t, row) != 0)
            goto out;
    }
    table_print(t, stdout);
    rc = 0;
out:
    table_free(t);
    return rc;
}

int cmd_site_show(struct ctl *c, const struct ctl_args *a)
{
    json_t *site = NULL; /* owned here; everything below borrows from it */
    json_t *sessions;
    char path[128], since[32], seen[32], created[32];
    char *services = NULL, *labels = NULL;
    int rc;

    rc = check_name(a->pos[0]);
    if (rc != CTL_EXIT_OK)
        return rc;
    snprintf(path, sizeof(path), "/v1/sites/%s", a->pos[0]);
    rc = ctl_call(c, "GET", path, NULL, &site);
    if (rc != CTL_EXIT_OK)
        goto out;
    if (c->json) {
        ctl_print_json(site);
        goto out;
    }
    rc = CTL_EXIT_FAIL;
    if (!json_is_object(site)) {
        ctl_err("the hub's answer is not a site object");
        goto out;
    }
    services = ctl_join_array(json_object_get(site, "services"), ", ");
    labels = ctl_join_object(json_object_get(site, "labels"), ", ");
    if (services == NULL || labels == NULL) {
        ctl_err("out of memory");
        goto out;
    }
    ctl_fmt_time(ctl_jint(site, "connected_since"), since, sizeof(since));
    ctl_fmt_time(ctl_jint(site, "last_seen"), seen, sizeof(seen));
    ctl_fmt_time(ctl_jint(site, "created_at"), created, sizeof(created));
    kv("name:", ctl_jstr(site, "name"));
    kv("state:", ctl_jstr(site, "state"));
    kv("online:", json_is_true(json_object_get(site, "online")) ? "yes" : "no");
    kv("address:", ctl_jstr(site, "remote_addr"));
    kv("connected since:", since);
    kv("last seen:", seen);
    kv("agent version:", ctl_jstr(site, "agent_version"));
    kv("services:", services);
    kv("labels:", labels);
    kv("created:", created);

    sessions = json_object_get(site, "sessions");
    if (!json_is_array(sessions) || json_array_size(sessions) == 0) {
        printf("\nsessions: none\n");
    } else {
        printf("\nsessions (newest first):\n");
        if (print_sessions(sessions) != 0) {
            ctl_err("out of memory");
            goto out;
        }
    }
    rc = CTL_EXIT_OK;
out:
    free(services);
    free(labels);
    json_decref(site);
    return rc;
}
