/* The agent's status file (STATE/status) and `tether-site status`, the local health check. */
/* SPDX-License-Identifier: MIT */
#ifndef TETHER_SITE_STATUS_H
#define TETHER_SITE_STATUS_H

#include <stdint.h>

/* Name of the status file inside a state directory. */
#define STATUS_FILE "status"

/* What the running agent last wrote. Strings are copies, NUL-terminated. */
struct site_status {
    long pid;
    char state[16];       /* "connected", "backoff", ... (site/agent.c's state names) */
    int64_t since;        /* unix seconds the agent entered state */
    char hub[300];        /* the endpoint in use or last tried */
    char last_error[320]; /* why the last connection ended or failed; "" none */
};

/* Writes st to path (temp file, fsync, rename): a reader never sees half a
 * file. Control bytes in the strings are written as '?'. 0 or -errno. */
int status_write(const char *path, const struct site_status *st);
/* Reads path into *st. 0, -ENOENT, or -EINVAL for a file this version did
 * not write. */
int status_read(const char *path, struct site_status *st);

#endif
