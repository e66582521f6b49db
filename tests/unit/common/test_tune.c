/* Unit test of the start-up re-exec that keeps glibc's memcpy off rep movsb (common/tune.c). */
/* SPDX-License-Identifier: MIT */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/tune.h"
#include "testutil.h"

#define OPERATOR_TUNABLE "glibc.malloc.perturb=0"

int main(int argc, char **argv)
{
    const char *t;

    if (argc > 1 && strcmp(argv[1], "after-exec") == 0) {
        /* Re-executed by tune_reexec: same PID, our tunable added after the
         * operator's own, and a second call does nothing. */
        t = getenv("GLIBC_TUNABLES");
        CHECK(t != NULL);
        CHECK(t != NULL && strncmp(t, OPERATOR_TUNABLE ":", strlen(OPERATOR_TUNABLE) + 1) == 0);
        CHECK(t != NULL && strstr(t, "glibc.cpu.x86_rep_movsb_threshold=2097152") != NULL);
        CHECK_EQ_STR(tune_state(), "vector-2MiB");
        CHECK_EQ_STR(getenv("TUNE_TEST_PID"), argv[2]);
        {
            char me[32];
            snprintf(me, sizeof(me), "%ld", (long)getpid());
            CHECK_EQ_STR(me, argv[2]);
        }
        CHECK_EQ_INT(tune_reexec(argv), 0);
        TEST_DONE();
    }

    /* Turned off: nothing happens, and the state says so. */
    setenv(TUNE_OFF_ENV, "1", 1);
    unsetenv("GLIBC_TUNABLES");
    CHECK_EQ_INT(tune_reexec(argv), 0);
    CHECK_EQ_STR(tune_state(), "off");
    CHECK(getenv("GLIBC_TUNABLES") == NULL);
    unsetenv(TUNE_OFF_ENV);

    /* Already set by the operator (any value): left alone. */
    setenv("GLIBC_TUNABLES", "glibc.cpu.x86_rep_movsb_threshold=4096", 1);
    CHECK_EQ_INT(tune_reexec(argv), 0);
    CHECK_EQ_STR(getenv("GLIBC_TUNABLES"), "glibc.cpu.x86_rep_movsb_threshold=4096");
    CHECK_EQ_STR(tune_state(), "default");

    if (tu_failures > 0) /* the re-exec below would lose them */
        TEST_DONE();

    /* The real thing: re-exec with the operator's tunables kept. On CPUs
     * and C libraries where it does not apply, tune_reexec returns 0. */
    {
        char pid[32];
        char *nargv[] = {argv[0], "after-exec", pid, NULL};
        snprintf(pid, sizeof(pid), "%ld", (long)getpid());
        setenv("TUNE_TEST_PID", pid, 1);
        setenv("GLIBC_TUNABLES", OPERATOR_TUNABLE, 1);
        fflush(NULL);
        CHECK_EQ_INT(tune_reexec(nargv), 0);
        CHECK_EQ_STR(getenv("GLIBC_TUNABLES"), OPERATOR_TUNABLE);
        printf("tune: not applicable on this machine (state %s)\n", tune_state());
    }
    TEST_DONE();
}
