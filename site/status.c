/* The agent's status file and `tether-site status` (site/status.h). */
/* SPDX-License-Identifier: MIT */
#include "status.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/config.h"

/* One line, control bytes (a newline above all) made harmless. */
static void clean(char *dst, size_t cap, const char *src)
{
    size_t i = 0;

    for (; src != NULL && src[i] != '\0' && i + 1 < cap; i++)
        dst[i] = ((unsigned char)src[i] < 0x20 || src[i] == 0x7f) ? '?' : src[i];
    dst[i] = '\0';
}

int status_write(const char *path, const struct site_status *st)
{
    char hub[sizeof(st->hub)], err[sizeof(st->last_error)], text[1024];
    int n;

    clean(hub, sizeof(hub), st->hub);
    clean(err, sizeof(err), st->last_error);
    n = snprintf(text, sizeof(text),
                 "pid=%ld\nstate=%s\nsince=%" PRId64 "\nhub=%s\nlast_error=%s\n", st->pid,
                 st->state, st->since, hub, err);
    if (n < 0 || (size_t)n >= sizeof(text))
        return -E2BIG;
    return config_write_data(path, text, (size_t)n, 0644);
}

int status_read(const char *path, struct site_status *st)
{
    char *data = NULL, *line, *save = NULL;
    size_t len = 0;
    int rc, seen = 0;

    memset(st, 0, sizeof(*st));
    rc = config_read_data(path, 4096, &data, &len);
    if (rc != 0)
        return rc;
    for (line = strtok_r(data, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
        char *eq = strchr(line, '=');

        if (eq == NULL)
            continue;
        *eq++ = '\0';
        if (strcmp(line, "pid") == 0)
            st->pid = strtol(eq, NULL, 10), seen |= 1;
        else if (strcmp(line, "state") == 0)
            snprintf(st->state, sizeof(st->state), "%s", eq), seen |= 2;
        else if (strcmp(line, "since") == 0)
            st->since = strtoll(eq, NULL, 10);
        else if (strcmp(line, "hub") == 0)
            snprintf(st->hub, sizeof(st->hub), "%s", eq);
        else if (strcmp(line, "last_error") == 0)
            snprintf(st->last_error, sizeof(st->last_error), "%s", eq);
    }
    free(data);
    return seen == 3 ? 0 : -EINVAL;
}
