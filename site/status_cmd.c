/* `tether-site status --state DIR`: the local health check for containers and systemd. */
/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>

#include "../common/cli.h"
#include "../common/statelock.h"
#include "cmds.h"
#include "status.h"

/* tether-site status --state DIR: exit 0 only while the agent of DIR runs
 * and its tunnel is up; prints the hub, the time in the state and the last
 * error either way. */
int site_cmd_status(int argc, char **argv)
{
    static const struct option opts[] = {
        {"state", required_argument, 0, 's'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    const char *state = NULL;
    struct site_status st;
    struct cli p;
    char path[4200];
    pid_t holder = 0;
    int c, fd = -1, rc;
    long age;

    cli_begin(&p, "tether-site", "status", argc, argv, "h", opts);
    while ((c = cli_next(&p)) != CLI_END) {
        if (c == 'h') {
            site_usage(stdout, "status");
            return 0;
        } else if (c == 's') {
            state = optarg;
        } else if (c == CLI_ARG) {
            return cli_usage_error("tether-site", "status", "unexpected argument \"%s\"", optarg);
        } else {
            return CLI_EXIT_USAGE;
        }
    }
    if (state == NULL)
        return cli_usage_error("tether-site", "status", "status needs --state DIR");
    /* A lock we can take means no agent runs on this state directory. */
    rc = statelock_acquire(state, &fd, &holder);
    if (rc == 0) {
        statelock_release(fd);
        printf("not running: no tether-site holds %s\n", state);
        return 1;
    }
    if (rc != -EBUSY) {
        fprintf(stderr, "tether-site: cannot check %s: %s\n", state, strerror(-rc));
        return 1;
    }
    snprintf(path, sizeof(path), "%s/%s", state, STATUS_FILE);
    if (status_read(path, &st) != 0 || st.pid != (long)holder) {
        printf("starting: process %ld holds %s and has not said more yet\n", (long)holder, state);
        return 1;
    }
    age = st.since > 0 ? (long)(time(NULL) - st.since) : 0;
    printf("%s hub=%s for=%lds pid=%ld%s%s\n", st.state, st.hub[0] ? st.hub : "-", age, st.pid,
           st.last_error[0] ? " last_error=" : "", st.last_error);
    return strcmp(st.state, "connected") == 0 ? 0 : 1;
}
