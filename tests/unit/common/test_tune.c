/* Unit test of the start-up re-exec that keeps glibc's memcpy off rep movsb (common/tune.c). */
/* SPDX-License-Identifier: MIT */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/tune.h"
#include "testutil.h"

#define OPERATOR_TUNABLE "glibc.malloc.perturb=0"

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TU_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) && !defined(TU_ASAN)
#define TU_ASAN 1
#endif

/* The heap thresholds: off with TUNE_OFF_ENV; otherwise a burst of blocks
 * freed at the top of the heap stays with the process instead of going back
 * with brk() (with glibc's defaults it is trimmed: the check would fail). */
static void test_malloc(void)
{
    setenv(TUNE_OFF_ENV, "1", 1);
    CHECK_EQ_INT(tune_malloc(), 0);
    CHECK_EQ_INT(tune_heap_trim_mib(), 0);
    unsetenv(TUNE_OFF_ENV);
#if defined(__GLIBC__) && !defined(TU_ASAN)
    {
        enum { N = 128, SZ = 64 * 1024 };
        void *p[N];
        void *top;

        CHECK_EQ_INT(tune_malloc(), TUNE_TRIM_BYTES >> 20);
        CHECK_EQ_INT(tune_heap_trim_mib(), TUNE_TRIM_BYTES >> 20);
        for (int i = 0; i < N; i++) {
            p[i] = malloc(SZ);
            CHECK(p[i] != NULL);
            if (p[i] != NULL)
                memset(p[i], 0xa5, SZ);
        }
        top = sbrk(0);
        for (int i = N - 1; i >= 0; i--)
            free(p[i]);
        CHECK(sbrk(0) == top);
    }
#else
    printf("tune: heap thresholds not checked (not glibc, or AddressSanitizer's allocator)\n");
#endif
}

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

    test_malloc();

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
