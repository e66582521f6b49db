/* tetherctl enroll commands: list and cancel one-time enrollment tokens (never their secrets). */
/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"
#include "table.h"

int cmd_enroll_list(struct ctl *c, const struct ctl_args *a)
{
    static const char *const head[] = {"ID",      "SITE",    "STATUS",      "CREATED",
                                       "EXPIRES", "USED-AT", "CANCELLED-AT"};
    const char *site = ctl_opt(a, "site");
    json_t *resp = NULL; /* owned here; everything below borrows from it */
    json_t *list, *e;
    struct table *t = NULL;
    char path[160];
    size_t i;
    int rc;

    if (site != NULL && (rc = ctl_check_name("site", site)) != CTL_EXIT_OK)
        return rc;
    snprintf(path, sizeof(path), "/v1/enrollments%s%s%s", ctl_opt(a, "all") ? "?all=1" : "",
             site ? (ctl_opt(a, "all") ? "&site=" : "?site=") : "", site ? site : "");
    rc = ctl_get_list(c, path, "enrollments", 7, head, &resp, &list, &t);
    if (rc != CTL_EXIT_OK || t == NULL)
        goto out;
    table_align_right(t, 0);
    json_array_foreach(list, i, e)
    {
        char id[24], created[32], expires[32], used[32], cancelled[32];
        const char *row[7] = {
            id, ctl_jstr(e, "site"), ctl_jstr(e, "status"), created, expires, used, cancelled};

        snprintf(id, sizeof(id), "%lld", ctl_jint(e, "id"));
        ctl_fmt_time(ctl_jint(e, "created_at"), created, sizeof(created));
        ctl_fmt_time(ctl_jint(e, "expires_at"), expires, sizeof(expires));
        ctl_fmt_time(ctl_jint(e, "used_at"), used, sizeof(used));
        ctl_fmt_time(ctl_jint(e, "cancelled_at"), cancelled, sizeof(cancelled));
        rc = ctl_table_add(t, row);
        if (rc != CTL_EXIT_OK)
            goto out;
    }
    table_print(t, stdout);
out:
    table_free(t);
    json_decref(resp);
    return rc;
}

int cmd_enroll_cancel(struct ctl *c, const struct ctl_args *a)
{
    json_t *resp = NULL; /* owned here */
    long long id;
    char path[64];
    int rc = ctl_parse_count("enrollment token ID", a->pos[0], (1LL << 62), &id);

    if (rc != CTL_EXIT_OK)
        return rc;
    snprintf(path, sizeof(path), "/v1/enrollments/%lld", id);
    rc = ctl_call(c, "DELETE", path, NULL, &resp);
    if (rc == CTL_EXIT_OK) {
        if (c->json) {
            ctl_print_json(resp);
        } else {
            char *site = table_clean(ctl_jstr(resp, "site"));

            printf("enrollment token %lld (site %s) cancelled\n", id, site ? site : "?");
            free(site);
        }
    }
    json_decref(resp);
    return rc;
}
