/* Unit tests for site/status.c: the status file the agent writes and `tether-site status` reads. */
/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../../site/status.h"
#include "testutil.h"

int main(void)
{
    char dir[] = "/tmp/test_status.XXXXXX", path[256];
    struct site_status in = {.pid = 4242, .since = 1796600000}, out;

    CHECK(mkdtemp(dir) != NULL);
    snprintf(path, sizeof(path), "%s/status", dir);
    CHECK_EQ_INT(status_read(path, &out), -ENOENT);

    snprintf(in.state, sizeof(in.state), "connected");
    snprintf(in.hub, sizeof(in.hub), "hub.example.org:6443");
    /* A reason from the network may hold a newline: it must not start a
     * line of its own (a forged "state=connected"). */
    snprintf(in.last_error, sizeof(in.last_error), "peer closed\nstate=connected\x1b[1m");
    CHECK_EQ_INT(status_write(path, &in), 0);
    CHECK_EQ_INT(status_read(path, &out), 0);
    CHECK_EQ_INT((int)out.pid, 4242);
    CHECK(strcmp(out.state, "connected") == 0);
    CHECK(out.since == 1796600000);
    CHECK(strcmp(out.hub, "hub.example.org:6443") == 0);
    CHECK(strcmp(out.last_error, "peer closed?state=connected?[1m") == 0);

    /* A state change rewrites the whole file. */
    snprintf(in.state, sizeof(in.state), "backoff");
    in.last_error[0] = '\0';
    CHECK_EQ_INT(status_write(path, &in), 0);
    CHECK_EQ_INT(status_read(path, &out), 0);
    CHECK(strcmp(out.state, "backoff") == 0 && out.last_error[0] == '\0');

    /* A file this version did not write is refused, not half read. */
    tu_write_file(path, "hello\n", 6);
    CHECK_EQ_INT(status_read(path, &out), -EINVAL);
    tu_write_file(path, "pid=1\n", 6);
    CHECK_EQ_INT(status_read(path, &out), -EINVAL);

    unlink(path);
    rmdir(dir);
    TEST_DONE();
}
