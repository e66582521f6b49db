/* Unit tests for site/portholder.c: who holds a local TCP port. */
/* SPDX-License-Identifier: MIT */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../../../site/portholder.h"
#include "testutil.h"

static void test_port_holder(void)
{
    char out[256], want[64], comm[64] = "";
    FILE *f;
    int port = 0, fd = tu_loopback_socket(&port, 1);

    CHECK(fd >= 0);

    CHECK_EQ_INT(portholder_describe(port, out, sizeof(out)), 0);
    snprintf(want, sizeof(want), "pid %d (", (int)getpid());
    CHECK(strstr(out, want) == out);
    CHECK(strstr(out, "LISTEN") != NULL);
    if ((f = fopen("/proc/self/comm", "r")) != NULL) {
        if (fgets(comm, sizeof(comm), f) != NULL)
            comm[strcspn(comm, "\n")] = '\0';
        fclose(f);
    }
    CHECK(comm[0] != '\0' && strstr(out, comm) != NULL);
    close(fd);
    /* Closed listener: this process holds it no more (on a busy machine
     * another one may have taken the port since). */
    {
        int rc = portholder_describe(port, out, sizeof(out));
        CHECK(rc == -ENOENT || strstr(out, want) == NULL);
        if (rc == -ENOENT)
            CHECK_EQ_STR(out, "no socket uses it now");
    }
}

int main(void)
{
    test_port_holder();
    TEST_DONE();
}
