/* tetherctl site commands: add, list, show, disable, enable, revoke, remove, label, token. */
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

/* Longest enrollment token lifetime the hub accepts (30 days). */
#define TTL_MAX (30LL * 86400)

/* Site names go into URL paths, so they are checked here, not only at the hub. */
static int check_name(const char *name)
{
    return ctl_check_name("site", name);
}

/* Prints the one-time enrollment token of an answer (only it, on stdout),
 * and a hint for a person at a terminal. */
static int print_enroll_token(json_t *resp)
{
    const char *tok = ctl_jstr(resp, "enrollment_token");

    if (tok == NULL || tok[0] == '\0') {
        ctl_err("the hub's answer has no enrollment_token");
        return CTL_EXIT_FAIL;
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
    return CTL_EXIT_OK;
}

/* --ttl SECONDS into req's "ttl_s". */
static int take_ttl(const struct ctl_args *a, json_t *req)
{
    const char *v = ctl_opt(a, "ttl");
    long long ttl;
    int rc;

    if (v == NULL)
        return CTL_EXIT_OK;
    rc = ctl_parse_count("--ttl", v, TTL_MAX, &ttl);
    if (rc == CTL_EXIT_OK)
        json_object_set_new(req, "ttl_s", json_integer(ttl));
    return rc;
}

int cmd_site_add(struct ctl *c, const struct ctl_args *a)
{
    json_t *req = json_object();    /* owned here */
    json_t *labels = json_object(); /* owned here until moved into req */
    json_t *resp = NULL;            /* owned here */
    const char *name = a->pos[0];
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
        }
    }
    rc = take_ttl(a, req);
    if (rc != CTL_EXIT_OK)
        goto out;
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
    rc = print_enroll_token(resp);
out:
    json_decref(labels);
    json_decref(req);
    json_decref(resp);
    return rc;
}

int cmd_site_list(struct ctl *c, const struct ctl_args *a)
{
    static const char *const head[] = {
        "NAME",      "STATE",   "ONLINE",   "ADDRESS", "CONNECTED-SINCE",
        "LAST-SEEN", "VERSION", "SERVICES", "LABELS",  "HUB"};
    json_t *resp = NULL; /* owned here; everything below borrows from it */
    json_t *sites, *s;
    struct table *t = NULL;
    size_t i;
    int rc;

    rc = ctl_get_list(c, "/v1/sites", "sites", 10, head, &resp, &sites, &t);
    if (rc != CTL_EXIT_OK || t == NULL)
        goto out;
    json_array_foreach(sites, i, s)
    {
        char since[32], seen[32];
        char *services = ctl_join_array(json_object_get(s, "services"), ",");
        char *labels = ctl_join_object(json_object_get(s, "labels"), ",");
        const char *row[10] = {ctl_jstr(s, "name"),
                               ctl_jstr(s, "state"),
                               json_is_true(json_object_get(s, "online")) ? "yes" : "no",
                               ctl_jstr(s, "remote_addr"),
                               since,
                               seen,
                               ctl_jstr(s, "agent_version"),
                               services,
                               labels,
                               ctl_jstr(s, "hub")};

        ctl_fmt_time(ctl_jint(s, "connected_since"), since, sizeof(since));
        ctl_fmt_time(ctl_jint(s, "last_seen"), seen, sizeof(seen));
        rc = ctl_table_add(services != NULL && labels != NULL ? t : NULL, row);
        free(services);
        free(labels);
        if (rc != CTL_EXIT_OK)
            goto out;
    }
    table_print(t, stdout);
    if (table_rows(t) == 0 && isatty(STDERR_FILENO))
        fprintf(stderr, "No sites yet: register one with 'tetherctl site add NAME'.\n");
out:
    table_free(t);
    json_decref(resp);
    return rc;
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
    char path[128], since[32], seen[32], created[32], enrolled[32];
    char *services = NULL, *labels = NULL, *restricted = NULL;
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
    /* null: offline, so not known (the site says it in each hello). */
    restricted = json_is_array(json_object_get(site, "restricted"))
                     ? ctl_join_array(json_object_get(site, "restricted"), ", ")
                     : strdup("(known while online)");
    if (services == NULL || labels == NULL || restricted == NULL) {
        ctl_err("out of memory");
        goto out;
    }
    ctl_fmt_time(ctl_jint(site, "connected_since"), since, sizeof(since));
    ctl_fmt_time(ctl_jint(site, "last_seen"), seen, sizeof(seen));
    ctl_fmt_time(ctl_jint(site, "created_at"), created, sizeof(created));
    ctl_fmt_time(ctl_jint(site, "enrolled_at"), enrolled, sizeof(enrolled));
    ctl_kv("name:", ctl_jstr(site, "name"));
    ctl_kv("state:", ctl_jstr(site, "state"));
    ctl_kv("key pin:", ctl_jstr(site, "pin"));
    ctl_kv("online:", json_is_true(json_object_get(site, "online")) ? "yes" : "no");
    if (json_is_string(json_object_get(site, "hub"))) /* a cluster: which hub holds the tunnel */
        ctl_kv("hub:", ctl_jstr(site, "hub"));
    ctl_kv("address:", ctl_jstr(site, "remote_addr"));
    ctl_kv("connected since:", since);
    ctl_kv("last seen:", seen);
    ctl_kv("agent version:", ctl_jstr(site, "agent_version"));
    ctl_kv("services:", services);
    ctl_kv("restricted:", restricted);
    ctl_kv("labels:", labels);
    ctl_kv("created:", created);
    ctl_kv("enrolled:", enrolled);

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
    free(restricted);
    json_decref(site);
    return rc;
}

/* PATCH /v1/sites/NAME with body; prints the updated site as JSON, or says
 * what happened. */
static int patch_site(struct ctl *c, const char *name, json_t *body, const char *done)
{
    json_t *resp = NULL; /* owned here */
    char path[128];
    int rc;

    snprintf(path, sizeof(path), "/v1/sites/%s", name);
    rc = ctl_call(c, "PATCH", path, body, &resp);
    if (rc == CTL_EXIT_OK) {
        if (c->json) {
            ctl_print_json(resp);
        } else if (done != NULL) {
            printf("site %s %s\n", name, done);
        } else {
            char *labels = ctl_join_object(json_object_get(resp, "labels"), ",");
            char *clean = table_clean(labels != NULL && labels[0] != '\0' ? labels : "(none)");

            printf("site %s labels: %s\n", name, clean != NULL ? clean : "?");
            free(clean);
            free(labels);
        }
    }
    json_decref(resp);
    return rc;
}

static int set_state(struct ctl *c, const struct ctl_args *a, const char *state, const char *done)
{
    json_t *body;
    int rc = check_name(a->pos[0]);

    if (rc != CTL_EXIT_OK)
        return rc;
    body = json_pack("{s:s}", "state", state);
    rc = body != NULL ? patch_site(c, a->pos[0], body, done) : CTL_EXIT_FAIL;
    json_decref(body);
    return rc;
}

int cmd_site_disable(struct ctl *c, const struct ctl_args *a)
{
    return set_state(c, a, "disabled",
                     "disabled: its tunnel is cut and refused until 'tetherctl site enable'");
}

int cmd_site_enable(struct ctl *c, const struct ctl_args *a)
{
    return set_state(c, a, "active", "enabled: it may connect again");
}

int cmd_site_revoke(struct ctl *c, const struct ctl_args *a)
{
    json_t *resp = NULL; /* owned here */
    char path[128];
    int rc = check_name(a->pos[0]);

    if (rc != CTL_EXIT_OK)
        return rc;
    snprintf(path, sizeof(path), "/v1/sites/%s/revoke", a->pos[0]);
    rc = ctl_call(c, "POST", path, NULL, &resp);
    if (rc == CTL_EXIT_OK) {
        if (c->json)
            ctl_print_json(resp);
        else
            printf("site %s revoked: its key is forgotten and its tunnel cut; to bring it back, "
                   "enroll it again with a token from 'tetherctl site token %s'\n",
                   a->pos[0], a->pos[0]);
    }
    json_decref(resp);
    return rc;
}

int cmd_site_remove(struct ctl *c, const struct ctl_args *a)
{
    json_t *resp = NULL; /* owned here */
    char path[128];
    int rc = check_name(a->pos[0]);

    if (rc != CTL_EXIT_OK)
        return rc;
    snprintf(path, sizeof(path), "/v1/sites/%s", a->pos[0]);
    rc = ctl_call(c, "DELETE", path, NULL, &resp);
    if (rc == CTL_EXIT_OK) {
        if (c->json) {
            json_t *j = json_pack("{s:s,s:b}", "name", a->pos[0], "removed", 1);
            ctl_print_json(j);
            json_decref(j);
        } else {
            printf("site %s removed\n", a->pos[0]);
        }
    }
    json_decref(resp);
    return rc;
}

/* site label NAME KEY=VALUE... KEY-...: sets and removes labels (merge). */
int cmd_site_label(struct ctl *c, const struct ctl_args *a)
{
    json_t *labels = json_object(); /* owned here until moved */
    json_t *body = NULL;            /* owned here */
    int rc = check_name(a->pos[0]);
    size_t i;

    if (rc != CTL_EXIT_OK)
        goto out;
    if (labels == NULL) {
        ctl_err("out of memory");
        rc = CTL_EXIT_FAIL;
        goto out;
    }
    if (a->npos < 2) {
        rc = ctl_usage_err("give at least one KEY=VALUE (set) or KEY- (remove)");
        goto out;
    }
    for (i = 1; i < a->npos; i++) {
        const char *v = a->pos[i], *eq = strchr(v, '=');
        size_t n = strlen(v);
        char *key;
        json_t *val;

        if (eq == NULL && n > 1 && v[n - 1] == '-') {
            key = strndup(v, n - 1);
            val = json_null();
        } else if (eq != NULL && eq != v) {
            key = strndup(v, (size_t)(eq - v));
            val = json_string(eq + 1); /* NULL if not UTF-8 */
        } else {
            rc = ctl_usage_err("\"%s\": expected KEY=VALUE or KEY-", v);
            goto out;
        }
        if (key == NULL || val == NULL || json_object_set_new(labels, key, val) != 0) {
            free(key);
            rc = ctl_usage_err("\"%s\" is not valid UTF-8 text", v);
            goto out;
        }
        free(key);
    }
    body = json_pack("{s:o}", "labels", labels);
    labels = NULL;
    rc = body != NULL ? patch_site(c, a->pos[0], body, NULL) : CTL_EXIT_FAIL;
out:
    json_decref(labels);
    json_decref(body);
    return rc;
}

/* site token NAME [--ttl S]: a new one-time enrollment token for an existing
 * site (lost token, revoked site, new machine); earlier unused ones stop
 * working. */
int cmd_site_token(struct ctl *c, const struct ctl_args *a)
{
    json_t *req = json_object(), *resp = NULL; /* owned here */
    char path[128];
    int rc = check_name(a->pos[0]);

    if (rc != CTL_EXIT_OK)
        goto out;
    if (req == NULL) {
        ctl_err("out of memory");
        rc = CTL_EXIT_FAIL;
        goto out;
    }
    rc = take_ttl(a, req);
    if (rc != CTL_EXIT_OK)
        goto out;
    snprintf(path, sizeof(path), "/v1/sites/%s/enroll", a->pos[0]);
    rc = ctl_call(c, "POST", path, req, &resp);
    if (rc != CTL_EXIT_OK)
        goto out;
    if (c->json)
        ctl_print_json(resp);
    else
        rc = print_enroll_token(resp);
out:
    json_decref(req);
    json_decref(resp);
    return rc;
}
