/* tetherctl token commands: create, list, revoke API tokens. */
/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmd.h"
#include "common/token.h"
#include "table.h"

/* Ten years, as the hub. */
#define TOKEN_TTL_MAX (3650LL * 86400)

/* --services NAME,NAME as a JSON array in *out (owned by the caller); "*" =
 * no limit (*out NULL). The hub checks the names again. */
static int parse_services(const char *v, json_t **out)
{
    const char *p = v;

    *out = NULL;
    if (strcmp(v, "*") == 0)
        return CTL_EXIT_OK;
    if ((*out = json_array()) == NULL)
        return CTL_EXIT_FAIL;
    while (*p != '\0') {
        size_t n = strcspn(p, ",");
        char name[TOKEN_NAME_MAX + 1];

        if (n == 0 || n > TOKEN_NAME_MAX)
            break;
        memcpy(name, p, n);
        name[n] = '\0';
        if (!token_name_valid(name))
            break;
        json_array_append_new(*out, json_string(name));
        p += n;
        if (*p == ',' && *++p == '\0')
            break; /* a trailing comma */
    }
    if (*p != '\0' || json_array_size(*out) == 0) {
        json_decref(*out);
        *out = NULL;
        return ctl_usage_err("--services wants NAME,NAME (service names) or '*'");
    }
    return CTL_EXIT_OK;
}

int cmd_token_create(struct ctl *c, const struct ctl_args *a)
{
    json_t *req = NULL, *resp = NULL, *sites = NULL, *svcs = NULL; /* owned here */
    const char *role = ctl_opt(a, "role"), *sv = ctl_opt(a, "sites"), *ttl = ctl_opt(a, "ttl");
    const char *services = ctl_opt(a, "services");
    const char *tok;
    long long ttl_s = 0;
    int rc = ctl_check_name("token", a->pos[0]);

    if (rc != CTL_EXIT_OK)
        return rc;
    if (role == NULL || (strcmp(role, "admin") != 0 && strcmp(role, "user") != 0))
        return ctl_usage_err("token create needs --role admin or --role user");
    if (strcmp(role, "user") == 0 && sv == NULL)
        return ctl_usage_err("a user token needs --sites: NAME,NAME, label=KEY=VALUE or '*' "
                             "for every site");
    if (strcmp(role, "admin") == 0 && sv != NULL)
        return ctl_usage_err("an admin token reaches every site: leave --sites out");
    if (ttl != NULL && (rc = ctl_parse_count("--ttl", ttl, TOKEN_TTL_MAX, &ttl_s)) != CTL_EXIT_OK)
        return rc;
    if (sv != NULL && (rc = ctl_parse_sites(sv, &sites)) != CTL_EXIT_OK)
        return rc;
    if (services != NULL && (rc = parse_services(services, &svcs)) != CTL_EXIT_OK)
        goto out;
    req = json_pack("{s:s,s:s}", "name", a->pos[0], "role", role);
    if (req == NULL) {
        ctl_err("out of memory");
        rc = CTL_EXIT_FAIL;
        goto out;
    }
    if (sites != NULL)
        json_object_set(req, "sites", sites);
    if (svcs != NULL)
        json_object_set(req, "services", svcs);
    if (ttl_s > 0)
        json_object_set_new(req, "ttl_s", json_integer(ttl_s));
    rc = ctl_call(c, "POST", "/v1/tokens", req, &resp);
    if (rc != CTL_EXIT_OK)
        goto out;
    if (c->json) {
        ctl_print_json(resp);
        goto out;
    }
    tok = ctl_jstr(resp, "token");
    if (tok == NULL || tok[0] == '\0') {
        ctl_err("the hub's answer has no token");
        rc = CTL_EXIT_FAIL;
        goto out;
    }
    printf("%s\n", tok);
    if (isatty(STDOUT_FILENO) && isatty(STDERR_FILENO))
        fprintf(stderr, "The hub keeps only a hash of this token: store it now, it cannot be "
                        "shown again.\n");
out:
    json_decref(sites);
    json_decref(svcs);
    json_decref(req);
    json_decref(resp);
    return rc;
}

/* "*", "a,b" or "label k=v,k2=v2" for a token's scope. */
static char *scope_text(json_t *sites)
{
    char *inner, *s = NULL;

    if (json_is_string(sites))
        return strdup(json_string_value(sites));
    if (json_is_array(sites))
        return ctl_join_array(sites, ",");
    inner = ctl_join_object(json_object_get(sites, "labels"), ",");
    if (inner != NULL && (s = malloc(strlen(inner) + 7)) != NULL)
        snprintf(s, strlen(inner) + 7, "label %s", inner);
    free(inner);
    return s;
}

int cmd_token_list(struct ctl *c, const struct ctl_args *a)
{
    static const char *const head[] = {"NAME",     "ROLE",    "STATUS",  "SITES",
                                       "SERVICES", "CREATED", "EXPIRES", "REVOKED"};
    json_t *resp = NULL; /* owned here; everything below borrows from it */
    json_t *toks, *t;
    struct table *tb = NULL;
    size_t i;
    int rc;

    rc = ctl_get_list(c, "/v1/tokens", "tokens", 8, head, &resp, &toks, &tb);
    if (rc != CTL_EXIT_OK || tb == NULL)
        goto out;
    json_array_foreach(toks, i, t)
    {
        char created[32], expires[32], revoked[32];
        char *scope = scope_text(json_object_get(t, "sites"));
        /* "*" (every service) for a token from an older hub too. */
        char *svcs = json_object_get(t, "services") ? scope_text(json_object_get(t, "services"))
                                                    : strdup("*");
        const char *row[8] = {ctl_jstr(t, "name"),
                              ctl_jstr(t, "role"),
                              ctl_jstr(t, "status"),
                              scope,
                              svcs,
                              created,
                              expires,
                              revoked};

        ctl_fmt_time(ctl_jint(t, "created_at"), created, sizeof(created));
        ctl_fmt_time(ctl_jint(t, "expires_at"), expires, sizeof(expires));
        ctl_fmt_time(ctl_jint(t, "revoked_at"), revoked, sizeof(revoked));
        rc = ctl_table_add(scope != NULL && svcs != NULL ? tb : NULL, row);
        free(scope);
        free(svcs);
        if (rc != CTL_EXIT_OK)
            goto out;
    }
    table_print(tb, stdout);
out:
    table_free(tb);
    json_decref(resp);
    return rc;
}

int cmd_token_revoke(struct ctl *c, const struct ctl_args *a)
{
    json_t *resp = NULL; /* owned here */
    char path[128];
    int rc = ctl_check_name("token", a->pos[0]);

    if (rc != CTL_EXIT_OK)
        return rc;
    snprintf(path, sizeof(path), "/v1/tokens/%s", a->pos[0]);
    rc = ctl_call(c, "DELETE", path, NULL, &resp);
    if (rc == CTL_EXIT_OK) {
        if (c->json)
            ctl_print_json(resp);
        else
            printf("token %s revoked: the hub refuses it from its next request on\n", a->pos[0]);
    }
    json_decref(resp);
    return rc;
}
