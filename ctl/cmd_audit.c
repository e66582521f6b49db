/* tetherctl audit: the hub's audit log, newest first. */
/* SPDX-License-Identifier: MIT */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmd.h"
#include "table.h"

/* Longest DETAIL shown in the table; --json has it whole. */
#define DETAIL_COLS 60

int cmd_audit(struct ctl *c, const struct ctl_args *a)
{
    static const char *const head[] = {"ID",     "TIME",   "ACTOR",  "FROM",
                                       "ACTION", "TARGET", "RESULT", "DETAIL"};
    const char *lim = ctl_opt(a, "limit"), *bef = ctl_opt(a, "before");
    long long limit = 50, before = 0;
    json_t *resp = NULL; /* owned here; everything below borrows from it */
    json_t *list, *e;
    struct table *t = NULL;
    char path[96];
    size_t i;
    int rc;

    if (lim != NULL && (rc = ctl_parse_count("--limit", lim, 1000, &limit)) != CTL_EXIT_OK)
        return rc;
    if (bef != NULL && (rc = ctl_parse_count("--before", bef, 1LL << 62, &before)) != CTL_EXIT_OK)
        return rc;
    if (before > 0)
        snprintf(path, sizeof(path), "/v1/audit?limit=%lld&before=%lld", limit, before);
    else
        snprintf(path, sizeof(path), "/v1/audit?limit=%lld", limit);
    rc = ctl_get_list(c, path, "entries", 8, head, &resp, &list, &t);
    if (rc != CTL_EXIT_OK || t == NULL)
        goto out;
    table_align_right(t, 0);
    json_array_foreach(list, i, e)
    {
        char id[24], when[32], detail[DETAIL_COLS * 4 + 8];
        const char *d = ctl_jstr(e, "detail");
        const char *row[8] = {id,
                              when,
                              ctl_jstr(e, "actor"),
                              ctl_jstr(e, "remote"),
                              ctl_jstr(e, "action"),
                              ctl_jstr(e, "target"),
                              ctl_jstr(e, "result"),
                              detail};
        size_t n = 0, chars = 0;

        snprintf(id, sizeof(id), "%lld", ctl_jint(e, "id"));
        ctl_fmt_time(ctl_jint(e, "ts"), when, sizeof(when));
        /* Cut at a character boundary, counting UTF-8 lead bytes. */
        for (; d != NULL && d[n] != '\0' && n < sizeof(detail) - 8; n++) {
            if (((unsigned char)d[n] & 0xc0) != 0x80 && ++chars > DETAIL_COLS)
                break;
            detail[n] = d[n];
        }
        snprintf(detail + n, sizeof(detail) - n, "%s", d != NULL && d[n] != '\0' ? "..." : "");
        rc = ctl_table_add(t, row);
        if (rc != CTL_EXIT_OK)
            goto out;
    }
    table_print(t, stdout);
    if (json_is_integer(json_object_get(resp, "next_before")) && isatty(STDERR_FILENO))
        fprintf(stderr, "Older entries: tetherctl audit --before %lld\n",
                ctl_jint(resp, "next_before"));
out:
    table_free(t);
    json_decref(resp);
    return rc;
}
