/* tetherctl hub list: the hubs of the cluster, as the hub asked sees them. */
/* SPDX-License-Identifier: MIT */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "cmd.h"
#include "table.h"

int cmd_hub_list(struct ctl *c, const struct ctl_args *a)
{
    static const char *const head[] = {"ID", "NAME", "LINK", "SITES", "JOINED", "ENDPOINTS", "PIN"};
    json_t *resp = NULL; /* owned here; everything below borrows from it */
    json_t *hubs, *hb;
    struct table *t = NULL;
    size_t i;
    int rc;

    (void)a;
    rc = ctl_get_list(c, "/v1/hubs", "hubs", 7, head, &resp, &hubs, &t);
    if (rc != CTL_EXIT_OK || t == NULL)
        goto out;
    json_array_foreach(hubs, i, hb)
    {
        char id[24], sites[24], joined[32];
        char *eps = ctl_join_array(json_object_get(hb, "public"), ",");
        const char *row[7] = {id,  ctl_jstr(hb, "name"), ctl_jstr(hb, "link"), sites, joined,
                              eps, ctl_jstr(hb, "pin")};

        snprintf(id, sizeof(id), "%" PRId64, (int64_t)ctl_jint(hb, "id"));
        snprintf(sites, sizeof(sites), "%" PRId64, (int64_t)ctl_jint(hb, "sites"));
        ctl_fmt_time(ctl_jint(hb, "joined_at"), joined, sizeof(joined));
        rc = ctl_table_add(eps != NULL ? t : NULL, row);
        free(eps);
        if (rc != CTL_EXIT_OK)
            goto out;
    }
    table_print(t, stdout);
out:
    table_free(t);
    json_decref(resp);
    return rc;
}
